//! The `autonomous` projection: the autonomous core's work, as tables.
//!
//! - `autonomous_tasks`: one row per task of the queue — what (system, subject, action), how
//!   urgent and why (priority, reason, metrics), and where it stands (status, attempt, the next
//!   try, the outcome);
//! - `job_runs`: one row per run of a scheduled job (keyed by its log position): the tick it ran
//!   for, when it started and finished, how many tasks it queued and its outcome;
//! - `autonomous_insights`: the learning cycle's latest insight per system, action, district and
//!   diagnosis: tried, helped, mean lift, the experiments behind it.
//!
//! Pure functions of single events: every task event carries its task id.

use mall_events::RecordedEvent;
use mall_events::domain::DomainEvent;
use serde_json::{Value, json};

use crate::change::{Change, TableDef};
use crate::row;
use crate::runner::Projection;

pub const AUTONOMOUS_TASKS: &str = "autonomous_tasks";
pub const JOB_RUNS: &str = "job_runs";
pub const AUTONOMOUS_INSIGHTS: &str = "autonomous_insights";

const TABLES: &[TableDef] = &[
    TableDef {
        name: AUTONOMOUS_TASKS,
        key: "task_id",
        defaults: || {
            row! {
                "system" => "", "subject" => "", "action" => "", "priority" => 0, "reason" => "",
                "metrics" => json!({}), "generations" => 0, "status" => "queued", "attempt" => 0,
                "retry_at" => Value::Null, "outcome" => Value::Null, "queued_at" => Value::Null,
                "updated_at" => Value::Null, "position" => 0,
            }
        },
    },
    TableDef {
        name: JOB_RUNS,
        key: "key",
        defaults: || {
            row! {
                "job" => "", "system" => "", "due_at" => Value::Null, "started_at" => Value::Null,
                "finished_at" => Value::Null, "tasks" => 0, "outcome" => "", "position" => 0,
            }
        },
    },
    TableDef {
        name: AUTONOMOUS_INSIGHTS,
        key: "key",
        defaults: || {
            row! {
                "system" => "", "action" => "", "district" => "", "diagnosis" => "", "tried" => 0, "helped" => 0,
                "lift" => 0.0, "evidence" => json!([]), "at" => Value::Null, "position" => 0,
            }
        },
    },
];

/// The core's task queue and job runs.
pub struct Autonomous;

impl Projection for Autonomous {
    fn name(&self) -> &'static str {
        "autonomous"
    }

    fn version(&self) -> u32 {
        1
    }

    fn tables(&self) -> &'static [TableDef] {
        TABLES
    }

    /// Only the core's stream.
    fn concerns(&self, e: &RecordedEvent) -> bool {
        e.stream_id.as_str() == mall_events::autonomous::STREAM
    }

    fn apply(&self, e: &RecordedEvent, d: &DomainEvent) -> Vec<Change> {
        let pos = e.position;
        let task = |id: &dyn std::fmt::Display, row| Change::set(AUTONOMOUS_TASKS, id.to_string(), row);
        vec![match d {
            DomainEvent::TaskQueued(t) => task(
                &t.task_id,
                row! {
                    "system" => t.system, "subject" => t.subject, "action" => t.action, "priority" => t.priority,
                    "reason" => t.reason, "metrics" => json!(t.metrics), "generations" => t.generations,
                    "status" => "queued", "queued_at" => json!(t.at), "updated_at" => json!(t.at), "position" => pos,
                },
            ),
            DomainEvent::TaskReprioritized(t) => task(
                &t.task_id,
                row! {
                    "priority" => t.priority, "reason" => t.reason, "metrics" => json!(t.metrics),
                    "updated_at" => json!(t.at), "position" => pos,
                },
            ),
            DomainEvent::TaskStarted(t) => task(
                &t.task_id,
                row! {
                    "status" => "running", "attempt" => t.attempt, "retry_at" => Value::Null,
                    "updated_at" => json!(t.at), "position" => pos,
                },
            ),
            DomainEvent::TaskSucceeded(t) => task(
                &t.task_id,
                row! { "status" => "succeeded", "outcome" => t.summary, "updated_at" => json!(t.at), "position" => pos },
            ),
            DomainEvent::TaskFailed(t) => task(
                &t.task_id,
                row! {
                    "status" => if t.retry_at.is_some() { "queued" } else { "failed" }, "outcome" => t.error,
                    "retry_at" => json!(t.retry_at), "updated_at" => json!(t.at), "position" => pos,
                },
            ),
            DomainEvent::TaskCancelled(t) => task(
                &t.task_id,
                row! { "status" => "cancelled", "outcome" => t.reason, "updated_at" => json!(t.at), "position" => pos },
            ),
            DomainEvent::JobRan(j) => Change::set(
                JOB_RUNS,
                format!("{pos:020}"),
                row! {
                    "job" => j.job, "system" => j.system, "due_at" => json!(j.due_at),
                    "started_at" => json!(j.started_at), "finished_at" => json!(j.finished_at),
                    "tasks" => j.tasks.len(), "outcome" => j.outcome, "position" => pos,
                },
            ),
            DomainEvent::InsightRecorded(i) => Change::set(
                AUTONOMOUS_INSIGHTS,
                i.key.clone(),
                row! {
                    "system" => i.system, "action" => i.action, "district" => i.district, "diagnosis" => i.diagnosis,
                    "tried" => i.tried, "helped" => i.helped, "lift" => i.lift, "evidence" => json!(i.evidence),
                    "at" => json!(i.at), "position" => pos,
                },
            ),
            _ => return Vec::new(),
        }]
    }
}
