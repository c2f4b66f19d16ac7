//! What the XDP front enforces, computed from the `[xdp]` section, the bid port and the
//! catalog's partners (after the agent's overrides): plain data, so it can be built
//! and compared without a kernel. [`super::maps`] writes it into the maps.

use bidder_common::xdp::{
    PartnerLimit, LIMIT_ENABLED, LIMIT_IN_USE, MAX_BID_PORTS, UNKNOWN_DROP, UNKNOWN_PASS,
};
use ipnet::IpNet;

use crate::catalog::Partner;
use crate::config::{UnknownSources, XdpConfig};

/// Nanoseconds per millisecond, for `log_interval_ms`.
const NS_PER_MS: u64 = 1_000_000;

/// Everything the maps should hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// TCP destination ports judged, host byte order; 0 = unused.
    pub ports: [u16; MAX_BID_PORTS],
    /// `UNKNOWN_PASS` or `UNKNOWN_DROP`.
    pub unknown_action: u32,
    pub log_interval_ns: u64,
    /// Partners the program can recognise (those with CIDRs), in configuration order.
    pub partners: Vec<PartnerRule>,
    /// Sources always dropped.
    pub blocklist: Vec<IpNet>,
}

/// One partner as the program sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerRule {
    pub name: String,
    /// GCRA parameters, flags and name, as written into `LIMITS`.
    pub limit: PartnerLimit,
    /// Source networks, host bits cleared. A prefix an earlier partner already claims
    /// is left out, as user space attributes it to that earlier partner too.
    pub prefixes: Vec<IpNet>,
}

impl Rules {
    /// The rules for `partners` (the catalog's, overrides applied) under `xdp`, judging
    /// traffic to `bid_ports` (at most `MAX_BID_PORTS`; more are a bug).
    pub fn new(xdp: &XdpConfig, bid_ports: &[u16], partners: &[Partner]) -> Rules {
        assert!(bid_ports.len() <= MAX_BID_PORTS, "{bid_ports:?}");
        let mut ports = [0; MAX_BID_PORTS];
        ports[..bid_ports.len()].copy_from_slice(bid_ports);
        let mut claimed = std::collections::HashSet::new();
        let partners = partners
            .iter()
            .filter(|p| !p.cidrs.is_empty())
            .map(|p| PartnerRule {
                name: p.name.clone(),
                limit: limit(p, xdp.packets_per_request),
                prefixes: p
                    .cidrs
                    .iter()
                    .map(IpNet::trunc)
                    .filter(|net| claimed.insert(*net))
                    .collect(),
            })
            .collect();
        let mut blocklist: Vec<IpNet> = xdp.blocklist_nets().iter().map(IpNet::trunc).collect();
        blocklist.sort_unstable();
        blocklist.dedup();
        Rules {
            ports,
            unknown_action: match xdp.unknown_policy() {
                UnknownSources::Pass => UNKNOWN_PASS,
                UnknownSources::Drop => UNKNOWN_DROP,
            },
            log_interval_ns: xdp.log_interval_ms.saturating_mul(NS_PER_MS),
            partners,
            blocklist,
        }
    }
}

/// A partner's `LIMITS` entry: payload packets at `qps_limit × packets_per_request`
/// (burst likewise), SYNs at `syn_per_s` / `syn_burst`.
fn limit(p: &Partner, packets_per_request: u32) -> PartnerLimit {
    let per_request = u64::from(packets_per_request);
    let (packet_interval_ns, packet_tolerance_ns) = PartnerLimit::gcra(
        u64::from(p.qps_limit) * per_request,
        u64::from(p.burst) * per_request,
    );
    let (syn_interval_ns, syn_tolerance_ns) =
        PartnerLimit::gcra(u64::from(p.syn_per_s), u64::from(p.syn_burst));
    let mut limit = PartnerLimit {
        packet_interval_ns,
        packet_tolerance_ns,
        syn_interval_ns,
        syn_tolerance_ns,
        flags: LIMIT_IN_USE | if p.enabled { LIMIT_ENABLED } else { 0 },
        ..PartnerLimit::default()
    };
    limit.set_name(&p.name);
    limit
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openrtb::OpenRtbVersion;
    use bidder_common::xdp::SHUT_OFF_INTERVAL_NS;

    fn partner(name: &str, cidrs: &[&str], qps: u32, burst: u32, enabled: bool) -> Partner {
        Partner {
            name: name.into(),
            cidrs: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
            qps_limit: qps,
            burst,
            openrtb_version: OpenRtbVersion::V2_6,
            nbr_body: false,
            gzip_responses: false,
            response_format: crate::respond::Format::Json,
            enabled,
            syn_per_s: 100,
            syn_burst: 10,
            notice_horizon_ms: 300_000,
            unnoticed_bids: Default::default(),
            max_held_micros: None,
            asi: None,
        }
    }

    #[test]
    fn limits_scale_by_packets_per_request_and_flags_follow_enabled() {
        let xdp = XdpConfig {
            packets_per_request: 4,
            ..XdpConfig::default()
        };
        let rules = Rules::new(
            &xdp,
            &[8080],
            &[
                partner("a", &["10.0.0.0/8"], 1_000, 50, true),
                partner("off", &["10.1.0.0/16"], 0, 0, false),
            ],
        );
        let a = &rules.partners[0].limit;
        // 4_000 packets/s → 250 µs apart; tolerance 200 packets' worth.
        assert_eq!(
            (a.packet_interval_ns, a.packet_tolerance_ns),
            (250_000, 50_000_000)
        );
        assert_eq!(
            (a.syn_interval_ns, a.syn_tolerance_ns),
            (10_000_000, 100_000_000)
        );
        assert_eq!(a.flags, LIMIT_IN_USE | LIMIT_ENABLED);
        assert_eq!(a.name_str(), "a");
        let off = &rules.partners[1].limit;
        assert_eq!(off.packet_interval_ns, SHUT_OFF_INTERVAL_NS);
        assert_eq!(off.flags, LIMIT_IN_USE);
        assert_eq!(rules.ports, [8080, 0, 0, 0]);
    }

    #[test]
    fn partners_without_cidrs_are_left_to_user_space_and_shared_prefixes_go_to_the_first() {
        let rules = Rules::new(
            &XdpConfig::default(),
            &[8080],
            &[
                partner("path-only", &[], 10, 1, true),
                partner("first", &["10.1.2.3/16", "2001:db8::/32"], 10, 1, true),
                partner("second", &["10.1.0.0/16", "10.9.0.0/16"], 10, 1, true),
            ],
        );
        let names: Vec<&str> = rules.partners.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["first", "second"]);
        let nets = |i: usize| -> Vec<String> {
            rules.partners[i]
                .prefixes
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        assert_eq!(nets(0), ["10.1.0.0/16", "2001:db8::/32"]);
        assert_eq!(nets(1), ["10.9.0.0/16"]);
    }

    #[test]
    fn policy_log_interval_and_blocklist_come_from_the_section() {
        let xdp = XdpConfig {
            unknown_sources: "drop".into(),
            log_interval_ms: 250,
            blocklist: vec!["203.0.113.9/24".into(), "203.0.113.0/24".into()],
            ..XdpConfig::default()
        };
        let rules = Rules::new(&xdp, &[9000], &[]);
        assert_eq!(rules.unknown_action, UNKNOWN_DROP);
        assert_eq!(rules.log_interval_ns, 250_000_000);
        assert_eq!(
            rules.blocklist,
            ["203.0.113.0/24".parse::<IpNet>().unwrap()]
        );
    }
}
