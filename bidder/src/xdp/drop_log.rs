//! The program's aya-log records (one per CPU per `log_interval_ms` at most, about
//! drops) forwarded into the bidder's `tracing` log, target `bidder::xdp::program`.
//!
//! aya-log reads a ring buffer that must be drained by someone; a small thread of its
//! own waits on it with `poll(2)` (bounded, so it notices the stop flag) and flushes
//! what arrived. Nothing on the bid path touches it.

use std::os::fd::AsRawFd;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use aya::Ebpf;
use aya_log::EbpfLogger;

/// Longest the thread sleeps in `poll(2)` before it looks at the stop flag, ms.
const POLL_TIMEOUT_MS: i32 = 200;

/// The `log` facade aya-log writes to, turned into `tracing` events.
struct IntoTracing;

impl log::Log for IntoTracing {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let message = record.args();
        match record.level() {
            log::Level::Error => tracing::error!(target: "bidder::xdp::program", "{message}"),
            log::Level::Warn => tracing::warn!(target: "bidder::xdp::program", "{message}"),
            log::Level::Info => tracing::info!(target: "bidder::xdp::program", "{message}"),
            log::Level::Debug => tracing::debug!(target: "bidder::xdp::program", "{message}"),
            log::Level::Trace => tracing::trace!(target: "bidder::xdp::program", "{message}"),
        }
    }

    fn flush(&self) {}
}

/// The forwarding thread; stopped and joined on drop.
pub(crate) struct DropLog {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DropLog {
    /// Takes the program's log ring buffer out of `ebpf` and starts forwarding.
    pub(crate) fn start(ebpf: &mut Ebpf) -> Result<DropLog, String> {
        let mut logger =
            EbpfLogger::init_with_logger(ebpf, IntoTracing).map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("xdp-log".into())
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    let mut fd = libc::pollfd {
                        fd: logger.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd, owned by this frame, for the call.
                    let ready = unsafe { libc::poll(&mut fd, 1, POLL_TIMEOUT_MS) };
                    // aya-log panics on a record it cannot parse; stop forwarding
                    // then, and say so once, rather than die silently.
                    let flushed = ready <= 0
                        || std::panic::catch_unwind(AssertUnwindSafe(|| logger.flush())).is_ok();
                    if !flushed {
                        tracing::error!(
                            "xdp drop records no longer forwarded: one could not be parsed"
                        );
                        return;
                    }
                }
            })
            .map_err(|e| format!("spawning the xdp-log thread: {e}"))?;
        Ok(DropLog {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for DropLog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
