//! The supply chain against the files: each `schain` node's seller in its system's
//! sellers.json, and each node authorised by the publisher's ads.txt (app-ads.txt for
//! apps). Computed only when some campaign verifies, once per distinct chain and
//! publisher per view ([`Verdicts`]); reads the current [`View`] and allocates nothing
//! once warm. A file not tracked yet is reported to the fetcher and counts as
//! unavailable.
//!
//! The rules, per node `i` of the chain (`asi`, `sid`):
//! - sellers: `sid` is listed in `asi`'s sellers.json (else `unknown_seller`); a node
//!   after the first resells, so its seller must be `INTERMEDIARY` or `BOTH` (else
//!   `unauthorized_seller`);
//! - ads.txt: the publisher's file has a record `asi, sid`: any relationship for the
//!   first node, `RESELLER` for the others (else `unauthorized_seller`).

use crate::catalog::index::{lowercase_into, MAX_LOOKUP_KEY_BYTES};
use crate::catalog::{SupplyPolicy, WhenUnverified};
use crate::limits::{MAX_SUPPLY_VERDICT_KEY_BYTES, SUPPLY_VERDICT_CACHE_SLOTS};
use crate::openrtb::{BidRequest, SchainNode};
use crate::supply::ads_txt::RESELLER;
use crate::supply::{root_domain, FileKind, Lookup, SupplyStore, View};

use super::text_cache::TextCache;
use super::NoBidReason;
use crate::metrics::{Counter, SUPPLY_REFUSAL_KINDS};

/// The refusals counted per partner (`bidder_partner_supply_refused_total{reason}`), by
/// position in `PartnerCounters::supply_refused`.
pub const REFUSALS: [NoBidReason; SUPPLY_REFUSAL_KINDS] = [
    NoBidReason::SupplyChainIncomplete,
    NoBidReason::UnknownSeller,
    NoBidReason::UnauthorizedSeller,
    NoBidReason::SupplyUnverified,
];

/// What the files say about one side of the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Every node passes.
    Verified,
    /// Some file is missing, unreachable or not fetched yet, and no node failed.
    Unavailable,
    /// A node failed, with the reason.
    Refused(NoBidReason),
}

/// One request's supply facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// No chain, no nodes, or a last node that is not the partner that sent it.
    pub incomplete: bool,
    /// A one-node chain: the partner sells for the publisher directly.
    pub direct: bool,
    pub sellers: Check,
    pub ads_txt: Check,
}

/// Which files the campaigns still in play verify: what a verdict computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    pub sellers: bool,
    pub ads_txt: bool,
}

impl Verdict {
    /// Computes the facts `needs` asks for (the other side stays `Verified`).
    /// `partner_asi` is the sending partner's system domain, when known.
    pub fn of(
        req: &BidRequest<'_>,
        partner_asi: Option<&str>,
        store: &SupplyStore,
        view: &View,
        needs: Needs,
    ) -> Verdict {
        let nodes = req.schain().map_or(&[][..], |s| req.schain_nodes(s.nodes));
        let last_is_partner = match (partner_asi, nodes.last().and_then(|n| n.asi)) {
            (Some(ours), Some(asi)) => asi.eq_ignore_ascii_case(ours),
            (Some(_), None) => false,
            (None, _) => true,
        };
        let mut verdict = Verdict {
            incomplete: nodes.is_empty() || !last_is_partner,
            direct: nodes.len() == 1,
            sellers: Check::Verified,
            ads_txt: Check::Verified,
        };
        if verdict.incomplete {
            return verdict;
        }
        if needs.sellers {
            verdict.sellers = sellers(nodes, store, view);
        }
        if needs.ads_txt {
            verdict.ads_txt = ads_txt(req, nodes, store, view);
        }
        verdict
    }

    /// Whether a campaign with `policy` may bid, or why not.
    pub fn check(&self, policy: &SupplyPolicy) -> Result<(), NoBidReason> {
        if self.incomplete {
            return Err(NoBidReason::SupplyChainIncomplete);
        }
        let checks = [
            (policy.verify_sellers, self.sellers),
            (policy.verify_ads_txt, self.ads_txt),
        ];
        let mut unavailable = false;
        for (needed, check) in checks {
            match check {
                Check::Refused(reason) if needed => return Err(reason),
                Check::Unavailable if needed => unavailable = true,
                _ => {}
            }
        }
        match (unavailable, policy.when_unverified) {
            (false, _) | (true, WhenUnverified::Bid) => Ok(()),
            (true, WhenUnverified::DirectOnly) if self.direct => Ok(()),
            (true, _) => Err(NoBidReason::SupplyUnverified),
        }
    }
}

fn sellers(nodes: &[SchainNode<'_>], store: &SupplyStore, view: &View) -> Check {
    let mut unavailable = false;
    for (i, node) in nodes.iter().enumerate() {
        let mut buf = [0; MAX_LOOKUP_KEY_BYTES];
        let Some(asi) = node.asi.and_then(|a| lowercase_into(a, &mut buf)) else {
            return Check::Refused(NoBidReason::UnknownSeller);
        };
        match view.sellers_json(asi) {
            Lookup::Untracked => {
                store.discover(FileKind::SellersJson, asi);
                unavailable = true;
            }
            Lookup::Unavailable => unavailable = true,
            Lookup::Ready(file) => match file.seller(node.sid.unwrap_or("")) {
                None => return Check::Refused(NoBidReason::UnknownSeller),
                Some(s) if i > 0 && !s.seller_type.may_resell() => {
                    return Check::Refused(NoBidReason::UnauthorizedSeller)
                }
                Some(_) => {}
            },
        }
    }
    if unavailable {
        Check::Unavailable
    } else {
        Check::Verified
    }
}

/// The publisher's file a request's ads.txt check reads, and the host it is read
/// from: ads.txt from the site's domain (or its publisher's), app-ads.txt from the app
/// publisher's domain (or the app's).
fn publisher_host<'r>(req: &BidRequest<'r>) -> (FileKind, Option<&'r str>) {
    match (&req.site, &req.app) {
        (Some(site), _) => (
            FileKind::AdsTxt,
            site.domain
                .or(site.publisher.as_ref().and_then(|p| p.domain)),
        ),
        (None, Some(app)) => (
            FileKind::AppAdsTxt,
            app.publisher.as_ref().and_then(|p| p.domain).or(app.domain),
        ),
        (None, None) => (FileKind::AdsTxt, None),
    }
}

fn ads_txt(
    req: &BidRequest<'_>,
    nodes: &[SchainNode<'_>],
    store: &SupplyStore,
    view: &View,
) -> Check {
    let (kind, host) = publisher_host(req);
    let mut buf = [0; MAX_LOOKUP_KEY_BYTES];
    let Some(domain) = host
        .and_then(|h| lowercase_into(h, &mut buf))
        .and_then(root_domain)
    else {
        // No publisher domain to read a file from: nothing can be verified.
        return Check::Unavailable;
    };
    let file = match view.ads_txt(kind, domain) {
        Lookup::Ready(file) => file,
        Lookup::Untracked => {
            store.discover(kind, domain);
            return Check::Unavailable;
        }
        Lookup::Unavailable => return Check::Unavailable,
    };
    for (i, node) in nodes.iter().enumerate() {
        let mut asi_buf = [0; MAX_LOOKUP_KEY_BYTES];
        let asi = node
            .asi
            .and_then(|a| lowercase_into(a, &mut asi_buf))
            .unwrap_or("");
        let relationship = file.relationship(asi, node.sid.unwrap_or(""));
        let authorised = if i == 0 {
            relationship != 0
        } else {
            relationship & RESELLER != 0
        };
        if !authorised {
            return Check::Refused(NoBidReason::UnauthorizedSeller);
        }
    }
    Check::Verified
}

/// One worker's verdicts by the request fields they read (the partner's system, the
/// publisher's host, each node's `asi` and `sid`), for one published view: a new view
/// empties it. A publisher's pages through one exchange carry the same chain, so most
/// requests hit. A hit does not report untracked files to the fetcher again; the
/// view it publishes after fetching empties the cache.
pub struct Verdicts {
    generation: u64,
    /// Scratch for the key, its capacity reserved up front: building it never allocates.
    key: Vec<u8>,
    cache: TextCache<Verdict>,
}

impl Default for Verdicts {
    fn default() -> Self {
        Verdicts {
            generation: 0,
            key: Vec::with_capacity(MAX_SUPPLY_VERDICT_KEY_BYTES),
            cache: TextCache::new(SUPPLY_VERDICT_CACHE_SLOTS, MAX_SUPPLY_VERDICT_KEY_BYTES),
        }
    }
}

impl Verdicts {
    /// [`Verdict::of`] on the store's current view, remembered; each one computed
    /// counts in `computed`. A request whose fields do not fit the key's bound is
    /// computed every time.
    pub fn get(
        &mut self,
        req: &BidRequest<'_>,
        partner_asi: Option<&str>,
        store: &SupplyStore,
        needs: Needs,
        computed: &Counter,
    ) -> Verdict {
        // A view published between this load and the one below only makes a verdict
        // newer than its generation, and the next request empties the cache.
        let generation = store.generation();
        if self.generation != generation {
            self.cache.clear();
            self.generation = generation;
        }
        let compute = || {
            computed.inc();
            let view = store.view();
            Verdict::of(req, partner_asi, store, &view, needs)
        };
        if !verdict_key(&mut self.key, req, partner_asi, needs) {
            return compute();
        }
        self.cache.get(&self.key, compute)
    }
}

/// Writes into `key` every field [`Verdict::of`] reads, each length-prefixed so no two
/// requests that differ share a key. `false` when it would pass
/// [`MAX_SUPPLY_VERDICT_KEY_BYTES`].
fn verdict_key(
    key: &mut Vec<u8>,
    req: &BidRequest<'_>,
    partner_asi: Option<&str>,
    needs: Needs,
) -> bool {
    /// The length prefix of an absent field (a present one is shorter).
    const ABSENT: u16 = u16::MAX;
    fn field(key: &mut Vec<u8>, value: Option<&str>) -> bool {
        let bytes = value.map_or(&[][..], str::as_bytes);
        if key.len() + 2 + bytes.len() > MAX_SUPPLY_VERDICT_KEY_BYTES {
            return false;
        }
        // Fits in u16: the key's bound is far below it (limits.rs asserts so).
        let len = value.map_or(ABSENT, |_| bytes.len() as u16);
        key.extend_from_slice(&len.to_le_bytes());
        key.extend_from_slice(bytes);
        true
    }
    key.clear();
    let (kind, host) = publisher_host(req);
    key.push(u8::from(needs.sellers) | u8::from(needs.ads_txt) << 1 | (kind as u8) << 2);
    let nodes = req.schain().map_or(&[][..], |s| req.schain_nodes(s.nodes));
    field(key, partner_asi)
        && field(key, host)
        && nodes
            .iter()
            .all(|node| field(key, node.asi) && field(key, node.sid))
}
