//! The bidder's XDP front, first stage of a packet's journey (see DESIGN.md).
//!
//! It judges TCP segments addressed to the bid ports and nothing else (SSH, the admin
//! port and all non-TCP traffic pass untouched):
//! 1. a source on the blocklist is dropped;
//! 2. the source's longest matching prefix names the partner; no match is an unknown
//!    source, passed or dropped by the configured policy;
//! 3. a disabled partner is dropped;
//! 4. SYNs and payload-carrying segments spend from the partner's GCRA limits (shared
//!    by all CPUs); over-limit ones are dropped. Pure ACKs, FINs and RSTs of
//!    established connections always pass: dropping them would only stall sockets.
//!
//! Every judgement is counted per partner in per-CPU counters; drops are logged through
//! aya-log at most once per CPU per configured interval.
#![no_std]
#![no_main]
// `atomic_cxchg`: the BPF target has no `atomic-cas` feature, so `AtomicU64` offers no
// compare-and-swap; the intrinsic lowers to the BPF_CMPXCHG instruction (kernel ≥ 5.12,
// `-C target-cpu=v3`).
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod limit;
mod parse;

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_ktime_get_ns, bpf_xdp_get_buff_len},
    macros::{map, xdp},
    maps::{lpm_trie::Key, Array, LpmTrie, PerCpuArray},
    programs::XdpContext,
};
use aya_log_ebpf::warn;
use bidder_common::xdp::{
    Counters, DropReason, PartnerBuckets, PartnerLimit, Settings, Tally, COUNTER_SLOTS,
    LIMIT_ENABLED, LIMIT_IN_USE, MAX_PARTNERS, MAX_PREFIXES, UNKNOWN_DROP, UNKNOWN_SLOT,
};
use parse::{Segment, Source};

#[map]
static SETTINGS: Array<Settings> = Array::pinned(1, 0);
#[map]
static PARTNERS_V4: LpmTrie<[u8; 4], u32> = LpmTrie::pinned(MAX_PREFIXES, 0);
#[map]
static PARTNERS_V6: LpmTrie<[u8; 16], u32> = LpmTrie::pinned(MAX_PREFIXES, 0);
#[map]
static BLOCK_V4: LpmTrie<[u8; 4], u32> = LpmTrie::pinned(MAX_PREFIXES, 0);
#[map]
static BLOCK_V6: LpmTrie<[u8; 16], u32> = LpmTrie::pinned(MAX_PREFIXES, 0);
#[map]
static LIMITS: Array<PartnerLimit> = Array::pinned(MAX_PARTNERS, 0);
#[map]
static BUCKETS: Array<PartnerBuckets> = Array::pinned(MAX_PARTNERS, 0);
#[map]
static COUNTERS: PerCpuArray<Counters> = PerCpuArray::pinned(COUNTER_SLOTS, 0);
#[map]
static LOG_STATE: PerCpuArray<u64> = PerCpuArray::pinned(1, 0);

/// Entry point (`bidder_common::xdp::PROGRAM_NAME`); `frags` so that jumbo frames
/// (multi-buffer) attach natively too.
#[xdp(frags)]
pub fn xdp_bid_front(ctx: XdpContext) -> u32 {
    let Some(settings) = SETTINGS.get(0) else {
        return xdp_action::XDP_PASS;
    };
    let Some(segment) = parse::segment(&ctx) else {
        return xdp_action::XDP_PASS;
    };
    if !settings.is_bid_port(segment.dst_port) {
        return xdp_action::XDP_PASS;
    }
    let verdict = judge(&segment, settings);
    let bytes = frame_bytes(&ctx);
    match verdict {
        Verdict::Pass(slot) => {
            count(slot, |c| {
                add(&mut c.passed, bytes);
                if segment.syn {
                    add(&mut c.passed_syn, bytes);
                }
                if segment.payload {
                    add(&mut c.passed_payload, bytes);
                }
            });
            xdp_action::XDP_PASS
        }
        Verdict::Drop(slot, reason) => {
            count(slot, |c| add(&mut c.dropped[reason as usize], bytes));
            log_drop(&ctx, settings, slot, reason);
            xdp_action::XDP_DROP
        }
    }
}

/// What happens to a judged segment, and which counter slot it is charged to.
enum Verdict {
    Pass(u32),
    Drop(u32, DropReason),
}

#[inline(always)]
fn judge(segment: &Segment, settings: &Settings) -> Verdict {
    let (partner, blocked) = match segment.source {
        Source::V4(addr) => {
            let key = Key::new(32, addr);
            (PARTNERS_V4.get(&key).copied(), BLOCK_V4.get(&key).is_some())
        }
        Source::V6(addr) => {
            let key = Key::new(128, addr);
            (PARTNERS_V6.get(&key).copied(), BLOCK_V6.get(&key).is_some())
        }
    };
    // A trie entry pointing at a slot the loader has not filled (yet, or any more) is
    // treated as no match: the loader writes limits before prefixes and removes
    // prefixes before limits, so this is only ever a stale read.
    let known = partner
        .filter(|&slot| slot < MAX_PARTNERS)
        .and_then(|slot| {
            let limit = LIMITS.get(slot)?;
            (limit.flags & LIMIT_IN_USE != 0).then_some((slot, limit))
        });
    let slot = known.map_or(UNKNOWN_SLOT, |(slot, _)| slot);
    if blocked {
        return Verdict::Drop(slot, DropReason::Blocklist);
    }
    let Some((slot, limit)) = known else {
        return if settings.unknown_action == UNKNOWN_DROP {
            Verdict::Drop(UNKNOWN_SLOT, DropReason::UnknownSource)
        } else {
            Verdict::Pass(UNKNOWN_SLOT)
        };
    };
    if limit.flags & LIMIT_ENABLED == 0 {
        return Verdict::Drop(slot, DropReason::Disabled);
    }
    if !segment.syn && !segment.payload {
        return Verdict::Pass(slot);
    }
    let Some(buckets) = BUCKETS.get_ptr_mut(slot) else {
        return Verdict::Pass(slot);
    };
    // SAFETY: a pointer from a successful array lookup points at the live, aligned
    // value for as long as the program runs; the fields are only touched through the
    // atomic operations in `limit::conform`.
    let now = unsafe { bpf_ktime_get_ns() };
    if segment.syn {
        let tat = unsafe { core::ptr::addr_of_mut!((*buckets).syn_tat_ns) };
        if !limit::conform(tat, limit.syn_interval_ns, limit.syn_tolerance_ns, now) {
            return Verdict::Drop(slot, DropReason::SynRate);
        }
    } else {
        let tat = unsafe { core::ptr::addr_of_mut!((*buckets).packet_tat_ns) };
        if !limit::conform(
            tat,
            limit.packet_interval_ns,
            limit.packet_tolerance_ns,
            now,
        ) {
            return Verdict::Drop(slot, DropReason::PacketRate);
        }
    }
    Verdict::Pass(slot)
}

/// The whole frame's length, every buffer of a multi-buffer frame included.
#[inline(always)]
fn frame_bytes(ctx: &XdpContext) -> u64 {
    // SAFETY: the helper only reads the context the kernel handed this program.
    unsafe { bpf_xdp_get_buff_len(ctx.ctx) }
}

#[inline(always)]
fn add(tally: &mut Tally, bytes: u64) {
    tally.packets = tally.packets.wrapping_add(1);
    tally.bytes = tally.bytes.wrapping_add(bytes);
}

/// Applies `update` to this CPU's counters of `slot`.
#[inline(always)]
fn count(slot: u32, update: impl FnOnce(&mut Counters)) {
    if let Some(counters) = COUNTERS.get_ptr_mut(slot) {
        // SAFETY: this CPU's copy of a per-CPU array slot; XDP runs with migration
        // disabled, so no other program run touches it meanwhile.
        update(unsafe { &mut *counters });
    }
}

/// Logs a drop unless this CPU logged one less than `log_interval_ns` ago: a flood is
/// visible in the log without the log becoming the flood.
#[inline(always)]
fn log_drop(ctx: &XdpContext, settings: &Settings, slot: u32, reason: DropReason) {
    if settings.log_interval_ns == 0 {
        return;
    }
    let Some(last) = LOG_STATE.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the helper has no preconditions; `last` is this CPU's slot (see `count`).
    let now = unsafe { bpf_ktime_get_ns() };
    unsafe {
        if *last != 0 && now.wrapping_sub(*last) < settings.log_interval_ns {
            return;
        }
        *last = now;
    }
    warn!(
        ctx,
        "xdp drop: slot {} reason {} (further drops on this CPU unlogged for the interval)",
        slot,
        reason as u32
    );
}

/// The BPF target has no unwinding, and the verifier rejects any path that could reach
/// this (it would be an unbounded loop), so a panic can only come from a build that will
/// not load.
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// The kernel lends GPL-only helpers only to programs whose `license` section names a
/// GPL-compatible license.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
