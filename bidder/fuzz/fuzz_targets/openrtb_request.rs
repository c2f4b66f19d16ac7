//! Fuzzes the OpenRTB readers against each other: any body must give the same request
//! (or the same refusal) from the bid path's one-pass reader and from the simd-json
//! reference (`openrtb::compare_readers`), neither may panic, and an accepted request
//! never holds more imps than the limit.

#![no_main]

use bidder::openrtb::{compare_readers, Parser, MAX_IMPS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(disagreement) = compare_readers(data) {
        panic!("the readers disagree: {disagreement}");
    }
    // Both readers unescape in place, as the bid path does with its own copy.
    let mut body = data.to_vec();
    let mut parser = Parser::new();
    let imps = match parser.parse(&mut body) {
        Ok(req) => req.imps().len(),
        Err(_) => 0,
    };
    assert!(imps <= MAX_IMPS);
});
