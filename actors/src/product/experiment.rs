//! Copy experiments: the deterministic split of shoppers into arms and the stopping rule.
//!
//! A shopper's arm is a hash of the experiment id and the shopper id (UUIDv5, so it is the same
//! on every node, in every build, and in replay). The stopping rule is the always-valid mixture
//! SPRT of [`crate::stats`], with a minimum sample per arm before it may stop and a maximum
//! duration after which the challenger is rolled back; the posterior probability is required to
//! agree with the direction and is recorded beside it.

use chrono::Duration;
use mall_events::domain::{ArmStats, Outcome};
use mall_events::ids::ShopperId;
use uuid::Uuid;

use crate::stats;

/// Which copy a shopper sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Arm {
    /// The current copy.
    Control,
    /// The new copy under test.
    Challenger,
}

/// The arm a shopper is in, the same every time.
pub fn arm(experiment_id: Uuid, shopper: &ShopperId) -> Arm {
    let h = Uuid::new_v5(&experiment_id, shopper.as_str().as_bytes());
    if h.as_bytes()[15] & 1 == 0 { Arm::Control } else { Arm::Challenger }
}

/// The stopping rule's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExperimentPolicy {
    /// Views each arm needs before the experiment may stop.
    pub min_per_arm: u64,
    /// After this long without a winner, the challenger is rolled back.
    pub max_duration: Duration,
    /// The false-winner rate the rule holds under continuous peeking.
    pub alpha: f64,
    /// The spread of the mixing distribution over the true difference in conversion rate.
    pub tau: f64,
    /// The posterior probability the winner must also reach.
    pub min_probability: f64,
}

impl Default for ExperimentPolicy {
    fn default() -> Self {
        Self { min_per_arm: 200, max_duration: Duration::days(14), alpha: 0.05, tau: 0.05, min_probability: 0.95 }
    }
}

/// An experiment's verdict at one look.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub outcome: Outcome,
    pub prob_challenger_better: f64,
    pub likelihood_ratio: f64,
    pub reason: String,
}

/// Looks at an experiment: `Some` when it should conclude now.
pub fn evaluate(
    control: ArmStats,
    challenger: ArmStats,
    elapsed: Duration,
    policy: &ExperimentPolicy,
) -> Option<Verdict> {
    let prob = stats::prob_b_beats_a(control.conversions, control.views, challenger.conversions, challenger.views);
    let lr = stats::mixture_likelihood_ratio(
        control.conversions,
        control.views,
        challenger.conversions,
        challenger.views,
        policy.tau,
    );
    let enough = control.views >= policy.min_per_arm && challenger.views >= policy.min_per_arm;
    stop(enough, lr, prob, elapsed, policy, |outcome, threshold| match outcome {
        Outcome::ChallengerWon => format!(
            "challenger converts better: likelihood ratio {lr:.1} passed {threshold:.0}, P(challenger better) = {prob:.3}"
        ),
        Outcome::ControlWon => format!(
            "control converts better: likelihood ratio {lr:.1} passed {threshold:.0}, P(challenger better) = {prob:.3}"
        ),
        Outcome::Inconclusive => format!(
            "no clear winner after {} hours (likelihood ratio {lr:.1}, P(challenger better) = {prob:.3}): challenger rolled back",
            elapsed.num_hours()
        ),
    })
}

/// The stopping rule at one look, given its statistics: with `enough` data, a likelihood ratio
/// past 1/alpha and a posterior probability that agrees, the better arm wins; past the maximum
/// duration, no winner; else go on. `reason` words the verdict (with the threshold).
pub fn stop(
    enough: bool,
    lr: f64,
    prob: f64,
    elapsed: Duration,
    policy: &ExperimentPolicy,
    reason: impl Fn(Outcome, f64) -> String,
) -> Option<Verdict> {
    let threshold = 1.0 / policy.alpha;
    let outcome = if enough && lr >= threshold && prob >= policy.min_probability {
        Outcome::ChallengerWon
    } else if enough && lr >= threshold && 1.0 - prob >= policy.min_probability {
        Outcome::ControlWon
    } else if elapsed >= policy.max_duration {
        Outcome::Inconclusive
    } else {
        return None;
    };
    Some(Verdict { outcome, prob_challenger_better: prob, likelihood_ratio: lr, reason: reason(outcome, threshold) })
}

/// An experiment's statistics at one signal: the arms so far, the likelihood ratio the stopping
/// rule compares with 1/alpha, and the probability that the challenger converts better.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Look {
    pub position: u64,
    pub at: chrono::DateTime<chrono::Utc>,
    pub control: ArmStats,
    pub challenger: ArmStats,
    pub likelihood_ratio: f64,
    pub prob_challenger_better: f64,
}

/// The statistic over time: an experiment's look after every signal that moved one of its arms,
/// folded from the product's stream exactly as its actor folded it (`tau` is the mixing spread of
/// the policy the experiment ran under).
pub fn trajectory(
    events: &[mall_events::RecordedEvent],
    experiment_id: Uuid,
    tau: f64,
) -> Result<Vec<Look>, mall_events::codec::CodecError> {
    let mut state = super::ProductState::default();
    let mut looks = Vec::new();
    let mut last = [ArmStats::default(); 2];
    for e in events {
        let d = e.decode()?;
        state.evolve(&d, e.position, e.stream_version);
        let Some(x) = state.experiment.as_ref().filter(|x| x.experiment_id == experiment_id) else { continue };
        if x.arms != last {
            last = x.arms;
            let [a, b] = x.arms;
            looks.push(Look {
                position: e.position,
                at: e.recorded_at,
                control: a,
                challenger: b,
                likelihood_ratio: stats::mixture_likelihood_ratio(a.conversions, a.views, b.conversions, b.views, tau),
                prob_challenger_better: stats::prob_b_beats_a(a.conversions, a.views, b.conversions, b.views),
            });
        }
    }
    Ok(looks)
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    fn shopper(i: u64) -> ShopperId {
        ShopperId::parse(format!("s{i}")).unwrap()
    }

    #[test]
    fn a_shopper_always_gets_the_same_arm_and_shoppers_split_evenly() {
        let exp = Uuid::from_u128(7);
        let challengers = (0..10_000).filter(|i| arm(exp, &shopper(*i)) == Arm::Challenger).count();
        assert!((4_800..5_200).contains(&challengers), "{challengers}");
        for i in 0..100 {
            assert_eq!(arm(exp, &shopper(i)), arm(exp, &shopper(i)));
        }
        let other = Uuid::from_u128(8);
        let same = (0..1_000).filter(|i| arm(exp, &shopper(*i)) == arm(other, &shopper(*i))).count();
        assert!((400..600).contains(&same), "arms of different experiments are independent: {same}");
    }

    /// Runs one experiment, looking after every 10 views per arm as actors do when signals
    /// arrive, until it concludes or each arm has `max_views`.
    fn run(
        rng: &mut impl Rng,
        rate_a: f64,
        rate_b: f64,
        max_views: u64,
        policy: &ExperimentPolicy,
    ) -> (Option<Outcome>, u64) {
        let (mut a, mut b) = (ArmStats::default(), ArmStats::default());
        while a.views < max_views {
            for _ in 0..10 {
                a.views += 1;
                a.conversions += rng.random_bool(rate_a) as u64;
                b.views += 1;
                b.conversions += rng.random_bool(rate_b) as u64;
            }
            if let Some(v) = evaluate(a, b, Duration::zero(), policy) {
                return (Some(v.outcome), a.views);
            }
        }
        (None, a.views)
    }

    #[test]
    fn with_no_true_difference_at_most_five_percent_of_experiments_name_a_winner() {
        let policy = ExperimentPolicy::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(20261125);
        let runs = 400;
        let false_winners = (0..runs).filter(|_| run(&mut rng, 0.05, 0.05, 10_000, &policy).0.is_some()).count();
        let rate = false_winners as f64 / runs as f64;
        println!("A/A: {false_winners} false winners in {runs} runs ({:.1}%)", rate * 100.0);
        assert!(rate <= 0.05, "{rate}");
    }

    #[test]
    fn a_real_difference_is_found_and_the_better_arm_wins() {
        let policy = ExperimentPolicy::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let runs = 200;
        let mut found = 0;
        let mut sizes = Vec::new();
        for _ in 0..runs {
            let (outcome, n) = run(&mut rng, 0.05, 0.10, 10_000, &policy);
            assert_ne!(outcome, Some(Outcome::ControlWon), "the worse arm never wins here");
            if outcome == Some(Outcome::ChallengerWon) {
                found += 1;
                sizes.push(n);
            }
        }
        sizes.sort_unstable();
        println!("A/B 5% vs 10%: found in {found} of {runs} runs, median {} views per arm", sizes[sizes.len() / 2]);
        assert!(found as f64 / runs as f64 >= 0.9, "{found}");
    }

    #[test]
    fn the_trajectory_is_what_the_actor_folded_look_by_look_and_ends_with_the_experiment() {
        use mall_events::domain::*;

        use crate::testing::*;
        let exp = Uuid::from_u128(42);
        let mut log = vec![listed("p1", "toys", "Rings")];
        log.extend(traffic("p1", 3, 0));
        log.push(DomainEvent::ExperimentStarted(ExperimentStarted {
            experiment_id: exp,
            decision_id: Uuid::from_u128(1),
            product_id: mall_events::ids::ProductId::parse("p1").unwrap(),
            control: "Rings.".into(),
            challenger: "Six beech rings.".into(),
            at: t0(),
        }));
        for i in 0..40 {
            let s = format!("x{i}");
            log.push(viewed("p1", &s));
            if i % 3 == 0 {
                log.push(carted("p1", &s));
            }
        }
        log.push(DomainEvent::ExperimentConcluded(ExperimentConcluded {
            experiment_id: exp,
            product_id: mall_events::ids::ProductId::parse("p1").unwrap(),
            outcome: Outcome::Inconclusive,
            control: ArmStats::default(),
            challenger: ArmStats::default(),
            prob_challenger_better: 0.5,
            likelihood_ratio: 1.0,
            reason: "test".into(),
            at: t0(),
        }));
        log.extend(traffic("p1", 5, 5));
        let events: Vec<mall_events::RecordedEvent> = log
            .iter()
            .enumerate()
            .map(|(i, d)| mall_events::RecordedEvent {
                event_id: Uuid::from_u128(i as u128 + 1_000),
                stream_id: mall_events::StreamId::parse("product-p1").unwrap(),
                stream_version: i as u64 + 1,
                position: i as u64 + 1,
                event_type: d.event_type().into(),
                schema_version: mall_events::codec::current_version(d.event_type()).unwrap(),
                recorded_at: t0(),
                tags: Vec::new(),
                correlation_id: None,
                causation_id: None,
                payload: mall_events::codec::encode(d).unwrap(),
            })
            .collect();
        let looks = trajectory(&events, exp, 0.05).unwrap();
        // 40 views and 14 carts inside the experiment, each moving one arm; nothing before or after.
        assert_eq!(looks.len(), 54);
        let last = looks.last().unwrap();
        let mut want = [ArmStats::default(); 2];
        for i in 0..40 {
            let a = &mut want[arm(exp, &ShopperId::parse(format!("x{i}")).unwrap()) as usize];
            a.views += 1;
            a.conversions += u64::from(i % 3 == 0);
        }
        assert_eq!((last.control, last.challenger), (want[0], want[1]));
        assert!(looks.windows(2).all(|w| w[0].position < w[1].position));
        let lr = stats::mixture_likelihood_ratio(
            want[0].conversions,
            want[0].views,
            want[1].conversions,
            want[1].views,
            0.05,
        );
        assert_eq!(last.likelihood_ratio, lr);
        assert!(trajectory(&events, Uuid::from_u128(43), 0.05).unwrap().is_empty(), "another experiment saw nothing");
    }

    #[test]
    fn below_the_minimum_sample_nothing_concludes_and_at_the_maximum_duration_the_challenger_is_rolled_back() {
        let policy = ExperimentPolicy::default();
        let tiny = (ArmStats { views: 50, conversions: 0 }, ArmStats { views: 50, conversions: 25 });
        assert_eq!(evaluate(tiny.0, tiny.1, Duration::hours(1), &policy), None);
        let v = evaluate(tiny.0, tiny.1, policy.max_duration, &policy).unwrap();
        assert_eq!(v.outcome, Outcome::Inconclusive);
    }
}
