//! What a strategy earned over a simulated day, hour by hour, and what the oracle —
//! who knows every auction's price to win — would have paid for the same impressions.
//!
//! Money is integer micros. A CPM price buys one impression for `ceil(price / 1000)`
//! micros, as the bidder charges it. Surplus is what the impressions were truly worth
//! minus what they cost.

use serde::Serialize;

use super::exchange::{NoticeCounts, Outcome};
use super::market::{Auction, Market, HOURS, HOUR_MS};
use super::oracle::Oracle;

/// One impression's cost, as the bidder charges a CPM price.
pub fn impression_cost_micros(cpm_micros: i64) -> i64 {
    (cpm_micros + 999) / 1000
}

/// One hour of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Hour {
    pub hour: usize,
    pub auctions: u64,
    pub bids: u64,
    pub impressions: u64,
    pub spend_micros: i64,
    pub surplus_micros: i64,
    /// What the traffic-shaped plan meant to spend in this hour.
    pub plan_micros: i64,
}

/// One strategy's simulated day under one seed.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub strategy: String,
    pub seed: u64,
    pub budget_micros: i64,
    pub auctions: u64,
    pub bids: u64,
    pub impressions: u64,
    pub spend_micros: i64,
    pub avg_cpm_micros: i64,
    pub surplus_micros: i64,
    /// Impressions over bids.
    pub win_rate: f64,
    /// (spend − budget) / budget, percent: negative is underspent.
    pub end_of_day_pacing_error_pct: f64,
    /// Share of the day's spend made before noon, percent of the budget.
    pub first_half_spend_pct: f64,
    /// Root mean square of (spend − plan) over the hours, as a share of budget / 24.
    pub hourly_plan_rmse: f64,
    /// What the oracle pays for the same number of impressions (average CPM).
    pub oracle_cpm_same_impressions_micros: i64,
    pub notices: NoticeCounts,
    /// What the bidder says it spent (`bidder_budget_lifetime_spent_micros`).
    pub bidder_spent_micros: i64,
    /// How its surplus compared with the oracle's around the market's shock (scenarios
    /// with one).
    pub shock_recovery: Option<ShockRecovery>,
    pub hours: Vec<Hour>,
    /// Each bid and what would have won it (CPM micros), for the pictures.
    #[serde(skip)]
    pub bids_and_prices: Vec<(i64, i64)>,
}

/// The campaign a run bought for.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub budget_micros: i64,
    pub max_bid_cpm_micros: i64,
}

/// What the exchange saw of one run.
#[derive(Debug, Clone, Default)]
pub struct Played {
    pub outcomes: Vec<Outcome>,
    pub notices: NoticeCounts,
    /// What the bidder says it spent (its `/metrics`).
    pub bidder_spent_micros: i64,
}

/// Sums a run's outcomes.
pub fn summarise(
    strategy: &str,
    seed: u64,
    market: &Market,
    day: &[Auction],
    plan: Plan,
    played: &Played,
) -> Run {
    let outcomes = &played.outcomes;
    let budget_micros = plan.budget_micros;
    assert_eq!(day.len(), outcomes.len(), "one outcome per auction");
    let mut hours: Vec<Hour> = (0..HOURS)
        .map(|hour| Hour {
            hour,
            plan_micros: (budget_micros as f64 * market.forecast_share(hour)).round() as i64,
            ..Hour::default()
        })
        .collect();
    let mut bids_and_prices = Vec::new();
    let mut surplus_cpm_sum = vec![0i64; HOURS];
    for (auction, outcome) in day.iter().zip(outcomes) {
        let hour = &mut hours[(auction.at_ms / HOUR_MS) as usize % HOURS];
        hour.auctions += 1;
        let Some(bid) = outcome.bid_micros else {
            continue;
        };
        hour.bids += 1;
        bids_and_prices.push((bid, auction.min_to_win_micros()));
        if outcome.won {
            hour.impressions += 1;
            hour.spend_micros += impression_cost_micros(bid);
            surplus_cpm_sum[hour.hour] += auction.value_micros - bid;
        }
    }
    for (hour, sum) in hours.iter_mut().zip(&surplus_cpm_sum) {
        hour.surplus_micros = sum / 1000;
    }
    let total = |f: fn(&Hour) -> i64| hours.iter().map(f).sum::<i64>();
    let impressions = total(|h| h.impressions as i64) as u64;
    let bids = total(|h| h.bids as i64) as u64;
    let spend = total(|h| h.spend_micros);
    let first_half: i64 = hours[..HOURS / 2].iter().map(|h| h.spend_micros).sum();
    let unit = budget_micros as f64 / HOURS as f64;
    let rmse = (hours
        .iter()
        .map(|h| ((h.spend_micros - h.plan_micros) as f64).powi(2))
        .sum::<f64>()
        / HOURS as f64)
        .sqrt();
    Run {
        strategy: strategy.to_owned(),
        seed,
        budget_micros,
        auctions: day.len() as u64,
        bids,
        impressions,
        spend_micros: spend,
        avg_cpm_micros: avg_cpm(spend, impressions),
        surplus_micros: total(|h| h.surplus_micros),
        win_rate: ratio(impressions, bids),
        end_of_day_pacing_error_pct: percent(spend - budget_micros, budget_micros),
        first_half_spend_pct: percent(first_half, budget_micros),
        hourly_plan_rmse: if unit > 0.0 { rmse / unit } else { 0.0 },
        oracle_cpm_same_impressions_micros: Oracle::new(market, day, plan.max_bid_cpm_micros)
            .for_impressions(impressions)
            .avg_cpm_micros(),
        notices: played.notices,
        bidder_spent_micros: played.bidder_spent_micros,
        shock_recovery: shock_recovery(market, day, outcomes, plan),
        hours,
        bids_and_prices,
    }
}

/// Auctions in each window the shock recovery compares (about an hour at noon).
pub const RECOVERY_WINDOW_AUCTIONS: usize = 1_000;
/// How far each window starts after the one before.
pub const RECOVERY_STEP_AUCTIONS: usize = 100;
/// "Back" means the window's surplus is within this share of the oracle's.
pub const RECOVERY_TOLERANCE: f64 = 0.05;

/// A strategy's surplus against the oracle's (spending the same budget) in windows of
/// [`RECOVERY_WINDOW_AUCTIONS`] auctions around the market's shock.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ShockRecovery {
    /// Surplus over the oracle's in the window just before the shock.
    pub before_ratio: f64,
    /// The same in the window starting at the shock.
    pub first_after_ratio: f64,
    /// Auctions from the shock to the end of the first window (starting at or after
    /// it, every [`RECOVERY_STEP_AUCTIONS`]) whose surplus is within
    /// [`RECOVERY_TOLERANCE`] of the oracle's; `None`: not within the day.
    pub auctions_to_within_tolerance: Option<u64>,
}

/// Measures [`ShockRecovery`] for one run; `None` in a market without a shock.
pub fn shock_recovery(
    market: &Market,
    day: &[Auction],
    outcomes: &[Outcome],
    plan: Plan,
) -> Option<ShockRecovery> {
    if market.shock == 0.0 || day.len() < 2 * RECOVERY_WINDOW_AUCTIONS {
        return None;
    }
    let shock_ms = u64::from(market.shock_hour) * HOUR_MS;
    let start = day.partition_point(|a| a.at_ms < shock_ms);
    let oracle = Oracle::new(market, day, plan.max_bid_cpm_micros);
    let lambda = oracle.lambda_for_budget(plan.budget_micros);
    let surplus = |a: &Auction, bid: i64| if a.wins(bid) { a.value_micros - bid } else { 0 };
    let ours: Vec<i64> = day
        .iter()
        .zip(outcomes)
        .map(|(a, o)| match o.bid_micros {
            Some(bid) if o.won => a.value_micros - bid,
            _ => 0,
        })
        .collect();
    let theirs: Vec<i64> = day
        .iter()
        .map(|a| surplus(a, oracle.bid(a, lambda)))
        .collect();
    let ratio = |from: usize| -> Option<f64> {
        let to = from + RECOVERY_WINDOW_AUCTIONS;
        if to > day.len() {
            return None;
        }
        let oracle_sum: i64 = theirs[from..to].iter().sum();
        (oracle_sum > 0).then(|| ours[from..to].iter().sum::<i64>() as f64 / oracle_sum as f64)
    };
    let before_ratio = ratio(start.checked_sub(RECOVERY_WINDOW_AUCTIONS)?)?;
    let first_after_ratio = ratio(start)?;
    let auctions_to_within_tolerance = (start..day.len())
        .step_by(RECOVERY_STEP_AUCTIONS)
        .map_while(|from| ratio(from).map(|r| (from, r)))
        .find(|&(_, r)| (r - 1.0).abs() <= RECOVERY_TOLERANCE)
        .map(|(from, _)| (from - start + RECOVERY_WINDOW_AUCTIONS) as u64);
    Some(ShockRecovery {
        before_ratio,
        first_after_ratio,
        auctions_to_within_tolerance,
    })
}

fn avg_cpm(spend_micros: i64, impressions: u64) -> i64 {
    if impressions == 0 {
        0
    } else {
        spend_micros * 1000 / impressions as i64
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn percent(a: i64, b: i64) -> f64 {
    if b == 0 {
        0.0
    } else {
        100.0 * a as f64 / b as f64
    }
}

/// The oracle's day within `budget_micros`, as a [`Run`] without hours.
pub fn oracle_run(market: &Market, day: &[Auction], seed: u64, plan: Plan) -> Run {
    let t = Oracle::new(market, day, plan.max_bid_cpm_micros).for_budget(plan.budget_micros);
    Run {
        strategy: "oracle".into(),
        seed,
        budget_micros: plan.budget_micros,
        auctions: day.len() as u64,
        bids: 0,
        impressions: t.impressions,
        spend_micros: t.spend_micros,
        avg_cpm_micros: t.avg_cpm_micros(),
        surplus_micros: t.surplus_cpm_micros / 1000,
        win_rate: f64::NAN,
        end_of_day_pacing_error_pct: percent(
            t.spend_micros - plan.budget_micros,
            plan.budget_micros,
        ),
        first_half_spend_pct: f64::NAN,
        hourly_plan_rmse: f64::NAN,
        oracle_cpm_same_impressions_micros: t.avg_cpm_micros(),
        notices: NoticeCounts::default(),
        bidder_spent_micros: 0,
        shock_recovery: None,
        hours: Vec::new(),
        bids_and_prices: Vec::new(),
    }
}

/// What unpaced, unshaded bidding at `bid_micros` would spend over `day`.
pub fn unpaced_spend_micros(day: &[Auction], bid_micros: i64) -> i64 {
    day.iter()
        .filter(|a| a.wins(bid_micros))
        .map(|_| impression_cost_micros(bid_micros))
        .sum()
}

/// One strategy averaged over the seeds: the row of the comparison table.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub strategy: String,
    pub seeds: usize,
    pub impressions: u64,
    pub spend_micros: i64,
    pub avg_cpm_micros: i64,
    pub surplus_micros: i64,
    pub win_rate: f64,
    pub end_of_day_pacing_error_pct: f64,
    pub first_half_spend_pct: f64,
    pub hourly_plan_rmse: f64,
    pub oracle_cpm_same_impressions_micros: i64,
    /// How much of the oracle's saving over `floor_x1.10` this strategy captures,
    /// percent: (floor × 1.10's CPM − this CPM) / (floor × 1.10's CPM − the oracle's CPM
    /// for this strategy's impressions). `None` without a floor × 1.10 row.
    pub oracle_saving_captured_pct: Option<f64>,
    /// After the market's shock: the most auctions any seed took to come back within
    /// [`RECOVERY_TOLERANCE`] of the oracle's surplus (`None`: no shock, or a seed
    /// that did not within the day), and the mean surplus ratios around it.
    pub shock_recovery_auctions: Option<u64>,
    pub shock_before_ratio: Option<f64>,
    pub shock_first_after_ratio: Option<f64>,
}

/// Fills [`Summary::oracle_saving_captured_pct`] of every row against `floor_x1.10`.
pub fn saving_captured(rows: &mut [Summary]) {
    let Some(floor) = rows
        .iter()
        .find(|r| r.strategy == "floor_x1.10")
        .map(|r| r.avg_cpm_micros as f64)
    else {
        return;
    };
    for r in rows.iter_mut() {
        let possible = floor - r.oracle_cpm_same_impressions_micros as f64;
        r.oracle_saving_captured_pct =
            (possible > 0.0).then(|| 100.0 * (floor - r.avg_cpm_micros as f64) / possible);
    }
}

/// Averages `runs` of one strategy.
pub fn average(runs: &[&Run]) -> Summary {
    assert!(!runs.is_empty());
    let n = runs.len();
    let mean_i =
        |f: fn(&Run) -> i64| (runs.iter().map(|r| f(r) as i128).sum::<i128>() / n as i128) as i64;
    let mean_f = |f: fn(&Run) -> f64| runs.iter().map(|r| f(r)).sum::<f64>() / n as f64;
    Summary {
        strategy: runs[0].strategy.clone(),
        seeds: n,
        impressions: mean_i(|r| r.impressions as i64) as u64,
        spend_micros: mean_i(|r| r.spend_micros),
        avg_cpm_micros: mean_i(|r| r.avg_cpm_micros),
        surplus_micros: mean_i(|r| r.surplus_micros),
        win_rate: mean_f(|r| r.win_rate),
        end_of_day_pacing_error_pct: mean_f(|r| r.end_of_day_pacing_error_pct),
        first_half_spend_pct: mean_f(|r| r.first_half_spend_pct),
        hourly_plan_rmse: mean_f(|r| r.hourly_plan_rmse),
        oracle_cpm_same_impressions_micros: mean_i(|r| r.oracle_cpm_same_impressions_micros),
        oracle_saving_captured_pct: None,
        shock_recovery_auctions: runs
            .iter()
            .map(|r| r.shock_recovery?.auctions_to_within_tolerance)
            .collect::<Option<Vec<u64>>>()
            .and_then(|all| all.into_iter().max()),
        shock_before_ratio: mean_shock(runs, |s| s.before_ratio),
        shock_first_after_ratio: mean_shock(runs, |s| s.first_after_ratio),
    }
}

fn mean_shock(runs: &[&Run], f: fn(&ShockRecovery) -> f64) -> Option<f64> {
    let all: Vec<f64> = runs
        .iter()
        .map(|r| r.shock_recovery.as_ref().map(f))
        .collect::<Option<_>>()?;
    Some(all.iter().sum::<f64>() / all.len() as f64)
}

/// The comparison table in Markdown.
pub fn markdown(scenario: &str, rows: &[Summary]) -> String {
    let mut out = format!(
        "### Scenario `{scenario}` ({} seeds)\n\n| strategy | impressions | spend | avg CPM | oracle CPM, same impressions | oracle's saving captured | surplus | win rate | end-of-day pacing error | spent before noon | hourly RMSE vs plan |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        rows.first().map_or(0, |r| r.seeds)
    );
    let money = |m: i64| format!("{:.2}", m as f64 / 1e6);
    let pct = |p: f64| {
        if p.is_nan() {
            "–".to_owned()
        } else {
            format!("{p:+.1}%")
        }
    };
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.strategy,
            r.impressions,
            money(r.spend_micros),
            money(r.avg_cpm_micros),
            money(r.oracle_cpm_same_impressions_micros),
            r.oracle_saving_captured_pct
                .map_or("–".to_owned(), |p| format!("{p:.0}%")),
            money(r.surplus_micros),
            if r.win_rate.is_nan() {
                "–".to_owned()
            } else {
                format!("{:.1}%", 100.0 * r.win_rate)
            },
            pct(r.end_of_day_pacing_error_pct),
            if r.first_half_spend_pct.is_nan() {
                "–".to_owned()
            } else {
                format!("{:.1}%", r.first_half_spend_pct)
            },
            if r.hourly_plan_rmse.is_nan() {
                "–".to_owned()
            } else {
                format!("{:.3}", r.hourly_plan_rmse)
            },
        ));
    }
    let shocked: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            let before = r.shock_before_ratio?;
            let after = r.shock_first_after_ratio?;
            let back = r.shock_recovery_auctions.map_or(
                "not within the day".to_owned(),
                |n| format!("within {:.0}% after {n} auctions", 100.0 * RECOVERY_TOLERANCE),
            );
            Some(format!(
                "- `{}`: surplus {:.2}× the oracle's before the shock, {:.2}× in the {RECOVERY_WINDOW_AUCTIONS} auctions after; back {back} (the worst seed)\n",
                r.strategy, before, after
            ))
        })
        .collect();
    if !shocked.is_empty() {
        out.push_str("\nAround the shock (windows of auctions, against the oracle spending the same budget):\n\n");
        out.extend(shocked);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auction(at_ms: u64, competing: i64, value: i64) -> Auction {
        Auction {
            at_ms,
            segment: 0,
            competing_micros: competing,
            floor_micros: 0,
            value_micros: value,
            notice_delay_ms: Some(0),
        }
    }

    #[test]
    fn a_run_sums_spend_surplus_and_pacing_by_the_hour() {
        let market = Market::default();
        let day = [
            auction(0, 1_000_000, 2_000_000),
            auction(HOUR_MS, 1_500_000, 2_000_000),
            auction(13 * HOUR_MS, 3_000_000, 2_000_000),
        ];
        let played = Played {
            outcomes: vec![
                Outcome {
                    bid_micros: Some(1_200_000),
                    won: true,
                },
                Outcome {
                    bid_micros: Some(1_600_001),
                    won: true,
                },
                Outcome {
                    bid_micros: Some(1_800_000),
                    won: false,
                },
            ],
            ..Played::default()
        };
        let plan = Plan {
            budget_micros: 4_000,
            max_bid_cpm_micros: 4_000_000,
        };
        let run = summarise("t", 1, &market, &day, plan, &played);
        assert_eq!(run.impressions, 2);
        assert_eq!(run.bids, 3);
        // ceil(1200000/1000) + ceil(1600001/1000)
        assert_eq!(run.spend_micros, 1_200 + 1_601);
        assert_eq!(run.avg_cpm_micros, 2_801 * 1000 / 2);
        assert_eq!(run.surplus_micros, 800 + 399);
        assert!(
            (run.end_of_day_pacing_error_pct - 100.0 * (2_801.0 - 4_000.0) / 4_000.0).abs() < 1e-9
        );
        assert!((run.first_half_spend_pct - 100.0 * 2_801.0 / 4_000.0).abs() < 1e-9);
        assert_eq!(run.hours[0].impressions, 1);
        assert_eq!(run.hours[13].bids, 1);
        // The oracle buys the same two impressions, bidding from the distributions.
        assert!(run.oracle_cpm_same_impressions_micros > 0);
    }

    #[test]
    fn the_shock_recovery_counts_auctions_until_the_surplus_is_back() {
        let market = Market {
            shock_hour: 12,
            shock: 0.3,
            ..Market::default()
        };
        let day = market.day(3);
        let plan = Plan {
            budget_micros: unpaced_spend_micros(&day, market.value_cpm_micros) / 2,
            max_bid_cpm_micros: 2 * market.value_cpm_micros,
        };
        let oracle = Oracle::new(&market, &day, plan.max_bid_cpm_micros);
        let lambda = oracle.lambda_for_budget(plan.budget_micros);
        let as_oracle = |a: &Auction| {
            let bid = oracle.bid(a, lambda);
            Outcome {
                bid_micros: Some(bid),
                won: a.wins(bid),
            }
        };
        let start = day.partition_point(|a| a.at_ms < 12 * HOUR_MS);
        // Bidding as the oracle does: back in the first window.
        let same: Vec<Outcome> = day.iter().map(as_oracle).collect();
        let r = shock_recovery(&market, &day, &same, plan).expect("a shock");
        assert_eq!((r.before_ratio, r.first_after_ratio), (1.0, 1.0));
        assert_eq!(
            r.auctions_to_within_tolerance,
            Some(RECOVERY_WINDOW_AUCTIONS as u64)
        );
        // Silent for 2,000 auctions after the shock, then as the oracle: the first
        // window clear of the silence starts 2,000 auctions in.
        let silent: Vec<Outcome> = day
            .iter()
            .enumerate()
            .map(|(i, a)| {
                if (start..start + 2_000).contains(&i) {
                    Outcome {
                        bid_micros: None,
                        won: false,
                    }
                } else {
                    as_oracle(a)
                }
            })
            .collect();
        let r = shock_recovery(&market, &day, &silent, plan).expect("a shock");
        assert_eq!(r.before_ratio, 1.0);
        assert_eq!(r.first_after_ratio, 0.0);
        // One starting a step earlier loses a tenth of its auctions' surplus: too much.
        assert_eq!(
            r.auctions_to_within_tolerance,
            Some(2_000 + RECOVERY_WINDOW_AUCTIONS as u64)
        );
        assert!(
            shock_recovery(&Market::default(), &day, &same, plan).is_none(),
            "no shock, no measure"
        );
    }
}
