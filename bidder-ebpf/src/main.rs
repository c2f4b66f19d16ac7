//! The bidder's XDP program, first stage of a packet's journey (see DESIGN.md).
//!
//! Today it only *observes*: it classifies each frame as TCP to the bid port or
//! anything else, counts both per CPU, and always returns `XDP_PASS`. Partner lookup,
//! rate limits and drops come with the filtering work; this program exists so the build,
//! the loader and the counters have a real, verifier-accepted object to grow from.
#![no_std]
#![no_main]

mod parse;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::PerCpuArray,
    programs::XdpContext,
    Global,
};
use aya_log_ebpf::error;
use bidder_common::xdp::{PacketClass, PacketCounter};

/// Destination TCP port of bid traffic, host byte order. The loader overrides this before
/// load (`bidder_common::xdp::BID_PORT_GLOBAL`); 0 means none configured, and then
/// nothing counts as bid traffic, because no real TCP segment is addressed to port 0.
#[unsafe(no_mangle)]
static BID_PORT: Global<u16> = Global::new(0);

/// Per-CPU tallies indexed by [`PacketClass`]; user space sums the CPUs' copies.
#[map]
static PACKET_COUNTS: PerCpuArray<PacketCounter> =
    PerCpuArray::with_max_entries(PacketClass::COUNT, 0);

/// Entry point (`bidder_common::xdp::PROGRAM_NAME`). Never drops, never redirects:
/// whatever the parse finds, the kernel stack still gets the frame.
#[xdp]
pub fn xdp_bid_count(ctx: XdpContext) -> u32 {
    // Port 0 is never a real TCP destination, so it stands for "not TCP" here. Collapsing
    // the `Option` before comparing matters: matching on it directly let LLVM read the
    // port register on the `None` path too, which the verifier rejects as uninitialised.
    let port = parse::tcp_dst_port(&ctx).unwrap_or(0);
    let class = if port != 0 && port == BID_PORT.load() {
        PacketClass::BidTcp
    } else {
        PacketClass::Other
    };
    count(&ctx, class);
    xdp_action::XDP_PASS
}

/// Adds one frame of `ctx`'s length to `class`'s counter on this CPU.
#[inline(always)]
fn count(ctx: &XdpContext, class: PacketClass) {
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    let Some(counter) = PACKET_COUNTS.get_ptr_mut(class.index()) else {
        // Every class index is below `max_entries`, so the kernel always has the slot;
        // reaching this means the map and `PacketClass` disagree, which is a bug.
        error!(ctx, "PACKET_COUNTS has no slot {}", class.index());
        return;
    };
    // SAFETY: the pointer comes from a successful lookup in a per-CPU array, so it points
    // at this CPU's live, aligned `PacketCounter`. XDP runs in softirq context with
    // migration disabled, so no other program run touches this CPU's copy meanwhile.
    unsafe {
        (*counter).packets = (*counter).packets.wrapping_add(1);
        (*counter).bytes = (*counter).bytes.wrapping_add(bytes);
    }
}

/// The BPF target has no unwinding, and the verifier rejects any path that could reach
/// this (it would be an unbounded loop), so a panic can only come from a build that will
/// not load.
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// The kernel lends GPL-only helpers only to programs whose `license` section names a
/// GPL-compatible license; declaring one now keeps the filtering work free to use them.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
