//! The weak-copy story the dashboard's tests watch: a district, five peers that convert at about
//! 30%, and `weak` ("Rings.") at 1%, whose copy product intelligence rewrites and tests.

use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use super::http::*;
use super::server::*;

pub const PEERS: [&str; 5] = ["p1", "p2", "p3", "p4", "p5"];

/// Posts signals in batches of 1,000; the last position.
pub async fn signals(c: &Client, s: &Server, batch: Vec<Value>) -> u64 {
    let mut last = 0;
    for chunk in batch.chunks(1_000) {
        let (status, body) = post(c, s.url("/api/signals"), INGEST, &json!({ "signals": chunk })).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        last = body["position"].as_u64().unwrap();
    }
    last
}

/// Polls `path` (as the admin) until `pred` holds of its JSON.
pub async fn until(c: &Client, s: &Server, path: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, body) = get_as(c, s.url(path), ADMIN).await;
        if status == StatusCode::OK && pred(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; last answer {status}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The district, the peers with their traffic, and `weak` listed (no traffic yet).
pub async fn catalog(c: &Client, s: &Server) {
    let (status, body) = post(c, s.url("/api/districts"), ADMIN, &district("toys", "playful")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for p in PEERS {
        let listing = product(p, "toys", "Wooden train", "A beech train with four cars and magnetic hitches.");
        let (status, body) = post(c, s.url("/api/products"), ADMIN, &listing).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) =
        post(c, s.url("/api/products"), ADMIN, &product("weak", "toys", "Stacking rings", "Rings.")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut batch = Vec::new();
    for p in PEERS {
        for i in 0..100 {
            let shopper = format!("{p}-s{i}");
            batch.push(signal("product_viewed", p, &shopper));
            if i % 10 < 3 {
                batch.push(signal("added_to_cart", p, &shopper));
            }
        }
    }
    let pos = signals(c, s, batch).await;
    until(c, s, &format!("/api/products/p1?min_position={pos}"), "the peers' signals", |b| {
        b["metrics"]["total"]["views"] == 100
    })
    .await;
}

/// 100 views of `weak`, one cart: enough for product intelligence to rewrite it.
pub fn weak_traffic() -> Vec<Value> {
    let mut batch = Vec::new();
    for i in 0..100 {
        let shopper = format!("w-s{i}");
        batch.push(signal("product_viewed", "weak", &shopper));
        if i == 0 {
            batch.push(signal("added_to_cart", "weak", &shopper));
        }
    }
    batch
}

/// Shoppers who each see their arm of `weak`'s experiment: the challenger converts at 40%, the
/// control at 2% (enough for the experiment to conclude for the challenger).
pub async fn experiment_traffic(c: &Client, s: &Server) -> Vec<Value> {
    let mut batch = Vec::new();
    for i in 0..700 {
        let shopper = format!("x{i}");
        let (_, b) = get(c, s.url(&format!("/api/products/weak?shopper={shopper}"))).await;
        let challenger = b["experiment"]["arm"] == "challenger";
        batch.push(signal("product_viewed", "weak", &shopper));
        if (challenger && i % 5 < 2) || (!challenger && i % 50 == 0) {
            batch.push(signal("added_to_cart", "weak", &shopper));
        }
    }
    batch
}
