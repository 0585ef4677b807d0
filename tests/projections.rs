//! `mall projections status|rebuild --verify` against a running server, on the embedded store
//! (read tables in the server's memory, rebuilt through its admin API) and on PostgreSQL (read
//! tables rebuilt into shadow tables and swapped in while the server keeps following the log).

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::server::*;

async fn workload(s: &Server) {
    let c = reqwest::Client::new();
    let post = |path: &str, token: &str, body: Value| c.post(s.url(path)).bearer_auth(token).json(&body).send();
    assert!(post("/api/districts", ADMIN, district("toys", "playful")).await.unwrap().status().is_success());
    for i in 0..8 {
        let description = if i % 3 == 0 { "" } else { "A train of oiled beech with four cars and magnetic hitches." };
        let r =
            post("/api/products", ADMIN, product(&format!("p{i}"), "toys", "Wooden train", description)).await.unwrap();
        assert!(r.status().is_success());
    }
    for round in 0..5 {
        let batch: Vec<Value> = (0..200)
            .map(|i| {
                signal(
                    if i % 7 == 0 { "added_to_cart" } else { "product_viewed" },
                    &format!("p{}", i % 8),
                    &format!("s{round}-{i}"),
                )
            })
            .collect();
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
    rebuild_without_waiting(&s, &store, &env).await;
    // Bad input: no name, an unknown one, a wrong token.
    let (code, _, err) = mall_with(&store, &["projections", "rebuild"], &env);
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = mall_with(&store, &["projections", "rebuild", "nope"], &env);
    assert!(code == 1 && err.contains("no projection"), "{err}");
}

/// A rebuild asked for without waiting: 202 at once, its progress and outcome in the status —
/// every projection rebuilt up to the log's head as of the request, and equal to the live one.
async fn rebuild_without_waiting(s: &Server, store: &Store, env: &[(&str, &str)]) {
    workload_more(s).await;
    let head = caught_up(store, env)["projections"][0]["lag"]["log_position"].as_u64().unwrap();
    let c = reqwest::Client::new();
    let r = c
        .post(s.url("/api/admin/projections/rebuild"))
        .bearer_auth(ADMIN)
        .json(&json!({"verify": true, "wait": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["rebuilding"].as_array().unwrap().len(), mall::readside::projections().len(), "{body}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status: Value =
            c.get(s.url("/api/admin/projections")).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
        let ps = status["projections"].as_array().unwrap();
        let done = |p: &Value| p["rebuild"]["running"] == false && p["rebuild"]["position"].as_u64() >= Some(head);
        if ps.iter().all(done) {
            for p in ps {
                assert!(p["rebuild"]["error"].is_null() && p["rebuild"]["differences"] == json!([]), "{p}");
            }
            return;
        }
        assert!(Instant::now() < deadline, "the rebuild asked for did not end: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// On PostgreSQL a server rebuilds its read tables over HTTP too, as the CLI does against the
/// database: the rebuilt tables are compared with the live ones (a row changed behind the
/// projection's back is found, and set right by the swap), each rebuild's progress ends at its
/// target in the status, and a projection another process is rebuilding is refused — 409 over
/// HTTP, a one-line error from the CLI — before anything is touched.
#[tokio::test]
async fn a_server_on_postgres_rebuilds_over_http_and_one_process_at_a_time() {
    let (store, _dir) = Store::postgres().await;
    let Store::Postgres { url, .. } = &store else { unreachable!() };
    let s = Server::start(&store, &[]);
    workload(&s).await;
    let env = [("MALL_SERVER", s.base.as_str()), ("MALL_ADMIN_TOKEN", ADMIN)];
    caught_up(&store, &env);
    let (db, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let c = reqwest::Client::new();
    let rebuild = |body: Value| c.post(s.url("/api/admin/projections/rebuild")).bearer_auth(ADMIN).json(&body).send();

    // Another process rebuilding the catalog holds its lock (class "mall", key the name's hash).
    db.execute("SELECT pg_advisory_lock(1835101292, hashtext('catalog'))", &[]).await.unwrap();
    let r = rebuild(json!({"name": "catalog", "verify": true})).await.unwrap();
    assert_eq!(r.status(), 409);
    let r = rebuild(json!({"name": "catalog", "wait": false})).await.unwrap();
    assert_eq!(r.status(), 409, "refused at once when not waiting too");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["field"], "name", "{body}");
    assert!(body["message"].as_str().unwrap().contains("catalog is being rebuilt already"), "{body}");
    let (code, out, err) = mall_with(&store, &["projections", "rebuild", "catalog"], &env);
    assert!(code == 1 && err.contains("catalog is being rebuilt already"), "{out}\n{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let shadow: Option<String> =
        db.query_one("SELECT to_regclass('products__rebuild')::text", &[]).await.unwrap().get(0);
    assert_eq!(shadow, None, "a refused rebuild touched nothing");
    // The server shows the other process's rebuild, and who runs it, in its status.
    let holder: i32 = db.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    let status: Value =
        c.get(s.url("/api/admin/projections")).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
    for p in status["projections"].as_array().unwrap() {
        let r = &p["rebuild"];
        if p["name"] == "catalog" {
            assert_eq!(r["running"], true, "{p}");
            assert_eq!(r["elsewhere"]["pid"], holder, "{p}");
            assert_eq!(r["position"], 0, "no shadow table yet: {p}");
            assert_eq!(r["target"], p["lag"]["log_position"], "{p}");
        } else {
            assert_eq!((&r["running"], &r["elsewhere"]), (&json!(false), &Value::Null), "{p}");
        }
    }
    db.execute("SELECT pg_advisory_unlock(1835101292, hashtext('catalog'))", &[]).await.unwrap();

    // While a rebuild runs, an operator sees it among the connections, holding its lock.
    let watcher = {
        let url = url.clone();
        tokio::spawn(async move {
            let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                let seen: i64 = db
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid \
                          WHERE a.application_name = 'mall-rebuild' AND l.locktype = 'advisory' AND l.granted",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                if seen > 0 {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            false
        })
    };
    // A live row changed behind the projection's back.
    let changed = db.execute("UPDATE products SET title = 'tampered' WHERE product_id = 'p1'", &[]).await.unwrap();
    assert_eq!(changed, 1);
    let head = {
        let r = c.get(s.url("/healthz")).send().await.unwrap();
        r.json::<Value>().await.unwrap()["log_position"].as_u64().unwrap()
    };
    let r = rebuild(json!({"verify": true})).await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let rebuilt = body["rebuilt"].as_array().unwrap();
    assert_eq!(rebuilt.len(), mall::readside::projections().len(), "{body}");
    for p in rebuilt {
        assert!(p["checkpoint"].as_u64().unwrap() >= head, "{p}");
        let expected = if p["name"] == "catalog" { json!(["products: p1 differs"]) } else { json!([]) };
        assert_eq!(p["differences"], expected, "{p}");
    }
    assert!(watcher.await.unwrap(), "the rebuild's connection was not seen holding its lock");
    let title: String = db.query_one("SELECT title FROM products WHERE product_id = 'p1'", &[]).await.unwrap().get(0);
    assert_eq!(title, "Wooden train", "the swap put the rebuilt row in");
    let status: Value =
        c.get(s.url("/api/admin/projections")).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
    for p in status["projections"].as_array().unwrap() {
        let r = &p["rebuild"];
        assert!(r["running"] == false && r["error"].is_null() && r["elsewhere"].is_null(), "{p}");
        assert!(r["position"].as_u64().unwrap() >= head && r["position"] == r["target"], "{p}");
    }
    // The catalog, rebuilt once more, equals the live tables.
    let r = rebuild(json!({"name": "catalog", "verify": true})).await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["rebuilt"][0]["differences"], json!([]), "{body}");
}

async fn workload_more(s: &Server) {
    let c = reqwest::Client::new();
    let batch: Vec<Value> = (0..100).map(|i| signal("product_viewed", &format!("p{}", i % 8), "late")).collect();
    let r = c.post(s.url("/api/signals")).bearer_auth(INGEST).json(&json!({ "signals": batch })).send().await.unwrap();
    assert_eq!(r.status(), 202);
}

support::on_both_stores!(rebuild_verifies_equal);

/// A rebuild while shoppers read the rankings: no request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_during_steady_reads_fails_no_request() {
    for (store, _dir) in stores().await {
        // The readers all come from one address and read as fast as the server answers: no
        // limit a second, so that what fails is the rebuild's doing, not the rate limit's.
        let s = Server::start(&store, &[("MALL_READ_RATE", "0")]);
        workload(&s).await;
        let env = [("MALL_SERVER", s.base.as_str()), ("MALL_ADMIN_TOKEN", ADMIN)];
        caught_up(&store, &env);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut readers = Vec::new();
        for r in 0..4 {
            let (base, stop) = (s.base.clone(), stop.clone());
            readers.push(tokio::spawn(async move {
                let c = reqwest::Client::new();
                let (mut ok, mut failed) = (0, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let url = format!("{base}/api/districts/toys/products?shopper=s0-{r}");
                    match c.get(url).send().await {
                        Ok(resp) if resp.status().is_success() => {
                            let v: Value = resp.json().await.unwrap();
                            if v["total"].as_u64().unwrap_or(0) > 0 { ok += 1 } else { failed.push(v.to_string()) }
                        }
                        Ok(resp) => failed.push(resp.status().to_string()),
                        Err(e) => failed.push(e.to_string()),
                    }
                }
                (ok, failed)
            }));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (code, out, err) = tokio::task::spawn_blocking({
            let store = store.clone();
            let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            move || {
                let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                mall_with(&store, &["projections", "rebuild", "--all", "--verify"], &env)
            }
        })
        .await
        .unwrap();
        assert_eq!(code, 0, "{out}\n{err}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for r in readers {
            let (ok, failed) = r.await.unwrap();
            assert!(failed.is_empty(), "failed reads during the rebuild: {failed:?}");
            assert!(ok > 0);
        }
    }
}

/// kill -9 of a server projecting into PostgreSQL at random moments of ingest, many times: each
/// restart resumes from the committed checkpoint, and the tables equal a rebuild's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_killed_at_random_points_resumes_without_applying_anything_twice() {
    let (store, _dir) = Store::postgres().await;
    let seed: u64 = rand::random();
    println!("seed {seed}");
    let c = reqwest::Client::new();
    let rounds: u64 = std::env::var("MALL_KILL_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(20);
    for round in 0..rounds {
        let mut s = Server::start(&store, &[]);
        if round == 0 {
            workload(&s).await;
        }
        let writer = {
            let (c, url) = (c.clone(), s.url("/api/signals"));
            tokio::spawn(async move {
                for b in 0..200 {
                    let batch: Vec<Value> = (0..100)
                        .map(|i| signal("product_viewed", &format!("p{}", i % 8), &format!("k{round}-{b}-{i}")))
                        .collect();
                    if c.post(&url).bearer_auth(INGEST).json(&json!({ "signals": batch })).send().await.is_err() {
                        return;
                    }
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(200 + (seed.wrapping_mul(round + 3) % 600))).await;
        s.kill9();
        let _ = writer.await;
    }
    let s = Server::start(&store, &[]);
    let env = [("MALL_SERVER", s.base.as_str()), ("MALL_ADMIN_TOKEN", ADMIN)];
    caught_up(&store, &env);
    let (code, out, err) = mall_with(&store, &["projections", "rebuild", "--all", "--verify"], &env);
    assert_eq!(code, 0, "seed {seed}: {out}\n{err}");
    for p in ["catalog", "personalization", "optimization"] {
        assert!(out.contains(&format!("{p}: verified")), "seed {seed}: {out}");
    }
}

/// Both stores, each with what keeps it alive for the test.
async fn stores() -> Vec<(Store, tempfile::TempDir)> {
    vec![Store::embedded(), Store::postgres().await]
}
