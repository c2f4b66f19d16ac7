//! `auction-sim`: an exchange that plays a simulated day against the real bidder and
//! agent, and measures what a strategy earns.
//!
//! The simulator starts `bidder run --simulate` and `agent --simulate` on configurations
//! of its own, sharing one clock file that it moves to each auction's instant, so a
//! day runs in seconds. It speaks only their real interfaces: bid requests over HTTP,
//! the bids' own `nurl`/`lurl` with the macros filled in as an exchange would, the
//! agent's control socket to set a baseline's strategy. It never touches the tables.
//!
//! `market.rs` draws the day (the same auctions for every strategy under a seed),
//! `exchange.rs` plays it, `processes.rs` runs the bidder and the agent, `report.rs`
//! sums the outcomes and the oracle, `plot.rs` draws them.

pub mod exchange;
mod http;
pub mod market;
pub mod oracle;
pub mod plot;
pub mod processes;
pub mod report;

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use bidder_common::clock::ClockFile;
use serde::Serialize;

use market::{Feedback, Market, SIZES};
use processes::{BidderSetup, Binaries, Stack, CAMPAIGN};
use report::{Plan, Played, Run, Summary};

/// Midnight UTC starting the simulated day (Wednesday 2031-03-05): a fixed date, so
/// runs agree whatever day they run on.
pub const SIM_DAY_START_MS: u64 = 1_930_435_200_000;

/// How a run bids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Strategy {
    /// The seed's static rule: the floor × 1.10, capped at the value.
    FloorX110,
    /// A fixed shading of 0.90 on the value.
    Shading090,
    /// The value itself.
    Unshaded,
    /// A fixed bid at the most likely price to win (the mode of the day's prices to
    /// win; Pan et al.'s baseline), as a static shading.
    ModePrice,
    /// The agent's built-in controller, stepped every [`CONTROLLER_INTERVAL_MS`].
    Controller,
}

/// How often the simulator steps the agent's controller (its default interval).
pub const CONTROLLER_INTERVAL_MS: u64 = 300_000;

impl Strategy {
    pub const ALL: [Strategy; 5] = [
        Strategy::FloorX110,
        Strategy::Shading090,
        Strategy::Unshaded,
        Strategy::ModePrice,
        Strategy::Controller,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::FloorX110 => "floor_x1.10",
            Strategy::Shading090 => "shading_0.90",
            Strategy::Unshaded => "unshaded",
            Strategy::ModePrice => "mode_price",
            Strategy::Controller => "controller",
        }
    }

    pub fn from_name(name: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// A market and the campaign that buys in it.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub name: String,
    pub market: Market,
    /// The daily budget as a share of what unshaded, unpaced bidding would spend.
    pub budget_share_of_unpaced: f64,
    /// The campaign's ceiling as a multiple of its value.
    pub max_bid_share_of_value: f64,
    /// Baselines the controller is also compared with at equal impressions: for each,
    /// the controller plays again on a budget searched so it buys that baseline's
    /// impressions (±[`SAME_IMPRESSIONS_TOLERANCE`]), as row `controller@<baseline>`.
    pub match_impressions_of: Vec<Strategy>,
}

/// "Equal impressions" for the `controller@<baseline>` rows.
pub const SAME_IMPRESSIONS_TOLERANCE: f64 = 0.01;
/// Days played at most per search for that budget (the closest one is kept).
pub const SAME_IMPRESSIONS_MAX_RUNS: usize = 5;

impl Scenario {
    /// The issue's default: segment spread 0.5, market σ 0.6, budget at 50% of the
    /// unpaced spend, min-to-win on wins and losses.
    pub fn default_scenario() -> Scenario {
        Scenario {
            name: "default".into(),
            market: Market::default(),
            budget_share_of_unpaced: 0.5,
            max_bid_share_of_value: 2.0,
            match_impressions_of: vec![
                Strategy::FloorX110,
                Strategy::Unshaded,
                Strategy::ModePrice,
            ],
        }
    }

    /// The scenarios `cargo xtask sim` runs: the default, the two poorer feedback
    /// regimes, and the stress cases of the pacing goals.
    pub fn standard() -> Vec<Scenario> {
        let base = Scenario::default_scenario();
        let with = |name: &str, market: Market| Scenario {
            name: name.into(),
            market,
            match_impressions_of: Vec::new(),
            ..base.clone()
        };
        // The shading goals are stated at equal impressions, also with poorer feedback.
        let with_floor_match = |name: &str, market: Market| Scenario {
            match_impressions_of: vec![Strategy::FloorX110],
            ..with(name, market)
        };
        vec![
            base.clone(),
            with_floor_match(
                "losses_only",
                Market {
                    feedback: Feedback::LossesOnly,
                    ..base.market.clone()
                },
            ),
            with_floor_match(
                "win_loss_only",
                Market {
                    feedback: Feedback::WinLossOnly,
                    ..base.market.clone()
                },
            ),
            with(
                "forecast_50pct_off",
                Market {
                    forecast_error: 0.5,
                    ..base.market.clone()
                },
            ),
            with(
                "price_drift_up_30pct",
                Market {
                    drift: 0.3,
                    ..base.market.clone()
                },
            ),
            with(
                "price_drift_down_30pct",
                Market {
                    drift: -0.3,
                    ..base.market.clone()
                },
            ),
            with(
                "shock_up_30pct_at_noon",
                Market {
                    shock_hour: 12,
                    shock: 0.3,
                    ..base.market.clone()
                },
            ),
            with(
                "shock_down_30pct_at_noon",
                Market {
                    shock_hour: 12,
                    shock: -0.3,
                    ..base.market.clone()
                },
            ),
            with(
                "delayed_notices",
                Market {
                    notice_delay_mean_ms: 120_000,
                    notice_drop: 0.02,
                    ..base.market.clone()
                },
            ),
        ]
    }

    pub fn by_name(name: &str) -> Option<Scenario> {
        Scenario::standard().into_iter().find(|s| s.name == name)
    }
}

/// What a scenario run needs from outside.
#[derive(Debug, Clone)]
pub struct Options {
    pub binaries: Binaries,
    pub seeds: Vec<u64>,
    pub strategies: Vec<Strategy>,
    /// Each run's configurations and logs go in a folder under here.
    pub work_dir: PathBuf,
}

/// A scenario's runs and their averages.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub scenario: Scenario,
    pub strategies: Vec<Summary>,
    pub runs: Vec<Run>,
}

/// Plays the scenario's day under every seed for every strategy, and the oracle.
pub fn run_scenario(options: &Options, scenario: &Scenario) -> Result<ScenarioReport> {
    let market = &scenario.market;
    let value = market.value_cpm_micros;
    let max_bid = (value as f64 * scenario.max_bid_share_of_value) as i64;
    let mut runs = Vec::new();
    for &seed in &options.seeds {
        let day = market.day(seed);
        let budget = (report::unpaced_spend_micros(&day, value) as f64
            * scenario.budget_share_of_unpaced) as i64;
        let plan = Plan {
            budget_micros: budget,
            max_bid_cpm_micros: max_bid,
        };
        let first = runs.len();
        for &strategy in &options.strategies {
            let dir =
                options
                    .work_dir
                    .join(format!("{}-{}-{seed}", scenario.name, strategy.name()));
            let played = play_one(options, scenario, strategy, &day, plan, &dir)
                .with_context(|| format!("{} {} seed {seed}", scenario.name, strategy.name()))?;
            runs.push(report::summarise(
                strategy.name(),
                seed,
                market,
                &day,
                plan,
                &played,
            ));
        }
        let of_seed = |name: &str, runs: &[Run]| {
            runs[first..]
                .iter()
                .find(|r| r.strategy == name)
                .map(|r| (r.impressions, r.avg_cpm_micros))
        };
        let controller = of_seed(Strategy::Controller.name(), &runs);
        for baseline in matched(options, scenario) {
            let (Some((target, _)), Some((_, cpm))) = (of_seed(baseline.name(), &runs), controller)
            else {
                continue;
            };
            let name = format!("controller@{}", baseline.name());
            let (plan, played) =
                controller_at_impressions(options, scenario, &day, plan, target, cpm, &name, seed)
                    .with_context(|| format!("{} {name} seed {seed}", scenario.name))?;
            runs.push(report::summarise(&name, seed, market, &day, plan, &played));
        }
        runs.push(report::oracle_run(market, &day, seed, plan));
    }
    let mut names: Vec<String> = options
        .strategies
        .iter()
        .map(|s| s.name().to_owned())
        .collect();
    names.extend(matched(options, scenario).map(|b| format!("controller@{}", b.name())));
    names.push("oracle".into());
    let mut strategies: Vec<Summary> = names
        .iter()
        .map(|name| {
            let of: Vec<&Run> = runs.iter().filter(|r| r.strategy == *name).collect();
            report::average(&of)
        })
        .collect();
    report::saving_captured(&mut strategies);
    Ok(ScenarioReport {
        scenario: scenario.clone(),
        strategies,
        runs,
    })
}

fn play_one(
    options: &Options,
    scenario: &Scenario,
    strategy: Strategy,
    day: &[market::Auction],
    plan: Plan,
    dir: &std::path::Path,
) -> Result<Played> {
    let market = &scenario.market;
    std::fs::create_dir_all(dir)?;
    let clock_path = dir.join("clock");
    let clock = ClockFile::create(&clock_path, SIM_DAY_START_MS)?;
    let setup = BidderSetup {
        daily_budget_micros: plan.budget_micros,
        value_cpm_micros: market.value_cpm_micros,
        max_bid_cpm_micros: plan.max_bid_cpm_micros,
        shading_ppm: match strategy {
            Strategy::Shading090 => 900_000,
            Strategy::ModePrice => {
                let share = mode_price_micros(day) / market.value_cpm_micros as f64;
                ((share * 1e6).round() as u32).clamp(100_000, 1_000_000)
            }
            _ => 1_000_000,
        },
        floor_markup_ppm: (strategy == Strategy::FloorX110).then_some(1_100_000),
        sizes: SIZES.to_vec(),
    };
    // The controller knows the forecast's shape, never the day's real volume.
    let agent = (strategy == Strategy::Controller).then(|| {
        let weights: Vec<String> = (0..market::HOURS)
            .map(|h| format!("{:.6}", market.forecast_share(h)))
            .collect();
        format!(
            "[controller]\ntimer = false\ninterval_s = {}\ntraffic_by_hour = [{}]\n",
            CONTROLLER_INTERVAL_MS / 1000,
            weights.join(", ")
        )
    });
    let stack = Stack::start(
        &options.binaries,
        dir,
        &clock_path,
        &setup,
        agent.as_deref(),
    )?;
    let mut step = |_: u64| -> Result<()> {
        stack.agent_call(r#"{"v":1,"verb":"controller.step","args":{"fresh":true}}"#)?;
        Ok(())
    };
    let every = (strategy == Strategy::Controller).then_some(exchange::Every {
        interval_ms: CONTROLLER_INTERVAL_MS,
        run: &mut step,
    });
    let (outcomes, notices) = exchange::play(
        market,
        day,
        &clock,
        SIM_DAY_START_MS,
        (stack.bid, stack.notices),
        every,
    )?;
    let metrics = stack.metrics()?;
    let series = format!("bidder_budget_lifetime_spent_micros{{campaign=\"{CAMPAIGN}\"");
    let bidder_spent_micros = metrics
        .lines()
        .find(|l| l.starts_with(&series))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0);
    stack.stop()?;
    Ok(Played {
        outcomes,
        notices,
        bidder_spent_micros,
    })
}

/// The baselines of `scenario` the controller is matched to at equal impressions (both
/// it and the controller among the strategies run).
fn matched<'a>(
    options: &'a Options,
    scenario: &'a Scenario,
) -> impl Iterator<Item = Strategy> + 'a {
    let runs = |s: Strategy| options.strategies.contains(&s);
    scenario
        .match_impressions_of
        .iter()
        .copied()
        .filter(move |&b| runs(b) && runs(Strategy::Controller))
}

/// Plays the controller on budgets searched (secant on impressions against budget) so
/// it buys `target` impressions within [`SAME_IMPRESSIONS_TOLERANCE`]; the first guess
/// is `target` at the CPM the controller paid on the full budget. Returns the closest
/// day of at most [`SAME_IMPRESSIONS_MAX_RUNS`].
#[allow(clippy::too_many_arguments)]
fn controller_at_impressions(
    options: &Options,
    scenario: &Scenario,
    day: &[market::Auction],
    plan: Plan,
    target: u64,
    cpm_micros: i64,
    name: &str,
    seed: u64,
) -> Result<(Plan, Played)> {
    let mut budget = (target as i64 * cpm_micros / 1000).max(1);
    let mut tried: Vec<(i64, u64, Played)> = Vec::new();
    for attempt in 0..SAME_IMPRESSIONS_MAX_RUNS {
        let dir = options
            .work_dir
            .join(format!("{}-{name}-{seed}-{attempt}", scenario.name));
        let at = Plan {
            budget_micros: budget,
            ..plan
        };
        let played = play_one(options, scenario, Strategy::Controller, day, at, &dir)?;
        let impressions = played.outcomes.iter().filter(|o| o.won).count() as u64;
        let off = impressions as f64 / target as f64 - 1.0;
        tried.push((budget, impressions, played));
        if off.abs() <= SAME_IMPRESSIONS_TOLERANCE {
            break;
        }
        budget = match tried.as_slice() {
            [.., (b0, i0, _), (b1, i1, _)] if i1 != i0 => {
                let slope = (*b1 - *b0) as f64 / (*i1 as f64 - *i0 as f64);
                (*b1 as f64 + slope * (target as f64 - *i1 as f64)) as i64
            }
            _ => (budget as f64 * target as f64 / impressions.max(1) as f64) as i64,
        }
        .max(1);
    }
    let best = tried
        .into_iter()
        .min_by_key(|(_, impressions, _)| impressions.abs_diff(target))
        .expect("at least one day played");
    let off = best.1 as f64 / target as f64 - 1.0;
    if off.abs() > SAME_IMPRESSIONS_TOLERANCE {
        // The row shows its impressions; say why they are not the baseline's.
        eprintln!(
            "auction-sim: {} {name} seed {seed}: the closest of {SAME_IMPRESSIONS_MAX_RUNS} days bought {} impressions against {target} ({:+.1}%)",
            scenario.name,
            best.1,
            100.0 * off
        );
    }
    Ok((
        Plan {
            budget_micros: best.0,
            ..plan
        },
        best.2,
    ))
}

/// The most likely price to win over `day` (CPM micros): the fullest of 5%-wide
/// bins in log space.
pub fn mode_price_micros(day: &[market::Auction]) -> f64 {
    const BIN: f64 = 0.05;
    let mut bins = std::collections::HashMap::<i64, u32>::new();
    for a in day {
        let bin = ((a.min_to_win_micros().max(1) as f64).ln() / BIN).floor() as i64;
        *bins.entry(bin).or_default() += 1;
    }
    let (bin, _) = bins
        .into_iter()
        .max_by_key(|&(bin, n)| (n, std::cmp::Reverse(bin)))
        .unwrap_or((0, 0));
    ((bin as f64 + 0.5) * BIN).exp()
}

/// Every scenario's report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenarios: Vec<ScenarioReport>,
    /// The SVG pictures drawn.
    pub pictures: Vec<PathBuf>,
}

impl Report {
    /// The JSON `cargo xtask sim --json` prints: the first scenario's `strategies` at
    /// the top (the default scenario when it ran), every scenario under `scenarios`.
    pub fn json(&self) -> serde_json::Value {
        let first = self.scenarios.first();
        serde_json::json!({
            "scenario": first.map(|s| s.scenario.name.clone()),
            "seeds": first.map(|s| s.strategies.first().map_or(0, |r| r.seeds)),
            "strategies": first.map(|s| s.strategies.clone()),
            "pictures": self.pictures,
            "scenarios": self.scenarios.iter().map(|s| serde_json::json!({
                "scenario": s.scenario,
                "strategies": s.strategies,
                "runs": s.runs,
            })).collect::<Vec<_>>(),
        })
    }

    pub fn markdown(&self) -> String {
        self.scenarios
            .iter()
            .map(|s| report::markdown(&s.scenario.name, &s.strategies))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Runs every scenario and writes `report.json` and `report.md` into `out`.
pub fn run_all(options: &Options, scenarios: &[Scenario], out: &std::path::Path) -> Result<Report> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut report = Report {
        scenarios: Vec::new(),
        pictures: Vec::new(),
    };
    for scenario in scenarios {
        let done = run_scenario(options, scenario)?;
        report.pictures.extend(plot::draw(&done, out)?);
        report.scenarios.push(done);
    }
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&report.json())?,
    )?;
    std::fs::write(out.join("report.md"), report.markdown())?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mode_price_is_the_fullest_bin() {
        let auction = |competing| market::Auction {
            at_ms: 0,
            segment: 0,
            competing_micros: competing,
            floor_micros: 0,
            value_micros: 2_000_000,
            notice_delay_ms: None,
        };
        let mut day: Vec<market::Auction> = (0..10).map(|_| auction(900_000)).collect();
        day.extend((0..4).map(|_| auction(2_500_000)));
        day.extend((0..3).map(|_| auction(400_000)));
        let mode = mode_price_micros(&day);
        assert!((mode / 900_000.0 - 1.0).abs() < 0.05, "{mode}");
    }

    #[test]
    fn the_saving_captured_is_measured_against_the_floor_rule() {
        let row = |strategy: &str, cpm: i64, oracle: i64| Summary {
            strategy: strategy.into(),
            seeds: 1,
            impressions: 1,
            spend_micros: 0,
            avg_cpm_micros: cpm,
            surplus_micros: 0,
            win_rate: 0.0,
            end_of_day_pacing_error_pct: 0.0,
            first_half_spend_pct: 0.0,
            hourly_plan_rmse: 0.0,
            oracle_cpm_same_impressions_micros: oracle,
            oracle_saving_captured_pct: None,
            shock_recovery_auctions: None,
            shock_before_ratio: None,
            shock_first_after_ratio: None,
        };
        let mut rows = vec![
            row("floor_x1.10", 1_600_000, 1_100_000),
            row("controller", 1_300_000, 1_200_000),
        ];
        report::saving_captured(&mut rows);
        assert_eq!(rows[0].oracle_saving_captured_pct, Some(0.0));
        // (1.60 − 1.30) / (1.60 − 1.20) = 75%
        assert!((rows[1].oracle_saving_captured_pct.unwrap() - 75.0).abs() < 1e-9);
    }
}
