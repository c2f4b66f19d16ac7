//! One generator thread: its share of the connections and of the schedule, driven by
//! one epoll loop.
//!
//! Open loop: request `k` of the whole run is *intended* at `start + k / rate`; worker
//! `w` of `T` owns every `k ≡ w (mod T)`. A request is written as soon as it is due and
//! a connection has room (fewer than `pipeline_depth` requests in flight). If none has
//! room, requests wait in order and are written as room appears, and their latency is
//! still counted from their intended time: a stalled server is charged for every
//! request an exchange would have sent during the stall, which is the correction for
//! coordinated omission. A request that waits longer than the timeout is given up and
//! counted as a timeout, as an exchange would.
//!
//! Closed loop (a diagnostic, to show what the correction corrects): every connection
//! keeps `pipeline_depth` requests in flight and sends the next as soon as a response
//! arrives; latency is counted from the actual send.

use std::collections::VecDeque;
use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd as _;
use std::sync::mpsc::{Receiver, Sender};

use hdrhistogram::Histogram;
use socket2::{Domain, Protocol, Socket, Type};

use crate::poller::{now_ns, Interest, Poller, Ready};
use crate::request::{Randomise, RequestTemplate, SplitMix64};
use crate::response::{ResponseParser, MAX_HEAD_BYTES};
use crate::stats::{new_histogram, ns_to_us, Counts, Interval};

/// Bytes read from a socket at once; larger than a head so a head always fits.
/// Allocated per connection: 4,096 connections hold 128 MiB.
const READ_BUFFER_BYTES: usize = 32 * 1024;
const _: () = assert!(READ_BUFFER_BYTES > MAX_HEAD_BYTES);
/// Readiness events handled per wake.
const EVENTS_PER_WAIT: usize = 256;
/// Most requests written in one pass before socket events are served again, so a
/// backlog released at once cannot starve response reading.
const SENDS_PER_PASS: usize = 1_024;
/// How often in-flight requests are checked against the timeout.
const TIMEOUT_SCAN_INTERVAL_NS: u64 = 5_000_000;
/// Wait before reconnecting after a connection failed (not after a clean close).
const RECONNECT_BACKOFF_NS: u64 = 10_000_000;
/// How long the initial connections may take before the run is refused.
const CONNECT_TIMEOUT_NS: u64 = 3_000_000_000;
/// Progress interval.
const TICK_NS: u64 = 1_000_000_000;
/// Unsent-room entries kept per unit of real room before stale ones are purged.
const ROOM_QUEUE_SLACK: usize = 4;

/// How requests are paced.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Pacing {
    /// Constant arrival rate for the whole run (all workers together), req/s.
    OpenLoop { rate_rps: f64 },
    /// Send on every response, as fast as the server answers.
    ClosedLoop,
}

/// Everything one worker needs; built by the run before threads start.
pub(crate) struct WorkerPlan {
    pub index: usize,
    pub workers: usize,
    pub addr: SocketAddr,
    pub connections: usize,
    pub pipeline_depth: usize,
    pub pacing: Pacing,
    pub warmup_ns: u64,
    pub duration_ns: u64,
    pub timeout_ns: u64,
    pub late_send_threshold_ns: u64,
    pub templates: Vec<RequestTemplate>,
    pub randomise: Randomise,
    pub seed: u64,
}

/// What a worker tells the reporting thread.
pub(crate) enum WorkerMsg {
    /// Connections are up (or could not be made); the worker waits for the start time.
    Ready(Result<(), String>),
    Interval(Box<Interval>),
    /// The event loop itself failed (epoll or timer errors): the run is void.
    Failed(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnState {
    Connecting { since_ns: u64 },
    Open,
    Down { retry_at_ns: u64 },
}

#[derive(Clone, Copy, Debug)]
struct InFlight {
    intended_ns: u64,
    sent_ns: u64,
    measured: bool,
}

/// Why a connection is being dropped; decides how its requests in flight count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DropReason {
    Timeout,
    Failed,
    Protocol,
    /// The server said `Connection: close` or closed between responses.
    Closed,
}

struct Conn {
    socket: Option<TcpStream>,
    state: ConnState,
    /// Bumped on every drop, so room entries from an earlier socket are ignored.
    generation: u32,
    inflight: VecDeque<InFlight>,
    parser: ResponseParser,
    read_buf: Box<[u8]>,
    read_len: usize,
    /// Request bytes accepted but not yet written (a partial write).
    write_buf: Vec<u8>,
}

/// Runs one worker to completion: connect, report ready, wait for the start time,
/// run the schedule, drain, and send the final interval.
pub(crate) fn run(plan: WorkerPlan, start_rx: Receiver<u64>, out: Sender<WorkerMsg>) {
    let mut worker = match Worker::connect(plan) {
        Ok(worker) => worker,
        Err(e) => {
            let _ = out.send(WorkerMsg::Ready(Err(e)));
            return;
        }
    };
    if out.send(WorkerMsg::Ready(Ok(()))).is_err() {
        return;
    }
    let Ok(start_ns) = start_rx.recv() else {
        return;
    };
    if let Err(e) = worker.run(start_ns, &out) {
        let _ = out.send(WorkerMsg::Failed(format!(
            "worker {}: {e}",
            worker.plan.index
        )));
    }
}

struct Worker {
    plan: WorkerPlan,
    poller: Poller,
    conns: Vec<Conn>,
    /// Connections with room for one more request, as (index, generation); one entry
    /// per free pipeline slot, so taking the front spreads load round-robin.
    room: VecDeque<(usize, u32)>,
    ready: Vec<Ready>,
    rng: SplitMix64,
    // Schedule (all ns on the monotonic clock).
    start_ns: u64,
    measure_from_ns: u64,
    end_ns: u64,
    interval_ns: f64,
    next_seq: u64,
    next_intended_ns: u64,
    /// Some due request found no room: sends until the schedule is caught up again
    /// are late because of the server, not the generator.
    waiting_for_room: bool,
    // Housekeeping.
    next_tick_ns: u64,
    tick: u64,
    next_scan_ns: u64,
    // Measurements of the current interval.
    counts: Counts,
    completed_all: u64,
    latency: Histogram<u64>,
    service: Histogram<u64>,
    send_lag: Histogram<u64>,
}

impl Worker {
    /// Opens every connection of this worker, or says which could not be opened.
    fn connect(plan: WorkerPlan) -> Result<Worker, String> {
        assert!(plan.connections > 0 && plan.pipeline_depth > 0 && !plan.templates.is_empty());
        let poller = Poller::new(EVENTS_PER_WAIT).map_err(|e| format!("epoll/timerfd: {e}"))?;
        let conns = (0..plan.connections)
            .map(|_| Conn {
                socket: None,
                state: ConnState::Down { retry_at_ns: 0 },
                generation: 0,
                inflight: VecDeque::with_capacity(plan.pipeline_depth),
                parser: ResponseParser::default(),
                read_buf: vec![0; READ_BUFFER_BYTES].into_boxed_slice(),
                read_len: 0,
                write_buf: Vec::new(),
            })
            .collect();
        let seed = plan.seed;
        let mut worker = Worker {
            room: VecDeque::with_capacity(
                plan.connections * plan.pipeline_depth * ROOM_QUEUE_SLACK,
            ),
            plan,
            poller,
            conns,
            ready: Vec::with_capacity(EVENTS_PER_WAIT),
            rng: SplitMix64::new(seed),
            start_ns: 0,
            measure_from_ns: 0,
            end_ns: 0,
            interval_ns: 0.0,
            next_seq: 0,
            next_intended_ns: 0,
            waiting_for_room: false,
            next_tick_ns: 0,
            tick: 0,
            next_scan_ns: 0,
            counts: Counts::default(),
            completed_all: 0,
            latency: new_histogram(),
            service: new_histogram(),
            send_lag: new_histogram(),
        };
        worker.open_all()?;
        // The initial connects are not reconnects.
        worker.counts.reconnects = 0;
        Ok(worker)
    }

    fn open_all(&mut self) -> Result<(), String> {
        let began = now_ns();
        for c in 0..self.conns.len() {
            self.reconnect(c, began)
                .map_err(|e| format!("cannot connect to {}: {e}", self.plan.addr))?;
        }
        while self.conns.iter().any(|c| c.state != ConnState::Open) {
            let now = now_ns();
            if now - began > CONNECT_TIMEOUT_NS {
                return Err(format!("connecting to {} timed out", self.plan.addr));
            }
            self.wait_events(now + TIMEOUT_SCAN_INTERVAL_NS)
                .map_err(|e| format!("epoll: {e}"))?;
            for i in 0..self.ready.len() {
                self.on_event(self.ready[i], now_ns());
            }
            if self
                .conns
                .iter()
                .any(|c| matches!(c.state, ConnState::Down { .. }))
            {
                return Err(format!(
                    "cannot connect to {}: refused or reset",
                    self.plan.addr
                ));
            }
        }
        Ok(())
    }

    fn run(&mut self, start_ns: u64, out: &Sender<WorkerMsg>) -> io::Result<()> {
        self.start_ns = start_ns;
        self.measure_from_ns = start_ns + self.plan.warmup_ns;
        self.end_ns = self.measure_from_ns + self.plan.duration_ns;
        if let Pacing::OpenLoop { rate_rps } = self.plan.pacing {
            assert!(rate_rps > 0.0);
            self.interval_ns = 1e9 / rate_rps;
            self.next_intended_ns = self.intended_ns(0);
        }
        self.next_tick_ns = start_ns + TICK_NS;
        self.next_scan_ns = start_ns;
        // Give up on stragglers once every request could have timed out.
        let hard_stop_ns = self.end_ns + self.plan.timeout_ns + TIMEOUT_SCAN_INTERVAL_NS * 2;
        loop {
            let now = now_ns();
            self.send_due(now);
            if now >= self.next_scan_ns {
                self.housekeeping(now);
            }
            if now >= self.next_tick_ns {
                self.emit(out, false);
            }
            if self.finished(now) || now >= hard_stop_ns {
                break;
            }
            self.wait_events(self.next_deadline())?;
            let now = now_ns();
            for i in 0..self.ready.len() {
                self.on_event(self.ready[i], now);
            }
        }
        // Whatever is still pending at the hard stop has waited past the timeout.
        let now = now_ns();
        for c in 0..self.conns.len() {
            if !self.conns[c].inflight.is_empty() {
                self.drop_conn(c, DropReason::Timeout, now);
            }
        }
        while matches!(self.plan.pacing, Pacing::OpenLoop { .. })
            && self.next_intended_ns < self.end_ns
        {
            let intended = self.next_intended_ns;
            self.count_unsent(
                intended,
                now.max(intended),
                intended >= self.measure_from_ns,
            );
            self.advance_schedule();
        }
        self.emit(out, true);
        Ok(())
    }

    fn intended_ns(&self, seq: u64) -> u64 {
        let global = seq * self.plan.workers as u64 + self.plan.index as u64;
        self.start_ns + (global as f64 * self.interval_ns) as u64
    }

    /// Requests remain to be sent: the open loop has unsent scheduled requests (some
    /// may be past the end, waiting for room), or the closed loop has time left.
    fn schedule_pending(&self, now: u64) -> bool {
        match self.plan.pacing {
            Pacing::OpenLoop { .. } => self.next_intended_ns < self.end_ns,
            Pacing::ClosedLoop => now < self.end_ns,
        }
    }

    fn finished(&self, now: u64) -> bool {
        !self.schedule_pending(now) && self.conns.iter().all(|c| c.inflight.is_empty())
    }

    /// The earliest instant something must happen without a socket event.
    fn next_deadline(&self) -> u64 {
        let mut at = self.next_tick_ns.min(self.next_scan_ns);
        let schedule_pending = self.next_intended_ns < self.end_ns;
        if matches!(self.plan.pacing, Pacing::OpenLoop { .. })
            && schedule_pending
            && !self.waiting_for_room
        {
            at = at.min(self.next_intended_ns);
        }
        at
    }

    /// Waits for socket events or `deadline_ns`, whichever first; fills `self.ready`.
    fn wait_events(&mut self, deadline_ns: u64) -> io::Result<()> {
        self.ready.clear();
        self.ready.extend(self.poller.wait(deadline_ns)?);
        Ok(())
    }

    /// Writes every request that is due and has room (open loop), or fills every free
    /// slot (closed loop).
    fn send_due(&mut self, now: u64) {
        if self.plan.pacing == Pacing::ClosedLoop {
            while now < self.end_ns {
                let Some(c) = self.take_room() else { break };
                self.send(c, now, now, now >= self.measure_from_ns);
            }
            return;
        }
        for _ in 0..SENDS_PER_PASS {
            let intended = self.next_intended_ns;
            if intended > now || intended >= self.end_ns {
                break;
            }
            let measured = intended >= self.measure_from_ns;
            if now - intended > self.plan.timeout_ns {
                // Waited for room longer than an exchange would: given up unsent.
                self.count_unsent(intended, now, measured);
                self.advance_schedule();
                continue;
            }
            let Some(c) = self.take_room() else {
                self.waiting_for_room = true;
                return;
            };
            if measured {
                let lag = now - intended;
                if self.waiting_for_room {
                    self.counts.queued_sends += 1;
                } else {
                    self.send_lag.saturating_record(ns_to_us(lag));
                    if lag > self.plan.late_send_threshold_ns {
                        self.counts.late_sends += 1;
                    }
                }
            }
            self.send(c, intended, now, measured);
            self.advance_schedule();
        }
        if self.next_intended_ns > now || self.next_intended_ns >= self.end_ns {
            self.waiting_for_room = false;
        }
    }

    fn advance_schedule(&mut self) {
        self.next_seq += 1;
        self.next_intended_ns = self.intended_ns(self.next_seq);
    }

    fn count_timeout(&mut self, intended_ns: u64, now: u64, measured: bool) {
        if measured {
            self.counts.timeouts += 1;
            self.latency.saturating_record(ns_to_us(now - intended_ns));
        }
    }

    /// A timeout for a request given up before any connection had room to send it.
    fn count_unsent(&mut self, intended_ns: u64, now: u64, measured: bool) {
        self.count_timeout(intended_ns, now, measured);
        if measured {
            self.counts.unsent += 1;
        }
    }

    /// Takes one free pipeline slot, skipping entries of dropped sockets.
    fn take_room(&mut self) -> Option<usize> {
        while let Some((c, generation)) = self.room.pop_front() {
            let conn = &self.conns[c];
            if conn.generation == generation
                && conn.state == ConnState::Open
                && conn.inflight.len() < self.plan.pipeline_depth
            {
                return Some(c);
            }
        }
        None
    }

    fn give_room(&mut self, c: usize) {
        let limit = self.conns.len() * self.plan.pipeline_depth * ROOM_QUEUE_SLACK;
        if self.room.len() >= limit {
            let conns = &self.conns;
            self.room
                .retain(|&(i, g)| conns[i].generation == g && conns[i].state == ConnState::Open);
        }
        self.room.push_back((c, self.conns[c].generation));
    }

    /// Renders a request and writes it on connection `c` (buffering what the socket
    /// does not take at once).
    fn send(&mut self, c: usize, intended_ns: u64, now: u64, measured: bool) {
        let template = self.rng.below(self.plan.templates.len() as u64) as usize;
        let bytes = self.plan.templates[template].render(&mut self.rng, &self.plan.randomise);
        let conn = &mut self.conns[c];
        conn.inflight.push_back(InFlight {
            intended_ns,
            sent_ns: now,
            measured,
        });
        if measured {
            self.counts.sent += 1;
        }
        if !conn.write_buf.is_empty() {
            conn.write_buf.extend_from_slice(bytes);
            return;
        }
        let socket = conn
            .socket
            .as_ref()
            .expect("an open connection has a socket");
        let written = match (&*socket).write(bytes) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(_) => return self.drop_conn(c, DropReason::Failed, now),
        };
        if written < bytes.len() {
            let fd = socket.as_raw_fd();
            conn.write_buf.extend_from_slice(&bytes[written..]);
            if self
                .poller
                .modify(fd, c as u64, Interest::ReadWrite)
                .is_err()
            {
                self.drop_conn(c, DropReason::Failed, now);
            }
        }
    }

    fn on_event(&mut self, ready: Ready, now: u64) {
        let c = ready.token as usize;
        match self.conns[c].state {
            ConnState::Connecting { .. } if ready.writable || ready.hangup => {
                self.on_connected(c, now)
            }
            ConnState::Open => {
                if ready.writable {
                    self.flush(c, now);
                }
                if (ready.readable || ready.hangup) && self.conns[c].state == ConnState::Open {
                    self.on_readable(c, now);
                }
            }
            _ => {}
        }
    }

    fn on_connected(&mut self, c: usize, now: u64) {
        let conn = &mut self.conns[c];
        let socket = conn
            .socket
            .as_ref()
            .expect("a connecting connection has a socket");
        if !matches!(socket.take_error(), Ok(None)) || socket.peer_addr().is_err() {
            return self.drop_conn(c, DropReason::Failed, now);
        }
        conn.state = ConnState::Open;
        if self
            .poller
            .modify(socket.as_raw_fd(), c as u64, Interest::Read)
            .is_err()
        {
            return self.drop_conn(c, DropReason::Failed, now);
        }
        for _ in 0..self.plan.pipeline_depth {
            self.give_room(c);
        }
    }

    fn flush(&mut self, c: usize, now: u64) {
        let conn = &mut self.conns[c];
        let socket = conn
            .socket
            .as_ref()
            .expect("an open connection has a socket");
        match (&*socket).write(&conn.write_buf) {
            Ok(n) => {
                conn.write_buf.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return self.drop_conn(c, DropReason::Failed, now),
        }
        if conn.write_buf.is_empty()
            && self
                .poller
                .modify(socket.as_raw_fd(), c as u64, Interest::Read)
                .is_err()
        {
            self.drop_conn(c, DropReason::Failed, now);
        }
    }

    fn on_readable(&mut self, c: usize, now: u64) {
        let conn = &mut self.conns[c];
        let socket = conn
            .socket
            .as_ref()
            .expect("an open connection has a socket");
        let n = match (&*socket).read(&mut conn.read_buf[conn.read_len..]) {
            Ok(0) => return self.on_eof(c, now),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                return
            }
            Err(_) => return self.drop_conn(c, DropReason::Failed, now),
        };
        conn.read_len += n;
        let mut consumed = 0;
        loop {
            let conn = &mut self.conns[c];
            let parsed = conn.parser.advance(&conn.read_buf[consumed..conn.read_len]);
            match parsed {
                Err(_) => return self.drop_conn(c, DropReason::Protocol, now),
                Ok((n, None)) => {
                    consumed += n;
                    break;
                }
                Ok((n, Some(done))) => {
                    consumed += n;
                    if !self.complete(c, done.status, now) {
                        return self.drop_conn(c, DropReason::Protocol, now);
                    }
                    if done.close {
                        return self.drop_conn(c, DropReason::Closed, now);
                    }
                    self.give_room(c);
                }
            }
        }
        let conn = &mut self.conns[c];
        conn.read_buf.copy_within(consumed..conn.read_len, 0);
        conn.read_len -= consumed;
    }

    /// Matches a response to the oldest request in flight; false if there was none.
    fn complete(&mut self, c: usize, status: u16, now: u64) -> bool {
        let Some(request) = self.conns[c].inflight.pop_front() else {
            return false;
        };
        self.completed_all += 1;
        if request.measured {
            self.counts.count_status(status);
            self.latency
                .saturating_record(ns_to_us(now - request.intended_ns));
            self.service
                .saturating_record(ns_to_us(now - request.sent_ns));
        }
        true
    }

    fn on_eof(&mut self, c: usize, now: u64) {
        let conn = &mut self.conns[c];
        let leftover = conn.read_len > 0;
        match conn.parser.on_eof() {
            Ok(Some(done)) if !leftover => {
                if !self.complete(c, done.status, now) {
                    return self.drop_conn(c, DropReason::Protocol, now);
                }
                self.drop_conn(c, DropReason::Closed, now);
            }
            Ok(None) if !leftover => self.drop_conn(c, DropReason::Closed, now),
            _ => self.drop_conn(c, DropReason::Failed, now),
        }
    }

    /// Closes connection `c`, settles its requests in flight by `why`, and schedules
    /// the reconnect (at once after a clean close, after a backoff after a failure).
    fn drop_conn(&mut self, c: usize, why: DropReason, now: u64) {
        let conn = &mut self.conns[c];
        if let Some(socket) = conn.socket.take() {
            let _ = self.poller.delete(socket.as_raw_fd());
        }
        conn.generation = conn.generation.wrapping_add(1);
        conn.parser = ResponseParser::default();
        conn.read_len = 0;
        conn.write_buf.clear();
        let backoff = if why == DropReason::Closed {
            0
        } else {
            RECONNECT_BACKOFF_NS
        };
        conn.state = ConnState::Down {
            retry_at_ns: now + backoff,
        };
        while let Some(request) = self.conns[c].inflight.pop_front() {
            if !request.measured {
                continue;
            }
            match why {
                DropReason::Timeout => self.count_timeout(request.intended_ns, now, true),
                DropReason::Protocol => self.counts.protocol_errors += 1,
                DropReason::Failed | DropReason::Closed => self.counts.connection_errors += 1,
            }
        }
        if why == DropReason::Closed && self.schedule_pending(now) {
            let _ = self.reconnect(c, now);
        }
    }

    /// Starts a non-blocking connect for `c`.
    fn reconnect(&mut self, c: usize, now: u64) -> io::Result<()> {
        // Registered for writability: that is how a non-blocking connect reports success.
        let result = connect_nonblocking(self.plan.addr).and_then(|socket| {
            self.poller
                .add(socket.as_raw_fd(), c as u64, Interest::ReadWrite)?;
            Ok(socket)
        });
        let conn = &mut self.conns[c];
        match result {
            Ok(socket) => {
                conn.socket = Some(socket);
                conn.state = ConnState::Connecting { since_ns: now };
                self.counts.reconnects += 1;
                Ok(())
            }
            Err(e) => {
                conn.state = ConnState::Down {
                    retry_at_ns: now + RECONNECT_BACKOFF_NS,
                };
                Err(e)
            }
        }
    }

    /// Timeouts, stuck connects and reconnects; runs every `TIMEOUT_SCAN_INTERVAL_NS`.
    fn housekeeping(&mut self, now: u64) {
        self.next_scan_ns = now + TIMEOUT_SCAN_INTERVAL_NS;
        for c in 0..self.conns.len() {
            match self.conns[c].state {
                ConnState::Open => {
                    let oldest = self.conns[c].inflight.front().map(|r| r.intended_ns);
                    if oldest.is_some_and(|t| now - t > self.plan.timeout_ns) {
                        self.drop_conn(c, DropReason::Timeout, now);
                    }
                }
                ConnState::Connecting { since_ns } if now - since_ns > CONNECT_TIMEOUT_NS => {
                    self.drop_conn(c, DropReason::Failed, now);
                }
                ConnState::Down { retry_at_ns }
                    if retry_at_ns <= now && self.schedule_pending(now) =>
                {
                    let _ = self.reconnect(c, now);
                }
                _ => {}
            }
        }
    }

    /// Sends this interval's measurements and starts a fresh interval.
    fn emit(&mut self, out: &Sender<WorkerMsg>, is_final: bool) {
        self.tick += 1;
        self.next_tick_ns += TICK_NS;
        let interval = Interval {
            tick: self.tick,
            is_final,
            completed_all: std::mem::take(&mut self.completed_all),
            counts: std::mem::take(&mut self.counts),
            latency: std::mem::replace(&mut self.latency, new_histogram()),
            service: std::mem::replace(&mut self.service, new_histogram()),
            send_lag: std::mem::replace(&mut self.send_lag, new_histogram()),
        };
        let _ = out.send(WorkerMsg::Interval(Box::new(interval)));
    }
}

/// Starts a TCP connect without blocking (completion is reported as writability).
fn connect_nonblocking(addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => Ok(socket.into()),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(socket.into()),
        Err(e) => Err(e),
    }
}
