//! One integration suite, run against both engines: every case below is a function of
//! the engine, instantiated once as `io_uring_engine::<case>` and once as
//! `tokio_engine::<case>`, so a failure names the engine.
//!
//! Each case runs the real [`bidder::bid::gate::BidService`] on the demo
//! configuration (or a small variant of it) behind a real engine on a loopback port,
//! and talks to it over real TCP sockets: statuses, limits, keep-alive, pipelining,
//! gzip both ways, the deadline, the partner limit, reload and shutdown.
//!
//! Every client read and write is bounded by [`harness::CLIENT_TIMEOUT`]; client
//! threads run in `thread::scope` (joined even when one fails); engines stop and join
//! their workers when dropped.

#[path = "engines/harness.rs"]
mod harness;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bidder::decide::NoBidReason;
use bidder::http::{HttpLimits, Status};
use harness::{
    banner, bidding, bidding_with, demo_text, edit, gunzip, gzip, post, unbiddable, Bidder, Client,
    EngineKind, EngineSettings, Gate, JsonBody, OpenOnDrop, Resp, Slow, CLIENT_TIMEOUT,
    SSP_B_SOURCE,
};
use serde::Deserialize;
use serde_json::json;
use testkit::eventually;

/// A request timeout no test waits for: a shutdown that returns before it did not wait
/// for the stalled request to time out. (No test bounds how fast anything is: a shared
/// CI host can stall the whole VM for a second, so speed is the benchmarks' business;
/// a hang ends in the client's own read timeout, which fails the test.)
const REQUEST_TIMEOUT_NEVER_REACHED_MS: u64 = 60_000;

/// Instantiates each case for both engines.
macro_rules! on_both_engines {
    ($($case:ident),+ $(,)?) => {
        mod io_uring_engine {
            $( #[test] fn $case() { super::$case(super::EngineKind::IoUring) } )+
        }
        mod tokio_engine {
            $( #[test] fn $case() { super::$case(super::EngineKind::Tokio) } )+
        }
    };
}

on_both_engines!(
    a_bid_request_gets_200_with_an_openrtb_bid_response,
    the_default_path_recognises_the_partner_by_source_address,
    a_request_nobody_bids_on_gets_204_without_a_body,
    a_partner_that_wants_nbr_gets_200_with_the_no_bid_reason,
    a_tc_string_refusing_everything_stops_consent_campaigns_over_http,
    flatbuffers_answers_carry_the_json_answers_to_a_reader_in_another_language,
    every_answer_states_its_partners_openrtb_version,
    malformed_json_and_missing_required_fields_get_400,
    unknown_paths_and_unknown_partners_get_404_and_keep_the_connection,
    http_refusals_get_their_status_and_close_the_connection,
    a_body_at_the_limit_is_served_and_one_byte_over_gets_413,
    a_gzip_body_inflating_over_the_limit_gets_413,
    a_stalled_head_or_body_gets_408_and_is_closed,
    an_idle_keep_alive_connection_is_closed_silently,
    connections_past_the_limit_get_503_and_a_freed_slot_is_reused,
    a_keep_alive_connection_serves_many_requests,
    pipelined_requests_are_answered_in_order,
    a_request_sent_one_byte_at_a_time_is_answered,
    slow_partial_heads_do_not_starve_fragmented_requests,
    connections_that_send_nothing_are_closed_after_the_first_byte_timeout,
    expect_100_continue_is_answered_before_the_body,
    gzip_request_bodies_are_inflated,
    gzip_responses_only_when_accepted_and_configured_for_the_partner,
    connection_close_is_honoured,
    a_decision_past_its_deadline_answers_204_and_releases_its_budget,
    the_partner_rate_limit_answers_204_past_the_burst_without_deciding,
    a_reload_serves_new_requests_on_the_new_generation_and_in_flight_on_the_old,
    shutdown_answers_in_flight_closes_idle_and_joins_in_bounded_time,
    shutdown_gives_up_on_a_stalled_request_after_the_grace_period,
    many_concurrent_connections_on_two_workers_are_all_served,
    latencies_reach_the_worker_metrics,
);

/// The OpenRTB 2.6 BidResponse fields a bid must carry; serde fails on a missing one.
#[derive(Debug, Deserialize)]
struct BidResponse {
    id: String,
    seatbid: Vec<SeatBid>,
    bidid: String,
    cur: String,
}

#[derive(Debug, Deserialize)]
struct SeatBid {
    seat: String,
    bid: Vec<Bid>,
}

#[derive(Debug, Deserialize)]
struct Bid {
    id: String,
    impid: String,
    price: f64,
    adm: String,
    adomain: Vec<String>,
    crid: String,
    cid: String,
    w: u32,
    h: u32,
    mtype: u8,
    nurl: String,
    burl: String,
    lurl: String,
}

/// Parses a 200's body strictly as a bid response to request `id` with one bid.
fn the_bid(resp: &Resp, id: &str) -> Bid {
    assert_eq!(resp.status, 200, "{resp:?}");
    let mut parsed: BidResponse = serde_json::from_slice(&resp.body).unwrap_or_else(|e| {
        panic!(
            "not an OpenRTB bid response ({e}): {}",
            String::from_utf8_lossy(&resp.body)
        )
    });
    assert_eq!(parsed.id, id);
    assert_eq!(parsed.cur, "USD");
    assert_eq!(parsed.seatbid.len(), 1);
    let seat = parsed.seatbid.pop().unwrap();
    assert_eq!(seat.seat, "Agency1");
    assert_eq!(seat.bid.len(), 1, "{:?}", seat.bid);
    let bid = seat.bid.into_iter().next().unwrap();
    assert_eq!(parsed.bidid, bid.id);
    bid
}

/// Banner bids on the demo config: acme-display's 2.00 CPM shaded to 90%.
const DEMO_PRICE: f64 = 1.8;
/// What one 1.80 CPM impression reserves: 1.80 / 1000 in micros.
const DEMO_RESERVATION_MICROS: i64 = 1_800;

fn a_bid_request_gets_200_with_an_openrtb_bid_response(engine: EngineKind) {
    let b = Bidder::demo(engine, &EngineSettings::default());
    let mut c = b.connect();
    let resp = c.post("/bid/exchange-a", banner("req-1").as_bytes());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.header("content-encoding"), None);
    assert!(!resp.closes());
    let bid = the_bid(&resp, "req-1");
    assert_eq!(bid.impid, "1");
    assert_eq!(bid.price, DEMO_PRICE);
    assert_eq!(
        (bid.cid.as_str(), bid.crid.as_str()),
        ("acme-display", "acme-mrec")
    );
    assert_eq!((bid.w, bid.h, bid.mtype), (300, 250, 1));
    assert_eq!(bid.adomain, ["acme.example"]);
    assert!(bid.adm.contains("acme.example"), "{}", bid.adm);
    for (url, kind) in [(&bid.nurl, "win"), (&bid.burl, "bill"), (&bid.lurl, "loss")] {
        let prefix = format!("http://127.0.0.1:9091/notice/{kind}?bid={}&", bid.id);
        assert!(url.starts_with(&prefix), "{url}");
        assert!(url.contains("&sig="), "{url}");
    }
    assert_eq!(
        b.reserved_micros(),
        DEMO_RESERVATION_MICROS,
        "the bid left with its price reserved"
    );
    let exchange_a = b.metrics[0].partner(Some(0));
    assert_eq!((exchange_a.requests.get(), exchange_a.bids.get()), (1, 1));
    b.shutdown().unwrap();
}

fn the_default_path_recognises_the_partner_by_source_address(engine: EngineKind) {
    let b = Bidder::demo(engine, &EngineSettings::default());
    let mut c = b.connect();
    // exchange-a owns 127.0.0.0/8 in the demo config.
    let bid = the_bid(&c.post("/openrtb2/bid", banner("r").as_bytes()), "r");
    assert_eq!(bid.price, DEMO_PRICE);
    let resp = c.post("/openrtb2/bid?from=query", unbiddable("n").as_bytes());
    assert_eq!(resp.status, 204);
    let exchange_a = b.metrics[0].partner(Some(0));
    assert_eq!(
        (
            exchange_a.requests.get(),
            exchange_a.bids.get(),
            exchange_a.no_bids.get()
        ),
        (2, 1, 1)
    );
    assert_eq!(b.metrics[0].partner(None).requests.get(), 0);
    b.shutdown().unwrap();
}

fn a_request_nobody_bids_on_gets_204_without_a_body(engine: EngineKind) {
    let b = Bidder::demo(engine, &EngineSettings::default());
    let mut c = b.connect();
    let resp = c.post("/bid/exchange-a", unbiddable("n1").as_bytes());
    assert_eq!(resp.status, 204, "{resp:?}");
    assert!(resp.body.is_empty());
    assert!(!resp.closes());
    assert_eq!(b.reserved_micros(), 0);
    assert_eq!(b.decisions(|d| d.no_bid_requests.get()), 1);
    // The connection is still good.
    the_bid(&c.post("/bid/exchange-a", banner("b1").as_bytes()), "b1");
    b.shutdown().unwrap();
}

fn a_partner_that_wants_nbr_gets_200_with_the_no_bid_reason(engine: EngineKind) {
    let b = Bidder::demo(engine, &EngineSettings::default());
    let mut c = b.connect_from(SSP_B_SOURCE);
    // ssp-b has `nbr_body = true`; a request that accepts only JPY cannot get our bid.
    let jpy = banner("j1").replace("\"imp\"", "\"cur\":[\"JPY\"],\"imp\"");
    let resp = c.post("/bid/ssp-b", jpy.as_bytes());
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let body = resp.json();
    let object = body.as_object().expect("an object");
    assert_eq!(
        object.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        BTreeSet::from(["id", "nbr"]),
        "{body}"
    );
    assert_eq!(body["id"], "j1");
    assert_eq!(body["nbr"], NoBidReason::CurrencyNotAccepted.nbr());
    // The same request from a partner without nbr_body is a plain 204.
    assert_eq!(c.post("/bid/exchange-a", jpy.as_bytes()).status, 204);
    assert_eq!(b.reserved_micros(), 0);
    b.shutdown().unwrap();
}

/// Consent decoded on the real path: the demo with every campaign needing consent,
/// a German request with GDPR applying and a TC string from IAB's reference encoder.
fn a_tc_string_refusing_everything_stops_consent_campaigns_over_http(engine: EngineKind) {
    let strings: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/consent/strings.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let tc = |name: &str| {
        let found = strings["tcf"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name);
        found.unwrap()["string"].as_str().unwrap().to_owned()
    };
    let text = demo_text()
        .replace("  require_consent = true\n", "")
        .replace(
            "[campaign.targeting]",
            "[campaign.targeting]\n  require_consent = true",
        );
    let b = Bidder::start(engine, &EngineSettings::default(), bidding(&text));
    let mut c = b.connect_from(SSP_B_SOURCE);
    let request = |id: &str, consent: &str| {
        banner(id).replace(
            r#""site""#,
            &format!(
                r#""regs":{{"gdpr":1}},"user":{{"consent":"{consent}"}},"device":{{"geo":{{"country":"DEU"}}}},"site""#
            ),
        )
    };
    let refused = c.post("/bid/ssp-b", request("r1", &tc("refuse_all")).as_bytes());
    assert_eq!(refused.status, 200, "{refused:?}");
    assert_eq!(
        refused.json()["nbr"],
        NoBidReason::NoVendorConsent.nbr(),
        "{refused:?}"
    );
    let granted = c.post("/bid/ssp-b", request("r2", &tc("all_granted")).as_bytes());
    assert!(granted.json()["seatbid"].is_array(), "{granted:?}");
    b.shutdown().unwrap();
}

/// The bodies, read by Python code that `flatc --python` generates from our schema
/// (with Debian's python3-flatbuffers runtime, hence the system interpreter): a reader
/// that shares no Rust with us. One JSON object per body, absent fields left out.
fn decoded_in_python(bodies: &[&[u8]]) -> Vec<serde_json::Value> {
    let dir = testkit::TempDir::new("flatbuffers-python");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let flatc = std::env::var_os("FLATC").unwrap_or_else(|| "flatc".into());
    let generated = std::process::Command::new(&flatc)
        .arg("--python")
        .arg("-o")
        .arg(&dir.0)
        .arg(root.join("schema/bid_response.fbs"))
        .status()
        .expect("flatc runs (`cargo xtask setup` installs it)");
    assert!(generated.success(), "flatc --python failed");
    let files: Vec<_> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let path = dir.0.join(format!("{i}.brsp"));
            std::fs::write(&path, body).unwrap();
            path
        })
        .collect();
    let out = std::process::Command::new("/usr/bin/python3")
        .arg(root.join("tests/flatbuffers/decode.py"))
        .args(&files)
        .env("PYTHONPATH", &dir.0)
        .output()
        .expect("python3 runs (`cargo xtask setup` installs python3-flatbuffers)");
    assert!(
        out.status.success(),
        "the Python reader failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// FlatBuffers on the wire, when a request's `Accept` asks for them or the partner is
/// configured for them: the same bid as the JSON answer (its own id and notice URLs),
/// and the same no-bid body, as a reader in another language decodes them.
fn flatbuffers_answers_carry_the_json_answers_to_a_reader_in_another_language(engine: EngineKind) {
    let text = edit(
        &three_partner_text(),
        "name = \"ssp-c\"\n",
        "name = \"ssp-c\"\nresponse_format = \"flatbuffers\"\n",
    );
    let b = Bidder::start(engine, &EngineSettings::default(), bidding(&text));
    let accept = "Accept: application/json;q=0.5, application/x-flatbuffers\r\n";
    let mut c = b.connect();
    let json = c.post("/bid/exchange-a", banner("req-j").as_bytes());
    let json_bid = the_bid(&json, "req-j");
    let asked = c.request(&post("/bid/exchange-a", accept, banner("req-f").as_bytes()));
    let configured = b
        .connect_from("127.0.0.2".parse().unwrap())
        .post("/bid/ssp-c", banner("req-c").as_bytes());
    let jpy = banner("j1").replace("\"imp\"", "\"cur\":[\"JPY\"],\"imp\"");
    let nobid = b
        .connect_from(SSP_B_SOURCE)
        .request(&post("/bid/ssp-b", accept, jpy.as_bytes()));
    for resp in [&asked, &configured, &nobid] {
        assert_eq!(resp.status, 200, "{resp:?}");
        assert_eq!(
            resp.header("content-type"),
            Some("application/x-flatbuffers"),
            "{resp:?}"
        );
    }
    let decoded = decoded_in_python(&[&asked.body, &configured.body, &nobid.body]);
    for (r, id) in decoded[..2].iter().zip(["req-f", "req-c"]) {
        assert_eq!((&r["id"], &r["cur"]), (&json!(id), &json!("USD")), "{r}");
        let seatbid = r["seatbid"].as_array().expect("seatbid");
        assert_eq!(seatbid.len(), 1, "{r}");
        assert_eq!(seatbid[0]["seat"], "Agency1");
        let bid = &seatbid[0]["bid"][0];
        assert_eq!(r["bidid"], bid["id"]);
        assert_ne!(bid["id"], json!(json_bid.id), "each bid has its own id");
        let same = json!({
            "impid": json_bid.impid, "price": json_bid.price, "adm": json_bid.adm,
            "adomain": json_bid.adomain, "crid": json_bid.crid, "cid": json_bid.cid,
            "w": json_bid.w, "h": json_bid.h, "mtype": json_bid.mtype,
        });
        for (field, want) in same.as_object().unwrap() {
            assert_eq!(&bid[field], want, "{field} in {r}");
        }
        for (url, kind) in [("nurl", "win"), ("burl", "bill"), ("lurl", "loss")] {
            let url = bid[url].as_str().expect("a notice URL");
            let prefix = format!(
                "http://127.0.0.1:9091/notice/{kind}?bid={}&",
                bid["id"].as_str().unwrap()
            );
            assert!(url.starts_with(&prefix) && url.contains("&sig="), "{url}");
        }
    }
    assert_eq!(
        decoded[2],
        json!({"id": "j1", "nbr": NoBidReason::CurrencyNotAccepted.nbr()})
    );
    assert_eq!(b.reserved_micros(), 3 * DEMO_RESERVATION_MICROS);
    // Per partner (exchange-a, ssp-b, ssp-c): exchange-a's JSON answer is not counted.
    let flatbuffers = |slot: u16| -> u64 {
        b.metrics
            .iter()
            .map(|m| m.partner(Some(slot)).flatbuffers_answers.get())
            .sum()
    };
    assert_eq!([0, 1, 2].map(flatbuffers), [1, 1, 1]);
    b.shutdown().unwrap();
}

/// The demo configuration with a third partner, ssp-c, on OpenRTB 2.5 without
/// `nbr_body` (so its no-bids are 204s), recognised on the default path from
/// 127.0.0.2; exchange-a (2.6) narrowed to 127.0.0.1, leaving 127.0.0.3 to no partner.
fn three_partner_text() -> String {
    let text = edit(
        &demo_text(),
        r#"cidrs = ["127.0.0.0/8", "::1/128"]"#,
        r#"cidrs = ["127.0.0.1/32", "::1/128"]"#,
    );
    edit(
        &text,
        "gzip_responses = true\n",
        "gzip_responses = true\n\n[[partner]]\nname = \"ssp-c\"\ncidrs = [\"127.0.0.2/32\"]\n\
         qps_limit = 20_000\nburst = 2_000\nopenrtb_version = \"2.5\"\n",
    )
}

fn every_answer_states_its_partners_openrtb_version(engine: EngineKind) {
    let b = Bidder::start(
        engine,
        &EngineSettings::default(),
        bidding(&three_partner_text()),
    );
    let exchange_a = IpAddr::from([127, 0, 0, 1]);
    let ssp_c = IpAddr::from([127, 0, 0, 2]);
    let nobody = IpAddr::from([127, 0, 0, 3]);
    // One keep-alive connection per source, so that on ssp-c's a 2.6 answer follows 2.5
    // ones: the version does not stick to the worker's buffers.
    let mut clients: Vec<(IpAddr, Client)> = Vec::new();
    let mut check = |source: IpAddr, raw: Vec<u8>, status: u16, version: &str| {
        if !clients.iter().any(|(s, _)| *s == source) {
            clients.push((source, b.connect_from(source)));
        }
        let c = &mut clients.iter_mut().find(|(s, _)| *s == source).unwrap().1;
        let resp = c.request(&raw);
        let case = String::from_utf8_lossy(&raw[..raw.len().min(40)]);
        assert_eq!(resp.status, status, "{source} {case:?}: {resp:?}");
        assert_eq!(
            resp.header("x-openrtb-version"),
            Some(version),
            "{source} {case:?}"
        );
    };
    let bid = |path: &str| post(path, "", banner("r").as_bytes());
    let no_bid = |path: &str| post(path, "", unbiddable("r").as_bytes());
    let invalid = |path: &str| post(path, "", b"{");
    check(ssp_c, bid("/bid/ssp-c"), 200, "2.5");
    check(ssp_c, no_bid("/bid/ssp-c"), 204, "2.5");
    check(ssp_c, invalid("/bid/ssp-c"), 400, "2.5");
    check(ssp_c, bid("/openrtb2/bid"), 200, "2.5");
    check(ssp_c, no_bid("/openrtb2/bid"), 204, "2.5");
    // exchange-a's path from outside exchange-a's networks: refused.
    check(ssp_c, no_bid("/bid/exchange-a"), 403, "2.6");
    check(ssp_c, bid("/bid/nobody"), 404, "2.6");
    check(ssp_c, bid("/nope"), 404, "2.6");
    check(exchange_a, bid("/bid/exchange-a"), 200, "2.6");
    check(exchange_a, no_bid("/bid/exchange-a"), 204, "2.6");
    check(exchange_a, invalid("/bid/exchange-a"), 400, "2.6");
    check(nobody, no_bid("/openrtb2/bid"), 204, "2.6");
    // ssp-b (2.5) gzips its bids and answers no-bids with an nbr body.
    let gzipped = post(
        "/bid/ssp-b",
        "Accept-Encoding: gzip\r\n",
        banner("g").as_bytes(),
    );
    check(SSP_B_SOURCE, gzipped, 200, "2.5");
    let jpy = banner("j").replace("\"imp\"", "\"cur\":[\"JPY\"],\"imp\"");
    check(
        SSP_B_SOURCE,
        post("/bid/ssp-b", "", jpy.as_bytes()),
        200,
        "2.5",
    );
    // Malformed HTTP is refused before the service could recognise the partner.
    let resp = b
        .connect_from(ssp_c)
        .request(b"POST /bid/ssp-c HTTP/1.1\r\nContent-Length: x\r\n\r\n");
    assert_eq!((resp.status, resp.closes()), (400, true), "{resp:?}");
    assert_eq!(resp.header("x-openrtb-version"), Some("2.6"));
    b.shutdown().unwrap();
}

fn malformed_json_and_missing_required_fields_get_400(engine: EngineKind) {
    let b = Bidder::demo(engine, &EngineSettings::default());
    let mut c = b.connect();
    let bodies: [&[u8]; 6] = [
        b"{not json",
        b"",
        b"[]",
        br#"{"id":"x"}"#,
        br#"{"id":"x","imp":[]}"#,
        br#"{"imp":[{"id":"1","banner":{"w":300,"h":250}}]}"#,
    ];
    for body in bodies {
        let resp = c.post("/bid/exchange-a", body);
        let shown = String::from_utf8_lossy(body);
        assert_eq!(resp.status, 400, "{shown}");
        assert!(resp.body.is_empty(), "{shown}");
        assert!(!resp.closes(), "{shown}: a bad body keeps the connection");
    }
    assert_eq!(
        b.decisions(|d| d.no_bid_imps[NoBidReason::InvalidRequest as usize].get()),
        bodies.len() as u64
    );
    assert_eq!(b.responses(Status::BadRequest), bodies.len() as u64);
    the_bid(&c.post("/bid/exchange-a", banner("ok").as_bytes()), "ok");
    assert_eq!(
        b.reserved_micros(),
        DEMO_RESERVATION_MICROS,
        "nothing reserved for refused bodies"
    );
    b.shutdown().unwrap();
}

fn unknown_paths_and_unknown_partners_get_404_and_keep_the_connection(engine: EngineKind) {
    let b = Bidder::demo(engine, &EngineSettings::default());
    let mut c = b.connect();
    for path in [
        "/nope",
        "/bid/nobody",
        "/bid/",
        "/bid/a/b",
        "/openrtb2/bid/x",
    ] {
        let resp = c.post(path, banner("x").as_bytes());
        assert_eq!(resp.status, 404, "{path}");
        assert!(!resp.closes(), "{path}");
    }
    assert_eq!(
        b.service
            .gate
            .unknown_partner
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "only /bid/nobody names a partner"
    );
    assert_eq!(b.responses(Status::NotFound), 5);
    the_bid(&c.post("/bid/exchange-a", banner("ok").as_bytes()), "ok");
    b.shutdown().unwrap();
}

fn http_refusals_get_their_status_and_close_the_connection(engine: EngineKind) {
    let b = Bidder::demo(engine, &EngineSettings::default());
    let limits = EngineSettings::default().limits;
    let many_headers: String = (0..=limits.max_headers)
        .map(|i| format!("X-H{i}: v\r\n"))
        .collect();
    let long_header = format!("X-Pad: {}\r\n", "p".repeat(limits.max_header_bytes));
    let body = banner("r");
    let cases: [(&str, Vec<u8>, Status); 7] = [
        (
            "GET",
            b"GET /openrtb2/bid HTTP/1.1\r\nHost: b\r\n\r\n".to_vec(),
            Status::MethodNotAllowed,
        ),
        (
            "PUT",
            b"PUT /bid/exchange-a HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}".to_vec(),
            Status::MethodNotAllowed,
        ),
        (
            "malformed head",
            b"POST /bid/exchange-a HTTP/1.1\r\nno colon here\r\n\r\n".to_vec(),
            Status::BadRequest,
        ),
        (
            "unknown content-encoding",
            post(
                "/bid/exchange-a",
                "Content-Encoding: br\r\n",
                body.as_bytes(),
            ),
            Status::UnsupportedMediaType,
        ),
        (
            "unknown transfer-encoding",
            b"POST /bid/exchange-a HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(),
            Status::NotImplemented,
        ),
        (
            "too many header fields",
            post("/bid/exchange-a", &many_headers, body.as_bytes()),
            Status::HeaderFieldsTooLarge,
        ),
        (
            "header section too long",
            post("/bid/exchange-a", &long_header, body.as_bytes()),
            Status::HeaderFieldsTooLarge,
        ),
    ];
    for (name, raw, status) in &cases {
        let mut c = b.connect();
        let resp = c.request(raw);
        assert_eq!(resp.status, status.code(), "{name}");
        assert!(resp.closes(), "{name}: says it closes");
        assert_eq!(resp.header("x-openrtb-version"), Some("2.6"), "{name}");
        c.expect_closed();
    }
    for status in [Status::MethodNotAllowed, Status::HeaderFieldsTooLarge] {
        assert_eq!(b.responses(status), 2, "{status:?}");
    }
    assert_eq!(b.decisions(|d| d.requests.get()), 0, "nothing was decided");
    b.shutdown().unwrap();
}

/// `banner(id)` padded with trailing whitespace to exactly `len` bytes.
fn padded_banner(id: &str, len: usize) -> Vec<u8> {
    let mut body = banner(id).into_bytes();
    assert!(body.len() <= len);
    body.resize(len, b' ');
    body
}

fn small_body_limits() -> EngineSettings {
    EngineSettings {
        limits: HttpLimits {
            max_body_bytes: 4096,
            max_decompressed_body_bytes: 16 * 1024,
            ..EngineSettings::default().limits
        },
        ..EngineSettings::default()
    }
}

fn a_body_at_the_limit_is_served_and_one_byte_over_gets_413(engine: EngineKind) {
    let settings = small_body_limits();
    let limit = settings.limits.max_body_bytes;
    let b = Bidder::demo(engine, &settings);
    let mut c = b.connect();
    the_bid(
        &c.post("/bid/exchange-a", &padded_banner("at", limit)),
        "at",
    );

    let resp = c.post("/bid/exchange-a", &padded_banner("over", limit + 1));
    assert_eq!((resp.status, resp.closes()), (413, true));
    c.expect_closed();

    // Refused from the Content-Length alone, before any body arrives.
    let mut c = b.connect();
    let resp = c.request(b"POST /bid/exchange-a HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n");
    assert_eq!((resp.status, resp.closes()), (413, true));
    c.expect_closed();
    assert_eq!(b.responses(Status::PayloadTooLarge), 2);
    b.shutdown().unwrap();
}

fn a_gzip_body_inflating_over_the_limit_gets_413(engine: EngineKind) {
    let settings = small_body_limits();
    let limit = settings.limits.max_decompressed_body_bytes;
    let b = Bidder::demo(engine, &settings);
    let gz = "Content-Encoding: gzip\r\n";
    let mut c = b.connect();
    let at = gzip(&padded_banner("at", limit));
    assert!(at.len() < settings.limits.max_body_bytes);
    the_bid(&c.request(&post("/bid/exchange-a", gz, &at)), "at");

    let over = gzip(&padded_banner("over", limit + 1));
    let resp = c.request(&post("/bid/exchange-a", gz, &over));
    assert_eq!((resp.status, resp.closes()), (413, true));
    c.expect_closed();

    // A bomb: 1 KiB on the wire, a megabyte inflated.
    let bomb = gzip(&vec![b' '; 1 << 20]);
    assert!(bomb.len() < settings.limits.max_body_bytes);
    let mut c = b.connect();
    let resp = c.request(&post("/bid/exchange-a", gz, &bomb));
    assert_eq!((resp.status, resp.closes()), (413, true));
    c.expect_closed();
    assert_eq!(b.responses(Status::PayloadTooLarge), 2);
    b.shutdown().unwrap();
}

fn a_stalled_head_or_body_gets_408_and_is_closed(engine: EngineKind) {
    let b = Bidder::demo(
        engine,
        &EngineSettings {
            request_timeout_ms: 200,
            ..EngineSettings::default()
        },
    );
    let stalls: [&[u8]; 2] = [
        b"POST /bid/exchange-a HTTP/1.1\r\nContent-Le",
        b"POST /bid/exchange-a HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"id\":",
    ];
    thread::scope(|s| {
        for stall in stalls {
            let b = &b;
            s.spawn(move || {
                let mut c = b.connect();
                let started = Instant::now();
                let resp = c.request(stall);
                let waited = started.elapsed();
                assert_eq!((resp.status, resp.closes()), (408, true));
                assert!(
                    waited >= Duration::from_millis(190),
                    "answered after {waited:?}, before the 200 ms timeout"
                );
                c.expect_closed();
            });
        }
    });
    assert_eq!(b.counter("bidder_request_timeouts_total"), 2);
    assert_eq!(b.responses(Status::RequestTimeout), 2);
    b.shutdown().unwrap();
}

fn an_idle_keep_alive_connection_is_closed_silently(engine: EngineKind) {
    let b = Bidder::demo(
        engine,
        &EngineSettings {
            idle_timeout_ms: 300,
            ..EngineSettings::default()
        },
    );
    let mut c = b.connect();
    the_bid(&c.post("/bid/exchange-a", banner("a").as_bytes()), "a");
    let started = Instant::now();
    c.expect_closed();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(290),
        "closed after {waited:?}, before the 300 ms idle timeout"
    );
    eventually(CLIENT_TIMEOUT, "the close to be counted", || {
        b.counter("bidder_connections_open") == 0
    });
    assert_eq!(b.counter("bidder_idle_timeouts_total"), 1);
    b.shutdown().unwrap();
}

fn connections_past_the_limit_get_503_and_a_freed_slot_is_reused(engine: EngineKind) {
    let b = Bidder::demo(
        engine,
        &EngineSettings {
            max_connections: 2,
            ..EngineSettings::default()
        },
    );
    let mut held: Vec<Client> = (0..2).map(|_| b.connect()).collect();
    for (i, c) in held.iter_mut().enumerate() {
        let id = format!("h{i}");
        the_bid(&c.post("/bid/exchange-a", banner(&id).as_bytes()), &id);
    }
    let mut extra = b.connect();
    let resp = extra.read_response();
    assert_eq!((resp.status, resp.closes()), (503, true), "{resp:?}");
    assert_eq!(resp.header("x-openrtb-version"), Some("2.6"));
    extra.expect_closed();
    // A client that sends its request at once still reads the 503.
    let mut eager = b.connect();
    let resp = eager.request(&post("/bid/exchange-a", "", banner("e").as_bytes()));
    assert_eq!((resp.status, resp.closes()), (503, true), "{resp:?}");
    // Closed after the 503, by EOF or by a reset for the request left unread.
    assert!(eager.read_until_closed().is_empty());
    assert_eq!(b.counter("bidder_connections_shed_total"), 2);
    assert_eq!(b.responses(Status::ServiceUnavailable), 2);
    assert_eq!(
        b.decisions(|d| d.requests.get()),
        2,
        "shed requests are not decided"
    );

    drop(held.pop());
    eventually(CLIENT_TIMEOUT, "the slot to free up", || {
        b.counter("bidder_connections_open") == 1
    });
    let mut again = b.connect();
    the_bid(
        &again.post("/bid/exchange-a", banner("again").as_bytes()),
        "again",
    );
    the_bid(
        &held[0].post("/bid/exchange-a", banner("h0b").as_bytes()),
        "h0b",
    );
    b.shutdown().unwrap();
}

fn a_keep_alive_connection_serves_many_requests(engine: EngineKind) {
    let b = Bidder::demo(engine, &EngineSettings::default());
    let mut c = b.connect();
    for i in 0..30 {
        let id = format!("k{i}");
        let resp = c.post("/bid/exchange-a", banner(&id).as_bytes());
        assert!(!resp.closes());
        the_bid(&resp, &id);
    }
    assert_eq!(b.counter("bidder_connections_accepted_total"), 1);
    assert_eq!(b.responses(Status::Ok), 30);
    b.shutdown().unwrap();
}

fn pipelined_requests_are_answered_in_order(engine: EngineKind) {
    let b = Bidder::demo(engine, &EngineSettings::default());
    // From ssp-b's network, which is inside exchange-a's too: both paths are served.
    let mut c = b.connect_from(SSP_B_SOURCE);
    let jpy = |id: &str| banner(id).replace("\"imp\"", "\"cur\":[\"JPY\"],\"imp\"");
    let mut batch = Vec::new();
    for i in 0..40 {
        let id = format!("p{i}");
        batch.extend(match i % 5 {
            0 => post("/bid/exchange-a", "", banner(&id).as_bytes()),
            1 => post("/bid/exchange-a", "", unbiddable(&id).as_bytes()),
            2 => post("/bid/ssp-b", "", jpy(&id).as_bytes()),
            3 => post("/bid/exchange-a", "", b"{\"id\":"),
            _ => post("/nope", "", banner(&id).as_bytes()),
        });
    }
    c.send(&batch);
    for i in 0..40 {
        let id = format!("p{i}");
        let resp = c.read_response();
        match i % 5 {
            0 => assert_eq!(the_bid(&resp, &id).price, DEMO_PRICE),
            1 => assert_eq!(resp.status, 204, "{id}"),
            2 => assert_eq!((resp.status, resp.json()["id"].as_str()), (200, Some(&*id))),
            3 => assert_eq!(resp.status, 400, "{id}"),
            _ => assert_eq!(resp.status, 404, "{id}"),
        }
    }
    the_bid(
        &c.post("/bid/exchange-a", banner("after").as_bytes()),
        "after",
    );
    assert_eq!(b.counter("bidder_connections_accepted_total"), 1);
    b.shutdown().unwrap();
}

fn a_request_sent_one_byte_at_a_time_is_answered(engine: EngineKind) {
    let b = Bidder::demo(engine, &EngineSettings::default());
    let mut c = b.connect();
    let mut raw = post("/bid/exchange-a", "", banner("one").as_bytes());
    let chunked = banner("two");
    let (head, tail) = chunked.split_at(30);
    raw.extend(
        format!(
            "POST /bid/exchange-a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{head}\r\n{:x}\r\n{tail}\r\n0\r\n\r\n",
            head.len(),
            tail.len()
        )
        .into_bytes(),
    );
    raw.extend(post("/bid/exchange-a", "", unbiddable("three").as_bytes()));
    for byte in &raw {
        c.send(std::slice::from_ref(byte));
        thread::sleep(Duration::from_micros(50));
    }
    the_bid(&c.read_response(), "one");
    the_bid(&c.read_response(), "two");
    assert_eq!(c.read_response().status, 204);
    b.shutdown().unwrap();
}

/// A slowloris: connections that send part of a head and stall, reconnecting as soon
/// as they are closed, while honest requests arrive in two writes (as a body over one
/// segment does on a real network). Partial requests live in each connection's own
/// memory, so the slow ones cannot take what the honest ones need.
fn slow_partial_heads_do_not_starve_fragmented_requests(engine: EngineKind) {
    const SLOW: usize = 140;
    const HONEST: usize = 100;
    let b = Bidder::demo(
        engine,
        &EngineSettings {
            max_connections: 512,
            request_timeout_ms: 1_000,
            ..EngineSettings::default()
        },
    );
    let stop = std::sync::atomic::AtomicBool::new(false);
    let answered = thread::scope(|s| {
        for _ in 0..SLOW {
            let (b, stop) = (&b, &stop);
            s.spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut c = TcpStream::connect(b.addr).expect("connect");
                    c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                    let _ = c.write_all(b"POST /bid/exchange-a HTTP/1.1\r\nHost: x\r\n");
                    let mut sink = [0u8; 512];
                    // Held until the bidder closes it (408), then again at once.
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        match c.read(&mut sink) {
                            Ok(0) => break,
                            Ok(_) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                            Err(_) => break,
                        }
                    }
                }
            });
        }
        eventually(
            CLIENT_TIMEOUT,
            "every slow connection to hold a slot",
            || b.counter("bidder_connections_open") >= SLOW as u64,
        );
        let mut answered = 0;
        for i in 0..HONEST {
            let id = format!("f{i}");
            let raw = post(
                "/bid/exchange-a",
                "Connection: close\r\n",
                banner(&id).as_bytes(),
            );
            let (first, second) = raw.split_at(raw.len() - 40);
            let mut c = b.connect();
            c.send(first);
            thread::sleep(Duration::from_millis(5));
            c.send(second);
            let bytes = c.read_until_closed();
            if bytes.starts_with(b"HTTP/1.1 200 ")
                && bytes.windows(id.len()).any(|w| w == id.as_bytes())
            {
                answered += 1;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        answered
    });
    assert!(
        answered * 100 >= HONEST * 99,
        "{answered} of {HONEST} fragmented requests answered with a bid"
    );
    b.shutdown().unwrap();
}

fn connections_that_send_nothing_are_closed_after_the_first_byte_timeout(engine: EngineKind) {
    let b = Bidder::demo(
        engine,
        &EngineSettings {
            max_connections: 4,
            first_byte_timeout_ms: 300,
            ..EngineSettings::default()
        },
    );
    // A client that has sent a request is past the first byte: it stays for the idle
    // timeout (10 s here), across the first-byte timeout.
    let mut busy = b.connect();
    the_bid(&busy.post("/bid/exchange-a", banner("b1").as_bytes()), "b1");
    let started = Instant::now();
    let mut silent: Vec<Client> = (0..3).map(|_| b.connect()).collect();
    eventually(
        CLIENT_TIMEOUT,
        "the silent connections to hold slots",
        || b.counter("bidder_connections_open") == 4,
    );
    let mut shed = b.connect();
    assert_eq!(shed.read_response().status, 503, "every slot is taken");
    for c in &mut silent {
        c.expect_closed();
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(290),
        "closed after {waited:?}, before the 300 ms first-byte timeout"
    );
    assert_eq!(b.counter("bidder_first_byte_timeouts_total"), 3);
    assert_eq!(b.counter("bidder_idle_timeouts_total"), 0);
    let mut next = b.connect();
    the_bid(&next.post("/bid/exchange-a", banner("n").as_bytes()), "n");
    the_bid(&busy.post("/bid/exchange-a", banner("b2").as_bytes()), "b2");
    b.shutdown().unwrap();
}

fn expect_100_continue_is_answered_before_the_body(engine: EngineKind) {
    let b = Bidder::demo(engine, &EngineSettings::default());
    let mut c = b.connect();
    let body = banner("c1");
    c.send(
        format!(
            "POST /bid/exchange-a HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(c.read_response().status, 100);
    c.send(body.as_bytes());
    the_bid(&c.read_response(), "c1");
    b.shutdown().unwrap();
}

fn gzip_request_bodies_are_inflated(engine: EngineKind) {
    let b = Bidder::demo(engine, &EngineSettings::default());
    let mut c = b.connect();
    for id in ["z1", "z2"] {
        let body = gzip(banner(id).as_bytes());
        let resp = c.request(&post(
            "/bid/exchange-a",
            "Content-Encoding: gzip\r\n",
            &body,
        ));
        assert_eq!(the_bid(&resp, id).price, DEMO_PRICE);
    }
    let broken = &gzip(banner("z3").as_bytes())[..20];
    let resp = c.request(&post(
        "/bid/exchange-a",
        "Content-Encoding: gzip\r\n",
        broken,
    ));
    assert_eq!(
        (resp.status, resp.closes()),
        (400, true),
        "a truncated stream"
    );
    b.shutdown().unwrap();
}

fn gzip_responses_only_when_accepted_and_configured_for_the_partner(engine: EngineKind) {
    let b = Bidder::demo(engine, &EngineSettings::default());
    let mut c = b.connect_from(SSP_B_SOURCE);
    let accepts = "Accept-Encoding: gzip, deflate\r\n";
    // ssp-b has gzip_responses = true, and the client accepts it.
    let resp = c.request(&post("/bid/ssp-b", accepts, banner("g1").as_bytes()));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-encoding"), Some("gzip"), "{resp:?}");
    let plain = Resp {
        body: gunzip(&resp.body),
        ..resp
    };
    assert!(plain.body.len() > plain.header("content-length").unwrap().parse().unwrap());
    assert_eq!(the_bid(&plain, "g1").price, DEMO_PRICE);
    // ssp-b, but the client does not accept gzip.
    let resp = c.post("/bid/ssp-b", banner("g2").as_bytes());
    assert_eq!(resp.header("content-encoding"), None);
    the_bid(&resp, "g2");
    // exchange-a is not configured for gzip, whatever the client accepts.
    let resp = c.request(&post("/bid/exchange-a", accepts, banner("g3").as_bytes()));
    assert_eq!(resp.header("content-encoding"), None);
    the_bid(&resp, "g3");
    b.shutdown().unwrap();
}

fn connection_close_is_honoured(engine: EngineKind) {
    let b = Bidder::demo(engine, &EngineSettings::default());
    let mut c = b.connect();
    let resp = c.request(&post(
        "/bid/exchange-a",
        "Connection: close\r\n",
        banner("c").as_bytes(),
    ));
    assert!(resp.closes(), "{resp:?}");
    the_bid(&resp, "c");
    c.expect_closed();

    // Requests pipelined behind a `Connection: close` are not answered.
    let mut c = b.connect();
    let mut raw = post("/bid/exchange-a", "", banner("p1").as_bytes());
    raw.extend(post(
        "/bid/exchange-a",
        "Connection: close\r\n",
        banner("p2").as_bytes(),
    ));
    raw.extend(post("/bid/exchange-a", "", banner("p3").as_bytes()));
    c.send(&raw);
    the_bid(&c.read_response(), "p1");
    let resp = c.read_response();
    assert!(resp.closes());
    the_bid(&resp, "p2");
    c.expect_closed();

    // HTTP/1.0 closes unless asked to keep alive.
    let body = banner("h10");
    let raw10 = |extra: &str| {
        let mut raw = format!(
            "POST /bid/exchange-a HTTP/1.0\r\n{extra}Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(body.as_bytes());
        raw
    };
    let mut c = b.connect();
    let resp = c.request(&raw10(""));
    assert!(resp.closes());
    the_bid(&resp, "h10");
    c.expect_closed();
    let mut c = b.connect();
    let resp = c.request(&raw10("Connection: keep-alive\r\n"));
    assert_eq!(resp.header("connection"), Some("keep-alive"));
    the_bid(&resp, "h10");
    the_bid(&c.request(&raw10("Connection: keep-alive\r\n")), "h10");
    b.shutdown().unwrap();
}

fn a_decision_past_its_deadline_answers_204_and_releases_its_budget(engine: EngineKind) {
    // The demo's own 8 ms cap; each candidate campaign's strategy takes 20 ms.
    let text = std::fs::read_to_string(harness::demo_path()).unwrap();
    assert!(text.contains("deadline_cap_ms = 8\n"));
    let slow = bidding_with(&text, |_| Arc::new(Slow(Duration::from_millis(20))));
    let b = Bidder::start(engine, &EngineSettings::default(), slow);
    let mut c = b.connect();
    let resp = c.post("/bid/exchange-a", banner("late").as_bytes());
    assert_eq!(resp.status, 204, "{resp:?}");
    assert_eq!(b.decisions(|d| d.deadline_missed.get()), 1);
    assert_eq!(
        b.reserved_micros(),
        0,
        "the late bid's reservation was released"
    );
    assert!(
        b.service.current().bidding.inbox.is_empty(),
        "nothing went to the ledger"
    );
    assert_eq!(b.metrics[0].partner(Some(0)).no_bids.get(), 1);
    b.shutdown().unwrap();
}

fn the_partner_rate_limit_answers_204_past_the_burst_without_deciding(engine: EngineKind) {
    let text = edit(
        &demo_text(),
        "qps_limit = 50_000\nburst = 5_000",
        "qps_limit = 1\nburst = 3",
    );
    let gate = Arc::new(Gate::default());
    let strategy = Arc::clone(&gate);
    let b = Bidder::start(
        engine,
        &EngineSettings::default(),
        bidding_with(&text, move |_| strategy),
    );
    let mut c = b.connect();
    for i in 0..3 {
        let id = format!("in{i}");
        the_bid(&c.post("/bid/exchange-a", banner(&id).as_bytes()), &id);
    }
    let decided = gate.calls();
    assert!(decided >= 3);
    for i in 0..3 {
        let resp = c.post("/bid/exchange-a", banner(&format!("over{i}")).as_bytes());
        assert_eq!(resp.status, 204, "request {} past a burst of 3", i + 4);
    }
    assert_eq!(
        gate.calls(),
        decided,
        "refused requests never reach a decision"
    );
    assert_eq!(
        b.decisions(|d| d.no_bid_imps[NoBidReason::PartnerRefused as usize].get()),
        3
    );
    assert_eq!(b.reserved_micros(), 3 * DEMO_RESERVATION_MICROS);
    // Another partner has its own bucket.
    let mut ssp_b = b.connect_from(SSP_B_SOURCE);
    the_bid(
        &ssp_b.post("/bid/ssp-b", banner("other").as_bytes()),
        "other",
    );
    b.shutdown().unwrap();
}

fn a_reload_serves_new_requests_on_the_new_generation_and_in_flight_on_the_old(engine: EngineKind) {
    // The gate holds a decision for milliseconds; the deadline (960 ms: tmax 1000
    // less the 40 ms allowance) leaves it room on a loaded machine.
    let text = demo_text();
    let raised = bidding(&edit(
        &text,
        "base_cpm_micros = 2_000_000",
        "base_cpm_micros = 3_000_000",
    ));
    let gate = Arc::new(Gate::default());
    let strategy = Arc::clone(&gate);
    let b = Bidder::start(
        engine,
        &EngineSettings {
            workers: 2,
            ..EngineSettings::default()
        },
        bidding_with(&text, move |_| strategy),
    );
    let _open = OpenOnDrop(Arc::clone(&gate));
    let mut before = b.connect();
    assert_eq!(
        the_bid(
            &before.post("/bid/exchange-a", banner("g1").as_bytes()),
            "g1"
        )
        .price,
        DEMO_PRICE
    );

    gate.arm();
    let mut in_flight = b.connect();
    in_flight.send(&post("/bid/exchange-a", "", banner("old").as_bytes()));
    assert!(gate.wait_entered(CLIENT_TIMEOUT), "the decision started");
    assert_eq!(b.service.swap(raised), 2);
    gate.open();
    let old = the_bid(&in_flight.read_response(), "old");
    assert_eq!(old.price, DEMO_PRICE, "in flight finishes on generation 1");

    for c in [&mut before, &mut in_flight] {
        let new = the_bid(&c.post("/bid/exchange-a", banner("new").as_bytes()), "new");
        assert_eq!(new.price, 2.7, "generation 2: 3.00 × 90%");
    }
    b.shutdown().unwrap();
}

fn shutdown_answers_in_flight_closes_idle_and_joins_in_bounded_time(engine: EngineKind) {
    let text = demo_text();
    let gate = Arc::new(Gate::default());
    let strategy = Arc::clone(&gate);
    let b = Bidder::start(
        engine,
        &EngineSettings {
            shutdown_grace_ms: 1_000,
            request_timeout_ms: REQUEST_TIMEOUT_NEVER_REACHED_MS,
            ..EngineSettings::default()
        },
        bidding_with(&text, move |_| strategy),
    );
    let _open = OpenOnDrop(Arc::clone(&gate));
    let addr = b.addr;
    let mut idle: Vec<Client> = (0..4).map(|_| b.connect()).collect();
    for (i, c) in idle.iter_mut().enumerate() {
        let id = format!("i{i}");
        the_bid(&c.post("/bid/exchange-a", banner(&id).as_bytes()), &id);
    }
    // Head and part of the body: a request in progress when the stop comes.
    let unfinished = post("/bid/exchange-a", "", banner("partial").as_bytes());
    let (sent, unsent) = unfinished.split_at(unfinished.len() - 20);
    let mut partial = b.connect();
    partial.send(sent);
    let mut in_flight = b.connect();
    gate.arm();
    in_flight.send(&post("/bid/exchange-a", "", banner("flight").as_bytes()));
    assert!(gate.wait_entered(CLIENT_TIMEOUT), "the decision started");

    let started = Instant::now();
    thread::scope(|s| {
        let stopper = s.spawn(move || b.shutdown());
        // The stop is under way while the decision is still held.
        thread::sleep(Duration::from_millis(50));
        gate.open();
        let resp = in_flight.read_response();
        the_bid(&resp, "flight");
        in_flight.expect_closed();
        for c in &mut idle {
            c.expect_closed();
        }
        // The request in progress may finish within the grace, and is the last.
        partial.send(unsent);
        let resp = partial.read_response();
        assert!(resp.closes(), "{resp:?}");
        the_bid(&resp, "partial");
        partial.expect_closed();
        stopper.join().unwrap().expect("clean shutdown");
    });
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(REQUEST_TIMEOUT_NEVER_REACHED_MS),
        "shutdown waited for the request timeout: {took:?}"
    );
    assert!(TcpStream::connect(addr).is_err(), "no longer listening");
}

fn shutdown_gives_up_on_a_stalled_request_after_the_grace_period(engine: EngineKind) {
    let b = Bidder::demo(
        engine,
        &EngineSettings {
            shutdown_grace_ms: 300,
            request_timeout_ms: REQUEST_TIMEOUT_NEVER_REACHED_MS,
            ..EngineSettings::default()
        },
    );
    let mut stalled = b.connect();
    stalled.send(b"POST /bid/exchange-a HTTP/1.1\r\nContent-Length: 50\r\n\r\n{\"id\":");
    eventually(CLIENT_TIMEOUT, "the connection to be accepted", || {
        b.counter("bidder_connections_accepted_total") == 1
    });
    // Nothing shows when the worker has read the partial request; on loopback it
    // takes microseconds. Without it the connection would look idle and close at once.
    thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    b.shutdown().unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(290),
        "gave up after {took:?}, before the 300 ms grace"
    );
    assert!(
        took < Duration::from_millis(REQUEST_TIMEOUT_NEVER_REACHED_MS),
        "waited for the request timeout instead of the grace: {took:?}"
    );
    let rest = stalled.read_until_closed();
    assert!(
        rest.is_empty(),
        "nothing is sent for a request never finished: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

fn many_concurrent_connections_on_two_workers_are_all_served(engine: EngineKind) {
    const THREADS: usize = 8;
    const CONNS: usize = 25;
    const ROUNDS: usize = 3;
    let b = Bidder::demo(
        engine,
        &EngineSettings {
            workers: 2,
            ..EngineSettings::default()
        },
    );
    thread::scope(|s| {
        for t in 0..THREADS {
            let b = &b;
            s.spawn(move || {
                let mut conns: Vec<Client> = (0..CONNS).map(|_| b.connect()).collect();
                for round in 0..ROUNDS {
                    for (i, c) in conns.iter_mut().enumerate() {
                        let id = format!("t{t}c{i}r{round}");
                        c.send(&post("/bid/exchange-a", "", banner(&id).as_bytes()));
                    }
                    for (i, c) in conns.iter_mut().enumerate() {
                        the_bid(&c.read_response(), &format!("t{t}c{i}r{round}"));
                    }
                }
            });
        }
    });
    let total = (THREADS * CONNS) as u64;
    assert_eq!(b.counter("bidder_connections_accepted_total"), total);
    assert_eq!(b.responses(Status::Ok), total * ROUNDS as u64);
    b.shutdown().unwrap();
}

fn latencies_reach_the_worker_metrics(engine: EngineKind) {
    let b = Bidder::demo(engine, &EngineSettings::default());
    let mut c = b.connect();
    for i in 0..10 {
        let id = format!("l{i}");
        let body = if i % 2 == 0 {
            banner(&id)
        } else {
            unbiddable(&id)
        };
        c.post("/bid/exchange-a", body.as_bytes());
    }
    assert_eq!(c.post("/nope", b"").status, 404);
    eventually(CLIENT_TIMEOUT, "latencies to be published", || {
        b.counter("bidder_request_duration_seconds_count") == 10
    });
    b.metrics[0].with_published(|decision, total| {
        assert_eq!(decision.count(), 10, "only decided requests count");
        assert!(total.sum_us() >= decision.sum_us());
    });
    b.shutdown().unwrap();
}
