//! `cargo xtask profile` end to end: real bidder, real loadgen, real perf.
//!
//! Runs as root in CI, where `cargo xtask setup` installed perf. Without perf this
//! fails rather than skips: a profile that silently stopped working is the failure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::{fs, io};

fn only_file_with_extension(dir: &Path, ext: &str) -> io::Result<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one .{ext} in {}: {found:?}",
        dir.display()
    );
    Ok(found.remove(0))
}

#[test]
fn profile_draws_a_flamegraph_whose_stacks_include_the_decision_core() {
    let perf = Command::new("perf").arg("--version").output();
    assert!(
        perf.is_ok_and(|o| o.status.success()),
        "perf is not installed: run `cargo xtask setup` (installs linux-perf)"
    );
    let out = testkit::TempDir::new("xtask-profile-test");
    // Short and light: the test pins that the pipeline works, not how fast the bidder is.
    let run = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "profile",
            "--duration-s",
            "4",
            "--rate",
            "2000",
            "--out-dir",
        ])
        .arg(&out.0)
        .output()
        .expect("xtask starts");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    // The error is last; say it first, where a log cut short still shows it.
    let last_lines: Vec<&str> = stderr.lines().rev().take(3).collect();
    assert!(
        run.status.success(),
        "xtask profile failed ({}), its stderr ends: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        run.status,
        last_lines
    );

    let svg = fs::read_to_string(only_file_with_extension(&out.0, "svg").unwrap()).unwrap();
    assert!(
        svg.len() > 1_000,
        "SVG is suspiciously small: {} bytes",
        svg.len()
    );
    assert!(svg.contains("<svg"), "no <svg element");
    assert!(svg.trim_end().ends_with("</svg>"), "SVG is truncated");

    let folded = fs::read_to_string(only_file_with_extension(&out.0, "folded").unwrap()).unwrap();
    assert!(
        folded.lines().any(|l| l.contains("Decider::decide")),
        "no stack passes through Decider::decide; the folded stacks begin:\n{}",
        folded.lines().take(20).collect::<Vec<_>>().join("\n")
    );
    for section in [
        "top 15 by self",
        "top 15 by total",
        "task-clock",
        "decision",
        "request",
    ] {
        assert!(
            stdout.contains(section),
            "output lacks {section:?}:\n{stdout}"
        );
    }
}
