//! An agent served in-process on temporary paths, a bidder stand-in that publishes a
//! stats table like the demo catalog, and a line client.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agent::config::AgentConfig;
use bidder_common::clock::Clock;
use bidder_common::table::shm::{OnMismatch, Writer};
use bidder_common::table::stats::{
    CampaignStatsValue, PartnerStatsValue, StatsTable, CONFIG_ENABLED, ENABLED, IN_CATALOG,
    MAX_CAMPAIGN_NO_BID_REASONS,
};
use bidder_common::table::Capacity;
use serde_json::Value;
pub use testkit::TempDir;

pub mod fake_llm;

/// A directory removed on drop.
/// A configuration with every path under `dir`, short timeouts, this uid allowed.
pub fn config(dir: &Path) -> AgentConfig {
    let mut c = AgentConfig::default();
    c.socket.path = dir.join("control.sock");
    c.socket.allowed_uids = vec![current_uid()];
    // Long enough that a slow step on a loaded machine (promtool, a cold start)
    // never times a test's client out; the idle test sets its own.
    c.socket.idle_timeout_ms = 60_000;
    c.socket.max_line_bytes = 64 * 1024;
    c.tables.strategy_path = dir.join("strategy");
    c.tables.stats_path = dir.join("stats");
    c.tables.campaign_capacity = 16;
    c.tables.partner_capacity = 4;
    c.audit_log = dir.join("audit.jsonl");
    c.bidder_admin = String::new();
    c.metrics_listen = "127.0.0.1:0".into();
    // Never a real key from the developer's environment.
    c.llm.api_key_env = "BIDDER_TEST_NO_LLM_KEY".into();
    // The controller steps only when a test asks (`controller.step`): tests that set
    // strategy by hand see only their own changes.
    c.controller.timer = false;
    c
}

pub fn current_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// The stats table a bidder running the demo catalog would publish (two campaigns,
/// two partners), held open as its writer.
pub fn fake_bidder(path: &Path) -> Writer<StatsTable> {
    let cap = Capacity {
        campaigns: 8,
        partners: 4,
    };
    let mut w =
        Writer::<StatsTable>::open(path, cap, OnMismatch::Recreate, Clock::system()).unwrap();
    // acme-display has seen traffic: 12 imps evaluated = 5 bids + 1 outbid + 4 below
    // the floor + 2 paused; 2 wins cleared at 1.50 and 1.20 CPM.
    let mut acme_no_bids = [0; MAX_CAMPAIGN_NO_BID_REASONS];
    acme_no_bids[1] = 4;
    acme_no_bids[2] = 2;
    for (id, ceiling, budget, traffic) in [
        ("acme-display", 5_000_000, 500_000_000, true),
        ("zephyr-video", 20_000_000, 2_000_000_000, false),
    ] {
        let mut v = CampaignStatsValue {
            flags: IN_CATALOG,
            default_shading_ppm: 900_000,
            max_bid_cpm_micros: ceiling,
            base_cpm_micros: ceiling / 2,
            config_daily_budget_micros: budget,
            daily_budget_micros: budget,
            available_micros: budget,
            ..CampaignStatsValue::default()
        };
        if traffic {
            v.requests = 12;
            v.bids = 5;
            v.outbid = 1;
            v.no_bids = acme_no_bids;
            v.wins = 2;
            v.clearing_micros = 2_700;
            v.spent_micros = 2_700;
            v.available_micros -= 2_700;
        }
        w.put_campaign(id, &v.sealed()).unwrap();
    }
    for (name, qps) in [("exchange-a", 50_000), ("ssp-b", 20_000)] {
        let v = PartnerStatsValue::new(
            IN_CATALOG | CONFIG_ENABLED | ENABLED,
            qps,
            qps / 10,
            qps,
            qps / 10,
            0,
            0,
            0,
        );
        w.put_partner(name, &v.sealed()).unwrap();
    }
    w.put_reason_names(["invalid_request", "partner_refused"]);
    w.put_campaign_reason_names(["no_deal", "below_floor", "paused", "paced"]);
    w
}

/// An agent serving on its own thread and runtime until dropped.
pub struct Running {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
    pub socket: PathBuf,
}

impl Running {
    pub fn start(config: AgentConfig) -> Running {
        Running::start_with_clock(config, Clock::system())
    }

    /// An agent that stamps every change with `clock`.
    pub fn start_with_clock(config: AgentConfig, clock: Clock) -> Running {
        let socket = config.socket.path.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(agent::run_until(config, None, clock, async {
                let _ = rx.await;
            }))
        });
        for _ in 0..500 {
            if UnixStream::connect(&socket).is_ok() {
                break;
            }
            if thread.is_finished() {
                let err = thread.join().unwrap();
                panic!("agent did not start: {err:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Running {
            stop: Some(tx),
            thread: Some(thread),
            socket,
        }
    }

    /// Stops the agent and returns how its run ended.
    pub fn stop(mut self) -> Result<(), String> {
        self.halt()
    }

    fn halt(&mut self) -> Result<(), String> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take() {
            Some(t) => t.join().unwrap(),
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}

/// A connection speaking the line protocol.
pub struct Client {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Client {
    pub fn connect(socket: &Path) -> Client {
        let stream = UnixStream::connect(socket).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Client { stream, reader }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// The next answer line, or `None` when the agent closed the connection.
    pub fn answer(&mut self) -> Option<Value> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad answer {line:?}: {e}")),
            ),
        }
    }

    /// Sends one line and reads one answer.
    pub fn call(&mut self, line: &str) -> Value {
        self.send_raw(line.as_bytes());
        self.send_raw(b"\n");
        self.answer().expect("an answer")
    }
}

/// The error code of an answer, or "ok".
pub fn code(answer: &Value) -> String {
    if answer["ok"] == Value::Bool(true) {
        return "ok".into();
    }
    answer["error"]["code"].as_str().unwrap_or("?").to_string()
}

/// Where the agent serves `/metrics`, as its `status` says.
pub fn metrics_addr(client: &mut Client) -> std::net::SocketAddr {
    let status = client.call(r#"{"v":1,"verb":"status"}"#);
    let addr = status["result"]["agent"]["metrics"]
        .as_str()
        .unwrap_or_else(|| panic!("status names no metrics address: {status}"));
    addr.parse().unwrap()
}

/// One scrape of the agent's `/metrics` (must answer 200).
pub fn scrape(client: &mut Client) -> String {
    let (status, body) = testkit::http::get(metrics_addr(client), "/metrics");
    assert_eq!(status, 200, "{body}");
    body
}

/// The value of the sample `series` (name and labels exactly as exported) in `text`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}
