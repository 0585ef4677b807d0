//! Analytics end to end over HTTP, on both stores: two weeks of a district's hourly rhythm with
//! one hour's spike; the admin's optimize finds the spike (and nothing of the ordinary rhythm),
//! and writes reports whose metrics are the signals' own counts, whose every number is one of
//! its facts, and whose narrative names the spike; bad queries are refused naming the field. A
//! model that rewords a narrative with invented numbers, links and reviews is refused (the
//! narrative from the facts is published, the attempt recorded); one that rewords it faithfully
//! is published.

#[path = "support/model.rs"]
mod model;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Timelike, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::http::*;
use support::server::*;

fn at(s: &mut Value, t: DateTime<Utc>) -> Value {
    s["at"] = json!(t.to_rfc3339());
    s.clone()
}

/// Views each hour: a daily rhythm, busiest in the afternoon.
fn rhythm(hour: u32) -> usize {
    match hour {
        0..=6 => 2,
        7..=11 => 5,
        12..=18 => 8,
        _ => 4,
    }
}

struct Seeded {
    signals: Vec<Value>,
    /// When each view happened.
    views: Vec<DateTime<Utc>>,
    purchases: Vec<(DateTime<Utc>, f64)>,
    spike: DateTime<Utc>,
}

/// Two weeks of hourly traffic on `t1` (toys) up to the last whole hour; a purchase every third
/// hour (more of them this week); 60 views in one hour two days ago; a little traffic in books;
/// searches, one of which finds nothing.
fn seed() -> Seeded {
    let now = Utc::now();
    let this_hour = now.with_minute(0).unwrap().with_second(0).unwrap().with_nanosecond(0).unwrap();
    let spike = this_hour - chrono::Duration::hours(50);
    let mut out = Seeded { signals: Vec::new(), views: Vec::new(), purchases: Vec::new(), spike };
    for h in 1..=14 * 24 {
        let hour = this_hour - chrono::Duration::hours(h);
        let t = hour + chrono::Duration::minutes(30);
        let n = if hour == spike { 60 } else { rhythm(hour.hour()) };
        for v in 0..n {
            out.signals.push(at(&mut signal("product_viewed", "t1", &format!("v{h}-{v}")), t));
            out.views.push(t);
        }
        let buys = if h <= 7 * 24 { h % 3 == 0 } else { h % 6 == 0 };
        if buys {
            let mut p = signal("purchased", "t1", &format!("v{h}-0"));
            let m = p.as_object_mut().unwrap();
            m.insert("quantity".into(), json!(1));
            m.insert("unit_price".into(), json!("24.50"));
            m.insert("currency".into(), json!("EUR"));
            m.insert("order_id".into(), json!(format!("o{h}")));
            out.signals.push(at(&mut p, t));
            out.purchases.push((t, 24.5));
            out.signals.push(at(&mut signal("added_to_cart", "t1", &format!("v{h}-0")), t));
        }
        if h % 12 == 0 {
            out.signals.push(at(&mut signal("product_viewed", "b1", &format!("b{h}")), t));
        }
    }
    for (i, (query, results)) in
        [("wooden train", json!(["t1"])), ("wooden train", json!(["t1"])), ("kite", json!([]))].into_iter().enumerate()
    {
        out.signals.push(json!({"type": "searched", "id": uuid::Uuid::now_v7(), "shopper_id": format!("q{i}"),
            "session_id": "s", "at": now.to_rfc3339(), "query": query, "result_ids": results}));
    }
    out
}

/// Every number written in `text` (digits with thousands commas and decimals).
fn numbers(text: &str) -> Vec<f64> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = text.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        let next_digit = chars.get(i + 1).is_some_and(|n| n.is_ascii_digit());
        if c.is_ascii_digit() || ((*c == ',' || *c == '.') && !cur.is_empty() && next_digit) {
            cur.push(*c);
        } else if !cur.is_empty() {
            out.push(cur.replace(',', "").parse().unwrap());
            cur.clear();
        }
    }
    if !cur.is_empty() {
        out.push(cur.replace(',', "").parse().unwrap());
    }
    out
}

async fn setup(c: &reqwest::Client, s: &Server) -> Seeded {
    let (code, _) =
        post(c, s.url("/api/autonomous"), ADMIN, &json!({"action": "stop", "system": "product_intelligence"})).await;
    assert_eq!(code, StatusCode::OK);
    for slug in ["toys", "books"] {
        assert_eq!(post(c, s.url("/api/districts"), ADMIN, &district(slug, "calm")).await.0, StatusCode::CREATED);
    }
    for (id, slug, title) in [("t1", "toys", "Wooden train"), ("b1", "books", "Picture book")] {
        let (code, _) = post(c, s.url("/api/products"), ADMIN, &product(id, slug, title, "Made with care.")).await;
        assert_eq!(code, StatusCode::CREATED);
    }
    let seeded = seed();
    for chunk in seeded.signals.chunks(1_000) {
        let (code, body) = post(c, s.url("/api/signals"), INGEST, &json!({"signals": chunk})).await;
        assert_eq!(code, StatusCode::ACCEPTED, "{body}");
    }
    seeded
}

async fn analytics(c: &reqwest::Client, s: &Server, microstore: &str, period: &str) -> Value {
    let url = s.url(&format!("/api/autonomous/analytics?microstoreId={microstore}&period={period}"));
    let (code, body) = get_as(c, url, ADMIN).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body
}

/// Asks for a sweep (detection and reports) and waits until `microstore`'s weekly report is in.
async fn optimize(c: &reqwest::Client, s: &Server, microstore: &str) -> Value {
    let (code, body) =
        post(c, s.url("/api/autonomous"), ADMIN, &json!({"action": "optimize", "system": "analytics"})).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["systems"], json!(["analytics"]), "{body}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let a = analytics(c, s, microstore, "week").await;
        if !a["latest_report"].is_null() {
            return a;
        }
        assert!(Instant::now() < deadline, "no report: {a:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn every_number_is_a_fact(text: &str, facts: &Value) {
    let facts: Vec<f64> = facts.as_object().unwrap().values().map(|v| v.as_f64().unwrap().abs()).collect();
    for n in numbers(text) {
        assert!(facts.iter().any(|f| (f - n).abs() < 1e-6), "{n} is not a fact: {text}\n{facts:?}");
    }
}

async fn reports_and_anomalies(store: Store) {
    let c = client();
    let s = Server::start(&store, &[("MALL_JOBS", "analytics_narratives=0,anomaly_detection=0")]);
    let seeded = setup(&c, &s).await;
    let a = optimize(&c, &s, "toys").await;

    // The week's metrics are the signals' own counts, against the same span a week earlier.
    let from: DateTime<Utc> = a["from"].as_str().unwrap().parse().unwrap();
    let to: DateTime<Utc> = a["to"].as_str().unwrap().parse().unwrap();
    let (pfrom, pto) = (from - chrono::Duration::days(7), to - chrono::Duration::days(7));
    // Hours are counted whole: a bucket is in a window when its hour starts in it.
    let hour = |t: &DateTime<Utc>| t.with_minute(0).unwrap();
    let views =
        |f: DateTime<Utc>, t: DateTime<Utc>| seeded.views.iter().filter(|v| hour(v) >= f && hour(v) < t).count();
    let bought = |f: DateTime<Utc>, t: DateTime<Utc>| {
        seeded.purchases.iter().filter(|v| hour(&v.0) >= f && hour(&v.0) < t).count()
    };
    let m = &a["metrics"];
    assert_eq!(m["traffic"]["value"].as_f64().unwrap() as usize, views(from, to), "{m}");
    assert_eq!(m["traffic"]["previous"].as_f64().unwrap() as usize, views(pfrom, pto), "{m}");
    assert_eq!(m["purchases"]["value"].as_f64().unwrap() as usize, bought(from, to), "{m}");
    assert_eq!(m["revenue"]["value"].as_f64().unwrap(), 24.5 * bought(from, to) as f64, "{m}");
    assert!(bought(from, to) > bought(pfrom, pto), "more purchases this week");
    assert!(m["revenue"]["change"].as_f64().unwrap() > 0.0, "{m}");
    assert_eq!(a["top_products"][0]["product_id"], "t1", "{a:#}");
    assert_eq!(a["top_products"][0]["title"], "Wooden train", "the title from the catalog: {a:#}");

    // The spike was found, once, with its evidence; the ordinary rhythm was not flagged.
    let spikes: Vec<&Value> = a["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["metric"] == "traffic" && x["microstore"] == "toys")
        .collect();
    assert_eq!(spikes.len(), 1, "{:#}", a["anomalies"]);
    let spike = spikes[0];
    assert_eq!(spike["kind"], "spike");
    let start: DateTime<Utc> = spike["start_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(start, seeded.spike, "{spike}");
    assert_eq!(spike["observed"].as_f64(), Some(60.0));
    assert_eq!(spike["expected"].as_f64(), Some(rhythm(seeded.spike.hour()) as f64), "{spike}");
    assert!(a["narrative"].as_str().unwrap().contains("An unusual spike in traffic"), "{}", a["narrative"]);

    // The narrative states only facts; the recorded report is the one written from the facts.
    every_number_is_a_fact(a["narrative"].as_str().unwrap(), &a["facts"]);
    let latest = &a["latest_report"];
    assert_eq!(latest["written_by"], "facts/1", "{latest}");
    every_number_is_a_fact(latest["narrative"].as_str().unwrap(), &latest["facts"]);
    assert!(latest["generation"].is_null());

    // The mall's report sums the districts, names the search that found nothing, and summarizes
    // each district.
    let all = analytics(&c, &s, "all", "week").await;
    let books = analytics(&c, &s, "books", "week").await;
    let traffic = |v: &Value| v["metrics"]["traffic"]["value"].as_f64().unwrap();
    assert!(traffic(&books) > 0.0, "{books:#}");
    assert_eq!(traffic(&all), traffic(&a) + traffic(&books));
    assert_eq!(all["zero_result_terms"], json!([{"term": "kite", "searches": 1}]), "{all:#}");
    assert_eq!(all["search_terms"][0], json!({"term": "wooden train", "searches": 2}));
    let summary = all["executive_summary"].as_str().unwrap();
    assert!(summary.contains("The toys district") && summary.contains("The books district"), "{summary}");
    assert!(all["suggestions"].as_array().unwrap().iter().any(|x| x.as_str().unwrap().contains("\"kite\"")));

    // A second detection finds nothing new.
    let (code, body) =
        post(&c, s.url("/api/autonomous"), ADMIN, &json!({"action": "optimize", "system": "analytics"})).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{body}");
    let task = body["tasks"][0].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, st) = get_as(&c, s.url("/api/autonomous"), ADMIN).await;
        let done = st["queue"]["recent"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["id"] == task.as_str() && t["status"] == "succeeded");
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "{st:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let again = analytics(&c, &s, "toys", "week").await;
    let n = |v: &Value| v["anomalies"].as_array().unwrap().len();
    assert_eq!(n(&again), n(&a), "no anomaly recorded twice");

    // Bad queries name the field; the figures need the admin token.
    let (code, err) = get_as(&c, s.url("/api/autonomous/analytics?microstoreId=toys&period=year"), ADMIN).await;
    assert_eq!((code, err["field"].as_str()), (StatusCode::BAD_REQUEST, Some("period")), "{err}");
    let (code, _) = get_as(&c, s.url("/api/autonomous/analytics?microstoreId=nowhere"), ADMIN).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, err) = get_as(&c, s.url("/api/autonomous/analytics?colour=red"), ADMIN).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(get(&c, s.url("/api/autonomous/analytics")).await.0, StatusCode::UNAUTHORIZED);
    let (code, _) = get_as(&c, s.url("/api/autonomous/analytics"), INGEST).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
}

support::on_both_stores!(reports_and_anomalies);

/// A model rewords the narratives: for toys it invents a number, a review and a link (refused:
/// the narrative from the facts is published and the attempt recorded with its verdicts); for
/// the mall it rewords faithfully (published, written by the model).
async fn a_models_narrative_is_guarded(store: Store) {
    use std::sync::Arc;
    let stand_in = model::start(
        model::Api::ChatCompletions,
        Arc::new(move |r: &model::Request| {
            let p = r.prompt();
            if r.is_embedding() {
                return model::Reply::Embedding(vec![0.1, 0.2, 0.3, 0.4]);
            }
            let report = p.split("REPORT:\n").nth(1).unwrap_or("").to_string();
            if p.contains("\"The toys district\"") {
                model::Reply::Text(format!(
                    "{report} Revenue will grow 300% next week. One customer wrote: five stars, best toys ever! \
                     Details at https://evil.example."
                ))
            } else {
                model::Reply::Text(format!("In short for the manager. {report}"))
            }
        }),
    )
    .await;
    let mut env = stand_in.env();
    env.extend([("MALL_JOBS", "analytics_narratives=0,anomaly_detection=0")]);
    let c = client();
    let s = Server::start(&store, &env);
    setup(&c, &s).await;
    let toys = optimize(&c, &s, "toys").await;
    let latest = &toys["latest_report"];
    assert_eq!(latest["written_by"], "facts/1", "{latest:#}");
    let narrative = latest["narrative"].as_str().unwrap();
    assert!(!narrative.contains("300") && !narrative.contains("evil") && !narrative.contains("stars"), "{narrative}");
    let verdicts: BTreeMap<String, bool> = latest["generation"]["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["check"].as_str().unwrap().to_string(), v["passed"].as_bool().unwrap()))
        .collect();
    for check in ["numbers", "contact", "claims"] {
        assert_eq!(verdicts.get(check), Some(&false), "{check} refused it: {verdicts:?}");
    }
    assert!(latest["generation"]["raw_output"].as_str().unwrap().contains("300%"));
    assert!(latest["generation"]["prompt"].as_str().unwrap().contains("FACTS (JSON)"));

    let all = analytics(&c, &s, "all", "week").await;
    let latest = &all["latest_report"];
    assert_ne!(latest["written_by"], "facts/1", "{latest:#}");
    let narrative = latest["narrative"].as_str().unwrap();
    assert!(narrative.starts_with("In short for the manager."), "{narrative}");
    every_number_is_a_fact(narrative, &latest["facts"]);
    assert!(latest["generation"]["verdicts"].as_array().unwrap().iter().all(|v| v["passed"] == true));
}

support::on_both_stores!(a_models_narrative_is_guarded);
