//! Consent: what a campaign needs before it may use personal data, and whether a
//! request's signals give it — the TCF v2.2 string (`user.consent`, or the GPP
//! string's TCF EU section), the GPP US sections and the US Privacy string.
//!
//! Decoding (`decode.rs`) reduces a string to what it grants *us* (our Global Vendor
//! List id) in a few machine words; a [`TextCache`] keeps those per distinct string, so a
//! warm request pays a hash and a compare, and the check is mask arithmetic.

pub mod decode;

pub use crate::catalog::consent::{bit, us, ConsentNeeds, PERSONALISED_ADS_PURPOSES};

use super::text_cache::TextCache;
use super::{DecisionStats, NoBidReason};
use crate::limits::{CONSENT_CACHE_SLOTS, MAX_CONSENT_STRING_BYTES};
use crate::openrtb::BidRequest;
use decode::GppFacts;

/// TCF purposes a vendor may rely on legitimate interest for instead of consent
/// (policy v4, TCF v2.2): never purpose 1 (store or access information on a device),
/// and not 3–6 (personalised ads and content profiles) since v2.2.
pub const LEGITIMATE_INTEREST_PURPOSES: u32 = bit(2) | bit(7) | bit(8) | bit(9) | bit(10) | bit(11);

/// Highest TCF purpose id a string can carry (a 24-bit field).
pub const MAX_PURPOSE: u8 = 24;
/// Highest TCF special feature id a string can carry (a 12-bit field).
pub const MAX_SPECIAL_FEATURE: u8 = 12;

/// What a TC string grants our vendor id, reduced to masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcfGrant {
    /// Purposes we may process for: consent (purpose and vendor), or legitimate
    /// interest where the purpose allows it — after the publisher's restrictions.
    pub purposes: u32,
    /// Special features the user opted in to.
    pub special_features: u32,
    /// Our vendor id has consent or legitimate interest at all.
    pub vendor_listed: bool,
}

/// The TCF signal of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tcf {
    /// No TC string (neither `user.consent` nor a GPP TCF EU section).
    Absent,
    /// A string that does not decode (or is longer than the limit): no consent.
    Malformed,
    Decoded(TcfGrant),
}

/// The request's consent signals, decoded: what [`ConsentNeeds::check`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsentFacts {
    /// GDPR applies: `regs.gdpr` is 1, or `regs.gpp_sid` names the TCF EU section.
    pub gdpr: bool,
    pub tcf: Tcf,
    /// US opt-outs ([`us`] bits) in any applicable US signal.
    pub us_opted_out: u8,
    /// A US signal (US Privacy string or an applicable GPP US section) did not decode.
    pub us_malformed: bool,
}

impl ConsentNeeds {
    /// Whether these needs are met; the error names the first that is not. Fails
    /// closed: a malformed string is no consent.
    pub fn check(&self, facts: &ConsentFacts) -> Result<(), NoBidReason> {
        let needs_tcf = self.purposes != 0 || self.special_features != 0;
        if facts.gdpr && needs_tcf {
            let grant = match facts.tcf {
                Tcf::Absent | Tcf::Malformed => return Err(NoBidReason::NoConsent),
                Tcf::Decoded(grant) => grant,
            };
            if !grant.vendor_listed {
                return Err(NoBidReason::NoVendorConsent);
            }
            if grant.purposes & self.purposes != self.purposes
                || grant.special_features & self.special_features != self.special_features
            {
                return Err(NoBidReason::NoPurposeConsent);
            }
        }
        if self.us_opt_outs != 0 {
            if facts.us_malformed {
                return Err(NoBidReason::NoConsent);
            }
            if facts.us_opted_out & self.us_opt_outs != 0 {
                return Err(NoBidReason::UsOptOut);
            }
        }
        Ok(())
    }
}

/// Kinds of consent string, for the malformed counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringKind {
    Tcf,
    Gpp,
    UsPrivacy,
}

impl StringKind {
    pub const COUNT: usize = 3;
    pub const ALL: [StringKind; StringKind::COUNT] =
        [StringKind::Tcf, StringKind::Gpp, StringKind::UsPrivacy];

    /// The `kind` label on `/metrics`.
    pub fn name(self) -> &'static str {
        match self {
            StringKind::Tcf => "tcf",
            StringKind::Gpp => "gpp",
            StringKind::UsPrivacy => "us_privacy",
        }
    }
}

/// One worker's consent decoding: a cache per string kind, for one vendor id.
pub struct Decoder {
    vendor: u16,
    /// `None`: the string did not decode.
    tcf: TextCache<Option<TcfGrant>>,
    gpp: TextCache<Option<GppFacts>>,
}

impl Decoder {
    pub fn new(vendor: u16) -> Decoder {
        Decoder {
            vendor,
            tcf: TextCache::new(CONSENT_CACHE_SLOTS, MAX_CONSENT_STRING_BYTES),
            gpp: TextCache::new(CONSENT_CACHE_SLOTS, MAX_CONSENT_STRING_BYTES),
        }
    }

    /// The request's consent signals for our vendor id. Counts, per request, each
    /// string that does not decode, and each decode a cache miss costs.
    pub fn facts(&mut self, req: &BidRequest<'_>, stats: &DecisionStats) -> ConsentFacts {
        let vendor = self.vendor;
        let gpp_sid = req.ints(req.regs.gpp_sid);
        let gdpr = req.regs.gdpr == Some(true) || gpp_sid.contains(&decode::GPP_TCF_EU_V2);
        let malformed = |kind: StringKind| stats.consent_malformed[kind as usize].inc();
        // None: no GPP string; Some(None): one that does not decode.
        let gpp = req.regs.gpp.filter(|s| !s.is_empty()).map(|s| {
            let facts = cached(&mut self.gpp, s, |t| {
                stats.consent_decodes.inc();
                decode::gpp(t, vendor)
            });
            if facts.is_none() {
                malformed(StringKind::Gpp);
            }
            facts
        });
        let tc_string = req
            .user
            .as_ref()
            .and_then(|u| u.consent)
            .filter(|c| !c.is_empty());
        // The TC string matters only where GDPR applies ([`ConsentNeeds::check`]).
        let tcf = match (gdpr, tc_string, gpp) {
            (false, ..) | (true, None, None) => Tcf::Absent,
            (true, Some(s), _) => {
                let grant = cached(&mut self.tcf, s, |t| {
                    stats.consent_decodes.inc();
                    decode::tcf(t, vendor)
                });
                grant.map_or_else(
                    || {
                        malformed(StringKind::Tcf);
                        Tcf::Malformed
                    },
                    Tcf::Decoded,
                )
            }
            (true, None, Some(f)) => match f.map(|f| f.tcf) {
                Some(None) => Tcf::Absent,
                None | Some(Some(None)) => Tcf::Malformed,
                Some(Some(Some(grant))) => Tcf::Decoded(grant),
            },
        };
        let (mut us_opted_out, mut us_malformed) = match gpp {
            None => (0, false),
            Some(None) => (0, true),
            Some(Some(f)) => f.us_for(gpp_sid),
        };
        if let Some(s) = req.regs.us_privacy.filter(|s| !s.is_empty()) {
            match us_privacy_opted_out(s) {
                Some(true) => us_opted_out |= us::SALE,
                Some(false) => {}
                None => {
                    malformed(StringKind::UsPrivacy);
                    us_malformed = true;
                }
            }
        }
        ConsentFacts {
            gdpr,
            tcf,
            us_opted_out,
            us_malformed,
        }
    }
}

/// `decode(text)` through `cache`; a string longer than [`MAX_CONSENT_STRING_BYTES`] is
/// malformed without being decoded (so an oversized string costs nothing to refuse).
fn cached<V: Copy>(
    cache: &mut TextCache<Option<V>>,
    text: &str,
    decode: impl FnOnce(&str) -> Option<V>,
) -> Option<V> {
    if text.len() > MAX_CONSENT_STRING_BYTES {
        return None;
    }
    cache.get(text.as_bytes(), || decode(text))
}

/// Parses a US Privacy string (IAB CCPA spec v1: version `1`, then notice given,
/// opted out of sale, LSPA covered — each `Y`, `N` or `-`). Returns whether the user
/// opted out of sale; `None` for anything else (malformed).
pub fn us_privacy_opted_out(s: &str) -> Option<bool> {
    let b = s.as_bytes();
    let flag = |c: u8| matches!(c.to_ascii_uppercase(), b'Y' | b'N' | b'-');
    if b.len() != 4 || b[0] != b'1' || !b[1..].iter().all(|&c| flag(c)) {
        return None;
    }
    Some(b[2].eq_ignore_ascii_case(&b'Y'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn personalised() -> ConsentNeeds {
        ConsentNeeds {
            purposes: PERSONALISED_ADS_PURPOSES.iter().map(|&p| bit(p)).sum(),
            special_features: 0,
            us_opt_outs: us::ALL,
        }
    }

    fn facts(gdpr: bool, tcf: Tcf) -> ConsentFacts {
        ConsentFacts {
            gdpr,
            tcf,
            us_opted_out: 0,
            us_malformed: false,
        }
    }

    #[test]
    fn contextual_campaigns_need_nothing() {
        let none = ConsentNeeds::default();
        let mut f = facts(true, Tcf::Malformed);
        f.us_opted_out = us::ALL;
        f.us_malformed = true;
        assert_eq!(none.check(&f), Ok(()));
    }

    #[test]
    fn gdpr_needs_a_string_our_vendor_and_every_purpose() {
        let needs = personalised();
        assert_eq!(
            needs.check(&facts(true, Tcf::Absent)),
            Err(NoBidReason::NoConsent)
        );
        assert_eq!(
            needs.check(&facts(true, Tcf::Malformed)),
            Err(NoBidReason::NoConsent)
        );
        assert_eq!(needs.check(&facts(false, Tcf::Absent)), Ok(()));
        let all = TcfGrant {
            purposes: needs.purposes,
            special_features: 0,
            vendor_listed: true,
        };
        assert_eq!(needs.check(&facts(true, Tcf::Decoded(all))), Ok(()));
        let unlisted = TcfGrant {
            vendor_listed: false,
            ..all
        };
        assert_eq!(
            needs.check(&facts(true, Tcf::Decoded(unlisted))),
            Err(NoBidReason::NoVendorConsent)
        );
        let short = TcfGrant {
            purposes: needs.purposes & !bit(4),
            ..all
        };
        assert_eq!(
            needs.check(&facts(true, Tcf::Decoded(short))),
            Err(NoBidReason::NoPurposeConsent)
        );
        let geo = ConsentNeeds {
            special_features: bit(1),
            ..needs
        };
        assert_eq!(
            geo.check(&facts(true, Tcf::Decoded(all))),
            Err(NoBidReason::NoPurposeConsent)
        );
    }

    #[test]
    fn us_opt_outs_stop_only_the_campaigns_that_name_them() {
        let sale_only = ConsentNeeds {
            us_opt_outs: us::SALE,
            ..ConsentNeeds::default()
        };
        let mut f = facts(false, Tcf::Absent);
        f.us_opted_out = us::TARGETED_ADVERTISING;
        assert_eq!(sale_only.check(&f), Ok(()));
        assert_eq!(personalised().check(&f), Err(NoBidReason::UsOptOut));
        f.us_opted_out = 0;
        f.us_malformed = true;
        assert_eq!(sale_only.check(&f), Err(NoBidReason::NoConsent));
    }

    #[test]
    fn us_privacy_strings_are_read_by_the_spec() {
        assert_eq!(us_privacy_opted_out("1YYN"), Some(true));
        assert_eq!(us_privacy_opted_out("1yyn"), Some(true));
        assert_eq!(us_privacy_opted_out("1YNN"), Some(false));
        assert_eq!(us_privacy_opted_out("1---"), Some(false));
        for bad in ["", "1YY", "1YYNN", "2YYN", "1YXN", "YYYN"] {
            assert_eq!(us_privacy_opted_out(bad), None, "{bad:?}");
        }
    }
}
