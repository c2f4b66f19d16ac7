//! Leases on money in flight: how much budget a campaign's bids may hold between the
//! bid and its notice, recorded in the journal before it can be used.
//!
//! A bid reserves its price when it leaves, and the reservation lives in memory until
//! its notice. If the process dies then, the reservation is gone but the bid may still
//! win: without a record, a restart would hand that budget out again. So each campaign
//! bids within a lease, and the rule is
//!
//! ```text
//! in flight ≤ lease in memory ≤ lease on disk
//! ```
//!
//! A lease is raised on disk first and in memory once the commit is durable; it is
//! lowered in memory first (only by room no bid holds) and on disk after. A settled or
//! released bid keeps its part of the lease until its record is durable, because a
//! crash before that replays its notice. After a restart the lease on disk is held back
//! as *in doubt* for one reservation TTL: notices for bids made before the restart are
//! charged out of it, and whatever is left returns when no such bid can still settle.
//!
//! The control thread sizes leases on its tick ([`next_lease`]): room for a few times
//! what live bids hold, never less than a floor so a quiet campaign's first bid does
//! not wait, raised at once when a bid was refused for want of room. A raise costs one
//! journal commit (an `fsync`, a few milliseconds); bids of that campaign are refused
//! with the no-bid reason `ledger_unavailable` meanwhile.

/// The least lease a campaign with budget gets: enough for its first bids to leave
/// without waiting for a commit (10 impressions at a 1.00 CPM).
pub const MIN_LEASE_MICROS: i64 = 10_000;
/// The floor is at least this share of the daily budget (1/1000): a day's spend of
/// 1,000 leases.
const FLOOR_DAILY_DIVISOR: i64 = 1_000;
/// Headroom is this many times what live bids hold.
const HEADROOM_PER_LIVE: i64 = 2;
/// A lease is raised when its free room is below half the headroom, and lowered when
/// it is above this many times the headroom.
const SHRINK_ABOVE_HEADROOMS: i64 = 4;

/// What the control thread knows of one campaign's lease on its tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseState {
    pub lease_micros: i64,
    /// Reservations and pinned settlements, in-doubt hold included.
    pub in_flight_micros: i64,
    /// What is left of the hold for bids made before a restart.
    pub in_doubt_micros: i64,
    pub daily_micros: i64,
    /// A bid was refused for want of room since the last tick.
    pub wanted: bool,
}

/// The lease the campaign should have, or `None` to keep the one it has.
pub fn next_lease(s: LeaseState) -> Option<i64> {
    let daily = s.daily_micros.max(0);
    let floor = (daily / FLOOR_DAILY_DIVISOR)
        .max(MIN_LEASE_MICROS)
        .min(daily);
    let live = (s.in_flight_micros - s.in_doubt_micros).max(0);
    let mut headroom = live.saturating_mul(HEADROOM_PER_LIVE).max(floor);
    if s.wanted {
        // Bids wanted more than the lease had: at least double what live bids had.
        let had = (s.lease_micros - s.in_doubt_micros).max(floor);
        headroom = headroom.max(had.saturating_mul(2));
    }
    // No more headroom than a whole day's budget: the windows refuse past it anyway.
    let headroom = headroom.min(daily);
    let target = s.in_flight_micros.saturating_add(headroom);
    let free = s.lease_micros - s.in_flight_micros;
    let raise = free < headroom / 2 || (s.wanted && target > s.lease_micros);
    let lower = free > headroom.saturating_mul(SHRINK_ABOVE_HEADROOMS);
    ((raise && target > s.lease_micros) || lower).then_some(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(lease: i64, in_flight: i64, in_doubt: i64, wanted: bool) -> LeaseState {
        LeaseState {
            lease_micros: lease,
            in_flight_micros: in_flight,
            in_doubt_micros: in_doubt,
            daily_micros: 100_000_000,
            wanted,
        }
    }

    #[test]
    fn leases_follow_what_live_bids_hold() {
        // (lease, in flight, in doubt, wanted) → new lease; floor = 100,000.
        type Case = ((i64, i64, i64, bool), Option<i64>);
        let cases: &[Case] = &[
            // A new campaign gets the floor before its first bid.
            ((0, 0, 0, false), Some(100_000)),
            // Plenty of room: kept.
            ((100_000, 10_000, 0, false), None),
            // Live bids hold 60,000 of 100,000: room below half the headroom.
            ((100_000, 60_000, 0, false), Some(180_000)),
            // A refused bid doubles what live bids had.
            ((100_000, 20_000, 0, true), Some(220_000)),
            // Far more room than needed: lowered to headroom above what is held.
            ((10_000_000, 100_000, 0, false), Some(300_000)),
            // After a restart the in-doubt hold is covered, not multiplied.
            ((500_000, 500_000, 500_000, false), Some(600_000)),
            ((600_000, 500_000, 500_000, false), None),
        ];
        for &((lease, in_flight, in_doubt, wanted), expected) in cases {
            let got = next_lease(state(lease, in_flight, in_doubt, wanted));
            assert_eq!(
                got, expected,
                "lease {lease}, in flight {in_flight}, in doubt {in_doubt}, wanted {wanted}"
            );
            if let Some(new) = got {
                assert!(
                    new >= in_flight,
                    "a lease never drops below what is in flight"
                );
            }
        }
    }

    #[test]
    fn a_small_budget_gets_a_lease_no_larger_than_the_day() {
        let s = LeaseState {
            daily_micros: 5_000,
            ..state(0, 0, 0, true)
        };
        assert_eq!(next_lease(s), Some(5_000));
        let zero = LeaseState {
            daily_micros: 0,
            ..state(0, 0, 0, true)
        };
        assert_eq!(next_lease(zero), None, "no budget, no lease");
    }
}
