//! HTTP/1.1 for the bid path, without I/O.
//!
//! Exchanges POST OpenRTB bid requests over keep-alive connections, often pipelined, and
//! want an answer within a few milliseconds. This module turns bytes into requests and
//! decisions into response bytes; the engines (`ring` for io_uring, and a tokio engine)
//! only move bytes. The flow of one request, file by file:
//!
//! `request` (head, via `httparse`, and framing) → `chunked` / `gzip` via `body`
//! (de-chunk, bounded inflate) → `route` (`/bid/{partner}` or the default path) →
//! [`Service`] → `response` (head and body into caller memory, canned `status` bytes for
//! bodiless answers). [`Server`] in `serve` strings them together for the engines.
//!
//! Nothing here allocates per request: buffers are sized from [`HttpLimits`] when a
//! worker starts (see `tests/http_alloc.rs`).

mod body;
mod chunked;
mod error;
mod gzip;
mod limits;
mod ows;
mod request;
mod response;
mod route;
mod serve;
mod service;
mod status;

pub use body::BodyDecoder;
pub use error::HttpError;
pub use limits::{
    HttpLimits, LimitsError, CHUNKED_FRAMING_ALLOWANCE_BYTES, MAX_CHUNK_LINE_BYTES,
    MAX_HEADERS_CEILING,
};
pub use request::{parse_request, BodyFraming, ContentEncoding, Parsed, Request, Version};
pub use response::{
    max_response_bytes, write_response, ContentType, OutBuf, OutFull, ResponseBuf, ResponseHead,
};
pub use route::{Route, RouteConfigError, Router, MAX_PARTNER_NAME_BYTES};
pub use serve::{ConnState, HttpConfig, HttpConfigError, Server, Step};
pub use service::{BidCall, NoContent, Outcome, Service};
pub use status::{canned, ConnectionHeader, Status, CONTINUE, STATUS_COUNT};
