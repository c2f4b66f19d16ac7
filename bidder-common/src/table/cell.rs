//! A double-buffered sequence lock: one writer, any number of readers in any number
//! of processes, no reader ever blocks and no reader ever returns a torn value.
//!
//! A [`SeqCell`] holds two [`Slot`]s and `latest`, the version of the last complete
//! write. Write number `v` goes to slot `v % 2`, so the slot a reader is sent to by
//! `latest` is not the one the writer is filling next: a writer preempted (or killed)
//! half-way through a write leaves the other slot whole and `latest` pointing at it.
//! Readers only retry when the writer finished one write and started the next in the
//! same slot while they were copying it; the retries are bounded, and a reader that
//! runs out of them gets [`Contended`] (the bidder then fails closed) instead of
//! spinning on the hot path.
//!
//! Every field is an atomic accessed with `Relaxed` loads and stores; the ordering
//! comes from the per-slot sequence number and two fences, argued at [`SeqCell::write`]
//! and [`SeqCell::read`]. Because everything is atomic there is no data race in the
//! Rust sense even when a reader and the writer touch the same word: a racing read is
//! a valid but possibly stale word, and the sequence check throws the copy away.

use core::sync::atomic::{fence, AtomicU64, Ordering};

/// How many times a reader re-reads a slot the writer overwrote under it before giving
/// up. The writer holds a slot for ~100 ns per write and alternates slots, so a reader
/// needs two complete writes to land inside its copy to fail once; 16 in a row means
/// the writer is rewriting this one row far faster than any agent does.
pub const READ_ATTEMPTS: u32 = 16;

/// The plain value a payload holds and the atomics that hold it in shared memory.
///
/// `load` and `store` move every field with `Relaxed` ordering: [`SeqCell`] supplies
/// the ordering. Implementations must not read or write anything else.
pub trait Payload: Sync {
    /// The value as the program sees it: plain, `Copy`, owned.
    type Value: Copy;
    /// Copies every field out with relaxed loads (the result may be torn; only
    /// [`SeqCell::read`] decides whether it may be used).
    fn load(&self) -> Self::Value;
    /// Copies every field in with relaxed stores. Writer only.
    fn store(&self, value: &Self::Value);
}

/// The reader lost the race [`READ_ATTEMPTS`] times in a row: no consistent copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contended;

/// One buffer of a [`SeqCell`]: even `seq` means stable, odd means a write is in
/// progress (or the writer died in one; see [`SeqCell::write`]).
#[repr(C)]
pub struct Slot<P> {
    seq: AtomicU64,
    payload: P,
}

/// Two slots and the version of the last complete write (0: never written; both
/// slots then hold the zero value the file was created with).
#[repr(C)]
pub struct SeqCell<P> {
    latest: AtomicU64,
    slots: [Slot<P>; 2],
}

impl<P: Payload> SeqCell<P> {
    /// Version of the last complete write; 0 if the cell was never written.
    pub fn version(&self) -> u64 {
        self.latest.load(Ordering::Acquire)
    }

    /// Reads the latest complete value through `f`, which must only do relaxed loads
    /// of the payload (it may run several times and its results are discarded unless
    /// the copy was consistent). The hot path passes a closure that loads just the
    /// fields it needs; [`SeqCell::load`] copies everything.
    ///
    /// Ordering (the reader half of the argument at [`SeqCell::write`]): `seq` is
    /// loaded with `Acquire`, so if it shows the even value the writer stored with
    /// `Release` after its data, every data store of that write is visible to `f`.
    /// `f`'s loads are followed by an `Acquire` fence and a second load of `seq`: if
    /// any load in `f` saw a store of a *later* write, that store comes after the
    /// writer's `Release` fence, so the fences synchronise and the writer's odd `seq`
    /// store (made before its fence) is visible to the second load, which then
    /// differs from the first and the copy is thrown away.
    #[inline]
    pub fn read<R>(&self, mut f: impl FnMut(&P) -> R) -> Result<R, Contended> {
        for _ in 0..READ_ATTEMPTS {
            // Acquire: the slot named by `latest` was completely written before
            // `latest` was stored (Release) — we never start on a half-written slot
            // unless the writer has since lapped it, which `seq` catches.
            let version = self.latest.load(Ordering::Acquire);
            let slot = &self.slots[(version & 1) as usize];
            let before = slot.seq.load(Ordering::Acquire);
            if before & 1 == 1 {
                core::hint::spin_loop();
                continue;
            }
            let value = f(&slot.payload);
            fence(Ordering::Acquire);
            let after = slot.seq.load(Ordering::Relaxed);
            if before == after {
                return Ok(value);
            }
            core::hint::spin_loop();
        }
        Err(Contended)
    }

    /// Copies the whole latest value (see [`SeqCell::read`]).
    pub fn load(&self) -> Result<P::Value, Contended> {
        self.read(P::load)
    }

    /// Publishes `value` as the next version. Returns that version.
    ///
    /// Must only be called by the table's single writer (the holder of its file lock:
    /// [`crate::table::shm::Writer`]); two concurrent writers could publish a mixed
    /// value. Nothing here is memory-unsafe either way: every field is atomic.
    ///
    /// Ordering (writer half): (1) the slot's `seq` goes odd (`Relaxed`), then a
    /// `Release` fence keeps that store ahead of every data store that follows it;
    /// (2) the data, `Relaxed`; (3) `seq` goes even with `Release`, so a reader that
    /// `Acquire`s the even value sees all of (2); (4) `latest` moves to this slot with
    /// `Release` so a reader that `Acquire`s it starts from a complete slot.
    ///
    /// A writer that died between (1) and (3) left that slot's `seq` odd and `latest`
    /// on the other, complete slot; the next writer starts from `seq | 1` so the
    /// sequence goes even again after its write and readers never saw the torn slot.
    #[cfg(any(feature = "shm", test))]
    pub(crate) fn write(&self, value: &P::Value) -> u64 {
        // Relaxed: only the writer stores `latest` and `seq`, so it reads its own
        // stores (or a dead predecessor's, made visible by the file lock handover).
        let version = self.latest.load(Ordering::Relaxed) + 1;
        let slot = &self.slots[(version & 1) as usize];
        let odd = slot.seq.load(Ordering::Relaxed) | 1;
        slot.seq.store(odd, Ordering::Relaxed);
        fence(Ordering::Release);
        slot.payload.store(value);
        slot.seq.store(odd + 1, Ordering::Release);
        debug_assert_eq!(
            slot.seq.load(Ordering::Relaxed) & 1,
            0,
            "seq even after a write"
        );
        self.latest.store(version, Ordering::Release);
        version
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::AtomicU32;

    #[repr(C)]
    struct Pair {
        a: AtomicU32,
        b: AtomicU32,
    }

    impl Payload for Pair {
        type Value = (u32, u32);
        fn load(&self) -> (u32, u32) {
            (
                self.a.load(Ordering::Relaxed),
                self.b.load(Ordering::Relaxed),
            )
        }
        fn store(&self, v: &(u32, u32)) {
            self.a.store(v.0, Ordering::Relaxed);
            self.b.store(v.1, Ordering::Relaxed);
        }
    }

    fn cell() -> SeqCell<Pair> {
        let slot = || Slot {
            seq: AtomicU64::new(0),
            payload: Pair {
                a: AtomicU32::new(0),
                b: AtomicU32::new(0),
            },
        };
        SeqCell {
            latest: AtomicU64::new(0),
            slots: [slot(), slot()],
        }
    }

    #[test]
    fn a_never_written_cell_reads_zero_at_version_zero() {
        let c = cell();
        assert_eq!(c.version(), 0);
        assert_eq!(c.load(), Ok((0, 0)));
    }

    #[test]
    fn writes_alternate_slots_and_reads_see_the_latest() {
        let c = cell();
        assert_eq!(c.write(&(1, 2)), 1);
        assert_eq!(c.load(), Ok((1, 2)));
        assert_eq!(c.write(&(3, 4)), 2);
        assert_eq!(c.load(), Ok((3, 4)));
        assert_eq!(c.slots[1].payload.load(), (1, 2));
        assert_eq!(c.slots[0].payload.load(), (3, 4));
        assert_eq!(c.slots[0].seq.load(Ordering::Relaxed) & 1, 0);
    }

    #[test]
    fn a_writer_that_died_mid_write_leaves_the_previous_value_readable() {
        let c = cell();
        c.write(&(1, 1));
        // Simulate a crash inside write 2: slot 0 odd and half-filled, latest still 1.
        c.slots[0].seq.store(1, Ordering::Relaxed);
        c.slots[0].payload.a.store(9, Ordering::Relaxed);
        assert_eq!(c.load(), Ok((1, 1)));
        // The next writer recovers: its write lands in slot 0 and seq is even after.
        assert_eq!(c.write(&(2, 2)), 2);
        assert_eq!(c.load(), Ok((2, 2)));
        assert_eq!(c.slots[0].seq.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_slot_that_stays_odd_under_latest_gives_contended_not_a_spin() {
        let c = cell();
        c.write(&(1, 1));
        c.slots[1].seq.store(3, Ordering::Relaxed);
        assert_eq!(c.load(), Err(Contended));
    }
}
