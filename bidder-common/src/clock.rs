//! The one source of calendar time a process reads.
//!
//! Every reading of "what time is it" in unix milliseconds — a bid's arrival (dayparts,
//! reservation expiry), bid ids, the ledger's expiry, notice-key rotation, the tables'
//! heartbeats, the agent's audit stamps — goes through a [`Clock`] handed down at
//! construction. Production hands out [`Clock::system`]; tests and the simulator hand
//! out a [`DrivenClock`]'s clock, which every thread of the process shares and which
//! moves only when told to (set a Monday 10:30, advance a day, step across a DST
//! change, even step back to test what a clock step does). Nothing else on those paths
//! calls `SystemTime::now()`.
//!
//! Deadlines and timeouts are not calendar time: they stay on the monotonic clock,
//! read through [`monotonic_now`], which a driven calendar never stretches or shrinks.

extern crate std;

use core::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Calendar time, ms since the Unix epoch: the real clock or a driven one. Cheap to
/// clone (at most an `Arc`) and to read (a vDSO call or one atomic load), so the bid
/// path reads it once per request.
#[derive(Clone, Debug)]
pub struct Clock(Source);

#[derive(Clone, Debug)]
enum Source {
    System,
    Driven(Arc<AtomicU64>),
}

impl Clock {
    /// The host's wall clock: what production runs on.
    pub fn system() -> Clock {
        Clock(Source::System)
    }

    /// Milliseconds since the Unix epoch; 0 for a system clock set before 1970.
    #[inline]
    pub fn now_unix_ms(&self) -> u64 {
        match &self.0 {
            Source::System => system_unix_ms(),
            Source::Driven(ms) => ms.load(Ordering::Acquire),
        }
    }
}

/// A calendar that moves only when told to. Its [`clock`](DrivenClock::clock)s, on any
/// thread, all read the instant last set.
#[derive(Clone, Debug)]
pub struct DrivenClock(Arc<AtomicU64>);

impl DrivenClock {
    /// A calendar standing at `start_unix_ms`.
    pub fn at(start_unix_ms: u64) -> DrivenClock {
        DrivenClock(Arc::new(AtomicU64::new(start_unix_ms)))
    }

    /// A clock that reads this calendar, to hand to the code under test.
    pub fn clock(&self) -> Clock {
        Clock(Source::Driven(Arc::clone(&self.0)))
    }

    /// Puts the calendar at `unix_ms`; backwards too (an NTP step, a VM migration).
    pub fn set_unix_ms(&self, unix_ms: u64) {
        self.0.store(unix_ms, Ordering::Release);
    }

    /// Moves the calendar `ms` forward; returns the new instant.
    pub fn advance_ms(&self, ms: u64) -> u64 {
        let before = self.0.fetch_add(ms, Ordering::AcqRel);
        assert!(before.checked_add(ms).is_some(), "driven clock overflowed");
        before + ms
    }

    /// The instant the calendar stands at.
    pub fn now_unix_ms(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// The monotonic clock, for deadlines and timeouts only (never calendar time): the one
/// helper through which they read it.
#[inline]
pub fn monotonic_now() -> Instant {
    Instant::now()
}

fn system_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driven_clocks_share_one_instant_across_threads() {
        let calendar = DrivenClock::at(1_000);
        let clock = calendar.clock();
        let reader = clock.clone();
        calendar.advance_ms(86_400_000);
        let seen = std::thread::spawn(move || reader.now_unix_ms())
            .join()
            .unwrap();
        assert_eq!(seen, 86_401_000);
        calendar.set_unix_ms(500);
        assert_eq!(clock.now_unix_ms(), 500);
    }

    #[test]
    fn the_system_clock_reads_the_host() {
        let clock = Clock::system();
        let before = system_unix_ms();
        let read = clock.now_unix_ms();
        assert!(read >= before && read <= system_unix_ms());
    }
}
