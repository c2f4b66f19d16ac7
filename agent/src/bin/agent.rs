//! `agent`: the sidecar process. Runs until SIGTERM or SIGINT.
//!
//! Exit codes: 0 stopped on a signal; 1 could not start (configuration, table lock,
//! socket, audit log — the message says which and what to do).

use std::path::PathBuf;
use std::process::ExitCode;

use bidder_common::clock::{Clock, ClockFile};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "agent",
    version,
    about = "Bidder sidecar: strategy table writer and control socket"
)]
struct Cli {
    /// Configuration file (TOML); without it every default applies.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Simulation mode: read the time of day from the `[simulation] clock_file` the
    /// auction simulator moves, not the host's clock. Never in production.
    #[arg(long)]
    simulate: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rig_agent=warn,rig_core=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = match &cli.config {
        Some(path) => agent::config::AgentConfig::load(path),
        None => Ok(agent::config::AgentConfig::default()),
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(1);
        }
    };
    let clock = match calendar(&config, cli.simulate) {
        Ok(clock) => clock,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let socket = config.socket.path.display().to_string();
    let result = runtime.block_on(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| format!("signals: {e}"))?;
        let stop = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        tracing::info!(socket, pid = std::process::id(), "serving");
        agent::run_until(config, cli.config, clock, stop).await
    });
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(1)
        }
    }
}

/// The host's clock, or in simulation mode (the flag and `[simulation]`, both or
/// neither) the simulator's clock file.
fn calendar(config: &agent::config::AgentConfig, simulate: bool) -> Result<Clock, String> {
    match (simulate, &config.simulation) {
        (false, None) => Ok(Clock::system()),
        (false, Some(_)) => Err(
            "[simulation]: this configuration runs on a simulator's clock, which a production agent refuses; fix: remove [simulation], or start `agent --simulate` for a simulation".to_owned(),
        ),
        (true, None) => Err(
            "--simulate needs a [simulation] section with the clock_file the simulator moves; fix: add it, or drop --simulate".to_owned(),
        ),
        (true, Some(sim)) => {
            let clock = ClockFile::open_clock(&sim.clock_file).map_err(|e| e.to_string())?;
            tracing::warn!(
                clock_file = %sim.clock_file.display(),
                "SIMULATION MODE: the time of day comes from the simulator's clock file, not the host clock (bidder_agent_simulated_clock is 1 on /metrics); never run this in production"
            );
            Ok(clock)
        }
    }
}
