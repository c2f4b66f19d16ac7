//! The parser object each worker owns: the request pools (and, for the reference
//! reader, simd-json's scratch buffers and tape), all kept across requests so that a
//! warmed-up parser allocates nothing (pinned by `tests/parse_alloc.rs`).

use std::mem;
use std::ops::Deref;

use simd_json::{Buffers, ErrorType, Tape};

use super::error::{JsonSyntax, ParseError};
use super::model::BidRequest;
use super::scan::Scanner;
use super::tape::TapeReader;
use super::{extract, MAX_DEPTH, MAX_REQUEST_BYTES};

/// Which JSON reader fills the model. Both feed the same extraction and give the same
/// request or the same refusal (the differential tests and fuzz target hold them to it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JsonReader {
    /// One pass that checks every byte and converts only the fields the decision
    /// reads: the bid path's reader.
    #[default]
    OnePass,
    /// simd-json's full tape, then the same walk: the reference.
    Tape,
}

/// Body size the scratch buffers are first sized for, in bytes; they grow to the
/// largest body seen (at most [`MAX_REQUEST_BYTES`]) and stay there.
const INITIAL_BODY_BYTES: usize = 8 * 1024;

/// Reusable OpenRTB parser. One per worker thread; not shared, never locked.
pub struct Parser {
    reader: JsonReader,
    buffers: Buffers,
    /// Empty between parses; holds its capacity.
    tape: Tape<'static>,
    /// Empty between parses; holds the pools' capacity.
    spare: BidRequest<'static>,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new()
    }
}

impl Parser {
    /// A parser with the bid path's reader; the first few requests grow its pools.
    pub fn new() -> Self {
        Self::with_reader(JsonReader::OnePass)
    }

    /// A parser with the given reader.
    pub fn with_reader(reader: JsonReader) -> Self {
        // The one-pass reader needs no scratch: the tape's buffers start empty.
        let scratch_bytes = match reader {
            JsonReader::OnePass => 0,
            JsonReader::Tape => INITIAL_BODY_BYTES,
        };
        Self {
            reader,
            buffers: Buffers::with_max_depth(scratch_bytes, MAX_DEPTH),
            tape: Tape(Vec::new()),
            spare: BidRequest::empty(),
        }
    }

    /// Parses one bid request body.
    ///
    /// `body` is unescaped in place (JSON string escapes are rewritten), so the caller
    /// must not read it as the original bytes afterwards. The returned guard borrows
    /// both the parser and the body; dropping it hands the request's storage back to
    /// the parser for the next call. Never panics, whatever the bytes.
    ///
    /// Bind the guard with `let`: left as a temporary in a block's tail expression
    /// (`match parser.parse(..) { .. }` as the last expression), it would be dropped
    /// after the block's locals, and the borrow checker refuses that when the body is
    /// one of them; a `;` after the `match` fixes it.
    ///
    /// # Errors
    /// [`ParseError`] for a body that is too large, not JSON, too deep, or not a
    /// usable bid request (see the variants).
    pub fn parse<'p, 'a>(&'p mut self, body: &'a mut [u8]) -> Result<Parsed<'p, 'a>, ParseError> {
        if body.len() > MAX_REQUEST_BYTES {
            return Err(ParseError::TooLarge {
                bytes: body.len(),
                max: MAX_REQUEST_BYTES,
            });
        }
        let mut req: BidRequest<'a> = mem::take(&mut self.spare).recycle();
        let result = match self.reader {
            JsonReader::OnePass => match Scanner::new(body) {
                Ok(mut scanner) => extract::request(&mut scanner, &mut req),
                Err(e) => Err(e.into()),
            },
            JsonReader::Tape => {
                let mut tape: Tape<'a> = mem::replace(&mut self.tape, Tape(Vec::new())).reset();
                let result = match simd_json::fill_tape(body, &mut self.buffers, &mut tape) {
                    Ok(()) => extract::request(&mut TapeReader::new(&tape.0), &mut req),
                    Err(e) => Err(json_error(e)),
                };
                self.tape = tape.reset();
                result
            }
        };
        match result {
            Ok(()) => Ok(Parsed { parser: self, req }),
            Err(e) => {
                self.spare = req.recycle();
                Err(e)
            }
        }
    }
}

#[cold]
fn json_error(e: simd_json::Error) -> ParseError {
    if matches!(e.error(), ErrorType::DepthLimitExceeded) {
        return ParseError::TooDeep { max: MAX_DEPTH };
    }
    ParseError::InvalidJson {
        offset: e.index(),
        source: JsonSyntax::Tape(e),
    }
}

/// A parsed request, borrowed from the body (`'a`) and from the parser (`'p`).
/// Dereferences to [`BidRequest`]; on drop its storage returns to the parser.
pub struct Parsed<'p, 'a> {
    parser: &'p mut Parser,
    req: BidRequest<'a>,
}

impl<'a> Deref for Parsed<'_, 'a> {
    type Target = BidRequest<'a>;

    fn deref(&self) -> &BidRequest<'a> {
        &self.req
    }
}

impl Drop for Parsed<'_, '_> {
    fn drop(&mut self) {
        self.parser.spare = mem::take(&mut self.req).recycle();
    }
}

impl std::fmt::Debug for Parsed<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.req.fmt(f)
    }
}
