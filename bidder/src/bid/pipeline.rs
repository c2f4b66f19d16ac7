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
use crate::money::ledger::{HeldBid, LedgerInbox, Unnoticed, INBOX_CAPACITY};
use crate::money::notice::{NoticeSigner, SignerError};
use crate::openrtb::scratch::reuse_vec;
use crate::openrtb::{BidRequest, ParseError, Parser};
use crate::respond::{BidOut, CreativeOut, EncodeError, Encoder, Format, ResponseOut};
use crate::supply::SupplyStore;

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
    /// ads.txt and sellers.json as the fetcher last published them (an empty store
    /// unless the daemon shares its own: every file then counts as unavailable).
    pub supply: Arc<SupplyStore>,
}

/// Sets each partner's `max_held_micros` in `budgets`. Partners are indexed by
/// position: a reload that adds or removes one moves the limits with the names, and
/// clears them past the last.
pub fn apply_partner_holds(catalog: &Catalog, budgets: &Budgets) {
    for idx in 0..crate::limits::MAX_PARTNERS {
        let max = catalog.partners.get(idx).and_then(|p| p.max_held_micros);
        budgets.set_partner_max_held(idx as u16, max);
    }
}

impl Bidding {
    /// A pipeline's shared state of its own for `catalog`: every campaign's full daily
    /// budget and a production-size ledger inbox (`bidder decide`, tests, benchmarks).
    pub fn new(catalog: Catalog, strategy: Arc<dyn StrategySource>, clock: Clock) -> Bidding {
        let budgets = Budgets::new(catalog.campaigns.iter().map(|c| c.daily_budget_micros));
        apply_partner_holds(&catalog, &budgets);
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
            supply: Arc::default(),
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
    /// The encoding of the answer's body (bid or no-bid).
    pub format: Format,
}

/// How to answer a request.
#[derive(Debug)]
pub enum Answer<'w> {
    /// 200 with this BidResponse, in the arrival's format.
    Bid(&'w [u8]),
    /// No bid: 204, or 200 with the request id and `nbr` (`{"id":…,"nbr":N}` in JSON)
    /// when the partner asked for a body.
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
        let mut decider = Decider::new(
            &bidding.catalog,
            Arc::clone(&stats),
            u64::from(worker_id) << 32 | 0x9E37_79B9,
        );
        decider.set_supply(Arc::clone(&bidding.supply));
        Ok(Pipeline {
            parser: Parser::new(),
            campaigns: Arc::clone(decider.campaign_counts()),
            decider,
            encoder: Encoder::new(signer),
            bid_ids: BidIdGen::new(settings.host_id, worker_id),
            bids: Vec::with_capacity(crate::limits::MAX_BIDS_PER_RESPONSE),
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
    /// deadline cap)`; an answer not encoded and signed by then is a no-bid
    /// (`deadline`) and gives its reservations back, so no stale bid ever leaves.
    ///
    /// Fail closed on money: the ledger takes every bid of a response before the
    /// response is returned (room is claimed for all of them, or none is sent), and a
    /// bid that is not sent gives its reservation back at once.
    ///
    /// Counts each chosen bid's fate per campaign: a bid once the ledger holds it,
    /// otherwise `deadline` or `technical_error` (the decision counted the rest).
    pub fn bid(&mut self, bidding: &Bidding, body: &mut [u8], arrival: Arrival) -> Answer<'_> {
        self.bid_within(bidding, body, arrival, crate::limits::MAX_RESPONSE_BYTES)
    }

    /// [`Pipeline::bid`] for an answer with room for `max_response_bytes` of body: a
    /// response that would not fit keeps the first imps' bids that do, and releases
    /// the rest (counted as `bids_dropped{cause="no_room"}`, no-bid `technical_error`).
    pub fn bid_within(
        &mut self,
        bidding: &Bidding,
        body: &mut [u8],
        arrival: Arrival,
        max_response_bytes: usize,
    ) -> Answer<'_> {
        let catalog = &bidding.catalog;
        let req = match self.parser.parse(body) {
            Ok(req) => req,
            Err(e) => {
                self.stats.no_bid_imps[NoBidReason::InvalidRequest as usize].inc();
                return Answer::Invalid(e);
            }
        };
        self.stats.imps_over_limit.add(req.imps_over_limit as u64);
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
        let wants_nbr_body = arrival
            .partner
            .is_some_and(|p| catalog.partners[usize::from(p)].nbr_body);

        // Encode first: every bid gets its id and its signed notice URLs, and as many
        // as fit the answer's room are kept (the first imps'); the rest give their
        // budget back.
        let mut bids: Vec<BidOut<'_>> = reuse_vec(std::mem::take(&mut self.bids));
        for chosen in &decision.bids {
            let bid_id = self.bid_ids.next_id(arrival.now_ms);
            bids.push(bid_out(catalog, &req, chosen, bid_id));
        }
        self.out.clear();
        let mut kept = bids.len();
        let mut no_room = 0;
        while kept > 0 {
            let resp = ResponseOut {
                request_id: req.id,
                seat: &catalog.settings.seat,
                cur: &catalog.settings.currency,
                bids: &bids[..kept],
            };
            match self.encoder.encode_within(
                arrival.format,
                &resp,
                &mut self.out,
                max_response_bytes,
            ) {
                Ok(()) => break,
                // Keep the share that fits at the average size, at least one fewer.
                Err(EncodeError::TooLarge(written)) => {
                    let fits = (kept * max_response_bytes / written.max(1)).min(kept - 1);
                    no_room += kept - fits;
                    kept = fits;
                }
                // Our bug or a bad configuration: nothing is sent.
                Err(_) => kept = 0,
            }
        }
        if kept < bids.len() {
            let dropped = (bids.len() - kept) as u64;
            self.stats.no_bid_imps[NoBidReason::TechnicalError as usize].add(dropped);
            self.stats.bids_dropped_no_room.add(no_room as u64);
            self.dropped_bids += dropped;
        }
        // The deadline covers the decision, the encoding and the signing: a late
        // answer is not sent, whatever it would have carried.
        let late = monotonic_now() >= deadline;
        if late {
            self.stats.deadline_missed.inc();
            reason = Some(NoBidReason::Deadline);
        }
        // The ledger must take every bid before any leaves: room for all, or none.
        let mut claim = None;
        if !late && kept > 0 {
            claim = bidding.inbox.claim(kept);
            if claim.is_none() {
                self.stats.no_bid_imps[NoBidReason::TechnicalError as usize].add(kept as u64);
                self.stats.bids_dropped_ledger_full.add(kept as u64);
                self.dropped_bids += kept as u64;
            }
        }
        // The partner's horizon: how long its notices may take before the money goes
        // back (a later win is still charged, see money/ledger.rs).
        let partner = arrival
            .partner
            .and_then(|p| catalog.partners.get(usize::from(p)));
        let horizon_ms =
            partner.map_or(catalog.settings.reservation_ttl_ms, |p| p.notice_horizon_ms);
        let unnoticed = partner.map_or(Unnoticed::Release, |p| p.unnoticed_bids);
        let expires_at_ms = arrival.now_ms + horizon_ms;
        for (i, chosen) in decision.bids.drain(..).enumerate() {
            let slot = catalog.campaigns[chosen.campaign].budget_slot;
            match claim.as_mut().filter(|_| i < kept) {
                Some(claim) => {
                    claim.hold(HeldBid {
                        bid_id: bids[i].bid_id,
                        reservation: chosen.reservation,
                        expires_at_ms,
                        user_key: chosen.user_key,
                        unnoticed,
                        segment: chosen.segment.0,
                    });
                    counts.bid(slot);
                }
                None => {
                    bidding.budgets.release(chosen.reservation);
                    let why = if late {
                        NoBidReason::Deadline
                    } else {
                        NoBidReason::TechnicalError
                    };
                    counts.no_bid(slot, why);
                }
            }
        }
        let sent = claim.is_some();
        let reason = reason.unwrap_or(NoBidReason::TechnicalError);
        if !sent {
            self.out.clear();
            if wants_nbr_body {
                self.encoder
                    .encode_nobid(arrival.format, req.id, reason.nbr(), &mut self.out);
            }
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
        creative: CreativeOut {
            campaign_id: &campaign.id,
            creative_id: &creative.id,
            adm: &creative.adm,
            adomain: &creative.adomain,
            cat: &creative.cat,
            attr: &creative.attr,
            w: creative.w,
            h: creative.h,
            mtype: creative.media as u8,
        },
        deal_id,
        template: Some(&creative.template),
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
