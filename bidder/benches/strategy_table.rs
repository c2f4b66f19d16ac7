//! The bidder's read of the strategy table, as the decision makes it: through the
//! generation's `StrategySource` (a `TableStrategy` over the mapped file), per
//! candidate campaign, for campaigns with and without a row; and how soon a row the
//! agent adds for a campaign that had none prices the next bid, with no mirror thread
//! polling the file (the hot path finds new rows itself).
//!
//! `cargo bench -p bidder --bench strategy_table` (release). Goals on this machine:
//! a read ≤ 50 ns, a new row visible ≤ 1 ms after the agent's write returns. Without
//! `--bench` (as `cargo test --benches` runs it) a tiny run that only checks it works.

// Only the generated catalog is used here; the rest serves the core benchmark.
#[path = "../tests/support/workload.rs"]
#[allow(dead_code)]
mod workload;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bidder::catalog::Catalog;
use bidder::decide::strategy::{StaticStrategy, StrategySource};
use bidder::money::PPM_ONE;
use bidder::tables::strategy::StrategyTable;
use bidder_common::clock::Clock;
use bidder_common::table::segment::{Channel, SegmentKey, SEGMENTS_PER_CAMPAIGN};
use bidder_common::table::shm::{OnMismatch, Writer};
use bidder_common::table::strategy::{
    CampaignStrategyValue, StrategyTable as Layout, BUDGET_AS_CONFIGURED, MAX_REASONING_BYTES,
};
use bidder_common::table::Capacity;

/// Campaigns in the catalog; every other one gets a row before the reads.
const CAMPAIGNS: usize = 4_096;
/// The read goal, ns per campaign read.
const READ_GOAL_NS: f64 = 50.0;
/// The visibility goal, from the agent's write returning to a reader pricing with it.
const VISIBLE_GOAL_NS: u64 = 1_000_000;
/// The margin of the rows the visibility samples add.
const NEW_MARGIN_PPM: u32 = 1_200_000;
/// How long a reader waits for a new row before the run says it never came.
const VISIBLE_TIMEOUT_MS: u64 = 200;

fn row(margin_ppm: u32) -> CampaignStrategyValue {
    CampaignStrategyValue {
        margin_ppm,
        pacing_ppm: PPM_ONE,
        shading_ppm: 900_000,
        flags: 0,
        max_cpm_micros: 9_000_000,
        daily_budget_micros: BUDGET_AS_CONFIGURED,
        updated_at_unix_ms: 1,
        updated_by: 0,
        reasoning_len: 0,
        reasoning: [0; MAX_REASONING_BYTES],
        // Every row shades a full set of segments apart (the worst case to scan).
        segment_keys: std::array::from_fn(|k| segment(k as u32).0),
        segment_shading_ppm: [800_000; SEGMENTS_PER_CAMPAIGN],
        checksum: 0,
    }
    .sealed()
}

/// The `k`th market segment of the rows (one beyond them is in none).
fn segment(k: u32) -> SegmentKey {
    SegmentKey::new(Channel::Site, 300, 250 + k, Some("USA"))
}

/// A fixed pseudo-random order of campaign indices, `n` long.
fn order(n: usize, pick: impl Fn(usize) -> usize) -> Vec<usize> {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            pick((x % (CAMPAIGNS as u64 / 2)) as usize)
        })
        .collect()
}

/// Mean ns of one read for an imp of `segment` over `order`.
fn read_ns(
    source: &dyn StrategySource,
    catalog: &Catalog,
    order: &[usize],
    segment: SegmentKey,
) -> f64 {
    let start = Instant::now();
    let mut sum = 0i64;
    for &i in order {
        let s = source.campaign_in(i, &catalog.campaigns[i], segment);
        sum =
            sum.wrapping_add(s.max_cpm_micros + i64::from(s.margin_ppm) + i64::from(s.shading_ppm));
    }
    black_box(sum);
    start.elapsed().as_nanos() as f64 / order.len() as f64
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let reads = if full { 20_000_000 } else { 10_000 };
    let samples = if full { 1_000 } else { 10 };
    let dir = testkit::TempDir::new("strategy-bench");
    std::fs::create_dir_all(&dir.0).unwrap();
    let path = dir.0.join("strategy");
    let catalog = workload::generated_catalog(CAMPAIGNS, workload::GENERATED_SEED);
    let cap = Capacity {
        campaigns: CAMPAIGNS as u32,
        partners: 1,
    };
    let mut agent =
        Writer::<Layout>::open(&path, cap, OnMismatch::Refuse, Clock::system()).unwrap();
    for c in catalog.campaigns.iter().step_by(2) {
        agent.put_campaign(&c.id, &row(1_100_000)).unwrap();
    }
    let table = StrategyTable::open(&path);
    let source = table.source_for(&catalog);
    let baseline = StaticStrategy {
        shading_ppm: 900_000,
    };

    let with_row = order(reads, |i| 2 * i);
    let without_row = order(reads, |i| 2 * i + 1);
    let none = SegmentKey::NONE;
    let base = read_ns(&baseline, &catalog, &with_row, none);
    let hot = read_ns(source.as_ref(), &catalog, &with_row, none);
    let cold = read_ns(source.as_ref(), &catalog, &without_row, none);
    let last = segment(SEGMENTS_PER_CAMPAIGN as u32 - 1);
    let found = read_ns(source.as_ref(), &catalog, &with_row, last);
    let missed = read_ns(source.as_ref(), &catalog, &with_row, segment(99));
    println!(
        "strategy read through TableStrategy ({CAMPAIGNS} campaigns, random order): \
         with a row {hot:.1} ns, without a row {cold:.1} ns (StaticStrategy baseline \
         {base:.1} ns); for an imp of a segment, rows of {SEGMENTS_PER_CAMPAIGN} segments: \
         the last of them {found:.1} ns, none of them {missed:.1} ns; goal ≤ {READ_GOAL_NS} ns: {}",
        verdict(full, hot.max(cold).max(found).max(missed) <= READ_GOAL_NS)
    );

    new_row_visibility(&mut agent, &catalog, source, samples, full);
}

/// Whether a goal was met; a smoke run (few samples, maybe a debug build) says nothing.
fn verdict(full: bool, met: bool) -> &'static str {
    match (full, met) {
        (false, _) => "not judged in a smoke run",
        (true, true) => "MET",
        (true, false) => "MISSED",
    }
}

/// A reader thread prices one campaign without a row in a loop, as a busy worker
/// would, while the agent adds a row for it; measured from just before the agent's
/// write to the first read that returns the row's margin. No mirror thread runs.
fn new_row_visibility(
    agent: &mut Writer<Layout>,
    catalog: &Catalog,
    source: Arc<dyn StrategySource>,
    samples: usize,
    full: bool,
) {
    const IDLE: usize = usize::MAX - 1;
    const STOP: usize = usize::MAX;
    let epoch = Instant::now();
    let probe = Arc::new(Probe {
        target: AtomicUsize::new(IDLE),
        ready: AtomicUsize::new(IDLE),
        done: AtomicUsize::new(IDLE),
        stamp: AtomicU64::new(0),
        seen: AtomicU64::new(0),
    });
    let campaigns = Arc::new(catalog.campaigns.clone());
    let reader = {
        let (p, campaigns) = (Arc::clone(&probe), Arc::clone(&campaigns));
        std::thread::spawn(move || loop {
            let idx = p.target.load(Ordering::Acquire);
            if idx == STOP {
                return;
            }
            if idx == IDLE || p.done.load(Ordering::Acquire) == idx {
                std::hint::spin_loop();
                continue;
            }
            let s = source.campaign(idx, &campaigns[idx]);
            // Stored before the agent's write: a read that sees the row sees it. The
            // clock is read after it, so `now` is never before the stamp.
            let since = p.stamp.load(Ordering::Acquire);
            let now = epoch.elapsed().as_nanos() as u64;
            if s.margin_ppm == NEW_MARGIN_PPM {
                p.seen.store((now - since).max(1), Ordering::Release);
                p.done.store(idx, Ordering::Release);
            } else if since == 0 {
                p.ready.store(idx, Ordering::Release);
            } else if now - since > VISIBLE_TIMEOUT_MS * 1_000_000 {
                p.seen.store(u64::MAX, Ordering::Release);
                p.done.store(idx, Ordering::Release);
            }
        })
    };
    let mut lat = Vec::with_capacity(samples);
    let mut timeouts = 0;
    for idx in (1..CAMPAIGNS).step_by(2).take(samples) {
        probe.stamp.store(0, Ordering::Release);
        probe.seen.store(0, Ordering::Release);
        probe.target.store(idx, Ordering::Release);
        // Yield rather than spin: on a two-core machine a spinning writer would steal
        // the reader's core and measure the scheduler instead.
        while probe.ready.load(Ordering::Acquire) != idx {
            std::thread::yield_now();
        }
        probe
            .stamp
            .store(epoch.elapsed().as_nanos() as u64, Ordering::Release);
        agent
            .put_campaign(&campaigns[idx].id, &row(NEW_MARGIN_PPM))
            .unwrap();
        let ns = loop {
            match probe.seen.load(Ordering::Acquire) {
                0 => std::thread::yield_now(),
                ns => break ns,
            }
        };
        if ns == u64::MAX {
            timeouts += 1;
            if lat.is_empty() && timeouts >= 3 {
                break;
            }
        } else {
            lat.push(ns);
        }
    }
    probe.target.store(STOP, Ordering::Release);
    reader.join().unwrap();
    if lat.is_empty() {
        println!(
            "new row -> first read pricing with it, no mirror thread: not seen within \
             {VISIBLE_TIMEOUT_MS} ms in any of {timeouts} samples (rows wait for a poll)"
        );
        return;
    }
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let max = lat[lat.len() - 1];
    println!(
        "new row -> first read pricing with it, no mirror thread ({} samples, {timeouts} \
         timeouts): p50 {} ns, p99 {} ns, max {max} ns (goal ≤ {VISIBLE_GOAL_NS} ns: {})",
        lat.len(),
        pct(0.50),
        pct(0.99),
        verdict(full, timeouts == 0 && max <= VISIBLE_GOAL_NS)
    );
}

/// The hand-shake between the bench and its reader thread.
struct Probe {
    /// The campaign the reader watches (or idle, or stop).
    target: AtomicUsize,
    /// The campaign the reader has read without a row: the write may start.
    ready: AtomicUsize,
    /// The campaign whose sample the reader finished.
    done: AtomicUsize,
    /// When the agent's write started, ns since the bench's epoch (0: not yet).
    stamp: AtomicU64,
    /// The sample, ns (0: waiting; `u64::MAX`: timed out).
    seen: AtomicU64,
}
