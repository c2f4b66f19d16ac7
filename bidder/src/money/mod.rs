//! Money: integer micro-units, and the only place floats meet money.
//!
//! One currency unit (e.g. 1 USD) is 1,000,000 micros. A CPM of 1.50 USD is
//! 1,500,000 micros per thousand impressions; the price of one impression is
//! `cpm_micros / 1000`. Every sum, comparison and budget operation works on `i64`
//! micros; floats appear only at the wire edge (OpenRTB prices and floors are JSON
//! numbers), and are converted here exactly once.
//!
//! Everything that moves money lives below: [`budget`] (three counters per campaign,
//! moved by CAS, never overspent), [`ledger`] (reservations until their notice or
//! expiry), [`journal`] (settlements and releases on disk before a notice is
//! answered, read back at start), [`lease`] (how much money in flight the journal
//! allows each campaign, so a crash never loses track of it), [`bid_id`] (the ids reservations and notices are keyed by), [`notice`]
//! (signed win/bill/loss URLs) and [`notice_keys`] (the keys, rotated on reload).

pub mod bid_id;
pub mod budget;
pub mod currency;
pub mod feedback;
pub mod frequency;
pub mod journal;
pub mod lease;
pub mod ledger;
pub mod notice;
pub mod notice_keys;
pub mod period;

pub use bidder_common::money::{
    apply_ppm, parse_millionths, DecimalError, ExtraDecimals, MICROS_PER_UNIT, PPM_ONE,
};

/// Appends the decimal digits of `value` without allocating: prices, ids and counts on
/// the response path and in notice URLs.
pub fn write_u64(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Largest CPM we accept from the wire or config: 1,000,000 currency units. Anything
/// above is a typo or an attack; keeping a bound keeps every product in `i64` range.
pub const MAX_CPM_MICROS: i64 = 1_000_000 * MICROS_PER_UNIT;

/// Converts a wire CPM (a JSON number in currency units) to micros, rounding to the
/// nearest micro. Returns `None` for NaN, negative or absurd values so the caller can
/// treat them as malformed input rather than money.
pub fn cpm_from_f64(cpm: f64) -> Option<i64> {
    if !cpm.is_finite() || cpm < 0.0 {
        return None;
    }
    let micros = (cpm * MICROS_PER_UNIT as f64).round();
    if micros > MAX_CPM_MICROS as f64 {
        return None;
    }
    Some(micros as i64)
}

/// Converts micros back to a wire CPM for encoding. Exact for every value we produce
/// (|micros| < 2^53), so the exchange sees the price we reserved.
pub fn cpm_to_f64(micros: i64) -> f64 {
    micros as f64 / MICROS_PER_UNIT as f64
}

/// Cost of a single impression priced at `cpm_micros`, rounded up: a budget is charged
/// at least what the exchange will bill, never less (fail closed).
pub fn impression_cost_micros(cpm_micros: i64) -> i64 {
    debug_assert!(cpm_micros >= 0);
    (cpm_micros + 999) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_cpm_converts_to_nearest_micro() {
        assert_eq!(cpm_from_f64(0.03), Some(30_000));
        assert_eq!(cpm_from_f64(1.5), Some(1_500_000));
        assert_eq!(cpm_from_f64(0.0000004), Some(0));
        assert_eq!(cpm_from_f64(2.9999995), Some(3_000_000));
    }

    #[test]
    fn nonsense_cpm_is_rejected() {
        assert_eq!(cpm_from_f64(f64::NAN), None);
        assert_eq!(cpm_from_f64(-0.01), None);
        assert_eq!(cpm_from_f64(f64::INFINITY), None);
        assert_eq!(cpm_from_f64(2e6), None);
    }

    #[test]
    fn impression_cost_rounds_up() {
        assert_eq!(impression_cost_micros(1_500_000), 1_500);
        assert_eq!(impression_cost_micros(1_500_001), 1_501);
        assert_eq!(impression_cost_micros(0), 0);
    }

    #[test]
    fn micros_round_trip_through_the_wire() {
        for micros in [1, 30_000, 1_234_567, MAX_CPM_MICROS] {
            assert_eq!(cpm_from_f64(cpm_to_f64(micros)), Some(micros));
        }
    }
}
