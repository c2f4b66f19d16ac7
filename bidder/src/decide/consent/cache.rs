//! Decoded consent strings by their exact text, per worker: a direct-mapped table of
//! [`CONSENT_CACHE_SLOTS`] slots. A hit costs one hash and one compare of the text and
//! allocates nothing; a miss decodes and takes the slot (reusing its buffer). The same
//! few strings recur per user session, so nearly every request hits.
//!
//! The text itself is the key (not only its hash): a collision can cost a decode but
//! never hand one user's consent to another.

use std::hash::Hasher;

use rustc_hash::FxHasher;

use crate::limits::{CONSENT_CACHE_SLOTS, MAX_CONSENT_STRING_BYTES};

struct Slot<V> {
    hash: u64,
    text: Vec<u8>,
    /// `None` when the string did not decode.
    value: Option<V>,
}

/// Bounded memory: at most `CONSENT_CACHE_SLOTS × MAX_CONSENT_STRING_BYTES` of text.
pub struct ConsentCache<V> {
    slots: Vec<Option<Slot<V>>>,
    pub hits: u64,
    pub misses: u64,
}

impl<V: Copy> Default for ConsentCache<V> {
    fn default() -> Self {
        ConsentCache {
            slots: (0..CONSENT_CACHE_SLOTS).map(|_| None).collect(),
            hits: 0,
            misses: 0,
        }
    }
}

impl<V: Copy> ConsentCache<V> {
    /// What `decode` made of `text`, from the cache or by decoding it now. A text
    /// longer than [`MAX_CONSENT_STRING_BYTES`] is not decoded: `None`, as malformed.
    pub fn get(&mut self, text: &str, decode: impl FnOnce(&str) -> Option<V>) -> Option<V> {
        if text.len() > MAX_CONSENT_STRING_BYTES {
            return None;
        }
        let mut h = FxHasher::default();
        h.write(text.as_bytes());
        let hash = h.finish();
        let slot = &mut self.slots[(hash % CONSENT_CACHE_SLOTS as u64) as usize];
        if let Some(s) = slot {
            if s.hash == hash && s.text == text.as_bytes() {
                self.hits += 1;
                return s.value;
            }
        }
        self.misses += 1;
        let value = decode(text);
        match slot {
            Some(s) => {
                s.hash = hash;
                s.text.clear();
                s.text.extend_from_slice(text.as_bytes());
                s.value = value;
            }
            None => {
                *slot = Some(Slot {
                    hash,
                    text: text.as_bytes().to_vec(),
                    value,
                });
            }
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_is_decoded_once_and_a_different_one_never_reads_its_value() {
        let mut cache = ConsentCache::<usize>::default();
        let mut decodes = 0;
        for _ in 0..3 {
            let v = cache.get("CPXxRfA", |t| {
                decodes += 1;
                Some(t.len())
            });
            assert_eq!(v, Some(7));
        }
        assert_eq!((decodes, cache.hits, cache.misses), (1, 2, 1));
        // Every other string lands somewhere; each gets its own value back.
        for i in 0..5_000 {
            let text = format!("s{i}");
            assert_eq!(
                cache.get(&text, |t| Some(t.len() * 10)),
                Some(text.len() * 10)
            );
        }
        assert_eq!(cache.get("bad", |_| None), None);
        assert_eq!(
            cache.get("bad", |_| Some(1)),
            None,
            "a failed decode is cached too"
        );
    }

    #[test]
    fn an_overlong_string_is_malformed_without_decoding() {
        let mut cache = ConsentCache::<u8>::default();
        let long = "C".repeat(MAX_CONSENT_STRING_BYTES + 1);
        assert_eq!(cache.get(&long, |_| panic!("decoded")), None);
    }
}
