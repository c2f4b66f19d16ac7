//! `cargo xtask demo`: the bidder on one machine with embedded defaults (no Redis, no
//! API key), from a fresh clone, with one command.
//!
//! 1. Dry run: `bidder decide` on each example request, showing the decision core.
//! 2. Live: `bidder run` on the demo config, the same requests POSTed over HTTP,
//!    a `/metrics` excerpt, then SIGTERM and a clean exit. As root the XDP front runs
//!    on `lo` (generic mode, pins in a folder of the demo's own) and its per-partner
//!    counters are shown; otherwise the demo says it runs with user-space limits.
//! 3. A short simulated day (`auction-sim`): unshaded bidding against the agent's
//!    controller, a table, and the pictures' paths.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use std::{fs, thread};

use anyhow::{bail, Context as _, Result};

use crate::{command, paths, setup};

/// Campaign config the demo runs, relative to the workspace root.
const DEMO_CONFIG: &str = "bidder/examples/demo.toml";
/// Folder of example OpenRTB bid requests, one JSON file each.
const TRAFFIC_DIR: &str = "bidder/examples/traffic";
/// Where the demo config listens for bids and for admin requests.
const BID_ADDR: &str = "127.0.0.1:8080";
const ADMIN_ADDR: &str = "127.0.0.1:9090";
/// The campaign whose strategy the demo changes through the agent, and its new margin.
const DEMO_CAMPAIGN: &str = "acme-display";
const DEMO_MARGIN: &str = "1.25";
/// How long a strategy change may take to reach the bidder's bids.
const STRATEGY_VISIBLE_TIMEOUT_MS: u64 = 2_000;
/// How long the server may take to become ready.
const READY_TIMEOUT_MS: u64 = 15_000;
/// Metric families the demo prints from `/metrics`.
const SHOWN_METRICS: [&str; 7] = [
    "bidder_http_responses_total",
    "bidder_partner_bids_total",
    "bidder_decision_no_bid_imps_total",
    "bidder_budget_reserved_micros",
    "bidder_request_duration_seconds_count",
    "bidder_xdp_attached",
    "bidder_xdp_passed_packets_total",
];
/// bpffs, where the demo's XDP pin folder goes.
const BPFFS_ROOT: &str = "/sys/fs/bpf";

/// Ensures setup, builds the bidder, runs the dry run and then the live server.
pub fn run() -> Result<()> {
    setup::run()?;
    let root = paths::workspace_root();
    println!("demo: building the bidder, the agent and the auction simulator");
    command::stream(
        command::cargo()
            .args([
                "build",
                "--package",
                "bidder",
                "--package",
                "agent",
                "--package",
                "perf",
                "--bins",
            ])
            .current_dir(root),
    )?;
    let bidder = paths::target_dir().join("debug").join("bidder");
    let requests = example_requests(&root.join(TRAFFIC_DIR))?;
    dry_run(&bidder, root, &requests)?;
    live(&bidder, root, &requests)?;
    simulated_day(root)
}

/// Auctions in the demo's simulated day: a short day, seconds on a debug build.
const SIMULATED_AUCTIONS: &str = "4000";

/// 3. A short simulated day: the auction simulator plays an exchange against the
///    bidder and the agent on a driven clock, unshaded bidding against the agent's
///    controller, and points at the pictures.
fn simulated_day(root: &Path) -> Result<()> {
    println!("\ndemo: ── a simulated day: `auction-sim`, unshaded bidding against the agent's controller ──");
    let out = paths::target_dir().join("auction-sim").join("demo");
    command::stream(
        Command::new(paths::target_dir().join("debug").join("auction-sim"))
            .args([
                "--scenario",
                "default",
                "--seeds",
                "1",
                "--strategies",
                "unshaded,controller",
                "--no-equal-impressions",
                "--auctions-per-day",
                SIMULATED_AUCTIONS,
                "--out",
            ])
            .arg(&out)
            .current_dir(root),
    )?;
    println!("demo: every strategy on every scenario: cargo xtask sim (README, \"The auction simulator\")");
    Ok(())
}

/// `bidder decide` on every example: the decision core alone, no server.
fn dry_run(bidder: &Path, root: &Path, requests: &[PathBuf]) -> Result<()> {
    println!(
        "\ndemo: ── dry run: `bidder decide` on {} example requests ──",
        requests.len()
    );
    let mut decide = Command::new(bidder);
    decide
        .args(["decide", "--config", DEMO_CONFIG])
        .args(requests)
        .current_dir(root);
    command::stream(&mut decide)
}

/// The real server: start, wait for `/ready`, bid over HTTP, scrape, stop.
fn live(bidder: &Path, root: &Path, requests: &[PathBuf]) -> Result<()> {
    println!("\ndemo: ── live: `bidder run` on {DEMO_CONFIG} ──");
    // The demo's strategy and stats tables live in a folder of its own, so it neither
    // picks up strategy another bidder on this host left behind nor leaves any.
    let dir = Scratch::new()?;
    let xdp = XdpPins::for_demo();
    let config = dir.0.join("demo.toml");
    fs::write(&config, live_config(root, &dir.0, xdp.as_ref())?)?;
    let mut server = Server(
        Command::new(bidder)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .current_dir(root)
            .stdin(Stdio::null())
            .spawn()
            .context("starting `bidder run`")?,
    );
    wait_ready(&mut server.0)?;
    for path in requests {
        let body = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let (status, text) = http(BID_ADDR, "POST", "/bid/exchange-a", &body)?;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        println!(
            "demo: POST /bid/exchange-a {name:<28} → {status} {}",
            summary(status, &text)
        );
    }
    // Workers publish latencies at most every 100 ms; let one period pass.
    thread::sleep(Duration::from_millis(250));
    let (_, metrics) = http(ADMIN_ADDR, "GET", "/metrics", b"")?;
    println!("\ndemo: ── /metrics (excerpt, non-zero series) ──");
    let shown = metrics
        .lines()
        .filter(|l| SHOWN_METRICS.iter().any(|m| l.starts_with(m)))
        .filter(|l| !l.ends_with(" 0"));
    for line in shown {
        println!("  {line}");
    }
    if let Some(xdp) = &xdp {
        println!("\ndemo: ── `bidder xdp status`: the XDP front's per-partner counters ──");
        let mut status = Command::new(bidder);
        status.args(["xdp", "status", "--pin-dir"]).arg(&xdp.0);
        command::stream(&mut status)?;
    }
    agent_changes_strategy(root, &dir.0)?;
    server.stop()
}

/// The demo's own XDP pin folder (root only), removed when dropped: removing the pins
/// also detaches a link a killed server left behind.
struct XdpPins(PathBuf);

impl XdpPins {
    /// Pins for the demo when it runs as root; otherwise says the demo runs without XDP.
    fn for_demo() -> Option<XdpPins> {
        if !setup::running_as_root() {
            println!(
                "demo: not root: running WITHOUT the XDP front; partner limits are enforced in user space"
            );
            return None;
        }
        let dir = Path::new(BPFFS_ROOT).join(format!("bidder-demo-{}", std::process::id()));
        println!(
            "demo: root: the XDP front runs on lo (generic mode), pins in {}",
            dir.display()
        );
        Some(XdpPins(dir))
    }
}

impl Drop for XdpPins {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A temporary folder removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("bidder-demo-{}", std::process::id()));
        fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The demo configuration with its tables in `dir`, the key file by absolute path and,
/// given pins, the XDP front on `lo`.
fn live_config(root: &Path, dir: &Path, xdp: Option<&XdpPins>) -> Result<String> {
    let text = fs::read_to_string(root.join(DEMO_CONFIG))?;
    let key = root.join("bidder/examples/demo-notice.key");
    let text = text.replace(
        "hmac_key_file = \"demo-notice.key\"",
        &format!("hmac_key_file = \"{}\"", key.display()),
    );
    let xdp = xdp.map_or(String::new(), |pins| {
        format!(
            "\n[xdp]\ninterface = \"lo\"\nmode = \"generic\"\npin_dir = \"{}\"\n",
            pins.0.display()
        )
    });
    Ok(format!(
        "{text}\n[strategy]\ntable_path = \"{}\"\nstats_path = \"{}\"\n{xdp}",
        dir.join("strategy").display(),
        dir.join("stats").display()
    ))
}

/// Starts the agent, changes a campaign's margin with `bidderctl`, and shows the next
/// bid carrying the new price.
fn agent_changes_strategy(root: &Path, dir: &Path) -> Result<()> {
    println!(
        "\ndemo: ── the agent: `bidderctl strategy set {DEMO_CAMPAIGN} --margin {DEMO_MARGIN}` ──"
    );
    let socket = dir.join("control.sock");
    let uid = String::from_utf8(Command::new("id").arg("-u").output()?.stdout)?
        .trim()
        .to_string();
    let config = format!(
        "audit_log = \"{audit}\"\nbidder_admin = \"{ADMIN_ADDR}\"\nmetrics_listen = \"127.0.0.1:0\"\n[socket]\npath = \"{socket}\"\nallowed_uids = [{uid}]\n[tables]\nstrategy_path = \"{}\"\nstats_path = \"{}\"\n",
        dir.join("strategy").display(),
        dir.join("stats").display(),
        audit = dir.join("audit.jsonl").display(),
        socket = socket.display(),
    );
    let config_path = dir.join("agent.toml");
    fs::write(&config_path, config)?;
    let debug = paths::target_dir().join("debug");
    let agent = Server(
        Command::new(debug.join("agent"))
            .arg("--config")
            .arg(&config_path)
            .current_dir(root)
            .stdin(Stdio::null())
            .spawn()
            .context("starting the agent")?,
    );
    let started = Instant::now();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        if started.elapsed() > Duration::from_millis(READY_TIMEOUT_MS) {
            bail!("the agent's socket {} did not appear", socket.display());
        }
        thread::sleep(Duration::from_millis(50));
    }
    let banner = fs::read(root.join(TRAFFIC_DIR).join("01-site-banner.json"))?;
    let before = http(BID_ADDR, "POST", "/bid/exchange-a", &banner)?;
    println!("demo: before: {}", summary(before.0, &before.1));
    let mut ctl = Command::new(debug.join("bidderctl"));
    ctl.arg("--socket").arg(&socket).args([
        "strategy",
        "set",
        DEMO_CAMPAIGN,
        "--margin",
        DEMO_MARGIN,
        "--why",
        "demo: show a strategy change",
    ]);
    command::stream(&mut ctl)?;
    let changed = Instant::now();
    loop {
        let after = http(BID_ADDR, "POST", "/bid/exchange-a", &banner)?;
        if after.0 == 200 && summary(after.0, &after.1) != summary(before.0, &before.1) {
            println!(
                "demo: after:  {} (visible {} µs after bidderctl returned)",
                summary(after.0, &after.1),
                changed.elapsed().as_micros()
            );
            break;
        }
        if changed.elapsed() > Duration::from_millis(STRATEGY_VISIBLE_TIMEOUT_MS) {
            bail!("the strategy change did not reach the bids within {STRATEGY_VISIBLE_TIMEOUT_MS} ms");
        }
        thread::sleep(Duration::from_millis(1));
    }
    let mut audit = Command::new(debug.join("bidderctl"));
    audit.arg("--socket").arg(&socket).args(["audit", "tail"]);
    command::stream(&mut audit)?;
    agent.stop_quietly();
    Ok(())
}

/// A child process that is killed if the demo fails half-way.
struct Server(Child);

impl Server {
    /// SIGTERM and wait, for a helper process whose exit status does not matter.
    fn stop_quietly(mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let _ = self.0.wait();
    }

    /// SIGTERM, then wait for a clean exit.
    fn stop(mut self) -> Result<()> {
        println!("\ndemo: stopping the server (SIGTERM)");
        let pid = self.0.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .context("sending SIGTERM")?;
        let status = self.0.wait().context("waiting for the server")?;
        if !status.success() {
            bail!("the server exited with {status}");
        }
        println!("demo: server stopped cleanly");
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn wait_ready(child: &mut Child) -> Result<()> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(READY_TIMEOUT_MS) {
        if let Some(status) = child.try_wait()? {
            bail!("`bidder run` exited during start-up with {status} (see its log above)");
        }
        if matches!(http(ADMIN_ADDR, "GET", "/ready", b""), Ok((200, _))) {
            println!("demo: server ready on {BID_ADDR} (admin {ADMIN_ADDR})");
            return Ok(());
        }
        thread::sleep(Duration::from_millis(100));
    }
    bail!("`bidder run` was not ready within {READY_TIMEOUT_MS} ms")
}

/// One line about a bid response: price and campaign of each bid, or the no-bid.
fn summary(status: u16, body: &str) -> String {
    if status != 200 {
        return "(no bid)".into();
    }
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return body.chars().take(80).collect();
    };
    let bids = v["seatbid"][0]["bid"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let parts: Vec<String> = bids
        .iter()
        .map(|b| {
            let deal = b["dealid"]
                .as_str()
                .map(|d| format!(" deal {d}"))
                .unwrap_or_default();
            format!(
                "bid {} on imp {} by {}{deal}",
                b["price"], b["impid"], b["cid"]
            )
        })
        .collect();
    parts.join("; ")
}

/// A minimal HTTP/1.1 exchange on a fresh connection: status code and body text.
fn http(addr: &str, method: &str, path: &str, body: &[u8]) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .context("malformed HTTP response")?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}

/// The `*.json` files directly in `dir`, sorted so the demo reads the same every time.
fn example_requests(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    let mut requests = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "json") && path.is_file() {
            requests.push(path);
        }
    }
    if requests.is_empty() {
        bail!("no *.json example requests in {}", dir.display());
    }
    requests.sort();
    Ok(requests)
}
