//! Decimal text ↔ fixed-point integers, without floats: `1.10` ↔ 1_100_000 ppm,
//! `2.50` (currency units) ↔ 2_500_000 micros. Both scales are 10⁻⁶, so one pair of
//! functions serves multipliers and money.

/// Units per whole.
pub const SCALE: i64 = bidder_common::money::MICROS_PER_UNIT;

/// Parses `[-]digits[.digits]` with at most 6 decimals into millionths, exactly (the
/// same reader the bidder uses for prices).
pub fn parse_millionths(text: &str) -> Result<i64, String> {
    use bidder_common::money::{parse_millionths, DecimalError, ExtraDecimals};
    parse_millionths(text.trim(), ExtraDecimals::Refuse).map_err(|e| match e {
        DecimalError::TooLarge => format!("`{text}` is too large"),
        _ => format!("`{text}` is not a decimal number with at most 6 decimals"),
    })
}

/// Millionths as decimal text, trailing zeros trimmed but at least 2 decimals
/// (`1100000` → `1.10`, `2500000` → `2.50`, `1234567` → `1.234567`).
pub fn format_millionths(value: i64) -> String {
    let sign = if value < 0 { "-" } else { "" };
    let v = value.unsigned_abs();
    let whole = v / SCALE as u64;
    let mut frac = format!("{:06}", v % SCALE as u64);
    while frac.len() > 2 && frac.ends_with('0') {
        frac.pop();
    }
    format!("{sign}{whole}.{frac}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_text_is_read_by_the_shared_exact_reader_with_its_own_messages() {
        // The reader itself is tested in bidder-common; here, what operators see.
        assert_eq!(parse_millionths(" 1.10 "), Ok(1_100_000));
        let err = parse_millionths("1.1234567").unwrap_err();
        assert!(err.contains("at most 6 decimals"), "{err}");
        let err = parse_millionths("99999999999999999").unwrap_err();
        assert!(err.contains("too large"), "{err}");
    }

    #[test]
    fn millionths_print_with_two_to_six_decimals() {
        assert_eq!(format_millionths(1_100_000), "1.10");
        assert_eq!(format_millionths(2_500_001), "2.500001");
        assert_eq!(format_millionths(0), "0.00");
        assert_eq!(format_millionths(-500_000), "-0.50");
    }
}
