//! What only the tokio engine has, over real loopback sockets: its write timeout on a
//! client that stops reading, and the checks of its own config. Everything both
//! engines share (statuses, limits, keep-alive, pipelining, gzip, deadline, reload,
//! shutdown) is in `tests/engines.rs`, run against both.
//!
//! Every client socket has read and write timeouts, and every engine is shut down (and
//! its threads joined) by the test that started it, or by its `Drop` on failure.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use bidder::control::Registry;
use bidder::engine::tokio::{TokioEngine, TokioEngineConfig};
use bidder::engine::{EngineError, ServeConfig};
use bidder::http::{BidCall, Outcome, ResponseBuf, Service};

/// Longest any client waits for one read or write before the test fails.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Body size of the `big` partner's bids.
const BIG_BODY_BYTES: usize = 60_000;

/// `big` → a body of [`BIG_BODY_BYTES`]; anything else → `{"len":N}`.
struct Echo;

impl Service for Echo {
    fn handle(&self, call: &BidCall<'_>, out: &mut ResponseBuf) -> Outcome {
        if call.partner == Some("big") {
            let _ = out.extend(&[b'x'; BIG_BODY_BYTES]);
        } else {
            let _ = write!(out, "{{\"len\":{}}}", call.body.len());
        }
        Outcome::Bid
    }
}

fn start(config: TokioEngineConfig) -> Result<TokioEngine, EngineError> {
    let metrics = Registry::new().add_workers(config.workers);
    TokioEngine::start(config, Arc::new(Echo), &metrics)
}

fn config() -> TokioEngineConfig {
    TokioEngineConfig {
        serve: ServeConfig {
            listen_addr: "127.0.0.1:0".parse().unwrap(),
            ..ServeConfig::default()
        },
        workers: 1,
        cores: Vec::new(),
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    stream
}

fn post(path: &str) -> Vec<u8> {
    format!("POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n").into_bytes()
}

/// Sends one bodiless POST on a fresh connection; the status code.
fn status_of(addr: SocketAddr, path: &str) -> u16 {
    let mut s = connect(addr);
    s.write_all(&post(path)).expect("send");
    testkit::http::read_response(&mut s).status
}

#[test]
fn a_client_that_stops_reading_is_closed_after_the_idle_timeout() {
    let engine = start(TokioEngineConfig {
        serve: ServeConfig {
            idle_timeout_ms: 300,
            ..config().serve
        },
        ..config()
    })
    .expect("engine starts");
    let mut stuck = connect(engine.local_addr());
    // ~24 MB of answers: more than loopback socket buffers hold, so writes block.
    let requests: Vec<u8> = (0..400).flat_map(|_| post("/bid/big")).collect();
    stuck.write_all(&requests).expect("send");
    let stats = &engine.stats()[0];
    testkit::eventually(CLIENT_TIMEOUT, "the stuck write to time out", || {
        stats.write_timeouts.get() == 1
    });
    testkit::eventually(CLIENT_TIMEOUT, "the connection to close", || {
        stats.connections_open() == 0
    });
    let mut unread = Vec::new();
    let _ = stuck.read_to_end(&mut unread);
    assert_eq!(
        status_of(engine.local_addr(), "/bid/a"),
        200,
        "the worker is not stuck"
    );
    engine.shutdown().unwrap();
}

#[test]
fn an_unusable_config_is_refused_before_anything_starts() {
    let bad = [
        TokioEngineConfig {
            workers: 0,
            ..config()
        },
        TokioEngineConfig {
            workers: 2,
            cores: vec![0],
            ..config()
        },
        TokioEngineConfig {
            serve: ServeConfig {
                max_connections: 0,
                ..config().serve
            },
            ..config()
        },
    ];
    for config in bad {
        let err = start(config.clone()).err().expect("refused");
        assert!(matches!(err, EngineError::Config(_)), "{config:?}: {err}");
    }
    // Worker metrics that do not match the workers are refused too.
    let two = Registry::new().add_workers(2);
    let err = TokioEngine::start(config(), Arc::new(Echo), &two)
        .err()
        .expect("refused");
    assert!(matches!(err, EngineError::Config(_)), "{err}");
}
