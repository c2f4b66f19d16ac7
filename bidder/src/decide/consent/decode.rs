//! Consent strings to masks. Runs on a cache miss only: the crates allocate, the
//! cached result does not.
//!
//! Two maintained crates, each for what it gets right: `lib_tcstring` decodes TC
//! strings (standalone, and the GPP string's TCF EU v2 section, which is the same
//! encoding); `iab_gpp` splits GPP strings and decodes their US sections. `iab_gpp`
//! 0.1.2 also decodes TCF, but misreads publisher restrictions (a restriction on
//! vendor 1001 came back as vendors {3, 4, 5, 6, 7, 9, 12}, another string failed):
//! found by `tests/decide.rs` with strings from IAB Europe's reference encoder.

use std::str::FromStr;

use iab_gpp::sections::us_common::OptOut;
use iab_gpp::sections::{usnat, Section, SectionId};
use iab_gpp::v1::GPPString;
use lib_tcstring::{PublisherRestrictionType, TcModelV2};

use super::{bit, us, TcfGrant, LEGITIMATE_INTEREST_PURPOSES, MAX_PURPOSE, MAX_SPECIAL_FEATURE};

/// GPP section id of the TCF EU v2 section (and the one `regs.gpp_sid` names when
/// GDPR applies).
pub const GPP_TCF_EU_V2: u32 = 2;

/// Highest GPP section id a [`GppFacts`] keeps (the US state sections end at 23).
const MAX_GPP_SECTION: u32 = 31;

/// What one GPP string says, per section, for our vendor id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GppFacts {
    /// The TCF EU v2 section: `None` absent, `Some(None)` malformed.
    pub tcf: Option<Option<TcfGrant>>,
    /// US sections present (bit = GPP section id).
    pub us_present: u32,
    /// US sections that did not decode (bit = GPP section id).
    pub us_malformed: u32,
    /// Opt-outs ([`us`] bits) of each US section, by GPP section id.
    pub us_opted_out: [u8; MAX_GPP_SECTION as usize + 1],
}

impl GppFacts {
    /// US opt-outs and malformed-ness of the sections that apply: those `gpp_sid`
    /// names, or every section present when it names none.
    pub fn us_for(&self, gpp_sid: &[u32]) -> (u8, bool) {
        let applicable = if gpp_sid.is_empty() {
            u32::MAX
        } else {
            gpp_sid
                .iter()
                .filter(|&&id| id <= MAX_GPP_SECTION)
                .fold(0, |m, &id| m | 1 << id)
        };
        let mut opted_out = 0;
        let mut present = self.us_present & applicable;
        while present != 0 {
            let id = present.trailing_zeros();
            opted_out |= self.us_opted_out[id as usize];
            present &= present - 1;
        }
        (opted_out, self.us_malformed & applicable != 0)
    }
}

/// Decodes a TC string (TCF v2) for `vendor`; `None` if it does not decode.
pub fn tcf(tc_string: &str, vendor: u16) -> Option<TcfGrant> {
    TcModelV2::try_from(tc_string)
        .ok()
        .map(|t| grant(&t, vendor))
}

/// Decodes a GPP string for `vendor`; `None` if its header does not decode. A
/// section that does not decode is recorded as malformed, the others still count.
pub fn gpp(gpp_string: &str, vendor: u16) -> Option<GppFacts> {
    let parsed = GPPString::from_str(gpp_string).ok()?;
    let mut facts = GppFacts::default();
    for &id in parsed.section_ids() {
        if id == SectionId::TcfEuV2 {
            facts.tcf = Some(parsed.section(id).and_then(|text| tcf(text, vendor)));
            continue;
        }
        let Some(n) = us_section_number(id) else {
            continue;
        };
        match parsed.decode_section(id) {
            Ok(section) => {
                facts.us_present |= 1 << n;
                facts.us_opted_out[n as usize] = us_opt_outs(&section);
            }
            Err(_) => facts.us_malformed |= 1 << n,
        }
    }
    Some(facts)
}

/// The GPP number of each US section (the crate's ids are non-exhaustive enums).
const US_SECTIONS: [(SectionId, u32); 18] = [
    (SectionId::UspV1, 6),
    (SectionId::UsNat, 7),
    (SectionId::UsCa, 8),
    (SectionId::UsVa, 9),
    (SectionId::UsCo, 10),
    (SectionId::UsUt, 11),
    (SectionId::UsCt, 12),
    (SectionId::UsFl, 13),
    (SectionId::UsMt, 14),
    (SectionId::UsOr, 15),
    (SectionId::UsTx, 16),
    (SectionId::UsDe, 17),
    (SectionId::UsIa, 18),
    (SectionId::UsNe, 19),
    (SectionId::UsNh, 20),
    (SectionId::UsNj, 21),
    (SectionId::UsTn, 22),
    (SectionId::UsMn, 23),
];

fn us_section_number(id: SectionId) -> Option<u32> {
    US_SECTIONS.iter().find(|(s, _)| *s == id).map(|&(_, n)| n)
}

/// A US section's opt-outs ([`us`] bits); a section of a kind this build does not know
/// counts as every opt-out (fail closed). Global Privacy Control (`gpc`) set counts as
/// opting out of sale and sharing (the states that recognise it treat it so).
fn us_opt_outs(section: &Section) -> u8 {
    let opted = |o: &OptOut, b: u8| if matches!(o, OptOut::OptedOut) { b } else { 0 };
    let gpc = |g: Option<bool>| {
        if g == Some(true) {
            us::SALE | us::SHARING
        } else {
            0
        }
    };
    // Sale and targeted advertising: what most state sections carry.
    macro_rules! state {
        ($s:expr) => {
            opted(&$s.core.sale_opt_out, us::SALE)
                | opted(
                    &$s.core.targeted_advertising_opt_out,
                    us::TARGETED_ADVERTISING,
                )
        };
    }
    macro_rules! national {
        ($c:expr) => {
            opted(&$c.sale_opt_out, us::SALE)
                | opted(&$c.sharing_opt_out, us::SHARING)
                | opted(&$c.targeted_advertising_opt_out, us::TARGETED_ADVERTISING)
        };
    }
    match section {
        Section::UspV1(s) => {
            if matches!(s.opt_out_sale, iab_gpp::sections::uspv1::Flag::Yes) {
                us::SALE
            } else {
                0
            }
        }
        Section::UsNat(s) => {
            let core = match &s.core {
                usnat::Core::V1(c) => national!(c),
                usnat::Core::V2(c) => national!(c),
                #[allow(unreachable_patterns)]
                _ => us::ALL,
            };
            core | gpc(s.gpc)
        }
        Section::UsCa(s) => {
            opted(&s.core.sale_opt_out, us::SALE)
                | opted(&s.core.sharing_opt_out, us::SHARING)
                | gpc(s.gpc)
        }
        Section::UsVa(s) => state!(s),
        Section::UsUt(s) => state!(s),
        Section::UsFl(s) => state!(s),
        Section::UsCo(s) => state!(s) | gpc(s.gpc),
        Section::UsCt(s) => state!(s) | gpc(s.gpc),
        Section::UsMt(s) => state!(s) | gpc(s.gpc),
        Section::UsOr(s) => state!(s) | gpc(s.gpc),
        Section::UsTx(s) => state!(s) | gpc(s.gpc),
        Section::UsDe(s) => state!(s) | gpc(s.gpc),
        Section::UsIa(s) => state!(s) | gpc(s.gpc),
        Section::UsNe(s) => state!(s) | gpc(s.gpc),
        Section::UsNh(s) => state!(s) | gpc(s.gpc),
        Section::UsNj(s) => state!(s) | gpc(s.gpc),
        Section::UsTn(s) => state!(s) | gpc(s.gpc),
        Section::UsMn(s) => state!(s) | gpc(s.gpc),
        _ => us::ALL,
    }
}

/// What a TC string grants `vendor` (TCF v2.2 policy): for each purpose, purpose
/// consent with vendor consent, or — for purposes that allow it — purpose legitimate
/// interest with vendor legitimate interest; a publisher restriction on our vendor id
/// narrows that (not allowed; consent only; legitimate interest only).
fn grant(tc: &TcModelV2, vendor: u16) -> TcfGrant {
    let vendor_consent = tc.vendors_consent.contains(&vendor);
    let vendor_li = tc.vendors_li_consent.contains(&vendor);
    let mut purposes = 0;
    for p in 1..=MAX_PURPOSE {
        let consent = vendor_consent && tc.purposes_consent.contains(&p);
        let li = vendor_li
            && LEGITIMATE_INTEREST_PURPOSES & bit(p) != 0
            && tc.purposes_li_transparency.contains(&p);
        let restriction = tc
            .publisher_restrictions
            .iter()
            .find(|r| r.purpose_id == p && r.vendor_list.contains(&vendor))
            .map(|r| &r.restriction_type);
        let allowed = match restriction {
            Some(PublisherRestrictionType::NotAllowed) => false,
            Some(PublisherRestrictionType::RequireConsent) => consent,
            Some(PublisherRestrictionType::RequireLegitimateInterest) => li,
            _ => consent || li,
        };
        if allowed {
            purposes |= bit(p);
        }
    }
    let special_features = tc
        .special_feature_opt_ins
        .iter()
        .filter(|&&f| (1..=MAX_SPECIAL_FEATURE).contains(&f))
        .fold(0, |m, &f| m | bit(f));
    TcfGrant {
        purposes,
        special_features,
        vendor_listed: vendor_consent || vendor_li,
    }
}
