//! OpenRTB 2.6 bid requests: a borrowed, flat model of what the decision core reads,
//! and the simd-json parser that fills it without allocating once warm.
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

mod error;
mod extract;
mod model;
mod parser;
pub(crate) mod scratch;
mod tape;
#[cfg(test)]
mod tests;
mod version;

pub use error::ParseError;
pub use model::*;
pub use parser::{Parsed, Parser};
pub use version::OpenRtbVersion;

/// Largest body the parser accepts, in bytes. Real banner requests are 1–5 KiB and
/// multi-imp video requests rarely pass 50 KiB; anything larger is refused before
/// parsing with [`ParseError::TooLarge`].
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;

/// Deepest nesting of JSON objects and arrays, in levels (the top-level object is
/// level 1). OpenRTB itself needs 5; the rest is headroom for `ext`. Deeper bodies
/// fail with [`ParseError::TooDeep`], which also bounds the parser's stack.
pub const MAX_DEPTH: usize = 32;

/// Most impressions in one request; more fail with [`ParseError::TooManyImps`]
/// (we do not pick a subset, since `allimps` may require all of them).
pub const MAX_IMPS: usize = 64;

/// Most sizes kept per banner (`banner.format`); further sizes are dropped and the
/// request is flagged `truncated`.
pub const MAX_FORMATS_PER_BANNER: usize = 32;

/// Most deals kept per impression (`pmp.deals`); further deals are dropped (we just
/// cannot bid on them) and the request is flagged `truncated`.
pub const MAX_DEALS_PER_IMP: usize = 64;

/// Most items in any string or integer list (`bcat`, `badv`, `battr`, `wseat`, `cat`,
/// `mimes`, …). A longer list fails the request with [`ParseError::ListTooLong`]:
/// cutting a block list could let a blocked advertiser through.
pub const MAX_LIST_ITEMS: usize = 1024;

/// Most nodes in a supply chain; a longer chain fails the request with
/// [`ParseError::ListTooLong`], since a cut chain would misstate who is selling.
pub const MAX_SCHAIN_NODES: usize = 32;

/// Most extended-id providers kept per user (`user.eids`); further ones are dropped
/// and the request is flagged `truncated`.
pub const MAX_EIDS: usize = 64;

// Pool offsets are `u32`: every pooled item comes from at least one byte of the body,
// so a body under 4 GiB can never overflow a span.
const _: () = assert!(MAX_REQUEST_BYTES < u32::MAX as usize);
