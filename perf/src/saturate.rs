//! Saturation search: the highest offered rate at which the server still meets the SLA.
//!
//! Latency under an open loop rises steeply once the offered rate passes capacity (the
//! queue grows for the whole step), so the pass/fail boundary is sharp and a bracket
//! search finds it in few steps: grow the rate geometrically from a start rate until a
//! step fails (or shrink it until one passes), then bisect between the highest passing
//! and the lowest failing rate until they are within the requested precision. Every
//! step is a short, fresh open-loop run, and the number of steps is bounded.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::report::{num, Percentiles, RunReport, Sla};
use crate::run::{run, RunConfig, RunError, Workload};

/// Version tag of the saturation report's JSON.
pub const SATURATE_SCHEMA: &str = "loadgen.saturate/1";
/// Lowest rate the search steps down to, req/s.
const MIN_SEARCH_RATE_RPS: f64 = 1.0;
/// Most steps a search may be given.
pub const MAX_SEARCH_STEPS: usize = 64;

/// How the search moves.
#[derive(Clone, Debug, Serialize)]
pub struct SearchPlan {
    pub start_rps: f64,
    pub max_rps: f64,
    /// Rate multiplier per step while no bracket exists (> 1).
    pub growth_factor: f64,
    /// Stop once `(lowest failing − highest passing) / highest passing` is at most this.
    pub precision_pct: f64,
    pub max_steps: usize,
}

impl SearchPlan {
    fn validate(&self) -> Result<(), RunError> {
        let bad = |what: &str| Err(RunError::Config(what.into()));
        if !(self.start_rps >= MIN_SEARCH_RATE_RPS && self.start_rps <= self.max_rps) {
            return bad("the start rate must be at least 1 req/s and at most the max rate");
        }
        let bad_growth = self.growth_factor.is_nan() || self.growth_factor <= 1.0;
        let bad_precision = self.precision_pct.is_nan() || self.precision_pct <= 0.0;
        if bad_growth || bad_precision {
            return bad("the growth factor must be above 1 and the precision above 0%");
        }
        if !(1..=MAX_SEARCH_STEPS).contains(&self.max_steps) {
            return bad("max steps must be 1..=64");
        }
        Ok(())
    }
}

/// One point of the curve.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    pub target_rps: f64,
    pub achieved_rps: f64,
    pub latency_us: Percentiles,
    /// Latency at the SLA percentile.
    pub observed_us: Option<u64>,
    pub error_pct: f64,
    pub generator_cpu_pct_of_core: f64,
    pub generator_fell_behind: bool,
    pub pass: bool,
}

/// Where the search ended.
#[derive(Clone, Debug, Serialize)]
pub struct SearchResult {
    /// Highest rate that met the SLA; absent if none did.
    pub highest_passing_rps: Option<f64>,
    /// Lowest rate that missed it; absent if none did (capacity above the max rate).
    pub lowest_failing_rps: Option<f64>,
    /// `precision reached`, `max rate passed`, `nothing passed`, or `step limit`.
    pub stop_reason: &'static str,
    /// The lowest failing step had the generator fall behind: the boundary found may be
    /// the generator's, not the server's.
    pub limited_by_generator: bool,
}

/// The saturation report (`--json` prints it as is).
#[derive(Clone, Debug, Serialize)]
pub struct SaturateReport {
    pub schema: &'static str,
    pub target_url: String,
    pub sla_rule: String,
    pub search: SearchPlan,
    pub step_duration_s: f64,
    pub step_warmup_s: f64,
    pub steps: Vec<Step>,
    pub result: SearchResult,
}

/// The bracket search itself, over any probe (a real run, or a model in tests).
pub(crate) fn search<E>(
    plan: &SearchPlan,
    mut probe: impl FnMut(f64) -> Result<Step, E>,
) -> Result<(Vec<Step>, SearchResult), E> {
    let mut steps: Vec<Step> = Vec::new();
    let (mut passing, mut failing): (Option<f64>, Option<f64>) = (None, None);
    let mut rate = plan.start_rps;
    let mut stop_reason = "step limit";
    for _ in 0..plan.max_steps {
        let step = probe(rate)?;
        if step.pass {
            passing = Some(passing.map_or(rate, |p| p.max(rate)));
        } else {
            failing = Some(failing.map_or(rate, |f| f.min(rate)));
        }
        steps.push(step);
        rate = match (passing, failing) {
            (Some(p), None) if p >= plan.max_rps => {
                stop_reason = "max rate passed";
                break;
            }
            (Some(p), None) => (p * plan.growth_factor).min(plan.max_rps),
            (None, Some(f)) if f <= MIN_SEARCH_RATE_RPS => {
                stop_reason = "nothing passed";
                break;
            }
            (None, Some(f)) => (f / plan.growth_factor).max(MIN_SEARCH_RATE_RPS),
            (Some(p), Some(f)) => {
                debug_assert!(p < f, "probes stay inside the bracket");
                if (f - p) / p * 100.0 <= plan.precision_pct {
                    stop_reason = "precision reached";
                    break;
                }
                (p + f) / 2.0
            }
            (None, None) => unreachable!("every step passes or fails"),
        };
    }
    let limited_by_generator = failing.is_some_and(|f| {
        steps
            .iter()
            .any(|s| s.target_rps == f && s.generator_fell_behind)
    });
    let result = SearchResult {
        highest_passing_rps: passing,
        lowest_failing_rps: failing,
        stop_reason,
        limited_by_generator,
    };
    Ok((steps, result))
}

/// Step settings of a saturation search.
#[derive(Clone, Debug)]
pub struct StepSettings {
    pub duration: Duration,
    pub warmup: Duration,
    /// Pause between steps, so the server drains what the last step queued.
    pub cooldown: Duration,
}

/// Runs the search against a real server: each step is `base` at the step's rate with
/// the step durations. `on_step` sees each step as it completes (for progress output).
pub fn saturate(
    base: &RunConfig,
    workload: &Workload,
    sla: &Sla,
    plan: &SearchPlan,
    settings: &StepSettings,
    mut on_step: impl FnMut(usize, &Step),
) -> Result<SaturateReport, RunError> {
    plan.validate()?;
    let mut index = 0;
    let (steps, result) = search(plan, |rate| {
        if index > 0 {
            std::thread::sleep(settings.cooldown);
        }
        let config = RunConfig {
            rate_rps: Some(rate),
            duration: settings.duration,
            warmup: settings.warmup,
            progress: false,
            ..base.clone()
        };
        let outcome = run(&config, workload)?;
        let report = RunReport::new(&config, workload, sla, &outcome);
        let step = Step {
            target_rps: rate,
            achieved_rps: report.achieved_rps,
            latency_us: report.latency_us,
            observed_us: report.sla.observed_us,
            error_pct: report.sla.error_pct,
            generator_cpu_pct_of_core: report.generator.cpu_pct_of_core,
            generator_fell_behind: report.generator.fell_behind,
            pass: report.sla.pass,
        };
        index += 1;
        on_step(index, &step);
        Ok::<Step, RunError>(step)
    })?;
    Ok(SaturateReport {
        schema: SATURATE_SCHEMA,
        target_url: base.target.url.clone(),
        sla_rule: sla.rule(),
        search: plan.clone(),
        step_duration_s: settings.duration.as_secs_f64(),
        step_warmup_s: settings.warmup.as_secs_f64(),
        steps,
        result,
    })
}

/// The header of the step table, printed once before the first step line.
pub fn step_table_header(sla: &Sla) -> String {
    format!(
        "  step     offered    achieved  {:>12}  errors    gen CPU  verdict",
        sla.label()
    )
}

/// One line of the step table.
pub fn step_line(index: usize, step: &Step) -> String {
    let observed = step
        .observed_us
        .map_or("n/a".into(), |us| format!("{:.3} ms", us as f64 / 1_000.0));
    format!(
        "  {index:>4}  {:>10.0}  {:>10.1}  {observed:>12}  {:>5.2}%  {:>6.1}%{}  {}",
        step.target_rps,
        step.achieved_rps,
        step.error_pct,
        step.generator_cpu_pct_of_core,
        if step.generator_fell_behind { "!" } else { " " },
        if step.pass { "pass" } else { "FAIL" }
    )
}

impl SaturateReport {
    /// The human table: the curve, then the result.
    pub fn to_text(&self, sla: &Sla) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "loadgen saturate  {}", self.target_url);
        let _ = writeln!(s, "  SLA: {}", self.sla_rule);
        let _ = writeln!(s, "{}", step_table_header(sla));
        for (i, step) in self.steps.iter().enumerate() {
            let _ = writeln!(s, "{}", step_line(i + 1, step));
        }
        s.push_str(&self.result_text());
        s
    }

    /// The result lines alone, for when the step table was already shown live.
    pub fn result_text(&self) -> String {
        let r = &self.result;
        let mut s = String::from(
            "  (gen CPU: the generator's CPU in % of one core; ! marks a step where it fell behind schedule)\n",
        );
        match (r.highest_passing_rps, r.lowest_failing_rps) {
            (Some(p), Some(f)) => {
                let _ = writeln!(
                    s,
                    "  highest rate meeting the SLA: {} req/s (lowest failing: {} req/s; {})",
                    num(p.round()),
                    num(f.round()),
                    r.stop_reason
                );
            }
            (Some(p), None) => {
                let _ = writeln!(
                    s,
                    "  every rate up to {} req/s met the SLA ({})",
                    num(p.round()),
                    r.stop_reason
                );
            }
            (None, _) => {
                let _ = writeln!(s, "  no rate met the SLA ({})", r.stop_reason);
            }
        }
        if r.limited_by_generator {
            let _ = writeln!(
                s,
                "  WARNING: the generator fell behind at the failing rate: the limit found may be the generator's"
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(start_rps: f64) -> SearchPlan {
        SearchPlan {
            start_rps,
            max_rps: 1_000_000.0,
            growth_factor: 2.0,
            precision_pct: 5.0,
            max_steps: 20,
        }
    }

    /// A server that meets the SLA exactly up to `capacity`.
    fn model(capacity: f64) -> impl FnMut(f64) -> Result<Step, ()> {
        move |rate| {
            Ok(Step {
                target_rps: rate,
                achieved_rps: rate.min(capacity),
                latency_us: Percentiles {
                    count: 0,
                    mean: 0.0,
                    p50: 0,
                    p90: 0,
                    p99: 0,
                    p99_9: 0,
                    p99_99: 0,
                    max: 0,
                },
                observed_us: Some(0),
                error_pct: 0.0,
                generator_cpu_pct_of_core: 1.0,
                generator_fell_behind: false,
                pass: rate <= capacity,
            })
        }
    }

    #[test]
    fn the_search_brackets_capacity_within_the_precision_from_below_and_above() {
        for (start, capacity) in [(1_000.0, 2_345.0), (100_000.0, 2_345.0), (1_000.0, 1_000.0)] {
            let (steps, result) = search(&plan(start), model(capacity)).unwrap();
            let p = result.highest_passing_rps.unwrap();
            let f = result.lowest_failing_rps.unwrap();
            assert!(p <= capacity && f > capacity, "start {start}: {p}..{f}");
            assert!(
                (f - p) / p <= 0.05,
                "start {start}: bracket {p}..{f} wider than 5%"
            );
            assert_eq!(result.stop_reason, "precision reached");
            assert!(steps.len() <= 12, "start {start}: {} steps", steps.len());
        }
    }

    #[test]
    fn the_search_stops_at_the_max_rate_at_nothing_passing_and_at_the_step_limit() {
        let capped = SearchPlan {
            max_rps: 5_000.0,
            ..plan(1_000.0)
        };
        let (_, result) = search(&capped, model(1e9)).unwrap();
        assert_eq!(
            (result.highest_passing_rps, result.stop_reason),
            (Some(5_000.0), "max rate passed")
        );

        let (_, result) = search(&plan(1_000.0), model(0.5)).unwrap();
        assert_eq!(
            (result.highest_passing_rps, result.stop_reason),
            (None, "nothing passed")
        );

        let short = SearchPlan {
            max_steps: 3,
            ..plan(1_000.0)
        };
        let (steps, result) = search(&short, model(1e9)).unwrap();
        assert_eq!((steps.len(), result.stop_reason), (3, "step limit"));
    }
}
