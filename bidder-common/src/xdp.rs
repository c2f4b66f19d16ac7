//! The contract between the XDP program (`bidder-ebpf`) and whoever loads it.
//!
//! The names below are the ELF symbol names in the object: the loader finds the program,
//! the map and the global by these strings, so they are spelled once, here, and the
//! object test in `bidder` checks the built object really carries them.

/// Name of the XDP entry point in the object. Kept under 16 bytes because the kernel
/// truncates program names to `BPF_OBJ_NAME_LEN - 1` and `bpftool` shows the truncation.
pub const PROGRAM_NAME: &str = "xdp_bid_count";

/// Name of the per-CPU array that counts packets per [`PacketClass`] (same 15-byte limit).
pub const PACKET_COUNTS_MAP: &str = "PACKET_COUNTS";

/// Name of the read-only global holding the bid port (host byte order, `u16`). The loader
/// overrides it before loading; the default 0 means "no bid port configured" and makes
/// every packet count as [`PacketClass::Other`].
pub const BID_PORT_GLOBAL: &str = "BID_PORT";

/// What the XDP program decided a frame is; the value is its index in the
/// `PACKET_COUNTS` array.
///
/// An array map's key is always a `u32` index in the kernel, so the key type is a
/// `#[repr(u32)]` enum rather than a struct: the discriminant *is* the key.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketClass {
    /// TCP (over IPv4 or IPv6, optionally VLAN-tagged) to the configured bid port.
    BidTcp = 0,
    /// Everything else, including frames too short to parse: they are passed, not judged.
    Other = 1,
}

impl PacketClass {
    /// Every class, in index order: what user space iterates to read the whole map.
    pub const ALL: [PacketClass; 2] = [PacketClass::BidTcp, PacketClass::Other];

    /// Number of classes, which is the `max_entries` of `PACKET_COUNTS`.
    pub const COUNT: u32 = Self::ALL.len() as u32;

    /// The array index (map key) of this class.
    pub const fn index(self) -> u32 {
        self as u32
    }
}

/// One CPU's tally for one [`PacketClass`].
///
/// Per-CPU because BPF targets have no compare-and-swap: each CPU increments its own copy
/// without atomics, and user space sums the copies. Both fields only ever grow and wrap
/// at `u64::MAX`, which at 100 Gbit/s takes decades.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketCounter {
    /// Frames seen.
    pub packets: u64,
    /// Bytes of the frames seen, counting the linear part XDP sees (`data_end - data`).
    pub bytes: u64,
}

impl PacketCounter {
    /// Adds another CPU's copy: what a reader does across the per-CPU values.
    pub const fn plus(self, other: PacketCounter) -> PacketCounter {
        PacketCounter {
            packets: self.packets.wrapping_add(other.packets),
            bytes: self.bytes.wrapping_add(other.bytes),
        }
    }
}

// SAFETY: `PacketCounter` is `#[repr(C)]` with two `u64`s and no padding (its size is
// asserted below), so every 16-byte pattern is a valid value and aya may copy it
// to and from the kernel as plain bytes.
#[cfg(feature = "user")]
unsafe impl aya::Pod for PacketCounter {}

const _: () = assert!(size_of::<PacketClass>() == 4);
const _: () = assert!(size_of::<PacketCounter>() == 16);
const _: () = assert!(align_of::<PacketCounter>() == 8);
const _: () = assert!(PROGRAM_NAME.len() < 16 && PACKET_COUNTS_MAP.len() < 16);
