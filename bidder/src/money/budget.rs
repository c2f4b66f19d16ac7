//! Campaign budgets: reserve before bidding, settle at the clearing price, release
//! what was not spent. Integer micro-units, lock-free, never overspent.
//!
//! Per campaign three counters hold the whole day's budget at all times:
//!
//! ```text
//! available + reserved + spent == daily budget      (at quiescence)
//! ```
//!
//! A bid moves its price (per impression, rounded up) from `available` to `reserved`
//! with a compare-and-swap that refuses to take `available` below zero, so no
//! interleaving of workers can spend more than the budget. A win or billing notice
//! moves the reservation to `spent` at the clearing price (never more than was
//! reserved) and returns the rest; a loss, an error or an expiry returns it all.
//! [`Reservation`] is consumed by settle and release, so one reservation cannot be
//! settled twice through this API; duplicate notices are the ledger's job.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// One campaign's counters, on their own cache line so workers reserving for
/// different campaigns do not contend.
#[repr(align(64))]
#[derive(Debug, Default)]
struct CampaignBudget {
    daily_micros: AtomicI64,
    available_micros: AtomicI64,
    reserved_micros: AtomicI64,
    spent_micros: AtomicI64,
    /// Clearing prices above what was reserved (an exchange billing more than we
    /// bid); we never charge the budget above the reservation, but we count it.
    overcharged_micros: AtomicI64,
    refused: AtomicU64,
    /// Reservations settled (wins) and the sum of their clearing prices, since start:
    /// outcome counters the stats table and `/metrics` report beside the budget. Only
    /// the ledger's owner settles, so these see no contention.
    wins: AtomicU64,
    clearing_micros: AtomicI64,
}

const _: () = assert!(size_of::<CampaignBudget>() == 64);

/// A campaign's budget as a consistent-enough snapshot for operators and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetSnapshot {
    pub daily_micros: i64,
    pub available_micros: i64,
    pub reserved_micros: i64,
    pub spent_micros: i64,
    pub overcharged_micros: i64,
    /// Reservations refused for lack of budget.
    pub refused: u64,
    /// Reservations settled by a win or billing notice, since start (not reset daily).
    pub wins: u64,
    /// Sum of the clearing prices those settlements reported, micros per impression,
    /// before the cap at the reservation (so `spent + overcharged` for a day without
    /// a budget reset), since start.
    pub clearing_micros: i64,
}

/// Money held for one bid until its notice or expiry. Must be settled or released.
#[must_use = "a reservation holds budget until it is settled or released"]
#[derive(Debug, PartialEq, Eq)]
pub struct Reservation {
    pub campaign: BudgetSlot,
    pub amount_micros: i64,
}

/// What settling a reservation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    pub charged_micros: i64,
    pub refunded_micros: i64,
    pub overcharged_micros: i64,
}

/// A campaign's row in [`Budgets`]: its `budget_slot` in the catalog, stable across
/// reloads so money held by bids in flight stays with the campaign.
pub type BudgetSlot = usize;

/// Budgets of every campaign of a catalog, indexed by [`BudgetSlot`].
#[derive(Debug)]
pub struct Budgets {
    campaigns: Box<[CampaignBudget]>,
}

impl Budgets {
    /// Budgets with each campaign's full daily budget available.
    pub fn new(daily_micros: impl IntoIterator<Item = i64>) -> Budgets {
        let campaigns = daily_micros
            .into_iter()
            .map(|daily| {
                assert!(daily >= 0, "daily budget must be validated as non-negative");
                CampaignBudget {
                    daily_micros: AtomicI64::new(daily),
                    available_micros: AtomicI64::new(daily),
                    ..CampaignBudget::default()
                }
            })
            .collect();
        Budgets { campaigns }
    }

    fn campaign(&self, campaign: BudgetSlot) -> &CampaignBudget {
        &self.campaigns[campaign]
    }

    /// Whether `amount_micros` could be reserved now (a hint: a reservation may still
    /// lose a race; only [`Budgets::reserve`] decides).
    pub fn can_afford(&self, campaign: BudgetSlot, amount_micros: i64) -> bool {
        self.campaign(campaign)
            .available_micros
            .load(Ordering::Relaxed)
            >= amount_micros
    }

    /// Takes `amount_micros` from the campaign's available budget, or refuses when
    /// that would take it below zero.
    pub fn reserve(&self, campaign: BudgetSlot, amount_micros: i64) -> Option<Reservation> {
        assert!(amount_micros >= 0, "a reservation is never negative");
        let b = self.campaign(campaign);
        // AcqRel on the CAS: reservations of one campaign are totally ordered on
        // `available`, which alone guards the no-overspend rule.
        let taken =
            b.available_micros
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |available| {
                    (available >= amount_micros).then(|| available - amount_micros)
                });
        if taken.is_err() {
            b.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        b.reserved_micros.fetch_add(amount_micros, Ordering::AcqRel);
        Some(Reservation {
            campaign,
            amount_micros,
        })
    }

    /// Spends a reservation at the clearing price (per impression, micros) and returns
    /// the rest. A clearing price above the reservation is charged at the
    /// reservation and the excess counted, never taken from other bids' budget.
    pub fn settle(&self, reservation: Reservation, clearing_micros: i64) -> Settlement {
        let b = self.campaign(reservation.campaign);
        let clearing = clearing_micros.max(0);
        let charged = clearing.min(reservation.amount_micros);
        let refunded = reservation.amount_micros - charged;
        let overcharged = clearing - charged;
        b.spent_micros.fetch_add(charged, Ordering::AcqRel);
        b.available_micros.fetch_add(refunded, Ordering::AcqRel);
        let before = b
            .reserved_micros
            .fetch_sub(reservation.amount_micros, Ordering::AcqRel);
        assert!(
            before >= reservation.amount_micros,
            "reserved budget went negative"
        );
        if overcharged > 0 {
            b.overcharged_micros
                .fetch_add(overcharged, Ordering::Relaxed);
        }
        b.wins.fetch_add(1, Ordering::Relaxed);
        b.clearing_micros.fetch_add(clearing, Ordering::Relaxed);
        Settlement {
            charged_micros: charged,
            refunded_micros: refunded,
            overcharged_micros: overcharged,
        }
    }

    /// Returns a whole reservation (lost auction, send failure, expiry).
    pub fn release(&self, reservation: Reservation) {
        let b = self.campaign(reservation.campaign);
        b.available_micros
            .fetch_add(reservation.amount_micros, Ordering::AcqRel);
        let before = b
            .reserved_micros
            .fetch_sub(reservation.amount_micros, Ordering::AcqRel);
        assert!(
            before >= reservation.amount_micros,
            "reserved budget went negative"
        );
    }

    /// Changes a campaign's daily budget (operator action). Lowering it below what is
    /// already spent and reserved leaves `available` negative: nothing more is
    /// reserved until a new day or a raise.
    pub fn set_daily(&self, campaign: BudgetSlot, daily_micros: i64) {
        assert!(daily_micros >= 0, "daily budget must be non-negative");
        let b = self.campaign(campaign);
        let old = b.daily_micros.swap(daily_micros, Ordering::AcqRel);
        b.available_micros
            .fetch_add(daily_micros - old, Ordering::AcqRel);
    }

    /// Starts a new budget day: yesterday's spend is forgotten and becomes available
    /// again; outstanding reservations stay reserved.
    /// Counts spend the journal recorded before a restart: it leaves the available
    /// budget (never below zero; any excess is counted as overcharged, as a settlement
    /// past the budget would be). Called before the first bid.
    pub fn recover_spent(&self, campaign: BudgetSlot, spent_micros: i64) {
        assert!(spent_micros >= 0, "recorded spend is never negative");
        let b = self.campaign(campaign);
        let mut from_available = 0;
        let _ = b
            .available_micros
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |available| {
                from_available = available.clamp(0, spent_micros);
                Some(available - from_available)
            });
        b.spent_micros.fetch_add(spent_micros, Ordering::AcqRel);
        let excess = spent_micros - from_available;
        if excess > 0 {
            b.overcharged_micros.fetch_add(excess, Ordering::Relaxed);
        }
    }

    pub fn start_day(&self) {
        for b in self.campaigns.iter() {
            let spent = b.spent_micros.swap(0, Ordering::AcqRel);
            b.available_micros.fetch_add(spent, Ordering::AcqRel);
        }
    }

    pub fn snapshot(&self, campaign: BudgetSlot) -> BudgetSnapshot {
        let b = self.campaign(campaign);
        BudgetSnapshot {
            daily_micros: b.daily_micros.load(Ordering::Acquire),
            available_micros: b.available_micros.load(Ordering::Acquire),
            reserved_micros: b.reserved_micros.load(Ordering::Acquire),
            spent_micros: b.spent_micros.load(Ordering::Acquire),
            overcharged_micros: b.overcharged_micros.load(Ordering::Acquire),
            refused: b.refused.load(Ordering::Relaxed),
            wins: b.wins.load(Ordering::Relaxed),
            clearing_micros: b.clearing_micros.load(Ordering::Relaxed),
        }
    }

    pub fn len(&self) -> usize {
        self.campaigns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.campaigns.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn balanced(b: &Budgets, c: BudgetSlot) -> bool {
        let s = b.snapshot(c);
        s.available_micros + s.reserved_micros + s.spent_micros == s.daily_micros
    }

    #[test]
    fn recovered_spend_leaves_the_available_budget_and_never_below_zero() {
        let b = Budgets::new([1_000, 1_000]);
        b.recover_spent(0, 600);
        assert_eq!(b.snapshot(0).available_micros, 400);
        assert_eq!(b.snapshot(0).spent_micros, 600);
        assert!(balanced(&b, 0));
        assert!(b.reserve(0, 401).is_none());
        b.recover_spent(1, 1_300);
        let s = b.snapshot(1);
        assert_eq!((s.available_micros, s.spent_micros), (0, 1_300));
        assert_eq!(s.overcharged_micros, 300);
    }

    #[test]
    fn reserve_refuses_past_the_budget() {
        let b = Budgets::new([1_000]);
        let r1 = b.reserve(0, 600).unwrap();
        assert!(b.reserve(0, 401).is_none());
        let r2 = b.reserve(0, 400).unwrap();
        assert!(b.reserve(0, 1).is_none());
        assert_eq!(b.snapshot(0).refused, 2);
        assert_eq!(b.snapshot(0).available_micros, 0);
        b.release(r1);
        b.release(r2);
        assert_eq!(b.snapshot(0).available_micros, 1_000);
        assert!(balanced(&b, 0));
    }

    #[test]
    fn settle_charges_the_clearing_price_and_refunds_the_rest() {
        let b = Budgets::new([10_000]);
        let r = b.reserve(0, 2_000).unwrap();
        let s = b.settle(r, 1_500);
        assert_eq!(
            s,
            Settlement {
                charged_micros: 1_500,
                refunded_micros: 500,
                overcharged_micros: 0
            }
        );
        let snap = b.snapshot(0);
        assert_eq!(
            (
                snap.available_micros,
                snap.reserved_micros,
                snap.spent_micros
            ),
            (8_500, 0, 1_500)
        );
        assert!(balanced(&b, 0));
    }

    #[test]
    fn a_clearing_price_above_the_bid_never_charges_more_than_reserved() {
        let b = Budgets::new([10_000]);
        let r = b.reserve(0, 2_000).unwrap();
        let s = b.settle(r, 5_000);
        assert_eq!(s.charged_micros, 2_000);
        assert_eq!(s.overcharged_micros, 3_000);
        assert_eq!(b.snapshot(0).spent_micros, 2_000);
        assert!(balanced(&b, 0));
    }

    #[test]
    fn wins_and_clearing_prices_are_counted_uncapped_and_survive_a_new_day() {
        let b = Budgets::new([10_000]);
        let r = b.reserve(0, 2_000).unwrap();
        b.settle(r, 5_000);
        let r = b.reserve(0, 2_000).unwrap();
        b.settle(r, 1_200);
        let lost = b.reserve(0, 2_000).unwrap();
        b.release(lost);
        b.start_day();
        let s = b.snapshot(0);
        assert_eq!((s.wins, s.clearing_micros, s.spent_micros), (2, 6_200, 0));
    }

    #[test]
    fn lowering_the_budget_below_spend_stops_reservations() {
        let b = Budgets::new([10_000]);
        let r = b.reserve(0, 6_000).unwrap();
        b.settle(r, 6_000);
        b.set_daily(0, 5_000);
        assert!(b.reserve(0, 1).is_none());
        assert!(balanced(&b, 0));
        b.start_day();
        assert_eq!(b.snapshot(0).available_micros, 5_000);
        assert!(balanced(&b, 0));
    }

    #[test]
    fn a_new_day_keeps_outstanding_reservations() {
        let b = Budgets::new([10_000]);
        let spent = b.reserve(0, 3_000).unwrap();
        b.settle(spent, 3_000);
        let held = b.reserve(0, 2_000).unwrap();
        b.start_day();
        let snap = b.snapshot(0);
        assert_eq!(
            (
                snap.available_micros,
                snap.reserved_micros,
                snap.spent_micros
            ),
            (8_000, 2_000, 0)
        );
        b.release(held);
        assert!(balanced(&b, 0));
    }
}
