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
    use crate::xdp::pins::LAYOUTS;
    use aya_obj::{Object, ProgramSection};
    use bidder_common::xdp::{ALL_MAPS, PROGRAM_NAME};

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

    /// The object's maps have the layouts the loader expects of pinned maps
    /// (`xdp::pins::LAYOUTS`, built from the shared types), so a pin it accepts is one
    /// this program can use.
    #[test]
    fn maps_match_the_shared_types() {
        let object = parsed();
        assert_eq!(LAYOUTS.len(), ALL_MAPS.len());
        for layout in LAYOUTS {
            let name = layout.name;
            let map = object
                .maps
                .get(name)
                .unwrap_or_else(|| panic!("no map {name} in {:?}", object.maps.keys()));
            assert_eq!(map.map_type(), layout.map_type as u32, "{name} type");
            assert_eq!(map.key_size() as usize, layout.key_bytes, "{name} key size");
            assert_eq!(
                map.value_size() as usize,
                layout.value_bytes,
                "{name} value size"
            );
            assert_eq!(map.max_entries(), layout.max_entries, "{name} entries");
        }
    }
}
