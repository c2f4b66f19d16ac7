//! What the control port's `/metrics` scrapes: every worker's [`WorkerMetrics`], the
//! engines' own counters through [`Collect`], and per campaign its budget and outcomes
//! (requests, bids, outbid, no-bids by reason, wins, clearing prices).
//!
//! Only the control thread (and start-up code) touches the registry's locks; workers
//! never do, so a scrape, however slow, cannot hold up a request.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::catalog::ivt::IvtKind;
use crate::catalog::Catalog;
use crate::decide::consent::StringKind;
use crate::decide::{CampaignTotals, DecisionStats, NoBidReason};
use crate::http::Status;
use crate::limits::MAX_PARTNERS;
use crate::metrics::{
    Collect, LatencyHistogram, PartnerCounters, PromText, WorkerMetrics, UNATTRIBUTED_PARTNER,
};
use crate::money::budget::Budgets;

/// Where the scrape finds decision counters: the bid service keeps one
/// [`DecisionStats`] per worker thread and creates them lazily, so the scrape asks for
/// the current list each time. Any `Fn() -> Vec<Arc<DecisionStats>>` will do, e.g.
/// `move || service.decision_stats()`.
pub trait DecisionSource: Send + Sync {
    /// Every worker's decision counters, summed by the scrape.
    fn decision_stats(&self) -> Vec<Arc<DecisionStats>>;
}

impl<F: Fn() -> Vec<Arc<DecisionStats>> + Send + Sync> DecisionSource for F {
    fn decision_stats(&self) -> Vec<Arc<DecisionStats>> {
        self()
    }
}

/// The catalog whose names label partner and campaign series, and its budgets.
struct Campaigns {
    catalog: Arc<Catalog>,
    budgets: Arc<Budgets>,
}

/// Everything `/metrics` shows. Shared as `Arc<Registry>` between start-up code, which
/// adds workers and collectors, reload, which swaps the catalog, and the control port.
#[derive(Default)]
pub struct Registry {
    workers: Mutex<Vec<Arc<WorkerMetrics>>>,
    collectors: Mutex<Vec<Arc<dyn Collect>>>,
    decisions: Mutex<Vec<Arc<dyn DecisionSource>>>,
    campaigns: Mutex<Option<Campaigns>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("workers", &lock(&self.workers).len())
            .field("collectors", &lock(&self.collectors).len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Metrics for one more worker, numbered in the order added. Hand the result to the
    /// engine (responses, latencies) and to that worker's service (partners, decisions).
    pub fn add_worker(&self) -> Arc<WorkerMetrics> {
        let mut workers = lock(&self.workers);
        let metrics = Arc::new(WorkerMetrics::new(workers.len()));
        workers.push(Arc::clone(&metrics));
        metrics
    }

    /// `n` workers' metrics at once, in worker order.
    pub fn add_workers(&self, n: usize) -> Vec<Arc<WorkerMetrics>> {
        (0..n).map(|_| self.add_worker()).collect()
    }

    /// Includes `collector` in every scrape from now on.
    pub fn register(&self, collector: Arc<dyn Collect>) {
        lock(&self.collectors).push(collector);
    }

    /// Includes the decision counters `source` lists in every scrape from now on.
    pub fn add_decision_source(&self, source: Arc<dyn DecisionSource>) {
        lock(&self.decisions).push(source);
    }

    /// Sets the catalog that names partners and campaigns, and the budgets to report;
    /// called at start and after each successful reload.
    pub fn set_catalog(&self, catalog: Arc<Catalog>, budgets: Arc<Budgets>) {
        *lock(&self.campaigns) = Some(Campaigns { catalog, budgets });
    }

    /// Renders a whole scrape.
    pub fn scrape(&self) -> String {
        let mut out = PromText::new();
        self.collect(&mut out);
        out.render()
    }

    /// Adds every sample to `out`, for callers that append their own (the control port).
    pub fn collect(&self, out: &mut PromText) {
        let collectors: Vec<Arc<dyn Collect>> = lock(&self.collectors).clone();
        for c in &collectors {
            c.collect(out);
        }
        let workers: Vec<Arc<WorkerMetrics>> = lock(&self.workers).clone();
        let campaigns = lock(&self.campaigns);
        let catalog = campaigns.as_ref().map(|c| &*c.catalog);
        collect_responses(&workers, out);
        collect_partners(&workers, catalog, out);
        let decisions: Vec<Arc<DecisionStats>> = lock(&self.decisions)
            .iter()
            .flat_map(|source| source.decision_stats())
            .collect();
        collect_decisions(&decisions, out);
        collect_latencies(&workers, out);
        if let Some(c) = campaigns.as_ref() {
            collect_budgets(&c.catalog, &c.budgets, out);
            collect_campaign_outcomes(&c.catalog, &c.budgets, &decisions, out);
        }
    }
}

fn collect_responses(workers: &[Arc<WorkerMetrics>], out: &mut PromText) {
    for status in Status::ALL {
        let total: u64 = workers.iter().map(|w| w.responses(status)).sum();
        let code = status.code().to_string();
        out.counter(
            "bidder_http_responses_total",
            "Responses on the bid port by HTTP status, all workers.",
            &[("status", &code)],
            total,
        );
    }
}

fn collect_partners(workers: &[Arc<WorkerMetrics>], catalog: Option<&Catalog>, out: &mut PromText) {
    let named = catalog.map_or(0, |c| c.partners.len().min(MAX_PARTNERS));
    let sum = |slot: Option<u16>, pick: fn(&PartnerCounters) -> u64| -> u64 {
        workers.iter().map(|w| pick(w.partner(slot))).sum()
    };
    let partners = (0..named)
        .map(|i| {
            let name = catalog.map_or("", |c| c.partners[i].name.as_str());
            (Some(i as u16), name)
        })
        .chain([(None, UNATTRIBUTED_PARTNER)]);
    for (slot, name) in partners {
        let labels = [("partner", name)];
        out.counter(
            "bidder_partner_requests_total",
            "Bid requests by partner.",
            &labels,
            sum(slot, |p| p.requests.get()),
        );
        out.counter(
            "bidder_partner_bids_total",
            "Bid requests answered with a bid, by partner.",
            &labels,
            sum(slot, |p| p.bids.get()),
        );
        out.counter(
            "bidder_partner_no_bids_total",
            "Bid requests answered without a bid, by partner.",
            &labels,
            sum(slot, |p| p.no_bids.get()),
        );
        out.counter(
            "bidder_partner_flatbuffers_answers_total",
            "Answers with a body (a bid or a no-bid reason) sent in FlatBuffers rather than \
             JSON, by partner.",
            &labels,
            sum(slot, |p| p.flatbuffers_answers.get()),
        );
        out.counter(
            "bidder_partner_source_mismatch_total",
            "Requests on the partner's bid path from outside its configured networks \
             (answered 403).",
            &labels,
            sum(slot, |p| p.source_mismatch.get()),
        );
        for kind in IvtKind::ALL {
            out.counter(
                "bidder_partner_ivt_total",
                "Bid requests detected as invalid traffic, by partner and kind (datacenter, \
                 blocklist, crawler, inconsistent_device).",
                &[("partner", name), ("kind", kind.name())],
                workers
                    .iter()
                    .map(|w| w.partner(slot).ivt[kind as usize].get())
                    .sum(),
            );
        }
        for (i, reason) in crate::decide::supply::REFUSALS.iter().enumerate() {
            out.counter(
                "bidder_partner_supply_refused_total",
                "Bid requests whose supply chain was refused for some campaign, by partner and \
                 reason (supply_chain_incomplete, unknown_seller, unauthorized_seller, \
                 supply_unverified).",
                &[("partner", name), ("reason", reason.name())],
                workers
                    .iter()
                    .map(|w| w.partner(slot).supply_refused[i].get())
                    .sum(),
            );
        }
    }
}

fn collect_decisions(stats: &[Arc<DecisionStats>], out: &mut PromText) {
    let sum = |pick: &dyn Fn(&DecisionStats) -> u64| -> u64 { stats.iter().map(|d| pick(d)).sum() };
    out.counter(
        "bidder_decision_requests_total",
        "Bid requests decided.",
        &[],
        sum(&|d| d.requests.get()),
    );
    out.counter(
        "bidder_decision_imps_total",
        "Impressions decided.",
        &[],
        sum(&|d| d.imps.get()),
    );
    out.counter(
        "bidder_decision_bids_total",
        "Bids made.",
        &[],
        sum(&|d| d.bids.get()),
    );
    out.counter(
        "bidder_decision_no_bid_requests_total",
        "Bid requests answered with no bid at all.",
        &[],
        sum(&|d| d.no_bid_requests.get()),
    );
    out.counter(
        "bidder_decision_candidates_total",
        "Candidate campaigns considered after the targeting index.",
        &[],
        sum(&|d| d.candidates.get()),
    );
    out.counter(
        "bidder_decision_deadline_missed_total",
        "Decisions that finished after their deadline (answered no-bid, budget released).",
        &[],
        sum(&|d| d.deadline_missed.get()),
    );
    let help = "Chosen bids not sent, their budget released: no_room (the response would \
                not fit the answer), ledger_full (the ledger inbox could not hold them all).";
    out.counter(
        "bidder_decision_bids_dropped_total",
        help,
        &[("cause", "no_room")],
        sum(&|d| d.bids_dropped_no_room.get()),
    );
    out.counter(
        "bidder_decision_bids_dropped_total",
        help,
        &[("cause", "ledger_full")],
        sum(&|d| d.bids_dropped_ledger_full.get()),
    );
    out.counter(
        "bidder_openrtb_imps_over_limit_total",
        "Imps past the per-request limit (limits::MAX_IMPS), not evaluated; the first ones are.",
        &[],
        sum(&|d| d.imps_over_limit.get()),
    );
    for kind in StringKind::ALL {
        out.counter(
            "bidder_consent_malformed_total",
            "Requests with a consent string (tcf, gpp, us_privacy) that does not decode: \
             no consent for campaigns that need it.",
            &[("kind", kind.name())],
            sum(&|d| d.consent_malformed[kind as usize].get()),
        );
    }
    out.counter(
        "bidder_consent_decodes_total",
        "Consent strings decoded: each a miss of the per-worker cache of decoded strings.",
        &[],
        sum(&|d| d.consent_decodes.get()),
    );
    out.counter(
        "bidder_ivt_user_agent_matches_total",
        "User agents matched against the invalid-traffic fragments: each a miss of the \
         per-worker cache of what an agent says.",
        &[],
        sum(&|d| d.user_agent_matches.get()),
    );
    out.counter(
        "bidder_supply_verdicts_computed_total",
        "Supply-chain verdicts computed from the files: each a miss of the per-worker \
         verdict cache.",
        &[],
        sum(&|d| d.supply_verdicts.get()),
    );
    for reason in NoBidReason::ALL {
        out.counter(
            "bidder_decision_no_bid_imps_total",
            "Impressions without a bid, by reason.",
            &[("reason", reason.name())],
            sum(&|d| d.no_bid_imps[reason as usize].get()),
        );
    }
}

fn collect_latencies(workers: &[Arc<WorkerMetrics>], out: &mut PromText) {
    let mut decision = LatencyHistogram::new();
    let mut total = LatencyHistogram::new();
    let mut skips = 0;
    for w in workers {
        w.with_published(|d, t| {
            decision.add(d);
            total.add(t);
        });
        skips += w.publish_counts().1;
    }
    out.latency_histogram(
        "bidder_decision_duration_seconds",
        "Time from a complete bid request to its bid or no-bid answer bytes (HTTP and decision), all workers.",
        &[],
        &decision,
    );
    out.latency_histogram(
        "bidder_request_duration_seconds",
        "Time from the read completing a bid request to its answer being written, all workers.",
        &[],
        &total,
    );
    out.counter(
        "bidder_latency_publish_skips_total",
        "Times a worker found the scrape holding its histograms and published later.",
        &[],
        skips,
    );
}

/// One series per campaign of the catalog, read from its budget slot.
/// What each partner's unanswered bids hold, and the bids its full share refused.
fn collect_partner_holds(catalog: &Catalog, budgets: &Budgets, out: &mut PromText) {
    for (i, partner) in catalog.partners.iter().enumerate() {
        let Ok(idx) = u16::try_from(i) else { break };
        let labels = [("partner", partner.name.as_str())];
        out.gauge(
            "bidder_partner_held_micros",
            "Budget this partner's bids hold while they wait for a notice or their horizon.",
            &labels,
            budgets.partner_held_micros(idx),
        );
        out.counter(
            "bidder_partner_hold_full_total",
            "Bids not made because the partner's bids held its max_held_micros already.",
            &labels,
            budgets.partner_hold_refusals(idx),
        );
    }
}

fn collect_budgets(catalog: &Catalog, budgets: &Budgets, out: &mut PromText) {
    collect_partner_holds(catalog, budgets, out);
    for campaign in &catalog.campaigns {
        if campaign.budget_slot >= budgets.len() {
            continue;
        }
        let s = budgets.snapshot(campaign.budget_slot);
        let labels = [("campaign", campaign.id.as_str())];
        out.gauge(
            "bidder_budget_daily_micros",
            "Daily budget, micros of the bidding currency.",
            &labels,
            s.daily_micros,
        );
        out.gauge(
            "bidder_budget_available_micros",
            "What a bid may still reserve: the least left of the day's, hour's and lifetime budget, micros; negative after a cut below spend.",
            &labels,
            s.available_micros,
        );
        out.gauge(
            "bidder_budget_period_start_seconds",
            "Start of the campaign's current budget day (local midnight in its time zone), Unix seconds.",
            &labels,
            i64::try_from(s.day_start_ms / 1_000).unwrap_or(i64::MAX),
        );
        out.gauge(
            "bidder_budget_previous_day_spent_micros",
            "Spent by bids made the budget day before, micros (late notices still land there).",
            &labels,
            s.previous_day_spent_micros,
        );
        if let Some(hourly) = s.hourly_micros {
            out.gauge(
                "bidder_budget_hourly_micros",
                "Hourly budget, micros.",
                &labels,
                hourly,
            );
        }
        out.gauge(
            "bidder_budget_hour_spent_micros",
            "Spent by bids made this budget hour, micros.",
            &labels,
            s.hour_spent_micros,
        );
        if let Some(lifetime) = s.lifetime_micros {
            out.gauge(
                "bidder_budget_lifetime_micros",
                "Lifetime budget, micros.",
                &labels,
                lifetime,
            );
        }
        out.gauge(
            "bidder_budget_lifetime_spent_micros",
            "Spent over the campaign's life as the ledger recorded it, micros.",
            &labels,
            s.lifetime_spent_micros,
        );
        out.gauge(
            "bidder_budget_reserved_micros",
            "Budget held by bids awaiting a notice, micros.",
            &labels,
            s.reserved_micros,
        );
        out.gauge(
            "bidder_budget_spent_micros",
            "Spent by bids made in the current budget day at clearing prices, micros.",
            &labels,
            s.spent_micros,
        );
        out.counter(
            "bidder_budget_overcharged_micros_total",
            "Clearing prices above our reservation, not charged to the budget, micros.",
            &labels,
            u64::try_from(s.overcharged_micros).unwrap_or(0),
        );
        if let Some(lease) = s.lease {
            out.gauge(
                "bidder_budget_lease_micros",
                "What the campaign's bids may hold in flight, as the spend journal recorded it, micros.",
                &labels,
                lease.lease_micros,
            );
            out.gauge(
                "bidder_budget_in_flight_micros",
                "What the campaign's bids hold of their lease now (out, or settled and not yet on disk), micros.",
                &labels,
                lease.in_flight_micros,
            );
        }
        out.gauge(
            "bidder_budget_breaker_tripped",
            "1 while the spend-rate breaker keeps the campaign from bidding (bidderctl campaign resume).",
            &labels,
            i64::from(s.breaker_tripped),
        );
        out.counter(
            "bidder_budget_refused_total",
            "Reservations refused for lack of budget.",
            &labels,
            s.refused,
        );
    }
}

/// One series per campaign of the catalog and outcome, summed over every worker. The
/// no-bid series are left out while zero: a campaign has 13 per-campaign reasons and a
/// book may have thousands of campaigns, and most pairs never happen.
fn collect_campaign_outcomes(
    catalog: &Catalog,
    budgets: &Budgets,
    decisions: &[Arc<DecisionStats>],
    out: &mut PromText,
) {
    let totals = CampaignTotals::of(decisions);
    for campaign in &catalog.campaigns {
        let f = totals.campaign(campaign.budget_slot);
        let labels = [("campaign", campaign.id.as_str())];
        out.counter(
            "bidder_campaign_requests_total",
            "Imps the campaign was evaluated for (the index let it through and its own checks ran).",
            &labels,
            f.requests,
        );
        out.counter(
            "bidder_campaign_bids_total",
            "Bids of the campaign that left in a response.",
            &labels,
            f.bids,
        );
        out.counter(
            "bidder_campaign_outbid_total",
            "Imps where the campaign could bid but another of ours bid higher.",
            &labels,
            f.outbid,
        );
        for reason in NoBidReason::PER_CAMPAIGN {
            let n = f.no_bid(reason);
            if n > 0 {
                out.counter(
                    "bidder_campaign_no_bids_total",
                    "Imps the campaign was evaluated for and did not bid on, by reason.",
                    &[
                        ("campaign", campaign.id.as_str()),
                        ("reason", reason.name()),
                    ],
                    n,
                );
            }
        }
        if campaign.budget_slot >= budgets.len() {
            continue;
        }
        let s = budgets.snapshot(campaign.budget_slot);
        out.counter(
            "bidder_campaign_wins_total",
            "Bids settled by a win or billing notice.",
            &labels,
            s.wins,
        );
        out.counter(
            "bidder_campaign_clearing_micros_total",
            "Sum of the clearing prices of the wins, micros per impression, each capped at the bid \
             price (the excess is in bidder_budget_overcharged_micros_total).",
            &labels,
            u64::try_from(s.clearing_micros).unwrap_or(0),
        );
    }
}
