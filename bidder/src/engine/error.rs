//! Why an engine did not start or did not stop cleanly: one error for both engines, so
//! the daemon handles them the same way (and falls back from io_uring to tokio on
//! [`EngineError::Unsupported`] only).

use std::io;

use thiserror::Error;

use crate::http::HttpConfigError;

/// Why an engine did not start, or did not stop cleanly.
#[derive(Debug, Error)]
pub enum EngineError {
    /// A setting the engine cannot run with; the message names the field.
    #[error("config: {0}")]
    Config(String),
    /// The HTTP settings are invalid.
    #[error("http config: {0}")]
    Http(#[from] HttpConfigError),
    /// The kernel lacks something the engine needs; the tokio engine runs anywhere.
    #[error("unsupported on this kernel: {0}")]
    Unsupported(String),
    /// A system call failed during start.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// A worker thread panicked.
    #[error("worker {0} panicked")]
    WorkerPanicked(usize),
}

impl EngineError {
    /// A closure for `map_err` that names what was being done.
    pub(crate) fn io(what: &'static str) -> impl FnOnce(io::Error) -> EngineError {
        move |source| EngineError::Io { what, source }
    }
}
