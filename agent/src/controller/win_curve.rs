//! The win curve W(b) = P(price to win ≤ b) of one campaign's market, learnt from the
//! bidder's notice counts in all three regimes OpenRTB 2.6 allows an exchange:
//! min-to-win on wins and losses, on losses only, or win/loss alone.
//!
//! The price to win is modelled as log-normal (Zhou et al., KDD 2021), fitted by
//! maximum likelihood over the stats table's buckets: a reported min-to-win is known
//! to its bucket; a win without one says "at most our bid", a loss without one "above
//! it" (censored, as in Pan et al., AdKDD 2020). Counts decay with a half-life so the
//! curve follows a drifting or shocked market.

use bidder_common::table::stats::{feedback_bucket_bounds, FEEDBACK_BUCKETS};

/// Fewer observations than this (after decay) and the curve is not trusted.
pub const MIN_OBSERVATIONS: f64 = 30.0;
/// The search range of σ, and its step.
const SIGMA_RANGE: (f64, f64) = (0.05, 2.0);

/// Decayed counts of one campaign, on the stats table's price buckets.
#[derive(Debug, Clone, PartialEq)]
pub struct Observations {
    /// The price scale of the buckets (the campaign's max bid).
    pub reference_cpm_micros: i64,
    pub min_to_win: [f64; FEEDBACK_BUCKETS],
    pub won_at: [f64; FEEDBACK_BUCKETS],
    pub lost_at: [f64; FEEDBACK_BUCKETS],
}

impl Observations {
    pub fn new(reference_cpm_micros: i64) -> Observations {
        Observations {
            reference_cpm_micros,
            min_to_win: [0.0; FEEDBACK_BUCKETS],
            won_at: [0.0; FEEDBACK_BUCKETS],
            lost_at: [0.0; FEEDBACK_BUCKETS],
        }
    }

    /// Multiplies every count by `factor` (the decay since the last step) and adds the
    /// new counts.
    pub fn decay_and_add(
        &mut self,
        factor: f64,
        min_to_win: &[u32; FEEDBACK_BUCKETS],
        won_at: &[u32; FEEDBACK_BUCKETS],
        lost_at: &[u32; FEEDBACK_BUCKETS],
    ) {
        for (ours, new) in [
            (&mut self.min_to_win, min_to_win),
            (&mut self.won_at, won_at),
            (&mut self.lost_at, lost_at),
        ] {
            for (o, &n) in ours.iter_mut().zip(new) {
                *o = *o * factor + f64::from(n);
            }
        }
    }

    /// Takes `part`'s counts (a segment of these) out, never below zero.
    pub fn subtract(&mut self, part: &Observations) {
        for (ours, theirs) in [
            (&mut self.min_to_win, &part.min_to_win),
            (&mut self.won_at, &part.won_at),
            (&mut self.lost_at, &part.lost_at),
        ] {
            for (o, t) in ours.iter_mut().zip(theirs) {
                *o = (*o - t).max(0.0);
            }
        }
    }

    pub fn total(&self) -> f64 {
        self.min_to_win
            .iter()
            .chain(&self.won_at)
            .chain(&self.lost_at)
            .sum()
    }

    /// The log-normal that makes these counts likeliest; `None` with too few.
    pub fn fit(&self) -> Option<LogNormal> {
        self.fit_from(None)
    }

    /// [`Observations::fit`], starting the search around `previous` (the last fit):
    /// a window of ±3 coarse steps instead of the whole grid, 13× fewer evaluations.
    /// A best at the window's edge (the market moved further) searches everything.
    pub fn fit_from(&self, previous: Option<LogNormal>) -> Option<LogNormal> {
        if self.total() < MIN_OBSERVATIONS || self.reference_cpm_micros <= 0 {
            return None;
        }
        // Bucket edges in log space; bucket 0 and the last are open-ended.
        let edges: Vec<(f64, f64)> = (0..FEEDBACK_BUCKETS)
            .map(|i| {
                let (lo, hi) = feedback_bucket_bounds(i, self.reference_cpm_micros);
                (lo.max(1.0).ln(), hi.ln())
            })
            .collect();
        // A won or lost bid is known to its bucket: its middle stands for it.
        let middles: Vec<f64> = (0..FEEDBACK_BUCKETS)
            .map(|i| {
                let (lo, hi) = edges[i];
                if hi.is_finite() && i > 0 {
                    (lo + hi) / 2.0
                } else if i == 0 {
                    hi
                } else {
                    lo
                }
            })
            .collect();
        let log_likelihood = |mu: f64, sigma: f64| -> f64 {
            let cdf = |x: f64| normal_cdf((x - mu) / sigma);
            let mut ll = 0.0;
            for i in 0..FEEDBACK_BUCKETS {
                let (lo, hi) = edges[i];
                if self.min_to_win[i] > 0.0 {
                    let low = if i == 0 { 0.0 } else { cdf(lo) };
                    let high = if hi.is_finite() { cdf(hi) } else { 1.0 };
                    ll += self.min_to_win[i] * (high - low).max(1e-12).ln();
                }
                if self.won_at[i] > 0.0 {
                    ll += self.won_at[i] * cdf(middles[i]).max(1e-12).ln();
                }
                if self.lost_at[i] > 0.0 {
                    ll += self.lost_at[i] * (1.0 - cdf(middles[i])).max(1e-12).ln();
                }
            }
            ll
        };
        // Coarse grid over the buckets' span (or near the last fit), then a finer one
        // around the best.
        let span = (edges[1].0, edges[FEEDBACK_BUCKETS - 1].0);
        let mut best = (f64::NEG_INFINITY, 0.0, 1.0);
        let search =
            |mus: (f64, f64, usize), sigmas: (f64, f64, usize), best: &mut (f64, f64, f64)| {
                for i in 0..=mus.2 {
                    let mu = mus.0 + (mus.1 - mus.0) * i as f64 / mus.2 as f64;
                    for j in 0..=sigmas.2 {
                        let sigma = sigmas.0 + (sigmas.1 - sigmas.0) * j as f64 / sigmas.2 as f64;
                        let ll = log_likelihood(mu, sigma);
                        if ll > best.0 {
                            *best = (ll, mu, sigma);
                        }
                    }
                }
            };
        let (mu_step, sigma_step) = (
            (span.1 - span.0) / 60.0,
            (SIGMA_RANGE.1 - SIGMA_RANGE.0) / 39.0,
        );
        let near = previous.filter(|p| p.mu.is_finite() && p.sigma.is_finite());
        let inside = |best: &(f64, f64, f64), p: &LogNormal| {
            (best.1 - p.mu).abs() < 2.5 * mu_step && (best.2 - p.sigma).abs() < 2.5 * sigma_step
        };
        match near {
            Some(p) => {
                search(
                    (p.mu - 3.0 * mu_step, p.mu + 3.0 * mu_step, 6),
                    (
                        (p.sigma - 3.0 * sigma_step).max(SIGMA_RANGE.0),
                        (p.sigma + 3.0 * sigma_step).min(SIGMA_RANGE.1),
                        6,
                    ),
                    &mut best,
                );
                if !inside(&best, &p) {
                    search(
                        (span.0, span.1, 60),
                        (SIGMA_RANGE.0, SIGMA_RANGE.1, 39),
                        &mut best,
                    );
                }
            }
            None => search(
                (span.0, span.1, 60),
                (SIGMA_RANGE.0, SIGMA_RANGE.1, 39),
                &mut best,
            ),
        }
        let (_, mu, sigma) = best;
        search(
            (mu - mu_step, mu + mu_step, 20),
            (
                (sigma - sigma_step).max(SIGMA_RANGE.0),
                sigma + sigma_step,
                20,
            ),
            &mut best,
        );
        let (_, mu, sigma) = best;
        Some(LogNormal { mu, sigma })
    }
}

/// A log-normal price to win: ln(price, CPM micros) ~ N(mu, sigma²).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogNormal {
    pub mu: f64,
    pub sigma: f64,
}

impl LogNormal {
    /// W(b): the chance a bid of `bid_micros` wins.
    pub fn win_probability(&self, bid_micros: f64) -> f64 {
        if bid_micros <= 0.0 {
            return 0.0;
        }
        normal_cdf((bid_micros.ln() - self.mu) / self.sigma)
    }

    /// The median price to win, CPM micros.
    pub fn median_micros(&self) -> f64 {
        self.mu.exp()
    }

    /// The marginal value at which `bid_micros` is the best bid ([`LogNormal::best_bid`]
    /// inverted: where (λ − b)·W'(b) = W(b)); infinite where W' vanishes.
    pub fn lambda_for_bid(&self, bid_micros: f64) -> f64 {
        let b = bid_micros.max(1.0);
        let z = (b.ln() - self.mu) / self.sigma;
        let density = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
        let slope = density / (self.sigma * b);
        if slope <= 0.0 {
            return f64::INFINITY;
        }
        b + self.win_probability(b) / slope
    }

    /// The bid in `lo..=hi` (and never above `lambda`) that maximises the expected
    /// surplus at marginal value `lambda`, (λ − b)·W(b): the bid of Pan et al.; with
    /// one λ for every segment, the cheapest way to buy a number of impressions
    /// across them. Golden-section search in log space (the product is unimodal for
    /// a log-normal W), to 0.01%.
    pub fn best_bid(&self, lambda: f64, lo: f64, hi: f64) -> f64 {
        let top = hi.min(lambda);
        if top <= lo {
            return top.max(lo.min(hi));
        }
        let f = |x: f64| (lambda - x.exp()) * self.win_probability(x.exp());
        let (mut a, mut b) = (lo.ln(), top.ln());
        let golden = (5f64.sqrt() - 1.0) / 2.0;
        for _ in 0..80 {
            let c = b - golden * (b - a);
            let d = a + golden * (b - a);
            if f(c) >= f(d) {
                b = d;
            } else {
                a = c;
            }
            if b - a < 1e-4 {
                break;
            }
        }
        ((a + b) / 2.0).exp().clamp(lo, top)
    }
}

/// Φ, the standard normal distribution function.
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * libm::erfc(-z / std::f64::consts::SQRT_2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bidder_common::table::stats::feedback_bucket;

    #[test]
    fn a_fit_started_near_the_last_finds_what_the_whole_search_finds() {
        let reference = 4_000_000;
        let mut o = Observations::new(reference);
        let market = |mu: f64| move |x: f64| normal_cdf((x.ln() - mu) / 0.5);
        let counts = |cdf: &dyn Fn(f64) -> f64| -> [u32; FEEDBACK_BUCKETS] {
            std::array::from_fn(|i| {
                let (lo, hi) = feedback_bucket_bounds(i, reference);
                let p = |x: f64| {
                    if x <= 0.0 {
                        0.0
                    } else if x.is_infinite() {
                        1.0
                    } else {
                        cdf(x)
                    }
                };
                (1_000.0 * (p(hi) - p(lo))).round() as u32
            })
        };
        let zero = [0; FEEDBACK_BUCKETS];
        o.decay_and_add(1.0, &counts(&market(1_000_000f64.ln())), &zero, &zero);
        let whole = o.fit().unwrap();
        assert_eq!(o.fit_from(Some(whole)), Some(whole));
        // Near or far from the market, the search ends at the same curve.
        for start in [0.9, 1.1, 3.0, 0.2] {
            let from = LogNormal {
                mu: whole.mu + f64::ln(start),
                sigma: 0.3,
            };
            let near = o.fit_from(Some(from)).unwrap();
            assert!(
                (near.mu - whole.mu).abs() < 0.01,
                "{start}: {near:?} vs {whole:?}"
            );
            assert!(
                (near.sigma - whole.sigma).abs() < 0.02,
                "{start}: {near:?} vs {whole:?}"
            );
        }
    }

    #[test]
    fn the_marginal_value_of_a_bid_inverts_the_best_bid() {
        let market = LogNormal {
            mu: (1_000_000f64).ln(),
            sigma: 0.6,
        };
        for bid in [300_000.0, 800_000.0, 1_500_000.0, 3_000_000.0] {
            let lambda = market.lambda_for_bid(bid);
            assert!(lambda > bid);
            let back = market.best_bid(lambda, 1.0, 1e9);
            assert!(
                (back / bid - 1.0).abs() < 1e-3,
                "{bid} -> {lambda} -> {back}"
            );
        }
        // A ceiling caps the best bid, from the ceiling's own marginal value on.
        let ceiling = 2_000_000.0;
        let at = market.lambda_for_bid(ceiling);
        assert!((market.best_bid(at * 1.01, 1.0, ceiling) / ceiling - 1.0).abs() < 1e-3);
        assert!(market.best_bid(at * 0.9, 1.0, ceiling) < 0.99 * ceiling);
    }

    const REFERENCE: i64 = 4_000_000;

    /// Deterministic log-normal draws (a fixed LCG and Box–Muller).
    fn draws(mu: f64, sigma: f64, n: usize) -> Vec<f64> {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut uniform = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| {
                let z =
                    (-2.0 * uniform().ln()).sqrt() * (2.0 * std::f64::consts::PI * uniform()).cos();
                (mu + sigma * z).exp()
            })
            .collect()
    }

    /// Counts of auctions with prices `prices` against a bid of `bid` (alternating
    /// with `bid2`, as the controller's dither does) under one feedback regime.
    fn observe(
        prices: &[f64],
        bids: [f64; 2],
        mtw_on_wins: bool,
        mtw_on_losses: bool,
    ) -> Observations {
        let mut o = Observations::new(REFERENCE);
        for (i, &price) in prices.iter().enumerate() {
            let bid = bids[i % 2];
            let won = price <= bid;
            let shown = if won { mtw_on_wins } else { mtw_on_losses };
            let (array, at) = match (shown, won) {
                (true, _) => (&mut o.min_to_win, price),
                (false, true) => (&mut o.won_at, bid),
                (false, false) => (&mut o.lost_at, bid),
            };
            array[feedback_bucket(at as i64, REFERENCE)] += 1.0;
        }
        o
    }

    #[test]
    fn the_fit_recovers_the_market_in_every_feedback_regime() {
        let (mu, sigma) = ((1_000_000f64).ln(), 0.6);
        let prices = draws(mu, sigma, 20_000);
        let bids = [1_100_000.0, 900_000.0];
        for (name, wins, losses, tol_mu, tol_sigma) in [
            ("min-to-win on both", true, true, 0.03, 0.05),
            ("on losses only", false, true, 0.05, 0.08),
            ("win/loss only", false, false, 0.15, 0.25),
        ] {
            let fit = observe(&prices, bids, wins, losses).fit().expect(name);
            assert!(
                (fit.mu - mu).abs() < tol_mu,
                "{name}: mu {} vs {mu}",
                fit.mu
            );
            assert!(
                (fit.sigma - sigma).abs() < tol_sigma,
                "{name}: sigma {} vs {sigma}",
                fit.sigma
            );
            let w = fit.win_probability(1_000_000.0);
            assert!((w - 0.5).abs() < 0.05, "{name}: W(median) = {w}");
        }
    }

    #[test]
    fn too_few_observations_fit_nothing_and_decay_forgets() {
        let prices = draws(14.0, 0.5, 10);
        let o = observe(&prices, [1e6, 1e6], true, true);
        assert!(o.fit().is_none());
        let mut o = Observations::new(REFERENCE);
        let mut counts = [0u32; FEEDBACK_BUCKETS];
        counts[30] = 100;
        let none = [0u32; FEEDBACK_BUCKETS];
        o.decay_and_add(1.0, &counts, &none, &none);
        o.decay_and_add(0.5, &none, &none, &none);
        assert_eq!(o.total(), 50.0);
    }

    #[test]
    fn the_normal_cdf_is_accurate() {
        for (z, phi) in [
            (0.0, 0.5),
            (1.0, 0.841_344_746),
            (-1.96, 0.024_997_895),
            (3.0, 0.998_650_102),
        ] {
            assert!((normal_cdf(z) - phi).abs() < 1e-9, "{z}");
        }
    }
}
