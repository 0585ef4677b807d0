//! `GET /metrics` over HTTP, on both stores: admin only; in the Prometheus text format; requests
//! counted by route pattern (not by path) and status with latency histograms; every event the
//! log took, by type; appends timed; the log position, each projection's lag, resident actors,
//! the queue and the budget as they are at the scrape.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use support::http::*;
use support::server::*;

/// The samples of a scrape: `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

async fn scrape(c: &reqwest::Client, s: &Server) -> BTreeMap<String, f64> {
    let r = c.get(s.url("/metrics")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let kind = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(kind.starts_with("text/plain") && kind.contains("version=0.0.4"), "{kind}");
    samples(&r.text().await.unwrap())
}

fn value(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    *m.get(key).unwrap_or_else(|| panic!("no {key} in {:#?}", m.keys().collect::<Vec<_>>()))
}

async fn metrics_answer(store: Store) {
    let c = client();
    let s = Server::start(&store, &[]);
    assert_eq!(get(&c, s.url("/metrics")).await.0, StatusCode::UNAUTHORIZED, "not public");
    assert_eq!(get_as(&c, s.url("/metrics"), INGEST).await.0, StatusCode::FORBIDDEN, "admin only");

    assert_eq!(post(&c, s.url("/api/districts"), ADMIN, &district("toys", "playful")).await.0, StatusCode::CREATED);
    for id in ["p1", "p2"] {
        let code = post(&c, s.url("/api/products"), ADMIN, &product(id, "toys", "Wooden train", "Beech.")).await.0;
        assert_eq!(code, StatusCode::CREATED);
    }
    let views: Vec<_> = (0..25).map(|i| signal("product_viewed", "p1", &format!("s{i}"))).collect();
    let (code, body) = post(&c, s.url("/api/signals"), INGEST, &json!({"signals": views})).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{body}");
    for id in ["p1", "p2", "nope"] {
        get(&c, s.url(&format!("/api/products/{id}"))).await;
    }
    get(&c, s.url("/no/such/path/42")).await;

    // The follower counts the log's events as they come.
    let deadline = Instant::now() + Duration::from_secs(10);
    let m = loop {
        let m = scrape(&c, &s).await;
        // (The offline generator writes the products' missing SEO meanwhile.)
        let generated = m.iter().any(|(k, v)| k.starts_with("mall_model_calls_total{") && *v >= 1.0);
        if m.get("mall_events_total{type=\"product_viewed\"}") == Some(&25.0) && generated {
            break m;
        }
        assert!(Instant::now() < deadline, "{m:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(value(&m, "mall_events_total{type=\"product_listed\"}"), 2.0);
    assert_eq!(value(&m, "mall_events_total{type=\"district_opened\"}"), 1.0);

    // Requests by route pattern and status: three product reads are one series per status.
    let requests = |endpoint: &str, method: &str, status: u16| {
        m.get(&format!("mall_http_requests_total{{endpoint=\"{endpoint}\",method=\"{method}\",status=\"{status}\"}}"))
            .copied()
    };
    // (A product just listed may not be readable yet: 200 or 404, three reads in all.)
    let (found, missing) =
        (requests("/api/products/{id}", "GET", 200).unwrap_or(0.0), requests("/api/products/{id}", "GET", 404));
    assert_eq!(found + missing.unwrap_or(0.0), 3.0, "{m:#?}");
    assert!(missing >= Some(1.0), "nope is not listed");
    assert_eq!(requests("/api/signals", "POST", 202), Some(1.0));
    assert_eq!(requests("UNKNOWN", "GET", 404), Some(1.0), "a path no route has is not a label of its own");
    assert!(!m.keys().any(|k| k.contains("/no/such/path")));
    assert!(m.keys().any(|k| k.starts_with("mall_http_requests_duration_seconds_bucket{endpoint=\"/api/signals\"")));

    // Appends, timed; the log's position; the read side's lag; the engine room.
    assert!(value(&m, "mall_append_seconds_count{outcome=\"ok\"}") >= 4.0, "{m:#?}");
    assert!(value(&m, "mall_appended_events_total") >= 28.0);
    let (_, health) = get(&c, s.url("/healthz")).await;
    let position = health["log_position"].as_f64().unwrap();
    let m = scrape(&c, &s).await;
    assert!(value(&m, "mall_log_position") >= position, "{m:#?}");
    let (_, status) = get_as(&c, s.url("/api/autonomous"), ADMIN).await;
    for projection in status["projection_lag"].as_array().unwrap() {
        let key = format!("mall_projection_lag_positions{{projection=\"{}\"}}", projection["name"].as_str().unwrap());
        assert!(value(&m, &key) >= 0.0);
    }
    assert!(value(&m, "mall_resident_actors{kind=\"product\"}") >= 1.0, "p1 and p2 woke: {m:#?}");
    assert_eq!(value(&m, "mall_generation_budget_per_hour"), status["generation_budget"]["per_hour"].as_f64().unwrap());
    assert!(m.contains_key("mall_task_queue{status=\"queued\"}"));
    assert_eq!(value(&m, "mall_parked_events"), 0.0);
    // The offline generator's calls, counted and timed.
    assert!(
        m.iter().any(|(k, v)| k.starts_with("mall_model_calls_total{") && k.contains("kind=\"generate\"") && *v >= 1.0),
        "{m:#?}"
    );
    assert!(value(&m, "mall_model_call_seconds_count{kind=\"generate\"}") >= 1.0);
}

support::on_both_stores!(metrics_answer);
