//! Budgets under concurrency (DESIGN.md invariant 2: budgets are never overspent).
//!
//! - Threads racing reserve / settle / release on one campaign never see `available`
//!   below zero, never spend more than the daily budget, and leave the books balanced
//!   (`available + reserved + spent == daily`, to the micro-unit) when they stop.
//! - Reservations are refused exactly when the budget is short, however the threads
//!   interleave.
//! - Any sequence of operations leaves the same books as a plain sequential model.
//! - End to end: workers bidding in parallel on one small campaign, with a ledger thread
//!   applying win, billing and loss notices at clearing prices up to the bid, never
//!   spend more than the campaign's daily budget.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bidder::bid::pipeline::{Answer, Arrival, Bidding, Pipeline};
use bidder::catalog::Catalog;
use bidder::clock::DrivenClock;
use bidder::config::Config;
use bidder::decide::strategy::StaticStrategy;
use bidder::decide::NoBidReason;
use bidder::money::budget::{BudgetLimits, BudgetSnapshot, Budgets, Reservation};
use bidder::money::impression_cost_micros;
use bidder::money::ledger::{Ledger, NoticeOutcome};
use bidder::money::notice::{NoticeKind, NoticeSigner};
use bidder::money::period::Calendar;
use proptest::prelude::*;
use proptest::sample::Index;

/// xorshift64: cheap per-thread randomness, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `lo..=hi`.
    fn between(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }

    fn percent(&mut self, p: u64) -> bool {
        self.next() % 100 < p
    }
}

fn balanced(s: &BudgetSnapshot) -> bool {
    s.available_micros + s.reserved_micros + s.spent_micros == s.daily_micros
}

/// What one racing thread did, summed at the end against the budget's own counters.
#[derive(Debug, Default)]
struct Tally {
    charged: i64,
    overcharged: i64,
    refused: u64,
    settled_above_reservation: u64,
}

const RACE_THREADS: usize = 8;
const RACE_OPS_PER_THREAD: usize = 20_000;
const RACE_DAILY_MICROS: i64 = 3_000_000;
const RACE_MAX_AMOUNT_MICROS: i64 = 2_000;
/// Reservations a racing thread holds at once, so settles and releases interleave
/// with other threads' reservations rather than following their own at once.
const RACE_MAX_HELD: usize = 4;

/// One racing thread: reserve random amounts, hold a few, then settle (at clearing
/// prices from zero to 1.5× the reservation) or release them in random order.
fn race(budgets: &Budgets, seed: u64) -> Tally {
    let mut rng = Rng::new(seed);
    let mut held: Vec<Reservation> = Vec::with_capacity(RACE_MAX_HELD);
    let mut tally = Tally::default();
    for _ in 0..RACE_OPS_PER_THREAD {
        check_never_overspent(budgets);
        if held.len() < RACE_MAX_HELD && rng.percent(60) {
            match budgets.reserve(0, rng.between(1, RACE_MAX_AMOUNT_MICROS)) {
                Some(r) => held.push(r),
                None => tally.refused += 1,
            }
            continue;
        }
        if held.is_empty() {
            continue;
        }
        let r = held.swap_remove(rng.next() as usize % held.len());
        if rng.percent(35) {
            budgets.release(r);
            continue;
        }
        let amount = r.amount_micros;
        let clearing = rng.between(0, amount * 3 / 2);
        let s = budgets.settle(r, clearing);
        assert!(s.charged_micros <= amount, "charged above the reservation");
        tally.charged += s.charged_micros;
        tally.overcharged += s.overcharged_micros;
        tally.settled_above_reservation += u64::from(clearing > amount);
    }
    for r in held {
        budgets.release(r);
    }
    tally
}

/// Checks what must hold at every instant, whatever is in flight.
fn check_never_overspent(budgets: &Budgets) {
    let snap = budgets.snapshot(0);
    assert!(
        snap.available_micros >= 0,
        "available went negative: {snap:?}"
    );
    assert!(
        snap.reserved_micros >= 0,
        "reserved went negative: {snap:?}"
    );
    assert!(
        snap.spent_micros <= RACE_DAILY_MICROS,
        "spent more than the daily budget: {snap:?}"
    );
}

#[test]
fn racing_threads_never_overspend_and_balance_at_quiescence() {
    let budgets = Budgets::new([RACE_DAILY_MICROS]);
    let running = AtomicBool::new(true);
    let tallies = std::thread::scope(|s| {
        // A reader that only looks, as the metrics scrape does; the racers also look
        // after each of their own operations, so observations do not depend on how the
        // scheduler treats this thread.
        s.spawn(|| {
            while running.load(Ordering::Acquire) {
                check_never_overspent(&budgets);
            }
        });
        let racers: Vec<_> = (0..RACE_THREADS)
            .map(|t| {
                let budgets = &budgets;
                s.spawn(move || race(budgets, t as u64 + 1))
            })
            .collect();
        let joined: Vec<_> = racers.into_iter().map(|h| h.join()).collect();
        // Stop the reader before looking at the results, so a racer that failed
        // fails the test instead of leaving the reader spinning.
        running.store(false, Ordering::Release);
        joined
            .into_iter()
            .map(|r| r.expect("a racer failed"))
            .collect::<Vec<Tally>>()
    });

    let snap = budgets.snapshot(0);
    let charged: i64 = tallies.iter().map(|t| t.charged).sum();
    let overcharged: i64 = tallies.iter().map(|t| t.overcharged).sum();
    let refused: u64 = tallies.iter().map(|t| t.refused).sum();
    let above: u64 = tallies.iter().map(|t| t.settled_above_reservation).sum();
    assert!(
        balanced(&snap),
        "books do not balance at quiescence: {snap:?}"
    );
    assert_eq!(snap.reserved_micros, 0, "every reservation was returned");
    assert_eq!(snap.spent_micros, charged, "spent is what settles charged");
    assert!(charged <= RACE_DAILY_MICROS, "charged {charged} > daily");
    assert_eq!(snap.overcharged_micros, overcharged);
    assert_eq!(snap.refused, refused, "every refusal counted once");
    // The race must have reached the limit and priced above some reservations, or it
    // proved nothing about either.
    assert!(
        refused > 0 && charged > RACE_DAILY_MICROS / 2,
        "never short: {snap:?}"
    );
    assert!(above > 0, "no clearing price above a reservation");
}

#[test]
fn reservations_are_refused_exactly_when_the_budget_is_short() {
    // 1,000 reservations of 1,000 fit in the budget with 999 micros to spare; the threads
    // attempt 1,000 + 8 × 40 between them. Nothing is ever returned, so `available` only
    // falls: a correct budget grants exactly the first 1,000 attempts to land and
    // refuses every later one. A refusal while the budget still had room would leave
    // fewer than 1,000 granted; a grant past the budget, more.
    const AMOUNT: i64 = 1_000;
    const FIT: usize = 1_000;
    const DAILY: i64 = AMOUNT * FIT as i64 + AMOUNT - 1;
    const EXTRA_PER_THREAD: usize = 40;
    let attempts_per_thread = FIT / RACE_THREADS + EXTRA_PER_THREAD;
    let budgets = Budgets::new([DAILY]);
    let results: Vec<(Vec<Reservation>, u64)> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..RACE_THREADS)
            .map(|_| {
                let budgets = &budgets;
                s.spawn(move || {
                    let (mut granted, mut refused) = (Vec::new(), 0u64);
                    for _ in 0..attempts_per_thread {
                        match budgets.reserve(0, AMOUNT) {
                            Some(r) => granted.push(r),
                            None => {
                                refused += 1;
                                let available = budgets.snapshot(0).available_micros;
                                assert!(available < AMOUNT, "refused with {available} left");
                            }
                        }
                    }
                    (granted, refused)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let granted: usize = results.iter().map(|(g, _)| g.len()).sum();
    let refused: u64 = results.iter().map(|(_, r)| r).sum();
    let attempts = attempts_per_thread * RACE_THREADS;
    assert_eq!(granted, FIT, "granted exactly what fits");
    assert_eq!(refused as usize, attempts - FIT, "refused everything else");
    let snap = budgets.snapshot(0);
    assert_eq!(snap.available_micros, DAILY - AMOUNT * FIT as i64);
    assert_eq!(snap.refused, refused);
    for (held, _) in results {
        held.into_iter().for_each(|r| budgets.release(r));
    }
    assert_eq!(budgets.snapshot(0).available_micros, DAILY);
}

/// One operation on a two-campaign budget.
#[derive(Debug, Clone)]
enum Op {
    Reserve {
        campaign: usize,
        amount: i64,
    },
    /// Settle the held reservation at `pick`, at `clearing` micros (may be negative:
    /// the budget clamps it; may exceed the reservation: the budget caps it).
    Settle {
        pick: Index,
        clearing: i64,
    },
    Release {
        pick: Index,
    },
    SetDaily {
        campaign: usize,
        daily: i64,
    },
    StartDay,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, 0..=3_000i64).prop_map(|(campaign, amount)| Op::Reserve { campaign, amount }),
        3 => (any::<Index>(), -500..=4_000i64).prop_map(|(pick, clearing)| Op::Settle { pick, clearing }),
        2 => any::<Index>().prop_map(|pick| Op::Release { pick }),
        1 => (0..2usize, 0..=20_000i64).prop_map(|(campaign, daily)| Op::SetDaily { campaign, daily }),
        1 => Just(Op::StartDay),
    ]
}

/// The books of one campaign as plain integers, changed one operation at a time: two
/// day windows used in turn, each with what its bids hold or spent.
#[derive(Debug, Clone, Copy)]
struct Model {
    daily: i64,
    /// (used, spent) per window; `now` is the current day's.
    windows: [(i64, i64); 2],
    now: usize,
    overcharged: i64,
    refused: u64,
    wins: u64,
    clearing: i64,
}

impl Model {
    fn new(daily: i64) -> Model {
        Model {
            daily,
            windows: [(0, 0); 2],
            now: 0,
            overcharged: 0,
            refused: 0,
            wins: 0,
            clearing: 0,
        }
    }

    fn available(&self) -> i64 {
        self.daily - self.windows[self.now].0
    }

    /// The figures the model predicts, in the order of [`figures`].
    fn figures(&self) -> [i64; 9] {
        let (used, spent) = self.windows[self.now];
        [
            self.daily,
            self.available(),
            used - spent,
            spent,
            self.windows[1 - self.now].1,
            self.overcharged,
            self.refused as i64,
            self.wins as i64,
            self.clearing,
        ]
    }
}

/// The budget's figures the model predicts.
fn figures(s: &BudgetSnapshot) -> [i64; 9] {
    [
        s.daily_micros,
        s.available_micros,
        s.reserved_micros,
        s.spent_micros,
        s.previous_day_spent_micros,
        s.overcharged_micros,
        s.refused as i64,
        s.wins as i64,
        s.clearing_micros,
    ]
}

/// When the model's budgets start: a UTC day, rolled forward a day at a time.
const MODEL_START_MS: u64 = testkit::MONDAY_10_30_MS;
const DAY_MS: u64 = 86_400_000;

/// Applies `op` to the real budgets and to the models; `held` keeps each reservation
/// with the window it was made in, `day` counts the days started.
fn apply(
    op: &Op,
    budgets: &Budgets,
    models: &mut [Model; 2],
    held: &mut Vec<(Reservation, usize)>,
    day: &mut u64,
) {
    match op {
        Op::Reserve { campaign, amount } => {
            let m = &mut models[*campaign];
            let fits = m.available() >= *amount;
            match budgets.reserve(*campaign, *amount) {
                Some(r) => {
                    assert!(fits, "reserved {amount} with {} available", m.available());
                    m.windows[m.now].0 += amount;
                    held.push((r, m.now));
                }
                None => {
                    assert!(!fits, "refused {amount} with {} available", m.available());
                    m.refused += 1;
                }
            }
        }
        Op::Settle { pick, clearing } if !held.is_empty() => {
            let (r, window) = held.swap_remove(pick.index(held.len()));
            let m = &mut models[r.campaign];
            let (amount, clearing) = (r.amount_micros, (*clearing).max(0));
            let charged = clearing.min(amount);
            let s = budgets.settle(r, clearing);
            assert_eq!(s.charged_micros, charged);
            m.windows[window].1 += charged;
            m.windows[window].0 -= amount - charged;
            m.overcharged += clearing - charged;
            m.wins += 1;
            m.clearing += charged;
        }
        Op::Release { pick } if !held.is_empty() => {
            let (r, window) = held.swap_remove(pick.index(held.len()));
            models[r.campaign].windows[window].0 -= r.amount_micros;
            budgets.release(r);
        }
        Op::SetDaily { campaign, daily } => {
            models[*campaign].daily = *daily;
            budgets.set_daily(*campaign, *daily);
        }
        Op::StartDay => {
            for m in models.iter_mut() {
                // The idle window starts the new day, keeping only what bids of two
                // days ago still hold.
                let next = 1 - m.now;
                let (used, spent) = m.windows[next];
                m.windows[next] = (used - spent, 0);
                m.now = next;
            }
            *day += 1;
            assert_eq!(budgets.roll(MODEL_START_MS + *day * DAY_MS), 2);
        }
        Op::Settle { .. } | Op::Release { .. } => {}
    }
}

proptest! {
    #[test]
    fn budgets_match_a_sequential_model(
        dailies in (0..=20_000i64, 0..=20_000i64),
        ops in prop::collection::vec(op(), 1..200),
    ) {
        let budgets = Budgets::new([0, 0]);
        for (c, daily) in [dailies.0, dailies.1].into_iter().enumerate() {
            let limits = BudgetLimits { daily_micros: daily, hourly_micros: None, lifetime_micros: None };
            budgets.configure(c, "c", limits, &Calendar::utc(), MODEL_START_MS);
        }
        let mut models = [Model::new(dailies.0), Model::new(dailies.1)];
        let mut held = Vec::new();
        let mut day = 0;
        for op in &ops {
            apply(op, &budgets, &mut models, &mut held, &mut day);
            for (c, model) in models.iter().enumerate() {
                let snap = budgets.snapshot(c);
                prop_assert_eq!(figures(&snap), model.figures(), "campaign {} after {:?}", c, op);
                prop_assert!(balanced(&snap), "campaign {} unbalanced after {:?}", c, op);
                prop_assert!(snap.reserved_micros >= 0);
            }
        }
        for (r, _) in held.drain(..) {
            budgets.release(r);
        }
        for c in 0..2 {
            let snap = budgets.snapshot(c);
            prop_assert_eq!(snap.reserved_micros, 0);
            prop_assert!(balanced(&snap));
        }
    }
}

/// The end-to-end campaign's daily budget: 20 impressions at its 2.00 CPM.
const E2E_DAILY_MICROS: i64 = 40_000;
const E2E_WORKERS: usize = 6;
const E2E_REQUESTS_PER_WORKER: usize = 3_000;
/// How long a bid's reservation waits for a notice: the shortest the configuration
/// allows. The test's calendar runs [`E2E_CLOCK_SPEEDUP`] times faster than real
/// time, so bids whose notice never comes return their budget within milliseconds
/// and some late notices meet an expired bid (which must then charge nothing).
const E2E_RESERVATION_TTL_MS: u64 = 1_000;
const E2E_CLOCK_SPEEDUP: u64 = 50;

fn e2e_bidding(calendar: &DrivenClock) -> Bidding {
    let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo-notice.key");
    let text = format!(
        r#"
[bidding]
seat = "seat-1"
default_shading_ppm = 1_000_000
reservation_ttl_ms = {E2E_RESERVATION_TTL_MS}
deadline_cap_ms = 1000
[notice]
base_url = "https://bidder.test/notice"
hmac_key_file = "{}"
[[partner]]
name = "ex-a"
qps_limit = 100
[[campaign]]
id = "small"
advertiser = "adv"
daily_budget_micros = {E2E_DAILY_MICROS}
max_bid_cpm_micros = 5_000_000
base_cpm_micros = 2_000_000
  [[campaign.creative]]
  id = "small-mrec"
  format = "banner"
  w = 300
  h = 250
  adomain = ["small.example"]
  adm = "<b>small</b>"
"#,
        key.display()
    );
    let config = Config::from_text(Path::new("e2e.toml"), text)
        .unwrap_or_else(|e| panic!("test config invalid: {e:?}"));
    let catalog = Catalog::compile(&config).expect("compile");
    let strategy = Arc::new(StaticStrategy {
        shading_ppm: catalog.settings.default_shading_ppm,
    });
    Bidding::new(catalog, strategy, calendar.clock())
}

/// Moves the test's calendar to [`testkit::MONDAY_10_30_MS`] plus the monotonic time since
/// `began`, accelerated; returns the new instant. Workers and the ledger read the same
/// calendar (workers through `Bidding::clock`).
fn advance_calendar(calendar: &DrivenClock, began: Instant) -> u64 {
    let elapsed_ms = began.elapsed().as_millis() as u64;
    let now = testkit::MONDAY_10_30_MS + elapsed_ms * E2E_CLOCK_SPEEDUP;
    calendar.set_unix_ms(now);
    now
}

/// A notice as the exchange sends it back: which kind, and the query string with the
/// exchange's price macro filled in.
enum Notice {
    Bill(String),
    Loss(String),
}

/// The query of the bid's `burl` or `lurl` in a JSON response.
fn notice_query(response: &[u8], field: &str) -> String {
    let doc: serde_json::Value = serde_json::from_slice(response).expect("response is JSON");
    let url = doc["seatbid"][0]["bid"][0][field]
        .as_str()
        .unwrap_or_else(|| panic!("bid without {field}"));
    url.split_once('?')
        .expect("notice URL has a query")
        .1
        .to_owned()
}

/// A worker bidding on the same banner request over and over. Of its bids, about 60%
/// win and are billed at a clearing price between half the bid and the bid, 25% lose,
/// and the rest never hear back. Returns how many no-bids were for lack of budget.
fn e2e_worker(bidding: &Bidding, id: u16, notices: mpsc::Sender<Notice>) -> u64 {
    let request = br#"{"id":"r","imp":[{"id":"1","banner":{"w":300,"h":250}}],"site":{"domain":"news.example"}}"#;
    let mut worker = Pipeline::new(bidding, id, Arc::default()).expect("signer");
    let mut rng = Rng::new(u64::from(id) + 100);
    let mut body = Vec::with_capacity(request.len());
    for _ in 0..E2E_REQUESTS_PER_WORKER {
        body.clear();
        body.extend_from_slice(request);
        let response = match worker.bid(
            bidding,
            &mut body,
            Arrival {
                partner: Some(0),
                now_ms: bidding.clock.now_unix_ms(),
                at: Instant::now(),
                format: bidder::respond::Format::Json,
            },
        ) {
            Answer::Bid(json) => json.to_vec(),
            Answer::NoBid { .. } => continue,
            Answer::Invalid(e) => panic!("request refused: {e}"),
        };
        let roll = rng.next() % 100;
        let notice = if roll < 60 {
            let doc: serde_json::Value = serde_json::from_slice(&response).expect("JSON");
            let bid_micros = (doc["seatbid"][0]["bid"][0]["price"]
                .as_f64()
                .expect("price")
                * 1e6)
                .round() as i64;
            let clearing = rng.between(bid_micros / 2, bid_micros);
            let price = format!("{}.{:06}", clearing / 1_000_000, clearing % 1_000_000);
            Notice::Bill(notice_query(&response, "burl").replace("${AUCTION_PRICE}", &price))
        } else if roll < 85 {
            Notice::Loss(notice_query(&response, "lurl"))
        } else {
            continue;
        };
        notices.send(notice).expect("ledger thread alive");
    }
    assert_eq!(worker.dropped_bids, 0, "the ledger kept up");
    worker.stats().no_bid_imps[NoBidReason::BudgetExhausted as usize].get()
}

/// What the ledger thread saw.
#[derive(Debug, Default)]
struct LedgerTally {
    charged: i64,
    settled: u64,
    released: u64,
    unknown: u64,
    checks: u64,
}

/// The control thread's part: drain the inbox before every notice (a notice can only
/// follow its bid's hand-off), verify and apply notices, expire old reservations, and
/// check after every step that the campaign never spent more than its budget.
fn e2e_ledger(
    bidding: &Bidding,
    calendar: &DrivenClock,
    notices: mpsc::Receiver<Notice>,
) -> LedgerTally {
    let began = Instant::now();
    let settings = &bidding.catalog.settings;
    let signer =
        NoticeSigner::new(&settings.notice_hmac_key, &settings.notice_base_url).expect("signer");
    let budgets = &bidding.budgets;
    let mut ledger = Ledger::new(60_000);
    let mut tally = LedgerTally::default();
    loop {
        let notice = notices.recv_timeout(Duration::from_millis(1));
        ledger.drain(&bidding.inbox, budgets);
        let now = advance_calendar(calendar, began);
        let outcome = match notice {
            Ok(Notice::Bill(query)) => {
                let n = signer
                    .verify(NoticeKind::Bill, &query)
                    .expect("our own signature");
                let clearing_cpm = n.auction.clearing_price_micros().expect("clearing price");
                assert!(
                    clearing_cpm <= n.price_micros,
                    "test settles at most the bid"
                );
                Some(ledger.settle(n.bid_id, impression_cost_micros(clearing_cpm), budgets, now))
            }
            Ok(Notice::Loss(query)) => {
                let n = signer
                    .verify(NoticeKind::Loss, &query)
                    .expect("our own signature");
                match ledger.release(n.bid_id, budgets, now) {
                    // The calendar runs 50× fast: on a loaded machine a loss can come
                    // after its bid's horizon returned the money, and is then a
                    // duplicate (README: "a later loss is a duplicate").
                    NoticeOutcome::Duplicate => None,
                    other => Some(other),
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        match outcome {
            Some(NoticeOutcome::Settled(s)) => {
                tally.charged += s.charged_micros;
                tally.settled += 1;
            }
            Some(NoticeOutcome::Released { .. }) => tally.released += 1,
            // A bill after its reservation expired: charged if the budget had it,
            // never past the limit (checked below after every step).
            Some(NoticeOutcome::Unknown | NoticeOutcome::Unfunded) => tally.unknown += 1,
            Some(NoticeOutcome::Duplicate) => panic!("each bid gets one notice here"),
            None => {}
        }
        ledger.expire(now, budgets);
        let snap = budgets.snapshot(0);
        assert!(
            snap.spent_micros <= E2E_DAILY_MICROS && snap.available_micros >= 0,
            "overspent: {snap:?}"
        );
        tally.checks += 1;
    }
    ledger.drain(&bidding.inbox, budgets);
    ledger.expire(u64::MAX, budgets);
    tally
}

#[test]
fn workers_bidding_in_parallel_never_spend_more_than_the_daily_budget() {
    let calendar = DrivenClock::at(testkit::MONDAY_10_30_MS);
    let bidding = e2e_bidding(&calendar);
    let (to_ledger, notices) = mpsc::channel();
    let (exhausted, ledger) = std::thread::scope(|s| {
        let ledger = s.spawn(|| e2e_ledger(&bidding, &calendar, notices));
        let workers: Vec<_> = (0..E2E_WORKERS)
            .map(|id| {
                let (bidding, to_ledger) = (&bidding, to_ledger.clone());
                s.spawn(move || e2e_worker(bidding, id as u16, to_ledger))
            })
            .collect();
        drop(to_ledger);
        let exhausted: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
        (exhausted, ledger.join().unwrap())
    });

    let snap = bidding.budgets.snapshot(0);
    assert!(snap.spent_micros <= E2E_DAILY_MICROS, "overspent: {snap:?}");
    assert_eq!(
        snap.spent_micros, ledger.charged,
        "spent is what notices charged"
    );
    assert_eq!(
        snap.reserved_micros, 0,
        "every reservation settled, released or expired"
    );
    assert!(balanced(&snap), "books do not balance: {snap:?}");
    // The run must have pressed on the limit: most of the budget spent, and bids
    // turned away for lack of it.
    assert!(
        snap.spent_micros >= E2E_DAILY_MICROS * 3 / 4 && exhausted > 0,
        "the budget was never tight: {snap:?}, {exhausted} exhausted, {ledger:?}"
    );
    assert!(ledger.settled > 0 && ledger.released > 0, "{ledger:?}");
}
