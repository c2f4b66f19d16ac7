//! Types shared by the kernel side (`bidder-ebpf`), the bidder and the agent.
//!
//! Everything here is `#[repr(C)]` with its layout asserted at compile time, because
//! both sides of a BPF map or a shared-memory table read the same bytes.
#![no_std]

#[cfg(test)]
extern crate std;

// Calendar time for user space: the one injected clock (std only).
#[cfg(feature = "clock")]
pub mod clock;
// The XDP program has no use for the shared-memory tables (and BPF has no mmap).
#[cfg(not(target_arch = "bpf"))]
pub mod table;
// Integer money and exact decimal text, for user space (BPF has no 128-bit division).
#[cfg(not(target_arch = "bpf"))]
pub mod money;
pub mod xdp;
