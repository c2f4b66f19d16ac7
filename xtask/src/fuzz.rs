//! `cargo xtask fuzz`: every cargo-fuzz target, each for a bounded time, starting from
//! the seed corpus kept in the repository (`<crate>/fuzz/seeds/<target>/`, or inputs
//! the repository has anyway: the example traffic, the demo configuration).
//!
//! What a run finds stays out of the tree: the growing corpus in
//! `target/fuzz/corpus/<target>/`, crashes in `target/fuzz/artifacts/<target>/`. A crash
//! fails the run and names the input file; turn it into a regression test beside the
//! parser it broke, then fix the parser.

use std::{
    fs,
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context as _, Result};

use crate::{command, paths};

/// A fuzz crate (outside the workspace, built with nightly) and its targets.
struct FuzzCrate {
    dir: &'static str,
    targets: &'static [Target],
}

/// A target and where its seeds are, relative to the workspace root.
struct Target {
    name: &'static str,
    seeds: &'static str,
}

/// Every parser that faces the network or an operator.
const CRATES: &[FuzzCrate] = &[
    FuzzCrate {
        dir: "bidder/fuzz",
        targets: &[
            Target {
                name: "http_request",
                seeds: "bidder/fuzz/seeds/http_request",
            },
            Target {
                name: "http_body",
                seeds: "bidder/fuzz/seeds/http_body",
            },
            Target {
                name: "openrtb_request",
                seeds: "bidder/examples/traffic",
            },
            Target {
                name: "notice_query",
                seeds: "bidder/fuzz/seeds/notice_query",
            },
            Target {
                name: "config_toml",
                seeds: "bidder/examples",
            },
        ],
    },
    FuzzCrate {
        dir: "agent/fuzz",
        targets: &[Target {
            name: "control_line",
            seeds: "agent/fuzz/seeds/control_line",
        }],
    },
];

/// The toolchain cargo-fuzz builds with (`-Zsanitizer` needs nightly); setup installs it.
pub const NIGHTLY: &str = "nightly";
/// Largest memory a target may use before libFuzzer calls it a failure, MiB.
const RSS_LIMIT_MB: u32 = 2_048;
/// One input taking longer than this is reported as a hang, seconds.
const INPUT_TIMEOUT_S: u32 = 10;

/// What one target did in its run.
struct Outcome {
    target: &'static str,
    execs: u64,
    seconds: f64,
}

/// Builds every fuzz crate, then runs each target (or only `only`) for
/// `seconds_per_target` (or until it has run `max_inputs`). Fails on the first crash,
/// naming the input that caused it.
pub fn run(seconds_per_target: u64, max_inputs: Option<u64>, only: Option<&str>) -> Result<()> {
    // libFuzzer reads a total time of 0 as "no limit".
    assert!(seconds_per_target > 0, "a fuzz run needs a time bound");
    if let Some(name) = only {
        let known = CRATES
            .iter()
            .flat_map(|c| c.targets)
            .any(|t| t.name == name);
        if !known {
            bail!(
                "no fuzz target `{name}`; the targets are: {}",
                CRATES
                    .iter()
                    .flat_map(|c| c.targets.iter().map(|t| t.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let root = paths::workspace_root();
    let work = paths::target_dir().join("fuzz");
    let mut outcomes = Vec::new();
    for krate in CRATES {
        let targets: Vec<&'static Target> = krate
            .targets
            .iter()
            .filter(|t| only.is_none_or(|name| name == t.name))
            .collect();
        if targets.is_empty() {
            continue;
        }
        build(root, krate, &work)?;
        for target in targets {
            outcomes.push(run_target(
                root,
                target,
                &work,
                seconds_per_target,
                max_inputs,
            )?);
        }
    }
    for o in &outcomes {
        println!(
            "fuzz: {}: {} inputs in {:.0}s ({:.0}/s), no crash",
            o.target,
            o.execs,
            o.seconds,
            o.execs as f64 / o.seconds.max(1e-3)
        );
    }
    Ok(())
}

/// A command for the nightly toolchain, with none of the variables the stable cargo
/// that runs xtask exports (they would pin nested builds to stable).
fn nightly(program: &str) -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", NIGHTLY, program]);
    for var in [
        "CARGO",
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "RUSTDOC",
        "CARGO_TARGET_DIR",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// `cargo fuzz build`: optimised, with debug assertions (they are checks worth
/// fuzzing) and AddressSanitizer (the parsers sit on unsafe SIMD code).
fn build(root: &Path, krate: &FuzzCrate, work: &Path) -> Result<()> {
    let mut cmd = nightly("cargo");
    cmd.args(["fuzz", "build", "--fuzz-dir", krate.dir, "--target-dir"])
        .arg(work.join("build"))
        .args(["--release", "--debug-assertions"])
        .current_dir(root);
    println!("fuzz: building {}: {}", krate.dir, command::describe(&cmd));
    command::stream(&mut cmd).with_context(|| {
        format!(
            "building the fuzz targets of {} failed; `cargo xtask setup` installs the \
             {NIGHTLY} toolchain (with rust-src) and cargo-fuzz",
            krate.dir
        )
    })
}

fn run_target(
    root: &Path,
    target: &'static Target,
    work: &Path,
    seconds: u64,
    max_inputs: Option<u64>,
) -> Result<Outcome> {
    let seeds = root.join(target.seeds);
    let target = target.name;
    let binary = work
        .join("build/x86_64-unknown-linux-gnu/release")
        .join(target);
    let corpus = work.join("corpus").join(target);
    let artifacts = work.join("artifacts").join(target);
    for dir in [&corpus, &artifacts] {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if !seeds.is_dir() {
        bail!(
            "{}: the seed corpus is missing; add a few valid inputs there",
            seeds.display()
        );
    }
    let mut cmd = Command::new(&binary);
    cmd.arg(&corpus)
        .arg(&seeds)
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_S}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg("-print_final_stats=1")
        .stdin(Stdio::null());
    if let Some(inputs) = max_inputs {
        cmd.arg(format!("-runs={inputs}"));
    }
    println!("fuzz: {target}: {seconds}s from {}", seeds.display());
    let started = Instant::now();
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let log = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        for line in tail.iter().rev() {
            eprintln!("  | {line}");
        }
        bail!(
            "fuzz target {target} failed ({}); the input is in {} (run it again with `{} \
             <file>`), make it a regression test",
            out.status,
            artifacts.display(),
            binary.display()
        );
    }
    let execs = final_stat(&log, "stat::number_of_executed_units")
        .with_context(|| format!("{target}: libFuzzer printed no final stats"))?;
    Ok(Outcome {
        target,
        execs,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// A `stat::name: value` line of libFuzzer's `-print_final_stats` output.
fn final_stat(log: &str, name: &str) -> Option<u64> {
    log.lines().find_map(|line| {
        line.strip_prefix(name)?
            .trim_start_matches(':')
            .trim()
            .parse()
            .ok()
    })
}

/// The seed directories, for tests that keep them non-empty.
#[cfg(test)]
fn seed_dirs() -> Vec<std::path::PathBuf> {
    let root = paths::workspace_root();
    CRATES
        .iter()
        .flat_map(|c| c.targets.iter().map(|t| root.join(t.seeds)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_stats_are_read_from_libfuzzer_output() {
        let log = "#1024\tDONE   cov: 10\nstat::number_of_executed_units: 123456\nstat::peak_rss_mb: 80\n";
        assert_eq!(
            final_stat(log, "stat::number_of_executed_units"),
            Some(123_456)
        );
        assert_eq!(final_stat(log, "stat::peak_rss_mb"), Some(80));
        assert_eq!(final_stat(log, "stat::missing"), None);
    }

    #[test]
    fn every_target_has_seeds_and_a_source_file() {
        for dir in seed_dirs() {
            let seeds = fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .count();
            assert!(seeds > 0, "{} holds no seed", dir.display());
        }
        let root = paths::workspace_root();
        for c in CRATES {
            for t in c.targets.iter().map(|t| t.name) {
                let source = root
                    .join(c.dir)
                    .join("fuzz_targets")
                    .join(format!("{t}.rs"));
                assert!(source.is_file(), "{} is missing", source.display());
                let manifest = fs::read_to_string(root.join(c.dir).join("Cargo.toml")).unwrap();
                assert!(
                    manifest.contains(&format!("name = \"{t}\"")),
                    "{t} is not a [[bin]] of {}",
                    c.dir
                );
            }
        }
    }
}
