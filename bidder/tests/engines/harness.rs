//! What the engine suites share: the real bid service on the demo configuration (or a
//! variant of it), either engine in front of it on a loopback port, a registry to read
//! the engine's counters the way `/metrics` does, and a blocking HTTP/1.1 client whose
//! every read and write is bounded by [`CLIENT_TIMEOUT`].
//!
//! A [`Bidder`] stops and joins its engine when dropped, so a failing test still cleans
//! up; the engines' own `Drop` does the joining.

// Each test crate that includes this module uses a different part of it.
#![allow(dead_code)]

use std::io::{BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use bidder::bid::gate::BidService;
use bidder::bid::pipeline::Bidding;
use bidder::catalog::{Campaign, Catalog};
use bidder::clock::Clock;
use bidder::config::Config;
use bidder::control::Registry;
use bidder::decide::strategy::{CampaignStrategy, StaticStrategy, StrategySource};
use bidder::decide::DecisionStats;
use bidder::engine::ring::{Engine, RingConfig, RingWrite};
use bidder::engine::tokio::{TokioEngine, TokioEngineConfig};
use bidder::engine::ServeConfig;
use bidder::http::{HttpConfig, HttpLimits, Status};
use bidder::metrics::WorkerMetrics;

/// Longest any single client read or write may block before the test fails.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Which engine serves the bid port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    IoUring,
    Tokio,
}

impl EngineKind {
    pub const BOTH: [EngineKind; 2] = [EngineKind::IoUring, EngineKind::Tokio];

    /// The `engine` label both engines put on their metrics.
    pub fn label(self) -> &'static str {
        match self {
            EngineKind::IoUring => "io_uring",
            EngineKind::Tokio => "tokio",
        }
    }
}

/// The engine settings a case may change; the rest are fixed below, per engine.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub workers: usize,
    pub max_connections: u32,
    pub idle_timeout_ms: u64,
    pub first_byte_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub shutdown_grace_ms: u64,
    pub limits: HttpLimits,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            workers: 1,
            max_connections: 256,
            idle_timeout_ms: 10_000,
            first_byte_timeout_ms: 10_000,
            request_timeout_ms: 2_000,
            shutdown_grace_ms: 1_000,
            limits: HttpLimits {
                max_header_bytes: 2048,
                max_headers: 32,
                max_body_bytes: 64 * 1024,
                max_decompressed_body_bytes: 256 * 1024,
            },
        }
    }
}

impl EngineSettings {
    fn http(&self) -> HttpConfig {
        HttpConfig {
            limits: self.limits.clone(),
            ..HttpConfig::default()
        }
    }

    fn ring(&self) -> RingConfig {
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        RingConfig {
            serve: self.serve(),
            cores: (0..self.workers).map(|i| i % cores).collect(),
            ring_entries: 256,
            recv_buffers: 64,
            recv_buffer_bytes: 4096,
            output_buffers: 32,
            timer_tick_ms: 5,
            sqpoll: None,
            write: RingWrite::Fixed,
        }
    }

    fn tokio(&self) -> TokioEngineConfig {
        TokioEngineConfig {
            serve: self.serve(),
            workers: self.workers,
            cores: Vec::new(),
        }
    }

    /// What both engines serve with: the same settings, so a case differs only by engine.
    fn serve(&self) -> ServeConfig {
        ServeConfig {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            listen_backlog: 512,
            max_connections: self.max_connections,
            idle_timeout_ms: self.idle_timeout_ms,
            first_byte_timeout_ms: self.first_byte_timeout_ms,
            request_timeout_ms: self.request_timeout_ms,
            close_linger_ms: 200,
            shutdown_grace_ms: self.shutdown_grace_ms,
            http: self.http(),
        }
    }
}

// ---- the real service -----------------------------------------------------------

pub fn demo_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo.toml")
}

/// A loopback source inside ssp-b's networks in [`demo_text`]: a partner's bid path is
/// served only from its own networks, and the demo's (192.0.2.0/24) are not local.
pub const SSP_B_SOURCE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 4));

/// The demo configuration, except for a generous deadline cap (cases that are not
/// about deadlines must not turn into deadline no-bids on a loaded machine: debug
/// build, tests in parallel; deadline cases set their own cap with [`edit`]), and
/// ssp-b also at [`SSP_B_SOURCE`].
pub fn demo_text() -> String {
    let text = std::fs::read_to_string(demo_path()).expect("read the demo config");
    let text = edit(
        &text,
        r#"cidrs = ["192.0.2.0/24", "2001:db8:b::/48"]"#,
        r#"cidrs = ["192.0.2.0/24", "2001:db8:b::/48", "127.0.0.4/32"]"#,
    );
    edit(&text, "deadline_cap_ms = 8", "deadline_cap_ms = 1000")
}

/// `text` with `from` replaced by `to`; fails if `from` is missing, so a case never
/// runs on a configuration it did not mean to.
pub fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "config has no {from:?} to replace");
    text.replacen(from, to, 1)
}

/// Compiles `text` (resolved beside the demo file, for its key) into a fresh
/// [`Bidding`] (its own budgets and ledger inbox) with the strategy the daemon uses
/// when no agent writes one: the configured shading.
pub fn bidding(text: &str) -> Bidding {
    bidding_with(text, |catalog| {
        Arc::new(StaticStrategy {
            shading_ppm: catalog.settings.default_shading_ppm,
        })
    })
}

/// Like [`bidding`], with the strategy `strategy` makes for the compiled catalog.
pub fn bidding_with(
    text: &str,
    strategy: impl FnOnce(&Catalog) -> Arc<dyn StrategySource>,
) -> Bidding {
    let config = Config::from_text(&demo_path(), text.to_owned())
        .unwrap_or_else(|e| panic!("test config invalid: {e:?}"));
    let catalog = Catalog::compile(&config).expect("test config compiles");
    let strategy = strategy(&catalog);
    // No instant is fixed here: the demo bids all week, and no ledger runs.
    Bidding::new(catalog, strategy, Clock::system())
}

/// A strategy that sleeps this long per candidate campaign: a decision too slow for
/// its deadline, injected without touching the engine.
pub struct Slow(pub Duration);

impl StrategySource for Slow {
    fn campaign(&self, idx: usize, c: &Campaign) -> CampaignStrategy {
        thread::sleep(self.0);
        StaticStrategy {
            shading_ppm: 900_000,
        }
        .campaign(idx, c)
    }
}

/// A strategy that, once armed, holds the next decision until the test opens it (or
/// [`CLIENT_TIMEOUT`] passes, so a failed test never leaves a worker stuck): a request
/// kept in flight for exactly as long as a case needs.
#[derive(Default)]
pub struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    armed: bool,
    entered: bool,
    calls: u64,
}

impl Gate {
    /// The next decision waits at the gate.
    pub fn arm(&self) {
        let mut s = self.state.lock().unwrap();
        s.armed = true;
        s.entered = false;
    }

    /// Lets every waiting and later decision through.
    pub fn open(&self) {
        self.state.lock().unwrap().armed = false;
        self.changed.notify_all();
    }

    /// Blocks until a decision waits at the armed gate; false after `limit`.
    pub fn wait_entered(&self, limit: Duration) -> bool {
        let s = self.state.lock().unwrap();
        let (s, _) = self
            .changed
            .wait_timeout_while(s, limit, |s| !s.entered)
            .unwrap();
        s.entered
    }

    /// How often a decision asked for strategy.
    pub fn calls(&self) -> u64 {
        self.state.lock().unwrap().calls
    }
}

impl StrategySource for Gate {
    fn campaign(&self, idx: usize, c: &Campaign) -> CampaignStrategy {
        let mut s = self.state.lock().unwrap();
        s.calls += 1;
        if s.armed {
            s.entered = true;
            self.changed.notify_all();
            let _unused = self
                .changed
                .wait_timeout_while(s, CLIENT_TIMEOUT, |s| s.armed)
                .unwrap();
        }
        StaticStrategy {
            shading_ppm: 900_000,
        }
        .campaign(idx, c)
    }
}

/// Opens the gate when dropped, so a case that fails while a decision waits does not
/// make the engine's shutdown wait for the gate's timeout.
pub struct OpenOnDrop(pub Arc<Gate>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

// ---- an engine in front of it ---------------------------------------------------

enum Running {
    Ring(Engine),
    Tokio(TokioEngine),
}

/// The real service behind one engine on a loopback port.
pub struct Bidder {
    pub kind: EngineKind,
    pub addr: SocketAddr,
    pub service: Arc<BidService>,
    pub metrics: Vec<Arc<WorkerMetrics>>,
    registry: Registry,
    engine: Option<Running>,
}

impl Bidder {
    /// Starts `kind` with `settings` in front of a [`BidService`] on `bidding`.
    pub fn start(kind: EngineKind, settings: &EngineSettings, bidding: Bidding) -> Bidder {
        let registry = Registry::new();
        let metrics = registry.add_workers(settings.workers);
        let catalog = Arc::clone(&bidding.catalog);
        let budgets = Arc::clone(&bidding.budgets);
        let service = Arc::new(BidService::new(bidding, settings.workers as u32));
        let engine = match kind {
            EngineKind::IoUring => Running::Ring(
                Engine::start(settings.ring(), Arc::clone(&service), &metrics)
                    .expect("io_uring engine starts"),
            ),
            EngineKind::Tokio => Running::Tokio(
                TokioEngine::start(settings.tokio(), Arc::clone(&service), &metrics)
                    .expect("tokio engine starts"),
            ),
        };
        let addr = match &engine {
            Running::Ring(e) => {
                registry.register(e.collector());
                e.local_addr()
            }
            Running::Tokio(e) => {
                registry.register(e.collector());
                e.local_addr()
            }
        };
        let decisions = Arc::clone(&service);
        registry.add_decision_source(Arc::new(move || decisions.decision_stats()));
        registry.set_catalog(catalog, budgets);
        Bidder {
            kind,
            addr,
            service,
            metrics,
            registry,
            engine: Some(engine),
        }
    }

    /// The demo configuration (deadline cap raised) with the static strategy.
    pub fn demo(kind: EngineKind, settings: &EngineSettings) -> Bidder {
        Bidder::start(kind, settings, bidding(&demo_text()))
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// A connection from `source`, e.g. `127.0.0.2`: any loopback address reaches the
    /// engine, so a case can pose as the partner whose CIDRs hold it.
    pub fn connect_from(&self, source: IpAddr) -> Client {
        Client::connect_from(self.addr, source)
    }

    /// Sum of every sample of the metric `name`, as a `/metrics` scrape renders it.
    pub fn counter(&self, name: &str) -> u64 {
        metric_sum(&self.registry.scrape(), name)
    }

    /// Responses with `status`, as the workers counted them for `/metrics`.
    pub fn responses(&self, status: Status) -> u64 {
        self.metrics.iter().map(|m| m.responses(status)).sum()
    }

    /// A decision counter summed over the service's worker threads.
    pub fn decisions(&self, pick: impl Fn(&DecisionStats) -> u64) -> u64 {
        self.service.decision_stats().iter().map(|d| pick(d)).sum()
    }

    /// Budget held by reservations, all campaigns.
    pub fn reserved_micros(&self) -> i64 {
        let budgets = &self.service.current().bidding.budgets;
        (0..budgets.len())
            .map(|c| budgets.snapshot(c).reserved_micros)
            .sum()
    }

    /// Stops accepting, finishes requests in progress within the grace, closes every
    /// connection and joins the workers.
    pub fn shutdown(mut self) -> Result<(), String> {
        match self.engine.take().expect("engine running") {
            Running::Ring(e) => e.shutdown().map_err(|e| e.to_string()),
            Running::Tokio(e) => e.shutdown().map_err(|e| e.to_string()),
        }
    }
}

/// Sums every sample of `name` in Prometheus text (any labels).
pub fn metric_sum(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .map(|l| {
            let value = l.rsplit(' ').next().unwrap_or_default();
            value
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("{name}: not a counter: {l}"))
        })
        .sum()
}

// ---- requests -------------------------------------------------------------------

/// A one-banner (300×250) bid request with `id`; acme-display bids 1.80 on it.
pub fn banner(id: &str) -> String {
    format!(
        r#"{{"id":"{id}","tmax":1000,"imp":[{{"id":"1","banner":{{"w":300,"h":250}}}}],"site":{{"domain":"news.example"}}}}"#
    )
}

/// A request no campaign can bid on (a size nobody has a creative for).
pub fn unbiddable(id: &str) -> String {
    format!(
        r#"{{"id":"{id}","tmax":1000,"imp":[{{"id":"1","banner":{{"w":7,"h":7}}}}],"site":{{"domain":"news.example"}}}}"#
    )
}

/// A POST with `extra` header lines (each ending in CRLF).
pub fn post(path: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nHost: bidder\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("a valid gzip body");
    out
}

// ---- the client -----------------------------------------------------------------

/// One response as the client read it (framed by the shared test reader).
pub use testkit::http::Response as Resp;

/// What the engine suites ask of a response beyond the shared reader's fields.
pub trait JsonBody {
    /// The body as JSON, re-parsed strictly (nothing may follow the value).
    fn json(&self) -> serde_json::Value;
}

impl JsonBody for Resp {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// A blocking HTTP/1.1 client on one connection.
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client::on(TcpStream::connect(addr).expect("connect"))
    }

    /// Connects to `addr` from the local address `source`.
    pub fn connect_from(addr: SocketAddr, source: IpAddr) -> Client {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )
        .expect("socket");
        socket
            .bind(&SocketAddr::new(source, 0).into())
            .unwrap_or_else(|e| panic!("bind {source}: {e}"));
        socket
            .connect_timeout(&addr.into(), CLIENT_TIMEOUT)
            .expect("connect");
        Client::on(socket.into())
    }

    fn on(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("send");
    }

    /// Reads one response: head, then `content-length` body bytes.
    pub fn read_response(&mut self) -> Resp {
        testkit::http::read_response(&mut self.reader)
    }

    pub fn request(&mut self, raw: &[u8]) -> Resp {
        self.send(raw);
        self.read_response()
    }

    pub fn post(&mut self, path: &str, body: &[u8]) -> Resp {
        self.request(&post(path, "", body))
    }

    /// The server closed cleanly: EOF with nothing more to read.
    pub fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => assert!(
                rest.is_empty(),
                "unexpected bytes before the close: {:?}",
                String::from_utf8_lossy(&rest)
            ),
            Err(e) => panic!("expected the server to close cleanly, got {e}"),
        }
    }

    /// Whatever arrives until the connection ends, by EOF or by a reset.
    pub fn read_until_closed(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        let _ = self.reader.read_to_end(&mut rest);
        rest
    }
}
