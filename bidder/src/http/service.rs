//! The seam between an engine and the bidder's brain.
//!
//! Both engines (io_uring and tokio) call the same [`Service`] through
//! [`Server`](super::Server); the service never sees sockets, rings or HTTP framing.

use std::time::Instant;

use super::response::ResponseBuf;
use super::status::Status;

/// One bid request as the service sees it: routed, de-chunked and decompressed.
#[derive(Debug, Clone, Copy)]
pub struct BidCall<'a> {
    /// Partner named by `/bid/{partner}`; `None` on the default path.
    pub partner: Option<&'a str>,
    /// The client's address, when the engine knows it.
    pub peer: Option<std::net::IpAddr>,
    /// `x-openrtb-version` as sent.
    pub openrtb_version: Option<&'a str>,
    /// The client's `Accept` prefers the FlatBuffers bid response.
    pub prefers_flatbuffers: bool,
    /// The request body (OpenRTB JSON), ready to parse.
    pub body: &'a [u8],
    /// When the engine received the bytes that completed this request: the start of the
    /// deadline budget (`tmax`).
    pub arrived: Instant,
}

/// What the service decided; the HTTP layer turns it into a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A bid: the body written into the [`ResponseBuf`] is sent with `200 OK`. A bid whose
    /// body overflowed the buffer is sent as `204` instead (fail closed).
    Bid,
    /// No bid: `204 No Content`.
    NoBid,
    /// Refused with a bodiless status, e.g. 400 for an unreadable OpenRTB body or 503 when
    /// overloaded. The connection stays open unless the client asked otherwise.
    Reject(Status),
}

/// The request handler both engines drive.
///
/// Called on a worker thread with no locks held; it must answer quickly and never block
/// (invariant 4), and must not allocate without bound. It is shared by all workers, hence
/// `Send + Sync`.
pub trait Service: Send + Sync {
    /// Decides on `call`, writing any bid body into `out` (cleared beforehand).
    fn handle(&self, call: &BidCall<'_>, out: &mut ResponseBuf) -> Outcome;
}

/// Answers every request `204 No Content` without reading its body or deciding: what
/// an engine and the HTTP framing cost alone (`bidder serve-io`, the I/O-only rows of
/// `cargo xtask bench engines`). It bids nothing.
pub struct NoContent;

impl Service for NoContent {
    fn handle(&self, _call: &BidCall<'_>, _out: &mut ResponseBuf) -> Outcome {
        Outcome::NoBid
    }
}
