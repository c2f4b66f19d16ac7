//! Metrics: counters and latency histograms that workers write without locks or
//! atomic read-modify-writes, and that the control thread reads at scrape time.
//!
//! `counter` (single-writer counters) and `histogram` (µs latencies) are the building
//! blocks; `worker` groups one worker's metrics and the lock-free-for-the-worker
//! publishing of its histograms; `registry` is what `/metrics` scrapes, with engines
//! adding their own counters through [`Collect`]; `prom` renders the Prometheus text
//! format.

mod connections;
mod counter;
mod histogram;
mod prom;
mod registry;
mod worker;

pub use connections::ConnectionFigures;
pub use counter::Counter;
pub use histogram::{LatencyHistogram, MAX_RECORDED_LATENCY_US};
pub use prom::{escape_label_value, Labels, PromText, LATENCY_BUCKETS_US};
pub use registry::{Collect, DecisionSource, Registry, UNATTRIBUTED_PARTNER};
pub use worker::{
    LatencyRecorder, PartnerCounters, WorkerMetrics, PUBLISH_EVERY_RECORDS, PUBLISH_INTERVAL_MS,
};
