//! Fixed-width campaign sets: one bit per campaign, all sets of a catalog the same
//! width, so intersecting two sets is a short loop over words with no allocation.

/// A set of campaign indices, `width` bits wide (the catalog's campaign count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignSet {
    words: Box<[u64]>,
}

impl CampaignSet {
    /// The empty set for a catalog of `campaigns` campaigns.
    pub fn empty(campaigns: usize) -> Self {
        CampaignSet {
            words: vec![0; campaigns.div_ceil(64).max(1)].into_boxed_slice(),
        }
    }

    /// The set of all `campaigns` campaigns.
    pub fn full(campaigns: usize) -> Self {
        let mut set = Self::empty(campaigns);
        for i in 0..campaigns {
            set.insert(i);
        }
        set
    }

    pub fn insert(&mut self, campaign: usize) {
        self.words[campaign / 64] |= 1 << (campaign % 64);
    }

    pub fn remove(&mut self, campaign: usize) {
        self.words[campaign / 64] &= !(1 << (campaign % 64));
    }

    pub fn contains(&self, campaign: usize) -> bool {
        self.words
            .get(campaign / 64)
            .is_some_and(|w| w & (1 << (campaign % 64)) != 0)
    }

    /// Copies `other` into `self` (same width), reusing `self`'s storage.
    pub fn copy_from(&mut self, other: &CampaignSet) {
        self.words.copy_from_slice(&other.words);
    }

    /// `self ∩= other`.
    pub fn intersect(&mut self, other: &CampaignSet) {
        debug_assert_eq!(self.words.len(), other.words.len());
        for (a, b) in self.words.iter_mut().zip(other.words.iter()) {
            *a &= b;
        }
    }

    /// `self ∪= other`.
    pub fn union(&mut self, other: &CampaignSet) {
        debug_assert_eq!(self.words.len(), other.words.len());
        for (a, b) in self.words.iter_mut().zip(other.words.iter()) {
            *a |= b;
        }
    }

    /// `self ∖= other`.
    pub fn subtract(&mut self, other: &CampaignSet) {
        debug_assert_eq!(self.words.len(), other.words.len());
        for (a, b) in self.words.iter_mut().zip(other.words.iter()) {
            *a &= !b;
        }
    }

    /// Whether the two sets share a campaign.
    pub fn intersects(&self, other: &CampaignSet) -> bool {
        self.words
            .iter()
            .zip(other.words.iter())
            .any(|(a, b)| a & b != 0)
    }

    /// Storage width in 64-bit words (sets of one catalog all have the same).
    pub fn len_words(&self) -> usize {
        self.words.len()
    }

    /// Empties the set, keeping its width.
    pub fn clear(&mut self) {
        self.words.fill(0);
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Campaign indices in the set, ascending.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.trailing_zeros() as usize;
                rest &= rest - 1;
                Some(i * 64 + bit)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_algebra_matches_a_naive_model() {
        let n = 130;
        let mut a = CampaignSet::empty(n);
        let mut b = CampaignSet::empty(n);
        for i in (0..n).step_by(3) {
            a.insert(i);
        }
        for i in (0..n).step_by(5) {
            b.insert(i);
        }
        let mut both = a.clone();
        both.intersect(&b);
        assert_eq!(
            both.iter().collect::<Vec<_>>(),
            (0..n).filter(|i| i % 15 == 0).collect::<Vec<_>>()
        );
        let mut either = a.clone();
        either.union(&b);
        assert_eq!(
            either.len(),
            (0..n).filter(|i| i % 3 == 0 || i % 5 == 0).count()
        );
        let mut only_a = a.clone();
        only_a.subtract(&b);
        assert!(only_a.iter().all(|i| i % 3 == 0 && i % 5 != 0));
        assert!(a.contains(129) && !a.contains(128) && !a.contains(10_000));
        assert_eq!(CampaignSet::full(n).len(), n);
        a.clear();
        assert!(a.is_empty());
    }
}
