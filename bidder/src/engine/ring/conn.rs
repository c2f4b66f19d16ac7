//! Connection slots: allocated once per worker, reused by generation.

use std::os::fd::RawFd;
use std::time::Instant;

use crate::http::ConnState;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Slot unused.
    Free,
    /// Serving requests.
    Open,
    /// Our last response is out and our side is shut: reading and discarding until the
    /// client closes or the linger deadline passes, so it sees the response, not a reset.
    Lingering,
    /// Shut down both ways; waiting for in-flight operations before the descriptor is
    /// closed and the slot freed.
    Closing,
}

/// Unserved bytes left in a provided receive buffer, kept (not copied) while the
/// connection waits for an output buffer; holding it is backpressure on receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Held {
    pub(crate) bid: u16,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// One connection slot.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) phase: Phase,
    pub(crate) fd: RawFd,
    /// Bumped each time the slot is freed; completions carry it, so a late completion
    /// for an earlier connection in the same slot is recognised and ignored.
    pub(crate) generation: u32,
    pub(crate) http: ConnState,
    /// Unanswered bytes of a partial request (or of pipelined requests waiting for an
    /// output buffer). This connection's own memory, so slow clients cannot starve a
    /// shared pool: it grows to what the request needs (at most the worker's
    /// `max_input_bytes`) and keeps [`KEEP_INPUT_BYTES`] of capacity between requests.
    pub(crate) input: Vec<u8>,
    /// A provided buffer kept while waiting for output (see [`Held`]).
    pub(crate) held: Option<Held>,
    /// Output buffer being filled or written: bytes in it, bytes already sent.
    pub(crate) output: Option<u32>,
    pub(crate) out_len: usize,
    pub(crate) out_sent: usize,
    /// An answer that did not fit behind the others in `output`: its buffer and length,
    /// written once `output` is.
    pub(crate) next_output: Option<(u32, usize)>,
    pub(crate) writing: bool,
    pub(crate) recv_armed: bool,
    /// Queued for an output buffer.
    pub(crate) waiting_for_output: bool,
    /// Close (lingering) once the output is written.
    pub(crate) close_after_write: bool,
    /// When the request in progress started (its first unanswered byte arrived).
    pub(crate) partial_since: Option<Instant>,
    /// When the connection last had activity; the idle clock.
    pub(crate) last_active: Instant,
    /// When lingering ends, or when a write started (to bound slow readers).
    pub(crate) phase_since: Instant,
    /// Position in the worker's list of open slots.
    pub(crate) open_index: usize,
    /// No byte has arrived yet: the first-byte deadline applies, not the idle one.
    pub(crate) silent: bool,
}

/// Input capacity a slot keeps once its partial request is served (more is freed): a
/// typical fragmented bid request fits, so a busy slot does not allocate per request.
pub(crate) const KEEP_INPUT_BYTES: usize = 8 * 1024;

impl Conn {
    pub(crate) fn free(now: Instant) -> Self {
        Conn {
            phase: Phase::Free,
            fd: -1,
            generation: 0,
            http: ConnState::default(),
            input: Vec::new(),
            held: None,
            output: None,
            out_len: 0,
            out_sent: 0,
            next_output: None,
            writing: false,
            recv_armed: false,
            waiting_for_output: false,
            close_after_write: false,
            partial_since: None,
            last_active: now,
            phase_since: now,
            open_index: 0,
            silent: false,
        }
    }

    /// Resets a free slot for a newly accepted socket, keeping its generation.
    pub(crate) fn open(&mut self, fd: RawFd, now: Instant, open_index: usize) {
        debug_assert_eq!(self.phase, Phase::Free);
        let generation = self.generation;
        let input = std::mem::take(&mut self.input);
        debug_assert!(input.is_empty(), "a free slot holds no input");
        *self = Conn::free(now);
        self.generation = generation;
        self.input = input;
        self.phase = Phase::Open;
        self.fd = fd;
        self.open_index = open_index;
        self.silent = true;
    }

    /// Forgets the buffered input, keeping at most [`KEEP_INPUT_BYTES`] of capacity.
    pub(crate) fn drop_input(&mut self) {
        self.input.clear();
        if self.input.capacity() > KEEP_INPUT_BYTES {
            self.input = Vec::new();
        }
    }

    /// No operation of ours is pending on the socket.
    pub(crate) fn quiet(&self) -> bool {
        !self.writing && !self.recv_armed
    }
}

/// Encodes and decodes completion `user_data`: operation kind, slot generation, slot.
pub(crate) mod token {
    /// Operation kinds.
    pub(crate) const ACCEPT: u8 = 1;
    pub(crate) const RECV: u8 = 2;
    pub(crate) const WRITE: u8 = 3;
    pub(crate) const TICK: u8 = 4;
    pub(crate) const WAKE: u8 = 5;
    pub(crate) const CANCEL: u8 = 6;

    const GENERATION_MASK: u32 = (1 << 24) - 1;

    pub(crate) fn encode(kind: u8, generation: u32, slot: u32) -> u64 {
        (u64::from(kind) << 56) | (u64::from(generation & GENERATION_MASK) << 32) | u64::from(slot)
    }

    /// `(kind, generation, slot)`.
    pub(crate) fn decode(user_data: u64) -> (u8, u32, u32) {
        (
            (user_data >> 56) as u8,
            (user_data >> 32) as u32 & GENERATION_MASK,
            user_data as u32,
        )
    }

    /// True if a completion's generation belongs to the slot's current connection.
    pub(crate) fn same_generation(token_generation: u32, slot_generation: u32) -> bool {
        token_generation == slot_generation & GENERATION_MASK
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn tokens_round_trip() {
            let t = encode(WRITE, (1 << 24) + 7, 0xdead_beef);
            assert_eq!(decode(t), (WRITE, 7, 0xdead_beef));
            assert!(same_generation(7, (1 << 24) + 7));
            assert!(!same_generation(7, 8));
        }
    }
}
