//! One worker: a thread with its own current-thread runtime, its own listener, and the
//! HTTP state ([`Server`]) that all its connections take turns with.
//!
//! Connections are local tasks. `Server::serve_one` is synchronous, so a connection
//! borrows the worker's server only between awaits and never holds it across I/O; one
//! set of parse, decode and response buffers serves every connection of the worker, as
//! in the io_uring engine.

use std::cell::{Cell, RefCell};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::LocalSet;
use tracing::warn;

use super::conn;
use super::state::{HttpSide, Timeouts, WorkerState};
use super::stats::TokioWorkerStats;
use crate::clock::monotonic_now;
use crate::engine::workers::Ready;
use crate::engine::EngineError;
use crate::http::{canned, ConnectionHeader, Server, Service, Status};
use crate::metrics::{WorkerMetrics, PUBLISH_INTERVAL_MS};

/// After a failed accept (e.g. out of file descriptors) the worker waits this long
/// before the next, instead of spinning on the error.
const ACCEPT_ERROR_BACKOFF_MS: u64 = 10;

use crate::limits::MAX_LINGERING_SHEDS;

/// What a worker thread is started with.
pub(super) struct EventLoopSetup<S> {
    pub listener: StdListener,
    pub server: Server<S>,
    pub timeouts: Timeouts,
    pub max_connections: u32,
    pub stats: Arc<TokioWorkerStats>,
    pub metrics: Arc<WorkerMetrics>,
    pub stop: watch::Receiver<bool>,
}

/// Runs a worker thread to completion (pinned already, if asked): builds its runtime,
/// reports readiness (or the failure) on `ready`, serves until stopped, then drains.
pub(super) fn run<S: Service + 'static>(setup: EventLoopSetup<S>, ready: Ready<()>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return ready.report(Err(EngineError::io("building the worker runtime")(e))),
    };
    LocalSet::new().block_on(&runtime, serve(setup, ready));
    // Dropping the LocalSet (above) and the runtime (here) cancels connections still
    // open after the grace period; their sockets close.
}

async fn serve<S: Service + 'static>(setup: EventLoopSetup<S>, ready: Ready<()>) {
    let EventLoopSetup {
        listener,
        server,
        timeouts,
        max_connections,
        stats,
        metrics,
        mut stop,
    } = setup;
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => return ready.report(Err(EngineError::io("registering the listener")(e))),
    };
    let worker = Rc::new(WorkerState {
        max_request_bytes: server.limits().max_request_bytes(),
        http: RefCell::new(HttpSide {
            out: vec![0; server.min_out_bytes()],
            server,
            recorder: metrics.recorder(),
        }),
        stats,
        metrics,
        timeouts,
        max_connections,
        open: Cell::new(0),
        lingering_sheds: Cell::new(0),
        draining: Cell::new(false),
        drain: Notify::new(),
        closed: Notify::new(),
    });
    worker.metrics.install_on_this_thread();
    ready.report(Ok(()));
    tokio::task::spawn_local(publish_latencies(Rc::clone(&worker)));
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => admit(&worker, stream, peer),
                Err(_) => {
                    worker.stats.accept_errors.inc();
                    tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_BACKOFF_MS)).await;
                }
            },
        }
    }
    drop(listener);
    drain(&worker).await;
}

/// Stops new requests and waits, up to the grace period, for open connections to close.
async fn drain<S>(worker: &WorkerState<S>) {
    worker.draining.set(true);
    worker.drain.notify_waiters();
    let grace = tokio::time::sleep(worker.timeouts.shutdown_grace);
    tokio::pin!(grace);
    while worker.open.get() > 0 {
        tokio::select! {
            _ = worker.closed.notified() => {}
            _ = &mut grace => break,
        }
    }
    if worker.open.get() > 0 {
        warn!(
            connections = worker.open.get(),
            "tokio worker: shutdown grace over; closing connections with requests in progress"
        );
    }
}

/// Publishes recorded latencies on a timer, so an idle worker's last values still reach
/// the scrape.
async fn publish_latencies<S>(worker: Rc<WorkerState<S>>) {
    let mut tick = tokio::time::interval(Duration::from_millis(PUBLISH_INTERVAL_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        worker
            .http
            .borrow_mut()
            .recorder
            .publish_if_due(monotonic_now());
    }
}

/// Gives `stream` a slot and a task, or sheds it with 503 when every slot is taken.
fn admit<S: Service + 'static>(worker: &Rc<WorkerState<S>>, stream: TcpStream, peer: SocketAddr) {
    if worker.open.get() >= worker.max_connections {
        shed(worker, stream);
        return;
    }
    worker.open.set(worker.open.get() + 1);
    worker.stats.connections_accepted.inc();
    let _ = stream.set_nodelay(true);
    let worker = Rc::clone(worker);
    tokio::task::spawn_local(async move {
        let _slot = Slot(Rc::clone(&worker));
        conn::run(&worker, stream, peer).await;
    });
}

/// Holds a connection slot; dropping it (the task ended or was cancelled) frees it.
struct Slot<S>(Rc<WorkerState<S>>);

impl<S> Drop for Slot<S> {
    fn drop(&mut self) {
        let w = &self.0;
        w.open.set(w.open.get() - 1);
        w.stats.connections_closed.inc();
        w.closed.notify_one();
    }
}

/// Answers 503 and closes. The write cannot block: the socket's send buffer is empty.
fn shed<S: 'static>(worker: &Rc<WorkerState<S>>, stream: TcpStream) {
    worker.stats.connections_shed.inc();
    let refusal = canned(Status::ServiceUnavailable, ConnectionHeader::Close);
    if stream.try_write(refusal).ok() == Some(refusal.len()) {
        worker.metrics.count_response(Status::ServiceUnavailable);
    }
    if worker.lingering_sheds.get() >= MAX_LINGERING_SHEDS {
        return;
    }
    worker.lingering_sheds.set(worker.lingering_sheds.get() + 1);
    let worker = Rc::clone(worker);
    tokio::task::spawn_local(async move {
        let mut stream = stream;
        conn::linger(&mut stream, worker.timeouts.close_linger).await;
        worker.lingering_sheds.set(worker.lingering_sheds.get() - 1);
    });
}
