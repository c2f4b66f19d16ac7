//! Turning a parsed request's body bytes into what the service reads: de-chunked and
//! inflated, into buffers allocated once per worker.

use super::chunked;
use super::error::HttpError;
use super::gzip::Gunzip;
use super::limits::HttpLimits;
use super::request::{BodyFraming, ContentEncoding, Request};

/// Per-worker body decoding state. Its buffers are sized from the limits at creation and
/// never grow, so decoding allocates nothing per request.
pub struct BodyDecoder {
    limits: HttpLimits,
    dechunked: Vec<u8>,
    inflated: Vec<u8>,
    gunzip: Gunzip,
}

impl BodyDecoder {
    /// Allocates `max_body_bytes + max_decompressed_body_bytes` (plus one byte) up front.
    pub fn new(limits: &HttpLimits) -> Self {
        BodyDecoder {
            limits: limits.clone(),
            dechunked: Vec::with_capacity(limits.max_body_bytes),
            inflated: Vec::with_capacity(limits.max_decompressed_body_bytes + 1),
            gunzip: Gunzip::new(),
        }
    }

    /// The body of `req`, which was parsed from `buf`: borrowed from `buf` when it needs
    /// no work, otherwise from this decoder's buffers (valid until the next call).
    pub fn decode<'b>(
        &'b mut self,
        buf: &'b [u8],
        req: &Request<'_>,
    ) -> Result<&'b [u8], HttpError> {
        let raw: &[u8] = match &req.framing {
            BodyFraming::Length(range) => &buf[range.clone()],
            BodyFraming::Chunked(range) => {
                self.dechunked.clear();
                chunked::decode_into(&buf[range.clone()], &self.limits, &mut self.dechunked)?;
                &self.dechunked
            }
        };
        match req.content_encoding {
            ContentEncoding::Identity => Ok(raw),
            ContentEncoding::Gzip => {
                let max = self.limits.max_decompressed_body_bytes;
                self.gunzip.inflate(raw, &mut self.inflated, max)?;
                Ok(&self.inflated)
            }
        }
    }
}
