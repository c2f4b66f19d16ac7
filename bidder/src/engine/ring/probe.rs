//! What the running kernel's io_uring can do, and the ring we build from it.
//!
//! Preferred setup first, then fallbacks, each logged with what was turned off; the
//! engine only refuses to start (so the caller can use the tokio engine) when something
//! it cannot work without is missing.

use std::io;

use io_uring::{opcode, register::Probe, types::CancelBuilder, IoUring};
use tracing::{info, warn};

use super::config::RingConfig;
use super::EngineError;

/// The features a worker's ring ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RingFeatures {
    /// `IORING_SETUP_SINGLE_ISSUER`: only the worker thread submits.
    pub single_issuer: bool,
    /// `IORING_SETUP_DEFER_TASKRUN`: completion work runs when we wait, not as interrupts.
    pub defer_taskrun: bool,
    /// `IORING_SETUP_SQPOLL`: a kernel thread polls the submission queue.
    pub sqpoll: bool,
    /// Multishot accept (else one accept per connection, re-armed).
    pub multishot_accept: bool,
    /// Multishot receive (else one receive per completion, re-armed).
    pub multishot_recv: bool,
    /// Responses written from registered buffers (else plain sends).
    pub fixed_buffers: bool,
}

impl RingFeatures {
    /// Names of the preferred features this ring runs without, for logs and metrics.
    pub fn missing(&self, sqpoll_wanted: bool) -> Vec<&'static str> {
        let wanted = [
            (self.single_issuer, "single_issuer"),
            (self.defer_taskrun || self.sqpoll, "defer_taskrun"),
            (self.sqpoll || !sqpoll_wanted, "sqpoll"),
            (self.multishot_accept, "multishot_accept"),
            (self.multishot_recv, "multishot_recv"),
            (self.fixed_buffers, "fixed_buffers"),
        ];
        wanted
            .iter()
            .filter(|(have, _)| !have)
            .map(|(_, name)| *name)
            .collect()
    }
}

/// Opcodes the engine cannot work without.
const REQUIRED_OPCODES: [(u8, &str); 6] = [
    (opcode::Accept::CODE, "accept"),
    (opcode::Recv::CODE, "recv"),
    (opcode::Send::CODE, "send"),
    (opcode::Timeout::CODE, "timeout"),
    (opcode::Read::CODE, "read"),
    (opcode::AsyncCancel::CODE, "async_cancel"),
];

/// Builds worker `worker`'s ring: SQPOLL if configured, else SINGLE_ISSUER |
/// DEFER_TASKRUN, falling back step by step to a plain ring.
pub(crate) fn build_ring(
    config: &RingConfig,
    worker: usize,
) -> Result<(IoUring, RingFeatures), EngineError> {
    let entries = config.ring_entries;
    let mut features = RingFeatures::default();
    let ring = sqpoll_ring(config, worker, &mut features).or_else(|| {
        let mut b = IoUring::builder();
        b.setup_cqsize(entries * 2)
            .setup_single_issuer()
            .setup_defer_taskrun();
        match b.build(entries) {
            Ok(ring) => {
                features.single_issuer = true;
                features.defer_taskrun = true;
                return Some(ring);
            }
            Err(e) => warn!(worker, error = %e, "io_uring: DEFER_TASKRUN unavailable, turned off"),
        }
        let mut b = IoUring::builder();
        b.setup_cqsize(entries * 2).setup_single_issuer();
        match b.build(entries) {
            Ok(ring) => {
                features.single_issuer = true;
                Some(ring)
            }
            Err(e) => {
                warn!(worker, error = %e, "io_uring: SINGLE_ISSUER unavailable, turned off");
                None
            }
        }
    });
    let ring = match ring {
        Some(ring) => ring,
        None => IoUring::builder()
            .setup_cqsize(entries * 2)
            .build(entries)
            .map_err(|e| EngineError::Unsupported(format!("io_uring_setup failed: {e}")))?,
    };
    check_opcodes(&ring)?;
    // Multishot receive and synchronous cancellation both arrived in Linux 6.0: a kernel
    // that knows the cancel register op (answering "no match" rather than "invalid")
    // knows multishot receive. Multishot accept (5.19) predates both, and provided buffer
    // rings (5.19, required) imply it.
    features.multishot_accept = true;
    features.multishot_recv = knows_sync_cancel(&ring);
    Ok((ring, features))
}

fn sqpoll_ring(config: &RingConfig, worker: usize, features: &mut RingFeatures) -> Option<IoUring> {
    let sq = config.sqpoll.as_ref()?;
    let mut b = IoUring::builder();
    b.setup_cqsize(config.ring_entries * 2)
        .setup_sqpoll(sq.idle_ms)
        .setup_single_issuer();
    if !sq.cpus.is_empty() {
        b.setup_sqpoll_cpu(sq.cpus[worker % sq.cpus.len()] as u32);
    }
    match b.build(config.ring_entries) {
        Ok(ring) if ring.params().is_feature_sqpoll_nonfixed() => {
            features.sqpoll = true;
            features.single_issuer = true;
            info!(worker, idle_ms = sq.idle_ms, "io_uring: SQPOLL on");
            Some(ring)
        }
        Ok(_) => {
            warn!(
                worker,
                "io_uring: SQPOLL needs registered files on this kernel, turned off"
            );
            None
        }
        Err(e) => {
            warn!(worker, error = %e, "io_uring: SQPOLL unavailable, turned off");
            None
        }
    }
}

fn check_opcodes(ring: &IoUring) -> Result<(), EngineError> {
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| EngineError::Unsupported(format!("io_uring probe failed: {e}")))?;
    match REQUIRED_OPCODES
        .iter()
        .find(|(code, _)| !probe.is_supported(*code))
    {
        Some((_, name)) => Err(EngineError::Unsupported(format!(
            "io_uring lacks the {name} opcode"
        ))),
        None => Ok(()),
    }
}

fn knows_sync_cancel(ring: &IoUring) -> bool {
    let no_such_request = CancelBuilder::user_data(u64::MAX);
    match ring.submitter().register_sync_cancel(None, no_such_request) {
        Ok(()) => true,
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}
