//! The oracle the strategies are measured against: it knows the market model — each
//! auction's distribution of the price to win (its segment's median at that hour, σ,
//! the floor) — but not the draw, and bids every auction the price that maximises
//! (λ − b)·W(b). By the Lagrangian argument these are the cheapest bids that buy a
//! given number of impressions in expectation; λ is searched so the oracle buys the
//! impressions a strategy bought (its CPM there is the one to beat), or spends the
//! budget (the oracle's own row). It pays first price, like everyone.

use super::market::{normal_cdf, Auction, Market};
use super::report::impression_cost_micros;

/// Points of the precomputed best-bid table over ln(λ / median).
const TABLE_POINTS: usize = 801;
const TABLE_LOG_RANGE: f64 = 8.0;

/// What the oracle bought.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    pub impressions: u64,
    pub spend_micros: i64,
    /// Σ (true value − price) over the impressions, CPM micros.
    pub surplus_cpm_micros: i64,
}

impl Tally {
    pub fn avg_cpm_micros(&self) -> i64 {
        if self.impressions == 0 {
            0
        } else {
            self.spend_micros * 1000 / self.impressions as i64
        }
    }
}

pub struct Oracle<'a> {
    market: &'a Market,
    day: &'a [Auction],
    max_bid_cpm_micros: i64,
    /// best[i]: the bid, as a share of the median, maximising (r − x)·Φ(ln x / σ) for
    /// r = exp(−range + 2·range·i / (points − 1)).
    best: Vec<f64>,
}

impl<'a> Oracle<'a> {
    pub fn new(market: &'a Market, day: &'a [Auction], max_bid_cpm_micros: i64) -> Oracle<'a> {
        let sigma = market.market_sigma;
        let best = (0..TABLE_POINTS)
            .map(|i| {
                let r = log_grid(i).exp();
                best_share(r, sigma)
            })
            .collect();
        Oracle {
            market,
            day,
            max_bid_cpm_micros,
            best,
        }
    }

    /// The oracle's bid on `a` at shadow value `lambda` (CPM micros; 0: none).
    /// What the oracle bids in auction `a` at marginal value `lambda` (CPM micros).
    pub fn bid(&self, a: &Auction, lambda: f64) -> i64 {
        let median = self.market.median_micros(a.segment, a.at_ms);
        let position = ((lambda / median).ln() + TABLE_LOG_RANGE) / (2.0 * TABLE_LOG_RANGE)
            * (TABLE_POINTS - 1) as f64;
        let share = if position <= 0.0 {
            0.0
        } else if position >= (TABLE_POINTS - 1) as f64 {
            lambda / median
        } else {
            let i = position.floor() as usize;
            let t = position - i as f64;
            self.best[i] * (1.0 - t) + self.best[i + 1] * t
        };
        let floor = a.floor_micros as f64;
        let mut bid = (share * median).min(self.max_bid_cpm_micros as f64);
        if bid < floor {
            // W is 0 below the floor: the floor is the best bid if it still pays.
            bid = if lambda > floor && floor <= self.max_bid_cpm_micros as f64 {
                floor
            } else {
                0.0
            };
        }
        bid.round() as i64
    }

    /// What the oracle buys at shadow value `lambda`.
    pub fn play(&self, lambda: f64) -> Tally {
        let mut t = Tally::default();
        for a in self.day {
            let bid = self.bid(a, lambda);
            if a.wins(bid) {
                t.impressions += 1;
                t.spend_micros += impression_cost_micros(bid);
                t.surplus_cpm_micros += a.value_micros - bid;
            }
        }
        t
    }

    /// The cheapest bids that buy `impressions` (or all they can under the cap).
    ///
    /// Impressions jump where λ passes a floor (the oracle starts bidding it in every
    /// auction of that segment): there it buys what the λ below buys, plus only as
    /// many of the wins the λ above adds as it needs (the oracle is indifferent at the
    /// jump, so any of them will do).
    pub fn for_impressions(&self, impressions: u64) -> Tally {
        let (short, enough) = self.bracket(|t| t.impressions >= impressions);
        let mut t = self.play(short);
        if t.impressions >= impressions || short == enough {
            return self.play(enough);
        }
        for a in self.day {
            if t.impressions >= impressions {
                break;
            }
            let (low, high) = (self.bid(a, short), self.bid(a, enough));
            if a.wins(high) && !a.wins(low) {
                t.impressions += 1;
                t.spend_micros += impression_cost_micros(high);
                t.surplus_cpm_micros += a.value_micros - high;
            }
        }
        t
    }

    /// The most the oracle buys without spending more than `budget_micros`.
    pub fn for_budget(&self, budget_micros: i64) -> Tally {
        self.play(self.lambda_for_budget(budget_micros))
    }

    /// The marginal value at which the oracle spends `budget_micros` at most.
    pub fn lambda_for_budget(&self, budget_micros: i64) -> f64 {
        let (within, _) = self.bracket(|t| t.spend_micros > budget_micros);
        within
    }

    /// Shadow values (lo, hi) around where `over` starts to hold (bisection in log
    /// space; `over` must be monotone in λ).
    fn bracket(&self, over: impl Fn(&Tally) -> bool) -> (f64, f64) {
        let (mut lo, mut hi) = (1.0f64, self.max_bid_cpm_micros as f64 * 8.0);
        if !over(&self.play(hi)) {
            return (hi, hi);
        }
        for _ in 0..40 {
            let mid = (lo * hi).sqrt();
            if over(&self.play(mid)) {
                hi = mid;
            } else {
                lo = mid;
            }
            if hi / lo < 1.000_5 {
                break;
            }
        }
        (lo, hi)
    }
}

fn log_grid(i: usize) -> f64 {
    -TABLE_LOG_RANGE + 2.0 * TABLE_LOG_RANGE * i as f64 / (TABLE_POINTS - 1) as f64
}

/// argmax over x in (0, r) of (r − x)·Φ(ln x / σ), by golden section in log space
/// (the function is unimodal there).
fn best_share(r: f64, sigma: f64) -> f64 {
    let f = |lx: f64| {
        let x = lx.exp();
        (r - x) * normal_cdf(lx / sigma)
    };
    let (mut a, mut b) = (r.ln() - 12.0 * sigma.max(0.1), r.ln());
    let golden = (5f64.sqrt() - 1.0) / 2.0;
    for _ in 0..100 {
        let c = b - golden * (b - a);
        let d = a + golden * (b - a);
        if f(c) > f(d) {
            b = d;
        } else {
            a = c;
        }
        if b - a < 1e-9 {
            break;
        }
    }
    ((a + b) / 2.0).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oracle_buys_the_impressions_asked_also_across_a_floors_jump() {
        let market = Market::default();
        let day = market.day(1);
        let oracle = Oracle::new(&market, &day, 4_000_000);
        let mut last_cpm = 0;
        for n in (9_000..=15_000).step_by(500) {
            let t = oracle.for_impressions(n);
            assert_eq!(t.impressions, n, "asked {n}");
            // More impressions cost more each: the marginal ones are dearer.
            assert!(t.avg_cpm_micros() >= last_cpm, "{n}: {t:?}");
            last_cpm = t.avg_cpm_micros();
        }
    }

    #[test]
    fn the_best_bid_maximises_expected_surplus() {
        let sigma = 0.6;
        for r in [0.3, 1.0, 2.0, 5.0] {
            let x = best_share(r, sigma);
            let f = |x: f64| (r - x) * normal_cdf(x.ln() / sigma);
            assert!(x > 0.0 && x < r);
            for other in [x * 0.97, x * 1.03] {
                assert!(f(x) >= f(other), "r {r}: {x} beats {other}");
            }
        }
    }

    #[test]
    fn more_impressions_cost_more_and_the_budget_is_kept() {
        let market = Market {
            auctions_per_day: 5_000,
            ..Market::default()
        };
        let day = market.day(4);
        let oracle = Oracle::new(&market, &day, 4_000_000);
        let few = oracle.for_impressions(1_000);
        let many = oracle.for_impressions(3_000);
        assert!(
            few.impressions >= 1_000 && few.impressions < 1_050,
            "{few:?}"
        );
        assert!(
            many.impressions >= 3_000 && many.impressions < 3_050,
            "{many:?}"
        );
        assert!(few.avg_cpm_micros() < many.avg_cpm_micros());
        let budgeted = oracle.for_budget(5_000_000);
        assert!(budgeted.spend_micros <= 5_000_000);
        assert!(budgeted.spend_micros > 4_900_000, "{budgeted:?}");
        // Knowing the distributions beats one bid for all: a single bid that buys as
        // many impressions pays more on average.
        let uniform = |bid: i64| day.iter().filter(|a| a.wins(bid)).count() as u64;
        let mut bid = 100_000;
        while uniform(bid) < many.impressions {
            bid += 10_000;
        }
        assert!(
            many.avg_cpm_micros() < bid,
            "{} vs {bid}",
            many.avg_cpm_micros()
        );
    }
}
