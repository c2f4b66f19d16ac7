//! The spend journal's price: how long a win notice waits for its record to be durable
//! (SQLite WAL, `synchronous = FULL`, group commit), alone and under load, and how many
//! notices per second one writer makes durable.
//!
//! `cargo bench -p bidder --bench journal` (release). Three runs, one file in the
//! temporary folder (it must be on a disk, not tmpfs: an `fsync` must reach a device):
//! - *one at a time*: append, wait for the ack, repeat (a quiet host: every notice
//!   pays a whole commit);
//! - *K in flight*: K notices outstanding at once, as K exchange connections would
//!   keep them (group commit batches whatever arrived during the last `fsync`);
//! - *recovery*: what a restart costs before the first bid on a saturated host
//!   ([`SATURATED_NOTICES_PER_S`]): the notices of the last reservation TTL come back
//!   one by one (duplicates), the rest of the day only through its quarter-hour sums.
//!   Reopened twice, the second time with twice the day's older notices, to show the
//!   cost does not grow with the day.
//!
//! Without `--bench` (as `cargo test --benches` runs it) a tiny run that only checks
//! it works.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bidder::clock::{Clock, DrivenClock};
use bidder::money::bid_id::BidIdGen;
use bidder::money::journal::{Entry, Journal, JournalConfig, Outcome};

/// Notices outstanding at once in the loaded runs.
const IN_FLIGHT: [usize; 3] = [8, 64, 512];
/// Win and loss notices per second of a saturated host (432M a day).
const SATURATED_NOTICES_PER_S: u64 = 5_000;
/// The default `bidding.reservation_ttl_ms`: notices this recent come back one by one.
const RESERVATION_TTL_MS: u64 = 300_000;
/// Distinct users a capped campaign counts (the default `frequency.max_tracked`).
const USERS: u64 = 1 << 20;

fn entry(ids: &mut BidIdGen, now_ms: u64, n: u64) -> Entry {
    Entry {
        bid_id: ids.next_id(now_ms),
        campaign: format!("campaign-{}", n % 64),
        outcome: Outcome::Settled {
            charged_micros: 1_000 + (n % 500) as i64,
            clearing_micros: 1_000 + (n % 500) as i64,
        },
        at_ms: now_ms,
        user_key: n
            .is_multiple_of(3)
            .then_some((n % USERS).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(name: &str, mut latencies: Vec<Duration>, elapsed: Duration) {
    latencies.sort();
    let n = latencies.len();
    println!(
        "{name:<24} {n:>7} notices  p50 {:>8.3} ms  p99 {:>8.3} ms  max {:>8.3} ms  {:>9.0} notices/s",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies[n - 1].as_secs_f64() * 1e3,
        n as f64 / elapsed.as_secs_f64(),
    );
}

/// Appends `total` notices keeping `in_flight` outstanding; returns each one's wait.
fn run(journal: &Journal, ids: &mut BidIdGen, now_ms: u64, total: u64, in_flight: usize) {
    let mut waiting = VecDeque::with_capacity(in_flight);
    let mut latencies = Vec::with_capacity(total as usize);
    let started = Instant::now();
    for n in 0..total {
        if waiting.len() == in_flight {
            let (at, ack): (Instant, _) = waiting.pop_front().expect("full");
            assert!(bidder_wait(ack), "a commit failed");
            latencies.push(at.elapsed());
        }
        let ack = journal
            .append(entry(ids, now_ms, n))
            .expect("journal has room");
        waiting.push_back((Instant::now(), ack));
    }
    while let Some((at, ack)) = waiting.pop_front() {
        assert!(bidder_wait(ack), "a commit failed");
        latencies.push(at.elapsed());
    }
    let name = if in_flight == 1 {
        "one at a time".to_owned()
    } else {
        format!("{in_flight} in flight")
    };
    report(&name, latencies, started.elapsed());
}

fn bidder_wait(ack: bidder::money::journal::Ack) -> bool {
    ack.blocking_recv().unwrap_or(false)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let scale: u64 = if full { 1 } else { 100 };
    let dir = testkit::TempDir::new("journal-bench");
    let config = JournalConfig {
        path: dir.0.join("ledger.sqlite"),
        retention_days: 35,
    };
    // One driven clock at the instant the records are stamped with: pruning at open
    // compares them with it, so the run means the same on any date.
    let now_ms = testkit::MONDAY_10_30_MS;
    let clock = DrivenClock::at(now_ms).clock();
    let mut ids = BidIdGen::new(1, 0);
    let (journal, _) = Journal::open(&config, clock.clone(), 0, 0).expect("open");
    println!("journal on {}", dir.0.display());
    run(&journal, &mut ids, now_ms, 2_000 / scale, 1);
    for k in IN_FLIGHT {
        run(&journal, &mut ids, now_ms, 50_000 / scale, k);
    }
    drop(journal);

    // A saturated day: the last TTL's notices at the saturated rate, and older ones
    // spread over the day before them (twice as many the second time).
    let window = SATURATED_NOTICES_PER_S * RESERVATION_TTL_MS / 1_000 / scale;
    let older = 2_000_000 / scale;
    let mut written = 0;
    for round in 0..2 {
        let day_start = now_ms - 86_400_000;
        fill(
            &config,
            clock.clone(),
            &mut ids,
            (day_start, now_ms - RESERVATION_TTL_MS),
            older,
        );
        written += older;
        if round == 0 {
            fill(
                &config,
                clock.clone(),
                &mut ids,
                (now_ms - RESERVATION_TTL_MS, now_ms),
                window,
            );
            written += window;
        }
        let started = Instant::now();
        let (_journal, recovered) = Journal::open(
            &config,
            clock.clone(),
            day_start,
            now_ms - RESERVATION_TTL_MS,
        )
        .expect("reopen");
        println!(
            "recovery of a day of {written} notices: {:.0} ms (reading {:.0} ms: {} settlements summed, {} user-quarter rows, {} resolved bids kept for duplicates)",
            started.elapsed().as_secs_f64() * 1e3,
            recovered.elapsed.as_secs_f64() * 1e3,
            recovered.records,
            recovered.impressions.len(),
            recovered.resolved.len()
        );
    }
}

/// Writes `records` settlements spread evenly over `[from_ms, to_ms)`, in big batches.
/// Bid ids never go back in time, so fills run oldest first.
fn fill(
    config: &JournalConfig,
    clock: Clock,
    ids: &mut BidIdGen,
    (from_ms, to_ms): (u64, u64),
    records: u64,
) {
    let (journal, _) = Journal::open(config, clock, 0, 0).expect("open");
    let mut acks = VecDeque::new();
    for n in 0..records {
        let at_ms = from_ms + n * (to_ms - from_ms) / records.max(1);
        acks.push_back(journal.append(entry(ids, at_ms, n)).expect("room"));
        if acks.len() >= 4_096 {
            assert!(bidder_wait(acks.pop_front().expect("queued")));
        }
    }
    while let Some(ack) = acks.pop_front() {
        assert!(bidder_wait(ack));
    }
}
