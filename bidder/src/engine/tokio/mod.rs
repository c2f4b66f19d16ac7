//! The tokio engine: the same HTTP semantics as the io_uring engine, over tokio
//! `TcpStream`s, for hosts where io_uring is blocked (containers, old kernels) and as the
//! benchmark baseline.
//!
//! This module owns I/O only. Framing, limits, routing, decoding and the service call
//! are [`crate::http::Server::serve_one`], exactly as for the io_uring engine, so the two
//! engines cannot drift apart in what they answer.
//!
//! Shape: N worker threads, each optionally pinned to a core, each with its own
//! current-thread runtime and its own `SO_REUSEPORT` listener (no work stealing, no
//! shared accept queue: thread-per-core, like the io_uring engine). Per worker, one
//! [`Server`] and its buffers, shared in turn by the worker's connections.
//!
//! Files: `config` (settings), `socket` (listeners), `worker` (thread, accept, shedding,
//! shutdown), `conn` (one connection's read/serve/write loop and deadlines), `stats`
//! (connection counters and their scrape).

mod config;
mod conn;
mod event_loop;
mod socket;
mod state;
mod stats;

use std::io;
use std::net::SocketAddr;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::watch;
use tracing::{info, warn};

pub use config::{TokioEngineConfig, MAX_CONNECTIONS_PER_WORKER, MAX_WORKERS};
pub use stats::{TokioStatsCollector, TokioWorkerStats};

use crate::http::{HttpConfigError, Server, Service};
use crate::metrics::WorkerMetrics;
use event_loop::EventLoopSetup;
use state::Timeouts;

/// Why the engine did not start, or did not stop cleanly.
#[derive(Debug, Error)]
pub enum EngineError {
    /// A setting the engine cannot run with.
    #[error("tokio engine config: {0}")]
    Config(String),
    /// The HTTP settings are invalid.
    #[error("tokio engine http config: {0}")]
    Http(#[from] HttpConfigError),
    /// A system call failed during start.
    #[error("tokio engine: {what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// A worker thread panicked.
    #[error("tokio worker {0} panicked")]
    WorkerPanicked(usize),
}

/// A running tokio engine. Dropping it stops and joins the workers, like
/// [`TokioEngine::shutdown`] without the error report.
pub struct TokioEngine {
    threads: Vec<Option<JoinHandle<()>>>,
    stats: Vec<Arc<TokioWorkerStats>>,
    stop: watch::Sender<bool>,
    local_addr: SocketAddr,
}

impl TokioEngine {
    /// Validates `config`, binds the listeners and starts the workers; worker *i* counts
    /// responses and latencies into `metrics[i]` (one per worker, from
    /// [`Registry::add_workers`](crate::control::Registry::add_workers)). Returns once
    /// every worker is accepting, or with the first failure after stopping the others.
    pub fn start<S: Service + 'static>(
        config: TokioEngineConfig,
        service: Arc<S>,
        metrics: &[Arc<WorkerMetrics>],
    ) -> Result<TokioEngine, EngineError> {
        config.validate().map_err(EngineError::Config)?;
        if metrics.len() != config.workers {
            return Err(EngineError::Config(format!(
                "{} worker metrics given for {} workers",
                metrics.len(),
                config.workers
            )));
        }
        let (listeners, local_addr) =
            socket::reuseport_listeners(config.listen_addr, config.workers, config.listen_backlog)
                .map_err(|source| EngineError::Io {
                    what: "binding the listeners",
                    source,
                })?;
        let (stop, stop_rx) = watch::channel(false);
        let mut engine = TokioEngine {
            threads: Vec::with_capacity(config.workers),
            stats: Vec::with_capacity(config.workers),
            stop,
            local_addr,
        };
        let timeouts = Timeouts {
            idle: Duration::from_millis(config.idle_timeout_ms),
            request: Duration::from_millis(config.request_timeout_ms),
            close_linger: Duration::from_millis(config.close_linger_ms),
            shutdown_grace: Duration::from_millis(config.shutdown_grace_ms),
        };
        let (ready_tx, ready_rx) = mpsc::channel();
        for (index, listener) in listeners.into_iter().enumerate() {
            let stats = Arc::new(TokioWorkerStats::default());
            let setup = EventLoopSetup {
                index,
                core: config.cores.get(index).copied(),
                listener,
                server: Server::new(Arc::clone(&service), &config.http)?,
                timeouts,
                max_connections: config.max_connections,
                stats: Arc::clone(&stats),
                metrics: Arc::clone(&metrics[index]),
                stop: stop_rx.clone(),
            };
            let ready = ready_tx.clone();
            let thread = std::thread::Builder::new()
                .name(format!("tokio-{index}"))
                .spawn(move || event_loop::run(setup, ready))
                .map_err(|source| EngineError::Io {
                    what: "spawning a worker thread",
                    source,
                })?;
            engine.threads.push(Some(thread));
            engine.stats.push(stats);
        }
        drop(ready_tx);
        for _ in 0..config.workers {
            match ready_rx.recv() {
                Ok((_, Ok(()))) => {}
                Ok((_, Err(source))) => {
                    return Err(EngineError::Io {
                        what: "starting a worker runtime",
                        source,
                    })
                }
                Err(_) => return Err(engine.first_panicked()),
            }
        }
        info!(addr = %local_addr, workers = config.workers, "tokio engine listening");
        Ok(engine)
    }

    /// The address the workers listen on (with the chosen port if 0 was configured).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Each worker's connection counters, in worker order.
    pub fn stats(&self) -> &[Arc<TokioWorkerStats>] {
        &self.stats
    }

    /// The scrape side of [`stats`](Self::stats), for
    /// [`Registry::register`](crate::control::Registry::register).
    pub fn collector(&self) -> Arc<TokioStatsCollector> {
        Arc::new(TokioStatsCollector {
            workers: self.stats.clone(),
        })
    }

    /// Stops accepting, lets requests in progress finish within `shutdown_grace_ms`,
    /// closes every connection and joins the workers.
    pub fn shutdown(mut self) -> Result<(), EngineError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), EngineError> {
        self.stop.send_replace(true);
        let mut result = Ok(());
        for (index, thread) in self.threads.iter_mut().enumerate() {
            if let Some(t) = thread.take() {
                if t.join().is_err() && result.is_ok() {
                    result = Err(EngineError::WorkerPanicked(index));
                }
            }
        }
        result
    }

    /// After a worker vanished during start: stop the rest and name the culprit.
    fn first_panicked(&mut self) -> EngineError {
        match self.stop_and_join() {
            Err(e) => e,
            Ok(()) => EngineError::WorkerPanicked(usize::MAX),
        }
    }
}

impl Drop for TokioEngine {
    fn drop(&mut self) {
        if let Err(e) = self.stop_and_join() {
            warn!(error = %e, "tokio engine stopped with an error");
        }
    }
}
