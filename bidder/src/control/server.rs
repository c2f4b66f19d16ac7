//! The control thread: a current-thread runtime running one accept loop per listener
//! (admin, notices), one hyper HTTP/1.1 connection task per client (bounded at each
//! listener's [`Door`]), and the ledger tick.
//!
//! Everything runs on this one thread, so the ledger needs no lock: connection tasks
//! borrow the [`NoticeDesk`] between awaits only.

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, TcpListener as StdListener};
use std::rc::Rc;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::LocalSet;
use tracing::warn;

use super::desk::NoticeDesk;
use super::door::{Door, Listener};
use super::routes::route;
use super::state::Control;
use super::{ControlConfig, ControlParts};
use crate::clock::Clock;
use crate::limits::MAX_BLOCKING_THREADS;
use crate::supply::SupplyStore;

/// After a failed accept the loop waits this long instead of spinning on the error.
const ACCEPT_ERROR_BACKOFF_MS: u64 = 10;

/// The answer to a client refused at the door.
const BUSY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 5\r\nconnection: close\r\n\r\nbusy\n";

/// The fleet task's parts: settings, the budgets it leases into, the calendar, status.
type FleetParts = (
    crate::fleet::Fleet,
    Arc<crate::money::budget::Budgets>,
    Clock,
    Arc<crate::fleet::FleetStatus>,
);

/// The two bound listeners the control thread serves.
pub(super) struct Listeners {
    pub admin: StdListener,
    pub notice: StdListener,
}

/// Runs the control thread: builds the runtime, reports readiness on `ready`, serves
/// until `stop`, then lets open connections finish within the grace period.
pub(super) fn run(
    config: ControlConfig,
    parts: ControlParts,
    listeners: Listeners,
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
    let notice = &config.notice;
    let fleet = parts.fleet.map(|(fleet, status)| {
        let n = &parts.notices;
        (fleet, Arc::clone(&n.budgets), n.clock.clone(), status)
    });
    let control = Rc::new(Control {
        registry: parts.registry,
        readiness: parts.readiness,
        reload: Arc::new(Mutex::new(parts.reload)),
        desk: RefCell::new(NoticeDesk::new(parts.notices)),
        supply: parts.supply.as_ref().map(|(store, _)| Arc::clone(store)),
        reloads: Default::default(),
        unauthorized: Cell::new(0),
        admin: Door::new(
            Listener::Admin,
            config.max_connections,
            None,
            config.header_read_timeout_ms,
        ),
        notices: Door::new(
            Listener::Notice,
            notice.max_connections,
            Some(notice.max_connections_per_source),
            notice.header_read_timeout_ms,
        ),
        config,
        draining: Cell::new(false),
        drain: Notify::new(),
        closed: Notify::new(),
    });
    LocalSet::new().block_on(
        &runtime,
        serve(control, listeners, stop, ready, parts.supply, fleet),
    );
}

async fn serve(
    control: Rc<Control>,
    listeners: Listeners,
    stop: watch::Receiver<bool>,
    ready: mpsc::Sender<io::Result<()>>,
    supply: Option<(Arc<SupplyStore>, Clock)>,
    fleet: Option<FleetParts>,
) {
    let bound = TcpListener::from_std(listeners.admin)
        .and_then(|admin| Ok((admin, TcpListener::from_std(listeners.notice)?)));
    let (admin, notice) = match bound {
        Ok(pair) => pair,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    drop(ready);
    tokio::task::spawn_local(tick_ledger(Rc::clone(&control)));
    if let Some((store, clock)) = supply {
        tokio::task::spawn_local(crate::supply::fetch::run(store, clock, stop.clone()));
    }
    let fleet = fleet.map(|(fleet, budgets, clock, status)| {
        tokio::task::spawn_local(crate::fleet::run(
            fleet,
            budgets,
            clock,
            status,
            stop.clone(),
        ))
    });
    // One task per listener: a burst of accepts on one never delays the other's.
    let admin = tokio::task::spawn_local(accept_loop(
        Rc::clone(&control),
        Listener::Admin,
        admin,
        stop.clone(),
    ));
    let notice = tokio::task::spawn_local(accept_loop(
        Rc::clone(&control),
        Listener::Notice,
        notice,
        stop,
    ));
    let _ = admin.await;
    let _ = notice.await;
    if let Some(fleet) = fleet {
        // Its last round gives back what no bid holds (bounded).
        let _ = fleet.await;
    }
    drain(&control).await;
}

/// Accepts on `listener` until `stop`, then drops it (new clients are refused by the
/// kernel from then on).
async fn accept_loop(
    control: Rc<Control>,
    which: Listener,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => admit(&control, which, stream, peer.ip()),
                Err(_) => tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_BACKOFF_MS)).await,
            },
        }
    }
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

fn admit(control: &Rc<Control>, which: Listener, stream: TcpStream, source: IpAddr) {
    if control.door(which).admit(source).is_err() {
        // A fresh socket's send buffer is empty: this write cannot block.
        let _ = stream.try_write(BUSY);
        return;
    }
    let control = Rc::clone(control);
    tokio::task::spawn_local(async move {
        let _slot = Slot {
            control: Rc::clone(&control),
            which,
            source,
        };
        serve_connection(&control, which, stream).await;
    });
}

async fn serve_connection(control: &Rc<Control>, which: Listener, stream: TcpStream) {
    let for_requests = Rc::clone(control);
    let service = service_fn(move |req| {
        let control = Rc::clone(&for_requests);
        async move { Ok::<_, Infallible>(route(&control, which, req).await) }
    });
    let conn = control
        .door(which)
        .http
        .serve_connection(TokioIo::new(stream), service);
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

/// Holds a connection slot at its listener's door; dropping it frees the slot.
struct Slot {
    control: Rc<Control>,
    which: Listener,
    source: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.control.door(self.which).leave(self.source);
        self.control.closed.notify_one();
    }
}

/// Asks every connection to finish its request and close, and waits for them up to the
/// grace period.
async fn drain(control: &Control) {
    control.draining.set(true);
    control.drain.notify_waiters();
    let grace = tokio::time::sleep(Duration::from_millis(control.config.shutdown_grace_ms));
    tokio::pin!(grace);
    while control.open() > 0 {
        tokio::select! {
            _ = control.closed.notified() => {}
            _ = &mut grace => {
                warn!(connections = control.open(), "control port: shutdown grace over");
                return;
            }
        }
    }
}
