//! Fleet mode: hosts share each campaign's daily budget through Redis, in leases.
//!
//! Every host bids only on its *fleet room* (see `money/budget.rs`): what the store
//! granted it for the day, less what it returned, less what its bids hold or spent. The
//! bid path never calls Redis; the control thread runs [`run`], which every
//! `renew_interval_ms` looks at each campaign's lease ([`lease::HostLease`]) and calls
//! the store ([`store::Store`]) when the room is below half its target, when spend is
//! due to be reported, or to give back room the host does not need. A lease's target is
//! the host's spend over `lease_spend_ms`, at least `min_lease_bids` impressions at the
//! campaign's max bid; the store grants at most a quarter of what is left over the
//! hosts active in the last few seconds (never less than the floor while that much is
//! left), so the last of a budget goes out in small pieces.
//!
//! **Overspend bound.** While Redis keeps what it acknowledged, the fleet never spends
//! more than a campaign's daily budget B. Proof: for each host h the store counts
//! `g_h` granted and `r_h` returned, and grants only while `Σ (g_h − r_h) ≤ B` after the
//! grant. A host adds to its room only what a reply says the store granted it (so its
//! own count of grants is at most `g_h`), and takes room back out of reach of its bids
//! before it reports a return (so its count of returns is at least `r_h`). Its bids
//! take room by compare-and-swap, never below zero, so what host h's bids hold or spent
//! is at most `g_h − r_h`; summed over hosts, at most B. If Redis loses acknowledged
//! writes (a failover, a restart without persistence), the excess is at most the grants
//! it lost: every call re-sends the host's absolute counters (the store keeps the
//! larger), and a store that lost everything (no epoch) grants nothing for
//! `learning_ms` while the hosts re-report (a host holding a grant calls at least every
//! half `learning_ms`). Two kinds of money are charged past a host's room, which then
//! owes them to its next grants: bids out when it restarted (held back as in doubt:
//! they were made under grants the store counts) and wins notified after their
//! reservation expired (spent either way; the bound above holds for every bid whose
//! notice comes within `reservation_ttl_ms`).
//!
//! **Frequency caps.** A win that counts toward a capped campaign is shared: the host
//! sends its own absolute count of that user's impressions for the cap's period (the
//! store keeps the larger per host, so a retry or a restart's recovered counts add
//! nothing twice), gets the fleet's sum back, and publishes it on a stream every host
//! reads each `renew_interval_ms`, raising its local count to it. The bid path reads
//! only the local table. So a host learns of another's impressions within one tick of
//! each (`renew_interval_ms` plus two Redis round trips): **a user sees at most the cap
//! plus the wins of bids made for them on other hosts within that lag** (and, as on one
//! host, plus bids still out when the cap was reached). A restarted host reads the last
//! hour of the stream; counts older than that reach it only with the user's next win.
//!
//! **Failure.** A call that fails or times out changes nothing on this host; the host
//! keeps bidding on the room it holds, then no-bids with `budget_unavailable` (fail
//! closed). No host takes another's lease: a host that dies keeps its grant until the
//! day ends (it comes back with its spend from its ledger and re-reports it first).
//! Transitions (store reachable or not, learning, a new epoch) are log lines and
//! metrics.

pub mod lease;
pub mod store;

#[cfg(test)]
mod model;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::Clock;
use crate::config::Config;
use crate::metrics::{Collect, PromText};
use crate::money::budget::{BudgetSlot, Budgets, SharedImpression};
use crate::money::impression_cost_micros;
use lease::{HostLease, Sizing};
use store::{Store, StoreSettings};

/// A host that called the store within this many renew intervals counts as active.
const ACTIVE_RENEW_INTERVALS: u64 = 30;
/// The day before keeps being reported (late notices settle into it) this long after
/// it ended: the longest reservation TTL.
const CLOSING_DAY_MS: u64 = 3_600_000;
/// On shutdown, the last call (returning what is free) gets this long.
const SHUTDOWN_SYNC_MS: u64 = 500;
/// Users' counts shared per tick at most (the rest wait for the next).
const SHARED_PER_TICK: usize = 4_096;
/// A host starting reads the frequency stream from this long ago.
const FREQUENCY_CATCH_UP_MS: u64 = 3_600_000;
/// Own counts of periods that ended are dropped this often.
const FREQUENCY_PRUNE_MS: u64 = 60_000;

/// Fleet mode's settings, from `[fleet]` and `bidding.host_id`.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub store: StoreSettings,
    pub renew_interval_ms: u64,
    pub lease_spend_ms: u64,
    pub min_lease_bids: u32,
    pub report_interval_ms: u64,
}

impl Fleet {
    /// `None` without a `[fleet]` section.
    pub fn from_config(config: &Config) -> Option<Fleet> {
        let f = config.fleet.as_ref()?;
        Some(Fleet {
            store: StoreSettings {
                redis_urls: f.redis_url.urls(),
                cluster: matches!(f.redis_url, crate::config::RedisUrl::Cluster(_)),
                tls_ca_file: f.tls_ca_file.as_ref().map(|p| config.relative_to_file(p)),
                key_prefix: f.key_prefix.clone(),
                host: format!("h{}", config.bidding.host_id),
                response_timeout_ms: f.response_timeout_ms,
                connect_timeout_ms: f.connect_timeout_ms,
                learning_ms: f.learning_ms,
                active_ms: f.renew_interval_ms.max(f.report_interval_ms) * ACTIVE_RENEW_INTERVALS,
            },
            renew_interval_ms: f.renew_interval_ms,
            lease_spend_ms: f.lease_spend_ms,
            min_lease_bids: f.min_lease_bids,
            report_interval_ms: f.report_interval_ms,
        })
    }

    fn sizing(&self, budgets: &Budgets, slot: BudgetSlot) -> Sizing {
        let max_bid = budgets
            .feedback()
            .reference_cpm_micros(slot)
            .unwrap_or(0)
            .max(0);
        Sizing {
            lease_spend_ms: self.lease_spend_ms,
            floor_micros: impression_cost_micros(max_bid)
                .saturating_mul(i64::from(self.min_lease_bids))
                .max(1),
            report_interval_ms: self.report_interval_ms,
            heartbeat_ms: self.store.learning_ms / 2,
        }
    }
}

/// What the fleet task did, for `/metrics`.
#[derive(Debug, Default)]
pub struct FleetStatus {
    up: AtomicBool,
    /// A call has completed or failed since start (the first outcome is logged too).
    known: AtomicBool,
    learning: AtomicBool,
    syncs_ok: AtomicU64,
    syncs_failed: AtomicU64,
    granted_micros: AtomicI64,
    returned_micros: AtomicI64,
    epochs_seen: AtomicU64,
    impressions_shared: AtomicU64,
    impressions_observed: AtomicU64,
}

impl FleetStatus {
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Marks the store reachable or not; logs the change.
    fn set_up(&self, up: bool, why: &str) {
        let first = !self.known.swap(true, Ordering::AcqRel);
        if self.up.swap(up, Ordering::AcqRel) != up || first {
            if up {
                tracing::info!("fleet store reachable: leases renew again");
            } else {
                tracing::warn!(
                    error = why,
                    "fleet store unreachable: bidding on the leases held, then budget_unavailable"
                );
            }
        }
    }

    fn set_learning(&self, learning: bool) {
        if self.learning.swap(learning, Ordering::AcqRel) != learning {
            if learning {
                tracing::warn!("fleet store is learning (new epoch): no grants until the hosts have re-reported");
            } else {
                tracing::info!("fleet store done learning: grants resume");
            }
        }
    }
}

impl Collect for FleetStatus {
    fn collect(&self, out: &mut PromText) {
        out.gauge(
            "bidder_fleet_store_up",
            "1 while the last call to the fleet store (Redis) succeeded.",
            &[],
            i64::from(self.is_up()),
        );
        out.gauge(
            "bidder_fleet_store_learning",
            "1 while the fleet store grants nothing because it lost its state and hosts re-report.",
            &[],
            i64::from(self.learning.load(Ordering::Acquire)),
        );
        for (outcome, n) in [("ok", &self.syncs_ok), ("failed", &self.syncs_failed)] {
            out.counter(
                "bidder_fleet_syncs_total",
                "Calls to the fleet store by outcome (failed: an error or no answer in time; outcome unknown).",
                &[("outcome", outcome)],
                n.load(Ordering::Relaxed),
            );
        }
        out.counter(
            "bidder_fleet_granted_micros_total",
            "Budget the fleet store granted this host, micros.",
            &[],
            self.granted_micros.load(Ordering::Relaxed).max(0) as u64,
        );
        out.counter(
            "bidder_fleet_returned_micros_total",
            "Budget this host gave back to the fleet store, micros.",
            &[],
            self.returned_micros.load(Ordering::Relaxed).max(0) as u64,
        );
        out.counter(
            "bidder_fleet_impressions_shared_total",
            "Users' impression counts of capped campaigns this host sent to the fleet store.",
            &[],
            self.impressions_shared.load(Ordering::Relaxed),
        );
        out.counter(
            "bidder_fleet_impressions_observed_total",
            "Fleet counts of users' impressions this host read from the fleet's stream.",
            &[],
            self.impressions_observed.load(Ordering::Relaxed),
        );
        out.counter(
            "bidder_fleet_epochs_total",
            "Store epochs this host saw change (the store lost its state).",
            &[],
            self.epochs_seen.load(Ordering::Relaxed),
        );
    }
}

/// One campaign-day being synced: the current day, or the one before while it closes.
struct Tracked {
    slot: BudgetSlot,
    lease: HostLease,
    /// `Some(until)` for a day that ended: it returns what is free and reports until
    /// then.
    closing_until_ms: Option<u64>,
}

/// Frequency counts on their way to and from the fleet.
struct Frequency {
    /// This host's own count per (campaign, period start, user), this period.
    own: HashMap<(BudgetSlot, u64, u64), u32>,
    /// Pairs whose own count the store has not yet acknowledged.
    unsent: std::collections::HashSet<(BudgetSlot, u64, u64)>,
    /// The last stream entry read; `None` until Redis's clock says where an hour ago
    /// is (stream ids count on Redis's clock, not this host's).
    last_id: Option<String>,
    incoming: Vec<SharedImpression>,
    pruned_ms: u64,
}

impl Frequency {
    fn new(now_ms: u64) -> Frequency {
        Frequency {
            own: HashMap::new(),
            unsent: Default::default(),
            last_id: None,
            incoming: Vec::new(),
            pruned_ms: now_ms,
        }
    }
}

/// Sends this host's new impressions of capped campaigns, then reads the fleet's.
async fn share_frequency(
    store: &mut Store,
    budgets: &Budgets,
    status: &FleetStatus,
    f: &mut Frequency,
    now_ms: u64,
) {
    f.incoming.clear();
    budgets.take_shared_impressions(&mut f.incoming, SHARED_PER_TICK);
    for s in &f.incoming {
        let key = (s.campaign, s.period_start_ms, s.user);
        *f.own.entry(key).or_default() += s.n;
        f.unsent.insert(key);
    }
    let batch: Vec<_> = f.unsent.iter().copied().take(SHARED_PER_TICK).collect();
    for key @ (slot, start, user) in batch {
        let period = budgets.frequency_period(slot);
        let (Some(id), Some((period_start, period_end))) = (budgets.id_of(slot), period) else {
            f.unsent.remove(&key);
            continue;
        };
        if period_start != start {
            // The period is over: its counts no longer matter.
            f.unsent.remove(&key);
            continue;
        }
        let own = f.own.get(&key).copied().unwrap_or(0);
        match store
            .share_impressions(&id, start, period_end, user, own)
            .await
        {
            Ok(total) => {
                budgets.observe_impressions(slot, user, total, start, now_ms);
                f.unsent.remove(&key);
                status.impressions_shared.fetch_add(1, Ordering::Relaxed);
                status.syncs_ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                status.syncs_failed.fetch_add(1, Ordering::Relaxed);
                status.set_up(false, &e.to_string());
                return;
            }
        }
    }
    let last_id = match &mut f.last_id {
        Some(id) => id,
        None => match store.now_ms().await {
            Ok(now) => f
                .last_id
                .insert(format!("{}-0", now.saturating_sub(FREQUENCY_CATCH_UP_MS))),
            Err(e) => {
                status.syncs_failed.fetch_add(1, Ordering::Relaxed);
                status.set_up(false, &e.to_string());
                return;
            }
        },
    };
    match store.read_impressions(last_id).await {
        Ok(updates) => {
            for u in updates {
                if let Some(slot) = budgets.slot_of(&u.campaign) {
                    budgets.observe_impressions(slot, u.user, u.count, u.period_start_ms, now_ms);
                    status.impressions_observed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Err(e) => {
            status.syncs_failed.fetch_add(1, Ordering::Relaxed);
            status.set_up(false, &e.to_string());
        }
    }
    if now_ms.saturating_sub(f.pruned_ms) >= FREQUENCY_PRUNE_MS {
        f.pruned_ms = now_ms;
        let unsent = &f.unsent;
        f.own.retain(|key @ (slot, start, _), _| {
            unsent.contains(key)
                || budgets
                    .frequency_period(*slot)
                    .is_some_and(|(s, _)| s == *start)
        });
    }
}

/// Shares this host's impressions of capped campaigns and reads the fleet's, every
/// renew interval until `stop`.
async fn run_frequency(
    fleet: Fleet,
    budgets: Arc<Budgets>,
    clock: Clock,
    status: Arc<FleetStatus>,
    mut stop: watch::Receiver<bool>,
) {
    let Ok(mut store) = Store::new(fleet.store.clone()) else {
        return; // run() logged it
    };
    let mut frequency = Frequency::new(clock.now_unix_ms());
    let mut tick = tokio::time::interval(Duration::from_millis(fleet.renew_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let now_ms = clock.now_unix_ms();
        share_frequency(&mut store, &budgets, &status, &mut frequency, now_ms).await;
    }
}

/// The fleet task, on the control thread until `stop`: renews, reports and returns.
pub async fn run(
    fleet: Fleet,
    budgets: Arc<Budgets>,
    clock: Clock,
    status: Arc<FleetStatus>,
    mut stop: watch::Receiver<bool>,
) {
    let store = match Store::new(fleet.store.clone()) {
        Ok(store) => store,
        Err(e) => {
            // Validation parsed the URL; this is unexpected. Fail closed: no grants.
            tracing::error!(error = %e, "fleet store: cannot use redis_url; no budget will be granted");
            return;
        }
    };
    let mut days: HashMap<BudgetSlot, Tracked> = HashMap::new();
    let mut closing: Vec<Tracked> = Vec::new();
    let mut slots = Vec::new();
    // Frequency counts travel on a task and connection of their own: a burst of wins
    // on capped campaigns never delays a lease's renewal.
    tokio::task::spawn_local(run_frequency(
        fleet.clone(),
        Arc::clone(&budgets),
        clock.clone(),
        Arc::clone(&status),
        stop.clone(),
    ));
    let mut leases = Leases {
        fleet: &fleet,
        store,
        budgets: &budgets,
        status: &status,
        epochs: HashMap::new(),
    };
    let mut tick = tokio::time::interval(Duration::from_millis(fleet.renew_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let now_ms = clock.now_unix_ms();
        budgets.configured(&mut slots);
        for &slot in &slots {
            let day = budgets.fleet_day(slot);
            let tracked = days.entry(slot).or_insert_with(|| Tracked {
                slot,
                lease: HostLease::new(&day, now_ms, now_ms.saturating_mul(1_000)),
                closing_until_ms: None,
            });
            if tracked.lease.day_start_ms != day.day_start_ms {
                let fresh = Tracked {
                    slot,
                    lease: HostLease::new(&day, now_ms, now_ms.saturating_mul(1_000)),
                    closing_until_ms: None,
                };
                let mut ended = std::mem::replace(tracked, fresh);
                ended.closing_until_ms = Some(now_ms + CLOSING_DAY_MS);
                closing.push(ended);
            }
        }
        for tracked in days.values_mut().chain(closing.iter_mut()) {
            leases.sync(tracked, now_ms).await;
        }
        closing.retain(|t| t.closing_until_ms.is_some_and(|until| now_ms < until));
    }
    // Shutdown: give back what no bid holds, in one bounded round.
    let now_ms = clock.now_unix_ms();
    let round = async {
        for tracked in days.values_mut().chain(closing.iter_mut()) {
            tracked.closing_until_ms = Some(now_ms);
            leases.sync(tracked, now_ms).await;
        }
    };
    if tokio::time::timeout(Duration::from_millis(SHUTDOWN_SYNC_MS), round)
        .await
        .is_err()
    {
        tracing::warn!("fleet store: the shutdown returns did not all complete; they stay granted to this host for the day");
    }
}

/// What each call of the lease task needs besides the campaign-day.
struct Leases<'a> {
    fleet: &'a Fleet,
    store: Store,
    budgets: &'a Budgets,
    status: &'a FleetStatus,
    /// The store's epoch per campaign as last seen: a change is a store that lost its
    /// state.
    epochs: HashMap<BudgetSlot, String>,
}

impl Leases<'_> {
    /// One call for one campaign-day, if its lease needs one.
    async fn sync(&mut self, tracked: &mut Tracked, now_ms: u64) {
        let (budgets, status) = (self.budgets, self.status);
        let slot = tracked.slot;
        let sizing = self.fleet.sizing(budgets, slot);
        let closing = tracked.closing_until_ms.is_some();
        let (_, returned_before) = tracked.lease.counters();
        let Some(request) = tracked.lease.plan(budgets, slot, now_ms, &sizing, closing) else {
            return;
        };
        status
            .returned_micros
            .fetch_add(request.returned_micros - returned_before, Ordering::Relaxed);
        let Some(id) = budgets.id_of(slot) else {
            return;
        };
        let answer = self
            .store
            .sync(&id, budgets.daily_micros(slot), &request, now_ms)
            .await;
        match answer {
            Ok(reply) => {
                status.syncs_ok.fetch_add(1, Ordering::Relaxed);
                status.set_up(true, "");
                status
                    .granted_micros
                    .fetch_add(reply.grant_micros, Ordering::Relaxed);
                status.set_learning(reply.learning);
                if self.epochs.get(&slot) != Some(&reply.epoch) {
                    if let Some(old) = self.epochs.insert(slot, reply.epoch.clone()) {
                        status.epochs_seen.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(campaign = %id, old, new = %reply.epoch, "fleet store has a new epoch (it lost its state): every host re-reports");
                    }
                }
                tracked
                    .lease
                    .apply(budgets, slot, &request, &reply, now_ms, closing);
            }
            Err(e) => {
                status.syncs_failed.fetch_add(1, Ordering::Relaxed);
                status.set_up(false, &e.to_string());
            }
        }
    }
}
