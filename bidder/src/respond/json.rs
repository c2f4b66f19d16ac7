//! OpenRTB 2.6 BidResponse as JSON, written by hand into a reused buffer.
//!
//! No serde here: a derive-based serializer would need owned or intermediate structs
//! and float formatting for prices. This writer appends straight into the caller's
//! buffer, prints prices from integer micros (exact, no float on the way), and escapes
//! strings with a word-at-a-time scan, because `adm` can be tens of kilobytes of
//! HTML or VAST and is almost all plain text.
//!
//! Shape (optional fields omitted when empty or zero):
//!
//! ```text
//! {"id":…,"seatbid":[{"seat":…,"bid":[{"id","impid","price","adm","adomain","crid",
//!  "cid","cat","attr","w","h","mtype","dealid","nurl","burl","lurl"},…]}],"bidid":…,"cur":…}
//! ```
//!
//! Everything from `adm` to `mtype` depends only on the creative: it is written once
//! per creative when the catalog is compiled ([`super::Template`]), so a bid writes
//! only its ids, price, deal and notice URLs around that copy.

use super::{notice_fields, BidOut, CreativeOut, ResponseOut};
use crate::money::notice::{NoticeKind, NoticeSigner};
use crate::money::{write_u64, MICROS_PER_UNIT};
use crate::openrtb::special_bytes;

/// Decimal places of a micro-unit price.
const MICRO_DIGITS: usize = 6;

/// Writes the whole response; the caller has validated it.
pub(super) fn write_response(signer: &NoticeSigner, resp: &ResponseOut<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"id\":");
    write_str(out, resp.request_id);
    out.extend_from_slice(b",\"seatbid\":[{\"seat\":");
    write_str(out, resp.seat);
    out.extend_from_slice(b",\"bid\":[");
    for (i, bid) in resp.bids.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_bid(signer, bid, out);
    }
    // The response id is the first bid's id: unique per response, and it joins the
    // response to its notices in logs without another id to generate.
    out.extend_from_slice(b"]}],\"bidid\":\"");
    out.extend_from_slice(resp.bids[0].bid_id.to_text().as_bytes());
    out.extend_from_slice(b"\",\"cur\":");
    write_str(out, resp.cur);
    out.push(b'}');
}

/// Appends `{"id":"<request_id>","nbr":<nbr>}`: the no-bid body some partners want
/// instead of a bare 204. `nbr` is an OpenRTB no-bid reason code. Allocates nothing when
/// `out` has room.
pub fn encode_nobid_json(request_id: &str, nbr: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"id\":");
    write_str(out, request_id);
    out.extend_from_slice(b",\"nbr\":");
    write_u64(out, u64::from(nbr));
    out.push(b'}');
}

fn write_bid(signer: &NoticeSigner, bid: &BidOut<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"id\":\"");
    out.extend_from_slice(bid.bid_id.to_text().as_bytes());
    out.extend_from_slice(b"\",\"impid\":");
    write_str(out, bid.imp_id);
    out.extend_from_slice(b",\"price\":");
    write_price(out, bid.price_micros);
    match bid.template {
        Some(template) => out.extend_from_slice(template.json()),
        None => write_creative(&bid.creative, out),
    }
    if let Some(deal_id) = bid.deal_id {
        out.extend_from_slice(b",\"dealid\":");
        write_str(out, deal_id);
    }
    write_notice_urls(signer, bid, out);
    out.push(b'}');
}

/// The fields a bid takes from its creative, from `,"adm"` to `"mtype"`: the same
/// bytes for every bid on the creative, so [`super::Template`] writes them once.
pub(super) fn write_creative(creative: &CreativeOut<'_>, out: &mut Vec<u8>) {
    if !creative.adm.is_empty() {
        out.extend_from_slice(b",\"adm\":");
        write_str(out, creative.adm);
    }
    write_str_list(out, b",\"adomain\":[", creative.adomain);
    out.extend_from_slice(b",\"crid\":");
    write_str(out, creative.creative_id);
    out.extend_from_slice(b",\"cid\":");
    write_str(out, creative.campaign_id);
    write_str_list(out, b",\"cat\":[", creative.cat);
    if !creative.attr.is_empty() {
        out.extend_from_slice(b",\"attr\":[");
        for (i, &attr) in creative.attr.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_u64(out, u64::from(attr));
        }
        out.push(b']');
    }
    write_dimension(out, b",\"w\":", creative.w);
    write_dimension(out, b",\"h\":", creative.h);
    out.extend_from_slice(b",\"mtype\":");
    write_u64(out, u64::from(creative.mtype));
}

/// `nurl`, `burl`, `lurl`, sharing one tag. The signer guarantees the URLs need no JSON
/// escaping, so they are written straight into the string.
fn write_notice_urls(signer: &NoticeSigner, bid: &BidOut<'_>, out: &mut Vec<u8>) {
    let signed = signer.sign(&notice_fields(bid));
    let kinds = [
        (&b",\"nurl\":\""[..], NoticeKind::Win),
        (&b",\"burl\":\""[..], NoticeKind::Bill),
        (&b",\"lurl\":\""[..], NoticeKind::Loss),
    ];
    for (key, kind) in kinds {
        out.extend_from_slice(key);
        signer.write_url(kind, &signed, out);
        out.push(b'"');
    }
}

fn write_dimension(out: &mut Vec<u8>, key: &[u8], pixels: u32) {
    if pixels != 0 {
        out.extend_from_slice(key);
        write_u64(out, u64::from(pixels));
    }
}

/// Writes `key` (which opens the array) and the strings, or nothing for an empty list.
fn write_str_list(out: &mut Vec<u8>, key: &[u8], items: &[String]) {
    if items.is_empty() {
        return;
    }
    out.extend_from_slice(key);
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, item);
    }
    out.push(b']');
}

/// Writes a CPM given in micros as a JSON number with no more digits than it needs:
/// 1_500_000 → `1.5`, 1_000_000 → `1`, 1 → `0.000001`. Exact: digits come from the
/// integer, never through a float.
fn write_price(out: &mut Vec<u8>, micros: i64) {
    debug_assert!(micros >= 0, "validated before encoding");
    let micros = micros.unsigned_abs();
    let units = MICROS_PER_UNIT.unsigned_abs();
    write_u64(out, micros / units);
    let mut fraction = micros % units;
    if fraction == 0 {
        return;
    }
    let mut digits = [b'0'; MICRO_DIGITS];
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (fraction % 10) as u8;
        fraction /= 10;
    }
    let significant = MICRO_DIGITS - digits.iter().rev().take_while(|&&d| d == b'0').count();
    out.push(b'.');
    out.extend_from_slice(&digits[..significant]);
}

/// Writes `s` as a JSON string: quotes, backslashes and control bytes escaped, all else
/// (including non-ASCII UTF-8) copied as is.
fn write_str(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    write_escaped(out, s.as_bytes());
    out.push(b'"');
}

/// Bytes in one machine word for the escape scan.
const WORD_BYTES: usize = 8;

fn write_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut run_start = 0;
    let mut i = 0;
    while i + WORD_BYTES <= bytes.len() {
        let word = u64::from_le_bytes(bytes[i..i + WORD_BYTES].try_into().expect("one word"));
        let mask = special_bytes(word);
        if mask == 0 {
            i += WORD_BYTES;
            continue;
        }
        let hit = i + (mask.trailing_zeros() / 8) as usize;
        out.extend_from_slice(&bytes[run_start..hit]);
        write_escape(out, bytes[hit]);
        i = hit + 1;
        run_start = i;
    }
    for (offset, &b) in bytes[i..].iter().enumerate() {
        if b < 0x20 || b == b'"' || b == b'\\' {
            out.extend_from_slice(&bytes[run_start..i + offset]);
            write_escape(out, b);
            run_start = i + offset + 1;
        }
    }
    out.extend_from_slice(&bytes[run_start..]);
}

fn write_escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match b {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        0x08 => out.extend_from_slice(b"\\b"),
        0x0C => out.extend_from_slice(b"\\f"),
        _ => out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[(b >> 4) as usize],
            HEX[(b & 0xF) as usize],
        ]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(micros: i64) -> String {
        let mut out = Vec::new();
        write_price(&mut out, micros);
        String::from_utf8(out).expect("ASCII")
    }

    #[test]
    fn prices_print_exactly_from_micros() {
        let cases = [
            (0, "0"),
            (1, "0.000001"),
            (10, "0.00001"),
            (999, "0.000999"),
            (1_000, "0.001"),
            (1_000_000, "1"),
            (1_500_000, "1.5"),
            (1_050_000, "1.05"),
            (123_456_789, "123.456789"),
            (999_999_999_999, "999999.999999"),
            (i64::MAX, "9223372036854.775807"),
        ];
        for (micros, text) in cases {
            assert_eq!(price(micros), text, "{micros}");
        }
    }

    fn escaped(s: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, s);
        String::from_utf8(out).expect("escaping keeps UTF-8 valid")
    }

    #[test]
    fn strings_are_escaped_as_json_requires() {
        let cases = [
            ("", r#""""#),
            ("plain", r#""plain""#),
            ("a\"b", r#""a\"b""#),
            ("a\\b", r#""a\\b""#),
            ("\n\r\t\u{8}\u{c}", r#""\n\r\t\b\f""#),
            ("\u{0}\u{1f}\u{7f}", "\"\\u0000\\u001f\u{7f}\""),
            ("</script>é€😀", "\"</script>é€😀\""),
        ];
        for (input, expected) in cases {
            assert_eq!(escaped(input), expected, "{input:?}");
        }
    }

    #[test]
    fn escape_scan_finds_every_position_in_a_word() {
        // Each special byte at each offset, with plain and high bytes around it, so
        // both the word loop and the tail loop are exercised and carries are tested.
        for special in [b'"', b'\\', 0x00, 0x1F, b'\n'] {
            for len in 1..=20 {
                for at in 0..len {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = special;
                    if at + 1 < len {
                        bytes[at + 1] = 0x00;
                    }
                    let text = String::from_utf8(bytes).expect("ASCII");
                    let json = escaped(&text);
                    let back: String = serde_json::from_str(&json).expect("valid JSON");
                    assert_eq!(back, text, "{json}");
                }
            }
        }
    }

    #[test]
    fn nobid_body_is_id_and_reason() {
        let mut out = b"prefix".to_vec();
        encode_nobid_json("req \"1\"", 2, &mut out);
        assert_eq!(out, br#"prefix{"id":"req \"1\"","nbr":2}"#);
    }
}
