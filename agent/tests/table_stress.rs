//! Stress: one writer rewrites strategy rows in a tight loop while reader threads and a
//! reader in another process copy rows and check each copy is whole — its checksum
//! matches and every field derives from the same write. Millions of reads, zero torn.
//!
//! The other process is this test binary again, running the stress test itself with
//! the table path in its environment.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use bidder_common::clock::Clock;
use bidder_common::table::segment::SEGMENTS_PER_CAMPAIGN;
use bidder_common::table::shm::{OnMismatch, Table, Writer};
use bidder_common::table::strategy::{
    CampaignStrategyValue, StrategyTable, BUDGET_AS_CONFIGURED, MAX_REASONING_BYTES,
};
use bidder_common::table::Capacity;

const ROWS: u32 = 32;
const READS_PER_THREAD: u64 = 1_500_000;
const READS_IN_CHILD: u64 = 1_500_000;
const READER_THREADS: usize = 2;
const CHILD_ENV: &str = "BIDDER_TABLE_STRESS_PATH";

/// Write number `n` of a row: every field a function of `n`, so a copy mixing two
/// writes is caught by [`check`] even where the checksum alone might collide.
fn value(n: u64) -> CampaignStrategyValue {
    let mut v = CampaignStrategyValue {
        margin_ppm: 900_000 + (n % 600_000) as u32,
        pacing_ppm: (n % 1_000_000) as u32,
        shading_ppm: (n.wrapping_mul(7) % 1_000_000) as u32,
        flags: (n & 1) as u32,
        max_cpm_micros: n as i64,
        daily_budget_micros: BUDGET_AS_CONFIGURED,
        updated_at_unix_ms: n ^ 0xA5A5,
        updated_by: (n % 65_536) as u32,
        reasoning_len: 0,
        reasoning: [0; MAX_REASONING_BYTES],
        segment_keys: [0; SEGMENTS_PER_CAMPAIGN],
        segment_shading_ppm: [0; SEGMENTS_PER_CAMPAIGN],
        checksum: 0,
    };
    // Different text lengths so the reasoning words change too.
    let text = format!("write {n} {}", "x".repeat((n % 200) as usize));
    v.set_reasoning(&text);
    v.sealed()
}

/// Whether a copy is one whole write: the checksum over every word (reasoning
/// included) matches, and the numeric fields all derive from the same write number.
fn check(v: &CampaignStrategyValue) -> bool {
    let n = v.max_cpm_micros as u64;
    v.is_sealed()
        && v.margin_ppm == 900_000 + (n % 600_000) as u32
        && v.pacing_ppm == (n % 1_000_000) as u32
        && v.shading_ppm == (n.wrapping_mul(7) % 1_000_000) as u32
        && v.flags == (n & 1) as u32
        && v.updated_at_unix_ms == n ^ 0xA5A5
        && v.updated_by == (n % 65_536) as u32
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    reads: u64,
    torn: u64,
    contended: u64,
}

/// Reads random rows `reads` times, checking every copy; also takes the hot path's
/// partial read of the pricing fields and checks they agree with each other.
fn read_loop(path: &Path, reads: u64, seed: u64) -> Tally {
    let table = Table::<StrategyTable>::open_read(path).expect("reader maps the table");
    let mut t = Tally::default();
    let mut x = seed | 1;
    while t.reads < reads {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let rows = table.campaigns();
        let row = &rows[(x % rows.len() as u64) as usize];
        t.reads += 1;
        if x & 1 == 0 {
            match row.load() {
                Ok(v) if check(&v) => {}
                Ok(_) => t.torn += 1,
                Err(_) => t.contended += 1,
            }
        } else {
            match row.cell.read(|p| p.pricing()) {
                Ok(p) => {
                    let n = p.max_cpm_micros as u64;
                    let whole = p.margin_ppm == 900_000 + (n % 600_000) as u32
                        && p.pacing_ppm == (n % 1_000_000) as u32
                        && p.shading_ppm == (n.wrapping_mul(7) % 1_000_000) as u32
                        && p.flags == (n & 1) as u32;
                    if !whole {
                        t.torn += 1;
                    }
                }
                Err(_) => t.contended += 1,
            }
        }
    }
    t
}

#[test]
fn readers_in_threads_and_another_process_never_see_a_torn_row() {
    // The same test binary, started again by this test with the table path in its
    // environment, is the reader in the other process.
    if let Some(path) = std::env::var_os(CHILD_ENV) {
        let t = read_loop(Path::new(&path), READS_IN_CHILD, 0xDEAD_BEEF);
        println!(
            "child reads={} torn={} contended={}",
            t.reads, t.torn, t.contended
        );
        return;
    }
    let dir = testkit::TempDir::new("table-stress");
    std::fs::create_dir_all(&dir.0).unwrap();
    let path = dir.0.join("strategy");
    let cap = Capacity {
        campaigns: ROWS,
        partners: 1,
    };
    let mut writer =
        Writer::<StrategyTable>::open(&path, cap, OnMismatch::Refuse, Clock::system()).unwrap();
    for r in 0..ROWS {
        writer
            .put_campaign(&format!("c{r}"), &value(u64::from(r)))
            .unwrap();
    }

    let stop = Arc::new(AtomicBool::new(false));
    let writes = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut n = u64::from(ROWS);
            while !stop.load(Ordering::Relaxed) {
                let key = format!("c{}", n % u64::from(ROWS));
                writer.put_campaign(&key, &value(n)).unwrap();
                n += 1;
            }
            n - u64::from(ROWS)
        })
    };

    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "readers_in_threads_and_another_process_never_see_a_torn_row",
            "--nocapture",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the reader process");
    let readers: Vec<_> = (0..READER_THREADS)
        .map(|i| {
            let path = path.clone();
            thread::spawn(move || read_loop(&path, READS_PER_THREAD, 0x9E37_79B9 + i as u64))
        })
        .collect();
    let mut total = Tally::default();
    for r in readers {
        let t = r.join().unwrap();
        total.reads += t.reads;
        total.torn += t.torn;
        total.contended += t.contended;
    }
    let out = child.wait_with_output().unwrap();
    stop.store(true, Ordering::Relaxed);
    let writes = writes.join().unwrap();
    assert!(out.status.success(), "reader process failed: {out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The harness may print the test's name on the same line before the tally.
    let line = stdout
        .lines()
        .find_map(|l| l.find("child reads=").map(|at| &l[at..]))
        .unwrap_or_else(|| panic!("no tally from the reader process: {stdout}"));
    let field = |name: &str| -> u64 {
        let tag = format!("{name}=");
        let rest = &line[line.find(&tag).unwrap() + tag.len()..];
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    println!(
        "threads: reads={} torn={} contended={}; process: reads={} torn={} contended={}; writes={writes}",
        total.reads,
        total.torn,
        total.contended,
        field("reads"),
        field("torn"),
        field("contended")
    );
    assert_eq!(total.reads, READS_PER_THREAD * READER_THREADS as u64);
    assert_eq!(field("reads"), READS_IN_CHILD);
    assert_eq!(total.torn, 0, "torn reads in threads");
    assert_eq!(field("torn"), 0, "torn reads in the other process");
    assert!(writes > 10_000, "the writer barely ran ({writes} writes)");
    // Contended reads fail closed; they must stay rare even under this abuse.
    assert!(total.contended + field("contended") < total.reads / 100);
}

/// The checker itself must be able to fail: a value mixing two writes is caught.
#[test]
fn the_checker_catches_a_mixed_copy() {
    let mut mixed = value(10);
    mixed.margin_ppm = value(11).margin_ppm;
    assert!(!check(&mixed));
    let mut resealed = mixed.sealed();
    assert!(
        !check(&resealed),
        "cross-field check catches a re-sealed mix"
    );
    resealed = value(12);
    assert!(check(&resealed));
}
