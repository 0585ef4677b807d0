//! The `health` projection: self-healing, as tables.
//!
//! - `health_issues`: one row per issue — kind, severity, subject, how it is dealt with
//!   (remedy), its evidence, the task queued or the last repair made for it, whether it is open
//!   or closed and why;
//! - `health_checks`: one row per check — when, why (job or admin), what it examined, how many
//!   findings;
//! - `health_notifications`: one row per notification (a repair, or an issue that needs a
//!   person) — the notification exactly as it is sent to the admin webhook, and whether it was
//!   delivered.

use mall_events::RecordedEvent;
use mall_events::domain::DomainEvent;
use mall_events::health::Remedy;
use serde_json::{Value, json};

use crate::change::{Change, TableDef};
use crate::row;
use crate::runner::Projection;

pub const HEALTH_ISSUES: &str = "health_issues";
pub const HEALTH_CHECKS: &str = "health_checks";
pub const HEALTH_NOTIFICATIONS: &str = "health_notifications";

const TABLES: &[TableDef] = &[
    TableDef {
        name: HEALTH_ISSUES,
        key: "issue_id",
        defaults: || {
            row! {
                "kind" => "", "subject" => "", "severity" => "", "remedy" => "", "status" => "open",
                "evidence" => json!({}), "task_id" => Value::Null, "repair" => Value::Null, "repairs" => 0,
                "check_id" => "", "opened_at" => Value::Null, "closed_at" => Value::Null,
                "close_reason" => Value::Null, "position" => 0,
            }
        },
    },
    TableDef {
        name: HEALTH_CHECKS,
        key: "check_id",
        defaults: || {
            row! { "trigger" => "", "at" => Value::Null, "checked" => json!({}), "findings" => 0, "position" => 0 }
        },
    },
    TableDef {
        name: HEALTH_NOTIFICATIONS,
        key: "notification_id",
        defaults: || {
            row! {
                "type" => "", "subject" => "", "body" => json!({}), "recorded_at" => Value::Null,
                "delivered_at" => Value::Null, "attempts" => 0, "status" => Value::Null, "position" => 0,
            }
        },
    },
];

/// Whether an event is a notification for the admin: a repair, or an issue only a person can
/// resolve.
pub fn is_notification(d: &DomainEvent) -> bool {
    match d {
        DomainEvent::ProductRepaired(_) => true,
        DomainEvent::HealthIssueOpened(o) => o.remedy == Remedy::Person,
        _ => false,
    }
}

/// A notification as the admin webhook receives it (and the read table keeps it): the event's
/// id (the idempotency key), type, place in the log and time, and its payload.
pub fn notification(e: &RecordedEvent, d: &DomainEvent) -> Value {
    let mut data = serde_json::to_value(d).expect("an event serializes");
    if let Some(o) = data.as_object_mut() {
        o.remove("type");
    }
    json!({
        "id": e.event_id,
        "type": e.event_type,
        "position": e.position,
        "recorded_at": e.recorded_at,
        "data": data,
    })
}

/// Self-healing's issues, checks and notifications.
pub struct Health;

impl Projection for Health {
    fn name(&self) -> &'static str {
        "health"
    }

    fn version(&self) -> u32 {
        1
    }

    fn tables(&self) -> &'static [TableDef] {
        TABLES
    }

    /// Only self-healing's events.
    fn concerns(&self, e: &RecordedEvent) -> bool {
        e.tags.iter().any(|t| t == mall_events::health::TAG)
    }

    fn apply(&self, e: &RecordedEvent, d: &DomainEvent) -> Vec<Change> {
        let pos = e.position;
        let mut out = Vec::new();
        if is_notification(d) {
            let subject = match d {
                DomainEvent::ProductRepaired(r) => format!("product:{}", r.product_id),
                DomainEvent::HealthIssueOpened(o) => o.subject.clone(),
                _ => String::new(),
            };
            out.push(Change::set(
                HEALTH_NOTIFICATIONS,
                e.event_id.to_string(),
                row! {
                    "type" => e.event_type, "subject" => subject, "body" => notification(e, d),
                    "recorded_at" => json!(e.recorded_at), "position" => pos,
                },
            ));
        }
        match d {
            DomainEvent::HealthChecked(c) => out.push(Change::set(
                HEALTH_CHECKS,
                c.check_id.to_string(),
                row! {
                    "trigger" => c.trigger, "at" => json!(c.at), "checked" => json!(c.checked),
                    "findings" => c.findings.len(), "position" => pos,
                },
            )),
            DomainEvent::HealthIssueOpened(o) => out.push(Change::set(
                HEALTH_ISSUES,
                o.issue_id.to_string(),
                row! {
                    "kind" => o.kind, "subject" => o.subject, "severity" => o.severity.as_str(),
                    "remedy" => o.remedy.as_str(), "status" => "open", "evidence" => json!(o.evidence),
                    "task_id" => json!(o.task_id), "check_id" => o.check_id.to_string(), "opened_at" => json!(o.at),
                    "position" => pos,
                },
            )),
            DomainEvent::ProductRepaired(r) => {
                out.push(Change::set(
                    HEALTH_ISSUES,
                    r.issue_id.to_string(),
                    row! { "repair" => json!({"reason": r.reason, "change": r.repair, "at": r.at}), "position" => pos },
                ));
                out.push(Change::add(HEALTH_ISSUES, r.issue_id.to_string(), vec![("repairs", 1.0)]));
            }
            DomainEvent::HealthIssueClosed(c) => out.push(Change::set(
                HEALTH_ISSUES,
                c.issue_id.to_string(),
                row! { "status" => "closed", "closed_at" => json!(c.at), "close_reason" => c.reason, "position" => pos },
            )),
            DomainEvent::NotificationDelivered(n) => out.push(Change::set(
                HEALTH_NOTIFICATIONS,
                n.notification_id.to_string(),
                row! { "delivered_at" => json!(n.at), "attempts" => n.attempts, "status" => n.status },
            )),
            _ => {}
        }
        out
    }
}
