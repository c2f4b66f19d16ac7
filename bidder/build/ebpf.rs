//! Builds the XDP object (filled by the setup/eBPF work).
pub fn build() {}
