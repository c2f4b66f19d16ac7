//! `cargo xtask …`: the project's own commands, so that a fresh Debian 12 machine gets
//! from `git clone` to a demo or a green CI run with cargo alone.
//!
//! Each subcommand prints one line per step and exits non-zero when a step fails.

mod bench;
mod ci;
mod command;
mod demo;
mod deploy_test;
mod dist;
mod fuzz;
mod paths;
mod profile;
mod setup;
mod shifted_clock;
mod sim;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about = "Setup, demo and CI for the bidder workspace"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what the build, demo and tests need (idempotent; seconds when done).
    ///
    /// 1. apt packages: LLVM 22 for bpf-linker, servers and tools the tests and
    ///    benchmarks drive (redis, nginx, wrk, promtool, perf, flatc, ip, socat).
    ///    Runs `apt-get update` only when something is missing; needs root for that.
    /// 2. rustup components of the active toolchain: rust-src (builds `core` for the BPF
    ///    target), clippy and rustfmt (used by `ci`).
    /// 3. bpf-linker, built from crates.io against the system LLVM 22.
    /// 4. the fuzzing toolchain: rustup's nightly with rust-src, and cargo-fuzz.
    #[command(verbatim_doc_comment)]
    Setup,
    /// Run setup if needed, then every check CI runs, in this order:
    ///
    /// 1. setup (fast when nothing is missing)
    /// 2. rustfmt: `cargo fmt --all --check`, and the same for bidder-ebpf
    /// 3. clippy: `cargo clippy --workspace --all-targets -- -D warnings`
    /// 4. clippy for bidder-ebpf on the BPF target, `-D warnings`
    /// 5. ansible-lint --profile production over ansible/
    /// 6. promtool: monitoring/prometheus rules checked and their unit tests
    /// 7. tests: `cargo test --workspace --no-fail-fast` (as root this includes the
    ///    tests that load XDP programs and create network namespaces)
    /// 8. fuzz: every fuzz target for 30 s (`cargo xtask fuzz`)
    /// 9. deploy-test: the playbook converged into a booted Debian 12 (needs root)
    /// 10. the tests again with the wall clock 400 days ahead
    ///
    /// Output streams as it comes; a failed step does not stop the later ones, so one
    /// run shows every problem. Ends with the failed checks, if any, and the test
    /// counts summed over all test binaries; exit status 1 if anything failed. Starts
    /// nothing that outlives it.
    #[command(verbatim_doc_comment)]
    Ci,
    /// Run setup if needed, build the bidder, print `bidder decide` for every
    /// `bidder/examples/traffic/*.json`, then run the real server on
    /// `bidder/examples/demo.toml`, POST the same requests, show /metrics, stop it.
    #[command(verbatim_doc_comment)]
    Demo,
    /// Build the release archive operators install (ansible/roles/bidder):
    /// target/dist/bidder-<version>-<digest>-x86_64-linux.tar.gz with bin/{bidder,agent,
    /// bidderctl}, systemd/, monitoring/, docs/, example configuration and traffic;
    /// target/dist/bidder-latest.tar.gz points at it.
    #[command(verbatim_doc_comment)]
    Dist {
        /// Take the dev-profile binaries (what `cargo test` built) instead of --release.
        #[arg(long)]
        debug: bool,
    },
    /// Converge ansible/site.yml into a booted Debian 12 (debootstrap, cached under
    /// target/deploy-test; systemd-nspawn with systemd as PID 1, over SSH on a veth) and
    /// check it from outside: services active, XDP attached, a bid over the veth, a
    /// reload, kill -9 restarted by systemd, a second converge with changed=0, sysctls,
    /// systemd-analyze. Needs root; everything is torn down afterwards.
    #[command(verbatim_doc_comment)]
    DeployTest,
    /// Fuzz every parser that faces the network or an operator (cargo-fuzz targets in
    /// bidder/fuzz and agent/fuzz: HTTP request, chunked/gzip body, OpenRTB request,
    /// notice query, configuration, control-socket line), each for `--minutes`, from
    /// the seed corpus in the repository; the corpus grows in target/fuzz/corpus and
    /// crashes land in target/fuzz/artifacts. Prints inputs run per target.
    #[command(verbatim_doc_comment)]
    Fuzz {
        /// Minutes per target.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        minutes: u64,
        /// Seconds per target instead of minutes (a quick check).
        #[arg(long, conflicts_with = "minutes", value_parser = clap::value_parser!(u64).range(1..))]
        seconds: Option<u64>,
        /// Only this target.
        #[arg(long)]
        target: Option<String>,
        /// Stop a target after this many inputs, if its time is not up first.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        max_inputs: Option<u64>,
    },
    /// The auction simulator: every standard scenario (default market, poorer
    /// feedback, forecast and price stress, delayed notices), three seeds each, every
    /// strategy (floor x 1.10, shading 0.90, unshaded, the agent's controller) against
    /// the real bidder and agent on a simulated clock, and the oracle. Prints one
    /// table per scenario; reports and SVG pictures go to target/auction-sim/.
    #[command(verbatim_doc_comment)]
    Sim {
        /// One JSON object on stdout instead of the tables: `strategies` holds the
        /// default scenario's rows averaged over the seeds, `scenarios` every one.
        #[arg(long)]
        json: bool,
        /// The default scenario only.
        #[arg(long)]
        quick: bool,
    },
    /// Benchmarks, each comparing in one run on this machine.
    #[command(subcommand)]
    Bench(BenchTask),
    /// Profile the bidder under load: build it with symbols and frame pointers, run the
    /// io_uring engine (CPU 0) under loadgen (CPU 1), `perf record -g` it, and write a
    /// flamegraph SVG and its folded stacks to perf/reports/flamegraph-<time>.*; print
    /// the top functions by self and total time, `perf stat` software counters and the
    /// decision vs request latency from /metrics.
    #[command(verbatim_doc_comment)]
    Profile {
        /// Seconds to sample for (load runs 4 s longer: warm-up, perf stat, tail).
        #[arg(long, default_value_t = 10)]
        duration_s: u32,
        /// loadgen's target rate, requests per second.
        #[arg(long, default_value_t = 2_000)]
        rate: u32,
        /// Directory for the SVG and folded stacks instead of perf/reports.
        #[arg(long)]
        out_dir: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
enum BenchTask {
    /// The decision core: per-request time over the corpus and for a banner request
    /// against 1,000 campaigns (`cargo bench -p bidder --bench core`); arguments after
    /// `--` go to the benchmark (`--quick`, `corpus`, `banner`).
    Core {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// io_uring (SQPOLL off and on), tokio and nginx `return 204` under the same
    /// clients: wrk for saturation, loadgen (open loop) for latency at half of it.
    /// Writes perf/reports/engines-<time>.{json,md}.
    Engines,
    /// CPU per over-limit request: dropped by the XDP front versus answered 204 by the
    /// bidder in user space (`cargo bench -p bidder --bench xdp`; needs root).
    Xdp,
    /// Fleet mode at saturation: one bidder alone and leasing its budgets from a local
    /// redis-server, under the same wrk load, alternating; Redis commands and lease
    /// grants per second.
    Fleet,
}

fn main() -> ExitCode {
    let result = match Cli::parse().task {
        Task::Setup => setup::run(),
        Task::Ci => ci::run(),
        Task::Demo => demo::run(),
        Task::Dist { debug } => dist::run(if debug {
            dist::Profile::Debug
        } else {
            dist::Profile::Release
        })
        .map(drop),
        Task::DeployTest => deploy_test::run(),
        Task::Fuzz {
            minutes,
            seconds,
            target,
            max_inputs,
        } => fuzz::run(
            seconds.unwrap_or(minutes * 60),
            max_inputs,
            target.as_deref(),
        ),
        Task::Sim { json, quick } => sim::run(json, quick),
        Task::Bench(BenchTask::Core { args }) => bench::core(&args),
        Task::Bench(BenchTask::Engines) => bench::engines(),
        Task::Bench(BenchTask::Xdp) => bench::xdp(),
        Task::Bench(BenchTask::Fleet) => bench::fleet(),
        Task::Profile {
            duration_s,
            rate,
            out_dir,
        } => profile::run(&profile::Options {
            duration_s,
            rate,
            out_dir,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
