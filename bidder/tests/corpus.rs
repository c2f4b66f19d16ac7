//! The OpenRTB corpus (`shared/fixtures/openrtb`, described by its `MANIFEST.json`)
//! through the parser: every real request parses, every broken body fails clearly,
//! chosen files yield the values a decision depends on, and the bid path's one-pass
//! reader makes the same of every file, cut and mutation as the simd-json reference.
//!
//! The corpus path comes from `BIDDER_FIXTURES`, else `<manifest dir>/../../shared/
//! fixtures/openrtb`. A missing corpus fails the run: a silent skip would let CI pass
//! without ever exercising the parser on real traffic.

use testkit::corpus_dir;

use std::io::Read;
use std::sync::OnceLock;

use bidder::openrtb::{
    compare_readers, Agreement, BidRequest, NativeRequest, Origins, ParseError, Parser,
};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;

/// Fewer manifest entries than this means a truncated or wrong corpus.
const MIN_MANIFEST_ENTRIES: usize = 150;

struct Entry {
    path: String,
    kind: String,
}

fn manifest() -> Vec<Entry> {
    let path = corpus_dir().join("MANIFEST.json");
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let entries: Vec<Value> =
        serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        entries.len() >= MIN_MANIFEST_ENTRIES,
        "{} lists only {} files",
        path.display(),
        entries.len()
    );
    entries
        .iter()
        .map(|e| Entry {
            path: e["path"]
                .as_str()
                .expect("manifest entry has a path")
                .to_owned(),
            kind: e["kind"]
                .as_str()
                .expect("manifest entry has a kind")
                .to_owned(),
        })
        .collect()
}

/// The body as an exchange would send it; `.gz` files are gzip-encoded bodies.
fn read_body(rel: &str) -> Vec<u8> {
    let path = corpus_dir().join(rel);
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if !rel.ends_with(".gz") {
        return raw;
    }
    let mut body = Vec::new();
    flate2::read::GzDecoder::new(raw.as_slice())
        .read_to_end(&mut body)
        .unwrap_or_else(|e| panic!("{}: gunzip: {e}", path.display()));
    body
}

/// The OpenRTB requests inside a Prebid Server fixture: what PBS sends the bidder
/// (`httpCalls[].expectedRequest.body`), or when no call carries one, the request PBS
/// itself received (`mockBidRequest`).
fn pbs_bodies(rel: &str) -> Vec<Vec<u8>> {
    let fixture: Value = serde_json::from_slice(&read_body(rel)).expect("fixture is JSON");
    let calls = fixture["httpCalls"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let mut bodies: Vec<Vec<u8>> = calls
        .iter()
        .filter_map(|call| call["expectedRequest"].get("body"))
        .map(|body| serde_json::to_vec(body).expect("re-encode"))
        .collect();
    if bodies.is_empty() {
        let mock = fixture
            .get("mockBidRequest")
            .expect("fixture has a request");
        bodies.push(serde_json::to_vec(mock).expect("re-encode"));
    }
    bodies
}

/// Parses `body` and hands the request to `check`.
fn with_request<R>(name: &str, mut body: Vec<u8>, check: impl FnOnce(&BidRequest<'_>) -> R) -> R {
    let mut parser = Parser::new();
    let req = parser
        .parse(&mut body)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    check(&req)
}

fn with_file<R>(rel: &str, check: impl FnOnce(&BidRequest<'_>) -> R) -> R {
    with_request(rel, read_body(rel), check)
}

fn with_pbs<R>(rel: &str, check: impl FnOnce(&BidRequest<'_>) -> R) -> R {
    let body = pbs_bodies(rel).into_iter().next().expect("one body");
    with_request(rel, body, check)
}

#[test]
fn every_corpus_bid_request_parses() {
    let mut parser = Parser::new();
    let (mut parsed, mut failures) = (0, Vec::new());
    for entry in manifest().iter().filter(|e| e.kind == "bidrequest") {
        let mut body = read_body(&entry.path);
        match parser.parse(&mut body) {
            Ok(req) => exercise(&req),
            Err(e) => failures.push(format!("{}: {e}", entry.path)),
        };
        parsed += 1;
    }
    assert!(failures.is_empty(), "failed:\n{}", failures.join("\n"));
    assert!(parsed >= 100, "only {parsed} bid requests in the manifest");
}

#[test]
fn every_prebid_fixture_request_parses() {
    let mut parser = Parser::new();
    let (mut parsed, mut failures) = (0, Vec::new());
    for entry in manifest()
        .iter()
        .filter(|e| e.kind.starts_with("pbs-fixture"))
    {
        for mut body in pbs_bodies(&entry.path) {
            match parser.parse(&mut body) {
                Ok(req) => exercise(&req),
                Err(e) => failures.push(format!("{}: {e}", entry.path)),
            };
            parsed += 1;
        }
    }
    assert!(failures.is_empty(), "failed:\n{}", failures.join("\n"));
    assert!(parsed >= 55, "only {parsed} Prebid fixture requests");
}

#[test]
fn every_invalid_json_negative_is_refused_as_invalid_json() {
    let mut parser = Parser::new();
    let negatives: Vec<Entry> = manifest()
        .into_iter()
        .filter(|e| e.kind == "negative-invalid-json")
        .collect();
    assert!(negatives.len() >= 4, "negatives missing from the manifest");
    for entry in negatives {
        let mut body = read_body(&entry.path);
        match parser.parse(&mut body) {
            Err(e @ ParseError::InvalidJson { .. }) => {
                let message = e.to_string();
                assert!(
                    message.contains("not valid JSON"),
                    "{}: {message}",
                    entry.path
                );
            }
            Err(e) => panic!("{}: wrong error: {e}", entry.path),
            Ok(_) => panic!("{}: invalid JSON parsed", entry.path),
        };
    }
}

#[test]
fn iab_simple_banner_has_its_floor_and_size() {
    with_file(
        "iab-openrtb2.x-spec/2.6_sec6_01_request_6-2-1-example-1-simple-banner.json",
        |req| {
            let imp = &req.imps()[0];
            assert_eq!(imp.id, "1");
            assert_eq!(imp.bidfloor_micros, 30_000);
            assert_eq!(imp.bidfloorcur, "USD");
            let banner = imp.banner.expect("banner");
            let sizes: Vec<(u32, u32)> = req
                .formats(banner.format)
                .iter()
                .map(|f| (f.w, f.h))
                .collect();
            assert_eq!(sizes, [(300, 250)]);
            assert!(req.site.is_some() && req.app.is_none());
        },
    );
}

#[test]
fn iab_direct_deal_example_has_deal_floors_and_seats() {
    with_file(
        "iab-openrtb2.x-spec/2.6_sec6_05_request_6-2-5-example-5-pmp-with-direct-deal.json",
        |req| {
            assert_eq!(req.at, 1);
            assert_eq!(req.cur(), ["USD"]);
            let pmp = req.imps()[0].pmp.expect("pmp");
            assert!(pmp.private_auction);
            let deals = req.deals(pmp.deals);
            let summary: Vec<_> = deals
                .iter()
                .map(|d| (d.id, d.bidfloor_micros, d.at, req.strs(d.wseat).to_vec()))
                .collect();
            assert_eq!(
                summary,
                [
                    ("AB-Agency1-0001", 2_500_000, Some(1), vec!["Agency1"]),
                    ("XY-Agency2-0001", 2_000_000, Some(2), vec!["Agency2"]),
                ]
            );
            let site = req.site.expect("site");
            assert_eq!(req.strs(site.cat), ["IAB3-1"]);
            assert_eq!(site.publisher.and_then(|p| p.domain), Some("foobar.com"));
        },
    );
}

#[test]
fn gzip_body_parses_after_decompression() {
    with_file("rtb4free-bidder/SampleBids/nexage.gz", |req| {
        assert!(!req.id.is_empty());
        assert!(req.imps()[0].banner.is_some());
    });
}

#[test]
fn ortb25_ext_gdpr_consent_and_schain_are_folded_in() {
    with_pbs(
        "prebid-server/adapters/rubicon/rubicontest/exemplary/25-26-transition-period.json",
        |req| {
            assert_eq!(req.regs.gdpr, Some(true));
            assert_eq!(req.regs.us_privacy, Some("us_privacy"));
            assert_eq!(req.user.and_then(|u| u.consent), Some("consent"));
            let schain = req.schain().expect("schain from source.ext");
            assert!(!schain.complete);
            assert_eq!(schain.ver, Some("1.0"));
            let nodes = req.schain_nodes(schain.nodes);
            assert_eq!(nodes.len(), 1);
            assert_eq!((nodes[0].asi, nodes[0].sid), (Some("asi"), Some("sid")));
            for flag in [
                Origins::GDPR_FROM_EXT,
                Origins::US_PRIVACY_FROM_EXT,
                Origins::CONSENT_FROM_EXT,
                Origins::SCHAIN_FROM_EXT,
            ] {
                assert!(req.origins.contains(flag), "flag {flag:#x}");
            }
        },
    );
}

#[test]
fn ext_schain_with_several_nodes_keeps_order_and_payment_flags() {
    with_pbs(
        "prebid-server/adapters/yieldlab/yieldlabtest/exemplary/schain_multiple_nodes.json",
        |req| {
            let schain = req.schain().expect("schain");
            assert!(schain.complete);
            let nodes: Vec<_> = req
                .schain_nodes(schain.nodes)
                .iter()
                .map(|n| (n.asi, n.sid, n.hp))
                .collect();
            assert_eq!(
                nodes,
                [
                    (Some("exchange1.com"), Some("1234"), Some(true)),
                    (Some("exchange2.com"), Some("abcd"), Some(true)),
                ]
            );
            assert!(req.origins.contains(Origins::SCHAIN_FROM_EXT));
        },
    );
}

#[test]
fn ortb26_source_schain_and_regs_gdpr_are_read() {
    with_pbs(
        "prebid-server/adapters/tadvertising_blis/tadvertising_blistest/exemplary/banner.json",
        |req| {
            assert_eq!(req.regs.gdpr, Some(false));
            let source = req.source.expect("source");
            assert_eq!(source.tid, Some("test-transaction-id"));
            assert_eq!(source.fd, Some(true));
            let schain = source.schain.expect("schain");
            let nodes = req.schain_nodes(schain.nodes);
            assert_eq!(nodes.len(), 1);
            assert_eq!(nodes[0].rid, Some("test-rid"));
            assert_eq!(req.origins.bits(), 0, "nothing came from ext");
        },
    );
    with_pbs(
        "prebid-server/endpoints/openrtb2/sample-requests/valid-whole/exemplary/source-schain.json",
        |req| {
            let schain = req.schain().expect("schain");
            assert!(schain.complete);
            assert_eq!(schain.ver, Some("ver"));
            assert_eq!(req.schain_nodes(schain.nodes)[0].asi, Some("asi"));
            assert_eq!(req.tmax_ms, Some(1000));
        },
    );
}

#[test]
fn ortb26_gpp_and_consent_are_read() {
    with_pbs(
        "prebid-server/endpoints/openrtb2/sample-requests/valid-whole/supplementary/gdpr-conflict.json",
        |req| {
            assert_eq!(req.regs.gdpr, Some(true));
            assert_eq!(req.ints(req.regs.gpp_sid), [6]);
            assert!(req.regs.gpp.is_some_and(|g| g.starts_with("DBACNYA~")));
            assert_eq!(
                req.user.and_then(|u| u.consent),
                Some("CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA")
            );
            assert!(!req.origins.contains(Origins::CONSENT_FROM_EXT));
        },
    );
}

#[test]
fn ext_eids_are_summarised_per_source() {
    with_pbs(
        "prebid-server/adapters/amx/amxtest/exemplary/web-simple.json",
        |req| {
            let user = req.user.expect("user");
            let eids: Vec<_> = req
                .eids(user.eids)
                .iter()
                .map(|e| (e.source, e.uid_count, e.first_uid))
                .collect();
            assert_eq!(
                eids,
                [
                    (Some("amxid"), 1, Some("88de601e-3d98-48e7-81d7-00000000")),
                    (Some("adserver.org"), 1, Some("1234567")),
                ]
            );
            assert!(req.origins.contains(Origins::EIDS_FROM_EXT));
            assert_eq!(req.regs.gdpr, Some(false));
            assert_eq!(req.regs.us_privacy, Some("1---"));
        },
    );
}

#[test]
fn native_request_string_and_object_forms_are_told_apart() {
    with_file("bsm-openrtb/testdata/breq.native.json", |req| {
        let native = req.imps()[0].native.expect("native");
        assert_eq!(
            native.request,
            NativeRequest::Json("...Native Spec request as an encoded string...")
        );
        assert_eq!(native.ver, Some("1.0"));
        assert_eq!(req.ints(native.battr), [13, 14]);
    });
    with_file(
        "google-openrtb/openrtb-core/src/test/resources/REQUEST__SHORT_NOROOT_OBJECT.json",
        |req| {
            let native = req.imps()[0].native.expect("native");
            assert_eq!(native.request, NativeRequest::Object);
        },
    );
}

#[test]
fn dooh_request_reads_venue_and_floor() {
    with_file(
        "iab-openrtb2.x-spec/implementation.md_impl_14_7-9-6-1-dooh-banner-bid-request.json",
        |req| {
            assert!(req.dooh.is_some() && req.site.is_none());
            let imp = &req.imps()[0];
            assert_eq!(imp.id, "007");
            assert_eq!(imp.bidfloor_micros, 5_000_000);
            let sizes: Vec<_> = req
                .formats(imp.banner.expect("banner").format)
                .iter()
                .map(|f| (f.w, f.h))
                .collect();
            assert_eq!(sizes, [(1080, 1920), (720, 1366)]);
        },
    );
}

#[test]
fn mobile_app_example_reads_app_device_and_blocklists() {
    with_file(
        "iab-openrtb2.x-spec/2.6_sec6_03_request_6-2-3-example-3-mobile.json",
        |req| {
            let app = req.app.expect("app");
            assert!(app.bundle.is_some());
            assert!(!req.bcat().is_empty());
            let device = req.device.expect("device");
            assert!(device.ifa.is_some());
            assert_eq!(req.imps()[0].bidfloor_micros, 500_000);
        },
    );
}

/// Resolves every span of the request, as the decision core would: a span pointing
/// outside its pool trips the model's debug assertion.
fn exercise(req: &BidRequest<'_>) {
    assert!(!req.id.is_empty() && !req.imps().is_empty());
    let lists = [
        req.bcat(),
        req.badv(),
        req.bapp(),
        req.cur(),
        req.wseat(),
        req.bseat(),
    ];
    let mut seen = lists.iter().map(|l| l.len()).sum::<usize>();
    for imp in req.imps() {
        assert!(!imp.id.is_empty());
        if let Some(b) = imp.banner {
            seen += req.formats(b.format).len() + req.ints(b.battr).len();
            seen += req.ints(b.btype).len() + req.ints(b.api).len();
        }
        if let Some(v) = imp.video {
            seen += req.strs(v.mimes).len() + req.ints(v.protocols).len() + req.ints(v.battr).len();
        }
        if let Some(a) = imp.audio {
            seen += req.strs(a.mimes).len() + req.ints(a.battr).len();
        }
        if let Some(n) = imp.native {
            seen += req.ints(n.api).len() + req.ints(n.battr).len();
        }
        for deal in imp.pmp.map(|p| req.deals(p.deals)).unwrap_or(&[]) {
            seen += req.strs(deal.wseat).len() + req.strs(deal.wadomain).len();
        }
    }
    let cats = [
        req.site.map(|s| s.cat),
        req.app.map(|a| a.cat),
        req.dooh.map(|d| d.venuetype),
    ];
    seen += cats
        .into_iter()
        .flatten()
        .map(|c| req.strs(c).len())
        .sum::<usize>();
    seen += req.user.map_or(0, |u| req.eids(u.eids).len());
    seen += req.schain().map_or(0, |s| req.schain_nodes(s.nodes).len());
    seen += req.ints(req.regs.gpp_sid).len();
    std::hint::black_box(seen);
}

/// Every request body of the corpus (standalone and inside Prebid fixtures), loaded once.
fn corpus_requests() -> &'static [Vec<u8>] {
    static BODIES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    BODIES.get_or_init(|| {
        let mut bodies = Vec::new();
        for entry in manifest() {
            match entry.kind.as_str() {
                "bidrequest" => bodies.push(read_body(&entry.path)),
                k if k.starts_with("pbs-fixture") => bodies.extend(pbs_bodies(&entry.path)),
                _ => {}
            }
        }
        bodies
    })
}

/// Both readers make the same of `body` (see `openrtb::compare_readers`), and what
/// the bid path's reader accepted resolves without a panic.
fn readers_agree_and_never_panic(body: &[u8]) {
    if let Err(disagreement) = compare_readers(body) {
        panic!("{disagreement}\nbody: {}", String::from_utf8_lossy(body));
    }
    let mut copy = body.to_vec();
    let mut parser = Parser::new();
    if let Ok(req) = parser.parse(&mut copy) {
        exercise(&req);
    };
}

/// Prefixes of each corpus body checked by the differential test: evenly spaced cuts,
/// which land inside every kind of token.
const PREFIXES_PER_BODY: usize = 48;

#[test]
fn both_readers_agree_on_every_corpus_file_and_on_cuts_of_each_request() {
    let (mut accepted, mut refused) = (0, 0);
    for entry in manifest() {
        let body = read_body(&entry.path);
        match compare_readers(&body) {
            Ok(Agreement::Accepted) => accepted += 1,
            Ok(Agreement::Refused(_)) => refused += 1,
            Err(disagreement) => panic!("{}: {disagreement}", entry.path),
        }
    }
    // The corpus holds both real requests and broken bodies: both paths are compared.
    assert!(
        accepted >= 100 && refused >= 1,
        "{accepted} accepted, {refused} refused"
    );
    let mut cuts_refused = 0;
    for body in corpus_requests() {
        let step = (body.len() / PREFIXES_PER_BODY).max(1);
        for cut in (0..body.len()).step_by(step) {
            match compare_readers(&body[..cut]) {
                Ok(Agreement::Refused(_)) => cuts_refused += 1,
                Ok(Agreement::Accepted) => {}
                Err(disagreement) => panic!("cut at {cut}: {disagreement}"),
            }
        }
    }
    assert!(
        cuts_refused > 1000,
        "only {cuts_refused} cut bodies refused"
    );
}

fn count_nodes(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count_nodes).sum(),
        Value::Object(o) => o.values().map(count_nodes).sum(),
        _ => 0,
    }
}

/// Replaces the `n`th node (pre-order) of `v` with `with`; returns true once done.
fn replace_nth(v: &mut Value, n: &mut usize, with: &Value) -> bool {
    if *n == 0 {
        *v = with.clone();
        return true;
    }
    *n -= 1;
    match v {
        Value::Array(a) => a.iter_mut().any(|c| replace_nth(c, n, with)),
        Value::Object(o) => o.values_mut().any(|c| replace_nth(c, n, with)),
        _ => false,
    }
}

/// JSON values an exchange might wrongly send where another type belongs.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        "[a-z0-9\\\"]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::vec(
                (
                    "(id|w|h|bidfloor|deals|nodes|ext|gdpr|schain|eids|uids|format)",
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn corpus_requests_with_bytes_overwritten_or_cut_read_alike_without_panic(
        pick in any::<Index>(),
        edits in prop::collection::vec((any::<Index>(), any::<u8>()), 0..8),
        cut in any::<Option<Index>>(),
    ) {
        let mut body = pick.get(corpus_requests()).clone();
        for (at, byte) in edits {
            let i = at.index(body.len());
            body[i] = byte;
        }
        if let Some(cut) = cut {
            body.truncate(cut.index(body.len()));
        }
        readers_agree_and_never_panic(&body);
    }

    #[test]
    fn corpus_requests_with_values_of_the_wrong_type_read_alike_without_panic(
        pick in any::<Index>(),
        edits in prop::collection::vec((any::<Index>(), arb_json()), 1..4),
    ) {
        let mut doc: Value = serde_json::from_slice(pick.get::<Vec<u8>>(corpus_requests())).expect("corpus JSON");
        for (at, with) in &edits {
            let mut n = at.index(count_nodes(&doc));
            replace_nth(&mut doc, &mut n, with);
        }
        let body = serde_json::to_vec(&doc).expect("re-encode");
        readers_agree_and_never_panic(&body);
    }
}
