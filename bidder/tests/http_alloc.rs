//! Steady-state parsing, decoding and response writing allocate nothing.
//!
//! `testkit`'s counting allocator counts only this test thread's heap calls inside a
//! counted window, so the harness's own threads cannot disturb the count.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

#[global_allocator]
static ALLOCATOR: testkit::CountingAllocator = testkit::CountingAllocator;

use bidder::http::{
    BidCall, ConnState, HttpConfig, OutBuf, Outcome, ResponseBuf, Server, Service, Step,
};

/// Writes a bid-sized JSON body, as the real encoder would.
struct Bids;

impl Service for Bids {
    fn handle(&self, call: &BidCall<'_>, out: &mut ResponseBuf) -> Outcome {
        let _ = write!(
            out,
            r#"{{"id":"{}","seatbid":[{{"bid":[{{"id":"1","impid":"1","price":1.25}}]}}]}}"#,
            call.body.len()
        );
        let _ = out.extend(&[b' '; 1500]);
        Outcome::Bid
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn serving_typical_requests_allocates_nothing_in_steady_state() {
    let body = br#"{"id":"abc","imp":[{"id":"1","banner":{"w":300,"h":250}}],"tmax":100}"#;
    let mut input = format!(
        "POST /bid/acme HTTP/1.1\r\nHost: b\r\nContent-Length: {}\r\nx-openrtb-version: 2.6\r\n\r\n",
        body.len()
    )
    .into_bytes();
    input.extend_from_slice(body);
    input.extend_from_slice(
        b"POST /openrtb2/bid HTTP/1.1\r\nTransfer-Encoding: chunked\r\nAccept-Encoding: gzip\r\n\r\n\
          4;x=y\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n",
    );
    let zipped = gzip(body);
    input.extend_from_slice(
        format!(
            "POST /bid/x HTTP/1.1\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            zipped.len()
        )
        .as_bytes(),
    );
    input.extend_from_slice(&zipped);

    let mut server = Server::new(Arc::new(Bids), &HttpConfig::default()).unwrap();
    let mut out_mem = vec![0u8; server.min_out_bytes() * 4];
    let mut conn = ConnState::default();
    let mut serve_all = || -> usize {
        let mut pos = 0;
        let mut answered = 0;
        while pos < input.len() {
            let mut out = OutBuf::new(&mut out_mem);
            match server.serve_one(&mut conn, &input[pos..], Instant::now(), &mut out) {
                Step::Answered { consumed, .. } => {
                    pos += consumed;
                    answered += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        answered
    };
    assert_eq!(serve_all(), 3, "warm-up");
    let ((), allocated) = testkit::heap_calls(|| {
        for _ in 0..100 {
            assert_eq!(serve_all(), 3);
        }
    });
    assert_eq!(allocated, 0, "allocations while serving");
    assert!(
        testkit::counting_allocator_is_installed(),
        "the count is not blind"
    );
}
