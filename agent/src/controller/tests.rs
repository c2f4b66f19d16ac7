//! The controller against a market in closed form: each interval the campaign meets
//! the expected number of auctions, wins W(b) of them and pays its bid, and the
//! bidder's notice counts grow by what those auctions would report. No processes
//! (the auction simulator plays the real ones); this holds the control law itself.

use bidder_common::table::stats::{
    feedback_bucket, CampaignStatsValue, FEEDBACK_BUCKETS, IN_CATALOG,
};
use proptest::prelude::*;

use super::win_curve::normal_cdf;
use super::*;

const VALUE: f64 = 2_000_000.0;
const MAX_BID: i64 = 4_000_000;
const STEP_MS: u64 = 300_000;

/// Relative traffic at `hour` (fractional): the simulator's cosine daypart.
fn intensity(hour: f64) -> f64 {
    1.0 + 0.6 * (2.0 * std::f64::consts::PI * (hour - 20.0) / 24.0).cos()
}

/// What a day under the controller came to.
struct Day {
    spent: f64,
    /// What its bids would have spent had the bidder not stopped at the budget: the
    /// controller's own aim, overspend included.
    wanted: f64,
    first_half: f64,
    budget: f64,
    bids: Vec<f64>,
}

/// A market: `auctions` a day whose price to win is log-normal around `median` (×
/// `shock.1` from hour `shock.0`), traffic off the forecast by `forecast_error`,
/// min-to-win in the notices or not, and the controller (the agent) starting at
/// `start_hour` with the day's earlier figures already counted.
struct Market {
    auctions: f64,
    median: f64,
    min_to_win: bool,
    shock: (f64, f64),
    forecast_error: f64,
    start_hour: f64,
    /// What the campaign bids before the controller's first change.
    initial_bid: f64,
}

fn nominal() -> Market {
    Market {
        auctions: 24_000.0,
        median: 1_000_000.0,
        min_to_win: true,
        shock: (24.0, 1.0),
        forecast_error: 0.0,
        start_hour: 0.0,
        initial_bid: VALUE,
    }
}

/// Plays one day of `market`; before the controller starts, the campaign bids its
/// value.
fn play_day(market: Market) -> Day {
    let Market {
        auctions,
        median,
        min_to_win,
        shock,
        forecast_error,
        start_hour,
        initial_bid,
    } = market;
    let sigma = 0.6;
    let config = ControllerConfig {
        traffic_by_hour: (0..24).map(|h| intensity(h as f64 + 0.5)).collect(),
        ..stepped_by_hand()
    };
    let steps = (DAY_MS / STEP_MS) as usize;
    let total_intensity: f64 = (0..steps)
        .map(|i| intensity(i as f64 * 24.0 / steps as f64))
        .sum();
    // Unshaded, unpaced spend at the value, and half of it as the budget.
    let unpaced = auctions * normal_cdf((VALUE / median).ln() / sigma) * VALUE / 1000.0;
    let budget = 0.5 * unpaced;
    let mut row = CampaignStatsValue {
        config_daily_budget_micros: budget as i64,
        ..campaign_row(budget as i64)
    };
    let mut state: Option<CampaignState> = None;
    let mut bid = initial_bid;
    let (mut spent, mut wanted, mut first_half) = (0.0, 0.0, 0.0);
    let mut bids = Vec::new();
    for i in 0..steps {
        let now_ms = i as u64 * STEP_MS;
        let hour = i as f64 * 24.0 / steps as f64;
        if hour >= start_hour {
            let state = state.get_or_insert_with(|| CampaignState::new(&row, now_ms));
            if let Some(d) = state.step(&config, &row, VALUE, bid, now_ms) {
                bid = VALUE * d.shading_ppm as f64 / 1e6;
            }
        }
        bids.push(bid);
        let m = if hour >= shock.0 {
            median * shock.1
        } else {
            median
        };
        let n = auctions * (1.0 + forecast_error) * intensity(hour) / total_intensity;
        let win = normal_cdf((bid / m).ln() / sigma);
        // The bidder stops at the budget: never a bid it cannot pay.
        wanted += n * win * bid / 1000.0;
        let cost = (n * win * bid / 1000.0).min(budget - spent);
        spent += cost;
        if hour < 12.0 {
            first_half += cost;
        }
        row.requests += n.round() as u64;
        row.spent_micros = spent as i64;
        // The notices: per bucket of the price to win, its expected count.
        if min_to_win {
            let counts = expected_min_to_win(n, |x| normal_cdf((x / m).ln() / sigma));
            add(&mut row.min_to_win, &counts);
        }
        if !min_to_win {
            let at = feedback_bucket(bid as i64, MAX_BID);
            row.won_at[at] += (n * win).round() as u32;
            row.lost_at[at] += (n * (1.0 - win)).round() as u32;
        }
    }
    Day {
        spent,
        wanted,
        first_half,
        budget,
        bids,
    }
}

/// The campaign's row as the bidder writes it: worth `VALUE`, at most `MAX_BID`, a
/// daily budget of `budget_micros`, feedback on the max bid's scale.
fn campaign_row(budget_micros: i64) -> CampaignStatsValue {
    CampaignStatsValue {
        flags: IN_CATALOG,
        base_cpm_micros: VALUE as i64,
        max_bid_cpm_micros: MAX_BID,
        daily_budget_micros: budget_micros,
        feedback_reference_cpm_micros: MAX_BID,
        ..CampaignStatsValue::default()
    }
}

/// The controller stepped by the test every `STEP_MS`, never by its timer.
fn stepped_by_hand() -> ControllerConfig {
    ControllerConfig {
        timer: false,
        interval_s: STEP_MS / 1000,
        ..ControllerConfig::default()
    }
}

/// The min-to-win counts `n` auctions report, per bucket, when the price to win has
/// distribution function `cdf` (CPM micros).
fn expected_min_to_win(n: f64, cdf: impl Fn(f64) -> f64) -> [u32; FEEDBACK_BUCKETS] {
    let p = |x: f64| match x {
        x if x <= 0.0 => 0.0,
        x if x.is_infinite() => 1.0,
        x => cdf(x),
    };
    std::array::from_fn(|b| {
        let (lo, hi) = bidder_common::table::stats::feedback_bucket_bounds(b, MAX_BID);
        (n * (p(hi) - p(lo))).round() as u32
    })
}

fn add(counts: &mut [u32; FEEDBACK_BUCKETS], more: &[u32; FEEDBACK_BUCKETS]) {
    counts.iter_mut().zip(more).for_each(|(c, m)| *c += m);
}

/// (spent − budget) / budget and (wanted − budget) / budget.
fn errors(day: &Day) -> (f64, f64) {
    (
        (day.spent - day.budget) / day.budget,
        (day.wanted - day.budget) / day.budget,
    )
}

#[test]
fn a_nominal_day_spends_its_budget_along_the_traffic() {
    let day = play_day(nominal());
    let (error, aimed) = errors(&day);
    assert!(error.abs() <= 0.02, "end of day {:+.1}%", 100.0 * error);
    assert!(
        aimed <= 0.01,
        "aimed {:+.1}% past the budget",
        100.0 * aimed
    );
    assert!(
        day.first_half <= 0.9 * day.budget,
        "first half {:.0}%",
        100.0 * day.first_half / day.budget
    );
    // Bidding below the value: the budget buys impressions at a shaded price.
    let late = day.bids[day.bids.len() / 2..].iter().sum::<f64>() / (day.bids.len() / 2) as f64;
    assert!(late < 0.9 * VALUE, "bid {late}");
}

#[test]
fn stress_days_stay_within_five_percent() {
    for (name, market) in [
        (
            "traffic 50% over forecast",
            Market {
                forecast_error: 0.5,
                ..nominal()
            },
        ),
        (
            "market 30% dearer from noon",
            Market {
                shock: (12.0, 1.3),
                ..nominal()
            },
        ),
        (
            "market 30% cheaper from noon",
            Market {
                shock: (12.0, 0.7),
                ..nominal()
            },
        ),
        (
            "win/loss only",
            Market {
                min_to_win: false,
                ..nominal()
            },
        ),
    ] {
        let (error, aimed) = errors(&play_day(market));
        assert!(
            error.abs() <= 0.05,
            "{name}: end of day {:+.1}%",
            100.0 * error
        );
        assert!(
            aimed <= 0.05,
            "{name}: aimed {:+.1}% past the budget",
            100.0 * aimed
        );
    }
}

#[test]
fn an_agent_started_at_noon_extrapolates_the_afternoon_it_sees() {
    // Until noon the campaign bid its value with no agent; the controller starts with
    // the morning's requests already counted and must not take them for its own.
    let day = play_day(Market {
        start_hour: 12.0,
        ..nominal()
    });
    let (_, aimed) = errors(&day);
    assert!(
        aimed <= 0.05,
        "aimed {:+.1}% past the budget",
        100.0 * aimed
    );
    let evening = &day.bids[day.bids.len() * 3 / 4..];
    assert!(evening.iter().all(|&b| b < 0.95 * VALUE), "{evening:?}");
}

#[test]
fn a_bidder_restart_starts_the_counts_again_instead_of_wrapping() {
    let config = ControllerConfig::default();
    let mut row = CampaignStatsValue {
        requests: 10_000,
        ..campaign_row(1_000_000)
    };
    row.min_to_win[20] = 5_000;
    let mut state = CampaignState::new(&row, 0);
    state.step(&config, &row, VALUE, VALUE, STEP_MS);
    // The bidder restarts: its counts begin again from a few.
    row.min_to_win[20] = 3;
    row.requests = 40;
    state.step(&config, &row, VALUE, VALUE, 2 * STEP_MS);
    let total = state.market.observations.total();
    assert!(total < 10_000.0, "{total} observations after a restart");
}

#[test]
fn short_supply_bids_the_value_and_no_more() {
    // A market far above the value: the budget cannot be spent; from half its value
    // the bid rises to the value (shading 1.0), and never past it.
    let day = play_day(Market {
        auctions: 2_000.0,
        median: 6_000_000.0,
        initial_bid: VALUE / 2.0,
        ..nominal()
    });
    assert!(day.bids.iter().all(|&b| b <= VALUE));
    assert!(day.bids.last().copied().unwrap_or(0.0) >= 0.99 * VALUE);
}

fn any_row() -> impl Strategy<Value = CampaignStatsValue> {
    (
        1i64..=50_000_000,
        1i64..=50_000_000,
        0i64..=1_000_000_000,
        0i64..=1_000_000_000,
        0u64..=10_000_000,
        proptest::collection::vec(0u32..=1_000_000, FEEDBACK_BUCKETS * 3),
        0u64..=2 * DAY_MS,
    )
        .prop_map(
            |(base, max_bid, budget, spent, requests, counts, day_start)| {
                let mut row = CampaignStatsValue {
                    flags: IN_CATALOG,
                    base_cpm_micros: base,
                    max_bid_cpm_micros: max_bid,
                    daily_budget_micros: budget,
                    spent_micros: spent,
                    requests,
                    day_start_ms: day_start,
                    feedback_reference_cpm_micros: max_bid,
                    ..CampaignStatsValue::default()
                };
                row.min_to_win.copy_from_slice(&counts[..FEEDBACK_BUCKETS]);
                row.won_at
                    .copy_from_slice(&counts[FEEDBACK_BUCKETS..2 * FEEDBACK_BUCKETS]);
                row.lost_at.copy_from_slice(&counts[2 * FEEDBACK_BUCKETS..]);
                // Two segments with parts of those counts: the bounds hold for them too.
                for (i, s) in row.segments.iter_mut().take(2).enumerate() {
                    s.key = 1 << 45 | (i as u64 + 1);
                    for b in 0..FEEDBACK_BUCKETS {
                        s.min_to_win[b] = row.min_to_win[b] / (i as u32 + 2);
                        s.lost_at[b] = row.lost_at[b] / (i as u32 + 3);
                    }
                }
                row
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the bidder reports, the controller's shading stays inside the hard
    /// bounds and its bid never above the value or the campaign's ceiling.
    #[test]
    fn the_controller_never_leaves_the_bounds(
        rows in proptest::collection::vec(any_row(), 1..6),
        margin in 900_000u32..=1_500_000,
        step_ms in 1u64..=DAY_MS,
    ) {
        let config = ControllerConfig::default();
        let mut state = CampaignState::new(&rows[0], 0);
        let mut now = 0;
        for row in &rows {
            now += step_ms;
            let value = row.base_cpm_micros as f64 * f64::from(margin) / 1e6;
            if let Some(d) = state.step(&config, row, value, value, now) {
                prop_assert!(d.shading_ppm >= bounds::SHADING_PPM.0 && d.shading_ppm <= bounds::SHADING_PPM.1);
                for &(_, ppm) in &d.segments {
                    prop_assert!(ppm >= bounds::SHADING_PPM.0 && ppm <= bounds::SHADING_PPM.1);
                }
                prop_assert!(d.segments.len() <= SEGMENTS_PER_CAMPAIGN);
                prop_assert!(d.bid_micros as f64 <= value.min(row.max_bid_cpm_micros as f64) + 1.0);
                prop_assert!(!d.why.is_empty());
            }
        }
    }
}

/// Three parts of equal traffic: two segments the bidder counts apart, whose prices
/// to win differ by e (medians 0.60 and 1.63), and the rest (1.00), counted for the
/// campaign only. The controller learns each curve (the rest's from the campaign's
/// notices less the segments'), bids each apart, and buys more with the same budget
/// than any single bid could.
#[test]
fn segments_are_bid_apart_and_buy_more_than_one_bid_for_all() {
    const A: u64 = 1 << 45 | 1;
    const B: u64 = 1 << 45 | 2;
    let parts: [(Option<u64>, f64); 3] = [
        (Some(A), 600_000.0),
        (Some(B), 1_630_000.0),
        (None, 1_000_000.0),
    ];
    let sigma = 0.6;
    let config = stepped_by_hand();
    let steps = (DAY_MS / STEP_MS) as usize;
    let per_part = 24_000.0 / steps as f64 / parts.len() as f64;
    let win = |b: f64, m: f64| normal_cdf((b / m).ln() / sigma);
    let unpaced: f64 = parts
        .iter()
        .map(|&(_, m)| 8_000.0 * win(VALUE, m) * VALUE / 1000.0)
        .sum();
    let budget = 0.5 * unpaced;
    let mut row = campaign_row(budget as i64);
    row.segments[0].key = A;
    row.segments[1].key = B;
    let mut state = CampaignState::new(&row, 0);
    let mut bids = [VALUE; 3];
    let (mut spent, mut impressions) = (0.0, 0.0);
    let mut last = None;
    for i in 0..steps {
        let now_ms = i as u64 * STEP_MS;
        if let Some(d) = state.step(&config, &row, VALUE, bids[2], now_ms) {
            for (k, (segment, _)) in parts.iter().enumerate() {
                let ppm = segment
                    .and_then(|key| d.segments.iter().find(|s| s.0 == key))
                    .map_or(d.shading_ppm, |s| s.1);
                assert_shading_in_bounds(ppm);
                bids[k] = VALUE * ppm as f64 / 1e6;
            }
            last = Some(d);
        }
        for (k, &(_, m)) in parts.iter().enumerate() {
            let won = per_part * win(bids[k], m);
            let full = won * bids[k] / 1000.0;
            let cost = full.min(budget - spent);
            spent += cost;
            if full > 0.0 {
                impressions += won * cost / full;
            }
            row.requests += per_part.round() as u64;
            let counts = expected_min_to_win(per_part, |x| win(x, m));
            add(&mut row.min_to_win, &counts);
            if k < 2 {
                add(&mut row.segments[k].min_to_win, &counts);
            }
        }
        row.spent_micros = spent as i64;
    }
    let last = last.expect("the controller decided");
    assert_eq!(last.segments.len(), 2, "{last:?}");
    assert!(
        bids[0] < bids[2] && bids[2] < bids[1],
        "cheaper parts are bid lower: {bids:?}"
    );
    let error = (spent - budget) / budget;
    assert!(error.abs() <= 0.02, "end of day {:+.1}%", 100.0 * error);
    // One bid for all that spends the same: how many impressions it buys.
    let spend_at = |b: f64| {
        parts
            .iter()
            .map(|&(_, m)| 8_000.0 * win(b, m) * b / 1000.0)
            .sum::<f64>()
    };
    let single = solve_increasing(spend_at, spent, 1.0, VALUE);
    let single_impressions: f64 = parts.iter().map(|&(_, m)| 8_000.0 * win(single, m)).sum();
    assert!(
        impressions > 1.02 * single_impressions,
        "{impressions:.0} impressions against {single_impressions:.0} at one bid of {single:.0}"
    );
    assert!(state.segments.len() == 2 && state.segments.values().all(|l| l.fit.is_some()));
}

/// Short of supply the bids rise to the ceiling and λ stops there: when supply
/// returns the bids come down within a step or two, not after a long unwinding.
#[test]
fn a_short_supply_does_not_wind_the_marginal_value_up() {
    let config = stepped_by_hand();
    let median = 1_000_000.0;
    let win = |b: f64| normal_cdf((b / median).ln() / 0.6);
    // Far more than the day can spend: bid the value.
    let mut row = campaign_row(1_000_000_000);
    let mut state = CampaignState::new(&row, 0);
    let mut bid = VALUE;
    let play = |state: &mut CampaignState,
                row: &mut CampaignStatsValue,
                from: usize,
                to: usize,
                bid: &mut f64| {
        for i in from..to {
            if let Some(d) = state.step(&config, row, VALUE, *bid, i as u64 * STEP_MS) {
                *bid = VALUE * d.shading_ppm as f64 / 1e6;
            }
            let n = 100.0;
            row.requests += n as u64;
            row.spent_micros += (n * win(*bid) * *bid / 1000.0) as i64;
            add(&mut row.min_to_win, &expected_min_to_win(n, win));
        }
    };
    play(&mut state, &mut row, 0, 72, &mut bid);
    assert!(bid >= 0.99 * VALUE, "short of supply: the value, {bid}");
    let wound = state.lambda_micros.unwrap();
    assert!(wound < 4.0 * VALUE, "λ stopped at the ceiling's: {wound}");
    // Supply returns: the budget left is now small against the traffic. The bid falls
    // as fast as the step limit allows (25% a step).
    row.daily_budget_micros = row.spent_micros + 2_000_000;
    play(&mut state, &mut row, 72, 74, &mut bid);
    assert!(bid < 0.6 * VALUE, "down two full steps: {bid}");
}

fn assert_shading_in_bounds(ppm: i64) {
    assert!(
        (bounds::SHADING_PPM.0..=bounds::SHADING_PPM.1).contains(&ppm),
        "{ppm}"
    );
}
