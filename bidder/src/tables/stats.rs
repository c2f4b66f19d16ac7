//! The stats table the bidder writes for the agent (`bidder_common::table::stats`):
//! the campaigns and partners of the catalog in force with their configured limits,
//! budget figures, per-campaign outcomes (requests, bids, outbid, no-bids by reason
//! from the workers' counters; wins and clearing prices from the budgets the ledger
//! settles into), per-partner traffic and the no-bid totals by reason.
//!
//! Written by the [`Mirror`](crate::tables::strategy::Mirror) thread on a timer, never
//! by the workers: the hot path only bumps its own single-writer counters, and this
//! publisher sums them. The bidder is the single writer (file lock); a second bidder
//! on the same path runs without publishing and says so.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use bidder_common::table::shm::{OnMismatch, OpenError, Writer};
use bidder_common::table::stats::{
    CampaignStatsValue, PartnerStatsValue, StatsTable, TotalsValue, BREAKER_TRIPPED,
    CONFIG_ENABLED, ENABLED, FEEDBACK_BUCKETS, IN_CATALOG, MAX_CAMPAIGN_NO_BID_REASONS,
    MAX_NO_BID_REASONS, NO_LIMIT,
};
use bidder_common::table::Capacity;

use crate::bid::gate::Generation;
use crate::catalog::{Catalog, PartnerIdx};
use crate::clock::Clock;
use crate::decide::{CampaignTotals, DecisionStats, NoBidReason};
use crate::metrics::WorkerMetrics;
use crate::money::budget::Budgets;
use crate::tables::strategy::StrategyTable;

const _: () = assert!(NoBidReason::COUNT <= MAX_NO_BID_REASONS);
const _: () = assert!(NoBidReason::PER_CAMPAIGN.len() <= MAX_CAMPAIGN_NO_BID_REASONS);

/// What one publication reads.
pub struct StatsInputs {
    pub generation: Arc<Generation>,
    pub budgets: Arc<Budgets>,
    /// Every worker's decision counters.
    pub decisions: Vec<Arc<DecisionStats>>,
    /// Every worker's per-partner counters.
    pub workers: Vec<Arc<WorkerMetrics>>,
    /// Strategy reads that failed closed.
    pub strategy_contended: u64,
}

/// The stats table's writer.
pub struct StatsPublisher {
    writer: Writer<StatsTable>,
    /// Rows written with [`IN_CATALOG`] last time, to clear the flag of rows whose
    /// campaign or partner a reload removed.
    in_catalog: HashSet<String>,
    /// Campaigns or partners past the table's capacity, already logged.
    overflow_logged: bool,
    /// Publications so far (the totals carry it).
    publications: u64,
}

impl StatsPublisher {
    /// Takes the stats table at `path` (replacing one of another layout or capacity:
    /// its counters are rebuilt from the running bidder anyway).
    /// `clock` stamps the table's heartbeats.
    pub fn open(path: &Path, cap: Capacity, clock: Clock) -> Result<StatsPublisher, OpenError> {
        let mut writer = Writer::<StatsTable>::open(path, cap, OnMismatch::Recreate, clock)?;
        writer.put_reason_names(NoBidReason::ALL.iter().map(|r| r.name()));
        writer.put_campaign_reason_names(NoBidReason::PER_CAMPAIGN.iter().map(|r| r.name()));
        Ok(StatsPublisher {
            writer,
            in_catalog: HashSet::new(),
            overflow_logged: false,
            publications: 0,
        })
    }

    /// Rewrites every row from the running bidder's counters.
    pub fn publish(&mut self, inputs: &StatsInputs, strategy: &StrategyTable) {
        let catalog = &inputs.generation.bidding.catalog;
        let mut now_in = HashSet::with_capacity(catalog.campaigns.len() + catalog.partners.len());
        let outcomes = CampaignTotals::of(&inputs.decisions);
        let mut overflow = self.campaigns(catalog, &inputs.budgets, &outcomes, &mut now_in);
        overflow |= self.partners(catalog, &inputs.workers, strategy, &mut now_in);
        self.retire(&now_in);
        self.in_catalog = now_in;
        self.publications += 1;
        let mut totals = totals(inputs);
        totals.publications = self.publications;
        self.writer.put_totals(&totals);
        self.writer.heartbeat();
        if overflow && !self.overflow_logged {
            self.overflow_logged = true;
            tracing::warn!("stats table full: raise strategy.stats_*_capacity to report every campaign and partner");
        }
    }

    fn campaigns(
        &mut self,
        catalog: &Catalog,
        budgets: &Budgets,
        outcomes: &CampaignTotals,
        now_in: &mut HashSet<String>,
    ) -> bool {
        let mut overflow = false;
        for c in &catalog.campaigns {
            if c.budget_slot >= budgets.len() {
                continue;
            }
            let b = budgets.snapshot(c.budget_slot);
            let o = outcomes.campaign(c.budget_slot);
            let feedback = budgets.feedback().snapshot(c.budget_slot);
            let mut no_bids = [0; MAX_CAMPAIGN_NO_BID_REASONS];
            no_bids[..o.no_bids.len()].copy_from_slice(&o.no_bids);
            let flags = if b.breaker_tripped {
                IN_CATALOG | BREAKER_TRIPPED
            } else {
                IN_CATALOG
            };
            let value = CampaignStatsValue {
                flags,
                default_shading_ppm: catalog.settings.default_shading_ppm,
                max_bid_cpm_micros: c.max_bid_cpm_micros,
                base_cpm_micros: c.base_cpm_micros,
                config_daily_budget_micros: c.daily_budget_micros,
                daily_budget_micros: b.daily_micros,
                available_micros: b.available_micros,
                reserved_micros: b.reserved_micros,
                spent_micros: b.spent_micros,
                overcharged_micros: b.overcharged_micros,
                budget_refusals: b.refused,
                requests: o.requests,
                bids: o.bids,
                outbid: o.outbid,
                wins: b.wins,
                clearing_micros: b.clearing_micros,
                no_bids,
                day_start_ms: b.day_start_ms,
                hour_start_ms: b.hour_start_ms,
                previous_day_spent_micros: b.previous_day_spent_micros,
                hourly_budget_micros: b.hourly_micros.unwrap_or(NO_LIMIT),
                hour_spent_micros: b.hour_spent_micros,
                lifetime_budget_micros: b.lifetime_micros.unwrap_or(NO_LIMIT),
                lifetime_spent_micros: b.lifetime_spent_micros,
                feedback_reference_cpm_micros: feedback.map_or(0, |f| f.reference_cpm_micros),
                min_to_win: feedback.map_or([0; FEEDBACK_BUCKETS], |f| f.min_to_win),
                won_at: feedback.map_or([0; FEEDBACK_BUCKETS], |f| f.won_at),
                lost_at: feedback.map_or([0; FEEDBACK_BUCKETS], |f| f.lost_at),
                segments: feedback.map_or(Default::default(), |f| f.segments),
                checksum: 0,
            }
            .sealed();
            match self.writer.put_campaign(&c.id, &value) {
                Ok(_) => {
                    now_in.insert(key("c", &c.id));
                }
                Err(_) => overflow = true,
            }
        }
        overflow
    }

    fn partners(
        &mut self,
        catalog: &Catalog,
        workers: &[Arc<WorkerMetrics>],
        strategy: &StrategyTable,
        now_in: &mut HashSet<String>,
    ) -> bool {
        let mut overflow = false;
        for (i, p) in catalog.partners.iter().enumerate() {
            let idx = Some(i as PartnerIdx);
            let sum = |f: fn(&crate::metrics::PartnerCounters) -> u64| -> u64 {
                workers.iter().map(|w| f(w.partner(idx))).sum()
            };
            let configured = strategy.configured_partner(&p.name);
            let (config_qps, config_burst, config_enabled) = configured
                .map_or((p.qps_limit, p.burst, p.enabled), |c| {
                    (c.qps_limit, c.burst, c.enabled)
                });
            let mut flags = IN_CATALOG;
            if config_enabled {
                flags |= CONFIG_ENABLED;
            }
            if p.enabled {
                flags |= ENABLED;
            }
            let value = PartnerStatsValue::new(
                flags,
                config_qps,
                config_burst,
                p.qps_limit,
                p.burst,
                sum(|c| c.requests.get()),
                sum(|c| c.bids.get()),
                sum(|c| c.no_bids.get()),
            )
            .sealed();
            match self.writer.put_partner(&p.name, &value) {
                Ok(_) => {
                    now_in.insert(key("p", &p.name));
                }
                Err(_) => overflow = true,
            }
        }
        overflow
    }

    /// Clears [`IN_CATALOG`] on rows of campaigns and partners no longer configured.
    fn retire(&mut self, now_in: &HashSet<String>) {
        for gone in self.in_catalog.difference(now_in) {
            let (kind, name) = gone.split_at(1);
            let table = self.writer.table();
            if kind == "c" {
                let Some(row) = self.writer.campaign_row(name) else {
                    continue;
                };
                let Ok(mut v) = table.campaigns()[row].load() else {
                    continue;
                };
                v.flags &= !IN_CATALOG;
                let _ = self.writer.put_campaign(name, &v.sealed());
            } else {
                let Some(row) = self.writer.partner_row(name) else {
                    continue;
                };
                let Ok(mut v) = table.partners()[row].load() else {
                    continue;
                };
                v.flags &= !(IN_CATALOG | ENABLED);
                let _ = self.writer.put_partner(name, &v.sealed());
            }
        }
    }
}

/// One set holds campaign ids and partner names apart.
fn key(kind: &str, name: &str) -> String {
    format!("{kind}{name}")
}

fn totals(inputs: &StatsInputs) -> TotalsValue {
    let mut t = TotalsValue {
        catalog_generation: inputs.generation.number,
        strategy_contended: inputs.strategy_contended,
        ..TotalsValue::default()
    };
    for d in &inputs.decisions {
        t.requests += d.requests.get();
        t.imps += d.imps.get();
        t.bids += d.bids.get();
        t.no_bid_requests += d.no_bid_requests.get();
        t.deadline_missed += d.deadline_missed.get();
        for (sum, c) in t.no_bid_imps.iter_mut().zip(&d.no_bid_imps) {
            *sum += c.get();
        }
    }
    t.sealed()
}
