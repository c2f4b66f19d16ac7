//! Parsing one request from the front of a byte buffer.
//!
//! Sans-I/O: the caller owns the bytes (a provided recv buffer or a connection's
//! accumulation buffer) and calls [`parse_request`] again when more arrive. A complete
//! request reports how many bytes it spans, so pipelined requests are parsed one after
//! another from the same buffer, in order.

use std::ops::Range;

use super::chunked;
use super::error::HttpError;
use super::limits::{HttpLimits, MAX_HEADERS_CEILING};
use super::ows::trim;

/// Protocol version of the request; decides the keep-alive default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: closes after each response unless it asked for keep-alive.
    Http10,
    /// HTTP/1.1: keep-alive unless it asked to close.
    Http11,
}

/// How the body bytes were encoded by the sender (`Content-Encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentEncoding {
    /// As is.
    Identity,
    /// gzip; inflated with a bound before the service sees it.
    Gzip,
}

/// Where the body is in the parsed buffer, and how it is framed. Ranges index the buffer
/// given to [`parse_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyFraming {
    /// `Content-Length` (or no body at all, as an empty range): the bytes are the body.
    Length(Range<usize>),
    /// `Transfer-Encoding: chunked`: the raw chunked bytes, trailers included, still to be
    /// de-chunked.
    Chunked(Range<usize>),
}

/// One complete request, borrowing from the parsed buffer. Only the fields the bid path
/// acts on are kept; other headers are validated by `httparse` and ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// Always `POST` once parsed: other methods are refused with 405.
    pub method: &'a str,
    /// The request target as sent, query string included.
    pub path: &'a str,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// Whether the client lets us keep the connection after answering.
    pub keep_alive: bool,
    /// `Content-Encoding` of the body.
    pub content_encoding: ContentEncoding,
    /// Whether the client takes a gzip response (`Accept-Encoding: gzip`, q > 0).
    pub accepts_gzip: bool,
    /// Whether the client prefers the FlatBuffers bid response: its `Accept` names
    /// `application/x-flatbuffers` with a quality above zero and `application/json` with
    /// none higher (wildcards do not count: FlatBuffers is sent only when named).
    pub prefers_flatbuffers: bool,
    /// `x-openrtb-version`, if sent.
    pub openrtb_version: Option<&'a str>,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
    /// The body's bytes and framing.
    pub framing: BodyFraming,
    /// Bytes of the buffer this request spans; the next pipelined request starts here.
    pub consumed: usize,
}

/// Result of one parse attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// More bytes are needed. `expect_continue` is true once the head is complete and the
    /// client waits for `100 Continue` before sending the body.
    Incomplete {
        /// The head asked for `100 Continue`.
        expect_continue: bool,
    },
    /// A whole request is in the buffer.
    Complete(Request<'a>),
}

/// What the header fields said, before framing is decided.
struct Fields<'a> {
    content_length: Option<u64>,
    chunked: bool,
    transfer_encoding_seen: bool,
    content_encoding: ContentEncoding,
    accepts_gzip: bool,
    /// Highest `Accept` quality (thousandths) of FlatBuffers and of JSON; `None` when
    /// not named.
    flatbuffers_quality: Option<u16>,
    json_quality: Option<u16>,
    close: bool,
    keep_alive: bool,
    openrtb_version: Option<&'a str>,
    expect_continue: bool,
}

/// Parses the request at the front of `buf`.
///
/// Limits are checked as early as the bytes allow: an over-long head is refused before
/// its end arrives, a `Content-Length` over the limit before the body arrives.
pub fn parse_request<'a>(buf: &'a [u8], limits: &HttpLimits) -> Result<Parsed<'a>, HttpError> {
    debug_assert!(limits.max_headers <= MAX_HEADERS_CEILING);
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS_CEILING];
    let max_headers = limits.max_headers.min(MAX_HEADERS_CEILING);
    let mut head = httparse::Request::new(&mut storage[..max_headers]);
    let head_len = match head.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_header_bytes {
                return Err(HttpError::HeadersTooLarge);
            }
            return Ok(Parsed::Incomplete {
                expect_continue: false,
            });
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
        Err(e) => return Err(HttpError::Malformed(httparse_reason(e))),
    };
    if head_len > limits.max_header_bytes {
        return Err(HttpError::HeadersTooLarge);
    }
    // httparse accepts a bare LF as a line end (RFC 9112 §2.2 allows it); a proxy in
    // front may not, and two parsers that frame one stream differently are how
    // requests are smuggled. CRLF only.
    if has_bare_lf(&buf[..head_len]) {
        return Err(HttpError::Malformed("bare LF line ending; use CRLF"));
    }
    let (Some(method), Some(path), Some(minor)) = (head.method, head.path, head.version) else {
        return Err(HttpError::Malformed("incomplete request line"));
    };
    if method != "POST" {
        return Err(HttpError::MethodNotAllowed);
    }
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    let fields = read_fields(head.headers)?;
    let keep_alive = match version {
        Version::Http11 => !fields.close,
        Version::Http10 => fields.keep_alive && !fields.close,
    };
    let Some((framing, consumed)) = frame_body(buf, head_len, version, &fields, limits)? else {
        return Ok(Parsed::Incomplete {
            expect_continue: fields.expect_continue,
        });
    };
    Ok(Parsed::Complete(Request {
        method,
        path,
        version,
        keep_alive,
        content_encoding: fields.content_encoding,
        accepts_gzip: fields.accepts_gzip,
        prefers_flatbuffers: match (fields.flatbuffers_quality, fields.json_quality) {
            (Some(fb), json) => fb > 0 && json.is_none_or(|json| json <= fb),
            (None, _) => false,
        },
        openrtb_version: fields.openrtb_version,
        expect_continue: fields.expect_continue,
        framing,
        consumed,
    }))
}

/// Decides where the body is; `None` while it has not fully arrived.
fn frame_body(
    buf: &[u8],
    head_len: usize,
    version: Version,
    fields: &Fields<'_>,
    limits: &HttpLimits,
) -> Result<Option<(BodyFraming, usize)>, HttpError> {
    if fields.transfer_encoding_seen {
        // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0, or alongside Content-Length, is
        // faulty framing and a request-smuggling vector; refuse rather than guess.
        if version == Version::Http10 || fields.content_length.is_some() {
            return Err(HttpError::Malformed("ambiguous message framing"));
        }
        if !fields.chunked {
            return Err(HttpError::UnsupportedTransferEncoding);
        }
        let body = &buf[head_len..];
        return Ok(chunked::scan(body, limits)?.map(|len| {
            let end = head_len + len;
            (BodyFraming::Chunked(head_len..end), end)
        }));
    }
    let length = fields.content_length.unwrap_or(0);
    if length > limits.max_body_bytes as u64 {
        return Err(HttpError::BodyTooLarge);
    }
    // Cannot truncate: bounded by max_body_bytes, a usize, just above.
    let end = head_len + length as usize;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some((BodyFraming::Length(head_len..end), end)))
}

/// Whether a line of `head` ends in LF without CR before it.
fn has_bare_lf(head: &[u8]) -> bool {
    head.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
}

/// Reads the header fields the bid path acts on.
fn read_fields<'a>(headers: &[httparse::Header<'a>]) -> Result<Fields<'a>, HttpError> {
    let mut f = Fields {
        content_length: None,
        chunked: false,
        transfer_encoding_seen: false,
        content_encoding: ContentEncoding::Identity,
        accepts_gzip: false,
        flatbuffers_quality: None,
        json_quality: None,
        close: false,
        keep_alive: false,
        openrtb_version: None,
        expect_continue: false,
    };
    let mut hosts = 0;
    for h in headers {
        let name = h.name;
        let value = trim(h.value);
        if name.eq_ignore_ascii_case("host") {
            // RFC 9112 §3.2: more than one Host is answered 400.
            hosts += 1;
            if hosts > 1 {
                return Err(HttpError::Malformed("repeated host"));
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            let n = parse_content_length(value)?;
            if f.content_length.is_some_and(|old| old != n) {
                return Err(HttpError::Malformed("conflicting content-length"));
            }
            f.content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if f.transfer_encoding_seen {
                return Err(HttpError::Malformed("repeated transfer-encoding"));
            }
            f.transfer_encoding_seen = true;
            f.chunked = value.eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case("content-encoding") {
            f.content_encoding = parse_content_encoding(value)?;
        } else if name.eq_ignore_ascii_case("accept-encoding") {
            f.accepts_gzip |= accepts_gzip(value);
        } else if name.eq_ignore_ascii_case("accept") {
            for item in value.split(|&b| b == b',') {
                let mut parts = item.split(|&b| b == b';').map(trim);
                let media = parts.next().unwrap_or_default();
                let slot = if media.eq_ignore_ascii_case(FLATBUFFERS_MEDIA_TYPE) {
                    &mut f.flatbuffers_quality
                } else if media.eq_ignore_ascii_case(b"application/json") {
                    &mut f.json_quality
                } else {
                    continue;
                };
                let q = parts.find_map(quality).unwrap_or(1_000);
                *slot = Some(slot.map_or(q, |old| old.max(q)));
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(|&b| b == b',').map(trim) {
                f.close |= token.eq_ignore_ascii_case(b"close");
                f.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("expect") {
            f.expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case("x-openrtb-version") {
            let v = std::str::from_utf8(value)
                .map_err(|_| HttpError::Malformed("x-openrtb-version is not utf-8"))?;
            f.openrtb_version = Some(v);
        }
    }
    Ok(f)
}

/// Digits only: no sign, no list, no whitespace inside. Values too large for `u64` are
/// saturated, since they are over any body limit anyway.
fn parse_content_length(value: &[u8]) -> Result<u64, HttpError> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(HttpError::Malformed("invalid content-length"));
    }
    Ok(value.iter().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

fn parse_content_encoding(value: &[u8]) -> Result<ContentEncoding, HttpError> {
    if value.eq_ignore_ascii_case(b"gzip") || value.eq_ignore_ascii_case(b"x-gzip") {
        Ok(ContentEncoding::Gzip)
    } else if value.eq_ignore_ascii_case(b"identity") || value.is_empty() {
        Ok(ContentEncoding::Identity)
    } else {
        Err(HttpError::UnsupportedContentEncoding)
    }
}

/// True if the `Accept-Encoding` list names gzip (or `*`) with a non-zero quality.
fn accepts_gzip(value: &[u8]) -> bool {
    value.split(|&b| b == b',').any(|item| {
        let mut parts = item.split(|&b| b == b';').map(trim);
        let coding = parts.next().unwrap_or_default();
        let named = coding.eq_ignore_ascii_case(b"gzip")
            || coding.eq_ignore_ascii_case(b"x-gzip")
            || coding == b"*";
        named && !parts.any(is_zero_quality)
    })
}

/// The media type the FlatBuffers bid response is sent as (and asked for in `Accept`).
pub const FLATBUFFERS_MEDIA_TYPE: &[u8] = b"application/x-flatbuffers";

/// A `q=` parameter's weight in thousandths (RFC 9110 §12.4.2: `0`–`1` with up to three
/// decimals); `None` for another parameter. A malformed weight counts as 0, so a
/// client that garbles it is not sent what it may not read.
fn quality(param: &[u8]) -> Option<u16> {
    let q = param
        .strip_prefix(b"q=")
        .or_else(|| param.strip_prefix(b"Q="))?;
    let (int, frac) = match q.iter().position(|&b| b == b'.') {
        Some(dot) => (&q[..dot], &q[dot + 1..]),
        None => (q, &[][..]),
    };
    let weight = match int {
        b"0" | b"1" if frac.len() <= 3 && frac.iter().all(u8::is_ascii_digit) => {
            let thousandths = frac
                .iter()
                .chain(std::iter::repeat(&b'0'))
                .take(3)
                .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
            u16::from(int == b"1") * 1_000 + thousandths
        }
        _ => 0,
    };
    Some(weight.min(1_000))
}

/// `q=0`, `q=0.`, `q=0.0`, `q=0.00`, `q=0.000` (RFC 9110 §12.4.2).
fn is_zero_quality(param: &[u8]) -> bool {
    let Some(q) = param
        .strip_prefix(b"q=")
        .or_else(|| param.strip_prefix(b"Q="))
    else {
        return false;
    };
    match q.split_first() {
        Some((b'0', rest)) => match rest.split_first() {
            None => true,
            Some((b'.', frac)) => frac.iter().all(|&d| d == b'0'),
            Some(_) => false,
        },
        _ => false,
    }
}

fn httparse_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token in request line",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "unsupported HTTP version",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Parsed<'_>, HttpError> {
        parse_request(raw.as_bytes(), &HttpLimits::default())
    }

    fn complete(raw: &str) -> Request<'_> {
        match parse(raw) {
            Ok(Parsed::Complete(r)) => r,
            other => panic!("expected a complete request, got {other:?}"),
        }
    }

    #[test]
    fn reads_the_fields_the_bid_path_uses() {
        let raw = "POST /bid/acme?x=1 HTTP/1.1\r\nHost: b\r\nContent-Length: 2\r\n\
                   Accept-Encoding: br, gzip;q=0.5\r\nx-openrtb-version: 2.6\r\n\r\n{}";
        let r = complete(raw);
        assert_eq!(r.path, "/bid/acme?x=1");
        assert_eq!(r.version, Version::Http11);
        assert!(r.keep_alive);
        assert!(r.accepts_gzip);
        assert_eq!(r.openrtb_version, Some("2.6"));
        assert_eq!(r.framing, BodyFraming::Length(raw.len() - 2..raw.len()));
        assert_eq!(r.consumed, raw.len());
    }

    #[test]
    fn keep_alive_defaults_follow_the_version() {
        let cases = [
            ("HTTP/1.1", "", true),
            ("HTTP/1.1", "Connection: close\r\n", false),
            ("HTTP/1.1", "Connection: Keep-Alive, Close\r\n", false),
            ("HTTP/1.0", "", false),
            ("HTTP/1.0", "Connection: keep-alive\r\n", true),
        ];
        for (version, header, expected) in cases {
            let raw = format!("POST / {version}\r\n{header}\r\n");
            assert_eq!(complete(&raw).keep_alive, expected, "{raw:?}");
        }
    }

    #[test]
    fn accept_names_flatbuffers_to_get_them() {
        let prefers = |accept: &str| {
            let raw = format!(
                "POST /bid HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nContent-Length: 0\r\n\r\n"
            );
            complete(&raw).prefers_flatbuffers
        };
        assert!(prefers("application/x-flatbuffers"));
        assert!(prefers("Application/X-FlatBuffers ; q=0.5"));
        assert!(prefers("application/x-flatbuffers, application/json"));
        assert!(prefers("application/json;q=0.9, application/x-flatbuffers"));
        assert!(prefers("*/*, application/x-flatbuffers;q=0.1"));
        assert!(!prefers(
            "application/x-flatbuffers;q=0.5, application/json"
        ));
        assert!(!prefers("application/x-flatbuffers;q=0"));
        assert!(!prefers("application/x-flatbuffers;q=zero"));
        assert!(!prefers("application/json"));
        assert!(!prefers("*/*"));
        assert!(
            !complete("POST /bid HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
                .prefers_flatbuffers
        );
        assert_eq!(quality(b"q=0.125"), Some(125));
        assert_eq!(quality(b"q=1.000"), Some(1_000));
        assert_eq!(quality(b"q=1.5"), Some(1_000));
        assert_eq!(quality(b"q=0.1234"), Some(0));
        assert_eq!(quality(b"level=1"), None);
    }

    #[test]
    fn accept_encoding_honours_zero_quality() {
        let cases: [(&[u8], bool); 7] = [
            (b"gzip", true),
            (b"GZIP", true),
            (b"deflate, gzip;q=0", false),
            (b"gzip; q=0.000", false),
            (b"gzip;q=0.001", true),
            (b"*", true),
            (b"br", false),
        ];
        for (value, expected) in cases {
            assert_eq!(accepts_gzip(value), expected, "{value:?}");
        }
    }

    #[test]
    fn content_length_must_be_plain_digits() {
        for bad in ["-1", "+5", "1 2", "0x10", "", "5,5"] {
            let raw = format!("POST / HTTP/1.1\r\nContent-Length: {bad}\r\n\r\n");
            assert!(
                matches!(parse(&raw), Err(HttpError::Malformed(_))),
                "{bad:?}"
            );
        }
        let huge = "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n";
        assert_eq!(parse(huge), Err(HttpError::BodyTooLarge));
    }

    #[test]
    fn bare_lf_and_a_repeated_host_are_refused() {
        for raw in [
            "POST / HTTP/1.1\nHost: b\r\nContent-Length: 0\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: b\nContent-Length: 0\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: b\r\nContent-Length: 0\n\n",
        ] {
            assert_eq!(
                parse(raw),
                Err(HttpError::Malformed("bare LF line ending; use CRLF")),
                "{raw:?}"
            );
        }
        let two_hosts = "POST / HTTP/1.1\r\nHost: a\r\nhost: b\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(parse(two_hosts), Err(HttpError::Malformed("repeated host")));
        complete("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    }
}
