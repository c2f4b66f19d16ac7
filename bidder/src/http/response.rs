//! Writing responses into memory the caller owns.
//!
//! The io_uring engine hands us a slice of a registered buffer, the tokio engine a slice
//! of its write buffer; either way nothing here allocates. A response that does not fit
//! is not written at all, so the caller can flush and retry.

use std::io;

use super::status::{ConnectionHeader, Status};
use crate::openrtb::OpenRtbVersion;

/// Room for the head of a response with a body: status line and the handful of headers
/// we write, with a 20-digit length. Checked by a test.
const MAX_RESPONSE_HEAD_BYTES: usize = 256;

/// `out` had no room for the whole response; nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutFull;

/// A cursor over caller-owned output memory, e.g. a registered (fixed) buffer.
#[derive(Debug)]
pub struct OutBuf<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> OutBuf<'a> {
    /// Writes start at `buf[0]`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        OutBuf { buf, len: 0 }
    }

    /// Bytes written so far: the part of the buffer to send.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Nothing written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room left, in bytes.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.len
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Appends all of `parts`, or nothing if they do not fit together.
    pub fn put_all(&mut self, parts: &[&[u8]]) -> Result<(), OutFull> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total > self.remaining() {
            return Err(OutFull);
        }
        for p in parts {
            self.buf[self.len..self.len + p.len()].copy_from_slice(p);
            self.len += p.len();
        }
        Ok(())
    }
}

/// Media type of a response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    /// OpenRTB JSON.
    Json,
    /// The FlatBuffers bid encoding.
    FlatBuffers,
}

impl ContentType {
    const fn header(self) -> &'static [u8] {
        match self {
            ContentType::Json => b"content-type: application/json\r\n",
            ContentType::FlatBuffers => b"content-type: application/x-flatbuffers\r\n",
        }
    }
}

/// Where a [`Service`](super::Service) writes a bid body. Its capacity is fixed when the
/// worker starts; writing past it fails (and marks the buffer overflowed) instead of
/// growing, so a runaway encoder cannot allocate on the hot path.
#[derive(Debug)]
pub struct ResponseBuf {
    body: Vec<u8>,
    content_type: ContentType,
    overflowed: bool,
    gzip_allowed: bool,
    openrtb_version: OpenRtbVersion,
}

impl ResponseBuf {
    /// A buffer that holds at most `max_body_bytes`.
    pub fn with_max_body_bytes(max_body_bytes: usize) -> Self {
        ResponseBuf {
            body: Vec::with_capacity(max_body_bytes),
            content_type: ContentType::Json,
            overflowed: false,
            gzip_allowed: true,
            openrtb_version: OpenRtbVersion::default(),
        }
    }

    /// Empties the buffer and resets the content type to JSON, gzip to allowed and the
    /// OpenRTB version to the default; called before each request, so a partner's
    /// settings never leak into the next request on the worker.
    pub fn clear(&mut self) {
        self.body.clear();
        self.content_type = ContentType::Json;
        self.overflowed = false;
        self.gzip_allowed = true;
        self.openrtb_version = OpenRtbVersion::default();
    }

    /// Whether the body may be gzipped for a client that accepts it (the service
    /// turns this off for partners not configured for gzip).
    pub fn set_gzip_allowed(&mut self, allowed: bool) {
        self.gzip_allowed = allowed;
    }

    /// See [`ResponseBuf::set_gzip_allowed`].
    pub fn gzip_allowed(&self) -> bool {
        self.gzip_allowed
    }

    /// The OpenRTB version the answer states in `x-openrtb-version`, whatever its status
    /// (bid, no-bid or refusal). The service sets the partner's version as soon as it
    /// recognises the partner; left at the default when it does not.
    pub fn set_openrtb_version(&mut self, version: OpenRtbVersion) {
        self.openrtb_version = version;
    }

    /// See [`ResponseBuf::set_openrtb_version`].
    pub fn openrtb_version(&self) -> OpenRtbVersion {
        self.openrtb_version
    }

    /// Bytes the body can still take.
    pub fn room(&self) -> usize {
        self.body.capacity() - self.body.len()
    }

    /// Appends `bytes`, or fails without writing if they do not fit.
    pub fn extend(&mut self, bytes: &[u8]) -> Result<(), OutFull> {
        if bytes.len() > self.room() {
            self.overflowed = true;
            return Err(OutFull);
        }
        self.body.extend_from_slice(bytes);
        Ok(())
    }

    /// Sets the media type of the body.
    pub fn set_content_type(&mut self, content_type: ContentType) {
        self.content_type = content_type;
    }

    /// The media type of the body.
    pub fn content_type(&self) -> ContentType {
        self.content_type
    }

    /// The body written so far.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// A write did not fit since the last [`clear`](Self::clear); the body is incomplete.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }
}

impl io::Write for ResponseBuf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.extend(buf)
            .map(|()| buf.len())
            .map_err(|OutFull| io::Error::from(io::ErrorKind::WriteZero))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The head fields of a response with a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead {
    /// Status line to send.
    pub status: Status,
    /// `content-type` of the body.
    pub content_type: ContentType,
    /// Whether the body is gzip-encoded (`content-encoding: gzip`).
    pub gzip: bool,
    /// How the `connection` header is written.
    pub connection: ConnectionHeader,
    /// The version `x-openrtb-version` states: the partner's.
    pub openrtb_version: OpenRtbVersion,
}

/// Writes a full response (head and `body`) into `out`, or nothing if it does not fit.
/// Headers: status line, content-type, content-length, optional content-encoding and
/// connection, `x-openrtb-version` with the head's version.
pub fn write_response(
    out: &mut OutBuf<'_>,
    head: &ResponseHead,
    body: &[u8],
) -> Result<(), OutFull> {
    let mut digits = [0u8; 20];
    let length = decimal(body.len(), &mut digits);
    let encoding: &[u8] = if head.gzip {
        b"content-encoding: gzip\r\n"
    } else {
        b""
    };
    let connection: &[u8] = match head.connection {
        ConnectionHeader::Omit => b"",
        ConnectionHeader::KeepAlive => b"connection: keep-alive\r\n",
        ConnectionHeader::Close => b"connection: close\r\n",
    };
    out.put_all(&[
        head.status.status_line().as_bytes(),
        head.content_type.header(),
        b"content-length: ",
        length,
        b"\r\n",
        encoding,
        connection,
        b"x-openrtb-version: ",
        head.openrtb_version.header_value().as_bytes(),
        b"\r\n\r\n",
        body,
    ])
}

/// The largest response [`write_response`] can produce for a body of `body_bytes`;
/// engines size their output buffers with it.
pub const fn max_response_bytes(body_bytes: usize) -> usize {
    MAX_RESPONSE_HEAD_BYTES + body_bytes
}

/// Formats `n` in decimal into the end of `buf`, returning the digits.
fn decimal(mut n: usize, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_every_header_we_promise() {
        let mut mem = [0u8; 512];
        let mut out = OutBuf::new(&mut mem);
        let head = ResponseHead {
            status: Status::Ok,
            content_type: ContentType::Json,
            gzip: true,
            connection: ConnectionHeader::Close,
            openrtb_version: OpenRtbVersion::V2_6,
        };
        write_response(&mut out, &head, b"{\"id\":1}").unwrap();
        let text = std::str::from_utf8(out.as_bytes()).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 8\r\n\
             content-encoding: gzip\r\nconnection: close\r\nx-openrtb-version: 2.6\r\n\r\n{\"id\":1}"
        );
    }

    #[test]
    fn the_version_header_states_the_heads_version() {
        for (version, line) in [
            (OpenRtbVersion::V2_5, "x-openrtb-version: 2.5\r\n\r\n"),
            (OpenRtbVersion::V2_6, "x-openrtb-version: 2.6\r\n\r\n"),
        ] {
            let mut mem = [0u8; 512];
            let mut out = OutBuf::new(&mut mem);
            let head = ResponseHead {
                status: Status::Ok,
                content_type: ContentType::FlatBuffers,
                gzip: false,
                connection: ConnectionHeader::Omit,
                openrtb_version: version,
            };
            write_response(&mut out, &head, b"fb").unwrap();
            let text = std::str::from_utf8(out.as_bytes()).unwrap();
            assert_eq!(
                text,
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/x-flatbuffers\r\n\
                     content-length: 2\r\n{line}fb"
                )
            );
        }
    }

    #[test]
    fn a_response_that_does_not_fit_writes_nothing() {
        let mut mem = [0u8; 64];
        let mut out = OutBuf::new(&mut mem);
        out.put_all(&[b"abc"]).unwrap();
        let head = ResponseHead {
            status: Status::Ok,
            content_type: ContentType::FlatBuffers,
            gzip: false,
            connection: ConnectionHeader::Omit,
            openrtb_version: OpenRtbVersion::default(),
        };
        assert_eq!(write_response(&mut out, &head, &[0; 32]), Err(OutFull));
        assert_eq!(out.as_bytes(), b"abc");
    }

    #[test]
    fn the_largest_head_fits_the_head_allowance() {
        let body = [];
        let mut mem = [0u8; MAX_RESPONSE_HEAD_BYTES];
        let mut out = OutBuf::new(&mut mem);
        let head = ResponseHead {
            status: Status::HeaderFieldsTooLarge,
            content_type: ContentType::FlatBuffers,
            gzip: true,
            connection: ConnectionHeader::KeepAlive,
            openrtb_version: OpenRtbVersion::V2_5,
        };
        let mut digits = [0u8; 20];
        assert_eq!(decimal(usize::MAX, &mut digits).len(), 20);
        write_response(&mut out, &head, &body).unwrap();
        assert!(out.len() + 19 <= MAX_RESPONSE_HEAD_BYTES);
    }

    #[test]
    fn response_buf_refuses_to_grow() {
        let mut buf = ResponseBuf::with_max_body_bytes(4);
        buf.extend(b"abcd").unwrap();
        assert_eq!(buf.extend(b"e"), Err(OutFull));
        assert!(buf.overflowed());
        assert_eq!(buf.body(), b"abcd");
        buf.clear();
        assert!(!buf.overflowed());
        assert!(buf.body().is_empty());
    }

    #[test]
    fn clear_resets_the_openrtb_version_to_the_default() {
        let mut buf = ResponseBuf::with_max_body_bytes(4);
        assert_eq!(buf.openrtb_version(), OpenRtbVersion::V2_6);
        buf.set_openrtb_version(OpenRtbVersion::V2_5);
        assert_eq!(buf.openrtb_version(), OpenRtbVersion::V2_5);
        buf.clear();
        assert_eq!(buf.openrtb_version(), OpenRtbVersion::V2_6);
    }
}
