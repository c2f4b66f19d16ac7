//! Invalid traffic: which kinds a request is, from the lists the catalog loaded
//! (`catalog::ivt`). Runs before any pricing; allocates nothing once warm.
//!
//! What the user agent says (a crawler or blocked fragment, the phone platform it
//! names) depends only on its text and the lists, so each worker keeps it per distinct
//! agent ([`UserAgents`]): matching every fragment over a browser's 130 bytes costs
//! about ten times the cache's hash and compare, and a few thousand agents make up
//! nearly all traffic.

use std::net::IpAddr;

use super::text_cache::TextCache;
use crate::catalog::ivt::{IvtKind, IvtLists};
use crate::limits::{MAX_CACHED_USER_AGENT_BYTES, USER_AGENT_CACHE_SLOTS};
use crate::metrics::Counter;
use crate::openrtb::{BidRequest, Device};

/// The phone platform a device's `os` or user agent names.
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
enum Platform {
    Ios,
    Android,
}

/// What one user agent says, for one load of the lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct AgentFacts {
    /// The crawler or blocked fragment it contains, if any.
    kind: Option<IvtKind>,
    platform: Option<Platform>,
}

impl AgentFacts {
    fn of(lists: &IvtLists, ua: &str) -> AgentFacts {
        let platform = if ua.contains("Android") {
            Some(Platform::Android)
        } else if ["iPhone", "iPad", "iPod"].iter().any(|d| ua.contains(d)) {
            Some(Platform::Ios)
        } else {
            None
        };
        AgentFacts {
            kind: lists.user_agent(ua),
            platform,
        }
    }
}

/// One worker's user-agent facts, for the lists they were computed from (a reload
/// that loads new lists empties it).
pub struct UserAgents {
    lists_id: u64,
    cache: TextCache<AgentFacts>,
}

impl Default for UserAgents {
    fn default() -> Self {
        UserAgents {
            lists_id: 0,
            cache: TextCache::new(USER_AGENT_CACHE_SLOTS, MAX_CACHED_USER_AGENT_BYTES),
        }
    }
}

impl UserAgents {
    /// What `ua` says, counting each match in `matches`.
    fn facts(&mut self, lists: &IvtLists, ua: &str, matches: &Counter) -> AgentFacts {
        if self.lists_id != lists.id() {
            self.cache.clear();
            self.lists_id = lists.id();
        }
        self.cache.get(ua.as_bytes(), || {
            matches.inc();
            AgentFacts::of(lists, ua)
        })
    }
}

/// The kinds of invalid traffic `req` is, as a mask of [`IvtKind::bit`]s; a user agent
/// matched (not remembered) counts in `matches`.
pub fn detect(
    lists: &IvtLists,
    req: &BidRequest<'_>,
    agents: &mut UserAgents,
    matches: &Counter,
) -> u8 {
    let Some(device) = req.device.as_ref() else {
        return 0;
    };
    let mut kinds = 0;
    let ip = if lists.datacenters.is_empty() && lists.blocked_ips.is_empty() {
        None
    } else {
        device
            .ip
            .or(device.ipv6)
            .and_then(|s| s.parse::<IpAddr>().ok())
    };
    if let Some(ip) = ip {
        if lists.datacenters.contains(ip) {
            kinds |= IvtKind::Datacenter.bit();
        }
        if lists.blocked_ips.contains(ip) {
            kinds |= IvtKind::Blocklist.bit();
        }
    }
    let agent = device.ua.map(|ua| agents.facts(lists, ua, matches));
    if let Some(kind) = agent.and_then(|a| a.kind) {
        kinds |= kind.bit();
    }
    if lists.inconsistent_devices && inconsistent(device, agent.and_then(|a| a.platform)) {
        kinds |= IvtKind::InconsistentDevice.bit();
    }
    kinds
}

/// OpenRTB device type 2: personal computer.
const DEVICE_TYPE_PC: u32 = 2;

/// Device fields that cannot all be true: the OS says one phone platform and the user
/// agent (`ua_platform`) the other, or a personal computer runs a phone OS. Only plain
/// contradictions: tablets in desktop mode, app SDK user agents and missing fields pass.
fn inconsistent(device: &Device<'_>, ua_platform: Option<Platform>) -> bool {
    let os = device.os.and_then(|os| {
        let ios = ["ios", "ipados", "iphone os"];
        if ios.iter().any(|name| os.eq_ignore_ascii_case(name)) {
            Some(Platform::Ios)
        } else if os.eq_ignore_ascii_case("android") {
            Some(Platform::Android)
        } else {
            None
        }
    });
    let os_against_ua = matches!((os, ua_platform), (Some(a), Some(b)) if a != b);
    let pc_with_phone_os = device.devicetype == Some(DEVICE_TYPE_PC) && os.is_some();
    os_against_ua || pc_with_phone_os
}
