//! The `plugins` projection.
//!
//! - `ai_plugins`: each plugin that was configured or ran — whether it is enabled (null: as its
//!   default), its settings, runs, failures (all, and in a row), the last run's outcome, who
//!   disabled it and why, proposals made;
//! - `plugin_proposals`: every proposal — plugin, run, subject, kind, figures, note;
//! - `price_tests`: every test of a proposed price — the prices, each arm's views, order lines
//!   and revenue, the outcome with its statistics and reason, the price kept.

use mall_events::RecordedEvent;
use mall_events::domain::DomainEvent;
use serde_json::{Value, json};

use crate::change::{Change, TableDef};
use crate::row;
use crate::runner::Projection;

pub const AI_PLUGINS: &str = "ai_plugins";
pub const PLUGIN_PROPOSALS: &str = "plugin_proposals";
pub const PRICE_TESTS: &str = "price_tests";

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
    TableDef {
        name: PRICE_TESTS,
        key: "test_id",
        defaults: || {
            row! {
                "product_id" => "", "proposal_id" => "", "control_price" => "", "challenger_price" => "",
                "currency" => "", "reason" => "", "status" => "running", "control" => Value::Null,
                "challenger" => Value::Null, "prob_challenger_better" => Value::Null,
                "likelihood_ratio" => Value::Null, "price_kept" => Value::Null, "outcome_reason" => Value::Null,
                "started_at" => Value::Null, "concluded_at" => Value::Null, "position" => 0,
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
        // 2: `price_tests`.
        2
    }

    fn tables(&self) -> &'static [TableDef] {
        TABLES
    }

    fn concerns(&self, e: &RecordedEvent) -> bool {
        matches!(
            e.event_type.as_str(),
            "plugin_configured" | "plugin_ran" | "plugin_proposed" | "price_test_started" | "price_test_concluded"
        )
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
            DomainEvent::PriceTestStarted(t) => vec![Change::set(
                PRICE_TESTS,
                t.test_id.to_string(),
                row! {
                    "product_id" => t.product_id, "proposal_id" => t.proposal_id.to_string(),
                    "control_price" => t.control, "challenger_price" => t.challenger, "currency" => t.currency,
                    "reason" => t.reason, "status" => "running", "started_at" => json!(t.at), "position" => pos,
                },
            )],
            DomainEvent::PriceTestConcluded(t) => vec![Change::set(
                PRICE_TESTS,
                t.test_id.to_string(),
                row! {
                    "status" => json!(t.outcome), "control" => json!(t.control), "challenger" => json!(t.challenger),
                    "prob_challenger_better" => t.prob_challenger_better, "likelihood_ratio" => t.likelihood_ratio,
                    "price_kept" => t.price, "outcome_reason" => t.reason, "concluded_at" => json!(t.at),
                    "position" => pos,
                },
            )],
            _ => Vec::new(),
        }
    }
}
