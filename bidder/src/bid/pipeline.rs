//! Bidding: one request body in, the answer's bytes out. The brain both engines
//! (io_uring and tokio) call; they own I/O and nothing else.
//!
//! parse ([`crate::openrtb`]) → decide ([`crate::decide`]) → hand every reservation
//! to the ledger → encode ([`crate::respond`]). A bid leaves only once the ledger
//! holds its reservation, so no budget is ever held by a bid nobody tracks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::catalog::{Catalog, PartnerIdx};
use crate::clock::{monotonic_now, Clock};
use crate::decide::strategy::StrategySource;
use crate::decide::{CampaignCounts, ChosenBid, Context, Decider, DecisionStats, NoBidReason};
use crate::money::bid_id::{BidId, BidIdGen};
use crate::money::budget::Budgets;
use crate::money::ledger::{HeldBid, LedgerInbox, INBOX_CAPACITY};
use crate::money::notice::{NoticeSigner, SignerError};
use crate::openrtb::scratch::reuse_vec;
use crate::openrtb::{BidRequest, ParseError, Parser};
use crate::respond::{encode_nobid_json, BidOut, Encoder, ResponseOut};

/// Bytes the response buffer starts with: a banner response with its notice URLs fits.
const INITIAL_RESPONSE_BYTES: usize = 16 * 1024;

/// What every worker shares: the catalog, the budgets, strategy, the ledger inbox and
/// the calendar clock.
#[derive(Clone)]
pub struct Bidding {
    pub catalog: Arc<Catalog>,
    pub budgets: Arc<Budgets>,
    pub strategy: Arc<dyn StrategySource>,
    pub inbox: Arc<LedgerInbox>,
    /// The process's calendar: an engine stamps each [`Arrival`] from it.
    pub clock: Clock,
}

impl Bidding {
    /// A pipeline's shared state of its own for `catalog`: every campaign's full daily
    /// budget and a production-size ledger inbox (`bidder decide`, tests, benchmarks).
    pub fn new(catalog: Catalog, strategy: Arc<dyn StrategySource>, clock: Clock) -> Bidding {
        let budgets = Budgets::new(catalog.campaigns.iter().map(|c| c.daily_budget_micros));
        Bidding::sharing(
            Arc::new(catalog),
            Arc::new(budgets),
            Arc::new(LedgerInbox::new(INBOX_CAPACITY)),
            strategy,
            clock,
        )
    }

    /// Shared state whose budgets and ledger inbox outlive it (the daemon keeps them
    /// across reloads; the control port settles into them).
    pub fn sharing(
        catalog: Arc<Catalog>,
        budgets: Arc<Budgets>,
        inbox: Arc<LedgerInbox>,
        strategy: Arc<dyn StrategySource>,
        clock: Clock,
    ) -> Bidding {
        Bidding {
            catalog,
            budgets,
            strategy,
            inbox,
            clock,
        }
    }
}

/// Who sent a request and when it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub partner: Option<PartnerIdx>,
    /// Calendar time, ms since the Unix epoch, read once from [`Bidding::clock`]:
    /// dayparts, reservation expiry and bid ids all use this one reading.
    pub now_ms: u64,
    /// Monotonic time the request's last byte arrived: the deadline counts from here.
    pub at: Instant,
}

/// How to answer a request.
#[derive(Debug)]
pub enum Answer<'w> {
    /// 200 with this OpenRTB JSON BidResponse.
    Bid(&'w [u8]),
    /// No bid: 204, or 200 with `{"id":…,"nbr":N}` when the partner asked for a body.
    NoBid {
        reason: NoBidReason,
        body: Option<&'w [u8]>,
    },
    /// 400: the body is not a usable bid request.
    Invalid(ParseError),
}

/// Per-worker state: parser, decider, encoder, bid ids and the response buffer, all
/// allocated once and reused for every request.
pub struct Pipeline {
    parser: Parser,
    decider: Decider,
    encoder: Encoder,
    bid_ids: BidIdGen,
    bids: Vec<BidOut<'static>>,
    /// Budget slots of the campaigns in `bids`, to count each bid's fate.
    bid_slots: Vec<usize>,
    out: Vec<u8>,
    stats: Arc<DecisionStats>,
    /// The decider's per-campaign counters, held here too so a bid's fate can be
    /// counted while the decision is borrowed.
    campaigns: Arc<CampaignCounts>,
    /// Bids dropped because the ledger inbox was full or encoding failed.
    pub dropped_bids: u64,
}

impl Pipeline {
    /// A worker for `bidding`'s catalog; `worker_id` makes its bid ids unique; it
    /// counts into `stats`, which outlives it across catalog reloads.
    pub fn new(
        bidding: &Bidding,
        worker_id: u16,
        stats: Arc<DecisionStats>,
    ) -> Result<Pipeline, SignerError> {
        let settings = &bidding.catalog.settings;
        let signer = NoticeSigner::new(&settings.notice_hmac_key, &settings.notice_base_url)?;
        let decider = Decider::new(
            &bidding.catalog,
            Arc::clone(&stats),
            u64::from(worker_id) << 32 | 0x9E37_79B9,
        );
        Ok(Pipeline {
            parser: Parser::new(),
            campaigns: Arc::clone(decider.campaign_counts()),
            decider,
            encoder: Encoder::new(signer),
            bid_ids: BidIdGen::new(settings.host_id, worker_id),
            bids: Vec::with_capacity(crate::limits::MAX_BIDS_PER_RESPONSE),
            bid_slots: Vec::with_capacity(crate::limits::MAX_BIDS_PER_RESPONSE),
            out: Vec::with_capacity(INITIAL_RESPONSE_BYTES),
            stats,
            dropped_bids: 0,
        })
    }

    /// Decision counters of this worker (summed across workers at scrape time).
    pub fn stats(&self) -> &DecisionStats {
        &self.stats
    }

    /// The imps of the last request that got no bid (position in `imp`, reason).
    pub fn last_no_bids(&self) -> &[(usize, NoBidReason)] {
        self.decider.last_no_bids()
    }

    /// Answers one bid request. `body` is rewritten in place by the parser.
    ///
    /// Fail closed on time: the deadline is `arrival + min(tmax − network allowance,
    /// deadline cap)`; a decision that ends after it answers no-bid (`deadline`) and
    /// gives its reservations back, so no stale bid ever leaves.
    ///
    /// Counts each chosen bid's fate per campaign: a bid once it is encoded, otherwise
    /// `deadline` or `technical_error` (the decision counted the rest).
    pub fn bid(&mut self, bidding: &Bidding, body: &mut [u8], arrival: Arrival) -> Answer<'_> {
        let catalog = &bidding.catalog;
        let req = match self.parser.parse(body) {
            Ok(req) => req,
            Err(e) => {
                self.stats.no_bid_imps[NoBidReason::InvalidRequest as usize].inc();
                return Answer::Invalid(e);
            }
        };
        let deadline = arrival.at + deadline_budget(&catalog.settings, req.tmax_ms);
        let ctx = Context {
            partner: arrival.partner,
            now_unix_s: arrival.now_ms / 1000,
            user_key: if catalog.settings.frequency_capped {
                crate::decide::request_user(&req, &catalog.settings.user_sources)
            } else {
                None
            },
        };
        let strategy = bidding.strategy.as_ref();
        let decision = self
            .decider
            .decide(catalog, strategy, &bidding.budgets, &req, ctx);
        let mut reason = decision.request_reason();
        let counts = self.campaigns.counting();
        if monotonic_now() >= deadline {
            for late in &decision.bids {
                let slot = catalog.campaigns[late.campaign].budget_slot;
                counts.no_bid(slot, NoBidReason::Deadline);
            }
            decision.release_all(&bidding.budgets);
            self.stats.deadline_missed.inc();
            reason = Some(NoBidReason::Deadline);
        }

        // Hand every reservation to the ledger; a bid the ledger refused is dropped.
        let mut bids: Vec<BidOut<'_>> = reuse_vec(std::mem::take(&mut self.bids));
        self.bid_slots.clear();
        let expires_at_ms = arrival.now_ms + catalog.settings.reservation_ttl_ms;
        for chosen in decision.bids.drain(..) {
            let slot = catalog.campaigns[chosen.campaign].budget_slot;
            let bid_id = self.bid_ids.next_id(arrival.now_ms);
            let out = bid_out(catalog, &req, &chosen, bid_id);
            let held = HeldBid {
                bid_id,
                reservation: chosen.reservation,
                expires_at_ms,
                user_key: chosen.user_key,
            };
            if let Err(refused) = bidding.inbox.hold(held) {
                bidding.budgets.release(refused.reservation);
                counts.no_bid(slot, NoBidReason::TechnicalError);
                self.dropped_bids += 1;
                continue;
            }
            bids.push(out);
            self.bid_slots.push(slot);
        }

        self.out.clear();
        let sent = !bids.is_empty() && encode(&self.encoder, &mut self.out, catalog, req.id, &bids);
        if !bids.is_empty() && !sent {
            // Our bug or a bad config: the reservations sit in the ledger and expire.
            self.dropped_bids += bids.len() as u64;
        }
        for &slot in &self.bid_slots {
            if sent {
                counts.bid(slot);
            } else {
                counts.no_bid(slot, NoBidReason::TechnicalError);
            }
        }
        let wants_nbr_body = arrival
            .partner
            .is_some_and(|p| catalog.partners[usize::from(p)].nbr_body);
        let reason = reason.unwrap_or(NoBidReason::TechnicalError);
        if !sent && wants_nbr_body {
            self.out.clear();
            encode_nobid_json(req.id, reason.nbr(), &mut self.out);
        }
        self.bids = reuse_vec(bids);
        drop(req);
        if sent {
            return Answer::Bid(&self.out);
        }
        Answer::NoBid {
            reason,
            body: wants_nbr_body.then_some(self.out.as_slice()),
        }
    }
}

/// Encodes the response into `out`; false if the encoder refused it.
fn encode(
    encoder: &Encoder,
    out: &mut Vec<u8>,
    catalog: &Catalog,
    request_id: &str,
    bids: &[BidOut<'_>],
) -> bool {
    let resp = ResponseOut {
        request_id,
        seat: &catalog.settings.seat,
        cur: &catalog.settings.currency,
        bids,
    };
    encoder.encode_json(&resp, out).is_ok()
}

/// The encoder's view of a chosen bid, borrowed from the request and the catalog.
pub fn bid_out<'a>(
    catalog: &'a Catalog,
    req: &'a BidRequest<'a>,
    chosen: &ChosenBid,
    bid_id: BidId,
) -> BidOut<'a> {
    let imp = &req.imps()[chosen.imp];
    let campaign = &catalog.campaigns[chosen.campaign];
    let creative = &campaign.creatives[chosen.creative];
    let deal_id = chosen
        .deal
        .and_then(|d| imp.pmp.as_ref().map(|pmp| req.deals(pmp.deals)[d].id));
    BidOut {
        bid_id,
        imp_id: imp.id,
        price_micros: chosen.price_micros,
        campaign_id: &campaign.id,
        creative_id: &creative.id,
        adm: &creative.adm,
        adomain: &creative.adomain,
        cat: &creative.cat,
        attr: &creative.attr,
        w: creative.w,
        h: creative.h,
        mtype: creative.media as u8,
        deal_id,
    }
}

/// Time we allow ourselves: `tmax` (or the configured default) minus the network
/// allowance, capped; zero when the exchange left us no time at all.
fn deadline_budget(settings: &crate::catalog::Settings, tmax_ms: Option<u32>) -> Duration {
    let tmax = tmax_ms.unwrap_or(settings.default_tmax_ms);
    let ours = tmax
        .saturating_sub(settings.network_allowance_ms)
        .min(settings.deadline_cap_ms);
    Duration::from_millis(u64::from(ours))
}
