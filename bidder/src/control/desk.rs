//! Win, billing and loss notices against the spend ledger, which the control thread
//! owns alone.
//!
//! Workers hand reservations over through the [`LedgerInbox`]; [`NoticeDesk::tick`]
//! drains it and expires reservations whose notice never came, on a timer and before
//! every notice, so a notice always finds the bid it is about if the bid was made.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustc_hash::FxHashSet;

use crate::clock::Clock;
use crate::metrics::PromText;
use crate::money::budget::{BudgetSlot, Budgets};
use crate::money::currency::{Converted, CurrencyBook};
use crate::money::feedback::Ended;
use crate::money::impression_cost_micros;
use crate::money::journal::{Ack, Entry, Event, EventKind, Journal, JournalError, Outcome};
use crate::money::lease::{next_lease, LeaseState};
use crate::money::ledger::{Ledger, LedgerInbox, NoticeOutcome};
use crate::money::notice::{NoticeError, NoticeKind};
use crate::money::notice_keys::NoticeKeyring;

/// What the notice endpoints need, handed to the control port at start.
pub struct Notices {
    /// Verifies notice signatures: the key bids are signed with now, and the one a
    /// reload replaced while its reservations live. The daemon rotates it on reload.
    pub keyring: Arc<NoticeKeyring>,
    /// The ledger; from now on only the control thread touches it.
    pub ledger: Ledger,
    /// Where workers hand over reservations.
    pub inbox: Arc<LedgerInbox>,
    /// The budgets reservations are settled into and released to.
    pub budgets: Arc<Budgets>,
    /// Reads a clearing price the exchange states in another currency; the daemon
    /// swaps its rates on reload.
    pub currencies: Arc<CurrencyBook>,
    /// `reservation_ttl_ms` in force; a reload that shortens it applies to the bids
    /// held already (on the next tick), not only to new ones.
    pub reservation_ttl_ms: Arc<AtomicU64>,
    /// The calendar reservations expire on and key rotations end on: the same clock
    /// the workers stamp bids with, so a reservation lives `reservation_ttl_ms` of it.
    pub clock: Clock,
    /// Where settlements and releases are made durable before their notice is
    /// answered; `None` keeps spend in memory only (`[ledger]` without a `path`).
    pub journal: Option<Journal>,
}

/// How a verified notice is to be answered.
pub(super) enum Applied {
    /// Now: nothing needs to be durable first (unknown bid, no journal, or a
    /// duplicate whose record is already on disk).
    Now,
    /// Once this resolves `true`; `false` means storage failed and the answer is 503.
    Durable(Ack),
    /// 503 at once: the journal holds too many unwritten records, and the notice was
    /// not applied, so the exchange's retry will be.
    Unavailable,
}

const KINDS: [NoticeKind; 3] = [NoticeKind::Win, NoticeKind::Bill, NoticeKind::Loss];
const OUTCOMES: [&str; 5] = ["settled", "released", "duplicate", "unknown", "unfunded"];
const REFUSALS: [&str; 5] = [
    "too_long",
    "missing_field",
    "repeated_field",
    "malformed_field",
    "bad_signature",
];

fn kind_index(kind: NoticeKind) -> usize {
    match kind {
        NoticeKind::Win => 0,
        NoticeKind::Bill => 1,
        NoticeKind::Loss => 2,
    }
}

fn kind_name(kind: NoticeKind) -> &'static str {
    match kind {
        NoticeKind::Win => "win",
        NoticeKind::Bill => "bill",
        NoticeKind::Loss => "loss",
    }
}

fn outcome_index(outcome: &NoticeOutcome) -> usize {
    match outcome {
        NoticeOutcome::Settled(_) => 0,
        NoticeOutcome::Released { .. } => 1,
        NoticeOutcome::Duplicate => 2,
        NoticeOutcome::Unknown => 3,
        NoticeOutcome::Unfunded => 4,
    }
}

fn refusal_index(e: &NoticeError) -> usize {
    match e {
        NoticeError::TooLong => 0,
        NoticeError::Missing(_) => 1,
        NoticeError::Duplicate(_) => 2,
        NoticeError::Malformed(_) => 3,
        NoticeError::BadTag => 4,
    }
}

/// The ledger and its notice counters; lives on the control thread only.
pub(super) struct NoticeDesk {
    notices: Notices,
    /// Accepted notices by kind and outcome.
    accepted: [[u64; OUTCOMES.len()]; KINDS.len()],
    /// Refused notices by kind and reason.
    refused: [[u64; REFUSALS.len()]; KINDS.len()],
    /// Notices answered 503 because the journal could not take them.
    unavailable: u64,
    /// Win and bill notices whose clearing price was converted from another currency,
    /// and those in a currency without a rate (charged at our bid price).
    converted: u64,
    unknown_currency: u64,
    /// Campaigns the spend-rate breaker paused, and operator resumes, since start.
    breaker_trips: u64,
    breaker_resumes: u64,
    /// When the breaker looks at spend rates next, ms since the Unix epoch.
    next_breaker_check_ms: u64,
    /// Lease changes waiting for their journal record, in queue order.
    lease_waits: VecDeque<(u64, LeaseWait)>,
    /// Campaigns with a lease raise on its way to disk (one at a time).
    raising: FxHashSet<BudgetSlot>,
    /// Configured campaigns, refilled on each tick (kept to reuse its memory).
    slots: Vec<BudgetSlot>,
    lease_raises: u64,
    lease_cuts: u64,
    /// The reservation TTL the held bids' expiries were last checked against.
    ttl_applied_ms: u64,
}

/// What happens once a journal record is durable.
#[derive(Debug, Clone, Copy)]
enum LeaseWait {
    /// A settled or released bid's part of the lease is free again.
    Unpin { campaign: BudgetSlot, micros: i64 },
    /// A raised lease may be used.
    Grant { campaign: BudgetSlot, micros: i64 },
}

/// How often the breaker compares spend rates with their pace.
const BREAKER_CHECK_INTERVAL_MS: u64 = 1_000;

/// What an operator's resume did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Resume {
    /// The breaker had paused the campaign; it bids again.
    Resumed,
    /// The breaker had not paused it: nothing changed.
    NotTripped,
    /// No campaign of the catalog has that id.
    Unknown,
}

impl NoticeDesk {
    pub(super) fn new(notices: Notices) -> NoticeDesk {
        NoticeDesk {
            notices,
            accepted: Default::default(),
            refused: Default::default(),
            unavailable: 0,
            converted: 0,
            unknown_currency: 0,
            breaker_trips: 0,
            breaker_resumes: 0,
            next_breaker_check_ms: 0,
            lease_waits: VecDeque::new(),
            raising: FxHashSet::default(),
            slots: Vec::new(),
            lease_raises: 0,
            lease_cuts: 0,
            ttl_applied_ms: u64::MAX,
        }
    }

    /// Takes in the reservations workers handed over and returns the budget of those
    /// whose notice is overdue.
    pub(super) fn tick(&mut self) {
        let now_ms = self.notices.clock.now_unix_ms();
        self.tick_at(now_ms);
    }

    fn tick_at(&mut self, now_ms: u64) {
        let n = &mut self.notices;
        n.ledger.drain(&n.inbox, &n.budgets);
        let ttl_ms = n.reservation_ttl_ms.load(Ordering::Acquire);
        if ttl_ms < self.ttl_applied_ms {
            let shortened = n.ledger.shorten_to(ttl_ms);
            if shortened > 0 {
                tracing::info!(
                    bids = shortened,
                    ttl_ms,
                    "reservation_ttl_ms shortened: held bids expire by the new TTL"
                );
            }
        }
        self.ttl_applied_ms = ttl_ms;
        n.ledger.expire(now_ms, &n.budgets);
        let new_days = n.budgets.roll(now_ms);
        if new_days > 0 {
            tracing::info!(campaigns = new_days, "a new budget day started");
        }
        self.journal_charged_unnoticed(now_ms);
        self.close_while_unrecordable();
        self.settle_leases(now_ms);
        if now_ms >= self.next_breaker_check_ms {
            self.next_breaker_check_ms = now_ms + BREAKER_CHECK_INTERVAL_MS;
            self.check_spend_rates(now_ms);
        }
    }

    /// Applies lease changes whose records are durable, then sizes every campaign's
    /// lease to what its bids hold (see `money/lease.rs`).
    fn settle_leases(&mut self, now_ms: u64) {
        let Some(journal) = &self.notices.journal else {
            return;
        };
        let budgets = &self.notices.budgets;
        if !budgets.is_leased() {
            return;
        }
        let durable = journal.durable_seq();
        while let Some(&(seq, wait)) = self.lease_waits.front() {
            if seq > durable {
                break;
            }
            self.lease_waits.pop_front();
            match wait {
                LeaseWait::Unpin { campaign, micros } => budgets.unpin_lease(campaign, micros),
                LeaseWait::Grant { campaign, micros } => {
                    budgets.grant_lease(campaign, micros);
                    self.raising.remove(&campaign);
                }
            }
        }
        if journal.is_failing() || !journal.has_room() {
            return;
        }
        budgets.configured(&mut self.slots);
        for &slot in &self.slots {
            if self.raising.contains(&slot) {
                continue;
            }
            let figures = budgets.lease(slot);
            let state = LeaseState {
                lease_micros: figures.lease_micros,
                in_flight_micros: figures.in_flight_micros,
                in_doubt_micros: self.notices.ledger.in_doubt_micros(slot),
                daily_micros: budgets.daily_micros(slot),
                wanted: budgets.take_lease_wanted(slot),
            };
            let Some(target) = next_lease(state) else {
                continue;
            };
            let Some(id) = budgets.id_of(slot) else {
                continue;
            };
            let change = target - figures.lease_micros;
            if change > 0 {
                // On disk first; used once durable.
                if let Ok(seq) = journal.record_lease(&id, target, now_ms) {
                    self.raising.insert(slot);
                    self.lease_waits.push_back((
                        seq,
                        LeaseWait::Grant {
                            campaign: slot,
                            micros: change,
                        },
                    ));
                    self.lease_raises += 1;
                }
            } else if budgets.shrink_lease(slot, -change) {
                // In memory first: the record on disk stays the larger until written.
                let _ = journal.record_lease(&id, target, now_ms);
                self.lease_cuts += 1;
            }
        }
    }

    /// Writes the bids charged at expiry (`unnoticed_bids = "charge"`) to the journal
    /// like a win's settlement, so a restart still counts their spend; each one's
    /// pinned lease room comes back once its record is durable. Charges the journal
    /// cannot take now (its queue is full) wait in the ledger, still pinned, for the
    /// next tick: nothing retries them as an exchange retries a notice.
    fn journal_charged_unnoticed(&mut self, now_ms: u64) {
        let n = &mut self.notices;
        let Some(journal) = &n.journal else {
            // Without a journal there are no leases: nothing is pinned.
            n.ledger.take_charged(usize::MAX);
            return;
        };
        let charged = n.ledger.take_charged(journal.room());
        let mut ids: Vec<(BudgetSlot, String)> = Vec::new();
        for (i, c) in charged.iter().enumerate() {
            let s = c.settlement;
            let campaign = match ids.iter().find(|(slot, _)| *slot == s.campaign) {
                Some((_, id)) => id.clone(),
                None => match n.budgets.id_of(s.campaign) {
                    Some(id) => {
                        ids.push((s.campaign, id.clone()));
                        id
                    }
                    // No campaign in the slot (cannot happen: ids stay): nothing to
                    // journal it under, so the room comes back now.
                    None => {
                        n.budgets.unpin_lease(s.campaign, s.charged_micros);
                        continue;
                    }
                },
            };
            let entry = Entry {
                bid_id: c.bid_id,
                campaign,
                outcome: Outcome::Settled {
                    charged_micros: s.charged_micros,
                    clearing_micros: s.charged_micros,
                },
                at_ms: now_ms,
                user_key: None,
            };
            if journal.append(entry).is_err() {
                // Full after all: this one and the rest wait for the next tick.
                n.ledger.keep_charged(charged[i..].iter().copied());
                break;
            }
            let seq = journal.last_seq();
            self.lease_waits.push_back((
                seq,
                LeaseWait::Unpin {
                    campaign: s.campaign,
                    micros: s.charged_micros,
                },
            ));
        }
    }

    /// Pauses campaigns spending far faster than their pace: a log line, a metric and
    /// an audit record in the journal for each.
    fn check_spend_rates(&mut self, now_ms: u64) {
        for trip in self.notices.budgets.check_spend_rates(now_ms) {
            self.breaker_trips += 1;
            let detail = format!(
                "spent {} micros within {} s, more than the {} its pace allows",
                trip.spent_micros,
                trip.window_ms / 1_000,
                trip.allowed_micros
            );
            tracing::warn!(
                campaign = %trip.campaign,
                "spend-rate breaker paused the campaign: {detail}; resume with \
                 `bidderctl campaign resume {}`",
                trip.campaign
            );
            self.audit(now_ms, trip.campaign, EventKind::BreakerTripped, detail);
        }
    }

    /// An operator's resume of a campaign the breaker paused.
    pub(super) fn resume(&mut self, campaign: &str) -> Resume {
        let budgets = &self.notices.budgets;
        let Some(slot) = budgets.slot_of(campaign) else {
            return Resume::Unknown;
        };
        if !budgets.reset_breaker(slot) {
            return Resume::NotTripped;
        }
        self.breaker_resumes += 1;
        tracing::info!(
            campaign,
            "an operator resumed the campaign the spend-rate breaker paused"
        );
        let now_ms = self.notices.clock.now_unix_ms();
        self.audit(
            now_ms,
            campaign.to_owned(),
            EventKind::BreakerResumed,
            "resumed over the admin port".into(),
        );
        Resume::Resumed
    }

    /// Writes an audit event with the next commit. Not waited for: the log line and
    /// the metric already tell the operator; a journal that cannot take it says so
    /// in its own metrics, and a restart then reads the state before it.
    fn audit(&self, at_ms: u64, campaign: String, kind: EventKind, detail: String) {
        if let Some(journal) = &self.notices.journal {
            let event = Event {
                at_ms,
                campaign,
                kind,
                detail,
            };
            if journal.record_event(event).is_err() {
                tracing::error!(
                    kind = kind.as_str(),
                    "the spend ledger could not take an audit event"
                );
            }
        }
    }

    /// Fail closed: while the journal cannot make spend durable, no campaign reserves
    /// (the no-bid reason is `ledger_unavailable`); bidding resumes by itself once
    /// the journal writes again.
    fn close_while_unrecordable(&self) {
        let n = &self.notices;
        let failing = n
            .journal
            .as_ref()
            .is_some_and(|j| j.is_failing() || !j.has_room());
        // The journal's writer logs the one line for each change.
        n.budgets.close(failing);
    }

    /// Applies one notice given its raw query string. Wins and bills settle at the
    /// clearing price the exchange filled in, or at our bid price (which the signature
    /// vouches for) when it sent none we can read; losses release. A second notice for
    /// the same bid changes nothing and is counted as a duplicate.
    ///
    /// With a journal, a settlement or release is answered only once its record is
    /// durable, and a duplicate only once every record before it is (it may be the
    /// retry of a notice whose record is still waiting).
    pub(super) fn apply(&mut self, kind: NoticeKind, query: &str) -> Result<Applied, NoticeError> {
        let now_ms = self.notices.clock.now_unix_ms();
        self.tick_at(now_ms);
        let n = &mut self.notices;
        let notice = match n.keyring.verify(kind, query, now_ms) {
            Ok(notice) => notice,
            Err(e) => {
                self.refused[kind_index(kind)][refusal_index(&e)] += 1;
                return Err(e);
            }
        };
        if n.journal.as_ref().is_some_and(|j| !j.has_room()) {
            self.unavailable += 1;
            return Ok(Applied::Unavailable);
        }
        let slot = n.budgets.slot_of(&notice.campaign_id);
        let reserved = impression_cost_micros(notice.price_micros);
        // A settled or released bid's part of the lease stays taken until its record
        // is durable (pinned before the money moves, so no bid can take it meanwhile).
        let pinned = match (&n.journal, slot) {
            (Some(_), Some(slot)) => n.ledger.holding(notice.bid_id, slot, reserved, now_ms),
            _ => None,
        };
        if let Some((campaign, micros)) = pinned {
            n.budgets.pin_lease(campaign, micros);
        }
        let (user_key, segment) = n.ledger.facts_of(notice.bid_id);
        let outcome = match (kind, slot) {
            (NoticeKind::Win | NoticeKind::Bill, _) => {
                // A price we cannot read (absent, encrypted, in a currency without a
                // rate) settles at our bid, which the signature vouches for: the most
                // the impression can cost, so spend is never under-counted.
                let auction = &notice.auction;
                let cpm = match auction
                    .clearing_price_micros()
                    .map(|price| n.currencies.to_ours(price, auction.currency))
                {
                    None => notice.price_micros,
                    Some(Converted::Ours(cpm)) => cpm,
                    Some(Converted::Converted(cpm)) => {
                        self.converted += 1;
                        cpm
                    }
                    Some(Converted::Unknown) => {
                        self.unknown_currency += 1;
                        notice.price_micros
                    }
                };
                let clearing = impression_cost_micros(cpm);
                match slot {
                    Some(slot) => n.ledger.settle_notice(
                        notice.bid_id,
                        slot,
                        reserved,
                        clearing,
                        &n.budgets,
                        now_ms,
                    ),
                    None => n.ledger.settle(notice.bid_id, clearing, &n.budgets, now_ms),
                }
            }
            (NoticeKind::Loss, Some(slot)) => {
                n.ledger
                    .release_notice(notice.bid_id, slot, reserved, &n.budgets, now_ms)
            }
            (NoticeKind::Loss, None) => n.ledger.release(notice.bid_id, &n.budgets, now_ms),
        };
        self.accepted[kind_index(kind)][outcome_index(&outcome)] += 1;
        if let (
            Some(slot),
            NoticeOutcome::Settled(_) | NoticeOutcome::Released { .. } | NoticeOutcome::Unfunded,
        ) = (slot, outcome)
        {
            // The bid's first notice: what it says about the market, for the
            // controller. A min-to-win in another currency counts converted; without
            // a rate, the notice counts as one that carried none.
            let ended = match kind {
                NoticeKind::Loss => Ended::Lost,
                NoticeKind::Win | NoticeKind::Bill => Ended::Won,
            };
            let auction = &notice.auction;
            let min_to_win = match auction
                .min_to_win_micros()
                .map(|price| n.currencies.to_ours(price, auction.currency))
            {
                Some(Converted::Ours(cpm) | Converted::Converted(cpm)) => Some(cpm),
                Some(Converted::Unknown) | None => None,
            };
            n.budgets
                .feedback()
                .record(slot, segment, ended, notice.price_micros, min_to_win);
        }
        if let (NoticeOutcome::Settled(s), Some(user)) = (outcome, user_key) {
            // A frequency cap counts the impression; a pair the full table cannot
            // store keeps that user from the campaign's bids (see money/frequency.rs).
            n.budgets.count_impressions(s.campaign, user, 1, now_ms);
        }
        let Some(journal) = &n.journal else {
            return Ok(Applied::Now);
        };
        let recorded = match outcome {
            NoticeOutcome::Settled(s) => Outcome::Settled {
                charged_micros: s.charged_micros,
                clearing_micros: s.charged_micros + s.overcharged_micros,
            },
            NoticeOutcome::Released { .. } => Outcome::Released,
            // The first notice's record may still wait for its commit: answer once
            // everything queued before now is durable.
            NoticeOutcome::Duplicate if journal.unwritten() > 0 => {
                let queued = journal.barrier();
                return Ok(self.durable(queued));
            }
            NoticeOutcome::Duplicate | NoticeOutcome::Unknown | NoticeOutcome::Unfunded => {
                return Ok(Applied::Now)
            }
        };
        let entry = Entry {
            bid_id: notice.bid_id,
            campaign: notice.campaign_id.to_string(),
            outcome: recorded,
            at_ms: now_ms,
            user_key: user_key.filter(|_| matches!(outcome, NoticeOutcome::Settled(_))),
        };
        let queued = journal.append(entry);
        if let Some((campaign, micros)) = pinned {
            // Unpinned once this record (or, if it could not be queued, everything
            // before it) is on disk.
            let seq = journal.last_seq();
            self.lease_waits
                .push_back((seq, LeaseWait::Unpin { campaign, micros }));
        }
        Ok(self.durable(queued))
    }

    /// Answer when the queued record's commit resolves; 503 at once when the journal
    /// could not queue it.
    fn durable(&mut self, queued: Result<Ack, JournalError>) -> Applied {
        match queued {
            Ok(ack) => Applied::Durable(ack),
            Err(_) => {
                self.unavailable += 1;
                Applied::Unavailable
            }
        }
    }

    /// Notice and ledger counters for the scrape.
    pub(super) fn collect(&self, out: &mut PromText) {
        for kind in KINDS {
            let k = kind_index(kind);
            for (o, outcome) in OUTCOMES.iter().enumerate() {
                out.counter(
                    "bidder_notices_total",
                    "Verified win, bill and loss notices by outcome.",
                    &[("kind", kind_name(kind)), ("outcome", outcome)],
                    self.accepted[k][o],
                );
            }
            for (r, reason) in REFUSALS.iter().enumerate() {
                out.counter(
                    "bidder_notices_refused_total",
                    "Notices refused with 400 (forged, edited or malformed), by reason.",
                    &[("kind", kind_name(kind)), ("reason", reason)],
                    self.refused[k][r],
                );
            }
        }
        for (result, count) in [
            ("converted", self.converted),
            ("unknown", self.unknown_currency),
        ] {
            out.counter(
                "bidder_notice_currency_total",
                "Win and bill notices priced in another currency: converted with [currency_rates_micros], or without a rate (charged at our bid price).",
                &[("result", result)],
                count,
            );
        }
        let ledger = &self.notices.ledger;
        out.gauge(
            "bidder_ledger_pending",
            "Bids holding budget until a notice or expiry.",
            &[],
            i64::try_from(ledger.pending()).unwrap_or(i64::MAX),
        );
        out.gauge(
            "bidder_ledger_in_doubt_micros",
            "Budget held back after a restart for bids made before it that may still win.",
            &[],
            ledger.in_doubt_total_micros(),
        );
        out.gauge(
            "bidder_ledger_charges_waiting",
            "Bids charged for want of a notice whose record waits for room in the journal's queue.",
            &[],
            i64::try_from(ledger.charged_waiting()).unwrap_or(i64::MAX),
        );
        out.gauge(
            "bidder_frequency_capacity_pairs",
            "The (campaign, user) pairs the frequency table can count ([frequency] max_tracked).",
            &[],
            i64::try_from(self.notices.budgets.frequency_capacity()).unwrap_or(i64::MAX),
        );
        out.counter(
            "bidder_frequency_untracked_total",
            "Wins of capped campaigns whose user could not be counted (table full): those users get no bids until counts lapse.",
            &[],
            self.notices.budgets.frequency_untracked(),
        );
        out.counter(
            "bidder_feedback_segments_full_total",
            "Notices counted for their campaign only: every market-segment slot of the campaign was another segment's.",
            &[],
            self.notices.budgets.feedback().segments_full(),
        );
        let s = ledger.stats;
        let counters: [(&'static str, &'static str, u64); 18] = [
            (
                "bidder_ledger_held_total",
                "Reservations taken into the ledger.",
                s.held,
            ),
            (
                "bidder_ledger_settled_total",
                "Reservations settled by a win or bill notice.",
                s.settled,
            ),
            (
                "bidder_ledger_released_total",
                "Reservations released by a loss notice.",
                s.released,
            ),
            (
                "bidder_ledger_expired_total",
                "Reservations whose notice did not come in time: returned, or charged for partners with unnoticed_bids = charge.",
                s.expired,
            ),
            (
                "bidder_ledger_duplicates_total",
                "Notices for bids already settled or released.",
                s.duplicates,
            ),
            (
                "bidder_ledger_unknown_total",
                "Notices for bids the ledger does not hold (never made, or expired).",
                s.unknown,
            ),
            (
                "bidder_ledger_refused_full_total",
                "Reservations released at once because the ledger was full.",
                s.refused_full,
            ),
            (
                "bidder_ledger_in_doubt_settled_total",
                "Win and bill notices for bids made before a restart, charged out of its hold.",
                s.in_doubt_settled,
            ),
            (
                "bidder_ledger_in_doubt_released_total",
                "Loss notices for bids made before a restart, released out of its hold.",
                s.in_doubt_released,
            ),
            (
                "bidder_ledger_in_doubt_expired_total",
                "Holds for bids made before a restart returned once none could still settle.",
                s.in_doubt_expired,
            ),
            (
                "bidder_ledger_late_settled_total",
                "Wins for bids whose reservation had gone back (a loss first, or no notice in time), charged from the budget again.",
                s.late_settled,
            ),
            (
                "bidder_ledger_late_unfunded_total",
                "Wins for bids whose reservation had gone back, not charged: the campaign had no budget left (never forced past its limit).",
                s.late_unfunded,
            ),
            (
                "bidder_ledger_forgotten_full_total",
                "Expired bids not remembered for a late win because the ledger remembered as many as it may.",
                s.forgotten_full,
            ),
            (
                "bidder_ledger_charged_unnoticed_total",
                "Bids charged at their price because no notice came in time (partners with unnoticed_bids = charge).",
                s.charged_unnoticed,
            ),
            (
                "bidder_ledger_charged_unnoticed_micros_total",
                "Money charged for bids no notice came for (partners with unnoticed_bids = charge).",
                u64::try_from(s.charged_unnoticed_micros).unwrap_or(0),
            ),
            (
                "bidder_ledger_charged_then_lost_total",
                "Bids charged with no notice whose loss notice came later: the money stays spent (the cost of failing closed).",
                s.charged_then_lost,
            ),
            (
                "bidder_ledger_lease_raises_total",
                "Leases on money in flight raised (each written to the journal before use).",
                self.lease_raises,
            ),
            (
                "bidder_ledger_lease_cuts_total",
                "Leases on money in flight lowered to what bids hold.",
                self.lease_cuts,
            ),
        ];
        for (name, help, value) in counters {
            out.counter(name, help, &[], value);
        }
        self.collect_journal(out);
    }

    /// The journal's health and cost, so an operator sees durability at a glance.
    fn collect_journal(&self, out: &mut PromText) {
        let journal = self.notices.journal.as_ref();
        out.gauge(
            "bidder_ledger_durable",
            "1 when settlements are written to the spend journal before notices are answered.",
            &[],
            i64::from(journal.is_some()),
        );
        out.counter(
            "bidder_breaker_trips_total",
            "Campaigns the spend-rate breaker paused.",
            &[],
            self.breaker_trips,
        );
        out.counter(
            "bidder_breaker_resumes_total",
            "Campaigns an operator resumed after the spend-rate breaker paused them.",
            &[],
            self.breaker_resumes,
        );
        out.counter(
            "bidder_ledger_unavailable_total",
            "Notices answered 503 because the spend journal could not take them.",
            &[],
            self.unavailable,
        );
        let Some(journal) = journal else { return };
        out.gauge(
            "bidder_ledger_journal_failing",
            "1 while the spend journal cannot be written (notices get 503 and are held).",
            &[],
            i64::from(journal.is_failing()),
        );
        out.gauge(
            "bidder_ledger_journal_unwritten",
            "Notices applied in memory whose journal record is not yet durable.",
            &[],
            i64::try_from(journal.unwritten()).unwrap_or(i64::MAX),
        );
        let s = journal.stats();
        let counters: [(&'static str, &'static str, u64); 3] = [
            (
                "bidder_ledger_journal_commits_total",
                "Durable commits of the spend journal (one fsync each).",
                s.commits.load(Ordering::Relaxed),
            ),
            (
                "bidder_ledger_journal_records_total",
                "Records made durable in the spend journal.",
                s.records.load(Ordering::Relaxed),
            ),
            (
                "bidder_ledger_journal_failed_commits_total",
                "Spend journal commits that failed (disk full, I/O error, read-only).",
                s.failed_commits.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            out.counter(name, help, &[], value);
        }
        out.counter_seconds(
            "bidder_ledger_journal_commit_seconds_total",
            "Time spent in spend journal commits; divide by commits for the mean.",
            &[],
            s.commit_us.load(Ordering::Relaxed),
        );
    }
}
