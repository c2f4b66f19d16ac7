//! The notice keys the control port accepts, across a key rotation.
//!
//! Workers sign notice URLs with the key of the configuration in force, and a reload
//! can change that key. A win or bill notice for a bid signed just before the reload
//! arrives after it, and refusing it would leave the reservation to expire unsettled:
//! money spent at the exchange that the budget never sees. So the key a reload
//! replaces stays accepted until every reservation made under it has expired.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::money::notice::{Notice, NoticeError, NoticeKind, NoticeSigner, SignerError};

/// How long past the reservation TTL the previous key is still accepted, in ms: a
/// worker may finish a request on the old configuration just after the swap.
pub const ROTATION_GRACE_MS: u64 = 5_000;

/// The current notice key and, after a rotation, the one before it. Read by the
/// control thread for each notice; replaced by a reload.
pub struct NoticeKeyring {
    keys: ArcSwap<Keys>,
}

struct Keys {
    current: Arc<Key>,
    /// The key the current one replaced, and until when (unix ms) it is accepted.
    previous: Option<(Arc<Key>, u64)>,
}

struct Key {
    bytes: Vec<u8>,
    signer: NoticeSigner,
}

impl Key {
    fn new(key: &[u8], base_url: &str) -> Result<Key, SignerError> {
        Ok(Key {
            bytes: key.to_vec(),
            signer: NoticeSigner::new(key, base_url)?,
        })
    }
}

/// What [`NoticeKeyring::install`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The key is the one already in force.
    Unchanged,
    /// The key changed; the previous one is accepted until this unix time, ms.
    Rotated { previous_until_ms: u64 },
}

impl NoticeKeyring {
    /// A keyring holding `key`, for notice URLs under `base_url`.
    ///
    /// # Errors
    /// The key or base URL is unusable (see [`NoticeSigner::new`]).
    pub fn new(key: &[u8], base_url: &str) -> Result<NoticeKeyring, SignerError> {
        Ok(NoticeKeyring {
            keys: ArcSwap::from_pointee(Keys {
                current: Arc::new(Key::new(key, base_url)?),
                previous: None,
            }),
        })
    }

    /// Makes `key` the current one at `now_ms` (unix). A different key retires the
    /// current one, which stays accepted for `old_ttl_ms` (the
    /// reservation TTL it signed under) plus [`ROTATION_GRACE_MS`]; a key retired
    /// earlier is dropped.
    ///
    /// # Errors
    /// The new key or base URL is unusable; nothing changes.
    pub fn install(
        &self,
        key: &[u8],
        base_url: &str,
        old_ttl_ms: u64,
        now_ms: u64,
    ) -> Result<Rotation, SignerError> {
        let keys = self.keys.load();
        if keys.current.bytes == key {
            return Ok(Rotation::Unchanged);
        }
        let current = Arc::new(Key::new(key, base_url)?);
        let previous_until_ms = now_ms + old_ttl_ms + ROTATION_GRACE_MS;
        self.keys.store(Arc::new(Keys {
            current,
            previous: Some((Arc::clone(&keys.current), previous_until_ms)),
        }));
        Ok(Rotation::Rotated { previous_until_ms })
    }

    /// Verifies a `kind` notice's query string with the current key, then with the
    /// previous one while it is still accepted at `now_ms` (unix).
    ///
    /// # Errors
    /// As [`NoticeSigner::verify`]; a tag neither key made is [`NoticeError::BadTag`].
    pub fn verify<'q>(
        &self,
        kind: NoticeKind,
        query: &'q str,
        now_ms: u64,
    ) -> Result<Notice<'q>, NoticeError> {
        let keys = self.keys.load();
        match keys.current.signer.verify(kind, query) {
            Err(NoticeError::BadTag) => match &keys.previous {
                Some((key, until_ms)) if now_ms < *until_ms => key.signer.verify(kind, query),
                _ => Err(NoticeError::BadTag),
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::bid_id::{BidId, BidIdGen};
    use crate::money::notice::NoticeFields;

    const BASE: &str = "https://notices.test/n";
    const TTL_MS: u64 = 60_000;

    /// A fresh bid id.
    fn bid() -> BidId {
        BidIdGen::new(1, 2).next_id(1_000)
    }

    /// The query string of a win notice for bid `id`, signed with `key`.
    fn query(key: &[u8], id: BidId) -> String {
        let signer = NoticeSigner::new(key, BASE).unwrap();
        let fields = NoticeFields {
            bid_id: id,
            imp_id: "1",
            campaign_id: "c",
            price_micros: 1_500_000,
        };
        let mut url = Vec::new();
        signer.write_url(NoticeKind::Win, &signer.sign(&fields), &mut url);
        let url = String::from_utf8(url).unwrap();
        url.split_once('?').unwrap().1.to_owned()
    }

    const OLD: &[u8] = b"the key in force at start, 32 bytes+";
    const NEW: &[u8] = b"the key a reload rotates to, 32 bytes";

    #[test]
    fn the_same_key_again_changes_nothing() {
        let ring = NoticeKeyring::new(OLD, BASE).unwrap();
        assert_eq!(
            ring.install(OLD, BASE, TTL_MS, 1_000).unwrap(),
            Rotation::Unchanged
        );
        assert!(ring
            .verify(NoticeKind::Win, &query(OLD, bid()), u64::MAX)
            .is_ok());
    }

    #[test]
    fn after_a_rotation_both_keys_verify_until_the_old_reservations_expire() {
        let ring = NoticeKeyring::new(OLD, BASE).unwrap();
        let now_ms = 1_000_000;
        let rotation = ring.install(NEW, BASE, TTL_MS, now_ms).unwrap();
        let until_ms = now_ms + TTL_MS + ROTATION_GRACE_MS;
        assert_eq!(
            rotation,
            Rotation::Rotated {
                previous_until_ms: until_ms
            }
        );
        let (old_id, new_id) = (bid(), bid());
        let (old, new) = (query(OLD, old_id), query(NEW, new_id));
        assert_eq!(
            ring.verify(NoticeKind::Win, &new, now_ms).unwrap().bid_id,
            new_id
        );
        assert_eq!(
            ring.verify(NoticeKind::Win, &old, now_ms).unwrap().bid_id,
            old_id
        );
        assert_eq!(
            ring.verify(NoticeKind::Win, &old, until_ms - 1)
                .unwrap()
                .bid_id,
            old_id
        );
        assert!(matches!(
            ring.verify(NoticeKind::Win, &old, until_ms),
            Err(NoticeError::BadTag)
        ));
        assert!(
            ring.verify(NoticeKind::Win, &new, u64::MAX).is_ok(),
            "the current key never lapses"
        );
        let stranger = query(b"a key nobody configured, 32 bytes!!", bid());
        assert!(matches!(
            ring.verify(NoticeKind::Win, &stranger, now_ms),
            Err(NoticeError::BadTag)
        ));
    }

    #[test]
    fn a_second_rotation_drops_the_oldest_key() {
        let ring = NoticeKeyring::new(OLD, BASE).unwrap();
        ring.install(NEW, BASE, TTL_MS, 0).unwrap();
        let third = b"a third key, rotated to soon after, 32 b";
        ring.install(third, BASE, TTL_MS, 1).unwrap();
        assert!(matches!(
            ring.verify(NoticeKind::Win, &query(OLD, bid()), 2),
            Err(NoticeError::BadTag)
        ));
        assert!(ring.verify(NoticeKind::Win, &query(NEW, bid()), 2).is_ok());
        assert!(ring
            .verify(NoticeKind::Win, &query(third, bid()), 2)
            .is_ok());
    }

    #[test]
    fn an_unusable_new_key_is_refused_and_the_old_one_stays() {
        let ring = NoticeKeyring::new(OLD, BASE).unwrap();
        assert!(ring.install(b"short", BASE, TTL_MS, 0).is_err());
        assert!(ring
            .verify(NoticeKind::Win, &query(OLD, bid()), u64::MAX)
            .is_ok());
    }
}
