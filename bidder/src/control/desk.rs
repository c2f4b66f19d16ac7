//! Win, billing and loss notices against the spend ledger, which the control thread
//! owns alone.
//!
//! Workers hand reservations over through the [`LedgerInbox`]; [`NoticeDesk::tick`]
//! drains it and expires reservations whose notice never came, on a timer and before
//! every notice, so a notice always finds the bid it is about if the bid was made.

use std::sync::Arc;

use crate::clock::Clock;
use crate::metrics::PromText;
use crate::money::budget::Budgets;
use crate::money::impression_cost_micros;
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
    /// The calendar reservations expire on and key rotations end on: the same clock
    /// the workers stamp bids with, so a reservation lives `reservation_ttl_ms` of it.
    pub clock: Clock,
}

const KINDS: [NoticeKind; 3] = [NoticeKind::Win, NoticeKind::Bill, NoticeKind::Loss];
const OUTCOMES: [&str; 4] = ["settled", "released", "duplicate", "unknown"];
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
}

impl NoticeDesk {
    pub(super) fn new(notices: Notices) -> NoticeDesk {
        NoticeDesk {
            notices,
            accepted: Default::default(),
            refused: Default::default(),
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
        n.ledger.expire(now_ms, &n.budgets);
    }

    /// Applies one notice given its raw query string. Wins and bills settle at the
    /// clearing price the exchange filled in, or at our bid price (which the signature
    /// vouches for) when it sent none we can read; losses release. A second notice for
    /// the same bid changes nothing and is counted as a duplicate.
    pub(super) fn apply(
        &mut self,
        kind: NoticeKind,
        query: &str,
    ) -> Result<NoticeOutcome, NoticeError> {
        let now_ms = self.notices.clock.now_unix_ms();
        self.tick_at(now_ms);
        let n = &mut self.notices;
        let notice = match n.keyring.verify(query, now_ms) {
            Ok(notice) => notice,
            Err(e) => {
                self.refused[kind_index(kind)][refusal_index(&e)] += 1;
                return Err(e);
            }
        };
        let outcome = match kind {
            NoticeKind::Win | NoticeKind::Bill => {
                let cpm = notice
                    .auction
                    .clearing_price_micros()
                    .unwrap_or(notice.price_micros);
                let clearing = impression_cost_micros(cpm);
                n.ledger.settle(notice.bid_id, clearing, &n.budgets, now_ms)
            }
            NoticeKind::Loss => n.ledger.release(notice.bid_id, &n.budgets, now_ms),
        };
        self.accepted[kind_index(kind)][outcome_index(&outcome)] += 1;
        Ok(outcome)
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
        let ledger = &self.notices.ledger;
        out.gauge(
            "bidder_ledger_pending",
            "Bids holding budget until a notice or expiry.",
            &[],
            i64::try_from(ledger.pending()).unwrap_or(i64::MAX),
        );
        let s = ledger.stats;
        let counters: [(&'static str, &'static str, u64); 7] = [
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
                "Reservations returned because no notice came in time.",
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
        ];
        for (name, help, value) in counters {
            out.counter(name, help, &[], value);
        }
    }
}
