//! One load run: start the workers, print a progress line each second, merge what they
//! measured, and measure the generator's own CPU use.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use hdrhistogram::Histogram;
use thiserror::Error;

use crate::corpus::Corpus;
use crate::poller::{now_ns, process_cpu_us};
use crate::request::{HeadParts, Randomise, RequestTemplate, TemplateError};
use crate::stats::{new_histogram, Counts};
use crate::target::Target;
use crate::worker::{self, Pacing, WorkerMsg, WorkerPlan};

/// Most generator threads; the generator should need far fewer cores than the server.
pub const MAX_THREADS: usize = 64;
/// Most connections in one run.
pub const MAX_CONNECTIONS: usize = 4_096;
/// Deepest pipeline per connection.
pub const MAX_PIPELINE_DEPTH: usize = 128;
/// Highest rate accepted, req/s; far above what one host can generate.
pub const MAX_RATE_RPS: f64 = 10_000_000.0;
/// Delay between "all connected" and the first intended send, so every worker sees
/// the start time before it passes.
const START_DELAY_NS: u64 = 2_000_000;
/// How long the run waits for a worker message before it declares the run stuck.
const WORKER_SILENCE_LIMIT: Duration = Duration::from_secs(10);

/// Why a run could not be carried out (distinct from a run that missed its SLA).
#[derive(Debug, Error)]
pub enum RunError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("{0}")]
    Connect(String),
    #[error("generator failed: {0}")]
    Worker(String),
}

/// The request mix, built once and reused by every run of a saturation search.
pub struct Workload {
    templates: Vec<RequestTemplate>,
    randomise: Randomise,
    gzip: bool,
}

impl Workload {
    /// Turns every corpus request into a request template for `target`.
    pub fn build(
        corpus: &Corpus,
        target: &Target,
        gzip: bool,
        randomise: Randomise,
    ) -> Result<Workload, RunError> {
        randomise.validate()?;
        let head = HeadParts {
            path: target.path.clone(),
            host: target.host.clone(),
            gzip,
        };
        let templates = corpus
            .requests
            .iter()
            .map(|(_, request)| RequestTemplate::build(request, &head, &randomise))
            .collect();
        Ok(Workload {
            templates,
            randomise,
            gzip,
        })
    }

    /// Number of distinct corpus requests in the mix.
    pub fn len(&self) -> usize {
        self.templates.len()
    }

    /// True if the mix has no requests (a corpus never yields that).
    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    /// Whether bodies are sent with `Content-Encoding: gzip`.
    pub fn gzip(&self) -> bool {
        self.gzip
    }
}

/// How to load the server for one run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub target: Target,
    /// Requests per second for the open loop; `None` runs closed-loop.
    pub rate_rps: Option<f64>,
    pub connections: usize,
    pub pipeline_depth: usize,
    pub threads: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub timeout: Duration,
    /// A send later than this behind its intended time, with a connection free,
    /// counts as the generator falling behind.
    pub late_send_threshold: Duration,
    /// Print a progress line to stderr each second.
    pub progress: bool,
    pub seed: u64,
}

impl RunConfig {
    /// Checks every bound before any thread starts.
    pub fn validate(&self) -> Result<(), RunError> {
        let bad = |what: String| Err(RunError::Config(what));
        if !(1..=MAX_THREADS).contains(&self.threads) {
            return bad(format!("threads must be 1..={MAX_THREADS}"));
        }
        if self.connections < self.threads || self.connections > MAX_CONNECTIONS {
            return bad(format!(
                "connections must be at least the thread count and at most {MAX_CONNECTIONS}"
            ));
        }
        if !(1..=MAX_PIPELINE_DEPTH).contains(&self.pipeline_depth) {
            return bad(format!("pipeline depth must be 1..={MAX_PIPELINE_DEPTH}"));
        }
        if let Some(rate) = self.rate_rps {
            if !(rate > 0.0 && rate <= MAX_RATE_RPS) {
                return bad(format!(
                    "rate must be above 0 and at most {MAX_RATE_RPS} req/s"
                ));
            }
        }
        if self.duration.is_zero() || self.timeout.is_zero() {
            return bad("duration and timeout must be above zero".into());
        }
        Ok(())
    }
}

/// Everything a run measured; `report` turns it into the printed report.
#[derive(Debug)]
pub struct RunOutcome {
    pub(crate) counts: Counts,
    pub(crate) latency: Histogram<u64>,
    pub(crate) service: Histogram<u64>,
    pub(crate) send_lag: Histogram<u64>,
    /// Responses received including warm-up, for CPU cost per request.
    pub(crate) completed_all: u64,
    pub(crate) cpu_user_us: u64,
    pub(crate) cpu_sys_us: u64,
    pub(crate) elapsed_us: u64,
}

/// Runs `config` against its target with `workload`; blocks for warm-up + duration
/// plus the drain (at most the timeout).
pub fn run(config: &RunConfig, workload: &Workload) -> Result<RunOutcome, RunError> {
    config.validate()?;
    let (cpu_user0, cpu_sys0) = process_cpu_us();
    let began = now_ns();
    let (out_tx, out_rx) = mpsc::channel();
    let mut starts = Vec::with_capacity(config.threads);
    let mut handles = Vec::with_capacity(config.threads);
    for index in 0..config.threads {
        let (start_tx, start_rx) = mpsc::channel();
        let plan = worker_plan(config, workload, index);
        let out = out_tx.clone();
        let handle = thread::Builder::new()
            .name(format!("loadgen-{index}"))
            .spawn(move || worker::run(plan, start_rx, out))
            .map_err(|e| RunError::Worker(format!("spawning a thread: {e}")))?;
        starts.push(start_tx);
        handles.push(handle);
    }
    drop(out_tx);
    let result = wait_ready(&out_rx, config.threads).and_then(|()| {
        let start_ns = now_ns() + START_DELAY_NS;
        for start in &starts {
            let _ = start.send(start_ns);
        }
        collect(config, &out_rx)
    });
    drop(starts);
    for handle in handles {
        let _ = handle.join();
    }
    let mut outcome = result?;
    let (cpu_user1, cpu_sys1) = process_cpu_us();
    outcome.cpu_user_us = cpu_user1 - cpu_user0;
    outcome.cpu_sys_us = cpu_sys1 - cpu_sys0;
    outcome.elapsed_us = (now_ns() - began) / 1_000;
    Ok(outcome)
}

fn worker_plan(config: &RunConfig, workload: &Workload, index: usize) -> WorkerPlan {
    let per = config.connections / config.threads;
    let extra = usize::from(index < config.connections % config.threads);
    WorkerPlan {
        index,
        workers: config.threads,
        addr: config.target.addr,
        connections: per + extra,
        pipeline_depth: config.pipeline_depth,
        pacing: config
            .rate_rps
            .map_or(Pacing::ClosedLoop, |rate_rps| Pacing::OpenLoop { rate_rps }),
        warmup_ns: config.warmup.as_nanos() as u64,
        duration_ns: config.duration.as_nanos() as u64,
        timeout_ns: config.timeout.as_nanos() as u64,
        late_send_threshold_ns: config.late_send_threshold.as_nanos() as u64,
        templates: workload.templates.clone(),
        randomise: workload.randomise.clone(),
        seed: config.seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
    }
}

fn wait_ready(rx: &mpsc::Receiver<WorkerMsg>, workers: usize) -> Result<(), RunError> {
    for _ in 0..workers {
        match rx.recv_timeout(WORKER_SILENCE_LIMIT) {
            Ok(WorkerMsg::Ready(Ok(()))) => {}
            Ok(WorkerMsg::Ready(Err(e))) => return Err(RunError::Connect(e)),
            Ok(WorkerMsg::Failed(e)) => return Err(RunError::Worker(e)),
            Ok(WorkerMsg::Interval(_)) => unreachable!("no interval before the start"),
            Err(_) => return Err(RunError::Worker("a worker did not report ready".into())),
        }
    }
    Ok(())
}

/// Merges worker intervals until every worker sent its final one; prints progress.
fn collect(config: &RunConfig, rx: &mpsc::Receiver<WorkerMsg>) -> Result<RunOutcome, RunError> {
    let mut outcome = RunOutcome {
        counts: Counts::default(),
        latency: new_histogram(),
        service: new_histogram(),
        send_lag: new_histogram(),
        completed_all: 0,
        cpu_user_us: 0,
        cpu_sys_us: 0,
        elapsed_us: 0,
    };
    // Per tick: how many workers reported it and their responses in that second.
    let mut ticks: BTreeMap<u64, (usize, u64)> = BTreeMap::new();
    let mut finals = 0;
    let warmup_s = config.warmup.as_secs_f64();
    while finals < config.threads {
        let interval = match rx.recv_timeout(config.timeout + WORKER_SILENCE_LIMIT) {
            Ok(WorkerMsg::Interval(interval)) => interval,
            Ok(WorkerMsg::Failed(e)) => return Err(RunError::Worker(e)),
            Ok(WorkerMsg::Ready(_)) => unreachable!("workers report ready once"),
            Err(_) => return Err(RunError::Worker("a worker went silent".into())),
        };
        outcome.counts.add(&interval.counts);
        outcome.completed_all += interval.completed_all;
        for (total, part) in [
            (&mut outcome.latency, &interval.latency),
            (&mut outcome.service, &interval.service),
            (&mut outcome.send_lag, &interval.send_lag),
        ] {
            total.add(part).expect("histograms share bounds");
        }
        if interval.is_final {
            finals += 1;
            continue;
        }
        let entry = ticks.entry(interval.tick).or_default();
        entry.0 += 1;
        entry.1 += interval.completed_all;
        if entry.0 == config.threads {
            let responses = entry.1;
            ticks.remove(&interval.tick);
            if config.progress {
                let phase = if (interval.tick as f64) <= warmup_s {
                    " (warm-up)"
                } else {
                    ""
                };
                eprintln!(
                    "{}",
                    progress_line(interval.tick, responses, &outcome, phase)
                );
            }
        }
    }
    Ok(outcome)
}

fn progress_line(tick: u64, responses: u64, so_far: &RunOutcome, phase: &str) -> String {
    let p99 = if so_far.latency.is_empty() {
        "-".to_owned()
    } else {
        format!(
            "{:.3} ms",
            so_far.latency.value_at_quantile(0.99) as f64 / 1_000.0
        )
    };
    format!(
        "[{tick:>4}s] {responses:>8} resp/s  p99 so far {p99:>10}  errors {:>6}  late sends {}{phase}",
        so_far.counts.errors(),
        so_far.counts.late_sends,
    )
}
