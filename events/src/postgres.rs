//! The PostgreSQL backend: the log in one table, appends from every writer in parallel, group
//! commit, and live subscribers woken by LISTEN/NOTIFY.
//!
//! **Global order without skipped events.** Positions come from a sequence, taken when a row is
//! inserted, but rows become visible when their transaction commits, and transactions commit in
//! any order: a subscriber that has read up to position 10 could miss a position-9 event whose
//! transaction commits after it looked. Until schema V19 mall serialized every append on one
//! head row held until COMMIT, which made every writer on the database one queue. Now an append
//! locks only its streams' rows (in stream order, so groups never deadlock), takes positions
//! after those locks (so within a stream versions and positions rise together), and commits
//! alongside other appends. Readers of the global order read only the **settled prefix**: from
//! their position up to the first position not yet visible. A missing position with visible
//! positions after it belongs to a transaction in flight, or to one that aborted (a dropped
//! connection, a lost race on an event id). A reader that has seen the same position missing for
//! [`GAP_PATIENCE`] fills it with a gap row (stream `$gap`, never returned to callers): the gap
//! row's INSERT waits on the position's unique key while a writer holds it, so it is written only
//! where no transaction will ever commit; a writer that took a position a gap row filled first
//! fails on the key and runs its group again. Positions therefore rise strictly in the order every
//! reader sees them, with holes where gap rows stand, and no reader ever skips a late commit.
//!
//! Group commit: a writer task gathers every append waiting for it into one statement, a
//! server-side function (`mall_append`, schemas V25-V27) prepared once per connection that checks
//! versions and fences, assigns positions and versions, and inserts the events (with their tag
//! postings and stream runs) and the tag runs — one round trip; its transactions and those of other
//! processes commit together. A process runs [`PgConfig::writers`] writers (two by default), each
//! with the appends of its share of the streams, so that they never wait on each other's stream
//! locks. An append that is alone in its group, of one event and with no lease, runs as one plain
//! statement doing the same (a function call's overhead was a fifth of a lone writer's time). An
//! append that finds its writer idle (nothing queued, the connection free) is sent by the
//! caller's own task on the writer's connection, as a group of one (`PgStore::append_directly`:
//! the hand-overs between tasks cost a lone writer a tenth of its appends). A
//! group with an event id the log already holds (a retry) takes the careful path instead, a
//! transaction of several statements that tells a retry from a reused id. Listeners of other
//! processes are told after COMMIT, by a NOTIFY on another connection (a NOTIFY inside the append
//! would hold the notification queue's lock through every commit and make appends one queue again),
//! and only while another process listens: this process's own readers are woken directly.
//!
//! **Unknown commit outcomes.** When the connection drops during an append, the writer cannot
//! know whether COMMIT happened. It reconnects and runs the same group again with the same event
//! ids: events that did commit are recognized by their ids and not written twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::{AsyncMessage, Client, NoTls, Row, Statement};
use uuid::Uuid;

use crate::envelope::{AppendResult, ExpectedVersion, NewEvent, RecordedEvent};
use crate::ids::{Position, StreamId};
use crate::store::{Direction, EventStore, Fence, KnownEvent, Limits, StoreError, StoreStats, check_retry};

mod embedded_schema {
    refinery::embed_migrations!("../schema");
}

/// The channel appends NOTIFY on commit.
const CHANNEL: &str = "mall_events";
/// How long the writer keeps reconnecting before it fails the appends it holds.
const RECONNECT_FOR: Duration = Duration::from_secs(60);
/// How long a reader waits for a missing position (below visible ones) before it fills it with a
/// gap row. Appends in flight commit within milliseconds; a position still missing after this
/// is most likely abandoned, and filling it is safe either way (see the module docs).
pub const GAP_PATIENCE: Duration = Duration::from_millis(50);
/// The stream of gap rows: positions no transaction will commit. Not a valid [`StreamId`].
const GAP_STREAM: &str = "$gap";
/// The least time between two NOTIFYs of one process, for each other process listening
/// ([`notify_every`]): each NOTIFY costs every listening backend a transaction.
const NOTIFY_EVERY_PER_LISTENER: Duration = Duration::from_micros(2_500);
/// The bounds of that time: how much later than its own subscribers another process's are woken,
/// at most, under a steady stream of appends (the first append after a quiet spell is told at
/// once).
const NOTIFY_EVERY: (Duration, Duration) = (Duration::from_millis(5), Duration::from_millis(50));
/// How its listener connection is named (`application_name`): a process NOTIFYs only while
/// another process's listener is connected to the database.
const LISTENER_NAME: &str = "mall-log-listener";
/// What a listener NOTIFYs when it starts listening, so that processes appending already tell it
/// of their appends from then on (positions are numbers: older listeners pass over it).
const HELLO: &str = "listening";
/// How often a process that appends looks again for other processes' listeners.
const PEERS_EVERY: Duration = Duration::from_secs(1);
/// How many times a group that lost a race on a unique key (an event id, a position a gap row
/// filled) is run again before its appends fail.
const RACE_RETRIES: usize = 8;
/// The most append requests one transaction carries.
const MAX_GROUP: usize = 1_024;
/// An advisory-lock key for migrations, so that nodes starting together apply them once.
const MIGRATION_LOCK: i64 = 0x6d61_6c6c_0001;

const COLUMNS: &str = "position, event_id, stream_id, stream_version, event_type, schema_version, recorded_at, \
                       tags, correlation_id, causation_id, payload";

/// How to reach PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// A libpq-style URL or key=value string.
    pub url: String,
    /// Event and batch size bounds.
    pub limits: Limits,
    /// Connections for reads.
    pub pool_size: usize,
    /// Writer connections of this process (default 2): each gathers the appends waiting for it
    /// into one transaction, and a stream's appends always go to the same one, so that two
    /// writers never wait on each other's stream locks (two kept both cores busy: 64 concurrent
    /// single-event appends went from 20k/s to 27–31k/s; three or four were slower). A stream's
    /// appends take positions in the order they reach the store; with more than one writer,
    /// appends to different streams may take them in another order — `mall import`, which keeps a
    /// file's order across streams, uses one.
    pub writers: usize,
}

impl PgConfig {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), limits: Limits::default(), pool_size: 8, writers: 2 }
    }
}

struct Request {
    stream: StreamId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    fence: Option<Fence>,
    /// Whether it was sent once already, on a connection lost before its outcome came back (it
    /// may have committed): its events found stored are then its first write, not a retry.
    attempted: bool,
    reply: oneshot::Sender<Result<AppendResult, StoreError>>,
}

/// A writer connection, once connected, with its statements; shared by its task and the callers
/// that append on it directly while it is idle ([`PgStore::append_directly`]).
type WriterConnection = Arc<tokio::sync::Mutex<Option<(Client, Statements)>>>;

/// One writer of a process: its queue and its connection.
#[derive(Clone)]
struct Writer {
    queue: mpsc::Sender<Request>,
    connection: WriterConnection,
}

/// The PostgreSQL event store.
pub struct PgStore {
    config: PgConfig,
    pool: Pool,
    /// The writer connections; a stream's appends always go to the same one.
    writers: std::sync::Mutex<Option<Vec<Writer>>>,
    /// The highest position a NOTIFY announced or this process appended.
    notified: watch::Sender<Position>,
    /// The highest position this process appended (what its NOTIFYs tell other processes).
    appended: watch::Sender<Position>,
    listener: tokio::task::JoinHandle<()>,
    notifier: tokio::task::JoinHandle<()>,
    /// Every position up to this one is settled (an event or a gap row).
    settled: std::sync::atomic::AtomicU64,
    /// The value of `settled` last written to `mall_log_settled`.
    settled_saved: std::sync::atomic::AtomicU64,
    /// Missing positions (below visible ones) and when a reader first saw each missing.
    gaps: std::sync::Mutex<HashMap<Position, Instant>>,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Whether an error means the connection is gone (so the outcome of the statement is unknown).
fn connection_lost(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || e.code().is_none()
        || e.code().is_some_and(|c| c.code().starts_with("57P") || c.code().starts_with("08"))
}

async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// Applies the migrations in `schema/` (the event log's tables and the read tables) once, under
/// an advisory lock, so that nodes starting together apply them once.
pub async fn migrate(url: &str) -> Result<(), StoreError> {
    migrate_to(url, None).await
}

/// Applies the migrations in `schema/` up to `version` (all of them when `None`), as [`migrate`]:
/// what a test of a migration starts from.
pub async fn migrate_to(url: &str, version: Option<i32>) -> Result<(), StoreError> {
    let mut client = connect(url).await.map_err(backend)?;
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await.map_err(backend)?;
    let mut runner = embedded_schema::migrations::runner();
    if let Some(v) = version {
        runner = runner.set_target(refinery::Target::Version(v));
    }
    let migrated = runner.run_async(&mut client).await;
    client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await.map_err(backend)?;
    migrated.map_err(|e| StoreError::Backend(format!("migrations failed: {e}")))?;
    Ok(())
}

impl PgStore {
    /// Connects, applies the migrations in `schema/` (once, under an advisory lock), and starts
    /// the writer and the LISTEN task.
    pub async fn connect(config: PgConfig) -> Result<Self, StoreError> {
        migrate(&config.url).await?;

        let pg: tokio_postgres::Config = config.url.parse().map_err(backend)?;
        let manager = Manager::from_config(pg, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager).max_size(config.pool_size).build().map_err(backend)?;

        let (highest, settled) = {
            let c = pool.get().await.map_err(backend)?;
            let row = c
                .query_one(
                    "SELECT (SELECT coalesce(max(position), 0) FROM mall_events), (SELECT position FROM mall_log_settled)",
                    &[],
                )
                .await
                .map_err(backend)?;
            (row.get::<_, i64>(0) as Position, row.get::<_, i64>(1) as Position)
        };
        let notified = watch::Sender::new(highest);
        let appended = watch::Sender::new(highest);
        let writers = (0..config.writers.max(1))
            .map(|_| {
                let (queue, rx) = mpsc::channel(MAX_GROUP * 4);
                let connection = WriterConnection::default();
                tokio::spawn(writer_task(
                    config.url.clone(),
                    rx,
                    connection.clone(),
                    notified.clone(),
                    appended.clone(),
                ));
                Writer { queue, connection }
            })
            .collect();
        let heard = watch::Sender::new(0);
        let peers = Peers::default();
        let listener = tokio::spawn(listen_task(config.url.clone(), notified.clone(), heard.clone(), peers.clone()));
        let notifier = tokio::spawn(notify_task(config.url.clone(), appended.subscribe(), heard.subscribe(), peers));
        Ok(Self {
            config,
            pool,
            writers: std::sync::Mutex::new(Some(writers)),
            notified,
            appended,
            listener,
            notifier,
            settled: settled.into(),
            settled_saved: settled.into(),
            gaps: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Hands a request to the writer and waits for its outcome.
    async fn send(
        &self,
        fence: Option<Fence>,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        self.config.limits.check(&events)?;
        let writer = {
            let writers = self.writers.lock().expect("writer lock");
            let writers = writers.as_ref().ok_or(StoreError::Closed)?;
            writers[writer_of(stream, writers.len())].clone()
        };
        let (reply, rx) = oneshot::channel();
        let mut req = Request { stream: stream.clone(), expected, events, fence, attempted: false, reply };
        if !req.events.is_empty() && writer.queue.capacity() == writer.queue.max_capacity() {
            match self.append_directly(&writer, req).await {
                Ok(result) => return result,
                Err(back) => req = back,
            }
        }
        writer.queue.send(req).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Appends `req` on `writer`'s connection from the caller's own task when the writer is idle —
    /// nothing queued, its connection free — as its task would a group of one ([`append_fast`]),
    /// but without the two hand-overs between tasks each way, about a tenth of a lone writer's
    /// time. Gives `req` back for the queue when the writer is busy or not connected, and when the
    /// statement wrote nothing or may have (a stored id, a lost race, a lost connection): the
    /// writer's task takes it from there, as it would have. If the caller stops waiting, the
    /// append runs on to its end in a task of its own, so that a committed event still wakes this
    /// process's readers and other processes' listeners.
    async fn append_directly(
        &self,
        writer: &Writer,
        req: Request,
    ) -> Result<Result<AppendResult, StoreError>, Request> {
        let Ok(connection) = writer.connection.clone().try_lock_owned() else { return Err(req) };
        if connection.as_ref().is_none_or(|(c, _)| c.is_closed()) {
            return Err(req);
        }
        let (notified, appended) = (self.notified.clone(), self.appended.clone());
        RunsToTheEnd::new(async move {
            let (client, statements) = connection.as_ref().expect("connected");
            let outcome = append_fast(client, statements, std::slice::from_ref(&req)).await;
            drop(connection);
            match outcome {
                Ok(Some(mut results)) => {
                    let result = results.pop().expect("one request, one result");
                    if let Ok(r) = &result {
                        announce(&notified, &appended, r.last_position);
                    }
                    Ok(result)
                }
                // A stored id: the careful path tells a retry from a reused id.
                Ok(None) => Err(req),
                Err(e) if connection_lost(&e) => Err(Request { attempted: true, ..req }),
                Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => Err(req),
                Err(e) => Ok(Err(backend(e))),
            }
        })
        .await
    }

    /// Deals with `missing`, a position not visible while `present` (a higher one) is: waits a
    /// little (when `wait`) until it has been missing for [`GAP_PATIENCE`], then fills every
    /// position from `missing` up to `present` that no transaction holds with a gap row. The
    /// INSERT waits for a writer still holding one of them, so it never takes a position that
    /// will commit. Returns whether the positions are settled now.
    async fn settle(
        &self,
        client: &deadpool_postgres::ClientWrapper,
        missing: Position,
        present: Position,
        wait: bool,
    ) -> Result<bool, StoreError> {
        let first_seen = {
            let mut gaps = self.gaps.lock().expect("gaps lock");
            if gaps.len() > 1_024 {
                gaps.clear();
            }
            *gaps.entry(missing).or_insert_with(Instant::now)
        };
        let waited = first_seen.elapsed();
        if waited < GAP_PATIENCE {
            if wait {
                tokio::time::sleep((GAP_PATIENCE - waited).min(Duration::from_millis(2))).await;
            }
            return Ok(false);
        }
        let stmt = client
            .prepare_cached(
                "INSERT INTO mall_events (position, event_id, stream_id, stream_version, event_type, schema_version, \
                 recorded_at, payload) \
                 SELECT p, gen_random_uuid(), $3, p, $3, 0, now(), '' FROM generate_series($1::bigint, $2::bigint) AS p \
                 ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(backend)?;
        let filled =
            client.execute(&stmt, &[&(missing as i64), &(present as i64 - 1), &GAP_STREAM]).await.map_err(backend)?;
        if filled > 0 {
            tracing::info!(from = missing, to = present - 1, filled, "filled positions no transaction will commit");
        }
        self.gaps.lock().expect("gaps lock").remove(&missing);
        Ok(true)
    }

    /// The last position of the settled prefix: every position up to it holds an event or a gap
    /// row. Does not wait for appends in flight; fills positions missing for longer than
    /// [`GAP_PATIENCE`].
    async fn settled_prefix(&self, client: &deadpool_postgres::ClientWrapper) -> Result<Position, StoreError> {
        use std::sync::atomic::Ordering::Relaxed;
        const PAGE: i64 = 10_000;
        let stmt = client
            .prepare_cached("SELECT position FROM mall_events WHERE position > $1 ORDER BY position LIMIT $2")
            .await
            .map_err(backend)?;
        let mut at = self.settled.load(Relaxed);
        loop {
            let rows = client.query(&stmt, &[&(at as i64), &PAGE]).await.map_err(backend)?;
            let mut missing = None;
            for row in &rows {
                let position = row.get::<_, i64>(0) as Position;
                if position != at + 1 {
                    missing = Some(position);
                    break;
                }
                at = position;
            }
            // Read on after a full page, or after a gap now settled.
            let more = match missing {
                None => rows.len() as i64 == PAGE,
                Some(present) => self.settle(client, at + 1, present, false).await?,
            };
            if !more {
                break;
            }
        }
        let before = self.settled.fetch_max(at, Relaxed);
        if at >= self.settled_saved.load(Relaxed) + 10_000 && at > before {
            self.settled_saved.fetch_max(at, Relaxed);
            client
                .execute("UPDATE mall_log_settled SET position = $1 WHERE id AND position < $1", &[&(at as i64)])
                .await
                .map_err(backend)?;
        }
        Ok(at.max(before))
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(backend)
    }

    async fn query_events(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(backend)?;
        let rows = client.query(&stmt, params).await.map_err(backend)?;
        rows.iter().map(row_to_event).collect()
    }
}

fn row_to_event(row: &Row) -> Result<RecordedEvent, StoreError> {
    Ok(RecordedEvent {
        position: row.get::<_, i64>(0) as Position,
        event_id: row.get(1),
        stream_id: StreamId::parse(row.get::<_, String>(2)).map_err(backend)?,
        stream_version: row.get::<_, i64>(3) as u64,
        event_type: row.get(4),
        schema_version: row.get::<_, i16>(5) as u16,
        recorded_at: row.get(6),
        tags: split_tags(row.get(7)),
        correlation_id: row.get(8),
        causation_id: row.get(9),
        payload: row.get(10),
    })
}

/// An event's tags as its row holds them (schema V27): joined by U+001F, '' for none.
fn split_tags(joined: &str) -> Vec<String> {
    if joined.is_empty() { Vec::new() } else { joined.split('\u{1f}').map(str::to_string).collect() }
}

/// What the listener tells the notifier about other processes: its own connection's backend
/// (so that it is not counted as another's) and each HELLO another process's listener sent.
#[derive(Clone, Default)]
struct Peers {
    own_backend: Arc<std::sync::atomic::AtomicI32>,
    hellos: Arc<watch::Sender<u64>>,
}

/// Follows NOTIFYs on a dedicated connection and publishes the positions they carry (to readers
/// in `notified`, and as `heard`); reconnects when the connection drops (and then wakes every
/// waiter, to re-read). Says HELLO on the channel each time it starts listening.
async fn listen_task(url: String, notified: watch::Sender<Position>, heard: watch::Sender<Position>, peers: Peers) {
    loop {
        match connect_listener(&url).await {
            Ok((client, own, mut messages)) => {
                peers.own_backend.store(own, std::sync::atomic::Ordering::Relaxed);
                // A commit may have happened while no connection listened: wake waiters to look.
                notified.send_modify(|_| {});
                while let Some((from, payload)) = messages.recv().await {
                    if let Ok(p) = payload.parse::<Position>() {
                        raise(&notified, p);
                        raise(&heard, p);
                    } else if payload == HELLO && from != own {
                        peers.hellos.send_modify(|n| *n += 1);
                    }
                }
                drop(client);
                tracing::warn!("LISTEN connection lost; reconnecting");
            }
            Err(e) => tracing::warn!(error = %e, "cannot LISTEN; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A listening connection, named [`LISTENER_NAME`], its backend's process id, and the
/// notifications it receives (the sending backend's process id and the payload). Says [`HELLO`].
async fn connect_listener(
    url: &str,
) -> Result<(Client, i32, mpsc::UnboundedReceiver<(i32, String)>), tokio_postgres::Error> {
    let (client, mut conn) = tokio_postgres::connect(url, NoTls).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    // The connection object yields NOTIFY messages only when polled directly.
    tokio::spawn(async move {
        loop {
            match futures_util::future::poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if tx.send((n.process_id(), n.payload().to_string())).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            }
        }
    });
    client.batch_execute(&format!("SET application_name = '{LISTENER_NAME}'; LISTEN {CHANNEL}")).await?;
    let own: i32 = client.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
    client.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &HELLO]).await?;
    Ok((client, own, rx))
}

/// How many listeners of other processes are connected to this database: those named
/// [`LISTENER_NAME`] other than this process's own (`own`, its backend's process id).
const OTHER_LISTENERS: &str = "SELECT count(*) FROM pg_stat_activity \
     WHERE datname = current_database() AND application_name = $1 AND pid <> $2";

/// The least time between two NOTIFYs of a process while `listeners` other processes listen:
/// [`NOTIFY_EVERY_PER_LISTENER`] for each, within [`NOTIFY_EVERY`]. Every process NOTIFYing at
/// that pace, the listeners' transactions stay about 400 a second for each process however many
/// there are, where at a fixed pace they grow with the square of their number.
fn notify_every(listeners: i64) -> Duration {
    NOTIFY_EVERY_PER_LISTENER.saturating_mul(listeners.clamp(0, 1_000) as u32).clamp(NOTIFY_EVERY.0, NOTIFY_EVERY.1)
}

/// Tells other processes' listeners, after COMMIT, the highest position this process appended:
/// at most one NOTIFY every [`notify_every`], for every append committed since the last one (each
/// NOTIFY wakes every listening backend; one per append cost a third of a lone writer's appends).
/// None when a NOTIFY `heard` on the channel already told of a position at or past this
/// process's appends: every listener was told of it, and a reader told of a position reads on
/// until it has passed it (waiting for positions still in flight below it), so it reads these
/// appends too. Under several busy processes most NOTIFYs are so spared (eight writing stores:
/// 1,600 NOTIFYs a second, each waking eight listeners, before). Eight stores writing batches of
/// 100 still ran some 7,800 transactions a second besides their appends at a fixed 5 ms (each
/// listener's backend reads a notification in a transaction of its own), and about 4,400 at
/// [`notify_every`]'s 17.5 ms for seven others, when they appended 8% more (medians of four
/// alternating runs: 102.8k and 109.8k events a second).
///
/// None either while no other process listens (looked up every [`PEERS_EVERY`], and at once
/// when one says [`HELLO`]): a node alone on its database wakes its own readers directly, and
/// the NOTIFYs it sent anyway — a transaction each, waking its own listener — cost a lone
/// writer about a tenth of its appends (1.52k/s with them, 1.72k/s without: medians of three
/// alternating runs). A process that starts listening reads what was appended
/// before; an append it was not told of in the moment before its HELLO arrived is read within
/// the second its readers look on their own.
async fn notify_task(
    url: String,
    mut appended: watch::Receiver<Position>,
    heard: watch::Receiver<Position>,
    peers: Peers,
) {
    let mut client: Option<(Client, Statement, Statement)> = None;
    let mut hellos = peers.hellos.subscribe();
    let mut last = Instant::now() - NOTIFY_EVERY.1;
    // How many other processes listened when last looked up, and when that was.
    let mut others: Option<(i64, Instant)> = None;
    while appended.changed().await.is_ok() {
        let every = notify_every(others.map_or(0, |(n, _)| n));
        tokio::time::sleep(every.saturating_sub(last.elapsed())).await;
        last = Instant::now();
        let position = *appended.borrow_and_update();
        if *heard.borrow() >= position {
            continue;
        }
        if client.as_ref().is_none_or(|(c, _, _)| c.is_closed()) {
            client = connect_notifier(&url).await.ok();
        }
        let Some((c, notify, listeners)) = &client else { continue };
        if hellos.has_changed().unwrap_or(false) {
            hellos.mark_unchanged();
            others = Some((others.map_or(1, |(n, _)| n.max(1)), Instant::now()));
        }
        if others.is_none_or(|(_, at)| at.elapsed() >= PEERS_EVERY) {
            let own = peers.own_backend.load(std::sync::atomic::Ordering::Relaxed);
            // Not known (the lookup failed): tell them anyway.
            others = c.query_one(listeners, &[&LISTENER_NAME, &own]).await.ok().map(|r| (r.get(0), Instant::now()));
        }
        if others.is_some_and(|(listening, _)| listening == 0) {
            continue;
        }
        if let Err(e) = c.execute(notify, &[&CHANNEL, &position.to_string()]).await {
            // Listeners also look every second on their own; the next append notifies again.
            tracing::debug!(error = %e, "cannot NOTIFY");
            client = None;
        }
    }
}

/// The NOTIFY connection: its transactions only carry a hint (the appends it tells of committed
/// durably before), so they don't wait for the WAL to reach the disk.
async fn connect_notifier(url: &str) -> Result<(Client, Statement, Statement), tokio_postgres::Error> {
    let c = connect(url).await?;
    c.batch_execute("SET synchronous_commit = off").await?;
    let notify = c.prepare("SELECT pg_notify($1, $2)").await?;
    let listeners = c.prepare(OTHER_LISTENERS).await?;
    Ok((c, notify, listeners))
}

/// A future run to its end even when its caller stops waiting for it: dropped before it is done,
/// it goes on in a task of its own (when a runtime is there to run it). Awaited, it runs in the
/// caller's task: spawning every direct append would bring back the hand-over between tasks that
/// the direct path spares.
struct RunsToTheEnd<T: Send + 'static>(Option<std::pin::Pin<Box<dyn Future<Output = T> + Send>>>);

impl<T: Send + 'static> RunsToTheEnd<T> {
    fn new(f: impl Future<Output = T> + Send + 'static) -> Self {
        Self(Some(Box::pin(f)))
    }
}

impl<T: Send + 'static> Future for RunsToTheEnd<T> {
    type Output = T;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<T> {
        let this = self.get_mut();
        let f = this.0.as_mut().expect("polled after it was done");
        let out = std::task::ready!(f.as_mut().poll(cx));
        this.0 = None;
        std::task::Poll::Ready(out)
    }
}

impl<T: Send + 'static> Drop for RunsToTheEnd<T> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            // What it returns is for no one now; its effects (a commit's wake-ups) still happen.
            runtime.spawn(async move {
                f.await;
            });
        }
    }
}

/// Tells this process's readers (`notified`) and, through the notifier, other processes'
/// listeners (`appended`) that the log holds position `p`.
fn announce(notified: &watch::Sender<Position>, appended: &watch::Sender<Position>, p: Position) {
    raise(notified, p);
    raise(appended, p);
}

/// Raises a watched position to `p` (waking its waiters) when `p` is higher.
fn raise(w: &watch::Sender<Position>, p: Position) {
    w.send_if_modified(|cur| {
        let higher = p > *cur;
        if higher {
            *cur = p;
        }
        higher
    });
}

/// The writer of `writers` that appends to `stream`: always the same one, so that no two of a
/// process's writers wait on each other's stream locks.
fn writer_of(stream: &StreamId, writers: usize) -> usize {
    use std::hash::{Hash, Hasher};
    if writers == 1 {
        return 0;
    }
    let mut h = std::hash::DefaultHasher::new();
    stream.as_str().hash(&mut h);
    (h.finish() % writers as u64) as usize
}

/// One writer connection of this process: gathers the appends waiting in its queue (those of its
/// share of the streams) into one transaction.
async fn writer_task(
    url: String,
    mut rx: mpsc::Receiver<Request>,
    connection: WriterConnection,
    notified: watch::Sender<Position>,
    appended: watch::Sender<Position>,
) {
    loop {
        let mut group = {
            let Some(first) = rx.recv().await else { return };
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(r) => group.push(r),
                    Err(_) => break,
                }
            }
            group
        };
        let started = Instant::now();
        let mut client = connection.lock().await;
        let mut careful = false;
        let mut races = 0;
        let outcome = loop {
            if client.as_ref().is_none_or(|(c, _)| c.is_closed()) {
                match connect_writer(&url).await {
                    Ok(c) => *client = Some(c),
                    Err(e) if started.elapsed() < RECONNECT_FOR => {
                        tracing::warn!(error = %e, "event store connection lost; reconnecting");
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        continue;
                    }
                    Err(e) => break Err(backend(format!("cannot reach PostgreSQL: {e}"))),
                }
            }
            let (c, statements) = client.as_mut().expect("connected");
            let fast = if careful {
                commit_group(c, &group).await
            } else {
                match append_fast(c, statements, &group).await {
                    Ok(Some(results)) => Ok(results),
                    // An id the log holds (a retry, say): the careful path.
                    Ok(None) => commit_group(c, &group).await,
                    Err(e) => Err(e),
                }
            };
            match fast {
                Ok(results) => break Ok(results),
                Err(e) if connection_lost(&e) && started.elapsed() < RECONNECT_FOR => {
                    // The COMMIT may or may not have happened: run the same group again; its
                    // event ids make the events that did commit come back as already stored.
                    tracing::warn!(error = %e, "append interrupted; retrying with the same event ids");
                    for req in &mut group {
                        req.attempted = true;
                    }
                    *client = None;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                // Another writer committed one of the event ids while a lone append or the careful
                // path ran, or a reader filled one of its positions with a gap row (`mall_append`
                // catches both itself and answers as for a stored id): nothing was written; run
                // it again on the careful path, which tells a retry from a reused id.
                Err(e)
                    if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) && races < RACE_RETRIES =>
                {
                    tracing::debug!(error = %e, "append lost a race on a unique key; running it again");
                    races += 1;
                    careful = true;
                }
                Err(e) => break Err(backend(e)),
            }
        };
        drop(client);
        match outcome {
            Ok(results) => {
                let last = results.iter().filter_map(|r| r.as_ref().ok()).map(|r| r.last_position).max();
                for (req, result) in group.into_iter().zip(results) {
                    let _ = req.reply.send(result);
                }
                if let Some(last) = last {
                    announce(&notified, &appended, last);
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for req in group {
                    let _ = req.reply.send(Err(StoreError::Backend(msg.clone())));
                }
            }
        }
    }
}

/// A writer connection's prepared statements.
struct Statements {
    group: Statement,
    one: Statement,
}

/// A writer connection, its session set and its statements prepared.
async fn connect_writer(url: &str) -> Result<(Client, Statements), tokio_postgres::Error> {
    let c = connect(url).await?;
    // A careful-path transaction left open by a paused process would hold its positions, and
    // every reader behind them, until its session ends. The append statements are lookups by
    // key, planned once per session. Named, so that an operator finds a node's writers among
    // its connections (`pg_stat_activity`).
    c.batch_execute(
        "SET idle_in_transaction_session_timeout = '10s'; \
         SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off; \
         SET application_name = 'mall-log-writer'",
    )
    .await?;
    let statements = Statements { group: c.prepare(APPEND).await?, one: c.prepare(APPEND_ONE).await? };
    Ok((c, statements))
}

/// Appends `group` in one statement, the one that fits it: [`APPEND_ONE`] for a lone event with
/// no lease, else `mall_append`. `None` when the log holds one of its ids (the careful path's
/// case).
async fn append_fast(
    client: &Client,
    statements: &Statements,
    group: &[Request],
) -> Result<Option<Vec<Result<AppendResult, StoreError>>>, tokio_postgres::Error> {
    match group {
        [one] if one.events.len() == 1 && one.fence.is_none() => append_one(client, &statements.one, one).await,
        _ => append_group(client, &statements.group, group).await,
    }
}

/// An expected version as the append statements take it: -1 any, -2 no stream, else the version
/// (one past what a bigint holds, which no stream reaches, as the largest: refused, never taken
/// for "any").
fn expected_arg(expected: ExpectedVersion) -> i64 {
    match expected {
        ExpectedVersion::Any => -1,
        ExpectedVersion::NoStream => -2,
        ExpectedVersion::Exact(v) => i64::try_from(v).unwrap_or(i64::MAX),
    }
}

/// One event appended on its own, with no lease to check (a lone writer's append): what
/// `mall_append` does for it, as one statement — a function call costs a lone writer a fifth of
/// its appends. The stream's row is moved by an UPDATE when it is at the expected version, or
/// created when the stream is new (`$2` is -1 for any version, else the version expected, 0 for
/// a new stream); the id is checked before a position is taken (see `mall_append`). Returns
/// whether the id is stored, the position and version written, and, when refused, the stream's
/// version as it stands (read `FOR SHARE`: the newest committed version, not the one the statement
/// started with when it waited on another writer's lock).
const APPEND_ONE: &str = "WITH known AS (SELECT EXISTS (SELECT 1 FROM mall_events WHERE event_id = $3) AS k), \
     u AS (UPDATE mall_streams s SET version = s.version + 1 \
            WHERE s.stream_id = $1 AND ($2::bigint = -1 OR s.version = $2) AND NOT (SELECT k FROM known) \
            RETURNING s.version), \
     i AS (INSERT INTO mall_streams AS s (stream_id, version) \
            SELECT $1, 1 WHERE $2 IN (-1, 0) AND NOT (SELECT k FROM known) AND NOT EXISTS (SELECT 1 FROM u) \
            ON CONFLICT (stream_id) DO UPDATE SET version = s.version + 1 WHERE $2 = -1 OR s.version = $2 \
            RETURNING s.version), \
     v AS (SELECT version FROM u UNION ALL SELECT version FROM i), \
     e AS (INSERT INTO mall_events (position, event_id, stream_id, stream_version, event_type, schema_version, \
                                    recorded_at, tags, correlation_id, causation_id, payload, posting) \
            SELECT nextval('mall_positions'), $3, $1, v.version, $4, $5, $10, array_to_string($6::text[], E'\\x1f'), \
                   $7, $8, $9, CASE WHEN cardinality($6::text[]) > 0 THEN 1 END FROM v \
            RETURNING position, stream_version), \
     t AS (INSERT INTO mall_tag_runs (tag, last_position, first_position, positions) \
            SELECT tag, e.position, e.position, ARRAY[e.position] FROM e, unnest(($6::text[])[2:]) AS tag) \
     SELECT (SELECT k FROM known), e.position, e.stream_version, \
            CASE WHEN e.position IS NULL THEN (SELECT version FROM mall_streams WHERE stream_id = $1 FOR SHARE) END \
       FROM (SELECT 1) AS one LEFT JOIN e ON true";

/// Runs [`APPEND_ONE`] for `req` (one event, no lease): `None` when its id is stored.
async fn append_one(
    client: &Client,
    statement: &Statement,
    req: &Request,
) -> Result<Option<Vec<Result<AppendResult, StoreError>>>, tokio_postgres::Error> {
    let e = &req.events[0];
    // The statement takes a new stream as version 0.
    let expected = match expected_arg(req.expected) {
        -2 => 0,
        v => v,
    };
    let recorded_at: DateTime<Utc> = Utc::now().trunc_subsecs(6);
    let row = client
        .query_one(
            statement,
            &[
                &req.stream.as_str(),
                &expected,
                &e.event_id,
                &e.event_type,
                &(e.schema_version as i16),
                &e.tags,
                &e.correlation_id,
                &e.causation_id,
                &e.payload,
                &recorded_at,
            ],
        )
        .await?;
    if row.get::<_, bool>(0) {
        return Ok(None);
    }
    Ok(Some(vec![match row.get::<_, Option<i64>>(1) {
        Some(position) => Ok(AppendResult {
            first_position: position as Position,
            last_position: position as Position,
            stream_version: row.get::<_, i64>(2) as u64,
            deduplicated: false,
        }),
        None => Err(StoreError::WrongExpectedVersion {
            stream: req.stream.clone(),
            expected: req.expected,
            actual: row.get::<_, Option<i64>>(3).unwrap_or(0) as u64,
        }),
    }]))
}

/// The statement that appends a group in one round trip (`mall_append`, schema V27, which takes
/// a posting as an index into its event's tags).
const APPEND: &str = "SELECT outcome, first_position, last_position, version FROM \
                      mall_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17::smallint[])";

/// A group's tags as `mall_append` takes them (schemas V24 and V25): its runs — for each tag,
/// each range of consecutive events of the group that carry it, as the tag and the (1-based)
/// indexes of the range's first and last event among the group's events — less its postings:
/// for each event, the first of its tags in a run of that event alone, kept on the event's row
/// as its (1-based) index among the event's tags (schema V27), or `None`. An event's tags are
/// distinct, at most 64 of them (`Limits::check`).
type TagRuns<'a> = (Vec<&'a str>, Vec<i32>, Vec<i32>, Vec<Option<i16>>);

fn tag_runs<'a>(events: impl Iterator<Item = &'a NewEvent>) -> TagRuns<'a> {
    let (mut tags, mut first, mut last) = (Vec::new(), Vec::new(), Vec::<i32>::new());
    // Each run's tag's index among the tags of the event that opened it.
    let mut slots = Vec::<i16>::new();
    let mut open: HashMap<&str, usize> = HashMap::new();
    let mut events_seen = 0;
    for (k, e) in events.enumerate() {
        let k = k as i32 + 1;
        events_seen = k as usize;
        for (slot, t) in e.tags.iter().enumerate() {
            match open.get(t.as_str()) {
                Some(&run) if last[run] == k - 1 => last[run] = k,
                _ => {
                    open.insert(t, tags.len());
                    tags.push(t.as_str());
                    first.push(k);
                    last.push(k);
                    slots.push(slot as i16 + 1);
                }
            }
        }
    }
    let mut postings: Vec<Option<i16>> = vec![None; events_seen];
    let mut runs = (Vec::new(), Vec::new(), Vec::new());
    for (((tag, f), l), slot) in tags.into_iter().zip(first).zip(last).zip(slots) {
        let posting = &mut postings[f as usize - 1];
        if f == l && posting.is_none() {
            *posting = Some(slot);
        } else {
            runs.0.push(tag);
            runs.1.push(f);
            runs.2.push(l);
        }
    }
    (runs.0, runs.1, runs.2, postings)
}

/// Runs one group as one statement (one round trip): `None` when an event id of the group is in
/// the log already or twice in the group — the caller then runs [`commit_group`], which tells
/// retries from reused ids. Per-request refusals are returned, not raised.
async fn append_group(
    client: &Client,
    append: &Statement,
    group: &[Request],
) -> Result<Option<Vec<Result<AppendResult, StoreError>>>, tokio_postgres::Error> {
    let total: usize = group.iter().map(|r| r.events.len()).sum();
    let mut seen = std::collections::HashSet::with_capacity(total);
    if !group.iter().flat_map(|r| &r.events).all(|e| seen.insert(e.event_id)) {
        return Ok(None);
    }
    let streams: Vec<&str> = group.iter().map(|r| r.stream.as_str()).collect();
    let expected: Vec<i64> = group.iter().map(|r| expected_arg(r.expected)).collect();
    let counts: Vec<i32> = group.iter().map(|r| r.events.len() as i32).collect();
    let events = || group.iter().flat_map(|r| r.events.iter());
    let ids: Vec<Uuid> = events().map(|e| e.event_id).collect();
    let types: Vec<&str> = events().map(|e| e.event_type.as_str()).collect();
    let schemas: Vec<i16> = events().map(|e| e.schema_version as i16).collect();
    let tags: Vec<String> = events().map(|e| e.tags.join("\u{1f}")).collect();
    let correlations: Vec<Option<Uuid>> = events().map(|e| e.correlation_id).collect();
    let causations: Vec<Option<Uuid>> = events().map(|e| e.causation_id).collect();
    let payloads: Vec<&[u8]> = events().map(|e| e.payload.as_slice()).collect();
    let leases: Vec<Option<&str>> = group.iter().map(|r| r.fence.as_ref().map(|f| f.lease.as_str())).collect();
    let tokens: Vec<Option<i64>> = group.iter().map(|r| r.fence.as_ref().map(|f| f.token)).collect();
    let (run_tags, run_first, run_last, postings) = tag_runs(events());
    let recorded_at: DateTime<Utc> = Utc::now().trunc_subsecs(6);
    let rows = client
        .query(
            append,
            &[
                &streams,
                &expected,
                &counts,
                &ids,
                &types,
                &schemas,
                &tags,
                &correlations,
                &causations,
                &payloads,
                &recorded_at,
                &leases,
                &tokens,
                &run_tags,
                &run_first,
                &run_last,
                &postings,
            ],
        )
        .await?;
    if rows.first().is_some_and(|r| r.get::<_, &str>(0) == "known") {
        return Ok(None);
    }
    let results: Vec<_> = group
        .iter()
        .zip(&rows)
        .map(|(req, row)| {
            let version = row.get::<_, i64>(3) as u64;
            match row.get::<_, &str>(0) {
                "ok" => Ok(AppendResult {
                    first_position: row.get::<_, i64>(1) as Position,
                    last_position: row.get::<_, i64>(2) as Position,
                    stream_version: version,
                    deduplicated: false,
                }),
                "fenced" => Err(fenced(req)),
                _ => Err(StoreError::WrongExpectedVersion {
                    stream: req.stream.clone(),
                    expected: req.expected,
                    actual: version,
                }),
            }
        })
        .collect();
    Ok(Some(retries_among_refusals(client, group, results).await?))
}

/// `mall_append` looks up only a group's first event id before it checks versions and leases, so
/// a retry later in a group (of an append with an exact or no-stream expectation, whose first
/// write moved the stream on) comes back refused. A refused request whose events are stored is
/// looked at again here, as the careful path would: a retry is answered as one, a reused id as
/// an id conflict. Refusals are rare; a group without one costs nothing more.
async fn retries_among_refusals(
    client: &Client,
    group: &[Request],
    mut results: Vec<Result<AppendResult, StoreError>>,
) -> Result<Vec<Result<AppendResult, StoreError>>, tokio_postgres::Error> {
    let refused: Vec<usize> = (0..group.len()).filter(|&i| results[i].is_err()).collect();
    if refused.is_empty() {
        return Ok(results);
    }
    let ids: Vec<Uuid> = refused.iter().flat_map(|&i| group[i].events.iter().map(|e| e.event_id)).collect();
    let stored = stored_by_id(client, &ids).await?;
    for i in refused {
        let req = &group[i];
        let known: Vec<Option<KnownEvent>> =
            req.events.iter().map(|e| known_event(e, stored.get(&e.event_id))).collect();
        match check_retry(&req.stream, &req.events, &known) {
            Ok(Some(r)) => results[i] = Ok(r),
            Ok(None) => {}
            Err(e) => results[i] = Err(e),
        }
    }
    Ok(results)
}

/// The stored events of `ids`, by id.
async fn stored_by_id(
    c: &impl tokio_postgres::GenericClient,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, RecordedEvent>, tokio_postgres::Error> {
    Ok(c.query(&format!("SELECT {COLUMNS} FROM mall_events WHERE event_id = ANY($1)"), &[&ids])
        .await?
        .iter()
        .filter_map(|r| row_to_event(r).ok())
        .map(|e| (e.event_id, e))
        .collect())
}

/// What the log holds under an incoming event's id, if anything.
fn known_event(e: &NewEvent, stored: Option<&RecordedEvent>) -> Option<KnownEvent> {
    stored.map(|s| KnownEvent {
        stream: s.stream_id.clone(),
        stream_version: s.stream_version,
        position: s.position,
        same_content: e.same_as(s),
    })
}

/// The refusal of a request whose lease moved on.
fn fenced(req: &Request) -> StoreError {
    let f = req.fence.clone().unwrap_or(Fence { lease: String::new(), token: 0 });
    StoreError::Fenced { lease: f.lease, token: Some(f.token) }
}

/// Runs one group in one transaction; per-request refusals are returned, not raised.
async fn commit_group(
    client: &mut Client,
    group: &[Request],
) -> Result<Vec<Result<AppendResult, StoreError>>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    // Lock the group's streams in one order (see the module docs); a new one starts at 0.
    let mut names: Vec<&str> = group.iter().map(|r| r.stream.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let mut versions: HashMap<String, u64> = tx
        .query(
            "INSERT INTO mall_streams AS s (stream_id, version) SELECT u.s, 0 FROM unnest($1::text[]) AS u(s) ORDER BY 1 \
             ON CONFLICT (stream_id) DO UPDATE SET version = s.version RETURNING s.stream_id, s.version",
            &[&names],
        )
        .await?
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
        .collect();

    let ids: Vec<Uuid> = group.iter().flat_map(|r| r.events.iter().map(|e| e.event_id)).collect();
    let stored = stored_by_id(&tx, &ids).await?;
    // The leases the group's requests act for, as they stand (read FOR SHARE: a takeover, which
    // raises the token, waits for this transaction).
    let lease_names: Vec<&str> = group.iter().filter_map(|r| r.fence.as_ref().map(|f| f.lease.as_str())).collect();
    let held: Vec<(String, i64)> = if lease_names.is_empty() {
        Vec::new()
    } else {
        tx.query(
            "SELECT name, token FROM mall_leases WHERE name = ANY($1) AND expires_at > clock_timestamp() FOR SHARE",
            &[&lease_names],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    };

    let recorded_at: DateTime<Utc> = Utc::now().trunc_subsecs(6);
    let mut staged: HashMap<Uuid, KnownEvent> = HashMap::new();
    let mut staged_events: HashMap<Uuid, &NewEvent> = HashMap::new();
    let mut cols = Columns::default();
    let mut results = Vec::with_capacity(group.len());
    for req in group {
        let known: Vec<Option<KnownEvent>> = req
            .events
            .iter()
            .map(|e| {
                if let Some(s) = stored.get(&e.event_id) {
                    known_event(e, Some(s))
                } else {
                    staged
                        .get(&e.event_id)
                        .map(|k| KnownEvent { same_content: staged_events[&e.event_id] == e, ..k.clone() })
                }
            })
            .collect();
        match check_retry(&req.stream, &req.events, &known) {
            // A retry of our own interrupted attempt is the first write, not a duplicate.
            Ok(Some(r)) => {
                let first_write = req.attempted && req.events.iter().all(|e| stored.contains_key(&e.event_id));
                results.push(Ok(AppendResult { deduplicated: !first_write, ..r }));
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                results.push(Err(e));
                continue;
            }
        }
        if let Some(f) = &req.fence
            && !held.iter().any(|(name, token)| *name == f.lease && *token == f.token)
        {
            results.push(Err(fenced(req)));
            continue;
        }
        let actual = versions.get(req.stream.as_str()).copied().unwrap_or(0);
        if !req.expected.accepts(actual) {
            results.push(Err(StoreError::WrongExpectedVersion {
                stream: req.stream.clone(),
                expected: req.expected,
                actual,
            }));
            continue;
        }
        // Positions are taken after the streams' locks, so they rise with the versions.
        let n = req.events.len() as i64;
        let positions: Vec<i64> = tx
            .query("SELECT nextval('mall_positions') FROM generate_series(1, $1::bigint)", &[&n])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut version = actual;
        for (e, &position) in req.events.iter().zip(&positions) {
            let position = position as Position;
            version += 1;
            cols.push(position, version, &req.stream, e);
            staged.insert(
                e.event_id,
                KnownEvent { stream: req.stream.clone(), stream_version: version, position, same_content: true },
            );
            staged_events.insert(e.event_id, e);
        }
        versions.insert(req.stream.as_str().to_string(), version);
        results.push(Ok(AppendResult {
            first_position: positions.first().map_or(0, |&p| p as Position),
            last_position: positions.last().map_or(0, |&p| p as Position),
            stream_version: version,
            deduplicated: false,
        }));
    }

    if !cols.positions.is_empty() {
        tx.execute(
            "INSERT INTO mall_events (position, event_id, stream_id, stream_version, event_type, schema_version, \
             recorded_at, tags, correlation_id, causation_id, payload) \
             SELECT p, i, s, v, t, sv, $7, tg, c, ca, pl \
             FROM UNNEST($1::bigint[], $2::uuid[], $3::text[], $4::bigint[], $5::text[], $6::smallint[], \
                         $8::text[], $9::uuid[], $10::uuid[], $11::bytea[]) AS u(p, i, s, v, t, sv, tg, c, ca, pl)",
            &[
                &cols.positions,
                &cols.ids,
                &cols.streams,
                &cols.versions,
                &cols.types,
                &cols.schema_versions,
                &recorded_at,
                &cols.tags,
                &cols.correlations,
                &cols.causations,
                &cols.payloads,
            ],
        )
        .await?;
        if !cols.tag_positions.is_empty() {
            tx.execute(
                "INSERT INTO mall_tag_runs (tag, last_position, first_position, positions) \
                 SELECT tag, max(p), min(p), array_agg(p ORDER BY p) \
                 FROM UNNEST($1::text[], $2::bigint[], $3::bigint[]) AS u(tag, p, run) GROUP BY tag, run",
                &[&cols.tag_names, &cols.tag_positions, &cols.tag_runs],
            )
            .await?;
        }
        let (names, vers): (Vec<&str>, Vec<i64>) = versions
            .iter()
            .filter(|(s, _)| cols.streams.iter().any(|c| c == *s))
            .map(|(s, v)| (s.as_str(), *v as i64))
            .unzip();
        tx.execute(
            "INSERT INTO mall_streams (stream_id, version) SELECT * FROM UNNEST($1::text[], $2::bigint[]) \
             ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version",
            &[&names, &vers],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(results)
}

/// Column vectors for one multi-row INSERT.
#[derive(Default)]
struct Columns {
    positions: Vec<i64>,
    ids: Vec<Uuid>,
    streams: Vec<String>,
    versions: Vec<i64>,
    types: Vec<String>,
    schema_versions: Vec<i16>,
    /// Tags joined by U+001F; tags cannot hold control characters (`Limits::check`).
    tags: Vec<String>,
    correlations: Vec<Option<Uuid>>,
    causations: Vec<Option<Uuid>>,
    payloads: Vec<Vec<u8>>,
    tag_names: Vec<String>,
    tag_positions: Vec<i64>,
    /// A tagged position's run: its position minus its rank in the group, the same along a run
    /// of consecutive positions (one `mall_tag_runs` row a tag and run; schema V20).
    tag_runs: Vec<i64>,
}

impl Columns {
    /// Adds an event; positions rise from one call to the next.
    fn push(&mut self, position: Position, version: u64, stream: &StreamId, e: &NewEvent) {
        let run = position as i64 - self.positions.len() as i64;
        self.positions.push(position as i64);
        self.ids.push(e.event_id);
        self.streams.push(stream.as_str().to_string());
        self.versions.push(version as i64);
        self.types.push(e.event_type.clone());
        self.schema_versions.push(e.schema_version as i16);
        self.tags.push(e.tags.join("\u{1f}"));
        self.correlations.push(e.correlation_id);
        self.causations.push(e.causation_id);
        self.payloads.push(e.payload.clone());
        for t in &e.tags {
            self.tag_names.push(t.clone());
            self.tag_positions.push(position as i64);
            self.tag_runs.push(run);
        }
    }
}

#[async_trait]
impl EventStore for PgStore {
    #[tracing::instrument(level = "debug", skip(self, events), fields(stream = %stream, n = events.len()))]
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        self.send(None, stream, expected, events).await
    }

    async fn append_fenced(
        &self,
        fence: &Fence,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        self.send(Some(fence.clone()), stream, expected, events).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let from = from_version.min(i64::MAX as u64) as i64;
        let limit = limit.min(i64::MAX as usize) as i64;
        // The stream's index holds the last event of each run (schema V25), with the run's
        // positions; runs never overlap. Forward: the first `limit` runs that reach `from` hold
        // its first `limit` events from there. Backward: the run holding `from`, if any, and the
        // `limit` runs before it.
        let sql = match direction {
            Direction::Forward => format!(
                "SELECT {COLUMNS} FROM mall_events WHERE position = ANY(ARRAY( \
                   SELECT p FROM (SELECT coalesce(stream_run, ARRAY[position]) AS run FROM mall_events \
                                   WHERE stream_id = $1 AND run_end AND stream_version >= $2 \
                                   ORDER BY stream_version LIMIT $3) r, unnest(r.run) AS p)) \
                   AND stream_version >= $2 ORDER BY position LIMIT $3"
            ),
            Direction::Backward => format!(
                "SELECT {COLUMNS} FROM mall_events WHERE position = ANY(ARRAY( \
                   SELECT p FROM ((SELECT coalesce(stream_run, ARRAY[position]) AS run FROM mall_events \
                                    WHERE stream_id = $1 AND run_end AND stream_version >= $2 \
                                    ORDER BY stream_version LIMIT 1) \
                                  UNION ALL \
                                  (SELECT coalesce(stream_run, ARRAY[position]) FROM mall_events \
                                    WHERE stream_id = $1 AND run_end AND stream_version < $2 \
                                    ORDER BY stream_version DESC LIMIT $3)) r, unnest(r.run) AS p)) \
                   AND stream_version <= $2 ORDER BY position DESC LIMIT $3"
            ),
        };
        self.query_events(&sql, &[&stream.as_str(), &from, &limit]).await
    }

    async fn read_all(&self, from: Position, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM mall_events WHERE position >= $1 ORDER BY position LIMIT $2"
            ))
            .await
            .map_err(backend)?;
        let limit = limit.min(i64::MAX as usize);
        // Positions start at 1. Only settled positions are read past: a missing one is waited
        // for, or filled when abandoned (see the module docs), so a page is short only at the
        // end of what is committed.
        let mut from = from.clamp(1, i64::MAX as u64);
        let mut events = Vec::new();
        loop {
            let want = limit - events.len();
            let rows = client.query(&stmt, &[&(from as i64), &(want as i64)]).await.map_err(backend)?;
            let mut missing = None;
            for row in &rows {
                let position = row.get::<_, i64>(0) as Position;
                if position != from {
                    missing = Some((from, position));
                    break;
                }
                from += 1;
                if row.get::<_, &str>(2) != GAP_STREAM {
                    events.push(row_to_event(row)?);
                }
            }
            match missing {
                None if rows.len() < want || events.len() == limit => return Ok(events),
                // Gap rows took part of the page: read on.
                None => {}
                Some((missing, present)) => {
                    self.settle(&client, missing, present, true).await?;
                }
            }
        }
    }

    async fn read_events_by_id(&self, ids: &[Uuid]) -> Result<Vec<RecordedEvent>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.query_events(
            &format!("SELECT {COLUMNS} FROM mall_events WHERE event_id = ANY($1) ORDER BY position"),
            &[&ids],
        )
        .await
    }

    async fn read_by_tag(&self, tag: &str, from: Position, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let from = from.min(i64::MAX as u64) as i64;
        let limit = limit.min(i64::MAX as usize) as i64;
        // Only the settled prefix, so that a reader following a tag never skips a late commit.
        let settled = self.settled_prefix(&*self.client().await?).await? as i64;
        // A tag's runs never overlap (schema V20): the first `limit` runs that reach `from` hold
        // its first `limit` positions there from; its postings on the events (V25; V27 indexes
        // each by the tag it points at) are at other positions, and the first `limit` of them are
        // read alongside.
        self.query_events(
            &format!(
                "SELECT {COLUMNS} FROM mall_events WHERE position = ANY(ARRAY( \
                   SELECT p FROM (SELECT positions FROM mall_tag_runs WHERE tag = $1 AND last_position >= $2 \
                                   ORDER BY last_position LIMIT $3) r, unnest(r.positions) AS p \
                    WHERE p >= $2 AND p <= $4 \
                   UNION ALL \
                   (SELECT position FROM mall_events WHERE posting IS NOT NULL AND split_part(tags, E'\\x1f', posting) = $1 \
                      AND position >= $2 AND position <= $4 \
                     ORDER BY position LIMIT $3))) \
                 ORDER BY position LIMIT $3"
            ),
            &[&tag, &from, &limit, &settled],
        )
        .await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT version FROM mall_streams WHERE stream_id = $1", &[&stream.as_str()])
            .await
            .map_err(backend)?;
        Ok(row.map_or(0, |r| r.get::<_, i64>(0) as u64))
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let client = self.client().await?;
        let last = self.settled_prefix(&client).await?;
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM mall_events WHERE stream_id = $2 AND run_end AND stream_version <= $1), \
                 (SELECT count(*) FROM mall_streams WHERE version > 0), \
                 pg_total_relation_size('mall_events') + pg_total_relation_size('mall_tag_runs') \
                 + pg_total_relation_size('mall_streams')",
                &[&(last as i64), &GAP_STREAM],
            )
            .await
            .map_err(backend)?;
        // Every position up to the settled one holds an event or a gap row.
        Ok(StoreStats {
            events: last - row.get::<_, i64>(0) as u64,
            streams: row.get::<_, i64>(1) as u64,
            last_position: last,
            bytes: row.get::<_, i64>(2) as u64,
        })
    }

    async fn wait_for_append(&self, after: Position) {
        let mut rx = self.notified.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(1), rx.wait_for(|p| *p > after)).await;
    }

    async fn close(&self) {
        self.writers.lock().expect("writer lock").take();
        self.listener.abort();
        self.notifier.abort();
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.listener.abort();
        self.notifier.abort();
    }
}

/// The migrations this build applies, for `mall` to report.
pub fn migrations() -> Vec<String> {
    embedded_schema::migrations::runner().get_migrations().iter().map(|m| m.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tagged(tags: &[&str]) -> NewEvent {
        NewEvent {
            event_id: Uuid::new_v4(),
            event_type: "e".into(),
            schema_version: 1,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            correlation_id: None,
            causation_id: None,
            payload: vec![],
        }
    }

    #[test]
    fn the_notify_pace_grows_with_the_listeners_it_wakes_within_its_bounds() {
        assert_eq!(notify_every(0), Duration::from_millis(5));
        assert_eq!(notify_every(2), Duration::from_millis(5));
        assert_eq!(notify_every(7), Duration::from_micros(17_500));
        assert_eq!(notify_every(-1), Duration::from_millis(5));
        assert_eq!(notify_every(i64::MAX), Duration::from_millis(50));
    }

    #[test]
    fn a_groups_tag_runs_are_its_ranges_of_consecutive_events_with_the_tag() {
        let events = [
            tagged(&["all", "a"]),
            tagged(&["all", "a"]),
            tagged(&["all", "c"]),
            tagged(&["a", "all", "b"]),
            tagged(&[]),
            tagged(&["all", "b"]),
        ];
        let (tags, first, last, postings) = tag_runs(events.iter());
        let mut runs: Vec<(&str, i32, i32)> =
            tags.into_iter().zip(first).zip(last).map(|((t, f), l)| (t, f, l)).collect();
        runs.sort();
        // An event's first tag in a run of its own is its posting, by its index among the event's
        // tags (event 3: "c", its second; event 4: "a", not "b"; event 6: "all"); a second one
        // ("b" on event 4, "b" on 6) stays a run.
        assert_eq!(runs, vec![("a", 1, 2), ("all", 1, 4), ("b", 4, 4), ("b", 6, 6)]);
        assert_eq!(postings, vec![None, None, Some(2), Some(1), None, Some(1)]);
        assert_eq!(tag_runs(std::iter::empty()), (vec![], vec![], vec![], vec![]));
    }
}
