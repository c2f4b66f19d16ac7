//! Strategy inputs to pricing: what the agent (or an operator) tunes per campaign.
//!
//! The decision reads strategy through [`StrategySource`] so that where it comes
//! from — the static defaults here, or the shared-memory table the agent writes — is
//! invisible to it. Multipliers are fixed-point parts per million (`*_ppm`,
//! 1_000_000 = ×1.0) so that prices stay integer arithmetic end to end.

use crate::catalog::{Campaign, CampaignIdx};

/// ×1.0 in parts per million.
pub const PPM_ONE: u32 = 1_000_000;
/// Highest margin multiplier any strategy may set (×1.5). The strategy writer enforces
/// it; the decision clamps to it too, because the catalog orders campaigns by the most
/// they can bid (value × this, capped) and stops evaluating once no campaign left can
/// beat the best bid found.
pub const MAX_MARGIN_PPM: u32 = 1_500_000;

/// Strategy of one campaign, read once per candidate per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CampaignStrategy {
    /// Multiplier on the campaign's value (bounded by the writer, e.g. 0.90–1.50).
    pub margin_ppm: u32,
    /// Highest CPM the strategy allows; the campaign's own ceiling still applies.
    pub max_cpm_micros: i64,
    /// Share of eligible requests to bid on (1_000_000 = all): paces spend over the day.
    pub pacing_ppm: u32,
    /// Bid shading multiplier (≤ 1.0 in practice).
    pub shading_ppm: u32,
    /// A paused campaign does not bid.
    pub paused: bool,
}

/// Where the decision gets strategy from. Implementations must be cheap (tens of ns)
/// and must never block: they run on the hot path of every worker.
pub trait StrategySource: Send + Sync {
    fn campaign(&self, idx: CampaignIdx, campaign: &Campaign) -> CampaignStrategy;
}

/// Strategy when no agent has written any: bid the campaign's value as configured,
/// with the configured shading, at full pace.
#[derive(Debug, Clone, Copy)]
pub struct StaticStrategy {
    pub shading_ppm: u32,
}

impl StrategySource for StaticStrategy {
    fn campaign(&self, _idx: CampaignIdx, campaign: &Campaign) -> CampaignStrategy {
        CampaignStrategy {
            margin_ppm: PPM_ONE,
            max_cpm_micros: campaign.max_bid_cpm_micros,
            pacing_ppm: PPM_ONE,
            shading_ppm: self.shading_ppm,
            paused: false,
        }
    }
}

/// `value × ratio`, for a ratio in parts per million, without overflow or floats.
/// Prices are at most `MAX_CPM_MICROS` (1e12) and ratios a few million, so the 64-bit
/// product almost always fits (division by a constant compiles to a multiply); the
/// 128-bit path is there for the values that do not.
#[inline]
pub fn apply_ppm(value_micros: i64, ratio_ppm: u32) -> i64 {
    match value_micros.checked_mul(i64::from(ratio_ppm)) {
        Some(product) => product / i64::from(PPM_ONE),
        None => (i128::from(value_micros) * i128::from(ratio_ppm) / i128::from(PPM_ONE)) as i64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppm_multiplication_is_exact_and_does_not_overflow() {
        assert_eq!(apply_ppm(2_000_000, 1_500_000), 3_000_000);
        assert_eq!(apply_ppm(2_000_000, 900_000), 1_800_000);
        assert_eq!(apply_ppm(1, 999_999), 0);
        assert_eq!(apply_ppm(i64::MAX / 2, 2 * PPM_ONE), i64::MAX - 1);
    }
}
