//! The bidder's side of the strategy table: defaults without a table, rows read on
//! the hot path, new rows found by the hot path without a poll, an agent that dies or
//! re-creates the table, refused layouts, partner and budget overrides, and the stats
//! table the bidder writes.

#[path = "support/demo_catalog.rs"]
mod demo_catalog;

use demo_catalog::demo_catalog;
use testkit::TempDir;

#[path = "support/first_bid.rs"]
mod first_bid;

use std::path::Path;
use std::sync::Arc;

use bidder::bid::pipeline::{Bidding, Pipeline};
use bidder::catalog::Catalog;
use bidder::config::Config;
use bidder::decide::strategy::CampaignStrategy;
use bidder::money::budget::Budgets;
use bidder::money::ledger::LedgerInbox;
use bidder::money::PPM_ONE;
use bidder::tables::stats::{StatsInputs, StatsPublisher};
use bidder::tables::strategy::{Change, StrategyTable};
use bidder_common::clock::Clock;
use bidder_common::table::segment::{Channel, SegmentKey, SEGMENTS_PER_CAMPAIGN};
use bidder_common::table::shm::{OnMismatch, Table, Writer};
use bidder_common::table::stats::{StatsTable, IN_CATALOG};
use bidder_common::table::stats_file::reason_names;
use bidder_common::table::strategy::{
    CampaignStrategyValue, PartnerLimitValue, StrategyTable as Layout, BUDGET_AS_CONFIGURED,
    CAMPAIGN_PAUSED, MAX_REASONING_BYTES, PARTNER_ENABLED,
};
use bidder_common::table::Capacity;
use first_bid::{first_bid, monday_calendar};

const BANNER: &str = r#"{"id":"r1","tmax":120,"imp":[{"id":"1","banner":{"w":300,"h":250}}],"site":{"domain":"a.com"}}"#;
const CAP: Capacity = Capacity {
    campaigns: 64,
    partners: 8,
};

fn row(margin_ppm: u32, max_cpm_micros: i64, paused: bool) -> CampaignStrategyValue {
    let mut v = CampaignStrategyValue {
        margin_ppm,
        pacing_ppm: PPM_ONE,
        shading_ppm: PPM_ONE,
        flags: if paused { CAMPAIGN_PAUSED } else { 0 },
        max_cpm_micros,
        daily_budget_micros: BUDGET_AS_CONFIGURED,
        updated_at_unix_ms: 1,
        updated_by: 1000,
        reasoning_len: 0,
        reasoning: [0; MAX_REASONING_BYTES],
        segment_keys: [0; SEGMENTS_PER_CAMPAIGN],
        segment_shading_ppm: [0; SEGMENTS_PER_CAMPAIGN],
        checksum: 0,
    };
    v.set_reasoning("test");
    v.sealed()
}

fn strategy_of(table: &StrategyTable, catalog: &Catalog, id: &str) -> CampaignStrategy {
    let idx = catalog.campaign_by_id(id).unwrap();
    table
        .source_for(catalog)
        .campaign(idx, &catalog.campaigns[idx])
}

#[test]
fn without_a_table_the_bidder_bids_on_the_configuration() {
    let dir = TempDir::new("strategy-table-none");
    let catalog = demo_catalog();
    let table = StrategyTable::open(&dir.0.join("strategy"));
    assert!(table.mapped().is_none());
    let s = strategy_of(&table, &catalog, "acme-display");
    assert_eq!(
        s,
        CampaignStrategy {
            margin_ppm: PPM_ONE,
            max_cpm_micros: 5_000_000,
            pacing_ppm: PPM_ONE,
            shading_ppm: 900_000,
            paused: false
        }
    );
    assert_eq!(table.poll(), Change::default());
}

#[test]
fn rows_are_read_on_the_hot_path_and_a_rewrite_is_seen_without_a_poll() {
    let dir = TempDir::new("strategy-table-rows");
    let path = dir.0.join("strategy");
    let catalog = demo_catalog();
    let table = StrategyTable::open(&path);
    let mut agent =
        Writer::<Layout>::open(&path, CAP, OnMismatch::Refuse, Clock::system()).unwrap();
    agent
        .put_campaign("acme-display", &row(1_200_000, 3_000_000, false))
        .unwrap();
    assert_eq!(
        table.poll(),
        Change {
            remap: true,
            values: true
        }
    );
    let source = table.source_for(&catalog);
    let idx = catalog.campaign_by_id("acme-display").unwrap();
    let campaign = &catalog.campaigns[idx];
    assert_eq!(source.campaign(idx, campaign).margin_ppm, 1_200_000);
    assert_eq!(source.campaign(idx, campaign).max_cpm_micros, 3_000_000);
    agent
        .put_campaign("acme-display", &row(1_100_000, 3_000_000, true))
        .unwrap();
    let s = source.campaign(idx, campaign);
    assert!(s.paused && s.margin_ppm == 1_100_000, "{s:?}");
    // A campaign without a row stays on the configuration.
    let other = catalog.campaign_by_id("zephyr-video").unwrap();
    assert_eq!(
        source.campaign(other, &catalog.campaigns[other]).margin_ppm,
        PPM_ONE
    );
}

#[test]
fn a_row_shades_its_segments_apart_and_the_rest_at_its_own_shading() {
    let dir = TempDir::new("strategy-table-segments");
    let path = dir.0.join("strategy");
    let catalog = demo_catalog();
    let table = StrategyTable::open(&path);
    let mut agent =
        Writer::<Layout>::open(&path, CAP, OnMismatch::Refuse, Clock::system()).unwrap();
    let (app, site) = (
        SegmentKey::new(Channel::App, 320, 50, Some("USA")),
        SegmentKey::new(Channel::Site, 300, 250, Some("DEU")),
    );
    let mut v = row(PPM_ONE, 5_000_000, false);
    v.shading_ppm = 800_000;
    v.segment_keys[0] = app.0;
    v.segment_shading_ppm[0] = 600_000;
    for i in 1..SEGMENTS_PER_CAMPAIGN - 1 {
        v.segment_keys[i] = SegmentKey::new(Channel::Dooh, i as u32, 1, None).0;
        v.segment_shading_ppm[i] = 700_000;
    }
    v.segment_keys[SEGMENTS_PER_CAMPAIGN - 1] = site.0;
    v.segment_shading_ppm[SEGMENTS_PER_CAMPAIGN - 1] = 950_000;
    agent.put_campaign("acme-display", &v.sealed()).unwrap();
    table.poll();
    let source = table.source_for(&catalog);
    let idx = catalog.campaign_by_id("acme-display").unwrap();
    let campaign = &catalog.campaigns[idx];
    let shading = |segment| source.campaign_in(idx, campaign, segment).shading_ppm;
    assert_eq!(shading(app), 600_000);
    assert_eq!(shading(site), 950_000);
    assert_eq!(
        shading(SegmentKey::new(Channel::App, 320, 50, Some("CAN"))),
        800_000,
        "another segment"
    );
    assert_eq!(shading(SegmentKey::NONE), 800_000);
    assert_eq!(source.campaign(idx, campaign).shading_ppm, 800_000);
    // Segments fill the row from the first position: the first empty one ends them.
    v.segment_keys[1] = 0;
    agent.put_campaign("acme-display", &v.sealed()).unwrap();
    assert_eq!(shading(app), 600_000);
    assert_eq!(shading(site), 800_000);
}

/// What workers share, with `table`'s strategy: full budgets, a small inbox.
fn bidding_on(table: &StrategyTable, catalog: Catalog) -> Bidding {
    let budgets = Budgets::new(catalog.campaigns.iter().map(|c| c.daily_budget_micros));
    let strategy = table.source_for(&catalog);
    Bidding::sharing(
        Arc::new(catalog),
        Arc::new(budgets),
        Arc::new(LedgerInbox::new(64)),
        strategy,
        monday_calendar().clock(),
    )
}

fn bid_price(worker: &mut Pipeline, bidding: &Bidding) -> Option<f64> {
    first_bid(worker, bidding, BANNER).and_then(|b| b["price"].as_f64())
}

#[test]
fn a_row_added_for_a_campaign_without_one_prices_the_next_bid_without_a_poll() {
    let dir = TempDir::new("strategy-table-new-row");
    let path = dir.0.join("strategy");
    let catalog = demo_catalog();
    let mut agent =
        Writer::<Layout>::open(&path, CAP, OnMismatch::Refuse, Clock::system()).unwrap();
    agent
        .put_campaign("zephyr-video", &row(1_100_000, 9_000_000, false))
        .unwrap();
    let table = StrategyTable::open(&path);
    let bidding = bidding_on(&table, catalog);
    let catalog = &bidding.catalog;
    let acme = catalog.campaign_by_id("acme-display").unwrap();
    let zephyr = catalog.campaign_by_id("zephyr-video").unwrap();
    let read = |idx: usize| bidding.strategy.campaign(idx, &catalog.campaigns[idx]);
    let mut worker = Pipeline::new(&bidding, 0, Arc::default()).unwrap();
    assert_eq!(read(acme).margin_ppm, PPM_ONE);
    assert_eq!(
        bid_price(&mut worker, &bidding),
        Some(1.8),
        "base 2.00 × shading 0.90"
    );

    // No poll, no mirror thread, no new generation: the same source, next read.
    agent
        .put_campaign("not-in-this-catalog", &row(1_500_000, 1, true))
        .unwrap();
    agent
        .put_campaign("acme-display", &row(1_250_000, 3_000_000, false))
        .unwrap();
    assert_eq!(bid_price(&mut worker, &bidding), Some(2.5));
    let s = read(acme);
    assert_eq!((s.margin_ppm, s.max_cpm_micros), (1_250_000, 3_000_000));
    assert_eq!(
        read(zephyr).margin_ppm,
        1_100_000,
        "older rows stay matched"
    );
    agent
        .put_campaign("acme-display", &row(1_250_000, 3_000_000, true))
        .unwrap();
    assert!(read(acme).paused, "the new row is read on every bid after");
    // The mirror has nothing to rebuild for it: values changed, the file did not.
    assert_eq!(
        table.poll(),
        Change {
            remap: false,
            values: true
        }
    );
}

#[test]
fn workers_racing_to_match_new_rows_each_read_only_their_campaigns_row() {
    let dir = TempDir::new("strategy-table-new-row-race");
    let path = dir.0.join("strategy");
    let catalog = Arc::new(demo_catalog());
    let mut agent =
        Writer::<Layout>::open(&path, CAP, OnMismatch::Refuse, Clock::system()).unwrap();
    let table = StrategyTable::open(&path);
    let source = table.source_for(&catalog);
    // Campaign i's row says margin 1.0 + (i + 1) %, so a read of another campaign's
    // row, or of a half-matched one, shows.
    let margin = |i: usize| PPM_ONE + 10_000 * (i as u32 + 1);
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (catalog, source) = (Arc::clone(&catalog), Arc::clone(&source));
            std::thread::spawn(move || {
                let n = catalog.campaigns.len();
                let mut seen = vec![false; n];
                for _ in 0..50_000_000u64 {
                    for (i, c) in catalog.campaigns.iter().enumerate() {
                        let m = source.campaign(i, c).margin_ppm;
                        assert!(m == PPM_ONE || m == margin(i), "campaign {i} read {m}");
                        assert!(!seen[i] || m == margin(i), "campaign {i} lost its row");
                        seen[i] |= m == margin(i);
                    }
                    if seen.iter().all(|&s| s) {
                        return;
                    }
                }
                panic!("rows never all matched: {seen:?}");
            })
        })
        .collect();
    for (i, c) in catalog.campaigns.iter().enumerate().rev() {
        agent
            .put_campaign(&format!("elsewhere-{i}"), &row(900_000, 1, true))
            .unwrap();
        agent
            .put_campaign(&c.id, &row(margin(i), 9_000_000, false))
            .unwrap();
    }
    for r in readers {
        r.join().unwrap();
    }
}

#[test]
fn the_last_strategy_stays_when_the_agent_dies_or_its_file_is_removed() {
    let dir = TempDir::new("strategy-table-agent-dies");
    let path = dir.0.join("strategy");
    let catalog = demo_catalog();
    let mut agent =
        Writer::<Layout>::open(&path, CAP, OnMismatch::Refuse, Clock::system()).unwrap();
    agent
        .put_campaign("acme-display", &row(1_300_000, 4_000_000, false))
        .unwrap();
    let table = StrategyTable::open(&path);
    drop(agent);
    std::fs::remove_file(&path).unwrap();
    table.poll();
    assert_eq!(
        strategy_of(&table, &catalog, "acme-display").margin_ppm,
        1_300_000
    );
    // A re-created table (new inode) is mapped on the next poll.
    let mut agent =
        Writer::<Layout>::open(&path, CAP, OnMismatch::Refuse, Clock::system()).unwrap();
    agent
        .put_campaign("acme-display", &row(950_000, 4_000_000, false))
        .unwrap();
    assert!(table.poll().remap);
    assert_eq!(
        strategy_of(&table, &catalog, "acme-display").margin_ppm,
        950_000
    );
}

#[test]
fn a_table_of_another_layout_is_refused_and_the_last_good_one_stays() {
    let dir = TempDir::new("strategy-table-layout");
    let path = dir.0.join("strategy");
    let catalog = demo_catalog();
    let mut agent =
        Writer::<Layout>::open(&path, CAP, OnMismatch::Refuse, Clock::system()).unwrap();
    agent
        .put_campaign("acme-display", &row(1_400_000, 4_000_000, false))
        .unwrap();
    drop(agent);
    let table = StrategyTable::open(&path);
    // Something else appears under the name: a stats table (wrong magic).
    let stats = dir.0.join("stats");
    drop(Writer::<StatsTable>::open(&stats, CAP, OnMismatch::Recreate, Clock::system()).unwrap());
    std::fs::rename(&stats, &path).unwrap();
    assert!(!table.poll().remap);
    assert_eq!(
        strategy_of(&table, &catalog, "acme-display").margin_ppm,
        1_400_000
    );
    // A fresh bidder facing the same file starts on the configuration.
    let fresh = StrategyTable::open(&path);
    assert!(fresh.mapped().is_none());
    assert_eq!(
        strategy_of(&fresh, &catalog, "acme-display").margin_ppm,
        PPM_ONE
    );
}

#[test]
fn partner_and_budget_rows_override_the_configuration() {
    let dir = TempDir::new("strategy-table-overrides");
    let path = dir.0.join("strategy");
    let mut catalog = demo_catalog();
    let budgets = Budgets::new(catalog.campaigns.iter().map(|c| c.daily_budget_micros));
    let mut agent =
        Writer::<Layout>::open(&path, CAP, OnMismatch::Refuse, Clock::system()).unwrap();
    let limit = PartnerLimitValue {
        qps_limit: 10,
        burst: 2,
        flags: 0,
        ..PartnerLimitValue::default()
    };
    agent.put_partner("ssp-b", &limit.sealed()).unwrap();
    let mut budget_row = row(PPM_ONE, 5_000_000, false);
    budget_row.daily_budget_micros = 7_000_000;
    agent
        .put_campaign("acme-display", &budget_row.sealed())
        .unwrap();
    let table = StrategyTable::open(&path);
    table.apply_partner_overrides(&mut catalog.partners);
    let ssp = &catalog.partners[catalog.partner_by_name("ssp-b").unwrap() as usize];
    assert_eq!((ssp.qps_limit, ssp.burst, ssp.enabled), (10, 2, false));
    let configured = table.configured_partner("ssp-b").unwrap();
    assert_eq!(
        (configured.qps_limit, configured.burst, configured.enabled),
        (20_000, 2_000, true)
    );
    assert!(table.configured_partner("exchange-a").is_none());
    let slot = catalog.campaigns[catalog.campaign_by_id("acme-display").unwrap()].budget_slot;
    table.apply_budget_overrides(&catalog, &budgets);
    assert_eq!(budgets.snapshot(slot).daily_micros, 7_000_000);
    assert_eq!(budgets.snapshot(slot).available_micros, 7_000_000);
    // Back to "as configured".
    agent
        .put_campaign("acme-display", &row(PPM_ONE, 5_000_000, false))
        .unwrap();
    table.apply_budget_overrides(&catalog, &budgets);
    assert_eq!(budgets.snapshot(slot).daily_micros, 500_000_000);
    let enabled = PartnerLimitValue {
        flags: PARTNER_ENABLED,
        ..limit
    };
    agent.put_partner("ssp-b", &enabled.sealed()).unwrap();
    assert!(table.poll().values);
    assert!(table.partner_rows()["ssp-b"].enabled());
}

#[test]
fn the_price_of_the_next_bid_follows_the_table() {
    let dir = TempDir::new("strategy-table-price");
    let path = dir.0.join("strategy");
    let catalog = demo_catalog();
    let mut agent =
        Writer::<Layout>::open(&path, CAP, OnMismatch::Refuse, Clock::system()).unwrap();
    agent
        .put_campaign("acme-display", &row(PPM_ONE, 5_000_000, false))
        .unwrap();
    let table = StrategyTable::open(&path);
    let bidding = bidding_on(&table, catalog);
    let mut worker = Pipeline::new(&bidding, 0, Arc::default()).unwrap();
    let price = |worker: &mut Pipeline| bid_price(worker, &bidding);
    assert_eq!(price(&mut worker), Some(2.0));
    agent
        .put_campaign("acme-display", &row(1_250_000, 5_000_000, false))
        .unwrap();
    assert_eq!(price(&mut worker), Some(2.5));
    agent
        .put_campaign("acme-display", &row(1_250_000, 2_200_000, false))
        .unwrap();
    assert_eq!(
        price(&mut worker),
        Some(2.2),
        "the strategy's max CPM caps the price"
    );
    agent
        .put_campaign("acme-display", &row(1_250_000, 9_000_000, false))
        .unwrap();
    assert_eq!(price(&mut worker), Some(2.5));
    agent
        .put_campaign("acme-display", &row(1_500_000, 9_000_000, false))
        .unwrap();
    assert_eq!(price(&mut worker), Some(3.0));
    agent
        .put_campaign("acme-display", &row(1_500_000, 9_000_000, true))
        .unwrap();
    assert_eq!(price(&mut worker), None, "a paused campaign does not bid");
}

#[test]
fn the_stats_table_carries_the_catalog_budgets_and_reason_names() {
    let dir = TempDir::new("strategy-table-stats");
    let catalog = Arc::new(demo_catalog());
    let budgets = Arc::new(Budgets::new(
        catalog.campaigns.iter().map(|c| c.daily_budget_micros),
    ));
    let strategy = StrategyTable::open(&dir.0.join("strategy"));
    let calendar = monday_calendar();
    let bidding = Bidding::sharing(
        Arc::clone(&catalog),
        Arc::clone(&budgets),
        Arc::new(LedgerInbox::new(64)),
        strategy.source_for(&catalog),
        calendar.clock(),
    );
    let service = bidder::bid::gate::BidService::new(bidding, 1);
    let stats_path = dir.0.join("stats");
    let mut publisher = StatsPublisher::open(&stats_path, CAP, calendar.clock()).unwrap();
    let second = StatsPublisher::open(&stats_path, CAP, calendar.clock());
    assert!(
        second.is_err(),
        "a second bidder cannot write the same stats table"
    );
    let acme_idx = catalog.campaign_by_id("acme-display").unwrap();
    let slot = catalog.campaigns[acme_idx].budget_slot;
    let reservation = budgets.reserve(slot, 1_234).unwrap();
    let inputs = StatsInputs {
        generation: service.current(),
        budgets: Arc::clone(&budgets),
        decisions: Vec::new(),
        workers: Vec::new(),
        strategy_contended: 3,
    };
    publisher.publish(&inputs, &strategy);
    budgets.release(reservation);
    let table = Table::<StatsTable>::open_read(&stats_path).unwrap();
    assert_eq!(table.campaigns().len(), catalog.campaigns.len());
    let acme = table.campaigns()[table.find_campaign("acme-display").unwrap()]
        .load()
        .unwrap();
    assert!(acme.is_sealed());
    assert_eq!(acme.flags, IN_CATALOG);
    assert_eq!(acme.max_bid_cpm_micros, 5_000_000);
    assert_eq!(acme.reserved_micros, 1_234);
    assert_eq!(acme.default_shading_ppm, 900_000);
    assert_eq!(table.partners().len(), 2);
    let totals = table.prefix().totals.load().unwrap();
    assert_eq!(totals.strategy_contended, 3);
    let names = reason_names(&table);
    assert_eq!(names[0], "invalid_request");
    assert_eq!(names.len(), bidder::decide::NoBidReason::COUNT);
}

#[test]
fn the_strategy_section_has_defaults_and_bounded_numbers() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo.toml");
    let text = std::fs::read_to_string(&demo).unwrap();
    let config = Config::from_text(&demo, text.clone()).unwrap();
    assert_eq!(
        config.strategy.table_path,
        Path::new("/run/bidder/strategy")
    );
    assert_eq!(config.strategy.stats_campaign_capacity, 4_096);
    let bad = format!("{text}\n[strategy]\npoll_interval_ms = 0\nstats_partner_capacity = 0\n");
    let errors = Config::from_text(&demo, bad).unwrap_err();
    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 2, "{text:?}");
    assert!(
        text[0].contains("strategy.stats_partner_capacity"),
        "{text:?}"
    );
    assert!(
        text[1].contains("strategy.poll_interval_ms: 0 is outside 1..=60000"),
        "{text:?}"
    );
}
