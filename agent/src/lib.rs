//! The agent sidecar: owns the strategy table (the only writer), serves the control
//! socket that operators and `bidderctl` speak, and audits every change.
//!
//! The request's journey: [`socket`] (credentials, line limits, timeouts) →
//! [`protocol`] (parse, version) → [`verbs`] (validate against [`bounds`] and the
//! bidder's catalog from the stats table, append to the [`audit`] log, write the
//! table) → the bidder's table reader → the decision.

pub mod audit;
pub mod bounds;
pub mod config;
pub mod controller;
pub mod fleet;
pub mod llm;
pub mod metrics;
pub mod protocol;
pub mod socket;
pub mod units;
pub mod upgrade;
pub mod verbs;

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bidder_common::clock::Clock;
use config::AgentConfig;
use verbs::Agent;

/// How often the agent stamps its heartbeat into the strategy table's header.
pub const HEARTBEAT_INTERVAL_MS: u64 = 1_000;
/// How often the controller's timer looks whether a step is due on the calendar.
pub const CONTROLLER_TICK_MS: u64 = 1_000;

/// Takes the table, binds the socket and serves until `shutdown` completes, stamping
/// every change with `clock` ([`Clock::system`] in production); removes
/// the socket file on the way out. The table lock is taken first, so a second agent
/// fails before it could steal the first one's socket.
pub async fn run_until(
    config: AgentConfig,
    config_path: Option<PathBuf>,
    clock: Clock,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    let socket_path = config.socket.path.clone();
    let mut agent = Agent::open(config.clone(), config_path, clock)?;
    // Bound before the socket: a taken port leaves no socket file behind.
    let scrapes = match config.metrics_addr()? {
        None => None,
        Some(addr) => {
            let scrapes = metrics::bind(addr).await?;
            agent.metrics_addr = scrapes.local_addr().ok();
            tracing::info!(addr = ?agent.metrics_addr, "serving GET /metrics");
            Some(scrapes)
        }
    };
    let listener = socket::bind(&config.socket)?;
    let agent = Arc::new(Mutex::new(agent));
    let exporter = {
        let agent = Arc::clone(&agent);
        async move {
            match scrapes {
                Some(listener) => metrics::serve(listener, agent).await,
                None => std::future::pending().await,
            }
        }
    };
    let beat = Arc::clone(&agent);
    let heartbeat = async move {
        let mut every = tokio::time::interval(Duration::from_millis(HEARTBEAT_INTERVAL_MS));
        loop {
            every.tick().await;
            beat.lock().unwrap_or_else(|p| p.into_inner()).heartbeat();
        }
    };
    let strategist = llm::run(Arc::clone(&agent));
    let stepper = Arc::clone(&agent);
    let controller = async move {
        let mut every = tokio::time::interval(Duration::from_millis(CONTROLLER_TICK_MS));
        loop {
            every.tick().await;
            stepper
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .controller_tick();
        }
    };
    let replication = fleet::run(Arc::clone(&agent));
    tokio::select! {
        () = socket::serve(listener, agent) => {}
        () = replication => {}
        () = strategist => {}
        () = heartbeat => {}
        () = controller => {}
        () = exporter => {}
        () = shutdown => {}
    }
    let _ = std::fs::remove_file(&socket_path);
    Ok(())
}
