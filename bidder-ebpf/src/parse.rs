//! Header walk from the Ethernet frame to the TCP destination port.
//!
//! Every read goes through [`read`], which checks the bytes against `data_end` right
//! before touching them: the verifier only accepts packet access that such a check
//! dominates. Anything the walk does not understand — unknown EtherType, more VLAN tags
//! than [`MAX_VLAN_TAGS`], IPv4 fragments after the first, IPv6 extension headers,
//! truncated headers — yields `None`, which the caller counts as "other" and passes.

use aya_ebpf::programs::XdpContext;

/// Bytes of an untagged Ethernet header: two MAC addresses and the EtherType.
const ETH_HEADER_BYTES: usize = 14;
/// Offset of the EtherType in an untagged Ethernet header.
const ETH_TYPE_OFFSET: usize = 12;
/// Bytes one 802.1Q / 802.1ad tag adds: TCI, then the next EtherType.
const VLAN_TAG_BYTES: usize = 4;
/// Tags walked before giving up: one (802.1Q) or two (802.1ad outer + 802.1Q inner,
/// "QinQ") cover what a cloud or a datacentre switch hands a host.
const MAX_VLAN_TAGS: usize = 2;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;

/// Shortest IPv4 header (IHL 5, no options).
const IPV4_MIN_HEADER_BYTES: usize = 20;
/// Fixed IPv6 header; extension headers would follow it.
const IPV6_HEADER_BYTES: usize = 40;
const IPPROTO_TCP: u8 = 6;
/// Mask of the fragment offset in the IPv4 flags/fragment field.
const IPV4_FRAGMENT_OFFSET_MASK: u16 = 0x1fff;

/// Shortest TCP header (data offset 5, no options): a frame must hold all of it to be
/// counted as TCP, not just the ports.
const TCP_MIN_HEADER_BYTES: usize = 20;
/// Offset of the destination port inside the TCP header.
const TCP_DST_PORT_OFFSET: usize = 2;

/// The destination port of a TCP segment over IPv4 or IPv6, with up to
/// [`MAX_VLAN_TAGS`] VLAN tags, or `None` when the frame is anything else.
#[inline(always)]
pub(crate) fn tcp_dst_port(ctx: &XdpContext) -> Option<u16> {
    let mut ethertype = be_u16(read::<2>(ctx, ETH_TYPE_OFFSET)?);
    let mut l3 = ETH_HEADER_BYTES;
    for _ in 0..MAX_VLAN_TAGS {
        if !is_vlan(ethertype) {
            break;
        }
        // The tag sits where the EtherType was; the next EtherType follows its TCI.
        ethertype = be_u16(read::<2>(ctx, l3 + 2)?);
        l3 += VLAN_TAG_BYTES;
    }
    let l4 = match ethertype {
        ETHERTYPE_IPV4 => ipv4_tcp_offset(ctx, l3)?,
        ETHERTYPE_IPV6 => ipv6_tcp_offset(ctx, l3)?,
        _ => return None,
    };
    let tcp = read::<TCP_MIN_HEADER_BYTES>(ctx, l4)?;
    Some(be_u16([
        tcp[TCP_DST_PORT_OFFSET],
        tcp[TCP_DST_PORT_OFFSET + 1],
    ]))
}

/// Offset of the TCP header after the IPv4 header at `l3`, if the packet is a first
/// (or only) fragment of a TCP datagram. Later fragments carry no TCP header.
#[inline(always)]
fn ipv4_tcp_offset(ctx: &XdpContext, l3: usize) -> Option<usize> {
    let ip = read::<IPV4_MIN_HEADER_BYTES>(ctx, l3)?;
    if ip[0] >> 4 != 4 || ip[9] != IPPROTO_TCP {
        return None;
    }
    let header_bytes = usize::from(ip[0] & 0x0f) * 4;
    if header_bytes < IPV4_MIN_HEADER_BYTES {
        return None;
    }
    if be_u16([ip[6], ip[7]]) & IPV4_FRAGMENT_OFFSET_MASK != 0 {
        return None;
    }
    Some(l3 + header_bytes)
}

/// Offset of the TCP header after the IPv6 header at `l3`, if TCP follows directly.
/// Extension headers are not walked yet: such packets count as "other".
#[inline(always)]
fn ipv6_tcp_offset(ctx: &XdpContext, l3: usize) -> Option<usize> {
    let ip = read::<IPV6_HEADER_BYTES>(ctx, l3)?;
    if ip[0] >> 4 != 6 || ip[6] != IPPROTO_TCP {
        return None;
    }
    Some(l3 + IPV6_HEADER_BYTES)
}

#[inline(always)]
fn is_vlan(ethertype: u16) -> bool {
    ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ
}

#[inline(always)]
fn be_u16(bytes: [u8; 2]) -> u16 {
    u16::from_be_bytes(bytes)
}

/// Copies `N` bytes at `offset` from the frame start, or `None` if the frame is shorter.
#[inline(always)]
fn read<const N: usize>(ctx: &XdpContext, offset: usize) -> Option<[u8; N]> {
    let start = ctx.data() + offset;
    if start + N > ctx.data_end() {
        return None;
    }
    // SAFETY: `[start, start + N)` lies inside the frame, checked against `data_end`
    // just above, and `read_unaligned` makes no alignment assumption about it.
    Some(unsafe { core::ptr::read_unaligned(start as *const [u8; N]) })
}
