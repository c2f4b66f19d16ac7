//! The control thread: tokio + hyper on its own thread, serving two listeners.
//!
//! The **admin listener** (`[server] admin_listen`, loopback by default: `/metrics`
//! shows every budget and spend):
//!
//! | endpoint | answer |
//! |---|---|
//! | `GET /metrics` | the [`Registry`] plus the control port's and ledger's counters, Prometheus text |
//! | `GET /health` | 200 while the process runs |
//! | `GET /ready` | 200 once [`Readiness`] is set (every worker listens, config loaded), 503 before |
//! | `POST /reload` | needs the admin token; runs the reload callback: 200 and its one-line summary, or 400 and its error (nothing changed) |
//! | `POST /campaign/{id}/resume` | needs the admin token; clears the campaign's spend-rate breaker |
//! | `GET /supply` | every tracked ads.txt, app-ads.txt and sellers.json: source, age, entries, last error (JSON) |
//!
//! The **notice listener** (`[notice] listen`), the one exchanges reach, serves only
//! `GET /notice/win`, `/notice/bill` and `/notice/loss`: it verifies the signed query and
//! settles or releases through the ledger (204, or 400 and a counter). Each listener has
//! its own connection slots and timeouts, and the notice listener caps the connections
//! of any one source address, so a flood on one listener, or from one source, never
//! takes the slots the others need.
//!
//! The control thread owns the spend [`Ledger`](crate::money::ledger::Ledger): it drains the
//! workers' [`LedgerInbox`](crate::money::ledger::LedgerInbox) and expires reservations every
//! `ledger_tick_ms` and before each notice. Nothing here is on the bid path; a worker
//! never waits for this thread (see [`crate::metrics`] for how histograms cross over).
//!
//! The thread also runs the supply fetcher ([`crate::supply::fetch`]): ads.txt and
//! sellers.json over HTTP, never on the bid path.
//!
//! Everything is bounded: connections per listener (`max_connections`, 503 past it) and
//! per source on the notice listener, request heads (16 KiB, 431 past it), the wait for
//! a request head, idle keep-alive included (`header_read_timeout_ms`), the `/reload`
//! body (`max_reload_body_bytes`, 413) and the wait for it (`body_read_timeout_ms`, 408).
//!
//! Files: `server` (thread, accept loops, ledger tick, drain), `door` (one listener's
//! connection slots), `routes` (one function per endpoint), `desk` (the ledger's owner
//! and notice counters), `state` (what the tasks share).

mod desk;
mod door;
mod registry;
mod routes;
mod server;
mod state;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use thiserror::Error;
use tokio::sync::watch;
use tracing::{info, warn};

pub use desk::Notices;

use crate::clock::Clock;
use crate::limits::CONTROL_LISTEN_BACKLOG;
use crate::supply::SupplyStore;
pub use registry::{DecisionSource, Registry};
pub use routes::NOTICE_PATH_PREFIX;

/// The reload callback: given the `/reload` request body (often empty: reload the
/// configured file), applies a new configuration and returns a one-line summary, or
/// returns why it refused, having changed nothing. Runs on a blocking thread, one call
/// at a time.
pub type ReloadFn = Box<dyn FnMut(&[u8]) -> Result<String, String> + Send>;

/// Settings of the control port, each with its unit in its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlConfig {
    /// The admin address to bind; loopback by default.
    pub listen_addr: SocketAddr,
    /// Admin connections served at once; past this a client gets 503 and is closed.
    pub max_connections: u32,
    /// How long a client may take to send a request head, including the wait for the
    /// next request on a keep-alive connection; then the connection is closed.
    pub header_read_timeout_ms: u64,
    /// How long a `/reload` body may take to arrive (408 after).
    pub body_read_timeout_ms: u64,
    /// Largest `/reload` body accepted (413 above).
    pub max_reload_body_bytes: usize,
    /// How often the ledger inbox is drained and overdue reservations expire.
    pub ledger_tick_ms: u64,
    /// On shutdown, requests in progress get this long to finish.
    pub shutdown_grace_ms: u64,
    /// The file holding the bearer token that `POST /reload` and
    /// `/campaign/{id}/resume` need (read at each call, so it can be rotated); `None`
    /// refuses both (SIGHUP still reloads).
    pub admin_token_file: Option<PathBuf>,
    /// The listener exchanges send win, billing and loss notices to.
    pub notice: NoticeListenerConfig,
}

/// The notice listener's address and bounds: sized for exchange traffic, apart from
/// the admin listener's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeListenerConfig {
    /// The address to bind.
    pub listen_addr: SocketAddr,
    /// Connections served at once; past this a client gets 503 and is closed.
    pub max_connections: u32,
    /// Connections one source address may hold at once; past this its new ones get
    /// 503, so one noisy source cannot take every slot.
    pub max_connections_per_source: u32,
    /// How long a client may take to send a request head, including the wait for the
    /// next request on a keep-alive connection.
    pub header_read_timeout_ms: u64,
}

impl Default for NoticeListenerConfig {
    fn default() -> Self {
        NoticeListenerConfig {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 9091)),
            max_connections: 4_096,
            max_connections_per_source: 256,
            header_read_timeout_ms: 5_000,
        }
    }
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 9100)),
            max_connections: 64,
            header_read_timeout_ms: 5_000,
            body_read_timeout_ms: 5_000,
            max_reload_body_bytes: 64 * 1024,
            ledger_tick_ms: 10,
            shutdown_grace_ms: 1_000,
            admin_token_file: None,
            notice: NoticeListenerConfig::default(),
        }
    }
}

impl ControlConfig {
    /// Checks what the control port cannot run with; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        let n = &self.notice;
        let checks: [(bool, &str); 6] = [
            (
                self.max_connections >= 1,
                "max_connections must be at least 1",
            ),
            (
                self.header_read_timeout_ms >= 1 && self.body_read_timeout_ms >= 1,
                "header_read_timeout_ms and body_read_timeout_ms must be at least 1",
            ),
            (
                self.max_reload_body_bytes >= 1,
                "max_reload_body_bytes must be at least 1",
            ),
            (
                self.ledger_tick_ms >= 1,
                "ledger_tick_ms must be at least 1",
            ),
            (
                n.max_connections >= 1
                    && (1..=n.max_connections).contains(&n.max_connections_per_source),
                "notice max_connections must be at least 1 and max_connections_per_source within 1..=max_connections",
            ),
            (
                n.header_read_timeout_ms >= 1,
                "notice header_read_timeout_ms must be at least 1",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, why)) => Err((*why).to_owned()),
            None => Ok(()),
        }
    }
}

/// Whether the bidder takes traffic: set by whoever starts the engines once every
/// worker listens and the configuration is loaded; `/ready` answers from it. Clones
/// share one flag. It also counts the control thread's ledger ticks, so the service
/// manager's watchdog can tell a control thread that still works from a stuck one.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    ready: Arc<AtomicBool>,
    control_ticks: Arc<AtomicU64>,
}

impl Readiness {
    /// A flag that starts not ready.
    pub fn new() -> Readiness {
        Readiness::default()
    }

    /// Sets or clears readiness (clear it when draining for shutdown).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// The current state.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Called by the control thread each time it has drained the ledger inbox.
    pub fn control_ticked(&self) {
        self.control_ticks.fetch_add(1, Ordering::Release);
    }

    /// How many ledger ticks the control thread has completed.
    pub fn control_ticks(&self) -> u64 {
        self.control_ticks.load(Ordering::Acquire)
    }
}

/// What the control port serves, handed over at start.
pub struct ControlParts {
    /// What `/metrics` scrapes.
    pub registry: Arc<Registry>,
    /// What `/ready` answers from.
    pub readiness: Readiness,
    /// What `/reload` runs.
    pub reload: ReloadFn,
    /// The ledger and what notices need; owned by the control thread from now on.
    pub notices: Notices,
    /// The supply store its fetcher keeps fresh (and `/supply` shows), with the
    /// calendar file ages are measured on; `None`: no fetcher.
    pub supply: Option<(Arc<SupplyStore>, Clock)>,
    /// Fleet mode: the task that leases the day's budgets from Redis (on this thread,
    /// never on the bid path), and where it reports; `None`: a single host.
    pub fleet: Option<(crate::fleet::Fleet, Arc<crate::fleet::FleetStatus>)>,
}

/// Why the control port did not start, or did not stop cleanly.
#[derive(Debug, Error)]
pub enum ControlError {
    /// A setting the control port cannot run with.
    #[error("control port config: {0}")]
    Config(String),
    /// A system call failed during start.
    #[error("control port: {what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The control thread panicked.
    #[error("control thread panicked")]
    Panicked,
}

/// The running control port. Dropping it stops and joins the thread, like
/// [`ControlPort::shutdown`] without the error report.
pub struct ControlPort {
    thread: Option<JoinHandle<()>>,
    stop: watch::Sender<bool>,
    local_addr: SocketAddr,
    notice_addr: SocketAddr,
}

/// Binds `addr` non-blocking with a backlog that holds a burst of exchange
/// connections (not `SO_REUSEPORT`: a second bidder on the port must fail to start);
/// errors name the listener.
fn bind(addr: SocketAddr, which: &'static str) -> Result<(TcpListener, SocketAddr), ControlError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let listen = || -> io::Result<TcpListener> {
        // socket2 opens with SOCK_CLOEXEC: a process spawned later must not inherit it.
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(CONTROL_LISTEN_BACKLOG)?;
        Ok(socket.into())
    };
    let listener = listen().map_err(|source| ControlError::Io {
        what: which,
        source,
    })?;
    let bound = listener.local_addr().map_err(|source| ControlError::Io {
        what: "reading a listener's address",
        source,
    })?;
    Ok((listener, bound))
}

impl ControlPort {
    /// Binds the admin and notice addresses and starts the control thread; returns once
    /// it accepts on both.
    pub fn start(config: ControlConfig, parts: ControlParts) -> Result<ControlPort, ControlError> {
        config.validate().map_err(ControlError::Config)?;
        let (admin, local_addr) = bind(config.listen_addr, "binding the admin listener")?;
        let (notice, notice_addr) = bind(config.notice.listen_addr, "binding the notice listener")?;
        let (stop, stop_rx) = watch::channel(false);
        let (ready_tx, ready_rx) = mpsc::channel();
        let listeners = server::Listeners { admin, notice };
        let thread = std::thread::Builder::new()
            .name("control".to_owned())
            .spawn(move || server::run(config, parts, listeners, stop_rx, ready_tx))
            .map_err(|source| ControlError::Io {
                what: "spawning the control thread",
                source,
            })?;
        let mut port = ControlPort {
            thread: Some(thread),
            stop,
            local_addr,
            notice_addr,
        };
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(source)) => {
                return Err(ControlError::Io {
                    what: "starting the runtime",
                    source,
                })
            }
            Err(_) => return Err(port.stop_and_join().err().unwrap_or(ControlError::Panicked)),
        }
        if !local_addr.ip().is_loopback() {
            warn!(
                addr = %local_addr,
                "the admin listener is not on loopback: /metrics shows every budget and spend to whoever reaches it; keep it on a private network"
            );
        }
        info!(admin = %local_addr, notices = %notice_addr, "control port listening");
        Ok(port)
    }

    /// The bound admin address (with the chosen port if 0 was configured).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The bound notice address (with the chosen port if 0 was configured).
    pub fn notice_addr(&self) -> SocketAddr {
        self.notice_addr
    }

    /// Stops accepting, lets requests in progress finish within `shutdown_grace_ms`,
    /// and joins the control thread.
    pub fn shutdown(mut self) -> Result<(), ControlError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), ControlError> {
        self.stop.send_replace(true);
        match self.thread.take().map(JoinHandle::join) {
            Some(Err(_)) => Err(ControlError::Panicked),
            _ => Ok(()),
        }
    }
}

impl Drop for ControlPort {
    fn drop(&mut self) {
        if let Err(e) = self.stop_and_join() {
            warn!(error = %e, "control port stopped with an error");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_field() {
        assert_eq!(ControlConfig::default().validate(), Ok(()));
        let cases = [
            (
                ControlConfig {
                    max_connections: 0,
                    ..ControlConfig::default()
                },
                "max_connections",
            ),
            (
                ControlConfig {
                    body_read_timeout_ms: 0,
                    ..ControlConfig::default()
                },
                "body_read_timeout_ms",
            ),
            (
                ControlConfig {
                    max_reload_body_bytes: 0,
                    ..ControlConfig::default()
                },
                "max_reload_body_bytes",
            ),
            (
                ControlConfig {
                    ledger_tick_ms: 0,
                    ..ControlConfig::default()
                },
                "ledger_tick_ms",
            ),
            (
                ControlConfig {
                    notice: NoticeListenerConfig {
                        max_connections: 10,
                        max_connections_per_source: 11,
                        ..NoticeListenerConfig::default()
                    },
                    ..ControlConfig::default()
                },
                "max_connections_per_source",
            ),
        ];
        for (config, field) in cases {
            let err = config.validate().unwrap_err();
            assert!(err.contains(field), "{err}");
        }
    }

    #[test]
    fn readiness_clones_share_one_flag() {
        let a = Readiness::new();
        let b = a.clone();
        assert!(!b.is_ready());
        a.set_ready(true);
        assert!(b.is_ready());
    }
}
