//! Plugins end to end over HTTP, on both stores: the built-in plugins are listed with their
//! capabilities and hooks; an admin's optimize runs them — inventory prediction proposes a
//! reorder for the product whose intermittent sales outrun its stock, image generation an image
//! for each product without one — and a run that finds nothing new records nothing new; settings
//! and switches are events (validated field by field); a plugin that fails three times in a row
//! is disabled by isolation with the reason while the others keep running; voice commerce reads
//! transcripts into intents, products and replies.

mod support;

use std::time::{Duration, Instant};

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::http::*;
use support::server::*;

async fn plugins(c: &reqwest::Client, s: &Server) -> Value {
    let (code, body) = get_as(c, s.url("/api/autonomous/plugins"), ADMIN).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body
}

fn plugin<'a>(body: &'a Value, id: &str) -> &'a Value {
    body["plugins"].as_array().unwrap().iter().find(|p| p["id"] == id).unwrap_or_else(|| panic!("{id}: {body}"))
}

/// Runs every plugin now and waits until the task is done.
async fn run(c: &reqwest::Client, s: &Server) -> Value {
    let (code, body) =
        post(c, s.url("/api/autonomous"), ADMIN, &json!({"action": "optimize", "system": "plugins"})).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{body}");
    let task = body["tasks"][0].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, st) = get_as(c, s.url("/api/autonomous"), ADMIN).await;
        let done = st["queue"]["recent"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["id"] == task.as_str() && t["status"] != "queued" && t["status"] != "running");
        if let Some(t) = done {
            assert_eq!(t["status"], "succeeded", "{t}");
            let head = st["log_position"].as_u64().unwrap();
            let (code, body) = get_as(c, s.url(&format!("/api/autonomous/plugins?min_position={head}")), ADMIN).await;
            assert_eq!(code, StatusCode::OK);
            return body;
        }
        assert!(Instant::now() < deadline, "{st:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn proposals<'a>(body: &'a Value, kind: &str) -> Vec<&'a Value> {
    body["proposals"].as_array().unwrap().iter().filter(|p| p["kind"] == kind).collect()
}

async fn configure(c: &reqwest::Client, s: &Server, body: Value) -> (StatusCode, Value) {
    post(c, s.url("/api/autonomous/plugins"), ADMIN, &body).await
}

async fn plugins_at_work(store: Store) {
    let c = client();
    let s = Server::start(&store, &[("MALL_JOBS", "plugin_hooks=0")]);
    let (code, _) =
        post(&c, s.url("/api/autonomous"), ADMIN, &json!({"action": "stop", "system": "product_intelligence"})).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(post(&c, s.url("/api/districts"), ADMIN, &district("toys", "playful")).await.0, StatusCode::CREATED);
    for (id, title, stock) in [("low", "Wooden train", 3), ("plenty", "Blue teapot", 200), ("idle", "Kite", 5)] {
        let mut p = product(id, "toys", title, "Made with care.");
        p["stock"] = json!(stock);
        assert_eq!(post(&c, s.url("/api/products"), ADMIN, &p).await.0, StatusCode::CREATED);
    }
    // One unit every other day for four weeks, of both `low` and `plenty`.
    let mut signals = Vec::new();
    for d in (0..28).step_by(2) {
        for id in ["low", "plenty"] {
            let mut b = signal("purchased", id, &format!("s{d}"));
            let m = b.as_object_mut().unwrap();
            m.insert("quantity".into(), json!(1));
            m.insert("unit_price".into(), json!("24.50"));
            m.insert("currency".into(), json!("EUR"));
            m.insert("order_id".into(), json!(format!("o{d}{id}")));
            m.insert("at".into(), json!((Utc::now() - chrono::Duration::days(d)).to_rfc3339()));
            signals.push(b);
        }
    }
    let (code, body) = post(&c, s.url("/api/signals"), INGEST, &json!({"signals": signals})).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{body}");

    // Listed, enabled, never run.
    let listed = plugins(&c, &s).await;
    let ids: Vec<&str> = listed["plugins"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["inventory_prediction", "image_generation", "voice_commerce"]);
    let inv = plugin(&listed, "inventory_prediction");
    assert_eq!((inv["enabled"].as_bool(), inv["runs"].as_i64()), (Some(true), Some(0)), "{inv}");
    assert_eq!(inv["capabilities"], json!(["forecast", "reorder_alert"]));
    assert_eq!(inv["config"], json!({"lead_time_days": 7.0, "safety_days": 3.0}));

    // A run: a reorder for `low` (6 days of cover against 7 + 3), none for `plenty`; an image
    // for each product without one.
    let after = run(&c, &s).await;
    let reorders = proposals(&after, "reorder");
    assert_eq!(reorders.len(), 1, "{after:#}");
    assert_eq!(reorders[0]["subject"], "product:low");
    let cover = reorders[0]["figures"]["days_of_cover"].as_f64().unwrap();
    assert!((4.0..10.0).contains(&cover), "{}", reorders[0]);
    assert_eq!(proposals(&after, "image").len(), 3);
    assert_eq!(plugin(&after, "inventory_prediction")["last_outcome"], "ok");
    // Nothing new: nothing recorded again.
    let again = run(&c, &s).await;
    assert_eq!(again["proposals"].as_array().unwrap().len(), 4, "{again:#}");
    assert_eq!(plugin(&again, "inventory_prediction")["runs"], 2);

    // Settings and switches: events, validated field by field.
    for (body, code, field) in [
        (json!({"id": "nope", "enabled": true}), StatusCode::NOT_FOUND, None),
        (json!({"id": "inventory_prediction"}), StatusCode::BAD_REQUEST, Some("enabled")),
        (
            json!({"id": "inventory_prediction", "config": {"colour": 1}}),
            StatusCode::BAD_REQUEST,
            Some("config.colour"),
        ),
        (
            json!({"id": "inventory_prediction", "config": {"lead_time_days": "soon"}}),
            StatusCode::BAD_REQUEST,
            Some("config.lead_time_days"),
        ),
        (json!({"id": "inventory_prediction", "enabled": "yes"}), StatusCode::BAD_REQUEST, Some("enabled")),
    ] {
        let (got, err) = configure(&c, &s, body.clone()).await;
        assert_eq!((got, err["field"].as_str()), (code, field), "{body}: {err}");
    }
    let (code, _) =
        post(&c, s.url("/api/autonomous/plugins"), INGEST, &json!({"id": "image_generation", "enabled": false})).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(get(&c, s.url("/api/autonomous/plugins")).await.0, StatusCode::UNAUTHORIZED);
    let (code, body) =
        configure(&c, &s, json!({"id": "inventory_prediction", "config": {"lead_time_days": 500}})).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(plugin(&body, "inventory_prediction")["config"]["lead_time_days"], 500.0);
    let (code, _) = configure(&c, &s, json!({"id": "image_generation", "enabled": false, "reason": "paused"})).await;
    assert_eq!(code, StatusCode::OK);
    let after = run(&c, &s).await;
    let subjects: Vec<&str> = proposals(&after, "reorder").iter().map(|p| p["subject"].as_str().unwrap()).collect();
    assert!(subjects.contains(&"product:plenty"), "a 500-day lead time reorders it too: {subjects:?}");
    let image = plugin(&after, "image_generation");
    assert_eq!((image["enabled"].as_bool(), image["runs"].as_i64()), (Some(false), Some(2)), "disabled: not run");
    assert_eq!(image["disabled_by"], "admin");

    // A plugin that fails three times in a row is disabled by isolation, with the reason; the
    // others keep running.
    let (code, _) = configure(&c, &s, json!({"id": "image_generation", "enabled": true})).await;
    assert_eq!(code, StatusCode::OK);
    let (code, _) = configure(&c, &s, json!({"id": "inventory_prediction", "config": {"lead_time_days": -1}})).await;
    assert_eq!(code, StatusCode::OK);
    for n in 1..=3 {
        let after = run(&c, &s).await;
        let inv = plugin(&after, "inventory_prediction");
        assert_eq!(inv["last_outcome"], "failed", "{inv}");
        assert_eq!(inv["failures_in_a_row"], n, "{inv}");
        assert_eq!(plugin(&after, "image_generation")["last_outcome"], "ok");
    }
    let after = plugins(&c, &s).await;
    let inv = plugin(&after, "inventory_prediction");
    assert_eq!((inv["enabled"].as_bool(), inv["disabled_by"].as_str()), (Some(false), Some("isolation")), "{inv}");
    assert!(inv["disabled_reason"].as_str().unwrap().contains("not negative"), "{inv}");
    let runs = inv["runs"].clone();
    let after = run(&c, &s).await;
    assert_eq!(plugin(&after, "inventory_prediction")["runs"], runs, "not run once disabled");
    assert_eq!(plugin(&after, "image_generation")["runs"], 6);

    // Voice commerce.
    let say = |text: &str, shopper: Option<&str>| {
        let (c, s) = (&c, &s);
        let mut body = json!({"text": text});
        if let Some(x) = shopper {
            body["shopper_id"] = json!(x);
        }
        async move {
            let (code, _, body) = send(
                c,
                reqwest::Method::POST,
                s.url("/api/autonomous/voice"),
                None,
                Some(body.to_string().into_bytes()),
            )
            .await;
            (code, body)
        }
    };
    let (code, found) = say("Find me a blue teapot under 30 euros", Some("v1")).await;
    assert_eq!(code, StatusCode::OK, "{found}");
    assert_eq!(found["intent"], "search");
    assert_eq!(found["max_price"], 30.0);
    assert_eq!(found["products"][0]["product_id"], "plenty", "{found}");
    assert!(found["reply"].as_str().unwrap().contains("Blue teapot"), "{found}");
    let (_, added) = say("add two of those to my cart", Some("v1")).await;
    assert_eq!((added["intent"].as_str(), added["quantity"].as_u64()), (Some("add_to_cart"), Some(2)), "{added}");
    assert_eq!(added["products"][0]["product_id"], "plenty");
    assert_eq!(added["reply"], "Adding two of Blue teapot to your cart.");
    let (_, none) = say("find me a golden piano under 5 euros", None).await;
    assert_eq!(none["products"], json!([]));
    let (code, err) = say("", None).await;
    assert_eq!((code, err["field"].as_str()), (StatusCode::BAD_REQUEST, Some("text")));
    let (code, err) = say("find a kite", Some("not a valid id!")).await;
    assert_eq!((code, err["field"].as_str()), (StatusCode::BAD_REQUEST, Some("shopper_id")));
    let (code, _) = configure(&c, &s, json!({"id": "voice_commerce", "enabled": false})).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(say("find a kite", None).await.0, StatusCode::CONFLICT);
}

support::on_both_stores!(plugins_at_work);
