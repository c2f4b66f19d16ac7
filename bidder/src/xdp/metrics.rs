//! The XDP front on `/metrics`: per-partner packets and bytes passed (by kind) and
//! dropped (by reason), summed over CPUs at scrape time, and where it is attached.
//!
//! The scrape reads `COUNTERS` through its own map handle, and the slot → partner
//! table the loader publishes after each map update, so it shares no lock with a
//! reload. Counters live in the pinned map: they survive restarts of the bidder.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use aya::maps::{Map, MapData, PerCpuArray};
use bidder_common::xdp::{Counters, DropReason, Tally, COUNTERS_MAP, UNKNOWN_SLOT};

use super::maps::sum_counters;
use super::pins::map_path;
use super::XdpError;
use crate::config::UNKNOWN_SOURCE_PARTNER;
use crate::metrics::{Collect, PromText};

/// Scrapes the program's counters.
pub struct XdpMetrics {
    counters: PerCpuArray<MapData, Counters>,
    /// `(partner, slot)` in force, replaced whole after each map update.
    partners: ArcSwap<Vec<(String, u32)>>,
    interface: String,
    mode: &'static str,
}

impl XdpMetrics {
    /// Opens the pinned counters of the front attached to `interface` in `mode`.
    pub(crate) fn open(
        pin_dir: &Path,
        interface: &str,
        mode: &'static str,
    ) -> Result<XdpMetrics, XdpError> {
        let opening = |source| XdpError::Map {
            map: COUNTERS_MAP,
            what: "opening the pin",
            source,
        };
        let data = MapData::from_pin(map_path(pin_dir, COUNTERS_MAP)).map_err(opening)?;
        let counters =
            PerCpuArray::try_from(Map::from_map_data(data).map_err(opening)?).map_err(opening)?;
        Ok(XdpMetrics {
            counters,
            partners: ArcSwap::from_pointee(Vec::new()),
            interface: interface.to_string(),
            mode,
        })
    }

    /// The partner → slot table now in the maps.
    pub(crate) fn set_partners(&self, partners: Vec<(String, u32)>) {
        self.partners.store(Arc::new(partners));
    }
}

impl Collect for XdpMetrics {
    fn collect(&self, out: &mut PromText) {
        out.gauge(
            "bidder_xdp_attached",
            "1 while the XDP front is attached, labelled with its interface and mode.",
            &[("interface", &self.interface), ("mode", self.mode)],
            1,
        );
        let partners = self.partners.load();
        let slots = partners
            .iter()
            .map(|(name, slot)| (name.as_str(), *slot))
            .chain([(UNKNOWN_SOURCE_PARTNER, UNKNOWN_SLOT)]);
        for (partner, slot) in slots {
            match sum_counters(&self.counters, slot) {
                Ok(c) => samples(out, partner, &c),
                Err(e) => tracing::warn!("xdp metrics: {e}"),
            }
        }
    }
}

/// A pair of counter families (packets, bytes) labelled by partner and one more label.
struct Families {
    packets: &'static str,
    packets_help: &'static str,
    bytes: &'static str,
    bytes_help: &'static str,
    label: &'static str,
}

const PASSED: Families = Families {
    packets: "bidder_xdp_passed_packets_total",
    packets_help:
        "Bid-port TCP segments the XDP front passed, by partner and kind (all, payload, syn).",
    bytes: "bidder_xdp_passed_bytes_total",
    bytes_help:
        "Bytes of the frames the XDP front passed, by partner and kind (all, payload, syn).",
    label: "kind",
};

const DROPPED: Families = Families {
    packets: "bidder_xdp_dropped_packets_total",
    packets_help: "Bid-port TCP segments the XDP front dropped, by partner and reason.",
    bytes: "bidder_xdp_dropped_bytes_total",
    bytes_help: "Bytes of the frames the XDP front dropped, by partner and reason.",
    label: "reason",
};

fn samples(out: &mut PromText, partner: &str, c: &Counters) {
    let passed = [
        ("all", c.passed),
        ("payload", c.passed_payload),
        ("syn", c.passed_syn),
    ];
    for (kind, tally) in passed {
        PASSED.add(out, partner, kind, tally);
    }
    for reason in DropReason::ALL {
        DROPPED.add(out, partner, reason.name(), c.dropped[reason as usize]);
    }
}

impl Families {
    fn add(&self, out: &mut PromText, partner: &str, value: &str, t: Tally) {
        let labels = [("partner", partner), (self.label, value)];
        out.counter(self.packets, self.packets_help, &labels, t.packets);
        out.counter(self.bytes, self.bytes_help, &labels, t.bytes);
    }
}
