//! `cargo xtask sim`: the auction simulator's standard scenarios against the release
//! bidder and agent (`perf/src/sim/`): every strategy on the same seeds and traffic,
//! one comparison table per scenario (or, with `--json`, one JSON object whose
//! `strategies` are the default scenario's rows averaged over the seeds), reports and
//! pictures in `target/auction-sim/`.

use std::process::{Command, Stdio};

use anyhow::{Context as _, Result};

use crate::{command, paths};

/// Seeds every scenario runs under: three days of traffic per strategy.
const SEEDS: &str = "1,2,3";

pub fn run(json: bool, quick: bool) -> Result<()> {
    let root = paths::workspace_root();
    // Progress goes to stderr, so that with --json stdout carries the report alone.
    let progress = || Stdio::from(std::io::stderr());
    let me = std::env::current_exe().context("finding xtask's own binary")?;
    command::stream(Command::new(me).arg("setup").stdout(progress()))?;
    eprintln!("sim: building the bidder, the agent and auction-sim (release)");
    command::stream(
        command::cargo()
            .args([
                "build",
                "--release",
                "--package",
                "bidder",
                "--package",
                "agent",
                "--package",
                "perf",
                "--bins",
            ])
            .current_dir(root)
            .stdout(progress()),
    )?;
    let release = paths::target_dir().join("release");
    let out = paths::target_dir().join("auction-sim");
    let scenarios = if quick { "default" } else { "all" };
    eprintln!(
        "sim: scenarios {scenarios}, seeds {SEEDS}; runs and logs in {}",
        out.display()
    );
    let mut sim = Command::new(release.join("auction-sim"));
    sim.args(["--scenario", scenarios, "--seeds", SEEDS, "--out"])
        .arg(&out)
        .current_dir(root);
    if json {
        sim.arg("--json");
    }
    command::stream(&mut sim)
}
