//! The `evolution` projection: district evolution, as tables.
//!
//! - `district_personalities`: one row per proposed change of a district's voice — the attribute,
//!   from and to, the rule and reasons and figures behind it, the copy written in each voice, the
//!   test's arms and outcome, and the voice in force after it: the history of each district's
//!   personality;
//! - `district_suggestions`: the categories last suggested to each district's merchant;
//! - `search_terms`: what shoppers search for (each query, case and spacing aside), how often,
//!   and how often it found nothing — for the districts to learn what they lack.

use mall_events::RecordedEvent;
use mall_events::domain::{DomainEvent, Outcome};
use serde_json::{Value, json};

use crate::change::{Change, TableDef};
use crate::row;
use crate::runner::Projection;

pub const DISTRICT_PERSONALITIES: &str = "district_personalities";
pub const DISTRICT_SUGGESTIONS: &str = "district_suggestions";
pub const SEARCH_TERMS: &str = "search_terms";

/// The longest query kept, in characters.
const MAX_QUERY_CHARS: usize = 100;

/// A query as `search_terms` keys it: lowercase, single spaces, at most 100 characters.
pub fn search_term(query: &str) -> String {
    let words = query.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
    words.chars().take(MAX_QUERY_CHARS).collect()
}

const TABLES: &[TableDef] = &[
    TableDef {
        name: DISTRICT_PERSONALITIES,
        key: "evolution_id",
        defaults: || {
            row! {
                "slug" => "", "attribute" => "", "from_value" => "", "to_value" => "", "rule" => "",
                "reasons" => json!([]), "metrics" => json!({}), "status" => "proposed", "test_id" => Value::Null,
                "control_copy" => Value::Null, "challenger_copy" => Value::Null, "personality_after" => Value::Null,
                "control_views" => 0, "control_conversions" => 0, "challenger_views" => 0,
                "challenger_conversions" => 0, "prob_challenger_better" => Value::Null,
                "likelihood_ratio" => Value::Null, "outcome_reason" => Value::Null, "proposed_at" => Value::Null,
                "started_at" => Value::Null, "concluded_at" => Value::Null, "position" => 0,
            }
        },
    },
    TableDef {
        name: DISTRICT_SUGGESTIONS,
        key: "slug",
        defaults: || row! { "suggestions" => json!([]), "at" => Value::Null, "position" => 0 },
    },
    TableDef {
        name: SEARCH_TERMS,
        key: "query",
        defaults: || row! { "searches" => 0, "zero_results" => 0, "last_at" => Value::Null },
    },
];

/// District evolution's history and suggestions.
pub struct Evolution;

impl Projection for Evolution {
    fn name(&self) -> &'static str {
        "evolution"
    }

    fn version(&self) -> u32 {
        // 2: the `search_terms` table.
        2
    }

    fn tables(&self) -> &'static [TableDef] {
        TABLES
    }

    /// Only district evolution's events, and searches.
    fn concerns(&self, e: &RecordedEvent) -> bool {
        matches!(
            e.event_type.as_str(),
            "searched"
                | "voice_evolution_proposed"
                | "voice_test_started"
                | "voice_evolution_abandoned"
                | "voice_test_concluded"
                | "categories_suggested"
        )
    }

    fn apply(&self, e: &RecordedEvent, d: &DomainEvent) -> Vec<Change> {
        let pos = e.position;
        let set = |id: &dyn std::fmt::Display, r| Change::set(DISTRICT_PERSONALITIES, id.to_string(), r);
        vec![match d {
            DomainEvent::VoiceEvolutionProposed(p) => set(
                &p.evolution_id,
                row! {
                    "slug" => p.slug, "attribute" => p.attribute, "from_value" => p.from, "to_value" => p.to,
                    "rule" => p.rule, "reasons" => json!(p.reasons), "metrics" => json!(p.metrics),
                    "status" => "proposed", "proposed_at" => json!(p.at), "position" => pos,
                },
            ),
            DomainEvent::VoiceTestStarted(t) => set(
                &t.evolution_id,
                row! {
                    "status" => "testing", "test_id" => t.test_id.to_string(), "control_copy" => json!(t.control),
                    "challenger_copy" => json!(t.challenger), "started_at" => json!(t.at), "position" => pos,
                },
            ),
            DomainEvent::VoiceEvolutionAbandoned(a) => set(
                &a.evolution_id,
                row! {
                    "status" => "abandoned", "outcome_reason" => a.reason, "concluded_at" => json!(a.at), "position" => pos,
                },
            ),
            DomainEvent::VoiceTestConcluded(c) => set(
                &c.evolution_id,
                row! {
                    "status" => if c.outcome == Outcome::ChallengerWon { "kept" } else { "rolled_back" },
                    "personality_after" => json!(c.personality), "control_views" => c.control.views,
                    "control_conversions" => c.control.conversions, "challenger_views" => c.challenger.views,
                    "challenger_conversions" => c.challenger.conversions,
                    "prob_challenger_better" => c.prob_challenger_better, "likelihood_ratio" => c.likelihood_ratio,
                    "outcome_reason" => c.reason, "concluded_at" => json!(c.at), "position" => pos,
                },
            ),
            DomainEvent::Searched(q) => {
                let term = search_term(&q.query);
                if term.is_empty() {
                    return Vec::new();
                }
                let zero = if q.result_ids.is_empty() { 1.0 } else { 0.0 };
                Change::upsert(
                    SEARCH_TERMS,
                    term,
                    row! { "last_at" => q.at },
                    vec![("searches", 1.0), ("zero_results", zero)],
                )
            }
            DomainEvent::CategoriesSuggested(s) => Change::set(
                DISTRICT_SUGGESTIONS,
                s.slug.as_str(),
                row! { "suggestions" => json!(s.suggestions), "at" => json!(s.at), "position" => pos },
            ),
            _ => return Vec::new(),
        }]
    }
}
