//! `controller.status` and `controller.step`, and the timer's step: the glue between
//! the controller's decisions (`crate::controller`) and the strategy table. Changes go
//! through [`Agent::change_campaign`] like an operator's: bounded, audited as
//! `controller` with the step's why.

use std::collections::BTreeMap;

use super::*;
use crate::controller::{CampaignState, ControllerConfig, Learner};

/// Longest a `controller.step` with `fresh` waits for the bidder to publish twice.
const FRESH_STATS_TIMEOUT: Duration = Duration::from_secs(2);

/// Reads a row the bidder may be rewriting at this instant (it publishes every few
/// milliseconds): tried again a few times, so a step never skips a campaign, nor a
/// wait misreads the publication count, for a collision.
fn retrying<T, E>(load: impl Fn() -> Result<T, E>) -> Option<T> {
    for _ in 0..LOAD_ATTEMPTS {
        if let Ok(value) = load() {
            return Some(value);
        }
        std::thread::yield_now();
    }
    None
}

/// A decision's segment shadings as the strategy row's two columns (unused: 0), each
/// inside the hard bounds.
fn segment_columns(
    segments: &[(u64, i64)],
) -> ([u64; SEGMENTS_PER_CAMPAIGN], [u32; SEGMENTS_PER_CAMPAIGN]) {
    let mut keys = [0; SEGMENTS_PER_CAMPAIGN];
    let mut shadings = [0; SEGMENTS_PER_CAMPAIGN];
    for (i, &(key, ppm)) in segments.iter().take(SEGMENTS_PER_CAMPAIGN).enumerate() {
        keys[i] = key;
        shadings[i] = ppm.clamp(bounds::SHADING_PPM.0, bounds::SHADING_PPM.1) as u32;
    }
    (keys, shadings)
}

/// What the controller learnt of one market, as `controller.status` shows it.
fn market_view(l: &Learner) -> Value {
    json!({
        "market_median_micros": l.fit.map(|f| f.median_micros().round() as i64),
        "market_sigma": l.fit.map(|f| f.sigma),
        "observations": l.observations.total(),
    })
}

/// Reads of one row before giving it up for this step.
const LOAD_ATTEMPTS: usize = 1_000;

/// What the controller remembers, per campaign, and its record.
#[derive(Debug, Default)]
pub struct ControllerState {
    campaigns: BTreeMap<String, CampaignState>,
    last_step_ms: Option<u64>,
    pub steps: u64,
    pub changes: u64,
    last_error: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StepArgs {
    /// Wait until the bidder has published its stats table twice, so the step sees
    /// every notice answered before the call (the simulator's reproducible steps).
    #[serde(default)]
    fresh: bool,
}

impl Agent {
    fn controller_config(&self) -> &ControllerConfig {
        &self.config.controller
    }

    /// The timer's step: when the controller is on, steps on its timer, and
    /// `interval_s` of calendar time has passed since the last step.
    pub fn controller_tick(&mut self) {
        let config = self.controller_config();
        if !config.enabled || !config.timer {
            return;
        }
        let now_ms = self.clock.now_unix_ms();
        let due = self
            .controller
            .last_step_ms
            .is_none_or(|last| now_ms.saturating_sub(last) >= config.interval_s * 1000);
        if due {
            if let Err(e) = self.controller_step_all() {
                tracing::warn!("controller: {}; {}", e.message, e.hint);
                self.controller.last_error = Some(e.message);
            }
        }
    }

    pub(super) fn controller_step(&mut self, args: StepArgs) -> Result<Value, Error> {
        if !self.controller_config().enabled {
            return Err(Error::new(
                Code::BadArgs,
                "the controller is off",
                "set [controller] enabled = true in the agent's configuration",
            ));
        }
        if args.fresh {
            self.wait_for_fresh_stats()?;
        }
        let changed = self.controller_step_all()?;
        Ok(json!({"at_unix_ms": self.clock.now_unix_ms(), "changed": changed}))
    }

    fn wait_for_fresh_stats(&self) -> Result<(), Error> {
        let publications = |agent: &Agent| -> Result<u64, Error> {
            let stats = agent.stats_table()?;
            let totals = retrying(|| stats.prefix().totals.load());
            Ok(totals.map_or(0, |t| t.publications))
        };
        let start = publications(self)?;
        let until = Instant::now() + FRESH_STATS_TIMEOUT;
        while publications(self)? < start + 2 {
            if Instant::now() > until {
                return Err(Error::new(
                    Code::BidderUnavailable,
                    "the bidder did not publish its stats twice within 2 s",
                    "check that the bidder runs and its [strategy] stats_interval_ms",
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// One step for every campaign in the bidder's catalog that is not paused; the
    /// changes made.
    fn controller_step_all(&mut self) -> Result<Vec<Value>, Error> {
        let stats = self.stats_table()?;
        let now_ms = self.clock.now_unix_ms();
        let rows: Vec<(String, CampaignStatsValue)> = stats
            .campaigns()
            .iter()
            .filter_map(|r| Some((r.key.get().as_str().to_owned(), retrying(|| r.load())?)))
            .filter(|(_, c)| c.flags & IN_CATALOG != 0)
            .collect();
        drop(stats);
        self.controller.last_step_ms = Some(now_ms);
        self.controller.steps += 1;
        let config = self.config.controller.clone();
        let mut changed = Vec::new();
        for (id, c) in rows {
            let current = self.effective(&id, &c);
            if current.paused() || config.exclude_campaigns.contains(&id) {
                continue;
            }
            let state = self
                .controller
                .campaigns
                .entry(id.clone())
                .or_insert_with(|| CampaignState::new(&c, now_ms));
            // What the bidder shades: the value at the margin in force, capped by the
            // campaign's and the strategy's max CPM (`decide/candidate.rs`).
            let value = (c.base_cpm_micros as f64 * f64::from(current.margin_ppm) / 1e6)
                .min(c.max_bid_cpm_micros as f64)
                .min(current.max_cpm_micros as f64);
            let current_bid = value * f64::from(current.shading_ppm) / 1e6;
            let Some(decision) = state.step(&config, &c, value, current_bid, now_ms) else {
                continue;
            };
            let (keys, shadings) = segment_columns(&decision.segments);
            if i64::from(current.shading_ppm) == decision.shading_ppm
                && current.segment_keys == keys
                && current.segment_shading_ppm == shadings
            {
                continue;
            }
            let why = bounds::cut_reasoning(&decision.why, bounds::MAX_WHY_BYTES);
            let who = Who::agent("controller".into());
            let done =
                self.change_campaign("controller.step", &id, who, Some(&why), None, |v, _| {
                    v.shading_ppm = decision.shading_ppm as u32;
                    v.segment_keys = keys;
                    v.segment_shading_ppm = shadings;
                    Ok(())
                })?;
            self.controller.changes += 1;
            changed.push(done);
        }
        self.controller.last_error = None;
        Ok(changed)
    }

    pub(super) fn controller_status(&self) -> Value {
        let config = self.controller_config();
        let campaigns: Vec<Value> = self
            .controller
            .campaigns
            .iter()
            .map(|(id, s)| {
                let segments: Vec<Value> = s
                    .segments
                    .iter()
                    .map(|(&key, l)| {
                        let mut v = market_view(l);
                        v["segment"] = SegmentKey(key).to_string().into();
                        v
                    })
                    .collect();
                let mut v = market_view(&s.market);
                v["campaign"] = id.as_str().into();
                v["marginal_value_micros"] = s.lambda_micros.map(|t| t.round() as i64).into();
                v["calibration"] = s.calibration.into();
                v["segments"] = segments.into();
                v
            })
            .collect();
        json!({
            "enabled": config.enabled,
            "timer": config.timer,
            "interval_s": config.interval_s,
            "steps": self.controller.steps,
            "changes": self.controller.changes,
            "last_step_unix_ms": self.controller.last_step_ms,
            "last_error": self.controller.last_error,
            "campaigns": campaigns,
        })
    }
}
