//! The social media engine end to end over HTTP, on both stores: a district with last week's
//! signals gets a week of posts about its best products (not the one nobody looked at), at the
//! hours its shoppers are active, within each platform's limits; bad requests name the field; a
//! publisher takes what is due, marks posts published or failed; a post's link brings signals
//! that are attributed to it; a new calendar supersedes the old one's posts still scheduled; the
//! rising searches are offered as content ideas. A model that writes a fake review is refused
//! (the built-in post goes out, the attempt recorded), one that fails leaves the built-in post,
//! one that writes well is published.

#[path = "support/model.rs"]
mod model;
mod support;

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Timelike, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::http::*;
use support::server::*;

fn at(s: &mut Value, t: DateTime<Utc>) -> Value {
    s["at"] = json!(t.to_rfc3339());
    s.clone()
}

/// Yesterday at `hour` (UTC), or the day before when that is still ahead.
fn yesterday_at(hour: u32) -> DateTime<Utc> {
    let d = Utc::now() - Duration::days(1);
    d.with_hour(hour).unwrap().with_minute(10).unwrap()
}

async fn setup(c: &reqwest::Client, s: &Server) {
    let (code, _) =
        post(c, s.url("/api/autonomous"), ADMIN, &json!({"action": "stop", "system": "product_intelligence"})).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(post(c, s.url("/api/districts"), ADMIN, &district("toys", "playful")).await.0, StatusCode::CREATED);
    for (id, title) in [("t1", "Wooden train"), ("t2", "Rag doll"), ("t3", "Spinning top")] {
        let (code, _) = post(c, s.url("/api/products"), ADMIN, &product(id, "toys", title, "Made with care.")).await;
        assert_eq!(code, StatusCode::CREATED);
    }
    // Shoppers are active at 20:00 and 14:00; t1 sells, t2 is looked at, t3 nobody saw.
    let mut signals = Vec::new();
    for v in 0..40 {
        signals.push(at(&mut signal("product_viewed", "t1", &format!("a{v}")), yesterday_at(20)));
    }
    for v in 0..10 {
        signals.push(at(&mut signal("added_to_cart", "t1", &format!("a{v}")), yesterday_at(20)));
    }
    for v in 0..20 {
        signals.push(at(&mut signal("product_viewed", "t2", &format!("b{v}")), yesterday_at(14)));
    }
    for i in 0..3 {
        signals.push(json!({"type": "searched", "id": uuid::Uuid::now_v7(), "shopper_id": format!("q{i}"),
            "session_id": "s", "at": Utc::now().to_rfc3339(), "query": "Wooden kite", "result_ids": []}));
    }
    let (code, body) = post(c, s.url("/api/signals"), INGEST, &json!({"signals": signals})).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{body}");
}

async fn plan(c: &reqwest::Client, s: &Server) -> Vec<Value> {
    let (code, body) = post(c, s.url("/api/autonomous/social/calendar"), ADMIN, &json!({"district": "toys"})).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    body["posts"].as_array().unwrap().clone()
}

async fn calendar(c: &reqwest::Client, s: &Server, query: &str) -> Value {
    let (code, body) = get_as(c, s.url(&format!("/api/autonomous/social/calendar{query}")), ADMIN).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body
}

async fn calendar_and_publishing(store: Store) {
    let c = client();
    let s = Server::start(&store, &[("MALL_JOBS", "social_calendar=0")]);
    setup(&c, &s).await;
    let started = Utc::now();
    let posts = plan(&c, &s).await;

    // Eighteen posts: a hook and a caption a day, a thread every other day, over the next week.
    let count = |p: &str| posts.iter().filter(|x| x["platform"] == p).count();
    assert_eq!((count("tiktok"), count("instagram"), count("twitter")), (7, 7, 4), "{posts:#?}");
    let products: BTreeSet<&str> = posts.iter().map(|p| p["product_id"].as_str().unwrap()).collect();
    assert_eq!(products, BTreeSet::from(["t1", "t2"]), "nobody saw t3");
    for p in &posts {
        let when: DateTime<Utc> = p["scheduled_at"].as_str().unwrap().parse().unwrap();
        assert!(when > started - Duration::seconds(5) && when <= started + Duration::days(7), "{p}");
        assert!([14, 20].contains(&when.hour()), "at the shoppers' hours: {p}");
        assert_eq!(p["status"], "scheduled");
        assert_eq!(p["generator"], "offline-social/1");
        let hashtags = p["hashtags"].as_array().unwrap();
        assert!(hashtags.iter().all(|h| h.as_str().unwrap().chars().all(|c| c.is_alphanumeric())), "{p}");
        match p["platform"].as_str().unwrap() {
            "twitter" => {
                let tweets = p["tweets"].as_array().unwrap();
                assert_eq!(tweets.len(), 5, "{p}");
                assert!(tweets.iter().all(|t| t.as_str().unwrap().chars().count() <= 280), "{p}");
                assert!((1..=3).contains(&hashtags.len()));
            }
            "tiktok" => {
                assert!(p["text"].as_str().unwrap().split_whitespace().count() <= 15, "{p}");
                assert!((3..=5).contains(&hashtags.len()));
            }
            _ => {
                assert!(p["text"].as_str().unwrap().chars().count() <= 2_200, "{p}");
                assert!((5..=30).contains(&hashtags.len()));
            }
        }
    }

    // Bad requests name the field; the calendar needs the admin token.
    for (body, code, field) in [
        (json!({"district": "nowhere"}), StatusCode::NOT_FOUND, None),
        (json!({"district": "Not A Slug!"}), StatusCode::BAD_REQUEST, Some("district")),
        (json!({"colour": "red"}), StatusCode::BAD_REQUEST, Some("colour")),
    ] {
        let (got, err) = post(&c, s.url("/api/autonomous/social/calendar"), ADMIN, &body).await;
        assert_eq!((got, err["field"].as_str()), (code, field), "{body}: {err}");
    }
    let (code, _) = post(&c, s.url("/api/autonomous/social/calendar"), INGEST, &json!({})).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(get(&c, s.url("/api/autonomous/social/ready")).await.0, StatusCode::UNAUTHORIZED);

    // Nothing is due yet; by tomorrow night, the first posts are.
    let (code, ready) = get_as(&c, s.url("/api/autonomous/social/ready"), ADMIN).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(ready["posts"], json!([]), "{ready}");
    let until = (started + Duration::days(2)).to_rfc3339();
    let url = s.url(&format!("/api/autonomous/social/ready?until={}", until.replace('+', "%2B")));
    let (_, due) = get_as(&c, url, ADMIN).await;
    let due = due["posts"].as_array().unwrap().clone();
    assert!(due.len() >= 4, "{due:#?}");
    let (code, err) = get_as(&c, s.url("/api/autonomous/social/ready?until=tomorrow"), ADMIN).await;
    assert_eq!((code, err["field"].as_str()), (StatusCode::BAD_REQUEST, Some("until")));

    // The publisher marks them; a post is marked once.
    let mark = |id: &str, body: Value| {
        let (c, s) = (&c, &s);
        let url = s.url(&format!("/api/autonomous/social/posts/{id}"));
        async move { post(c, url, ADMIN, &body).await }
    };
    let first = due[0]["id"].as_str().unwrap().to_string();
    let second = due[1]["id"].as_str().unwrap().to_string();
    for (body, field) in [
        (json!({"status": "published"}), "platform_post_id"),
        (json!({"status": "failed"}), "reason"),
        (json!({"status": "posted", "platform_post_id": "x"}), "status"),
        (json!({"status": "published", "platform_post_id": "x", "extra": 1}), "extra"),
    ] {
        let (code, err) = mark(&first, body.clone()).await;
        assert_eq!((code, err["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{body}: {err}");
    }
    let (code, body) = mark(&first, json!({"status": "published", "platform_post_id": "tt-123"})).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let (code, _) = mark(&first, json!({"status": "published", "platform_post_id": "tt-124"})).await;
    assert_eq!(code, StatusCode::CONFLICT);
    let (code, _) = mark(&second, json!({"status": "failed", "reason": "the platform was down"})).await;
    assert_eq!(code, StatusCode::OK);
    let (code, _) = mark(&uuid::Uuid::now_v7().to_string(), json!({"status": "failed", "reason": "x"})).await;
    assert_eq!(code, StatusCode::NOT_FOUND);

    // Shoppers who came from the published post are attributed to it.
    let campaign = format!("social:{first}");
    let mut signals = Vec::new();
    for v in 0..3 {
        let mut x = signal("product_viewed", "t1", &format!("c{v}"));
        x["campaign"] = json!(campaign);
        signals.push(x);
    }
    let mut cart = signal("added_to_cart", "t1", "c0");
    cart["campaign"] = json!(campaign);
    signals.push(cart);
    let mut bought = signal("purchased", "t1", "c0");
    let m = bought.as_object_mut().unwrap();
    m.insert("quantity".into(), json!(2));
    m.insert("unit_price".into(), json!("24.50"));
    m.insert("currency".into(), json!("EUR"));
    m.insert("order_id".into(), json!("o1"));
    m.insert("campaign".into(), json!(campaign));
    signals.push(bought);
    let mut bad = signal("product_viewed", "t1", "d");
    bad["campaign"] = json!("x".repeat(101));
    let (code, err) = post(&c, s.url("/api/signals"), INGEST, &json!({"signals": [bad]})).await;
    assert_eq!((code, err["field"].as_str()), (StatusCode::BAD_REQUEST, Some("signals[0].campaign")), "{err}");
    let (code, body) = post(&c, s.url("/api/signals"), INGEST, &json!({"signals": signals})).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{body}");
    let pos = body["position"].as_u64().unwrap();
    let all = calendar(&c, &s, &format!("?district=toys&min_position={pos}")).await;
    let published = all["posts"].as_array().unwrap().iter().find(|p| p["id"] == first.as_str()).unwrap();
    assert_eq!(published["status"], "published");
    assert_eq!(published["platform_post_id"], "tt-123");
    assert_eq!(
        published["performance"],
        json!({"views": 3, "clicks": 0, "carts": 1, "purchases": 1, "revenue": 49.0}),
        "{published}"
    );
    let failed = all["posts"].as_array().unwrap().iter().find(|p| p["id"] == second.as_str()).unwrap();
    assert_eq!(
        (failed["status"].as_str(), failed["failure"].as_str()),
        (Some("failed"), Some("the platform was down"))
    );
    assert_eq!(all["content_ideas"][0], json!({"term": "wooden kite", "searches": 3, "before": 0}), "{all:#}");

    // A new calendar supersedes the posts still scheduled; what went out stays.
    let again = plan(&c, &s).await;
    assert_eq!(again.len(), 18);
    let superseded = calendar(&c, &s, "?status=superseded").await;
    assert_eq!(superseded["posts"].as_array().unwrap().len(), 16, "18 less one published and one failed");
    let scheduled = calendar(&c, &s, "?status=scheduled").await;
    assert_eq!(scheduled["posts"].as_array().unwrap().len(), 18);
    let (code, err) = get_as(&c, s.url("/api/autonomous/social/calendar?status=gone"), ADMIN).await;
    assert_eq!((code, err["field"].as_str()), (StatusCode::BAD_REQUEST, Some("status")));
}

support::on_both_stores!(calendar_and_publishing);

/// A model writes the posts: a fake review on Instagram (refused: the built-in caption goes out,
/// the model's attempt recorded with its verdicts), a failure on threads (the built-in thread),
/// a good hook on TikTok (published as the model wrote it).
async fn a_models_posts_are_guarded(store: Store) {
    use std::sync::Arc;
    let stand_in = model::start(
        model::Api::ChatCompletions,
        Arc::new(move |r: &model::Request| {
            let p = r.prompt();
            if r.is_embedding() {
                model::Reply::Embedding(vec![0.1, 0.2, 0.3, 0.4])
            } else if p.contains("Instagram caption") {
                model::Reply::Text(
                    "Text: ⭐⭐⭐⭐⭐ \"Best toy ever!\" says Anna. Now 40% off, only today!\nHashtags: toys kids play fun wood"
                        .into(),
                )
            } else if p.contains("thread") {
                model::Reply::Status(503, "overloaded".into())
            } else {
                model::Reply::Text("Text: Say hello to the wooden train! 🚂\nHashtags: woodentrain toys beech".into())
            }
        }),
    )
    .await;
    let mut env = stand_in.env();
    env.extend([
        ("MALL_JOBS", "social_calendar=0"),
        // One subject (the district's calendar) may spend this many calls an hour; beyond it the
        // built-in writer writes.
        ("MALL_GENERATIONS_PER_PRODUCT", "12"),
    ]);
    let c = client();
    let s = Server::start(&store, &env);
    setup(&c, &s).await;
    let posts = plan(&c, &s).await;
    assert_eq!(posts.len(), 18);
    // The first twelve posts (in time) had a model's attempt; the budget wrote the rest by hand.
    let attempted = |p: &Value| p["generator"] != "offline-social/1" || p["refused"].is_object();
    assert_eq!(posts.iter().filter(|p| attempted(p)).count(), 12, "{posts:#?}");
    assert!(posts.iter().skip(12).all(|p| !attempted(p)), "the budget's share is spent in order");
    for p in posts.iter().take(12) {
        let all = p.to_string();
        assert!(!all.contains("Anna") || p["refused"].is_object(), "a fake review only in the refused attempt");
        match p["platform"].as_str().unwrap() {
            "tiktok" => {
                assert_ne!(p["generator"], "offline-social/1", "{p}");
                assert!(p["text"].as_str().unwrap().starts_with("Say hello to the wooden train!"), "{p}");
            }
            "instagram" => {
                assert_eq!(p["generator"], "offline-social/1", "{p}");
                assert!(!p["text"].as_str().unwrap().contains("40%"), "{p}");
                let refused = &p["refused"];
                assert!(refused["raw_output"].as_str().unwrap().contains("Best toy ever"), "{p}");
                let failed: Vec<&str> = refused["verdicts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|v| v["passed"] == false)
                    .map(|v| v["check"].as_str().unwrap())
                    .collect();
                assert!(failed.contains(&"claims") && failed.contains(&"pricing"), "{failed:?}");
            }
            _ => {
                assert_eq!(p["generator"], "offline-social/1", "{p}");
                assert!(p["refused"]["verdicts"][0]["detail"].as_str().unwrap().contains("the model failed"), "{p}");
            }
        }
    }
}

support::on_both_stores!(a_models_posts_are_guarded);

/// The webhook publisher: with posts sent a week ahead, every post of a calendar goes to the
/// publisher's webhook once acknowledged (the webhook refuses the first two tries), each with its
/// idempotency key, and is marked published with the id the webhook answered.
async fn the_webhook_publishes_every_post(store: Store) {
    use std::sync::{Arc, Mutex};
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/posts", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(2));
    let (record, fail) = (seen.clone(), failures.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let (record, fail) = (record.clone(), fail.clone());
            tokio::spawn(async move {
                let Some((head, _path, body)) = model::read_request_with_head(&mut sock).await else { return };
                let key = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("idempotency-key").then(|| v.trim().to_string())
                    })
                    .unwrap_or_default();
                let (status, answer) = if fail.load(std::sync::atomic::Ordering::SeqCst) > 0 {
                    fail.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    ("503 Service Unavailable", String::from("{}"))
                } else {
                    let n = {
                        let mut r = record.lock().unwrap();
                        r.push((key, serde_json::from_slice(&body).unwrap_or(Value::Null)));
                        r.len()
                    };
                    ("200 OK", format!("{{\"id\": \"pl-{n}\"}}"))
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
            });
        }
    });
    let c = client();
    let env =
        [("MALL_JOBS", "social_calendar=0"), ("MALL_SOCIAL_WEBHOOK", hook.as_str()), ("MALL_SOCIAL_AHEAD", "691200")];
    let s = Server::start(&store, &env);
    setup(&c, &s).await;
    let posts = plan(&c, &s).await;
    assert_eq!(posts.len(), 18);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let published = calendar(&c, &s, "?status=published").await;
        if published["posts"].as_array().unwrap().len() == 18 {
            let ids: BTreeSet<&str> = published["posts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["platform_post_id"].as_str().unwrap())
                .collect();
            assert_eq!(ids.len(), 18, "each its own platform id: {ids:?}");
            assert!(ids.iter().all(|i| i.starts_with("pl-")));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{published:#}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let seen = seen.lock().unwrap().clone();
    let keys: BTreeSet<&str> = seen.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!((seen.len(), keys.len()), (18, 18), "each post acknowledged once, under its own key");
    let planned: BTreeSet<&str> = posts.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(keys, planned);
    assert!(seen.iter().all(|(_, b)| b["scheduled_at"].is_string() && b["platform"].is_string()), "{seen:?}");
    assert_eq!(failures.load(std::sync::atomic::Ordering::SeqCst), 0, "the refusals were tried again");
}

support::on_both_stores!(the_webhook_publishes_every_post);
