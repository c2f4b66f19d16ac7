//! Invalid traffic: which kinds a request is, from the lists the catalog loaded
//! (`catalog::ivt`). Runs before any pricing; allocates nothing.

use std::net::IpAddr;

use crate::catalog::ivt::{IvtKind, IvtLists};
use crate::openrtb::{BidRequest, Device};

/// The kinds of invalid traffic `req` is, as a mask of [`IvtKind::bit`]s.
pub fn detect(lists: &IvtLists, req: &BidRequest<'_>) -> u8 {
    let Some(device) = req.device.as_ref() else {
        return 0;
    };
    let mut kinds = 0;
    let ip = device
        .ip
        .or(device.ipv6)
        .and_then(|s| s.parse::<IpAddr>().ok());
    if let Some(ip) = ip {
        if lists.datacenters.contains(ip) {
            kinds |= IvtKind::Datacenter.bit();
        }
        if lists.blocked_ips.contains(ip) {
            kinds |= IvtKind::Blocklist.bit();
        }
    }
    if let Some(kind) = device.ua.and_then(|ua| lists.user_agent(ua)) {
        kinds |= kind.bit();
    }
    if lists.inconsistent_devices && inconsistent(device) {
        kinds |= IvtKind::InconsistentDevice.bit();
    }
    kinds
}

/// The phone platform a device's `os` or user agent names.
#[derive(PartialEq, Eq, Clone, Copy)]
enum Platform {
    Ios,
    Android,
}

/// OpenRTB device type 2: personal computer.
const DEVICE_TYPE_PC: u32 = 2;

/// Device fields that cannot all be true: the OS says one phone platform and the user
/// agent the other, or a personal computer runs a phone OS. Only plain contradictions:
/// tablets in desktop mode, app SDK user agents and missing fields pass.
fn inconsistent(device: &Device<'_>) -> bool {
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
    let ua = device.ua.and_then(|ua| {
        if ua.contains("Android") {
            Some(Platform::Android)
        } else if ["iPhone", "iPad", "iPod"].iter().any(|d| ua.contains(d)) {
            Some(Platform::Ios)
        } else {
            None
        }
    });
    let os_against_ua = matches!((os, ua), (Some(a), Some(b)) if a != b);
    let pc_with_phone_os = device.devicetype == Some(DEVICE_TYPE_PC) && os.is_some();
    os_against_ua || pc_with_phone_os
}
