//! The bidder's side of the strategy table the agent writes (`bidder_common::table`).
//!
//! * [`StrategyTable`] maps the file read-only when it exists and re-maps it when the
//!   agent re-creates it (new inode). A missing file means the configuration's
//!   defaults; a file that disappears or turns unreadable leaves the last good mapping
//!   in force — the agent dying must never change what the bidder bids.
//! * [`TableStrategy`] is the [`StrategySource`] of one catalog generation: each
//!   campaign's row position is kept in an atomic slot, so the hot path is an array
//!   index and a sequence-locked copy of five fields. Rows the agent appends later are
//!   matched to campaigns by the first read that notices them (see
//!   [`TableStrategy::campaign`]), not by a poll.
//!
//! The control-side thread that polls the file (a new table, partner limits, budget
//! overrides) and publishes the stats table is [`super::mirror`].
//!
//! Neither row values nor new rows need polling: a `strategy set` is visible to the
//! next bid as soon as the agent's write completes, whether it rewrote a row or added
//! one. Only a new file and values the bidder copies elsewhere (partner limits into
//! the limiter, budgets into [`Budgets`]) go through the poll.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bidder_common::table::segment::SegmentKey;
use bidder_common::table::shm::{file_id, FileId, OpenError, Table};
use bidder_common::table::strategy::{
    PartnerLimitValue, StrategyTable as Layout, BUDGET_AS_CONFIGURED, CAMPAIGN_PAUSED,
};
use rustc_hash::FxHashMap;

use crate::catalog::{Campaign, CampaignIdx, Catalog, Partner};
use crate::decide::strategy::{CampaignStrategy, StrategySource};
use crate::money::budget::Budgets;
use crate::money::PPM_ONE;

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
    /// A new file: every generation's [`TableStrategy`] must be rebuilt on it.
    pub remap: bool,
    /// Some row was written or added: partner limits and budgets may need copying.
    pub values: bool,
}

/// The strategy table file as the bidder sees it. Shared by the daemon (which builds
/// a [`TableStrategy`] per generation) and the [`Mirror`](super::mirror::Mirror)
/// (which polls it).
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

    /// Looks at the file: maps a new or re-created table, notices writes (new rows
    /// included). Never blocks on the agent (a `stat` and an atomic load when nothing
    /// changed).
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
        let generation = table.generation();
        if generation != state.generation {
            state.generation = generation;
            change.values = true;
        }
        change
    }

    /// The strategy source for `catalog`: the rows published so far are matched to
    /// campaigns here, later ones by the hot path.
    pub fn source_for(&self, catalog: &Catalog) -> Arc<dyn StrategySource> {
        let source = TableStrategy {
            table: self.mapped(),
            rows: catalog
                .campaigns
                .iter()
                .map(|_| AtomicU32::new(NO_ROW))
                .collect(),
            resolved: AtomicU32::new(0),
            by_id: catalog
                .campaigns
                .iter()
                .enumerate()
                .map(|(idx, c)| (c.id.clone(), idx))
                .collect(),
            default_shading_ppm: catalog.settings.default_shading_ppm,
            contended: Arc::clone(&self.contended),
        };
        if let Some(table) = &source.table {
            source.resolve_new_rows(table);
        }
        Arc::new(source)
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
///
/// Rows are found without the mirror: the agent only ever appends rows and never
/// re-keys one, so `rows[c]`, once set, stays right for this file. Whichever worker
/// first reads a campaign that has no row yet while the table has published rows
/// beyond [`TableStrategy::resolved`] matches those new rows' keys to campaigns and
/// fills their slots. Any number of workers may do that at once: they store the same
/// positions, so the race is harmless, and nothing on that path allocates or blocks.
pub struct TableStrategy {
    table: Option<Arc<StrategyFile>>,
    /// Row of each catalog campaign, or [`NO_ROW`]; set at most once per campaign
    /// (a corrupt file with a key twice could see either row stored, both valid).
    rows: Box<[AtomicU32]>,
    /// Table rows `0..resolved` have been matched to campaigns; only grows.
    resolved: AtomicU32,
    /// Catalog index by campaign id, to match the keys of new rows (built once per
    /// generation; read-only after).
    by_id: FxHashMap<String, CampaignIdx>,
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

    /// The row of campaign `idx` (or [`NO_ROW`]) once every row the table has
    /// published is matched: the hot path's check for rows added since the last
    /// match, two loads when there are none.
    #[inline]
    fn row_after_new_rows(&self, table: &StrategyFile, idx: CampaignIdx) -> u32 {
        // Relaxed: only a hint that there is work; `resolve_new_rows` Acquires it.
        let published = table
            .header()
            .campaigns_used
            .load(Ordering::Relaxed)
            .min(table.capacity().campaigns);
        // Acquire: pairs with the Release in `resolve_new_rows`, so if another worker
        // already matched the new rows, its stores into `rows` are visible below.
        if self.resolved.load(Ordering::Acquire) < published {
            self.resolve_new_rows(table);
        }
        self.rows[idx].load(Ordering::Acquire)
    }

    /// Matches rows published since the last match to catalog campaigns. Idempotent
    /// and safe to run on any number of threads at once; no allocation, no lock.
    #[cold]
    #[inline(never)]
    fn resolve_new_rows(&self, table: &StrategyFile) {
        // `campaigns()` Acquires `campaigns_used`, which the agent stores (Release)
        // after a new row's key and first value: every key below is complete.
        let published = table.campaigns();
        let from = self.resolved.load(Ordering::Acquire) as usize;
        for (row, r) in published.iter().enumerate().skip(from) {
            if let Some(&idx) = self.by_id.get(r.key.get().as_str()) {
                // Release: a reader that Acquires this position reads a row whose
                // publication (above) happened before.
                self.rows[idx].store(row as u32, Ordering::Release);
            }
        }
        // Release: a reader that sees the new count (Acquire) sees every store above.
        // `fetch_max`: a slower worker matching fewer rows never moves it back.
        self.resolved
            .fetch_max(published.len() as u32, Ordering::AcqRel);
    }
}

impl StrategySource for TableStrategy {
    /// The campaign's strategy from its row, its new row, or the configuration.
    ///
    /// Cost: a campaign with a row pays one atomic load for its position and the
    /// sequence-locked copy; one without pays two more loads (the table's row count
    /// and ours) and, only for the first read after the agent adds rows, the match of
    /// those rows (one hash lookup each).
    #[inline]
    fn campaign(&self, idx: CampaignIdx, campaign: &Campaign) -> CampaignStrategy {
        self.campaign_in(idx, campaign, SegmentKey::NONE)
    }

    /// As [`TableStrategy::campaign`], with the segment's shading when the row has
    /// one for it (up to `SEGMENTS_PER_CAMPAIGN` more loads inside the same read).
    #[inline]
    fn campaign_in(
        &self,
        idx: CampaignIdx,
        campaign: &Campaign,
        segment: SegmentKey,
    ) -> CampaignStrategy {
        let (Some(table), Some(slot)) = (self.table.as_ref(), self.rows.get(idx)) else {
            return self.defaults(campaign);
        };
        // Acquire: pairs with the Release store in `resolve_new_rows`.
        let mut row = slot.load(Ordering::Acquire);
        if row == NO_ROW {
            row = self.row_after_new_rows(table, idx);
        }
        // A row is only ever stored from the published rows of this file, which only
        // grows, so this finds it; a missing one means no row.
        let Some(row) = table.campaigns().get(row as usize) else {
            return self.defaults(campaign);
        };
        match row.cell.read(|p| p.pricing_for(segment.0)) {
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
