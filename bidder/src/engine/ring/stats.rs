//! Per-worker counters, written by the worker alone and read by anyone.
//!
//! Each counter is an atomic updated with `Relaxed` ordering: one writer, readers that
//! only need eventually-consistent totals (a metrics scrape), no cross-counter invariants.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::http::{Status, STATUS_COUNT};

/// Counters of one io_uring worker.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Complete requests served (any status).
    pub requests: AtomicU64,
    /// Responses sent, indexed by [`Status::index`]; includes 408s and 503s from the engine.
    pub responses: [AtomicU64; STATUS_COUNT],
    /// Connections accepted into a slot.
    pub connections_accepted: AtomicU64,
    /// Connections currently holding a slot.
    pub connections_open: AtomicU64,
    /// Connections closed (slot released).
    pub connections_closed: AtomicU64,
    /// Connections refused with 503 because every slot was taken.
    pub connections_shed: AtomicU64,
    /// Connections closed for sending far more than we could buffer while we were writing.
    pub input_overflows: AtomicU64,
    /// Keep-alive connections closed for idleness.
    pub idle_timeouts: AtomicU64,
    /// Connections closed for sending nothing within the first-byte timeout.
    pub first_byte_timeouts: AtomicU64,
    /// Requests that did not arrive whole in time (answered 408).
    pub request_timeouts: AtomicU64,
    /// Multishot receives ended by an empty provided-buffer ring (ENOBUFS) and re-armed.
    pub recv_buffer_exhaustions: AtomicU64,
    /// Accept completions that failed (e.g. out of file descriptors).
    pub accept_errors: AtomicU64,
    /// Writes submitted: fewer than responses when pipelined answers share one.
    pub writes: AtomicU64,
}

/// A plain copy of [`WorkerStats`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// See [`WorkerStats::requests`].
    pub requests: u64,
    /// See [`WorkerStats::responses`].
    pub responses: [u64; STATUS_COUNT],
    /// See [`WorkerStats::connections_accepted`].
    pub connections_accepted: u64,
    /// See [`WorkerStats::connections_open`].
    pub connections_open: u64,
    /// See [`WorkerStats::connections_closed`].
    pub connections_closed: u64,
    /// See [`WorkerStats::connections_shed`].
    pub connections_shed: u64,
    /// See [`WorkerStats::input_overflows`].
    pub input_overflows: u64,
    /// See [`WorkerStats::idle_timeouts`].
    pub idle_timeouts: u64,
    /// See [`WorkerStats::first_byte_timeouts`].
    pub first_byte_timeouts: u64,
    /// See [`WorkerStats::request_timeouts`].
    pub request_timeouts: u64,
    /// See [`WorkerStats::recv_buffer_exhaustions`].
    pub recv_buffer_exhaustions: u64,
    /// See [`WorkerStats::accept_errors`].
    pub accept_errors: u64,
    /// See [`WorkerStats::writes`].
    pub writes: u64,
}

impl StatsSnapshot {
    /// Responses sent with `status`.
    pub fn responses_with(&self, status: Status) -> u64 {
        self.responses[status.index()]
    }

    /// Adds `other` into `self`, for engine-wide totals.
    pub fn add(&mut self, other: &StatsSnapshot) {
        self.requests += other.requests;
        for (a, b) in self.responses.iter_mut().zip(other.responses) {
            *a += b;
        }
        self.connections_accepted += other.connections_accepted;
        self.connections_open += other.connections_open;
        self.connections_closed += other.connections_closed;
        self.connections_shed += other.connections_shed;
        self.input_overflows += other.input_overflows;
        self.idle_timeouts += other.idle_timeouts;
        self.first_byte_timeouts += other.first_byte_timeouts;
        self.request_timeouts += other.request_timeouts;
        self.recv_buffer_exhaustions += other.recv_buffer_exhaustions;
        self.accept_errors += other.accept_errors;
        self.writes += other.writes;
    }
}

impl WorkerStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            requests: get(&self.requests),
            responses: std::array::from_fn(|i| get(&self.responses[i])),
            connections_accepted: get(&self.connections_accepted),
            connections_open: get(&self.connections_open),
            connections_closed: get(&self.connections_closed),
            connections_shed: get(&self.connections_shed),
            input_overflows: get(&self.input_overflows),
            idle_timeouts: get(&self.idle_timeouts),
            first_byte_timeouts: get(&self.first_byte_timeouts),
            request_timeouts: get(&self.request_timeouts),
            recv_buffer_exhaustions: get(&self.recv_buffer_exhaustions),
            accept_errors: get(&self.accept_errors),
            writes: get(&self.writes),
        }
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn response(&self, status: Status) {
        Self::bump(&self.responses[status.index()]);
    }
}

/// Renders every worker's [`WorkerStats`] with `engine="io_uring"` and `worker`
/// labels, under the metric names the tokio engine uses too (plus the ring's own).
#[derive(Debug)]
pub(crate) struct RingStatsCollector {
    pub(crate) workers: Vec<std::sync::Arc<WorkerStats>>,
}

impl crate::metrics::Collect for RingStatsCollector {
    fn collect(&self, out: &mut crate::metrics::PromText) {
        for (i, w) in self.workers.iter().enumerate() {
            let worker = i.to_string();
            let labels = [("engine", "io_uring"), ("worker", worker.as_str())];
            let s = w.snapshot();
            crate::metrics::ConnectionFigures {
                open: s.connections_open,
                accepted: s.connections_accepted,
                closed: s.connections_closed,
                shed: s.connections_shed,
                idle_timeouts: s.idle_timeouts,
                first_byte_timeouts: s.first_byte_timeouts,
                request_timeouts: s.request_timeouts,
                accept_errors: s.accept_errors,
            }
            .render(out, &labels);
            let ring_only: [(&'static str, &'static str, u64); 3] = [
                (
                    "bidder_ring_input_overflows_total",
                    "Connections closed for sending far more than could be buffered.",
                    s.input_overflows,
                ),
                (
                    "bidder_ring_recv_buffer_exhaustions_total",
                    "Multishot receives ended by an empty provided-buffer ring and re-armed.",
                    s.recv_buffer_exhaustions,
                ),
                (
                    "bidder_ring_writes_total",
                    "Writes submitted; fewer than responses when pipelined answers share one.",
                    s.writes,
                ),
            ];
            for (name, help, value) in ring_only {
                out.counter(name, help, &labels, value);
            }
        }
    }
}
