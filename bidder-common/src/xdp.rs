//! The contract between the XDP program (`bidder-ebpf`) and the bidder that loads it.
//!
//! The program judges TCP segments addressed to the bid ports: the source address
//! names the partner (longest-prefix match), a blocklist drops, unknown sources pass or
//! drop by policy, and per-partner rate limits drop what is over. Everything else
//! passes untouched. The names below are the ELF symbol names in the object and the
//! file names of the pinned maps: spelled once, here; the object test in `bidder`
//! checks the built object carries them with these layouts.
//!
//! Rate limits are GCRA (the "virtual scheduling" form of a token bucket): one
//! theoretical arrival time per partner and kind, shared by every CPU and advanced with
//! compare-and-swap, so a partner's limit holds across all RX queues together.

/// Name of the XDP entry point. Under 16 bytes: the kernel truncates program names.
pub const PROGRAM_NAME: &str = "xdp_bid_front";

/// Global settings, one [`Settings`] entry (an array of 1).
pub const SETTINGS_MAP: &str = "SETTINGS";
/// IPv4 source prefixes → partner slot (`u32`), longest prefix wins.
pub const PARTNERS_V4_MAP: &str = "PARTNERS_V4";
/// IPv6 source prefixes → partner slot (`u32`).
pub const PARTNERS_V6_MAP: &str = "PARTNERS_V6";
/// IPv4 source prefixes that are always dropped (value: [`BLOCKED`]).
pub const BLOCK_V4_MAP: &str = "BLOCK_V4";
/// IPv6 source prefixes that are always dropped.
pub const BLOCK_V6_MAP: &str = "BLOCK_V6";
/// Per partner slot: its [`PartnerLimit`] (written by the loader).
pub const LIMITS_MAP: &str = "LIMITS";
/// Per partner slot: its [`PartnerBuckets`] (written by the program, shared by CPUs).
pub const BUCKETS_MAP: &str = "BUCKETS";
/// Per-CPU, per counter slot: [`Counters`]; slot [`UNKNOWN_SLOT`] is unknown sources.
pub const COUNTERS_MAP: &str = "COUNTERS";
/// Per-CPU: time of the last drop log record, for rate-limiting aya-log output.
pub const LOG_STATE_MAP: &str = "LOG_STATE";

/// Every map the program declares, in the order the loader pins them.
pub const ALL_MAPS: [&str; 9] = [
    SETTINGS_MAP,
    PARTNERS_V4_MAP,
    PARTNERS_V6_MAP,
    BLOCK_V4_MAP,
    BLOCK_V6_MAP,
    LIMITS_MAP,
    BUCKETS_MAP,
    COUNTERS_MAP,
    LOG_STATE_MAP,
];

/// Partner slots: the most partners one host can tell apart at the NIC.
pub const MAX_PARTNERS: u32 = 256;
/// Counter slot of traffic from sources no partner prefix matches.
pub const UNKNOWN_SLOT: u32 = MAX_PARTNERS;
/// Counter slots: one per partner plus [`UNKNOWN_SLOT`].
pub const COUNTER_SLOTS: u32 = MAX_PARTNERS + 1;
/// Prefixes per trie (partners v4, v6, blocklist v4, v6 each).
pub const MAX_PREFIXES: u32 = 16_384;
/// Bid ports one program judges (listeners on several ports share one program).
pub const MAX_BID_PORTS: usize = 4;
/// Longest partner name kept in [`PartnerLimit::name`] (for `bidder xdp status`).
pub const PARTNER_NAME_BYTES: usize = 32;
/// Value stored in the blocklist tries.
pub const BLOCKED: u32 = 1;

/// [`Settings::unknown_action`]: let unknown sources through.
pub const UNKNOWN_PASS: u32 = 0;
/// [`Settings::unknown_action`]: drop unknown sources.
pub const UNKNOWN_DROP: u32 = 1;

/// [`Settings::attach_mode`] values, recorded by the loader for `bidder xdp status`.
pub const MODE_NATIVE: u32 = 1;
/// Generic (skb) mode: works on any interface, slower.
pub const MODE_GENERIC: u32 = 2;

/// The program's global settings.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// TCP destination ports that are bid traffic, host byte order; 0 = unused slot.
    pub ports: [u16; MAX_BID_PORTS],
    /// [`UNKNOWN_PASS`] or [`UNKNOWN_DROP`].
    pub unknown_action: u32,
    /// Interface index the loader attached to (informational).
    pub ifindex: u32,
    /// [`MODE_NATIVE`] or [`MODE_GENERIC`] (informational).
    pub attach_mode: u32,
    pub _pad: u32,
    /// Least time between two drop records a CPU logs; 0 logs none.
    pub log_interval_ns: u64,
}

impl Settings {
    /// Whether `port` (host byte order) is a bid port.
    #[inline(always)]
    pub fn is_bid_port(&self, port: u16) -> bool {
        // Unrolled by hand: the verifier prefers straight-line code to a loop here.
        port != 0
            && (port == self.ports[0]
                || port == self.ports[1]
                || port == self.ports[2]
                || port == self.ports[3])
    }
}

/// [`PartnerLimit::flags`]: the slot belongs to a configured partner.
pub const LIMIT_IN_USE: u32 = 1;
/// [`PartnerLimit::flags`]: the partner is enabled; a disabled partner is dropped.
pub const LIMIT_ENABLED: u32 = 2;

/// An emission interval meaning "rate 0": nothing conforms.
pub const SHUT_OFF_INTERVAL_NS: u64 = u64::MAX;

/// One partner's limits, as GCRA parameters the loader computes from rate and burst.
///
/// For a rate of `r` per second and a burst of `b`, the emission interval is
/// `T = 10⁹ / r` ns and the tolerance `τ = b · T`: a packet arriving at `t` conforms
/// when the partner's theoretical arrival time is at most `t + τ`, which admits at most
/// `b + 1` packets at once and `r` per second sustained.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartnerLimit {
    /// Interval between payload-carrying packets; [`SHUT_OFF_INTERVAL_NS`] for rate 0.
    pub packet_interval_ns: u64,
    pub packet_tolerance_ns: u64,
    /// Interval between SYNs (new connections); [`SHUT_OFF_INTERVAL_NS`] for rate 0.
    pub syn_interval_ns: u64,
    pub syn_tolerance_ns: u64,
    /// [`LIMIT_IN_USE`] | [`LIMIT_ENABLED`].
    pub flags: u32,
    pub _pad: u32,
    /// The partner's name, NUL-padded, for tools reading the pinned maps.
    pub name: [u8; PARTNER_NAME_BYTES],
}

impl Default for PartnerLimit {
    fn default() -> Self {
        PartnerLimit {
            packet_interval_ns: SHUT_OFF_INTERVAL_NS,
            packet_tolerance_ns: 0,
            syn_interval_ns: SHUT_OFF_INTERVAL_NS,
            syn_tolerance_ns: 0,
            flags: 0,
            _pad: 0,
            name: [0; PARTNER_NAME_BYTES],
        }
    }
}

impl PartnerLimit {
    /// GCRA parameters `(interval, tolerance)` for `rate_per_s` and `burst`.
    pub const fn gcra(rate_per_s: u64, burst: u64) -> (u64, u64) {
        if rate_per_s == 0 {
            return (SHUT_OFF_INTERVAL_NS, 0);
        }
        // At least 1 ns: rates above 10⁹/s are unlimited for practical purposes.
        let interval = 1_000_000_000 / rate_per_s;
        let interval = if interval == 0 { 1 } else { interval };
        (interval, interval.saturating_mul(burst))
    }

    /// The name as text (up to the first NUL; lossy on bad UTF-8).
    pub fn name_str(&self) -> &str {
        let len = self
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(PARTNER_NAME_BYTES);
        match core::str::from_utf8(&self.name[..len]) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&self.name[..e.valid_up_to()]).unwrap_or(""),
        }
    }

    /// `name` cut to [`PARTNER_NAME_BYTES`] on a character boundary.
    pub fn set_name(&mut self, name: &str) {
        let mut end = name.len().min(PARTNER_NAME_BYTES);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        self.name = [0; PARTNER_NAME_BYTES];
        self.name[..end].copy_from_slice(&name.as_bytes()[..end]);
    }
}

/// One partner's GCRA state: theoretical arrival times, in `bpf_ktime_get_ns` time.
/// Written only by the program, with compare-and-swap; the loader zeroes a slot when it
/// hands it to another partner.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartnerBuckets {
    pub packet_tat_ns: u64,
    pub syn_tat_ns: u64,
}

/// Why the program dropped a packet; the index into [`Counters::dropped`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The source is on the blocklist.
    Blocklist = 0,
    /// No partner prefix matches and unknown sources are dropped.
    UnknownSource = 1,
    /// The partner is disabled.
    Disabled = 2,
    /// Over the partner's rate of payload-carrying packets.
    PacketRate = 3,
    /// Over the partner's rate of SYNs.
    SynRate = 4,
}

impl DropReason {
    /// Every reason, in index order.
    pub const ALL: [DropReason; 5] = [
        DropReason::Blocklist,
        DropReason::UnknownSource,
        DropReason::Disabled,
        DropReason::PacketRate,
        DropReason::SynRate,
    ];
    /// Number of reasons: the length of [`Counters::dropped`].
    pub const COUNT: usize = Self::ALL.len();

    /// Label value on `/metrics` and in `bidder xdp status`.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Blocklist => "blocklist",
            DropReason::UnknownSource => "unknown_source",
            DropReason::Disabled => "disabled",
            DropReason::PacketRate => "packet_rate",
            DropReason::SynRate => "syn_rate",
        }
    }
}

/// Packets and bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub packets: u64,
    /// Whole frame length, all fragments of a multi-buffer frame included.
    pub bytes: u64,
}

impl Tally {
    /// Adds another CPU's copy.
    pub const fn plus(self, other: Tally) -> Tally {
        Tally {
            packets: self.packets.wrapping_add(other.packets),
            bytes: self.bytes.wrapping_add(other.bytes),
        }
    }
}

/// One CPU's counters for one slot (a partner, or [`UNKNOWN_SLOT`]).
///
/// Per-CPU so the program increments without atomics; user space sums the CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Judged and passed (any bid-port segment).
    pub passed: Tally,
    /// Of `passed`: segments carrying payload (≈ requests).
    pub passed_payload: Tally,
    /// Of `passed`: SYNs (new connections).
    pub passed_syn: Tally,
    /// Dropped, by [`DropReason`].
    pub dropped: [Tally; DropReason::COUNT],
}

impl Counters {
    /// Adds another CPU's copy.
    pub fn plus(mut self, other: &Counters) -> Counters {
        self.passed = self.passed.plus(other.passed);
        self.passed_payload = self.passed_payload.plus(other.passed_payload);
        self.passed_syn = self.passed_syn.plus(other.passed_syn);
        for (mine, theirs) in self.dropped.iter_mut().zip(other.dropped.iter()) {
            *mine = mine.plus(*theirs);
        }
        self
    }

    /// All drops together.
    pub fn dropped_total(&self) -> Tally {
        self.dropped
            .iter()
            .fold(Tally::default(), |sum, t| sum.plus(*t))
    }
}

/// Key of the IPv4 tries: prefix length in bits, then the address in network order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LpmV4 {
    pub prefix_len: u32,
    pub addr: [u8; 4],
}

/// Key of the IPv6 tries.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LpmV6 {
    pub prefix_len: u32,
    pub addr: [u8; 16],
}

// SAFETY (all impls below): `#[repr(C)]` structs of integers and byte arrays whose
// sizes are asserted below to have no padding the compiler chose (explicit `_pad`
// fields instead), so every byte pattern is a valid value and aya may copy them to and
// from the kernel as plain bytes.
#[cfg(feature = "user")]
mod pod {
    use super::*;
    unsafe impl aya::Pod for Settings {}
    unsafe impl aya::Pod for PartnerLimit {}
    unsafe impl aya::Pod for PartnerBuckets {}
    unsafe impl aya::Pod for Counters {}
    unsafe impl aya::Pod for Tally {}
}

const _: () = assert!(size_of::<Settings>() == 32);
const _: () = assert!(size_of::<PartnerLimit>() == 40 + PARTNER_NAME_BYTES);
const _: () = assert!(size_of::<PartnerBuckets>() == 16);
const _: () = assert!(size_of::<Counters>() == 16 * (3 + DropReason::COUNT));
const _: () = assert!(size_of::<LpmV4>() == 8);
const _: () = assert!(size_of::<LpmV6>() == 20);
const _: () = assert!(PROGRAM_NAME.len() < 16);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_names_fit_the_kernel_limit_and_are_unique() {
        for (i, name) in ALL_MAPS.iter().enumerate() {
            assert!(name.len() < 16, "{name}");
            assert!(!ALL_MAPS[..i].contains(name), "{name} twice");
        }
    }

    #[test]
    fn gcra_parameters_follow_rate_and_burst() {
        assert_eq!(PartnerLimit::gcra(1_000, 10), (1_000_000, 10_000_000));
        assert_eq!(PartnerLimit::gcra(0, 10), (SHUT_OFF_INTERVAL_NS, 0));
        assert_eq!(PartnerLimit::gcra(2_000_000_000, 5), (1, 5));
        assert_eq!(PartnerLimit::gcra(1, u64::MAX).1, u64::MAX);
    }

    #[test]
    fn bid_ports_ignore_empty_slots() {
        let s = Settings {
            ports: [8080, 0, 0, 0],
            ..Settings::default()
        };
        assert!(s.is_bid_port(8080));
        assert!(!s.is_bid_port(0));
        assert!(!s.is_bid_port(22));
    }

    #[test]
    fn names_are_cut_on_a_character_boundary() {
        let mut l = PartnerLimit::default();
        l.set_name("exchange-a");
        assert_eq!(l.name_str(), "exchange-a");
        let long = "é".repeat(20); // 40 bytes
        l.set_name(&long);
        assert_eq!(l.name_str(), "é".repeat(16));
    }

    #[test]
    fn counters_sum_across_cpus() {
        let mut a = Counters::default();
        a.passed.packets = 2;
        a.dropped[DropReason::SynRate as usize].packets = 3;
        let b = a;
        let sum = a.plus(&b);
        assert_eq!(sum.passed.packets, 4);
        assert_eq!(sum.dropped_total().packets, 6);
    }
}
