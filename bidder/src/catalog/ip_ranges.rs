//! A set of IP addresses and networks as sorted, merged, disjoint ranges: the lookup is
//! one binary search, the memory 8 bytes per IPv4 range and 32 per IPv6 range (a
//! million blocklisted addresses: 8 MB), and building it needs no more than sorting.
//! Hand-written: the crates for prefix tables (tries) cost several times the memory
//! per entry for the same exact answer.

use std::net::IpAddr;

use ipnet::IpNet;

/// Sorted, non-overlapping, non-adjacent inclusive ranges per address family.
#[derive(Debug, Default, Clone)]
pub struct IpRanges {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl IpRanges {
    /// The set of the given networks (a single address is a /32 or /128).
    pub fn from_nets(nets: impl IntoIterator<Item = IpNet>) -> IpRanges {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in nets {
            match net {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(n) => v6.push((u128::from(n.network()), u128::from(n.broadcast()))),
            }
        }
        IpRanges {
            v4: merged(v4, |x| x.saturating_add(1)),
            v6: merged(v6, |x| x.saturating_add(1)),
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(a) => covers(&self.v4, u32::from(a)),
            IpAddr::V6(a) => covers(&self.v6, u128::from(a)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Ranges held (after merging).
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Bytes the ranges take on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.v4.capacity() * size_of::<(u32, u32)>()
            + self.v6.capacity() * size_of::<(u128, u128)>()
    }
}

/// Sorts and merges overlapping or adjacent ranges (`next`: the following address,
/// saturating); shrinks to fit.
fn merged<T: Copy + Ord>(mut ranges: Vec<(T, T)>, next: fn(T) -> T) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match out.last_mut() {
            Some(last) if start <= next(last.1) => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out.shrink_to_fit();
    out
}

fn covers<T: Copy + Ord>(ranges: &[(T, T)], x: T) -> bool {
    // The first range starting after x; the one before it is the only candidate.
    let i = ranges.partition_point(|&(start, _)| start <= x);
    i > 0 && x <= ranges[i - 1].1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(nets: &[&str]) -> IpRanges {
        IpRanges::from_nets(nets.iter().map(|n| n.parse().unwrap()))
    }

    #[test]
    fn networks_and_addresses_are_members_and_their_neighbours_are_not() {
        let s = set(&["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32", "0.0.0.0/32"]);
        for yes in [
            "10.0.0.0",
            "10.255.255.255",
            "192.0.2.7",
            "2001:db8::1",
            "0.0.0.0",
            "::ffff:10.1.2.3",
        ] {
            assert!(s.contains(yes.parse().unwrap()), "{yes}");
        }
        for no in [
            "9.255.255.255",
            "11.0.0.0",
            "192.0.2.6",
            "192.0.2.8",
            "2001:db9::",
            "0.0.0.1",
        ] {
            assert!(!s.contains(no.parse().unwrap()), "{no}");
        }
        assert!(!IpRanges::default().contains("1.2.3.4".parse().unwrap()));
    }

    #[test]
    fn overlapping_and_adjacent_ranges_merge() {
        let s = set(&[
            "10.0.0.0/24",
            "10.0.1.0/24",
            "10.0.0.128/25",
            "255.255.255.255/32",
            "255.255.255.254/32",
        ]);
        assert_eq!(s.len(), 2, "{s:?}");
        assert!(s.contains("10.0.1.255".parse().unwrap()));
        assert!(s.contains("255.255.255.255".parse().unwrap()));
    }
}
