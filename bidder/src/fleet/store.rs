//! The fleet store in Redis: one Lua script per call, so a grant and the counters it
//! checks change together.
//!
//! Keys, per campaign (the `{…}` hash tag keeps a campaign's keys in one cluster slot):
//!
//! | key | what |
//! |---|---|
//! | `{PREFIX:c:ID}:d:DAYSTART` | a hash per campaign-day: `budget`; per host `g:H` granted, `r:H` returned, `s:H` spent, `t:H` last call (ms), `q:H` last granted request; totals `G`, `R`, `S`. Expires 3 days after the day starts. |
//! | `{PREFIX:c:ID}:epoch` | `epoch` (made by the first call after the store had nothing) and `learning_until` (ms) |
//!
//! Every counter only grows, and a call raises the host's counters to what it sends
//! (never lowers them): a retried or reordered call, or one whose reply was lost,
//! changes nothing twice. The script cache is lost on a Redis restart; `redis::Script`
//! sends the script again on `NOSCRIPT`.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;

use super::lease::{SyncReply, SyncRequest};

/// The sync script. ARGV: host, request id, want, budget, granted, returned, spent,
/// now ms, expire-at ms, learning ms, active ms, floor, epoch candidate.
const SYNC_LUA: &str = r#"
local day, ep = KEYS[1], KEYS[2]
local h = ARGV[1]
local now = tonumber(ARGV[8])
local epoch = redis.call('HGET', ep, 'epoch')
local learning_until = tonumber(redis.call('HGET', ep, 'learning_until') or '0')
if not epoch then
  epoch = ARGV[13]
  learning_until = now + tonumber(ARGV[10])
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
    if string.sub(fields[i], 1, 2) == 't:' and now - tonumber(fields[i + 1]) <= tonumber(ARGV[11]) then
      active = active + 1
    end
  end
  if active < 1 then active = 1 end
  local share = math.max(math.floor(remaining / (4 * active)), tonumber(ARGV[12]))
  grant = math.max(math.min(want, share, remaining), 0)
  if grant > 0 then
    redis.call('HINCRBY', day, 'g:' .. h, grant)
    redis.call('HINCRBY', day, 'G', grant)
    g = g + grant
    remaining = remaining - grant
  end
  redis.call('HSET', day, 'q:' .. h, ARGV[2])
end
redis.call('PEXPIREAT', day, ARGV[9])
local spent = tonumber(redis.call('HGET', day, 'S') or '0')
return {g, r, grant, remaining, spent, epoch, learning_until}
"#;

/// Days a campaign-day's hash outlives its start (late reports of the day before
/// still land; then Redis forgets it).
const DAY_KEY_TTL_MS: u64 = 3 * 86_400_000;

/// How the store is reached and what it is told besides the counters.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub redis_url: String,
    pub key_prefix: String,
    /// This host's name in the store.
    pub host: String,
    pub response_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    pub learning_ms: u64,
    /// A host that called within this long counts as active (shares the rest).
    pub active_ms: u64,
}

/// Why a call did not return a reply. Either way the outcome is unknown: the next
/// call re-sends absolute counters.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no answer within {0} ms")]
    Timeout(u64),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// The connection and the script.
pub struct Store {
    settings: StoreSettings,
    connection: ConnectionManager,
    script: Script,
}

impl Store {
    /// A store that connects on first use and reconnects by itself (never blocks).
    pub fn new(settings: StoreSettings) -> Result<Store, StoreError> {
        let client = redis::Client::open(settings.redis_url.as_str())?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_millis(settings.response_timeout_ms)))
            .set_connection_timeout(Some(Duration::from_millis(settings.connect_timeout_ms)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(settings.connect_timeout_ms));
        let connection = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Store {
            settings,
            connection,
            script: Script::new(SYNC_LUA),
        })
    }

    /// The keys of a campaign-day and of the campaign's epoch.
    pub fn keys(prefix: &str, campaign: &str, day_start_ms: u64) -> (String, String) {
        let tag = format!("{{{prefix}:c:{campaign}}}");
        (format!("{tag}:d:{day_start_ms}"), format!("{tag}:epoch"))
    }

    /// One call: the host's counters raised, a grant if it wants one.
    pub async fn sync(
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
            .arg(now_ms)
            .arg(request.day_start_ms + DAY_KEY_TTL_MS)
            .arg(s.learning_ms)
            .arg(s.active_ms)
            .arg(request.floor_micros)
            .arg(format!("{}-{now_ms}-{}", s.host, std::process::id()));
        let timeout = Duration::from_millis(s.response_timeout_ms);
        let answer = tokio::time::timeout(timeout, call.invoke_async(&mut self.connection))
            .await
            .map_err(|_| StoreError::Timeout(s.response_timeout_ms))?;
        let (granted, returned, grant, remaining, spent, epoch, learning_until): (
            i64,
            i64,
            i64,
            i64,
            i64,
            String,
            u64,
        ) = answer?;
        Ok(SyncReply {
            granted_micros: granted,
            returned_micros: returned,
            grant_micros: grant,
            remaining_micros: remaining,
            fleet_spent_micros: spent,
            epoch,
            learning_until_ms: learning_until,
        })
    }
}
