//! Types shared by the kernel side (`bidder-ebpf`), the bidder and the agent.
//!
//! Everything here is `#[repr(C)]` with its layout asserted at compile time, because
//! both sides of a BPF map or a shared-memory table read the same bytes.
#![no_std]

pub mod xdp;
