//! Configuration loading: the demo file is valid, every broken rule is reported with
//! file, line, field and fix, and thousands of campaigns load and compile.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use bidder::catalog::Catalog;
use bidder::config::{Config, ConfigError};

fn demo_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo.toml")
}

fn key_path() -> String {
    demo_path()
        .with_file_name("demo-notice.key")
        .display()
        .to_string()
}

/// A valid file with one campaign; `campaign_extra` and `creative_extra` are spliced in.
fn config_text(top: &str, campaign_extra: &str, creative_extra: &str) -> String {
    format!(
        r#"{top}
[notice]
base_url = "https://bidder.test/notice"
hmac_key_file = "{key}"

[[partner]]
name = "ex-a"
cidrs = ["10.0.0.0/8"]
qps_limit = 10

[[campaign]]
id = "c1"
advertiser = "adv"
daily_budget_micros = 1_000_000
max_bid_cpm_micros = 5_000_000
base_cpm_micros = 1_000_000
{campaign_extra}
  [[campaign.creative]]
  id = "cr1"
  format = "banner"
  w = 300
  h = 250
  adomain = ["a.example"]
  adm = "<b>x</b>"
{creative_extra}
"#,
        key = key_path()
    )
}

fn errors(text: String) -> Vec<String> {
    match Config::from_text(Path::new("/etc/bidder/test.toml"), text) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ConfigError::to_string).collect(),
    }
}

#[test]
fn the_demo_configuration_is_valid_and_compiles() {
    let config = Config::load(&demo_path()).unwrap_or_else(|e| panic!("{e:?}"));
    let catalog = Catalog::compile(&config).expect("compile");
    assert!(catalog.campaigns.len() >= 5);
    assert_eq!(catalog.partner_by_name("exchange-a"), Some(0));
    assert_eq!(
        catalog.partner_by_addr("127.0.0.1".parse().unwrap()),
        Some(0)
    );
    assert_eq!(
        catalog.partner_by_addr("192.0.2.7".parse().unwrap()),
        Some(1)
    );
    assert_eq!(
        catalog.partner_by_addr("198.51.100.1".parse().unwrap()),
        None
    );
}

#[test]
fn a_valid_minimal_file_has_no_errors() {
    assert_eq!(errors(config_text("", "", "")), Vec::<String>::new());
}

#[test]
fn each_broken_rule_names_line_field_and_fix() {
    // (top-level text, campaign lines, creative lines, expected fragments of one error)
    let cases: &[(&str, &str, &str, &[&str])] = &[
        ("[bidding]\ncurrency = \"usd\"", "", "", &["test.toml:2:", "bidding.currency", "fix:"]),
        ("[bidding]\ndeadline_cap_ms = 0", "", "", &["bidding.deadline_cap_ms", "1..=1000"]),
        ("[server]\nlisten = \"nope\"", "", "", &["test.toml:2:", "server.listen", "ip:port"]),
        ("[server]\nengine = \"epoll\"", "", "", &["server.engine", "io_uring"]),
        ("[server]\nring_write = \"zerocopy\"", "", "", &["server.ring_write", "unknown way to write `zerocopy`", "\"send\""]),
        // One bound for both engines: what validates runs on either.
        ("[server]\nengine = \"tokio\"\nmax_connections_per_worker = 2_000_000", "", "", &["server.max_connections_per_worker", "outside 1..=1048576"]),
        ("[server]\nmax_connections_per_worker = 2_000_000", "", "", &["server.max_connections_per_worker", "outside 1..=1048576"]),
        ("[currency_rates_micros]\nEUR = -5", "", "", &["currency_rates_micros.EUR"]),
        ("", "daily_budget_micros_typo = 1", "", &["unknown field `daily_budget_micros_typo`", "test.toml:"]),
        ("", "time_zone = \"Mars/Olympus_Mons\"", "", &["test.toml:", "campaign[0] (c1).time_zone", "unknown time zone", "America/New_York"]),
        ("", "time_zone = \"Asia/Kolkata\"\nhourly_budget_micros = 100\nlifetime_budget_micros = 5_000", "", &[]),
        ("", "hourly_budget_micros = -1", "", &["campaign[0] (c1).hourly_budget_micros", "negative"]),
        ("", "lifetime_budget_micros = -1", "", &["campaign[0] (c1).lifetime_budget_micros", "negative"]),
        ("[bidding]\nreservation_ttl_ms = 7_200_000", "", "", &["bidding.reservation_ttl_ms", "outside 1000..=3600000", "budget hour"]),
        ("[frequency]\nuser_keys = [\"user.id\", \"cookie\"]", "frequency_cap = 3", "", &["frequency.user_keys[1]", "unknown source \"cookie\"", "device.ifa"]),
        ("[frequency]\nwithout_user = \"maybe\"", "", "", &["frequency.without_user", "no_bid"]),
        ("[frequency]\nmax_tracked = 10", "", "", &["frequency.max_tracked", "outside 1024..="]),
        ("", "frequency_cap = 0", "", &["campaign[0] (c1).frequency_cap", "outside 1..=255"]),
        ("", "frequency_cap = 3\nfrequency_period = \"week\"", "", &["campaign[0] (c1).frequency_period", "\"hour\""]),
        ("[frequency]\nuser_keys = [\"device.ifa\"]\nwithout_user = \"bid\"", "frequency_cap = 255\nfrequency_period = \"hour\"", "", &[]),
        ("", "", "", &[]),
        ("", "  [campaign.targeting]\n  sizes = [\"300by250\"]", "", &["campaign[0] (c1).targeting.sizes", "WxH"]),
        ("", "  [campaign.targeting]\n  countries = [\"de\"]", "", &["countries", "alpha-3"]),
        ("", "  [campaign.targeting]\n  dayparts = [\"weekdays\"]", "", &["dayparts", "mon-fri 08-20"]),
        ("", "  [campaign.targeting]\n  partners = [\"nobody\"]", "", &["unknown partner `nobody`"]),
        ("", "  [campaign.targeting]\n  deals_only = true", "", &["deals_only", "no deals"]),
        ("", "  [campaign.targeting]\n  media = [\"hologram\"]", "", &["unknown media `hologram`"]),
        ("", "  [campaign.targeting]\n  require_consent = true", "", &["campaign[0] (c1).targeting.require_consent", "privacy.gvl_vendor_id", "Global Vendor List"]),
        ("[privacy]\ngvl_vendor_id = 1001", "  [campaign.targeting]\n  require_consent = true\n  consent_purposes = [1, 2, 7]\n  consent_special_features = [1]\n  us_opt_outs = [\"sale\"]", "", &[]),
        ("[privacy]\ngvl_vendor_id = 1001", "  [campaign.targeting]\n  consent_purposes = [1, 2, 7]", "", &["targeting.require_consent", "set require_consent = true"]),
        ("[privacy]\ngvl_vendor_id = 1001", "  [campaign.targeting]\n  require_consent = true\n  consent_purposes = [0, 12]", "", &["targeting.consent_purposes", "12 is not a TCF v2.2 purpose", "1..=11"]),
        ("[privacy]\ngvl_vendor_id = 1001", "  [campaign.targeting]\n  require_consent = true\n  consent_special_features = [3]", "", &["targeting.consent_special_features", "precise geolocation"]),
        ("[privacy]\ngvl_vendor_id = 1001", "  [campaign.targeting]\n  require_consent = true\n  us_opt_outs = [\"selling\"]", "", &["targeting.us_opt_outs", "unknown opt-out \"selling\"", "targeted_advertising"]),
        ("", "  [campaign.targeting]\n  allow_ivt = [\"bots\"]", "", &["targeting.allow_ivt", "unknown invalid-traffic kind \"bots\"", "inconsistent_device"]),
        ("[supply]\nads_txt_url = \"ftp://mirror/{domain}\"", "", "", &["test.toml:2:", "supply.ads_txt_url", "http(s) URL with {domain}"]),
        ("[supply]\nrefresh_interval_s = 5", "", "", &["supply.refresh_interval_s", "below 60"]),
        ("[fleet]\nredis_url = \"http://10.0.0.5:6379\"", "", "", &["test.toml:2:", "fleet.redis_url", "not a redis:// or rediss:// URL"]),
        ("[fleet]\nredis_url = \"redis://10.0.0.5:6379/0\"\nkey_prefix = \"a b\"", "", "", &["test.toml:3:", "fleet.key_prefix"]),
        ("[fleet]\nredis_url = \"redis://10.0.0.5:6379/0\"\nrenew_interval_ms = 1", "", "", &["fleet.renew_interval_ms", "outside 10..=10000"]),
        ("[fleet]\nkey_prefix = \"x\"", "", "", &["test.toml:1:", "missing field `redis_url`"]),
        ("[fleet]\nredis_url = \"redis://:secret@10.0.0.5:6379/0\"\nlearning_ms = 2000", "", "", &[]),
        ("[fleet]\nredis_url = \"redis://10.0.0.5:6379/0\"\nlearning_ms = 1000", "", "", &["fleet.learning_ms", "shorter than twice report_interval_ms"]),
        ("[fleet]\nredis_url = \"rediss://10.0.0.5:6380/0\"", "", "", &[]),
        ("[fleet]\nredis_url = [\"redis://10.0.0.5:7000\", \"redis://10.0.0.6:7000\"]", "", "", &[]),
        ("[fleet]\nredis_url = []", "", "", &["fleet.redis_url", "empty list"]),
        ("[fleet]\nredis_url = \"redis://10.0.0.5:6379/0\"\ntls_ca_file = \"missing.pem\"", "", "", &["fleet.tls_ca_file", "not a readable PEM"]),
        ("[[partner]]\nname = \"ex-b\"\nqps_limit = 1\nsellers_json = \"sellers.json\"", "", "", &["partner[0] (ex-b).sellers_json", "set asi"]),
        ("[[partner]]\nname = \"ex-b\"\nqps_limit = 1\nasi = \"not a domain\"", "", "", &["partner[0] (ex-b).asi", "not a domain"]),
        ("", "  [campaign.targeting.supply_chain]\n  verify_ads_txt = true\n  when_unverified = \"maybe\"", "", &["targeting.supply_chain.when_unverified", "\"direct_only\""]),
        ("[[partner]]\nname = \"ex-b\"\nqps_limit = 1\nasi = \"Ex-B.com\"\nsellers_json = \"https://ex-b.com/sellers.json\"", "  [campaign.targeting.supply_chain]\n  verify_sellers = true\n  verify_ads_txt = true\n  when_unverified = \"direct_only\"", "", &[]),
        ("[privacy]\ngvl_vendor_id = -1", "", "", &["test.toml:2:", "expected u16"]),
        ("[[partner]]\nname = \"ex-b\"\nqps_limit = 1\nresponse_format = \"xml\"", "", "", &["test.toml:4:", "unknown variant `xml`", "expected `json` or `flatbuffers`"]),
        ("[[partner]]\nname = \"ex-b\"\nqps_limit = 1\nresponse_format = \"flatbuffers\"", "", "", &[]),
        ("[[partner]]\nname = \"ex-b\"\nqps_limit = 1\nunnoticed_bids = \"keep\"", "", "", &["test.toml:4:", "unknown variant `keep`", "expected `release` or `charge`"]),
        ("[[partner]]\nname = \"ex-b\"\nqps_limit = 1\nunnoticed_bids = \"charge\"", "", "", &[]),
        ("", "", "  [[campaign.creative]]\n  id = \"cr1\"\n  format = \"banner\"\n  w = 1\n  h = 1\n  adomain = [\"a\"]\n  adm = \"x\"", &["duplicate creative id"]),
        ("", "", "  [[campaign.creative]]\n  id = \"cr2\"\n  format = \"banner\"\n  adomain = [\"a\"]\n  adm = \"x\"", &["creative[1] (cr2).w/h", "set w and h"]),
        ("", "", "  [[campaign.creative]]\n  id = \"cr2\"\n  format = \"video\"\n  adomain = []\n  adm = \"\"", &["creative[1] (cr2).adm"]),
    ];
    for (top, campaign, creative, fragments) in cases {
        let found = errors(config_text(top, campaign, creative));
        if fragments.is_empty() {
            assert!(found.is_empty(), "{found:?}");
            continue;
        }
        assert!(
            found
                .iter()
                .any(|e| fragments.iter().all(|f| e.contains(f))),
            "expected an error with {fragments:?}, got {found:#?}"
        );
    }
}

#[test]
fn invalid_campaign_money_is_reported_on_its_own_line() {
    let text =
        config_text("", "", "").replace("base_cpm_micros = 1_000_000", "base_cpm_micros = -1");
    let campaign_line = text
        .lines()
        .position(|l| l.starts_with("base_cpm_micros = -1"))
        .unwrap()
        + 1;
    let found = errors(text);
    let want = format!("test.toml:{campaign_line}: campaign[0] (c1).base_cpm_micros");
    assert!(found.iter().any(|e| e.contains(&want)), "{found:#?}");
}

#[test]
fn duplicate_ids_and_bad_cidrs_are_refused() {
    let text = config_text("", "", "")
        + "[[partner]]\nname = \"ex-a\"\ncidrs = [\"10.0.0.0/33\"]\nqps_limit = 1\n"
        + "[[campaign]]\nid = \"c1\"\nadvertiser = \"b\"\ndaily_budget_micros = 1\nmax_bid_cpm_micros = 1\nbase_cpm_micros = 1\n  [[campaign.creative]]\n  id = \"x\"\n  format = \"native\"\n  adomain = [\"a\"]\n  adm = \"{}\"\n";
    let found = errors(text);
    for fragment in [
        "duplicate partner name",
        "`10.0.0.0/33` is not a CIDR",
        "duplicate campaign id",
    ] {
        assert!(
            found.iter().any(|e| e.contains(fragment)),
            "{fragment}: {found:#?}"
        );
    }
}

#[test]
fn a_missing_or_short_key_file_is_an_error() {
    let text = config_text("", "", "").replace(&key_path(), "/nonexistent/key");
    let found = errors(text);
    assert!(
        found
            .iter()
            .any(|e| e.contains("notice.hmac_key_file") && e.contains("cannot read")),
        "{found:#?}"
    );
}

#[test]
fn syntax_errors_name_the_line() {
    let found = errors("[bidding]\nseat = \"x\"\nhost_id = \n".into());
    assert_eq!(found.len(), 1);
    assert!(
        found[0].starts_with("/etc/bidder/test.toml:3:"),
        "{}",
        found[0]
    );
}

#[test]
fn a_missing_file_says_so() {
    let err = Config::load(Path::new("/nonexistent/bidder.toml")).unwrap_err();
    assert!(err[0]
        .to_string()
        .contains("/nonexistent/bidder.toml: cannot read"));
}

/// A three-letter upper-case code for `i` (AAA, AAB, …), standing in for a country.
fn code(i: usize) -> String {
    [i / 676 % 26, i / 26 % 26, i % 26]
        .iter()
        .map(|&d| (b'A' + d as u8) as char)
        .collect()
}

#[test]
fn thousands_of_campaigns_load_and_compile() {
    let mut text = config_text("", "", "");
    for i in 0..5_000 {
        let _ = write!(
            text,
            "[[campaign]]\nid = \"gen-{i}\"\nadvertiser = \"a\"\ndaily_budget_micros = 1_000_000\nmax_bid_cpm_micros = 2_000_000\nbase_cpm_micros = 1_000_000\n  [campaign.targeting]\n  countries = [\"{}\"]\n  site_domains = [\"site{}.example\"]\n  [[campaign.creative]]\n  id = \"c\"\n  format = \"banner\"\n  w = 300\n  h = 250\n  adomain = [\"a.example\"]\n  adm = \"x\"\n",
            code(i % 100),
            i % 700
        );
    }
    let config = Config::from_text(Path::new("many.toml"), text)
        .unwrap_or_else(|e| panic!("{:#?}", &e[..e.len().min(3)]));
    let catalog = Catalog::compile(&config).unwrap();
    assert_eq!(catalog.campaigns.len(), 5_001);
    assert_eq!(catalog.index.width, 5_001);
    assert_eq!(catalog.index.countries.by_value.len(), 100);
}

/// A valid file whose two campaigns have ids `a` and `b`.
fn two(a: &str, b: &str) -> String {
    let base = config_text("", "", "");
    let (head, campaign) = base.split_once("[[campaign]]").expect("one campaign");
    let campaign = format!("[[campaign]]{campaign}");
    head.to_string()
        + &campaign.replace("id = \"c1\"", &format!("id = \"{a}\""))
        + &campaign.replace("id = \"c1\"", &format!("id = \"{b}\""))
}

#[test]
fn budget_slots_stay_with_their_campaign_across_reloads() {
    use bidder::catalog::BudgetSlots;
    let mut slots = BudgetSlots::with_capacity(3);
    let first = Config::from_text(Path::new("a.toml"), two("alpha", "beta")).unwrap();
    let first = Catalog::compile_with_slots(&first, &mut slots).unwrap();
    assert_eq!(
        first
            .campaigns
            .iter()
            .map(|c| c.budget_slot)
            .collect::<Vec<_>>(),
        [0, 1]
    );
    let second = Config::from_text(Path::new("a.toml"), two("gamma", "beta")).unwrap();
    let second = Catalog::compile_with_slots(&second, &mut slots).unwrap();
    assert_eq!(
        second
            .campaigns
            .iter()
            .map(|c| (c.id.as_str(), c.budget_slot))
            .collect::<Vec<_>>(),
        [("gamma", 2), ("beta", 1)]
    );
    let third = Config::from_text(Path::new("a.toml"), two("delta", "beta")).unwrap();
    let err = Catalog::compile_with_slots(&third, &mut slots).unwrap_err();
    assert!(
        err.to_string().contains("more than 3 distinct campaigns"),
        "{err}"
    );
}

#[test]
fn partner_and_campaign_errors_point_at_the_field_line() {
    let text = config_text("", "", "").replace("cidrs = [\"10.0.0.0/8\"]", "cidrs = [\"10.0.0.0/88\"]")
        + "  [[campaign.creative]]\n  id = \"cr2\"\n  format = \"banner\"\n  adomain = [\"a\"]\n  adm = \"\"\n";
    let line_of = |needle: &str, nth: usize| {
        text.lines()
            .enumerate()
            .filter(|(_, l)| l.contains(needle))
            .nth(nth)
            .map(|(i, _)| i + 1)
            .unwrap()
    };
    let cidr_line = line_of("10.0.0.0/88", 0);
    let adm_line = line_of("adm = \"\"", 0);
    let found = errors(text);
    assert!(
        found.iter().any(|e| e.contains(&format!(
            "test.toml:{cidr_line}: partner[0] (ex-a).cidrs[0]"
        ))),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|e| e.contains(&format!(
            "test.toml:{adm_line}: campaign[0] (c1).creative[1] (cr2).adm"
        ))),
        "{found:#?}"
    );
}

#[test]
fn the_xdp_section_loads_with_every_key_and_partner_syn_limits_default_to_1000() {
    let top = "[xdp]\ninterface = \"eth0\"\nmode = \"native\"\nrequired = false\npin_dir = \"/sys/fs/bpf/b1\"\nunknown_sources = \"drop\"\nblocklist = [\"203.0.113.0/24\", \"2001:db8:bad::/48\"]\npackets_per_request = 5\nlog_interval_ms = 0\n";
    let text = config_text(top, "", "")
        + "[[partner]]\nname = \"ex-b\"\ncidrs = [\"10.9.0.0/16\"]\nqps_limit = 1\nsyn_per_s = 7\nsyn_burst = 3\n";
    let config = Config::from_text(Path::new("x.toml"), text).unwrap_or_else(|e| panic!("{e:?}"));
    let x = &config.xdp;
    assert!(x.enabled());
    assert_eq!(x.attach_mode(), bidder::config::AttachMode::Native);
    assert_eq!(x.unknown_policy(), bidder::config::UnknownSources::Drop);
    assert!(!x.required);
    assert_eq!(x.pin_dir, Path::new("/sys/fs/bpf/b1"));
    assert_eq!(x.blocklist_nets().len(), 2);
    assert_eq!((x.packets_per_request, x.log_interval_ms), (5, 0));
    let syn: Vec<(u32, u32)> = config
        .partners
        .iter()
        .map(|p| (p.get_ref().syn_per_s, p.get_ref().syn_burst))
        .collect();
    assert_eq!(syn, [(1_000, 1_000), (7, 3)]);
    // Without the section: no XDP front, and the documented defaults.
    let plain = Config::from_text(Path::new("y.toml"), config_text("", "", "")).unwrap();
    assert!(!plain.xdp.enabled());
    assert!(plain.xdp.required);
    assert_eq!(plain.xdp.pin_dir, Path::new("/sys/fs/bpf/bidder"));
    assert_eq!(
        (plain.xdp.mode.as_str(), plain.xdp.unknown_sources.as_str()),
        ("auto", "pass")
    );
    assert_eq!(
        (plain.xdp.packets_per_request, plain.xdp.log_interval_ms),
        (3, 1_000)
    );
}

#[test]
fn each_broken_xdp_rule_names_line_field_and_fix() {
    let long_a = format!("{}-a", "p".repeat(40));
    let long_b = format!("{}-b", "p".repeat(40));
    let long_b_field = format!("partner[2] ({long_b}).name");
    // (top-level text, extra partners, expected fragments of one error)
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("[xdp]\nmode = \"turbo\"", String::new(), vec!["test.toml:2:", "xdp.mode", "fix: use \"native\", \"generic\" or \"auto\""]),
        ("[xdp]\n\nunknown_sources = \"reject\"", String::new(), vec!["test.toml:3:", "xdp.unknown_sources", "\"pass\" or \"drop\""]),
        ("[xdp]\npin_dir = \"bpf/bidder\"", String::new(), vec!["test.toml:2:", "xdp.pin_dir", "not an absolute path"]),
        ("[xdp]\nblocklist = [\"203.0.113.0/24\", \"nope\"]", String::new(), vec!["test.toml:2:", "xdp.blocklist[1]", "`nope` is not a CIDR"]),
        ("[xdp]\npackets_per_request = 0", String::new(), vec!["xdp.packets_per_request", "outside 1..=1000"]),
        ("[xdp]\nlog_interval_ms = 99_999_999", String::new(), vec!["xdp.log_interval_ms", "outside 0..=3600000"]),
        ("[xdp]\ninterface = \"a-very-long-interface\"", String::new(), vec!["xdp.interface", "at most 15 bytes"]),
        ("[xdp]\nintreface = \"eth0\"", String::new(), vec!["unknown field `intreface`", "test.toml:2:"]),
        ("[server]\nlisten = \"127.0.0.1:0\"\n[xdp]\ninterface = \"eth0\"", String::new(), vec!["test.toml:2:", "server.listen", "port 0", "fixed port"]),
        ("", "[[partner]]\nname = \"unknown_source\"\nqps_limit = 1\n".into(), vec!["(unknown_source).name", "reserved", "rename the partner"]),
        (
            "[xdp]\ninterface = \"eth0\"",
            format!("[[partner]]\nname = \"{long_a}\"\ncidrs = [\"10.1.0.0/16\"]\nqps_limit = 1\n[[partner]]\nname = \"{long_b}\"\ncidrs = [\"10.2.0.0/16\"]\nqps_limit = 1\n"),
            vec![&long_b_field, "first 32 bytes", "differ"],
        ),
    ];
    for (top, partners, fragments) in &cases {
        let found = errors(config_text(top, "", "") + partners);
        assert!(
            found
                .iter()
                .any(|e| fragments.iter().all(|f| e.contains(f))),
            "expected an error with {fragments:?}, got {found:#?}"
        );
    }
    // Without an interface the partner rules that only XDP needs do not apply.
    let (top, partners, _) = &cases[10];
    let without = config_text(&top.replace("interface = \"eth0\"", ""), "", "") + partners;
    assert_eq!(errors(without), Vec::<String>::new());
}
