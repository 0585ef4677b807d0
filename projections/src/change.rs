//! Row changes: what a projection's pure `apply` returns and what a sink carries out.
//!
//! The operations are chosen so that `apply` needs nothing but the event: counters are added to,
//! columns are set, and one column may be copied into another (an experiment's winning
//! challenger becomes the description) — so a rebuild from position 0 and the live projection
//! perform the same operations in the same order and end with the same rows.

use serde_json::{Map, Value};

/// A row: column name → value (JSON-typed; a PostgreSQL sink maps it onto typed columns).
pub type Row = Map<String, Value>;

/// One operation on one row.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Sets these columns; a missing row is first created with the table's defaults.
    Set(Row),
    /// Adds to numeric columns; a missing row is first created with the table's defaults.
    Add(Vec<(&'static str, f64)>),
    /// Sets these columns and adds to those, in one step (a missing row is created first).
    Upsert { set: Row, add: Vec<(&'static str, f64)> },
    /// Adds a time-decayed weight to a score kept "as of" a time column (`score` as of `at`):
    /// the row's reference time moves to the later of the two and the other side is decayed to
    /// it (halving every `half_life_days`). Values stay within the weights' own range for any
    /// time — nothing overflows or underflows except truly negligible old interest.
    Decay {
        score: &'static str,
        at: &'static str,
        weight: f64,
        time: chrono::DateTime<chrono::Utc>,
        half_life_days: f64,
    },
    /// Copies one column's value into another (nothing happens when the row is missing).
    Copy { from: &'static str, to: &'static str },
    /// Removes the row.
    Delete,
}

/// An operation on the row `key` of `table`.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub table: &'static str,
    pub key: String,
    pub op: Op,
}

impl Change {
    pub fn set(table: &'static str, key: impl Into<String>, row: Row) -> Self {
        Change { table, key: key.into(), op: Op::Set(row) }
    }

    pub fn add(table: &'static str, key: impl Into<String>, deltas: Vec<(&'static str, f64)>) -> Self {
        Change { table, key: key.into(), op: Op::Add(deltas) }
    }

    pub fn upsert(table: &'static str, key: impl Into<String>, set: Row, add: Vec<(&'static str, f64)>) -> Self {
        Change { table, key: key.into(), op: Op::Upsert { set, add } }
    }
}

/// A table a projection writes: its name, its key column and the row a new key starts from.
#[derive(Debug, Clone, Copy)]
pub struct TableDef {
    pub name: &'static str,
    pub key: &'static str,
    /// The row of a key seen for the first time (without its key column).
    pub defaults: fn() -> Row,
}

/// Carries out `op` on `row` (`None`: the row does not exist), as every sink must. The
/// operation is consumed: its values move into the row.
pub fn apply_op(table: &TableDef, key: &str, row: Option<Row>, op: Op) -> Option<Row> {
    let fresh = || {
        let mut r = (table.defaults)();
        r.insert(table.key.to_string(), Value::String(key.to_string()));
        r
    };
    let add = |r: &mut Row, deltas: &[(&'static str, f64)]| {
        for (k, d) in deltas {
            let slot = match r.get_mut(*k) {
                Some(v) => v,
                None => r.entry(*k).or_insert(Value::Null),
            };
            *slot = match &*slot {
                // Counters saturate rather than wrap (PostgreSQL's bigint holds the same range).
                Value::Number(n) if n.is_i64() && d.fract() == 0.0 => {
                    Value::from(n.as_i64().unwrap_or(0).saturating_add(*d as i64))
                }
                Value::Number(n) => Value::from(n.as_f64().unwrap_or(0.0) + d),
                _ if d.fract() == 0.0 => Value::from(*d as i64),
                _ => Value::from(*d),
            };
        }
    };
    match op {
        Op::Set(cols) => {
            let mut r = row.unwrap_or_else(fresh);
            r.extend(cols);
            Some(r)
        }
        Op::Add(deltas) => {
            let mut r = row.unwrap_or_else(fresh);
            add(&mut r, &deltas);
            Some(r)
        }
        Op::Upsert { set: cols, add: deltas } => {
            let mut r = row.unwrap_or_else(fresh);
            r.extend(cols);
            add(&mut r, &deltas);
            Some(r)
        }
        Op::Decay { score, at, weight, time, half_life_days } => {
            // At the precision the tables keep (microseconds): a row read back from PostgreSQL in
            // a later batch then decays exactly as the row kept in memory within one batch.
            let time = chrono::SubsecRound::trunc_subsecs(time, 6);
            let mut r = row.unwrap_or_else(fresh);
            let old_score = r.get(score).and_then(Value::as_f64).unwrap_or(0.0);
            let old_at =
                r.get(at).and_then(Value::as_str).and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok());
            let decay = |from: chrono::DateTime<chrono::Utc>, to: chrono::DateTime<chrono::Utc>| {
                let days = (to - from).num_milliseconds() as f64 / 86_400_000.0;
                (-days / half_life_days).exp2()
            };
            let (value, reference) = match old_at {
                Some(old_at) if old_at > time => (old_score + weight * decay(time, old_at), old_at),
                Some(old_at) => (old_score * decay(old_at, time) + weight, time),
                None => (weight, time),
            };
            r.insert(score.to_string(), Value::from(value));
            r.insert(at.to_string(), serde_json::json!(reference));
            Some(r)
        }
        Op::Copy { from, to } => row.map(|mut r| {
            let v = r.get(from).cloned().unwrap_or(Value::Null);
            r.insert(to.to_string(), v);
            r
        }),
        Op::Delete => None,
    }
}

/// Builds a row from `(column, value)` pairs.
#[macro_export]
macro_rules! row {
    ($($k:expr => $v:expr),* $(,)?) => {{
        #[allow(unused_mut)]
        let mut r = $crate::change::Row::new();
        $( r.insert($k.to_string(), serde_json::json!($v)); )*
        r
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: TableDef =
        TableDef { name: "t", key: "id", defaults: || crate::row! { "n" => 0, "x" => 0.0, "s" => Value::Null } };

    #[test]
    fn ops_create_with_defaults_add_copy_and_delete() {
        let r = apply_op(&T, "a", None, Op::Add(vec![("n", 2.0), ("x", 0.5)])).unwrap();
        assert_eq!(r, crate::row! { "id" => "a", "n" => 2, "x" => 0.5, "s" => Value::Null });
        let r = apply_op(&T, "a", Some(r), Op::Add(vec![("n", 3.0)])).unwrap();
        assert_eq!(r["n"], 5);
        let r = apply_op(&T, "a", Some(r), Op::Set(crate::row! { "s" => "hello" })).unwrap();
        let r = apply_op(&T, "a", Some(r), Op::Copy { from: "s", to: "t" }).unwrap();
        assert_eq!(r["t"], "hello");
        let r = apply_op(&T, "a", Some(r), Op::Upsert { set: crate::row! { "s" => "bye" }, add: vec![("n", 1.0)] })
            .unwrap();
        assert_eq!((&r["s"], &r["n"]), (&Value::from("bye"), &Value::from(6)));
        assert_eq!(apply_op(&T, "b", None, Op::Copy { from: "s", to: "t" }), None, "copy needs a row");
        assert_eq!(apply_op(&T, "a", Some(r), Op::Delete), None);
    }

    #[test]
    fn decayed_scores_stay_finite_at_both_ends_of_the_accepted_range() {
        use chrono::TimeZone;
        const D: TableDef =
            TableDef { name: "d", key: "id", defaults: || crate::row! { "score" => 0.0, "at" => Value::Null } };
        let t = |y: i32| chrono::Utc.with_ymd_and_hms(y, 1, 1, 0, 0, 0).unwrap();
        let decay = |w: f64, time| Op::Decay { score: "score", at: "at", weight: w, time, half_life_days: 7.0 };
        for (first, second) in [(t(1970), t(1971)), (t(9998), t(9999)), (t(1970), t(9999))] {
            let r = apply_op(&D, "a", None, decay(1.0, first)).unwrap();
            let r = apply_op(&D, "a", Some(r), decay(2.0, second)).unwrap();
            let score = r["score"].as_f64().unwrap();
            assert!(score.is_finite() && (2.0..=3.0).contains(&score), "{first} then {second}: {score}");
            assert_eq!(r["at"], serde_json::json!(second));
        }
        // A week apart: the older weight counts half; order does not matter.
        let a = apply_op(&D, "a", None, decay(1.0, t(2000))).unwrap();
        let week = t(2000) + chrono::Duration::days(7);
        let a = apply_op(&D, "a", Some(a), decay(1.0, week)).unwrap();
        let b = apply_op(&D, "b", None, decay(1.0, week)).unwrap();
        let b = apply_op(&D, "b", Some(b), decay(1.0, t(2000))).unwrap();
        assert!((a["score"].as_f64().unwrap() - 1.5).abs() < 1e-12);
        assert!((b["score"].as_f64().unwrap() - 1.5).abs() < 1e-12);
    }

    #[test]
    fn a_decayed_row_read_back_at_microseconds_decays_as_the_row_kept_in_memory() {
        use chrono::TimeZone;
        const D: TableDef =
            TableDef { name: "d", key: "id", defaults: || crate::row! { "score" => 0.0, "at" => Value::Null } };
        let decay = |time| Op::Decay { score: "score", at: "at", weight: 1.0, time, half_life_days: 7.0 };
        // Signal times with nanoseconds, as clients send them.
        let first = chrono::Utc.timestamp_opt(1_760_000_000, 123_456_789).unwrap();
        let second = chrono::Utc.timestamp_opt(1_760_003_600, 987_654_321).unwrap();
        let kept = apply_op(&D, "a", None, decay(first)).unwrap();
        // What PostgreSQL gives back: the time at microseconds.
        let mut read_back = kept.clone();
        let at: chrono::DateTime<chrono::Utc> = kept["at"].as_str().unwrap().parse().unwrap();
        read_back.insert("at".into(), serde_json::json!(chrono::SubsecRound::trunc_subsecs(at, 6)));
        let one_batch = apply_op(&D, "a", Some(kept), decay(second)).unwrap();
        let two_batches = apply_op(&D, "a", Some(read_back), decay(second)).unwrap();
        assert_eq!(one_batch, two_batches);
    }
}
