//! What each verb does: validate, bound, audit, write. The only writer of the
//! strategy table in the agent; the socket layer calls [`Agent::handle`] and nothing
//! else touches the table.
//!
//! The bidder's catalog (campaign ids, ceilings, configured budgets and partner
//! limits) comes from the stats table the bidder writes: a change for a campaign or
//! partner the bidder does not list is refused, and so is every change while the
//! bidder has never published (there would be no ceiling to check against).
//!
//! This file holds the agent, the dispatch on [`Verb`] and what every family shares
//! (the stats-table lookups, the audit, the error helpers); the verbs themselves are
//! in `campaigns.rs` (`strategy.*`, `campaign.*`, `budget.*`), `partners.rs`
//! (`partner.*`), `reports.rs` (`status`, `stats`, `reload`), `llm.rs` (`llm.*`) and
//! `controller.rs` (`controller.*`, and the controller's timer).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bidder_common::clock::Clock;
use bidder_common::table::segment::{SegmentKey, SEGMENTS_PER_CAMPAIGN};
use bidder_common::table::shm::{Table, Writer};
use bidder_common::table::stats::{
    CampaignStatsValue, PartnerStatsValue, StatsTable, BREAKER_TRIPPED, CONFIG_ENABLED, ENABLED,
    IN_CATALOG, NO_LIMIT,
};
use bidder_common::table::stats_file::{campaign_reason_names, reason_names};
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

mod campaigns;
mod controller;
mod llm;
mod partners;
mod reports;
use reports::post_to_bidder;

pub use controller::ControllerState;
use partners::LimitArgs;

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
    /// The LLM strategist's switch, key and record (`llm/`).
    pub llm: crate::llm::LlmState,
    /// Requests answered, and those answered with an error (for `status`).
    pub served: u64,
    pub failed: u64,
    /// Where `GET /metrics` is served, once bound (`metrics_listen`).
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// The built-in controller's memory and record (`controller.rs`).
    pub controller: ControllerState,
    /// Fleet mode: changes to publish and the position in the fleet's stream.
    replication: Option<crate::fleet::Replication>,
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
        let writer =
            crate::upgrade::open_strategy_table(&config.tables.strategy_path, cap, clock.clone())?;
        let audit = AuditLog::open(&config.audit_log)
            .map_err(|e| format!("{}: audit log: {e}", config.audit_log.display()))?;
        let replication = config.fleet.clone().map(|fleet| {
            crate::fleet::Replication::new(
                fleet,
                crate::fleet::position_file(&config.audit_log),
                clock.now_unix_ms(),
            )
        });
        Ok(Agent {
            replication,
            llm: crate::llm::LlmState::new(config.llm.clone()),
            config,
            config_path,
            writer,
            audit,
            clock,
            started: Instant::now(),
            served: 0,
            failed: 0,
            metrics_addr: None,
            controller: ControllerState::default(),
        })
    }

    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// The agent's one calendar (the host's, or a simulator's).
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Now, from the agent's one clock.
    pub fn now_unix_ms(&self) -> u64 {
        self.clock.now_unix_ms()
    }

    /// Fleet mode's queue and position (`None` on a single host).
    pub fn replication(&self) -> Option<&crate::fleet::Replication> {
        self.replication.as_ref()
    }

    pub fn replication_mut(&mut self) -> Option<&mut crate::fleet::Replication> {
        self.replication.as_mut()
    }

    /// Queues a change this host made for the fleet (no-op on a single host).
    fn queue_change(
        &mut self,
        kind: crate::fleet::Kind,
        key: &str,
        verb: &str,
        who: &Who,
        why: &str,
        row: Value,
    ) {
        if let Some(r) = &mut self.replication {
            r.queue(kind, key, verb, who, why, row);
        }
    }

    /// Writes a change another host made (or this one, read back from the fleet's
    /// stream), audited as that change, unless the table holds that row already.
    /// `Ok(false)`: nothing to do.
    pub fn apply_change(
        &mut self,
        change: &crate::fleet::Change,
        id: &str,
    ) -> Result<bool, String> {
        use crate::fleet::{campaign_from, campaign_row, partner_from, partner_row, Kind};
        let asked = json!({"replicated_from": change.host, "stream_id": id});
        match change.kind {
            Kind::Campaign => {
                let new = campaign_from(&change.row).ok_or("a campaign row that does not read")?;
                let old = self.campaign_row(&change.key);
                if old.map(|o| o.sealed()) == Some(new) {
                    return Ok(false);
                }
                let old_view = old.as_ref().map_or(Value::Null, campaign_row);
                self.audit(
                    &change.verb,
                    &change.key,
                    change.who.clone(),
                    &old_view,
                    &change.row,
                    Some(asked),
                    &change.why,
                )
                .map_err(|e| e.message)?;
                self.writer
                    .put_campaign(&change.key, &new)
                    .map_err(|e| e.to_string())?;
            }
            Kind::Partner => {
                let new = partner_from(&change.row).ok_or("a partner row that does not read")?;
                let old = self.partner_row(&change.key);
                if old.map(|o| o.sealed()) == Some(new) {
                    return Ok(false);
                }
                let old_view = old.as_ref().map_or(Value::Null, partner_row);
                self.audit(
                    &change.verb,
                    &change.key,
                    change.who.clone(),
                    &old_view,
                    &change.row,
                    Some(asked),
                    &change.why,
                )
                .map_err(|e| e.message)?;
                self.writer
                    .put_partner(&change.key, &new)
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(true)
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
                let mut done =
                    self.change_campaign(name, &args.campaign, who, why, None, |v, _| {
                        v.flags = if paused {
                            v.flags | CAMPAIGN_PAUSED
                        } else {
                            v.flags & !CAMPAIGN_PAUSED
                        };
                        Ok(())
                    })?;
                if !paused {
                    done["breaker"] = self.reset_breaker(&args.campaign).into();
                }
                Ok(done)
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
            Verb::LlmStatus => {
                protocol::args::<NoArgs>(name, a)?;
                Ok(self.llm_status())
            }
            Verb::LlmRun => {
                protocol::args::<NoArgs>(name, a)?;
                self.llm_run(who, why)
            }
            Verb::SupplyStatus => {
                protocol::args::<NoArgs>(name, a)?;
                self.supply_status()
            }
            Verb::LlmEnable | Verb::LlmDisable => {
                protocol::args::<NoArgs>(name, a)?;
                self.llm_switch(verb == Verb::LlmEnable, who, why)
            }
            Verb::ControllerStatus => {
                protocol::args::<NoArgs>(name, a)?;
                Ok(self.controller_status())
            }
            Verb::ControllerStep => self.controller_step(protocol::args(name, a)?),
        }
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

    #[allow(clippy::too_many_arguments)]
    fn audit(
        &mut self,
        verb: &str,
        target: &str,
        who: Who,
        old: &Value,
        new: &Value,
        asked: Option<Value>,
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
            asked,
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

fn who_view(uid: u32) -> Value {
    if uid == UPDATED_BY_AGENT {
        json!("agent")
    } else {
        json!(uid)
    }
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
struct TailArgs {
    lines: Option<i64>,
}
