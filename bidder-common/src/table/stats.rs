//! The stats table: what the bidder reports to the agent — the campaigns and partners
//! of the catalog in force with their configured limits (the agent validates changes
//! against these), budget figures, per-campaign outcomes (requests, bids, wins,
//! clearing prices, no-bids by reason), per-partner traffic and the no-bid totals.
//!
//! The bidder rewrites every row on a timer; values are cumulative since the bidder
//! started (budget figures are today's). Rows of campaigns no longer in the catalog
//! stay, flagged [`IN_CATALOG`] off, with their last figures.
//!
//! Per campaign, every imp the campaign was evaluated for ends one way:
//!
//! ```text
//! requests == bids + outbid + Σ no_bids[reason]      (at quiescence)
//! ```
//!
//! (the figures are summed from every worker at publication, not at one instant, so
//! a row written under load may be off by the imps in flight).

use core::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering::Relaxed};

use super::cell::{Payload, SeqCell};
use super::segment::SEGMENTS_PER_CAMPAIGN;
use super::{checksum, Key, Row, TableKind, TableSpec};

/// Row flag: the campaign or partner is in the catalog in force.
pub const IN_CATALOG: u32 = 1;
/// Partner flag: enabled in the bidder's configuration.
pub const CONFIG_ENABLED: u32 = 2;
/// Partner flag: enabled now (configuration or the strategy table's override).
pub const ENABLED: u32 = 4;
/// Campaign flag: the bidder's spend-rate breaker paused it until an operator resumes.
pub const BREAKER_TRIPPED: u32 = 8;

/// No-bid reasons the totals have room for (the bidder has 30 today).
pub const MAX_NO_BID_REASONS: usize = 48;

/// No-bid reasons each campaign row has room for. Only reasons one campaign can meet
/// after the targeting index let it through for an imp are counted per campaign (17
/// today: sellers, pause, deals, creatives and block lists, floor, pacing, budget and
/// the fleet's share of it, deadline, our own errors); the rest decide for the whole request or imp before any
/// campaign is looked at, and are in the totals only. Their names are in
/// [`StatsPrefix::campaign_reason_names`]. Exact counts in a fixed array keep the sum
/// above checkable, which a top-N list would not; 24 slots, not 48, save 192 bytes in
/// each of the row's two copies.
pub const MAX_CAMPAIGN_NO_BID_REASONS: usize = 24;

/// Price buckets of the market feedback a campaign row carries.
pub const FEEDBACK_BUCKETS: usize = 48;
/// Buckets per doubling of price (each ~9% wide).
pub const FEEDBACK_BUCKETS_PER_OCTAVE: usize = 8;
/// The lowest bucket starts at the reference price / 2^this; the highest ends at
/// reference × 2^(6 − this): with the campaign's max bid as reference, 1/32 to 2×.
pub const FEEDBACK_OCTAVES_BELOW_REFERENCE: usize = 5;

/// The bucket of a CPM price on the scale of `reference_cpm_micros` (prices below the
/// scale fall into bucket 0, above it into the last).
pub fn feedback_bucket(price_cpm_micros: i64, reference_cpm_micros: i64) -> usize {
    if price_cpm_micros <= 0 || reference_cpm_micros <= 0 {
        return 0;
    }
    let octaves = (price_cpm_micros as f64 / reference_cpm_micros as f64).log2()
        + FEEDBACK_OCTAVES_BELOW_REFERENCE as f64;
    let bucket = (octaves * FEEDBACK_BUCKETS_PER_OCTAVE as f64).floor();
    if bucket < 0.0 {
        0
    } else {
        (bucket as usize).min(FEEDBACK_BUCKETS - 1)
    }
}

/// The CPM prices (micros, as `f64`) bucket `i` spans on the scale of `reference`:
/// `[low, high)`; bucket 0 reaches down to 0 and the last up to infinity.
pub fn feedback_bucket_bounds(i: usize, reference_cpm_micros: i64) -> (f64, f64) {
    let edge = |k: usize| {
        reference_cpm_micros as f64
            * 2f64.powf(
                k as f64 / FEEDBACK_BUCKETS_PER_OCTAVE as f64
                    - FEEDBACK_OCTAVES_BELOW_REFERENCE as f64,
            )
    };
    let low = if i == 0 { 0.0 } else { edge(i) };
    let high = if i + 1 >= FEEDBACK_BUCKETS {
        f64::INFINITY
    } else {
        edge(i + 1)
    };
    (low, high)
}

/// An hourly or lifetime budget that is not set.
pub const NO_LIMIT: i64 = -1;

/// The stats table's [`TableSpec`].
pub enum StatsTable {}

impl TableSpec for StatsTable {
    const MAGIC: u64 = u64::from_le_bytes(*b"BIDSTATS");
    const KIND: TableKind = TableKind::Stats;
    /// 2: per-campaign requests, bids, outbid, wins, clearing prices, no-bids by reason.
    /// 3: budget periods (day and hour starts), hourly and lifetime budgets.
    /// 4: market feedback from notices (min-to-win and censored win/loss by price
    /// bucket) for the agent's controller; the totals count publications.
    /// 5: the same feedback for each of a campaign's first market segments.
    /// 6: room for 24 per-campaign no-bid reasons (`budget_unavailable` was the 17th).
    const LAYOUT_VERSION: u32 = 6;
    type Campaign = CampaignStatsWords;
    type Partner = PartnerStatsWords;
    type Prefix = StatsPrefix;
}

/// One campaign's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CampaignStatsValue {
    /// [`IN_CATALOG`].
    pub flags: u32,
    /// Shading the bidder applies when no strategy row exists (configuration).
    pub default_shading_ppm: u32,
    /// The campaign's hard ceiling: no strategy may raise a bid above it.
    pub max_bid_cpm_micros: i64,
    /// What an impression is worth before strategy.
    pub base_cpm_micros: i64,
    /// Daily budget in the configuration.
    pub config_daily_budget_micros: i64,
    /// Daily budget in force (the configuration's or the strategy table's override).
    pub daily_budget_micros: i64,
    pub available_micros: i64,
    pub reserved_micros: i64,
    /// Spent today: the sum of clearing prices charged.
    pub spent_micros: i64,
    /// Clearing prices above what was reserved (billed more than we bid).
    pub overcharged_micros: i64,
    /// Bids not made for lack of budget.
    pub budget_refusals: u64,
    /// Imps the campaign was evaluated for: imps of bid requests for which the
    /// targeting index let the campaign through and the decision ran its own checks
    /// (strategy, deals, creatives, floor, pacing, budget). A request with two such
    /// imps counts twice. Campaigns the decision skipped because they could not beat
    /// a bid already found for the imp are not counted.
    pub requests: u64,
    /// Bids that left in a response.
    pub bids: u64,
    /// Imps where the campaign could have bid but another of ours bid higher.
    pub outbid: u64,
    /// Bids settled by a win or billing notice (whichever came first; duplicates and
    /// loss notices do not count).
    pub wins: u64,
    /// Sum of the clearing prices of those wins, per impression, micros (what the
    /// exchange reported, before the cap at our reservation that `spent_micros`
    /// applies; our bid price when a notice carried none). Average clearing CPM:
    /// `1000 × clearing_micros / wins`.
    pub clearing_micros: i64,
    /// Imps without a bid from this campaign, by reason (the names are in
    /// [`StatsPrefix::campaign_reason_names`]).
    pub no_bids: [u64; MAX_CAMPAIGN_NO_BID_REASONS],
    /// Start of the campaign's current budget day (local midnight in its time zone), ms since the Unix epoch.
    pub day_start_ms: u64,
    /// Start of its current budget hour, ms since the Unix epoch.
    pub hour_start_ms: u64,
    /// Spent by bids made the day before (notices of late wins still land there).
    pub previous_day_spent_micros: i64,
    /// Spend allowed per hour; [`NO_LIMIT`] when none is set.
    pub hourly_budget_micros: i64,
    /// Spent by bids made this hour.
    pub hour_spent_micros: i64,
    /// Spend allowed over the campaign's life; [`NO_LIMIT`] when none is set.
    pub lifetime_budget_micros: i64,
    /// Spent over the campaign's life, as the ledger recorded it.
    pub lifetime_spent_micros: i64,
    /// The price scale of the feedback buckets ([`feedback_bucket`]): the campaign's
    /// max bid when the counts began (a new max bid starts them again).
    pub feedback_reference_cpm_micros: i64,
    /// Win and loss notices that carried `${AUCTION_MIN_TO_WIN}`, by that price's
    /// bucket: the market's price to win, seen directly. Since start, wrapping.
    pub min_to_win: [u32; FEEDBACK_BUCKETS],
    /// Wins whose notice carried no min-to-win, by our bid's bucket: the price to win
    /// was at most the bid (censored).
    pub won_at: [u32; FEEDBACK_BUCKETS],
    /// Losses whose notice carried no min-to-win, by our bid's bucket: it was above.
    pub lost_at: [u32; FEEDBACK_BUCKETS],
    /// The same counts for the campaign's first market segments (slots in the order
    /// the segments were first met; a notice of any other segment counts above only).
    pub segments: [SegmentFeedback; SEGMENTS_PER_CAMPAIGN],
    pub checksum: u64,
}

/// One market segment's notice counts (as [`CampaignStatsValue::min_to_win`] etc.).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentFeedback {
    /// The segment ([`super::segment::SegmentKey`]); 0: the slot is unused.
    pub key: u64,
    pub min_to_win: [u32; FEEDBACK_BUCKETS],
    pub won_at: [u32; FEEDBACK_BUCKETS],
    pub lost_at: [u32; FEEDBACK_BUCKETS],
}

impl Default for SegmentFeedback {
    fn default() -> Self {
        SegmentFeedback {
            key: 0,
            min_to_win: [0; FEEDBACK_BUCKETS],
            won_at: [0; FEEDBACK_BUCKETS],
            lost_at: [0; FEEDBACK_BUCKETS],
        }
    }
}

/// The shared-memory form of [`SegmentFeedback`].
#[repr(C)]
pub struct SegmentFeedbackWords {
    pub key: AtomicU64,
    pub min_to_win: [AtomicU32; FEEDBACK_BUCKETS],
    pub won_at: [AtomicU32; FEEDBACK_BUCKETS],
    pub lost_at: [AtomicU32; FEEDBACK_BUCKETS],
}

const _: () = assert!(size_of::<SegmentFeedbackWords>() == 584);

impl SegmentFeedbackWords {
    fn load(&self) -> SegmentFeedback {
        SegmentFeedback {
            key: self.key.load(Relaxed),
            min_to_win: core::array::from_fn(|i| self.min_to_win[i].load(Relaxed)),
            won_at: core::array::from_fn(|i| self.won_at[i].load(Relaxed)),
            lost_at: core::array::from_fn(|i| self.lost_at[i].load(Relaxed)),
        }
    }

    fn store(&self, v: &SegmentFeedback) {
        self.key.store(v.key, Relaxed);
        store_counts(
            [&self.min_to_win, &self.won_at, &self.lost_at],
            [&v.min_to_win, &v.won_at, &v.lost_at],
        );
    }
}

fn store_counts(words: [&[AtomicU32; FEEDBACK_BUCKETS]; 3], counts: [&[u32; FEEDBACK_BUCKETS]; 3]) {
    for (words, counts) in words.into_iter().zip(counts) {
        for (word, &n) in words.iter().zip(counts) {
            word.store(n, Relaxed);
        }
    }
}

/// The words a segment's counts add to a checksum.
fn segment_words(s: &SegmentFeedback) -> impl Iterator<Item = u64> + '_ {
    core::iter::once(s.key).chain(
        [&s.min_to_win, &s.won_at, &s.lost_at]
            .into_iter()
            .flat_map(|counts| counts.iter().map(|&n| u64::from(n))),
    )
}

impl Default for CampaignStatsValue {
    fn default() -> Self {
        CampaignStatsValue {
            flags: 0,
            default_shading_ppm: 0,
            max_bid_cpm_micros: 0,
            base_cpm_micros: 0,
            config_daily_budget_micros: 0,
            daily_budget_micros: 0,
            available_micros: 0,
            reserved_micros: 0,
            spent_micros: 0,
            overcharged_micros: 0,
            budget_refusals: 0,
            requests: 0,
            bids: 0,
            outbid: 0,
            wins: 0,
            clearing_micros: 0,
            no_bids: [0; MAX_CAMPAIGN_NO_BID_REASONS],
            day_start_ms: 0,
            hour_start_ms: 0,
            previous_day_spent_micros: 0,
            hourly_budget_micros: 0,
            hour_spent_micros: 0,
            lifetime_budget_micros: 0,
            lifetime_spent_micros: 0,
            feedback_reference_cpm_micros: 0,
            min_to_win: [0; FEEDBACK_BUCKETS],
            won_at: [0; FEEDBACK_BUCKETS],
            lost_at: [0; FEEDBACK_BUCKETS],
            segments: [SegmentFeedback::default(); SEGMENTS_PER_CAMPAIGN],
            checksum: 0,
        }
    }
}

impl CampaignStatsValue {
    fn sum(&self) -> u64 {
        let head = [
            u64::from(self.flags),
            u64::from(self.default_shading_ppm),
            self.max_bid_cpm_micros as u64,
            self.base_cpm_micros as u64,
            self.config_daily_budget_micros as u64,
            self.daily_budget_micros as u64,
            self.available_micros as u64,
            self.reserved_micros as u64,
            self.spent_micros as u64,
            self.overcharged_micros as u64,
            self.budget_refusals,
            self.requests,
            self.bids,
            self.outbid,
            self.wins,
            self.clearing_micros as u64,
        ];
        let periods = [
            self.day_start_ms,
            self.hour_start_ms,
            self.previous_day_spent_micros as u64,
            self.hourly_budget_micros as u64,
            self.hour_spent_micros as u64,
            self.lifetime_budget_micros as u64,
            self.lifetime_spent_micros as u64,
            self.feedback_reference_cpm_micros as u64,
        ];
        let feedback = [&self.min_to_win, &self.won_at, &self.lost_at]
            .into_iter()
            .flat_map(|counts| counts.iter().map(|&n| u64::from(n)));
        checksum(
            head.into_iter()
                .chain(self.no_bids)
                .chain(periods)
                .chain(feedback)
                .chain(self.segments.iter().flat_map(segment_words)),
        )
    }

    pub fn sealed(mut self) -> Self {
        self.checksum = self.sum();
        self
    }

    pub fn is_sealed(&self) -> bool {
        self.checksum == self.sum()
    }
}

/// The shared-memory form of [`CampaignStatsValue`].
#[repr(C)]
pub struct CampaignStatsWords {
    pub flags: AtomicU32,
    pub default_shading_ppm: AtomicU32,
    pub max_bid_cpm_micros: AtomicI64,
    pub base_cpm_micros: AtomicI64,
    pub config_daily_budget_micros: AtomicI64,
    pub daily_budget_micros: AtomicI64,
    pub available_micros: AtomicI64,
    pub reserved_micros: AtomicI64,
    pub spent_micros: AtomicI64,
    pub overcharged_micros: AtomicI64,
    pub budget_refusals: AtomicU64,
    pub requests: AtomicU64,
    pub bids: AtomicU64,
    pub outbid: AtomicU64,
    pub wins: AtomicU64,
    pub clearing_micros: AtomicI64,
    pub no_bids: [AtomicU64; MAX_CAMPAIGN_NO_BID_REASONS],
    pub day_start_ms: AtomicU64,
    pub hour_start_ms: AtomicU64,
    pub previous_day_spent_micros: AtomicI64,
    pub hourly_budget_micros: AtomicI64,
    pub hour_spent_micros: AtomicI64,
    pub lifetime_budget_micros: AtomicI64,
    pub lifetime_spent_micros: AtomicI64,
    pub feedback_reference_cpm_micros: AtomicI64,
    pub min_to_win: [AtomicU32; FEEDBACK_BUCKETS],
    pub won_at: [AtomicU32; FEEDBACK_BUCKETS],
    pub lost_at: [AtomicU32; FEEDBACK_BUCKETS],
    pub segments: [SegmentFeedbackWords; SEGMENTS_PER_CAMPAIGN],
    pub checksum: AtomicU64,
}

const _: () = assert!(core::mem::offset_of!(CampaignStatsWords, max_bid_cpm_micros) == 8);
const _: () = assert!(core::mem::offset_of!(CampaignStatsWords, requests) == 80);
const _: () = assert!(core::mem::offset_of!(CampaignStatsWords, no_bids) == 120);
const _: () = assert!(core::mem::offset_of!(CampaignStatsWords, min_to_win) == 376);
const _: () = assert!(core::mem::offset_of!(CampaignStatsWords, segments) == 952);
const _: () = assert!(core::mem::offset_of!(CampaignStatsWords, checksum) == 5_624);
const _: () = assert!(size_of::<CampaignStatsWords>() == 5_632);
const _: () = assert!(size_of::<Row<CampaignStatsWords>>() == 11_392);

impl Payload for CampaignStatsWords {
    type Value = CampaignStatsValue;

    fn load(&self) -> CampaignStatsValue {
        CampaignStatsValue {
            flags: self.flags.load(Relaxed),
            default_shading_ppm: self.default_shading_ppm.load(Relaxed),
            max_bid_cpm_micros: self.max_bid_cpm_micros.load(Relaxed),
            base_cpm_micros: self.base_cpm_micros.load(Relaxed),
            config_daily_budget_micros: self.config_daily_budget_micros.load(Relaxed),
            daily_budget_micros: self.daily_budget_micros.load(Relaxed),
            available_micros: self.available_micros.load(Relaxed),
            reserved_micros: self.reserved_micros.load(Relaxed),
            spent_micros: self.spent_micros.load(Relaxed),
            overcharged_micros: self.overcharged_micros.load(Relaxed),
            budget_refusals: self.budget_refusals.load(Relaxed),
            requests: self.requests.load(Relaxed),
            bids: self.bids.load(Relaxed),
            outbid: self.outbid.load(Relaxed),
            wins: self.wins.load(Relaxed),
            clearing_micros: self.clearing_micros.load(Relaxed),
            no_bids: core::array::from_fn(|i| self.no_bids[i].load(Relaxed)),
            day_start_ms: self.day_start_ms.load(Relaxed),
            hour_start_ms: self.hour_start_ms.load(Relaxed),
            previous_day_spent_micros: self.previous_day_spent_micros.load(Relaxed),
            hourly_budget_micros: self.hourly_budget_micros.load(Relaxed),
            hour_spent_micros: self.hour_spent_micros.load(Relaxed),
            lifetime_budget_micros: self.lifetime_budget_micros.load(Relaxed),
            lifetime_spent_micros: self.lifetime_spent_micros.load(Relaxed),
            feedback_reference_cpm_micros: self.feedback_reference_cpm_micros.load(Relaxed),
            min_to_win: core::array::from_fn(|i| self.min_to_win[i].load(Relaxed)),
            won_at: core::array::from_fn(|i| self.won_at[i].load(Relaxed)),
            lost_at: core::array::from_fn(|i| self.lost_at[i].load(Relaxed)),
            segments: core::array::from_fn(|i| self.segments[i].load()),
            checksum: self.checksum.load(Relaxed),
        }
    }

    fn store(&self, v: &CampaignStatsValue) {
        self.flags.store(v.flags, Relaxed);
        self.default_shading_ppm
            .store(v.default_shading_ppm, Relaxed);
        self.max_bid_cpm_micros.store(v.max_bid_cpm_micros, Relaxed);
        self.base_cpm_micros.store(v.base_cpm_micros, Relaxed);
        self.config_daily_budget_micros
            .store(v.config_daily_budget_micros, Relaxed);
        self.daily_budget_micros
            .store(v.daily_budget_micros, Relaxed);
        self.available_micros.store(v.available_micros, Relaxed);
        self.reserved_micros.store(v.reserved_micros, Relaxed);
        self.spent_micros.store(v.spent_micros, Relaxed);
        self.overcharged_micros.store(v.overcharged_micros, Relaxed);
        self.budget_refusals.store(v.budget_refusals, Relaxed);
        self.requests.store(v.requests, Relaxed);
        self.bids.store(v.bids, Relaxed);
        self.outbid.store(v.outbid, Relaxed);
        self.wins.store(v.wins, Relaxed);
        self.clearing_micros.store(v.clearing_micros, Relaxed);
        for (word, n) in self.no_bids.iter().zip(v.no_bids) {
            word.store(n, Relaxed);
        }
        self.day_start_ms.store(v.day_start_ms, Relaxed);
        self.hour_start_ms.store(v.hour_start_ms, Relaxed);
        self.previous_day_spent_micros
            .store(v.previous_day_spent_micros, Relaxed);
        self.hourly_budget_micros
            .store(v.hourly_budget_micros, Relaxed);
        self.hour_spent_micros.store(v.hour_spent_micros, Relaxed);
        self.lifetime_budget_micros
            .store(v.lifetime_budget_micros, Relaxed);
        self.lifetime_spent_micros
            .store(v.lifetime_spent_micros, Relaxed);
        self.feedback_reference_cpm_micros
            .store(v.feedback_reference_cpm_micros, Relaxed);
        store_counts(
            [&self.min_to_win, &self.won_at, &self.lost_at],
            [&v.min_to_win, &v.won_at, &v.lost_at],
        );
        for (words, segment) in self.segments.iter().zip(&v.segments) {
            words.store(segment);
        }
        self.checksum.store(v.checksum, Relaxed);
    }
}

/// One partner's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartnerStatsValue {
    /// [`IN_CATALOG`], [`CONFIG_ENABLED`], [`ENABLED`].
    pub flags: u32,
    pub config_qps_limit: u32,
    pub config_burst: u32,
    /// Limits in force (configuration or strategy-table override).
    pub qps_limit: u32,
    pub burst: u32,
    _pad: u32,
    /// Bid requests attributed to the partner.
    pub requests: u64,
    /// Requests answered with a bid.
    pub bids: u64,
    /// Requests answered without one (refused by the limiter included).
    pub no_bids: u64,
    pub checksum: u64,
}

impl PartnerStatsValue {
    /// A value with every field given (the padding stays zero).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        flags: u32,
        config_qps_limit: u32,
        config_burst: u32,
        qps_limit: u32,
        burst: u32,
        requests: u64,
        bids: u64,
        no_bids: u64,
    ) -> Self {
        PartnerStatsValue {
            flags,
            config_qps_limit,
            config_burst,
            qps_limit,
            burst,
            _pad: 0,
            requests,
            bids,
            no_bids,
            checksum: 0,
        }
    }

    fn sum(&self) -> u64 {
        checksum([
            u64::from(self.flags),
            u64::from(self.config_qps_limit),
            u64::from(self.config_burst),
            u64::from(self.qps_limit),
            u64::from(self.burst),
            self.requests,
            self.bids,
            self.no_bids,
        ])
    }

    pub fn sealed(mut self) -> Self {
        self.checksum = self.sum();
        self
    }

    pub fn is_sealed(&self) -> bool {
        self.checksum == self.sum()
    }
}

/// The shared-memory form of [`PartnerStatsValue`].
#[repr(C)]
pub struct PartnerStatsWords {
    pub flags: AtomicU32,
    pub config_qps_limit: AtomicU32,
    pub config_burst: AtomicU32,
    pub qps_limit: AtomicU32,
    pub burst: AtomicU32,
    _pad: AtomicU32,
    pub requests: AtomicU64,
    pub bids: AtomicU64,
    pub no_bids: AtomicU64,
    pub checksum: AtomicU64,
}

const _: () = assert!(core::mem::offset_of!(PartnerStatsWords, requests) == 24);
const _: () = assert!(size_of::<PartnerStatsWords>() == 56);

impl Payload for PartnerStatsWords {
    type Value = PartnerStatsValue;

    fn load(&self) -> PartnerStatsValue {
        PartnerStatsValue {
            flags: self.flags.load(Relaxed),
            config_qps_limit: self.config_qps_limit.load(Relaxed),
            config_burst: self.config_burst.load(Relaxed),
            qps_limit: self.qps_limit.load(Relaxed),
            burst: self.burst.load(Relaxed),
            _pad: 0,
            requests: self.requests.load(Relaxed),
            bids: self.bids.load(Relaxed),
            no_bids: self.no_bids.load(Relaxed),
            checksum: self.checksum.load(Relaxed),
        }
    }

    fn store(&self, v: &PartnerStatsValue) {
        self.flags.store(v.flags, Relaxed);
        self.config_qps_limit.store(v.config_qps_limit, Relaxed);
        self.config_burst.store(v.config_burst, Relaxed);
        self.qps_limit.store(v.qps_limit, Relaxed);
        self.burst.store(v.burst, Relaxed);
        self.requests.store(v.requests, Relaxed);
        self.bids.store(v.bids, Relaxed);
        self.no_bids.store(v.no_bids, Relaxed);
        self.checksum.store(v.checksum, Relaxed);
    }
}

/// The bidder's totals across campaigns and partners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TotalsValue {
    pub requests: u64,
    pub imps: u64,
    pub bids: u64,
    pub no_bid_requests: u64,
    pub deadline_missed: u64,
    /// The catalog generation in force (bumped by every reload).
    pub catalog_generation: u64,
    /// Reads of the strategy table that failed closed (a row rewritten too fast to
    /// copy): the campaign sat that request out.
    pub strategy_contended: u64,
    /// Imps without a bid, by reason; the names are in [`StatsPrefix::reason_names`].
    pub no_bid_imps: [u64; MAX_NO_BID_REASONS],
    /// Times the bidder has published the table since it started: a reader that
    /// needs figures newer than an instant waits for this to move twice.
    pub publications: u64,
    pub checksum: u64,
}

impl Default for TotalsValue {
    fn default() -> Self {
        TotalsValue {
            requests: 0,
            imps: 0,
            bids: 0,
            no_bid_requests: 0,
            deadline_missed: 0,
            catalog_generation: 0,
            strategy_contended: 0,
            no_bid_imps: [0; MAX_NO_BID_REASONS],
            publications: 0,
            checksum: 0,
        }
    }
}

impl TotalsValue {
    fn sum(&self) -> u64 {
        let head = [
            self.requests,
            self.imps,
            self.bids,
            self.no_bid_requests,
            self.deadline_missed,
            self.catalog_generation,
            self.strategy_contended,
            self.publications,
        ];
        checksum(head.into_iter().chain(self.no_bid_imps))
    }

    pub fn sealed(mut self) -> Self {
        self.checksum = self.sum();
        self
    }

    pub fn is_sealed(&self) -> bool {
        self.checksum == self.sum()
    }
}

/// The shared-memory form of [`TotalsValue`].
#[repr(C)]
pub struct TotalsWords {
    pub requests: AtomicU64,
    pub imps: AtomicU64,
    pub bids: AtomicU64,
    pub no_bid_requests: AtomicU64,
    pub deadline_missed: AtomicU64,
    pub catalog_generation: AtomicU64,
    pub strategy_contended: AtomicU64,
    pub no_bid_imps: [AtomicU64; MAX_NO_BID_REASONS],
    pub publications: AtomicU64,
    pub checksum: AtomicU64,
}

const _: () = assert!(size_of::<TotalsWords>() == 8 * (9 + MAX_NO_BID_REASONS));

impl Payload for TotalsWords {
    type Value = TotalsValue;

    fn load(&self) -> TotalsValue {
        TotalsValue {
            requests: self.requests.load(Relaxed),
            imps: self.imps.load(Relaxed),
            bids: self.bids.load(Relaxed),
            no_bid_requests: self.no_bid_requests.load(Relaxed),
            deadline_missed: self.deadline_missed.load(Relaxed),
            catalog_generation: self.catalog_generation.load(Relaxed),
            strategy_contended: self.strategy_contended.load(Relaxed),
            no_bid_imps: core::array::from_fn(|i| self.no_bid_imps[i].load(Relaxed)),
            publications: self.publications.load(Relaxed),
            checksum: self.checksum.load(Relaxed),
        }
    }

    fn store(&self, v: &TotalsValue) {
        self.requests.store(v.requests, Relaxed);
        self.imps.store(v.imps, Relaxed);
        self.bids.store(v.bids, Relaxed);
        self.no_bid_requests.store(v.no_bid_requests, Relaxed);
        self.deadline_missed.store(v.deadline_missed, Relaxed);
        self.catalog_generation.store(v.catalog_generation, Relaxed);
        self.strategy_contended.store(v.strategy_contended, Relaxed);
        for (word, n) in self.no_bid_imps.iter().zip(v.no_bid_imps) {
            word.store(n, Relaxed);
        }
        self.publications.store(v.publications, Relaxed);
        self.checksum.store(v.checksum, Relaxed);
    }
}

/// The section in front of the stats rows: the totals and the names of the no-bid
/// reasons the totals and the campaign rows count (the bidder writes the names when it
/// opens the table, so the agent need not know the bidder's reason lists).
#[repr(C, align(64))]
pub struct StatsPrefix {
    pub totals: SeqCell<TotalsWords>,
    pub reason_count: AtomicU32,
    pub campaign_reason_count: AtomicU32,
    /// Names of [`TotalsValue::no_bid_imps`], by position.
    pub reason_names: [Key; MAX_NO_BID_REASONS],
    /// Names of [`CampaignStatsValue::no_bids`], by position.
    pub campaign_reason_names: [Key; MAX_CAMPAIGN_NO_BID_REASONS],
}

const _: () = assert!(size_of::<Row<CampaignStatsWords>>().is_multiple_of(64));
const _: () = assert!(size_of::<Row<PartnerStatsWords>>().is_multiple_of(64));
const _: () = assert!(size_of::<StatsPrefix>().is_multiple_of(64));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_campaign_figure_is_sealed() {
        let v = CampaignStatsValue {
            requests: 10,
            bids: 4,
            outbid: 1,
            wins: 2,
            clearing_micros: 2_700,
            no_bids: core::array::from_fn(|i| i as u64),
            ..CampaignStatsValue::default()
        }
        .sealed();
        assert!(v.is_sealed());
        let changes: [fn(&mut CampaignStatsValue); 9] = [
            |v| v.requests += 1,
            |v| v.bids += 1,
            |v| v.outbid += 1,
            |v| v.wins += 1,
            |v| v.clearing_micros += 1,
            |v| v.no_bids[MAX_CAMPAIGN_NO_BID_REASONS - 1] += 1,
            |v| v.lost_at[3] += 1,
            |v| v.segments[SEGMENTS_PER_CAMPAIGN - 1].key += 1,
            |v| v.segments[2].min_to_win[FEEDBACK_BUCKETS - 1] += 1,
        ];
        for change in changes {
            let mut torn = v;
            change(&mut torn);
            assert!(!torn.is_sealed(), "{torn:?}");
        }
    }
}
