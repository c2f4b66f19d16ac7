//! The built-in controller: per campaign, on the agent's calendar, it learns what the
//! market charges to win ([`win_curve`]), segment by segment, and sets the bids that
//! spend what is left of the day's budget along the forecast traffic, at the lowest
//! price that does.
//!
//! One step, per campaign, from the stats table alone:
//! 1. the notice counts since the last step, decayed with a half-life, refit W(b) for
//!    the campaign and for each market segment the bidder counts apart (channel ×
//!    size × country, `bidder_common::table::segment`) once it has enough notices;
//! 2. the plan: the share of today's traffic still to come (the hourly curve), and the
//!    opportunities that means at today's observed volume (forecast volume errors
//!    correct themselves);
//! 3. pacing with one marginal value λ for every segment: each bids the b that
//!    maximises (λ − b)·W_s(b) (Pan et al.; where prices are low it shades deeper),
//!    and λ is the one whose expected spend over the rest of the day,
//!    `Σ opportunities × share_s × W_s(b_s) × b_s × calibration`, equals the budget
//!    left (Balseiro and Gur's multiplier, solved forward rather than by a step size;
//!    the calibration is what the last interval actually spent over what the curves
//!    said it would). Short of supply, bids rise to the campaign's ceiling and no
//!    further. With one segment this is the single bid that spends the budget;
//! 4. each bid moves at most `max_change_pct` a step (a segment that gets a curve of
//!    its own starts from the rest's bid), and with no min-to-win in the notices the
//!    bids dither ± `dither_pct` between steps so win/loss alone shows the curve.
//!
//! The controller moves shading only (the campaign's, and each segment's in the
//! strategy row): the margin (what an impression is worth) stays the operator's or
//! the LLM strategist's. Every change stays inside the agent's hard bounds and is
//! audited as `controller` with its why; see `verbs/controller.rs`.

pub mod win_curve;

use std::collections::BTreeMap;

use bidder_common::table::segment::SEGMENTS_PER_CAMPAIGN;
use bidder_common::table::stats::{CampaignStatsValue, SegmentFeedback, FEEDBACK_BUCKETS};
use serde::{Deserialize, Serialize};

use win_curve::{LogNormal, Observations};

use crate::bounds;

/// Milliseconds in a budget day. The bidder's days are local days: across a DST
/// change a 23-hour day ends with an hour of plan unspent, and on a 25-hour day the
/// controller makes no change in the last hour (its plan has run out); the hours of
/// `traffic_by_hour` count from the day's start, so that day they run an hour off the
/// local clock.
pub const DAY_MS: u64 = 86_400_000;
/// Opportunities seen since the controller's count began, below which the day's
/// volume is not yet extrapolated.
const MIN_REQUESTS_TO_EXTRAPOLATE: u64 = 50;
/// The share of the day's forecast traffic that must have passed since the count began
/// before it is extrapolated (about 7 minutes of an even day).
const MIN_TRAFFIC_SHARE_SEEN: f64 = 0.005;
/// Below this share of notices carrying a min-to-win, the bid dithers.
const DITHER_BELOW_MIN_TO_WIN_SHARE: f64 = 0.1;
/// Notices (after decay) a segment needs before it is bid on its own curve.
const MIN_SEGMENT_OBSERVATIONS: f64 = 2.0 * win_curve::MIN_OBSERVATIONS;
/// [`CampaignState::last_bids`]' key of the rest (no segment is 0).
const REST_KEY: u64 = 0;
/// The most the marginal value goes over the ceiling: where a curve's far tail is so
/// flat that only a larger one would bid the ceiling, the bid stays a little under.
const LAMBDA_ABOVE_CEILING: f64 = 50.0;
/// The calibration factor's bounds and the weight of each new interval in it.
const CALIBRATION_RANGE: (f64, f64) = (0.5, 2.0);
const CALIBRATION_WEIGHT: f64 = 0.3;

/// `[controller]` in the agent's configuration.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControllerConfig {
    /// On by default: every campaign in the bidder's catalog is paced and shaded.
    pub enabled: bool,
    /// Calendar seconds between steps.
    pub interval_s: u64,
    /// Half-life of what the market taught, calendar seconds: shorter follows a
    /// shocked market sooner, longer is steadier.
    pub half_life_s: u64,
    /// Relative traffic in each hour of the campaign's day (24 values, its time zone);
    /// empty: even.
    pub traffic_by_hour: Vec<f64>,
    /// Step on the agent's own timer. Off, only `controller.step` steps (the auction
    /// simulator steps it at each interval, so its days are reproducible).
    pub timer: bool,
    /// Largest change of the bid per step, percent.
    pub max_change_pct: u32,
    /// Campaigns the controller leaves alone (their shading stays as set by hand).
    pub exclude_campaigns: Vec<String>,
    /// How far the bid alternates around its target when the exchanges give no
    /// min-to-win, percent.
    pub dither_pct: u32,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            enabled: true,
            interval_s: 300,
            half_life_s: 3_600,
            traffic_by_hour: Vec::new(),
            timer: true,
            max_change_pct: 25,
            exclude_campaigns: Vec::new(),
            dither_pct: 10,
        }
    }
}

impl ControllerConfig {
    /// Bounds of every field; the message names it.
    pub fn check(&self) -> Result<(), String> {
        let ranges: [(&str, u64, u64, u64); 4] = [
            ("controller.interval_s", self.interval_s, 1, 86_400),
            ("controller.half_life_s", self.half_life_s, 60, 7 * 86_400),
            (
                "controller.max_change_pct",
                u64::from(self.max_change_pct),
                1,
                100,
            ),
            ("controller.dither_pct", u64::from(self.dither_pct), 0, 50),
        ];
        for (name, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                return Err(format!("{name} = {value} is outside {min}..={max}"));
            }
        }
        let t = &self.traffic_by_hour;
        if !t.is_empty()
            && (t.len() != 24
                || t.iter().any(|w| !w.is_finite() || *w < 0.0)
                || t.iter().sum::<f64>() <= 0.0)
        {
            return Err(
                "controller.traffic_by_hour: 24 non-negative weights, not all zero (or none for an even day)"
                    .into(),
            );
        }
        Ok(())
    }

    /// The share of the day's traffic before `day_fraction` (0..=1).
    pub fn traffic_before(&self, day_fraction: f64) -> f64 {
        let f = day_fraction.clamp(0.0, 1.0);
        if self.traffic_by_hour.is_empty() {
            return f;
        }
        let total: f64 = self.traffic_by_hour.iter().sum();
        let hours = f * 24.0;
        let whole = (hours.floor() as usize).min(24);
        let before: f64 = self.traffic_by_hour[..whole].iter().sum();
        let part = if whole < 24 {
            self.traffic_by_hour[whole] * (hours - whole as f64)
        } else {
            0.0
        };
        (before + part) / total
    }
}

/// What the controller learnt of one market: a campaign's as a whole, or one of its
/// segments'.
#[derive(Debug, Clone, PartialEq)]
pub struct Learner {
    /// The stats row's cumulative counts at the last step.
    last_counts: Option<Counts>,
    pub observations: Observations,
    pub fit: Option<LogNormal>,
}

impl Learner {
    fn new(reference_cpm_micros: i64) -> Learner {
        Learner {
            last_counts: None,
            observations: Observations::new(reference_cpm_micros),
            fit: None,
        }
    }

    /// Decays what it knew by `factor`, with nothing new (its counts are not reported
    /// now; when they are again, they start afresh).
    fn fade(&mut self, factor: f64) {
        let none = [0; FEEDBACK_BUCKETS];
        self.observations.decay_and_add(factor, &none, &none, &none);
        self.last_counts = None;
    }

    /// Adds the counts since the last step, after decaying what it knew by `factor`,
    /// and refits the curve when anything new came.
    fn learn(&mut self, counts: Counts, factor: f64) {
        let before = self.observations.total();
        let delta = |now: &[u32; FEEDBACK_BUCKETS], then: &[u32; FEEDBACK_BUCKETS]| {
            std::array::from_fn(|i| now[i].wrapping_sub(then[i]))
        };
        match &self.last_counts {
            Some(last) if last.reference == counts.reference => {
                let (m, w, l) = (
                    delta(&counts.min_to_win, &last.min_to_win),
                    delta(&counts.won_at, &last.won_at),
                    delta(&counts.lost_at, &last.lost_at),
                );
                self.observations.decay_and_add(factor, &m, &w, &l);
            }
            _ => {
                // First sight, or the bidder restarted its counts (a restart or a new
                // max bid): what it reports now is all there is.
                self.observations = Observations::new(counts.reference);
                self.observations.decay_and_add(
                    1.0,
                    &counts.min_to_win,
                    &counts.won_at,
                    &counts.lost_at,
                );
            }
        }
        self.last_counts = Some(counts);
        // Decay alone does not move the maximum much: refit only on news.
        let news = self.observations.total() > before * factor + 0.5;
        if news || self.fit.is_none() {
            if let Some(fit) = self.observations.fit_from(self.fit) {
                self.fit = Some(fit);
            }
        }
    }
}

/// What the controller remembers of one campaign between steps.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignState {
    /// The campaign's market as a whole (its curve prices the rest while too few of
    /// the rest's own notices are known).
    pub market: Learner,
    /// Each market segment the bidder counts apart (by its key), while it does.
    pub segments: BTreeMap<u64, Learner>,
    /// The marginal value the last step aimed at (before dither), CPM micros: each
    /// segment bids what maximises (λ − b)·W(b).
    pub lambda_micros: Option<f64>,
    /// Each part's last bid before dither, by segment key ([`REST_KEY`]: the rest).
    last_bids: BTreeMap<u64, f64>,
    /// Today's start, and where today's count of opportunities began: the first step
    /// of the day, or of this agent, or after the bidder restarted its counts.
    day_start_ms: u64,
    baseline: Option<Baseline>,
    /// Requests at the last step, committed spend at the last step, and what that step
    /// predicted the interval would spend.
    last_requests: u64,
    last_committed_micros: i64,
    predicted_micros: Option<f64>,
    pub calibration: f64,
    dither_up: bool,
    last_step_ms: u64,
}

/// Where a day's count of opportunities began.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Baseline {
    requests: u64,
    /// The forecast share of the day's traffic already past then.
    traffic_before: f64,
}

#[derive(Debug, Clone, PartialEq)]
struct Counts {
    reference: i64,
    min_to_win: [u32; FEEDBACK_BUCKETS],
    won_at: [u32; FEEDBACK_BUCKETS],
    lost_at: [u32; FEEDBACK_BUCKETS],
}

impl Counts {
    /// Whether any count is lower in `now` on the same scale: the bidder restarted (a
    /// count wrapping at 2^32 reads the same way, and costs one interval of learning).
    fn went_down_to(&self, now: &Counts) -> bool {
        self.reference == now.reference
            && [
                (&self.min_to_win, &now.min_to_win),
                (&self.won_at, &now.won_at),
                (&self.lost_at, &now.lost_at),
            ]
            .iter()
            .any(|(then, now)| then.iter().zip(now.iter()).any(|(a, b)| b < a))
    }

    fn of(c: &CampaignStatsValue) -> Counts {
        Counts {
            reference: c.feedback_reference_cpm_micros,
            min_to_win: c.min_to_win,
            won_at: c.won_at,
            lost_at: c.lost_at,
        }
    }

    fn of_segment(c: &CampaignStatsValue, s: &SegmentFeedback) -> Counts {
        Counts {
            reference: c.feedback_reference_cpm_micros,
            min_to_win: s.min_to_win,
            won_at: s.won_at,
            lost_at: s.lost_at,
        }
    }
}

/// What one step decided for one campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The campaign's shading: for segments without their own.
    pub shading_ppm: i64,
    /// The bid it makes there (after dither), CPM micros.
    pub bid_micros: i64,
    /// Segments shaded apart, by key, with their shading (at most
    /// [`SEGMENTS_PER_CAMPAIGN`], in key order).
    pub segments: Vec<(u64, i64)>,
    pub why: String,
}

/// One part of the campaign's traffic and the curve it is bid on.
struct Part {
    /// `None`: the segments without a curve of their own.
    segment: Option<u64>,
    share: f64,
    fit: LogNormal,
}

impl CampaignState {
    pub fn new(c: &CampaignStatsValue, now_ms: u64) -> CampaignState {
        CampaignState {
            market: Learner::new(c.feedback_reference_cpm_micros),
            segments: BTreeMap::new(),
            lambda_micros: None,
            last_bids: BTreeMap::new(),
            day_start_ms: c.day_start_ms,
            baseline: None,
            last_requests: c.requests,
            last_committed_micros: c.spent_micros + c.reserved_micros,
            predicted_micros: None,
            calibration: 1.0,
            dither_up: true,
            last_step_ms: now_ms,
        }
    }

    /// One step at `now_ms` on the campaign's stats row `c`, worth `value_micros` (what
    /// the bidder shades: its base CPM × the margin in force — an operator's or the
    /// strategist's judgement, which the controller leaves alone — capped by the
    /// campaign's and the strategy's max CPM) and bidding `current_bid_micros`.
    /// `None` until the market and today's volume are known: the controller changes
    /// nothing it cannot justify.
    pub fn step(
        &mut self,
        config: &ControllerConfig,
        c: &CampaignStatsValue,
        value_micros: f64,
        current_bid_micros: f64,
        now_ms: u64,
    ) -> Option<Decision> {
        self.learn(config, c, now_ms);
        let committed = c.spent_micros + c.reserved_micros;
        if c.day_start_ms != self.day_start_ms {
            // A new budget day: its volume is counted afresh.
            self.day_start_ms = c.day_start_ms;
            self.baseline = None;
            self.last_committed_micros = 0;
            self.predicted_micros = None;
        }
        // How the last interval's spend compared with what the curves predicted.
        if let Some(predicted) = self.predicted_micros.take() {
            let spent = (committed - self.last_committed_micros).max(0) as f64;
            if predicted > 1.0 {
                let ratio = (spent / predicted).clamp(CALIBRATION_RANGE.0, CALIBRATION_RANGE.1);
                self.calibration = (self.calibration * (1.0 - CALIBRATION_WEIGHT)
                    + ratio * CALIBRATION_WEIGHT)
                    .clamp(CALIBRATION_RANGE.0, CALIBRATION_RANGE.1);
            }
        }
        self.last_committed_micros = committed;
        let parts = self.parts()?;
        let value = value_micros.max(1.0);
        // Shading never raises a bid above the value: short of supply, the controller
        // bids the value and no more.
        let ceiling = (c.max_bid_cpm_micros.max(1) as f64).min(value);
        let lowest = (value * bounds::SHADING_PPM.0 as f64 / 1e6).min(ceiling);
        let day_fraction = now_ms.saturating_sub(c.day_start_ms) as f64 / DAY_MS as f64;
        let before = config.traffic_before(day_fraction);
        let baseline = *self.baseline.get_or_insert(Baseline {
            requests: c.requests,
            traffic_before: before,
        });
        // Today's volume from what came since the count began, against the share of
        // the day's forecast traffic that passed meanwhile: an agent started at noon
        // extrapolates its own afternoon, not the morning it never saw.
        let seen = c.requests.saturating_sub(baseline.requests);
        let share_seen = before - baseline.traffic_before;
        if seen < MIN_REQUESTS_TO_EXTRAPOLATE
            || share_seen < MIN_TRAFFIC_SHARE_SEEN
            || before >= 1.0
        {
            return None;
        }
        let remaining = seen as f64 * (1.0 - before) / share_seen;
        let left_micros = (c.daily_budget_micros - committed).max(0) as f64;
        let calibration = self.calibration;
        // Each part bids its best at λ; what the rest of the day spends then.
        let bids_at = |lambda: f64| -> Vec<f64> {
            parts
                .iter()
                .map(|p| p.fit.best_bid(lambda, lowest, ceiling))
                .collect()
        };
        let per_opportunity = |bids: &[f64]| -> f64 {
            parts
                .iter()
                .zip(bids)
                .map(|(p, &b)| p.share * p.fit.win_probability(b) * b / 1000.0)
                .sum()
        };
        let spend = |lambda: f64| remaining * per_opportunity(&bids_at(lambda)) * calibration;
        // From here every part bids the ceiling (all that can be spent): λ goes no
        // higher, so it comes straight down when supply returns.
        let top = parts
            .iter()
            .map(|p| p.fit.lambda_for_bid(ceiling))
            .fold(ceiling, f64::max)
            .min(ceiling * LAMBDA_ABOVE_CEILING);
        let rest = parts
            .iter()
            .position(|p| p.segment.is_none())
            .expect("always a rest");
        // The first step starts from the λ at which the rest bids what the campaign
        // bids now, so the step limit holds from the start.
        let last = self
            .lambda_micros
            .unwrap_or_else(|| {
                parts[rest]
                    .fit
                    .lambda_for_bid(current_bid_micros.clamp(lowest, ceiling))
            })
            .clamp(lowest, top);
        let aim = if left_micros <= 0.0 {
            last
        } else if spend(top) <= left_micros {
            top
        } else {
            solve_increasing(spend, left_micros, lowest, top)
        };
        // The step limit is on the bids (below), not on λ: a λ that must travel far
        // (from the ceiling's, say) would hold every bid back for many steps.
        let step = f64::from(config.max_change_pct) / 100.0;
        let lambda = aim.clamp(lowest, top);
        self.lambda_micros = Some(lambda);
        let censored = self.market.observations.min_to_win.iter().sum::<f64>()
            < DITHER_BELOW_MIN_TO_WIN_SHARE * self.market.observations.total();
        let dither = if censored && config.dither_pct > 0 {
            self.dither_up = !self.dither_up;
            let d = f64::from(config.dither_pct) / 100.0;
            if self.dither_up {
                1.0 + d
            } else {
                1.0 - d
            }
        } else {
            1.0
        };
        // Each part's bid also moves at most a step (a segment that gets a curve of its
        // own starts from the rest's last bid).
        let previous = |segment: Option<u64>| {
            let of = |key: u64| self.last_bids.get(&key).copied();
            of(segment.unwrap_or(REST_KEY))
                .or_else(|| of(REST_KEY))
                .unwrap_or(current_bid_micros)
        };
        let aimed: Vec<f64> = parts
            .iter()
            .zip(bids_at(lambda))
            .map(|(p, b)| {
                let last = previous(p.segment);
                b.clamp(last * (1.0 - step), last * (1.0 + step))
                    .clamp(lowest, ceiling)
            })
            .collect();
        self.last_bids = parts
            .iter()
            .zip(&aimed)
            .map(|(p, &b)| (p.segment.unwrap_or(REST_KEY), b))
            .collect();
        let bids: Vec<f64> = aimed
            .iter()
            .map(|b| (b * dither).clamp(lowest, ceiling))
            .collect();
        // What the coming interval should spend at these bids, for the next
        // calibration.
        let next =
            config.traffic_before(day_fraction + config.interval_s as f64 * 1000.0 / DAY_MS as f64);
        let opportunities = remaining * (next - before) / (1.0 - before);
        self.predicted_micros = Some(opportunities * per_opportunity(&bids));
        let bid = bids[rest];
        let segments: Vec<(u64, i64)> = parts
            .iter()
            .zip(&bids)
            .filter_map(|(p, &b)| Some((p.segment?, shading_for(b, value))))
            .collect();
        let fit = parts[rest].fit;
        let spread = if segments.is_empty() {
            String::new()
        } else {
            let (lo, hi) = bids
                .iter()
                .fold((f64::MAX, 0.0f64), |(lo, hi), &b| (lo.min(b), hi.max(b)));
            format!(
                " ({} segments apart: {:.2}-{:.2})",
                segments.len(),
                lo / 1e6,
                hi / 1e6
            )
        };
        let why = format!(
            "bid {:.2}{spread} at marginal value {:.2}: {:.0}% of budget left for {:.0}% of the day's traffic; market median {:.2} (sigma {:.2}) from {:.0} notices; calibration {:.2}",
            bid / 1e6,
            lambda / 1e6,
            100.0 * left_micros / c.daily_budget_micros.max(1) as f64,
            100.0 * (1.0 - before),
            fit.median_micros() / 1e6,
            fit.sigma,
            self.market.observations.total(),
            self.calibration,
        );
        Some(Decision {
            shading_ppm: shading_for(bid, value),
            bid_micros: bid.round() as i64,
            segments,
            why,
        })
    }

    /// The parts of the campaign's traffic, each with its share and curve: every
    /// segment with enough notices of its own, and the rest on the curve of the
    /// campaign's notices less those segments' (the campaign's own while that is too
    /// little to fit). `None` before the campaign's curve is known.
    fn parts(&self) -> Option<Vec<Part>> {
        let market_fit = self.market.fit?;
        let total = self.market.observations.total();
        let mut rest = self.market.observations.clone();
        let mut parts: Vec<Part> = self
            .segments
            .iter()
            .filter(|(_, l)| l.observations.total() >= MIN_SEGMENT_OBSERVATIONS)
            .filter_map(|(&key, l)| {
                Some(Part {
                    segment: Some(key),
                    share: (l.observations.total() / total).min(1.0),
                    fit: l.fit?,
                })
            })
            .take(SEGMENTS_PER_CAMPAIGN)
            .collect();
        for p in &parts {
            if let Some(l) = p.segment.and_then(|key| self.segments.get(&key)) {
                rest.subtract(&l.observations);
            }
        }
        let apart: f64 = parts.iter().map(|p| p.share).sum();
        let fit = if parts.is_empty() {
            market_fit
        } else {
            rest.fit_from(Some(market_fit)).unwrap_or(market_fit)
        };
        parts.push(Part {
            segment: None,
            share: (1.0 - apart).max(0.0),
            fit,
        });
        Some(parts)
    }

    /// Adds the counts since the last step, decayed by the time since, to the
    /// campaign's curve and each segment's.
    fn learn(&mut self, config: &ControllerConfig, c: &CampaignStatsValue, now_ms: u64) {
        let counts = Counts::of(c);
        let elapsed_s = now_ms.saturating_sub(self.last_step_ms) as f64 / 1000.0;
        self.last_step_ms = now_ms;
        let factor = 0.5f64.powf(elapsed_s / config.half_life_s as f64);
        // The bidder's counts live in its memory: after it restarts they begin again
        // from zero. Counts that went down (or a request count that did) are a new
        // beginning, not four billion observations; today's volume is counted afresh.
        let restarted = c.requests < self.last_requests
            || self
                .market
                .last_counts
                .as_ref()
                .is_some_and(|last| last.went_down_to(&counts));
        if restarted {
            self.market.last_counts = None;
            self.segments
                .values_mut()
                .for_each(|l| l.last_counts = None);
            self.baseline = None;
            self.predicted_micros = None;
        }
        let new_scale = self
            .market
            .last_counts
            .as_ref()
            .is_some_and(|last| last.reference != counts.reference);
        self.market.learn(counts, factor);
        if new_scale {
            // A new max bid: the bidder's segment slots begin again, and so do these.
            self.segments.clear();
        }
        let counted: Vec<&SegmentFeedback> = c.segments.iter().filter(|s| s.key != 0).collect();
        for (key, learner) in self.segments.iter_mut() {
            if !counted.iter().any(|s| s.key == *key) {
                // Not counted now (the bidder restarted and has not met it yet): what
                // was learnt fades as the campaign's does, and goes when it is gone.
                learner.fade(factor);
            }
        }
        self.segments
            .retain(|_, l| l.last_counts.is_some() || l.observations.total() >= 1.0);
        for s in counted {
            self.segments
                .entry(s.key)
                .or_insert_with(|| Learner::new(c.feedback_reference_cpm_micros))
                .learn(Counts::of_segment(c, s), factor);
        }
        self.last_requests = c.requests;
    }
}

/// The shading that makes the bidder bid `bid` on a campaign worth `value`, inside
/// the hard bounds.
pub fn shading_for(bid: f64, value: f64) -> i64 {
    let (lo, hi) = bounds::SHADING_PPM;
    if !(bid / value).is_finite() {
        return hi;
    }
    ((bid / value * 1e6).round() as i64).clamp(lo, hi)
}

/// The `x` in `lo..=hi` where the increasing `f(x)` reaches `target` (bisection in log
/// space, to 0.1%).
fn solve_increasing(f: impl Fn(f64) -> f64, target: f64, lo: f64, hi: f64) -> f64 {
    let (mut lo, mut hi) = (lo.ln(), hi.ln());
    for _ in 0..40 {
        let mid = (lo + hi) / 2.0;
        if f(mid.exp()) < target {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-3 {
            break;
        }
    }
    ((lo + hi) / 2.0).exp()
}

#[cfg(test)]
mod tests;
