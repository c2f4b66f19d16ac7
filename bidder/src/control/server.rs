//! The control thread: a current-thread runtime running the accept loop, one hyper
//! HTTP/1.1 connection task per client (bounded), and the ledger tick.
//!
//! Everything runs on this one thread, so the ledger needs no lock: connection tasks
//! borrow the [`NoticeDesk`] between awaits only.

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::io;
use std::net::TcpListener as StdListener;
use std::rc::Rc;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::LocalSet;
use tracing::warn;

use super::desk::NoticeDesk;
use super::routes::route;
use super::state::Control;
use super::{ControlConfig, ControlParts};
use crate::limits::MAX_ADMIN_REQUEST_HEAD_BYTES;

/// After a failed accept the loop waits this long instead of spinning on the error.
const ACCEPT_ERROR_BACKOFF_MS: u64 = 10;

/// The answer to a client past `max_connections`.
const BUSY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 5\r\nconnection: close\r\n\r\nbusy\n";

/// Runs the control thread: builds the runtime, reports readiness on `ready`, serves
/// until `stop`, then lets open connections finish within the grace period.
pub(super) fn run(
    config: ControlConfig,
    parts: ControlParts,
    listener: StdListener,
    stop: watch::Receiver<bool>,
    ready: mpsc::Sender<io::Result<()>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let control = Rc::new(Control {
        registry: parts.registry,
        readiness: parts.readiness,
        reload: Arc::new(Mutex::new(parts.reload)),
        desk: RefCell::new(NoticeDesk::new(parts.notices)),
        config,
        reloads: Default::default(),
        shed: Cell::new(0),
        open: Cell::new(0),
        draining: Cell::new(false),
        drain: Notify::new(),
        closed: Notify::new(),
    });
    LocalSet::new().block_on(&runtime, serve(control, listener, stop, ready));
}

use crate::limits::MAX_BLOCKING_THREADS;

async fn serve(
    control: Rc<Control>,
    listener: StdListener,
    mut stop: watch::Receiver<bool>,
    ready: mpsc::Sender<io::Result<()>>,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    drop(ready);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(control.config.header_read_timeout_ms))
        .max_buf_size(MAX_ADMIN_REQUEST_HEAD_BYTES);
    let http = Rc::new(http);
    tokio::task::spawn_local(tick_ledger(Rc::clone(&control)));
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => admit(&control, &http, stream),
                Err(_) => tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_BACKOFF_MS)).await,
            },
        }
    }
    drop(listener);
    drain(&control).await;
}

/// Drains the ledger inbox and expires overdue reservations every `ledger_tick_ms`.
async fn tick_ledger(control: Rc<Control>) {
    let mut tick = tokio::time::interval(Duration::from_millis(control.config.ledger_tick_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        control.desk.borrow_mut().tick();
        control.readiness.control_ticked();
    }
}

fn admit(control: &Rc<Control>, http: &Rc<http1::Builder>, stream: TcpStream) {
    if control.open.get() >= control.config.max_connections {
        control.shed.set(control.shed.get() + 1);
        // A fresh socket's send buffer is empty: this write cannot block.
        let _ = stream.try_write(BUSY);
        return;
    }
    control.open.set(control.open.get() + 1);
    let control = Rc::clone(control);
    let http = Rc::clone(http);
    tokio::task::spawn_local(async move {
        let _slot = Slot(Rc::clone(&control));
        serve_connection(&control, &http, stream).await;
    });
}

async fn serve_connection(control: &Rc<Control>, http: &http1::Builder, stream: TcpStream) {
    let for_requests = Rc::clone(control);
    let service = service_fn(move |req| {
        let control = Rc::clone(&for_requests);
        async move { Ok::<_, Infallible>(route(&control, req).await) }
    });
    let conn = http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut draining = control.draining.get();
    if draining {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = control.drain.notified(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Holds a connection slot; dropping it frees the slot.
struct Slot(Rc<Control>);

impl Drop for Slot {
    fn drop(&mut self) {
        let c = &self.0;
        c.open.set(c.open.get() - 1);
        c.closed.notify_one();
    }
}

/// Asks every connection to finish its request and close, and waits for them up to the
/// grace period.
async fn drain(control: &Control) {
    control.draining.set(true);
    control.drain.notify_waiters();
    let grace = tokio::time::sleep(Duration::from_millis(control.config.shutdown_grace_ms));
    tokio::pin!(grace);
    while control.open.get() > 0 {
        tokio::select! {
            _ = control.closed.notified() => {}
            _ = &mut grace => {
                warn!(connections = control.open.get(), "control port: shutdown grace over");
                return;
            }
        }
    }
}
