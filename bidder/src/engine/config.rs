//! The settings both engines serve connections with, written once; each engine's own
//! config ([`RingConfig`](super::ring::RingConfig),
//! [`TokioEngineConfig`](super::tokio::TokioEngineConfig)) adds only what its I/O needs.

use std::net::SocketAddr;

use crate::http::HttpConfig;
use crate::limits::MAX_CONNECTIONS_PER_WORKER;

/// Where and how an engine serves: the listener, the connection cap, the deadlines and
/// HTTP. Sizes are per worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConfig {
    /// Address every worker's `SO_REUSEPORT` listener binds; port 0 picks one port for all.
    pub listen_addr: SocketAddr,
    /// Listen backlog of each worker's socket.
    pub listen_backlog: u32,
    /// Connections one worker serves at once; past this, new connections get 503 and
    /// are closed (counted as shed).
    pub max_connections: u32,
    /// A keep-alive connection with no request in progress is closed after this long.
    /// The tokio engine also bounds a response write by it.
    pub idle_timeout_ms: u64,
    /// A new connection that sends nothing within this long is closed: an exchange
    /// opens a connection to send on it, and idle sockets must not hold the slots
    /// honest clients need.
    pub first_byte_timeout_ms: u64,
    /// A request must arrive whole (head and body) within this long of its first byte,
    /// or it gets 408 and the connection closes. The io_uring engine also bounds a
    /// response write by it (a slow reader must not hold an output buffer).
    pub request_timeout_ms: u64,
    /// After answering with `connection: close`, keep reading (and discarding) for up to
    /// this long so the client sees our response rather than a reset.
    pub close_linger_ms: u64,
    /// On shutdown, requests in progress get this long to finish.
    pub shutdown_grace_ms: u64,
    /// HTTP limits and routing.
    pub http: HttpConfig,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            listen_backlog: 4096,
            max_connections: 4096,
            idle_timeout_ms: 60_000,
            first_byte_timeout_ms: 2_000,
            request_timeout_ms: 1_000,
            close_linger_ms: 500,
            shutdown_grace_ms: 2_000,
            http: HttpConfig::default(),
        }
    }
}

impl ServeConfig {
    /// Checks what neither engine can run with; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        let checks: [(bool, &str); 3] = [
            (
                (1..=MAX_CONNECTIONS_PER_WORKER).contains(&self.max_connections),
                "max_connections must be in 1..=2^20",
            ),
            (
                self.idle_timeout_ms >= 1
                    && self.first_byte_timeout_ms >= 1
                    && self.request_timeout_ms >= 1,
                "idle_timeout_ms, first_byte_timeout_ms and request_timeout_ms must be at least 1",
            ),
            (
                self.listen_backlog >= 1,
                "listen_backlog must be at least 1",
            ),
        ];
        first_failure(&checks)
    }
}

/// The message of the first check that fails, if any.
pub(crate) fn first_failure(checks: &[(bool, &str)]) -> Result<(), String> {
    match checks.iter().find(|(ok, _)| !ok) {
        Some((_, why)) => Err((*why).to_owned()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_message_matches_the_limit() {
        assert_eq!(
            MAX_CONNECTIONS_PER_WORKER,
            1 << 20,
            "update the message above"
        );
        let too_many = ServeConfig {
            max_connections: MAX_CONNECTIONS_PER_WORKER + 1,
            ..ServeConfig::default()
        };
        assert!(too_many.validate().unwrap_err().contains("max_connections"));
        assert_eq!(ServeConfig::default().validate(), Ok(()));
    }
}
