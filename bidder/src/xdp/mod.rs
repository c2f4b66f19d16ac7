//! The XDP front's user-space side: the embedded program, bpffs, and (with the loader)
//! attaching it and keeping its maps in step with the configuration.

pub mod bpffs;
