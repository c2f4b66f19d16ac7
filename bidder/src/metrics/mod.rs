//! Metrics: counters and latency histograms that workers write without locks or
//! atomic read-modify-writes, and that the control thread reads at scrape time.

mod counter;

pub use counter::Counter;
