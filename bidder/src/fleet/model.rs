//! The fleet's no-overspend property, without Redis: real [`Budgets`] and
//! [`HostLease`]s on N hosts against a model of the store script (the same rules as
//! `store.rs`'s Lua), under random interleavings of reservations, settlements,
//! releases, calls whose request or reply is lost, and host crashes.

use std::collections::HashMap;

use proptest::prelude::*;

use super::lease::{HostLease, Sizing, SyncReply, SyncRequest};
use crate::money::budget::{BudgetLimits, Budgets, RecoveredSpend, Reservation};
use crate::money::period::Calendar;

const BUDGET: i64 = 200_000;
const NOW_MS: u64 = 1_800_000_000_000;

/// The store script's rules (`store.rs`), in memory.
#[derive(Default)]
struct ModelStore {
    granted: HashMap<usize, i64>,
    returned: HashMap<usize, i64>,
    last_request: HashMap<usize, u64>,
}

impl ModelStore {
    fn held(&self) -> i64 {
        self.granted.values().sum::<i64>() - self.returned.values().sum::<i64>()
    }

    fn sync(&mut self, host: usize, req: &SyncRequest, hosts: usize) -> SyncReply {
        let g = self.granted.entry(host).or_default();
        *g = (*g).max(req.granted_micros);
        let r = self.returned.entry(host).or_default();
        *r = (*r).max(req.returned_micros);
        let mut remaining = BUDGET - self.held();
        let mut grant = 0;
        if req.want_micros > 0 && self.last_request.get(&host) != Some(&req.request_id) {
            let share = (remaining / (4 * hosts as i64)).max(req.floor_micros);
            grant = req.want_micros.min(share).min(remaining).max(0);
            *self.granted.entry(host).or_default() += grant;
            remaining -= grant;
            self.last_request.insert(host, req.request_id);
        }
        SyncReply {
            granted_micros: self.granted[&host],
            returned_micros: self.returned[&host],
            grant_micros: grant,
            remaining_micros: remaining,
            fleet_spent_micros: 0,
            epoch: "e".into(),
            learning: false,
        }
    }
}

struct Host {
    budgets: Budgets,
    lease: HostLease,
    held: Vec<Reservation>,
    /// Spent by runs before the last crash (recovered from the ledger).
    request_base: u64,
}

fn start_host(spent_before: i64, request_base: u64) -> Host {
    let budgets = Budgets::new([0]);
    let limits = BudgetLimits {
        daily_micros: BUDGET,
        hourly_micros: None,
        lifetime_micros: None,
    };
    budgets.configure(0, "c", limits, &Calendar::named("UTC").unwrap(), NOW_MS);
    budgets.enable_fleet();
    budgets.recover(
        0,
        RecoveredSpend {
            day_micros: spent_before,
            hour_micros: spent_before,
            lifetime_micros: spent_before,
        },
    );
    let day = budgets.fleet_day(0);
    Host {
        lease: HostLease::new(&day, NOW_MS, request_base),
        budgets,
        held: Vec::new(),
        request_base,
    }
}

#[derive(Debug, Clone)]
enum Step {
    Reserve {
        host: usize,
        micros: i64,
    },
    Settle {
        host: usize,
        pick: usize,
        clearing_pct: i64,
    },
    Release {
        host: usize,
        pick: usize,
    },
    /// `lose`: 0 delivered, 1 request lost, 2 reply lost.
    Sync {
        host: usize,
        lose: u8,
        advance_ms: u64,
    },
    /// The host dies: its bids in flight are charged whole (the worst case the restart
    /// hold covers), and it restarts with its spend from the ledger.
    Crash {
        host: usize,
    },
    /// A graceful stop: what no bid holds goes back (the call may be lost), then the
    /// host starts again like after a crash.
    Restart {
        host: usize,
        lose: u8,
    },
}

fn step(hosts: usize) -> impl Strategy<Value = Step> {
    let h = 0..hosts;
    prop_oneof![
        4 => (h.clone(), 1i64..12_000).prop_map(|(host, micros)| Step::Reserve { host, micros }),
        2 => (h.clone(), 0usize..8, 0i64..=100).prop_map(|(host, pick, clearing_pct)| Step::Settle { host, pick, clearing_pct }),
        1 => (h.clone(), 0usize..8).prop_map(|(host, pick)| Step::Release { host, pick }),
        4 => (h.clone(), 0u8..3, 0u64..3_000).prop_map(|(host, lose, advance_ms)| Step::Sync { host, lose, advance_ms }),
        1 => h.clone().prop_map(|host| Step::Crash { host }),
        1 => (h, 0u8..3).prop_map(|(host, lose)| Step::Restart { host, lose }),
    ]
}

fn used(host: &Host) -> i64 {
    host.budgets.fleet_day(0).used_micros
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever happens, what every host's bids hold and spent together stays within
    /// the budget; and the store never grants past it.
    #[test]
    fn hosts_never_spend_more_than_the_budget(
        n in 2usize..5,
        steps in proptest::collection::vec(step(4), 1..300),
    ) {
        let sizing = Sizing { lease_spend_ms: 2_000, floor_micros: 5_000, report_interval_ms: 1_000, heartbeat_ms: 2_500 };
        let mut store = ModelStore::default();
        let mut hosts: Vec<Host> = (0..n).map(|h| start_host(0, h as u64 * 1_000_000)).collect();
        let mut now = NOW_MS;
        let mut unheld = 0i64;
        for s in steps {
            match s.clone() {
                Step::Reserve { host, micros } => {
                    let h = &mut hosts[host % n];
                    if let Some(r) = h.budgets.reserve(0, micros) {
                        h.held.push(r);
                    }
                }
                Step::Settle { host, pick, clearing_pct } => {
                    let h = &mut hosts[host % n];
                    if !h.held.is_empty() {
                        let r = h.held.swap_remove(pick % h.held.len());
                        let clearing = r.amount_micros * clearing_pct / 100;
                        h.budgets.settle(r, clearing);
                    }
                }
                Step::Release { host, pick } => {
                    let h = &mut hosts[host % n];
                    if !h.held.is_empty() {
                        let r = h.held.swap_remove(pick % h.held.len());
                        h.budgets.release(r);
                    }
                }
                Step::Sync { host, lose, advance_ms } => {
                    now += advance_ms;
                    let h = &mut hosts[host % n];
                    call(h, &mut store, (host % n, n), now, &sizing, false, lose);
                }
                Step::Crash { host } | Step::Restart { host, .. } => {
                    let h = &mut hosts[host % n];
                    if let Step::Restart { lose, .. } = s {
                        call(h, &mut store, (host % n, n), now, &sizing, true, lose);
                    }
                    // The ledger brings back what was spent; the bids still out are in
                    // doubt (each may yet win), held back as the daemon does at start.
                    let spent = h.budgets.fleet_day(0).spent_micros;
                    let in_doubt: i64 = h.held.iter().map(|r| r.amount_micros).sum();
                    let base = h.request_base + 100_000;
                    std::mem::forget(std::mem::take(&mut h.held));
                    *h = start_host(spent, base);
                    let held = h.budgets.hold_in_doubt(0, in_doubt);
                    // What the hold does not cover could be won and never charged.
                    unheld += in_doubt - held.as_ref().map_or(0, |r| r.amount_micros);
                    h.held.extend(held);
                }
            }
            let total: i64 = hosts.iter().map(used).sum::<i64>() + unheld;
            prop_assert!(total <= BUDGET, "hosts hold or spent {total} > {BUDGET} ({unheld} unheld)");
            prop_assert!(store.held() <= BUDGET, "store granted {} > {BUDGET}", store.held());
        }
    }
}

/// With every call delivered, hosts that keep bidding use nearly all of the budget:
/// leases are not stranded (the last of it goes out in floor-sized pieces).
#[test]
fn busy_hosts_spend_nearly_all_of_the_budget() {
    let sizing = Sizing {
        lease_spend_ms: 2_000,
        floor_micros: 4_000,
        report_interval_ms: 1_000,
        heartbeat_ms: 2_500,
    };
    let mut store = ModelStore::default();
    let mut hosts: Vec<Host> = (0..3)
        .map(|h| start_host(0, h as u64 * 1_000_000))
        .collect();
    let mut now = NOW_MS;
    for _ in 0..2_000 {
        now += 100;
        for (i, h) in hosts.iter_mut().enumerate() {
            if let Some(req) = h.lease.plan(&h.budgets, 0, now, &sizing, false) {
                let reply = store.sync(i, &req, 3);
                h.lease.apply(&h.budgets, 0, &req, &reply, now, false);
            }
            for _ in 0..5 {
                if let Some(r) = h.budgets.reserve(0, 400) {
                    h.budgets.settle(r, 400);
                }
            }
        }
    }
    let spent: i64 = hosts
        .iter()
        .map(|h| h.budgets.fleet_day(0).spent_micros)
        .sum();
    assert!(spent <= BUDGET);
    assert!(
        spent >= BUDGET * 95 / 100,
        "spent {spent} of {BUDGET}: leases stranded"
    );
}

/// One delivered call of host `i` of 2, if its lease wants one.
fn deliver(
    h: &mut Host,
    store: &mut ModelStore,
    i: usize,
    now: u64,
    sizing: &Sizing,
    closing: bool,
) {
    call(h, store, (i, 2), now, sizing, closing, 0);
}

/// A call of host `i` of `hosts`, if its lease wants one. `lose`: 0 delivered, 1 the
/// request lost, 2 the reply lost (the store applied it).
fn call(
    h: &mut Host,
    store: &mut ModelStore,
    (i, hosts): (usize, usize),
    now: u64,
    sizing: &Sizing,
    closing: bool,
    lose: u8,
) {
    let Some(req) = h.lease.plan(&h.budgets, 0, now, sizing, closing) else {
        return;
    };
    if lose != 1 {
        let reply = store.sync(i, &req, hosts);
        if lose == 0 {
            h.lease.apply(&h.budgets, 0, &req, &reply, now, closing);
        }
    }
}

/// Leases of the deterministic cases: the floor, calls whenever asked.
const EAGER: Sizing = Sizing {
    lease_spend_ms: 2_000,
    floor_micros: 50_000,
    report_interval_ms: 0,
    heartbeat_ms: 0,
};

/// A host that gave its lease back before a restart does not bid on it again after:
/// the store's count of its returns comes off the room the new run adopts, while
/// another host spends what was returned.
#[test]
fn a_restarted_host_does_not_reuse_what_it_returned_before() {
    let sizing = EAGER;
    let mut store = ModelStore::default();
    let mut a = start_host(0, 0);
    let mut b = start_host(0, 1_000_000);
    let mut now = NOW_MS;
    deliver(&mut a, &mut store, 0, now, &sizing, false); // adopts (nothing yet)
    deliver(&mut a, &mut store, 0, now, &sizing, false); // asks for the floor
    assert_eq!(a.budgets.fleet_day(0).room_micros, 50_000);
    deliver(&mut a, &mut store, 0, now, &sizing, true); // stops: gives it all back
    assert_eq!(a.budgets.fleet_day(0).room_micros, 0);
    assert_eq!(store.held(), 0);
    // The other host is granted the whole budget and spends it.
    while store.held() < BUDGET {
        now += 100;
        deliver(&mut b, &mut store, 1, now, &sizing, false);
        while let Some(r) = b.budgets.reserve(0, 10_000) {
            b.budgets.settle(r, 10_000);
        }
    }
    // The first host restarts: it learns what it was granted and what it returned.
    a = start_host(0, 500_000);
    deliver(&mut a, &mut store, 0, now, &sizing, false);
    assert_eq!(a.lease.counters(), (50_000, 50_000));
    assert_eq!(a.budgets.fleet_day(0).room_micros, 0);
    assert!(a.budgets.reserve(0, 1).is_none(), "it returned that money");
    assert!(
        !a.budgets.waits_on_fleet(0, 1),
        "the fleet said the budget is all granted"
    );
}

/// A host killed with bids out holds them back when it restarts, before it knows its
/// grant (its room then owes them): it cannot bid that money again while those bids
/// may still win.
#[test]
fn bids_out_at_a_crash_are_held_back_after_the_restart() {
    let sizing = EAGER;
    let mut store = ModelStore::default();
    let mut a = start_host(0, 0);
    let now = NOW_MS;
    deliver(&mut a, &mut store, 0, now, &sizing, false);
    deliver(&mut a, &mut store, 0, now, &sizing, false);
    let out: Vec<Reservation> = (0..5)
        .filter_map(|_| a.budgets.reserve(0, 10_000))
        .collect();
    assert_eq!(out.len(), 5, "the whole grant is out in bids");
    std::mem::forget(out);
    // Killed; it restarts with nothing spent on record and 50,000 in doubt.
    a = start_host(0, 500_000);
    let hold = a.budgets.hold_in_doubt(0, 50_000).expect("held back");
    assert_eq!(hold.amount_micros, 50_000);
    assert_eq!(a.budgets.fleet_day(0).room_micros, -50_000);
    deliver(&mut a, &mut store, 0, now, &sizing, false);
    assert_eq!(a.lease.counters().0, 50_000, "it adopts its grant");
    assert_eq!(
        a.budgets.fleet_day(0).room_micros,
        0,
        "which the bids out use"
    );
    assert!(a.budgets.reserve(0, 1).is_none());
    a.budgets.release(hold);
}
