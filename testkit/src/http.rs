//! HTTP/1.1 for tests. [`exchange`]: one request on a fresh connection
//! (`Connection: close`), read to the end, the status and body back: for the admin
//! port, the agent's bidder and anything else a test talks to one request at a time.
//! [`read_response`]: one response off a keep-alive or pipelined connection (or out of
//! a server's output buffer), strictly framed, for the engine suites.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Longest a test waits to connect, or on one read or write.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// `method path` with `body` (sent with its length) and any extra `headers` lines
/// (`name: value\r\n` each); the status and body of the answer.
pub fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT)?;
    s.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    s.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (status, body) = split_response(&text)
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text:?}")))?;
    Ok((status, body.to_owned()))
}

/// The status and body of a whole response read to the end of the connection; `None`
/// if it does not start with a status line.
pub fn split_response(text: &str) -> Option<(u16, &str)> {
    let status = text.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()?;
    Some((status, text.split_once("\r\n\r\n").map_or("", |(_, b)| b)))
}

/// [`exchange`] that fails the test on an I/O error (every socket has timeouts: a
/// test fails, never hangs).
pub fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    exchange(addr, method, path, "", body)
        .unwrap_or_else(|e| panic!("{method} {path} to {addr}: {e}"))
}

/// `GET path`, failing the test on an I/O error.
pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    request(addr, "GET", path, b"")
}

/// One response as [`read_response`] framed it.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// The head as sent, status line to the blank line.
    pub head: String,
    /// `(lower-case name, value)` in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header of that (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The server announced it closes the connection after this response.
    pub fn closes(&self) -> bool {
        self.header("connection") == Some("close")
    }
}

/// Reads exactly one response: the head byte by byte (so nothing of the next response
/// is consumed, whatever `reader` is), then `content-length` body bytes. 1xx and 204
/// end at the head and must not announce a body (RFC 9110 §8.6). Fails the test on a
/// malformed or truncated response; with a socket timeout it fails, never hangs.
pub fn read_response(reader: &mut impl Read) -> Response {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = reader.read(&mut byte).expect("response head");
        assert_eq!(
            n,
            1,
            "connection closed mid-head after {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).expect("the head is text");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    assert!(
        status_line.starts_with("HTTP/1.1 ") || status_line.starts_with("HTTP/1.0 "),
        "bad status line {status_line:?}"
    );
    let status: u16 = status_line
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status code in {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .take_while(|line| !line.is_empty())
        .map(|line| {
            let (name, value) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("header without a colon: {line:?}"));
            (name.to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    let mut response = Response {
        status,
        head,
        headers,
        body: Vec::new(),
    };
    if (100..200).contains(&status) || status == 204 {
        assert_eq!(response.header("content-length"), None, "{response:?}");
    } else {
        let length: usize = response
            .header("content-length")
            .unwrap_or_else(|| panic!("no content-length: {response:?}"))
            .parse()
            .expect("content-length is a number");
        response.body = vec![0; length];
        reader
            .read_exact(&mut response.body)
            .expect("response body");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelined_responses_are_read_one_at_a_time() {
        let wire = b"HTTP/1.1 100 Continue\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nokHTTP/1.1 204 No Content\r\n\r\n";
        let mut reader = &wire[..];
        assert_eq!(read_response(&mut reader).status, 100);
        let ok = read_response(&mut reader);
        assert_eq!((ok.status, ok.body.as_slice()), (200, &b"ok"[..]));
        assert!(ok.closes());
        assert_eq!(ok.header("content-length"), Some("2"));
        assert!(ok.head.ends_with("close\r\n\r\n"));
        assert_eq!(read_response(&mut reader).status, 204);
        assert!(reader.is_empty());
    }

    #[test]
    #[should_panic(expected = "mid-head")]
    fn a_truncated_head_fails_the_test() {
        read_response(&mut &b"HTTP/1.1 200 OK\r\nContent-"[..]);
    }

    #[test]
    fn responses_split_into_status_and_body() {
        let text = "HTTP/1.1 204 No Content\r\nx: y\r\n\r\n";
        assert_eq!(split_response(text), Some((204, "")));
        let text = "HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok";
        assert_eq!(split_response(text), Some((200, "ok")));
        assert_eq!(split_response("SSH-2.0-OpenSSH"), None);
        assert_eq!(split_response("HTTP/1.1 2"), None);
    }
}
