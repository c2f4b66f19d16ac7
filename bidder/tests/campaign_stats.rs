//! Per-campaign figures end to end inside one process: known traffic through a
//! worker (bids, no-bids of known reasons, an outbid campaign, a missed deadline),
//! win, bill and loss notices with known clearing prices through the real control
//! port, then the stats table the publisher writes and `/metrics` — every figure
//! exact. Workers, the control port's ledger and the publisher share one calendar,
//! standing at a fixed Monday, so the figures are the same on any date.

#[path = "support/demo_catalog.rs"]
mod demo_catalog;
#[path = "support/first_bid.rs"]
mod first_bid;
use testkit::promtool;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bidder::bid::gate::BidService;
use bidder::bid::pipeline::{Bidding, Pipeline};
use bidder::catalog::{Campaign, CampaignIdx};
use bidder::control::Registry;
use bidder::control::{
    ControlConfig, ControlParts, ControlPort, NoticeListenerConfig, Notices, Readiness,
};
use bidder::decide::strategy::{CampaignStrategy, StrategySource};
use bidder::decide::DecisionStats;
use bidder::money::budget::Budgets;
use bidder::money::currency::CurrencyBook;
use bidder::money::ledger::{Ledger, LedgerInbox};
use bidder::money::notice_keys::NoticeKeyring;
use bidder::money::PPM_ONE;
use bidder::tables::stats::{StatsInputs, StatsPublisher};
use bidder::tables::strategy::StrategyTable;
use bidder_common::table::shm::Table;
use bidder_common::table::stats::{CampaignStatsValue, StatsTable};
use bidder_common::table::stats_file::campaign_reason_names;
use bidder_common::table::Capacity;
use demo_catalog::demo_catalog;
use first_bid::{first_bid, monday_calendar};
use serde_json::Value;
use testkit::http::get;
use testkit::TempDir;

/// A 300×250 banner on a.com: `acme-display` bids 1.80 (2.00 × shading 0.90);
/// `agency1-pmp` is evaluated too and has no deal (it buys through deals only).
const BANNER: &str = r#"{"id":"plain","tmax":500,"imp":[{"id":"1","banner":{"w":300,"h":250}}],"site":{"domain":"a.com"}}"#;
/// The same with a floor above what `acme-display` may bid.
const HIGH_FLOOR: &str = r#"{"id":"floor","tmax":500,"imp":[{"id":"1","banner":{"w":300,"h":250},"bidfloor":4.0}],"site":{"domain":"a.com"}}"#;
/// The same through `agency1-pmp`'s deal: it bids the deal floor 2.50 (its shaded
/// value is below it) and `acme-display`, evaluated next at 1.80, is outbid.
const DEAL: &str = r#"{"id":"deal","tmax":500,"imp":[{"id":"1","banner":{"w":300,"h":250},"pmp":{"private_auction":0,"deals":[{"id":"AB-Agency1-0001","bidfloor":2.5}]}}],"site":{"domain":"a.com"}}"#;
/// A `tmax` that leaves no time after the network allowance: the bid is dropped.
const NO_TIME: &str = r#"{"id":"late","tmax":1,"imp":[{"id":"1","banner":{"w":300,"h":250}}],"site":{"domain":"a.com"}}"#;
const CAP: Capacity = Capacity {
    campaigns: 16,
    partners: 4,
};

/// The configuration's strategy, with `agency1-pmp` shaded to half and `acme-display`
/// paused on demand.
struct Steered {
    agency: CampaignIdx,
    acme: CampaignIdx,
    acme_paused: AtomicBool,
}

impl StrategySource for Steered {
    fn campaign(&self, idx: CampaignIdx, campaign: &Campaign) -> CampaignStrategy {
        CampaignStrategy {
            margin_ppm: PPM_ONE,
            max_cpm_micros: campaign.max_bid_cpm_micros,
            pacing_ppm: PPM_ONE,
            shading_ppm: if idx == self.agency { 500_000 } else { 900_000 },
            paused: idx == self.acme && self.acme_paused.load(Ordering::Relaxed),
        }
    }
}

/// The control-port path of a notice URL, with the exchange's price macro filled in.
fn notice_path(bid: &Value, url: &str, price: &str) -> String {
    let url = bid[url].as_str().unwrap();
    let at = url.find("/notice/").unwrap();
    url[at..].replace("${AUCTION_PRICE}", price)
}

/// A campaign's no-bid counts by reason name, zeros left out.
fn no_bids(names: &[String], row: &CampaignStatsValue) -> BTreeMap<String, u64> {
    names
        .iter()
        .zip(row.no_bids)
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| (name.clone(), n))
        .collect()
}

#[test]
fn known_traffic_and_notices_give_exact_per_campaign_figures() {
    let dir = TempDir::new("campaign-stats");
    let catalog = Arc::new(demo_catalog());
    let budgets = Arc::new(Budgets::new(
        catalog.campaigns.iter().map(|c| c.daily_budget_micros),
    ));
    let acme = catalog.campaign_by_id("acme-display").unwrap();
    let agency = catalog.campaign_by_id("agency1-pmp").unwrap();
    let steered = Arc::new(Steered {
        agency,
        acme,
        acme_paused: AtomicBool::new(false),
    });
    let calendar = monday_calendar();
    let bidding = Bidding::sharing(
        Arc::clone(&catalog),
        Arc::clone(&budgets),
        Arc::new(LedgerInbox::new(64)),
        Arc::clone(&steered) as Arc<dyn StrategySource>,
        calendar.clock(),
    );
    let stats = Arc::new(DecisionStats::default());
    let registry = Arc::new(Registry::new());
    let scraped = Arc::clone(&stats);
    registry.add_decision_source(Arc::new(move || vec![Arc::clone(&scraped)]));
    registry.set_catalog(Arc::clone(&catalog), Arc::clone(&budgets));
    let settings = &catalog.settings;
    let port = ControlPort::start(
        ControlConfig {
            listen_addr: "127.0.0.1:0".parse().unwrap(),
            notice: NoticeListenerConfig {
                listen_addr: "127.0.0.1:0".parse().unwrap(),
                ..NoticeListenerConfig::default()
            },
            ..ControlConfig::default()
        },
        ControlParts {
            registry: Arc::clone(&registry),
            readiness: Readiness::new(),
            reload: Box::new(|_| Err("not in this test".into())),
            notices: Notices {
                keyring: Arc::new(
                    NoticeKeyring::new(&settings.notice_hmac_key, &settings.notice_base_url)
                        .unwrap(),
                ),
                ledger: Ledger::new(60_000),
                inbox: Arc::clone(&bidding.inbox),
                budgets: Arc::clone(&budgets),
                currencies: Arc::new(CurrencyBook::default()),
                reservation_ttl_ms: Arc::new(std::sync::atomic::AtomicU64::new(
                    settings.reservation_ttl_ms,
                )),
                clock: calendar.clock(),
                journal: None,
            },
            supply: None,
            fleet: None,
        },
    )
    .unwrap();
    let admin = port.local_addr();
    let notices = port.notice_addr();

    let mut worker = Pipeline::new(&bidding, 0, Arc::clone(&stats)).unwrap();
    let won: Vec<Value> = (0..3)
        .map(|_| first_bid(&mut worker, &bidding, BANNER).expect("acme bids"))
        .collect();
    for _ in 0..2 {
        assert!(first_bid(&mut worker, &bidding, HIGH_FLOOR).is_none());
        let bid = first_bid(&mut worker, &bidding, DEAL).expect("agency1 bids");
        assert_eq!(bid["price"], 2.5);
    }
    steered.acme_paused.store(true, Ordering::Relaxed);
    assert!(first_bid(&mut worker, &bidding, BANNER).is_none());
    steered.acme_paused.store(false, Ordering::Relaxed);
    assert!(first_bid(&mut worker, &bidding, NO_TIME).is_none());

    // Two wins at 1.50 and 1.20 CPM, the first billed again (a duplicate: counts
    // once), the third lost.
    for (bid, url, price) in [
        (&won[0], "nurl", "1.50"),
        (&won[1], "nurl", "1.20"),
        (&won[0], "burl", "1.50"),
        (&won[2], "lurl", ""),
    ] {
        assert_eq!(get(notices, &notice_path(bid, url, price)).0, 204);
    }

    let service = BidService::new(bidding.clone(), 1);
    let stats_path = dir.0.join("stats");
    let mut publisher = StatsPublisher::open(&stats_path, CAP, calendar.clock()).unwrap();
    publisher.publish(
        &StatsInputs {
            generation: service.current(),
            budgets: Arc::clone(&budgets),
            decisions: vec![Arc::clone(&stats)],
            workers: Vec::new(),
            strategy_contended: 0,
        },
        &StrategyTable::open(&dir.0.join("strategy")),
    );
    let table = Table::<StatsTable>::open_read(&stats_path).unwrap();
    let names = campaign_reason_names(&table);
    let row = |id: &str| {
        table.campaigns()[table.find_campaign(id).unwrap()]
            .load()
            .unwrap()
    };

    let a = row("acme-display");
    assert!(a.is_sealed());
    assert_eq!(
        (a.requests, a.bids, a.outbid, a.wins, a.clearing_micros),
        (9, 3, 2, 2, 2_700)
    );
    assert_eq!((a.spent_micros, a.reserved_micros), (2_700, 0));
    let want: BTreeMap<String, u64> = [("below_floor", 2), ("paused", 1), ("deadline", 1)]
        .map(|(k, v)| (k.to_string(), v))
        .into();
    assert_eq!(no_bids(&names, &a), want);

    let p = row("agency1-pmp");
    assert_eq!(
        (p.requests, p.bids, p.outbid, p.wins, p.clearing_micros),
        (9, 2, 0, 0, 0)
    );
    assert_eq!(p.reserved_micros, 2 * 2_500, "two deal bids await a notice");
    let want: BTreeMap<String, u64> = [("no_deal".to_string(), 7)].into();
    assert_eq!(no_bids(&names, &p), want);

    for r in table.campaigns() {
        let v = r.load().unwrap();
        let ended: u64 = v.bids + v.outbid + v.no_bids.iter().sum::<u64>();
        assert_eq!(
            v.requests,
            ended,
            "{:?}: every evaluated imp ends one way",
            r.key.get()
        );
    }
    assert_eq!(row("zephyr-video").requests, 0, "never a candidate");

    let (status, metrics) = get(admin, "/metrics");
    assert_eq!(status, 200);
    promtool::promtool_check(&metrics);
    for line in [
        r#"bidder_campaign_requests_total{campaign="acme-display"} 9"#,
        r#"bidder_campaign_bids_total{campaign="acme-display"} 3"#,
        r#"bidder_campaign_outbid_total{campaign="acme-display"} 2"#,
        r#"bidder_campaign_no_bids_total{campaign="acme-display",reason="below_floor"} 2"#,
        r#"bidder_campaign_no_bids_total{campaign="acme-display",reason="deadline"} 1"#,
        r#"bidder_campaign_wins_total{campaign="acme-display"} 2"#,
        r#"bidder_campaign_clearing_micros_total{campaign="acme-display"} 2700"#,
        r#"bidder_campaign_no_bids_total{campaign="agency1-pmp",reason="no_deal"} 7"#,
        r#"bidder_campaign_bids_total{campaign="agency1-pmp"} 2"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line}");
    }
    assert!(
        !metrics.contains(r#"campaign="zephyr-video",reason="#),
        "zero no-bid series are left out"
    );

    // The ledger runs on the same calendar: the two deal bids still wait for their
    // notice until it passes their expiry, however long the test has taken.
    let agency_slot = catalog.campaigns[agency].budget_slot;
    assert_eq!(budgets.snapshot(agency_slot).reserved_micros, 2 * 2_500);
    calendar.advance_ms(settings.reservation_ttl_ms);
    testkit::eventually(
        testkit::http::CLIENT_TIMEOUT,
        "the deal bids' reservations to expire",
        || budgets.snapshot(agency_slot).reserved_micros == 0,
    );
    assert_eq!(budgets.snapshot(agency_slot).spent_micros, 0);
    port.shutdown().unwrap();
}
