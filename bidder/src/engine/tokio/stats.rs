//! Per-worker connection counters, written by the worker alone and read by the scrape.
//!
//! Responses by status and latencies are not here: they go to the worker's
//! [`WorkerMetrics`](crate::metrics::WorkerMetrics), which both engines share.

use std::sync::Arc;

use crate::metrics::{Collect, ConnectionFigures, Counter, PromText};

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
    /// Connections closed for sending nothing within the first-byte timeout.
    pub first_byte_timeouts: Counter,
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
            ConnectionFigures {
                open: w.connections_open(),
                accepted: w.connections_accepted.get(),
                closed: w.connections_closed.get(),
                shed: w.connections_shed.get(),
                idle_timeouts: w.idle_timeouts.get(),
                first_byte_timeouts: w.first_byte_timeouts.get(),
                request_timeouts: w.request_timeouts.get(),
                accept_errors: w.accept_errors.get(),
            }
            .render(out, &labels);
            out.counter(
                "bidder_write_timeouts_total",
                "Connections closed because the client did not read its response.",
                &labels,
                w.write_timeouts.get(),
            );
        }
    }
}
