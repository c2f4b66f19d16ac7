//! The bidder's configuration: one TOML file holding listeners, partners, campaigns,
//! creatives, targeting and budgets.
//!
//! Loading is two steps. `serde` reads the file into the `*Config` types below (the
//! file's shape, with the TOML spans of partners and campaigns kept so errors can name
//! a line). [`validate`] then checks every rule a type cannot express and returns the
//! first problems as [`ConfigError`]s naming file, line, field and fix. Only a
//! validated [`Config`] is ever compiled into the decision index.
//!
//! Money is integer micro-units everywhere (`*_micros`), never floats.

mod locate;
pub mod targeting;
mod validate;
mod xdp;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::openrtb::OpenRtbVersion;

pub use validate::validate;
pub use xdp::{
    AttachMode, UnknownSources, XdpConfig, MAX_LOG_INTERVAL_MS, MAX_PACKETS_PER_REQUEST,
    UNKNOWN_SOURCE_PARTNER,
};

pub use crate::limits::MAX_CAMPAIGNS;
pub use crate::limits::MAX_PARTNERS;
const _: () = assert!(MAX_PARTNERS <= bidder_common::xdp::MAX_PARTNERS as usize);
pub use crate::limits::MAX_CONFIG_BYTES;
pub use crate::limits::MAX_CREATIVES_PER_CAMPAIGN;

/// The whole configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub bidding: BiddingConfig,
    pub notice: NoticeConfig,
    /// Exchange rates into `bidding.currency`, as micro-units of our currency per
    /// one unit of the foreign one (e.g. `EUR = 1_080_000` when 1 EUR = 1.08 USD).
    /// A floor in a currency missing here means no bid on that imp.
    #[serde(default)]
    pub currency_rates_micros: std::collections::BTreeMap<String, i64>,
    #[serde(default, rename = "partner")]
    pub partners: Vec<Spanned<PartnerConfig>>,
    #[serde(default, rename = "campaign")]
    pub campaigns: Vec<Spanned<CampaignConfig>>,
    // ---- strategy and stats tables (issue 6) ----
    #[serde(default)]
    pub strategy: StrategyConfig,
    // ---- end strategy and stats tables ----
    /// The XDP front (`[xdp]`); absent: partner limits in user space.
    #[serde(default)]
    pub xdp: XdpConfig,
    /// The spend journal (`[ledger]`); without a `path`, spend lives in memory only.
    #[serde(default)]
    pub ledger: LedgerConfig,
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// How frequency caps find the user (`[frequency]`).
    #[serde(default)]
    pub frequency: FrequencyConfig,
    /// Who we are to consent frameworks (`[privacy]`).
    #[serde(default)]
    pub privacy: PrivacyConfig,
    /// Invalid-traffic lists and checks (`[ivt]`).
    #[serde(default)]
    pub ivt: IvtConfig,
    /// How ads.txt, app-ads.txt and sellers.json are fetched and kept (`[supply]`).
    #[serde(default)]
    pub supply: SupplyConfig,
    /// Fleet mode (`[fleet]`): the day's budgets shared with other hosts through
    /// Redis; absent: this host spends its whole configured budget on its own.
    pub fleet: Option<FleetConfig>,
    /// Simulation mode (`[simulation]`): calendar time from the auction simulator's
    /// clock file. Refused unless the bidder is started with `--simulate`.
    pub simulation: Option<SimulationConfig>,
    /// Where the file was read from and its text, for error messages.
    #[serde(skip)]
    pub source: ConfigSource,
}

/// The file a configuration came from; used to turn spans into `file:line`.
#[derive(Debug, Default, Clone)]
pub struct ConfigSource {
    pub path: PathBuf,
    pub text: String,
}

impl ConfigSource {
    /// 1-based line of a byte offset in the file.
    pub fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }
}

/// Listeners, threads and the limits the engines hold connections to. Read by the
/// engines; the decision core ignores it.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Bid listener, `ip:port`; every worker binds it with `SO_REUSEPORT`.
    pub listen: String,
    /// Admin (metrics, health, reload) listener, `ip:port`: keep it private, since
    /// `/metrics` shows every budget and spend.
    pub admin_listen: String,
    /// File holding the bearer token `POST /reload` and `/campaign/{id}/resume` need
    /// (relative to this file; at least 32 bytes). Unset: both are refused and only
    /// SIGHUP reloads.
    pub admin_token_file: Option<PathBuf>,
    /// `io_uring` (default; falls back to `tokio` where the kernel lacks io_uring) or
    /// `tokio`.
    pub engine: String,
    /// CPU ids the workers are pinned to, one worker per entry.
    pub cores: Vec<usize>,
    /// Bid path for exchanges that do not use `/bid/{partner}`.
    pub default_bid_path: String,
    /// Open connections per worker; past this a new connection gets 503.
    pub max_connections_per_worker: u32,
    /// A keep-alive connection with nothing in progress is closed after this long.
    pub idle_timeout_ms: u64,
    /// A new connection that sends nothing within this long is closed, so idle sockets
    /// cannot hold the slots honest clients need.
    pub first_byte_timeout_ms: u64,
    /// A request must arrive whole within this long of its first byte (else 408).
    pub request_timeout_ms: u64,
    /// On shutdown, requests in progress get this long to finish.
    pub shutdown_grace_ms: u64,
    /// Largest request head (431 past it).
    pub max_header_bytes: usize,
    /// Largest request body as sent (413 past it).
    pub max_body_bytes: usize,
    /// Largest request body after gzip decompression (413 past it).
    pub max_decompressed_body_bytes: usize,
    /// io_uring submission queue entries per worker.
    pub ring_entries: u32,
    /// Kernel submission polling per worker (costs a CPU each; off by default).
    pub sqpoll: bool,
    /// CPU for worker i's polling thread: `sqpoll_cpus[i % len]` (e.g. hyperthread
    /// siblings of `cores`); empty leaves them unpinned.
    pub sqpoll_cpus: Vec<usize>,
    /// How long an idle polling thread spins before it sleeps.
    pub sqpoll_idle_ms: u32,
    /// How the io_uring engine writes answers: `fixed` (a write from the registered
    /// output buffer; the default) or `send` (a socket send from the same buffer).
    /// `cargo xtask bench engines` measures both.
    pub ring_write: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            admin_listen: "127.0.0.1:9090".into(),
            admin_token_file: None,
            engine: "io_uring".into(),
            cores: vec![0],
            default_bid_path: "/openrtb2/bid".into(),
            max_connections_per_worker: 4_096,
            idle_timeout_ms: 60_000,
            first_byte_timeout_ms: 2_000,
            request_timeout_ms: 1_000,
            shutdown_grace_ms: 2_000,
            max_header_bytes: 8 * 1024,
            max_body_bytes: 256 * 1024,
            max_decompressed_body_bytes: 1024 * 1024,
            ring_entries: 1_024,
            sqpoll: false,
            sqpoll_cpus: Vec::new(),
            sqpoll_idle_ms: 100,
            ring_write: "fixed".into(),
        }
    }
}

impl ServerConfig {
    /// The names of the fields that differ from `running`. The engines are built once at
    /// start, so a reload reports these as waiting for a restart instead of dropping
    /// them silently.
    pub fn fields_changed_from(&self, running: &ServerConfig) -> Vec<String> {
        let table = |c: &ServerConfig| match serde_json::to_value(c) {
            Ok(serde_json::Value::Object(fields)) => fields,
            _ => unreachable!("a struct of strings, numbers and lists serializes to an object"),
        };
        let (new, old) = (table(self), table(running));
        new.iter()
            .filter(|(name, value)| old.get(*name) != Some(*value))
            .map(|(name, _)| name.clone())
            .collect()
    }
}

/// Auction-wide settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BiddingConfig {
    /// Seat id we bid as (`seatbid[].seat`).
    pub seat: String,
    /// The one currency we bid in (ISO-4217).
    pub currency: String,
    /// Host id folded into bid ids so ids are unique across a fleet (0..=65535).
    pub host_id: u16,
    /// Network time subtracted from `tmax` to get our own deadline.
    pub network_allowance_ms: u32,
    /// Hard cap on our own deadline whatever `tmax` says.
    pub deadline_cap_ms: u32,
    /// `tmax` assumed when a request carries none.
    pub default_tmax_ms: u32,
    /// Bid shading applied to every price, parts per million (1_000_000 = none).
    pub default_shading_ppm: u32,
    /// How long a bid's budget stays reserved waiting for its win, billing or loss
    /// notice before it is returned. Longer is safer against late billing notices;
    /// shorter frees budget sooner.
    pub reservation_ttl_ms: u64,
}

impl Default for BiddingConfig {
    fn default() -> Self {
        BiddingConfig {
            seat: "bidder".into(),
            currency: "USD".into(),
            host_id: 0,
            network_allowance_ms: 40,
            deadline_cap_ms: 8,
            default_tmax_ms: 100,
            default_shading_ppm: 1_000_000,
            reservation_ttl_ms: 300_000,
        }
    }
}

/// Where spend is made durable. Without `path` the bidder keeps spend in memory only
/// and says so at start: a restart then forgets the period's spend.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    /// The SQLite file settlements are written to before a notice is answered;
    /// relative paths are relative to the configuration file. Its folder must exist.
    pub path: Option<PathBuf>,
    /// Records of notices older than this many days are deleted.
    pub retention_days: u32,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            path: None,
            retention_days: 35,
        }
    }
}

/// `[simulation]`: the bidder reads the time of day from a file the auction simulator
/// (`auction-sim`) moves, so a simulated day runs in minutes. Only for `bidder run
/// --simulate`; a bidder started without the flag refuses a configuration with this
/// section, so a production host cannot run on a driven clock by a stray line.
#[derive(Debug, Deserialize, PartialEq, Eq, Clone)]
#[serde(deny_unknown_fields)]
pub struct SimulationConfig {
    /// The simulator's clock file (relative to this file).
    pub clock_file: PathBuf,
}

/// Fleet mode: every host of a fleet takes its share of each campaign's daily budget
/// from Redis in small leases (see `crate::fleet`). The host is `bidding.host_id`,
/// which must be unique in the fleet (bid ids already need that).
#[derive(Debug, Deserialize, PartialEq, Eq, Clone)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// `redis://host:port/db` (a password as `redis://:secret@host:port`), or a list of
    /// a Redis Cluster's nodes (`["redis://10.0.0.5:7000", "redis://10.0.0.6:7000"]`:
    /// any of them; the rest are found from the cluster).
    pub redis_url: RedisUrl,
    /// For `rediss://`: the CA certificate (PEM) that signed the server's, when it is not
    /// in the system's trust store (relative to this file).
    pub tls_ca_file: Option<PathBuf>,
    /// Prefix of every key this fleet writes: fleets sharing one Redis differ here.
    #[serde(default = "FleetConfig::default_key_prefix")]
    pub key_prefix: String,
    /// How often the control thread looks at every campaign's lease.
    #[serde(default = "FleetConfig::default_renew_interval_ms")]
    pub renew_interval_ms: u64,
    /// A Redis command not answered within this is given up ("outcome unknown": the
    /// next call re-reports absolute counters, so nothing is lost or counted twice).
    #[serde(default = "FleetConfig::default_response_timeout_ms")]
    pub response_timeout_ms: u64,
    #[serde(default = "FleetConfig::default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// A lease covers this many milliseconds of the host's recent spend ...
    #[serde(default = "FleetConfig::default_lease_spend_ms")]
    pub lease_spend_ms: u64,
    /// ... and at least this many impressions at the campaign's highest bid.
    #[serde(default = "FleetConfig::default_min_lease_bids")]
    pub min_lease_bids: u32,
    /// Spend and returns reach Redis at least this often, also with no lease to renew.
    #[serde(default = "FleetConfig::default_report_interval_ms")]
    pub report_interval_ms: u64,
    /// After Redis lost its state (a new epoch), nothing new is granted for this long
    /// while the hosts re-report what they hold.
    #[serde(default = "FleetConfig::default_learning_ms")]
    pub learning_ms: u64,
}

/// One Redis, or the nodes of a Redis Cluster.
#[derive(Debug, Deserialize, PartialEq, Eq, Clone)]
#[serde(untagged)]
pub enum RedisUrl {
    One(String),
    Cluster(Vec<String>),
}

impl RedisUrl {
    pub fn urls(&self) -> Vec<String> {
        match self {
            RedisUrl::One(url) => vec![url.clone()],
            RedisUrl::Cluster(urls) => urls.clone(),
        }
    }
}

impl FleetConfig {
    fn default_key_prefix() -> String {
        "bidder".into()
    }
    fn default_renew_interval_ms() -> u64 {
        100
    }
    fn default_response_timeout_ms() -> u64 {
        100
    }
    fn default_connect_timeout_ms() -> u64 {
        500
    }
    fn default_lease_spend_ms() -> u64 {
        2_000
    }
    fn default_min_lease_bids() -> u32 {
        10
    }
    fn default_report_interval_ms() -> u64 {
        1_000
    }
    fn default_learning_ms() -> u64 {
        5_000
    }
}

/// The spend-rate circuit breaker: a campaign spending more than
/// `spend_rate_multiple` times its even pace (daily budget over the day), averaged over
/// `window_s`, stops bidding until an operator resumes it (`bidderctl campaign resume`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// 0 turns the breaker off.
    pub spend_rate_multiple: u32,
    pub window_s: u32,
}

impl BreakerConfig {
    pub fn spend_breaker(&self) -> crate::money::budget::SpendBreaker {
        crate::money::budget::SpendBreaker {
            multiple: self.spend_rate_multiple,
            window_ms: u64::from(self.window_s) * 1_000,
        }
    }
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            spend_rate_multiple: 3,
            window_s: 60,
        }
    }
}

/// Frequency caps: where the user id comes from, what a capped campaign does when a
/// request has none, and how many (campaign, user) pairs are counted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FrequencyConfig {
    /// Tried in order; the first present is the user: `user.id`, `user.buyeruid`,
    /// `device.ifa`.
    pub user_keys: Vec<String>,
    /// `"no_bid"` (a capped campaign does not bid without a user) or `"bid"`.
    pub without_user: String,
    /// (campaign, user) pairs counted at once; 8 bytes each, fixed at start.
    pub max_tracked: usize,
}

impl Default for FrequencyConfig {
    fn default() -> Self {
        FrequencyConfig {
            user_keys: vec![
                "user.buyeruid".into(),
                "user.id".into(),
                "device.ifa".into(),
            ],
            without_user: "no_bid".into(),
            max_tracked: 1 << 20,
        }
    }
}

/// Who we are to consent frameworks.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// Our id in IAB Europe's Global Vendor List: TC strings grant consent to vendor
    /// ids. Needed when a campaign has `require_consent`.
    pub gvl_vendor_id: Option<u16>,
}

/// Invalid traffic refused before pricing: lists are files (re-read on reload), checks
/// are switches. A campaign may still bid on kinds it lists in `targeting.allow_ivt`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IvtConfig {
    /// Data-centre (cloud, hosting, proxy) networks: one CIDR or address per line,
    /// `#` comments. Relative to this file.
    pub datacenter_ranges_file: Option<PathBuf>,
    /// Addresses or networks to refuse, same format.
    pub ip_blocklist_file: Option<PathBuf>,
    /// User-agent fragments to refuse (case-insensitive), one per line.
    pub ua_blocklist_file: Option<PathBuf>,
    /// Refuse known crawler and automation user agents (a built-in list).
    pub known_crawlers: bool,
    /// Refuse requests whose device fields contradict each other.
    pub inconsistent_devices: bool,
}

impl Default for IvtConfig {
    fn default() -> Self {
        IvtConfig {
            datacenter_ranges_file: None,
            ip_blocklist_file: None,
            ua_blocklist_file: None,
            known_crawlers: true,
            inconsistent_devices: true,
        }
    }
}

/// Fetching the supply chain's public files (ads.txt, app-ads.txt, sellers.json) off
/// the bid path; campaigns say what they verify in `targeting.supply_chain`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupplyConfig {
    /// Good copies are kept here across restarts (relative to this file). Unset: a
    /// `supply-cache` folder beside the ledger when it has a path, else memory only.
    pub cache_dir: Option<PathBuf>,
    /// A good copy is fetched again after this long (conditional request).
    pub refresh_interval_s: u64,
    /// After a failed fetch the next try waits this long; the last good copy stays.
    pub retry_interval_s: u64,
    /// One fetch, connect to last byte, redirects included.
    pub fetch_timeout_ms: u64,
    pub max_ads_txt_bytes: u64,
    pub max_sellers_json_bytes: u64,
    pub max_redirects: usize,
    /// Files tracked at once (publishers' and systems' together).
    pub max_files: usize,
    pub max_parallel_fetches: usize,
    /// Where files come from, `{domain}` replaced: point them at an internal mirror
    /// if you run one.
    pub ads_txt_url: String,
    pub app_ads_txt_url: String,
    pub sellers_json_url: String,
}

impl Default for SupplyConfig {
    fn default() -> Self {
        SupplyConfig {
            cache_dir: None,
            refresh_interval_s: 3_600,
            retry_interval_s: 300,
            fetch_timeout_ms: 5_000,
            max_ads_txt_bytes: 1 << 20,
            // Large exchanges' sellers.json run to tens of megabytes.
            max_sellers_json_bytes: 64 << 20,
            max_redirects: 3,
            // Each round that adds files rebuilds the lookup maps on the control
            // thread: about 0.1 ms per thousand files.
            max_files: 20_000,
            max_parallel_fetches: 8,
            ads_txt_url: "https://{domain}/ads.txt".into(),
            app_ads_txt_url: "https://{domain}/app-ads.txt".into(),
            sellers_json_url: "https://{domain}/sellers.json".into(),
        }
    }
}

/// Whether `domain` (already lower case) is a host name: letters, digits, `-` and
/// `.`, labels not empty, at most `MAX_DOMAIN_BYTES`. Supply files are tracked by it and
/// named after it in the disk cache, so nothing else may pass.
pub fn is_domain(domain: &str) -> bool {
    domain.len() <= crate::limits::MAX_DOMAIN_BYTES
        && domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// Win / billing / loss notice URLs, their signing key, and the listener exchanges
/// call them on (apart from the admin listener).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoticeConfig {
    /// Base of nurl/burl/lurl, e.g. `https://bidder.example.com/notice`.
    pub base_url: String,
    /// File holding the HMAC key (at least 32 bytes); relative paths are relative to
    /// the configuration file.
    pub hmac_key_file: PathBuf,
    /// The notice listener, `ip:port`: serves `/notice/{win,bill,loss}` only.
    #[serde(default = "NoticeConfig::default_listen")]
    pub listen: String,
    /// Notice connections served at once (503 past it).
    #[serde(default = "NoticeConfig::default_max_connections")]
    pub max_connections: u32,
    /// Notice connections one source address may hold at once (503 past it).
    #[serde(default = "NoticeConfig::default_max_connections_per_source")]
    pub max_connections_per_source: u32,
    /// How long a notice client may take to send a request head, keep-alive idle
    /// included; then the connection is closed.
    #[serde(default = "NoticeConfig::default_header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
}

impl NoticeConfig {
    fn default_listen() -> String {
        "127.0.0.1:9091".into()
    }
    fn default_max_connections() -> u32 {
        4_096
    }
    fn default_max_connections_per_source() -> u32 {
        256
    }
    fn default_header_read_timeout_ms() -> u64 {
        5_000
    }
}

/// One exchange or SSP that sends us traffic.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerConfig {
    /// Short name: used in the bid path (`/bid/{name}`), metrics and logs.
    pub name: String,
    /// Source networks (`10.0.0.0/8`, `2001:db8::/32`); the XDP front uses the same.
    #[serde(default)]
    pub cidrs: Vec<String>,
    /// Requests per second allowed; 0 means the partner is shut off.
    pub qps_limit: u32,
    /// Requests allowed above the rate in a burst.
    #[serde(default)]
    pub burst: u32,
    /// OpenRTB version the partner speaks (`2.5` or `2.6`), stated back to it in every
    /// answer's `x-openrtb-version`.
    #[serde(default = "default_openrtb_version")]
    pub openrtb_version: String,
    /// Answer no-bids with `{"id":…,"nbr":N}` and 200 instead of a bare 204.
    #[serde(default)]
    pub nbr_body: bool,
    /// Gzip responses when the partner sends `Accept-Encoding: gzip`.
    #[serde(default)]
    pub gzip_responses: bool,
    /// `"json"` (default) or `"flatbuffers"`: the encoding of every answer with a body.
    /// A request whose `Accept` prefers `application/x-flatbuffers` gets FlatBuffers
    /// either way.
    #[serde(default)]
    pub response_format: crate::respond::Format,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// New connections (SYNs) per second the XDP front lets through; 0 shuts the
    /// partner's new connections off.
    #[serde(default = "default_syn_per_s")]
    pub syn_per_s: u32,
    /// SYNs allowed above that rate in a burst.
    #[serde(default = "default_syn_burst")]
    pub syn_burst: u32,
    /// How long a bid to this partner holds its price waiting for a notice before the
    /// money goes back (a win that comes later is still charged, from what the budget
    /// has then). Match it to how late this exchange's notices come; at least 1000;
    /// unset: the bidding section's `reservation_ttl_ms`, and never more (a longer one
    /// is cut to it).
    #[serde(default)]
    pub notice_horizon_ms: Option<u64>,
    /// What a bid that got no notice within the horizon costs: `"release"` (default:
    /// the money goes back, for exchanges that send no loss notices) or `"charge"` (it
    /// is charged at its price, for exchanges that send a notice for every bid, so a
    /// lost win notice does not let their bill pass the budget; bids made before a
    /// restart, or refused by a full ledger, are still released).
    #[serde(default)]
    pub unnoticed_bids: crate::money::ledger::Unnoticed,
    /// The most this partner's bids may hold at once while they wait (micros, all
    /// campaigns together): a partner whose bids are never answered cannot hold the
    /// budgets hostage. Unset: no limit.
    #[serde(default)]
    pub max_held_micros: Option<i64>,
    /// The partner's advertising-system domain, as it writes `asi` in the last
    /// `schain` node (e.g. "exchange-a.com"): a chain whose last node is another system
    /// is missing a node.
    #[serde(default)]
    pub asi: Option<String>,
    /// Its sellers.json: an `https://` URL or a local file (relative to this file).
    /// Unset: `[supply] sellers_json_url` for its `asi`. Needs `asi`.
    #[serde(default)]
    pub sellers_json: Option<String>,
}

impl PartnerConfig {
    /// `asi` in lower case, the form schain nodes and supply files are matched in.
    pub fn asi_domain(&self) -> Option<String> {
        self.asi.as_ref().map(|a| a.to_ascii_lowercase())
    }
}

/// SYN limits default high enough for a partner reconnecting all its keep-alive
/// connections at once, low enough to blunt a SYN flood from its prefixes.
/// The admin token in `path`, surrounding whitespace trimmed; an error names the file
/// and the fix. Read at load (validation) and at each admin call (so it can rotate).
pub fn read_admin_token(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("admin token file {}: {e}", path.display()))?;
    let token = text.trim();
    if token.len() < crate::limits::MIN_ADMIN_TOKEN_BYTES {
        return Err(format!(
            "admin token file {}: the token has {} bytes, fewer than {}; write one: head -c 32 /dev/urandom | base64 > FILE",
            path.display(),
            token.len(),
            crate::limits::MIN_ADMIN_TOKEN_BYTES
        ));
    }
    Ok(token.to_owned())
}

fn default_syn_per_s() -> u32 {
    1_000
}

fn default_syn_burst() -> u32 {
    1_000
}

fn default_openrtb_version() -> String {
    OpenRtbVersion::default().header_value().into()
}

fn yes() -> bool {
    true
}

fn day() -> String {
    "day".into()
}

fn utc() -> String {
    "UTC".into()
}

/// One campaign: money, targeting, creatives.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignConfig {
    pub id: String,
    pub advertiser: String,
    /// Spend allowed per day, midnight to midnight in `time_zone`.
    pub daily_budget_micros: i64,
    /// Spend allowed per clock hour in `time_zone`; none by default.
    #[serde(default)]
    pub hourly_budget_micros: Option<i64>,
    /// Spend allowed over the campaign's whole life (every day the ledger recorded);
    /// none by default.
    #[serde(default)]
    pub lifetime_budget_micros: Option<i64>,
    /// The IANA time zone the budget's days and hours follow (`America/New_York`).
    #[serde(default = "utc")]
    pub time_zone: String,
    /// At most this many impressions per user per `frequency_period`; none by default.
    #[serde(default)]
    pub frequency_cap: Option<u32>,
    /// `"day"` (default) or `"hour"`, in `time_zone`.
    #[serde(default = "day")]
    pub frequency_period: String,
    /// Largest CPM a single bid may carry (the hard ceiling; strategy stays below it).
    pub max_bid_cpm_micros: i64,
    /// What an impression is worth to us, as a CPM, before strategy and shading.
    pub base_cpm_micros: i64,
    /// Bid the imp's floor × this (parts per million, e.g. 1_100_000 for "floor ×
    /// 1.10"), never above the value, instead of the shaded value: the static rule
    /// many buyers start from, and a baseline the auction simulator measures. Imps
    /// without a floor are bid the shaded value. Unset: the shaded value always.
    #[serde(default)]
    pub floor_markup_ppm: Option<u32>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub targeting: TargetingConfig,
    #[serde(default, rename = "creative")]
    pub creatives: Vec<CreativeConfig>,
}

/// Who a campaign wants. Every list is "any" when empty.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TargetingConfig {
    /// `banner`, `video`, `audio`, `native`.
    pub media: Vec<String>,
    /// Banner sizes as `WxH`.
    pub sizes: Vec<String>,
    /// ISO-3166-1 alpha-3 country codes (OpenRTB `device.geo.country`).
    pub countries: Vec<String>,
    /// OpenRTB device types (1 mobile/tablet, 2 PC, 3 CTV, 4 phone, 5 tablet, …).
    pub device_types: Vec<u32>,
    /// Operating systems as sent in `device.os` (matched case-insensitively).
    pub os: Vec<String>,
    /// Site domains to bid on; a domain also matches its subdomains.
    pub site_domains: Vec<String>,
    /// Site domains never to bid on; wins over `site_domains`.
    pub block_site_domains: Vec<String>,
    pub app_bundles: Vec<String>,
    pub block_app_bundles: Vec<String>,
    /// IAB content categories of the site/app (`IAB3` also matches `IAB3-1`).
    pub categories: Vec<String>,
    /// UTC hours the campaign runs, as `mon-fri 08-20` (days, then hours `start-end`,
    /// end exclusive). Empty means always.
    pub dayparts: Vec<String>,
    /// Partners (by name) the campaign buys from.
    pub partners: Vec<String>,
    /// Private-marketplace deals the campaign buys through.
    #[serde(rename = "deal")]
    pub deals: Vec<DealConfig>,
    /// Bid only through one of `deals`.
    pub deals_only: bool,
    /// The campaign uses personal data: where GDPR applies it bids only with the TCF
    /// purposes below granted to our vendor id (`privacy.gvl_vendor_id`), and not
    /// after the US opt-outs below. Off: contextual, bids whatever the signals say.
    pub require_consent: bool,
    /// TCF purposes needed (consent, or legitimate interest where TCF v2.2 allows it:
    /// 2, 7, 8, 9, 10, 11). Default with `require_consent`: [1, 2, 3, 4, 7]
    /// (personalised ads); basic ads are [1, 2, 7].
    pub consent_purposes: Option<Vec<u8>>,
    /// TCF special features the user must have opted in to (1 precise geolocation,
    /// 2 active device scanning). Default: none.
    pub consent_special_features: Vec<u8>,
    /// US opt-outs that stop the campaign: "sale", "sharing", "targeted_advertising".
    /// Default with `require_consent`: all three.
    pub us_opt_outs: Option<Vec<String>>,
    /// Allow requests flagged as directed at children (COPPA). Off by default.
    pub allow_coppa: bool,
    /// Invalid-traffic kinds the campaign still bids on ("datacenter", "blocklist",
    /// "crawler", "inconsistent_device"); default none.
    pub allow_ivt: Vec<String>,
    pub supply_chain: SupplyChainConfig,
}

/// A deal a campaign buys through.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DealConfig {
    pub id: String,
    /// Our own minimum for this deal (the exchange's deal floor also applies).
    #[serde(default)]
    pub floor_cpm_micros: i64,
}

/// Supply-chain (schain) policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupplyChainConfig {
    /// No bid unless the request carries a complete schain.
    pub require_complete: bool,
    /// Sellers every schain node must match: `asi` (any seller id) or `asi:sid`.
    pub allowed_sellers: Vec<String>,
    /// Every schain node's seller is listed in its system's sellers.json.
    pub verify_sellers: bool,
    /// The publisher's ads.txt (app-ads.txt for apps) authorises every node.
    pub verify_ads_txt: bool,
    /// While a file needed is missing, unreachable or not fetched yet: "no_bid"
    /// (default), "direct_only" (bid on one-node chains) or "bid".
    pub when_unverified: String,
}

impl Default for SupplyChainConfig {
    fn default() -> Self {
        SupplyChainConfig {
            require_complete: false,
            allowed_sellers: Vec::new(),
            verify_sellers: false,
            verify_ads_txt: false,
            when_unverified: "no_bid".into(),
        }
    }
}

/// One creative of a campaign.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreativeConfig {
    pub id: String,
    /// `banner`, `video`, `audio`, `native`.
    pub format: String,
    #[serde(default)]
    pub w: u32,
    #[serde(default)]
    pub h: u32,
    /// OpenRTB creative attributes (checked against `battr`).
    #[serde(default)]
    pub attr: Vec<u32>,
    /// Advertiser domains (checked against `badv`).
    pub adomain: Vec<String>,
    /// IAB categories of the ad (checked against `bcat`).
    #[serde(default)]
    pub cat: Vec<String>,
    /// Markup; exchange macros such as `${AUCTION_PRICE}` are left for the exchange.
    pub adm: String,
    /// Video/audio duration, seconds (checked against min/max duration).
    #[serde(default)]
    pub duration_s: u32,
    /// Video/audio MIME type (checked against the imp's `mimes`).
    #[serde(default)]
    pub mime: String,
}

// ---- strategy and stats tables (issue 6) ----
/// Where the bidder finds the agent's strategy table and writes its stats table
/// (`[strategy]`). Every field has a default, so a file without the section runs on
/// the configured strategy until an agent creates the table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StrategyConfig {
    /// The strategy table the agent writes; missing means "bid on the configuration's
    /// defaults" until it appears.
    pub table_path: PathBuf,
    /// The stats table this bidder writes for the agent.
    pub stats_path: PathBuf,
    /// Campaign rows of the stats table (campaigns past it are not reported).
    pub stats_campaign_capacity: u32,
    /// Partner rows of the stats table.
    pub stats_partner_capacity: u32,
    /// How often the control side looks for a new or re-created strategy table and
    /// partner or budget changes. Campaign strategy needs no polling: the hot path
    /// reads rows from the table directly and finds new ones itself.
    pub poll_interval_ms: u64,
    /// How often the stats table is rewritten.
    pub stats_interval_ms: u64,
}

impl Default for StrategyConfig {
    fn default() -> Self {
        StrategyConfig {
            table_path: "/run/bidder/strategy".into(),
            stats_path: "/run/bidder/stats".into(),
            stats_campaign_capacity: 4_096,
            stats_partner_capacity: 256,
            poll_interval_ms: 10,
            stats_interval_ms: 1_000,
        }
    }
}

impl StrategyConfig {
    /// The section's own rules (bounds of each number), named like `validate`'s.
    fn check(&self, source: &ConfigSource) -> Result<(), Vec<ConfigError>> {
        let max_rows = u64::from(bidder_common::table::MAX_ROWS);
        let ranges: [(&str, u64, u64, u64); 4] = [
            (
                "stats_campaign_capacity",
                u64::from(self.stats_campaign_capacity),
                1,
                max_rows,
            ),
            (
                "stats_partner_capacity",
                u64::from(self.stats_partner_capacity),
                1,
                max_rows,
            ),
            ("poll_interval_ms", self.poll_interval_ms, 1, 60_000),
            ("stats_interval_ms", self.stats_interval_ms, 10, 3_600_000),
        ];
        let line = source
            .text
            .find("[strategy]")
            .map_or(0, |at| source.line_of(at));
        let errors: Vec<ConfigError> = ranges
            .into_iter()
            .filter(|(_, v, lo, hi)| v < lo || v > hi)
            .map(|(key, v, lo, hi)| ConfigError::Invalid {
                path: source.path.clone(),
                line,
                field: format!("strategy.{key}"),
                problem: format!("{v} is outside {lo}..={hi}"),
                fix: format!("set it between {lo} and {hi}"),
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}
// ---- end strategy and stats tables ----

/// Why a configuration was refused: where, what, and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source} (check the path and permissions)")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: {size} bytes is over the {MAX_CONFIG_BYTES}-byte limit (is this the right file?)"
    )]
    TooLarge { path: PathBuf, size: u64 },
    #[error("{path}:{line}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}:{line}: {field}: {problem}; fix: {fix}")]
    Invalid {
        path: PathBuf,
        line: usize,
        field: String,
        problem: String,
        fix: String,
    },
}

impl Config {
    /// Reads, parses and validates a configuration file. Returns every problem found
    /// (up to a bound) so an operator fixes a file in one pass, not one error per run.
    pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
        let size = std::fs::metadata(path)
            .map_err(|source| {
                vec![ConfigError::Read {
                    path: path.into(),
                    source,
                }]
            })?
            .len();
        if size > MAX_CONFIG_BYTES {
            return Err(vec![ConfigError::TooLarge {
                path: path.into(),
                size,
            }]);
        }
        let text = std::fs::read_to_string(path).map_err(|source| {
            vec![ConfigError::Read {
                path: path.into(),
                source,
            }]
        })?;
        Config::from_text(path, text)
    }

    /// Parses and validates configuration text; `path` is used for messages and to
    /// resolve relative file references.
    pub fn from_text(path: &Path, text: String) -> Result<Config, Vec<ConfigError>> {
        let source = ConfigSource {
            path: path.into(),
            text,
        };
        let mut config: Config = toml::from_str(&source.text).map_err(|e| {
            let line = e.span().map_or(0, |s| source.line_of(s.start));
            vec![ConfigError::Syntax {
                path: path.into(),
                line,
                message: e.message().trim().to_string(),
            }]
        })?;
        config.source = source;
        // One pass reports the problems of every section together.
        let mut problems = validate(&config).err().unwrap_or_default();
        problems.extend(config.xdp.check(&config).err().unwrap_or_default());
        if !problems.is_empty() {
            return Err(problems);
        }
        config.strategy.check(&config.source)?; // issue 6: [strategy] bounds
        Ok(config)
    }

    /// The notice HMAC key file, resolved against the configuration's folder.
    pub fn hmac_key_path(&self) -> PathBuf {
        self.relative_to_file(&self.notice.hmac_key_file)
    }

    /// The admin token file, if one is configured, resolved against the configuration's
    /// folder.
    pub fn admin_token_path(&self) -> Option<PathBuf> {
        self.server
            .admin_token_file
            .as_deref()
            .map(|p| self.relative_to_file(p))
    }

    /// The spend journal's file, if one is configured (relative to the config file).
    pub fn ledger_path(&self) -> Option<PathBuf> {
        self.ledger
            .path
            .as_deref()
            .map(|p| self.relative_to_file(p))
    }

    /// The simulation clock file, if `[simulation]` is configured (relative to the
    /// config file).
    pub fn simulation_clock_path(&self) -> Option<PathBuf> {
        self.simulation
            .as_ref()
            .map(|s| self.relative_to_file(&s.clock_file))
    }

    /// `path` as written in the file, resolved against the file's folder.
    pub(crate) fn relative_to_file(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            return path.to_path_buf();
        }
        match self.source.path.parent() {
            Some(dir) => dir.join(path),
            None => path.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ServerConfig;

    #[test]
    fn a_short_or_missing_admin_token_file_is_an_error_naming_it() {
        use super::read_admin_token;
        let dir = testkit::TempDir::new("admin-token");
        let path = dir.0.join("admin.token");
        let missing = read_admin_token(&path).unwrap_err();
        assert!(missing.contains("admin.token"), "{missing}");
        std::fs::write(&path, "short\n").unwrap();
        let short = read_admin_token(&path).unwrap_err();
        assert!(
            short.contains("fewer than") && short.contains("admin.token"),
            "{short}"
        );
        let token = "t".repeat(crate::limits::MIN_ADMIN_TOKEN_BYTES);
        std::fs::write(&path, format!("  {token}\n")).unwrap();
        assert_eq!(read_admin_token(&path), Ok(token));
    }

    #[test]
    fn only_the_fields_that_differ_are_named() {
        let running = ServerConfig::default();
        assert!(ServerConfig::default()
            .fields_changed_from(&running)
            .is_empty());
        let changed = ServerConfig {
            listen: "127.0.0.1:9999".into(),
            cores: vec![0, 1, 2],
            idle_timeout_ms: u64::MAX,
            ..ServerConfig::default()
        };
        let mut names = changed.fields_changed_from(&running);
        names.sort();
        assert_eq!(names, ["cores", "idle_timeout_ms", "listen"]);
    }
}
