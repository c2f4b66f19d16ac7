//! The seam between reading JSON and filling the model: a forward-only pull reader.
//!
//! `extract.rs` walks a request through this trait once, front to back, and asks only
//! for what the decision uses; everything else is skipped. Two readers implement it:
//! - [`super::scan::Scanner`], the bid path's reader: one pass over the body that
//!   validates everything it skips but converts only what is asked for;
//! - [`super::tape::TapeReader`], the reference: simd-json builds the whole tape first,
//!   then the same extraction walks it. The differential tests and the
//!   `openrtb_request` fuzz target hold the two to the same model and errors.
//!
//! Protocol (a walk out of step shows as invalid JSON from the scanner and as a
//! refused `finish` from the tape reader): at a value, call exactly one of
//! `scalar`, `skip`, `enter_object` or `enter_array` (after `peek` if the type
//! matters); inside an object, `key` until it returns `None`, consuming each key's
//! value; inside an array, `item` until it returns `false`, consuming each item.

use super::error::{JsonSyntax, ParseError};

/// The JSON type of the value at the cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Object,
    Array,
    String,
    Number,
    Bool,
    Null,
}

/// A value read whole. Containers read this way are skipped and say only that they
/// were there, which every optional scalar field treats as absent.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Scalar<'a> {
    Str(&'a str),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
    Null,
    Container,
}

/// Type rule (one rule for every optional field): a value of the wrong JSON type, an
/// integer out of range, or an empty string is treated as absent. The one exception is
/// a floor (`bidfloor`): one of the wrong type refuses the request (`extract.rs`).
impl<'a> Scalar<'a> {
    /// A non-empty string.
    pub(crate) fn str(self) -> Option<&'a str> {
        match self {
            Scalar::Str(s) if !s.is_empty() => Some(s),
            _ => None,
        }
    }

    /// Any JSON number, as `f64`.
    pub(crate) fn f64(self) -> Option<f64> {
        match self {
            Scalar::I64(v) => Some(v as f64),
            Scalar::U64(v) => Some(v as f64),
            Scalar::F64(v) => Some(v),
            _ => None,
        }
    }

    /// An integer (or a float with an integral value, which some exchanges send).
    pub(crate) fn i64(self) -> Option<i64> {
        match self {
            Scalar::I64(v) => Some(v),
            Scalar::U64(v) => i64::try_from(v).ok(),
            Scalar::F64(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => Some(v as i64),
            _ => None,
        }
    }

    /// A non-negative integer that fits `u32`.
    pub(crate) fn u32(self) -> Option<u32> {
        u32::try_from(self.i64()?).ok()
    }

    /// An integer that fits `i32`.
    pub(crate) fn i32(self) -> Option<i32> {
        i32::try_from(self.i64()?).ok()
    }

    /// A 0/1 flag. Any non-zero number means set, which fails closed for privacy flags
    /// (`gdpr: 2` is treated as "applies"); JSON booleans are accepted too.
    pub(crate) fn flag(self) -> Option<bool> {
        match self {
            Scalar::Bool(b) => Some(b),
            _ => self.f64().map(|v| v != 0.0),
        }
    }
}

/// Why the bytes are not JSON we accept, and where. Three words: every reader call
/// returns it, so it is kept small (the full [`ParseError`] is made once, at the end).
#[derive(Debug)]
pub(crate) enum JsonError {
    Syntax { offset: usize, why: &'static str },
    TooDeep,
}

impl From<JsonError> for ParseError {
    #[cold]
    fn from(e: JsonError) -> Self {
        match e {
            JsonError::Syntax { offset, why } => ParseError::InvalidJson {
                offset,
                source: JsonSyntax::Scan(why),
            },
            JsonError::TooDeep => ParseError::TooDeep {
                max: super::MAX_DEPTH,
            },
        }
    }
}

/// A forward-only JSON reader (see the module documentation for the protocol).
pub(crate) trait Reader<'a> {
    /// The type of the value at the cursor; does not move.
    fn peek(&mut self) -> Result<Kind, JsonError>;
    /// Reads the value at the cursor whole (a container is skipped: `Container`).
    fn scalar(&mut self) -> Result<Scalar<'a>, JsonError>;
    /// Steps over the value at the cursor (checking it, where the reader has not yet).
    fn skip(&mut self) -> Result<(), JsonError>;
    /// Steps into the object at the cursor (`peek` said `Object`).
    fn enter_object(&mut self) -> Result<(), JsonError>;
    /// Steps into the array at the cursor (`peek` said `Array`).
    fn enter_array(&mut self) -> Result<(), JsonError>;
    /// In an object: the next key, the cursor left on its value; `None` steps out.
    fn key(&mut self) -> Result<Option<&'a str>, JsonError>;
    /// In an array: `true` with the cursor on the next item; `false` steps out.
    fn item(&mut self) -> Result<bool, JsonError>;
    /// How many containers the cursor is inside.
    fn depth(&self) -> usize;
    /// Whether the innermost open container is an object.
    fn in_object(&self) -> bool;
    /// After the top-level value: nothing but whitespace may follow.
    fn finish(&mut self) -> Result<(), JsonError>;

    /// Steps out of open containers, skipping what is left in them, until `depth`
    /// remain. Used after a refusal, so that the rest of the body is still checked
    /// (a body that is not JSON is refused as such, whatever else is wrong with it),
    /// and to step past an impression list whose refusal waits for the `id` check.
    fn unwind(&mut self, depth: usize) -> Result<(), JsonError> {
        while self.depth() > depth {
            if self.in_object() {
                while self.key()?.is_some() {
                    self.skip()?;
                }
            } else {
                while self.item()? {
                    self.skip()?;
                }
            }
        }
        Ok(())
    }
}
