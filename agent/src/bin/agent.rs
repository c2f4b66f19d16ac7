//! `agent`: the sidecar process. Runs until SIGTERM or SIGINT.
//!
//! Exit codes: 0 stopped on a signal; 1 could not start (configuration, table lock,
//! socket, audit log — the message says which and what to do).

use std::path::PathBuf;
use std::process::ExitCode;

use bidder_common::clock::Clock;
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
        agent::run_until(config, cli.config, Clock::system(), stop).await
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
