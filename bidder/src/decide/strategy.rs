//! Strategy inputs to pricing: what the agent (or an operator) tunes per campaign.
//!
//! The decision reads strategy through [`StrategySource`] so that where it comes
//! from — the static defaults here, or the shared-memory table the agent writes — is
//! invisible to it. Multipliers are fixed-point parts per million (`*_ppm`,
//! 1_000_000 = ×1.0) so that prices stay integer arithmetic end to end.

use bidder_common::table::segment::SegmentKey;

use crate::catalog::{Campaign, CampaignIdx};
use crate::money::PPM_ONE;

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

    /// The strategy for an imp of market `segment`: a source that shades segments
    /// apart (the agent's table) gives that segment's shading; by default, the
    /// campaign's.
    fn campaign_in(
        &self,
        idx: CampaignIdx,
        campaign: &Campaign,
        _segment: SegmentKey,
    ) -> CampaignStrategy {
        self.campaign(idx, campaign)
    }
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
