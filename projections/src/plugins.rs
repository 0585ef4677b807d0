//! The `plugins` projection.
//!
//! - `ai_plugins`: each plugin that was configured or ran — whether it is enabled (null: as its
//!   default), its settings, runs, failures (all, and in a row), the last run's outcome, who
//!   disabled it and why, proposals made;
//! - `plugin_proposals`: every proposal — plugin, run, subject, kind, figures, note.

use mall_events::RecordedEvent;
use mall_events::domain::DomainEvent;
use serde_json::{Value, json};

use crate::change::{Change, TableDef};
use crate::row;
use crate::runner::Projection;

pub const AI_PLUGINS: &str = "ai_plugins";
pub const PLUGIN_PROPOSALS: &str = "plugin_proposals";

const TABLES: &[TableDef] = &[
    TableDef {
        name: AI_PLUGINS,
        key: "plugin_id",
        defaults: || {
            row! {
                "enabled" => Value::Null, "config" => json!({}), "runs" => 0, "failures" => 0,
                "failures_in_a_row" => 0, "last_outcome" => Value::Null, "last_detail" => Value::Null,
                "last_run_at" => Value::Null, "disabled_by" => Value::Null, "disabled_reason" => Value::Null,
                "proposals" => 0, "position" => 0,
            }
        },
    },
    TableDef {
        name: PLUGIN_PROPOSALS,
        key: "proposal_id",
        defaults: || {
            row! {
                "plugin_id" => "", "run_id" => "", "subject" => "", "kind" => "", "figures" => json!({}),
                "note" => "", "at" => Value::Null, "position" => 0,
            }
        },
    },
];

/// Plugins and their proposals.
pub struct Plugins;

impl Projection for Plugins {
    fn name(&self) -> &'static str {
        "plugins"
    }

    fn version(&self) -> u32 {
        1
    }

    fn tables(&self) -> &'static [TableDef] {
        TABLES
    }

    fn concerns(&self, e: &RecordedEvent) -> bool {
        matches!(e.event_type.as_str(), "plugin_configured" | "plugin_ran" | "plugin_proposed")
    }

    fn apply(&self, e: &RecordedEvent, d: &DomainEvent) -> Vec<Change> {
        let pos = e.position;
        match d {
            DomainEvent::PluginConfigured(c) => {
                let mut r = row! { "config" => json!(c.config), "position" => pos };
                if let Some(on) = c.enabled {
                    r.insert("enabled".into(), json!(on));
                    r.insert("disabled_by".into(), if on { Value::Null } else { json!(c.by) });
                    r.insert("disabled_reason".into(), if on { Value::Null } else { json!(c.reason) });
                    if on {
                        r.insert("failures_in_a_row".into(), json!(0));
                    }
                }
                vec![Change::set(AI_PLUGINS, c.plugin_id.clone(), r)]
            }
            DomainEvent::PluginRan(x) => {
                let ok = x.outcome == "ok";
                let set = row! {
                    "last_outcome" => x.outcome, "last_detail" => x.detail, "last_run_at" => json!(x.at),
                    "position" => pos,
                };
                let mut out = vec![Change::upsert(
                    AI_PLUGINS,
                    x.plugin_id.clone(),
                    set,
                    vec![("runs", 1.0), ("failures", if ok { 0.0 } else { 1.0 }), ("proposals", x.proposals as f64)],
                )];
                out.push(if ok {
                    Change::set(AI_PLUGINS, x.plugin_id.clone(), row! { "failures_in_a_row" => 0 })
                } else {
                    Change::add(AI_PLUGINS, x.plugin_id.clone(), vec![("failures_in_a_row", 1.0)])
                });
                out
            }
            DomainEvent::PluginProposed(p) => vec![Change::set(
                PLUGIN_PROPOSALS,
                p.proposal_id.to_string(),
                row! {
                    "plugin_id" => p.plugin_id, "run_id" => p.run_id.to_string(), "subject" => p.subject,
                    "kind" => p.kind, "figures" => json!(p.figures), "note" => p.note, "at" => json!(p.at),
                    "position" => pos,
                },
            )],
            _ => Vec::new(),
        }
    }
}
