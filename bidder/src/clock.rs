//! Calendar time: the one [`Clock`] a process is given (defined in `bidder-common`, so
//! the agent and the shared-memory tables read the same one), the simulator's
//! [`ClockFile`] (`bidder run --simulate` only), and the monotonic helper deadlines use.

pub use bidder_common::clock::{monotonic_now, Clock, ClockFile, ClockFileError, DrivenClock};
