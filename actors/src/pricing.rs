//! Dynamic pricing's rules, pure: the band a product's price may move in today, and the move the
//! figures call for.
//!
//! - **The band**: at most `max_daily_change` (a fraction) either way from today's price; never
//!   under the merchant's floor (`price_floor` attribute) nor over their ceiling
//!   (`price_ceiling`); never under the cost when one is known (`cost` attribute). No band (the
//!   bounds cross): no move.
//! - **The move**: with enough views (`min_views` over the last 14 days), a product that converts
//!   well (`high_conversion`) and would sell out within two weeks goes up by the band's width; one
//!   that converts poorly (`low_conversion`) goes down; anything else stays. Rounded to cents and
//!   clamped to the band after rounding.
//!
//! A move is a proposal: dynamic pricing's plugin records it; it is not a price until a price
//! test keeps it:
//!
//! - **The test**: half the shoppers (a hash of the test and the shopper, as for copy) see the
//!   proposed price, the rest today's; each arm's views and order lines are counted, and the
//!   measure is revenue per view (a higher price that sells less can lose, a lower one that sells
//!   more can win).
//! - **The stopping rule**: the always-valid mixture SPRT of [`crate::stats`] on the difference
//!   of the arms' revenue per view (normal approximation, each arm's variance from its order
//!   lines' revenue and squares; the mixing spread a quarter of the pooled revenue per view), with
//!   the copy experiments' minimum views per arm, false-winner rate, agreeing posterior probability
//!   and maximum duration; at least [`MIN_ORDERS`] order lines in all. A winner's price is kept;
//!   no clear winner by the maximum duration keeps today's price.

use chrono::Duration;
use mall_events::domain::{Outcome, PriceArm};

use crate::product::experiment::{ExperimentPolicy, Verdict};
use crate::stats;

/// Order lines a price test needs (both arms together) before it may stop on evidence.
pub const MIN_ORDERS: u64 = 10;
/// The mixing spread over the true difference, as a share of the pooled revenue per view.
pub const TAU_SHARE: f64 = 0.25;

/// An arm's revenue per view and the variance of that mean, in currency units.
fn mean_and_variance(a: &PriceArm) -> (f64, f64) {
    if a.views == 0 {
        return (0.0, 0.0);
    }
    let n = a.views as f64;
    let mean = a.revenue_e4 as f64 / 10_000.0 / n;
    let spread = (a.revenue_sq / n - mean * mean).max(0.0);
    (mean, spread / n)
}

/// Looks at a price test: `Some` when it should conclude now.
pub fn evaluate_test(
    control: &PriceArm,
    challenger: &PriceArm,
    elapsed: Duration,
    policy: &ExperimentPolicy,
) -> Option<Verdict> {
    let (ma, va) = mean_and_variance(control);
    let (mb, vb) = mean_and_variance(challenger);
    let v = va + vb;
    let diff = mb - ma;
    let pooled = (control.revenue_e4 + challenger.revenue_e4) as f64
        / 10_000.0
        / (control.views + challenger.views).max(1) as f64;
    let lr = stats::normal_mixture_likelihood_ratio(diff, v, TAU_SHARE * pooled);
    let prob = if v > 0.0 { stats::normal_cdf(diff / v.sqrt()) } else { 0.5 };
    let enough = control.views >= policy.min_per_arm
        && challenger.views >= policy.min_per_arm
        && control.orders + challenger.orders >= MIN_ORDERS;
    let figures =
        format!("{mb:.3} against {ma:.3} per view (likelihood ratio {lr:.1}, P(challenger better) = {prob:.3})");
    crate::product::experiment::stop(enough, lr, prob, elapsed, policy, |outcome, threshold| match outcome {
        Outcome::ChallengerWon => format!("the proposed price earns more: {figures}, past {threshold:.0}"),
        Outcome::ControlWon => format!("today's price earns more: {figures}, past {threshold:.0}"),
        Outcome::Inconclusive => {
            format!("no clear winner after {} hours: {figures}; today's price kept", elapsed.num_hours())
        }
    })
}

/// What a move is decided from.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceFacts {
    pub price: f64,
    pub cost: Option<f64>,
    pub floor: Option<f64>,
    pub ceiling: Option<f64>,
    pub stock: u32,
    /// Over the last 14 days.
    pub views: u64,
    pub purchases: u64,
    pub units: f64,
}

/// Dynamic pricing's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    pub max_daily_change: f64,
    pub min_views: u64,
    pub high_conversion: f64,
    pub low_conversion: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { max_daily_change: 0.05, min_views: 100, high_conversion: 0.05, low_conversion: 0.01 }
    }
}

/// The band today's price may move in, `None` when there is none.
pub fn band(f: &PriceFacts, s: &Settings) -> Option<(f64, f64)> {
    if !(f.price.is_finite() && f.price > 0.0 && (0.0..1.0).contains(&s.max_daily_change)) {
        return None;
    }
    let mut lo = f.price * (1.0 - s.max_daily_change);
    let mut hi = f.price * (1.0 + s.max_daily_change);
    for bound in [f.floor, f.cost].into_iter().flatten().filter(|b| b.is_finite()) {
        lo = lo.max(bound);
    }
    if let Some(c) = f.ceiling.filter(|c| c.is_finite()) {
        hi = hi.min(c);
    }
    // Cents inside the band.
    // (A bound already in cents stays itself: 20.40 × 100 is 2039.9999… in binary.)
    let (lo, hi) = ((lo * 100.0 - 1e-6).ceil() / 100.0, (hi * 100.0 + 1e-6).floor() / 100.0);
    (lo <= hi).then_some((lo, hi))
}

/// The price the figures call for, with the reason; `None`: stay.
pub fn propose(f: &PriceFacts, s: &Settings) -> Option<(f64, String)> {
    if f.views == 0 || f.views < s.min_views {
        return None;
    }
    let (lo, hi) = band(f, s)?;
    let conversion = f.purchases as f64 / f.views as f64;
    let per_day = f.units / 14.0;
    let cover = if per_day > 0.0 { f64::from(f.stock) / per_day } else { f64::INFINITY };
    let (to, why) = if conversion >= s.high_conversion && cover < 14.0 {
        (hi, format!("converts at {:.1}% and sells out in {cover:.0} days", 100.0 * conversion))
    } else if conversion <= s.low_conversion {
        (lo, format!("converts at {:.1}% over {} views", 100.0 * conversion, f.views))
    } else {
        return None;
    };
    let to = ((to * 100.0).round() / 100.0).clamp(lo, hi);
    ((to - f.price).abs() >= 0.01).then_some((to, why))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn facts(price: f64, views: u64, purchases: u64, stock: u32, units: f64) -> PriceFacts {
        PriceFacts { price, cost: None, floor: None, ceiling: None, stock, views, purchases, units }
    }

    #[test]
    fn given_strong_demand_and_little_stock_then_up_given_weak_conversion_then_down() {
        let s = Settings::default();
        let (up, why) = propose(&facts(20.0, 400, 40, 5, 40.0), &s).unwrap();
        assert_eq!(up, 21.0, "{why}");
        let (down, _) = propose(&facts(20.0, 400, 2, 50, 2.0), &s).unwrap();
        assert_eq!(down, 19.0);
        assert_eq!(propose(&facts(20.0, 400, 12, 50, 12.0), &s), None, "between: stay");
        assert_eq!(propose(&facts(20.0, 50, 0, 50, 0.0), &s), None, "too few views");
    }

    #[test]
    fn the_cost_floor_and_ceiling_hold() {
        let s = Settings::default();
        let mut f = facts(20.0, 400, 2, 50, 2.0);
        f.cost = Some(19.80);
        assert_eq!(propose(&f, &s).unwrap().0, 19.8, "never under cost");
        f.cost = Some(20.0);
        assert_eq!(propose(&f, &s), None, "at cost already: no lower");
        let mut g = facts(20.0, 400, 40, 5, 40.0);
        g.ceiling = Some(20.40);
        assert_eq!(propose(&g, &s).unwrap().0, 20.4);
        g.floor = Some(25.0);
        assert_eq!(band(&g, &s), None, "a floor above the ceiling: no band, no move");
    }

    /// A price test's arms after `views` views each, with the given order lines per view and
    /// price, every order one unit.
    fn arm(views: u64, orders_per_view: f64, price: f64) -> PriceArm {
        let orders = (views as f64 * orders_per_view).round() as u64;
        PriceArm {
            views,
            orders,
            revenue_e4: (orders as f64 * price * 10_000.0).round() as u64,
            revenue_sq: orders as f64 * price * price,
        }
    }

    #[test]
    fn given_a_price_that_earns_more_per_view_then_it_wins_given_less_then_today_s_price_wins() {
        let p = ExperimentPolicy { min_per_arm: 200, ..ExperimentPolicy::default() };
        let hours = Duration::hours(24);
        // 21 € selling to 8% beats 20 € selling to 4%: the challenger wins.
        let v = evaluate_test(&arm(1_000, 0.04, 20.0), &arm(1_000, 0.08, 21.0), hours, &p).unwrap();
        assert_eq!(v.outcome, Outcome::ChallengerWon, "{v:?}");
        // 21 € selling to 2% against 20 € to 8%: the higher price loses.
        let v = evaluate_test(&arm(1_000, 0.08, 20.0), &arm(1_000, 0.02, 21.0), hours, &p).unwrap();
        assert_eq!(v.outcome, Outcome::ControlWon, "{v:?}");
        // The same revenue per view: no verdict until the maximum duration, then today's price.
        assert_eq!(evaluate_test(&arm(1_000, 0.05, 20.0), &arm(1_000, 0.05, 20.0), hours, &p), None);
        let v = evaluate_test(&arm(1_000, 0.05, 20.0), &arm(1_000, 0.05, 20.0), Duration::days(15), &p).unwrap();
        assert_eq!(v.outcome, Outcome::Inconclusive);
    }

    #[test]
    fn given_too_few_views_or_orders_then_no_verdict() {
        let p = ExperimentPolicy { min_per_arm: 200, ..ExperimentPolicy::default() };
        let h = Duration::hours(1);
        assert_eq!(evaluate_test(&arm(150, 0.04, 20.0), &arm(150, 0.2, 21.0), h, &p), None, "under 200 views");
        assert_eq!(evaluate_test(&arm(300, 0.0, 20.0), &arm(300, 0.01, 21.0), h, &p), None, "3 orders");
        assert_eq!(evaluate_test(&PriceArm::default(), &PriceArm::default(), h, &p), None);
    }

    /// Under no difference, peeking after every 20 views, the test rarely names a winner: the
    /// always-valid rule holds its error rate (the bound is alpha, 5%) for revenue as for
    /// conversion.
    #[test]
    fn an_a_a_price_test_peeked_at_often_rarely_finds_a_winner() {
        use rand::{Rng, SeedableRng};
        let p = ExperimentPolicy { min_per_arm: 100, ..ExperimentPolicy::default() };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (runs, mut false_winners) = (400, 0);
        for _ in 0..runs {
            let mut arms = [PriceArm::default(); 2];
            for _ in 0..150 {
                for a in arms.iter_mut() {
                    for _ in 0..20 {
                        a.views += 1;
                        if rng.random::<f64>() < 0.05 {
                            let amount = 20.0 * f64::from(rng.random_range(1u32..=3));
                            a.orders += 1;
                            a.revenue_e4 += (amount * 10_000.0) as u64;
                            a.revenue_sq += amount * amount;
                        }
                    }
                }
                if let Some(v) = evaluate_test(&arms[0], &arms[1], Duration::hours(1), &p)
                    && v.outcome != Outcome::Inconclusive
                {
                    false_winners += 1;
                    break;
                }
            }
        }
        let rate = false_winners as f64 / runs as f64;
        assert!(rate <= 0.05, "{false_winners} false winners in {runs} A/A tests");
    }

    proptest! {
        /// Whatever the figures and bounds, a proposal stays within today's band: within the
        /// daily change, not under cost or floor, not over the ceiling, in cents.
        #[test]
        fn a_proposal_never_leaves_its_bounds(
            price in 0.01f64..10_000.0,
            cost in proptest::option::of(0.0f64..12_000.0),
            floor in proptest::option::of(0.0f64..12_000.0),
            ceiling in proptest::option::of(0.0f64..12_000.0),
            stock in 0u32..1_000,
            views in 0u64..100_000,
            purchases in 0u64..10_000,
            units in 0.0f64..10_000.0,
            change in 0.0f64..0.5,
        ) {
            let s = Settings { max_daily_change: change, ..Settings::default() };
            let f = PriceFacts { price, cost, floor, ceiling, stock, views, purchases, units };
            if let Some((to, _)) = propose(&f, &s) {
                // Bounds are met to the cent (within a millionth of a unit).
                let eps = 1e-6;
                prop_assert!(to <= price * (1.0 + change) + eps, "{to} over the daily change from {price}");
                prop_assert!(to >= price * (1.0 - change) - eps, "{to} under the daily change from {price}");
                for b in [cost, floor].into_iter().flatten() {
                    prop_assert!(to >= b - eps, "{to} under {b}");
                }
                if let Some(c) = ceiling {
                    prop_assert!(to <= c + eps, "{to} over the ceiling {c}");
                }
                prop_assert!(((to * 100.0).round() - to * 100.0).abs() < 1e-6, "{to} is in cents");
            }
        }
    }
}
