//! End to end over HTTP against a real `mall serve` process, on the embedded store and on
//! PostgreSQL: the catalog, signal ingest and its refusals, a weak product's copy rewritten,
//! tested and kept, the history and `mall audit` explaining it, `mall replay --verify`
//! reproducing every decision, and kill -9 in the middle of ingest losing nothing acknowledged.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use mall_events::EventStore;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::http::*;
use support::server::*;

async fn signals(c: &reqwest::Client, s: &Server, batch: Vec<Value>) -> u64 {
    let mut last = 0;
    for chunk in batch.chunks(1_000) {
        let (status, body) = post(c, s.url("/api/signals"), INGEST, &json!({ "signals": chunk })).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        last = body["position"].as_u64().unwrap();
    }
    last
}

/// Polls `path` until `pred` holds of its JSON.
async fn until(c: &reqwest::Client, s: &Server, path: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, body) = get(c, s.url(path)).await;
        if status == StatusCode::OK && pred(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; last answer {status}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The whole story on one store.
async fn weak_copy_is_rewritten_tested_kept_and_explained(store: Store) {
    // The learning cycle every second, so that the kept rewrite becomes an insight in time.
    let s = Server::start(&store, &[("MALL_JOBS", "learning_cycle=1")]);
    let c = client();

    // The catalog: tokens, scopes and validation first.
    let (status, body) = post(&c, s.url("/api/districts"), INGEST, &district("toys", "playful")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let r = c.post(s.url("/api/districts")).json(&district("toys", "playful")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (status, body) = post(&c, s.url("/api/districts"), "wrong", &district("toys", "playful")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let mut bad = district("toys", "playful");
    bad["personality"]["mood"] = json!("x");
    let (status, body) = post(&c, s.url("/api/districts"), ADMIN, &bad).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("personality.mood")), "{body}");
    let (status, body) = post(&c, s.url("/api/districts"), ADMIN, &district("toys", "playful")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = post(&c, s.url("/api/districts"), ADMIN, &district("toys", "playful")).await;
    assert_eq!(status, StatusCode::OK, "an identical retry is acknowledged, not stored twice");
    let (status, body) = post(&c, s.url("/api/districts"), ADMIN, &district("toys", "grumpy")).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::CONFLICT, Some("slug")), "{body}");

    let mut bad = product("p0", "toys", "Train", "Beech train.");
    bad["price"] = json!("12.3456789");
    let (status, body) = post(&c, s.url("/api/products"), ADMIN, &bad).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("price")), "{body}");
    let (status, body) =
        post(&c, s.url("/api/products"), ADMIN, &product("p0", "nowhere", "Train", "Beech train.")).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("district")), "{body}");
    let peers = ["p1", "p2", "p3", "p4", "p5"];
    for p in peers {
        let (status, body) = post(
            &c,
            s.url("/api/products"),
            ADMIN,
            &product(p, "toys", "Wooden train", "A beech train with four cars and magnetic hitches."),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) =
        post(&c, s.url("/api/products"), ADMIN, &product("weak", "toys", "Stacking rings", "Rings.")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Edits: any listed field, by the admin only; the product must exist.
    let put = |path: &str, token: &str, body: Value| c.put(s.url(path)).bearer_auth(token).json(&body).send();
    let r = put("/api/products/p5", INGEST, json!({"stock": 3})).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = put("/api/products/nope", ADMIN, json!({"stock": 3})).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = put("/api/products/p5", ADMIN, json!({"stock": -3})).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["field"], "stock");
    let r = put("/api/products/p5", ADMIN, json!({"product_id": "p4", "stock": 3})).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = put("/api/products/p5", ADMIN, json!({"stock": 3, "title": "Wooden train, large"})).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let pos = r.json::<Value>().await.unwrap()["position"].as_u64().unwrap();
    let (_, p5) = get(&c, s.url(&format!("/api/products/p5?min_position={pos}"))).await;
    assert_eq!((p5["stock"].as_u64(), p5["title"].as_str()), (Some(3), Some("Wooden train, large")), "{p5}");

    // The admin trigger: the actor decides now; scoped and validated like the rest.
    let (status, _) = post(&c, s.url("/api/autonomous/products"), INGEST, &json!({"product_id": "p1"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = post(&c, s.url("/api/autonomous/products"), ADMIN, &json!({"product_id": "nope"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = post(&c, s.url("/api/autonomous/products"), ADMIN, &json!({"product": "p1"})).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("product")), "{body}");
    let (status, body) = post(&c, s.url("/api/autonomous/products"), ADMIN, &json!({"product_id": "p1"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    // Signals: a bad item refuses the whole batch, naming it; nothing of it is written.
    let mut batch = vec![signal("product_viewed", "p1", "a"), signal("product_viewed", "p1", "b")];
    batch[1]["dwell_ms"] = json!("long");
    let (status, body) = post(&c, s.url("/api/signals"), INGEST, &json!({ "signals": batch })).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("signals[1].dwell_ms")), "{body}");
    batch[1] = signal("product_viewed", "nope", "b");
    let (status, body) = post(&c, s.url("/api/signals"), INGEST, &json!({ "signals": batch })).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("signals[1].product_id")), "{body}");
    batch[1] = signal("product_viewed", "p1", "b");
    batch[1]["extra"] = json!(1);
    let (status, body) = post(&c, s.url("/api/signals"), INGEST, &json!({ "signals": batch })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["field"].as_str().unwrap().starts_with("signals[1]"), "{body}");
    let (status, body) = post(&c, s.url("/api/signals"), INGEST, &json!({ "signals": [], "more": 1 })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let too_many: Vec<Value> = (0..10_001).map(|_| signal("product_viewed", "p1", "a")).collect();
    let (status, body) = post(&c, s.url("/api/signals"), INGEST, &json!({ "signals": too_many })).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("signals")), "{body}");
    // A body over the limit is refused as it arrives, naming the body.
    let huge = format!("{{\"signals\": [\"{}\"]}}", "x".repeat(17 << 20));
    let (status, _, body) =
        send(&c, reqwest::Method::POST, s.url("/api/signals"), Some(INGEST), Some(huge.into_bytes())).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("body")), "{body}");
    // The valid first item of every refused batch was not written: posted now, it is new.
    let (status, body) = post(&c, s.url("/api/signals"), INGEST, &json!({ "signals": [batch[0].clone()] })).await;
    assert_eq!(
        (status, body["duplicates"].as_u64()),
        (StatusCode::ACCEPTED, Some(0)),
        "refused batches write nothing: {body}"
    );

    // A retried batch is acknowledged without counting twice; a known id with other content is refused.
    let batch = vec![signal("product_viewed", "p1", "a"), signal("product_viewed", "p2", "a")];
    let (status, first) = post(&c, s.url("/api/signals"), INGEST, &json!({ "signals": batch })).await;
    assert_eq!(
        (status, first["accepted"].as_u64(), first["duplicates"].as_u64()),
        (StatusCode::ACCEPTED, Some(2), Some(0))
    );
    let (status, again) = post(&c, s.url("/api/signals"), INGEST, &json!({ "signals": batch })).await;
    assert_eq!((status, again["duplicates"].as_u64()), (StatusCode::ACCEPTED, Some(2)), "{again}");
    assert_eq!(again["position"], first["position"]);
    let mut changed = batch.clone();
    changed[1]["dwell_ms"] = json!(1);
    let (status, body) = post(&c, s.url("/api/signals"), INGEST, &json!({ "signals": changed })).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("signals[1].id")), "{body}");

    // Peers convert at about 30%; the weak product at 1%.
    let mut batch = Vec::new();
    for p in peers {
        for i in 0..100 {
            let shopper = format!("{p}-s{i}");
            batch.push(signal("product_viewed", p, &shopper));
            if i % 10 < 3 {
                batch.push(signal("added_to_cart", p, &shopper));
            }
        }
    }
    let pos = signals(&c, &s, batch).await;
    until(&c, &s, &format!("/api/products/p1?min_position={pos}"), "the peers' signals", |b| {
        b["metrics"]["total"]["views"] == 102
    })
    .await;
    let mut batch = Vec::new();
    for i in 0..100 {
        let shopper = format!("w-s{i}");
        batch.push(signal("product_viewed", "weak", &shopper));
        if i == 0 {
            batch.push(signal("added_to_cart", "weak", &shopper));
        }
    }
    signals(&c, &s, batch).await;

    // The rewrite: an experiment starts with the old copy as control.
    let p = until(&c, &s, "/api/products/weak", "an experiment", |b| b["experiment"].is_object()).await;
    let experiment_id = p["experiment"]["experiment_id"].clone();
    // In public the history says what changed, when and why in words; the internals (evidence,
    // prompt, raw output, verdicts) need the admin token, and a wrong token is refused.
    let public = get(&c, s.url("/api/products/weak/history")).await.1;
    let change = public["changes"].as_array().unwrap().iter().find(|c| c["rule"] == "weak_description").unwrap();
    assert_eq!(change["status"], "testing", "{change}");
    assert!(change["reason"].as_str().unwrap().contains("views"), "{change}");
    for internal in ["generation", "evidence", "policy", "rejected_reason"] {
        assert!(change.get(internal).is_none(), "{internal} is public: {change}");
    }
    assert!(!public.to_string().contains("product_facts"), "no prompt in public: {public}");
    let (status, _) = get_as(&c, s.url("/api/products/weak/history"), INGEST).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = get_as(&c, s.url("/api/products/weak/history"), "wrong").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let h = get_as(&c, s.url("/api/products/weak/history"), ADMIN).await.1;
    let rewrite = h["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["rule"] == "weak_description")
        .expect("a weak_description decision")
        .clone();
    assert_eq!(rewrite["status"], "testing");
    assert_eq!(rewrite["old"]["text"], "Rings.");
    assert!(rewrite["evidence"]["metrics"]["window_views"].as_f64().unwrap() >= 40.0, "{rewrite}");
    let challenger = rewrite["new"]["text"].as_str().unwrap().to_string();
    assert_ne!(challenger, "Rings.");

    // Shoppers see their arm's copy, the same every time; the challenger converts far better.
    let mut batch = Vec::new();
    let mut arms = [0, 0];
    for i in 0..700 {
        let shopper = format!("x{i}");
        let (_, b) = get(&c, s.url(&format!("/api/products/weak?shopper={shopper}"))).await;
        let (_, b2) = get(&c, s.url(&format!("/api/products/weak?shopper={shopper}"))).await;
        assert_eq!(b["description"], b2["description"], "a shopper always sees the same copy");
        let challenger_arm = b["experiment"]["arm"] == "challenger";
        assert_eq!(challenger_arm, b["description"] == challenger.as_str());
        arms[challenger_arm as usize] += 1;
        batch.push(signal("product_viewed", "weak", &shopper));
        if (challenger_arm && i % 5 < 2) || (!challenger_arm && i % 50 == 0) {
            batch.push(signal("added_to_cart", "weak", &shopper));
        }
    }
    assert!(arms[0] > 250 && arms[1] > 250, "the split is about even: {arms:?}");
    signals(&c, &s, batch).await;

    until(&c, &s, "/api/products/weak/history", "the experiment's conclusion", |h| {
        h["changes"].as_array().unwrap().iter().any(|c| c["rule"] == "weak_description" && c["status"] == "kept")
    })
    .await;
    let h = get_as(&c, s.url("/api/products/weak/history"), ADMIN).await.1;
    let kept = h["changes"].as_array().unwrap().iter().find(|c| c["rule"] == "weak_description").unwrap();
    let concluded = &kept["experiment"]["concluded"];
    assert_eq!(kept["experiment"]["experiment_id"], experiment_id);
    assert_eq!(concluded["outcome"], "challenger_won", "{concluded}");
    assert!(concluded["prob_challenger_better"].as_f64().unwrap() >= 0.95);
    assert!(
        concluded["control"]["views"].as_u64().unwrap() >= 200
            && concluded["challenger"]["views"].as_u64().unwrap() >= 200
    );
    assert!(kept["generation"]["verdicts"].as_array().unwrap().iter().all(|v| v["passed"] == true));
    assert!(!kept["generation"]["raw_output"].as_str().unwrap().is_empty());
    assert_eq!(h["description"], challenger.as_str());
    assert!(
        h["versions"].as_array().unwrap().iter().any(|v| v["text"] == challenger.as_str() && v["source"] == "decision")
    );
    let p = until(&c, &s, "/api/products/weak", "the new copy", |b| b["experiment"].is_null()).await;
    assert_eq!(p["description"], challenger.as_str());
    assert!(p["copy_version"].as_u64().unwrap() >= 1);

    // Product intelligence's tables: the decision, the experiment and the copy it kept.
    let pos = get(&c, s.url("/healthz")).await.1["log_position"].as_u64().unwrap();
    let intelligence = format!("/api/autonomous/products?product_id=weak&min_position={pos}");
    let (_, public) = get(&c, s.url(&intelligence)).await;
    assert!(public["log"].as_array().unwrap().iter().all(|l| l.get("detail").is_none()), "{public}");
    let (status, i) = get_as(&c, s.url(&intelligence), ADMIN).await;
    assert_eq!(status, StatusCode::OK, "{i}");
    let x = i["experiments"].as_array().unwrap().iter().find(|x| x["experiment_id"] == experiment_id).expect("{i}");
    assert_eq!((x["status"].as_str(), x["challenger"].as_str()), (Some("challenger_won"), Some(challenger.as_str())));
    assert!(i["copy_history"].as_array().unwrap().iter().any(|c| c["outcome"] == "kept"
        && c["content"]["text"] == challenger.as_str()
        && c["experiment_id"] == experiment_id));
    assert!(
        i["log"].as_array().unwrap().iter().any(|l| l["kind"] == "decided"
            && l["detail"]["rule"] == "weak_description"
            && l["detail"]["evidence"]["metrics"]["window_views"].as_f64() >= Some(40.0)),
        "{i}"
    );
    assert!(i["actor"]["metrics"]["total"]["views"].as_u64().unwrap() >= 800, "{i}");
    let (_, all) = get(&c, s.url("/api/autonomous/products?limit=5")).await;
    assert_eq!(all["log"].as_array().unwrap().len(), 5, "{all}");
    let (status, body) = get(&c, s.url("/api/autonomous/products?limit=0")).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("limit")));

    // The learning cycle: the kept rewrite is an insight for its district and diagnosis.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let insight = loop {
        let (_, core) = get_as(&c, s.url("/api/autonomous"), ADMIN).await;
        let found = core["insights"].as_array().and_then(|i| {
            i.iter().find(|i| i["key"] == "product_intelligence/rewrite_description/toys/weak_description").cloned()
        });
        if let Some(i) = found {
            break i;
        }
        assert!(Instant::now() < deadline, "no insight recorded: {core}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(insight["tried"].as_u64() >= Some(1) && insight["helped"].as_u64() >= Some(1), "{insight}");
    assert!(insight["lift"].as_f64().unwrap() > 0.0, "the kept copy converted better: {insight}");
    assert!(insight["evidence"].as_array().unwrap().contains(&experiment_id), "{insight}");

    // The CLI, beside the running server: audit explains, replay reproduces every decision.
    let (code, out, err) = mall(&store, &["audit", "product", "weak"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("weak_description") && out.contains("kept (the challenger won)") && out.contains("guardrail"),
        "{out}"
    );
    let (code, out, err) = mall(&store, &["replay", "product-weak", "--verify"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(" 0 not reproduced"), "{out}");
    let (code, out, _) = mall(&store, &["replay", "shopper-x1", "--json"]);
    assert_eq!(code, 0);
    let replayed: Value = serde_json::from_str(&out).unwrap();
    assert!(replayed["state"]["districts"]["toys"].as_f64().unwrap() > 0.0, "{replayed}");
    let (code, _, err) = mall(&store, &["replay", "product-weak", "--until", "not-a-time"]);
    assert_eq!(code, 1);
    assert!(err.contains("--until"), "{err}");
}

support::on_both_stores!(weak_copy_is_rewritten_tested_kept_and_explained);

support::on_both_stores!(kill_9_during_ingest_loses_nothing_acknowledged);

/// Opens the server's log directly (the server is dead).
async fn open_log(store: &Store) -> std::sync::Arc<dyn EventStore> {
    match store {
        Store::Embedded(data) => {
            std::sync::Arc::new(mall_events::EmbeddedStore::open(mall_events::EmbeddedConfig::new(data)).unwrap())
        }
        Store::Postgres { url, .. } => std::sync::Arc::new(
            mall_events::postgres::PgStore::connect(mall_events::postgres::PgConfig::new(url)).await.unwrap(),
        ),
    }
}

/// kill -9 in the middle of ingest: every acknowledged signal is in the log after a restart, and
/// retrying every batch (acknowledged or not) counts nothing twice.
async fn kill_9_during_ingest_loses_nothing_acknowledged(store: Store) {
    let seed: u64 = std::env::var("MALL_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("seed {seed}");
    let c = client();
    let mut all_batches: Vec<Vec<Value>> = Vec::new();
    for round in 0..3u64 {
        let mut s = Server::start(&store, &[]);
        if round == 0 {
            post(&c, s.url("/api/districts"), ADMIN, &district("toys", "playful")).await;
            for p in ["k1", "k2", "k3"] {
                post(&c, s.url("/api/products"), ADMIN, &product(p, "toys", "Train", "A beech train.")).await;
            }
        }
        // Writers post batches until the server dies under them.
        let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<uuid::Uuid>::new()));
        let mut writers = Vec::new();
        let mut batches_tx = Vec::new();
        for w in 0..4u64 {
            let (c, url, acked) = (c.clone(), s.url("/api/signals"), acked.clone());
            let batches: Vec<Vec<Value>> = (0..100)
                .map(|b| {
                    (0..50)
                        .map(|i| signal("product_viewed", ["k1", "k2", "k3"][(i + b) % 3], &format!("w{w}-{b}-{i}")))
                        .collect()
                })
                .collect();
            batches_tx.extend(batches.clone());
            writers.push(tokio::spawn(async move {
                for batch in batches {
                    let r = c.post(&url).bearer_auth(INGEST).json(&json!({ "signals": batch })).send().await;
                    match r {
                        Ok(r) if r.status() == StatusCode::ACCEPTED => {
                            acked
                                .lock()
                                .unwrap()
                                .extend(batch.iter().map(|s| s["id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap()));
                        }
                        _ => return,
                    }
                }
            }));
        }
        let wait = 100 + (seed.wrapping_mul(round + 7) % 900);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        s.kill9();
        for w in writers {
            let _ = w.await;
        }
        all_batches.extend(batches_tx);
        let acked = acked.lock().unwrap().clone();
        println!("round {round}: killed after {wait} ms with {} signals acknowledged", acked.len());
        let log = open_log(&store).await;
        let found: HashSet<uuid::Uuid> =
            log.read_events_by_id(&acked).await.unwrap().into_iter().map(|e| e.event_id).collect();
        assert_eq!(found.len(), acked.len(), "seed {seed}: an acknowledged signal was lost");
        log.close().await;
    }

    // Retry everything, acknowledged or not: each signal is stored once, and the actors count
    // each view once.
    let s = Server::start(&store, &[]);
    for batch in &all_batches {
        let (status, body) = post(&c, s.url("/api/signals"), INGEST, &json!({ "signals": batch })).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let ids: HashSet<&str> = all_batches.iter().flatten().map(|s| s["id"].as_str().unwrap()).collect();
    let pos = get(&c, s.url("/healthz")).await.1["log_position"].as_u64().unwrap();
    // The actors may take longer than one read's wait to fold 100k retried signals: wait until
    // they have folded the whole log, then count.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while get(&c, s.url("/healthz")).await.1["actors_position"].as_u64().unwrap() < pos {
        assert!(std::time::Instant::now() < deadline, "seed {seed}: the actors never caught up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut views = 0;
    for p in ["k1", "k2", "k3"] {
        let (_, b) = get(&c, s.url(&format!("/api/products/{p}?min_position={pos}"))).await;
        views += b["metrics"]["total"]["views"].as_u64().unwrap();
    }
    assert_eq!(views as usize, ids.len(), "seed {seed}: every signal counted exactly once");
}
