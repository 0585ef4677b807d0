//! Read-side benchmarks:
//! - `rebuild_pg`: rebuilding the read tables (catalog and personalization) from a PostgreSQL log
//!   of 1,000,000 events into fresh PostgreSQL tables (events/s printed per projection);
//! - `storefront_reads`: `GET /api/districts/{slug}/products` against a real `mall serve` from
//!   this (second) process, 64 concurrent keep-alive clients, for the embedded and the PostgreSQL
//!   read side: requests/s, p50 and p99 printed;
//! - `restart`: `mall serve` on the embedded store with a synthetic log of a million events
//!   (`mall debug synth`: 10 districts, 5,000 products, 50,000 shoppers): the first start (the
//!   whole log folded) and restarts (the tables' images and the tail), until the actors and
//!   every projection have caught up with the log; seconds and peak RSS printed (the restarts'
//!   median).
//! - `personalized_page`: `GET /api/autonomous/personalize?userId=` (profile, top picks with
//!   reasons, pattern, the personal ranking of 20) against `mall serve` on the embedded store and
//!   read side with a synthetic log of 10,000 products, 100,000 shoppers and 1,000,000 signals,
//!   one client then 16: p50 and p99 printed.
//!
//! `DATABASE_URL` names the server (default `postgres://postgres@127.0.0.1:5432/postgres`); the
//! 1M-event log is kept in the database `mall_bench_rebuild_1m` and reused by later runs.
//! `cargo bench --bench projections -- rebuild_pg` runs one of them.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use mall_events::domain::*;
use mall_events::ids::*;
use mall_events::postgres::{PgConfig, PgStore};
use mall_events::{EventStore, ExpectedVersion, NewEvent, StreamId};
use mall_projections::postgres::PgSink;
use mall_projections::runner::{Projection, catch_up};
use serde_json::{Value, json};
use uuid::Uuid;

const EVENTS: u64 = 1_000_000;
const PRODUCTS: u64 = 10_000;

fn admin_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn db_url(name: &str) -> String {
    let base = admin_url();
    format!("{}/{name}", &base[..base.rfind('/').unwrap()])
}

async fn database(name: &str, fresh: bool) -> String {
    let (client, conn) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    if fresh {
        client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.unwrap();
    }
    let exists = client.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name]).await.unwrap().is_some();
    if !exists {
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    }
    db_url(name)
}

fn signal(i: u64) -> DomainEvent {
    let p = ProductId::parse(format!("p{}", (i * 7919) % PRODUCTS)).unwrap();
    let (id, shopper, session, at) = (
        Uuid::now_v7(),
        ShopperId::parse(format!("s{}", i % 50_000)).unwrap(),
        SessionId::parse(format!("x{}", i % 50_000)).unwrap(),
        Utc::now(),
    );
    match i % 20 {
        0..=2 => DomainEvent::ImpressionServed(ImpressionServed {
            id,
            campaign: None,
            shopper_id: shopper,
            session_id: session,
            at,
            product_id: p,
            list: ListName::parse("home").unwrap(),
            position: (i % 30) as u32,
            policy: None,
        }),
        3 | 4 => DomainEvent::AddedToCart(AddedToCart {
            id,
            campaign: None,
            shopper_id: shopper,
            session_id: session,
            at,
            product_id: p,
            quantity: 1,
        }),
        5 => DomainEvent::Purchased(Purchased {
            id,
            campaign: None,
            shopper_id: shopper,
            session_id: session,
            at,
            product_id: p,
            order_id: OrderId::parse(format!("o{i}")).unwrap(),
            quantity: 1,
            unit_price: Price::parse("24.50").unwrap(),
            currency: Currency::parse("EUR").unwrap(),
        }),
        _ => DomainEvent::ProductViewed(ProductViewed {
            id,
            campaign: None,
            shopper_id: shopper,
            session_id: session,
            at,
            product_id: p,
            dwell_ms: 2_000 + i % 20_000,
        }),
    }
}

fn listed(p: u64) -> DomainEvent {
    DomainEvent::ProductListed(ProductListed {
        product_id: ProductId::parse(format!("p{p}")).unwrap(),
        district: DistrictSlug::parse(format!("d{}", p % 8)).unwrap(),
        title: format!("Product {p}"),
        description: "A well made thing, sturdy and simple, for every day of the week.".into(),
        price: Price::parse("24.50").unwrap(),
        currency: Currency::parse("EUR").unwrap(),
        tags: vec!["wood".into(), "gift".into()],
        attributes: Default::default(),
        image_url: None,
        stock: 10,
    })
}

/// The 1M-event log, appended once and kept.
async fn log() -> (String, Arc<dyn EventStore>) {
    let url = database("mall_bench_rebuild_1m", false).await;
    let store: Arc<dyn EventStore> = Arc::new(PgStore::connect(PgConfig::new(&url)).await.unwrap());
    let have = store.stats().await.unwrap().events;
    if have < EVENTS {
        assert_eq!(have, 0, "a partial bench log: drop the database mall_bench_rebuild_1m");
        println!("appending the {EVENTS}-event log (once)…");
        let mut batch: Vec<(StreamId, NewEvent)> = (0..PRODUCTS)
            .map(|p| {
                let e = listed(p);
                (e.stream_id(), NewEvent::from_domain(&e, Uuid::now_v7(), vec![]).unwrap())
            })
            .collect();
        batch.extend((0..EVENTS - PRODUCTS).map(|i| {
            let e = signal(i);
            let district = format!("district:d{}", ((i * 7919) % PRODUCTS) % 8);
            (e.stream_id(), NewEvent::from_domain(&e, e.signal_id().unwrap(), vec![district]).unwrap())
        }));
        for chunk in batch.chunks(20_000) {
            let mut by_stream: std::collections::BTreeMap<StreamId, Vec<NewEvent>> = Default::default();
            for (s, e) in chunk {
                by_stream.entry(s.clone()).or_default().push(e.clone());
            }
            let appends = by_stream.into_iter().map(|(s, events)| {
                let store = store.clone();
                async move { store.append(&s, ExpectedVersion::Any, events).await.unwrap() }
            });
            futures_util::future::join_all(appends).await;
        }
    }
    (url, store)
}

/// Events per rebuild batch (`MALL_BENCH_BATCH`, default that of `mall projections rebuild`).
fn batch() -> usize {
    std::env::var("MALL_BENCH_BATCH").ok().and_then(|b| b.parse().ok()).unwrap_or(mall::readside::REBUILD_BATCH)
}

fn rebuild_pg() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let (_, store) = log().await;
        let projections: Vec<Box<dyn Projection>> = vec![
            Box::new(mall_projections::catalog::Catalog),
            Box::new(mall_projections::personalization::Personalization),
            Box::new(mall_projections::optimization::Optimization),
        ];
        let mut total = Duration::ZERO;
        for p in &projections {
            let url = database("mall_bench_rebuild_target", true).await;
            let sink =
                PgSink::open(&url, p.name(), p.version(), p.tables(), true).await.unwrap().cached().await.unwrap();
            let started = Instant::now();
            let at = catch_up(&*store, &**p, &sink, batch(), |_| {}).await.unwrap();
            let took = started.elapsed();
            total += took;
            println!(
                "rebuild_pg/{}: {at} events in {:.2} s: {:.0} events/s",
                p.name(),
                took.as_secs_f64(),
                at as f64 / took.as_secs_f64()
            );
        }
        println!(
            "rebuild_pg/all in turn: {EVENTS} events through {} projections in {:.2} s: {:.0} events/s",
            projections.len(),
            total.as_secs_f64(),
            EVENTS as f64 / total.as_secs_f64()
        );
        // All three in one pass over the log, as `mall projections rebuild --all` does.
        let url = database("mall_bench_rebuild_target", true).await;
        let mut parts: Vec<(Arc<dyn Projection>, Arc<dyn mall_projections::runner::Sink>)> = Vec::new();
        for p in [
            Arc::new(mall_projections::catalog::Catalog) as Arc<dyn Projection>,
            Arc::new(mall_projections::personalization::Personalization),
            Arc::new(mall_projections::optimization::Optimization),
        ] {
            let sink =
                PgSink::open(&url, p.name(), p.version(), p.tables(), true).await.unwrap().cached().await.unwrap();
            parts.push((p, Arc::new(sink)));
        }
        let started = Instant::now();
        mall_projections::runner::catch_up_all(store.clone(), &parts, batch(), |_| {}).await.unwrap();
        let took = started.elapsed();
        println!(
            "rebuild_pg/all in one pass: {EVENTS} events through {} projections in {:.2} s: {:.0} events/s",
            projections.len(),
            took.as_secs_f64(),
            EVENTS as f64 / took.as_secs_f64()
        );
    });
}

/// Starts `mall serve` with `args` (store flags first) and `env`; returns (child, base URL).
fn spawn_serve(args: &[String], env: &[(&str, &str)]) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mall"))
        .args(args)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("MALL_ADMIN_TOKEN", "admin")
        .env("MALL_LOG", "error")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let line = BufReader::new(child.stdout.take().unwrap()).lines().next().unwrap().unwrap();
    (child, line.strip_prefix("mall: serving on ").unwrap().to_string())
}

/// Starts `mall serve` on `dir` without generations (seeded by [`seed`]); returns (child, base URL).
fn server(store_args: &[String], dir: &std::path::Path) -> (std::process::Child, String) {
    let mut args = store_args.to_vec();
    args.extend(["--data-dir".to_string(), dir.join("data").display().to_string()]);
    spawn_serve(&args, &[("MALL_GENERATIONS_PER_HOUR", "0")])
}

async fn seed(client: &reqwest::Client, base: &str) -> u64 {
    for d in 0..8 {
        let body = json!({"slug": format!("d{d}"), "name": format!("District {d}"), "personality": {"tone": "warm", "style": "plain", "audience": "everyone"}});
        client.post(format!("{base}/api/districts")).bearer_auth("admin").json(&body).send().await.unwrap();
    }
    for p in 0..400 {
        let body = json!({"product_id": format!("p{p}"), "district": format!("d{}", p % 8), "title": format!("Product {p}"),
            "description": "A well made thing, sturdy and simple, for every day of the week.", "price": "24.50", "currency": "EUR",
            "tags": ["wood"], "attributes": {}, "stock": 10});
        client.post(format!("{base}/api/products")).bearer_auth("admin").json(&body).send().await.unwrap();
    }
    let mut last = 0;
    for b in 0..20 {
        let signals: Vec<Value> = (0..1_000)
            .map(|i| {
                let n = b * 1_000 + i;
                json!({"type": if n % 9 == 0 { "added_to_cart" } else { "product_viewed" }, "id": Uuid::now_v7(), "shopper_id": format!("s{}", n % 2_000),
                    "session_id": "x", "at": Utc::now().to_rfc3339(), "product_id": format!("p{}", (n * 31) % 400), "dwell_ms": 3000, "quantity": 1})
            })
            .map(|mut v: Value| {
                let m = v.as_object_mut().unwrap();
                if m["type"] == "added_to_cart" { m.remove("dwell_ms"); } else { m.remove("quantity"); }
                v
            })
            .collect();
        let r: Value = client
            .post(format!("{base}/api/signals"))
            .bearer_auth("admin")
            .json(&json!({"signals": signals}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        last = r["position"].as_u64().unwrap();
    }
    last
}

/// One GET over a kept-alive connection, HTTP/1.1 by hand (what `wrk` does: the client must
/// cost little, since it shares the two cores with the server), with extra header lines (each
/// ending in CRLF); returns the status.
async fn request_as(conn: &mut tokio::net::TcpStream, buf: &mut Vec<u8>, path: &str, headers: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let req = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n{headers}\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    buf.clear();
    let mut chunk = [0u8; 16 * 1024];
    let (head_end, length) = loop {
        let n = conn.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..i]).unwrap().to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            break (i + 4, length);
        }
    };
    while buf.len() < head_end + length {
        let n = conn.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
    }
    std::str::from_utf8(&buf[9..12]).unwrap().parse().unwrap()
}

/// `clients` connections, each asking for `path(client, request)` back to back for `seconds`
/// with extra `headers` (each line ending in CRLF); returns (requests/s, p50, p99).
async fn load_paths(
    base: &str,
    seconds: u64,
    clients: usize,
    headers: &'static str,
    path: fn(usize, usize) -> String,
) -> (f64, Duration, Duration) {
    let addr = base.strip_prefix("http://").unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
            conn.set_nodelay(true).unwrap();
            let mut buf = Vec::with_capacity(64 * 1024);
            let mut lat = Vec::new();
            let mut i = 0;
            while Instant::now() < deadline {
                let path = path(c, i);
                let started = Instant::now();
                assert_eq!(request_as(&mut conn, &mut buf, &path, headers).await, 200);
                lat.push(started.elapsed());
                i += 1;
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let rps = all.len() as f64 / seconds as f64;
    (rps, all[all.len() / 2], all[(all.len() as f64 * 0.99) as usize])
}

/// Rankings, half anonymous, half for one of 2,000 shoppers.
async fn load(base: &str, seconds: u64, clients: usize) -> (f64, Duration, Duration) {
    load_paths(base, seconds, clients, "", |c, n| {
        let i = c + n;
        if i % 2 == 0 {
            format!("/api/districts/d{}/products", i % 8)
        } else {
            format!("/api/districts/d{}/products?shopper=s{}", i % 8, (i * 7 + c) % 2_000)
        }
    })
    .await
}

fn storefront_reads() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    for kind in ["embedded", "postgres"] {
        let dir = tempfile::tempdir().unwrap();
        let args: Vec<String> = match kind {
            "postgres" => vec![
                "--store".into(),
                "postgres".into(),
                "--database-url".into(),
                rt.block_on(database("mall_bench_reads", true)),
            ],
            _ => vec![],
        };
        let (mut child, base) = server(&args, dir.path());
        rt.block_on(async {
            let client = reqwest::Client::new();
            let last = seed(&client, &base).await;
            client.get(format!("{base}/api/districts?min_position={last}")).send().await.unwrap();
            for clients in [16, 32, 64] {
                let (rps, p50, p99) = load(&base, 10, clients).await;
                println!("storefront_reads/{kind}/{clients} clients: {rps:.0} requests/s, p50 {p50:?}, p99 {p99:?} (50 products per district, half personalized)");
            }
        });
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Starts `mall serve` on `data`, waits until the actors and every projection have applied the
/// whole log, and stops it (SIGTERM); returns (seconds, peak RSS in MB).
fn start_until_caught_up(rt: &tokio::runtime::Runtime, data: &std::path::Path) -> (f64, f64) {
    let started = Instant::now();
    let (mut child, base) = spawn_serve(&["--data-dir".to_string(), data.display().to_string()], &[]);
    let client = reqwest::Client::new();
    rt.block_on(async {
        loop {
            let health: Value = client.get(format!("{base}/healthz")).send().await.unwrap().json().await.unwrap();
            let projections: Value = client
                .get(format!("{base}/api/admin/projections"))
                .bearer_auth("admin")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let log = health["log_position"].as_u64().unwrap();
            let read = projections["projections"].as_array().unwrap().iter();
            if health["actors_position"].as_u64() >= Some(log)
                && read.map(|p| p["lag"]["checkpoint"].as_u64().unwrap()).min() >= Some(log)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let took = started.elapsed().as_secs_f64();
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let peak_kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    (took, peak_kb / 1024.0)
}

/// `mall --data-dir DATA ARGS...`, which must succeed; its output.
fn mall_in(data: &std::path::Path, args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mall"))
        .args(["--data-dir", &data.display().to_string()])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// An embedded store in `dir` holding `mall debug synth SYNTH...`; its data directory.
fn synthetic_store(dir: &std::path::Path, synth: &[&str]) -> std::path::PathBuf {
    let (data, file) = (dir.join("data"), dir.join("synth.ndjson"));
    let args: Vec<&str> = ["debug", "synth"].into_iter().chain(synth.iter().copied()).collect();
    std::fs::write(&file, mall_in(&data, &args)).unwrap();
    mall_in(&data, &["import", &file.display().to_string()]);
    data
}

fn restart() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic_store(dir.path(), &["--signals", "1000000"]);
    let mall = |args: &[&str]| mall_in(&data, args);
    let (first, first_rss) = start_until_caught_up(&rt, &data);
    println!("restart/first start (the whole log folded): {first:.2} s, peak RSS {first_rss:.0} MB");
    let mut runs: Vec<(f64, f64)> = (0..5).map(|_| start_until_caught_up(&rt, &data)).collect();
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (took, rss) = runs[runs.len() / 2];
    let events = String::from_utf8(mall(&["events", "stats", "--json"])).unwrap();
    println!("restart/restart (images and the tail): median {took:.2} s, peak RSS {rss:.0} MB; log {}", events.trim());
}

fn personalized_page() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let synth = ["--products", "10000", "--shoppers", "100000", "--signals", "1000000"];
    let data = synthetic_store(dir.path(), &synth);
    let (first, _) = start_until_caught_up(&rt, &data);
    println!("personalized_page: 10k products, 100k shoppers, 1M signals folded in {first:.1} s");
    let (mut child, base) = spawn_serve(
        &["--data-dir".to_string(), data.display().to_string()],
        &[("MALL_GENERATIONS_PER_HOUR", "0"), ("MALL_INGEST_TOKEN", "ingest")],
    );
    rt.block_on(async {
        let client = reqwest::Client::new();
        let stats: Value = client.get(format!("{base}/healthz")).send().await.unwrap().json().await.unwrap();
        let log = stats["log_position"].as_u64().unwrap();
        // Wait for the read side and the recommender to have folded the log.
        let url = format!("{base}/api/autonomous/personalize?userId=s1&min_position={log}");
        let first: Value = client.get(url).bearer_auth("ingest").send().await.unwrap().json().await.unwrap();
        assert!(first["top_picks"].as_array().is_some_and(|p| !p.is_empty()), "{first}");
        for clients in [1usize, 16] {
            let (rps, p50, p99) = load_paths(&base, 10, clients, "Authorization: Bearer ingest\r\n", |c, n| {
                format!("/api/autonomous/personalize?userId=s{}", ((c * 7919 + n) * 31) % 100_000)
            })
            .await;
            println!("personalized_page/{clients} client(s): {rps:.0} requests/s, p50 {p50:?}, p99 {p99:?}");
        }
    });
    let _ = child.kill();
    let _ = child.wait();
}

fn main() {
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    if wanted("personalized_page") {
        personalized_page();
    }
    if wanted("rebuild_pg") {
        rebuild_pg();
    }
    if wanted("storefront_reads") {
        storefront_reads();
    }
    if wanted("restart") {
        restart();
    }
}
