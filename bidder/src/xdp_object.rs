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
        PacketClass, PacketCounter, BID_PORT_GLOBAL, PACKET_COUNTS_MAP, PROGRAM_NAME,
    };
    use object::{Object as _, ObjectSection as _, ObjectSymbol as _};

    fn parsed() -> Object {
        Object::parse(XDP_OBJECT).expect("the embedded XDP object is a valid BPF ELF")
    }

    #[test]
    fn object_has_the_xdp_program_under_its_shared_name() {
        let object = parsed();
        let program = object
            .programs
            .get(PROGRAM_NAME)
            .unwrap_or_else(|| panic!("no program {PROGRAM_NAME} in {:?}", object.programs.keys()));
        assert!(
            matches!(program.section, ProgramSection::Xdp { .. }),
            "{PROGRAM_NAME} is in section {:?}, not xdp",
            program.section
        );
    }

    #[test]
    fn packet_counts_map_matches_the_shared_types() {
        let object = parsed();
        let map = object
            .maps
            .get(PACKET_COUNTS_MAP)
            .unwrap_or_else(|| panic!("no map {PACKET_COUNTS_MAP} in {:?}", object.maps.keys()));
        assert_eq!(
            map.map_type(),
            bpf_map_type::BPF_MAP_TYPE_PERCPU_ARRAY as u32
        );
        assert_eq!(map.key_size() as usize, size_of::<u32>());
        assert_eq!(map.value_size() as usize, size_of::<PacketCounter>());
        assert_eq!(map.max_entries(), PacketClass::COUNT);
    }

    #[test]
    fn bid_port_global_is_a_read_only_u16_defaulting_to_unset() {
        // The loader overrides the global by symbol name before load; it must sit in
        // `.rodata` (read-only to the program) and start as 0, "no bid port configured".
        let elf = object::File::parse(XDP_OBJECT).expect("the embedded object is ELF");
        let symbol = elf
            .symbols()
            .find(|symbol| symbol.name() == Ok(BID_PORT_GLOBAL))
            .unwrap_or_else(|| panic!("no symbol {BID_PORT_GLOBAL}"));
        assert_eq!(symbol.size() as usize, size_of::<u16>());
        let section = elf
            .section_by_index(symbol.section_index().expect("defined symbol"))
            .expect("symbol section exists");
        assert_eq!(section.name(), Ok(".rodata"));
        let data = section.data().expect("section has bytes");
        let at = (symbol.address() - section.address()) as usize;
        assert_eq!(data[at..at + size_of::<u16>()], [0, 0]);
    }

    #[test]
    fn kernel_verifier_accepts_the_program() {
        if !running_as_root() {
            eprintln!("skipped kernel_verifier_accepts_the_program: loading BPF needs root");
            return;
        }
        let bid_port: u16 = 8080;
        let mut ebpf = aya::EbpfLoader::new()
            .override_global(BID_PORT_GLOBAL, &bid_port, true)
            .load(XDP_OBJECT)
            .expect("the kernel creates the object's maps");
        let program: &mut aya::programs::Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .expect("program present")
            .try_into()
            .expect("program is XDP");
        program.load().expect("the verifier accepts the program");
    }

    /// `/proc/self` belongs to the process's effective uid, so this needs no libc call.
    fn running_as_root() -> bool {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
    }
}
