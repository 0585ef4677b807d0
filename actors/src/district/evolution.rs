//! District evolution's rules: the district's last 30 days as an analysis, the pure `decide`
//! that proposes one bounded change of voice on evidence (or says why not), and concludes the
//! test of a proposed voice with the same statistics as copy experiments.
//!
//! A proposal changes one attribute — tone, style or audience — and is tested before it is
//! adopted: the district's copy is written in the current and the proposed voice and shoppers are
//! split between them ([`crate::experiment::arm`]); [`evaluate`](crate::experiment::evaluate)
//! decides. A voice that lost is not proposed again for [`Policy::retry_after`].

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use mall_events::domain::{
    ArmStats, DistrictCopy, EvolutionInput, Outcome, Personality, VoiceEvolutionProposed, VoiceTestConcluded,
};
use mall_events::ids::DistrictSlug;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::experiment::{self, ExperimentPolicy};

/// The days an analysis looks back.
pub const WINDOW_DAYS: i64 = 30;
/// The style proposed to a district whose shoppers leave at once.
pub const SCANNABLE: &str = "short, scannable sentences";

/// The rules' settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Views in the window before any change is proposed.
    pub min_views: u64,
    /// The least time between two proposals.
    pub cooldown: Duration,
    /// A district converting at least this share of its peers' rate is left alone.
    pub fair_share: f64,
    /// A peer must convert this many times better to lend its voice.
    pub peer_lift: f64,
    /// A bounce rate above this calls for a plainer style.
    pub max_bounce_rate: f64,
    /// A voice that lost its test is not proposed again for this long.
    pub retry_after: Duration,
    pub experiment: ExperimentPolicy,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            min_views: 300,
            cooldown: Duration::days(7),
            fair_share: 0.9,
            peer_lift: 1.25,
            max_bounce_rate: 0.5,
            retry_after: Duration::days(30),
            experiment: ExperimentPolicy::default(),
        }
    }
}

/// One day's signals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Day {
    pub counts: crate::product::Counts,
    /// The views' dwell, summed.
    pub dwell_ms: u64,
}

/// A proposal waiting for its copy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposed {
    pub evolution_id: Uuid,
    pub attribute: String,
    pub from: String,
    pub to: String,
    /// The voice proposed (the current one with the one attribute changed).
    pub personality: Personality,
    pub at: DateTime<Utc>,
}

/// A voice under test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoiceTest {
    pub evolution_id: Uuid,
    pub test_id: Uuid,
    pub started_at: DateTime<Utc>,
    pub control: DistrictCopy,
    pub challenger: DistrictCopy,
    pub personality: Personality,
    /// Control, challenger.
    pub arms: [ArmStats; 2],
}

/// One evolution as the history keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub evolution_id: Uuid,
    pub attribute: String,
    pub from: String,
    pub to: String,
    /// `kept`, `rolled_back` or `abandoned`.
    pub outcome: String,
    pub at: DateTime<Utc>,
}

/// What district evolution folds beside the district's signals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evolution {
    /// Signals by day (days since the epoch, UTC), the last [`WINDOW_DAYS`] + 5.
    pub days: BTreeMap<i64, Day>,
    /// The first log position folded with a signal of each day: where a reader of the window's
    /// signals starts.
    #[serde(default)]
    pub day_starts: BTreeMap<i64, mall_events::ids::Position>,
    /// The district's copy in force (none until a first test wrote it).
    pub copy: Option<DistrictCopy>,
    pub proposed: Option<Proposed>,
    pub test: Option<VoiceTest>,
    /// The last proposal (for the cooldown).
    pub last_proposal_at: Option<DateTime<Utc>>,
    /// Voices that lost (`attribute=value`) and when.
    pub lost: BTreeMap<String, DateTime<Utc>>,
    pub history: Vec<Record>,
}

/// The most evolutions the history keeps.
const MAX_HISTORY: usize = 100;

impl Evolution {
    /// Drops the days before the window of the latest day seen.
    pub fn prune(&mut self) {
        if let Some(&last) = self.days.keys().next_back() {
            let keep_from = last - WINDOW_DAYS - 5;
            self.days.retain(|d, _| *d >= keep_from);
            self.day_starts.retain(|d, _| *d >= keep_from);
        }
    }

    /// The first position to read the signals of the window ending at `now` from.
    pub fn window_start(&self, now: DateTime<Utc>) -> Option<mall_events::ids::Position> {
        let today = day_of(now);
        self.day_starts.range(today - WINDOW_DAYS + 1..=today).map(|(_, p)| *p).min()
    }

    pub fn proposed(&mut self, p: &VoiceEvolutionProposed, current: &Personality) {
        self.proposed = Some(Proposed {
            evolution_id: p.evolution_id,
            attribute: p.attribute.clone(),
            from: p.from.clone(),
            to: p.to.clone(),
            personality: with(current, &p.attribute, &p.to),
            at: p.at,
        });
        self.last_proposal_at = Some(p.at);
    }

    pub fn concluded(&mut self, c: &VoiceTestConcluded) {
        let Some(t) = self.test.take().filter(|t| t.test_id == c.test_id) else { return };
        let p = self.proposed.take();
        let kept = c.outcome == Outcome::ChallengerWon;
        if let Some(p) = p {
            if !kept {
                self.lost.insert(format!("{}={}", p.attribute, p.to), c.at);
            }
            self.push(Record {
                evolution_id: t.evolution_id,
                attribute: p.attribute,
                from: p.from,
                to: p.to,
                outcome: if kept { "kept" } else { "rolled_back" }.into(),
                at: c.at,
            });
        }
        self.copy = Some(c.copy.clone());
    }

    pub fn abandoned(&mut self, evolution_id: Uuid, at: DateTime<Utc>) {
        if let Some(p) = self.proposed.take_if(|p| p.evolution_id == evolution_id) {
            self.lost.insert(format!("{}={}", p.attribute, p.to), at);
            self.push(Record {
                evolution_id,
                attribute: p.attribute,
                from: p.from,
                to: p.to,
                outcome: "abandoned".into(),
                at,
            });
        }
    }

    fn push(&mut self, r: Record) {
        self.history.push(r);
        if self.history.len() > MAX_HISTORY {
            self.history.remove(0);
        }
    }

    /// Counts one signal in its arm of the running test.
    pub fn arm_count(&mut self, shopper: &mall_events::ids::ShopperId, view: bool, conversion: bool) {
        if let Some(t) = &mut self.test {
            let i = usize::from(experiment::arm(t.test_id, shopper) == experiment::Arm::Challenger);
            if view {
                t.arms[i].views = t.arms[i].views.saturating_add(1);
            }
            if conversion {
                t.arms[i].conversions = t.arms[i].conversions.saturating_add(1);
            }
        }
    }
}

/// `personality` with `attribute` set to `value`.
pub fn with(personality: &Personality, attribute: &str, value: &str) -> Personality {
    let mut p = personality.clone();
    match attribute {
        "tone" => p.tone = value.into(),
        "style" => p.style = value.into(),
        "audience" => p.audience = value.into(),
        _ => {}
    }
    p
}

/// The day number of a time (days since the epoch, UTC).
pub fn day_of(t: DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(86_400)
}

/// The district's last [`WINDOW_DAYS`] up to `now`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Analysis {
    pub impressions: u64,
    pub views: u64,
    pub clicks: u64,
    pub carts: u64,
    pub purchases: u64,
    pub bounces: u64,
    /// Revenue in currency units.
    pub revenue: f64,
    pub conversions: u64,
    pub conversion_rate: f64,
    pub bounce_rate: f64,
    /// Mean dwell per view, in seconds.
    pub dwell_seconds: f64,
    /// Clicks per impression.
    pub click_rate: f64,
}

/// Analyses the window ending at `now`.
pub fn analyse(e: &Evolution, now: DateTime<Utc>) -> Analysis {
    let today = day_of(now);
    let mut a = Analysis::default();
    let mut c = crate::product::Counts::default();
    let mut dwell = 0u64;
    for (_, d) in e.days.range(today - WINDOW_DAYS + 1..=today) {
        c.merge(&d.counts);
        dwell = dwell.saturating_add(d.dwell_ms);
    }
    let revenue = c.revenue;
    (a.impressions, a.views, a.clicks, a.carts, a.purchases, a.bounces) =
        (c.impressions, c.views, c.clicks, c.carts, c.purchases, c.bounces);
    a.revenue = revenue as f64 / 10_000.0;
    a.conversions = mall_events::measures::conversions(a.views, a.carts, a.purchases);
    let rate = |n: u64, d: u64| if d == 0 { 0.0 } else { n as f64 / d as f64 };
    a.conversion_rate = rate(a.conversions, a.views);
    a.bounce_rate = rate(a.bounces, a.views);
    a.dwell_seconds = rate(dwell, a.views) / 1_000.0;
    a.click_rate = rate(a.clicks, a.impressions);
    a
}

/// What a look at a district decides.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Change one attribute of the voice, to be tested first.
    Propose(VoiceEvolutionProposed),
    /// The running test is over.
    Conclude(VoiceTestConcluded),
    /// Nothing to do, and why.
    Hold { reason: String },
}

/// A look's id: the same for the same district and time.
pub fn evolution_id(slug: &DistrictSlug, now: DateTime<Utc>) -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("district-evolution/{slug}/{}", now.to_rfc3339()).as_bytes())
}

/// The test of an evolution.
pub fn test_id(evolution_id: Uuid) -> Uuid {
    Uuid::new_v5(&evolution_id, b"voice-test")
}

/// Pure: what the district's state calls for now, given its peers.
pub fn decide(
    slug: &DistrictSlug,
    personality: &Personality,
    e: &Evolution,
    as_of: mall_events::ids::Position,
    input: &EvolutionInput,
    policy: &Policy,
) -> Decision {
    let now = input.now;
    if let Some(t) = &e.test {
        let arms = t.arms.map(|a| ArmStats { views: a.views, conversions: a.conversions.min(a.views) });
        return match experiment::evaluate(arms[0], arms[1], now - t.started_at, &policy.experiment) {
            Some(v) => {
                let kept = v.outcome == Outcome::ChallengerWon;
                Decision::Conclude(VoiceTestConcluded {
                    evolution_id: t.evolution_id,
                    test_id: t.test_id,
                    slug: slug.clone(),
                    outcome: v.outcome,
                    control: arms[0],
                    challenger: arms[1],
                    prob_challenger_better: v.prob_challenger_better,
                    likelihood_ratio: v.likelihood_ratio,
                    reason: if kept {
                        format!("the new voice won: {}", v.reason)
                    } else {
                        format!("the voice stays: {}", v.reason)
                    },
                    personality: if kept { t.personality.clone() } else { personality.clone() },
                    copy: if kept { t.challenger.clone() } else { t.control.clone() },
                    as_of,
                    at: now,
                })
            }
            None => Decision::Hold {
                reason: format!(
                    "a voice test is running: {} of {} views in control, {} of {} in the new voice",
                    arms[0].conversions, arms[0].views, arms[1].conversions, arms[1].views
                ),
            },
        };
    }
    if e.proposed.is_some() {
        return Decision::Hold { reason: "a proposed voice is waiting for its copy to be written".into() };
    }
    if let Some(last) = e.last_proposal_at
        && now - last < policy.cooldown
    {
        return Decision::Hold {
            reason: format!(
                "the last change was proposed {} hours ago (cooldown: {} days)",
                (now - last).num_hours(),
                policy.cooldown.num_days()
            ),
        };
    }
    let a = analyse(e, now);
    if a.views < policy.min_views {
        return Decision::Hold {
            reason: format!(
                "not enough evidence: {} views in {WINDOW_DAYS} days (at least {})",
                a.views, policy.min_views
            ),
        };
    }
    let rate = |views: u64, conversions: u64| if views == 0 { 0.0 } else { conversions as f64 / views as f64 };
    let peers: Vec<_> = input.peers.iter().filter(|p| p.slug != *slug && p.views >= policy.min_views).collect();
    let (pv, pc) = peers.iter().fold((0u64, 0u64), |(v, c), p| (v + p.views, c + p.conversions));
    let peer_rate = rate(pv, pc);
    let lost = |attribute: &str, value: &str| {
        e.lost.get(&format!("{attribute}={value}")).is_some_and(|at| now - *at < policy.retry_after)
    };
    let mut metrics = BTreeMap::from([
        ("views".to_string(), a.views as f64),
        ("conversions".to_string(), a.conversions as f64),
        ("conversion_rate".to_string(), a.conversion_rate),
        ("bounce_rate".to_string(), a.bounce_rate),
        ("dwell_seconds".to_string(), a.dwell_seconds),
        ("peer_conversion_rate".to_string(), peer_rate),
        ("min_views".to_string(), policy.min_views as f64),
        ("fair_share".to_string(), policy.fair_share),
        ("max_bounce_rate".to_string(), policy.max_bounce_rate),
    ]);
    let propose = |attribute: &str, to: &str, rule: &str, reasons: Vec<String>, metrics: BTreeMap<String, f64>| {
        let from = match attribute {
            "tone" => &personality.tone,
            "style" => &personality.style,
            _ => &personality.audience,
        };
        Decision::Propose(VoiceEvolutionProposed {
            evolution_id: evolution_id(slug, now),
            slug: slug.clone(),
            attribute: attribute.into(),
            from: from.clone(),
            to: to.into(),
            rule: rule.into(),
            reasons,
            metrics,
            input: input.clone(),
            as_of,
            at: now,
        })
    };
    if a.bounce_rate > policy.max_bounce_rate && personality.style != SCANNABLE && !lost("style", SCANNABLE) {
        return propose(
            "style",
            SCANNABLE,
            "bounces_high",
            vec![format!(
                "{:.0}% of {} views in {WINDOW_DAYS} days left at once (more than {:.0}%): a plainer style",
                a.bounce_rate * 100.0,
                a.views,
                policy.max_bounce_rate * 100.0
            )],
            metrics,
        );
    }
    if peers.is_empty() || a.conversion_rate >= policy.fair_share * peer_rate {
        return Decision::Hold {
            reason: format!(
                "converting {:.1}% against {:.1}% in the other districts: no reason to change its voice",
                a.conversion_rate * 100.0,
                peer_rate * 100.0
            ),
        };
    }
    // The best-converting peer lends one attribute of its voice, the tone first.
    let mut ranked = peers.clone();
    ranked.sort_by(|x, y| {
        rate(y.views, y.conversions).total_cmp(&rate(x.views, x.conversions)).then(x.slug.cmp(&y.slug))
    });
    for peer in ranked {
        let peer_rate = rate(peer.views, peer.conversions);
        if peer_rate < policy.peer_lift * a.conversion_rate.max(f64::MIN_POSITIVE) {
            break;
        }
        for (attribute, theirs, ours) in [
            ("tone", &peer.personality.tone, &personality.tone),
            ("audience", &peer.personality.audience, &personality.audience),
            ("style", &peer.personality.style, &personality.style),
        ] {
            if theirs != ours && !lost(attribute, theirs) {
                metrics.insert("best_peer_conversion_rate".into(), peer_rate);
                return propose(
                    attribute,
                    theirs,
                    "converts_below_peers",
                    vec![
                        format!(
                            "converts {:.1}% of {} views in {WINDOW_DAYS} days against {:.1}% in the other districts",
                            a.conversion_rate * 100.0,
                            a.views,
                            peer_rate_all(pv, pc) * 100.0
                        ),
                        format!(
                            "{} converts {:.1}% of {} views with a {attribute} of {theirs:?} (here {ours:?})",
                            peer.slug,
                            peer_rate * 100.0,
                            peer.views
                        ),
                    ],
                    metrics,
                );
            }
        }
    }
    Decision::Hold {
        reason: "converting below its peers, but no voice it has not tried lately converts clearly better".into(),
    }
}

fn peer_rate_all(views: u64, conversions: u64) -> f64 {
    if views == 0 { 0.0 } else { conversions as f64 / views as f64 }
}

/// Re-runs `decide` for every recorded proposal and conclusion of a district with the state as
/// of the position it decided at and the input it recorded. Fed in two passes: first
/// [`record`](Self::record) every event (the decisions are kept), then
/// [`observe`](Self::observe) each event with the state folded before it, then
/// [`finish`](Self::finish) with the final state.
#[derive(Debug, Default)]
pub struct Verifier {
    recorded: BTreeMap<mall_events::ids::Position, Vec<(mall_events::ids::Position, mall_events::domain::DomainEvent)>>,
    pub checked: usize,
    /// (position, recorded, reproduced) of each decision not reproduced.
    pub mismatches: Vec<(mall_events::ids::Position, String, String)>,
}

impl Verifier {
    /// Pass one: keeps a recorded decision.
    pub fn record(&mut self, e: &mall_events::RecordedEvent, d: &mall_events::domain::DomainEvent) {
        use mall_events::domain::DomainEvent;
        let as_of = match d {
            DomainEvent::VoiceEvolutionProposed(p) => p.as_of,
            DomainEvent::VoiceTestConcluded(c) => c.as_of,
            _ => return,
        };
        self.recorded.entry(as_of).or_default().push((e.position, d.clone()));
    }

    /// Pass two: each event with the state folded before it.
    pub fn observe(&mut self, state: &super::DistrictState) {
        if let Some(due) = self.recorded.remove(&state.position) {
            for (position, d) in due {
                self.check(state, position, &d);
            }
        }
    }

    fn check(
        &mut self,
        state: &super::DistrictState,
        position: mall_events::ids::Position,
        d: &mall_events::domain::DomainEvent,
    ) {
        use mall_events::domain::DomainEvent;
        self.checked += 1;
        let (Some(slug), Some(personality)) = (&state.slug, &state.personality) else {
            self.mismatches.push((position, format!("{d:?}"), "no district".into()));
            return;
        };
        let reproduced = match d {
            DomainEvent::VoiceEvolutionProposed(p) => {
                decide(slug, personality, &state.evolution, state.position, &p.input, &Policy::default())
            }
            DomainEvent::VoiceTestConcluded(c) => {
                let input = EvolutionInput { now: c.at, peers: Vec::new(), trigger: String::new() };
                decide(slug, personality, &state.evolution, state.position, &input, &Policy::default())
            }
            _ => return,
        };
        let same = match (d, &reproduced) {
            (DomainEvent::VoiceEvolutionProposed(p), Decision::Propose(q)) => p == q,
            (DomainEvent::VoiceTestConcluded(c), Decision::Conclude(q)) => c == q,
            _ => false,
        };
        if !same {
            let json = |v: serde_json::Result<serde_json::Value>| v.map(|v| v.to_string()).unwrap_or_default();
            self.mismatches.push((position, json(serde_json::to_value(d)), json(serde_json::to_value(&reproduced))));
        }
    }

    /// The verification: what was checked and what was not reproduced.
    pub fn finish(
        mut self,
        state: &super::DistrictState,
    ) -> (usize, Vec<(mall_events::ids::Position, String, String)>) {
        self.observe(state);
        for (_, due) in std::mem::take(&mut self.recorded) {
            for (position, d) in due {
                self.checked += 1;
                self.mismatches.push((
                    position,
                    d.event_type().to_string(),
                    "the state it decided from was never folded".into(),
                ));
            }
        }
        (self.checked, self.mismatches)
    }
}

#[cfg(test)]
mod tests {
    use mall_events::domain::{DomainEvent, Peer, VoiceTestStarted};

    use super::*;
    use crate::district::DistrictState;
    use crate::testing::*;

    fn slug(s: &str) -> DistrictSlug {
        DistrictSlug::parse(s).unwrap()
    }

    fn voice(tone: &str) -> Personality {
        Personality { tone: tone.into(), style: "storytelling".into(), audience: "parents".into() }
    }

    /// A district "toys" (playful) whose shoppers viewed `views` times and converted `conversions`.
    fn district(views: usize, conversions: usize, bounces: usize) -> DistrictState {
        let mut d = DistrictState::default();
        let mut at = 0;
        let mut fold = |d: &mut DistrictState, e: &DomainEvent| {
            at += 1;
            d.evolve(e, at);
        };
        fold(&mut d, &opened("toys"));
        fold(&mut d, &listed("p1", "toys", "A train"));
        for e in traffic("p1", views, conversions) {
            fold(&mut d, &e);
        }
        for i in 0..bounces {
            fold(&mut d, &bounced("p1", &format!("shopper-{i}")));
        }
        d
    }

    fn peer(s: &str, tone: &str, views: u64, conversions: u64) -> Peer {
        Peer { slug: slug(s), personality: voice(tone), views, conversions }
    }

    fn look(d: &DistrictState, peers: Vec<Peer>, now: DateTime<Utc>) -> Decision {
        let input = EvolutionInput { now, peers, trigger: "job".into() };
        decide(
            d.slug.as_ref().unwrap(),
            d.personality.as_ref().unwrap(),
            &d.evolution,
            d.position,
            &input,
            &Policy::default(),
        )
    }

    fn hold(d: Decision) -> String {
        match d {
            Decision::Hold { reason } => reason,
            other => panic!("expected a hold: {other:#?}"),
        }
    }

    fn proposal(d: Decision) -> VoiceEvolutionProposed {
        match d {
            Decision::Propose(p) => p,
            other => panic!("expected a proposal: {other:#?}"),
        }
    }

    #[test]
    fn given_too_little_traffic_then_nothing_changes() {
        let d = district(100, 1, 0);
        let why = hold(look(&d, vec![peer("home", "warm", 1_000, 200)], t0()));
        assert!(why.contains("not enough evidence: 100 views"), "{why}");
    }

    #[test]
    fn given_a_district_converting_like_its_peers_then_its_voice_stays() {
        let d = district(500, 50, 0);
        let why = hold(look(&d, vec![peer("home", "warm", 1_000, 105)], t0()));
        assert!(why.contains("no reason to change"), "{why}");
    }

    #[test]
    fn given_a_district_converting_below_a_peer_then_the_peers_tone_is_proposed_with_its_reasons() {
        let d = district(500, 20, 0);
        let peers = vec![peer("home", "warm", 1_000, 200), peer("kitchen", "technical", 800, 90)];
        let p = proposal(look(&d, peers.clone(), t0()));
        assert_eq!((p.attribute.as_str(), p.from.as_str(), p.to.as_str()), ("tone", "playful", "warm"));
        assert_eq!(p.rule, "converts_below_peers");
        assert!(p.reasons[1].contains("home converts 20.0% of 1000 views"), "{:?}", p.reasons);
        assert_eq!(p.metrics["conversion_rate"], 0.04);
        assert_eq!(p.as_of, d.position);
        // The same look decides the same, id included.
        assert_eq!(look(&d, peers, t0()), Decision::Propose(p));
    }

    #[test]
    fn given_most_views_bounce_then_a_plainer_style_is_proposed() {
        let d = district(400, 40, 300);
        let p = proposal(look(&d, Vec::new(), t0()));
        assert_eq!((p.attribute.as_str(), p.to.as_str(), p.rule.as_str()), ("style", SCANNABLE, "bounces_high"));
    }

    #[test]
    fn given_a_recent_proposal_then_the_cooldown_holds_and_a_lost_voice_is_not_tried_again() {
        let mut d = district(500, 20, 0);
        let peers = vec![peer("home", "warm", 1_000, 200)];
        let p = proposal(look(&d, peers.clone(), t0()));
        d.evolve(&DomainEvent::VoiceEvolutionProposed(p.clone()), 10_000);
        assert!(hold(look(&d, peers.clone(), t0() + Duration::hours(1))).contains("waiting for its copy"));
        d.evolve(
            &DomainEvent::VoiceEvolutionAbandoned(mall_events::domain::VoiceEvolutionAbandoned {
                evolution_id: p.evolution_id,
                slug: slug("toys"),
                reason: "refused".into(),
                verdicts: Vec::new(),
                generator: String::new(),
                prompt: String::new(),
                raw_output: String::new(),
                at: t0(),
            }),
            10_001,
        );
        assert!(hold(look(&d, peers.clone(), t0() + Duration::days(2))).contains("cooldown"));
        // After the cooldown the tone that was abandoned is not proposed again; the peer's
        // audience is the next attribute.
        let mut other = peers.clone();
        other[0].personality.audience = "new homeowners".into();
        let next = proposal(look(&d, other, t0() + Duration::days(8)));
        assert_eq!((next.attribute.as_str(), next.to.as_str()), ("audience", "new homeowners"));
    }

    fn under_test(d: &mut DistrictState, p: &VoiceEvolutionProposed) -> Uuid {
        let copy = |t: &str| DistrictCopy {
            tagline: t.into(),
            description: "d".into(),
            seo_title: "s".into(),
            seo_description: "m".into(),
        };
        let test = test_id(p.evolution_id);
        d.evolve(&DomainEvent::VoiceEvolutionProposed(p.clone()), d.position + 1);
        d.evolve(
            &DomainEvent::VoiceTestStarted(VoiceTestStarted {
                evolution_id: p.evolution_id,
                test_id: test,
                slug: slug("toys"),
                control: copy("old"),
                challenger: copy("new"),
                personality: with(d.personality.as_ref().unwrap(), &p.attribute, &p.to),
                generator: "offline".into(),
                verdicts: Vec::new(),
                prompt: String::new(),
                raw_output: String::new(),
                at: p.at,
            }),
            d.position + 1,
        );
        test
    }

    /// Views from 1,000 shoppers; those in the challenger's arm convert at `challenger`, the
    /// others at `control`.
    fn shoppers_respond(d: &mut DistrictState, test: Uuid, control: f64, challenger: f64) {
        for i in 0..1_000 {
            let s = format!("t-{i}");
            let arm = experiment::arm(test, &mall_events::ids::ShopperId::parse(s.clone()).unwrap());
            let rate = if arm == experiment::Arm::Challenger { challenger } else { control };
            d.evolve(&viewed("p1", &s), d.position + 1);
            if (i as f64 * 0.618_034).fract() < rate {
                d.evolve(&carted("p1", &s), d.position + 1);
            }
        }
    }

    #[test]
    fn given_shoppers_who_respond_to_the_new_voice_then_it_wins_its_test_and_is_kept() {
        let mut d = district(500, 20, 0);
        let p = proposal(look(&d, vec![peer("home", "warm", 1_000, 200)], t0()));
        let test = under_test(&mut d, &p);
        assert!(hold(look(&d, Vec::new(), t0() + Duration::hours(1))).contains("a voice test is running"));
        shoppers_respond(&mut d, test, 0.04, 0.20);
        let c = match look(&d, Vec::new(), t0() + Duration::days(1)) {
            Decision::Conclude(c) => c,
            other => panic!("{other:#?}"),
        };
        assert_eq!(c.outcome, Outcome::ChallengerWon, "{c:#?}");
        assert_eq!(c.personality.tone, "warm");
        assert_eq!(c.copy.tagline, "new");
        d.evolve(&DomainEvent::VoiceTestConcluded(c), d.position + 1);
        let now = d.personality.clone().unwrap();
        // One attribute changed.
        assert_eq!(
            (now.tone.as_str(), now.style.as_str(), now.audience.as_str()),
            ("warm", "short sentences", "parents")
        );
        assert_eq!(d.evolution.history.last().unwrap().outcome, "kept");
        assert_eq!(d.evolution.copy.as_ref().unwrap().tagline, "new");
    }

    #[test]
    fn given_shoppers_who_do_not_respond_then_the_voice_is_rolled_back_and_not_tried_again_soon() {
        let mut d = district(500, 20, 0);
        let p = proposal(look(&d, vec![peer("home", "warm", 1_000, 200)], t0()));
        let test = under_test(&mut d, &p);
        shoppers_respond(&mut d, test, 0.20, 0.04);
        let c = match look(&d, Vec::new(), t0() + Duration::days(1)) {
            Decision::Conclude(c) => c,
            other => panic!("{other:#?}"),
        };
        assert_eq!(c.outcome, Outcome::ControlWon);
        assert_eq!(c.personality.tone, "playful");
        d.evolve(&DomainEvent::VoiceTestConcluded(c), d.position + 1);
        assert_eq!(d.personality.as_ref().unwrap().tone, "playful");
        assert_eq!(d.evolution.history.last().unwrap().outcome, "rolled_back");
        assert!(d.evolution.lost.contains_key("tone=warm"));
    }

    #[test]
    fn given_a_recorded_history_then_the_verifier_reproduces_each_decision_and_catches_a_forged_one() {
        let mut d = district(500, 20, 0);
        let p = proposal(look(&d, vec![peer("home", "warm", 1_000, 200)], t0()));
        let mut log: Vec<(mall_events::RecordedEvent, DomainEvent)> = Vec::new();
        let recorded = |position: u64, d: DomainEvent| {
            let e = mall_events::RecordedEvent {
                event_id: Uuid::from_u128(position as u128),
                stream_id: mall_events::StreamId::parse("district-toys").unwrap(),
                stream_version: position,
                position,
                event_type: d.event_type().into(),
                schema_version: 1,
                recorded_at: t0(),
                tags: Vec::new(),
                correlation_id: None,
                causation_id: None,
                payload: Vec::new(),
            };
            (e, d)
        };
        let start = d.clone();
        log.push(recorded(d.position + 1, DomainEvent::VoiceEvolutionProposed(p.clone())));
        let verify = |log: &[(mall_events::RecordedEvent, DomainEvent)]| {
            let mut v = Verifier::default();
            for (e, d) in log {
                v.record(e, d);
            }
            let mut s = start.clone();
            for (e, d) in log {
                v.observe(&s);
                s.evolve(d, e.position);
            }
            v.finish(&s)
        };
        let (checked, mismatches) = verify(&log);
        assert_eq!((checked, mismatches.len()), (1, 0), "{mismatches:#?}");
        let mut forged = p;
        forged.to = "elegant".into();
        log[0].1 = DomainEvent::VoiceEvolutionProposed(forged);
        assert_eq!(verify(&log).1.len(), 1);
        d.evolve(&log[0].1, d.position + 1);
    }
}
