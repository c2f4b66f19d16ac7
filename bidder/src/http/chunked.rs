//! `Transfer-Encoding: chunked`: finding where a chunked body ends, and de-chunking it.
//!
//! One walker serves both: [`scan`] runs it without copying to learn whether the body is
//! complete (and to enforce limits before we buffer more), [`decode_into`] runs it again
//! over a complete body and copies the data into a reused buffer. Chunk extensions are
//! skipped; trailer fields are tolerated and dropped.

use super::error::HttpError;
use super::limits::{HttpLimits, CHUNKED_FRAMING_ALLOWANCE_BYTES, MAX_CHUNK_LINE_BYTES};

/// Hex digits in a chunk size; 15 keeps the value far inside `u64` and `usize`.
const MAX_CHUNK_SIZE_HEX_DIGITS: usize = 15;

/// Returns the length of the complete chunked body at the front of `body` (trailers and
/// final CRLF included), or `None` if more bytes are needed.
pub(crate) fn scan(body: &[u8], limits: &HttpLimits) -> Result<Option<usize>, HttpError> {
    walk(body, limits, |_| {})
}

/// De-chunks a body that [`scan`] found complete, appending the data to `out`.
///
/// `out` must have room for `max_body_bytes` more bytes, so it never reallocates.
pub(crate) fn decode_into(
    body: &[u8],
    limits: &HttpLimits,
    out: &mut Vec<u8>,
) -> Result<(), HttpError> {
    debug_assert!(out.capacity() - out.len() >= limits.max_body_bytes);
    match walk(body, limits, |data| out.extend_from_slice(data))? {
        Some(_) => Ok(()),
        None => Err(HttpError::Malformed("truncated chunked body")),
    }
}

fn walk(
    body: &[u8],
    limits: &HttpLimits,
    mut on_data: impl FnMut(&[u8]),
) -> Result<Option<usize>, HttpError> {
    let max_wire_bytes = limits.max_body_bytes + CHUNKED_FRAMING_ALLOWANCE_BYTES;
    let mut pos = 0;
    let mut data_bytes = 0usize;
    loop {
        if pos > max_wire_bytes {
            return Err(HttpError::BodyTooLarge);
        }
        let line_len = match find_line(&body[pos..], MAX_CHUNK_LINE_BYTES)? {
            Line::Complete(n) => n,
            Line::Partial => return Ok(None),
            Line::TooLong => return Err(HttpError::Malformed("chunk line too long")),
        };
        let size = chunk_size(&body[pos..pos + line_len])?;
        pos += line_len + 2;
        if size == 0 {
            return trailers(body, pos, limits);
        }
        data_bytes = data_bytes.saturating_add(size);
        if data_bytes > limits.max_body_bytes {
            return Err(HttpError::BodyTooLarge);
        }
        let data_end = pos + size;
        if body.len() < data_end + 2 {
            return Ok(None);
        }
        if &body[data_end..data_end + 2] != b"\r\n" {
            return Err(HttpError::Malformed("chunk data not followed by CRLF"));
        }
        on_data(&body[pos..data_end]);
        pos = data_end + 2;
    }
}

/// Skips trailer fields after the last chunk; returns the end of the body. The trailer
/// section is held to `max_header_bytes`, like the head.
fn trailers(body: &[u8], mut pos: usize, limits: &HttpLimits) -> Result<Option<usize>, HttpError> {
    let start = pos;
    loop {
        let budget = (start + limits.max_header_bytes).saturating_sub(pos);
        let line_len = match find_line(&body[pos..], budget)? {
            Line::Complete(n) => n,
            Line::Partial => return Ok(None),
            Line::TooLong => return Err(HttpError::HeadersTooLarge),
        };
        let line = &body[pos..pos + line_len];
        pos += line_len + 2;
        if line.is_empty() {
            return Ok(Some(pos));
        }
        if !line.contains(&b':') {
            return Err(HttpError::Malformed("trailer field without a colon"));
        }
    }
}

/// The line at the front of a buffer.
enum Line {
    /// Its length, CRLF excluded.
    Complete(usize),
    /// Its end has not arrived yet.
    Partial,
    /// Longer than allowed.
    TooLong,
}

/// Finds the line at the front of `bytes`. A bare CR or LF is malformed.
fn find_line(bytes: &[u8], max_line_bytes: usize) -> Result<Line, HttpError> {
    let window = &bytes[..bytes.len().min(max_line_bytes.saturating_add(2))];
    for (i, &b) in window.iter().enumerate() {
        match b {
            b'\n' => return Err(HttpError::Malformed("bare LF in chunked framing")),
            b'\r' if i > max_line_bytes => return Ok(Line::TooLong),
            b'\r' => {
                return match window.get(i + 1) {
                    Some(b'\n') => Ok(Line::Complete(i)),
                    Some(_) => Err(HttpError::Malformed("bare CR in chunked framing")),
                    None => Ok(Line::Partial),
                };
            }
            _ => {}
        }
    }
    if window.len() > max_line_bytes {
        return Ok(Line::TooLong);
    }
    Ok(Line::Partial)
}

/// Parses `hex-size [ws] [; extensions]`.
fn chunk_size(line: &[u8]) -> Result<usize, HttpError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(HttpError::Malformed("chunk size is not hex"));
    }
    if digits > MAX_CHUNK_SIZE_HEX_DIGITS {
        return Err(HttpError::BodyTooLarge);
    }
    let rest = &line[digits..];
    let ext_ok = match rest.first() {
        None | Some(b';') => true,
        Some(b' ' | b'\t') => super::ows::trim(rest).first().is_none_or(|&b| b == b';'),
        Some(_) => false,
    };
    if !ext_ok {
        return Err(HttpError::Malformed("junk after chunk size"));
    }
    Ok(line[..digits].iter().fold(0usize, |n, &d| {
        // Cannot fail: is_ascii_hexdigit above.
        let v = (d as char).to_digit(16).unwrap_or(0) as usize;
        (n << 4) | v
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(raw: &[u8]) -> Result<Vec<u8>, HttpError> {
        let limits = HttpLimits::default();
        let mut out = Vec::with_capacity(limits.max_body_bytes);
        let end = scan(raw, &limits)?.expect("complete");
        assert_eq!(end, raw.len());
        decode_into(raw, &limits, &mut out)?;
        Ok(out)
    }

    #[test]
    fn decodes_chunks_with_extensions_and_trailers() {
        let raw = b"4;name=value\r\nWiki\r\n5 ;x\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\n";
        assert_eq!(decode(raw).unwrap(), b"Wikipedia in\r\n\r\nchunks.");
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let raw = b"3\r\nabc\r\n0\r\n\r\n";
        let limits = HttpLimits::default();
        for n in 0..raw.len() {
            assert_eq!(scan(&raw[..n], &limits), Ok(None), "prefix {n}");
        }
    }

    #[test]
    fn malformed_framing_is_refused() {
        let cases: [&[u8]; 6] = [
            b"g\r\n",
            b"3\r\nabcX\r\n",
            b"3x\r\nabc\r\n",
            b"3\nabc\r\n",
            b"3\r\nabc\r\n0\r\nno colon\r\n\r\n",
            b"3\r\rabc",
        ];
        let limits = HttpLimits::default();
        for raw in cases {
            assert!(
                matches!(scan(raw, &limits), Err(HttpError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn sizes_over_the_limit_are_refused_before_the_data_arrives() {
        let limits = HttpLimits {
            max_body_bytes: 10,
            ..HttpLimits::default()
        };
        assert_eq!(scan(b"b\r\n", &limits), Err(HttpError::BodyTooLarge));
        assert_eq!(scan(b"a\r\n", &limits), Ok(None));
        assert_eq!(
            scan(b"5\r\nhello\r\n6\r\n", &limits),
            Err(HttpError::BodyTooLarge)
        );
        assert_eq!(
            scan(b"ffffffffffffffff\r\n", &limits),
            Err(HttpError::BodyTooLarge)
        );
    }

    #[test]
    fn overlong_extension_lines_and_trailers_are_refused() {
        let limits = HttpLimits {
            max_header_bytes: 64,
            ..HttpLimits::default()
        };
        let long_ext = format!("1;{}\r\n", "e".repeat(MAX_CHUNK_LINE_BYTES));
        assert!(matches!(
            scan(long_ext.as_bytes(), &limits),
            Err(HttpError::Malformed(_))
        ));
        let long_trailer = format!("0\r\nX: {}\r\n\r\n", "t".repeat(64));
        assert_eq!(
            scan(long_trailer.as_bytes(), &limits),
            Err(HttpError::HeadersTooLarge)
        );
    }
}
