//! `cargo xtask ci`: the one command CI runs (`.ci/run` calls it), and the one a
//! developer runs before pushing. Same steps, same order, same flags.

use std::{path::Path, process::Command, time::Instant};

use anyhow::{bail, Context as _, Result};

use crate::{command, deploy_test, fuzz, paths, setup, shifted_clock};

/// The eBPF crate: outside the workspace, so fmt and clippy need its manifest.
const EBPF_MANIFEST: &str = "bidder-ebpf/Cargo.toml";
const BPF_TARGET: &str = "bpfel-unknown-none";

/// Runs setup, then every check; later checks run even when an earlier one failed.
pub fn run() -> Result<()> {
    let started = Instant::now();
    println!("ci: step setup");
    setup::run()?;

    let root = paths::workspace_root();
    let steps: [(&str, Command); 7] = [
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
        ("ansible-lint (production profile)", {
            let mut cmd = Command::new("ansible-lint");
            cmd.args(["--offline", "--profile", "production", "--nocolor"]);
            cmd.current_dir(root.join("ansible"));
            cmd
        }),
        ("promtool: monitoring rules and their tests", {
            let mut cmd = Command::new("sh");
            cmd.args([
                "-c",
                "promtool check rules bidder.rules.yml && promtool test rules bidder.rules.test.yml",
            ]);
            cmd.current_dir(root.join("monitoring/prometheus"));
            cmd
        }),
        (TESTS_STEP, {
            let mut cmd = command::cargo();
            // --no-fail-fast: one failing test binary must not hide the others' results.
            cmd.args(["test", "--workspace", "--no-fail-fast"]);
            cmd
        }),
    ];

    let mut failed = Vec::new();
    let mut tally = TestTally::default();
    let total = steps.len() + 3;
    let skip_log = fresh_skip_log("skips.log")?;
    for (name, mut cmd) in steps {
        println!("ci: step {name}: {}", command::describe(&cmd));
        let step_started = Instant::now();
        if cmd.get_current_dir().is_none() {
            cmd.current_dir(root);
        }
        let result = if name == TESTS_STEP {
            cmd.env(testkit::SKIP_LOG_ENV, &skip_log);
            command::stream_lines(&mut cmd, |line| tally.add(line))
        } else {
            command::stream(&mut cmd)
        };
        report_step(name, step_started, result, &mut failed);
    }
    tally.count_skips(&testkit::read_skips(&skip_log));

    let step_started = Instant::now();
    println!("ci: step {FUZZ_STEP}: cargo xtask fuzz, {FUZZ_SECONDS_PER_TARGET}s per target");
    report_step(
        FUZZ_STEP,
        step_started,
        fuzz::run(FUZZ_SECONDS_PER_TARGET, None, None),
        &mut failed,
    );

    // After the tests: they built the debug binaries the release archive takes.
    let step_started = Instant::now();
    println!("ci: step {DEPLOY_STEP}: cargo xtask deploy-test");
    report_step(DEPLOY_STEP, step_started, deploy_test::run(), &mut failed);

    let step_started = Instant::now();
    println!("ci: step {SHIFTED_STEP}: every test binary but perf's and xtask's, under faketime");
    let mut shifted = TestTally::default();
    let result = run_shifted(&mut shifted);
    println!("{SHIFTED_STEP}: {}", shifted.summary());
    report_step(SHIFTED_STEP, step_started, result, &mut failed);

    let elapsed = started.elapsed().as_secs_f64();
    if failed.is_empty() {
        println!("ci: OK, all {total} checks succeeded after setup, in {elapsed:.0}s");
    } else {
        println!(
            "ci: FAILED {} of {total} checks ({}) in {elapsed:.0}s",
            failed.len(),
            failed.join(", ")
        );
    }
    tally.print_panics(TESTS_STEP);
    shifted.print_panics(SHIFTED_STEP);
    // Last, in the plain form CI reads: the test counts over every test binary, rather
    // than whichever binary (often an empty doc-test run) happened to finish last.
    println!("{}", tally.summary());
    if failed.is_empty() {
        return Ok(());
    }
    bail!("ci failed")
}

/// Name of the step whose output is tallied.
const TESTS_STEP: &str = "tests";
/// Every fuzz target, briefly: enough to catch a parser change that crashes on the
/// seeds' neighbourhood; long runs are `cargo xtask fuzz --minutes N`.
const FUZZ_STEP: &str = "fuzz";
const FUZZ_SECONDS_PER_TARGET: u64 = 30;
/// The Ansible playbook converged into a booted Debian 12 (see [`deploy_test`]).
const DEPLOY_STEP: &str = "deploy-test";
/// The date-bomb step (see [`shifted_clock`]).
const SHIFTED_STEP: &str = "tests with the wall clock 400 days ahead";

fn report_step(
    name: &'static str,
    started: Instant,
    result: Result<()>,
    failed: &mut Vec<&'static str>,
) {
    match result {
        Ok(()) => println!(
            "ci: step {name}: ok in {:.0}s",
            started.elapsed().as_secs_f64()
        ),
        Err(err) => {
            println!("ci: step {name}: FAILED: {err:#}");
            failed.push(name);
        }
    }
}

/// An empty file under `target/ci/` for the skips test suites record.
fn fresh_skip_log(name: &str) -> Result<std::path::PathBuf> {
    let dir = paths::target_dir().join("ci");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, "").with_context(|| format!("emptying {}", path.display()))?;
    Ok(path)
}

/// The tests step again, each binary run directly under faketime; every binary runs
/// even when one fails.
fn run_shifted(tally: &mut TestTally) -> Result<()> {
    shifted_clock::check_faketime_shifts()?;
    let mut list = shifted_clock::list_command();
    list.current_dir(paths::workspace_root());
    let json = command::output(&mut list)?;
    let binaries = shifted_clock::test_binaries(&json);
    if binaries.is_empty() {
        bail!("`cargo test --no-run` listed no test binaries");
    }
    let skip_log = fresh_skip_log("skips-shifted.log")?;
    let mut failures = Vec::new();
    for binary in &binaries {
        let mut cmd = shifted_clock::run_command(binary);
        cmd.env(testkit::SKIP_LOG_ENV, &skip_log);
        let name = file_name(&binary.executable);
        println!("ci: {SHIFTED_STEP}: {}: {name}", binary.package);
        if let Err(e) = command::stream_lines(&mut cmd, |line| tally.add(line)) {
            failures.push(format!("{name}: {e:#}"));
        }
    }
    tally.count_skips(&testkit::read_skips(&skip_log));
    if !failures.is_empty() {
        bail!(
            "{} of {} binaries failed: {}",
            failures.len(),
            binaries.len(),
            failures.join("; ")
        );
    }
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Test counts summed over every `test result:` line libtest prints, one per binary,
/// with the skips tests recorded (libtest reports those as passed) moved from passed
/// to skipped.
#[derive(Default, Debug, PartialEq, Eq)]
struct TestTally {
    passed: u64,
    failed: u64,
    ignored: u64,
    /// What tests recorded through `testkit::skip`, one line each.
    skips: Vec<String>,
    /// The first lines of each test panic (where and why), repeated at the end of the
    /// run: a CI log cut to its tail still says why a test failed.
    panics: Vec<String>,
    /// Lines still to add to the last panic.
    panic_lines_left: usize,
}

/// Panics kept for the end of the run, and lines (and bytes per line) kept of each.
const MAX_PANICS_REPEATED: usize = 20;
const PANIC_LINES_KEPT: usize = 6;
const PANIC_LINE_BYTES_KEPT: usize = 400;

impl TestTally {
    /// Adds the counts from `line` if it is a libtest result line; ignores anything else.
    fn add(&mut self, line: &str) {
        self.keep_panic(line);
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(['.', ';']) {
            let mut words = part.split_whitespace();
            let (Some(count), Some(what)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(count) = count.parse::<u64>() else {
                continue;
            };
            match what {
                "passed" => self.passed += count,
                "failed" => self.failed += count,
                "ignored" => self.ignored += count,
                _ => {}
            }
        }
    }

    /// Keeps `thread '…' panicked at …` and the message lines after it, up to the
    /// backtrace or a blank line.
    fn keep_panic(&mut self, line: &str) {
        let cut = |l: &str| {
            let mut end = l.len().min(PANIC_LINE_BYTES_KEPT);
            while !l.is_char_boundary(end) {
                end -= 1;
            }
            l[..end].to_owned()
        };
        if line.starts_with("thread '") && line.contains("panicked at") {
            self.panic_lines_left = 0;
            if self.panics.len() < MAX_PANICS_REPEATED {
                self.panics.push(cut(line));
                self.panic_lines_left = PANIC_LINES_KEPT - 1;
            }
        } else if self.panic_lines_left > 0 {
            if line.trim().is_empty() || line.starts_with("stack backtrace:") {
                self.panic_lines_left = 0;
            } else if let Some(last) = self.panics.last_mut() {
                last.push('\n');
                last.push_str(&cut(line));
                self.panic_lines_left -= 1;
            }
        }
    }

    /// Prints the kept panics, if any.
    fn print_panics(&self, step: &str) {
        if self.panics.is_empty() {
            return;
        }
        println!("ci: {step}: why tests failed (the first lines of each panic):");
        for panic in &self.panics {
            for line in panic.lines() {
                println!("  {line}");
            }
        }
    }

    /// Moves the tests that recorded a skip from passed to skipped, and lists them.
    fn count_skips(&mut self, skips: &[String]) {
        for skip in skips {
            println!("ci: skipped: {skip}");
        }
        self.skips.extend_from_slice(skips);
    }

    fn summary(&self) -> String {
        let recorded = self.skips.len() as u64;
        format!(
            "tests: {} passed, {} failed, {} skipped",
            self.passed.saturating_sub(recorded),
            self.failed,
            self.ignored + recorded
        )
    }
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

#[cfg(test)]
mod tests {
    use super::{TestTally, MAX_PANICS_REPEATED, PANIC_LINE_BYTES_KEPT};

    #[test]
    fn tally_sums_result_lines_and_ignores_the_rest() {
        let mut tally = TestTally::default();
        for line in [
            "test result: ok. 74 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.46s",
            "test something ... ok",
            "test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 5 filtered out; finished in 0.01s",
            "running 4 tests",
        ] {
            tally.add(line);
        }
        assert_eq!(
            tally,
            TestTally {
                passed: 77,
                failed: 1,
                ignored: 2,
                ..TestTally::default()
            }
        );
        assert_eq!(tally.summary(), "tests: 77 passed, 1 failed, 2 skipped");
        tally.count_skips(&["xdp_loader: needs root".to_owned()]);
        assert_eq!(tally.summary(), "tests: 76 passed, 1 failed, 3 skipped");
    }

    #[test]
    fn panics_are_kept_from_where_to_the_backtrace_and_bounded() {
        let mut tally = TestTally::default();
        for line in [
            "test a ... FAILED",
            "---- a stdout ----",
            "",
            "thread 'a' (123) panicked at src/a.rs:4:5:",
            "timed out waiting for the bidder",
            "stack backtrace:",
            "   0: __rustc::rust_begin_unwind",
            "thread 'b' (124) panicked at src/b.rs:9:1:",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six: past the lines kept",
            "",
            "failures:",
        ] {
            tally.add(line);
        }
        assert_eq!(
            tally.panics,
            vec![
                "thread 'a' (123) panicked at src/a.rs:4:5:\ntimed out waiting for the bidder",
                "thread 'b' (124) panicked at src/b.rs:9:1:\none\ntwo\nthree\nfour\nfive",
            ]
        );
        let long = format!("thread 'c' panicked at x.rs:1:1:\n{}", "é".repeat(300));
        for _ in 0..MAX_PANICS_REPEATED + 5 {
            for line in long.lines() {
                tally.add(line);
            }
        }
        assert_eq!(tally.panics.len(), MAX_PANICS_REPEATED);
        assert!(tally
            .panics
            .iter()
            .all(|p| p.lines().all(|l| l.len() <= PANIC_LINE_BYTES_KEPT)));
    }
}
