//! Fleet mode with real processes: one `redis-server` and three `bidder run`s sharing
//! acme-display's daily budget, each under load with a win notice for every bid.
//! Together they never spend more than the budget and leave little of it unspent, also
//! while Redis is killed, stopped, put to sleep or paused, and while a bidder holding a
//! lease is killed and restarted.

#[path = "engines/harness.rs"]
mod harness;
#[path = "support/daemon.rs"]
mod running;

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use harness::{banner, edit, metric_sum};
use running::{spawn_run, Daemon, EXIT_TIMEOUT};

/// acme-display's daily budget in these tests: 2,000 wins at the clearing price.
const BUDGET_MICROS: u64 = 2_000_000;
/// The fault test's load: a bid every this long per host (~450 wins a second over three
/// hosts), so the budget lasts through the faults.
const FAULT_PACE: Duration = Duration::from_millis(6);
/// Every win is notified at 1.00 CPM: 1,000 micros an impression (the bid is 1.80).
const CLEARING_CPM: &str = "1.0";
/// A bid slower than this is a missed deadline (the requests' `tmax` is 1,000 ms).
const DEADLINE: Duration = Duration::from_millis(1_000);
/// The load stops once every host has answered no bid for this long.
const QUIET_FOR: Duration = Duration::from_millis(1_500);
/// The most a run may take before the test gives up.
const RUN_LIMIT: Duration = Duration::from_secs(90);

/// A `redis-server` on loopback, without persistence (a restart loses everything, the
/// case the fleet's learning mode is for), killed when dropped.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    /// On a free port below 32768 (a cluster's bus port would be +10000).
    fn start() -> Redis {
        let port = (20_000..32_000)
            .map(|p| p + (std::process::id() % 97) as u16 * 100)
            .find(|&p| p < 32_768 && TcpListener::bind(("127.0.0.1", p)).is_ok())
            .expect("a free port for redis");
        Redis::start_on(port)
    }

    fn start_on(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--enable-debug-command", "local"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (installed by cargo xtask setup)");
        let redis = Redis { child, port };
        testkit::eventually(Duration::from_secs(10), "redis answers PING", || {
            redis.connection().is_some()
        });
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn connection(&self) -> Option<redis::Connection> {
        let client = redis::Client::open(self.url()).ok()?;
        let mut c = client
            .get_connection_with_timeout(Duration::from_millis(500))
            .ok()?;
        redis::cmd("PING").query::<String>(&mut c).ok()?;
        Some(c)
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) on our own unreaped child's pid.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill redis with {signal}");
    }

    /// `kill -9`, then a new server on the same port with nothing in it.
    fn kill_and_restart(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
        *self = Redis::start_on(self.port);
    }

    /// A command on its own connection, answered or not (a sleeping server answers
    /// late; the caller runs it on a thread of its own).
    fn command(&self, args: &[&str]) {
        if let Some(mut c) = self.connection() {
            let mut cmd = redis::cmd(args[0]);
            for a in &args[1..] {
                cmd.arg(*a);
            }
            let _: redis::RedisResult<redis::Value> = cmd.query(&mut c);
        }
    }

    /// What the fleet store says acme-display's hosts spent, and its budget field.
    fn fleet_spent(&self) -> u64 {
        let mut c = self.connection().expect("redis is up");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("{fleet-test:c:acme-display}:d:*")
            .query(&mut c)
            .unwrap();
        keys.iter()
            .map(|k| {
                redis::cmd("HGET")
                    .arg(k)
                    .arg("S")
                    .query::<Option<u64>>(&mut c)
                    .unwrap()
                    .unwrap_or(0)
            })
            .sum()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bidder of the fleet: host `host_id`, acme-display's budget shared through `redis`.
fn fleet_bidder(host_id: u16, redis: &str) -> Daemon {
    Daemon::start(&format!("fleet-{host_id}"), |t| {
        let t = edit(
            &t,
            "daily_budget_micros = 500_000_000",
            &format!("daily_budget_micros = {BUDGET_MICROS}"),
        );
        let t = edit(
            &t,
            "host_id = 1\n",
            &format!("host_id = {host_id}\nreservation_ttl_ms = 3000\n"),
        );
        t + &format!(
            "\n[ledger]\npath = \"ledger.sqlite\"\n\n[breaker]\nspend_rate_multiple = 0\n\n\
             [fleet]\nredis_url = \"{redis}\"\nkey_prefix = \"fleet-test\"\nrenew_interval_ms = 20\n\
             response_timeout_ms = 200\nlearning_ms = 500\nreport_interval_ms = 200\n"
        )
    })
}

/// What the load saw on one host.
#[derive(Default)]
struct Seen {
    bids: AtomicU64,
    no_bids: AtomicU64,
    /// Answers slower than the deadline, or no answer at all from a live bidder.
    late: AtomicU64,
    last_bid_ms: AtomicU64,
}

/// Bids on `bid` and sends every bid's win notice to `notices` until `stop`; a refused
/// connection (the bidder is being restarted) is retried.
fn load(
    bid: SocketAddr,
    notices: SocketAddr,
    seen: &Seen,
    stop: &AtomicBool,
    epoch: Instant,
    pace: Duration,
) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        thread::sleep(pace);
        let started = Instant::now();
        let body = banner(&format!("fleet-{n}"));
        let answer = testkit::http::exchange(bid, "POST", "/bid/exchange-a", "", body.as_bytes());
        let Ok((status, text)) = answer else {
            thread::sleep(Duration::from_millis(20));
            continue;
        };
        if started.elapsed() > DEADLINE {
            seen.late.fetch_add(1, Ordering::Relaxed);
        }
        if status != 200 {
            seen.no_bids.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        seen.bids.fetch_add(1, Ordering::Relaxed);
        seen.last_bid_ms
            .store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        let json: serde_json::Value = serde_json::from_str(&text).expect("a bid is JSON");
        let url = json["seatbid"][0]["bid"][0]["nurl"]
            .as_str()
            .expect("a bid carries its nurl")
            .replace("${AUCTION_PRICE}", CLEARING_CPM);
        let path = url
            .strip_prefix(&format!("http://{notices}"))
            .expect("nurl points at the notice listener");
        let _ = testkit::http::exchange(notices, "GET", path, "", b"");
    }
}

/// Spent on `d` by its own count (`bidder_budget_spent_micros`).
fn spent(d: &Daemon) -> u64 {
    metric_sum(&d.metrics(), "bidder_budget_spent_micros")
}

/// Runs load on every host, with `faults` run on the side (given the hosts and how
/// long the load has run), until every host has bid nothing for [`QUIET_FOR`] after the
/// faults are done. Returns what each host saw, and when (ms into the run) the faults
/// were done.
fn run_fleet(
    hosts: &mut [Daemon],
    pace: Duration,
    faults: impl FnOnce(&mut [Daemon]) + Send,
) -> (Vec<Seen>, u64) {
    let seen: Vec<Seen> = hosts.iter().map(|_| Seen::default()).collect();
    let stop = AtomicBool::new(false);
    let faults_done = AtomicBool::new(false);
    let faults_done_ms = AtomicU64::new(0);
    let epoch = Instant::now();
    let addrs: Vec<(SocketAddr, SocketAddr)> = hosts.iter().map(|d| (d.bid, d.notices)).collect();
    thread::scope(|scope| {
        for ((bid, notices), seen) in addrs.iter().zip(&seen) {
            let (stop, bid, notices) = (&stop, *bid, *notices);
            scope.spawn(move || load(bid, notices, seen, stop, epoch, pace));
        }
        let side = scope.spawn(|| {
            faults(hosts);
            faults_done_ms.store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
            faults_done.store(true, Ordering::Release);
        });
        loop {
            thread::sleep(Duration::from_millis(100));
            let now_ms = epoch.elapsed().as_millis() as u64;
            let last = seen
                .iter()
                .map(|s| s.last_bid_ms.load(Ordering::Relaxed))
                .max()
                .unwrap_or(0);
            let quiet = now_ms.saturating_sub(last) >= QUIET_FOR.as_millis() as u64;
            if (quiet && faults_done.load(Ordering::Acquire)) || epoch.elapsed() > RUN_LIMIT {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        side.join().expect("the fault thread");
    });
    assert!(
        epoch.elapsed() <= RUN_LIMIT,
        "the fleet was still bidding after {RUN_LIMIT:?}"
    );
    (seen, faults_done_ms.into_inner())
}

/// The budget bound over the whole fleet, by each host's own count and by Redis's.
fn assert_within_budget(hosts: &[Daemon], redis: &Redis, seen: &[Seen]) {
    let by_hosts: u64 = hosts.iter().map(spent).sum();
    let late: u64 = seen.iter().map(|s| s.late.load(Ordering::Relaxed)).sum();
    let bids: u64 = seen.iter().map(|s| s.bids.load(Ordering::Relaxed)).sum();
    let no_bids: u64 = seen.iter().map(|s| s.no_bids.load(Ordering::Relaxed)).sum();
    eprintln!(
        "fleet: {bids} bids, {no_bids} no-bids, {late} late; spent {by_hosts} of {BUDGET_MICROS}"
    );
    assert!(
        by_hosts <= BUDGET_MICROS,
        "the fleet spent {by_hosts} > {BUDGET_MICROS}"
    );
    assert_eq!(late, 0, "answers later than the deadline");
    // Redis hears the final spend within a report interval.
    testkit::eventually(
        Duration::from_secs(5),
        "Redis has every host's spend",
        || redis.fleet_spent() == by_hosts,
    );
}

/// Three hosts, one budget, load and a win for every bid on all three: the fleet
/// spends at most the budget and at least 95% of it.
#[test]
fn three_hosts_share_one_budget_and_spend_nearly_all_of_it() {
    let redis = Redis::start();
    let mut hosts: Vec<Daemon> = (1..=3).map(|h| fleet_bidder(h, &redis.url())).collect();
    let (seen, _) = run_fleet(&mut hosts, Duration::ZERO, |_| {});
    assert_within_budget(&hosts, &redis, &seen);
    let spent: u64 = hosts.iter().map(spent).sum();
    assert!(
        spent >= BUDGET_MICROS * 95 / 100,
        "the fleet spent {spent} of {BUDGET_MICROS}: leases stranded"
    );
    for (i, s) in seen.iter().enumerate() {
        assert!(
            s.bids.load(Ordering::Relaxed) > 0,
            "host {} never bid",
            i + 1
        );
    }
    // The fleet's series are on /metrics, in a form Prometheus takes.
    let text = hosts[0].metrics();
    assert!(text.contains("bidder_fleet_store_up 1"), "{text}");
    assert!(metric_sum(&text, "bidder_fleet_granted_micros_total") > 0);
    testkit::promtool::promtool_check(&text);
}

/// The same, with faults in the middle of the load: Redis stopped and continued, put
/// to sleep, pausing writes, killed and restarted empty (the hosts re-report), and a
/// bidder killed while it holds a lease (restarted with its ledger).
#[test]
fn faults_mid_run_never_overspend_and_every_bid_is_answered_in_time() {
    let mut redis = Redis::start();
    let url = redis.url();
    let mut hosts: Vec<Daemon> = (1..=3).map(|h| fleet_bidder(h, &url)).collect();
    let redis_ref = &mut redis;
    let (seen, faults_done_ms) = run_fleet(&mut hosts, FAULT_PACE, |hosts| {
        let pause = |ms| thread::sleep(Duration::from_millis(ms));
        pause(1_000);
        redis_ref.signal(libc::SIGSTOP);
        pause(1_000);
        redis_ref.signal(libc::SIGCONT);
        pause(300);
        thread::scope(|s| {
            s.spawn(|| redis_ref.command(&["DEBUG", "SLEEP", "2"]));
        });
        pause(300);
        redis_ref.command(&["CLIENT", "PAUSE", "3000", "WRITE"]);
        pause(3_300);
        redis_ref.kill_and_restart();
        pause(300);
        // A bidder holding a lease dies and comes back with its ledger.
        let d = &mut hosts[1];
        d.signal(libc::SIGKILL);
        d.wait_exit(EXIT_TIMEOUT);
        d.child = spawn_run(&d.config, &d.log);
        d.wait_ready().expect("the killed bidder restarts");
    });
    assert_within_budget(&hosts, &redis, &seen);
    let last_bid_ms = seen
        .iter()
        .map(|s| s.last_bid_ms.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    assert!(
        last_bid_ms > faults_done_ms,
        "the budget ran out before the faults ended ({faults_done_ms} ms): they were not mid-run"
    );
    let epochs: u64 = hosts
        .iter()
        .map(|d| metric_sum(&d.metrics(), "bidder_fleet_epochs_total"))
        .sum();
    assert!(epochs >= 1, "the hosts saw Redis lose its state");
    // While Redis could not grant, hosts that ran out said why.
    let waited: u64 = hosts
        .iter()
        .map(|d| reason_count(&d.metrics(), "budget_unavailable"))
        .sum();
    assert!(waited > 0, "no bid waited on the fleet store");
}

/// `bidder_decision_no_bid_imps_total` for one reason.
fn reason_count(metrics: &str, reason: &str) -> u64 {
    let needle = format!("bidder_decision_no_bid_imps_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&needle))
        .map_or(0, |v| v.trim().parse().unwrap())
}
