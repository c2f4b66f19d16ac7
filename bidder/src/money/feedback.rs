//! What exchanges tell us about the market in their notices, counted per campaign for
//! the agent's controller: in first-price auctions a win's price is our own bid, so
//! the market shows only in `${AUCTION_MIN_TO_WIN}` (the price that would have tied
//! the best other offer) and, where an exchange withholds it, in which bids won and
//! which lost (OpenRTB 2.6 §4.4).
//!
//! Each bid's first notice is counted once: its min-to-win by that price's bucket, or
//! without one, a win or a loss by our bid's bucket; once for the campaign and once
//! for its imp's market segment, in one of [`SEGMENTS_PER_CAMPAIGN`] slots given to
//! segments in the order they are first met (a segment met when every slot is taken
//! counts for the campaign only, and is counted in [`MarketFeedback::segments_full`]). The buckets are on a log scale of
//! the campaign's max bid (`bidder_common::table::stats::feedback_bucket`); a new max
//! bid starts the counts again, since old buckets would mean other prices. Counts are
//! cumulative and wrap; readers take differences.

use std::sync::atomic::{
    AtomicI64, AtomicU32, AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::OnceLock;

use bidder_common::table::segment::SEGMENTS_PER_CAMPAIGN;
use bidder_common::table::stats::{feedback_bucket, SegmentFeedback, FEEDBACK_BUCKETS};

/// A campaign's budget slot (`budget::BudgetSlot`; `Budgets` owns this table, so
/// this file does not import it back).
type BudgetSlot = usize;

/// How a bid's auction ended, as its notice said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Won,
    Lost,
}

type Buckets = [AtomicU32; FEEDBACK_BUCKETS];

/// Min-to-win, censored wins and censored losses, by price bucket.
#[derive(Debug)]
struct Arrays {
    min_to_win: Buckets,
    won_at: Buckets,
    lost_at: Buckets,
}

impl Arrays {
    fn new() -> Arrays {
        let zeros = || std::array::from_fn(|_| AtomicU32::new(0));
        Arrays {
            min_to_win: zeros(),
            won_at: zeros(),
            lost_at: zeros(),
        }
    }

    fn clear(&self) {
        for array in [&self.min_to_win, &self.won_at, &self.lost_at] {
            array.iter().for_each(|n| n.store(0, Relaxed));
        }
    }

    fn count(&self, ended: Ended, bid: i64, min_to_win: Option<i64>, reference: i64) {
        let (array, price) = match (min_to_win, ended) {
            (Some(price), _) => (&self.min_to_win, price),
            (None, Ended::Won) => (&self.won_at, bid),
            (None, Ended::Lost) => (&self.lost_at, bid),
        };
        array[feedback_bucket(price, reference)].fetch_add(1, Relaxed);
    }

    fn load(&self) -> [[u32; FEEDBACK_BUCKETS]; 3] {
        let load = |a: &Buckets| std::array::from_fn(|i| a[i].load(Relaxed));
        [
            load(&self.min_to_win),
            load(&self.won_at),
            load(&self.lost_at),
        ]
    }
}

/// One campaign's counts, and its segments'.
#[derive(Debug)]
struct Counts {
    reference_cpm_micros: AtomicI64,
    all: Arrays,
    /// Segment keys by slot (0: free). A slot is taken (Release) before its counts
    /// are added, and a reader loads the key (Acquire) before the counts and again
    /// after, so a publication may show a new segment with no counts, and never counts
    /// under another segment's key (a new max bid, on the reload path, frees slots
    /// while the notice desk counts).
    segment_keys: [AtomicU64; SEGMENTS_PER_CAMPAIGN],
    segments: [Arrays; SEGMENTS_PER_CAMPAIGN],
}

impl Counts {
    fn new() -> Counts {
        Counts {
            reference_cpm_micros: AtomicI64::new(0),
            all: Arrays::new(),
            segment_keys: std::array::from_fn(|_| AtomicU64::new(0)),
            segments: std::array::from_fn(|_| Arrays::new()),
        }
    }

    /// The slot of `segment`, taking a free one for a segment met first; `None` when
    /// every slot is another segment's. Only the notice desk's thread takes slots.
    fn slot_of(&self, segment: u64) -> Option<usize> {
        let keys = &self.segment_keys;
        if let Some(i) = keys.iter().position(|k| k.load(Acquire) == segment) {
            return Some(i);
        }
        let free = keys.iter().position(|k| k.load(Acquire) == 0)?;
        keys[free].store(segment, Release);
        Some(free)
    }
}

/// A campaign's counts as the stats table carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedbackSnapshot {
    pub reference_cpm_micros: i64,
    pub min_to_win: [u32; FEEDBACK_BUCKETS],
    pub won_at: [u32; FEEDBACK_BUCKETS],
    pub lost_at: [u32; FEEDBACK_BUCKETS],
    pub segments: [SegmentFeedback; SEGMENTS_PER_CAMPAIGN],
}

/// Every campaign slot's counts. The notice desk writes; the stats publisher reads.
/// A slot's counts (5.3 KB with its segments) are allocated when a campaign is first
/// configured in it, so the spare slots a daemon keeps for reloads cost a pointer each.
#[derive(Debug)]
pub struct MarketFeedback {
    slots: Box<[OnceLock<Box<Counts>>]>,
    segments_full: AtomicU64,
}

impl MarketFeedback {
    pub fn new(slots: usize) -> MarketFeedback {
        MarketFeedback {
            slots: (0..slots).map(|_| OnceLock::new()).collect(),
            segments_full: AtomicU64::new(0),
        }
    }

    fn counts(&self, slot: BudgetSlot) -> Option<&Counts> {
        self.slots.get(slot)?.get().map(|c| &**c)
    }

    /// Sets the price scale of `slot` (the campaign's max bid); a change clears the
    /// counts and frees the segment slots. Called when a catalog is installed.
    pub fn set_reference(&self, slot: BudgetSlot, max_bid_cpm_micros: i64) {
        let Some(cell) = self.slots.get(slot) else {
            return;
        };
        let c = cell.get_or_init(|| Box::new(Counts::new()));
        if c.reference_cpm_micros.load(Relaxed) != max_bid_cpm_micros {
            // Cleared before the new scale is set: a publication in between shows the
            // counts going down on the old scale, which readers take as a restart,
            // never old counts on the new scale.
            c.all.clear();
            for (key, arrays) in c.segment_keys.iter().zip(&c.segments) {
                key.store(0, Release);
                arrays.clear();
            }
            c.reference_cpm_micros.store(max_bid_cpm_micros, Relaxed);
        }
    }

    /// The campaign's max bid, CPM micros, as the last catalog installed set it.
    pub fn reference_cpm_micros(&self, slot: BudgetSlot) -> Option<i64> {
        self.counts(slot)
            .map(|c| c.reference_cpm_micros.load(Relaxed))
    }

    /// Counts one bid's first notice: our bid's CPM and, if the notice carried one,
    /// the min-to-win CPM (both in our currency), for the campaign and for the bid's
    /// market `segment` (0: unknown, counted for the campaign only).
    pub fn record(
        &self,
        slot: BudgetSlot,
        segment: u64,
        ended: Ended,
        bid_cpm_micros: i64,
        min_to_win_cpm_micros: Option<i64>,
    ) {
        let Some(c) = self.counts(slot) else { return };
        let reference = c.reference_cpm_micros.load(Relaxed);
        c.all
            .count(ended, bid_cpm_micros, min_to_win_cpm_micros, reference);
        if segment == 0 {
            return;
        }
        match c.slot_of(segment) {
            Some(i) => c.segments[i].count(ended, bid_cpm_micros, min_to_win_cpm_micros, reference),
            None => {
                self.segments_full.fetch_add(1, Relaxed);
            }
        }
    }

    /// Notices whose segment found every slot of its campaign taken.
    pub fn segments_full(&self) -> u64 {
        self.segments_full.load(Relaxed)
    }

    pub fn snapshot(&self, slot: BudgetSlot) -> Option<FeedbackSnapshot> {
        let c = self.counts(slot)?;
        let [min_to_win, won_at, lost_at] = c.all.load();
        Some(FeedbackSnapshot {
            reference_cpm_micros: c.reference_cpm_micros.load(Relaxed),
            min_to_win,
            won_at,
            lost_at,
            segments: std::array::from_fn(|i| {
                let key = c.segment_keys[i].load(Acquire);
                let [min_to_win, won_at, lost_at] = c.segments[i].load();
                if key == 0 || c.segment_keys[i].load(Acquire) != key {
                    // Free, or taken anew while read: nothing to show this time.
                    return SegmentFeedback::default();
                }
                SegmentFeedback {
                    key,
                    min_to_win,
                    won_at,
                    lost_at,
                }
            }),
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
        f.record(1, 0, Ended::Won, 2_000_000, Some(1_500_000));
        f.record(1, 0, Ended::Lost, 2_000_000, Some(2_600_000));
        f.record(1, 0, Ended::Won, 2_000_000, None);
        f.record(1, 0, Ended::Lost, 1_000_000, None);
        let s = f.snapshot(1).unwrap();
        assert_eq!(s.reference_cpm_micros, 4_000_000);
        assert_eq!(s.min_to_win[feedback_bucket(1_500_000, 4_000_000)], 1);
        assert_eq!(s.min_to_win[feedback_bucket(2_600_000, 4_000_000)], 1);
        assert_eq!(s.min_to_win.iter().sum::<u32>(), 2);
        assert_eq!(s.won_at[feedback_bucket(2_000_000, 4_000_000)], 1);
        assert_eq!(s.lost_at[feedback_bucket(1_000_000, 4_000_000)], 1);
        // A slot no campaign was configured in has no counts and ignores notices.
        f.record(0, 0, Ended::Won, 1, None);
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
        f.record(9, 0, Ended::Won, 1, None);
        assert!(f.snapshot(9).is_none());
    }

    #[test]
    fn a_segment_counts_in_its_own_slot_and_a_campaign_has_room_for_a_few() {
        let f = MarketFeedback::new(1);
        f.set_reference(0, 4_000_000);
        let segment = |n: u64| 1 << 45 | n;
        f.record(0, segment(7), Ended::Won, 2_000_000, Some(1_500_000));
        f.record(0, segment(7), Ended::Lost, 1_000_000, None);
        f.record(0, segment(8), Ended::Lost, 2_000_000, Some(2_600_000));
        f.record(0, 0, Ended::Won, 2_000_000, None);
        let s = f.snapshot(0).unwrap();
        let total =
            |m: &[u32; FEEDBACK_BUCKETS],
             w: &[u32; FEEDBACK_BUCKETS],
             l: &[u32; FEEDBACK_BUCKETS]| { m.iter().chain(w).chain(l).sum::<u32>() };
        assert_eq!(
            total(&s.min_to_win, &s.won_at, &s.lost_at),
            4,
            "all count for the campaign"
        );
        let seven = &s.segments[0];
        assert_eq!(seven.key, segment(7));
        assert_eq!(seven.min_to_win[feedback_bucket(1_500_000, 4_000_000)], 1);
        assert_eq!(seven.lost_at[feedback_bucket(1_000_000, 4_000_000)], 1);
        assert_eq!(total(&seven.min_to_win, &seven.won_at, &seven.lost_at), 2);
        assert_eq!(s.segments[1].key, segment(8));
        assert_eq!(s.segments[2].key, 0, "free");
        // Every slot taken: a new segment counts for the campaign only.
        for n in 9..9 + SEGMENTS_PER_CAMPAIGN as u64 {
            f.record(0, segment(n), Ended::Won, 2_000_000, None);
        }
        assert_eq!(f.segments_full(), 2);
        let s = f.snapshot(0).unwrap();
        assert!(s.segments.iter().all(|x| x.key != 0));
        assert!(!s
            .segments
            .iter()
            .any(|x| x.key == segment(9 + SEGMENTS_PER_CAMPAIGN as u64 - 1)));
        assert_eq!(
            total(&s.min_to_win, &s.won_at, &s.lost_at),
            4 + SEGMENTS_PER_CAMPAIGN as u32
        );
        // A new scale frees the slots.
        f.set_reference(0, 3_000_000);
        assert!(f.snapshot(0).unwrap().segments.iter().all(|x| x.key == 0));
    }
}
