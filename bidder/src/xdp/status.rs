//! `bidder xdp status`: what the pinned maps and link say, readable without a running
//! bidder (after a crash the pinned link keeps filtering; this shows with what).

use std::path::{Path, PathBuf};

use aya::programs::loaded_programs;
use bidder_common::xdp::{
    Counters, DropReason, PartnerLimit, Settings, Tally, LIMIT_ENABLED, SHUT_OFF_INTERVAL_NS,
    UNKNOWN_DROP, UNKNOWN_SLOT,
};
use serde_json::{json, Value};

use super::link::{self, AttachedMode, LinkState};
use super::maps::FrontMaps;
use super::pins;
use super::XdpError;
use crate::config::UNKNOWN_SOURCE_PARTNER;

/// Nanoseconds per second, to turn GCRA intervals back into rates.
const NS_PER_S: u64 = 1_000_000_000;

/// Everything `bidder xdp status` shows.
#[derive(Debug, Clone)]
pub struct Status {
    pub pin_dir: PathBuf,
    /// The pinned link, if any.
    pub link: Option<LinkState>,
    /// Name of the link's interface, if it still exists.
    pub interface: Option<String>,
    pub program_name: Option<String>,
    pub settings: Settings,
    /// Partners in slot order, then unknown sources (slot `UNKNOWN_SLOT`).
    pub rows: Vec<Row>,
}

/// One partner slot, or unknown sources.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub slot: u32,
    /// `None` for unknown sources.
    pub limit: Option<PartnerLimit>,
    pub counters: Counters,
}

impl Status {
    /// Reads the pin folder; [`XdpError::NotPinned`] when no maps are there.
    pub fn read(pin_dir: &Path) -> Result<Status, XdpError> {
        if !pins::map_path(pin_dir, bidder_common::xdp::SETTINGS_MAP).exists() {
            return Err(XdpError::NotPinned {
                pin_dir: pin_dir.to_path_buf(),
            });
        }
        let maps = FrontMaps::open_pinned(pin_dir)?;
        let link = link::inspect(&pins::link_path(pin_dir)).map_err(|source| XdpError::Link {
            path: pins::link_path(pin_dir),
            what: "reading",
            source,
        })?;
        let interface =
            link.and_then(|l| link::interface_name(l.ifindex).filter(|_| l.ifindex != 0));
        let program_name = link.and_then(|l| program_name(l.program_id));
        let mut rows = Vec::new();
        for entry in maps.slots()? {
            rows.push(Row {
                name: entry.limit.name_str().to_string(),
                slot: entry.slot,
                limit: Some(entry.limit),
                counters: maps.counters(entry.slot)?,
            });
        }
        rows.push(Row {
            name: UNKNOWN_SOURCE_PARTNER.into(),
            slot: UNKNOWN_SLOT,
            limit: None,
            counters: maps.counters(UNKNOWN_SLOT)?,
        });
        Ok(Status {
            pin_dir: pin_dir.to_path_buf(),
            link,
            interface,
            program_name,
            settings: maps.settings()?,
            rows,
        })
    }

    /// Whether a live link holds the program on an interface.
    pub fn attached(&self) -> bool {
        self.link.is_some_and(|l| l.ifindex != 0)
    }

    fn mode(&self) -> &'static str {
        AttachedMode::from_code(self.settings.attach_mode).map_or("unknown", AttachedMode::name)
    }

    fn ports(&self) -> Vec<u16> {
        self.settings
            .ports
            .iter()
            .copied()
            .filter(|&p| p != 0)
            .collect()
    }

    fn unknown_policy(&self) -> &'static str {
        if self.settings.unknown_action == UNKNOWN_DROP {
            "drop"
        } else {
            "pass"
        }
    }

    /// The human-readable report.
    pub fn table(&self) -> String {
        let mut out = format!("XDP front pinned at {}\n", self.pin_dir.display());
        out.push_str(&match (self.link, &self.interface) {
            (Some(l), Some(name)) if l.ifindex != 0 => format!(
                "  attached:  {name} (ifindex {}), {} mode, link {}, program {} ({})\n",
                l.ifindex,
                self.mode(),
                l.link_id,
                l.program_id,
                self.program_name.as_deref().unwrap_or("?")
            ),
            (Some(l), _) => format!(
                "  attached:  no: link {} is pinned but its interface is gone (run `bidder xdp detach`)\n",
                l.link_id
            ),
            (None, _) => "  attached:  no (maps kept from an earlier run)\n".into(),
        });
        out.push_str(&format!(
            "  bid ports: {:?}   unknown sources: {}   drop log every {} ms\n\n",
            self.ports(),
            self.unknown_policy(),
            self.settings.log_interval_ns / 1_000_000
        ));
        out.push_str(&format!(
            "{:<20} {:>4} {:>7} {:>10} {:>9} {:>8} {:>9} | {:>10} {:>12} {:>10} {:>9} | {:>10} {:>12}\n",
            "PARTNER", "SLOT", "ENABLED", "PKT/S", "PKT BURST", "SYN/S", "SYN BURST",
            "PASSED", "PASSED B", "PAYLOAD", "SYN", "DROPPED", "DROPPED B"
        ));
        for row in &self.rows {
            let (enabled, pkt, syn) = limits_text(row.limit.as_ref());
            let c = &row.counters;
            let d = c.dropped_total();
            out.push_str(&format!(
                "{:<20} {:>4} {:>7} {:>10} {:>9} {:>8} {:>9} | {:>10} {:>12} {:>10} {:>9} | {:>10} {:>12}\n",
                row.name, slot_text(row.slot), enabled, pkt.0, pkt.1, syn.0, syn.1,
                c.passed.packets, c.passed.bytes, c.passed_payload.packets, c.passed_syn.packets,
                d.packets, d.bytes
            ));
        }
        out.push_str("\ndropped packets (bytes) by reason:\n");
        out.push_str(&format!("{:<20}", "PARTNER"));
        for reason in DropReason::ALL {
            out.push_str(&format!(" {:>20}", reason.name()));
        }
        out.push('\n');
        for row in &self.rows {
            out.push_str(&format!("{:<20}", row.name));
            for reason in DropReason::ALL {
                let t = row.counters.dropped[reason as usize];
                out.push_str(&format!(" {:>20}", format!("{} ({})", t.packets, t.bytes)));
            }
            out.push('\n');
        }
        out
    }

    /// The report for scripts.
    pub fn json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|row| {
                let c = &row.counters;
                let dropped: serde_json::Map<String, Value> = DropReason::ALL
                    .iter()
                    .map(|&r| (r.name().to_string(), tally(c.dropped[r as usize])))
                    .collect();
                json!({
                    "partner": row.name,
                    "slot": (row.slot != UNKNOWN_SLOT).then_some(row.slot),
                    "limits": row.limit.map(|l| json!({
                        "enabled": l.flags & LIMIT_ENABLED != 0,
                        "packets_per_s": rate(l.packet_interval_ns),
                        "packet_burst": burst(l.packet_interval_ns, l.packet_tolerance_ns),
                        "syn_per_s": rate(l.syn_interval_ns),
                        "syn_burst": burst(l.syn_interval_ns, l.syn_tolerance_ns),
                    })),
                    "passed": {
                        "all": tally(c.passed),
                        "payload": tally(c.passed_payload),
                        "syn": tally(c.passed_syn),
                    },
                    "dropped": dropped,
                })
            })
            .collect();
        json!({
            "pin_dir": self.pin_dir,
            "attached": self.attached(),
            "interface": self.interface,
            "ifindex": self.link.map(|l| l.ifindex),
            "mode": self.mode(),
            "link_id": self.link.map(|l| l.link_id),
            "program_id": self.link.map(|l| l.program_id),
            "program_name": self.program_name,
            "bid_ports": self.ports(),
            "unknown_sources": self.unknown_policy(),
            "log_interval_ms": self.settings.log_interval_ns / 1_000_000,
            "partners": rows,
        })
    }
}

/// The kernel's name for program `id` (its first 15 bytes), if it is loaded.
fn program_name(id: u32) -> Option<String> {
    loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == id)
        .and_then(|p| p.name_as_str().map(str::to_string))
}

fn tally(t: Tally) -> Value {
    json!({ "packets": t.packets, "bytes": t.bytes })
}

fn slot_text(slot: u32) -> String {
    if slot == UNKNOWN_SLOT {
        "-".into()
    } else {
        slot.to_string()
    }
}

/// Rate per second of a GCRA interval (0 for "shut off").
fn rate(interval_ns: u64) -> u64 {
    if interval_ns == SHUT_OFF_INTERVAL_NS || interval_ns == 0 {
        0
    } else {
        NS_PER_S / interval_ns
    }
}

fn burst(interval_ns: u64, tolerance_ns: u64) -> u64 {
    if interval_ns == SHUT_OFF_INTERVAL_NS || interval_ns == 0 {
        0
    } else {
        tolerance_ns / interval_ns
    }
}

type Pair = (String, String);

fn limits_text(limit: Option<&PartnerLimit>) -> (String, Pair, Pair) {
    let Some(l) = limit else {
        let dash = || ("-".to_string(), "-".to_string());
        return ("-".into(), dash(), dash());
    };
    let enabled = if l.flags & LIMIT_ENABLED != 0 {
        "yes"
    } else {
        "no"
    };
    (
        enabled.into(),
        (
            rate(l.packet_interval_ns).to_string(),
            burst(l.packet_interval_ns, l.packet_tolerance_ns).to_string(),
        ),
        (
            rate(l.syn_interval_ns).to_string(),
            burst(l.syn_interval_ns, l.syn_tolerance_ns).to_string(),
        ),
    )
}
