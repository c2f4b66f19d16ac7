//! Rules of a valid configuration that the TOML types cannot express.
//!
//! Each broken rule becomes a [`ConfigError::Invalid`] naming the line of the
//! partner or campaign it belongs to, the field path, the problem and the fix.

use std::collections::HashSet;
use std::net::SocketAddr;

use super::locate::Spans;
use super::{
    CampaignConfig, Config, ConfigError, CreativeConfig, PartnerConfig, TargetingConfig,
    MAX_CAMPAIGNS, MAX_CREATIVES_PER_CAMPAIGN, MAX_PARTNERS,
};
use crate::config::targeting::{
    parse_daypart, parse_size, MediaType, IVT_KINDS, TCF_PURPOSES, TCF_SPECIAL_FEATURES,
    US_OPT_OUTS,
};
use crate::money::MAX_CPM_MICROS;
use crate::openrtb::OpenRtbVersion;

pub use crate::limits::MAX_REPORTED_ERRORS;
use crate::limits::{
    self, MAX_FLOOR_MARKUP_PPM, MAX_FREQUENCY_TRACKED, MAX_RESERVATION_TTL_MS, MIN_NOTICE_KEY_BYTES,
};
use crate::money::frequency::{UserSource, MAX_FREQUENCY_CAP};
use crate::money::period::Calendar;

/// Collects problems with the line they belong to.
pub(super) struct Problems<'c> {
    config: &'c Config,
    spans: Spans<'c>,
    errors: Vec<ConfigError>,
}

impl<'c> Problems<'c> {
    pub(super) fn new(config: &'c Config) -> Self {
        Problems {
            config,
            spans: Spans::parse(&config.source.text),
            errors: Vec::new(),
        }
    }

    /// Records a problem at the line the field path (`campaign[0] (c1).targeting.sizes`)
    /// is written on; past [`MAX_REPORTED_ERRORS`] the rest are dropped.
    pub(super) fn add(&mut self, field: String, problem: impl Into<String>, fix: &str) {
        if self.errors.len() >= MAX_REPORTED_ERRORS {
            return;
        }
        let offset = self.spans.offset(&field);
        self.errors.push(ConfigError::Invalid {
            path: self.config.source.path.clone(),
            line: self.config.source.line_of(offset),
            field,
            problem: problem.into(),
            fix: fix.into(),
        });
    }

    /// `Ok` when nothing was added.
    pub(super) fn into_result(self) -> Result<(), Vec<ConfigError>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }
}

/// Checks every rule; returns all problems found (bounded), or `Ok` when the file
/// can be compiled into a decision index.
pub fn validate(config: &Config) -> Result<(), Vec<ConfigError>> {
    let mut p = Problems::new(config);
    server(&mut p);
    bidding(&mut p);
    notice(&mut p);
    ledger(&mut p);
    breaker(&mut p);
    frequency(&mut p);
    supply(&mut p);
    fleet(&mut p);
    let partner_names = partners(&mut p);
    campaigns(&mut p, &partner_names);
    p.into_result()
}

fn server(p: &mut Problems) {
    let s = &p.config.server;
    for (key, addr) in [("listen", &s.listen), ("admin_listen", &s.admin_listen)] {
        if addr.parse::<SocketAddr>().is_err() {
            p.add(
                format!("server.{key}"),
                format!("`{addr}` is not ip:port"),
                "write e.g. \"0.0.0.0:8080\"",
            );
        }
    }
    if let Some(path) = p.config.admin_token_path() {
        if let Err(problem) = crate::config::read_admin_token(&path) {
            p.add(
                "server.admin_token_file".into(),
                problem,
                "write a random token: head -c 32 /dev/urandom | base64 > FILE (mode 0640, group of the agent)",
            );
        }
    }
    let s = &p.config.server;
    if !matches!(s.engine.as_str(), "io_uring" | "tokio") {
        p.add(
            "server.engine".into(),
            format!("unknown engine `{}`", s.engine),
            "use \"io_uring\" or \"tokio\"",
        );
    }
    if !matches!(s.ring_write.as_str(), "fixed" | "send") {
        p.add(
            "server.ring_write".into(),
            format!("unknown way to write `{}`", s.ring_write),
            "use \"fixed\" (registered buffers) or \"send\"",
        );
    }
    if s.cores.is_empty() {
        p.add(
            "server.cores".into(),
            "no worker cores",
            "list the CPU ids to pin workers to, e.g. [0, 1]",
        );
    }
    if !s.default_bid_path.starts_with('/') || s.default_bid_path.starts_with("/bid/") {
        p.add(
            "server.default_bid_path".into(),
            format!("`{}` is not a path outside /bid/", s.default_bid_path),
            "e.g. \"/openrtb2/bid\"",
        );
    }
    let ranges: [(&str, u64, (u64, u64)); 8] = [
        (
            "max_connections_per_worker",
            u64::from(s.max_connections_per_worker),
            (1, u64::from(limits::MAX_CONNECTIONS_PER_WORKER)),
        ),
        (
            "idle_timeout_ms",
            s.idle_timeout_ms,
            limits::IDLE_TIMEOUT_MS,
        ),
        (
            "first_byte_timeout_ms",
            s.first_byte_timeout_ms,
            limits::FIRST_BYTE_TIMEOUT_MS,
        ),
        (
            "request_timeout_ms",
            s.request_timeout_ms,
            limits::REQUEST_TIMEOUT_MS,
        ),
        (
            "shutdown_grace_ms",
            s.shutdown_grace_ms,
            limits::SHUTDOWN_GRACE_MS,
        ),
        (
            "max_header_bytes",
            s.max_header_bytes as u64,
            limits::HEADER_BYTES,
        ),
        (
            "max_body_bytes",
            s.max_body_bytes as u64,
            limits::BODY_BYTES,
        ),
        (
            "ring_entries",
            u64::from(s.ring_entries),
            limits::RING_ENTRIES,
        ),
    ];
    for (key, value, (min, max)) in ranges {
        if !(min..=max).contains(&value) {
            p.add(
                format!("server.{key}"),
                format!("{value} is outside {min}..={max}"),
                "see the defaults in bidder/examples/demo.toml",
            );
        }
    }
    if s.max_decompressed_body_bytes < s.max_body_bytes {
        p.add(
            "server.max_decompressed_body_bytes".into(),
            "smaller than max_body_bytes",
            "make it at least max_body_bytes",
        );
    }
}

fn bidding(p: &mut Problems) {
    let b = &p.config.bidding;
    if b.seat.is_empty() {
        p.add(
            "bidding.seat".into(),
            "empty",
            "set the seat id the exchanges know you by",
        );
    }
    if !is_currency_code(&b.currency) {
        p.add(
            "bidding.currency".into(),
            format!("`{}` is not an ISO-4217 code", b.currency),
            "use three capital letters, e.g. \"USD\"",
        );
    }
    if b.deadline_cap_ms == 0 || b.deadline_cap_ms > 1_000 {
        p.add(
            "bidding.deadline_cap_ms".into(),
            format!("{} is outside 1..=1000", b.deadline_cap_ms),
            "use a few milliseconds, e.g. 8",
        );
    }
    if b.default_tmax_ms == 0 || b.default_tmax_ms > 10_000 {
        p.add(
            "bidding.default_tmax_ms".into(),
            format!("{} is outside 1..=10000", b.default_tmax_ms),
            "use the exchanges' usual tmax, e.g. 100",
        );
    }
    if b.network_allowance_ms >= b.default_tmax_ms.max(1) {
        p.add(
            "bidding.network_allowance_ms".into(),
            "not below default_tmax_ms",
            "use the round-trip time to your exchanges, e.g. 40",
        );
    }
    if b.default_shading_ppm == 0 || b.default_shading_ppm > 1_000_000 {
        p.add(
            "bidding.default_shading_ppm".into(),
            format!("{} is outside 1..=1000000", b.default_shading_ppm),
            "1000000 means no shading",
        );
    }
    if !(1_000..=MAX_RESERVATION_TTL_MS).contains(&b.reservation_ttl_ms) {
        p.add(
            "bidding.reservation_ttl_ms".into(),
            format!(
                "{} is outside 1000..={MAX_RESERVATION_TTL_MS} (a bid's money must be settled \
                 within the budget hour after the one it was made in)",
                b.reservation_ttl_ms
            ),
            "use how long your exchanges take to send billing notices, e.g. 300000 (5 min)",
        );
    }
    for (code, rate) in &p.config.currency_rates_micros {
        if !is_currency_code(code) || *rate <= 0 {
            p.add(
                format!("currency_rates_micros.{code}"),
                "needs an ISO-4217 code and a positive rate",
                "e.g. EUR = 1_080_000 when 1 EUR = 1.08 of bidding.currency",
            );
        }
    }
}

fn notice(p: &mut Problems) {
    let n = &p.config.notice;
    match n.listen.parse::<SocketAddr>() {
        Err(_) => p.add(
            "notice.listen".into(),
            format!("`{}` is not ip:port", n.listen),
            "write e.g. \"0.0.0.0:9091\": the address exchanges send notices to",
        ),
        Ok(addr) => {
            let s = &p.config.server;
            let taken = [
                ("server.listen", &s.listen),
                ("server.admin_listen", &s.admin_listen),
            ]
            .into_iter()
            .find(|(_, other)| other.parse::<SocketAddr>() == Ok(addr));
            if let Some((other, _)) = taken {
                p.add(
                    "notice.listen".into(),
                    format!("`{addr}` is also {other}"),
                    "give notices their own port, e.g. 9091: a flood on one listener must not take the other's slots",
                );
            }
        }
    }
    let n = &p.config.notice;
    if n.max_connections == 0 || !(1..=n.max_connections).contains(&n.max_connections_per_source) {
        p.add(
            "notice.max_connections_per_source".into(),
            format!(
                "max_connections {} and max_connections_per_source {}: both must be at least 1, the share at most the total",
                n.max_connections, n.max_connections_per_source
            ),
            "e.g. max_connections = 4096, max_connections_per_source = 256",
        );
    }
    if n.header_read_timeout_ms == 0 {
        p.add(
            "notice.header_read_timeout_ms".into(),
            "0 would close every connection at once",
            "e.g. 5000",
        );
    }
    let base = &p.config.notice.base_url;
    if !(base.starts_with("http://") || base.starts_with("https://")) || base.contains('?') {
        p.add(
            "notice.base_url".into(),
            format!("`{base}` is not an http(s) URL without a query"),
            "e.g. \"https://bidder.example.com/notice\"",
        );
    }
    let key_path = p.config.hmac_key_path();
    match std::fs::metadata(&key_path) {
        Ok(m) if m.len() as usize >= MIN_NOTICE_KEY_BYTES => {}
        Ok(m) => p.add(
            "notice.hmac_key_file".into(),
            format!(
                "{} holds {} bytes, fewer than {MIN_NOTICE_KEY_BYTES}",
                key_path.display(),
                m.len()
            ),
            "write a random key: head -c 64 /dev/urandom > FILE",
        ),
        Err(e) => p.add(
            "notice.hmac_key_file".into(),
            format!("cannot read {}: {e}", key_path.display()),
            "create it: head -c 64 /dev/urandom > FILE",
        ),
    }
}

fn breaker(p: &mut Problems) {
    let b = &p.config.breaker;
    let (multiple, window_s) = (b.spend_rate_multiple, b.window_s);
    if multiple > 1_000 {
        p.add(
            "breaker.spend_rate_multiple".into(),
            format!("{multiple} is outside 0..=1000"),
            "3 pauses a campaign spending three times its pace; 0 turns the breaker off",
        );
    }
    if !(1..=86_400).contains(&window_s) {
        p.add(
            "breaker.window_s".into(),
            format!("{window_s} is outside 1..=86400"),
            "the seconds the spend rate is averaged over, e.g. 60",
        );
    }
}

fn frequency(p: &mut Problems) {
    let f = &p.config.frequency;
    let mut problems = Vec::new();
    if f.user_keys.is_empty() {
        problems.push((
            "frequency.user_keys".to_owned(),
            "empty".to_owned(),
            "list where the user id comes from, e.g. [\"user.buyeruid\", \"user.id\", \"device.ifa\"]",
        ));
    }
    for (i, key) in f.user_keys.iter().enumerate() {
        if UserSource::parse(key).is_none() {
            problems.push((
                format!("frequency.user_keys[{i}]"),
                format!("unknown source {key:?}"),
                "use \"user.id\", \"user.buyeruid\" or \"device.ifa\"",
            ));
        }
    }
    if !matches!(f.without_user.as_str(), "no_bid" | "bid") {
        problems.push((
            "frequency.without_user".to_owned(),
            format!("unknown policy {:?}", f.without_user),
            "use \"no_bid\" (capped campaigns skip requests without a user) or \"bid\"",
        ));
    }
    if !(1_024..=MAX_FREQUENCY_TRACKED).contains(&f.max_tracked) {
        problems.push((
            "frequency.max_tracked".to_owned(),
            format!(
                "{} is outside 1024..={MAX_FREQUENCY_TRACKED}",
                f.max_tracked
            ),
            "the (campaign, user) pairs counted at once, 8 bytes each, e.g. 1_048_576",
        ));
    }
    for (field, problem, fix) in problems {
        p.add(field, problem, fix);
    }
}

fn ledger(p: &mut Problems) {
    let days = p.config.ledger.retention_days;
    if !(1..=3_650).contains(&days) {
        p.add(
            "ledger.retention_days".into(),
            format!("{days} is outside 1..=3650"),
            "keep at least the longest budget period plus your billing disputes window, e.g. 35",
        );
    }
    if let Some(path) = p.config.ledger_path() {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        if !dir.is_dir() {
            p.add(
                "ledger.path".into(),
                format!("folder {} does not exist", dir.display()),
                "create it (systemd: StateDirectory=bidder) or point path at an existing one",
            );
        }
    }
}

/// `targeting.supply_chain.when_unverified` values.
pub const WHEN_UNVERIFIED: [&str; 3] = ["no_bid", "direct_only", "bid"];

fn supply(p: &mut Problems) {
    let s = &p.config.supply;
    let numbers: [(&str, u64, u64); 8] = [
        ("refresh_interval_s", s.refresh_interval_s, 60),
        ("retry_interval_s", s.retry_interval_s, 1),
        ("fetch_timeout_ms", s.fetch_timeout_ms, 100),
        ("max_ads_txt_bytes", s.max_ads_txt_bytes, 1_024),
        ("max_sellers_json_bytes", s.max_sellers_json_bytes, 1_024),
        ("max_files", s.max_files as u64, 1),
        ("max_parallel_fetches", s.max_parallel_fetches as u64, 1),
        ("max_redirects", s.max_redirects as u64 + 1, 1),
    ];
    for (name, value, min) in numbers {
        if value < min {
            p.add(
                format!("supply.{name}"),
                format!("{value} is below {min}"),
                "raise it, or remove the key for the default",
            );
        }
    }
    let urls = [
        ("ads_txt_url", &s.ads_txt_url),
        ("app_ads_txt_url", &s.app_ads_txt_url),
        ("sellers_json_url", &s.sellers_json_url),
    ];
    for (name, url) in urls {
        let scheme = url.starts_with("https://") || url.starts_with("http://");
        if !scheme || !url.contains("{domain}") {
            p.add(
                format!("supply.{name}"),
                format!("`{url}` is not an http(s) URL with {{domain}} in it"),
                "e.g. \"https://{domain}/ads.txt\"",
            );
        }
    }
}

fn fleet(p: &mut Problems) {
    let Some(f) = &p.config.fleet else {
        return;
    };
    let urls = f.redis_url.urls();
    if urls.is_empty() {
        p.add(
            "fleet.redis_url".into(),
            "an empty list of cluster nodes",
            "list at least one node, e.g. [\"redis://10.0.0.5:7000\"]",
        );
    }
    for url in &urls {
        let scheme = url.starts_with("redis://") || url.starts_with("rediss://");
        if !scheme || redis::Client::open(url.as_str()).is_err() {
            p.add(
                "fleet.redis_url".into(),
                format!("`{url}` is not a redis:// or rediss:// URL"),
                "e.g. \"redis://10.0.0.5:6379/0\", \"rediss://redis.internal:6380/0\" (TLS), or a cluster's nodes [\"redis://10.0.0.5:7000\", …]",
            );
        }
    }
    if let Some(ca) = &f.tls_ca_file {
        let path = p.config.relative_to_file(ca);
        let pem = std::fs::read(&path).unwrap_or_default();
        if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
            p.add(
                "fleet.tls_ca_file".into(),
                format!("{} is not a readable PEM certificate", path.display()),
                "point it at the CA certificate that signed Redis's (PEM), or remove it to use the system's trust store",
            );
        }
        if !urls.iter().any(|u| u.starts_with("rediss://")) {
            p.add(
                "fleet.tls_ca_file".into(),
                "set, but redis_url is not rediss://",
                "use rediss:// for TLS, or remove tls_ca_file",
            );
        }
    }
    let key_ok = !f.key_prefix.is_empty()
        && f.key_prefix.len() <= 64
        && f.key_prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if !key_ok {
        p.add(
            "fleet.key_prefix".into(),
            format!(
                "`{}` is not 1-64 letters, digits, '-', '_', '.' or ':'",
                f.key_prefix
            ),
            "e.g. \"bidder\", or one name per fleet sharing a Redis",
        );
    }
    let numbers: [(&str, u64, u64, u64); 7] = [
        ("renew_interval_ms", f.renew_interval_ms, 10, 10_000),
        ("response_timeout_ms", f.response_timeout_ms, 1, 10_000),
        ("connect_timeout_ms", f.connect_timeout_ms, 1, 60_000),
        ("lease_spend_ms", f.lease_spend_ms, 100, 600_000),
        ("min_lease_bids", u64::from(f.min_lease_bids), 1, 1_000_000),
        ("report_interval_ms", f.report_interval_ms, 10, 600_000),
        ("learning_ms", f.learning_ms, 20, 3_600_000),
    ];
    for (name, value, min, max) in numbers {
        if !(min..=max).contains(&value) {
            p.add(
                format!("fleet.{name}"),
                format!("{value} is outside {min}..={max}"),
                "pick a value in range, or remove the key for the default",
            );
        }
    }
    // Hosts holding a grant call every half learning window: a store that lost its
    // state must hear of every grant before it hands out anything new.
    let least = 2 * f.report_interval_ms.max(f.renew_interval_ms);
    if f.learning_ms < least {
        p.add(
            "fleet.learning_ms".into(),
            format!(
                "{} is shorter than twice report_interval_ms and renew_interval_ms ({least})",
                f.learning_ms
            ),
            "raise learning_ms (default 5000), or shorten report_interval_ms",
        );
    }
    // Redis scripts count in doubles: keep every budget exact in them.
    for (i, spanned) in p.config.campaigns.iter().enumerate() {
        let c: &CampaignConfig = spanned.get_ref();
        if c.daily_budget_micros > MAX_FLEET_BUDGET_MICROS {
            let field = format!("campaign[{i}] ({}).daily_budget_micros", c.id);
            p.add(
                field,
                format!("{} is above {MAX_FLEET_BUDGET_MICROS} in fleet mode", c.daily_budget_micros),
                "split the budget over campaigns; the fleet store counts exactly only below 10^13 micros",
            );
        }
    }
}

/// The largest daily budget fleet mode takes, micros (Redis's Lua numbers are doubles,
/// written with 14 significant digits).
pub const MAX_FLEET_BUDGET_MICROS: i64 = 10_000_000_000_000;

fn partners(p: &mut Problems) -> HashSet<String> {
    let mut names = HashSet::new();
    if p.config.partners.len() > MAX_PARTNERS {
        p.add(
            "partner".into(),
            format!(
                "{} partners, more than {MAX_PARTNERS}",
                p.config.partners.len()
            ),
            "merge or remove partners",
        );
    }
    for (i, spanned) in p.config.partners.iter().enumerate() {
        let partner: &PartnerConfig = spanned.get_ref();
        let field = |f: &str| format!("partner[{i}] ({}).{f}", partner.name);
        if !is_identifier(&partner.name) {
            p.add(
                field("name"),
                "must be 1-64 letters, digits, `-` or `_`",
                "rename the partner; the name is used in the bid path /bid/{name}",
            );
        }
        if !names.insert(partner.name.clone()) {
            p.add(
                field("name"),
                "duplicate partner name",
                "give each partner its own name",
            );
        }
        for (j, cidr) in partner.cidrs.iter().enumerate() {
            if cidr.parse::<ipnet::IpNet>().is_err() {
                p.add(
                    field(&format!("cidrs[{j}]")),
                    format!("`{cidr}` is not a CIDR"),
                    "write e.g. \"192.0.2.0/24\" or \"2001:db8::/32\"",
                );
            }
        }
        if OpenRtbVersion::parse(&partner.openrtb_version).is_none() {
            p.add(
                field("openrtb_version"),
                format!("`{}` is not supported", partner.openrtb_version),
                "use \"2.5\" or \"2.6\"",
            );
        }
        // Above bidding.reservation_ttl_ms it is cut to it: lowering the TTL needs no
        // edit of every partner.
        if partner.notice_horizon_ms.is_some_and(|h| h < 1_000) {
            p.add(
                field("notice_horizon_ms"),
                "below 1000: real notices take longer than that",
                "e.g. 30000 when this exchange's notices come within seconds",
            );
        }
        if let (Some(asi), Some(domain)) = (&partner.asi, partner.asi_domain()) {
            if !super::is_domain(&domain) {
                p.add(
                    field("asi"),
                    format!("`{asi}` is not a domain"),
                    "write the partner's system domain as it appears in schain `asi`, e.g. \"exchange-a.com\"",
                );
            }
        }
        if partner.sellers_json.is_some() && partner.asi.is_none() {
            p.add(
                field("sellers_json"),
                "set, but asi is not: the file would belong to no system",
                "set asi to the partner's system domain",
            );
        }
        if partner.max_held_micros.is_some_and(|m| m < 0) {
            p.add(
                field("max_held_micros"),
                "must not be negative",
                "e.g. 50_000_000 (50.00 of bidding.currency), or remove it for no limit",
            );
        }
    }
    names
}

fn campaigns(p: &mut Problems, partner_names: &HashSet<String>) {
    if p.config.campaigns.len() > MAX_CAMPAIGNS {
        p.add(
            "campaign".into(),
            format!(
                "{} campaigns, more than {MAX_CAMPAIGNS}",
                p.config.campaigns.len()
            ),
            "split the fleet or archive ended campaigns",
        );
    }
    let mut ids = HashSet::new();
    for (i, spanned) in p.config.campaigns.iter().enumerate() {
        let c: &CampaignConfig = spanned.get_ref();
        let prefix = format!("campaign[{i}] ({})", c.id);
        if !is_identifier(&c.id) {
            p.add(
                format!("{prefix}.id"),
                "must be 1-64 letters, digits, `-` or `_`",
                "rename the campaign",
            );
        }
        if !ids.insert(c.id.as_str()) {
            p.add(
                format!("{prefix}.id"),
                "duplicate campaign id",
                "give each campaign its own id",
            );
        }
        money(p, &prefix, c);
        targeting(p, &prefix, &c.targeting, partner_names);
        if c.creatives.is_empty() || c.creatives.len() > MAX_CREATIVES_PER_CAMPAIGN {
            p.add(
                format!("{prefix}.creative"),
                format!("{} creatives", c.creatives.len()),
                "give the campaign 1 to 64 [[campaign.creative]] tables",
            );
        }
        let mut crids = HashSet::new();
        for (j, cr) in c.creatives.iter().enumerate() {
            if !crids.insert(cr.id.as_str()) {
                p.add(
                    format!("{prefix}.creative[{j}].id"),
                    "duplicate creative id",
                    "give each creative its own id",
                );
            }
            creative(p, &format!("{prefix}.creative[{j}] ({})", cr.id), cr);
        }
    }
}

fn money(p: &mut Problems, prefix: &str, c: &CampaignConfig) {
    let budgets = [
        ("daily_budget_micros", Some(c.daily_budget_micros)),
        ("hourly_budget_micros", c.hourly_budget_micros),
        ("lifetime_budget_micros", c.lifetime_budget_micros),
    ];
    for (name, value) in budgets {
        if value.is_some_and(|v| v < 0) {
            p.add(
                format!("{prefix}.{name}"),
                "negative",
                "use 0 or more micro-units (1 USD = 1_000_000)",
            );
        }
    }
    if c.frequency_cap
        .is_some_and(|n| !(1..=MAX_FREQUENCY_CAP).contains(&n))
    {
        p.add(
            format!("{prefix}.frequency_cap"),
            format!("outside 1..={MAX_FREQUENCY_CAP}"),
            "the impressions one user may see per period, e.g. 3; remove it for no cap",
        );
    }
    if !matches!(c.frequency_period.as_str(), "day" | "hour") {
        p.add(
            format!("{prefix}.frequency_period"),
            format!("unknown period {:?}", c.frequency_period),
            "use \"day\" or \"hour\" (in the campaign's time_zone)",
        );
    }
    if Calendar::named(&c.time_zone).is_err() {
        p.add(
            format!("{prefix}.time_zone"),
            format!("unknown time zone {:?}", c.time_zone),
            "use an IANA name such as \"UTC\" or \"America/New_York\"",
        );
    }
    if let Some(markup) = c.floor_markup_ppm {
        if !(1_000_000..=MAX_FLOOR_MARKUP_PPM).contains(&markup) {
            p.add(
                format!("{prefix}.floor_markup_ppm"),
                format!("{markup} is outside 1_000_000..={MAX_FLOOR_MARKUP_PPM}"),
                "a multiplier on the floor in parts per million, e.g. 1_100_000 for 1.10",
            );
        }
    }
    for (name, value) in [
        ("max_bid_cpm_micros", c.max_bid_cpm_micros),
        ("base_cpm_micros", c.base_cpm_micros),
    ] {
        if value <= 0 || value > MAX_CPM_MICROS {
            p.add(
                format!("{prefix}.{name}"),
                format!("{value} is outside 1..={MAX_CPM_MICROS}"),
                "a CPM in micro-units, e.g. 2_500_000 for 2.50",
            );
        }
    }
}

fn targeting(p: &mut Problems, prefix: &str, t: &TargetingConfig, partner_names: &HashSet<String>) {
    let field = |f: &str| format!("{prefix}.targeting.{f}");
    for m in &t.media {
        if MediaType::parse(m).is_none() {
            p.add(
                field("media"),
                format!("unknown media `{m}`"),
                "use banner, video, audio or native",
            );
        }
    }
    for s in &t.sizes {
        if parse_size(s).is_none() {
            p.add(
                field("sizes"),
                format!("`{s}` is not WxH"),
                "write sizes like \"300x250\"",
            );
        }
    }
    for c in &t.countries {
        if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
            p.add(
                field("countries"),
                format!("`{c}` is not ISO-3166-1 alpha-3"),
                "use codes like \"USA\", \"GBR\" (OpenRTB device.geo.country)",
            );
        }
    }
    for d in &t.dayparts {
        if parse_daypart(d).is_none() {
            p.add(
                field("dayparts"),
                format!("`{d}` is not a daypart"),
                "write e.g. \"mon-fri 08-20\" or \"sat,sun 00-24\" (UTC, end exclusive)",
            );
        }
    }
    for name in &t.partners {
        if !partner_names.contains(name) {
            p.add(
                field("partners"),
                format!("unknown partner `{name}`"),
                "name a [[partner]] defined in this file",
            );
        }
    }
    for (k, d) in t.deals.iter().enumerate() {
        if d.id.is_empty() || d.floor_cpm_micros < 0 || d.floor_cpm_micros > MAX_CPM_MICROS {
            p.add(
                field(&format!("deal[{k}]")),
                "needs an id and a floor in 0..=MAX_CPM",
                "e.g. { id = \"deal-1\", floor_cpm_micros = 1_000_000 }",
            );
        }
    }
    consent(p, &field, t);
    for kind in &t.allow_ivt {
        if !IVT_KINDS.contains(&kind.as_str()) {
            p.add(
                field("allow_ivt"),
                format!("unknown invalid-traffic kind {kind:?}"),
                "use \"datacenter\", \"blocklist\", \"crawler\" or \"inconsistent_device\"",
            );
        }
    }
    if t.deals_only && t.deals.is_empty() {
        p.add(
            field("deals_only"),
            "set, but the campaign has no deals",
            "add [[campaign.targeting.deal]] tables or unset deals_only",
        );
    }
    if !WHEN_UNVERIFIED.contains(&t.supply_chain.when_unverified.as_str()) {
        p.add(
            field("supply_chain.when_unverified"),
            format!("unknown policy {:?}", t.supply_chain.when_unverified),
            "use \"no_bid\", \"direct_only\" or \"bid\"",
        );
    }
    for s in &t.supply_chain.allowed_sellers {
        if s.is_empty() || s.split(':').count() > 2 {
            p.add(
                field("supply_chain.allowed_sellers"),
                format!("`{s}` is not `asi` or `asi:sid`"),
                "e.g. \"exchange.com\" or \"exchange.com:pub-123\"",
            );
        }
    }
}

/// A campaign's consent needs: known ids and names, set only with `require_consent`,
/// which needs our vendor id.
fn consent(p: &mut Problems, field: &dyn Fn(&str) -> String, t: &TargetingConfig) {
    let refines = t.consent_purposes.is_some()
        || !t.consent_special_features.is_empty()
        || t.us_opt_outs.is_some();
    if refines && !t.require_consent {
        p.add(
            field("require_consent"),
            "consent_purposes, consent_special_features or us_opt_outs is set, but \
             require_consent is not",
            "set require_consent = true (or remove those keys for a contextual campaign)",
        );
    }
    for &purpose in t.consent_purposes.iter().flatten() {
        if !(1..=TCF_PURPOSES).contains(&purpose) {
            p.add(
                field("consent_purposes"),
                format!("{purpose} is not a TCF v2.2 purpose"),
                "use purpose ids 1..=11, e.g. [1, 2, 3, 4, 7] for personalised ads",
            );
        }
    }
    for &feature in &t.consent_special_features {
        if !(1..=TCF_SPECIAL_FEATURES).contains(&feature) {
            p.add(
                field("consent_special_features"),
                format!("{feature} is not a TCF v2.2 special feature"),
                "use 1 (precise geolocation) or 2 (active device scanning)",
            );
        }
    }
    for name in t.us_opt_outs.iter().flatten() {
        if !US_OPT_OUTS.contains(&name.as_str()) {
            p.add(
                field("us_opt_outs"),
                format!("unknown opt-out {name:?}"),
                "use \"sale\", \"sharing\" or \"targeted_advertising\"",
            );
        }
    }
    if t.require_consent && p.config.privacy.gvl_vendor_id.is_none() {
        p.add(
            field("require_consent"),
            "set, but privacy.gvl_vendor_id is not: no TC string could ever grant us consent",
            "set [privacy] gvl_vendor_id to our id in IAB Europe's Global Vendor List",
        );
    }
}

fn creative(p: &mut Problems, prefix: &str, cr: &CreativeConfig) {
    let Some(media) = MediaType::parse(&cr.format) else {
        p.add(
            format!("{prefix}.format"),
            format!("unknown format `{}`", cr.format),
            "use banner, video, audio or native",
        );
        return;
    };
    if media == MediaType::Banner && (cr.w == 0 || cr.h == 0) {
        p.add(
            format!("{prefix}.w/h"),
            "a banner needs its size",
            "set w and h in pixels",
        );
    }
    if cr.adm.is_empty() {
        p.add(
            format!("{prefix}.adm"),
            "empty markup",
            "put the ad markup (HTML, VAST, native JSON) in adm",
        );
    }
    if cr.adomain.is_empty() {
        p.add(
            format!("{prefix}.adomain"),
            "empty",
            "list the advertiser's domain(s); exchanges block on it",
        );
    }
}

fn is_currency_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

fn is_identifier(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
