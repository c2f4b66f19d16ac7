//! The XDP program on a real kernel: hand-built frames sent through a veth pair in a
//! private network namespace land in the expected `PACKET_COUNTS` slot, one each.
//!
//! The frames are written byte by byte (no IP stack involved) so that every branch of the
//! header walk is driven on purpose: VLAN tags, IPv4 options, fragments, truncation,
//! IPv6 extension headers. Needs root for BPF and namespaces; as another user it prints a
//! skip line and passes.

use std::{
    ffi::CString,
    fs::File,
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use aya::{
    maps::PerCpuArray,
    programs::{Xdp, XdpMode},
    EbpfLoader,
};
use bidder::xdp_object::XDP_OBJECT;
use bidder_common::xdp::{
    PacketClass, PacketCounter, BID_PORT_GLOBAL, PACKET_COUNTS_MAP, PROGRAM_NAME,
};

const BID_PORT: u16 = 9080;
const OTHER_PORT: u16 = 9081;
/// The veth end the program is attached to, and its peer the frames are sent from.
const XDP_IFACE: &str = "xdp-in";
const SEND_IFACE: &str = "xdp-out";
/// How long one frame may take to show in the counters: veth hands it to the program
/// from NAPI, after `sendto` has returned.
const COUNT_WAIT: Duration = Duration::from_secs(2);
const COUNT_POLL: Duration = Duration::from_millis(2);

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_ARP: u16 = 0x0806;
const TPID_8021Q: u16 = 0x8100;
const TPID_8021AD: u16 = 0x88a8;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPV6_HOP_BY_HOP: u8 = 0;

struct Case {
    name: &'static str,
    frame: Vec<u8>,
    expect: PacketClass,
}

fn cases() -> Vec<Case> {
    use PacketClass::{BidTcp, Other};
    let v4 = |proto, payload: &[u8]| ipv4(proto, 0, 0, payload);
    let case = |name, frame, expect| Case {
        name,
        frame,
        expect,
    };
    vec![
        case(
            "ipv4 tcp to bid port",
            eth(&[], ETHERTYPE_IPV4, &v4(IPPROTO_TCP, &tcp(BID_PORT))),
            BidTcp,
        ),
        case(
            "ipv4 tcp to other port",
            eth(&[], ETHERTYPE_IPV4, &v4(IPPROTO_TCP, &tcp(OTHER_PORT))),
            Other,
        ),
        case(
            "ipv4 udp to bid port",
            eth(&[], ETHERTYPE_IPV4, &v4(IPPROTO_UDP, &udp(BID_PORT))),
            Other,
        ),
        case(
            "ipv4 with options, tcp to bid port",
            eth(
                &[],
                ETHERTYPE_IPV4,
                &ipv4(IPPROTO_TCP, 3, 0, &tcp(BID_PORT)),
            ),
            BidTcp,
        ),
        case(
            "ipv4 later fragment whose bytes look like the bid port",
            eth(
                &[],
                ETHERTYPE_IPV4,
                &ipv4(IPPROTO_TCP, 0, 185, &tcp(BID_PORT)),
            ),
            Other,
        ),
        case(
            "ipv4 tcp header cut short",
            eth(&[], ETHERTYPE_IPV4, &v4(IPPROTO_TCP, &tcp(BID_PORT)[..12])),
            Other,
        ),
        case(
            "802.1Q ipv4 tcp to bid port",
            eth(
                &[TPID_8021Q],
                ETHERTYPE_IPV4,
                &v4(IPPROTO_TCP, &tcp(BID_PORT)),
            ),
            BidTcp,
        ),
        case(
            "802.1ad+802.1Q ipv6 tcp to bid port",
            eth(
                &[TPID_8021AD, TPID_8021Q],
                ETHERTYPE_IPV6,
                &ipv6(IPPROTO_TCP, &tcp(BID_PORT)),
            ),
            BidTcp,
        ),
        case(
            "three vlan tags",
            eth(
                &[TPID_8021AD, TPID_8021Q, TPID_8021Q],
                ETHERTYPE_IPV4,
                &v4(IPPROTO_TCP, &tcp(BID_PORT)),
            ),
            Other,
        ),
        case(
            "ipv6 tcp to bid port",
            eth(&[], ETHERTYPE_IPV6, &ipv6(IPPROTO_TCP, &tcp(BID_PORT))),
            BidTcp,
        ),
        case(
            "ipv6 hop-by-hop then tcp (extension headers not walked yet)",
            eth(
                &[],
                ETHERTYPE_IPV6,
                &ipv6(IPV6_HOP_BY_HOP, &hop_by_hop(IPPROTO_TCP, &tcp(BID_PORT))),
            ),
            Other,
        ),
        case("arp", eth(&[], ETHERTYPE_ARP, &[0; 28]), Other),
        case(
            "runt frame, ethernet header only",
            eth(&[], ETHERTYPE_IPV4, &[]),
            Other,
        ),
    ]
}

#[test]
fn each_frame_is_counted_once_in_its_class() {
    if !running_as_root() {
        eprintln!("skipped each_frame_is_counted_once_in_its_class: needs root");
        return;
    }
    let netns = Netns::create();
    netns.ip(&[
        "link", "add", XDP_IFACE, "type", "veth", "peer", "name", SEND_IFACE,
    ]);
    netns.ip(&["link", "set", XDP_IFACE, "up"]);
    netns.ip(&["link", "set", SEND_IFACE, "up"]);

    // Network namespaces belong to threads: this one enters the test namespace, so the
    // attach and the sends see its interfaces while the test's other threads do not.
    let failures = thread::scope(|scope| {
        scope
            .spawn(|| {
                netns.enter();
                run_cases(&cases())
            })
            .join()
            .expect("the namespace thread does not panic")
    });
    assert!(
        failures.is_empty(),
        "misclassified:\n{}",
        failures.join("\n")
    );
}

/// Attaches the program (native mode, as on a real NIC) and sends every case, checking
/// the counters after each. Returns one line per case that went wrong.
fn run_cases(cases: &[Case]) -> Vec<String> {
    let mut ebpf = EbpfLoader::new()
        .override_global(BID_PORT_GLOBAL, &BID_PORT, true)
        .load(XDP_OBJECT)
        .expect("load the XDP object");
    let program: &mut Xdp = ebpf
        .program_mut(PROGRAM_NAME)
        .expect("program present")
        .try_into()
        .expect("program is XDP");
    program.load().expect("the verifier accepts the program");
    program
        .attach(XDP_IFACE, XdpMode::Driver)
        .expect("veth takes a native XDP program");
    let counts: PerCpuArray<_, PacketCounter> = PerCpuArray::try_from(
        ebpf.map(PACKET_COUNTS_MAP)
            .expect("PACKET_COUNTS map present"),
    )
    .expect("PACKET_COUNTS is a per-CPU array of PacketCounter");
    let socket = PacketSocket::open(SEND_IFACE).expect("open a packet socket");

    let mut failures = Vec::new();
    for case in cases {
        let before = totals(&counts);
        socket.send(&case.frame).expect("send the frame");
        let after = wait_for_one_more_packet(&counts, &before);
        for class in PacketClass::ALL {
            let i = class.index() as usize;
            let (packets, bytes) = if class == case.expect {
                (1, case.frame.len() as u64)
            } else {
                (0, 0)
            };
            let got = (
                after[i].packets - before[i].packets,
                after[i].bytes - before[i].bytes,
            );
            if got != (packets, bytes) {
                failures.push(format!(
                    "  {}: {class:?} grew by {got:?} (packets, bytes), expected {:?}",
                    case.name,
                    (packets, bytes)
                ));
            }
        }
    }
    failures
}

/// Per-class totals over all CPUs.
fn totals(counts: &PerCpuArray<&aya::maps::MapData, PacketCounter>) -> Vec<PacketCounter> {
    PacketClass::ALL
        .iter()
        .map(|class| {
            let per_cpu = counts.get(&class.index(), 0).expect("read a counter slot");
            per_cpu
                .iter()
                .fold(PacketCounter::default(), |sum, cpu| sum.plus(*cpu))
        })
        .collect()
}

/// Polls until the packet total is one above `before`, or the wait runs out (then the
/// caller's comparison reports what arrived).
fn wait_for_one_more_packet(
    counts: &PerCpuArray<&aya::maps::MapData, PacketCounter>,
    before: &[PacketCounter],
) -> Vec<PacketCounter> {
    let sum = |totals: &[PacketCounter]| totals.iter().map(|c| c.packets).sum::<u64>();
    let deadline = Instant::now() + COUNT_WAIT;
    loop {
        let now = totals(counts);
        if sum(&now) > sum(before) || Instant::now() >= deadline {
            return now;
        }
        thread::sleep(COUNT_POLL);
    }
}

/// Ethernet frame: broadcast destination, a locally administered source, one
/// TPID + TCI pair per entry of `tags` (outermost first), then `ethertype` and payload.
fn eth(tags: &[u16], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0xff; 6];
    frame.extend([0x02, 0, 0, 0, 0, 0x01]);
    for (vlan_id, tpid) in (100u16..).zip(tags) {
        frame.extend(tpid.to_be_bytes());
        frame.extend(vlan_id.to_be_bytes());
    }
    frame.extend(ethertype.to_be_bytes());
    frame.extend(payload);
    frame
}

/// IPv4 header with `option_words` 4-byte words of NOP options and the given fragment
/// offset (in 8-byte units), followed by `payload`. Checksums are left zero: XDP runs
/// before anything verifies them.
fn ipv4(protocol: u8, option_words: usize, fragment_offset: u16, payload: &[u8]) -> Vec<u8> {
    let header_bytes = 20 + option_words * 4;
    let mut packet = vec![0u8; header_bytes];
    packet[0] = 0x40 | (header_bytes / 4) as u8;
    let total = (header_bytes + payload.len()) as u16;
    packet[2..4].copy_from_slice(&total.to_be_bytes());
    packet[6..8].copy_from_slice(&fragment_offset.to_be_bytes());
    packet[8] = 64;
    packet[9] = protocol;
    packet[12..16].copy_from_slice(&[169, 254, 0, 2]);
    packet[16..20].copy_from_slice(&[169, 254, 0, 1]);
    packet[20..].fill(1);
    packet.extend(payload);
    packet
}

/// IPv6 header from fd00::2 to fd00::1 with `next_header`, followed by `payload`.
fn ipv6(next_header: u8, payload: &[u8]) -> Vec<u8> {
    let mut packet = vec![0u8; 40];
    packet[0] = 0x60;
    packet[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    packet[6] = next_header;
    packet[7] = 64;
    packet[8] = 0xfd;
    packet[23] = 2;
    packet[24] = 0xfd;
    packet[39] = 1;
    packet.extend(payload);
    packet
}

/// Eight-byte hop-by-hop options header (PadN only) in front of `payload`.
fn hop_by_hop(next_header: u8, payload: &[u8]) -> Vec<u8> {
    let mut packet = vec![next_header, 0, 1, 4, 0, 0, 0, 0];
    packet.extend(payload);
    packet
}

/// Minimal TCP SYN to `dst_port`.
fn tcp(dst_port: u16) -> Vec<u8> {
    let mut segment = vec![0u8; 20];
    segment[0..2].copy_from_slice(&40_000u16.to_be_bytes());
    segment[2..4].copy_from_slice(&dst_port.to_be_bytes());
    segment[12] = 5 << 4;
    segment[13] = 0x02;
    segment
}

fn udp(dst_port: u16) -> Vec<u8> {
    let mut datagram = vec![0u8; 8];
    datagram[0..2].copy_from_slice(&40_000u16.to_be_bytes());
    datagram[2..4].copy_from_slice(&dst_port.to_be_bytes());
    datagram[4..6].copy_from_slice(&8u16.to_be_bytes());
    datagram
}

/// A named network namespace that exists for this test only and is deleted when the
/// guard drops, also when an assertion fails (the veth pair inside goes with it).
struct Netns {
    name: String,
}

impl Netns {
    fn create() -> Netns {
        let name = format!("bidder-xdp-{}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]));
        let netns = Netns { name };
        // No IPv6 on interfaces created in here: no router solicitations or DAD frames
        // arrive unbidden to disturb the exact counts.
        for key in ["all", "default"] {
            run(Command::new("ip")
                .args(["netns", "exec", &netns.name, "sysctl", "-qw"])
                .arg(format!("net.ipv6.conf.{key}.disable_ipv6=1")));
        }
        netns
    }

    fn ip(&self, args: &[&str]) {
        run(Command::new("ip").args(["-n", &self.name]).args(args));
    }

    /// Moves the calling thread into the namespace.
    fn enter(&self) {
        let ns = File::open(format!("/run/netns/{}", self.name)).expect("open the netns");
        // SAFETY: `ns` is an open namespace file descriptor for the duration of the call;
        // setns changes only the calling thread's network namespace.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", io::Error::last_os_error());
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// An `AF_PACKET` socket that sends whole frames, as given, out of one interface.
struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
}

impl PacketSocket {
    fn open(interface: &str) -> io::Result<PacketSocket> {
        let name = CString::new(interface).expect("interface names have no NUL");
        // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::last_os_error());
        }
        // Protocol 0: the socket sends but receives nothing.
        // SAFETY: plain socket(2) call; the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(PacketSocket {
            fd,
            ifindex: ifindex as i32,
        })
    }

    fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid starting value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = self.ifindex;
        // SAFETY: `frame` and `addr` outlive the call and the lengths passed match them.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                std::ptr::from_ref(&addr).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        assert_eq!(sent as usize, frame.len(), "short send");
        Ok(())
    }
}

fn run(cmd: &mut Command) {
    let status = cmd
        .status()
        .expect("iproute2 is installed (cargo xtask setup)");
    assert!(status.success(), "{cmd:?} failed: {status}");
}

/// `/proc/self` belongs to the process's effective uid, so this needs no libc call.
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}
