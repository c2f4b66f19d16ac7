//! Table-driven tests of the bid decision: one row per targeting dimension, floor,
//! deal, consent location (2.6 and 2.5 `ext`), supply-chain rule, block list and
//! budget case, each naming the bid or the no-bid reason it must produce.

use std::path::Path;

use bidder::catalog::Catalog;
use bidder::config::Config;
use bidder::decide::strategy::{CampaignStrategy, StaticStrategy, StrategySource};
use bidder::decide::{request_user, Context, Decider, NoBidReason};
use bidder::money::budget::Budgets;
use bidder::money::frequency::{user_key, UserSource};
use bidder::openrtb::Parser;
use bidder_common::table::segment::{Channel, SegmentKey};

/// Monday 2026-11-23 10:30 UTC.
const MONDAY_10_30: u64 = testkit::MONDAY_10_30_MS / 1_000;

fn catalog(campaigns: &str) -> Catalog {
    let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo-notice.key");
    let text = format!(
        r#"
[bidding]
seat = "seat-1"
default_shading_ppm = 1_000_000
[notice]
base_url = "https://bidder.test/notice"
hmac_key_file = "{}"
[currency_rates_micros]
EUR = 1_100_000
[privacy]
gvl_vendor_id = 1001
[[partner]]
name = "ex-a"
qps_limit = 100
[[partner]]
name = "ex-b"
qps_limit = 100
{campaigns}
"#,
        key.display()
    );
    let config = match Config::from_text(Path::new("test.toml"), text) {
        Ok(c) => c,
        Err(errors) => panic!("test config invalid: {errors:?}"),
    };
    Catalog::compile(&config).expect("compile")
}

/// A banner campaign paying `base` CPM micros, with extra TOML lines for targeting.
fn banner_campaign(id: &str, base: i64, targeting: &str, creative_extra: &str) -> String {
    format!(
        r#"
[[campaign]]
id = "{id}"
advertiser = "adv"
daily_budget_micros = 1_000_000_000
max_bid_cpm_micros = 10_000_000
base_cpm_micros = {base}
  [campaign.targeting]
  {targeting}
  [[campaign.creative]]
  id = "{id}-cr"
  format = "banner"
  w = 300
  h = 250
  adomain = ["{id}.example"]
  adm = "<b>{id}</b>"
  {creative_extra}
"#
    )
}

/// A simple banner request with `extra` top-level members and `imp_extra` imp members.
fn banner_request(imp_extra: &str, extra: &str) -> String {
    format!(
        r#"{{"id":"req-1","imp":[{{"id":"1","banner":{{"w":300,"h":250}}{imp_extra}}}],
            "site":{{"domain":"news.example.com","cat":["IAB3-1"]}},
            "device":{{"devicetype":4,"os":"iOS","geo":{{"country":"DEU"}}}}{extra}}}"#
    )
}

#[derive(Debug, PartialEq)]
enum Expect {
    /// Bid by this campaign at this CPM (micros).
    Bid(&'static str, i64),
    NoBid(NoBidReason),
}

struct PausedStrategy;
impl StrategySource for PausedStrategy {
    fn campaign(&self, idx: usize, c: &bidder::catalog::Campaign) -> CampaignStrategy {
        CampaignStrategy {
            paused: true,
            ..StaticStrategy {
                shading_ppm: 1_000_000,
            }
            .campaign(idx, c)
        }
    }
}

struct NeverPace;
impl StrategySource for NeverPace {
    fn campaign(&self, idx: usize, c: &bidder::catalog::Campaign) -> CampaignStrategy {
        CampaignStrategy {
            pacing_ppm: 0,
            ..StaticStrategy {
                shading_ppm: 1_000_000,
            }
            .campaign(idx, c)
        }
    }
}

fn decide_with(
    campaigns: &str,
    request: &str,
    partner: Option<&str>,
    strategy: &dyn StrategySource,
) -> Vec<Expect> {
    let catalog = catalog(campaigns);
    let budgets = Budgets::new(catalog.campaigns.iter().map(|c| c.daily_budget_micros));
    let mut parser = Parser::new();
    let mut body = request.as_bytes().to_vec();
    let req = parser
        .parse(&mut body)
        .unwrap_or_else(|e| panic!("request invalid: {e}\n{request}"));
    let mut decider = Decider::new(&catalog, Default::default(), 7);
    let ctx = Context {
        partner: partner.map(|p| catalog.partner_by_name(p).expect("partner")),
        now_unix_s: MONDAY_10_30,
        user_key: None,
    };
    let decision = decider.decide(&catalog, strategy, &budgets, &req, ctx);
    let mut out = Vec::new();
    for bid in &decision.bids {
        out.push((
            bid.imp,
            Expect::Bid(leak(&catalog.campaigns[bid.campaign].id), bid.price_micros),
        ));
    }
    for (imp, reason) in &decision.no_bids {
        out.push((*imp, Expect::NoBid(*reason)));
    }
    decision.release_all(&budgets);
    for c in 0..budgets.len() {
        let s = budgets.snapshot(c);
        assert_eq!(
            s.available_micros, s.daily_micros,
            "dry run must give all budget back"
        );
    }
    out.sort_by_key(|(imp, _)| *imp);
    out.into_iter().map(|(_, e)| e).collect()
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

fn decide(campaigns: &str, request: &str) -> Expect {
    let static_strategy = StaticStrategy {
        shading_ppm: 1_000_000,
    };
    let mut all = decide_with(campaigns, request, Some("ex-a"), &static_strategy);
    assert_eq!(all.len(), 1, "single-imp request");
    all.remove(0)
}

use Expect::{Bid, NoBid};
use NoBidReason::*;

#[test]
fn each_targeting_dimension_admits_and_refuses() {
    let req = banner_request("", "");
    let cases: &[(&str, &str, Expect)] = &[
        ("no targeting bids", "", Bid("c", 2_000_000)),
        (
            "country match",
            r#"countries = ["DEU"]"#,
            Bid("c", 2_000_000),
        ),
        (
            "country miss",
            r#"countries = ["USA"]"#,
            NoBid(GeoNotTargeted),
        ),
        (
            "device type match",
            "device_types = [4]",
            Bid("c", 2_000_000),
        ),
        (
            "device type miss",
            "device_types = [2]",
            NoBid(DeviceNotTargeted),
        ),
        (
            "os matches case-insensitively",
            r#"os = ["ios"]"#,
            Bid("c", 2_000_000),
        ),
        ("os miss", r#"os = ["Android"]"#, NoBid(OsNotTargeted)),
        (
            "domain matches its subdomains",
            r#"site_domains = ["example.com"]"#,
            Bid("c", 2_000_000),
        ),
        (
            "domain miss",
            r#"site_domains = ["other.com"]"#,
            NoBid(PublisherNotTargeted),
        ),
        (
            "blocked parent domain",
            r#"block_site_domains = ["example.com"]"#,
            NoBid(PublisherNotTargeted),
        ),
        (
            "app allow list refuses site traffic",
            r#"app_bundles = ["com.game"]"#,
            NoBid(PublisherNotTargeted),
        ),
        (
            "tier-1 category matches tier-2",
            r#"categories = ["IAB3"]"#,
            Bid("c", 2_000_000),
        ),
        (
            "category miss",
            r#"categories = ["IAB4"]"#,
            NoBid(CategoryNotTargeted),
        ),
        (
            "daypart covers monday 10:00",
            r#"dayparts = ["mon-fri 08-20"]"#,
            Bid("c", 2_000_000),
        ),
        (
            "daypart misses",
            r#"dayparts = ["sat,sun 00-24", "mon 00-10"]"#,
            NoBid(OutsideDaypart),
        ),
        (
            "partner match",
            r#"partners = ["ex-a"]"#,
            Bid("c", 2_000_000),
        ),
        (
            "partner miss",
            r#"partners = ["ex-b"]"#,
            NoBid(PartnerNotTargeted),
        ),
        (
            "size target miss",
            r#"sizes = ["728x90"]"#,
            NoBid(SizeNotTargeted),
        ),
        (
            "media miss",
            r#"media = ["video"]"#,
            NoBid(MediaNotTargeted),
        ),
    ];
    for (name, targeting, want) in cases {
        let got = decide(&banner_campaign("c", 2_000_000, targeting, ""), &req);
        assert_eq!(&got, want, "{name}");
    }
}

#[test]
fn app_traffic_matches_bundle_lists() {
    let req = r#"{"id":"r","imp":[{"id":"1","banner":{"format":[{"w":320,"h":50},{"w":300,"h":250}]}}],
        "app":{"bundle":"com.Game","cat":["IAB9"]},"device":{"devicetype":4}}"#;
    assert_eq!(
        decide(
            &banner_campaign("c", 1_000_000, r#"app_bundles = ["com.game"]"#, ""),
            req
        ),
        Bid("c", 1_000_000)
    );
    assert_eq!(
        decide(
            &banner_campaign("c", 1_000_000, r#"block_app_bundles = ["com.game"]"#, ""),
            req
        ),
        NoBid(PublisherNotTargeted)
    );
    assert_eq!(
        decide(
            &banner_campaign("c", 1_000_000, r#"site_domains = ["example.com"]"#, ""),
            req
        ),
        NoBid(PublisherNotTargeted)
    );
}

#[test]
fn floors_and_currencies() {
    let c = banner_campaign("c", 2_000_000, "", "");
    let cases: &[(&str, Expect)] = &[
        (r#","bidfloor":1.5"#, Bid("c", 2_000_000)),
        (r#","bidfloor":2.5"#, NoBid(BelowFloor)),
        // 1.5 EUR at 1.10 = 1.65 USD: under our 2.00 value, so we bid our price.
        (
            r#","bidfloor":1.5,"bidfloorcur":"EUR""#,
            Bid("c", 2_000_000),
        ),
        // 1.9 EUR = 2.09 USD: over our value.
        (r#","bidfloor":1.9,"bidfloorcur":"EUR""#, NoBid(BelowFloor)),
        (
            r#","bidfloor":0.5,"bidfloorcur":"JPY""#,
            NoBid(FloorCurrencyUnsupported),
        ),
        (r#","bidfloor":0,"bidfloorcur":"JPY""#, Bid("c", 2_000_000)),
    ];
    for (imp_extra, want) in cases {
        assert_eq!(
            &decide(&c, &banner_request(imp_extra, "")),
            want,
            "{imp_extra}"
        );
    }
    assert_eq!(
        decide(&c, &banner_request("", r#","cur":["EUR"]"#)),
        NoBid(CurrencyNotAccepted)
    );
    assert_eq!(
        decide(&c, &banner_request("", r#","cur":["EUR","USD"]"#)),
        Bid("c", 2_000_000)
    );
}

#[test]
fn shading_below_the_floor_bids_the_floor_when_value_covers_it() {
    let c = banner_campaign("c", 2_000_000, "", "");
    let req = banner_request(r#","bidfloor":1.9"#, "");
    let shaded = StaticStrategy {
        shading_ppm: 800_000,
    };
    let got = decide_with(&c, &req, Some("ex-a"), &shaded);
    assert_eq!(got, vec![Bid("c", 1_900_000)]);
    let got = decide_with(
        &c,
        &banner_request(r#","bidfloor":1.0"#, ""),
        Some("ex-a"),
        &shaded,
    );
    assert_eq!(got, vec![Bid("c", 1_600_000)]);
}

#[test]
fn a_floor_markup_bids_the_floor_times_it_capped_at_the_value() {
    let c = banner_campaign("c", 2_000_000, "", "").replace(
        "base_cpm_micros = 2000000",
        "base_cpm_micros = 2000000\nfloor_markup_ppm = 1_100_000",
    );
    assert!(c.contains("floor_markup_ppm"), "{c}");
    let cases: &[(&str, Expect)] = &[
        (r#","bidfloor":1.0"#, Bid("c", 1_100_000)),
        // 1.9 × 1.1 = 2.09, above the value: the value.
        (r#","bidfloor":1.9"#, Bid("c", 2_000_000)),
        (r#","bidfloor":2.5"#, NoBid(BelowFloor)),
        // No floor: the shaded value (shading 1.0 here).
        ("", Bid("c", 2_000_000)),
    ];
    for (imp, want) in cases {
        assert_eq!(&decide(&c, &banner_request(imp, "")), want, "{imp}");
    }
    let config = |markup: &str| {
        Config::from_text(
            Path::new("test.toml"),
            format!(
                "[notice]\nbase_url = \"https://b.test/n\"\nhmac_key_file = \"k\"\n{}",
                banner_campaign("c", 2_000_000, "", "").replace(
                    "base_cpm_micros = 2000000",
                    &format!("base_cpm_micros = 2000000\nfloor_markup_ppm = {markup}")
                )
            ),
        )
    };
    let refused = format!("{:?}", config("900_000").unwrap_err());
    assert!(refused.contains("floor_markup_ppm"), "{refused}");
}

#[test]
fn prices_are_capped_and_the_best_campaign_wins() {
    let campaigns = banner_campaign("cheap", 1_000_000, "", "")
        + &banner_campaign("rich", 50_000_000, "", "")
        + &banner_campaign("mid", 3_000_000, "", "");
    // rich is capped at its max_bid_cpm_micros (10.00).
    assert_eq!(
        decide(&campaigns, &banner_request("", "")),
        Bid("rich", 10_000_000)
    );
}

#[test]
fn deals_and_private_auctions() {
    let deal = r#"deals_only = true
  [[campaign.targeting.deal]]
  id = "D1"
  floor_cpm_micros = 2_500_000"#;
    let c = banner_campaign("c", 4_000_000, deal, "");
    let pmp = |deals: &str, private: u8| {
        format!(r#","pmp":{{"private_auction":{private},"deals":[{deals}]}}"#)
    };
    let cases: &[(String, Expect)] = &[
        (pmp(r#"{"id":"D1","bidfloor":3.0}"#, 1), Bid("c", 4_000_000)),
        (pmp(r#"{"id":"D1","bidfloor":5.0}"#, 1), NoBid(BelowFloor)),
        (
            pmp(r#"{"id":"D1","bidfloor":3.0,"wseat":["seat-1"]}"#, 1),
            Bid("c", 4_000_000),
        ),
        (
            pmp(r#"{"id":"D1","bidfloor":3.0,"wseat":["other"]}"#, 1),
            NoBid(DealRequired),
        ),
        (pmp(r#"{"id":"D2","bidfloor":1.0}"#, 1), NoBid(DealRequired)),
        (pmp(r#"{"id":"D2","bidfloor":1.0}"#, 0), NoBid(NoDeal)),
        (String::new(), NoBid(NoDeal)),
    ];
    for (imp_extra, want) in cases {
        assert_eq!(
            &decide(&c, &banner_request(imp_extra, "")),
            want,
            "{imp_extra}"
        );
    }
    // Our own deal floor above our value: no bid even when the exchange floor is low.
    let high = banner_campaign("c", 2_000_000, &deal.replace("2_500_000", "3_000_000"), "");
    assert_eq!(
        decide(
            &high,
            &banner_request(&pmp(r#"{"id":"D1","bidfloor":0.1}"#, 1), "")
        ),
        NoBid(BelowFloor)
    );
    // An open-auction campaign does not bid into a private auction without its deal.
    let open = banner_campaign("o", 2_000_000, "", "");
    assert_eq!(
        decide(&open, &banner_request(&pmp(r#"{"id":"D1"}"#, 1), "")),
        NoBid(DealRequired)
    );
    assert_eq!(
        decide(&open, &banner_request(&pmp(r#"{"id":"D1"}"#, 0), "")),
        Bid("o", 2_000_000)
    );
}

/// TC strings made by IAB Europe's reference encoder (`tests/consent/make_strings.mjs`).
fn consent_strings() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/consent/strings.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn consent_string(kind: &str, name: &str) -> String {
    let all = consent_strings();
    let found = all[kind]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name);
    found.unwrap_or_else(|| panic!("no {kind} case {name}"))["string"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn consent_in_both_openrtb_locations() {
    let c = banner_campaign("c", 2_000_000, "require_consent = true", "");
    let granted = consent_string("tcf", "all_granted");
    let refused = consent_string("tcf", "refuse_all");
    let cases: &[(String, Expect)] = &[
        (String::new(), Bid("c", 2_000_000)),
        (r#","regs":{"gdpr":1}"#.into(), NoBid(NoConsent)),
        (
            format!(r#","regs":{{"gdpr":1}},"user":{{"consent":"{granted}"}}"#),
            Bid("c", 2_000_000),
        ),
        (
            format!(r#","regs":{{"gdpr":1}},"user":{{"consent":"{refused}"}}"#),
            NoBid(NoVendorConsent),
        ),
        // IAB's public example string: a TC string that consents to nothing.
        (
            r#","regs":{"gdpr":1},"user":{"consent":"CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA"}"#
                .into(),
            NoBid(NoVendorConsent),
        ),
        (r#","regs":{"ext":{"gdpr":1}}"#.into(), NoBid(NoConsent)),
        (
            format!(r#","regs":{{"ext":{{"gdpr":1}}}},"user":{{"ext":{{"consent":"{granted}"}}}}"#),
            Bid("c", 2_000_000),
        ),
        // Cut short: does not decode, so no consent.
        (
            r#","regs":{"ext":{"gdpr":1}},"user":{"ext":{"consent":"CPXxRfAPXxRfAAfKABENB"}}"#
                .into(),
            NoBid(NoConsent),
        ),
        (r#","regs":{"gdpr":0}"#.into(), Bid("c", 2_000_000)),
        (r#","regs":{"us_privacy":"1YYN"}"#.into(), NoBid(UsOptOut)),
        (r#","regs":{"ext":{"us_privacy":"1YYN"}}"#.into(), NoBid(UsOptOut)),
        (r#","regs":{"us_privacy":"1YNN"}"#.into(), Bid("c", 2_000_000)),
        (r#","regs":{"us_privacy":"1YXN"}"#.into(), NoBid(NoConsent)),
    ];
    for (extra, want) in cases {
        assert_eq!(&decide(&c, &banner_request("", extra)), want, "{extra}");
    }
    // A campaign without the requirement is not affected.
    let free = banner_campaign("f", 2_000_000, "", "");
    assert_eq!(
        decide(&free, &banner_request("", r#","regs":{"gdpr":1}"#)),
        Bid("f", 2_000_000)
    );
}

/// The TC string decoder reads back exactly what IAB Europe's reference encoder wrote,
/// and the GPP decoder the US sections' opt-outs.
#[test]
fn reference_consent_strings_decode_to_what_was_encoded() {
    use std::convert::TryFrom;
    use std::str::FromStr;
    let all = consent_strings();
    let ids = |v: &serde_json::Value| -> Vec<u16> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u16)
            .collect()
    };
    let small = |v: &[u8]| v.iter().map(|&x| u16::from(x)).collect::<Vec<_>>();
    for case in all["tcf"].as_array().unwrap() {
        let (name, e) = (&case["name"], &case["encoded"]);
        let tc = lib_tcstring::TcModelV2::try_from(case["string"].as_str().unwrap()).unwrap();
        assert_eq!(
            small(&tc.purposes_consent),
            ids(&e["purpose_consents"]),
            "{name}"
        );
        assert_eq!(
            small(&tc.purposes_li_transparency),
            ids(&e["purpose_legitimate_interests"]),
            "{name}"
        );
        assert_eq!(
            small(&tc.special_feature_opt_ins),
            ids(&e["special_feature_optins"]),
            "{name}"
        );
        assert_eq!(tc.vendors_consent, ids(&e["vendor_consents"]), "{name}");
        assert_eq!(
            tc.vendors_li_consent,
            ids(&e["vendor_legitimate_interests"]),
            "{name}"
        );
        let restrictions = e["publisher_restrictions"].as_array().unwrap();
        assert_eq!(
            tc.publisher_restrictions.len(),
            restrictions.len(),
            "{name}"
        );
        for (got, want) in tc.publisher_restrictions.iter().zip(restrictions) {
            assert_eq!(
                u64::from(got.purpose_id),
                want["purpose"].as_u64().unwrap(),
                "{name}"
            );
            assert_eq!(got.vendor_list, ids(&want["vendors"]), "{name}");
        }
    }
    let mut us_sections = 0;
    for case in all["gpp"].as_array().unwrap() {
        let gpp = iab_gpp::v1::GPPString::from_str(case["string"].as_str().unwrap()).unwrap();
        for (section, fields) in case["encoded"]["sections"].as_object().unwrap() {
            let opt_out = |field: &str| fields[field].as_u64();
            let decoded = match (
                section.as_str(),
                gpp.decode_all_sections().remove(0).unwrap(),
            ) {
                ("usnat", iab_gpp::sections::Section::UsNat(s)) => match s.core {
                    iab_gpp::sections::usnat::Core::V2(c) => [
                        c.sale_opt_out as u64,
                        c.sharing_opt_out as u64,
                        c.targeted_advertising_opt_out as u64,
                    ],
                    other => panic!("{other:?}"),
                },
                ("usca", iab_gpp::sections::Section::UsCa(s)) => {
                    [s.core.sale_opt_out as u64, s.core.sharing_opt_out as u64, 0]
                }
                _ => continue,
            };
            let want = [
                opt_out("SaleOptOut").unwrap(),
                opt_out("SharingOptOut").unwrap(),
                opt_out("TargetedAdvertisingOptOut").unwrap_or(0),
            ];
            assert_eq!(decoded, want, "{}", case["name"]);
            us_sections += 1;
        }
    }
    assert!(us_sections >= 5, "{us_sections} US sections checked");
}

/// Every string from the reference encoders against campaigns with different needs.
/// Columns: personalised ads (the default [1, 2, 3, 4, 7], every US opt-out), basic
/// ads [1, 2, 7], legitimate-interest purposes [2, 7] with no US opt-out, basic ads
/// with precise geolocation, US sale only, US targeted advertising only, contextual.
/// `.` bids; `C` no consent; `V` no vendor consent; `P` no purpose consent; `U` US
/// opt-out.
#[test]
fn consent_strings_decide_by_what_each_campaign_needs() {
    let needs = [
        "require_consent = true",
        "require_consent = true\n  consent_purposes = [1, 2, 7]",
        "require_consent = true\n  consent_purposes = [2, 7]\n  us_opt_outs = []",
        "require_consent = true\n  consent_purposes = [1, 2, 7]\n  consent_special_features = [1]",
        "require_consent = true\n  consent_purposes = []\n  us_opt_outs = [\"sale\"]",
        "require_consent = true\n  consent_purposes = []\n  us_opt_outs = [\"targeted_advertising\"]",
        "",
    ];
    let tcf = |name: &str| {
        format!(
            r#","regs":{{"gdpr":1}},"user":{{"consent":"{}"}}"#,
            consent_string("tcf", name)
        )
    };
    let gpp = |name: &str, sid: &str| {
        format!(
            r#","regs":{{"gpp":"{}","gpp_sid":[{sid}]}}"#,
            consent_string("gpp", name)
        )
    };
    let rows: Vec<(String, &str)> = vec![
        (tcf("all_granted"), "......."),
        (tcf("refuse_all"), "VVVV..."),
        (tcf("vendor_missing"), "VVVV..."),
        (tcf("basic_ads_only"), "P..P..."),
        (tcf("legitimate_interest_only"), "PP.P..."),
        (tcf("restriction_not_allowed"), "P......"),
        (tcf("restriction_require_consent"), "PPPP..."),
        (tcf("no_special_feature"), "...P..."),
        (tcf("with_disclosed_vendors"), "......."),
        (r#","regs":{"gdpr":1},"user":{"consent":"not a tc string"}"#.into(), "CCCC..."),
        (gpp("gpp_tcf_all_granted", "2"), "......."),
        (gpp("gpp_tcf_refuse_all", "2"), "VVVV..."),
        (gpp("gpp_usnat_sale_opt_out", "7"), "UU.UU.."),
        // The same string where only California's section applies: usnat does not.
        (gpp("gpp_usnat_sale_opt_out", "8"), "......."),
        (gpp("gpp_usnat_no_opt_out", "7"), "......."),
        (gpp("gpp_usnat_targeted_opt_out", "7"), "UU.U.U."),
        (gpp("gpp_usca_sharing_opt_out", "8"), "UU.U..."),
        (gpp("gpp_usnat_gpc", "7"), "UU.UU.."),
        (gpp("gpp_tcf_and_usnat", "2,7"), "UU.UU.."),
        (gpp("gpp_uspv1_opt_out", "6"), "UU.UU.."),
        // IAB's public example: TCF refusing everything, US Privacy not opted out.
        (
            r#","regs":{"gpp":"DBACNY~CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA~1YNN","gpp_sid":[2,6]}"#.into(),
            "VVVV...",
        ),
        (r#","regs":{"gpp":"DBABLA~!!","gpp_sid":[7]}"#.into(), "CC.CCC."),
    ];
    for (extra, want) in &rows {
        let got: String = needs
            .iter()
            .map(|targeting| {
                match decide(
                    &banner_campaign("c", 2_000_000, targeting, ""),
                    &banner_request("", extra),
                ) {
                    Bid(..) => '.',
                    NoBid(NoConsent) => 'C',
                    NoBid(NoVendorConsent) => 'V',
                    NoBid(NoPurposeConsent) => 'P',
                    NoBid(UsOptOut) => 'U',
                    NoBid(other) => panic!("{extra}: {other}"),
                }
            })
            .collect();
        assert_eq!(&got, want, "{extra}");
    }
}

/// `[ivt]` lists in a fresh folder: data centres 203.0.113.0/24 and 2001:db8:dc::/48,
/// blocked address 198.51.100.7, blocked user-agent fragment "EvilAgent".
fn ivt_lists(dir: &testkit::TempDir) -> String {
    let write = |name: &str, text: &str| {
        let path = dir.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    format!(
        "\n[ivt]\ndatacenter_ranges_file = \"{}\"\nip_blocklist_file = \"{}\"\nua_blocklist_file = \"{}\"\n",
        write("datacenters.txt", "# cloud providers\n203.0.113.0/24\n\n2001:db8:dc::/48  # v6\n"),
        write("ips.txt", "198.51.100.7\n"),
        write("ua.txt", "EvilAgent\n"),
    )
}

fn request_from(device: &str) -> String {
    format!(
        r#"{{"id":"r","imp":[{{"id":"1","banner":{{"w":300,"h":250}}}}],"site":{{"domain":"news.example.com"}},"device":{{{device}}}}}"#
    )
}

/// Each kind of invalid traffic is refused with its reason (an OpenRTB code where one
/// exists), unless the campaign allows that kind; honest devices, including a phone
/// whose brand ends in "bot", still get bids.
#[test]
fn invalid_traffic_is_refused_before_pricing_unless_the_campaign_allows_it() {
    let dir = testkit::TempDir::new("ivt");
    let lists = ivt_lists(&dir);
    let iphone =
        r#""ua":"Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15""#;
    let rows: &[(String, Option<(&str, NoBidReason)>)] = &[
        (format!(r#""ip":"192.0.2.1",{iphone},"os":"iOS","devicetype":4"#), None),
        (r#""ip":"192.0.2.1","ua":"Mozilla/5.0 (Linux; Android 13; CUBOT KINGKONG 9) Chrome/120.0","os":"Android""#.into(), None),
        (r#""ip":"not an address""#.into(), None),
        (r#""ip":"203.0.113.9""#.into(), Some(("datacenter", IvtDatacenter))),
        (r#""ipv6":"2001:db8:dc::1""#.into(), Some(("datacenter", IvtDatacenter))),
        (r#""ip":"198.51.100.7""#.into(), Some(("blocklist", IvtBlocklist))),
        (r#""ua":"Mozilla/5.0 EvilAgent/1.0""#.into(), Some(("blocklist", IvtBlocklist))),
        (
            r#""ua":"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)""#.into(),
            Some(("crawler", IvtCrawler)),
        ),
        (r#""ua":"curl/8.5.0""#.into(), Some(("crawler", IvtCrawler))),
        (format!(r#"{iphone},"os":"Android""#), Some(("inconsistent_device", IvtInconsistentDevice))),
        (r#""devicetype":2,"os":"Android""#.into(), Some(("inconsistent_device", IvtInconsistentDevice))),
    ];
    let plain = format!("{}{lists}", banner_campaign("c", 2_000_000, "", ""));
    for (device, refused) in rows {
        let request = request_from(device);
        let got = decide(&plain, &request);
        match refused {
            None => assert_eq!(got, Bid("c", 2_000_000), "{device}"),
            Some((kind, reason)) => {
                assert_eq!(got, NoBid(*reason), "{device}");
                let allows = format!(
                    "{}{lists}",
                    banner_campaign("c", 2_000_000, &format!("allow_ivt = [\"{kind}\"]"), "")
                );
                assert_eq!(
                    decide(&allows, &request),
                    Bid("c", 2_000_000),
                    "{device} with {kind} allowed"
                );
            }
        }
    }
    assert_eq!(
        (IvtCrawler.nbr(), IvtBlocklist.nbr(), IvtDatacenter.nbr()),
        (3, 4, 5)
    );
    // The checks can be turned off.
    let off = format!(
        "{}\n[ivt]\nknown_crawlers = false\ninconsistent_devices = false\n",
        banner_campaign("c", 2_000_000, "", "")
    );
    assert_eq!(
        decide(
            &off,
            &request_from(r#""ua":"curl/8.5.0","devicetype":2,"os":"Android""#)
        ),
        Bid("c", 2_000_000)
    );
}

/// What a user agent says is remembered per worker, but only for the lists it was
/// matched against: the same decider asked again under other lists matches again, and
/// repeated requests keep their verdicts (crawler, blocked, contradicting its OS).
#[test]
fn a_remembered_user_agent_verdict_follows_the_lists_it_came_from() {
    let dir = testkit::TempDir::new("ivt-ua-cache");
    let campaign = banner_campaign("c", 2_000_000, "", "");
    let plain = catalog(&campaign);
    let listed = catalog(&format!("{campaign}{}", ivt_lists(&dir)));
    let mut decider = Decider::new(&plain, Default::default(), 7);
    let static_strategy = StaticStrategy {
        shading_ppm: 1_000_000,
    };
    let mut decide_on = |catalog: &Catalog, device: &str| -> Expect {
        let budgets = Budgets::new(catalog.campaigns.iter().map(|c| c.daily_budget_micros));
        let mut parser = Parser::new();
        let mut body = request_from(device).into_bytes();
        let req = parser.parse(&mut body).expect("request parses");
        let ctx = Context {
            partner: catalog.partner_by_name("ex-a"),
            now_unix_s: MONDAY_10_30,
            user_key: None,
        };
        let decision = decider.decide(catalog, &static_strategy, &budgets, &req, ctx);
        let got = match (decision.bids.first(), decision.no_bids.first()) {
            (Some(bid), _) => Bid("c", bid.price_micros),
            (None, Some((_, reason))) => NoBid(*reason),
            (None, None) => panic!("no outcome for {device}"),
        };
        decision.release_all(&budgets);
        got
    };
    let evil = r#""ua":"Mozilla/5.0 EvilAgent/1.0""#;
    let bot = r#""ua":"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)""#;
    let iphone_on_android =
        r#""ua":"Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)","os":"Android""#;
    let steps: &[(&Catalog, &str, Expect)] = &[
        (&plain, evil, Bid("c", 2_000_000)),
        (&plain, evil, Bid("c", 2_000_000)),
        (&listed, evil, NoBid(IvtBlocklist)),
        (&listed, evil, NoBid(IvtBlocklist)),
        (&plain, evil, Bid("c", 2_000_000)),
        (&plain, bot, NoBid(IvtCrawler)),
        (&plain, bot, NoBid(IvtCrawler)),
        (&listed, bot, NoBid(IvtCrawler)),
        (&plain, iphone_on_android, NoBid(IvtInconsistentDevice)),
        (&plain, iphone_on_android, NoBid(IvtInconsistentDevice)),
    ];
    for (step, (catalog, device, want)) in steps.iter().enumerate() {
        assert_eq!(&decide_on(catalog, device), want, "step {step}: {device}");
    }
    // Matched afresh at steps 0, 2, 4, 5, 7 and 8; the others were remembered.
    assert_eq!(decider.stats().user_agent_matches.get(), 6);
}

/// A blocklisted address among a million is found; the set takes 8 bytes per entry.
#[test]
fn a_blocked_address_among_a_million_is_refused() {
    let dir = testkit::TempDir::new("ivt-million");
    let mut text = String::with_capacity(16 * 1_000_000);
    // Every fourth address of 10.0.0.0/8 from 10.0.0.0: 1,000,000 separate entries.
    for i in 0..1_000_000u32 {
        let a = u32::from(std::net::Ipv4Addr::new(10, 0, 0, 0)) + i * 4;
        text.push_str(&std::net::Ipv4Addr::from(a).to_string());
        text.push('\n');
    }
    let path = dir.0.join("blocked.txt");
    std::fs::write(&path, text).unwrap();
    let campaigns = format!(
        "{}\n[ivt]\nip_blocklist_file = \"{}\"\n",
        banner_campaign("c", 2_000_000, "", ""),
        path.display()
    );
    let catalog = catalog(&campaigns);
    assert_eq!(catalog.ivt.blocked_ips.len(), 1_000_000);
    let bytes = catalog.ivt.blocked_ips.heap_bytes();
    assert!(
        bytes <= 8 * 1_000_000,
        "{bytes} bytes for a million addresses"
    );
    eprintln!("a million blocked addresses: {bytes} bytes");
    // The 500,000th entry, and its neighbour that is not listed.
    let listed =
        std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 0, 0, 0)) + 499_999 * 4);
    let neighbour = std::net::Ipv4Addr::from(u32::from(listed) + 1);
    assert_eq!(
        decide(&campaigns, &request_from(&format!(r#""ip":"{listed}""#))),
        NoBid(IvtBlocklist)
    );
    assert_eq!(
        decide(&campaigns, &request_from(&format!(r#""ip":"{neighbour}""#))),
        Bid("c", 2_000_000)
    );
}

/// The error compiling `config`, which must fail (`why`).
fn compile_error(config: &Config, why: &str) -> String {
    match Catalog::compile(config) {
        Ok(_) => panic!("compiled despite {why}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_bad_list_entry_names_its_file_and_line() {
    let dir = testkit::TempDir::new("ivt-bad");
    let path = dir.0.join("datacenters.txt");
    std::fs::write(&path, "203.0.113.0/24\n# ok\n203.0.113.0/33\n").unwrap();
    let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo-notice.key");
    let text = format!(
        "[notice]\nbase_url = \"https://b.test/n\"\nhmac_key_file = \"{}\"\n[ivt]\ndatacenter_ranges_file = \"{}\"\n",
        key.display(),
        path.display()
    );
    let config = Config::from_text(Path::new("test.toml"), text).unwrap();
    let error = compile_error(&config, "a bad entry");
    let want = format!(
        "{}:3: ivt.datacenter_ranges_file: `203.0.113.0/33` is not an IP address or network",
        path.display()
    );
    assert!(error.starts_with(&want), "{error}");
    assert!(
        error.contains("fix: one address or CIDR per line"),
        "{error}"
    );
    std::fs::remove_file(&path).unwrap();
    let error = compile_error(&config, "a missing list");
    assert!(
        error.starts_with(&format!("{}: cannot read", path.display())),
        "{error}"
    );
}

#[test]
fn coppa_is_refused_unless_allowed() {
    let req = banner_request("", r#","regs":{"coppa":1}"#);
    assert_eq!(
        decide(&banner_campaign("c", 2_000_000, "", ""), &req),
        NoBid(Coppa)
    );
    assert_eq!(
        decide(
            &banner_campaign("c", 2_000_000, "allow_coppa = true", ""),
            &req
        ),
        Bid("c", 2_000_000)
    );
}

#[test]
fn supply_chain_rules_in_both_openrtb_locations() {
    let strict = banner_campaign(
        "c",
        2_000_000,
        "[campaign.targeting.supply_chain]\n  require_complete = true\n  allowed_sellers = [\"good.com\", \"ssp.com:77\"]",
        "",
    );
    let chain = |complete: u8, nodes: &str| {
        format!(r#"{{"complete":{complete},"ver":"1.0","nodes":[{nodes}]}}"#)
    };
    let cases: Vec<(String, Expect)> = vec![
        (String::new(), NoBid(SupplyChainIncomplete)),
        (
            format!(
                r#","source":{{"schain":{}}}"#,
                chain(1, r#"{"asi":"good.com","sid":"1","hp":1}"#)
            ),
            Bid("c", 2_000_000),
        ),
        (
            format!(
                r#","source":{{"ext":{{"schain":{}}}}}"#,
                chain(1, r#"{"asi":"good.com","sid":"1","hp":1}"#)
            ),
            Bid("c", 2_000_000),
        ),
        (
            format!(
                r#","source":{{"schain":{}}}"#,
                chain(0, r#"{"asi":"good.com","sid":"1","hp":1}"#)
            ),
            NoBid(SupplyChainIncomplete),
        ),
        (
            format!(
                r#","source":{{"schain":{}}}"#,
                chain(
                    1,
                    r#"{"asi":"good.com","sid":"1"},{"asi":"evil.com","sid":"2"}"#
                )
            ),
            NoBid(SellerNotAllowed),
        ),
        (
            format!(
                r#","source":{{"schain":{}}}"#,
                chain(1, r#"{"asi":"ssp.com","sid":"77"}"#)
            ),
            Bid("c", 2_000_000),
        ),
        (
            format!(
                r#","source":{{"schain":{}}}"#,
                chain(1, r#"{"asi":"ssp.com","sid":"78"}"#)
            ),
            NoBid(SellerNotAllowed),
        ),
    ];
    for (extra, want) in &cases {
        assert_eq!(
            &decide(&strict, &banner_request("", extra)),
            want,
            "{extra}"
        );
    }
}

#[test]
fn block_lists_against_creatives() {
    let c = banner_campaign("c", 2_000_000, "", "attr = [6]\n  cat = [\"IAB25-3\"]");
    let cases: &[(&str, &str, Expect)] = &[
        ("", "", Bid("c", 2_000_000)),
        ("", r#","bcat":["IAB25"]"#, NoBid(BlockedCategory)),
        ("", r#","bcat":["IAB2"]"#, Bid("c", 2_000_000)),
        (
            "",
            r#","bcat":["IAB25-3","IAB25-2"]"#,
            NoBid(BlockedCategory),
        ),
        ("", r#","bcat":["IAB25-2"]"#, Bid("c", 2_000_000)),
        ("", r#","badv":["C.example"]"#, NoBid(BlockedAdvertiser)),
        (
            r#","banner":{"w":300,"h":250,"battr":[6]}"#,
            "",
            NoBid(BlockedAttribute),
        ),
    ];
    for (imp_extra, extra, want) in cases {
        let req = if imp_extra.is_empty() {
            banner_request("", extra)
        } else {
            format!(
                r#"{{"id":"r","imp":[{{"id":"1"{imp_extra}}}],"site":{{"domain":"a.com"}}{extra}}}"#
            )
        };
        assert_eq!(&decide(&c, &req), want, "{imp_extra} {extra}");
    }
}

#[test]
fn a_tier2_block_does_not_block_the_tier1_category() {
    let c = banner_campaign("c", 2_000_000, "", "cat = [\"IAB25\"]");
    assert_eq!(
        decide(&c, &banner_request("", r#","bcat":["IAB25-3"]"#)),
        Bid("c", 2_000_000)
    );
    assert_eq!(
        decide(&c, &banner_request("", r#","bcat":["IAB25"]"#)),
        NoBid(BlockedCategory)
    );
}

#[test]
fn video_creatives_fit_by_mime_and_duration() {
    let video = r#"
[[campaign]]
id = "v"
advertiser = "adv"
daily_budget_micros = 1_000_000_000
max_bid_cpm_micros = 20_000_000
base_cpm_micros = 10_000_000
  [[campaign.creative]]
  id = "v30"
  format = "video"
  duration_s = 30
  mime = "video/mp4"
  adomain = ["v.example"]
  adm = "<VAST/>"
"#;
    let req = |video: &str| {
        format!(r#"{{"id":"r","imp":[{{"id":"1","video":{video}}}],"site":{{"domain":"a.com"}}}}"#)
    };
    assert_eq!(
        decide(
            video,
            &req(r#"{"mimes":["video/mp4"],"minduration":5,"maxduration":30}"#)
        ),
        Bid("v", 10_000_000)
    );
    assert_eq!(
        decide(video, &req(r#"{"mimes":["video/webm"]}"#)),
        NoBid(NoMatchingCreative)
    );
    assert_eq!(
        decide(video, &req(r#"{"mimes":["video/mp4"],"maxduration":15}"#)),
        NoBid(NoMatchingCreative)
    );
    assert_eq!(
        decide(video, &banner_request("", "")),
        NoBid(MediaNotTargeted)
    );
}

#[test]
fn strategy_pause_and_pacing() {
    let c = banner_campaign("c", 2_000_000, "", "");
    let req = banner_request("", "");
    assert_eq!(
        decide_with(&c, &req, Some("ex-a"), &PausedStrategy),
        vec![NoBid(Paused)]
    );
    assert_eq!(
        decide_with(&c, &req, Some("ex-a"), &NeverPace),
        vec![NoBid(Paced)]
    );
}

#[test]
fn budget_exhaustion_stops_bids_and_falls_back_to_the_next_campaign() {
    let tiny = banner_campaign("rich", 5_000_000, "", "").replace("1_000_000_000", "12_000");
    let campaigns = tiny + &banner_campaign("poor", 1_000_000, "", "");
    let catalog = catalog(&campaigns);
    let budgets = Budgets::new(catalog.campaigns.iter().map(|c| c.daily_budget_micros));
    let strategy = StaticStrategy {
        shading_ppm: 1_000_000,
    };
    let mut parser = Parser::new();
    let mut decider = Decider::new(&catalog, Default::default(), 1);
    let ctx = Context {
        partner: None,
        now_unix_s: MONDAY_10_30,
        user_key: None,
    };
    let mut winners = Vec::new();
    for _ in 0..4 {
        let mut body = banner_request("", "").into_bytes();
        let req = parser.parse(&mut body).unwrap();
        let decision = decider.decide(&catalog, &strategy, &budgets, &req, ctx);
        winners.push(catalog.campaigns[decision.bids[0].campaign].id.clone());
        // Keep the reservations: they are money committed to bids in flight.
        let held: Vec<_> = decision.bids.drain(..).collect();
        std::mem::forget(held);
    }
    // 12_000 micros buys two 5.00 CPM impressions (5_000 each); then "poor" bids.
    assert_eq!(winners, ["rich", "rich", "poor", "poor"]);
    assert_eq!(budgets.snapshot(0).reserved_micros, 10_000);

    let only_tiny = banner_campaign("rich", 5_000_000, "", "").replace("1_000_000_000", "4_000");
    assert_eq!(
        decide(&only_tiny, &banner_request("", "")),
        NoBid(BudgetExhausted)
    );
}

#[test]
fn multi_imp_requests_get_a_reason_per_imp() {
    let c = banner_campaign("c", 2_000_000, "", "");
    let req = r#"{"id":"r","imp":[{"id":"1","banner":{"w":300,"h":250}},{"id":"2","banner":{"w":970,"h":250}},{"id":"3","video":{"mimes":["video/mp4"]}}],
        "site":{"domain":"a.com"}}"#;
    let strategy = StaticStrategy {
        shading_ppm: 1_000_000,
    };
    let got = decide_with(&c, req, None, &strategy);
    // 970x250: no campaign has a creative of that size, so the index refuses it.
    assert_eq!(
        got,
        vec![
            Bid("c", 2_000_000),
            NoBid(SizeNotTargeted),
            NoBid(MediaNotTargeted)
        ]
    );
}

#[test]
fn disabled_campaigns_never_bid() {
    let c = banner_campaign("c", 2_000_000, "", "").replace(
        "advertiser = \"adv\"",
        "advertiser = \"adv\"\nenabled = false",
    );
    assert_eq!(decide(&c, &banner_request("", "")), NoBid(NoActiveCampaign));
}

#[test]
fn evaluation_stops_once_no_campaign_left_can_win() {
    // rich bids 10.00; mid and cheap can bid at most 4.50 and 1.50 (value × 1.5).
    let campaigns = banner_campaign("cheap", 1_000_000, "", "")
        + &banner_campaign("mid", 3_000_000, "", "")
        + &banner_campaign("rich", 50_000_000, "", "");
    let catalog = catalog(&campaigns);
    let budgets = Budgets::new(catalog.campaigns.iter().map(|c| c.daily_budget_micros));
    let stats = std::sync::Arc::new(bidder::decide::DecisionStats::default());
    let mut decider = Decider::new(&catalog, std::sync::Arc::clone(&stats), 1);
    let mut parser = Parser::new();
    let mut body = banner_request("", "").into_bytes();
    let req = parser.parse(&mut body).unwrap();
    let strategy = StaticStrategy {
        shading_ppm: 1_000_000,
    };
    let ctx = Context {
        partner: None,
        now_unix_s: MONDAY_10_30,
        user_key: None,
    };
    let decision = decider.decide(&catalog, &strategy, &budgets, &req, ctx);
    assert_eq!(catalog.campaigns[decision.bids[0].campaign].id, "rich");
    assert_eq!(
        stats.candidates.get(),
        1,
        "mid and cheap cannot beat 10.00 and are not evaluated"
    );
    decision.release_all(&budgets);

    // When rich cannot afford its bid, the search goes on to the next best.
    let broke = campaigns.replace(
        "id = \"rich\"\nadvertiser = \"adv\"\ndaily_budget_micros = 1_000_000_000",
        "id = \"rich\"\nadvertiser = \"adv\"\ndaily_budget_micros = 1",
    );
    assert_eq!(
        decide(&broke, &banner_request("", "")),
        Bid("mid", 3_000_000)
    );
}

// ---- frequency caps ------------------------------------------------------------------

/// Campaign "fc" capped at 2 impressions per user per `period`, with `frequency`
/// (the `[frequency]` section's lines).
fn capped_catalog(period: &str, frequency: &str) -> Catalog {
    catalog(&format!(
        r#"
[frequency]
{frequency}
[[campaign]]
id = "fc"
advertiser = "adv"
daily_budget_micros = 1_000_000_000
max_bid_cpm_micros = 10_000_000
base_cpm_micros = 2_000_000
frequency_cap = 2
frequency_period = "{period}"
  [[campaign.creative]]
  id = "fc-cr"
  format = "banner"
  w = 300
  h = 250
  adomain = ["fc.example"]
  adm = "<b>fc</b>"
"#
    ))
}

/// What "fc" does for `request` after `prior` wins (source, id, count, how many ms
/// before now they were counted).
fn decide_capped(
    period: &str,
    frequency: &str,
    request: &str,
    prior: &[(UserSource, &str, u32, u64)],
) -> Expect {
    let catalog = capped_catalog(period, frequency);
    let now_ms = MONDAY_10_30 * 1_000;
    let c = &catalog.campaigns[0];
    let budgets = Budgets::new([c.daily_budget_micros]);
    // The campaign's periods start an hour back, so prior wins can fall in the last hour.
    let configured_ms = now_ms - 3_600_000;
    budgets.configure(0, &c.id, c.budget_limits(), &c.calendar, configured_ms);
    budgets.set_frequency_cap(0, c.frequency_cap);
    for &(source, id, count, ago_ms) in prior {
        let at_ms = now_ms - ago_ms;
        budgets.roll(at_ms);
        assert!(budgets.count_impressions(0, user_key(source, id), count, at_ms));
    }
    budgets.roll(now_ms);
    let mut parser = Parser::new();
    let mut body = request.as_bytes().to_vec();
    let req = parser.parse(&mut body).expect("request");
    let ctx = Context {
        partner: None,
        now_unix_s: MONDAY_10_30,
        user_key: request_user(&req, &catalog.settings.user_sources),
    };
    let strategy = StaticStrategy {
        shading_ppm: 1_000_000,
    };
    let mut decider = Decider::new(&catalog, Default::default(), 7);
    let decision = decider.decide(&catalog, &strategy, &budgets, &req, ctx);
    let got = match (decision.bids.first(), decision.no_bids.first()) {
        (Some(bid), _) => Expect::Bid(leak(&catalog.campaigns[bid.campaign].id), bid.price_micros),
        (None, Some(&(_, reason))) => Expect::NoBid(reason),
        (None, None) => panic!("an imp without an outcome"),
    };
    decision.release_all(&budgets);
    got
}

#[test]
fn frequency_caps_count_each_user_per_period() {
    use UserSource::{BuyerUid, DeviceIfa, UserId};
    let user = |members: &str| banner_request("", &format!(r#","user":{{{members}}}"#));
    let alice = user(r#""buyeruid":"alice""#);
    let ids = user(r#""id":"u1","buyeruid":"alice""#);
    let bob = user(r#""buyeruid":"bob""#);
    let nobody = banner_request("", "");
    let ifa = banner_request("", r#","app":{"id":"a"}"#)
        .replace(r#""os":"iOS""#, r#""os":"iOS","ifa":"AAAA-1""#);
    let bid = Expect::Bid("fc", 2_000_000);
    let capped = Expect::NoBid(NoBidReason::FrequencyCapped);
    let hour_ago = 3_000_000; // 50 minutes: the hour before, the same day
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        &'a [(UserSource, &'a str, u32, u64)],
        &'a Expect,
        &'a str,
    );
    #[rustfmt::skip]
    let cases: &[Case] = &[
        ("day", "", &alice, &[], &bid, "a new user"),
        ("day", "", &alice, &[(BuyerUid, "alice", 1, 0)], &bid, "under the cap"),
        ("day", "", &alice, &[(BuyerUid, "alice", 2, 0)], &capped, "at the cap"),
        ("day", "", &bob, &[(BuyerUid, "alice", 2, 0)], &bid, "another user"),
        ("day", "", &nobody, &[], &capped, "no user: no bid by default"),
        ("day", r#"without_user = "bid""#, &nobody, &[], &bid, "no user, configured to bid"),
        ("day", "", &ids, &[(BuyerUid, "alice", 2, 0)], &capped, "buyeruid first by default"),
        ("day", r#"user_keys = ["user.id"]"#, &ids, &[(BuyerUid, "alice", 2, 0)], &bid, "user.id only"),
        ("day", r#"user_keys = ["user.id"]"#, &ids, &[(UserId, "u1", 2, 0)], &capped, "user.id counted"),
        ("day", "", &ifa, &[(DeviceIfa, "AAAA-1", 2, 0)], &capped, "device.ifa"),
        ("day", "", &alice, &[(BuyerUid, "alice", 2, hour_ago)], &capped, "earlier today counts"),
        ("hour", "", &alice, &[(BuyerUid, "alice", 2, hour_ago)], &bid, "last hour lapsed"),
        ("hour", "", &alice, &[(BuyerUid, "alice", 2, 0)], &capped, "this hour counts"),
    ];
    for &(period, frequency, request, prior, expected, why) in cases {
        assert_eq!(
            &decide_capped(period, frequency, request, prior),
            expected,
            "{why}: per {period}, [frequency] {frequency:?}, prior {prior:?}"
        );
    }
}

/// Shades one market segment to half, every other at 1.0.
struct HalfIn(SegmentKey);
impl StrategySource for HalfIn {
    fn campaign(&self, idx: usize, c: &bidder::catalog::Campaign) -> CampaignStrategy {
        StaticStrategy {
            shading_ppm: 1_000_000,
        }
        .campaign(idx, c)
    }

    fn campaign_in(
        &self,
        idx: usize,
        c: &bidder::catalog::Campaign,
        segment: SegmentKey,
    ) -> CampaignStrategy {
        CampaignStrategy {
            shading_ppm: if segment == self.0 {
                500_000
            } else {
                1_000_000
            },
            ..self.campaign(idx, c)
        }
    }
}

#[test]
fn an_imp_is_priced_with_its_market_segments_shading() {
    let c = banner_campaign("c", 2_000_000, "", "");
    // The banner request: a site, 300×250, to a device in Germany.
    let site_de = SegmentKey::new(Channel::Site, 300, 250, Some("DEU"));
    let req = banner_request("", "");
    assert_eq!(
        decide_with(&c, &req, Some("ex-a"), &HalfIn(site_de)),
        vec![Bid("c", 1_000_000)]
    );
    for other in [
        SegmentKey::new(Channel::App, 300, 250, Some("DEU")),
        SegmentKey::new(Channel::Site, 320, 50, Some("DEU")),
        SegmentKey::new(Channel::Site, 300, 250, Some("FRA")),
    ] {
        assert_eq!(
            decide_with(&c, &req, Some("ex-a"), &HalfIn(other)),
            vec![Bid("c", 2_000_000)],
            "{other}"
        );
    }
    // The bid carries its segment, for the notice's count.
    let catalog = catalog(&c);
    let budgets = Budgets::new(catalog.campaigns.iter().map(|c| c.daily_budget_micros));
    let mut parser = Parser::new();
    let mut body = req.into_bytes();
    let parsed = parser.parse(&mut body).unwrap();
    let mut decider = Decider::new(&catalog, Default::default(), 7);
    let ctx = Context {
        partner: catalog.partner_by_name("ex-a"),
        now_unix_s: MONDAY_10_30,
        user_key: None,
    };
    let decision = decider.decide(&catalog, &HalfIn(site_de), &budgets, &parsed, ctx);
    assert_eq!(decision.bids[0].segment, site_de);
    decision.release_all(&budgets);
}

#[test]
fn the_segment_is_the_first_size_of_a_format_list_or_the_video_player() {
    let mut parser = Parser::new();
    let segment = |parser: &mut Parser, json: &str| {
        let mut body = json.as_bytes().to_vec();
        let req = parser.parse(&mut body).expect("parses");
        bidder::decide::segment::segment_of(&req, &req.imps()[0])
    };
    let formats = r#"{"id":"r","imp":[{"id":"1","banner":{"format":[{"w":728,"h":90},{"w":300,"h":250}]}}],"app":{"bundle":"a.b"},"device":{"geo":{"country":"usa"}}}"#;
    assert_eq!(
        segment(&mut parser, formats),
        SegmentKey::new(Channel::App, 728, 90, Some("USA"))
    );
    let video = r#"{"id":"r","imp":[{"id":"1","video":{"mimes":["video/mp4"],"w":640,"h":360}}],"site":{"domain":"x.example"}}"#;
    assert_eq!(
        segment(&mut parser, video),
        SegmentKey::new(Channel::Site, 640, 360, None)
    );
    let native = r#"{"id":"r","imp":[{"id":"1","native":{"request":"{}"}}]}"#;
    assert_eq!(
        segment(&mut parser, native).to_string(),
        "unknown 0x0 anywhere"
    );
}
