//! The `merchandising` projection: `merchandising_rules`, every rule with its action,
//! condition, strength, pin position, priority, window, reason and evidence, whether the engine
//! made it, how often it was set (1 + its revisions), when last, and whether it is active or expired (and why).

use mall_events::RecordedEvent;
use mall_events::domain::DomainEvent;
use serde_json::{Value, json};

use crate::change::{Change, TableDef};
use crate::row;
use crate::runner::Projection;

pub const MERCHANDISING_RULES: &str = "merchandising_rules";

const TABLES: &[TableDef] = &[TableDef {
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
}];

/// Merchandising rules.
pub struct Merchandising;

impl Projection for Merchandising {
    fn name(&self) -> &'static str {
        "merchandising"
    }

    fn version(&self) -> u32 {
        1
    }

    fn tables(&self) -> &'static [TableDef] {
        TABLES
    }

    fn concerns(&self, e: &RecordedEvent) -> bool {
        matches!(e.event_type.as_str(), "merchandising_rule_set" | "merchandising_rule_expired")
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
            _ => Vec::new(),
        }
    }
}
