//! The targeting index: for every targeting dimension, the set of campaigns that
//! accept each value, plus the set that accepts any value.
//!
//! A request is matched by intersecting, per dimension, `any ∪ by_value[v]` for the
//! values the request carries; the cost is a few word-wise ANDs per dimension, not a
//! scan of every campaign's rules. Values are normalised once here (lower-cased
//! domains, bundles and OS names) and the same way on lookup.

use rustc_hash::FxHashMap;

use super::consent::{self, ConsentNeeds};
use super::ivt::IvtKind;
use super::{CampaignSet, PartnerIdx, SupplyPolicy};
use crate::config::targeting::{parse_daypart, parse_size, MediaType, HOURS_PER_WEEK};
use crate::config::{CampaignConfig, Config};

pub use crate::limits::MAX_LOOKUP_KEY_BYTES;

/// Campaigns per value of one dimension.
#[derive(Debug)]
pub struct Dimension<K> {
    /// Campaigns that do not restrict this dimension.
    pub any: CampaignSet,
    /// Campaigns that list the value.
    pub by_value: FxHashMap<K, CampaignSet>,
}

impl<K: std::hash::Hash + Eq> Dimension<K> {
    fn new(width: usize) -> Self {
        Dimension {
            any: CampaignSet::full(width),
            by_value: FxHashMap::default(),
        }
    }

    /// Records that campaign `c` accepts only `values` (nothing recorded when empty).
    fn restrict(&mut self, c: usize, width: usize, values: impl IntoIterator<Item = K>) {
        let mut restricted = false;
        for value in values {
            restricted = true;
            self.by_value
                .entry(value)
                .or_insert_with(|| CampaignSet::empty(width))
                .insert(c);
        }
        if restricted {
            // A restricted campaign no longer accepts "any".
            self.any.remove(c);
        }
    }

    /// Adds to `out` the campaigns listing `value`.
    pub fn add_matches<Q>(&self, value: &Q, out: &mut CampaignSet)
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        if let Some(set) = self.by_value.get(value) {
            out.union(set);
        }
    }
}

/// Campaigns that block each value (block lists always win over allow lists).
#[derive(Debug, Default)]
pub struct Blocklist {
    pub by_value: FxHashMap<String, CampaignSet>,
}

/// Every dimension of targeting, compiled.
#[derive(Debug)]
pub struct Index {
    /// Number of campaigns: the width of every set.
    pub width: usize,
    /// Enabled campaigns.
    pub active: CampaignSet,
    pub partners: Dimension<PartnerIdx>,
    /// Campaigns able to serve each media type: a creative of that type and the type
    /// allowed by targeting.
    pub media: [CampaignSet; 4],
    /// Campaigns with a banner creative of each size that their size targeting (if
    /// any) allows: a banner imp's candidates are the union over its sizes, so a
    /// campaign whose creatives cannot fit never reaches per-campaign evaluation.
    pub banner_sizes: FxHashMap<(u32, u32), CampaignSet>,
    pub countries: Dimension<String>,
    pub device_types: Dimension<u32>,
    pub os: Dimension<String>,
    pub site_domains: Dimension<String>,
    pub block_site_domains: Blocklist,
    pub app_bundles: Dimension<String>,
    pub block_app_bundles: Blocklist,
    pub categories: Dimension<String>,
    /// Campaigns running in each hour of the week (UTC, Monday 00:00 = 0).
    pub hours: Vec<CampaignSet>,
    /// Campaigns by what they need from consent signals, one entry per distinct need
    /// (campaigns that use no personal data are in none): a request's signals are
    /// checked once per entry, not per campaign.
    pub consent: Vec<(ConsentNeeds, CampaignSet)>,
    /// Campaigns that still bid on each kind of invalid traffic (`allow_ivt`), by
    /// `IvtKind`.
    pub ivt_allowed: [CampaignSet; IvtKind::COUNT],
    pub allow_coppa: CampaignSet,
    pub require_complete_schain: CampaignSet,
    /// Campaigns by supply-chain policy, one entry per distinct policy (campaigns that
    /// verify nothing are in none).
    pub supply: Vec<(SupplyPolicy, CampaignSet)>,
}

impl Index {
    /// Builds the index from a validated configuration; campaign `c` of the catalog is
    /// `config.campaigns[order[c]]`.
    pub fn build(
        config: &Config,
        order: &[usize],
        partner_by_name: &FxHashMap<String, PartnerIdx>,
    ) -> Index {
        let width = config.campaigns.len();
        let mut index = Index {
            width,
            active: CampaignSet::empty(width),
            partners: Dimension::new(width),
            media: std::array::from_fn(|_| CampaignSet::empty(width)),
            banner_sizes: FxHashMap::default(),
            countries: Dimension::new(width),
            device_types: Dimension::new(width),
            os: Dimension::new(width),
            site_domains: Dimension::new(width),
            block_site_domains: Blocklist::default(),
            app_bundles: Dimension::new(width),
            block_app_bundles: Blocklist::default(),
            categories: Dimension::new(width),
            hours: vec![CampaignSet::empty(width); HOURS_PER_WEEK],
            consent: Vec::new(),
            ivt_allowed: std::array::from_fn(|_| CampaignSet::empty(width)),
            allow_coppa: CampaignSet::empty(width),
            require_complete_schain: CampaignSet::empty(width),
            supply: Vec::new(),
        };
        for (c, &position) in order.iter().enumerate() {
            index.add_campaign(c, config.campaigns[position].get_ref(), partner_by_name);
        }
        index
    }

    fn add_campaign(
        &mut self,
        c: usize,
        campaign: &CampaignConfig,
        partner_by_name: &FxHashMap<String, PartnerIdx>,
    ) {
        let w = self.width;
        let t = &campaign.targeting;
        if campaign.enabled {
            self.active.insert(c);
        }
        let allowed_media: Vec<MediaType> =
            t.media.iter().filter_map(|m| MediaType::parse(m)).collect();
        for creative in &campaign.creatives {
            if let Some(m) = MediaType::parse(&creative.format) {
                if allowed_media.is_empty() || allowed_media.contains(&m) {
                    self.media[m.index()].insert(c);
                }
            }
        }
        self.partners.restrict(
            c,
            w,
            t.partners
                .iter()
                .filter_map(|p| partner_by_name.get(p).copied()),
        );
        let targeted_sizes: Vec<(u32, u32)> =
            t.sizes.iter().filter_map(|s| parse_size(s)).collect();
        let banner_allowed = allowed_media.is_empty() || allowed_media.contains(&MediaType::Banner);
        for creative in campaign.creatives.iter().filter(|cr| cr.format == "banner") {
            let size = (creative.w, creative.h);
            if banner_allowed && (targeted_sizes.is_empty() || targeted_sizes.contains(&size)) {
                self.banner_sizes
                    .entry(size)
                    .or_insert_with(|| CampaignSet::empty(w))
                    .insert(c);
            }
        }
        self.countries.restrict(c, w, t.countries.iter().cloned());
        self.device_types
            .restrict(c, w, t.device_types.iter().copied());
        self.os
            .restrict(c, w, t.os.iter().map(|o| o.to_ascii_lowercase()));
        self.site_domains
            .restrict(c, w, t.site_domains.iter().map(|d| d.to_ascii_lowercase()));
        self.app_bundles
            .restrict(c, w, t.app_bundles.iter().map(|b| b.to_ascii_lowercase()));
        self.categories.restrict(c, w, t.categories.iter().cloned());
        block(&mut self.block_site_domains, c, w, &t.block_site_domains);
        block(&mut self.block_app_bundles, c, w, &t.block_app_bundles);
        if t.dayparts.is_empty() {
            self.hours.iter_mut().for_each(|h| h.insert(c));
        }
        for hour in t.dayparts.iter().filter_map(|d| parse_daypart(d)).flatten() {
            self.hours[hour].insert(c);
        }
        let needs = consent::needs(t);
        if needs != ConsentNeeds::default() {
            join_group(&mut self.consent, needs, c, w);
        }
        for kind in t.allow_ivt.iter().filter_map(|k| IvtKind::from_name(k)) {
            self.ivt_allowed[kind as usize].insert(c);
        }
        if t.allow_coppa {
            self.allow_coppa.insert(c);
        }
        if t.supply_chain.require_complete {
            self.require_complete_schain.insert(c);
        }
        if let Some(policy) = SupplyPolicy::of(t) {
            join_group(&mut self.supply, policy, c, w);
        }
    }
}

/// Adds campaign `c` to the group of campaigns sharing `key`, starting one if needed.
fn join_group<K: PartialEq>(groups: &mut Vec<(K, CampaignSet)>, key: K, c: usize, width: usize) {
    match groups.iter_mut().find(|(k, _)| *k == key) {
        Some((_, set)) => set.insert(c),
        None => {
            let mut set = CampaignSet::empty(width);
            set.insert(c);
            groups.push((key, set));
        }
    }
}

fn block(list: &mut Blocklist, c: usize, width: usize, values: &[String]) {
    for v in values {
        list.by_value
            .entry(v.to_ascii_lowercase())
            .or_insert_with(|| CampaignSet::empty(width))
            .insert(c);
    }
}

/// Lower-cases `value` into `buf` without allocating; `None` when it does not fit
/// (such a value matches no target).
pub fn lowercase_into<'b>(value: &str, buf: &'b mut [u8; MAX_LOOKUP_KEY_BYTES]) -> Option<&'b str> {
    let bytes = value.as_bytes();
    let out = buf.get_mut(..bytes.len())?;
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = b.to_ascii_lowercase();
    }
    // ASCII lower-casing keeps UTF-8 valid: multi-byte sequences are left as they are.
    std::str::from_utf8(out).ok()
}

/// Calls `f` with `domain` and each parent domain (`a.b.c`, `b.c`, `c`), so a target
/// on `example.com` also matches `news.example.com`.
pub fn for_each_domain_suffix(domain: &str, mut f: impl FnMut(&str)) {
    let mut rest = domain;
    loop {
        f(rest);
        match rest.split_once('.') {
            Some((_, parent)) if !parent.is_empty() => rest = parent,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_suffixes_walk_up_to_the_top_label() {
        let mut seen = Vec::new();
        for_each_domain_suffix("news.example.com", |d| seen.push(d.to_string()));
        assert_eq!(seen, ["news.example.com", "example.com", "com"]);
    }

    #[test]
    fn lowercasing_is_bounded_and_allocation_free() {
        let mut buf = [0u8; MAX_LOOKUP_KEY_BYTES];
        assert_eq!(
            lowercase_into("WWW.Example.COM", &mut buf),
            Some("www.example.com")
        );
        let long = "a".repeat(MAX_LOOKUP_KEY_BYTES + 1);
        assert_eq!(lowercase_into(&long, &mut buf), None);
        assert_eq!(lowercase_into("ÜBER.de", &mut buf), Some("Über.de"));
    }
}
