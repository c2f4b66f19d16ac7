//! The server under test, from an `http://host[:port][/path]` URL.
//!
//! Only plain HTTP: a bidder is called over cleartext inside the data centre, and TLS in
//! the generator would measure the generator. Hosts are resolved once, before the run,
//! so DNS never sits in a measured request.

use std::net::{SocketAddr, ToSocketAddrs};

use thiserror::Error;

/// Why a target URL cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("{0}: only http:// URLs are supported")]
    Scheme(String),
    #[error("{0}: missing host")]
    NoHost(String),
    #[error("{0}: bad port")]
    BadPort(String),
    #[error("{url}: cannot resolve host: {reason}")]
    Resolve { url: String, reason: String },
}

/// A resolved target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub url: String,
    pub addr: SocketAddr,
    /// `Host` header value: the URL's authority as written.
    pub host: String,
    /// Request target, starting with `/`.
    pub path: String,
}

impl Target {
    /// Parses and resolves `url` (first address wins).
    pub fn parse(url: &str) -> Result<Target, TargetError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| TargetError::Scheme(url.into()))?;
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/"),
        };
        let (host, port) = split_port(authority).ok_or_else(|| TargetError::BadPort(url.into()))?;
        if host.is_empty() {
            return Err(TargetError::NoHost(url.into()));
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addr = (bare, port)
            .to_socket_addrs()
            .map_err(|e| TargetError::Resolve {
                url: url.into(),
                reason: e.to_string(),
            })?
            .next()
            .ok_or_else(|| TargetError::Resolve {
                url: url.into(),
                reason: "no addresses".into(),
            })?;
        Ok(Target {
            url: url.into(),
            addr,
            host: authority.into(),
            path: path.into(),
        })
    }
}

/// `host[:port]` or `[v6][:port]` → (host, port); the port defaults to 80.
fn split_port(authority: &str) -> Option<(&str, u16)> {
    let port_at = if authority.starts_with('[') {
        authority.find(']').map(|end| end + 1)?
    } else {
        authority.find(':').unwrap_or(authority.len())
    };
    match &authority[port_at..] {
        "" => Some((authority, 80)),
        port => Some((&authority[..port_at], port.strip_prefix(':')?.parse().ok()?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_resolve_to_address_host_header_and_path() {
        let cases = [
            (
                "http://127.0.0.1:8080/bid/exchange-a",
                "127.0.0.1:8080",
                "127.0.0.1:8080",
                "/bid/exchange-a",
            ),
            ("http://127.0.0.1", "127.0.0.1:80", "127.0.0.1", "/"),
            ("http://[::1]:9/x?y=1", "[::1]:9", "[::1]:9", "/x?y=1"),
            ("http://localhost:81/", "", "localhost:81", "/"),
        ];
        for (url, addr, host, path) in cases {
            let t = Target::parse(url).unwrap();
            if !addr.is_empty() {
                assert_eq!(t.addr.to_string(), addr, "{url}");
            }
            assert_eq!((t.host.as_str(), t.path.as_str()), (host, path), "{url}");
        }
    }

    #[test]
    fn unusable_urls_are_refused() {
        assert!(matches!(
            Target::parse("https://a/"),
            Err(TargetError::Scheme(_))
        ));
        assert!(matches!(
            Target::parse("http://:80/"),
            Err(TargetError::NoHost(_))
        ));
        assert!(matches!(
            Target::parse("http://a:x/"),
            Err(TargetError::BadPort(_))
        ));
        assert!(matches!(
            Target::parse("http://a:99999/"),
            Err(TargetError::BadPort(_))
        ));
    }
}
