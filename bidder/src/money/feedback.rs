//! What exchanges tell us about the market in their notices, counted per campaign for
//! the agent's controller: in first-price auctions a win's price is our own bid, so
//! the market shows only in `${AUCTION_MIN_TO_WIN}` (the price that would have tied
//! the best other offer) and, where an exchange withholds it, in which bids won and
//! which lost (OpenRTB 2.6 §4.4).
//!
//! Each bid's first notice is counted once: its min-to-win by that price's bucket, or
//! without one, a win or a loss by our bid's bucket. The buckets are on a log scale of
//! the campaign's max bid (`bidder_common::table::stats::feedback_bucket`); a new max
//! bid starts the counts again, since old buckets would mean other prices. Counts are
//! cumulative and wrap; readers take differences.

use std::sync::atomic::{AtomicI64, AtomicU32, Ordering::Relaxed};
use std::sync::OnceLock;

use bidder_common::table::stats::{feedback_bucket, FEEDBACK_BUCKETS};

/// A campaign's budget slot (`budget::BudgetSlot`; `Budgets` owns this table, so
/// this file does not import it back).
type BudgetSlot = usize;

/// How a bid's auction ended, as its notice said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Won,
    Lost,
}

/// One campaign's counts.
#[derive(Debug)]
struct Counts {
    reference_cpm_micros: AtomicI64,
    min_to_win: [AtomicU32; FEEDBACK_BUCKETS],
    won_at: [AtomicU32; FEEDBACK_BUCKETS],
    lost_at: [AtomicU32; FEEDBACK_BUCKETS],
}

impl Counts {
    fn new() -> Counts {
        Counts {
            reference_cpm_micros: AtomicI64::new(0),
            min_to_win: std::array::from_fn(|_| AtomicU32::new(0)),
            won_at: std::array::from_fn(|_| AtomicU32::new(0)),
            lost_at: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }

    fn arrays(&self) -> [&[AtomicU32; FEEDBACK_BUCKETS]; 3] {
        [&self.min_to_win, &self.won_at, &self.lost_at]
    }
}

/// A campaign's counts as the stats table carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedbackSnapshot {
    pub reference_cpm_micros: i64,
    pub min_to_win: [u32; FEEDBACK_BUCKETS],
    pub won_at: [u32; FEEDBACK_BUCKETS],
    pub lost_at: [u32; FEEDBACK_BUCKETS],
}

/// Every campaign slot's counts. The notice desk writes; the stats publisher reads.
/// A slot's counts (584 bytes) are allocated when a campaign is first configured in
/// it, so the spare slots a daemon keeps for reloads cost a pointer each.
#[derive(Debug)]
pub struct MarketFeedback {
    slots: Box<[OnceLock<Box<Counts>>]>,
}

impl MarketFeedback {
    pub fn new(slots: usize) -> MarketFeedback {
        MarketFeedback {
            slots: (0..slots).map(|_| OnceLock::new()).collect(),
        }
    }

    fn counts(&self, slot: BudgetSlot) -> Option<&Counts> {
        self.slots.get(slot)?.get().map(|c| &**c)
    }

    /// Sets the price scale of `slot` (the campaign's max bid); a change clears the
    /// counts. Called when a catalog is installed.
    pub fn set_reference(&self, slot: BudgetSlot, max_bid_cpm_micros: i64) {
        let Some(cell) = self.slots.get(slot) else {
            return;
        };
        let c = cell.get_or_init(|| Box::new(Counts::new()));
        if c.reference_cpm_micros.load(Relaxed) != max_bid_cpm_micros {
            // Cleared before the new scale is set: a publication in between shows the
            // counts going down on the old scale, which readers take as a restart,
            // never old counts on the new scale.
            for array in c.arrays() {
                array.iter().for_each(|n| n.store(0, Relaxed));
            }
            c.reference_cpm_micros.store(max_bid_cpm_micros, Relaxed);
        }
    }

    /// Counts one bid's first notice: our bid's CPM and, if the notice carried one,
    /// the min-to-win CPM (both in our currency).
    pub fn record(
        &self,
        slot: BudgetSlot,
        ended: Ended,
        bid_cpm_micros: i64,
        min_to_win_cpm_micros: Option<i64>,
    ) {
        let Some(c) = self.counts(slot) else { return };
        let reference = c.reference_cpm_micros.load(Relaxed);
        let (array, price) = match (min_to_win_cpm_micros, ended) {
            (Some(price), _) => (&c.min_to_win, price),
            (None, Ended::Won) => (&c.won_at, bid_cpm_micros),
            (None, Ended::Lost) => (&c.lost_at, bid_cpm_micros),
        };
        array[feedback_bucket(price, reference)].fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self, slot: BudgetSlot) -> Option<FeedbackSnapshot> {
        let c = self.counts(slot)?;
        let load = |a: &[AtomicU32; FEEDBACK_BUCKETS]| std::array::from_fn(|i| a[i].load(Relaxed));
        Some(FeedbackSnapshot {
            reference_cpm_micros: c.reference_cpm_micros.load(Relaxed),
            min_to_win: load(&c.min_to_win),
            won_at: load(&c.won_at),
            lost_at: load(&c.lost_at),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_notice_counts_in_the_array_its_information_allows() {
        let f = MarketFeedback::new(2);
        f.set_reference(1, 4_000_000);
        f.record(1, Ended::Won, 2_000_000, Some(1_500_000));
        f.record(1, Ended::Lost, 2_000_000, Some(2_600_000));
        f.record(1, Ended::Won, 2_000_000, None);
        f.record(1, Ended::Lost, 1_000_000, None);
        let s = f.snapshot(1).unwrap();
        assert_eq!(s.reference_cpm_micros, 4_000_000);
        assert_eq!(s.min_to_win[feedback_bucket(1_500_000, 4_000_000)], 1);
        assert_eq!(s.min_to_win[feedback_bucket(2_600_000, 4_000_000)], 1);
        assert_eq!(s.min_to_win.iter().sum::<u32>(), 2);
        assert_eq!(s.won_at[feedback_bucket(2_000_000, 4_000_000)], 1);
        assert_eq!(s.lost_at[feedback_bucket(1_000_000, 4_000_000)], 1);
        // A slot no campaign was configured in has no counts and ignores notices.
        f.record(0, Ended::Won, 1, None);
        assert!(f.snapshot(0).is_none());
        // The same max bid keeps the counts; another one starts them again.
        f.set_reference(1, 4_000_000);
        assert_eq!(f.snapshot(1).unwrap(), s);
        f.set_reference(1, 5_000_000);
        let fresh = f.snapshot(1).unwrap();
        assert_eq!(
            fresh
                .won_at
                .iter()
                .chain(&fresh.lost_at)
                .chain(&fresh.min_to_win)
                .sum::<u32>(),
            0
        );
        // A slot out of range is ignored, never a panic.
        f.record(9, Ended::Won, 1, None);
        assert!(f.snapshot(9).is_none());
    }
}
