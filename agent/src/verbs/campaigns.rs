//! The campaign verbs: `strategy.*`, `campaign.pause`/`resume`, `budget.*`.

use super::*;

impl Agent {
    pub(super) fn strategy_get(&self, id: &str) -> Result<Value, Error> {
        let stats = self.stats_table()?;
        let c = self.campaign_stats(&stats, id)?;
        Ok(campaign_view(
            id,
            &self.effective(id, &c),
            self.campaign_row(id).is_some(),
            &c,
        ))
    }

    pub(super) fn strategy_list(&self) -> Result<Value, Error> {
        let stats = self.stats_table()?;
        let rows: Vec<Value> = stats
            .campaigns()
            .iter()
            .filter_map(|r| Some((r.key.get(), r.load().ok()?)))
            .filter(|(_, c)| c.flags & IN_CATALOG != 0)
            .map(|(k, c)| {
                let id = k.as_str();
                campaign_view(
                    id,
                    &self.effective(id, &c),
                    self.campaign_row(id).is_some(),
                    &c,
                )
            })
            .collect();
        Ok(json!({ "campaigns": rows }))
    }

    /// The strategy the bidder applies: the row, or the configuration's defaults.
    pub(super) fn effective(&self, id: &str, c: &CampaignStatsValue) -> CampaignStrategyValue {
        self.campaign_row(id).unwrap_or_else(|| initial_campaign(c))
    }

    pub(super) fn strategy_set(
        &mut self,
        args: SetArgs,
        who: Who,
        why: Option<&str>,
    ) -> Result<Value, Error> {
        let fields = [
            args.margin_ppm,
            args.max_cpm_micros,
            args.pacing_ppm,
            args.shading_ppm,
        ];
        if fields.iter().all(Option::is_none) {
            return Err(Error::new(
                Code::BadArgs,
                "strategy.set: nothing to set",
                "give at least one of margin_ppm, max_cpm_micros, pacing_ppm, shading_ppm",
            ));
        }
        self.change_campaign(Verb::StrategySet.name(), &args.campaign, who, why, None, |v, c| {
            if let Some(m) = args.margin_ppm {
                v.margin_ppm = check("margin_ppm", m, bounds::MARGIN_PPM).map_err(out_of_bounds)? as u32;
            }
            if let Some(p) = args.pacing_ppm {
                v.pacing_ppm = check("pacing_ppm", p, bounds::PACING_PPM).map_err(out_of_bounds)? as u32;
            }
            if let Some(s) = args.shading_ppm {
                v.shading_ppm = check("shading_ppm", s, bounds::SHADING_PPM).map_err(out_of_bounds)? as u32;
                // A shading set by hand applies to every segment: the controller's
                // per-segment ones go (it sets them again on its next step unless the
                // campaign is in its `exclude_campaigns`).
                v.segment_keys = [0; SEGMENTS_PER_CAMPAIGN];
                v.segment_shading_ppm = [0; SEGMENTS_PER_CAMPAIGN];
            }
            if let Some(cpm) = args.max_cpm_micros {
                let ceiling = (bounds::MIN_MAX_CPM_MICROS, c.max_bid_cpm_micros);
                v.max_cpm_micros = check("max_cpm_micros", cpm, ceiling).map_err(|e| {
                    let mut err = out_of_bounds(e);
                    err.hint = format!("the campaign's ceiling is {} micros (max_bid_cpm_micros in the bidder's configuration)", c.max_bid_cpm_micros);
                    err
                })?;
            }
            Ok(())
        })
    }

    /// A resume also clears the bidder's spend-rate breaker, over its admin port. The
    /// table change is done and audited either way; the answer says what the bidder
    /// did, or why it could not be asked.
    pub(super) fn reset_breaker(&self, id: &str) -> String {
        if self.config.bidder_admin.is_empty() {
            return "not asked (bidder_admin is empty): reset it with POST /campaign/ID/resume on the bidder's admin port".into();
        }
        let path = format!("/campaign/{}/resume", percent_encoded(id));
        match post_to_bidder(&self.config, &path, "resume") {
            Ok(answer) => answer,
            Err(e) => format!("not reset: {}; fix: {}", e.message, e.hint),
        }
    }

    pub(super) fn budget_get(&self, id: &str) -> Result<Value, Error> {
        let stats = self.stats_table()?;
        let c = self.campaign_stats(&stats, id)?;
        let over = self
            .campaign_row(id)
            .map(|r| r.daily_budget_micros)
            .filter(|b| *b != BUDGET_AS_CONFIGURED);
        Ok(json!({
            "campaign": id,
            "daily_budget_micros": c.daily_budget_micros,
            "configured_daily_budget_micros": c.config_daily_budget_micros,
            "override_micros": over,
            "available_micros": c.available_micros,
            "reserved_micros": c.reserved_micros,
            "spent_micros": c.spent_micros,
            "budget_refusals": c.budget_refusals,
            "breaker_tripped": c.flags & BREAKER_TRIPPED != 0,
            "period": period(&c),
        }))
    }

    pub(super) fn budget_set(
        &mut self,
        args: BudgetArgs,
        who: Who,
        why: Option<&str>,
    ) -> Result<Value, Error> {
        self.change_campaign(
            Verb::BudgetSet.name(),
            &args.campaign,
            who,
            why,
            None,
            |v, c| {
                v.daily_budget_micros = match args.daily_budget_micros {
                    None => BUDGET_AS_CONFIGURED,
                    Some(b) => {
                        let max = c
                            .config_daily_budget_micros
                            .saturating_mul(bounds::MAX_BUDGET_RAISE);
                        check("daily_budget_micros", b, (0, max)).map_err(out_of_bounds)?
                    }
                };
                Ok(())
            },
        )
    }

    /// The one path every campaign change takes: bound, audit, write.
    pub(super) fn change_campaign(
        &mut self,
        verb: &str,
        id: &str,
        who: Who,
        why: Option<&str>,
        asked: Option<Value>,
        change: impl FnOnce(&mut CampaignStrategyValue, &CampaignStatsValue) -> Result<(), Error>,
    ) -> Result<Value, Error> {
        let why = require_why(why)?;
        let stats = self.stats_table()?;
        let c = self.campaign_stats(&stats, id)?;
        let exists = self.writer.campaign_row(id).is_some();
        let old = self.effective(id, &c);
        let mut new = old;
        change(&mut new, &c)?;
        new.updated_at_unix_ms = self.clock.now_unix_ms();
        new.updated_by = who.uid;
        new.set_reasoning(why);
        let t = self.writer.table();
        if !exists && t.campaigns().len() >= t.capacity().campaigns as usize {
            return Err(table_full("campaign", t.capacity().campaigns));
        }
        let (old_view, new_view) = (
            campaign_view(id, &old, exists, &c),
            campaign_view(id, &new, true, &c),
        );
        self.audit(
            verb,
            id,
            who.clone(),
            &old_view,
            &new_view,
            asked.clone(),
            why,
        )?;
        self.writer.put_campaign(id, &new.sealed()).map_err(|e| {
            Error::new(
                Code::TableFull,
                e.to_string(),
                "raise tables.campaign_capacity",
            )
        })?;
        let row = crate::fleet::campaign_row(&new.sealed());
        self.queue_change(crate::fleet::Kind::Campaign, id, verb, &who, why, row);
        let mut done = json!({"campaign": id, "old": old_view, "new": new_view});
        if let Some(asked) = asked {
            done["asked"] = asked;
        }
        Ok(done)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SetArgs {
    campaign: String,
    margin_ppm: Option<i64>,
    max_cpm_micros: Option<i64>,
    pacing_ppm: Option<i64>,
    shading_ppm: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BudgetArgs {
    campaign: String,
    /// `null`: back to the configured budget.
    daily_budget_micros: Option<i64>,
}

/// A campaign's first row: the configuration's behaviour, written down.
pub(super) fn initial_campaign(c: &CampaignStatsValue) -> CampaignStrategyValue {
    CampaignStrategyValue {
        margin_ppm: 1_000_000,
        pacing_ppm: 1_000_000,
        shading_ppm: c.default_shading_ppm,
        flags: 0,
        max_cpm_micros: c.max_bid_cpm_micros,
        daily_budget_micros: BUDGET_AS_CONFIGURED,
        updated_at_unix_ms: 0,
        updated_by: 0,
        reasoning_len: 0,
        reasoning: [0; MAX_REASONING_BYTES],
        segment_keys: [0; SEGMENTS_PER_CAMPAIGN],
        segment_shading_ppm: [0; SEGMENTS_PER_CAMPAIGN],
        checksum: 0,
    }
}

pub(super) fn campaign_view(
    id: &str,
    v: &CampaignStrategyValue,
    from_table: bool,
    c: &CampaignStatsValue,
) -> Value {
    json!({
        "campaign": id,
        "margin_ppm": v.margin_ppm,
        "max_cpm_micros": v.max_cpm_micros,
        "ceiling_cpm_micros": c.max_bid_cpm_micros,
        "pacing_ppm": v.pacing_ppm,
        "shading_ppm": v.shading_ppm,
        "paused": v.flags & CAMPAIGN_PAUSED != 0,
        "daily_budget_micros": (v.daily_budget_micros != BUDGET_AS_CONFIGURED).then_some(v.daily_budget_micros),
        "source": if from_table { "table" } else { "configuration" },
        "updated_at": (v.updated_at_unix_ms > 0).then(|| rfc3339(v.updated_at_unix_ms)),
        "updated_by": (v.updated_at_unix_ms > 0).then(|| who_view(v.updated_by)),
        "why": v.reasoning(),
        "segments": v
            .segment_keys
            .iter()
            .zip(&v.segment_shading_ppm)
            .filter(|(&key, _)| key != 0)
            .map(|(&key, &ppm)| json!({"segment": SegmentKey(key).to_string(), "shading_ppm": ppm}))
            .collect::<Vec<Value>>(),
    })
}

/// The campaign's current budget periods, as `budget get` shows them: when its day and
/// hour started (UTC, RFC 3339), what the day before spent, and the hourly and lifetime
/// budgets with what they spent (`null` budget: none set).
fn period(c: &CampaignStatsValue) -> Value {
    let limit = |v: i64| (v != NO_LIMIT).then_some(v);
    json!({
        "day_start": rfc3339(c.day_start_ms),
        "hour_start": rfc3339(c.hour_start_ms),
        "previous_day_spent_micros": c.previous_day_spent_micros,
        "hourly_budget_micros": limit(c.hourly_budget_micros),
        "hour_spent_micros": c.hour_spent_micros,
        "lifetime_budget_micros": limit(c.lifetime_budget_micros),
        "lifetime_spent_micros": c.lifetime_spent_micros,
    })
}

/// An id as one URL path segment: RFC 3986 unreserved bytes pass, the rest `%XX`.
fn percent_encoded(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
