//! Money and multipliers as integers, and decimal text read exactly: shared by the
//! bidder (notice prices, the money stage) and the agent (operators type `--margin
//! 1.25` and `--max-cpm 4.50`), so both read `1.10` the same way and neither goes
//! through `f64` on the way from text to micros.
//!
//! Both scales are millionths: one currency unit is [`MICROS_PER_UNIT`] micros, ×1.0
//! is [`PPM_ONE`] parts per million.

/// Micros in one currency unit (1 USD = 1,000,000 micros).
pub const MICROS_PER_UNIT: i64 = 1_000_000;

/// ×1.0 in parts per million.
pub const PPM_ONE: u32 = 1_000_000;

/// Decimals a millionths value carries.
pub const MILLIONTHS_DECIMALS: usize = 6;

/// `value × ratio`, for a ratio in parts per million, without overflow or floats.
/// Prices are at most a trillion micros and ratios a few million, so the 64-bit
/// product almost always fits (division by a constant compiles to a multiply); the
/// 128-bit path is there for the values that do not.
#[inline]
pub fn apply_ppm(value_micros: i64, ratio_ppm: u32) -> i64 {
    match value_micros.checked_mul(i64::from(ratio_ppm)) {
        Some(product) => product / i64::from(PPM_ONE),
        None => (i128::from(value_micros) * i128::from(ratio_ppm) / i128::from(PPM_ONE)) as i64,
    }
}

/// What to do with digits past the sixth decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtraDecimals {
    /// Refuse the text: an operator typed more precision than exists.
    Refuse,
    /// Round up to the next millionth: a price an exchange bills is charged at least in
    /// full (fail closed), never a micro less.
    RoundUp,
}

/// Why decimal text is not a millionths value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecimalError {
    /// Not `[-]digits[.digits]`.
    Malformed,
    /// More than six decimals, with [`ExtraDecimals::Refuse`].
    TooPrecise,
    /// Beyond `i64` millionths.
    TooLarge,
}

impl core::fmt::Display for DecimalError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            DecimalError::Malformed => "is not a decimal number",
            DecimalError::TooPrecise => "has more than 6 decimals",
            DecimalError::TooLarge => "is too large",
        })
    }
}

/// Parses `[-]digits[.digits]` (no spaces, no exponent, no `+`) into millionths,
/// exactly: `1.10` is 1_100_000 and `2.500001` is 2_500_001.
pub fn parse_millionths(text: &str, extra: ExtraDecimals) -> Result<i64, DecimalError> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (unsigned, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || fraction.is_some_and(|f| !all_digits(f)) {
        return Err(DecimalError::Malformed);
    }
    let fraction = fraction.unwrap_or("");
    let (kept, excess) = fraction.split_at(fraction.len().min(MILLIONTHS_DECIMALS));
    let round_up = match extra {
        _ if excess.bytes().all(|b| b == b'0') => false,
        ExtraDecimals::Refuse => return Err(DecimalError::TooPrecise),
        ExtraDecimals::RoundUp => true,
    };
    let mut value: i64 = 0;
    for b in whole.bytes().chain(kept.bytes()) {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(i64::from(b - b'0')))
            .ok_or(DecimalError::TooLarge)?;
    }
    for _ in kept.len()..MILLIONTHS_DECIMALS {
        value = value.checked_mul(10).ok_or(DecimalError::TooLarge)?;
    }
    if round_up {
        value = value.checked_add(1).ok_or(DecimalError::TooLarge)?;
    }
    Ok(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_exactly() {
        let cases = [
            ("1", 1_000_000),
            ("1.1", 1_100_000),
            ("1.10", 1_100_000),
            ("0.9", 900_000),
            ("2.500001", 2_500_001),
            ("-0.5", -500_000),
            ("0", 0),
            ("00.000", 0),
            ("1.2000000", 1_200_000),
            ("9223372036854.775807", i64::MAX),
        ];
        for (text, want) in cases {
            assert_eq!(
                parse_millionths(text, ExtraDecimals::Refuse),
                Ok(want),
                "{text}"
            );
        }
    }

    #[test]
    fn bad_text_is_refused_with_its_reason() {
        use DecimalError::*;
        let cases = [
            ("", Malformed),
            (".", Malformed),
            ("1.", Malformed),
            (".5", Malformed),
            ("abc", Malformed),
            ("1e3", Malformed),
            ("--1", Malformed),
            ("+1", Malformed),
            (" 1", Malformed),
            ("1.2.3", Malformed),
            ("1.1234567", TooPrecise),
            ("9223372036854.775808", TooLarge),
            ("99999999999999999", TooLarge),
        ];
        for (text, want) in cases {
            assert_eq!(
                parse_millionths(text, ExtraDecimals::Refuse),
                Err(want),
                "{text}"
            );
        }
    }

    #[test]
    fn extra_decimals_round_up_when_asked() {
        let up = |t| parse_millionths(t, ExtraDecimals::RoundUp);
        assert_eq!(up("1.2345671"), Ok(1_234_568));
        assert_eq!(up("1.2345670000"), Ok(1_234_567));
        assert_eq!(up("0.0000001"), Ok(1));
        assert_eq!(up("9223372036854.7758071"), Err(DecimalError::TooLarge));
    }

    #[test]
    fn ppm_multiplication_is_exact_and_does_not_overflow() {
        assert_eq!(apply_ppm(2_000_000, 1_500_000), 3_000_000);
        assert_eq!(apply_ppm(2_000_000, 900_000), 1_800_000);
        assert_eq!(apply_ppm(1, 999_999), 0);
        assert_eq!(apply_ppm(i64::MAX / 2, 2 * PPM_ONE), i64::MAX - 1);
    }
}
