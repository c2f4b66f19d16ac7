//! The XDP front end to end: `bidder run` with `[xdp]` in a network namespace, real
//! TCP/HTTP from clients with the source addresses of an allowed partner, an over-rate
//! partner, an unknown source and a blocklisted one, over IPv4 and IPv6. Twice: native
//! mode on one end of a veth pair (clients in a second namespace), and generic mode on
//! `lo` inside one namespace. Asserts what got through and the per-partner counters on
//! `/metrics`.
//!
//! Needs root (namespaces, BPF); as another user it prints a skip line and passes. CI
//! runs as root. Namespaces, the bidder process and the pin directory are removed by
//! guards, also when an assertion fails.

#[path = "support/frames.rs"]
mod frames;
#[path = "support/netns.rs"]
mod netns;

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use netns::Netns;
use testkit::TempDir;

const BID_PORT: u16 = 18_280;
const ADMIN_PORT: u16 = 18_281;
/// Requests each client sends at once, each on its own connection.
const REQUESTS: usize = 30;
/// The over-rate partner's limit: requests (= payload packets here) per second, burst.
const SLOW_QPS: u64 = 2;
const SLOW_BURST: u64 = 2;
/// How long a client waits for a connection or an answer that XDP may have dropped.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(1);
const START_TIMEOUT: Duration = Duration::from_secs(30);
const BODY: &str = r#"{"id":"x1","tmax":500,"imp":[{"id":"1","banner":{"w":300,"h":250}}],"site":{"domain":"a.com"}}"#;

/// Source addresses of one scenario, and the prefixes the configuration gives them.
struct Addresses {
    allowed: [IpAddr; 2],
    slow: [IpAddr; 2],
    unknown: [IpAddr; 2],
    blocked: [IpAddr; 2],
    /// Where the bidder is reached, v4 and v6.
    server: [IpAddr; 2],
    allowed_cidrs: &'static str,
    slow_cidrs: &'static str,
    blocklist: &'static str,
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn native_on_veth_filters_real_traffic_by_partner() {
    if testkit::skip_unless_root(
        "native_on_veth_filters_real_traffic_by_partner",
        "namespaces, veth and XDP",
    ) {
        return;
    }
    let server_ns = Netns::new("srv");
    let client_ns = Netns::new("cli");
    let tag = std::process::id() % 100_000;
    let (srv_if, cli_if) = (format!("bxs{tag}"), format!("bxc{tag}"));
    server_ns.ip(&[
        "link",
        "add",
        &srv_if,
        "type",
        "veth",
        "peer",
        "name",
        &cli_if,
        "netns",
        &client_ns.name,
    ]);
    server_ns.ip(&["addr", "add", "10.77.0.1/16", "dev", &srv_if]);
    server_ns.ip(&["addr", "add", "fd77::1/64", "dev", &srv_if, "nodad"]);
    server_ns.ip(&["link", "set", &srv_if, "up"]);
    for a in [
        "10.77.1.1/16",
        "10.77.1.200/16",
        "10.77.2.1/16",
        "10.77.3.1/16",
    ] {
        client_ns.ip(&["addr", "add", a, "dev", &cli_if]);
    }
    for a in [
        "fd77::1:1/64",
        "fd77::1:bad/64",
        "fd77::2:1/64",
        "fd77::3:1/64",
    ] {
        client_ns.ip(&["addr", "add", a, "dev", &cli_if, "nodad"]);
    }
    client_ns.ip(&["link", "set", &cli_if, "up"]);
    let addresses = Addresses {
        allowed: [ip("10.77.1.1"), ip("fd77::1:1")],
        blocked: [ip("10.77.1.200"), ip("fd77::1:bad")],
        slow: [ip("10.77.2.1"), ip("fd77::2:1")],
        unknown: [ip("10.77.3.1"), ip("fd77::3:1")],
        server: [ip("10.77.0.1"), ip("fd77::1")],
        allowed_cidrs: r#"["10.77.1.0/24", "fd77::1:0/112"]"#,
        slow_cidrs: r#"["10.77.2.0/24", "fd77::2:0/112"]"#,
        blocklist: r#"["10.77.1.128/25", "fd77::1:bad/128"]"#,
    };
    scenario(&server_ns, &client_ns, &srv_if, "native", &addresses);
}

#[test]
fn generic_on_lo_filters_real_traffic_by_partner() {
    if testkit::skip_unless_root(
        "generic_on_lo_filters_real_traffic_by_partner",
        "namespaces and XDP",
    ) {
        return;
    }
    let ns = Netns::new("lo");
    for a in ["fd78::2/128", "fd78::3/128", "fd78::4/128", "fd79::5/128"] {
        ns.ip(&["addr", "add", a, "dev", "lo", "nodad"]);
    }
    let addresses = Addresses {
        allowed: [ip("127.0.0.2"), ip("fd78::2")],
        slow: [ip("127.0.0.3"), ip("fd78::3")],
        blocked: [ip("127.0.0.4"), ip("fd78::4")],
        unknown: [ip("127.0.1.5"), ip("fd79::5")],
        server: [ip("127.0.0.1"), ip("::1")],
        // The blocked and the over-rate sources lie inside the allowed partner's
        // prefixes: the blocklist and the longer prefix must win.
        allowed_cidrs: r#"["127.0.0.0/28", "fd78::/120"]"#,
        slow_cidrs: r#"["127.0.0.3/32", "fd78::3/128"]"#,
        blocklist: r#"["127.0.0.4/32", "fd78::4/128"]"#,
    };
    scenario(&ns, &ns, "lo", "generic", &addresses);
}

fn scenario(server_ns: &Netns, client_ns: &Netns, interface: &str, mode: &str, a: &Addresses) {
    let work = TempDir::new(&format!("bidder-xdp-traffic-{mode}"));
    let pin_dir = PinDir(PathBuf::from(format!(
        "/sys/fs/bpf/bidder-xdp-traffic-{mode}-{}",
        std::process::id()
    )));
    let config = work.0.join("bidder.toml");
    let tables = format!(
        "\n[strategy]\ntable_path = \"{d}/strategy\"\nstats_path = \"{d}/stats\"\n",
        d = work.0.display()
    );
    let text = bidder_config(interface, mode, &pin_dir.0, a) + &tables;
    std::fs::write(&config, text).unwrap();
    let _bidder = Bidder::start(server_ns, &config);
    let admin = SocketAddr::new(ip("127.0.0.1"), ADMIN_PORT);
    server_ns.run(|| wait_ready(admin));

    for family in 0..2 {
        let server = SocketAddr::new(a.server[family], BID_PORT);
        let (allowed, slow, unknown, blocked) = (
            a.allowed[family],
            a.slow[family],
            a.unknown[family],
            a.blocked[family],
        );
        // All requests of a client at once, from threads inside the client namespace
        // (threads inherit their creator's namespace).
        let answered = |from: IpAddr, partner: &str| {
            client_ns.run(|| {
                std::thread::scope(|s| {
                    let clients: Vec<_> = (0..REQUESTS)
                        .map(|_| s.spawn(move || bid(from, server, partner).is_some()))
                        .collect();
                    clients
                        .into_iter()
                        .filter_map(|c| c.join().unwrap().then_some(()))
                        .count()
                })
            })
        };
        let label = if family == 0 { "IPv4" } else { "IPv6" };
        let started = Instant::now();
        let slow_answered = answered(slow, "ssp-b");
        let slow_secs = started.elapsed().as_secs_f64();
        assert_eq!(
            answered(allowed, "exchange-a"),
            REQUESTS,
            "{mode} {label}: the allowed partner loses nothing"
        );
        assert_eq!(
            answered(unknown, "exchange-a"),
            0,
            "{mode} {label}: unknown sources are dropped"
        );
        assert_eq!(
            answered(blocked, "exchange-a"),
            0,
            "{mode} {label}: the blocklist drops inside a partner's prefix"
        );
        // burst + 1 at once, then the rate; retransmissions of dropped segments may
        // land once tokens refill, which the rate term covers.
        let ceiling =
            (SLOW_BURST + 1) as f64 + SLOW_QPS as f64 * (slow_secs + CLIENT_TIMEOUT.as_secs_f64());
        println!("{mode} {label}: over-rate partner got {slow_answered} of {REQUESTS} through in {slow_secs:.2} s (ceiling {ceiling:.1})");
        assert!(slow_answered >= 1 && (slow_answered as f64) <= ceiling, "{mode} {label}: {slow_answered} of {REQUESTS} over-rate requests got through (ceiling {ceiling:.1})");
    }

    let metrics = server_ns.run(|| http_get(admin, "/metrics"));
    let value = |name: &str, labels: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l.contains(labels))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    };
    let attached = metrics.lines().any(|l| {
        l.starts_with("bidder_xdp_attached")
            && l.contains(&format!("mode=\"{mode}\""))
            && l.ends_with(" 1")
    });
    assert!(
        attached,
        "/metrics shows the attachment:\n{}",
        xdp_lines(&metrics)
    );
    let passed = "bidder_xdp_passed_packets_total";
    let dropped = "bidder_xdp_dropped_packets_total";
    let checks = [
        (
            passed,
            r#"partner="exchange-a""#,
            "kind=\"payload\"",
            (2 * REQUESTS) as u64,
        ),
        (dropped, r#"partner="ssp-b""#, "reason=\"packet_rate\"", 1),
        (
            dropped,
            r#"partner="unknown_source""#,
            "reason=\"unknown_source\"",
            2,
        ),
        (
            dropped,
            r#"partner="exchange-a""#,
            "reason=\"blocklist\"",
            2,
        ),
    ];
    for (name, partner, kind, at_least) in checks {
        let got = metrics
            .lines()
            .filter(|l| l.starts_with(name) && l.contains(partner) && l.contains(kind))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64;
        assert!(
            got >= at_least,
            "{name}{{{partner},{kind}}} = {got}, want ≥ {at_least}:\n{}",
            xdp_lines(&metrics)
        );
    }
    assert_eq!(
        value(dropped, r#"partner="exchange-a",reason="packet_rate""#),
        0,
        "{}",
        xdp_lines(&metrics)
    );
}

fn xdp_lines(metrics: &str) -> String {
    metrics
        .lines()
        .filter(|l| l.starts_with("bidder_xdp"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn bidder_config(interface: &str, mode: &str, pin_dir: &Path, a: &Addresses) -> String {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let demo = std::fs::read_to_string(examples.join("demo.toml")).unwrap();
    let key = examples.join("demo-notice.key");
    let config = demo
        .replace(
            "listen = \"127.0.0.1:8080\"",
            &format!("listen = \"[::]:{BID_PORT}\""),
        )
        .replace(
            "admin_listen = \"127.0.0.1:9090\"",
            &format!("admin_listen = \"127.0.0.1:{ADMIN_PORT}\""),
        )
        .replace(
            "listen = \"127.0.0.1:9091\"",
            &format!("listen = \"127.0.0.1:{}\"", ADMIN_PORT + 1),
        )
        .replace("cores = [0, 1]", "cores = [0]")
        .replace("deadline_cap_ms = 8", "deadline_cap_ms = 400")
        .replace(
            r#"cidrs = ["127.0.0.0/8", "::1/128"]"#,
            &format!("cidrs = {}", a.allowed_cidrs),
        )
        .replace(
            r#"cidrs = ["192.0.2.0/24", "2001:db8:b::/48"]"#,
            &format!("cidrs = {}", a.slow_cidrs),
        )
        .replace(
            "qps_limit = 20_000\nburst = 2_000",
            &format!("qps_limit = {SLOW_QPS}\nburst = {SLOW_BURST}"),
        )
        .replace(
            "hmac_key_file = \"demo-notice.key\"",
            &format!("hmac_key_file = \"{}\"", key.display()),
        );
    assert!(
        config.contains(&format!("qps_limit = {SLOW_QPS}")),
        "the demo's partners changed: update this test"
    );
    format!(
        "{config}\n[xdp]\ninterface = \"{interface}\"\nmode = \"{mode}\"\nrequired = true\npin_dir = \"{}\"\nunknown_sources = \"drop\"\nblocklist = {}\npackets_per_request = 1\nlog_interval_ms = 1000\n",
        pin_dir.display(),
        a.blocklist
    )
}

/// One bid request from `from` on a fresh connection; the status, or `None` when the
/// connection or the answer did not come in time.
fn bid(from: IpAddr, server: SocketAddr, partner: &str) -> Option<u16> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(server),
        socket2::Type::STREAM,
        None,
    )
    .unwrap();
    socket.bind(&SocketAddr::new(from, 0).into()).unwrap();
    socket
        .connect_timeout(&server.into(), CLIENT_TIMEOUT)
        .ok()?;
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    let request = format!(
        "POST /bid/{partner} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn wait_ready(admin: SocketAddr) {
    let started = Instant::now();
    loop {
        let ready = TcpStream::connect_timeout(&admin, Duration::from_millis(200)).is_ok()
            && http_get(admin, "/ready").starts_with("HTTP/1.1 200");
        if ready {
            return;
        }
        assert!(
            started.elapsed() < START_TIMEOUT,
            "the bidder was not ready in {START_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `bidder run` inside a namespace; killed when dropped.
struct Bidder(Child);

impl Bidder {
    fn start(ns: &Netns, config: &Path) -> Bidder {
        let child = ns
            .command(env!("CARGO_BIN_EXE_bidder"))
            .args(["run", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .spawn()
            .expect("start the bidder");
        Bidder(child)
    }
}

impl Drop for Bidder {
    fn drop(&mut self) {
        // SIGTERM: a clean exit detaches the program; then make sure it is gone.
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The bidder's pin directory on bpffs: its pinned maps (and a link left by a failed
/// run) are removed when dropped.
struct PinDir(PathBuf);

impl Drop for PinDir {
    fn drop(&mut self) {
        // Unlinking a pin removes it; the objects go when nothing else holds them.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
