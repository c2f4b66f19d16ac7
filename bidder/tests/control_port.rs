//! The control port over real loopback sockets: health and readiness, notices settling
//! real budgets through the ledger (clearing price, duplicates, tampering, losses,
//! expiry), reload, `/metrics` through promtool, its own bounds, and that a slow scrape
//! never holds up a worker of the bid engine.
//!
//! Every client socket has read and write timeouts, and every server is shut down (and
//! its threads joined) by the test that started it.

use testkit::http::{get, request, CLIENT_TIMEOUT};
use testkit::promtool::promtool_check;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use bidder::clock::DrivenClock;
use bidder::control::Registry;
use bidder::control::{
    ControlConfig, ControlParts, ControlPort, NoticeListenerConfig, Notices, Readiness,
};
use bidder::engine::tokio::{TokioEngine, TokioEngineConfig};
use bidder::engine::ServeConfig;
use bidder::http::{BidCall, Outcome, ResponseBuf, Service};
use bidder::metrics::{PUBLISH_EVERY_RECORDS, PUBLISH_INTERVAL_MS};
use bidder::money::bid_id::{BidId, BidIdGen};
use bidder::money::budget::{BudgetLimits, Budgets};
use bidder::money::currency::{CurrencyBook, Rates};
use bidder::money::impression_cost_micros;
use bidder::money::journal::{Journal, JournalConfig};
use bidder::money::ledger::{HeldBid, Ledger, LedgerInbox, Unnoticed};
use bidder::money::notice::{NoticeFields, NoticeKind, NoticeSigner};
use bidder::money::notice_keys::NoticeKeyring;
use bidder::money::period::Calendar;

const KEY: &[u8] = b"control-port-test-key-0123456789abcdef";
const BASE_URL: &str = "http://bidder.test/notice";
const DAILY_MICROS: i64 = 1_000_000;
/// The admin token the tests' control ports read from their token file.
const TOKEN: &str = "control-port-test-admin-token-0123456789";

/// An admin call with the test token.
fn admin_post(addr: SocketAddr, path: &str, body: &[u8]) -> (u16, String) {
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    testkit::http::exchange(addr, "POST", path, &auth, body).expect("admin call")
}

struct Setup {
    port: ControlPort,
    /// The admin listener.
    addr: SocketAddr,
    /// The notice listener.
    notices: SocketAddr,
    /// Holds the admin token file.
    _dir: testkit::TempDir,
    /// The reservation TTL in force (a reload stores a new one).
    ttl: Arc<AtomicU64>,
    registry: Arc<Registry>,
    readiness: Readiness,
    budgets: Arc<Budgets>,
    inbox: Arc<LedgerInbox>,
    signer: NoticeSigner,
    ids: BidIdGen,
    reloads: Arc<AtomicUsize>,
    /// The calendar the ledger expires reservations on; moves only when told.
    calendar: DrivenClock,
}

/// A control port whose reload callback accepts the body `good` and refuses others.
fn start(config: ControlConfig) -> Setup {
    start_with(config, None)
}

/// [`start`], writing settlements to `journal`.
fn start_with(config: ControlConfig, journal: Option<Journal>) -> Setup {
    start_full(config, journal, true)
}

/// [`start_with`]; without `with_token` no admin token file is configured.
fn start_full(config: ControlConfig, journal: Option<Journal>, with_token: bool) -> Setup {
    let registry = Arc::new(Registry::new());
    let readiness = Readiness::new();
    let budgets = Arc::new(Budgets::new([DAILY_MICROS]));
    let inbox = Arc::new(LedgerInbox::new(64));
    let signer = NoticeSigner::new(KEY, BASE_URL).unwrap();
    let reloads = Arc::new(AtomicUsize::new(0));
    let calls = Arc::clone(&reloads);
    let calendar = DrivenClock::at(testkit::MONDAY_10_30_MS);
    let ttl = Arc::new(AtomicU64::new(60_000));
    let dir = testkit::TempDir::new("control-token");
    let token_file = dir.0.join("admin.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let parts = ControlParts {
        registry: Arc::clone(&registry),
        readiness: readiness.clone(),
        reload: Box::new(move |body: &[u8]| {
            calls.fetch_add(1, Ordering::SeqCst);
            match body {
                b"good" => Ok("test.toml: reloaded: 2 partners, 3 campaigns".to_owned()),
                _ => Err("test.toml:3: [[campaign]] id: must not be empty".to_owned()),
            }
        }),
        notices: Notices {
            keyring: Arc::new(NoticeKeyring::new(KEY, BASE_URL).unwrap()),
            ledger: Ledger::new(60_000),
            inbox: Arc::clone(&inbox),
            budgets: Arc::clone(&budgets),
            currencies: Arc::new(CurrencyBook::new(Rates {
                ours: "USD".into(),
                rates_micros: [("EUR".to_owned(), 1_080_000)].into_iter().collect(),
            })),
            reservation_ttl_ms: Arc::clone(&ttl),
            clock: calendar.clock(),
            journal,
        },
        supply: None,
        fleet: None,
    };
    let port = ControlPort::start(
        ControlConfig {
            listen_addr: "127.0.0.1:0".parse().unwrap(),
            admin_token_file: with_token.then_some(token_file),
            notice: NoticeListenerConfig {
                listen_addr: "127.0.0.1:0".parse().unwrap(),
                ..config.notice.clone()
            },
            ..config
        },
        parts,
    )
    .expect("control port starts");
    Setup {
        addr: port.local_addr(),
        notices: port.notice_addr(),
        _dir: dir,
        ttl,
        port,
        registry,
        readiness,
        budgets,
        inbox,
        signer,
        ids: BidIdGen::new(1, 0),
        reloads,
        calendar,
    }
}

/// A bid of `price_cpm_micros` that a worker made: budget reserved, handed to the
/// ledger inbox, notice URLs signed.
struct Bid {
    id: BidId,
    price_cpm_micros: i64,
}

impl Setup {
    fn bid(&mut self, price_cpm_micros: i64, ttl_ms: u64) -> Bid {
        self.bid_for(price_cpm_micros, ttl_ms, Unnoticed::Release)
    }

    /// [`Setup::bid`] to a partner whose `unnoticed_bids` is `unnoticed`.
    fn bid_for(&mut self, price_cpm_micros: i64, ttl_ms: u64, unnoticed: Unnoticed) -> Bid {
        let now_ms = self.calendar.now_unix_ms();
        let id = self.ids.next_id(now_ms);
        let reservation = self
            .budgets
            .reserve(0, impression_cost_micros(price_cpm_micros))
            .expect("budget left");
        self.inbox
            .hold(HeldBid {
                bid_id: id,
                reservation,
                expires_at_ms: now_ms + ttl_ms,
                user_key: None,
                unnoticed,
                segment: 0,
            })
            .expect("inbox has room");
        Bid {
            id,
            price_cpm_micros,
        }
    }

    /// The path and query of `bid`'s `kind` notice, as the exchange would call it with
    /// `${AUCTION_PRICE}` replaced by `price` (left as is when `None`).
    fn notice_path(&self, bid: &Bid, kind: NoticeKind, price: Option<&str>) -> String {
        let fields = NoticeFields {
            bid_id: bid.id,
            imp_id: "imp-1",
            campaign_id: "camp 1",
            price_micros: bid.price_cpm_micros,
        };
        let signed = self.signer.sign(&fields);
        let mut url = Vec::new();
        self.signer.write_url(kind, &signed, &mut url);
        let url = String::from_utf8(url).unwrap();
        let path = url.strip_prefix("http://bidder.test").unwrap().to_owned();
        match price {
            Some(p) => path.replace("${AUCTION_PRICE}", p),
            None => path,
        }
    }

    /// Puts campaign "camp 1" in slot 0 with a daily budget, on UTC days.
    fn configure_camp_1(&self, daily_micros: i64) {
        let limits = BudgetLimits {
            daily_micros,
            hourly_micros: None,
            lifetime_micros: None,
        };
        let now_ms = self.calendar.now_unix_ms();
        self.budgets
            .configure(0, "camp 1", limits, &Calendar::utc(), now_ms);
    }

    fn budget(&self) -> (i64, i64, i64) {
        let s = self.budgets.snapshot(0);
        (s.available_micros, s.reserved_micros, s.spent_micros)
    }

    fn scrape(&self) -> String {
        let (status, body) = get(self.addr, "/metrics");
        assert_eq!(status, 200);
        body
    }
}

#[test]
fn health_answers_and_ready_follows_the_flag() {
    let s = start(ControlConfig::default());
    assert_eq!(get(s.addr, "/health"), (200, "ok\n".to_owned()));
    assert_eq!(get(s.addr, "/ready").0, 503);
    s.readiness.set_ready(true);
    assert_eq!(get(s.addr, "/ready"), (200, "ready\n".to_owned()));
    s.readiness.set_ready(false);
    assert_eq!(get(s.addr, "/ready").0, 503);
    assert_eq!(request(s.addr, "POST", "/health", b"").0, 405);
    assert_eq!(get(s.addr, "/reload").0, 405);
    assert_eq!(get(s.addr, "/nope").0, 404);
    s.port.shutdown().unwrap();
}

#[test]
fn notices_and_admin_answer_on_their_own_listeners_only() {
    let mut s = start(ControlConfig::default());
    let bid = s.bid(2_000_000, 60_000);
    let win = s.notice_path(&bid, NoticeKind::Win, Some("1.5"));
    let (status, body) = get(s.addr, &win);
    assert_eq!(status, 404, "no notices on the admin listener");
    assert!(body.contains("[notice] listen"), "{body}");
    for path in ["/metrics", "/health", "/ready", "/notice/other?bid=1"] {
        assert_eq!(get(s.notices, path).0, 404, "{path} on the notice listener");
    }
    assert_eq!(admin_post(s.notices, "/reload", b"good").0, 404);
    assert_eq!(s.reloads.load(Ordering::SeqCst), 0);
    assert_eq!(request(s.notices, "POST", "/notice/win", b"").0, 405);
    assert_eq!(
        s.budget(),
        (DAILY_MICROS - 2_000, 2_000, 0),
        "nothing settled"
    );
    assert_eq!(get(s.notices, &win).0, 204);
    assert_eq!(s.budget(), (DAILY_MICROS - 1_500, 0, 1_500));
    s.port.shutdown().unwrap();
}

#[test]
fn admin_calls_that_change_state_need_the_token() {
    let s = start(ControlConfig::default());
    for path in ["/reload", "/campaign/camp%201/resume"] {
        let (status, body) = request(s.addr, "POST", path, b"good");
        assert_eq!(status, 401, "{path} without a token: {body}");
        assert!(body.contains("admin_token_file"), "{body}");
        let wrong = format!("Authorization: Bearer {}x\r\n", &TOKEN[1..]);
        let (status, _) = testkit::http::exchange(s.addr, "POST", path, &wrong, b"").unwrap();
        assert_eq!(status, 401, "{path} with a wrong token");
    }
    assert_eq!(s.reloads.load(Ordering::SeqCst), 0, "never called");
    assert_eq!(admin_post(s.addr, "/reload", b"good").0, 200);
    assert_eq!(s.reloads.load(Ordering::SeqCst), 1);
    assert!(s.scrape().contains("bidder_admin_unauthorized_total 4\n"));
    s.port.shutdown().unwrap();

    // Without a token file nothing that changes state is served: fail closed.
    let s = start_full(ControlConfig::default(), None, false);
    let (status, body) = admin_post(s.addr, "/reload", b"good");
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("admin_token_file") && body.contains("SIGHUP"),
        "{body}"
    );
    assert_eq!(s.reloads.load(Ordering::SeqCst), 0);
    assert_eq!(get(s.addr, "/health").0, 200, "reads need no token");
    s.port.shutdown().unwrap();
}

/// Raises this process's open-file limit to its hard limit (a thousand client sockets
/// and the server's ends live in one test process).
fn raise_open_file_limit(needed: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    assert!(
        limit.rlim_max >= needed,
        "the hard open-file limit {} < {needed}",
        limit.rlim_max
    );
    limit.rlim_cur = limit.rlim_cur.max(needed);
    // SAFETY: setrlimit reads the struct; the soft limit stays within the hard one.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
}

/// A connection to `to` from the loopback address `from` (any port).
fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    socket.connect(&to.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    stream
}

/// One GET on a fresh connection from `from`; the status.
fn get_from(from: [u8; 4], to: SocketAddr, path: &str) -> u16 {
    let mut c = connect_from(from, to);
    write!(
        c,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    testkit::http::split_response(&answer).map_or(0, |(status, _)| status)
}

#[test]
fn a_thousand_idle_notice_connections_leave_notices_and_admin_unaffected() {
    const IDLE: usize = 1_000;
    raise_open_file_limit(4 * IDLE as u64);
    let mut s = start(ControlConfig::default());
    let per_source = NoticeListenerConfig::default().max_connections_per_source as usize;
    // One source holds a thousand connections that never send a byte.
    let idle: Vec<TcpStream> = (0..IDLE)
        .map(|_| connect_from([127, 0, 0, 1], s.notices))
        .collect();
    testkit::eventually(
        CLIENT_TIMEOUT,
        "every idle connection reaches the door",
        || {
            let text = s.scrape();
            text.contains(&format!(
            "bidder_control_connections_shed_total{{listener=\"notice\",reason=\"per_source\"}} {}\n",
            IDLE - per_source
        ))
        },
    );
    // Exchanges' notice servers at other addresses are served at once, and so is admin.
    let mut settled = 0;
    for i in 0..20u8 {
        let bid = s.bid(1_000_000, 60_000);
        let win = s.notice_path(&bid, NoticeKind::Win, Some("0.5"));
        if get_from([127, 0, 0, 2 + i % 4], s.notices, &win) == 204 {
            settled += 1;
        }
    }
    assert_eq!(settled, 20, "every real win notice was answered");
    assert_eq!(s.budget(), (DAILY_MICROS - 20 * 500, 0, 20 * 500));
    assert_eq!(get_from([127, 0, 0, 1], s.addr, "/health"), 200);
    let text = s.scrape();
    assert!(
        text.contains(&format!(
            "bidder_control_connections_open{{listener=\"notice\"}} {per_source}\n"
        )),
        "{text}"
    );
    drop(idle);
    s.port.shutdown().unwrap();
}

#[test]
fn a_win_settles_at_the_clearing_price_and_a_second_notice_counts_once() {
    let mut s = start(ControlConfig::default());
    let bid = s.bid(2_000_000, 60_000);
    assert_eq!(s.budget(), (DAILY_MICROS - 2_000, 2_000, 0));
    let win = s.notice_path(&bid, NoticeKind::Win, Some("1.5"));
    assert_eq!(get(s.notices, &win), (204, String::new()));
    assert_eq!(s.budget(), (DAILY_MICROS - 1_500, 0, 1_500));
    let bill = s.notice_path(&bid, NoticeKind::Bill, Some("1.5"));
    assert_eq!(get(s.notices, &bill).0, 204);
    assert_eq!(get(s.notices, &win).0, 204, "exchanges retry");
    assert_eq!(s.budget(), (DAILY_MICROS - 1_500, 0, 1_500), "charged once");
    let text = s.scrape();
    for needle in [
        "bidder_notices_total{kind=\"win\",outcome=\"settled\"} 1\n",
        "bidder_notices_total{kind=\"win\",outcome=\"duplicate\"} 1\n",
        "bidder_notices_total{kind=\"bill\",outcome=\"duplicate\"} 1\n",
        "bidder_ledger_settled_total 1\n",
        "bidder_ledger_duplicates_total 2\n",
        "bidder_ledger_pending 0\n",
    ] {
        assert!(text.contains(needle), "missing {needle}:\n{text}");
    }
    s.port.shutdown().unwrap();
}

#[test]
fn the_tick_starts_a_new_york_day_at_local_midnight_and_a_late_win_pays_for_its_own_day() {
    let mut s = start(ControlConfig::default());
    let new_york = Calendar::named("America/New_York").unwrap();
    let midnight_ms = new_york.bounds(s.calendar.now_unix_ms()).day_end_ms;
    s.calendar.set_unix_ms(midnight_ms - 1_000);
    let limits = BudgetLimits {
        daily_micros: DAILY_MICROS,
        hourly_micros: None,
        lifetime_micros: None,
    };
    s.budgets
        .configure(0, "camp 1", limits, &new_york, s.calendar.now_unix_ms());
    let bid = s.bid(2_000_000, 60_000);
    s.calendar.advance_ms(2_000);
    testkit::eventually(CLIENT_TIMEOUT, "the tick starts the new day", || {
        s.budgets.snapshot(0).day_start_ms == midnight_ms
    });
    assert_eq!(s.budget(), (DAILY_MICROS, 0, 0), "a new day, whole");
    let win = s.notice_path(&bid, NoticeKind::Win, Some("1.5"));
    assert_eq!(get(s.notices, &win).0, 204);
    let snap = s.budgets.snapshot(0);
    assert_eq!(
        snap.previous_day_spent_micros, 1_500,
        "charged to the day of the bid"
    );
    assert_eq!(
        (snap.spent_micros, snap.available_micros),
        (0, DAILY_MICROS)
    );
    s.port.shutdown().unwrap();
}

#[test]
fn a_price_in_another_currency_is_converted_or_charged_at_our_bid() {
    let mut s = start(ControlConfig::default());
    let in_currency = |s: &Setup, bid: &Bid, price: &str, cur: &str| {
        s.notice_path(bid, NoticeKind::Win, Some(price))
            .replace("${AUCTION_CURRENCY}", cur)
    };
    // 1.00 EUR at 1.08: 1.08 USD CPM, 1,080 micros an impression.
    let eur = s.bid(2_000_000, 60_000);
    assert_eq!(get(s.notices, &in_currency(&s, &eur, "1.0", "EUR")).0, 204);
    assert_eq!(s.budget(), (DAILY_MICROS - 1_080, 0, 1_080));
    // A currency without a rate cannot be read: charged at our bid, never less.
    let jpy = s.bid(2_000_000, 60_000);
    assert_eq!(get(s.notices, &in_currency(&s, &jpy, "150", "JPY")).0, 204);
    assert_eq!(s.budget(), (DAILY_MICROS - 3_080, 0, 3_080));
    // Ours, in any case.
    let usd = s.bid(2_000_000, 60_000);
    assert_eq!(get(s.notices, &in_currency(&s, &usd, "1.5", "usd")).0, 204);
    assert_eq!(s.budget(), (DAILY_MICROS - 4_580, 0, 4_580));
    let text = s.scrape();
    for needle in [
        "bidder_notice_currency_total{result=\"converted\"} 1\n",
        "bidder_notice_currency_total{result=\"unknown\"} 1\n",
    ] {
        assert!(text.contains(needle), "missing {needle}:\n{text}");
    }
    s.port.shutdown().unwrap();
}

#[test]
fn a_notice_without_a_readable_price_settles_at_our_bid() {
    let mut s = start(ControlConfig::default());
    // Exchanges that do not substitute the macro send it raw or percent-encoded.
    let raw_bid = s.bid(3_000_000, 60_000);
    let raw = s.notice_path(&raw_bid, NoticeKind::Win, None);
    assert_eq!(get(s.notices, &raw).0, 204);
    assert_eq!(s.budget(), (DAILY_MICROS - 3_000, 0, 3_000));
    let bid = s.bid(3_000_000, 60_000);
    let encoded = s
        .notice_path(&bid, NoticeKind::Bill, None)
        .replace("${AUCTION_PRICE}", "%24%7BAUCTION_PRICE%7D");
    assert_eq!(get(s.notices, &encoded).0, 204);
    assert_eq!(s.budget(), (DAILY_MICROS - 6_000, 0, 6_000));
    s.port.shutdown().unwrap();
}

#[test]
fn a_loss_returns_the_reservation_and_a_win_after_it_is_still_charged() {
    let mut s = start(ControlConfig::default());
    let bid = s.bid(2_000_000, 60_000);
    let loss = s.notice_path(&bid, NoticeKind::Loss, Some("2.5"));
    assert_eq!(get(s.notices, &loss).0, 204);
    assert_eq!(s.budget(), (DAILY_MICROS, 0, 0));
    // Notices may come in any order: the win after the loss is an impression.
    let win = s.notice_path(&bid, NoticeKind::Win, Some("1.0"));
    assert_eq!(get(s.notices, &win).0, 204);
    assert_eq!(s.budget(), (DAILY_MICROS - 1_000, 0, 1_000), "charged");
    let bill = s.notice_path(&bid, NoticeKind::Bill, Some("1.0"));
    assert_eq!(get(s.notices, &bill).0, 204);
    assert_eq!(get(s.notices, &loss).0, 204);
    assert_eq!(s.budget(), (DAILY_MICROS - 1_000, 0, 1_000), "once");
    let text = s.scrape();
    for needle in [
        "bidder_notices_total{kind=\"win\",outcome=\"settled\"} 1\n",
        "bidder_notices_total{kind=\"bill\",outcome=\"duplicate\"} 1\n",
        "bidder_notices_total{kind=\"loss\",outcome=\"duplicate\"} 1\n",
        "bidder_ledger_late_settled_total 1\n",
    ] {
        assert!(text.contains(needle), "missing {needle}:\n{text}");
    }
    s.port.shutdown().unwrap();
}

#[test]
fn each_bids_first_notice_counts_what_it_says_about_the_market() {
    use bidder_common::table::stats::feedback_bucket;
    let mut s = start(ControlConfig::default());
    const MAX_BID: i64 = 4_000_000;
    s.configure_camp_1(DAILY_MICROS);
    s.budgets.feedback().set_reference(0, MAX_BID);
    let notice = |s: &Setup, bid: &Bid, kind, mtw: &str| {
        let path = s
            .notice_path(bid, kind, Some("2.0"))
            .replace("${AUCTION_MIN_TO_WIN}", mtw)
            .replace("${AUCTION_LOSS}", "102");
        assert_eq!(get(s.notices, &path).0, 204, "{path}");
    };
    // Min-to-win on a win and on a loss; then a win and a loss without one (an
    // empty macro, as exchanges send when they withhold it).
    let bids: Vec<Bid> = (0..4).map(|_| s.bid(2_000_000, 60_000)).collect();
    notice(&s, &bids[0], NoticeKind::Win, "1.5");
    notice(&s, &bids[1], NoticeKind::Loss, "2.6");
    notice(&s, &bids[2], NoticeKind::Win, "");
    notice(&s, &bids[3], NoticeKind::Loss, "");
    // A duplicate and a bill after the win say nothing new.
    notice(&s, &bids[0], NoticeKind::Bill, "1.5");
    notice(&s, &bids[1], NoticeKind::Loss, "2.6");
    let f = s.budgets.feedback().snapshot(0).unwrap();
    assert_eq!(f.min_to_win.iter().sum::<u32>(), 2);
    assert_eq!(f.min_to_win[feedback_bucket(1_500_000, MAX_BID)], 1);
    assert_eq!(f.min_to_win[feedback_bucket(2_600_000, MAX_BID)], 1);
    assert_eq!(f.won_at.iter().sum::<u32>(), 1);
    assert_eq!(f.won_at[feedback_bucket(2_000_000, MAX_BID)], 1);
    assert_eq!(f.lost_at.iter().sum::<u32>(), 1);
    assert_eq!(f.lost_at[feedback_bucket(2_000_000, MAX_BID)], 1);
    s.port.shutdown().unwrap();
}

#[test]
fn a_late_win_is_charged_from_what_is_left_and_never_past_the_limit() {
    let mut s = start(ControlConfig {
        ledger_tick_ms: 10,
        ..ControlConfig::default()
    });
    // Two bids of 0.4 of the day's budget whose reservations go back unanswered.
    let (a, b) = (s.bid(400_000_000, 50), s.bid(400_000_000, 50));
    s.calendar.advance_ms(50);
    let budgets = Arc::clone(&s.budgets);
    testkit::eventually(CLIENT_TIMEOUT, "the reservations to expire", || {
        budgets.snapshot(0).reserved_micros == 0
    });
    // Meanwhile another bid takes 0.6 of the budget and wins.
    let other = s.bid(600_000_000, 60_000);
    let win = s.notice_path(&other, NoticeKind::Win, None);
    assert_eq!(get(s.notices, &win).0, 204);
    assert_eq!(s.budget(), (400_000, 0, 600_000));
    // The first late win fits what is left; the second would go past the limit, so
    // it is counted, not charged.
    for late in [&a, &b] {
        let win = s.notice_path(late, NoticeKind::Win, None);
        assert_eq!(get(s.notices, &win).0, 204);
    }
    assert_eq!(s.budget(), (0, 0, DAILY_MICROS), "never past the limit");
    let text = s.scrape();
    for needle in [
        "bidder_ledger_late_settled_total 1\n",
        "bidder_ledger_late_unfunded_total 1\n",
        "bidder_notices_total{kind=\"win\",outcome=\"unfunded\"} 1\n",
    ] {
        assert!(text.contains(needle), "missing {needle}:\n{text}");
    }
    s.port.shutdown().unwrap();
}

#[test]
fn forged_edited_or_malformed_notices_are_refused_and_change_nothing() {
    let mut s = start(ControlConfig::default());
    let bid = s.bid(2_000_000, 60_000);
    let win = s.notice_path(&bid, NoticeKind::Win, Some("1.5"));
    let cases = [
        (win.replace("px=2000000", "px=1"), "bad_signature"),
        (win.replace("cid=camp%201", "cid=camp%202"), "bad_signature"),
        (win.replace("&sig=", "&nosig="), "missing_field"),
        // A loss made from the win URL: each kind has its own signature.
        (
            win.replace("/notice/win?", "/notice/loss?"),
            "bad_signature",
        ),
        (format!("{win}&bid=1"), "repeated_field"),
        ("/notice/win".to_owned(), "missing_field"),
    ];
    for (path, _) in &cases {
        let (status, body) = get(s.notices, path);
        assert_eq!(status, 400, "{path}");
        assert!(!body.is_empty(), "a reason is given");
    }
    assert_eq!(s.budget(), (DAILY_MICROS - 2_000, 2_000, 0));
    let text = s.scrape();
    for needle in [
        "bidder_notices_refused_total{kind=\"win\",reason=\"bad_signature\"} 2\n",
        "bidder_notices_refused_total{kind=\"win\",reason=\"missing_field\"} 2\n",
        "bidder_notices_refused_total{kind=\"win\",reason=\"repeated_field\"} 1\n",
        "bidder_notices_refused_total{kind=\"loss\",reason=\"bad_signature\"} 1\n",
    ] {
        assert!(text.contains(needle), "missing {needle}:\n{text}");
    }
    assert_eq!(
        get(s.notices, &win).0,
        204,
        "the genuine notice still settles"
    );
    assert_eq!(s.budget(), (DAILY_MICROS - 1_500, 0, 1_500));
    s.port.shutdown().unwrap();
}

#[test]
fn overdue_reservations_expire_on_the_tick_without_any_notice() {
    let mut s = start(ControlConfig {
        ledger_tick_ms: 10,
        ..ControlConfig::default()
    });
    let bid = s.bid(2_000_000, 50);
    // The calendar stands still: however many ticks pass, the bid is not overdue.
    thread::sleep(Duration::from_millis(100));
    assert_eq!(s.budget(), (DAILY_MICROS - 2_000, 2_000, 0));
    s.calendar.advance_ms(50);
    let budgets = Arc::clone(&s.budgets);
    testkit::eventually(CLIENT_TIMEOUT, "the reservation to expire", || {
        budgets.snapshot(0).reserved_micros == 0
    });
    assert_eq!(s.budget(), (DAILY_MICROS, 0, 0));
    let late = s.notice_path(&bid, NoticeKind::Win, Some("1.5"));
    assert_eq!(get(s.notices, &late).0, 204);
    assert_eq!(
        s.budget(),
        (DAILY_MICROS - 1_500, 0, 1_500),
        "a late win is charged from the budget it has now"
    );
    let text = s.scrape();
    assert!(text.contains("bidder_ledger_expired_total 1\n"), "{text}");
    assert!(
        text.contains("bidder_ledger_late_settled_total 1\n"),
        "{text}"
    );
    s.port.shutdown().unwrap();
}

#[test]
fn a_shorter_reservation_ttl_applies_to_the_bids_held_already() {
    let mut s = start(ControlConfig::default());
    let bid = s.bid(2_000_000, 60_000);
    assert_eq!(s.budget(), (DAILY_MICROS - 2_000, 2_000, 0));
    s.calendar.advance_ms(5_000);
    thread::sleep(Duration::from_millis(50));
    assert_eq!(s.budget().1, 2_000, "held: 55 s of its 60 s left");
    // A reload lowers the TTL to 3 s: the bid, 5 s old, is overdue at once.
    s.ttl.store(3_000, Ordering::Release);
    let budgets = Arc::clone(&s.budgets);
    testkit::eventually(CLIENT_TIMEOUT, "the held bid to expire", || {
        budgets.snapshot(0).reserved_micros == 0
    });
    // Its win still counts when it comes, from what the budget has.
    let win = s.notice_path(&bid, NoticeKind::Win, Some("1.5"));
    assert_eq!(get(s.notices, &win).0, 204);
    assert_eq!(s.budget(), (DAILY_MICROS - 1_500, 0, 1_500));
    s.port.shutdown().unwrap();
}

#[test]
fn reload_reports_the_summary_or_the_error() {
    let s = start(ControlConfig {
        max_reload_body_bytes: 16,
        ..ControlConfig::default()
    });
    assert_eq!(
        admin_post(s.addr, "/reload", b"good"),
        (
            200,
            "test.toml: reloaded: 2 partners, 3 campaigns\n".to_owned()
        )
    );
    assert_eq!(
        admin_post(s.addr, "/reload", b"bad"),
        (
            400,
            "test.toml:3: [[campaign]] id: must not be empty\n".to_owned()
        )
    );
    assert_eq!(s.reloads.load(Ordering::SeqCst), 2);
    let (status, _) = admin_post(s.addr, "/reload", &[b'x'; 17]);
    assert_eq!(status, 413);
    assert_eq!(s.reloads.load(Ordering::SeqCst), 2, "not called");
    let text = s.scrape();
    assert!(text.contains("bidder_reloads_total{result=\"ok\"} 1\n"));
    assert!(text.contains("bidder_reloads_total{result=\"error\"} 1\n"));
    s.port.shutdown().unwrap();
}

/// Bids `{}` for every request (the engine side of the scrape tests).
struct Bids;

impl Service for Bids {
    fn handle(&self, _call: &BidCall<'_>, out: &mut ResponseBuf) -> Outcome {
        let _ = out.extend(b"{}");
        Outcome::Bid
    }
}

fn engine(registry: &Registry) -> (TokioEngine, Vec<Arc<bidder::metrics::WorkerMetrics>>) {
    let metrics = registry.add_workers(1);
    let engine = TokioEngine::start(
        TokioEngineConfig {
            serve: ServeConfig {
                listen_addr: "127.0.0.1:0".parse().unwrap(),
                ..ServeConfig::default()
            },
            workers: 1,
            cores: Vec::new(),
        },
        Arc::new(Bids),
        &metrics,
    )
    .expect("engine starts");
    registry.register(engine.collector());
    (engine, metrics)
}

/// Sends `n` pipelined bid requests on one connection and reads `n` answers.
fn bid_requests(addr: SocketAddr, n: usize) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    let one = b"POST /bid/acme HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
    let answer_len = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nx-openrtb-version: 2.6\r\n\r\n{}".len();
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let batch: Vec<u8> = chunk.iter().flat_map(|_| one.iter().copied()).collect();
        s.write_all(&batch).unwrap();
        let mut answers = vec![0; answer_len * chunk.len()];
        s.read_exact(&mut answers).expect("every request answered");
    }
}

#[test]
fn metrics_over_the_port_pass_promtool() {
    let mut s = start(ControlConfig::default());
    let (engine, _metrics) = engine(&s.registry);
    bid_requests(engine.local_addr(), 50);
    let bid = s.bid(1_000_000, 60_000);
    assert_eq!(
        get(
            s.notices,
            &s.notice_path(&bid, NoticeKind::Win, Some("0.8"))
        )
        .0,
        204
    );
    assert_eq!(get(s.notices, "/notice/bill?bid=x").0, 400);
    s.readiness.set_ready(true);
    let text = s.scrape();
    for needle in [
        "bidder_connections_accepted_total{engine=\"tokio\",worker=\"0\"} 1\n",
        "bidder_http_responses_total{status=\"200\"} 50\n",
        "bidder_ready 1\n",
        "# TYPE bidder_request_duration_seconds histogram\n",
    ] {
        assert!(text.contains(needle), "missing {needle}:\n{text}");
    }
    promtool_check(&text);
    engine.shutdown().unwrap();
    s.port.shutdown().unwrap();
}

#[test]
fn a_slow_scrape_never_blocks_a_worker_recording_latencies() {
    let s = start(ControlConfig::default());
    let (engine, metrics) = engine(&s.registry);
    let requests = 3 * PUBLISH_EVERY_RECORDS as usize;

    // Stand in for a scrape stuck mid-merge: hold the worker's published histograms.
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (held_tx, held_rx) = mpsc::channel::<()>();
    let holder = {
        let m = Arc::clone(&metrics[0]);
        thread::spawn(move || {
            m.with_published(|_, _| {
                held_tx.send(()).unwrap();
                release_rx.recv_timeout(CLIENT_TIMEOUT * 2).unwrap();
            })
        })
    };
    held_rx.recv_timeout(CLIENT_TIMEOUT).unwrap();
    // A real scrape now waits behind the held lock, as a slow one would.
    let addr = s.addr;
    let scrape = thread::spawn(move || get(addr, "/metrics"));

    // Every request is answered while the lock is still held (the scrape has not
    // finished, below): the worker never waited for it.
    bid_requests(engine.local_addr(), requests);
    let (published, skipped) = metrics[0].publish_counts();
    assert_eq!(
        published, 0,
        "nothing published while the scrape holds the lock"
    );
    assert!(skipped > 0, "the worker tried, skipped, and kept serving");
    assert!(!scrape.is_finished(), "the scrape is the one waiting");

    release_tx.send(()).unwrap();
    holder.join().unwrap();
    let (status, _) = scrape.join().unwrap();
    assert_eq!(status, 200);
    let expected = format!("bidder_request_duration_seconds_count {requests}\n");
    let limit = Duration::from_millis(PUBLISH_INTERVAL_MS * 30);
    let until = Instant::now() + limit;
    loop {
        let text = s.scrape();
        if text.contains(&expected) {
            break;
        }
        assert!(Instant::now() < until, "latencies never published:\n{text}");
        thread::sleep(Duration::from_millis(20));
    }
    engine.shutdown().unwrap();
    s.port.shutdown().unwrap();
}

#[test]
fn connections_are_bounded_and_stalled_heads_time_out() {
    let s = start(ControlConfig {
        max_connections: 2,
        header_read_timeout_ms: 300,
        ..ControlConfig::default()
    });
    let idle: Vec<TcpStream> = (0..2)
        .map(|_| {
            let c = TcpStream::connect(s.addr).unwrap();
            c.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
            c
        })
        .collect();
    thread::sleep(Duration::from_millis(50));
    let mut extra = TcpStream::connect(s.addr).unwrap();
    extra.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    let mut refused = String::new();
    extra.read_to_string(&mut refused).unwrap();
    assert!(refused.starts_with("HTTP/1.1 503 "), "{refused}");

    // The server closes them (end of stream), long before the client's own read
    // timeout would end the read with an error.
    for mut c in idle {
        let mut rest = Vec::new();
        let read = c.read_to_end(&mut rest);
        assert!(
            read.is_ok(),
            "a stalled head is closed by the server: {read:?}"
        );
    }
    testkit::eventually(CLIENT_TIMEOUT, "slots to free up", || {
        get(s.addr, "/health").0 == 200
    });
    assert!(s
        .scrape()
        .contains("bidder_control_connections_shed_total{listener=\"admin\",reason=\"full\"} 1\n"));
    s.port.shutdown().unwrap();
}

// ---- the spend journal ------------------------------------------------------------

/// A journal in `dir`, opened on the test's calendar.
fn journal_in(dir: &std::path::Path) -> (Journal, bidder::money::journal::Recovered) {
    let config = JournalConfig {
        path: dir.join("ledger.sqlite"),
        retention_days: 35,
    };
    let clock = DrivenClock::at(testkit::MONDAY_10_30_MS).clock();
    Journal::open(&config, clock, 0, 0).expect("journal opens")
}

/// Rows of the journal file as an operator would read them with `sqlite3`.
fn journal_rows(dir: &std::path::Path) -> Vec<(String, String, i64)> {
    let conn = rusqlite::Connection::open(dir.join("ledger.sqlite")).unwrap();
    let mut stmt = conn
        .prepare("SELECT campaign, outcome, charged_micros FROM notices ORDER BY at_ms, bid_id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn a_burst_of_wins_trips_the_spend_rate_breaker_which_audits_and_is_resumed() {
    let dir = testkit::TempDir::new("control-breaker");
    let (journal, _) = journal_in(&dir.0);
    let mut s = start_with(ControlConfig::default(), Some(journal));
    // 86.4 a day is 1,000 micros a second: 3× over 60 s allows 180,000.
    s.configure_camp_1(86_400_000);
    // Two wins at a 100.00 CPM: 200,000 micros within a second.
    for _ in 0..2 {
        let bid = s.bid(100_000_000, 60_000);
        let win = s.notice_path(&bid, NoticeKind::Win, None);
        assert_eq!(get(s.notices, &win).0, 204);
    }
    assert!(!s.budgets.snapshot(0).breaker_tripped, "not looked at yet");
    s.calendar.advance_ms(1_000);
    testkit::eventually(CLIENT_TIMEOUT, "the breaker trips", || {
        s.budgets.snapshot(0).breaker_tripped
    });
    assert!(s.budgets.reserve(0, 1).is_none(), "paused");
    assert!(s.scrape().contains("bidder_breaker_trips_total 1\n"));
    let events = || -> Vec<(String, String, String)> {
        let conn = rusqlite::Connection::open(dir.0.join("ledger.sqlite")).unwrap();
        let mut stmt = conn
            .prepare("SELECT campaign, kind, detail FROM events ORDER BY rowid")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    testkit::eventually(CLIENT_TIMEOUT, "the trip is audited", || {
        events().len() == 1
    });
    let (campaign, kind, detail) = &events()[0];
    assert_eq!(
        (campaign.as_str(), kind.as_str()),
        ("camp 1", "breaker_tripped")
    );
    assert!(
        detail.contains("200000") && detail.contains("180000"),
        "{detail}"
    );
    // Only POST resumes; an unknown campaign is named.
    assert_eq!(get(s.addr, "/campaign/camp%201/resume").0, 405);
    let (status, body) = admin_post(s.addr, "/campaign/nobody/resume", b"");
    assert_eq!((status, body.trim()), (404, "nobody: no such campaign"));
    let (status, body) = admin_post(s.addr, "/campaign/camp%201/resume", b"");
    assert_eq!(status, 200);
    assert!(body.contains("camp 1: resumed"), "{body}");
    assert!(s.budgets.reserve(0, 1).is_some(), "bids again");
    let (_, body) = admin_post(s.addr, "/campaign/camp%201/resume", b"");
    assert!(body.contains("had not paused"), "{body}");
    testkit::eventually(CLIENT_TIMEOUT, "the resume is audited", || {
        events().len() == 2
    });
    assert_eq!(events()[1].1, "breaker_resumed");
    assert!(s.scrape().contains("bidder_breaker_resumes_total 1\n"));
    s.port.shutdown().unwrap();
}

#[test]
fn an_answered_notice_is_on_disk_and_counts_once_after_a_restart() {
    let dir = testkit::TempDir::new("control-journal");
    let (journal, _) = journal_in(&dir.0);
    let mut s = start_with(ControlConfig::default(), Some(journal));
    let won = s.bid(2_000_000, 60_000);
    let lost = s.bid(1_000_000, 60_000);
    let win = s.notice_path(&won, NoticeKind::Win, Some("1.5"));
    assert_eq!(get(s.notices, &win).0, 204);
    // Answered means written: the row is there before anything else happens.
    assert_eq!(
        journal_rows(&dir.0),
        vec![("camp 1".to_owned(), "settled".to_owned(), 1_500)]
    );
    assert_eq!(get(s.notices, &win).0, 204, "a duplicate is answered too");
    let loss = s.notice_path(&lost, NoticeKind::Loss, Some("2.0"));
    assert_eq!(get(s.notices, &loss).0, 204);
    assert_eq!(
        journal_rows(&dir.0).len(),
        2,
        "the duplicate wrote nothing new"
    );
    let text = s.scrape();
    for needle in [
        "bidder_ledger_durable 1\n",
        "bidder_ledger_journal_failing 0\n",
        "bidder_ledger_journal_unwritten 0\n",
    ] {
        assert!(text.contains(needle), "missing {needle}:\n{text}");
    }
    s.port.shutdown().unwrap(); // joins the control thread, which closes the journal
                                // A restart reads the spend and the resolved bids back.
    let (_journal, recovered) = journal_in(&dir.0);
    assert_eq!(recovered.spent_since("camp 1", 0), 1_500);
    assert_eq!(recovered.lifetime_micros.get("camp 1"), Some(&1_500));
    let mut resolved: Vec<BidId> = recovered.resolved.iter().map(|r| r.0).collect();
    resolved.sort();
    let mut want = vec![won.id, lost.id];
    want.sort();
    assert_eq!(resolved, want);
}

#[test]
fn a_silent_bid_of_a_partner_that_always_answers_is_charged_journalled_and_kept() {
    let dir = testkit::TempDir::new("control-unnoticed");
    let (journal, _) = journal_in(&dir.0);
    let mut s = start_with(
        ControlConfig {
            ledger_tick_ms: 10,
            ..ControlConfig::default()
        },
        Some(journal),
    );
    s.configure_camp_1(DAILY_MICROS);
    let silent = s.bid_for(2_000_000, 50, Unnoticed::Charge);
    let released = s.bid(1_000_000, 50);
    s.calendar.advance_ms(50);
    testkit::eventually(CLIENT_TIMEOUT, "the charge to be on disk", || {
        journal_rows(&dir.0) == [("camp 1".to_owned(), "settled".to_owned(), 2_000)]
    });
    assert_eq!(
        s.budget(),
        (DAILY_MICROS - 2_000, 0, 2_000),
        "the silent bid is spent at its price, the other's money went back"
    );
    // Its loss notice comes late: the money stays spent, and that is counted.
    let loss = s.notice_path(&silent, NoticeKind::Loss, Some("2.5"));
    assert_eq!(get(s.notices, &loss).0, 204);
    assert_eq!(s.budget(), (DAILY_MICROS - 2_000, 0, 2_000));
    let late_win = s.notice_path(&released, NoticeKind::Win, Some("1.0"));
    assert_eq!(get(s.notices, &late_win).0, 204);
    let text = s.scrape();
    for needle in [
        "bidder_ledger_expired_total 2\n",
        "bidder_ledger_charged_unnoticed_total 1\n",
        "bidder_ledger_charged_unnoticed_micros_total 2000\n",
        "bidder_ledger_charged_then_lost_total 1\n",
        "bidder_ledger_late_settled_total 1\n",
    ] {
        assert!(text.contains(needle), "missing {needle}:\n{text}");
    }
    s.port.shutdown().unwrap();
    let (_journal, recovered) = journal_in(&dir.0);
    assert_eq!(
        recovered.spent_since("camp 1", 0),
        3_000,
        "a restart counts the charge"
    );
}

/// A small tmpfs mounted for one test and unmounted when dropped (even on failure).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: std::path::PathBuf, size: &str) -> Tmpfs {
        std::fs::create_dir_all(&at).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&at)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount tmpfs at {}", at.display());
        Tmpfs(at)
    }

    fn remount(&self, option: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{option}")])
            .arg(&self.0)
            .status()
            .expect("run mount");
        assert!(status.success(), "remount {option}");
    }

    /// Fills the file system until a write fails; the file is the filler.
    fn fill(&self) -> std::path::PathBuf {
        let filler = self.0.join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_answers_503_holds_the_charge_and_recovers() {
    if !testkit::skip_unless_root(
        "a_full_disk_answers_503_holds_the_charge_and_recovers",
        "mounting a tmpfs needs root",
    ) {
        return;
    }
    let dir = testkit::TempDir::new("control-journal-full");
    let fs = Tmpfs::mount(dir.0.join("mnt"), "2m");
    let (journal, _) = journal_in(&fs.0);
    let mut s = start_with(ControlConfig::default(), Some(journal));
    let first = s.bid(2_000_000, 60_000);
    assert_eq!(
        get(
            s.notices,
            &s.notice_path(&first, NoticeKind::Win, Some("1.0"))
        )
        .0,
        204
    );
    let filler = fs.fill();
    let bid = s.bid(2_000_000, 60_000);
    let win = s.notice_path(&bid, NoticeKind::Win, Some("1.5"));
    let (status, body) = get(s.notices, &win);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("spend ledger unavailable"), "{body}");
    // The money moved in memory all the same: the budget cannot be spent twice.
    assert_eq!(s.budget(), (DAILY_MICROS - 2_500, 0, 2_500));
    let text = s.scrape();
    assert!(text.contains("bidder_ledger_journal_failing 1\n"), "{text}");
    assert!(
        text.contains("bidder_ledger_journal_unwritten 1\n"),
        "{text}"
    );
    // The exchange's retry is a duplicate, still not durable: 503 again.
    assert_eq!(get(s.notices, &win).0, 503);
    // Fail closed: no new money is reserved while spend cannot be recorded.
    assert!(
        s.budgets.is_closed(),
        "budgets close with the journal failing"
    );
    assert!(s.budgets.reserve(0, 1).is_none());
    std::fs::remove_file(filler).unwrap();
    // The writer retries on its own; the next retry of the notice is answered.
    testkit::eventually(CLIENT_TIMEOUT, "the journal writes again", || {
        s.scrape().contains("bidder_ledger_journal_failing 0\n")
    });
    testkit::eventually(CLIENT_TIMEOUT, "bidding resumes", || !s.budgets.is_closed());
    assert_eq!(get(s.notices, &win).0, 204);
    assert_eq!(s.budget(), (DAILY_MICROS - 2_500, 0, 2_500), "charged once");
    let rows = journal_rows(&fs.0);
    assert_eq!(rows.iter().map(|r| r.2).sum::<i64>(), 2_500, "{rows:?}");
    s.port.shutdown().unwrap();
}

#[test]
fn a_read_only_ledger_refuses_to_start_and_a_remount_is_survived() {
    if !testkit::skip_unless_root(
        "a_read_only_ledger_refuses_to_start_and_a_remount_is_survived",
        "mounting a tmpfs needs root",
    ) {
        return;
    }
    let dir = testkit::TempDir::new("control-journal-ro");
    let fs = Tmpfs::mount(dir.0.join("mnt"), "4m");
    // Read-only at start: a clear refusal naming the file.
    fs.remount("ro");
    let config = JournalConfig {
        path: fs.0.join("ledger.sqlite"),
        retention_days: 35,
    };
    let clock = DrivenClock::at(testkit::MONDAY_10_30_MS).clock();
    let err = Journal::open(&config, clock, 0, 0)
        .err()
        .expect("a read-only folder is refused");
    let text = err.to_string();
    assert!(
        text.contains("ledger.sqlite") && text.contains("fix:"),
        "{text}"
    );
    // Read-only while running: 503 until it is writable again.
    fs.remount("rw");
    let (journal, _) = journal_in(&fs.0);
    let mut s = start_with(ControlConfig::default(), Some(journal));
    fs.remount("ro");
    let bid = s.bid(2_000_000, 60_000);
    let win = s.notice_path(&bid, NoticeKind::Win, Some("2.0"));
    assert_eq!(get(s.notices, &win).0, 503);
    fs.remount("rw");
    testkit::eventually(CLIENT_TIMEOUT, "the journal writes again", || {
        get(s.notices, &win).0 == 204
    });
    assert_eq!(journal_rows(&fs.0).len(), 1);
    s.port.shutdown().unwrap();
}
