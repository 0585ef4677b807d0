//! The in-memory sink (the embedded default): tables as ordered maps behind one lock, so a batch
//! and its checkpoint become visible together.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mall_events::Position;

use crate::change::{Change, Row, TableDef, apply_op};
use crate::runner::{Parked, Sink, SinkError};

#[derive(Default)]
struct Tables {
    rows: HashMap<&'static str, BTreeMap<String, Row>>,
    checkpoint: Position,
    recorded_at: Option<DateTime<Utc>>,
    parked: BTreeMap<Position, Parked>,
}

/// A projection's tables in memory.
pub struct MemorySink {
    defs: HashMap<&'static str, TableDef>,
    tables: RwLock<Tables>,
}

impl MemorySink {
    /// Empty tables for `defs`.
    pub fn new(defs: &[TableDef]) -> Self {
        let mut tables = Tables::default();
        for d in defs {
            tables.rows.insert(d.name, BTreeMap::new());
        }
        Self { defs: defs.iter().map(|d| (d.name, *d)).collect(), tables: RwLock::new(tables) }
    }

    /// One row.
    pub fn get(&self, table: &str, key: &str) -> Option<Row> {
        self.tables.read().expect("tables").rows.get(table)?.get(key).cloned()
    }

    /// A whole table, in key order, with the checkpoint it reflects.
    pub fn table(&self, table: &str) -> (Vec<Row>, Position) {
        let t = self.tables.read().expect("tables");
        (t.rows.get(table).map(|r| r.values().cloned().collect()).unwrap_or_default(), t.checkpoint)
    }

    /// Several whole tables (in key order) and the checkpoint they reflect, read together.
    pub fn snapshot(&self, tables: &[&str]) -> (Vec<Vec<Row>>, Position) {
        let t = self.tables.read().expect("tables");
        let rows = tables.iter().map(|n| t.rows.get(n).map(|r| r.values().cloned().collect()).unwrap_or_default());
        (rows.collect(), t.checkpoint)
    }

    /// Calls `f` with a table under the read lock (for scans that should not copy every row).
    pub fn with_table<T>(&self, table: &str, f: impl FnOnce(&BTreeMap<String, Row>, Position) -> T) -> T {
        let t = self.tables.read().expect("tables");
        let empty = BTreeMap::new();
        f(t.rows.get(table).unwrap_or(&empty), t.checkpoint)
    }
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
            let table = t.rows.entry(def.name).or_default();
            let old = table.remove(&c.key);
            if let Some(new) = apply_op(def, &c.key, old, c.op) {
                table.insert(c.key, new);
            }
        }
    }
}
