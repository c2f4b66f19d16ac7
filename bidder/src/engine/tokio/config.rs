//! Settings of the tokio engine, each with its unit in its name.

use crate::engine::config::{first_failure, ServeConfig};

pub use crate::limits::MAX_WORKERS;

/// The tokio engine's configuration: what both engines share, plus its threads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokioEngineConfig {
    /// Listener, connection cap, deadlines and HTTP, as for the io_uring engine.
    pub serve: ServeConfig,
    /// Worker threads, each with its own current-thread runtime and listener.
    pub workers: usize,
    /// Empty: workers are left to the scheduler (containers often forbid pinning).
    /// Otherwise worker *i* is pinned to core `cores[i]`; the length must be `workers`.
    pub cores: Vec<usize>,
}

impl Default for TokioEngineConfig {
    fn default() -> Self {
        TokioEngineConfig {
            serve: ServeConfig::default(),
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cores: Vec::new(),
        }
    }
}

impl TokioEngineConfig {
    /// Checks what the engine cannot run with; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        self.serve.validate()?;
        first_failure(&[
            (
                (1..=MAX_WORKERS).contains(&self.workers),
                "workers must be in 1..=1024",
            ),
            (
                self.cores.is_empty() || self.cores.len() == self.workers,
                "cores must be empty or name one core per worker",
            ),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_field() {
        assert_eq!(TokioEngineConfig::default().validate(), Ok(()));
        let cases: [(TokioEngineConfig, &str); 4] = [
            (
                TokioEngineConfig {
                    workers: 0,
                    ..TokioEngineConfig::default()
                },
                "workers",
            ),
            (
                TokioEngineConfig {
                    workers: 2,
                    cores: vec![0],
                    ..TokioEngineConfig::default()
                },
                "cores",
            ),
            (
                TokioEngineConfig {
                    serve: ServeConfig {
                        max_connections: 0,
                        ..ServeConfig::default()
                    },
                    ..TokioEngineConfig::default()
                },
                "max_connections",
            ),
            (
                TokioEngineConfig {
                    serve: ServeConfig {
                        request_timeout_ms: 0,
                        ..ServeConfig::default()
                    },
                    ..TokioEngineConfig::default()
                },
                "request_timeout_ms",
            ),
        ];
        for (config, field) in cases {
            let err = config.validate().unwrap_err();
            assert!(err.contains(field), "{err}");
        }
    }
}
