//! Fuzzes body decoding: chunked framing and gzip, alone and together, behind a real
//! request head. Any bytes must decode within the limits or fail with an error, never
//! panic, and never yield more than `max_decompressed_body_bytes`.

#![no_main]

use bidder::http::{parse_request, BodyDecoder, HttpLimits, Parsed};
use libfuzzer_sys::fuzz_target;

const LIMITS: HttpLimits = HttpLimits {
    max_header_bytes: 1024,
    max_headers: 16,
    max_body_bytes: 8 * 1024,
    max_decompressed_body_bytes: 32 * 1024,
};

/// The framing and encoding a case is sent with, chosen by its first byte.
const HEADS: [&str; 3] = [
    "POST /bid/x HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n",
    "POST /bid/x HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n",
    "POST /bid/x HTTP/1.1\r\nHost: b\r\nContent-Encoding: gzip\r\nContent-Length: ",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let head = HEADS[usize::from(pick) % HEADS.len()];
    let mut raw = head.as_bytes().to_vec();
    if head.ends_with("Content-Length: ") {
        raw.extend_from_slice(format!("{}\r\n\r\n", body.len()).as_bytes());
    }
    raw.extend_from_slice(body);
    let Ok(Parsed::Complete(req)) = parse_request(&raw, &LIMITS) else {
        return;
    };
    assert!(req.consumed <= raw.len());
    let mut decoder = BodyDecoder::new(&LIMITS);
    if let Ok(decoded) = decoder.decode(&raw, &req) {
        assert!(decoded.len() <= LIMITS.max_decompressed_body_bytes);
    }
});
