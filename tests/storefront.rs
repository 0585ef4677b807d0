//! The storefront reads over HTTP, served from the read tables on both stores: districts, a
//! district's ranking with its score parts, paging, hidden out-of-stock products, personalization,
//! search, the shopper profile, and read-your-writes through `min_position`.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::server::*;

async fn get(c: &reqwest::Client, url: String) -> (StatusCode, Option<u64>, Value) {
    let r = c.get(url).send().await.unwrap();
    let status = r.status();
    let position = r.headers().get("x-mall-position").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    (status, position, r.json().await.unwrap_or(Value::Null))
}

async fn storefront(store: Store) {
    let s = Server::start(&store, &[]);
    let c = reqwest::Client::new();
    let post = |path: &str, token: &str, body: Value| c.post(s.url(path)).bearer_auth(token).json(&body).send();
    post("/api/districts", ADMIN, district("toys", "playful")).await.unwrap();
    post("/api/districts", ADMIN, district("kitchen", "warm")).await.unwrap();
    for (id, d, title, stock) in [
        ("t1", "toys", "Wooden train", 5),
        ("t2", "toys", "Stacking rings", 5),
        ("t3", "toys", "Puzzle cube", 0),
        ("t4", "toys", "Rocking horse", 2),
        ("k1", "kitchen", "Cast iron skillet", 4),
    ] {
        let mut p = product(id, d, title, "Made of oiled beech, sanded smooth, finished by hand in a small workshop.");
        p["stock"] = json!(stock);
        assert!(post("/api/products", ADMIN, p).await.unwrap().status().is_success());
    }
    // t2 converts best; shopper "fan" loves t4.
    let mut batch = Vec::new();
    for i in 0..30 {
        for p in ["t1", "t2", "t4", "k1"] {
            batch.push(signal("product_viewed", p, &format!("s{i}")));
        }
        if i % 2 == 0 {
            batch.push(signal("added_to_cart", "t2", &format!("s{i}")));
        }
        batch.push(signal("product_viewed", "t4", "fan"));
    }
    batch.push(signal("added_to_cart", "t4", "fan"));
    let r: Value = post("/api/signals", INGEST, json!({ "signals": batch })).await.unwrap().json().await.unwrap();
    let mut pos = r["position"].as_u64().unwrap();
    // Let the actors finish their own work on the new listings (SEO, embeddings), which changes
    // the rankings' rule parts, so that the rankings compared below are of one state.
    let mut quiet = 0;
    while quiet < 5 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let (_, _, h) = get(&c, s.url("/healthz")).await;
        let now = h["log_position"].as_u64().unwrap();
        quiet = if now == pos { quiet + 1 } else { 0 };
        pos = now;
    }

    let (status, at, body) = get(&c, s.url(&format!("/api/districts?min_position={pos}"))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(at.unwrap() >= pos, "read-your-writes: {at:?} < {pos}");
    let slugs: Vec<&str> = body["districts"].as_array().unwrap().iter().map(|d| d["slug"].as_str().unwrap()).collect();
    assert_eq!(slugs, ["kitchen", "toys"]);
    let (_, _, toys) = get(&c, s.url("/api/districts/toys")).await;
    assert_eq!((toys["products"].as_u64(), toys["in_stock"].as_u64()), (Some(4), Some(3)));
    assert_eq!(toys["personality"]["tone"], "playful");
    assert_eq!(toys["stats"]["views"].as_f64(), Some(120.0));
    assert_eq!(get(&c, s.url("/api/districts/nowhere")).await.0, StatusCode::NOT_FOUND);

    let (_, _, ranking) = get(&c, s.url("/api/districts/toys/products")).await;
    let items = ranking["products"].as_array().unwrap();
    let ids: Vec<&str> = items.iter().map(|p| p["product_id"].as_str().unwrap()).collect();
    assert!(!ids.contains(&"t3"), "out of stock is hidden: {ids:?}");
    assert_eq!(ids[0], "t2", "the best converter leads: {ranking}");
    for p in items {
        let parts = &p["parts"];
        let score = 0.4 * parts["performance"].as_f64().unwrap()
            + 0.3 * parts["rules"].as_f64().unwrap()
            + 0.2 * parts["personalization"].as_f64().unwrap()
            + 0.1 * parts["recency"].as_f64().unwrap();
        assert!((score - p["score"].as_f64().unwrap()).abs() < 1e-9, "{p}");
    }
    assert!(items.windows(2).all(|w| w[0]["score"].as_f64() >= w[1]["score"].as_f64()));
    let (_, _, page2) = get(&c, s.url("/api/districts/toys/products?limit=2&page=2")).await;
    assert_eq!(page2["products"].as_array().unwrap().len(), 1);
    assert_eq!(page2["products"][0]["product_id"], ids[2]);
    let (status, _, err) = get(&c, s.url("/api/districts/toys/products?limit=0")).await;
    assert_eq!((status, err["field"].as_str()), (StatusCode::BAD_REQUEST, Some("limit")));

    // Personalization: the fan's favourite gets a personal boost.
    let (_, _, fan) = get(&c, s.url("/api/districts/toys/products?shopper=fan")).await;
    let t4 = fan["products"].as_array().unwrap().iter().find(|p| p["product_id"] == "t4").unwrap().clone();
    assert!(t4["parts"]["personalization"].as_f64().unwrap() > 0.9, "{t4}");
    // A profile is private: it needs a token.
    let (status, _, _) = get(&c, s.url("/api/autonomous/personalize?userId=fan")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let r = c.get(s.url("/api/autonomous/personalize?userId=fan")).bearer_auth(INGEST).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let profile: Value = r.json().await.unwrap();
    assert_eq!(profile["profile"]["district_affinity"][0]["district"], "toys", "{profile}");
    assert_eq!(profile["profile"]["interests"][0]["product_id"], "t4");
    let anonymous = items.iter().find(|p| p["product_id"] == "t4").unwrap();
    assert!(t4["score"].as_f64() > anonymous["score"].as_f64(), "the fan's score for t4 is higher than anyone's");
    let personal_t4 = profile["ranking"].as_array().unwrap().iter().find(|p| p["product_id"] == "t4").unwrap();
    assert_eq!(personal_t4["parts"]["personalization"].as_f64(), Some(1.0), "{profile}");

    assert_eq!(profile["profile"]["signals"]["views"], 30, "{profile}");
    assert_eq!(profile["profile"]["signals"]["carts"], 1, "{profile}");
    // The fan carted and did not buy: the pattern, its layout and the predicted next action.
    assert_eq!(profile["pattern"], "cart waiting", "{profile}");
    assert_eq!(profile["layout"][0], "cart", "{profile}");
    assert_eq!(profile["next_action"]["action"], "purchase", "{profile}");
    assert_eq!(profile["profile"]["segment"], "shopper", "{profile}");
    assert_eq!(profile["districts"][0], "toys", "{profile}");
    // Top picks follow what others did after the fan's rocking horse (the skillet, by its
    // reason), never the fan's own product first, and only what is in stock.
    let picks = profile["top_picks"].as_array().unwrap();
    assert!(picks.iter().all(|p| p["product_id"] != "t3"), "{profile}");
    assert_eq!(picks[0]["product_id"], "k1", "{profile}");
    assert!(picks[0]["reason"].as_str().unwrap().contains("t4"), "{profile}");

    // The district rankings table (beside PostgreSQL) holds the anonymous ranking.
    if let Store::Postgres { url, .. } = &store {
        let (db, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let mut table: Vec<String> = Vec::new();
        for _ in 0..50 {
            table = db
                .query("SELECT product_id FROM district_rankings WHERE district = 'toys' ORDER BY rank", &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            if table == ids {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(table, ids, "district_rankings matches the API");
    }

    // Personalization changes what a shopper sees after a few signals: a new shopper gets
    // popular picks; after looking at the train, what others went on to from it.
    let profile_of = |who: &'static str, min: u64| {
        let c = c.clone();
        let url = s.url(&format!("/api/autonomous/personalize?userId={who}&min_position={min}"));
        async move { c.get(url).bearer_auth(INGEST).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let before = profile_of("newbie", pos).await;
    // Read (and kept by the node) before the signal: the new page must not be the kept one.
    let (_, _, unknown) = get(&c, s.url("/api/districts/toys/products?shopper=newbie")).await;
    let part = |page: &Value, id: &str| {
        page["products"].as_array().unwrap().iter().find(|p| p["product_id"] == id).unwrap()["parts"]["personalization"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(
        (before["pattern"].as_str(), before["top_picks"][0]["reason"].as_str()),
        (Some("new"), Some("popular lately")),
        "{before}"
    );
    let r: Value = post("/api/signals", INGEST, json!({"signals": [signal("product_viewed", "t1", "newbie")]}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let after = profile_of("newbie", r["position"].as_u64().unwrap()).await;
    assert_eq!(after["top_picks"][0]["product_id"], "t2", "{after}");
    assert!(after["top_picks"][0]["reason"].as_str().unwrap().contains("t1"), "{after}");
    assert_ne!(before["top_picks"], after["top_picks"]);
    let (_, _, listing) =
        get(&c, s.url(&format!("/api/districts/toys/products?shopper=newbie&min_position={}", r["position"]))).await;
    assert!(part(&listing, "t2") > 0.5, "{listing}");
    // The train itself is now the shopper's own interest (a page kept from before would not say so).
    assert!(part(&unknown, "t1") < 0.5 && part(&listing, "t1") > 0.9, "{unknown}\n{listing}");

    // Read-your-writes: a product out of stock leaves the ranking at once.
    let r = c.put(s.url("/api/products/t2")).bearer_auth(ADMIN).json(&json!({"stock": 0})).send().await.unwrap();
    let pos: u64 = r.json::<Value>().await.unwrap()["position"].as_u64().unwrap();
    let (_, at, after) = get(&c, s.url(&format!("/api/districts/toys/products?min_position={pos}"))).await;
    assert!(at.unwrap() >= pos);
    assert!(after["products"].as_array().unwrap().iter().all(|p| p["product_id"] != "t2"), "{after}");
    // Every read takes `min_position` in both spellings (and refuses a parameter it does not know).
    for (path, token) in [
        ("/api/districts?", None),
        ("/api/districts/toys?", None),
        ("/api/districts/toys/products?", None),
        ("/api/products/t1?", None),
        ("/api/products/t1/history?", None),
        ("/api/search?q=train&", None),
        ("/api/autonomous/personalize?userId=fan&", Some(INGEST)),
        ("/api/autonomous/products?product_id=t1&", Some(ADMIN)),
        ("/api/autonomous?", Some(ADMIN)),
    ] {
        for (name, expect) in
            [("min_position", StatusCode::OK), ("minPosition", StatusCode::OK), ("min_pos", StatusCode::BAD_REQUEST)]
        {
            let mut r = c.get(s.url(&format!("{path}{name}={pos}")));
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            let r = r.send().await.unwrap();
            assert_eq!(r.status(), expect, "{path}{name}");
            let at = r.headers().get("x-mall-position").map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            assert!(expect != StatusCode::OK || at.is_none_or(|at| at >= pos), "{path}{name}: {at:?} < {pos}");
        }
    }

    // Search: keyword and semantic together.
    let (_, _, found) = get(&c, s.url("/api/search?q=skillet")).await;
    assert_eq!(found["results"][0]["product_id"], "k1", "{found}");
    assert!(found["results"][0]["parts"]["keyword"].as_f64().unwrap() > 0.9);
    let (status, _, _) = get(&c, s.url("/api/search?q=")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

support::on_both_stores!(storefront);
