//! The agent's Prometheus endpoint over a real TCP socket: counters that move with
//! what the agent does, text that `promtool check metrics` accepts, and a clear refusal
//! of anything but `GET /metrics`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{code, config, fake_bidder, metrics_addr, sample, scrape, Client, Running, TempDir};
use testkit::promtool::promtool_check;

#[test]
fn the_scrape_passes_promtool_and_counts_requests_and_cycles_from_zero() {
    let dir = TempDir::new("metrics");
    let _bidder = fake_bidder(&dir.0.join("stats"));
    let agent = Running::start(config(&dir.0));
    let mut c = Client::connect(&agent.socket);

    let text = scrape(&mut c);
    promtool_check(&text);
    // Every cycle outcome is there before the first cycle, so increase() sees it.
    for outcome in ["ok", "failed", "timeout"] {
        let series =
            format!("bidder_agent_cycles_total{{strategist=\"llm\",outcome=\"{outcome}\"}}");
        assert_eq!(sample(&text, &series), Some(0.0), "{series}\n{text}");
    }
    // No key in the test environment: the strategist is off and says so.
    assert_eq!(
        sample(&text, "bidder_agent_strategist_active{strategist=\"llm\"}"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "bidder_agent_last_ok_cycle_timestamp_seconds{strategist=\"llm\"}"
        ),
        None,
        "no ok cycle yet: {text}"
    );

    let ok_before = sample(&text, "bidder_agent_requests_total{outcome=\"ok\"}").unwrap();
    let refused = c.call(r#"{"v":1,"verb":"no.such.verb"}"#);
    assert_eq!(code(&refused), "unknown_verb", "{refused}");
    let set = c.call(
        r#"{"v":1,"verb":"strategy.set","args":{"campaign":"acme-display","margin_ppm":1100000},"why":"test"}"#,
    );
    assert_eq!(code(&set), "ok", "{set}");
    let text = scrape(&mut c);
    assert_eq!(
        sample(&text, "bidder_agent_requests_total{outcome=\"error\"}"),
        Some(1.0),
        "{text}"
    );
    // The set and the status call this scrape made to find the address.
    assert_eq!(
        sample(&text, "bidder_agent_requests_total{outcome=\"ok\"}"),
        Some(ok_before + 2.0),
        "{text}"
    );
}

#[test]
fn anything_but_get_metrics_gets_a_clear_refusal() {
    let dir = TempDir::new("metrics-refuse");
    let _bidder = fake_bidder(&dir.0.join("stats"));
    let agent = Running::start(config(&dir.0));
    let mut c = Client::connect(&agent.socket);
    let addr = metrics_addr(&mut c);

    let (status, body) = testkit::http::get(addr, "/");
    assert_eq!(
        (status, body.as_str()),
        (404, "only /metrics is served here\n")
    );
    let (status, _) = testkit::http::request(addr, "POST", "/metrics", b"");
    assert_eq!(status, 405);
    let (status, _) = testkit::http::exchange(addr, "GET", "/metrics?x=1", "", b"").unwrap();
    assert_eq!(status, 200, "a query string is still the scrape");

    // Not HTTP at all: 400.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"\x00\x01 nonsense\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 400 "), "{reply:?}");

    // A head past MAX_HEAD_BYTES: the connection closes without an answer, and the
    // next scrape is served.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let long = format!(
        "GET /metrics HTTP/1.1\r\nX-Pad: {}\r\n",
        "a".repeat(agent::metrics::MAX_HEAD_BYTES)
    );
    let _ = s.write_all(long.as_bytes());
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    assert!(reply.is_empty(), "{:?}", String::from_utf8_lossy(&reply));
    assert!(scrape(&mut c).contains("bidder_agent_info"));
}

#[test]
fn a_taken_metrics_port_stops_the_start_with_the_setting_named() {
    let dir = TempDir::new("metrics-taken");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut c = config(&dir.0);
    c.metrics_listen = taken.local_addr().unwrap().to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt
        .block_on(agent::run_until(
            c,
            None,
            bidder_common::clock::Clock::system(),
            std::future::pending(),
        ))
        .unwrap_err();
    assert!(
        err.contains("metrics_listen") && err.contains("bind"),
        "{err}"
    );
}

#[test]
fn without_metrics_listen_nothing_is_served_and_status_says_none() {
    let dir = TempDir::new("metrics-off");
    let _bidder = fake_bidder(&dir.0.join("stats"));
    let mut c = config(&dir.0);
    c.metrics_listen = String::new();
    let agent = Running::start(c);
    let mut c = Client::connect(&agent.socket);
    let status = c.call(r#"{"v":1,"verb":"status"}"#);
    assert!(status["result"]["agent"]["metrics"].is_null(), "{status}");
}

/// The agent binary on `config`, `--simulate` if asked.
fn agent_binary(config: &std::path::Path, simulate: bool) -> std::process::Command {
    let mut agent = std::process::Command::new(env!("CARGO_BIN_EXE_agent"));
    agent.arg("--config").arg(config);
    if simulate {
        agent.arg("--simulate");
    }
    agent
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    agent
}

/// Kills the agent when the test ends, passed or failed.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn simulation_mode_is_explicit_and_stamps_changes_with_the_simulators_clock() {
    const SIMULATED_MS: u64 = 1_930_473_000_000;
    let dir = TempDir::new("metrics-sim");
    let _bidder = fake_bidder(&dir.0.join("stats"));
    let clock_path = dir.0.join("clock");
    let calendar = bidder_common::clock::ClockFile::create(&clock_path, SIMULATED_MS).unwrap();
    let c = config(&dir.0);
    let text = format!(
        "audit_log = \"{}\"\nbidder_admin = \"\"\nmetrics_listen = \"127.0.0.1:0\"\n\
         [socket]\npath = \"{}\"\nallowed_uids = [{}]\n\
         [tables]\nstrategy_path = \"{}\"\nstats_path = \"{}\"\ncampaign_capacity = 16\npartner_capacity = 4\n\
         [llm]\napi_key_env = \"BIDDER_TEST_NO_LLM_KEY\"\n",
        c.audit_log.display(),
        c.socket.path.display(),
        common::current_uid(),
        c.tables.strategy_path.display(),
        c.tables.stats_path.display(),
    );
    let production = dir.0.join("agent.toml");
    std::fs::write(&production, &text).unwrap();
    let simulation = dir.0.join("agent-sim.toml");
    let section = format!("[simulation]\nclock_file = \"{}\"\n", clock_path.display());
    std::fs::write(&simulation, format!("{text}{section}")).unwrap();

    for (file, simulate, says) in [
        (&simulation, false, "production agent refuses"),
        (&production, true, "--simulate needs a [simulation] section"),
    ] {
        let out = agent_binary(file, simulate).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }

    let _agent = Killed(agent_binary(&simulation, true).spawn().unwrap());
    testkit::eventually(Duration::from_secs(10), "the agent's socket", || {
        std::os::unix::net::UnixStream::connect(&c.socket.path).is_ok()
    });
    let mut client = Client::connect(&c.socket.path);
    let text = scrape(&mut client);
    assert_eq!(
        sample(&text, "bidder_agent_simulated_clock"),
        Some(1.0),
        "{text}"
    );
    calendar.set_unix_ms(SIMULATED_MS + 90_000);
    let set = client.call(
        r#"{"v":1,"verb":"strategy.set","args":{"campaign":"acme-display","margin_ppm":1100000},"why":"sim"}"#,
    );
    assert_eq!(code(&set), "ok", "{set}");
    let audit = std::fs::read_to_string(&c.audit_log).unwrap();
    let line: serde_json::Value = serde_json::from_str(audit.lines().last().unwrap()).unwrap();
    assert_eq!(line["at_unix_ms"], SIMULATED_MS + 90_000, "{audit}");
}

#[test]
fn a_production_agent_reports_the_host_clock() {
    let dir = TempDir::new("metrics-host-clock");
    let _bidder = fake_bidder(&dir.0.join("stats"));
    let agent = Running::start(config(&dir.0));
    let mut c = Client::connect(&agent.socket);
    let text = scrape(&mut c);
    assert_eq!(
        sample(&text, "bidder_agent_simulated_clock"),
        Some(0.0),
        "{text}"
    );
}
