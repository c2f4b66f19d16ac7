//! The pin folder on bpffs: one file per map (named as in `bidder_common::xdp`) and
//! `link`, the program's bpf_link.
//!
//! aya reuses a pinned map of the right name whatever its layout, so a folder left by
//! a build with other map layouts would be handed to the new program as is (the
//! verifier refuses smaller values; larger ones would be read wrong). [`stale_maps`]
//! compares every pinned map with the layout this build expects, so the loader can
//! replace the set before loading.

use std::io;
use std::path::{Path, PathBuf};

use aya::maps::{MapInfo, MapType};
use bidder_common::xdp::{
    Counters, LpmV4, LpmV6, PartnerBuckets, PartnerLimit, Settings, ALL_MAPS, BLOCK_V4_MAP,
    BLOCK_V6_MAP, BUCKETS_MAP, COUNTERS_MAP, COUNTER_SLOTS, LIMITS_MAP, LOG_STATE_MAP,
    MAX_PARTNERS, MAX_PREFIXES, PARTNERS_V4_MAP, PARTNERS_V6_MAP, SETTINGS_MAP,
};

/// File name of the pinned bpf_link in the pin folder.
pub const LINK_FILE: &str = "link";

/// A map's kernel layout: what must match for a pinned map to be reused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Layout {
    pub name: &'static str,
    pub map_type: MapType,
    pub key_bytes: usize,
    pub value_bytes: usize,
    pub max_entries: u32,
}

const fn layout(
    name: &'static str,
    map_type: MapType,
    key_bytes: usize,
    value_bytes: usize,
    max_entries: u32,
) -> Layout {
    Layout {
        name,
        map_type,
        key_bytes,
        value_bytes,
        max_entries,
    }
}

/// An array map: `u32` index keys.
const fn array(name: &'static str, value_bytes: usize, max_entries: u32) -> Layout {
    layout(name, MapType::Array, 4, value_bytes, max_entries)
}

/// A per-CPU array map: `u32` index keys.
const fn per_cpu(name: &'static str, value_bytes: usize, max_entries: u32) -> Layout {
    layout(name, MapType::PerCpuArray, 4, value_bytes, max_entries)
}

/// A prefix trie: `key_bytes` of prefix length and address, `u32` values.
const fn trie(name: &'static str, key_bytes: usize) -> Layout {
    layout(name, MapType::LpmTrie, key_bytes, 4, MAX_PREFIXES)
}

/// Every map of the program with the layout the shared types give it, in
/// `ALL_MAPS` order. The object test checks the built object against this table.
pub const LAYOUTS: [Layout; ALL_MAPS.len()] = [
    array(SETTINGS_MAP, size_of::<Settings>(), 1),
    trie(PARTNERS_V4_MAP, size_of::<LpmV4>()),
    trie(PARTNERS_V6_MAP, size_of::<LpmV6>()),
    trie(BLOCK_V4_MAP, size_of::<LpmV4>()),
    trie(BLOCK_V6_MAP, size_of::<LpmV6>()),
    array(LIMITS_MAP, size_of::<PartnerLimit>(), MAX_PARTNERS),
    array(BUCKETS_MAP, size_of::<PartnerBuckets>(), MAX_PARTNERS),
    per_cpu(COUNTERS_MAP, size_of::<Counters>(), COUNTER_SLOTS),
    per_cpu(LOG_STATE_MAP, 8, 1),
];

/// Path of map `name`'s pin.
pub fn map_path(pin_dir: &Path, name: &str) -> PathBuf {
    pin_dir.join(name)
}

/// Path of the pinned link.
pub fn link_path(pin_dir: &Path) -> PathBuf {
    pin_dir.join(LINK_FILE)
}

/// Whether any of the program's maps is pinned in `pin_dir`.
pub fn any_map_pinned(pin_dir: &Path) -> bool {
    ALL_MAPS.iter().any(|name| map_path(pin_dir, name).exists())
}

/// Pinned maps whose layout is not this build's, each with what differs.
pub fn stale_maps(pin_dir: &Path) -> Vec<String> {
    LAYOUTS
        .iter()
        .filter(|l| map_path(pin_dir, l.name).exists())
        .filter_map(|l| match MapInfo::from_pin(map_path(pin_dir, l.name)) {
            Err(e) => Some(format!("{}: unreadable ({e})", l.name)),
            Ok(info) => difference(l, &info).map(|d| format!("{}: {d}", l.name)),
        })
        .collect()
}

fn difference(want: &Layout, info: &MapInfo) -> Option<String> {
    let found = Layout {
        name: want.name,
        map_type: info.map_type().unwrap_or(MapType::Unspecified),
        key_bytes: info.key_size() as usize,
        value_bytes: info.value_size() as usize,
        max_entries: info.max_entries(),
    };
    (found != *want).then(|| format!("pinned {}, this build {}", found.shape(), want.shape()))
}

impl Layout {
    fn shape(&self) -> String {
        format!(
            "{:?} key {} B value {} B × {}",
            self.map_type, self.key_bytes, self.value_bytes, self.max_entries
        )
    }
}

/// Removes every map pin of the program (not the link); returns how many there were.
/// A running program keeps its maps until it is replaced: only the names go.
pub fn remove_map_pins(pin_dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for name in ALL_MAPS {
        match std::fs::remove_file(map_path(pin_dir, name)) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}
