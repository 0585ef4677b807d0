//! A restarted PostgreSQL server is reconnected to: appends in flight complete, nothing
//! acknowledged is lost, and a live subscriber resumes without a gap or a duplicate.
//!
//! This restarts the local cluster, so it lives in its own test binary (cargo runs test binaries
//! one at a time). It restarts with `MALL_PG_RESTART` if set, else with `pg_ctlcluster`; it is
//! skipped, saying so, when neither can be used.

mod support;

use std::collections::HashSet;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use mall_events::postgres::{PgConfig, PgStore};
use mall_events::{EventStore, ExpectedVersion, subscribe_all};
use support::{event, pg, stream};

/// The tests of this binary restart the one server: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn restart_command() -> Option<String> {
    if let Ok(c) = std::env::var("MALL_PG_RESTART") {
        return Some(c);
    }
    let url = pg::admin_url();
    if !(url.contains("127.0.0.1") || url.contains("localhost")) {
        return None;
    }
    let version = std::fs::read_dir("/etc/postgresql").ok()?.filter_map(|e| e.ok()).next()?.file_name();
    Some(format!("pg_ctlcluster --skip-systemctl-redirect {} main restart", version.to_string_lossy()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_is_reconnected_to_and_nothing_acknowledged_is_lost() {
    let _one_restart_at_a_time = SERIAL.lock().await;
    let Some(restart) = restart_command() else {
        println!("SKIPPED: cannot restart PostgreSQL here (set MALL_PG_RESTART to a command that does)");
        return;
    };
    let db = pg::Postgres::new().await;
    let store: Arc<dyn EventStore> = Arc::new(PgStore::connect(PgConfig::new(&db.url)).await.unwrap());
    let mut sub = subscribe_all(store.clone(), 1);
    const N: usize = 400;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..N {
                let e = event("e", format!("{i}").as_bytes());
                let id = e.event_id;
                let r = store.append(&stream("product-restart"), ExpectedVersion::Any, vec![e]).await.unwrap();
                acked.push((id, r.first_position));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            acked
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status =
        tokio::task::spawn_blocking(move || Command::new("sh").args(["-c", &restart]).status()).await.unwrap().unwrap();
    assert!(status.success(), "the restart command failed");
    let acked = writer.await.unwrap();
    let mut seen = HashSet::new();
    let mut last = 0;
    for _ in 0..N {
        let e = tokio::time::timeout(Duration::from_secs(60), sub.next())
            .await
            .expect("the subscriber resumes")
            .unwrap()
            .unwrap();
        // An append cut off by the restart leaves a hole (a gap row), never a reordering.
        assert!(e.position > last, "positions rise across the restart");
        last = e.position;
        assert!(seen.insert(e.event_id), "no duplicate across the restart");
    }
    for (id, _) in &acked {
        assert!(seen.contains(id));
    }
    assert_eq!(store.stats().await.unwrap().events, N as u64);
}

/// A projection following the log into PostgreSQL survives a restart of the server: it resumes
/// from its committed checkpoint, and its tables equal a rebuild's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_survives_a_postgresql_restart() {
    use mall_events::NewEvent;
    use mall_events::domain::{DomainEvent, ProductListed, ProductViewed};
    use mall_events::ids::*;
    use mall_projections::catalog::{Catalog, PRODUCT_METRICS, PRODUCTS};
    use mall_projections::postgres::PgSink;
    use mall_projections::runner::{Projection, catch_up, follow};

    let _one_restart_at_a_time = SERIAL.lock().await;
    let Some(restart) = restart_command() else {
        println!("SKIPPED: cannot restart PostgreSQL here (set MALL_PG_RESTART to a command that does)");
        return;
    };
    let db = pg::Postgres::new().await;
    let store: Arc<dyn EventStore> = Arc::new(PgStore::connect(PgConfig::new(&db.url)).await.unwrap());
    let live = Arc::new(PgSink::open(&db.url, "catalog", 1, Catalog.tables(), false).await.unwrap());
    let (applied_tx, mut applied_rx) = tokio::sync::watch::channel(0);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let follower = tokio::spawn(follow(store.clone(), Arc::new(Catalog), live.clone(), applied_tx, stop_rx));
    let log = store.clone();
    let put = move |e: DomainEvent| {
        let store = log.clone();
        async move {
            let ne = NewEvent::from_domain(&e, e.signal_id().unwrap_or_else(uuid::Uuid::now_v7), vec![]).unwrap();
            store.append(&e.stream_id(), ExpectedVersion::Any, vec![ne]).await.unwrap().last_position
        }
    };
    for p in 0..5 {
        put(DomainEvent::ProductListed(ProductListed {
            product_id: ProductId::parse(format!("p{p}")).unwrap(),
            district: DistrictSlug::parse("toys").unwrap(),
            title: "Train".into(),
            description: "A train.".into(),
            price: Price::parse("9.90").unwrap(),
            currency: Currency::parse("EUR").unwrap(),
            tags: vec![],
            attributes: Default::default(),
            image_url: None,
            stock: 1,
        }))
        .await;
    }
    let view = |i: u64| {
        DomainEvent::ProductViewed(ProductViewed {
            campaign: None,
            id: uuid::Uuid::now_v7(),
            shopper_id: ShopperId::parse("s").unwrap(),
            session_id: SessionId::parse("x").unwrap(),
            at: chrono::Utc::now(),
            product_id: ProductId::parse(format!("p{}", i % 5)).unwrap(),
            dwell_ms: i,
        })
    };
    let writer = tokio::spawn({
        let put = put.clone();
        async move {
            let mut last = 0;
            for i in 0..300 {
                last = put(view(i)).await;
            }
            last
        }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let status = Command::new("sh").args(["-c", &restart]).status().unwrap();
    assert!(status.success(), "{restart}");
    let last = writer.await.unwrap();
    tokio::time::timeout(Duration::from_secs(90), applied_rx.wait_for(|p| *p >= last))
        .await
        .expect("the projection resumed")
        .unwrap();
    let _ = stop_tx.send(true);
    let _ = follower.await;
    let rebuilt = PgSink::open(&db.url, "catalog", 1, Catalog.tables(), true).await.unwrap();
    catch_up(&*store, &Catalog, &rebuilt, 1_000, |_| {}).await.unwrap();
    for t in [PRODUCTS, PRODUCT_METRICS] {
        assert_eq!(live.checksums(t).await.unwrap(), rebuilt.checksums(t).await.unwrap(), "{t}");
    }
    let m = live.checksums(PRODUCT_METRICS).await.unwrap();
    assert_eq!(m.len(), 5);
}
