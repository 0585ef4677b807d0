//! The learning cycle: turns finished work into insights. For product intelligence: per
//! district and diagnosis (the rule that fired), how many rewrites were tested, how many were
//! kept (the challenger won its experiment), and the mean relative lift in conversion the new
//! copy brought over the old. Insights are recorded as events with the experiments behind them
//! and fed back into the priority formula's `helped` factor.

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

/// One concluded experiment, as the learning cycle reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Concluded {
    pub experiment_id: Uuid,
    pub decision_id: Option<String>,
    pub product_id: String,
    /// Whether the challenger (the new copy) won and was kept.
    pub kept: bool,
    pub control: (u64, u64),
    pub challenger: (u64, u64),
}

/// What the cycle learned about one district and diagnosis.
#[derive(Debug, Clone, PartialEq)]
pub struct Learned {
    pub district: String,
    pub diagnosis: String,
    pub tried: u64,
    pub helped: u64,
    pub lift: f64,
    /// The latest experiments behind it (by id, which sorts by time), at most `max_evidence`.
    pub evidence: Vec<Uuid>,
}

/// The conversion rate of (views, conversions), 0 without views.
fn rate((views, conversions): (u64, u64)) -> f64 {
    if views == 0 { 0.0 } else { conversions as f64 / views as f64 }
}

/// The insights of `system`'s `action` from concluded experiments; `rule_of` maps a decision to
/// its rule, `district_of` a product to its district (an experiment whose decision or product is
/// unknown is counted under `unknown`). Keys are `system/action/district/diagnosis`.
pub fn learn(
    system: &str,
    action: &str,
    concluded: &[Concluded],
    rule_of: &HashMap<String, String>,
    district_of: &HashMap<String, String>,
    max_evidence: usize,
) -> BTreeMap<String, Learned> {
    let mut out: BTreeMap<String, Learned> = BTreeMap::new();
    let mut lifts: HashMap<String, f64> = HashMap::new();
    let mut sorted: Vec<&Concluded> = concluded.iter().collect();
    sorted.sort_by_key(|c| c.experiment_id);
    for c in sorted {
        let unknown = || "unknown".to_string();
        let diagnosis = c.decision_id.as_ref().and_then(|d| rule_of.get(d)).cloned().unwrap_or_else(unknown);
        let district = district_of.get(&c.product_id).cloned().unwrap_or_else(unknown);
        let key = format!("{system}/{action}/{district}/{diagnosis}");
        let l = out.entry(key.clone()).or_insert_with(|| Learned {
            district,
            diagnosis,
            tried: 0,
            helped: 0,
            lift: 0.0,
            evidence: Vec::new(),
        });
        l.tried += 1;
        l.helped += u64::from(c.kept);
        let base = rate(c.control);
        let lift = if base > 0.0 { rate(c.challenger) / base - 1.0 } else { 0.0 };
        *lifts.entry(key).or_default() += lift;
        l.evidence.push(c.experiment_id);
        if l.evidence.len() > max_evidence {
            l.evidence.remove(0);
        }
    }
    for (key, l) in &mut out {
        l.lift = lifts[key] / l.tried as f64;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp(
        n: u128,
        decision: &str,
        product: &str,
        kept: bool,
        control: (u64, u64),
        challenger: (u64, u64),
    ) -> Concluded {
        Concluded {
            experiment_id: Uuid::from_u128(n),
            decision_id: Some(decision.into()),
            product_id: product.into(),
            kept,
            control,
            challenger,
        }
    }

    #[test]
    fn insights_count_tries_keeps_and_the_mean_lift_per_district_and_diagnosis() {
        let rule_of = HashMap::from([
            ("d1".to_string(), "weak_description".to_string()),
            ("d2".to_string(), "weak_description".to_string()),
            ("d3".to_string(), "low_conversion".to_string()),
        ]);
        let district_of =
            HashMap::from([("p1".to_string(), "toys".to_string()), ("p2".to_string(), "toys".to_string())]);
        let concluded = [
            exp(1, "d1", "p1", true, (100, 2), (100, 4)),
            exp(2, "d2", "p2", false, (100, 4), (100, 3)),
            exp(3, "d3", "p1", true, (0, 0), (10, 1)),
            exp(4, "gone", "p9", false, (10, 1), (10, 1)),
        ];
        let got = learn("product_intelligence", "rewrite_description", &concluded, &rule_of, &district_of, 20);
        let weak = &got["product_intelligence/rewrite_description/toys/weak_description"];
        assert_eq!((weak.tried, weak.helped), (2, 1));
        assert!((weak.lift - (1.0 + -0.25) / 2.0).abs() < 1e-12, "{}", weak.lift);
        assert_eq!(weak.evidence, vec![Uuid::from_u128(1), Uuid::from_u128(2)]);
        let low = &got["product_intelligence/rewrite_description/toys/low_conversion"];
        assert_eq!((low.tried, low.helped, low.lift), (1, 1, 0.0), "no control conversions: no lift claimed");
        assert!(got.contains_key("product_intelligence/rewrite_description/unknown/unknown"));
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn evidence_keeps_the_latest_experiments() {
        let concluded: Vec<Concluded> = (1..=5).map(|n| exp(n, "d", "p", true, (10, 1), (10, 2))).collect();
        let got = learn("s", "a", &concluded, &HashMap::new(), &HashMap::new(), 2);
        let l = got.values().next().unwrap();
        assert_eq!(l.evidence, vec![Uuid::from_u128(4), Uuid::from_u128(5)]);
        assert_eq!(l.tried, 5);
    }
}
