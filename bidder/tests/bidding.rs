//! The bidding pipeline as the engines call it: deadline (fail closed), no-bid
//! bodies, the ledger hand-over and invalid requests.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bidder::bid::pipeline::{Answer, Arrival, Bidding, Pipeline};
use bidder::catalog::{Campaign, Catalog};
use bidder::clock::DrivenClock;
use bidder::config::Config;
use bidder::decide::strategy::{CampaignStrategy, StaticStrategy, StrategySource};
use bidder::decide::NoBidReason;
use bidder::money::budget::Budgets;
use bidder::money::ledger::{Ledger, LedgerInbox};
use testkit::MONDAY_10_30_MS;

const BANNER: &str = r#"{"id":"r1","tmax":120,"imp":[{"id":"1","banner":{"w":300,"h":250}}],"site":{"domain":"a.com"}}"#;

/// The demo configuration with its deadline cap set to `deadline_cap_ms`.
fn bidding_with_cap(
    strategy: Arc<dyn StrategySource>,
    inbox_capacity: usize,
    deadline_cap_ms: u32,
) -> Bidding {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo.toml");
    let text = std::fs::read_to_string(&demo).unwrap().replace(
        "deadline_cap_ms = 8",
        &format!("deadline_cap_ms = {deadline_cap_ms}"),
    );
    let catalog = Catalog::compile(&Config::from_text(&demo, text).unwrap()).unwrap();
    let budgets = Budgets::new(catalog.campaigns.iter().map(|c| c.daily_budget_micros));
    Bidding::sharing(
        Arc::new(catalog),
        Arc::new(budgets),
        Arc::new(LedgerInbox::new(inbox_capacity)),
        strategy,
        DrivenClock::at(MONDAY_10_30_MS).clock(),
    )
}

/// Tests not about deadlines get a generous cap, so a loaded CI machine (debug build,
/// parallel tests) cannot turn a bid into a deadline no-bid.
fn bidding_with(strategy: Arc<dyn StrategySource>, inbox_capacity: usize) -> Bidding {
    bidding_with_cap(strategy, inbox_capacity, 1_000)
}

fn arrival(partner: Option<u16>) -> Arrival {
    Arrival {
        partner,
        now_ms: MONDAY_10_30_MS,
        at: Instant::now(),
        format: bidder::respond::Format::Json,
    }
}

fn fast() -> Arc<dyn StrategySource> {
    Arc::new(StaticStrategy {
        shading_ppm: 1_000_000,
    })
}

/// A strategy that takes `delay` per campaign: a decision too slow for its deadline.
struct Slow(Duration);
impl StrategySource for Slow {
    fn campaign(&self, idx: usize, c: &Campaign) -> CampaignStrategy {
        std::thread::sleep(self.0);
        StaticStrategy {
            shading_ppm: 1_000_000,
        }
        .campaign(idx, c)
    }
}

/// Fails unless `answer` is a no-bid for `reason` (with or without a body).
fn assert_no_bid(answer: &Answer<'_>, reason: NoBidReason) {
    assert!(
        matches!(answer, Answer::NoBid { reason: r, .. } if *r == reason),
        "expected a no-bid for {reason:?}: {answer:?}"
    );
}

fn reserved(bidding: &Bidding) -> i64 {
    (0..bidding.budgets.len())
        .map(|c| bidding.budgets.snapshot(c).reserved_micros)
        .sum()
}

#[test]
fn a_bid_leaves_only_with_its_reservation_in_the_ledger() {
    let bidding = bidding_with(fast(), 64);
    let mut worker = Pipeline::new(&bidding, 0, Arc::default()).unwrap();
    let mut body = BANNER.as_bytes().to_vec();
    let Answer::Bid(json) = worker.bid(&bidding, &mut body, arrival(Some(0))) else {
        panic!("expected a bid");
    };
    let response: serde_json::Value = serde_json::from_slice(json).unwrap();
    let bid_id = response["seatbid"][0]["bid"][0]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        reserved(&bidding),
        2_000,
        "2.00 CPM reserves 2,000 micros for one impression"
    );
    let mut ledger = Ledger::new(60_000);
    ledger.drain(&bidding.inbox, &bidding.budgets);
    assert_eq!(ledger.pending(), 1);
    ledger.settle(bid_id, 1_500, &bidding.budgets, 0);
    assert_eq!(reserved(&bidding), 0);
}

#[test]
fn a_decision_past_its_deadline_answers_no_bid_and_releases_budget() {
    // Our own deadline capped at 8 ms; each candidate campaign's strategy takes 5 ms.
    let bidding = bidding_with_cap(Arc::new(Slow(Duration::from_millis(5))), 64, 8);
    let mut worker = Pipeline::new(&bidding, 0, Arc::default()).unwrap();
    let mut body = BANNER.as_bytes().to_vec();
    let answer = worker.bid(&bidding, &mut body, arrival(Some(0)));
    assert!(
        matches!(
            answer,
            Answer::NoBid {
                reason: NoBidReason::Deadline,
                body: None
            }
        ),
        "{answer:?}"
    );
    assert_eq!(
        reserved(&bidding),
        0,
        "no budget stays held by a late decision"
    );
    assert_eq!(worker.stats().deadline_missed.get(), 1);
    assert!(bidding.inbox.is_empty(), "nothing was handed to the ledger");
}

#[test]
fn a_tmax_smaller_than_the_network_allowance_leaves_no_time() {
    let bidding = bidding_with(fast(), 64);
    let mut worker = Pipeline::new(&bidding, 0, Arc::default()).unwrap();
    let mut body = BANNER.replace("\"tmax\":120", "\"tmax\":30").into_bytes();
    let answer = worker.bid(&bidding, &mut body, arrival(Some(0)));
    assert_no_bid(&answer, NoBidReason::Deadline);
}

#[test]
fn partners_that_want_a_body_get_the_nbr_json() {
    let bidding = bidding_with(fast(), 64);
    let mut worker = Pipeline::new(&bidding, 0, Arc::default()).unwrap();
    // ssp-b (partner 1) sets nbr_body; "cur":["JPY"] excludes our currency.
    let mut body = BANNER
        .replace("\"tmax\":120", "\"cur\":[\"JPY\"]")
        .into_bytes();
    let Answer::NoBid {
        reason,
        body: Some(json),
    } = worker.bid(&bidding, &mut body, arrival(Some(1)))
    else {
        panic!("expected a no-bid body");
    };
    assert_eq!(reason, NoBidReason::CurrencyNotAccepted);
    let v: serde_json::Value = serde_json::from_slice(json).unwrap();
    assert_eq!(v["id"], "r1");
    assert_eq!(v["nbr"], NoBidReason::CurrencyNotAccepted.nbr());
}

#[test]
fn a_full_ledger_inbox_drops_the_bid_and_keeps_budget_free() {
    let bidding = bidding_with(fast(), 1);
    let mut worker = Pipeline::new(&bidding, 0, Arc::default()).unwrap();
    let mut first = BANNER.as_bytes().to_vec();
    assert!(matches!(
        worker.bid(&bidding, &mut first, arrival(None)),
        Answer::Bid(_)
    ));
    let mut second = BANNER.as_bytes().to_vec();
    let answer = worker.bid(&bidding, &mut second, arrival(None));
    assert_no_bid(&answer, NoBidReason::TechnicalError);
    assert_eq!(worker.dropped_bids, 1);
    assert_eq!(
        reserved(&bidding),
        2_000,
        "only the bid the ledger holds keeps budget"
    );
}

#[test]
fn invalid_requests_are_refused_with_the_parse_error() {
    let bidding = bidding_with(fast(), 64);
    let mut worker = Pipeline::new(&bidding, 0, Arc::default()).unwrap();
    for bad in [
        &b"{"[..],
        b"[]",
        br#"{"id":"x"}"#,
        br#"{"id":"x","imp":[]}"#,
        b"\xff\xfe",
    ] {
        let mut body = bad.to_vec();
        let answer = worker.bid(&bidding, &mut body, arrival(None));
        let Answer::Invalid(e) = answer else {
            panic!("{bad:?} should be invalid, got {answer:?}");
        };
        assert!(!e.to_string().is_empty());
    }
    assert_eq!(
        worker.stats().no_bid_imps[NoBidReason::InvalidRequest as usize].get(),
        5
    );
}

/// A banner request with `n` imps, ids `0..n`.
fn banner_imps(n: usize) -> Vec<u8> {
    let imps: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"id":"{i}","banner":{{"w":300,"h":250}}}}"#))
        .collect();
    format!(
        r#"{{"id":"r1","tmax":120,"imp":[{}],"site":{{"domain":"a.com"}}}}"#,
        imps.join(",")
    )
    .into_bytes()
}

fn bid_count(json: &[u8]) -> usize {
    let v: serde_json::Value = serde_json::from_slice(json).unwrap();
    v["seatbid"][0]["bid"].as_array().map_or(0, Vec::len)
}

#[test]
fn a_response_over_its_room_sends_the_bids_that_fit_and_releases_the_rest() {
    // 56 bids of the demo campaign do not fit 8 KiB: the first imps' bids that fit are
    // sent, each held by the ledger; the others' budget is free at once.
    const ROOM_BYTES: usize = 8 * 1024;
    let bidding = bidding_with(fast(), 64);
    let mut worker = Pipeline::new(&bidding, 0, Arc::default()).unwrap();
    let mut body = banner_imps(56);
    let Answer::Bid(json) = worker.bid_within(&bidding, &mut body, arrival(None), ROOM_BYTES)
    else {
        panic!("expected the bids that fit");
    };
    assert!(json.len() <= ROOM_BYTES, "{} bytes", json.len());
    let sent = bid_count(json);
    assert!((1..56).contains(&sent), "{sent} bids sent");
    assert_eq!(reserved(&bidding), 2_000 * sent as i64);
    let mut ledger = Ledger::new(60_000);
    ledger.drain(&bidding.inbox, &bidding.budgets);
    assert_eq!(ledger.pending(), sent);
    let stats = worker.stats();
    assert_eq!(stats.bids_dropped_no_room.get(), 56 - sent as u64);
    assert_eq!(
        stats.no_bid_imps[NoBidReason::TechnicalError as usize].get(),
        56 - sent as u64
    );

    // No room for even one bid: a no-bid, nothing held, nothing handed to the ledger.
    let mut body = banner_imps(3);
    let answer = worker.bid_within(&bidding, &mut body, arrival(None), 100);
    assert_no_bid(&answer, NoBidReason::TechnicalError);
    assert_eq!(reserved(&bidding), 2_000 * sent as i64);
    assert!(bidding.inbox.is_empty());
}

#[test]
fn a_request_past_the_imp_limit_is_bid_on_its_first_imps_not_refused() {
    let bidding = bidding_with(fast(), 1_024);
    let mut worker = Pipeline::new(&bidding, 0, Arc::default()).unwrap();
    let mut body = banner_imps(300);
    let Answer::Bid(json) = worker.bid(&bidding, &mut body, arrival(None)) else {
        panic!("a valid request over our limit is still bid on");
    };
    assert_eq!(bid_count(json), bidder::limits::MAX_IMPS);
    let v: serde_json::Value = serde_json::from_slice(json).unwrap();
    let last = &v["seatbid"][0]["bid"][bidder::limits::MAX_IMPS - 1]["impid"];
    assert_eq!(*last, (bidder::limits::MAX_IMPS - 1).to_string());
    assert_eq!(
        worker.stats().imps_over_limit.get(),
        (300 - bidder::limits::MAX_IMPS) as u64
    );
}

#[test]
fn a_ledger_inbox_without_room_for_every_bid_sends_none_and_holds_nothing() {
    // Room for two; the response has three bids: all or none.
    let bidding = bidding_with(fast(), 2);
    let mut worker = Pipeline::new(&bidding, 0, Arc::default()).unwrap();
    let mut body = banner_imps(3);
    let answer = worker.bid(&bidding, &mut body, arrival(None));
    assert_no_bid(&answer, NoBidReason::TechnicalError);
    assert_eq!(reserved(&bidding), 0);
    assert!(bidding.inbox.is_empty());
    assert_eq!(worker.stats().bids_dropped_ledger_full.get(), 3);
    // Two imps fit.
    let mut body = banner_imps(2);
    let Answer::Bid(json) = worker.bid(&bidding, &mut body, arrival(None)) else {
        panic!("two bids fit the inbox");
    };
    assert_eq!(bid_count(json), 2);
}
