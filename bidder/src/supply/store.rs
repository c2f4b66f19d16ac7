//! What the bid path reads: one immutable [`View`] of every file, swapped whole by the
//! fetcher, and the bounded queue of domains a worker met with no file tracked yet.
//! Workers never wait on the fetcher: a view is one atomic load, a discovery one push
//! into a fixed-size queue (dropped and counted when full; the next request for that
//! domain reports it again).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use crossbeam_queue::ArrayQueue;
use rustc_hash::FxHashMap;

use super::ads_txt::AdsTxt;
use super::sellers_json::SellersJson;
use super::{FileKind, FileStatus, Settings, Tracked};
use crate::clock::Clock;
use crate::limits::{MAX_DOMAIN_BYTES, SUPPLY_DISCOVERY_QUEUE};
use crate::metrics::{Collect, PromText};

/// A file as the decision sees it.
#[derive(Debug)]
pub enum Lookup<'v, T> {
    /// Nobody asked for it yet: the caller reports it with [`SupplyStore::discover`].
    Untracked,
    /// Tracked, but no usable copy: never fetched yet, or every fetch failed.
    Unavailable,
    /// The last good copy (kept while refreshes fail).
    Ready(&'v T),
}

/// Every tracked file, by kind and lower-case domain; `None` while no copy is usable.
#[derive(Debug, Default)]
pub struct View {
    pub ads_txt: FxHashMap<Box<str>, Option<Arc<AdsTxt>>>,
    pub app_ads_txt: FxHashMap<Box<str>, Option<Arc<AdsTxt>>>,
    pub sellers_json: FxHashMap<Box<str>, Option<Arc<SellersJson>>>,
}

/// Generations handed to views, across every store in the process.
static NEXT_VIEW_GENERATION: AtomicU64 = AtomicU64::new(1);

impl View {
    /// The publisher's ads.txt (`AdsTxt`) or app-ads.txt (`AppAdsTxt`).
    pub fn ads_txt(&self, kind: FileKind, domain: &str) -> Lookup<'_, AdsTxt> {
        let map = match kind {
            FileKind::AppAdsTxt => &self.app_ads_txt,
            _ => &self.ads_txt,
        };
        lookup(map, domain)
    }

    /// The advertising system's sellers.json.
    pub fn sellers_json(&self, domain: &str) -> Lookup<'_, SellersJson> {
        lookup(&self.sellers_json, domain)
    }
}

fn lookup<'v, T>(map: &'v FxHashMap<Box<str>, Option<Arc<T>>>, domain: &str) -> Lookup<'v, T> {
    match map.get(domain) {
        None => Lookup::Untracked,
        Some(None) => Lookup::Unavailable,
        Some(Some(file)) => Lookup::Ready(file),
    }
}

/// A domain a worker met, inline so reporting it allocates nothing.
#[derive(Clone, Copy)]
struct Discovered {
    kind: FileKind,
    len: u8,
    bytes: [u8; MAX_DOMAIN_BYTES],
}

/// Fetch outcomes, for `bidder_supply_fetches_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A new copy, parsed and kept.
    Fetched,
    /// 304: the cached copy is current.
    NotModified,
    /// Anything else; the previous copy, if any, stays.
    Failed,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Fetched, Outcome::NotModified, Outcome::Failed];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Fetched => "fetched",
            Outcome::NotModified => "not_modified",
            Outcome::Failed => "failed",
        }
    }
}

/// The shared supply state: one per process, kept across reloads.
pub struct SupplyStore {
    view: ArcSwap<View>,
    /// Which view is current, unique in the process: what a worker checks (one plain
    /// atomic load) before using verdicts it remembers, loading the view only to
    /// compute a new one.
    generation: AtomicU64,
    settings: ArcSwap<Settings>,
    tracked: ArcSwap<Vec<Tracked>>,
    /// The fetcher's calendar, for ages; unset until a fetcher starts.
    clock: std::sync::OnceLock<Clock>,
    discovered: ArrayQueue<Discovered>,
    discoveries_dropped: AtomicU64,
    untracked_over_limit: AtomicU64,
    fetches: [[AtomicU64; 3]; FileKind::COUNT],
}

impl std::fmt::Debug for SupplyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupplyStore").finish_non_exhaustive()
    }
}

impl Default for SupplyStore {
    fn default() -> Self {
        SupplyStore::new(Settings::default())
    }
}

impl SupplyStore {
    /// An empty store: every file untracked until the fetcher learns of it.
    pub fn new(settings: Settings) -> SupplyStore {
        SupplyStore {
            view: ArcSwap::from_pointee(View::default()),
            generation: AtomicU64::new(NEXT_VIEW_GENERATION.fetch_add(1, Ordering::Relaxed)),
            settings: ArcSwap::from_pointee(settings),
            tracked: ArcSwap::from_pointee(Vec::new()),
            clock: std::sync::OnceLock::new(),
            discovered: ArrayQueue::new(SUPPLY_DISCOVERY_QUEUE),
            discoveries_dropped: AtomicU64::new(0),
            untracked_over_limit: AtomicU64::new(0),
            fetches: Default::default(),
        }
    }

    /// The current view: one atomic load, no lock.
    pub fn view(&self) -> Guard<Arc<View>> {
        self.view.load()
    }

    /// The current view's generation (see the field).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Replaces the view (the fetcher, after each round).
    pub fn publish(&self, view: View) {
        self.view.store(Arc::new(view));
        // After the view: a worker that sees the new generation loads the new view.
        self.generation.store(
            NEXT_VIEW_GENERATION.fetch_add(1, Ordering::Relaxed),
            Ordering::Release,
        );
    }

    /// The fetch settings: where files come from, limits, refresh interval.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.load_full()
    }

    /// New settings (start, reload); the fetcher applies them from its next round.
    pub fn set_settings(&self, settings: Settings) {
        self.settings.store(Arc::new(settings));
    }

    /// Reports a domain whose file is untracked, for the fetcher to fetch. Never
    /// blocks; a domain that is too long or a full queue is dropped and counted.
    pub fn discover(&self, kind: FileKind, domain: &str) {
        let mut item = Discovered {
            kind,
            len: 0,
            bytes: [0; MAX_DOMAIN_BYTES],
        };
        let queued = match item.bytes.get_mut(..domain.len()) {
            Some(bytes) => {
                bytes.copy_from_slice(domain.as_bytes());
                // Fits in `u8`: `MAX_DOMAIN_BYTES` is below 256 (limits.rs asserts it).
                item.len = domain.len() as u8;
                self.discovered.push(item).is_ok()
            }
            None => false,
        };
        if !queued {
            self.discoveries_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes every reported domain (the fetcher, each round).
    pub fn take_discovered(&self, mut f: impl FnMut(FileKind, &str)) {
        while let Some(item) = self.discovered.pop() {
            if let Ok(domain) = std::str::from_utf8(&item.bytes[..usize::from(item.len)]) {
                f(item.kind, domain);
            }
        }
    }

    /// What `/supply` and `bidderctl supply status` show, ages as of now on the
    /// fetcher's calendar (empty while no fetcher runs).
    pub fn status(&self) -> Vec<FileStatus> {
        let Some(clock) = self.clock.get() else {
            return Vec::new();
        };
        let now = clock.now_unix_ms();
        self.tracked
            .load()
            .iter()
            .map(|t| FileStatus {
                kind: t.kind,
                domain: t.domain.to_string(),
                source: t.source.to_string(),
                age_s: t.fetched_at_ms.map(|at| now.saturating_sub(at) / 1_000),
                entries: t.entries,
                last_error: t.last_error.as_deref().map(str::to_owned),
                next_fetch_in_s: t.next_fetch_ms.saturating_sub(now).div_ceil(1_000),
            })
            .collect()
    }

    /// The fetcher's calendar (its first start sets it).
    pub(super) fn set_clock(&self, clock: Clock) {
        let _ = self.clock.set(clock);
    }

    pub(super) fn set_tracked(&self, tracked: Vec<Tracked>) {
        self.tracked.store(Arc::new(tracked));
    }

    pub(super) fn count_fetch(&self, kind: FileKind, outcome: Outcome) {
        self.fetches[kind as usize][outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_untracked(&self) {
        self.untracked_over_limit.fetch_add(1, Ordering::Relaxed);
    }
}

impl Collect for SupplyStore {
    fn collect(&self, out: &mut PromText) {
        for kind in FileKind::ALL {
            for outcome in Outcome::ALL {
                out.counter(
                    "bidder_supply_fetches_total",
                    "ads.txt, app-ads.txt and sellers.json fetches, by kind and outcome (fetched, not_modified, failed).",
                    &[("kind", kind.name()), ("outcome", outcome.name())],
                    self.fetches[kind as usize][outcome as usize].load(Ordering::Relaxed),
                );
            }
        }
        let status = self.status();
        for kind in FileKind::ALL {
            let files = status.iter().filter(|s| s.kind == kind);
            let (mut usable, mut unavailable, mut oldest_s) = (0, 0, 0);
            for s in files {
                match s.age_s {
                    Some(age) => {
                        usable += 1;
                        oldest_s = oldest_s.max(age);
                    }
                    None => unavailable += 1,
                }
            }
            for (state, n) in [("usable", usable), ("unavailable", unavailable)] {
                out.gauge(
                    "bidder_supply_files",
                    "Tracked supply files by kind and state: usable (a good copy, maybe stale) or unavailable (never fetched, or every fetch failed).",
                    &[("kind", kind.name()), ("state", state)],
                    n,
                );
            }
            out.gauge(
                "bidder_supply_oldest_copy_age_seconds",
                "Age of the oldest usable copy of this kind, seconds (refreshes that fail let it grow).",
                &[("kind", kind.name())],
                i64::try_from(oldest_s).unwrap_or(i64::MAX),
            );
        }
        out.counter(
            "bidder_supply_discoveries_dropped_total",
            "Domains a worker reported while the discovery queue was full (reported again on a later request).",
            &[],
            self.discoveries_dropped.load(Ordering::Relaxed),
        );
        out.counter(
            "bidder_supply_untracked_total",
            "Reports of domains left untracked because [supply] max_files was reached.",
            &[],
            self.untracked_over_limit.load(Ordering::Relaxed),
        );
    }
}
