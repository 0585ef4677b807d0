//! The read side inside `mall serve`: every projection followed live into its sink — in memory
//! beside the embedded store, PostgreSQL tables beside the PostgreSQL store — and rebuilt on
//! request without stopping reads: a fresh sink is built beside the live one, checked row by row
//! when asked, and swapped in.
//!
//! In memory, each projection's tables are saved as an image beside the actor snapshots every
//! few minutes and at shutdown; a restart loads the image and folds only the events after it
//! (an image of another log or version is ignored and the log replayed).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use mall_events::{EventStore, Position};
use mall_projections::catalog::Catalog;
use mall_projections::change::Row;
use mall_projections::memory::MemorySink;
use mall_projections::optimization::Optimization;
use mall_projections::personalization::Personalization;
use mall_projections::postgres::PgSink;
use mall_projections::runner::{self, Lag, Projection, Sink, SinkError, follow};
use serde::Serialize;
use tokio::sync::watch;

/// Every projection this build has.
pub fn projections() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(Catalog),
        Arc::new(Personalization),
        Arc::new(Optimization),
        Arc::new(mall_projections::autonomous::Autonomous),
        Arc::new(mall_projections::health::Health),
        Arc::new(mall_projections::evolution::Evolution),
        Arc::new(mall_projections::merchandising::Merchandising),
        Arc::new(mall_projections::analytics::Analytics),
        Arc::new(mall_projections::social::Social),
        Arc::new(mall_projections::plugins::Plugins),
        Arc::new(mall_projections::customers::Customers),
    ]
}

/// Connections for reads of PostgreSQL read tables, at most, a process.
pub const READ_POOL: usize = 8;

/// A projection's live sink.
#[derive(Clone)]
pub enum LiveSink {
    Memory(Arc<MemorySink>),
    Postgres(Arc<PgSink>),
}

impl LiveSink {
    fn as_sink(&self) -> Arc<dyn Sink> {
        match self {
            LiveSink::Memory(m) => m.clone(),
            LiveSink::Postgres(p) => p.clone(),
        }
    }
}

/// A rebuild's progress, as `GET /api/admin/projections` shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Progress {
    pub running: bool,
    pub position: Position,
    pub target: Position,
    pub events_per_second: f64,
    pub differences: Option<Vec<String>>,
    pub error: Option<String>,
    /// Set when another process (another node, or `mall projections rebuild`) holds this
    /// projection's rebuild lock: who it is, with `position` its shadow tables' checkpoint and
    /// `target` the log's head.
    pub elsewhere: Option<Elsewhere>,
}

/// The process running a rebuild elsewhere, as PostgreSQL knows it (`pg_stat_activity`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Elsewhere {
    pub pid: i32,
    pub application_name: String,
    /// Its address, none over a Unix socket.
    pub client_addr: Option<String>,
}

/// One followed projection.
pub struct Followed {
    pub projection: Arc<dyn Projection>,
    pub sink: RwLock<LiveSink>,
    pub applied: watch::Sender<Position>,
    stop: Mutex<Option<watch::Sender<bool>>>,
    pub rebuild: Mutex<Progress>,
    /// The checkpoint of the last image saved (in memory only).
    saved: AtomicU64,
    /// The checkpoint of the image this projection started from, if it did.
    pub started_from_image: Option<Position>,
    /// Set when the read side stops: no follower starts after.
    closed: std::sync::atomic::AtomicBool,
}

impl Followed {
    /// Marks a rebuild of this projection as running: false when one runs already.
    fn begin_rebuild(&self) -> bool {
        let mut p = self.rebuild.lock().expect("progress");
        if p.running {
            return false;
        }
        *p = Progress { running: true, ..Progress::default() };
        true
    }

    /// Marks the rebuild ended, with the differences it found or why it failed.
    fn end_rebuild(&self, outcome: Result<Option<Vec<String>>, String>) {
        let mut p = self.rebuild.lock().expect("progress");
        p.running = false;
        match outcome {
            Ok(d) => p.differences = d,
            Err(e) => p.error = Some(e),
        }
    }
}

/// The read side of one server.
pub struct ReadSide {
    pub store: Arc<dyn EventStore>,
    pub database_url: Option<String>,
    pub followed: Vec<Arc<Followed>>,
    /// Connections for reads of PostgreSQL read tables.
    pool: Option<deadpool_postgres::Pool>,
    /// Where images of in-memory tables are kept (none: every start replays the log).
    images: Option<PathBuf>,
    /// Shoppers' interests read from PostgreSQL, kept while the personalization projection's
    /// checkpoint stays where it was when they were read (its tables have not moved since).
    interests_kept: Mutex<KeptInterests>,
}

/// A shopper's interests: (facet, score, as of).
pub type Interests = Vec<(String, f64, DateTime<Utc>)>;

/// Interests read at one checkpoint of the personalization projection.
#[derive(Default)]
struct KeptInterests {
    at: Position,
    shoppers: HashMap<String, Arc<Interests>>,
}

/// The most shoppers whose interests are kept at once (beyond it, the next read starts afresh).
const MAX_KEPT_SHOPPERS: usize = 100_000;

/// How often a node reads the checkpoints of projections other nodes follow.
const CHECKPOINT_POLL: Duration = Duration::from_millis(50);

/// How often in-memory tables are saved as images while the server runs.
const IMAGE_EVERY: Duration = Duration::from_secs(300);

/// Which rows of a table a read wants.
pub enum Filter<'a> {
    All,
    /// The row with this key.
    Key(&'a str),
    /// The rows with any of these keys (one query, however many).
    Keys(&'a [String]),
    /// The rows whose text column equals the value.
    Eq(&'static str, &'a str),
    /// The rows whose key starts with `prefix` (in memory, a range of the ordered keys), which
    /// are the rows whose `column` equals `value` (in PostgreSQL, an indexed lookup).
    Group {
        column: &'static str,
        value: &'a str,
        prefix: &'a str,
    },
    /// The `n` rows with the greatest keys, greatest first.
    Last(usize),
    /// The first `n` rows whose keys sort after this one, in key order (a cursor).
    After(&'a str, usize),
}

impl ReadSide {
    /// Opens the sinks (PostgreSQL when `database_url` is given; otherwise in memory, from the
    /// images in `images` where they are of this log) and starts following the log.
    ///
    /// With `leases` (several nodes on one PostgreSQL), a projection is followed here only while
    /// this node holds its lease; the others' progress is read from their checkpoint rows.
    pub async fn start(
        store: Arc<dyn EventStore>,
        database_url: Option<String>,
        images: Option<PathBuf>,
        leases: Option<Arc<crate::cluster::Leases>>,
    ) -> Result<Arc<Self>, SinkError> {
        if let Some(dir) = &images {
            std::fs::create_dir_all(dir)
                .map_err(|e| SinkError::Backend(format!("cannot create {}: {e}", dir.display())))?;
        }
        let mut followed = Vec::new();
        for p in projections() {
            let (sink, checkpoint, started_from_image) = match &database_url {
                Some(url) => {
                    let sink = PgSink::open(url, p.name(), p.version(), p.tables(), false).await?;
                    let at = sink.checkpoint().await?;
                    (LiveSink::Postgres(Arc::new(sink)), at, None)
                }
                None => {
                    let image = match &images {
                        Some(dir) => load_image(&*store, dir, &*p).await?,
                        None => None,
                    };
                    let from_image = image.is_some();
                    let sink = image.unwrap_or_else(|| MemorySink::new(p.tables()));
                    let at = sink.checkpoint().await?;
                    (LiveSink::Memory(Arc::new(sink)), at, from_image.then_some(at))
                }
            };
            let f = Arc::new(Followed {
                projection: p,
                sink: RwLock::new(sink),
                applied: watch::channel(checkpoint).0,
                stop: Mutex::new(None),
                rebuild: Mutex::new(Progress::default()),
                saved: AtomicU64::new(checkpoint),
                started_from_image,
                closed: std::sync::atomic::AtomicBool::new(false),
            });
            match &leases {
                Some(l) => spawn_owned(&store, &f, l.lease(&crate::cluster::projection_lease(f.projection.name()))),
                None => spawn_follower(&store, &f),
            }
            followed.push(f);
        }
        let pool = match &database_url {
            Some(url) => {
                let pg: tokio_postgres::Config =
                    url.parse().map_err(|e: tokio_postgres::Error| SinkError::Backend(e.to_string()))?;
                let manager = deadpool_postgres::Manager::from_config(
                    pg,
                    tokio_postgres::NoTls,
                    deadpool_postgres::ManagerConfig { recycling_method: deadpool_postgres::RecyclingMethod::Fast },
                );
                Some(
                    deadpool_postgres::Pool::builder(manager)
                        .max_size(READ_POOL)
                        .build()
                        .map_err(|e| SinkError::Backend(e.to_string()))?,
                )
            }
            None => None,
        };
        let read = Arc::new(Self { store, database_url, followed, pool, images, interests_kept: Default::default() });
        if let Some(leases) = leases {
            let weak = Arc::downgrade(&read);
            actix_web::rt::spawn(async move {
                loop {
                    tokio::time::sleep(CHECKPOINT_POLL).await;
                    let Some(read) = weak.upgrade() else { return };
                    // What this node follows it knows already.
                    let elsewhere =
                        |name: &str| leases.lease(&crate::cluster::projection_lease(name)).token().is_none();
                    if let Err(e) = read.poll_checkpoints(elsewhere).await {
                        tracing::debug!(error = %e, "cannot read the projections' checkpoints");
                    }
                }
            });
        }
        if read.images.is_some() {
            let weak = Arc::downgrade(&read);
            actix_web::rt::spawn(async move {
                loop {
                    tokio::time::sleep(IMAGE_EVERY).await;
                    let Some(read) = weak.upgrade() else { return };
                    read.save_images().await;
                }
            });
        }
        Ok(read)
    }

    /// Saves an image of each in-memory projection that moved since its last image.
    pub async fn save_images(&self) {
        let Some(dir) = &self.images else { return };
        for f in &self.followed {
            let LiveSink::Memory(sink) = f.sink.read().expect("sink").clone() else { continue };
            if sink.checkpoint().await.unwrap_or(0) == f.saved.load(Ordering::Relaxed) {
                continue;
            }
            let path = image_path(dir, &*f.projection);
            let (name, version) = (f.projection.name(), f.projection.version());
            let started = Instant::now();
            match tokio::task::spawn_blocking(move || sink.save_image(&path, name, version)).await {
                Ok(Ok(Some(h))) => {
                    f.saved.store(h.checkpoint, Ordering::Relaxed);
                    tracing::info!(
                        projection = name,
                        checkpoint = h.checkpoint,
                        rows = h.rows,
                        ms = started.elapsed().as_millis() as u64,
                        "saved an image of the tables"
                    );
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tracing::warn!(projection = name, error = %e, "cannot save an image of the tables"),
                Err(e) => tracing::warn!(projection = name, error = %e, "saving an image of the tables failed"),
            }
        }
    }

    /// The position every projection has applied (what a read reflects).
    pub fn position(&self) -> Position {
        self.followed.iter().map(|f| *f.applied.borrow()).min().unwrap_or(0)
    }

    /// Waits (up to `bound`) until every projection has applied `min`; returns the position.
    pub async fn wait_for(&self, min: Position, bound: std::time::Duration) -> Position {
        let deadline = tokio::time::Instant::now() + bound;
        for f in &self.followed {
            let mut rx = f.applied.subscribe();
            let _ = tokio::time::timeout_at(deadline, rx.wait_for(|p| *p >= min)).await;
        }
        self.position()
    }

    /// Waits (up to `bound`) until every projection has applied the log as it stands now (what a
    /// sweep does before it reads the tables, so that it sees the signals taken just before);
    /// returns the position the reads reflect.
    pub async fn wait_for_head(&self, bound: std::time::Duration) -> Result<Position, mall_events::StoreError> {
        let head = self.store.stats().await?.last_position;
        Ok(self.wait_for(head, bound).await)
    }

    /// Waits (up to `bound`) until `projection` has applied `min`; returns its position (0 for
    /// a projection this build does not have).
    pub async fn wait_for_projection(&self, projection: &str, min: Position, bound: std::time::Duration) -> Position {
        let Some(f) = self.get(projection) else { return 0 };
        let mut rx = f.applied.subscribe();
        let _ = tokio::time::timeout(bound, rx.wait_for(|p| *p >= min)).await;
        *f.applied.borrow()
    }

    /// Rows of `table` (written by `projection`).
    pub async fn rows(&self, projection: &str, table: &str, filter: Filter<'_>) -> Result<Vec<Row>, SinkError> {
        let f = self.get(projection).ok_or_else(|| SinkError::Backend(format!("no projection {projection}")))?;
        let def = *f
            .projection
            .tables()
            .iter()
            .find(|t| t.name == table)
            .ok_or_else(|| SinkError::Backend(format!("no table {table}")))?;
        let sink = f.sink.read().expect("sink").clone();
        match sink {
            LiveSink::Memory(m) => Ok(m.with_table(table, |rows, _| match filter {
                Filter::All => rows.iter().map(|r| r.to_row()).collect(),
                Filter::Key(k) => rows.get(k).map(|r| r.to_row()).into_iter().collect(),
                Filter::Keys(ks) => ks.iter().filter_map(|k| rows.get(k)).map(|r| r.to_row()).collect(),
                Filter::Eq(col, v) => {
                    rows.iter().filter(|r| r.get(col).and_then(|x| x.as_str()) == Some(v)).map(|r| r.to_row()).collect()
                }
                Filter::Group { prefix, .. } => rows.prefixed(prefix).map(|r| r.to_row()).collect(),
                Filter::Last(n) => rows.iter().rev().take(n).map(|r| r.to_row()).collect(),
                Filter::After(k, n) => rows.after(k).take(n).map(|r| r.to_row()).collect(),
            })),
            LiveSink::Postgres(_) => {
                let client = self.pg().await.expect("a pool beside PostgreSQL sinks")?;
                // Statements are prepared once per connection; every one returns one text column,
                // so a swapped-in table of another shape never changes a cached plan's result.
                let json = format!("SELECT row_to_json(t)::text FROM \"{table}\" t");
                let sql = match filter {
                    Filter::All => json,
                    Filter::Key(_) => format!("{json} WHERE \"{}\" = $1", def.key),
                    Filter::Keys(_) => format!("{json} WHERE \"{}\" = ANY($1)", def.key),
                    Filter::Eq(col, _) | Filter::Group { column: col, .. } => format!("{json} WHERE \"{col}\" = $1"),
                    Filter::Last(_) => format!("{json} ORDER BY \"{}\" DESC LIMIT $1", def.key),
                    Filter::After(..) => format!("{json} WHERE \"{0}\" > $1 ORDER BY \"{0}\" LIMIT $2", def.key),
                };
                let statement = client.prepare_cached(&sql).await.map_err(|e| SinkError::Backend(e.to_string()))?;
                let rows = match filter {
                    Filter::All => client.query(&statement, &[]).await,
                    Filter::Key(v) | Filter::Eq(_, v) | Filter::Group { value: v, .. } => {
                        client.query(&statement, &[&v]).await
                    }
                    Filter::Keys(ks) => client.query(&statement, &[&ks]).await,
                    Filter::Last(n) => client.query(&statement, &[&(n as i64)]).await,
                    Filter::After(k, n) => client.query(&statement, &[&k, &(n as i64)]).await,
                }
                .map_err(|e| SinkError::Backend(e.to_string()))?;
                Ok(rows.iter().filter_map(|r| serde_json::from_str(r.get::<_, &str>(0)).ok()).collect())
            }
        }
    }

    /// A shopper's interest rows as (facet, score, the time the score is as of): the hot read of
    /// every personalized page, so in PostgreSQL a prepared, typed, indexed query.
    pub async fn interests(&self, shopper: &str) -> Result<Arc<Interests>, SinkError> {
        use mall_projections::personalization::SHOPPER_INTERESTS;
        let f = self.get("personalization").ok_or_else(|| SinkError::Backend("no personalization".into()))?;
        let sink = f.sink.read().expect("sink").clone();
        match sink {
            LiveSink::Memory(m) => Ok(Arc::new(m.with_table(SHOPPER_INTERESTS, |rows, _| {
                let prefix = format!("{shopper}/");
                rows.prefixed(&prefix)
                    .map(|r| {
                        let facet = r.get("facet").and_then(|v| v.as_str()).unwrap_or_default().to_string();
                        let at = r.get("last_at").and_then(|v| v.as_str()).and_then(|t| t.parse().ok());
                        (facet, r.get("score").and_then(|v| v.as_f64()).unwrap_or(0.0), at.unwrap_or_default())
                    })
                    .collect()
            }))),
            LiveSink::Postgres(_) => {
                // Read before the query: rows read later are as new as this or newer.
                let at = *f.applied.borrow();
                {
                    let kept = self.interests_kept.lock().expect("interests kept");
                    if kept.at == at
                        && let Some(rows) = kept.shoppers.get(shopper)
                    {
                        return Ok(rows.clone());
                    }
                }
                let rows = Arc::new(self.read_interests(shopper).await?);
                let mut kept = self.interests_kept.lock().expect("interests kept");
                if kept.at != at || kept.shoppers.len() >= MAX_KEPT_SHOPPERS {
                    *kept = KeptInterests { at, shoppers: HashMap::new() };
                }
                kept.shoppers.insert(shopper.to_string(), rows.clone());
                Ok(rows)
            }
        }
    }

    /// A shopper's interests as the PostgreSQL table has them.
    async fn read_interests(&self, shopper: &str) -> Result<Interests, SinkError> {
        let backend = |e: tokio_postgres::Error| SinkError::Backend(e.to_string());
        let client = self.pg().await.expect("a pool beside PostgreSQL sinks")?;
        let sql = "SELECT facet, score, last_at FROM shopper_interests WHERE shopper_id = $1";
        let mut attempt = 0;
        loop {
            let statement = client.prepare_cached(sql).await.map_err(backend)?;
            match client.query(&statement, &[&shopper]).await {
                Ok(rows) => {
                    return Ok(rows
                        .iter()
                        .map(|r| (r.get(0), r.get(1), r.get::<_, Option<DateTime<Utc>>>(2).unwrap_or_default()))
                        .collect());
                }
                // A table swapped in by a rebuild may invalidate the cached statement.
                Err(_) if attempt == 0 => {
                    client.statement_cache.clear();
                    attempt += 1;
                }
                Err(e) => return Err(backend(e)),
            }
        }
    }

    /// Whole tables of `projection` and the checkpoint they reflect, read together (in
    /// PostgreSQL, in one repeatable-read transaction).
    pub async fn snapshot(&self, projection: &str, tables: &[&str]) -> Result<(Vec<Vec<Row>>, Position), SinkError> {
        let f = self.get(projection).ok_or_else(|| SinkError::Backend(format!("no projection {projection}")))?;
        let sink = f.sink.read().expect("sink").clone();
        match sink {
            LiveSink::Memory(m) => Ok(m.snapshot(tables)),
            LiveSink::Postgres(_) => {
                let backend = |e: tokio_postgres::Error| SinkError::Backend(e.to_string());
                let mut client = self.pg().await.expect("a pool beside PostgreSQL sinks")?;
                let tx = client
                    .build_transaction()
                    .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()
                    .await
                    .map_err(backend)?;
                let at: i64 = tx
                    .query_one("SELECT position FROM mall_projection_checkpoints WHERE name = $1", &[&projection])
                    .await
                    .map_err(backend)?
                    .get(0);
                let mut out = Vec::new();
                for t in tables {
                    if !f.projection.tables().iter().any(|d| d.name == *t) {
                        return Err(SinkError::Backend(format!("no table {t}")));
                    }
                    let rows =
                        tx.query(&format!("SELECT row_to_json(t)::text FROM \"{t}\" t"), &[]).await.map_err(backend)?;
                    out.push(rows.iter().filter_map(|r| serde_json::from_str(r.get::<_, &str>(0)).ok()).collect());
                }
                tx.commit().await.map_err(backend)?;
                Ok((out, at as Position))
            }
        }
    }

    /// A connection to the PostgreSQL read tables (none beside the embedded store).
    pub async fn pg(&self) -> Option<Result<deadpool_postgres::Object, SinkError>> {
        let pool = self.pool.as_ref()?;
        Some(pool.get().await.map_err(|e| SinkError::Backend(e.to_string())))
    }

    /// The projection called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Followed>> {
        self.followed.iter().find(|f| f.projection.name() == name).cloned()
    }

    /// Moves the position of each projection followed `elsewhere` to its checkpoint row's
    /// (written by the node that follows it), so that reads here wait for `min_position` as on
    /// the node that writes.
    async fn poll_checkpoints(&self, elsewhere: impl Fn(&str) -> bool) -> Result<(), SinkError> {
        let Some(pool) = &self.pool else { return Ok(()) };
        let names: Vec<&str> = self.followed.iter().map(|f| f.projection.name()).filter(|n| elsewhere(n)).collect();
        if names.is_empty() {
            return Ok(());
        }
        let c = pool.get().await.map_err(|e| SinkError::Backend(e.to_string()))?;
        let rows = c
            .query("SELECT name, position FROM mall_projection_checkpoints WHERE name = ANY($1)", &[&names])
            .await
            .map_err(|e| SinkError::Backend(e.to_string()))?;
        for r in rows {
            let (name, at): (String, i64) = (r.get(0), r.get(1));
            if let Some(f) = self.get(&name) {
                f.applied.send_if_modified(|p| {
                    let ahead = at as Position > *p;
                    if ahead {
                        *p = at as Position;
                    }
                    ahead
                });
            }
        }
        Ok(())
    }

    /// Stops every follower.
    pub fn stop(&self) {
        for f in &self.followed {
            f.closed.store(true, Ordering::Relaxed);
            if let Some(s) = f.stop.lock().expect("stop").take() {
                let _ = s.send(true);
            }
        }
    }

    /// Every projection's parked events (an unreachable sink counts as none).
    pub async fn parked(&self) -> Vec<(String, Vec<runner::Parked>)> {
        let mut out = Vec::new();
        for f in &self.followed {
            let sink = f.sink.read().expect("sink").as_sink();
            out.push((f.projection.name().to_string(), sink.parked().await.unwrap_or_default()));
        }
        out
    }

    /// Applies a projection's parked events again (after a fix).
    pub async fn retry(&self, f: &Arc<Followed>) -> Result<runner::Retried, SinkError> {
        let sink = f.sink.read().expect("sink").as_sink();
        runner::retry(&*self.store, &*f.projection, &*sink).await
    }

    /// Name, version, checkpoint and lag of each projection, any rebuild's progress, and the
    /// checkpoint of the image it started from.
    pub async fn status(&self) -> Vec<(String, u32, Lag, Progress, Option<Position>)> {
        let mut out = Vec::new();
        for f in &self.followed {
            let sink = f.sink.read().expect("sink").as_sink();
            let lag = runner::lag(&*self.store, &*sink).await.unwrap_or(Lag {
                checkpoint: 0,
                log_position: 0,
                positions: 0,
                seconds: 0.0,
            });
            out.push((
                f.projection.name().to_string(),
                f.projection.version(),
                lag,
                f.rebuild.lock().expect("progress").clone(),
                f.started_from_image,
            ));
        }
        out
    }

    /// [`status`](Self::status), with a rebuild another process runs (another node, or the CLI)
    /// shown as running, by whom and how far — what an operator asks any node of several.
    pub async fn status_everywhere(&self) -> Vec<(String, u32, Lag, Progress, Option<Position>)> {
        let elsewhere = self.rebuilds_elsewhere().await;
        let mut out = self.status().await;
        for (name, _, lag, progress, _) in &mut out {
            if let Some((by, position)) = elsewhere.get(name.as_str()).filter(|_| !progress.running) {
                *progress = Progress {
                    running: true,
                    position: *position,
                    target: lag.log_position,
                    elsewhere: Some(by.clone()),
                    ..Progress::default()
                };
            }
        }
        out
    }

    /// The projections being rebuilt, by this process or another.
    pub async fn rebuilding(&self) -> Vec<String> {
        let elsewhere = self.rebuilds_elsewhere().await;
        self.followed
            .iter()
            .filter(|f| elsewhere.contains_key(f.projection.name()) || f.rebuild.lock().expect("progress").running)
            .map(|f| f.projection.name().to_string())
            .collect()
    }

    /// The projections whose rebuild lock ([`REBUILD_LOCK`]) some connection holds, with who
    /// holds it and how far its shadow tables are (none in memory, or when PostgreSQL cannot
    /// say). A rebuild this process runs is found here too; its own progress says more.
    async fn rebuilds_elsewhere(&self) -> HashMap<String, (Elsewhere, Position)> {
        self.rebuild_locks().await.unwrap_or_else(|e| {
            tracing::debug!(error = %e, "cannot look for rebuilds in other processes");
            HashMap::new()
        })
    }

    async fn rebuild_locks(&self) -> Result<HashMap<String, (Elsewhere, Position)>, SinkError> {
        let Some(pool) = &self.pool else { return Ok(HashMap::new()) };
        let names: Vec<&str> = self.followed.iter().map(|f| f.projection.name()).collect();
        let c = pool.get().await.map_err(|e| SinkError::Backend(e.to_string()))?;
        let rows = c
            .query(
                "SELECT p.name, a.pid, coalesce(a.application_name, ''), host(a.client_addr), coalesce(k.position, 0) \
                   FROM unnest($1::text[]) AS p(name) \
                   JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 \
                                  AND l.classid = $2::bigint::oid AND l.objid = hashtext(p.name)::oid \
                                  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                   JOIN pg_stat_activity a ON a.pid = l.pid \
                   LEFT JOIN mall_projection_checkpoints k ON k.name = p.name || $3",
                &[&names, &i64::from(REBUILD_LOCK), &mall_projections::postgres::SHADOW],
            )
            .await
            .map_err(|e| SinkError::Backend(e.to_string()))?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let by = Elsewhere { pid: r.get(1), application_name: r.get(2), client_addr: r.get(3) };
                (r.get(0), (by, r.get::<_, i64>(4) as Position))
            })
            .collect())
    }

    /// Rebuilds projections whose tables are in PostgreSQL beside the live tables and swaps them
    /// in ([`rebuild_postgres`], as `mall projections rebuild` does), with each one's progress in
    /// its status while it runs.
    pub async fn rebuild_postgres(
        &self,
        targets: &[Arc<Followed>],
        verify: bool,
    ) -> Result<Vec<PgRebuilt>, RebuildError> {
        let Some(url) = self.database_url.clone() else {
            return Err(SinkError::Backend("the read tables are in memory".into()).into());
        };
        for (i, f) in targets.iter().enumerate() {
            if !f.begin_rebuild() {
                for taken in &targets[..i] {
                    taken.end_rebuild(Ok(None));
                }
                return Err(RebuildError::Running(f.projection.name().to_string()));
            }
        }
        let started = Instant::now();
        let mut from = 0;
        let projections: Vec<Arc<dyn Projection>> = targets.iter().map(|f| f.projection.clone()).collect();
        let result = rebuild_postgres(self.store.clone(), &url, &projections, verify, |s| {
            let (position, target) = match s {
                RebuildStep::Started { from: f, target } => {
                    from = f;
                    (f, target)
                }
                RebuildStep::At(p) | RebuildStep::CaughtUp(p) => (p, p),
                RebuildStep::Resumed { .. } => return,
            };
            for f in targets {
                let mut pr = f.rebuild.lock().expect("progress");
                pr.position = position;
                pr.target = pr.target.max(target);
                pr.events_per_second = position.saturating_sub(from) as f64 / started.elapsed().as_secs_f64().max(1e-6);
            }
        })
        .await;
        for f in targets {
            f.end_rebuild(match &result {
                Ok(done) => Ok(done.iter().find(|r| r.name == f.projection.name()).and_then(|r| r.differences.clone())),
                Err(e) => Err(e.to_string()),
            });
        }
        result
    }

    /// Rebuilds a projection held in memory beside the live one, compares them row by row when
    /// `verify`, and swaps the rebuilt one in. Reads keep using the live one until the swap.
    pub async fn rebuild_memory(&self, f: &Arc<Followed>, verify: bool) -> Result<Option<Vec<String>>, RebuildError> {
        let LiveSink::Memory(live) = f.sink.read().expect("sink").clone() else {
            return Err(SinkError::Backend(
                "this projection lives in PostgreSQL: run `mall projections rebuild` against the database".into(),
            )
            .into());
        };
        if !f.begin_rebuild() {
            return Err(RebuildError::Running(f.projection.name().to_string()));
        }
        let result = self.rebuild_memory_inner(f, &live, verify).await;
        f.end_rebuild(result.as_ref().map(Clone::clone).map_err(ToString::to_string));
        Ok(result?)
    }

    async fn rebuild_memory_inner(
        &self,
        f: &Arc<Followed>,
        live: &Arc<MemorySink>,
        verify: bool,
    ) -> Result<Option<Vec<String>>, SinkError> {
        let shadow = Arc::new(MemorySink::new(f.projection.tables()));
        let target = self.store.stats().await?.last_position;
        f.rebuild.lock().expect("progress").target = target;
        let started = Instant::now();
        let progress = |p: Position| {
            let mut pr = f.rebuild.lock().expect("progress");
            pr.position = p;
            pr.target = pr.target.max(p);
            pr.events_per_second = p as f64 / started.elapsed().as_secs_f64().max(1e-6);
        };
        runner::catch_up(&*self.store, &*f.projection, &*shadow, 5_000, progress).await?;
        // Stop the live follower, bring both to the same position, compare, swap, follow on.
        if let Some(s) = f.stop.lock().expect("stop").take() {
            let _ = s.send(true);
        }
        // The stopped follower may still be applying the batch it had in hand: compare only
        // once the live checkpoint held still across the comparison (a batch it applies later
        // goes to the old sink, which the swap drops; the new follower starts at the shadow's).
        let mut rounds = 0;
        let differences = loop {
            runner::catch_up(&*self.store, &*f.projection, &**live, 5_000, |_| {}).await?;
            let at = live.checkpoint().await?;
            runner::catch_up_until(&*self.store, &*f.projection, &*shadow, 5_000, Some(at), |_| {}).await?;
            let differences = compare(f, live, &shadow, verify);
            rounds += 1;
            if live.checkpoint().await? == at || rounds >= 10 {
                break differences;
            }
        };
        *f.sink.write().expect("sink") = LiveSink::Memory(shadow);
        spawn_follower(&self.store, f);
        Ok(differences)
    }
}

/// What a rebuild of a projection's PostgreSQL tables did.
#[derive(Debug, Clone, Serialize)]
pub struct PgRebuilt {
    pub name: String,
    /// The log position the rebuilt tables were swapped in at.
    pub checkpoint: Position,
    /// The rows that differed from the live tables (when verified; `None` when not asked, or
    /// when the live tables held another version and were replaced, not compared).
    pub differences: Option<Vec<String>>,
    /// The version the live tables held, when it was another one (blue/green): they were
    /// replaced, and servers of that version stop writing them.
    pub replaced_version: Option<i32>,
}

/// A step of a PostgreSQL rebuild, for whoever shows its progress.
pub enum RebuildStep {
    /// `name`'s shadow tables hold an interrupted rebuild's rows: it goes on from `from`.
    Resumed { name: String, from: Position },
    /// The one pass over the log starts at `from`; the log's head was at `target`.
    Started { from: Position, target: Position },
    /// The pass has applied the log up to here.
    At(Position),
    /// The pass is done, at this position; the swaps follow.
    CaughtUp(Position),
}

/// Why a rebuild did not run or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("{0} is being rebuilt already (by this server or another process): wait until that rebuild ends")]
    Running(String),
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// The advisory-lock class ("mall") of rebuilds: one key a projection, `hashtext` of its name.
const REBUILD_LOCK: i32 = 0x6d61_6c6c;

/// Rebuilds `targets`' PostgreSQL tables from the log beside the live ones (which keep serving
/// and following the log), resuming where an interrupted rebuild left its shadow tables, in one
/// pass over the log for them all; then swaps each in (see [`swap_in`]), compared row by row
/// with the live tables first when `verify`. What `mall projections rebuild` runs against the
/// database and `POST /api/admin/projections/rebuild` runs inside a server on PostgreSQL.
///
/// One rebuild of a projection at a time among every process on the database: each target's
/// advisory lock is held by a connection of the rebuild's own until it ends (a process that
/// dies lets it go), and a second rebuild is refused with [`RebuildError::Running`] before it
/// touches anything.
///
/// [`swap_in`]: mall_projections::postgres::swap_in
pub async fn rebuild_postgres(
    store: Arc<dyn EventStore>,
    url: &str,
    targets: &[Arc<dyn Projection>],
    verify: bool,
    mut step: impl FnMut(RebuildStep),
) -> Result<Vec<PgRebuilt>, RebuildError> {
    let lock = mall_projections::postgres::connect(url).await?;
    // Named, so that an operator finds who rebuilds what (`pg_stat_activity`, `pg_locks`).
    lock.batch_execute("SET application_name = 'mall-rebuild'").await.map_err(|e| SinkError::Backend(e.to_string()))?;
    for p in targets {
        let held: bool = lock
            .query_one("SELECT pg_try_advisory_lock($1, hashtext($2))", &[&REBUILD_LOCK, &p.name()])
            .await
            .map_err(|e| SinkError::Backend(e.to_string()))?
            .get(0);
        if !held {
            return Err(RebuildError::Running(p.name().to_string()));
        }
    }
    // Every target's shadow tables, resumed where an interrupted rebuild left them.
    let mut shadows = Vec::new();
    for p in targets {
        let shadow = PgSink::open(url, p.name(), p.version(), p.tables(), true).await?;
        if shadow.recorded_version().await? != p.version() as i32 {
            shadow.reset().await?;
        }
        let shadow = Arc::new(shadow.cached().await?);
        let from = Sink::checkpoint(&*shadow).await?;
        if from > 0 {
            step(RebuildStep::Resumed { name: p.name().to_string(), from });
        }
        shadows.push(shadow);
    }
    // One pass over the log feeds them all.
    let mut from = u64::MAX;
    for s in &shadows {
        from = from.min(Sink::checkpoint(&**s).await?);
    }
    step(RebuildStep::Started { from, target: store.stats().await.map_err(SinkError::from)?.last_position });
    let parts: Vec<(Arc<dyn Projection>, Arc<dyn Sink>)> =
        targets.iter().zip(&shadows).map(|(p, s)| (p.clone(), s.clone() as Arc<dyn Sink>)).collect();
    let at = runner::catch_up_all(store.clone(), &parts, REBUILD_BATCH, |p| step(RebuildStep::At(p))).await?;
    step(RebuildStep::CaughtUp(at));
    // The lock went with its connection (PostgreSQL restarted, say): another rebuild may have
    // started since, and two must not swap. This one resumes from its shadow tables when run again.
    if lock.is_closed() {
        return Err(SinkError::Backend(
            "the connection holding the rebuild's lock was lost; run the rebuild again (it resumes)".into(),
        )
        .into());
    }
    let mut rebuilt = Vec::new();
    for (p, shadow) in targets.iter().zip(&shadows) {
        let live = PgSink::open(url, p.name(), p.version(), p.tables(), false).await?;
        let old_version = live.recorded_version().await?;
        let (checkpoint, diffs) =
            mall_projections::postgres::swap_in(url, &*store, &**p, shadow, &live, verify).await?;
        let replaced = old_version != p.version() as i32;
        rebuilt.push(PgRebuilt {
            name: p.name().to_string(),
            checkpoint,
            differences: (verify && !replaced).then_some(diffs),
            replaced_version: replaced.then_some(old_version),
        });
    }
    drop(lock);
    Ok(rebuilt)
}

/// Events per transaction of a PostgreSQL rebuild: large, because a row touched in many
/// batches is written once per batch (progress moves once per batch).
pub const REBUILD_BATCH: usize = 250_000;

/// The rows of `live` and `shadow` that differ, table by table (when `verify`).
fn compare(f: &Followed, live: &MemorySink, shadow: &MemorySink, verify: bool) -> Option<Vec<String>> {
    verify.then(|| {
        let mut diffs = Vec::new();
        for t in f.projection.tables() {
            let (a, _) = live.table(t.name);
            let (b, _) = shadow.table(t.name);
            let key = |r: &mall_projections::change::Row| {
                r.get(t.key).and_then(|v| v.as_str()).unwrap_or_default().to_string()
            };
            let left: std::collections::BTreeMap<String, _> = a.iter().map(|r| (key(r), r)).collect();
            let right: std::collections::BTreeMap<String, _> = b.iter().map(|r| (key(r), r)).collect();
            for (k, r) in &left {
                match right.get(k) {
                    None => diffs.push(format!("{}: {k} only in the live table", t.name)),
                    Some(s) if s != r => diffs.push(format!("{}: {k} differs", t.name)),
                    _ => {}
                }
            }
            for k in right.keys().filter(|k| !left.contains_key(*k)) {
                diffs.push(format!("{}: {k} only in the rebuilt table", t.name));
            }
        }
        diffs
    })
}

fn image_path(dir: &std::path::Path, p: &dyn Projection) -> PathBuf {
    dir.join(format!("{}.v{}.image", p.name(), p.version()))
}

/// The tables of `p` from its image in `dir`, when there is one of this projection's version and
/// of this log (the event it last reflects is in the log, at its position, recorded at its time).
async fn load_image(
    store: &dyn EventStore,
    dir: &std::path::Path,
    p: &dyn Projection,
) -> Result<Option<MemorySink>, SinkError> {
    let path = image_path(dir, p);
    if !path.exists() {
        return Ok(None);
    }
    let started = Instant::now();
    let tables = p.tables();
    let loaded = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || MemorySink::load_image(&path, tables))
            .await
            .map_err(|e| SinkError::Backend(e.to_string()))?
    };
    let (sink, header) = match loaded {
        Ok(l) => l,
        Err(why) => {
            tracing::warn!(projection = p.name(), path = %path.display(), why, "an image of the tables is ignored; replaying the log");
            return Ok(None);
        }
    };
    let of_this_log = match header.recorded_at {
        Some(at) => mall_events::store::holds(store, header.checkpoint, at).await?,
        None => false,
    };
    if header.projection != p.name() || header.version != p.version() || !of_this_log {
        tracing::warn!(projection = p.name(), path = %path.display(), "an image of another log or version is ignored; replaying the log");
        return Ok(None);
    }
    tracing::info!(
        projection = p.name(),
        checkpoint = header.checkpoint,
        rows = header.rows,
        ms = started.elapsed().as_millis() as u64,
        "loaded the tables from their image"
    );
    Ok(Some(sink))
}

/// Follows the projection while this node holds its lease, and stops following when it is lost.
fn spawn_owned(store: &Arc<dyn EventStore>, f: &Arc<Followed>, lease: Arc<crate::cluster::Lease>) {
    let (store, f) = (store.clone(), f.clone());
    actix_web::rt::spawn(async move {
        let mut held = lease.watch();
        loop {
            let mine = held.borrow_and_update().is_some();
            let following = f.stop.lock().expect("stop").is_some();
            if mine && !following && !f.closed.load(Ordering::Relaxed) {
                tracing::info!(projection = f.projection.name(), "following the projection (this node holds it)");
                spawn_follower(&store, &f);
            } else if !mine && let Some(s) = f.stop.lock().expect("stop").take() {
                tracing::info!(projection = f.projection.name(), "no longer following the projection");
                let _ = s.send(true);
            }
            if held.changed().await.is_err() {
                return;
            }
        }
    });
}

fn spawn_follower(store: &Arc<dyn EventStore>, f: &Arc<Followed>) {
    let (stop_tx, stop_rx) = watch::channel(false);
    *f.stop.lock().expect("stop") = Some(stop_tx);
    let sink = f.sink.read().expect("sink").as_sink();
    let (store, projection, applied, name) =
        (store.clone(), f.projection.clone(), f.applied.clone(), f.projection.name());
    actix_web::rt::spawn(async move {
        if let Err(e) = follow(store, projection, sink, applied, stop_rx).await {
            tracing::error!(projection = name, error = %e, "the projection stopped");
        }
    });
}
