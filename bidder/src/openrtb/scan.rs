//! The bid path's JSON reader: one forward pass over the body (after a SIMD check that
//! the whole body is UTF-8) that checks every byte but converts only what the
//! extraction asks for.
//!
//! Why hand-written: the reference (simd-json) builds a tape of the whole document —
//! every number parsed, every string unescaped, every node stored — and the extraction
//! then reads perhaps a third of it. A request is a few kilobytes read once, so the
//! pass that touches each byte once and decodes nothing unasked is the cheaper one:
//! by 5–25% here, more on compact bodies than on pretty-printed ones (`cargo bench
//! --bench core`, the "stage: parse only" rows; README, "The decision core").
//!
//! What it checks, so that it refuses exactly what the reference refuses (pinned by
//! the differential tests and the `openrtb_request` fuzz target): UTF-8 of the
//! whole body up front (simdutf8), the JSON grammar of every value including skipped
//! ones, escapes and surrogate pairs, integers that overflow 64 bits and floats that
//! overflow `f64`, nesting past [`MAX_DEPTH`], and trailing bytes.
//!
//! Strings are scanned a machine word at a time (SWAR) for a quote, a backslash or a
//! control byte. A string with escapes that the extraction reads is unescaped in
//! place, as the reference does, so every `&str` the model holds borrows the body.
//! The body is split as the cursor moves (`split_at_mut`), so handing out `&'a str`
//! for bytes behind the cursor while still reading ahead needs no `unsafe` (the one
//! `unsafe`, in `string`, only skips checking UTF-8 a second time).

use std::mem;

use super::read::{JsonError, Kind, Reader, Scalar};
use super::MAX_DEPTH;

// The open containers' kinds are one bit each in a `u64`.
const _: () = assert!(MAX_DEPTH < 64);

/// Bytes a string is scanned by at a time.
const WORD_BYTES: usize = 8;
/// Integers with fewer digits than this cannot overflow 64 bits; longer ones are
/// converted even when skipped, to refuse an overflow as the reference does.
const SAFE_INT_DIGITS: usize = 18;
/// Floats without an exponent and with fewer digits than this cannot overflow `f64`.
const SAFE_FLOAT_DIGITS: usize = 300;

/// A forward-only reader over one body (see the module documentation).
pub(crate) struct Scanner<'a> {
    /// The bytes not yet read; what is behind the cursor has been handed out.
    rest: &'a mut [u8],
    /// The body's length: the cursor's offset, for errors, is this less `rest`'s.
    body_len: usize,
    depth: usize,
    /// Bit `d` set: the container at depth `d + 1` is an object.
    objects: u64,
    /// The cursor is right after an opening bracket (no comma expected).
    first: bool,
}

impl<'a> Scanner<'a> {
    /// A reader over `body`, refusing it at once if it is not UTF-8.
    pub(crate) fn new(body: &'a mut [u8]) -> Result<Self, JsonError> {
        if let Err(e) = simdutf8::compat::from_utf8(body) {
            return Err(syntax(e.valid_up_to(), "invalid UTF-8"));
        }
        Ok(Self {
            body_len: body.len(),
            rest: body,
            depth: 0,
            objects: 0,
            first: false,
        })
    }

    /// Bytes read so far.
    fn offset(&self) -> usize {
        self.body_len - self.rest.len()
    }

    #[cold]
    fn fail(&self, why: &'static str) -> JsonError {
        syntax(self.offset(), why)
    }

    #[inline(always)]
    fn advance(&mut self, n: usize) {
        let rest = mem::take(&mut self.rest);
        self.rest = &mut rest[n..];
    }

    /// Hands out the next `n` bytes; the cursor moves past them.
    #[inline(always)]
    fn take(&mut self, n: usize) -> &'a mut [u8] {
        let rest = mem::take(&mut self.rest);
        let (head, tail) = rest.split_at_mut(n);
        self.rest = tail;
        head
    }

    /// Skips whitespace; the next byte, if any.
    #[inline(always)]
    fn next_byte(&mut self) -> Option<u8> {
        match self.rest.first() {
            Some(&b) if b > b' ' => return Some(b),
            None => return None,
            Some(_) => {}
        }
        // Pretty-printed bodies indent with runs of spaces: those a word at a time.
        let mut n = 0;
        loop {
            if self.rest.get(n..n + WORD_BYTES) == Some(&[b' '; WORD_BYTES]) {
                n += WORD_BYTES;
            } else if matches!(self.rest.get(n), Some(b' ' | b'\n' | b'\r' | b'\t')) {
                n += 1;
            } else {
                break;
            }
        }
        self.advance(n);
        self.rest.first().copied()
    }

    fn expect(&mut self, byte: u8, why: &'static str) -> Result<(), JsonError> {
        if self.next_byte() != Some(byte) {
            return Err(self.fail(why));
        }
        self.advance(1);
        Ok(())
    }

    /// The length of the string at the cursor (quotes included) and whether it holds
    /// escapes; every escape checked.
    #[inline(always)]
    fn string_len(&self) -> Result<(usize, bool), JsonError> {
        let s = &*self.rest;
        debug_assert_eq!(s.first(), Some(&b'"'));
        let mut i = 1;
        let mut escaped = false;
        loop {
            // A word at a time to the next byte that needs a look, then that byte.
            match s.get(i..i + WORD_BYTES) {
                Some(word) => {
                    let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
                    let special = special_bytes(word);
                    if special == 0 {
                        i += WORD_BYTES;
                        continue;
                    }
                    i += (special.trailing_zeros() / 8) as usize;
                }
                // The last few bytes of the body, one by one.
                None => {
                    while s
                        .get(i)
                        .is_some_and(|&b| b >= 0x20 && b != b'"' && b != b'\\')
                    {
                        i += 1;
                    }
                }
            }
            match s.get(i) {
                None => return Err(syntax(self.offset() + i, "unterminated string")),
                Some(b'"') => return Ok((i + 1, escaped)),
                Some(b'\\') => {
                    escaped = true;
                    i += escape_len(&s[i..])
                        .ok_or_else(|| syntax(self.offset() + i, "invalid escape"))?;
                }
                Some(_) => return Err(syntax(self.offset() + i, "control byte in string")),
            }
        }
    }

    /// Reads the string at the cursor, unescaped in place when it holds escapes.
    #[inline(always)]
    fn string(&mut self) -> Result<&'a str, JsonError> {
        let (len, escaped) = self.string_len()?;
        let raw = self.take(len);
        let inner = &mut raw[1..len - 1];
        if escaped {
            return unescaped(inner, self.offset() - len);
        }
        let text: &'a [u8] = inner;
        debug_assert!(std::str::from_utf8(text).is_ok());
        // SAFETY: `new` checked the whole body as UTF-8, and `text` is the untouched
        // bytes between two quotes; a quote byte never occurs inside a multi-byte
        // sequence, so `text` holds whole characters only. Checking again cost a tenth
        // of the whole read (measured with perf).
        Ok(unsafe { std::str::from_utf8_unchecked(text) })
    }

    /// The length of the number at the cursor, checked against the JSON grammar, and
    /// whether it is a float (has a fraction or an exponent).
    fn number_len(&self) -> Result<(usize, bool, bool), JsonError> {
        let s = &*self.rest;
        let digits = |from: usize| {
            s.get(from..)
                .map_or(0, |t| t.iter().take_while(|b| b.is_ascii_digit()).count())
        };
        let mut i = usize::from(s.first() == Some(&b'-'));
        let int_digits = digits(i);
        if int_digits == 0 || (int_digits > 1 && s[i] == b'0') {
            return Err(self.fail("invalid number"));
        }
        i += int_digits;
        let (mut float, mut exponent) = (false, false);
        if s.get(i) == Some(&b'.') {
            let n = digits(i + 1);
            if n == 0 {
                return Err(self.fail("invalid number"));
            }
            float = true;
            i += 1 + n;
        }
        if matches!(s.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(s.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let n = digits(i);
            if n == 0 {
                return Err(self.fail("invalid number"));
            }
            float = true;
            exponent = true;
            i += n;
        }
        Ok((i, float, exponent))
    }

    /// Reads the number at the cursor: non-negative integers as `U64`, negative ones
    /// as `I64`, floats as `F64`, like the reference; out of range is refused.
    fn number(&mut self) -> Result<Scalar<'a>, JsonError> {
        let (len, float, _) = self.number_len()?;
        let at = self.offset();
        let text = &self.take(len)[..];
        // Checked by `number_len`: ASCII digits, signs, '.', 'e'.
        let text = std::str::from_utf8(text).map_err(|_| syntax(at, "invalid number"))?;
        let out_of_range = || syntax(at, "number out of range");
        if float {
            if let Some(value) = exact_decimal(text) {
                return Ok(Scalar::F64(value));
            }
            let value: f64 = text.parse().map_err(|_| out_of_range())?;
            return if value.is_finite() {
                Ok(Scalar::F64(value))
            } else {
                Err(out_of_range())
            };
        }
        match text.strip_prefix('-') {
            Some(_) => text.parse().map(Scalar::I64).map_err(|_| out_of_range()),
            None => text.parse().map(Scalar::U64).map_err(|_| out_of_range()),
        }
    }

    fn skip_number(&mut self) -> Result<(), JsonError> {
        let (len, float, exponent) = self.number_len()?;
        let digits = len - usize::from(self.rest.first() == Some(&b'-'));
        let may_overflow = if float {
            exponent || digits >= SAFE_FLOAT_DIGITS
        } else {
            digits >= SAFE_INT_DIGITS
        };
        if may_overflow {
            return self.number().map(|_| ());
        }
        self.advance(len);
        Ok(())
    }

    fn literal(&mut self, word: &'static [u8], value: Scalar<'a>) -> Result<Scalar<'a>, JsonError> {
        if !self.rest.starts_with(word) {
            return Err(self.fail("invalid literal"));
        }
        self.advance(word.len());
        Ok(value)
    }

    #[inline]
    fn enter(&mut self, object: bool) -> Result<(), JsonError> {
        if self.depth == MAX_DEPTH {
            return Err(JsonError::TooDeep);
        }
        self.objects = (self.objects & !(1 << self.depth)) | (u64::from(object) << self.depth);
        self.depth += 1;
        self.first = true;
        self.advance(1);
        Ok(())
    }

    #[inline]
    fn leave(&mut self) {
        debug_assert!(self.depth > 0);
        self.depth -= 1;
        self.first = false;
        self.advance(1);
    }

    /// Before the next member of a container: steps over the separating comma (none
    /// before the first) and gives `true`; at the closing bracket, steps out and
    /// gives `false`.
    #[inline(always)]
    fn separator(&mut self, close: u8) -> Result<bool, JsonError> {
        match self.next_byte() {
            Some(b) if b == close => {
                self.leave();
                Ok(false)
            }
            Some(b',') if !self.first => {
                self.advance(1);
                Ok(true)
            }
            _ if self.first => Ok(true),
            None => Err(self.fail("unterminated object or array")),
            Some(_) => Err(self.fail("expected ',' or a closing bracket")),
        }
    }
}

impl<'a> Reader<'a> for Scanner<'a> {
    #[inline(always)]
    fn peek(&mut self) -> Result<Kind, JsonError> {
        match self.next_byte() {
            Some(b'{') => Ok(Kind::Object),
            Some(b'[') => Ok(Kind::Array),
            Some(b'"') => Ok(Kind::String),
            Some(b'-' | b'0'..=b'9') => Ok(Kind::Number),
            Some(b't' | b'f') => Ok(Kind::Bool),
            Some(b'n') => Ok(Kind::Null),
            _ => Err(self.fail("expected a value")),
        }
    }

    #[inline(always)]
    fn scalar(&mut self) -> Result<Scalar<'a>, JsonError> {
        match self.peek()? {
            Kind::String => self.string().map(Scalar::Str),
            Kind::Number => self.number(),
            Kind::Bool if self.rest[0] == b't' => self.literal(b"true", Scalar::Bool(true)),
            Kind::Bool => self.literal(b"false", Scalar::Bool(false)),
            Kind::Null => self.literal(b"null", Scalar::Null),
            Kind::Object | Kind::Array => self.skip().map(|()| Scalar::Container),
        }
    }

    fn skip(&mut self) -> Result<(), JsonError> {
        let base = self.depth;
        loop {
            match self.peek()? {
                Kind::Object => self.enter(true)?,
                Kind::Array => self.enter(false)?,
                Kind::String => {
                    let (len, _) = self.string_len()?;
                    self.advance(len);
                }
                Kind::Number => self.skip_number()?,
                Kind::Bool | Kind::Null => {
                    self.scalar()?;
                }
            }
            // To the next value to skip, or out when the one asked for is done.
            loop {
                if self.depth == base {
                    return Ok(());
                }
                if self.in_object() {
                    if self.separator(b'}')? {
                        self.skip_key()?;
                        break;
                    }
                } else if self.separator(b']')? {
                    self.first = false;
                    break;
                }
            }
        }
    }

    #[inline]
    fn enter_object(&mut self) -> Result<(), JsonError> {
        debug_assert_eq!(self.rest.first(), Some(&b'{'));
        self.enter(true)
    }

    #[inline]
    fn enter_array(&mut self) -> Result<(), JsonError> {
        debug_assert_eq!(self.rest.first(), Some(&b'['));
        self.enter(false)
    }

    #[inline(always)]
    fn key(&mut self) -> Result<Option<&'a str>, JsonError> {
        debug_assert!(self.in_object());
        if !self.separator(b'}')? {
            return Ok(None);
        }
        if self.next_byte() != Some(b'"') {
            return Err(self.fail("expected a key"));
        }
        let key = self.string()?;
        // Compact bodies put the colon right after the key.
        if self.rest.first() == Some(&b':') {
            self.advance(1);
        } else {
            self.expect(b':', "expected ':' after a key")?;
        }
        self.first = false;
        Ok(Some(key))
    }

    #[inline]
    fn item(&mut self) -> Result<bool, JsonError> {
        debug_assert!(!self.in_object());
        if !self.separator(b']')? {
            return Ok(false);
        }
        self.first = false;
        Ok(true)
    }

    #[inline]
    fn depth(&self) -> usize {
        self.depth
    }

    #[inline]
    fn in_object(&self) -> bool {
        self.depth > 0 && self.objects & (1 << (self.depth - 1)) != 0
    }

    fn finish(&mut self) -> Result<(), JsonError> {
        debug_assert_eq!(self.depth, 0);
        match self.next_byte() {
            None => Ok(()),
            Some(_) => Err(self.fail("trailing characters after the request")),
        }
    }
}

impl Scanner<'_> {
    /// A key being skipped: checked, not unescaped.
    fn skip_key(&mut self) -> Result<(), JsonError> {
        if self.next_byte() != Some(b'"') {
            return Err(self.fail("expected a key"));
        }
        let (len, _) = self.string_len()?;
        self.advance(len);
        self.expect(b':', "expected ':' after a key")?;
        self.first = false;
        Ok(())
    }
}

/// Most significant digits a decimal may have for [`exact_decimal`]: below 2^53, so
/// the digits are an exact `f64`.
const EXACT_DIGITS: usize = 15;
/// Powers of ten that are exact `f64`s (up to 10^22).
const EXACT_POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A plain decimal (`-12.345`, no exponent) of at most [`EXACT_DIGITS`] digits, read
/// the fast way: the digits and the power of ten are both exact, so one division is
/// correctly rounded and equals what `str::parse` gives (Clinger's fast path). `None`
/// for anything else, which the caller reads with `str::parse`.
fn exact_decimal(text: &str) -> Option<f64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.')?;
    if int.len() + frac.len() > EXACT_DIGITS
        || !(int.bytes().chain(frac.bytes())).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mantissa = int
        .bytes()
        .chain(frac.bytes())
        .fold(0u64, |m, b| m * 10 + u64::from(b - b'0'));
    let value = mantissa as f64 / EXACT_POWERS_OF_TEN[frac.len()];
    Some(if negative { -value } else { value })
}

#[cold]
fn syntax(offset: usize, why: &'static str) -> JsonError {
    JsonError::Syntax { offset, why }
}

/// A mask with the high bit set in the first byte of `word` (little-endian order)
/// that is a quote, a backslash or below 0x20, or zero when none is: the bytes that
/// end a plain run in a JSON string, for this reader and for the response encoder's
/// escaping (`respond/json.rs`). Bits above the
/// first match can be spurious (a borrow carries into the next byte), so only its
/// lowest set bit is read: the classic has-zero-byte and has-less-than tests,
/// Hacker's Delight 6-1.
#[inline]
pub(crate) fn special_bytes(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_bytes = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    zero_bytes(word ^ (ONES * u64::from(b'"')))
        | zero_bytes(word ^ (ONES * u64::from(b'\\')))
        | below_space
}

/// The length of the escape at the start of `s` (which begins with a backslash), or
/// `None` when it is not one JSON allows: a lone or reversed surrogate is refused, as
/// the reference refuses it.
fn escape_len(s: &[u8]) -> Option<usize> {
    match s.get(1)? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(2),
        b'u' => {
            let high = hex4(s.get(2..6)?)?;
            match high {
                0xD800..=0xDBFF => {
                    if s.get(6..8)? != b"\\u" {
                        return None;
                    }
                    let low = hex4(s.get(8..12)?)?;
                    (0xDC00..=0xDFFF).contains(&low).then_some(12)
                }
                0xDC00..=0xDFFF => None,
                _ => Some(6),
            }
        }
        _ => None,
    }
}

fn hex4(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |acc, &d| {
        let v = char::from(d).to_digit(16)?;
        Some(acc << 4 | v)
    })
}

/// The escaped string content `s` (which starts at byte `at`) unescaped in place, and
/// checked as UTF-8 again rather than trusted to the unescaping (rare: most strings
/// hold no escape).
#[cold]
fn unescaped(s: &mut [u8], at: usize) -> Result<&str, JsonError> {
    let used = unescape_in_place(s);
    std::str::from_utf8(&s[..used]).map_err(|_| syntax(at, "invalid UTF-8"))
}

/// Rewrites the escaped string content `s` (already checked by [`escape_len`]) as its
/// unescaped text at the front of `s`; returns that text's length. Unescaped text is
/// never longer than its escaped form, so the write never passes the read.
fn unescape_in_place(s: &mut [u8]) -> usize {
    let (mut read, mut write) = (0, 0);
    while read < s.len() {
        let b = s[read];
        if b != b'\\' {
            s[write] = b;
            read += 1;
            write += 1;
            continue;
        }
        let len = escape_len(&s[read..]).expect("escapes were checked by string_len");
        let c = match s[read + 1] {
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let high = hex4(&s[read + 2..read + 6]).expect("checked");
                let code = if len == 12 {
                    let low = hex4(&s[read + 8..read + 12]).expect("checked");
                    0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                } else {
                    high
                };
                char::from_u32(code).expect("surrogates were checked")
            }
            other => char::from(other),
        };
        let mut utf8 = [0; 4];
        let encoded = c.encode_utf8(&mut utf8).as_bytes();
        debug_assert!(encoded.len() <= len);
        s[write..write + encoded.len()].copy_from_slice(encoded);
        read += len;
        write += encoded.len();
    }
    write
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_fast_decimal_path_equals_str_parse(
            negative in any::<bool>(),
            int in "[0-9]{1,9}",
            frac in "[0-9]{1,9}",
        ) {
            let text = format!("{}{int}.{frac}", if negative { "-" } else { "" });
            let parsed: f64 = text.parse().unwrap();
            match exact_decimal(&text) {
                Some(fast) => prop_assert_eq!(fast.to_bits(), parsed.to_bits(), "{}", text),
                None => prop_assert!(int.len() + frac.len() > EXACT_DIGITS),
            }
        }

        #[test]
        fn the_word_test_finds_the_first_special_byte(bytes in prop::array::uniform8(any::<u8>())) {
            let first = bytes.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            let mask = special_bytes(u64::from_le_bytes(bytes));
            let found = (mask != 0).then(|| (mask.trailing_zeros() / 8) as usize);
            prop_assert_eq!(found, first);
        }
    }
}
