//! `cargo xtask bench`: benchmarks that compare, in one run on this machine.
//!
//! - `core`: the decision core alone (`cargo bench -p bidder --bench core`).
//! - `xdp`: CPU per over-limit request, XDP drop versus user-space 204
//!   (`cargo bench -p bidder --bench xdp`).
//! - `engines`: the io_uring engine (SQPOLL off and on), the tokio engine and nginx
//!   `return 204`, one after another under the same clients; each engine also answering
//!   204 unread (`bidder serve-io`: its I/O cost alone), with two workers, with 16
//!   requests pipelined, and answering in FlatBuffers. Servers are pinned to CPUs
//!   0…workers−1 and the client to the next CPU. Saturation is wrk's throughput (closed
//!   loop, the shipped `perf/wrk/bid.lua`); latency is the open-loop `loadgen` at half
//!   of each target's saturation, so coordinated omission cannot flatter it. Every
//!   target runs three times, round after round; the report gives each run and the
//!   medians.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use std::{fs, thread};

use anyhow::{bail, Context as _, Result};

use crate::{command, paths, setup};

/// Ports the benchmark servers listen on (the bidder's admin port is `BID_PORT + 1`,
/// its notice listener `BID_PORT + 2`).
pub(crate) const BID_PORT: u16 = 18_080;
const NGINX_PORT: u16 = 8_090;
/// wrk run per target, seconds, and its connections.
const WRK_DURATION_S: u32 = 10;
const WRK_CONNECTIONS: u32 = 64;
/// loadgen run at half saturation, seconds.
const HALF_RATE_DURATION_S: u32 = 8;
/// How long a server may take to accept connections.
const START_TIMEOUT_MS: u64 = 15_000;
/// Where a one-worker server and its client run (profile and the one-worker rows).
pub(crate) const SERVER_CPU: usize = 0;
pub(crate) const CLIENT_CPU: usize = 1;

/// What serves a target.
pub(crate) enum Kind {
    /// `bidder run` on this engine, with extra `[server]` lines: the full bid path.
    Bidder {
        engine: &'static str,
        extra: &'static str,
    },
    /// `bidder serve-io` on this engine: the same I/O and HTTP framing, every request
    /// answered 204 unread; what the engine costs apart from the decision.
    IoOnly { engine: &'static str },
    /// nginx `return 204` (`perf/nginx/return204.conf`).
    Nginx,
}

/// How the client loads a target.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Load {
    /// The example requests, one in flight per connection; then latency at half of the
    /// saturation rate.
    Bids,
    /// The example requests written `depth` at a time on each connection before the
    /// answers are read (pipelining, as TechEmpower runs it); saturation only.
    Pipelined(u32),
    /// The example requests with `Accept: application/x-flatbuffers`: the FlatBuffers
    /// answer; saturation only.
    FlatBuffers,
}

impl Load {
    fn label(self) -> String {
        match self {
            Load::Bids => "bids".into(),
            Load::Pipelined(depth) => format!("pipelined ×{depth}"),
            Load::FlatBuffers => "FlatBuffers".into(),
        }
    }

    /// Options for `perf/wrk/bid.lua`, before the request files.
    fn wrk_options(self) -> Vec<String> {
        match self {
            Load::Bids => Vec::new(),
            Load::Pipelined(depth) => vec![format!("--depth={depth}")],
            Load::FlatBuffers => vec!["--accept=application/x-flatbuffers".into()],
        }
    }
}

/// One benchmarked server and its load (also what `xtask profile` starts).
pub(crate) struct Target {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    /// Worker threads, pinned to CPUs 0, 1, … (nginx: always one worker).
    pub(crate) workers: usize,
    pub(crate) load: Load,
}

/// Depth of the pipelined runs (TechEmpower's plaintext test uses 16).
const PIPELINE_DEPTH: u32 = 16;
/// Times each target is run; the report gives every run and the median.
const RUNS: usize = 3;

const IO_URING: Kind = Kind::Bidder {
    engine: "io_uring",
    extra: "",
};
const TOKIO: Kind = Kind::Bidder {
    engine: "tokio",
    extra: "",
};

const TARGETS: [Target; 14] = [
    Target {
        name: "io_uring",
        kind: IO_URING,
        workers: 1,
        load: Load::Bids,
    },
    Target {
        name: "io_uring I/O only",
        kind: Kind::IoOnly { engine: "io_uring" },
        workers: 1,
        load: Load::Bids,
    },
    Target {
        name: "io_uring send",
        kind: Kind::Bidder {
            engine: "io_uring",
            extra: "ring_write = \"send\"\n",
        },
        workers: 1,
        load: Load::Bids,
    },
    Target {
        name: "io_uring+sqpoll",
        kind: Kind::Bidder {
            engine: "io_uring",
            extra: "sqpoll = true\nsqpoll_cpus = [1]\n",
        },
        workers: 1,
        load: Load::Bids,
    },
    Target {
        name: "io_uring ×2 workers",
        kind: IO_URING,
        workers: 2,
        load: Load::Bids,
    },
    Target {
        name: "tokio",
        kind: TOKIO,
        workers: 1,
        load: Load::Bids,
    },
    Target {
        name: "tokio I/O only",
        kind: Kind::IoOnly { engine: "tokio" },
        workers: 1,
        load: Load::Bids,
    },
    Target {
        name: "tokio ×2 workers",
        kind: TOKIO,
        workers: 2,
        load: Load::Bids,
    },
    Target {
        name: "nginx-204",
        kind: Kind::Nginx,
        workers: 1,
        load: Load::Bids,
    },
    Target {
        name: "io_uring pipelined",
        kind: IO_URING,
        workers: 1,
        load: Load::Pipelined(PIPELINE_DEPTH),
    },
    Target {
        name: "tokio pipelined",
        kind: TOKIO,
        workers: 1,
        load: Load::Pipelined(PIPELINE_DEPTH),
    },
    Target {
        name: "nginx-204 pipelined",
        kind: Kind::Nginx,
        workers: 1,
        load: Load::Pipelined(PIPELINE_DEPTH),
    },
    Target {
        name: "io_uring FlatBuffers",
        kind: IO_URING,
        workers: 1,
        load: Load::FlatBuffers,
    },
    Target {
        name: "tokio FlatBuffers",
        kind: TOKIO,
        workers: 1,
        load: Load::FlatBuffers,
    },
];

/// What loadgen measured at one rate (in `bench engines`, half of a run's saturation).
#[derive(Clone, Copy)]
pub(crate) struct Latency {
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
    /// Share of answers that were bids.
    pub(crate) bid_share: f64,
}

/// One run of one target.
struct Sample {
    saturation_rps: f64,
    /// `None` for saturation-only loads.
    half: Option<Latency>,
}

/// The CPUs of a target's server (`0..workers`, as taskset and the bidder's `cores`
/// list them) and of its client: the first CPU past the server's, or the last one
/// (then shared with a worker) when the host has no more.
fn cpus(workers: usize) -> (String, usize, bool) {
    let host = std::thread::available_parallelism().map_or(1, |n| n.get());
    let server = (0..workers)
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let apart = workers < host;
    let client = if apart { workers } else { host - 1 };
    (server, client, !apart)
}

/// `cargo xtask bench core [ARGS]`.
pub fn core(args: &[String]) -> Result<()> {
    setup::run()?;
    command::stream(
        command::cargo()
            .args(["bench", "--package", "bidder", "--bench", "core", "--"])
            .args(args)
            .current_dir(paths::workspace_root()),
    )
}

/// `cargo xtask bench xdp`.
pub fn xdp() -> Result<()> {
    setup::run()?;
    command::stream(
        command::cargo()
            .args(["bench", "--package", "bidder", "--bench", "xdp"])
            .current_dir(paths::workspace_root()),
    )
}

/// `cargo xtask bench engines`: every target [`RUNS`] times, round after round (so a
/// slow spell of the machine touches every target alike), then one report of medians.
pub fn engines() -> Result<()> {
    setup::run()?;
    let root = paths::workspace_root();
    println!("bench: building bidder and loadgen (release)");
    command::stream(
        command::cargo()
            .args([
                "build",
                "--release",
                "--package",
                "bidder",
                "--package",
                "perf",
                "--bins",
            ])
            .current_dir(root),
    )?;
    let release = paths::target_dir().join("release");
    let work = std::env::temp_dir().join(format!("bidder-bench-{}", std::process::id()));
    fs::create_dir_all(&work)?;
    let load_before = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut samples: Vec<Vec<Sample>> = TARGETS.iter().map(|_| Vec::new()).collect();
    for run in 1..=RUNS {
        for (target, samples) in TARGETS.iter().zip(&mut samples) {
            println!("\nbench: ── {} (run {run} of {RUNS}) ──", target.name);
            let sample = measure(target, root, &release, &work)?;
            samples.push(sample);
        }
    }
    let _ = fs::remove_dir_all(&work);
    report(root, &samples, load_before.trim())
}

/// Where `cargo xtask bench fleet` runs its redis-server.
const FLEET_REDIS_PORT: u16 = 18_090;
/// Alternating runs of each side in `cargo xtask bench fleet`.
const FLEET_RUNS: usize = 3;

/// `cargo xtask bench fleet`: the one-worker io_uring bidder saturated by wrk, alone and
/// in fleet mode (its budgets leased from a local redis-server every 100 ms), in
/// alternating runs; prints both rates (their ratio is what fleet mode costs a
/// saturated host: a compare-and-swap on the bid path, the leases on the control
/// thread), Redis commands per second and lease grants per second.
pub fn fleet() -> Result<()> {
    setup::run()?;
    let root = paths::workspace_root();
    println!("bench: building bidder (release)");
    command::stream(
        command::cargo()
            .args(["build", "--release", "--package", "bidder", "--bins"])
            .current_dir(root),
    )?;
    let release = paths::target_dir().join("release");
    let work = std::env::temp_dir().join(format!("bidder-bench-fleet-{}", std::process::id()));
    fs::create_dir_all(&work)?;
    let redis = Server(
        Command::new("taskset")
            .args(["-c", &CLIENT_CPU.to_string(), "redis-server"])
            .args([
                "--port",
                &FLEET_REDIS_PORT.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server")?,
    );
    let url = format!("http://127.0.0.1:{BID_PORT}/bid/exchange-a");
    let mut single = Vec::new();
    let mut leased = Vec::new();
    for run in 1..=FLEET_RUNS {
        for fleet in [false, true] {
            let mut config = bench_config(root, "io_uring", "", 1)?;
            if fleet {
                // Fleet mode takes budgets below 10^13 micros (exact in Redis's Lua);
                // 10^12 still outlasts any run.
                config = config.replace(
                    "daily_budget_micros = 1_000_000_000_000_000",
                    "daily_budget_micros = 1_000_000_000_000",
                );
                config.push_str(&format!(
                    "\n[fleet]\nredis_url = \"redis://127.0.0.1:{FLEET_REDIS_PORT}/\"\nkey_prefix = \"bench-{}-{run}\"\nreport_interval_ms = 100\nlearning_ms = 200\n",
                    std::process::id()
                ));
            }
            let path = work.join(format!("fleet-{fleet}.toml"));
            fs::write(&path, config)?;
            let mut server = Server(
                Command::new("taskset")
                    .args(["-c", &SERVER_CPU.to_string()])
                    .arg(release.join("bidder"))
                    .args(["run", "--config"])
                    .arg(&path)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("starting the bidder")?,
            );
            wait_listening(&mut server, BID_PORT)?;
            if fleet {
                // Measure once the first leases are granted.
                let started = Instant::now();
                while admin_metric(BID_PORT + 1, "bidder_fleet_granted_micros_total")? == 0.0 {
                    if started.elapsed() > Duration::from_secs(10) {
                        bail!("the bidder got no lease from redis-server in 10 s");
                    }
                    thread::sleep(Duration::from_millis(50));
                }
            }
            let redis_before = redis_stats()?;
            let syncs_before = admin_metric(BID_PORT + 1, "bidder_fleet_syncs_total")?;
            let started = Instant::now();
            let rps = wrk(root, &url, Load::Bids, CLIENT_CPU)?;
            let elapsed_s = started.elapsed().as_secs_f64();
            let label = if fleet { "fleet" } else { "single host" };
            if fleet {
                let redis_after = redis_stats()?;
                let syncs = admin_metric(BID_PORT + 1, "bidder_fleet_syncs_total")? - syncs_before;
                let commands = (redis_after.0 - redis_before.0) / elapsed_s;
                let scripts = (redis_after.1 - redis_before.1) / elapsed_s;
                println!(
                    "bench: fleet run {run}: {rps:.0} req/s; Redis {commands:.0} commands/s \
                     ({scripts:.0} scripts/s), {:.1} lease calls/s from the bidder",
                    syncs / elapsed_s
                );
                leased.push((rps, commands, scripts, syncs / elapsed_s));
            } else {
                println!("bench: {label} run {run}: {rps:.0} req/s");
                single.push(rps);
            }
            drop(server);
        }
    }
    drop(redis);
    let _ = fs::remove_dir_all(&work);
    let single_rps = median(&mut single.clone());
    let fleet_rps = median(&mut leased.iter().map(|l| l.0).collect::<Vec<_>>());
    let commands = median(&mut leased.iter().map(|l| l.1).collect::<Vec<_>>());
    let calls = median(&mut leased.iter().map(|l| l.3).collect::<Vec<_>>());
    println!(
        "\nbench fleet (medians of {FLEET_RUNS} alternating runs, server on CPU {SERVER_CPU}, wrk and \
         redis-server on CPU {CLIENT_CPU}): single host {single_rps:.0} req/s, fleet \
         {fleet_rps:.0} req/s ({:.2}×); Redis {commands:.0} commands/s, {calls:.1} lease \
         calls/s (one campaign bidding)",
        fleet_rps / single_rps
    );
    Ok(())
}

/// `total_commands_processed` and the script calls (EVALSHA, EVAL) of the bench's
/// redis-server so far.
fn redis_stats() -> Result<(f64, f64)> {
    let port = FLEET_REDIS_PORT.to_string();
    let info = |section: &str| -> Result<String> {
        let out = Command::new("redis-cli")
            .args(["-p", &port, "INFO", section])
            .output()
            .context("redis-cli")?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let stats = info("stats")?;
    let total = stats
        .lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    // cmdstat_evalsha:calls=12,usec=…
    let calls = |text: &str, command: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(command))
            .and_then(|l| l.split(',').find_map(|kv| kv.strip_prefix("calls=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let commands = info("commandstats")?;
    let scripts = calls(&commands, "cmdstat_evalsha:") + calls(&commands, "cmdstat_eval:");
    Ok((total, scripts))
}

/// The sum of every sample of `name` on the bidder's admin port.
fn admin_metric(port: u16, name: &str) -> Result<f64> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// One run of `target`: saturation, then (for bids) latency at half of it.
fn measure(target: &Target, root: &Path, release: &Path, work: &Path) -> Result<Sample> {
    let server = start(target, root, release, work)?;
    let url = format!("http://127.0.0.1:{}/bid/exchange-a", port(target));
    let (_, client_cpu, _) = cpus(target.workers);
    let saturation_rps = wrk(root, &url, target.load, client_cpu)?;
    let half = match target.load {
        Load::Bids => {
            let rate = (saturation_rps / 2.0).max(1.0);
            let half = loadgen(root, release, &url, rate, HALF_RATE_DURATION_S, client_cpu)?;
            println!(
                "bench: {}: at {rate:.0} req/s p50 {} µs, p99 {} µs",
                target.name, half.p50_us, half.p99_us
            );
            Some(half)
        }
        Load::Pipelined(_) | Load::FlatBuffers => None,
    };
    drop(server);
    println!(
        "bench: {}: {saturation_rps:.0} req/s saturated",
        target.name
    );
    Ok(Sample {
        saturation_rps,
        half,
    })
}

fn port(target: &Target) -> u16 {
    match target.kind {
        Kind::Bidder { .. } | Kind::IoOnly { .. } => BID_PORT,
        Kind::Nginx => NGINX_PORT,
    }
}

/// A server process, killed when dropped.
pub(crate) struct Server(Child);

impl Server {
    /// The server's own pid: `taskset` execs it, so this is what perf attaches to.
    pub(crate) fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn start(target: &Target, root: &Path, release: &Path, work: &Path) -> Result<Server> {
    let (server_cpus, _, _) = cpus(target.workers);
    let mut cmd = Command::new("taskset");
    cmd.arg("-c")
        .arg(&server_cpus)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let config_file = |engine: &str, extra: &str| -> Result<PathBuf> {
        let config = bench_config(root, engine, extra, target.workers)?;
        let name: String = target
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let path = work.join(format!("{name}.toml"));
        fs::write(&path, config)?;
        Ok(path)
    };
    match target.kind {
        Kind::Bidder { engine, extra } => {
            cmd.arg(release.join("bidder"))
                .args(["run", "--config"])
                .arg(config_file(engine, extra)?);
        }
        Kind::IoOnly { engine } => {
            cmd.arg(release.join("bidder"))
                .args(["serve-io", "--config"])
                .arg(config_file(engine, "")?);
        }
        Kind::Nginx => {
            let prefix = work.join("nginx");
            fs::create_dir_all(&prefix)?;
            cmd.arg("nginx")
                .arg("-p")
                .arg(&prefix)
                .arg("-c")
                .arg(root.join("perf/nginx/return204.conf"))
                .args(["-e", "stderr"]);
        }
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", target.name))?;
    let mut server = Server(child);
    wait_listening(&mut server, port(target))?;
    Ok(server)
}

/// The demo configuration made fit for saturation: `workers` workers on CPUs 0, 1, …,
/// no partner limit, budgets that cannot run out, reservations that expire within the
/// run, and the deadline cap of production (8 ms) kept.
fn bench_config(root: &Path, engine: &str, extra_server: &str, workers: usize) -> Result<String> {
    let (cores, _, _) = cpus(workers);
    let demo = root.join("bidder/examples/demo.toml");
    let text = fs::read_to_string(&demo).with_context(|| format!("reading {}", demo.display()))?;
    let key = root.join("bidder/examples/demo-notice.key");
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        let replaced = if trimmed.starts_with("listen = \"127.0.0.1:9091\"") {
            format!("listen = \"127.0.0.1:{}\"", BID_PORT + 2)
        } else if trimmed.starts_with("listen =") {
            format!("listen = \"127.0.0.1:{BID_PORT}\"")
        } else if trimmed.starts_with("admin_listen =") {
            format!("admin_listen = \"127.0.0.1:{}\"", BID_PORT + 1)
        } else if trimmed.starts_with("engine =") {
            format!("engine = \"{engine}\"\n{extra_server}")
        } else if trimmed.starts_with("cores =") {
            format!("cores = [{cores}]")
        } else if trimmed.starts_with("qps_limit =") {
            "qps_limit = 100_000_000".into()
        } else if trimmed.starts_with("max_held_micros =") {
            "# max_held_micros: no limit at saturation".into()
        } else if trimmed.starts_with("burst =") {
            "burst = 100_000_000".into()
        } else if trimmed.starts_with("daily_budget_micros =") {
            "daily_budget_micros = 1_000_000_000_000_000".into()
        } else if trimmed.starts_with("hmac_key_file =") {
            format!("hmac_key_file = \"{}\"", key.display())
        } else if trimmed.starts_with("default_shading_ppm =") {
            format!("{line}\nreservation_ttl_ms = 5_000")
        } else {
            line.to_string()
        };
        out.push_str(&replaced);
        out.push('\n');
    }
    Ok(out)
}

fn wait_listening(server: &mut Server, port: u16) -> Result<()> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(START_TIMEOUT_MS) {
        if let Some(status) = server.0.try_wait()? {
            bail!("server exited during start-up with {status}");
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            // Let every worker finish arming its ring before load starts.
            thread::sleep(Duration::from_millis(300));
            return Ok(());
        }
        thread::sleep(Duration::from_millis(50));
    }
    bail!("server did not listen on port {port} within {START_TIMEOUT_MS} ms")
}

/// Saturation throughput under `load`: wrk's `Requests/sec` (each answer counts, so a
/// pipelined write of 16 requests counts 16), the client on `client_cpu`.
fn wrk(root: &Path, url: &str, load: Load, client_cpu: usize) -> Result<f64> {
    let traffic = example_requests(&root.join("bidder/examples/traffic"))?;
    let output = Command::new("taskset")
        .args(["-c", &client_cpu.to_string(), "wrk", "-t1"])
        .arg(format!("-c{WRK_CONNECTIONS}"))
        .arg(format!("-d{WRK_DURATION_S}s"))
        .arg("-s")
        .arg(root.join("perf/wrk/bid.lua"))
        .arg(url)
        .arg("--")
        .args(load.wrk_options())
        .args(&traffic)
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&output.stdout);
    print!("{text}");
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .with_context(|| {
            format!(
                "wrk printed no Requests/sec: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    if text.contains("Non-2xx or 3xx responses") {
        bail!("wrk saw error responses: the benchmark would measure errors");
    }
    Ok(rps)
}

/// Latency at `rate` for `duration_s` with the open-loop generator, pinned to
/// `client_cpu`.
pub(crate) fn loadgen(
    root: &Path,
    release: &Path,
    url: &str,
    rate: f64,
    duration_s: u32,
    client_cpu: usize,
) -> Result<Latency> {
    let output = Command::new("taskset")
        .args(["-c", &client_cpu.to_string()])
        .arg(release.join("loadgen"))
        .args(["run", "--url", url, "--quiet", "--json", "-c", "32"])
        .arg(format!("--rate={rate:.0}"))
        .arg(format!("--duration-s={duration_s}"))
        .current_dir(root)
        .output()
        .context("running loadgen")?;
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "loadgen printed no JSON report: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    let latency = &report["latency_us"];
    Ok(Latency {
        p50_us: latency["p50"].as_u64().unwrap_or(0),
        p99_us: latency["p99"].as_u64().unwrap_or(0),
        bid_share: report["bid_rate"].as_f64().unwrap_or(0.0),
    })
}

fn example_requests(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    Ok(files)
}

/// The median of `values` (the middle one; of two, their mean); NaN when empty.
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// A target's runs summed up.
struct Row<'t> {
    target: &'t Target,
    runs_rps: Vec<f64>,
    rps: f64,
    half: Option<LatencyMedians>,
}

/// The medians of a target's [`Latency`] runs, and every run's p99.
struct LatencyMedians {
    p50_us: f64,
    p99_us: f64,
    bid_share: f64,
    p99_runs_us: Vec<u64>,
}

fn row<'t>(target: &'t Target, samples: &[Sample]) -> Row<'t> {
    let runs_rps: Vec<f64> = samples.iter().map(|s| s.saturation_rps).collect();
    let halves: Vec<Latency> = samples.iter().filter_map(|s| s.half).collect();
    let half = (!halves.is_empty()).then(|| {
        let of = |f: fn(&Latency) -> f64| median(&mut halves.iter().map(f).collect::<Vec<_>>());
        LatencyMedians {
            p50_us: of(|h| h.p50_us as f64),
            p99_us: of(|h| h.p99_us as f64),
            bid_share: of(|h| h.bid_share),
            p99_runs_us: halves.iter().map(|h| h.p99_us).collect(),
        }
    });
    Row {
        target,
        rps: median(&mut runs_rps.clone()),
        runs_rps,
        half,
    }
}

/// Prints the comparison and writes JSON and Markdown under `perf/reports/`. Ratios
/// compare medians with nginx and the one-worker tokio engine under the same
/// pipelining (a FlatBuffers row with the JSON rows).
fn report(root: &Path, samples: &[Vec<Sample>], load_before: &str) -> Result<()> {
    let rows: Vec<Row> = TARGETS
        .iter()
        .zip(samples)
        .map(|(t, s)| row(t, s))
        .collect();
    let pipelined = |load: Load| matches!(load, Load::Pipelined(_));
    let baseline = |row: &Row, want: fn(&Kind) -> bool| {
        rows.iter()
            .find(|b| {
                want(&b.target.kind)
                    && b.target.workers == 1
                    && pipelined(b.target.load) == pipelined(row.target.load)
                    && b.target.load != Load::FlatBuffers
            })
            .map_or(f64::NAN, |b| b.rps)
    };
    let mut md = String::from(
        "| target | workers | load | req/s (median) | runs | × nginx | × tokio | p50 @ half (µs) | p99 @ half (µs) | p99 runs | bids |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut json = Vec::new();
    let mut shared_cpu = false;
    for r in &rows {
        let nginx = baseline(r, |k| matches!(k, Kind::Nginx));
        let tokio = baseline(r, |k| {
            matches!(
                k,
                Kind::Bidder {
                    engine: "tokio",
                    ..
                }
            )
        });
        let (_, client_cpu, shared) = cpus(r.target.workers);
        shared_cpu |= shared;
        let runs = r
            .runs_rps
            .iter()
            .map(|v| format!("{v:.0}"))
            .collect::<Vec<_>>()
            .join(" / ");
        let (p50, p99, p99_runs, bids) = match &r.half {
            Some(h) => (
                format!("{:.0}", h.p50_us),
                format!("{:.0}", h.p99_us),
                h.p99_runs_us
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(" / "),
                format!("{:.0}%", h.bid_share * 100.0),
            ),
            None => ("—".into(), "—".into(), "—".into(), "—".into()),
        };
        md.push_str(&format!(
            "| {} | {}{} | {} | {:.0} | {runs} | {:.2} | {:.2} | {p50} | {p99} | {p99_runs} | {bids} |\n",
            r.target.name,
            r.target.workers,
            if shared { " (client shares a CPU)" } else { "" },
            r.target.load.label(),
            r.rps,
            r.rps / nginx,
            r.rps / tokio,
        ));
        json.push(serde_json::json!({
            "target": r.target.name,
            "workers": r.target.workers,
            "client_cpu": client_cpu,
            "client_shares_a_cpu": shared,
            "load": r.target.load.label(),
            "saturation_rps": r.rps,
            "saturation_rps_runs": r.runs_rps,
            "x_nginx": r.rps / nginx,
            "x_tokio": r.rps / tokio,
            "p50_us": r.half.as_ref().map(|h| h.p50_us),
            "p99_us": r.half.as_ref().map(|h| h.p99_us),
            "p99_us_runs": r.half.as_ref().map(|h| h.p99_runs_us.clone()),
            "bid_rate": r.half.as_ref().map(|h| h.bid_share),
        }));
    }
    let host = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "\nbench: engines, median of {RUNS} runs (servers on CPUs 0…workers−1, the client on the next CPU{}; load before: {load_before})\n\n{md}",
        if shared_cpu {
            format!("; with {host} CPUs the ×2 rows' client shares CPU {} with a worker", host - 1)
        } else {
            String::new()
        }
    );
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let dir = root.join("perf/reports");
    fs::create_dir_all(&dir)?;
    let doc = serde_json::json!({
        "cores": host,
        "runs": RUNS,
        "load_before": load_before,
        "targets": json,
    });
    fs::write(
        dir.join(format!("engines-{stamp}.json")),
        serde_json::to_string_pretty(&doc)?,
    )?;
    fs::write(dir.join(format!("engines-{stamp}.md")), md)?;
    println!("bench: reports written to perf/reports/engines-{stamp}.{{json,md}}");
    Ok(())
}
