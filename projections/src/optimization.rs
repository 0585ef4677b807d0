//! The `optimization` projection: what product intelligence did, as tables.
//!
//! - `optimization_log`: one row per decision event (decided, generated, rejected, applied,
//!   experiment started or concluded), keyed by its log position, with the whole event as
//!   `detail` — the prompt, the raw output, the guardrail verdicts and the evidence included;
//! - `experiments`: one row per experiment, its copies, its arms' figures when it concluded and
//!   its outcome;
//! - `copy_history`: every description, tag set, SEO copy and embedding a product has had, and
//!   every challenger tested (`outcome` `testing`, then `kept` or `rolled_back`).
//!
//! All three are pure functions of single events: an experiment's row is keyed by its id, which
//! the conclusion carries, so no earlier state is needed.

use mall_events::RecordedEvent;
use mall_events::domain::{Content, DomainEvent, Outcome};
use serde_json::{Value, json};

use crate::change::{Change, TableDef};
use crate::row;
use crate::runner::Projection;

pub const OPTIMIZATION_LOG: &str = "optimization_log";
pub const EXPERIMENTS: &str = "experiments";
pub const COPY_HISTORY: &str = "copy_history";

const TABLES: &[TableDef] = &[
    TableDef {
        name: OPTIMIZATION_LOG,
        key: "key",
        defaults: || {
            row! {
                "position" => 0, "product_id" => "", "kind" => "", "decision_id" => Value::Null,
                "experiment_id" => Value::Null, "command" => Value::Null, "summary" => "", "detail" => json!({}),
                "at" => Value::Null,
            }
        },
    },
    TableDef {
        name: EXPERIMENTS,
        key: "experiment_id",
        defaults: || {
            row! {
                "product_id" => "", "decision_id" => Value::Null, "status" => "running", "control" => "",
                "challenger" => "", "control_views" => 0, "control_conversions" => 0, "challenger_views" => 0,
                "challenger_conversions" => 0, "prob_challenger_better" => Value::Null,
                "likelihood_ratio" => Value::Null, "reason" => Value::Null, "started_at" => Value::Null,
                "concluded_at" => Value::Null, "started_position" => 0, "concluded_position" => Value::Null,
            }
        },
    },
    TableDef {
        name: COPY_HISTORY,
        key: "key",
        defaults: || {
            row! {
                "product_id" => "", "field" => "", "content" => json!({}), "source" => "", "outcome" => "applied",
                "decision_id" => Value::Null, "experiment_id" => Value::Null, "position" => 0, "at" => Value::Null,
            }
        },
    },
];

/// A position as a key that sorts like the number (the optimization log's keys).
pub fn pos_key(p: u64) -> String {
    format!("{p:020}")
}

fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::ChallengerWon => "challenger_won",
        Outcome::ControlWon => "control_won",
        Outcome::Inconclusive => "inconclusive",
    }
}

fn field_of(c: &Content) -> (&'static str, Value) {
    match c {
        Content::Description { text } => ("description", json!({ "text": text })),
        Content::Tags { tags } => ("tags", json!({ "tags": tags })),
        Content::Seo(s) => ("seo", json!({ "title": s.title, "meta_description": s.meta_description })),
        // The vector itself is in `products.embedding`; the history names the text it embeds.
        Content::Embedding { vector, text_hash } => {
            ("embedding", json!({ "dimensions": vector.len(), "text_hash": format!("{text_hash:016x}") }))
        }
    }
}

/// Product intelligence's log, experiments and copy history.
pub struct Optimization;

impl Projection for Optimization {
    fn name(&self) -> &'static str {
        "optimization"
    }

    fn version(&self) -> u32 {
        1
    }

    fn tables(&self) -> &'static [TableDef] {
        TABLES
    }

    fn apply(&self, e: &RecordedEvent, d: &DomainEvent) -> Vec<Change> {
        let Some(product) = d.product_id().map(|p| p.as_str().to_string()) else { return Vec::new() };
        let pos = e.position;
        let mut out = Vec::new();
        let history = |field: &str, content: Value, source: &str, decision: Value, at| {
            Change::set(
                COPY_HISTORY,
                format!("{product}/{}", pos_key(pos)),
                row! {
                    "product_id" => product, "field" => field, "content" => content, "source" => source,
                    "outcome" => "applied", "decision_id" => decision, "position" => pos, "at" => at,
                },
            )
        };
        // (kind, decision, experiment, command, summary, at)
        let log: Option<(&str, Value, Value, Value, String, Value)> = match d {
            DomainEvent::ProductListed(l) => {
                out.push(history(
                    "description",
                    json!({ "text": l.description }),
                    "listing",
                    Value::Null,
                    json!(e.recorded_at),
                ));
                if !l.tags.is_empty() {
                    out.push(Change::set(
                        COPY_HISTORY,
                        format!("{product}/{}/tags", pos_key(pos)),
                        row! {
                            "product_id" => product, "field" => "tags", "content" => json!({ "tags": l.tags }),
                            "source" => "listing", "outcome" => "applied", "position" => pos, "at" => e.recorded_at,
                        },
                    ));
                }
                None
            }
            DomainEvent::ProductEdited(x) => {
                if let Some(text) = &x.description {
                    out.push(history(
                        "description",
                        json!({ "text": text }),
                        "vendor_edit",
                        Value::Null,
                        json!(e.recorded_at),
                    ));
                }
                None
            }
            DomainEvent::OptimizationDecided(o) => Some((
                "decided",
                json!(o.decision_id),
                Value::Null,
                json!(o.command),
                format!("{}: {}", o.rule, o.reason),
                json!(o.at),
            )),
            DomainEvent::CopyGenerated(g) => Some((
                "generated",
                json!(g.decision_id),
                Value::Null,
                Value::Null,
                format!("{} by {}", field_of(&g.content).0, g.generation.generator),
                json!(g.at),
            )),
            DomainEvent::GenerationRejected(r) => {
                Some(("rejected", json!(r.decision_id), Value::Null, json!(r.command), r.reason.clone(), json!(r.at)))
            }
            DomainEvent::CopyApplied(a) => {
                let (field, content) = field_of(&a.content);
                out.push(history(field, content, "decision", json!(a.decision_id), json!(a.at)));
                Some((
                    "applied",
                    json!(a.decision_id),
                    Value::Null,
                    Value::Null,
                    format!("{field} applied"),
                    json!(a.at),
                ))
            }
            DomainEvent::ExperimentStarted(x) => {
                out.push(Change::set(
                    EXPERIMENTS,
                    x.experiment_id.to_string(),
                    row! {
                        "product_id" => product, "decision_id" => x.decision_id, "status" => "running",
                        "control" => x.control, "challenger" => x.challenger, "started_at" => x.at,
                        "started_position" => pos,
                    },
                ));
                out.push(Change::set(
                    COPY_HISTORY,
                    format!("{product}/experiment/{}", x.experiment_id),
                    row! {
                        "product_id" => product, "field" => "description", "content" => json!({ "text": x.challenger }),
                        "source" => "experiment", "outcome" => "testing", "decision_id" => x.decision_id,
                        "experiment_id" => x.experiment_id, "position" => pos, "at" => x.at,
                    },
                ));
                Some((
                    "experiment_started",
                    json!(x.decision_id),
                    json!(x.experiment_id),
                    Value::Null,
                    "the challenger is tested against the current copy".to_string(),
                    json!(x.at),
                ))
            }
            DomainEvent::ExperimentConcluded(x) => {
                out.push(Change::set(
                    EXPERIMENTS,
                    x.experiment_id.to_string(),
                    row! {
                        "status" => outcome_name(x.outcome), "control_views" => x.control.views,
                        "control_conversions" => x.control.conversions, "challenger_views" => x.challenger.views,
                        "challenger_conversions" => x.challenger.conversions,
                        "prob_challenger_better" => x.prob_challenger_better, "likelihood_ratio" => x.likelihood_ratio,
                        "reason" => x.reason, "concluded_at" => x.at, "concluded_position" => pos,
                    },
                ));
                let kept = x.outcome == Outcome::ChallengerWon;
                out.push(Change::set(
                    COPY_HISTORY,
                    format!("{product}/experiment/{}", x.experiment_id),
                    row! {
                        "outcome" => if kept { "kept" } else { "rolled_back" }, "position" => pos, "at" => x.at,
                    },
                ));
                Some((
                    "experiment_concluded",
                    Value::Null,
                    json!(x.experiment_id),
                    Value::Null,
                    format!("{}: {}", outcome_name(x.outcome), x.reason),
                    json!(x.at),
                ))
            }
            _ => None,
        };
        if let Some((kind, decision, experiment, command, summary, at)) = log {
            let detail = serde_json::to_value(d).unwrap_or(Value::Null);
            out.push(Change::set(
                OPTIMIZATION_LOG,
                pos_key(pos),
                row! {
                    "position" => pos, "product_id" => product, "kind" => kind, "decision_id" => decision,
                    "experiment_id" => experiment, "command" => command, "summary" => summary, "detail" => detail,
                    "at" => at,
                },
            ));
        }
        out
    }
}
