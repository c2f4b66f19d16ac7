//! The supply chain verified end to end: ads.txt and sellers.json served by a real
//! local HTTP server, fetched by the fetcher (limits, conditional requests, disk cache,
//! failures that keep the last good copy) and read by the decision, which bids or
//! names the no-bid reason for each chain.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bidder::catalog::Catalog;
use bidder::clock::DrivenClock;
use bidder::config::{Config, SupplyConfig};
use bidder::decide::strategy::StaticStrategy;
use bidder::decide::{Context, Decider, NoBidReason};
use bidder::money::budget::Budgets;
use bidder::openrtb::Parser;
use bidder::supply::fetch::Fetcher;
use bidder::supply::{FileKind, Lookup, Settings, SupplyStore};

/// What the server answers on one path.
#[derive(Clone)]
enum Route {
    /// 200 with this body and content type, `ETag` and 304 on a match.
    File {
        body: Vec<u8>,
        content_type: &'static str,
        etag: &'static str,
    },
    Status(u16),
    /// Accepts and never answers (until the client gives up).
    Hang,
    Redirect(String),
}

/// A request the server saw: its path and its headers (names in lower case).
type Seen = (String, Vec<(String, String)>);

/// A small HTTP/1.1 server on a real socket: one thread per connection, one request
/// each, routes changed while it runs; records every request's path and headers.
struct Server {
    addr: SocketAddr,
    routes: Arc<Mutex<HashMap<String, Route>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = Server {
            addr: listener.local_addr().unwrap(),
            routes: Arc::default(),
            seen: Arc::default(),
        };
        let (routes, seen) = (Arc::clone(&server.routes), Arc::clone(&server.seen));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (routes, seen) = (Arc::clone(&routes), Arc::clone(&seen));
                std::thread::spawn(move || answer(stream, &routes, &seen));
            }
        });
        server
    }

    fn route(&self, path: &str, route: Route) {
        self.routes.lock().unwrap().insert(path.to_owned(), route);
    }

    fn file(&self, path: &str, body: &str) {
        let content_type = if path.ends_with(".json") {
            "application/json"
        } else {
            "text/plain"
        };
        self.route(
            path,
            Route::File {
                body: body.as_bytes().to_vec(),
                content_type,
                etag: "\"v1\"",
            },
        );
    }

    /// The headers of the last request for `path`.
    fn last_headers(&self, path: &str) -> Vec<(String, String)> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .rev()
            .find(|(p, _)| p == path)
            .map(|(_, h)| h.clone())
            .unwrap_or_default()
    }

    fn settings(&self, cache_dir: &Path) -> Settings {
        Settings {
            section: SupplyConfig {
                fetch_timeout_ms: 500,
                max_ads_txt_bytes: 4_096,
                max_redirects: 2,
                ads_txt_url: format!("http://{}/{{domain}}/ads.txt", self.addr),
                app_ads_txt_url: format!("http://{}/{{domain}}/app-ads.txt", self.addr),
                sellers_json_url: format!("http://{}/{{domain}}/sellers.json", self.addr),
                ..SupplyConfig::default()
            },
            cache_dir: Some(cache_dir.to_path_buf()),
            sellers_json: Vec::new(),
        }
    }
}

fn answer(stream: TcpStream, routes: &Mutex<HashMap<String, Route>>, seen: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let route = routes
        .lock()
        .unwrap()
        .get(&path)
        .cloned()
        .unwrap_or(Route::Status(404));
    seen.lock().unwrap().push((path, headers.clone()));
    let mut stream = reader.into_inner();
    let reply = |stream: &mut TcpStream, status: &str, extra: &str, body: &[u8]| {
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(body);
    };
    match route {
        Route::File {
            body,
            content_type,
            etag,
        } => {
            let matches = headers
                .iter()
                .any(|(k, v)| k == "if-none-match" && v == etag);
            if matches {
                reply(
                    &mut stream,
                    "304 Not Modified",
                    &format!("etag: {etag}\r\n"),
                    b"",
                );
            } else {
                let extra = format!("content-type: {content_type}\r\netag: {etag}\r\n");
                reply(&mut stream, "200 OK", &extra, &body);
            }
        }
        Route::Status(code) => reply(&mut stream, &format!("{code} Status"), "", b""),
        Route::Hang => std::thread::sleep(Duration::from_secs(5)),
        Route::Redirect(to) => reply(
            &mut stream,
            "302 Found",
            &format!("location: {to}\r\n"),
            b"",
        ),
    }
}

const NOW_MS: u64 = testkit::MONDAY_10_30_MS;

const PUB_ADS_TXT: &str = "# news.example.com\n\
    OWNERDOMAIN=example.com\n\
    exchange-a.com, pub-1, DIRECT\n\
    ssp-b.com, 555, DIRECT\n\
    exchange-a.com, ssp-b-account, RESELLER\n";

const EXCHANGE_A_SELLERS: &str = r#"{"version":"1.0","sellers":[
    {"seller_id":"pub-1","seller_type":"PUBLISHER","name":"Example News","domain":"example.com"},
    {"seller_id":"ssp-b-account","seller_type":"INTERMEDIARY","name":"SSP B","domain":"ssp-b.com"},
    {"seller_id":"direct-only","seller_type":"PUBLISHER","domain":"other.example"}]}"#;

const SSP_B_SELLERS: &str = r#"{"version":"1.0","sellers":[
    {"seller_id":"555","seller_type":"PUBLISHER","is_confidential":1}]}"#;

/// A store and fetcher over `server`, the clock at `NOW_MS`.
async fn fetcher(server: &Server, dir: &Path) -> (Arc<SupplyStore>, Fetcher, DrivenClock) {
    let clock = DrivenClock::at(NOW_MS);
    let store = Arc::new(SupplyStore::new(server.settings(dir)));
    let fetcher = Fetcher::start(Arc::clone(&store), clock.clock()).await;
    (store, fetcher, clock)
}

/// The example's files served, the publisher's ads.txt and exchange-a's sellers.json
/// reported and fetched once.
async fn fetched_example() -> (
    Server,
    testkit::TempDir,
    Arc<SupplyStore>,
    Fetcher,
    DrivenClock,
) {
    let server = Server::start();
    serve_the_example(&server);
    let dir = testkit::TempDir::new("supply");
    let (store, mut fetcher, clock) = fetcher(&server, &dir.0).await;
    store.discover(FileKind::AdsTxt, "example.com");
    store.discover(FileKind::SellersJson, "exchange-a.com");
    fetcher.round().await;
    (server, dir, store, fetcher, clock)
}

fn serve_the_example(server: &Server) {
    server.file("/example.com/ads.txt", PUB_ADS_TXT);
    server.file("/exchange-a.com/sellers.json", EXCHANGE_A_SELLERS);
    server.file("/ssp-b.com/sellers.json", SSP_B_SELLERS);
}

fn status_of(store: &SupplyStore, kind: FileKind, domain: &str) -> bidder::supply::FileStatus {
    store
        .status()
        .iter()
        .find(|s| s.kind == kind && s.domain == domain)
        .cloned()
        .unwrap_or_else(|| panic!("{domain} not tracked"))
}

#[tokio::test]
async fn files_are_fetched_cached_on_disk_and_refreshed_with_conditional_requests() {
    let (server, dir, store, mut fetcher, clock) = fetched_example().await;

    let view = store.view();
    let Lookup::Ready(ads) = view.ads_txt(FileKind::AdsTxt, "example.com") else {
        panic!("ads.txt not ready: {:?}", store.status());
    };
    assert_eq!(ads.records, 3);
    assert!(matches!(view.sellers_json("exchange-a.com"), Lookup::Ready(s) if s.len() == 3));
    assert!(matches!(view.sellers_json("ssp-b.com"), Lookup::Untracked));
    let status = status_of(&store, FileKind::AdsTxt, "example.com");
    assert_eq!(
        (status.age_s, status.entries, status.last_error.clone()),
        (Some(0), 3, None)
    );
    assert!(dir.0.join("ads_txt/example.com.body").is_file());
    let ua = server.last_headers("/example.com/ads.txt");
    assert!(
        ua.iter()
            .any(|(k, v)| k == "user-agent" && v.starts_with("bidder/")),
        "{ua:?}"
    );

    // Within the refresh interval nothing is fetched again.
    let requests = server.seen.lock().unwrap().len();
    clock.advance_ms(3_599_000);
    fetcher.round().await;
    assert_eq!(server.seen.lock().unwrap().len(), requests);
    assert_eq!(
        status_of(&store, FileKind::AdsTxt, "example.com").age_s,
        Some(3_599)
    );

    // After it, a conditional request; 304 keeps the copy and resets its age.
    clock.advance_ms(2_000);
    fetcher.round().await;
    let headers = server.last_headers("/example.com/ads.txt");
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "if-none-match" && v == "\"v1\""),
        "{headers:?}"
    );
    assert_eq!(
        status_of(&store, FileKind::AdsTxt, "example.com").age_s,
        Some(0)
    );
    assert!(matches!(
        store.view().ads_txt(FileKind::AdsTxt, "example.com"),
        Lookup::Ready(_)
    ));
    let metrics = scrape(&store);
    assert!(
        metrics.contains(r#"bidder_supply_fetches_total{kind="ads_txt",outcome="not_modified"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"bidder_supply_fetches_total{kind="ads_txt",outcome="fetched"} 1"#),
        "{metrics}"
    );
}

fn scrape(store: &SupplyStore) -> String {
    use bidder::metrics::{Collect, PromText};
    let mut out = PromText::new();
    store.collect(&mut out);
    out.render()
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_last_good_copy_and_says_why() {
    let (server, _dir, store, mut fetcher, clock) = fetched_example().await;

    server.route("/example.com/ads.txt", Route::Status(503));
    server.route(
        "/exchange-a.com/sellers.json",
        Route::File {
            body: br#"{"sellers":[{"seller_id":"#.to_vec(),
            content_type: "application/json",
            etag: "\"v2\"",
        },
    );
    clock.advance_ms(3_601_000);
    fetcher.round().await;
    let view = store.view();
    assert!(
        matches!(view.ads_txt(FileKind::AdsTxt, "example.com"), Lookup::Ready(f) if f.records == 3)
    );
    assert!(matches!(view.sellers_json("exchange-a.com"), Lookup::Ready(f) if f.len() == 3));
    let ads = status_of(&store, FileKind::AdsTxt, "example.com");
    assert_eq!(ads.age_s, Some(3_601), "the old copy, its age growing");
    assert!(
        ads.last_error.as_deref().is_some_and(|e| e.contains("503")),
        "{ads:?}"
    );
    assert_eq!(ads.next_fetch_in_s, 300, "retried after retry_interval_s");
    let sellers = status_of(&store, FileKind::SellersJson, "exchange-a.com");
    assert!(
        sellers
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("bad JSON")),
        "{sellers:?}"
    );

    // A restart with the server gone still has the copies, from the disk cache.
    drop(server);
    let restarted = Arc::new(SupplyStore::new(store.settings().as_ref().clone()));
    let _fetcher = Fetcher::start(Arc::clone(&restarted), clock.clock()).await;
    assert!(
        matches!(restarted.view().ads_txt(FileKind::AdsTxt, "example.com"), Lookup::Ready(f) if f.records == 3)
    );
    assert!(matches!(
        restarted.view().sellers_json("exchange-a.com"),
        Lookup::Ready(_)
    ));
}

#[tokio::test]
async fn every_kind_of_bad_answer_leaves_the_file_unavailable_with_its_error() {
    let server = Server::start();
    let big = format!(
        "exchange-a.com, pub-1, DIRECT\n{}",
        "# padding\n".repeat(1_000)
    );
    server.route(
        "/big.example/ads.txt",
        Route::File {
            body: big.into_bytes(),
            content_type: "text/plain",
            etag: "\"b\"",
        },
    );
    server.route("/slow.example/ads.txt", Route::Hang);
    server.route(
        "/html.example/ads.txt",
        Route::File {
            body: b"<html><body>Welcome</body></html>".to_vec(),
            content_type: "text/html",
            etag: "\"h\"",
        },
    );
    server.file("/badjson.example/sellers.json", "{\"sellers\": [");
    for i in 0..4 {
        let next = format!("http://{}/loop{}.example/ads.txt", server.addr, i + 1);
        server.route(&format!("/loop{i}.example/ads.txt"), Route::Redirect(next));
    }
    let dir = testkit::TempDir::new("supply");
    let (store, mut fetcher, _clock) = fetcher(&server, &dir.0).await;
    let cases = [
        (FileKind::AdsTxt, "missing.example", "404"),
        (
            FileKind::AdsTxt,
            "big.example",
            "over the limit of 4096 bytes",
        ),
        (FileKind::AdsTxt, "slow.example", "timed out after 500 ms"),
        (FileKind::AdsTxt, "html.example", "text/html"),
        (FileKind::SellersJson, "badjson.example", "bad JSON"),
        (FileKind::AdsTxt, "loop0.example", "more than 2 redirects"),
    ];
    for (kind, domain, _) in cases {
        store.discover(kind, domain);
    }
    fetcher.round().await;
    let view = store.view();
    for (kind, domain, error) in cases {
        let unavailable = match kind {
            FileKind::SellersJson => matches!(view.sellers_json(domain), Lookup::Unavailable),
            _ => matches!(view.ads_txt(kind, domain), Lookup::Unavailable),
        };
        assert!(unavailable, "{domain}");
        let status = status_of(&store, kind, domain);
        assert_eq!(status.age_s, None, "{domain}");
        let said = status.last_error.unwrap_or_default();
        assert!(said.contains(error), "{domain}: {said:?} lacks {error:?}");
    }
    assert!(scrape(&store).contains(r#"bidder_supply_files{kind="ads_txt",state="unavailable"} 5"#));
}

// ---- the decision ----

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
[[partner]]
name = "ex-a"
qps_limit = 100
asi = "Exchange-A.com"
{campaigns}
"#,
        key.display()
    );
    let config =
        Config::from_text(Path::new("test.toml"), text).unwrap_or_else(|e| panic!("{e:?}"));
    Catalog::compile(&config).expect("compile")
}

fn campaign(id: &str, base: i64, supply_chain: &str) -> String {
    format!(
        r#"
[[campaign]]
id = "{id}"
advertiser = "adv"
daily_budget_micros = 1_000_000_000
max_bid_cpm_micros = 10_000_000
base_cpm_micros = {base}
  [campaign.targeting.supply_chain]
  {supply_chain}
  [[campaign.creative]]
  id = "{id}-cr"
  format = "banner"
  w = 300
  h = 250
  adomain = ["{id}.example"]
  adm = "<b>{id}</b>"
"#
    )
}

/// `nodes` as (asi, sid); `site` is the site domain.
fn request(site: &str, nodes: &[(&str, &str)]) -> String {
    let nodes: Vec<String> = nodes
        .iter()
        .map(|(asi, sid)| format!(r#"{{"asi":"{asi}","sid":"{sid}","hp":1}}"#))
        .collect();
    format!(
        r#"{{"id":"r","imp":[{{"id":"1","banner":{{"w":300,"h":250}}}}],"site":{{"domain":"{site}"}},
            "source":{{"schain":{{"ver":"1.0","complete":1,"nodes":[{}]}}}}}}"#,
        nodes.join(",")
    )
}

/// The winning campaign, or the no-bid reason, from a fresh worker's decider.
fn decide(
    catalog: &Catalog,
    store: &Arc<SupplyStore>,
    request: &str,
) -> Result<String, NoBidReason> {
    let mut decider = Decider::new(catalog, Default::default(), 7);
    decider.set_supply(Arc::clone(store));
    decide_on(&mut decider, catalog, request)
}

/// [`decide`] on `decider`, which keeps what it remembers between calls.
fn decide_on(
    decider: &mut Decider,
    catalog: &Catalog,
    request: &str,
) -> Result<String, NoBidReason> {
    let budgets = Budgets::new(catalog.campaigns.iter().map(|c| c.daily_budget_micros));
    let mut parser = Parser::new();
    let mut body = request.as_bytes().to_vec();
    let req = parser
        .parse(&mut body)
        .unwrap_or_else(|e| panic!("{e}: {request}"));
    let ctx = Context {
        partner: catalog.partner_by_name("ex-a"),
        now_unix_s: NOW_MS / 1_000,
        user_key: None,
    };
    let strategy = StaticStrategy {
        shading_ppm: 1_000_000,
    };
    let decision = decider.decide(catalog, &strategy, &budgets, &req, ctx);
    let out = match decision.bids.first() {
        Some(bid) => Ok(catalog.campaigns[bid.campaign].id.clone()),
        None => Err(decision.request_reason().expect("a reason")),
    };
    decision.release_all(&budgets);
    out
}

#[tokio::test]
async fn chains_are_verified_against_the_fetched_files_per_campaign_policy() {
    use NoBidReason::*;
    let server = Server::start();
    serve_the_example(&server);
    let dir = testkit::TempDir::new("supply");
    let (store, mut fetcher, _clock) = fetcher(&server, &dir.0).await;

    let sellers = catalog(&campaign("sellers", 2_000_000, "verify_sellers = true"));
    let ads = catalog(&campaign("ads", 2_000_000, "verify_ads_txt = true"));
    let both = catalog(&campaign(
        "both",
        2_000_000,
        "verify_sellers = true\nverify_ads_txt = true",
    ));
    let direct_only = catalog(&campaign(
        "direct-only",
        2_000_000,
        "verify_sellers = true\nverify_ads_txt = true\nwhen_unverified = \"direct_only\"",
    ));
    let lenient = catalog(&format!(
        "{}{}",
        campaign(
            "lenient",
            1_000_000,
            "verify_ads_txt = true\nwhen_unverified = \"bid\""
        ),
        campaign("strict", 3_000_000, "verify_ads_txt = true"),
    ));
    let direct = request("news.example.com", &[("exchange-a.com", "pub-1")]);
    let resold = request(
        "www.example.com",
        &[("ssp-b.com", "555"), ("exchange-a.com", "ssp-b-account")],
    );

    // Before any fetch every file is unknown: reported to the fetcher, and each
    // policy's answer to "unverified".
    assert_eq!(decide(&both, &store, &direct), Err(SupplyUnverified));
    assert_eq!(
        decide(&direct_only, &store, &direct),
        Ok("direct-only".into())
    );
    assert_eq!(decide(&direct_only, &store, &resold), Err(SupplyUnverified));
    assert_eq!(
        decide(&lenient, &store, &direct),
        Ok("lenient".into()),
        "strict waits"
    );
    assert_eq!(decide(&both, &store, &resold), Err(SupplyUnverified));
    fetcher.round().await;
    let tracked: Vec<_> = store
        .status()
        .iter()
        .map(|s| (s.kind, s.domain.clone()))
        .collect();
    assert_eq!(
        tracked,
        vec![
            (FileKind::AdsTxt, "example.com".to_owned()),
            (FileKind::SellersJson, "exchange-a.com".to_owned()),
            (FileKind::SellersJson, "ssp-b.com".to_owned()),
        ],
        "the publisher's root domain and every system in the chains"
    );

    let rows: [(&str, &Catalog, String, Result<&str, NoBidReason>); 14] = [
        ("authorised direct", &both, direct.clone(), Ok("both")),
        ("authorised reseller", &both, resold.clone(), Ok("both")),
        (
            "files known: direct_only bids on resold too",
            &direct_only,
            resold.clone(),
            Ok("direct-only"),
        ),
        (
            "strict bids once verified",
            &lenient,
            direct.clone(),
            Ok("strict"),
        ),
        (
            "unknown seller",
            &sellers,
            request("news.example.com", &[("exchange-a.com", "pub-999")]),
            Err(UnknownSeller),
        ),
        (
            "a reselling node whose seller is a publisher",
            &sellers,
            request(
                "news.example.com",
                &[("ssp-b.com", "555"), ("exchange-a.com", "pub-1")],
            ),
            Err(UnauthorizedSeller),
        ),
        (
            "seller listed, but not in the publisher's ads.txt",
            &ads,
            request("news.example.com", &[("exchange-a.com", "direct-only")]),
            Err(UnauthorizedSeller),
        ),
        (
            "a DIRECT-only record used by a reselling node",
            &ads,
            request(
                "news.example.com",
                &[("exchange-a.com", "pub-1"), ("exchange-a.com", "pub-1")],
            ),
            Err(UnauthorizedSeller),
        ),
        (
            "sellers policy ignores ads.txt",
            &sellers,
            request("news.example.com", &[("exchange-a.com", "direct-only")]),
            Ok("sellers"),
        ),
        (
            "missing node: the last node is not the partner",
            &both,
            request(
                "news.example.com",
                &[("exchange-a.com", "pub-1"), ("ssp-b.com", "555")],
            ),
            Err(SupplyChainIncomplete),
        ),
        (
            "no chain at all",
            &both,
            request("news.example.com", &[]),
            Err(SupplyChainIncomplete),
        ),
        (
            "a publisher whose ads.txt is 404",
            &ads,
            request("unknown.example", &[("exchange-a.com", "pub-1")]),
            Err(SupplyUnverified),
        ),
        (
            "and direct_only bids on it when the chain is one node",
            &direct_only,
            request("unknown.example", &[("exchange-a.com", "pub-1")]),
            Ok("direct-only"),
        ),
        (
            "a system with no sellers.json",
            &sellers,
            request(
                "news.example.com",
                &[
                    ("nowhere.example", "1"),
                    ("exchange-a.com", "ssp-b-account"),
                ],
            ),
            Err(SupplyUnverified),
        ),
    ];
    // The unknown publisher and system are reported, fetched (404) and then known.
    for (_, catalog, req, _) in &rows {
        let _ = decide(catalog, &store, req);
    }
    fetcher.round().await;
    assert!(status_of(&store, FileKind::AdsTxt, "unknown.example")
        .last_error
        .is_some_and(|e| e.contains("404")));
    for (name, catalog, req, expected) in rows {
        let expected = expected.map(str::to_owned);
        assert_eq!(decide(catalog, &store, &req), expected, "{name}");
    }
}

/// A worker remembers each chain's verdict, but only for the view it was computed
/// from: every view the fetcher publishes is verified afresh, and chains that differ in
/// any field the verdict reads (seller id, publisher) never share one.
#[tokio::test]
async fn a_remembered_verdict_lasts_only_as_long_as_the_files_it_came_from() {
    use NoBidReason::*;
    let server = Server::start();
    serve_the_example(&server);
    let dir = testkit::TempDir::new("supply-verdicts");
    let (store, mut fetcher, clock) = fetcher(&server, &dir.0).await;
    let both = catalog(&campaign(
        "both",
        2_000_000,
        "verify_sellers = true\nverify_ads_txt = true",
    ));
    let mut decider = Decider::new(&both, Default::default(), 7);
    decider.set_supply(Arc::clone(&store));
    let direct = request("news.example.com", &[("exchange-a.com", "pub-1")]);
    let unknown_sid = request("news.example.com", &[("exchange-a.com", "pub-999")]);
    let other_publisher = request("unknown.example", &[("exchange-a.com", "pub-1")]);

    let mut steps: Vec<(&str, &str, Result<&str, NoBidReason>)> = vec![
        ("nothing fetched", &direct, Err(SupplyUnverified)),
        ("nothing fetched, again", &direct, Err(SupplyUnverified)),
    ];
    let mut check = |steps: &mut Vec<(&str, &str, Result<&str, NoBidReason>)>| {
        for (name, req, want) in steps.drain(..) {
            let want = want.map(str::to_owned);
            assert_eq!(decide_on(&mut decider, &both, req), want, "{name}");
        }
    };
    check(&mut steps);

    fetcher.round().await;
    steps.extend([
        ("fetched: verified", &*direct, Ok("both")),
        (
            "another seller id, same view",
            &*unknown_sid,
            Err(UnknownSeller),
        ),
        ("verified, again", &*direct, Ok("both")),
        (
            "another publisher, same view",
            &*other_publisher,
            Err(SupplyUnverified),
        ),
    ]);
    check(&mut steps);

    // The publisher drops the exchange's direct record; the refresh publishes it.
    server.route(
        "/example.com/ads.txt",
        Route::File {
            body: b"exchange-a.com, ssp-b-account, RESELLER\n".to_vec(),
            content_type: "text/plain",
            etag: "\"v2\"",
        },
    );
    clock.advance_ms(3_601_000);
    fetcher.round().await;
    steps.extend([
        (
            "refreshed: no longer authorised",
            &*direct,
            Err(UnauthorizedSeller),
        ),
        (
            "and not again from memory",
            &*direct,
            Err(UnauthorizedSeller),
        ),
    ]);
    check(&mut steps);
    // Computed once per distinct chain and view: 1 before the fetch, 3 after it, 1
    // after the refresh; the other three answers were remembered.
    assert_eq!(decider.stats().supply_verdicts.get(), 5);
}
