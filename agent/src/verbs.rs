//! What each verb does: validate, bound, audit, write. The only writer of the
//! strategy table in the agent; the socket layer calls [`Agent::handle`] and nothing
//! else touches the table.
//!
//! The bidder's catalog (campaign ids, ceilings, configured budgets and partner
//! limits) comes from the stats table the bidder writes: a change for a campaign or
//! partner the bidder does not list is refused, and so is every change while the
//! bidder has never published (there would be no ceiling to check against).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bidder_common::clock::Clock;
use bidder_common::table::shm::{campaign_reason_names, reason_names, OnMismatch, Table, Writer};
use bidder_common::table::stats::{
    CampaignStatsValue, PartnerStatsValue, StatsTable, CONFIG_ENABLED, ENABLED, IN_CATALOG,
};
use bidder_common::table::strategy::{
    CampaignStrategyValue, PartnerLimitValue, StrategyTable, BUDGET_AS_CONFIGURED, CAMPAIGN_PAUSED,
    MAX_REASONING_BYTES, PARTNER_ENABLED, UPDATED_BY_AGENT,
};
use bidder_common::table::Capacity;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::audit::{rfc3339, AuditLog, Entry, Who, MAX_TAIL_LINES};
use crate::bounds::{self, check};
use crate::config::AgentConfig;
use crate::protocol::{self, Code, Error, Request, Response, Verb};

/// How long `reload` waits for the bidder's admin port.
const BIDDER_RELOAD_TIMEOUT_MS: u64 = 5_000;
/// Largest bidder reload answer read.
const MAX_RELOAD_ANSWER_BYTES: u64 = 64 * 1024;

/// The agent: its configuration, the strategy table it alone writes, the audit log.
pub struct Agent {
    config: AgentConfig,
    config_path: Option<PathBuf>,
    writer: Writer<StrategyTable>,
    audit: AuditLog,
    /// Stamps audit lines, rows' `updated_at` and the heartbeat; the bidder's age
    /// checks read the same calendar.
    clock: Clock,
    started: Instant,
    /// Requests answered, and those answered with an error (for `status`).
    pub served: u64,
    pub failed: u64,
}

impl Agent {
    /// Takes the strategy table (creating it if needed) and opens the audit log; every
    /// timestamp the agent writes comes from `clock`.
    pub fn open(
        config: AgentConfig,
        config_path: Option<PathBuf>,
        clock: Clock,
    ) -> Result<Agent, String> {
        let cap = Capacity {
            campaigns: config.tables.campaign_capacity,
            partners: config.tables.partner_capacity,
        };
        let writer = Writer::<StrategyTable>::open(
            &config.tables.strategy_path,
            cap,
            OnMismatch::Refuse,
            clock.clone(),
        )
        .map_err(|e| e.to_string())?;
        let audit = AuditLog::open(&config.audit_log)
            .map_err(|e| format!("{}: audit log: {e}", config.audit_log.display()))?;
        Ok(Agent {
            config,
            config_path,
            writer,
            audit,
            clock,
            started: Instant::now(),
            served: 0,
            failed: 0,
        })
    }

    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// Says the agent is alive in the strategy table's header.
    pub fn heartbeat(&self) {
        self.writer.heartbeat();
    }

    /// Answers one parsed request from `who`.
    pub fn handle(&mut self, req: Request, who: Who) -> Response {
        let id = req.id.clone();
        self.served += 1;
        match self.dispatch(&req, who) {
            Ok(result) => Response::ok(id, result),
            Err(e) => {
                self.failed += 1;
                Response::err(id, e)
            }
        }
    }

    fn dispatch(&mut self, req: &Request, who: Who) -> Result<Value, Error> {
        let a = &req.args;
        let why = req.why.as_deref();
        let Some(verb) = Verb::from_name(&req.verb) else {
            return Err(Error::new(
                Code::UnknownVerb,
                format!("unknown verb `{}`", req.verb),
                format!("verbs: {}", Verb::names()),
            ));
        };
        let name = verb.name();
        match verb {
            Verb::Status => {
                protocol::args::<NoArgs>(name, a)?;
                Ok(self.status())
            }
            Verb::StrategyGet => {
                let args: CampaignArg = protocol::args(name, a)?;
                self.strategy_get(&args.campaign)
            }
            Verb::StrategyList => {
                protocol::args::<NoArgs>(name, a)?;
                self.strategy_list()
            }
            Verb::StrategySet => self.strategy_set(protocol::args(name, a)?, who, why),
            Verb::CampaignPause | Verb::CampaignResume => {
                let args: CampaignArg = protocol::args(name, a)?;
                let paused = verb == Verb::CampaignPause;
                self.change_campaign(name, &args.campaign, who, why, |v, _| {
                    v.flags = if paused {
                        v.flags | CAMPAIGN_PAUSED
                    } else {
                        v.flags & !CAMPAIGN_PAUSED
                    };
                    Ok(())
                })
            }
            Verb::BudgetGet => {
                let args: CampaignArg = protocol::args(name, a)?;
                self.budget_get(&args.campaign)
            }
            Verb::BudgetSet => self.budget_set(protocol::args(name, a)?, who, why),
            Verb::PartnerList => {
                protocol::args::<NoArgs>(name, a)?;
                self.partner_list()
            }
            Verb::PartnerSetLimit => {
                let args: LimitArgs = protocol::args(name, a)?;
                let qps = check("qps_limit", args.qps_limit, bounds::PARTNER_LIMIT)
                    .map_err(out_of_bounds)?;
                let burst =
                    check("burst", args.burst, bounds::PARTNER_LIMIT).map_err(out_of_bounds)?;
                self.change_partner(name, &args.partner, who, why, |v| {
                    v.qps_limit = qps as u32;
                    v.burst = burst as u32;
                })
            }
            Verb::PartnerEnable | Verb::PartnerDisable => {
                let args: PartnerArg = protocol::args(name, a)?;
                let on = verb == Verb::PartnerEnable;
                self.change_partner(name, &args.partner, who, why, |v| {
                    v.flags = if on {
                        v.flags | PARTNER_ENABLED
                    } else {
                        v.flags & !PARTNER_ENABLED
                    };
                })
            }
            Verb::Stats => self.stats(protocol::args(name, a)?),
            Verb::AuditTail => {
                let args: TailArgs = protocol::args(name, a)?;
                let lines = check(
                    "lines",
                    args.lines.unwrap_or(20),
                    (1, MAX_TAIL_LINES as i64),
                )
                .map_err(out_of_bounds)?;
                let entries = self.audit.tail(lines as usize).map_err(|e| {
                    Error::new(
                        Code::Internal,
                        format!("reading the audit log: {e}"),
                        "check the audit log's permissions",
                    )
                })?;
                Ok(json!({"path": self.audit.path(), "entries": entries}))
            }
            Verb::Reload => {
                protocol::args::<NoArgs>(name, a)?;
                self.reload()
            }
        }
    }

    fn status(&self) -> Value {
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
            "bounds": {
                "margin_ppm": bounds::MARGIN_PPM,
                "shading_ppm": bounds::SHADING_PPM,
                "pacing_ppm": bounds::PACING_PPM,
                "max_cpm_micros": [bounds::MIN_MAX_CPM_MICROS, "campaign ceiling"],
                "daily_budget_micros": [0, format!("{}x configured", bounds::MAX_BUDGET_RAISE)],
                "partner_limit": bounds::PARTNER_LIMIT,
            },
        })
    }

    fn stats_table(&self) -> Result<Table<StatsTable>, Error> {
        Table::<StatsTable>::open_read(&self.config.tables.stats_path).map_err(|e| {
            Error::new(
                Code::BidderUnavailable,
                format!("the bidder's stats table is not readable: {e}"),
                "start the bidder (it publishes its campaigns there), or check tables.stats_path",
            )
        })
    }

    fn campaign_stats(
        &self,
        stats: &Table<StatsTable>,
        id: &str,
    ) -> Result<CampaignStatsValue, Error> {
        let row = stats
            .find_campaign(id)
            .and_then(|r| stats.campaigns()[r].load().ok())
            .filter(|v| v.flags & IN_CATALOG != 0);
        row.ok_or_else(|| {
            Error::new(
                Code::NotFound,
                format!("campaign `{id}` is not in the bidder's catalog"),
                "list campaigns with `bidderctl strategy list`",
            )
        })
    }

    fn partner_stats(
        &self,
        stats: &Table<StatsTable>,
        name: &str,
    ) -> Result<PartnerStatsValue, Error> {
        let row = stats
            .find_partner(name)
            .and_then(|r| stats.partners()[r].load().ok())
            .filter(|v| v.flags & IN_CATALOG != 0);
        row.ok_or_else(|| {
            Error::new(
                Code::NotFound,
                format!("partner `{name}` is not in the bidder's catalog"),
                "list partners with `bidderctl partner list`",
            )
        })
    }

    fn campaign_row(&self, id: &str) -> Option<CampaignStrategyValue> {
        let row = self.writer.campaign_row(id)?;
        self.writer.table().campaigns()[row].load().ok()
    }

    fn partner_row(&self, name: &str) -> Option<PartnerLimitValue> {
        let row = self.writer.partner_row(name)?;
        self.writer.table().partners()[row].load().ok()
    }

    fn strategy_get(&self, id: &str) -> Result<Value, Error> {
        let stats = self.stats_table()?;
        let c = self.campaign_stats(&stats, id)?;
        Ok(campaign_view(
            id,
            &self.effective(id, &c),
            self.campaign_row(id).is_some(),
            &c,
        ))
    }

    fn strategy_list(&self) -> Result<Value, Error> {
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
    fn effective(&self, id: &str, c: &CampaignStatsValue) -> CampaignStrategyValue {
        self.campaign_row(id).unwrap_or_else(|| initial_campaign(c))
    }

    fn strategy_set(&mut self, args: SetArgs, who: Who, why: Option<&str>) -> Result<Value, Error> {
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
        self.change_campaign(Verb::StrategySet.name(), &args.campaign, who, why, |v, c| {
            if let Some(m) = args.margin_ppm {
                v.margin_ppm = check("margin_ppm", m, bounds::MARGIN_PPM).map_err(out_of_bounds)? as u32;
            }
            if let Some(p) = args.pacing_ppm {
                v.pacing_ppm = check("pacing_ppm", p, bounds::PACING_PPM).map_err(out_of_bounds)? as u32;
            }
            if let Some(s) = args.shading_ppm {
                v.shading_ppm = check("shading_ppm", s, bounds::SHADING_PPM).map_err(out_of_bounds)? as u32;
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

    fn budget_get(&self, id: &str) -> Result<Value, Error> {
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
        }))
    }

    fn budget_set(
        &mut self,
        args: BudgetArgs,
        who: Who,
        why: Option<&str>,
    ) -> Result<Value, Error> {
        self.change_campaign(Verb::BudgetSet.name(), &args.campaign, who, why, |v, c| {
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
        })
    }

    /// The one path every campaign change takes: bound, audit, write.
    fn change_campaign(
        &mut self,
        verb: &str,
        id: &str,
        who: Who,
        why: Option<&str>,
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
        self.audit(verb, id, who, &old_view, &new_view, why)?;
        self.writer.put_campaign(id, &new.sealed()).map_err(|e| {
            Error::new(
                Code::TableFull,
                e.to_string(),
                "raise tables.campaign_capacity",
            )
        })?;
        Ok(json!({"campaign": id, "old": old_view, "new": new_view}))
    }

    fn change_partner(
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
        self.audit(verb, name, who, &old_view, &new_view, why)?;
        self.writer.put_partner(name, &new.sealed()).map_err(|e| {
            Error::new(
                Code::TableFull,
                e.to_string(),
                "raise tables.partner_capacity",
            )
        })?;
        Ok(json!({"partner": name, "old": old_view, "new": new_view}))
    }

    fn audit(
        &mut self,
        verb: &str,
        target: &str,
        who: Who,
        old: &Value,
        new: &Value,
        why: &str,
    ) -> Result<(), Error> {
        let at_unix_ms = self.clock.now_unix_ms();
        let entry = Entry {
            at_unix_ms,
            at: rfc3339(at_unix_ms),
            who,
            verb,
            target,
            old: old.clone(),
            new: new.clone(),
            why,
        };
        self.audit.append(&entry).map_err(|e| {
            Error::new(
                Code::Internal,
                format!(
                    "audit log {}: {e}; nothing was changed",
                    self.audit.path().display()
                ),
                "fix the audit log (disk full? permissions?) and retry",
            )
        })
    }

    fn partner_list(&self) -> Result<Value, Error> {
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

    fn stats(&self, args: StatsArgs) -> Result<Value, Error> {
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
    fn reload(&mut self) -> Result<Value, Error> {
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
                "reloaded"
            }
            None => "no configuration file",
        };
        let bidder = if self.config.bidder_admin.is_empty() {
            "not configured (bidder_admin is empty)".to_string()
        } else {
            post_reload(&self.config.bidder_admin)?
        };
        Ok(json!({"agent": agent, "bidder": bidder}))
    }
}

/// POSTs `/reload` to the bidder's admin port and returns its answer's body.
fn post_reload(admin: &str) -> Result<String, Error> {
    let failed = |what: String| {
        Error::new(
            Code::ReloadFailed,
            what,
            "check the bidder's admin listener (bidder_admin) and its log",
        )
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
        "POST /reload HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes())
        .map_err(|e| failed(format!("{addr}: {e}")))?;
    let mut answer = String::new();
    s.take(MAX_RELOAD_ANSWER_BYTES)
        .read_to_string(&mut answer)
        .map_err(|e| failed(format!("{addr}: {e}")))?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let body = body.trim().to_string();
    if head.starts_with("HTTP/1.1 200") {
        Ok(body)
    } else {
        Err(failed(format!(
            "bidder refused the reload: {} {body}",
            head.lines().next().unwrap_or("")
        )))
    }
}

fn require_why(why: Option<&str>) -> Result<&str, Error> {
    match why.map(str::trim) {
        Some(w) if !w.is_empty() && w.len() <= MAX_REASONING_BYTES => Ok(w),
        Some(w) if !w.is_empty() => Err(Error::new(
            Code::BadArgs,
            format!(
                "why is {} bytes, the limit is {MAX_REASONING_BYTES}",
                w.len()
            ),
            "shorten the reason",
        )),
        _ => Err(Error::new(
            Code::BadArgs,
            "a change needs a reason: \"why\" is missing or empty",
            r#"add "why":"…" to the request (bidderctl: --why)"#,
        )),
    }
}

fn out_of_bounds(e: bounds::OutOfBounds) -> Error {
    Error::new(
        Code::OutOfBounds,
        e.to_string(),
        format!("{} must be within {}..={}", e.field, e.min, e.max),
    )
}

fn table_full(section: &str, capacity: u32) -> Error {
    Error::new(
        Code::TableFull,
        format!("all {capacity} {section} rows of the strategy table are used"),
        format!("raise tables.{section}_capacity and restart the agent (rows are migrated)"),
    )
}

/// A campaign's first row: the configuration's behaviour, written down.
fn initial_campaign(c: &CampaignStatsValue) -> CampaignStrategyValue {
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
        checksum: 0,
    }
}

fn initial_partner(p: &PartnerStatsValue) -> PartnerLimitValue {
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

fn who_view(uid: u32) -> Value {
    if uid == UPDATED_BY_AGENT {
        json!("agent")
    } else {
        json!(uid)
    }
}

fn campaign_view(
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
    })
}

fn limit_view(v: &PartnerLimitValue) -> Value {
    json!({"qps_limit": v.qps_limit, "burst": v.burst, "enabled": v.enabled()})
}

fn partner_view(name: &str, p: &PartnerStatsValue, row: Option<PartnerLimitValue>) -> Value {
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

/// `{name: count}` for the counts that are not zero, names by position.
fn named_counts(names: &[String], counts: &[u64]) -> serde_json::Map<String, Value> {
    names
        .iter()
        .zip(counts)
        .filter(|(_, n)| **n > 0)
        .map(|(name, n)| (name.clone(), json!(n)))
        .collect()
}

fn campaign_stats_view(id: &str, c: &CampaignStatsValue, reasons: &[String]) -> Value {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CampaignArg {
    campaign: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartnerArg {
    partner: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetArgs {
    campaign: String,
    margin_ppm: Option<i64>,
    max_cpm_micros: Option<i64>,
    pacing_ppm: Option<i64>,
    shading_ppm: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetArgs {
    campaign: String,
    /// `null`: back to the configured budget.
    daily_budget_micros: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitArgs {
    partner: String,
    qps_limit: i64,
    burst: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatsArgs {
    campaign: Option<String>,
    partner: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TailArgs {
    lines: Option<i64>,
}
