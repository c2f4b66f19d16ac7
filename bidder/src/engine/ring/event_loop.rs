//! One worker: a thread, its ring, its listener, its connection slots, its buffers.
//!
//! The loop waits for completions and handles each in order: accepts open slots,
//! receives feed [`Server::serve_one`], writes drain output buffers, a periodic tick
//! sweeps deadlines, and the wake eventfd starts shutdown. Nothing is shared with other
//! workers except the service and the stats this worker writes.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use tracing::{debug, warn};

use super::buffers::{BufRing, Pool, RECV_BUFFER_GROUP};
use super::config::{RingConfig, RingWrite};
use super::conn::{token, Conn, Held, Phase};
use super::probe::RingFeatures;
use super::socket;
use super::stats::WorkerStats;
use crate::clock::monotonic_now;
use crate::http::{canned, ConnectionHeader, OutBuf, Server, Service, Status, Step};
use crate::metrics::{LatencyRecorder, WorkerMetrics};

/// Most completions handled per loop turn before submitting again.
const COMPLETIONS_PER_TURN: usize = 256;
/// Bound on waiting for the last operations to complete when the worker ends.
const QUIESCE_BOUND_MS: u64 = 2_000;

/// What a worker needs from the engine.
pub(crate) struct EventLoopSetup<S> {
    pub(crate) index: usize,
    pub(crate) config: RingConfig,
    pub(crate) server: Server<S>,
    pub(crate) listener: OwnedFd,
    pub(crate) wake: Arc<OwnedFd>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) stats: Arc<WorkerStats>,
    pub(crate) metrics: Arc<WorkerMetrics>,
}

/// Timeouts in effect, converted once.
struct Timeouts {
    idle: Duration,
    first_byte: Duration,
    request: Duration,
    linger: Duration,
    grace: Duration,
}

pub(crate) struct EventLoop<S> {
    // Declared first so it is dropped first; by then `quiesce` has made sure no
    // operation still refers to the memory below.
    ring: IoUring,
    features: RingFeatures,
    /// Write with `WriteFixed` (registered buffers, and configured) or `Send`.
    write_fixed: bool,
    index: usize,
    server: Server<S>,
    stats: Arc<WorkerStats>,
    metrics: Arc<WorkerMetrics>,
    recorder: LatencyRecorder,
    stop: Arc<AtomicBool>,
    listener: OwnedFd,
    wake: Arc<OwnedFd>,
    wake_buf: Box<u64>,
    tick: Box<types::Timespec>,
    timeouts: Timeouts,
    conns: Vec<Conn>,
    free_slots: Vec<u32>,
    open: Vec<u32>,
    out_waiters: VecDeque<(u32, u32)>,
    /// Connections whose receive ended for lack of provided buffers (ENOBUFS); re-armed
    /// after a batch of completions once the ring has a buffer, not in a spin.
    starved: Vec<(u32, u32)>,
    recv_ring: BufRing,
    /// Most bytes one connection may buffer: a whole request plus one receive.
    max_input_bytes: usize,
    outputs: Pool,
    recv_buffer_bytes: u32,
    /// Operations submitted whose final completion has not arrived.
    in_flight: usize,
    accepting: bool,
    stopping_since: Option<Instant>,
    completions: Vec<(u64, i32, u32)>,
}

impl<S: Service> EventLoop<S> {
    /// Builds the ring and everything the kernel will touch; runs on the worker thread
    /// (SINGLE_ISSUER binds the ring to its creator).
    pub(crate) fn new(setup: EventLoopSetup<S>) -> Result<Self, crate::engine::EngineError> {
        let EventLoopSetup {
            index,
            config,
            server,
            listener,
            wake,
            stop,
            stats,
            metrics,
        } = setup;
        let (ring, mut features) = super::probe::build_ring(&config, index)?;
        let io_err = |what: &'static str| {
            move |source: io::Error| crate::engine::EngineError::Io { what, source }
        };
        let recv_ring = BufRing::new(config.recv_buffers, config.recv_buffer_bytes)
            .map_err(io_err("mapping the receive buffer ring"))?;
        recv_ring.register(&ring.submitter()).map_err(|e| {
            crate::engine::EngineError::Unsupported(format!(
                "provided buffer rings (Linux 5.19+): {e}"
            ))
        })?;
        let max_input_bytes =
            server.limits().max_request_bytes() + config.recv_buffer_bytes as usize;
        let outputs = Pool::new(config.output_buffers, server.min_out_bytes());
        // SAFETY: the iovecs describe `outputs`' buffers, which live in this worker and
        // are dropped only after `quiesce` (no write can still use them).
        match unsafe { ring.submitter().register_buffers(&outputs.iovecs()) } {
            Ok(()) => features.fixed_buffers = true,
            Err(e) => {
                warn!(worker = index, error = %e, "io_uring: registered buffers unavailable, writing with send")
            }
        }
        let missing = features.missing(config.sqpoll.is_some());
        if !missing.is_empty() {
            warn!(worker = index, turned_off = ?missing, "io_uring: running without preferred features");
        }
        let now = monotonic_now();
        let max = config.serve.max_connections;
        let tick_ms = config.timer_tick_ms;
        Ok(EventLoop {
            ring,
            features,
            write_fixed: features.fixed_buffers && config.write == RingWrite::Fixed,
            index,
            server,
            stats,
            recorder: metrics.recorder(),
            metrics,
            stop,
            listener,
            wake,
            wake_buf: Box::new(0),
            tick: Box::new(
                types::Timespec::new()
                    .sec(tick_ms / 1000)
                    .nsec(((tick_ms % 1000) * 1_000_000) as u32),
            ),
            timeouts: Timeouts {
                idle: Duration::from_millis(config.serve.idle_timeout_ms),
                first_byte: Duration::from_millis(config.serve.first_byte_timeout_ms),
                request: Duration::from_millis(config.serve.request_timeout_ms),
                linger: Duration::from_millis(config.serve.close_linger_ms),
                grace: Duration::from_millis(config.serve.shutdown_grace_ms),
            },
            conns: (0..max).map(|_| Conn::free(now)).collect(),
            free_slots: (0..max).rev().collect(),
            open: Vec::with_capacity(max as usize),
            out_waiters: VecDeque::with_capacity(max as usize),
            starved: Vec::with_capacity(max as usize),
            recv_ring,
            max_input_bytes,
            outputs,
            recv_buffer_bytes: config.recv_buffer_bytes,
            in_flight: 0,
            accepting: true,
            stopping_since: None,
            completions: Vec::with_capacity(COMPLETIONS_PER_TURN),
        })
    }

    pub(crate) fn features(&self) -> RingFeatures {
        self.features
    }

    /// Serves until stopped and drained, then waits for the last operations.
    pub(crate) fn run(mut self) {
        self.metrics.install_on_this_thread();
        self.arm_accept();
        self.arm_wake();
        self.arm_tick();
        while !(self.stopping_since.is_some() && self.open.is_empty()) {
            if let Err(e) = self.submit_and_wait() {
                warn!(worker = self.index, error = %e, "io_uring: wait failed, stopping worker");
                break;
            }
            self.handle_completions();
            if self.stopping_since.is_none() && self.stop.load(Ordering::Acquire) {
                self.begin_stop();
            }
        }
        if !self.quiesce() {
            warn!(
                worker = self.index,
                in_flight = self.in_flight,
                "io_uring: operations still pending at exit; leaking the worker's ring and buffers"
            );
            // The kernel may still write into our buffers: never free them.
            std::mem::forget(self);
        }
    }

    fn submit_and_wait(&mut self) -> io::Result<()> {
        match self.ring.submit_and_wait(1) {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR | libc::EBUSY | libc::EAGAIN)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn push(&mut self, entry: squeue::Entry) {
        loop {
            // SAFETY: every entry pushed refers only to memory owned by this worker
            // (buffers, boxed timespec and eventfd word) or to descriptors it owns, all
            // kept alive until the entry's final completion (see `quiesce`).
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                self.in_flight += 1;
                return;
            }
            if let Err(e) = self.ring.submit() {
                warn!(worker = self.index, error = %e, "io_uring: submit with a full queue failed");
            }
        }
    }

    fn handle_completions(&mut self) {
        loop {
            self.completions.clear();
            for cqe in self.ring.completion().take(COMPLETIONS_PER_TURN) {
                self.completions
                    .push((cqe.user_data(), cqe.result(), cqe.flags()));
            }
            if self.completions.is_empty() {
                return;
            }
            for i in 0..self.completions.len() {
                let (user_data, result, flags) = self.completions[i];
                if !cqueue::more(flags) {
                    self.in_flight -= 1;
                }
                self.dispatch(user_data, result, flags);
            }
            self.rearm_starved();
        }
    }

    fn dispatch(&mut self, user_data: u64, result: i32, flags: u32) {
        let (kind, generation, slot) = token::decode(user_data);
        match kind {
            token::ACCEPT => self.on_accept(result, flags),
            token::RECV => self.on_recv(slot, generation, result, flags),
            token::WRITE => self.on_write(slot, generation, result),
            token::TICK => self.on_tick(),
            token::WAKE => self.on_wake(),
            token::CANCEL => {}
            _ => debug_assert!(false, "unknown completion kind {kind}"),
        }
    }

    // ---- accept -------------------------------------------------------------

    fn arm_accept(&mut self) {
        let fd = types::Fd(self.listener.as_raw_fd());
        let entry = if self.features.multishot_accept {
            opcode::AcceptMulti::new(fd)
                .flags(libc::SOCK_CLOEXEC)
                .build()
        } else {
            opcode::Accept::new(fd, std::ptr::null_mut(), std::ptr::null_mut())
                .flags(libc::SOCK_CLOEXEC)
                .build()
        };
        self.push(entry.user_data(token::encode(token::ACCEPT, 0, 0)));
    }

    fn on_accept(&mut self, result: i32, flags: u32) {
        if result >= 0 {
            self.admit(result);
        } else if result == -libc::EINVAL && self.features.multishot_accept {
            warn!(
                worker = self.index,
                "io_uring: multishot accept refused, using single-shot accept"
            );
            self.features.multishot_accept = false;
        } else if result != -libc::ECANCELED {
            WorkerStats::bump(&self.stats.accept_errors);
            debug!(worker = self.index, errno = -result, "accept failed");
        }
        if !cqueue::more(flags) && self.accepting {
            self.arm_accept();
        }
    }

    fn admit(&mut self, fd: RawFd) {
        let slot = match self.stopping_since {
            None => self.free_slots.pop(),
            Some(_) => None,
        };
        let Some(slot) = slot else {
            // Counted first: the client may read the stats as soon as it reads the 503.
            WorkerStats::bump(&self.stats.connections_shed);
            self.stats.response(Status::ServiceUnavailable);
            self.metrics.count_response(Status::ServiceUnavailable);
            let response = canned(Status::ServiceUnavailable, ConnectionHeader::Close);
            socket::shed(fd, response);
            return;
        };
        let now = monotonic_now();
        self.conns[slot as usize].open(fd, now, self.open.len());
        self.conns[slot as usize].http.peer = socket::peer_addr(fd);
        self.open.push(slot);
        WorkerStats::bump(&self.stats.connections_accepted);
        WorkerStats::bump(&self.stats.connections_open);
        self.arm_recv(slot);
    }

    // ---- receive ------------------------------------------------------------

    fn arm_recv(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        debug_assert!(!conn.recv_armed);
        conn.recv_armed = true;
        let fd = types::Fd(conn.fd);
        let user_data = token::encode(token::RECV, conn.generation, slot);
        let entry = if self.features.multishot_recv {
            opcode::RecvMulti::new(fd, RECV_BUFFER_GROUP).build()
        } else {
            opcode::Recv::new(fd, std::ptr::null_mut(), self.recv_buffer_bytes)
                .buf_group(RECV_BUFFER_GROUP)
                .build()
                .flags(squeue::Flags::BUFFER_SELECT)
        };
        self.push(entry.user_data(user_data));
    }

    fn on_recv(&mut self, slot: u32, generation: u32, result: i32, flags: u32) {
        let more = cqueue::more(flags);
        let buffer = cqueue::buffer_select(flags);
        if let Some(bid) = buffer {
            self.recv_ring.taken(bid);
        }
        let conn = &mut self.conns[slot as usize];
        let current =
            conn.phase != Phase::Free && token::same_generation(generation, conn.generation);
        if !more && current {
            conn.recv_armed = false;
        }
        if !current {
            if let Some(bid) = buffer {
                self.give_back(bid);
            }
            return;
        }
        match (result, buffer) {
            (n, Some(bid)) if n > 0 => {
                if !self.on_data(slot, bid, n as usize) {
                    self.give_back(bid);
                }
            }
            (0, _) => return self.on_peer_closed(slot),
            (e, _) if e == -libc::ENOBUFS => {
                WorkerStats::bump(&self.stats.recv_buffer_exhaustions);
                if !self.conns[slot as usize].recv_armed {
                    self.starved.push((slot, generation));
                    return;
                }
            }
            (e, _) if e == -libc::EINVAL && self.features.multishot_recv => {
                warn!(
                    worker = self.index,
                    "io_uring: multishot receive refused, using single-shot receive"
                );
                self.features.multishot_recv = false;
            }
            _ => return self.close_now(slot),
        }
        let conn = &self.conns[slot as usize];
        match conn.phase {
            Phase::Open | Phase::Lingering if !conn.recv_armed => self.arm_recv(slot),
            Phase::Closing => self.close_now(slot),
            _ => {}
        }
    }

    fn on_peer_closed(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        if conn.writing {
            // Let the response finish (a client may half-close after its last request).
            conn.close_after_write = true;
            return;
        }
        self.close_now(slot);
    }

    /// Returns a provided buffer to the kernel.
    fn give_back(&mut self, bid: u16) {
        self.recv_ring.recycle(bid);
    }

    /// Re-arms receives that ended on an empty buffer ring, once the ring has a buffer
    /// again. Called after each batch of completions, when every buffer not held by a
    /// waiting connection is back in the ring.
    fn rearm_starved(&mut self) {
        if !self.recv_ring.has_free() {
            return;
        }
        while let Some((slot, generation)) = self.starved.pop() {
            let conn = &self.conns[slot as usize];
            let wants = matches!(conn.phase, Phase::Open | Phase::Lingering)
                && token::same_generation(generation, conn.generation)
                && !conn.recv_armed;
            if wants {
                self.arm_recv(slot);
            }
        }
    }

    /// Serves `len` received bytes of provided buffer `bid`. Returns true if the
    /// connection kept the buffer (see [`Held`]); otherwise the caller gives it back.
    fn on_data(&mut self, slot: u32, bid: u16, len: usize) -> bool {
        let now = monotonic_now();
        let conn = &mut self.conns[slot as usize];
        conn.last_active = now;
        if conn.phase != Phase::Open {
            return false; // lingering or closing: discard
        }
        conn.silent = false;
        if conn.partial_since.is_none() {
            conn.partial_since = Some(now);
        }
        self.unhold(slot);
        let conn = &mut self.conns[slot as usize];
        let data = self.recv_ring.filled(bid, len);
        if conn.input.is_empty() {
            // Fast path: serve straight from the provided buffer, keep only a remainder.
            let consumed = serve(
                &mut self.server,
                conn,
                &mut self.outputs,
                &mut self.out_waiters,
                &mut Meters {
                    stats: &self.stats,
                    metrics: &self.metrics,
                    recorder: &mut self.recorder,
                },
                slot,
                data,
                now,
            );
            return self.keep_remainder(
                slot,
                Held {
                    bid,
                    start: consumed,
                    end: len,
                },
            );
        }
        if conn.input.len() + len > self.max_input_bytes {
            WorkerStats::bump(&self.stats.input_overflows);
            self.close_now(slot);
            return false;
        }
        conn.input.extend_from_slice(data);
        self.serve_buffered(slot, now);
        false
    }

    /// Deals with the unserved part of a provided buffer: nothing to keep; kept in place
    /// while the connection waits for an output buffer; or copied into an input buffer
    /// (a partial request). Returns true if the buffer is kept.
    fn keep_remainder(&mut self, slot: u32, rest: Held) -> bool {
        let conn = &mut self.conns[slot as usize];
        let keep = rest.start < rest.end && conn.phase == Phase::Open && !conn.close_after_write;
        if !keep {
            conn.partial_since = None;
            self.flush(slot);
            return false;
        }
        if conn.waiting_for_output {
            conn.held = Some(rest);
            return true;
        }
        conn.held = Some(rest);
        self.unhold(slot);
        self.flush(slot);
        true
    }

    /// Moves a held provided buffer's bytes into the connection's own input and gives
    /// the provided buffer back to the kernel.
    fn unhold(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        let Some(held) = conn.held.take() else {
            return;
        };
        // A buffer is held only by a connection that was serving straight from it.
        assert!(conn.input.is_empty(), "held bytes behind buffered input");
        let rest = &self.recv_ring.filled(held.bid, held.end)[held.start..];
        conn.input.extend_from_slice(rest);
        self.give_back(held.bid);
    }

    /// Serves the bytes of a held provided buffer; keeps, copies or returns what is left.
    fn serve_held(&mut self, slot: u32, held: Held, now: Instant) {
        let conn = &mut self.conns[slot as usize];
        conn.held = None;
        let input = &self.recv_ring.filled(held.bid, held.end)[held.start..];
        let consumed = serve(
            &mut self.server,
            conn,
            &mut self.outputs,
            &mut self.out_waiters,
            &mut Meters {
                stats: &self.stats,
                metrics: &self.metrics,
                recorder: &mut self.recorder,
            },
            slot,
            input,
            now,
        );
        let rest = Held {
            start: held.start + consumed,
            ..held
        };
        if !self.keep_remainder(slot, rest) {
            self.give_back(held.bid);
        }
    }

    /// Serves what the connection's input buffer (or held provided buffer) holds, then
    /// compacts it.
    fn serve_buffered(&mut self, slot: u32, now: Instant) {
        let conn = &mut self.conns[slot as usize];
        if let Some(held) = conn.held {
            return self.serve_held(slot, held, now);
        }
        if conn.input.is_empty() {
            return self.flush(slot);
        }
        let input = std::mem::take(&mut conn.input);
        let consumed = serve(
            &mut self.server,
            conn,
            &mut self.outputs,
            &mut self.out_waiters,
            &mut Meters {
                stats: &self.stats,
                metrics: &self.metrics,
                recorder: &mut self.recorder,
            },
            slot,
            &input,
            now,
        );
        conn.input = input;
        conn.input.drain(..consumed);
        if conn.input.is_empty() || conn.close_after_write {
            conn.drop_input();
            conn.partial_since = None;
        } else if consumed > 0 {
            conn.partial_since = Some(now);
        }
        self.flush(slot);
    }

    // ---- write --------------------------------------------------------------

    /// Starts writing whatever the output buffer holds, or returns an empty one.
    fn flush(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        if conn.writing {
            return;
        }
        let Some(idx) = conn.output else {
            return self.after_output(slot);
        };
        if conn.out_len == 0 {
            conn.output = None;
            self.outputs.give(idx);
            self.serve_waiters();
            return self.after_output(slot);
        }
        conn.writing = true;
        conn.phase_since = monotonic_now();
        self.submit_write(slot);
    }

    fn submit_write(&mut self, slot: u32) {
        let conn = &self.conns[slot as usize];
        let idx = conn.output.expect("writing without an output buffer");
        // SAFETY: `out_sent < out_len <= buf_bytes`, so the pointer stays in buffer `idx`.
        let ptr = unsafe { self.outputs.ptr(idx).add(conn.out_sent) };
        let len = (conn.out_len - conn.out_sent) as u32;
        let fd = types::Fd(conn.fd);
        let entry = if self.write_fixed {
            opcode::WriteFixed::new(fd, ptr, len, idx as u16)
                .offset(u64::MAX)
                .build()
        } else {
            opcode::Send::new(fd, ptr, len)
                .flags(libc::MSG_NOSIGNAL)
                .build()
        };
        let user_data = token::encode(token::WRITE, conn.generation, slot);
        WorkerStats::bump(&self.stats.writes);
        self.push(entry.user_data(user_data));
    }

    fn on_write(&mut self, slot: u32, generation: u32, result: i32) {
        let conn = &mut self.conns[slot as usize];
        if conn.phase == Phase::Free || !token::same_generation(generation, conn.generation) {
            debug_assert!(false, "write completion for a freed slot");
            return;
        }
        conn.writing = false;
        if result <= 0 || conn.phase == Phase::Closing {
            return self.close_now(slot);
        }
        conn.out_sent += result as usize;
        conn.last_active = monotonic_now();
        if conn.out_sent < conn.out_len {
            conn.writing = true;
            return self.submit_write(slot);
        }
        if let Some((next, len)) = conn.next_output.take() {
            let written = conn.output.replace(next).expect("a write had its buffer");
            conn.out_len = len;
            conn.out_sent = 0;
            conn.writing = true;
            self.submit_write(slot);
            self.outputs.give(written);
            return self.serve_waiters();
        }
        conn.out_len = 0;
        conn.out_sent = 0;
        if conn.close_after_write {
            return self.flush(slot);
        }
        let now = monotonic_now();
        self.serve_buffered(slot, now);
    }

    /// After the output is written (or there was none): linger-close if asked.
    fn after_output(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        if conn.close_after_write && conn.phase == Phase::Open && !conn.waiting_for_output {
            if !conn.recv_armed {
                return self.close_now(slot);
            }
            socket::shutdown_write(conn.fd);
            conn.phase = Phase::Lingering;
            conn.phase_since = monotonic_now();
        }
    }

    /// Hands freed output buffers to connections that waited for one.
    fn serve_waiters(&mut self) {
        while self.outputs.has_free() {
            let Some((slot, generation)) = self.out_waiters.pop_front() else {
                return;
            };
            let conn = &mut self.conns[slot as usize];
            let waiting = conn.phase == Phase::Open
                && conn.waiting_for_output
                && token::same_generation(generation, conn.generation);
            if !waiting {
                continue;
            }
            conn.waiting_for_output = false;
            self.serve_buffered(slot, monotonic_now());
        }
    }

    // ---- close --------------------------------------------------------------

    /// Ends the connection: shuts the socket so pending operations complete, and frees
    /// the slot once none is left.
    fn close_now(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        if conn.phase == Phase::Free {
            return;
        }
        if !conn.quiet() {
            if conn.phase != Phase::Closing {
                socket::shutdown_both(conn.fd);
                conn.phase = Phase::Closing;
            }
            return;
        }
        socket::close(conn.fd);
        conn.fd = -1;
        conn.phase = Phase::Free;
        conn.generation = conn.generation.wrapping_add(1);
        conn.waiting_for_output = false;
        conn.drop_input();
        let held = conn.held.take();
        let output = conn.output.take();
        let next_output = conn.next_output.take();
        let open_index = conn.open_index;
        self.open.swap_remove(open_index);
        if let Some(&moved) = self.open.get(open_index) {
            self.conns[moved as usize].open_index = open_index;
        }
        self.free_slots.push(slot);
        WorkerStats::bump(&self.stats.connections_closed);
        self.stats.connections_open.fetch_sub(1, Ordering::Relaxed);
        if let Some(held) = held {
            self.give_back(held.bid);
        }
        if let Some((idx, _)) = next_output {
            self.outputs.give(idx);
        }
        if let Some(idx) = output {
            self.outputs.give(idx);
            self.serve_waiters();
        }
    }

    // ---- timers and shutdown -------------------------------------------------

    fn arm_tick(&mut self) {
        let entry = opcode::Timeout::new(&*self.tick as *const types::Timespec).build();
        self.push(entry.user_data(token::encode(token::TICK, 0, 0)));
    }

    fn on_tick(&mut self) {
        if self.stopping_since.is_none() && self.stop.load(Ordering::Acquire) {
            self.begin_stop();
        }
        let now = monotonic_now();
        self.sweep(now);
        self.recorder.publish_if_due(now);
        if !(self.stopping_since.is_some() && self.open.is_empty()) {
            self.arm_tick();
        }
    }

    /// Applies every deadline that has passed.
    fn sweep(&mut self, now: Instant) {
        let past_grace = self
            .stopping_since
            .is_some_and(|t| now >= t + self.timeouts.grace);
        let mut i = 0;
        while i < self.open.len() {
            let slot = self.open[i];
            let before = self.open.len();
            self.expire(slot, now, past_grace);
            if self.open.len() == before {
                i += 1;
            }
        }
    }

    fn expire(&mut self, slot: u32, now: Instant, past_grace: bool) {
        let t = &self.timeouts;
        let conn = &self.conns[slot as usize];
        match conn.phase {
            Phase::Free => {}
            Phase::Closing => {}
            Phase::Lingering if past_grace || now >= conn.phase_since + t.linger => {
                self.close_now(slot)
            }
            Phase::Lingering => {}
            Phase::Open if past_grace => self.close_now(slot),
            Phase::Open if self.stopping_since.is_some() && idle(conn) => self.close_now(slot),
            Phase::Open if conn.writing => {
                if now >= conn.phase_since + t.request {
                    self.close_now(slot);
                }
            }
            Phase::Open => match conn.partial_since {
                Some(since) if now >= since + t.request => self.request_timeout(slot),
                Some(_) => {}
                None if conn.silent && now >= conn.last_active + t.first_byte => {
                    WorkerStats::bump(&self.stats.first_byte_timeouts);
                    self.close_now(slot);
                }
                None if now >= conn.last_active + t.idle => {
                    WorkerStats::bump(&self.stats.idle_timeouts);
                    self.close_now(slot);
                }
                None => {}
            },
        }
    }

    /// 408: the request did not arrive whole in time. The canned bytes go out with one
    /// non-blocking send (nothing else is being written on this connection), then the
    /// connection lingers closed.
    fn request_timeout(&mut self, slot: u32) {
        WorkerStats::bump(&self.stats.request_timeouts);
        self.stats.response(Status::RequestTimeout);
        self.metrics.count_response(Status::RequestTimeout);
        let conn = &mut self.conns[slot as usize];
        socket::send_now(
            conn.fd,
            canned(Status::RequestTimeout, ConnectionHeader::Close),
        );
        conn.close_after_write = true;
        conn.waiting_for_output = false;
        conn.drop_input();
        conn.partial_since = None;
        if let Some(held) = conn.held.take() {
            self.give_back(held.bid);
        }
        self.flush(slot);
    }

    fn arm_wake(&mut self) {
        let entry = opcode::Read::new(
            types::Fd(self.wake.as_raw_fd()),
            (&mut *self.wake_buf as *mut u64).cast(),
            8,
        )
        .build();
        self.push(entry.user_data(token::encode(token::WAKE, 0, 0)));
    }

    fn on_wake(&mut self) {
        if self.stop.load(Ordering::Acquire) {
            if self.stopping_since.is_none() {
                self.begin_stop();
            }
        } else {
            self.arm_wake();
        }
    }

    /// Stops accepting, closes idle connections, and lets the others finish the request
    /// in progress (answered with `connection: close`) within the grace period.
    fn begin_stop(&mut self) {
        debug!(
            worker = self.index,
            open = self.open.len(),
            "worker stopping"
        );
        self.stopping_since = Some(monotonic_now());
        self.accepting = false;
        let cancel = opcode::AsyncCancel::new(token::encode(token::ACCEPT, 0, 0)).build();
        self.push(cancel.user_data(token::encode(token::CANCEL, 0, 0)));
        let open = self.open.clone();
        for slot in open {
            let conn = &mut self.conns[slot as usize];
            conn.http.close_after_response = true;
            if idle(conn) {
                self.close_now(slot);
            }
        }
    }

    /// Waits (bounded) until no submitted operation can still touch this worker's memory;
    /// false if some still could.
    fn quiesce(&mut self) -> bool {
        self.stopping_since.get_or_insert_with(Instant::now);
        self.accepting = false;
        for slot in self.open.clone() {
            self.close_now(slot);
        }
        let wake = opcode::AsyncCancel::new(token::encode(token::WAKE, 0, 0)).build();
        self.push(wake.user_data(token::encode(token::CANCEL, 0, 0)));
        let until = monotonic_now() + Duration::from_millis(QUIESCE_BOUND_MS);
        while self.in_flight > 0 && monotonic_now() < until {
            if self.submit_and_wait().is_err() {
                break;
            }
            self.handle_completions();
            for slot in self.open.clone() {
                self.close_now(slot);
            }
        }
        if self.in_flight > 0 {
            return false;
        }
        assert!(self.open.is_empty(), "connections left after quiesce");
        assert_eq!(self.outputs.lent(), 0, "output buffers not returned");
        true
    }
}

/// Open with nothing in progress: safe to close without losing a request.
fn idle(conn: &Conn) -> bool {
    conn.phase == Phase::Open
        && conn.input.is_empty()
        && conn.held.is_none()
        && !conn.writing
        && !conn.waiting_for_output
        && conn.out_len == 0
        && conn.next_output.is_none()
}

/// Where `serve` counts: the engine's own stats and the metrics both engines share.
struct Meters<'a> {
    stats: &'a WorkerStats,
    metrics: &'a WorkerMetrics,
    recorder: &'a mut LatencyRecorder,
}

/// Serves requests from `input` into the connection's output buffer until the input has
/// no complete request, the buffer is full, or the connection must close. Returns the
/// input bytes consumed.
///
/// Pipelined requests share one write: an answer behind others, where the buffer lacks
/// room for a worst-case answer (the body limit; real answers are ~1 KiB), is served
/// into a spare buffer and copied behind them if it fits after all; if not, it is
/// written next, and serving stops until then.
#[allow(clippy::too_many_arguments)]
fn serve<S: Service>(
    server: &mut Server<S>,
    conn: &mut Conn,
    outputs: &mut Pool,
    waiters: &mut VecDeque<(u32, u32)>,
    meters: &mut Meters<'_>,
    slot: u32,
    input: &[u8],
    now: Instant,
) -> usize {
    let mut pos = 0;
    while !conn.writing
        && !conn.close_after_write
        && conn.next_output.is_none()
        && pos < input.len()
    {
        let idx = match conn.output {
            Some(idx) => idx,
            None => match outputs.take() {
                Some(idx) => {
                    conn.output = Some(idx);
                    idx
                }
                None => {
                    if !conn.waiting_for_output {
                        conn.waiting_for_output = true;
                        waiters.push_back((slot, conn.generation));
                    }
                    break;
                }
            },
        };
        let room = outputs.buf_bytes() - conn.out_len;
        let spare = if room < server.min_out_bytes() && conn.out_len > 0 {
            match outputs.take() {
                Some(spare) => Some(spare),
                None => break, // write what is there first
            }
        } else {
            None
        };
        let (into, at) = spare.map_or((idx, conn.out_len), |spare| (spare, 0));
        let mut out = OutBuf::new(&mut outputs.get_mut(into)[at..]);
        let started = monotonic_now();
        let step = server.serve_one(&mut conn.http, &input[pos..], now, &mut out);
        let written = out.len();
        match spare {
            None => conn.out_len += written,
            Some(spare) if written <= room => {
                outputs.copy(spare, written, idx, conn.out_len);
                conn.out_len += written;
                outputs.give(spare);
            }
            Some(spare) => conn.next_output = Some((spare, written)),
        }
        match step {
            Step::Incomplete | Step::OutFull => break,
            Step::Answered {
                consumed,
                status,
                close,
            } => {
                pos += consumed;
                WorkerStats::bump(&meters.stats.requests);
                meters.stats.response(status);
                meters.metrics.count_response(status);
                if matches!(status, Status::Ok | Status::NoContent) {
                    let done = monotonic_now();
                    let decision_us = done.duration_since(started).as_micros() as u64;
                    let total_us = done.duration_since(now).as_micros() as u64;
                    meters.recorder.record(decision_us, total_us, done);
                }
                conn.close_after_write |= close;
            }
        }
    }
    pos
}
