//! Response tests: the JSON is re-parsed strictly into typed structs and held to the
//! rules exchanges apply to bidder responses (Prebid Server's among them); the
//! FlatBuffers are verified and read back with the generated code.

use std::collections::HashSet;

use serde::Deserialize;

use super::flatbuffers::fb;
use super::*;
use crate::money;
use crate::money::bid_id::BidIdGen;
use crate::money::notice::NoticeKind;

const KEY: &[u8] = b"test key test key test key test k";
const NOTICE_BASE: &str = "https://notice.example.com/n";
const IMPS: [&str; 3] = ["1", "imp-2", "3"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Response {
    id: String,
    seatbid: Vec<SeatBid>,
    bidid: String,
    cur: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeatBid {
    seat: String,
    bid: Vec<Bid>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Bid {
    id: String,
    impid: String,
    price: f64,
    adm: Option<String>,
    adomain: Option<Vec<String>>,
    crid: String,
    cid: String,
    cat: Option<Vec<String>>,
    attr: Option<Vec<u32>>,
    w: Option<u32>,
    h: Option<u32>,
    dealid: Option<String>,
    mtype: u8,
    nurl: String,
    burl: String,
    lurl: String,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct NoBid {
    id: String,
    nbr: u32,
}

/// The bidder-response rules an exchange rejects bids for.
fn check_exchange_rules(resp: &Response, request_id: &str, imps: &[&str]) {
    assert_eq!(resp.id, request_id, "response id echoes the request id");
    assert_eq!(resp.cur.len(), 3, "cur is an ISO-4217 code");
    assert!(resp.cur.bytes().all(|b| b.is_ascii_uppercase()));
    assert!(!resp.seatbid.is_empty(), "a bid response has a seatbid");
    let mut ids = HashSet::new();
    for seat in &resp.seatbid {
        assert!(!seat.seat.is_empty(), "seat is set");
        assert!(!seat.bid.is_empty(), "a seatbid has bids");
        for bid in &seat.bid {
            assert!(!bid.id.is_empty(), "bid.id present");
            assert!(ids.insert(bid.id.clone()), "bid ids unique: {}", bid.id);
            assert!(
                imps.contains(&bid.impid.as_str()),
                "impid {} matches an imp",
                bid.impid
            );
            assert!(!bid.crid.is_empty(), "crid present");
            assert!(
                bid.price.is_finite() && bid.price >= 0.0,
                "price is a number"
            );
            assert!(
                bid.price > 0.0 || bid.dealid.is_some(),
                "price > 0 unless a deal"
            );
            assert!((1..=4).contains(&bid.mtype), "mtype is 1..=4");
        }
    }
    assert!(ids.contains(&resp.bidid), "bidid is one of the bid ids");
}

fn adomain() -> Vec<String> {
    vec!["advertiser.example".to_owned()]
}

fn cat() -> Vec<String> {
    vec!["IAB1".to_owned(), "IAB1-2".to_owned()]
}

fn banner<'a>(gen: &mut BidIdGen, adomain: &'a [String], cat: &'a [String]) -> BidOut<'a> {
    BidOut {
        bid_id: gen.next_id(1_000),
        imp_id: IMPS[0],
        price_micros: 1_500_000,
        creative: CreativeOut {
            campaign_id: "camp-1",
            creative_id: "cr-1",
            adm: "<a href=\"https://ad.example/c?p=${AUCTION_PRICE}\"><img src=\"https://ad.example/i.png\"></a>",
            adomain,
            cat,
            attr: &[1, 4],
            w: 300,
            h: 250,
            mtype: 1,
        },
        deal_id: None,
        template: None,
    }
}

/// `bid` with its creative changed by `edit`.
fn with_creative<'a>(mut bid: BidOut<'a>, edit: impl FnOnce(&mut CreativeOut<'a>)) -> BidOut<'a> {
    edit(&mut bid.creative);
    bid
}

fn response<'a>(bids: &'a [BidOut<'a>]) -> ResponseOut<'a> {
    ResponseOut {
        request_id: "req-1",
        seat: "seat-9",
        cur: "USD",
        bids,
    }
}

fn encoder() -> Encoder {
    Encoder::new(NoticeSigner::new(KEY, NOTICE_BASE).expect("signer"))
}

fn json(resp: &ResponseOut<'_>) -> (String, Response) {
    let mut out = Vec::new();
    encoder().encode_json(resp, &mut out).expect("encodes");
    let text = String::from_utf8(out).expect("JSON is UTF-8");
    let parsed = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (text, parsed)
}

/// Every field of a parsed JSON bid against the bid it came from.
fn assert_json_bid(bid: &Bid, want: &BidOut<'_>) {
    assert_eq!(bid.id, want.bid_id.to_string());
    assert_eq!(bid.impid, want.imp_id);
    assert_eq!(bid.price, money::cpm_to_f64(want.price_micros));
    assert_eq!(
        bid.adm.as_deref(),
        Some(want.creative.adm).filter(|adm| !adm.is_empty())
    );
    assert_eq!(
        bid.adomain.as_deref().unwrap_or_default(),
        want.creative.adomain
    );
    assert_eq!(bid.crid, want.creative.creative_id);
    assert_eq!(bid.cid, want.creative.campaign_id);
    assert_eq!(bid.cat.as_deref().unwrap_or_default(), want.creative.cat);
    assert_eq!(bid.attr.as_deref().unwrap_or_default(), want.creative.attr);
    assert_eq!(bid.w, Some(want.creative.w).filter(|&w| w != 0));
    assert_eq!(bid.h, Some(want.creative.h).filter(|&h| h != 0));
    assert_eq!(bid.dealid.as_deref(), want.deal_id);
    assert_eq!(bid.mtype, want.creative.mtype);
    for (url, path) in [
        (&bid.nurl, "/win?"),
        (&bid.burl, "/bill?"),
        (&bid.lurl, "/loss?"),
    ] {
        assert!(url.starts_with(&format!("{NOTICE_BASE}{path}")), "{url}");
    }
}

#[test]
fn banner_bid_passes_exchange_rules_and_keeps_every_field() {
    let mut gen = BidIdGen::new(1, 1);
    let (adomain, cat) = (adomain(), cat());
    let bids = [banner(&mut gen, &adomain, &cat)];
    let (text, resp) = json(&response(&bids));
    check_exchange_rules(&resp, "req-1", &IMPS);
    assert_eq!(resp.seatbid.len(), 1);
    assert_eq!(resp.seatbid[0].seat, "seat-9");
    assert_eq!(resp.cur, "USD");
    assert_eq!(resp.bidid, bids[0].bid_id.to_string());
    assert_json_bid(&resp.seatbid[0].bid[0], &bids[0]);
    assert!(text.contains("\"price\":1.5,"), "{text}");
    assert!(
        text.contains("${AUCTION_PRICE}"),
        "macros stay for the exchange"
    );
}

#[test]
fn notice_urls_in_the_response_verify() {
    let mut gen = BidIdGen::new(1, 1);
    let (adomain, cat) = (adomain(), cat());
    let bids = [banner(&mut gen, &adomain, &cat)];
    let (_, resp) = json(&response(&bids));
    let signer = NoticeSigner::new(KEY, NOTICE_BASE).expect("signer");
    let bid = &resp.seatbid[0].bid[0];
    for (url, kind) in [
        (&bid.nurl, NoticeKind::Win),
        (&bid.burl, NoticeKind::Bill),
        (&bid.lurl, NoticeKind::Loss),
    ] {
        let query = url
            .split_once('?')
            .expect("query")
            .1
            .replace("${AUCTION_PRICE}", "1.2");
        let notice = signer.verify(kind, &query).expect("notice verifies");
        assert_eq!(notice.bid_id, bids[0].bid_id);
        assert_eq!(notice.imp_id, bids[0].imp_id);
        assert_eq!(notice.campaign_id, bids[0].creative.campaign_id);
        assert_eq!(notice.price_micros, bids[0].price_micros);
        assert_eq!(notice.auction.clearing_price_micros(), Some(1_200_000));
    }
}

#[test]
fn several_bids_keep_their_order_and_distinct_ids() {
    let mut gen = BidIdGen::new(1, 1);
    let (adomain, cat) = (adomain(), cat());
    let bids: Vec<_> = IMPS
        .iter()
        .zip([1_000_000, 2_340_000, 999])
        .map(|(&imp_id, price_micros)| BidOut {
            imp_id,
            price_micros,
            ..banner(&mut gen, &adomain, &cat)
        })
        .collect();
    let (_, resp) = json(&response(&bids));
    check_exchange_rules(&resp, "req-1", &IMPS);
    assert_eq!(resp.seatbid[0].bid.len(), bids.len());
    for (got, want) in resp.seatbid[0].bid.iter().zip(&bids) {
        assert_json_bid(got, want);
    }
}

#[test]
fn deal_bid_may_have_zero_price_but_an_open_bid_may_not() {
    let mut gen = BidIdGen::new(1, 1);
    let deal = [BidOut {
        price_micros: 0,
        deal_id: Some("deal-42"),
        ..banner(&mut gen, &[], &[])
    }];
    let (text, resp) = json(&response(&deal));
    check_exchange_rules(&resp, "req-1", &IMPS);
    assert!(text.contains("\"price\":0,"), "{text}");
    assert_json_bid(&resp.seatbid[0].bid[0], &deal[0]);

    let open = [BidOut {
        price_micros: 0,
        deal_id: None,
        ..banner(&mut gen, &[], &[])
    }];
    let mut out = Vec::new();
    assert_eq!(
        encoder().encode_json(&response(&open), &mut out),
        Err(EncodeError::Price { bid: 0, micros: 0 })
    );
}

#[test]
fn optional_fields_are_omitted_when_unset() {
    let mut gen = BidIdGen::new(1, 1);
    let bids = [with_creative(banner(&mut gen, &[], &[]), |c| {
        c.adm = "";
        c.attr = &[];
        (c.w, c.h) = (0, 0);
    })];
    let (text, _) = json(&response(&bids));
    let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let bid = value["seatbid"][0]["bid"][0]
        .as_object()
        .expect("bid object");
    for key in ["adm", "adomain", "cat", "attr", "w", "h", "dealid"] {
        assert!(!bid.contains_key(key), "{key} should be omitted: {text}");
    }
}

#[test]
fn hostile_strings_round_trip_exactly() {
    let hostile = "\"</script><script>alert('x')</script>\\ \u{0}\u{1}\u{1f}\n\r\t é 漢字 😀 \u{2028} ${AUCTION_PRICE}";
    let big_vast = format!(
        "<VAST version=\"4.0\"><Ad><InLine>{}</InLine></Ad></VAST>",
        "<Impression><![CDATA[https://t.example/i?x=\"1\"&y=2]]></Impression>\n".repeat(1_500)
    );
    assert!(big_vast.len() > 100_000);
    let (adomain, cat) = (vec![hostile.to_owned()], vec![hostile.to_owned()]);
    let mut gen = BidIdGen::new(1, 1);
    for adm in [hostile, big_vast.as_str()] {
        let bid = BidOut {
            imp_id: hostile,
            deal_id: Some(hostile),
            ..banner(&mut gen, &adomain, &cat)
        };
        let bids = [with_creative(bid, |c| {
            (c.creative_id, c.campaign_id, c.adm) = (hostile, hostile, adm);
        })];
        let resp = ResponseOut {
            request_id: hostile,
            seat: hostile,
            ..response(&bids)
        };
        let (_, parsed) = json(&resp);
        check_exchange_rules(&parsed, hostile, &[hostile]);
        assert_eq!(parsed.seatbid[0].seat, hostile);
        assert_json_bid(&parsed.seatbid[0].bid[0], &bids[0]);
    }
}

#[test]
fn bad_responses_are_refused_before_writing() {
    let mut gen = BidIdGen::new(1, 1);
    let good = banner(&mut gen, &[], &[]);
    let many: Vec<String> = (0..=MAX_LIST_ITEMS).map(|i| i.to_string()).collect();
    let huge_adm = "x".repeat(MAX_RESPONSE_BYTES);
    let bid_cases: Vec<(BidOut<'_>, EncodeError)> = vec![
        (
            BidOut { imp_id: "", ..good },
            EncodeError::EmptyBidField {
                bid: 0,
                field: "impid",
            },
        ),
        (
            with_creative(good, |c| c.creative_id = ""),
            EncodeError::EmptyBidField {
                bid: 0,
                field: "crid",
            },
        ),
        (
            with_creative(good, |c| c.campaign_id = ""),
            EncodeError::EmptyBidField {
                bid: 0,
                field: "cid",
            },
        ),
        (
            BidOut {
                deal_id: Some(""),
                ..good
            },
            EncodeError::EmptyBidField {
                bid: 0,
                field: "dealid",
            },
        ),
        (
            BidOut {
                price_micros: -1,
                ..good
            },
            EncodeError::Price { bid: 0, micros: -1 },
        ),
        (
            BidOut {
                price_micros: money::MAX_CPM_MICROS + 1,
                ..good
            },
            EncodeError::Price {
                bid: 0,
                micros: money::MAX_CPM_MICROS + 1,
            },
        ),
        (
            with_creative(good, |c| c.mtype = 0),
            EncodeError::Mtype { bid: 0, mtype: 0 },
        ),
        (
            with_creative(good, |c| c.mtype = 5),
            EncodeError::Mtype { bid: 0, mtype: 5 },
        ),
        (
            with_creative(good, |c| c.adomain = &many),
            EncodeError::TooManyItems {
                bid: 0,
                field: "adomain",
                count: MAX_LIST_ITEMS + 1,
            },
        ),
        (
            with_creative(good, |c| c.adm = &huge_adm),
            EncodeError::TooLarge(0), // size checked below
        ),
    ];
    let mut encoder = encoder();
    for (bid, error) in bid_cases {
        let bids = [bid];
        let mut out = b"headers".to_vec();
        let result = encoder.encode_json(&response(&bids), &mut out);
        match error {
            EncodeError::TooLarge(_) => {
                assert!(matches!(result, Err(EncodeError::TooLarge(n)) if n > MAX_RESPONSE_BYTES))
            }
            _ => assert_eq!(result, Err(error)),
        }
        assert_eq!(out, b"headers", "nothing written on error");
        let fb_result = encoder
            .encode_flatbuffers(&response(&bids))
            .map(<[u8]>::len);
        assert!(fb_result.is_err(), "{error} also refused for FlatBuffers");
    }

    let mut out = Vec::new();
    assert_eq!(
        encoder.encode_json(&response(&[]), &mut out),
        Err(EncodeError::NoBids)
    );
    let too_many: Vec<_> = (0..=MAX_BIDS_PER_RESPONSE)
        .map(|_| banner(&mut gen, &[], &[]))
        .collect();
    assert_eq!(
        encoder.encode_json(&response(&too_many), &mut out),
        Err(EncodeError::TooManyBids(MAX_BIDS_PER_RESPONSE + 1))
    );
    let bids = [good];
    for (field, resp) in [
        (
            "id",
            ResponseOut {
                request_id: "",
                ..response(&bids)
            },
        ),
        (
            "seat",
            ResponseOut {
                seat: "",
                ..response(&bids)
            },
        ),
        (
            "cur",
            ResponseOut {
                cur: "",
                ..response(&bids)
            },
        ),
    ] {
        assert_eq!(
            encoder.encode_json(&resp, &mut out),
            Err(EncodeError::EmptyResponseField(field))
        );
    }
    assert!(out.is_empty());
}

#[test]
fn nobid_body_parses_strictly() {
    let mut out = Vec::new();
    encode_nobid_json("req-\"7\"", 8, &mut out);
    let parsed: NoBid = serde_json::from_slice(&out).expect("valid JSON");
    assert_eq!(
        parsed,
        NoBid {
            id: "req-\"7\"".to_owned(),
            nbr: 8
        }
    );
}

#[test]
fn a_nobid_in_either_format_carries_the_id_and_reason() {
    let mut encoder = encoder();
    let mut out = Vec::new();
    encoder.encode_nobid(Format::Json, "req-9", 17, &mut out);
    assert_eq!(out, br#"{"id":"req-9","nbr":17}"#);
    out.clear();
    encoder.encode_nobid(Format::FlatBuffers, "req-9", 17, &mut out);
    let root = fb::root_as_bid_response(&out).expect("verifies");
    assert_eq!((root.id(), root.nbr()), ("req-9", 17));
    assert!(root.seatbid().is_none() && root.cur().is_none());
}

#[test]
fn encode_within_keeps_each_format_inside_the_room_it_is_given() {
    let mut gen = BidIdGen::new(1, 1);
    let (adomain, cat) = (adomain(), cat());
    let bids = [banner(&mut gen, &adomain, &cat)];
    let mut encoder = encoder();
    for format in [Format::Json, Format::FlatBuffers] {
        let mut out = b"kept".to_vec();
        encoder
            .encode_within(format, &response(&bids), &mut out, MAX_RESPONSE_BYTES)
            .expect("fits");
        let body = &out[4..];
        match format {
            Format::Json => assert!(serde_json::from_slice::<Response>(body).is_ok()),
            Format::FlatBuffers => assert!(fb::root_as_bid_response(body).is_ok()),
        }
        let size = body.len();
        out.truncate(4);
        assert_eq!(
            encoder.encode_within(format, &response(&bids), &mut out, size - 1),
            Err(EncodeError::TooLarge(size)),
            "{format:?}"
        );
        assert_eq!(
            out, b"kept",
            "{format:?}: a refused response leaves nothing"
        );
    }
}

/// Every field of a FlatBuffers bid against the bid it came from.
fn assert_fb_bid(bid: fb::Bid<'_>, want: &BidOut<'_>) {
    assert_eq!(bid.id(), want.bid_id.to_string());
    assert_eq!(bid.impid(), want.imp_id);
    assert_eq!(bid.price(), money::cpm_to_f64(want.price_micros));
    assert_eq!(
        bid.adm(),
        Some(want.creative.adm).filter(|adm| !adm.is_empty())
    );
    let strings = |v: Option<::flatbuffers::Vector<'_, ::flatbuffers::ForwardsUOffset<&str>>>| {
        v.map(|v| v.iter().map(str::to_owned).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(strings(bid.adomain()), want.creative.adomain);
    assert_eq!(bid.crid(), want.creative.creative_id);
    assert_eq!(bid.cid(), Some(want.creative.campaign_id));
    assert_eq!(strings(bid.cat()), want.creative.cat);
    let attr: Vec<u32> = bid.attr().map(|v| v.iter().collect()).unwrap_or_default();
    assert_eq!(attr, want.creative.attr);
    assert_eq!((bid.w(), bid.h()), (want.creative.w, want.creative.h));
    assert_eq!(bid.dealid(), want.deal_id);
    assert_eq!(bid.mtype(), want.creative.mtype);
    let signer = NoticeSigner::new(KEY, NOTICE_BASE).expect("signer");
    for (url, path, kind) in [
        (bid.nurl(), "/win?", NoticeKind::Win),
        (bid.burl(), "/bill?", NoticeKind::Bill),
        (bid.lurl(), "/loss?", NoticeKind::Loss),
    ] {
        let url = url.expect("notice URL present");
        let (head, query) = url.split_once('?').expect("query");
        assert_eq!(format!("{head}?"), format!("{NOTICE_BASE}{path}"));
        assert_eq!(
            signer.verify(kind, query).expect("verifies").bid_id,
            want.bid_id
        );
    }
}

#[test]
fn flatbuffers_round_trip_every_field() {
    let mut gen = BidIdGen::new(1, 1);
    let (adomain, cat) = (adomain(), cat());
    let first = [banner(&mut gen, &adomain, &cat)];
    let second = [
        with_creative(
            BidOut {
                imp_id: IMPS[1],
                ..banner(&mut gen, &[], &[])
            },
            |c| {
                (c.adm, c.attr) = ("", &[]);
                (c.w, c.h, c.mtype) = (0, 0, 2);
            },
        ),
        BidOut {
            imp_id: IMPS[2],
            price_micros: 0,
            deal_id: Some("deal-1"),
            ..banner(&mut gen, &adomain, &cat)
        },
    ];
    let mut encoder = encoder();
    // Two responses through one encoder: the second read proves the builder resets.
    for bids in [&first[..], &second[..], &first[..]] {
        let resp = ResponseOut {
            request_id: "req-fb",
            ..response(bids)
        };
        let bytes = encoder.encode_flatbuffers(&resp).expect("encodes").to_vec();
        assert!(fb::bid_response_buffer_has_identifier(&bytes));
        let root = fb::root_as_bid_response(&bytes).expect("verifies");
        assert_eq!(root.id(), "req-fb");
        assert_eq!(root.cur(), Some("USD"));
        assert_eq!(root.bidid(), Some(bids[0].bid_id.to_string().as_str()));
        let seatbid = root.seatbid().expect("seatbid");
        assert_eq!(seatbid.len(), 1);
        assert_eq!(seatbid.get(0).seat(), Some("seat-9"));
        let got = seatbid.get(0).bid();
        assert_eq!(got.len(), bids.len());
        for (i, want) in bids.iter().enumerate() {
            assert_fb_bid(got.get(i), want);
        }
    }
}

#[test]
fn flatbuffers_corruption_is_caught_by_the_verifier() {
    let mut gen = BidIdGen::new(1, 1);
    let bids = [banner(&mut gen, &[], &[])];
    let mut encoder = encoder();
    let bytes = encoder
        .encode_flatbuffers(&response(&bids))
        .expect("encodes")
        .to_vec();
    assert!(fb::root_as_bid_response(&bytes[..bytes.len() / 2]).is_err());
    let mut bad_root = bytes.clone();
    bad_root[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(fb::root_as_bid_response(&bad_root).is_err());
}

#[test]
fn a_creative_template_writes_the_same_bytes_as_the_fields() {
    let signer = NoticeSigner::new(&[9u8; 32], "https://n.example/x").expect("signer");
    let encoder = Encoder::new(signer);
    let mut gen = BidIdGen::new(1, 2);
    let (adomain, cat) = (adomain(), cat());
    let base = banner(&mut gen, &adomain, &cat);
    let creatives = [
        base,
        with_creative(base, |c| {
            (c.adm, c.adomain, c.cat, c.attr) = ("", &[], &[], &[]);
            (c.w, c.h) = (0, 0);
        }),
        with_creative(base, |c| {
            (c.adm, c.mtype) = ("line\n\"quoted\" \\ é \u{1}", 2);
        }),
        BidOut {
            deal_id: Some("deal \"7\""),
            price_micros: 0,
            ..base
        },
    ];
    for fields in creatives {
        let template = Template::new(&fields.creative);
        let templated = BidOut {
            template: Some(&template),
            ..fields
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        encoder
            .encode_json(&response(&[fields]), &mut a)
            .expect("fields");
        encoder
            .encode_json(&response(&[templated]), &mut b)
            .expect("template");
        assert_eq!(String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap());
        assert!(!template.json().is_empty());
    }
}
