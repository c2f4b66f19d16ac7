//! A minimal, streaming HTTP/1.1 response parser: just enough to find where each
//! response ends on a keep-alive (possibly pipelined) connection and what its status was.
//!
//! The generator never looks at response bodies, so bodies are skipped as they arrive
//! rather than buffered: the parser works on whatever bytes the socket produced and says
//! how many it consumed. Heads must fit in `MAX_HEAD_BYTES` because a bidder's heads are
//! a few hundred bytes; anything larger is a broken peer, reported as an error.

use thiserror::Error;

/// Largest response head accepted (status line + headers + blank line).
pub(crate) const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Largest chunk-size or trailer line accepted in a chunked body.
const MAX_CHUNK_LINE_BYTES: usize = 1024;

/// Why a connection's byte stream cannot be a sequence of HTTP/1.1 responses.
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum ParseError {
    #[error("response head larger than {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    #[error("malformed status line")]
    BadStatusLine,
    #[error("malformed header line")]
    BadHeader,
    #[error("invalid or conflicting Content-Length")]
    BadContentLength,
    #[error("malformed chunked body")]
    BadChunk,
}

/// A response whose last byte has been consumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Completed {
    pub status: u16,
    /// The server will close the connection after this response (`Connection: close`,
    /// or HTTP/1.0 without keep-alive): the client must not send more on it.
    pub close: bool,
}

/// Outcome of one parser step.
enum Step {
    /// Consumed this many bytes (always > 0) and can go on.
    Consumed(usize),
    /// Needs bytes that have not arrived.
    NeedMore,
    /// Consumed this many bytes and completed a response.
    Done(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Head,
    Body {
        remaining: u64,
    },
    ChunkSize,
    ChunkData {
        remaining: u64,
    },
    ChunkDataEnd,
    Trailer,
    /// No length and not chunked: the body runs until the server closes.
    UntilClose,
}

/// Parser state for one connection; reused response after response.
#[derive(Debug)]
pub(crate) struct ResponseParser {
    state: State,
    status: u16,
    close: bool,
}

impl Default for ResponseParser {
    fn default() -> Self {
        ResponseParser {
            state: State::Head,
            status: 0,
            close: false,
        }
    }
}

impl ResponseParser {
    /// Consumes a prefix of `buf`. Returns how many bytes were consumed and the response
    /// they completed, if any. `(0, None)` means more bytes are needed; the caller keeps
    /// the unconsumed bytes and calls again when more arrive. At most one response is
    /// completed per call, so the caller can match it to its oldest request in flight.
    pub(crate) fn advance(&mut self, buf: &[u8]) -> Result<(usize, Option<Completed>), ParseError> {
        let mut at = 0;
        loop {
            match self.step(&buf[at..])? {
                Step::Consumed(n) => {
                    debug_assert!(n > 0, "a step that consumes nothing must wait or finish");
                    at += n;
                }
                Step::NeedMore => return Ok((at, None)),
                Step::Done(n) => return Ok((at + n, Some(self.finish()))),
            }
        }
    }

    /// One state transition over the bytes not yet consumed.
    fn step(&mut self, rest: &[u8]) -> Result<Step, ParseError> {
        Ok(match self.state {
            State::Head => self.head(rest)?.map_or(Step::NeedMore, Step::Consumed),
            State::Body { remaining: 0 } => Step::Done(0),
            State::Body { .. } | State::ChunkData { .. } | State::UntilClose if rest.is_empty() => {
                Step::NeedMore
            }
            State::Body { remaining } => {
                let take = remaining.min(rest.len() as u64);
                if take == remaining {
                    return Ok(Step::Done(take as usize));
                }
                self.state = State::Body {
                    remaining: remaining - take,
                };
                Step::Consumed(take as usize)
            }
            State::ChunkSize => self
                .chunk_size(rest)?
                .map_or(Step::NeedMore, Step::Consumed),
            State::ChunkData { remaining } => {
                let take = remaining.min(rest.len() as u64);
                self.state = if take == remaining {
                    State::ChunkDataEnd
                } else {
                    State::ChunkData {
                        remaining: remaining - take,
                    }
                };
                Step::Consumed(take as usize)
            }
            State::ChunkDataEnd => match rest {
                [b'\r', b'\n', ..] => {
                    self.state = State::ChunkSize;
                    Step::Consumed(2)
                }
                [] | [b'\r'] => Step::NeedMore,
                _ => return Err(ParseError::BadChunk),
            },
            State::Trailer => match line(rest, MAX_CHUNK_LINE_BYTES, ParseError::BadChunk)? {
                None => Step::NeedMore,
                Some(0) => Step::Done(2),
                Some(len) => Step::Consumed(len + 2),
            },
            State::UntilClose => Step::Consumed(rest.len()),
        })
    }

    /// The peer closed the connection: completes a response whose body runs until
    /// close, and reports whether a response was cut off mid-way.
    pub(crate) fn on_eof(&mut self) -> Result<Option<Completed>, ()> {
        match self.state {
            State::UntilClose => Ok(Some(self.finish())),
            State::Head if self.status == 0 => Ok(None),
            _ => Err(()),
        }
    }

    fn finish(&mut self) -> Completed {
        let done = Completed {
            status: self.status,
            close: self.close,
        };
        *self = ResponseParser::default();
        done
    }

    /// Parses a complete head if `buf` holds one; returns the bytes consumed.
    fn head(&mut self, buf: &[u8]) -> Result<Option<usize>, ParseError> {
        let Some(end) = find_head_end(buf) else {
            return if buf.len() >= MAX_HEAD_BYTES {
                Err(ParseError::HeadTooLarge)
            } else {
                Ok(None)
            };
        };
        if end > MAX_HEAD_BYTES {
            return Err(ParseError::HeadTooLarge);
        }
        let head = Head::parse(&buf[..end - 4])?;
        self.status = head.status;
        self.close = head.close;
        self.state = if (100..200).contains(&head.status) {
            // Interim response (e.g. 100 Continue): the real one follows.
            self.status = 0;
            State::Head
        } else if head.status == 204 || head.status == 304 {
            State::Body { remaining: 0 }
        } else if head.chunked {
            State::ChunkSize
        } else if let Some(len) = head.content_length {
            State::Body { remaining: len }
        } else {
            self.close = true;
            State::UntilClose
        };
        Ok(Some(end))
    }

    fn chunk_size(&mut self, buf: &[u8]) -> Result<Option<usize>, ParseError> {
        let Some(len) = line(buf, MAX_CHUNK_LINE_BYTES, ParseError::BadChunk)? else {
            return Ok(None);
        };
        let text = &buf[..len];
        let digits = text.split(|&b| b == b';').next().unwrap_or_default();
        let digits = trim(digits);
        if digits.is_empty() || digits.len() > 15 {
            return Err(ParseError::BadChunk);
        }
        let mut size: u64 = 0;
        for &d in digits {
            let v = (d as char).to_digit(16).ok_or(ParseError::BadChunk)?;
            size = size * 16 + u64::from(v);
        }
        self.state = if size == 0 {
            State::Trailer
        } else {
            State::ChunkData { remaining: size }
        };
        Ok(Some(len + 2))
    }
}

/// Length of the CRLF-terminated line at the start of `buf` (without the CRLF), or
/// `None` if the CRLF has not arrived yet; a line longer than `max` is `err`.
fn line(buf: &[u8], max: usize, err: ParseError) -> Result<Option<usize>, ParseError> {
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(len) if len <= max => Ok(Some(len)),
        Some(_) => Err(err),
        None if buf.len() > max + 1 => Err(err),
        None => Ok(None),
    }
}

/// Offset just past the blank line that ends a head.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

struct Head {
    status: u16,
    close: bool,
    chunked: bool,
    content_length: Option<u64>,
}

impl Head {
    /// Parses a head without its final blank line.
    fn parse(head: &[u8]) -> Result<Head, ParseError> {
        let mut lines = head
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let status_line = lines.next().ok_or(ParseError::BadStatusLine)?;
        let (minor, status) = parse_status_line(status_line)?;
        let mut parsed = Head {
            status,
            close: minor == b'0',
            chunked: false,
            content_length: None,
        };
        for line in lines {
            let colon = line
                .iter()
                .position(|&b| b == b':')
                .ok_or(ParseError::BadHeader)?;
            let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
            if name.eq_ignore_ascii_case(b"content-length") {
                let len = parse_decimal(value).ok_or(ParseError::BadContentLength)?;
                if parsed.content_length.is_some_and(|seen| seen != len) {
                    return Err(ParseError::BadContentLength);
                }
                parsed.content_length = Some(len);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                let last = value.rsplit(|&b| b == b',').next().unwrap_or_default();
                parsed.chunked = trim(last).eq_ignore_ascii_case(b"chunked");
            } else if name.eq_ignore_ascii_case(b"connection") {
                for token in value.split(|&b| b == b',').map(trim) {
                    if token.eq_ignore_ascii_case(b"close") {
                        parsed.close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") && minor == b'0' {
                        parsed.close = false;
                    }
                }
            }
        }
        Ok(parsed)
    }
}

/// `HTTP/1.x SSS reason` → (x, SSS).
fn parse_status_line(line: &[u8]) -> Result<(u8, u16), ParseError> {
    match line {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor @ (b'0' | b'1'), b' ', a, b, c, rest @ ..]
            if a.is_ascii_digit()
                && b.is_ascii_digit()
                && c.is_ascii_digit()
                && (rest.is_empty() || rest[0] == b' ') =>
        {
            let status = u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
            Ok((*minor, status))
        }
        _ => Err(ParseError::BadStatusLine),
    }
}

fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 18 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `piece` bytes, as a socket might deliver it, keeping
    /// unconsumed bytes like the worker does; returns completed responses.
    fn parse_in_pieces(input: &[u8], piece: usize) -> Result<Vec<Completed>, ParseError> {
        let mut parser = ResponseParser::default();
        let mut pending: Vec<u8> = Vec::new();
        let mut done = Vec::new();
        for chunk in input.chunks(piece) {
            pending.extend_from_slice(chunk);
            loop {
                let (n, completed) = parser.advance(&pending)?;
                pending.drain(..n);
                match completed {
                    Some(c) => done.push(c),
                    None => break,
                }
            }
        }
        assert!(
            pending.is_empty(),
            "left over: {:?}",
            String::from_utf8_lossy(&pending)
        );
        Ok(done)
    }

    fn ok(status: u16) -> Completed {
        Completed {
            status,
            close: false,
        }
    }

    #[test]
    fn responses_parse_identically_whatever_the_read_boundaries() {
        let cases: &[(&str, &[u8], &[Completed])] = &[
            ("204", b"HTTP/1.1 204 No Content\r\n\r\n", &[ok(204)]),
            (
                "content-length",
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                &[ok(200)],
            ),
            (
                "chunked with extension and trailer",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nwiki\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n",
                &[ok(200)],
            ),
            (
                "pipelined mix",
                b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n",
                &[ok(204), ok(200), ok(503)],
            ),
            (
                "interim 100 is skipped",
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
                &[ok(204)],
            ),
            (
                "connection close",
                b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                &[Completed { status: 400, close: true }],
            ),
            (
                "http/1.0 closes unless keep-alive",
                b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
                &[Completed { status: 200, close: true }, ok(200)],
            ),
            ("reason phrase optional", b"HTTP/1.1 204\r\n\r\n", &[ok(204)]),
        ];
        for (name, input, expected) in cases {
            for piece in [1, 2, 3, 7, input.len()] {
                let got = parse_in_pieces(input, piece).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(&got, expected, "{name} in pieces of {piece}");
            }
        }
    }

    #[test]
    fn malformed_responses_are_errors() {
        let cases: &[(&str, &[u8], ParseError)] = &[
            (
                "not http",
                b"SSH-2.0-OpenSSH\r\n\r\n",
                ParseError::BadStatusLine,
            ),
            (
                "two-digit status",
                b"HTTP/1.1 20 OK\r\n\r\n",
                ParseError::BadStatusLine,
            ),
            (
                "header without colon",
                b"HTTP/1.1 200 OK\r\nbogus\r\n\r\n",
                ParseError::BadHeader,
            ),
            (
                "conflicting lengths",
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                ParseError::BadContentLength,
            ),
            (
                "non-hex chunk size",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                ParseError::BadChunk,
            ),
            (
                "chunk without CRLF after data",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
                ParseError::BadChunk,
            ),
        ];
        for (name, input, expected) in cases {
            assert_eq!(
                parse_in_pieces(input, input.len()).unwrap_err(),
                *expected,
                "{name}"
            );
        }
    }

    #[test]
    fn a_head_beyond_the_limit_is_rejected_without_waiting_for_its_end() {
        let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
        while head.len() < MAX_HEAD_BYTES {
            head.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        let mut parser = ResponseParser::default();
        assert_eq!(parser.advance(&head), Err(ParseError::HeadTooLarge));
    }

    #[test]
    fn a_body_without_length_ends_at_close() {
        let mut parser = ResponseParser::default();
        let input = b"HTTP/1.1 200 OK\r\n\r\nsome body";
        let (n, done) = parser.advance(input).unwrap();
        assert_eq!((n, done), (input.len(), None));
        assert_eq!(
            parser.on_eof(),
            Ok(Some(Completed {
                status: 200,
                close: true
            }))
        );
    }

    #[test]
    fn eof_mid_response_is_reported_and_eof_between_responses_is_not() {
        let mut parser = ResponseParser::default();
        assert_eq!(parser.on_eof(), Ok(None));
        parser
            .advance(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            .unwrap();
        assert_eq!(parser.on_eof(), Err(()));
    }
}
