//! Latency histograms in µs: an HdrHistogram plus the exact sum Prometheus wants.

use hdrhistogram::Histogram;

pub use crate::limits::MAX_RECORDED_LATENCY_US;

/// Significant decimal digits kept per value: 0.1% error, which is far finer than the
/// exported buckets, at about 120 KiB of counts per histogram.
const SIGNIFICANT_DIGITS: u8 = 3;

/// Latencies in µs. Recording is a few arithmetic operations on preallocated counts, so
/// it is fit for the hot path; nothing here allocates after [`LatencyHistogram::new`].
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    hist: Histogram<u64>,
    /// Exact sum of the recorded values (before clamping), µs, for `_sum`.
    sum_us: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram covering 1 µs ..= [`MAX_RECORDED_LATENCY_US`].
    pub fn new() -> LatencyHistogram {
        let hist = Histogram::new_with_bounds(1, MAX_RECORDED_LATENCY_US, SIGNIFICANT_DIGITS)
            .expect("constant histogram bounds are valid");
        LatencyHistogram { hist, sum_us: 0 }
    }

    /// Records one latency; values above the range are counted at its top.
    #[inline]
    pub fn record(&mut self, value_us: u64) {
        self.hist.saturating_record(value_us);
        self.sum_us = self.sum_us.saturating_add(value_us);
    }

    /// Adds every value of `other`. Both cover the same range, so this cannot fail.
    pub fn add(&mut self, other: &LatencyHistogram) {
        self.hist
            .add(&other.hist)
            .expect("histograms with the same bounds always add");
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
    }

    /// Forgets every value, keeping the allocation.
    pub fn reset(&mut self) {
        self.hist.reset();
        self.sum_us = 0;
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Sum of the values recorded, µs.
    pub fn sum_us(&self) -> u64 {
        self.sum_us
    }

    /// Values at most `bound_us` (to the histogram's resolution): one cumulative bucket.
    pub fn count_at_most(&self, bound_us: u64) -> u64 {
        self.hist.count_between(0, bound_us)
    }

    /// The value at quantile `q` (0.0..=1.0), µs; 0 when empty.
    pub fn quantile_us(&self, q: f64) -> u64 {
        self.hist.value_at_quantile(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_sums_and_merges() {
        let mut a = LatencyHistogram::new();
        a.record(100);
        a.record(200);
        let mut b = LatencyHistogram::new();
        b.record(MAX_RECORDED_LATENCY_US * 10);
        a.add(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.sum_us(), 300 + MAX_RECORDED_LATENCY_US * 10);
        assert_eq!(a.count_at_most(150), 1);
        assert_eq!(a.count_at_most(MAX_RECORDED_LATENCY_US), 3);
        assert!(a.quantile_us(1.0) >= MAX_RECORDED_LATENCY_US);
        a.reset();
        assert_eq!((a.count(), a.sum_us()), (0, 0));
    }
}
