//! Why we did not bid: one reason per imp (and per request), in the order the
//! decision checks them, with the OpenRTB code an exchange understands.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::catalog::Catalog;
use crate::metrics::Counter;

use super::campaign_counts::CampaignCounts;

/// Every no-bid reason. The order is the order of the decision's stages: when several
/// campaigns fail at different stages, the imp reports the latest stage any of them
/// reached (the most informative "almost").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum NoBidReason {
    /// The request could not be parsed or lacks required fields.
    InvalidRequest,
    /// The partner is disabled or over its rate.
    PartnerRefused,
    /// The request's `cur` list excludes our currency.
    CurrencyNotAccepted,
    /// No campaign is enabled.
    NoActiveCampaign,
    /// No campaign buys from this partner.
    PartnerNotTargeted,
    /// No campaign runs at this hour.
    OutsideDaypart,
    /// No campaign targets the user's country.
    GeoNotTargeted,
    /// No campaign targets the device type.
    DeviceNotTargeted,
    /// No campaign targets the operating system.
    OsNotTargeted,
    /// No campaign allows the site or app (allow lists or block lists).
    PublisherNotTargeted,
    /// No campaign targets the content category.
    CategoryNotTargeted,
    /// `device.ip` is in a data-centre network (`[ivt] datacenter_ranges_file`).
    IvtDatacenter,
    /// `device.ip` or `device.ua` is on the operator's blocklist.
    IvtBlocklist,
    /// `device.ua` is a known crawler or automation tool.
    IvtCrawler,
    /// The device's fields contradict each other.
    IvtInconsistentDevice,
    /// GDPR applies and the request has no TC string, or a consent string (TCF, GPP,
    /// US Privacy) that does not decode: no consent.
    NoConsent,
    /// GDPR applies and the TC string gives our vendor id neither consent nor
    /// legitimate interest.
    NoVendorConsent,
    /// GDPR applies and a TCF purpose or special feature the campaign needs is not
    /// granted to us (or a publisher restriction forbids it).
    NoPurposeConsent,
    /// The user opted out (US Privacy, a GPP US section, Global Privacy Control) of
    /// what the campaign does: sale, sharing or targeted advertising.
    UsOptOut,
    /// The request is flagged as directed at children (COPPA).
    Coppa,
    /// A campaign requires a complete supply chain, or verifies it against the files,
    /// and the request has none, or its last node is not the partner that sent it.
    SupplyChainIncomplete,
    /// A supply-chain node's seller is not in its system's sellers.json.
    UnknownSeller,
    /// The publisher's ads.txt (app-ads.txt) does not authorise a node, with the
    /// relationship the chain needs, or a reselling node's seller is not an
    /// intermediary in sellers.json.
    UnauthorizedSeller,
    /// A file the campaign verifies against is missing, unreachable or not fetched
    /// yet, and its `when_unverified` policy says not to bid.
    SupplyUnverified,
    /// No campaign serves the imp's media types.
    MediaNotTargeted,
    /// No campaign targets the banner sizes or has a creative of one of them.
    SizeNotTargeted,
    /// A supply-chain node is not an allowed seller.
    SellerNotAllowed,
    /// No creative fits the imp (format, size, MIME, duration).
    NoMatchingCreative,
    /// Every fitting creative has a blocked attribute (`battr`).
    BlockedAttribute,
    /// Every fitting creative has a blocked category (`bcat`).
    BlockedCategory,
    /// Every fitting creative has a blocked advertiser domain (`badv`).
    BlockedAdvertiser,
    /// A private auction and none of its deals is ours.
    DealRequired,
    /// The campaigns buy only through deals the imp does not carry.
    NoDeal,
    /// The floor is in a currency we have no rate for.
    FloorCurrencyUnsupported,
    /// Our price is below the floor.
    BelowFloor,
    /// Every candidate campaign is paused.
    Paused,
    /// The spend-rate breaker paused the campaign (it spent far faster than its pace)
    /// until an operator resumes it.
    SpendRateTripped,
    /// The user has seen the campaign's frequency cap this period, the request names
    /// no user and `[frequency] without_user = "no_bid"`, or the user cannot be
    /// counted (the frequency table is full).
    FrequencyCapped,
    /// Pacing skipped this opportunity.
    Paced,
    /// The spend ledger cannot be written (disk full, I/O error), or the campaign's
    /// lease on money in flight is full until the ledger records a larger one: no
    /// campaign spends money that could not be recorded.
    LedgerUnavailable,
    /// In a fleet: the campaign's day still has budget, but this host's share granted
    /// by the fleet store is used up and no more has come (Redis unreachable, slow, or
    /// the renewal not yet back). Fail closed: the host spends only what it holds.
    BudgetUnavailable,
    /// No candidate campaign has budget left for the price.
    BudgetExhausted,
    /// No decision was ready before the deadline.
    Deadline,
    /// Our own failure: a response that could not be encoded, a full ledger.
    TechnicalError,
}

impl NoBidReason {
    /// Number of reasons, for per-reason counter arrays.
    pub const COUNT: usize = NoBidReason::TechnicalError as usize + 1;

    /// Every reason, in stage order.
    pub const ALL: [NoBidReason; NoBidReason::COUNT] = {
        use NoBidReason::*;
        [
            InvalidRequest,
            PartnerRefused,
            CurrencyNotAccepted,
            NoActiveCampaign,
            PartnerNotTargeted,
            OutsideDaypart,
            GeoNotTargeted,
            DeviceNotTargeted,
            OsNotTargeted,
            PublisherNotTargeted,
            CategoryNotTargeted,
            IvtDatacenter,
            IvtBlocklist,
            IvtCrawler,
            IvtInconsistentDevice,
            NoConsent,
            NoVendorConsent,
            NoPurposeConsent,
            UsOptOut,
            Coppa,
            SupplyChainIncomplete,
            UnknownSeller,
            UnauthorizedSeller,
            SupplyUnverified,
            MediaNotTargeted,
            SizeNotTargeted,
            SellerNotAllowed,
            NoMatchingCreative,
            BlockedAttribute,
            BlockedCategory,
            BlockedAdvertiser,
            DealRequired,
            NoDeal,
            FloorCurrencyUnsupported,
            BelowFloor,
            Paused,
            SpendRateTripped,
            FrequencyCapped,
            Paced,
            LedgerUnavailable,
            BudgetUnavailable,
            BudgetExhausted,
            Deadline,
            TechnicalError,
        ]
    };

    /// The reasons one campaign can meet for an imp once the targeting index let it
    /// through: its own checks (sellers, strategy, deals, creatives and block lists,
    /// floor, pacing, budget), losing the budget race, and the fates of a chosen bid
    /// that did not leave (deadline, our own error). Per-campaign no-bid counts are
    /// kept for these only; every other reason is decided for the whole request or imp
    /// before any campaign is looked at. Stage order, like [`NoBidReason::ALL`].
    pub const PER_CAMPAIGN: [NoBidReason; 17] = {
        use NoBidReason::*;
        [
            SellerNotAllowed,
            NoMatchingCreative,
            BlockedAttribute,
            BlockedCategory,
            BlockedAdvertiser,
            DealRequired,
            NoDeal,
            BelowFloor,
            Paused,
            SpendRateTripped,
            FrequencyCapped,
            Paced,
            LedgerUnavailable,
            BudgetUnavailable,
            BudgetExhausted,
            Deadline,
            TechnicalError,
        ]
    };

    /// Position of this reason in [`NoBidReason::PER_CAMPAIGN`], if it is one there.
    #[inline]
    pub fn per_campaign_index(self) -> Option<usize> {
        let i = PER_CAMPAIGN_INDEX[self as usize];
        (i != NOT_PER_CAMPAIGN).then_some(usize::from(i))
    }

    /// Stable snake_case name for metrics labels and CLI output.
    pub fn name(self) -> &'static str {
        use NoBidReason::*;
        match self {
            InvalidRequest => "invalid_request",
            PartnerRefused => "partner_refused",
            CurrencyNotAccepted => "currency_not_accepted",
            NoActiveCampaign => "no_active_campaign",
            PartnerNotTargeted => "partner_not_targeted",
            OutsideDaypart => "outside_daypart",
            GeoNotTargeted => "geo_not_targeted",
            DeviceNotTargeted => "device_not_targeted",
            OsNotTargeted => "os_not_targeted",
            PublisherNotTargeted => "publisher_not_targeted",
            CategoryNotTargeted => "category_not_targeted",
            IvtDatacenter => "ivt_datacenter",
            IvtBlocklist => "ivt_blocklist",
            IvtCrawler => "ivt_crawler",
            IvtInconsistentDevice => "ivt_inconsistent_device",
            NoConsent => "no_consent",
            NoVendorConsent => "no_vendor_consent",
            NoPurposeConsent => "no_purpose_consent",
            UsOptOut => "us_opt_out",
            Coppa => "coppa",
            SupplyChainIncomplete => "supply_chain_incomplete",
            UnknownSeller => "unknown_seller",
            UnauthorizedSeller => "unauthorized_seller",
            SupplyUnverified => "supply_unverified",
            SellerNotAllowed => "seller_not_allowed",
            MediaNotTargeted => "media_not_targeted",
            SizeNotTargeted => "size_not_targeted",
            NoMatchingCreative => "no_matching_creative",
            BlockedAttribute => "blocked_attribute",
            BlockedCategory => "blocked_category",
            BlockedAdvertiser => "blocked_advertiser",
            DealRequired => "deal_required",
            NoDeal => "no_deal",
            FloorCurrencyUnsupported => "floor_currency_unsupported",
            BelowFloor => "below_floor",
            Paused => "paused",
            SpendRateTripped => "spend_rate_tripped",
            FrequencyCapped => "frequency_capped",
            Paced => "paced",
            LedgerUnavailable => "ledger_unavailable",
            BudgetUnavailable => "budget_unavailable",
            BudgetExhausted => "budget_exhausted",
            Deadline => "deadline",
            TechnicalError => "technical_error",
        }
    }

    /// The OpenRTB no-bid reason code (`BidResponse.nbr`, list "No-Bid Reason
    /// Codes"): a standard code where one fits, otherwise an exchange-specific code
    /// `500 + n` (OpenRTB reserves 500+ for such codes). Once published a code never
    /// changes meaning: a new reason takes the next free `n`, wherever it sits in
    /// the stage order. Standard codes may be shared (`unknown_seller` and
    /// `seller_not_allowed` are both "blocked supply chain node"); `500 + n` never is.
    pub fn nbr(self) -> u32 {
        use NoBidReason::*;
        let n = match self {
            TechnicalError => return 1,
            InvalidRequest => return 2,
            IvtCrawler => return 3,
            IvtBlocklist => return 4,
            IvtDatacenter => return 5,
            PublisherNotTargeted => return 7,
            Deadline => return 15,
            SupplyChainIncomplete => return 16,
            SellerNotAllowed | UnknownSeller => return 17,
            SupplyUnverified => return 11,
            UnauthorizedSeller => return 12,
            PartnerRefused => 1,
            CurrencyNotAccepted => 2,
            NoActiveCampaign => 3,
            PartnerNotTargeted => 4,
            OutsideDaypart => 5,
            GeoNotTargeted => 6,
            DeviceNotTargeted => 7,
            OsNotTargeted => 8,
            CategoryNotTargeted => 10,
            NoConsent => 11,
            Coppa => 12,
            MediaNotTargeted => 14,
            SizeNotTargeted => 15,
            NoMatchingCreative => 17,
            BlockedAttribute => 18,
            BlockedCategory => 19,
            BlockedAdvertiser => 20,
            DealRequired => 21,
            NoDeal => 22,
            FloorCurrencyUnsupported => 23,
            BelowFloor => 24,
            Paused => 25,
            SpendRateTripped => 26,
            FrequencyCapped => 27,
            Paced => 28,
            LedgerUnavailable => 29,
            BudgetExhausted => 30,
            NoVendorConsent => 33,
            NoPurposeConsent => 34,
            UsOptOut => 35,
            IvtInconsistentDevice => 36,
            BudgetUnavailable => 37,
        };
        500 + n
    }

    /// The OpenRTB loss reason code that names the same cause, where one exists
    /// (list "Loss Reason Codes"): useful when comparing our reasons with an
    /// exchange's loss notices.
    pub fn loss_code(self) -> Option<u32> {
        use NoBidReason::*;
        match self {
            BelowFloor => Some(100),
            SizeNotTargeted => Some(203),
            NoMatchingCreative => Some(204),
            BlockedAdvertiser => Some(205),
            BlockedCategory => Some(209),
            BlockedAttribute => Some(210),
            _ => None,
        }
    }
}

/// [`PER_CAMPAIGN_INDEX`] of a reason not counted per campaign.
const NOT_PER_CAMPAIGN: u8 = u8::MAX;

/// Position in [`NoBidReason::PER_CAMPAIGN`] by reason, derived from that list so the
/// two cannot disagree.
const PER_CAMPAIGN_INDEX: [u8; NoBidReason::COUNT] = {
    let mut index = [NOT_PER_CAMPAIGN; NoBidReason::COUNT];
    let mut i = 0;
    while i < NoBidReason::PER_CAMPAIGN.len() {
        index[NoBidReason::PER_CAMPAIGN[i] as usize] = i as u8;
        i += 1;
    }
    index
};

impl std::fmt::Display for NoBidReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Counters of one worker's decisions. The worker writes them (single-writer
/// [`Counter`]s: no atomic read-modify-write on the hot path); the metrics scrape
/// reads and sums every worker's.
#[derive(Debug)]
pub struct DecisionStats {
    pub requests: Counter,
    pub imps: Counter,
    pub bids: Counter,
    /// Requests answered with no bid at all.
    pub no_bid_requests: Counter,
    /// Imps without a bid, by reason (indexed by `NoBidReason as usize`).
    pub no_bid_imps: [Counter; NoBidReason::COUNT],
    /// Candidate campaigns considered after the index (work done per request).
    pub candidates: Counter,
    /// Decisions that finished after their deadline (answered no-bid, budget released).
    pub deadline_missed: Counter,
    /// Bids left out so the response fits the answer's room (budget released).
    pub bids_dropped_no_room: Counter,
    /// Bids not sent because the ledger inbox could not take them all (released).
    pub bids_dropped_ledger_full: Counter,
    /// Imps past `limits::MAX_IMPS` in a request, not evaluated.
    pub imps_over_limit: Counter,
    /// Requests with a consent string that does not decode, by
    /// [`super::consent::StringKind`]: no consent for them.
    pub consent_malformed: [Counter; super::consent::StringKind::COUNT],
    /// Consent strings decoded (each a cache miss: the cached ones cost a compare).
    pub consent_decodes: Counter,
    /// User agents matched against the invalid-traffic fragments (each a miss of the
    /// worker's cache of what an agent says).
    pub user_agent_matches: Counter,
    /// Supply-chain verdicts computed from the files (each a miss of the worker's
    /// verdict cache).
    pub supply_verdicts: Counter,
    /// Per-campaign outcomes; replaced by a larger table when a catalog brings new
    /// budget slots (by the owning worker, at decider build time).
    pub(super) campaigns: ArcSwap<CampaignCounts>,
}

impl Default for DecisionStats {
    fn default() -> Self {
        DecisionStats {
            requests: Counter::default(),
            imps: Counter::default(),
            bids: Counter::default(),
            no_bid_requests: Counter::default(),
            no_bid_imps: std::array::from_fn(|_| Counter::default()),
            candidates: Counter::default(),
            deadline_missed: Counter::default(),
            bids_dropped_no_room: Counter::default(),
            bids_dropped_ledger_full: Counter::default(),
            imps_over_limit: Counter::default(),
            consent_malformed: std::array::from_fn(|_| Counter::default()),
            consent_decodes: Counter::default(),
            user_agent_matches: Counter::default(),
            supply_verdicts: Counter::default(),
            campaigns: ArcSwap::default(),
        }
    }
}

impl DecisionStats {
    /// This worker's per-campaign counters, grown to cover every budget slot of
    /// `catalog`. Called by the owning worker when it builds a decider, never per
    /// request: growing allocates (128 bytes per slot, bounded by the slot capacity),
    /// copies what was counted and publishes the larger table. A report summing the
    /// old table meanwhile sees slightly older counts, never lost ones: the owning
    /// worker is the only writer and is not deciding while it grows the table.
    pub fn campaign_counts_for(&self, catalog: &Catalog) -> Arc<CampaignCounts> {
        let slots = catalog
            .campaigns
            .iter()
            .map(|c| c.budget_slot + 1)
            .max()
            .unwrap_or(0);
        let current = self.campaigns.load_full();
        if current.len() >= slots {
            return current;
        }
        let grown = Arc::new(CampaignCounts::grown(&current, slots));
        self.campaigns.store(Arc::clone(&grown));
        grown
    }

    /// The per-campaign counters as they are now, for reports.
    pub fn campaign_counts(&self) -> Arc<CampaignCounts> {
        self.campaigns.load_full()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_listed_in_stage_order_with_unique_names_and_codes() {
        for (i, r) in NoBidReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r} out of order");
        }
        let names: std::collections::HashSet<_> =
            NoBidReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), NoBidReason::COUNT);
        let ours: Vec<_> = NoBidReason::ALL
            .iter()
            .map(|r| r.nbr())
            .filter(|&c| c >= 500)
            .collect();
        let unique: std::collections::HashSet<_> = ours.iter().collect();
        assert_eq!(
            unique.len(),
            ours.len(),
            "an exchange-specific code is reused"
        );
        assert_eq!(NoBidReason::UnknownSeller.nbr(), 17);
        assert_eq!(NoBidReason::UnauthorizedSeller.nbr(), 12);
        assert_eq!(NoBidReason::SupplyUnverified.nbr(), 11);
        assert_eq!(NoBidReason::InvalidRequest.nbr(), 2);
        // Published exchange-specific codes keep their numbers.
        assert_eq!(NoBidReason::NoConsent.nbr(), 511);
        assert_eq!(NoBidReason::BudgetExhausted.nbr(), 530);
    }

    #[test]
    fn per_campaign_reasons_are_in_stage_order_and_indexed_both_ways() {
        let list = NoBidReason::PER_CAMPAIGN;
        assert!(list.windows(2).all(|w| w[0] < w[1]), "{list:?}");
        for r in NoBidReason::ALL {
            match list.iter().position(|&p| p == r) {
                Some(i) => assert_eq!(r.per_campaign_index(), Some(i), "{r}"),
                None => assert_eq!(r.per_campaign_index(), None, "{r}"),
            }
        }
        assert_eq!(NoBidReason::Coppa.per_campaign_index(), None);
        assert_eq!(NoBidReason::Paused.per_campaign_index(), Some(8));
    }
}
