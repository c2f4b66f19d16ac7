//! The engine-neutral HTTP layer driven the way an engine drives it: bytes in, one
//! `Server::serve_one` step at a time, responses out.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bidder::http::{
    canned, BidCall, ConnState, ConnectionHeader, HttpConfig, HttpLimits, OutBuf, Outcome,
    ResponseBuf, Server, Service, Status, Step,
};
use flate2::write::GzEncoder;
use flate2::Compression;
use proptest::prelude::*;
use testkit::http::{read_response, Response};

/// Answers by partner name: `nobid` → 204, `bad` → 400, `busy` → 503, `big` → a 4 KiB
/// body, anything else → `{"len":N,"partner":P}` echoing the decoded body length.
struct Echo;

impl Service for Echo {
    fn handle(&self, call: &BidCall<'_>, out: &mut ResponseBuf) -> Outcome {
        match call.partner {
            Some("nobid") => Outcome::NoBid,
            Some("bad") => Outcome::Reject(Status::BadRequest),
            Some("busy") => Outcome::Reject(Status::ServiceUnavailable),
            Some("big") => {
                let _ = out.extend(&[b'x'; 4096]);
                Outcome::Bid
            }
            partner => {
                let _ = write!(
                    out,
                    "{{\"len\":{},\"partner\":\"{}\"}}",
                    call.body.len(),
                    partner.unwrap_or("-")
                );
                Outcome::Bid
            }
        }
    }
}

fn config(limits: HttpLimits) -> HttpConfig {
    HttpConfig {
        limits,
        ..HttpConfig::default()
    }
}

fn server(limits: HttpLimits) -> Server<Echo> {
    Server::new(Arc::new(Echo), &config(limits)).unwrap()
}

/// One answered request as the client would see it.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    status: Status,
    close: bool,
    bytes: Vec<u8>,
}

/// Drives `server` over `input` like an engine that got all bytes at once; also returns
/// the interim bytes (e.g. `100 Continue`) written while incomplete, and the leftover.
fn drive(server: &mut Server<Echo>, input: &[u8]) -> (Vec<Answer>, Vec<u8>, usize) {
    let mut conn = ConnState::default();
    let mut mem = vec![0u8; server.min_out_bytes()];
    let mut answers = Vec::new();
    let mut interim = Vec::new();
    let mut pos = 0;
    loop {
        let mut out = OutBuf::new(&mut mem);
        match server.serve_one(&mut conn, &input[pos..], Instant::now(), &mut out) {
            Step::Incomplete => {
                interim.extend_from_slice(out.as_bytes());
                return (answers, interim, input.len() - pos);
            }
            Step::Answered {
                consumed,
                status,
                close,
            } => {
                assert!(consumed > 0 && consumed <= input.len() - pos);
                answers.push(Answer {
                    status,
                    close,
                    bytes: out.as_bytes().to_vec(),
                });
                pos += consumed;
                if close {
                    return (answers, interim, input.len() - pos);
                }
            }
            Step::OutFull => panic!("a fresh min_out_bytes buffer was full"),
        }
    }
}

/// Same, but the bytes arrive one at a time and the engine keeps unconsumed input.
fn drive_bytewise(server: &mut Server<Echo>, input: &[u8]) -> (Vec<Answer>, Vec<u8>) {
    let mut conn = ConnState::default();
    let mut mem = vec![0u8; server.min_out_bytes()];
    let mut pending: Vec<u8> = Vec::new();
    let mut answers = Vec::new();
    let mut interim = Vec::new();
    'bytes: for &b in input {
        pending.push(b);
        loop {
            let mut out = OutBuf::new(&mut mem);
            match server.serve_one(&mut conn, &pending, Instant::now(), &mut out) {
                Step::Incomplete => {
                    interim.extend_from_slice(out.as_bytes());
                    continue 'bytes;
                }
                Step::Answered {
                    consumed,
                    status,
                    close,
                } => {
                    answers.push(Answer {
                        status,
                        close,
                        bytes: out.as_bytes().to_vec(),
                    });
                    pending.drain(..consumed);
                    if close {
                        break 'bytes;
                    }
                }
                Step::OutFull => panic!("a fresh min_out_bytes buffer was full"),
            }
        }
    }
    (answers, interim)
}

fn post(path: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nHost: bidder\r\nContent-Length: {}\r\n{headers}\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// The answer framed as a client would read it: exactly one response, nothing after.
fn parsed(answer: &Answer) -> Response {
    let mut rest = answer.bytes.as_slice();
    let response = read_response(&mut rest);
    assert!(rest.is_empty(), "bytes after the response: {rest:?}");
    response
}

fn body_of(answer: &Answer) -> Vec<u8> {
    parsed(answer).body
}

fn head_of(answer: &Answer) -> String {
    parsed(answer).head
}

fn status_of(raw: &[u8]) -> (Status, bool) {
    let (answers, _, _) = drive(&mut server(HttpLimits::default()), raw);
    assert_eq!(answers.len(), 1, "{:?}", String::from_utf8_lossy(raw));
    (answers[0].status, answers[0].close)
}

#[test]
fn every_status_the_http_layer_produces_is_mapped_from_its_cause() {
    let many_headers: String = (0..65).map(|i| format!("X-H{i}: v\r\n")).collect();
    let long_header = format!("X-Pad: {}\r\n", "p".repeat(9000));
    let cases: Vec<(&str, Vec<u8>, Status, bool)> = vec![
        ("bid", post("/bid/acme", "", b"{}"), Status::Ok, false),
        (
            "default path",
            post("/openrtb2/bid", "", b"{}"),
            Status::Ok,
            false,
        ),
        (
            "no bid",
            post("/bid/nobid", "", b"{}"),
            Status::NoContent,
            false,
        ),
        (
            "service 400",
            post("/bid/bad", "", b"{}"),
            Status::BadRequest,
            false,
        ),
        (
            "service 503",
            post("/bid/busy", "", b"{}"),
            Status::ServiceUnavailable,
            false,
        ),
        (
            "unknown path",
            post("/nope", "", b"{}"),
            Status::NotFound,
            false,
        ),
        (
            "malformed head",
            b"POST / HTTP/1.1\r\nbad header\r\n\r\n".to_vec(),
            Status::BadRequest,
            true,
        ),
        (
            "not http",
            b"\x16\x03\x01\x02\x00\x01\r\n\r\n".to_vec(),
            Status::BadRequest,
            true,
        ),
        (
            "GET",
            b"GET /openrtb2/bid HTTP/1.1\r\n\r\n".to_vec(),
            Status::MethodNotAllowed,
            true,
        ),
        (
            "body over limit",
            b"POST /bid/a HTTP/1.1\r\nContent-Length: 262145\r\n\r\n".to_vec(),
            Status::PayloadTooLarge,
            true,
        ),
        (
            "unknown content-encoding",
            post("/bid/a", "Content-Encoding: br\r\n", b"{}"),
            Status::UnsupportedMediaType,
            true,
        ),
        (
            "bad gzip",
            post("/bid/a", "Content-Encoding: gzip\r\n", b"{}"),
            Status::BadRequest,
            true,
        ),
        (
            "too many headers",
            post("/bid/a", &many_headers, b""),
            Status::HeaderFieldsTooLarge,
            true,
        ),
        (
            "header section too long",
            post("/bid/a", &long_header, b""),
            Status::HeaderFieldsTooLarge,
            true,
        ),
        (
            "transfer-encoding gzip",
            b"POST /bid/a HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".to_vec(),
            Status::NotImplemented,
            true,
        ),
        (
            "content-length and chunked",
            b"POST /bid/a HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec(),
            Status::BadRequest,
            true,
        ),
        (
            "chunked in HTTP/1.0",
            b"POST /bid/a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            Status::BadRequest,
            true,
        ),
    ];
    for (name, raw, status, close) in cases {
        assert_eq!(status_of(&raw), (status, close), "{name}");
    }
}

#[test]
fn error_responses_are_the_canned_bytes_and_close() {
    let (answers, _, _) = drive(
        &mut server(HttpLimits::default()),
        b"GET / HTTP/1.1\r\n\r\nPOST /bid/a HTTP/1.1\r\n\r\n",
    );
    assert_eq!(answers.len(), 1, "nothing is read after a refusal");
    assert_eq!(
        answers[0].bytes,
        canned(Status::MethodNotAllowed, ConnectionHeader::Close)
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let mut raw = Vec::new();
    for partner in ["a", "nobid", "b", "missing/x", "c"] {
        raw.extend(post(&format!("/bid/{partner}"), "", partner.as_bytes()));
    }
    let (answers, _, left) = drive(&mut server(HttpLimits::default()), &raw);
    assert_eq!(left, 0);
    let statuses: Vec<Status> = answers.iter().map(|a| a.status).collect();
    use Status::{NoContent, NotFound, Ok};
    assert_eq!(statuses, [Ok, NoContent, Ok, NotFound, Ok]);
    assert_eq!(body_of(&answers[0]), br#"{"len":1,"partner":"a"}"#);
    assert_eq!(body_of(&answers[2]), br#"{"len":1,"partner":"b"}"#);
    assert_eq!(body_of(&answers[4]), br#"{"len":1,"partner":"c"}"#);
    assert!(answers.iter().all(|a| !a.close));
}

#[test]
fn bid_responses_carry_length_type_and_version() {
    let (answers, _, _) = drive(
        &mut server(HttpLimits::default()),
        &post("/bid/a", "", b"12345"),
    );
    let head = head_of(&answers[0]);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("content-type: application/json\r\n"));
    assert!(head.contains("content-length: 23\r\n"), "{head}");
    assert!(head.contains("x-openrtb-version: 2.6\r\n"));
    assert!(!head.contains("connection:"));
    assert_eq!(body_of(&answers[0]), br#"{"len":5,"partner":"a"}"#);
}

#[test]
fn every_byte_boundary_gives_the_same_answers_as_one_read() {
    let mut raw = post("/bid/a", "", b"{\"id\":\"1\"}");
    raw.extend(b"POST /bid/b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\nT: x\r\n\r\n");
    raw.extend(post(
        "/bid/gz",
        "Content-Encoding: gzip\r\n",
        &gzip(b"hello gzip"),
    ));
    raw.extend(post("/bid/nobid", "Connection: close\r\n", b""));
    let (whole, _, _) = drive(&mut server(HttpLimits::default()), &raw);
    let (bytewise, _) = drive_bytewise(&mut server(HttpLimits::default()), &raw);
    assert_eq!(whole.len(), 4);
    assert_eq!(whole, bytewise);
    assert_eq!(body_of(&whole[1]), br#"{"len":3,"partner":"b"}"#);
    assert_eq!(body_of(&whole[2]), br#"{"len":10,"partner":"gz"}"#);
    assert_eq!((whole[3].status, whole[3].close), (Status::NoContent, true));
}

#[test]
fn chunked_bodies_with_extensions_are_decoded() {
    let raw = b"POST /bid/a HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n\
                5;a=b;c\r\nhello\r\n1 ; q=\"x\"\r\n!\r\n0;last\r\n\r\n";
    let (answers, _, left) = drive(&mut server(HttpLimits::default()), raw);
    assert_eq!(left, 0);
    assert_eq!(body_of(&answers[0]), br#"{"len":6,"partner":"a"}"#);
}

#[test]
fn expect_continue_is_answered_once_before_the_body() {
    let head = b"POST /bid/a HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n";
    let mut srv = server(HttpLimits::default());
    let (answers, interim, left) = drive(&mut srv, head);
    assert!(answers.is_empty());
    assert_eq!(interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    assert_eq!(left, head.len());
    let mut whole = head.to_vec();
    whole.extend(b"abcd");
    let (answers, interim) = drive_bytewise(&mut srv, &whole);
    assert_eq!(interim, b"HTTP/1.1 100 Continue\r\n\r\n", "sent once");
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].status, Status::Ok);
}

#[test]
fn http_1_0_closes_unless_asked_to_keep_alive() {
    let close = b"POST /bid/a HTTP/1.0\r\nContent-Length: 0\r\n\r\n";
    let (answers, _, _) = drive(&mut server(HttpLimits::default()), close);
    assert!(answers[0].close);
    assert!(head_of(&answers[0]).contains("connection: close\r\n"));
    let keep = b"POST /bid/nobid HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    let (answers, _, _) = drive(&mut server(HttpLimits::default()), keep);
    assert!(!answers[0].close);
    assert_eq!(
        answers[0].bytes,
        canned(Status::NoContent, ConnectionHeader::KeepAlive)
    );
}

#[test]
fn a_draining_connection_closes_after_its_response() {
    let mut srv = server(HttpLimits::default());
    let mut conn = ConnState::default();
    conn.close_after_response = true;
    let mut mem = vec![0u8; srv.min_out_bytes()];
    let mut out = OutBuf::new(&mut mem);
    let raw = post("/bid/a", "", b"");
    let step = srv.serve_one(&mut conn, &raw, Instant::now(), &mut out);
    assert_eq!(
        step,
        Step::Answered {
            consumed: raw.len(),
            status: Status::Ok,
            close: true
        }
    );
    assert!(String::from_utf8_lossy(out.as_bytes()).contains("connection: close\r\n"));
}

#[test]
fn a_full_output_buffer_defers_without_consuming() {
    let mut srv = server(HttpLimits::default());
    let mut mem = vec![0u8; srv.min_out_bytes() - 1];
    let mut out = OutBuf::new(&mut mem);
    let step = srv.serve_one(
        &mut ConnState::default(),
        &post("/bid/a", "", b""),
        Instant::now(),
        &mut out,
    );
    assert_eq!(step, Step::OutFull);
    assert!(out.is_empty());
}

#[test]
fn large_bodies_are_gzipped_for_clients_that_accept_it() {
    let mut srv = server(HttpLimits::default());
    let (answers, _, _) = drive(
        &mut srv,
        &post("/bid/big", "Accept-Encoding: gzip\r\n", b""),
    );
    let head = head_of(&answers[0]);
    assert!(head.contains("content-encoding: gzip\r\n"), "{head}");
    let mut plain = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&body_of(&answers[0])[..]),
        &mut plain,
    )
    .unwrap();
    assert_eq!(plain, vec![b'x'; 4096]);
    let (answers, _, _) = drive(&mut srv, &post("/bid/big", "", b""));
    assert!(!head_of(&answers[0]).contains("content-encoding"));
    assert_eq!(body_of(&answers[0]).len(), 4096);
}

#[test]
fn limits_pass_exactly_at_and_fail_one_over() {
    let limits = HttpLimits {
        max_header_bytes: 200,
        max_headers: 4,
        max_body_bytes: 100,
        max_decompressed_body_bytes: 1000,
    };
    let base = "POST /bid/a HTTP/1.1\r\nX-Pad: \r\n\r\n".len();
    let head_of_len = |n: usize| {
        format!(
            "POST /bid/a HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
            "p".repeat(n - base)
        )
    };
    let headers = |n: usize| {
        let fields: String = (0..n).map(|i| format!("X-{i}: v\r\n")).collect();
        format!("POST /bid/a HTTP/1.1\r\n{fields}\r\n")
    };
    let chunked = |n: usize| {
        format!(
            "POST /bid/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{n:x}\r\n{}\r\n0\r\n\r\n",
            "b".repeat(n)
        )
    };
    let gz = |n: usize| {
        post(
            "/bid/a",
            "Content-Encoding: gzip\r\n",
            &gzip(&vec![b'z'; n]),
        )
    };
    let cases: Vec<(&str, Vec<u8>, Vec<u8>, Status)> = vec![
        (
            "header bytes",
            head_of_len(200).into(),
            head_of_len(201).into(),
            Status::HeaderFieldsTooLarge,
        ),
        (
            "headers",
            headers(4).into(),
            headers(5).into(),
            Status::HeaderFieldsTooLarge,
        ),
        (
            "content-length body",
            post("/bid/a", "", &[b'b'; 100]),
            post("/bid/a", "", &[b'b'; 101]),
            Status::PayloadTooLarge,
        ),
        (
            "chunked body",
            chunked(100).into(),
            chunked(101).into(),
            Status::PayloadTooLarge,
        ),
        (
            "decompressed body",
            gz(1000),
            gz(1001),
            Status::PayloadTooLarge,
        ),
    ];
    for (name, at, over, status) in cases {
        let (answers, _, _) = drive(&mut server(limits.clone()), &at);
        assert_eq!(answers[0].status, Status::Ok, "{name} at the limit");
        let (answers, _, _) = drive(&mut server(limits.clone()), &over);
        assert_eq!(
            (answers[0].status, answers[0].close),
            (status, true),
            "{name} one over"
        );
    }
}

#[test]
fn oversized_heads_are_refused_before_they_end() {
    let limits = HttpLimits {
        max_header_bytes: 100,
        ..HttpLimits::default()
    };
    let endless = format!("POST /bid/a HTTP/1.1\r\nX-Pad: {}", "p".repeat(200));
    let (answers, _) = drive_bytewise(&mut server(limits), endless.as_bytes());
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].status, Status::HeaderFieldsTooLarge);
}

#[test]
fn a_gzip_bomb_is_refused_quickly_with_bounded_work() {
    // 64 MiB of zeros is ~64 KiB of gzip: within max_body_bytes, 64x over the
    // decompressed limit.
    let mut e = GzEncoder::new(Vec::new(), Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        e.write_all(&zeros).unwrap();
    }
    let bomb = e.finish().unwrap();
    assert!(bomb.len() < HttpLimits::default().max_body_bytes);
    let raw = post("/bid/a", "Content-Encoding: gzip\r\n", &bomb);
    let mut srv = server(HttpLimits::default());
    // CPU time of this thread, not wall time: a stalled host must not read as work.
    let started = thread_cpu_time();
    let (answers, _, _) = drive(&mut srv, &raw);
    let took = thread_cpu_time() - started;
    assert_eq!(answers[0].status, Status::PayloadTooLarge);
    assert!(took < Duration::from_millis(500), "took {took:?} of CPU");
}

/// CPU time the calling thread has used.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut srv = server(HttpLimits { max_header_bytes: 256, max_headers: 8, max_body_bytes: 128, max_decompressed_body_bytes: 256 });
        let _ = drive(&mut srv, &input);
    }

    #[test]
    fn http_shaped_bytes_never_panic(
        head in "(POST|GET|post) /(bid/[a-z]{1,3}|openrtb2/bid|x) HTTP/1\\.[01]\r\n",
        fields in proptest::collection::vec(
            "(Content-Length: [0-9]{1,3}|Transfer-Encoding: (chunked|gzip)|Content-Encoding: (gzip|br)|Connection: (close|keep-alive)|Expect: 100-continue|X: [ -~]{0,8})\r\n", 0..6),
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut raw = head.into_bytes();
        for f in fields { raw.extend(f.into_bytes()); }
        raw.extend(b"\r\n");
        raw.extend(body);
        let mut srv = server(HttpLimits::default());
        let (whole, _, _) = drive(&mut srv, &raw);
        let (bytewise, _) = drive_bytewise(&mut srv, &raw);
        prop_assert_eq!(whole, bytewise);
    }

    #[test]
    fn requests_split_anywhere_are_answered_alike(split in 0usize..400) {
        let mut raw = post("/bid/a", "", b"{\"id\":\"x\"}");
        raw.extend(b"POST /bid/b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n");
        raw.extend(post("/bid/c", "", b"{}"));
        let split = split.min(raw.len());
        let mut srv = server(HttpLimits::default());
        let (whole, _, _) = drive(&mut srv, &raw);
        let (first, _, left) = drive(&mut srv, &raw[..split]);
        let (second, _, _) = drive(&mut srv, &raw[split - left..]);
        prop_assert_eq!(whole, [first, second].concat());
    }
}
