//! Event-store benchmarks, embedded and PostgreSQL: append one event per call (one writer, and
//! 64 concurrent writers), append batches of 100, and replay (read all + decode); and the
//! PostgreSQL log beside plain INSERTs into PostgreSQL in the same run (`log_vs_raw`).
//!
//! Events are real `product_viewed` signals (~150 bytes stored). PostgreSQL runs need
//! `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`); each benchmark gets a
//! fresh database. `cargo bench --bench event_store -- embedded` runs one backend.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mall_events::domain::{DomainEvent, ProductViewed};
use mall_events::ids::{ProductId, SessionId, ShopperId};
use mall_events::postgres::{PgConfig, PgStore};
use mall_events::{EmbeddedConfig, EmbeddedStore, EventStore, ExpectedVersion, NewEvent, StreamId};
use uuid::Uuid;

const REPLAY_EVENTS: usize = 200_000;

fn viewed(i: u64) -> (StreamId, NewEvent) {
    let product = ProductId::parse(format!("p{}", i % 1_000)).unwrap();
    let e = DomainEvent::ProductViewed(ProductViewed {
        campaign: None,
        id: Uuid::now_v7(),
        shopper_id: ShopperId::parse(format!("s{}", i % 5_000)).unwrap(),
        session_id: SessionId::parse(format!("sess{}", i % 20_000)).unwrap(),
        at: Utc::now(),
        product_id: product.clone(),
        dwell_ms: i % 60_000,
    });
    let id = e.signal_id().unwrap();
    (StreamId::product(&product), NewEvent::from_domain(&e, id, vec!["district:toys".into()]).unwrap())
}

fn pg_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh database's URL.
async fn fresh_database() -> String {
    let (client, conn) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let name = format!("mall_bench_{}", Uuid::new_v4().simple());
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    let base = pg_url();
    format!("{}/{name}", &base[..base.rfind('/').unwrap()])
}

async fn open(backend: &str, dir: &tempfile::TempDir) -> Arc<dyn EventStore> {
    match backend {
        "embedded" => Arc::new(EmbeddedStore::open(EmbeddedConfig::new(dir.path())).unwrap()),
        _ => Arc::new(PgStore::connect(pg_config(fresh_database().await)).await.unwrap()),
    }
}

/// A PostgreSQL store's configuration, with as many writer connections as `MALL_PG_WRITERS`
/// says (as `mall` takes it), so that the count can be measured on one's own disk. A value that
/// is not a count stops the run rather than measure the default under another name.
fn pg_config(url: String) -> PgConfig {
    let mut config = PgConfig::new(url);
    if let Ok(v) = std::env::var("MALL_PG_WRITERS") {
        config.writers = v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=64).contains(n))
            .unwrap_or_else(|| panic!("MALL_PG_WRITERS: {v:?} is not a whole number from 1 to 64"));
    }
    config
}

fn runtime(multi: bool) -> tokio::runtime::Runtime {
    if multi {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
    } else {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }
}

fn appends(c: &mut Criterion) {
    for backend in ["embedded", "postgres"] {
        let mut g = c.benchmark_group(format!("{backend}/append"));
        g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));

        let rt = runtime(true);
        let dir = tempfile::tempdir().unwrap();
        let store = rt.block_on(open(backend, &dir));
        g.throughput(Throughput::Elements(1));
        g.bench_function("1_event_per_call/1_writer", |b| {
            let mut i = 0;
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let (s, e) = viewed(i);
                        i += 1;
                        store.append(&s, ExpectedVersion::Any, vec![e]).await.unwrap();
                    }
                    start.elapsed()
                })
            })
        });

        for multi in [false, true] {
            let rt = runtime(multi);
            let dir = tempfile::tempdir().unwrap();
            let store = rt.block_on(open(backend, &dir));
            let flavor = if multi { "multi_thread" } else { "current_thread" };
            g.bench_function(BenchmarkId::new("1_event_per_call/64_writers", flavor), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let per = iters.div_ceil(64);
                        let start = Instant::now();
                        let tasks: Vec<_> = (0..64u64)
                            .map(|w| {
                                let store = store.clone();
                                tokio::spawn(async move {
                                    for k in 0..per {
                                        let (s, e) = viewed(w * 1_000_003 + k);
                                        store.append(&s, ExpectedVersion::Any, vec![e]).await.unwrap();
                                    }
                                })
                            })
                            .collect();
                        for t in tasks {
                            t.await.unwrap();
                        }
                        start.elapsed().mul_f64(iters as f64 / (per * 64) as f64)
                    })
                })
            });
        }

        g.throughput(Throughput::Elements(100));
        g.bench_function("batch_of_100/1_writer", |b| {
            let mut i = 0;
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut batches = Vec::with_capacity(iters as usize);
                    for _ in 0..iters {
                        let s = StreamId::parse(format!("product-batch{}", i % 1000)).unwrap();
                        batches.push((s, (0..100).map(|k| viewed(i * 100 + k).1).collect::<Vec<_>>()));
                        i += 1;
                    }
                    let start = Instant::now();
                    for (s, events) in batches {
                        store.append(&s, ExpectedVersion::Any, events).await.unwrap();
                    }
                    start.elapsed()
                })
            })
        });
        g.finish();
    }
}

fn replay(c: &mut Criterion) {
    for backend in ["embedded", "postgres"] {
        let rt = runtime(true);
        let dir = tempfile::tempdir().unwrap();
        // Filled on the first run only: a run that filters this benchmark out does not write
        // 200,000 events (and their WAL and checkpoints) before the benchmarks it measures.
        let mut filled: Option<Arc<dyn EventStore>> = None;
        let mut g = c.benchmark_group(format!("{backend}/replay"));
        g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(8));
        g.throughput(Throughput::Elements(REPLAY_EVENTS as u64));
        g.bench_function("read_all_and_decode", |b| {
            let store = filled.get_or_insert_with(|| {
                rt.block_on(async {
                    let store = open(backend, &dir).await;
                    for chunk in 0..(REPLAY_EVENTS / 1_000) as u64 {
                        let events: Vec<NewEvent> = (0..1_000).map(|k| viewed(chunk * 1_000 + k).1).collect();
                        let stream = StreamId::parse(format!("product-r{}", chunk % 100)).unwrap();
                        store.append(&stream, ExpectedVersion::Any, events).await.unwrap();
                    }
                    store
                })
            });
            b.iter(|| {
                rt.block_on(async {
                    let mut next = 1;
                    let mut n = 0;
                    loop {
                        let batch = store.read_all(next, 10_000).await.unwrap();
                        let Some(last) = batch.last() else { break };
                        next = last.position + 1;
                        for e in &batch {
                            std::hint::black_box(e.decode().unwrap());
                            n += 1;
                        }
                    }
                    assert_eq!(n, REPLAY_EVENTS);
                })
            })
        });
        g.finish();
    }
}

/// The PostgreSQL log against PostgreSQL itself, in the same run: plain INSERT transactions into
/// a table of the same shape with no head lock, no version check and no tags (`raw`), beside
/// mall's appends of the same shapes — one writer appending one event at a time, and batches of
/// 100 from one writer and from eight stores, each with its own writer connection as eight
/// processes have.
fn log_vs_raw(c: &mut Criterion) {
    const RAW: &str = "CREATE TABLE raw_events (position bigserial PRIMARY KEY, event_id uuid NOT NULL UNIQUE, \
                       stream_id text NOT NULL, event_type text NOT NULL, recorded_at timestamptz NOT NULL, \
                       payload bytea NOT NULL)";
    const INSERT: &str = "INSERT INTO raw_events (event_id, stream_id, event_type, recorded_at, payload) \
                          SELECT i, s, t, now(), p FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::bytea[]) AS u(i, s, t, p)";
    let rt = runtime(true);
    let url = rt.block_on(fresh_database());
    let clients: Vec<tokio_postgres::Client> = rt.block_on(async {
        let mut v = Vec::new();
        for _ in 0..8 {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            v.push(client);
        }
        v[0].batch_execute(RAW).await.unwrap();
        v
    });
    let clients = Arc::new(clients);
    let rows = |from: u64, n: u64| {
        let evs: Vec<(StreamId, NewEvent)> = (from..from + n).map(viewed).collect();
        let ids: Vec<Uuid> = evs.iter().map(|(_, e)| e.event_id).collect();
        let streams: Vec<String> = evs.iter().map(|(s, _)| s.as_str().to_string()).collect();
        let types: Vec<String> = evs.iter().map(|(_, e)| e.event_type.clone()).collect();
        let payloads: Vec<Vec<u8>> = evs.into_iter().map(|(_, e)| e.payload).collect();
        (ids, streams, types, payloads)
    };
    let mut g = c.benchmark_group("postgres/log_vs_raw");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    // Events written and the time they took, by case, over every call (warm-up included), for
    // the ratios printed at the end.
    let tally: std::cell::RefCell<std::collections::BTreeMap<&str, (u64, Duration)>> = Default::default();
    let count = |name: &'static str, events: u64, took: Duration| {
        let mut t = tally.borrow_mut();
        let e = t.entry(name).or_default();
        e.0 += events;
        e.1 += took;
    };
    for (name, writers, per_txn) in [
        ("raw/1_client/1_row", 1u64, 1u64),
        ("raw/1_client/batch_of_100", 1, 100),
        ("raw/8_clients/batch_of_100", 8, 100),
    ] {
        g.throughput(Throughput::Elements(per_txn));
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let per = iters.div_ceil(writers);
                let batches: Vec<Vec<_>> = (0..writers)
                    .map(|_| {
                        (0..per)
                            .map(|_| rows(next.fetch_add(per_txn, std::sync::atomic::Ordering::Relaxed), per_txn))
                            .collect()
                    })
                    .collect();
                rt.block_on(async {
                    let start = Instant::now();
                    let tasks: Vec<_> = batches
                        .into_iter()
                        .enumerate()
                        .map(|(w, mine)| {
                            let clients = clients.clone();
                            tokio::spawn(async move {
                                let c = &clients[w];
                                let stmt = c.prepare(INSERT).await.unwrap();
                                for (ids, streams, types, payloads) in mine {
                                    c.execute(&stmt, &[&ids, &streams, &types, &payloads]).await.unwrap();
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                    count(name, per * writers * per_txn, start.elapsed());
                    start.elapsed().mul_f64(iters as f64 / (per * writers) as f64)
                })
            })
        });
    }
    // mall: one writer, one event a call; batches of 100 from one store and from eight. Each
    // case runs with as many stores (processes) on the database as it has writers, no more: a
    // store NOTIFYs other processes' listeners, and idle stores would be listeners a lone
    // writer does not have.
    let mut connected: Vec<Arc<dyn EventStore>> = Vec::new();
    for (name, writers, per_call) in [
        ("mall/1_writer/1_event", 1u64, 1u64),
        ("mall/1_store/batch_of_100", 1, 100),
        ("mall/8_stores/batch_of_100", 8, 100),
    ] {
        while connected.len() < writers as usize {
            connected.push(Arc::new(rt.block_on(PgStore::connect(pg_config(url.clone()))).unwrap()));
        }
        let stores = Arc::new(connected.clone());
        g.throughput(Throughput::Elements(per_call));
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let per = iters.div_ceil(writers);
                let batches: Vec<Vec<(StreamId, Vec<NewEvent>)>> = (0..writers)
                    .map(|w| {
                        (0..per)
                            .map(|_| {
                                let from = next.fetch_add(per_call, std::sync::atomic::Ordering::Relaxed);
                                let s = StreamId::parse(format!("product-w{w}b{}", from % 1_000)).unwrap();
                                (s, (from..from + per_call).map(|k| viewed(k).1).collect())
                            })
                            .collect()
                    })
                    .collect();
                rt.block_on(async {
                    let start = Instant::now();
                    let tasks: Vec<_> = batches
                        .into_iter()
                        .enumerate()
                        .map(|(w, mine)| {
                            let stores = stores.clone();
                            tokio::spawn(async move {
                                for (s, events) in mine {
                                    stores[w].append(&s, ExpectedVersion::Any, events).await.unwrap();
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                    count(name, per * writers * per_call, start.elapsed());
                    start.elapsed().mul_f64(iters as f64 / (per * writers) as f64)
                })
            })
        });
    }
    g.finish();
    // The targets are ratios to raw PostgreSQL in the same run: say them.
    let t = tally.borrow();
    let rate = |name: &str| t.get(name).map(|(n, took)| *n as f64 / took.as_secs_f64());
    for (mall, raw) in [
        ("mall/1_writer/1_event", "raw/1_client/1_row"),
        ("mall/1_store/batch_of_100", "raw/1_client/batch_of_100"),
        ("mall/8_stores/batch_of_100", "raw/8_clients/batch_of_100"),
    ] {
        if let (Some(m), Some(r)) = (rate(mall), rate(raw)) {
            println!("log_vs_raw: {mall} {m:.0} events/s, {raw} {r:.0} events/s, ratio {:.2}", m / r);
        }
    }
}

criterion_group!(benches, appends, replay, log_vs_raw);
criterion_main!(benches);
