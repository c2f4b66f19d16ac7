//! One connection: read, hand the unconsumed input to `Server::serve_one` until it
//! wants more, write the answers in order, repeat; with the idle and request deadlines
//! and shutdown draining around it.
//!
//! Memory per connection is bounded: the input buffer grows from
//! [`INITIAL_INPUT_BYTES`] up to `HttpLimits::max_request_bytes` (a partial request never
//! needs more), and answers are flushed once [`FLUSH_AT_BYTES`] or
//! [`MAX_ANSWERS_PER_FLUSH`] pile up, so a client pipelining thousands of requests
//! without reading cannot make us buffer their answers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::state::WorkerState;
use crate::clock::monotonic_now;
use crate::http::{canned, ConnState, ConnectionHeader, OutBuf, Service, Status, Step};

/// Input buffer a new connection starts with: a typical bid request fits.
const INITIAL_INPUT_BYTES: usize = 8 * 1024;
/// Answers are written once this many bytes of them are waiting.
const FLUSH_AT_BYTES: usize = 64 * 1024;
use crate::limits::MAX_ANSWERS_PER_FLUSH;
/// Output capacity a connection keeps between flushes; a larger buffer (after a burst
/// of big answers) is released.
const KEEP_OUTPUT_BYTES: usize = 16 * 1024;
/// Most bytes read and thrown away while lingering before a close.
const LINGER_MAX_DISCARD_BYTES: usize = 64 * 1024;

/// What to do after serving the buffered input.
enum Next {
    /// Nothing complete is left: read more.
    Read,
    /// Answers piled up: write them, then serve more before reading.
    Flush,
    /// The last answer closes the connection: write, then close.
    Close,
}

/// How the connection ends.
enum End {
    /// Our last answer said `connection: close`: half-close and linger so the client
    /// reads it rather than a reset.
    Linger,
    /// The peer left, timed out idle, or failed: just close.
    Drop,
}

/// Why reading stopped.
enum ReadOutcome {
    Data,
    Closed,
    Idle,
    Silent,
    Late,
    Drain,
    Overflow,
}

/// Per-connection state.
struct Conn {
    /// `input[..filled]` is received, unconsumed input.
    input: Vec<u8>,
    filled: usize,
    /// Answers not yet written, in request order.
    output: Vec<u8>,
    http: ConnState,
    /// When the first byte of the request in progress arrived.
    request_started: Option<Instant>,
    /// No byte has arrived yet: the first-byte deadline applies, not the idle one.
    silent: bool,
    /// When the last read completed: the arrival time of the requests it completed.
    arrived: Instant,
    /// Decision times (µs) of the answers in `output` that get latency samples.
    decisions_us: [u64; MAX_ANSWERS_PER_FLUSH],
    answers: usize,
}

/// Serves `stream` until it closes, times out, or the worker drains.
pub(super) async fn run<S: Service>(
    worker: &WorkerState<S>,
    mut stream: TcpStream,
    peer: SocketAddr,
) {
    let mut http = ConnState::default();
    http.peer = Some(peer.ip());
    let mut conn = Conn {
        input: vec![0; INITIAL_INPUT_BYTES.min(worker.max_request_bytes)],
        filled: 0,
        output: Vec::new(),
        http,
        request_started: None,
        silent: true,
        arrived: monotonic_now(),
        decisions_us: [0; MAX_ANSWERS_PER_FLUSH],
        answers: 0,
    };
    if let End::Linger = conn.serve(worker, &mut stream).await {
        linger(&mut stream, worker.timeouts.close_linger).await;
    }
}

/// Half-closes `stream` after our last answer and reads (discarding) until the peer
/// closes, `limit` passes, or [`LINGER_MAX_DISCARD_BYTES`] arrived: closing with unread
/// input would send a reset that can destroy the answer before the client reads it.
pub(super) async fn linger(stream: &mut TcpStream, limit: Duration) {
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 1024];
    let mut left = LINGER_MAX_DISCARD_BYTES;
    let discard = async {
        while let Ok(n @ 1..) = stream.read(&mut sink).await {
            left = left.saturating_sub(n);
            if left == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(limit, discard).await;
}

impl Conn {
    async fn serve<S: Service>(&mut self, worker: &WorkerState<S>, stream: &mut TcpStream) -> End {
        loop {
            if worker.draining.get() {
                self.http.close_after_response = true;
            }
            let next = self.serve_buffered(worker);
            if !self.output.is_empty() && !self.flush(worker, stream).await {
                return End::Drop;
            }
            match next {
                Next::Close => return End::Linger,
                Next::Flush => continue,
                Next::Read if worker.draining.get() && self.filled == 0 => return End::Drop,
                Next::Read => {}
            }
            match self.read(worker, stream).await {
                ReadOutcome::Data | ReadOutcome::Drain => {}
                ReadOutcome::Closed => return End::Drop,
                ReadOutcome::Idle => {
                    worker.stats.idle_timeouts.inc();
                    return End::Drop;
                }
                ReadOutcome::Silent => {
                    worker.stats.first_byte_timeouts.inc();
                    return End::Drop;
                }
                ReadOutcome::Late => {
                    worker.stats.request_timeouts.inc();
                    return self.refuse(worker, stream, Status::RequestTimeout).await;
                }
                ReadOutcome::Overflow => {
                    debug_assert!(false, "a partial request outgrew max_request_bytes");
                    return self.refuse(worker, stream, Status::PayloadTooLarge).await;
                }
            }
        }
    }

    /// Answers every complete request at the front of the input, in order, into
    /// `output`; stops early when answers pile up or one closes the connection.
    fn serve_buffered<S: Service>(&mut self, worker: &WorkerState<S>) -> Next {
        let mut http = worker.http.borrow_mut();
        let side = &mut *http;
        let mut pos = 0;
        let next = loop {
            if pos == self.filled {
                break Next::Read;
            }
            let started = monotonic_now();
            let mut out = OutBuf::new(&mut side.out);
            let step = side.server.serve_one(
                &mut self.http,
                &self.input[pos..self.filled],
                self.arrived,
                &mut out,
            );
            self.output.extend_from_slice(out.as_bytes());
            let (consumed, status, close) = match step {
                Step::Incomplete => break Next::Read,
                Step::OutFull => {
                    debug_assert!(false, "an empty min_out_bytes scratch was full");
                    break Next::Close;
                }
                Step::Answered {
                    consumed,
                    status,
                    close,
                } => (consumed, status, close),
            };
            pos += consumed;
            worker.metrics.count_response(status);
            if matches!(status, Status::Ok | Status::NoContent) {
                self.decisions_us[self.answers] = micros(started.elapsed());
                self.answers += 1;
            }
            if close {
                break Next::Close;
            }
            if self.output.len() >= FLUSH_AT_BYTES || self.answers == MAX_ANSWERS_PER_FLUSH {
                break Next::Flush;
            }
        };
        drop(http);
        self.consume(pos);
        next
    }

    /// Drops `n` answered bytes from the front of the input.
    fn consume(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.input.copy_within(n..self.filled, 0);
        self.filled -= n;
        // Leftover bytes (the start of a pipelined request) came with the last read.
        self.request_started = (self.filled > 0).then_some(self.arrived);
        if self.filled == 0 && self.input.len() > INITIAL_INPUT_BYTES {
            self.input.truncate(INITIAL_INPUT_BYTES);
            self.input.shrink_to_fit();
        }
    }

    /// Writes the waiting answers, bounded by the idle timeout, and records their
    /// latencies. False if the connection is no longer usable.
    async fn flush<S>(&mut self, worker: &WorkerState<S>, stream: &mut TcpStream) -> bool {
        let written = tokio::time::timeout(worker.timeouts.idle, stream.write_all(&self.output));
        let ok = match written.await {
            Ok(result) => result.is_ok(),
            Err(_) => {
                worker.stats.write_timeouts.inc();
                false
            }
        };
        if ok && self.answers > 0 {
            let now = monotonic_now();
            let total_us = micros(now.saturating_duration_since(self.arrived));
            let mut http = worker.http.borrow_mut();
            for &decision_us in &self.decisions_us[..self.answers] {
                http.recorder.record(decision_us, total_us, now);
            }
        }
        self.answers = 0;
        self.output.clear();
        if self.output.capacity() > KEEP_OUTPUT_BYTES {
            self.output = Vec::new();
        }
        ok
    }

    /// Waits for more input, the deadline that applies (idle with nothing pending,
    /// request otherwise), or the start of draining.
    async fn read<S>(&mut self, worker: &WorkerState<S>, stream: &mut TcpStream) -> ReadOutcome {
        if self.filled == self.input.len() {
            if self.input.len() >= worker.max_request_bytes {
                return ReadOutcome::Overflow;
            }
            let grown = (self.input.len() * 2).min(worker.max_request_bytes);
            self.input.resize(grown, 0);
        }
        let deadline = match self.request_started {
            Some(started) => started + worker.timeouts.request,
            // The first read starts as the connection is accepted.
            None if self.silent => monotonic_now() + worker.timeouts.first_byte,
            None => monotonic_now() + worker.timeouts.idle,
        };
        let pending = self.request_started.is_some();
        let silent = self.silent;
        let draining = worker.draining.get();
        // Input first: bytes that already arrived are served even once draining starts.
        tokio::select! {
            biased;
            read = stream.read(&mut self.input[self.filled..]) => match read {
                Ok(0) | Err(_) => ReadOutcome::Closed,
                Ok(n) => {
                    self.silent = false;
                    self.filled += n;
                    self.arrived = monotonic_now();
                    self.request_started.get_or_insert(self.arrived);
                    ReadOutcome::Data
                }
            },
            _ = tokio::time::sleep_until(deadline.into()) => {
                match (pending, silent) {
                    (true, _) => ReadOutcome::Late,
                    (false, true) => ReadOutcome::Silent,
                    (false, false) => ReadOutcome::Idle,
                }
            }
            _ = worker.drain.notified(), if !draining => ReadOutcome::Drain,
        }
    }

    /// Answers `status` with `connection: close` in place of whatever is pending.
    async fn refuse<S>(
        &mut self,
        worker: &WorkerState<S>,
        stream: &mut TcpStream,
        status: Status,
    ) -> End {
        self.output
            .extend_from_slice(canned(status, ConnectionHeader::Close));
        worker.metrics.count_response(status);
        if self.flush(worker, stream).await {
            End::Linger
        } else {
            End::Drop
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
