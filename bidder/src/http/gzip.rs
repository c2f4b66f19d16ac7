//! gzip (RFC 1952) in both directions, with reused state and bounded output.
//!
//! The deflate work is flate2's (pure-Rust miniz_oxide backend); the member framing,
//! CRC and size checks are ours so that the inflater and deflater are created once per
//! worker and reset per request instead of being allocated per request.

use flate2::{Compress, Compression, Crc, Decompress, FlushCompress, FlushDecompress, Status};

use super::error::HttpError;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const METHOD_DEFLATE: u8 = 8;
const FLAG_HCRC: u8 = 0x02;
const FLAG_EXTRA: u8 = 0x04;
const FLAG_NAME: u8 = 0x08;
const FLAG_COMMENT: u8 = 0x10;
const FLAG_RESERVED: u8 = 0xe0;
const FIXED_HEADER_BYTES: usize = 10;
const TRAILER_BYTES: usize = 8;
use crate::limits::MAX_GZIP_MEMBERS;

/// Header we write: no name, no mtime, "unknown" OS.
const OUR_HEADER: [u8; FIXED_HEADER_BYTES] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// Inflates gzip request bodies with a hard cap on output.
pub(crate) struct Gunzip {
    inflater: Decompress,
}

impl Gunzip {
    pub(crate) fn new() -> Self {
        Gunzip {
            inflater: Decompress::new(false),
        }
    }

    /// Inflates `input` into `out` (cleared first). Stops with
    /// [`HttpError::DecompressedBodyTooLarge`] as soon as more than `max_out_bytes` have
    /// been produced, so a bomb costs at most that much work and memory.
    ///
    /// `out` must have capacity above `max_out_bytes`: it is never grown.
    pub(crate) fn inflate(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max_out_bytes: usize,
    ) -> Result<(), HttpError> {
        assert!(out.capacity() > max_out_bytes, "gunzip buffer under limit");
        out.clear();
        let mut rest = input;
        for _ in 0..MAX_GZIP_MEMBERS {
            let used = self.member(rest, out, max_out_bytes)?;
            rest = &rest[used..];
            if rest.is_empty() {
                return Ok(());
            }
        }
        Err(HttpError::Malformed("too many gzip members"))
    }

    /// Inflates one member appended to `out`; returns the input bytes it spanned.
    fn member(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max_out_bytes: usize,
    ) -> Result<usize, HttpError> {
        let header = header_len(input)?;
        let deflate = &input[header..];
        let start = out.len();
        self.inflater.reset(false);
        loop {
            let read = self.inflater.total_in() as usize;
            let written = out.len();
            let status = self
                .inflater
                .decompress_vec(&deflate[read..], out, FlushDecompress::None)
                .map_err(|_| HttpError::Malformed("invalid deflate data"))?;
            if out.len() > max_out_bytes {
                return Err(HttpError::DecompressedBodyTooLarge);
            }
            if status == Status::StreamEnd {
                break;
            }
            let stalled = self.inflater.total_in() as usize == read && out.len() == written;
            if stalled {
                if out.len() == out.capacity() {
                    return Err(HttpError::DecompressedBodyTooLarge);
                }
                return Err(HttpError::Malformed("truncated gzip body"));
            }
        }
        let end = header + self.inflater.total_in() as usize;
        let trailer = input
            .get(end..end + TRAILER_BYTES)
            .ok_or(HttpError::Malformed("gzip trailer missing"))?;
        let mut crc = Crc::new();
        crc.update(&out[start..]);
        if le_u32(&trailer[..4]) != crc.sum() || le_u32(&trailer[4..]) != crc.amount() {
            return Err(HttpError::Malformed("gzip checksum mismatch"));
        }
        Ok(end + TRAILER_BYTES)
    }
}

/// Length of the member header at the front of `input`, optional fields included.
fn header_len(input: &[u8]) -> Result<usize, HttpError> {
    const TRUNCATED: HttpError = HttpError::Malformed("truncated gzip header");
    let fixed = input.get(..FIXED_HEADER_BYTES).ok_or(TRUNCATED)?;
    if fixed[..2] != GZIP_MAGIC || fixed[2] != METHOD_DEFLATE {
        return Err(HttpError::Malformed("not a gzip stream"));
    }
    let flags = fixed[3];
    if flags & FLAG_RESERVED != 0 {
        return Err(HttpError::Malformed("reserved gzip flags set"));
    }
    let mut pos = FIXED_HEADER_BYTES;
    if flags & FLAG_EXTRA != 0 {
        let len = input.get(pos..pos + 2).ok_or(TRUNCATED)?;
        pos += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    for flag in [FLAG_NAME, FLAG_COMMENT] {
        if flags & flag != 0 {
            let field = input.get(pos..).ok_or(TRUNCATED)?;
            pos += field.iter().position(|&b| b == 0).ok_or(TRUNCATED)? + 1;
        }
    }
    if flags & FLAG_HCRC != 0 {
        pos += 2;
    }
    if pos > input.len() {
        return Err(TRUNCATED);
    }
    Ok(pos)
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Compresses response bodies into a reused buffer.
pub(crate) struct Gzip {
    deflater: Compress,
    out: Vec<u8>,
}

impl Gzip {
    /// `max_in_bytes` is the largest body that will be compressed; the output buffer is
    /// sized so that incompressible input of that size still fits.
    pub(crate) fn new(max_in_bytes: usize) -> Self {
        let bound = max_in_bytes + max_in_bytes / 8 + 1024 + FIXED_HEADER_BYTES + TRAILER_BYTES;
        Gzip {
            deflater: Compress::new(Compression::fast(), false),
            out: Vec::with_capacity(bound),
        }
    }

    /// gzips `body`; `None` if it does not fit the buffer (the caller then sends it as
    /// is). The result lives until the next call.
    pub(crate) fn compress(&mut self, body: &[u8]) -> Option<&[u8]> {
        self.out.clear();
        self.out.extend_from_slice(&OUR_HEADER);
        self.deflater.reset();
        loop {
            let read = self.deflater.total_in() as usize;
            let written = self.out.len();
            let status = self
                .deflater
                .compress_vec(&body[read..], &mut self.out, FlushCompress::Finish)
                .ok()?;
            if status == Status::StreamEnd {
                break;
            }
            let stalled = self.deflater.total_in() as usize == read && self.out.len() == written;
            if stalled || self.out.len() == self.out.capacity() {
                return None;
            }
        }
        let mut crc = Crc::new();
        crc.update(body);
        if self.out.capacity() - self.out.len() < TRAILER_BYTES {
            return None;
        }
        self.out.extend_from_slice(&crc.sum().to_le_bytes());
        self.out.extend_from_slice(&crc.amount().to_le_bytes());
        Some(&self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn reference_gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn inflates_what_a_reference_encoder_wrote() {
        let body = br#"{"id":"r1","imp":[{"id":"1"}]}"#.repeat(50);
        let mut out = Vec::with_capacity(64 * 1024 + 1);
        Gunzip::new()
            .inflate(&reference_gzip(&body), &mut out, 64 * 1024)
            .unwrap();
        assert_eq!(out, body);
    }

    #[test]
    fn concatenated_members_and_optional_header_fields_are_read() {
        let mut name = flate2::GzBuilder::new()
            .filename("a.json")
            .comment("c")
            .extra(vec![1, 2, 3])
            .write(Vec::new(), Compression::fast());
        name.write_all(b"hello ").unwrap();
        let mut input = name.finish().unwrap();
        input.extend(reference_gzip(b"world"));
        let mut out = Vec::with_capacity(1025);
        Gunzip::new().inflate(&input, &mut out, 1024).unwrap();
        assert_eq!(out, b"hello world");
    }

    #[test]
    fn output_exactly_at_the_limit_passes_and_one_over_fails() {
        let mut gunzip = Gunzip::new();
        let mut out = Vec::with_capacity(1001);
        let at = reference_gzip(&[b'a'; 1000]);
        gunzip.inflate(&at, &mut out, 1000).unwrap();
        assert_eq!(out.len(), 1000);
        let over = reference_gzip(&[b'a'; 1001]);
        assert_eq!(
            gunzip.inflate(&over, &mut out, 1000),
            Err(HttpError::DecompressedBodyTooLarge)
        );
    }

    #[test]
    fn corrupt_streams_are_malformed() {
        let good = reference_gzip(b"some body bytes");
        let mut bad_crc = good.clone();
        let n = bad_crc.len();
        bad_crc[n - 5] ^= 1;
        let cases = [
            good[..good.len() - 3].to_vec(),
            good[..5].to_vec(),
            bad_crc,
            b"plain text".to_vec(),
            [good.clone(), b"x".to_vec()].concat(),
        ];
        let mut out = Vec::with_capacity(1025);
        for input in cases {
            assert!(
                matches!(
                    Gunzip::new().inflate(&input, &mut out, 1024),
                    Err(HttpError::Malformed(_))
                ),
                "{input:?}"
            );
        }
    }

    #[test]
    fn compressed_responses_round_trip_through_a_reference_decoder() {
        let mut gz = Gzip::new(4096);
        for body in [&b""[..], b"{}", &[7u8; 4096]] {
            let packed = gz.compress(body).unwrap().to_vec();
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(&packed[..])
                .read_to_end(&mut plain)
                .unwrap();
            assert_eq!(plain, body);
        }
    }
}
