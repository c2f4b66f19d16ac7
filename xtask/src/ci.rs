//! `cargo xtask ci`: the one command CI runs (`.ci/run` calls it), and the one a
//! developer runs before pushing. Same steps, same order, same flags.

use std::{process::Command, time::Instant};

use anyhow::{bail, Result};

use crate::{command, paths, setup};

/// The eBPF crate: outside the workspace, so fmt and clippy need its manifest.
const EBPF_MANIFEST: &str = "bidder-ebpf/Cargo.toml";
const BPF_TARGET: &str = "bpfel-unknown-none";

/// Runs setup, then every check; later checks run even when an earlier one failed.
pub fn run() -> Result<()> {
    let started = Instant::now();
    println!("ci: step setup");
    setup::run()?;

    let root = paths::workspace_root();
    let steps: [(&str, Command); 5] = [
        ("rustfmt (workspace)", {
            let mut cmd = command::cargo();
            cmd.args(["fmt", "--all", "--check"]);
            cmd
        }),
        ("rustfmt (bidder-ebpf)", {
            let mut cmd = command::cargo();
            cmd.args(["fmt", "--check", "--manifest-path", EBPF_MANIFEST]);
            cmd
        }),
        ("clippy (workspace)", {
            let mut cmd = command::cargo();
            cmd.args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]);
            cmd
        }),
        ("clippy (bidder-ebpf, BPF target)", ebpf_clippy()),
        ("tests", {
            let mut cmd = command::cargo();
            cmd.args(["test", "--workspace"]);
            cmd
        }),
    ];

    let mut failed = Vec::new();
    let total = steps.len();
    for (name, mut cmd) in steps {
        println!("ci: step {name}: {}", command::describe(&cmd));
        let step_started = Instant::now();
        match command::stream(cmd.current_dir(root)) {
            Ok(()) => println!(
                "ci: step {name}: ok in {:.0}s",
                step_started.elapsed().as_secs_f64()
            ),
            Err(err) => {
                println!("ci: step {name}: FAILED: {err:#}");
                failed.push(name);
            }
        }
    }

    let elapsed = started.elapsed().as_secs_f64();
    if failed.is_empty() {
        println!("ci: OK, all {total} checks succeeded after setup, in {elapsed:.0}s");
        return Ok(());
    }
    println!(
        "ci: FAILED {} of {total} checks ({}) in {elapsed:.0}s",
        failed.len(),
        failed.join(", ")
    );
    bail!("ci failed")
}

/// Clippy on the eBPF crate for its real target, so lints see the code the kernel
/// runs. Same recipe as the build (`RUSTC_BOOTSTRAP=1` for `-Z build-std=core`, see
/// `bidder/build/ebpf.rs`), with its own target directory so it never invalidates the
/// object that the bidder build caches.
fn ebpf_clippy() -> Command {
    let mut cmd = command::cargo();
    cmd.args(["clippy", "--manifest-path", EBPF_MANIFEST])
        .args(["--target", BPF_TARGET, "-Z", "build-std=core"])
        .args(["--", "-D", "warnings"])
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", paths::target_dir().join("bidder-ebpf"));
    cmd
}
