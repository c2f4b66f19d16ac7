//! One engine-neutral step of HTTP serving: bytes in, at most one response out.
//!
//! An engine owns sockets and buffers; it hands [`Server::serve_one`] the unconsumed input
//! of a connection and an output slice, and acts on the returned [`Step`]: read more,
//! drop consumed bytes and loop (pipelining), flush, or close. Everything between —
//! parsing, limits, routing, body decoding, calling the [`Service`], response encoding —
//! lives here once for both engines.

use std::sync::Arc;
use std::time::Instant;

use super::body::BodyDecoder;
use super::error::HttpError;
use super::gzip::Gzip;
use super::limits::{HttpLimits, LimitsError};
use super::request::{parse_request, Parsed, Request, Version};
use super::response::{max_response_bytes, write_response, OutBuf, ResponseBuf, ResponseHead};
use super::route::{Route, RouteConfigError, Router};
use super::service::{BidCall, Outcome, Service};
use super::status::{canned_for, ConnectionHeader, Status, CONTINUE};
use crate::openrtb::OpenRtbVersion;

/// HTTP settings shared by both engines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Request size limits.
    pub limits: HttpLimits,
    /// Bid path for exchanges not using `/bid/{partner}`.
    pub default_bid_path: String,
    /// Largest bid body the service may write; sizes each worker's response buffer.
    pub max_response_body_bytes: usize,
    /// Bodies at least this long are gzipped for clients that accept it; smaller ones
    /// cost more CPU to compress than the bytes they save.
    pub gzip_min_response_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            limits: HttpLimits::default(),
            default_bid_path: "/openrtb2/bid".to_owned(),
            max_response_body_bytes: 64 * 1024,
            gzip_min_response_bytes: 1024,
        }
    }
}

/// Configuration the HTTP layer cannot run with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HttpConfigError {
    /// See [`LimitsError`].
    #[error(transparent)]
    Limits(#[from] LimitsError),
    /// See [`RouteConfigError`].
    #[error(transparent)]
    Route(#[from] RouteConfigError),
    /// `max_response_body_bytes` is zero.
    #[error("max_response_body_bytes must be greater than zero")]
    ZeroResponseBody,
}

/// Per-connection HTTP state the engine keeps beside its socket state.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConnState {
    /// `100 Continue` was sent for the request in progress.
    continue_sent: bool,
    /// The engine wants this connection closed after the next response (e.g. draining
    /// for shutdown); responses then carry `connection: close`.
    pub close_after_response: bool,
    /// The client's address, set by the engine at accept: partners without a bid path
    /// of their own are recognised by it.
    pub peer: Option<std::net::IpAddr>,
}

/// What the engine does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// No complete request at the front of the input: keep it and read more. An interim
    /// `100 Continue` may have been written to the output; flush it.
    Incomplete,
    /// One request was answered into the output. Drop `consumed` input bytes; if `close`,
    /// flush and close without reading further.
    Answered {
        /// Input bytes this request spanned.
        consumed: usize,
        /// Status of the response written.
        status: Status,
        /// The connection must close after this response.
        close: bool,
    },
    /// The output lacks room for a worst-case response; flush it and call again with the
    /// same input. Nothing was consumed or written.
    OutFull,
}

/// One worker's HTTP serving state: the service and buffers allocated once at start.
pub struct Server<S> {
    service: Arc<S>,
    limits: HttpLimits,
    router: Router,
    decoder: BodyDecoder,
    response: ResponseBuf,
    gzip: Gzip,
    gzip_min_response_bytes: usize,
    max_out_bytes: usize,
}

impl<S: Service> Server<S> {
    /// Validates `config` and allocates this worker's buffers (roughly
    /// `max_body_bytes + max_decompressed_body_bytes + 2 × max_response_body_bytes`).
    pub fn new(service: Arc<S>, config: &HttpConfig) -> Result<Self, HttpConfigError> {
        config.limits.validate()?;
        if config.max_response_body_bytes == 0 {
            return Err(HttpConfigError::ZeroResponseBody);
        }
        let router = Router::new(&config.default_bid_path)?;
        Ok(Server {
            service,
            limits: config.limits.clone(),
            router,
            decoder: BodyDecoder::new(&config.limits),
            response: ResponseBuf::with_max_body_bytes(config.max_response_body_bytes),
            gzip: Gzip::new(config.max_response_body_bytes),
            gzip_min_response_bytes: config.gzip_min_response_bytes,
            max_out_bytes: max_response_bytes(config.max_response_body_bytes),
        })
    }

    /// The output room [`serve_one`](Self::serve_one) needs before it answers a request;
    /// engines make each connection's output buffer at least this large.
    pub fn min_out_bytes(&self) -> usize {
        self.max_out_bytes
    }

    /// The limits requests are held to; engines bound their input buffers with
    /// [`HttpLimits::max_request_bytes`].
    pub fn limits(&self) -> &HttpLimits {
        &self.limits
    }

    /// Serves at most one request from the front of `input`, writing into `out`.
    ///
    /// `arrived` is when the engine received the bytes that were read last. On any
    /// [`HttpError`] the matching status is written with `connection: close` and the whole
    /// input is consumed.
    pub fn serve_one(
        &mut self,
        conn: &mut ConnState,
        input: &[u8],
        arrived: Instant,
        out: &mut OutBuf<'_>,
    ) -> Step {
        if out.remaining() < self.max_out_bytes {
            return Step::OutFull;
        }
        let req = match parse_request(input, &self.limits) {
            Ok(Parsed::Complete(req)) => req,
            Ok(Parsed::Incomplete { expect_continue }) => {
                if expect_continue && !conn.continue_sent {
                    conn.continue_sent = true;
                    // Cannot fail: `remaining` covers a worst-case response.
                    let _ = out.put_all(&[CONTINUE]);
                }
                return Step::Incomplete;
            }
            Err(e) => return refuse(e, input.len(), out),
        };
        conn.continue_sent = false;
        let close = conn.close_after_response || !req.keep_alive;
        let connection = match (close, req.version) {
            (true, _) => ConnectionHeader::Close,
            (false, Version::Http10) => ConnectionHeader::KeepAlive,
            (false, Version::Http11) => ConnectionHeader::Omit,
        };
        let status = match self.answer(input, &req, arrived, conn.peer, connection, out) {
            Ok(status) => status,
            Err(e) => return refuse(e, input.len(), out),
        };
        Step::Answered {
            consumed: req.consumed,
            status,
            close,
        }
    }

    /// Routes, decodes and calls the service; writes the response.
    fn answer(
        &mut self,
        input: &[u8],
        req: &Request<'_>,
        arrived: Instant,
        peer: Option<std::net::IpAddr>,
        connection: ConnectionHeader,
        out: &mut OutBuf<'_>,
    ) -> Result<Status, HttpError> {
        let partner = match self.router.route(req.path) {
            Route::Bid { partner } => partner,
            Route::NotFound => {
                // A route miss names no partner.
                let version = OpenRtbVersion::default();
                return Ok(put_canned(Status::NotFound, connection, version, out));
            }
        };
        let body = self.decoder.decode(input, req)?;
        let call = BidCall {
            partner,
            peer,
            openrtb_version: req.openrtb_version,
            prefers_flatbuffers: req.prefers_flatbuffers,
            body,
            arrived,
        };
        self.response.clear();
        let status = match self.service.handle(&call, &mut self.response) {
            Outcome::Bid if !self.response.overflowed() => Status::Ok,
            Outcome::Bid | Outcome::NoBid => Status::NoContent,
            Outcome::Reject(Status::Ok) => {
                debug_assert!(false, "a service rejected with 200");
                Status::InternalServerError
            }
            Outcome::Reject(status) => status,
        };
        // The service set the partner's version if it recognised one; every answer from
        // here on states it, a no-bid or a refusal as much as a bid.
        let version = self.response.openrtb_version();
        if status != Status::Ok {
            return Ok(put_canned(status, connection, version, out));
        }
        let plain = self.response.body();
        let gzip_wanted = req.accepts_gzip && self.response.gzip_allowed();
        let gzipped = if gzip_wanted && plain.len() >= self.gzip_min_response_bytes {
            self.gzip.compress(plain).filter(|z| z.len() < plain.len())
        } else {
            None
        };
        let head = ResponseHead {
            status,
            content_type: self.response.content_type(),
            gzip: gzipped.is_some(),
            connection,
            openrtb_version: version,
        };
        // Cannot fail: `remaining` covered a worst-case response on entry, and a gzipped
        // body is only used when shorter than the plain one.
        let written = write_response(out, &head, gzipped.unwrap_or(plain));
        debug_assert!(written.is_ok());
        Ok(status)
    }
}

fn put_canned(
    status: Status,
    connection: ConnectionHeader,
    version: OpenRtbVersion,
    out: &mut OutBuf<'_>,
) -> Status {
    // Cannot fail: canned responses are far smaller than the room checked on entry.
    let written = out.put_all(&[canned_for(status, connection, version)]);
    debug_assert!(written.is_ok());
    status
}

/// Answers an HTTP-level error. No partner is known yet (the request never reached the
/// service), so the answer states the default OpenRTB version.
fn refuse(e: HttpError, input_len: usize, out: &mut OutBuf<'_>) -> Step {
    let version = OpenRtbVersion::default();
    let status = put_canned(e.status(), ConnectionHeader::Close, version, out);
    Step::Answered {
        consumed: input_len,
        status,
        close: true,
    }
}
