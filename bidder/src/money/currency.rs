//! Prices in other currencies, in ours: the configured `[currency_rates_micros]`, used
//! for floors at bid time and for the clearing price a notice reports in the
//! exchange's currency (`${AUCTION_CURRENCY}`).

use arc_swap::ArcSwap;
use rustc_hash::FxHashMap;

use crate::money::MICROS_PER_UNIT;

/// `amount_micros` of a currency worth `rate_micros` of ours per unit, in ours,
/// rounded up (a floor is never undercut, a charge never under-counted); `None` if it
/// overflows.
pub fn convert_up(amount_micros: i64, rate_micros: i64) -> Option<i64> {
    let unit = i128::from(MICROS_PER_UNIT);
    let converted = (i128::from(amount_micros) * i128::from(rate_micros) + unit - 1) / unit;
    i64::try_from(converted).ok()
}

/// Our currency and the rates of the others, as one configuration states them.
#[derive(Debug, Clone, Default)]
pub struct Rates {
    /// ISO-4217 code of the currency budgets and bids are in.
    pub ours: String,
    /// Micros of ours per one unit of each foreign currency (upper-case codes).
    pub rates_micros: FxHashMap<String, i64>,
}

/// What a notice's currency said about its price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Converted {
    /// Already ours (or not stated: exchanges bill in the currency of the bid).
    Ours(i64),
    /// Converted with the configured rate.
    Converted(i64),
    /// A currency without a rate, or a malformed code: the price cannot be read.
    Unknown,
}

/// The rates notices are read with; a reload swaps them. Shared by the daemon (which
/// installs) and the control thread (which reads).
#[derive(Debug, Default)]
pub struct CurrencyBook(ArcSwap<Rates>);

impl CurrencyBook {
    pub fn new(rates: Rates) -> CurrencyBook {
        CurrencyBook(ArcSwap::from_pointee(rates))
    }

    /// Replaces the rates (a reload).
    pub fn install(&self, rates: Rates) {
        self.0.store(std::sync::Arc::new(rates));
    }

    /// `price_micros` in `currency` (as the exchange filled in `${AUCTION_CURRENCY}`,
    /// `None` when absent) in our currency. An unsubstituted macro or an empty value
    /// means the exchange did not say: the bid's currency, ours.
    pub fn to_ours(&self, price_micros: i64, currency: Option<&str>) -> Converted {
        let code = currency.map(str::trim).unwrap_or("");
        if code.is_empty() || code.contains("AUCTION_CURRENCY") {
            return Converted::Ours(price_micros);
        }
        let rates = self.0.load();
        if code.eq_ignore_ascii_case(&rates.ours) {
            return Converted::Ours(price_micros);
        }
        let rate = rates.rates_micros.get(&code.to_ascii_uppercase());
        match rate.and_then(|&rate| convert_up(price_micros, rate)) {
            Some(micros) => Converted::Converted(micros),
            None => Converted::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book() -> CurrencyBook {
        CurrencyBook::new(Rates {
            ours: "USD".into(),
            rates_micros: [("EUR".to_owned(), 1_080_000), ("JPY".to_owned(), 6_700)]
                .into_iter()
                .collect(),
        })
    }

    #[test]
    fn foreign_prices_convert_up_and_unknown_ones_say_so() {
        let book = book();
        assert_eq!(book.to_ours(1_500_000, None), Converted::Ours(1_500_000));
        assert_eq!(
            book.to_ours(1_500_000, Some("usd")),
            Converted::Ours(1_500_000)
        );
        assert_eq!(
            book.to_ours(1_500_000, Some("${AUCTION_CURRENCY}")),
            Converted::Ours(1_500_000)
        );
        assert_eq!(
            book.to_ours(1_500_000, Some("%24%7BAUCTION_CURRENCY%7D")),
            Converted::Ours(1_500_000)
        );
        assert_eq!(
            book.to_ours(1_500_000, Some("EUR")),
            Converted::Converted(1_620_000)
        );
        // 150 JPY at 0.0067 USD: 1.005 USD; one micro more is rounded up, never down.
        assert_eq!(
            book.to_ours(150_000_001, Some("jpy")),
            Converted::Converted(1_005_001)
        );
        assert_eq!(book.to_ours(1_500_000, Some("GBP")), Converted::Unknown);
        assert_eq!(book.to_ours(1_500_000, Some("€")), Converted::Unknown);
        assert_eq!(
            book.to_ours(i64::MAX, Some("EUR")),
            Converted::Unknown,
            "overflow"
        );
    }

    #[test]
    fn a_reload_swaps_the_rates() {
        let book = book();
        book.install(Rates {
            ours: "EUR".into(),
            rates_micros: FxHashMap::default(),
        });
        assert_eq!(book.to_ours(1, Some("EUR")), Converted::Ours(1));
        assert_eq!(book.to_ours(1, Some("USD")), Converted::Unknown);
    }
}
