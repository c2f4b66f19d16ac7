//! What a tokio worker's connection tasks share: the HTTP side, the timeouts, the
//! counters and the drain signals. All on the worker's one thread, so plain cells.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::stats::TokioWorkerStats;
use crate::http::Server;
use crate::metrics::{LatencyRecorder, WorkerMetrics};

/// The timeouts a worker enforces, from the config.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    pub idle: Duration,
    pub first_byte: Duration,
    pub request: Duration,
    pub close_linger: Duration,
    pub shutdown_grace: Duration,
}

/// The HTTP side of a worker, borrowed by one connection at a time.
pub(super) struct HttpSide<S> {
    pub server: Server<S>,
    /// Scratch for one response (`Server::min_out_bytes`); copied out to the connection.
    pub out: Vec<u8>,
    pub recorder: LatencyRecorder,
}

/// A worker thread's state, shared by its connection tasks (all on the worker's thread).
pub(super) struct WorkerState<S> {
    pub http: RefCell<HttpSide<S>>,
    pub stats: Arc<TokioWorkerStats>,
    pub metrics: Arc<WorkerMetrics>,
    pub timeouts: Timeouts,
    pub max_request_bytes: usize,
    pub max_connections: u32,
    pub open: Cell<u32>,
    pub lingering_sheds: Cell<u32>,
    /// Set once shutdown starts; connections answer what they hold and close.
    pub draining: Cell<bool>,
    /// Wakes every connection when draining starts.
    pub drain: Notify,
    /// Wakes the worker's shutdown wait when a connection closes.
    pub closed: Notify,
}
