//! Fleet mode with real processes: one `redis-server` and three `bidder run`s sharing
//! acme-display's daily budget, each under load with a win notice for every bid.
//! Together they never spend more than the budget and leave little of it unspent, also
//! while Redis is killed, stopped, put to sleep or paused, and while a bidder holding a
//! lease is killed and restarted. A frequency cap holds across the three hosts.

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
/// The fault test's budget and load: a bid at most every 6 ms per host (under 500 wins
/// a second over three hosts), so 6,000 wins outlast the faults (about 9 s) on any
/// machine.
const FAULT_BUDGET_MICROS: u64 = 6_000_000;
const FAULT_PACE: Duration = Duration::from_millis(6);
/// Every win is notified at 1.00 CPM: 1,000 micros an impression (the bid is 1.80).
const CLEARING_CPM: &str = "1.0";
const CLEARING_MICROS: u64 = 1_000;

/// The tests of this file run one at a time: each runs three or more bidders and a
/// Redis on a 2-core machine, and their timing assertions (deadlines) need the CPU.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}
/// A bid slower than this is a missed deadline (the requests' `tmax` is 1,000 ms).
const DEADLINE: Duration = Duration::from_millis(1_000);
/// The load stops once every host has answered no bid for this long.
const QUIET_FOR: Duration = Duration::from_millis(1_500);
/// The most a run may take before the test gives up.
const RUN_LIMIT: Duration = Duration::from_secs(90);

/// `program` (redis-server, redis-cli) without the test's shifted clock: Redis is
/// another machine, and it does not run under libfaketime (CI's "400 days ahead" step).
fn redis_command(program: &str) -> Command {
    let mut command = Command::new(program);
    for var in ["LD_PRELOAD", "FAKETIME", "FAKETIME_SHARED"] {
        command.env_remove(var);
    }
    command
}

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
        let child = redis_command("redis-server")
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

    /// What the fleet store says acme-display's hosts spent.
    fn fleet_spent(&self) -> u64 {
        self.day_field("S")
    }

    /// A field of acme-display's campaign-day hashes, summed over days (one in a test).
    fn day_field(&self, field: &str) -> u64 {
        let mut c = self.connection().expect("redis is up");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("{fleet-test:c:acme-display}:d:*")
            .query(&mut c)
            .unwrap();
        keys.iter()
            .map(|k| {
                redis::cmd("HGET")
                    .arg(k)
                    .arg(field)
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
fn fleet_bidder(host_id: u16, redis: &str, budget_micros: u64) -> Daemon {
    fleet_bidder_with(host_id, &format!("\"{redis}\""), budget_micros, |t| t)
}

/// [`fleet_bidder`] with `redis_url`'s TOML value (a quoted URL or a cluster's list,
/// and any other `[fleet]` lines after it) and the configuration edited by `customise`
/// as well.
fn fleet_bidder_with(
    host_id: u16,
    redis: &str,
    budget_micros: u64,
    customise: impl Fn(String) -> String,
) -> Daemon {
    Daemon::start(&format!("fleet-{host_id}"), |t| {
        let t = customise(t);
        let t = edit(
            &t,
            "daily_budget_micros = 500_000_000",
            &format!("daily_budget_micros = {budget_micros}"),
        );
        let t = edit(
            &t,
            "host_id = 1\n",
            &format!("host_id = {host_id}\nreservation_ttl_ms = 3000\n"),
        );
        t + &format!(
            "\n[ledger]\npath = \"ledger.sqlite\"\n\n[breaker]\nspend_rate_multiple = 0\n\n\
             [fleet]\nredis_url = {redis}\nkey_prefix = \"fleet-test\"\nrenew_interval_ms = 20\n\
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

/// When (ms into the run) any host last bid.
fn last_bid_ms(seen: &[Seen]) -> u64 {
    seen.iter()
        .map(|s| s.last_bid_ms.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0)
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
            let last = last_bid_ms(&seen);
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
fn assert_within_budget(hosts: &[Daemon], redis: &Redis, seen: &[Seen], budget_micros: u64) {
    let by_hosts: u64 = hosts.iter().map(spent).sum();
    let late: u64 = seen.iter().map(|s| s.late.load(Ordering::Relaxed)).sum();
    let bids: u64 = seen.iter().map(|s| s.bids.load(Ordering::Relaxed)).sum();
    // The exchange's side: every bid won, and is paid for whether or not its notice
    // reached the bidder (a bidder killed after bidding never heard of some).
    assert!(
        bids * CLEARING_MICROS <= budget_micros,
        "the exchange charged {} for {bids} wins, over {budget_micros}",
        bids * CLEARING_MICROS
    );
    let no_bids: u64 = seen.iter().map(|s| s.no_bids.load(Ordering::Relaxed)).sum();
    eprintln!(
        "fleet: {bids} bids, {no_bids} no-bids, {late} late; spent {by_hosts} of {budget_micros}"
    );
    assert!(
        by_hosts <= budget_micros,
        "the fleet spent {by_hosts} > {budget_micros}"
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
    let _serial = one_at_a_time();
    let redis = Redis::start();
    let mut hosts: Vec<Daemon> = (1..=3)
        .map(|h| fleet_bidder(h, &redis.url(), BUDGET_MICROS))
        .collect();
    let (seen, _) = run_fleet(&mut hosts, Duration::ZERO, |_| {});
    assert_within_budget(&hosts, &redis, &seen, BUDGET_MICROS);
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
    let _serial = one_at_a_time();
    let mut redis = Redis::start();
    let url = redis.url();
    let mut hosts: Vec<Daemon> = (1..=3)
        .map(|h| fleet_bidder(h, &url, FAULT_BUDGET_MICROS))
        .collect();
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
    assert_within_budget(&hosts, &redis, &seen, FAULT_BUDGET_MICROS);
    let last_bid_ms = last_bid_ms(&seen);
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

/// The acme-display cap in the frequency test: impressions per user per day.
const CAP: u64 = 3;
/// Requests of one user are this far apart (well over a tick plus two round trips).
const USER_SPACING: Duration = Duration::from_millis(250);

/// A banner request from user `buyeruid`.
fn banner_from(n: u64, buyeruid: &str) -> String {
    format!(
        r#"{{"id":"fc-{n}","tmax":1000,"imp":[{{"id":"1","banner":{{"w":300,"h":250}}}}],"site":{{"domain":"news.example"}},"user":{{"buyeruid":"{buyeruid}"}}}}"#
    )
}

/// acme-display capped at 3 a day: each user's requests go round the three hosts, and
/// every bid wins. Counted per host only, a user would see 3 impressions on each host
/// (9); shared through Redis, they see 3 in all.
#[test]
fn a_frequency_cap_holds_across_three_hosts() {
    let _serial = one_at_a_time();
    let redis = Redis::start();
    let capped = |t: String| edit(&t, "# frequency_cap = 3", &format!("frequency_cap = {CAP}"));
    let hosts: Vec<Daemon> = (1..=3)
        .map(|h| fleet_bidder_with(h, &format!("\"{}\"", redis.url()), BUDGET_MICROS, capped))
        .collect();
    let users: Vec<String> = (0..8).map(|u| format!("fleet-user-{u}")).collect();
    let mut wins = vec![0u64; users.len()];
    let mut n = 0u64;
    for round in 0..(3 * CAP as usize + 3) {
        for (u, user) in users.iter().enumerate() {
            n += 1;
            let d = &hosts[(round + u) % hosts.len()];
            let (status, text) = testkit::http::exchange(
                d.bid,
                "POST",
                "/bid/exchange-a",
                "",
                banner_from(n, user).as_bytes(),
            )
            .expect("the bidder answers");
            if status != 200 {
                continue;
            }
            let json: serde_json::Value = serde_json::from_str(&text).unwrap();
            let bid = &json["seatbid"][0]["bid"][0];
            if bid["cid"] != "acme-display" {
                continue;
            }
            let url = bid["nurl"]
                .as_str()
                .unwrap()
                .replace("${AUCTION_PRICE}", CLEARING_CPM);
            let path = url.strip_prefix(&format!("http://{}", d.notices)).unwrap();
            assert_eq!(
                testkit::http::exchange(d.notices, "GET", path, "", b"")
                    .unwrap()
                    .0,
                204
            );
            wins[u] += 1;
        }
        thread::sleep(USER_SPACING);
    }
    eprintln!("fleet frequency: impressions per user {wins:?} (cap {CAP})");
    for (u, &w) in wins.iter().enumerate() {
        assert_eq!(w, CAP, "user {u} saw {w} impressions of a cap of {CAP}");
    }
    let shared: u64 = hosts
        .iter()
        .map(|d| metric_sum(&d.metrics(), "bidder_fleet_impressions_observed_total"))
        .sum();
    assert!(shared > 0, "no host read another's counts");
}

/// A Redis Cluster on loopback: three masters, each with a replica, killed when
/// dropped. Ports stay below 22768 so each bus port (+10000) is below 32768.
struct Cluster {
    nodes: Vec<(u16, Child)>,
    _dir: testkit::TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = testkit::TempDir::new("redis-cluster");
        let base = (12_000..22_000)
            .step_by(10)
            .map(|p| p + (std::process::id() % 50) as u16 * 10)
            .find(|&p| {
                p + 5 < 22_768
                    && (p..p + 6).all(|q| {
                        TcpListener::bind(("127.0.0.1", q)).is_ok()
                            && TcpListener::bind(("127.0.0.1", q + 10_000)).is_ok()
                    })
            })
            .expect("six free ports and their bus ports");
        let nodes = (base..base + 6)
            .map(|port| {
                let child = redis_command("redis-server")
                    .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                    .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"])
                    .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                    .args(["--save", "", "--appendonly", "no"])
                    .arg("--dir")
                    .arg(&dir.0)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("redis-server");
                (port, child)
            })
            .collect();
        let cluster = Cluster { nodes, _dir: dir };
        for (port, _) in &cluster.nodes {
            testkit::eventually(Duration::from_secs(10), "a cluster node answers", || {
                Cluster::query::<String>(*port, &["PING"]).is_some()
            });
        }
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|(p, _)| format!("127.0.0.1:{p}"))
            .collect();
        let created = redis_command("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli");
        assert!(created.success(), "redis-cli --cluster create");
        for (port, _) in &cluster.nodes {
            testkit::eventually(Duration::from_secs(20), "cluster_state:ok", || {
                Cluster::query::<String>(*port, &["CLUSTER", "INFO"])
                    .is_some_and(|info| info.contains("cluster_state:ok"))
            });
            // A replica that never synced is too stale to be promoted: wait for it.
            testkit::eventually(Duration::from_secs(30), "replicas in sync", || {
                Cluster::query::<String>(*port, &["INFO", "replication"]).is_some_and(|info| {
                    info.contains("role:master") || info.contains("master_link_status:up")
                })
            });
        }
        cluster
    }

    /// A command to one node; its answer, read as `T`.
    fn query<T: redis::FromRedisValue>(port: u16, args: &[&str]) -> Option<T> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
        let mut c = client
            .get_connection_with_timeout(Duration::from_millis(500))
            .ok()?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut c).ok()
    }

    /// The first three nodes, as a fleet's `redis_url` lists them (TOML).
    fn redis_url_toml(&self) -> String {
        let urls: Vec<String> = self
            .nodes
            .iter()
            .take(3)
            .map(|(p, _)| format!("\"redis://127.0.0.1:{p}/\""))
            .collect();
        format!("[{}]", urls.join(", "))
    }

    /// The port of the master that serves `key`'s slot now, as node `port` sees it.
    fn master_of(port: u16, key: &str) -> Option<u16> {
        let slot: u16 = Cluster::query(port, &["CLUSTER", "KEYSLOT", key])?;
        let nodes: String = Cluster::query(port, &["CLUSTER", "NODES"])?;
        nodes
            .lines()
            .filter(|l| l.contains("master") && !l.contains("fail"))
            .find_map(|l| {
                let fields: Vec<&str> = l.split(' ').collect();
                let owns = fields[8..].iter().any(|range| {
                    let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                    matches!((lo.parse::<u16>(), hi.parse::<u16>()), (Ok(lo), Ok(hi)) if (lo..=hi).contains(&slot))
                });
                let port = fields[1].split(['@', ':']).nth(1)?.parse().ok()?;
                owns.then_some(port)
            })
    }

    fn kill(&mut self, port: u16) {
        let (_, child) = self
            .nodes
            .iter_mut()
            .find(|(p, _)| *p == port)
            .expect("a node on that port");
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Three hosts on a three-master Redis Cluster: the budget holds, also when the master
/// serving the campaign's slot is killed mid-run (its replica takes over, the hosts
/// re-report and carry on).
#[test]
fn a_redis_cluster_holds_the_budget_through_the_loss_of_the_campaigns_master() {
    let _serial = one_at_a_time();
    let mut cluster = Cluster::start();
    let url = cluster.redis_url_toml();
    let mut hosts: Vec<Daemon> = (1..=3)
        .map(|h| fleet_bidder_with(h, &url, FAULT_BUDGET_MICROS, |t| t))
        .collect();
    let cluster_ref = &mut cluster;
    let key = "{fleet-test:c:acme-display}";
    let (seen, faults_done_ms) = run_fleet(&mut hosts, FAULT_PACE, |hosts| {
        thread::sleep(Duration::from_millis(1_500));
        let first = cluster_ref.nodes[0].0;
        let master = Cluster::master_of(first, key).expect("a master serves the slot");
        cluster_ref.kill(master);
        // Its replica is promoted after the node timeout (1 s) and a vote; then the
        // hosts find it and renew again.
        let alive = cluster_ref
            .nodes
            .iter()
            .find(|(p, _)| *p != master)
            .unwrap()
            .0;
        testkit::eventually(Duration::from_secs(30), "a replica takes the slot", || {
            Cluster::master_of(alive, key).is_some_and(|m| m != master)
        });
        // Every host is granted budget again from the promoted replica.
        let granted = |d: &Daemon| metric_sum(&d.metrics(), "bidder_fleet_granted_micros_total");
        let before: Vec<u64> = hosts.iter().map(granted).collect();
        testkit::eventually(Duration::from_secs(30), "every host granted again", || {
            hosts.iter().zip(&before).all(|(d, b)| granted(d) > *b)
        });
    });
    let by_hosts: u64 = hosts.iter().map(spent).sum();
    let late: u64 = seen.iter().map(|s| s.late.load(Ordering::Relaxed)).sum();
    let bids: u64 = seen.iter().map(|s| s.bids.load(Ordering::Relaxed)).sum();
    eprintln!(
        "fleet on a cluster: spent {by_hosts} of {FAULT_BUDGET_MICROS}, {bids} bids, {late} late"
    );
    assert!(bids * CLEARING_MICROS <= FAULT_BUDGET_MICROS, "{bids} wins");
    assert!(
        by_hosts <= FAULT_BUDGET_MICROS,
        "the fleet spent {by_hosts} > {FAULT_BUDGET_MICROS}"
    );
    assert_eq!(late, 0, "answers later than the deadline");
    let last_bid_ms = last_bid_ms(&seen);
    assert!(
        last_bid_ms > faults_done_ms,
        "no bid after the failover ({faults_done_ms} ms): the hosts did not carry on"
    );
}

/// `rediss://`: two hosts share the budget through a Redis that speaks only TLS, its
/// certificate checked against `tls_ca_file`; a host given the wrong CA gets nothing.
#[test]
fn a_fleet_over_tls_shares_the_budget_and_refuses_an_unknown_certificate() {
    let _serial = one_at_a_time();
    let dir = testkit::TempDir::new("redis-tls");
    let [ca, cert, key] = testkit::tls::certificates(&dir.0);
    let port = (23_000..32_000)
        .map(|p| p + (std::process::id() % 83) as u16 * 100)
        .find(|&p| p < 32_768 && TcpListener::bind(("127.0.0.1", p)).is_ok())
        .expect("a free port for redis");
    let mut server = redis_command("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .arg("--tls-cert-file")
        .arg(&cert)
        .arg("--tls-key-file")
        .arg(&key)
        .args([
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server with TLS");
    testkit::eventually(Duration::from_secs(10), "redis listens for TLS", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let fleet = format!(
        "\"rediss://127.0.0.1:{port}/\"\ntls_ca_file = \"{}\"",
        ca.display()
    );
    let mut hosts: Vec<Daemon> = (1..=2)
        .map(|h| fleet_bidder_with(h, &fleet, BUDGET_MICROS, |t| t))
        .collect();
    // A third host trusting another CA never connects.
    let other = testkit::TempDir::new("redis-tls-other");
    let [wrong_ca, _, _] = testkit::tls::certificates(&other.0);
    let stranger = fleet_bidder_with(
        3,
        &format!(
            "\"rediss://127.0.0.1:{port}/\"\ntls_ca_file = \"{}\"",
            wrong_ca.display()
        ),
        BUDGET_MICROS,
        |t| t,
    );
    let (seen, _) = run_fleet(&mut hosts, Duration::ZERO, |_| {});
    let spent: u64 = hosts.iter().map(spent).sum();
    let late: u64 = seen.iter().map(|s| s.late.load(Ordering::Relaxed)).sum();
    let bids: u64 = seen.iter().map(|s| s.bids.load(Ordering::Relaxed)).sum();
    eprintln!("fleet over TLS: spent {spent} of {BUDGET_MICROS}, {bids} bids, {late} late");
    assert!(bids * CLEARING_MICROS <= BUDGET_MICROS, "{bids} wins");
    assert!(
        spent <= BUDGET_MICROS,
        "the fleet spent {spent} > {BUDGET_MICROS}"
    );
    assert!(
        spent >= BUDGET_MICROS * 95 / 100,
        "spent {spent} of {BUDGET_MICROS}"
    );
    assert_eq!(late, 0);
    let text = stranger.metrics();
    assert!(text.contains("bidder_fleet_store_up 0"), "{text}");
    assert_eq!(metric_sum(&text, "bidder_fleet_granted_micros_total"), 0);
    assert!(
        stranger.log().contains("fleet store unreachable"),
        "{}",
        stranger.log()
    );
    let _ = server.kill();
    let _ = server.wait();
}

/// A host stopped with SIGTERM gives back the lease it did not use: in Redis its grant
/// less its returns is what it spent, and another host can be granted the rest.
#[test]
fn a_host_stopping_gives_its_unused_lease_back() {
    let _serial = one_at_a_time();
    let redis = Redis::start();
    let mut d = fleet_bidder(1, &redis.url(), BUDGET_MICROS);
    let seen = Seen::default();
    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        let (bid, notices) = (d.bid, d.notices);
        let (seen, stop) = (&seen, &stop);
        scope.spawn(move || load(bid, notices, seen, stop, Instant::now(), FAULT_PACE));
        testkit::eventually(Duration::from_secs(20), "some wins", || {
            seen.bids.load(Ordering::Relaxed) >= 50
        });
        stop.store(true, Ordering::Relaxed);
    });
    let spent_before_stop = spent(&d);
    d.signal(libc::SIGTERM);
    d.wait_exit(EXIT_TIMEOUT);
    let (granted, returned) = (redis.day_field("g:h1"), redis.day_field("r:h1"));
    eprintln!("stopped host: granted {granted}, returned {returned}, spent {spent_before_stop}");
    assert!(returned > 0, "nothing returned");
    assert_eq!(
        granted - returned,
        spent_before_stop,
        "kept more than it spent"
    );
    assert_eq!(redis.fleet_spent(), spent_before_stop);
}
