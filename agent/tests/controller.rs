//! The controller over the control socket, on a driven clock, against a stats table
//! written here as a bidder would: it changes nothing until it knows the market and
//! the day's volume, then sets shading (and only shading) of every campaign but the
//! excluded ones, audited as `controller`.

mod common;

use bidder_common::clock::DrivenClock;
use bidder_common::table::segment::{Channel, SegmentKey};
use bidder_common::table::shm::Writer;
use bidder_common::table::stats::{
    feedback_bucket, CampaignStatsValue, StatsTable, FEEDBACK_BUCKETS,
};
use common::{code, config, fake_bidder, Client, Running, TempDir};

/// Wednesday 2031-03-05 12:00 UTC.
const NOON_MS: u64 = 1_930_478_400_000;
const MIDNIGHT_MS: u64 = NOON_MS - 12 * 3_600_000;

/// Rewrites `id`'s row: today began at midnight, `requests` so far, and the market's
/// min-to-win reports around 1.00 CPM.
fn market_row(w: &mut Writer<StatsTable>, id: &str, requests: u64) {
    let mut v = todays_row(w, id, requests);
    for (price, n) in [
        (600_000, 40),
        (800_000, 80),
        (1_000_000, 100),
        (1_300_000, 80),
        (1_800_000, 40),
    ] {
        v.min_to_win[feedback_bucket(price, v.max_bid_cpm_micros)] = n * (requests as u32 / 1_000);
    }
    w.put_campaign(id, &v.sealed()).unwrap();
}

/// `id`'s row as the bidder last wrote it, with today beginning at midnight and
/// `requests` so far; its feedback on the scale of its max bid.
fn todays_row(w: &Writer<StatsTable>, id: &str, requests: u64) -> CampaignStatsValue {
    let stats = w.table();
    let row = stats.find_campaign(id).unwrap();
    let mut v: CampaignStatsValue = stats.campaigns()[row].load().unwrap();
    v.day_start_ms = MIDNIGHT_MS;
    v.requests = requests;
    v.feedback_reference_cpm_micros = v.max_bid_cpm_micros;
    v
}

/// An agent at noon on a driven calendar, with a stats table written here as the
/// bidder's, zephyr-video excluded from the controller; and a client of its socket.
fn started(name: &str) -> (TempDir, Writer<StatsTable>, DrivenClock, Running, Client) {
    let dir = TempDir::new(name);
    let bidder = fake_bidder(&dir.0.join("stats"));
    let mut c = config(&dir.0);
    c.controller.exclude_campaigns = vec!["zephyr-video".into()];
    let calendar = DrivenClock::at(NOON_MS);
    let agent = Running::start_with_clock(c, calendar.clock());
    let client = Client::connect(&agent.socket);
    (dir, bidder, calendar, agent, client)
}

#[test]
fn the_controller_shades_what_it_knows_and_leaves_excluded_campaigns_alone() {
    let (_dir, mut bidder, calendar, _agent, mut client) = started("controller");
    let step = |client: &mut Client| {
        let answer = client.call(r#"{"v":1,"verb":"controller.step"}"#);
        assert_eq!(code(&answer), "ok", "{answer}");
        answer["result"]["changed"].as_array().unwrap().clone()
    };

    // Nothing known yet: no notices, then no volume seen since the count began.
    assert!(step(&mut client).is_empty());
    for id in ["acme-display", "zephyr-video"] {
        market_row(&mut bidder, id, 5_000);
    }
    calendar.advance_ms(300_000);
    assert!(
        step(&mut client).is_empty(),
        "the count of today's volume begins here"
    );

    // Half an hour later, with more traffic: a decision, for acme-display only.
    for id in ["acme-display", "zephyr-video"] {
        market_row(&mut bidder, id, 7_000);
    }
    calendar.advance_ms(1_800_000);
    let changed = step(&mut client);
    assert_eq!(changed.len(), 1, "{changed:?}");
    let change = &changed[0];
    assert_eq!(change["campaign"], "acme-display");
    assert_ne!(change["old"]["shading_ppm"], change["new"]["shading_ppm"]);
    assert_eq!(
        change["old"]["margin_ppm"], change["new"]["margin_ppm"],
        "margin is not the controller's"
    );
    assert!(
        change["new"]["why"].as_str().unwrap().starts_with("bid "),
        "{change}"
    );

    let status = client.call(r#"{"v":1,"verb":"controller.status"}"#);
    let campaigns = status["result"]["campaigns"].as_array().unwrap();
    let acme = campaigns
        .iter()
        .find(|c| c["campaign"] == "acme-display")
        .unwrap();
    let median = acme["market_median_micros"].as_i64().unwrap();
    assert!((900_000..1_150_000).contains(&median), "{status}");
    assert!(
        campaigns.iter().all(|c| c["campaign"] != "zephyr-video"),
        "{status}"
    );
    let audit = client.call(r#"{"v":1,"verb":"audit.tail","args":{"lines":1}}"#);
    let entry = &audit["result"]["entries"][0];
    assert_eq!(entry["who"]["actor"], "controller", "{audit}");
    assert_eq!(entry["verb"], "controller.step");
    assert_eq!(entry["at_unix_ms"], NOON_MS + 2_100_000);
}

/// `id`'s row with two market segments: app 320×50 in the USA around 0.60 CPM and
/// site 300×250 in Germany around 1.60, as many notices each.
fn segmented_row(w: &mut Writer<StatsTable>, id: &str, requests: u64) {
    let mut v = todays_row(w, id, requests);
    v.min_to_win = [0; FEEDBACK_BUCKETS];
    let scale = requests as u32 / 1_000;
    for (slot, (segment, median)) in [(cheap(), 600_000.0), (dear(), 1_600_000.0)]
        .into_iter()
        .enumerate()
    {
        v.segments[slot].key = segment.0;
        v.segments[slot].min_to_win = [0; FEEDBACK_BUCKETS];
        for (share, n) in [(0.7, 40), (0.85, 80), (1.0, 100), (1.2, 80), (1.45, 40)] {
            let bucket = feedback_bucket((median * share) as i64, v.max_bid_cpm_micros);
            v.segments[slot].min_to_win[bucket] += n * scale;
            v.min_to_win[bucket] += n * scale;
        }
    }
    w.put_campaign(id, &v.sealed()).unwrap();
}

fn cheap() -> SegmentKey {
    SegmentKey::new(Channel::App, 320, 50, Some("USA"))
}

fn dear() -> SegmentKey {
    SegmentKey::new(Channel::Site, 300, 250, Some("DEU"))
}

#[test]
fn each_segment_gets_its_own_shading_until_an_operator_sets_one_by_hand() {
    let (_dir, mut bidder, calendar, _agent, mut client) = started("controller-segments");
    segmented_row(&mut bidder, "acme-display", 5_000);
    let step = r#"{"v":1,"verb":"controller.step"}"#;
    assert_eq!(code(&client.call(step)), "ok");
    segmented_row(&mut bidder, "acme-display", 7_000);
    calendar.advance_ms(1_800_000);
    let answer = client.call(step);
    let change = &answer["result"]["changed"][0];
    let segments = change["new"]["segments"].as_array().expect("segments");
    assert_eq!(segments.len(), 2, "{change}");
    let shading_of = |name: String| {
        segments
            .iter()
            .find(|s| s["segment"] == name)
            .unwrap_or_else(|| panic!("no {name} in {change}"))["shading_ppm"]
            .as_i64()
            .unwrap()
    };
    let (low, high) = (
        shading_of(cheap().to_string()),
        shading_of(dear().to_string()),
    );
    assert!(
        low < high,
        "the cheap segment is shaded deeper: {low} vs {high}"
    );
    let status = client.call(r#"{"v":1,"verb":"controller.status"}"#);
    let learnt = &status["result"]["campaigns"][0]["segments"];
    assert_eq!(learnt.as_array().unwrap().len(), 2, "{status}");
    // An operator's shading applies to every segment.
    let set = client.call(
        r#"{"v":1,"verb":"strategy.set","args":{"campaign":"acme-display","shading_ppm":800000},"why":"flat shading for the audit"}"#,
    );
    assert_eq!(code(&set), "ok", "{set}");
    let get = client.call(r#"{"v":1,"verb":"strategy.get","args":{"campaign":"acme-display"}}"#);
    assert_eq!(get["result"]["shading_ppm"], 800_000, "{get}");
    assert_eq!(get["result"]["segments"], serde_json::json!([]), "{get}");
}
