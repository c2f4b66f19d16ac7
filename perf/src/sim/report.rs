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
        hours,
        bids_and_prices,
    }
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
    }
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
}
