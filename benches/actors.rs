//! Actor benchmarks:
//! - `ingest_http`: signals posted over HTTP to a real `mall serve` process (embedded store),
//!   batches of 1,000 from 4 concurrent clients, timed until the actors have folded them all;
//! - `activation`: a product actor activated from its snapshot plus 100 events (p50 and p99
//!   printed besides criterion's figures);
//! - `resident_memory`: the memory of 100,000 resident product actors (printed);
//! - `task_queue`: the scheduler's pick with 100,000 queued tasks over 8 systems (p50/p99
//!   printed), and tasks per second through the live queue (embedded store, every step an
//!   event) with a no-op executor.
//!
//! `cargo bench --bench actors -- activation` runs one of them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{Criterion, Throughput};
use mall_actors::executors::embedder::HashEmbedder;
use mall_actors::executors::offline::OfflineGenerator;
use mall_actors::runtime::entity::{self, Get, Passivate, Product};
use mall_actors::runtime::router::Actors;
use mall_actors::runtime::snapshot::{self, FsSnapshots, SnapshotStore};
use mall_actors::runtime::{Runtime, RuntimeConfig};
use mall_events::domain::*;
use mall_events::ids::*;
use mall_events::{EmbeddedConfig, EmbeddedStore, EventStore, ExpectedVersion, NewEvent, StreamId};
use serde_json::json;
use uuid::Uuid;

const PRODUCTS: usize = 1_000;
const BATCH: usize = 1_000;
const BATCHES_PER_ITER: usize = 40;
const CLIENTS: usize = 4;

fn listed(p: &str) -> DomainEvent {
    DomainEvent::ProductListed(ProductListed {
        product_id: ProductId::parse(p).unwrap(),
        district: DistrictSlug::parse("toys").unwrap(),
        title: "Wooden train".into(),
        description: "A beech train with four cars and magnetic hitches.".into(),
        price: Price::parse("24.50").unwrap(),
        currency: Currency::parse("EUR").unwrap(),
        tags: vec!["wood".into(), "train".into()],
        attributes: Default::default(),
        image_url: None,
        stock: 10,
    })
}

fn viewed(p: &str, i: u64) -> DomainEvent {
    DomainEvent::ProductViewed(ProductViewed {
        campaign: None,
        id: Uuid::now_v7(),
        shopper_id: ShopperId::parse(format!("s{}", i % 20_000)).unwrap(),
        session_id: SessionId::parse(format!("sess{}", i % 20_000)).unwrap(),
        at: Utc::now(),
        product_id: ProductId::parse(p).unwrap(),
        dwell_ms: 3_000 + i % 10_000,
    })
}

fn new_event(e: &DomainEvent) -> NewEvent {
    let id = e.signal_id().unwrap_or_else(Uuid::now_v7);
    NewEvent::from_domain(e, id, vec!["district:toys".into()]).unwrap()
}

/// A signal batch body: views and some carts, over all products and 20,000 shoppers.
fn body(seed: u64) -> Vec<u8> {
    let signals: Vec<_> = (0..BATCH as u64)
        .map(|i| {
            let n = seed * BATCH as u64 + i;
            let (kind, extra) = if n.is_multiple_of(10) {
                ("added_to_cart", json!({"quantity": 1}))
            } else {
                ("product_viewed", json!({"dwell_ms": 4000}))
            };
            let mut v = json!({
                "type": kind, "id": Uuid::now_v7(), "shopper_id": format!("s{}", n % 20_000),
                "session_id": format!("sess{}", n % 20_000), "at": Utc::now().to_rfc3339(),
                "product_id": format!("p{}", (n * 7919) % PRODUCTS as u64),
            });
            v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            v
        })
        .collect();
    serde_json::to_vec(&json!({ "signals": signals })).unwrap()
}

/// HTTP ingest into `mall serve` with its autonomous core running (the scheduler, the job
/// runner, product intelligence's generations through the task queue); with
/// `MALL_BENCH_BASELINE=/path/to/mall` (a build from before the core), the same load against that
/// binary too, in the same run.
fn ingest_http(c: &mut Criterion) {
    ingest_into(c, "embedded_batches_of_1000_folded", env!("CARGO_BIN_EXE_mall"));
    if let Ok(baseline) = std::env::var("MALL_BENCH_BASELINE") {
        ingest_into(c, "baseline_embedded_batches_of_1000_folded", &baseline);
    }
}

fn ingest_into(c: &mut Criterion, name: &str, bin: &str) {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(bin)
        .args(["--data-dir", &dir.path().join("data").display().to_string(), "serve", "--bind", "127.0.0.1:0"])
        .env("MALL_ADMIN_TOKEN", "admin")
        .env("MALL_INGEST_TOKEN", "ingest")
        .env("MALL_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let line = BufReader::new(child.stdout.take().unwrap()).lines().next().unwrap().unwrap();
    let base = line.strip_prefix("mall: serving on ").unwrap().to_string();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let client = reqwest::Client::new();
    rt.block_on(async {
        let district = json!({"slug": "toys", "name": "Toy Town", "personality": {"tone": "playful", "style": "short", "audience": "parents"}});
        client.post(format!("{base}/api/districts")).bearer_auth("admin").json(&district).send().await.unwrap();
        for i in 0..PRODUCTS {
            let p = json!({"product_id": format!("p{i}"), "district": "toys", "title": "Wooden train",
                "description": "A beech train with four cars and magnetic hitches.", "price": "24.50", "currency": "EUR",
                "tags": ["wood", "train"], "attributes": {}, "stock": 10});
            let r = client.post(format!("{base}/api/products")).bearer_auth("admin").json(&p).send().await.unwrap();
            assert!(r.status().is_success());
        }
        // Let the listings' own work (SEO, embeddings) settle first.
        settle(&client, &base).await;
    });
    let mut seed = 0u64;
    let mut group = c.benchmark_group("ingest_http");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(30))
        .throughput(Throughput::Elements((BATCH * BATCHES_PER_ITER) as u64));
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let bodies: Vec<Vec<u8>> = (0..BATCHES_PER_ITER)
                    .map(|_| {
                        seed += 1;
                        body(seed)
                    })
                    .collect();
                total += rt.block_on(async {
                    let started = Instant::now();
                    let bodies = Arc::new(std::sync::Mutex::new(bodies));
                    let mut tasks = Vec::new();
                    for _ in 0..CLIENTS {
                        let (client, base, bodies) = (client.clone(), base.clone(), bodies.clone());
                        tasks.push(tokio::spawn(async move {
                            let mut last = 0u64;
                            loop {
                                let Some(b) = bodies.lock().unwrap().pop() else { return last };
                                let r = client
                                    .post(format!("{base}/api/signals"))
                                    .bearer_auth("ingest")
                                    .header("content-type", "application/json")
                                    .body(b)
                                    .send()
                                    .await
                                    .unwrap();
                                assert_eq!(r.status(), 202);
                                let v: serde_json::Value = r.json().await.unwrap();
                                last = last.max(v["position"].as_u64().unwrap());
                            }
                        }));
                    }
                    let mut last = 0;
                    for t in tasks {
                        last = last.max(t.await.unwrap());
                    }
                    // Folded by the actors, not only stored.
                    loop {
                        let h: serde_json::Value =
                            client.get(format!("{base}/healthz")).send().await.unwrap().json().await.unwrap();
                        if h["actors_position"].as_u64().unwrap() >= last {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    started.elapsed()
                });
            }
            total
        })
    });
    group.finish();
    let _ = child.kill();
    let _ = child.wait();
}

async fn settle(client: &reqwest::Client, base: &str) {
    let mut last = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let h: serde_json::Value = client.get(format!("{base}/healthz")).send().await.unwrap().json().await.unwrap();
        let (log, folded) = (h["log_position"].as_u64().unwrap(), h["actors_position"].as_u64().unwrap());
        if log == folded && log == last {
            return;
        }
        last = log;
    }
}

/// A runtime over a fresh embedded store with file snapshots.
fn world(dir: &std::path::Path, config: RuntimeConfig) -> (Arc<dyn EventStore>, Arc<FsSnapshots>, Arc<Actors>) {
    let store: Arc<dyn EventStore> = Arc::new(EmbeddedStore::open(EmbeddedConfig::new(dir.join("data"))).unwrap());
    let snapshots = Arc::new(FsSnapshots::open(dir.join("snapshots")).unwrap());
    let rt = Runtime::new(store.clone(), snapshots.clone(), Arc::new(OfflineGenerator), Arc::new(HashEmbedder), config);
    let arbiters = (0..2).map(|_| actix::Arbiter::new().handle()).collect();
    (store, snapshots, Actors::new(rt, arbiters))
}

fn activation(c: &mut Criterion) {
    const N: usize = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let system = actix::System::new();
    let (store, snapshots, actors) = system
        .block_on(async { world(dir.path(), RuntimeConfig { generations_per_hour: 0, ..RuntimeConfig::default() }) });
    // Each product: listed and 100 views, snapshotted there, then 100 more views.
    let ids: Vec<ProductId> = (0..N).map(|i| ProductId::parse(format!("a{i}")).unwrap()).collect();
    let originals: Vec<Vec<u8>> = system.block_on(async {
        let mut originals = Vec::new();
        for id in &ids {
            let mut first: Vec<NewEvent> = vec![new_event(&listed(id.as_str()))];
            first.extend((0..100).map(|i| new_event(&viewed(id.as_str(), i))));
            store.append(&StreamId::product(id), ExpectedVersion::NoStream, first).await.unwrap();
            let state = entity::load::<Product>(&actors.rt, id).await.unwrap();
            let bytes = snapshot::encode(&state).unwrap();
            snapshots.save(&format!("product-{id}"), &bytes);
            originals.push(bytes);
            let tail: Vec<NewEvent> = (100..200).map(|i| new_event(&viewed(id.as_str(), i))).collect();
            store.append(&StreamId::product(id), ExpectedVersion::Exact(101), tail).await.unwrap();
        }
        originals
    });
    let mut next = 0usize;
    let mut activate = |system: &actix::SystemRunner| -> Duration {
        let i = next % N;
        next += 1;
        let (id, original) = (&ids[i], &originals[i]);
        system.block_on(async {
            snapshots.save(&format!("product-{id}"), original);
            let started = Instant::now();
            let state = actors.products.get(id).send(Get::<Product>::default()).await.unwrap().unwrap();
            let took = started.elapsed();
            assert_eq!(state.total.views, 200);
            actors.products.get(id).send(Passivate).await.unwrap();
            took
        })
    };
    let mut samples: Vec<Duration> = (0..N).map(|_| activate(&system)).collect();
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "activation from snapshot + 100 events over {N} products: p50 {:?}, p99 {:?}, max {:?}",
        pct(0.5),
        pct(0.99),
        samples[samples.len() - 1]
    );
    let mut group = c.benchmark_group("activation");
    group.sample_size(50);
    group.bench_function("snapshot_plus_100_events", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| activate(&system)).sum())
    });
    group.finish();
}

/// RSS of this process in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    statm.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 4096
}

fn resident_memory() {
    const N: usize = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let system = actix::System::new();
    let (store, _, actors) = system
        .block_on(async { world(dir.path(), RuntimeConfig { generations_per_hour: 0, ..RuntimeConfig::default() }) });
    system.block_on(async {
        let ids: Vec<ProductId> = (0..N).map(|i| ProductId::parse(format!("m{i}")).unwrap()).collect();
        for chunk in ids.chunks(1_000) {
            let appends = chunk.iter().map(|id| {
                let events = vec![
                    new_event(&listed(id.as_str())),
                    new_event(&viewed(id.as_str(), 1)),
                    new_event(&viewed(id.as_str(), 2)),
                ];
                let store = store.clone();
                async move { store.append(&StreamId::product(id), ExpectedVersion::NoStream, events).await }
            });
            for r in futures_util::future::join_all(appends).await {
                r.unwrap();
            }
        }
        let before = rss();
        for chunk in ids.chunks(1_000) {
            let gets = chunk.iter().map(|id| actors.products.get(id).send(Get::<Product>::default()));
            for s in futures_util::future::join_all(gets).await {
                assert!(s.unwrap().is_some());
            }
        }
        let after = rss();
        let resident = actors.products.resident();
        println!(
            "resident product actors: {resident}; RSS {:.1} MiB → {:.1} MiB: {:.1} MiB for {N} actors, {} bytes each",
            before as f64 / 1048576.0,
            after as f64 / 1048576.0,
            (after - before) as f64 / 1048576.0,
            (after - before) / N as u64
        );
    });
}

fn task_queue(c: &mut Criterion) {
    use mall_actors::autonomous::queue::{Queue, Task};
    use mall_actors::autonomous::scheduler::{self, Executor, FixedBudget, Request, Scheduler, SystemClock};
    use rand::{Rng, SeedableRng};
    const QUEUED: u128 = 100_000;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut q = Queue::new(chrono::Duration::seconds(60));
    let t0 = Utc::now();
    for i in 0..QUEUED {
        q.evolve(&DomainEvent::TaskQueued(TaskQueued {
            task_id: Uuid::from_u128(i + 1),
            system: format!("system{}", i % 8),
            subject: format!("product:p{i}"),
            action: "nudge".into(),
            priority: rng.random_range(0..=100),
            reason: String::new(),
            metrics: Default::default(),
            generations: (i % 3) as u32,
            at: t0 + chrono::Duration::milliseconds(i as i64),
        }));
    }
    let mut group = c.benchmark_group("task_queue");
    group.bench_function("pick_4_of_100000_queued", |b| b.iter(|| std::hint::black_box(q.pick(4, 2, 1_000))));
    let mut times: Vec<Duration> = (0..10_000)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(q.pick(4, 2, 1_000));
            started.elapsed()
        })
        .collect();
    times.sort();
    println!(
        "task_queue/pick with {QUEUED} queued: p50 {:?}, p99 {:?}, max {:?}",
        times[times.len() / 2],
        times[times.len() * 99 / 100],
        times[times.len() - 1]
    );
    group.finish();

    struct Noop;
    #[async_trait::async_trait]
    impl Executor for Noop {
        async fn run(&self, _: &Task) -> Result<String, String> {
            Ok(String::new())
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        const TASKS: usize = 50_000;
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn EventStore> = Arc::new(EmbeddedStore::open(EmbeddedConfig::new(dir.path())).unwrap());
        let config = scheduler::Config { concurrency: 512, per_system: 512, ..scheduler::Config::default() };
        let s = Scheduler::load(store.clone(), Arc::new(SystemClock), Arc::new(FixedBudget(0)), config).await.unwrap();
        s.register("bench", "noop", Arc::new(Noop));
        let (stop, rx) = tokio::sync::watch::channel(false);
        let runner = tokio::spawn(s.clone().run(rx));
        let started = Instant::now();
        for chunk in 0..TASKS / 1_000 {
            let requests = (0..1_000)
                .map(|i| Request {
                    system: "bench".into(),
                    subject: format!("s{chunk}-{i}"),
                    action: "noop".into(),
                    priority: (i % 101) as u8,
                    reason: String::new(),
                    metrics: Default::default(),
                    generations: 0,
                })
                .collect();
            s.queue(requests).await.unwrap();
        }
        loop {
            let (queued, running) = s.with_queue(|q| (q.queued(), q.running())).await;
            if queued == 0 && running == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let took = started.elapsed();
        let events = store.stats().await.unwrap().events;
        println!(
            "task_queue/through the live queue: {TASKS} tasks (queued, started, succeeded: {events} events) in {:.2} s: {:.0} tasks/s",
            took.as_secs_f64(),
            TASKS as f64 / took.as_secs_f64()
        );
        let _ = stop.send(true);
        runner.await.unwrap();
        // A start of the core over that stream: folding all of it, and from the image the
        // scheduler saved when it stopped.
        let snapshots: Arc<dyn mall_actors::runtime::snapshot::SnapshotStore> =
            Arc::new(mall_actors::runtime::snapshot::MemorySnapshots::default());
        let load = |snapshots: Option<Arc<dyn mall_actors::runtime::snapshot::SnapshotStore>>| {
            Scheduler::load_with(
                store.clone(),
                Arc::new(SystemClock),
                Arc::new(FixedBudget(0)),
                scheduler::Config::default(),
                snapshots,
            )
        };
        load(Some(snapshots.clone())).await.unwrap().save().await;
        for (what, snapshots) in [("folding the stream", None), ("from the image", Some(snapshots))] {
            let mut times: Vec<Duration> = Vec::new();
            for _ in 0..5 {
                let started = Instant::now();
                std::hint::black_box(load(snapshots.clone()).await.unwrap());
                times.push(started.elapsed());
            }
            times.sort();
            println!("task_queue/start over {events} core events, {what}: median {:?}", times[2]);
        }
    });
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    if wanted("activation") {
        activation(&mut c);
    }
    if wanted("resident_memory") {
        resident_memory();
    }
    if wanted("ingest_http") {
        ingest_http(&mut c);
    }
    if wanted("task_queue") {
        task_queue(&mut c);
    }
    c.final_summary();
}
