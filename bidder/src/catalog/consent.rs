//! What each campaign needs from a request's consent signals, compiled from its
//! targeting into masks (`decide::consent` checks them against decoded strings).

use crate::config::targeting::US_OPT_OUTS;
use crate::config::TargetingConfig;

/// The purposes a campaign that says `require_consent = true` needs unless it lists
/// its own: personalised advertising (1 store/access, 2 basic ads, 3 ads profile,
/// 4 personalised ads, 7 measure ad performance).
pub const PERSONALISED_ADS_PURPOSES: [u8; 5] = [1, 2, 3, 4, 7];

/// Bit `id` of a purpose or special-feature mask (bit 0 unused: ids start at 1).
pub const fn bit(id: u8) -> u32 {
    1 << id
}

/// US opt-outs a campaign can be stopped by, as mask bits.
pub mod us {
    /// Sale of personal data (US Privacy `1-Y-`, GPP `SaleOptOut`).
    pub const SALE: u8 = 1;
    /// Sharing for cross-context behavioural advertising (GPP `SharingOptOut`).
    pub const SHARING: u8 = 2;
    /// Targeted advertising (GPP `TargetedAdvertisingOptOut`).
    pub const TARGETED_ADVERTISING: u8 = 4;
    pub const ALL: u8 = SALE | SHARING | TARGETED_ADVERTISING;
    /// Each configuration name (`config::targeting::US_OPT_OUTS`) with its bit.
    pub const BY_NAME: [(&str, u8); 3] = [
        (super::US_OPT_OUTS[0], SALE),
        (super::US_OPT_OUTS[1], SHARING),
        (super::US_OPT_OUTS[2], TARGETED_ADVERTISING),
    ];
}

/// What one campaign needs, compiled from its targeting. All zero: it uses no
/// personal data and bids whatever the signals say (contextual).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ConsentNeeds {
    /// TCF purposes (mask of [`bit`]s) it needs consent, or allowed legitimate
    /// interest, for, where GDPR applies.
    pub purposes: u32,
    /// TCF special features (mask of [`bit`]s) the user must have opted in to.
    pub special_features: u32,
    /// US opt-outs ([`us`] bits) that stop it.
    pub us_opt_outs: u8,
}

/// What a campaign's targeting needs (validated already).
pub fn needs(t: &TargetingConfig) -> ConsentNeeds {
    if !t.require_consent {
        return ConsentNeeds::default();
    }
    let purposes = match &t.consent_purposes {
        Some(listed) => listed.as_slice(),
        None => &PERSONALISED_ADS_PURPOSES[..],
    };
    let us_opt_outs = match &t.us_opt_outs {
        Some(names) => us::BY_NAME
            .iter()
            .filter(|(n, _)| names.iter().any(|m| m == n))
            .fold(0, |m, (_, b)| m | b),
        None => us::ALL,
    };
    ConsentNeeds {
        purposes: purposes.iter().fold(0, |m, &p| m | bit(p)),
        special_features: t
            .consent_special_features
            .iter()
            .fold(0, |m, &f| m | bit(f)),
        us_opt_outs,
    }
}
