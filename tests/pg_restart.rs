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
use mall_events::{subscribe_all, EventStore, ExpectedVersion};
use support::{event, pg, stream};

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
    let status = tokio::task::spawn_blocking(move || Command::new("sh").args(["-c", &restart]).status()).await.unwrap().unwrap();
    assert!(status.success(), "the restart command failed");
    let acked = writer.await.unwrap();
    let mut seen = HashSet::new();
    for p in 1..=N as u64 {
        let e = tokio::time::timeout(Duration::from_secs(60), sub.next()).await.expect("the subscriber resumes").unwrap().unwrap();
        assert_eq!(e.position, p, "no gap, no duplicate across the restart");
        seen.insert(e.event_id);
    }
    for (id, _) in &acked {
        assert!(seen.contains(id));
    }
    assert_eq!(store.stats().await.unwrap().events, N as u64);
}
