//! The fetcher: a task on the control thread that keeps every tracked file fresh.
//!
//! Each round (once a second) it applies new settings, takes the domains workers
//! reported, fetches what is due (at most `max_parallel_fetches` at once) and publishes
//! a new view when anything changed. A fetch is bounded in time (`fetch_timeout_ms`,
//! connect to last byte), size (`max_*_bytes`, before and while reading) and
//! redirects (`max_redirects`, and the ads.txt rule: at most one hop outside the
//! original root domain); it sends `If-None-Match` / `If-Modified-Since` from the last
//! good copy. A good copy is written to the disk cache and kept in use until a newer
//! good one replaces it: a refresh that fails (404, timeout, oversized, bad JSON) is
//! recorded and retried after `retry_interval_s`, and bidding keeps the old copy.
//! Parsing and disk writes run on the blocking pool, so notices on this thread never
//! wait behind a large sellers.json.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::ads_txt::AdsTxt;
use super::sellers_json::SellersJson;
use super::store::Outcome;
use super::{is_domain, root_domain, FileKind, Settings, Source, SupplyStore, Tracked, View};
use crate::clock::Clock;

/// How often the fetcher looks for due files and reported domains.
pub const ROUND_INTERVAL_MS: u64 = 1_000;

/// A parsed good copy.
#[derive(Debug, Clone)]
enum Parsed {
    AdsTxt(Arc<AdsTxt>),
    SellersJson(Arc<SellersJson>),
}

impl Parsed {
    fn parse(kind: FileKind, body: &[u8]) -> Result<Parsed, String> {
        match kind {
            FileKind::SellersJson => {
                SellersJson::parse(body).map(|f| Parsed::SellersJson(Arc::new(f)))
            }
            FileKind::AdsTxt | FileKind::AppAdsTxt => {
                let text = std::str::from_utf8(body).map_err(|e| format!("not UTF-8 text: {e}"))?;
                AdsTxt::parse(text).map(|f| Parsed::AdsTxt(Arc::new(f)))
            }
        }
    }

    fn entries(&self) -> usize {
        match self {
            Parsed::AdsTxt(f) => f.records,
            Parsed::SellersJson(f) => f.len(),
        }
    }
}

/// What a conditional request sends back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Validators {
    etag: Option<String>,
    last_modified: Option<String>,
}

/// The disk cache's record beside each body.
#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    source: String,
    fetched_at_unix_ms: u64,
    #[serde(flatten)]
    validators: Validators,
}

#[derive(Debug)]
struct Entry {
    source: Source,
    /// The domain and the source as text, shared with every published status.
    domain: Arc<str>,
    source_text: Arc<str>,
    good: Option<Parsed>,
    /// When the copy in use was fetched or last confirmed (304).
    fetched_at_ms: u64,
    validators: Validators,
    last_error: Option<Arc<str>>,
    next_fetch_ms: u64,
}

/// One fetch's result.
enum Got {
    Body {
        parsed: Parsed,
        validators: Validators,
    },
    NotModified,
}

/// The fetcher's state; [`run`] drives it, tests call [`Fetcher::round`] directly.
pub struct Fetcher {
    store: Arc<SupplyStore>,
    clock: Clock,
    settings: Arc<Settings>,
    client: reqwest::Client,
    entries: BTreeMap<(FileKind, String), Entry>,
}

impl Fetcher {
    /// A fetcher for `store`, with every good copy in the disk cache loaded and
    /// published (due for refresh when older than the interval).
    pub async fn start(store: Arc<SupplyStore>, clock: Clock) -> Fetcher {
        let settings = store.settings();
        store.set_clock(clock.clone());
        let mut fetcher = Fetcher {
            client: client(&settings),
            store,
            clock,
            settings: Arc::clone(&settings),
            entries: BTreeMap::new(),
        };
        if let Some(dir) = settings.cache_dir.clone() {
            let max = [
                settings.section.max_ads_txt_bytes,
                settings.section.max_sellers_json_bytes,
            ];
            let loaded = tokio::task::spawn_blocking(move || load_cache(&dir, max))
                .await
                .unwrap_or_default();
            let refresh_ms = settings.section.refresh_interval_s * 1_000;
            for (kind, domain, meta, parsed) in loaded {
                let source = settings.source(kind, &domain);
                let stale = source_text(&source) != meta.source;
                fetcher.entries.insert(
                    (kind, domain.clone()),
                    Entry {
                        domain: domain.into(),
                        source_text: source_text(&source).into(),
                        good: Some(parsed),
                        fetched_at_ms: meta.fetched_at_unix_ms,
                        validators: if stale {
                            Validators::default()
                        } else {
                            meta.validators
                        },
                        last_error: None,
                        next_fetch_ms: if stale {
                            0
                        } else {
                            meta.fetched_at_unix_ms + refresh_ms
                        },
                        source,
                    },
                );
            }
        }
        fetcher.apply_settings(settings);
        fetcher.publish();
        fetcher
    }

    /// One round: new settings, reported domains, due fetches, and a new view if
    /// anything changed.
    pub async fn round(&mut self) {
        let settings = self.store.settings();
        let mut changed = false;
        if settings != self.settings {
            changed |= self.apply_settings(settings);
        }
        changed |= self.take_discovered();
        changed |= self.fetch_due().await;
        if changed {
            self.publish();
        }
    }

    /// Configured sellers.json sources (new or changed ones are due now) and a new
    /// client when the fetch limits changed. Returns whether entries changed.
    fn apply_settings(&mut self, settings: Arc<Settings>) -> bool {
        if (
            settings.section.fetch_timeout_ms,
            settings.section.max_redirects,
        ) != (
            self.settings.section.fetch_timeout_ms,
            self.settings.section.max_redirects,
        ) {
            self.client = client(&settings);
        }
        let mut changed = false;
        let now = self.clock.now_unix_ms();
        for ((kind, domain), entry) in &mut self.entries {
            let source = settings.source(*kind, domain);
            if source != entry.source {
                entry.source_text = source_text(&source).into();
                entry.source = source;
                entry.validators = Validators::default();
                entry.next_fetch_ms = now;
            }
        }
        for (domain, _) in &settings.sellers_json {
            let key = (FileKind::SellersJson, domain.clone());
            if let std::collections::btree_map::Entry::Vacant(slot) = self.entries.entry(key) {
                slot.insert(new_entry(
                    domain,
                    settings.source(FileKind::SellersJson, domain),
                    now,
                ));
                changed = true;
            }
        }
        self.settings = settings;
        changed
    }

    fn take_discovered(&mut self) -> bool {
        let now = self.clock.now_unix_ms();
        let mut added = false;
        let (entries, settings, store) = (&mut self.entries, &self.settings, &self.store);
        store.take_discovered(|kind, domain| {
            if !is_domain(domain) || entries.contains_key(&(kind, domain.to_owned())) {
                return;
            }
            if entries.len() >= settings.section.max_files {
                store.count_untracked();
                return;
            }
            entries.insert(
                (kind, domain.to_owned()),
                new_entry(domain, settings.source(kind, domain), now),
            );
            added = true;
        });
        added
    }

    /// Fetches every due file, `max_parallel_fetches` at a time.
    async fn fetch_due(&mut self) -> bool {
        let now = self.clock.now_unix_ms();
        let due: Vec<(FileKind, String)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.next_fetch_ms <= now)
            .map(|(k, _)| k.clone())
            .collect();
        if due.is_empty() {
            return false;
        }
        let mut running = JoinSet::new();
        let mut queue = due.into_iter();
        let mut changed = false;
        // A long round (thousands of files due at start) publishes as it goes.
        let mut published = crate::clock::monotonic_now();
        loop {
            if changed && published.elapsed() >= Duration::from_millis(ROUND_INTERVAL_MS) {
                self.publish();
                published = crate::clock::monotonic_now();
            }
            while running.len() < self.settings.section.max_parallel_fetches.max(1) {
                let Some(key) = queue.next() else { break };
                let entry = &self.entries[&key];
                let job = Job {
                    kind: key.0,
                    domain: key.1.clone(),
                    source: entry.source.clone(),
                    validators: entry.validators.clone(),
                    max_bytes: self.settings.max_bytes(key.0),
                    cache_dir: self.settings.cache_dir.clone(),
                    client: self.client.clone(),
                    timeout_ms: self.settings.section.fetch_timeout_ms,
                    now_ms: now,
                };
                running.spawn(async move { (key, job.run().await) });
            }
            let Some(done) = running.join_next().await else {
                break;
            };
            let Ok((key, result)) = done else { continue };
            changed = true;
            let now = self.clock.now_unix_ms();
            let (refresh_ms, retry_ms) = (
                self.settings.section.refresh_interval_s * 1_000,
                self.settings
                    .section
                    .retry_interval_s
                    .min(self.settings.section.refresh_interval_s)
                    * 1_000,
            );
            let Some(entry) = self.entries.get_mut(&key) else {
                continue;
            };
            let outcome = match result {
                Ok(Got::Body { parsed, validators }) => {
                    entry.good = Some(parsed);
                    entry.validators = validators;
                    entry.fetched_at_ms = now;
                    entry.last_error = None;
                    entry.next_fetch_ms = now + refresh_ms;
                    Outcome::Fetched
                }
                Ok(Got::NotModified) => {
                    entry.fetched_at_ms = now;
                    entry.last_error = None;
                    entry.next_fetch_ms = now + refresh_ms;
                    Outcome::NotModified
                }
                Err(error) => {
                    tracing::warn!(kind = key.0.name(), domain = %key.1, source = %source_text(&entry.source), "supply fetch failed: {error}");
                    entry.last_error = Some(error.into());
                    entry.next_fetch_ms = now + retry_ms;
                    Outcome::Failed
                }
            };
            self.store.count_fetch(key.0, outcome);
        }
        changed
    }

    /// Publishes the view and the status.
    fn publish(&self) {
        let mut view = View::default();
        for ((kind, domain), entry) in &self.entries {
            let domain: Box<str> = domain.as_str().into();
            match (kind, &entry.good) {
                (FileKind::SellersJson, Some(Parsed::SellersJson(f))) => {
                    view.sellers_json.insert(domain, Some(Arc::clone(f)));
                }
                (FileKind::SellersJson, _) => {
                    view.sellers_json.insert(domain, None);
                }
                (kind, good) => {
                    let map = if *kind == FileKind::AppAdsTxt {
                        &mut view.app_ads_txt
                    } else {
                        &mut view.ads_txt
                    };
                    let file = match good {
                        Some(Parsed::AdsTxt(f)) => Some(Arc::clone(f)),
                        _ => None,
                    };
                    map.insert(domain, file);
                }
            }
        }
        self.store.publish(view);
        let tracked = self
            .entries
            .iter()
            .map(|((kind, _), e)| Tracked {
                kind: *kind,
                domain: Arc::clone(&e.domain),
                source: Arc::clone(&e.source_text),
                fetched_at_ms: e.good.as_ref().map(|_| e.fetched_at_ms),
                entries: e.good.as_ref().map_or(0, Parsed::entries),
                last_error: e.last_error.clone(),
                next_fetch_ms: e.next_fetch_ms,
            })
            .collect();
        self.store.set_tracked(tracked);
    }
}

/// Runs the fetcher until `stop`.
pub async fn run(store: Arc<SupplyStore>, clock: Clock, mut stop: watch::Receiver<bool>) {
    let mut fetcher = Fetcher::start(store, clock).await;
    let mut tick = tokio::time::interval(Duration::from_millis(ROUND_INTERVAL_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => return,
            _ = tick.tick() => fetcher.round().await,
        }
    }
}

fn new_entry(domain: &str, source: Source, now_ms: u64) -> Entry {
    Entry {
        domain: domain.into(),
        source_text: source_text(&source).into(),
        source,
        good: None,
        fetched_at_ms: 0,
        validators: Validators::default(),
        last_error: None,
        next_fetch_ms: now_ms,
    }
}

fn source_text(source: &Source) -> String {
    match source {
        Source::Url(url) => url.clone(),
        Source::File(path) => path.display().to_string(),
    }
}

/// One fetch, owned, so it can run as its own task.
struct Job {
    kind: FileKind,
    domain: String,
    source: Source,
    validators: Validators,
    max_bytes: u64,
    cache_dir: Option<PathBuf>,
    client: reqwest::Client,
    timeout_ms: u64,
    now_ms: u64,
}

impl Job {
    async fn run(self) -> Result<Got, String> {
        let (body, validators) = match &self.source {
            Source::Url(url) => match self.get(url).await? {
                Some(got) => got,
                None => {
                    self.write_meta().await;
                    return Ok(Got::NotModified);
                }
            },
            Source::File(path) => {
                let (path, max) = (path.clone(), self.max_bytes);
                tokio::task::spawn_blocking(move || read_limited(&path, max))
                    .await
                    .map_err(|e| format!("reading the file: {e}"))??
            }
        };
        let kind = self.kind;
        let parsed = tokio::task::spawn_blocking(move || {
            Parsed::parse(kind, &body).map(|parsed| (parsed, body))
        })
        .await
        .map_err(|e| format!("parsing: {e}"))?;
        let (parsed, body) = parsed?;
        if let Some(dir) = self.cache_dir.clone() {
            let meta = self.meta(&validators);
            let (kind, domain) = (self.kind, self.domain.clone());
            let written =
                tokio::task::spawn_blocking(move || write_cache(&dir, kind, &domain, &body, &meta))
                    .await;
            if let Ok(Err(e)) = written {
                tracing::warn!("supply cache: {e}");
            }
        }
        Ok(Got::Body { parsed, validators })
    }

    /// GETs `url`; `None` when the server says our copy is current (304).
    async fn get(&self, url: &str) -> Result<Option<(Vec<u8>, Validators)>, String> {
        use reqwest::header::{
            CONTENT_TYPE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED,
        };
        let mut request = self.client.get(url);
        if let Some(etag) = &self.validators.etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        if let Some(date) = &self.validators.last_modified {
            request = request.header(IF_MODIFIED_SINCE, date);
        }
        let mut response = request.send().await.map_err(|e| self.describe(&e))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let validators = Validators {
            etag: header(ETAG),
            last_modified: header(LAST_MODIFIED),
        };
        if self.kind != FileKind::SellersJson
            && header(CONTENT_TYPE).is_some_and(|t| t.to_ascii_lowercase().starts_with("text/html"))
        {
            return Err("served as text/html: not an ads.txt file".into());
        }
        let too_large = |n: u64| {
            format!(
                "the body is over the limit of {} bytes ({n} or more; raise [supply] max_{}_bytes if the file is genuine)",
                self.max_bytes,
                if self.kind == FileKind::SellersJson { "sellers_json" } else { "ads_txt" }
            )
        };
        if let Some(n) = response.content_length().filter(|&n| n > self.max_bytes) {
            return Err(too_large(n));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.describe(&e))? {
            let len = (body.len() + chunk.len()) as u64;
            if len > self.max_bytes {
                return Err(too_large(len));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some((body, validators)))
    }

    fn describe(&self, e: &reqwest::Error) -> String {
        if e.is_timeout() {
            return format!("timed out after {} ms", self.timeout_ms);
        }
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        text
    }

    fn meta(&self, validators: &Validators) -> Meta {
        Meta {
            source: source_text(&self.source),
            fetched_at_unix_ms: self.now_ms,
            validators: validators.clone(),
        }
    }

    /// After a 304: the copy on disk is current as of now.
    async fn write_meta(&self) {
        let Some(dir) = self.cache_dir.clone() else {
            return;
        };
        let meta = self.meta(&self.validators);
        let path = cache_path(&dir, self.kind, &self.domain, "meta");
        let _ = tokio::task::spawn_blocking(move || {
            write_atomic(&path, &serde_json::to_vec(&meta).unwrap_or_default())
        })
        .await;
    }
}

/// A client with the fetch limits: total time, redirects (count, and the ads.txt
/// scope rule), no cookies, our user agent.
fn client(settings: &Settings) -> reqwest::Client {
    let max_redirects = settings.section.max_redirects;
    let policy = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > max_redirects {
            return attempt.error(format!(
                "more than {max_redirects} redirects ([supply] max_redirects)"
            ));
        }
        // ads.txt 1.1: redirects stay within the original root domain, but for one
        // hop outside it (delegation to a third party's server).
        let root = |u: &reqwest::Url| u.host_str().map(|h| root_domain(h).unwrap_or(h).to_owned());
        let origin = attempt.previous().first().and_then(root);
        let outside = attempt.previous()[1..]
            .iter()
            .chain([attempt.url()])
            .filter(|u| root(u) != origin)
            .count();
        if outside > 1 {
            return attempt.error("redirected outside the original root domain more than once");
        }
        attempt.follow()
    });
    let timeout = Duration::from_millis(settings.section.fetch_timeout_ms);
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(policy)
        .user_agent(concat!(
            "bidder/",
            env!("CARGO_PKG_VERSION"),
            " (supply-chain crawler)"
        ))
        .build()
        .expect("an HTTP client with only timeouts and a redirect policy builds")
}

fn cache_path(dir: &Path, kind: FileKind, domain: &str, extension: &str) -> PathBuf {
    dir.join(kind.name()).join(format!("{domain}.{extension}"))
}

/// Reads a local source, at most `max` bytes; its size and modification time stand in
/// for an entity tag.
fn read_limited(path: &Path, max: u64) -> Result<(Vec<u8>, Validators), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > max {
        return Err(format!(
            "{}: {} bytes, over the limit of {max}",
            path.display(),
            meta.len()
        ));
    }
    let body = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((body, Validators::default()))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn write_cache(
    dir: &Path,
    kind: FileKind,
    domain: &str,
    body: &[u8],
    meta: &Meta,
) -> Result<(), String> {
    let folder = dir.join(kind.name());
    std::fs::create_dir_all(&folder).map_err(|e| format!("{}: {e}", folder.display()))?;
    let body_path = cache_path(dir, kind, domain, "body");
    write_atomic(&body_path, body).map_err(|e| format!("{}: {e}", body_path.display()))?;
    let meta_path = cache_path(dir, kind, domain, "meta");
    let meta = serde_json::to_vec(meta).map_err(|e| e.to_string())?;
    write_atomic(&meta_path, &meta).map_err(|e| format!("{}: {e}", meta_path.display()))
}

/// Every good copy in the cache; a file that no longer parses, or is over today's
/// limit, is skipped with a warning (it will be fetched again).
fn load_cache(dir: &Path, max: [u64; 2]) -> Vec<(FileKind, String, Meta, Parsed)> {
    let mut loaded = Vec::new();
    for kind in FileKind::ALL {
        let Ok(listing) = std::fs::read_dir(dir.join(kind.name())) else {
            continue;
        };
        for item in listing.flatten() {
            let name = item.file_name();
            let Some(domain) = name.to_str().and_then(|n| n.strip_suffix(".meta")) else {
                continue;
            };
            if !is_domain(domain) {
                continue;
            }
            let limit = if kind == FileKind::SellersJson {
                max[1]
            } else {
                max[0]
            };
            let read = || -> Result<(Meta, Parsed), String> {
                let meta = std::fs::read(item.path()).map_err(|e| e.to_string())?;
                let meta: Meta = serde_json::from_slice(&meta).map_err(|e| e.to_string())?;
                let (body, _) = read_limited(&cache_path(dir, kind, domain, "body"), limit)?;
                Ok((meta, Parsed::parse(kind, &body)?))
            };
            match read() {
                Ok((meta, parsed)) => loaded.push((kind, domain.to_owned(), meta, parsed)),
                Err(e) => tracing::warn!(
                    "supply cache {}: {domain}: {e}; fetching it again",
                    kind.name()
                ),
            }
        }
    }
    loaded
}
