//! The PostgreSQL sink over a PostgreSQL log: rows and checkpoint in one transaction (a batch
//! applied twice takes effect once), a rebuild into shadow tables while the live projection
//! follows, equal row by row, and the swap that puts it in place.
#![cfg(feature = "postgres")]

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use mall_events::domain::*;
use mall_events::ids::*;
use mall_events::postgres::{PgConfig, PgStore};
use mall_events::{EventStore, ExpectedVersion, NewEvent};
use mall_projections::catalog::{Catalog, PRODUCT_METRICS, PRODUCTS};
use mall_projections::postgres::{PgSink, swap_in};
use mall_projections::runner::{Projection, Sink, catch_up, changes_of, follow};
use rand::{Rng, SeedableRng};
use uuid::Uuid;

async fn fresh_database() -> String {
    let admin = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.expect("PostgreSQL is reachable");
    tokio::spawn(conn);
    let name = format!("mall_test_{}", Uuid::new_v4().simple());
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    format!("{}/{name}", &admin[..admin.rfind('/').unwrap()])
}

fn pid(p: &str) -> ProductId {
    ProductId::parse(p).unwrap()
}

fn event(rng: &mut rand::rngs::StdRng, p: &str, listed: bool) -> DomainEvent {
    if !listed {
        return DomainEvent::ProductListed(ProductListed {
            product_id: pid(p),
            district: DistrictSlug::parse("toys").unwrap(),
            title: format!("Train {p}"),
            description: "Rings.".into(),
            price: Price::parse("19.90").unwrap(),
            currency: Currency::parse("EUR").unwrap(),
            tags: vec!["wood".into()],
            attributes: Default::default(),
            image_url: None,
            stock: 3,
        });
    }
    let meta = (Uuid::now_v7(), ShopperId::parse("s1").unwrap(), SessionId::parse("x").unwrap(), Utc::now());
    match rng.random_range(0..6) {
        0 => DomainEvent::CopyApplied(CopyApplied {
            decision_id: Uuid::now_v7(),
            product_id: pid(p),
            content: Content::Description { text: format!("Copy {}", rng.random_range(0..1000)) },
            at: Utc::now(),
        }),
        1 => DomainEvent::StockChanged(StockChanged { product_id: pid(p), stock: rng.random_range(0..4) }),
        2 => DomainEvent::Purchased(Purchased {
            campaign: None,
            id: meta.0,
            shopper_id: meta.1,
            session_id: meta.2,
            at: meta.3,
            product_id: pid(p),
            order_id: OrderId::parse("o").unwrap(),
            quantity: rng.random_range(1..3),
            unit_price: Price::parse("19.90").unwrap(),
            currency: Currency::parse("EUR").unwrap(),
        }),
        _ => DomainEvent::ProductViewed(ProductViewed {
            campaign: None,
            id: meta.0,
            shopper_id: meta.1,
            session_id: meta.2,
            at: meta.3,
            product_id: pid(p),
            dwell_ms: 900,
        }),
    }
}

async fn workload(store: &dyn EventStore, seed: u64, n: usize) -> u64 {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut listed = std::collections::HashSet::new();
    let mut last = 0;
    for _ in 0..n {
        let p = format!("p{}", rng.random_range(0..15));
        let e = event(&mut rng, &p, listed.contains(&p));
        listed.insert(p);
        let ne = NewEvent::from_domain(&e, e.signal_id().unwrap_or_else(Uuid::now_v7), vec![]).unwrap();
        last = store.append(&e.stream_id(), ExpectedVersion::Any, vec![ne]).await.unwrap().last_position;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_and_checkpoint_commit_together_and_a_rebuild_swaps_in_equal() {
    let url = fresh_database().await;
    let store: Arc<dyn EventStore> = Arc::new(PgStore::connect(PgConfig::new(&url)).await.unwrap());
    let live = Arc::new(PgSink::open(&url, "catalog", 1, Catalog.tables(), false).await.unwrap());
    let (applied_tx, mut applied_rx) = tokio::sync::watch::channel(0);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let follower = tokio::spawn(follow(store.clone(), Arc::new(Catalog), live.clone(), applied_tx, stop_rx));
    let seed: u64 = rand::random();
    println!("seed {seed}");
    let half = workload(&*store, seed, 400).await;

    // A rebuild while the live projection follows and more events arrive.
    let shadow = PgSink::open(&url, "catalog", 1, Catalog.tables(), true).await.unwrap().cached().await.unwrap();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move { workload(&*store, seed + 1, 400).await })
    };
    catch_up(&*store, &Catalog, &shadow, 50, |_| {}).await.unwrap();
    let last = writer.await.unwrap();
    assert!(last > half);
    catch_up(&*store, &Catalog, &shadow, 50, |_| {}).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), applied_rx.wait_for(|p| *p >= last)).await.unwrap().unwrap();
    assert_eq!(shadow.checkpoint().await.unwrap(), last);
    for t in [PRODUCTS, PRODUCT_METRICS] {
        let (a, b) = (live.checksums(t).await.unwrap(), shadow.checksums(t).await.unwrap());
        assert!(!a.is_empty());
        assert_eq!(a, b, "seed {seed}: {t} rebuilt differs from live");
    }

    // A batch delivered twice takes effect once.
    let events = store.read_all(1, 10_000).await.unwrap();
    assert!(!live.apply(0, last, None, changes_of(&Catalog, &events).0).await.unwrap());
    assert_eq!(live.checksums(PRODUCTS).await.unwrap(), shadow.checksums(PRODUCTS).await.unwrap());

    // The swap: the live projection keeps going on the swapped-in tables.
    let before = live.checksums(PRODUCT_METRICS).await.unwrap();
    // The comparison reads the live tables on a connection of its own: the follower's may be
    // waiting for the lock the swap holds.
    let live_reader = PgSink::open(&url, "catalog", 1, Catalog.tables(), false).await.unwrap();
    let (at, differences) = swap_in(&url, &*store, &Catalog, &shadow, &live_reader, true).await.unwrap();
    assert!(differences.is_empty(), "{differences:?}");
    assert_eq!(at, last);
    assert_eq!(live.checkpoint().await.unwrap(), last);
    assert_eq!(live.checksums(PRODUCT_METRICS).await.unwrap(), before);
    let more = workload(&*store, seed + 2, 50).await;
    tokio::time::timeout(Duration::from_secs(30), applied_rx.wait_for(|p| *p >= more)).await.unwrap().unwrap();
    let fresh = PgSink::open(&url, "catalog", 1, Catalog.tables(), true).await.unwrap();
    catch_up(&*store, &Catalog, &fresh, 500, |_| {}).await.unwrap();
    for t in [PRODUCTS, PRODUCT_METRICS] {
        assert_eq!(
            live.checksums(t).await.unwrap(),
            fresh.checksums(t).await.unwrap(),
            "seed {seed}: {t} after the swap"
        );
    }
    let _ = stop_tx.send(true);
    follower.await.unwrap().unwrap();
}

/// Version 2 of the catalog: titles in capitals (what a changed `apply` might do).
struct CatalogV2;

impl Projection for CatalogV2 {
    fn name(&self) -> &'static str {
        "catalog"
    }

    fn version(&self) -> u32 {
        2
    }

    fn tables(&self) -> &'static [mall_projections::change::TableDef] {
        Catalog.tables()
    }

    fn apply(&self, e: &mall_events::RecordedEvent, d: &DomainEvent) -> Vec<mall_projections::change::Change> {
        let mut out = Catalog.apply(e, d);
        for c in &mut out {
            if let mall_projections::change::Op::Set(row) = &mut c.op
                && let Some(serde_json::Value::String(t)) = row.get_mut("title")
            {
                *t = t.to_uppercase();
            }
        }
        out
    }
}

/// Blue/green: version 2 is built beside the live version 1 (which keeps following), a server
/// of version 2 does not write version 1's tables, the swap puts version 2 in place, version 1
/// writers stop, and version 2 follows on to what a rebuild of version 2 gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_is_built_alongside_and_swapped_in() {
    let url = fresh_database().await;
    let store: Arc<dyn EventStore> = Arc::new(PgStore::connect(PgConfig::new(&url)).await.unwrap());
    let seed: u64 = rand::random();
    println!("seed {seed}");
    let blue = Arc::new(PgSink::open(&url, "catalog", 1, Catalog.tables(), false).await.unwrap());
    let (blue_tx, mut blue_rx) = tokio::sync::watch::channel(0);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let blue_follower = tokio::spawn(follow(store.clone(), Arc::new(Catalog), blue.clone(), blue_tx, stop_rx.clone()));
    let first = workload(&*store, seed, 300).await;
    tokio::time::timeout(Duration::from_secs(30), blue_rx.wait_for(|p| *p >= first)).await.unwrap().unwrap();

    // A server of version 2 starts early: it may not write version 1's tables.
    let green = Arc::new(PgSink::open(&url, "catalog", 2, Catalog.tables(), false).await.unwrap());
    let cp = green.checkpoint().await.unwrap();
    let refused = green.apply(cp, cp + 1, None, Vec::new()).await;
    assert!(
        matches!(refused, Err(mall_projections::runner::SinkError::OtherVersion { found: 1, ours: 2 })),
        "{refused:?}"
    );
    let (green_tx, mut green_rx) = tokio::sync::watch::channel(0);
    let green_follower = tokio::spawn(follow(store.clone(), Arc::new(CatalogV2), green.clone(), green_tx, stop_rx));

    // Version 2 is built beside version 1 while events keep coming.
    let shadow = PgSink::open(&url, "catalog", 2, Catalog.tables(), true).await.unwrap().cached().await.unwrap();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move { workload(&*store, seed + 1, 200).await })
    };
    catch_up(&*store, &CatalogV2, &shadow, 64, |_| {}).await.unwrap();
    let second = writer.await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), blue_rx.wait_for(|p| *p >= second)).await.unwrap().unwrap();
    assert!(*green_rx.borrow() <= first, "version 2 applied nothing before the swap");
    let reader = PgSink::open(&url, "catalog", 2, Catalog.tables(), false).await.unwrap();
    let (at, differences) = swap_in(&url, &*store, &CatalogV2, &shadow, &reader, true).await.unwrap();
    assert!(differences.is_empty() && at >= second);
    assert_eq!(reader.recorded_version().await.unwrap(), 2);

    // Version 2 is live and follows; version 1 writes nothing more.
    let third = workload(&*store, seed + 2, 100).await;
    tokio::time::timeout(Duration::from_secs(30), green_rx.wait_for(|p| *p >= third)).await.unwrap().unwrap();
    assert!(*blue_rx.borrow() < third, "version 1 stopped writing");
    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let titles: Vec<String> =
        db.query("SELECT title FROM products", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert!(!titles.is_empty() && titles.iter().all(|t| *t == t.to_uppercase()), "{titles:?}");
    let fresh = PgSink::open(&url, "catalog", 2, Catalog.tables(), true).await.unwrap();
    fresh.reset().await.unwrap();
    catch_up(&*store, &CatalogV2, &fresh, 500, |_| {}).await.unwrap();
    for t in [PRODUCTS, PRODUCT_METRICS] {
        assert_eq!(reader.checksums(t).await.unwrap(), fresh.checksums(t).await.unwrap(), "seed {seed}: {t}");
    }
    let _ = stop_tx.send(true);
    blue_follower.await.unwrap().unwrap();
    green_follower.await.unwrap().unwrap();
}

/// One pass over the log rebuilds several projections, each resuming from its own checkpoint
/// (an interrupted rebuild), and each ends equal to a rebuild of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pass_rebuilds_several_projections_from_their_own_checkpoints() {
    use mall_projections::personalization::Personalization;
    use mall_projections::runner::catch_up_all;
    let url = fresh_database().await;
    let store: Arc<dyn EventStore> = Arc::new(PgStore::connect(PgConfig::new(&url)).await.unwrap());
    let seed: u64 = rand::random();
    println!("seed {seed}");
    let last = workload(&*store, seed, 600).await;
    let catalog =
        Arc::new(PgSink::open(&url, "catalog", 1, Catalog.tables(), true).await.unwrap().cached().await.unwrap());
    let people = PgSink::open(&url, "personalization", 1, Personalization.tables(), true).await.unwrap();
    // The personalization rebuild was interrupted a third of the way.
    mall_projections::runner::catch_up_until(&*store, &Personalization, &people, 50, Some(last / 3), |_| {})
        .await
        .unwrap();
    let people = Arc::new(people.cached().await.unwrap());
    let parts: Vec<(Arc<dyn Projection>, Arc<dyn Sink>)> =
        vec![(Arc::new(Catalog), catalog.clone()), (Arc::new(Personalization), people.clone())];
    let mut seen = Vec::new();
    let at = catch_up_all(store.clone(), &parts, 97, |p| seen.push(p)).await.unwrap();
    assert_eq!(at, last);
    assert!(seen.windows(2).all(|w| w[0] <= w[1]) && seen.last() == Some(&last), "{seen:?}");
    assert_eq!((catalog.checkpoint().await.unwrap(), people.checkpoint().await.unwrap()), (last, last));

    let live_catalog = PgSink::open(&url, "catalog", 1, Catalog.tables(), false).await.unwrap();
    let live_people = PgSink::open(&url, "personalization", 1, Personalization.tables(), false).await.unwrap();
    catch_up(&*store, &Catalog, &live_catalog, 1_000, |_| {}).await.unwrap();
    catch_up(&*store, &Personalization, &live_people, 1_000, |_| {}).await.unwrap();
    for t in [PRODUCTS, PRODUCT_METRICS] {
        assert_eq!(catalog.checksums(t).await.unwrap(), live_catalog.checksums(t).await.unwrap(), "seed {seed}: {t}");
    }
    for t in Personalization.tables() {
        let a = people.checksums(t.name).await.unwrap();
        assert!(!a.is_empty());
        assert_eq!(a, live_people.checksums(t.name).await.unwrap(), "seed {seed}: {}", t.name);
    }
}
