//! Strategy replication in a fleet (`[fleet]` in agent.toml): a change made through any
//! host's agent — an operator's `bidderctl`, the controller, the LLM — reaches every
//! host's strategy table, with its audit line (who, why) kept.
//!
//! Each change the agent makes is queued ([`Agent::queue_change`]) and published by
//! [`run`] to a Redis stream, `{PREFIX:strategy}:log`, with the row it wrote; the latest
//! change of every row is also kept in the hash `{PREFIX:strategy}:rows` (a snapshot for
//! a host that fell further behind than the stream keeps). Every agent reads the stream
//! in order from where it stopped (its position is kept in a file beside the audit
//! log) and writes each row that differs from its table, audited as the original
//! change with `asked.replicated_from`. So every host applies the same changes in the
//! same order (the stream's): the last change in the stream wins everywhere, a host
//! that was disconnected catches up, and nothing is applied out of order. A publish
//! whose answer was lost is sent again; the store drops it if the host's sequence
//! number was already published.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bidder_common::table::segment::SEGMENTS_PER_CAMPAIGN;
use bidder_common::table::strategy::{
    CampaignStrategyValue, PartnerLimitValue, MAX_REASONING_BYTES,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::audit::Who;
use crate::verbs::Agent;

/// Changes waiting to be published, at most; past it the oldest is dropped (counted).
pub const MAX_OUTBOX: usize = 10_000;
/// About this many changes are kept in the stream.
const STREAM_LEN: u64 = 100_000;
/// Changes read per call.
const READ_BATCH: usize = 256;

/// `[fleet]`: where the fleet's Redis is and what this host is called in it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// `redis://host:port/db` (or `rediss://`, TLS) — the same Redis the bidders'
    /// `[fleet]` use.
    pub redis_url: String,
    /// For `rediss://`: the CA certificate (PEM) that signed Redis's, when the system's
    /// trust store does not have it.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    #[serde(default = "FleetConfig::default_key_prefix")]
    pub key_prefix: String,
    /// This host's name in the audit lines of the others (e.g. its hostname).
    pub host: String,
    /// How often the stream is read and queued changes published.
    #[serde(default = "FleetConfig::default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    #[serde(default = "FleetConfig::default_response_timeout_ms")]
    pub response_timeout_ms: u64,
}

impl FleetConfig {
    fn default_key_prefix() -> String {
        "bidder".into()
    }
    fn default_poll_interval_ms() -> u64 {
        100
    }
    fn default_response_timeout_ms() -> u64 {
        500
    }

    /// What the agent cannot run with; the message names the field.
    pub fn check(&self) -> Result<(), String> {
        let scheme =
            self.redis_url.starts_with("redis://") || self.redis_url.starts_with("rediss://");
        if !scheme || redis::Client::open(self.redis_url.as_str()).is_err() {
            return Err(format!(
                "fleet.redis_url: `{}` is not a redis:// or rediss:// URL; e.g. \"redis://10.0.0.5:6379/0\"",
                self.redis_url
            ));
        }
        if let Some(ca) = &self.tls_ca_file {
            let pem = std::fs::read(ca).unwrap_or_default();
            if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                return Err(format!(
                    "fleet.tls_ca_file: {} is not a readable PEM certificate; point it at the CA that signed Redis's, or remove it",
                    ca.display()
                ));
            }
            if !self.redis_url.starts_with("rediss://") {
                return Err("fleet.tls_ca_file: set, but redis_url is not rediss://".into());
            }
        }
        if self.host.is_empty() || self.host.len() > 64 {
            return Err("fleet.host: 1 to 64 characters naming this host".into());
        }
        if !(10..=60_000).contains(&self.poll_interval_ms) {
            return Err("fleet.poll_interval_ms: outside 10..=60000".into());
        }
        if !(1..=60_000).contains(&self.response_timeout_ms) {
            return Err("fleet.response_timeout_ms: outside 1..=60000".into());
        }
        Ok(())
    }
}

/// Which table a change is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Campaign,
    Partner,
}

/// One change as it travels: the row written and its audit facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub host: String,
    /// This run of the agent (start time and pid) and its count of changes: a publish
    /// whose answer was lost is recognised when sent again.
    pub instance: String,
    pub seq: u64,
    pub kind: Kind,
    pub key: String,
    pub verb: String,
    pub who: Who,
    pub why: String,
    pub row: Value,
}

/// What the agent keeps for replication.
#[derive(Debug)]
pub struct Replication {
    pub config: FleetConfig,
    pub outbox: VecDeque<Change>,
    instance: String,
    next_seq: u64,
    pub published: u64,
    pub applied: u64,
    pub dropped: u64,
    pub failures: u64,
    /// The last stream entry applied.
    pub position: String,
    position_file: PathBuf,
}

impl Replication {
    /// Replication for `config`, its position read from `position_file` (from the
    /// stream's start when there is none).
    pub fn new(config: FleetConfig, position_file: PathBuf, now_ms: u64) -> Replication {
        let position = std::fs::read_to_string(&position_file)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "0-0".into());
        Replication {
            config,
            outbox: VecDeque::new(),
            instance: format!("{now_ms}-{}", std::process::id()),
            next_seq: 0,
            published: 0,
            applied: 0,
            dropped: 0,
            failures: 0,
            position,
            position_file,
        }
    }

    /// Queues a change this host made.
    pub fn queue(&mut self, kind: Kind, key: &str, verb: &str, who: &Who, why: &str, row: Value) {
        if self.outbox.len() >= MAX_OUTBOX {
            self.outbox.pop_front();
            self.dropped += 1;
        }
        self.next_seq += 1;
        self.outbox.push_back(Change {
            host: self.config.host.clone(),
            instance: self.instance.clone(),
            seq: self.next_seq,
            kind,
            key: key.to_owned(),
            verb: verb.to_owned(),
            who: who.clone(),
            why: why.to_owned(),
            row,
        });
    }

    fn save_position(&self) {
        let tmp = self.position_file.with_extension("tmp");
        if std::fs::write(&tmp, &self.position).is_ok() {
            let _ = std::fs::rename(&tmp, &self.position_file);
        }
    }
}

/// Where the position is kept: beside the audit log.
pub fn position_file(audit_log: &Path) -> PathBuf {
    audit_log.with_extension("fleet-position")
}

// ---- rows as JSON (the stream's format) ----

pub fn campaign_row(v: &CampaignStrategyValue) -> Value {
    json!({
        "margin_ppm": v.margin_ppm,
        "pacing_ppm": v.pacing_ppm,
        "shading_ppm": v.shading_ppm,
        "flags": v.flags,
        "max_cpm_micros": v.max_cpm_micros,
        "daily_budget_micros": v.daily_budget_micros,
        "updated_at_unix_ms": v.updated_at_unix_ms,
        "updated_by": v.updated_by,
        "reasoning": v.reasoning(),
        "segment_keys": v.segment_keys,
        "segment_shading_ppm": v.segment_shading_ppm,
    })
}

pub fn campaign_from(row: &Value) -> Option<CampaignStrategyValue> {
    let u32_of = |k: &str| row[k].as_u64().and_then(|n| u32::try_from(n).ok());
    let mut segment_keys = [0u64; SEGMENTS_PER_CAMPAIGN];
    let mut segment_shading_ppm = [0u32; SEGMENTS_PER_CAMPAIGN];
    for (i, k) in row["segment_keys"].as_array()?.iter().enumerate() {
        *segment_keys.get_mut(i)? = k.as_u64()?;
    }
    for (i, s) in row["segment_shading_ppm"].as_array()?.iter().enumerate() {
        *segment_shading_ppm.get_mut(i)? = u32::try_from(s.as_u64()?).ok()?;
    }
    let mut v = CampaignStrategyValue {
        margin_ppm: u32_of("margin_ppm")?,
        pacing_ppm: u32_of("pacing_ppm")?,
        shading_ppm: u32_of("shading_ppm")?,
        flags: u32_of("flags")?,
        max_cpm_micros: row["max_cpm_micros"].as_i64()?,
        daily_budget_micros: row["daily_budget_micros"].as_i64()?,
        updated_at_unix_ms: row["updated_at_unix_ms"].as_u64()?,
        updated_by: u32_of("updated_by")?,
        reasoning_len: 0,
        reasoning: [0; MAX_REASONING_BYTES],
        segment_keys,
        segment_shading_ppm,
        checksum: 0,
    };
    v.set_reasoning(row["reasoning"].as_str()?);
    Some(v.sealed())
}

pub fn partner_row(v: &PartnerLimitValue) -> Value {
    json!({
        "qps_limit": v.qps_limit,
        "burst": v.burst,
        "flags": v.flags,
        "updated_by": v.updated_by,
        "updated_at_unix_ms": v.updated_at_unix_ms,
    })
}

pub fn partner_from(row: &Value) -> Option<PartnerLimitValue> {
    let u32_of = |k: &str| row[k].as_u64().and_then(|n| u32::try_from(n).ok());
    Some(
        PartnerLimitValue {
            qps_limit: u32_of("qps_limit")?,
            burst: u32_of("burst")?,
            flags: u32_of("flags")?,
            updated_by: u32_of("updated_by")?,
            updated_at_unix_ms: row["updated_at_unix_ms"].as_u64()?,
            checksum: 0,
        }
        .sealed(),
    )
}

// ---- the store ----

/// Publishes a change unless it is the one this host published last (a retry whose
/// answer was lost); the entry id. KEYS: log, rows, last published per host. ARGV:
/// stream length, entry, row field, host, instance:seq.
const PUBLISH_LUA: &str = r#"
if redis.call('HGET', KEYS[3], ARGV[4]) == ARGV[5] then return '' end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], id .. ' ' .. ARGV[2])
redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
return id
"#;

struct Store {
    connection: ConnectionManager,
    publish: Script,
    log: String,
    rows: String,
    seqs: String,
    timeout: Duration,
}

impl Store {
    fn new(config: &FleetConfig) -> redis::RedisResult<Store> {
        let client = match &config.tls_ca_file {
            Some(ca) => {
                let root_cert = std::fs::read(ca).map_err(|e| {
                    redis::RedisError::from(std::io::Error::new(
                        e.kind(),
                        format!("fleet.tls_ca_file {}: {e}", ca.display()),
                    ))
                })?;
                let certs = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                };
                redis::Client::build_with_tls(config.redis_url.as_str(), certs)?
            }
            None => redis::Client::open(config.redis_url.as_str())?,
        };
        let timeout = Duration::from_millis(config.response_timeout_ms);
        let manager = ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(timeout);
        let tag = format!("{{{}:strategy}}", config.key_prefix);
        Ok(Store {
            connection: ConnectionManager::new_lazy_with_config(client, manager)?,
            publish: Script::new(PUBLISH_LUA),
            log: format!("{tag}:log"),
            rows: format!("{tag}:rows"),
            seqs: format!("{tag}:seq"),
            timeout,
        })
    }

    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        }
    }

    async fn publish(&mut self, change: &Change) -> Result<(), String> {
        let entry = serde_json::to_string(change).map_err(|e| e.to_string())?;
        let field = format!("{}:{}", kind_name(change.kind), change.key);
        let mut call = self.publish.key(&self.log);
        call.key(&self.rows)
            .key(&self.seqs)
            .arg(STREAM_LEN)
            .arg(entry)
            .arg(field)
            .arg(&change.host)
            .arg(format!("{}:{}", change.instance, change.seq));
        let connection = &mut self.connection;
        let fut = call.invoke_async::<String>(connection);
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        }
    }

    /// Entries after `position`, in order.
    async fn read(&mut self, position: &str) -> Result<Vec<(String, Change)>, String> {
        let mut read = redis::cmd("XREAD");
        read.arg("COUNT")
            .arg(READ_BATCH)
            .arg("STREAMS")
            .arg(&self.log)
            .arg(position);
        let mut connection = self.connection.clone();
        let reply: Option<redis::streams::StreamReadReply> =
            self.bounded(read.query_async(&mut connection)).await?;
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .filter_map(|e| {
                let text: String = e.get("e")?;
                Some((e.id, serde_json::from_str(&text).ok()?))
            })
            .collect())
    }

    /// The first (`XRANGE`) or last (`XREVRANGE`) entry id the stream has; `None`
    /// when it is empty.
    async fn end_id(&mut self, last: bool) -> Result<Option<String>, String> {
        let mut range = redis::cmd(if last { "XREVRANGE" } else { "XRANGE" });
        let (from, to) = if last { ("+", "-") } else { ("-", "+") };
        range.arg(&self.log).arg(from).arg(to).arg("COUNT").arg(1);
        let mut connection = self.connection.clone();
        let end: Vec<(String, Vec<String>)> =
            self.bounded(range.query_async(&mut connection)).await?;
        Ok(end.into_iter().next().map(|(id, _)| id))
    }

    /// Every row's latest change, in stream order.
    async fn snapshot(&mut self) -> Result<Vec<(String, Change)>, String> {
        let mut all = redis::cmd("HVALS");
        all.arg(&self.rows);
        let mut connection = self.connection.clone();
        let values: Vec<String> = self.bounded(all.query_async(&mut connection)).await?;
        let mut out: Vec<(String, Change)> = values
            .iter()
            .filter_map(|v| {
                let (id, entry) = v.split_once(' ')?;
                Some((id.to_owned(), serde_json::from_str(entry).ok()?))
            })
            .collect();
        out.sort_by(|a, b| stream_order(&a.0, &b.0));
        Ok(out)
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Campaign => "campaign",
        Kind::Partner => "partner",
    }
}

/// Stream ids (`ms-seq`) compared as the stream orders them.
pub fn stream_order(a: &str, b: &str) -> std::cmp::Ordering {
    let parse = |id: &str| {
        let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
        (
            ms.parse::<u64>().unwrap_or(0),
            seq.parse::<u64>().unwrap_or(0),
        )
    };
    parse(a).cmp(&parse(b))
}

/// Applies `entries` (in order) past the agent's position; saves the position. Of a
/// row changed several times in `entries` only the last change is written (the table
/// never shows an older one on the way), and a row this host changed and has not yet
/// published is left alone: its change comes later in the stream and wins there, so
/// an older one read back now must not undo it here.
fn apply(agent: &Mutex<Agent>, entries: &[(String, Change)]) {
    let mut agent = agent.lock().unwrap_or_else(|p| p.into_inner());
    let Some(position) = agent.replication().map(|r| r.position.clone()) else {
        return;
    };
    let fresh: Vec<&(String, Change)> = entries
        .iter()
        .filter(|(id, _)| stream_order(id, &position).is_gt())
        .collect();
    for (n, (id, change)) in fresh.iter().enumerate() {
        let same_row = |c: &Change| c.kind == change.kind && c.key == change.key;
        let superseded = fresh[n + 1..].iter().any(|(_, later)| same_row(later));
        let pending = agent
            .replication()
            .is_some_and(|r| r.outbox.iter().any(same_row));
        if superseded || pending {
            continue;
        }
        match agent.apply_change(change, id) {
            Ok(true) => {
                if let Some(r) = agent.replication_mut() {
                    r.applied += 1;
                }
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(id, key = %change.key, error = %e, "fleet: a replicated change was not applied")
            }
        }
    }
    if let Some(r) = agent.replication_mut() {
        if let Some((id, _)) = fresh.last() {
            r.position = id.clone();
        }
        r.save_position();
    }
}

/// The replication loop, until the agent stops: publish what this host changed, read
/// what the fleet changed.
pub async fn run(agent: Arc<Mutex<Agent>>) {
    let Some(config) = agent
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .replication()
        .map(|r| r.config.clone())
    else {
        return std::future::pending().await;
    };
    let mut store = match Store::new(&config) {
        Ok(store) => store,
        Err(e) => {
            tracing::error!(error = %e, "fleet: cannot use redis_url; strategy changes stay on this host");
            return std::future::pending().await;
        }
    };
    let mut every = tokio::time::interval(Duration::from_millis(config.poll_interval_ms));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut up = false;
    let mut check_gap = true;
    loop {
        every.tick().await;
        let result = round(&agent, &mut store, &mut check_gap).await;
        let ok = result.is_ok();
        if let Err(e) = result {
            check_gap = true;
            if let Some(r) = agent
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .replication_mut()
            {
                r.failures += 1;
            }
            if up {
                tracing::warn!(error = %e, "fleet: Redis unreachable; changes queue here and are read when it returns");
            }
        } else if !up {
            tracing::info!("fleet: replicating strategy changes through Redis");
        }
        up = ok;
    }
}

/// One round: publish the queue, catch up from the snapshot if the stream moved past
/// this host's position, read and apply.
async fn round(
    agent: &Mutex<Agent>,
    store: &mut Store,
    check_gap: &mut bool,
) -> Result<(), String> {
    loop {
        let next = agent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replication()
            .and_then(|r| r.outbox.front().cloned());
        let Some(change) = next else { break };
        store.publish(&change).await?;
        let mut a = agent.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = a.replication_mut() {
            if r.outbox.front() == Some(&change) {
                r.outbox.pop_front();
            }
            r.published += 1;
        }
    }
    let position = agent
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .replication()
        .map(|r| r.position.clone())
        .unwrap_or_default();
    if *check_gap {
        // A new host (no position), or one the stream was trimmed past (its first
        // entry, or the newest row when it is empty, is after the position): every
        // row's latest change from the snapshot, then the stream from its end.
        let first = store.end_id(false).await?;
        let last = store.end_id(true).await?;
        let rows = store.snapshot().await?;
        let newest = rows.last().map(|(id, _)| id.clone());
        let behind = match (&first, &newest) {
            (_, None) => false,
            (Some(first), Some(_)) => position == "0-0" || stream_order(first, &position).is_gt(),
            (None, Some(newest)) => stream_order(newest, &position).is_gt(),
        };
        if behind {
            tracing::info!(position, "fleet: catching up from the fleet's latest rows");
            apply(agent, &rows);
            let mut a = agent.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(r) = a.replication_mut() {
                for id in last.iter().chain(&newest) {
                    if stream_order(id, &r.position).is_gt() {
                        r.position = id.clone();
                    }
                }
                r.save_position();
            }
        }
        *check_gap = false;
    }
    loop {
        let position = agent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replication()
            .map(|r| r.position.clone())
            .unwrap_or_default();
        let entries = store.read(&position).await?;
        if entries.is_empty() {
            return Ok(());
        }
        apply(agent, &entries);
        if entries.len() < READ_BATCH {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_survive_the_trip_through_json() {
        let mut c = CampaignStrategyValue {
            margin_ppm: 900_000,
            pacing_ppm: 500_000,
            shading_ppm: 800_000,
            flags: 1,
            max_cpm_micros: 3_000_000,
            daily_budget_micros: -1,
            updated_at_unix_ms: 1_800_000_000_000,
            updated_by: 1000,
            reasoning_len: 0,
            reasoning: [0; MAX_REASONING_BYTES],
            segment_keys: [7; SEGMENTS_PER_CAMPAIGN],
            segment_shading_ppm: [850_000; SEGMENTS_PER_CAMPAIGN],
            checksum: 0,
        };
        c.set_reasoning("a reason — with UTF-8");
        let c = c.sealed();
        assert_eq!(campaign_from(&campaign_row(&c)), Some(c));
        let p = PartnerLimitValue {
            qps_limit: 100,
            burst: 20,
            flags: 1,
            updated_by: 0,
            updated_at_unix_ms: 5,
            checksum: 0,
        }
        .sealed();
        assert_eq!(partner_from(&partner_row(&p)), Some(p));
        assert_eq!(campaign_from(&json!({"margin_ppm": 1})), None);
    }

    #[test]
    fn stream_ids_order_by_time_then_sequence() {
        assert!(stream_order("1700-1", "1700-0").is_gt());
        assert!(stream_order("999-9", "1000-0").is_lt());
        assert!(stream_order("0-0", "0-0").is_eq());
    }
}
