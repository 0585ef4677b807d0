//! `mall projections status|rebuild --verify` against a running server, on the embedded store
//! (read tables in the server's memory, rebuilt through its admin API) and on PostgreSQL (read
//! tables rebuilt into shadow tables and swapped in while the server keeps following the log).

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::server::*;

async fn workload(s: &Server) {
    let c = reqwest::Client::new();
    let post = |path: &str, token: &str, body: Value| c.post(s.url(path)).bearer_auth(token).json(&body).send();
    assert!(post("/api/districts", ADMIN, district("toys", "playful")).await.unwrap().status().is_success());
    for i in 0..8 {
        let description = if i % 3 == 0 { "" } else { "A train of oiled beech with four cars and magnetic hitches." };
        let r = post("/api/products", ADMIN, product(&format!("p{i}"), "toys", "Wooden train", description)).await.unwrap();
        assert!(r.status().is_success());
    }
    for round in 0..5 {
        let batch: Vec<Value> = (0..200).map(|i| signal(if i % 7 == 0 { "added_to_cart" } else { "product_viewed" }, &format!("p{}", i % 8), &format!("s{round}-{i}"))).collect();
        assert_eq!(post("/api/signals", INGEST, json!({ "signals": batch })).await.unwrap().status(), 202);
    }
}

/// Waits until the projection has applied the whole log.
fn caught_up(store: &Store, env: &[(&str, &str)]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, out, err) = mall_with(store, &["projections", "status", "--json"], env);
        assert_eq!(code, 0, "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        let lag = &v["projections"][0]["lag"];
        if lag["positions"] == 0 && lag["checkpoint"].as_u64() > Some(0) {
            return v;
        }
        assert!(Instant::now() < deadline, "the projection never caught up: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

async fn rebuild_verifies_equal(store: Store) {
    let s = Server::start(&store, &[]);
    workload(&s).await;
    let env = [("MALL_SERVER", s.base.as_str()), ("MALL_ADMIN_TOKEN", ADMIN)];
    let status = caught_up(&store, &env);
    assert_eq!(status["projections"][0]["name"], "catalog");
    let (code, out, err) = mall_with(&store, &["projections", "rebuild", "--all", "--verify"], &env);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("catalog: verified"), "{out}");
    // The swapped-in projection goes on following the log.
    workload_more(&s).await;
    caught_up(&store, &env);
    let (code, out, _) = mall_with(&store, &["projections", "rebuild", "catalog", "--verify"], &env);
    assert_eq!(code, 0, "{out}");
    // Bad input: no name, an unknown one, a wrong token.
    let (code, _, err) = mall_with(&store, &["projections", "rebuild"], &env);
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = mall_with(&store, &["projections", "rebuild", "nope"], &env);
    assert!(code == 1 && err.contains("no projection"), "{err}");
}

async fn workload_more(s: &Server) {
    let c = reqwest::Client::new();
    let batch: Vec<Value> = (0..100).map(|i| signal("product_viewed", &format!("p{}", i % 8), "late")).collect();
    let r = c.post(s.url("/api/signals")).bearer_auth(INGEST).json(&json!({ "signals": batch })).send().await.unwrap();
    assert_eq!(r.status(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_rebuild_through_the_server_verifies_equal() {
    let dir = tempfile::tempdir().unwrap();
    rebuild_verifies_equal(Store::Embedded(dir.path().join("data"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rebuild_into_shadow_tables_verifies_equal() {
    let dir = tempfile::tempdir().unwrap();
    let pg = support::pg::Postgres::new().await;
    rebuild_verifies_equal(Store::Postgres { url: pg.url, snapshots: dir.path().join("snap") }).await;
}
