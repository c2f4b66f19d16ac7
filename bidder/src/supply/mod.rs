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

/// How files are fetched and kept: the `[supply]` section, its cache folder resolved,
/// and each partner's sellers.json.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Settings {
    /// Limits, intervals and URL templates as configured (`section.cache_dir` is as
    /// written; the fetcher uses [`Settings::cache_dir`]).
    pub section: SupplyConfig,
    /// Where good copies are kept across restarts; `None`: memory only.
    pub cache_dir: Option<PathBuf>,
    /// sellers.json sources named in the configuration, by advertising-system domain;
    /// other systems' files come from the template.
    pub sellers_json: Vec<(String, Source)>,
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
                let asi = p.asi_domain()?;
                let given = p.sellers_json.as_deref()?;
                let source = if given.starts_with("http://") || given.starts_with("https://") {
                    Source::Url(given.to_owned())
                } else {
                    Source::File(config.relative_to_file(Path::new(given)))
                };
                Some((asi, source))
            })
            .collect();
        Settings {
            section: config.supply.clone(),
            cache_dir,
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
        let template = match kind {
            FileKind::AdsTxt => &self.section.ads_txt_url,
            FileKind::AppAdsTxt => &self.section.app_ads_txt_url,
            FileKind::SellersJson => &self.section.sellers_json_url,
        };
        Source::Url(template.replace("{domain}", domain))
    }

    /// Largest body accepted for `kind`.
    pub fn max_bytes(&self, kind: FileKind) -> u64 {
        match kind {
            FileKind::SellersJson => self.section.max_sellers_json_bytes,
            _ => self.section.max_ads_txt_bytes,
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
