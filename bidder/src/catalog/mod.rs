//! The catalog: a validated [`Config`] compiled into what the decision reads on every
//! request — campaigns, creatives and partners in flat vectors addressed by index,
//! and an [`Index`] of campaign sets per targeting value.
//!
//! A catalog is immutable once built; a reload builds a new one and swaps it in
//! whole, so a request always sees one consistent catalog.

mod bitset;
pub mod consent;
pub(crate) mod index;
pub mod ip_ranges;
pub mod ivt;

use std::net::IpAddr;

use rustc_hash::FxHashMap;

pub use bitset::CampaignSet;
pub use index::Index;

use crate::config::targeting::MediaType;
use crate::config::{Config, ConfigError};
use crate::money::budget::BudgetLimits;
use crate::money::frequency::{FrequencyCap, UserSource};
use crate::money::period::Calendar;
use crate::openrtb::OpenRtbVersion;
use crate::respond::{CreativeOut, Template};

/// Position of a campaign in [`Catalog::campaigns`] (and in every [`CampaignSet`]).
pub type CampaignIdx = usize;
/// Position of a partner in [`Catalog::partners`].
pub type PartnerIdx = u16;

/// Auction-wide settings, copied out of the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub seat: String,
    pub currency: String,
    /// Micros of `currency` per one unit of a foreign currency.
    pub currency_rates_micros: FxHashMap<String, i64>,
    pub host_id: u16,
    pub network_allowance_ms: u32,
    pub deadline_cap_ms: u32,
    pub default_tmax_ms: u32,
    pub default_shading_ppm: u32,
    pub reservation_ttl_ms: u64,
    pub notice_base_url: String,
    pub notice_hmac_key: Vec<u8>,
    /// Where frequency caps find the user, in order.
    pub user_sources: Vec<UserSource>,
    /// A capped campaign bids on requests without a user (uncapped for them).
    pub bid_without_user: bool,
    /// Some campaign has a frequency cap (else the user is never looked up).
    pub frequency_capped: bool,
    /// Our id in IAB Europe's Global Vendor List (`privacy.gvl_vendor_id`; 0 when
    /// unset, which no campaign needing consent allows).
    pub gvl_vendor_id: u16,
}

/// A partner (exchange / SSP), compiled.
#[derive(Debug, Clone)]
pub struct Partner {
    pub name: String,
    pub cidrs: Vec<ipnet::IpNet>,
    pub qps_limit: u32,
    pub burst: u32,
    /// Stated in `x-openrtb-version` on every answer to this partner.
    pub openrtb_version: OpenRtbVersion,
    pub nbr_body: bool,
    pub gzip_responses: bool,
    /// The encoding of its answers (a request's `Accept` may ask for FlatBuffers).
    pub response_format: crate::respond::Format,
    pub enabled: bool,
    /// New connections per second the XDP front admits (not overridden by the agent).
    pub syn_per_s: u32,
    pub syn_burst: u32,
    /// How long its bids hold their price waiting for a notice, ms (at most the
    /// reservation TTL).
    pub notice_horizon_ms: u64,
    /// What a bid of its that got no notice in time costs.
    pub unnoticed_bids: crate::money::ledger::Unnoticed,
    /// The most its bids may hold at once, micros; `None`: no limit.
    pub max_held_micros: Option<i64>,
    /// Its advertising-system domain (lower case), the last node of a chain it sends.
    pub asi: Option<String>,
}

impl Partner {
    /// Whether a request from `peer` may speak for this partner on its bid path: any
    /// address when it has no networks configured (known by path alone), otherwise
    /// one inside them. An unknown address is refused (fail closed).
    pub fn admits(&self, peer: Option<IpAddr>) -> bool {
        self.cidrs.is_empty()
            || peer.is_some_and(|ip| self.cidrs.iter().any(|net| net.contains(&ip)))
    }
}

/// What a campaign verifies of the supply chain against ads.txt and sellers.json
/// (`targeting.supply_chain`); campaigns with the same policy share one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupplyPolicy {
    pub verify_sellers: bool,
    pub verify_ads_txt: bool,
    pub when_unverified: WhenUnverified,
}

impl SupplyPolicy {
    /// The policy a campaign's targeting asks for; `None` when it verifies nothing.
    pub fn of(t: &crate::config::TargetingConfig) -> Option<SupplyPolicy> {
        let s = &t.supply_chain;
        (s.verify_sellers || s.verify_ads_txt).then_some(SupplyPolicy {
            verify_sellers: s.verify_sellers,
            verify_ads_txt: s.verify_ads_txt,
            when_unverified: match s.when_unverified.as_str() {
                "bid" => WhenUnverified::Bid,
                "direct_only" => WhenUnverified::DirectOnly,
                _ => WhenUnverified::NoBid,
            },
        })
    }
}

/// What to do while a file the policy needs is unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenUnverified {
    Bid,
    /// Bid only when the chain has one node (the partner sells for the publisher).
    DirectOnly,
    NoBid,
}

/// A campaign, compiled: what pricing and creative selection need after the index
/// has narrowed the candidates.
#[derive(Debug, Clone)]
pub struct Campaign {
    pub id: String,
    /// The campaign's row in [`crate::money::budget::Budgets`]: stable across reloads for the
    /// same campaign id, so reservations made before a reload settle where they belong.
    pub budget_slot: usize,
    pub advertiser: String,
    pub daily_budget_micros: i64,
    pub hourly_budget_micros: Option<i64>,
    pub lifetime_budget_micros: Option<i64>,
    /// The time zone the budget's days and hours follow.
    pub calendar: Calendar,
    pub max_bid_cpm_micros: i64,
    pub base_cpm_micros: i64,
    /// Bid the floor × this instead of the shaded value (`floor_markup_ppm`).
    pub floor_markup_ppm: Option<u32>,
    /// The most this campaign can ever bid: its value at the highest margin a strategy
    /// may set, capped by `max_bid_cpm_micros`. Campaigns are ordered by it, so the
    /// decision meets candidates best-first and can stop early.
    pub max_price_cpm_micros: i64,
    pub creatives: Vec<Creative>,
    pub deals: Vec<Deal>,
    pub deals_only: bool,
    /// Empty: any seller. Otherwise every schain node must match one entry.
    pub allowed_sellers: Vec<Seller>,
    pub frequency_cap: Option<FrequencyCap>,
}

/// A creative, compiled.
#[derive(Debug, Clone)]
pub struct Creative {
    pub id: String,
    pub media: MediaType,
    pub w: u32,
    pub h: u32,
    pub attr: Vec<u32>,
    pub adomain: Vec<String>,
    pub cat: Vec<String>,
    pub adm: String,
    pub duration_s: u32,
    pub mime: String,
    /// `cat` as [`Vocabulary`] ids, each category's tier-1 parent included (`IAB25-3`
    /// also as `IAB25`), so a `bcat` entry blocks with one bit test.
    pub cat_ids: Vec<u32>,
    /// `adomain` as [`Vocabulary`] ids.
    pub adomain_ids: Vec<u32>,
    /// Its part of a JSON bid, encoded once (see [`Template`]) from the fields above.
    pub template: Template,
}

/// Ids for the categories and advertiser domains creatives carry, so a request's
/// block lists (`bcat`, `badv`) become bitsets once per request instead of string
/// comparisons per candidate creative.
#[derive(Debug, Default)]
pub struct Vocabulary {
    pub categories: FxHashMap<String, u32>,
    /// Lower-cased.
    pub adomains: FxHashMap<String, u32>,
}

impl Vocabulary {
    fn id(map: &mut FxHashMap<String, u32>, value: &str) -> u32 {
        let next = map.len() as u32;
        *map.entry(value.to_string()).or_insert(next)
    }

    fn category_ids(&mut self, cats: &[String]) -> Vec<u32> {
        let mut ids = Vec::new();
        for cat in cats {
            ids.push(Self::id(&mut self.categories, cat));
            if let Some((tier1, _)) = cat.split_once('-') {
                ids.push(Self::id(&mut self.categories, tier1));
            }
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// A deal a campaign buys through.
#[derive(Debug, Clone)]
pub struct Deal {
    pub id: String,
    pub floor_cpm_micros: i64,
}

/// An allowed schain seller: a seller system (`asi`), optionally one seller id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seller {
    pub asi: String,
    pub sid: Option<String>,
}

impl Seller {
    /// Whether a schain node (`asi`, `sid`) is this seller.
    pub fn matches(&self, asi: &str, sid: &str) -> bool {
        self.asi.eq_ignore_ascii_case(asi) && self.sid.as_deref().is_none_or(|s| s == sid)
    }
}

impl Campaign {
    /// What the campaign may spend per day, hour and lifetime.
    pub fn budget_limits(&self) -> BudgetLimits {
        BudgetLimits {
            daily_micros: self.daily_budget_micros,
            hourly_micros: self.hourly_budget_micros,
            lifetime_micros: self.lifetime_budget_micros,
        }
    }
}

/// Budget slots by campaign id, kept by the daemon across reloads. A slot is never
/// given to another campaign while the process lives, so a reservation made for a
/// campaign that a reload removed still settles into that campaign's row.
#[derive(Debug, Clone)]
pub struct BudgetSlots {
    by_id: FxHashMap<String, usize>,
    /// Rows of the `Budgets` table the slots index into.
    pub capacity: usize,
}

impl Default for BudgetSlots {
    fn default() -> Self {
        BudgetSlots::with_capacity(crate::limits::MAX_CAMPAIGNS)
    }
}

impl BudgetSlots {
    pub fn with_capacity(capacity: usize) -> BudgetSlots {
        BudgetSlots {
            by_id: FxHashMap::default(),
            capacity,
        }
    }

    /// The slot of `id`, assigning the next free one; `None` when all are used.
    pub fn slot_for(&mut self, id: &str) -> Option<usize> {
        if let Some(slot) = self.by_id.get(id) {
            return Some(*slot);
        }
        let next = self.by_id.len();
        if next >= self.capacity {
            return None;
        }
        self.by_id.insert(id.to_string(), next);
        Some(next)
    }

    /// Slots handed out so far.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// Everything the decision reads, compiled from one configuration.
#[derive(Debug)]
pub struct Catalog {
    pub settings: Settings,
    pub partners: Vec<Partner>,
    pub campaigns: Vec<Campaign>,
    pub index: Index,
    pub vocabulary: Vocabulary,
    /// Invalid-traffic lists (`[ivt]`), read when the catalog compiles.
    pub ivt: ivt::IvtLists,
    partner_by_name: FxHashMap<String, PartnerIdx>,
}

impl Catalog {
    /// Compiles a validated configuration with budget slots equal to campaign
    /// positions: for one-shot uses (dry runs, tests) with `Budgets::new`.
    pub fn compile(config: &Config) -> Result<Catalog, ConfigError> {
        Catalog::compile_with_slots(config, &mut BudgetSlots::default())
    }

    /// Compiles a validated configuration, giving each campaign the budget slot its
    /// id already has in `slots` or a new one. Fails only on what validation cannot
    /// see without reading other files (the notice key, the `[ivt]` lists), or when
    /// slots run out.
    pub fn compile_with_slots(
        config: &Config,
        slots: &mut BudgetSlots,
    ) -> Result<Catalog, ConfigError> {
        let key_path = config.hmac_key_path();
        let notice_hmac_key = std::fs::read(&key_path).map_err(|source| ConfigError::Read {
            path: key_path.clone(),
            source,
        })?;
        let settings = Settings {
            seat: config.bidding.seat.clone(),
            currency: config.bidding.currency.clone(),
            currency_rates_micros: config
                .currency_rates_micros
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            host_id: config.bidding.host_id,
            network_allowance_ms: config.bidding.network_allowance_ms,
            deadline_cap_ms: config.bidding.deadline_cap_ms,
            default_tmax_ms: config.bidding.default_tmax_ms,
            default_shading_ppm: config.bidding.default_shading_ppm,
            reservation_ttl_ms: config.bidding.reservation_ttl_ms,
            notice_base_url: config.notice.base_url.trim_end_matches('/').to_string(),
            notice_hmac_key,
            user_sources: config
                .frequency
                .user_keys
                .iter()
                .map(|k| UserSource::parse(k).expect("user keys were validated"))
                .collect(),
            bid_without_user: config.frequency.without_user == "bid",
            frequency_capped: config
                .campaigns
                .iter()
                .any(|c| c.get_ref().frequency_cap.is_some()),
            gvl_vendor_id: config.privacy.gvl_vendor_id.unwrap_or(0),
        };
        let partners: Vec<Partner> = config
            .partners
            .iter()
            .map(|p| compile_partner(p.get_ref(), config.bidding.reservation_ttl_ms))
            .collect();
        let partner_by_name = partners
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.clone(), i as PartnerIdx))
            .collect();
        let order = campaign_order(config);
        let mut campaigns = Vec::with_capacity(config.campaigns.len());
        let mut vocabulary = Vocabulary::default();
        for &position in &order {
            let spanned = &config.campaigns[position];
            let c = spanned.get_ref();
            let slot = slots.slot_for(&c.id).ok_or_else(|| ConfigError::Invalid {
                path: config.source.path.clone(),
                line: config.source.line_of(spanned.span().start),
                field: format!("campaign ({})", c.id),
                problem: format!(
                    "more than {} distinct campaigns since the bidder started",
                    slots.capacity
                ),
                fix: "restart the bidder to recycle budget slots of removed campaigns".into(),
            })?;
            campaigns.push(compile_campaign(c, slot, &mut vocabulary));
        }
        let index = Index::build(config, &order, &partner_by_name);
        Ok(Catalog {
            settings,
            partners,
            campaigns,
            index,
            vocabulary,
            ivt: ivt::IvtLists::load(config)?,
            partner_by_name,
        })
    }

    /// The partner a bid path names (`/bid/{name}`).
    pub fn partner_by_name(&self, name: &str) -> Option<PartnerIdx> {
        self.partner_by_name.get(name).copied()
    }

    /// The partner whose CIDRs hold `addr`, longest prefix first; how traffic without
    /// a partner path is attributed (the XDP front uses the same CIDRs).
    pub fn partner_by_addr(&self, addr: IpAddr) -> Option<PartnerIdx> {
        let mut best: Option<(u8, PartnerIdx)> = None;
        for (i, partner) in self.partners.iter().enumerate() {
            for net in &partner.cidrs {
                if net.contains(&addr) && best.is_none_or(|(len, _)| net.prefix_len() > len) {
                    best = Some((net.prefix_len(), i as PartnerIdx));
                }
            }
        }
        best.map(|(_, i)| i)
    }

    /// Index of a campaign by id (for operators and the strategy table).
    pub fn campaign_by_id(&self, id: &str) -> Option<CampaignIdx> {
        self.campaigns.iter().position(|c| c.id == id)
    }
}

/// Configuration positions of the campaigns in catalog order: highest possible price
/// first, configuration order among equals.
fn campaign_order(config: &Config) -> Vec<usize> {
    let mut order: Vec<usize> = (0..config.campaigns.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(max_price(config.campaigns[i].get_ref())));
    order
}

fn max_price(c: &crate::config::CampaignConfig) -> i64 {
    crate::money::apply_ppm(c.base_cpm_micros, crate::limits::MAX_MARGIN_PPM)
        .min(c.max_bid_cpm_micros)
}

fn compile_partner(p: &crate::config::PartnerConfig, reservation_ttl_ms: u64) -> Partner {
    Partner {
        name: p.name.clone(),
        cidrs: p.cidrs.iter().filter_map(|c| c.parse().ok()).collect(),
        qps_limit: p.qps_limit,
        burst: p.burst,
        // Validation refused any other spelling.
        openrtb_version: OpenRtbVersion::parse(&p.openrtb_version)
            .expect("openrtb_version was validated"),
        nbr_body: p.nbr_body,
        gzip_responses: p.gzip_responses,
        response_format: p.response_format,
        enabled: p.enabled,
        syn_per_s: p.syn_per_s,
        syn_burst: p.syn_burst,
        notice_horizon_ms: p
            .notice_horizon_ms
            .unwrap_or(reservation_ttl_ms)
            .min(reservation_ttl_ms),
        unnoticed_bids: p.unnoticed_bids,
        max_held_micros: p.max_held_micros,
        asi: p.asi_domain(),
    }
}

fn compile_campaign(
    c: &crate::config::CampaignConfig,
    budget_slot: usize,
    vocabulary: &mut Vocabulary,
) -> Campaign {
    let creatives = c
        .creatives
        .iter()
        .filter_map(|cr| {
            let adomain: Vec<String> = cr.adomain.iter().map(|d| d.to_ascii_lowercase()).collect();
            let media = MediaType::parse(&cr.format)?;
            let template = Template::new(&CreativeOut {
                campaign_id: &c.id,
                creative_id: &cr.id,
                adm: &cr.adm,
                adomain: &adomain,
                cat: &cr.cat,
                attr: &cr.attr,
                w: cr.w,
                h: cr.h,
                mtype: media as u8,
            });
            Some(Creative {
                cat_ids: vocabulary.category_ids(&cr.cat),
                adomain_ids: adomain
                    .iter()
                    .map(|d| Vocabulary::id(&mut vocabulary.adomains, d))
                    .collect(),
                id: cr.id.clone(),
                media,
                w: cr.w,
                h: cr.h,
                attr: cr.attr.clone(),
                adomain,
                cat: cr.cat.clone(),
                adm: cr.adm.clone(),
                duration_s: cr.duration_s,
                mime: cr.mime.to_ascii_lowercase(),
                template,
            })
        })
        .collect();
    Campaign {
        id: c.id.clone(),
        budget_slot,
        advertiser: c.advertiser.clone(),
        daily_budget_micros: c.daily_budget_micros,
        hourly_budget_micros: c.hourly_budget_micros,
        lifetime_budget_micros: c.lifetime_budget_micros,
        calendar: Calendar::named(&c.time_zone).expect("time zone was validated"),
        frequency_cap: c.frequency_cap.map(|impressions| FrequencyCap {
            impressions,
            hourly: c.frequency_period == "hour",
        }),
        max_bid_cpm_micros: c.max_bid_cpm_micros,
        base_cpm_micros: c.base_cpm_micros,
        floor_markup_ppm: c.floor_markup_ppm,
        max_price_cpm_micros: max_price(c),
        creatives,
        deals: c
            .targeting
            .deals
            .iter()
            .map(|d| Deal {
                id: d.id.clone(),
                floor_cpm_micros: d.floor_cpm_micros,
            })
            .collect(),
        deals_only: c.targeting.deals_only,
        allowed_sellers: c
            .targeting
            .supply_chain
            .allowed_sellers
            .iter()
            .map(|s| match s.split_once(':') {
                Some((asi, sid)) => Seller {
                    asi: asi.to_string(),
                    sid: Some(sid.to_string()),
                },
                None => Seller {
                    asi: s.clone(),
                    sid: None,
                },
            })
            .collect(),
    }
}
