//! A scrape with every kind of metric in it (counters, gauges, histograms, partner and
//! campaign labels, labels that need escaping) passes `promtool check metrics`, the
//! Prometheus project's own linter. promtool comes from Debian's `prometheus` package,
//! which the setup step installs; without it this test fails rather than pass silently.

use testkit::promtool::promtool_check;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bidder::catalog::Catalog;
use bidder::config::Config;
use bidder::control::Registry;
use bidder::decide::{DecisionStats, NoBidReason};
use bidder::http::Status;
use bidder::metrics::{Collect, PromText, PUBLISH_INTERVAL_MS};
use bidder::money::budget::Budgets;

fn catalog() -> Catalog {
    let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo-notice.key");
    let text = format!(
        r#"
[bidding]
seat = "seat-1"
[notice]
base_url = "https://bidder.test/notice"
hmac_key_file = "{}"
[[partner]]
name = "ex-a"
qps_limit = 100
[[partner]]
name = "ex_b"
qps_limit = 100
[[campaign]]
id = "camp-1"
advertiser = "adv"
daily_budget_micros = 5_000_000
max_bid_cpm_micros = 10_000_000
base_cpm_micros = 1_000_000
  [[campaign.creative]]
  id = "cr-1"
  format = "banner"
  w = 300
  h = 250
  adomain = ["adv.example"]
  adm = "<b>x</b>"
"#,
        key.display()
    );
    let config = Config::from_text(Path::new("test.toml"), text).expect("valid test config");
    Catalog::compile(&config).expect("compile")
}

/// An engine-like collector whose label values need every escape the format has.
struct Awkward;

impl Collect for Awkward {
    fn collect(&self, out: &mut PromText) {
        out.gauge(
            "test_connections_open",
            "Open connections (test collector).",
            &[("engine", "quote\" back\\slash\nnewline"), ("worker", "0")],
            3,
        );
        out.counter(
            "test_accepted_total",
            "Accepted connections (test collector).",
            &[("worker", "0")],
            7,
        );
    }
}

#[test]
fn a_scrape_with_every_metric_kind_passes_promtool() {
    let registry = Registry::new();
    let workers = registry.add_workers(2);
    registry.register(Arc::new(Awkward));
    let catalog = Arc::new(catalog());
    let budgets = Arc::new(Budgets::new(
        catalog.campaigns.iter().map(|c| c.daily_budget_micros),
    ));
    let r = budgets.reserve(0, 2_000).expect("budget");
    budgets.settle(r, 1_500);
    registry.set_catalog(Arc::clone(&catalog), budgets);
    let decisions: Vec<Arc<DecisionStats>> = (0..2).map(|_| Arc::default()).collect();
    for d in &decisions {
        d.requests.add(5);
        d.no_bid_imps[NoBidReason::BelowFloor as usize].inc();
    }
    registry.add_decision_source(Arc::new(move || decisions.clone()));

    for (i, w) in workers.iter().enumerate() {
        w.count_response(Status::Ok);
        w.count_response(Status::NoContent);
        w.partner(Some(0)).requests.add(10 + i as u64);
        w.partner(Some(0)).bids.inc();
        w.partner(None).no_bids.inc();
        let mut rec = w.recorder();
        let start = Instant::now();
        for us in [20, 80, 450, 3_000, 20_000_000] {
            rec.record(us / 2, us, start);
        }
        rec.publish_if_due(start + Duration::from_millis(PUBLISH_INTERVAL_MS));
    }
    let text = registry.scrape();
    for needle in [
        "# TYPE bidder_request_duration_seconds histogram",
        "bidder_request_duration_seconds_count 10",
        "bidder_request_duration_seconds_bucket{le=\"0.0001\"} 4",
        "bidder_http_responses_total{status=\"204\"} 2",
        "bidder_partner_requests_total{partner=\"ex-a\"} 21",
        "bidder_partner_requests_total{partner=\"ex_b\"} 0",
        "bidder_partner_no_bids_total{partner=\"(none)\"} 2",
        "bidder_decision_no_bid_imps_total{reason=\"below_floor\"} 2",
        "bidder_decision_requests_total 10",
        "bidder_budget_spent_micros{campaign=\"camp-1\"} 1500",
        "bidder_budget_available_micros{campaign=\"camp-1\"} 4998500",
        "test_connections_open{engine=\"quote\\\" back\\\\slash\\nnewline\",worker=\"0\"} 3",
    ] {
        assert!(text.contains(needle), "missing {needle}:\n{text}");
    }
    promtool_check(&text);
}
