//! The supply chain's public files: publishers' ads.txt / app-ads.txt and advertising
//! systems' sellers.json, fetched on the control thread and read by the decision
//! (`decide/supply.rs`) without waiting.
//!
//! Files: `ads_txt` and `sellers_json` (the IAB formats), `store` (the view workers
//! read and the queue of domains they met with no file yet), `fetch` (HTTP with
//! timeouts, size and redirect limits and conditional requests; the disk cache;
//! refresh, keeping the last good copy when a refresh fails).

pub mod ads_txt;
pub mod fetch;
pub mod sellers_json;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

pub use crate::config::is_domain;
use crate::config::{Config, SupplyConfig};

pub use store::{Lookup, SupplyStore, View};

/// The three kinds of file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// `https://{site domain}/ads.txt`.
    AdsTxt,
    /// `https://{app developer domain}/app-ads.txt`.
    AppAdsTxt,
    /// `https://{advertising system domain}/sellers.json`.
    SellersJson,
}

impl FileKind {
    pub const COUNT: usize = 3;
    pub const ALL: [FileKind; FileKind::COUNT] =
        [FileKind::AdsTxt, FileKind::AppAdsTxt, FileKind::SellersJson];

    /// The label in metrics and the folder in the disk cache.
    pub fn name(self) -> &'static str {
        match self {
            FileKind::AdsTxt => "ads_txt",
            FileKind::AppAdsTxt => "app_ads_txt",
            FileKind::SellersJson => "sellers_json",
        }
    }
}

/// Where one file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Fetched over HTTP(S).
    Url(String),
    /// Read from a local file (an operator's copy).
    File(PathBuf),
}

/// How files are fetched and kept (`[supply]`, with each partner's sellers.json).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Where good copies are kept across restarts; `None`: memory only.
    pub cache_dir: Option<PathBuf>,
    /// A good copy is fetched again after this long.
    pub refresh_interval_s: u64,
    /// After a failed fetch, the next try waits this long (at most the refresh interval).
    pub retry_interval_s: u64,
    /// The whole of one fetch (connect, redirects, body).
    pub fetch_timeout_ms: u64,
    /// Largest ads.txt / app-ads.txt body accepted.
    pub max_ads_txt_bytes: u64,
    /// Largest sellers.json body accepted.
    pub max_sellers_json_bytes: u64,
    /// Redirects followed per fetch.
    pub max_redirects: usize,
    /// Files tracked at once; domains past it stay untracked (counted).
    pub max_files: usize,
    /// Fetches in flight at once.
    pub max_parallel_fetches: usize,
    /// URL per kind, `{domain}` replaced by the domain (ads.txt, app-ads.txt,
    /// sellers.json): an operator may point them at an internal mirror.
    pub url_templates: [String; FileKind::COUNT],
    /// sellers.json sources named in the configuration, by advertising-system domain;
    /// other systems' files come from the template.
    pub sellers_json: Vec<(String, Source)>,
}

impl Default for Settings {
    /// The defaults of an empty `[supply]` section, memory only.
    fn default() -> Self {
        Settings::from_section(&SupplyConfig::default(), None, Vec::new())
    }
}

impl Settings {
    /// The settings `config` asks for: `[supply]` with paths resolved against the
    /// file, the cache beside the ledger by default, every partner's sellers.json.
    pub fn from_config(config: &Config) -> Settings {
        let cache_dir = match &config.supply.cache_dir {
            Some(dir) => Some(config.relative_to_file(dir)),
            None => config
                .ledger_path()
                .map(|p| p.parent().unwrap_or(Path::new(".")).join("supply-cache")),
        };
        let sellers_json = config
            .partners
            .iter()
            .map(|p| p.get_ref())
            .filter_map(|p| {
                let asi = p.asi.as_ref()?.to_ascii_lowercase();
                let given = p.sellers_json.as_deref()?;
                let source = if given.starts_with("http://") || given.starts_with("https://") {
                    Source::Url(given.to_owned())
                } else {
                    Source::File(config.relative_to_file(Path::new(given)))
                };
                Some((asi, source))
            })
            .collect();
        Settings::from_section(&config.supply, cache_dir, sellers_json)
    }

    fn from_section(
        s: &SupplyConfig,
        cache_dir: Option<PathBuf>,
        sellers_json: Vec<(String, Source)>,
    ) -> Settings {
        Settings {
            cache_dir,
            refresh_interval_s: s.refresh_interval_s,
            retry_interval_s: s.retry_interval_s,
            fetch_timeout_ms: s.fetch_timeout_ms,
            max_ads_txt_bytes: s.max_ads_txt_bytes,
            max_sellers_json_bytes: s.max_sellers_json_bytes,
            max_redirects: s.max_redirects,
            max_files: s.max_files,
            max_parallel_fetches: s.max_parallel_fetches,
            url_templates: [
                s.ads_txt_url.clone(),
                s.app_ads_txt_url.clone(),
                s.sellers_json_url.clone(),
            ],
            sellers_json,
        }
    }

    /// Where `kind`'s file for `domain` comes from.
    pub fn source(&self, kind: FileKind, domain: &str) -> Source {
        if kind == FileKind::SellersJson {
            if let Some((_, source)) = self.sellers_json.iter().find(|(d, _)| d == domain) {
                return source.clone();
            }
        }
        Source::Url(self.url_templates[kind as usize].replace("{domain}", domain))
    }

    /// Largest body accepted for `kind`.
    pub fn max_bytes(&self, kind: FileKind) -> u64 {
        match kind {
            FileKind::SellersJson => self.max_sellers_json_bytes,
            _ => self.max_ads_txt_bytes,
        }
    }
}

/// One tracked file, for `/supply` and `bidderctl supply status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileStatus {
    pub kind: FileKind,
    pub domain: String,
    /// The URL or path it comes from.
    pub source: String,
    /// Age of the copy in use, seconds; `None`: no usable copy.
    pub age_s: Option<u64>,
    /// Records (ads.txt) or sellers (sellers.json) in the copy in use.
    pub entries: usize,
    /// The last attempt's error, if it failed (the copy in use, if any, is older).
    pub last_error: Option<String>,
    /// Seconds until the next attempt.
    pub next_fetch_in_s: u64,
}

/// What the fetcher publishes per file: times, not ages, so a round that changes
/// nothing publishes nothing; [`SupplyStore::status`] turns them into ages.
#[derive(Debug, Clone)]
pub(crate) struct Tracked {
    pub kind: FileKind,
    pub domain: Arc<str>,
    pub source: Arc<str>,
    /// When the copy in use was fetched or confirmed; `None`: no usable copy.
    pub fetched_at_ms: Option<u64>,
    pub entries: usize,
    pub last_error: Option<Arc<str>>,
    pub next_fetch_ms: u64,
}

/// The registrable domain ads.txt lives on: `news.example.co.uk` → `example.co.uk`
/// (the public suffix list, plus one label). `None` for a public suffix itself or a
/// name that is not a domain.
pub fn root_domain(host: &str) -> Option<&str> {
    let domain = psl::domain_str(host)?;
    is_domain(domain).then_some(domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_domains_follow_the_public_suffix_list() {
        assert_eq!(root_domain("news.example.co.uk"), Some("example.co.uk"));
        assert_eq!(root_domain("www.example.com"), Some("example.com"));
        assert_eq!(root_domain("example.com"), Some("example.com"));
        assert_eq!(root_domain("co.uk"), None);
        assert_eq!(root_domain("../etc/passwd"), None);
    }

    #[test]
    fn only_host_names_are_domains() {
        assert!(is_domain("exchange-a.com"));
        for bad in [
            "",
            "localhost",
            "a..b",
            "a/b.com",
            "A.com",
            "-a.com",
            "a.com.",
            "x y.com",
        ] {
            assert!(!is_domain(bad), "{bad}");
        }
    }
}
