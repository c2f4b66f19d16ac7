//! `cargo xtask dist`: the release archive the Ansible role installs — the three
//! binaries, the systemd units, example configuration, monitoring and docs.
//!
//! The archive's name carries the package version and a digest of the binaries, so a
//! rebuilt binary is a new release (the role restarts the bidder) and an unchanged one
//! is the same release (a second converge changes nothing).

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use crate::{command, paths};

/// The binaries shipped, from the `bidder` and `agent` packages.
const BINARIES: &[&str] = &["bidder", "agent", "bidderctl"];
/// Folders and files copied as they are, relative to the workspace root.
const COPIED: &[&str] = &[
    "systemd",
    "monitoring",
    "docs",
    "README.md",
    "bidder/examples/demo.toml",
    "agent/examples/agent.toml",
    "bidder/examples/traffic",
];

/// Which cargo profile the binaries come from.
#[derive(Clone, Copy)]
pub enum Profile {
    /// `--release`: what operators install.
    Release,
    /// The dev profile: what `cargo test` already built, for the deploy test in CI.
    Debug,
}

/// Builds the binaries and writes `target/dist/<name>.tar.gz`; returns its path.
pub fn run(profile: Profile) -> Result<PathBuf> {
    let mut build = command::cargo();
    build.args(["build", "-p", "bidder", "-p", "agent", "--bins"]);
    let profile_dir = match profile {
        Profile::Release => {
            build.arg("--release");
            "release"
        }
        Profile::Debug => "debug",
    };
    build.current_dir(paths::workspace_root());
    command::stream(&mut build).context("building the binaries for the archive")?;

    let bin_dir = paths::target_dir().join(profile_dir);
    let version = env!("CARGO_PKG_VERSION");
    let digest = binaries_digest(&bin_dir)?;
    let name = format!("bidder-{version}-{digest}-x86_64-linux");
    let dist = paths::target_dir().join("dist");
    let stage = dist.join(&name);
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("clearing {}", stage.display()))?;
    }
    fs::create_dir_all(stage.join("bin"))?;
    for binary in BINARIES {
        let from = bin_dir.join(binary);
        fs::copy(&from, stage.join("bin").join(binary))
            .with_context(|| format!("copying {}", from.display()))?;
    }
    let root = paths::workspace_root();
    for item in COPIED {
        let from = root.join(item);
        let to = stage.join(Path::new(item).file_name().expect("a named item"));
        copy_tree(&from, &to)?;
    }
    fs::write(stage.join("RELEASE"), format!("{name}\n"))?;

    let archive = dist.join(format!("{name}.tar.gz"));
    // Sorted names, fixed owner and times: the same inputs give the same archive.
    let mut tar = Command::new("tar");
    tar.args([
        "--sort=name",
        "--owner=0",
        "--group=0",
        "--numeric-owner",
        "--mtime=@0",
        "-czf",
    ])
    .arg(&archive)
    .arg("-C")
    .arg(&dist)
    .arg(&name);
    command::output(&mut tar).context("writing the archive")?;
    let latest = dist.join("bidder-latest.tar.gz");
    let _ = fs::remove_file(&latest);
    std::os::unix::fs::symlink(archive.file_name().expect("named"), &latest)
        .with_context(|| format!("linking {}", latest.display()))?;
    println!("dist: {}", archive.display());
    Ok(archive)
}

/// The first 12 hex digits of a SHA-256 over the binaries' bytes, in order.
fn binaries_digest(bin_dir: &Path) -> Result<String> {
    let mut sum = Command::new("sh");
    sum.args(["-c", r#"cat "$@" | sha256sum"#, "sh"]);
    for binary in BINARIES {
        sum.arg(bin_dir.join(binary));
    }
    let digest = command::output(&mut sum).context("hashing the binaries")?;
    match digest.get(..12) {
        Some(hex) if hex.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(hex.to_owned()),
        _ => bail!("sha256sum printed {digest:?}"),
    }
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    if from.is_dir() {
        fs::create_dir_all(to)?;
        for entry in fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        fs::copy(from, to)
            .map(drop)
            .with_context(|| format!("copying {}", from.display()))
    }
}
