//! An in-process IDB: the same tables, counters and read semantics as a PostgreSQL IDB, held in memory.
//! The demo and unit tests use it so they need no database server; it is never used for production data.

use super::contract::TableSpec;
use super::{Counter, IdbWrite, RowNumbering, SourceError, TextRow, Unreachable, WriteKind};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

/// One stored row: its values by column position (see [`Columns`]) in one allocation — the texts back to back, and
/// where each ends (the top bit marks NULL). A map of strings per row cost a hash table and an allocation per
/// value: 1,574 bytes a row against 345 (see `docs/benchmarks.md`), which a long simulated history pays per row.
#[derive(Debug, Clone, Default)]
struct StoredRow {
    text: Box<str>,
    ends: Box<[u32]>,
}

const NULL_BIT: u32 = 1 << 31;

impl StoredRow {
    fn value(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        if end & NULL_BIT != 0 {
            return None;
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] & !NULL_BIT };
        self.text.get(start as usize..end as usize)
    }

    fn values(&self) -> Vec<Option<&str>> {
        (0..self.ends.len()).map(|i| self.value(i)).collect()
    }

    fn from_values(values: &[Option<&str>]) -> Self {
        let mut text = String::with_capacity(values.iter().map(|v| v.map_or(0, str::len)).sum());
        let mut ends = Vec::with_capacity(values.len());
        for v in values {
            match v {
                Some(s) => {
                    text.push_str(s);
                    ends.push(text.len() as u32);
                }
                None => ends.push(text.len() as u32 | NULL_BIT),
            }
        }
        StoredRow { text: text.into_boxed_str(), ends: ends.into_boxed_slice() }
    }
}

/// The columns a table's rows have been written with, in the order they first appeared.
#[derive(Debug, Default)]
struct Columns {
    names: Vec<&'static str>,
    position: HashMap<&'static str, usize>,
}

impl Columns {
    fn get<'r>(&self, row: &'r StoredRow, column: &str) -> Option<&'r str> {
        self.position.get(column).and_then(|i| row.value(*i))
    }

    fn position_of(&mut self, column: &'static str) -> usize {
        let next = self.names.len();
        let i = *self.position.entry(column).or_insert(next);
        if i == next {
            self.names.push(column);
        }
        i
    }

    /// `row` with `changes` applied (a column not yet in the row is added).
    fn set(&mut self, row: &mut StoredRow, changes: &[(&'static str, Option<String>)]) {
        let positions: Vec<usize> = changes.iter().map(|(c, _)| self.position_of(c)).collect();
        let mut values = row.values();
        let width = positions.iter().copied().max().map_or(0, |m| m + 1).max(values.len());
        values.resize(width, None);
        for (i, (_, v)) in positions.iter().zip(changes) {
            values[*i] = v.as_deref();
        }
        *row = StoredRow::from_values(&values);
    }

    fn counter(&self, row: &StoredRow, column: &str) -> Option<i64> {
        self.get(row, column).and_then(|s| s.parse::<i64>().ok())
    }
}

#[derive(Debug, Default)]
struct EmbeddedTable {
    columns: Columns,
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
            let EmbeddedTable { columns, rows, by_seq, by_useq } = table;
            match w.kind {
                WriteKind::Insert => {
                    let mut row = StoredRow::default();
                    let mut changes = rendered;
                    changes.push((RowNumbering::key_column(w.table), Some(id.to_string())));
                    changes.push(("GSYS_DOMAIN", Some(domain.to_string())));
                    changes.push(("GSYS_SEQ", Some(counter.to_string())));
                    changes.push(("GSYS_USEQ", None));
                    columns.set(&mut row, &changes);
                    if let Some(old) = rows.insert(id, row) {
                        remove_counters(columns, by_seq, by_useq, &old);
                    }
                    by_seq.insert(counter, id);
                }
                WriteKind::Update => {
                    let Some(row) = rows.get_mut(&id) else {
                        continue;
                    };
                    let old_useq = columns.counter(row, "GSYS_USEQ");
                    let mut changes = rendered;
                    changes.push(("GSYS_USEQ", Some(counter.to_string())));
                    columns.set(row, &changes);
                    if let Some(u) = old_useq {
                        by_useq.remove(&u);
                    }
                    by_useq.insert(counter, id);
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
        let EmbeddedTable { columns, rows, by_useq, .. } = t;
        let Some(row) = rows.get_mut(&id) else {
            return false;
        };
        let old_useq = columns.counter(row, "GSYS_USEQ");
        columns.set(row, &[(column, raw.map(str::to_string)), ("GSYS_USEQ", Some(counter.to_string()))]);
        if let Some(u) = old_useq {
            by_useq.remove(&u);
        }
        by_useq.insert(counter, id);
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
            let EmbeddedTable { columns, rows, by_seq, by_useq } = t;
            for (_, id) in old {
                let useq = rows.get(&id).and_then(|r| columns.counter(r, "GSYS_USEQ"));
                if useq.is_some_and(|u| u > through) {
                    continue;
                }
                if let Some(row) = rows.remove(&id) {
                    remove_counters(columns, by_seq, by_useq, &row);
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
        let mut values: Vec<String> =
            t.rows.values().filter_map(|r| t.columns.get(r, column).map(str::to_string)).collect();
        values.sort_unstable();
        values
    }

    /// `ID`s of the rows of `table` whose `column` holds `value` (tests use it to pick rows to corrupt).
    pub fn find_ids(&self, table: &str, column: &str, value: &str) -> Vec<i64> {
        let st = self.lock();
        let Some(t) = st.tables.get(table) else { return Vec::new() };
        let mut ids: Vec<i64> =
            t.rows.iter().filter(|(_, r)| t.columns.get(r, column) == Some(value)).map(|(id, _)| *id).collect();
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
            .map(|row| spec.columns.iter().map(|c| t.columns.get(row, c.name).map(str::to_string)).collect())
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

fn remove_counters(
    columns: &Columns,
    by_seq: &mut BTreeMap<i64, i64>,
    by_useq: &mut BTreeMap<i64, i64>,
    old: &StoredRow,
) {
    if let Some(s) = columns.counter(old, "GSYS_SEQ") {
        by_seq.remove(&s);
    }
    if let Some(u) = columns.counter(old, "GSYS_USEQ") {
        by_useq.remove(&u);
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

    /// A row keeps NULL apart from empty text, keeps columns it was not written with NULL, and an update changes
    /// only the columns it names.
    #[test]
    fn stored_rows_keep_values_nulls_and_empty_text_apart() {
        let mut columns = Columns::default();
        let mut row = StoredRow::default();
        columns.set(&mut row, &[("A", Some("x".into())), ("B", None), ("C", Some(String::new()))]);
        assert_eq!(row.values(), vec![Some("x"), None, Some("")]);
        columns.set(&mut row, &[("D", Some("dé".into())), ("A", None)]);
        assert_eq!(row.values(), vec![None, None, Some(""), Some("dé")]);
        assert_eq!((columns.get(&row, "D"), columns.get(&row, "B"), columns.get(&row, "Z")), (Some("dé"), None, None));
        let mut other = StoredRow::default();
        columns.set(&mut other, &[("C", Some("c".into()))]);
        assert_eq!(other.values(), vec![None, None, Some("c")], "columns keep their positions across rows");
        assert_eq!(columns.get(&other, "D"), None, "a column the row was never written with is NULL");
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

#[cfg(test)]
mod footprint {
    use super::*;

    fn resident_bytes() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        statm.split_whitespace().nth(1).and_then(|p| p.parse::<usize>().ok()).unwrap_or(0) * 4096
    }

    /// A measurement, not a check (`cargo test --lib embedded_footprint -- --ignored --nocapture`): the memory
    /// one simulated site-day at 48k calls takes in an embedded IDB. Figures in `docs/benchmarks.md`.
    #[test]
    #[ignore]
    fn embedded_footprint() {
        let settings = crate::sim::SimSettings {
            sites: 1,
            calls_per_hour: 2000.0,
            agents_per_site: 150,
            record_truth: false,
            ..crate::sim::SimSettings::default()
        };
        let mut sim = crate::sim::Simulator::new(settings, 1_800_000_000);
        let idb = EmbeddedIdb::new("x", RowNumbering { id_offset: 0, guid_prefix: "g".into(), gsys_domain: 1 });
        let before = resident_bytes();
        let mut writes = 0;
        for h in 1..=24 {
            for site in sim.advance_to(1_800_000_000 + h * 3600) {
                writes += site.len();
                idb.apply(&site);
            }
        }
        let rows: usize = idb.lock().tables.values().map(|t| t.rows.len()).sum();
        let grown = resident_bytes().saturating_sub(before);
        println!("{writes} writes, {rows} rows, {} MiB resident, {} bytes per row", grown >> 20, grown / rows.max(1));
    }
}
