//! Settings of the io_uring engine, each with its unit in its name.

use crate::engine::config::{first_failure, ServeConfig};

/// Kernel-side submission polling for one engine: a kernel thread per worker polls the
/// submission queue, so a busy worker submits without syscalls. It costs a CPU while
/// busy, so it is off by default and meant for hosts with cores to spare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqPoll {
    /// How long the kernel thread spins without work before it sleeps.
    pub idle_ms: u32,
    /// CPU for worker *i*'s polling thread is `cpus[i % cpus.len()]`; empty leaves them
    /// unpinned.
    pub cpus: Vec<usize>,
}

/// The io_uring engine's configuration: what both engines share, plus the ring, its
/// buffers and its timer. Sizes are per worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingConfig {
    /// Listener, connection cap, deadlines and HTTP, as for the tokio engine.
    pub serve: ServeConfig,
    /// One worker per entry, pinned to that core id.
    pub cores: Vec<usize>,
    /// Submission queue entries (the completion queue is twice this).
    pub ring_entries: u32,
    /// Buffers in the provided-buffer ring that multishot receives fill; a power of two.
    pub recv_buffers: u16,
    /// Size of each provided receive buffer.
    pub recv_buffer_bytes: u32,
    /// Registered (fixed) buffers responses are written from, each large enough for the
    /// largest response; a connection holds one only while answering.
    pub output_buffers: u32,
    /// Resolution of every deadline in [`ServeConfig`]: deadlines are swept this often.
    pub timer_tick_ms: u64,
    /// Submission polling; `None` to submit with `io_uring_enter`.
    pub sqpoll: Option<SqPoll>,
    /// How answers are written from the output buffers.
    pub write: RingWrite,
}

/// How the io_uring engine writes an answer from its output buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RingWrite {
    /// `IORING_OP_WRITE_FIXED` from the registered buffer (the kernel skips mapping the
    /// user pages per call); `Send` where registration failed.
    #[default]
    Fixed,
    /// `IORING_OP_SEND` from the same buffer, as a plain socket write.
    Send,
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            serve: ServeConfig::default(),
            cores: core_affinity::get_core_ids()
                .map(|ids| ids.into_iter().map(|c| c.id).collect())
                .unwrap_or_else(|| vec![0]),
            ring_entries: 1024,
            recv_buffers: 1024,
            recv_buffer_bytes: 16 * 1024,
            output_buffers: 256,
            timer_tick_ms: 10,
            sqpoll: None,
            write: RingWrite::Fixed,
        }
    }
}

pub use crate::limits::MAX_OUTPUT_BUFFERS;
pub use crate::limits::MAX_RECV_BUFFERS;

impl RingConfig {
    /// Bytes each worker allocates at start for receive and output buffers and HTTP
    /// decoding: the figure to check against the host's memory and memlock limits.
    /// Partial requests are not in it: each connection keeps its own (up to
    /// `max_request_bytes + recv_buffer_bytes` while one is partial, 8 KiB after).
    pub fn memory_per_worker_bytes(&self) -> usize {
        let http = &self.serve.http;
        let recv = usize::from(self.recv_buffers) * self.recv_buffer_bytes as usize;
        let output = self.output_buffers as usize
            * crate::http::max_response_bytes(http.max_response_body_bytes);
        let decode = http.limits.max_body_bytes + http.limits.max_decompressed_body_bytes;
        recv + output + decode + 2 * http.max_response_body_bytes
    }

    /// Checks the settings that the kernel or the engine's bookkeeping cannot accept.
    pub fn validate(&self) -> Result<(), String> {
        self.serve.validate()?;
        let tick = self.timer_tick_ms;
        first_failure(&[
            (!self.cores.is_empty(), "cores must name at least one core"),
            (self.ring_entries >= 8, "ring_entries must be at least 8"),
            (
                self.recv_buffers.is_power_of_two() && self.recv_buffers <= MAX_RECV_BUFFERS,
                "recv_buffers must be a power of two up to 32768",
            ),
            (
                self.recv_buffer_bytes >= 512,
                "recv_buffer_bytes must be at least 512",
            ),
            (
                (1..=MAX_OUTPUT_BUFFERS).contains(&self.output_buffers),
                "output_buffers must be in 1..=16384",
            ),
            (tick >= 1, "timer_tick_ms must be at least 1"),
            (
                self.serve.idle_timeout_ms >= tick
                    && self.serve.first_byte_timeout_ms >= tick
                    && self.serve.request_timeout_ms >= tick,
                "timeouts must be at least one timer tick",
            ),
            (
                self.sqpoll.as_ref().is_none_or(|s| s.idle_ms >= 1),
                "sqpoll.idle_ms must be at least 1",
            ),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_fit_a_worker_memory_budget() {
        let config = RingConfig::default();
        assert_eq!(config.validate(), Ok(()));
        let bytes = config.memory_per_worker_bytes();
        assert!(
            bytes > 32 << 20 && bytes < 64 << 20,
            "{bytes} bytes per worker"
        );
    }

    #[test]
    fn settings_the_kernel_would_refuse_are_caught() {
        let cases = [
            RingConfig {
                recv_buffers: 1000,
                ..RingConfig::default()
            },
            RingConfig {
                output_buffers: MAX_OUTPUT_BUFFERS + 1,
                ..RingConfig::default()
            },
            RingConfig {
                timer_tick_ms: 100,
                serve: ServeConfig {
                    request_timeout_ms: 50,
                    ..ServeConfig::default()
                },
                ..RingConfig::default()
            },
        ];
        for config in cases {
            assert!(config.validate().is_err(), "{config:?}");
        }
    }
}
