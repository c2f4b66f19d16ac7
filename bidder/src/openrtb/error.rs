//! Why a body is not a bid request we can act on. Each variant maps to one `400`
//! reason and one drop counter; the message names the field and the limit so an
//! exchange's integration engineer can fix their side from the log line alone.

/// A bid request body that was refused. Building one never allocates (the JSON
/// variant keeps the reader's fault, which holds no heap data for syntax errors).
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The body exceeds [`super::MAX_REQUEST_BYTES`]; refused before any parsing.
    #[error("bid request is {bytes} bytes, over the {max} byte limit")]
    TooLarge {
        /// Size of the body received.
        bytes: usize,
        /// The limit in force.
        max: usize,
    },
    /// The body is not valid JSON (or not valid UTF-8).
    #[error("bid request is not valid JSON (near byte {offset}): {source}")]
    InvalidJson {
        /// Byte offset the reader reports for the fault.
        offset: usize,
        /// What the reader found there.
        #[source]
        source: JsonSyntax,
    },
    /// Objects and arrays nest deeper than [`super::MAX_DEPTH`].
    #[error("bid request nests objects/arrays deeper than {max} levels")]
    TooDeep {
        /// The limit in force.
        max: usize,
    },
    /// The top-level JSON value is not an object.
    #[error("bid request is not a JSON object")]
    NotAnObject,
    /// `id` is absent or an empty string.
    #[error("bid request has no `id` (required, non-empty string)")]
    MissingId,
    /// `imp` is absent or an empty array.
    #[error("bid request has no `imp` (required, non-empty array)")]
    MissingImp,
    /// An impression has no `id`, or an empty one.
    #[error("`imp[{index}]` has no `id` (required, non-empty string)")]
    ImpMissingId {
        /// Position of the impression in `imp`.
        index: usize,
    },
    /// A required field has the wrong JSON type (optional ones are ignored instead).
    #[error("`{field}` has the wrong JSON type, expected {expected}")]
    WrongType {
        /// Path of the field, e.g. `imp[].id`.
        field: &'static str,
        /// The JSON type the spec requires.
        expected: &'static str,
    },
    /// A list whose truncation could change the outcome (block lists, seat lists,
    /// supply chain) is longer than its limit, so the request is refused whole.
    #[error("`{field}` has {count} items, over the limit of {max}")]
    ListTooLong {
        /// Path of the list, e.g. `bcat` or `source.schain.nodes`.
        field: &'static str,
        /// Items on the wire.
        count: usize,
        /// The limit in force.
        max: usize,
    },
}

impl ParseError {
    /// Whether the body was refused as JSON (not JSON, or nested too deep) rather than
    /// as a bid request: such a refusal stands whatever else the body holds.
    pub fn is_json(&self) -> bool {
        matches!(
            self,
            ParseError::InvalidJson { .. } | ParseError::TooDeep { .. }
        )
    }
}

/// What was wrong with bytes that are not JSON, in the words of the reader that found it.
#[derive(Debug, thiserror::Error)]
pub enum JsonSyntax {
    /// Found by the bid path's one-pass reader.
    #[error("{0}")]
    Scan(&'static str),
    /// Found by simd-json, the reference reader.
    #[error(transparent)]
    Tape(simd_json::Error),
}
