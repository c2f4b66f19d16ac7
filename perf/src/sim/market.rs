//! The market an exchange sees: when impressions arrive, which segment each is in, what
//! the highest competing bid and the floor are, and what the impression is truly worth
//! to our advertiser. Everything is drawn up front from one seed, so every strategy
//! plays the very same day.
//!
//! The model follows the Yahoo budget-pacing simulator's defaults: Poisson arrivals on
//! a cosine daypart (amplitude 0.6), log-normal competing bids. A segment (site or app
//! × size × country) moves the competition's median by up to ±`segment_spread` in log
//! space; the market drifts over the day and may take a shock; floors bind in some
//! segments. Money leaves this module as integer micros; the draws inside are `f64`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp1, StandardNormal};

/// Milliseconds in a simulated day.
pub const DAY_MS: u64 = 86_400_000;
pub const HOUR_MS: u64 = 3_600_000;
pub const HOURS: usize = 24;

/// Banner sizes the segments cycle through (the simulated campaign has a creative of
/// each).
pub const SIZES: [(u32, u32); 3] = [(300, 250), (728, 90), (320, 50)];
/// Countries the segments cycle through.
pub const COUNTRIES: [&str; 2] = ["USA", "GBR"];
/// A segment's floor as a share of its competition's median, by `segment % 4`:
/// none, low, near the median, above it (that one binds in most auctions).
pub const FLOOR_SHARE_OF_MEDIAN: [f64; 4] = [0.0, 0.4, 0.8, 1.2];

/// What the exchange tells a bidder about the market in its notices
/// (`${AUCTION_MIN_TO_WIN}`, OpenRTB 2.6 §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feedback {
    /// On wins (the price that would have tied the next bid) and on losses (the
    /// price that would have tied the winner).
    MinToWin,
    /// On losses only; wins carry an empty macro.
    LossesOnly,
    /// Never: win or loss, nothing more (censored).
    WinLossOnly,
}

/// One scenario's market; [`Market::default`] is the default scenario.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Market {
    /// Impressions the forecast expects over the day.
    pub auctions_per_day: u32,
    /// Daypart: traffic ∝ 1 + amplitude · cos(2π (hour − peak) / 24).
    pub daypart_amplitude: f64,
    pub peak_hour: f64,
    /// Actual traffic is the forecast × (1 + this): the forecast the bidder's plan
    /// uses is off by it.
    pub forecast_error: f64,
    pub segments: u32,
    /// Log-space spread of the competition's median across segments (±).
    pub segment_spread: f64,
    /// σ of the log-normal highest competing bid.
    pub market_sigma: f64,
    /// The competition's median over our true value, before segment, drift, shock.
    pub median_share_of_value: f64,
    /// The median moves linearly by this share over the day (0.3: +30% by midnight).
    pub drift: f64,
    /// From this hour on, the median is multiplied by `1 + shock` (0: none).
    pub shock_hour: u32,
    pub shock: f64,
    /// What one impression is worth to the advertiser, on average (CPM micros); the
    /// bidder's configured value.
    pub value_cpm_micros: i64,
    /// σ of the log-normal noise between that estimate and an impression's true value.
    pub value_noise: f64,
    pub feedback: Feedback,
    /// Mean delay of a notice after its auction (exponential), simulated ms.
    pub notice_delay_mean_ms: u64,
    /// Share of notices the exchange never sends.
    pub notice_drop: f64,
}

impl Default for Market {
    fn default() -> Self {
        Market {
            auctions_per_day: 24_000,
            daypart_amplitude: 0.6,
            peak_hour: 20.0,
            forecast_error: 0.0,
            segments: 8,
            segment_spread: 0.5,
            market_sigma: 0.6,
            median_share_of_value: 0.5,
            drift: 0.0,
            shock_hour: 0,
            shock: 0.0,
            value_cpm_micros: 2_000_000,
            value_noise: 0.2,
            feedback: Feedback::MinToWin,
            notice_delay_mean_ms: 2_000,
            notice_drop: 0.0,
        }
    }
}

/// One impression put up for auction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Auction {
    /// Since the start of the simulated day.
    pub at_ms: u64,
    pub segment: u32,
    /// The highest bid of everyone else, CPM micros.
    pub competing_micros: i64,
    /// The exchange's floor, CPM micros (0: none).
    pub floor_micros: i64,
    /// What the impression is truly worth to the advertiser.
    pub value_micros: i64,
    /// After the auction, when its notice reaches the bidder (`None`: never).
    pub notice_delay_ms: Option<u64>,
}

impl Auction {
    /// The lowest price that wins: the competition or the floor, whichever is higher.
    pub fn min_to_win_micros(&self) -> i64 {
        self.competing_micros.max(self.floor_micros)
    }

    /// First price: a bid at or above [`min_to_win_micros`](Self::min_to_win_micros)
    /// wins and pays itself (ties go to us).
    pub fn wins(&self, bid_micros: i64) -> bool {
        bid_micros > 0 && bid_micros >= self.min_to_win_micros()
    }
}

impl Market {
    /// The forecast share of the day's traffic in `hour` (sums to 1 over the day).
    pub fn forecast_share(&self, hour: usize) -> f64 {
        let steps = 60;
        let day: f64 = (0..HOURS * steps)
            .map(|i| self.intensity(i as f64 / steps as f64))
            .sum();
        let this: f64 = (0..steps)
            .map(|i| self.intensity(hour as f64 + i as f64 / steps as f64))
            .sum();
        this / day
    }

    /// Relative traffic at `hour` (fractional) of the day.
    fn intensity(&self, hour: f64) -> f64 {
        let phase = 2.0 * std::f64::consts::PI * (hour - self.peak_hour) / HOURS as f64;
        1.0 + self.daypart_amplitude * phase.cos()
    }

    /// The competition's median in `segment` at `at_ms`, CPM micros (as `f64`).
    pub fn median_micros(&self, segment: u32, at_ms: u64) -> f64 {
        let segments = self.segments.max(1);
        let position = if segments == 1 {
            0.0
        } else {
            2.0 * f64::from(segment) / f64::from(segments - 1) - 1.0
        };
        let day_share = at_ms as f64 / DAY_MS as f64;
        let shocked = if self.shock != 0.0 && at_ms >= u64::from(self.shock_hour) * HOUR_MS {
            1.0 + self.shock
        } else {
            1.0
        };
        self.value_cpm_micros as f64
            * self.median_share_of_value
            * (self.segment_spread * position).exp()
            * (1.0 + self.drift * day_share)
            * shocked
    }

    /// `segment`'s floor at `at_ms`, CPM micros.
    pub fn floor_micros(&self, segment: u32, at_ms: u64) -> i64 {
        let share = FLOOR_SHARE_OF_MEDIAN[segment as usize % FLOOR_SHARE_OF_MEDIAN.len()];
        // Exchanges quote floors in cents.
        let micros = (self.median_micros(segment, at_ms) * share / 10_000.0).round() * 10_000.0;
        micros as i64
    }

    /// The day's auctions under `seed`, in time order.
    pub fn day(&self, seed: u64) -> Vec<Auction> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let peak_rate_per_ms = self.auctions_per_day as f64 * (1.0 + self.forecast_error)
            / DAY_MS as f64
            * (1.0 + self.daypart_amplitude);
        let mean_intensity = 1.0; // the cosine averages out over a day
        let mut auctions = Vec::with_capacity(self.auctions_per_day as usize * 2);
        let mut t = 0.0f64;
        loop {
            // Thinning (Lewis–Shedler): candidates at the peak rate, each kept with
            // probability intensity / peak.
            let gap: f64 = Exp1.sample(&mut rng);
            t += gap / peak_rate_per_ms;
            if t >= DAY_MS as f64 {
                break;
            }
            let keep =
                self.intensity(t / HOUR_MS as f64) / (mean_intensity + self.daypart_amplitude);
            if rng.random::<f64>() >= keep {
                continue;
            }
            let at_ms = t as u64;
            auctions.push(self.draw(at_ms, &mut rng));
        }
        auctions
    }

    fn draw(&self, at_ms: u64, rng: &mut ChaCha8Rng) -> Auction {
        let segment = rng.random_range(0..self.segments.max(1));
        let z: f64 = StandardNormal.sample(rng);
        let competing = self.median_micros(segment, at_ms) * (self.market_sigma * z).exp();
        let noise: f64 = StandardNormal.sample(rng);
        // Mean-one log-normal noise: the bidder's estimate is right on average.
        let sigma = self.value_noise;
        let value = self.value_cpm_micros as f64 * (sigma * noise - sigma * sigma / 2.0).exp();
        let delay: f64 = Exp1.sample(rng);
        let dropped = rng.random::<f64>() < self.notice_drop;
        Auction {
            at_ms,
            segment,
            competing_micros: competing.round() as i64,
            floor_micros: self.floor_micros(segment, at_ms),
            value_micros: value.round() as i64,
            notice_delay_ms: (!dropped)
                .then(|| (delay * self.notice_delay_mean_ms as f64).round() as u64),
        }
    }

    /// The probability that a bid of `bid_micros` wins in `segment` at `at_ms`:
    /// P(max(competing, floor) ≤ bid), from the model's own distribution.
    pub fn win_probability(&self, segment: u32, at_ms: u64, bid_micros: i64) -> f64 {
        if bid_micros < self.floor_micros(segment, at_ms) || bid_micros <= 0 {
            return 0.0;
        }
        let z = ((bid_micros as f64).ln() - self.median_micros(segment, at_ms).ln())
            / self.market_sigma;
        normal_cdf(z)
    }
}

/// Φ, the standard normal distribution function.
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * libm::erfc(-z / std::f64::consts::SQRT_2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_day_and_another_seed_another() {
        let market = Market::default();
        assert_eq!(market.day(7), market.day(7));
        assert_ne!(market.day(7), market.day(8));
    }

    #[test]
    fn traffic_follows_the_daypart_and_its_count() {
        let market = Market {
            auctions_per_day: 100_000,
            ..Market::default()
        };
        let day = market.day(1);
        // Poisson: the count is within 4 standard deviations of its mean.
        let n = day.len() as f64;
        assert!((n - 100_000.0).abs() < 4.0 * 100_000f64.sqrt(), "{n}");
        assert!(day.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
        let mut hours = [0f64; HOURS];
        for a in &day {
            hours[(a.at_ms / HOUR_MS) as usize] += 1.0;
        }
        let shares: f64 = (0..HOURS).map(|h| market.forecast_share(h)).sum();
        assert!((shares - 1.0).abs() < 1e-9);
        for (h, &count) in hours.iter().enumerate() {
            let expected = n * market.forecast_share(h);
            assert!(
                (count - expected).abs() < 5.0 * expected.sqrt(),
                "hour {h}: {count} vs {expected}"
            );
        }
        // The peak hour carries (1 + 0.6) / (1 - 0.6) = 4× the trough's traffic.
        let ratio = market.forecast_share(20) / market.forecast_share(8);
        assert!((ratio - 4.0).abs() < 0.1, "{ratio}");
    }

    #[test]
    fn win_rates_and_prices_match_the_analytic_distribution() {
        // Tolerance: 4 binomial standard deviations of each estimate.
        let market = Market {
            auctions_per_day: 400_000,
            ..Market::default()
        };
        let day = market.day(3);
        for segment in [0, 3, 5] {
            let ours: Vec<&Auction> = day.iter().filter(|a| a.segment == segment).collect();
            for share in [0.5, 0.8, 1.0] {
                let bid = (market.value_cpm_micros as f64 * share) as i64;
                let wins = ours.iter().filter(|a| a.wins(bid)).count() as f64;
                let expected: f64 = ours
                    .iter()
                    .map(|a| market.win_probability(segment, a.at_ms, bid))
                    .sum();
                let n = ours.len() as f64;
                let p = expected / n;
                let sd = (n * p * (1.0 - p)).sqrt().max(1.0);
                assert!(
                    (wins - expected).abs() < 4.0 * sd,
                    "segment {segment} bid {bid}: {wins} wins, {expected:.0} expected"
                );
            }
            // The median competing bid is the model's median.
            let mut competing: Vec<i64> = ours.iter().map(|a| a.competing_micros).collect();
            competing.sort_unstable();
            let median = competing[competing.len() / 2] as f64;
            let model = market.median_micros(segment, 0);
            let n = competing.len() as f64;
            // The sample median's standard error: σ·√(π/2n) in log space.
            let tolerance = 4.0 * market.market_sigma * (std::f64::consts::PI / (2.0 * n)).sqrt();
            assert!(
                (median / model).ln().abs() < tolerance,
                "segment {segment}: median {median} vs {model}"
            );
        }
    }

    #[test]
    fn floors_bind_only_where_the_model_puts_them() {
        let market = Market::default();
        assert_eq!(market.floor_micros(0, 0), 0);
        for segment in 0..market.segments {
            let floor = market.floor_micros(segment, 0);
            let share = FLOOR_SHARE_OF_MEDIAN[segment as usize % 4];
            let median = market.median_micros(segment, 0);
            assert!(
                (floor as f64 - share * median).abs() <= 5_000.0,
                "{segment}"
            );
            assert_eq!(floor % 10_000, 0, "floors are whole cents");
        }
        // Below the floor nothing wins, whatever the competition.
        let a = Auction {
            at_ms: 0,
            segment: 3,
            competing_micros: 1,
            floor_micros: 1_000_000,
            value_micros: 2_000_000,
            notice_delay_ms: None,
        };
        assert!(!a.wins(999_999));
        assert!(a.wins(1_000_000));
    }

    #[test]
    fn values_average_the_estimate_and_notices_drop_at_their_rate() {
        let market = Market {
            auctions_per_day: 200_000,
            notice_drop: 0.1,
            ..Market::default()
        };
        let day = market.day(5);
        let n = day.len() as f64;
        let mean = day.iter().map(|a| a.value_micros as f64).sum::<f64>() / n;
        assert!((mean / 2_000_000.0 - 1.0).abs() < 0.005, "{mean}");
        let dropped = day.iter().filter(|a| a.notice_delay_ms.is_none()).count() as f64;
        assert!(
            (dropped / n - 0.1).abs() < 4.0 * (0.09 / n).sqrt(),
            "{dropped}"
        );
        let delays: Vec<u64> = day.iter().filter_map(|a| a.notice_delay_ms).collect();
        let mean_delay = delays.iter().sum::<u64>() as f64 / delays.len() as f64;
        assert!((mean_delay / 2_000.0 - 1.0).abs() < 0.02, "{mean_delay}");
    }

    #[test]
    fn drift_and_shock_move_the_median() {
        let market = Market {
            drift: 0.3,
            shock_hour: 12,
            shock: -0.3,
            ..Market::default()
        };
        let start = market.median_micros(2, 0);
        let before = market.median_micros(2, 12 * HOUR_MS - 1);
        let after = market.median_micros(2, 12 * HOUR_MS);
        assert!((before / start - 1.15).abs() < 1e-6);
        assert!((after / before - 0.7).abs() < 1e-6);
    }
}
