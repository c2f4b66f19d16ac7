//! The spend ledger: every bid in flight and the budget it holds, until a notice
//! settles or releases it, or it expires.
//!
//! Workers never touch the ledger's map. They push each bid's reservation into a
//! bounded lock-free [`LedgerInbox`] and move on; one owner (the control thread)
//! drains the inbox, applies notices and expires old reservations. So the hot path
//! takes no lock, and a slow notice burst cannot stall a worker. When the inbox is
//! full the worker gets its reservation back, releases it and answers no-bid: the
//! budget can never be held by a bid the ledger does not know (fail closed).
//!
//! A notice settles a bid once. A second notice for the same bid (exchanges send
//! both nurl and burl, and retry) is recognised for a while after and counted as a
//! duplicate, never charged twice.
//!
//! Settlement does not depend on the order notices come in: a bid whose reservation
//! went back (a loss notice came first, or no notice within its horizon) is still
//! charged when its win or bill notice comes within the window it is remembered for,
//! out of what the budget has then. A budget never goes past its limit for it: when
//! nothing is left the win is counted `unfunded` (`late_unfunded`), never forced.
//!
//! A partner that sends a notice for every bid, won or lost, can have its silent bids
//! charged instead ([`Unnoticed::Charge`]): no notice within the horizon means the
//! notice was lost, and the bid may have won. Charging it at its price keeps what the
//! exchange bills within the budget (fail closed); the cost is the lost bids among
//! them, counted when their loss notice comes late (`charged_then_lost`). Bids the
//! ledger does not hold are outside that: those made before a restart (released with
//! the in-doubt hold) and those it refused when full ([`MAX_PENDING`]).
//!
//! After a restart the ledger also holds, per campaign, the money bids made before it
//! may still spend (the lease the journal recorded, see [`super::lease`]): a notice for
//! such a bid is charged out of that hold, and the rest of the hold returns once no
//! bid of before the restart can still settle.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_queue::ArrayQueue;
use rustc_hash::FxHashMap;

use crate::money::bid_id::BidId;
use crate::money::budget::{BudgetSlot, Budgets, Reservation, Settlement};

/// Bids a worker can hand over before the owner drains them; at 100k bids/s and a
/// drain every millisecond this is 40× headroom.
pub const INBOX_CAPACITY: usize = 4_096;
pub use crate::limits::{MAX_PENDING, MAX_REMEMBERED_BIDS};

/// A bid that left with budget reserved.
#[derive(Debug)]
pub struct HeldBid {
    pub bid_id: BidId,
    pub reservation: Reservation,
    /// When the reservation is returned if no notice came, ms since the Unix epoch.
    pub expires_at_ms: u64,
    /// The user a win counts against (campaigns with a frequency cap).
    pub user_key: Option<u64>,
    /// What its expiry does with the money (its partner's `unnoticed_bids`).
    pub unnoticed: Unnoticed,
    /// Its imp's market segment ([`bidder_common::table::segment::SegmentKey`]), where
    /// its notice is counted for the controller.
    pub segment: u64,
}

/// What happens to a bid's reservation when no notice came within its partner's
/// horizon (`unnoticed_bids` in a partner's configuration).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unnoticed {
    /// The money goes back: right for exchanges that send no loss notices (silence
    /// mostly means a loss). A win notice that comes later is still charged.
    #[default]
    Release,
    /// The bid is charged at its price: right for exchanges that send a notice for
    /// every bid, where silence means a lost notice, so the exchange's bill can never
    /// pass the budget.
    Charge,
}

/// A bid charged at expiry ([`Unnoticed::Charge`]); its owner journals it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChargedUnnoticed {
    pub bid_id: BidId,
    pub settlement: Settlement,
}

/// Where workers hand over reservations. Shared (`Arc`) between all workers and the
/// ledger's owner.
///
/// Room is claimed before it is used ([`LedgerInbox::claim`]): a worker learns that the
/// ledger will take every bid of a response before it sends any, so a response never
/// carries a bid whose reservation the ledger refused. Invariant: `free` ≤ the queue's
/// free slots (a pop is counted back only after it happened).
#[derive(Debug)]
pub struct LedgerInbox {
    queue: ArrayQueue<HeldBid>,
    free: AtomicUsize,
}

/// Room in the inbox for a known number of bids; what is not used goes back on drop.
#[derive(Debug)]
pub struct InboxClaim<'a> {
    inbox: &'a LedgerInbox,
    left: usize,
}

impl InboxClaim<'_> {
    /// Hands one claimed bid to the ledger; cannot fail (its room was claimed).
    pub fn hold(&mut self, bid: HeldBid) {
        assert!(self.left > 0, "more bids held than claimed");
        self.left -= 1;
        let pushed = self.inbox.queue.push(bid);
        assert!(
            pushed.is_ok(),
            "claimed room in the ledger inbox was missing"
        );
    }
}

impl Drop for InboxClaim<'_> {
    fn drop(&mut self) {
        self.inbox.free.fetch_add(self.left, Ordering::AcqRel);
    }
}

impl LedgerInbox {
    pub fn new(capacity: usize) -> LedgerInbox {
        LedgerInbox {
            queue: ArrayQueue::new(capacity),
            free: AtomicUsize::new(capacity),
        }
    }

    /// Room for `bids` reservations at once, or `None` when the inbox cannot take them
    /// all (the caller releases every reservation and sends none of the bids).
    pub fn claim(&self, bids: usize) -> Option<InboxClaim<'_>> {
        self.free
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |free| {
                free.checked_sub(bids)
            })
            .ok()?;
        Some(InboxClaim {
            inbox: self,
            left: bids,
        })
    }

    /// Hands one reservation to the ledger. `Err` gives it back when the inbox is full:
    /// the caller must release it and not send the bid.
    pub fn hold(&self, bid: HeldBid) -> Result<(), HeldBid> {
        match self.claim(1) {
            Some(mut claim) => {
                claim.hold(bid);
                Ok(())
            }
            None => Err(bid),
        }
    }

    /// Takes the oldest bid handed over, giving its room back.
    fn pop(&self) -> Option<HeldBid> {
        let bid = self.queue.pop()?;
        self.free.fetch_add(1, Ordering::AcqRel);
        Some(bid)
    }

    /// Whether nothing waits to be drained.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// What a notice did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeOutcome {
    /// The reservation was settled at the clearing price.
    Settled(Settlement),
    /// The reservation was returned (loss notice).
    Released {
        campaign: BudgetSlot,
        refunded_micros: i64,
    },
    /// This bid was already settled or released: nothing changed.
    Duplicate,
    /// A win for a bid whose reservation had gone back, when its campaign had no
    /// budget left to charge it from: counted, not charged (budgets never go past
    /// their limit).
    Unfunded,
    /// No such bid in flight (never made, or expired before its notice came).
    Unknown,
}

/// Counters for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerStats {
    pub held: u64,
    pub settled: u64,
    pub released: u64,
    pub expired: u64,
    pub duplicates: u64,
    pub unknown: u64,
    /// Bids refused because `MAX_PENDING` reservations were already held.
    pub refused_full: u64,
    /// Notices for bids made before a restart, settled or released out of the hold.
    pub in_doubt_settled: u64,
    pub in_doubt_released: u64,
    /// Holds returned because no bid of before the restart could still settle.
    pub in_doubt_expired: u64,
    /// Wins for bids whose reservation had gone back (a loss first, or past the
    /// horizon): charged again from the budget, or unfunded when none was left.
    pub late_settled: u64,
    pub late_unfunded: u64,
    /// Expired bids not remembered for a late win because the ledger remembered
    /// [`MAX_REMEMBERED_BIDS`] already (their late wins count as unknown).
    pub forgotten_full: u64,
    /// Bids charged at expiry ([`Unnoticed::Charge`]), and the money.
    pub charged_unnoticed: u64,
    pub charged_unnoticed_micros: i64,
    /// Of those, bids whose loss notice came after the charge: money kept although
    /// the bid lost (the price of failing closed; never refunded, as spend only
    /// grows).
    pub charged_then_lost: u64,
}

/// How a bid the ledger no longer holds was resolved, while it is remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolved {
    /// Settled by a win or bill notice: any later notice is a duplicate.
    Settled,
    /// Charged at expiry with no notice: any later notice is a duplicate (a loss is
    /// also counted, `charged_then_lost`).
    Charged,
    /// Its reservation went back (a loss notice, or no notice in time): a later win
    /// or bill is charged from the budget then, a later loss is a duplicate.
    Returned {
        campaign: BudgetSlot,
        reserved_micros: i64,
        user_key: Option<u64>,
        segment: u64,
    },
}

/// What bids made before a restart may still spend of one campaign's budget.
#[derive(Debug)]
struct InDoubt {
    hold: Reservation,
    /// When no bid of before the restart can still settle, ms since the Unix epoch.
    until_ms: u64,
}

#[derive(Debug)]
struct Pending {
    reservation: Reservation,
    expires_at_ms: u64,
    user_key: Option<u64>,
    unnoticed: Unnoticed,
    segment: u64,
}

/// The ledger itself, owned by one thread.
#[derive(Debug)]
pub struct Ledger {
    pending: FxHashMap<BidId, Pending>,
    /// Bids in the order they expire (they arrive in roughly that order), lazily
    /// skipped when already settled.
    expiry: VecDeque<(u64, BidId)>,
    /// Bids settled, released or expired recently, with when to forget them and how
    /// they were resolved: to spot duplicates and to charge late wins.
    done: FxHashMap<BidId, (u64, Resolved)>,
    done_order: VecDeque<(u64, BidId)>,
    /// How long a settled bid is remembered for duplicate detection, ms; also how
    /// long a reservation lives, so a bid's notice can settle until `bid + window`.
    duplicate_window_ms: u64,
    /// Holds for bids made before this process started, by campaign.
    in_doubt: FxHashMap<BudgetSlot, InDoubt>,
    /// When this process started bidding: bids stamped earlier are from before it.
    started_ms: u64,
    /// Bids charged at expiry since the owner last took them (to journal them).
    charged: Vec<ChargedUnnoticed>,
    pub stats: LedgerStats,
}

impl Ledger {
    /// A ledger remembering settled bids for `duplicate_window_ms`.
    pub fn new(duplicate_window_ms: u64) -> Ledger {
        Ledger {
            pending: FxHashMap::default(),
            expiry: VecDeque::new(),
            done: FxHashMap::default(),
            done_order: VecDeque::new(),
            duplicate_window_ms,
            in_doubt: FxHashMap::default(),
            started_ms: 0,
            charged: Vec::new(),
            stats: LedgerStats::default(),
        }
    }

    /// Holds `hold` for bids made before `started_ms` (this process's start) until
    /// `until_ms`; their notices settle out of it.
    pub fn hold_in_doubt(&mut self, hold: Reservation, started_ms: u64, until_ms: u64) {
        self.started_ms = self.started_ms.max(started_ms);
        let campaign = hold.campaign;
        let previous = self.in_doubt.insert(campaign, InDoubt { hold, until_ms });
        assert!(previous.is_none(), "one in-doubt hold per campaign");
    }

    /// What is left of the campaign's in-doubt hold.
    pub fn in_doubt_micros(&self, campaign: BudgetSlot) -> i64 {
        self.in_doubt
            .get(&campaign)
            .map_or(0, |d| d.hold.amount_micros)
    }

    /// Sum of every campaign's in-doubt hold.
    pub fn in_doubt_total_micros(&self) -> i64 {
        self.in_doubt.values().map(|d| d.hold.amount_micros).sum()
    }

    /// How much of a notice's bid sits in the ledger: its own reservation while
    /// pending, or for a bid made before the restart the part of the campaign's hold
    /// it would take (`reserved_micros`, its signed price, at most what is left). The
    /// caller pins that much lease until the notice's record is durable.
    pub fn holding(
        &self,
        bid_id: BidId,
        campaign: BudgetSlot,
        reserved_micros: i64,
        now_ms: u64,
    ) -> Option<(BudgetSlot, i64)> {
        if let Some(p) = self.pending.get(&bid_id) {
            return Some((p.reservation.campaign, p.reservation.amount_micros));
        }
        if self.is_in_doubt(bid_id, campaign, now_ms) {
            let part = reserved_micros.clamp(0, self.in_doubt_micros(campaign));
            return Some((campaign, part));
        }
        None
    }

    /// What the ledger knows of a bid still held or returned: the user its win counts
    /// against (frequency caps) and its market segment (the notice's feedback; 0 when
    /// unknown).
    pub fn facts_of(&self, bid_id: BidId) -> (Option<u64>, u64) {
        match (self.pending.get(&bid_id), self.done.get(&bid_id)) {
            (Some(p), _) => (p.user_key, p.segment),
            (
                None,
                Some((
                    _,
                    Resolved::Returned {
                        user_key, segment, ..
                    },
                )),
            ) => (*user_key, *segment),
            _ => (None, 0),
        }
    }

    /// A bid made before the restart, not resolved since, whose reservation would
    /// still live, of a campaign with a hold.
    fn is_in_doubt(&self, bid_id: BidId, campaign: BudgetSlot, now_ms: u64) -> bool {
        let bid_ms = bid_id.timestamp_ms();
        bid_ms < self.started_ms
            && bid_ms + self.duplicate_window_ms > now_ms
            && !self.pending.contains_key(&bid_id)
            && !self.done.contains_key(&bid_id)
            && self.in_doubt.contains_key(&campaign)
    }

    /// A win or bill notice for a bid of `campaign` that reserved `reserved_micros`:
    /// settles its reservation, or for a bid made before the restart charges it out of
    /// the campaign's hold.
    pub fn settle_notice(
        &mut self,
        bid_id: BidId,
        campaign: BudgetSlot,
        reserved_micros: i64,
        clearing_micros: i64,
        budgets: &Budgets,
        now_ms: u64,
    ) -> NoticeOutcome {
        if !self.is_in_doubt(bid_id, campaign, now_ms) {
            return self.settle(bid_id, clearing_micros, budgets, now_ms);
        }
        let d = self.in_doubt.get_mut(&campaign).expect("checked above");
        let settlement = budgets.settle_from_hold(&mut d.hold, reserved_micros, clearing_micros);
        self.stats.in_doubt_settled += 1;
        self.stats.settled += 1;
        self.remember(bid_id, now_ms, Resolved::Settled);
        NoticeOutcome::Settled(settlement)
    }

    /// A loss notice: releases the bid's reservation, or its part of the hold.
    pub fn release_notice(
        &mut self,
        bid_id: BidId,
        campaign: BudgetSlot,
        reserved_micros: i64,
        budgets: &Budgets,
        now_ms: u64,
    ) -> NoticeOutcome {
        if !self.is_in_doubt(bid_id, campaign, now_ms) {
            return self.release(bid_id, budgets, now_ms);
        }
        let d = self.in_doubt.get_mut(&campaign).expect("checked above");
        let piece = budgets.split(&mut d.hold, reserved_micros);
        let refunded_micros = piece.amount_micros;
        budgets.release(piece);
        self.stats.in_doubt_released += 1;
        self.stats.released += 1;
        // Its share of the hold went back for good: a later win is not charged again.
        self.remember(bid_id, now_ms, Resolved::Settled);
        NoticeOutcome::Released {
            campaign,
            refunded_micros,
        }
    }

    /// Moves everything workers handed over into the ledger. Past `MAX_PENDING`,
    /// reservations are released at once (those bids may win; their notices will be
    /// `Unknown` and counted, and the budget stays safe because nothing was charged).
    pub fn drain(&mut self, inbox: &LedgerInbox, budgets: &Budgets) {
        while let Some(bid) = inbox.pop() {
            if self.pending.len() >= MAX_PENDING {
                self.stats.refused_full += 1;
                budgets.release(bid.reservation);
                continue;
            }
            self.stats.held += 1;
            self.expiry.push_back((bid.expires_at_ms, bid.bid_id));
            let previous = self.pending.insert(
                bid.bid_id,
                Pending {
                    reservation: bid.reservation,
                    expires_at_ms: bid.expires_at_ms,
                    user_key: bid.user_key,
                    unnoticed: bid.unnoticed,
                    segment: bid.segment,
                },
            );
            assert!(previous.is_none(), "bid id {:?} issued twice", bid.bid_id);
        }
    }

    /// A win or billing notice: charge the clearing price (per impression, micros).
    pub fn settle(
        &mut self,
        bid_id: BidId,
        clearing_micros: i64,
        budgets: &Budgets,
        now_ms: u64,
    ) -> NoticeOutcome {
        match self.pending.remove(&bid_id) {
            Some(p) => {
                self.stats.settled += 1;
                self.remember(bid_id, now_ms, Resolved::Settled);
                NoticeOutcome::Settled(budgets.settle(p.reservation, clearing_micros))
            }
            None => self.settle_returned(bid_id, clearing_micros, budgets),
        }
    }

    /// A win or bill for a bid no longer pending: charged again if its reservation
    /// had gone back (reserved anew, so never past the budget's limit; unfunded when
    /// the budget has nothing left), else a duplicate or unknown.
    fn settle_returned(
        &mut self,
        bid_id: BidId,
        clearing_micros: i64,
        budgets: &Budgets,
    ) -> NoticeOutcome {
        let Some(entry) = self.done.get_mut(&bid_id) else {
            return self.not_pending(bid_id);
        };
        let Resolved::Returned {
            campaign,
            reserved_micros,
            ..
        } = entry.1
        else {
            return self.not_pending(bid_id);
        };
        // Settled from now on whatever the budget says: a retry changes nothing.
        entry.1 = Resolved::Settled;
        match budgets.reserve_late(campaign, reserved_micros) {
            Some(reservation) => {
                self.stats.settled += 1;
                self.stats.late_settled += 1;
                NoticeOutcome::Settled(budgets.settle(reservation, clearing_micros))
            }
            None => {
                self.stats.late_unfunded += 1;
                NoticeOutcome::Unfunded
            }
        }
    }

    /// A loss notice: return the whole reservation.
    pub fn release(&mut self, bid_id: BidId, budgets: &Budgets, now_ms: u64) -> NoticeOutcome {
        if let Some((_, how @ Resolved::Charged)) = self.done.get_mut(&bid_id) {
            // Counted once, however often the exchange retries the loss.
            self.stats.charged_then_lost += 1;
            *how = Resolved::Settled;
        }
        match self.pending.remove(&bid_id) {
            Some(p) => {
                self.stats.released += 1;
                self.remember(bid_id, now_ms, returned(&p));
                let refunded_micros = p.reservation.amount_micros;
                let campaign = p.reservation.campaign;
                budgets.release(p.reservation);
                NoticeOutcome::Released {
                    campaign,
                    refunded_micros,
                }
            }
            None => self.not_pending(bid_id),
        }
    }

    /// Returns the budget of every bid whose notice did not come in time (or charges
    /// it, for a partner whose silence means a lost notice: [`Unnoticed::Charge`];
    /// [`Ledger::take_charged`] hands those over for the journal), and forgets
    /// settled bids past the duplicate window. Returns how many expired.
    pub fn expire(&mut self, now_ms: u64, budgets: &Budgets) -> usize {
        let mut expired = 0;
        while let Some(&(at, bid_id)) = self.expiry.front() {
            if at > now_ms {
                break;
            }
            self.expiry.pop_front();
            let due = self
                .pending
                .get(&bid_id)
                .is_some_and(|p| p.expires_at_ms <= now_ms);
            if due {
                let p = self.pending.remove(&bid_id).expect("checked above");
                if p.unnoticed == Unnoticed::Charge {
                    self.charge_unnoticed(bid_id, p, budgets, now_ms);
                    expired += 1;
                    continue;
                }
                // Remembered so a win that comes late is still charged; bounded, so
                // a flood of bids nobody answers cannot grow the memory for ever.
                if self.done.len() < MAX_REMEMBERED_BIDS {
                    self.remember(bid_id, now_ms, returned(&p));
                } else {
                    self.stats.forgotten_full += 1;
                }
                budgets.release(p.reservation);
                expired += 1;
            }
        }
        while let Some(&(forget_at, bid_id)) = self.done_order.front() {
            if forget_at > now_ms {
                break;
            }
            self.done_order.pop_front();
            self.done.remove(&bid_id);
        }
        // Allocates only on the tick a hold comes due (once per campaign per restart).
        if self.in_doubt.values().any(|d| d.until_ms <= now_ms) {
            let due: Vec<BudgetSlot> = self
                .in_doubt
                .iter()
                .filter(|(_, d)| d.until_ms <= now_ms)
                .map(|(&campaign, _)| campaign)
                .collect();
            for campaign in due {
                let d = self.in_doubt.remove(&campaign).expect("listed above");
                budgets.release(d.hold);
                self.stats.in_doubt_expired += 1;
            }
        }
        self.stats.expired += expired as u64;
        expired
    }

    /// Charges a silent bid at its price. Its lease room is pinned first and stays
    /// pinned until the owner has journalled the charge (as for a notice's record).
    fn charge_unnoticed(&mut self, bid_id: BidId, p: Pending, budgets: &Budgets, now_ms: u64) {
        let amount = p.reservation.amount_micros;
        budgets.pin_lease(p.reservation.campaign, amount);
        let settlement = budgets.charge_unnoticed(p.reservation);
        assert_eq!(settlement.charged_micros, amount, "charged at its price");
        self.stats.charged_unnoticed += 1;
        self.stats.charged_unnoticed_micros += amount;
        // Always remembered (even past MAX_REMEMBERED_BIDS, as a settled bid is): a
        // late notice must be a duplicate, never a second charge.
        self.remember(bid_id, now_ms, Resolved::Charged);
        self.charged.push(ChargedUnnoticed { bid_id, settlement });
    }

    /// Up to `at_most` of the bids charged at expiry and not yet taken, oldest first,
    /// for the journal.
    pub fn take_charged(&mut self, at_most: usize) -> Vec<ChargedUnnoticed> {
        let n = at_most.min(self.charged.len());
        self.charged.drain(..n).collect()
    }

    /// Puts charges the journal could not take back in front, to be taken first.
    pub fn keep_charged(&mut self, charges: impl IntoIterator<Item = ChargedUnnoticed>) {
        let mut kept: Vec<ChargedUnnoticed> = charges.into_iter().collect();
        kept.append(&mut self.charged);
        self.charged = kept;
    }

    /// Charges waiting for the journal.
    pub fn charged_waiting(&self) -> usize {
        self.charged.len()
    }

    /// Makes every held bid expire at most `ttl_ms` after it was made (a reload that
    /// shortened `reservation_ttl_ms`); returns how many were brought forward. Walks
    /// every held bid once: reloads are rare.
    pub fn shorten_to(&mut self, ttl_ms: u64) -> usize {
        let mut shortened = 0;
        for (bid_id, p) in &mut self.pending {
            let by = bid_id.timestamp_ms().saturating_add(ttl_ms);
            if by < p.expires_at_ms {
                p.expires_at_ms = by;
                shortened += 1;
            }
        }
        if shortened > 0 {
            let mut order: Vec<(u64, BidId)> = self
                .pending
                .iter()
                .map(|(&bid_id, p)| (p.expires_at_ms, bid_id))
                .collect();
            order.sort_unstable();
            self.expiry = order.into();
        }
        shortened
    }

    /// Remembers bids the journal says were settled or released before a restart, so
    /// their notices count as duplicates again (`at_ms`: when each was resolved).
    pub fn recover_resolved(&mut self, mut resolved: Vec<(BidId, u64)>) {
        // Forgotten in the order they were resolved, like bids remembered live.
        resolved.sort_by_key(|&(_, at_ms)| at_ms);
        for (bid_id, at_ms) in resolved {
            self.remember(bid_id, at_ms, Resolved::Settled);
        }
    }

    /// Bids holding budget now.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    fn remember(&mut self, bid_id: BidId, now_ms: u64, how: Resolved) {
        let forget_at = now_ms.saturating_add(self.duplicate_window_ms);
        self.done.insert(bid_id, (forget_at, how));
        self.done_order.push_back((forget_at, bid_id));
    }

    fn not_pending(&mut self, bid_id: BidId) -> NoticeOutcome {
        if self.done.contains_key(&bid_id) {
            self.stats.duplicates += 1;
            NoticeOutcome::Duplicate
        } else {
            self.stats.unknown += 1;
            NoticeOutcome::Unknown
        }
    }
}

/// How a bid whose reservation goes back now is remembered.
fn returned(p: &Pending) -> Resolved {
    Resolved::Returned {
        campaign: p.reservation.campaign,
        reserved_micros: p.reservation.amount_micros,
        user_key: p.user_key,
        segment: p.segment,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::bid_id::BidIdGen;

    fn setup() -> (Budgets, LedgerInbox, Ledger, BidIdGen) {
        (
            Budgets::new([100_000]),
            LedgerInbox::new(8),
            Ledger::new(60_000),
            BidIdGen::new(1, 0),
        )
    }

    fn hold(
        b: &Budgets,
        inbox: &LedgerInbox,
        ids: &mut BidIdGen,
        amount: i64,
        expires: u64,
    ) -> BidId {
        hold_for(b, inbox, ids, amount, expires, Unnoticed::Release)
    }

    fn hold_for(
        b: &Budgets,
        inbox: &LedgerInbox,
        ids: &mut BidIdGen,
        amount: i64,
        expires: u64,
        unnoticed: Unnoticed,
    ) -> BidId {
        let bid_id = ids.next_id(1_000);
        let reservation = b.reserve(0, amount).unwrap();
        inbox
            .hold(HeldBid {
                bid_id,
                reservation,
                expires_at_ms: expires,
                user_key: None,
                unnoticed,
                segment: 0,
            })
            .unwrap();
        bid_id
    }

    #[test]
    fn a_charge_keeps_its_lease_room_until_its_record_is_written() {
        let (b, inbox, mut ledger, mut ids) = setup();
        b.enable_leases();
        b.grant_lease(0, 10_000);
        hold_for(&b, &inbox, &mut ids, 1_000, 100, Unnoticed::Charge);
        ledger.drain(&inbox, &b);
        assert_eq!(b.lease(0).in_flight_micros, 1_000);
        ledger.expire(150, &b);
        assert_eq!(
            b.lease(0).in_flight_micros,
            1_000,
            "pinned until journalled"
        );
        // The journal's queue was full: the charge waits, still pinned.
        let charged = ledger.take_charged(usize::MAX);
        ledger.keep_charged(charged);
        assert_eq!(ledger.charged_waiting(), 1);
        assert!(ledger.take_charged(0).is_empty());
        let c = ledger.take_charged(1)[0];
        assert_eq!(ledger.charged_waiting(), 0);
        b.unpin_lease(0, c.settlement.charged_micros);
        assert_eq!(b.lease(0).in_flight_micros, 0, "written: the room is back");
        assert_eq!(b.snapshot(0).spent_micros, 1_000);
    }

    #[test]
    fn a_silent_bid_of_a_partner_that_always_answers_is_charged_at_its_price() {
        let (b, inbox, mut ledger, mut ids) = setup();
        let silent = hold_for(&b, &inbox, &mut ids, 1_000, 100, Unnoticed::Charge);
        let lost_late = hold_for(&b, &inbox, &mut ids, 700, 100, Unnoticed::Charge);
        let released = hold(&b, &inbox, &mut ids, 500, 100);
        ledger.drain(&inbox, &b);
        let wins_before = b.snapshot(0).wins;
        assert_eq!(ledger.expire(150, &b), 3);
        let s = b.snapshot(0);
        assert_eq!(
            (s.spent_micros, s.reserved_micros, s.available_micros),
            (1_700, 0, 98_300),
            "the two silent bids are spent, the other went back"
        );
        assert_eq!(s.wins, wins_before, "a charge is not a win");
        let charged = ledger.take_charged(usize::MAX);
        let ids_charged: Vec<BidId> = charged.iter().map(|c| c.bid_id).collect();
        assert_eq!(ids_charged, [silent, lost_late]);
        assert_eq!(charged[0].settlement.charged_micros, 1_000);
        assert!(
            ledger.take_charged(usize::MAX).is_empty(),
            "handed over once"
        );
        // Late notices change nothing: never a second charge, never a refund.
        assert_eq!(
            ledger.settle(silent, 900, &b, 160),
            NoticeOutcome::Duplicate
        );
        assert_eq!(ledger.release(lost_late, &b, 170), NoticeOutcome::Duplicate);
        assert_eq!(ledger.release(lost_late, &b, 171), NoticeOutcome::Duplicate);
        assert_eq!(b.snapshot(0).spent_micros, 1_700);
        assert_eq!(ledger.stats.charged_unnoticed, 2);
        assert_eq!(ledger.stats.charged_unnoticed_micros, 1_700);
        assert_eq!(ledger.stats.charged_then_lost, 1);
        // The released one's late win is still charged, as before.
        assert!(matches!(
            ledger.settle(released, 500, &b, 180),
            NoticeOutcome::Settled(_)
        ));
        assert_eq!(b.snapshot(0).spent_micros, 2_200);
    }

    #[test]
    fn room_is_claimed_for_all_bids_or_none_and_given_back() {
        let (b, inbox, mut ledger, mut ids) = setup();
        let mut five = inbox.claim(5).expect("room for five of eight");
        assert!(inbox.claim(4).is_none(), "three left");
        for _ in 0..2 {
            five.hold(small_bid(&b, &mut ids));
        }
        drop(five); // three claimed, unused: back
        assert!(inbox.claim(7).is_none(), "two are queued");
        assert!(inbox.claim(6).is_some());
        ledger.drain(&inbox, &b);
        assert_eq!(ledger.pending(), 2);
        assert!(inbox.claim(8).is_some(), "draining gave the room back");
    }

    #[test]
    #[should_panic(expected = "more bids held than claimed")]
    fn holding_past_a_claim_is_a_bug() {
        let (b, inbox, _, mut ids) = setup();
        let mut none = inbox.claim(0).unwrap();
        none.hold(small_bid(&b, &mut ids));
    }

    /// A bid holding 100 micros, expiring at 1 s.
    fn small_bid(b: &Budgets, ids: &mut BidIdGen) -> HeldBid {
        HeldBid {
            bid_id: ids.next_id(1_000),
            reservation: b.reserve(0, 100).unwrap(),
            expires_at_ms: 1_000,
            user_key: None,
            unnoticed: Unnoticed::Release,
            segment: 0,
        }
    }

    #[test]
    fn a_bid_settles_once_and_duplicates_are_counted() {
        let (b, inbox, mut ledger, mut ids) = setup();
        let id = hold(&b, &inbox, &mut ids, 2_000, 1_000);
        ledger.drain(&inbox, &b);
        let outcome = ledger.settle(id, 1_500, &b, 10);
        assert!(matches!(outcome, NoticeOutcome::Settled(s) if s.charged_micros == 1_500));
        assert_eq!(ledger.settle(id, 1_500, &b, 11), NoticeOutcome::Duplicate);
        assert_eq!(ledger.release(id, &b, 12), NoticeOutcome::Duplicate);
        let s = b.snapshot(0);
        assert_eq!(
            (s.spent_micros, s.reserved_micros, s.available_micros),
            (1_500, 0, 98_500)
        );
        assert_eq!(ledger.stats.duplicates, 2);
    }

    #[test]
    fn a_loss_returns_the_reservation() {
        let (b, inbox, mut ledger, mut ids) = setup();
        let id = hold(&b, &inbox, &mut ids, 2_000, 1_000);
        ledger.drain(&inbox, &b);
        assert_eq!(
            ledger.release(id, &b, 5),
            NoticeOutcome::Released {
                campaign: 0,
                refunded_micros: 2_000
            }
        );
        assert_eq!(b.snapshot(0).available_micros, 100_000);
    }

    #[test]
    fn unsettled_reservations_expire_and_late_wins_are_charged_from_what_is_left() {
        let (b, inbox, mut ledger, mut ids) = setup();
        let early = hold(&b, &inbox, &mut ids, 1_000, 100);
        let late = hold(&b, &inbox, &mut ids, 1_000, 200);
        ledger.drain(&inbox, &b);
        assert_eq!(ledger.expire(150, &b), 1);
        assert_eq!(ledger.pending(), 1);
        assert_eq!(b.snapshot(0).reserved_micros, 1_000);
        // Past its horizon, within the window: charged from the budget it has now.
        let NoticeOutcome::Settled(s) = ledger.settle(early, 800, &b, 160) else {
            panic!("a late win is charged");
        };
        assert_eq!(s.charged_micros, 800);
        assert_eq!(ledger.settle(early, 800, &b, 170), NoticeOutcome::Duplicate);
        assert_eq!(ledger.release(early, &b, 170), NoticeOutcome::Duplicate);
        assert_eq!(ledger.expire(200, &b), 1);
        // The budget spent meanwhile: the late win is counted, never forced past it.
        let rest = b.reserve(0, b.snapshot(0).available_micros).unwrap();
        b.settle(rest, i64::MAX);
        assert_eq!(ledger.settle(late, 1_000, &b, 210), NoticeOutcome::Unfunded);
        assert_eq!(
            ledger.settle(late, 1_000, &b, 220),
            NoticeOutcome::Duplicate
        );
        let s = b.snapshot(0);
        assert_eq!(
            (s.available_micros, s.reserved_micros, s.spent_micros),
            (0, 0, 100_000)
        );
        assert_eq!(
            (ledger.stats.late_settled, ledger.stats.late_unfunded),
            (1, 1)
        );
        // Forgotten after the window: unknown.
        ledger.expire(10_000_000, &b);
        assert_eq!(
            ledger.settle(late, 1_000, &b, 10_000_000),
            NoticeOutcome::Unknown
        );
    }

    #[test]
    fn duplicates_are_forgotten_after_the_window() {
        let (b, inbox, _, mut ids) = setup();
        let mut ledger = Ledger::new(50);
        let id = hold(&b, &inbox, &mut ids, 1_000, 10_000);
        ledger.drain(&inbox, &b);
        ledger.settle(id, 500, &b, 100);
        assert_eq!(ledger.settle(id, 500, &b, 140), NoticeOutcome::Duplicate);
        ledger.expire(151, &b);
        assert_eq!(ledger.settle(id, 500, &b, 160), NoticeOutcome::Unknown);
    }

    #[test]
    fn a_full_inbox_gives_the_reservation_back() {
        let (b, inbox, _, mut ids) = setup();
        for _ in 0..8 {
            hold(&b, &inbox, &mut ids, 100, 1_000);
        }
        let reservation = b.reserve(0, 100).unwrap();
        let refused = inbox
            .hold(HeldBid {
                bid_id: ids.next_id(1_000),
                reservation,
                expires_at_ms: 1_000,
                user_key: None,
                unnoticed: Unnoticed::Release,
                segment: 0,
            })
            .unwrap_err();
        b.release(refused.reservation);
        assert_eq!(b.snapshot(0).reserved_micros, 800);
    }

    /// A restarted ledger: the recorded lease of 10,000 held back for bids made before
    /// `STARTED_MS`, until `STARTED_MS + 60 s`.
    const STARTED_MS: u64 = 100_000;

    fn restarted() -> (Budgets, Ledger, BidIdGen) {
        let b = Budgets::new([100_000]);
        b.enable_leases();
        b.grant_lease(0, 10_000);
        let hold = b.hold_in_doubt(0, 10_000).unwrap();
        let mut ledger = Ledger::new(60_000);
        ledger.hold_in_doubt(hold, STARTED_MS, STARTED_MS + 60_000);
        (b, ledger, BidIdGen::new(1, 0))
    }

    #[test]
    fn notices_for_bids_made_before_a_restart_settle_out_of_the_hold_once() {
        let (b, mut ledger, mut ids) = restarted();
        assert_eq!(
            b.snapshot(0).available_micros,
            90_000,
            "the hold is held back"
        );
        let before = ids.next_id(STARTED_MS - 5_000);
        let now = STARTED_MS + 1_000;
        assert_eq!(ledger.holding(before, 0, 3_000, now), Some((0, 3_000)));
        let outcome = ledger.settle_notice(before, 0, 3_000, 2_000, &b, now);
        assert!(matches!(outcome, NoticeOutcome::Settled(s) if s.charged_micros == 2_000));
        assert_eq!(ledger.in_doubt_micros(0), 7_000);
        // Its retry is a duplicate; a loss for another old bid releases its part.
        assert_eq!(
            ledger.settle_notice(before, 0, 3_000, 2_000, &b, now + 1),
            NoticeOutcome::Duplicate
        );
        let lost = ids.next_id(STARTED_MS - 4_000);
        assert!(matches!(
            ledger.release_notice(lost, 0, 3_000, &b, now),
            NoticeOutcome::Released {
                refunded_micros: 3_000,
                ..
            }
        ));
        let s = b.snapshot(0);
        assert_eq!((s.spent_micros, s.reserved_micros), (2_000, 4_000));
        assert_eq!(
            b.lease(0).in_flight_micros,
            4_000,
            "what is left of the hold"
        );
        // A bid made after the start that the ledger does not hold stays unknown.
        let after = ids.next_id(STARTED_MS + 500);
        assert_eq!(
            ledger.settle_notice(after, 0, 3_000, 2_000, &b, now),
            NoticeOutcome::Unknown
        );
        assert_eq!(ledger.stats.in_doubt_settled, 1);
        assert_eq!(ledger.stats.in_doubt_released, 1);
    }

    #[test]
    fn a_win_beyond_the_hold_is_charged_all_the_same() {
        let (b, mut ledger, mut ids) = restarted();
        let now = STARTED_MS + 1_000;
        for n in 0..4 {
            let id = ids.next_id(STARTED_MS - 10_000 + n);
            ledger.settle_notice(id, 0, 3_000, 3_000, &b, now);
        }
        let s = b.snapshot(0);
        assert_eq!(s.spent_micros, 12_000, "every old win is charged");
        assert_eq!(ledger.in_doubt_micros(0), 0);
        assert_eq!(b.lease(0).in_flight_micros, 0);
        assert!(s.available_micros + s.reserved_micros + s.spent_micros == s.daily_micros);
    }

    #[test]
    fn the_hold_returns_when_no_old_bid_can_settle_and_late_notices_stay_unknown() {
        let (b, mut ledger, mut ids) = restarted();
        let old = ids.next_id(STARTED_MS - 1_000);
        ledger.expire(STARTED_MS + 59_999, &b);
        assert_eq!(ledger.in_doubt_micros(0), 10_000);
        ledger.expire(STARTED_MS + 60_000, &b);
        assert_eq!(ledger.in_doubt_micros(0), 0);
        assert_eq!(ledger.stats.in_doubt_expired, 1);
        assert_eq!(b.snapshot(0).available_micros, 100_000);
        assert_eq!(b.lease(0).in_flight_micros, 0);
        // Past its reservation's life the bid's notice charges nothing, as without a
        // restart.
        assert_eq!(
            ledger.settle_notice(old, 0, 3_000, 3_000, &b, STARTED_MS + 60_000),
            NoticeOutcome::Unknown
        );
    }
}
