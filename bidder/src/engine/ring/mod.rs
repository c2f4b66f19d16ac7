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
//! completion tokens), `worker` (the event loop), `stats` (counters).

mod buffers;
mod config;
mod conn;
mod event_loop;
mod probe;
mod socket;
mod stats;

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use thiserror::Error;
use tracing::{info, warn};

pub use config::{
    RingConfig, SqPoll, MAX_CONNECTIONS_PER_WORKER, MAX_OUTPUT_BUFFERS, MAX_RECV_BUFFERS,
};
pub use probe::RingFeatures;
pub use stats::{StatsSnapshot, WorkerStats};

use crate::http::{HttpConfigError, Server, Service};
use crate::metrics::WorkerMetrics;
use event_loop::{EventLoop, EventLoopSetup};

/// Why the engine did not start.
#[derive(Debug, Error)]
pub enum EngineError {
    /// A setting the engine cannot run with.
    #[error("io_uring engine config: {0}")]
    Config(String),
    /// The HTTP settings are invalid.
    #[error("io_uring engine http config: {0}")]
    Http(#[from] HttpConfigError),
    /// The kernel lacks something the engine needs; use the tokio engine instead.
    #[error("io_uring engine unsupported on this kernel: {0}")]
    Unsupported(String),
    /// A system call failed during start.
    #[error("io_uring engine: {what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// A worker thread panicked.
    #[error("io_uring worker {0} panicked")]
    WorkerPanicked(usize),
}

struct WorkerHandle {
    thread: Option<JoinHandle<()>>,
    wake: Arc<OwnedFd>,
    stats: Arc<WorkerStats>,
    features: RingFeatures,
}

/// A running io_uring engine. Dropping it stops and joins the workers, like
/// [`Engine::shutdown`] without the error report.
pub struct Engine {
    workers: Vec<WorkerHandle>,
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
        let (listeners, local_addr) = socket::reuseport_listeners(
            config.listen_addr,
            config.cores.len(),
            config.listen_backlog,
        )
        .map_err(|source| EngineError::Io {
            what: "binding the listeners",
            source,
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut engine = Engine {
            workers: Vec::with_capacity(config.cores.len()),
            stop,
            local_addr,
        };
        let (ready_tx, ready_rx) = mpsc::channel();
        for (index, listener) in listeners.into_iter().enumerate() {
            let server = Server::new(Arc::clone(&service), &config.http)?;
            let wake = Arc::new(socket::eventfd().map_err(|source| EngineError::Io {
                what: "creating the wake eventfd",
                source,
            })?);
            let stats = Arc::new(WorkerStats::default());
            let setup = EventLoopSetup {
                index,
                config: config.clone(),
                server,
                listener,
                wake: Arc::clone(&wake),
                stop: Arc::clone(&engine.stop),
                stats: Arc::clone(&stats),
                metrics: Arc::clone(&metrics[index]),
            };
            let ready = ready_tx.clone();
            let core = config.cores[index];
            let thread = std::thread::Builder::new()
                .name(format!("ring-{index}"))
                .spawn(move || run_worker(setup, core, ready))
                .map_err(|source| EngineError::Io {
                    what: "spawning a worker thread",
                    source,
                })?;
            engine.workers.push(WorkerHandle {
                thread: Some(thread),
                wake,
                stats,
                features: RingFeatures::default(),
            });
        }
        drop(ready_tx);
        for _ in 0..engine.workers.len() {
            match ready_rx.recv() {
                Ok((index, Ok(features))) => engine.workers[index].features = features,
                Ok((_, Err(e))) => return Err(e),
                Err(_) => return Err(EngineError::WorkerPanicked(usize::MAX)),
            }
        }
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
        self.workers.iter().map(|w| w.features).collect()
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
        let mut result = Ok(());
        for (index, w) in self.workers.iter_mut().enumerate() {
            if let Some(thread) = w.thread.take() {
                if thread.join().is_err() {
                    result = Err(EngineError::WorkerPanicked(index));
                }
            }
        }
        result
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Err(e) = self.stop_and_join() {
            warn!(error = %e, "io_uring engine stopped with an error");
        }
    }
}

type Ready = mpsc::Sender<(usize, Result<RingFeatures, EngineError>)>;

fn run_worker<S: Service>(setup: EventLoopSetup<S>, core: usize, ready: Ready) {
    let index = setup.index;
    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        warn!(
            worker = index,
            core, "could not pin worker to its core; running unpinned"
        );
    }
    let worker = match EventLoop::new(setup) {
        Ok(worker) => worker,
        Err(e) => {
            let _ = ready.send((index, Err(e)));
            return;
        }
    };
    let _ = ready.send((index, Ok(worker.features())));
    drop(ready);
    worker.run();
}
