//! Size limits for one HTTP request, and why each exists.
//!
//! Every byte a peer can make us hold or produce is bounded here. The engines size their
//! per-connection input buffers from [`HttpLimits::max_request_bytes`], so these numbers
//! are also the memory budget of a connection that is halfway through a request.

use thiserror::Error;

pub use crate::limits::MAX_HEADERS_CEILING;

/// Framing bytes a chunked body may spend on top of its data (chunk-size lines,
/// extensions, CRLFs). Legitimate senders use few, large chunks; this stops a peer from
/// making us buffer megabytes of framing around a small body.
pub const CHUNKED_FRAMING_ALLOWANCE_BYTES: usize = 16 * 1024;

pub use crate::limits::MAX_CHUNK_LINE_BYTES;

/// Limits applied while parsing and decoding one request.
///
/// Behaviour at each limit: a value exactly at the limit is accepted, one byte (or one
/// header) over is rejected with the status named on the field. Rejections close the
/// connection, because the framing of whatever follows can no longer be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// Request line plus header fields plus the blank line. Over it: 431.
    pub max_header_bytes: usize,
    /// Number of header fields. Over it: 431.
    pub max_headers: usize,
    /// Body bytes as sent (after de-chunking, before decompression). Over it: 413,
    /// answered as soon as the `Content-Length` or the chunk sizes reveal it.
    pub max_body_bytes: usize,
    /// Body bytes after `Content-Encoding: gzip` is undone. Over it: 413, answered as soon
    /// as the decompressor has produced one byte too many, so a gzip bomb costs at most
    /// this much memory and the CPU to produce it.
    pub max_decompressed_body_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_header_bytes: 8 * 1024,
            max_headers: 64,
            max_body_bytes: 256 * 1024,
            max_decompressed_body_bytes: 1024 * 1024,
        }
    }
}

/// A limit that cannot work; reported at start, never on the hot path.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LimitsError {
    /// A limit is zero, so no request could ever pass.
    #[error("http limit `{0}` must be greater than zero")]
    Zero(&'static str),
    /// `max_headers` is above what the parser can hold.
    #[error("http limit `max_headers` is {0}, above the ceiling of {MAX_HEADERS_CEILING}")]
    TooManyHeaders(usize),
}

impl HttpLimits {
    /// Checks that every limit is usable; call once when loading configuration.
    pub fn validate(&self) -> Result<(), LimitsError> {
        let fields = [
            ("max_header_bytes", self.max_header_bytes),
            ("max_headers", self.max_headers),
            ("max_body_bytes", self.max_body_bytes),
            (
                "max_decompressed_body_bytes",
                self.max_decompressed_body_bytes,
            ),
        ];
        if let Some((name, _)) = fields.iter().find(|(_, v)| *v == 0) {
            return Err(LimitsError::Zero(name));
        }
        if self.max_headers > MAX_HEADERS_CEILING {
            return Err(LimitsError::TooManyHeaders(self.max_headers));
        }
        Ok(())
    }

    /// The most bytes one request can occupy on the wire: head, body, chunk framing and
    /// trailers. An engine that buffers a partial request never needs more than this.
    pub fn max_request_bytes(&self) -> usize {
        self.max_header_bytes
            + self.max_body_bytes
            + CHUNKED_FRAMING_ALLOWANCE_BYTES
            + self.max_header_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(HttpLimits::default().validate(), Ok(()));
    }

    #[test]
    fn zero_and_oversized_limits_are_rejected() {
        let zero = HttpLimits {
            max_body_bytes: 0,
            ..HttpLimits::default()
        };
        assert_eq!(zero.validate(), Err(LimitsError::Zero("max_body_bytes")));
        let many = HttpLimits {
            max_headers: MAX_HEADERS_CEILING + 1,
            ..HttpLimits::default()
        };
        assert_eq!(
            many.validate(),
            Err(LimitsError::TooManyHeaders(MAX_HEADERS_CEILING + 1))
        );
    }
}
