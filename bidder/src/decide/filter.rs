//! Stages 1 and 2 of the decision: narrow the campaigns with set intersections over
//! the index, for what the request carries and then for what each imp carries.
//! The first dimension that leaves no campaign names the no-bid reason.

use crate::catalog::index::{
    for_each_domain_suffix, lowercase_into, Dimension, MAX_LOOKUP_KEY_BYTES,
};
use crate::catalog::{CampaignSet, Catalog};
use crate::config::targeting::{hour_of_week, MediaType};
use crate::openrtb::{BidRequest, Imp};

use super::supply::{Needs, Verdicts};
use super::{consent, ivt, Context, DecisionStats, NoBidReason};
use crate::catalog::ivt::IvtKind;
use crate::metrics::{Counter, WorkerMetrics};
use crate::supply::SupplyStore;

/// What the request filter reads besides the catalog: the worker's consent decoder,
/// the supply files, the counters.
pub(super) struct Signals<'a> {
    pub consent: &'a mut consent::Decoder,
    pub user_agents: &'a mut ivt::UserAgents,
    pub supply: &'a SupplyStore,
    pub supply_verdicts: &'a mut Verdicts,
    pub stats: &'a DecisionStats,
}

/// Fills `set` with the campaigns the request as a whole allows.
pub(super) fn request(
    catalog: &Catalog,
    req: &BidRequest<'_>,
    ctx: Context,
    set: &mut CampaignSet,
    scratch: &mut CampaignSet,
    signals: Signals<'_>,
) -> Result<(), NoBidReason> {
    let index = &catalog.index;
    let cur = req.cur();
    if !cur.is_empty()
        && !cur
            .iter()
            .any(|c| c.eq_ignore_ascii_case(&catalog.settings.currency))
    {
        return Err(NoBidReason::CurrencyNotAccepted);
    }
    set.copy_from(&index.active);
    nonempty(set, NoBidReason::NoActiveCampaign)?;

    dimension(
        set,
        scratch,
        &index.partners,
        ctx.partner.as_ref(),
        NoBidReason::PartnerNotTargeted,
    )?;
    set.intersect(&index.hours[hour_of_week(ctx.now_unix_s)]);
    nonempty(set, NoBidReason::OutsideDaypart)?;

    let device = req.device.as_ref();
    let country = device
        .and_then(|d| d.geo.as_ref())
        .and_then(|g| g.country)
        .or_else(|| {
            req.user
                .as_ref()
                .and_then(|u| u.geo.as_ref())
                .and_then(|g| g.country)
        });
    dimension(
        set,
        scratch,
        &index.countries,
        country,
        NoBidReason::GeoNotTargeted,
    )?;
    dimension(
        set,
        scratch,
        &index.device_types,
        device.and_then(|d| d.devicetype).as_ref(),
        NoBidReason::DeviceNotTargeted,
    )?;
    let mut buf = [0u8; MAX_LOOKUP_KEY_BYTES];
    let os = device
        .and_then(|d| d.os)
        .and_then(|os| lowercase_into(os, &mut buf));
    dimension(set, scratch, &index.os, os, NoBidReason::OsNotTargeted)?;

    publisher(catalog, req, set, scratch)?;
    categories(catalog, req, set, scratch)?;
    invalid_traffic(
        catalog,
        req,
        ctx,
        set,
        signals.user_agents,
        &signals.stats.user_agent_matches,
    )?;
    privacy(catalog, req, set, signals.consent, signals.stats)?;
    supply_chain(
        catalog,
        req,
        ctx,
        set,
        signals.supply,
        signals.supply_verdicts,
        &signals.stats.supply_verdicts,
    )
}

/// `set ∩= any ∪ by_value[value]`; `reason` when that leaves no campaign.
fn dimension<K, Q>(
    set: &mut CampaignSet,
    scratch: &mut CampaignSet,
    dim: &Dimension<K>,
    value: Option<&Q>,
    reason: NoBidReason,
) -> Result<(), NoBidReason>
where
    K: std::hash::Hash + Eq + std::borrow::Borrow<Q>,
    Q: std::hash::Hash + Eq + ?Sized,
{
    scratch.copy_from(&dim.any);
    if let Some(v) = value {
        dim.add_matches(v, scratch);
    }
    set.intersect(scratch);
    nonempty(set, reason)
}

fn nonempty(set: &CampaignSet, reason: NoBidReason) -> Result<(), NoBidReason> {
    if set.is_empty() {
        Err(reason)
    } else {
        Ok(())
    }
}

/// Site domains and app bundles: allow lists (a domain also matches its parents)
/// and block lists. Traffic that is not a site matches only campaigns without a
/// site allow list, and likewise for apps.
fn publisher(
    catalog: &Catalog,
    req: &BidRequest<'_>,
    set: &mut CampaignSet,
    scratch: &mut CampaignSet,
) -> Result<(), NoBidReason> {
    let index = &catalog.index;
    let site_domain = req.site.as_ref().and_then(|s| {
        s.domain
            .or_else(|| s.page.and_then(host_of_url))
            .or_else(|| s.publisher.as_ref().and_then(|p| p.domain))
    });
    let bundle = req.app.as_ref().and_then(|a| a.bundle);
    let mut buf = [0u8; MAX_LOOKUP_KEY_BYTES];

    scratch.copy_from(&index.site_domains.any);
    if let Some(domain) = site_domain.and_then(|d| lowercase_into(d, &mut buf)) {
        for_each_domain_suffix(domain, |suffix| {
            index.site_domains.add_matches(suffix, scratch);
            if let Some(blocked) = index.block_site_domains.by_value.get(suffix) {
                set.subtract(blocked);
            }
        });
    }
    set.intersect(scratch);
    nonempty(set, NoBidReason::PublisherNotTargeted)?;

    scratch.copy_from(&index.app_bundles.any);
    if let Some(bundle) = bundle.and_then(|b| lowercase_into(b, &mut buf)) {
        index.app_bundles.add_matches(bundle, scratch);
        if let Some(blocked) = index.block_app_bundles.by_value.get(bundle) {
            set.subtract(blocked);
        }
    }
    set.intersect(scratch);
    nonempty(set, NoBidReason::PublisherNotTargeted)
}

/// The host part of a page URL (`https://www.example.com/x` → `www.example.com`).
fn host_of_url(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next()?;
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = host.split(':').next()?;
    (!host.is_empty()).then_some(host)
}

/// Content categories of the site or app; `IAB3` targets also match `IAB3-1`.
fn categories(
    catalog: &Catalog,
    req: &BidRequest<'_>,
    set: &mut CampaignSet,
    scratch: &mut CampaignSet,
) -> Result<(), NoBidReason> {
    let dim = &catalog.index.categories;
    let cats = match (&req.site, &req.app) {
        (Some(site), _) => req.strs(site.cat),
        (None, Some(app)) => req.strs(app.cat),
        (None, None) => &[],
    };
    scratch.copy_from(&dim.any);
    for cat in cats {
        dim.add_matches(*cat, scratch);
        if let Some((tier1, _)) = cat.split_once('-') {
            dim.add_matches(tier1, scratch);
        }
    }
    set.intersect(scratch);
    nonempty(set, NoBidReason::CategoryNotTargeted)
}

/// Invalid traffic: each kind the request is leaves only the campaigns that allow it.
/// Detections are counted per partner, whatever the outcome.
fn invalid_traffic(
    catalog: &Catalog,
    req: &BidRequest<'_>,
    ctx: Context,
    set: &mut CampaignSet,
    user_agents: &mut ivt::UserAgents,
    matches: &Counter,
) -> Result<(), NoBidReason> {
    if !catalog.ivt.active() {
        return Ok(());
    }
    let kinds = ivt::detect(&catalog.ivt, req, user_agents, matches);
    if kinds == 0 {
        return Ok(());
    }
    WorkerMetrics::with_current(|m| {
        let counters = m.partner(ctx.partner);
        for kind in IvtKind::ALL.into_iter().filter(|k| kinds & k.bit() != 0) {
            counters.ivt[kind as usize].inc();
        }
    });
    for kind in IvtKind::ALL.into_iter().filter(|k| kinds & k.bit() != 0) {
        set.intersect(&catalog.index.ivt_allowed[kind as usize]);
        let reason = match kind {
            IvtKind::Datacenter => NoBidReason::IvtDatacenter,
            IvtKind::Blocklist => NoBidReason::IvtBlocklist,
            IvtKind::Crawler => NoBidReason::IvtCrawler,
            IvtKind::InconsistentDevice => NoBidReason::IvtInconsistentDevice,
        };
        nonempty(set, reason)?;
    }
    Ok(())
}

/// Consent (each group of campaigns with the same needs against the request's
/// decoded signals), COPPA and the supply-chain completeness requirement. Both the
/// 2.6 and the 2.5 `ext` locations arrive here already folded by the parser.
fn privacy(
    catalog: &Catalog,
    req: &BidRequest<'_>,
    set: &mut CampaignSet,
    consent: &mut consent::Decoder,
    stats: &DecisionStats,
) -> Result<(), NoBidReason> {
    let index = &catalog.index;
    if !index.consent.is_empty() {
        let facts = consent.facts(req, stats);
        let mut refused = None;
        for (needs, campaigns) in &index.consent {
            if let Err(reason) = needs.check(&facts) {
                set.subtract(campaigns);
                refused = refused.max(Some(reason));
            }
        }
        if let Some(reason) = refused {
            nonempty(set, reason)?;
        }
    }
    if req.regs.coppa {
        set.intersect(&index.allow_coppa);
        nonempty(set, NoBidReason::Coppa)?;
    }
    if !req.schain().is_some_and(|s| s.complete) {
        set.subtract(&index.require_complete_schain);
        nonempty(set, NoBidReason::SupplyChainIncomplete)?;
    }
    Ok(())
}

/// The supply chain against ads.txt and sellers.json, for the campaigns that verify
/// it (one verdict per request, one check per distinct policy). Refusals are counted
/// per partner by reason.
fn supply_chain(
    catalog: &Catalog,
    req: &BidRequest<'_>,
    ctx: Context,
    set: &mut CampaignSet,
    store: &SupplyStore,
    verdicts: &mut Verdicts,
    computed: &Counter,
) -> Result<(), NoBidReason> {
    let policies = &catalog.index.supply;
    if policies.is_empty() || !policies.iter().any(|(_, c)| set.intersects(c)) {
        return Ok(());
    }
    let needs = Needs {
        sellers: policies.iter().any(|(p, _)| p.verify_sellers),
        ads_txt: policies.iter().any(|(p, _)| p.verify_ads_txt),
    };
    let partner_asi = ctx
        .partner
        .and_then(|p| catalog.partners.get(usize::from(p)))
        .and_then(|p| p.asi.as_deref());
    let verdict = verdicts.get(req, partner_asi, store, needs, computed);
    let mut refused = None;
    for (policy, campaigns) in policies {
        if let Err(reason) = verdict.check(policy) {
            set.subtract(campaigns);
            refused = refused.max(Some(reason));
        }
    }
    let Some(reason) = refused else {
        return Ok(());
    };
    WorkerMetrics::with_current(|m| {
        if let Some(i) = super::supply::REFUSALS.iter().position(|&r| r == reason) {
            m.partner(ctx.partner).supply_refused[i].inc();
        }
    });
    nonempty(set, reason)
}

/// Narrows `request_set` to the campaigns that can serve this imp: a media type it
/// offers and, for banner campaigns, one of its sizes.
pub(super) fn imp(
    catalog: &Catalog,
    req: &BidRequest<'_>,
    imp: &Imp<'_>,
    request_set: &CampaignSet,
    set: &mut CampaignSet,
    scratch: &mut CampaignSet,
) -> Result<(), NoBidReason> {
    let index = &catalog.index;
    set.clear();
    let others = [
        (MediaType::Video, imp.video.is_some()),
        (MediaType::Audio, imp.audio.is_some()),
        (MediaType::Native, imp.native.is_some()),
    ];
    for (media, offered) in others {
        if offered {
            set.union(&index.media[media.index()]);
        }
    }
    let mut media_matches = request_set.intersects(set);
    if let Some(banner) = &imp.banner {
        let banner_campaigns = &index.media[MediaType::Banner.index()];
        media_matches |= request_set.intersects(banner_campaigns);
        // A banner that names no size takes any banner campaign; otherwise only those
        // with a creative of one of its sizes.
        let mut sized = false;
        scratch.clear();
        for_each_banner_size(req, banner, |w, h| {
            sized = true;
            if let Some(set) = index.banner_sizes.get(&(w, h)) {
                scratch.union(set);
            }
        });
        if !sized {
            scratch.copy_from(banner_campaigns);
        }
        set.union(scratch);
    }
    set.intersect(request_set);
    if !media_matches {
        return Err(NoBidReason::MediaNotTargeted);
    }
    nonempty(set, NoBidReason::SizeNotTargeted)
}

/// Calls `f` for each size a banner accepts: its `format` list, else its `w`×`h`.
pub(super) fn for_each_banner_size(
    req: &BidRequest<'_>,
    banner: &crate::openrtb::Banner,
    mut f: impl FnMut(u32, u32),
) {
    let formats = req.formats(banner.format);
    if formats.is_empty() {
        if let (Some(w), Some(h)) = (banner.w, banner.h) {
            f(w, h);
        }
        return;
    }
    for format in formats {
        f(format.w, format.h);
    }
}

/// A floor in micros of our currency: converted with the configured rate (rounded
/// up, so we never bid under the real floor), `None` when there is no rate. A zero
/// floor needs no rate.
pub(super) fn floor_in_our_currency(
    catalog: &Catalog,
    floor_micros: i64,
    cur: &str,
) -> Option<i64> {
    if floor_micros == 0 || cur.is_empty() || cur.eq_ignore_ascii_case(&catalog.settings.currency) {
        return Some(floor_micros);
    }
    let mut buf = [0u8; MAX_LOOKUP_KEY_BYTES];
    let upper = uppercase_into(cur, &mut buf)?;
    let rate = *catalog.settings.currency_rates_micros.get(upper)?;
    crate::money::currency::convert_up(floor_micros, rate)
}

fn uppercase_into<'b>(value: &str, buf: &'b mut [u8; MAX_LOOKUP_KEY_BYTES]) -> Option<&'b str> {
    let out = buf.get_mut(..value.len())?;
    for (o, b) in out.iter_mut().zip(value.bytes()) {
        *o = b.to_ascii_uppercase();
    }
    std::str::from_utf8(out).ok()
}
