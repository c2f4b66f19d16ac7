//! Workloads shared by the benchmark (`benches/core`) and the allocation test
//! (`tests/bid_alloc.rs`): the demo catalog, a generated catalog of many campaigns with
//! a realistic spread of targeting, the banner requests that drive them, and the
//! control thread's share of the ledger work.
//!
//! Both users measure the same thing from two sides (time and heap calls), so they must
//! see the same catalog and the same request; keeping the workload in one place makes
//! "the banner against 1,000 campaigns" mean one thing in every report.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bidder::bid::pipeline::Bidding;
use bidder::catalog::{Catalog, PartnerIdx};
use bidder::clock::DrivenClock;
use bidder::config::Config;
use bidder::decide::strategy::StaticStrategy;
use bidder::money::ledger::Ledger;
use bidder::supply::ads_txt::AdsTxt;
use bidder::supply::sellers_json::SellersJson;
use bidder::supply::{SupplyStore, View};

/// Monday 2026-11-23 10:30 UTC, ms: a fixed "now" so dayparts decide the same way on
/// every run.
pub const MONDAY_10_30_MS: u64 = testkit::MONDAY_10_30_MS;

/// Where the OpenRTB corpus lives (one definition for tests and benchmarks).
pub fn fixtures_dir() -> PathBuf {
    testkit::corpus_dir()
}

/// The IAB 2.6 spec's simple banner request (one 300×250 imp on a site).
pub fn iab_simple_banner() -> Vec<u8> {
    let path = fixtures_dir()
        .join("iab-openrtb2.x-spec/2.6_sec6_01_request_6-2-1-example-1-simple-banner.json");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A site banner as Prebid Server forwards it to a DSP today: two sizes, a floor,
/// block lists, a full device with geo, a user with extended ids, privacy
/// signals in their 2.6 places, and a complete one-hop supply chain. About 2 KiB, the
/// size of typical production banner traffic, and the request the 1,000-campaign
/// scenario is tuned for (a US desktop on a news site).
pub const PBS_SITE_BANNER: &str = r#"{
  "id": "5f0c2a4e-8d1b-4c6e-9a53-1b7de0c4f912",
  "imp": [{
    "id": "div-gpt-ad-top-1",
    "banner": {"format": [{"w": 300, "h": 250}, {"w": 300, "h": 600}], "pos": 1, "topframe": 1},
    "tagid": "dailynews-home-top-rail",
    "bidfloor": 0.45,
    "bidfloorcur": "USD",
    "secure": 1,
    "ext": {"gpid": "/1234/dailynews/home#top-rail", "data": {"pbadslot": "/1234/dailynews/home"}}
  }],
  "site": {
    "id": "site-20931",
    "name": "The Daily News",
    "domain": "www.dailynews.example",
    "page": "https://www.dailynews.example/politics/2026/11/23/budget-vote.html",
    "ref": "https://search.example/?q=budget+vote",
    "cat": ["IAB12", "IAB12-2"],
    "pagecat": ["IAB12-2"],
    "publisher": {"id": "pub-4471", "name": "Daily News Group", "domain": "dailynews.example"},
    "keywords": "politics,budget,congress"
  },
  "device": {
    "ua": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "ip": "203.0.113.77",
    "devicetype": 2,
    "make": "Microsoft",
    "os": "Windows",
    "osv": "10",
    "js": 1,
    "language": "en",
    "dnt": 0,
    "w": 1920,
    "h": 1080,
    "geo": {"country": "USA", "region": "NY", "city": "New York", "zip": "10001", "type": 2, "lat": 40.75, "lon": -73.99}
  },
  "user": {
    "id": "u-8c1f7e2a9b",
    "buyeruid": "b-6d0e4f2c71",
    "eids": [
      {"source": "liveramp.com", "uids": [{"id": "XY6104gHMhEv1RJjeCmIxYzoBymsOBVmFRAmILTyxXJR2XWPXg", "atype": 3}]},
      {"source": "uidapi.com", "uids": [{"id": "A4AAAAW4o7bKpS1xgTGlbxZ5lQm", "atype": 3}]}
    ]
  },
  "regs": {"coppa": 0, "gdpr": 0, "us_privacy": "1YNN", "gpp": "DBABLA~BVQqAAAAAgA.QA", "gpp_sid": [7]},
  "source": {
    "tid": "9d7c0bf5-2e33-4e09-8a1e-35c0d6f81b21",
    "schain": {"ver": "1.0", "complete": 1, "nodes": [{"asi": "exchange-a.example", "sid": "pub-4471", "hp": 1, "rid": "5f0c2a4e"}]}
  },
  "at": 1,
  "tmax": 120,
  "cur": ["USD"],
  "bcat": ["IAB25", "IAB26", "IAB7-39", "IAB8-18"],
  "badv": ["competitor-bank.example"],
  "ext": {"prebid": {"channel": {"name": "web", "version": "9.20"}}}
}"#;

/// The partner every scenario's traffic comes from, in both the demo and the generated
/// catalog (both list it first).
pub const EXCHANGE_A: PartnerIdx = 0;

/// The demo configuration (`examples/demo.toml`), compiled.
pub fn demo_catalog() -> Catalog {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo.toml");
    // The workload measures and checks the pipeline, not the deadline: a thread
    // preempted on a busy machine must not turn a bid into a deadline no-bid.
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .replace("deadline_cap_ms = 8", "deadline_cap_ms = 1000");
    let config =
        Config::from_text(&path, text).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
    Catalog::compile(&config).expect("demo catalog compiles")
}

/// Everything workers share, built the way `main` builds it: full budgets, the
/// configured shading, an inbox of the production size.
pub fn bidding(catalog: Catalog) -> Bidding {
    let strategy = Arc::new(StaticStrategy {
        shading_ppm: catalog.settings.default_shading_ppm,
    });
    Bidding::new(catalog, strategy, DrivenClock::at(MONDAY_10_30_MS).clock())
}

/// The control thread's ledger work, done between measured calls: take every held bid
/// out of the inbox and return its budget, as if every auction was lost. Keeps the
/// inbox from filling (a full inbox turns bids into no-bids) and the budgets from
/// running dry, so call after call measures the same path.
pub struct Control {
    ledger: Ledger,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            ledger: Ledger::new(60_000),
        }
    }
}

impl Control {
    /// Drains the inbox and expires every reservation; returns how many bids it saw.
    pub fn release_all(&mut self, bidding: &Bidding) -> usize {
        self.ledger.drain(&bidding.inbox, &bidding.budgets);
        self.ledger.expire(u64::MAX, &bidding.budgets)
    }
}

/// The size and seed of the generated book every report quotes ("1,000 campaigns").
pub const GENERATED_CAMPAIGNS: usize = 1_000;
pub const GENERATED_SEED: u64 = 0x5EED_2026;

/// Which checks of a request's trustworthiness the generated book runs besides
/// consent (which campaigns need by their targeting): the same campaigns and targeting
/// otherwise, so rows measured with each read as the checks' cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// No invalid-traffic checks (`[ivt]` all off) and no supply-chain verification.
    Off,
    /// The configuration's defaults: the built-in crawler list and the device
    /// consistency check; no supply-chain verification.
    Defaults,
    /// The defaults, and every campaign verifying the supply chain against
    /// sellers.json and ads.txt.
    VerifySupply,
}

/// A catalog of `campaigns` campaigns from [`generated_config_text`], with the default
/// checks.
pub fn generated_catalog(campaigns: usize, seed: u64) -> Catalog {
    generated_catalog_with(campaigns, seed, Trust::Defaults)
}

/// [`generated_catalog`] running the `trust` checks.
pub fn generated_catalog_with(campaigns: usize, seed: u64, trust: Trust) -> Catalog {
    let text = generated_config_text(campaigns, seed, trust);
    let config = Config::from_text(Path::new("generated.toml"), text)
        .unwrap_or_else(|e| panic!("generated config invalid: {e:?}"));
    Catalog::compile(&config).expect("generated catalog compiles")
}

/// A small deterministic generator (xorshift64*): the same seed gives the same
/// catalog on every machine, so runs compare.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// Between `least` and `most` distinct items of `pool`, in pool order.
    fn pick<'p, T>(&mut self, pool: &'p [T], least: usize, most: usize) -> Vec<&'p T> {
        let k = least + self.below((most - least + 1) as u64) as usize;
        let mut chosen = vec![false; pool.len()];
        let mut left = k.min(pool.len());
        while left > 0 {
            let i = self.below(pool.len() as u64) as usize;
            if !chosen[i] {
                chosen[i] = true;
                left -= 1;
            }
        }
        pool.iter()
            .zip(chosen)
            .filter_map(|(v, c)| c.then_some(v))
            .collect()
    }

    /// One of `pool` by weight (`(value, weight)` pairs).
    fn weighted<'p, T>(&mut self, pool: &'p [(T, u64)]) -> &'p T {
        let total: u64 = pool.iter().map(|(_, w)| w).sum();
        let mut roll = self.below(total);
        for (value, weight) in pool {
            if roll < *weight {
                return value;
            }
            roll -= weight;
        }
        unreachable!("roll is below the total weight")
    }
}

/// Countries weighted roughly by programmatic spend: the US dominates, then the big
/// European and Asia-Pacific markets.
const COUNTRIES: [(&str, u64); 15] = [
    ("USA", 30),
    ("GBR", 9),
    ("DEU", 8),
    ("CAN", 6),
    ("FRA", 6),
    ("AUS", 5),
    ("JPN", 5),
    ("BRA", 4),
    ("IND", 4),
    ("ESP", 4),
    ("ITA", 4),
    ("NLD", 3),
    ("MEX", 3),
    ("SWE", 2),
    ("POL", 2),
];

/// IAB banner sizes weighted by how often they are bought; medium rectangle first.
const SIZES: [((u32, u32), u64); 8] = [
    ((300, 250), 30),
    ((728, 90), 18),
    ((320, 50), 16),
    ((160, 600), 8),
    ((300, 600), 10),
    ((970, 250), 6),
    ((336, 280), 6),
    ((468, 60), 6),
];

/// Top-level IAB content categories that campaigns commonly target.
const CATEGORIES: [&str; 16] = [
    "IAB1", "IAB2", "IAB3", "IAB4", "IAB5", "IAB7", "IAB8", "IAB9", "IAB10", "IAB12", "IAB13",
    "IAB15", "IAB17", "IAB19", "IAB20", "IAB22",
];

/// Dayparts advertisers use (UTC): office hours, evenings, weekends, all week.
const DAYPARTS: [&str; 5] = [
    "mon-fri 08-20",
    "sat,sun 00-24",
    "mon-sun 18-24",
    "mon-fri 06-12",
    "mon-sun 00-24",
];

/// Publisher domains for allow and block lists; the banner request's site is
/// `www.dailynews.example`, so lists drawn from here sometimes hold it.
fn domain_pool() -> Vec<String> {
    let mut pool: Vec<String> = [
        "dailynews.example",
        "sportsdesk.example",
        "techreview.example",
        "recipes.example",
        "weatherdaily.example",
        "financetimes.example",
        "autoguide.example",
        "travelhub.example",
    ]
    .iter()
    .map(|d| d.to_string())
    .collect();
    pool.extend((0..72).map(|i| format!("publisher{i:02}.example")));
    pool
}

fn toml_list<T: std::fmt::Display>(items: impl IntoIterator<Item = T>, quoted: bool) -> String {
    let items: Vec<String> = items
        .into_iter()
        .map(|v| {
            if quoted {
                format!("\"{v}\"")
            } else {
                v.to_string()
            }
        })
        .collect();
    format!("[{}]", items.join(", "))
}

/// Configuration text with three partners and `campaigns` campaigns whose targeting
/// follows what a DSP's book of business looks like: most campaigns are banner, most
/// restrict country and device, some run only in dayparts, through deals, on allow
/// lists, or need consent; block lists are common. Tuned so that the banner request
/// ([`PBS_SITE_BANNER`]: a US desktop, news site, 300×250 or 300×600) leaves about
/// one campaign in seven after the index (135 of 1,000 with [`GENERATED_SEED`]); the
/// benchmark prints the share it measured. `trust` picks the checks besides consent.
fn generated_config_text(campaigns: usize, seed: u64, trust: Trust) -> String {
    let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo-notice.key");
    let mut text = format!(
        r#"[bidding]
seat = "dsp-seat-1"
currency = "USD"
host_id = 7
default_shading_ppm = 900_000
# Measuring the pipeline, not the deadline (see `demo_catalog`).
deadline_cap_ms = 1000

[notice]
base_url = "https://notices.bidder.example/n"
hmac_key_file = "{}"

[currency_rates_micros]
EUR = 1_080_000
GBP = 1_270_000

[privacy]
gvl_vendor_id = 1001

[[partner]]
name = "exchange-a"
qps_limit = 50_000
asi = "exchange-a.example"
[[partner]]
name = "ssp-b"
qps_limit = 20_000
[[partner]]
name = "ssp-c"
qps_limit = 20_000
"#,
        key.display()
    );
    if trust == Trust::Off {
        text.push_str("\n[ivt]\nknown_crawlers = false\ninconsistent_devices = false\n");
    }
    let domains = domain_pool();
    let mut rng = Rng(seed | 1);
    let verify_supply = trust == Trust::VerifySupply;
    for c in 0..campaigns {
        write_campaign(&mut text, c, &mut rng, &domains, verify_supply);
    }
    text
}

fn write_campaign(
    text: &mut String,
    c: usize,
    rng: &mut Rng,
    domains: &[String],
    verify_supply: bool,
) {
    let base = 300_000 + rng.below(5_700_000) as i64;
    let _ = write!(
        text,
        "\n[[campaign]]\nid = \"cmp-{c:04}\"\nadvertiser = \"Advertiser {}\"\n\
         daily_budget_micros = {}\nmax_bid_cpm_micros = {}\nbase_cpm_micros = {base}\n\
         [campaign.targeting]\n",
        c % 240,
        (50 + rng.below(4_950)) * 1_000_000,
        base * 2,
    );
    // Media mix: banner-heavy, as display books are.
    let media: &[&str] = match rng.below(100) {
        0..60 => &["banner"],
        60..72 => &["banner", "video"],
        72..84 => &["video"],
        84..94 => &["native"],
        _ => &["audio"],
    };
    let banner_sizes: Vec<(u32, u32)> = if media.contains(&"banner") {
        let n = 1 + rng.below(3) as usize;
        let mut sizes: Vec<(u32, u32)> = (0..n).map(|_| *rng.weighted(&SIZES)).collect();
        sizes.sort_unstable();
        sizes.dedup();
        sizes
    } else {
        Vec::new()
    };
    let _ = writeln!(text, "media = {}", toml_list(media, true));
    if !banner_sizes.is_empty() && rng.chance(50) {
        let sizes = banner_sizes.iter().map(|(w, h)| format!("{w}x{h}"));
        let _ = writeln!(text, "sizes = {}", toml_list(sizes, true));
    }
    write_audience(text, rng);
    write_inventory(text, rng, domains);
    let supply_chain = supply_chain_table(rng, verify_supply);
    let (deals_only, deals) = deal_tables(c, rng);
    if deals_only {
        text.push_str("deals_only = true\n");
    }
    text.push_str(&supply_chain);
    text.push_str(&deals);
    write_creatives(text, c, rng, media, &banner_sizes);
}

/// Who: country, device type, operating system.
fn write_audience(text: &mut String, rng: &mut Rng) {
    if rng.chance(65) {
        let n = 1 + rng.below(4) as usize;
        let mut countries: Vec<&str> = (0..n).map(|_| *rng.weighted(&COUNTRIES)).collect();
        countries.sort_unstable();
        countries.dedup();
        let _ = writeln!(text, "countries = {}", toml_list(countries, true));
    }
    let device_types = match rng.below(100) {
        0..45 => None,
        45..70 => Some("[2]"),
        70..90 => Some("[1, 4, 5]"),
        _ => Some("[3, 7]"),
    };
    if let Some(types) = device_types {
        let _ = writeln!(text, "device_types = {types}");
    }
    let os = match rng.below(100) {
        0..70 => None,
        70..85 => Some(r#"["iOS", "Android"]"#),
        85..95 => Some(r#"["Windows", "macOS"]"#),
        _ => Some(r#"["Android"]"#),
    };
    if let Some(os) = os {
        let _ = writeln!(text, "os = {os}");
    }
}

/// Where and when: partners, site and app lists, categories, dayparts, privacy.
fn write_inventory(text: &mut String, rng: &mut Rng, domains: &[String]) {
    if rng.chance(20) {
        let partners = rng.pick(&["exchange-a", "ssp-b", "ssp-c"], 1, 2);
        let _ = writeln!(text, "partners = {}", toml_list(partners, true));
    }
    if rng.chance(8) {
        let allow = rng.pick(domains, 10, 39);
        let _ = writeln!(text, "site_domains = {}", toml_list(allow, true));
    }
    if rng.chance(30) {
        let block = rng.pick(domains, 1, 5);
        let _ = writeln!(text, "block_site_domains = {}", toml_list(block, true));
    }
    if rng.chance(5) {
        let bundles = (0..1 + rng.below(4)).map(|i| format!("com.game{}.app", rng.below(50) + i));
        let _ = writeln!(text, "app_bundles = {}", toml_list(bundles, true));
    } else if rng.chance(10) {
        let bundles = (0..1 + rng.below(3)).map(|i| format!("com.cheap{}.app", rng.below(50) + i));
        let _ = writeln!(text, "block_app_bundles = {}", toml_list(bundles, true));
    }
    if rng.chance(30) {
        let cats = rng.pick(&CATEGORIES, 1, 3);
        let _ = writeln!(text, "categories = {}", toml_list(cats, true));
    }
    if rng.chance(25) {
        let parts = rng.pick(&DAYPARTS, 1, 2);
        let _ = writeln!(text, "dayparts = {}", toml_list(parts, true));
    }
    if rng.chance(40) {
        let _ = writeln!(text, "require_consent = true");
    }
    if rng.chance(3) {
        let _ = writeln!(text, "allow_coppa = true");
    }
}

/// The supply-chain table (a tenth of campaigns want a complete chain, half of those
/// from named sellers), or nothing.
fn supply_chain_table(rng: &mut Rng, verify: bool) -> String {
    let mut table = String::new();
    if rng.chance(10) {
        table.push_str("require_complete = true\n");
        if rng.chance(50) {
            table.push_str("allowed_sellers = [\"exchange-a.example\", \"ssp-b.example\"]\n");
        }
    }
    if verify {
        table.push_str("verify_sellers = true\nverify_ads_txt = true\n");
    }
    if table.is_empty() {
        return table;
    }
    format!("[campaign.targeting.supply_chain]\n{table}")
}

/// A supply store holding what [`PBS_SITE_BANNER`]'s chain needs, as if fetched:
/// the publisher's ads.txt and exchange-a's sellers.json, both authorising it.
pub fn pbs_supply_store() -> Arc<SupplyStore> {
    let ads_txt =
        AdsTxt::parse("exchange-a.example, pub-4471, DIRECT\nssp-b.example, 99, RESELLER\n")
            .expect("ads.txt");
    let sellers =
        SellersJson::parse(br#"{"sellers":[{"seller_id":"pub-4471","seller_type":"PUBLISHER"}]}"#)
            .expect("sellers.json");
    let mut view = View::default();
    view.ads_txt
        .insert("dailynews.example".into(), Some(Arc::new(ads_txt)));
    view.sellers_json
        .insert("exchange-a.example".into(), Some(Arc::new(sellers)));
    let store = Arc::new(SupplyStore::default());
    store.publish(view);
    store
}

/// Private-marketplace deal tables: a tenth of campaigns have some, and half of those
/// buy only through them. `deals_only` is returned for the caller to write among the
/// plain keys, since TOML puts a table's keys before its sub-tables.
fn deal_tables(c: usize, rng: &mut Rng) -> (bool, String) {
    if !rng.chance(10) {
        return (false, String::new());
    }
    let deals_only = rng.chance(50);
    let mut tables = String::new();
    for d in 0..1 + rng.below(2) {
        let _ = write!(
            tables,
            "[[campaign.targeting.deal]]\nid = \"PMP-{c:04}-{d}\"\nfloor_cpm_micros = {}\n",
            500_000 + rng.below(3_000_000)
        );
    }
    (deals_only, tables)
}

/// One creative per banner size the campaign buys, plus one per other media type, with
/// markup of the size real tags are (a few hundred bytes of HTML, a VAST wrapper).
fn write_creatives(
    text: &mut String,
    c: usize,
    rng: &mut Rng,
    media: &[&str],
    banner_sizes: &[(u32, u32)],
) {
    let adomain = format!("brand{}.example", c % 240);
    let cat = rng.pick(&CATEGORIES, 1, 1)[0];
    let attr = if rng.chance(20) {
        "attr = [1, 3]\n"
    } else {
        ""
    };
    for (w, h) in banner_sizes {
        let _ = write!(
            text,
            "[[campaign.creative]]\nid = \"cr-{c:04}-{w}x{h}\"\nformat = \"banner\"\n\
             w = {w}\nh = {h}\nadomain = [\"{adomain}\"]\ncat = [\"{cat}\"]\n{attr}\
             adm = '<div id=\"ad-{c}\" style=\"width:{w}px;height:{h}px\">\
             <a href=\"https://click.bidder.example/c?cmp={c}&p=${{AUCTION_PRICE}}\" \
             target=\"_blank\"><img src=\"https://cdn.{adomain}/{w}x{h}/hero.jpg\" \
             width=\"{w}\" height=\"{h}\" alt=\"{adomain}\"></a><img \
             src=\"https://px.bidder.example/i?cmp={c}\" width=\"1\" height=\"1\" \
             style=\"display:none\"></div>'\n"
        );
    }
    for m in media.iter().filter(|m| **m != "banner") {
        let fields = match *m {
            "video" => "w = 1280\nh = 720\nduration_s = 30\nmime = \"video/mp4\"\n",
            "audio" => "duration_s = 30\nmime = \"audio/mpeg\"\n",
            _ => "",
        };
        let adm = if *m == "native" {
            format!(
                r#"{{"native":{{"ver":"1.2","assets":[{{"id":1,"title":{{"text":"{adomain}"}}}}],"link":{{"url":"https://{adomain}/"}}}}}}"#
            )
        } else {
            format!(
                r#"<VAST version="4.2"><Ad id="{c}"><Wrapper><AdSystem>bidder</AdSystem><VASTAdTagURI>https://ads.{adomain}/vast?cmp={c}</VASTAdTagURI></Wrapper></Ad></VAST>"#
            )
        };
        let _ = write!(
            text,
            "[[campaign.creative]]\nid = \"cr-{c:04}-{m}\"\nformat = \"{m}\"\n{fields}\
             adomain = [\"{adomain}\"]\ncat = [\"{cat}\"]\nadm = '{adm}'\n"
        );
    }
}
