//! `loadgen`: open-loop load against an OpenRTB bidder, with an SLA verdict, and a
//! saturation search for the highest rate that keeps it.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Args, Parser, Subcommand};

use perf::corpus::{self, Corpus};
use perf::report::{RunReport, Sla};
use perf::request::Randomise;
use perf::run::{run, RunConfig, Workload};
use perf::saturate::{saturate, step_line, step_table_header, SearchPlan, StepSettings};
use perf::target::Target;

/// The run met the SLA (saturate: some rate met it).
const EXIT_PASS: u8 = 0;
/// The run could not be carried out: bad arguments, corpus, or connection.
const EXIT_ERROR: u8 = 1;
/// The run completed and missed the SLA (saturate: no rate met it).
const EXIT_SLA_FAILED: u8 = 3;

const SLA_HELP: &str = "\
SLA rule: the run passes when the latency at --sla-percentile (default p99), measured from
each request's intended send time, is at most the threshold, and at most --max-error-pct of
requests failed (any status other than 200/204, timeouts, connection or protocol errors).
The threshold is --tmax-ms minus --network-allowance-ms (the part of the exchange's deadline
left once the network round trip is paid: 100 - 40 = 60 ms by default), or --sla-ms if set.

Exit codes: 0 SLA met (saturate: some rate met it), 1 could not run, 2 bad usage,
3 SLA missed (saturate: no rate met it).";

#[derive(Parser)]
#[command(name = "loadgen", version, about = "Open-loop OpenRTB load generator with SLA verdicts", after_help = SLA_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One run at a constant arrival rate (or closed-loop), then a report.
    #[command(after_help = SLA_HELP)]
    Run(RunArgs),
    /// Find the highest rate that still meets the SLA: step up, then bisect.
    #[command(after_help = SLA_HELP)]
    Saturate(SaturateArgs),
}

#[derive(Args)]
struct RunArgs {
    /// Offered load, requests per second (all connections together).
    #[arg(long, required_unless_present = "closed_loop")]
    rate: Option<f64>,
    /// Measured duration, seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration_s: f64,
    /// Warm-up before measuring, seconds: sent and answered but not recorded.
    #[arg(long, default_value_t = 2.0)]
    warmup_s: f64,
    /// Diagnostic: each connection sends its next request when a response arrives, and
    /// latency is taken from the actual send. Hides server stalls; do not judge by it.
    #[arg(long, conflicts_with = "rate")]
    closed_loop: bool,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args)]
struct SaturateArgs {
    /// First rate tried, req/s.
    #[arg(long, default_value_t = 1_000.0)]
    start_rate: f64,
    /// Highest rate tried, req/s.
    #[arg(long, default_value_t = 1_000_000.0)]
    max_rate: f64,
    /// Rate multiplier per step until a step fails (or divisor until one passes).
    #[arg(long, default_value_t = 2.0)]
    growth_factor: f64,
    /// Stop when the passing and failing rates are this close, percent.
    #[arg(long, default_value_t = 5.0)]
    precision_pct: f64,
    /// Most steps (runs) in the search.
    #[arg(long, default_value_t = 16)]
    max_steps: usize,
    /// Measured duration of each step, seconds.
    #[arg(long, default_value_t = 3.0)]
    step_duration_s: f64,
    /// Warm-up of each step, seconds.
    #[arg(long, default_value_t = 1.0)]
    step_warmup_s: f64,
    /// Pause between steps so the server drains, milliseconds.
    #[arg(long, default_value_t = 500)]
    cooldown_ms: u64,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args)]
struct CommonArgs {
    /// Target URL, http only, with the path, e.g. http://127.0.0.1:8080/bid/exchange-a
    #[arg(long)]
    url: String,
    /// Keep-alive connections, spread over the threads.
    #[arg(short = 'c', long, default_value_t = 32)]
    connections: usize,
    /// Requests in flight per connection (1 = no pipelining).
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Generator threads, each with its own event loop.
    #[arg(short = 't', long, default_value_t = 1)]
    threads: usize,
    /// Give up on a request this long after its intended send time, milliseconds.
    #[arg(long, default_value_t = 1_000)]
    timeout_ms: u64,
    /// Corpus directory [default: ../shared/fixtures/openrtb from the repository root]
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Send bodies with Content-Encoding: gzip.
    #[arg(long)]
    gzip: bool,
    /// User ids are drawn from this many distinct users.
    #[arg(long, default_value_t = 1_000_000)]
    user_population: u64,
    /// Floors vary by up to ± this percentage of the corpus floor.
    #[arg(long, default_value_t = 20.0)]
    floor_jitter_pct: f64,
    /// site.domain values, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "news.example,sport.example,weather.example,recipes.example,games.example,video.example"
    )]
    domains: Vec<String>,
    /// app.bundle values, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "com.example.news,com.example.puzzle,com.example.runner,com.example.weather"
    )]
    bundles: Vec<String>,
    /// Seed of the request randomisation [default: from the clock]
    #[arg(long)]
    seed: Option<u64>,
    /// The exchange's tmax, milliseconds.
    #[arg(long, default_value_t = 100.0)]
    tmax_ms: f64,
    /// Share of tmax taken by the network round trip, milliseconds.
    #[arg(long, default_value_t = 40.0)]
    network_allowance_ms: f64,
    /// Latency threshold, milliseconds, instead of tmax − allowance.
    #[arg(long)]
    sla_ms: Option<f64>,
    /// Latency percentile the SLA applies to.
    #[arg(long, default_value_t = 99.0)]
    sla_percentile: f64,
    /// Error budget, percent of requests.
    #[arg(long, default_value_t = 1.0)]
    max_error_pct: f64,
    /// A send this much later than intended, with a connection free, is the generator
    /// falling behind, microseconds.
    #[arg(long, default_value_t = 1_000)]
    late_send_us: u64,
    /// Print the report as JSON on stdout (progress lines stay on stderr).
    #[arg(long)]
    json: bool,
    /// Print no progress lines on stderr.
    #[arg(long)]
    quiet: bool,
}

impl CommonArgs {
    fn sla(&self) -> Result<Sla> {
        Sla::new(
            self.tmax_ms,
            self.network_allowance_ms,
            self.sla_ms,
            self.sla_percentile,
            self.max_error_pct,
        )
        .map_err(anyhow::Error::msg)
    }

    fn prepare(&self) -> Result<(Target, Workload)> {
        let target = Target::parse(&self.url)?;
        let dir = self.corpus.clone().unwrap_or_else(corpus::default_dir);
        let corpus =
            Corpus::load(&dir).context("loading the corpus (pass --corpus DIR to use another)")?;
        let randomise = Randomise {
            user_population: self.user_population,
            floor_jitter_pct: self.floor_jitter_pct,
            domains: self.domains.clone(),
            bundles: self.bundles.clone(),
        };
        let workload = Workload::build(&corpus, &target, self.gzip, randomise)?;
        Ok((target, workload))
    }

    fn config(
        &self,
        target: Target,
        rate_rps: Option<f64>,
        warmup_s: f64,
        duration_s: f64,
        progress: bool,
    ) -> Result<RunConfig> {
        let seed = self.seed.unwrap_or_else(|| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            now.map_or(0, |d| d.as_nanos() as u64)
        });
        Ok(RunConfig {
            target,
            rate_rps,
            connections: self.connections,
            pipeline_depth: self.pipeline,
            threads: self.threads,
            warmup: seconds(warmup_s, "warm-up")?,
            duration: seconds(duration_s, "duration")?,
            timeout: Duration::from_millis(self.timeout_ms),
            late_send_threshold: Duration::from_micros(self.late_send_us),
            progress,
            seed,
        })
    }
}

fn seconds(s: f64, what: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| anyhow::anyhow!("{what} must be a non-negative number of seconds"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Run(args) => run_command(args),
        Command::Saturate(args) => saturate_command(args),
    };
    match outcome {
        Ok(true) => ExitCode::from(EXIT_PASS),
        Ok(false) => ExitCode::from(EXIT_SLA_FAILED),
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Returns whether the SLA was met.
fn run_command(args: RunArgs) -> Result<bool> {
    let sla = args.common.sla()?;
    let (target, workload) = args.common.prepare()?;
    let rate = if args.closed_loop { None } else { args.rate };
    let config = args.common.config(
        target,
        rate,
        args.warmup_s,
        args.duration_s,
        !args.common.quiet,
    )?;
    let outcome = run(&config, &workload)?;
    let report = RunReport::new(&config, &workload, &sla, &outcome);
    if args.common.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(report.sla.pass)
}

/// Returns whether some rate met the SLA.
fn saturate_command(args: SaturateArgs) -> Result<bool> {
    let sla = args.common.sla()?;
    let (target, workload) = args.common.prepare()?;
    let base = args.common.config(
        target,
        None,
        args.step_warmup_s,
        args.step_duration_s,
        false,
    )?;
    let plan = SearchPlan {
        start_rps: args.start_rate,
        max_rps: args.max_rate,
        growth_factor: args.growth_factor,
        precision_pct: args.precision_pct,
        max_steps: args.max_steps,
    };
    let settings = StepSettings {
        duration: base.duration,
        warmup: base.warmup,
        cooldown: Duration::from_millis(args.cooldown_ms),
    };
    let quiet = args.common.quiet;
    if !quiet {
        eprintln!("{}", step_table_header(&sla));
    }
    let report = saturate(&base, &workload, &sla, &plan, &settings, |i, step| {
        if !quiet {
            eprintln!("{}", step_line(i, step));
        }
    })?;
    // The live table already went to this same terminal: do not print it twice.
    let shown_live = !quiet && std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    if args.common.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if shown_live {
        print!("{}", report.result_text());
    } else {
        print!("{}", report.to_text(&sla));
    }
    Ok(report.result.highest_passing_rps.is_some())
}
