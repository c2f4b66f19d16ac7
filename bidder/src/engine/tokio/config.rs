//! Settings of the tokio engine, each with its unit in its name. Field names match the
//! io_uring engine's `RingConfig` where they mean the same thing.

use std::net::SocketAddr;

use crate::http::HttpConfig;

pub use crate::limits::MAX_CONNECTIONS_PER_WORKER;

pub use crate::limits::MAX_WORKERS;

/// The tokio engine's configuration. Sizes are per worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokioEngineConfig {
    /// Address every worker's `SO_REUSEPORT` listener binds; port 0 picks one port for all.
    pub listen_addr: SocketAddr,
    /// Worker threads, each with its own current-thread runtime and listener.
    pub workers: usize,
    /// Empty: workers are left to the scheduler (containers often forbid pinning).
    /// Otherwise worker *i* is pinned to core `cores[i]`; the length must be `workers`.
    pub cores: Vec<usize>,
    /// Listen backlog of each worker's socket.
    pub listen_backlog: u32,
    /// Connections one worker serves at once; past this, new connections get 503 and
    /// are closed (counted as shed).
    pub max_connections: u32,
    /// A keep-alive connection with no request in progress is closed after this long;
    /// also how long a response write may wait for a client that does not read.
    pub idle_timeout_ms: u64,
    /// A request must arrive whole (head and body) within this long of its first byte,
    /// or it gets 408 and the connection closes.
    pub request_timeout_ms: u64,
    /// After answering with `connection: close`, keep reading (and discarding) for up to
    /// this long so the client sees our response rather than a reset.
    pub close_linger_ms: u64,
    /// On shutdown, requests in progress get this long to finish.
    pub shutdown_grace_ms: u64,
    /// HTTP limits and routing.
    pub http: HttpConfig,
}

impl Default for TokioEngineConfig {
    fn default() -> Self {
        TokioEngineConfig {
            listen_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cores: Vec::new(),
            listen_backlog: 4096,
            max_connections: 4096,
            idle_timeout_ms: 60_000,
            request_timeout_ms: 1_000,
            close_linger_ms: 500,
            shutdown_grace_ms: 2_000,
            http: HttpConfig::default(),
        }
    }
}

impl TokioEngineConfig {
    /// Checks what the engine cannot run with; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        let checks: [(bool, &str); 5] = [
            (
                (1..=MAX_WORKERS).contains(&self.workers),
                "workers must be in 1..=1024",
            ),
            (
                self.cores.is_empty() || self.cores.len() == self.workers,
                "cores must be empty or name one core per worker",
            ),
            (
                (1..=MAX_CONNECTIONS_PER_WORKER).contains(&self.max_connections),
                "max_connections must be in 1..=2^20",
            ),
            (
                self.idle_timeout_ms >= 1 && self.request_timeout_ms >= 1,
                "idle_timeout_ms and request_timeout_ms must be at least 1",
            ),
            (
                self.listen_backlog >= 1,
                "listen_backlog must be at least 1",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, why)) => Err((*why).to_owned()),
            None => Ok(()),
        }
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
                    max_connections: 0,
                    ..TokioEngineConfig::default()
                },
                "max_connections",
            ),
            (
                TokioEngineConfig {
                    request_timeout_ms: 0,
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
