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
//! Files: `config` (settings), `event_loop` (runtime, accept, shedding, shutdown),
//! `state` (what a worker's connections share), `conn` (one connection's
//! read/serve/write loop and deadlines), `stats` (connection counters and their
//! scrape). The listener builder, the error and the thread lifecycle are the parent's,
//! shared with io_uring.

mod config;
mod conn;
mod event_loop;
mod state;
mod stats;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

pub use config::{TokioEngineConfig, MAX_WORKERS};
pub use stats::{TokioStatsCollector, TokioWorkerStats};

use super::listener::{reuseport_listeners, Blocking};
use super::workers::{Startup, WorkerThreads};
pub use super::EngineError;
use crate::http::{Server, Service};
use crate::metrics::WorkerMetrics;
use event_loop::EventLoopSetup;
use state::Timeouts;

/// A running tokio engine. Dropping it stops and joins the workers, like
/// [`TokioEngine::shutdown`] without the error report.
pub struct TokioEngine {
    threads: WorkerThreads,
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
        let serve = &config.serve;
        let (listeners, local_addr) = reuseport_listeners(
            serve.listen_addr,
            config.workers,
            serve.listen_backlog,
            Blocking::No,
        )
        .map_err(EngineError::io("binding the listeners"))?;
        let (stop, stop_rx) = watch::channel(false);
        let mut engine = TokioEngine {
            threads: WorkerThreads::new("tokio"),
            stats: Vec::with_capacity(config.workers),
            stop,
            local_addr,
        };
        let timeouts = Timeouts {
            idle: Duration::from_millis(serve.idle_timeout_ms),
            first_byte: Duration::from_millis(serve.first_byte_timeout_ms),
            request: Duration::from_millis(serve.request_timeout_ms),
            close_linger: Duration::from_millis(serve.close_linger_ms),
            shutdown_grace: Duration::from_millis(serve.shutdown_grace_ms),
        };
        let startup = Startup::new();
        for (index, listener) in listeners.into_iter().enumerate() {
            let stats = Arc::new(TokioWorkerStats::default());
            let setup = EventLoopSetup {
                listener: listener.into(),
                server: Server::new(Arc::clone(&service), &serve.http)?,
                timeouts,
                max_connections: serve.max_connections,
                stats: Arc::clone(&stats),
                metrics: Arc::clone(&metrics[index]),
                stop: stop_rx.clone(),
            };
            let core = config.cores.get(index).copied();
            engine
                .threads
                .spawn(&startup, core, move |ready| event_loop::run(setup, ready))?;
            engine.stats.push(stats);
        }
        startup.wait(engine.threads.len())?;
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

    /// Whether every worker still runs (what the service manager's watchdog is fed on).
    pub fn liveness(&self) -> crate::engine::Liveness {
        self.threads.liveness()
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
        self.threads.join()
    }
}

impl Drop for TokioEngine {
    fn drop(&mut self) {
        if let Err(e) = self.stop_and_join() {
            warn!(error = %e, "tokio engine stopped with an error");
        }
    }
}
