//! A counter with one writer and any number of readers.

use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonic counter owned by one thread (a worker) and read by others (the
/// metrics scrape). The writer increments with a plain load and store, not an
/// atomic read-modify-write: with a single writer no update can be lost, and on
/// x86 this compiles to ordinary moves, so the hot path pays nothing for it.
/// Readers see a recent value; counters are summed across workers at scrape time.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Must only be called by the counter's owning thread.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Adds one. Must only be called by the counter's owning thread.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// The current value, from any thread.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_single_writer_loses_no_increment_while_readers_read() {
        let c = Arc::new(Counter::default());
        let reader = {
            let c = Arc::clone(&c);
            std::thread::spawn(move || {
                let mut last = 0;
                for _ in 0..100_000 {
                    let now = c.get();
                    assert!(now >= last, "a counter never goes backwards");
                    last = now;
                }
            })
        };
        for _ in 0..1_000_000 {
            c.inc();
        }
        reader.join().unwrap();
        assert_eq!(c.get(), 1_000_000);
    }
}
