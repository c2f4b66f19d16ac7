//! A warmed-up `Pipeline::bid` makes no heap call per request: parse, decide, the ledger
//! hand-off and encode together, on the demo configuration and on a book of 1,000
//! campaigns (DESIGN.md invariant 4: nothing on the hot path allocates per request).
//!
//! Allocations are counted only inside a window armed around each `bid` call on the
//! test's own thread, so the harness, warm-up and the ledger drain (the control
//! thread's job, done between calls) are not counted. Set `ALLOC_BACKTRACE=1` to
//! print the backtrace of every allocation inside a window: that names the culprit
//! when this test fails.

#[path = "support/workload.rs"]
mod workload;

use std::sync::Arc;

use std::time::Instant;

use bidder::bid::pipeline::{Answer, Arrival, Bidding, Pipeline};
use bidder::respond::Format;
use workload::{Control, EXCHANGE_A, MONDAY_10_30_MS};

/// Bids made before counting starts: parser buffers, pools and the response buffer
/// grow to the request's size during these.
const WARMUP_BIDS: usize = 16;
/// Bids counted; each must make no heap call.
const COUNTED_BIDS: usize = 1_000;
/// Bids that may be made again after a host stall pushed them past their deadline.
const MAX_DEADLINE_RETRIES: usize = 50;

#[global_allocator]
static ALLOCATOR: testkit::CountingAllocator = testkit::CountingAllocator;

/// Heap calls `f` makes on this thread.
fn counted<R>(f: impl FnOnce() -> R) -> (R, u64) {
    testkit::heap_calls(f)
}

/// Bids `body` `WARMUP_BIDS + COUNTED_BIDS` times on one worker and returns the heap
/// calls made by the counted bids. Every bid must be answered with a bid, so the whole
/// path (decide, reservation, ledger hand-off, encode) is covered. The ledger is drained
/// between bids, outside the count, as the control thread would.
///
/// A bid the host stalled past its deadline (the request's `tmax` is 120 ms, and a
/// shared VM can pause that long) took the deadline path instead: it is made again, up
/// to [`MAX_DEADLINE_RETRIES`] times in all, rather than read as a missing bid.
fn heap_calls_of_warm_bids(bidding: &Bidding, body: &[u8], format: Format) -> u64 {
    let mut worker = Pipeline::new(bidding, 0, Arc::default()).expect("notice signer");
    let mut control = Control::default();
    let mut buf = Vec::with_capacity(body.len());
    let mut total = 0;
    let mut retries = 0;
    let mut i = 0;
    while i < WARMUP_BIDS + COUNTED_BIDS {
        buf.clear();
        buf.extend_from_slice(body);
        let missed_before = worker.stats().deadline_missed.get();
        let (is_bid, calls) = counted(|| {
            let answer = worker.bid(
                bidding,
                &mut buf,
                Arrival {
                    partner: Some(EXCHANGE_A),
                    now_ms: MONDAY_10_30_MS,
                    at: Instant::now(),
                    format,
                },
            );
            matches!(answer, Answer::Bid(_))
        });
        if !is_bid && worker.stats().deadline_missed.get() > missed_before {
            retries += 1;
            assert!(
                retries <= MAX_DEADLINE_RETRIES,
                "{retries} bids missed their deadline: the host is too stalled to run this"
            );
            control.release_all(bidding);
            continue;
        }
        assert!(
            is_bid,
            "bid {i} got no bid (reasons {:?}): the test must cover the bid path",
            worker.last_no_bids()
        );
        if i >= WARMUP_BIDS {
            total += calls;
        }
        assert_eq!(control.release_all(bidding), 1, "one reservation per bid");
        i += 1;
    }
    total
}

#[test]
fn the_allocation_counter_sees_heap_calls() {
    let ((), calls) = counted(|| drop(std::hint::black_box(Vec::<u8>::with_capacity(64))));
    assert_eq!(
        calls, 1,
        "the counter is blind; every other result here is void"
    );
}

#[test]
fn warm_bids_on_the_demo_config_allocate_nothing() {
    let bidding = workload::bidding(workload::demo_catalog());
    for format in [Format::Json, Format::FlatBuffers] {
        let calls = heap_calls_of_warm_bids(&bidding, &workload::iab_simple_banner(), format);
        assert_eq!(
            calls, 0,
            "{calls} heap calls in {COUNTED_BIDS} warm bids of the IAB simple banner in \
             {format:?} (rerun with ALLOC_BACKTRACE=1 to see where)"
        );
    }
}

#[test]
fn warm_bids_against_1000_campaigns_allocate_nothing() {
    let bidding = workload::bidding(workload::generated_catalog(
        workload::GENERATED_CAMPAIGNS,
        workload::GENERATED_SEED,
    ));
    let requests: [(&str, Vec<u8>); 2] = [
        (
            "Prebid site banner",
            workload::PBS_SITE_BANNER.as_bytes().to_vec(),
        ),
        ("IAB simple banner", workload::iab_simple_banner()),
    ];
    let mut verifying = workload::bidding(workload::generated_catalog_with(
        workload::GENERATED_CAMPAIGNS,
        workload::GENERATED_SEED,
        workload::Trust::VerifySupply,
    ));
    verifying.supply = workload::pbs_supply_store();
    let verified = workload::PBS_SITE_BANNER.as_bytes().to_vec();
    let runs = requests
        .iter()
        .map(|(name, body)| (*name, &bidding, body))
        .chain([(
            "Prebid site banner, supply chain verified",
            &verifying,
            &verified,
        )]);
    for (name, bidding, body) in runs {
        let calls = heap_calls_of_warm_bids(bidding, body, Format::Json);
        assert_eq!(
            calls, 0,
            "{name}: {calls} heap calls in {COUNTED_BIDS} warm bids against 1,000 \
             campaigns (rerun with ALLOC_BACKTRACE=1 to see where)"
        );
    }
}
