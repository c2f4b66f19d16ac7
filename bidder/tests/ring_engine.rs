//! The io_uring engine over real loopback sockets. Every test bounds its waits with
//! socket timeouts and shuts its engine down (joining the workers) even on failure,
//! through `Engine`'s `Drop`.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bidder::http::{BidCall, HttpConfig, HttpLimits, Outcome, ResponseBuf, Service, Status};
use bidder::ring::{Engine, RingConfig, SqPoll};

/// Longest any single socket read or write may block in these tests.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Echoes the decoded body length; partner `slow` first sleeps 300 ms (a stand-in for a
/// slow decision, blocking its worker), `nobid` answers 204.
struct Echo;

impl Service for Echo {
    fn handle(&self, call: &BidCall<'_>, out: &mut ResponseBuf) -> Outcome {
        match call.partner {
            Some("nobid") => return Outcome::NoBid,
            Some("slow") => thread::sleep(Duration::from_millis(300)),
            _ => {}
        }
        let _ = write!(out, "{{\"len\":{}}}", call.body.len());
        Outcome::Bid
    }
}

fn config() -> RingConfig {
    RingConfig {
        listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        cores: vec![0],
        ring_entries: 256,
        listen_backlog: 512,
        max_connections: 256,
        recv_buffers: 64,
        recv_buffer_bytes: 4096,
        input_buffers: 16,
        output_buffers: 16,
        idle_timeout_ms: 5_000,
        request_timeout_ms: 1_000,
        close_linger_ms: 200,
        timer_tick_ms: 5,
        shutdown_grace_ms: 1_000,
        sqpoll: None,
        http: HttpConfig {
            limits: HttpLimits {
                max_header_bytes: 2048,
                max_headers: 32,
                max_body_bytes: 256 * 1024,
                max_decompressed_body_bytes: 1024 * 1024,
            },
            ..HttpConfig::default()
        },
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

#[derive(Debug)]
struct Response {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// Reads one response (head, then `content-length` body bytes).
fn read_response(s: &mut TcpStream) -> Response {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).expect("response head");
        assert_eq!(
            n,
            1,
            "connection closed mid-head after {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status = head[9..12].parse().unwrap();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; length];
    s.read_exact(&mut body).expect("response body");
    Response { status, head, body }
}

/// True once the server has closed the connection (EOF, or reset after our unread data).
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(0) | Err(_))
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_keep_alive_connection_serves_many_requests() {
    let engine = start(config());
    let mut s = connect(&engine);
    for i in 0..50 {
        s.write_all(&post("/bid/a", &vec![b'x'; i])).unwrap();
        let r = read_response(&mut s);
        assert_eq!(r.status, 200);
        assert_eq!(r.body, format!("{{\"len\":{i}}}").as_bytes());
    }
    let totals = engine.totals();
    assert_eq!(totals.connections_accepted, 1);
    assert_eq!(totals.responses_with(Status::Ok), 50);
    engine.shutdown().unwrap();
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let engine = start(config());
    let mut s = connect(&engine);
    let mut batch = Vec::new();
    for i in 0..40 {
        let path = if i % 5 == 4 {
            "/bid/nobid"
        } else {
            "/openrtb2/bid"
        };
        batch.extend(post(path, &vec![b'p'; i * 37]));
    }
    s.write_all(&batch).unwrap();
    for i in 0..40 {
        let r = read_response(&mut s);
        if i % 5 == 4 {
            assert_eq!(r.status, 204, "request {i}");
        } else {
            assert_eq!(
                r.body,
                format!("{{\"len\":{}}}", i * 37).as_bytes(),
                "request {i}"
            );
        }
    }
}

#[test]
fn a_request_sent_one_byte_at_a_time_is_answered() {
    let engine = start(config());
    let mut s = connect(&engine);
    for &b in post("/bid/slowclient", b"{\"id\":\"1\"}").iter() {
        s.write_all(&[b]).unwrap();
        thread::sleep(Duration::from_micros(200));
    }
    let r = read_response(&mut s);
    assert_eq!((r.status, r.body), (200, b"{\"len\":10}".to_vec()));
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
    assert_eq!(r.body, b"{\"len\":204800}");
}

#[test]
fn refusals_get_their_status_and_errors_close_the_connection() {
    let engine = start(config());
    let many_headers: String = (0..40).map(|i| format!("X-{i}: v\r\n")).collect();
    let cases: Vec<(&str, Vec<u8>, u16, bool)> = vec![
        (
            "unknown path keeps the connection",
            post("/nope", b"{}"),
            404,
            false,
        ),
        (
            "GET",
            b"GET /openrtb2/bid HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            405,
            true,
        ),
        (
            "malformed",
            b"POST /bid/a HTTP/1.1\r\nno colon\r\n\r\n".to_vec(),
            400,
            true,
        ),
        (
            "body too large",
            b"POST /bid/a HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n".to_vec(),
            413,
            true,
        ),
        (
            "too many headers",
            format!("POST /bid/a HTTP/1.1\r\n{many_headers}\r\n").into_bytes(),
            431,
            true,
        ),
        (
            "head too long",
            format!("POST /bid/a HTTP/1.1\r\nX: {}\r\n\r\n", "h".repeat(3000)).into_bytes(),
            431,
            true,
        ),
    ];
    for (name, raw, status, closes) in cases {
        let mut s = connect(&engine);
        s.write_all(&raw).unwrap();
        let r = read_response(&mut s);
        assert_eq!(r.status, status, "{name}");
        assert_eq!(r.head.contains("connection: close"), closes, "{name}");
        if closes {
            assert!(closed_by_server(&mut s), "{name}: connection left open");
        } else {
            s.write_all(&post("/bid/a", b"")).unwrap();
            assert_eq!(read_response(&mut s).status, 200, "{name}: not reusable");
        }
    }
    let totals = engine.totals();
    assert_eq!(totals.responses_with(Status::PayloadTooLarge), 1);
    assert_eq!(totals.responses_with(Status::HeaderFieldsTooLarge), 2);
}

#[test]
fn an_unfinished_request_gets_408_and_an_idle_connection_is_closed_silently() {
    let engine = start(RingConfig {
        request_timeout_ms: 150,
        idle_timeout_ms: 300,
        ..config()
    });
    let mut partial = connect(&engine);
    let mut idle = connect(&engine);
    partial
        .write_all(b"POST /bid/a HTTP/1.1\r\nContent-Le")
        .unwrap();
    let started = Instant::now();
    let r = read_response(&mut partial);
    assert_eq!(r.status, 408);
    assert!(r.head.contains("connection: close"));
    assert!(started.elapsed() >= Duration::from_millis(140));
    assert!(closed_by_server(&mut partial));
    let mut buf = [0u8; 16];
    assert_eq!(idle.read(&mut buf).unwrap(), 0, "idle close sends nothing");
    let totals = engine.totals();
    assert_eq!(totals.request_timeouts, 1);
    assert_eq!(totals.idle_timeouts, 1);
}

#[test]
fn many_concurrent_connections_are_served() {
    let engine = start(RingConfig {
        cores: vec![0, 1],
        ..config()
    });
    let addr = engine.local_addr();
    let clients: Vec<_> = (0..8)
        .map(|t| {
            thread::spawn(move || {
                let mut conns: Vec<TcpStream> = (0..25)
                    .map(|_| {
                        let s = TcpStream::connect(addr).unwrap();
                        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                        s
                    })
                    .collect();
                for round in 0..4 {
                    for (i, s) in conns.iter_mut().enumerate() {
                        s.write_all(&post("/bid/c", &vec![b'c'; t * 100 + i + round]))
                            .unwrap();
                    }
                    for (i, s) in conns.iter_mut().enumerate() {
                        let r = read_response(s);
                        assert_eq!(
                            r.body,
                            format!("{{\"len\":{}}}", t * 100 + i + round).as_bytes()
                        );
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client thread");
    }
    let per_worker: Vec<u64> = engine
        .stats()
        .iter()
        .map(|s| s.snapshot().connections_accepted)
        .collect();
    assert_eq!(per_worker.iter().sum::<u64>(), 200);
    assert_eq!(engine.totals().responses_with(Status::Ok), 800);
}

#[test]
fn connections_past_the_slab_limit_get_503_and_are_counted() {
    let engine = start(RingConfig {
        max_connections: 4,
        ..config()
    });
    let mut held: Vec<TcpStream> = (0..4).map(|_| connect(&engine)).collect();
    for s in &mut held {
        s.write_all(&post("/bid/a", b"")).unwrap();
        assert_eq!(read_response(s).status, 200);
    }
    let mut extra = connect(&engine);
    let r = read_response(&mut extra);
    assert_eq!(r.status, 503);
    assert!(closed_by_server(&mut extra));
    assert_eq!(engine.totals().connections_shed, 1);
    drop(held.pop());
    wait_until("a slot to free", IO_TIMEOUT, || {
        engine.totals().connections_open == 3
    });
    let mut again = connect(&engine);
    again.write_all(&post("/bid/a", b"")).unwrap();
    assert_eq!(read_response(&mut again).status, 200);
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
fn gzip_request_bodies_are_inflated() {
    let engine = start(config());
    let mut s = connect(&engine);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&[b'{'; 5000]).unwrap();
    let body = gz.finish().unwrap();
    let mut raw = format!(
        "POST /bid/gz HTTP/1.1\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend(body);
    s.write_all(&raw).unwrap();
    assert_eq!(read_response(&mut s).body, b"{\"len\":5000}");
}

#[test]
fn shutdown_closes_idle_clients_and_finishes_requests_in_progress() {
    let engine = start(config());
    let mut idle: Vec<TcpStream> = (0..5).map(|_| connect(&engine)).collect();
    for s in &mut idle {
        s.write_all(&post("/bid/a", b"")).unwrap();
        read_response(s);
    }
    let mut busy = connect(&engine);
    busy.write_all(&post("/bid/slow", b"1234")).unwrap();
    thread::sleep(Duration::from_millis(50));
    let addr = engine.local_addr();
    let started = Instant::now();
    engine.shutdown().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        started.elapsed()
    );
    let r = read_response(&mut busy);
    assert_eq!(r.body, b"{\"len\":4}");
    for s in &mut idle {
        assert!(closed_by_server(s));
    }
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() || {
            let mut late = TcpStream::connect(addr).unwrap();
            late.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            closed_by_server(&mut late)
        }
    );
}

#[test]
fn shutdown_with_a_half_sent_request_is_bounded_by_the_grace_period() {
    let engine = start(RingConfig {
        shutdown_grace_ms: 200,
        request_timeout_ms: 10_000,
        ..config()
    });
    let mut s = connect(&engine);
    s.write_all(b"POST /bid/a HTTP/1.1\r\nContent-Length: 10\r\n\r\n12")
        .unwrap();
    thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    engine.shutdown().unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(190) && took < Duration::from_secs(2),
        "took {took:?}"
    );
    assert!(closed_by_server(&mut s));
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
            max_connections: 0,
            ..config()
        },
    ];
    for config in bad {
        let err = Engine::start(config.clone(), Arc::new(Echo), &metrics_for(&config))
            .err()
            .expect("refused");
        assert!(matches!(err, bidder::ring::EngineError::Config(_)), "{err}");
    }
}

/// One metrics sink per worker, as the daemon's registry would hand out.
fn metrics_for(config: &RingConfig) -> Vec<Arc<bidder::metrics::WorkerMetrics>> {
    bidder::metrics::Registry::new().add_workers(config.cores.len())
}
