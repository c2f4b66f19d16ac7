//! Fuzzes the OpenRTB reader: any body must parse into a request or fail with a
//! `ParseError`, never panic, and never hold more imps than the limit.

#![no_main]

use bidder::openrtb::{Parser, MAX_IMPS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // simd-json parses in place, as the bid path does with its own copy.
    let mut body = data.to_vec();
    let mut parser = Parser::new();
    let imps = match parser.parse(&mut body) {
        Ok(req) => req.imps().len(),
        Err(_) => 0,
    };
    assert!(imps <= MAX_IMPS);
});
