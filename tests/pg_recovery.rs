//! The PostgreSQL store survives lost connections: acknowledged events are never lost, and an
//! append whose COMMIT outcome is unknown is retried with the same event ids and stored once.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use mall_events::postgres::{PgConfig, PgStore};
use mall_events::{EventStore, ExpectedVersion, Fence, StoreError};
use support::{event, pg, stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn admin(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_terminated_connections() {
    let db = pg::Postgres::new().await;
    let store = Arc::new(PgStore::connect(PgConfig::new(&db.url)).await.unwrap());
    let killer = admin(&db.url).await;
    let dbname = db.url.rsplit('/').next().unwrap().to_string();
    let mut writers = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..300 {
                let e = event("e", format!("{w}-{i}").as_bytes());
                let id = e.event_id;
                // Every append must eventually succeed: the writer reconnects and retries.
                let r = store.append(&stream(&format!("product-k{w}")), ExpectedVersion::Any, vec![e]).await.unwrap();
                acked.push((id, r.first_position));
            }
            acked
        }));
    }
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        killer
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&dbname],
            )
            .await
            .unwrap();
    }
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    let all = store.read_all(1, 100_000).await.unwrap();
    assert_eq!(all.len(), 1_200, "every append stored exactly once");
    let at: HashMap<_, _> = all.iter().map(|e| (e.position, e.event_id)).collect();
    for (id, position) in &acked {
        assert_eq!(at.get(position), Some(id), "acknowledged {id} is there, at the position acknowledged");
    }
    // Positions of appends cut off before COMMIT hold gap rows, never returned.
    assert!(all.windows(2).all(|w| w[1].position > w[0].position));
}

/// Another process's append, run by hand inside a transaction left open: it takes the next
/// position and inserts its event, uncommitted.
/// Four processes' stores append tagged batches to one database at once: their groups commit in
/// parallel and take positions between each other's, and a tag read in small pages still gives
/// exactly the log's events with that tag, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_reads_stay_in_order_across_parallel_writers() {
    let db = pg::Postgres::new().await;
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(Arc::new(PgStore::connect(PgConfig::new(&db.url)).await.unwrap()));
    }
    let mut tasks = Vec::new();
    for (w, store) in stores.iter().enumerate() {
        for k in 0..4usize {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..40usize {
                    let events = (0..(i * 7 + k) % 30 + 1)
                        .map(|j| {
                            let tags = ["all".to_string(), format!("w{w}"), format!("k{}", j % 3)];
                            support::tagged("e", format!("{w}:{k}:{i}:{j}").as_bytes(), &[&tags[0], &tags[1], &tags[2]])
                        })
                        .collect();
                    let s = stream(&format!("product-p{w}-{k}"));
                    store.append(&s, ExpectedVersion::Any, events).await.unwrap();
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let reader = PgStore::connect(PgConfig::new(&db.url)).await.unwrap();
    support::tag_reads_match_the_log(&reader, &["all", "w2", "k0", "k2"]).await;
}

/// Appends gathered into one group, some acting for a lease under its current token, some under
/// an old one, some for none: each is decided on its own — the old token's refused and nothing
/// of it written, the others stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_refuses_only_the_appends_whose_lease_moved_on() {
    let db = pg::Postgres::new().await;
    let store = Arc::new(PgStore::connect(PgConfig::new(&db.url)).await.unwrap());
    admin(&db.url)
        .await
        .execute(
            "INSERT INTO mall_leases (name, token, expires_at) VALUES ('core', 7, now() + interval '1 hour'), \
             ('lapsed', 3, now() - interval '1 second')",
            &[],
        )
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..60usize {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let fence = match i % 4 {
                0 => None,
                1 => Some(Fence { lease: "core".into(), token: 7 }),
                2 => Some(Fence { lease: "core".into(), token: 6 }),
                _ => Some(Fence { lease: "lapsed".into(), token: 3 }),
            };
            let s = stream(&format!("product-f{}", i % 5));
            let e = support::tagged("e", format!("{i}").as_bytes(), &["fenced-test"]);
            let id = e.event_id;
            let r = match &fence {
                Some(f) => store.append_fenced(f, &s, ExpectedVersion::Any, vec![e]).await,
                None => store.append(&s, ExpectedVersion::Any, vec![e]).await,
            };
            (i, id, r)
        }));
    }
    let mut stored = Vec::new();
    for t in tasks {
        let (i, id, r) = t.await.unwrap();
        match i % 4 {
            0 | 1 => {
                r.unwrap_or_else(|e| panic!("append {i} under a held lease or none was refused: {e}"));
                stored.push(id);
            }
            _ => assert!(matches!(r, Err(StoreError::Fenced { .. })), "append {i} under an old or lapsed token: {r:?}"),
        }
    }
    let tagged: Vec<_> = store.read_by_tag("fenced-test", 1, 1_000).await.unwrap().iter().map(|e| e.event_id).collect();
    stored.sort();
    let mut got = tagged.clone();
    got.sort();
    assert_eq!(got, stored, "exactly the accepted appends are in the log");
    let mut versions = 0;
    for k in 0..5 {
        versions += store.stream_version(&stream(&format!("product-f{k}"))).await.unwrap();
    }
    assert_eq!(versions, 30, "refused appends gave their versions back");

    // One at a time, so that each finds its writer idle and is sent by its caller's task: the
    // same refusals, alone and in a batch.
    let s = stream("product-f0");
    for (token, lapsed, n, accepted) in
        [(6, false, 1, false), (3, true, 2, false), (7, false, 1, true), (7, false, 2, true)]
    {
        let fence = Fence { lease: if lapsed { "lapsed" } else { "core" }.into(), token };
        let before = store.stream_version(&s).await.unwrap();
        let events: Vec<_> =
            (0..n).map(|k| support::tagged("e", format!("one {token} {k}").as_bytes(), &["fenced-one"])).collect();
        let r = store.append_fenced(&fence, &s, ExpectedVersion::Exact(before), events.clone()).await;
        let stored: Vec<_> =
            store.read_by_tag("fenced-one", 1, 100).await.unwrap().iter().map(|e| e.event_id).collect();
        let mine = events.iter().filter(|e| stored.contains(&e.event_id)).count();
        if accepted {
            assert_eq!(r.unwrap().stream_version, before + n as u64, "{fence:?}, {n} events");
            assert_eq!(mine, n, "{fence:?}: stored");
        } else {
            assert!(matches!(r, Err(StoreError::Fenced { .. })), "{fence:?}, {n} events: {r:?}");
            assert_eq!((mine, store.stream_version(&s).await.unwrap()), (0, before), "{fence:?}: nothing written");
        }
    }
}

async fn append_in_open_transaction(tx: &tokio_postgres::Transaction<'_>, stream: &str) {
    tx.query(
        "SELECT * FROM mall_append(ARRAY[$1::text], ARRAY[-1::bigint], ARRAY[1], ARRAY[$2::uuid], ARRAY['e'], \
         ARRAY[1::smallint], ARRAY[''], ARRAY[NULL::uuid], ARRAY[NULL::uuid], ARRAY['\\x00'::bytea], now(), \
         ARRAY[NULL::text], ARRAY[NULL::bigint])",
        &[&stream, &uuid::Uuid::now_v7()],
    )
    .await
    .unwrap();
}

/// A lone single-event append (one statement, not `mall_append`) checks versions as a group
/// does: refusals name the stream's version — also when it waited on another transaction that
/// moved the stream — write nothing, and a resent id comes back as already stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_event_is_checked_like_a_group() {
    let db = pg::Postgres::new().await;
    let store = Arc::new(PgStore::connect(PgConfig::new(&db.url)).await.unwrap());
    let s = stream("product-lone");
    let version = |r: Result<mall_events::AppendResult, StoreError>| r.map(|r| r.stream_version);
    let actual = |r: Result<mall_events::AppendResult, StoreError>| match r {
        Err(StoreError::WrongExpectedVersion { actual, .. }) => actual,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(version(store.append(&s, ExpectedVersion::NoStream, vec![event("e", b"1")]).await).unwrap(), 1);
    assert_eq!(actual(store.append(&s, ExpectedVersion::NoStream, vec![event("e", b"x")]).await), 1);
    assert_eq!(actual(store.append(&s, ExpectedVersion::Exact(5), vec![event("e", b"x")]).await), 1);
    assert_eq!(actual(store.append(&s, ExpectedVersion::Exact(0), vec![event("e", b"x")]).await), 1);
    assert_eq!(version(store.append(&s, ExpectedVersion::Exact(1), vec![event("e", b"2")]).await).unwrap(), 2);
    let again = event("e", b"3");
    let first = store.append(&s, ExpectedVersion::Any, vec![again.clone()]).await.unwrap();
    assert_eq!((first.stream_version, first.deduplicated), (3, false));
    let resent = store.append(&s, ExpectedVersion::Any, vec![again]).await.unwrap();
    assert_eq!((resent.first_position, resent.stream_version, resent.deduplicated), (first.first_position, 3, true));

    let new = stream("product-never");
    assert_eq!(actual(store.append(&new, ExpectedVersion::Exact(3), vec![event("e", b"x")]).await), 0);
    assert_eq!(store.stream_version(&new).await.unwrap(), 0, "a refused append created its stream");

    // Another transaction holds the stream's row (version 4 once it commits): the append waits,
    // then is refused naming version 4, not the 3 it saw when it started.
    let mut other = admin(&db.url).await;
    let tx = other.transaction().await.unwrap();
    append_in_open_transaction(&tx, s.as_str()).await;
    let waiting = tokio::spawn({
        let (store, s) = (store.clone(), s.clone());
        async move { store.append(&s, ExpectedVersion::Exact(3), vec![event("e", b"x")]).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the append did not wait for the stream's lock");
    tx.commit().await.unwrap();
    assert_eq!(actual(waiting.await.unwrap()), 4);
    assert_eq!(version(store.append(&s, ExpectedVersion::Exact(4), vec![event("e", b"5")]).await).unwrap(), 5);
    let events = store.read_stream(&s, 1, mall_events::Direction::Forward, 100).await.unwrap();
    assert_eq!(events.iter().map(|e| e.stream_version).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    let all = store.read_all(1, 100).await.unwrap();
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(all.len(), 5, "refused appends wrote nothing");
}

/// A batch with a stored id that is not its first (looked up only when its key refuses it) writes
/// nothing, and leaves no position unsettled: the positions it took are gap rows at once, so no
/// reader waits at them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refused_for_a_stored_id_leaves_no_hole() {
    let db = pg::Postgres::new().await;
    let store = PgStore::connect(PgConfig::new(&db.url)).await.unwrap();
    let stored = event("e", b"a");
    store.append(&stream("product-one"), ExpectedVersion::Any, vec![stored.clone()]).await.unwrap();
    let e = store
        .append(&stream("product-two"), ExpectedVersion::Any, vec![event("e", b"b"), stored, event("e", b"c")])
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::IdConflict { .. }), "{e}");
    assert_eq!(store.stream_version(&stream("product-two")).await.unwrap(), 0, "nothing of the batch is written");
    let after = store.append(&stream("product-three"), ExpectedVersion::Any, vec![event("e", b"d")]).await.unwrap();
    let row = admin(&db.url)
        .await
        .query_one("SELECT count(*), max(position), count(*) FILTER (WHERE stream_id <> '$gap') FROM mall_events", &[])
        .await
        .unwrap();
    let (rows, last, events) = (row.get::<_, i64>(0), row.get::<_, i64>(1), row.get::<_, i64>(2));
    assert_eq!(last as u64, after.last_position);
    assert_eq!(rows, last, "every position up to the last is an event or a gap row");
    assert_eq!(events, 2);
    let started = std::time::Instant::now();
    let all = store.read_all(1, 10).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(
        started.elapsed() < mall_events::postgres::GAP_PATIENCE,
        "a reader waited at the refused batch's positions"
    );
}

/// Appends commit in any order: a reader of the global order must wait for a lower position
/// still in flight (never skip it when it commits late), and pass one whose transaction aborted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_wait_for_a_position_in_flight_and_pass_an_abandoned_one() {
    let db = pg::Postgres::new().await;
    let store = Arc::new(PgStore::connect(PgConfig::new(&db.url)).await.unwrap());
    let first = store.append(&stream("product-a"), ExpectedVersion::Any, vec![event("e", b"1")]).await.unwrap();
    assert_eq!(first.first_position, 1);

    let mut other = admin(&db.url).await;
    let tx = other.transaction().await.unwrap();
    append_in_open_transaction(&tx, "product-b").await;
    let late = store.append(&stream("product-c"), ExpectedVersion::Any, vec![event("e", b"3")]).await.unwrap();
    assert_eq!(late.first_position, 3, "position 2 is held by the open transaction");
    let reader = tokio::spawn({
        let store = store.clone();
        async move { store.read_all(2, 10).await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!reader.is_finished(), "a reader passed position 2 while its transaction was in flight");
    tx.commit().await.unwrap();
    let read = tokio::time::timeout(Duration::from_secs(10), reader).await.unwrap().unwrap();
    assert_eq!(read.iter().map(|e| e.position).collect::<Vec<_>>(), vec![2, 3], "the late commit is read in order");

    let tx = other.transaction().await.unwrap();
    append_in_open_transaction(&tx, "product-d").await;
    tx.rollback().await.unwrap();
    let after = store.append(&stream("product-e"), ExpectedVersion::Any, vec![event("e", b"5")]).await.unwrap();
    assert_eq!(after.first_position, 5);
    let read = tokio::time::timeout(Duration::from_secs(10), store.read_all(4, 10)).await.unwrap().unwrap();
    assert_eq!(read.iter().map(|e| e.position).collect::<Vec<_>>(), vec![5], "the abandoned position is passed");
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.last_position, stats.events), (5, 4), "the gap row is settled, not counted");
    let all = store.read_all(1, 10).await.unwrap();
    assert_eq!(all.iter().map(|e| e.position).collect::<Vec<_>>(), vec![1, 2, 3, 5]);
}

/// A TCP proxy in front of PostgreSQL that, when armed, forwards the next message carrying
/// [`MARKER`] (the append, whose implicit transaction commits with it) to the server but drops
/// the connection before the server's answer reaches the client.
const MARKER: &[u8] = b"the-outcome-of-this-append-is-lost";

struct CommitDropper {
    port: u16,
    armed: Arc<AtomicBool>,
    dropped: Arc<AtomicBool>,
}

impl CommitDropper {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicBool::new(false));
        let (a, d) = (armed.clone(), dropped.clone());
        tokio::spawn(async move {
            loop {
                let (client, _) = listener.accept().await.unwrap();
                let server = TcpStream::connect("127.0.0.1:5432").await.unwrap();
                tokio::spawn(proxy(client, server, a.clone(), d.clone()));
            }
        });
        Self { port, armed, dropped }
    }
}

async fn proxy(client: TcpStream, server: TcpStream, armed: Arc<AtomicBool>, dropped: Arc<AtomicBool>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let blackhole = Arc::new(AtomicBool::new(false));
    let bh = blackhole.clone();
    let down = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match sr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if bh.load(Ordering::SeqCst) {
                return; // the answer to COMMIT never arrives
            }
            if cw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    // The last bytes of the previous read: the marker may be split across two reads.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match cr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        tail.extend_from_slice(&buf[..n]);
        let commit = tail.windows(MARKER.len()).any(|w| w == MARKER);
        tail = tail[tail.len().saturating_sub(MARKER.len() - 1)..].to_vec();
        if commit && armed.swap(false, Ordering::SeqCst) {
            blackhole.store(true, Ordering::SeqCst);
            // Set before anything else: the client may see the answer's side close, reconnect
            // and finish its retry before the sleep below is over.
            dropped.store(true, Ordering::SeqCst);
            let _ = sw.write_all(&buf[..n]).await;
            // Let the server run and commit it, then cut the client off without its answer.
            tokio::time::sleep(Duration::from_millis(200)).await;
            down.abort();
            return;
        }
        if sw.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    down.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_whose_commit_outcome_is_unknown_is_stored_exactly_once() {
    let db = pg::Postgres::new().await;
    let proxy = CommitDropper::start().await;
    let name = db.url.rsplit('/').next().unwrap();
    let url = format!("postgres://postgres@127.0.0.1:{}/{name}", proxy.port);
    let store = PgStore::connect(PgConfig::new(&url)).await.unwrap();
    let s = stream("product-unknown");
    store.append(&s, ExpectedVersion::NoStream, vec![event("e", b"first")]).await.unwrap();
    proxy.armed.store(true, Ordering::SeqCst);
    let batch = vec![event("e", MARKER), event("e", b"b")];
    // The exact expected version would conflict if the retry did not recognize its own commit.
    let r = store.append(&s, ExpectedVersion::Exact(1), batch.clone()).await.unwrap();
    assert!(proxy.dropped.load(Ordering::SeqCst), "the COMMIT answer was lost on the way");
    assert_eq!((r.first_position, r.last_position, r.stream_version), (2, 3, 3));
    assert!(!r.deduplicated, "the first write of these events is reported as such");
    let all = store.read_all(1, 100).await.unwrap();
    assert_eq!(all.len(), 3, "stored exactly once");
    assert_eq!(all[1].event_id, batch[0].event_id);
    assert_eq!(all[2].event_id, batch[1].event_id);

    // A lone event, which its caller appends on the idle writer's connection itself, the same.
    proxy.dropped.store(false, Ordering::SeqCst);
    proxy.armed.store(true, Ordering::SeqCst);
    let lone = event("e", MARKER);
    let r = store.append(&s, ExpectedVersion::Exact(3), vec![lone.clone()]).await.unwrap();
    assert!(proxy.dropped.load(Ordering::SeqCst), "the answer to the lone append was lost on the way");
    assert_eq!((r.first_position, r.last_position, r.stream_version), (4, 4, 4));
    assert!(!r.deduplicated, "the first write of the lone event is reported as such");
    let all = store.read_all(1, 100).await.unwrap();
    assert_eq!(all.len(), 4, "stored exactly once");
    assert_eq!(all[3].event_id, lone.event_id);

    // An append queued behind one that holds the writer's connection, so that the writer's task
    // sends it and loses the answer: the same.
    proxy.dropped.store(false, Ordering::SeqCst);
    proxy.armed.store(true, Ordering::SeqCst);
    let mut holder = Box::pin(store.append(&s, ExpectedVersion::Any, vec![event("e", b"holder")]));
    assert!((&mut holder).now_or_never().is_none(), "the first append holds the connection");
    let queued = event("e", MARKER);
    let mut behind = Box::pin(store.append(&s, ExpectedVersion::Exact(5), vec![queued.clone()]));
    assert!((&mut behind).now_or_never().is_none(), "the second append waits in the writer's queue");
    let (held, r) = tokio::join!(holder, behind);
    assert_eq!(held.unwrap().last_position, 5);
    let r = r.unwrap();
    assert!(proxy.dropped.load(Ordering::SeqCst), "the answer to the queued append was lost on the way");
    assert_eq!((r.first_position, r.last_position, r.stream_version), (6, 6, 6));
    assert!(!r.deduplicated, "the first write of the queued event is reported as such");
    let all = store.read_all(1, 100).await.unwrap();
    assert_eq!(all.len(), 6, "stored exactly once");
    assert_eq!(all[5].event_id, queued.event_id);
}

/// A caller that stops waiting for its append (an HTTP client gone, say) does not stop it: the
/// event is stored, and the store's waiters are woken by it at once, not at their next look a
/// second later. (A lone event is appended by its caller's own task when the writer is idle.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_its_caller_stopped_waiting_for_still_commits_and_wakes_readers() {
    let db = pg::Postgres::new().await;
    let store = Arc::new(PgStore::connect(PgConfig::new(&db.url)).await.unwrap());
    let s = stream("product-dropped");
    let first = store.append(&s, ExpectedVersion::Any, vec![event("e", b"first")]).await.unwrap();
    for round in 0..5 {
        let head = first.last_position + round;
        let waiter = {
            let store = store.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                store.wait_for_append(head).await;
                t.elapsed()
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let e = event("e", format!("dropped {round}").as_bytes());
        // Polled once (its statement is sent), then dropped.
        let polled = store.append(&s, ExpectedVersion::Any, vec![e.clone()]).now_or_never();
        assert!(polled.is_none(), "round {round}: the append was still under way when its caller left");
        let woke = waiter.await.unwrap();
        assert!(woke < Duration::from_millis(700), "round {round}: the waiter woke after {woke:?}");
        let stored = store.read_all(head + 1, 10).await.unwrap();
        assert_eq!(stored.iter().map(|x| x.event_id).collect::<Vec<_>>(), vec![e.event_id], "round {round}");
    }
}

/// A plain LISTEN connection on the log's channel (not a mall listener): the payloads it hears.
async fn overhear(url: &str) -> (tokio_postgres::Client, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let (client, mut conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(m)) = futures_util::future::poll_fn(|cx| conn.poll_message(cx)).await {
            if let tokio_postgres::AsyncMessage::Notification(n) = m
                && tx.send(n.payload().to_string()).is_err()
            {
                return;
            }
        }
    });
    client.batch_execute("LISTEN mall_events").await.unwrap();
    (client, rx)
}

/// The positions heard within `within`.
async fn positions_heard(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>, within: Duration) -> Vec<u64> {
    let mut heard = Vec::new();
    let until = tokio::time::Instant::now() + within;
    while let Ok(Some(p)) = tokio::time::timeout_at(until, rx.recv()).await {
        heard.extend(p.parse::<u64>().ok());
    }
    heard
}

/// A store alone on its database wakes its own readers and sends no NOTIFY; once another
/// process's store listens (its HELLO heard), the first's appends are told to it at once, and
/// when that store is gone they are no longer sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_notifies_only_while_another_process_listens() {
    let db = pg::Postgres::new().await;
    let a = PgStore::connect(PgConfig::new(&db.url)).await.unwrap();
    let (_watcher, mut heard) = overhear(&db.url).await;
    let first = a.append(&stream("product-n1"), ExpectedVersion::Any, vec![event("e", b"1")]).await.unwrap();
    a.wait_for_append(first.last_position - 1).await;
    assert_eq!(positions_heard(&mut heard, Duration::from_millis(400)).await, Vec::<u64>::new(), "alone: no NOTIFY");

    let b = PgStore::connect(PgConfig::new(&db.url)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let waiter = tokio::spawn(async move {
        b.wait_for_append(first.last_position).await;
        (b, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = a.append(&stream("product-n1"), ExpectedVersion::Any, vec![event("e", b"2")]).await.unwrap();
    let (b, woke) = waiter.await.unwrap();
    // Without the NOTIFY, b's reader would look again only after its one-second wait.
    assert!(woke < Duration::from_millis(600), "b was told of a's append at once (after {woke:?})");
    assert!(positions_heard(&mut heard, Duration::from_millis(300)).await.contains(&second.last_position));

    drop(b);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    a.append(&stream("product-n1"), ExpectedVersion::Any, vec![event("e", b"3")]).await.unwrap();
    a.append(&stream("product-n1"), ExpectedVersion::Any, vec![event("e", b"4")]).await.unwrap();
    assert_eq!(
        positions_heard(&mut heard, Duration::from_millis(400)).await,
        Vec::<u64>::new(),
        "alone again: no NOTIFY"
    );
}

/// Appends `n` events tagged `t` to `stream` through `mall_append`, passing the writer's run of
/// them (schema V24) as the store does.
async fn append_tagged_run(db: &tokio_postgres::Client, stream: &str, n: i32) {
    append_with_runs(db, stream, &vec![&["t"][..]; n as usize], &[("t", 1, n)]).await;
}

/// The writer's runs are taken as they are only when its group got consecutive positions: two
/// groups whose positions interleave (forced here through the sequence) must not leave a tag
/// with overlapping runs, or a read by tag would come out of order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_groups_runs_are_split_where_other_groups_took_positions_between_them() {
    let pg = pg::Postgres::new().await;
    let store = PgStore::connect(PgConfig::new(&pg.url)).await.unwrap();
    let db = admin(&pg.url).await;
    db.batch_execute("ALTER SEQUENCE mall_positions INCREMENT BY 2").await.unwrap();
    append_tagged_run(&db, "product-a", 3).await; // 1, 3, 5
    db.batch_execute("SELECT setval('mall_positions', 2, false)").await.unwrap();
    append_tagged_run(&db, "product-b", 2).await; // 2, 4
    db.batch_execute("ALTER SEQUENCE mall_positions INCREMENT BY 1").await.unwrap();
    let runs: Vec<(i64, i64)> = db
        .query("SELECT first_position, last_position FROM mall_tag_runs WHERE tag = 't' ORDER BY last_position", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(runs, vec![(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)], "no run spans another group's position");
    let read: Vec<u64> = store.read_by_tag("t", 1, 100).await.unwrap().iter().map(|e| e.position).collect();
    assert_eq!(read, vec![1, 2, 3, 4, 5]);
    // A group at consecutive positions is one run a tag, as the writer gave it.
    db.batch_execute("SELECT setval('mall_positions', 10)").await.unwrap();
    append_tagged_run(&db, "product-c", 4).await; // 11..14
    let last: (i64, i64, Vec<i64>) = db
        .query_one(
            "SELECT first_position, last_position, positions FROM mall_tag_runs WHERE tag = 't' AND last_position = 14",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .unwrap();
    assert_eq!(last, (11, 14, vec![11, 12, 13, 14]));
}

/// Appends to `stream` through `mall_append` one event for each of `tags` (an event's tags), with
/// the writer's runs given as they are (a tag, its run's first and last event, 1-based).
async fn append_with_runs(db: &tokio_postgres::Client, stream: &str, tags: &[&[&str]], runs: &[(&str, i32, i32)]) {
    call_mall_append(db, stream, tags, runs, None).await;
}

/// [`append_with_runs`], and with `postings` the events' postings given as a node before V27
/// gave them (each the tag itself, through V25's signature); without, none (V27's signature).
async fn call_mall_append(
    db: &tokio_postgres::Client,
    stream: &str,
    tags: &[&[&str]],
    runs: &[(&str, i32, i32)],
    postings: Option<&[Option<&str>]>,
) {
    let n = tags.len() as i32;
    let ids: Vec<uuid::Uuid> = (0..n).map(|_| uuid::Uuid::now_v7()).collect();
    let tags: Vec<String> = tags.iter().map(|t| t.join("\x1f")).collect();
    let run_tags: Vec<&str> = runs.iter().map(|r| r.0).collect();
    let first: Vec<i32> = runs.iter().map(|r| r.1).collect();
    let last: Vec<i32> = runs.iter().map(|r| r.2).collect();
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
        vec![&stream, &n, &ids, &tags, &run_tags, &first, &last];
    if let Some(p) = &postings {
        params.push(p);
    }
    let sql = format!(
        "SELECT outcome FROM mall_append(ARRAY[$1::text], ARRAY[-1::bigint], ARRAY[$2::integer], $3::uuid[], \
         array_fill('e'::text, ARRAY[$2]), array_fill(1::smallint, ARRAY[$2]), $4::text[], \
         array_fill(NULL::uuid, ARRAY[$2]), array_fill(NULL::uuid, ARRAY[$2]), array_fill('\\x00'::bytea, ARRAY[$2]), \
         now(), ARRAY[NULL::text], ARRAY[NULL::bigint], $5::text[], $6::integer[], $7::integer[], {})",
        if postings.is_some() { "$8::text[]" } else { "NULL::smallint[]" }
    );
    let rows = db.query(&sql, &params).await.unwrap();
    assert_eq!(rows[0].get::<_, &str>(0), "ok");
}

/// A tag's run rows in `mall_tag_runs`, each its positions, in order.
async fn tag_runs(db: &tokio_postgres::Client, tag: &str) -> Vec<Vec<i64>> {
    db.query("SELECT positions FROM mall_tag_runs WHERE tag = $1 ORDER BY last_position", &[&tag])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Reads each tag through the store from every position up to `max_from` at every page size up
/// to `max_limit`, and checks each read against the tag's positions (`all`): whole and in order.
async fn reads_by_tag_whole(store: &PgStore, tags: &[(&str, &[u64])], max_from: u64, max_limit: usize) {
    for (tag, all) in tags {
        for from in 0..=max_from {
            for limit in 1..=max_limit {
                let want: Vec<u64> = all.iter().copied().filter(|p| *p >= from).take(limit).collect();
                let got: Vec<u64> =
                    store.read_by_tag(tag, from, limit).await.unwrap().iter().map(|e| e.position).collect();
                assert_eq!(got, want, "{tag} from {from}, limit {limit}");
            }
        }
    }
}

/// A group whose positions jump in the middle — another connection took a block of the sequence
/// between two of the group's, forced here through the sequence's cache — keeps the writer's
/// runs, each split only where the positions jump (schema V26), and a tag read through the store
/// comes out whole and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_groups_runs_are_split_only_where_its_positions_jump() {
    let pg = pg::Postgres::new().await;
    let store = PgStore::connect(PgConfig::new(&pg.url)).await.unwrap();
    let db = admin(&pg.url).await;
    let other = admin(&pg.url).await;
    async fn next(c: &tokio_postgres::Client) -> i64 {
        c.query_one("SELECT nextval('mall_positions')", &[]).await.unwrap().get(0)
    }
    db.batch_execute("ALTER SEQUENCE mall_positions CACHE 3").await.unwrap();
    // `other` holds 1..3 and `db` 4..6; `db` writes 4 and 5, `other` uses 2 and 3 and takes 7..9.
    assert_eq!(next(&other).await, 1);
    append_with_runs(&db, "product-a", &[&["t"], &["t"]], &[("t", 1, 2)]).await;
    for want in [2, 3, 7] {
        assert_eq!(next(&other).await, want);
    }
    // 6, then 10, 11, 12: the positions jump before the second event.
    append_with_runs(
        &db,
        "product-b",
        &[&["a", "b"], &["a", "b"], &["a", "c"], &["a", "c"]],
        &[("a", 1, 4), ("b", 1, 2), ("c", 3, 4)],
    )
    .await;
    db.batch_execute("ALTER SEQUENCE mall_positions CACHE 1").await.unwrap();
    let runs = |tag: &'static str| tag_runs(&db, tag);
    assert_eq!(runs("t").await, vec![vec![4, 5]], "consecutive: the writer's run as it is");
    assert_eq!(runs("a").await, vec![vec![6], vec![10, 11, 12]], "split at the jump, whole on either side");
    assert_eq!(runs("b").await, vec![vec![6], vec![10]]);
    assert_eq!(runs("c").await, vec![vec![11, 12]], "a run after the jump is not split");
    // 1..3 and 7..9 are taken by no event: a read of the log settles them.
    assert_eq!(store.read_all(1, 100).await.unwrap().len(), 6);
    reads_by_tag_whole(&store, &[("t", &[4, 5]), ("a", &[6, 10, 11, 12]), ("b", &[6, 10]), ("c", &[11, 12])], 13, 5)
        .await;
}

/// A stream's index holds one entry a run (schema V25): the last event of what one request
/// appended to the stream, holding the run's positions. Reads from every version, either way and
/// at every page size, give the stream's events as the log holds them — also for a run whose
/// positions another stream's events interleave (forced through the sequence) and for events
/// written one at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_read_through_its_runs() {
    use mall_events::Direction;
    let pg = pg::Postgres::new().await;
    let store = PgStore::connect(PgConfig::new(&pg.url)).await.unwrap();
    let db = admin(&pg.url).await;
    let s = stream("product-s");
    let batch = |n: usize| (0..n).map(|i| event("e", format!("{i}").as_bytes())).collect::<Vec<_>>();
    for n in [5, 1, 1, 3] {
        store.append(&s, ExpectedVersion::Any, batch(n)).await.unwrap();
    }
    store.append(&stream("product-other"), ExpectedVersion::Any, batch(2)).await.unwrap();
    // A run of three at positions 13, 15 and 17, another stream's run at 14 and 16.
    let head: i64 = db.query_one("SELECT last_value FROM mall_positions", &[]).await.unwrap().get(0);
    assert_eq!(head, 12);
    db.batch_execute("SELECT setval('mall_positions', 11); ALTER SEQUENCE mall_positions INCREMENT BY 2")
        .await
        .unwrap();
    append_tagged_run(&db, "product-s", 3).await;
    db.batch_execute("SELECT setval('mall_positions', 12)").await.unwrap();
    append_tagged_run(&db, "product-other", 2).await;
    db.batch_execute("ALTER SEQUENCE mall_positions INCREMENT BY 1; SELECT setval('mall_positions', 17)")
        .await
        .unwrap();
    let entries: i64 = db
        .query_one("SELECT count(*) FROM mall_events WHERE stream_id = 'product-s' AND run_end", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(entries, 5, "one index entry a run: 5, 1, 1, 3 and 3 events");

    let all: Vec<(u64, u64, uuid::Uuid)> = store
        .read_all(1, 1_000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.stream_id == s)
        .map(|e| (e.stream_version, e.position, e.event_id))
        .collect();
    assert_eq!(all.iter().map(|e| e.0).collect::<Vec<_>>(), (1..=13).collect::<Vec<_>>());
    assert_eq!(all[10..].iter().map(|e| e.1).collect::<Vec<_>>(), vec![13, 15, 17]);
    for from in 0..=15u64 {
        for limit in 1..=14usize {
            let forward: Vec<_> = all.iter().filter(|e| e.0 >= from).take(limit).copied().collect();
            let backward: Vec<_> = all.iter().rev().filter(|e| e.0 <= from).take(limit).copied().collect();
            for (dir, want) in [(Direction::Forward, forward), (Direction::Backward, backward)] {
                let got: Vec<_> = store
                    .read_stream(&s, from, dir, limit)
                    .await
                    .unwrap()
                    .iter()
                    .map(|e| (e.stream_version, e.position, e.event_id))
                    .collect();
                assert_eq!(got, want, "from {from}, {dir:?}, limit {limit}");
            }
        }
    }
    assert_eq!(store.read_stream(&stream("product-none"), 0, Direction::Forward, 10).await.unwrap(), vec![]);
}

/// A tag is read from its runs and from its postings on the event rows (schema V25): an event's
/// first tag no neighbour in its group shares is kept on the event, in a batch and on a lone
/// event, and a tag read from any position at any page size comes out whole and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_is_read_from_its_runs_and_its_postings() {
    let pg = pg::Postgres::new().await;
    let store = PgStore::connect(PgConfig::new(&pg.url)).await.unwrap();
    let db = admin(&pg.url).await;
    let s = stream("product-t");
    let batch = |tags: &[&[&str]]| tags.iter().map(|t| support::tagged("e", b"", t)).collect::<Vec<_>>();
    // 1, 2, 3: "x" a run of three; "s1" alone on 1 and 3, "s2" alone on 2.
    store.append(&s, ExpectedVersion::Any, batch(&[&["x", "s1"], &["x", "s2"], &["x", "s1"]])).await.unwrap();
    // 4: a lone event, "s1" its posting, "y" a run of one.
    store.append(&s, ExpectedVersion::Any, batch(&[&["s1", "y"]])).await.unwrap();
    // 5, 6: "s1" a run of two.
    store.append(&s, ExpectedVersion::Any, batch(&[&["s1"], &["s1"]])).await.unwrap();
    let postings = |tag: &'static str| {
        let db = &db;
        async move {
            db.query_one(
                "SELECT coalesce(array_agg(position ORDER BY position), '{}') FROM mall_events \
                 WHERE posting IS NOT NULL AND split_part(tags, E'\\x1f', posting) = $1",
                &[&tag],
            )
            .await
            .unwrap()
            .get::<_, Vec<i64>>(0)
        }
    };
    let runs = |tag: &'static str| tag_runs(&db, tag);
    assert_eq!(postings("s1").await, vec![1, 3, 4]);
    assert_eq!(runs("s1").await, vec![vec![5, 6]]);
    assert_eq!(postings("s2").await, vec![2]);
    assert_eq!(runs("x").await, vec![vec![1, 2, 3]]);
    assert_eq!((postings("y").await, runs("y").await), (vec![], vec![vec![4]]));
    // 8, 10, 12: a batch whose positions are not consecutive (forced through the sequence), so
    // the function groups its runs itself — leaving out the writer's postings ("s3" on 8 and 12).
    db.batch_execute("ALTER SEQUENCE mall_positions INCREMENT BY 2; SELECT setval('mall_positions', 6)").await.unwrap();
    store.append(&s, ExpectedVersion::Any, batch(&[&["z", "s3"], &["z"], &["z", "s3"]])).await.unwrap();
    db.batch_execute("ALTER SEQUENCE mall_positions INCREMENT BY 1").await.unwrap();
    assert_eq!((postings("s3").await, runs("s3").await), (vec![8, 12], vec![]));
    assert_eq!(runs("z").await, vec![vec![8], vec![10], vec![12]]);
    // 7, 9 and 11 are taken by no one: a read of the log settles them (gap rows).
    assert_eq!(store.read_all(1, 100).await.unwrap().len(), 9);
    let tags: [(&str, &[u64]); 6] =
        [("s1", &[1, 3, 4, 5, 6]), ("x", &[1, 2, 3]), ("s2", &[2]), ("y", &[4]), ("s3", &[8, 12]), ("z", &[8, 10, 12])];
    reads_by_tag_whole(&store, &tags, 13, 6).await;
}

/// Schema V27 keeps an event's tags as one text and its posting as an index into them: events
/// stored before it read back with the same tags, in the same order, and are found by each of
/// their tags (postings included); a node that still passes postings as tags appends as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stored_before_v27_keep_their_tags_and_postings() {
    let pg = pg::Postgres::new().await;
    mall_events::postgres::migrate_to(&pg.url, Some(26)).await.unwrap();
    let db = admin(&pg.url).await;
    // 1, 2, 3: "s1" posted on 1 and 3 (each event's second tag), "s2" on 2; "x" and "w" runs of
    // one. 4: no tags.
    call_mall_append(
        &db,
        "product-m",
        &[&["x", "s1"], &["w", "s2"], &["x", "s1"], &[]],
        &[("x", 1, 1), ("w", 2, 2), ("x", 3, 3)],
        Some(&[Some("s1"), Some("s2"), Some("s1"), None]),
    )
    .await;
    let before: Vec<(i64, Vec<String>, Option<String>)> = db
        .query("SELECT position, tags, posting FROM mall_events ORDER BY position", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(before[1].2.as_deref(), Some("s2"), "V26 keeps the posting as the tag");
    let store = PgStore::connect(PgConfig::new(&pg.url)).await.unwrap();
    let read: Vec<(i64, Vec<String>)> =
        store.read_all(1, 100).await.unwrap().into_iter().map(|e| (e.position as i64, e.tags)).collect();
    let expected: Vec<(i64, Vec<String>)> = before.iter().map(|(p, t, _)| (*p, t.clone())).collect();
    assert_eq!(read, expected, "every event's tags, as stored before");
    assert_eq!(read[3].1, Vec::<String>::new());
    let postings: Vec<(i64, Option<i16>)> = db
        .query("SELECT position, posting FROM mall_events ORDER BY position", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(postings, vec![(1, Some(2)), (2, Some(2)), (3, Some(2)), (4, None)]);
    // 5, 6: appended through V25's signature after V27.
    call_mall_append(&db, "product-m", &[&["s1", "x"], &["s2"]], &[("x", 1, 1)], Some(&[Some("s1"), Some("s2")])).await;
    let tags: [(&str, &[u64]); 4] = [("s1", &[1, 3, 5]), ("s2", &[2, 6]), ("x", &[1, 3, 5]), ("w", &[2])];
    reads_by_tag_whole(&store, &tags, 7, 4).await;
}
