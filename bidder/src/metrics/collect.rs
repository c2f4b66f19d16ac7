//! How the parts of the bidder add their own samples to the scrape.

use super::prom::PromText;

/// Label value for requests that named no known partner. Partner names are config keys
/// (letters, digits, `-`, `_`), so this cannot collide with one.
pub const UNATTRIBUTED_PARTNER: &str = "(none)";

/// A source of samples the scrape includes, e.g. an engine's per-worker connection
/// counters. `collect` runs on the control thread at every scrape; it must only read
/// (atomics, or locks that no worker takes).
pub trait Collect: Send + Sync {
    /// Adds this source's samples to `out`.
    fn collect(&self, out: &mut PromText);
}
