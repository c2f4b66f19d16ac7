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
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::pins::map_path;
use super::rules::{PartnerRule, Rules};
use super::XdpError;

type TrieV4 = LpmTrie<MapData, [u8; 4], u32>;
type TrieV6 = LpmTrie<MapData, [u8; 16], u32>;

/// The maps the bidder reads and writes (`LOG_STATE` is the program's alone).
pub struct FrontMaps {
    settings: Array<MapData, Settings>,
    /// Source prefix → partner slot.
    partners: Tries,
    /// Source prefix → `BLOCKED`.
    blocklist: Tries,
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
            partners: Tries {
                v4: typed(open(PARTNERS_V4_MAP)?, PARTNERS_V4_MAP)?,
                v6: typed(open(PARTNERS_V6_MAP)?, PARTNERS_V6_MAP)?,
                names: [PARTNERS_V4_MAP, PARTNERS_V6_MAP],
            },
            blocklist: Tries {
                v4: typed(open(BLOCK_V4_MAP)?, BLOCK_V4_MAP)?,
                v6: typed(open(BLOCK_V6_MAP)?, BLOCK_V6_MAP)?,
                names: [BLOCK_V4_MAP, BLOCK_V6_MAP],
            },
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
        self.partners.entries()
    }

    /// Prefixes of both blocklist tries.
    pub fn blocked_prefixes(&self) -> Result<Vec<IpNet>, XdpError> {
        Ok(self.blocklist.entries()?.into_keys().collect())
    }

    /// Brings every map in step with `rules`; `settings` carries what only the loader
    /// knows (interface index, attach mode) and is completed from `rules`. Returns the
    /// partner → slot table now in force and what changed.
    pub fn apply(
        &mut self,
        rules: &Rules,
        mut settings: Settings,
    ) -> Result<(Vec<(String, u32)>, Applied), XdpError> {
        let mut applied = Applied::default();
        let table = self.apply_partners(rules, &mut applied)?;
        let blocked: BTreeMap<IpNet, u32> = rules.blocklist.iter().map(|n| (*n, BLOCKED)).collect();
        (applied.blocked_added, applied.blocked_removed) = self.blocklist.sync(&blocked)?;
        settings.ports = rules.ports;
        settings.unknown_action = rules.unknown_action;
        settings.log_interval_ns = rules.log_interval_ns;
        self.set_settings(&settings)?;
        Ok((table, applied))
    }

    /// Partner limits and prefixes, in the order the module documentation gives.
    fn apply_partners(
        &mut self,
        rules: &Rules,
        applied: &mut Applied,
    ) -> Result<Vec<(String, u32)>, XdpError> {
        let current = self.slots()?;
        let plan = SlotPlan::new(&current, &rules.partners);
        for &(i, slot) in &plan.added_now {
            self.hand_over(slot, &rules.partners[i].limit)?;
            applied.partners_added.push(rules.partners[i].name.clone());
        }
        for &(i, slot) in &plan.kept {
            let want = &rules.partners[i].limit;
            let have = current.iter().find(|e| e.slot == slot).map(|e| &e.limit);
            if have != Some(want) {
                self.write_limit(slot, want)?;
                self.restart_schedule(slot)?;
                applied.limits_changed.push(rules.partners[i].name.clone());
            }
        }
        let mut holders: Vec<(usize, u32)> =
            plan.kept.iter().chain(&plan.added_now).copied().collect();
        self.sync_prefixes(rules, &holders, applied)?;
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
            holders.extend(&plan.added_after_removal);
            self.sync_prefixes(rules, &holders, applied)?;
        }
        let mut table: Vec<(String, u32)> = holders
            .iter()
            .map(|&(i, slot)| (rules.partners[i].name.clone(), slot))
            .collect();
        table.sort_by_key(|(_, slot)| *slot);
        Ok(table)
    }

    /// Makes the partner tries hold exactly the prefixes of `holders`
    /// (`(index into rules.partners, slot)`).
    fn sync_prefixes(
        &mut self,
        rules: &Rules,
        holders: &[(usize, u32)],
        applied: &mut Applied,
    ) -> Result<(), XdpError> {
        let want: BTreeMap<IpNet, u32> = holders
            .iter()
            .flat_map(|&(i, slot)| {
                rules.partners[i]
                    .prefixes
                    .iter()
                    .map(move |net| (*net, slot))
            })
            .collect();
        let (added, removed) = self.partners.sync(&want)?;
        applied.prefixes_added += added;
        applied.prefixes_removed += removed;
        Ok(())
    }

    /// Starts `slot`'s GCRA schedule afresh (a full burst) under its new limits. The
    /// old theoretical arrival times were spaced by the old interval: after a limit of
    /// 1/s is raised, they would hold the partner back for seconds.
    fn restart_schedule(&mut self, slot: u32) -> Result<(), XdpError> {
        self.buckets
            .set(slot, PartnerBuckets::default(), 0)
            .map_err(map_err(BUCKETS_MAP, "restarting the rate schedule"))
    }

    /// Gives `slot` to a new partner: its GCRA state and counters start from zero
    /// (they belonged to whoever held it before), then its limits are written.
    fn hand_over(&mut self, slot: u32, limit: &PartnerLimit) -> Result<(), XdpError> {
        self.restart_schedule(slot)?;
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

/// An IPv4 and an IPv6 trie used as one (partner prefixes, or the blocklist).
struct Tries {
    v4: TrieV4,
    v6: TrieV6,
    /// Map names for errors, v4 then v6.
    names: [&'static str; 2],
}

impl Tries {
    /// Every prefix of both tries with its value.
    fn entries(&self) -> Result<BTreeMap<IpNet, u32>, XdpError> {
        let mut all = BTreeMap::new();
        for entry in self.v4.iter() {
            let (key, value) = entry.map_err(map_err(self.names[0], "listing prefixes"))?;
            let net = Ipv4Net::new(Ipv4Addr::from(key.data()), prefix_len(&key));
            all.extend(net.ok().map(|n| (IpNet::V4(n), value)));
        }
        for entry in self.v6.iter() {
            let (key, value) = entry.map_err(map_err(self.names[1], "listing prefixes"))?;
            let net = Ipv6Net::new(Ipv6Addr::from(key.data()), prefix_len(&key));
            all.extend(net.ok().map(|n| (IpNet::V6(n), value)));
        }
        Ok(all)
    }

    /// Inserts or repoints every wanted prefix first, then removes the others: a
    /// prefix moving between holders never goes missing. Returns (written, removed).
    fn sync(&mut self, want: &BTreeMap<IpNet, u32>) -> Result<(usize, usize), XdpError> {
        let have = self.entries()?;
        let new: Vec<(&IpNet, u32)> = want
            .iter()
            .filter(|(net, value)| have.get(net) != Some(value))
            .map(|(net, value)| (net, *value))
            .collect();
        for &(net, value) in &new {
            self.write(net, Some(value))?;
        }
        let stale: Vec<&IpNet> = have.keys().filter(|n| !want.contains_key(n)).collect();
        for net in &stale {
            self.write(net, None)?;
        }
        Ok((new.len(), stale.len()))
    }

    /// Inserts `net` → `value`, or removes `net` when `value` is `None`.
    fn write(&mut self, net: &IpNet, value: Option<u32>) -> Result<(), XdpError> {
        let v4 = |n: &Ipv4Net| Key::new(u32::from(n.prefix_len()), n.network().octets());
        let v6 = |n: &Ipv6Net| Key::new(u32::from(n.prefix_len()), n.network().octets());
        let result = match (net, value) {
            (IpNet::V4(n), Some(value)) => self.v4.insert(&v4(n), value, 0),
            (IpNet::V4(n), None) => self.v4.remove(&v4(n)),
            (IpNet::V6(n), Some(value)) => self.v6.insert(&v6(n), value, 0),
            (IpNet::V6(n), None) => self.v6.remove(&v6(n)),
        };
        let name = self.names[usize::from(matches!(net, IpNet::V6(_)))];
        let what = if value.is_some() {
            "inserting a prefix"
        } else {
            "removing a prefix"
        };
        result.map_err(map_err(name, what))
    }
}

/// A trie key's prefix length as `ipnet` takes it (longer than any address: refused).
fn prefix_len<A: Pod>(key: &Key<A>) -> u8 {
    u8::try_from(key.prefix_len()).unwrap_or(u8::MAX)
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
