//! The `analytics` projection: the series analytics reads, and what it found and wrote.
//!
//! - `district_hours`: each district's signals by the hour they happened (the signal's `at`,
//!   truncated), keyed `SLUG|HOUR` — views, clicks, carts, purchases, units, bounces and revenue
//!   (ten-thousandths, `revenue_e4`);
//! - `product_days`: each product's views, carts, purchases and revenue by day, keyed
//!   `DAY|PRODUCT`;
//! - `search_days`: each day's searches by term (as `search_terms` keys them), and how many found
//!   nothing, keyed `DAY|TERM`;
//! - `anomalies`: every anomaly found, with its evidence;
//! - `analytics_narratives`: every report — facts, products, terms, narrative, suggestions, who
//!   wrote it and the model's attempt.
//!
//! A signal counts for the district its envelope is tagged with (the product's district when it
//! was stored), as in `catalog`.

use chrono::{DateTime, Timelike, Utc};
use mall_events::RecordedEvent;
use mall_events::domain::DomainEvent;
use mall_events::ids::tag;
use serde_json::{Value, json};

use crate::change::{Change, TableDef};
use crate::evolution::search_term;
use crate::row;
use crate::runner::Projection;

pub const DISTRICT_HOURS: &str = "district_hours";
pub const PRODUCT_DAYS: &str = "product_days";
pub const SEARCH_DAYS: &str = "search_days";
pub const ANOMALIES: &str = "anomalies";
pub const ANALYTICS_NARRATIVES: &str = "analytics_narratives";

const TABLES: &[TableDef] = &[
    TableDef {
        name: DISTRICT_HOURS,
        key: "key",
        defaults: || {
            row! {
                "district" => "", "hour" => Value::Null, "views" => 0, "clicks" => 0, "carts" => 0,
                "purchases" => 0, "units" => 0, "bounces" => 0, "revenue_e4" => 0,
            }
        },
    },
    TableDef {
        name: PRODUCT_DAYS,
        key: "key",
        defaults: || {
            row! {
                "day" => "", "product_id" => "", "district" => "", "views" => 0, "carts" => 0, "purchases" => 0,
                "units" => 0, "revenue_e4" => 0,
            }
        },
    },
    TableDef {
        name: SEARCH_DAYS,
        key: "key",
        defaults: || row! { "day" => "", "term" => "", "searches" => 0, "zero_results" => 0 },
    },
    TableDef {
        name: ANOMALIES,
        key: "anomaly_id",
        defaults: || {
            row! {
                "microstore" => "", "metric" => "", "kind" => "", "start_at" => Value::Null, "end_at" => Value::Null,
                "expected" => 0.0, "observed" => 0.0, "score" => 0.0, "at" => Value::Null, "position" => 0,
            }
        },
    },
    TableDef {
        name: ANALYTICS_NARRATIVES,
        key: "report_id",
        defaults: || {
            row! {
                "microstore" => "", "period" => "", "from_at" => Value::Null, "to_at" => Value::Null,
                "facts" => json!({}), "top_products" => json!([]), "bottom_products" => json!([]),
                "search_terms" => json!([]), "anomalies" => json!([]), "narrative" => "", "suggestions" => json!([]),
                "written_by" => "", "generation" => Value::Null, "as_of" => 0, "at" => Value::Null, "position" => 0,
            }
        },
    },
];

/// The hour a time falls in, as `district_hours` keys it (RFC 3339, so keys sort by time).
pub fn hour_of(at: DateTime<Utc>) -> String {
    let h = at.with_minute(0).and_then(|t| t.with_second(0)).and_then(|t| t.with_nanosecond(0)).unwrap_or(at);
    h.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The day a time falls in (`2026-11-30`).
pub fn day_of(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}

/// Signal counts by hour and day, anomalies and reports.
pub struct Analytics;

impl Projection for Analytics {
    fn name(&self) -> &'static str {
        "analytics"
    }

    fn version(&self) -> u32 {
        1
    }

    fn tables(&self) -> &'static [TableDef] {
        TABLES
    }

    fn concerns(&self, e: &RecordedEvent) -> bool {
        matches!(
            e.event_type.as_str(),
            "product_viewed"
                | "product_clicked"
                | "added_to_cart"
                | "purchased"
                | "bounced"
                | "searched"
                | "anomaly_detected"
                | "analytics_reported"
        )
    }

    fn apply(&self, e: &RecordedEvent, d: &DomainEvent) -> Vec<Change> {
        match d {
            DomainEvent::AnomalyDetected(a) => {
                return vec![Change::set(
                    ANOMALIES,
                    a.anomaly_id.to_string(),
                    row! {
                        "microstore" => a.microstore, "metric" => a.metric, "kind" => a.kind,
                        "start_at" => json!(a.start), "end_at" => json!(a.end), "expected" => a.expected,
                        "observed" => a.observed, "score" => a.score, "at" => json!(a.at), "position" => e.position,
                    },
                )];
            }
            DomainEvent::AnalyticsReported(r) => {
                return vec![Change::set(
                    ANALYTICS_NARRATIVES,
                    r.report_id.to_string(),
                    row! {
                        "microstore" => r.microstore, "period" => r.period, "from_at" => json!(r.from),
                        "to_at" => json!(r.to), "facts" => json!(r.facts), "top_products" => json!(r.top_products),
                        "bottom_products" => json!(r.bottom_products),
                        "search_terms" => json!(r.search_terms.iter().map(|(t, n)| json!({"term": t, "searches": n})).collect::<Vec<_>>()),
                        "anomalies" => json!(r.anomalies), "narrative" => r.narrative,
                        "suggestions" => json!(r.suggestions), "written_by" => r.written_by,
                        "generation" => json!(r.generation), "as_of" => r.as_of, "at" => json!(r.at),
                        "position" => e.position,
                    },
                )];
            }
            DomainEvent::Searched(q) => {
                let term = search_term(&q.query);
                if term.is_empty() {
                    return Vec::new();
                }
                let day = day_of(q.at);
                let zero = if q.result_ids.is_empty() { 1.0 } else { 0.0 };
                return vec![Change::upsert(
                    SEARCH_DAYS,
                    format!("{day}|{term}"),
                    row! { "day" => day, "term" => term },
                    vec![("searches", 1.0), ("zero_results", zero)],
                )];
            }
            _ => {}
        }
        let (Some(at), Some(product)) = (d.signal_at(), d.product_id()) else { return Vec::new() };
        let delta: Vec<(&'static str, f64)> = match d {
            DomainEvent::ProductViewed(_) => vec![("views", 1.0)],
            DomainEvent::ProductClicked(_) => vec![("clicks", 1.0)],
            DomainEvent::AddedToCart(_) => vec![("carts", 1.0)],
            DomainEvent::Purchased(p) => vec![
                ("purchases", 1.0),
                ("units", p.quantity as f64),
                ("revenue_e4", p.unit_price.ten_thousandths() as f64 * p.quantity as f64),
            ],
            DomainEvent::Bounced(_) => vec![("bounces", 1.0)],
            _ => return Vec::new(),
        };
        let Some(slug) = e.tags.iter().find_map(|t| tag::district_of(t)) else { return Vec::new() };
        let hour = hour_of(at);
        let day = day_of(at);
        let mut out = vec![Change::upsert(
            DISTRICT_HOURS,
            format!("{slug}|{hour}"),
            row! { "district" => slug, "hour" => hour },
            delta.clone(),
        )];
        let product_delta: Vec<(&'static str, f64)> =
            delta.into_iter().filter(|(k, _)| !matches!(*k, "clicks" | "bounces")).collect();
        if !product_delta.is_empty() {
            out.push(Change::upsert(
                PRODUCT_DAYS,
                format!("{day}|{}", product.as_str()),
                row! { "day" => day, "product_id" => product.as_str(), "district" => slug },
                product_delta,
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn hours_and_days_key_by_the_signals_own_time() {
        let at = Utc.with_ymd_and_hms(2026, 11, 30, 7, 59, 59).unwrap();
        assert_eq!(hour_of(at), "2026-11-30T07:00:00Z");
        assert_eq!(day_of(at), "2026-11-30");
        // Keys sort by time.
        let later = Utc.with_ymd_and_hms(2026, 11, 30, 10, 0, 0).unwrap();
        assert!(hour_of(at) < hour_of(later));
    }
}
