//! The bidder: OpenRTB in, a decision, OpenRTB or FlatBuffers out.
//!
//! The folders are the stages of one bid, in order: `engine` (io_uring or tokio I/O)
//! → `http` (HTTP/1.1) → `bid` (partner gate, then the pipeline) → `openrtb` (parse)
//! → `decide` (campaign index, targeting, floors, consent, supply chain, strategy,
//! budget) → `money` (reservation, ledger, signed notices) → `respond` (encode).
//! Beside the path: `catalog` (the compiled configuration), `config`, `tables` (the
//! shared-memory bridge to the agent), `control` (the admin port), `metrics`, `xdp`
//! (the XDP front's loader). `ARCHITECTURE.md` at the root is the map.

pub mod bid;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod control;
pub mod daemon;
pub mod decide;
pub mod engine;
pub mod fleet;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod money;
pub mod openrtb;
pub mod respond;
pub mod supervisor;
pub mod supply;
pub mod tables;
pub mod xdp;
