//! The verbs that report and reload: `status`, `stats`, `reload`.

use super::partners::partner_view;
use super::*;

impl Agent {
    pub(super) fn status(&self) -> Value {
        let t = self.writer.table();
        let h = t.header();
        let bidder = match Table::<StatsTable>::open_read(&self.config.tables.stats_path) {
            Ok(s) => {
                let sh = s.header();
                let beat = sh
                    .heartbeat_unix_ms
                    .load(std::sync::atomic::Ordering::Relaxed);
                json!({
                    "stats_table": self.config.tables.stats_path,
                    "pid": sh.writer_pid.load(std::sync::atomic::Ordering::Relaxed),
                    "heartbeat_age_ms": self.clock.now_unix_ms().saturating_sub(beat),
                    "campaigns": s.campaigns().len(),
                    "partners": s.partners().len(),
                })
            }
            Err(e) => json!({"stats_table": self.config.tables.stats_path, "error": e.to_string()}),
        };
        json!({
            "agent": {
                "version": env!("CARGO_PKG_VERSION"),
                "protocol": protocol::VERSION,
                "pid": std::process::id(),
                "uptime_ms": self.started.elapsed().as_millis() as u64,
                "requests": self.served,
                "errors": self.failed,
                "audit_log": self.audit.path(),
                "metrics": self.metrics_addr.map(|a| a.to_string()),
            },
            "strategy_table": {
                "path": self.config.tables.strategy_path,
                "campaign_rows": t.campaigns().len(),
                "campaign_capacity": t.capacity().campaigns,
                "partner_rows": t.partners().len(),
                "partner_capacity": t.capacity().partners,
                "generation": t.generation(),
                "created_at": rfc3339(h.created_unix_ms.load(std::sync::atomic::Ordering::Relaxed)),
            },
            "bidder": bidder,
            "fleet": self.replication().map(|r| json!({
                "host": r.config.host,
                "published": r.published,
                "applied": r.applied,
                "queued": r.outbox.len(),
                "dropped": r.dropped,
                "failures": r.failures,
                "position": r.position,
            })),
            "bounds": {
                "margin_ppm": bounds::MARGIN_PPM,
                "shading_ppm": bounds::SHADING_PPM,
                "pacing_ppm": bounds::PACING_PPM,
                "max_cpm_micros": [bounds::MIN_MAX_CPM_MICROS, "campaign ceiling"],
                "daily_budget_micros": [0, format!("{}x configured", bounds::MAX_BUDGET_RAISE)],
                "partner_limit": bounds::PARTNER_LIMIT,
            },
            "llm": {
                "enabled": self.llm.enabled,
                "model": self.llm.config.model(),
                "why_not": self.llm.why_not(),
                "running": self.llm.running,
                "cycles_ok": self.llm.cycles_ok,
                "cycles_failed": self.llm.cycles_failed,
            },
        })
    }

    pub(super) fn stats(&self, args: StatsArgs) -> Result<Value, Error> {
        let stats = self.stats_table()?;
        let totals = stats.prefix().totals.load().unwrap_or_default();
        let no_bids = named_counts(&reason_names(&stats), &totals.no_bid_imps);
        let campaign_reasons = campaign_reason_names(&stats);
        let campaigns: Vec<Value> = stats
            .campaigns()
            .iter()
            .filter_map(|r| Some((r.key.get(), r.load().ok()?)))
            .filter(|(k, _)| args.campaign.as_deref().is_none_or(|c| c == k.as_str()))
            .filter(|_| args.partner.is_none() || args.campaign.is_some())
            .map(|(k, c)| campaign_stats_view(k.as_str(), &c, &campaign_reasons))
            .collect();
        let partners: Vec<Value> = stats
            .partners()
            .iter()
            .filter_map(|r| Some((r.key.get(), r.load().ok()?)))
            .filter(|(k, _)| args.partner.as_deref().is_none_or(|p| p == k.as_str()))
            .filter(|_| args.campaign.is_none() || args.partner.is_some())
            .map(|(k, p)| partner_view(k.as_str(), &p, self.partner_row(k.as_str())))
            .collect();
        if let Some(c) = &args.campaign {
            self.campaign_stats(&stats, c)?;
        }
        if let Some(p) = &args.partner {
            self.partner_stats(&stats, p)?;
        }
        Ok(json!({
            "totals": {
                "requests": totals.requests,
                "imps": totals.imps,
                "bids": totals.bids,
                "no_bid_requests": totals.no_bid_requests,
                "deadline_missed": totals.deadline_missed,
                "catalog_generation": totals.catalog_generation,
                "strategy_contended": totals.strategy_contended,
                "no_bid_imps": no_bids,
            },
            "campaigns": campaigns,
            "partners": partners,
        }))
    }

    /// Re-reads this agent's configuration (access lists, limits; table paths and
    /// capacities need a restart) and asks the bidder to reload its own.
    pub(super) fn reload(&mut self) -> Result<Value, Error> {
        let agent = match &self.config_path {
            Some(path) => {
                let fresh = AgentConfig::load(path).map_err(|e| {
                    Error::new(
                        Code::ReloadFailed,
                        format!("agent configuration: {e}"),
                        "fix the file; the running configuration stays",
                    )
                })?;
                self.config.socket = fresh.socket;
                self.config.bidder_admin = fresh.bidder_admin;
                self.config.bidder_admin_token_file = fresh.bidder_admin_token_file;
                "reloaded"
            }
            None => "no configuration file",
        };
        let bidder = if self.config.bidder_admin.is_empty() {
            "not configured (bidder_admin is empty)".to_string()
        } else {
            post_reload(&self.config)?
        };
        Ok(json!({"agent": agent, "bidder": bidder}))
    }
}

impl Agent {
    /// The bidder's supply files (`GET /supply` on its admin port): what is cached,
    /// its age, its last error.
    pub(super) fn supply_status(&self) -> Result<Value, Error> {
        if self.config.bidder_admin.is_empty() {
            return Err(Error::new(
                Code::BidderUnavailable,
                "bidder_admin is not configured",
                "set bidder_admin in the agent's configuration to the bidder's admin listener",
            ));
        }
        let body = call_bidder(
            &self.config,
            "GET",
            "/supply",
            "supply status",
            MAX_SUPPLY_ANSWER_BYTES,
        )?;
        serde_json::from_str(&body).map_err(|e| {
            Error::new(
                Code::Internal,
                format!("the bidder's /supply answer is not JSON: {e}"),
                "check that bidder_admin points at the bidder's admin listener",
            )
        })
    }
}

/// Largest `/supply` answer read (about 200 bytes per tracked file).
pub(super) const MAX_SUPPLY_ANSWER_BYTES: u64 = 64 << 20;

/// How long `reload` waits for the bidder's admin port.
pub(super) const BIDDER_RELOAD_TIMEOUT_MS: u64 = 5_000;

/// Largest bidder reload answer read.
pub(super) const MAX_RELOAD_ANSWER_BYTES: u64 = 64 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StatsArgs {
    campaign: Option<String>,
    partner: Option<String>,
}

/// POSTs `/reload` to the bidder's admin port and returns its answer's body.
pub(super) fn post_reload(config: &AgentConfig) -> Result<String, Error> {
    post_to_bidder(config, "/reload", "reload")
}

/// POSTs an empty body to `path` on the bidder's admin port and returns the answer's
/// body when it is 200 (see [`call_bidder`]).
pub(super) fn post_to_bidder(
    config: &AgentConfig,
    path: &str,
    what: &str,
) -> Result<String, Error> {
    call_bidder(config, "POST", path, what, MAX_RELOAD_ANSWER_BYTES)
}

/// Sends `method path` with an empty body to the bidder's admin port (`bidder_admin`,
/// with the token of `bidder_admin_token_file`; `what` names the action in errors),
/// reads at most `max_answer_bytes`, and returns the body when the answer is 200.
pub(super) fn call_bidder(
    config: &AgentConfig,
    method: &str,
    path: &str,
    what: &str,
    max_answer_bytes: u64,
) -> Result<String, Error> {
    let admin = config.bidder_admin.as_str();
    let failed = |problem: String| {
        Error::new(
            Code::ReloadFailed,
            problem,
            "check the bidder's admin listener (bidder_admin), bidder_admin_token_file and the bidder's log",
        )
    };
    let authorization = match &config.bidder_admin_token_file {
        None => String::new(),
        Some(file) => {
            let token = std::fs::read_to_string(file)
                .map_err(|e| failed(format!("bidder_admin_token_file {}: {e}", file.display())))?;
            format!("authorization: Bearer {}\r\n", token.trim())
        }
    };
    let addr: SocketAddr = admin
        .parse()
        .map_err(|_| failed(format!("bidder_admin `{admin}` is not ip:port")))?;
    let timeout = Duration::from_millis(BIDDER_RELOAD_TIMEOUT_MS);
    let mut s =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| failed(format!("{addr}: {e}")))?;
    s.set_read_timeout(Some(timeout))
        .and_then(|()| s.set_write_timeout(Some(timeout)))
        .map_err(|e| failed(e.to_string()))?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\n{authorization}content-length: 0\r\nconnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes())
        .map_err(|e| failed(format!("{addr}: {e}")))?;
    let mut answer = String::new();
    s.take(max_answer_bytes)
        .read_to_string(&mut answer)
        .map_err(|e| failed(format!("{addr}: {e}")))?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let body = body.trim().to_string();
    if head.starts_with("HTTP/1.1 200") {
        Ok(body)
    } else {
        Err(failed(format!(
            "bidder refused the {what}: {} {body}",
            head.lines().next().unwrap_or("")
        )))
    }
}

pub(super) fn campaign_stats_view(id: &str, c: &CampaignStatsValue, reasons: &[String]) -> Value {
    json!({
        "campaign": id,
        "in_catalog": c.flags & IN_CATALOG != 0,
        "requests": c.requests,
        "bids": c.bids,
        "outbid": c.outbid,
        "no_bids": named_counts(reasons, &c.no_bids),
        "wins": c.wins,
        "clearing_micros": c.clearing_micros,
        "daily_budget_micros": c.daily_budget_micros,
        "spent_micros": c.spent_micros,
        "reserved_micros": c.reserved_micros,
        "available_micros": c.available_micros,
        "overcharged_micros": c.overcharged_micros,
        "budget_refusals": c.budget_refusals,
    })
}

/// `{name: count}` for the counts that are not zero, names by position.
pub(super) fn named_counts(names: &[String], counts: &[u64]) -> serde_json::Map<String, Value> {
    names
        .iter()
        .zip(counts)
        .filter(|(_, n)| **n > 0)
        .map(|(name, n)| (name.clone(), json!(n)))
        .collect()
}
