//! The tokio engine over real loopback sockets: keep-alive, pipelining, byte-by-byte
//! clients, every status the engine or the HTTP layer produces, deadlines, the
//! connection limit, gzip bodies, metrics, and shutdown with clients connected.
//!
//! Every client socket has read and write timeouts, and every engine is shut down (and
//! its threads joined) by the test that started it, so a broken engine fails a test
//! instead of hanging the suite.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bidder::http::{BidCall, HttpConfig, HttpLimits, Outcome, ResponseBuf, Service, Status};
use bidder::metrics::{Registry, WorkerMetrics, PUBLISH_INTERVAL_MS};
use bidder::tokio_engine::{TokioEngine, TokioEngineConfig};
use flate2::write::GzEncoder;
use flate2::Compression;

/// Longest any client waits for one read or write before the test fails.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Body size of the `big` partner's bids.
const BIG_BODY_BYTES: usize = 60_000;
/// How long the slow partner's decision takes.
const SLOW_DECISION: Duration = Duration::from_millis(300);

/// Answers by partner: `nobid` → 204, `bad` → 400, `slow` → sleeps, then bids;
/// `big` → a body of [`BIG_BODY_BYTES`]; `whoami` → the client address, counted in the worker's metrics; anything else →
/// `{"len":N,"partner":P}` with the decoded body length.
struct Echo;

impl Service for Echo {
    fn handle(&self, call: &BidCall<'_>, out: &mut ResponseBuf) -> Outcome {
        match call.partner {
            Some("nobid") => return Outcome::NoBid,
            Some("bad") => return Outcome::Reject(Status::BadRequest),
            Some("slow") => thread::sleep(SLOW_DECISION),
            Some("big") => {
                let _ = out.extend(&[b'x'; BIG_BODY_BYTES]);
                return Outcome::Bid;
            }
            Some("whoami") => {
                WorkerMetrics::with_current(|m| m.partner(Some(0)).requests.inc());
                let _ = write!(out, "{:?}", call.peer);
                return Outcome::Bid;
            }
            _ => {}
        }
        let _ = write!(
            out,
            "{{\"len\":{},\"partner\":\"{}\"}}",
            call.body.len(),
            call.partner.unwrap_or("-")
        );
        Outcome::Bid
    }
}

struct Running {
    engine: TokioEngine,
    metrics: Vec<Arc<WorkerMetrics>>,
    addr: SocketAddr,
}

fn start(config: TokioEngineConfig) -> Running {
    let registry = Registry::new();
    let metrics = registry.add_workers(config.workers);
    let engine = TokioEngine::start(config, Arc::new(Echo), &metrics).expect("engine starts");
    let addr = engine.local_addr();
    Running {
        engine,
        metrics,
        addr,
    }
}

fn config() -> TokioEngineConfig {
    TokioEngineConfig {
        listen_addr: "127.0.0.1:0".parse().unwrap(),
        workers: 1,
        ..TokioEngineConfig::default()
    }
}

impl Running {
    fn responses(&self, status: Status) -> u64 {
        self.metrics.iter().map(|m| m.responses(status)).sum()
    }
}

/// One answer as the client read it.
#[derive(Debug)]
struct Resp {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Resp {
    fn closes(&self) -> bool {
        self.head.contains("connection: close\r\n")
    }
}

struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("send");
    }

    fn read_response(&mut self) -> Resp {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).expect("read head");
            assert!(
                n > 0,
                "connection closed mid-response; head so far: {head:?}"
            );
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let status = head[9..12].parse().expect("status code");
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map_or(0, |v| v.trim().parse().expect("content-length"));
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).expect("read body");
        Resp { status, head, body }
    }

    /// The server closed: EOF with nothing more to read.
    fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty(), "unexpected bytes: {rest:?}"),
            Err(e) => panic!("expected a clean close, got {e}"),
        }
    }

    fn post(&mut self, path: &str, body: &[u8]) -> Resp {
        self.send(&post(path, "", body));
        self.read_response()
    }
}

fn post(path: &str, extra_headers: &str, body: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n{extra_headers}\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

fn echo(partner: &str, len: usize) -> Vec<u8> {
    format!("{{\"len\":{len},\"partner\":\"{partner}\"}}").into_bytes()
}

/// Polls `cond` until it holds or `limit` passes.
fn eventually(limit: Duration, what: &str, cond: impl Fn() -> bool) {
    let until = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_keep_alive_connection_is_reused_for_many_requests() {
    let r = start(config());
    let mut c = Client::connect(r.addr);
    for i in 0..100 {
        let body = vec![b'x'; i];
        let resp = c.post("/bid/acme", &body);
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, echo("acme", i));
        assert!(!resp.closes());
        assert!(resp.head.contains("x-openrtb-version: 2.6\r\n"));
    }
    assert_eq!(r.engine.stats()[0].connections_accepted.get(), 1);
    assert_eq!(r.responses(Status::Ok), 100);
    r.engine.shutdown().unwrap();
}

#[test]
fn the_service_sees_the_client_address_and_its_worker_metrics() {
    let r = start(config());
    let mut c = Client::connect(r.addr);
    let resp = c.post("/bid/whoami", b"");
    assert_eq!(resp.body, b"Some(127.0.0.1)");
    assert_eq!(r.metrics[0].partner(Some(0)).requests.get(), 1);
    r.engine.shutdown().unwrap();
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let r = start(config());
    let mut c = Client::connect(r.addr);
    let partners = ["a", "nobid", "b", "bad", "c", "nobid", "d"];
    let mut all = Vec::new();
    for _ in 0..10 {
        for p in partners {
            all.extend(post(&format!("/bid/{p}"), "", p.as_bytes()));
        }
    }
    all.extend(post("/nowhere", "", b""));
    c.send(&all);
    for _ in 0..10 {
        for p in partners {
            let resp = c.read_response();
            match p {
                "nobid" => assert_eq!(resp.status, 204),
                "bad" => assert_eq!(resp.status, 400),
                _ => assert_eq!((resp.status, resp.body), (200, echo(p, p.len()))),
            }
        }
    }
    assert_eq!(c.read_response().status, 404);
    assert_eq!(c.post("/bid/after", b"").status, 200, "still usable");
    r.engine.shutdown().unwrap();
}

#[test]
fn a_byte_by_byte_client_gets_the_same_answers() {
    let r = start(config());
    let mut c = Client::connect(r.addr);
    let mut raw = post("/bid/one", "", b"{\"id\":\"1\"}");
    raw.extend(
        b"POST /bid/two HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    raw.extend(post("/bid/nobid", "", b""));
    for byte in &raw {
        c.send(std::slice::from_ref(byte));
    }
    assert_eq!(c.read_response().body, echo("one", 10));
    assert_eq!(c.read_response().body, echo("two", 3));
    assert_eq!(c.read_response().status, 204);
    r.engine.shutdown().unwrap();
}

#[test]
fn refusals_get_their_status_and_close() {
    let r = start(TokioEngineConfig {
        http: HttpConfig {
            limits: HttpLimits {
                max_header_bytes: 1024,
                max_body_bytes: 1000,
                ..HttpLimits::default()
            },
            ..HttpConfig::default()
        },
        ..config()
    });
    let long_header = format!("X-Pad: {}\r\n", "p".repeat(2000));
    let cases: [(&str, Vec<u8>, u16, bool); 6] = [
        (
            "malformed head",
            b"POST /bid/a HTTP/1.1\r\nno colon\r\n\r\n".to_vec(),
            400,
            true,
        ),
        ("unknown path", post("/nope", "", b"{}"), 404, false),
        (
            "GET",
            b"GET /openrtb2/bid HTTP/1.1\r\n\r\n".to_vec(),
            405,
            true,
        ),
        (
            "body over limit",
            post("/bid/a", "", &[b'b'; 1001]),
            413,
            true,
        ),
        (
            "header over limit",
            post("/bid/a", &long_header, b""),
            431,
            true,
        ),
        (
            "connection: close honoured",
            post("/bid/a", "Connection: close\r\n", b""),
            200,
            true,
        ),
    ];
    for (name, raw, status, closes) in cases {
        let mut c = Client::connect(r.addr);
        c.send(&raw);
        let resp = c.read_response();
        assert_eq!((resp.status, resp.closes()), (status, closes), "{name}");
        if closes {
            c.expect_closed();
        }
    }
    r.engine.shutdown().unwrap();
}

#[test]
fn a_stalled_header_or_body_gets_408_and_close() {
    let r = start(TokioEngineConfig {
        request_timeout_ms: 200,
        ..config()
    });
    for partial in [
        &b"POST /bid/a HTTP/1.1\r\nContent-Le"[..],
        &b"POST /bid/a HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"[..],
    ] {
        let mut c = Client::connect(r.addr);
        let started = Instant::now();
        c.send(partial);
        let resp = c.read_response();
        let waited = started.elapsed();
        assert_eq!(resp.status, 408);
        assert!(resp.closes());
        assert!(
            waited >= Duration::from_millis(190) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
        c.expect_closed();
    }
    assert_eq!(r.engine.stats()[0].request_timeouts.get(), 2);
    assert_eq!(r.responses(Status::RequestTimeout), 2);
    r.engine.shutdown().unwrap();
}

#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let r = start(TokioEngineConfig {
        idle_timeout_ms: 200,
        request_timeout_ms: 5_000,
        ..config()
    });
    let mut c = Client::connect(r.addr);
    assert_eq!(c.post("/bid/a", b"").status, 200);
    let started = Instant::now();
    c.expect_closed();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(190) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    let stats = &r.engine.stats()[0];
    eventually(CLIENT_TIMEOUT, "the close to be counted", || {
        stats.connections_closed.get() == 1
    });
    assert_eq!(stats.idle_timeouts.get(), 1);
    assert_eq!(stats.connections_open(), 0);
    r.engine.shutdown().unwrap();
}

#[test]
fn a_client_that_stops_reading_is_closed_after_the_idle_timeout() {
    let r = start(TokioEngineConfig {
        idle_timeout_ms: 300,
        ..config()
    });
    let mut c = Client::connect(r.addr);
    // ~24 MB of answers: more than loopback socket buffers hold, so writes block.
    let requests: Vec<u8> = (0..400).flat_map(|_| post("/bid/big", "", b"")).collect();
    c.send(&requests);
    let stats = &r.engine.stats()[0];
    eventually(CLIENT_TIMEOUT, "the stuck write to time out", || {
        stats.write_timeouts.get() == 1
    });
    eventually(CLIENT_TIMEOUT, "the connection to close", || {
        stats.connections_open() == 0
    });
    let mut fresh = Client::connect(r.addr);
    assert_eq!(
        fresh.post("/bid/a", b"").status,
        200,
        "the worker is not stuck"
    );
    r.engine.shutdown().unwrap();
}

#[test]
fn many_concurrent_connections_are_all_served() {
    const CLIENTS: usize = 8;
    const CONNS_PER_CLIENT: usize = 25;
    const REQUESTS: usize = 4;
    let r = start(TokioEngineConfig {
        workers: 2,
        ..config()
    });
    let addr = r.addr;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|t| {
            thread::spawn(move || {
                let mut conns: Vec<Client> = (0..CONNS_PER_CLIENT)
                    .map(|_| Client::connect(addr))
                    .collect();
                for round in 0..REQUESTS {
                    for (i, c) in conns.iter_mut().enumerate() {
                        let partner = format!("t{t}c{i}r{round}");
                        c.send(&post(&format!("/bid/{partner}"), "", b"{}"));
                    }
                    for (i, c) in conns.iter_mut().enumerate() {
                        let partner = format!("t{t}c{i}r{round}");
                        assert_eq!(c.read_response().body, echo(&partner, 2));
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client thread");
    }
    let accepted: u64 = r
        .engine
        .stats()
        .iter()
        .map(|s| s.connections_accepted.get())
        .sum();
    assert_eq!(accepted, (CLIENTS * CONNS_PER_CLIENT) as u64);
    assert_eq!(
        r.responses(Status::Ok),
        (CLIENTS * CONNS_PER_CLIENT * REQUESTS) as u64
    );
    r.engine.shutdown().unwrap();
}

#[test]
fn connections_past_the_limit_get_503_and_close() {
    let r = start(TokioEngineConfig {
        max_connections: 4,
        ..config()
    });
    let mut held: Vec<Client> = (0..4).map(|_| Client::connect(r.addr)).collect();
    for c in &mut held {
        assert_eq!(c.post("/bid/a", b"").status, 200);
    }
    let mut extra = Client::connect(r.addr);
    extra.send(&post("/bid/a", "", b""));
    let resp = extra.read_response();
    assert_eq!((resp.status, resp.closes()), (503, true));
    extra.expect_closed();
    let stats = &r.engine.stats()[0];
    assert_eq!(stats.connections_shed.get(), 1);
    assert_eq!(r.responses(Status::ServiceUnavailable), 1);

    drop(held.pop());
    eventually(CLIENT_TIMEOUT, "a slot to free up", || {
        stats.connections_open() == 3
    });
    let mut again = Client::connect(r.addr);
    assert_eq!(again.post("/bid/a", b"").status, 200);
    r.engine.shutdown().unwrap();
}

#[test]
fn gzip_request_bodies_are_inflated_and_expect_continue_is_answered() {
    let r = start(config());
    let mut c = Client::connect(r.addr);
    let plain = vec![b'z'; 5000];
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(&plain).unwrap();
    let gz = e.finish().unwrap();
    let resp = c.post_with("/bid/gz", "Content-Encoding: gzip\r\n", &gz);
    assert_eq!(resp.body, echo("gz", 5000));

    c.send(b"POST /bid/cont HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    let interim = c.read_response();
    assert_eq!(interim.status, 100);
    c.send(b"abcd");
    assert_eq!(c.read_response().body, echo("cont", 4));
    r.engine.shutdown().unwrap();
}

impl Client {
    fn post_with(&mut self, path: &str, headers: &str, body: &[u8]) -> Resp {
        self.send(&post(path, headers, body));
        self.read_response()
    }
}

#[test]
fn latencies_reach_the_worker_metrics() {
    let r = start(config());
    let mut c = Client::connect(r.addr);
    for _ in 0..10 {
        c.post("/bid/a", b"{}");
    }
    c.post("/nowhere", b"");
    let m = &r.metrics[0];
    eventually(
        Duration::from_millis(PUBLISH_INTERVAL_MS * 20),
        "latencies to be published",
        || m.with_published(|_, total| total.count()) == 10,
    );
    m.with_published(|decision, total| {
        assert_eq!(decision.count(), 10, "only decided requests count");
        assert!(total.sum_us() >= decision.sum_us());
    });
    r.engine.shutdown().unwrap();
}

#[test]
fn shutdown_with_clients_connected_finishes_in_flight_and_closes_the_rest() {
    let r = start(TokioEngineConfig {
        workers: 2,
        shutdown_grace_ms: 1_000,
        request_timeout_ms: 10_000,
        ..config()
    });
    let mut idle: Vec<Client> = (0..6).map(|_| Client::connect(r.addr)).collect();
    for c in &mut idle {
        assert_eq!(c.post("/bid/a", b"").status, 200);
    }
    let mut partial = Client::connect(r.addr);
    partial.send(b"POST /bid/a HTTP/1.1\r\nContent-Length: 5\r\n\r\nab");
    let mut in_flight = Client::connect(r.addr);
    in_flight.send(&post("/bid/slow", "", b""));
    thread::sleep(SLOW_DECISION / 3);

    let started = Instant::now();
    let engine = r.engine;
    let stopper = thread::spawn(move || engine.shutdown());

    let resp = in_flight.read_response();
    // Its answer was decided before the stop arrived, so it may not say `close`; the
    // connection closes right after it either way.
    assert_eq!(resp.status, 200, "the request in flight is answered");
    in_flight.expect_closed();
    for c in &mut idle {
        c.expect_closed();
    }
    partial.send(b"cde");
    let resp = partial.read_response();
    assert_eq!(resp.status, 200, "a request in progress may still finish");
    assert!(resp.closes());
    partial.expect_closed();

    stopper.join().unwrap().expect("clean shutdown");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(TcpStream::connect(r.addr).is_err(), "no longer listening");
}

#[test]
fn shutdown_gives_up_on_stalled_requests_after_the_grace_period() {
    let r = start(TokioEngineConfig {
        shutdown_grace_ms: 300,
        request_timeout_ms: 10_000,
        ..config()
    });
    let mut stalled = Client::connect(r.addr);
    stalled.send(b"POST /bid/a HTTP/1.1\r\nContent-Length: 5\r\n\r\nab");
    eventually(CLIENT_TIMEOUT, "the connection to be accepted", || {
        r.engine.stats()[0].connections_accepted.get() == 1
    });
    // Nothing shows when the worker has read the partial request; on loopback it takes
    // microseconds. Without it the connection looks idle and closes at once.
    thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    r.engine.shutdown().unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(2),
        "{took:?}"
    );
    let mut rest = Vec::new();
    let _ = stalled.reader.read_to_end(&mut rest);
    assert!(rest.is_empty());
    let _ = stalled.writer.shutdown(Shutdown::Both);
}
