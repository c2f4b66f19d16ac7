//! Benchmarks of the strategy table: the hot-path read (what the bidder does per
//! candidate campaign) against a plain in-process array as the baseline, and the
//! latency from a write to a reader in another thread seeing it.
//!
//! `cargo bench -p agent --bench table` (release). Prints one line per figure.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bidder_common::clock::Clock;
use bidder_common::table::segment::SEGMENTS_PER_CAMPAIGN;
use bidder_common::table::shm::{OnMismatch, Table, Writer};
use bidder_common::table::strategy::{
    CampaignStrategyValue, PricingFields, StrategyTable, BUDGET_AS_CONFIGURED, MAX_REASONING_BYTES,
};
use bidder_common::table::Capacity;

const CAMPAIGNS: u32 = 4_096;
const READS: usize = 20_000_000;
const LATENCY_SAMPLES: usize = 20_000;

fn value(n: u64) -> CampaignStrategyValue {
    CampaignStrategyValue {
        margin_ppm: 1_000_000 + (n % 500_000) as u32,
        pacing_ppm: 1_000_000,
        shading_ppm: 900_000,
        flags: 0,
        max_cpm_micros: n as i64,
        daily_budget_micros: BUDGET_AS_CONFIGURED,
        updated_at_unix_ms: 0,
        updated_by: 0,
        reasoning_len: 0,
        reasoning: [0; MAX_REASONING_BYTES],
        segment_keys: [0; SEGMENTS_PER_CAMPAIGN],
        segment_shading_ppm: [0; SEGMENTS_PER_CAMPAIGN],
        checksum: 0,
    }
    .sealed()
}

/// Random row order, fixed: what a stream of requests with varied candidates reads.
fn order() -> Vec<u32> {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    (0..READS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % u64::from(CAMPAIGNS)) as u32
        })
        .collect()
}

fn ns_per(elapsed: Duration, n: usize) -> f64 {
    elapsed.as_nanos() as f64 / n as f64
}

fn main() {
    let dir = std::env::temp_dir().join(format!("table-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("strategy");
    let cap = Capacity {
        campaigns: CAMPAIGNS,
        partners: 1,
    };
    let mut writer =
        Writer::<StrategyTable>::open(&path, cap, OnMismatch::Refuse, Clock::system()).unwrap();
    for i in 0..CAMPAIGNS {
        writer
            .put_campaign(&format!("c{i}"), &value(u64::from(i)))
            .unwrap();
    }
    let table = Table::<StrategyTable>::open_read(&path).unwrap();
    let order = order();

    // Baseline: the same five fields from an ordinary array.
    let plain: Vec<PricingFields> = table
        .campaigns()
        .iter()
        .map(|r| r.cell.read(|p| p.pricing()).unwrap())
        .collect();
    let start = Instant::now();
    let mut sum = 0i64;
    for &i in &order {
        let p = black_box(&plain[i as usize]);
        sum = sum.wrapping_add(p.max_cpm_micros + i64::from(p.margin_ppm));
    }
    let base = ns_per(start.elapsed(), READS);
    black_box(sum);

    // The hot path: row by mapped index, seqlock read of the pricing fields.
    let rows = table.campaigns();
    let start = Instant::now();
    let mut sum = 0i64;
    for &i in &order {
        let p = rows[i as usize].cell.read(|p| p.pricing()).unwrap();
        sum = sum.wrapping_add(p.max_cpm_micros + i64::from(p.margin_ppm));
    }
    let hot = ns_per(start.elapsed(), READS);
    black_box(sum);

    // A full row copy (what the agent and bidderctl read), 20x fewer.
    let n = READS / 20;
    let start = Instant::now();
    for &i in &order[..n] {
        black_box(rows[i as usize].load().unwrap());
    }
    let full = ns_per(start.elapsed(), n);
    println!(
        "strategy read, hot path (5 pricing fields, {CAMPAIGNS} rows, random order): {hot:.1} ns \
         (plain array baseline {base:.1} ns, ratio {:.2}x); full row copy: {full:.1} ns",
        hot / base
    );

    write_to_visible(&mut writer, &table);
    drop(writer);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Ping-pong: the writer stamps the time, writes row 0; a reader thread spinning on
/// the row's version reads it and records how long after the stamp it saw it.
fn write_to_visible(writer: &mut Writer<StrategyTable>, table: &Table<StrategyTable>) {
    let epoch = Instant::now();
    let stamp = Arc::new(AtomicU64::new(0));
    // 1 once the reader has taken its starting version, then the last value it saw.
    let seen = Arc::new(AtomicU64::new(0));
    let path = table_path(table);
    let reader = {
        let (stamp, seen) = (Arc::clone(&stamp), Arc::clone(&seen));
        std::thread::spawn(move || {
            let table = Table::<StrategyTable>::open_read(&path).unwrap();
            let row = &table.campaigns()[0];
            let mut latencies = Vec::with_capacity(LATENCY_SAMPLES);
            let mut last = row.cell.version();
            seen.store(1, Ordering::Release);
            while latencies.len() < LATENCY_SAMPLES {
                let v = row.cell.version();
                if v == last {
                    std::hint::spin_loop();
                    continue;
                }
                let value = row.load().unwrap();
                let now = epoch.elapsed().as_nanos() as u64;
                latencies.push(now - stamp.load(Ordering::Acquire));
                last = v;
                seen.store(value.max_cpm_micros as u64, Ordering::Release);
            }
            latencies
        })
    };
    while seen.load(Ordering::Acquire) == 0 {
        std::thread::yield_now();
    }
    for n in 1..=LATENCY_SAMPLES as u64 {
        stamp.store(epoch.elapsed().as_nanos() as u64, Ordering::Release);
        writer.put_campaign("c0", &value(1_000_000 + n)).unwrap();
        // Yield rather than spin: on a two-core machine a spinning writer would
        // steal the reader's core and measure the scheduler instead.
        while seen.load(Ordering::Acquire) != 1_000_000 + n {
            std::thread::yield_now();
        }
    }
    let mut lat = reader.join().unwrap();
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "write -> visible in another thread ({} samples): p50 {} ns, p99 {} ns, max {} ns",
        lat.len(),
        pct(0.50),
        pct(0.99),
        lat[lat.len() - 1]
    );
}

fn table_path(table: &Table<StrategyTable>) -> std::path::PathBuf {
    // The bench made the table under its own temp dir; find it by file identity.
    let dir = std::env::temp_dir().join(format!("table-bench-{}", std::process::id()));
    let path = dir.join("strategy");
    assert_eq!(
        bidder_common::table::shm::file_id(&path),
        Some(table.file_id())
    );
    path
}
