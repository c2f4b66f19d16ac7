//! Load generation for the bidder: an open-loop HTTP/1.1 generator that corrects for
//! coordinated omission, its SLA report, and a saturation search (see perf/README.md).
//!
//! The `loadgen` binary is a thin CLI over [`run::run`] and [`saturate::saturate`]. The
//! crate talks to the server under test only over HTTP, so it measures the bidder, the
//! tokio engine and nginx alike, and depends on none of them.

pub mod corpus;
mod poller;
pub mod report;
pub mod request;
mod response;
pub mod run;
pub mod saturate;
pub mod sim;
mod stats;
pub mod target;
mod worker;
