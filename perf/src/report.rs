//! The run report: what an operator reads (a table) and what scripts read (`--json`,
//! field names stable and documented in perf/README.md), and the SLA verdict.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::run::{RunConfig, RunOutcome, Workload};

/// Version tag of the run report's JSON; bumped when a field changes meaning.
pub const RUN_SCHEMA: &str = "loadgen.run/1";
/// The generator "fell behind" when more than this many sends per thousand left later
/// than the late-send threshold while a connection was free. One stray wake-up on a
/// busy host should not void a run; a systematic lag should.
const LATE_SENDS_TOLERATED_PER_MILLE: u64 = 1;

/// The latency objective a run is judged against.
#[derive(Clone, Debug, PartialEq)]
pub struct Sla {
    /// Which latency percentile must meet the threshold, e.g. 99.0.
    pub percentile: f64,
    pub threshold_us: u64,
    /// Highest share of requests (percent) that may fail: any status but 200/204,
    /// timeouts, connection and protocol errors.
    pub max_error_pct: f64,
    /// Where the threshold came from, for the rule text.
    pub basis: String,
}

impl Sla {
    /// The threshold is `tmax_ms − network_allowance_ms`, the share of the exchange's
    /// deadline left once the network round trip is paid, unless `explicit_ms` is set.
    pub fn new(
        tmax_ms: f64,
        network_allowance_ms: f64,
        explicit_ms: Option<f64>,
        percentile: f64,
        max_error_pct: f64,
    ) -> Result<Sla, String> {
        if !(percentile > 0.0 && percentile < 100.0) {
            return Err("the SLA percentile must be above 0 and below 100".into());
        }
        if !(0.0..=100.0).contains(&max_error_pct) {
            return Err("the error budget must be 0..=100 percent".into());
        }
        let (threshold_ms, basis) = match explicit_ms {
            Some(ms) => (ms, "set with --sla-ms".to_owned()),
            None => (
                tmax_ms - network_allowance_ms,
                format!(
                    "tmax {} ms − network allowance {} ms",
                    num(tmax_ms),
                    num(network_allowance_ms)
                ),
            ),
        };
        if threshold_ms.is_nan() || threshold_ms <= 0.0 {
            return Err(format!("the SLA threshold must be above 0 ms ({basis})"));
        }
        Ok(Sla {
            percentile,
            threshold_us: (threshold_ms * 1_000.0).round() as u64,
            max_error_pct,
            basis,
        })
    }

    /// `p99`, `p99.9`, …
    pub fn label(&self) -> String {
        format!("p{}", num(self.percentile))
    }

    /// The rule in one line, as printed in reports.
    pub fn rule(&self) -> String {
        format!(
            "{} ≤ {} ms ({}) and errors ≤ {}%",
            self.label(),
            num(self.threshold_us as f64 / 1_000.0),
            self.basis,
            num(self.max_error_pct)
        )
    }

    fn judge(&self, latency: &Histogram<u64>, errors: u64, finished: u64) -> SlaVerdict {
        let observed_us =
            (!latency.is_empty()).then(|| latency.value_at_quantile(self.percentile / 100.0));
        let error_pct = pct(errors, finished);
        let pass = finished > 0
            && observed_us.is_some_and(|us| us <= self.threshold_us)
            && error_pct <= self.max_error_pct;
        SlaVerdict {
            rule: self.rule(),
            percentile: self.percentile,
            threshold_us: self.threshold_us,
            observed_us,
            max_error_pct: self.max_error_pct,
            error_pct,
            pass,
        }
    }
}

/// The verdict of one run against the SLA.
#[derive(Clone, Debug, Serialize)]
pub struct SlaVerdict {
    pub rule: String,
    pub percentile: f64,
    pub threshold_us: u64,
    /// Latency at the SLA percentile; absent when nothing was measured.
    pub observed_us: Option<u64>,
    pub max_error_pct: f64,
    pub error_pct: f64,
    pub pass: bool,
}

/// Latency distribution summary, all in µs.
#[derive(Clone, Debug, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
    pub p99_99: u64,
    pub max: u64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        let q = |q: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(q)
            }
        };
        Percentiles {
            count: h.len(),
            mean: if h.is_empty() { 0.0 } else { h.mean() },
            p50: q(0.50),
            p90: q(0.90),
            p99: q(0.99),
            p99_9: q(0.999),
            p99_99: q(0.9999),
            max: if h.is_empty() { 0 } else { h.max() },
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ConfigEcho {
    /// Offered rate, req/s; absent in closed-loop mode.
    pub target_rps: Option<f64>,
    pub connections: usize,
    pub pipeline_depth: usize,
    pub threads: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub timeout_ms: f64,
    pub late_send_threshold_us: u64,
    pub gzip: bool,
    pub corpus_requests: usize,
    /// Seed of the request randomisation: the same seed replays the same requests.
    pub seed: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct RequestCounts {
    pub sent: u64,
    pub completed: u64,
    pub status_200: u64,
    pub status_204: u64,
    pub status_other: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
    pub timeouts: u64,
    /// Of the timeouts, requests never sent (no connection had room in time).
    pub timeouts_unsent: u64,
    pub connection_errors: u64,
    pub protocol_errors: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct GeneratorReport {
    pub cpu_user_s: f64,
    pub cpu_sys_s: f64,
    /// (user + sys) / wall time of the whole run, in percent of one core.
    pub cpu_pct_of_core: f64,
    /// (user + sys) per response received (warm-up included), µs.
    pub cpu_us_per_response: f64,
    /// How late sends left while a connection was free, µs.
    pub send_lag_us: Percentiles,
    pub late_sends: u64,
    pub queued_sends: u64,
    pub reconnects: u64,
    pub fell_behind: bool,
}

/// The whole report of one run.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub schema: &'static str,
    pub target_url: String,
    /// `open-loop` or `closed-loop`.
    pub mode: &'static str,
    pub config: ConfigEcho,
    /// Responses to measured requests per second of measured duration.
    pub achieved_rps: f64,
    pub requests: RequestCounts,
    /// 200 responses over all measured requests that finished (a timeout is no bid).
    pub bid_rate: f64,
    /// Latency from the intended send time (coordinated omission corrected).
    pub latency_us: Percentiles,
    /// Latency from the actual send: what a closed-loop client would report.
    pub service_time_us: Percentiles,
    pub generator: GeneratorReport,
    pub sla: SlaVerdict,
}

impl RunReport {
    /// Builds the report of a finished run.
    pub fn new(
        config: &RunConfig,
        workload: &Workload,
        sla: &Sla,
        outcome: &RunOutcome,
    ) -> RunReport {
        let c = &outcome.counts;
        let cpu_us = outcome.cpu_user_us + outcome.cpu_sys_us;
        let duration_s = config.duration.as_secs_f64();
        RunReport {
            schema: RUN_SCHEMA,
            target_url: config.target.url.clone(),
            mode: if config.rate_rps.is_some() {
                "open-loop"
            } else {
                "closed-loop"
            },
            config: ConfigEcho {
                target_rps: config.rate_rps,
                connections: config.connections,
                pipeline_depth: config.pipeline_depth,
                threads: config.threads,
                duration_s,
                warmup_s: config.warmup.as_secs_f64(),
                timeout_ms: config.timeout.as_secs_f64() * 1_000.0,
                late_send_threshold_us: config.late_send_threshold.as_micros() as u64,
                gzip: workload.gzip(),
                corpus_requests: workload.len(),
                seed: config.seed,
            },
            achieved_rps: c.completed as f64 / duration_s,
            requests: RequestCounts {
                sent: c.sent,
                completed: c.completed,
                status_200: c.status_200,
                status_204: c.status_204,
                status_other: c.status_other,
                status_4xx: c.status_4xx,
                status_5xx: c.status_5xx,
                timeouts: c.timeouts,
                timeouts_unsent: c.unsent,
                connection_errors: c.connection_errors,
                protocol_errors: c.protocol_errors,
            },
            bid_rate: ratio(c.status_200, c.finished()),
            latency_us: Percentiles::of(&outcome.latency),
            service_time_us: Percentiles::of(&outcome.service),
            generator: GeneratorReport {
                cpu_user_s: outcome.cpu_user_us as f64 / 1e6,
                cpu_sys_s: outcome.cpu_sys_us as f64 / 1e6,
                cpu_pct_of_core: 100.0 * ratio(cpu_us, outcome.elapsed_us),
                cpu_us_per_response: ratio(cpu_us, outcome.completed_all),
                send_lag_us: Percentiles::of(&outcome.send_lag),
                late_sends: c.late_sends,
                queued_sends: c.queued_sends,
                reconnects: c.reconnects,
                fell_behind: c.late_sends * 1_000 > c.sent * LATE_SENDS_TOLERATED_PER_MILLE,
            },
            sla: sla.judge(&outcome.latency, c.errors(), c.finished()),
        }
    }

    /// The human table.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let cfg = &self.config;
        let r = &self.requests;
        let finished = r.completed + r.timeouts + r.connection_errors + r.protocol_errors;
        let _ = writeln!(s, "loadgen {}  {}", self.mode, self.target_url);
        let offered = cfg.target_rps.map_or("as fast as answered".into(), |rps| {
            format!("{} req/s", num(rps))
        });
        let _ = writeln!(
            s,
            "  offered     {offered} for {} s after {} s warm-up; {} connections × pipeline {}, {} thread(s), gzip {}, {} corpus requests",
            num(cfg.duration_s),
            num(cfg.warmup_s),
            cfg.connections,
            cfg.pipeline_depth,
            cfg.threads,
            if cfg.gzip { "on" } else { "off" },
            cfg.corpus_requests
        );
        let _ = writeln!(
            s,
            "  achieved    {:.1} req/s ({} responses, {} requests sent)",
            self.achieved_rps, r.completed, r.sent
        );
        let share = |n: u64| format!("{n} ({:.1}%)", pct(n, finished));
        let _ = writeln!(
            s,
            "  status      200: {}  204: {}  other: {}  4xx: {}  5xx: {}  timeouts: {} ({} never sent)  conn errors: {}  protocol errors: {}",
            share(r.status_200),
            share(r.status_204),
            r.status_other,
            r.status_4xx,
            r.status_5xx,
            r.timeouts,
            r.timeouts_unsent,
            r.connection_errors,
            r.protocol_errors
        );
        let _ = writeln!(
            s,
            "  bid rate    {:.1}% (200 among all measured requests)",
            100.0 * self.bid_rate
        );
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "  latency, ms          p50       p90       p99     p99.9    p99.99       max"
        );
        let row = |name: &str, p: &Percentiles| {
            let ms = |us: u64| format!("{:>10.3}", us as f64 / 1_000.0);
            format!(
                "  {name:<15}{}{}{}{}{}{}\n",
                ms(p.p50),
                ms(p.p90),
                ms(p.p99),
                ms(p.p99_9),
                ms(p.p99_99),
                ms(p.max)
            )
        };
        s.push_str(&row("from intended", &self.latency_us));
        s.push_str(&row("from sent", &self.service_time_us));
        let _ = writeln!(
            s,
            "  (from intended = coordinated-omission corrected, the SLA basis; from sent = what a closed-loop client reports)"
        );
        let _ = writeln!(s);
        self.generator_text(&mut s);
        let sla = &self.sla;
        let observed = sla.observed_us.map_or("n/a".into(), |us| {
            format!("{} ms", num(us as f64 / 1_000.0))
        });
        let _ = writeln!(s, "  SLA         {}", sla.rule);
        let _ = writeln!(
            s,
            "              observed {observed}, errors {:.2}%  →  {}",
            sla.error_pct,
            if sla.pass { "PASS" } else { "FAIL" }
        );
        s
    }

    fn generator_text(&self, s: &mut String) {
        let g = &self.generator;
        let _ = writeln!(
            s,
            "  generator   CPU {:.1}% of one core (user {:.2} s + sys {:.2} s; {:.1} µs per response)",
            g.cpu_pct_of_core, g.cpu_user_s, g.cpu_sys_s, g.cpu_us_per_response
        );
        let verdict = if g.fell_behind {
            "FELL BEHIND: sends left late with connections free (generator short of CPU), so this run understates the server"
        } else {
            "kept up"
        };
        let _ = writeln!(
            s,
            "              send lag p99 {} ms, max {} ms; {} sends later than {} ms — {verdict}",
            num(g.send_lag_us.p99 as f64 / 1_000.0),
            num(g.send_lag_us.max as f64 / 1_000.0),
            g.late_sends,
            num(self.config.late_send_threshold_us as f64 / 1_000.0)
        );
        let _ = writeln!(
            s,
            "              {} sends waited for a free connection; {} reconnects",
            g.queued_sends, g.reconnects
        );
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn pct(a: u64, b: u64) -> f64 {
    100.0 * ratio(a, b)
}

/// A number without trailing zeros: 60, 99.9, 0.125.
pub(crate) fn num(x: f64) -> String {
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_histogram;

    #[test]
    fn the_threshold_is_tmax_less_the_network_allowance_unless_set() {
        let sla = Sla::new(100.0, 40.0, None, 99.0, 1.0).unwrap();
        assert_eq!(sla.threshold_us, 60_000);
        assert_eq!(
            sla.rule(),
            "p99 ≤ 60 ms (tmax 100 ms − network allowance 40 ms) and errors ≤ 1%"
        );
        let explicit = Sla::new(100.0, 40.0, Some(2.5), 99.9, 0.0).unwrap();
        assert_eq!(
            (explicit.threshold_us, explicit.label()),
            (2_500, "p99.9".to_owned())
        );
        assert!(Sla::new(30.0, 40.0, None, 99.0, 1.0).is_err());
        assert!(Sla::new(100.0, 40.0, None, 100.0, 1.0).is_err());
    }

    #[test]
    fn the_verdict_needs_latency_and_errors_within_bounds_and_some_data() {
        let sla = Sla::new(100.0, 40.0, None, 99.0, 1.0).unwrap();
        let mut h = new_histogram();
        for _ in 0..1_000 {
            h.record(50_000).unwrap();
        }
        assert!(sla.judge(&h, 0, 1_000).pass);
        assert!(
            sla.judge(&h, 10, 1_000).pass,
            "1% errors is within a 1% budget"
        );
        assert!(!sla.judge(&h, 11, 1_000).pass);
        for _ in 0..20 {
            h.record(70_000).unwrap();
        }
        assert!(!sla.judge(&h, 0, 1_020).pass, "p99 now above 60 ms");
        assert!(
            !sla.judge(&new_histogram(), 0, 0).pass,
            "no data is no pass"
        );
    }
}
