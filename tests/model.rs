//! Model-based property test: random sequences of appends (with expected versions), retries,
//! reads, subscriptions and close/reopen, run against each backend, every answer checked
//! against a simple in-memory model of the log.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use mall_events::{AppendResult, Direction, ExpectedVersion, NewEvent, RecordedEvent, StoreError, subscribe_all};
use proptest::prelude::*;
use support::{Backend, stream};
use uuid::Uuid;

const STREAMS: usize = 3;
const TAGS: usize = 3;

#[derive(Debug, Clone)]
enum Expect {
    Any,
    NoStream,
    /// The model's current version plus this offset (0 is right, anything else is wrong).
    Offset(i8),
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        stream: usize,
        expect: Expect,
        sizes: Vec<u8>,
        tags: Vec<usize>,
    },
    /// Resend an earlier append (by index among appends so far, modulo their count).
    Retry(usize),
    ReadStream {
        stream: usize,
        from: u64,
        backward: bool,
        limit: usize,
    },
    ReadAll {
        from: u64,
        limit: usize,
    },
    ReadTag {
        tag: usize,
        from: u64,
        limit: usize,
    },
    Subscribe {
        from: u64,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let expect = prop_oneof![Just(Expect::Any), Just(Expect::NoStream), (-1i8..=1).prop_map(Expect::Offset)];
    prop_oneof![
        6 => (0..STREAMS, expect, prop::collection::vec(0u8..60, 1..4), prop::collection::vec(0..TAGS, 0..3))
            .prop_map(|(stream, expect, sizes, tags)| Op::Append { stream, expect, sizes, tags }),
        2 => any::<usize>().prop_map(Op::Retry),
        2 => (0..STREAMS, 0u64..8, any::<bool>(), 1usize..6).prop_map(|(stream, from, backward, limit)| Op::ReadStream { stream, from, backward, limit }),
        2 => (0u64..30, 1usize..10).prop_map(|(from, limit)| Op::ReadAll { from, limit }),
        1 => (0..TAGS, 0u64..30, 1usize..10).prop_map(|(tag, from, limit)| Op::ReadTag { tag, from, limit }),
        1 => (1u64..30).prop_map(|from| Op::Subscribe { from }),
        1 => Just(Op::Reopen),
    ]
}

/// What the model holds of one stored event.
#[derive(Debug, Clone, PartialEq)]
struct Stored {
    position: u64,
    id: Uuid,
    stream: String,
    version: u64,
    tags: Vec<String>,
    payload: Vec<u8>,
}

fn seen(e: &RecordedEvent) -> Stored {
    Stored {
        position: e.position,
        id: e.event_id,
        stream: e.stream_id.to_string(),
        version: e.stream_version,
        tags: e.tags.clone(),
        payload: e.payload.clone(),
    }
}

#[derive(Default)]
struct Model {
    log: Vec<Stored>,
    versions: HashMap<String, u64>,
    /// Every append sent: stream, expected version, events, and its result when it succeeded.
    appends: Vec<(String, ExpectedVersion, Vec<NewEvent>, Option<AppendResult>)>,
}

impl Model {
    /// The answer the log must give to an append.
    fn append(&mut self, s: &str, expected: ExpectedVersion, events: &[NewEvent]) -> Result<AppendResult, String> {
        let known: Vec<&Stored> = events.iter().filter_map(|e| self.log.iter().find(|x| x.id == e.event_id)).collect();
        if !known.is_empty() {
            // Only whole retries of a successful append are generated.
            assert_eq!(known.len(), events.len());
            return Ok(AppendResult {
                first_position: known[0].position,
                last_position: known[known.len() - 1].position,
                stream_version: known[known.len() - 1].version,
                deduplicated: true,
            });
        }
        let actual = self.versions.get(s).copied().unwrap_or(0);
        if !expected.accepts(actual) {
            return Err(format!("conflict at {actual}"));
        }
        let first = self.log.len() as u64 + 1;
        for (i, e) in events.iter().enumerate() {
            self.log.push(Stored {
                position: first + i as u64,
                id: e.event_id,
                stream: s.to_string(),
                version: actual + 1 + i as u64,
                tags: e.tags.clone(),
                payload: e.payload.clone(),
            });
        }
        self.versions.insert(s.to_string(), actual + events.len() as u64);
        Ok(AppendResult {
            first_position: first,
            last_position: first + events.len() as u64 - 1,
            stream_version: actual + events.len() as u64,
            deduplicated: false,
        })
    }
}

fn answer(r: Result<AppendResult, StoreError>) -> Result<AppendResult, String> {
    r.map_err(|e| match e {
        StoreError::WrongExpectedVersion { actual, .. } => format!("conflict at {actual}"),
        other => panic!("unexpected error {other}"),
    })
}

async fn run(mut backend: impl Backend, ops: Vec<Op>) {
    let mut store = backend.open().await;
    let mut model = Model::default();
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Append { stream: n, expect, sizes, tags } => {
                let s = format!("product-m{n}");
                let actual = model.versions.get(&s).copied().unwrap_or(0);
                let expected = match expect {
                    Expect::Any => ExpectedVersion::Any,
                    Expect::NoStream => ExpectedVersion::NoStream,
                    Expect::Offset(o) => ExpectedVersion::Exact((actual as i64 + o as i64).max(0) as u64),
                };
                let events: Vec<NewEvent> = sizes
                    .iter()
                    .map(|&size| {
                        support::tagged(
                            "e",
                            &vec![size; size as usize],
                            &tags
                                .iter()
                                .map(|t| format!("tag:{t}"))
                                .collect::<Vec<_>>()
                                .iter()
                                .map(String::as_str)
                                .collect::<Vec<_>>(),
                        )
                    })
                    .map(|mut e| {
                        e.tags.sort();
                        e.tags.dedup();
                        e
                    })
                    .collect();
                let want = model.append(&s, expected, &events);
                let got = answer(store.append(&stream(&s), expected, events.clone()).await);
                assert_eq!(got, want, "step {step}: append to {s} expecting {expected}");
                model.appends.push((s, expected, events, want.ok()));
            }
            Op::Retry(i) => {
                if model.appends.is_empty() {
                    continue;
                }
                let (s, expected, events, _) = model.appends[i % model.appends.len()].clone();
                let want = model.append(&s, expected, &events);
                let got = answer(store.append(&stream(&s), expected, events).await);
                assert_eq!(got, want, "step {step}: retry to {s}");
            }
            Op::ReadStream { stream: n, from, backward, limit } => {
                let s = format!("product-m{n}");
                let mut want: Vec<Stored> = model.log.iter().filter(|e| e.stream == s).cloned().collect();
                if backward {
                    want.retain(|e| e.version <= from);
                    want.reverse();
                } else {
                    want.retain(|e| e.version >= from);
                }
                want.truncate(limit);
                let dir = if backward { Direction::Backward } else { Direction::Forward };
                let got: Vec<Stored> =
                    store.read_stream(&stream(&s), from, dir, limit).await.unwrap().iter().map(seen).collect();
                assert_eq!(got, want, "step {step}: read {s} from {from} {dir:?}");
            }
            Op::ReadAll { from, limit } => {
                let want: Vec<Stored> = model.log.iter().filter(|e| e.position >= from).take(limit).cloned().collect();
                let got: Vec<Stored> = store.read_all(from, limit).await.unwrap().iter().map(seen).collect();
                assert_eq!(got, want, "step {step}: read all from {from}");
            }
            Op::ReadTag { tag, from, limit } => {
                let t = format!("tag:{tag}");
                let want: Vec<Stored> = model
                    .log
                    .iter()
                    .filter(|e| e.position >= from && e.tags.contains(&t))
                    .take(limit)
                    .cloned()
                    .collect();
                let got: Vec<Stored> = store.read_by_tag(&t, from, limit).await.unwrap().iter().map(seen).collect();
                assert_eq!(got, want, "step {step}: read tag {t} from {from}");
            }
            Op::Subscribe { from } => {
                let want: Vec<Stored> = model.log.iter().filter(|e| e.position >= from).cloned().collect();
                let mut sub = subscribe_all(store.clone(), from);
                for w in &want {
                    let e = tokio::time::timeout(Duration::from_secs(10), sub.next()).await.unwrap().unwrap().unwrap();
                    assert_eq!(&seen(&e), w, "step {step}: subscription from {from}");
                }
                // Nothing more than the log holds.
                let extra = tokio::time::timeout(Duration::from_millis(20), sub.next()).await;
                assert!(extra.is_err(), "step {step}: the subscription invented an event");
            }
            Op::Reopen => {
                store.close().await;
                drop(store);
                store = backend.open().await;
            }
        }
    }
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.events, model.log.len() as u64);
    assert_eq!(stats.streams, model.versions.len() as u64);
    store.close().await;
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_embedded_store_behaves_like_the_model(ops in prop::collection::vec(op(), 1..60)) {
        runtime().block_on(async {
            let mut b = support::Embedded::new();
            b.segment_size = 2048; // many segment rolls
            run(b, ops).await
        });
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_postgres_store_behaves_like_the_model(ops in prop::collection::vec(op(), 1..60)) {
        runtime().block_on(async { run(support::pg::Postgres::new().await, ops).await });
    }
}
