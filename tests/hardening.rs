//! Hardening, end to end over HTTP on both stores: the edge accepts only what every backend and
//! read side can hold (times in range, text without control characters and not empty once
//! invisible characters are left out, counts and money within bounds), bodies are strict (no
//! trailing data, no key twice, no `null` edits), and the small things a careless client meets
//! are answered right: a lower-case `bearer`, a wrong method (405 with `Allow`), a bad query
//! parameter named, a private shopper profile, a body that never finishes.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::http::*;
use support::server::*;

/// Asserts a 400 that names `field`.
fn refused(answer: (StatusCode, Value), field: &str) {
    let (status, body) = answer;
    assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{body}");
}

async fn the_edge_refuses_what_a_backend_cannot_hold(store: Store) {
    let s = Server::start(&store, &[("MALL_BODY_TIMEOUT", "2")]);
    let c = client();
    let (status, body) = post(&c, s.url("/api/districts"), ADMIN, &district("toys", "warm")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) =
        post(&c, s.url("/api/products"), ADMIN, &product("p1", "toys", "Wooden train", "Beech.")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Times out of range: a year PostgreSQL cannot hold froze its read side for good.
    for at in ["+10000-01-01T00:00:00Z", "0000-01-01T00:00:00Z", "-0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z"] {
        let mut v = signal("product_viewed", "p1", "a");
        v["at"] = json!(at);
        refused(post(&c, s.url("/api/signals"), INGEST, &json!({"signals": [v]})).await, "signals[0].at");
    }
    // NUL and other control characters, in every kind of text.
    let mut d = district("nul", "warm");
    d["name"] = json!("Toy\u{0}Town");
    refused(post(&c, s.url("/api/districts"), ADMIN, &d).await, "name");
    let mut p = product("p2", "toys", "Wooden\u{0} train", "");
    refused(post(&c, s.url("/api/products"), ADMIN, &p).await, "title");
    p = product("p2", "toys", "Wooden train", "");
    p["tags"] = json!(["wo\u{0}od"]);
    refused(post(&c, s.url("/api/products"), ADMIN, &p).await, "tags[0]");
    p["tags"] = json!(["wood"]);
    p["attributes"] = json!({"colo\u{1b}r": "red"});
    refused(post(&c, s.url("/api/products"), ADMIN, &p).await, "attributes");
    // Text that is empty once invisible characters are left out.
    let p = product("p3", "toys", "\u{200B}\u{200B}\u{FEFF}", "");
    refused(post(&c, s.url("/api/products"), ADMIN, &p).await, "title");
    // Counts and money whose sums would wrap.
    let mut v = signal("product_viewed", "p1", "a");
    v["dwell_ms"] = json!(u64::MAX);
    refused(post(&c, s.url("/api/signals"), INGEST, &json!({"signals": [v]})).await, "signals[0].dwell_ms");
    let bought = |price: &str, quantity: u64| {
        let mut v = signal("purchased", "p1", "a");
        let m = v.as_object_mut().unwrap();
        m.insert("order_id".into(), json!("o1"));
        m.insert("quantity".into(), json!(quantity));
        m.insert("unit_price".into(), json!(price));
        m.insert("currency".into(), json!("EUR"));
        json!({"signals": [v]})
    };
    refused(post(&c, s.url("/api/signals"), INGEST, &bought("999999999999.9999", 1)).await, "signals[0].unit_price");
    refused(post(&c, s.url("/api/signals"), INGEST, &bought("24.50", 4_294_967_295)).await, "signals[0].quantity");
    // The largest accepted values are stored and projected.
    let (status, body) = post(&c, s.url("/api/signals"), INGEST, &bought("999999999.9999", 100_000)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = post(&c, s.url("/api/signals"), INGEST, &bought("999999999.9999", 100_000)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let mut v = signal("product_viewed", "p1", "b");
    v["dwell_ms"] = json!(86_400_000u64);
    v["at"] = json!("9999-12-31T23:59:59Z");
    let (status, body) = post(&c, s.url("/api/signals"), INGEST, &json!({"signals": [v]})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let position = body["position"].as_u64().unwrap();
    // The read side moved past them: nothing stalled, nothing wrapped.
    let (status, _, p) =
        send(&c, reqwest::Method::GET, s.url(&format!("/api/products/p1?min_position={position}")), None, None).await;
    assert_eq!(status, StatusCode::OK, "{p}");
    let total = &p["metrics"]["total"];
    assert_eq!((total["views"].as_u64(), total["purchases"].as_u64()), (Some(1), Some(2)), "{p}");
    assert!(total["revenue"].as_f64().unwrap() > 1.9e14, "revenue adds up, never negative: {p}");
    assert_eq!(total["dwell_ms"].as_u64(), Some(86_400_000), "{p}");

    // Strict bodies.
    let (status, _, body) = send(
        &c,
        reqwest::Method::POST,
        s.url("/api/districts"),
        Some(ADMIN),
        Some(br#"{"slug":"a","name":"A","personality":{"tone":"t","style":"s","audience":"x"}} trailing"#.to_vec()),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _, body) = send(
        &c,
        reqwest::Method::POST,
        s.url("/api/districts"),
        Some(ADMIN),
        Some(br#"{"slug":"a","slug":"b","name":"A","personality":{"tone":"t","style":"s","audience":"x"}}"#.to_vec()),
    )
    .await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("slug")), "{body}");
    let (status, _, body) =
        send(&c, reqwest::Method::PUT, s.url("/api/products/p1"), Some(ADMIN), Some(br#"{"title": null}"#.to_vec()))
            .await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("title")), "{body}");

    // `bearer` in lower case is the same scheme.
    let r = c
        .post(s.url("/api/signals"))
        .header("authorization", format!("bearer {INGEST}"))
        .json(&json!({"signals": [signal("product_viewed", "p1", "c")]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // A wrong method is 405 with what is allowed.
    let (status, headers, body) = send(&c, reqwest::Method::DELETE, s.url("/api/products/p1"), Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    let allow = headers.get("allow").unwrap().to_str().unwrap();
    assert!(allow.contains("GET") && allow.contains("PUT"), "{allow}");
    assert_eq!(send(&c, reqwest::Method::GET, s.url("/api/nowhere"), None, None).await.0, StatusCode::NOT_FOUND);
    // A bad query parameter is named.
    let (status, _, body) =
        send(&c, reqwest::Method::GET, s.url("/api/districts/toys/products?limit=lots"), None, None).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("limit")), "{body}");
    // A shopper's profile is private.
    let profile = s.url("/api/autonomous/personalize?userId=a");
    assert_eq!(send(&c, reqwest::Method::GET, profile.clone(), None, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(send(&c, reqwest::Method::GET, profile, Some(INGEST), None).await.0, StatusCode::OK);

    // A body trickled and never finished is answered 408, and the server goes on.
    let addr = s.base.trim_start_matches("http://").to_string();
    let answer = std::thread::spawn(move || {
        let mut sock = std::net::TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let head = format!(
            "POST /api/signals HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {INGEST}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{"
        );
        sock.write_all(head.as_bytes()).unwrap();
        let mut reply = String::new();
        let _ = sock.read_to_string(&mut reply);
        reply
    })
    .join()
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let r = c.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

support::on_both_stores!(the_edge_refuses_what_a_backend_cannot_hold);

/// Appends, past the edge, an event no read side may hold (a signal in the year 10000), as an
/// older build or another writer might have left in the log.
async fn poison_the_log(store: &Store) {
    use chrono::TimeZone;
    use mall_events::domain::{DomainEvent, ProductViewed};
    use mall_events::ids::{ProductId, SessionId, ShopperId};
    let event = DomainEvent::ProductViewed(ProductViewed {
        campaign: None,
        id: uuid::Uuid::now_v7(),
        shopper_id: ShopperId::parse("s").unwrap(),
        session_id: SessionId::parse("s").unwrap(),
        at: chrono::Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0).unwrap(),
        product_id: ProductId::parse("ghost").unwrap(),
        dwell_ms: 1,
    });
    let ne = mall_events::NewEvent::from_domain(&event, uuid::Uuid::now_v7(), vec![]).unwrap();
    let log: std::sync::Arc<dyn mall_events::EventStore> = match store {
        Store::Embedded(dir) => {
            std::sync::Arc::new(mall_events::EmbeddedStore::open(mall_events::EmbeddedConfig::new(dir)).unwrap())
        }
        Store::Postgres { url, .. } => std::sync::Arc::new(
            mall_events::postgres::PgStore::connect(mall_events::postgres::PgConfig::new(url)).await.unwrap(),
        ),
    };
    log.append(&event.stream_id(), mall_events::ExpectedVersion::Any, vec![ne]).await.unwrap();
    log.close().await;
}

async fn parked(c: &reqwest::Client, s: &Server) -> Value {
    let (_, _, health) = send(c, reqwest::Method::GET, s.url("/healthz"), None, None).await;
    health
}

/// A poison event already in the log is parked by every projection, which move on; the server
/// says `degraded` and `mall projections status` shows the event and its error; a retry that
/// cannot help leaves it parked (exit 1).
async fn a_poison_event_is_parked_and_the_read_side_moves_on(store: Store) {
    poison_the_log(&store).await;
    let s = Server::start(&store, &[]);
    let c = client();
    let (status, _) = post(&c, s.url("/api/districts"), ADMIN, &district("toys", "warm")).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) =
        post(&c, s.url("/api/products"), ADMIN, &product("p1", "toys", "Wooden train", "Beech.")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let position = body["position"].as_u64().unwrap();
    let (status, _, p) =
        send(&c, reqwest::Method::GET, s.url(&format!("/api/products/p1?min_position={position}")), None, None).await;
    assert_eq!(status, StatusCode::OK, "the catalog moved past the poison event: {p}");
    let health = parked(&c, &s).await;
    assert_eq!(health["status"], "degraded", "{health}");
    let parked_by: Vec<&str> =
        health["parked"].as_array().unwrap().iter().map(|p| p["projection"].as_str().unwrap()).collect();
    // Every projection that reads product events parked it; the core's, which reads only the
    // core's stream, never saw it.
    assert_eq!(parked_by, ["catalog", "personalization", "optimization", "analytics", "social"], "{health}");
    let env = [("MALL_SERVER", s.base.as_str()), ("MALL_ADMIN_TOKEN", ADMIN)];
    let (code, out, err) = mall_with(&store, &["projections", "status", "--json"], &env);
    assert_eq!(code, 0, "{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    let catalog = status["projections"].as_array().unwrap().iter().find(|p| p["name"] == "catalog").unwrap();
    let parked_event = &catalog["parked"][0];
    assert_eq!(parked_event["event_type"], "product_viewed", "{status}");
    assert!(parked_event["error"].as_str().unwrap().contains("at"), "{status}");
    let (code, _, err) = mall_with(&store, &["projections", "retry", "--all"], &env);
    assert_eq!(code, 1, "nothing fixed it: still parked");
    assert!(err.contains("still parked"), "{err}");
}

support::on_both_stores!(a_poison_event_is_parked_and_the_read_side_moves_on);

/// A value PostgreSQL's tables refuse (here a constraint the operator added) parks that one
/// event with the database's detail; the projection moves on; after the fix, `mall projections
/// retry` applies it and the server is `ok` again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_event_the_tables_refuse_is_parked_with_the_detail_and_retried_after_a_fix() {
    let dir = tempfile::tempdir().unwrap();
    let pg = support::pg::Postgres::new().await;
    let store = Store::Postgres { url: pg.url.clone(), snapshots: dir.path().join("snap") };
    let s = Server::start(&store, &[]);
    let c = client();
    let (db, conn) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    db.batch_execute("ALTER TABLE products ADD CONSTRAINT no_poison CHECK (title <> 'Poison')").await.unwrap();
    let (status, _) = post(&c, s.url("/api/districts"), ADMIN, &district("toys", "warm")).await;
    assert_eq!(status, StatusCode::CREATED);
    for (id, title) in [("bad", "Poison"), ("good", "Wooden train")] {
        let (status, body) = post(&c, s.url("/api/products"), ADMIN, &product(id, "toys", title, "Beech.")).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _, _) = send(&c, reqwest::Method::GET, s.url("/api/products/good"), None, None).await;
        if status == StatusCode::OK {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the catalog stalled behind the refused event");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The listing is parked (later events of the product may still make a bare row).
    let (_, _, body) = send(&c, reqwest::Method::GET, s.url("/api/products/bad"), None, None).await;
    assert_ne!(body["title"], "Poison", "{body}");
    let health = parked(&c, &s).await;
    assert_eq!(health["status"], "degraded", "{health}");
    let (code, out, err) = mall(&store, &["projections", "status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("parked") && out.contains("no_poison"), "the database's detail is shown: {out}");
    db.batch_execute("ALTER TABLE products DROP CONSTRAINT no_poison").await.unwrap();
    let (code, out, err) = mall(&store, &["projections", "retry", "catalog"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("1 parked events applied"), "{out}");
    let (status, _, p) = send(&c, reqwest::Method::GET, s.url("/api/products/bad"), None, None).await;
    assert_eq!((status, p["title"].as_str()), (StatusCode::OK, Some("Poison")), "{p}");
    assert_eq!(parked(&c, &s).await["status"], "ok");
}

/// `mall import` keeps the file's order in the log, within a batch too: a shopper's signals,
/// spread over many products' streams, are in the log in the order they happened.
async fn import_keeps_the_files_order(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("records.ndjson");
    let mut lines = vec![district("toys", "warm").to_string().replacen('{', "{\"type\":\"district_opened\",", 1)];
    for p in 0..20 {
        lines.push(product(&format!("p{p}"), "toys", "Wooden train", "Beech.").to_string().replacen(
            '{',
            "{\"type\":\"product_listed\",",
            1,
        ));
    }
    let start = chrono::Utc::now() - chrono::Duration::days(1);
    let mut ids = Vec::new();
    for i in 0..3_000i64 {
        let mut s = signal("product_viewed", &format!("p{}", (i * 7) % 20), &format!("s{}", i % 13));
        s["at"] = json!((start + chrono::Duration::seconds(i)).to_rfc3339());
        ids.push(s["id"].as_str().unwrap().to_string());
        lines.push(s.to_string());
    }
    std::fs::write(&file, lines.join("\n")).unwrap();
    let path = file.to_str().unwrap();
    let (code, out, err) = mall(&store, &["import", path, "--batch", "1000"]);
    assert_eq!(code, 0, "{out}{err}");
    let log: std::sync::Arc<dyn mall_events::EventStore> = match &store {
        Store::Embedded(d) => {
            let mut c = mall_events::EmbeddedConfig::new(d);
            c.read_only = true;
            std::sync::Arc::new(mall_events::EmbeddedStore::open(c).unwrap())
        }
        Store::Postgres { url, .. } => std::sync::Arc::new(
            mall_events::postgres::PgStore::connect(mall_events::postgres::PgConfig::new(url)).await.unwrap(),
        ),
    };
    let all = log.read_all(1, 10_000).await.unwrap();
    let in_log: Vec<String> =
        all.iter().filter(|e| e.event_type == "product_viewed").map(|e| e.event_id.to_string()).collect();
    assert_eq!(in_log.len(), ids.len());
    let misplaced: Vec<usize> =
        in_log.iter().zip(&ids).enumerate().filter(|(_, (a, b))| a != b).map(|(i, _)| i).collect();
    let first = misplaced.first().copied().unwrap_or(0);
    assert!(
        misplaced.is_empty(),
        "the log's order is the file's: {} misplaced, first at {first}: log {:?} file {:?}",
        misplaced.len(),
        &in_log[first..(first + 3).min(in_log.len())],
        &ids[first..(first + 3).min(ids.len())]
    );
    let types: Vec<&str> = all.iter().take(21).map(|e| e.event_type.as_str()).collect();
    assert_eq!(types[0], "district_opened");
    assert!(types[1..].iter().all(|t| *t == "product_listed"));
    log.close().await;
    // A second import adds nothing.
    let (code, out, err) = mall(&store, &["import", path]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 events appended"), "{out}");
}

support::on_both_stores!(import_keeps_the_files_order);

/// A product whose own facts can never pass the guardrails (its title is markup) is tried a
/// bounded number of times — the offline fallback included — and then waits for a person;
/// the other products still get their copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_that_can_never_pass_is_tried_a_bounded_number_of_times_and_others_are_served() {
    let (store, _dir) = Store::embedded();
    let s = Server::start(&store, &[("MALL_RETRY_BACKOFF", "1"), ("MALL_MAX_BACKOFF", "1")]);
    let c = client();
    let (status, _) = post(&c, s.url("/api/districts"), ADMIN, &district("toys", "warm")).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) =
        post(&c, s.url("/api/products"), ADMIN, &product("bad", "toys", "<script>alert(1)</script>", "")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for i in 0..5 {
        let (status, _) =
            post(&c, s.url("/api/products"), ADMIN, &product(&format!("good{i}"), "toys", "Wooden train", "")).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let actor = loop {
        let (_, _, i) =
            send(&c, reqwest::Method::GET, s.url("/api/autonomous/products?product_id=bad"), Some(ADMIN), None).await;
        let failures = &i["actor"]["failures"];
        if failures["update_seo"]["needs_a_person"] == true {
            break i["actor"].clone();
        }
        assert!(std::time::Instant::now() < deadline, "never gave up: {failures}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // Let it sit: no further attempts.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, _, h) = send(&c, reqwest::Method::GET, s.url("/api/products/bad/history"), Some(ADMIN), None).await;
    let decided = |rule: &str| h["changes"].as_array().unwrap().iter().filter(|ch| ch["rule"] == rule).count();
    // Its SEO title can only repeat the title: six attempts (the last three by the offline
    // fallback), then none. Its description is written without the title, which is left out.
    assert_eq!(decided("missing_seo"), 6, "{}", actor["failures"]);
    for change in h["changes"].as_array().unwrap().iter().filter(|ch| ch["rule"] == "missing_seo") {
        assert!(change["rejected_reason"].as_str().unwrap().starts_with("markup"), "{}", change["rejected_reason"]);
    }
    let (_, _, p) = send(&c, reqwest::Method::GET, s.url("/api/products/bad"), None, None).await;
    assert!(!p["description"].as_str().unwrap().contains('<'), "{}", p["description"]);
    for i in 0..5 {
        let (_, _, p) = send(&c, reqwest::Method::GET, s.url(&format!("/api/products/good{i}")), None, None).await;
        assert!(!p["description"].as_str().unwrap_or("").is_empty(), "others are served: {p}");
    }
}

/// Interests from signals at the ends of the accepted range stay finite and comparable: a shopper
/// of an old data set (1999) still gets a personal ranking, and one in 9999 does not overflow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interests_at_both_ends_of_the_time_range_stay_finite_and_comparable() {
    let (store, _dir) = Store::embedded();
    let s = Server::start(&store, &[]);
    let c = client();
    let (status, _) = post(&c, s.url("/api/districts"), ADMIN, &district("toys", "warm")).await;
    assert_eq!(status, StatusCode::CREATED);
    for p in ["p1", "p2"] {
        let (status, _) = post(&c, s.url("/api/products"), ADMIN, &product(p, "toys", "Wooden train", "Beech.")).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    for (shopper, year) in [("old", "1999"), ("far", "9999")] {
        let mut batch = Vec::new();
        for (p, n) in [("p1", 6), ("p2", 2)] {
            for i in 0..n {
                let mut v = signal("product_viewed", p, shopper);
                v["at"] = json!(format!("{year}-03-0{}T10:00:00Z", 1 + i % 5));
                batch.push(v);
            }
        }
        let (status, body) = post(&c, s.url("/api/signals"), INGEST, &json!({ "signals": batch })).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let position = body["position"].as_u64().unwrap();
        let url = s.url(&format!("/api/autonomous/personalize?userId={shopper}&min_position={position}"));
        let (status, _, profile) = send(&c, reqwest::Method::GET, url, Some(INGEST), None).await;
        assert_eq!(status, StatusCode::OK, "{profile}");
        let interests = profile["profile"]["interests"].as_array().unwrap();
        assert_eq!(interests[0]["product_id"], "p1", "{profile}");
        let (first, second) = (interests[0]["interest"].as_f64().unwrap(), interests[1]["interest"].as_f64().unwrap());
        assert!(first.is_finite() && first > 1.0 && second > 0.1 && first > second, "{year}: {profile}");
    }
}

/// Records generated at and beyond every bound: each is either refused with its field, or stored
/// and projected identically by the embedded store with in-memory tables and by PostgreSQL with
/// PostgreSQL tables (rows compared value by value: numbers as numbers, times as times).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_at_and_beyond_every_bound_are_refused_or_projected_alike_on_both_backends() {
    use mall_projections::memory::MemorySink;
    use mall_projections::postgres::PgSink;
    use mall_projections::runner::catch_up;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    let mut rng = StdRng::seed_from_u64(11);
    // Each field: values at its bounds (accepted) and beyond them (refused); mostly the former,
    // so that most records are accepted and projected, and every refusal is met too.
    let pick = |rng: &mut StdRng, (ok, beyond): &(Vec<Value>, Vec<Value>)| {
        if rng.random_bool(0.9) || beyond.is_empty() {
            ok[rng.random_range(0..ok.len())].clone()
        } else {
            beyond[rng.random_range(0..beyond.len())].clone()
        }
    };
    let times = (
        vec![json!("1970-01-01T00:00:00Z"), json!("9999-12-31T23:59:59Z"), json!("2026-11-29T12:00:00.123456Z")],
        vec![json!("1969-12-31T23:59:59Z"), json!("+10000-01-01T00:00:00Z")],
    );
    let texts = (
        vec![json!("Wooden train"), json!("x".repeat(64)), json!("İtirazım Var — 列車 🚂")],
        vec![json!("\u{200B}\u{FEFF}"), json!("Tr\u{0}ain"), json!(" ")],
    );
    let titles = (vec![json!("x".repeat(300)), json!("İtirazım Var")], vec![json!("x".repeat(301))]);
    let prices = (
        vec![json!("0"), json!("999999999.9999"), json!("24.50"), json!("0.0001")],
        vec![json!("1000000000"), json!("1.00001")],
    );
    let counts = (vec![json!(1), json!(100_000)], vec![json!(0), json!(100_001), json!(4_294_967_295u64)]);
    let numbers = (vec![json!(0.5), json!(1e15), json!(-1e15), json!(3)], vec![json!(1.0000001e15)]);
    let stocks = (vec![json!(0), json!(1_000_000_000)], vec![json!(1_000_000_001u64)]);
    let dwells = (vec![json!(0), json!(86_400_000)], vec![json!(86_400_001), json!(u64::MAX)]);
    let positions = (vec![json!(1), json!(1_000_000)], vec![json!(1_000_001)]);
    let mut records: Vec<Value> = vec![json!({"type": "district_opened", "slug": "toys", "name": "Toys",
        "personality": {"tone": "warm", "style": "short", "audience": "all"}})];
    for i in 0..40 {
        let mut p = product(&format!("p{i}"), "toys", "Train", "");
        p["type"] = json!("product_listed");
        p["title"] = if rng.random_bool(0.5) { pick(&mut rng, &titles) } else { pick(&mut rng, &texts) };
        p["description"] = pick(&mut rng, &texts);
        p["price"] = pick(&mut rng, &prices);
        p["stock"] = pick(&mut rng, &stocks);
        p["tags"] = json!([pick(&mut rng, &texts)]);
        p["attributes"] = json!({"size": pick(&mut rng, &numbers), "note": pick(&mut rng, &texts)});
        records.push(p);
    }
    for _ in 0..400 {
        let p = format!("p{}", rng.random_range(0..40));
        let kind =
            ["product_viewed", "added_to_cart", "purchased", "bounced", "product_clicked"][rng.random_range(0..5)];
        let mut v = signal(kind, &p, &format!("s{}", rng.random_range(0..20)));
        v["at"] = pick(&mut rng, &times);
        let m = v.as_object_mut().unwrap();
        match kind {
            "product_viewed" => {
                m.insert("dwell_ms".into(), pick(&mut rng, &dwells));
            }
            "added_to_cart" => {
                m.insert("quantity".into(), pick(&mut rng, &counts));
            }
            "purchased" => {
                m.insert("quantity".into(), pick(&mut rng, &counts));
                m.insert("unit_price".into(), pick(&mut rng, &prices));
                m.insert("currency".into(), json!("EUR"));
                m.insert("order_id".into(), json!("o1"));
            }
            "product_clicked" => {
                m.insert("list".into(), json!("home"));
                m.insert("position".into(), pick(&mut rng, &positions));
            }
            _ => {}
        }
        records.push(v);
    }
    // Parse: each is refused with its field, or accepted.
    let mut accepted = Vec::new();
    let mut listed = std::collections::HashSet::new();
    for r in &records {
        match mall_events::records::parse_record(r.to_string().as_bytes()) {
            Ok(e) => {
                if let Some(p) = e.product_id()
                    && !matches!(e, mall_events::DomainEvent::ProductListed(_))
                    && !listed.contains(p.as_str())
                {
                    continue; // its listing was refused
                }
                if let mall_events::DomainEvent::ProductListed(l) = &e {
                    listed.insert(l.product_id.as_str().to_string());
                }
                accepted.push(e);
            }
            Err(e) => assert!(e.field.is_some(), "a refusal names its field: {e} for {r}"),
        }
    }
    assert!(accepted.len() > 50 && accepted.len() < records.len(), "{} of {}", accepted.len(), records.len());
    // The same events, in the same order, into both stores.
    let dir = tempfile::tempdir().unwrap();
    let embedded: std::sync::Arc<dyn mall_events::EventStore> =
        std::sync::Arc::new(mall_events::EmbeddedStore::open(mall_events::EmbeddedConfig::new(dir.path())).unwrap());
    let pg = support::pg::Postgres::new().await;
    let postgres: std::sync::Arc<dyn mall_events::EventStore> = std::sync::Arc::new(
        mall_events::postgres::PgStore::connect(mall_events::postgres::PgConfig::new(&pg.url)).await.unwrap(),
    );
    for e in &accepted {
        let id = e.signal_id().unwrap_or_else(uuid::Uuid::now_v7);
        let tags = e.product_id().map(|_| vec!["district:toys".to_string()]).unwrap_or_default();
        let ne = mall_events::NewEvent::from_domain(e, id, tags).unwrap();
        for store in [&embedded, &postgres] {
            store.append(&e.stream_id(), mall_events::ExpectedVersion::Any, vec![ne.clone()]).await.unwrap();
        }
    }
    let (db, conn) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let mut compared = 0;
    for projection in mall::readside::projections() {
        let memory = MemorySink::new(projection.tables());
        catch_up(&*embedded, &*projection, &memory, 100, |_| {}).await.unwrap();
        let sink =
            PgSink::open(&pg.url, projection.name(), projection.version(), projection.tables(), false).await.unwrap();
        catch_up(&*postgres, &*projection, &sink, 100, |_| {}).await.unwrap();
        assert!(mall_projections::runner::Sink::parked(&sink).await.unwrap().is_empty(), "nothing accepted is refused");
        for t in projection.tables() {
            let (left, _) = memory.table(t.name);
            let sql = format!("SELECT row_to_json(r)::text FROM {} r ORDER BY {}", t.name, t.key);
            let right: Vec<Value> =
                db.query(&sql, &[]).await.unwrap().iter().map(|r| serde_json::from_str(r.get(0)).unwrap()).collect();
            assert_eq!(left.len(), right.len(), "{}: rows", t.name);
            for (a, b) in left.iter().zip(&right) {
                for (k, va) in a {
                    // Times the store stamps (an event's `recorded_at`) differ between two logs.
                    if (t.name, k.as_str()) == ("copy_history", "at") && a["source"] != "decision" {
                        continue;
                    }
                    assert!(same(va, &b[k]), "{}.{k}: memory {va} postgres {}", t.name, b[k]);
                }
                compared += 1;
            }
        }
    }
    assert!(compared > 50, "{compared} rows compared");
}

/// Values equal across backends: numbers as numbers, times as times, the rest as JSON.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
        }
        (Value::String(x), Value::String(y)) => {
            x == y
                || matches!(
                    (x.parse::<chrono::DateTime<chrono::Utc>>(), y.parse::<chrono::DateTime<chrono::Utc>>()),
                    (Ok(p), Ok(q)) if p == q
                )
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Writes a synthetic mall (`mall debug synth`) and imports it into `store`.
fn import_synthetic(store: &Store, dir: &std::path::Path, args: &[&str]) {
    let (code, out, err) = mall(store, &[&["debug", "synth"], args].concat());
    assert_eq!(code, 0, "{err}");
    let file = dir.join(format!("synth-{}.ndjson", uuid::Uuid::now_v7()));
    std::fs::write(&file, out).unwrap();
    let (code, out, err) = mall(store, &["import", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
}

/// The projections' status once every one has applied the whole log.
async fn caught_up(c: &reqwest::Client, s: &Server) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        // Against the log's head as the server sees it (a projection still starting reports no lag).
        let (_, health) = get(c, s.url("/healthz")).await;
        let head = health["log_position"].as_u64().unwrap_or(u64::MAX);
        let (status, body) = get_as(c, s.url("/api/admin/projections"), ADMIN).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let projections = body["projections"].as_array().unwrap().clone();
        if projections.iter().all(|p| p["lag"]["positions"] == 0 && p["lag"]["checkpoint"].as_u64() >= Some(head)) {
            return projections;
        }
        assert!(std::time::Instant::now() < deadline, "the read side did not catch up: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a rebuild from the whole log finds different from the live tables (none, when right).
async fn rebuild_differences(c: &reqwest::Client, s: &Server) -> Vec<Value> {
    let (status, body) = post(c, s.url("/api/admin/projections/rebuild"), ADMIN, &json!({"verify": true})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rebuilt = body["rebuilt"].as_array().unwrap();
    assert_eq!(rebuilt.len(), mall::readside::projections().len(), "{body}");
    rebuilt.iter().flat_map(|r| r["differences"].as_array().unwrap().clone()).collect()
}

/// A restart on the embedded store loads each in-memory projection from the image saved at
/// shutdown and folds only the log after it — and serves exactly what a rebuild from the whole
/// log gives. Images (and the saved catalog) of another log are ignored.
#[tokio::test]
async fn a_restart_reads_the_tables_from_their_images_and_ignores_those_of_another_log() {
    let (store, dir) = Store::embedded();
    let small = ["--districts", "3", "--products", "40", "--shoppers", "30", "--signals", "3000", "--seed", "1"];
    import_synthetic(&store, dir.path(), &small);
    let c = client();
    let mut s = Server::start(&store, &[]);
    let first = caught_up(&c, &s).await;
    assert!(first.iter().all(|p| p["image"].is_null()), "no image yet: {first:?}");
    s.stop();
    let images = dir.path().join("data/snapshots/readside");
    for name in [
        "catalog.v2.image",
        "optimization.v1.image",
        "personalization.v3.image",
        "autonomous.v1.image",
        "health.v1.image",
        "evolution.v2.image",
        "merchandising.v2.image",
        "analytics.v1.image",
        "social.v1.image",
        "plugins.v2.image",
        "customers.v1.image",
    ] {
        assert!(images.join(name).exists(), "{name} saved at shutdown");
    }
    let stopped_at: Vec<Value> = first.iter().map(|p| p["lag"]["log_position"].clone()).collect();

    let s = Server::start(&store, &[]);
    let second = caught_up(&c, &s).await;
    for p in &second {
        let at =
            p["image"]["checkpoint"].as_u64().unwrap_or_else(|| panic!("{} started from its image: {p}", p["name"]));
        assert!(at >= stopped_at[0].as_u64().unwrap(), "{p}");
    }
    // More signals after the restart, then the whole log folded anew: the same rows.
    let (status, body) = post(
        &c,
        s.url("/api/signals"),
        INGEST,
        &json!({"signals": [signal("product_viewed", "p1", "s1"), signal("added_to_cart", "p2", "s2")]}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    caught_up(&c, &s).await;
    assert_eq!(rebuild_differences(&c, &s).await, Vec::<Value>::new());
    drop(s);

    // Another log (five districts, longer) behind the same snapshot directory.
    let other = Store::Embedded(dir.path().join("other"));
    let big = ["--districts", "5", "--products", "60", "--shoppers", "40", "--signals", "6000", "--seed", "2"];
    import_synthetic(&other, dir.path(), &big);
    let snapshots = dir.path().join("data/snapshots");
    let s = Server::start(&other, &[("MALL_SNAPSHOT_DIR", snapshots.to_str().unwrap())]);
    let third = caught_up(&c, &s).await;
    assert!(third.iter().all(|p| p["image"].is_null()), "images of another log are ignored: {third:?}");
    let (_, districts) = get(&c, s.url("/api/districts")).await;
    assert_eq!(districts["districts"].as_array().unwrap().len(), 5, "{districts}");
    // The catalog the ingest checks against is this log's too: d4 exists here only.
    let (status, body) = post(&c, s.url("/api/products"), ADMIN, &product("new-1", "d4", "Kite", "A kite.")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(rebuild_differences(&c, &s).await, Vec::<Value>::new());
}

/// Racing retries: two requests carrying overlapping signals, sent at once, again and again.
/// Every signal is stored once, and the two answers' `duplicates` add up to exactly the overlap
/// (each signal is new to exactly one of them).
async fn racing_retries_count_each_duplicate_once(store: Store) {
    let s = Server::start(&store, &[]);
    let c = client();
    let (status, _) = post(&c, s.url("/api/districts"), ADMIN, &district("toys", "warm")).await;
    assert_eq!(status, StatusCode::CREATED);
    for p in 0..4 {
        let (status, _) =
            post(&c, s.url("/api/products"), ADMIN, &product(&format!("p{p}"), "toys", "Kite", "A kite.")).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let mut stored = 0;
    for round in 0..20 {
        // 40 signals over four products (four streams): A has 0..30, B has 10..40.
        let signals: Vec<Value> =
            (0..40).map(|i| signal("product_viewed", &format!("p{}", i % 4), &format!("s{round}-{i}"))).collect();
        let (a, b) = (json!({"signals": signals[..30]}), json!({"signals": signals[10..]}));
        let ((sa, ra), (sb, rb)) =
            tokio::join!(post(&c, s.url("/api/signals"), INGEST, &a), post(&c, s.url("/api/signals"), INGEST, &b));
        assert_eq!((sa, sb), (StatusCode::ACCEPTED, StatusCode::ACCEPTED), "{ra} {rb}");
        let duplicates = ra["duplicates"].as_u64().unwrap() + rb["duplicates"].as_u64().unwrap();
        assert_eq!(duplicates, 20, "round {round}: the overlap counted once: {ra} {rb}");
        stored += 40;
    }
    // Each signal once: the products' views add up to the signals sent.
    let (_, health) = get(&c, s.url("/healthz")).await;
    let at = health["log_position"].as_u64().unwrap();
    let mut views = 0;
    for p in 0..4 {
        let (status, body) = get(&c, s.url(&format!("/api/products/p{p}?min_position={at}"))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        views += body["metrics"]["total"]["views"].as_u64().unwrap();
    }
    assert_eq!(views, stored);
}

support::on_both_stores!(racing_retries_count_each_duplicate_once);
