//! One campaign-day's lease on this host: what it asks the fleet store for, and what a
//! reply does to the budgets. Pure (no Redis): the task calls it, the model test
//! drives it against a model store.
//!
//! The host keeps absolute counters and sends them in every call: `granted` is the
//! store's count of what it granted this host (only ever adopted from a reply, so it
//! never runs ahead of the store), `returned` what this host gave back (taken out of
//! its room *before* it is sent, so the store never counts as free what a bid could
//! still use). A reply's counters are at least what was sent (the store keeps the
//! larger), and their growth is what changes the room.

use crate::money::budget::{BudgetSlot, Budgets, FleetDay};

/// How big a lease is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizing {
    /// A lease covers this much of the host's recent spend ...
    pub lease_spend_ms: u64,
    /// ... and never less than this (`min_lease_bids` impressions at the max bid).
    pub floor_micros: i64,
    /// Spend and returns are reported at least this often.
    pub report_interval_ms: u64,
    /// A host holding a grant calls at least this often, spend or not, so a store that
    /// lost its state hears of every live grant within its learning window (half of
    /// `learning_ms`).
    pub heartbeat_ms: u64,
}

/// What the host sends: its counters, and how much more it wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    pub day_start_ms: u64,
    /// A retry of the same request (the client's own, within one call) is not granted
    /// twice; a later request may be granted again, which is safe: the counters sent
    /// and returned are absolute.
    pub request_id: u64,
    pub want_micros: i64,
    /// The least the store's smallest bid-sized grant may be (the lease floor).
    pub floor_micros: i64,
    pub granted_micros: i64,
    pub returned_micros: i64,
    pub spent_micros: i64,
}

/// What the store answers: this host's counters after the call, what it granted now,
/// and the fleet's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReply {
    pub granted_micros: i64,
    pub returned_micros: i64,
    pub grant_micros: i64,
    /// The day's budget less what every host holds granted and not returned.
    pub remaining_micros: i64,
    /// What every host reported spent.
    pub fleet_spent_micros: i64,
    /// The store's epoch: a new one means it lost its state.
    pub epoch: String,
    /// The store grants nothing now: it is learning what hosts hold.
    pub learning: bool,
}

/// The host's side of one campaign-day.
#[derive(Debug, Clone)]
pub struct HostLease {
    pub day_start_ms: u64,
    granted_micros: i64,
    returned_micros: i64,
    /// A reply for this day was applied (the host's counters from before a restart
    /// are known): until then it asks for nothing.
    synced: bool,
    next_request_id: u64,
    last_report_ms: u64,
    reported_spent_micros: i64,
    reported_returned_micros: i64,
    /// Reserved + spent at the start of the current rate window, its start, and what
    /// the last whole window grew by.
    window_used_micros: i64,
    window_start_ms: u64,
    last_window_growth_micros: i64,
}

impl HostLease {
    /// A day not yet synced; `first_request_id` must differ from any this host used for
    /// the day before (a restart: the clock's milliseconds are).
    pub fn new(day: &FleetDay, now_ms: u64, first_request_id: u64) -> HostLease {
        HostLease {
            day_start_ms: day.day_start_ms,
            granted_micros: 0,
            returned_micros: 0,
            synced: false,
            next_request_id: first_request_id,
            last_report_ms: 0,
            reported_spent_micros: -1,
            reported_returned_micros: 0,
            window_used_micros: day.used_micros,
            window_start_ms: now_ms,
            last_window_growth_micros: 0,
        }
    }

    /// What a lease should hold now: the host's spend over `lease_spend_ms` (the last
    /// whole window or the current one, whichever is more), at least the floor.
    pub fn target_micros(&self, day: &FleetDay, sizing: &Sizing) -> i64 {
        let current = (day.used_micros - self.window_used_micros).max(0);
        current
            .max(self.last_window_growth_micros)
            .max(sizing.floor_micros)
    }

    fn roll_window(&mut self, day: &FleetDay, now_ms: u64, sizing: &Sizing) {
        if now_ms.saturating_sub(self.window_start_ms) >= sizing.lease_spend_ms {
            self.last_window_growth_micros = (day.used_micros - self.window_used_micros).max(0);
            self.window_used_micros = day.used_micros;
            self.window_start_ms = now_ms;
        }
    }

    /// Whether to call the store now, and with what. Room far above the target is
    /// first taken back out of `budgets` (so it is returned in this call); a current
    /// day that needs room asks for it; otherwise a call is made only to report.
    /// `closing`: the day is over, everything free goes back and nothing is asked.
    pub fn plan(
        &mut self,
        budgets: &Budgets,
        slot: BudgetSlot,
        now_ms: u64,
        sizing: &Sizing,
        closing: bool,
    ) -> Option<SyncRequest> {
        let day = budgets.fleet_day_at(slot, self.day_start_ms)?;
        self.roll_window(&day, now_ms, sizing);
        let target = self.target_micros(&day, sizing);
        let mut want = 0;
        if self.synced {
            let excess = if closing {
                day.room_micros
            } else if day.room_micros > 4 * target {
                day.room_micros - 2 * target
            } else {
                0
            };
            if excess > 0 {
                self.returned_micros += budgets.fleet_take_back(slot, self.day_start_ms, excess);
            }
            let room = budgets
                .fleet_day_at(slot, self.day_start_ms)
                .map_or(0, |d| d.room_micros);
            if !closing && room < target / 2 {
                want = target - room;
            }
        }
        let since_ms = now_ms.saturating_sub(self.last_report_ms);
        let holds = self.granted_micros > self.returned_micros;
        let report_due = (since_ms >= sizing.report_interval_ms
            && (day.spent_micros != self.reported_spent_micros || !self.synced || closing))
            || (holds && since_ms >= sizing.heartbeat_ms);
        let unsent_return = self.returned_micros != self.reported_returned_micros;
        if want == 0 && !report_due && self.synced && !unsent_return {
            return None;
        }
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        Some(SyncRequest {
            day_start_ms: self.day_start_ms,
            request_id,
            want_micros: want,
            floor_micros: sizing.floor_micros,
            granted_micros: self.granted_micros,
            returned_micros: self.returned_micros,
            spent_micros: day.spent_micros,
        })
    }

    /// Applies a reply to `request`: the room grows by what the store granted this
    /// host beyond what the host knew, and shrinks by returns the store knows of that
    /// this host did not (a previous run's). A closing day's reply says nothing of
    /// today's budget (`closing`: the flag for exhausted stays as it is).
    pub fn apply(
        &mut self,
        budgets: &Budgets,
        slot: BudgetSlot,
        request: &SyncRequest,
        reply: &SyncReply,
        now_ms: u64,
        closing: bool,
    ) {
        let more = reply.granted_micros - self.granted_micros;
        if more > 0 && budgets.fleet_grant(slot, self.day_start_ms, more) {
            self.granted_micros = reply.granted_micros;
        }
        let returned_before = reply.returned_micros - self.returned_micros;
        if returned_before > 0 {
            // Returned by this host before a restart: not this run's to use.
            budgets.fleet_owe(slot, self.day_start_ms, returned_before);
            self.returned_micros = reply.returned_micros;
        }
        self.synced = true;
        self.last_report_ms = now_ms;
        self.reported_returned_micros = request.returned_micros;
        self.reported_spent_micros = request.spent_micros;
        if !closing {
            budgets
                .set_fleet_exhausted(slot, reply.remaining_micros <= 0 && reply.grant_micros == 0);
        }
    }

    /// The counters this host holds for the day (for status and tests).
    pub fn counters(&self) -> (i64, i64) {
        (self.granted_micros, self.returned_micros)
    }

    pub fn is_synced(&self) -> bool {
        self.synced
    }
}
