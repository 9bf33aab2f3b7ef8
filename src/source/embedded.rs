//! An in-process IDB: the same tables, counters and read semantics as a PostgreSQL IDB, held in memory.
//! The demo and unit tests use it so they need no database server; it is never used for production data.

use super::contract::TableSpec;
use super::{Counter, IdbWrite, RowNumbering, SourceError, TextRow, Unreachable, WriteKind};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

type StoredRow = HashMap<&'static str, Option<String>>;

#[derive(Debug, Default)]
struct EmbeddedTable {
    rows: HashMap<i64, StoredRow>,
    by_seq: BTreeMap<i64, i64>,
    by_useq: BTreeMap<i64, i64>,
}

#[derive(Debug)]
struct EmbeddedState {
    numbering: RowNumbering,
    counter: i64,
    tables: HashMap<String, EmbeddedTable>,
    reachable: bool,
}

/// A shared handle to one in-memory IDB. Cloning shares the same data.
#[derive(Debug, Clone)]
pub struct EmbeddedIdb {
    name: Arc<str>,
    state: Arc<Mutex<EmbeddedState>>,
}

impl EmbeddedIdb {
    /// Creates an empty IDB that numbers rows with `numbering`.
    pub fn new(name: &str, numbering: RowNumbering) -> Self {
        EmbeddedIdb {
            name: Arc::from(name),
            state: Arc::new(Mutex::new(EmbeddedState {
                numbering,
                counter: 0,
                tables: HashMap::new(),
                reachable: true,
            })),
        }
    }

    /// The IDB's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> MutexGuard<'_, EmbeddedState> {
        // A panic while holding the lock cannot leave a half-applied write visible to readers in a way that
        // matters for a test double; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies writes in order, assigning `GSYS_SEQ` / `GSYS_USEQ` from this IDB's counter.
    pub fn apply(&self, writes: &[IdbWrite]) {
        let mut st = self.lock();
        for w in writes {
            st.counter += 1;
            let counter = st.counter;
            let id = st.numbering.row_id(w.table, w.handle);
            let domain = st.numbering.gsys_domain;
            let rendered: Vec<(&'static str, Option<String>)> =
                w.columns.iter().map(|(c, v)| (*c, st.numbering.render(v))).collect();
            let table = st.tables.entry(w.table.to_string()).or_default();
            match w.kind {
                WriteKind::Insert => {
                    let mut row: StoredRow = rendered.into_iter().collect();
                    row.insert(RowNumbering::key_column(w.table), Some(id.to_string()));
                    row.insert("GSYS_DOMAIN", Some(domain.to_string()));
                    row.insert("GSYS_SEQ", Some(counter.to_string()));
                    row.insert("GSYS_USEQ", None);
                    if let Some(old) = table.rows.insert(id, row) {
                        remove_counters(table, &old);
                    }
                    table.by_seq.insert(counter, id);
                }
                WriteKind::Update => {
                    let Some(row) = table.rows.get_mut(&id) else {
                        continue;
                    };
                    let old_useq = row.get("GSYS_USEQ").cloned().flatten();
                    for (c, v) in rendered {
                        row.insert(c, v);
                    }
                    row.insert("GSYS_USEQ", Some(counter.to_string()));
                    if let Some(u) = old_useq.and_then(|u| u.parse::<i64>().ok()) {
                        table.by_useq.remove(&u);
                    }
                    table.by_useq.insert(counter, id);
                }
            }
        }
    }

    /// Overwrites one column of one row with raw text, bumping `GSYS_USEQ` like an update. A fault-injection seam:
    /// tests use it to plant malformed values (text in an integer column, unknown codes, nulls in keys).
    pub fn corrupt(&self, table: &str, id: i64, column: &'static str, raw: Option<&str>) -> bool {
        let mut st = self.lock();
        st.counter += 1;
        let counter = st.counter;
        let Some(t) = st.tables.get_mut(table) else {
            return false;
        };
        let Some(row) = t.rows.get_mut(&id) else {
            return false;
        };
        let old_useq = row.get("GSYS_USEQ").cloned().flatten();
        row.insert(column, raw.map(str::to_string));
        row.insert("GSYS_USEQ", Some(counter.to_string()));
        if let Some(u) = old_useq.and_then(|u| u.parse::<i64>().ok()) {
            t.by_useq.remove(&u);
        }
        t.by_useq.insert(counter, id);
        true
    }

    /// The counter value of the newest write (`GSYS_SEQ`/`GSYS_USEQ` of the last row inserted or updated).
    pub fn counter(&self) -> i64 {
        self.lock().counter
    }

    /// Forgets every row last written at or before counter value `through` (inserted and never updated since, or
    /// last updated by then), as an ICON purge of old IDB data would; returns how many rows went. Only for a
    /// reader that has extracted everything through `through` and expects no later update of those rows: it
    /// keeps a long simulated history from holding every IDB row in memory at once.
    pub fn forget_through(&self, through: i64) -> usize {
        let mut st = self.lock();
        let mut forgotten = 0;
        for t in st.tables.values_mut() {
            let old: Vec<(i64, i64)> = t.by_seq.range(..=through).map(|(s, id)| (*s, *id)).collect();
            for (_, id) in old {
                let useq = t.rows.get(&id).and_then(|r| r.get("GSYS_USEQ").cloned().flatten());
                if useq.and_then(|u| u.parse::<i64>().ok()).is_some_and(|u| u > through) {
                    continue;
                }
                if let Some(row) = t.rows.remove(&id) {
                    remove_counters(t, &row);
                    forgotten += 1;
                }
            }
        }
        forgotten
    }

    /// The non-null values of one column of a table, sorted (tests compare what two IDBs hold).
    pub fn column_values(&self, table: &str, column: &str) -> Vec<String> {
        let st = self.lock();
        let Some(t) = st.tables.get(table) else { return Vec::new() };
        let mut values: Vec<String> = t.rows.values().filter_map(|r| r.get(column).cloned().flatten()).collect();
        values.sort_unstable();
        values
    }

    /// `ID`s of the rows of `table` whose `column` holds `value` (tests use it to pick rows to corrupt).
    pub fn find_ids(&self, table: &str, column: &str, value: &str) -> Vec<i64> {
        let st = self.lock();
        let Some(t) = st.tables.get(table) else { return Vec::new() };
        let mut ids: Vec<i64> = t
            .rows
            .iter()
            .filter(|(_, r)| r.get(column).and_then(|v| v.as_deref()) == Some(value))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Reads up to `limit` rows whose `counter` is above `after`, in counter order, as contract text rows.
    /// Makes the IDB unreachable for readers (or reachable again), as a network partition or a lost site would;
    /// writers are not affected (the simulated collectors decide themselves what they can write).
    pub fn set_reachable(&self, reachable: bool) {
        self.lock().reachable = reachable;
    }

    pub fn read_chunk(
        &self,
        spec: &TableSpec,
        counter: Counter,
        after: i64,
        limit: usize,
    ) -> Result<Vec<TextRow>, SourceError> {
        let st = self.lock();
        if !st.reachable {
            return Err(SourceError::Unreachable { idb: self.name.to_string(), source: Unreachable::Simulated });
        }
        let Some(t) = st.tables.get(spec.name) else {
            return Ok(Vec::new());
        };
        let index = match counter {
            Counter::Seq => &t.by_seq,
            Counter::Useq => &t.by_useq,
        };
        Ok(index
            .range(after.saturating_add(1)..)
            .take(limit)
            .filter_map(|(_, id)| t.rows.get(id))
            .map(|row| spec.columns.iter().map(|c| row.get(c.name).cloned().flatten()).collect())
            .collect())
    }
}

impl EmbeddedIdb {
    /// The largest value of `counter` among the rows of `spec` (None when there is none).
    pub fn head(&self, spec: &TableSpec, counter: Counter) -> Result<Option<i64>, SourceError> {
        let st = self.lock();
        if !st.reachable {
            return Err(SourceError::Unreachable { idb: self.name.to_string(), source: Unreachable::Simulated });
        }
        let Some(t) = st.tables.get(spec.name) else { return Ok(None) };
        let index = match counter {
            Counter::Seq => &t.by_seq,
            Counter::Useq => &t.by_useq,
        };
        Ok(index.keys().next_back().copied())
    }
}

fn remove_counters(table: &mut EmbeddedTable, old: &StoredRow) {
    if let Some(s) = old.get("GSYS_SEQ").cloned().flatten().and_then(|s| s.parse::<i64>().ok()) {
        table.by_seq.remove(&s);
    }
    if let Some(u) = old.get("GSYS_USEQ").cloned().flatten().and_then(|s| s.parse::<i64>().ok()) {
        table.by_useq.remove(&u);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::contract::G_CALL;
    use crate::source::IdbValue;

    fn write(kind: WriteKind, handle: i64, state: i64) -> IdbWrite {
        IdbWrite { table: "G_CALL", handle, kind, columns: vec![("STATE", IdbValue::Int(state))] }
    }

    /// Forgetting old rows keeps every row written after the mark (new, or updated since), so a reader that had
    /// extracted through the mark reads exactly what it would have read without the purge.
    #[test]
    fn forget_through_drops_only_rows_last_written_by_the_mark() {
        let idb = EmbeddedIdb::new("x", RowNumbering { id_offset: 0, guid_prefix: "g".into(), gsys_domain: 1 });
        idb.apply(&[write(WriteKind::Insert, 1, 1), write(WriteKind::Insert, 2, 1), write(WriteKind::Insert, 3, 1)]);
        let mark = idb.counter();
        idb.apply(&[write(WriteKind::Update, 2, 9), write(WriteKind::Insert, 4, 1)]);
        let new_rows = idb.read_chunk(&G_CALL, Counter::Seq, mark, 100).unwrap();
        let updates = idb.read_chunk(&G_CALL, Counter::Useq, mark, 100).unwrap();
        assert_eq!(idb.forget_through(mark), 2, "rows 1 and 3: written by the mark, never updated since");
        assert_eq!(idb.read_chunk(&G_CALL, Counter::Seq, mark, 100).unwrap(), new_rows);
        assert_eq!(idb.read_chunk(&G_CALL, Counter::Useq, mark, 100).unwrap(), updates);
        assert_eq!(idb.read_chunk(&G_CALL, Counter::Seq, 0, 100).unwrap().len(), 2, "rows 2 (updated) and 4 stay");
        assert_eq!(idb.forget_through(mark), 0, "idempotent");
    }
}
