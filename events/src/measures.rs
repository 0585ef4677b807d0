//! The shared measures, defined once and used by the actors, the projections and the ranker
//! alike: what a conversion is, the district prior a product is judged against, and how fast
//! interest fades. (What a signal is worth to a shopper's interest is
//! [`DomainEvent::interest_weight`](crate::domain::DomainEvent::interest_weight).)

/// Interest halves every this many days without new signals.
pub const HALF_LIFE_DAYS: f64 = 7.0;

/// What is left of an interest after `days` (`days` may be negative: a later time).
pub fn decay(days: f64) -> f64 {
    (-days / HALF_LIFE_DAYS).exp2()
}

/// Views that converted — a cart or a purchase, at most one per view.
pub fn conversions(views: u64, carts: u64, purchases: u64) -> u64 {
    carts.max(purchases).min(views)
}

/// The observed conversion rate (0 without views).
pub fn conversion_rate(views: u64, carts: u64, purchases: u64) -> f64 {
    if views == 0 { 0.0 } else { conversions(views, carts, purchases) as f64 / views as f64 }
}

/// How many views a district's prior is worth against a product's own evidence.
pub const PRIOR_STRENGTH: f64 = 20.0;

/// A Beta(alpha, beta) belief about a conversion rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prior {
    pub alpha: f64,
    pub beta: f64,
}

impl Prior {
    /// A weak default (5%, worth 20 views) for districts that have seen no traffic yet.
    pub const DEFAULT: Prior = Prior { alpha: 1.0, beta: 19.0 };

    /// A prior centred on `conversions / views` (smoothed) with the weight of `strength` views.
    pub fn from_rate(conversions: u64, views: u64, strength: f64) -> Prior {
        if views == 0 {
            return Prior::DEFAULT;
        }
        let rate = (conversions.min(views) as f64 + 0.5) / (views as f64 + 1.0);
        Prior { alpha: strength * rate, beta: strength * (1.0 - rate) }
    }

    /// The district prior: the district's own conversion, worth [`PRIOR_STRENGTH`] views.
    pub fn district(views: u64, carts: u64, purchases: u64) -> Prior {
        Prior::from_rate(conversions(views, carts, purchases), views, PRIOR_STRENGTH)
    }

    /// The prior's mean.
    pub fn mean(self) -> f64 {
        self.alpha / (self.alpha + self.beta)
    }

    /// The posterior after `conversions` out of `views`.
    pub fn update(self, conversions: u64, views: u64) -> Prior {
        let c = conversions.min(views) as f64;
        Prior { alpha: self.alpha + c, beta: self.beta + views as f64 - c }
    }

    /// The variance of the belief.
    pub fn variance(self) -> f64 {
        let s = self.alpha + self.beta;
        self.alpha * self.beta / (s * s * (s + 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interest_halves_every_half_life() {
        assert_eq!(decay(0.0), 1.0);
        assert!((decay(HALF_LIFE_DAYS) - 0.5).abs() < 1e-15);
        assert!((decay(2.0 * HALF_LIFE_DAYS) - 0.25).abs() < 1e-15);
    }

    #[test]
    fn a_conversion_is_a_cart_or_a_purchase_at_most_once_per_view() {
        assert_eq!(conversions(10, 3, 5), 5);
        assert_eq!(conversions(2, 3, 5), 2);
        assert_eq!(conversion_rate(0, 3, 5), 0.0);
        assert_eq!(conversion_rate(10, 3, 1), 0.3);
    }

    #[test]
    fn the_district_prior_follows_its_conversion_and_weighs_twenty_views() {
        assert_eq!(Prior::district(0, 0, 0), Prior::DEFAULT);
        let p = Prior::district(999, 199, 0);
        assert!((p.mean() - 0.2).abs() < 1e-3 && (p.alpha + p.beta - PRIOR_STRENGTH).abs() < 1e-12);
        // Thin evidence stays near the prior; plenty moves away from it.
        assert!((p.update(1, 1).mean() - 0.2).abs() < 0.05);
        assert!((p.update(1000, 1000).mean() - 1.0).abs() < 0.02);
    }
}
