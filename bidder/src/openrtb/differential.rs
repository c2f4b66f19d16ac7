//! Holding the bid path's reader to the reference: the same body through both
//! [`JsonReader`]s must give the same request (every field and every pool, compared
//! through their `Debug` text) or the same class of refusal: the same [`ParseError`]
//! variant, except that "not JSON" and "nested too deep" are one class — a body that
//! is both may be named by either fault, as each reader meets them in its own order
//! (simd-json finds some syntax faults in a first pass over the whole body, before it
//! counts depth; the one-pass reader reports whichever comes first).
//! Used by the reader tests (`openrtb/tests.rs`, `tests/corpus.rs`) and the
//! `openrtb_request` fuzz target; it allocates, so it is never on the bid path.

use std::mem::discriminant;

use super::{JsonReader, ParseError, Parser};

/// What both readers made of a body they agree on.
#[derive(Debug, PartialEq, Eq)]
pub enum Agreement {
    /// Both read the same request.
    Accepted,
    /// Both refused it the same way (this is the one-pass reader's error).
    Refused(String),
}

/// Reads `body` with both readers (each on its own copy: readers unescape in place).
///
/// # Errors
/// A description of the first disagreement: one accepted and one refused, different
/// refusals, or different requests.
pub fn compare_readers(body: &[u8]) -> Result<Agreement, String> {
    let one_pass = read(JsonReader::OnePass, body);
    let reference = read(JsonReader::Tape, body);
    match (one_pass, reference) {
        (Ok(a), Ok(b)) if a == b => Ok(Agreement::Accepted),
        (Ok(a), Ok(b)) => Err(format!(
            "different requests:\none pass:  {a}\nreference: {b}"
        )),
        (Err(a), Err(b)) if same_class(&a, &b) => Ok(Agreement::Refused(a.to_string())),
        (a, b) => Err(format!(
            "different outcomes:\none pass:  {}\nreference: {}",
            outcome(&a),
            outcome(&b)
        )),
    }
}

fn same_class(a: &ParseError, b: &ParseError) -> bool {
    discriminant(a) == discriminant(b) || (a.is_json() && b.is_json())
}

fn read(reader: JsonReader, body: &[u8]) -> Result<String, ParseError> {
    let mut copy = body.to_vec();
    let mut parser = Parser::with_reader(reader);
    let parsed = parser.parse(&mut copy).map(|req| format!("{:?}", *req));
    parsed
}

fn outcome(result: &Result<String, ParseError>) -> String {
    match result {
        Ok(req) => format!("accepted {req}"),
        Err(e) => format!("refused: {e} ({e:?})"),
    }
}
