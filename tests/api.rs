//! Every route, every method, with generated bodies and query strings — wrong types, missing and
//! unknown fields, values at and beyond every bound, nulls, deep nesting, bytes that are not
//! UTF-8, empty and huge bodies — with and without tokens, on both stores: no answer is a 5xx,
//! and every refusal is JSON `{"message", "field"?}`. The routes come from `mall::serve::ROUTES`
//! (the list `mall serve` is built from; there is no OpenAPI description yet).

mod support;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::http::client;
use support::server::*;

const REQUESTS_PER_ROUTE: usize = 40;

fn value(rng: &mut StdRng, depth: u32) -> Value {
    match rng.random_range(0..if depth > 3 { 8 } else { 11 }) {
        0 => Value::Null,
        1 => json!(rng.random::<bool>()),
        2 => json!(rng.random::<i64>()),
        3 => json!(u64::MAX),
        4 => json!(-1),
        5 => json!(rng.random::<f64>() * 1e300),
        6 => json!(
            ["", "x", "\u{0}", "\u{200B}", "+10000-01-01T00:00:00Z", "999999999999.9999", "EUR", "toys", "p1"]
                [rng.random_range(0..9)]
        ),
        7 => json!("y".repeat(rng.random_range(0..5_000))),
        8 => Value::Array((0..rng.random_range(0..4)).map(|_| value(rng, depth + 1)).collect()),
        _ => object(rng, depth + 1),
    }
}

const FIELDS: &[&str] = &[
    "type",
    "slug",
    "name",
    "personality",
    "tone",
    "style",
    "audience",
    "product_id",
    "district",
    "title",
    "description",
    "price",
    "currency",
    "tags",
    "attributes",
    "image_url",
    "stock",
    "signals",
    "id",
    "shopper_id",
    "session_id",
    "at",
    "dwell_ms",
    "quantity",
    "unit_price",
    "order_id",
    "query",
    "result_ids",
    "list",
    "position",
    "name",
    "verify",
    "extra",
];

fn object(rng: &mut StdRng, depth: u32) -> Value {
    let mut m = serde_json::Map::new();
    for _ in 0..rng.random_range(0..8) {
        m.insert(FIELDS[rng.random_range(0..FIELDS.len())].to_string(), value(rng, depth));
    }
    Value::Object(m)
}

fn body(rng: &mut StdRng) -> Vec<u8> {
    match rng.random_range(0..10) {
        0 => Vec::new(),
        1 => b"{\"a\":1} trailing".to_vec(),
        2 => vec![0xff, 0xfe, b'{', 0x80],
        3 => "[".repeat(10_000).into_bytes(),
        4 => json!({"signals": (0..rng.random_range(0..5)).map(|_| object(rng, 1)).collect::<Vec<_>>()})
            .to_string()
            .into_bytes(),
        _ => object(rng, 0).to_string().into_bytes(),
    }
}

fn query(rng: &mut StdRng) -> String {
    let keys = ["q", "limit", "page", "shopper", "min_position", "userId", "product_id", "minPosition", "x"];
    let vals = ["", "0", "-1", "18446744073709551616", "abc", "%00", "%FF", "toys", "a%20b", &"z".repeat(300)];
    (0..rng.random_range(0..4))
        .map(|_| format!("{}={}", keys[rng.random_range(0..keys.len())], vals[rng.random_range(0..vals.len())]))
        .collect::<Vec<_>>()
        .join("&")
}

async fn every_route_answers_without_5xx_and_with_the_error_shape(store: Store) {
    let s = Server::start(&store, &[]);
    let c = client();
    // Something to read.
    let r = c.post(s.url("/api/districts")).bearer_auth(ADMIN).json(&district("toys", "warm")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = c
        .post(s.url("/api/products"))
        .bearer_auth(ADMIN)
        .json(&product("p1", "toys", "Train", "Beech."))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let mut rng = StdRng::seed_from_u64(7);
    let mut answered = 0;
    for (path, methods) in mall::serve::ROUTES {
        for _ in 0..REQUESTS_PER_ROUTE {
            let concrete = path
                .replace("{id}", ["p1", "nope", "%00", "a b"][rng.random_range(0..4)])
                .replace("{slug}", ["toys", "NOPE", "x"][rng.random_range(0..3)]);
            let method = match rng.random_range(0..6) {
                0 => "DELETE",
                1 => "PATCH",
                _ => methods[rng.random_range(0..methods.len())],
            };
            let url = format!("{}?{}", s.url(&concrete), query(&mut rng));
            let mut req = c.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url.clone());
            req = match rng.random_range(0..4) {
                0 => req,
                1 => req.bearer_auth(INGEST),
                2 => req.bearer_auth("wrong"),
                _ => req.bearer_auth(ADMIN),
            };
            if method != "GET" {
                req = req.header("content-type", "application/json").body(body(&mut rng));
            }
            let r = req.send().await.unwrap();
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            assert!(!status.is_server_error(), "{method} {url}: {status} {text}");
            if status.is_client_error() {
                let v: Value =
                    serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method} {url}: {status} {text:?}"));
                assert!(v["message"].is_string(), "{method} {url}: {text}");
                assert!(v.get("field").is_none_or(Value::is_string), "{method} {url}: {text}");
            }
            answered += 1;
        }
    }
    assert_eq!(answered, mall::serve::ROUTES.len() * REQUESTS_PER_ROUTE);
    let r = c.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the server is well after it all");
}

support::on_both_stores!(every_route_answers_without_5xx_and_with_the_error_shape);
