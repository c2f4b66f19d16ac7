//! The io_uring engine: hand-rolled, one pinned worker thread per configured core, no
//! async runtime.
//!
//! Each worker owns its ring and its own `SO_REUSEPORT` listener, so the kernel spreads
//! connections across workers and nothing is shared on the hot path. Per worker:
//! multishot accept → multishot receive into a provided buffer ring → HTTP via
//! [`crate::http::Server`] → responses written from registered (fixed) buffers.
//! Connection slots, buffers and the ring are allocated when the worker starts.
//! Deadlines (idle, request 408, close linger, shutdown grace) are swept on a periodic
//! ring timeout. Kernel features are probed at start and missing ones are turned off
//! with a log line (see [`RingFeatures`]).
//!
//! Files: `config` (settings), `probe` (ring setup and fallbacks), `socket` (the few
//! syscalls outside the ring), `buffers` (kernel-shared memory), `conn` (slots and
//! completion tokens), `event_loop` (the loop), `stats` (counters). The listener
//! builder, the error and the thread lifecycle are the parent's, shared with tokio.

mod buffers;
mod config;
mod conn;
mod event_loop;
mod probe;
mod socket;
mod stats;

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tracing::{info, warn};

pub use config::{RingConfig, RingWrite, SqPoll, MAX_OUTPUT_BUFFERS, MAX_RECV_BUFFERS};
pub use probe::RingFeatures;
pub use stats::{StatsSnapshot, WorkerStats};

use super::listener::{reuseport_listeners, Blocking};
use super::workers::{Ready, Startup, WorkerThreads};
pub use super::EngineError;
use crate::http::{Server, Service};
use crate::metrics::WorkerMetrics;
use event_loop::{EventLoop, EventLoopSetup};

/// What the engine keeps of one running worker besides its thread.
struct WorkerHandle {
    wake: Arc<OwnedFd>,
    stats: Arc<WorkerStats>,
}

/// A running io_uring engine. Dropping it stops and joins the workers, like
/// [`Engine::shutdown`] without the error report.
pub struct Engine {
    threads: WorkerThreads,
    workers: Vec<WorkerHandle>,
    features: Vec<RingFeatures>,
    stop: Arc<AtomicBool>,
    local_addr: SocketAddr,
}

impl Engine {
    /// Validates `config`, binds the listeners and starts one worker per configured
    /// core. Returns once every worker has built its ring (or the first failure, after
    /// stopping the workers already started).
    pub fn start<S: Service + 'static>(
        config: RingConfig,
        service: Arc<S>,
        metrics: &[Arc<WorkerMetrics>],
    ) -> Result<Engine, EngineError> {
        config.validate().map_err(EngineError::Config)?;
        if metrics.len() != config.cores.len() {
            return Err(EngineError::Config(format!(
                "{} worker metrics for {} workers",
                metrics.len(),
                config.cores.len()
            )));
        }
        let (listeners, local_addr) = reuseport_listeners(
            config.serve.listen_addr,
            config.cores.len(),
            config.serve.listen_backlog,
            Blocking::Yes,
        )
        .map_err(EngineError::io("binding the listeners"))?;
        let mut engine = Engine {
            threads: WorkerThreads::new("ring"),
            workers: Vec::with_capacity(config.cores.len()),
            features: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            local_addr,
        };
        let startup = Startup::new();
        for (index, listener) in listeners.into_iter().enumerate() {
            let server = Server::new(Arc::clone(&service), &config.serve.http)?;
            let wake =
                Arc::new(socket::eventfd().map_err(EngineError::io("creating the wake eventfd"))?);
            let stats = Arc::new(WorkerStats::default());
            let setup = EventLoopSetup {
                index,
                config: config.clone(),
                server,
                listener: listener.into(),
                wake: Arc::clone(&wake),
                stop: Arc::clone(&engine.stop),
                stats: Arc::clone(&stats),
                metrics: Arc::clone(&metrics[index]),
            };
            let core = config.cores[index];
            engine
                .threads
                .spawn(&startup, Some(core), move |ready| run_worker(setup, ready))?;
            engine.workers.push(WorkerHandle { wake, stats });
        }
        engine.features = startup.wait(engine.threads.len())?;
        info!(addr = %local_addr, workers = engine.workers.len(), "io_uring engine listening");
        Ok(engine)
    }

    /// The address the workers listen on (with the chosen port if 0 was configured).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Each worker's counters, in worker order; cheap to read at any time.
    pub fn stats(&self) -> Vec<Arc<WorkerStats>> {
        self.workers.iter().map(|w| Arc::clone(&w.stats)).collect()
    }

    /// Whether every worker still runs (what the service manager's watchdog is fed on).
    pub fn liveness(&self) -> crate::engine::Liveness {
        self.threads.liveness()
    }

    /// A metrics collector for this engine's per-worker counters.
    pub fn collector(&self) -> Arc<dyn crate::metrics::Collect> {
        Arc::new(stats::RingStatsCollector {
            workers: self.stats(),
        })
    }

    /// Counters summed over the workers.
    pub fn totals(&self) -> StatsSnapshot {
        let mut total = StatsSnapshot::default();
        for w in &self.workers {
            total.add(&w.stats.snapshot());
        }
        total
    }

    /// The features each worker's ring runs with, in worker order.
    pub fn features(&self) -> Vec<RingFeatures> {
        self.features.clone()
    }

    /// Stops accepting, lets requests in progress finish within `shutdown_grace_ms`,
    /// closes every connection and joins the workers.
    pub fn shutdown(mut self) -> Result<(), EngineError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), EngineError> {
        self.stop.store(true, Ordering::Release);
        for w in &self.workers {
            socket::wake(w.wake.as_raw_fd());
        }
        self.threads.join()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Err(e) = self.stop_and_join() {
            warn!(error = %e, "io_uring engine stopped with an error");
        }
    }
}

/// A worker thread: builds its ring, reports, then runs the event loop until stopped.
fn run_worker<S: Service>(setup: EventLoopSetup<S>, ready: Ready<RingFeatures>) {
    match EventLoop::new(setup) {
        Ok(event_loop) => {
            ready.report(Ok(event_loop.features()));
            event_loop.run();
        }
        Err(e) => ready.report(Err(e)),
    }
}
