//! Per-worker connection counters, written by the worker alone and read by the scrape.
//!
//! Responses by status and latencies are not here: they go to the worker's
//! [`WorkerMetrics`](crate::metrics::WorkerMetrics), which both engines share.

use std::sync::Arc;

use crate::metrics::{Collect, Counter, PromText};

/// Counters of one tokio worker ([`Counter`]s: one writer, the worker thread).
#[derive(Debug, Default)]
pub struct TokioWorkerStats {
    /// Connections given a slot.
    pub connections_accepted: Counter,
    /// Connections that held a slot and are closed now.
    pub connections_closed: Counter,
    /// Connections refused with 503 because every slot was taken.
    pub connections_shed: Counter,
    /// Keep-alive connections closed for idleness.
    pub idle_timeouts: Counter,
    /// Requests that did not arrive whole in time (answered 408).
    pub request_timeouts: Counter,
    /// Connections closed because the client did not take a response in time.
    pub write_timeouts: Counter,
    /// Accepts that failed (e.g. out of file descriptors).
    pub accept_errors: Counter,
}

impl TokioWorkerStats {
    /// Connections holding a slot now.
    pub fn connections_open(&self) -> u64 {
        // Closed first: accepted is read later and can only have grown, so the
        // difference never goes below zero.
        let closed = self.connections_closed.get();
        self.connections_accepted.get().saturating_sub(closed)
    }
}

/// Renders every worker's [`TokioWorkerStats`] with `engine="tokio"` and `worker`
/// labels, under the metric names the io_uring engine uses too.
#[derive(Debug)]
pub struct TokioStatsCollector {
    pub(super) workers: Vec<Arc<TokioWorkerStats>>,
}

impl Collect for TokioStatsCollector {
    fn collect(&self, out: &mut PromText) {
        for (i, w) in self.workers.iter().enumerate() {
            let worker = i.to_string();
            let labels = [("engine", "tokio"), ("worker", worker.as_str())];
            out.gauge(
                "bidder_connections_open",
                "Connections holding a slot on the bid port.",
                &labels,
                i64::try_from(w.connections_open()).unwrap_or(i64::MAX),
            );
            let counters: [(&'static str, &'static str, &Counter); 7] = [
                (
                    "bidder_connections_accepted_total",
                    "Connections accepted into a slot on the bid port.",
                    &w.connections_accepted,
                ),
                (
                    "bidder_connections_closed_total",
                    "Connections closed on the bid port.",
                    &w.connections_closed,
                ),
                (
                    "bidder_connections_shed_total",
                    "Connections refused with 503 because every slot was taken.",
                    &w.connections_shed,
                ),
                (
                    "bidder_idle_timeouts_total",
                    "Keep-alive connections closed for idleness.",
                    &w.idle_timeouts,
                ),
                (
                    "bidder_request_timeouts_total",
                    "Requests not received whole in time, answered 408.",
                    &w.request_timeouts,
                ),
                (
                    "bidder_write_timeouts_total",
                    "Connections closed because the client did not read its response.",
                    &w.write_timeouts,
                ),
                (
                    "bidder_accept_errors_total",
                    "Failed accepts on the bid port.",
                    &w.accept_errors,
                ),
            ];
            for (name, help, counter) in counters {
                out.counter(name, help, &labels, counter.get());
            }
        }
    }
}
