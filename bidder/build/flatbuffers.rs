//! Generates Rust code from `schema/*.fbs` (filled by the respond work).
pub fn generate() {}
