//! How a scenario is timed: per call with `Instant` for the latency distribution, and
//! per batch without per-call timers for throughput, each over its own calls.
//!
//! Per-call timing adds one clock read's cost to every sample (`Instant::now` is a
//! vDSO TSC read here, ~20-30 ns, printed by [`timer_overhead_ns`]); that matters for
//! the sub-microsecond stage timings, so every scenario also reports the mean of
//! batches of calls timed as a whole, where the clock cost is spread over the batch.
//! Work the hot path does not do (copying a body in, the ledger drain) happens
//! between timed calls, never inside them.

use std::time::Instant;

use hdrhistogram::Histogram;

/// One workload the harness can drive.
pub trait Scenario {
    /// Sets `slot` up for its next call (copy a request body in, …). Not timed.
    fn prepare(&mut self, slot: usize);
    /// The measured call on `slot`.
    fn call(&mut self, slot: usize);
    /// Between batches: the control thread's share (ledger drain). Not timed.
    fn after_batch(&mut self) {}
}

/// How many calls to make and how to group them.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Calls before anything is recorded: buffers grow, caches and branch predictors
    /// settle.
    pub warmup: usize,
    /// Timed calls in each pass (latency pass, then throughput pass).
    pub samples: usize,
    /// Calls prepared together and, in the throughput pass, timed together. Small
    /// enough that a batch's bodies stay in L2, large enough to amortise the clock.
    pub batch: usize,
}

/// A latency distribution in nanoseconds.
pub type Hist = Histogram<u64>;

/// What one scenario measured.
pub struct Measured {
    /// Per-call latency of every sample.
    pub latency: Hist,
    /// Mean ns per call over the throughput pass (batches timed as a whole).
    pub batched_mean_ns: f64,
}

fn new_hist() -> Hist {
    // 1 ns to 10 s at 3 significant digits: every sample fits, 0.1% resolution.
    Histogram::new_with_bounds(1, 10_000_000_000, 3).expect("valid histogram bounds")
}

/// Runs `scenario` per `plan`.
pub fn run<S: Scenario>(scenario: &mut S, plan: Plan) -> Measured {
    let batch = plan.batch.max(1);
    let mut done = 0;
    while done < plan.warmup {
        for slot in 0..batch {
            scenario.prepare(slot);
            scenario.call(slot);
        }
        scenario.after_batch();
        done += batch;
    }

    let mut latency = new_hist();
    let mut done = 0;
    while done < plan.samples {
        for slot in 0..batch {
            scenario.prepare(slot);
        }
        for slot in 0..batch {
            let start = Instant::now();
            scenario.call(slot);
            latency.saturating_record((start.elapsed().as_nanos() as u64).max(1));
        }
        scenario.after_batch();
        done += batch;
    }

    let mut total_ns = 0u128;
    let mut calls = 0u64;
    while (calls as usize) < plan.samples {
        for slot in 0..batch {
            scenario.prepare(slot);
        }
        let start = Instant::now();
        for slot in 0..batch {
            scenario.call(slot);
        }
        total_ns += start.elapsed().as_nanos();
        calls += batch as u64;
        scenario.after_batch();
    }
    Measured {
        latency,
        batched_mean_ns: total_ns as f64 / calls.max(1) as f64,
    }
}

/// Median cost of one `Instant::now()` + `elapsed()` pair, ns: what per-call timing
/// adds to every sample.
pub fn timer_overhead_ns() -> u64 {
    let mut hist = new_hist();
    for _ in 0..200_000 {
        let start = Instant::now();
        let ns = start.elapsed().as_nanos() as u64;
        hist.saturating_record(ns.max(1));
    }
    hist.value_at_quantile(0.5)
}

/// The numbers every row of the report shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub samples: u64,
    pub median_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
    pub mean_ns: f64,
    /// Mean per call when batches are timed as a whole (no per-call clock).
    pub batched_mean_ns: f64,
    /// Calls per second on one core, from the batched mean.
    pub requests_per_s: f64,
}

impl Summary {
    pub fn of(measured: &Measured) -> Summary {
        let hist = &measured.latency;
        let batched_mean_ns = measured.batched_mean_ns;
        Summary {
            samples: hist.len(),
            median_ns: hist.value_at_quantile(0.5),
            p90_ns: hist.value_at_quantile(0.9),
            p99_ns: hist.value_at_quantile(0.99),
            max_ns: hist.max(),
            mean_ns: hist.mean(),
            batched_mean_ns,
            requests_per_s: if batched_mean_ns > 0.0 {
                1e9 / batched_mean_ns
            } else {
                0.0
            },
        }
    }
}
