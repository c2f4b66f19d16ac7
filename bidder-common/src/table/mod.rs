//! Shared-memory tables between the agent and the bidder.
//!
//! Two files, each one writer and any number of readers:
//!
//! * the **strategy table** ([`strategy`]), written by the agent, read by the bidder on
//!   every bid: per campaign the margin, max CPM, pacing, shading, paused flag, budget
//!   override and who changed it, when and why; per partner the QPS limit, burst and
//!   enabled flag;
//! * the **stats table** ([`stats`]), written by the bidder, read by the agent and
//!   `bidderctl`: per campaign its configured ceiling, budget figures, requests, bids,
//!   wins, clearing prices and no-bids by reason; per partner its counters and limits
//!   in force; and the bidder's no-bid totals by reason.
//!
//! A file is a [`Header`] followed by fixed-size sections; every row is a [`Row`]: a
//! [`Key`] (campaign id or partner name) and a double-buffered sequence lock
//! ([`cell::SeqCell`]) around its payload. Rows are appended and never moved or
//! re-keyed while the file lives, so a reader may map row positions once.
//!
//! Everything in the mapping is an atomic. That is what makes a `&` reference to
//! memory another process writes sound, and it costs nothing: relaxed loads and
//! stores of aligned words are plain moves on the targets we run on.
//!
//! The types here are `no_std`; opening, creating, mapping and locking the files is
//! [`shm`], behind the `shm` feature; the stats table's own totals and reason names on
//! a mapped file are [`stats_file`].

pub mod cell;
pub mod segment;
pub mod stats;
pub mod strategy;

#[cfg(feature = "shm")]
pub mod shm;
#[cfg(feature = "shm")]
pub mod stats_file;

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use cell::{Contended, Payload, SeqCell};

/// Longest key: campaign ids and partner names are 1–64 bytes (the bidder's
/// configuration rules).
pub const MAX_KEY_BYTES: usize = 64;

/// Which table a file holds; the magic differs too, so a stats file passed as a
/// strategy table is refused even before its kind is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum TableKind {
    Strategy = 1,
    Stats = 2,
}

/// The first 128 bytes of a table file.
///
/// The writer fills every field before the file appears under its name (it is
/// built under a temporary name and renamed), then only the counters below `used`
/// change. Readers check magic, version, kind and every size against their own
/// compiled layout before touching a row.
#[repr(C, align(64))]
pub struct Header {
    /// [`TableSpec::MAGIC`]: `BIDSTRAT` or `BIDSTATS` in ASCII, little-endian.
    pub magic: AtomicU64,
    pub layout_version: AtomicU32,
    pub kind: AtomicU32,
    /// Size of the whole file, bytes.
    pub total_bytes: AtomicU64,
    pub header_bytes: AtomicU32,
    /// Bytes of the section between the header and the campaign rows (0 or the
    /// stats totals).
    pub prefix_bytes: AtomicU32,
    pub campaign_row_bytes: AtomicU32,
    pub partner_row_bytes: AtomicU32,
    pub campaign_capacity: AtomicU32,
    pub partner_capacity: AtomicU32,
    /// Campaign rows in use (keys written); only grows. Stored with `Release` after
    /// the row's key and first value, so a reader that `Acquire`s it sees them.
    pub campaigns_used: AtomicU32,
    /// Partner rows in use, as `campaigns_used`.
    pub partners_used: AtomicU32,
    /// Bumped (`Release`) after every row write: a reader that polls it (`Acquire`)
    /// learns cheaply that something changed.
    pub generation: AtomicU64,
    /// When the file was created, ms since the Unix epoch: with the inode, tells a
    /// re-created table from the old one.
    pub created_unix_ms: AtomicU64,
    /// Process id of the writer holding the lock now (0 once it let go).
    pub writer_pid: AtomicU32,
    _reserved0: AtomicU32,
    /// Last time the writer said it was alive, ms since the Unix epoch.
    pub heartbeat_unix_ms: AtomicU64,
    _reserved: [AtomicU64; 5],
}

const _: () = assert!(size_of::<Header>() == 128);
const _: () = assert!(core::mem::offset_of!(Header, layout_version) == 8);
const _: () = assert!(core::mem::offset_of!(Header, total_bytes) == 16);
const _: () = assert!(core::mem::offset_of!(Header, campaigns_used) == 48);
const _: () = assert!(core::mem::offset_of!(Header, generation) == 56);
const _: () = assert!(core::mem::offset_of!(Header, heartbeat_unix_ms) == 80);

/// A campaign id or partner name, up to [`MAX_KEY_BYTES`], written once when its
/// row is added and never changed after.
#[repr(C)]
pub struct Key {
    len: AtomicU32,
    _pad: AtomicU32,
    bytes: [AtomicU64; MAX_KEY_BYTES / 8],
}

const _: () = assert!(size_of::<Key>() == 72);

/// A key copied out of the table.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyBuf {
    len: u8,
    bytes: [u8; MAX_KEY_BYTES],
}

impl KeyBuf {
    /// `None` if `s` is empty or longer than [`MAX_KEY_BYTES`].
    pub fn new(s: &str) -> Option<KeyBuf> {
        if s.is_empty() || s.len() > MAX_KEY_BYTES {
            return None;
        }
        let mut bytes = [0u8; MAX_KEY_BYTES];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Some(KeyBuf {
            len: s.len() as u8,
            bytes,
        })
    }

    /// The key as text; a key that is not UTF-8 (a corrupt file) reads as "".
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl core::fmt::Debug for KeyBuf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Key {
    /// The key; stable once the row is published (`*_used` acquired past it).
    pub fn get(&self) -> KeyBuf {
        let len = (self.len.load(Ordering::Relaxed) as usize).min(MAX_KEY_BYTES);
        let mut bytes = [0u8; MAX_KEY_BYTES];
        copy_words_out(&self.bytes, &mut bytes);
        KeyBuf {
            len: len as u8,
            bytes,
        }
    }

    /// Writes the key of a row not yet published. Writer only.
    #[cfg(any(feature = "shm", test))]
    pub(crate) fn set(&self, key: &KeyBuf) {
        copy_words_in(&key.bytes, &self.bytes);
        self.len.store(u32::from(key.len), Ordering::Relaxed);
    }
}

/// Copies bytes held as little-endian words out of shared memory.
pub(crate) fn copy_words_out(words: &[AtomicU64], out: &mut [u8]) {
    for (chunk, word) in out.chunks_mut(8).zip(words) {
        let w = word.load(Ordering::Relaxed).to_le_bytes();
        chunk.copy_from_slice(&w[..chunk.len()]);
    }
}

/// Copies bytes into shared memory as little-endian words (zero-padded).
pub(crate) fn copy_words_in(bytes: &[u8], words: &[AtomicU64]) {
    for (chunk, word) in bytes.chunks(8).zip(words) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        word.store(u64::from_le_bytes(w), Ordering::Relaxed);
    }
}

/// A row of a table section: its key and its value under a sequence lock. Rows are
/// cache-line aligned so the writer rewriting one row never invalidates the line a
/// reader of the next row holds.
#[repr(C, align(64))]
pub struct Row<P> {
    pub key: Key,
    pub cell: SeqCell<P>,
}

impl<P: Payload> Row<P> {
    /// The row's latest complete value.
    pub fn load(&self) -> Result<P::Value, Contended> {
        self.cell.load()
    }
}

/// What distinguishes one table file from the other: magic, kind, the payloads of
/// its two row sections and the section in front of them.
pub trait TableSpec {
    const MAGIC: u64;
    const KIND: TableKind;
    /// Version of this table's layout. Bump it on any change to the `#[repr(C)]` types
    /// the table is made of (header, rows, prefix); a reader built for another version
    /// refuses the file ([`LayoutError::Version`]) instead of misreading it. Each table
    /// has its own, so a change to one never makes the other's file unreadable.
    const LAYOUT_VERSION: u32;
    type Campaign: Payload;
    type Partner: Payload;
    /// Section between the header and the campaign rows (`()` for none).
    type Prefix: Sync;
}

/// Where each section starts in a file of a given capacity, bytes from the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sections {
    pub prefix: usize,
    pub campaigns: usize,
    pub partners: usize,
    pub total_bytes: usize,
}

/// Capacities a table file is created with (the writer's configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub campaigns: u32,
    pub partners: u32,
}

/// Largest capacity accepted, so a corrupt header cannot make a reader compute a
/// section past any plausible mapping (the bidder serves at most 100,000 campaigns).
pub const MAX_ROWS: u32 = 1 << 20;

/// Section offsets of a `S` table with `cap` rows.
pub fn sections<S: TableSpec>(cap: Capacity) -> Sections {
    let prefix = size_of::<Header>();
    let campaigns = round_up(prefix + size_of::<S::Prefix>(), 64);
    let partners = campaigns + cap.campaigns as usize * size_of::<Row<S::Campaign>>();
    let total_bytes = partners + cap.partners as usize * size_of::<Row<S::Partner>>();
    Sections {
        prefix,
        campaigns,
        partners,
        total_bytes: round_up(total_bytes, 4096),
    }
}

const fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

/// Why a file is not a table this program can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutError {
    /// Shorter than a header, or shorter than its header says.
    Truncated { file_bytes: u64, needed_bytes: u64 },
    /// Not a table of this kind (or not yet initialised).
    Magic { found: u64, expected: u64 },
    /// Written by a program with another layout version.
    Version { found: u32, expected: u32 },
    /// A section or row size differs from this program's compiled layout.
    Size {
        what: &'static str,
        found: u64,
        expected: u64,
    },
}

impl core::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            LayoutError::Truncated {
                file_bytes,
                needed_bytes,
            } => write!(
                f,
                "file is {file_bytes} bytes, the table needs {needed_bytes} (truncated or not a table)"
            ),
            LayoutError::Magic { found, expected } => write!(
                f,
                "magic {found:#018x} is not {expected:#018x} (not this kind of table, or still being created)"
            ),
            LayoutError::Version { found, expected } => write!(
                f,
                "layout version {found}, this program reads version {expected} (upgrade the older of agent and bidder)"
            ),
            LayoutError::Size {
                what,
                found,
                expected,
            } => write!(
                f,
                "{what} is {found} bytes, this program expects {expected} (layout mismatch)"
            ),
        }
    }
}

/// Checks a header (mapped from a file of `file_bytes`) against `S`'s compiled layout,
/// returning its capacity. Called by every reader and writer before any row is read.
pub fn validate<S: TableSpec>(header: &Header, file_bytes: u64) -> Result<Capacity, LayoutError> {
    let need = |needed: u64| -> Result<(), LayoutError> {
        if file_bytes < needed {
            return Err(LayoutError::Truncated {
                file_bytes,
                needed_bytes: needed,
            });
        }
        Ok(())
    };
    need(size_of::<Header>() as u64)?;
    // Acquire: the magic is stored last (Release) when a table is created, so the
    // fields below are complete once it reads right.
    let magic = header.magic.load(Ordering::Acquire);
    if magic != S::MAGIC {
        return Err(LayoutError::Magic {
            found: magic,
            expected: S::MAGIC,
        });
    }
    let version = header.layout_version.load(Ordering::Relaxed);
    if version != S::LAYOUT_VERSION {
        return Err(LayoutError::Version {
            found: version,
            expected: S::LAYOUT_VERSION,
        });
    }
    let size = |what, found: u64, expected: usize| -> Result<(), LayoutError> {
        if found != expected as u64 {
            return Err(LayoutError::Size {
                what,
                found,
                expected: expected as u64,
            });
        }
        Ok(())
    };
    let load = |a: &AtomicU32| u64::from(a.load(Ordering::Relaxed));
    size("table kind", load(&header.kind), S::KIND as usize)?;
    size("header", load(&header.header_bytes), size_of::<Header>())?;
    size(
        "prefix section",
        load(&header.prefix_bytes),
        size_of::<S::Prefix>(),
    )?;
    size(
        "campaign row",
        load(&header.campaign_row_bytes),
        size_of::<Row<S::Campaign>>(),
    )?;
    size(
        "partner row",
        load(&header.partner_row_bytes),
        size_of::<Row<S::Partner>>(),
    )?;
    let cap = Capacity {
        campaigns: header.campaign_capacity.load(Ordering::Relaxed),
        partners: header.partner_capacity.load(Ordering::Relaxed),
    };
    size(
        "campaign capacity",
        u64::from(cap.campaigns.min(MAX_ROWS)),
        cap.campaigns as usize,
    )?;
    size(
        "partner capacity",
        u64::from(cap.partners.min(MAX_ROWS)),
        cap.partners as usize,
    )?;
    let total = sections::<S>(cap).total_bytes;
    size(
        "total size",
        header.total_bytes.load(Ordering::Relaxed),
        total,
    )?;
    need(total as u64)?;
    Ok(cap)
}

/// Fills a zeroed header for a new table; the magic goes last, with `Release`.
pub fn init_header<S: TableSpec>(header: &Header, cap: Capacity, now_unix_ms: u64, pid: u32) {
    let s = sections::<S>(cap);
    let r = Ordering::Relaxed;
    header.layout_version.store(S::LAYOUT_VERSION, r);
    header.kind.store(S::KIND as u32, r);
    header.total_bytes.store(s.total_bytes as u64, r);
    header.header_bytes.store(size_of::<Header>() as u32, r);
    header.prefix_bytes.store(size_of::<S::Prefix>() as u32, r);
    header
        .campaign_row_bytes
        .store(size_of::<Row<S::Campaign>>() as u32, r);
    header
        .partner_row_bytes
        .store(size_of::<Row<S::Partner>>() as u32, r);
    header.campaign_capacity.store(cap.campaigns, r);
    header.partner_capacity.store(cap.partners, r);
    header.created_unix_ms.store(now_unix_ms, r);
    header.heartbeat_unix_ms.store(now_unix_ms, r);
    header.writer_pid.store(pid, r);
    header.magic.store(S::MAGIC, Ordering::Release);
}

/// FNV-1a over 64-bit words: the row checksum the writer seals every value with, so
/// a reader (the stress test, `bidderctl`) can check a copy independently of the
/// sequence lock.
pub fn checksum(words: impl IntoIterator<Item = u64>) -> u64 {
    words.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, w| {
        (h ^ w).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
