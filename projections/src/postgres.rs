//! The PostgreSQL sink: a projection's tables (migrations in `schema/`) and its checkpoint row,
//! written in one transaction per batch.
//!
//! A batch costs a few statements per table, whatever its size: the rows it touches are read
//! with one `SELECT … WHERE key = ANY($1)` (a rebuild keeps what it wrote in memory and reads
//! nothing back, see [`PgSink::cached`]), the operations are carried out in memory by the same
//! code as the in-memory sink ([`apply_op`]), and the results are written back with `COPY`
//! (CSV): rows that did not exist straight into the table, changed rows into a temporary table
//! and from there with one `INSERT … ON CONFLICT … DO UPDATE`; removed rows with one `DELETE`.
//! The checkpoint row is locked first (`FOR UPDATE`), so two writers of one projection
//! serialize, a batch that is not past the checkpoint changes nothing, and a writer of another
//! version of the projection is refused.
//!
//! A sink writes either the live tables or a shadow set (`products__rebuild`, …) that a rebuild
//! fills while the live ones keep serving and then swaps in (see [`swap_in`]).

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mall_events::Position;
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

use crate::change::{Change, Row, TableDef, apply_op};
use crate::runner::{Parked, Sink, SinkError};

/// The suffix of a rebuild's shadow tables and checkpoint.
pub const SHADOW: &str = "__rebuild";

/// A PostgreSQL error with the server's detail (`db error` alone says nothing): a data error —
/// a value the tables refuse (SQLSTATE classes 22, 23, 54) — is [`SinkError::Rejected`], so that
/// the runner parks the event instead of retrying it for ever; anything else is unavailability.
fn db(e: tokio_postgres::Error) -> SinkError {
    match e.as_db_error() {
        Some(d) => {
            let mut text = format!("{} ({}): {}", d.severity(), d.code().code(), d.message());
            if let Some(detail) = d.detail() {
                text.push_str(&format!("; {detail}"));
            }
            if let Some(c) = d.constraint() {
                text.push_str(&format!("; constraint {c}"));
            }
            match &d.code().code()[..2] {
                "22" | "23" | "54" => SinkError::Rejected(text),
                _ => SinkError::Backend(text),
            }
        }
        None => SinkError::Backend(match std::error::Error::source(&e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        }),
    }
}

/// Connects (and spawns the connection task).
pub async fn connect(url: &str) -> Result<Client, SinkError> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.map_err(db)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %e, "read-side connection ended");
        }
    });
    // A process stopped (SIGSTOP, a frozen VM) in the middle of a batch must not hold the
    // checkpoint's lock, and with it the node that took the projection over, for as long as it
    // sleeps: PostgreSQL ends such a session, and the batch, after 10 s.
    client.batch_execute("SET idle_in_transaction_session_timeout = '10s'").await.map_err(db)?;
    Ok(client)
}

/// Quotes an identifier (table and column names come from the code, never from input; quoting
/// keeps them exact all the same).
fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A projection's tables in PostgreSQL.
pub struct PgSink {
    url: String,
    /// The checkpoint row's name: the projection's, or the projection's with [`SHADOW`].
    checkpoint_name: String,
    version: i32,
    tables: Vec<(TableDef, String)>,
    /// Each table's columns in order, and whether each is `jsonb`.
    columns: HashMap<&'static str, Vec<(String, bool)>>,
    client: Mutex<Option<Client>>,
    /// For rebuilds: the rows as committed, so that a batch reads nothing back (see
    /// [`PgSink::cached`]).
    cache: std::sync::Mutex<Option<RowCache>>,
}

/// The committed rows a rebuild has written; `complete` when the tables started empty, so that
/// a key missing here has no row at all.
struct RowCache {
    complete: bool,
    /// By table (in the sink's order): key → row (`None`: known to be absent).
    rows: Vec<HashMap<String, Option<Row>>>,
}

impl PgSink {
    /// The live tables of `projection` (`shadow = false`) or its rebuild's shadow tables, created
    /// empty if missing. The migrations in `schema/` are applied first.
    pub async fn open(url: &str, name: &str, version: u32, defs: &[TableDef], shadow: bool) -> Result<Self, SinkError> {
        mall_events::postgres::migrate(url).await?;
        let client = connect(url).await?;
        let suffix = if shadow { SHADOW } else { "" };
        let tables: Vec<(TableDef, String)> = defs.iter().map(|d| (*d, format!("{}{suffix}", d.name))).collect();
        let mut columns = HashMap::new();
        for (def, physical) in &tables {
            if shadow {
                client
                    .batch_execute(&format!(
                        "CREATE TABLE IF NOT EXISTS {} (LIKE {} INCLUDING ALL)",
                        ident(physical),
                        ident(def.name)
                    ))
                    .await
                    .map_err(db)?;
                // `LIKE` copies columns, defaults, indexes and constraints but not storage
                // parameters (the fill factor that leaves room for in-place updates).
                let options: Option<Vec<String>> = client
                    .query_one("SELECT reloptions FROM pg_class WHERE oid = to_regclass($1)", &[&def.name])
                    .await
                    .map_err(db)?
                    .get(0);
                if let Some(options) = options.filter(|o| !o.is_empty()) {
                    let options: Vec<String> = options
                        .iter()
                        .filter_map(|o| o.split_once('='))
                        .filter(|(k, v)| {
                            k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                                && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
                        })
                        .map(|(k, v)| format!("{k} = {v}"))
                        .collect();
                    client
                        .batch_execute(&format!("ALTER TABLE {} SET ({})", ident(physical), options.join(", ")))
                        .await
                        .map_err(db)?;
                }
            }
            let cols: Vec<(String, bool)> = client
                .query(
                    "SELECT column_name::text, data_type::text FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
                    &[physical],
                )
                .await
                .map_err(db)?
                .iter()
                .map(|r| (r.get(0), r.get::<_, String>(1) == "jsonb"))
                .collect();
            if cols.is_empty() {
                return Err(SinkError::Backend(format!("no table {physical}")));
            }
            columns.insert(def.name, cols);
        }
        let checkpoint_name = format!("{name}{suffix}");
        client
            .execute(
                "INSERT INTO mall_projection_checkpoints (name, version) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&checkpoint_name, &(version as i32)],
            )
            .await
            .map_err(db)?;
        Ok(Self {
            url: url.to_string(),
            checkpoint_name,
            version: version as i32,
            tables,
            columns,
            client: Mutex::new(Some(client)),
            cache: std::sync::Mutex::new(None),
        })
    }

    /// Keeps the rows this sink commits in memory, so that later batches read nothing back from
    /// PostgreSQL: what makes a rebuild fast. Memory grows with the tables; meant for rebuilds
    /// (one process writing the shadow tables), not for a live sink other nodes also write.
    pub async fn cached(self) -> Result<Self, SinkError> {
        let complete = Sink::checkpoint(&self).await? == 0;
        *self.cache.lock().expect("cache") = Some(RowCache { complete, rows: vec![HashMap::new(); self.tables.len()] });
        Ok(self)
    }

    /// The physical name of `table` in this sink.
    pub fn physical(&self, table: &str) -> Option<&str> {
        self.tables.iter().find(|(d, _)| d.name == table).map(|(_, p)| p.as_str())
    }

    /// The version the checkpoint row records.
    pub async fn recorded_version(&self) -> Result<i32, SinkError> {
        let mut guard = self.client().await?;
        let c = guard.as_mut().expect("connected");
        let r = c
            .query_one("SELECT version FROM mall_projection_checkpoints WHERE name = $1", &[&self.checkpoint_name])
            .await;
        self.check(&mut guard, r.map(|r| r.get(0)))
    }

    /// Per key, an MD5 of the whole row: what `--verify` compares.
    pub async fn checksums(&self, table: &str) -> Result<Vec<(String, String)>, SinkError> {
        let (def, physical) = self
            .tables
            .iter()
            .find(|(d, _)| d.name == table)
            .ok_or_else(|| SinkError::Backend(format!("no table {table}")))?;
        let sql = format!(
            "SELECT {k}::text, md5(row_to_json(t)::text) FROM {t} t ORDER BY {k}",
            k = ident(def.key),
            t = ident(physical)
        );
        let mut guard = self.client().await?;
        let c = guard.as_mut().expect("connected");
        let r = c.query(&sql, &[]).await.map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect());
        self.check(&mut guard, r)
    }

    async fn client(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Client>>, SinkError> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = Some(connect(&self.url).await?);
        }
        Ok(guard)
    }

    /// Drops a broken connection so that the next call reconnects.
    fn check<T>(&self, guard: &mut Option<Client>, r: Result<T, tokio_postgres::Error>) -> Result<T, SinkError> {
        r.map_err(|e| {
            if guard.as_ref().is_none_or(Client::is_closed) || e.is_closed() {
                *guard = None;
            }
            db(e)
        })
    }

    /// Applies `changes` in one transaction; with `at = Some((from, to, recorded_at))` only if
    /// the checkpoint is `from`, moving it to `to`; with `None` where the checkpoint is (a
    /// parked event's retry).
    async fn apply_in(
        &self,
        c: &mut Client,
        at: Option<(Position, Position, Option<DateTime<Utc>>)>,
        changes: Vec<Change>,
    ) -> Result<Result<bool, SinkError>, tokio_postgres::Error> {
        let tx = c.transaction().await?;
        let row = tx
            .query_one(
                "SELECT position, version FROM mall_projection_checkpoints WHERE name = $1 FOR UPDATE",
                &[&self.checkpoint_name],
            )
            .await?;
        let (checkpoint, version): (i64, i32) = (row.get(0), row.get(1));
        if version != self.version {
            tx.commit().await?;
            return Ok(Err(SinkError::OtherVersion { found: version as u32, ours: self.version as u32 }));
        }
        if let Some((from, to, _)) = at
            && (checkpoint != from as i64 || to <= from)
        {
            tx.commit().await?;
            return Ok(Ok(false));
        }
        // The rows the batch touches, as they are (and whether they exist yet), by table:
        // taken from the cache (a rebuild's), else read with one query per table.
        let index =
            |t: &str| self.tables.iter().position(|(d, _)| std::ptr::eq(d.name, t) || d.name == t).expect("validated");
        let mut rows: Vec<HashMap<String, (bool, Option<Row>)>> = vec![HashMap::new(); self.tables.len()];
        let mut missing: Vec<Vec<String>> = vec![Vec::new(); self.tables.len()];
        let mut at_table = Vec::with_capacity(changes.len());
        {
            let mut cache = self.cache.lock().expect("cache");
            for c in &changes {
                let i = index(c.table);
                at_table.push(i);
                let table = &mut rows[i];
                if table.contains_key(c.key.as_str()) {
                    continue;
                }
                let cached = cache.as_mut().and_then(|cache| match cache.rows[i].remove(c.key.as_str()) {
                    Some(r) => Some(r),
                    None if cache.complete => Some(None),
                    None => None,
                });
                if cached.is_none() {
                    missing[i].push(c.key.clone());
                }
                let row = cached.flatten();
                table.insert(c.key.clone(), (row.is_none(), row));
            }
        }
        for (i, (def, physical)) in self.tables.iter().enumerate() {
            if missing[i].is_empty() {
                continue;
            }
            let sql = format!(
                "SELECT row_to_json(t)::text FROM {t} t WHERE {key} = ANY($1)",
                t = ident(physical),
                key = ident(def.key)
            );
            for r in tx.query(&sql, &[&missing[i]]).await? {
                let text: String = r.get(0);
                let row: Row = serde_json::from_str(&text).unwrap_or_default();
                let key = row.get(def.key).and_then(|v| v.as_str()).unwrap_or_default().to_string();
                rows[i].insert(key, (false, Some(row)));
            }
        }
        for (c, i) in changes.into_iter().zip(at_table) {
            let def = &self.tables[i].0;
            let slot = rows[i].get_mut(c.key.as_str()).expect("collected above");
            slot.1 = apply_op(def, &c.key, slot.1.take(), c.op);
        }
        for (i, (def, physical)) in self.tables.iter().enumerate() {
            if rows[i].is_empty() {
                continue;
            }
            // The rows go through COPY (CSV): new ones straight into the table, changed ones into
            // a temporary table and from there into the table with one update — far less work
            // for PostgreSQL than parsing them from JSON.
            let cols = &self.columns[def.name];
            let mut deletes = Vec::new();
            let (mut new_rows, mut changed_rows) = (Vec::new(), Vec::new());
            for (key, (fresh, row)) in &rows[i] {
                match (fresh, row) {
                    (true, None) => {}
                    (false, None) => deletes.push(key.as_str()),
                    (true, Some(r)) => csv_row(&mut new_rows, cols, r),
                    (false, Some(r)) => csv_row(&mut changed_rows, cols, r),
                }
            }
            let names: Vec<String> = cols.iter().map(|(c, _)| ident(c)).collect();
            let names = names.join(", ");
            copy_in(&tx, &format!("COPY {} ({names}) FROM STDIN (FORMAT csv)", ident(physical)), new_rows).await?;
            if !changed_rows.is_empty() {
                let staging = ident(&format!("mall_copy_{physical}"));
                tx.batch_execute(&format!(
                    "CREATE TEMP TABLE IF NOT EXISTS {staging} (LIKE {}) ON COMMIT DELETE ROWS",
                    ident(physical)
                ))
                .await?;
                copy_in(&tx, &format!("COPY {staging} ({names}) FROM STDIN (FORMAT csv)"), changed_rows).await?;
                let set: Vec<String> =
                    cols.iter().filter(|(c, _)| c != def.key).map(|(c, _)| format!("{0} = s.{0}", ident(c))).collect();
                let sql = format!(
                    "ANALYZE {staging}; UPDATE {t} SET {set} FROM {staging} s WHERE {t}.{key} = s.{key}; TRUNCATE {staging}",
                    t = ident(physical),
                    key = ident(def.key),
                    set = set.join(", ")
                );
                tx.batch_execute(&sql).await?;
            }
            if !deletes.is_empty() {
                let sql = format!("DELETE FROM {} WHERE {} = ANY($1)", ident(physical), ident(def.key));
                tx.execute(&sql, &[&deletes]).await?;
            }
        }
        if let Some((_, to, recorded_at)) = at {
            tx.execute(
                "UPDATE mall_projection_checkpoints SET position = $2, recorded_at = $3, version = $4, updated_at = now() WHERE name = $1",
                &[&self.checkpoint_name, &(to as i64), &recorded_at, &self.version],
            )
            .await?;
        }
        tx.commit().await?;
        if let Some(cache) = self.cache.lock().expect("cache").as_mut() {
            for (i, rs) in rows.into_iter().enumerate() {
                cache.rows[i].extend(rs.into_iter().map(|(k, (_, r))| (k, r)));
            }
        }
        Ok(Ok(true))
    }
}

#[async_trait]
impl Sink for PgSink {
    async fn checkpoint(&self) -> Result<Position, SinkError> {
        let mut guard = self.client().await?;
        let c = guard.as_mut().expect("connected");
        let r = c
            .query_one("SELECT position FROM mall_projection_checkpoints WHERE name = $1", &[&self.checkpoint_name])
            .await
            .map(|r| r.get::<_, i64>(0) as Position);
        self.check(&mut guard, r)
    }

    async fn apply(
        &self,
        from: Position,
        to: Position,
        recorded_at: Option<DateTime<Utc>>,
        changes: Vec<Change>,
    ) -> Result<bool, SinkError> {
        self.apply_at(Some((from, to, recorded_at)), changes).await
    }

    async fn park(&self, parked: Parked) -> Result<(), SinkError> {
        let mut guard = self.client().await?;
        let c = guard.as_mut().expect("connected");
        let r = c
            .execute(
                "INSERT INTO mall_projection_parked (name, position, event_type, error, parked_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (name, position) DO UPDATE SET error = EXCLUDED.error, parked_at = EXCLUDED.parked_at",
                &[&self.checkpoint_name, &(parked.position as i64), &parked.event_type, &parked.error, &parked.parked_at],
            )
            .await;
        self.check(&mut guard, r).map(|_| ())
    }

    async fn parked(&self) -> Result<Vec<Parked>, SinkError> {
        let mut guard = self.client().await?;
        let c = guard.as_mut().expect("connected");
        let r = c
            .query(
                "SELECT position, event_type, error, parked_at FROM mall_projection_parked WHERE name = $1 ORDER BY position",
                &[&self.checkpoint_name],
            )
            .await
            .map(|rows| {
                rows.iter()
                    .map(|r| Parked {
                        position: r.get::<_, i64>(0) as Position,
                        event_type: r.get(1),
                        error: r.get(2),
                        parked_at: r.get(3),
                    })
                    .collect()
            });
        self.check(&mut guard, r)
    }

    async fn unpark(&self, position: Position) -> Result<(), SinkError> {
        let mut guard = self.client().await?;
        let c = guard.as_mut().expect("connected");
        let r = c
            .execute(
                "DELETE FROM mall_projection_parked WHERE name = $1 AND position = $2",
                &[&self.checkpoint_name, &(position as i64)],
            )
            .await;
        self.check(&mut guard, r).map(|_| ())
    }

    async fn apply_unordered(&self, changes: Vec<Change>) -> Result<(), SinkError> {
        self.apply_at(None, changes).await.map(|_| ())
    }
}

impl PgSink {
    async fn apply_at(
        &self,
        at: Option<(Position, Position, Option<DateTime<Utc>>)>,
        changes: Vec<Change>,
    ) -> Result<bool, SinkError> {
        if let Some(c) = changes.iter().find(|c| !self.tables.iter().any(|(d, _)| d.name == c.table)) {
            return Err(SinkError::Backend(format!("no table {}", c.table)));
        }
        let mut guard = self.client().await?;
        let c = guard.as_mut().expect("connected");
        let r = self.apply_in(c, at, changes).await;
        if r.is_err() {
            // The transaction may or may not have committed: read rows back from now on.
            if let Some(cache) = self.cache.lock().expect("cache").as_mut() {
                cache.rows.iter_mut().for_each(HashMap::clear);
                cache.complete = false;
            }
        }
        self.check(&mut guard, r)?
    }
}

/// Swaps a rebuild in: within one transaction that holds the live checkpoint's lock (so the
/// live projection waits), the shadow tables catch up with the log, are compared with the live
/// ones when `verify` (each difference is returned), and take the live tables' names; the live
/// checkpoint takes the rebuild's position. Readers see the old tables or the new ones, never a
/// mix, and never an older position than before. `live` must not be the live follower's own
/// sink (whose connection may be waiting for the lock this holds): open another.
///
/// When the live tables hold another version of the projection (a blue/green deployment), they
/// are not caught up or compared: the rebuild, at least as far along the log, replaces them and
/// its version becomes the live one; writers of the old version then stop writing (their
/// batches are refused, see [`crate::runner::SinkError::OtherVersion`]).
pub async fn swap_in(
    url: &str,
    store: &dyn mall_events::EventStore,
    projection: &dyn crate::runner::Projection,
    shadow: &PgSink,
    live: &PgSink,
    verify: bool,
) -> Result<(Position, Vec<String>), SinkError> {
    let name = projection.name();
    // A new version (blue/green): the live tables hold the old version's rows, which this code
    // must not write and which it cannot be compared with; the rebuild replaces them.
    let new_version = live.recorded_version().await? != projection.version() as i32;
    // The live tables first reach the rebuild's position (a running server's follower may get
    // there first; a batch is never applied twice), then, under the live lock, the rebuild
    // reaches the live position exactly: the two are compared, and swapped, at one position.
    let target = Sink::checkpoint(shadow).await?;
    if !new_version {
        crate::runner::catch_up_until(store, projection, live, 5_000, Some(target), |_| {}).await?;
    }
    let mut client = connect(url).await?;
    let tx = client.transaction().await.map_err(db)?;
    let live_at: i64 = tx
        .query_one("SELECT position FROM mall_projection_checkpoints WHERE name = $1 FOR UPDATE", &[&name])
        .await
        .map_err(db)?
        .get(0);
    let position =
        crate::runner::catch_up_until(store, projection, shadow, 5_000, Some(live_at as Position), |_| {}).await?;
    let mut differences = Vec::new();
    if verify && !new_version {
        for d in projection.tables() {
            let a: HashMap<String, String> = live.checksums(d.name).await?.into_iter().collect();
            let b: HashMap<String, String> = shadow.checksums(d.name).await?.into_iter().collect();
            let mut keys: Vec<&String> = a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))).collect();
            keys.sort();
            for k in keys {
                match (a.get(k), b.get(k)) {
                    (Some(_), None) => differences.push(format!("{}: {k} only in the live table", d.name)),
                    (None, Some(_)) => differences.push(format!("{}: {k} only in the rebuilt table", d.name)),
                    (Some(x), Some(y)) if x != y => differences.push(format!("{}: {k} differs", d.name)),
                    _ => {}
                }
            }
        }
    }
    let shadow_name = format!("{name}{SHADOW}");
    let row = tx
        .query_one("SELECT version, recorded_at FROM mall_projection_checkpoints WHERE name = $1", &[&shadow_name])
        .await
        .map_err(db)?;
    let (version, recorded_at): (i32, Option<DateTime<Utc>>) = (row.get(0), row.get(1));
    for d in projection.tables() {
        let (live, shadow) = (ident(d.name), ident(&format!("{}{SHADOW}", d.name)));
        tx.batch_execute(&format!("DROP TABLE {live}; ALTER TABLE {shadow} RENAME TO {live}")).await.map_err(db)?;
    }
    tx.execute(
        "UPDATE mall_projection_checkpoints SET position = $2, version = $3, recorded_at = $4, updated_at = now() WHERE name = $1",
        &[&name, &(position as i64), &version, &recorded_at],
    )
    .await
    .map_err(db)?;
    tx.execute("DELETE FROM mall_projection_checkpoints WHERE name = $1", &[&shadow_name]).await.map_err(db)?;
    // The rebuild's parked events are the live projection's now.
    tx.execute("DELETE FROM mall_projection_parked WHERE name = $1", &[&name]).await.map_err(db)?;
    tx.execute("UPDATE mall_projection_parked SET name = $1 WHERE name = $2", &[&name, &shadow_name])
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok((position, differences))
}

/// Sends CSV lines through `COPY ... FROM STDIN` (nothing when there are none).
async fn copy_in(tx: &tokio_postgres::Transaction<'_>, sql: &str, csv: Vec<u8>) -> Result<(), tokio_postgres::Error> {
    if csv.is_empty() {
        return Ok(());
    }
    let sink = tx.copy_in(sql).await?;
    futures_util::pin_mut!(sink);
    let csv = bytes::Bytes::from(csv);
    for start in (0..csv.len()).step_by(1 << 20) {
        futures_util::SinkExt::send(&mut sink, csv.slice(start..(start + (1 << 20)).min(csv.len()))).await?;
    }
    sink.finish().await?;
    Ok(())
}

/// Appends `row` as a CSV line in the order of `cols` (a missing column or JSON null is NULL;
/// `jsonb` columns take the value's JSON text).
fn csv_row(out: &mut Vec<u8>, cols: &[(String, bool)], row: &Row) {
    use serde_json::Value;
    let quoted = |out: &mut Vec<u8>, text: &str| {
        out.push(b'"');
        for b in text.bytes() {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
    };
    for (i, (name, jsonb)) in cols.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match row.get(name) {
            None | Some(Value::Null) => {}
            Some(v) if *jsonb => quoted(out, &v.to_string()),
            Some(Value::String(s)) => quoted(out, s),
            Some(Value::Number(n)) => out.extend_from_slice(n.to_string().as_bytes()),
            Some(Value::Bool(b)) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Some(v) => quoted(out, &v.to_string()),
        }
    }
    out.push(b'\n');
}

impl PgSink {
    /// Empties this sink's tables and resets its checkpoint (a rebuild of another version).
    pub async fn reset(&self) -> Result<(), SinkError> {
        let mut guard = self.client().await?;
        let tables: Vec<String> = self.tables.iter().map(|(_, p)| ident(p)).collect();
        let r = guard.as_mut().expect("connected").batch_execute(&format!("TRUNCATE {}", tables.join(", "))).await;
        self.check(&mut guard, r)?;
        let r = guard
            .as_mut()
            .expect("connected")
            .execute(
                "UPDATE mall_projection_checkpoints SET position = 0, recorded_at = NULL, version = $2 WHERE name = $1",
                &[&self.checkpoint_name, &self.version],
            )
            .await;
        self.check(&mut guard, r).map(|_| ())
    }
}
