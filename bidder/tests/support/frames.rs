//! Hand-built Ethernet frames for the XDP tests (include with `#[path]`).
//!
//! Written byte by byte, no IP stack involved, so that every branch of the program's
//! header walk can be driven on purpose. Checksums stay zero: XDP runs before anything
//! verifies them.

#![allow(dead_code)] // Each test binary uses a different part of this module.

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const TPID_8021Q: u16 = 0x8100;
pub const TPID_8021AD: u16 = 0x88a8;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPV6_HOP_BY_HOP: u8 = 0;
pub const IPV6_ROUTING: u8 = 43;
pub const IPV6_FRAGMENT: u8 = 44;
pub const IPV6_DEST_OPTS: u8 = 60;
pub const IPV6_NO_NEXT: u8 = 59;

pub const TCP_SYN: u8 = 0x02;
pub const TCP_ACK: u8 = 0x10;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_FIN: u8 = 0x01;

/// Ethernet header (with VLAN tags `tags`, outermost first) in front of `payload`.
pub fn eth(tags: &[u16], ethertype: u16, payload: &[u8]) -> Vec<u8> {
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

/// IPv4 header from `src` with `option_words` 4-byte words of options, the given
/// flags/fragment field (offset in 8-byte units, MF = 0x2000), then `payload`.
pub fn ipv4_from(
    src: [u8; 4],
    protocol: u8,
    option_words: usize,
    fragment: u16,
    payload: &[u8],
) -> Vec<u8> {
    let header_bytes = 20 + option_words * 4;
    let mut packet = vec![0u8; header_bytes];
    packet[0] = 0x40 | (header_bytes / 4) as u8;
    let total = (header_bytes + payload.len()) as u16;
    packet[2..4].copy_from_slice(&total.to_be_bytes());
    packet[6..8].copy_from_slice(&fragment.to_be_bytes());
    packet[8] = 64;
    packet[9] = protocol;
    packet[12..16].copy_from_slice(&src);
    packet[16..20].copy_from_slice(&[10, 0, 0, 1]);
    packet[20..].fill(1); // NOP options
    packet.extend(payload);
    packet
}

/// IPv6 header from `src` with `next_header`, then `payload`.
pub fn ipv6_from(src: [u8; 16], next_header: u8, payload: &[u8]) -> Vec<u8> {
    let mut packet = vec![0u8; 40];
    packet[0] = 0x60;
    packet[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    packet[6] = next_header;
    packet[7] = 64;
    packet[8..24].copy_from_slice(&src);
    packet[24] = 0xfd;
    packet[39] = 1;
    packet.extend(payload);
    packet
}

/// An 8-byte options-style extension header (hop-by-hop, destination options or
/// routing: PadN only) in front of `payload`.
pub fn ext8(next_header: u8, payload: &[u8]) -> Vec<u8> {
    let mut packet = vec![next_header, 0, 1, 4, 0, 0, 0, 0];
    packet.extend(payload);
    packet
}

/// An IPv6 fragment header (offset in 8-byte units, `more` fragments flag).
pub fn fragment6(next_header: u8, offset: u16, more: bool, payload: &[u8]) -> Vec<u8> {
    let field = (offset << 3) | u16::from(more);
    let mut packet = vec![next_header, 0];
    packet.extend(field.to_be_bytes());
    packet.extend([0, 0, 0, 7]);
    packet.extend(payload);
    packet
}

/// TCP segment to `dst_port` with `flags` and `data` as payload.
pub fn tcp(dst_port: u16, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut segment = vec![0u8; 20];
    segment[0..2].copy_from_slice(&40_000u16.to_be_bytes());
    segment[2..4].copy_from_slice(&dst_port.to_be_bytes());
    segment[12] = 5 << 4;
    segment[13] = flags;
    segment.extend(data);
    segment
}

pub fn udp(dst_port: u16) -> Vec<u8> {
    let mut datagram = vec![0u8; 8];
    datagram[0..2].copy_from_slice(&40_000u16.to_be_bytes());
    datagram[2..4].copy_from_slice(&dst_port.to_be_bytes());
    datagram[4..6].copy_from_slice(&8u16.to_be_bytes());
    datagram
}

/// A whole IPv4 TCP frame from `src` to `dst_port`.
pub fn v4_tcp(src: [u8; 4], dst_port: u16, flags: u8, data: &[u8]) -> Vec<u8> {
    eth(
        &[],
        ETHERTYPE_IPV4,
        &ipv4_from(src, IPPROTO_TCP, 0, 0, &tcp(dst_port, flags, data)),
    )
}

/// A whole IPv6 TCP frame from `src` to `dst_port`.
pub fn v6_tcp(src: [u8; 16], dst_port: u16, flags: u8, data: &[u8]) -> Vec<u8> {
    eth(
        &[],
        ETHERTYPE_IPV6,
        &ipv6_from(src, IPPROTO_TCP, &tcp(dst_port, flags, data)),
    )
}
