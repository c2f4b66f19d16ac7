//! What a pure function of some request bytes gave, per worker and by those bytes'
//! exact text: a direct-mapped table of a fixed number of slots. A hit costs one hash
//! and one compare of the text and allocates nothing; a miss computes and takes the
//! slot (reusing its buffer). Consent strings, user agents and a publisher's supply
//! chain recur per user session, browser build and page, so nearly every request hits.
//!
//! The text itself is the key (not only its hash): a collision can cost a computation
//! but never hand one string's value to another.

use std::hash::Hasher;

use rustc_hash::FxHasher;

struct Slot<V> {
    hash: u64,
    text: Vec<u8>,
    value: V,
}

/// Bounded memory: at most `slots × max_text_bytes` of text.
pub struct TextCache<V> {
    slots: Vec<Option<Slot<V>>>,
    max_text_bytes: usize,
    pub hits: u64,
    pub misses: u64,
}

impl<V: Copy> TextCache<V> {
    /// A cache of `slots` entries keeping texts of up to `max_text_bytes`.
    pub fn new(slots: usize, max_text_bytes: usize) -> TextCache<V> {
        assert!(slots > 0, "a text cache needs at least one slot");
        TextCache {
            slots: (0..slots).map(|_| None).collect(),
            max_text_bytes,
            hits: 0,
            misses: 0,
        }
    }

    /// The value for `text`, from the cache or from `compute` now. A text longer than
    /// the cache's `max_text_bytes` is computed every time and not kept (callers that
    /// must not compute on such texts check the length first).
    pub fn get(&mut self, text: &[u8], compute: impl FnOnce() -> V) -> V {
        if text.len() > self.max_text_bytes {
            self.misses += 1;
            return compute();
        }
        let mut h = FxHasher::default();
        h.write(text);
        let hash = h.finish();
        let at = (hash % self.slots.len() as u64) as usize;
        let slot = &mut self.slots[at];
        if let Some(s) = slot {
            if s.hash == hash && s.text == text {
                self.hits += 1;
                return s.value;
            }
        }
        self.misses += 1;
        let value = compute();
        match slot {
            Some(s) => {
                s.hash = hash;
                s.text.clear();
                s.text.extend_from_slice(text);
                s.value = value;
            }
            None => {
                *slot = Some(Slot {
                    hash,
                    text: text.to_vec(),
                    value,
                });
            }
        }
        value
    }

    /// Forgets every value, for when what `compute` depends on changed (rare: the
    /// buffers are freed, not kept).
    pub fn clear(&mut self) {
        self.slots.iter_mut().for_each(|slot| *slot = None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_is_computed_once_and_a_different_one_never_reads_its_value() {
        let mut cache = TextCache::<Option<usize>>::new(1024, 64);
        let mut computed = 0;
        for _ in 0..3 {
            let v = cache.get(b"CPXxRfA", || {
                computed += 1;
                Some(7)
            });
            assert_eq!(v, Some(7));
        }
        assert_eq!((computed, cache.hits, cache.misses), (1, 2, 1));
        // Every other text lands somewhere; each gets its own value back.
        for i in 0..5_000 {
            let text = format!("s{i}");
            assert_eq!(
                cache.get(text.as_bytes(), || Some(text.len() * 10)),
                Some(text.len() * 10)
            );
        }
        assert_eq!(cache.get(b"bad", || None), None);
        assert_eq!(
            cache.get(b"bad", || Some(1)),
            None,
            "a failed computation is cached too"
        );
    }

    #[test]
    fn an_overlong_text_is_computed_every_time_and_not_kept() {
        let mut cache = TextCache::<usize>::new(4, 8);
        let long = "C".repeat(9);
        let mut computed = 0;
        for _ in 0..2 {
            assert_eq!(
                cache.get(long.as_bytes(), || {
                    computed += 1;
                    long.len()
                }),
                9
            );
        }
        assert_eq!((computed, cache.hits), (2, 0));
    }

    #[test]
    fn cleared_values_are_computed_again() {
        let mut cache = TextCache::<u8>::new(4, 8);
        assert_eq!(cache.get(b"ua", || 1), 1);
        cache.clear();
        assert_eq!(cache.get(b"ua", || 2), 2, "the old value survived clear");
        assert_eq!(cache.get(b"", || 3), 3, "an empty text hit a cleared slot");
    }
}
