//! Demand for intermittent sellers (issue 15, for inventory prediction): most products sell on
//! few days, in lumps, where moving averages chase the last sale. Croston's method forecasts the
//! size of a sale and the interval between sales separately, each by exponential smoothing, and
//! the Syntetos–Boylan approximation (SBA) removes Croston's upward bias with a factor
//! `1 − α/2`. Pure: the forecast is a function of the daily quantities.

/// The smoothing constant.
pub const ALPHA: f64 = 0.1;

/// A demand forecast per day, and what it rests on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Forecast {
    /// Units per day.
    pub per_day: f64,
    /// Smoothed size of a day with sales.
    pub size: f64,
    /// Smoothed days between days with sales.
    pub interval: f64,
    /// Days with sales seen.
    pub sale_days: usize,
}

/// Croston's forecast of `daily` quantities (oldest first); `sba` applies the bias correction.
/// The days before the first sale are not history (a product not yet listed, or not yet found):
/// the size starts at the first sale, the interval at the days between the first two. `None`
/// before the second sale.
pub fn croston(daily: &[f64], alpha: f64, sba: bool) -> Option<Forecast> {
    let mut size: Option<f64> = None;
    let mut interval: Option<f64> = None;
    let (mut since, mut sale_days) = (0.0, 0);
    for q in daily {
        since += 1.0;
        if *q <= 0.0 {
            continue;
        }
        sale_days += 1;
        match (size, interval) {
            (None, _) => size = Some(*q),
            (Some(z), None) => {
                size = Some(z + alpha * (q - z));
                interval = Some(since);
            }
            (Some(z), Some(p)) => {
                size = Some(z + alpha * (q - z));
                interval = Some(p + alpha * (since - p));
            }
        }
        since = 0.0;
    }
    let (size, interval) = (size?, interval?);
    let factor = if sba { 1.0 - alpha / 2.0 } else { 1.0 };
    Some(Forecast { per_day: factor * size / interval, size, interval, sale_days })
}

/// Days the stock lasts at the forecast rate (`None`: no demand seen).
pub fn days_of_cover(stock: u32, f: &Forecast) -> Option<f64> {
    (f.per_day > 0.0).then(|| f64::from(stock) / f.per_day)
}

/// Whether to reorder now: the cover is shorter than the lead time plus the safety days.
pub fn reorder(stock: u32, f: &Forecast, lead_days: f64, safety_days: f64) -> bool {
    days_of_cover(stock, f).is_some_and(|d| d < lead_days + safety_days)
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    #[test]
    fn the_forecast_follows_sizes_and_intervals_by_hand() {
        // Sales of 4 on day 2, 6 on day 5 and 2 on day 7 (the first day is before any sale, not
        // history): size 4 → 4 + 0.1·2 = 4.2 → 4.2 + 0.1·(2 − 4.2) = 3.98; interval 3 (days 2 to
        // 5) → 3 + 0.1·(2 − 3) = 2.9.
        let days = [0.0, 4.0, 0.0, 0.0, 6.0, 0.0, 2.0];
        let f = croston(&days, 0.1, false).unwrap();
        assert!((f.size - 3.98).abs() < 1e-12 && (f.interval - 2.9).abs() < 1e-12, "{f:?}");
        assert!((f.per_day - 3.98 / 2.9).abs() < 1e-12);
        let sba = croston(&days, 0.1, true).unwrap();
        assert!((sba.per_day - 0.95 * 3.98 / 2.9).abs() < 1e-12);
        assert_eq!(croston(&[0.0, 0.0], 0.1, true), None, "no sale, no forecast");
        assert_eq!(croston(&[0.0, 0.0, 5.0], 0.1, true), None, "one sale says nothing of the interval");
        // Leading days without a sale do not stretch the interval.
        let late = croston(&[vec![0.0; 50], days.to_vec()].concat(), 0.1, false).unwrap();
        assert_eq!(late, f);
    }

    #[test]
    fn a_product_about_to_run_out_is_reordered() {
        let f = Forecast { per_day: 2.0, size: 4.0, interval: 2.0, sale_days: 10 };
        assert_eq!(days_of_cover(10, &f), Some(5.0));
        assert!(reorder(10, &f, 4.0, 2.0), "5 days of cover < 4 + 2");
        assert!(!reorder(20, &f, 4.0, 2.0));
    }

    /// On intermittent demand (a sale on one day in five, of 1 to 9 units: 1 unit a day on
    /// average), SBA's forecast is close to the truth and less biased than Croston's, and both
    /// beat a 7-day moving average's error.
    #[test]
    fn on_intermittent_demand_sba_is_nearly_unbiased() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let (mut croston_err, mut sba_err, mut moving_sq, mut sba_sq) = (0.0, 0.0, 0.0, 0.0);
        let runs = 300;
        for _ in 0..runs {
            let days: Vec<f64> = (0..365)
                .map(|_| if rng.random_bool(0.2) { f64::from(rng.random_range(1..=9u32)) } else { 0.0 })
                .collect();
            let c = croston(&days, ALPHA, false).unwrap().per_day;
            let s = croston(&days, ALPHA, true).unwrap().per_day;
            let moving = days[days.len() - 7..].iter().sum::<f64>() / 7.0;
            croston_err += c - 1.0;
            sba_err += s - 1.0;
            moving_sq += (moving - 1.0) * (moving - 1.0);
            sba_sq += (s - 1.0) * (s - 1.0);
        }
        let (croston_bias, sba_bias) = (croston_err / runs as f64, sba_err / runs as f64);
        println!("demand: Croston bias {croston_bias:+.3}, SBA bias {sba_bias:+.3} units/day (truth 1.0)");
        assert!(sba_bias.abs() < croston_bias.abs(), "SBA corrects Croston's bias");
        assert!(sba_bias.abs() < 0.05, "{sba_bias}");
        assert!(sba_sq < moving_sq, "SBA's squared error {sba_sq} below the moving average's {moving_sq}");
    }
}
