//! The date-bomb check: the test binaries run again with the wall clock shifted
//! [`SHIFT_DAYS`] ahead (libfaketime, monotonic clock left alone), so a test that
//! mixes a fixed instant with the real clock, or code that reads the date behind the
//! injected `Clock`'s back, fails in CI long before that date comes.
//!
//! Every test binary of the workspace runs, except those of [`EXCLUDED_PACKAGES`]:
//! a new test is covered without anyone remembering to list it. The binaries are the
//! ones the tests step just built (`cargo test --no-run` builds nothing new); each is
//! run directly under `faketime`, never cargo, so the build never sees a shifted clock.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context as _, Result};

use crate::command;

/// How far ahead the wall clock is put.
pub const SHIFT_DAYS: u64 = 400;

/// Packages whose tests are left out: `perf` measures latencies and reads no calendar,
/// and `xtask`'s run cargo and perf for minutes; running them twice would double the
/// CI time for nothing.
const EXCLUDED_PACKAGES: &[&str] = &["perf", "xtask"];

/// A test binary cargo built, and where cargo would run it from.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TestBinary {
    pub package: String,
    pub executable: PathBuf,
    pub manifest_dir: PathBuf,
}

/// The `cargo test --no-run` that lists the binaries: the same selection as the tests
/// step, so nothing is rebuilt.
pub fn list_command() -> Command {
    let mut cmd = command::cargo();
    cmd.args([
        "test",
        "--workspace",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]);
    cmd
}

/// The test binaries in cargo's JSON messages (one per line), minus the excluded
/// packages.
pub fn test_binaries(json_lines: &str) -> BTreeSet<TestBinary> {
    json_lines
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["profile"]["test"] == true)
        .filter_map(|m| {
            let executable = PathBuf::from(m["executable"].as_str()?);
            let manifest = Path::new(m["manifest_path"].as_str()?);
            let package = package_of(m["package_id"].as_str()?)?;
            Some(TestBinary {
                package: package.to_owned(),
                executable,
                manifest_dir: manifest.parent()?.to_path_buf(),
            })
        })
        .filter(|b| !EXCLUDED_PACKAGES.contains(&b.package.as_str()))
        .collect()
}

/// The package name in a cargo package id: `path+file:///…/bidder#0.1.0` (the
/// directory's name when the package is named after it, as all of ours are) or
/// `path+file:///…#name@0.1.0`.
fn package_of(id: &str) -> Option<&str> {
    let (path, fragment) = id.rsplit_once('#')?;
    match fragment.split_once('@') {
        Some((name, _)) => Some(name),
        None => path.rsplit('/').next(),
    }
}

/// `binary` under `faketime`, as cargo would run it (from its package directory).
pub fn run_command(binary: &TestBinary) -> Command {
    let mut cmd = faketime();
    cmd.arg(&binary.executable)
        .current_dir(&binary.manifest_dir)
        .env("CARGO_MANIFEST_DIR", &binary.manifest_dir);
    cmd
}

fn faketime() -> Command {
    let mut cmd = Command::new("faketime");
    cmd.args(["-f", &format!("+{SHIFT_DAYS}d")])
        // Deadlines and timeouts run on the monotonic clock: shifting it would only
        // test libfaketime.
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    cmd
}

/// Fails unless `faketime` really moves the wall clock [`SHIFT_DAYS`] ahead here: a
/// check that shifted nothing would pass every date bomb.
pub fn check_faketime_shifts() -> Result<()> {
    let mut cmd = faketime();
    cmd.args(["date", "+%s"]);
    let shifted = command::probe(&mut cmd)
        .context("`faketime` did not run: `cargo xtask setup` installs it (package faketime)")?;
    let shifted: u64 = shifted
        .trim()
        .parse()
        .with_context(|| format!("`faketime … date +%s` printed {shifted:?}"))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let ahead_days = shifted.saturating_sub(now) / 86_400;
    if !(SHIFT_DAYS - 1..=SHIFT_DAYS).contains(&ahead_days) {
        bail!("faketime put the clock {ahead_days} days ahead, not {SHIFT_DAYS}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_binaries_are_read_from_cargo_messages_without_excluded_packages() {
        let lines = [
            r#"{"reason":"compiler-artifact","package_id":"path+file:///w/bidder#0.1.0","manifest_path":"/w/bidder/Cargo.toml","target":{"name":"daemon"},"profile":{"test":true},"executable":"/w/target/debug/deps/daemon-1"}"#,
            r#"{"reason":"compiler-artifact","package_id":"path+file:///w/perf#0.1.0","manifest_path":"/w/perf/Cargo.toml","target":{"name":"saturation"},"profile":{"test":true},"executable":"/w/target/debug/deps/saturation-1"}"#,
            r#"{"reason":"compiler-artifact","package_id":"path+file:///w/bidder-common#bidder-common@0.1.0","manifest_path":"/w/bidder-common/Cargo.toml","target":{"name":"bidder_common"},"profile":{"test":true},"executable":"/w/target/debug/deps/bidder_common-2"}"#,
            r#"{"reason":"compiler-artifact","package_id":"path+file:///w/bidder#0.1.0","manifest_path":"/w/bidder/Cargo.toml","target":{"name":"bidder"},"profile":{"test":false},"executable":"/w/target/debug/bidder"}"#,
            r#"{"reason":"build-finished","success":true}"#,
            "not json",
        ]
        .join("\n");
        let found: Vec<(String, PathBuf)> = test_binaries(&lines)
            .into_iter()
            .map(|b| (b.package, b.executable))
            .collect();
        assert_eq!(
            found,
            [
                ("bidder".into(), "/w/target/debug/deps/daemon-1".into()),
                (
                    "bidder-common".into(),
                    "/w/target/debug/deps/bidder_common-2".into()
                ),
            ]
        );
    }
}
