//! The bidder: OpenRTB in, a decision, OpenRTB or FlatBuffers out.
//!
//! Data flow, one module per stage: `openrtb` (parse) → `decide` (campaign index,
//! targeting, floors, consent, supply chain, strategy, budget) → `respond` (encode).

pub mod bid_id;
pub mod bid_service;
pub mod bidding;
pub mod budget;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod control;
pub mod daemon;
pub mod decide;
pub mod http;
pub mod ledger;
pub mod metrics;
pub mod money;
pub mod notice;
pub mod notice_keys;
pub mod openrtb;
pub mod rate_limit;
pub mod respond;
pub mod ring;
mod scratch;
pub mod stats_table;
pub mod strategy;
pub mod strategy_table;
pub mod targeting;
pub mod tokio_engine;
pub mod xdp;
pub mod xdp_object;
