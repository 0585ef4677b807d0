//! The dashboard's pages of the other systems, read from their read tables: district evolutions,
//! health issues and fixes, merchandising rules and ordering tests, the social calendar, and the
//! analytics narratives with a traffic chart and the anomalies marked on it.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use mall_projections::analytics::{ANALYTICS_NARRATIVES, ANOMALIES, DISTRICT_HOURS};
use mall_projections::change::Row;
use mall_projections::evolution::DISTRICT_PERSONALITIES;
use mall_projections::health::{HEALTH_CHECKS, HEALTH_ISSUES};
use mall_projections::merchandising::{AB_TESTS, MERCHANDISING_RULES};
use mall_projections::social::SOCIAL_CALENDARS;
use serde_json::Value;

use super::chart::{self, Chart, Series};
use super::{AppState, escape, text};
use crate::readside::Filter;
use crate::serve::error::ApiError;

/// The most rows a table of these pages shows.
const MAX_ROWS: usize = 50;

fn cell(r: &Row, key: &str) -> String {
    match r.get(key) {
        Some(Value::String(s)) if key.ends_with("_at") || key == "at" => {
            s.parse::<DateTime<Utc>>().map(|t| t.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_else(|_| s.clone())
        }
        Some(Value::Array(a)) => a.iter().map(text).collect::<Vec<_>>().join("; "),
        Some(v) => text(v),
        None => "—".into(),
    }
}

fn num(r: &Row, key: &str) -> f64 {
    r.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

/// Rows as a table with a caption: a column a (header, key), newest (greatest `position`) first
/// unless sorted already, at most `MAX_ROWS`.
fn table(id: &str, caption: &str, rows: &[Row], cols: &[(&str, &str)]) -> String {
    if rows.is_empty() {
        return format!("<h3 id=\"{id}\">{}</h3><p>None yet.</p>", escape(caption));
    }
    let head: String = cols.iter().map(|(h, _)| format!("<th scope=\"col\">{}</th>", escape(h))).collect();
    let mut out = format!("<h3 id=\"{id}\">{}</h3><table><thead><tr>{head}</tr></thead><tbody>", escape(caption));
    for r in rows.iter().take(MAX_ROWS) {
        out.push_str("<tr>");
        for (_, k) in cols {
            out.push_str(&format!("<td>{}</td>", escape(&cell(r, k))));
        }
        out.push_str("</tr>");
    }
    if rows.len() > MAX_ROWS {
        out.push_str(&format!("<tr><td colspan=\"{}\">… and {} more</td></tr>", cols.len(), rows.len() - MAX_ROWS));
    }
    out + "</tbody></table>"
}

async fn rows(state: &AppState, projection: &str, table: &str, filter: Filter<'_>) -> Result<Vec<Row>, ApiError> {
    state.read.rows(projection, table, filter).await.map_err(crate::serve::storefront::sink_error)
}

/// Newest first; those whose `status` is `first` ahead of the rest.
fn newest(mut rows: Vec<Row>, first: &str) -> Vec<Row> {
    rows.sort_by(|a, b| {
        (cell(a, "status") != first)
            .cmp(&(cell(b, "status") != first))
            .then(num(b, "position").total_cmp(&num(a, "position")))
    });
    rows
}

/// District evolution: each proposed change of a district's voice, its test and outcome.
pub async fn districts(state: &AppState) -> Result<String, ApiError> {
    let evolutions = newest(rows(state, "evolution", DISTRICT_PERSONALITIES, Filter::All).await?, "testing");
    Ok(format!(
        "<h2>District evolution</h2><p>A district's voice changes one attribute at a time, tested against the voice it had.</p>{}",
        table(
            "evolutions",
            "Evolutions",
            &evolutions,
            &[
                ("District", "slug"),
                ("Attribute", "attribute"),
                ("From", "from_value"),
                ("To", "to_value"),
                ("Rule", "rule"),
                ("Status", "status"),
                ("Control views", "control_views"),
                ("Challenger views", "challenger_views"),
                ("P(challenger better)", "prob_challenger_better"),
                ("Outcome", "outcome_reason"),
            ],
        )
    ))
}

/// Self-healing: open issues first, then the fixed and closed ones; the last checks.
pub async fn health(state: &AppState) -> Result<String, ApiError> {
    let issues = newest(rows(state, "health", HEALTH_ISSUES, Filter::All).await?, "open");
    let checks = rows(state, "health", HEALTH_CHECKS, Filter::Last(10)).await?;
    let open = issues.iter().filter(|r| cell(r, "status") == "open").count();
    Ok(format!(
        "<h2>Self-healing</h2><p>{open} open issues of {}.</p>{}{}",
        issues.len(),
        table(
            "issues",
            "Issues and fixes",
            &issues,
            &[
                ("Kind", "kind"),
                ("Subject", "subject"),
                ("Severity", "severity"),
                ("Remedy", "remedy"),
                ("Status", "status"),
                ("Repairs", "repairs"),
                ("Opened", "opened_at"),
                ("Closed", "closed_at"),
                ("Why closed", "close_reason"),
            ],
        ),
        table(
            "checks",
            "Latest checks",
            &newest(checks, ""),
            &[("Trigger", "trigger"), ("At", "at"), ("Findings", "findings")]
        )
    ))
}

/// Merchandising: the rules (active first) and the tests of orderings.
pub async fn merchandising(state: &AppState) -> Result<String, ApiError> {
    let rules = newest(rows(state, "merchandising", MERCHANDISING_RULES, Filter::All).await?, "active");
    let tests = newest(rows(state, "merchandising", AB_TESTS, Filter::All).await?, "running");
    Ok(format!(
        "<h2>Merchandising</h2>{}{}",
        table(
            "rules",
            "Rules",
            &rules,
            &[
                ("Action", "action"),
                ("Priority", "priority"),
                ("Rule", "rule"),
                ("Reason", "reason"),
                ("Automatic", "auto"),
                ("Status", "status"),
                ("Until", "valid_until"),
            ],
        ),
        table(
            "tests",
            "Tests (orderings, copy, voice)",
            &tests,
            &[
                ("Kind", "kind"),
                ("Subject", "subject"),
                ("Name", "name"),
                ("Status", "status"),
                ("Outcome", "outcome"),
                ("P(challenger better)", "prob_challenger_better"),
                ("Reason", "reason"),
            ],
        )
    ))
}

/// The social calendar: the posts still to come (soonest first) and the latest published.
pub async fn social(state: &AppState) -> Result<String, ApiError> {
    let by_time = |mut v: Vec<Row>, newest_first: bool| {
        v.sort_by_key(|a| cell(a, "scheduled_at"));
        if newest_first {
            v.reverse();
        }
        v
    };
    let scheduled = by_time(rows(state, "social", SOCIAL_CALENDARS, Filter::Eq("status", "scheduled")).await?, false);
    let published = by_time(rows(state, "social", SOCIAL_CALENDARS, Filter::Eq("status", "published")).await?, true);
    let cols: &[(&str, &str)] = &[
        ("When", "scheduled_at"),
        ("District", "district"),
        ("Platform", "platform"),
        ("Product", "product_id"),
        ("Post", "text"),
        ("Thread", "tweets"),
        ("Written by", "generator"),
    ];
    Ok(format!(
        "<h2>Social media</h2><p>{} posts scheduled, {} published.</p>{}{}",
        scheduled.len(),
        published.len(),
        table("scheduled", "Coming up", &scheduled, cols),
        table("published", "Published", &published, cols)
    ))
}

/// Analytics: the mall's traffic by hour over the last week with its anomalies marked, every
/// anomaly, and the latest report of each district and period with its narrative.
pub async fn analytics(state: &AppState, now: DateTime<Utc>) -> Result<String, ApiError> {
    let since = now - Duration::days(7);
    let hour = |r: &Row| r.get("hour").and_then(Value::as_str).and_then(|s| s.parse::<DateTime<Utc>>().ok());
    let mut views: BTreeMap<i64, f64> = BTreeMap::new();
    for r in rows(state, "analytics", DISTRICT_HOURS, Filter::All).await? {
        if let Some(h) = hour(&r).filter(|h| *h >= since) {
            *views.entry(h.timestamp()).or_default() += num(&r, "views");
        }
    }
    let anomalies = newest(rows(state, "analytics", ANOMALIES, Filter::All).await?, "");
    let marks: Vec<(f64, f64, String)> = anomalies
        .iter()
        .filter(|a| cell(a, "microstore") == "all" && cell(a, "metric") == "traffic")
        .filter_map(|a| {
            let start = a.get("start_at")?.as_str()?.parse::<DateTime<Utc>>().ok()?;
            let v = views.get(&start.timestamp())?;
            Some((start.timestamp() as f64, *v, format!("{} at {}", cell(a, "kind"), start.format("%Y-%m-%d %H:00"))))
        })
        .collect();
    let points: Vec<(f64, f64)> = views.iter().map(|(t, v)| (*t as f64, *v)).collect();
    let peak = points.iter().map(|p| p.1).fold(0.0, f64::max);
    let tick =
        |x: f64| DateTime::from_timestamp(x as i64, 0).map(|t| t.format("%d %b %H:00").to_string()).unwrap_or_default();
    let traffic = chart::render(&Chart {
        id: "traffic",
        title: "Product views per hour, the whole mall, last 7 days (anomalies circled)",
        description: format!(
            "{} hours with views; the busiest had {peak:.0}; {} traffic anomalies marked.",
            points.len(),
            marks.len()
        ),
        x_label: "hour (UTC)",
        series: vec![Series { label: "views per hour", color: "#1f4e9c", points }],
        rule: None,
        marks,
        x_tick: &tick,
    });
    // The latest report of each (district, period).
    let mut latest: BTreeMap<(String, String), Row> = BTreeMap::new();
    for r in rows(state, "analytics", ANALYTICS_NARRATIVES, Filter::All).await? {
        let k = (cell(&r, "microstore"), cell(&r, "period"));
        if latest.get(&k).is_none_or(|o| num(o, "position") < num(&r, "position")) {
            latest.insert(k, r);
        }
    }
    let mut reports = String::from("<h3 id=\"narratives\">Narratives</h3>");
    if latest.is_empty() {
        reports.push_str("<p>None yet.</p>");
    }
    for ((microstore, period), r) in latest.iter().take(MAX_ROWS) {
        reports.push_str(&format!(
            "<article><h4>{} — {}</h4><p>{}</p><p class=\"key\">Written by {}, {}.</p></article>",
            escape(microstore),
            escape(period),
            escape(&cell(r, "narrative")),
            escape(&cell(r, "written_by")),
            escape(&cell(r, "at"))
        ));
    }
    Ok(format!(
        "<h2>Analytics</h2>{traffic}{}{reports}",
        table(
            "anomalies",
            "Anomalies",
            &anomalies,
            &[
                ("Where", "microstore"),
                ("Metric", "metric"),
                ("Kind", "kind"),
                ("From", "start_at"),
                ("To", "end_at"),
                ("Expected", "expected"),
                ("Observed", "observed"),
                ("Score", "score"),
            ],
        )
    ))
}
