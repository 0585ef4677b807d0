//! The priority formula: how urgent a task is, 0–100, from performance.
//!
//! `priority = round(100 × stake × confidence × helped)`, each factor in [0, 1]:
//! - **stake**: what is at stake in the subject, `1 − exp(−value / scale)` — revenue (or its
//!   stand-in, traffic × price) over the window, saturating: a subject with `scale` at stake
//!   scores 0.63, three times that 0.95, nothing at stake 0;
//! - **confidence** that something is wrong (or that the action is due): the decision rule's
//!   own figure — 1 for a missing piece of copy, the posterior probability of under-performance
//!   for weak copy;
//! - **helped**: how often this action has helped before on such subjects, `(helped + 1) /
//!   (tried + 2)` (a new action starts at ½), and never below [`MIN_HELPED`], so that an action
//!   that has not helped yet is still tried now and then.
//!
//! An admin's request is [`ADMIN`] whatever the figures; a scheduled sweep is [`SWEEP`].
//!
//! A generation a product decided ([`of_decision`]) takes its figures from the decision's own
//! evidence: the value is the window's revenue plus [`VIEW_VALUE`] per view, and a missing piece
//! of copy (shown to every shopper) counts as [`GENERATION_SCALE`] at stake at least; the
//! confidence is 1 for missing or stale copy and `1 − posterior / prior` (at least 0.1) for a
//! rule that judged the copy weak.

use std::collections::BTreeMap;

/// The floor of the `helped` factor.
pub const MIN_HELPED: f64 = 0.2;
/// A person asked: ahead of every computed priority but 100.
pub const ADMIN: u8 = 90;
/// A job's sweep (it only queues the work it finds, each with its own priority).
pub const SWEEP: u8 = 50;

/// What a view is worth when revenue is not (yet) there to say.
pub const VIEW_VALUE: f64 = 0.1;
/// The value at stake that counts as "a lot" for one product's copy.
pub const GENERATION_SCALE: f64 = 100.0;

/// The figures of a generation a product decided, from its evidence; `helped` and `tried` are
/// the learning cycle's record for the product's district.
pub fn of_decision(d: &mall_events::domain::OptimizationDecided, helped: u64, tried: u64) -> Inputs {
    let m = |k: &str| d.evidence.metrics.get(k).copied().filter(|v| v.is_finite()).unwrap_or(0.0);
    let filling = d.rule.starts_with("missing_") || d.rule.starts_with("stale_");
    let mut value = m("window_revenue").max(0.0) + VIEW_VALUE * m("window_views").max(0.0);
    let confidence = if filling {
        value = value.max(GENERATION_SCALE);
        1.0
    } else {
        let (posterior, prior) = (m("conversion_posterior_mean"), m("district_conversion_prior"));
        if prior > 0.0 { (1.0 - posterior / prior).clamp(0.1, 1.0) } else { 0.5 }
    };
    Inputs { value, scale: GENERATION_SCALE, confidence, helped, tried }
}

/// The inputs of the formula, kept with the task as its reason's metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Inputs {
    /// Value at stake (revenue, or traffic × price) over the window.
    pub value: f64,
    /// The value that counts as "a lot" for this system (stake 0.63).
    pub scale: f64,
    /// Confidence in [0, 1] that the action is needed.
    pub confidence: f64,
    /// Times this action helped before (kept, improved), and times it was tried.
    pub helped: u64,
    pub tried: u64,
}

impl Inputs {
    pub fn stake(&self) -> f64 {
        if !(self.value > 0.0 && self.scale > 0.0) {
            return 0.0;
        }
        1.0 - (-self.value / self.scale).exp()
    }

    pub fn helped_rate(&self) -> f64 {
        let rate = (self.helped.min(self.tried) as f64 + 1.0) / (self.tried as f64 + 2.0);
        rate.max(MIN_HELPED)
    }

    /// The priority, 0–100.
    pub fn priority(&self) -> u8 {
        let c = if self.confidence.is_finite() { self.confidence.clamp(0.0, 1.0) } else { 0.0 };
        (100.0 * self.stake() * c * self.helped_rate()).round().clamp(0.0, 100.0) as u8
    }

    /// The inputs and factors, as a task's metrics.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        BTreeMap::from([
            ("value_at_stake".to_string(), if self.value.is_finite() { self.value } else { 0.0 }),
            ("stake".to_string(), self.stake()),
            ("confidence".to_string(), if self.confidence.is_finite() { self.confidence } else { 0.0 }),
            ("helped".to_string(), self.helped as f64),
            ("tried".to_string(), self.tried as f64),
            ("helped_rate".to_string(), self.helped_rate()),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(value: f64, confidence: f64, helped: u64, tried: u64) -> Inputs {
        Inputs { value, scale: 100.0, confidence, helped, tried }
    }

    #[test]
    fn nothing_at_stake_or_no_doubt_is_priority_zero() {
        assert_eq!(given(0.0, 1.0, 5, 5).priority(), 0);
        assert_eq!(given(1e6, 0.0, 5, 5).priority(), 0);
        assert_eq!(given(f64::NAN, 1.0, 5, 5).priority(), 0);
        assert_eq!(given(1e6, f64::NAN, 5, 5).priority(), 0);
    }

    #[test]
    fn stake_saturates_and_grows_with_value() {
        let p = |v| given(v, 1.0, 0, 0).priority();
        assert_eq!(p(100.0), 32, "scale at stake: 0.63 × ½");
        assert!(p(10.0) < p(100.0) && p(100.0) < p(300.0));
        assert_eq!(p(1e12), 50, "all at stake, a new action: ½");
    }

    #[test]
    fn confidence_scales_linearly() {
        assert_eq!(given(1e12, 0.5, 0, 0).priority(), 25);
        assert_eq!(given(1e12, 2.0, 0, 0).priority(), 50, "confidence is clamped to 1");
    }

    #[test]
    fn an_action_that_helped_before_ranks_higher_and_one_that_never_did_keeps_a_floor() {
        assert_eq!(given(1e12, 1.0, 8, 8).priority(), 90, "(8+1)/(8+2)");
        assert_eq!(given(1e12, 1.0, 0, 100).priority(), 20, "the floor");
        assert!(given(1e12, 1.0, 3, 10).priority() < given(1e12, 1.0, 7, 10).priority());
        assert_eq!(given(1e12, 1.0, 50, 10).priority(), given(1e12, 1.0, 10, 10).priority(), "helped ≤ tried");
    }

    fn decided(rule: &str, metrics: &[(&str, f64)]) -> mall_events::domain::OptimizationDecided {
        let mut d = match crate::testing::decided_for_tests() {
            mall_events::domain::DomainEvent::OptimizationDecided(d) => d,
            _ => unreachable!(),
        };
        d.rule = rule.into();
        d.evidence.metrics = metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        d
    }

    #[test]
    fn a_missing_piece_of_copy_is_certain_and_counts_as_a_lot_at_stake_even_without_traffic() {
        let i = of_decision(&decided("missing_seo", &[]), 0, 0);
        assert_eq!((i.confidence, i.value), (1.0, GENERATION_SCALE));
        assert_eq!(i.priority(), 32, "0.63 × 1 × ½");
        let busy = of_decision(&decided("missing_seo", &[("window_revenue", 400.0)]), 0, 0);
        assert!(busy.priority() > i.priority());
        assert_eq!(of_decision(&decided("stale_embedding", &[]), 0, 0).confidence, 1.0);
    }

    #[test]
    fn weak_copy_is_as_urgent_as_it_is_below_its_district_and_as_valuable_as_its_traffic() {
        let weak = |posterior: f64, views: f64| {
            of_decision(
                &decided(
                    "weak_description",
                    &[
                        ("conversion_posterior_mean", posterior),
                        ("district_conversion_prior", 0.1),
                        ("window_views", views),
                    ],
                ),
                0,
                0,
            )
        };
        assert!((weak(0.05, 1000.0).confidence - 0.5).abs() < 1e-12, "half the prior");
        assert_eq!(weak(0.2, 1000.0).confidence, 0.1, "above the prior: the floor");
        assert!(weak(0.01, 1000.0).priority() > weak(0.05, 1000.0).priority());
        assert!(weak(0.01, 5000.0).priority() > weak(0.01, 1000.0).priority());
        assert_eq!(weak(0.01, 0.0).priority(), 0, "nothing at stake");
    }

    #[test]
    fn a_district_where_rewrites_helped_gets_its_generations_sooner() {
        let d = decided("missing_description", &[]);
        assert!(of_decision(&d, 9, 10).priority() > of_decision(&d, 1, 10).priority());
    }

    #[test]
    fn the_metrics_name_every_factor() {
        let m = given(50.0, 0.8, 1, 3).metrics();
        for k in ["value_at_stake", "stake", "confidence", "helped", "tried", "helped_rate"] {
            assert!(m.contains_key(k), "{k}");
        }
        assert!(m.values().all(|v| v.is_finite()));
    }
}
