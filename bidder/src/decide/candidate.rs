//! Stage 3 of the decision: one campaign that survived the index, checked against
//! what only it knows — sellers, strategy, deals, creatives and block lists, price
//! and floor, pacing, budget — in that order, cheapest and most decisive first.

use bidder_common::table::segment::SegmentKey;

use crate::catalog::{Campaign, CampaignIdx, Catalog, Creative};
use crate::config::targeting::MediaType;
use crate::decide::strategy::{CampaignStrategy, StrategySource};
use crate::limits::MAX_MARGIN_PPM;
use crate::money::budget::Budgets;
use crate::money::{apply_ppm, impression_cost_micros, PPM_ONE};
use crate::openrtb::{BidRequest, Imp};

use super::blocked::Blocked;
use super::filter::for_each_banner_size;
use super::NoBidReason;

/// A campaign able to bid on the imp at `price_micros`; budget not yet reserved.
#[derive(Debug, Clone, Copy)]
pub(super) struct Candidate {
    pub campaign: CampaignIdx,
    /// The campaign's budget slot (where its budget and counters are).
    pub slot: usize,
    pub creative: usize,
    pub price_micros: i64,
    pub deal: Option<usize>,
}

/// What every candidate of one imp is evaluated against.
pub(super) struct Env<'e, 'r> {
    pub catalog: &'e Catalog,
    pub strategy: &'e dyn StrategySource,
    pub budgets: &'e Budgets,
    pub req: &'e BidRequest<'r>,
    pub imp: &'e Imp<'r>,
    /// The imp's market segment: the strategy may shade it apart.
    pub segment: SegmentKey,
    /// The imp's floor in our currency, CPM micros.
    pub floor_micros: i64,
    /// The request's `bcat` and `badv` as bitsets.
    pub blocked: &'e Blocked,
    /// The user frequency caps count, if the request names one.
    pub user_key: Option<u64>,
    /// Arrival, ms since the Unix epoch (to the second).
    pub now_ms: u64,
}

/// Evaluates campaign `c` for the imp; the error is how far it got.
pub(super) fn evaluate(env: &Env, c: CampaignIdx, rng: &mut u64) -> Result<Candidate, NoBidReason> {
    let campaign = &env.catalog.campaigns[c];
    if !sellers_allowed(env.req, campaign) {
        return Err(NoBidReason::SellerNotAllowed);
    }
    let strategy = env.strategy.campaign_in(c, campaign, env.segment);
    if strategy.paused {
        return Err(NoBidReason::Paused);
    }
    if env.budgets.is_tripped(campaign.budget_slot) {
        return Err(NoBidReason::SpendRateTripped);
    }
    if campaign.frequency_cap.is_some() {
        let allowed = match env.user_key {
            Some(user) => env
                .budgets
                .frequency_allows(campaign.budget_slot, user, env.now_ms),
            None => env.catalog.settings.bid_without_user,
        };
        if !allowed {
            return Err(NoBidReason::FrequencyCapped);
        }
    }
    let (deal, deal_floor) = deal_terms(env, campaign)?;
    let creative = pick_creative(env, campaign)?;
    let floor = deal_floor.unwrap_or(env.floor_micros);
    let price_micros = price(campaign, &strategy, floor)?;
    if !paced_in(strategy.pacing_ppm, rng) {
        return Err(NoBidReason::Paced);
    }
    let cost_micros = impression_cost_micros(price_micros);
    if env.budgets.is_closed() || !env.budgets.lease_allows(campaign.budget_slot, cost_micros) {
        return Err(NoBidReason::LedgerUnavailable);
    }
    if !env.budgets.can_afford(campaign.budget_slot, cost_micros) {
        return Err(
            if env
                .budgets
                .waits_on_fleet(campaign.budget_slot, cost_micros)
            {
                NoBidReason::BudgetUnavailable
            } else {
                NoBidReason::BudgetExhausted
            },
        );
    }
    Ok(Candidate {
        campaign: c,
        slot: campaign.budget_slot,
        creative,
        price_micros,
        deal,
    })
}

/// Every schain node must be an allowed seller, when the campaign lists sellers.
fn sellers_allowed(req: &BidRequest<'_>, campaign: &Campaign) -> bool {
    if campaign.allowed_sellers.is_empty() {
        return true;
    }
    let Some(schain) = req.schain() else {
        return false;
    };
    let nodes = req.schain_nodes(schain.nodes);
    !nodes.is_empty()
        && nodes.iter().all(|node| {
            let (asi, sid) = (node.asi.unwrap_or(""), node.sid.unwrap_or(""));
            campaign.allowed_sellers.iter().any(|s| s.matches(asi, sid))
        })
}

/// The deal to bid through and its floor (the exchange's deal floor, converted, or
/// ours if higher). A private auction needs a deal; so does a deals-only campaign.
fn deal_terms(env: &Env, campaign: &Campaign) -> Result<(Option<usize>, Option<i64>), NoBidReason> {
    let Some(pmp) = &env.imp.pmp else {
        return if campaign.deals_only {
            Err(NoBidReason::NoDeal)
        } else {
            Ok((None, None))
        };
    };
    let seat = env.catalog.settings.seat.as_str();
    for (i, deal) in env.req.deals(pmp.deals).iter().enumerate() {
        let Some(ours) = campaign.deals.iter().find(|d| d.id == deal.id) else {
            continue;
        };
        let wseat = env.req.strs(deal.wseat);
        if !wseat.is_empty() && !wseat.contains(&seat) {
            continue;
        }
        let Some(exchange_floor) = super::filter::floor_in_our_currency(
            env.catalog,
            deal.bidfloor_micros,
            deal.bidfloorcur,
        ) else {
            continue;
        };
        return Ok((Some(i), Some(exchange_floor.max(ours.floor_cpm_micros))));
    }
    if pmp.private_auction {
        return Err(NoBidReason::DealRequired);
    }
    if campaign.deals_only {
        return Err(NoBidReason::NoDeal);
    }
    Ok((None, None))
}

/// The first creative that fits the imp and passes its block lists; otherwise the
/// furthest reason any creative reached.
fn pick_creative(env: &Env, campaign: &Campaign) -> Result<usize, NoBidReason> {
    let mut furthest = NoBidReason::NoMatchingCreative;
    for (i, creative) in campaign.creatives.iter().enumerate() {
        let Some(battr) = fits(env.req, env.imp, creative) else {
            continue;
        };
        if creative.attr.iter().any(|a| battr.contains(a)) {
            furthest = furthest.max(NoBidReason::BlockedAttribute);
            continue;
        }
        if env.blocked.category(&creative.cat_ids) {
            furthest = furthest.max(NoBidReason::BlockedCategory);
            continue;
        }
        if env.blocked.adomain(&creative.adomain_ids) {
            furthest = furthest.max(NoBidReason::BlockedAdvertiser);
            continue;
        }
        return Ok(i);
    }
    Err(furthest)
}

/// Whether the creative fits the imp's format; if so, the imp's blocked attributes
/// for that format.
fn fits<'r>(req: &'r BidRequest<'_>, imp: &Imp<'_>, creative: &Creative) -> Option<&'r [u32]> {
    match creative.media {
        MediaType::Banner => {
            let banner = imp.banner.as_ref()?;
            let mut size_ok = false;
            let mut any_size = false;
            for_each_banner_size(req, banner, |w, h| {
                any_size = true;
                size_ok |= (w, h) == (creative.w, creative.h);
            });
            (size_ok || !any_size).then(|| req.ints(banner.battr))
        }
        MediaType::Video => {
            let video = imp.video.as_ref()?;
            timed_media_fits(
                req.strs(video.mimes),
                video.minduration,
                video.maxduration,
                creative,
            )
            .then(|| req.ints(video.battr))
        }
        MediaType::Audio => {
            let audio = imp.audio.as_ref()?;
            timed_media_fits(
                req.strs(audio.mimes),
                audio.minduration,
                audio.maxduration,
                creative,
            )
            .then(|| req.ints(audio.battr))
        }
        MediaType::Native => imp.native.as_ref().map(|n| req.ints(n.battr)),
    }
}

/// A video or audio creative fits when its MIME type is accepted (or none is listed)
/// and its duration is inside the imp's bounds.
fn timed_media_fits(
    mimes: &[&str],
    min_s: Option<u32>,
    max_s: Option<u32>,
    creative: &Creative,
) -> bool {
    let mime_ok = mimes.is_empty()
        || creative.mime.is_empty()
        || mimes.iter().any(|m| m.eq_ignore_ascii_case(&creative.mime));
    let d = creative.duration_s;
    let duration_ok =
        min_s.is_none_or(|min| d >= min) && max_s.is_none_or(|max| max == 0 || d <= max);
    mime_ok && duration_ok
}

/// Price = value × margin × shading, capped by the campaign's and the strategy's
/// ceilings. Below the floor, we bid the floor if our unshaded value covers it;
/// otherwise no bid. A campaign with `floor_markup_ppm` bids floor × markup instead
/// where there is a floor (capped at the value; no bid if the value is below it).
fn price(
    campaign: &Campaign,
    strategy: &CampaignStrategy,
    floor_micros: i64,
) -> Result<i64, NoBidReason> {
    let ceiling = campaign.max_bid_cpm_micros.min(strategy.max_cpm_micros);
    let margin = strategy.margin_ppm.min(MAX_MARGIN_PPM);
    let worth = apply_ppm(campaign.base_cpm_micros, margin).min(ceiling);
    debug_assert!(worth <= campaign.max_price_cpm_micros);
    let shaded = match campaign.floor_markup_ppm {
        Some(markup) if floor_micros > 0 && floor_micros <= worth => {
            apply_ppm(floor_micros, markup).min(worth)
        }
        _ => apply_ppm(worth, strategy.shading_ppm),
    };
    let price = if shaded >= floor_micros {
        shaded
    } else {
        floor_micros
    };
    if price > worth || price <= 0 {
        return Err(NoBidReason::BelowFloor);
    }
    debug_assert!(price <= ceiling && price >= floor_micros);
    Ok(price)
}

/// Pacing: bid on `pacing_ppm` out of a million opportunities, drawn from the
/// worker's xorshift stream (cheap, no shared state).
fn paced_in(pacing_ppm: u32, rng: &mut u64) -> bool {
    if pacing_ppm >= PPM_ONE {
        return true;
    }
    let mut x = *rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *rng = x;
    (x % u64::from(PPM_ONE)) < u64::from(pacing_ppm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_bids_on_roughly_its_share() {
        let mut rng = 42;
        let bids = (0..100_000).filter(|_| paced_in(250_000, &mut rng)).count();
        assert!((23_000..27_000).contains(&bids), "{bids}");
        assert!((0..1000).all(|_| paced_in(PPM_ONE, &mut rng)));
        assert!((0..1000).all(|_| !paced_in(0, &mut rng)));
    }
}
