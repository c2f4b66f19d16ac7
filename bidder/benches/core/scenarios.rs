//! The measured workloads: whole requests through `Pipeline::bid`, and the three stages
//! of one request (parse, decide, encode) on their own.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use bidder::bid::pipeline::{Answer, Arrival, Bidding, Pipeline};
use bidder::decide::{ChosenBid, Context, Decider};
use bidder::money::bid_id::{BidId, BidIdGen};
use bidder::money::notice::NoticeSigner;
use bidder::openrtb::{BidRequest, JsonReader, Parser};
use bidder::respond::{BidOut, Encoder, ResponseOut};

use crate::measure::Scenario;
use crate::workload::{Control, EXCHANGE_A, MONDAY_10_30_MS};

/// Request bodies, reused: `Pipeline::bid` rewrites a body in place, so each call gets a
/// fresh copy, made in `prepare` outside the timed call.
struct Slots {
    bufs: Vec<Vec<u8>>,
}

impl Slots {
    fn new(batch: usize, longest: usize) -> Slots {
        Slots {
            bufs: (0..batch).map(|_| Vec::with_capacity(longest)).collect(),
        }
    }

    fn fill(&mut self, slot: usize, body: &[u8]) {
        let buf = &mut self.bufs[slot];
        buf.clear();
        buf.extend_from_slice(body);
    }
}

/// How the calls of a bid scenario were answered.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Outcomes {
    pub bids: u64,
    pub no_bids: u64,
    pub invalid: u64,
}

/// Whole requests through `Pipeline::bid`, cycling over `bodies`, with the ledger
/// drained between batches as the control thread would.
pub struct BidScenario<'b> {
    bidding: &'b Bidding,
    pub worker: Pipeline,
    control: Control,
    bodies: Vec<&'b [u8]>,
    next: usize,
    slots: Slots,
    pub outcomes: Outcomes,
}

impl<'b> BidScenario<'b> {
    pub fn new(bidding: &'b Bidding, bodies: Vec<&'b [u8]>, batch: usize) -> BidScenario<'b> {
        assert!(!bodies.is_empty(), "a scenario needs requests");
        let longest = bodies.iter().map(|b| b.len()).max().unwrap_or(0);
        BidScenario {
            bidding,
            worker: Pipeline::new(bidding, 0, Arc::default()).expect("notice signer"),
            control: Control::default(),
            bodies,
            next: 0,
            slots: Slots::new(batch, longest),
            outcomes: Outcomes::default(),
        }
    }
}

impl Scenario for BidScenario<'_> {
    fn prepare(&mut self, slot: usize) {
        let body = self.bodies[self.next % self.bodies.len()];
        self.next += 1;
        self.slots.fill(slot, body);
    }

    fn call(&mut self, slot: usize) {
        let answer = self.worker.bid(
            self.bidding,
            &mut self.slots.bufs[slot],
            Arrival {
                partner: Some(EXCHANGE_A),
                now_ms: MONDAY_10_30_MS,
                at: Instant::now(),
                format: bidder::respond::Format::Json,
            },
        );
        match black_box(answer) {
            Answer::Bid(_) => self.outcomes.bids += 1,
            Answer::NoBid { .. } => self.outcomes.no_bids += 1,
            Answer::Invalid(_) => self.outcomes.invalid += 1,
        }
    }

    fn after_batch(&mut self) {
        self.control.release_all(self.bidding);
    }
}

/// Parsing alone: body bytes to a `BidRequest`, and the request handed back to the
/// parser (as `Pipeline::bid` does when it is done with it).
pub struct ParseOnly<'b> {
    parser: Parser,
    body: &'b [u8],
    slots: Slots,
}

impl<'b> ParseOnly<'b> {
    pub fn new(body: &'b [u8], batch: usize, reader: JsonReader) -> ParseOnly<'b> {
        ParseOnly {
            parser: Parser::with_reader(reader),
            body,
            slots: Slots::new(batch, body.len()),
        }
    }
}

impl Scenario for ParseOnly<'_> {
    fn prepare(&mut self, slot: usize) {
        self.slots.fill(slot, self.body);
    }

    fn call(&mut self, slot: usize) {
        let parsed = self.parser.parse(&mut self.slots.bufs[slot]);
        black_box(parsed.map(|req| req.imps().len()).ok());
    }
}

/// The decision alone, on a request parsed once: index filter, candidates, pricing and
/// the budget reservation. The bid it chooses is moved out (a copy of a few words,
/// inside the timing) and its reservation released before the next call, outside it.
pub struct DecideOnly<'s, 'r> {
    bidding: &'s Bidding,
    decider: Decider,
    req: &'s BidRequest<'r>,
    held: Vec<ChosenBid>,
    pub bids: u64,
}

impl<'s, 'r> DecideOnly<'s, 'r> {
    pub fn new(bidding: &'s Bidding, req: &'s BidRequest<'r>) -> DecideOnly<'s, 'r> {
        let mut decider = Decider::new(&bidding.catalog, Arc::default(), 0x9E37_79B9);
        decider.set_supply(Arc::clone(&bidding.supply));
        DecideOnly {
            bidding,
            decider,
            req,
            // Room for a whole batch of bids between releases.
            held: Vec::with_capacity(4_096),
            bids: 0,
        }
    }

    /// Campaigns the index left per call, on average.
    pub fn candidates_per_call(&self) -> f64 {
        let stats = self.decider.stats();
        stats.candidates.get() as f64 / stats.requests.get().max(1) as f64
    }
}

impl Scenario for DecideOnly<'_, '_> {
    fn prepare(&mut self, _slot: usize) {
        for bid in self.held.drain(..) {
            self.bidding.budgets.release(bid.reservation);
        }
    }

    fn call(&mut self, _slot: usize) {
        let ctx = Context {
            partner: Some(EXCHANGE_A),
            now_unix_s: MONDAY_10_30_MS / 1000,
            user_key: None,
        };
        let decision = self.decider.decide(
            &self.bidding.catalog,
            self.bidding.strategy.as_ref(),
            &self.bidding.budgets,
            self.req,
            ctx,
        );
        self.held.append(&mut decision.bids);
        self.bids += black_box(self.held.len()) as u64;
    }

    fn after_batch(&mut self) {
        self.prepare(0);
    }
}

/// Encoding alone: the bid the decision chose for the request, written as OpenRTB
/// JSON with its three signed notice URLs. A fresh bid id per call (drawn outside the
/// timing) so every response is a new one, as in production.
pub struct EncodeOnly<'s> {
    encoder: Encoder,
    bid: BidOut<'s>,
    request_id: &'s str,
    seat: &'s str,
    cur: &'s str,
    ids: BidIdGen,
    slot_ids: Vec<BidId>,
    out: Vec<u8>,
    pub bytes: usize,
}

impl<'s> EncodeOnly<'s> {
    pub fn new(
        signer: NoticeSigner,
        bid: BidOut<'s>,
        request_id: &'s str,
        seat: &'s str,
        cur: &'s str,
        batch: usize,
    ) -> EncodeOnly<'s> {
        let mut ids = BidIdGen::new(1, 0);
        let slot_ids = (0..batch).map(|_| ids.next_id(MONDAY_10_30_MS)).collect();
        EncodeOnly {
            encoder: Encoder::new(signer),
            bid,
            request_id,
            seat,
            cur,
            ids,
            slot_ids,
            out: Vec::with_capacity(16 * 1024),
            bytes: 0,
        }
    }
}

impl Scenario for EncodeOnly<'_> {
    fn prepare(&mut self, slot: usize) {
        self.slot_ids[slot] = self.ids.next_id(MONDAY_10_30_MS);
    }

    fn call(&mut self, slot: usize) {
        self.bid.bid_id = self.slot_ids[slot];
        self.out.clear();
        let resp = ResponseOut {
            request_id: self.request_id,
            seat: self.seat,
            cur: self.cur,
            bids: std::slice::from_ref(&self.bid),
        };
        self.encoder
            .encode_json(&resp, &mut self.out)
            .expect("a bid the decision made encodes");
        self.bytes = black_box(self.out.len());
    }
}

/// The in-run baseline: the same body parsed into a `serde_json::Value` (a DOM with
/// an allocation per string, array and object), the way a bidder without a tuned
/// parser would read it.
pub struct SerdeBaseline<'b> {
    body: &'b [u8],
}

impl<'b> SerdeBaseline<'b> {
    pub fn new(body: &'b [u8]) -> SerdeBaseline<'b> {
        SerdeBaseline { body }
    }
}

impl Scenario for SerdeBaseline<'_> {
    fn prepare(&mut self, _slot: usize) {}

    fn call(&mut self, _slot: usize) {
        let doc: serde_json::Value =
            serde_json::from_slice(black_box(self.body)).expect("the body is JSON");
        black_box(doc);
    }
}
