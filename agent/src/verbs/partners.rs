//! The partner verbs: `partner.list`, `partner.set_limit`, `partner.enable`/`disable`.

use super::*;

impl Agent {
    pub(super) fn change_partner(
        &mut self,
        verb: &str,
        name: &str,
        who: Who,
        why: Option<&str>,
        change: impl FnOnce(&mut PartnerLimitValue),
    ) -> Result<Value, Error> {
        let why = require_why(why)?;
        let stats = self.stats_table()?;
        let p = self.partner_stats(&stats, name)?;
        let exists = self.writer.partner_row(name).is_some();
        let old = self
            .partner_row(name)
            .unwrap_or_else(|| initial_partner(&p));
        let mut new = old;
        change(&mut new);
        new.updated_at_unix_ms = self.clock.now_unix_ms();
        new.updated_by = who.uid;
        let t = self.writer.table();
        if !exists && t.partners().len() >= t.capacity().partners as usize {
            return Err(table_full("partner", t.capacity().partners));
        }
        let (old_view, new_view) = (limit_view(&old), limit_view(&new));
        self.audit(verb, name, who.clone(), &old_view, &new_view, None, why)?;
        self.writer.put_partner(name, &new.sealed()).map_err(|e| {
            Error::new(
                Code::TableFull,
                e.to_string(),
                "raise tables.partner_capacity",
            )
        })?;
        let row = crate::fleet::partner_row(&new.sealed());
        self.queue_change(crate::fleet::Kind::Partner, name, verb, &who, why, row);
        Ok(json!({"partner": name, "old": old_view, "new": new_view}))
    }

    pub(super) fn partner_list(&self) -> Result<Value, Error> {
        let stats = self.stats_table()?;
        let rows: Vec<Value> = stats
            .partners()
            .iter()
            .filter_map(|r| Some((r.key.get(), r.load().ok()?)))
            .filter(|(_, p)| p.flags & IN_CATALOG != 0)
            .map(|(k, p)| partner_view(k.as_str(), &p, self.partner_row(k.as_str())))
            .collect();
        Ok(json!({ "partners": rows }))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LimitArgs {
    pub(super) partner: String,
    pub(super) qps_limit: i64,
    pub(super) burst: i64,
}

pub(super) fn initial_partner(p: &PartnerStatsValue) -> PartnerLimitValue {
    PartnerLimitValue {
        qps_limit: p.config_qps_limit,
        burst: p.config_burst,
        flags: if p.flags & CONFIG_ENABLED != 0 {
            PARTNER_ENABLED
        } else {
            0
        },
        ..PartnerLimitValue::default()
    }
}

pub(super) fn limit_view(v: &PartnerLimitValue) -> Value {
    json!({"qps_limit": v.qps_limit, "burst": v.burst, "enabled": v.enabled()})
}

pub(super) fn partner_view(
    name: &str,
    p: &PartnerStatsValue,
    row: Option<PartnerLimitValue>,
) -> Value {
    json!({
        "partner": name,
        "enabled": p.flags & ENABLED != 0,
        "qps_limit": p.qps_limit,
        "burst": p.burst,
        "configured": {
            "qps_limit": p.config_qps_limit,
            "burst": p.config_burst,
            "enabled": p.flags & CONFIG_ENABLED != 0,
        },
        "override": row.as_ref().map(limit_view),
        "in_catalog": p.flags & IN_CATALOG != 0,
        "requests": p.requests,
        "bids": p.bids,
        "no_bids": p.no_bids,
    })
}
