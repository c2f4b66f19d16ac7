//! Metrics: counters and latency histograms that workers write without locks or
//! atomic read-modify-writes, and that the control thread reads at scrape time.
//!
//! `counter` (single-writer counters) and `histogram` (µs latencies) are the building
//! blocks; `worker` groups one worker's metrics and the lock-free-for-the-worker
//! publishing of its histograms; engines and the XDP front add their own counters
//! through [`Collect`]; `prom` renders the Prometheus text format. What `/metrics`
//! scrapes, putting them together with the catalog and the decisions, is the control
//! port's [`Registry`](crate::control::Registry).

mod collect;
mod connections;
mod counter;
mod histogram;
mod prom;
mod worker;

pub use collect::{Collect, UNATTRIBUTED_PARTNER};
pub use connections::ConnectionFigures;
pub use counter::Counter;
pub use histogram::{LatencyHistogram, MAX_RECORDED_LATENCY_US};
pub use prom::{escape_label_value, Labels, PromText, LATENCY_BUCKETS_US};
pub use worker::{
    LatencyRecorder, PartnerCounters, WorkerMetrics, PUBLISH_EVERY_RECORDS, PUBLISH_INTERVAL_MS,
    SUPPLY_REFUSAL_KINDS,
};
