//! Shared test harness: backends that every conformance and model test runs against.
#![allow(dead_code)]

use std::sync::Arc;

use mall_events::{EmbeddedConfig, EmbeddedStore, EventStore, NewEvent, StreamId};
use uuid::Uuid;

pub mod http;
#[cfg(feature = "kurrentdb")]
pub mod kurrent;
pub mod pg;
pub mod scenario;
pub mod server;

/// One scenario (`async fn scenario(store: Store)`) as two tests, `scenario::embedded` and
/// `scenario::postgres`: the same assertions on each store.
#[allow(unused_macros)]
macro_rules! on_both_stores {
    ($scenario:ident) => {
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                let (store, _dir) = crate::support::server::Store::embedded();
                super::$scenario(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let (store, _dir) = crate::support::server::Store::postgres().await;
                super::$scenario(store).await;
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use on_both_stores;

/// A backend under test: opens its store, and opens it again after a close.
#[async_trait::async_trait]
pub trait Backend: Send {
    /// Opens the store (the first time, an empty one).
    async fn open(&mut self) -> Arc<dyn EventStore>;
    /// The backend's name, for messages.
    fn name(&self) -> &'static str;
    /// Whether global positions are 1, 2, 3, ... (KurrentDB's are log offsets).
    fn gap_free(&self) -> bool {
        true
    }
}

/// The embedded store in a fresh temporary directory.
pub struct Embedded {
    pub dir: tempfile::TempDir,
    pub segment_size: u64,
}

impl Embedded {
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap(), segment_size: 64 * 1024 }
    }
}

#[async_trait::async_trait]
impl Backend for Embedded {
    async fn open(&mut self) -> Arc<dyn EventStore> {
        let mut config = EmbeddedConfig::new(self.dir.path());
        // Small segments, so that every test also crosses segment boundaries.
        config.segment_size = self.segment_size;
        config.limits.max_event_size = 64 * 1024;
        Arc::new(EmbeddedStore::open(config).unwrap())
    }
    fn name(&self) -> &'static str {
        "embedded"
    }
}

/// A test event with a fresh id.
pub fn event(kind: &str, payload: &[u8]) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: kind.to_string(),
        schema_version: 1,
        tags: vec![],
        correlation_id: None,
        causation_id: None,
        payload: payload.to_vec(),
    }
}

/// A test event with tags.
pub fn tagged(kind: &str, payload: &[u8], tags: &[&str]) -> NewEvent {
    NewEvent { tags: tags.iter().map(|t| t.to_string()).collect(), ..event(kind, payload) }
}

/// Reads each tag in small pages (from the last position read plus one, until a page is empty)
/// and checks the pages give exactly the log's events with that tag, in the log's order.
#[allow(dead_code)]
pub async fn tag_reads_match_the_log(store: &dyn EventStore, tags: &[&str]) {
    let mut log = Vec::new();
    let mut from = 1;
    loop {
        let page = store.read_all(from, 500).await.unwrap();
        let Some(last) = page.last() else { break };
        from = last.position + 1;
        log.extend(page);
    }
    for tag in tags {
        let expected: Vec<_> = log.iter().filter(|e| e.tags.iter().any(|t| t == tag)).map(|e| e.event_id).collect();
        let mut got = Vec::new();
        let mut from = 1;
        loop {
            let page = store.read_by_tag(tag, from, 7).await.unwrap();
            let Some(last) = page.last() else { break };
            assert!(page.len() <= 7, "a page holds at most its limit");
            from = last.position + 1;
            got.extend(page.iter().map(|e| e.event_id));
        }
        assert_eq!(got.len(), expected.len(), "tag {tag}: as many events as the log holds with it");
        assert_eq!(got, expected, "tag {tag}: the log's events with the tag, in order");
    }
}

pub fn stream(s: &str) -> StreamId {
    StreamId::parse(s).unwrap()
}
