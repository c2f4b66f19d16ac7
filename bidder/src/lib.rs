//! The bidder: OpenRTB in, a decision, OpenRTB or FlatBuffers out.
//!
//! Data flow, one module per stage: `openrtb` (parse) → `decide` (campaign index,
//! targeting, floors, consent, supply chain, strategy, budget) → `respond` (encode).

pub mod http;
pub mod money;
pub mod ring;
