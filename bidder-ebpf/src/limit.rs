//! GCRA rate limiting shared by every CPU.
//!
//! One theoretical arrival time (TAT) per partner and kind. A segment arriving at
//! `now` conforms when `TAT ≤ now + tolerance`; conforming moves the TAT to
//! `max(TAT, now) + interval`. The update is a compare-and-swap, so segments of one
//! partner arriving on several RX queues at once are admitted one after another from
//! the same TAT: the limit is exact across queues, not split per CPU.
//!
//! A CAS lost [`CAS_ATTEMPTS`] times in a row (others kept winning the same TAT) counts
//! as over the limit: under that much contention the partner is at its limit anyway,
//! and failing closed never admits more than the rate.

use core::intrinsics::{atomic_cxchg, AtomicOrdering};

use bidder_common::xdp::SHUT_OFF_INTERVAL_NS;

/// Compare-and-swap attempts before a segment counts as over the limit.
const CAS_ATTEMPTS: usize = 4;

/// Whether a segment arriving at `now_ns` conforms; if so, it is charged to `tat`.
#[inline(always)]
pub(crate) fn conform(tat: *mut u64, interval_ns: u64, tolerance_ns: u64, now_ns: u64) -> bool {
    if interval_ns == SHUT_OFF_INTERVAL_NS {
        return false;
    }
    for _ in 0..CAS_ATTEMPTS {
        // SAFETY: `tat` points into a BPF array value that lives as long as the map;
        // a volatile read takes a fresh snapshot for the CAS to compare against.
        let seen = unsafe { core::ptr::read_volatile(tat) };
        let earliest = if seen > now_ns { seen } else { now_ns };
        if earliest - now_ns > tolerance_ns {
            return false;
        }
        let next = earliest.saturating_add(interval_ns);
        // SAFETY: as above; the CAS is the only write to the TAT.
        let (_, swapped) = unsafe {
            atomic_cxchg::<u64, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(
                tat, seen, next,
            )
        };
        if swapped {
            return true;
        }
    }
    false
}
