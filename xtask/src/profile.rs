//! `cargo xtask profile`: where the bidder's CPU time goes under realistic load.
//!
//! The bidder (io_uring engine, one worker on CPU 0) runs under the open-loop `loadgen`
//! (CPU 1) while `perf record` samples it with frame-pointer call graphs. The samples are
//! folded and drawn with the `inferno` crate, so no Perl scripts are needed, and the same
//! folded stacks give the top functions by self and inclusive time. `perf stat` software
//! counters and the decision vs whole-request latency split from `/metrics` complete the
//! picture: the flamegraph says *where* time goes, the histograms say *how much* a request
//! waits for it.
//!
//! The server, its configuration and the load generator are the pieces of
//! `cargo xtask bench engines` (see `bench.rs`), shared rather than copied, so the
//! profiled server is the benchmarked one.

use std::collections::{HashMap, HashSet};
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use std::{fs, thread};

use anyhow::{bail, ensure, Context as _, Result};
use inferno::collapse::{perf as perf_collapse, Collapse as _};
use inferno::flamegraph;

use crate::bench::{self, Kind, Load, Target};
use crate::{command, paths, setup};

/// Load runs this long before sampling starts, so start-up and cold caches stay out
/// of the profile.
const WARM_UP_S: u32 = 1;
/// `perf stat` window after the recording, seconds: counters settle within it.
const STAT_WINDOW_S: u32 = 2;
/// Load keeps running this long after the last perf step, so no step sees it stop.
const TAIL_S: u32 = 1;
/// Rows in each top-functions table.
const TOP_ROWS: usize = 15;
/// Bound on the `/metrics` answer read: it is a few kilobytes; anything near this is a bug.
const MAX_METRICS_BYTES: u64 = 4 << 20;
/// Software counters: the only ones every machine (including VMs without a PMU) has.
const STAT_EVENTS: &str = "task-clock,context-switches,cpu-migrations,page-faults";

/// The profiled server: the benchmark's plain io_uring target.
const TARGET: Target = Target {
    name: "io_uring",
    kind: Kind::Bidder {
        engine: "io_uring",
        extra: "",
    },
    workers: 1,
    load: Load::Bids,
};

/// What `cargo xtask profile` was asked for.
pub struct Options {
    /// Seconds `perf record` samples for (load runs longer, see the constants above).
    pub duration_s: u32,
    /// loadgen's target rate, requests per second: moderate, so the profile shows the
    /// request path rather than queueing under overload.
    pub rate: u32,
    /// Where the SVG and the folded stacks go (`perf/reports/` by default).
    pub out_dir: Option<PathBuf>,
}

/// `cargo xtask profile`.
pub fn run(opts: &Options) -> Result<()> {
    ensure!(opts.duration_s > 0, "--duration-s must be at least 1");
    ensure!(opts.rate > 0, "--rate must be at least 1");
    setup::run()?;
    check_perf_allowed()?;
    let root = paths::workspace_root();
    let bin = build(root)?;
    let event = sampling_event();
    println!("profile: sampling event {event}");

    let work = std::env::temp_dir().join(format!("bidder-profile-{}", std::process::id()));
    fs::create_dir_all(&work)?;
    let result = record_under_load(opts, root, &bin, &work, event);
    let _ = fs::remove_dir_all(&work);
    let recorded = result?;

    let out_dir = opts
        .out_dir
        .clone()
        .unwrap_or_else(|| root.join("perf/reports"));
    fs::create_dir_all(&out_dir)?;
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let folded_path = out_dir.join(format!("flamegraph-{stamp}.folded"));
    let svg_path = out_dir.join(format!("flamegraph-{stamp}.svg"));
    fs::write(&folded_path, &recorded.folded)?;
    render_svg(&recorded.folded, event, &svg_path)?;
    println!("profile: flamegraph {}", svg_path.display());
    println!("profile: folded stacks {}", folded_path.display());

    print_top(&recorded.folded, event);
    println!(
        "\nprofile: perf stat over {STAT_WINDOW_S} s\n{}",
        recorded.stat
    );
    print_latency(&recorded.metrics)?;
    let bench::Latency {
        p50_us: p50,
        p99_us: p99,
        bid_share: bid_rate,
    } = recorded.loadgen;
    println!(
        "\nprofile: loadgen at {} req/s: p50 {p50} µs, p99 {p99} µs (client side), {:.0}% bids",
        opts.rate,
        bid_rate * 100.0
    );
    Ok(())
}

/// Fails early, with the fix, when this user may not sample another process: a failed
/// `perf record` later would say much less.
fn check_perf_allowed() -> Result<()> {
    command::probe(Command::new("perf").arg("--version"))
        .context("`perf` is not installed: run `cargo xtask setup` (installs linux-perf)")?;
    let root = command::probe(Command::new("id").arg("-u")).is_some_and(|u| u.trim() == "0");
    let paranoid = fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .unwrap_or(2);
    if !root && paranoid > 2 {
        bail!(
            "kernel.perf_event_paranoid is {paranoid}: perf may not sample other processes. \
             Run as root, or allow it with `sudo sysctl kernel.perf_event_paranoid=2`"
        );
    }
    Ok(())
}

/// Builds bidder and loadgen with the `profiling` profile (full debug info) and frame
/// pointers, so `--call-graph fp` walks whole stacks. The frame-pointer flag lives in
/// its own target directory: changing RUSTFLAGS in the shared one would rebuild
/// everything for the next plain build. Returns the directory holding the binaries.
fn build(root: &Path) -> Result<PathBuf> {
    let target = paths::target_dir().join("frame-pointers");
    let mut flags = std::env::var("RUSTFLAGS").unwrap_or_default();
    flags.push_str(" -C force-frame-pointers=yes");
    println!("profile: building bidder and loadgen (profiling profile, frame pointers)");
    command::stream(
        command::cargo()
            .args(["build", "--profile", "profiling", "--package", "bidder"])
            .args(["--package", "perf", "--bins"])
            .env("CARGO_TARGET_DIR", &target)
            .env("RUSTFLAGS", flags.trim())
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .current_dir(root),
    )?;
    Ok(target.join("profiling"))
}

/// `cycles` when the CPU exposes hardware counters, else the `cpu-clock` timer: VMs
/// and some containers have no PMU, and perf then reports cycles as not supported.
fn sampling_event() -> &'static str {
    let out = Command::new("perf")
        .args(["stat", "-x,", "-e", "cycles", "true"])
        .output();
    match out {
        Ok(o) if o.status.success() && !String::from_utf8_lossy(&o.stderr).contains("<not") => {
            "cycles"
        }
        _ => "cpu-clock",
    }
}

/// What one profiled run produced.
struct Recorded {
    folded: String,
    stat: String,
    metrics: String,
    loadgen: bench::Latency,
}

/// Starts the bidder, loads it, records, counts, scrapes `/metrics`, and stops it.
fn record_under_load(
    opts: &Options,
    root: &Path,
    bin: &Path,
    work: &Path,
    event: &str,
) -> Result<Recorded> {
    let server = bench::start(&TARGET, root, bin, work)?;
    let pid = server.pid().to_string();
    let url = format!("http://127.0.0.1:{}/bid/exchange-a", bench::BID_PORT);
    let load_s = WARM_UP_S + opts.duration_s + STAT_WINDOW_S + TAIL_S;
    let (rate, load_root, load_bin) = (f64::from(opts.rate), root.to_owned(), bin.to_owned());
    println!(
        "profile: bidder pid {pid} on CPU {}, loadgen at {rate} req/s on CPU {} for {load_s} s",
        bench::SERVER_CPU,
        bench::CLIENT_CPU
    );
    let load = thread::spawn(move || {
        bench::loadgen(&load_root, &load_bin, &url, rate, load_s, bench::CLIENT_CPU)
    });
    thread::sleep(Duration::from_secs(WARM_UP_S.into()));

    let data = work.join("perf.data");
    println!("profile: perf record -g for {} s", opts.duration_s);
    let perf = perf_record(&pid, event, &data, opts.duration_s).and_then(|()| perf_stat(&pid));
    // Wait for the load even when perf failed, so no loadgen outlives this command.
    let loadgen = load
        .join()
        .map_err(|_| anyhow::anyhow!("the loadgen thread panicked"));
    let stat = perf?;
    let loadgen = loadgen??;
    let metrics = scrape_metrics(bench::BID_PORT + 1)?;
    drop(server);
    let folded = fold(&data)?;
    Ok(Recorded {
        folded,
        stat,
        metrics,
        loadgen,
    })
}

fn perf_record(pid: &str, event: &str, data: &Path, duration_s: u32) -> Result<()> {
    let out = Command::new(perf_script("record.sh"))
        .args([pid, event])
        .arg(data)
        .arg(duration_s.to_string())
        .output()
        .context("running perf/profile/record.sh")?;
    if !out.status.success() {
        bail!(
            "perf record failed ({}): {}\nIf it names permissions or perf_event_paranoid, run as root \
             or `sudo sysctl kernel.perf_event_paranoid=2`",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Software counters for the server over `STAT_WINDOW_S`, as an aligned table.
fn perf_stat(pid: &str) -> Result<String> {
    let out = Command::new(perf_script("stat.sh"))
        .args([pid, STAT_EVENTS, &STAT_WINDOW_S.to_string()])
        .output()
        .context("running perf/profile/stat.sh")?;
    let text = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "perf stat failed: {}", text.trim());
    Ok(stat_table(&text))
}

/// Turns `perf stat -x,` lines (`value,unit,event,…`) into `event  value unit` rows.
fn stat_table(csv: &str) -> String {
    let mut table = String::new();
    for line in csv.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        if let [value, unit, event, ..] = fields[..] {
            table.push_str(&format!("  {event:<18} {value:>14} {unit}\n"));
        }
    }
    table
}

fn perf_script(name: &str) -> PathBuf {
    paths::workspace_root().join("perf/profile").join(name)
}

/// `perf script` on the recording, folded by inferno's perf collapser.
fn fold(data: &Path) -> Result<String> {
    let out = Command::new(perf_script("script.sh"))
        .arg(data)
        .output()
        .context("running perf/profile/script.sh")?;
    ensure!(
        out.status.success(),
        "perf script failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let mut folded = Vec::new();
    perf_collapse::Folder::from(perf_collapse::Options::default())
        .collapse(&out.stdout[..], &mut folded)
        .context("folding perf script output")?;
    let folded = String::from_utf8(folded).context("folded stacks are not UTF-8")?;
    ensure!(
        !folded.trim().is_empty(),
        "perf recorded no samples of the bidder: was it idle?"
    );
    Ok(folded)
}

fn render_svg(folded: &str, event: &str, path: &Path) -> Result<()> {
    let mut opts = flamegraph::Options::default();
    opts.title = "bidder under loadgen".into();
    opts.subtitle = Some(format!("perf record -g --call-graph fp -e {event}"));
    opts.count_name = weight_unit(event).into();
    let file = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    flamegraph::from_lines(&mut opts, folded.lines(), std::io::BufWriter::new(file))
        .context("rendering the flamegraph")
}

/// Sample weight per function (see [`weight_unit`]): `self` where it was the leaf, `total` where it was anywhere on
/// the stack (counted once per stack, so recursion does not count twice).
#[derive(Default)]
struct FunctionTimes {
    /// Sum over all stacks.
    weight: u64,
    self_: HashMap<String, u64>,
    total: HashMap<String, u64>,
}

fn function_times(folded: &str) -> FunctionTimes {
    let mut times = FunctionTimes::default();
    for line in folded.lines() {
        let Some((stack, count)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(count) = count.trim().parse::<u64>() else {
            continue;
        };
        times.weight += count;
        let frames: Vec<&str> = stack.split(';').collect();
        if let Some(leaf) = frames.last() {
            *times.self_.entry((*leaf).to_owned()).or_default() += count;
        }
        let unique: HashSet<&str> = frames.into_iter().collect();
        for frame in unique {
            *times.total.entry(frame.to_owned()).or_default() += count;
        }
    }
    times
}

/// The `n` largest entries, largest first, ties by name so output is stable.
fn top(map: &HashMap<String, u64>, n: usize) -> Vec<(&str, u64)> {
    let mut rows: Vec<(&str, u64)> = map.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    rows.truncate(n);
    rows
}

/// What the folded counts measure: perf weights each sample by its period, so they sum
/// nanoseconds of CPU time under `cpu-clock` and cycles under `cycles`.
fn weight_unit(event: &str) -> &'static str {
    if event == "cpu-clock" {
        "ns"
    } else {
        "cycles"
    }
}

fn print_top(folded: &str, event: &str) {
    let times = function_times(folded);
    let total = times.weight.max(1) as f64;
    for (title, map) in [("self", &times.self_), ("total", &times.total)] {
        println!(
            "\nprofile: top {TOP_ROWS} by {title} time (of {} {} sampled)",
            times.weight,
            weight_unit(event)
        );
        for (name, n) in top(map, TOP_ROWS) {
            println!("  {:>6.2}%  {}", n as f64 * 100.0 / total, shorten(name));
        }
    }
}

/// Long generic Rust names would wrap the table: keep the first 110 characters.
fn shorten(name: &str) -> String {
    const MAX_CHARS: usize = 110;
    if name.chars().count() <= MAX_CHARS {
        return name.to_owned();
    }
    let cut: String = name.chars().take(MAX_CHARS).collect();
    format!("{cut}…")
}

/// Plain HTTP/1.0 GET of the admin port's `/metrics`: one request does not justify an
/// HTTP client dependency.
fn scrape_metrics(port: u16) -> Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .with_context(|| format!("connecting to the admin port {port}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut body = String::new();
    stream
        .take(MAX_METRICS_BYTES)
        .read_to_string(&mut body)
        .context("reading /metrics")?;
    ensure!(
        body.starts_with("HTTP/1.") && body.contains(" 200 "),
        "/metrics answered: {}",
        body.lines().next().unwrap_or("")
    );
    Ok(body)
}

/// Cumulative `(upper bound in seconds, count)` buckets of one histogram, in order.
fn buckets(metrics: &str, name: &str) -> Vec<(f64, u64)> {
    let prefix = format!("{name}_bucket{{");
    metrics
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count = l.rsplit(' ').next()?.parse().ok()?;
            Some((bound, count))
        })
        .collect()
}

/// The `q` quantile in seconds, interpolated linearly inside its bucket as Prometheus's
/// `histogram_quantile` does; `None` without observations. A quantile landing in the
/// `+Inf` bucket reports the last finite bound: the histogram knows no more.
fn quantile(buckets: &[(f64, u64)], q: f64) -> Option<f64> {
    let count = buckets.last()?.1;
    if count == 0 {
        return None;
    }
    let rank = q * count as f64;
    let (mut lower, mut below) = (0.0, 0u64);
    for &(bound, cumulative) in buckets {
        if cumulative as f64 >= rank {
            if bound.is_infinite() {
                return Some(lower);
            }
            let inside = (cumulative - below) as f64;
            let fraction = if inside > 0.0 {
                (rank - below as f64) / inside
            } else {
                1.0
            };
            return Some(lower + (bound - lower) * fraction);
        }
        (lower, below) = (bound, cumulative);
    }
    Some(lower)
}

/// Decision time against whole-request time. The bidder's decision histogram already
/// spans HTTP parsing, the decision and encoding the answer; what the request histogram
/// adds is handing the answer to the ring, so a wide gap points at the write path.
fn print_latency(metrics: &str) -> Result<()> {
    println!("\nprofile: latency by stage (from /metrics, whole run; decision = parse + decide + encode)");
    println!(
        "  {:<10} {:>10} {:>10} {:>10}",
        "stage", "count", "p50 µs", "p99 µs"
    );
    for (stage, name) in [
        ("decision", "bidder_decision_duration_seconds"),
        ("request", "bidder_request_duration_seconds"),
    ] {
        let b = buckets(metrics, name);
        ensure!(!b.is_empty(), "/metrics has no {name} histogram");
        let us = |q| quantile(&b, q).map_or("-".into(), |s| format!("{:.1}", s * 1e6));
        let count = b.last().map_or(0, |x| x.1);
        println!("  {stage:<10} {count:>10} {:>10} {:>10}", us(0.5), us(0.99));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_time_counts_leaves_and_total_counts_each_frame_once_per_stack() {
        let folded = "main;run;decide;score 3\nmain;run;decide 2\nmain;f;f;f 5\n";
        let t = function_times(folded);
        assert_eq!(t.weight, 10);
        assert_eq!(t.self_["score"], 3);
        assert_eq!(t.self_["decide"], 2);
        assert_eq!(t.self_["f"], 5);
        assert_eq!(t.total["decide"], 5);
        assert_eq!(t.total["f"], 5, "recursion counts once per stack");
        assert_eq!(t.total["main"], 10);
        assert_eq!(top(&t.total, 2), vec![("main", 10), ("decide", 5)]);
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket_like_histogram_quantile() {
        let text = "x_bucket{le=\"0.001\"} 50\nx_bucket{le=\"0.002\"} 90\n\
                    x_bucket{le=\"0.004\"} 100\nx_bucket{le=\"+Inf\"} 100\nx_count 100\n";
        let b = buckets(text, "x");
        assert_eq!(b.len(), 4);
        assert!((quantile(&b, 0.5).unwrap() - 0.001).abs() < 1e-12);
        assert!((quantile(&b, 0.7).unwrap() - 0.0015).abs() < 1e-12);
        assert!((quantile(&b, 0.99).unwrap() - 0.0038).abs() < 1e-12);
        assert_eq!(
            quantile(&buckets("x_bucket{le=\"+Inf\"} 0\n", "x"), 0.5),
            None
        );
    }

    #[test]
    fn a_quantile_in_the_overflow_bucket_reports_the_last_finite_bound() {
        let b = [(0.001, 1), (f64::INFINITY, 10)];
        assert_eq!(quantile(&b, 0.99), Some(0.001));
    }

    #[test]
    fn stat_table_keeps_value_unit_and_event() {
        let csv = "1234.5,msec,task-clock,1234,100.00,0.6,CPUs utilized\n\n7,,context-switches,1,100.00,,\n";
        let table = stat_table(csv);
        assert!(table.contains("task-clock"));
        assert!(table.contains("1234.5 msec"));
        assert!(table.contains("context-switches"));
    }
}
