//! Fuzzes the request parser and the whole serving step behind it: any bytes must give
//! a response or "need more", never a panic, and never consume more than was given.

#![no_main]

use std::sync::Arc;
use std::time::Instant;

use bidder::http::{
    parse_request, BidCall, ConnState, HttpConfig, HttpLimits, OutBuf, Outcome, Parsed,
    ResponseBuf, Server, Service, Step,
};
use libfuzzer_sys::fuzz_target;

struct Echo;

impl Service for Echo {
    fn handle(&self, call: &BidCall<'_>, out: &mut ResponseBuf) -> Outcome {
        let _ = out.extend(call.body);
        Outcome::Bid
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = HttpLimits {
        max_header_bytes: 1024,
        max_headers: 16,
        max_body_bytes: 4096,
        max_decompressed_body_bytes: 16 * 1024,
    };
    if let Ok(Parsed::Complete(req)) = parse_request(data, &limits) {
        assert!(req.consumed <= data.len());
    }
    let config = HttpConfig {
        limits,
        ..HttpConfig::default()
    };
    let mut server = Server::new(Arc::new(Echo), &config).expect("valid config");
    let mut mem = vec![0u8; server.min_out_bytes()];
    let mut conn = ConnState::default();
    let mut pos = 0;
    while pos < data.len() {
        let mut out = OutBuf::new(&mut mem);
        match server.serve_one(&mut conn, &data[pos..], Instant::now(), &mut out) {
            Step::Answered {
                consumed, close, ..
            } => {
                assert!(consumed > 0 && consumed <= data.len() - pos);
                pos += consumed;
                if close {
                    break;
                }
            }
            Step::Incomplete => break,
            Step::OutFull => unreachable!("a fresh buffer of min_out_bytes"),
        }
    }
});
