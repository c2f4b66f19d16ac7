//! The real `bidder` binary as a child process, the way systemd runs it: `bidder run`
//! on a copy of the demo configuration (free ports, an absolute key path) becomes
//! ready, bids over HTTP, serves `/metrics` that promtool accepts, reloads on SIGHUP
//! and `POST /reload`, keeps serving its old configuration when the new one is
//! broken, and exits 0 on SIGTERM with clients connected; under a service manager it
//! sends `READY=1`, watchdog pings and `STOPPING=1`. `bidder check-config` and
//! `bidder run` refuse a broken file naming its line.
//!
//! Each daemon lives in a [`Daemon`] guard that kills it (and removes its temporary
//! folder) if the test fails; every wait is bounded.

#[path = "engines/harness.rs"]
mod harness;
#[path = "support/daemon.rs"]
mod running;

use testkit::promtool::promtool_check;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use harness::{banner, edit, metric_sum, post, unbiddable, Client, JsonBody, CLIENT_TIMEOUT};
use running::*;
use testkit::{eventually, TempDir};

/// The configuration with acme-display's base price raised: bids of 2.70, not 1.80.
fn raised_price(text: &str) -> String {
    edit(
        text,
        "base_cpm_micros = 2_000_000",
        "base_cpm_micros = 3_000_000",
    )
}

/// The configuration with a value validation refuses, in ssp-b's `[[partner]]` block.
fn broken(text: &str) -> String {
    edit(
        text,
        "openrtb_version = \"2.5\"",
        "openrtb_version = \"3.0\"",
    )
}

/// 1-based lines `[first, last]` of ssp-b's `[[partner]]` block in `text`.
fn ssp_b_block(text: &str) -> (usize, usize) {
    let lines: Vec<&str> = text.lines().collect();
    let name = lines
        .iter()
        .position(|l| l.trim() == "name = \"ssp-b\"")
        .expect("ssp-b in the config");
    let first = lines[..name]
        .iter()
        .rposition(|l| l.trim() == "[[partner]]")
        .expect("ssp-b has a [[partner]] header");
    let last = lines[name..]
        .iter()
        .position(|l| l.trim().is_empty())
        .map_or(lines.len(), |i| name + i);
    (first + 1, last)
}

/// Asserts that `stderr` names `config` and a line inside ssp-b's block.
fn assert_names_the_broken_line(stderr: &str, config: &Path, text: &str) {
    let prefix = format!("{}:", config.display());
    let at = stderr
        .find(&prefix)
        .unwrap_or_else(|| panic!("no {prefix}LINE in:\n{stderr}"));
    let line: usize = stderr[at + prefix.len()..]
        .split(':')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no line number after {prefix} in:\n{stderr}"));
    let (first, last) = ssp_b_block(text);
    assert!(
        (first..=last).contains(&line),
        "line {line} is outside ssp-b's block ({first}..={last}):\n{stderr}"
    );
    assert!(stderr.contains("openrtb_version"), "{stderr}");
}

/// `bidder run` as systemd starts a `Type=notify` service with `WatchdogSec=`:
/// `NOTIFY_SOCKET`, `WATCHDOG_USEC`, and `WATCHDOG_PID` naming the bidder's own pid
/// (the shell exports its pid, then `exec`s the bidder in its place).
fn spawn_supervised(notify_socket: &Path, watchdog: Duration) -> impl Fn(&Path, &Path) -> Child {
    let notify_socket = notify_socket.to_owned();
    move |config, log| {
        let mut run = Command::new("sh");
        run.args([
            "-c",
            r#"export WATCHDOG_PID=$$; exec "$0" run --config "$1""#,
            BIDDER,
        ])
        .arg(config)
        .env("NOTIFY_SOCKET", &notify_socket)
        .env("WATCHDOG_USEC", watchdog.as_micros().to_string());
        spawn_logged(run, log)
    }
}

/// `bidder <args> --config <config>` to completion; killed (and the test failed) if it
/// is still running after [`EXIT_TIMEOUT`], e.g. a `run` that should have refused.
fn bidder(args: &[&str], config: &Path) -> Output {
    let mut child = Command::new(BIDDER)
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bidder");
    let until = Instant::now() + EXIT_TIMEOUT;
    while child.try_wait().expect("wait for bidder").is_none() {
        if Instant::now() >= until {
            let _ = child.kill();
            let out = child.wait_with_output().expect("reap bidder");
            panic!(
                "bidder {args:?} still running after {EXIT_TIMEOUT:?}:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("bidder output")
}

// ---- the tests --------------------------------------------------------------------

#[test]
fn the_daemon_becomes_ready_and_bids_over_http() {
    let d = Daemon::start("bids", |t| t);
    assert_eq!(d.admin("GET", "/health", b""), (200, "ok\n".to_owned()));
    let mut c = Client::connect(d.bid);
    let resp = c.post("/bid/exchange-a", banner("d1").as_bytes());
    assert_eq!(resp.status, 200, "{resp:?}");
    let bid = resp.json();
    assert_eq!(bid["id"], "d1");
    assert_eq!(bid["seatbid"][0]["bid"][0]["price"], 1.8);
    let nurl = bid["seatbid"][0]["bid"][0]["nurl"].as_str().unwrap();
    assert!(
        nurl.starts_with(&format!("http://{}/notice/win?", d.notices)),
        "{nurl}"
    );
    assert_eq!(
        c.post("/bid/exchange-a", unbiddable("d2").as_bytes())
            .status,
        204
    );
    // The default path: partner by source address (exchange-a owns 127.0.0.0/8).
    assert_eq!(c.post("/openrtb2/bid", banner("d3").as_bytes()).status, 200);
    // io_uring is configured: it serves, or the fallback to tokio is logged.
    let metrics = d.metrics();
    assert_eq!(metric_sum(&metrics, "bidder_simulated_clock"), 0);
    let ring = metrics.contains("bidder_connections_open{engine=\"io_uring\"");
    assert!(
        ring || d.log().contains("io_uring unavailable"),
        "neither io_uring nor a logged fallback:\n{metrics}\n{}",
        d.log()
    );
}

#[test]
fn metrics_over_the_control_port_pass_promtool() {
    let d = Daemon::start("metrics", |t| t);
    let mut c = Client::connect(d.bid);
    for i in 0..4 {
        let body = if i % 2 == 0 {
            banner("m")
        } else {
            unbiddable("m")
        };
        c.post("/bid/exchange-a", body.as_bytes());
    }
    assert_eq!(c.post("/nope", b"{}").status, 404);
    // Workers publish latencies every 100 ms or so.
    eventually(CLIENT_TIMEOUT, "latencies in /metrics", || {
        metric_sum(&d.metrics(), "bidder_request_duration_seconds_count") == 4
    });
    let text = d.metrics();
    for needle in [
        "bidder_http_responses_total{status=\"200\"} 2\n",
        "bidder_http_responses_total{status=\"204\"} 2\n",
        "bidder_http_responses_total{status=\"404\"} 1\n",
        "bidder_partner_bids_total{partner=\"exchange-a\"} 2\n",
        "bidder_partner_no_bids_total{partner=\"exchange-a\"} 2\n",
        "bidder_ready 1\n",
        "# TYPE bidder_request_duration_seconds histogram\n",
    ] {
        assert!(text.contains(needle), "missing {needle}:\n{text}");
    }
    assert_eq!(
        metric_sum(&text, "bidder_budget_reserved_micros"),
        2 * 1_800,
        "two 1.80 bids hold their reservations:\n{text}"
    );
    promtool_check(&text);
}

#[test]
fn sighup_after_editing_the_config_changes_the_next_bid() {
    let d = Daemon::start("sighup", |t| t);
    assert_eq!(d.price(), Some(1.8));
    let text = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(&d.config, raised_price(&text)).unwrap();
    d.signal(libc::SIGHUP);
    eventually(CLIENT_TIMEOUT, "the reload to take effect", || {
        d.price() == Some(2.7)
    });
    d.wait_log("reloaded");
    assert_eq!(d.price(), Some(2.7), "and it stays");
}

/// A reload that changes the notice key: bids are signed with the new key at once, and
/// a win notice for a bid signed with the old key still settles (its reservation would
/// otherwise expire unrecorded: spend the budget never saw). A tag neither key made is
/// refused.
#[test]
fn a_reload_rotating_the_notice_key_settles_notices_signed_with_either_key() {
    let d = Daemon::start("rotate", |t| t);
    let nurl = |id: &str| -> String {
        let mut c = Client::connect(d.bid);
        let resp = c.post("/bid/exchange-a", banner(id).as_bytes());
        assert_eq!(resp.status, 200, "{resp:?}");
        let url = resp.json()["seatbid"][0]["bid"][0]["nurl"]
            .as_str()
            .unwrap()
            .replace("${AUCTION_PRICE}", "1.5");
        url.strip_prefix(&format!("http://{}", d.notices))
            .unwrap_or_else(|| panic!("{url}"))
            .to_owned()
    };
    let before = nurl("k1");
    let new_key = d.config.with_file_name("rotated-notice.key");
    std::fs::write(&new_key, "a key rotated in by a reload, 32 bytes or more\n").unwrap();
    let text = std::fs::read_to_string(&d.config).unwrap();
    let old_key_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("hmac_key_file"))
        .unwrap()
        .to_owned();
    let text = edit(
        &text,
        &old_key_line,
        &format!("hmac_key_file = \"{}\"", new_key.display()),
    );
    std::fs::write(&d.config, text).unwrap();
    let (status, summary) = d.admin("POST", "/reload", b"");
    assert_eq!(status, 200, "{summary}");
    assert!(summary.contains("notice key rotated"), "{summary}");
    let after = nurl("k2");
    let tag = |url: &str| url.split("sig=").nth(1).unwrap()[..8].to_owned();
    assert_eq!(d.notice(&after).0, 204, "signed with the new key");
    assert_eq!(d.notice(&before).0, 204, "signed with the old key");
    let forged = before.replace(&tag(&before), &tag(&after));
    assert_ne!(d.notice(&forged).0, 204, "a tag neither key made");
    let metrics = d.metrics();
    assert!(
        metrics.contains("bidder_notices_total{kind=\"win\",outcome=\"settled\"} 2\n"),
        "{metrics}"
    );
}

/// `[server]` is read once, when the engines start: a reload that changes it applies
/// the rest and says which server fields wait for a restart, instead of dropping them
/// silently.
#[test]
fn a_reload_names_the_server_fields_that_wait_for_a_restart() {
    let d = Daemon::start("server-change", |t| t);
    let text = std::fs::read_to_string(&d.config).unwrap();
    let text = edit(
        &text,
        "cores = [0, 1]\n",
        "cores = [0, 1]\nmax_body_bytes = 100000\n",
    );
    std::fs::write(&d.config, raised_price(&text)).unwrap();
    let (status, summary) = d.admin("POST", "/reload", b"");
    assert_eq!(status, 200, "{summary}");
    assert!(
        summary.contains("server.max_body_bytes changed: takes effect at the next restart"),
        "{summary}"
    );
    assert!(!summary.contains("server.listen"), "{summary}");
    assert_eq!(d.price(), Some(2.7), "the rest of the file applied");
}

#[test]
fn a_broken_config_is_refused_on_sighup_and_on_post_reload_and_the_old_one_serves() {
    let d = Daemon::start("broken", |t| t);
    let good = std::fs::read_to_string(&d.config).unwrap();
    // Broken, and with a new price: a half-applied reload would show 2.70.
    let bad = broken(&raised_price(&good));
    std::fs::write(&d.config, &bad).unwrap();

    d.signal(libc::SIGHUP);
    d.wait_log("reload refused");
    assert_names_the_broken_line(&d.log(), &d.config, &bad);
    assert_eq!(d.price(), Some(1.8), "the old configuration serves");

    let (status, reason) = d.admin("POST", "/reload", b"");
    assert_eq!(status, 400, "{reason}");
    assert_names_the_broken_line(&reason, &d.config, &bad);
    assert_eq!(d.price(), Some(1.8), "the old configuration serves");

    std::fs::write(&d.config, raised_price(&good)).unwrap();
    let (status, summary) = d.admin("POST", "/reload", b"");
    assert_eq!(status, 200, "{summary}");
    assert!(summary.contains("reloaded"), "{summary}");
    assert_eq!(d.price(), Some(2.7));
    let metrics = d.metrics();
    for needle in [
        "bidder_reloads_total{result=\"ok\"} 1\n",
        "bidder_reloads_total{result=\"error\"} 1\n",
    ] {
        assert!(metrics.contains(needle), "missing {needle}:\n{metrics}");
    }
}

#[test]
fn sigterm_with_clients_connected_exits_0_within_the_grace() {
    let mut d = Daemon::start("sigterm", |t| t);
    let mut idle = Client::connect(d.bid);
    assert_eq!(
        idle.post("/bid/exchange-a", banner("i").as_bytes()).status,
        200
    );
    let request = post("/bid/exchange-a", "", banner("p").as_bytes());
    let (sent, unsent) = request.split_at(60);
    let mut partial = Client::connect(d.bid);
    partial.send(sent);
    thread::sleep(Duration::from_millis(100));

    d.signal(libc::SIGTERM);
    d.wait_log("stopping: finishing requests in flight");
    thread::sleep(Duration::from_millis(50));
    // The request in progress when the stop came is finished and answered.
    partial.send(unsent);
    let resp = partial.read_response();
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.json()["id"], "p");
    partial.expect_closed();
    idle.expect_closed();

    let status = d.wait_exit(EXIT_TIMEOUT);
    assert!(status.success(), "exit {status}:\n{}", d.log());
    assert!(d.log().contains("stopped"), "{}", d.log());
    assert!(TcpStream::connect(d.bid).is_err(), "the bid port is closed");
}

/// The `Type=notify` contract of `systemd/bidder.service`: `READY=1` once `/ready` says
/// ready, `WATCHDOG=1` every half period while it serves, `STOPPING=1` on SIGTERM, over
/// a real datagram socket the way systemd listens.
#[test]
fn systemd_hears_ready_then_watchdog_pings_then_stopping() {
    let dir = TempDir::new("notify");
    let socket_path = dir.0.join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("bind notify");
    socket
        .set_read_timeout(Some(READY_TIMEOUT))
        .expect("timeout");
    let watchdog = Duration::from_millis(400);
    let mut d = Daemon::start_with("notify", |t| t, spawn_supervised(&socket_path, watchdog));
    let mut heard = Vec::new();
    let next = || {
        let mut buf = [0u8; 512];
        let n = socket
            .recv(&mut buf)
            .expect("a notification within the timeout");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let first = next();
    assert!(first.contains("READY=1\n"), "first message: {first:?}");
    assert!(first.contains("STATUS=serving bids on"), "{first:?}");
    // Pings keep coming (each recv is bounded: a silent watchdog fails the test).
    while heard
        .iter()
        .filter(|m: &&String| m.contains("WATCHDOG=1"))
        .count()
        < 3
    {
        heard.push(next());
    }
    assert!(d.price().is_some(), "still bidding while supervised");

    d.signal(libc::SIGHUP);
    let reloaded = loop {
        let m = next();
        if m.contains("STATUS=") {
            break m;
        }
    };
    assert!(reloaded.contains("last reload applied"), "{reloaded:?}");

    d.signal(libc::SIGTERM);
    let stopping = loop {
        let m = next();
        if !m.contains("WATCHDOG=1") {
            break m;
        }
    };
    assert!(stopping.contains("STOPPING=1\n"), "{stopping:?}");
    assert!(d.wait_exit(EXIT_TIMEOUT).success(), "{}", d.log());
    assert!(
        d.log().contains("feeding the service manager's watchdog"),
        "{}",
        d.log()
    );
}

#[test]
fn the_tokio_engine_serves_when_configured() {
    let mut d = Daemon::start("tokio", |t| {
        edit(&t, "engine = \"io_uring\"", "engine = \"tokio\"")
    });
    assert_eq!(d.price(), Some(1.8));
    let metrics = d.metrics();
    assert!(
        metrics.contains("bidder_connections_accepted_total{engine=\"tokio\",worker=\"0\"}"),
        "{metrics}"
    );
    assert!(!metrics.contains("engine=\"io_uring\""), "{metrics}");
    d.signal(libc::SIGTERM);
    let status = d.wait_exit(EXIT_TIMEOUT);
    assert!(status.success(), "exit {status}:\n{}", d.log());
}

#[test]
fn serve_io_answers_every_request_204_unread_on_both_engines() {
    for engine in ["io_uring", "tokio"] {
        let spawn = |config: &Path, log: &Path| {
            let mut run = Command::new(BIDDER);
            run.args(["serve-io", "--config"]).arg(config);
            spawn_logged(run, log)
        };
        let mut d = Daemon::start_until(
            "serve-io",
            |t| {
                edit(
                    &t,
                    "engine = \"io_uring\"",
                    &format!("engine = \"{engine}\""),
                )
            },
            spawn,
            |d| d.log().contains("I/O-only benchmark"),
        );
        let log = d.log();
        assert!(log.contains("nothing is bid"), "{engine}: {log}");
        let mut c = Client::connect(d.bid);
        // A bid `bidder run` answers 200 and a body it refuses with 400: both 204
        // here, neither read.
        assert_eq!(
            c.post("/bid/exchange-a", banner("io1").as_bytes()).status,
            204
        );
        assert_eq!(c.post("/bid/exchange-a", b"{not json").status, 204);
        // The engine's HTTP limits still apply: the framing is the engine's work.
        let too_long =
            b"POST /bid/exchange-a HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n";
        assert_eq!(Client::connect(d.bid).request(too_long).status, 413);
        // No admin listener: nothing that answers money questions runs.
        assert!(try_admin(d.admin, "GET", "/health", b"").is_err());
        d.signal(libc::SIGTERM);
        let status = d.wait_exit(EXIT_TIMEOUT);
        assert!(status.success(), "{engine}: exit {status}:\n{}", d.log());
    }
}

#[test]
fn check_config_and_run_refuse_a_broken_file_naming_its_line() {
    let dir = TempDir::new("check");
    let good = demo_config(&Addrs::free(), &token_file(&dir.0));
    let path = dir.0.join("bidder.toml");

    std::fs::write(&path, &good).unwrap();
    let out = bidder(&["check-config"], &path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains(": ok: 2 partners, 6 campaigns"), "{stdout}");

    let bad = broken(&good);
    std::fs::write(&path, &bad).unwrap();
    let out = bidder(&["check-config"], &path);
    assert_eq!(out.status.code(), Some(1));
    assert_names_the_broken_line(&String::from_utf8_lossy(&out.stderr), &path, &bad);

    // A syntax error: an unterminated string on a known line.
    let (head, tail) = good.split_at(good.find("[[campaign]]").unwrap());
    let line = head.lines().count() + 1;
    std::fs::write(&path, format!("{head}seat = \"unterminated\n{tail}")).unwrap();
    let out = bidder(&["check-config"], &path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:{line}:", path.display())),
        "expected line {line}:\n{stderr}"
    );

    // `run` refuses to start on it too, before binding anything.
    std::fs::write(&path, &bad).unwrap();
    let out = bidder(&["run"], &path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not started"), "{stderr}");
    assert_names_the_broken_line(&stderr, &path, &bad);
}

// ---- durability across crashes ------------------------------------------------------

/// What one exchange saw in a round: the win notices the bidder acknowledged.
#[derive(Default)]
struct Exchange {
    /// Win notice paths (price filled in) of notices answered 204.
    acknowledged: Vec<String>,
    /// Win notices sent, answered or not.
    sent: u64,
    /// Win notices of bids that won but whose notice the exchange sends late (after
    /// the restart): the bidder must still charge them.
    late: Vec<String>,
}

/// Every this many won bids, the exchange sends the win notice only after the restart.
const CRASH_LATE_EVERY: u64 = 4;

/// Bids and sends each bid's win notice at once (every [`CRASH_LATE_EVERY`]th one
/// later), until `stop` or the bidder dies.
fn exchange_load(bid: SocketAddr, notices: SocketAddr, stop: &AtomicBool) -> Exchange {
    let mut seen = Exchange::default();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        // The client fails the thread on a refused or cut connection: that is the kill.
        let resp = std::panic::catch_unwind(|| {
            let mut c = Client::connect(bid);
            c.post("/bid/exchange-a", banner(&format!("crash-{n}")).as_bytes())
        });
        let Ok(resp) = resp else { break };
        if resp.status != 200 {
            continue; // budget spent: no bid
        }
        let url = resp.json()["seatbid"][0]["bid"][0]["nurl"]
            .as_str()
            .expect("a bid carries its nurl")
            .replace("${AUCTION_PRICE}", CRASH_CLEARING_CPM);
        let path = url
            .strip_prefix(&format!("http://{notices}"))
            .expect("nurl points at the notice listener")
            .to_owned();
        if n.is_multiple_of(CRASH_LATE_EVERY) {
            seen.late.push(path);
            continue;
        }
        seen.sent += 1;
        if let Ok((204, _)) = testkit::http::exchange(notices, "GET", &path, "", b"") {
            seen.acknowledged.push(path);
        }
    }
    seen
}

/// The clearing price exchanges report in the crash test: 1.00 CPM, 1,000 micros an
/// impression, below every bid, so each settled win charges exactly that.
const CRASH_CLEARING_CPM: &str = "1.0";
const CRASH_CHARGE_MICROS: u64 = 1_000;
/// acme-display's daily budget in the crash test: 150 wins, spent within the run so
/// the budget bound is tested, not assumed.
const CRASH_DAILY_MICROS: u64 = 150_000;
const CRASH_RESERVATION_TTL_MS: u64 = 3_000;
/// Kill rounds the crash test always runs, and at most.
const CRASH_MIN_ROUNDS: u64 = 20;
const CRASH_MAX_ROUNDS: u64 = 60;

/// Under steady bids and win notices the bidder is killed with SIGKILL and restarted
/// 20 times, and more (up to [`CRASH_MAX_ROUNDS`]) while the run has not yet spent half
/// the budget: a slow machine (a debug build under faketime) makes fewer bids a round,
/// and the budget bound is tested only once it is pressed on. After every restart spent covers every notice acknowledged before the
/// kill; notices re-sent after a restart change nothing; and over the whole run spend
/// stays within the daily budget.
#[test]
fn sigkill_under_load_loses_no_acknowledged_notice_and_charges_none_twice() {
    let mut d = Daemon::start("crash", |t| {
        let t = edit(
            &t,
            "daily_budget_micros = 500_000_000",
            &format!("daily_budget_micros = {CRASH_DAILY_MICROS}"),
        );
        // Reservations live 3 s: what bids made before a kill hold is held back that
        // long after the restart, and late notices come well within it.
        let t = edit(
            &t,
            "[bidding]\n",
            &format!("[bidding]\nreservation_ttl_ms = {CRASH_RESERVATION_TTL_MS}\n"),
        );
        // The run spends the day's budget in seconds on purpose: no spend-rate breaker.
        t + "\n[ledger]\npath = \"ledger.sqlite\"\n\n[breaker]\nspend_rate_multiple = 0\n"
    });
    let spent = |d: &Daemon| metric_sum(&d.metrics(), "bidder_budget_spent_micros");
    let mut acknowledged: Vec<String> = Vec::new();
    let mut sent = 0;
    let half_spent = |acknowledged: &[String]| {
        acknowledged.len() as u64 * CRASH_CHARGE_MICROS * 2 >= CRASH_DAILY_MICROS
    };
    for round in 0..CRASH_MAX_ROUNDS {
        if round >= CRASH_MIN_ROUNDS && half_spent(&acknowledged) {
            break;
        }
        let stop = AtomicBool::new(false);
        let mut seen = thread::scope(|scope| {
            let (bid, notices, stop) = (d.bid, d.notices, &stop);
            let load = scope.spawn(move || exchange_load(bid, notices, stop));
            // Kill at a different point of the load each round.
            thread::sleep(Duration::from_millis(40 + 23 * (round % 7)));
            d.signal(libc::SIGKILL);
            stop.store(true, Ordering::Relaxed);
            load.join().expect("the load thread")
        });
        acknowledged.extend(std::mem::take(&mut seen.acknowledged));
        sent += seen.sent;
        d.wait_exit(EXIT_TIMEOUT);
        d.child = spawn_run(&d.config, &d.log);
        if let Err(log) = d.wait_ready() {
            panic!("round {round}: no restart after SIGKILL:\n{log}");
        }
        let after = spent(&d);
        let floor = acknowledged.len() as u64 * CRASH_CHARGE_MICROS;
        assert!(
            after >= floor,
            "round {round}: spent {after} < {floor} acknowledged before the kill"
        );
        assert!(
            after <= sent * CRASH_CHARGE_MICROS,
            "round {round}: spent {after} is more than every notice sent could charge"
        );
        assert!(after <= CRASH_DAILY_MICROS, "round {round}: spent {after}");
        // Bids made before the kill whose wins are notified now are charged, once.
        let mut late = 0;
        for path in &seen.late {
            sent += 1;
            assert_eq!(d.notice(path).0, 204, "round {round}: {path}");
            late += 1;
        }
        let with_late = spent(&d);
        assert_eq!(
            with_late,
            after + late * CRASH_CHARGE_MICROS,
            "round {round}: {late} late notices of bids made before the kill"
        );
        assert!(
            with_late <= CRASH_DAILY_MICROS,
            "round {round}: spent {with_late}"
        );
        assert_eq!(
            metric_sum(&d.metrics(), "bidder_ledger_in_doubt_settled_total"),
            late,
            "round {round}: charged out of the hold kept for bids made before the kill"
        );
        acknowledged.extend(seen.late);
        let after = with_late;
        // An exchange retrying acknowledged notices after the restart changes nothing.
        for path in acknowledged.iter().rev().take(3) {
            assert_eq!(d.notice(path).0, 204);
        }
        assert_eq!(
            spent(&d),
            after,
            "round {round}: a re-sent notice was charged again"
        );
    }
    assert!(
        half_spent(&acknowledged),
        "the run should spend at least half the budget to test its bound; acknowledged {} in {CRASH_MAX_ROUNDS} rounds",
        acknowledged.len()
    );
}

// ---- frequency caps -------------------------------------------------------------------

/// A bid request for a 300×250 banner from user `buyeruid`.
fn banner_for(n: u64, buyeruid: &str) -> String {
    format!(
        r#"{{"id":"fc-{n}","tmax":1000,"imp":[{{"id":"1","banner":{{"w":300,"h":250}}}}],"site":{{"domain":"news.example"}},"user":{{"buyeruid":"{buyeruid}"}}}}"#
    )
}

/// The win notice path of acme-display's bid for `buyeruid`, if it bid.
fn acme_bid(d: &Daemon, n: u64, buyeruid: &str) -> Option<String> {
    let mut c = Client::connect(d.bid);
    let resp = c.post("/bid/exchange-a", banner_for(n, buyeruid).as_bytes());
    if resp.status != 200 {
        return None;
    }
    let bid = &resp.json()["seatbid"][0]["bid"][0];
    (bid["cid"] == "acme-display").then(|| {
        bid["nurl"]
            .as_str()
            .expect("a bid carries its nurl")
            .replace("${AUCTION_PRICE}", "1.0")
            .strip_prefix(&format!("http://{}", d.notices))
            .expect("nurl points at the notice listener")
            .to_owned()
    })
}

/// acme-display capped at 2 impressions per user per day: a user's wins, notified over
/// HTTP, stop its bids for that user (not for others), and the count survives a kill.
#[test]
fn a_frequency_cap_counts_wins_over_http_and_survives_a_restart() {
    let mut d = Daemon::start("frequency", |t| {
        let t = edit(
            &t,
            "time_zone = \"America/New_York\"\n",
            "time_zone = \"America/New_York\"\nfrequency_cap = 2\n",
        );
        t + "\n[ledger]\npath = \"ledger.sqlite\"\n"
    });
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    // Bids without wins do not count: the cap is on impressions.
    for _ in 0..3 {
        assert!(acme_bid(&d, next(), "alice").is_some(), "no wins yet");
    }
    for win in 0..2 {
        let path = acme_bid(&d, next(), "alice").expect("under the cap");
        assert_eq!(d.notice(&path).0, 204, "win {win}");
        // The exchange's retry of the same notice is not a second impression.
        assert_eq!(d.notice(&path).0, 204);
    }
    assert_eq!(acme_bid(&d, next(), "alice"), None, "two wins: capped");
    assert!(acme_bid(&d, next(), "bob").is_some(), "another user");
    let capped = |d: &Daemon| {
        metric_sum(
            &d.metrics(),
            "bidder_campaign_no_bids_total{campaign=\"acme-display\",reason=\"frequency_capped\"}",
        )
    };
    assert!(capped(&d) >= 1, "counted under its reason");

    d.signal(libc::SIGKILL);
    d.wait_exit(EXIT_TIMEOUT);
    d.child = spawn_run(&d.config, &d.log);
    d.wait_ready().expect("restarts");
    assert_eq!(
        acme_bid(&d, next(), "alice"),
        None,
        "still capped after the restart"
    );
    assert!(acme_bid(&d, next(), "bob").is_some());
}

/// Wednesday 2031-03-05 10:30 UTC, ms since the Unix epoch.
const SIMULATED_WEDNESDAY_10_30_MS: u64 = 1_930_473_000_000;
const HOUR_MS: u64 = 3_600_000;

#[test]
fn simulation_mode_is_explicit_and_bids_on_the_simulators_clock() {
    let clock_dir = TempDir::new("sim-clock");
    let clock_path = clock_dir.0.join("clock");
    let calendar =
        bidder::clock::ClockFile::create(&clock_path, SIMULATED_WEDNESDAY_10_30_MS).unwrap();
    // acme-display runs only Wednesdays 10:00-11:00 UTC, a slot the host's clock is
    // almost never in: its bids show which clock the bidder reads.
    let simulated = |text: String| {
        let text = edit(
            &text,
            "sizes = [\"300x250\", \"728x90\", \"320x50\", \"160x600\"]",
            "sizes = [\"300x250\", \"728x90\", \"320x50\", \"160x600\"]\n  dayparts = [\"wed 10-11\"]",
        );
        format!(
            "{text}\n[simulation]\nclock_file = \"{}\"\n",
            clock_path.display()
        )
    };

    // Without --simulate a configuration with [simulation] is refused, and so is the
    // flag without the section: neither half alone puts a bidder on a driven clock.
    let dir = TempDir::new("sim-refused");
    let config = dir.0.join("bidder.toml");
    let addrs = Addrs::free();
    std::fs::write(&config, simulated(demo_config(&addrs, &token_file(&dir.0)))).unwrap();
    let refused = bidder(&["run"], &config);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("production bidder refuses"), "{stderr}");
    assert!(stderr.contains("--simulate"), "{stderr}");
    std::fs::write(&config, demo_config(&addrs, &token_file(&dir.0))).unwrap();
    let refused = bidder(&["run", "--simulate"], &config);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--simulate needs a [simulation] section"),
        "{stderr}"
    );

    let simulate = |config: &Path, log: &Path| {
        let mut run = Command::new(BIDDER);
        run.args(["run", "--simulate", "--config"]).arg(config);
        spawn_logged(run, log)
    };
    let d = Daemon::start_with("sim", simulated, simulate);
    d.wait_log("SIMULATION MODE");
    assert_eq!(metric_sum(&d.metrics(), "bidder_simulated_clock"), 1);
    assert_eq!(
        d.price(),
        Some(1.8),
        "inside the daypart on the simulated clock"
    );
    calendar.set_unix_ms(SIMULATED_WEDNESDAY_10_30_MS + HOUR_MS);
    assert_ne!(d.price(), Some(1.8), "outside it an hour later");
    calendar.set_unix_ms(SIMULATED_WEDNESDAY_10_30_MS + 7 * 24 * HOUR_MS);
    assert_eq!(d.price(), Some(1.8), "inside again a week later");

    // check-config says what the section means.
    let checked = bidder(&["check-config"], &d.config);
    let stdout = String::from_utf8_lossy(&checked.stdout);
    assert!(stdout.contains("note: [simulation]"), "{stdout}");
    // A reload that drops [simulation] would leave a bidder that could not start again
    // the way it runs: refused, and the running configuration stays.
    let section = format!(
        "\n[simulation]\nclock_file = \"{}\"\n",
        clock_path.display()
    );
    let text = std::fs::read_to_string(&d.config).unwrap();
    assert!(text.contains(&section));
    std::fs::write(&d.config, text.replace(&section, "\n")).unwrap();
    let (status, body) = d.admin("POST", "/reload", b"");
    assert_ne!(status, 200, "{body}");
    assert!(body.contains("simulation"), "{body}");
    assert_eq!(d.price(), Some(1.8), "still serving");
}

#[test]
fn a_reload_that_adds_simulation_to_a_production_bidder_is_refused() {
    let d = Daemon::start("sim-reload", |t| t);
    let text = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(
        &d.config,
        format!("{text}\n[simulation]\nclock_file = \"clock\"\n"),
    )
    .unwrap();
    let (status, body) = d.admin("POST", "/reload", b"");
    assert_ne!(status, 200, "{body}");
    assert!(body.contains("remove [simulation]"), "{body}");
    assert_eq!(metric_sum(&d.metrics(), "bidder_simulated_clock"), 0);
}
