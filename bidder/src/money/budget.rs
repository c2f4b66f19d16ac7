//! Campaign budgets: reserve before bidding, settle at the clearing price, release
//! what was not spent. Integer micro-units, lock-free, never overspent.
//!
//! A campaign's money is counted in three windows: its current day and current hour
//! (in its time zone, see [`super::period`]) and its lifetime. Each window counts
//! `used` (reserved + spent by bids made in it) and `spent`, and holds one rule:
//!
//! ```text
//! used == reserved + spent        used ≤ limit (daily, hourly or lifetime budget)
//! ```
//!
//! A bid takes its price (per impression, rounded up) into all three windows with a
//! compare-and-swap each that refuses to pass the limit, and gives back what it took
//! if a later window refuses; so no interleaving of workers can spend past any limit.
//! A win or billing notice moves the reservation to `spent` at the clearing price
//! (never more than was reserved) and returns the rest; a loss, an error or an expiry
//! returns it all. [`Reservation`] is consumed by settle and release, so one
//! reservation cannot be settled twice through this API; duplicate notices are the
//! ledger's job.
//!
//! Days and hours alternate between two windows each. A reservation remembers which
//! window it was made in, so a bid made before midnight and settled after is charged
//! to the day it was made in, and a new day starts at zero while yesterday's bids are
//! still out. The control thread starts new periods ([`Budgets::roll`]); a window is
//! reused two periods later, which the reservation TTL's bound (an hour) keeps clear
//! of bids still out.
//!
//! When the spend journal cannot be written, [`Budgets::close`] stops every
//! reservation until it can (fail closed: no money moves that could not be recorded).
//!
//! With a journal, money in flight is leased too ([`Budgets::enable_leases`]): each
//! campaign may hold at most its *lease* in reservations, and the lease is raised only
//! once the journal has it on disk (see [`super::lease`]). So after a crash the last
//! recorded lease bounds what bids still out could spend, and a restart holds that much
//! back until their notices come or their time runs out. A lease is counted down in
//! `lease_room`: a reservation takes room by compare-and-swap, as it takes budget.
//! A campaign spending faster than its breaker allows is tripped
//! ([`Budgets::check_spend_rates`]) and reserves nothing until an operator resets it.
//!
//! In a fleet ([`Budgets::enable_fleet`]) the day's budget is shared by every host, and
//! this host may use only what the fleet store granted it (see `crate::fleet`). Each
//! day window then keeps a *fleet room* beside its counters:
//!
//! ```text
//! fleet room == granted − returned − used      (of that day, on this host)
//! ```
//!
//! A reservation takes its amount from the room by compare-and-swap (never below
//! zero) before it touches the window, and every change to the window's `used` moves
//! the room the other way; a grant adds to the room, a return takes from it by the
//! same compare-and-swap. So this host's `used` never passes what it was granted and
//! did not give back, whatever the interleaving: the fleet's overspend bound rests on
//! this line and on the store counting grants before a host uses them.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

use crossbeam_queue::ArrayQueue;

use rustc_hash::FxHashMap;

use super::frequency::{FrequencyCap, FrequencyTable};
use super::period::{Calendar, PeriodBounds};
use crate::limits::MAX_PARTNERS;

/// One period's money: what bids made in it hold or spent.
#[derive(Debug, Default)]
struct Window {
    /// When the period started, ms since the Unix epoch (0: never started).
    start_ms: AtomicU64,
    /// Reserved + spent: what the limit is checked against.
    used_micros: AtomicI64,
    spent_micros: AtomicI64,
}

/// Adds `amount` to `used` unless that passes `limit` (a window's budget, a partner's
/// held share).
#[inline]
fn take_within(used: &AtomicI64, amount: i64, limit: i64) -> bool {
    used.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |used| {
        (used <= limit - amount).then(|| used + amount)
    })
    .is_ok()
}

/// Gives back `amount` of `used`, which never goes negative (`what` names it).
fn give_back_from(used: &AtomicI64, amount: i64, what: &str) {
    let before = used.fetch_sub(amount, Ordering::AcqRel);
    assert!(before >= amount, "{what} went negative");
}

impl Window {
    /// Adds `amount` to `used` unless that passes `limit`.
    #[inline]
    fn take(&self, amount: i64, limit: i64) -> bool {
        take_within(&self.used_micros, amount, limit)
    }

    /// Gives back `amount` of `used` (a release, or a refund of part of a settlement).
    fn give_back(&self, amount: i64) {
        give_back_from(&self.used_micros, amount, "a budget window's used money");
    }

    fn settle(&self, charged: i64, refunded: i64) {
        self.spent_micros.fetch_add(charged, Ordering::AcqRel);
        self.give_back(refunded);
    }

    /// Never negative, even read while others settle: `spent` is read first, and
    /// `used` never drops below what was spent (a settlement keeps its charge in it).
    fn reserved(&self) -> i64 {
        let spent = self.spent_micros.load(Ordering::Acquire);
        self.used_micros.load(Ordering::Acquire) - spent
    }

    /// Starts the window for a new period, keeping what bids of its last period still
    /// hold (none while the reservation TTL is shorter than a period; kept, not lost,
    /// if one were).
    fn restart(&self, start_ms: u64) {
        let outstanding = self.reserved().max(0);
        self.spent_micros.store(0, Ordering::Release);
        self.used_micros.store(outstanding, Ordering::Release);
        self.start_ms.store(start_ms, Ordering::Release);
    }
}

/// Subtracts `amount` from `room` unless that leaves it negative.
#[inline]
fn take_room(room: &AtomicI64, amount: i64) -> bool {
    room.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |left| {
        (left >= amount).then(|| left - amount)
    })
    .is_ok()
}

/// What a reservation does to the day's fleet room (fleet mode only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FleetRoom {
    /// Takes it by compare-and-swap, or refuses: a new bid.
    Take,
    /// Takes it unchecked (the room may go below zero): money spent already (a late
    /// win, a bid made before a restart).
    Owe,
}

/// No limit: a window counted but never refusing.
const UNLIMITED: i64 = i64::MAX;

/// One campaign's counters, on cache lines of their own so workers reserving for
/// different campaigns do not contend.
#[repr(align(64))]
#[derive(Debug, Default)]
struct CampaignBudget {
    daily_micros: AtomicI64,
    /// [`UNLIMITED`] when the campaign has no hourly cap.
    hourly_micros: AtomicI64,
    /// [`UNLIMITED`] when the campaign has no lifetime budget.
    lifetime_micros: AtomicI64,
    /// Which of `day` (and `hour`) is the current period.
    day_now: AtomicU8,
    hour_now: AtomicU8,
    /// Paused by the spend-rate breaker until an operator resumes it.
    tripped: AtomicBool,
    day: [Window; 2],
    hour: [Window; 2],
    lifetime: Window,
    /// Clearing prices above what was reserved (an exchange billing more than we
    /// bid); we never charge the budget above the reservation, but we count it.
    overcharged_micros: AtomicI64,
    refused: AtomicU64,
    /// Reservations settled (wins) and the sum of their clearing prices, since start:
    /// outcome counters the stats table and `/metrics` report beside the budget. Only
    /// the ledger's owner settles, so these see no contention.
    wins: AtomicU64,
    clearing_micros: AtomicI64,
    /// The lease: what this campaign's bids may hold in flight (the journal has it).
    lease_micros: AtomicI64,
    /// The lease not held by bids in flight; `lease − room` is in flight. Negative
    /// while a settled bid's record waits for the disk ([`Budgets::pin_lease`]).
    lease_room_micros: AtomicI64,
    /// A bid was refused for want of lease room since the control thread last looked.
    lease_wanted: AtomicBool,
    /// Impressions per user per period; 0: no frequency cap.
    frequency_cap: AtomicU32,
    /// The cap counts per hour rather than per day.
    frequency_hourly: AtomicBool,
    /// In fleet mode, each day window's fleet room (see the module doc), by the same
    /// index as `day`.
    fleet_room_micros: [AtomicI64; 2],
    /// The fleet store said the day's budget is all granted: a bid short of fleet room
    /// is `budget_exhausted`, not `budget_unavailable`.
    fleet_exhausted: AtomicBool,
}

const _: () = assert!(size_of::<CampaignBudget>() == 256);

/// What a campaign may spend: per day (in its time zone), per hour, in its lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetLimits {
    pub daily_micros: i64,
    pub hourly_micros: Option<i64>,
    pub lifetime_micros: Option<i64>,
}

/// Spend the journal recorded before a restart, per window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveredSpend {
    pub day_micros: i64,
    pub hour_micros: i64,
    pub lifetime_micros: i64,
}

/// A campaign's budget as a consistent-enough snapshot for operators and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetSnapshot {
    pub daily_micros: i64,
    pub hourly_micros: Option<i64>,
    pub lifetime_micros: Option<i64>,
    /// Start of the current day in the campaign's time zone, ms since the Unix epoch.
    pub day_start_ms: u64,
    pub hour_start_ms: u64,
    /// What a bid could still reserve now: the least left of the day's, the hour's
    /// and the lifetime budget (negative after a budget was lowered below spend).
    pub available_micros: i64,
    /// Held by today's bids in flight.
    pub reserved_micros: i64,
    /// Spent today: the sum of clearing prices charged to bids made today.
    pub spent_micros: i64,
    pub hour_spent_micros: i64,
    pub lifetime_spent_micros: i64,
    /// Spent by bids made the day before (still growing while its notices come in).
    pub previous_day_spent_micros: i64,
    /// Paused by the spend-rate breaker.
    pub breaker_tripped: bool,
    pub overcharged_micros: i64,
    /// Reservations refused for lack of budget.
    pub refused: u64,
    /// Reservations settled by a win or billing notice, since start (not reset daily).
    pub wins: u64,
    /// Sum of the clearing prices those settlements charged, micros per impression,
    /// each capped at its reservation (the bid price), since start.
    pub clearing_micros: i64,
    /// The campaign's lease and what bids hold of it, when money in flight is leased.
    pub lease: Option<LeaseFigures>,
}

/// A campaign's lease on money in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseFigures {
    /// What the journal allows the campaign's bids to hold at once.
    pub lease_micros: i64,
    /// What they hold now (reservations out, and settled bids whose record is not yet
    /// on disk).
    pub in_flight_micros: i64,
}

/// Impressions waiting for the fleet task, at most (a second of 65k wins/s).
const SHARED_IMPRESSIONS_CAPACITY: usize = 65_536;

/// Impressions of a capped campaign this host counted for a user, for the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedImpression {
    pub campaign: BudgetSlot,
    pub user: u64,
    pub n: u32,
    /// The cap's period (day or hour) they count in.
    pub period_start_ms: u64,
}

/// One day of a campaign on this host, as the fleet task reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetDay {
    /// Start of the day in the campaign's time zone, ms since the Unix epoch.
    pub day_start_ms: u64,
    /// Granted by the fleet, less returned, less what the day's bids hold or spent.
    pub room_micros: i64,
    pub spent_micros: i64,
    /// Reserved + spent.
    pub used_micros: i64,
}

/// Money held for one bid until its notice or expiry. Must be settled or released.
#[must_use = "a reservation holds budget until it is settled or released"]
#[derive(Debug, PartialEq, Eq)]
pub struct Reservation {
    pub campaign: BudgetSlot,
    pub amount_micros: i64,
    /// The day and hour windows the money was taken from.
    day: u8,
    hour: u8,
    /// The partner whose bid holds it ([`NO_PARTNER`] for holds of no one partner):
    /// its share of held money is given back with the reservation.
    partner: u16,
}

/// [`Reservation::partner`] of money no partner's bid holds.
const NO_PARTNER: u16 = u16::MAX;

/// Why [`Budgets::reserve_for`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The partner's unanswered bids hold its `max_held_micros` already.
    PartnerHoldFull,
    /// The campaign's budget (day, hour, lifetime), its lease, or a closed ledger.
    Budget,
}

/// Money one partner's bids hold while they wait for a notice, and the most they may:
/// bids nobody answers cannot hold more than this of the campaigns' budgets. On a
/// cache line of its own: every worker bidding for one partner updates it, and
/// partners must not contend with each other.
#[repr(align(64))]
#[derive(Debug)]
struct PartnerHold {
    held_micros: AtomicI64,
    max_micros: AtomicI64,
    /// Reservations refused because the share was full.
    refused: AtomicU64,
}

/// What settling a reservation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    pub campaign: BudgetSlot,
    pub charged_micros: i64,
    pub refunded_micros: i64,
    pub overcharged_micros: i64,
}

/// A campaign's row in [`Budgets`]: its `budget_slot` in the catalog, stable across
/// reloads so money held by bids in flight stays with the campaign.
pub type BudgetSlot = usize;

/// Where a configured campaign's periods are, and its spend-rate window; the control
/// thread's and the loader's only (never read on the bid path).
#[derive(Debug)]
struct SlotCalendar {
    /// The campaign's id, for the breaker's log lines and audit records.
    id: String,
    calendar: Calendar,
    bounds: PeriodBounds,
    /// Start of the breaker's current window, and the lifetime spend then.
    rate_window_start_ms: u64,
    rate_window_spent_micros: i64,
}

/// The spend-rate circuit breaker: a campaign that spends more than `multiple` times
/// its even pace (daily budget over the day's length) averaged over `window_ms` is
/// paused. `multiple` 0 turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpendBreaker {
    pub multiple: u32,
    pub window_ms: u64,
}

impl Default for SpendBreaker {
    /// 3× the paced rate over 60 s: what a runaway bid loop or a mispriced exchange
    /// looks like, while a normal burst of wins stays under it.
    fn default() -> SpendBreaker {
        SpendBreaker {
            multiple: 3,
            window_ms: 60_000,
        }
    }
}

/// A campaign the breaker just paused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trip {
    pub slot: BudgetSlot,
    pub campaign: String,
    /// Spent in the breaker's window so far, and what the window allows.
    pub spent_micros: i64,
    pub allowed_micros: i64,
    pub window_ms: u64,
}

/// Budgets of every campaign of a catalog, indexed by [`BudgetSlot`].
#[derive(Debug)]
pub struct Budgets {
    campaigns: Box<[CampaignBudget]>,
    /// Set while the spend journal cannot be written: nothing is reserved.
    closed: AtomicBool,
    /// Configured campaigns by slot; never touched on the bid path.
    calendars: Mutex<Vec<Option<SlotCalendar>>>,
    /// Configured campaigns' slots by id (notices name campaigns by id).
    by_id: Mutex<FxHashMap<String, BudgetSlot>>,
    /// The earliest end of any configured campaign's day or hour: [`Budgets::roll`]
    /// looks at the campaigns only once the clock passes it.
    next_roll_ms: AtomicU64,
    /// The [`SpendBreaker`] in force (set at load and on reload).
    breaker_multiple: AtomicU32,
    breaker_window_ms: AtomicU64,
    /// Money in flight is leased (a journal is configured); set before the first bid.
    leased: AtomicBool,
    /// The day's budget is shared by a fleet: reservations need fleet room; set before
    /// the first bid.
    fleet: AtomicBool,
    /// In a fleet, impressions this host counted for capped campaigns, waiting for the
    /// fleet task to share them; bounded (past it they are dropped and counted).
    shared_impressions: OnceLock<ArrayQueue<SharedImpression>>,
    impressions_unshared: AtomicU64,
    /// Impressions per (campaign, user) for campaigns with a frequency cap.
    frequency: FrequencyTable,
    /// What each partner's bids hold, by partner index.
    partners: Box<[PartnerHold]>,
    /// What notices say about the market, per campaign (for the agent's controller).
    feedback: super::feedback::MarketFeedback,
}

/// The frequency table of [`Budgets::new`]; the daemon sizes it from the config.
const DEFAULT_FREQUENCY_TRACKED: usize = 1_024;

impl Budgets {
    /// What notices say about the market, per campaign slot.
    pub fn feedback(&self) -> &super::feedback::MarketFeedback {
        &self.feedback
    }

    /// Budgets with each campaign's full daily budget available, in windows that
    /// never roll until the campaign is configured with a calendar.
    pub fn new(daily_micros: impl IntoIterator<Item = i64>) -> Budgets {
        let campaigns: Box<[CampaignBudget]> = daily_micros
            .into_iter()
            .map(|daily| {
                assert!(daily >= 0, "daily budget must be validated as non-negative");
                CampaignBudget {
                    daily_micros: AtomicI64::new(daily),
                    hourly_micros: AtomicI64::new(UNLIMITED),
                    lifetime_micros: AtomicI64::new(UNLIMITED),
                    ..CampaignBudget::default()
                }
            })
            .collect();
        Budgets {
            feedback: super::feedback::MarketFeedback::new(campaigns.len()),
            campaigns,
            closed: AtomicBool::new(false),
            // Grown as campaigns are configured: most slots of a daemon's table are
            // spare room for campaigns a reload may add.
            calendars: Mutex::new(Vec::new()),
            by_id: Mutex::new(FxHashMap::default()),
            next_roll_ms: AtomicU64::new(u64::MAX),
            breaker_multiple: AtomicU32::new(SpendBreaker::default().multiple),
            breaker_window_ms: AtomicU64::new(SpendBreaker::default().window_ms),
            leased: AtomicBool::new(false),
            fleet: AtomicBool::new(false),
            shared_impressions: OnceLock::new(),
            impressions_unshared: AtomicU64::new(0),
            frequency: FrequencyTable::new(DEFAULT_FREQUENCY_TRACKED),
            partners: (0..MAX_PARTNERS)
                .map(|_| PartnerHold {
                    held_micros: AtomicI64::new(0),
                    max_micros: AtomicI64::new(UNLIMITED),
                    refused: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    /// The same budgets counting up to `max_tracked` (campaign, user) pairs for
    /// frequency caps (before the budgets are shared).
    pub fn with_frequency_tracked(mut self, max_tracked: usize) -> Budgets {
        self.frequency = FrequencyTable::new(max_tracked);
        self
    }

    // ---- frequency caps (see `super::frequency`) ----

    /// Sets or clears a campaign's frequency cap (at load and on reload).
    pub fn set_frequency_cap(&self, campaign: BudgetSlot, cap: Option<FrequencyCap>) {
        let b = self.campaign(campaign);
        b.frequency_hourly
            .store(cap.is_some_and(|c| c.hourly), Ordering::Release);
        b.frequency_cap
            .store(cap.map_or(0, |c| c.impressions), Ordering::Release);
    }

    /// Whether `user` may be shown another impression of the campaign now: under its
    /// cap, or no cap. `false` too when the table is too full to count the user.
    #[inline]
    pub fn frequency_allows(&self, campaign: BudgetSlot, user: u64, now_ms: u64) -> bool {
        let cap = self
            .campaign(campaign)
            .frequency_cap
            .load(Ordering::Relaxed);
        cap == 0
            || self
                .frequency
                .count(campaign, user, now_ms)
                .is_some_and(|seen| seen < cap)
    }

    /// Whether the campaign has a frequency cap.
    #[inline]
    pub fn is_frequency_capped(&self, campaign: BudgetSlot) -> bool {
        self.campaign(campaign)
            .frequency_cap
            .load(Ordering::Relaxed)
            != 0
    }

    /// Counts `n` impressions of a capped campaign for `user` in the campaign's
    /// current period (the control thread: win notices, and counts read back at
    /// start). Returns `false` when the pair could not be stored.
    pub fn count_impressions(&self, campaign: BudgetSlot, user: u64, n: u32, now_ms: u64) -> bool {
        let b = self.campaign(campaign);
        if b.frequency_cap.load(Ordering::Acquire) == 0 || n == 0 {
            return true;
        }
        let Some((start_ms, end_ms)) = self.frequency_period(campaign) else {
            return true;
        };
        if let Some(queue) = self.shared_impressions.get() {
            let shared = SharedImpression {
                campaign,
                user,
                n,
                period_start_ms: start_ms,
            };
            if queue.push(shared).is_err() {
                self.impressions_unshared.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.frequency.add(campaign, user, n, end_ms, now_ms)
    }

    /// Raises a user's count of a capped campaign to what the fleet counted for the
    /// period that started at `period_start_ms` (ignored once that period is over).
    pub fn observe_impressions(
        &self,
        campaign: BudgetSlot,
        user: u64,
        count: u32,
        period_start_ms: u64,
        now_ms: u64,
    ) -> bool {
        if campaign >= self.campaigns.len() || !self.is_frequency_capped(campaign) {
            return true;
        }
        match self.frequency_period(campaign) {
            Some((start_ms, end_ms)) if start_ms == period_start_ms => self
                .frequency
                .observe(campaign, user, count, end_ms, now_ms),
            _ => true,
        }
    }

    /// Up to `max` impressions counted here since the last call, for the fleet.
    pub fn take_shared_impressions(&self, out: &mut Vec<SharedImpression>, max: usize) {
        if let Some(queue) = self.shared_impressions.get() {
            while out.len() < max {
                let Some(one) = queue.pop() else { break };
                out.push(one);
            }
        }
    }

    /// Impressions the fleet never heard of because the queue to it was full.
    pub fn impressions_unshared(&self) -> u64 {
        self.impressions_unshared.load(Ordering::Relaxed)
    }

    /// The campaign's current frequency period (its day or hour, as its cap counts):
    /// start and end, ms since the Unix epoch; `None` before it is configured.
    pub fn frequency_period(&self, campaign: BudgetSlot) -> Option<(u64, u64)> {
        let hourly = self
            .campaign(campaign)
            .frequency_hourly
            .load(Ordering::Acquire);
        let calendars = self.calendars.lock().expect("budget calendars");
        let b = &calendars.get(campaign)?.as_ref()?.bounds;
        Some(if hourly {
            (b.hour_start_ms, b.hour_end_ms)
        } else {
            (b.day_start_ms, b.day_end_ms)
        })
    }

    /// (campaign, user) pairs that could not be counted because the table was full.
    pub fn frequency_untracked(&self) -> u64 {
        self.frequency.untracked()
    }

    pub fn frequency_capacity(&self) -> usize {
        self.frequency.capacity()
    }

    fn campaign(&self, campaign: BudgetSlot) -> &CampaignBudget {
        &self.campaigns[campaign]
    }

    /// Whether `amount_micros` could be reserved now (a hint: a reservation may still
    /// lose a race; only [`Budgets::reserve`] decides).
    pub fn can_afford(&self, campaign: BudgetSlot, amount_micros: i64) -> bool {
        self.available(self.campaign(campaign)) >= amount_micros
    }

    /// Takes `amount_micros` from the campaign's day, hour and lifetime budgets, or
    /// refuses when that would pass any of them or the ledger is closed.
    pub fn reserve(&self, campaign: BudgetSlot, amount_micros: i64) -> Option<Reservation> {
        self.reserve_with(campaign, amount_micros, FleetRoom::Take)
    }

    /// [`Budgets::reserve`] for a win whose reservation had expired (the money is spent
    /// already): in a fleet it is taken past this host's room, which then owes it to its
    /// next grants, rather than left uncharged.
    pub fn reserve_late(&self, campaign: BudgetSlot, amount_micros: i64) -> Option<Reservation> {
        self.reserve_with(campaign, amount_micros, FleetRoom::Owe)
    }

    fn reserve_with(
        &self,
        campaign: BudgetSlot,
        amount_micros: i64,
        fleet_room: FleetRoom,
    ) -> Option<Reservation> {
        assert!(amount_micros >= 0, "a reservation is never negative");
        let b = self.campaign(campaign);
        if self.closed.load(Ordering::Acquire) || b.tripped.load(Ordering::Acquire) {
            return None;
        }
        let leased = self.leased.load(Ordering::Acquire);
        if leased && !take_room(&b.lease_room_micros, amount_micros) {
            b.lease_wanted.store(true, Ordering::Relaxed);
            return None;
        }
        let taken = self.take_windows(b, campaign, amount_micros, fleet_room);
        if taken.is_none() {
            if leased {
                b.lease_room_micros
                    .fetch_add(amount_micros, Ordering::AcqRel);
            }
            b.refused.fetch_add(1, Ordering::Relaxed);
        }
        taken
    }

    /// [`Budgets::reserve`] for a bid of `partner`: first from the partner's share of
    /// held money (its `max_held_micros`), then from the campaign. The refusal says
    /// which was short.
    pub fn reserve_for(
        &self,
        campaign: BudgetSlot,
        amount_micros: i64,
        partner: Option<u16>,
    ) -> Result<Reservation, Refused> {
        let Some((partner, hold)) =
            partner.and_then(|p| Some((p, self.partners.get(usize::from(p))?)))
        else {
            return self.reserve(campaign, amount_micros).ok_or(Refused::Budget);
        };
        let max = hold.max_micros.load(Ordering::Acquire);
        if !take_within(&hold.held_micros, amount_micros, max) {
            hold.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Refused::PartnerHoldFull);
        }
        match self.reserve(campaign, amount_micros) {
            Some(reservation) => Ok(Reservation {
                partner,
                ..reservation
            }),
            None => {
                give_back_from(&hold.held_micros, amount_micros, "a partner's held money");
                Err(Refused::Budget)
            }
        }
    }

    /// The most a partner's unanswered bids may hold (`None`: no limit).
    pub fn set_partner_max_held(&self, partner: u16, max_micros: Option<i64>) {
        if let Some(hold) = self.partners.get(usize::from(partner)) {
            let max = max_micros.unwrap_or(UNLIMITED);
            assert!(max >= 0, "a partner's held maximum is never negative");
            hold.max_micros.store(max, Ordering::Release);
        }
    }

    /// What a partner's bids hold now, micros.
    pub fn partner_held_micros(&self, partner: u16) -> i64 {
        self.partners
            .get(usize::from(partner))
            .map_or(0, |hold| hold.held_micros.load(Ordering::Acquire))
    }

    /// Reservations refused because the partner's share of held money was full.
    pub fn partner_hold_refusals(&self, partner: u16) -> u64 {
        self.partners
            .get(usize::from(partner))
            .map_or(0, |hold| hold.refused.load(Ordering::Relaxed))
    }

    /// A reservation leaves its partner's share (settled, released or expired).
    fn return_partner(&self, reservation: &Reservation) {
        if let Some(hold) = self.partners.get(usize::from(reservation.partner)) {
            let amount = reservation.amount_micros;
            give_back_from(&hold.held_micros, amount, "a partner's held money");
        }
    }

    /// Takes `amount` from the day, hour and lifetime windows (and, in a fleet, the
    /// day's fleet room first), all or none.
    #[inline]
    fn take_windows(
        &self,
        b: &CampaignBudget,
        campaign: BudgetSlot,
        amount_micros: i64,
        fleet_room: FleetRoom,
    ) -> Option<Reservation> {
        let day = b.day_now.load(Ordering::Acquire);
        let hour = b.hour_now.load(Ordering::Acquire);
        let day_window = &b.day[usize::from(day)];
        let hour_window = &b.hour[usize::from(hour)];
        let room = &b.fleet_room_micros[usize::from(day)];
        if self.is_fleet() {
            match fleet_room {
                FleetRoom::Take if !take_room(room, amount_micros) => return None,
                FleetRoom::Take => {}
                FleetRoom::Owe => {
                    room.fetch_sub(amount_micros, Ordering::AcqRel);
                }
            }
        }
        // AcqRel on each CAS: reservations of one campaign are totally ordered on
        // each window's `used`, which alone guards that window's limit.
        let taken = day_window.take(amount_micros, b.daily_micros.load(Ordering::Acquire))
            && (hour_window.take(amount_micros, b.hourly_micros.load(Ordering::Acquire)) || {
                day_window.give_back(amount_micros);
                false
            })
            && (b
                .lifetime
                .take(amount_micros, b.lifetime_micros.load(Ordering::Acquire))
                || {
                    hour_window.give_back(amount_micros);
                    day_window.give_back(amount_micros);
                    false
                });
        if !taken {
            self.fleet_room_add(b, day, amount_micros);
            return None;
        }
        Some(Reservation {
            campaign,
            amount_micros,
            day,
            hour,
            partner: NO_PARTNER,
        })
    }

    /// Spends a reservation at the clearing price (per impression, micros) in the
    /// periods it was made in, and returns the rest. A clearing price above the
    /// reservation is charged at the reservation and the excess counted, never taken
    /// from other bids' budget.
    pub fn settle(&self, reservation: Reservation, clearing_micros: i64) -> Settlement {
        self.spend(reservation, clearing_micros, true)
    }

    /// Spends a whole reservation whose bid no notice came for (see
    /// [`super::ledger::Unnoticed::Charge`]): spent, but not counted as a win nor in
    /// the clearing figures, which only notices feed.
    pub fn charge_unnoticed(&self, reservation: Reservation) -> Settlement {
        let amount = reservation.amount_micros;
        self.spend(reservation, amount, false)
    }

    fn spend(&self, reservation: Reservation, clearing_micros: i64, won: bool) -> Settlement {
        self.return_partner(&reservation);
        let b = self.campaign(reservation.campaign);
        let clearing = clearing_micros.max(0);
        let charged = clearing.min(reservation.amount_micros);
        let refunded = reservation.amount_micros - charged;
        let overcharged = clearing - charged;
        b.day[usize::from(reservation.day)].settle(charged, refunded);
        b.hour[usize::from(reservation.hour)].settle(charged, refunded);
        b.lifetime.settle(charged, refunded);
        self.fleet_room_add(b, reservation.day, refunded);
        if overcharged > 0 {
            b.overcharged_micros
                .fetch_add(overcharged, Ordering::Relaxed);
        }
        if won {
            b.wins.fetch_add(1, Ordering::Relaxed);
            // The statistic takes what was charged: a clearing price above our bid
            // cannot be true in a first- or second-price auction (and
            // `${AUCTION_PRICE}` rides unsigned), so one absurd notice must not skew
            // every average after it; the excess is counted as overcharged above.
            b.clearing_micros.fetch_add(charged, Ordering::Relaxed);
        }
        self.return_room(b, reservation.amount_micros);
        Settlement {
            campaign: reservation.campaign,
            charged_micros: charged,
            refunded_micros: refunded,
            overcharged_micros: overcharged,
        }
    }

    /// Returns a whole reservation (lost auction, send failure, expiry).
    pub fn release(&self, reservation: Reservation) {
        self.return_partner(&reservation);
        let b = self.campaign(reservation.campaign);
        let amount = reservation.amount_micros;
        b.day[usize::from(reservation.day)].give_back(amount);
        b.hour[usize::from(reservation.hour)].give_back(amount);
        b.lifetime.give_back(amount);
        self.fleet_room_add(b, reservation.day, amount);
        self.return_room(b, amount);
    }

    fn return_room(&self, b: &CampaignBudget, amount_micros: i64) {
        if self.leased.load(Ordering::Acquire) {
            b.lease_room_micros
                .fetch_add(amount_micros, Ordering::AcqRel);
        }
    }

    // ---- leases on money in flight (see `super::lease`) ----

    /// From now on every campaign's bids hold at most its lease, which starts at zero.
    /// Called once, before the first reservation.
    pub fn enable_leases(&self) {
        assert!(
            self.campaigns.iter().all(|b| b.lifetime.reserved() == 0),
            "leases start before any reservation"
        );
        self.leased.store(true, Ordering::Release);
    }

    pub fn is_leased(&self) -> bool {
        self.leased.load(Ordering::Acquire)
    }

    /// Whether the campaign's lease has room for `amount_micros` (a hint, like
    /// [`Budgets::can_afford`]); when not, the control thread is told to raise it.
    #[inline]
    pub fn lease_allows(&self, campaign: BudgetSlot, amount_micros: i64) -> bool {
        if !self.leased.load(Ordering::Relaxed) {
            return true;
        }
        let b = self.campaign(campaign);
        let allows = b.lease_room_micros.load(Ordering::Relaxed) >= amount_micros;
        if !allows {
            b.lease_wanted.store(true, Ordering::Relaxed);
        }
        allows
    }

    /// Adds `micros` to the lease; call only once the journal holds the new lease.
    pub fn grant_lease(&self, campaign: BudgetSlot, micros: i64) {
        assert!(micros >= 0, "a lease grows by a non-negative amount");
        let b = self.campaign(campaign);
        b.lease_micros.fetch_add(micros, Ordering::AcqRel);
        b.lease_room_micros.fetch_add(micros, Ordering::AcqRel);
    }

    /// Takes `micros` off the lease if that much is free, before the journal is told
    /// (a recorded lease may be higher than the real one, never lower).
    pub fn shrink_lease(&self, campaign: BudgetSlot, micros: i64) -> bool {
        assert!(micros >= 0, "a lease shrinks by a non-negative amount");
        let b = self.campaign(campaign);
        if !take_room(&b.lease_room_micros, micros) {
            return false;
        }
        b.lease_micros.fetch_sub(micros, Ordering::AcqRel);
        true
    }

    /// Keeps `micros` of lease held although its bid is settled or released, until
    /// the journal has the record ([`Budgets::unpin_lease`]): a crash before that
    /// replays the notice, and the lease then on disk must still cover it.
    pub fn pin_lease(&self, campaign: BudgetSlot, micros: i64) {
        if self.leased.load(Ordering::Acquire) {
            self.campaign(campaign)
                .lease_room_micros
                .fetch_sub(micros, Ordering::AcqRel);
        }
    }

    pub fn unpin_lease(&self, campaign: BudgetSlot, micros: i64) {
        self.return_room(self.campaign(campaign), micros);
    }

    /// Whether a bid was refused for want of lease room since the last call.
    pub fn take_lease_wanted(&self, campaign: BudgetSlot) -> bool {
        self.campaign(campaign)
            .lease_wanted
            .swap(false, Ordering::AcqRel)
    }

    /// The lease and what is in flight of it.
    pub fn lease(&self, campaign: BudgetSlot) -> LeaseFigures {
        let b = self.campaign(campaign);
        let lease_micros = b.lease_micros.load(Ordering::Acquire);
        LeaseFigures {
            lease_micros,
            in_flight_micros: lease_micros - b.lease_room_micros.load(Ordering::Acquire),
        }
    }

    /// After a restart: holds back up to `micros` (the lease recorded before it, all
    /// that bids still out could spend) in the current windows, past the breaker and a
    /// closed ledger, and within what the windows have left. The hold counts as in
    /// flight; the caller granted the lease it sits in.
    pub fn hold_in_doubt(&self, campaign: BudgetSlot, micros: i64) -> Option<Reservation> {
        let b = self.campaign(campaign);
        // In a fleet the hold is not bounded by the room: those bids were made under
        // grants the store counts already, and the room owes them until grants cover it.
        let amount = micros.min(self.windows_left(b)).max(0);
        if amount == 0 {
            return None;
        }
        let held = self.take_windows(b, campaign, amount, FleetRoom::Owe)?;
        if self.leased.load(Ordering::Acquire) {
            b.lease_room_micros.fetch_sub(amount, Ordering::AcqRel);
        }
        Some(held)
    }

    /// Settles one bid made before a restart out of the in-doubt `hold`: up to
    /// `reserved_micros` (what that bid reserved, its signed price) leaves the hold, and
    /// the clearing price (capped at the bid, as for any win) is charged. Money the
    /// hold no longer covers is charged all the same, past the limit if need be: it
    /// was spent.
    pub fn settle_from_hold(
        &self,
        hold: &mut Reservation,
        reserved_micros: i64,
        clearing_micros: i64,
    ) -> Settlement {
        assert_eq!(hold.partner, NO_PARTNER, "a hold is no one partner's");
        let mut piece = self.split(hold, reserved_micros);
        let charged = clearing_micros.max(0).min(reserved_micros.max(0));
        let beyond = charged - piece.amount_micros;
        if beyond > 0 {
            // Past the hold: taken into the windows unchecked (and into the lease, so
            // the settlement's return of it nets out) before it is settled.
            let b = self.campaign(piece.campaign);
            for w in [
                &b.day[usize::from(piece.day)],
                &b.hour[usize::from(piece.hour)],
                &b.lifetime,
            ] {
                w.used_micros.fetch_add(beyond, Ordering::AcqRel);
            }
            // Past the fleet room too: this host owes it from its next grant.
            self.fleet_room_add(b, piece.day, -beyond);
            self.pin_lease(piece.campaign, beyond);
            piece.amount_micros += beyond;
        }
        self.settle(piece, clearing_micros)
    }

    /// Takes up to `micros` out of `hold` as a reservation of its own (same windows).
    pub fn split(&self, hold: &mut Reservation, micros: i64) -> Reservation {
        let amount = micros.clamp(0, hold.amount_micros);
        hold.amount_micros -= amount;
        Reservation {
            campaign: hold.campaign,
            amount_micros: amount,
            day: hold.day,
            hour: hold.hour,
            partner: hold.partner,
        }
    }

    // ---- the fleet's share of the day (see the module doc and `crate::fleet`) ----

    /// From now on a reservation needs fleet room, which starts at zero: this host
    /// bids only on what the fleet store grants it. Called once, before the first
    /// reservation.
    pub fn enable_fleet(&self) {
        assert!(
            self.campaigns.iter().all(|b| b.lifetime.reserved() == 0),
            "the fleet starts before any reservation"
        );
        self.fleet.store(true, Ordering::Release);
        let _ = self
            .shared_impressions
            .set(ArrayQueue::new(SHARED_IMPRESSIONS_CAPACITY));
    }

    #[inline]
    pub fn is_fleet(&self) -> bool {
        self.fleet.load(Ordering::Relaxed)
    }

    /// Moves the fleet room of day window `day` with a change to its `used` (the
    /// opposite way): `micros` back when money returns, negative when it is taken
    /// unchecked.
    #[inline]
    fn fleet_room_add(&self, b: &CampaignBudget, day: u8, micros: i64) {
        if self.is_fleet() && micros != 0 {
            b.fleet_room_micros[usize::from(day)].fetch_add(micros, Ordering::AcqRel);
        }
    }

    /// The day window that started at `day_start_ms`, if it is one of the two kept.
    fn day_window(b: &CampaignBudget, day_start_ms: u64) -> Option<usize> {
        (0..2).find(|&i| b.day[i].start_ms.load(Ordering::Acquire) == day_start_ms)
    }

    /// The campaign's current day as the fleet sees it.
    pub fn fleet_day(&self, campaign: BudgetSlot) -> FleetDay {
        let b = self.campaign(campaign);
        let now = usize::from(b.day_now.load(Ordering::Acquire));
        let window = &b.day[now];
        FleetDay {
            day_start_ms: window.start_ms.load(Ordering::Acquire),
            room_micros: b.fleet_room_micros[now].load(Ordering::Acquire),
            spent_micros: window.spent_micros.load(Ordering::Acquire),
            used_micros: window.used_micros.load(Ordering::Acquire),
        }
    }

    /// The fleet room and spend of the day that started at `day_start_ms`, while its
    /// window is kept (today's or yesterday's).
    pub fn fleet_day_at(&self, campaign: BudgetSlot, day_start_ms: u64) -> Option<FleetDay> {
        let b = self.campaign(campaign);
        let i = Self::day_window(b, day_start_ms)?;
        Some(FleetDay {
            day_start_ms,
            room_micros: b.fleet_room_micros[i].load(Ordering::Acquire),
            spent_micros: b.day[i].spent_micros.load(Ordering::Acquire),
            used_micros: b.day[i].used_micros.load(Ordering::Acquire),
        })
    }

    /// Adds what the fleet store granted this host for the day that started at
    /// `day_start_ms`; `false` (nothing added) when that day's window is gone.
    pub fn fleet_grant(&self, campaign: BudgetSlot, day_start_ms: u64, micros: i64) -> bool {
        assert!(micros >= 0, "a grant is never negative");
        let b = self.campaign(campaign);
        let Some(i) = Self::day_window(b, day_start_ms) else {
            return false;
        };
        b.fleet_room_micros[i].fetch_add(micros, Ordering::AcqRel);
        true
    }

    /// Takes up to `micros` of free room of that day back (to return it to the fleet):
    /// what was taken, which no bid can use any more.
    pub fn fleet_take_back(&self, campaign: BudgetSlot, day_start_ms: u64, micros: i64) -> i64 {
        let b = self.campaign(campaign);
        let Some(i) = Self::day_window(b, day_start_ms) else {
            return 0;
        };
        let room = &b.fleet_room_micros[i];
        let mut taken = 0;
        let _ = room.fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
            taken = micros.min(left).max(0);
            Some(left - taken)
        });
        taken
    }

    /// Takes `micros` off that day's room unchecked (it may go below zero, and bids
    /// wait until grants cover it): money the store counts as returned by this host
    /// that this run did not know of.
    pub fn fleet_owe(&self, campaign: BudgetSlot, day_start_ms: u64, micros: i64) {
        let b = self.campaign(campaign);
        if let Some(i) = Self::day_window(b, day_start_ms) {
            b.fleet_room_micros[i].fetch_sub(micros, Ordering::AcqRel);
        }
    }

    /// The fleet said the day's budget is all granted (or, `false`, that it is not).
    pub fn set_fleet_exhausted(&self, campaign: BudgetSlot, exhausted: bool) {
        self.campaign(campaign)
            .fleet_exhausted
            .store(exhausted, Ordering::Release);
    }

    /// Whether a campaign that cannot afford `amount_micros` is short of fleet room
    /// only, and the fleet may still grant more: the bid waits on the fleet store
    /// (`budget_unavailable`) rather than on an exhausted budget.
    pub fn waits_on_fleet(&self, campaign: BudgetSlot, amount_micros: i64) -> bool {
        if !self.is_fleet() {
            return false;
        }
        let b = self.campaign(campaign);
        let now = usize::from(b.day_now.load(Ordering::Relaxed));
        let room = b.fleet_room_micros[now].load(Ordering::Relaxed);
        let day_left =
            b.daily_micros.load(Ordering::Relaxed) - b.day[now].used_micros.load(Ordering::Relaxed);
        room < amount_micros
            && day_left >= amount_micros
            && !b.fleet_exhausted.load(Ordering::Relaxed)
    }

    /// Changes a campaign's daily budget (operator action). Lowering it below what
    /// today's bids already spent and hold stops reservations until a new day or a
    /// raise.
    pub fn set_daily(&self, campaign: BudgetSlot, daily_micros: i64) {
        assert!(daily_micros >= 0, "daily budget must be non-negative");
        self.campaign(campaign)
            .daily_micros
            .store(daily_micros, Ordering::Release);
    }

    /// Sets a campaign's limits and calendar (at load and on every reload). The first
    /// time, its current day and hour start now; a changed time zone keeps the
    /// current periods (no money is forgotten) and ends them at the new zone's next
    /// boundary.
    pub fn configure(
        &self,
        campaign: BudgetSlot,
        id: &str,
        limits: BudgetLimits,
        calendar: &Calendar,
        now_ms: u64,
    ) {
        assert!(
            limits.daily_micros >= 0,
            "daily budget must be non-negative"
        );
        let b = self.campaign(campaign);
        b.daily_micros.store(limits.daily_micros, Ordering::Release);
        b.hourly_micros
            .store(limits.hourly_micros.unwrap_or(UNLIMITED), Ordering::Release);
        b.lifetime_micros.store(
            limits.lifetime_micros.unwrap_or(UNLIMITED),
            Ordering::Release,
        );
        let mut calendars = self.calendars.lock().expect("budget calendars");
        if calendars.len() <= campaign {
            calendars.resize_with(campaign + 1, || None);
        }
        let slot = &mut calendars[campaign];
        match slot {
            Some(c) if c.calendar.name() == calendar.name() => {}
            Some(c) => {
                let bounds = calendar.bounds(now_ms);
                c.calendar = calendar.clone();
                c.bounds.day_end_ms = bounds.day_end_ms;
                c.bounds.hour_end_ms = bounds.hour_end_ms;
            }
            None => {
                self.by_id
                    .lock()
                    .expect("budget ids")
                    .insert(id.to_owned(), campaign);
                let bounds = calendar.bounds(now_ms);
                b.day[usize::from(b.day_now.load(Ordering::Acquire))]
                    .start_ms
                    .store(bounds.day_start_ms, Ordering::Release);
                b.hour[usize::from(b.hour_now.load(Ordering::Acquire))]
                    .start_ms
                    .store(bounds.hour_start_ms, Ordering::Release);
                *slot = Some(SlotCalendar {
                    id: id.to_owned(),
                    calendar: calendar.clone(),
                    bounds,
                    rate_window_start_ms: now_ms,
                    rate_window_spent_micros: b.lifetime.spent_micros.load(Ordering::Acquire),
                });
            }
        }
        let end = slot
            .as_ref()
            .map_or(u64::MAX, |c| c.bounds.day_end_ms.min(c.bounds.hour_end_ms));
        self.next_roll_ms.fetch_min(end, Ordering::AcqRel);
    }

    /// Starts the new day and hour of every campaign whose period ended by `now_ms`
    /// (the control thread, on its tick). Returns how many campaigns started a new
    /// day. Cheap until the earliest period end passes.
    pub fn roll(&self, now_ms: u64) -> usize {
        if now_ms < self.next_roll_ms.load(Ordering::Acquire) {
            return 0;
        }
        let mut calendars = self.calendars.lock().expect("budget calendars");
        let mut new_days = 0;
        let mut next = u64::MAX;
        for (slot, entry) in calendars.iter_mut().enumerate() {
            let Some(c) = entry else { continue };
            if now_ms >= c.bounds.day_end_ms || now_ms >= c.bounds.hour_end_ms {
                let bounds = c.calendar.bounds(now_ms);
                let b = &self.campaigns[slot];
                if now_ms >= c.bounds.day_end_ms {
                    // The idle window's room restarts from nothing granted (before the
                    // window is current, so no bid takes an old room).
                    let next = 1 - usize::from(b.day_now.load(Ordering::Acquire));
                    let outstanding = b.day[next].reserved().max(0);
                    b.fleet_room_micros[next].store(-outstanding, Ordering::Release);
                    b.fleet_exhausted.store(false, Ordering::Release);
                    Self::start_period(&b.day, &b.day_now, bounds.day_start_ms);
                    new_days += 1;
                }
                if now_ms >= c.bounds.hour_end_ms {
                    Self::start_period(&b.hour, &b.hour_now, bounds.hour_start_ms);
                }
                c.bounds = bounds;
            }
            next = next.min(c.bounds.day_end_ms).min(c.bounds.hour_end_ms);
        }
        self.next_roll_ms.store(next, Ordering::Release);
        new_days
    }

    /// Readies the idle window for the period from `start_ms` and makes it current;
    /// bids reserving at this instant land in either, each charged where it landed.
    fn start_period(windows: &[Window; 2], now: &AtomicU8, start_ms: u64) {
        let next = 1 - now.load(Ordering::Acquire);
        windows[usize::from(next)].restart(start_ms);
        now.store(next, Ordering::Release);
    }

    /// Counts spend the journal recorded before a restart in the current windows. A
    /// window may end up past its limit (the money was spent either way): nothing
    /// more is reserved in it. Called before the first bid.
    pub fn recover(&self, campaign: BudgetSlot, spent: RecoveredSpend) {
        assert!(
            spent.day_micros >= 0 && spent.hour_micros >= 0 && spent.lifetime_micros >= 0,
            "recorded spend is never negative"
        );
        let b = self.campaign(campaign);
        let add = |w: &Window, micros: i64| {
            w.used_micros.fetch_add(micros, Ordering::AcqRel);
            w.spent_micros.fetch_add(micros, Ordering::AcqRel);
        };
        let day = b.day_now.load(Ordering::Acquire);
        add(&b.day[usize::from(day)], spent.day_micros);
        self.fleet_room_add(b, day, -spent.day_micros);
        add(
            &b.hour[usize::from(b.hour_now.load(Ordering::Acquire))],
            spent.hour_micros,
        );
        add(&b.lifetime, spent.lifetime_micros);
    }

    /// Pauses campaigns spending faster than `breaker` allows, and returns them (the
    /// control thread, about once a second). A window starts when the last one ended
    /// or the campaign tripped; it trips as soon as its spend passes the allowance for
    /// the whole window, so a runaway is caught within the window, not after it.
    pub fn check_spend_rates(&self, now_ms: u64) -> Vec<Trip> {
        let breaker = self.breaker();
        let mut trips = Vec::new();
        if breaker.multiple == 0 || breaker.window_ms == 0 {
            return trips;
        }
        let mut calendars = self.calendars.lock().expect("budget calendars");
        for (slot, entry) in calendars.iter_mut().enumerate() {
            let Some(c) = entry else { continue };
            let b = &self.campaigns[slot];
            let spent_now = b.lifetime.spent_micros.load(Ordering::Acquire);
            let restart = |c: &mut SlotCalendar| {
                c.rate_window_start_ms = now_ms;
                c.rate_window_spent_micros = spent_now;
            };
            if b.tripped.load(Ordering::Acquire) {
                restart(c);
                continue;
            }
            let day_ms = c
                .bounds
                .day_end_ms
                .saturating_sub(c.bounds.day_start_ms)
                .max(1);
            let daily = b.daily_micros.load(Ordering::Acquire).max(0);
            let allowed =
                i128::from(breaker.multiple) * i128::from(daily) * i128::from(breaker.window_ms)
                    / i128::from(day_ms);
            let allowed = i64::try_from(allowed).unwrap_or(i64::MAX);
            let spent = spent_now - c.rate_window_spent_micros;
            if daily > 0 && spent > allowed {
                b.tripped.store(true, Ordering::Release);
                trips.push(Trip {
                    slot,
                    campaign: c.id.clone(),
                    spent_micros: spent,
                    allowed_micros: allowed,
                    window_ms: breaker.window_ms,
                });
                restart(c);
            } else if now_ms.saturating_sub(c.rate_window_start_ms) >= breaker.window_ms {
                restart(c);
            }
        }
        trips
    }

    /// Sets the breaker's rule (at load and on reload).
    pub fn set_breaker(&self, breaker: SpendBreaker) {
        self.breaker_multiple
            .store(breaker.multiple, Ordering::Release);
        self.breaker_window_ms
            .store(breaker.window_ms, Ordering::Release);
    }

    pub fn breaker(&self) -> SpendBreaker {
        SpendBreaker {
            multiple: self.breaker_multiple.load(Ordering::Acquire),
            window_ms: self.breaker_window_ms.load(Ordering::Acquire),
        }
    }

    /// Pauses a campaign as the breaker does (its state read back at start).
    pub fn trip(&self, campaign: BudgetSlot) {
        self.campaign(campaign)
            .tripped
            .store(true, Ordering::Release);
    }

    /// Whether the breaker paused the campaign.
    pub fn is_tripped(&self, campaign: BudgetSlot) -> bool {
        self.campaign(campaign).tripped.load(Ordering::Relaxed)
    }

    /// An operator's resume: clears the breaker; whether it was tripped.
    pub fn reset_breaker(&self, campaign: BudgetSlot) -> bool {
        self.campaign(campaign)
            .tripped
            .swap(false, Ordering::AcqRel)
    }

    /// The slot of a configured campaign, by id.
    pub fn slot_of(&self, id: &str) -> Option<BudgetSlot> {
        let by_id = self.by_id.lock().expect("budget ids");
        by_id.get(id).copied()
    }

    /// The id of the campaign configured in `slot`.
    pub fn id_of(&self, campaign: BudgetSlot) -> Option<String> {
        let calendars = self.calendars.lock().expect("budget calendars");
        calendars.get(campaign)?.as_ref().map(|c| c.id.clone())
    }

    /// Every configured campaign's slot, into `out` (cleared first).
    pub fn configured(&self, out: &mut Vec<BudgetSlot>) {
        out.clear();
        let calendars = self.calendars.lock().expect("budget calendars");
        out.extend(
            calendars
                .iter()
                .enumerate()
                .filter_map(|(slot, c)| c.as_ref().map(|_| slot)),
        );
    }

    pub fn daily_micros(&self, campaign: BudgetSlot) -> i64 {
        self.campaign(campaign).daily_micros.load(Ordering::Acquire)
    }

    /// Closes (or reopens) every budget: while closed nothing is reserved. The control
    /// thread closes it while the spend journal cannot be written.
    pub fn close(&self, closed: bool) {
        self.closed.store(closed, Ordering::Release);
    }

    /// Whether reservations are stopped because spend cannot be recorded.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The least left of the campaign's day, hour and lifetime budgets, and in a fleet
    /// of the day's room.
    fn available(&self, b: &CampaignBudget) -> i64 {
        let mut left = self.windows_left(b);
        if self.is_fleet() {
            let day_now = usize::from(b.day_now.load(Ordering::Relaxed));
            left = left.min(b.fleet_room_micros[day_now].load(Ordering::Relaxed));
        }
        left
    }

    /// The least left of the campaign's day, hour and lifetime budgets.
    fn windows_left(&self, b: &CampaignBudget) -> i64 {
        let left = |w: &Window, limit: &AtomicI64| {
            limit
                .load(Ordering::Relaxed)
                .saturating_sub(w.used_micros.load(Ordering::Relaxed))
        };
        let day = left(
            &b.day[usize::from(b.day_now.load(Ordering::Relaxed))],
            &b.daily_micros,
        );
        let hour = left(
            &b.hour[usize::from(b.hour_now.load(Ordering::Relaxed))],
            &b.hourly_micros,
        );
        day.min(hour).min(left(&b.lifetime, &b.lifetime_micros))
    }

    pub fn snapshot(&self, campaign: BudgetSlot) -> BudgetSnapshot {
        let b = self.campaign(campaign);
        let day_now = usize::from(b.day_now.load(Ordering::Acquire));
        let day = &b.day[day_now];
        let previous = &b.day[1 - day_now];
        let hour = &b.hour[usize::from(b.hour_now.load(Ordering::Acquire))];
        let limit = |l: &AtomicI64| Some(l.load(Ordering::Acquire)).filter(|&v| v != UNLIMITED);
        BudgetSnapshot {
            daily_micros: b.daily_micros.load(Ordering::Acquire),
            hourly_micros: limit(&b.hourly_micros),
            lifetime_micros: limit(&b.lifetime_micros),
            day_start_ms: day.start_ms.load(Ordering::Acquire),
            hour_start_ms: hour.start_ms.load(Ordering::Acquire),
            available_micros: self.available(b),
            reserved_micros: day.reserved(),
            spent_micros: day.spent_micros.load(Ordering::Acquire),
            hour_spent_micros: hour.spent_micros.load(Ordering::Acquire),
            lifetime_spent_micros: b.lifetime.spent_micros.load(Ordering::Acquire),
            previous_day_spent_micros: previous.spent_micros.load(Ordering::Acquire),
            breaker_tripped: b.tripped.load(Ordering::Acquire),
            overcharged_micros: b.overcharged_micros.load(Ordering::Acquire),
            refused: b.refused.load(Ordering::Relaxed),
            wins: b.wins.load(Ordering::Relaxed),
            clearing_micros: b.clearing_micros.load(Ordering::Relaxed),
            lease: self.is_leased().then(|| self.lease(campaign)),
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

    /// Issue 19: bids nobody answers must not hold a campaign's budget hostage. One
    /// partner's bids hold at most its maximum; other partners' bids still reserve.
    #[test]
    fn a_partner_holds_at_most_its_maximum_and_gets_it_back() {
        let b = Budgets::new([1_000_000]);
        b.set_partner_max_held(0, Some(250_000));
        let mut held = Vec::new();
        while let Ok(r) = b.reserve_for(0, 100_000, Some(0)) {
            held.push(r);
        }
        assert_eq!(held.len(), 2, "250,000 holds two bids of 100,000");
        assert_eq!(
            b.reserve_for(0, 100_000, Some(0)),
            Err(Refused::PartnerHoldFull)
        );
        assert_eq!(b.partner_held_micros(0), 200_000);
        assert!(
            b.reserve_for(0, 100_000, Some(1)).is_ok(),
            "another partner bids"
        );
        assert!(
            b.reserve_for(0, 100_000, None).is_ok(),
            "no partner: no share"
        );
        // Settled, released or split and settled: the share comes back whole.
        let mut first = held.pop().unwrap();
        let piece = b.split(&mut first, 40_000);
        b.settle(piece, 30_000);
        b.release(first);
        b.settle(held.pop().unwrap(), 100_000);
        assert_eq!(b.partner_held_micros(0), 0);
        assert!(b.reserve_for(0, 100_000, Some(0)).is_ok());
        // The campaign short: the partner's share is given back at once.
        let big = Budgets::new([50_000]);
        assert_eq!(big.reserve_for(0, 60_000, Some(3)), Err(Refused::Budget));
        assert_eq!(big.partner_held_micros(3), 0);
    }

    /// Milliseconds of a UTC instant written as RFC 3339.
    fn at(text: &str) -> u64 {
        text.parse::<jiff::Timestamp>().unwrap().as_millisecond() as u64
    }

    fn balanced(b: &Budgets, c: BudgetSlot) -> bool {
        let s = b.snapshot(c);
        s.available_micros + s.reserved_micros + s.spent_micros == s.daily_micros
    }

    /// One campaign with `limits` in `zone`, configured at `now`.
    fn campaign(limits: BudgetLimits, zone: &str, now: u64) -> Budgets {
        let b = Budgets::new([0]);
        b.configure(0, "c1", limits, &Calendar::named(zone).unwrap(), now);
        b
    }

    fn daily(micros: i64) -> BudgetLimits {
        BudgetLimits {
            daily_micros: micros,
            hourly_micros: None,
            lifetime_micros: None,
        }
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
                campaign: 0,
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
        assert_eq!(
            (snap.hour_spent_micros, snap.lifetime_spent_micros),
            (1_500, 1_500)
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
        // An absurd clearing price (1e6 CPM) does not enter the clearing statistic.
        let r = b.reserve(0, 2_000).unwrap();
        b.settle(r, 1_000_000_000);
        let snap = b.snapshot(0);
        assert_eq!((snap.wins, snap.clearing_micros), (2, 4_000));
        assert!(balanced(&b, 0));
    }

    #[test]
    fn lowering_the_budget_below_spend_stops_reservations_until_the_next_day() {
        let now = at("2026-03-02T10:00:00Z");
        let b = campaign(daily(10_000), "UTC", now);
        let r = b.reserve(0, 6_000).unwrap();
        b.settle(r, 6_000);
        b.set_daily(0, 5_000);
        assert!(b.reserve(0, 1).is_none());
        assert!(balanced(&b, 0));
        assert_eq!(b.roll(at("2026-03-03T00:00:00Z")), 1);
        assert_eq!(b.snapshot(0).available_micros, 5_000);
        assert!(balanced(&b, 0));
    }

    #[test]
    fn a_utc_day_rolls_at_midnight_and_wins_survive_it() {
        let b = campaign(daily(10_000), "UTC", at("2026-03-02T23:00:00Z"));
        let r = b.reserve(0, 4_000).unwrap();
        b.settle(r, 4_000);
        assert_eq!(b.roll(at("2026-03-02T23:59:59.999Z")), 0);
        assert_eq!(b.snapshot(0).available_micros, 6_000);
        assert_eq!(b.roll(at("2026-03-03T00:00:00Z")), 1);
        let s = b.snapshot(0);
        assert_eq!(s.day_start_ms, at("2026-03-03T00:00:00Z"));
        assert_eq!((s.available_micros, s.spent_micros), (10_000, 0));
        assert_eq!((s.previous_day_spent_micros, s.wins), (4_000, 1));
        assert_eq!(s.lifetime_spent_micros, 4_000);
    }

    /// In a fleet a host bids only on what was granted for the day: the room follows
    /// every reservation, refund and release, goes back on request without touching
    /// money bids hold, and a new day starts with nothing granted while yesterday's
    /// late win is charged to yesterday's room.
    #[test]
    fn a_fleet_host_bids_only_within_its_grant_and_each_day_starts_empty() {
        let b = campaign(daily(100_000), "UTC", at("2026-03-02T23:00:00Z"));
        b.enable_fleet();
        let today = b.fleet_day(0).day_start_ms;
        assert!(b.reserve(0, 1).is_none(), "nothing granted yet");
        assert!(b.waits_on_fleet(0, 1));
        assert!(b.fleet_grant(0, today, 10_000));
        let first = b.reserve(0, 6_000).unwrap();
        assert!(
            b.reserve(0, 6_000).is_none(),
            "past the grant, within the day"
        );
        assert_eq!(b.snapshot(0).available_micros, 4_000);
        b.settle(first, 5_000); // 1,000 refunded to the room
        assert_eq!(b.fleet_day(0).room_micros, 5_000);
        let held = b.reserve(0, 3_000).unwrap();
        assert_eq!(
            b.fleet_take_back(0, today, 10_000),
            2_000,
            "only the free room"
        );
        assert_eq!(b.fleet_day(0).room_micros, 0);
        b.release(held);
        assert_eq!(b.fleet_day(0).room_micros, 3_000);
        let late = b.reserve(0, 3_000).unwrap();
        // Midnight: the new day has no room; yesterday's bid settles into yesterday.
        assert_eq!(b.roll(at("2026-03-03T00:00:00Z")), 1);
        let tomorrow = b.fleet_day(0);
        assert_eq!((tomorrow.room_micros, tomorrow.used_micros), (0, 0));
        assert!(b.reserve(0, 1).is_none());
        b.settle(late, 1_000);
        assert_eq!(b.fleet_day_at(0, today).unwrap().room_micros, 2_000);
        assert_eq!(b.fleet_day(0).room_micros, 0);
        // The store says the day is all granted: bids short of room are exhausted.
        b.set_fleet_exhausted(0, true);
        assert!(!b.waits_on_fleet(0, 1));
        assert!(
            !b.fleet_grant(0, at("2026-03-01T00:00:00Z"), 1),
            "a day no longer kept"
        );
    }

    #[test]
    fn a_reservation_made_before_midnight_is_charged_to_its_own_day() {
        let b = campaign(
            daily(10_000),
            "America/New_York",
            at("2026-01-15T04:00:00Z"),
        );
        // 23:59 EST on the 14th: the bid holds 3,000 of that day.
        let late = b.reserve(0, 3_000).unwrap();
        assert_eq!(b.roll(at("2026-01-15T05:00:00Z")), 1, "midnight EST");
        let s = b.snapshot(0);
        assert_eq!((s.available_micros, s.reserved_micros), (10_000, 0));
        // Its win comes after midnight: yesterday is charged, today untouched.
        b.settle(late, 2_500);
        let s = b.snapshot(0);
        assert_eq!((s.spent_micros, s.previous_day_spent_micros), (0, 2_500));
        assert_eq!(s.available_micros, 10_000);
        assert!(balanced(&b, 0));
    }

    #[test]
    fn new_york_days_roll_at_local_midnight_across_both_clock_changes() {
        let b = campaign(daily(1_000), "America/New_York", at("2026-03-07T12:00:00Z"));
        // Spring: 8 March has 23 hours, from 05:00 UTC to 04:00 UTC.
        assert_eq!(b.roll(at("2026-03-08T04:59:59Z")), 0);
        assert_eq!(b.roll(at("2026-03-08T05:00:00Z")), 1);
        assert_eq!(b.roll(at("2026-03-09T03:59:59Z")), 0);
        assert_eq!(b.roll(at("2026-03-09T04:00:00Z")), 1);
        assert_eq!(b.snapshot(0).day_start_ms, at("2026-03-09T04:00:00Z"));
        // Autumn: 1 November has 25 hours, from 04:00 UTC to 05:00 UTC.
        assert_eq!(b.roll(at("2026-11-01T04:00:00Z")), 1);
        let r = b.reserve(0, 1_000).unwrap();
        b.settle(r, 1_000);
        assert_eq!(
            b.roll(at("2026-11-02T04:59:59Z")),
            0,
            "the 25th hour is still the 1st"
        );
        assert!(b.reserve(0, 1).is_none());
        assert_eq!(b.roll(at("2026-11-02T05:00:00Z")), 1);
        assert!(b.reserve(0, 1_000).is_some());
    }

    #[test]
    fn an_hourly_cap_refuses_within_the_hour_and_frees_at_the_next() {
        let limits = BudgetLimits {
            daily_micros: 10_000,
            hourly_micros: Some(1_500),
            lifetime_micros: None,
        };
        let b = campaign(limits, "UTC", at("2026-03-02T10:15:00Z"));
        let r = b.reserve(0, 1_000).unwrap();
        assert!(b.reserve(0, 600).is_none(), "past the hour's 1,500");
        assert_eq!(b.snapshot(0).available_micros, 500);
        b.release(r);
        let r = b.reserve(0, 1_500).unwrap();
        b.settle(r, 1_500);
        assert_eq!(
            b.roll(at("2026-03-02T11:00:00Z")),
            0,
            "a new hour, not a new day"
        );
        let s = b.snapshot(0);
        assert_eq!(s.hour_start_ms, at("2026-03-02T11:00:00Z"));
        assert_eq!((s.hour_spent_micros, s.spent_micros), (0, 1_500));
        assert!(b.reserve(0, 1_500).is_some());
        assert!(b.reserve(0, 1).is_none());
    }

    #[test]
    fn a_lifetime_budget_holds_across_days() {
        let limits = BudgetLimits {
            daily_micros: 1_000,
            hourly_micros: None,
            lifetime_micros: Some(2_500),
        };
        let b = campaign(limits, "UTC", at("2026-03-02T10:00:00Z"));
        for day in ["2026-03-03T00:00:00Z", "2026-03-04T00:00:00Z"] {
            let r = b.reserve(0, 1_000).unwrap();
            b.settle(r, 1_000);
            assert!(b.reserve(0, 1).is_none(), "the day's budget is spent");
            b.roll(at(day));
        }
        assert!(b.reserve(0, 501).is_none(), "500 left of the lifetime");
        let s = b.snapshot(0);
        assert_eq!((s.available_micros, s.lifetime_spent_micros), (500, 2_000));
        assert!(b.reserve(0, 500).is_some());
    }

    #[test]
    fn recovered_spend_fills_each_window_and_may_pass_the_limit() {
        let limits = BudgetLimits {
            daily_micros: 1_000,
            hourly_micros: Some(800),
            lifetime_micros: Some(5_000),
        };
        let b = campaign(limits, "UTC", at("2026-03-02T10:00:00Z"));
        b.recover(
            0,
            RecoveredSpend {
                day_micros: 600,
                hour_micros: 100,
                lifetime_micros: 4_600,
            },
        );
        let s = b.snapshot(0);
        assert_eq!((s.spent_micros, s.hour_spent_micros), (600, 100));
        assert_eq!(s.available_micros, 400);
        assert!(b.reserve(0, 401).is_none());
        let b = Budgets::new([1_000]);
        b.recover(
            0,
            RecoveredSpend {
                day_micros: 1_300,
                hour_micros: 1_300,
                lifetime_micros: 1_300,
            },
        );
        assert_eq!(b.snapshot(0).available_micros, -300);
        assert!(b.reserve(0, 0).is_none());
    }

    #[test]
    fn a_closed_ledger_refuses_every_reservation_until_reopened() {
        let b = Budgets::new([1_000]);
        b.close(true);
        assert!(b.is_closed());
        assert!(b.reserve(0, 1).is_none());
        b.close(false);
        assert!(b.reserve(0, 1).is_some());
    }

    #[test]
    fn a_changed_time_zone_keeps_todays_spend_and_ends_the_day_at_its_midnight() {
        let now = at("2026-03-02T20:00:00Z");
        let b = campaign(daily(1_000), "UTC", now);
        let r = b.reserve(0, 700).unwrap();
        b.settle(r, 700);
        b.configure(
            0,
            "c1",
            daily(1_000),
            &Calendar::named("America/New_York").unwrap(),
            now,
        );
        assert_eq!(b.snapshot(0).spent_micros, 700);
        assert_eq!(
            b.roll(at("2026-03-03T00:00:00Z")),
            0,
            "UTC midnight no longer counts"
        );
        assert_eq!(b.roll(at("2026-03-03T05:00:00Z")), 1);
        assert_eq!(b.snapshot(0).available_micros, 1_000);
        assert_eq!(b.snapshot(0).day_start_ms, at("2026-03-03T05:00:00Z"));
    }

    #[test]
    fn the_breaker_trips_past_three_times_the_pace_and_stays_until_reset() {
        let start = at("2026-03-02T10:00:00Z");
        // 86,400,000 a day is 1,000 a second: 3× over 60 s allows 180,000.
        let b = campaign(daily(86_400_000), "UTC", start);
        let spend = |micros: i64| {
            let r = b.reserve(0, micros).unwrap();
            b.settle(r, micros);
        };
        spend(150_000);
        assert!(b.check_spend_rates(start + 30_000).is_empty());
        // A new window: what the last one spent no longer counts.
        assert!(b.check_spend_rates(start + 60_000).is_empty());
        spend(170_000);
        assert!(b.check_spend_rates(start + 70_000).is_empty());
        spend(20_000);
        let trips = b.check_spend_rates(start + 80_000);
        assert_eq!(
            trips,
            vec![Trip {
                slot: 0,
                campaign: "c1".into(),
                spent_micros: 190_000,
                allowed_micros: 180_000,
                window_ms: 60_000,
            }]
        );
        assert!(b.snapshot(0).breaker_tripped);
        assert!(b.reserve(0, 1).is_none(), "paused");
        assert!(
            b.check_spend_rates(start + 200_000).is_empty(),
            "trips once"
        );
        assert!(b.reset_breaker(0));
        assert!(!b.reset_breaker(0), "already reset");
        assert!(b.reserve(0, 1).is_some());
        assert_eq!(b.slot_of("c1"), Some(0));
        assert_eq!(b.slot_of("nope"), None);
        b.set_breaker(SpendBreaker {
            multiple: 0,
            ..SpendBreaker::default()
        });
        spend(10_000_000);
        assert!(
            b.check_spend_rates(start + 210_000).is_empty(),
            "turned off"
        );
    }

    #[test]
    fn bids_hold_no_more_than_the_lease_and_a_pinned_settlement_keeps_its_part() {
        let b = Budgets::new([100_000]);
        b.enable_leases();
        assert!(b.reserve(0, 1).is_none(), "no lease yet");
        assert!(b.take_lease_wanted(0), "the refusal asks for a lease");
        assert!(!b.take_lease_wanted(0));
        b.grant_lease(0, 5_000);
        let r1 = b.reserve(0, 3_000).unwrap();
        assert!(!b.lease_allows(0, 2_001));
        assert!(b.reserve(0, 2_001).is_none(), "past the lease");
        let r2 = b.reserve(0, 2_000).unwrap();
        assert_eq!(
            b.lease(0),
            LeaseFigures {
                lease_micros: 5_000,
                in_flight_micros: 5_000
            }
        );
        // A win whose record is not yet durable keeps its part of the lease.
        b.pin_lease(0, 3_000);
        b.settle(r1, 1_000);
        assert_eq!(b.lease(0).in_flight_micros, 5_000);
        assert!(b.reserve(0, 1).is_none());
        b.unpin_lease(0, 3_000);
        assert_eq!(b.lease(0).in_flight_micros, 2_000);
        // Shrinking takes only room no bid holds.
        assert!(!b.shrink_lease(0, 3_001));
        assert!(b.shrink_lease(0, 3_000));
        assert_eq!(
            b.lease(0),
            LeaseFigures {
                lease_micros: 2_000,
                in_flight_micros: 2_000
            }
        );
        b.release(r2);
        assert_eq!(b.lease(0).in_flight_micros, 0);
        assert_eq!(b.snapshot(0).spent_micros, 1_000);
    }

    #[test]
    fn an_in_doubt_hold_is_taken_past_the_breaker_within_what_is_left() {
        let b = Budgets::new([10_000]);
        b.enable_leases();
        b.recover(
            0,
            RecoveredSpend {
                day_micros: 7_000,
                hour_micros: 0,
                lifetime_micros: 7_000,
            },
        );
        b.trip(0);
        b.grant_lease(0, 5_000);
        let hold = b.hold_in_doubt(0, 5_000).unwrap();
        assert_eq!(hold.amount_micros, 3_000, "no more than the day has left");
        assert_eq!(b.snapshot(0).available_micros, 0);
        assert_eq!(b.lease(0).in_flight_micros, 3_000);
        b.release(hold);
        assert_eq!(b.lease(0).in_flight_micros, 0);
    }
}
