//! What the LLM strategist may read and change (its tools call these), and the
//! `llm.*` verbs operators steer it with.
//!
//! **Who owns what**: the LLM moves a campaign's margin and max CPM, nothing else — no
//! pacing, no shading (the built-in controller's, with the economics issue), no pause
//! and no budget (operators'). [`Agent::llm_set_strategy`] is its only write and takes
//! no other field, and its values go through the same bounds and audit as
//! `strategy.set`, clamped rather than refused: the audit keeps what it asked for.

use super::*;
use crate::bounds::{clamp_ppm, cut_reasoning};
use crate::llm::MAX_CONTEXT_CAMPAIGNS;

impl Agent {
    /// A campaign's performance as the model reads it: counts, rates and the strategy.
    pub fn llm_bid_performance(&self, campaign: &str) -> Result<Value, Error> {
        let stats = self.stats_table()?;
        Ok(self.performance_view(campaign, &self.campaign_stats(&stats, campaign)?))
    }

    /// A campaign's budget and how its day is going against an even pace.
    pub fn llm_check_budget(&self, campaign: &str) -> Result<Value, Error> {
        let stats = self.stats_table()?;
        Ok(self.budget_view(campaign, &self.campaign_stats(&stats, campaign)?))
    }

    fn performance_view(&self, campaign: &str, c: &CampaignStatsValue) -> Value {
        let strategy = self.effective(campaign, c);
        json!({
            "campaign": campaign,
            "requests": c.requests,
            "bids": c.bids,
            "wins": c.wins,
            "participation_rate": ratio(c.bids, c.requests),
            "win_rate": ratio(c.wins, c.bids),
            "budget_refusal_rate": ratio(c.budget_refusals, c.requests),
            "avg_clearing_cpm": avg_clearing_cpm(c),
            "margin": crate::units::format_millionths(i64::from(strategy.margin_ppm)),
            "max_cpm": crate::units::format_millionths(strategy.max_cpm_micros),
            "ceiling_cpm": crate::units::format_millionths(c.max_bid_cpm_micros),
            "paused": strategy.flags & CAMPAIGN_PAUSED != 0,
            "last_reasoning": strategy.reasoning(),
        })
    }

    fn budget_view(&self, campaign: &str, c: &CampaignStatsValue) -> Value {
        let now_ms = self.clock.now_unix_ms();
        let day_elapsed = (now_ms.saturating_sub(c.day_start_ms) as f64 / 86_400_000.0).min(1.0);
        let spent = c.spent_micros as f64 / c.daily_budget_micros.max(1) as f64;
        json!({
            "campaign": campaign,
            "daily_budget": crate::units::format_millionths(c.daily_budget_micros),
            "spent": crate::units::format_millionths(c.spent_micros),
            "available": crate::units::format_millionths(c.available_micros),
            "day_elapsed_pct": round1(day_elapsed * 100.0),
            "spent_pct": round1(spent * 100.0),
            "pace": (day_elapsed > 0.0).then(|| round2(spent / day_elapsed)),
            "breaker_tripped": c.flags & BREAKER_TRIPPED != 0,
        })
    }

    /// Per partner: traffic, bids and limits. The bidder does not count inventory by
    /// category, so a category is answered with that fact rather than invented data.
    pub fn llm_ssp_inventory(&self, category: Option<&str>) -> Result<Value, Error> {
        let mut partners = self.partner_list()?;
        if let Some(category) = category {
            partners["category"] = json!(category);
            partners["note"] = json!(
                "the bidder does not break inventory down by category; figures are per partner"
            );
        }
        Ok(partners)
    }

    /// The LLM's one write: margin and max CPM, clamped to the hard bounds (margin
    /// ×0.90–×1.50, max CPM up to the campaign's ceiling), reasoning cut to the table's
    /// 280 bytes at a sentence. Audited as `llm:<model>` with what it asked for.
    pub fn llm_set_strategy(
        &mut self,
        model: &str,
        campaign: &str,
        margin: f64,
        max_cpm: f64,
        reasoning: &str,
    ) -> Result<Value, Error> {
        let bad = |what: &str| {
            Error::new(
                Code::BadArgs,
                format!("{what} is not a finite number"),
                "margin is a multiplier such as 1.10; max_cpm is in currency units such as 2.50",
            )
        };
        let margin_ppm = clamp_ppm(margin, bounds::MARGIN_PPM).ok_or_else(|| bad("margin"))?;
        // Clamped below to the smallest max CPM; above, to the campaign's ceiling.
        let max_cpm_micros = clamp_ppm(max_cpm, (bounds::MIN_MAX_CPM_MICROS, i64::MAX))
            .ok_or_else(|| bad("max_cpm"))?;
        let why = cut_reasoning(reasoning, bounds::MAX_WHY_BYTES);
        let why = if why.is_empty() {
            "no reasoning given".to_string()
        } else {
            why
        };
        let asked = json!({"margin": margin, "max_cpm": max_cpm});
        let who = Who::agent(format!("llm:{model}"));
        self.change_campaign(
            "llm.set_bid_strategy",
            campaign,
            who,
            Some(&why),
            Some(asked),
            |v, c| {
                v.margin_ppm = margin_ppm as u32;
                v.max_cpm_micros = max_cpm_micros.min(c.max_bid_cpm_micros);
                Ok(())
            },
        )
    }

    /// What the model is shown at the start of a cycle: every campaign's strategy,
    /// budget and performance (at most [`MAX_CONTEXT_CAMPAIGNS`], the biggest spenders
    /// first) and the last changes from the audit log.
    pub fn llm_context(&self) -> Result<Value, Error> {
        let stats = self.stats_table()?;
        let mut rows: Vec<(String, CampaignStatsValue)> = stats
            .campaigns()
            .iter()
            .filter_map(|r| Some((r.key.get().as_str().to_string(), r.load().ok()?)))
            .filter(|(_, c)| c.flags & IN_CATALOG != 0)
            .collect();
        rows.sort_by(|a, b| (b.1.spent_micros.cmp(&a.1.spent_micros)).then_with(|| a.0.cmp(&b.0)));
        let omitted = rows.len().saturating_sub(MAX_CONTEXT_CAMPAIGNS);
        let campaigns: Vec<Value> = rows
            .iter()
            .take(MAX_CONTEXT_CAMPAIGNS)
            .map(|(id, c)| {
                let mut view = self.performance_view(id, c);
                view["budget"] = self.budget_view(id, c);
                view
            })
            .collect();
        let recent = self.audit.tail(5).unwrap_or_default();
        Ok(json!({
            "now": rfc3339(self.clock.now_unix_ms()),
            "campaigns": campaigns,
            "campaigns_omitted": omitted,
            "recent_changes": recent,
        }))
    }

    /// `llm.status`: what the strategist is doing and has done.
    pub(super) fn llm_status(&self) -> Value {
        self.llm.view()
    }

    /// `llm.run`: starts a cycle now (the answer does not wait for it).
    pub(super) fn llm_run(&mut self, who: Who, why: Option<&str>) -> Result<Value, Error> {
        if let Some(reason) = self.llm.why_not() {
            return Err(Error::new(
                Code::LlmUnavailable,
                format!("the LLM strategist cannot run: {reason}"),
                "see `bidderctl llm status`",
            ));
        }
        let why = why.unwrap_or("run now");
        let state = json!({"running": self.llm.running});
        self.audit("llm.run", "llm", who, &state, &state, None, why)?;
        let started = !self.llm.running;
        self.llm.wake.notify_one();
        Ok(json!({"started": started, "running": self.llm.running}))
    }

    /// `llm.enable` / `llm.disable`: whether cycles run (until the agent restarts,
    /// when the configuration's `llm.enabled` applies again).
    pub(super) fn llm_switch(
        &mut self,
        on: bool,
        who: Who,
        why: Option<&str>,
    ) -> Result<Value, Error> {
        let why = require_why(why)?;
        let verb = if on { "llm.enable" } else { "llm.disable" };
        let old = json!({"enabled": self.llm.enabled});
        let new = json!({"enabled": on});
        self.audit(verb, "llm", who, &old, &new, None, why)?;
        self.llm.enabled = on;
        if on {
            self.llm.wake.notify_one();
        }
        Ok(json!({"old": old, "new": new, "unavailable": self.llm.unavailable}))
    }
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| (part as f64 / whole as f64 * 10_000.0).round() / 10_000.0)
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Mean clearing price as a CPM in currency units (`clearing_micros` sums per
/// impression prices).
fn avg_clearing_cpm(c: &CampaignStatsValue) -> Option<String> {
    (c.wins > 0).then(|| {
        let per_thousand = c.clearing_micros.saturating_mul(1_000) / c.wins as i64;
        crate::units::format_millionths(per_thousand)
    })
}
