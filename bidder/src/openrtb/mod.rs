//! OpenRTB 2.6 bid requests: a borrowed, flat model of what the decision core reads,
//! and the parser that fills it in one pass without allocating once warm (simd-json,
//! the reference it is held to, stays available as [`JsonReader::Tape`]).
//!
//! Entry point: [`Parser::parse`]. Both engines (io_uring and tokio) call it with the
//! request body; the decision core reads the [`BidRequest`] it returns.
//!
//! ```
//! use bidder::openrtb::Parser;
//!
//! let mut parser = Parser::new(); // one per worker, reused for every request
//! let mut body = br#"{"id":"r1","imp":[{"id":"1","bidfloor":0.5,
//!     "banner":{"w":300,"h":250}}],"bcat":["IAB25"]}"#.to_vec();
//! let req = parser.parse(&mut body)?;
//! let imp = &req.imps()[0];
//! assert_eq!(imp.bidfloor_micros, 500_000);
//! assert_eq!(req.formats(imp.banner.unwrap().format)[0].w, 300);
//! assert_eq!(req.bcat(), ["IAB25"]);
//! # Ok::<(), bidder::openrtb::ParseError>(())
//! ```
//!
//! ## Limits
//! Every limit below is enforced per request. A list whose truncation can only lose an
//! opportunity (sizes, deals, extended ids) is cut at its limit and the request is
//! flagged `truncated`; a list whose truncation could make us break a buyer or seller
//! rule (block lists, seat lists, supply chain) makes the whole request fail, so that
//! no bid is ever made on a partially read block list.

mod differential;
mod error;
mod extract;
mod model;
mod parser;
mod read;
mod scan;
pub(crate) mod scratch;
mod tape;
#[cfg(test)]
mod tests;
mod version;

pub use differential::{compare_readers, Agreement};
pub use error::{JsonSyntax, ParseError};
pub use model::*;
pub use parser::{JsonReader, Parsed, Parser};
pub use version::OpenRtbVersion;

pub(crate) use scan::special_bytes;

pub use crate::limits::MAX_REQUEST_BYTES;

pub use crate::limits::MAX_DEPTH;

pub use crate::limits::MAX_IMPS;

pub use crate::limits::MAX_FORMATS_PER_BANNER;

pub use crate::limits::MAX_DEALS_PER_IMP;

pub use crate::limits::MAX_LIST_ITEMS;

pub use crate::limits::MAX_SCHAIN_NODES;

pub use crate::limits::MAX_EIDS;

// Pool offsets are `u32`: every pooled item comes from at least one byte of the body,
// so a body under 4 GiB can never overflow a span.
const _: () = assert!(MAX_REQUEST_BYTES < u32::MAX as usize);
