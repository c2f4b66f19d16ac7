//! The XDP front's user-space side, first stage of a packet's journey: the program
//! (`crate::xdp::object`) loaded, attached and kept in step with the configuration.
//!
//! | module | holds |
//! |---|---|
//! | `rules` | what the maps should hold, computed from config and catalog |
//! | `pins` | the pin folder: map layouts, stale pins, the link's path |
//! | `maps` | typed map access, stable partner slots, in-place updates |
//! | `link` | attaching through a pinned bpf_link, replacing, detaching |
//! | `loader` | [`XdpFront`]: start, apply, detach |
//! | `metrics` | the front on `/metrics` |
//! | `drop_log` | the program's aya-log records into `tracing` |
//! | `status` | `bidder xdp status` from the pins alone |
//! | `bpffs` | the BPF filesystem |

pub mod bpffs;
mod drop_log;
pub mod link;
pub mod loader;
pub mod maps;
pub mod metrics;
pub mod object;
pub mod pins;
pub mod rules;
pub mod status;

use std::io;
use std::path::PathBuf;

pub use link::{AttachedMode, LinkState};
pub use loader::{Attachment, XdpFront};
pub use rules::Rules;
pub use status::Status;

use crate::config::AttachMode;

/// Why the XDP front could not be started, updated, read or detached. Each message
/// names the object (interface, map, path) and, where there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("xdp.pin_dir {path}: {what}: {source}")]
    PinDir {
        path: PathBuf,
        what: &'static str,
        source: io::Error,
    },
    #[error("loading the XDP object: {0} (needs root or CAP_BPF + CAP_NET_ADMIN)")]
    Load(#[source] aya::EbpfError),
    #[error("the XDP program: {0}")]
    Program(#[source] aya::programs::ProgramError),
    #[error(
        "the XDP object has no program {}: is the embedded object from this build?",
        bidder_common::xdp::PROGRAM_NAME
    )]
    MissingProgram,
    #[error("the XDP object has no map {map}")]
    MissingMap { map: &'static str },
    #[error("xdp map {map}: {what}: {source}")]
    Map {
        map: &'static str,
        what: &'static str,
        source: aya::maps::MapError,
    },
    #[error("counting CPUs for the per-CPU counters: {0}")]
    Cpus(io::Error),
    #[error(
        "cannot attach the XDP program to interface `{interface}` in {} mode: {reason}; fix: check xdp.interface, try xdp.mode = \"generic\" (or \"auto\"), or set xdp.required = false to run with user-space limits",
        mode_name(*mode)
    )]
    Attach {
        interface: String,
        mode: AttachMode,
        reason: String,
    },
    #[error("xdp link {path}: {what}: {source}")]
    Link {
        path: PathBuf,
        what: &'static str,
        source: io::Error,
    },
    #[error("nothing pinned at {pin_dir}: no XDP front has run with this pin_dir (check --pin-dir, or xdp.pin_dir in the configuration)")]
    NotPinned { pin_dir: PathBuf },
}

fn mode_name(mode: AttachMode) -> &'static str {
    match mode {
        AttachMode::Native => "native",
        AttachMode::Generic => "generic",
        AttachMode::Auto => "auto (native, else generic)",
    }
}
