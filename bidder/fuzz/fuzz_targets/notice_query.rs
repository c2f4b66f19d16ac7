//! Fuzzes the notice query reader and its signature check. Arbitrary query strings
//! must be refused with a `NoticeError` (or accepted), never panic; and a notice the
//! signer wrote for fuzzed fields must verify back to exactly those fields, so the
//! check cannot pass by refusing everything.

#![no_main]

use bidder::money::bid_id::BidIdGen;
use bidder::money::notice::{
    signed_imp_id, NoticeFields, NoticeKind, NoticeSigner, MAX_SIGNED_QUERY_BYTES,
};
use libfuzzer_sys::fuzz_target;

const KEY: &[u8] = b"fuzz-notice-key-0123456789abcdef-0123456789";
const BASE: &str = "http://bidder.test/notice";
/// When the round trip's bid was made: only its id carries it, and neither signing nor
/// verifying reads a clock, so any instant serves.
const BID_MS: u64 = 1_700_000_000_000;

fuzz_target!(|data: &[u8]| {
    let signer = NoticeSigner::new(KEY, BASE).expect("valid signer");
    let text = String::from_utf8_lossy(data);
    let kind = NoticeKind::ALL[data.first().map_or(0, |b| usize::from(*b) % 3)];
    if let Ok(notice) = signer.verify(kind, &text) {
        if let Some(micros) = notice.auction.clearing_price_micros() {
            assert!(micros >= 0);
        }
    }
    // Round trip: fields taken from the input (the campaign id as configuration allows
    // one), signed, written, read back.
    let mid = (0..=text.len() / 2)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    let (imp_id, rest) = text.split_at(mid);
    let campaign_id: String = rest
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(64)
        .collect();
    let campaign_id = if campaign_id.is_empty() {
        "c"
    } else {
        campaign_id.as_str()
    };
    let price_micros = data
        .iter()
        .fold(0i64, |p, &b| (p * 31 + i64::from(b)) % 1_000_000_000);
    let fields = NoticeFields {
        bid_id: BidIdGen::new(1, 0).next_id(BID_MS),
        imp_id,
        campaign_id,
        price_micros,
    };
    let signed = signer.sign(&fields);
    for kind in NoticeKind::ALL {
        let mut url = Vec::new();
        signer.write_url(kind, &signed, &mut url);
        let url = String::from_utf8(url).expect("notice URLs are ASCII");
        let query = url.split_once('?').expect("a query").1;
        assert!(query.len() <= MAX_SIGNED_QUERY_BYTES);
        let back = signer.verify(kind, query).expect("our own URL verifies");
        assert_eq!(back.bid_id, fields.bid_id);
        assert_eq!(back.imp_id, signed_imp_id(imp_id));
        assert_eq!(back.campaign_id, campaign_id);
        assert_eq!(back.price_micros, price_micros);
    }
});
