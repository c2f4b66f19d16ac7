//! Per-campaign outcome counters: for every imp a campaign was evaluated for, how it
//! ended — a bid, outbid by another of our campaigns, or a no-bid reason of its own.
//!
//! Every worker counts into a table of its own ([`CampaignCounts`], single-writer
//! [`Counter`]s: no atomic read-modify-write, no cache line shared with another
//! worker), indexed by budget slot so a campaign keeps its counts across reloads.
//! Whoever reports them (the stats table's publisher, the `/metrics` scrape) sums
//! every worker's table with [`CampaignTotals`].
//!
//! Each evaluated imp ends exactly one way, so a campaign's requests are counted as
//! the sum of its outcomes, `requests = bids + outbid + Σ no_bids`: one counter
//! increment per evaluated campaign, the least the hot path can do.

use std::sync::Arc;

use crate::metrics::Counter;

use super::{DecisionStats, NoBidReason};

/// Per-campaign no-bid reasons counted (see [`NoBidReason::PER_CAMPAIGN`]).
pub const PER_CAMPAIGN_REASONS: usize = NoBidReason::PER_CAMPAIGN.len();

/// One campaign's counters in one worker: 120 bytes.
#[derive(Debug, Default)]
struct CampaignCounters {
    bids: Counter,
    outbid: Counter,
    no_bids: [Counter; PER_CAMPAIGN_REASONS],
}

/// One worker's counters of every campaign, by budget slot. Written only by the worker
/// that owns its [`DecisionStats`]; sized when the worker builds its decider for a
/// catalog ([`DecisionStats::campaign_counts_for`]), never per request.
#[derive(Default)]
pub struct CampaignCounts {
    campaigns: Box<[CampaignCounters]>,
}

impl std::fmt::Debug for CampaignCounts {
    /// The size only: a table can hold 100,000 campaigns.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CampaignCounts")
            .field("slots", &self.campaigns.len())
            .finish_non_exhaustive()
    }
}

impl CampaignCounts {
    /// Counts for `slots` budget slots, starting from `from`'s (a worker growing its
    /// table for a catalog with new campaigns keeps what it counted).
    pub(super) fn grown(from: &CampaignCounts, slots: usize) -> CampaignCounts {
        let campaigns: Box<[CampaignCounters]> =
            (0..slots).map(|_| CampaignCounters::default()).collect();
        for (new, old) in campaigns.iter().zip(from.campaigns.iter()) {
            new.bids.add(old.bids.get());
            new.outbid.add(old.outbid.get());
            for (n, o) in new.no_bids.iter().zip(&old.no_bids) {
                n.add(o.get());
            }
        }
        CampaignCounts { campaigns }
    }

    /// Budget slots covered.
    pub fn len(&self) -> usize {
        self.campaigns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.campaigns.is_empty()
    }

    /// The counting side, for one decision: a copy of the table's bounds, so the hot
    /// loop keeps them in registers instead of reloading them after every counter
    /// store.
    #[inline]
    pub fn counting(&self) -> Counting<'_> {
        Counting {
            campaigns: &self.campaigns,
        }
    }
}

/// How the owning worker counts; see [`CampaignCounts::counting`]. Every method must
/// only be called by the worker that owns the table.
#[derive(Clone, Copy)]
pub struct Counting<'c> {
    campaigns: &'c [CampaignCounters],
}

impl Counting<'_> {
    /// The counters of `slot`. Every campaign of the catalog the table was sized for
    /// has one; a miss is a bug (asserted in debug builds) and counts nothing.
    #[inline]
    fn at(&self, slot: usize) -> Option<&CampaignCounters> {
        let c = self.campaigns.get(slot);
        debug_assert!(c.is_some(), "budget slot {slot} past the counters");
        c
    }

    /// A bid of the campaign left in a response.
    #[inline]
    pub fn bid(&self, slot: usize) {
        if let Some(c) = self.at(slot) {
            c.bids.inc();
        }
    }

    /// The campaign could bid but another of ours bid higher.
    #[inline]
    pub fn outbid(&self, slot: usize) {
        if let Some(c) = self.at(slot) {
            c.outbid.inc();
        }
    }

    /// The campaign did not bid on an imp it was evaluated for, for `reason`, which
    /// must be one of [`NoBidReason::PER_CAMPAIGN`] (asserted in debug builds: a new
    /// per-campaign reason must be listed there).
    #[inline]
    pub fn no_bid(&self, slot: usize, reason: NoBidReason) {
        let index = reason.per_campaign_index();
        debug_assert!(index.is_some(), "{reason} is not a per-campaign reason");
        if let (Some(c), Some(i)) = (self.at(slot), index) {
            if let Some(n) = c.no_bids.get(i) {
                n.inc();
            }
        }
    }
}

/// One campaign's counts summed over every worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CampaignFigures {
    /// Imps the campaign was evaluated for (the index let it through and its own
    /// checks ran; campaigns skipped because they could not beat a bid already found
    /// for the imp are not counted): the sum of the outcomes below.
    pub requests: u64,
    /// Bids that left in a response.
    pub bids: u64,
    /// Imps where the campaign could bid but another of ours bid higher.
    pub outbid: u64,
    /// Imps without a bid from the campaign, by [`NoBidReason::PER_CAMPAIGN`] position.
    pub no_bids: [u64; PER_CAMPAIGN_REASONS],
}

impl CampaignFigures {
    /// The count for `reason` (0 for a reason not counted per campaign).
    pub fn no_bid(&self, reason: NoBidReason) -> u64 {
        reason.per_campaign_index().map_or(0, |i| self.no_bids[i])
    }
}

/// Every worker's campaign counters, taken once per report so a report of many
/// campaigns loads each worker's table once.
pub struct CampaignTotals {
    workers: Vec<Arc<CampaignCounts>>,
}

impl CampaignTotals {
    /// The tables of `workers` as they are now.
    pub fn of(workers: &[Arc<DecisionStats>]) -> CampaignTotals {
        CampaignTotals {
            workers: workers.iter().map(|w| w.campaign_counts()).collect(),
        }
    }

    /// The figures of the campaign in budget slot `slot`, summed over every worker.
    pub fn campaign(&self, slot: usize) -> CampaignFigures {
        let mut f = CampaignFigures::default();
        for c in self.workers.iter().filter_map(|w| w.campaigns.get(slot)) {
            f.bids += c.bids.get();
            f.outbid += c.outbid.get();
            for (sum, n) in f.no_bids.iter_mut().zip(&c.no_bids) {
                *sum += n.get();
            }
        }
        f.requests = f.bids + f.outbid + f.no_bids.iter().sum::<u64>();
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growing_keeps_the_counts_and_totals_sum_workers() {
        let a = CampaignCounts::grown(&CampaignCounts::default(), 2);
        a.counting().bid(1);
        a.counting().no_bid(1, NoBidReason::Paced);
        let a = CampaignCounts::grown(&a, 4);
        a.counting().outbid(3);
        let b = CampaignCounts::grown(&CampaignCounts::default(), 4);
        b.counting().no_bid(1, NoBidReason::Paced);
        let (wa, wb) = (DecisionStats::default(), DecisionStats::default());
        wa.campaigns.store(Arc::new(a));
        wb.campaigns.store(Arc::new(b));
        let totals = CampaignTotals::of(&[Arc::new(wa), Arc::new(wb)]);
        let one = totals.campaign(1);
        assert_eq!((one.requests, one.bids, one.outbid), (3, 1, 0));
        assert_eq!(one.no_bid(NoBidReason::Paced), 2);
        assert_eq!(one.no_bid(NoBidReason::Coppa), 0);
        let three = totals.campaign(3);
        assert_eq!((three.requests, three.outbid), (1, 1));
        assert_eq!(totals.campaign(9), CampaignFigures::default());
    }
}
