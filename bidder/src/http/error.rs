//! Why a request was refused, and the status each reason is answered with.

use thiserror::Error;

use super::status::Status;

/// A request the HTTP layer refuses. Every variant maps to one status through
/// [`HttpError::status`]; after any of them the connection is closed, because the
/// framing of the bytes that follow can no longer be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HttpError {
    /// The request line, a header, the chunk framing or the gzip stream is not valid.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// A method other than `POST`.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// `Content-Length` or the chunk sizes add up to more than `max_body_bytes`.
    #[error("body over max_body_bytes")]
    BodyTooLarge,
    /// The gzip body inflates to more than `max_decompressed_body_bytes`.
    #[error("decompressed body over max_decompressed_body_bytes")]
    DecompressedBodyTooLarge,
    /// The header section (or the chunked trailer section) is over `max_header_bytes`.
    #[error("header section over max_header_bytes")]
    HeadersTooLarge,
    /// More header fields than `max_headers`.
    #[error("more header fields than max_headers")]
    TooManyHeaders,
    /// A `Transfer-Encoding` other than `chunked`.
    #[error("unsupported transfer-encoding")]
    UnsupportedTransferEncoding,
    /// A `Content-Encoding` other than `gzip` or `identity`.
    #[error("unsupported content-encoding")]
    UnsupportedContentEncoding,
}

impl HttpError {
    /// The status this refusal is answered with.
    pub const fn status(self) -> Status {
        match self {
            HttpError::Malformed(_) => Status::BadRequest,
            HttpError::MethodNotAllowed => Status::MethodNotAllowed,
            HttpError::BodyTooLarge | HttpError::DecompressedBodyTooLarge => {
                Status::PayloadTooLarge
            }
            HttpError::HeadersTooLarge | HttpError::TooManyHeaders => Status::HeaderFieldsTooLarge,
            HttpError::UnsupportedTransferEncoding => Status::NotImplemented,
            HttpError::UnsupportedContentEncoding => Status::UnsupportedMediaType,
        }
    }
}
