//! The real bid service behind the HTTP layer, driven sans-I/O the way an engine
//! drives it: partner recognition (path and source address), user-space partner
//! limits, per-partner gzip and OpenRTB version, reload to a new generation.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bidder::bid::gate::BidService;
use bidder::bid::pipeline::Bidding;
use bidder::catalog::Catalog;
use bidder::clock::{Clock, DrivenClock};
use bidder::config::Config;
use bidder::control::Registry;
use bidder::decide::strategy::StaticStrategy;
use bidder::decide::NoBidReason;
use bidder::http::{ConnState, HttpConfig, OutBuf, Server, Step};

const BANNER: &str =
    r#"{"id":"r1","imp":[{"id":"1","banner":{"w":300,"h":250}}],"site":{"domain":"a.com"}}"#;

fn bidding(config_text: Option<String>) -> Bidding {
    // No instant is fixed here: the demo bids all week, and no ledger runs.
    bidding_on(config_text, Clock::system())
}

/// The demo (or `config_text`) bidding on `clock`.
fn bidding_on(config_text: Option<String>, clock: Clock) -> Bidding {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo.toml");
    let text = config_text.unwrap_or_else(|| std::fs::read_to_string(&demo).unwrap());
    // These tests are not about deadlines: a generous cap keeps a loaded CI machine
    // (debug build, parallel tests) from turning a bid into a deadline no-bid.
    let text = text.replace("deadline_cap_ms = 8", "deadline_cap_ms = 1000");
    let catalog = Catalog::compile(&Config::from_text(&demo, text).unwrap()).unwrap();
    let strategy = Arc::new(StaticStrategy {
        shading_ppm: catalog.settings.default_shading_ppm,
    });
    Bidding::new(catalog, strategy, clock)
}

/// Sends one POST from `peer` (default 127.0.0.1) and returns (status code,
/// headers+body text).
fn post(
    server: &mut Server<BidService>,
    path: &str,
    peer: Option<&str>,
    extra_headers: &str,
    body: &str,
) -> (u16, String) {
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: b\r\ncontent-type: application/json\r\n{extra_headers}content-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut conn = ConnState::default();
    // The engines always know the peer; a test that does not say is a local exchange
    // (exchange-a's network in the demo).
    conn.peer = Some(peer.unwrap_or("127.0.0.1").parse::<IpAddr>().unwrap());
    let mut buf = vec![0u8; 256 * 1024];
    let mut out = OutBuf::new(&mut buf);
    let step = server.serve_one(&mut conn, request.as_bytes(), Instant::now(), &mut out);
    assert!(matches!(step, Step::Answered { .. }), "{step:?}");
    let text = String::from_utf8_lossy(out.as_bytes()).to_string();
    let code = text[9..12].parse().unwrap();
    (code, text)
}

fn server(service: &Arc<BidService>) -> Server<BidService> {
    Server::new(Arc::clone(service), &HttpConfig::default()).unwrap()
}

#[test]
fn partners_are_recognised_by_path_and_by_source_address() {
    let service = Arc::new(BidService::new(bidding(None), 1));
    let mut s = server(&service);
    assert_eq!(post(&mut s, "/bid/exchange-a", None, "", BANNER).0, 200);
    assert_eq!(post(&mut s, "/bid/nobody", None, "", BANNER).0, 404);
    assert_eq!(
        service
            .gate
            .unknown_partner
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // Default path: the partner comes from the source address (exchange-a is 127.0.0.0/8).
    let (code, _) = post(&mut s, "/openrtb2/bid", Some("127.0.0.1"), "", BANNER);
    assert_eq!(code, 200);
    // ssp-b (192.0.2.0/24) wants an nbr body: a currency it cannot have gets 200 + nbr.
    let jpy = BANNER.replace("\"imp\"", "\"cur\":[\"JPY\"],\"imp\"");
    let (code, text) = post(&mut s, "/openrtb2/bid", Some("192.0.2.9"), "", &jpy);
    assert_eq!(code, 200, "{text}");
    assert!(
        text.contains(&format!(
            "\"nbr\":{}",
            NoBidReason::CurrencyNotAccepted.nbr()
        )),
        "{text}"
    );
    // Unknown source on the default path: no partner, bids on campaigns open to all.
    assert_eq!(
        post(&mut s, "/openrtb2/bid", Some("198.51.100.1"), "", BANNER).0,
        200
    );
    assert_eq!(
        post(&mut s, "/bid/exchange-a", None, "", "{not json").0,
        400
    );
}

/// Issue 19: a valid 48-imp request repeated without notices used to reserve all of
/// acme-display's budget in seconds, so every honest request got `budget_exhausted`.
/// Now exchange-a's unanswered bids hold at most its `max_held_micros` (100.00 in the
/// demo): the campaign keeps the rest for everyone else.
#[test]
fn bids_nobody_answers_cannot_hold_the_budget_hostage() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo.toml");
    // A 5.00 share for exchange-a: filled by about 58 of these requests.
    let text = std::fs::read_to_string(&demo).unwrap().replacen(
        "max_held_micros = 100_000_000",
        "max_held_micros = 5_000_000",
        1,
    );
    let service = Arc::new(BidService::new(bidding(Some(text)), 1));
    let mut s = server(&service);
    let generation = service.current();
    let bidding = &generation.bidding;
    let mut ledger = bidder::money::ledger::Ledger::new(300_000);
    let imps: Vec<String> = (0..48)
        .map(|i| format!(r#"{{"id":"{i}","banner":{{"w":300,"h":250}}}}"#))
        .collect();
    let hostage = format!(
        r#"{{"id":"h","imp":[{}],"site":{{"domain":"a.com"}}}}"#,
        imps.join(",")
    );
    let exchange_a = 0;
    let acme = bidding
        .catalog
        .campaigns
        .iter()
        .find(|c| c.id == "acme-display")
        .unwrap()
        .budget_slot;
    let daily = bidding.budgets.snapshot(acme).available_micros;
    let cap = bidding.catalog.partners[exchange_a]
        .max_held_micros
        .unwrap();
    let mut refused_at = None;
    for i in 0..200 {
        let (code, _) = post(&mut s, "/bid/exchange-a", None, "", &hostage);
        ledger.drain(&bidding.inbox, &bidding.budgets);
        assert!(bidding.budgets.partner_held_micros(exchange_a as u16) <= cap);
        if code == 204 && refused_at.is_none() {
            refused_at = Some(i);
        }
    }
    let refused_at = refused_at.expect("the partner's share filled up");
    // 48 bids of 1,800 micros each: the share fills after about 58 requests, and
    // from then on exchange-a's bids are refused.
    assert!(
        (50..70).contains(&refused_at),
        "refused from request {refused_at}"
    );
    let available = bidding.budgets.snapshot(acme).available_micros;
    assert!(
        available >= daily - cap,
        "acme-display keeps all but the partner's share: {available} of {daily}"
    );
    assert!(bidding.budgets.partner_hold_refusals(exchange_a as u16) > 0);
    // Honest traffic from another partner still gets bids.
    let (code, text) = post(&mut s, "/bid/ssp-b", Some("192.0.2.9"), "", BANNER);
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("acme-display"), "{text}");
}

/// What `run_without_notices` saw each simulated second.
struct HeldSeries {
    /// exchange-a's held micros at the end of each second.
    held_micros: Vec<i64>,
    /// All campaigns' reserved micros at the end of each second.
    reserved_micros: Vec<i64>,
    bids: u64,
}

/// Sends `per_s` one-imp requests a second from exchange-a for `seconds` of driven
/// calendar time, no notice ever answering them; the ledger drains and expires every
/// 10 ms as the daemon's desk does. No wall clock: the suite's speed does not matter.
fn run_without_notices(text: String, per_s: u64, seconds: u64) -> HeldSeries {
    // Every clock read in here (bid times, budget days, the ledger) is this calendar's.
    let calendar = DrivenClock::at(testkit::MONDAY_10_30_MS);
    let service = Arc::new(BidService::new(bidding_on(Some(text), calendar.clock()), 1));
    let mut s = server(&service);
    let generation = service.current();
    let bidding = &generation.bidding;
    let mut ledger = bidder::money::ledger::Ledger::new(300_000);
    let exchange_a = 0u16;
    let slots: Vec<_> = bidding
        .catalog
        .campaigns
        .iter()
        .map(|c| c.budget_slot)
        .collect();
    let tick_ms = 10;
    let per_tick = per_s * tick_ms / 1000;
    let mut series = HeldSeries {
        held_micros: Vec::new(),
        reserved_micros: Vec::new(),
        bids: 0,
    };
    for tick in 1..=seconds * 1000 / tick_ms {
        for _ in 0..per_tick {
            if post(&mut s, "/bid/exchange-a", None, "", BANNER).0 == 200 {
                series.bids += 1;
            }
        }
        let now = calendar.advance_ms(tick_ms);
        ledger.drain(&bidding.inbox, &bidding.budgets);
        ledger.expire(now, &bidding.budgets);
        if tick % (1000 / tick_ms) == 0 {
            series
                .held_micros
                .push(bidding.budgets.partner_held_micros(exchange_a));
            series.reserved_micros.push(
                slots
                    .iter()
                    .map(|&slot| bidding.budgets.snapshot(slot).reserved_micros)
                    .sum(),
            );
        }
    }
    series
}

/// Issue 19's load case, 2,000 requests a second with no notices for 60 s: what is
/// held stays under the README's bound, with either limit the binding one.
#[test]
fn two_thousand_requests_a_second_without_notices_hold_at_most_the_bound() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo.toml");
    let demo = std::fs::read_to_string(&path).unwrap();

    // The demo: exchange-a's bids hold 30 s, at most 100.00 together. 2,000 bids a
    // second for 30 s would hold about 108.00, so the share is what binds.
    let cap = 100_000_000;
    let shared = run_without_notices(demo.clone(), 2_000, 60);
    // Refused only while the share is full: about 1,850 of the 2,000 a second get bids.
    assert!(
        (100_000..120_000).contains(&shared.bids),
        "{} bids",
        shared.bids
    );
    for (second, &held) in shared.held_micros.iter().enumerate() {
        assert!(held <= cap, "second {}: {held} held", second + 1);
    }
    let last = *shared.reserved_micros.last().unwrap();
    assert!(last <= cap, "{last} reserved");
    assert!(
        last > cap * 9 / 10,
        "the share binds at this rate: {last} reserved"
    );

    // No share: the horizon is the bound. A bid here holds what each bid of the first
    // second held; 10 s of 2,000 such bids a second at most, and no more after 30 s
    // than after 15 s.
    let horizon_ms = 10_000;
    let unshared = demo
        .replacen("max_held_micros = 100_000_000 ", "", 1)
        .replacen(
            "notice_horizon_ms = 30_000 ",
            &format!("notice_horizon_ms = {horizon_ms}"),
            1,
        );
    assert_ne!(unshared, demo, "the demo's exchange-a lines changed");
    let open = run_without_notices(unshared, 2_000, 30);
    assert_eq!(open.bids, 60_000);
    let per_bid = open.reserved_micros[0] / 2_000;
    let bound = 2_000 * (horizon_ms as i64 / 1000) * per_bid;
    for (second, &reserved) in open.reserved_micros.iter().enumerate() {
        assert!(
            reserved <= bound,
            "second {}: {reserved} of {bound}",
            second + 1
        );
    }
    let (at_15, at_30) = (open.reserved_micros[14], open.reserved_micros[29]);
    assert!(
        at_15 > bound * 9 / 10 && at_30 <= at_15,
        "steady after one horizon: {at_15} at 15 s, {at_30} at 30 s (bound {bound})"
    );
}

/// Invalid traffic is counted per partner and kind on `/metrics`, on the worker that
/// saw it (the demo turns on the built-in crawler list).
#[test]
fn invalid_traffic_is_counted_per_partner_and_kind() {
    let bidding = bidding(None);
    let registry = Registry::new();
    let worker = registry.add_worker();
    registry.set_catalog(Arc::clone(&bidding.catalog), Arc::clone(&bidding.budgets));
    let service = Arc::new(BidService::new(bidding, 1));
    let crawler = r#"{"id":"r1","imp":[{"id":"1","banner":{"w":300,"h":250}}],"site":{"domain":"a.com"},"device":{"ua":"curl/8.5.0"}}"#;
    let codes = std::thread::spawn(move || {
        worker.install_on_this_thread();
        let mut s = server(&service);
        [
            post(&mut s, "/bid/exchange-a", None, "", crawler).0,
            post(&mut s, "/bid/exchange-a", None, "", BANNER).0,
        ]
    })
    .join()
    .unwrap();
    assert_eq!(codes, [204, 200]);
    let text = registry.scrape();
    for (kind, count) in [
        ("crawler", 1),
        ("datacenter", 0),
        ("inconsistent_device", 0),
    ] {
        let line =
            format!("bidder_partner_ivt_total{{partner=\"exchange-a\",kind=\"{kind}\"}} {count}\n");
        assert!(text.contains(&line), "no {line:?} in:\n{text}");
    }
}

#[test]
fn the_user_space_partner_limit_answers_204_past_the_burst() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo.toml");
    // ssp-b without cidrs: an XDP front could not tell its traffic apart.
    let text = std::fs::read_to_string(&demo)
        .unwrap()
        .replace(
            "qps_limit = 50_000\nburst = 5_000",
            "qps_limit = 1\nburst = 3",
        )
        .replace(
            "cidrs = [\"192.0.2.0/24\", \"2001:db8:b::/48\"]\nqps_limit = 20_000\nburst = 2_000",
            "qps_limit = 1\nburst = 1",
        );
    let service = Arc::new(BidService::new(bidding(Some(text)), 1));
    let mut s = server(&service);
    let codes: Vec<u16> = (0..6)
        .map(|_| post(&mut s, "/bid/exchange-a", None, "", BANNER).0)
        .collect();
    assert_eq!(codes, [200, 200, 200, 204, 204, 204]);
    let refused: u64 = service
        .decision_stats()
        .iter()
        .map(|st| st.no_bid_imps[NoBidReason::PartnerRefused as usize].get())
        .sum();
    assert_eq!(refused, 3);
    // With the XDP front enforcing limits, user space lets partners with cidrs through;
    // a partner known only by its path stays limited here.
    service.set_user_space_limits(false);
    assert_eq!(post(&mut s, "/bid/exchange-a", None, "", BANNER).0, 200);
    let ssp_b: Vec<u16> = (0..3)
        .map(|_| post(&mut s, "/bid/ssp-b", Some("192.0.2.9"), "", BANNER).0)
        .collect();
    assert_eq!(ssp_b, [200, 204, 204]);
}

#[test]
fn a_partner_refused_by_its_limit_is_answered_in_its_openrtb_version() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo.toml");
    // ssp-b speaks 2.5; a burst of 1 refuses its second request before any decision.
    let text = std::fs::read_to_string(&demo).unwrap().replace(
        "qps_limit = 20_000\nburst = 2_000",
        "qps_limit = 1\nburst = 1",
    );
    let service = Arc::new(BidService::new(bidding(Some(text)), 1));
    let mut s = server(&service);
    for expected in [200, 204] {
        let (code, text) = post(&mut s, "/bid/ssp-b", Some("192.0.2.9"), "", BANNER);
        assert_eq!(code, expected, "{text}");
        assert!(text.contains("\r\nx-openrtb-version: 2.5\r\n"), "{text}");
    }
    // The next partner on the worker gets its own version, not the last one's.
    let (code, text) = post(&mut s, "/bid/exchange-a", None, "", BANNER);
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("\r\nx-openrtb-version: 2.6\r\n"), "{text}");
}

#[test]
fn gzip_responses_only_for_partners_configured_for_it() {
    let service = Arc::new(BidService::new(bidding(None), 1));
    let mut s = server(&service);
    let gzip = "accept-encoding: gzip\r\n";
    // exchange-a: gzip_responses = false.
    let (_, text) = post(&mut s, "/bid/exchange-a", None, gzip, BANNER);
    assert!(
        !text.to_ascii_lowercase().contains("content-encoding: gzip"),
        "{text}"
    );
    // ssp-b: gzip_responses = true (bids are over the 1 KiB gzip threshold).
    let (code, text) = post(&mut s, "/bid/ssp-b", Some("192.0.2.9"), gzip, BANNER);
    assert_eq!(code, 200);
    assert!(
        text.to_ascii_lowercase().contains("content-encoding: gzip"),
        "{text}"
    );
}

#[test]
fn a_reload_takes_effect_on_the_next_request() {
    let service = Arc::new(BidService::new(bidding(None), 1));
    let mut s = server(&service);
    let (_, before) = post(&mut s, "/bid/exchange-a", None, "", BANNER);
    assert!(before.contains("\"price\":1.8"), "{before}");
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo.toml");
    let text = std::fs::read_to_string(&demo)
        .unwrap()
        .replace("base_cpm_micros = 2_000_000", "base_cpm_micros = 3_000_000");
    assert_eq!(service.swap(bidding(Some(text))), 2);
    let (_, after) = post(&mut s, "/bid/exchange-a", None, "", BANNER);
    assert!(after.contains("\"price\":2.7"), "{after}");
}

#[test]
fn a_response_past_the_answers_room_carries_the_bids_that_fit_and_holds_only_those() {
    // The reproduction: 56 copies of the demo imp make a response over the 64 KiB an
    // answer has. It used to be a 204 that kept all 56 reservations until their TTL.
    let bidding = bidding(None);
    let budgets = Arc::clone(&bidding.budgets);
    let inbox = Arc::clone(&bidding.inbox);
    let service = Arc::new(BidService::new(bidding, 1));
    let mut s = server(&service);
    let imps: Vec<String> = (0..56)
        .map(|i| format!(r#"{{"id":"{i}","banner":{{"w":300,"h":250}}}}"#))
        .collect();
    let body = format!(
        r#"{{"id":"r1","imp":[{}],"site":{{"domain":"a.com"}}}}"#,
        imps.join(",")
    );
    let (code, text) = post(&mut s, "/bid/exchange-a", None, "", &body);
    assert_eq!(code, 200, "{}", &text[..text.len().min(300)]);
    let json = &text[text.find("\r\n\r\n").unwrap() + 4..];
    assert!(json.len() <= HttpConfig::default().max_response_body_bytes);
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let bids = v["seatbid"][0]["bid"].as_array().unwrap();
    assert!((1..56).contains(&bids.len()), "{} bids", bids.len());
    // Each bid sent holds one impression's price (CPM / 1000, rounded up); no other
    // budget is held.
    let per_bid: i64 = bids
        .iter()
        .map(|b| ((b["price"].as_f64().unwrap() * 1e6).round() as i64 + 999) / 1000)
        .sum();
    let reserved: i64 = (0..budgets.len())
        .map(|c| budgets.snapshot(c).reserved_micros)
        .sum();
    assert_eq!(reserved, per_bid);
    let mut ledger = bidder::money::ledger::Ledger::new(60_000);
    ledger.drain(&inbox, &budgets);
    assert_eq!(ledger.pending(), bids.len());
}

#[test]
fn a_partners_bid_path_from_outside_its_networks_is_refused_and_counted() {
    // ssp-b's networks are 192.0.2.0/24: its path from 127.0.0.1 used to be served and
    // counted as ssp-b.
    let metrics = Arc::new(bidder::metrics::WorkerMetrics::new(0));
    metrics.install_on_this_thread();
    let service = Arc::new(BidService::new(bidding(None), 1));
    let mut s = server(&service);
    assert_eq!(
        post(&mut s, "/bid/ssp-b", Some("127.0.0.1"), "", BANNER).0,
        403
    );
    assert_eq!(
        post(&mut s, "/bid/exchange-a", Some("192.0.2.9"), "", BANNER).0,
        403
    );
    // From inside, as before; an IPv4-mapped IPv6 peer is the same address.
    assert_eq!(
        post(&mut s, "/bid/ssp-b", Some("192.0.2.9"), "", BANNER).0,
        200
    );
    assert_eq!(
        post(
            &mut s,
            "/bid/exchange-a",
            Some("::ffff:127.0.0.1"),
            "",
            BANNER
        )
        .0,
        200
    );
    let counted = (
        metrics.partner(Some(1)).source_mismatch.get(),
        metrics.partner(Some(1)).requests.get(),
        metrics.partner(Some(0)).source_mismatch.get(),
    );
    assert_eq!(
        counted,
        (1, 1, 1),
        "(ssp-b refused, ssp-b served, exchange-a refused)"
    );
}
