//! `bidder`: the daemon's command line.
//!
//! Exit codes: 0 success; 1 the configuration is invalid, the daemon failed (e.g. the
//! XDP front could not be attached with `xdp.required`), or `bidder xdp` found nothing
//! pinned or could not read or detach it; 2 a request or the command line is invalid.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use bidder::bid::pipeline::{Answer, Arrival, Bidding, Pipeline};
use bidder::catalog::Catalog;
use bidder::clock::{monotonic_now, Clock};
use bidder::config::Config;
use bidder::daemon::{Daemon, LoadError};
use bidder::decide::strategy::StaticStrategy;
use bidder::xdp::{link, Status};
use clap::{Parser, Subcommand};

const EXIT_CONFIG: u8 = 1;
const EXIT_INPUT: u8 = 2;

#[derive(Parser)]
#[command(name = "bidder", version, about = "Bare-metal OpenRTB bidder")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the bidder: serve bid requests until SIGTERM; SIGHUP reloads the config.
    Run {
        #[arg(long)]
        config: PathBuf,
        /// Simulation mode: read the time of day from the `[simulation] clock_file`
        /// the auction simulator moves, not the host's clock. Never in production.
        #[arg(long)]
        simulate: bool,
    },
    /// Benchmark the engine alone: serve the configuration's bid listener with its
    /// engine, cores and HTTP limits, answering every request 204 without reading it.
    /// Bids nothing; no admin or notice listener. Not for production.
    ServeIo {
        #[arg(long)]
        config: PathBuf,
    },
    /// Validate a configuration file; print every problem with its line and fix.
    CheckConfig {
        #[arg(long)]
        config: PathBuf,
    },
    /// Dry run: decide bid requests against a configuration and print the response
    /// JSON or each imp's no-bid reason. No budget is spent.
    Decide {
        #[arg(long)]
        config: PathBuf,
        /// Partner (by name) the requests come from.
        #[arg(long)]
        partner: Option<String>,
        /// Request files (`-` or none: standard input).
        requests: Vec<PathBuf>,
    },
    /// The XDP front's pinned state, readable and fixable without a running bidder.
    Xdp {
        #[command(subcommand)]
        command: XdpCommand,
    },
}

/// Default of `--pin-dir`: the default of `xdp.pin_dir`.
const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/bidder";

#[derive(Subcommand)]
enum XdpCommand {
    /// Where the program is attached (interface, mode, program id) and every partner's
    /// packets and bytes passed and dropped by reason. Exit 1 when nothing is pinned.
    Status {
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
        /// One JSON object instead of the tables.
        #[arg(long)]
        json: bool,
    },
    /// Detach the pinned link (recovery after a crash: the program keeps filtering
    /// until then). The maps stay pinned. Detaching twice is fine.
    Detach {
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run { config, simulate } => run(&config, simulate),
        Command::ServeIo { config } => serve_io(&config),
        Command::CheckConfig { config } => check_config(&config),
        Command::Decide {
            config,
            partner,
            requests,
        } => decide(&config, partner.as_deref(), &requests),
        Command::Xdp {
            command: XdpCommand::Status { pin_dir, json },
        } => xdp_status(&pin_dir, json),
        Command::Xdp {
            command: XdpCommand::Detach { pin_dir },
        } => xdp_detach(&pin_dir),
    }
}

fn xdp_status(pin_dir: &Path, json: bool) -> ExitCode {
    use std::io::Write as _;
    match Status::read(pin_dir) {
        Ok(status) => {
            let text = if json {
                format!("{}\n", status.json())
            } else {
                status.table()
            };
            // A reader that stops early (`| head`) is not an error.
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn xdp_detach(pin_dir: &Path) -> ExitCode {
    match link::detach(pin_dir) {
        Ok(Some(state)) if state.ifindex == 0 => {
            println!(
                "removed link {} (program {}): its interface was already gone; maps stay pinned at {}",
                state.link_id,
                state.program_id,
                pin_dir.display()
            );
            ExitCode::SUCCESS
        }
        Ok(Some(state)) => {
            let interface = link::interface_name(state.ifindex)
                .unwrap_or_else(|| format!("ifindex {}", state.ifindex));
            println!(
                "detached link {} (program {}) from {interface}; maps stay pinned at {}",
                state.link_id,
                state.program_id,
                pin_dir.display()
            );
            ExitCode::SUCCESS
        }
        Ok(None) => {
            println!(
                "nothing to detach: no link pinned at {}",
                pin_dir.join(bidder::xdp::pins::LINK_FILE).display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr at `RUST_LOG` (default `info`), in colour only on a terminal.
fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn run(path: &Path, simulate: bool) -> ExitCode {
    init_logging();
    let daemon = Config::load(path)
        .map_err(|e| LoadError(e).to_string())
        .and_then(|config| {
            let clock = calendar(path, &config, simulate)?;
            bidder::daemon::confine_housekeeping(&config.server.cores);
            Daemon::from_config(path, config, clock).map_err(|e| e.to_string())
        });
    let daemon = match daemon {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("{}: not started", path.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match daemon.serve() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The calendar `bidder run` reads: the host's, or in simulation mode (the flag and
/// the `[simulation]` section, both or neither) the simulator's clock file.
fn calendar(path: &Path, config: &Config, simulate: bool) -> Result<Clock, String> {
    let file = config.simulation_clock_path();
    match (simulate, file) {
        (false, None) => Ok(Clock::system()),
        (false, Some(_)) => Err(format!(
            "{}: [simulation]: this configuration runs on a simulator's clock, which a production bidder refuses; fix: remove [simulation], or start `bidder run --simulate` for a simulation",
            path.display()
        )),
        (true, None) => Err(format!(
            "{}: --simulate needs a [simulation] section with the clock_file the simulator moves; fix: add it, or drop --simulate",
            path.display()
        )),
        (true, Some(file)) => {
            let clock = bidder::clock::ClockFile::open_clock(&file).map_err(|e| e.to_string())?;
            tracing::warn!(
                clock_file = %file.display(),
                "SIMULATION MODE: the time of day comes from the simulator's clock file, not the host clock (bidder_simulated_clock is 1 on /metrics); never run this in production"
            );
            Ok(clock)
        }
    }
}

fn serve_io(path: &Path) -> ExitCode {
    init_logging();
    let config = match load(path) {
        Ok((config, _)) => config,
        Err(code) => return code,
    };
    match bidder::daemon::serve_io_only(&config.server) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: &Path) -> Result<(Config, Catalog), ExitCode> {
    let config = Config::load(path).map_err(|errors| {
        for e in &errors {
            eprintln!("error: {e}");
        }
        eprintln!(
            "{}: {} problem(s); nothing was applied",
            path.display(),
            errors.len()
        );
        ExitCode::from(EXIT_CONFIG)
    })?;
    let catalog = Catalog::compile(&config).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_CONFIG)
    })?;
    Ok((config, catalog))
}

fn check_config(path: &Path) -> ExitCode {
    match load(path) {
        Ok((config, catalog)) => {
            let creatives: usize = catalog.campaigns.iter().map(|c| c.creatives.len()).sum();
            println!(
                "{}: ok: {} partners, {} campaigns, {} creatives",
                path.display(),
                catalog.partners.len(),
                catalog.campaigns.len(),
                creatives
            );
            if config.simulation.is_some() {
                println!(
                    "{}: note: [simulation]: runs only as `bidder run --simulate` (a simulator's clock); a production bidder refuses it",
                    path.display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn decide(config_path: &Path, partner: Option<&str>, requests: &[PathBuf]) -> ExitCode {
    let catalog = match load(config_path) {
        Ok((_, catalog)) => catalog,
        Err(code) => return code,
    };
    let partner_idx = match partner.map(|name| (name, catalog.partner_by_name(name))) {
        Some((name, None)) => {
            eprintln!(
                "error: --partner {name}: no such partner in {}",
                config_path.display()
            );
            return ExitCode::from(EXIT_INPUT);
        }
        Some((_, idx)) => idx,
        None => None,
    };
    let strategy = Arc::new(StaticStrategy {
        shading_ppm: catalog.settings.default_shading_ppm,
    });
    let bidding = Bidding::new(catalog, strategy, Clock::system());
    let mut worker = match Pipeline::new(&bidding, 0, Arc::default()) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {}: notice signer: {e}", config_path.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let stdin = [PathBuf::from("-")];
    let inputs = if requests.is_empty() {
        &stdin[..]
    } else {
        requests
    };
    let mut worst = ExitCode::SUCCESS;
    for path in inputs {
        if inputs.len() > 1 {
            println!("== {}", path.display());
        }
        let mut body = match read_request(path) {
            Ok(body) => body,
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                worst = ExitCode::from(EXIT_INPUT);
                continue;
            }
        };
        // A dry run has no network deadline: count from a moment that leaves the full
        // budget however slow the terminal is.
        let arrival = Arrival {
            partner: partner_idx,
            now_ms: bidding.clock.now_unix_ms(),
            at: monotonic_now(),
            format: bidder::respond::Format::Json,
        };
        match worker.bid(&bidding, &mut body, arrival) {
            Answer::Bid(json) => println!("{}", String::from_utf8_lossy(json)),
            Answer::NoBid { reason, body } => {
                println!("no bid: {reason} (nbr {})", reason.nbr());
                if let Some(body) = body {
                    println!("{}", String::from_utf8_lossy(body));
                }
            }
            Answer::Invalid(e) => {
                eprintln!("error: {}: invalid bid request: {e}", path.display());
                worst = ExitCode::from(EXIT_INPUT);
            }
        }
        print_imp_reasons(&worker);
    }
    worst
}

/// After each request, the per-imp reasons of imps that did not bid.
fn print_imp_reasons(worker: &Pipeline) {
    for (imp, reason) in worker.last_no_bids() {
        println!("  imp[{imp}]: no bid: {reason} (nbr {})", reason.nbr());
    }
}

fn read_request(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut body)?;
    } else {
        body = std::fs::read(path)?;
    }
    Ok(body)
}
