//! The strategy table: what the agent decides, what the bidder prices with.
//!
//! Multipliers are fixed-point parts per million (`*_ppm`, 1_000_000 = ×1.0) and money
//! is integer micro-units, as everywhere in the bidder. The table holds values; the
//! bounds they must stay inside are the agent's to enforce before it writes.

use core::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering::Relaxed};

use super::cell::Payload;
use super::segment::SEGMENTS_PER_CAMPAIGN;
use super::{checksum, copy_words_in, copy_words_out, Row, TableKind, TableSpec};

/// Longest "why" an operator or the optimizer can attach to a change.
pub const MAX_REASONING_BYTES: usize = 280;

/// `updated_by` of a change made by the agent's own optimizer rather than a person.
pub const UPDATED_BY_AGENT: u32 = u32::MAX - 1;

/// `daily_budget_micros` meaning "the budget in the bidder's configuration".
pub const BUDGET_AS_CONFIGURED: i64 = -1;

/// Campaign flag: the campaign does not bid.
pub const CAMPAIGN_PAUSED: u32 = 1;

/// Partner flag: the partner's traffic is taken.
pub const PARTNER_ENABLED: u32 = 1;

/// The strategy table's [`TableSpec`].
pub enum StrategyTable {}

impl TableSpec for StrategyTable {
    const MAGIC: u64 = u64::from_le_bytes(*b"BIDSTRAT");
    const KIND: TableKind = TableKind::Strategy;
    /// 2: a shading per market segment (`segment_keys`, `segment_shading_ppm`).
    const LAYOUT_VERSION: u32 = 2;
    type Campaign = CampaignStrategyWords;
    type Partner = PartnerLimitWords;
    type Prefix = ();
}

/// One campaign's strategy as the program sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CampaignStrategyValue {
    /// Multiplier on the campaign's value.
    pub margin_ppm: u32,
    /// Share of eligible requests bid on (1_000_000 = all).
    pub pacing_ppm: u32,
    /// Bid shading multiplier.
    pub shading_ppm: u32,
    /// [`CAMPAIGN_PAUSED`].
    pub flags: u32,
    /// Highest CPM the strategy allows (the campaign's own ceiling applies too).
    pub max_cpm_micros: i64,
    /// Daily budget override, or [`BUDGET_AS_CONFIGURED`].
    pub daily_budget_micros: i64,
    pub updated_at_unix_ms: u64,
    /// Unix uid of the operator, or [`UPDATED_BY_AGENT`].
    pub updated_by: u32,
    pub reasoning_len: u32,
    pub reasoning: [u8; MAX_REASONING_BYTES],
    /// Market segments ([`super::segment::SegmentKey`]) priced with their own shading,
    /// `segment_shading_ppm` at the same position, instead of `shading_ppm`. Filled
    /// from the first position: the first 0 ends them.
    pub segment_keys: [u64; SEGMENTS_PER_CAMPAIGN],
    pub segment_shading_ppm: [u32; SEGMENTS_PER_CAMPAIGN],
    /// Set by [`CampaignStrategyValue::sealed`]; see [`super::checksum`].
    pub checksum: u64,
}

impl CampaignStrategyValue {
    pub fn paused(&self) -> bool {
        self.flags & CAMPAIGN_PAUSED != 0
    }

    /// The reasoning as text (lossy on a corrupt file: invalid UTF-8 reads as "").
    pub fn reasoning(&self) -> &str {
        let len = (self.reasoning_len as usize).min(MAX_REASONING_BYTES);
        core::str::from_utf8(&self.reasoning[..len]).unwrap_or("")
    }

    /// Sets the reasoning, cut at [`MAX_REASONING_BYTES`] on a character boundary.
    pub fn set_reasoning(&mut self, why: &str) {
        let mut end = why.len().min(MAX_REASONING_BYTES);
        while !why.is_char_boundary(end) {
            end -= 1;
        }
        self.reasoning = [0; MAX_REASONING_BYTES];
        self.reasoning[..end].copy_from_slice(&why.as_bytes()[..end]);
        self.reasoning_len = end as u32;
    }

    fn sum(&self) -> u64 {
        let segments = self
            .segment_keys
            .into_iter()
            .chain(self.segment_shading_ppm.map(u64::from));
        checksum(self.fields_of_layout_1().chain(segments))
    }

    /// The words layout 1 sealed (every field but the segments).
    fn fields_of_layout_1(&self) -> impl Iterator<Item = u64> + '_ {
        let head = [
            u64::from(self.margin_ppm),
            u64::from(self.pacing_ppm),
            u64::from(self.shading_ppm),
            u64::from(self.flags),
            self.max_cpm_micros as u64,
            self.daily_budget_micros as u64,
            self.updated_at_unix_ms,
            u64::from(self.updated_by),
            u64::from(self.reasoning_len),
        ];
        let text = self
            .reasoning
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])));
        head.into_iter().chain(text)
    }

    /// This value with its checksum set: what the writer stores.
    pub fn sealed(mut self) -> Self {
        self.checksum = self.sum();
        self
    }

    /// Whether the checksum matches the fields (a torn copy almost never does).
    pub fn is_sealed(&self) -> bool {
        self.checksum == self.sum()
    }
}

/// The shared-memory form of [`CampaignStrategyValue`].
#[repr(C)]
pub struct CampaignStrategyWords {
    pub margin_ppm: AtomicU32,
    pub pacing_ppm: AtomicU32,
    pub shading_ppm: AtomicU32,
    pub flags: AtomicU32,
    pub max_cpm_micros: AtomicI64,
    pub daily_budget_micros: AtomicI64,
    pub updated_at_unix_ms: AtomicU64,
    pub updated_by: AtomicU32,
    pub reasoning_len: AtomicU32,
    pub reasoning: [AtomicU64; MAX_REASONING_BYTES / 8],
    pub segment_keys: [AtomicU64; SEGMENTS_PER_CAMPAIGN],
    pub segment_shading_ppm: [AtomicU32; SEGMENTS_PER_CAMPAIGN],
    pub checksum: AtomicU64,
}

const _: () = assert!(MAX_REASONING_BYTES.is_multiple_of(8));
const _: () = assert!(core::mem::offset_of!(CampaignStrategyWords, max_cpm_micros) == 16);
const _: () = assert!(core::mem::offset_of!(CampaignStrategyWords, reasoning) == 48);
const _: () = assert!(core::mem::offset_of!(CampaignStrategyWords, segment_keys) == 328);
const _: () = assert!(core::mem::offset_of!(CampaignStrategyWords, checksum) == 424);
const _: () = assert!(size_of::<CampaignStrategyWords>() == 432);
const _: () = assert!(size_of::<Row<CampaignStrategyWords>>() == 960);

impl Payload for CampaignStrategyWords {
    type Value = CampaignStrategyValue;

    fn load(&self) -> CampaignStrategyValue {
        let mut reasoning = [0u8; MAX_REASONING_BYTES];
        copy_words_out(&self.reasoning, &mut reasoning);
        CampaignStrategyValue {
            margin_ppm: self.margin_ppm.load(Relaxed),
            pacing_ppm: self.pacing_ppm.load(Relaxed),
            shading_ppm: self.shading_ppm.load(Relaxed),
            flags: self.flags.load(Relaxed),
            max_cpm_micros: self.max_cpm_micros.load(Relaxed),
            daily_budget_micros: self.daily_budget_micros.load(Relaxed),
            updated_at_unix_ms: self.updated_at_unix_ms.load(Relaxed),
            updated_by: self.updated_by.load(Relaxed),
            reasoning_len: self.reasoning_len.load(Relaxed),
            reasoning,
            segment_keys: core::array::from_fn(|i| self.segment_keys[i].load(Relaxed)),
            segment_shading_ppm: core::array::from_fn(|i| {
                self.segment_shading_ppm[i].load(Relaxed)
            }),
            checksum: self.checksum.load(Relaxed),
        }
    }

    fn store(&self, v: &CampaignStrategyValue) {
        self.margin_ppm.store(v.margin_ppm, Relaxed);
        self.pacing_ppm.store(v.pacing_ppm, Relaxed);
        self.shading_ppm.store(v.shading_ppm, Relaxed);
        self.flags.store(v.flags, Relaxed);
        self.max_cpm_micros.store(v.max_cpm_micros, Relaxed);
        self.daily_budget_micros
            .store(v.daily_budget_micros, Relaxed);
        self.updated_at_unix_ms.store(v.updated_at_unix_ms, Relaxed);
        self.updated_by.store(v.updated_by, Relaxed);
        self.reasoning_len.store(v.reasoning_len, Relaxed);
        copy_words_in(&v.reasoning, &self.reasoning);
        for (word, &key) in self.segment_keys.iter().zip(&v.segment_keys) {
            word.store(key, Relaxed);
        }
        for (word, &ppm) in self.segment_shading_ppm.iter().zip(&v.segment_shading_ppm) {
            word.store(ppm, Relaxed);
        }
        self.checksum.store(v.checksum, Relaxed);
    }
}

/// The strategy table as layout 1 wrote it (before a shading per segment): read once
/// by an upgraded agent to carry the operators' rows into the current layout. Its
/// rows read as current values without segments, sealed when layout 1's seal held.
pub mod layout_1 {
    use super::*;

    pub enum StrategyTableLayout1 {}

    impl TableSpec for StrategyTableLayout1 {
        const MAGIC: u64 = StrategyTable::MAGIC;
        const KIND: TableKind = TableKind::Strategy;
        const LAYOUT_VERSION: u32 = 1;
        type Campaign = CampaignStrategyWords1;
        type Partner = PartnerLimitWords;
        type Prefix = ();
    }

    /// [`CampaignStrategyWords`] without the segment columns. A frozen copy, on
    /// purpose: it must read what layout 1 wrote whatever the current layout becomes.
    #[repr(C)]
    pub struct CampaignStrategyWords1 {
        pub margin_ppm: AtomicU32,
        pub pacing_ppm: AtomicU32,
        pub shading_ppm: AtomicU32,
        pub flags: AtomicU32,
        pub max_cpm_micros: AtomicI64,
        pub daily_budget_micros: AtomicI64,
        pub updated_at_unix_ms: AtomicU64,
        pub updated_by: AtomicU32,
        pub reasoning_len: AtomicU32,
        pub reasoning: [AtomicU64; MAX_REASONING_BYTES / 8],
        pub checksum: AtomicU64,
    }

    const _: () = assert!(size_of::<CampaignStrategyWords1>() == 336);
    const _: () = assert!(size_of::<Row<CampaignStrategyWords1>>() == 768);

    impl Payload for CampaignStrategyWords1 {
        type Value = CampaignStrategyValue;

        fn load(&self) -> CampaignStrategyValue {
            let mut reasoning = [0u8; MAX_REASONING_BYTES];
            copy_words_out(&self.reasoning, &mut reasoning);
            let v = CampaignStrategyValue {
                margin_ppm: self.margin_ppm.load(Relaxed),
                pacing_ppm: self.pacing_ppm.load(Relaxed),
                shading_ppm: self.shading_ppm.load(Relaxed),
                flags: self.flags.load(Relaxed),
                max_cpm_micros: self.max_cpm_micros.load(Relaxed),
                daily_budget_micros: self.daily_budget_micros.load(Relaxed),
                updated_at_unix_ms: self.updated_at_unix_ms.load(Relaxed),
                updated_by: self.updated_by.load(Relaxed),
                reasoning_len: self.reasoning_len.load(Relaxed),
                reasoning,
                segment_keys: [0; SEGMENTS_PER_CAMPAIGN],
                segment_shading_ppm: [0; SEGMENTS_PER_CAMPAIGN],
                checksum: 0,
            };
            let sealed_then = self.checksum.load(Relaxed) == checksum(v.fields_of_layout_1());
            if sealed_then {
                v.sealed()
            } else {
                v
            }
        }

        /// Writes what layout 1 holds, sealed as layout 1 sealed it (tests make old
        /// tables with it); segments cannot be written.
        fn store(&self, v: &CampaignStrategyValue) {
            self.margin_ppm.store(v.margin_ppm, Relaxed);
            self.pacing_ppm.store(v.pacing_ppm, Relaxed);
            self.shading_ppm.store(v.shading_ppm, Relaxed);
            self.flags.store(v.flags, Relaxed);
            self.max_cpm_micros.store(v.max_cpm_micros, Relaxed);
            self.daily_budget_micros
                .store(v.daily_budget_micros, Relaxed);
            self.updated_at_unix_ms.store(v.updated_at_unix_ms, Relaxed);
            self.updated_by.store(v.updated_by, Relaxed);
            self.reasoning_len.store(v.reasoning_len, Relaxed);
            copy_words_in(&v.reasoning, &self.reasoning);
            self.checksum
                .store(checksum(v.fields_of_layout_1()), Relaxed);
        }
    }
}

/// What pricing reads per candidate: the numeric fields only, so the hot path copies
/// 32 bytes, not the whole row with its reasoning (`shading_ppm` is the segment's
/// when the row has one for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PricingFields {
    pub margin_ppm: u32,
    pub pacing_ppm: u32,
    pub shading_ppm: u32,
    pub flags: u32,
    pub max_cpm_micros: i64,
}

impl CampaignStrategyWords {
    /// Relaxed copy of the pricing fields, for [`super::cell::SeqCell::read`].
    #[inline]
    pub fn pricing(&self) -> PricingFields {
        PricingFields {
            margin_ppm: self.margin_ppm.load(Relaxed),
            pacing_ppm: self.pacing_ppm.load(Relaxed),
            shading_ppm: self.shading_ppm.load(Relaxed),
            flags: self.flags.load(Relaxed),
            max_cpm_micros: self.max_cpm_micros.load(Relaxed),
        }
    }

    /// [`CampaignStrategyWords::pricing`] for an impression of market `segment`
    /// ([`super::segment::SegmentKey`]): the segment's shading when the row has one.
    /// Costs one more load for a row without segments, at most
    /// [`SEGMENTS_PER_CAMPAIGN`] + 1 with.
    #[inline]
    pub fn pricing_for(&self, segment: u64) -> PricingFields {
        let mut p = self.pricing();
        if segment == 0 {
            return p;
        }
        for (key, shading) in self.segment_keys.iter().zip(&self.segment_shading_ppm) {
            match key.load(Relaxed) {
                0 => break,
                k if k == segment => {
                    p.shading_ppm = shading.load(Relaxed);
                    break;
                }
                _ => {}
            }
        }
        p
    }
}

/// One partner's limits as the program sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartnerLimitValue {
    /// Requests per second allowed; 0 shuts the partner off.
    pub qps_limit: u32,
    /// Requests allowed above the rate in a burst.
    pub burst: u32,
    /// [`PARTNER_ENABLED`].
    pub flags: u32,
    pub updated_by: u32,
    pub updated_at_unix_ms: u64,
    pub checksum: u64,
}

impl PartnerLimitValue {
    pub fn enabled(&self) -> bool {
        self.flags & PARTNER_ENABLED != 0
    }

    fn sum(&self) -> u64 {
        checksum([
            u64::from(self.qps_limit),
            u64::from(self.burst),
            u64::from(self.flags),
            u64::from(self.updated_by),
            self.updated_at_unix_ms,
        ])
    }

    /// This value with its checksum set.
    pub fn sealed(mut self) -> Self {
        self.checksum = self.sum();
        self
    }

    pub fn is_sealed(&self) -> bool {
        self.checksum == self.sum()
    }
}

/// The shared-memory form of [`PartnerLimitValue`].
#[repr(C)]
pub struct PartnerLimitWords {
    pub qps_limit: AtomicU32,
    pub burst: AtomicU32,
    pub flags: AtomicU32,
    pub updated_by: AtomicU32,
    pub updated_at_unix_ms: AtomicU64,
    pub checksum: AtomicU64,
}

const _: () = assert!(core::mem::offset_of!(PartnerLimitWords, updated_at_unix_ms) == 16);
const _: () = assert!(size_of::<PartnerLimitWords>() == 32);
const _: () = assert!(size_of::<Row<PartnerLimitWords>>() == 192);

impl Payload for PartnerLimitWords {
    type Value = PartnerLimitValue;

    fn load(&self) -> PartnerLimitValue {
        PartnerLimitValue {
            qps_limit: self.qps_limit.load(Relaxed),
            burst: self.burst.load(Relaxed),
            flags: self.flags.load(Relaxed),
            updated_by: self.updated_by.load(Relaxed),
            updated_at_unix_ms: self.updated_at_unix_ms.load(Relaxed),
            checksum: self.checksum.load(Relaxed),
        }
    }

    fn store(&self, v: &PartnerLimitValue) {
        self.qps_limit.store(v.qps_limit, Relaxed);
        self.burst.store(v.burst, Relaxed);
        self.flags.store(v.flags, Relaxed);
        self.updated_by.store(v.updated_by, Relaxed);
        self.updated_at_unix_ms.store(v.updated_at_unix_ms, Relaxed);
        self.checksum.store(v.checksum, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;

    fn value() -> CampaignStrategyValue {
        CampaignStrategyValue {
            margin_ppm: 1_100_000,
            pacing_ppm: 500_000,
            shading_ppm: 900_000,
            flags: 0,
            max_cpm_micros: 3_000_000,
            daily_budget_micros: BUDGET_AS_CONFIGURED,
            updated_at_unix_ms: 1,
            updated_by: 1000,
            reasoning_len: 0,
            reasoning: [0; MAX_REASONING_BYTES],
            segment_keys: [0; SEGMENTS_PER_CAMPAIGN],
            segment_shading_ppm: [0; SEGMENTS_PER_CAMPAIGN],
            checksum: 0,
        }
    }

    #[test]
    fn a_sealed_value_checks_and_any_changed_field_does_not() {
        let mut v = value();
        v.set_reasoning("raise margin: win rate 40% above plan");
        let v = v.sealed();
        assert!(v.is_sealed());
        let mut torn = v;
        torn.max_cpm_micros += 1;
        assert!(!torn.is_sealed());
        let mut torn = v;
        torn.reasoning[3] ^= 1;
        assert!(!torn.is_sealed());
        let mut torn = v;
        torn.segment_keys[SEGMENTS_PER_CAMPAIGN - 1] = 7;
        assert!(!torn.is_sealed());
        let mut torn = v;
        torn.segment_shading_ppm[0] = 1;
        assert!(!torn.is_sealed());
    }

    #[test]
    fn reasoning_is_cut_at_the_limit_on_a_character_boundary() {
        let mut v = value();
        let long = "é".repeat(200); // 400 bytes
        v.set_reasoning(&long);
        assert_eq!(v.reasoning_len, 280);
        assert_eq!(v.reasoning(), &long[..280]);
        let mut v2 = value();
        v2.set_reasoning(&format!("a{}", "é".repeat(200)));
        assert_eq!(v2.reasoning_len, 279);
    }
}
