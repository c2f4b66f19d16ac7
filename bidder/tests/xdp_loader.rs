//! The XDP loader on real interfaces, each test in a network namespace of its own:
//! generic mode on `lo`, native mode on a veth end, `auto` falling back; the maps
//! holding the configuration (slots, limits, prefixes, blocklist, settings); a reload
//! updating them in place under the same link and program; slots and counters kept
//! across a restart that takes over the pinned link; a freed slot handed over with
//! zeroed state; stale pins replaced; detaching leaving nothing attached; and
//! `bidder run` with `[xdp]`: attached, counted on `/metrics`, reloaded, detached on
//! SIGTERM; or refusing to start, or starting with user-space limits when
//! `required = false`.
//!
//! Namespaces ([`Netns`]) and pin folders ([`PinDir`]) are removed by guards, also when
//! an assertion fails. Needs root; as another user each test prints a skip line and
//! passes. CI runs as root.

#[path = "support/frames.rs"]
mod frames;
#[path = "support/netns.rs"]
mod netns;

use testkit::promtool;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aya::maps::{Array, Map, MapData, MapInfo, PerCpuArray, PerCpuValues};
use bidder::catalog::Partner;
use bidder::config::XdpConfig;
use bidder::openrtb::OpenRtbVersion;
use bidder::xdp::maps::FrontMaps;
use bidder::xdp::pins::{link_path, map_path};
use bidder::xdp::{link, AttachedMode, Rules, Status, XdpFront};
use bidder_common::clock::Clock;
use bidder_common::table::shm::{OnMismatch, Writer};
use bidder_common::table::strategy::{PartnerLimitValue, StrategyTable as Layout, PARTNER_ENABLED};
use bidder_common::table::Capacity;
use bidder_common::xdp::{
    Counters, PartnerBuckets, PartnerLimit, BUCKETS_MAP, COUNTERS_MAP, LIMITS_MAP, MAX_PARTNERS,
    MODE_GENERIC, MODE_NATIVE, SETTINGS_MAP,
};
use ipnet::IpNet;
use netns::Netns;

const BIDDER: &str = env!("CARGO_BIN_EXE_bidder");
const BID_PORT: u16 = 9080;
/// Rows of the strategy table the test writes as the agent would.
const CAP: Capacity = Capacity {
    campaigns: 64,
    partners: 8,
};
/// `BPF_F_RDONLY_PROG`: the program may not write the map (the verifier enforces it).
const BPF_F_RDONLY_PROG: u32 = 1 << 7;
/// How long `bidder run` may take to become ready or to exit (debug build, busy host).
const DAEMON_TIMEOUT: Duration = Duration::from_secs(30);

/// A namespace and a pin folder for `test` (`tag` names them), or `None` after a skip
/// line when not root.
fn sandbox(test: &str, tag: &str) -> Option<(Netns, PinDir)> {
    if testkit::skip_unless_root(test, "namespaces and BPF") {
        return None;
    }
    Some((Netns::new(tag), PinDir::new(tag)))
}

/// `text` mentions every one of `wants`.
fn assert_mentions(text: &str, wants: &[&str]) {
    for want in wants {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
}

// ---- pin folders ---------------------------------------------------------------------

/// A pin folder on bpffs of this test's own; on drop its link is detached and the
/// folder removed.
struct PinDir(PathBuf);

impl PinDir {
    fn new(tag: &str) -> PinDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        bidder::xdp::bpffs::ensure_mounted(Path::new("/sys/fs/bpf")).expect("bpffs");
        PinDir(PathBuf::from(format!(
            "/sys/fs/bpf/bt-{}-{}-{tag}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )))
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = link::detach(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---- configuration -------------------------------------------------------------------

fn partner(name: &str, cidrs: &[&str], qps_limit: u32, enabled: bool) -> Partner {
    Partner {
        name: name.into(),
        cidrs: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
        qps_limit,
        burst: qps_limit / 10,
        openrtb_version: OpenRtbVersion::V2_6,
        nbr_body: false,
        gzip_responses: false,
        response_format: bidder::respond::Format::Json,
        enabled,
        syn_per_s: 100,
        syn_burst: 20,
        notice_horizon_ms: 300_000,
        unnoticed_bids: Default::default(),
        max_held_micros: None,
        asi: None,
    }
}

fn alpha(qps_limit: u32) -> Partner {
    partner("alpha", &["10.1.0.0/16", "fd00:a::/32"], qps_limit, true)
}

fn beta() -> Partner {
    partner("beta", &["10.2.0.0/16"], 500, false)
}

fn gamma() -> Partner {
    partner("gamma", &["10.3.0.0/16", "fd00:c::/48"], 700, true)
}

fn delta() -> Partner {
    partner("delta", &["10.4.0.0/16"], 900, true)
}

fn section(interface: &str, mode: &str, pins: &PinDir, blocklist: &[&str]) -> XdpConfig {
    XdpConfig {
        interface: interface.into(),
        mode: mode.into(),
        pin_dir: pins.0.clone(),
        blocklist: blocklist.iter().map(|s| s.to_string()).collect(),
        ..XdpConfig::default()
    }
}

fn rules(xdp: &XdpConfig, partners: &[Partner]) -> Rules {
    Rules::new(xdp, &[BID_PORT], partners)
}

// ---- what the pinned maps hold -------------------------------------------------------

/// The pinned maps hold exactly `rules` with partners in `slots`, and settings naming
/// `ifindex` and `mode`.
fn assert_maps_hold(pin_dir: &Path, rules: &Rules, slots: &[(&str, u32)], ifindex: u32, mode: u32) {
    let maps = FrontMaps::open_pinned(pin_dir).expect("open the pinned maps");
    let held: Vec<(String, u32, PartnerLimit)> = maps
        .slots()
        .unwrap()
        .into_iter()
        .map(|e| (e.limit.name_str().to_string(), e.slot, e.limit))
        .collect();
    let mut want: Vec<(String, u32, PartnerLimit)> = slots
        .iter()
        .map(|&(name, slot)| {
            let rule = rules.partners.iter().find(|p| p.name == name).unwrap();
            (name.to_string(), slot, rule.limit)
        })
        .collect();
    want.sort_by_key(|(_, slot, _)| *slot);
    assert_eq!(held, want, "partner slots and limits");
    let want_prefixes: BTreeMap<IpNet, u32> = slots
        .iter()
        .flat_map(|&(name, slot)| {
            let rule = rules.partners.iter().find(|p| p.name == name).unwrap();
            rule.prefixes.iter().map(move |net| (*net, slot))
        })
        .collect();
    assert_eq!(
        maps.partner_prefixes().unwrap(),
        want_prefixes,
        "partner prefixes"
    );
    let mut blocked = maps.blocked_prefixes().unwrap();
    blocked.sort_unstable();
    assert_eq!(blocked, rules.blocklist, "blocklist");
    let s = maps.settings().unwrap();
    assert_eq!(s.ports, rules.ports);
    assert_eq!(s.unknown_action, rules.unknown_action);
    assert_eq!(s.log_interval_ns, rules.log_interval_ns);
    assert_eq!(
        (s.ifindex, s.attach_mode),
        (ifindex, mode),
        "ifindex and mode"
    );
}

fn pinned<T: TryFrom<Map, Error = aya::maps::MapError>>(pin_dir: &Path, name: &str) -> T {
    let data = MapData::from_pin(map_path(pin_dir, name)).expect("pinned map");
    T::try_from(Map::from_map_data(data).unwrap()).unwrap()
}

/// Writes `packets` into every CPU's passed counter of `slot` and a TAT into its bucket,
/// standing in for traffic a slot's previous owner had.
fn poke(pin_dir: &Path, slot: u32, packets: u64) {
    let mut counters: PerCpuArray<MapData, Counters> = pinned(pin_dir, COUNTERS_MAP);
    let mut c = Counters::default();
    c.passed.packets = packets;
    let cpus = aya::util::nr_cpus().unwrap();
    counters
        .set(slot, PerCpuValues::try_from(vec![c; cpus]).unwrap(), 0)
        .unwrap();
    let mut buckets: Array<MapData, PartnerBuckets> = pinned(pin_dir, BUCKETS_MAP);
    let busy = PartnerBuckets {
        packet_tat_ns: 1,
        syn_tat_ns: 2,
    };
    buckets.set(slot, busy, 0).unwrap();
}

fn state_of(pin_dir: &Path, slot: u32) -> (Counters, PartnerBuckets) {
    let maps = FrontMaps::open_pinned(pin_dir).unwrap();
    let buckets: Array<MapData, PartnerBuckets> = pinned(pin_dir, BUCKETS_MAP);
    (maps.counters(slot).unwrap(), buckets.get(&slot, 0).unwrap())
}

/// What `ip link show` says about XDP on `dev`: `None`, or (generic?, program id).
fn xdp_on(ns: &Netns, dev: &str) -> Option<(bool, u32)> {
    let shown = ns.link_show(dev);
    let id = shown
        .split("prog/xdp id ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((shown.contains("xdpgeneric"), id))
}

// ---- the loader ----------------------------------------------------------------------

#[test]
fn generic_on_lo_fills_the_maps_and_a_reload_updates_them_under_the_same_link() {
    let Some((ns, pins)) = sandbox(
        "generic_on_lo_fills_the_maps_and_a_reload_updates_them_under_the_same_link",
        "lo",
    ) else {
        return;
    };
    let xdp = section(
        "lo",
        "generic",
        &pins,
        &["203.0.113.0/24", "2001:db8:bad::/48"],
    );
    let before = rules(&xdp, &[alpha(1_000), beta()]);
    ns.run(|| {
        let front = XdpFront::start(&xdp, &before).expect("attach in generic mode on lo");
        let at = front.attachment().clone();
        assert_eq!(
            (at.interface.as_str(), at.mode, at.replaced),
            ("lo", AttachedMode::Generic, false)
        );
        assert_maps_hold(
            &pins.0,
            &before,
            &[("alpha", 0), ("beta", 1)],
            at.ifindex,
            MODE_GENERIC,
        );
        assert_eq!(
            xdp_on(&ns, "lo"),
            Some((true, at.program_id)),
            "ip link shows it"
        );

        let status = Status::read(&pins.0).expect("status from the pins");
        assert!(status.attached());
        assert_eq!(status.interface.as_deref(), Some("lo"));
        let link = status.link.unwrap();
        assert_eq!((link.link_id, link.program_id), (at.link_id, at.program_id));
        let table = status.table();
        assert_mentions(
            &table,
            &[
                "attached:  lo (ifindex",
                "generic mode",
                "xdp_bid_front",
                "alpha",
                "beta",
                "unknown_source",
            ],
        );
        assert_eq!(status.json()["partners"][1]["limits"]["enabled"], false);

        // A reload: beta removed, gamma added, alpha's limit changed, blocklist changed.
        let xdp = section("lo", "generic", &pins, &["198.51.100.0/24"]);
        let after = rules(&xdp, &[alpha(2_000), gamma()]);
        let applied = front.apply(&after).expect("update in place");
        assert_eq!(applied.partners_added, ["gamma"]);
        assert_eq!(applied.partners_removed, ["beta"]);
        assert_eq!(applied.limits_changed, ["alpha"]);
        assert_eq!((applied.blocked_added, applied.blocked_removed), (1, 2));
        // gamma takes a slot nobody held, not the one beta just gave up.
        assert_maps_hold(
            &pins.0,
            &after,
            &[("alpha", 0), ("gamma", 2)],
            at.ifindex,
            MODE_GENERIC,
        );
        let now = link::inspect(&link_path(&pins.0)).unwrap().unwrap();
        assert_eq!(
            (now.link_id, now.program_id),
            (at.link_id, at.program_id),
            "same link, same program"
        );
        assert_eq!(xdp_on(&ns, "lo"), Some((true, at.program_id)));

        // A slot given up earlier goes to the next newcomer with its state zeroed.
        poke(&pins.0, 1, 77);
        let more = rules(&xdp, &[alpha(2_000), gamma(), delta()]);
        front.apply(&more).unwrap();
        assert_maps_hold(
            &pins.0,
            &more,
            &[("alpha", 0), ("delta", 1), ("gamma", 2)],
            at.ifindex,
            MODE_GENERIC,
        );
        assert_eq!(
            state_of(&pins.0, 1),
            (Counters::default(), PartnerBuckets::default())
        );

        front.detach().expect("detach");
        assert_eq!(xdp_on(&ns, "lo"), None, "nothing attached after detach");
        assert!(!link_path(&pins.0).exists(), "link unpinned");
        assert!(map_path(&pins.0, SETTINGS_MAP).exists(), "maps stay pinned");
        assert!(!Status::read(&pins.0).unwrap().attached());
        front.detach().expect("detaching twice is fine");
    });
}

#[test]
fn a_restart_takes_over_the_pinned_link_keeping_slots_and_counters() {
    let Some((ns, pins)) = sandbox(
        "a_restart_takes_over_the_pinned_link_keeping_slots_and_counters",
        "restart",
    ) else {
        return;
    };
    let xdp = section("lo", "generic", &pins, &[]);
    ns.run(|| {
        let first = XdpFront::start(&xdp, &rules(&xdp, &[alpha(1_000), beta(), gamma()])).unwrap();
        let one = first.attachment().clone();
        first.apply(&rules(&xdp, &[alpha(1_000), gamma()])).unwrap();
        poke(&pins.0, 0, 42);
        // Dropped without detaching, as a crash would: the pinned link keeps filtering.
        drop(first);
        assert_eq!(
            xdp_on(&ns, "lo"),
            Some((true, one.program_id)),
            "still filtering after a crash"
        );

        // The partners in another order: slots follow names, not positions.
        let again = rules(&xdp, &[gamma(), alpha(1_000)]);
        let second = XdpFront::start(&xdp, &again).expect("start over the pinned link");
        let two = second.attachment().clone();
        assert!(two.replaced, "took over the pinned link");
        assert_eq!(two.link_id, one.link_id, "same link");
        assert_ne!(two.program_id, one.program_id, "new program on it");
        assert_eq!(xdp_on(&ns, "lo"), Some((true, two.program_id)));
        assert_maps_hold(
            &pins.0,
            &again,
            &[("alpha", 0), ("gamma", 2)],
            two.ifindex,
            MODE_GENERIC,
        );
        assert_eq!(
            state_of(&pins.0, 0).0.passed.packets,
            42 * aya::util::nr_cpus().unwrap() as u64
        );
        second.detach().unwrap();
        assert_eq!(xdp_on(&ns, "lo"), None);
    });
}

/// Log lines written to a shared buffer, for a test to watch while they are written.
#[derive(Clone, Default)]
struct SharedLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl SharedLog {
    fn contains(&self, what: &str) -> bool {
        String::from_utf8_lossy(&self.0.lock().unwrap()).contains(what)
    }
}

impl Write for SharedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

extern "C" fn ignore_signal(_: libc::c_int) {}

/// The verifier gives up with `EAGAIN` when a signal is pending for the loading thread
/// — the freezer of a stalled host sends such a (fake) signal. Signals hammer the
/// starting thread until the loader says it loads again: the start succeeds, and the
/// pinned maps it reuses keep their counters (not removed as if they were unusable).
#[test]
fn a_load_interrupted_by_signals_is_tried_again_keeping_the_pinned_maps() {
    const ROUNDS: usize = 10;
    let Some((ns, pins)) = sandbox(
        "a_load_interrupted_by_signals_is_tried_again_keeping_the_pinned_maps",
        "signals",
    ) else {
        return;
    };
    let xdp = section("lo", "generic", &pins, &[]);
    let partners = rules(&xdp, &[alpha(1_000)]);
    // SAFETY: a handler that does nothing, installed before any SIGUSR1 is sent; no
    // SA_RESTART, so a signal interrupts what the thread is blocked in.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = ignore_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()),
            0
        );
    }
    ns.run(|| {
        // A first start pins the maps (and settles aya's feature probes undisturbed).
        XdpFront::start(&xdp, &partners).unwrap().detach().unwrap();
        poke(&pins.0, 0, 42);
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        // The verifier runs for well under a millisecond: a round whose start the
        // signals happened to miss proves nothing and is run again.
        for round in 1..=ROUNDS {
            let log = SharedLog::default();
            let subscriber = tracing_subscriber::fmt()
                .with_writer({
                    let log = log.clone();
                    move || log.clone()
                })
                .with_ansi(false)
                .finish();
            let done = std::sync::atomic::AtomicBool::new(false);
            let started = std::thread::scope(|scope| {
                scope.spawn(|| {
                    while !done.load(Ordering::Relaxed) && !log.contains("loading it again") {
                        // SAFETY: `me` runs this scope, which outlives this thread.
                        unsafe { libc::pthread_kill(me, libc::SIGUSR1) };
                        let sent = Instant::now();
                        while sent.elapsed() < Duration::from_micros(20) {
                            std::hint::spin_loop();
                        }
                    }
                });
                let started = tracing::subscriber::with_default(subscriber, || {
                    XdpFront::start(&xdp, &partners)
                });
                done.store(true, Ordering::Relaxed);
                started
            });
            let front = started.expect("a start interrupted by signals");
            assert!(!log.contains("removing them"), "the pinned maps were kept");
            assert_eq!(
                state_of(&pins.0, 0).0.passed.packets,
                42 * aya::util::nr_cpus().unwrap() as u64,
                "counters kept"
            );
            front.detach().unwrap();
            if log.contains("loading it again") {
                return;
            }
            eprintln!("round {round}: the signals missed the verifier");
        }
        panic!("in {ROUNDS} rounds the signals never interrupted the verifier");
    });
}

#[test]
fn native_on_a_veth_end_and_a_changed_mode_attaches_anew() {
    let Some((ns, pins)) = sandbox(
        "native_on_a_veth_end_and_a_changed_mode_attaches_anew",
        "veth",
    ) else {
        return;
    };
    ns.veth("xv0", "xv1");
    let partners = [alpha(1_000)];
    ns.run(|| {
        let native = section("xv0", "native", &pins, &[]);
        let front =
            XdpFront::start(&native, &rules(&native, &partners)).expect("attach natively on veth");
        let one = front.attachment().clone();
        assert_eq!(one.mode, AttachedMode::Native);
        assert_eq!(
            xdp_on(&ns, "xv0"),
            Some((false, one.program_id)),
            "native, not generic"
        );
        assert_maps_hold(
            &pins.0,
            &rules(&native, &partners),
            &[("alpha", 0)],
            one.ifindex,
            MODE_NATIVE,
        );
        drop(front);

        // Asked for generic now: the native link cannot be reused as is.
        let generic = section("xv0", "generic", &pins, &[]);
        let front = XdpFront::start(&generic, &rules(&generic, &partners)).unwrap();
        let two = front.attachment().clone();
        assert_eq!((two.mode, two.replaced), (AttachedMode::Generic, false));
        assert_ne!(two.link_id, one.link_id);
        assert_eq!(xdp_on(&ns, "xv0"), Some((true, two.program_id)));
        drop(front);

        // `auto` takes over whatever mode the pinned link has.
        let auto = section("xv0", "auto", &pins, &[]);
        let front = XdpFront::start(&auto, &rules(&auto, &partners)).unwrap();
        let three = front.attachment().clone();
        assert_eq!(
            (three.mode, three.replaced, three.link_id),
            (AttachedMode::Generic, true, two.link_id)
        );
        front.detach().unwrap();
        assert_eq!(xdp_on(&ns, "xv0"), None);
    });
}

#[test]
fn auto_mode_falls_back_to_generic_where_the_driver_has_no_xdp() {
    let Some((ns, pins)) = sandbox(
        "auto_mode_falls_back_to_generic_where_the_driver_has_no_xdp",
        "auto",
    ) else {
        return;
    };
    let xdp = section("lo", "auto", &pins, &[]);
    ns.run(|| {
        let front = XdpFront::start(&xdp, &rules(&xdp, &[alpha(10)])).unwrap();
        assert_eq!(front.attachment().mode, AttachedMode::Generic);
        front.detach().unwrap();
        // Native was asked for by name: refused, naming interface, mode and reason.
        let native = section("lo", "native", &pins, &[]);
        let err = XdpFront::start(&native, &rules(&native, &[alpha(10)]))
            .err()
            .expect("lo has no native XDP");
        let text = err.to_string();
        assert_mentions(
            &text,
            &[
                "interface `lo`",
                "native mode",
                "bpf_link_create",
                "xdp.required = false",
            ],
        );
        assert_eq!(xdp_on(&ns, "lo"), None);
    });
}

#[test]
fn pins_of_another_layout_or_unusable_ones_are_replaced() {
    let Some((ns, pins)) = sandbox(
        "pins_of_another_layout_or_unusable_ones_are_replaced",
        "stale",
    ) else {
        return;
    };
    std::fs::create_dir_all(&pins.0).unwrap();
    // An older build's LIMITS: a 16-byte value instead of PartnerLimit.
    let old: Array<MapData, [u8; 16]> = Array::create(MAX_PARTNERS, 0).unwrap();
    old.pin(map_path(&pins.0, LIMITS_MAP)).unwrap();
    let xdp = section("lo", "generic", &pins, &[]);
    let partners = [alpha(1_000), gamma()];
    ns.run(|| {
        let front = XdpFront::start(&xdp, &rules(&xdp, &partners)).expect("stale LIMITS replaced");
        let info = MapInfo::from_pin(map_path(&pins.0, LIMITS_MAP)).unwrap();
        assert_eq!(info.value_size() as usize, size_of::<PartnerLimit>());
        let ifindex = front.attachment().ifindex;
        assert_maps_hold(
            &pins.0,
            &rules(&xdp, &partners),
            &[("alpha", 0), ("gamma", 1)],
            ifindex,
            MODE_GENERIC,
        );
        front.detach().unwrap();
    });
    // Same layout, but read-only to programs: the verifier refuses the program, the
    // pins go and the second load succeeds.
    std::fs::remove_dir_all(&pins.0).unwrap();
    std::fs::create_dir_all(&pins.0).unwrap();
    let cpus = aya::util::nr_cpus().unwrap();
    let locked: PerCpuArray<MapData, Counters> =
        PerCpuArray::create(bidder_common::xdp::COUNTER_SLOTS, BPF_F_RDONLY_PROG).unwrap();
    assert_eq!(cpus, locked.get(&0, 0).unwrap().len());
    locked.pin(map_path(&pins.0, COUNTERS_MAP)).unwrap();
    ns.run(|| {
        let front =
            XdpFront::start(&xdp, &rules(&xdp, &partners)).expect("unusable COUNTERS replaced");
        let info = MapInfo::from_pin(map_path(&pins.0, COUNTERS_MAP)).unwrap();
        assert_eq!(info.map_flags() & BPF_F_RDONLY_PROG, 0);
        front.detach().unwrap();
    });
}

// ---- `bidder run` ----------------------------------------------------------------------

/// A `bidder run` child inside a namespace, with its configuration and log in a
/// temporary folder; killed (and the folder removed) on drop.
struct Daemon {
    child: Child,
    dir: PathBuf,
}

impl Daemon {
    /// The demo configuration (key by absolute path, tables in the folder) with
    /// `xdp_section` appended, started in `ns`.
    fn start(ns: &Netns, tag: &str, xdp_section: &str) -> Daemon {
        let dir =
            std::env::temp_dir().join(format!("bidder-xdp-test-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo.toml");
        let key = demo.with_file_name("demo-notice.key");
        let text = std::fs::read_to_string(&demo)
            .unwrap()
            .replace("\"demo-notice.key\"", &format!("\"{}\"", key.display()));
        let config = format!(
            "{text}\n[strategy]\ntable_path = \"{}\"\nstats_path = \"{}\"\n\n{xdp_section}\n",
            dir.join("strategy").display(),
            dir.join("stats").display()
        );
        std::fs::write(dir.join("bidder.toml"), config).unwrap();
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let child = ns
            .command(BIDDER)
            .arg("run")
            .arg("--config")
            .arg(dir.join("bidder.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn bidder run");
        Daemon { child, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// Waits until the log contains `text`; panics with the log if it does not in time.
    fn wait_log(&mut self, text: &str) {
        let started = Instant::now();
        while !self.log().contains(text) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "bidder exited ({status}) before logging {text:?}:\n{}",
                    self.log()
                );
            }
            assert!(
                started.elapsed() < DAEMON_TIMEOUT,
                "no {text:?} in time:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill has no memory preconditions; the pid is our own child's.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    /// Waits for the exit; its code.
    fn wait_exit(&mut self) -> i32 {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                started.elapsed() < DAEMON_TIMEOUT,
                "still running:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One HTTP/1.1 exchange from inside `ns`; the whole response as text.
fn http(ns: &Netns, addr: &str, request: String) -> String {
    ns.run(|| {
        let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    })
}

/// The admin port's `/metrics` body, scraped from inside `ns`.
fn scrape(ns: &Netns) -> String {
    let response = http(
        ns,
        "127.0.0.1:9090",
        "GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".into(),
    );
    testkit::http::split_response(&response).map_or(String::new(), |(_, body)| body.to_owned())
}

/// The value of `series` (name and labels) in a scrape.
fn sample(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
        .parse()
        .unwrap()
}

#[test]
fn bidder_run_attaches_counts_reloads_in_place_and_detaches_on_sigterm() {
    let Some((ns, pins)) = sandbox(
        "bidder_run_attaches_counts_reloads_in_place_and_detaches_on_sigterm",
        "run",
    ) else {
        return;
    };
    let section = format!(
        "[xdp]\ninterface = \"lo\"\nmode = \"generic\"\npin_dir = \"{}\"\nblocklist = [\"203.0.113.0/24\"]\n",
        pins.0.display()
    );
    let mut daemon = Daemon::start(&ns, "run", &section);
    daemon.wait_log("bidder ready");
    let status = Status::read(&pins.0).unwrap();
    let program_id = status.link.expect("link pinned").program_id;
    assert_eq!(xdp_on(&ns, "lo"), Some((true, program_id)));

    let body = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/traffic/01-site-banner.json"),
    )
    .unwrap();
    let bid = http(
        &ns,
        "127.0.0.1:8080",
        format!("POST /bid/exchange-a HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()),
    );
    assert!(bid.starts_with("HTTP/1.1 200"), "{bid}");
    // A blocklisted source: its SYN never arrives; the drop is counted and logged.
    ns.ip(&["addr", "add", "203.0.113.5/32", "dev", "lo"]);
    let blocked = ns.run(|| {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket
            .bind(
                &"203.0.113.5:0"
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
            )
            .unwrap();
        let to = "127.0.0.1:8080"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into();
        socket.connect_timeout(&to, Duration::from_millis(300))
    });
    assert!(blocked.is_err(), "a blocklisted source connected");
    daemon.wait_log("xdp drop: slot 256 reason 0");
    let metrics = scrape(&ns);
    promtool::promtool_check(&metrics);
    assert_mentions(
        &metrics,
        &["bidder_xdp_attached{interface=\"lo\",mode=\"generic\"} 1"],
    );
    for kind in ["all", "payload", "syn"] {
        let series =
            format!("bidder_xdp_passed_packets_total{{partner=\"exchange-a\",kind=\"{kind}\"}}");
        assert!(sample(&metrics, &series) >= 1, "{series}");
    }
    let series =
        "bidder_xdp_dropped_packets_total{partner=\"unknown_source\",reason=\"blocklist\"}";
    assert!(sample(&metrics, series) >= 1, "{series}");

    // The agent's partner row for ssp-b reaches the XDP limits.
    let mut agent = Writer::<Layout>::open(
        &daemon.dir.join("strategy"),
        CAP,
        OnMismatch::Refuse,
        Clock::system(),
    )
    .unwrap();
    let row = PartnerLimitValue {
        qps_limit: 10,
        burst: 2,
        flags: PARTNER_ENABLED,
        ..PartnerLimitValue::default()
    };
    agent.put_partner("ssp-b", &row.sealed()).unwrap();
    daemon.wait_log("limits changed [\"ssp-b\"]");
    let maps = FrontMaps::open_pinned(&pins.0).unwrap();
    let ssp_b = maps
        .slots()
        .unwrap()
        .into_iter()
        .find(|e| e.limit.name_str() == "ssp-b")
        .unwrap();
    // 10 requests/s × 3 packets per request; burst 2 × 3.
    assert_eq!(
        (
            ssp_b.limit.packet_interval_ns,
            ssp_b.limit.packet_tolerance_ns
        ),
        (33_333_333, 199_999_998)
    );

    // SIGHUP: ssp-b removed, blocklist changed; same program on the same link.
    let path = daemon.dir.join("bidder.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text
        .replace(
            "name = \"ssp-b\"\ncidrs = [\"192.0.2.0/24\", \"2001:db8:b::/48\"]",
            "name = \"ssp-b\"",
        )
        .replace("[\"203.0.113.0/24\"]", "[\"198.51.100.0/24\"]");
    std::fs::write(&path, text).unwrap();
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("removed [\"ssp-b\"]");
    let maps = FrontMaps::open_pinned(&pins.0).unwrap();
    let names: Vec<String> = maps
        .slots()
        .unwrap()
        .iter()
        .map(|e| e.limit.name_str().to_string())
        .collect();
    assert_eq!(names, ["exchange-a"]);
    assert_eq!(
        maps.blocked_prefixes().unwrap(),
        ["198.51.100.0/24".parse::<IpNet>().unwrap()]
    );
    assert_eq!(
        Status::read(&pins.0).unwrap().link.unwrap().program_id,
        program_id
    );

    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait_exit(), 0, "{}", daemon.log());
    assert_eq!(xdp_on(&ns, "lo"), None, "detached on exit");
    assert!(!link_path(&pins.0).exists());
    assert!(
        map_path(&pins.0, COUNTERS_MAP).exists(),
        "counters stay pinned"
    );
    let out = std::process::Command::new(BIDDER)
        .args(["xdp", "detach", "--pin-dir"])
        .arg(&pins.0)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to detach"));
}

#[test]
fn an_attach_failure_refuses_to_start_unless_xdp_is_not_required() {
    let Some((ns, pins)) = sandbox(
        "an_attach_failure_refuses_to_start_unless_xdp_is_not_required",
        "missing",
    ) else {
        return;
    };
    let section = |required: bool| {
        format!(
            "[xdp]\ninterface = \"nosuch0\"\nrequired = {required}\npin_dir = \"{}\"\n",
            pins.0.display()
        )
    };
    let mut refused = Daemon::start(&ns, "required", &section(true));
    assert_eq!(refused.wait_exit(), 1);
    let log = refused.log();
    assert_mentions(
        &log,
        &[
            "cannot attach the XDP program to interface `nosuch0`",
            "no such interface",
            "xdp.required = false",
        ],
    );
    drop(refused);

    let mut lenient = Daemon::start(&ns, "lenient", &section(false));
    lenient.wait_log("bidder ready");
    assert!(
        lenient.log().contains("partner limits stay in user space"),
        "{}",
        lenient.log()
    );
    let metrics = scrape(&ns);
    assert!(metrics.contains("bidder_ready 1"), "{metrics}");
    assert!(!metrics.contains("bidder_xdp_attached"), "{metrics}");
    assert!(!link_path(&pins.0).exists());
    lenient.signal(libc::SIGTERM);
    assert_eq!(lenient.wait_exit(), 0, "{}", lenient.log());
}

#[test]
fn xdp_status_and_detach_on_the_command_line() {
    let Some((ns, pins)) = sandbox("xdp_status_and_detach_on_the_command_line", "cli") else {
        return;
    };
    let cli = |args: &[&str]| {
        let out = ns
            .command(BIDDER)
            .arg("xdp")
            .args(args)
            .arg("--pin-dir")
            .arg(&pins.0)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = cli(&["status"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("nothing pinned at"), "{err}");

    let xdp = section("lo", "generic", &pins, &[]);
    let front = ns.run(|| XdpFront::start(&xdp, &rules(&xdp, &[alpha(1_000)])).unwrap());
    let at = front.attachment().clone();
    let (code, out, _) = cli(&["status"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains(&format!(
            "attached:  lo (ifindex {}), generic mode, link {}, program {}",
            at.ifindex, at.link_id, at.program_id
        )),
        "{out}"
    );
    let (code, json, _) = cli(&["status", "--json"]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (
            v["attached"].as_bool(),
            v["interface"].as_str(),
            v["mode"].as_str()
        ),
        (Some(true), Some("lo"), Some("generic"))
    );
    assert_eq!(v["partners"][0]["partner"], "alpha");
    assert_eq!(v["partners"][1]["partner"], "unknown_source");

    // Recovery after a crash: detach the pinned link even while someone holds it.
    let (code, out, _) = cli(&["detach"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains(&format!(
            "detached link {} (program {}) from lo",
            at.link_id, at.program_id
        )),
        "{out}"
    );
    assert_eq!(xdp_on(&ns, "lo"), None);
    let (code, out, _) = cli(&["detach"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("nothing to detach"), "{out}");
    let (_, out, _) = cli(&["status"]);
    assert!(out.contains("attached:  no"), "{out}");
    drop(front);
}
