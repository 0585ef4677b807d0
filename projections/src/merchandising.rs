//! The `merchandising` projection.
//!
//! - `ab_tests`: every test of mall's — copy experiments (`copy`), district voice tests
//!   (`voice`) and ordering tests (`ordering`) — with its subject, arms, figures and outcome;
//! - `district_orderings`: each district's layout (the weights its last ordering test left in
//!   force) and the ordering under test;
//! - `merchandising_rules`: every rule with its action, condition, strength, pin position,
//!   priority, window, reason and evidence, whether the engine made it, how often it was set
//!   (1 + its revisions), when last, and whether it is active or expired (and why).

use mall_events::RecordedEvent;
use mall_events::domain::DomainEvent;
use serde_json::{Value, json};

use crate::change::{Change, TableDef};
use crate::row;
use crate::runner::Projection;

pub const MERCHANDISING_RULES: &str = "merchandising_rules";
pub const AB_TESTS: &str = "ab_tests";
pub const DISTRICT_ORDERINGS: &str = "district_orderings";

const TABLES: &[TableDef] = &[
    TableDef {
        name: AB_TESTS,
        key: "test_id",
        defaults: || {
            row! {
                "kind" => "", "subject" => "", "status" => "running", "name" => Value::Null,
                "control" => Value::Null, "challenger" => Value::Null, "outcome" => Value::Null,
                "control_stats" => Value::Null, "challenger_stats" => Value::Null,
                "prob_challenger_better" => Value::Null, "likelihood_ratio" => Value::Null,
                "srm_p" => Value::Null, "reason" => Value::Null, "started_at" => Value::Null,
                "concluded_at" => Value::Null, "position" => 0,
            }
        },
    },
    TableDef {
        name: DISTRICT_ORDERINGS,
        key: "district",
        defaults: || {
            row! {
                "layout" => Value::Null, "test_id" => Value::Null, "challenger" => Value::Null,
                "test_name" => Value::Null, "position" => 0,
            }
        },
    },
    TableDef {
        name: MERCHANDISING_RULES,
        key: "rule_id",
        defaults: || {
            row! {
                "action" => "", "condition" => json!({}), "strength" => 0.0, "pin_position" => Value::Null,
                "priority" => 0, "valid_from" => Value::Null, "valid_until" => Value::Null, "auto" => false,
                "rule" => "", "reason" => "", "evidence" => json!({}), "status" => "active", "revisions" => 0,
                "expired_reason" => Value::Null, "updated_at" => Value::Null,
                "expired_at" => Value::Null, "position" => 0,
            }
        },
    },
];

/// Merchandising rules.
pub struct Merchandising;

impl Projection for Merchandising {
    fn name(&self) -> &'static str {
        "merchandising"
    }

    fn version(&self) -> u32 {
        // 2: `ab_tests` and `district_orderings`.
        2
    }

    fn tables(&self) -> &'static [TableDef] {
        TABLES
    }

    fn concerns(&self, e: &RecordedEvent) -> bool {
        matches!(
            e.event_type.as_str(),
            "merchandising_rule_set"
                | "merchandising_rule_expired"
                | "experiment_started"
                | "experiment_concluded"
                | "voice_test_started"
                | "voice_test_concluded"
                | "ordering_test_started"
                | "ordering_test_concluded"
        )
    }

    fn apply(&self, e: &RecordedEvent, d: &DomainEvent) -> Vec<Change> {
        match d {
            DomainEvent::MerchandisingRuleSet(r) => vec![Change::upsert(
                MERCHANDISING_RULES,
                r.rule_id.to_string(),
                row! {
                    "action" => r.action.as_str(), "condition" => json!(r.condition), "strength" => r.strength,
                    "pin_position" => json!(r.position), "priority" => r.priority,
                    "valid_from" => json!(r.valid_from), "valid_until" => json!(r.valid_until), "auto" => r.auto,
                    "rule" => r.rule, "reason" => r.reason, "evidence" => json!(r.evidence), "status" => "active",
                    "expired_reason" => Value::Null, "expired_at" => Value::Null, "updated_at" => json!(r.at),
                    "position" => e.position,
                },
                vec![("revisions", 1.0)],
            )],
            DomainEvent::MerchandisingRuleExpired(x) => vec![Change::set(
                MERCHANDISING_RULES,
                x.rule_id.to_string(),
                row! {
                    "status" => "expired", "expired_reason" => x.reason, "expired_at" => json!(x.at),
                    "position" => e.position,
                },
            )],
            DomainEvent::ExperimentStarted(x) => vec![started(
                e,
                x.experiment_id,
                "copy",
                &format!("product:{}", x.product_id),
                json!(x.control),
                json!(x.challenger),
                x.at,
            )],
            DomainEvent::VoiceTestStarted(v) => vec![started(
                e,
                v.test_id,
                "voice",
                &format!("district:{}", v.slug),
                json!(v.control),
                json!({"copy": v.challenger, "personality": v.personality}),
                v.at,
            )],
            DomainEvent::OrderingTestStarted(o) => vec![
                Change::set(AB_TESTS, o.test_id.to_string(), {
                    let mut r = started_row(
                        e,
                        "ordering",
                        &format!("district:{}", o.district),
                        json!(o.control),
                        json!(o.challenger),
                        o.at,
                    );
                    r.insert("name".into(), json!(o.name));
                    r.insert("reason".into(), json!(o.reason));
                    r
                }),
                Change::set(
                    DISTRICT_ORDERINGS,
                    o.district.as_str(),
                    row! {
                        "test_id" => o.test_id.to_string(), "challenger" => json!(o.challenger), "test_name" => o.name,
                        "position" => e.position,
                    },
                ),
            ],
            DomainEvent::ExperimentConcluded(x) => vec![concluded(
                e,
                x.experiment_id,
                x.outcome,
                (x.control, x.challenger),
                (x.prob_challenger_better, x.likelihood_ratio),
                &x.reason,
                x.at,
            )],
            DomainEvent::VoiceTestConcluded(v) => vec![concluded(
                e,
                v.test_id,
                v.outcome,
                (v.control, v.challenger),
                (v.prob_challenger_better, v.likelihood_ratio),
                &v.reason,
                v.at,
            )],
            DomainEvent::OrderingTestConcluded(o) => {
                let mut c = concluded(
                    e,
                    o.test_id,
                    o.outcome,
                    (o.control, o.challenger),
                    (o.prob_challenger_better, o.likelihood_ratio),
                    &o.reason,
                    o.at,
                );
                if let crate::change::Op::Set(r) = &mut c.op {
                    r.insert("srm_p".into(), json!(o.srm_p));
                    r.insert(
                        "control_stats".into(),
                        json!({"impressions": o.control.views, "successes": o.control.conversions, "shoppers": o.control_shoppers}),
                    );
                    r.insert(
                        "challenger_stats".into(),
                        json!({"impressions": o.challenger.views, "successes": o.challenger.conversions, "shoppers": o.challenger_shoppers}),
                    );
                    if o.invalid {
                        r.insert("status".into(), json!("invalid"));
                    }
                }
                vec![
                    c,
                    Change::set(
                        DISTRICT_ORDERINGS,
                        o.district.as_str(),
                        row! {
                            "layout" => json!(o.layout), "test_id" => Value::Null, "challenger" => Value::Null,
                            "test_name" => Value::Null, "position" => e.position,
                        },
                    ),
                ]
            }
            _ => Vec::new(),
        }
    }
}

fn started_row(
    e: &RecordedEvent,
    kind: &str,
    subject: &str,
    control: Value,
    challenger: Value,
    at: chrono::DateTime<chrono::Utc>,
) -> crate::change::Row {
    row! {
        "kind" => kind, "subject" => subject, "status" => "running", "control" => control, "challenger" => challenger,
        "started_at" => json!(at), "position" => e.position,
    }
}

fn started(
    e: &RecordedEvent,
    id: impl std::fmt::Display,
    kind: &str,
    subject: &str,
    control: Value,
    challenger: Value,
    at: chrono::DateTime<chrono::Utc>,
) -> Change {
    Change::set(AB_TESTS, id.to_string(), started_row(e, kind, subject, control, challenger, at))
}

fn concluded(
    e: &RecordedEvent,
    id: impl std::fmt::Display,
    outcome: mall_events::domain::Outcome,
    arms: (mall_events::domain::ArmStats, mall_events::domain::ArmStats),
    (prob, lr): (f64, f64),
    reason: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Change {
    Change::set(
        AB_TESTS,
        id.to_string(),
        row! {
            "status" => "concluded", "outcome" => json!(outcome), "control_stats" => json!(arms.0),
            "challenger_stats" => json!(arms.1), "prob_challenger_better" => prob, "likelihood_ratio" => lr,
            "reason" => reason, "concluded_at" => json!(at), "position" => e.position,
        },
    )
}
