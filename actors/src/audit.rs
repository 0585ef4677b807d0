//! Audit: why a product's copy changed, read from its stream alone.
//!
//! [`history`] folds a product's events into the story of every change: the decision (rule,
//! reason, metrics, the log range it had folded), the generation (generator, prompt, raw output,
//! guardrail verdicts), and what became of it (applied, rejected, or tested in an experiment
//! that kept or rolled it back). [`verify`] replays the stream and re-runs `decide` at every
//! recorded decision with the inputs the decision recorded, reporting each one it does not
//! reproduce. Neither calls a generator: recorded outputs are what they are.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use mall_events::RecordedEvent;
use mall_events::domain::*;
use mall_events::ids::Position;
use serde::Serialize;
use uuid::Uuid;

use crate::product::{self, Command, DecideInput, Policy, ProductState};
use crate::stats::Prior;

/// What became of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Decided; no generation recorded yet.
    InFlight,
    /// The generation failed or the guardrails refused it: the copy did not change.
    Rejected,
    /// The new content became the copy.
    Applied,
    /// The challenger is under test.
    Testing,
    /// The challenger won its experiment and became the copy.
    Kept,
    /// The challenger lost (or nothing was shown): the old copy stays.
    RolledBack,
}

/// An experiment as the history shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ExperimentRecord {
    pub experiment_id: Uuid,
    pub started_at: DateTime<Utc>,
    pub started_position: Position,
    pub concluded: Option<ExperimentConcluded>,
    pub concluded_position: Option<Position>,
}

/// One decision and everything that followed from it.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub decision_id: Uuid,
    pub command: CommandKind,
    pub rule: String,
    pub reason: String,
    pub decided_at: DateTime<Utc>,
    /// The decision event's place in the log.
    pub position: Position,
    /// The metrics, the range of the log they were folded from, the prior and the budget.
    pub evidence: Evidence,
    pub policy: std::collections::BTreeMap<String, f64>,
    pub status: Status,
    /// The generation: generator (model or offline), prompt, raw output, guardrail verdicts.
    pub generation: Option<Generation>,
    pub generated_at: Option<DateTime<Utc>>,
    pub rejected_reason: Option<String>,
    /// The copy before and after (after: what was generated, whether or not it was kept).
    pub old: Option<Content>,
    pub new: Option<Content>,
    pub applied_at: Option<DateTime<Utc>>,
    pub experiment: Option<ExperimentRecord>,
}

/// One version of a product's description.
#[derive(Debug, Clone, Serialize)]
pub struct DescriptionVersion {
    pub version: u32,
    pub text: String,
    pub since: DateTime<Utc>,
    pub position: Position,
    /// `listing`, `vendor_edit`, or `decision` (then `decision_id` says which).
    pub source: String,
    pub decision_id: Option<Uuid>,
}

/// A product's copy history.
#[derive(Debug, Clone, Serialize)]
pub struct History {
    pub product_id: String,
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    pub seo: Option<Seo>,
    /// Every description the product has had, oldest first.
    pub versions: Vec<DescriptionVersion>,
    /// Every decision, oldest first.
    pub changes: Vec<Change>,
    /// The last position of the product's stream that the history reflects.
    pub position: Position,
}

/// Folds a product stream (in order) into its history.
pub fn history(events: &[RecordedEvent]) -> Result<History, mall_events::codec::CodecError> {
    let mut state = ProductState::default();
    let mut h = HistoryBuilder::default();
    for e in events {
        let d = e.decode()?;
        h.observe(&state, e, &d);
        state.evolve(&d, e.position, e.stream_version);
    }
    Ok(h.finish(&state))
}

/// A product's history, built while its stream is folded: [`observe`](Self::observe) each event
/// with the state folded just before it (the loader `mall audit` shares with the live actors
/// calls it), then [`finish`](Self::finish) with the final state.
#[derive(Debug, Default)]
pub struct HistoryBuilder {
    changes: Vec<Change>,
    by_decision: HashMap<Uuid, usize>,
    by_experiment: HashMap<Uuid, usize>,
    versions: Vec<DescriptionVersion>,
    position: Position,
}

impl HistoryBuilder {
    /// Takes in one event of the stream; `state` is the product before it.
    pub fn observe(&mut self, state: &ProductState, e: &RecordedEvent, d: &DomainEvent) {
        let Self { changes, by_decision, by_experiment, versions, position } = self;
        *position = e.position;
        let at = e.recorded_at;
        match d {
            DomainEvent::ProductListed(l) => versions.push(DescriptionVersion {
                version: 0,
                text: l.description.clone(),
                since: at,
                position: e.position,
                source: "listing".into(),
                decision_id: None,
            }),
            DomainEvent::ProductEdited(ProductEdited { description: Some(text), .. }) => {
                versions.push(DescriptionVersion {
                    version: state.copy_version + 1,
                    text: text.clone(),
                    since: at,
                    position: e.position,
                    source: "vendor_edit".into(),
                    decision_id: None,
                });
            }
            DomainEvent::OptimizationDecided(o) => {
                by_decision.insert(o.decision_id, changes.len());
                changes.push(Change {
                    decision_id: o.decision_id,
                    command: o.command,
                    rule: o.rule.clone(),
                    reason: o.reason.clone(),
                    decided_at: o.at,
                    position: e.position,
                    evidence: o.evidence.clone(),
                    policy: o.policy.clone(),
                    status: Status::InFlight,
                    generation: None,
                    generated_at: None,
                    rejected_reason: None,
                    old: current(state, o.command),
                    new: None,
                    applied_at: None,
                    experiment: None,
                });
            }
            DomainEvent::CopyGenerated(g) => {
                if let Some(&i) = by_decision.get(&g.decision_id) {
                    let c = &mut changes[i];
                    c.generation = Some(g.generation.clone());
                    c.generated_at = Some(g.at);
                    c.new = Some(g.content.clone());
                    c.old = current(state, c.command);
                }
            }
            DomainEvent::GenerationRejected(r) => {
                if let Some(&i) = by_decision.get(&r.decision_id) {
                    let c = &mut changes[i];
                    c.status = Status::Rejected;
                    c.generation = Some(r.generation.clone());
                    c.generated_at = Some(r.at);
                    c.rejected_reason = Some(r.reason.clone());
                }
            }
            DomainEvent::CopyApplied(a) => {
                if let Some(&i) = by_decision.get(&a.decision_id) {
                    let c = &mut changes[i];
                    c.status = Status::Applied;
                    c.applied_at = Some(a.at);
                    c.new = Some(a.content.clone());
                    if let Content::Description { text } = &a.content {
                        versions.push(DescriptionVersion {
                            version: state.copy_version + 1,
                            text: text.clone(),
                            since: a.at,
                            position: e.position,
                            source: "decision".into(),
                            decision_id: Some(a.decision_id),
                        });
                    }
                }
            }
            DomainEvent::ExperimentStarted(x) => {
                if let Some(&i) = by_decision.get(&x.decision_id) {
                    by_experiment.insert(x.experiment_id, i);
                    let c = &mut changes[i];
                    c.status = Status::Testing;
                    c.old = Some(Content::Description { text: x.control.clone() });
                    c.new = Some(Content::Description { text: x.challenger.clone() });
                    c.experiment = Some(ExperimentRecord {
                        experiment_id: x.experiment_id,
                        started_at: x.at,
                        started_position: e.position,
                        concluded: None,
                        concluded_position: None,
                    });
                }
            }
            DomainEvent::ExperimentConcluded(x) => {
                if let Some(&i) = by_experiment.get(&x.experiment_id) {
                    let c = &mut changes[i];
                    let won = x.outcome == Outcome::ChallengerWon;
                    c.status = if won { Status::Kept } else { Status::RolledBack };
                    if won {
                        c.applied_at = Some(x.at);
                        if let Some(Content::Description { text }) = &c.new {
                            versions.push(DescriptionVersion {
                                version: state.copy_version + 1,
                                text: text.clone(),
                                since: x.at,
                                position: e.position,
                                source: "decision".into(),
                                decision_id: Some(c.decision_id),
                            });
                        }
                    }
                    if let Some(r) = &mut c.experiment {
                        r.concluded = Some(x.clone());
                        r.concluded_position = Some(e.position);
                    }
                }
            }
            _ => {}
        }
    }

    /// The history, with the product as it is after the last event.
    pub fn finish(self, state: &ProductState) -> History {
        History {
            product_id: state.product_id.as_ref().map(|p| p.as_str().to_string()).unwrap_or_default(),
            title: state.title.clone(),
            description: state.description.clone(),
            tags: state.tags.clone(),
            seo: state.seo.clone(),
            versions: self.versions,
            changes: self.changes,
            position: self.position,
        }
    }
}

/// A change as anyone may see it: what changed, when, and the rule and its finding in words —
/// never the prompt, the model's raw output, the guardrails' details or a model server's error.
#[derive(Debug, Clone, Serialize)]
pub struct PublicChange {
    pub decision_id: Uuid,
    pub command: CommandKind,
    pub rule: String,
    pub reason: String,
    pub decided_at: DateTime<Utc>,
    pub status: Status,
    /// What became of it, in words.
    pub outcome: String,
    pub old: Option<Content>,
    /// The new copy, where shoppers saw it (applied or tested).
    pub new: Option<Content>,
    pub applied_at: Option<DateTime<Utc>>,
    pub experiment_id: Option<Uuid>,
    pub experiment_outcome: Option<Outcome>,
}

/// A product's copy history as anyone may see it.
#[derive(Debug, Clone, Serialize)]
pub struct PublicHistory {
    pub product_id: String,
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    pub seo: Option<Seo>,
    pub versions: Vec<DescriptionVersion>,
    pub changes: Vec<PublicChange>,
    pub position: Position,
}

/// A rejection in public words: the check that refused the text (never its details), or that
/// the generation failed (never the model server's error).
pub fn public_rejection(reason: &str) -> String {
    let check = reason.split(':').next().unwrap_or("").trim();
    if crate::guardrails::CHECKS.contains(&check) || check == "format" || check == "finite" {
        format!("not published: the {check} check refused it")
    } else {
        "not published: the generation failed".into()
    }
}

impl History {
    /// The history without decision internals.
    pub fn public(&self) -> PublicHistory {
        let changes = self
            .changes
            .iter()
            .map(|c| {
                let shown = matches!(c.status, Status::Applied | Status::Testing | Status::Kept | Status::RolledBack);
                let outcome = match c.status {
                    Status::InFlight => "being written".to_string(),
                    Status::Rejected => public_rejection(c.rejected_reason.as_deref().unwrap_or("")),
                    Status::Applied => "published".into(),
                    Status::Testing => "under test against the current copy".into(),
                    Status::Kept => "kept: it converted better in its experiment".into(),
                    Status::RolledBack => "rolled back: it did not convert better in its experiment".into(),
                };
                PublicChange {
                    decision_id: c.decision_id,
                    command: c.command,
                    rule: c.rule.clone(),
                    reason: c.reason.clone(),
                    decided_at: c.decided_at,
                    status: c.status,
                    outcome,
                    old: c.old.clone(),
                    new: if shown { c.new.clone() } else { None },
                    applied_at: c.applied_at,
                    experiment_id: c.experiment.as_ref().map(|x| x.experiment_id),
                    experiment_outcome: c.experiment.as_ref().and_then(|x| x.concluded.as_ref().map(|k| k.outcome)),
                }
            })
            .collect();
        PublicHistory {
            product_id: self.product_id.clone(),
            title: self.title.clone(),
            description: self.description.clone(),
            tags: self.tags.clone(),
            seo: self.seo.clone(),
            versions: self.versions.clone(),
            changes,
            position: self.position,
        }
    }
}

/// The copy a command would replace.
fn current(state: &ProductState, command: CommandKind) -> Option<Content> {
    match command {
        CommandKind::RewriteDescription => Some(Content::Description { text: state.description.clone() }),
        CommandKind::RegenerateTags => Some(Content::Tags { tags: state.tags.clone() }),
        CommandKind::UpdateSeo => state.seo.clone().map(Content::Seo),
        CommandKind::RegenerateEmbedding => None,
    }
}

/// A recorded decision that `decide` does not reproduce.
#[derive(Debug, Clone, Serialize)]
pub struct Mismatch {
    pub position: Position,
    pub stream_version: u64,
    pub event_type: String,
    /// What was recorded, as JSON.
    pub recorded: serde_json::Value,
    /// What `decide` returns now from the same state and inputs (`null`: nothing).
    pub reproduced: serde_json::Value,
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verification {
    /// Recorded decisions checked.
    pub checked: usize,
    pub mismatches: Vec<Mismatch>,
}

/// Replays a product stream and re-runs `decide` at each recorded decision (an optimization or
/// an experiment's conclusion) from the state folded just before it, with the inputs the
/// decision recorded: the district prior, the budget flag, the policy, its id and its time.
/// Conclusions, which record no inputs of their own, use the policy of the latest decision
/// before them.
pub fn verify(events: &[RecordedEvent]) -> Result<Verification, mall_events::codec::CodecError> {
    let mut state = ProductState::default();
    let mut v = Verifier::default();
    for e in events {
        let d = e.decode()?;
        v.observe(&state, e, &d);
        state.evolve(&d, e.position, e.stream_version);
    }
    Ok(v.finish())
}

/// [`verify`], built while the stream is folded by the loader `mall replay --verify` shares with
/// the live actors: [`observe`](Self::observe) each event with the state just before it.
#[derive(Debug, Default)]
pub struct Verifier {
    out: Verification,
    /// The policy of the latest decision (conclusions record none of their own).
    policy: Option<Policy>,
}

impl Verifier {
    /// Takes in one event; `state` is the product before it.
    pub fn observe(&mut self, state: &ProductState, e: &RecordedEvent, d: &DomainEvent) {
        let policy = self.policy.get_or_insert_with(Policy::default);
        let out = &mut self.out;
        let reproduced = match d {
            DomainEvent::OptimizationDecided(o) => {
                *policy = Policy::from_map(&o.policy);
                let input = DecideInput {
                    prior: Prior { alpha: o.evidence.prior_alpha, beta: o.evidence.prior_beta },
                    budget_available: o.evidence.budget_available,
                    policy: *policy,
                    decision_id: o.decision_id,
                    now: o.at,
                };
                Some(product::decide(state, &input))
            }
            DomainEvent::PriceTestConcluded(x) => {
                let input = DecideInput {
                    prior: Prior::DEFAULT,
                    budget_available: true,
                    policy: Policy::from_map(&x.policy),
                    decision_id: Uuid::nil(),
                    now: x.at,
                };
                Some(product::decide(state, &input))
            }
            DomainEvent::ExperimentConcluded(x) => {
                let input = DecideInput {
                    prior: Prior::DEFAULT,
                    budget_available: true,
                    policy: *policy,
                    decision_id: Uuid::nil(),
                    now: x.at,
                };
                Some(product::decide(state, &input))
            }
            _ => None,
        };
        if let Some(commands) = reproduced {
            out.checked += 1;
            let same = commands.iter().any(|c| match c {
                Command::Optimize(o) => *d == DomainEvent::OptimizationDecided(o.clone()),
                Command::ConcludeExperiment(x) => *d == DomainEvent::ExperimentConcluded(x.clone()),
                Command::ConcludePriceTest(x) => *d == DomainEvent::PriceTestConcluded(x.clone()),
            });
            if !same {
                out.mismatches.push(Mismatch {
                    position: e.position,
                    stream_version: e.stream_version,
                    event_type: e.event_type.clone(),
                    recorded: serde_json::to_value(d).unwrap_or_default(),
                    reproduced: commands
                        .into_iter()
                        .next()
                        .map(|c| serde_json::to_value(c.into_event()).unwrap_or_default())
                        .unwrap_or(serde_json::Value::Null),
                });
            }
        }
    }

    /// What was checked, and what was not reproduced.
    pub fn finish(self) -> Verification {
        self.out
    }
}
