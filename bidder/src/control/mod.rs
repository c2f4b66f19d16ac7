//! The control port: tokio + hyper on its own thread, bound to the admin address.
//!
//! | endpoint | answer |
//! |---|---|
//! | `GET /metrics` | the [`Registry`] plus the control port's and ledger's counters, Prometheus text |
//! | `GET /health` | 200 while the process runs |
//! | `GET /ready` | 200 once [`Readiness`] is set (every worker listens, config loaded), 503 before |
//! | `POST /reload` | runs the reload callback: 200 and its one-line summary, or 400 and its error (nothing changed) |
//! | `GET /notice/win`, `/notice/bill`, `/notice/loss` | verifies the signed query, settles or releases through the ledger: 204, or 400 and a counter |
//!
//! The control thread owns the spend [`Ledger`](crate::money::ledger::Ledger): it drains the
//! workers' [`LedgerInbox`](crate::money::ledger::LedgerInbox) and expires reservations every
//! `ledger_tick_ms` and before each notice. Nothing here is on the bid path; a worker
//! never waits for this thread (see [`crate::metrics`] for how histograms cross over).
//!
//! Everything is bounded: connections (`max_connections`, 503 past it), request heads
//! (16 KiB, 431 past it), the wait for a request head, idle keep-alive included
//! (`header_read_timeout_ms`), the `/reload` body (`max_reload_body_bytes`, 413) and
//! the wait for it (`body_read_timeout_ms`, 408).
//!
//! `/reload` is unauthenticated: bind the control port to an admin network or loopback.
//! Exchanges must reach the notice paths, so put a proxy in front that exposes only
//! `/notice/` if the admin address is not reachable from them.
//!
//! Files: `server` (thread, accept loop, connection bounds, ledger tick), `routes` (one
//! function per endpoint), `notices` (the ledger's owner and notice counters).

mod desk;
mod registry;
mod routes;
mod server;
mod state;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use thiserror::Error;
use tokio::sync::watch;
use tracing::{info, warn};

pub use desk::Notices;
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
    /// Connections served at once; past this a client gets 503 and is closed.
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
        }
    }
}

impl ControlConfig {
    /// Checks what the control port cannot run with; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        let checks: [(bool, &str); 4] = [
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
}

impl ControlPort {
    /// Binds the admin address and starts the control thread; returns once it accepts.
    pub fn start(config: ControlConfig, parts: ControlParts) -> Result<ControlPort, ControlError> {
        config.validate().map_err(ControlError::Config)?;
        let io_err = |what| move |source| ControlError::Io { what, source };
        let listener = TcpListener::bind(config.listen_addr).map_err(io_err("binding"))?;
        listener
            .set_nonblocking(true)
            .map_err(io_err("setting the listener non-blocking"))?;
        let local_addr = listener
            .local_addr()
            .map_err(io_err("reading the address"))?;
        let (stop, stop_rx) = watch::channel(false);
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("control".to_owned())
            .spawn(move || server::run(config, parts, listener, stop_rx, ready_tx))
            .map_err(io_err("spawning the control thread"))?;
        let mut port = ControlPort {
            thread: Some(thread),
            stop,
            local_addr,
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
        info!(addr = %local_addr, "control port listening");
        Ok(port)
    }

    /// The bound admin address (with the chosen port if 0 was configured).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
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
