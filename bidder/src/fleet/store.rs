//! The fleet store in Redis: one Lua script per call, so a grant and the counters it
//! checks change together.
//!
//! Keys, per campaign (the `{…}` hash tag keeps a campaign's keys in one cluster slot):
//!
//! | key | what |
//! |---|---|
//! | `{PREFIX:c:ID}:d:DAYSTART` | a hash per campaign-day: `budget`; per host `g:H` granted, `r:H` returned, `s:H` spent, `t:H` last call (ms), `q:H` last granted request; totals `G`, `R`, `S`. Expires 3 days after the day starts. |
//! | `{PREFIX:c:ID}:epoch` | `epoch` (made by the first call after the store had nothing) and `learning_until` (ms) |
//! | `{PREFIX:c:ID}:f:START:USER` | a frequency-capped campaign's impressions of one user in the cap's period from START: per host `H` its count. Lives a period and an hour past its last write. |
//! | `PREFIX:freq` | a stream every host reads: `c` campaign, `p` period start, `u` user (hex), `n` the fleet's count after a host counted one. Trimmed to about [`FREQUENCY_STREAM_LEN`] entries. |
//!
//! Every counter only grows, and a call raises the host's counters to what it sends
//! (never lowers them): a retried or reordered call, or one whose reply was lost,
//! changes nothing twice. The script cache is lost on a Redis restart; `redis::Script`
//! sends the script again on `NOSCRIPT`.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};

use super::lease::{SyncReply, SyncRequest};

/// The sync script. ARGV: host, request id, want, budget, granted, returned, spent,
/// time to live ms, learning ms, active ms, floor, epoch candidate. Times in
/// the store are Redis's (`TIME`) and expiry is relative (`PEXPIRE`): the hosts'
/// calendars may differ from Redis's and from each other's (a simulation, a skewed
/// clock) without moving a key's life or the learning window.
const SYNC_LUA: &str = r#"
local day, ep = KEYS[1], KEYS[2]
local h = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local epoch = redis.call('HGET', ep, 'epoch')
local learning_until = tonumber(redis.call('HGET', ep, 'learning_until') or '0')
if not epoch then
  epoch = ARGV[12]
  learning_until = now + tonumber(ARGV[9])
  redis.call('HSET', ep, 'epoch', epoch, 'learning_until', learning_until)
end
local function raise(field, total, value)
  local old = tonumber(redis.call('HGET', day, field) or '0')
  if value > old then
    redis.call('HSET', day, field, value)
    redis.call('HINCRBY', day, total, value - old)
    return value
  end
  return old
end
local g = raise('g:' .. h, 'G', tonumber(ARGV[5]))
local r = raise('r:' .. h, 'R', tonumber(ARGV[6]))
raise('s:' .. h, 'S', tonumber(ARGV[7]))
local budget = tonumber(ARGV[4])
redis.call('HSET', day, 'budget', budget, 't:' .. h, now)
local held = tonumber(redis.call('HGET', day, 'G') or '0') - tonumber(redis.call('HGET', day, 'R') or '0')
local remaining = budget - held
local grant = 0
local want = tonumber(ARGV[3])
if want > 0 and now >= learning_until and redis.call('HGET', day, 'q:' .. h) ~= ARGV[2] then
  local active = 0
  local fields = redis.call('HGETALL', day)
  for i = 1, #fields, 2 do
    if string.sub(fields[i], 1, 2) == 't:' and now - tonumber(fields[i + 1]) <= tonumber(ARGV[10]) then
      active = active + 1
    end
  end
  if active < 1 then active = 1 end
  local share = math.max(math.floor(remaining / (4 * active)), tonumber(ARGV[11]))
  grant = math.max(math.min(want, share, remaining), 0)
  if grant > 0 then
    redis.call('HINCRBY', day, 'g:' .. h, grant)
    redis.call('HINCRBY', day, 'G', grant)
    g = g + grant
    remaining = remaining - grant
  end
  redis.call('HSET', day, 'q:' .. h, ARGV[2])
end
redis.call('PEXPIRE', day, ARGV[8])
local spent = tonumber(redis.call('HGET', day, 'S') or '0')
local learning = 0
if now < learning_until then learning = 1 end
return {g, r, grant, remaining, spent, epoch, learning}
"#;

/// A host's count of a user's impressions raised to what it sends; the sum over
/// hosts back. ARGV: host, count, time to live ms.
const IMPRESSIONS_LUA: &str = r#"
local k, h = KEYS[1], ARGV[1]
local count = tonumber(ARGV[2])
if count > tonumber(redis.call('HGET', k, h) or '0') then
  redis.call('HSET', k, h, count)
end
redis.call('PEXPIRE', k, ARGV[3])
local total = 0
for _, v in ipairs(redis.call('HVALS', k)) do total = total + tonumber(v) end
return total
"#;

/// About this many frequency updates are kept in the stream (a host that was away
/// longer than they last misses older ones).
pub const FREQUENCY_STREAM_LEN: u64 = 1_000_000;
/// Stream entries read per call.
const FREQUENCY_READ_BATCH: usize = 1_000;
/// A user's counts outlive the end of the cap's period by this much.
const FREQUENCY_KEY_SLACK_MS: u64 = 3_600_000;

/// One frequency update from the stream: the fleet's count of a user's impressions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetImpressions {
    pub campaign: String,
    pub period_start_ms: u64,
    pub user: u64,
    pub count: u32,
}

/// Days a campaign-day's hash outlives its start (late reports of the day before
/// still land; then Redis forgets it).
const DAY_KEY_TTL_MS: u64 = 3 * 86_400_000;

/// Milliseconds from `now_ms` to `until_ms`, at least a minute (a key is never set to
/// expire at once, whatever the clocks say).
fn ttl_ms(until_ms: u64, now_ms: u64) -> u64 {
    until_ms.saturating_sub(now_ms).max(60_000)
}

/// How the store is reached and what it is told besides the counters.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// One server's URL, or nodes of a Redis Cluster.
    pub redis_urls: Vec<String>,
    pub cluster: bool,
    /// The CA (PEM) a `rediss://` server's certificate is checked against; `None`: the
    /// system's trust store.
    pub tls_ca_file: Option<std::path::PathBuf>,
    pub key_prefix: String,
    /// This host's name in the store.
    pub host: String,
    pub response_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    pub learning_ms: u64,
    /// A host that called within this long counts as active (shares the rest).
    pub active_ms: u64,
}

impl StoreSettings {
    /// The most one call may take: a (re)connection, TLS handshake included, then the
    /// answer. The connection's own response timeout still ends a call on a live
    /// connection after `response_timeout_ms`.
    pub fn call_timeout_ms(&self) -> u64 {
        self.connect_timeout_ms + self.response_timeout_ms
    }

    fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms())
    }
}

/// Why a call did not return a reply. Either way the outcome is unknown: the next
/// call re-sends absolute counters.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no answer within {0} ms")]
    Timeout(u64),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("{0}")]
    Tls(String),
}

/// One server (a multiplexed connection that reconnects by itself), or a Redis
/// Cluster (connected on first use, then following the cluster's slot moves).
enum Connection {
    Single(ConnectionManager),
    Cluster {
        /// Boxed: the client is large and made once.
        client: Box<ClusterClient>,
        connection: Option<ClusterConnection>,
    },
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster { client, connection } => Box::pin(async move {
                if connection.is_none() {
                    *connection = Some(client.get_async_connection().await?);
                }
                let c = connection.as_mut().expect("connected above");
                c.req_packed_command(cmd).await
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster { client, connection } => Box::pin(async move {
                if connection.is_none() {
                    *connection = Some(client.get_async_connection().await?);
                }
                let c = connection.as_mut().expect("connected above");
                c.req_packed_commands(pipeline, offset, count).await
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster { .. } => 0,
        }
    }
}

/// The connection and the scripts.
pub struct Store {
    settings: StoreSettings,
    connection: Connection,
    script: Script,
    impressions: Script,
}

impl Store {
    /// A store that connects on first use and reconnects by itself (never blocks).
    pub fn new(settings: StoreSettings) -> Result<Store, StoreError> {
        let response = Duration::from_millis(settings.response_timeout_ms);
        let connect = Duration::from_millis(settings.connect_timeout_ms);
        let certs = match &settings.tls_ca_file {
            Some(path) => Some(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(std::fs::read(path).map_err(|e| {
                    StoreError::Tls(format!("fleet.tls_ca_file {}: {e}", path.display()))
                })?),
            }),
            None => None,
        };
        let connection = match settings.redis_urls.as_slice() {
            [one] if !settings.cluster => {
                let client = match &certs {
                    Some(certs) => redis::Client::build_with_tls(one.as_str(), certs.clone())?,
                    None => redis::Client::open(one.as_str())?,
                };
                let config = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(response))
                    .set_connection_timeout(Some(connect))
                    .set_number_of_retries(1)
                    .set_max_delay(connect);
                Connection::Single(ConnectionManager::new_lazy_with_config(client, config)?)
            }
            nodes => {
                let mut builder = ClusterClient::builder(nodes.iter().map(String::as_str))
                    .connection_timeout(connect)
                    .response_timeout(response)
                    .retries(2);
                if let Some(certs) = certs {
                    builder = builder.certs(certs);
                }
                Connection::Cluster {
                    client: Box::new(builder.build()?),
                    connection: None,
                }
            }
        };
        Ok(Store {
            settings,
            connection,
            script: Script::new(SYNC_LUA),
            impressions: Script::new(IMPRESSIONS_LUA),
        })
    }

    /// The keys of a campaign-day and of the campaign's epoch.
    pub fn keys(prefix: &str, campaign: &str, day_start_ms: u64) -> (String, String) {
        let tag = format!("{{{prefix}:c:{campaign}}}");
        (format!("{tag}:d:{day_start_ms}"), format!("{tag}:epoch"))
    }

    /// Tells the fleet this host counted `own` impressions of `user` for the campaign in
    /// the period from `period_start_ms` (ending at `period_end_ms`), and publishes the
    /// fleet's count on the stream; returns that count. Absolute, so a retry counts
    /// nothing twice.
    pub async fn share_impressions(
        &mut self,
        campaign: &str,
        period_start_ms: u64,
        period_end_ms: u64,
        user: u64,
        own: u32,
    ) -> Result<u32, StoreError> {
        let result = self
            .share_impressions_once(campaign, period_start_ms, period_end_ms, user, own)
            .await;
        self.after(result)
    }

    async fn share_impressions_once(
        &mut self,
        campaign: &str,
        period_start_ms: u64,
        period_end_ms: u64,
        user: u64,
        own: u32,
    ) -> Result<u32, StoreError> {
        let s = &self.settings;
        let tag = format!("{{{}:c:{campaign}}}", s.key_prefix);
        let key = format!("{tag}:f:{period_start_ms}:{user:016x}");
        let mut call = self.impressions.key(key);
        call.arg(&s.host).arg(own).arg(ttl_ms(
            period_end_ms + FREQUENCY_KEY_SLACK_MS,
            period_start_ms,
        ));
        let timeout = s.call_timeout();
        let total: u32 = tokio::time::timeout(timeout, call.invoke_async(&mut self.connection))
            .await
            .map_err(|_| StoreError::Timeout(s.call_timeout_ms()))??;
        let mut add = redis::cmd("XADD");
        add.arg(format!("{}:freq", s.key_prefix))
            .arg("MAXLEN")
            .arg("~")
            .arg(FREQUENCY_STREAM_LEN)
            .arg("*")
            .arg("c")
            .arg(campaign)
            .arg("p")
            .arg(period_start_ms)
            .arg("u")
            .arg(format!("{user:016x}"))
            .arg("n")
            .arg(total);
        tokio::time::timeout(timeout, add.query_async::<String>(&mut self.connection))
            .await
            .map_err(|_| StoreError::Timeout(s.call_timeout_ms()))??;
        Ok(total)
    }

    /// Redis's clock, ms since the Unix epoch (stream ids count on it).
    pub async fn now_ms(&mut self) -> Result<u64, StoreError> {
        let timeout = self.settings.call_timeout();
        let result = tokio::time::timeout(
            timeout,
            redis::cmd("TIME").query_async::<(u64, u64)>(&mut self.connection),
        )
        .await
        .map_err(|_| StoreError::Timeout(self.settings.call_timeout_ms()))
        .and_then(|r| r.map_err(StoreError::from))
        .map(|(s, us)| s * 1_000 + us / 1_000);
        self.after(result)
    }

    /// The frequency updates after `last_id` (moved to the last one read), without
    /// waiting for new ones.
    pub async fn read_impressions(
        &mut self,
        last_id: &mut String,
    ) -> Result<Vec<FleetImpressions>, StoreError> {
        let result = self.read_impressions_once(last_id).await;
        self.after(result)
    }

    async fn read_impressions_once(
        &mut self,
        last_id: &mut String,
    ) -> Result<Vec<FleetImpressions>, StoreError> {
        let s = &self.settings;
        let mut read = redis::cmd("XREAD");
        read.arg("COUNT")
            .arg(FREQUENCY_READ_BATCH)
            .arg("STREAMS")
            .arg(format!("{}:freq", s.key_prefix))
            .arg(last_id.as_str());
        let timeout = s.call_timeout();
        let reply: Option<redis::streams::StreamReadReply> =
            tokio::time::timeout(timeout, read.query_async(&mut self.connection))
                .await
                .map_err(|_| StoreError::Timeout(s.call_timeout_ms()))??;
        let mut out = Vec::new();
        for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
            *last_id = entry.id.clone();
            let parsed = (|| {
                Some(FleetImpressions {
                    campaign: entry.get("c")?,
                    period_start_ms: entry.get("p")?,
                    user: u64::from_str_radix(&entry.get::<String>("u")?, 16).ok()?,
                    count: entry.get("n")?,
                })
            })();
            // An entry another version wrote differently is skipped, not fatal.
            out.extend(parsed);
        }
        Ok(out)
    }

    /// A failed call to a cluster drops the connection, so the next one starts from
    /// the cluster's current slot map (after a failover the old master's address
    /// only times out).
    fn after<T>(&mut self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let (Err(e), Connection::Cluster { connection, .. }) = (&result, &mut self.connection) {
            let lost = match e {
                StoreError::Timeout(_) | StoreError::Tls(_) => true,
                StoreError::Redis(e) => {
                    e.is_io_error()
                        || e.is_timeout()
                        || e.is_connection_dropped()
                        || e.is_connection_refusal()
                        || e.is_unrecoverable_error()
                }
            };
            if lost {
                *connection = None;
            }
        }
        result
    }

    /// One call: the host's counters raised, a grant if it wants one.
    pub async fn sync(
        &mut self,
        campaign: &str,
        budget_micros: i64,
        request: &SyncRequest,
        now_ms: u64,
    ) -> Result<SyncReply, StoreError> {
        let result = self
            .sync_once(campaign, budget_micros, request, now_ms)
            .await;
        self.after(result)
    }

    async fn sync_once(
        &mut self,
        campaign: &str,
        budget_micros: i64,
        request: &SyncRequest,
        now_ms: u64,
    ) -> Result<SyncReply, StoreError> {
        let s = &self.settings;
        let (day_key, epoch_key) = Store::keys(&s.key_prefix, campaign, request.day_start_ms);
        let mut call = self.script.key(day_key);
        call.key(epoch_key)
            .arg(&s.host)
            .arg(request.request_id)
            .arg(request.want_micros)
            .arg(budget_micros)
            .arg(request.granted_micros)
            .arg(request.returned_micros)
            .arg(request.spent_micros)
            .arg(ttl_ms(request.day_start_ms + DAY_KEY_TTL_MS, now_ms))
            .arg(s.learning_ms)
            .arg(s.active_ms)
            .arg(request.floor_micros)
            .arg(format!("{}-{now_ms}-{}", s.host, std::process::id()));
        let timeout = s.call_timeout();
        let answer = tokio::time::timeout(timeout, call.invoke_async(&mut self.connection))
            .await
            .map_err(|_| StoreError::Timeout(s.call_timeout_ms()))?;
        let (granted, returned, grant, remaining, spent, epoch, learning): (
            i64,
            i64,
            i64,
            i64,
            i64,
            String,
            u8,
        ) = answer?;
        Ok(SyncReply {
            granted_micros: granted,
            returned_micros: returned,
            grant_micros: grant,
            remaining_micros: remaining,
            fleet_spent_micros: spent,
            epoch,
            learning: learning == 1,
        })
    }
}
