//! Reading columns of read-table rows the same way in every shell: a missing or mistyped column
//! reads as empty, zero or none (the tables' defaults), never as an error.

use chrono::{DateTime, Utc};
use mall_projections::change::Row;
use serde_json::Value;

/// A text column ("" when missing).
pub fn text(r: &Row, k: &str) -> String {
    r.get(k).and_then(Value::as_str).unwrap_or("").to_string()
}

/// A counter column (0 when missing; the in-memory sink may hold a whole float).
pub fn int(r: &Row, k: &str) -> i64 {
    match r.get(k) {
        Some(v) => v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)).unwrap_or(0),
        None => 0,
    }
}

/// A time column (RFC 3339 text in memory and from PostgreSQL alike).
pub fn time(r: &Row, k: &str) -> Option<DateTime<Utc>> {
    r.get(k).and_then(Value::as_str).and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| t.with_timezone(&Utc))
}

/// The `price` column as a number (text in memory, numeric from PostgreSQL).
pub fn price(r: &Row) -> f64 {
    match r.get("price") {
        Some(Value::String(s)) => s.parse().unwrap_or(0.0),
        Some(v) => v.as_f64().unwrap_or(0.0),
        None => 0.0,
    }
}
