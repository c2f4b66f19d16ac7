//! The engines: I/O only. Each accepts connections, reads bytes and writes answers,
//! and hands every request to [`crate::http`] and the bid stage ([`crate::bid`]), which
//! do the rest the same way for both. [`ring`] is the hand-rolled io_uring event loop
//! per pinned core; [`tokio`] the same over tokio (hosts without io_uring, and the
//! benchmark baseline).

pub mod ring;
pub mod tokio;
