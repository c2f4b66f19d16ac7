//! `cargo xtask bench`: benchmarks that compare, in one run on this machine.
//!
//! - `core`: the decision core alone (`cargo bench -p bidder --bench core`).
//! - `xdp`: CPU per over-limit request, XDP drop versus user-space 204
//!   (`cargo bench -p bidder --bench xdp`).
//! - `engines`: the io_uring engine (SQPOLL off and on), the tokio engine and nginx
//!   `return 204`, one after another under the same clients. Each server is pinned to
//!   CPU 0 and the client to CPU 1. Saturation is wrk's throughput (closed loop, the
//!   shipped `perf/wrk/bid.lua`); latency is the open-loop `loadgen` at half of each
//!   target's saturation, so coordinated omission cannot flatter it.

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
pub(crate) const SERVER_CPU: &str = "0";
pub(crate) const CLIENT_CPU: &str = "1";

/// One benchmarked server (also what `xtask profile` starts).
pub(crate) struct Target {
    pub(crate) name: &'static str,
    /// `engine` and extra `[server]` lines of the bidder config; `None` for nginx.
    pub(crate) bidder: Option<(&'static str, &'static str)>,
}

const TARGETS: [Target; 4] = [
    Target {
        name: "io_uring",
        bidder: Some(("io_uring", "")),
    },
    Target {
        name: "io_uring+sqpoll",
        bidder: Some(("io_uring", "sqpoll = true\nsqpoll_cpus = [1]\n")),
    },
    Target {
        name: "tokio",
        bidder: Some(("tokio", "")),
    },
    Target {
        name: "nginx-204",
        bidder: None,
    },
];

/// Results of one target.
struct Row {
    name: &'static str,
    saturation_rps: f64,
    half_rate: f64,
    p50_us: u64,
    p99_us: u64,
    bid_rate: f64,
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

/// `cargo xtask bench engines`.
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
    let mut rows = Vec::new();
    for target in &TARGETS {
        println!("\nbench: ── {} ──", target.name);
        let server = start(target, root, &release, &work)?;
        let url = format!("http://127.0.0.1:{}/bid/exchange-a", port(target));
        let saturation_rps = wrk(root, &url)?;
        let half_rate = (saturation_rps / 2.0).max(1.0);
        let (p50_us, p99_us, bid_rate) =
            loadgen(root, &release, &url, half_rate, HALF_RATE_DURATION_S)?;
        drop(server);
        println!(
            "bench: {}: {saturation_rps:.0} req/s saturated; at {half_rate:.0} req/s p50 {p50_us} µs, p99 {p99_us} µs",
            target.name
        );
        rows.push(Row {
            name: target.name,
            saturation_rps,
            half_rate,
            p50_us,
            p99_us,
            bid_rate,
        });
    }
    let _ = fs::remove_dir_all(&work);
    report(root, &rows, load_before.trim())
}

fn port(target: &Target) -> u16 {
    if target.bidder.is_some() {
        BID_PORT
    } else {
        NGINX_PORT
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
    let mut cmd = Command::new("taskset");
    cmd.arg("-c")
        .arg(SERVER_CPU)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match target.bidder {
        Some((engine, extra)) => {
            let config = bench_config(root, engine, extra)?;
            let path = work.join(format!("{}.toml", target.name.replace('+', "-")));
            fs::write(&path, config)?;
            cmd.arg(release.join("bidder"))
                .args(["run", "--config"])
                .arg(&path);
        }
        None => {
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

/// The demo configuration made fit for saturation: one worker on CPU 0, no partner
/// limit, budgets that cannot run out, reservations that expire within the run, and
/// the deadline cap of production (8 ms) kept.
fn bench_config(root: &Path, engine: &str, extra_server: &str) -> Result<String> {
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
            format!("cores = [{SERVER_CPU}]")
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

/// Saturation throughput: wrk's `Requests/sec`.
fn wrk(root: &Path, url: &str) -> Result<f64> {
    let traffic = example_requests(&root.join("bidder/examples/traffic"))?;
    let output = Command::new("taskset")
        .args(["-c", CLIENT_CPU, "wrk", "-t1"])
        .arg(format!("-c{WRK_CONNECTIONS}"))
        .arg(format!("-d{WRK_DURATION_S}s"))
        .arg("-s")
        .arg(root.join("perf/wrk/bid.lua"))
        .arg(url)
        .arg("--")
        .args(&traffic)
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&output.stdout);
    print!("{text}");
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .context("wrk printed no Requests/sec")?;
    if text.contains("Non-2xx or 3xx responses") {
        bail!("wrk saw error responses: the benchmark would measure errors");
    }
    Ok(rps)
}

/// Latency at `rate` for `duration_s` with the open-loop generator, pinned to
/// `CLIENT_CPU`: (p50, p99, bid share).
pub(crate) fn loadgen(
    root: &Path,
    release: &Path,
    url: &str,
    rate: f64,
    duration_s: u32,
) -> Result<(u64, u64, f64)> {
    let output = Command::new("taskset")
        .args(["-c", CLIENT_CPU])
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
    Ok((
        latency["p50"].as_u64().unwrap_or(0),
        latency["p99"].as_u64().unwrap_or(0),
        report["bid_rate"].as_f64().unwrap_or(0.0),
    ))
}

fn example_requests(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    Ok(files)
}

/// Prints the comparison and writes JSON and Markdown under `perf/reports/`.
fn report(root: &Path, rows: &[Row], load_before: &str) -> Result<()> {
    let rps = |name: &str| {
        rows.iter()
            .find(|r| r.name == name)
            .map_or(f64::NAN, |r| r.saturation_rps)
    };
    let (nginx, tokio) = (rps("nginx-204"), rps("tokio"));
    let mut md = String::from("| target | req/s | × nginx | × tokio | p50 @ half (µs) | p99 @ half (µs) | bids |\n|---|---|---|---|---|---|---|\n");
    let mut json = Vec::new();
    for r in rows {
        md.push_str(&format!(
            "| {} | {:.0} | {:.2} | {:.2} | {} | {} | {:.0}% |\n",
            r.name,
            r.saturation_rps,
            r.saturation_rps / nginx,
            r.saturation_rps / tokio,
            r.p50_us,
            r.p99_us,
            r.bid_rate * 100.0
        ));
        json.push(serde_json::json!({
            "target": r.name, "saturation_rps": r.saturation_rps, "half_rate": r.half_rate,
            "p50_us": r.p50_us, "p99_us": r.p99_us, "bid_rate": r.bid_rate,
        }));
    }
    println!("\nbench: engines, one run (server on CPU {SERVER_CPU}, client on CPU {CLIENT_CPU}; load before: {load_before})\n\n{md}");
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let dir = root.join("perf/reports");
    fs::create_dir_all(&dir)?;
    let doc = serde_json::json!({ "cores": std::thread::available_parallelism().map_or(0, |n| n.get()), "load_before": load_before, "targets": json });
    fs::write(
        dir.join(format!("engines-{stamp}.json")),
        serde_json::to_string_pretty(&doc)?,
    )?;
    fs::write(dir.join(format!("engines-{stamp}.md")), md)?;
    println!("bench: reports written to perf/reports/engines-{stamp}.{{json,md}}");
    Ok(())
}
