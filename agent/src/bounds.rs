//! The hard bounds every change must stay inside. The agent — an operator through the
//! socket, or later the optimizer — can move strategy only within these; they are
//! constants, not configuration, so no config file or prompt can widen them.
//!
//! Multipliers are parts per million, money micro-units (see [`crate::units`]).

/// Margin multiplier on a campaign's value: ×0.90 to ×1.50.
pub const MARGIN_PPM: (i64, i64) = (900_000, 1_500_000);
/// Bid shading: ×0.10 to ×1.00 (shading never raises a price).
pub const SHADING_PPM: (i64, i64) = (100_000, 1_000_000);
/// Pacing: none to every eligible request.
pub const PACING_PPM: (i64, i64) = (0, 1_000_000);
/// Smallest max CPM a strategy may set; the largest is the campaign's ceiling.
pub const MIN_MAX_CPM_MICROS: i64 = 1;
/// A daily budget override may be at most this many times the configured budget:
/// enough for a real push, not for an extra zero typed by mistake.
pub const MAX_BUDGET_RAISE: i64 = 10;
/// Partner QPS limit and burst: 0 (shut off) to ten million.
pub const PARTNER_LIMIT: (i64, i64) = (0, 10_000_000);
/// Longest reasoning ("why") kept with a change, bytes.
pub const MAX_WHY_BYTES: usize = bidder_common::table::strategy::MAX_REASONING_BYTES;

/// A multiplier given as a decimal (a model's `1.2`) in parts per million, clamped to
/// `bounds`; `None` when it is not a finite number.
pub fn clamp_ppm(value: f64, (min, max): (i64, i64)) -> Option<i64> {
    value
        .is_finite()
        .then(|| ((value * 1e6).round() as i64).clamp(min, max))
}

/// Reasoning cut to at most `max_bytes` at the last sentence end that fits (else the
/// last word), control characters (terminal escapes) replaced by spaces.
pub fn cut_reasoning(text: &str, max_bytes: usize) -> String {
    let clean: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.len() <= max_bytes {
        return clean;
    }
    let mut fit = max_bytes;
    while !clean.is_char_boundary(fit) {
        fit -= 1;
    }
    let head = &clean[..fit];
    let sentence_end = head
        .char_indices()
        .rev()
        .find(|&(i, c)| {
            matches!(c, '.' | '!' | '?') && clean[i + 1..].starts_with(|n: char| n.is_whitespace())
        })
        .map(|(i, _)| i + 1);
    let end = sentence_end
        .or_else(|| head.rfind(char::is_whitespace))
        .filter(|&e| e > 0)
        .unwrap_or(fit);
    clean[..end].trim_end().to_string()
}

/// A value outside its bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfBounds {
    pub field: &'static str,
    pub value: i64,
    pub min: i64,
    pub max: i64,
}

impl std::fmt::Display for OutOfBounds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} = {} is outside {}..={}",
            self.field, self.value, self.min, self.max
        )
    }
}

/// `value` if it is within `min..=max`.
pub fn check(field: &'static str, value: i64, (min, max): (i64, i64)) -> Result<i64, OutOfBounds> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(OutOfBounds {
            field,
            value,
            min,
            max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_inclusive_and_name_the_field() {
        assert_eq!(check("margin_ppm", 900_000, MARGIN_PPM), Ok(900_000));
        assert_eq!(check("margin_ppm", 1_500_000, MARGIN_PPM), Ok(1_500_000));
        let err = check("margin_ppm", 1_500_001, MARGIN_PPM).unwrap_err();
        assert_eq!(
            err.to_string(),
            "margin_ppm = 1500001 is outside 900000..=1500000"
        );
        assert!(check("qps_limit", -1, PARTNER_LIMIT).is_err());
    }

    #[test]
    fn model_numbers_are_clamped_and_non_numbers_refused() {
        #[rustfmt::skip]
        let cases: [(f64, Option<i64>); 6] = [
            (1.2, Some(1_200_000)),
            (9.0, Some(1_500_000)),
            (0.1, Some(900_000)),
            (-3.0, Some(900_000)),
            (f64::NAN, None),
            (f64::INFINITY, None),
        ];
        for (value, want) in cases {
            assert_eq!(clamp_ppm(value, MARGIN_PPM), want, "{value}");
        }
    }

    #[test]
    fn reasoning_is_cut_at_a_sentence_then_a_word_and_escapes_are_dropped() {
        let long = "Win rate fell. ".repeat(200);
        let cut = cut_reasoning(&long, 280);
        assert!(cut.len() <= 280 && cut.ends_with("fell."), "{cut:?}");
        let words = "word ".repeat(100);
        let cut = cut_reasoning(&words, 280);
        assert!(cut.len() <= 280 && cut.ends_with("word"), "{cut:?}");
        let one = "x".repeat(400);
        assert_eq!(cut_reasoning(&one, 280).len(), 280);
        let accents = "é".repeat(200); // 2 bytes each: never cut inside one
        assert_eq!(cut_reasoning(&accents, 281).len(), 280);
        assert_eq!(cut_reasoning("ok \u{1b}[31mred", 280), "ok  [31mred");
        assert_eq!(cut_reasoning("  short.  ", 280), "short.");
    }
}
