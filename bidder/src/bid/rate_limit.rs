//! Per-partner request limits in user space, for hosts where no XDP program enforces
//! them at the NIC.
//!
//! Each worker thread keeps its own bucket per partner with `1/workers` of the
//! partner's rate and burst, so the hot path has no shared state. With `SO_REUSEPORT`
//! spreading connections evenly the sum matches the configured limit; a partner whose
//! few connections all land on one worker gets less than its limit (never more).

use std::time::Instant;

/// Token fractions per token: refill arithmetic stays in integers at sub-token
/// precision.
const MICRO: u64 = 1_000_000;

/// A token bucket: `rate_per_s` tokens a second, holding at most `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_per_s: u64,
    burst_micro: u64,
    tokens_micro: u64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. A zero rate refuses everything once the burst is spent; a zero
    /// burst is raised to one token so a positive rate can pass anything at all.
    pub fn new(rate_per_s: u64, burst: u64, now: Instant) -> TokenBucket {
        let burst = if rate_per_s == 0 { burst } else { burst.max(1) };
        TokenBucket {
            rate_per_s,
            burst_micro: burst.saturating_mul(MICRO),
            tokens_micro: burst.saturating_mul(MICRO),
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed_us = now.saturating_duration_since(self.last).as_micros() as u64;
        if elapsed_us > 0 {
            // tokens_micro += elapsed_s × rate × MICRO  =  elapsed_us × rate
            let refill = elapsed_us.saturating_mul(self.rate_per_s);
            self.tokens_micro = self
                .tokens_micro
                .saturating_add(refill)
                .min(self.burst_micro);
            self.last = now;
        }
        if self.tokens_micro >= MICRO {
            self.tokens_micro -= MICRO;
            true
        } else {
            false
        }
    }
}

/// One worker's share of a partner limit: `total / workers`, rounded up so a small
/// limit split over many workers still lets traffic through.
pub fn worker_share(total: u32, workers: u32) -> u64 {
    u64::from(total).div_ceil(u64::from(workers.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_burst_passes_then_the_rate_refills() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100, 10, t0);
        assert_eq!((0..20).filter(|_| b.try_take(t0)).count(), 10);
        // 100/s: 50 ms refills 5 tokens.
        let t1 = t0 + Duration::from_millis(50);
        assert_eq!((0..20).filter(|_| b.try_take(t1)).count(), 5);
        // A long pause refills only up to the burst.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..100).filter(|_| b.try_take(t2)).count(), 10);
    }

    #[test]
    fn a_zero_rate_shuts_the_partner_off() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0, 0, t0);
        assert!(!b.try_take(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn over_a_second_the_rate_is_exact() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1_000, 1, t0);
        let passed = (0..100_000u64)
            .filter(|i| b.try_take(t0 + Duration::from_micros(i * 10)))
            .count();
        // 1 s of offered load at 100k/s against 1,000/s (+1 burst).
        assert!((999..=1_001).contains(&passed), "{passed}");
    }

    #[test]
    fn shares_round_up() {
        assert_eq!(worker_share(1_000, 4), 250);
        assert_eq!(worker_share(1, 4), 1);
        assert_eq!(worker_share(0, 4), 0);
        assert_eq!(worker_share(10, 0), 10);
    }
}
