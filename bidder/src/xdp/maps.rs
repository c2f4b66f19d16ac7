//! Typed access to the program's maps, and [`FrontMaps::apply`], which brings them in
//! step with a set of [`Rules`] without detaching anything.
//!
//! Partner slots are stable by name: the name→slot table is read back from the
//! `LIMITS` names each time, so a partner keeps its slot (and its counters) across
//! reloads and restarts. The program treats a prefix whose slot lacks `LIMIT_IN_USE`
//! as unknown, so the order of writes matters and is always:
//! limits of new and kept partners → new prefixes → stale prefixes removed → limits of
//! removed partners cleared → (partners that needed a slot freed just now) → blocklist
//! additions → blocklist removals → settings.
//! A packet never sees a prefix pointing at a slot that is being handed over.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, Map, MapData, MapError, PerCpuArray, PerCpuValues};
use aya::Ebpf;
use aya::Pod;
use bidder_common::xdp::{
    Counters, PartnerBuckets, PartnerLimit, Settings, BLOCKED, BLOCK_V4_MAP, BLOCK_V6_MAP,
    BUCKETS_MAP, COUNTERS_MAP, LIMITS_MAP, LIMIT_IN_USE, MAX_PARTNERS, PARTNERS_V4_MAP,
    PARTNERS_V6_MAP, SETTINGS_MAP,
};
use ipnet::IpNet;

use super::pins::map_path;
use super::rules::{PartnerRule, Rules};
use super::XdpError;

type TrieV4 = LpmTrie<MapData, [u8; 4], u32>;
type TrieV6 = LpmTrie<MapData, [u8; 16], u32>;

/// The maps the bidder reads and writes (`LOG_STATE` is the program's alone).
pub struct FrontMaps {
    settings: Array<MapData, Settings>,
    partners_v4: TrieV4,
    partners_v6: TrieV6,
    block_v4: TrieV4,
    block_v6: TrieV6,
    limits: Array<MapData, PartnerLimit>,
    buckets: Array<MapData, PartnerBuckets>,
    counters: PerCpuArray<MapData, Counters>,
}

/// What one [`FrontMaps::apply`] changed, for the log line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    pub partners_added: Vec<String>,
    pub partners_removed: Vec<String>,
    pub limits_changed: Vec<String>,
    pub prefixes_added: usize,
    pub prefixes_removed: usize,
    pub blocked_added: usize,
    pub blocked_removed: usize,
}

impl std::fmt::Display for Applied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "partners added {:?}, removed {:?}, limits changed {:?}; prefixes +{} -{}; blocklist +{} -{}",
            self.partners_added,
            self.partners_removed,
            self.limits_changed,
            self.prefixes_added,
            self.prefixes_removed,
            self.blocked_added,
            self.blocked_removed
        )
    }
}

/// A partner slot in use, as `LIMITS` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotEntry {
    pub slot: u32,
    pub limit: PartnerLimit,
}

fn map_err(map: &'static str, what: &'static str) -> impl FnOnce(MapError) -> XdpError {
    move |source| XdpError::Map { map, what, source }
}

fn typed<T: TryFrom<Map, Error = MapError>>(
    map: Option<Map>,
    name: &'static str,
) -> Result<T, XdpError> {
    let map = map.ok_or(XdpError::MissingMap { map: name })?;
    T::try_from(map).map_err(map_err(name, "opening"))
}

impl FrontMaps {
    /// Takes the maps out of a loaded object (the object keeps the program).
    pub fn from_ebpf(ebpf: &mut Ebpf) -> Result<FrontMaps, XdpError> {
        Self::build(|name| Ok(ebpf.take_map(name)))
    }

    /// Opens the maps pinned in `pin_dir` (for tools and the metrics scrape).
    pub fn open_pinned(pin_dir: &Path) -> Result<FrontMaps, XdpError> {
        Self::build(|name| {
            let data = MapData::from_pin(map_path(pin_dir, name))
                .map_err(map_err(name, "opening the pin"))?;
            Map::from_map_data(data)
                .map(Some)
                .map_err(map_err(name, "opening the pin"))
        })
    }

    fn build(
        mut open: impl FnMut(&'static str) -> Result<Option<Map>, XdpError>,
    ) -> Result<FrontMaps, XdpError> {
        Ok(FrontMaps {
            settings: typed(open(SETTINGS_MAP)?, SETTINGS_MAP)?,
            partners_v4: typed(open(PARTNERS_V4_MAP)?, PARTNERS_V4_MAP)?,
            partners_v6: typed(open(PARTNERS_V6_MAP)?, PARTNERS_V6_MAP)?,
            block_v4: typed(open(BLOCK_V4_MAP)?, BLOCK_V4_MAP)?,
            block_v6: typed(open(BLOCK_V6_MAP)?, BLOCK_V6_MAP)?,
            limits: typed(open(LIMITS_MAP)?, LIMITS_MAP)?,
            buckets: typed(open(BUCKETS_MAP)?, BUCKETS_MAP)?,
            counters: typed(open(COUNTERS_MAP)?, COUNTERS_MAP)?,
        })
    }

    /// The program's settings.
    pub fn settings(&self) -> Result<Settings, XdpError> {
        self.settings
            .get(&0, 0)
            .map_err(map_err(SETTINGS_MAP, "reading"))
    }

    /// Replaces the settings in one write (the program reads them per packet).
    pub fn set_settings(&mut self, settings: &Settings) -> Result<(), XdpError> {
        self.settings
            .set(0, settings, 0)
            .map_err(map_err(SETTINGS_MAP, "writing"))
    }

    /// Every slot a partner holds, by slot.
    pub fn slots(&self) -> Result<Vec<SlotEntry>, XdpError> {
        let mut in_use = Vec::new();
        for slot in 0..MAX_PARTNERS {
            let limit = self
                .limits
                .get(&slot, 0)
                .map_err(map_err(LIMITS_MAP, "reading"))?;
            if limit.flags & LIMIT_IN_USE != 0 {
                in_use.push(SlotEntry { slot, limit });
            }
        }
        Ok(in_use)
    }

    /// The counters of `slot`, summed over CPUs.
    pub fn counters(&self, slot: u32) -> Result<Counters, XdpError> {
        sum_counters(&self.counters, slot)
    }

    /// Prefix → slot entries of both partner tries.
    pub fn partner_prefixes(&self) -> Result<BTreeMap<IpNet, u32>, XdpError> {
        let mut all = trie_entries_v4(&self.partners_v4, PARTNERS_V4_MAP)?;
        all.extend(trie_entries_v6(&self.partners_v6, PARTNERS_V6_MAP)?);
        Ok(all)
    }

    /// Prefixes of both blocklist tries.
    pub fn blocked_prefixes(&self) -> Result<Vec<IpNet>, XdpError> {
        let mut all = trie_entries_v4(&self.block_v4, BLOCK_V4_MAP)?;
        all.extend(trie_entries_v6(&self.block_v6, BLOCK_V6_MAP)?);
        Ok(all.into_keys().collect())
    }

    /// Brings every map in step with `rules`; `settings` carries what only the loader
    /// knows (interface index, attach mode) and is completed from `rules`. Returns the
    /// partner → slot table now in force and what changed.
    pub fn apply(
        &mut self,
        rules: &Rules,
        mut settings: Settings,
    ) -> Result<(Vec<(String, u32)>, Applied), XdpError> {
        let current = self.slots()?;
        let plan = SlotPlan::new(&current, &rules.partners);
        let mut applied = Applied::default();
        for &(i, slot) in &plan.added_now {
            self.hand_over(slot, &rules.partners[i].limit)?;
            applied.partners_added.push(rules.partners[i].name.clone());
        }
        for &(i, slot) in &plan.kept {
            let want = &rules.partners[i].limit;
            let have = current.iter().find(|e| e.slot == slot).map(|e| &e.limit);
            if have != Some(want) {
                self.write_limit(slot, want)?;
                applied.limits_changed.push(rules.partners[i].name.clone());
            }
        }
        let now: Vec<(usize, u32)> = plan.kept.iter().chain(&plan.added_now).copied().collect();
        let (added, removed) = self.sync_partner_prefixes(&prefix_slots(rules, &now))?;
        applied.prefixes_added += added;
        applied.prefixes_removed += removed;
        for entry in &plan.removed {
            self.write_limit(entry.slot, &PartnerLimit::default())?;
            applied
                .partners_removed
                .push(entry.limit.name_str().to_string());
        }
        if !plan.added_after_removal.is_empty() {
            for &(i, slot) in &plan.added_after_removal {
                self.hand_over(slot, &rules.partners[i].limit)?;
                applied.partners_added.push(rules.partners[i].name.clone());
            }
            let all: Vec<(usize, u32)> = now
                .iter()
                .chain(&plan.added_after_removal)
                .copied()
                .collect();
            let (added, removed) = self.sync_partner_prefixes(&prefix_slots(rules, &all))?;
            applied.prefixes_added += added;
            applied.prefixes_removed += removed;
        }
        let (added, removed) = self.sync_blocklist(&rules.blocklist)?;
        applied.blocked_added = added;
        applied.blocked_removed = removed;
        settings.ports = rules.ports;
        settings.unknown_action = rules.unknown_action;
        settings.log_interval_ns = rules.log_interval_ns;
        self.set_settings(&settings)?;
        let mut table: Vec<(String, u32)> = plan
            .kept
            .iter()
            .chain(&plan.added_now)
            .chain(&plan.added_after_removal)
            .map(|&(i, slot)| (rules.partners[i].name.clone(), slot))
            .collect();
        table.sort_by_key(|(_, slot)| *slot);
        Ok((table, applied))
    }

    /// Gives `slot` to a new partner: its GCRA state and counters start from zero
    /// (they belonged to whoever held it before), then its limits are written.
    fn hand_over(&mut self, slot: u32, limit: &PartnerLimit) -> Result<(), XdpError> {
        self.buckets
            .set(slot, PartnerBuckets::default(), 0)
            .map_err(map_err(BUCKETS_MAP, "zeroing"))?;
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| XdpError::Cpus(e))?;
        let zeros =
            PerCpuValues::try_from(vec![Counters::default(); cpus]).map_err(XdpError::Cpus)?;
        self.counters
            .set(slot, zeros, 0)
            .map_err(map_err(COUNTERS_MAP, "zeroing"))?;
        self.write_limit(slot, limit)
    }

    fn write_limit(&mut self, slot: u32, limit: &PartnerLimit) -> Result<(), XdpError> {
        self.limits
            .set(slot, limit, 0)
            .map_err(map_err(LIMITS_MAP, "writing"))
    }

    /// Inserts or repoints every wanted prefix, then removes the others.
    fn sync_partner_prefixes(
        &mut self,
        want: &BTreeMap<IpNet, u32>,
    ) -> Result<(usize, usize), XdpError> {
        let have = self.partner_prefixes()?;
        let mut added = 0;
        for (net, &slot) in want {
            if have.get(net) != Some(&slot) {
                insert(
                    &mut self.partners_v4,
                    &mut self.partners_v6,
                    net,
                    slot,
                    (PARTNERS_V4_MAP, PARTNERS_V6_MAP),
                )?;
                added += 1;
            }
        }
        let stale: Vec<&IpNet> = have.keys().filter(|n| !want.contains_key(n)).collect();
        for net in &stale {
            remove(
                &mut self.partners_v4,
                &mut self.partners_v6,
                net,
                (PARTNERS_V4_MAP, PARTNERS_V6_MAP),
            )?;
        }
        Ok((added, stale.len()))
    }

    /// Adds new blocked prefixes first, then removes those no longer listed.
    fn sync_blocklist(&mut self, want: &[IpNet]) -> Result<(usize, usize), XdpError> {
        let have = self.blocked_prefixes()?;
        let new: Vec<&IpNet> = want.iter().filter(|n| !have.contains(n)).collect();
        for net in &new {
            insert(
                &mut self.block_v4,
                &mut self.block_v6,
                net,
                BLOCKED,
                (BLOCK_V4_MAP, BLOCK_V6_MAP),
            )?;
        }
        let stale: Vec<&IpNet> = have.iter().filter(|n| !want.contains(n)).collect();
        for net in &stale {
            remove(
                &mut self.block_v4,
                &mut self.block_v6,
                net,
                (BLOCK_V4_MAP, BLOCK_V6_MAP),
            )?;
        }
        Ok((new.len(), stale.len()))
    }
}

/// Sums `slot` of a per-CPU counters map.
pub(crate) fn sum_counters(
    map: &PerCpuArray<MapData, Counters>,
    slot: u32,
) -> Result<Counters, XdpError> {
    let per_cpu = map
        .get(&slot, 0)
        .map_err(map_err(COUNTERS_MAP, "reading"))?;
    Ok(per_cpu
        .iter()
        .fold(Counters::default(), |sum, c| sum.plus(c)))
}

/// Wanted prefix → slot for the partners `(index into rules.partners, slot)`.
fn prefix_slots(rules: &Rules, partners: &[(usize, u32)]) -> BTreeMap<IpNet, u32> {
    partners
        .iter()
        .flat_map(|&(i, slot)| {
            rules.partners[i]
                .prefixes
                .iter()
                .map(move |net| (*net, slot))
        })
        .collect()
}

fn insert(
    v4: &mut TrieV4,
    v6: &mut TrieV6,
    net: &IpNet,
    value: u32,
    names: (&'static str, &'static str),
) -> Result<(), XdpError> {
    match net {
        IpNet::V4(n) => v4
            .insert(
                &Key::new(u32::from(n.prefix_len()), n.network().octets()),
                value,
                0,
            )
            .map_err(map_err(names.0, "inserting a prefix")),
        IpNet::V6(n) => v6
            .insert(
                &Key::new(u32::from(n.prefix_len()), n.network().octets()),
                value,
                0,
            )
            .map_err(map_err(names.1, "inserting a prefix")),
    }
}

fn remove(
    v4: &mut TrieV4,
    v6: &mut TrieV6,
    net: &IpNet,
    names: (&'static str, &'static str),
) -> Result<(), XdpError> {
    match net {
        IpNet::V4(n) => v4
            .remove(&Key::new(u32::from(n.prefix_len()), n.network().octets()))
            .map_err(map_err(names.0, "removing a prefix")),
        IpNet::V6(n) => v6
            .remove(&Key::new(u32::from(n.prefix_len()), n.network().octets()))
            .map_err(map_err(names.1, "removing a prefix")),
    }
}

fn trie_entries_v4(trie: &TrieV4, name: &'static str) -> Result<BTreeMap<IpNet, u32>, XdpError> {
    trie_entries(trie.iter(), name, |addr: [u8; 4], len| {
        ipnet::Ipv4Net::new(Ipv4Addr::from(addr), len)
            .ok()
            .map(IpNet::V4)
    })
}

fn trie_entries_v6(trie: &TrieV6, name: &'static str) -> Result<BTreeMap<IpNet, u32>, XdpError> {
    trie_entries(trie.iter(), name, |addr: [u8; 16], len| {
        ipnet::Ipv6Net::new(Ipv6Addr::from(addr), len)
            .ok()
            .map(IpNet::V6)
    })
}

fn trie_entries<A: Pod>(
    entries: impl Iterator<Item = Result<(Key<A>, u32), MapError>>,
    name: &'static str,
    net: impl Fn(A, u8) -> Option<IpNet>,
) -> Result<BTreeMap<IpNet, u32>, XdpError> {
    let mut all = BTreeMap::new();
    for entry in entries {
        let (key, value) = entry.map_err(map_err(name, "listing prefixes"))?;
        let len = u8::try_from(key.prefix_len()).unwrap_or(u8::MAX);
        if let Some(n) = net(key.data(), len) {
            all.insert(n, value);
        }
    }
    Ok(all)
}

/// Which partner gets which slot: kept partners keep theirs; new partners take free
/// slots, first those nobody held before this change, and only after the removals
/// those that removed partners just gave up.
#[derive(Debug, Default, PartialEq, Eq)]
struct SlotPlan {
    /// `(index into the wanted partners, slot)`.
    kept: Vec<(usize, u32)>,
    added_now: Vec<(usize, u32)>,
    added_after_removal: Vec<(usize, u32)>,
    removed: Vec<SlotEntry>,
}

impl SlotPlan {
    fn new(current: &[SlotEntry], wanted: &[PartnerRule]) -> SlotPlan {
        let held: HashMap<&str, u32> = current
            .iter()
            .map(|e| (e.limit.name_str(), e.slot))
            .collect();
        let mut plan = SlotPlan::default();
        let mut new = Vec::new();
        for (i, partner) in wanted.iter().enumerate() {
            match held.get(partner.limit.name_str()) {
                Some(&slot) => plan.kept.push((i, slot)),
                None => new.push(i),
            }
        }
        let kept_slots: Vec<u32> = plan.kept.iter().map(|&(_, s)| s).collect();
        plan.removed = current
            .iter()
            .filter(|e| !kept_slots.contains(&e.slot))
            .cloned()
            .collect();
        let mut free = (0..MAX_PARTNERS).filter(|s| current.iter().all(|e| e.slot != *s));
        let mut freed = plan.removed.iter().map(|e| e.slot);
        for i in new {
            if let Some(slot) = free.next() {
                plan.added_now.push((i, slot));
            } else if let Some(slot) = freed.next() {
                plan.added_after_removal.push((i, slot));
            } else {
                // Validation caps partners with CIDRs at MAX_PARTNERS.
                panic!("more partners with cidrs than the {MAX_PARTNERS} XDP slots");
            }
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str) -> PartnerRule {
        let mut limit = PartnerLimit {
            flags: LIMIT_IN_USE,
            ..PartnerLimit::default()
        };
        limit.set_name(name);
        PartnerRule {
            name: name.into(),
            limit,
            prefixes: Vec::new(),
        }
    }

    fn held(entries: &[(&str, u32)]) -> Vec<SlotEntry> {
        entries
            .iter()
            .map(|&(name, slot)| SlotEntry {
                slot,
                limit: rule(name).limit,
            })
            .collect()
    }

    #[test]
    fn partners_keep_their_slots_and_new_ones_take_never_held_slots_first() {
        let current = held(&[("a", 0), ("b", 1), ("c", 5)]);
        let plan = SlotPlan::new(&current, &[rule("c"), rule("new"), rule("a")]);
        assert_eq!(plan.kept, [(0, 5), (2, 0)]);
        assert_eq!(plan.added_now, [(1, 2)]);
        assert!(plan.added_after_removal.is_empty());
        assert_eq!(plan.removed, held(&[("b", 1)]));
    }

    #[test]
    fn a_slot_given_up_is_reused_only_after_the_removal_when_nothing_else_is_free() {
        let names: Vec<String> = (0..MAX_PARTNERS).map(|i| format!("p{i}")).collect();
        let current: Vec<SlotEntry> = names
            .iter()
            .enumerate()
            .map(|(i, n)| held(&[(n.as_str(), i as u32)]).remove(0))
            .collect();
        let mut wanted: Vec<PartnerRule> = names[1..].iter().map(|n| rule(n)).collect();
        wanted.push(rule("newcomer"));
        let plan = SlotPlan::new(&current, &wanted);
        assert!(plan.added_now.is_empty());
        assert_eq!(plan.added_after_removal, [(wanted.len() - 1, 0)]);
        assert_eq!(plan.removed, held(&[("p0", 0)]));
    }
}
