//! The bridge to the agent: the shared-memory [`strategy`] table the agent writes and
//! every worker reads lock-free, and the [`stats`] table the bidder writes for the
//! agent and `bidderctl`; the [`mirror`] thread keeps the two in step with the
//! running bidder. The layouts live in `bidder-common`; this is the bidder's
//! side of them.

pub mod mirror;
pub mod stats;
pub mod strategy;
