//! Header walk from the Ethernet frame to the TCP segment: source address, destination
//! port, and the two facts the limits need (is it a SYN, does it carry payload).
//!
//! Every read goes through [`read`], which checks the bytes against `data_end` right
//! before touching them: the verifier only accepts packet access that such a check
//! dominates. Anything the walk does not understand — unknown EtherType, more VLAN tags
//! than [`MAX_VLAN_TAGS`], IPv4 fragments after the first, more IPv6 extension headers
//! than [`MAX_IPV6_EXTENSIONS`], truncated or inconsistent headers — yields `None`: the
//! frame is not judged and passes untouched (the kernel stack drops what is malformed).
//!
//! Headers are read from the first buffer of a multi-buffer (`xdp.frags`) frame: a NIC
//! splits jumbo frames after the headers, never inside them.

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
/// Longest IPv4 header (IHL 15: 40 bytes of options).
const IPV4_MAX_HEADER_BYTES: usize = 60;
/// Mask of the fragment offset in the IPv4 flags/fragment field.
const IPV4_FRAGMENT_OFFSET_MASK: u16 = 0x1fff;
/// Fixed IPv6 header; extension headers follow it.
const IPV6_HEADER_BYTES: usize = 40;
/// IPv6 extension headers walked before giving up.
const MAX_IPV6_EXTENSIONS: usize = 4;
/// Longest single extension header walked (the length field allows 2 KiB; real
/// hop-by-hop and destination options are a few dozen bytes).
const MAX_IPV6_EXTENSION_BYTES: usize = 256;

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_DSTOPTS: u8 = 60;

/// Shortest TCP header (data offset 5, no options).
const TCP_MIN_HEADER_BYTES: usize = 20;
const TCP_FLAG_SYN: u8 = 0x02;
const TCP_FLAG_ACK: u8 = 0x10;

/// The source address of a segment, in network byte order.
#[derive(Clone, Copy)]
pub(crate) enum Source {
    V4([u8; 4]),
    V6([u8; 16]),
}

/// What the program judges a TCP segment by.
#[derive(Clone, Copy)]
pub(crate) struct Segment {
    pub source: Source,
    /// Destination port, host byte order.
    pub dst_port: u16,
    /// A connection request: SYN without ACK.
    pub syn: bool,
    /// Carries TCP payload (≈ a request, or part of one).
    pub payload: bool,
}

/// The TCP segment in the frame, if it is one we can judge.
#[inline(always)]
pub(crate) fn segment(ctx: &XdpContext) -> Option<Segment> {
    let mut ethertype = be_u16(read::<2>(ctx, ETH_TYPE_OFFSET)?);
    let mut l3 = ETH_HEADER_BYTES;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
            break;
        }
        // The tag sits where the EtherType was; the next EtherType follows its TCI.
        ethertype = be_u16(read::<2>(ctx, l3 + 2)?);
        l3 += VLAN_TAG_BYTES;
    }
    match ethertype {
        ETHERTYPE_IPV4 => ipv4(ctx, l3),
        ETHERTYPE_IPV6 => ipv6(ctx, l3),
        _ => None,
    }
}

/// An IPv4 packet at `l3`: judged if it is TCP and the first (or only) fragment.
#[inline(always)]
fn ipv4(ctx: &XdpContext, l3: usize) -> Option<Segment> {
    let ip = read::<IPV4_MIN_HEADER_BYTES>(ctx, l3)?;
    if ip[0] >> 4 != 4 || ip[9] != IPPROTO_TCP {
        return None;
    }
    let header_bytes = usize::from(ip[0] & 0x0f) * 4;
    if !(IPV4_MIN_HEADER_BYTES..=IPV4_MAX_HEADER_BYTES).contains(&header_bytes) {
        return None;
    }
    // Later fragments carry no TCP header; a first fragment does.
    if be_u16([ip[6], ip[7]]) & IPV4_FRAGMENT_OFFSET_MASK != 0 {
        return None;
    }
    let total_bytes = usize::from(be_u16([ip[2], ip[3]]));
    let ip_payload_bytes = total_bytes.checked_sub(header_bytes)?;
    let source = Source::V4([ip[12], ip[13], ip[14], ip[15]]);
    tcp(ctx, l3 + header_bytes, ip_payload_bytes, source)
}

/// An IPv6 packet at `l3`: judged if TCP follows, directly or after up to
/// [`MAX_IPV6_EXTENSIONS`] extension headers (a fragment header only if it is the
/// first fragment).
#[inline(always)]
fn ipv6(ctx: &XdpContext, l3: usize) -> Option<Segment> {
    let ip = read::<IPV6_HEADER_BYTES>(ctx, l3)?;
    if ip[0] >> 4 != 6 {
        return None;
    }
    let mut next = ip[6];
    let mut at = l3 + IPV6_HEADER_BYTES;
    let mut ip_payload_bytes = usize::from(be_u16([ip[4], ip[5]]));
    for _ in 0..MAX_IPV6_EXTENSIONS {
        if next == IPPROTO_TCP {
            break;
        }
        let ext = read::<4>(ctx, at)?;
        let ext_bytes = match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => (usize::from(ext[1]) + 1) * 8,
            IPPROTO_AH => (usize::from(ext[1]) + 2) * 4,
            IPPROTO_FRAGMENT => {
                // Offset in 8-byte units, above the 3 flag bits.
                if be_u16([ext[2], ext[3]]) >> 3 != 0 {
                    return None;
                }
                8
            }
            _ => return None,
        };
        if ext_bytes > MAX_IPV6_EXTENSION_BYTES {
            return None;
        }
        next = ext[0];
        at += ext_bytes;
        ip_payload_bytes = ip_payload_bytes.checked_sub(ext_bytes)?;
    }
    if next != IPPROTO_TCP {
        return None;
    }
    let mut source = [0u8; 16];
    source.copy_from_slice(&ip[8..24]);
    tcp(ctx, at, ip_payload_bytes, Source::V6(source))
}

/// The TCP header at `l4`, in an IP datagram whose payload (TCP header and data) is
/// `ip_payload_bytes` long.
#[inline(always)]
fn tcp(ctx: &XdpContext, l4: usize, ip_payload_bytes: usize, source: Source) -> Option<Segment> {
    let tcp = read::<TCP_MIN_HEADER_BYTES>(ctx, l4)?;
    let header_bytes = usize::from(tcp[12] >> 4) * 4;
    if header_bytes < TCP_MIN_HEADER_BYTES || header_bytes > ip_payload_bytes {
        return None;
    }
    let flags = tcp[13];
    Some(Segment {
        source,
        dst_port: be_u16([tcp[2], tcp[3]]),
        syn: flags & (TCP_FLAG_SYN | TCP_FLAG_ACK) == TCP_FLAG_SYN,
        payload: ip_payload_bytes > header_bytes,
    })
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
