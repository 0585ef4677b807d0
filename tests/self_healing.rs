//! Self-healing end to end over HTTP, on both stores: a catalog seeded with broken images (a
//! missing file, a page instead of an image, a private address, one that comes back), missing
//! copy, a zero price, a duplicate listing, an orphan from an older log and — on PostgreSQL,
//! where a person can reach the read tables — rows that disagree with their products is checked
//! and healed; a second check decides nothing new; the admin webhook receives every notification
//! exactly as recorded, after its own failure; `mall replay --verify` reproduces every check.

#[path = "support/model.rs"]
mod model;
mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::http::*;
use support::server::*;
use tokio::io::AsyncWriteExt;

/// A loopback host of images and the admin's webhook.
struct Host {
    addr: String,
    /// Whether `/flaky.png` is an image now.
    flaky_ok: Arc<AtomicBool>,
    /// Every webhook request: its idempotency key and body.
    hooks: Arc<Mutex<Vec<(String, Value)>>>,
    /// Webhook requests answered 503 before the first 2xx.
    failures: Arc<AtomicUsize>,
    /// Every webhook request, answered or not.
    attempts: Arc<AtomicUsize>,
}

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";

async fn host() -> Host {
    host_failing(2).await
}

/// A host whose webhook fails `failures` times before it takes anything.
async fn host_failing(failures: usize) -> Host {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let flaky_ok = Arc::new(AtomicBool::new(false));
    let hooks: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let failures = Arc::new(AtomicUsize::new(failures));
    let attempts = Arc::new(AtomicUsize::new(0));
    let (ok, seen, fail, tried) = (flaky_ok.clone(), hooks.clone(), failures.clone(), attempts.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let (ok, seen, fail, tried) = (ok.clone(), seen.clone(), fail.clone(), tried.clone());
            tokio::spawn(async move {
                let Some((head, path, body)) = model::read_request_with_head(&mut sock).await else { return };
                let (status, kind, bytes): (u16, &str, Vec<u8>) = match path.as_str() {
                    "/good.png" => (200, "image/png", PNG.to_vec()),
                    "/flaky.png" if ok.load(Ordering::SeqCst) => (200, "image/png", PNG.to_vec()),
                    "/page" => (200, "text/html", b"<html>not an image</html>".to_vec()),
                    "/hook" => {
                        tried.fetch_add(1, Ordering::SeqCst);
                        // The webhook fails a number of times before it takes anything.
                        if fail.load(Ordering::SeqCst) > 0 {
                            fail.fetch_sub(1, Ordering::SeqCst);
                            (503, "text/plain", b"busy".to_vec())
                        } else {
                            let key = head
                                .lines()
                                .find_map(|l| {
                                    let (k, v) = l.split_once(':')?;
                                    k.eq_ignore_ascii_case("idempotency-key").then(|| v.trim().to_string())
                                })
                                .unwrap_or_default();
                            seen.lock().unwrap().push((key, serde_json::from_slice(&body).unwrap_or(Value::Null)));
                            (200, "application/json", b"{}".to_vec())
                        }
                    }
                    _ => (404, "text/plain", b"not found".to_vec()),
                };
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    bytes.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&bytes).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    Host { addr, flaky_ok, hooks, failures, attempts }
}

fn with_image(mut p: Value, url: &str) -> Value {
    p["image_url"] = json!(url);
    p
}

/// Runs a check now; returns the report.
async fn check(c: &reqwest::Client, s: &Server) -> Value {
    let (code, body) = post(c, s.url("/api/autonomous/health"), ADMIN, &json!({})).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body
}

fn issue<'a>(report: &'a Value, kind: &str, subject: &str) -> Option<&'a Value> {
    report["issues"].as_array().unwrap().iter().find(|i| i["kind"] == kind && i["subject"] == subject)
}

fn open_issue<'a>(report: &'a Value, kind: &str, subject: &str) -> &'a Value {
    let i = issue(report, kind, subject).unwrap_or_else(|| panic!("no {kind} issue for {subject}: {report:#}"));
    assert_eq!(i["status"], "open", "{i}");
    i
}

async fn shown(c: &reqwest::Client, s: &Server, id: &str, position: &Value) -> Value {
    let (code, body) = get(c, s.url(&format!("/api/products/{id}?min_position={position}"))).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body
}

async fn heals(store: Store, dir: &std::path::Path) {
    let c = client();
    let h = host().await;
    let base = format!("http://{}", h.addr);
    // A log from before the catalog's rules: a product in a district never opened.
    let seed = dir.join("older.ndjson");
    let orphan = json!({"type": "product_listed", "product_id": "orphan1", "district": "gone", "title": "Lost kite",
        "description": "A kite.", "price": "9.00", "currency": "EUR", "stock": 1});
    std::fs::write(&seed, format!("{orphan}\n")).unwrap();
    let (code, _, err) = mall(&store, &["debug", "append-raw", seed.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");

    let hook = format!("{base}/hook");
    let env = [
        ("MALL_FETCH_ALLOW", h.addr.as_str()),
        ("MALL_HEALTH_WEBHOOK", hook.as_str()),
        ("MALL_JOBS", "health_check=0"),
    ];
    let s = Server::start(&store, &env);
    let (code, _) = get(&c, s.url("/api/autonomous/health")).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED, "the health report is an admin's");
    let (code, body) = post(&c, s.url("/api/autonomous/health"), INGEST, &json!({})).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    // Product intelligence waits, so that the missing copy is still missing when the check runs.
    let (code, body) =
        post(&c, s.url("/api/autonomous"), ADMIN, &json!({"action": "stop", "system": "product_intelligence"})).await;
    assert_eq!(code, StatusCode::OK, "{body}");

    let (code, _) = post(&c, s.url("/api/districts"), ADMIN, &district("toys", "playful")).await;
    assert_eq!(code, StatusCode::CREATED);
    let listings = [
        with_image(product("good1", "toys", "Wooden train", "A train of beech."), &format!("{base}/good.png")),
        with_image(product("broken1", "toys", "Rocking <horse>", "A horse."), &format!("{base}/missing.png")),
        with_image(product("page1", "toys", "Puzzle box", "A box."), &format!("{base}/page")),
        with_image(product("private1", "toys", "Spinning top", "A top."), "http://10.0.0.7/top.png"),
        with_image(product("flaky1", "toys", "Kite", "A kite."), &format!("{base}/flaky.png")),
        product("nodesc", "toys", "Marbles", ""),
        json!({"product_id": "free1", "district": "toys", "title": "Yo-yo", "description": "A yo-yo.", "price": "0",
               "currency": "EUR", "stock": 3}),
        product("dup-a", "toys", "Stacking rings", "Rings."),
        product("dup-b", "toys", "stacking  RINGS", "Rings again."),
        product("tamper1", "toys", "Drum", "A drum."),
        product("neg1", "toys", "Whistle", "A whistle."),
    ];
    let mut position = json!(0);
    for p in &listings {
        let (code, body) = post(&c, s.url("/api/products"), ADMIN, p).await;
        assert_eq!(code, StatusCode::CREATED, "{body}");
        position = body["position"].clone();
    }
    let postgres = matches!(store, Store::Postgres { .. });
    if let Store::Postgres { url, .. } = &store {
        // Someone reaches into the read tables.
        shown(&c, &s, "neg1", &position).await;
        let (db, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        db.batch_execute(
            "UPDATE products SET title = 'Tampered' WHERE product_id = 'tamper1';
             UPDATE products SET stock = -5 WHERE product_id = 'neg1';",
        )
        .await
        .unwrap();
    }

    // The first check finds each kind of issue and fixes what it can.
    let first = check(&c, &s).await;
    assert!(first["last_run"].is_string(), "{first:#}");
    for p in ["broken1", "page1", "private1", "flaky1"] {
        let i = open_issue(&first, "broken_image", &format!("product:{p}"));
        assert_eq!((i["severity"].as_str(), i["remedy"].as_str()), (Some("high"), Some("fix")), "{i}");
        assert_eq!(i["repair"]["change"]["kind"], "placeholder", "{i}");
    }
    assert_eq!(open_issue(&first, "broken_image", "product:private1")["evidence"]["refused"], "true");
    assert!(issue(&first, "broken_image", "product:good1").is_none(), "a working image: {first:#}");
    let missing = open_issue(&first, "missing_copy", "product:nodesc");
    assert!(missing["evidence"]["missing"].as_str().unwrap().contains("description"), "{missing}");
    assert!(missing["task_id"].is_string(), "missing copy is a task for product intelligence: {missing}");
    assert_eq!(open_issue(&first, "invalid_price", "product:free1")["remedy"], "person");
    assert_eq!(open_issue(&first, "duplicate_listing", "product:dup-b")["evidence"]["duplicate_of"], "dup-a");
    assert!(issue(&first, "duplicate_listing", "product:dup-a").is_none(), "the first listing is the original");
    assert_eq!(open_issue(&first, "orphan", "product:orphan1")["evidence"]["district"], "gone");
    if postgres {
        let row = open_issue(&first, "row_mismatch", "product:tamper1");
        assert_eq!(row["evidence"]["fields"], "title", "{row}");
        assert_eq!(open_issue(&first, "negative_stock", "product:neg1")["repair"]["change"]["stock"], 12);
    }
    let fixes = first["fixes"].as_array().unwrap().len();
    assert_eq!(fixes, if postgres { 6 } else { 4 }, "{first:#}");
    assert!(first["open"]["by_kind"]["broken_image"] == 4 && first["open"]["by_severity"]["high"].as_u64() >= Some(6));

    // Shoppers see mall's placeholder, in the district's style, at a stable URL.
    let head = first["last_check"]["position"].clone();
    let broken = shown(&c, &s, "broken1", &head).await;
    assert_eq!(broken["image_url"], "/api/products/broken1/placeholder.svg", "{broken}");
    let svg = c.get(s.url("/api/products/broken1/placeholder.svg")).send().await.unwrap();
    assert_eq!(svg.status(), StatusCode::OK);
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    let svg = svg.text().await.unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("Rocking &lt;horse&gt;") && !svg.contains("<horse>"), "{svg}");
    assert_eq!(shown(&c, &s, "good1", &head).await["image_url"], format!("{base}/good.png"));
    if postgres {
        let (code, body) = get(&c, s.url("/api/products/nope/placeholder.svg")).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(shown(&c, &s, "tamper1", &head).await["title"], "Drum", "the row is rewritten from the product");
        assert_eq!(shown(&c, &s, "neg1", &head).await["stock"], 12);
    }

    // A second check finds the fixed issues closed and does nothing else.
    let second = check(&c, &s).await;
    assert_eq!(second["fixes"].as_array().unwrap().len(), fixes, "no repair made twice: {second:#}");
    for p in ["broken1", "page1", "private1", "flaky1"] {
        let again = open_issue(&second, "broken_image", &format!("product:{p}"));
        assert_eq!(again["repairs"], 1, "{again}");
        assert_eq!(again["issue_id"], open_issue(&first, "broken_image", &format!("product:{p}"))["issue_id"]);
    }
    if postgres {
        let closed = issue(&second, "row_mismatch", "product:tamper1").unwrap();
        assert_eq!(closed["status"], "closed", "{closed}");
        assert_eq!(issue(&second, "negative_stock", "product:neg1").unwrap()["status"], "closed");
    }

    // The image comes back and copy gets written: the next checks restore and close.
    h.flaky_ok.store(true, Ordering::SeqCst);
    let (code, body) =
        post(&c, s.url("/api/autonomous"), ADMIN, &json!({"action": "start", "system": "product_intelligence"})).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let deadline = Instant::now() + Duration::from_secs(90);
    let healed = loop {
        let r = check(&c, &s).await;
        let closed = |kind: &str, p: &str| issue(&r, kind, p).is_some_and(|i| i["status"] == "closed");
        if closed("missing_copy", "product:nodesc") && closed("broken_image", "product:flaky1") {
            break r;
        }
        assert!(Instant::now() < deadline, "not healed in time: {r:#}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let flaky = issue(&healed, "broken_image", "product:flaky1").unwrap();
    assert_eq!(flaky["repair"]["change"], json!({"kind": "restore", "image_url": format!("{base}/flaky.png")}));
    assert_eq!(flaky["close_reason"], "the image works again");
    let head = healed["last_check"]["position"].clone();
    assert_eq!(shown(&c, &s, "flaky1", &head).await["image_url"], format!("{base}/flaky.png"));
    let nodesc = shown(&c, &s, "nodesc", &head).await;
    assert!(!nodesc["description"].as_str().unwrap().is_empty(), "{nodesc}");
    // What only a person can fix stays open.
    for (kind, p) in [("invalid_price", "free1"), ("duplicate_listing", "dup-b"), ("orphan", "orphan1")] {
        open_issue(&healed, kind, &format!("product:{p}"));
    }

    // Every notification reached the webhook, after its failures, exactly as recorded.
    let deadline = Instant::now() + Duration::from_secs(60);
    let report = loop {
        let (code, r) = get_as(&c, s.url("/api/autonomous/health"), ADMIN).await;
        assert_eq!(code, StatusCode::OK, "{r}");
        let all = r["notifications"].as_array().unwrap();
        if !all.is_empty() && all.iter().all(|n| n["delivered_at"].is_string()) {
            break r;
        }
        assert!(Instant::now() < deadline, "not all notifications delivered: {r:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(h.failures.load(Ordering::SeqCst), 0, "the webhook's failures were retried");
    let recorded: BTreeMap<String, Value> = report["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["notification_id"].as_str().unwrap().to_string(), n["body"].clone()))
        .collect();
    // Repairs (4 placeholders, 1 restore, 2 rows on PostgreSQL) and the 3 issues for a person.
    assert_eq!(recorded.len(), if postgres { 10 } else { 8 }, "{report:#}");
    let received: BTreeMap<String, Value> = h.hooks.lock().unwrap().iter().cloned().collect();
    assert_eq!(received, recorded, "the webhook receives each notification exactly as recorded");
    for (key, body) in &received {
        assert_eq!(body["id"].as_str(), Some(key.as_str()), "the idempotency key is the notification's id");
    }
    assert!(report["notifications"].as_array().unwrap().iter().any(|n| n["attempts"].as_u64() > Some(1)));

    // Replay reproduces every check's decisions.
    let (code, out, err) = mall(&store, &["replay", "health-mall", "--verify", "--json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(v["verification"]["checked"].as_u64() >= Some(3), "{v:#}");
    assert_eq!(v["verification"]["mismatches"], json!([]), "{v:#}");
}

#[tokio::test]
async fn a_seeded_catalog_is_healed_on_the_embedded_store() {
    let (store, dir) = Store::embedded();
    heals(store, dir.path()).await;
}

#[tokio::test]
async fn a_seeded_catalog_is_healed_on_postgres() {
    let (store, dir) = Store::postgres().await;
    heals(store, dir.path()).await;
}

/// A webhook that never takes anything costs one attempt per wait — the notifications behind the
/// first wait with it, in order — and nothing is marked delivered.
#[tokio::test]
async fn a_webhook_that_is_always_down_is_tried_sparingly_and_nothing_is_lost() {
    let (store, _dir) = Store::embedded();
    let c = client();
    let h = host_failing(usize::MAX).await;
    let base = format!("http://{}", h.addr);
    let hook = format!("{base}/hook");
    let env = [
        ("MALL_FETCH_ALLOW", h.addr.as_str()),
        ("MALL_HEALTH_WEBHOOK", hook.as_str()),
        ("MALL_JOBS", "health_check=0"),
    ];
    let s = Server::start(&store, &env);
    post(&c, s.url("/api/districts"), ADMIN, &district("toys", "playful")).await;
    for i in 0..4 {
        let p = with_image(
            product(&format!("b{i}"), "toys", &format!("Top {i}"), "A top."),
            &format!("{base}/missing.png"),
        );
        let (code, _) = post(&c, s.url("/api/products"), ADMIN, &p).await;
        assert_eq!(code, StatusCode::CREATED);
    }
    let report = check(&c, &s).await;
    assert_eq!(report["notifications"].as_array().unwrap().len(), 4, "{report:#}");
    tokio::time::sleep(Duration::from_secs(6)).await;
    // Tries at about 0, 1 and 3 s (then 7 s): a handful, not one per notification per wait.
    let tried = h.attempts.load(Ordering::SeqCst);
    assert!((2..=4).contains(&tried), "{tried} attempts in 6 s");
    let (_, r) = get_as(&c, s.url("/api/autonomous/health"), ADMIN).await;
    assert!(r["notifications"].as_array().unwrap().iter().all(|n| n["delivered_at"].is_null()), "{r:#}");
}
