//! The bid decision: a parsed request and a catalog in, a bid or a no-bid reason per
//! imp out, with the budget for every bid reserved before it can leave.
//!
//! Three stages, cheapest first:
//! 1. **Request filter** ([`filter`]): intersect the index's campaign sets for what
//!    the whole request carries (partner, hour, geo, device, publisher, category,
//!    invalid traffic, privacy, supply chain against ads.txt and sellers.json). No
//!    per-campaign work.
//! 2. **Imp filter**: add the imp's media types and banner sizes.
//! 3. **Candidates** ([`candidate`]): for each remaining campaign, strategy, deals,
//!    creative fit and block lists, price and floor, pacing, budget. The best price
//!    per imp wins and reserves its budget.
//!
//! A [`Decider`] belongs to one worker and is reused for every request: its sets and
//! vectors are sized at start, so deciding allocates nothing in steady state. Besides
//! the per-request answer it counts, per campaign, how each imp the campaign was
//! evaluated for ended ([`campaign_counts`]).

mod blocked;
pub mod campaign_counts;
mod candidate;
pub mod consent;
mod filter;
pub mod ivt;
mod reason;
pub mod segment;
pub mod strategy;
pub mod supply;
mod text_cache;

pub use campaign_counts::{CampaignCounts, CampaignFigures, CampaignTotals, Counting};
pub use reason::{DecisionStats, NoBidReason};

use std::sync::Arc;

use bidder_common::table::segment::SegmentKey;

use crate::catalog::{CampaignIdx, CampaignSet, Catalog, PartnerIdx};
use crate::decide::segment::segment_of;
use crate::decide::strategy::StrategySource;
use crate::money::budget::{Budgets, Reservation};
use crate::money::frequency::{user_key, UserSource};
use crate::openrtb::BidRequest;
use crate::supply::SupplyStore;

/// One bid the decision made, its budget already reserved.
#[derive(Debug)]
pub struct ChosenBid {
    /// Position of the imp in the request.
    pub imp: usize,
    pub campaign: CampaignIdx,
    /// Position of the creative in the campaign.
    pub creative: usize,
    /// The bid price, CPM micros in the catalog's currency.
    pub price_micros: i64,
    /// Position of the deal in the imp's `pmp.deals`, when bidding through one.
    pub deal: Option<usize>,
    /// Budget held for this bid: the price of one impression, rounded up.
    pub reservation: Reservation,
    /// The user a win counts against, when the campaign has a frequency cap.
    pub user_key: Option<u64>,
    /// The imp's market segment (its notices are counted there, for the controller).
    pub segment: SegmentKey,
}

/// The outcome for one request. Reused between requests by its [`Decider`].
#[derive(Debug, Default)]
pub struct Decision {
    /// At most one bid per imp, in imp order.
    pub bids: Vec<ChosenBid>,
    /// Imps without a bid and why, in imp order.
    pub no_bids: Vec<(usize, NoBidReason)>,
}

impl Decision {
    /// The reason to report when nothing was bid: the latest stage any imp reached.
    pub fn request_reason(&self) -> Option<NoBidReason> {
        if !self.bids.is_empty() {
            return None;
        }
        self.no_bids.iter().map(|(_, r)| *r).max()
    }

    /// Gives every reservation back (dry runs, a response that could not be sent).
    pub fn release_all(&mut self, budgets: &Budgets) {
        for bid in self.bids.drain(..) {
            budgets.release(bid.reservation);
        }
    }
}

/// What the decision needs besides the request: who sent it and when.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub partner: Option<PartnerIdx>,
    /// Wall-clock time of arrival, Unix seconds (dayparts).
    pub now_unix_s: u64,
    /// The user frequency caps count, when some campaign has a cap and the request
    /// names one (`money::frequency::user_key`).
    pub user_key: Option<u64>,
}

/// Per-worker decision state: scratch campaign sets, candidate list, counters and the
/// pacing random stream. Never shared between threads.
pub struct Decider {
    blocked: blocked::Blocked,
    request_set: CampaignSet,
    imp_set: CampaignSet,
    scratch: CampaignSet,
    candidates: Vec<candidate::Candidate>,
    decision: Decision,
    rng: u64,
    stats: Arc<DecisionStats>,
    /// `stats`' per-campaign table, sized for the catalog this decider was built for.
    campaigns: Arc<CampaignCounts>,
    /// Decoded consent strings, for the catalog's vendor id.
    consent: consent::Decoder,
    /// What each user agent seen says, for the catalog's invalid-traffic lists.
    user_agents: ivt::UserAgents,
    /// The supply chain's files (an empty store until [`Decider::set_supply`]).
    supply: Arc<SupplyStore>,
    /// Supply-chain verdicts, for the store's current view.
    supply_verdicts: supply::Verdicts,
}

impl Decider {
    /// A decider for catalogs of up to `catalog.index.width` campaigns, counting into
    /// `stats` (kept across catalog reloads); `seed` makes pacing reproducible in tests
    /// (use a per-worker value in production).
    pub fn new(catalog: &Catalog, stats: Arc<DecisionStats>, seed: u64) -> Decider {
        let width = catalog.index.width;
        Decider {
            blocked: blocked::Blocked::new(&catalog.vocabulary),
            request_set: CampaignSet::empty(width),
            imp_set: CampaignSet::empty(width),
            scratch: CampaignSet::empty(width),
            candidates: Vec::with_capacity(width.min(4_096)),
            decision: Decision {
                bids: Vec::with_capacity(crate::limits::MAX_IMPS),
                no_bids: Vec::with_capacity(crate::limits::MAX_IMPS),
            },
            rng: seed | 1,
            campaigns: stats.campaign_counts_for(catalog),
            consent: consent::Decoder::new(catalog.settings.gvl_vendor_id),
            user_agents: ivt::UserAgents::default(),
            supply: Arc::default(),
            supply_verdicts: supply::Verdicts::default(),
            stats,
        }
    }

    /// Reads the supply chain's files from `store` (the process's one store, which
    /// the control thread's fetcher fills).
    pub fn set_supply(&mut self, store: Arc<SupplyStore>) {
        self.supply = store;
    }

    /// This decider's counters.
    pub fn stats(&self) -> &DecisionStats {
        &self.stats
    }

    /// This decider's per-campaign counters. The decision counts every evaluated
    /// campaign's outcome except that of the bids it chooses: their fate (sent, or
    /// dropped at the deadline or on our error) is the caller's to count, with
    /// [`Counting::bid`] or [`Counting::no_bid`].
    pub fn campaign_counts(&self) -> &Arc<CampaignCounts> {
        &self.campaigns
    }

    /// The imps of the last request that got no bid, by position, with why.
    pub fn last_no_bids(&self) -> &[(usize, NoBidReason)] {
        &self.decision.no_bids
    }

    /// Decides one request. The previous decision must have been consumed (its
    /// reservations handed on or released): a reservation dropped here would hold
    /// budget forever, so that is a bug and asserted.
    pub fn decide(
        &mut self,
        catalog: &Catalog,
        strategy: &dyn StrategySource,
        budgets: &Budgets,
        req: &BidRequest<'_>,
        ctx: Context,
    ) -> &mut Decision {
        assert!(
            self.decision.bids.is_empty(),
            "previous decision's reservations were not consumed"
        );
        assert_eq!(
            self.request_set.len_words(),
            catalog.index.width.div_ceil(64).max(1),
            "decider built for another catalog"
        );
        self.decision.no_bids.clear();
        self.stats.requests.inc();
        self.stats.imps.add(req.imps().len() as u64);

        self.blocked.fill(&catalog.vocabulary, req);
        let filtered = filter::request(
            catalog,
            req,
            ctx,
            &mut self.request_set,
            &mut self.scratch,
            filter::Signals {
                consent: &mut self.consent,
                user_agents: &mut self.user_agents,
                supply: &self.supply,
                supply_verdicts: &mut self.supply_verdicts,
                stats: &self.stats,
            },
        );
        for i in 0..req.imps().len() {
            let outcome = match filtered {
                Err(reason) => Err(reason),
                Ok(()) => self.decide_imp(catalog, strategy, budgets, req, ctx, i),
            };
            match outcome {
                Ok(bid) => self.decision.bids.push(bid),
                Err(reason) => {
                    self.stats.no_bid_imps[reason as usize].inc();
                    self.decision.no_bids.push((i, reason));
                }
            }
        }
        self.stats.bids.add(self.decision.bids.len() as u64);
        if self.decision.bids.is_empty() {
            self.stats.no_bid_requests.inc();
        }
        &mut self.decision
    }

    fn decide_imp(
        &mut self,
        catalog: &Catalog,
        strategy: &dyn StrategySource,
        budgets: &Budgets,
        req: &BidRequest<'_>,
        ctx: Context,
        i: usize,
    ) -> Result<ChosenBid, NoBidReason> {
        let imp = &req.imps()[i];
        filter::imp(
            catalog,
            req,
            imp,
            &self.request_set,
            &mut self.imp_set,
            &mut self.scratch,
        )?;
        let floor_micros =
            filter::floor_in_our_currency(catalog, imp.bidfloor_micros, imp.bidfloorcur)
                .ok_or(NoBidReason::FloorCurrencyUnsupported)?;
        self.candidates.clear();
        let mut furthest: Option<NoBidReason> = None;
        let segment = segment_of(req, imp);
        let env = candidate::Env {
            catalog,
            strategy,
            budgets,
            req,
            imp,
            segment,
            floor_micros,
            blocked: &self.blocked,
            user_key: ctx.user_key,
            now_ms: ctx.now_unix_s * 1_000,
        };
        // Campaigns come best-first (the catalog orders them by the most they can
        // bid): evaluate until no campaign left can beat the best bid found. A best bid
        // that loses its budget race is dropped and the search goes on. Every campaign
        // evaluated is counted once, with how it ended.
        let counts = self.campaigns.counting();
        let mut remaining = self.imp_set.iter().peekable();
        let mut best: Option<usize> = None;
        loop {
            while let Some(&c) = remaining.peek() {
                let beaten = best.is_some_and(|b| {
                    catalog.campaigns[c].max_price_cpm_micros <= self.candidates[b].price_micros
                });
                if beaten {
                    break;
                }
                remaining.next();
                self.stats.candidates.inc();
                match candidate::evaluate(&env, c, &mut self.rng) {
                    Ok(found) => {
                        let better = best
                            .is_none_or(|b| found.price_micros > self.candidates[b].price_micros);
                        self.candidates.push(found);
                        if better {
                            best = Some(self.candidates.len() - 1);
                        }
                    }
                    Err(reason) => {
                        counts.no_bid(catalog.campaigns[c].budget_slot, reason);
                        furthest = furthest.max(Some(reason));
                    }
                }
            }
            let Some(b) = best else {
                break;
            };
            let found = self.candidates.swap_remove(b);
            let cost = crate::money::impression_cost_micros(found.price_micros);
            if let Ok(reservation) = budgets.reserve_for(found.slot, cost, ctx.partner) {
                for lost in &self.candidates {
                    counts.outbid(lost.slot);
                }
                return Ok(ChosenBid {
                    imp: i,
                    campaign: found.campaign,
                    creative: found.creative,
                    price_micros: found.price_micros,
                    deal: found.deal,
                    reservation,
                    user_key: ctx
                        .user_key
                        .filter(|_| catalog.campaigns[found.campaign].frequency_cap.is_some()),
                    segment,
                });
            }
            // Lost the race for the last of the budget, or of this host's fleet share.
            let short = if budgets.waits_on_fleet(found.slot, cost) {
                NoBidReason::BudgetUnavailable
            } else {
                NoBidReason::BudgetExhausted
            };
            counts.no_bid(found.slot, short);
            furthest = furthest.max(Some(short));
            best = best_candidate(&self.candidates);
        }
        // The imp filter left at least one campaign, so some candidate was evaluated.
        Err(furthest.expect("imp filter admitted no campaign"))
    }
}

/// The request's user for frequency caps: the first of `sources` it carries.
pub fn request_user(req: &BidRequest<'_>, sources: &[UserSource]) -> Option<u64> {
    sources.iter().find_map(|&source| {
        let id = match source {
            UserSource::UserId => req.user.as_ref()?.id,
            UserSource::BuyerUid => req.user.as_ref()?.buyeruid,
            UserSource::DeviceIfa => req.device.as_ref()?.ifa,
        }?;
        (!id.is_empty()).then(|| user_key(source, id))
    })
}

/// Position of the highest price, the lowest campaign index among equals.
fn best_candidate(candidates: &[candidate::Candidate]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, c) in candidates.iter().enumerate() {
        let better = best.is_none_or(|b| {
            let b = &candidates[b];
            (c.price_micros, std::cmp::Reverse(c.campaign))
                > (b.price_micros, std::cmp::Reverse(b.campaign))
        });
        if better {
            best = Some(i);
        }
    }
    best
}
