//! `auction-sim`: plays simulated days of an exchange against the real bidder (and
//! agent) and compares strategies. See `perf/src/sim/mod.rs` and the README.
//!
//! Exit codes: 0 done; 1 a run failed (the message names the scenario, strategy and
//! seed, with the bidder's log); 2 the command line is invalid.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use perf::sim::{self, processes::Binaries, Options, Scenario, Strategy};

#[derive(Parser)]
#[command(
    name = "auction-sim",
    about = "Play simulated exchange days against the bidder"
)]
struct Cli {
    /// The bidder binary (default: `bidder` beside this one).
    #[arg(long)]
    bidder: Option<PathBuf>,
    /// The agent binary (default: `agent` beside this one).
    #[arg(long)]
    agent: Option<PathBuf>,
    /// Scenarios to run (`all`: every standard one).
    #[arg(long, value_delimiter = ',', default_value = "default")]
    scenario: Vec<String>,
    /// Seeds; each draws another day, the same for every strategy.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    seeds: Vec<u64>,
    /// Strategies to play (the oracle is always computed).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "floor_x1.10,shading_0.90,unshaded,mode_price,controller"
    )]
    strategies: Vec<String>,
    /// Override the scenario's expected auctions per day (smaller: faster).
    #[arg(long)]
    auctions_per_day: Option<u32>,
    /// Where run folders, report.json, report.md and the pictures go.
    #[arg(long, default_value = "target/auction-sim")]
    out: PathBuf,
    /// Print one JSON object instead of the Markdown tables.
    #[arg(long)]
    json: bool,
    /// Skip the `controller@<baseline>` rows (the controller replayed on budgets
    /// searched to buy a baseline's impressions): faster.
    #[arg(long)]
    no_equal_impressions: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let beside = |name: &str| {
        std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.join(name)))
            .unwrap_or_else(|| PathBuf::from(name))
    };
    let mut scenarios = Vec::new();
    for name in &cli.scenario {
        if name == "all" {
            scenarios.extend(Scenario::standard());
            continue;
        }
        match Scenario::by_name(name) {
            Some(s) => scenarios.push(s),
            None => {
                let known: Vec<String> = Scenario::standard().into_iter().map(|s| s.name).collect();
                eprintln!(
                    "--scenario {name}: unknown; one of: all, {}",
                    known.join(", ")
                );
                return ExitCode::from(2);
            }
        }
    }
    let mut strategies = Vec::new();
    for name in &cli.strategies {
        match Strategy::from_name(name) {
            Some(s) => strategies.push(s),
            None => {
                let known: Vec<&str> = Strategy::ALL.iter().map(|s| s.name()).collect();
                eprintln!("--strategies {name}: unknown; one of: {}", known.join(", "));
                return ExitCode::from(2);
            }
        }
    }
    if cli.no_equal_impressions {
        for s in &mut scenarios {
            s.match_impressions_of.clear();
        }
    }
    if cli.seeds.is_empty() {
        eprintln!("--seeds: at least one");
        return ExitCode::from(2);
    }
    if let Some(n) = cli.auctions_per_day {
        if n == 0 {
            eprintln!("--auctions-per-day: at least 1");
            return ExitCode::from(2);
        }
        for s in &mut scenarios {
            s.market.auctions_per_day = n;
        }
    }
    let options = Options {
        binaries: Binaries {
            bidder: cli.bidder.unwrap_or_else(|| beside("bidder")),
            agent: cli.agent.unwrap_or_else(|| beside("agent")),
        },
        seeds: cli.seeds,
        strategies,
        work_dir: cli.out.join("runs"),
    };
    match sim::run_all(&options, &scenarios, &cli.out) {
        Ok(report) => {
            if cli.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report.json()).expect("serialisable")
                );
            } else {
                print!("{}", report.markdown());
                println!(
                    "\nreports: {0}/report.md, {0}/report.json",
                    cli.out.display()
                );
                for picture in &report.pictures {
                    println!("picture: {}", picture.display());
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("auction-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}
