//! The `[xdp]` section: where and how the XDP front (`bidder-ebpf`) runs, and the rules
//! of it that only make sense together with the partners and the bid listener.
//!
//! Every key is optional. Without `interface` there is no XDP front and the partner
//! limits are enforced in user space; the other keys are still checked, so a typo is
//! caught before the day someone sets the interface.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use bidder_common::xdp::{MAX_PARTNERS as XDP_MAX_PARTNERS, MAX_PREFIXES, PARTNER_NAME_BYTES};
use ipnet::IpNet;
use serde::Deserialize;

use super::validate::Problems;
use super::{Config, ConfigError, PartnerConfig};

/// Partner label of traffic from sources no partner prefix matches (`/metrics`,
/// `bidder xdp status`); no configured partner may take this name.
pub const UNKNOWN_SOURCE_PARTNER: &str = "unknown_source";
use crate::limits::MAX_INTERFACE_NAME_BYTES;
pub use crate::limits::MAX_LOG_INTERVAL_MS;
pub use crate::limits::MAX_PACKETS_PER_REQUEST;

/// How the program is attached (`xdp.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver (`XDP_FLAGS_DRV_MODE`): fastest; needs driver support.
    Native,
    /// In the kernel stack (`XDP_FLAGS_SKB_MODE`): any interface, slower.
    Generic,
    /// Native where the driver can, else generic (logged).
    Auto,
}

impl AttachMode {
    /// The config spelling.
    pub fn parse(text: &str) -> Option<AttachMode> {
        match text {
            "native" => Some(AttachMode::Native),
            "generic" => Some(AttachMode::Generic),
            "auto" => Some(AttachMode::Auto),
            _ => None,
        }
    }
}

/// What the program does with traffic from sources no partner prefix matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownSources {
    Pass,
    Drop,
}

/// The `[xdp]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct XdpConfig {
    /// Interface the program attaches to; empty: no XDP front.
    pub interface: String,
    /// `native`, `generic` or `auto`.
    pub mode: String,
    /// Refuse to start when the program cannot be attached. `false`: log it and keep
    /// the partner limits in user space.
    pub required: bool,
    /// bpffs folder of the pinned maps and link; absolute.
    pub pin_dir: PathBuf,
    /// `pass` or `drop`.
    pub unknown_sources: String,
    /// Source prefixes always dropped, IPv4 and IPv6.
    pub blocklist: Vec<String>,
    /// Payload-carrying packets one request is allowed: a request spans segments, so
    /// the packet limit is `qps_limit × this` and its burst `burst × this`.
    pub packets_per_request: u32,
    /// Least time between two drop log records from one CPU; 0 logs none.
    pub log_interval_ms: u64,
}

impl Default for XdpConfig {
    fn default() -> Self {
        XdpConfig {
            interface: String::new(),
            mode: "auto".into(),
            required: true,
            pin_dir: "/sys/fs/bpf/bidder".into(),
            unknown_sources: "pass".into(),
            blocklist: Vec::new(),
            packets_per_request: 3,
            log_interval_ms: 1_000,
        }
    }
}

impl XdpConfig {
    /// Whether an XDP front is configured at all.
    pub fn enabled(&self) -> bool {
        !self.interface.is_empty()
    }

    /// The attach mode (the file was validated; an unknown word reads as `auto`).
    pub fn attach_mode(&self) -> AttachMode {
        AttachMode::parse(&self.mode).unwrap_or(AttachMode::Auto)
    }

    /// The unknown-source policy (validated; an unknown word reads as `pass`).
    pub fn unknown_policy(&self) -> UnknownSources {
        match self.unknown_sources.as_str() {
            "drop" => UnknownSources::Drop,
            _ => UnknownSources::Pass,
        }
    }

    /// The blocklist as networks (unparsable entries were refused by validation).
    pub fn blocklist_nets(&self) -> Vec<IpNet> {
        self.blocklist
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect()
    }

    /// The section's rules, and those it puts on partners and the bid listener.
    pub(super) fn check(&self, config: &Config) -> Result<(), Vec<ConfigError>> {
        let mut p = Problems::new(config);
        self.check_own_keys(&mut p);
        unknown_source_name(config, &mut p);
        if self.enabled() {
            listener_port(config, &mut p);
            partner_capacity(config, &mut p);
        }
        p.into_result()
    }

    fn check_own_keys(&self, p: &mut Problems) {
        let iface = &self.interface;
        let bad_name = iface.len() > MAX_INTERFACE_NAME_BYTES
            || iface.bytes().any(|b| b == b'/' || b.is_ascii_whitespace());
        if bad_name {
            p.add(
                "xdp.interface".into(),
                format!("`{iface}` is not an interface name"),
                "name a network interface as `ip link` lists it (at most 15 bytes), e.g. \"eth0\"",
            );
        }
        if AttachMode::parse(&self.mode).is_none() {
            p.add(
                "xdp.mode".into(),
                format!("unknown mode `{}`", self.mode),
                "use \"native\", \"generic\" or \"auto\"",
            );
        }
        if !matches!(self.unknown_sources.as_str(), "pass" | "drop") {
            p.add(
                "xdp.unknown_sources".into(),
                format!("unknown policy `{}`", self.unknown_sources),
                "use \"pass\" or \"drop\"",
            );
        }
        if !self.pin_dir.is_absolute() {
            p.add(
                "xdp.pin_dir".into(),
                format!("`{}` is not an absolute path", self.pin_dir.display()),
                "use a folder on bpffs, e.g. \"/sys/fs/bpf/bidder\"",
            );
        }
        if !(1..=MAX_PACKETS_PER_REQUEST).contains(&self.packets_per_request) {
            p.add(
                "xdp.packets_per_request".into(),
                format!(
                    "{} is outside 1..={MAX_PACKETS_PER_REQUEST}",
                    self.packets_per_request
                ),
                "count the TCP segments one bid request takes, e.g. 3",
            );
        }
        if self.log_interval_ms > MAX_LOG_INTERVAL_MS {
            p.add(
                "xdp.log_interval_ms".into(),
                format!(
                    "{} is outside 0..={MAX_LOG_INTERVAL_MS}",
                    self.log_interval_ms
                ),
                "use e.g. 1000 (0 logs no drops)",
            );
        }
        self.check_blocklist(p);
    }

    fn check_blocklist(&self, p: &mut Problems) {
        let mut per_family = [0usize; 2];
        for (i, cidr) in self.blocklist.iter().enumerate() {
            match cidr.parse::<IpNet>() {
                Ok(net) => per_family[usize::from(matches!(net, IpNet::V6(_)))] += 1,
                Err(_) => p.add(
                    format!("xdp.blocklist[{i}]"),
                    format!("`{cidr}` is not a CIDR"),
                    "write e.g. \"203.0.113.0/24\" or \"2001:db8:bad::/48\"",
                ),
            }
        }
        if per_family.iter().any(|&n| n > MAX_PREFIXES as usize) {
            p.add(
                "xdp.blocklist".into(),
                format!("more than {MAX_PREFIXES} prefixes of one address family"),
                "merge prefixes into shorter ones",
            );
        }
    }
}

/// `unknown_source` labels unmatched traffic; a partner of that name would merge with it.
fn unknown_source_name(config: &Config, p: &mut Problems) {
    for (i, spanned) in config.partners.iter().enumerate() {
        if spanned.get_ref().name == UNKNOWN_SOURCE_PARTNER {
            let field = format!("partner[{i}] ({UNKNOWN_SOURCE_PARTNER}).name");
            p.add(
                field,
                "reserved: it labels traffic from sources no partner matches",
                "rename the partner",
            );
        }
    }
}

/// The program recognises bid traffic by port, so the port must be known at start.
fn listener_port(config: &Config, p: &mut Problems) {
    let port_zero = config
        .server
        .listen
        .parse::<SocketAddr>()
        .is_ok_and(|a| a.port() == 0);
    if port_zero {
        p.add(
            "server.listen".into(),
            "port 0 (any free port) cannot be filtered by the XDP front",
            "listen on a fixed port, e.g. \"0.0.0.0:8080\", or unset xdp.interface",
        );
    }
}

/// Partner slots, prefixes per trie and names as the pinned maps keep them.
fn partner_capacity(config: &Config, p: &mut Problems) {
    let with_cidrs: Vec<(usize, &toml::Spanned<PartnerConfig>)> = config
        .partners
        .iter()
        .enumerate()
        .filter(|(_, p)| !p.get_ref().cidrs.is_empty())
        .collect();
    if with_cidrs.len() > XDP_MAX_PARTNERS as usize {
        p.add(
            "partner".into(),
            format!(
                "{} partners with cidrs, more than the XDP front's {XDP_MAX_PARTNERS} slots",
                with_cidrs.len()
            ),
            "merge partners or leave some without cidrs (limited in user space)",
        );
    }
    let mut per_family = [0usize; 2];
    let mut by_stored_name: HashMap<&[u8], &str> = HashMap::new();
    for (i, spanned) in with_cidrs {
        let partner = spanned.get_ref();
        for net in partner.cidrs.iter().filter_map(|c| c.parse::<IpNet>().ok()) {
            per_family[usize::from(matches!(net, IpNet::V6(_)))] += 1;
        }
        // The pinned maps keep the first PARTNER_NAME_BYTES bytes (names are ASCII):
        // two partners alike that far would share a slot after a restart.
        let stored = &partner.name.as_bytes()[..partner.name.len().min(PARTNER_NAME_BYTES)];
        if let Some(other) = by_stored_name.insert(stored, &partner.name) {
            let field = format!("partner[{i}] ({}).name", partner.name);
            p.add(
                field,
                format!("its first {PARTNER_NAME_BYTES} bytes equal those of partner `{other}`"),
                "make partner names differ within their first 32 bytes",
            );
        }
    }
    if per_family.iter().any(|&n| n > MAX_PREFIXES as usize) {
        p.add(
            "partner.cidrs".into(),
            format!("more than {MAX_PREFIXES} partner prefixes of one address family"),
            "merge prefixes into shorter ones",
        );
    }
}
