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
    /// A simulator's [`ClockFile`], shared with other processes.
    #[cfg(feature = "shm")]
    File(Arc<file::Mapped>),
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
            #[cfg(feature = "shm")]
            Source::File(mapped) => mapped.unix_ms().load(Ordering::Acquire),
        }
    }

    /// Whether this clock is a simulator's (a [`ClockFile`]) rather than the host's or
    /// a test's: what `/metrics` and the start banner report.
    pub fn is_simulated(&self) -> bool {
        match &self.0 {
            Source::System | Source::Driven(_) => false,
            #[cfg(feature = "shm")]
            Source::File(_) => true,
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

#[cfg(feature = "shm")]
pub use file::{ClockFile, ClockFileError};

/// A calendar in a file that several processes map: how the auction simulator drives
/// the bidder's and the agent's time of day from outside, faster than real time.
///
/// Only a process started in its explicit simulation mode opens one; production
/// processes read [`Clock::system`]. The file is 16 bytes: the magic `BIDCLOCK` and the
/// instant, unix ms, a little-endian `u64` that the simulator stores atomically and
/// readers load atomically (the same shared-memory discipline as the tables).
#[cfg(feature = "shm")]
mod file {
    extern crate std;

    use core::sync::atomic::{AtomicU64, Ordering};
    use std::fs::{File, OpenOptions};
    use std::io::Write;
    use std::path::{Path, PathBuf};
    use std::string::{String, ToString};
    use std::sync::Arc;

    use super::{Clock, Source};
    use crate::table::shm::Mapping;

    const MAGIC: u64 = u64::from_le_bytes(*b"BIDCLOCK");
    /// Magic, then the instant.
    const FILE_BYTES: usize = 16;

    /// A clock file could not be created or read; names the file and the fix.
    #[derive(Debug)]
    pub struct ClockFileError {
        pub path: PathBuf,
        pub problem: String,
    }

    impl core::fmt::Display for ClockFileError {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            write!(f, "{}: {}", self.path.display(), self.problem)
        }
    }

    impl std::error::Error for ClockFileError {}

    fn problem(path: &Path, problem: impl ToString) -> ClockFileError {
        ClockFileError {
            path: path.to_path_buf(),
            problem: problem.to_string(),
        }
    }

    /// The mapped file; its second word is the instant.
    #[derive(Debug)]
    pub(super) struct Mapped(Mapping);

    impl Mapped {
        fn open(path: &Path, writable: bool) -> Result<Mapped, ClockFileError> {
            let file = OpenOptions::new()
                .read(true)
                .write(writable)
                .open(path)
                .map_err(|e| {
                    problem(
                        path,
                        std::format!(
                            "cannot open the simulation clock file ({e}); fix: start the simulator, which creates it, or correct [simulation] clock_file"
                        ),
                    )
                })?;
            let len = file.metadata().map_err(|e| problem(path, e))?.len();
            if len != FILE_BYTES as u64 {
                return Err(problem(
                    path,
                    std::format!(
                        "{len} bytes, not a clock file ({FILE_BYTES} bytes); fix: point clock_file at the file the simulator created"
                    ),
                ));
            }
            let mapping =
                Mapping::new(&file, FILE_BYTES, writable, path).map_err(|e| problem(path, e))?;
            let mapped = Mapped(mapping);
            if mapped.word(0).load(Ordering::Acquire) != MAGIC {
                return Err(problem(
                    path,
                    "no BIDCLOCK magic: not a clock file; fix: point clock_file at the file the simulator created",
                ));
            }
            Ok(mapped)
        }

        fn word(&self, index: usize) -> &AtomicU64 {
            assert!((index + 1) * 8 <= FILE_BYTES);
            let ptr = self.0.as_ptr().as_ptr();
            assert!((ptr as usize).is_multiple_of(8), "mmap is page aligned");
            // SAFETY: the mapping is FILE_BYTES long (checked at open) and page aligned
            // (asserted), so word `index` is in bounds and 8-byte aligned; it lives as
            // long as `self`; other processes touch it only through atomics too.
            unsafe { &*ptr.cast::<AtomicU64>().add(index) }
        }

        pub(super) fn unix_ms(&self) -> &AtomicU64 {
            self.word(1)
        }
    }

    /// The simulator's side: creates the file and moves the instant.
    #[derive(Clone, Debug)]
    pub struct ClockFile(Arc<Mapped>);

    impl ClockFile {
        /// Creates (or replaces) the file at `path` standing at `start_unix_ms`.
        pub fn create(path: &Path, start_unix_ms: u64) -> Result<ClockFile, ClockFileError> {
            let mut bytes = [0u8; FILE_BYTES];
            bytes[..8].copy_from_slice(&MAGIC.to_le_bytes());
            bytes[8..].copy_from_slice(&start_unix_ms.to_le_bytes());
            // Written beside and renamed into place: a process still mapping an
            // earlier file at `path` keeps its own inode instead of faulting on a
            // truncated one.
            let mut name = std::ffi::OsString::from(path.as_os_str());
            name.push(".new");
            let fresh = PathBuf::from(name);
            let write = || -> std::io::Result<()> {
                let mut file = File::create(&fresh)?;
                file.write_all(&bytes)?;
                file.sync_all()?;
                std::fs::rename(&fresh, path)
            };
            write()
                .map_err(|e| problem(path, std::format!("cannot create the clock file: {e}")))?;
            Ok(ClockFile(Arc::new(Mapped::open(path, true)?)))
        }

        /// A process's reader of the file at `path` (what the bidder and the agent do
        /// in simulation mode).
        pub fn open_clock(path: &Path) -> Result<Clock, ClockFileError> {
            Ok(Clock(Source::File(Arc::new(Mapped::open(path, false)?))))
        }

        /// A reader in this process.
        pub fn clock(&self) -> Clock {
            Clock(Source::File(Arc::clone(&self.0)))
        }

        pub fn set_unix_ms(&self, unix_ms: u64) {
            self.0.unix_ms().store(unix_ms, Ordering::Release);
        }

        pub fn now_unix_ms(&self) -> u64 {
            self.0.unix_ms().load(Ordering::Acquire)
        }
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
    use std::string::ToString;

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

    #[cfg(feature = "shm")]
    #[test]
    fn a_clock_file_is_read_by_another_mapping() {
        let dir = testkit::TempDir::new("clock-file");
        let path = dir.0.join("clock");
        let file = ClockFile::create(&path, 1_000).unwrap();
        let reader = ClockFile::open_clock(&path).unwrap();
        assert!(reader.is_simulated());
        assert!(!Clock::system().is_simulated());
        assert_eq!(reader.now_unix_ms(), 1_000);
        file.set_unix_ms(86_401_000);
        assert_eq!(reader.now_unix_ms(), 86_401_000);
        assert_eq!(file.clock().now_unix_ms(), 86_401_000);
    }

    #[cfg(feature = "shm")]
    #[test]
    fn a_file_that_is_not_a_clock_is_refused_with_the_fix() {
        let dir = testkit::TempDir::new("clock-file");
        let missing = ClockFile::open_clock(&dir.0.join("nothing")).unwrap_err();
        assert!(
            missing.to_string().contains("start the simulator"),
            "{missing}"
        );
        let other = dir.0.join("other");
        std::fs::write(&other, [7u8; 16]).unwrap();
        let wrong = ClockFile::open_clock(&other).unwrap_err();
        assert!(wrong.to_string().contains("BIDCLOCK"), "{wrong}");
        std::fs::write(&other, [7u8; 3]).unwrap();
        let short = ClockFile::open_clock(&other).unwrap_err();
        assert!(short.to_string().contains("3 bytes"), "{short}");
    }

    #[test]
    fn the_system_clock_reads_the_host() {
        let clock = Clock::system();
        let before = system_unix_ms();
        let read = clock.now_unix_ms();
        assert!(read >= before && read <= system_unix_ms());
    }
}
