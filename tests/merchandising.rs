//! Merchandising rules end to end over HTTP, on both stores: the engine's sweep writes rules by
//! itself with reasons — a featured product pinned, a high converter boosted, an empty shelf
//! hidden — and district listings name the rules that acted on each product; an admin's rules
//! (validated field by field) boost, hide and expire with their window; the weights of the score
//! are configuration.

mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::http::*;
use support::server::*;

async fn listing(c: &reqwest::Client, s: &Server, min: u64) -> Vec<Value> {
    let (code, body) = get(c, s.url(&format!("/api/districts/toys/products?limit=100&min_position={min}"))).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body["products"].as_array().unwrap().clone()
}

fn ids(list: &[Value]) -> Vec<&str> {
    list.iter().map(|p| p["product_id"].as_str().unwrap()).collect()
}

fn rules_of<'a>(list: &'a [Value], id: &str) -> Vec<&'a str> {
    let p = list.iter().find(|p| p["product_id"] == id).unwrap_or_else(|| panic!("{id} listed"));
    p["rules"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect()
}

async fn overview(c: &reqwest::Client, s: &Server) -> Value {
    let (code, body) = get_as(c, s.url("/api/autonomous/merchandising"), ADMIN).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body
}

/// Waits until the listing satisfies `ok`.
async fn until(c: &reqwest::Client, s: &Server, what: &str, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = listing(c, s, 0).await;
        if ok(&list) {
            return list;
        }
        assert!(Instant::now() < deadline, "{what}: {list:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn merchandising(store: Store) {
    let c = client();
    let s = Server::start(&store, &[("MALL_JOBS", "merchandising=0")]);
    let (code, _) =
        post(&c, s.url("/api/autonomous"), ADMIN, &json!({"action": "stop", "system": "product_intelligence"})).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(post(&c, s.url("/api/districts"), ADMIN, &district("toys", "playful")).await.0, StatusCode::CREATED);
    for i in 0..12 {
        let mut p = product(&format!("t{i:02}"), "toys", &format!("Toy {i}"), "Made of oiled beech.");
        p["tags"] = match i {
            11 => json!(["featured"]),
            6..=10 => json!(["plastic"]),
            _ => json!(["wood"]),
        };
        assert_eq!(post(&c, s.url("/api/products"), ADMIN, &p).await.0, StatusCode::CREATED);
    }
    // t00 converts at 30%, the others at 5% — 200 views each.
    let mut signals = Vec::new();
    for i in 0..12 {
        let carts = if i == 0 { 60 } else { 10 };
        for v in 0..200 {
            let shopper = format!("s{i}-{v}");
            signals.push(signal("product_viewed", &format!("t{i:02}"), &shopper));
            if v < carts {
                signals.push(signal("added_to_cart", &format!("t{i:02}"), &shopper));
            }
        }
    }
    let mut pos = 0;
    for chunk in signals.chunks(1_000) {
        let (code, body) = post(&c, s.url("/api/signals"), INGEST, &json!({"signals": chunk})).await;
        assert_eq!(code, StatusCode::ACCEPTED, "{body}");
        pos = body["position"].as_u64().unwrap();
    }
    let before = listing(&c, &s, pos).await;
    assert!(before.iter().all(|p| p["rules"].as_array().unwrap().is_empty()), "no rule yet");

    // Bad rules are refused, naming the field; rules need the admin token.
    for (body, field) in [
        (json!({"action": "shove", "product_id": "t01"}), "action"),
        (json!({"action": "pin", "product_id": "t01"}), "position"),
        (json!({"action": "boost"}), "product_id"),
        (json!({"action": "boost", "tags": ["wood"], "strength": 3}), "strength"),
        (json!({"action": "boost", "tags": ["wood"], "until": "2001-01-01T00:00:00Z"}), "until"),
        (json!({"action": "boost", "tags": ["wood"], "price_min": 30, "price_max": 10}), "condition"),
        (json!({"action": "boost", "tags": ["wood"], "colour": "red"}), "colour"),
    ] {
        let (code, err) = post(&c, s.url("/api/autonomous/merchandising/rules"), ADMIN, &body).await;
        assert_eq!((code, err["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{body}: {err}");
    }
    let rule = json!({"action": "boost", "tags": ["plastic"], "strength": 0.8});
    let (code, _) = post(&c, s.url("/api/autonomous/merchandising/rules"), INGEST, &rule).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(get(&c, s.url("/api/autonomous/merchandising")).await.0, StatusCode::UNAUTHORIZED);

    // The engine's sweep: t11 (featured) pinned first, t00 (the high converter) boosted; t05
    // sold out is hidden by a rule (besides being out of stock).
    let r = c.put(s.url("/api/products/t05")).bearer_auth(ADMIN).json(&json!({"stock": 0})).send().await.unwrap();
    assert!(r.status().is_success());
    let at = r.json::<Value>().await.unwrap()["position"].as_u64().unwrap();
    assert!(!ids(&listing(&c, &s, at).await).contains(&"t05"), "the read side has the empty shelf");
    let (code, body) =
        post(&c, s.url("/api/autonomous"), ADMIN, &json!({"action": "optimize", "system": "merchandising"})).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let rules = loop {
        let o = overview(&c, &s).await;
        let rules = o["rules"].as_array().unwrap().clone();
        if rules.len() >= 3 {
            break rules;
        }
        if Instant::now() > deadline {
            let (_, core) = get_as(&c, s.url("/api/autonomous"), ADMIN).await;
            panic!("the engine wrote no rules: {o}\n{core}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let by = |name: &str| rules.iter().find(|r| r["rule"] == name).unwrap_or_else(|| panic!("{name}: {rules:?}"));
    let (featured, converter, sold_out) = (by("featured"), by("high_converter"), by("out_of_stock"));
    assert_eq!((featured["action"].as_str(), featured["pin_position"].as_u64()), (Some("pin"), Some(1)));
    assert_eq!(featured["condition"]["product_id"], "t11");
    assert_eq!(
        (converter["action"].as_str(), converter["condition"]["product_id"].as_str()),
        (Some("boost"), Some("t00"))
    );
    assert!(converter["reason"].as_str().unwrap().contains("top decile"), "{converter}");
    assert_eq!(converter["evidence"]["views"], 200.0, "{converter}");
    assert_eq!((converter["auto"].as_bool(), converter["status"].as_str()), (Some(true), Some("active")));
    assert_eq!(
        (sold_out["action"].as_str(), sold_out["condition"]["product_id"].as_str()),
        (Some("hide"), Some("t05"))
    );
    assert!(rules.iter().all(|r| r["rule"] != "low_performer"), "nothing converts below half the district's rate");
    let (pin_id, boost_id) = (featured["id"].as_str().unwrap(), converter["id"].as_str().unwrap());
    let list = until(&c, &s, "the engine's rules act", |l| !l.is_empty() && l[0]["product_id"] == "t11").await;
    assert_eq!(rules_of(&list, "t11"), [pin_id]);
    assert_eq!(rules_of(&list, "t00"), [boost_id]);
    assert_eq!(list[1]["product_id"], "t00", "the boosted converter leads the unpinned: {:?}", ids(&list));
    assert_eq!(list[1]["parts"]["rules"], 1.0);
    assert!(!ids(&list).contains(&"t05"));
    // A second sweep with the same evidence changes nothing.
    let (code, _) =
        post(&c, s.url("/api/autonomous"), ADMIN, &json!({"action": "optimize", "system": "merchandising"})).await;
    assert_eq!(code, StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = overview(&c, &s).await;
    assert_eq!(again["rules"].as_array().unwrap().len(), rules.len(), "{again}");
    assert!(again["rules"].as_array().unwrap().iter().all(|r| r["revisions"] == 1), "{again}");

    // An admin's boost of the plastic toys (priority 30) beats the engine's boost of nothing
    // else; the listing names it on each plastic toy.
    let (code, created) = post(&c, s.url("/api/autonomous/merchandising/rules"), ADMIN, &rule).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    let plastic = created["id"].as_str().unwrap().to_string();
    let list = until(&c, &s, "the admin's boost acts", |l| {
        l.iter().find(|p| p["product_id"] == "t06").is_some_and(|p| p["rules"].as_array().unwrap().len() == 1)
    })
    .await;
    assert_eq!(rules_of(&list, "t06"), [plastic.as_str()]);
    assert_eq!(list[0]["product_id"], "t11", "the pin holds");
    // A hide takes a product out of listings and search at once.
    let (code, _) = post(
        &c,
        s.url("/api/autonomous/merchandising/rules"),
        ADMIN,
        &json!({"action": "hide", "product_id": "t03", "reason": "recalled"}),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED);
    until(&c, &s, "the hide acts", |l| !ids(l).contains(&"t03")).await;
    let (_, found) = get(&c, s.url("/api/search?q=toy&limit=100")).await;
    let found: Vec<&str> =
        found["results"].as_array().unwrap().iter().map(|p| p["product_id"].as_str().unwrap()).collect();
    assert!(found.contains(&"t02") && !found.contains(&"t03"), "{found:?}");
    // An admin ends a rule: it stops acting at once; ending it again is a conflict.
    let end = |id: String| {
        let c = c.clone();
        let url = s.url(&format!("/api/autonomous/merchandising/rules/{id}"));
        async move {
            let r = c.delete(url).bearer_auth(ADMIN).send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let (code, ended) = end(plastic.clone()).await;
    assert_eq!(code, StatusCode::OK, "{ended}");
    let list = until(&c, &s, "the ended boost stops acting", |l| {
        l.iter().find(|p| p["product_id"] == "t06").is_some_and(|p| p["rules"].as_array().unwrap().is_empty())
    })
    .await;
    assert!(rules_of(&list, "t07").is_empty());
    assert_eq!(end(plastic.clone()).await.0, StatusCode::CONFLICT);
    assert_eq!(end(uuid::Uuid::now_v7().to_string()).await.0, StatusCode::NOT_FOUND);
    let (code, err) = end("nope".into()).await;
    assert_eq!((code, err["field"].as_str()), (StatusCode::BAD_REQUEST, Some("id")));
    // A rule whose window closes stops acting then, and the engine's next sweep records it expired.
    let until_soon = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let (code, created) = post(
        &c,
        s.url("/api/autonomous/merchandising/rules"),
        ADMIN,
        &json!({"action": "pin", "product_id": "t04", "position": 1, "priority": 90, "until": until_soon}),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    let brief = created["id"].as_str().unwrap().to_string();
    until(&c, &s, "the brief pin acts", |l| l[0]["product_id"] == "t04").await;
    until(&c, &s, "the brief pin's window closes", |l| l[0]["product_id"] == "t11").await;
    let (code, _) =
        post(&c, s.url("/api/autonomous"), ADMIN, &json!({"action": "optimize", "system": "merchandising"})).await;
    assert_eq!(code, StatusCode::ACCEPTED);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = overview(&c, &s).await;
        let r = o["rules"].as_array().unwrap().iter().find(|r| r["id"] == brief.as_str()).cloned().unwrap();
        if r["status"] == "expired" {
            assert_eq!(r["expired_reason"], "its window closed");
            break;
        }
        assert!(Instant::now() < deadline, "{r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

support::on_both_stores!(merchandising);

/// The score's weights are configuration: with rules weighing nothing in one district, a boost
/// changes no order there.
#[tokio::test]
async fn weights_are_configuration() {
    let (store, _dir) = Store::embedded();
    let (code, _, err) = mall(&store, &["serve", "--score-weights", "0.4,0.3,x,0.1"]);
    assert_ne!(code, 0);
    assert!(err.contains("--score-weights"), "{err}");
    let c = client();
    let s = Server::start(&store, &[("MALL_SCORE_WEIGHTS", "toys=1,0,0,0")]);
    assert_eq!(post(&c, s.url("/api/districts"), ADMIN, &district("toys", "playful")).await.0, StatusCode::CREATED);
    for i in 0..3 {
        let p = product(&format!("t{i:02}"), "toys", &format!("Toy {i}"), "Made of oiled beech.");
        assert_eq!(post(&c, s.url("/api/products"), ADMIN, &p).await.0, StatusCode::CREATED);
    }
    let (code, _) = post(
        &c,
        s.url("/api/autonomous/merchandising/rules"),
        ADMIN,
        &json!({"action": "boost", "product_id": "t02", "strength": 1}),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED);
    let list = until(&c, &s, "the boost is named", |l| l.len() == 3 && !rules_of(l, "t02").is_empty()).await;
    for p in &list {
        let score = p["score"].as_f64().unwrap();
        assert!((score - p["parts"]["performance"].as_f64().unwrap()).abs() < 1e-9, "{p}");
    }
}

/// A district whose shoppers prefer another ordering gets a test of it and adopts the winner:
/// an admin's boost puts a popular, poorly converting product first; shoppers only ever look at
/// the first product and click it when it is the one they want (the best converter), which the
/// engine's `performance_first` candidate puts first.
async fn ordering_tests(store: Store) {
    let c = client();
    let s = Server::start(&store, &[("MALL_JOBS", "merchandising=0")]);
    let (code, _) =
        post(&c, s.url("/api/autonomous"), ADMIN, &json!({"action": "stop", "system": "product_intelligence"})).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(post(&c, s.url("/api/districts"), ADMIN, &district("toys", "playful")).await.0, StatusCode::CREATED);
    for (id, title) in [("t-a", "Wooden ark"), ("t-b", "Plastic bus"), ("t-c", "Clay cat"), ("t-d", "Dice set")] {
        assert_eq!(
            post(&c, s.url("/api/products"), ADMIN, &product(id, "toys", title, "Made well.")).await.0,
            StatusCode::CREATED
        );
    }
    let mut history = Vec::new();
    for (id, views, carts) in [("t-a", 60, 30), ("t-b", 500, 10), ("t-c", 100, 5), ("t-d", 100, 5)] {
        for v in 0..views {
            let shopper = format!("h-{id}-{v}");
            history.push(signal("product_viewed", id, &shopper));
            if v < carts {
                history.push(signal("added_to_cart", id, &shopper));
            }
        }
    }
    for chunk in history.chunks(1_000) {
        assert_eq!(post(&c, s.url("/api/signals"), INGEST, &json!({"signals": chunk})).await.0, StatusCode::ACCEPTED);
    }
    let boost = json!({"action": "boost", "product_id": "t-b", "strength": 1, "reason": "clearance"});
    assert_eq!(post(&c, s.url("/api/autonomous/merchandising/rules"), ADMIN, &boost).await.0, StatusCode::CREATED);
    until(&c, &s, "the boost leads", |l| !l.is_empty() && l[0]["product_id"] == "t-b").await;

    // The engine's sweep proposes a test of the next candidate ordering.
    let (code, _) =
        post(&c, s.url("/api/autonomous"), ADMIN, &json!({"action": "optimize", "system": "merchandising"})).await;
    assert_eq!(code, StatusCode::ACCEPTED);
    let deadline = Instant::now() + Duration::from_secs(20);
    let test = loop {
        let (_, o) = get_as(&c, s.url("/api/autonomous/merchandising?kind=ordering"), ADMIN).await;
        if let Some(t) = o["tests"].as_array().and_then(|t| t.first()).cloned() {
            break t;
        }
        if Instant::now() >= deadline {
            let (_, core) = get_as(&c, s.url("/api/autonomous"), ADMIN).await;
            panic!("no ordering test: {o}\nthe core: {core}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((test["kind"].as_str(), test["status"].as_str()), (Some("ordering"), Some("running")), "{test}");
    assert_eq!((test["name"].as_str(), test["subject"].as_str()), (Some("performance_first"), Some("district:toys")));
    let test_id = test["test_id"].as_str().unwrap().to_string();
    // The listings serve it once the ranker has the test.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, page) = get(&c, s.url("/api/districts/toys/products?shopper=probe")).await;
        if page["policy"].as_str().is_some_and(|p| p.starts_with("test:")) {
            break;
        }
        assert!(Instant::now() < deadline, "listings never served the test: {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Shoppers arrive: each sees the listing of their arm, looks at the first product and
    // clicks it when it is the best converter; impressions carry the policy and position.
    let mut arms = [0, 0];
    let mut concluded = None;
    'shoppers: for batch in 0..12 {
        let mut signals = Vec::new();
        for k in 0..50 {
            let shopper = format!("v{batch}-{k}");
            let (code, page) = get(&c, s.url(&format!("/api/districts/toys/products?shopper={shopper}"))).await;
            assert_eq!(code, StatusCode::OK, "{page}");
            let policy = page["policy"].as_str().unwrap().to_string();
            if !policy.starts_with("test:") {
                break 'shoppers;
            }
            assert!(policy.starts_with(&format!("test:{test_id}:")), "{policy}");
            let challenger = policy.ends_with(":challenger");
            arms[usize::from(challenger)] += 1;
            let first = &page["products"][0];
            assert_eq!(first["position"], 1);
            let top = first["product_id"].as_str().unwrap();
            assert_eq!(top, if challenger { "t-a" } else { "t-b" }, "{page}");
            let mut impression = signal("impression_served", top, &shopper);
            impression["list"] = json!("district");
            impression["position"] = json!(1);
            impression["policy"] = json!(policy);
            signals.push(impression);
            if top == "t-a" {
                let mut click = signal("product_clicked", top, &shopper);
                click["list"] = json!("district");
                click["position"] = json!(1);
                signals.push(click);
            }
        }
        let (code, body) = post(&c, s.url("/api/signals"), INGEST, &json!({"signals": signals})).await;
        assert_eq!(code, StatusCode::ACCEPTED, "{body}");
        if batch >= 8 {
            // Let the watcher look (every 2 s) before more shoppers come.
            let deadline = Instant::now() + Duration::from_secs(6);
            while Instant::now() < deadline {
                let (_, o) = get_as(&c, s.url("/api/autonomous/merchandising?kind=ordering"), ADMIN).await;
                let t = o["tests"][0].clone();
                if t["status"] != "running" {
                    concluded = Some(t);
                    break 'shoppers;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let t = concluded.expect("the test concluded");
    assert_eq!((t["status"].as_str(), t["outcome"].as_str()), (Some("concluded"), Some("challenger_won")), "{t}");
    assert!(t["srm_p"].as_f64().unwrap() > 0.001, "{t}");
    assert!(t["challenger_stats"]["successes"].as_u64().unwrap() > 100, "{t}");
    assert_eq!(t["control_stats"]["successes"], 0, "{t}");
    assert!(arms[0] > 150 && arms[1] > 150, "{arms:?}");
    // The winner is the district's layout: every listing, anonymous too, ranks by it.
    let list = until(&c, &s, "the layout is adopted", |l| !l.is_empty() && l[0]["product_id"] == "t-a").await;
    assert_eq!(list[0]["product_id"], "t-a");
    let (_, page) = get(&c, s.url("/api/districts/toys/products?shopper=later")).await;
    assert_eq!(page["policy"], "layout:toys");
    assert_eq!(page["products"][0]["product_id"], "t-a", "{page}");
    // Replay recounts the test from the log and reaches the same conclusion.
    let (code, out, err) = mall(&store, &["replay", "merchandising-mall", "--verify", "--json"]);
    assert_eq!(code, 0, "{err}");
    let replayed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(replayed["verification"]["checked"], 1, "{replayed}");
    assert_eq!(replayed["verification"]["mismatches"], json!([]), "{replayed}");
    assert_eq!(replayed["state"]["ordering_tests"][0]["concluded"]["outcome"], "challenger_won");
}

support::on_both_stores!(ordering_tests);
