//! The auction simulator against the real bidder binary: a simulated day charges
//! exactly what the exchange billed, never past the budget, and the same seed plays
//! the same day.

use perf::sim::processes::Binaries;
use perf::sim::{run_scenario, Options, Scenario, Strategy};

/// The bidder and agent binaries, built (or found up to date) in this test's target
/// directory.
fn binaries() -> Binaries {
    let dir = testkit::workspace_binaries(
        env!("CARGO_BIN_EXE_auction-sim"),
        &[("bidder", "bidder"), ("agent", "agent")],
    );
    Binaries {
        bidder: dir.join("bidder"),
        agent: dir.join("agent"),
    }
}

/// The default scenario on a smaller day, without the equal-impressions replays.
fn small_default() -> Scenario {
    let mut s = Scenario::default_scenario();
    s.market.auctions_per_day = 3_000;
    s.match_impressions_of.clear();
    s
}

#[test]
fn the_controller_is_replayed_on_a_budget_that_buys_a_baselines_impressions() {
    let dir = testkit::TempDir::new("auction-sim-match");
    let mut scenario = small_default();
    scenario.match_impressions_of = vec![Strategy::FloorX110];
    let options = Options {
        binaries: binaries(),
        seeds: vec![13],
        strategies: vec![Strategy::FloorX110, Strategy::Controller],
        work_dir: dir.0.clone(),
    };
    let report = run_scenario(&options, &scenario).unwrap();
    let row = |name: &str| {
        report
            .runs
            .iter()
            .find(|r| r.strategy == name)
            .unwrap_or_else(|| panic!("no {name} run"))
    };
    let (floor, full, matched) = (
        row("floor_x1.10"),
        row("controller"),
        row("controller@floor_x1.10"),
    );
    let off = matched.impressions as f64 / floor.impressions as f64 - 1.0;
    assert!(
        off.abs() <= perf::sim::SAME_IMPRESSIONS_TOLERANCE,
        "{} impressions against floor × 1.10's {}",
        matched.impressions,
        floor.impressions
    );
    // It bought fewer impressions than on the full budget, on a smaller budget it
    // spent, never past it.
    assert!(matched.impressions < full.impressions);
    assert!(matched.budget_micros < full.budget_micros);
    assert!(matched.spend_micros <= matched.budget_micros);
    assert!(matched.end_of_day_pacing_error_pct.abs() <= 5.0);
    let summary = report
        .strategies
        .iter()
        .find(|s| s.strategy == "controller@floor_x1.10")
        .expect("a summary row");
    assert!(summary.oracle_saving_captured_pct.is_some());
}

#[test]
fn a_simulated_day_charges_what_the_exchange_billed_and_never_overspends() {
    let dir = testkit::TempDir::new("auction-sim");
    let options = Options {
        binaries: binaries(),
        seeds: vec![11],
        strategies: vec![Strategy::Unshaded, Strategy::FloorX110],
        work_dir: dir.0.clone(),
    };
    let report = run_scenario(&options, &small_default()).unwrap();
    for run in report.runs.iter().filter(|r| r.strategy != "oracle") {
        let name = &run.strategy;
        assert_eq!(run.notices.refused, 0, "{name}: {:?}", run.notices);
        assert_eq!(run.notices.dropped, 0, "{name}");
        assert_eq!(
            run.notices.wins, run.impressions,
            "{name}: a win notice per impression"
        );
        assert_eq!(run.notices.wins + run.notices.losses, run.bids, "{name}");
        // The bidder's ledger and the exchange's bill agree to the micro.
        assert_eq!(run.bidder_spent_micros, run.spend_micros, "{name}");
        assert!(run.spend_micros <= run.budget_micros, "{name}: overspent");
        assert!(
            run.impressions > 0 && run.impressions < run.auctions,
            "{name}"
        );
    }
    // Unshaded bidding would spend twice the budget: the bidder stops within one
    // impression of it.
    let unshaded = &report.runs[0];
    assert_eq!(unshaded.strategy, "unshaded");
    assert!(
        unshaded.budget_micros - unshaded.spend_micros <= 4_000,
        "{unshaded:?}"
    );
    // The floor rule bids below the value where floors are low: a lower CPM.
    let floor = &report.runs[1];
    assert!(floor.avg_cpm_micros < unshaded.avg_cpm_micros, "{floor:?}");
    // The oracle buys at least as many impressions for the money as anyone.
    let oracle = &report.runs[2];
    assert_eq!(oracle.strategy, "oracle");
    assert!(oracle.impressions >= unshaded.impressions.max(floor.impressions));
    assert!(oracle.spend_micros <= oracle.budget_micros);
}

#[test]
fn the_same_seed_plays_the_same_day() {
    let dir = testkit::TempDir::new("auction-sim-seed");
    let options = |sub: &str| Options {
        binaries: binaries(),
        seeds: vec![5],
        strategies: vec![Strategy::Controller],
        work_dir: dir.0.join(sub),
    };
    let scenario = small_default();
    let first = run_scenario(&options("a"), &scenario).unwrap();
    let again = run_scenario(&options("b"), &scenario).unwrap();
    let hours = |r: &perf::sim::ScenarioReport| serde_json::to_string(&r.runs[0].hours).unwrap();
    assert_eq!(hours(&first), hours(&again));
    assert_eq!(first.runs[0].spend_micros, again.runs[0].spend_micros);
}

#[test]
fn the_agents_controller_paces_the_day_and_shades_below_unshaded_bidding() {
    let dir = testkit::TempDir::new("auction-sim-controller");
    let mut scenario = small_default();
    scenario.market.auctions_per_day = 8_000;
    let options = Options {
        binaries: binaries(),
        seeds: vec![21],
        strategies: vec![Strategy::Unshaded, Strategy::Controller],
        work_dir: dir.0.clone(),
    };
    let report = run_scenario(&options, &scenario).unwrap();
    let (unshaded, controller) = (&report.runs[0], &report.runs[1]);
    assert_eq!(controller.strategy, "controller");
    assert_eq!(controller.bidder_spent_micros, controller.spend_micros);
    assert!(
        controller.spend_micros <= controller.budget_micros,
        "overspent"
    );
    assert!(
        controller.end_of_day_pacing_error_pct.abs() <= 5.0,
        "end of day {:+.1}%",
        controller.end_of_day_pacing_error_pct
    );
    assert!(controller.first_half_spend_pct <= 90.0);
    assert!(
        (controller.avg_cpm_micros as f64) < 0.8 * unshaded.avg_cpm_micros as f64,
        "{} vs {}",
        controller.avg_cpm_micros,
        unshaded.avg_cpm_micros
    );
    assert!(controller.surplus_micros > unshaded.surplus_micros);
    // The pictures: spend against plan for both, the controller's bids against prices.
    let pictures = perf::sim::plot::draw(&report, &dir.0).unwrap();
    assert_eq!(pictures.len(), 2);
    let spend = std::fs::read_to_string(&pictures[0]).unwrap();
    assert!(spend.starts_with("<svg") && spend.contains("controller") && spend.contains("plan"));
    let bids = std::fs::read_to_string(&pictures[1]).unwrap();
    assert!(bids.contains("our bid") && bids.matches("<rect").count() > 20);
    // Every change is in the agent's audit log, by the controller, with its why.
    let audit = std::fs::read_to_string(dir.0.join("default-controller-21/audit.jsonl")).unwrap();
    let changes: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(changes.len() > 10, "{} changes", changes.len());
    for c in &changes {
        assert_eq!(c["who"]["actor"], "controller", "{c}");
        assert_eq!(c["verb"], "controller.step");
        assert!(c["why"].as_str().unwrap().starts_with("bid "), "{c}");
    }
}
