//! One bid request through a worker, as exchange-a would send it: shared by the tests
//! that drive `Worker::bid` directly (include with `#[path]`).

use std::time::Instant;

use bidder::bidding::{Answer, Arrival, Bidding, Worker};
use serde_json::Value;

/// Monday 2026-11-23 10:30 UTC, ms: a fixed "now" so dayparts decide the same way.
pub const MONDAY_10_30_MS: u64 = 1_795_429_800_000;

/// Sends `body` from partner 0 (exchange-a in the demo catalog); the answer's first
/// bid as JSON, or `None` for a no-bid. A refused request fails the test.
pub fn first_bid(worker: &mut Worker, bidding: &Bidding, body: &str) -> Option<Value> {
    let mut body = body.as_bytes().to_vec();
    let arrival = Arrival {
        partner: Some(0),
        now_ms: MONDAY_10_30_MS,
        at: Instant::now(),
    };
    match worker.bid(bidding, &mut body, arrival) {
        Answer::Bid(json) => {
            let v: Value = serde_json::from_slice(json).expect("a bid response is JSON");
            Some(v["seatbid"][0]["bid"][0].clone())
        }
        Answer::NoBid { .. } => None,
        Answer::Invalid(e) => panic!("request refused: {e:?}"),
    }
}
