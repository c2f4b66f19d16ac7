//! The engines: I/O only. Each accepts connections, reads bytes and writes answers,
//! and hands every request to [`crate::http`] and the bid stage ([`crate::bid`]), which
//! do the rest the same way for both. [`ring`] is the hand-rolled io_uring event loop
//! per pinned core; [`tokio`] the same over tokio (hosts without io_uring, and the
//! benchmark baseline).
//!
//! What is not I/O is here once: the settings both serve with ([`ServeConfig`]), the
//! one [`EngineError`], the `SO_REUSEPORT` listener builder (`listener`) and the worker
//! thread lifecycle (`workers`: spawn, pin, report ready, join).

pub mod config;
mod error;
mod listener;
pub mod ring;
pub mod tokio;
mod workers;

pub use config::ServeConfig;
pub use error::EngineError;
pub use workers::{confine_to_spare_cpus, Liveness};
