//! A request's block lists (`bcat`, `badv`) as bitsets over the catalog's
//! [`Vocabulary`], built once per request so that checking a candidate creative is a
//! bit test per category or domain, not a string comparison per block-list entry.

use crate::catalog::index::{lowercase_into, MAX_LOOKUP_KEY_BYTES};
use crate::catalog::Vocabulary;
use crate::openrtb::BidRequest;

/// Blocked category and advertiser-domain ids of the current request.
#[derive(Debug)]
pub(super) struct Blocked {
    categories: Vec<u64>,
    adomains: Vec<u64>,
    /// Whether anything was set, so an unblocked request skips clearing and testing.
    any_category: bool,
    any_adomain: bool,
}

impl Blocked {
    /// Empty sets sized for `vocabulary`.
    pub(super) fn new(vocabulary: &Vocabulary) -> Blocked {
        Blocked {
            categories: vec![0; vocabulary.categories.len().div_ceil(64)],
            adomains: vec![0; vocabulary.adomains.len().div_ceil(64)],
            any_category: false,
            any_adomain: false,
        }
    }

    /// Sets the bits of `req`'s `bcat` and `badv` entries that any creative carries;
    /// entries no creative carries cannot block anything and are skipped.
    pub(super) fn fill(&mut self, vocabulary: &Vocabulary, req: &BidRequest<'_>) {
        if self.any_category {
            self.categories.fill(0);
            self.any_category = false;
        }
        if self.any_adomain {
            self.adomains.fill(0);
            self.any_adomain = false;
        }
        for cat in req.bcat() {
            if let Some(&id) = vocabulary.categories.get(*cat) {
                set(&mut self.categories, id);
                self.any_category = true;
            }
        }
        let mut buf = [0u8; MAX_LOOKUP_KEY_BYTES];
        for domain in req.badv() {
            let Some(lower) = lowercase_into(domain, &mut buf) else {
                continue;
            };
            if let Some(&id) = vocabulary.adomains.get(lower) {
                set(&mut self.adomains, id);
                self.any_adomain = true;
            }
        }
    }

    /// Whether one of the creative's category ids is blocked.
    #[inline]
    pub(super) fn category(&self, ids: &[u32]) -> bool {
        self.any_category && ids.iter().any(|&id| test(&self.categories, id))
    }

    /// Whether one of the creative's advertiser-domain ids is blocked.
    #[inline]
    pub(super) fn adomain(&self, ids: &[u32]) -> bool {
        self.any_adomain && ids.iter().any(|&id| test(&self.adomains, id))
    }
}

fn set(words: &mut [u64], id: u32) {
    words[id as usize / 64] |= 1 << (id % 64);
}

fn test(words: &[u64], id: u32) -> bool {
    words[id as usize / 64] & (1 << (id % 64)) != 0
}
