//! The compiled XDP program (`bidder-ebpf`), embedded in the bidder binary.
//!
//! Embedding rather than reading a file at start means the daemon cannot run with an
//! object from another build: program, map layouts and `bidder_common::xdp` always match.
//! `build/ebpf.rs` produces the object; the loader hands these bytes to aya.

/// The ELF object for `bpfel-unknown-none`, aligned so aya can parse it in place.
/// Names inside it are the constants in `bidder_common::xdp`.
pub static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bidder-xdp"));

#[cfg(test)]
mod tests {
    use super::XDP_OBJECT;
    use aya_obj::{generated::bpf_map_type, Object, ProgramSection};
    use bidder_common::xdp::{
        Counters, LpmV4, LpmV6, PartnerBuckets, PartnerLimit, Settings, ALL_MAPS, BLOCK_V4_MAP,
        BLOCK_V6_MAP, BUCKETS_MAP, COUNTERS_MAP, COUNTER_SLOTS, LIMITS_MAP, LOG_STATE_MAP,
        MAX_PARTNERS, MAX_PREFIXES, PARTNERS_V4_MAP, PARTNERS_V6_MAP, PROGRAM_NAME, SETTINGS_MAP,
    };

    fn parsed() -> Object {
        Object::parse(XDP_OBJECT).expect("the embedded XDP object is a valid BPF ELF")
    }

    #[test]
    fn object_has_the_xdp_program_under_its_shared_name_with_frags() {
        let object = parsed();
        let program = object
            .programs
            .get(PROGRAM_NAME)
            .unwrap_or_else(|| panic!("no program {PROGRAM_NAME} in {:?}", object.programs.keys()));
        assert!(
            matches!(program.section, ProgramSection::Xdp { frags: true, .. }),
            "{PROGRAM_NAME} is in section {:?}, not xdp.frags",
            program.section
        );
    }

    #[test]
    fn maps_match_the_shared_types() {
        use bpf_map_type::*;
        let object = parsed();
        let expect = [
            (
                SETTINGS_MAP,
                BPF_MAP_TYPE_ARRAY,
                4,
                size_of::<Settings>(),
                1,
            ),
            (
                PARTNERS_V4_MAP,
                BPF_MAP_TYPE_LPM_TRIE,
                size_of::<LpmV4>(),
                4,
                MAX_PREFIXES,
            ),
            (
                PARTNERS_V6_MAP,
                BPF_MAP_TYPE_LPM_TRIE,
                size_of::<LpmV6>(),
                4,
                MAX_PREFIXES,
            ),
            (
                BLOCK_V4_MAP,
                BPF_MAP_TYPE_LPM_TRIE,
                size_of::<LpmV4>(),
                4,
                MAX_PREFIXES,
            ),
            (
                BLOCK_V6_MAP,
                BPF_MAP_TYPE_LPM_TRIE,
                size_of::<LpmV6>(),
                4,
                MAX_PREFIXES,
            ),
            (
                LIMITS_MAP,
                BPF_MAP_TYPE_ARRAY,
                4,
                size_of::<PartnerLimit>(),
                MAX_PARTNERS,
            ),
            (
                BUCKETS_MAP,
                BPF_MAP_TYPE_ARRAY,
                4,
                size_of::<PartnerBuckets>(),
                MAX_PARTNERS,
            ),
            (
                COUNTERS_MAP,
                BPF_MAP_TYPE_PERCPU_ARRAY,
                4,
                size_of::<Counters>(),
                COUNTER_SLOTS,
            ),
            (LOG_STATE_MAP, BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 1),
        ];
        assert_eq!(expect.len(), ALL_MAPS.len());
        for (name, kind, key, value, entries) in expect {
            let map = object
                .maps
                .get(name)
                .unwrap_or_else(|| panic!("no map {name} in {:?}", object.maps.keys()));
            assert_eq!(map.map_type(), kind as u32, "{name} type");
            assert_eq!(map.key_size() as usize, key, "{name} key size");
            assert_eq!(map.value_size() as usize, value, "{name} value size");
            assert_eq!(map.max_entries(), entries, "{name} entries");
        }
    }
}
