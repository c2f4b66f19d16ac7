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
        let decoded = parsed.decode_section(id);
        let Ok(section) = decoded else {
            // The id of a section that did not decode: from its name, as the crate's
            // ids are non-exhaustive.
            match section_number(&id.to_string()) {
                Some(GPP_TCF_EU_V2) => facts.tcf = Some(None),
                Some(n) if n <= MAX_GPP_SECTION && n != GPP_TCF_EU_V2 => {
                    facts.us_malformed |= 1 << n;
                }
                _ => {}
            }
            continue;
        };
        if let Some((n, opted_out)) = us_opt_outs(&section) {
            facts.us_present |= 1 << n;
            facts.us_opted_out[n as usize] = opted_out;
        }
    }
    Some(facts)
}

/// The GPP section number for the crate's section name (its `Display`).
fn section_number(name: &str) -> Option<u32> {
    Some(match name {
        "TcfEuV1" => 1,
        "TcfEuV2" => 2,
        "TcfCaV1" => 5,
        "UspV1" => 6,
        "UsNat" => 7,
        "UsCa" => 8,
        "UsVa" => 9,
        "UsCo" => 10,
        "UsUt" => 11,
        "UsCt" => 12,
        "UsFl" => 13,
        "UsMt" => 14,
        "UsOr" => 15,
        "UsTx" => 16,
        "UsDe" => 17,
        "UsIa" => 18,
        "UsNe" => 19,
        "UsNh" => 20,
        "UsNj" => 21,
        "UsTn" => 22,
        "UsMn" => 23,
        _ => return None,
    })
}

/// A US section's GPP number and opt-outs; `None` for a section that is not a US one.
/// Global Privacy Control (`gpc`) set counts as opting out of sale and sharing (the
/// states that recognise it treat it so).
fn us_opt_outs(section: &Section) -> Option<(u32, u8)> {
    let bits = |sale: &OptOut, sharing: Option<&OptOut>, targeted: Option<&OptOut>| {
        let out = |o: Option<&OptOut>, b: u8| {
            if matches!(o, Some(OptOut::OptedOut)) {
                b
            } else {
                0
            }
        };
        out(Some(sale), us::SALE)
            | out(sharing, us::SHARING)
            | out(targeted, us::TARGETED_ADVERTISING)
    };
    let gpc = |g: Option<bool>| {
        if g == Some(true) {
            us::SALE | us::SHARING
        } else {
            0
        }
    };
    macro_rules! state {
        ($s:expr, $n:expr) => {
            (
                $n,
                bits(
                    &$s.core.sale_opt_out,
                    None,
                    Some(&$s.core.targeted_advertising_opt_out),
                ) | gpc($s.gpc),
            )
        };
    }
    Some(match section {
        Section::UspV1(s) => (
            6,
            if matches!(s.opt_out_sale, iab_gpp::sections::uspv1::Flag::Yes) {
                us::SALE
            } else {
                0
            },
        ),
        Section::UsNat(s) => {
            let core = match &s.core {
                usnat::Core::V1(c) => bits(
                    &c.sale_opt_out,
                    Some(&c.sharing_opt_out),
                    Some(&c.targeted_advertising_opt_out),
                ),
                usnat::Core::V2(c) => bits(
                    &c.sale_opt_out,
                    Some(&c.sharing_opt_out),
                    Some(&c.targeted_advertising_opt_out),
                ),
                // A later core version this build does not know: fail closed.
                #[allow(unreachable_patterns)]
                _ => us::ALL,
            };
            (7, core | gpc(s.gpc))
        }
        Section::UsCa(s) => (
            8,
            bits(&s.core.sale_opt_out, Some(&s.core.sharing_opt_out), None) | gpc(s.gpc),
        ),
        Section::UsVa(s) => (
            9,
            bits(
                &s.core.sale_opt_out,
                None,
                Some(&s.core.targeted_advertising_opt_out),
            ),
        ),
        Section::UsCo(s) => state!(s, 10),
        Section::UsUt(s) => (
            11,
            bits(
                &s.core.sale_opt_out,
                None,
                Some(&s.core.targeted_advertising_opt_out),
            ),
        ),
        Section::UsCt(s) => state!(s, 12),
        Section::UsFl(s) => (
            13,
            bits(
                &s.core.sale_opt_out,
                None,
                Some(&s.core.targeted_advertising_opt_out),
            ),
        ),
        Section::UsMt(s) => state!(s, 14),
        Section::UsOr(s) => state!(s, 15),
        Section::UsTx(s) => state!(s, 16),
        Section::UsDe(s) => state!(s, 17),
        Section::UsIa(s) => state!(s, 18),
        Section::UsNe(s) => state!(s, 19),
        Section::UsNh(s) => state!(s, 20),
        Section::UsNj(s) => state!(s, 21),
        Section::UsTn(s) => state!(s, 22),
        Section::UsMn(s) => state!(s, 23),
        _ => return None,
    })
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
