//! The bidder's side of the strategy table the agent writes (`bidder_common::table`).
//!
//! * [`StrategyTable`] maps the file read-only when it exists and re-maps it when the
//!   agent re-creates it (new inode). A missing file means the configuration's
//!   defaults; a file that disappears or turns unreadable leaves the last good mapping
//!   in force — the agent dying must never change what the bidder bids.
//! * [`TableStrategy`] is the [`StrategySource`] of one catalog generation: campaign
//!   indices are mapped to table rows once, when the generation is built, so the hot
//!   path is an array index and a sequence-locked copy of five fields.
//! * [`Mirror`] is the control-side thread that polls the file (new table, new rows,
//!   partner limits, budget overrides) and publishes the stats table.
//!
//! Row *values* need no polling: a `strategy set` is visible to the next bid as soon
//! as the agent's write completes. Only structure changes (a new row, a new file) and
//! values the bidder copies elsewhere (partner limits into the limiter, budgets into
//! [`Budgets`]) go through the poll.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bidder_common::table::shm::{file_id, FileId, OpenError, Table};
use bidder_common::table::strategy::{
    PartnerLimitValue, StrategyTable as Layout, BUDGET_AS_CONFIGURED, CAMPAIGN_PAUSED,
};

use crate::budget::Budgets;
use crate::catalog::{Campaign, CampaignIdx, Catalog, Partner};
use crate::stats_table::{StatsInputs, StatsPublisher};
use crate::strategy::{CampaignStrategy, StrategySource, PPM_ONE};

/// Row index meaning "this campaign has no row: use the configuration's defaults".
const NO_ROW: u32 = u32::MAX;

type StrategyFile = Table<Layout>;

/// A partner's limits as the configuration has them, kept when a table row overrides
/// them so the stats table can show both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartnerLimits {
    pub qps_limit: u32,
    pub burst: u32,
    pub enabled: bool,
}

/// What [`StrategyTable::poll`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Change {
    /// A new file or new rows: every generation's row map must be rebuilt.
    pub remap: bool,
    /// Some row was rewritten: partner limits and budgets may need copying.
    pub values: bool,
}

/// The strategy table file as the bidder sees it. Shared by the daemon (which builds
/// a [`TableStrategy`] per generation) and the [`Mirror`] (which polls it).
pub struct StrategyTable {
    path: PathBuf,
    state: Mutex<Mapped>,
    /// Reads that failed closed (see [`TableStrategy`]); reported in the stats table.
    contended: Arc<AtomicU64>,
    /// Configured limits of partners a row overrides, by name.
    configured_partners: Mutex<HashMap<String, PartnerLimits>>,
}

#[derive(Default)]
struct Mapped {
    table: Option<Arc<StrategyFile>>,
    /// The file last looked at (mapped or refused), to act once per new file.
    seen: Option<FileId>,
    campaigns_used: usize,
    generation: u64,
}

impl StrategyTable {
    /// Maps the table at `path` if there is one; otherwise the bidder runs on the
    /// configuration until [`StrategyTable::poll`] finds it.
    pub fn open(path: &Path) -> StrategyTable {
        let table = StrategyTable {
            path: path.to_path_buf(),
            state: Mutex::new(Mapped::default()),
            contended: Arc::new(AtomicU64::new(0)),
            configured_partners: Mutex::new(HashMap::new()),
        };
        table.poll();
        table
    }

    /// The mapping in force, if any.
    pub fn mapped(&self) -> Option<Arc<StrategyFile>> {
        self.lock().table.clone()
    }

    /// Hot-path reads that failed closed so far.
    pub fn contended(&self) -> u64 {
        self.contended.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Mapped> {
        self.state.lock().expect("strategy table state poisoned")
    }

    /// Looks at the file: maps a new or re-created table, notices new rows and writes.
    /// Never blocks on the agent (a `stat` and two atomic loads when nothing changed).
    pub fn poll(&self) -> Change {
        let mut state = self.lock();
        let mut change = Change::default();
        let now = file_id(&self.path);
        if now.is_some() && now != state.seen {
            state.seen = now;
            match StrategyFile::open_read(&self.path) {
                Ok(table) => {
                    tracing::info!(path = %self.path.display(), "strategy table mapped");
                    state.table = Some(Arc::new(table));
                    state.campaigns_used = 0;
                    state.generation = 0;
                    change.remap = true;
                }
                // Keep whatever was in force; say why once per file.
                Err(OpenError::Missing { .. }) => state.seen = None,
                Err(e) => tracing::error!("strategy table refused, keeping the last good one: {e}"),
            }
        }
        let Some(table) = state.table.clone() else {
            return change;
        };
        let used = table.campaigns().len();
        if used != state.campaigns_used {
            state.campaigns_used = used;
            change.remap = true;
        }
        let generation = table.generation();
        if generation != state.generation {
            state.generation = generation;
            change.values = true;
        }
        change
    }

    /// The strategy source for `catalog`: each campaign's row found once, here.
    pub fn source_for(&self, catalog: &Catalog) -> Arc<dyn StrategySource> {
        let table = self.mapped();
        let rows: Box<[u32]> = match &table {
            None => vec![NO_ROW; catalog.campaigns.len()].into_boxed_slice(),
            Some(t) => {
                let by_key = row_index(t.campaigns().iter().map(|r| r.key.get()));
                catalog
                    .campaigns
                    .iter()
                    .map(|c| by_key.get(c.id.as_str()).copied().unwrap_or(NO_ROW))
                    .collect()
            }
        };
        Arc::new(TableStrategy {
            table,
            rows,
            default_shading_ppm: catalog.settings.default_shading_ppm,
            contended: Arc::clone(&self.contended),
        })
    }

    /// Partner rows of the table, by name (unreadable rows left out).
    pub fn partner_rows(&self) -> HashMap<String, PartnerLimitValue> {
        let Some(table) = self.mapped() else {
            return HashMap::new();
        };
        table
            .partners()
            .iter()
            .filter_map(|r| Some((r.key.get().as_str().to_string(), r.load().ok()?)))
            .collect()
    }

    /// Replaces the configured limits of `partners` that have a table row, keeping the
    /// configured ones for [`StrategyTable::configured_partner`].
    pub fn apply_partner_overrides(&self, partners: &mut [Partner]) {
        let rows = self.partner_rows();
        let mut configured = self
            .configured_partners
            .lock()
            .expect("partner limits poisoned");
        configured.clear();
        for p in partners.iter_mut() {
            let Some(row) = rows.get(&p.name) else {
                continue;
            };
            configured.insert(
                p.name.clone(),
                PartnerLimits {
                    qps_limit: p.qps_limit,
                    burst: p.burst,
                    enabled: p.enabled,
                },
            );
            p.qps_limit = row.qps_limit;
            p.burst = row.burst;
            p.enabled = row.enabled();
        }
    }

    /// The configured limits of a partner whose limits a row overrides.
    pub fn configured_partner(&self, name: &str) -> Option<PartnerLimits> {
        let configured = self
            .configured_partners
            .lock()
            .expect("partner limits poisoned");
        configured.get(name).copied()
    }

    /// Sets the daily budget of every catalog campaign that has a row: the row's
    /// override, or the configured budget when the row says "as configured".
    pub fn apply_budget_overrides(&self, catalog: &Catalog, budgets: &Budgets) {
        let Some(table) = self.mapped() else {
            return;
        };
        let by_key = row_index(table.campaigns().iter().map(|r| r.key.get()));
        for c in &catalog.campaigns {
            let Some(&row) = by_key.get(c.id.as_str()) else {
                continue;
            };
            let Ok(budget) = table.campaigns()[row as usize]
                .cell
                .read(|p| p.daily_budget_micros.load(Ordering::Relaxed))
            else {
                continue;
            };
            let target = if budget == BUDGET_AS_CONFIGURED || budget < 0 {
                c.daily_budget_micros
            } else {
                budget
            };
            if c.budget_slot < budgets.len()
                && budgets.snapshot(c.budget_slot).daily_micros != target
            {
                budgets.set_daily(c.budget_slot, target);
            }
        }
    }
}

fn row_index(keys: impl Iterator<Item = bidder_common::table::KeyBuf>) -> HashMap<String, u32> {
    keys.enumerate()
        .map(|(i, k)| (k.as_str().to_string(), i as u32))
        .collect()
}

/// One generation's view of the strategy table.
///
/// A campaign without a row bids on the configuration (margin ×1, full pace, the
/// configured shading, its own ceiling). A row the writer rewrote faster than we could
/// copy it [`READ_ATTEMPTS`](bidder_common::table::cell::READ_ATTEMPTS) times in a row
/// makes the campaign sit this request out (paused): failing closed, counted.
pub struct TableStrategy {
    table: Option<Arc<StrategyFile>>,
    /// Row of each catalog campaign, or [`NO_ROW`].
    rows: Box<[u32]>,
    default_shading_ppm: u32,
    contended: Arc<AtomicU64>,
}

impl TableStrategy {
    fn defaults(&self, campaign: &Campaign) -> CampaignStrategy {
        CampaignStrategy {
            margin_ppm: PPM_ONE,
            max_cpm_micros: campaign.max_bid_cpm_micros,
            pacing_ppm: PPM_ONE,
            shading_ppm: self.default_shading_ppm,
            paused: false,
        }
    }
}

impl StrategySource for TableStrategy {
    #[inline]
    fn campaign(&self, idx: CampaignIdx, campaign: &Campaign) -> CampaignStrategy {
        let row = self.rows.get(idx).copied().unwrap_or(NO_ROW);
        let Some(table) = self.table.as_ref().filter(|_| row != NO_ROW) else {
            return self.defaults(campaign);
        };
        // The row exists: `rows` was built from rows published in this file, which
        // only ever grows.
        let Some(row) = table.campaigns().get(row as usize) else {
            return self.defaults(campaign);
        };
        match row.cell.read(|p| p.pricing()) {
            Ok(p) => CampaignStrategy {
                margin_ppm: p.margin_ppm,
                max_cpm_micros: p.max_cpm_micros,
                pacing_ppm: p.pacing_ppm,
                shading_ppm: p.shading_ppm,
                paused: p.flags & CAMPAIGN_PAUSED != 0,
            },
            Err(_) => {
                self.contended.fetch_add(1, Ordering::Relaxed);
                CampaignStrategy {
                    paused: true,
                    ..self.defaults(campaign)
                }
            }
        }
    }
}

/// What the mirror thread needs from the daemon, which owns generations.
pub struct MirrorParts {
    pub table: Arc<StrategyTable>,
    /// Swaps in a generation with the same catalog and a fresh [`TableStrategy`]
    /// (new rows or a new file).
    pub refresh_strategy: Box<dyn Fn() + Send>,
    /// Recompiles the catalog with the partner rows applied and swaps it in.
    pub rebuild_catalog: Box<dyn Fn() + Send>,
    /// The catalog in force and the budgets, for budget overrides and stats.
    pub inputs: Box<dyn Fn() -> StatsInputs + Send>,
    pub budgets: Arc<Budgets>,
    pub stats: Option<StatsPublisher>,
    pub poll_interval_ms: u64,
    pub stats_interval_ms: u64,
}

/// The control-side thread that keeps the bidder in step with the strategy table and
/// publishes the stats table.
pub struct Mirror {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Mirror {
    pub fn start(parts: MirrorParts) -> std::io::Result<Mirror> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("strategy-mirror".into())
            .spawn({
                let stop = Arc::clone(&stop);
                move || run(parts, &stop)
            })?;
        Ok(Mirror {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread (after at most one poll interval) and waits for it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(mut parts: MirrorParts, stop: &AtomicBool) {
    let poll = Duration::from_millis(parts.poll_interval_ms);
    let stats_every = Duration::from_millis(parts.stats_interval_ms);
    let mut partners = parts.table.partner_rows();
    let mut next_stats = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let change = parts.table.poll();
        let now_partners = if change.values || change.remap {
            parts.table.partner_rows()
        } else {
            partners.clone()
        };
        if now_partners != partners {
            partners = now_partners;
            // The rebuild also maps rows and applies budgets.
            (parts.rebuild_catalog)();
        } else {
            if change.remap {
                (parts.refresh_strategy)();
            }
            if change.values || change.remap {
                let inputs = (parts.inputs)();
                parts
                    .table
                    .apply_budget_overrides(&inputs.generation.bidding.catalog, &parts.budgets);
            }
        }
        if Instant::now() >= next_stats {
            next_stats = Instant::now() + stats_every;
            if let Some(stats) = parts.stats.as_mut() {
                let mut inputs = (parts.inputs)();
                inputs.strategy_contended = parts.table.contended();
                stats.publish(&inputs, &parts.table);
            }
        }
        std::thread::sleep(poll);
    }
}
