//! The generator speaks HTTP/1.1 the way a bidder's clients do, and counts what it gets.

mod common;

use std::collections::HashSet;
use std::io::Read as _;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{count, loadgen, LoadgenOutput, Miss, Reply, StallProbe, TestServer};

/// Every 50th response says `Connection: close` and the server closes.
const CLOSE_EVERY: u64 = 50;

/// Answers in rotation with a chunked 200, a 204, a Content-Length 200 and a 503;
/// a body that is not valid (gzip-wrapped) JSON, or a repeated request id, gets a 400.
fn rotating_server(ids: Arc<Mutex<HashSet<String>>>) -> TestServer {
    TestServer::start(move |request| {
        let body = if request.header("content-encoding") == Some("gzip") {
            let mut plain = Vec::new();
            let decoded = flate2::read::GzDecoder::new(&request.body[..]).read_to_end(&mut plain);
            decoded.map(|_| plain).unwrap_or_default()
        } else {
            request.body.clone()
        };
        let parsed: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
        let id = parsed
            .as_ref()
            .and_then(|v| v["id"].as_str())
            .map(str::to_owned);
        let fresh = id.is_some_and(|id| ids.lock().unwrap().insert(id));
        let close = (request.seq + 1).is_multiple_of(CLOSE_EVERY);
        let connection = if close { "Connection: close\r\n" } else { "" };
        let bytes = match (fresh, request.seq % 4) {
            (false, _) => format!("HTTP/1.1 400 Bad Request\r\n{connection}Content-Length: 0\r\n\r\n"),
            (true, 0) => format!(
                "HTTP/1.1 200 OK\r\n{connection}Transfer-Encoding: chunked\r\n\r\n7\r\n{{\"id\":1\r\n1\r\n}}\r\n0\r\n\r\n"
            ),
            (true, 1) => format!("HTTP/1.1 204 No Content\r\n{connection}\r\n"),
            (true, 2) => format!("HTTP/1.1 200 OK\r\n{connection}Content-Length: 2\r\n\r\n{{}}"),
            (true, _) => format!("HTTP/1.1 503 Busy\r\n{connection}Content-Length: 4\r\n\r\nbusy"),
        };
        Reply {
            close,
            bytes: bytes.into_bytes(),
            ..Reply::no_content_after(Duration::ZERO)
        }
    })
}

#[test]
fn pipelined_gzip_requests_are_valid_unique_and_every_answer_is_counted() {
    let ids = Arc::new(Mutex::new(HashSet::new()));
    let server = rotating_server(ids.clone());
    let out = loadgen(&[
        "run",
        "--url",
        &server.url("/bid/test"),
        "--rate",
        "2000",
        "--duration-s",
        "1.5",
        "--warmup-s",
        "0",
        "--connections",
        "4",
        "--pipeline",
        "4",
        "--gzip",
        "--seed",
        "4",
    ]);
    // 25% 503s miss the 1% error budget: the run completes and says so.
    assert_eq!(out.code, 3, "{}", out.stderr);
    let r = &out.json;
    assert_eq!(
        count(r, "/requests/status_4xx"),
        0,
        "every body valid JSON with a fresh id\n{r:#}"
    );
    assert_eq!(count(r, "/requests/timeouts"), 0);
    assert_eq!(count(r, "/requests/protocol_errors"), 0);
    let answered = ["status_200", "status_204", "status_5xx", "status_other"]
        .iter()
        .map(|f| count(r, &format!("/requests/{f}")))
        .sum::<u64>();
    assert_eq!(answered, count(r, "/requests/completed"));
    // Requests pipelined behind a `Connection: close` answer are lost with the socket.
    let lost = count(r, "/requests/connection_errors");
    assert_eq!(answered + lost, count(r, "/requests/sent"), "{r:#}");
    assert!(
        lost <= count(r, "/requests/sent") / CLOSE_EVERY * 3,
        "{r:#}"
    );
    assert!(count(r, "/generator/reconnects") >= count(r, "/requests/sent") / CLOSE_EVERY / 2);
    let (ok, no_bid) = (
        count(r, "/requests/status_200"),
        count(r, "/requests/status_204"),
    );
    assert!(
        ok > no_bid,
        "two of four answers are 200s: {ok} vs {no_bid}"
    );
    let bid_rate = r["bid_rate"].as_f64().unwrap();
    assert!((0.45..=0.55).contains(&bid_rate), "bid rate {bid_rate}");
    assert_eq!(r["sla"]["pass"], false);
    assert!(ids.lock().unwrap().len() as u64 >= answered);
}

#[test]
fn an_unreachable_target_is_a_clear_error_not_a_report() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/bid/test");
    let out = loadgen(&["run", "--url", &url, "--rate", "100", "--duration-s", "1"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("cannot connect"), "{}", out.stderr);
    assert!(out.json.is_null());
}

#[test]
fn a_request_never_answered_times_out_and_is_charged_from_its_intended_time() {
    common::within_attempts(
        "a_request_never_answered_times_out_and_is_charged_from_its_intended_time",
        4,
        never_answered_attempt,
    );
}

/// The generator's timeout in [`never_answered_attempt`], ms.
const TIMEOUT_MS: f64 = 150.0;

/// One run where every 10th request is never answered (the connection stays open);
/// `Err` when the timeouts counted are not about that share.
fn never_answered_attempt() -> Result<(), Miss> {
    let server = TestServer::start(|request| {
        if request.seq % 10 == 9 {
            Reply::no_content_after(Duration::from_secs(30))
        } else {
            Reply::no_content_after(Duration::ZERO)
        }
    });
    let probe = StallProbe::start();
    let out = one_second_at_200_per_s(&server, 16, TIMEOUT_MS, 5);
    let stalls = probe.finish();
    assert_eq!(out.code, 3, "{}", out.stderr);
    let r = &out.json;
    let timeouts = count(r, "/requests/timeouts");
    let sent = count(r, "/requests/sent");
    // 10% are never answered; a host stall past the timeout adds more, so only a
    // stall-free run bounds them from above.
    let why = format!(
        "{timeouts} timeouts of {sent} ({})\n{r:#}",
        stalls.summary(TIMEOUT_MS)
    );
    if timeouts < sent / 20 {
        return Err(Miss::Wrong(why));
    }
    if timeouts > sent / 4 {
        return Err(Miss::judged(stalls.max_ms() >= TIMEOUT_MS, why));
    }
    assert!(
        common::ms(r, "/latency_us/max") >= TIMEOUT_MS,
        "timeouts are recorded at their wait"
    );
    // Requests given up before a connection had room are timeouts but were never sent.
    assert_eq!(
        count(r, "/requests/completed") + timeouts,
        sent + count(r, "/requests/timeouts_unsent"),
        "{r:#}"
    );
    Ok(())
}

/// Against a server that never answers, one connection holds one request at a time:
/// the requests scheduled meanwhile wait for room past the timeout and are given up
/// unsent. They count as timeouts and as `timeouts_unsent`, so the counts still balance.
#[test]
fn requests_given_up_before_sending_are_timeouts_counted_as_unsent() {
    let server = TestServer::start(|_| Reply::no_content_after(Duration::from_secs(30)));
    let out = one_second_at_200_per_s(&server, 1, 100.0, 6);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let r = &out.json;
    let (sent, unsent, timeouts) = (
        count(r, "/requests/sent"),
        count(r, "/requests/timeouts_unsent"),
        count(r, "/requests/timeouts"),
    );
    assert_eq!(count(r, "/requests/completed"), 0, "{r:#}");
    assert!(
        unsent > sent,
        "most of 200 scheduled never found room\n{r:#}"
    );
    assert_eq!(timeouts, sent + unsent, "{r:#}");
    assert_eq!(
        sent + unsent,
        200,
        "every scheduled request is accounted for\n{r:#}"
    );
}

/// One second of open-loop load at 200 req/s against `server`, without warm-up: the
/// shape of both timeout tests.
fn one_second_at_200_per_s(
    server: &TestServer,
    connections: u32,
    timeout_ms: f64,
    seed: u64,
) -> LoadgenOutput {
    let (url, connections, timeout_ms, seed) = (
        server.url("/bid/test"),
        connections.to_string(),
        timeout_ms.to_string(),
        seed.to_string(),
    );
    loadgen(&[
        "run",
        "--url",
        &url,
        "--rate",
        "200",
        "--duration-s",
        "1",
        "--warmup-s",
        "0",
        "--connections",
        &connections,
        "--timeout-ms",
        &timeout_ms,
        "--seed",
        &seed,
    ])
}
