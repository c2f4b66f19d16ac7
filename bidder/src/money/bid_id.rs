//! Bid ids: 128-bit, time-sortable, unique across the fleet without coordination.
//!
//! Every bid we send carries an id that comes back to us in win, billing and loss
//! notices, so the id is the key that joins a bid to its spend. It must therefore be
//! unique across every core of every host (no shared counter: each worker owns a
//! generator), cheap to make on the hot path (no allocation, no lock, no syscall beyond
//! the vDSO clock read), and sortable by time so logs and ledgers order naturally.
//!
//! Layout, most significant bits first:
//!
//! | bits | field | why |
//! |---|---|---|
//! | 48 | milliseconds since the Unix epoch | sorts by time; lasts until year 10889 |
//! | 16 | host id | hosts never collide |
//! | 16 | worker id | cores on one host never collide |
//! | 16 | instance nonce, random per generator | a restarted worker whose clock stepped back does not reuse its predecessor's ids (collision odds 1 in 65,536 even then) |
//! | 32 | sequence within the millisecond | one generator makes up to 2^32 ids per ms |
//!
//! The text form is 26 characters of Crockford base32 (digits and upper-case letters
//! without I, L, O, U), which sorts in the same order as the number.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;

const TIMESTAMP_BITS: u32 = 48;
const HOST_BITS: u32 = 16;
const WORKER_BITS: u32 = 16;
const NONCE_BITS: u32 = 16;
const SEQUENCE_BITS: u32 = 32;
const _: () = assert!(TIMESTAMP_BITS + HOST_BITS + WORKER_BITS + NONCE_BITS + SEQUENCE_BITS == 128);

const SEQUENCE_SHIFT: u32 = 0;
const NONCE_SHIFT: u32 = SEQUENCE_SHIFT + SEQUENCE_BITS;
const WORKER_SHIFT: u32 = NONCE_SHIFT + NONCE_BITS;
const HOST_SHIFT: u32 = WORKER_SHIFT + WORKER_BITS;
const TIMESTAMP_SHIFT: u32 = HOST_SHIFT + HOST_BITS;

/// Largest timestamp the id can hold, in milliseconds since the Unix epoch.
const MAX_TIMESTAMP_MS: u64 = (1 << TIMESTAMP_BITS) - 1;
/// Largest sequence number within one millisecond.
const MAX_SEQUENCE: u32 = u32::MAX;

/// Crockford's base32 alphabet: no I, L, O or U, so ids survive being read aloud.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Bits per base32 character.
const CHAR_BITS: u32 = 5;
/// Marks a byte that is not in [`ALPHABET`] in [`DECODE`].
const INVALID: u8 = 0xFF;
/// Byte → digit value, for parsing without a search.
const DECODE: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// A bid id. `Copy` and 16 bytes, so it travels by value through the decision and the
/// ledger; its `Ord` is time order (then host, worker, sequence).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BidId(u128);

impl BidId {
    /// Length of the text form in bytes: 128 bits in 5-bit characters, rounded up.
    pub const TEXT_LEN: usize = 26;

    /// Milliseconds since the Unix epoch at which the id was made (by the generator's
    /// logical clock, which never runs backwards). The notice endpoint uses it to reject
    /// notices for bids older than any reservation could be.
    pub fn timestamp_ms(self) -> u64 {
        (self.0 >> TIMESTAMP_SHIFT) as u64
    }

    /// The host id the generator was created with.
    pub fn host_id(self) -> u16 {
        (self.0 >> HOST_SHIFT) as u16
    }

    /// The worker id the generator was created with.
    pub fn worker_id(self) -> u16 {
        (self.0 >> WORKER_SHIFT) as u16
    }

    /// The 16 bytes, most significant first: the form that goes into notice signatures.
    pub(crate) fn to_be_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// The text form, on the stack: the hot path writes it into responses without
    /// allocating.
    pub fn to_text(self) -> BidIdText {
        let mut text = [0u8; Self::TEXT_LEN];
        for (i, slot) in text.iter_mut().enumerate() {
            let shift = CHAR_BITS * (Self::TEXT_LEN - 1 - i) as u32;
            *slot = ALPHABET[((self.0 >> shift) & 0x1F) as usize];
        }
        BidIdText(text)
    }
}

impl fmt::Display for BidId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.to_text().as_str())
    }
}

impl fmt::Debug for BidId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BidId({self})")
    }
}

/// Why a string is not a bid id. The notice endpoint turns this into a 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseBidIdError {
    /// Not exactly [`BidId::TEXT_LEN`] bytes.
    #[error("bid id must be {len} characters, got {0}", len = BidId::TEXT_LEN)]
    Length(usize),
    /// A byte outside the upper-case Crockford base32 alphabet.
    #[error("bid id has an invalid character at position {0}")]
    Character(usize),
    /// The first character is above `7`, so the value needs more than 128 bits.
    #[error("bid id is out of range")]
    Overflow,
}

impl FromStr for BidId {
    type Err = ParseBidIdError;

    /// Accepts exactly the canonical text [`BidId::to_text`] writes (upper case, no
    /// Crockford aliases), so one id has one spelling in logs and ledgers.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        if bytes.len() != Self::TEXT_LEN {
            return Err(ParseBidIdError::Length(bytes.len()));
        }
        let mut value: u128 = 0;
        for (i, &byte) in bytes.iter().enumerate() {
            let digit = DECODE[byte as usize];
            if digit == INVALID {
                return Err(ParseBidIdError::Character(i));
            }
            value = (value << CHAR_BITS) | u128::from(digit);
        }
        // 26 characters carry 130 bits; the top two must be zero.
        if DECODE[bytes[0] as usize] > 0b111 {
            return Err(ParseBidIdError::Overflow);
        }
        Ok(BidId(value))
    }
}

/// The text form of a [`BidId`], held inline: 26 ASCII bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BidIdText([u8; BidId::TEXT_LEN]);

impl fmt::Debug for BidIdText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl BidIdText {
    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        // Every byte comes from ALPHABET, which is ASCII.
        std::str::from_utf8(&self.0).expect("bid id text is ASCII")
    }

    /// The id as bytes, for writers that append to byte buffers.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Makes bid ids for one worker. Not shared: each worker owns one, so making an id is a
/// clock read and a few integer operations, with no atomics.
///
/// Within one generator ids strictly increase. Two rules keep that true:
/// - **Clock going backwards** (NTP step, VM migration): the generator keeps its own
///   logical millisecond, which never decreases; it stays on the last millisecond it used
///   and keeps counting the sequence until the wall clock passes it again.
/// - **Sequence wrapping** (more than 2^32 ids in one logical millisecond): the
///   generator moves its logical millisecond one ahead and restarts the sequence at 0,
///   running slightly ahead of the wall clock until it catches up.
pub struct BidIdGen {
    /// Host, worker and nonce, already shifted into place.
    fixed: u128,
    /// The last logical millisecond used.
    last_ms: u64,
    /// The last sequence number used in `last_ms`.
    sequence: u32,
}

impl BidIdGen {
    /// A generator for worker `worker_id` on host `host_id`. The pair must be unique in
    /// the fleet (configuration assigns host ids; workers number their cores).
    pub fn new(host_id: u16, worker_id: u16) -> Self {
        let fixed = (u128::from(host_id) << HOST_SHIFT)
            | (u128::from(worker_id) << WORKER_SHIFT)
            | (u128::from(random_nonce()) << NONCE_SHIFT);
        BidIdGen {
            fixed,
            last_ms: 0,
            sequence: 0,
        }
    }

    /// The next id, stamped with `now_ms`: the request's one reading of the process's
    /// [`Clock`](crate::clock::Clock) (unix ms).
    pub fn next_id(&mut self, now_ms: u64) -> BidId {
        if now_ms > self.last_ms {
            self.last_ms = now_ms;
            self.sequence = 0;
        } else if self.sequence == MAX_SEQUENCE {
            self.last_ms += 1;
            self.sequence = 0;
        } else {
            self.sequence += 1;
        }
        debug_assert!(self.last_ms <= MAX_TIMESTAMP_MS);
        let timestamp = u128::from(self.last_ms.min(MAX_TIMESTAMP_MS)) << TIMESTAMP_SHIFT;
        BidId(timestamp | self.fixed | (u128::from(self.sequence) << SEQUENCE_SHIFT))
    }
}

/// 16 unpredictable bits without a dependency: std seeds every `RandomState` from the
/// operating system's random source, and a fresh one hashes differently each time (so
/// no clock reading is needed to tell two generators apart).
fn random_nonce() -> u16 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish() as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_increase_within_a_generator() {
        let mut gen = BidIdGen::new(1, 2);
        let mut last = gen.next_id(1_000);
        for _ in 0..100_000 {
            let id = gen.next_id(1_000);
            assert!(id > last, "{id} not after {last}");
            last = id;
        }
    }

    #[test]
    fn ids_carry_their_host_worker_and_time() {
        let id = BidIdGen::new(0xABCD, 0x1234).next_id(1_795_429_800_123);
        assert_eq!(id.host_id(), 0xABCD);
        assert_eq!(id.worker_id(), 0x1234);
        assert_eq!(id.timestamp_ms(), 1_795_429_800_123);
    }

    #[test]
    fn ids_are_unique_across_threads() {
        const THREADS: u16 = 4;
        const IDS_PER_THREAD: usize = 100_000;
        let handles: Vec<_> = (0..THREADS)
            .map(|worker| {
                std::thread::spawn(move || {
                    let mut gen = BidIdGen::new(7, worker);
                    (0..IDS_PER_THREAD)
                        .map(|_| gen.next_id(1_000))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seen = HashSet::new();
        for handle in handles {
            for id in handle.join().expect("generator thread panicked") {
                assert!(seen.insert(id), "duplicate id {id}");
            }
        }
        assert_eq!(seen.len(), THREADS as usize * IDS_PER_THREAD);
    }

    #[test]
    fn generators_on_different_hosts_differ_at_the_same_instant() {
        let mut a = BidIdGen::new(1, 0);
        let mut b = BidIdGen::new(2, 0);
        assert_ne!(a.next_id(1_000), b.next_id(1_000));
    }

    #[test]
    fn clock_going_backwards_keeps_ids_increasing() {
        let mut gen = BidIdGen::new(1, 1);
        let first = gen.next_id(5_000);
        let stepped_back = gen.next_id(4_000);
        assert!(stepped_back > first);
        assert_eq!(stepped_back.timestamp_ms(), 5_000);
        let caught_up = gen.next_id(5_001);
        assert!(caught_up > stepped_back);
        assert_eq!(caught_up.timestamp_ms(), 5_001);
    }

    #[test]
    fn sequence_wrap_moves_to_the_next_millisecond() {
        let mut gen = BidIdGen::new(1, 1);
        let first = gen.next_id(9_000);
        gen.sequence = MAX_SEQUENCE - 1;
        let last_in_ms = gen.next_id(9_000);
        assert_eq!(last_in_ms.timestamp_ms(), 9_000);
        let wrapped = gen.next_id(9_000);
        assert_eq!(wrapped.timestamp_ms(), 9_001);
        assert!(first < last_in_ms && last_in_ms < wrapped);
        // The wall clock reaching the borrowed millisecond must not reuse its ids.
        let next = gen.next_id(9_001);
        assert!(next > wrapped);
    }

    #[test]
    fn text_round_trips() {
        let mut gen = BidIdGen::new(u16::MAX, u16::MAX);
        for id in [
            BidId(0),
            BidId(u128::MAX),
            BidId(1 << 127),
            gen.next_id(1_000),
        ] {
            let text = id.to_text();
            assert_eq!(text.as_str().len(), BidId::TEXT_LEN);
            assert_eq!(text.as_str().parse::<BidId>(), Ok(id));
            assert_eq!(id.to_string(), text.as_str());
        }
        assert_eq!(BidId(u128::MAX).to_string(), "7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
        assert_eq!(BidId(0).to_string(), "00000000000000000000000000");
    }

    #[test]
    fn text_sorts_like_the_ids() {
        let ids = [
            BidId(0),
            BidId(31),
            BidId(32),
            BidId(1 << 80),
            BidId(u128::MAX),
        ];
        for pair in ids.windows(2) {
            assert!(pair[0].to_string() < pair[1].to_string());
        }
    }

    #[test]
    fn garbage_is_rejected() {
        let cases: &[(&str, ParseBidIdError)] = &[
            ("", ParseBidIdError::Length(0)),
            ("0000000000000000000000000", ParseBidIdError::Length(25)),
            ("000000000000000000000000000", ParseBidIdError::Length(27)),
            ("0000000000000000000000000I", ParseBidIdError::Character(25)),
            ("0000000000000000000000000u", ParseBidIdError::Character(25)),
            ("abcdefghjkmnpqrstvwxyz0123", ParseBidIdError::Character(0)),
            ("00000000000000000000000 00", ParseBidIdError::Character(23)),
            ("8ZZZZZZZZZZZZZZZZZZZZZZZZZ", ParseBidIdError::Overflow),
            ("ZZZZZZZZZZZZZZZZZZZZZZZZZZ", ParseBidIdError::Overflow),
            ("é000000000000000000000000", ParseBidIdError::Character(0)),
        ];
        for (text, error) in cases {
            assert_eq!(text.parse::<BidId>(), Err(*error), "{text:?}");
        }
    }
}
