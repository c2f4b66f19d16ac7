//! The response statuses the bid path can produce, and their precomputed responses.
//!
//! Error and no-bid answers are the same bytes every time, so they are built at compile
//! time — one table per OpenRTB version a partner may speak — and copied, never
//! formatted, on the hot path.

use crate::openrtb::OpenRtbVersion;

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
    /// The bid path names a partner whose configured source networks do not hold
    /// the client's address.
    Forbidden,
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
pub const STATUS_COUNT: usize = 13;

impl Status {
    /// All statuses, in [`Status::index`] order.
    pub const ALL: [Status; STATUS_COUNT] = [
        Status::Ok,
        Status::NoContent,
        Status::BadRequest,
        Status::Forbidden,
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
            Status::Forbidden => 403,
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
            Status::Forbidden => "HTTP/1.1 403 Forbidden\r\n",
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

/// Builds one canned response from string literals at compile time. `$version` must be
/// an [`OpenRtbVersion::header_value`], checked by a test.
macro_rules! canned {
    ($version:literal, $line:literal, $conn:literal, $extra:literal) => {
        concat!(
            $line,
            $conn,
            $extra,
            "x-openrtb-version: ",
            $version,
            "\r\n\r\n"
        )
        .as_bytes()
    };
}

/// Builds the three `Connection` variants of one canned status. `$extra` holds the
/// header lines between `connection` and `x-openrtb-version`; by default the empty
/// body's `content-length: 0`.
macro_rules! canned3 {
    ($version:literal, $line:literal) => {
        canned3!($version, $line, "content-length: 0\r\n")
    };
    ($version:literal, $line:literal, $extra:literal) => {
        [
            canned!($version, $line, "", $extra),
            canned!($version, $line, "connection: keep-alive\r\n", $extra),
            canned!($version, $line, "connection: close\r\n", $extra),
        ]
    };
}

/// Builds the canned responses of one OpenRTB version, indexed by [`Status::index`],
/// then by [`ConnectionHeader`]. `200 OK` always has a body, so its slot holds an empty
/// 200 that is never sent by the HTTP layer itself.
macro_rules! canned_table {
    ($version:literal) => {
        [
            canned3!($version, "HTTP/1.1 200 OK\r\n"),
            // 204 must not carry `Content-Length` (RFC 9110 §8.6).
            canned3!($version, "HTTP/1.1 204 No Content\r\n", ""),
            canned3!($version, "HTTP/1.1 400 Bad Request\r\n"),
            canned3!($version, "HTTP/1.1 403 Forbidden\r\n"),
            canned3!($version, "HTTP/1.1 404 Not Found\r\n"),
            canned3!(
                $version,
                "HTTP/1.1 405 Method Not Allowed\r\n",
                "allow: POST\r\ncontent-length: 0\r\n"
            ),
            canned3!($version, "HTTP/1.1 408 Request Timeout\r\n"),
            canned3!($version, "HTTP/1.1 413 Content Too Large\r\n"),
            canned3!(
                $version,
                "HTTP/1.1 415 Unsupported Media Type\r\n",
                "accept-encoding: gzip\r\ncontent-length: 0\r\n"
            ),
            canned3!($version, "HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            canned3!($version, "HTTP/1.1 500 Internal Server Error\r\n"),
            canned3!($version, "HTTP/1.1 501 Not Implemented\r\n"),
            canned3!($version, "HTTP/1.1 503 Service Unavailable\r\n"),
        ]
    };
}

/// Canned responses indexed by [`OpenRtbVersion::index`], then as [`canned_table!`].
static CANNED: [[[&[u8]; 3]; STATUS_COUNT]; OpenRtbVersion::ALL.len()] =
    [canned_table!("2.5"), canned_table!("2.6")];

/// The precomputed, bodiless response for `status`, stating `version` in
/// `x-openrtb-version`: the HTTP layer passes the partner's version once the service
/// has recognised the partner.
pub(crate) fn canned_for(
    status: Status,
    connection: ConnectionHeader,
    version: OpenRtbVersion,
) -> &'static [u8] {
    let column = match connection {
        ConnectionHeader::Omit => 0,
        ConnectionHeader::KeepAlive => 1,
        ConnectionHeader::Close => 2,
    };
    CANNED[version.index()][status.index()][column]
}

/// The precomputed, bodiless response for `status` in the default OpenRTB version, for
/// answers no partner is known for: what only the engines can detect (408 on a deadline,
/// 503 when shedding) and the HTTP layer's refusals before a request reaches the service.
pub fn canned(status: Status, connection: ConnectionHeader) -> &'static [u8] {
    canned_for(status, connection, OpenRtbVersion::default())
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

    const CONNECTIONS: [ConnectionHeader; 3] = [
        ConnectionHeader::Omit,
        ConnectionHeader::KeepAlive,
        ConnectionHeader::Close,
    ];

    #[test]
    fn canned_responses_start_with_their_status_line_and_end_the_head() {
        for version in OpenRtbVersion::ALL {
            for status in Status::ALL {
                for conn in CONNECTIONS {
                    let bytes = canned_for(status, conn, version);
                    let text = std::str::from_utf8(bytes).unwrap();
                    assert!(text.starts_with(status.status_line()), "{text}");
                    assert!(text.ends_with("\r\n\r\n"), "{text}");
                    assert_eq!(text.matches("\r\n\r\n").count(), 1, "{text}");
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

    fn version_line(version: OpenRtbVersion) -> String {
        format!("x-openrtb-version: {}\r\n", version.header_value())
    }

    #[test]
    fn each_version_table_states_its_own_version_and_nothing_else_differs() {
        let default = OpenRtbVersion::default();
        for version in OpenRtbVersion::ALL {
            for status in Status::ALL {
                for conn in CONNECTIONS {
                    let text = std::str::from_utf8(canned_for(status, conn, version)).unwrap();
                    assert_eq!(text.matches("x-openrtb-version").count(), 1, "{text}");
                    assert!(text.ends_with(&format!("{}\r\n", version_line(version))));
                    let as_default = text.replace(&version_line(version), &version_line(default));
                    assert_eq!(as_default.as_bytes(), canned_for(status, conn, default));
                }
            }
        }
    }

    #[test]
    fn a_no_bid_states_the_version_it_is_canned_for() {
        assert_eq!(
            canned_for(
                Status::NoContent,
                ConnectionHeader::Omit,
                OpenRtbVersion::V2_5
            ),
            b"HTTP/1.1 204 No Content\r\nx-openrtb-version: 2.5\r\n\r\n"
        );
        assert_eq!(
            canned(Status::NoContent, ConnectionHeader::KeepAlive),
            b"HTTP/1.1 204 No Content\r\nconnection: keep-alive\r\nx-openrtb-version: 2.6\r\n\r\n"
        );
    }
}
