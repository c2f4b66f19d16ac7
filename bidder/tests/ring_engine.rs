//! What only the io_uring engine has, over real loopback sockets: receive buffers
//! (provided-buffer ring) and registered output buffers under pressure, SQPOLL, the
//! kernel feature probe, and the checks of its own config. Everything both engines
//! share (statuses, limits, keep-alive, pipelining, gzip, deadline, reload, shutdown)
//! is in `tests/engines.rs`, run against both.
//!
//! Every test bounds its waits with socket timeouts and shuts its engine down (joining
//! the workers) even on failure, through `Engine`'s `Drop`.

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use bidder::engine::ring::{Engine, RingConfig, RingWrite, SqPoll};
use bidder::engine::{EngineError, ServeConfig};
use bidder::http::{BidCall, HttpConfig, HttpLimits, Outcome, ResponseBuf, Service, Status};
use testkit::http::read_response;

/// Longest any single socket read or write may block in these tests.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Echoes the decoded body length.
struct Echo;

impl Service for Echo {
    fn handle(&self, call: &BidCall<'_>, out: &mut ResponseBuf) -> Outcome {
        let _ = write!(out, "{{\"len\":{}}}", call.body.len());
        Outcome::Bid
    }
}

/// Answers with the request body itself: answers as large as the requests.
struct Mirror;

impl Service for Mirror {
    fn handle(&self, call: &BidCall<'_>, out: &mut ResponseBuf) -> Outcome {
        match out.write_all(call.body) {
            Ok(()) => Outcome::Bid,
            Err(_) => Outcome::NoBid,
        }
    }
}

fn config() -> RingConfig {
    RingConfig {
        serve: ServeConfig {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            listen_backlog: 512,
            max_connections: 256,
            idle_timeout_ms: 5_000,
            first_byte_timeout_ms: 5_000,
            request_timeout_ms: 1_000,
            close_linger_ms: 200,
            shutdown_grace_ms: 1_000,
            http: HttpConfig {
                limits: HttpLimits {
                    max_header_bytes: 2048,
                    max_headers: 32,
                    max_body_bytes: 256 * 1024,
                    max_decompressed_body_bytes: 1024 * 1024,
                },
                ..HttpConfig::default()
            },
        },
        cores: vec![0],
        ring_entries: 256,
        recv_buffers: 64,
        recv_buffer_bytes: 4096,
        output_buffers: 16,
        timer_tick_ms: 5,
        sqpoll: None,
        write: RingWrite::Fixed,
    }
}

fn start(config: RingConfig) -> Engine {
    Engine::start(config.clone(), Arc::new(Echo), &metrics_for(&config)).expect("engine starts")
}

fn connect(engine: &Engine) -> TcpStream {
    let s = TcpStream::connect(engine.local_addr()).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

#[test]
fn a_body_spanning_many_receive_buffers_is_reassembled() {
    let engine = start(config());
    let mut s = connect(&engine);
    let body = vec![b'b'; 200 * 1024];
    let raw = post("/bid/big", &body);
    let writer = {
        let mut w = s.try_clone().unwrap();
        thread::spawn(move || w.write_all(&raw).unwrap())
    };
    let r = read_response(&mut s);
    writer.join().unwrap();
    assert_eq!((r.status, r.body), (200, b"{\"len\":204800}".to_vec()));
}

#[test]
fn few_output_buffers_are_shared_by_waiting_connections() {
    let engine = start(RingConfig {
        output_buffers: 1,
        ..config()
    });
    let addr = engine.local_addr();
    let clients: Vec<_> = (0..4)
        .map(|c| {
            thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                let mut batch = Vec::new();
                for i in 0..20 {
                    batch.extend(post("/bid/w", &vec![b'w'; c * 20 + i]));
                }
                s.write_all(&batch).unwrap();
                for i in 0..20 {
                    assert_eq!(
                        read_response(&mut s).body,
                        format!("{{\"len\":{}}}", c * 20 + i).as_bytes()
                    );
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client thread");
    }
}

#[test]
fn pipelined_answers_share_writes_and_one_that_does_not_fit_is_written_next() {
    let mut config = config();
    // Each output buffer holds one worst-case answer of 4 KiB (plus head room): small
    // answers fit many to a buffer, a 3,000-byte one fits behind small ones but not
    // behind another. The whole batch arrives in one 16 KiB receive.
    config.serve.http.max_response_body_bytes = 4096;
    config.recv_buffer_bytes = 16 * 1024;
    let engine = Engine::start(config.clone(), Arc::new(Mirror), &metrics_for(&config))
        .expect("engine starts");
    let mut s = connect(&engine);
    let sizes = [
        100, 100, 3000, 100, 3000, 3000, 100, 100, 100, 100, 100, 100, 100, 100,
    ];
    let body = |i: usize| vec![b'a' + i as u8; sizes[i]];
    let batch: Vec<u8> = (0..sizes.len())
        .flat_map(|i| post("/bid/m", &body(i)))
        .collect();
    let writes_before = engine.totals().writes;
    s.write_all(&batch).unwrap();
    for (i, &size) in sizes.iter().enumerate() {
        let r = read_response(&mut s);
        assert_eq!((r.status, r.body.len()), (200, size), "answer {i}");
        assert_eq!(r.body, body(i), "answer {i} in order, whole");
    }
    let writes = engine.totals().writes - writes_before;
    // One write per answer before answers shared buffers. Now four: answers 0–3
    // together, 4 (which did not fit behind them) next, 5–12 together, then 13 (one
    // more if the batch arrives in two receives).
    assert!(
        writes <= 5,
        "{writes} writes for {} pipelined answers",
        sizes.len()
    );
    // The connection serves on, and every buffer came back (checked again at shutdown).
    s.write_all(&post("/bid/m", b"after")).unwrap();
    assert_eq!(read_response(&mut s).body, b"after");
    engine.shutdown().unwrap();
}

#[test]
fn send_mode_serves_pipelined_and_large_answers() {
    let mut config = RingConfig {
        write: RingWrite::Send,
        ..config()
    };
    config.serve.http.max_response_body_bytes = 4096;
    let engine = Engine::start(config.clone(), Arc::new(Mirror), &metrics_for(&config))
        .expect("engine starts");
    assert!(
        engine.features()[0].fixed_buffers,
        "registered all the same"
    );
    let mut s = connect(&engine);
    let sizes = [10, 3000, 3000, 10, 4000];
    let body = |i: usize| vec![b'k' + i as u8; sizes[i]];
    let batch: Vec<u8> = (0..sizes.len())
        .flat_map(|i| post("/bid/s", &body(i)))
        .collect();
    s.write_all(&batch).unwrap();
    for i in 0..sizes.len() {
        assert_eq!(read_response(&mut s).body, body(i), "answer {i}");
    }
    s.shutdown(Shutdown::Both).unwrap();
    engine.shutdown().unwrap();
}

#[test]
fn sqpoll_mode_serves_requests() {
    let engine = start(RingConfig {
        sqpoll: Some(SqPoll {
            idle_ms: 10,
            cpus: vec![1],
        }),
        ..config()
    });
    let features = engine.features();
    eprintln!("features with sqpoll requested: {features:?}");
    let mut s = connect(&engine);
    for i in 0..20 {
        s.write_all(&post("/bid/sq", &vec![b'q'; i])).unwrap();
        assert_eq!(
            read_response(&mut s).body,
            format!("{{\"len\":{i}}}").as_bytes()
        );
    }
    s.shutdown(Shutdown::Both).unwrap();
    engine.shutdown().unwrap();
}

/// `(major, minor)` of the running kernel.
fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[test]
fn the_kernel_features_in_use_are_reported() {
    let engine = start(config());
    let f = engine.features()[0];
    eprintln!("kernel {:?}, features {f:?}", kernel_version());
    assert_eq!(
        f.missing(false).is_empty(),
        f.single_issuer
            && f.defer_taskrun
            && f.multishot_accept
            && f.multishot_recv
            && f.fixed_buffers
    );
    if kernel_version() >= (6, 1) {
        // Everything the engine prefers exists from 6.1 on; running without any of it
        // there would mean the probe is wrong.
        assert!(f.missing(false).is_empty(), "{f:?}");
    }
}

#[test]
fn an_empty_receive_buffer_ring_stalls_receives_without_losing_them() {
    let engine = start(RingConfig {
        recv_buffers: 2,
        output_buffers: 1,
        ..config()
    });
    let addr = engine.local_addr();
    let clients: Vec<_> = (0..12)
        .map(|c| {
            thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                let mut batch = Vec::new();
                for i in 0..30 {
                    batch.extend(post("/bid/e", &vec![b'e'; 100 * c + i]));
                }
                s.write_all(&batch).unwrap();
                for i in 0..30 {
                    let r = read_response(&mut s);
                    assert_eq!(
                        r.body,
                        format!("{{\"len\":{}}}", 100 * c + i).as_bytes(),
                        "client {c} request {i}: {}",
                        r.head
                    );
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client thread");
    }
    let totals = engine.totals();
    assert_eq!(totals.responses_with(Status::Ok), 360);
    assert!(totals.recv_buffer_exhaustions > 0, "{totals:?}");
}

#[test]
fn an_unusable_config_is_refused_before_anything_starts() {
    let bad = [
        RingConfig {
            cores: vec![],
            ..config()
        },
        RingConfig {
            recv_buffers: 3,
            ..config()
        },
        RingConfig {
            serve: ServeConfig {
                max_connections: 0,
                ..config().serve
            },
            ..config()
        },
    ];
    for config in bad {
        let err = Engine::start(config.clone(), Arc::new(Echo), &metrics_for(&config))
            .err()
            .expect("refused");
        assert!(matches!(err, EngineError::Config(_)), "{err}");
    }
}

/// One metrics sink per worker, as the daemon's registry would hand out.
fn metrics_for(config: &RingConfig) -> Vec<Arc<bidder::metrics::WorkerMetrics>> {
    bidder::control::Registry::new().add_workers(config.cores.len())
}
