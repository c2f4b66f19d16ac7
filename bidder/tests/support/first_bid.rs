//! One bid request through a worker, as exchange-a would send it: shared by the tests
//! that drive `Pipeline::bid` directly (include with `#[path]`).

use std::time::Instant;

use bidder::bid::pipeline::{Answer, Arrival, Bidding, Pipeline};
use bidder::clock::DrivenClock;
use serde_json::Value;
use testkit::MONDAY_10_30_MS;

/// A calendar standing at [`MONDAY_10_30_MS`]: give its clock to the `Bidding` and to
/// everything else the test exercises (the control port's ledger), so they all agree.
pub fn monday_calendar() -> DrivenClock {
    DrivenClock::at(MONDAY_10_30_MS)
}

/// Sends `body` from partner 0 (exchange-a in the demo catalog), stamped from
/// `bidding.clock`; the answer's first bid as JSON, or `None` for a no-bid. A refused
/// request fails the test.
pub fn first_bid(worker: &mut Pipeline, bidding: &Bidding, body: &str) -> Option<Value> {
    let mut body = body.as_bytes().to_vec();
    let arrival = Arrival {
        partner: Some(0),
        now_ms: bidding.clock.now_unix_ms(),
        at: Instant::now(),
        format: bidder::respond::Format::Json,
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
