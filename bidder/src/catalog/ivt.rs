//! Invalid traffic: the lists a request is checked against before any pricing — data
//! centre networks and blocked addresses (operator files), crawler and automation user
//! agents (built in, plus an operator file of user-agent fragments) — loaded when the
//! catalog compiles, so a reload (SIGHUP) re-reads them.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use aho_corasick::AhoCorasick;
use ipnet::IpNet;

use super::ip_ranges::IpRanges;
use crate::config::targeting::IVT_KINDS;
use crate::config::{Config, ConfigError};
use crate::limits::MAX_IVT_LIST_BYTES;

/// What made a request invalid traffic. The discriminant is the bit in a kind mask
/// and the position in `config::targeting::IVT_KINDS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum IvtKind {
    /// `device.ip` in a data-centre (cloud, hosting, proxy) network.
    Datacenter,
    /// `device.ip` in the operator's blocklist, or `device.ua` containing a blocked
    /// fragment.
    Blocklist,
    /// `device.ua` of a known crawler or automation tool.
    Crawler,
    /// Device fields that contradict each other (an iOS device with an Android user
    /// agent; a PC that runs a phone OS).
    InconsistentDevice,
}

const _: () = assert!(IVT_KINDS.len() == IvtKind::COUNT);

impl IvtKind {
    pub const COUNT: usize = 4;
    pub const ALL: [IvtKind; IvtKind::COUNT] = [
        IvtKind::Datacenter,
        IvtKind::Blocklist,
        IvtKind::Crawler,
        IvtKind::InconsistentDevice,
    ];

    /// The configuration and `/metrics` name.
    pub fn name(self) -> &'static str {
        IVT_KINDS[self as usize]
    }

    pub fn from_name(name: &str) -> Option<IvtKind> {
        IvtKind::ALL.into_iter().find(|k| k.name() == name)
    }

    pub fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// User-agent fragments of crawlers and automation tools, matched case-insensitively.
/// Specific names only: a bare "bot" would also match phone brands.
const KNOWN_CRAWLERS: &[&str] = &[
    "googlebot",
    "adsbot-google",
    "mediapartners-google",
    "bingbot",
    "bingpreview",
    "slurp",
    "duckduckbot",
    "baiduspider",
    "yandexbot",
    "yandex.com/bots",
    "sogou",
    "exabot",
    "facebookexternalhit",
    "facebot",
    "ia_archiver",
    "ahrefsbot",
    "semrushbot",
    "mj12bot",
    "dotbot",
    "petalbot",
    "applebot",
    "twitterbot",
    "linkedinbot",
    "pinterestbot",
    "bytespider",
    "gptbot",
    "ccbot",
    "claudebot",
    "amazonbot",
    "headlesschrome",
    "phantomjs",
    "python-requests",
    "python-urllib",
    "aiohttp",
    "curl/",
    "wget/",
    "go-http-client",
    "apache-httpclient",
    "libwww-perl",
    "scrapy",
    "httpclient",
    "crawler",
    "spider",
    "lighthouse",
    "pingdom",
    "uptimerobot",
    "+http://",
    "+https://",
];

/// Ids handed to loaded lists; 0 is the empty default's.
static NEXT_LISTS_ID: AtomicU64 = AtomicU64::new(1);

/// The compiled lists.
#[derive(Debug, Default)]
pub struct IvtLists {
    pub datacenters: IpRanges,
    pub blocked_ips: IpRanges,
    /// Crawler fragments first (pattern ids below `crawler_patterns`), then the
    /// operator's blocked fragments; `None` when there are none.
    user_agents: Option<AhoCorasick>,
    crawler_patterns: usize,
    pub inconsistent_devices: bool,
    /// Unique per load (0 for the empty default): what a worker's cache of user-agent
    /// verdicts was filled from.
    id: u64,
}

impl IvtLists {
    /// Reads the lists `[ivt]` names. An error names the file, line and fix.
    pub fn load(config: &Config) -> Result<IvtLists, ConfigError> {
        let ivt = &config.ivt;
        let nets = |file: &Option<PathBuf>, field: &str| -> Result<IpRanges, ConfigError> {
            let Some(file) = file else {
                return Ok(IpRanges::default());
            };
            let path = config.relative_to_file(file);
            let mut nets = Vec::new();
            for (line, entry) in entries(&path)? {
                let net = entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| ConfigError::Invalid {
                        path: path.clone(),
                        line,
                        field: format!("ivt.{field}"),
                        problem: format!("`{entry}` is not an IP address or network"),
                        fix: "one address or CIDR per line (\"203.0.113.7\", \"198.51.100.0/24\", \
                              \"2001:db8::/32\"); # starts a comment"
                            .into(),
                    })?;
                nets.push(net);
            }
            Ok(IpRanges::from_nets(nets))
        };
        let datacenters = nets(&ivt.datacenter_ranges_file, "datacenter_ranges_file")?;
        let blocked_ips = nets(&ivt.ip_blocklist_file, "ip_blocklist_file")?;
        let mut patterns: Vec<String> = Vec::new();
        if ivt.known_crawlers {
            patterns.extend(KNOWN_CRAWLERS.iter().map(|p| p.to_string()));
        }
        let crawler_patterns = patterns.len();
        if let Some(file) = &ivt.ua_blocklist_file {
            let path = config.relative_to_file(file);
            patterns.extend(entries(&path)?.into_iter().map(|(_, e)| e));
        }
        let user_agents = if patterns.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .build(&patterns)
                    .map_err(|e| ConfigError::Invalid {
                        path: config.source.path.clone(),
                        line: 0,
                        field: "ivt.ua_blocklist_file".into(),
                        problem: format!("the user-agent fragments do not compile: {e}"),
                        fix: "use fewer or shorter fragments".into(),
                    })?,
            )
        };
        Ok(IvtLists {
            datacenters,
            blocked_ips,
            user_agents,
            crawler_patterns,
            inconsistent_devices: ivt.inconsistent_devices,
            id: NEXT_LISTS_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Whether any check is configured (else requests skip the stage).
    pub fn active(&self) -> bool {
        !self.datacenters.is_empty()
            || !self.blocked_ips.is_empty()
            || self.user_agents.is_some()
            || self.inconsistent_devices
    }

    /// Which load these lists came from: equal ids, equal user-agent verdicts.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// What a user agent matches first: a crawler or a blocked fragment.
    pub fn user_agent(&self, ua: &str) -> Option<IvtKind> {
        let found = self.user_agents.as_ref()?.find(ua)?;
        Some(if found.pattern().as_usize() < self.crawler_patterns {
            IvtKind::Crawler
        } else {
            IvtKind::Blocklist
        })
    }
}

/// The non-empty, non-comment lines of a list file, trimmed, with their line numbers.
fn entries(path: &Path) -> Result<Vec<(usize, String)>, ConfigError> {
    let size = std::fs::metadata(path)
        .map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    if size > MAX_IVT_LIST_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
            size,
        });
    }
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(text
        .lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let entry = line.split('#').next().unwrap_or("").trim();
            (!entry.is_empty()).then(|| (i + 1, entry.to_owned()))
        })
        .collect())
}
