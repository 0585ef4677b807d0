//! Tests of a district's ordering: the engine proposes another set of the score's weights, the
//! district's shoppers are split between its layout (control) and the proposal (challenger) by
//! the same deterministic hash as copy experiments, and the winner becomes the layout.
//!
//! - **Proposal** (`propose`, on the merchandising sweep): a district with at least
//!   [`MIN_VIEWS`] views, no test under way and none concluded in the last [`PAUSE_DAYS`] days
//!   gets the next candidate of [`CANDIDATES`] that differs from its layout (in turn).
//! - **Measure** (`Tally`): trials are impressions logged under the test's policy
//!   (`test:<id>:<arm>`; the arm counted is the shopper's by the hash, whatever a client says),
//!   each with its position; a success is the click, cart or purchase of a product by a shopper
//!   it was shown to in the test (once per impression). Orderings differ in where they put
//!   products, so the better ordering turns more of the impressions shoppers see into successes;
//!   the position of each impression is kept (successes per position band are reported).
//! - **Stopping**: the always-valid mixture SPRT of copy experiments (`experiment::evaluate`:
//!   at most 5% false winners under continuous looks), and before any conclusion a **sample
//!   ratio mismatch** check — a chi-square test of the shoppers per arm against the even split
//!   the hash promises; below p = 0.001 the test is stopped as invalid and the layout stays.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use mall_events::domain::{
    ArmStats, DomainEvent, OrderingTestConcluded, OrderingTestStarted, OrderingWeights, Outcome,
};
use mall_events::ids::{DistrictSlug, Position, ShopperId};
use uuid::Uuid;

use crate::product::experiment::{self, Arm, ExperimentPolicy};

/// Views a district needs before its ordering is tested.
pub const MIN_VIEWS: u64 = 200;
/// Days after a test concluded before the next one.
pub const PAUSE_DAYS: i64 = 7;
/// The sample ratio mismatch check's threshold.
pub const SRM_P: f64 = 0.001;
/// Shoppers needed before the sample ratio is checked.
pub const SRM_MIN_SHOPPERS: u64 = 100;

const fn w(performance: f64, rules: f64, personalization: f64, recency: f64) -> OrderingWeights {
    OrderingWeights { performance, rules, personalization, recency }
}

/// The orderings the engine tries, in turn.
pub const CANDIDATES: &[(&str, OrderingWeights)] = &[
    ("performance_first", w(0.7, 0.1, 0.1, 0.1)),
    ("personal_first", w(0.25, 0.15, 0.5, 0.1)),
    ("fresh_first", w(0.3, 0.1, 0.2, 0.4)),
];

/// The policy an arm's listing is served under (what impressions carry).
pub fn policy(test_id: Uuid, arm: Arm) -> String {
    format!("test:{test_id}:{}", if arm == Arm::Challenger { "challenger" } else { "control" })
}

/// A test as folded from its events.
#[derive(Debug, Clone, PartialEq)]
pub struct Test {
    pub started: OrderingTestStarted,
    /// Where the start is in the log (signals after it count).
    pub position: Position,
    pub concluded: Option<OrderingTestConcluded>,
}

/// Every ordering test.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tests(pub BTreeMap<Uuid, Test>);

impl Tests {
    pub fn apply(&mut self, d: &DomainEvent, position: Position) {
        match d {
            DomainEvent::OrderingTestStarted(s) => {
                self.0.insert(s.test_id, Test { started: s.clone(), position, concluded: None });
            }
            DomainEvent::OrderingTestConcluded(c) => {
                if let Some(t) = self.0.get_mut(&c.test_id) {
                    t.concluded = Some(c.clone());
                }
            }
            _ => {}
        }
    }

    /// The district's test under way.
    pub fn running(&self, district: &str) -> Option<&Test> {
        self.0.values().find(|t| t.concluded.is_none() && t.started.district.as_str() == district)
    }

    /// Every test under way.
    pub fn all_running(&self) -> impl Iterator<Item = &Test> {
        self.0.values().filter(|t| t.concluded.is_none())
    }

    /// The district's tests.
    fn of<'a>(&'a self, district: &'a str) -> impl Iterator<Item = &'a Test> + 'a {
        self.0.values().filter(move |t| t.started.district.as_str() == district)
    }

    /// The district's layout: the weights its last concluded test left in force.
    pub fn layout(&self, district: &str) -> Option<OrderingWeights> {
        self.of(district).filter_map(|t| t.concluded.as_ref()).max_by_key(|c| c.at).map(|c| c.layout)
    }
}

/// The engine's proposal for a district, if any: `views` its views so far, `current` the
/// weights it is ranked with.
pub fn propose(
    district: &DistrictSlug,
    views: u64,
    current: OrderingWeights,
    tests: &Tests,
    now: DateTime<Utc>,
) -> Option<OrderingTestStarted> {
    if views < MIN_VIEWS || tests.running(district.as_str()).is_some() {
        return None;
    }
    let last = tests.of(district.as_str()).filter_map(|t| t.concluded.as_ref()).map(|c| c.at).max();
    if last.is_some_and(|at| now - at < Duration::days(PAUSE_DAYS)) {
        return None;
    }
    let n = tests.of(district.as_str()).count();
    let (name, challenger) =
        (0..CANDIDATES.len()).map(|k| CANDIDATES[(n + k) % CANDIDATES.len()]).find(|(_, c)| *c != current)?;
    Some(OrderingTestStarted {
        test_id: Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("mall/ordering/{district}/{n}").as_bytes()),
        district: district.clone(),
        control: current,
        challenger,
        name: name.to_string(),
        reason: format!(
            "{views} views so far: testing whether {} (performance {:.2}, rules {:.2}, personalization {:.2}, recency {:.2}) turns more impressions into clicks and carts than the current layout",
            name.replace('_', " "),
            challenger.performance,
            challenger.rules,
            challenger.personalization,
            challenger.recency
        ),
        at: now,
    })
}

/// What a test has seen so far.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Control, challenger.
    pub stats: [ArmStats; 2],
    pub shoppers: [HashSet<String>; 2],
    pub revenue_e4: [u64; 2],
    /// Successes by the position of their impression: 1, 2–3, 4–10, 11 and later.
    pub by_position: [[u64; 4]; 2],
    /// Impressions waiting for a success: (shopper, product) → their positions.
    pending: HashMap<(String, String), Vec<u32>>,
    /// The last position folded.
    pub position: Position,
}

fn band(position: u32) -> usize {
    match position {
        0 | 1 => 0,
        2..=3 => 1,
        4..=10 => 2,
        _ => 3,
    }
}

impl Tally {
    /// An empty tally of a test started at `position`.
    pub fn from(position: Position) -> Tally {
        Tally { position, ..Tally::default() }
    }

    /// Folds one of the district's events (at `position`) into the test's tally.
    pub fn observe(&mut self, test_id: Uuid, d: &DomainEvent, position: Position) {
        self.position = self.position.max(position);
        let (Some(shopper), Some(product)) = (d.shopper_id(), d.product_id()) else { return };
        let arm = experiment::arm(test_id, shopper);
        let k = usize::from(arm == Arm::Challenger);
        match d {
            DomainEvent::ImpressionServed(i) => {
                // Only impressions of the test's listing count, in the shopper's own arm.
                if i.policy.as_ref().map(|p| p.as_str()) != Some(policy(test_id, arm).as_str()) {
                    return;
                }
                self.stats[k].views += 1;
                self.shoppers[k].insert(shopper.as_str().to_string());
                self.pending
                    .entry((shopper.as_str().to_string(), product.as_str().to_string()))
                    .or_default()
                    .push(i.position);
            }
            DomainEvent::ProductClicked(_) | DomainEvent::AddedToCart(_) | DomainEvent::Purchased(_) => {
                let key = (shopper.as_str().to_string(), product.as_str().to_string());
                let Some(positions) = self.pending.get_mut(&key) else { return };
                let Some(at) = positions.pop() else { return };
                if positions.is_empty() {
                    self.pending.remove(&key);
                }
                self.stats[k].conversions += 1;
                self.by_position[k][band(at)] += 1;
                if let DomainEvent::Purchased(p) = d {
                    self.revenue_e4[k] = self.revenue_e4[k]
                        .saturating_add(p.unit_price.ten_thousandths().saturating_mul(u64::from(p.quantity)));
                }
            }
            _ => {}
        }
    }
}

/// The p-value of a chi-square test (one degree of freedom) of `a` and `b` against an even split.
pub fn srm_p(a: u64, b: u64) -> f64 {
    let n = (a + b) as f64;
    if n == 0.0 {
        return 1.0;
    }
    let chi = (a as f64 - b as f64).powi(2) / n;
    statrs::function::erf::erfc((chi / 2.0).sqrt())
}

/// Looks at a test: `Some` when it concludes now.
pub fn decide(
    test: &OrderingTestStarted,
    tally: &Tally,
    now: DateTime<Utc>,
    policy: &ExperimentPolicy,
) -> Option<OrderingTestConcluded> {
    let (a, b) = (tally.shoppers[0].len() as u64, tally.shoppers[1].len() as u64);
    let p = srm_p(a, b);
    let conclude = |outcome, invalid, prob, lr, reason: String, layout| OrderingTestConcluded {
        test_id: test.test_id,
        district: test.district.clone(),
        outcome,
        control: tally.stats[0],
        challenger: tally.stats[1],
        control_shoppers: a,
        challenger_shoppers: b,
        srm_p: p,
        invalid,
        prob_challenger_better: prob,
        likelihood_ratio: lr,
        reason,
        layout,
        as_of: tally.position,
        at: now,
    };
    // The split is checked when the test would conclude (a verdict or its maximum duration):
    // checked at every look, a p < 0.001 rule would fire by chance over hundreds of looks.
    let v = experiment::evaluate(tally.stats[0], tally.stats[1], now - test.at, policy)?;
    if a + b >= SRM_MIN_SHOPPERS && p < SRM_P {
        return Some(conclude(
            Outcome::Inconclusive,
            true,
            0.5,
            1.0,
            format!(
                "sample ratio mismatch: {a} shoppers in control, {b} in the challenger (chi-square p = {p:.1e} < {SRM_P}): the split is broken, nothing is concluded and the layout stays"
            ),
            test.control,
        ));
    }
    let layout = if v.outcome == Outcome::ChallengerWon { test.challenger } else { test.control };
    Some(conclude(v.outcome, false, v.prob_challenger_better, v.likelihood_ratio, v.reason, layout))
}

/// Re-runs recorded conclusions: for each, the tally recounted from the district's events
/// between the test's start and the position it recorded, decided at its time. Returns the
/// (recorded, reproduced) pairs that differ, and how many were checked.
pub fn verify<'a>(
    tests: &Tests,
    events_of: impl Fn(&Test) -> Vec<(Position, &'a DomainEvent)>,
    policy: &ExperimentPolicy,
) -> (usize, Vec<(OrderingTestConcluded, Option<OrderingTestConcluded>)>) {
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for t in tests.0.values() {
        let Some(recorded) = &t.concluded else { continue };
        checked += 1;
        let mut tally = Tally::from(t.position);
        for (position, d) in events_of(t).into_iter().filter(|(p, _)| *p > t.position && *p <= recorded.as_of) {
            tally.observe(t.started.test_id, d, position);
        }
        tally.position = recorded.as_of;
        let again = decide(&t.started, &tally, recorded.at, policy);
        if again.as_ref() != Some(recorded) {
            mismatches.push((recorded.clone(), again));
        }
    }
    (checked, mismatches)
}

/// A shopper's arm of a test.
pub fn arm_of(test_id: Uuid, shopper: &ShopperId) -> Arm {
    experiment::arm(test_id, shopper)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use mall_events::domain::{AddedToCart, ImpressionServed};
    use mall_events::ids::{ListName, ProductId, SessionId};
    use rand::{Rng, SeedableRng};

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap()
    }

    fn toys() -> DistrictSlug {
        DistrictSlug::parse("toys".to_string()).unwrap()
    }

    fn layout() -> OrderingWeights {
        w(0.4, 0.3, 0.2, 0.1)
    }

    #[test]
    fn a_busy_district_gets_the_next_candidate_and_a_quiet_or_busy_one_none() {
        let tests = Tests::default();
        assert_eq!(propose(&toys(), 199, layout(), &tests, now()), None, "too few views");
        let first = propose(&toys(), 200, layout(), &tests, now()).unwrap();
        assert_eq!(
            (first.name.as_str(), first.challenger, first.control),
            ("performance_first", CANDIDATES[0].1, layout())
        );
        assert!(first.reason.contains("200 views"), "{}", first.reason);
        // While it runs, nothing else; after it concludes, a pause; then the next candidate.
        let mut tests = Tests::default();
        tests.apply(&DomainEvent::OrderingTestStarted(first.clone()), 10);
        assert_eq!(propose(&toys(), 500, layout(), &tests, now()), None);
        let tally = Tally::default();
        let mut ended = decide(&first, &tally, now() + Duration::days(15), &ExperimentPolicy::default()).unwrap();
        assert_eq!((ended.outcome, ended.layout), (Outcome::Inconclusive, layout()), "rolled back after the maximum");
        ended.at = now() + Duration::days(15);
        tests.apply(&DomainEvent::OrderingTestConcluded(ended), 20);
        assert_eq!(propose(&toys(), 500, layout(), &tests, now() + Duration::days(16)), None, "a pause");
        let second = propose(&toys(), 500, layout(), &tests, now() + Duration::days(23)).unwrap();
        assert_eq!(second.name, "personal_first");
        assert_ne!(second.test_id, first.test_id);
        // A candidate equal to the layout is skipped.
        let skip = propose(&toys(), 500, CANDIDATES[0].1, &Tests::default(), now()).unwrap();
        assert_eq!(skip.name, "personal_first");
    }

    fn shopper(i: u64) -> ShopperId {
        ShopperId::parse(format!("s{i}")).unwrap()
    }

    fn impression(s: &ShopperId, product: &str, position: u32, policy: &str) -> DomainEvent {
        DomainEvent::ImpressionServed(ImpressionServed {
            campaign: None,
            id: Uuid::now_v7(),
            shopper_id: s.clone(),
            session_id: SessionId::parse("x".to_string()).unwrap(),
            at: now(),
            product_id: ProductId::parse(product.to_string()).unwrap(),
            list: ListName::parse("district".to_string()).unwrap(),
            position,
            policy: Some(ListName::parse(policy.to_string()).unwrap()),
        })
    }

    fn cart(s: &ShopperId, product: &str) -> DomainEvent {
        DomainEvent::AddedToCart(AddedToCart {
            campaign: None,
            id: Uuid::now_v7(),
            shopper_id: s.clone(),
            session_id: SessionId::parse("x".to_string()).unwrap(),
            at: now(),
            product_id: ProductId::parse(product.to_string()).unwrap(),
            quantity: 1,
        })
    }

    #[test]
    fn successes_count_once_per_impression_of_the_test_in_the_shoppers_own_arm() {
        let test = Uuid::from_u128(9);
        let mut t = Tally::default();
        let s = shopper(1);
        let mine = policy(test, arm_of(test, &s));
        let other = policy(test, if arm_of(test, &s) == Arm::Control { Arm::Challenger } else { Arm::Control });
        t.observe(test, &impression(&s, "p1", 2, &mine), 1);
        t.observe(test, &impression(&s, "p2", 1, &other), 2); // a forged arm: not counted
        t.observe(test, &impression(&s, "p3", 1, "layout:toys"), 3); // another listing
        t.observe(test, &cart(&s, "p1"), 4);
        t.observe(test, &cart(&s, "p1"), 5); // a second cart of one impression: once
        t.observe(test, &cart(&s, "p2"), 6);
        let k = usize::from(arm_of(test, &s) == Arm::Challenger);
        assert_eq!(t.stats[k], ArmStats { views: 1, conversions: 1 });
        assert_eq!(t.stats[1 - k], ArmStats::default());
        assert_eq!(t.by_position[k], [0, 1, 0, 0]);
        assert_eq!(t.position, 6);
    }

    #[test]
    fn a_45_55_split_is_caught_and_an_even_one_is_not() {
        assert!(srm_p(4_500, 5_500) < 1e-10);
        assert!(srm_p(900, 1_100) < SRM_P, "{}", srm_p(900, 1_100));
        assert!(srm_p(5_000, 5_050) > 0.5);
        // By the hash, 10,000 shoppers split evenly: the check passes.
        let test = Uuid::from_u128(3);
        let c = (0..10_000).filter(|i| arm_of(test, &shopper(*i)) == Arm::Challenger).count() as u64;
        assert!(srm_p(10_000 - c, c) > SRM_P);
        // A test whose arms hold 45% and 55% of its shoppers stops as invalid, the layout kept.
        let started = propose(&toys(), 500, layout(), &Tests::default(), now()).unwrap();
        let mut t = Tally::default();
        for i in 0..2_000u64 {
            let k = usize::from(i % 20 >= 9); // 9 of 20 in control
            t.shoppers[k].insert(format!("s{i}"));
            t.stats[k].views += 10;
            t.stats[k].conversions += 1 + k as u64 * 2;
        }
        // The challenger looks better, but the broken split makes the test invalid.
        let v = decide(&started, &t, now(), &ExperimentPolicy::default()).unwrap();
        assert!(v.invalid && v.outcome == Outcome::Inconclusive && v.layout == layout(), "{v:?}");
        assert!(v.reason.contains("sample ratio mismatch"));
    }

    /// Simulates an ordering test looked at after every 10 shoppers, each shown 5 positions: a
    /// shopper examines position p with probability 1/p and clicks what they examine with the
    /// product's appeal; `appeal[arm]` lists the appeal of what each arm shows at 1..=5.
    fn simulate(rng: &mut impl Rng, appeal: [[f64; 5]; 2], max_shoppers: u64) -> Option<Outcome> {
        let started = propose(&toys(), 500, layout(), &Tests::default(), now()).unwrap();
        let policy = ExperimentPolicy::default();
        let mut t = Tally::default();
        for i in 0..max_shoppers {
            let s = shopper(i + rng.random::<u32>() as u64 * 1_000_000);
            let arm = arm_of(started.test_id, &s);
            let k = usize::from(arm == Arm::Challenger);
            for (p, a) in appeal[k].iter().enumerate() {
                let pos = p as u32 + 1;
                let product = format!("p{p}");
                t.observe(started.test_id, &impression(&s, &product, pos, &policy_of(started.test_id, arm)), 0);
                if rng.random_bool(1.0 / f64::from(pos)) && rng.random_bool(*a) {
                    t.observe(started.test_id, &cart(&s, &product), 0);
                }
            }
            if i % 10 == 9
                && let Some(v) = decide(&started, &t, now(), &policy)
            {
                return Some(if v.invalid { Outcome::Inconclusive } else { v.outcome });
            }
        }
        None
    }

    fn policy_of(test: Uuid, arm: Arm) -> String {
        policy(test, arm)
    }

    #[test]
    fn with_the_same_ordering_in_both_arms_at_most_five_percent_name_a_winner() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let same = [0.2, 0.1, 0.05, 0.05, 0.02];
        let runs = 200;
        let winners = (0..runs)
            .filter(|_| {
                matches!(simulate(&mut rng, [same, same], 4_000), Some(Outcome::ChallengerWon | Outcome::ControlWon))
            })
            .count();
        println!("ordering A/A: {winners} false winners in {runs} runs");
        assert!(winners as f64 / runs as f64 <= 0.05, "{winners}");
    }

    #[test]
    fn an_ordering_that_puts_what_shoppers_want_on_top_wins() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        // The same five products; the challenger puts the appealing one first.
        let control = [0.02, 0.05, 0.05, 0.1, 0.3];
        let challenger = [0.3, 0.1, 0.05, 0.05, 0.02];
        let runs = 100;
        let mut won = 0;
        for _ in 0..runs {
            let outcome = simulate(&mut rng, [control, challenger], 4_000);
            assert_ne!(outcome, Some(Outcome::ControlWon));
            won += usize::from(outcome == Some(Outcome::ChallengerWon));
        }
        println!("ordering A/B: the better ordering won {won} of {runs} runs");
        assert!(won as f64 / runs as f64 >= 0.9, "{won}");
    }
}
