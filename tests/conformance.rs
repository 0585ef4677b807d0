//! The conformance suite: the same behaviour asserted against every event-store backend.
//!
//! The PostgreSQL runs need a server (`DATABASE_URL`, default `postgres://postgres@127.0.0.1/postgres`);
//! each test gets its own database. The KurrentDB runs need `KURRENTDB_URL` and the `kurrentdb`
//! feature, and say so when they are skipped.

mod support;

use std::collections::HashSet;
use std::sync::Arc;

use mall_events::{Direction, EventStore, ExpectedVersion, StoreError, StreamId, subscribe_all};
use support::{Backend, event, stream, tagged};

async fn racing_writers_on_one_stream_with_an_exact_version_exactly_one_wins(mut b: impl Backend) {
    let store = b.open().await;
    let s = stream("product-race");
    store.append(&s, ExpectedVersion::NoStream, vec![event("a", b"1")]).await.unwrap();
    for round in 0..20u64 {
        let mut tasks = Vec::new();
        for w in 0..4 {
            let (store, s) = (store.clone(), s.clone());
            tasks.push(tokio::spawn(async move {
                store.append(&s, ExpectedVersion::Exact(round + 1), vec![event("a", format!("{w}").as_bytes())]).await
            }));
        }
        let mut wins = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(r) => {
                    wins += 1;
                    assert_eq!(r.stream_version, round + 2);
                }
                Err(StoreError::WrongExpectedVersion { expected, actual, .. }) => {
                    assert_eq!(expected, ExpectedVersion::Exact(round + 1));
                    assert_eq!(actual, round + 2, "the conflict names the actual version");
                }
                Err(e) => panic!("{}: unexpected error {e}", b.name()),
            }
        }
        assert_eq!(wins, 1, "{}: exactly one writer wins round {round}", b.name());
    }
    assert_eq!(store.stream_version(&s).await.unwrap(), 21);
    let e = store.append(&s, ExpectedVersion::NoStream, vec![event("a", b"x")]).await.unwrap_err();
    assert!(matches!(e, StoreError::WrongExpectedVersion { actual: 21, .. }), "{e}");
    assert!(e.to_string().contains("no stream") && e.to_string().contains("21"), "{e}");
    // Versions past what a signed 64-bit integer holds are refused, alone and in a batch.
    for v in [u64::MAX, (1 << 63) + 5] {
        for n in [1, 2] {
            let events = (0..n).map(|_| event("a", b"x")).collect();
            let e = store.append(&s, ExpectedVersion::Exact(v), events).await.unwrap_err();
            assert!(matches!(e, StoreError::WrongExpectedVersion { actual: 21, .. }), "{}: {e}", b.name());
        }
    }
    assert_eq!(store.stream_version(&s).await.unwrap(), 21);
}

async fn stream_versions_are_contiguous_and_positions_strictly_increase(mut b: impl Backend) {
    let store = b.open().await;
    let streams: Vec<StreamId> = (0..5).map(|i| stream(&format!("product-{i}"))).collect();
    for round in 0..30 {
        for (i, s) in streams.iter().enumerate() {
            let n = 1 + (round + i) % 3;
            let events = (0..n).map(|_| event("e", &vec![i as u8; 10 + round])).collect();
            store.append(s, ExpectedVersion::Any, events).await.unwrap();
        }
    }
    let all = store.read_all(1, 100_000).await.unwrap();
    for w in all.windows(2) {
        assert!(w[1].position > w[0].position, "{}: positions strictly increase", b.name());
        if b.gap_free() {
            assert_eq!(w[1].position, w[0].position + 1, "{}: positions are gap-free", b.name());
        }
    }
    if b.gap_free() {
        assert_eq!(all[0].position, 1);
    }
    for s in &streams {
        let events = store.read_stream(s, 1, Direction::Forward, 10_000).await.unwrap();
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.stream_version, i as u64 + 1, "{}: versions are contiguous", b.name());
            assert_eq!(&e.stream_id, s);
        }
        assert!(events.windows(2).all(|w| w[0].position < w[1].position));
        assert_eq!(store.stream_version(s).await.unwrap(), events.len() as u64);
        // Reading from a version, both ways.
        let tail = store.read_stream(s, 5, Direction::Forward, 3).await.unwrap();
        assert_eq!(tail.iter().map(|e| e.stream_version).collect::<Vec<_>>(), vec![5, 6, 7]);
        let back = store.read_stream(s, u64::MAX, Direction::Backward, 2).await.unwrap();
        let last = events.len() as u64;
        assert_eq!(back.iter().map(|e| e.stream_version).collect::<Vec<_>>(), vec![last, last - 1]);
        let back = store.read_stream(s, 3, Direction::Backward, 10).await.unwrap();
        assert_eq!(back.iter().map(|e| e.stream_version).collect::<Vec<_>>(), vec![3, 2, 1]);
    }
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.events, all.len() as u64);
    assert_eq!(stats.streams, 5);
    assert_eq!(stats.last_position, all.last().unwrap().position);
    assert!(stats.bytes > 0);
    assert!(store.read_stream(&stream("product-none"), 1, Direction::Forward, 10).await.unwrap().is_empty());
    assert!(store.read_all(stats.last_position + 1, 10).await.unwrap().is_empty());
}

async fn idempotent_retries_neither_duplicate_nor_fail(mut b: impl Backend) {
    let store = b.open().await;
    let s = stream("product-idem");
    let batch = vec![event("a", b"1"), event("a", b"2"), event("a", b"3")];
    let first = store.append(&s, ExpectedVersion::NoStream, batch.clone()).await.unwrap();
    assert!(!first.deduplicated);
    store.append(&stream("product-other"), ExpectedVersion::Any, vec![event("b", b"x")]).await.unwrap();
    // The retry carries the same expected version as the first attempt: it must not conflict.
    let again = store.append(&s, ExpectedVersion::NoStream, batch.clone()).await.unwrap();
    assert!(again.deduplicated, "{}: a retry is recognized", b.name());
    assert_eq!(
        (again.first_position, again.last_position, again.stream_version),
        (first.first_position, first.last_position, 3)
    );
    let again = store.append(&s, ExpectedVersion::Any, batch.clone()).await.unwrap();
    assert!(again.deduplicated);
    // The same retry sent while other appends are under way (written together with them, where a
    // backend groups appends): still a retry, not a conflict with its own first write.
    let mut racing: Vec<_> = (0..32)
        .map(|i| {
            let (store, s) = (store.clone(), stream(&format!("product-crowd{i}")));
            Box::pin(async move { store.append(&s, ExpectedVersion::NoStream, vec![event("c", b"1")]).await })
                as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>
        })
        .collect();
    let (store2, s2, batch2) = (store.clone(), s.clone(), batch.clone());
    racing.push(Box::pin(async move { store2.append(&s2, ExpectedVersion::NoStream, batch2).await }));
    let mut results = futures_util::future::join_all(racing).await;
    let again = results.pop().unwrap();
    assert!(results.iter().all(|r| r.as_ref().is_ok_and(|r| !r.deduplicated)), "{}: {results:?}", b.name());
    let again = again.unwrap_or_else(|e| panic!("{}: a retry among other appends: {e}", b.name()));
    assert!(again.deduplicated, "{}: a retry among other appends is recognized", b.name());
    assert_eq!((again.first_position, again.stream_version), (first.first_position, 3));
    assert_eq!(store.stats().await.unwrap().events, 4 + 32, "{}: nothing duplicated", b.name());
    // Looking events up by id (what ingest checks a batch with before writing it).
    if b.name() != "kurrentdb" {
        let mut ids: Vec<uuid::Uuid> = batch.iter().rev().map(|e| e.event_id).collect();
        ids.push(uuid::Uuid::now_v7());
        let found = store.read_events_by_id(&ids).await.unwrap();
        let found_ids: Vec<uuid::Uuid> = found.iter().map(|e| e.event_id).collect();
        assert_eq!(
            found_ids,
            batch.iter().map(|e| e.event_id).collect::<Vec<_>>(),
            "{}: in global order, unknown ids left out",
            b.name()
        );
        assert!(found.iter().zip(&batch).all(|(r, e)| e.same_as(r)));
    }
    // Same id, different content: refused, not merged.
    let mut changed = batch[0].clone();
    changed.payload = b"other".to_vec();
    let e = store.append(&s, ExpectedVersion::Any, vec![changed]).await.unwrap_err();
    assert!(matches!(e, StoreError::IdConflict { .. }), "{}: {e}", b.name());
    // A known id in another stream: refused.
    let e = store.append(&stream("product-elsewhere"), ExpectedVersion::Any, vec![batch[1].clone()]).await.unwrap_err();
    assert!(matches!(e, StoreError::IdConflict { .. }), "{}: {e}", b.name());
    // A known id beside new ones: refused, and the new ones are not written.
    let e = store.append(&s, ExpectedVersion::Any, vec![batch[2].clone(), event("a", b"4")]).await.unwrap_err();
    assert!(matches!(e, StoreError::IdConflict { .. }), "{}: {e}", b.name());
    assert_eq!(store.stats().await.unwrap().events, 4 + 32);
    // Concurrent identical retries: stored once.
    let twin = vec![event("t", b"1"), event("t", b"2")];
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (store, twin) = (store.clone(), twin.clone());
        tasks
            .push(tokio::spawn(async move { store.append(&stream("product-twin"), ExpectedVersion::Any, twin).await }));
    }
    let results: Vec<_> = futures_join(tasks).await;
    assert!(results.iter().all(|r| r.is_ok()), "{}: {results:?}", b.name());
    assert_eq!(results.iter().filter(|r| !r.as_ref().unwrap().deduplicated).count(), 1);
    assert_eq!(store.stream_version(&stream("product-twin")).await.unwrap(), 2);
}

async fn futures_join<T: Send + 'static>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

async fn eight_writers_and_a_live_subscriber_see_every_event_once_in_order(mut b: impl Backend) {
    let store = b.open().await;
    let mut sub = subscribe_all(store.clone(), 1);
    const WRITERS: usize = 8;
    const EACH: usize = 2_000;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(EACH);
            for i in 0..EACH {
                let s = stream(&format!("product-w{w}-{}", i % 10));
                let e = event("e", format!("{w}:{i}").as_bytes());
                ids.push(e.event_id);
                store.append(&s, ExpectedVersion::Any, vec![e]).await.unwrap();
            }
            ids
        }));
    }
    let mut expected = HashSet::new();
    for t in tasks {
        expected.extend(t.await.unwrap());
    }
    let mut seen = HashSet::new();
    let mut last = 0;
    while seen.len() < WRITERS * EACH {
        let e = tokio::time::timeout(std::time::Duration::from_secs(30), sub.next())
            .await
            .unwrap_or_else(|_| panic!("{}: subscriber stalled after {} events", b.name(), seen.len()))
            .unwrap()
            .unwrap();
        assert!(e.position > last, "{}: the subscriber sees global order", b.name());
        if b.gap_free() {
            assert_eq!(e.position, last + 1, "{}: the subscriber sees global order with no gap", b.name());
        }
        last = e.position;
        assert!(seen.insert(e.event_id), "{}: an event was delivered twice", b.name());
    }
    assert_eq!(seen, expected);
    // And it goes on live.
    store.append(&stream("product-late"), ExpectedVersion::Any, vec![event("e", b"late")]).await.unwrap();
    let e = tokio::time::timeout(std::time::Duration::from_secs(10), sub.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(e.payload, b"late");
    assert!(e.position > last);
}

async fn tag_reads_page_through_concurrent_batches_in_order(mut b: impl Backend) {
    let store = b.open().await;
    let mut tasks = Vec::new();
    for w in 0..8usize {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..60usize {
                // Batches of 1 to 5 events; a tag every event has, one a writer's, one every third.
                let events = (0..i % 5 + 1)
                    .map(|j| {
                        tagged(
                            "e",
                            format!("{w}:{i}:{j}").as_bytes(),
                            &["all", &format!("w{w}"), &format!("k{}", j % 3)],
                        )
                    })
                    .collect();
                store.append(&stream(&format!("product-t{w}-{}", i % 4)), ExpectedVersion::Any, events).await.unwrap();
            }
        }));
    }
    futures_join(tasks).await;
    support::tag_reads_match_the_log(&*store, &["all", "w3", "k1", "k2", "none"]).await;
}

async fn reads_after_close_and_reopen_equal_reads_before(mut b: impl Backend) {
    let store = b.open().await;
    for i in 0..300u32 {
        let s = stream(&format!("product-{}", i % 7));
        let tags = [format!("shopper:{}", i % 3), "district:toys".to_string()];
        let e = tagged("e", &i.to_le_bytes().repeat(20), &[&tags[0], &tags[1]]);
        store.append(&s, ExpectedVersion::Any, vec![e]).await.unwrap();
    }
    let all = store.read_all(1, 10_000).await.unwrap();
    let by_tag = store.read_by_tag("shopper:1", 1, 10_000).await.unwrap();
    let stream3 = store.read_stream(&stream("product-3"), 1, Direction::Forward, 10_000).await.unwrap();
    let stats = store.stats().await.unwrap();
    assert_eq!(by_tag.len(), 100);
    assert!(by_tag.iter().all(|e| e.tags.contains(&"shopper:1".to_string())));
    assert!(by_tag.windows(2).all(|w| w[0].position < w[1].position));
    let from_middle = store.read_by_tag("shopper:1", by_tag[50].position, 10).await.unwrap();
    assert_eq!(from_middle[0].position, by_tag[50].position);
    store.close().await;
    drop(store);
    let store = b.open().await;
    assert_eq!(store.read_all(1, 10_000).await.unwrap(), all, "{}: read_all after reopen", b.name());
    assert_eq!(store.read_by_tag("shopper:1", 1, 10_000).await.unwrap(), by_tag);
    assert_eq!(store.read_stream(&stream("product-3"), 1, Direction::Forward, 10_000).await.unwrap(), stream3);
    let after = store.stats().await.unwrap();
    assert_eq!((after.events, after.streams, after.last_position), (stats.events, stats.streams, stats.last_position));
    // The reopened store goes on from where it was.
    let r = store
        .append(&stream("product-3"), ExpectedVersion::Exact(stream3.len() as u64), vec![event("e", b"more")])
        .await
        .unwrap();
    assert!(r.first_position > stats.last_position);
    if b.gap_free() {
        assert_eq!(r.first_position, stats.last_position + 1);
    }
}

async fn bad_input_gives_typed_errors_and_writes_nothing(mut b: impl Backend) {
    let store = b.open().await;
    for bad in ["", "product", "-1", "Product-1", "product-", "a b-1"] {
        assert!(StreamId::parse(bad).is_err(), "stream id {bad:?} is refused before it reaches a store");
    }
    let s = stream("product-bad");
    let e = store.append(&s, ExpectedVersion::Any, vec![]).await.unwrap_err();
    assert!(matches!(e, StoreError::EmptyBatch), "{}: {e}", b.name());
    let big = event("e", &vec![7u8; 70 * 1024]);
    let e = store.append(&s, ExpectedVersion::Any, vec![event("e", b"ok"), big]).await.unwrap_err();
    assert!(matches!(e, StoreError::EventTooLarge { .. }), "{}: {e}", b.name());
    let e = store.append(&s, ExpectedVersion::Any, vec![event("Bad Type", b"x")]).await.unwrap_err();
    assert!(matches!(e, StoreError::InvalidInput { .. }), "{}: {e}", b.name());
    let dup = event("e", b"x");
    let e = store.append(&s, ExpectedVersion::Any, vec![dup.clone(), dup]).await.unwrap_err();
    assert!(matches!(e, StoreError::InvalidInput { .. }), "{}: {e}", b.name());
    let e = store.append(&s, ExpectedVersion::Any, vec![tagged("e", b"x", &[""])]).await.unwrap_err();
    assert!(matches!(e, StoreError::InvalidInput { .. }), "{}: {e}", b.name());
    let e = store.append(&s, ExpectedVersion::Any, vec![tagged("e", b"x", &["t:1", "t:2", "t:1"])]).await.unwrap_err();
    assert!(matches!(e, StoreError::InvalidInput { .. }), "{}: {e}", b.name());
    let e = store.append(&s, ExpectedVersion::Exact(3), vec![event("e", b"x")]).await.unwrap_err();
    assert!(matches!(e, StoreError::WrongExpectedVersion { actual: 0, .. }), "{}: {e}", b.name());
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.events, stats.streams), (0, 0), "{}: nothing was written", b.name());
}

async fn subscriptions_start_from_any_position(mut b: impl Backend) {
    let store = b.open().await;
    for i in 0..50u8 {
        store.append(&stream("product-s"), ExpectedVersion::Any, vec![event("e", &[i])]).await.unwrap();
    }
    let all = store.read_all(1, 100).await.unwrap();
    let mut sub = subscribe_all(store.clone(), all[30].position);
    for e in &all[30..] {
        assert_eq!(sub.next().await.unwrap().unwrap().position, e.position);
    }
}

macro_rules! conformance {
    ($module:ident, $backend:expr) => {
        mod $module {
            use super::*;
            #[allow(unused_imports)]
            use support::*;

            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let Some(backend) = $backend else { return };
                        super::$name(backend).await;
                    }
                };
            }
            case!(racing_writers_on_one_stream_with_an_exact_version_exactly_one_wins);
            case!(stream_versions_are_contiguous_and_positions_strictly_increase);
            case!(idempotent_retries_neither_duplicate_nor_fail);
            case!(eight_writers_and_a_live_subscriber_see_every_event_once_in_order);
            case!(tag_reads_page_through_concurrent_batches_in_order);
            case!(reads_after_close_and_reopen_equal_reads_before);
            case!(bad_input_gives_typed_errors_and_writes_nothing);
            case!(subscriptions_start_from_any_position);
        }
    };
}

conformance!(embedded, Some(Embedded::new()));
conformance!(postgres, Some(pg::Postgres::new().await));
#[cfg(feature = "kurrentdb")]
conformance!(kurrentdb, kurrent::Kurrent::from_env());

#[allow(dead_code)]
fn _assert_object_safe(_: Arc<dyn EventStore>) {}
