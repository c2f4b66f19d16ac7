//! Build steps, one file each under `build/`: the FlatBuffers code generated from the
//! schema, and the XDP object built from `bidder-ebpf`.

#[path = "build/ebpf.rs"]
mod ebpf;
#[path = "build/flatbuffers.rs"]
mod flatbuffers;

fn main() {
    flatbuffers::generate();
    ebpf::build();
}
