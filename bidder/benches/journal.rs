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
//! - *recovery*: reopening a journal holding a day of records at the measured rate is
//!   what a restart costs before the first bid.
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
            .then_some(n.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
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

    // A day of records at a saturated host's notice rate, reopened.
    let records: u64 = if full { 2_000_000 } else { 2_000 };
    fill(&config, clock.clone(), &mut ids, now_ms, records);
    let started = Instant::now();
    let (_journal, recovered) =
        Journal::open(&config, clock, now_ms - 86_400_000, now_ms - 300_000).expect("reopen");
    println!(
        "recovery of {records} records: {:.0} ms (reading {:.0} ms; {} resolved bids kept for duplicates)",
        started.elapsed().as_secs_f64() * 1e3,
        recovered.elapsed.as_secs_f64() * 1e3,
        recovered.resolved.len()
    );
}

/// Writes `records` settlements spread over the day before `now_ms`, in big batches.
fn fill(config: &JournalConfig, clock: Clock, ids: &mut BidIdGen, now_ms: u64, records: u64) {
    let (journal, _) = Journal::open(config, clock, 0, 0).expect("open");
    let mut acks = VecDeque::new();
    for n in 0..records {
        let at_ms = now_ms - 86_400_000 + n * 86_400_000 / records.max(1);
        acks.push_back(journal.append(entry(ids, at_ms, n)).expect("room"));
        if acks.len() >= 4_096 {
            assert!(bidder_wait(acks.pop_front().expect("queued")));
        }
    }
    while let Some(ack) = acks.pop_front() {
        assert!(bidder_wait(ack));
    }
}
