//! The control-side thread that keeps the bidder in step with the strategy table (a
//! new file, partner limits, budget overrides) and publishes the stats table on a
//! timer. It sits above both tables: it reads [`StrategyTable`] and writes through
//! [`StatsPublisher`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::stats::{StatsInputs, StatsPublisher};
use super::strategy::StrategyTable;
use crate::clock::monotonic_now;
use crate::money::budget::Budgets;

/// What the mirror thread needs from the daemon, which owns generations.
pub struct MirrorParts {
    pub table: Arc<StrategyTable>,
    /// Swaps in a generation with the same catalog and a fresh [`TableStrategy`](super::strategy::TableStrategy) on
    /// a new file (new rows need none: the hot path finds them).
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
    let mut next_stats = monotonic_now();
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
        if monotonic_now() >= next_stats {
            next_stats = monotonic_now() + stats_every;
            if let Some(stats) = parts.stats.as_mut() {
                let mut inputs = (parts.inputs)();
                inputs.strategy_contended = parts.table.contended();
                stats.publish(&inputs, &parts.table);
            }
        }
        std::thread::sleep(poll);
    }
}
