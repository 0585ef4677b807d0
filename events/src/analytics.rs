//! The events of analytics: anomalies found in a district's hourly series, and reports — the
//! metrics of a period beside the period before, the narrative written from them (and, when a
//! model reworded it, the model's attempt with its guardrail verdicts), the suggested actions and
//! the anomalies it names.
//!
//! All live in one stream (`analytics-mall`) and carry [`TAG`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::decisions::Generation;

/// The stream of analytics' events.
pub const STREAM: &str = "analytics-mall";
/// The tag every analytics event carries.
pub const TAG: &str = "system:analytics";
/// The most facts, products, terms, suggestions and anomalies a report carries.
pub const MAX_ITEMS: usize = 100;
/// The longest narrative (bytes).
pub const MAX_NARRATIVE: usize = 8_000;

/// `anomaly_detected`: an hour (or a run of hours) of a district's series that its daily and
/// weekly rhythm does not explain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyDetected {
    pub anomaly_id: Uuid,
    /// A district's slug, or `all`.
    pub microstore: String,
    /// `traffic`, `conversion`, `abandonment` or `revenue`.
    pub metric: String,
    /// `spike`, `drop` or `level_shift`.
    pub kind: String,
    /// The first hour, and the hour after the last.
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// What the rhythm expected and what was seen (the most extreme hour).
    pub expected: f64,
    pub observed: f64,
    /// The most extreme scaled residual.
    pub score: f64,
    pub at: DateTime<Utc>,
}

/// A product's figures in a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductFigures {
    pub product_id: String,
    pub title: String,
    pub views: u64,
    pub carts: u64,
    pub purchases: u64,
    /// Revenue in ten-thousandths of the currency unit.
    pub revenue_e4: i64,
}

/// `analytics_reported`: a period's report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalyticsReported {
    pub report_id: Uuid,
    /// A district's slug, or `all`.
    pub microstore: String,
    /// `day`, `week` or `month`.
    pub period: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Every figure by name (`traffic`, `traffic_previous`, `traffic_change_pct`, ...): the only
    /// numbers the narrative may state.
    pub facts: BTreeMap<String, f64>,
    pub top_products: Vec<ProductFigures>,
    pub bottom_products: Vec<ProductFigures>,
    /// The period's most searched terms and how often.
    pub search_terms: Vec<(String, u64)>,
    /// The anomalies of the period it names.
    pub anomalies: Vec<Uuid>,
    /// What is published: written from the facts, or the model's rewording when it passed.
    pub narrative: String,
    pub suggestions: Vec<String>,
    /// `facts/1` (written from the facts) or the model's id.
    pub written_by: String,
    /// The model's attempt, when one was made: prompt, raw answer and verdicts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<Generation>,
    /// The log position the figures were read at.
    pub as_of: u64,
    pub at: DateTime<Utc>,
}
