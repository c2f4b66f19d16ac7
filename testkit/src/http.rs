//! A one-shot HTTP/1.1 client for tests: one request on a fresh connection
//! (`Connection: close`), read to the end, the status and body back. For the admin
//! port, the agent's bidder and anything else a test talks to one request at a time
//! (the engines' keep-alive and pipelining tests have their own client in
//! `bidder/tests/engines/harness.rs`).

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

#[cfg(test)]
mod tests {
    use super::*;

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
