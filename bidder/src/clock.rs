//! Calendar time: the one [`Clock`] a process is given (defined in `bidder-common`, so
//! the agent and the shared-memory tables read the same one), and the monotonic
//! helper deadlines use.

pub use bidder_common::clock::{monotonic_now, Clock, DrivenClock};
