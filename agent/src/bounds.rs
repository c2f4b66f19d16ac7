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
}
