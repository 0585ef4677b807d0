//! The in-memory sink (the embedded default): tables as ordered maps behind one lock, so a batch
//! and its checkpoint become visible together.
//!
//! An image of the tables can be written to a file and read back at start, so that a restart
//! folds only the events after it instead of the whole log. An image is a cache, never the
//! truth: it names the last event it reflects (its position and the time the log recorded it),
//! and one that is torn, of another version or of another log is ignored.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::RwLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mall_events::Position;
use serde_json::Value;

use crate::change::{Change, Row, TableDef, apply_op};
use crate::runner::{Parked, Sink, SinkError};

/// The shape version of images: bump it when `Tables`' encoding or a row's meaning changes.
const IMAGE_FORMAT: u8 = 1;

/// What an image says about itself, written before its rows.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageHeader {
    pub projection: String,
    pub version: u32,
    /// The last position the rows reflect.
    pub checkpoint: Position,
    /// When the log recorded the event at `checkpoint` (with the position, names the log).
    pub recorded_at: Option<DateTime<Utc>>,
    /// Rows in all tables.
    pub rows: u64,
}

/// A table's column names, kept once per table (not once per row): the key column, then the
/// others in the order of the table's default row.
#[derive(Debug)]
struct Columns {
    key: &'static str,
    names: Vec<String>,
}

impl Columns {
    fn of(def: &TableDef) -> Self {
        Columns { key: def.key, names: (def.defaults)().keys().filter(|k| *k != def.key).cloned().collect() }
    }

    /// A row's values in column order (a column the table does not have is not kept: every
    /// sink refuses it, see `apply_op`).
    fn pack(&self, mut row: Row) -> Box<[Value]> {
        self.names.iter().map(|n| row.remove(n).unwrap_or(Value::Null)).collect()
    }

    fn unpack(&self, key: &str, values: &[Value]) -> Row {
        let mut row: Row = self.names.iter().cloned().zip(values.iter().cloned()).collect();
        row.insert(self.key.to_string(), Value::String(key.to_string()));
        row
    }
}

/// One table: rows by key, each row its values in column order (a map of names per row would
/// take several times the memory).
struct Table {
    columns: Columns,
    rows: BTreeMap<String, Box<[Value]>>,
}

#[derive(Default)]
struct Tables {
    tables: HashMap<&'static str, Table>,
    checkpoint: Position,
    recorded_at: Option<DateTime<Utc>>,
    parked: BTreeMap<Position, Parked>,
}

/// A projection's tables in memory.
pub struct MemorySink {
    defs: HashMap<&'static str, TableDef>,
    tables: RwLock<Tables>,
}

/// A table as [`MemorySink::with_table`] lends it.
pub struct TableView<'a> {
    table: Option<&'a Table>,
}

/// A row as [`TableView`] lends it.
#[derive(Clone, Copy)]
pub struct RowRef<'a> {
    columns: &'a Columns,
    key: &'a str,
    values: &'a [Value],
}

impl<'a> RowRef<'a> {
    /// The row's key.
    pub fn key(&self) -> &'a str {
        self.key
    }

    /// One column's value (the key column's is not lent: use [`RowRef::key`]).
    pub fn get(&self, column: &str) -> Option<&'a Value> {
        self.columns.names.iter().position(|n| n == column).map(|i| &self.values[i])
    }

    /// The whole row, with its key column.
    pub fn to_row(&self) -> Row {
        self.columns.unpack(self.key, self.values)
    }
}

impl<'a> TableView<'a> {
    fn row(&self, key: &'a str, values: &'a [Value]) -> RowRef<'a> {
        RowRef { columns: &self.table.expect("a table").columns, key, values }
    }

    /// The row with this key.
    pub fn get(&self, key: &str) -> Option<RowRef<'a>> {
        let t = self.table?;
        t.rows.get_key_value(key).map(|(k, v)| self.row(k, v))
    }

    /// Every row, in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = RowRef<'a>> + '_ {
        self.table.into_iter().flat_map(|t| t.rows.iter()).map(|(k, v)| self.row(k, v))
    }

    /// The rows whose key sorts after `key`, in key order.
    pub fn after(&self, key: &'a str) -> impl Iterator<Item = RowRef<'a>> + '_ {
        self.table
            .into_iter()
            .flat_map(move |t| t.rows.range::<str, _>((std::ops::Bound::Excluded(key), std::ops::Bound::Unbounded)))
            .map(|(k, v)| self.row(k, v))
    }

    /// The rows whose key starts with `prefix`, in key order.
    pub fn prefixed(&self, prefix: &'a str) -> impl Iterator<Item = RowRef<'a>> + '_ {
        self.table
            .into_iter()
            .flat_map(move |t| t.rows.range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded)))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| self.row(k, v))
    }
}

impl MemorySink {
    /// Empty tables for `defs`.
    pub fn new(defs: &[TableDef]) -> Self {
        let mut tables = Tables::default();
        for d in defs {
            tables.tables.insert(d.name, Table { columns: Columns::of(d), rows: BTreeMap::new() });
        }
        Self { defs: defs.iter().map(|d| (d.name, *d)).collect(), tables: RwLock::new(tables) }
    }

    /// One row.
    pub fn get(&self, table: &str, key: &str) -> Option<Row> {
        self.with_table(table, |t, _| t.get(key).map(|r| r.to_row()))
    }

    /// A whole table, in key order, with the checkpoint it reflects.
    pub fn table(&self, table: &str) -> (Vec<Row>, Position) {
        self.with_table(table, |t, at| (t.iter().map(|r| r.to_row()).collect(), at))
    }

    /// Several whole tables (in key order) and the checkpoint they reflect, read together.
    pub fn snapshot(&self, tables: &[&str]) -> (Vec<Vec<Row>>, Position) {
        let t = self.tables.read().expect("tables");
        let rows = tables.iter().map(|n| {
            let view = TableView { table: t.tables.get(n) };
            view.iter().map(|r| r.to_row()).collect()
        });
        (rows.collect(), t.checkpoint)
    }

    /// Calls `f` with a table under the read lock (for scans that should not copy every row).
    pub fn with_table<T>(&self, table: &str, f: impl FnOnce(TableView<'_>, Position) -> T) -> T {
        let t = self.tables.read().expect("tables");
        f(TableView { table: t.tables.get(table) }, t.checkpoint)
    }
}

/// A writer or reader that keeps the CRC-32C of the bytes through it.
struct Crc<T> {
    inner: T,
    crc: u32,
}

impl<W: Write> Write for Crc<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Crc<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        Ok(n)
    }
}

impl MemorySink {
    /// Writes an image of the tables to `path` (through a temporary file renamed into place) and
    /// returns its header; `None` when there is nothing to save (nothing applied yet). Applies
    /// wait while the rows are written; reads do not.
    pub fn save_image(&self, path: &Path, projection: &str, version: u32) -> std::io::Result<Option<ImageHeader>> {
        let t = self.tables.read().expect("tables");
        if t.checkpoint == 0 {
            return Ok(None);
        }
        let header = ImageHeader {
            projection: projection.to_string(),
            version,
            checkpoint: t.checkpoint,
            recorded_at: t.recorded_at,
            rows: t.tables.values().map(|t| t.rows.len() as u64).sum(),
        };
        let tmp = path.with_extension("tmp");
        let file = std::fs::File::create(&tmp)?;
        let mut w = Crc { inner: std::io::BufWriter::with_capacity(1 << 20, file), crc: 0 };
        w.write_all(&[IMAGE_FORMAT])?;
        put(&mut w, &header)?;
        put(&mut w, &t.parked)?;
        let mut names: Vec<&&str> = t.tables.keys().collect();
        names.sort();
        put(&mut w, &(names.len() as u64))?;
        for name in names {
            let table = &t.tables[*name];
            put(&mut w, &(*name, &table.columns.names, table.rows.len() as u64))?;
            for (key, values) in &table.rows {
                put(&mut w, &(key, values))?;
            }
        }
        drop(t);
        let crc = w.crc;
        let mut file = w.inner.into_inner().map_err(|e| e.into_error())?;
        file.write_all(&crc.to_le_bytes())?;
        file.sync_data()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        Ok(Some(header))
    }

    /// Reads an image written by [`MemorySink::save_image`] for `defs`: the tables and the image's
    /// header, or why the image cannot be used (torn, another format, unknown tables). The caller
    /// checks that the header is of this projection, version and log.
    pub fn load_image(path: &Path, defs: &[TableDef]) -> Result<(Self, ImageHeader), String> {
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        let body = len.checked_sub(4).ok_or("too short")?;
        let mut r = Crc { inner: std::io::BufReader::with_capacity(1 << 20, file).take(body), crc: 0 };
        let mut format = [0u8];
        r.read_exact(&mut format).map_err(|e| e.to_string())?;
        if format[0] != IMAGE_FORMAT {
            return Err(format!("format {} (this build reads {IMAGE_FORMAT})", format[0]));
        }
        let bad = |e: rmp_serde::decode::Error| e.to_string();
        let header: ImageHeader = rmp_serde::decode::from_read(&mut r).map_err(bad)?;
        let parked: BTreeMap<Position, Parked> = rmp_serde::decode::from_read(&mut r).map_err(bad)?;
        let sink = MemorySink::new(defs);
        {
            let mut t = sink.tables.write().expect("tables");
            let n: u64 = rmp_serde::decode::from_read(&mut r).map_err(bad)?;
            for _ in 0..n {
                let (name, columns, count): (String, Vec<String>, u64) =
                    rmp_serde::decode::from_read(&mut r).map_err(bad)?;
                let table = t.tables.get_mut(name.as_str()).ok_or_else(|| format!("no table {name}"))?;
                if columns != table.columns.names {
                    return Err(format!("table {name} has other columns"));
                }
                for _ in 0..count {
                    let (key, values): (String, Box<[Value]>) = rmp_serde::decode::from_read(&mut r).map_err(bad)?;
                    if values.len() != columns.len() {
                        return Err(format!(
                            "a row of {name} has {} values for {} columns",
                            values.len(),
                            columns.len()
                        ));
                    }
                    table.rows.insert(key, values);
                }
            }
            let crc = r.crc;
            let mut rest = Vec::new();
            let mut inner = r.inner.into_inner();
            inner.read_to_end(&mut rest).map_err(|e| e.to_string())?;
            if rest.len() != 4 || rest != crc.to_le_bytes() {
                return Err("torn (its checksum does not match)".into());
            }
            t.checkpoint = header.checkpoint;
            t.recorded_at = header.recorded_at;
            t.parked = parked;
        }
        Ok((sink, header))
    }
}

/// Writes one value as MessagePack (fields by name).
fn put<T: serde::Serialize + ?Sized>(w: &mut impl Write, v: &T) -> std::io::Result<()> {
    rmp_serde::encode::write_named(w, v).map_err(std::io::Error::other)
}

#[async_trait]
impl Sink for MemorySink {
    async fn checkpoint(&self) -> Result<Position, SinkError> {
        Ok(self.tables.read().expect("tables").checkpoint)
    }

    async fn apply(
        &self,
        from: Position,
        to: Position,
        recorded_at: Option<DateTime<Utc>>,
        changes: Vec<Change>,
    ) -> Result<bool, SinkError> {
        let mut t = self.tables.write().expect("tables");
        if t.checkpoint != from || to <= from {
            return Ok(false);
        }
        // All or nothing: refuse the batch before touching anything.
        if let Some(c) = changes.iter().find(|c| !self.defs.contains_key(c.table)) {
            return Err(SinkError::Backend(format!("no table {}", c.table)));
        }
        self.apply_changes(&mut t, changes);
        t.checkpoint = to;
        t.recorded_at = recorded_at;
        Ok(true)
    }

    async fn park(&self, parked: Parked) -> Result<(), SinkError> {
        self.tables.write().expect("tables").parked.insert(parked.position, parked);
        Ok(())
    }

    async fn parked(&self) -> Result<Vec<Parked>, SinkError> {
        Ok(self.tables.read().expect("tables").parked.values().cloned().collect())
    }

    async fn unpark(&self, position: Position) -> Result<(), SinkError> {
        self.tables.write().expect("tables").parked.remove(&position);
        Ok(())
    }

    async fn apply_unordered(&self, changes: Vec<Change>) -> Result<(), SinkError> {
        let mut t = self.tables.write().expect("tables");
        if let Some(c) = changes.iter().find(|c| !self.defs.contains_key(c.table)) {
            return Err(SinkError::Backend(format!("no table {}", c.table)));
        }
        self.apply_changes(&mut t, changes);
        Ok(())
    }
}

impl MemorySink {
    fn apply_changes(&self, t: &mut Tables, changes: Vec<Change>) {
        for c in changes {
            let def = &self.defs[c.table];
            let table = t.tables.get_mut(def.name).expect("every defined table is created");
            let old = table.rows.remove(&c.key).map(|v| table.columns.unpack(&c.key, &v));
            if let Some(new) = apply_op(def, &c.key, old, c.op) {
                let packed = table.columns.pack(new);
                table.rows.insert(c.key, packed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::row;

    const DEFS: &[TableDef] = &[
        TableDef { name: "a", key: "id", defaults: || row! { "n" => 0, "x" => 0.0, "s" => serde_json::Value::Null } },
        TableDef { name: "b", key: "id", defaults: || row! { "v" => json!([]) } },
    ];

    #[tokio::test]
    async fn an_image_reads_back_as_the_same_tables_and_a_torn_one_is_refused() {
        let sink = MemorySink::new(DEFS);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.image");
        assert_eq!(sink.save_image(&path, "p", 1).unwrap(), None, "nothing applied, nothing saved");
        let at: DateTime<Utc> = "2026-11-29T10:00:00.123456Z".parse().unwrap();
        let changes = vec![
            Change::set("a", "k1", row! { "n" => -7, "x" => 1.0, "s" => "é\u{1F600}" }),
            Change::add("a", "k2", vec![("n", 3.0), ("x", 0.1 + 0.2)]),
            Change::set("b", "k/1", row! { "v" => json!([1, 2.5, null, {"deep": [u64::MAX]}]) }),
        ];
        assert!(sink.apply(0, 42, Some(at), changes).await.unwrap());
        sink.park(Parked { position: 40, event_type: "x".into(), error: "bad".into(), parked_at: at }).await.unwrap();
        let header = sink.save_image(&path, "p", 1).unwrap().unwrap();
        assert_eq!((header.checkpoint, header.recorded_at, header.rows), (42, Some(at), 3));

        let (loaded, h) = MemorySink::load_image(&path, DEFS).unwrap();
        assert_eq!(h, header);
        for t in ["a", "b"] {
            assert_eq!(loaded.table(t), sink.table(t), "table {t}");
        }
        assert_eq!(loaded.parked().await.unwrap(), sink.parked().await.unwrap());
        assert_eq!(loaded.checkpoint().await.unwrap(), 42);

        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(MemorySink::load_image(&path, DEFS).is_err(), "a torn image is refused");
        let mut flipped = bytes.clone();
        flipped[bytes.len() / 2] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        assert!(MemorySink::load_image(&path, DEFS).is_err(), "a changed byte is caught by the checksum");
        std::fs::write(&path, &bytes).unwrap();
        assert!(MemorySink::load_image(&path, &DEFS[..1]).is_err(), "an image with an unknown table is refused");
    }
}
