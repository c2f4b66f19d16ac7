//! Per-request latency of the bid path on one core.
//!
//! `cargo bench -p bidder --bench core` runs the full benchmark (well under a minute);
//! `-- --quick` (or `BENCH_QUICK=1`) a few-second smoke run; without `--bench` (as
//! `cargo test --benches` runs it) a tiny run that only checks every scenario works.
//! `BENCH_JSON=path` also writes the results as JSON for reports. A word after `--`
//! runs only that group: `corpus`, or `banner` (the 1,000-campaign rows and the stage
//! split), e.g. to profile one of them.
//!
//! Scenarios, each a latency distribution (median, p90, p99, max) and requests/s:
//! - **corpus**: every request of the OpenRTB corpus the parser accepts, through
//!   `Worker::bid` against the demo configuration, overall and per media type;
//! - **banner × 1,000 campaigns**: a Prebid-style site banner (and the IAB simple
//!   banner) against a generated book of 1,000 campaigns with realistic targeting;
//! - **trust checks**: what consent, invalid-traffic and supply-chain checks add to
//!   that request's decision against the same request and book with none of them
//!   (alternating rounds, each side's best round; goal ≤ 200 ns);
//! - **stages** of that banner request: parse only (the one-pass reader, then the
//!   simd-json reference it replaced), decide only, encode only;
//! - **baseline**: the same request parsed into a `serde_json::Value`, a reference
//!   point for the parser and the whole request. On a shared machine, load from other
//!   processes comes and goes between scenarios, so both absolute numbers and ratios
//!   are only comparable between quiet runs.
//!
//! The project's goal on this machine is a banner median ≤ 2 µs and p99 ≤ 10 µs; the
//! run prints whether the measurement meets it. Everything runs on the calling thread;
//! other load on the host shows up in the tails, so the load average is reported too.

mod corpus;
mod measure;
mod scenarios;
#[path = "../../tests/support/workload.rs"]
mod workload;

use std::fmt::Write as _;

use bidder::bid::pipeline::Bidding;
use bidder::decide::{Context, Decider};
use bidder::money::notice::NoticeSigner;
use bidder::openrtb::{JsonReader, Parser};
use serde_json::{json, Value};

use measure::{Plan, Summary};
use scenarios::{BidScenario, DecideOnly, EncodeOnly, Outcomes, ParseOnly, SerdeBaseline};
use workload::{GENERATED_CAMPAIGNS, GENERATED_SEED};

/// The project's latency goal for the banner case on this machine, ns.
const BANNER_MEDIAN_GOAL_NS: u64 = 2_000;
const BANNER_P99_GOAL_NS: u64 = 10_000;
/// The trust checks' goal: what consent, invalid-traffic and supply-chain checks with
/// their decisions cached may add to a request's median, ns.
const TRUST_CHECKS_GOAL_NS: u64 = 200;
/// The row the trust checks are measured against: the Prebid banner with no consent
/// signals, against the book with no invalid-traffic lists and no supply verification.
const NO_TRUST_CHECKS: &str = "Prebid banner, no trust checks";
/// The rows the trust checks' cost is measured on, each against [`NO_TRUST_CHECKS`]:
/// what it adds, and the row.
const TRUST_ROWS: [(&str, &str); 4] = [
    ("invalid traffic", "Prebid banner, no consent signals"),
    (
        "invalid traffic + US signals (the headline)",
        "Prebid site banner",
    ),
    (
        "invalid traffic + TC string",
        "Prebid banner, GDPR + TC string",
    ),
    (
        "invalid traffic + US signals + supply chain",
        "Prebid banner, supply chain verified (files cached)",
    ),
];
/// Alternating rounds per trust row, and samples per round in a full run.
const TRUST_ROUNDS: usize = 9;
const TRUST_ROUND_SAMPLES: usize = 10_000;
/// Calls prepared (and, for throughput, timed) together.
const BATCH: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Full,
    Quick,
    /// Run by `cargo test --benches`: every scenario once over, numbers meaningless.
    Smoke,
}

impl Mode {
    fn from_args(args: &[String]) -> Mode {
        let quick = args.iter().any(|a| a == "--quick")
            || std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        if !args.iter().any(|a| a == "--bench") {
            Mode::Smoke
        } else if quick {
            Mode::Quick
        } else {
            Mode::Full
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Quick => "quick",
            Mode::Smoke => "smoke",
        }
    }

    /// The plan for a scenario that takes `samples_full` samples in a full run.
    fn plan(self, samples_full: usize) -> Plan {
        let (warmup, samples) = match self {
            Mode::Full => (20_000, samples_full),
            Mode::Quick => (2_000, (samples_full / 25).max(BATCH)),
            Mode::Smoke => (BATCH, BATCH),
        };
        Plan {
            warmup,
            samples,
            batch: BATCH,
        }
    }
}

/// One line of the report.
struct Row {
    name: String,
    summary: Summary,
    extra: Value,
}

/// The scenario group named on the command line, if any (`corpus` or `banner`).
fn only_group(args: &[String]) -> Option<&str> {
    let group = args
        .iter()
        .find(|a| !a.starts_with('-'))
        .map(String::as_str);
    if let Some(g) = group {
        assert!(
            ["corpus", "banner"].contains(&g),
            "unknown scenario group `{g}`: use corpus or banner"
        );
    }
    group
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = Mode::from_args(&args);
    let only = only_group(&args);
    let load_before = loadavg();
    let timer_ns = measure::timer_overhead_ns();
    println!(
        "bidder core benchmark ({} run); load average {load_before}; clock read ≈ {timer_ns} ns \
         (included in every per-call sample)",
        mode.name()
    );

    let mut rows = Vec::new();
    if only.is_none_or(|g| g == "corpus") {
        corpus_rows(mode, &mut rows);
    }
    let mut verdict = String::from("banner goal: not measured in this run");
    if only.is_none_or(|g| g == "banner") {
        let generated = workload::bidding(workload::generated_catalog(
            GENERATED_CAMPAIGNS,
            GENERATED_SEED,
        ));
        // The same book with no invalid-traffic checks, and with every campaign
        // verifying the supply chain (the files it needs already fetched): the trust
        // checks' cost against the headline.
        let untrusting = workload::bidding(workload::generated_catalog_with(
            GENERATED_CAMPAIGNS,
            GENERATED_SEED,
            workload::Trust::Off,
        ));
        let mut verifying = workload::bidding(workload::generated_catalog_with(
            GENERATED_CAMPAIGNS,
            GENERATED_SEED,
            workload::Trust::VerifySupply,
        ));
        verifying.supply = workload::pbs_supply_store();
        let banner = banner_rows(mode, [&generated, &untrusting, &verifying], &mut rows);
        fleet_cost(mode, &generated);
        let stages = stage_rows(mode, &generated, &mut rows);
        verdict = goal_verdict(&rows[banner].summary);
        let [parse, decide, encode, baseline] = stages;
        let whole = rows[banner].summary.median_ns;
        let glue_ns = whole as i64 - (parse + decide + encode) as i64;
        print_table(&rows);
        println!(
            "\nbanner median split: parse {parse} + decide {decide} + encode {encode} ns; whole \
             request minus the stages: {glue_ns} ns (bid ids, ledger hand-off, response \
             assembly; medians do not add exactly, so this can be slightly negative)"
        );
        let ratio = |ns: u64| ns as f64 / baseline.max(1) as f64;
        println!(
            "as multiples of the serde_json baseline ({baseline} ns): whole request {:.2}, \
             parse {:.2}, decide {:.2}, encode {:.2}",
            ratio(whole),
            ratio(parse),
            ratio(decide),
            ratio(encode)
        );
    } else {
        print_table(&rows);
    }
    println!("{verdict}");
    let load_after = loadavg();
    println!("load average after: {load_after}");

    if let Some(path) = std::env::var_os("BENCH_JSON") {
        let report = json!({
            "bench": "core",
            "mode": mode.name(),
            "timer_overhead_ns": timer_ns,
            "loadavg_before": load_before,
            "loadavg_after": load_after,
            "goal": {
                "banner_median_ns": BANNER_MEDIAN_GOAL_NS,
                "banner_p99_ns": BANNER_P99_GOAL_NS,
                "verdict": verdict,
            },
            "scenarios": rows.iter().map(|r| json!({
                "name": r.name,
                "summary": r.summary,
                "extra": r.extra,
            })).collect::<Vec<_>>(),
        });
        let text = serde_json::to_string_pretty(&report).expect("report serialises");
        std::fs::write(&path, text)
            .unwrap_or_else(|e| panic!("BENCH_JSON {}: {e}", path.to_string_lossy()));
        println!("wrote {}", path.to_string_lossy());
    }
}

/// (a) The corpus against the demo configuration: all requests, then each media type.
fn corpus_rows(mode: Mode, rows: &mut Vec<Row>) {
    let corpus = corpus::load(&workload::fixtures_dir());
    let bidding = workload::bidding(workload::demo_catalog());
    println!(
        "corpus: {} requests the parser accepts, {} refused (left out)",
        corpus.requests.len(),
        corpus.refused.len()
    );
    for refused in &corpus.refused {
        println!("  refused: {refused}");
    }
    let all: Vec<&[u8]> = corpus.requests.iter().map(|r| r.body.as_slice()).collect();
    let (summary, outcomes) = run_bids(&bidding, all, mode.plan(200_000));
    println!("  all: {outcomes:?}");
    rows.push(Row {
        name: format!("corpus: all ({} requests)", corpus.requests.len()),
        summary,
        extra: json!({ "requests": corpus.requests.len(), "outcomes": outcomes }),
    });
    for media in corpus::Media::ALL {
        let bodies: Vec<&[u8]> = corpus
            .requests
            .iter()
            .filter(|r| r.media == media)
            .map(|r| r.body.as_slice())
            .collect();
        if bodies.is_empty() {
            continue;
        }
        let count = bodies.len();
        let (summary, outcomes) = run_bids(&bidding, bodies, mode.plan(60_000));
        println!("  {}: {outcomes:?}", media.name());
        rows.push(Row {
            name: format!("corpus: {} ({count})", media.name()),
            summary,
            extra: json!({ "media": media.name(), "requests": count, "outcomes": outcomes }),
        });
    }
}

fn run_bids(bidding: &Bidding, bodies: Vec<&[u8]>, plan: Plan) -> (Summary, Outcomes) {
    let mut scenario = BidScenario::new(bidding, bodies, plan.batch);
    let measured = measure::run(&mut scenario, plan);
    (Summary::of(&measured), scenario.outcomes)
}

/// (b) Banner requests against 1,000 campaigns, then what the trust checks (consent,
/// invalid traffic, supply chain) add to the Prebid banner against the same request
/// with none of them, in this run. Returns the headline row's position.
fn banner_rows(
    mode: Mode,
    [generated, untrusting, verifying]: [&Bidding; 3],
    rows: &mut Vec<Row>,
) -> usize {
    let iab = workload::iab_simple_banner();
    // The consent check's cost, read against the headline in the same run: the same
    // request without consent signals, and from the EU with a real TC string (IAB
    // Europe's reference encoder: every purpose granted to the catalog's vendor id).
    let pbs = workload::PBS_SITE_BANNER;
    let regs = pbs
        .lines()
        .find(|l| l.contains("\"regs\""))
        .expect("regs line");
    let no_signals = pbs.replace(regs, r#"  "regs": {"coppa": 0},"#);
    let eu_tcf = pbs
        .replace(regs, r#"  "regs": {"gdpr": 1},"#)
        .replace(
            r#""user": {"#,
            r#""user": {"consent": "CQtDjkAQtDjkAAKABBENCWEsAP_gAEPgAAYgH0wBAAEAA0AXmA-kD6YAID6QAAAA","#,
        );
    let requests: [(&str, &[u8], &Bidding); 6] = [
        ("Prebid site banner", pbs.as_bytes(), generated),
        ("IAB simple banner", &iab, generated),
        (NO_TRUST_CHECKS, no_signals.as_bytes(), untrusting),
        (
            "Prebid banner, no consent signals",
            no_signals.as_bytes(),
            generated,
        ),
        (
            "Prebid banner, GDPR + TC string",
            eu_tcf.as_bytes(),
            generated,
        ),
        (
            "Prebid banner, supply chain verified (files cached)",
            pbs.as_bytes(),
            verifying,
        ),
    ];
    let headline = rows.len();
    for (label, body, bidding) in requests {
        let mut scenario = BidScenario::new(bidding, vec![body], BATCH);
        let measured = measure::run(&mut scenario, mode.plan(300_000));
        let stats = scenario.worker.stats();
        let candidates = stats.candidates.get() as f64 / stats.requests.get().max(1) as f64;
        let outcomes = scenario.outcomes;
        assert!(
            outcomes.bids > 0 && outcomes.invalid == 0,
            "{label}: the banner scenario must measure the bid path: {outcomes:?}"
        );
        println!(
            "{label} × {GENERATED_CAMPAIGNS} campaigns: {candidates:.0} candidates after the \
             index ({:.1}% of campaigns); {outcomes:?}",
            100.0 * candidates / GENERATED_CAMPAIGNS as f64
        );
        rows.push(Row {
            name: format!("banner × {GENERATED_CAMPAIGNS}: {label}"),
            summary: Summary::of(&measured),
            extra: json!({
                "campaigns": GENERATED_CAMPAIGNS,
                "seed": GENERATED_SEED,
                "candidates_per_request": candidates,
                "candidate_fraction": candidates / GENERATED_CAMPAIGNS as f64,
                "outcomes": outcomes,
            }),
        });
    }
    // The checks' cost, in the decision where they run: each checked request and the
    // unchecked one decided in alternating short rounds, each side's best round kept.
    // Load here comes and goes in spells that move a whole round's median by far more
    // than the cost measured; a side's best round is its median outside those spells,
    // and alternating gives both sides the same chances of one.
    let row = |label: &str| {
        let (_, body, bidding) = requests
            .iter()
            .find(|r| r.0 == label)
            .copied()
            .expect("a banner row");
        (Parser::new(), body.to_vec(), bidding)
    };
    let (mut base_parser, mut base_buf, base_bidding) = row(NO_TRUST_CHECKS);
    let base_req = base_parser.parse(&mut base_buf).expect("parses");
    let mut base = DecideOnly::new(base_bidding, &base_req);
    let plan = mode.plan(TRUST_ROUND_SAMPLES);
    let mut base_best = u64::MAX;
    let mut costs = Vec::new();
    for (what, label) in TRUST_ROWS {
        let (mut parser, mut buf, bidding) = row(label);
        let req = parser.parse(&mut buf).expect("parses");
        let mut checked = DecideOnly::new(bidding, &req);
        let mut best = u64::MAX;
        for _ in 0..TRUST_ROUNDS {
            let without = Summary::of(&measure::run(&mut base, plan)).median_ns;
            base_best = base_best.min(without);
            best = best.min(Summary::of(&measure::run(&mut checked, plan)).median_ns);
        }
        assert!(
            checked.bids > 0,
            "{label}: the checks must let the bid through"
        );
        costs.push((what, best));
    }
    let costs: Vec<String> = costs
        .into_iter()
        .map(|(what, best)| format!("{what} {:+} ns", best as i64 - base_best as i64))
        .collect();
    println!(
        "trust checks' cost in the decision, best of {TRUST_ROUNDS} alternating rounds' \
         medians against \"{NO_TRUST_CHECKS}\" ({base_best} ns; goal ≤ \
         {TRUST_CHECKS_GOAL_NS} ns): {}",
        costs.join(", ")
    );
    headline
}

/// What fleet mode adds to a decision: the same request and book with every campaign
/// holding a large lease (each reservation then takes its fleet room by
/// compare-and-swap too), decided in alternating rounds against the single host, each
/// side's best round kept (as for the trust checks).
fn fleet_cost(mode: Mode, single: &Bidding) {
    let fleet = workload::bidding(workload::generated_catalog(
        GENERATED_CAMPAIGNS,
        GENERATED_SEED,
    ));
    fleet.budgets.enable_fleet();
    for slot in 0..fleet.budgets.len() {
        let day = fleet.budgets.fleet_day(slot).day_start_ms;
        fleet.budgets.fleet_grant(slot, day, i64::MAX / 4);
    }
    let body = workload::PBS_SITE_BANNER.as_bytes();
    let (mut p1, mut b1) = (Parser::new(), body.to_vec());
    let (mut p2, mut b2) = (Parser::new(), body.to_vec());
    let (r1, r2) = (
        p1.parse(&mut b1).expect("parses"),
        p2.parse(&mut b2).expect("parses"),
    );
    let mut alone = DecideOnly::new(single, &r1);
    let mut leased = DecideOnly::new(&fleet, &r2);
    let plan = mode.plan(TRUST_ROUND_SAMPLES);
    let (mut alone_best, mut leased_best) = (u64::MAX, u64::MAX);
    for _ in 0..TRUST_ROUNDS {
        alone_best = alone_best.min(Summary::of(&measure::run(&mut alone, plan)).median_ns);
        leased_best = leased_best.min(Summary::of(&measure::run(&mut leased, plan)).median_ns);
    }
    assert!(leased.bids > 0, "fleet mode must let the bid through");
    println!(
        "fleet mode's cost in the decision, best of {TRUST_ROUNDS} alternating rounds' \
         medians: single host {alone_best} ns, fleet (lease granted) {leased_best} ns \
         ({:+} ns)",
        leased_best as i64 - alone_best as i64
    );
}

/// (c) The Prebid site banner's stages on their own, then the serde_json baseline;
/// returns the medians, ns: parse, decide, encode, baseline.
fn stage_rows(mode: Mode, generated: &Bidding, rows: &mut Vec<Row>) -> [u64; 4] {
    let body = workload::PBS_SITE_BANNER.as_bytes();
    let plan = mode.plan(300_000);

    let mut parse = ParseOnly::new(body, BATCH, JsonReader::OnePass);
    let parsed = Summary::of(&measure::run(&mut parse, plan));
    let mut reference = ParseOnly::new(body, BATCH, JsonReader::Tape);
    let reference = Summary::of(&measure::run(&mut reference, plan));

    let mut parser = Parser::new();
    let mut buf = body.to_vec();
    let req = parser.parse(&mut buf).expect("the banner request parses");
    let mut decide = DecideOnly::new(generated, &req);
    let decided = Summary::of(&measure::run(&mut decide, plan));
    let decide_candidates = decide.candidates_per_call();

    let catalog = &generated.catalog;
    let mut decider = Decider::new(catalog, Default::default(), 7);
    let ctx = Context {
        partner: Some(workload::EXCHANGE_A),
        now_unix_s: workload::MONDAY_10_30_MS / 1000,
        user_key: None,
    };
    let decision = decider.decide(
        catalog,
        generated.strategy.as_ref(),
        &generated.budgets,
        &req,
        ctx,
    );
    let chosen = decision.bids.pop().expect("the banner request gets a bid");
    let bid = bidder::bid::pipeline::bid_out(
        catalog,
        &req,
        &chosen,
        bidder::money::bid_id::BidIdGen::new(1, 0).next_id(workload::MONDAY_10_30_MS),
    );
    generated.budgets.release(chosen.reservation);
    let settings = &catalog.settings;
    let signer = NoticeSigner::new(&settings.notice_hmac_key, &settings.notice_base_url)
        .expect("notice signer");
    let encoded_campaign = bid.creative.campaign_id.to_owned();
    let mut encode = EncodeOnly::new(
        signer,
        bid,
        req.id,
        &settings.seat,
        &settings.currency,
        BATCH,
    );
    let encoded = Summary::of(&measure::run(&mut encode, plan));

    let baseline = Summary::of(&measure::run(&mut SerdeBaseline::new(body), plan));

    let medians = [
        parsed.median_ns,
        decided.median_ns,
        encoded.median_ns,
        baseline.median_ns,
    ];
    rows.push(Row {
        name: "stage: parse only".into(),
        summary: parsed,
        extra: json!({ "body_bytes": body.len(), "reader": "one pass" }),
    });
    rows.push(Row {
        name: "stage: parse only, simd-json tape (reference)".into(),
        summary: reference,
        extra: json!({ "body_bytes": body.len(), "reader": "simd-json tape" }),
    });
    rows.push(Row {
        name: "stage: decide only".into(),
        summary: decided,
        extra: json!({ "candidates_per_request": decide_candidates, "bids": decide.bids }),
    });
    rows.push(Row {
        name: "stage: encode only".into(),
        summary: encoded,
        extra: json!({ "response_bytes": encode.bytes, "campaign": encoded_campaign }),
    });
    rows.push(Row {
        name: "baseline: serde_json::Value parse".into(),
        summary: baseline,
        extra: json!({ "body_bytes": body.len() }),
    });
    medians
}

fn print_table(rows: &[Row]) {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:<40} {:>8} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "scenario", "samples", "median", "p90", "p99", "max", "batched", "req/s"
    );
    for row in rows {
        let s = &row.summary;
        let _ = writeln!(
            out,
            "{:<40} {:>8} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10.0}",
            row.name,
            s.samples,
            duration(s.median_ns as f64),
            duration(s.p90_ns as f64),
            duration(s.p99_ns as f64),
            duration(s.max_ns as f64),
            duration(s.batched_mean_ns),
            s.requests_per_s,
        );
    }
    let _ = writeln!(
        out,
        "(median/p90/p99/max: per call, timed one by one; batched: mean per call over \
         batches of {BATCH} timed whole; req/s = 1 s / batched, one core)"
    );
    print!("{out}");
}

fn duration(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else {
        format!("{:.2} ms", ns / 1_000_000.0)
    }
}

fn goal_verdict(banner: &Summary) -> String {
    let met = banner.median_ns <= BANNER_MEDIAN_GOAL_NS && banner.p99_ns <= BANNER_P99_GOAL_NS;
    format!(
        "banner goal (median ≤ {}, p99 ≤ {}): {} (median {}, p99 {})",
        duration(BANNER_MEDIAN_GOAL_NS as f64),
        duration(BANNER_P99_GOAL_NS as f64),
        if met { "MET" } else { "MISSED" },
        duration(banner.median_ns as f64),
        duration(banner.p99_ns as f64),
    )
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
