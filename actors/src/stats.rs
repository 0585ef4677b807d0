//! The statistics behind decisions: Beta priors and posteriors for conversion, and the
//! always-valid mixture sequential probability ratio test that stops experiments.
//!
//! Actors look at an experiment every time signals arrive, so a stopping rule has to hold its
//! error rate under continuous peeking. A bare "posterior probability above 0.95" rule does not
//! (simulated in ANCHORS.md: 58% false winners in A/A tests); the mixture SPRT of Johari, Pekelis
//! and Walsh ("Always valid inference", 2017) does: with a normal mixing distribution
//! N(0, tau^2) over the difference of conversion rates, the mixture likelihood ratio is a
//! non-negative martingale under "no difference", so by Ville's inequality it ever passes
//! 1/alpha with probability at most alpha, however often it is looked at. The posterior
//! probability is reported beside it for people.

use statrs::function::erf::erfc;

/// The Beta belief about a conversion rate, shared with the projections and the ranker.
pub use mall_events::measures::Prior;

/// The standard normal distribution function.
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// P(rate_b > rate_a) under uniform Beta(1, 1) priors, by the normal approximation of the two
/// Beta posteriors (accurate to well under a percent once each arm has a few dozen views).
pub fn prob_b_beats_a(conv_a: u64, views_a: u64, conv_b: u64, views_b: u64) -> f64 {
    let a = Prior { alpha: 1.0, beta: 1.0 }.update(conv_a, views_a);
    let b = Prior { alpha: 1.0, beta: 1.0 }.update(conv_b, views_b);
    let sd = (a.variance() + b.variance()).sqrt();
    normal_cdf((b.mean() - a.mean()) / sd)
}

/// The mixture likelihood ratio for "the two rates differ" against "they are equal", with the
/// difference's estimate `p_b - p_a`, its variance from the pooled rate, and a N(0, tau^2)
/// mixing distribution over the true difference.
pub fn mixture_likelihood_ratio(conv_a: u64, views_a: u64, conv_b: u64, views_b: u64, tau: f64) -> f64 {
    if views_a == 0 || views_b == 0 {
        return 1.0;
    }
    let (na, nb) = (views_a as f64, views_b as f64);
    let (ca, cb) = (conv_a.min(views_a) as f64, conv_b.min(views_b) as f64);
    // Clamped away from 0 and 1 so that a run of identical outcomes does not make the variance
    // vanish and the ratio explode.
    let pooled = ((ca + cb) / (na + nb)).clamp(0.5 / (na + nb), 1.0 - 0.5 / (na + nb));
    let v = pooled * (1.0 - pooled) * (1.0 / na + 1.0 / nb);
    normal_mixture_likelihood_ratio(cb / nb - ca / na, v, tau)
}

/// The mixture likelihood ratio for an estimated difference `diff` of two means with variance
/// `v` (normal approximation), against "no difference", with a N(0, tau^2) mixing distribution
/// over the true difference; 1 (no evidence) while the variance is not known.
pub fn normal_mixture_likelihood_ratio(diff: f64, v: f64, tau: f64) -> f64 {
    if !(v > 0.0 && v.is_finite() && diff.is_finite() && tau > 0.0) {
        return 1.0;
    }
    let t2 = tau * tau;
    (v / (v + t2)).sqrt() * (diff * diff * t2 / (2.0 * v * (v + t2))).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prior_from_district_traffic_centres_on_its_rate() {
        let p = Prior::from_rate(100, 1_000, 20.0);
        assert!((p.mean() - 0.1).abs() < 0.001, "{p:?}");
        assert!((p.alpha + p.beta - 20.0).abs() < 1e-9);
        assert_eq!(Prior::from_rate(0, 0, 20.0), Prior::DEFAULT);
    }

    #[test]
    fn little_traffic_stays_near_the_prior_and_much_traffic_moves_away() {
        let prior = Prior::from_rate(100, 1_000, 20.0);
        assert!(prior.update(0, 5).mean() > 0.07, "5 views without a cart is mostly noise");
        assert!(prior.update(2, 500).mean() < 0.01, "500 views with 2 carts is not");
    }

    #[test]
    fn the_normal_cdf_matches_known_values() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-12);
        assert!((normal_cdf(1.959964) - 0.975).abs() < 1e-6);
        assert!((normal_cdf(-1.0) - 0.158655).abs() < 1e-6);
    }

    #[test]
    fn the_posterior_probability_favours_the_better_arm() {
        assert!(prob_b_beats_a(10, 500, 40, 500) > 0.999);
        assert!(prob_b_beats_a(40, 500, 10, 500) < 0.001);
        assert!((prob_b_beats_a(25, 500, 25, 500) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn the_likelihood_ratio_grows_with_evidence_of_a_difference_only() {
        let small = mixture_likelihood_ratio(5, 100, 10, 100, 0.05);
        let large = mixture_likelihood_ratio(50, 1_000, 100, 1_000, 0.05);
        assert!(large > small && large > 20.0, "{small} {large}");
        assert!(mixture_likelihood_ratio(50, 1_000, 50, 1_000, 0.05) < 1.0);
        assert_eq!(mixture_likelihood_ratio(0, 0, 3, 10, 0.05), 1.0);
    }
}
