//! The service manager's side of the bidder (systemd `Type=notify`, sd_notify(3)):
//! `READY=1` once `/ready` would say ready, `WATCHDOG=1` while the control thread ticks
//! and every worker lives, `STOPPING=1` when a stop begins, `STATUS=` after a reload.
//!
//! Without `NOTIFY_SOCKET` (run by hand, in tests) every call is a no-op, so the daemon
//! calls these unconditionally. A send that fails is logged once and never stops the
//! bidder: serving bids matters more than telling systemd about it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use sd_notify::NotifyState;

use crate::control::Readiness;
use crate::engine::Liveness;

/// Pings per watchdog period: systemd kills after one silent period, so ping at least
/// twice per period (sd_watchdog_enabled(3) recommends half).
const WATCHDOG_PINGS_PER_PERIOD: u32 = 2;

/// Tells the service manager that start-up is complete.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells the service manager a stop has begun (requests in flight are finishing).
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// A one-line state shown by `systemctl status`.
pub fn status(line: &str) {
    send(&[NotifyState::Status(line)]);
}

fn send(states: &[NotifyState]) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if let Err(e) = sd_notify::notify(false, states) {
        if !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!("could not notify the service manager (NOTIFY_SOCKET): {e}");
        }
    }
}

/// Whether this round's watchdog ping is deserved: every worker runs, and the control
/// thread has completed a ledger tick since the last round (a stuck control thread
/// means notices are not settled and reservations not expired: restart it).
fn deserves_ping(workers_alive: bool, control_ticks: u64, ticks_at_last_round: u64) -> bool {
    workers_alive && control_ticks > ticks_at_last_round
}

/// The thread that feeds the service manager's watchdog (`WatchdogSec=` in the unit).
pub struct Watchdog {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Watchdog {
    /// Starts feeding the watchdog if the service manager asked for one
    /// (`WATCHDOG_USEC` for this PID); `None` otherwise.
    pub fn start(readiness: Readiness, workers: Liveness) -> Option<Watchdog> {
        let mut period_usec = 0;
        if !sd_notify::watchdog_enabled(false, &mut period_usec) || period_usec == 0 {
            return None;
        }
        let round = Duration::from_micros(period_usec) / WATCHDOG_PINGS_PER_PERIOD;
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || feed(round, &readiness, &workers, &stopped))
            .ok()?;
        tracing::info!(
            period_ms = period_usec / 1000,
            "feeding the service manager's watchdog"
        );
        Some(Watchdog { stop, thread })
    }

    /// Stops feeding (the caller is stopping the bidder and has sent `STOPPING=1`).
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

fn feed(round: Duration, readiness: &Readiness, workers: &Liveness, stopped: &mpsc::Receiver<()>) {
    let mut last_ticks = readiness.control_ticks();
    let mut withheld = false;
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(round) {
        let ticks = readiness.control_ticks();
        let alive = workers.all_alive();
        if deserves_ping(alive, ticks, last_ticks) {
            send(&[NotifyState::Watchdog]);
            withheld = false;
        } else if !withheld {
            withheld = true;
            tracing::error!(
                workers_alive = alive,
                control_ticking = ticks > last_ticks,
                "withholding the watchdog ping: a worker has exited or the control thread \
                 is stuck; the service manager will restart the bidder"
            );
        }
        last_ticks = ticks;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ping_needs_live_workers_and_a_ticking_control_thread() {
        assert!(deserves_ping(true, 5, 4));
        assert!(
            !deserves_ping(false, 5, 4),
            "a dead worker withholds the ping"
        );
        assert!(
            !deserves_ping(true, 4, 4),
            "a control thread that did not tick"
        );
    }
}
