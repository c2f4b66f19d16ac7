//! The response statuses the bid path can produce, and their precomputed responses.
//!
//! Error and no-bid answers are the same bytes every time, so they are built at compile
//! time and copied, never formatted, on the hot path.

/// Every status the bid path answers with. Engines count responses per status, so the
/// set is closed and indexable ([`Status::index`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// A bid, with a body.
    Ok,
    /// No bid: the normal answer to most requests.
    NoContent,
    /// Malformed HTTP, or a body the service could not read.
    BadRequest,
    /// Neither the default bid path nor `/bid/{partner}`.
    NotFound,
    /// Anything but `POST`.
    MethodNotAllowed,
    /// The engine gave up waiting for the rest of a request.
    RequestTimeout,
    /// Body, or decompressed body, over its limit.
    PayloadTooLarge,
    /// A `Content-Encoding` other than gzip or identity.
    UnsupportedMediaType,
    /// Header section too long, or too many header fields.
    HeaderFieldsTooLarge,
    /// The service failed in a way that is our fault.
    InternalServerError,
    /// A `Transfer-Encoding` other than chunked.
    NotImplemented,
    /// Shedding load: connection slots full, or shutting down.
    ServiceUnavailable,
}

/// How the `Connection` header of a response is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionHeader {
    /// No header: HTTP/1.1 keep-alive is the default.
    Omit,
    /// `connection: keep-alive`, which an HTTP/1.0 client needs to keep the connection.
    KeepAlive,
    /// `connection: close`: we close after this response.
    Close,
}

/// Number of [`Status`] values; the length of per-status counter arrays.
pub const STATUS_COUNT: usize = 12;

impl Status {
    /// All statuses, in [`Status::index`] order.
    pub const ALL: [Status; STATUS_COUNT] = [
        Status::Ok,
        Status::NoContent,
        Status::BadRequest,
        Status::NotFound,
        Status::MethodNotAllowed,
        Status::RequestTimeout,
        Status::PayloadTooLarge,
        Status::UnsupportedMediaType,
        Status::HeaderFieldsTooLarge,
        Status::InternalServerError,
        Status::NotImplemented,
        Status::ServiceUnavailable,
    ];

    /// Position in [`Status::ALL`], for per-status counters.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The numeric code, e.g. 204.
    pub const fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::NoContent => 204,
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::PayloadTooLarge => 413,
            Status::UnsupportedMediaType => 415,
            Status::HeaderFieldsTooLarge => 431,
            Status::InternalServerError => 500,
            Status::NotImplemented => 501,
            Status::ServiceUnavailable => 503,
        }
    }

    /// The status line, CRLF included.
    pub(crate) const fn status_line(self) -> &'static str {
        match self {
            Status::Ok => "HTTP/1.1 200 OK\r\n",
            Status::NoContent => "HTTP/1.1 204 No Content\r\n",
            Status::BadRequest => "HTTP/1.1 400 Bad Request\r\n",
            Status::NotFound => "HTTP/1.1 404 Not Found\r\n",
            Status::MethodNotAllowed => "HTTP/1.1 405 Method Not Allowed\r\n",
            Status::RequestTimeout => "HTTP/1.1 408 Request Timeout\r\n",
            Status::PayloadTooLarge => "HTTP/1.1 413 Content Too Large\r\n",
            Status::UnsupportedMediaType => "HTTP/1.1 415 Unsupported Media Type\r\n",
            Status::HeaderFieldsTooLarge => "HTTP/1.1 431 Request Header Fields Too Large\r\n",
            Status::InternalServerError => "HTTP/1.1 500 Internal Server Error\r\n",
            Status::NotImplemented => "HTTP/1.1 501 Not Implemented\r\n",
            Status::ServiceUnavailable => "HTTP/1.1 503 Service Unavailable\r\n",
        }
    }
}

/// Builds one canned response from string literals at compile time.
macro_rules! canned {
    ($line:literal, $conn:literal, $extra:literal) => {
        concat!(
            $line,
            $conn,
            $extra,
            "content-length: 0\r\nx-openrtb-version: 2.6\r\n\r\n"
        )
        .as_bytes()
    };
}

/// Builds the three `Connection` variants of one canned status.
macro_rules! canned3 {
    ($line:literal) => {
        canned3!($line, "")
    };
    ($line:literal, $extra:literal) => {
        [
            canned!($line, "", $extra),
            canned!($line, "connection: keep-alive\r\n", $extra),
            canned!($line, "connection: close\r\n", $extra),
        ]
    };
}

/// 204 must not carry `Content-Length` (RFC 9110 §8.6), so it is spelled out by hand.
const NO_CONTENT: [&[u8]; 3] = [
    b"HTTP/1.1 204 No Content\r\nx-openrtb-version: 2.6\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\nconnection: keep-alive\r\nx-openrtb-version: 2.6\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\nconnection: close\r\nx-openrtb-version: 2.6\r\n\r\n",
];

/// Canned responses indexed by [`Status::index`], then by [`ConnectionHeader`].
/// `200 OK` always has a body, so its slot holds an empty 200 that is never sent by the
/// HTTP layer itself.
static CANNED: [[&[u8]; 3]; STATUS_COUNT] = [
    canned3!("HTTP/1.1 200 OK\r\n"),
    NO_CONTENT,
    canned3!("HTTP/1.1 400 Bad Request\r\n"),
    canned3!("HTTP/1.1 404 Not Found\r\n"),
    canned3!("HTTP/1.1 405 Method Not Allowed\r\n", "allow: POST\r\n"),
    canned3!("HTTP/1.1 408 Request Timeout\r\n"),
    canned3!("HTTP/1.1 413 Content Too Large\r\n"),
    canned3!(
        "HTTP/1.1 415 Unsupported Media Type\r\n",
        "accept-encoding: gzip\r\n"
    ),
    canned3!("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
    canned3!("HTTP/1.1 500 Internal Server Error\r\n"),
    canned3!("HTTP/1.1 501 Not Implemented\r\n"),
    canned3!("HTTP/1.1 503 Service Unavailable\r\n"),
];

/// The precomputed, bodiless response for `status`. Engines use it for what only they
/// can detect (408 on a deadline, 503 when shedding); the HTTP layer for its errors.
pub fn canned(status: Status, connection: ConnectionHeader) -> &'static [u8] {
    let column = match connection {
        ConnectionHeader::Omit => 0,
        ConnectionHeader::KeepAlive => 1,
        ConnectionHeader::Close => 2,
    };
    CANNED[status.index()][column]
}

/// The interim answer to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_matches_position_in_all() {
        for (i, s) in Status::ALL.iter().enumerate() {
            assert_eq!(s.index(), i);
        }
    }

    #[test]
    fn canned_responses_start_with_their_status_line_and_end_the_head() {
        for status in Status::ALL {
            for conn in [
                ConnectionHeader::Omit,
                ConnectionHeader::KeepAlive,
                ConnectionHeader::Close,
            ] {
                let bytes = canned(status, conn);
                let text = std::str::from_utf8(bytes).unwrap();
                assert!(text.starts_with(status.status_line()), "{text}");
                assert!(text.ends_with("\r\n\r\n"), "{text}");
                assert_eq!(text.matches("\r\n\r\n").count(), 1, "{text}");
                assert!(text.contains("x-openrtb-version: 2.6\r\n"));
                assert_eq!(
                    text.contains("content-length"),
                    status != Status::NoContent,
                    "{text}"
                );
                assert_eq!(
                    text.contains("connection: close"),
                    conn == ConnectionHeader::Close
                );
            }
        }
    }
}
