//! Frequency caps: at most N impressions per user per campaign per day or hour.
//!
//! Impressions are counted when a win or billing notice settles (the control thread,
//! the table's only writer) and checked at bid time by every worker, lock-free: the
//! table is a fixed array of `AtomicU64`, one word per (campaign, user) pair:
//!
//! ```text
//!  63            24 23    16 15         0
//! | fingerprint 40 | count 8 | period end |   0 = empty
//! ```
//!
//! The period end is the quarter hour (mod 2^16) at which the count lapses, so a count
//! of a past day reads as zero and its word may be reused: no sweep, no reset at
//! midnight. A pair lives within [`PROBE_SLOTS`] words of its hash (linear probing). The
//! table holds `max_tracked` pairs (8 bytes each), fixed at start. **At the bound**, a
//! user whose pair finds no free or lapsed word within its probe window cannot be
//! counted, so capped campaigns do not bid for that user (fail closed, no-bid reason
//! `frequency_capped`) until counts lapse; `bidder_frequency_untracked_total` counts
//! it. Two pairs share a word only if their 40-bit fingerprints collide within one
//! window (about one lookup in 2^35): the cap then errs toward fewer impressions.
//!
//! Counts are on wins: bids out at once for one user can each win, so a user may see
//! a few impressions over the cap when requests for them arrive faster than notices.
//! A fleet shares counts through [`FrequencyTable::observe`] (a count seen elsewhere,
//! merged as a maximum), the seam the fleet issue's Redis store plugs into.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::money::journal::RECOVERY_BUCKET_MS;

/// How far from its hash a pair may live. Bounds every lookup at 32 loads.
pub const PROBE_SLOTS: usize = 32;
/// The most impressions a cap may allow (the count is 8 bits).
pub const MAX_FREQUENCY_CAP: u32 = 255;

const FINGERPRINT_SHIFT: u32 = 24;
const COUNT_SHIFT: u32 = 16;

/// Where a request's user id comes from, in the configured order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserSource {
    UserId,
    BuyerUid,
    DeviceIfa,
}

impl UserSource {
    pub fn name(self) -> &'static str {
        match self {
            UserSource::UserId => "user.id",
            UserSource::BuyerUid => "user.buyeruid",
            UserSource::DeviceIfa => "device.ifa",
        }
    }

    pub fn parse(text: &str) -> Option<UserSource> {
        [
            UserSource::UserId,
            UserSource::BuyerUid,
            UserSource::DeviceIfa,
        ]
        .into_iter()
        .find(|s| s.name() == text)
    }
}

/// A user as the ledger stores it: a 64-bit hash of where the id came from and the
/// id. FNV-1a, written out here because the value is kept on disk across versions
/// (a library hasher may change its output between releases).
pub fn user_key(source: UserSource, id: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for &b in [source as u8].iter().chain(id.as_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    h
}

/// A campaign's cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrequencyCap {
    /// Impressions per user per period, 1..=[`MAX_FREQUENCY_CAP`].
    pub impressions: u32,
    /// Per local clock hour instead of per day (in the campaign's time zone).
    pub hourly: bool,
}

/// Counts per (campaign, user) for the current period. One writer, any readers.
#[derive(Debug)]
pub struct FrequencyTable {
    words: Box<[AtomicU64]>,
    mask: usize,
    untracked: AtomicU64,
}

impl FrequencyTable {
    /// Room for at least `max_tracked` pairs (rounded up to a power of two, at least
    /// one probe window).
    pub fn new(max_tracked: usize) -> FrequencyTable {
        let len = max_tracked.max(PROBE_SLOTS).next_power_of_two();
        FrequencyTable {
            words: (0..len).map(|_| AtomicU64::new(0)).collect(),
            mask: len - 1,
            untracked: AtomicU64::new(0),
        }
    }

    /// Impressions `user` had of `campaign` this period, or `None` when the table is
    /// too full to count them (the caller must not bid).
    #[inline]
    pub fn count(&self, campaign: usize, user: u64, now_ms: u64) -> Option<u32> {
        let (fingerprint, start) = self.place(campaign, user);
        let now_q = quarter(now_ms);
        let mut room = false;
        for i in 0..PROBE_SLOTS {
            let word = self.words[(start + i) & self.mask].load(Ordering::Acquire);
            if word == 0 {
                return Some(0);
            }
            let live = lives(word, now_q);
            if word >> FINGERPRINT_SHIFT == fingerprint {
                return Some(if live { count_of(word) } else { 0 });
            }
            room |= !live;
        }
        room.then_some(0)
    }

    /// Counts `n` impressions (the writer only). `period_end_ms`: when the campaign's
    /// current period ends. Returns `false` when the pair could not be stored.
    pub fn add(&self, campaign: usize, user: u64, n: u32, period_end_ms: u64, now_ms: u64) -> bool {
        self.update(campaign, user, period_end_ms, now_ms, |had| {
            had.saturating_add(n)
        })
    }

    /// Raises the pair's count to at least `count` (the writer only): a count seen on
    /// another host of a fleet.
    pub fn observe(
        &self,
        campaign: usize,
        user: u64,
        count: u32,
        period_end_ms: u64,
        now_ms: u64,
    ) -> bool {
        self.update(campaign, user, period_end_ms, now_ms, |had| had.max(count))
    }

    /// Stores `new(live count)` for the pair (0 when it had none this period).
    fn update(
        &self,
        campaign: usize,
        user: u64,
        period_end_ms: u64,
        now_ms: u64,
        new: impl FnOnce(u32) -> u32,
    ) -> bool {
        let (fingerprint, start) = self.place(campaign, user);
        let (at, had) = match self.find(fingerprint, start, quarter(now_ms)) {
            Found::Live(at, had) => (at, had),
            Found::Free(at) => (at, 0),
            Found::Full => {
                self.untracked.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        };
        let word = pack(fingerprint, new(had), quarter(period_end_ms));
        self.words[at].store(word, Ordering::Release);
        true
    }

    /// The pair's word (its live count), else the first empty or lapsed word of its
    /// window.
    fn find(&self, fingerprint: u64, start: usize, now_q: u16) -> Found {
        let mut free = None;
        for i in 0..PROBE_SLOTS {
            let at = (start + i) & self.mask;
            let word = self.words[at].load(Ordering::Acquire);
            if word == 0 {
                return Found::Free(free.unwrap_or(at));
            }
            let live = lives(word, now_q);
            if word >> FINGERPRINT_SHIFT == fingerprint {
                return if live {
                    Found::Live(at, count_of(word))
                } else {
                    Found::Free(at)
                };
            }
            if !live && free.is_none() {
                free = Some(at);
            }
        }
        free.map_or(Found::Full, Found::Free)
    }

    /// The pair's fingerprint (never 0) and first word.
    #[inline]
    fn place(&self, campaign: usize, user: u64) -> (u64, usize) {
        let h = mix(user ^ (campaign as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let fingerprint = (h >> FINGERPRINT_SHIFT).max(1);
        (fingerprint, (h as usize) & self.mask)
    }

    /// Pairs that could not be counted because their window was full.
    pub fn untracked(&self) -> u64 {
        self.untracked.load(Ordering::Relaxed)
    }

    /// Pairs the table can hold.
    pub fn capacity(&self) -> usize {
        self.words.len()
    }
}

enum Found {
    Live(usize, u32),
    Free(usize),
    Full,
}

/// The quarter hour `ms` falls in, mod 2^16 (periods start and end on quarter hours).
fn quarter(ms: u64) -> u16 {
    (ms / RECOVERY_BUCKET_MS) as u16
}

fn pack(fingerprint: u64, count: u32, end_q: u16) -> u64 {
    let count = u64::from(count.min(MAX_FREQUENCY_CAP));
    (fingerprint << FINGERPRINT_SHIFT) | (count << COUNT_SHIFT) | u64::from(end_q)
}

fn count_of(word: u64) -> u32 {
    ((word >> COUNT_SHIFT) & 0xff) as u32
}

/// Whether the word's period has not ended by quarter `now_q` (periods are at most 25
/// hours, far inside the ±341 days a wrapping 16-bit difference tells apart).
fn lives(word: u64, now_q: u16) -> bool {
    let end_q = word as u16;
    (end_q.wrapping_sub(now_q) as i16) > 0
}

/// SplitMix64's finaliser: spreads every input bit over the word.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = testkit::MONDAY_10_30_MS;
    const HOUR_MS: u64 = 3_600_000;

    #[test]
    fn counts_per_user_and_campaign_until_the_period_ends() {
        let t = FrequencyTable::new(1_024);
        let (alice, bob) = (
            user_key(UserSource::BuyerUid, "alice"),
            user_key(UserSource::BuyerUid, "bob"),
        );
        let end = NOW_MS - NOW_MS % HOUR_MS + HOUR_MS;
        // (campaign, user, impressions recorded) → count read back
        let cases = [
            (0, alice, 3, 3),
            (0, bob, 1, 1),
            (1, alice, 0, 0),
            (1, bob, 2, 2),
        ];
        for &(campaign, user, n, _) in &cases {
            for _ in 0..n {
                assert!(t.add(campaign, user, 1, end, NOW_MS));
            }
        }
        for &(campaign, user, _, expected) in &cases {
            assert_eq!(t.count(campaign, user, NOW_MS), Some(expected));
            assert_eq!(t.count(campaign, user, end - 1), Some(expected));
            assert_eq!(
                t.count(campaign, user, end),
                Some(0),
                "lapsed at the period end"
            );
        }
        // The next period starts from zero and reuses the word.
        assert!(t.add(0, alice, 1, end + HOUR_MS, end));
        assert_eq!(t.count(0, alice, end), Some(1));
    }

    #[test]
    fn the_same_id_from_another_source_is_another_user() {
        assert_ne!(
            user_key(UserSource::UserId, "x"),
            user_key(UserSource::DeviceIfa, "x")
        );
        // Stable across versions: the ledger keeps these.
        assert_eq!(user_key(UserSource::UserId, ""), 0xaf63_bd4c_8601_b7df);
    }

    #[test]
    fn observe_merges_as_a_maximum() {
        let t = FrequencyTable::new(64);
        let end = NOW_MS + HOUR_MS;
        t.add(3, 42, 1, end, NOW_MS);
        t.observe(3, 42, 5, end, NOW_MS);
        assert_eq!(t.count(3, 42, NOW_MS), Some(5));
        t.observe(3, 42, 2, end, NOW_MS);
        assert_eq!(t.count(3, 42, NOW_MS), Some(5));
        t.observe(3, 42, 900, end, NOW_MS);
        assert_eq!(t.count(3, 42, NOW_MS), Some(MAX_FREQUENCY_CAP));
    }

    #[test]
    fn a_full_table_refuses_new_users_until_counts_lapse() {
        let t = FrequencyTable::new(PROBE_SLOTS);
        let end = NOW_MS + HOUR_MS;
        let mut stored = 0;
        for user in 0..(PROBE_SLOTS as u64 * 4) {
            stored += u64::from(t.add(0, user, 1, end, NOW_MS));
        }
        assert_eq!(
            stored, PROBE_SLOTS as u64,
            "one window holds the whole table"
        );
        assert_eq!(t.untracked(), PROBE_SLOTS as u64 * 3);
        let newcomer = 10_000;
        assert_eq!(
            t.count(0, newcomer, NOW_MS),
            None,
            "cannot be counted: no bid"
        );
        assert_eq!(t.count(0, 0, NOW_MS), Some(1), "a counted user still reads");
        assert_eq!(
            t.count(0, newcomer, end),
            Some(0),
            "room again once counts lapse"
        );
        assert!(t.add(0, newcomer, 1, end + HOUR_MS, end));
    }
}
