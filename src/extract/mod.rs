//! Incremental, chunked, crash-safe copy of IDB rows into staging.
//!
//! Per IDB and table, rows are read in counter order above the high-water mark (`GSYS_SEQ` for new rows,
//! `GSYS_USEQ` for updated rows), validated against the contract, and committed to staging together with the
//! mark in one transaction. A crash anywhere re-reads rows, which staging then recognises (same version) instead
//! of doubling. Malformed rows are quarantined with the reason and the mark moves past them.
//!
//! **Late commits (the danger this module is built around).** ICON takes `GSYS_SEQ` / `GSYS_USEQ` values from
//! counters it reserves in blocks, and several writers commit concurrently, so a row can become visible *after* a
//! row with a larger counter. A mark set to the largest counter seen would then be past the late row, which would
//! never be read. For a PostgreSQL IDB the mark therefore *settles*: it only passes a counter value once a value
//! at least as large was visible in the table `settle_secs` ago ([`Settling`]), and every cycle re-reads the rows
//! above it; staging drops what it already holds ([`Store::drop_already_staged`]), so a re-read row is neither
//! staged nor counted twice. Guarantee: a row is read unless it commits more than `settle_secs` after a row of the
//! same table with a larger counter was visible (docs/idb-contract.md explains the choice). An embedded IDB
//! applies writes in counter order under one lock, so its mark follows the last counter read.

use crate::clock::Clock;
pub use crate::model::status::IdbHealth;
use crate::model::GroupKey;
use crate::source::contract::{
    ColumnType, Grouping, TableSpec, EXTRACTED_TABLES, G_LOGIN_SESSION, SESSION_CONTROL_TABLES,
};
use crate::source::{dictionary, Counter, Idb, SourceError, TextRow};
use crate::staging::{ExtractedChunk, QuarantinedRow, RowGroup, RowToStage, StagedRow, StagingError, Store, Value};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};
use thiserror::Error;

/// Default rows per chunk: bounds memory per read and the work a crash can repeat.
pub const DEFAULT_CHUNK_ROWS: usize = 5_000;
/// Default chunks per table per cycle: a large backlog is worked off over several cycles so the transform and
/// the mart keep publishing in between.
pub const DEFAULT_MAX_CHUNKS_PER_CYCLE: usize = 40;
/// First retry delay after an IDB failure; doubles up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Default settle time, seconds: how long a counter value must have been visible in a table before the mark may
/// pass smaller ones. Twice the vendor's default refresh delay of its own safe mark (`G_PROV_CONTROL.SeqCurrent`,
/// 60 s), so a writer that commits a smaller counter up to two minutes late is still read.
pub const DEFAULT_SETTLE_SECS: u64 = 120;
/// Most observations a [`Settling`] keeps (one per cycle at most): bounds memory whatever the cycle length.
const MAX_OBSERVATIONS: usize = 4_096;

/// Errors that stop extraction (IDB errors are not among them: they are recorded in [`IdbHealth`]).
#[derive(Debug, Error)]
pub enum ExtractError {
    /// Staging could not commit.
    #[error(transparent)]
    Staging(#[from] StagingError),
}

/// Extraction settings.
#[derive(Debug, Clone, Copy)]
pub struct ExtractSettings {
    /// Longest wait before retrying an unreachable IDB (the wait doubles from 1 s up to this; 0 retries every
    /// cycle).
    pub max_backoff: Duration,
    /// Rows per chunk.
    pub chunk_rows: usize,
    /// Chunks per table per cycle.
    pub max_chunks_per_cycle: usize,
    /// How long a counter value must have been visible before the mark passes smaller ones (see the module
    /// docs). Zero trusts the IDB to commit in counter order: the mark follows the last counter read.
    pub settle: Duration,
}

impl Default for ExtractSettings {
    fn default() -> Self {
        ExtractSettings {
            max_backoff: MAX_BACKOFF,
            chunk_rows: DEFAULT_CHUNK_ROWS,
            max_chunks_per_cycle: DEFAULT_MAX_CHUNKS_PER_CYCLE,
            settle: Duration::from_secs(DEFAULT_SETTLE_SECS),
        }
    }
}

/// When a settling high-water mark may pass a counter value: the highest counter values seen in one table (and
/// counter) with the time each was first seen. A value seen at least `settle` ago is *settled*: any row with a
/// smaller counter that commits later than that breaks the IDB's contract with ccmart (module docs).
///
/// Kept in memory only. After a restart nothing is settled until `settle` has passed again, which delays the
/// mark (rows are re-read and recognised meanwhile) and never moves it too far.
#[derive(Debug, Clone, Default)]
pub struct Settling {
    seen: VecDeque<(i64, Instant)>,
    settled: Option<i64>,
    /// While a backlog is read (the last pass spent its budget): the largest counter value read so far, where a
    /// pass that cannot move the mark reads on from.
    ahead: Option<i64>,
}

impl Settling {
    /// Records that counter values up to `head` were visible in the table at `at`.
    pub fn observe(&mut self, head: i64, at: Instant) {
        let newest = self.seen.back().map(|s| s.0).or(self.settled);
        if newest.is_some_and(|n| head <= n) || self.seen.len() >= MAX_OBSERVATIONS {
            // Nothing new, or full: not recording an observation only delays the mark.
            return;
        }
        self.seen.push_back((head, at));
    }

    /// The highest value that was visible at least `settle` before `now`, if any.
    pub fn settled(&mut self, now: Instant, settle: Duration) -> Option<i64> {
        while let Some(&(head, at)) = self.seen.front() {
            if now.saturating_duration_since(at) < settle {
                break;
            }
            self.settled = Some(self.settled.map_or(head, |s| s.max(head)));
            self.seen.pop_front();
        }
        self.settled
    }
}

/// Where a settling mark may go after a pass that read everything from `stored` up to `covered` (all rows with a
/// counter in `(stored, covered]` that were visible when read): never back, never past what the pass covered, and
/// never past a settled value.
pub fn settled_mark(stored: i64, covered: i64, settled: Option<i64>) -> i64 {
    match settled {
        Some(s) => stored.max(covered.min(s)),
        None => stored,
    }
}

/// One IDB's extraction state: the health `/v1/status` shows, and the retry and settling state behind it.
#[derive(Debug, Clone)]
pub struct IdbState {
    /// What the status shows.
    pub health: IdbHealth,
    /// When the next attempt may be made ([`Clock::elapsed`]).
    retry_at: Option<Duration>,
    clock: Clock,
    backoff: Duration,
    /// Per (table, counter): when the settling mark may pass which counter values.
    settling: BTreeMap<(&'static str, Counter), Settling>,
}

impl IdbState {
    /// Fresh state of an IDB not tried yet; retries are timed on `clock`.
    pub fn new(idb: &str, clock: Clock) -> Self {
        IdbState {
            health: IdbHealth::new(idb),
            retry_at: None,
            clock,
            backoff: INITIAL_BACKOFF,
            settling: BTreeMap::new(),
        }
    }

    fn failed(&mut self, e: &SourceError, now: i64, max_backoff: Duration) {
        let h = &mut self.health;
        h.reachable = false;
        h.last_error = Some(crate::model::report(e));
        h.failing_since.get_or_insert(now);
        let wait = self.backoff.min(max_backoff);
        self.retry_at = Some(self.clock.elapsed() + wait);
        self.backoff = (self.backoff * 2).min(max_backoff.max(INITIAL_BACKOFF));
    }

    fn succeeded(&mut self, now: i64) {
        let h = &mut self.health;
        h.reachable = true;
        h.last_error = None;
        h.failing_since = None;
        h.last_success = Some(now);
        self.retry_at = None;
        self.backoff = INITIAL_BACKOFF;
    }
}

/// What one extraction pass over one IDB did.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExtractReport {
    /// Rows read from the IDB.
    pub rows_read: usize,
    /// Rows staged.
    pub rows_staged: usize,
    /// Rows quarantined.
    pub rows_quarantined: usize,
    /// Rows of interactions purged from staging long ago (older than `maintenance.staging_retention_days`): not
    /// staged, the mart keeps what it had.
    pub rows_beyond_retention: usize,
    /// Rows read again that staging already held (the re-read above a settling mark); neither staged nor counted.
    pub rows_reread: usize,
    /// Chunks committed.
    pub chunks: usize,
    /// True when some table still had rows beyond this pass's chunk budget.
    pub backlog: bool,
    /// True when the IDB was skipped (waiting for its retry time) or failed.
    pub skipped: bool,
}

/// Runs one extraction pass over every contract table of `idb`. IDB failures are recorded in `state` (with
/// backoff) and never returned as errors; only staging failures are.
pub async fn extract_idb(
    store: &Store,
    idb: &Idb,
    settings: ExtractSettings,
    state: &mut IdbState,
) -> Result<ExtractReport, ExtractError> {
    let mut report = ExtractReport::default();
    if state.retry_at.is_some_and(|t| state.clock.elapsed() < t) {
        report.skipped = true;
        return Ok(report);
    }
    let now = state.clock.now();
    let pass = Pass {
        store,
        idb,
        settings,
        settle: if idb.commits_in_counter_order() { Duration::ZERO } else { settings.settle },
        started: Instant::now(),
    };
    // Session control is read first and committed last, and only when every data table was read to its end: a
    // heartbeat (`LEVENT_ITIME`) then never claims rows that are not staged yet, which is what lets the merge
    // trust "this IDB is complete up to T" (rows the collector wrote after our read of session control carry
    // times after the heartbeat we read).
    //
    // A table that cannot be read (it does not match the contract, or its query fails) is skipped and reported;
    // the other tables go on. Only an unreachable IDB (or staging) ends the pass.
    let mut session_control = Vec::new();
    let mut failure = None;
    let mut unreadable: BTreeMap<String, SourceError> = BTreeMap::new();
    'read: for spec in SESSION_CONTROL_TABLES {
        for counter in [Counter::Seq, Counter::Useq] {
            let settling = state.settling.entry((spec.name, counter)).or_default();
            match pass.read_all(spec, counter, settling).await {
                Ok(chunk) => session_control.push(chunk),
                Err(TableError::Source(e)) if e.is_table_only() => {
                    session_control.retain(|(c, _)| c.table != spec.name);
                    unreadable.insert(spec.name.to_string(), e);
                    break;
                }
                Err(e) => {
                    failure = Some((spec.name, e));
                    break 'read;
                }
            }
        }
    }
    if failure.is_none() {
        'data: for spec in EXTRACTED_TABLES.iter().filter(|t| t.grouping != Grouping::SessionControl) {
            for counter in [Counter::Seq, Counter::Useq] {
                let settling = state.settling.entry((spec.name, counter)).or_default();
                match pass.extract_table(spec, counter, settling, &mut report).await {
                    Ok(()) => {}
                    Err(TableError::Source(e)) if e.is_table_only() => {
                        unreadable.insert(spec.name.to_string(), e);
                        break;
                    }
                    Err(e) => {
                        failure = Some((spec.name, e));
                        break 'data;
                    }
                }
            }
        }
    }
    if let Some(schema) = idb.schema() {
        state.health.schema_checked_at = Some(schema.checked_at);
        state.health.schema_problems = schema.with_problems().cloned().collect();
        state.health.code_dictionary = Some(schema.code_dictionary.clone());
    }
    match failure {
        Some((_, TableError::Staging(e))) => return Err(e.into()),
        Some((table, TableError::Source(e))) => {
            tracing::warn!(idb = idb.name(), table, error = %crate::model::report(&e), "IDB read failed; will retry");
            state.failed(&e, now, settings.max_backoff);
            report.skipped = true;
            return Ok(report);
        }
        None => {}
    }
    for (table, e) in &unreadable {
        let message = crate::model::report(e);
        if state.health.unreadable_tables.get(table) != Some(&message) {
            tracing::warn!(idb = idb.name(), table, error = %message, "IDB table not extracted; the others go on");
        }
    }
    state.health.unreadable_tables = unreadable.iter().map(|(t, e)| (t.clone(), crate::model::report(e))).collect();
    // A data table whose query failed may just be late (a lock, a timeout): its rows must not be claimed by a
    // heartbeat. A table that does not match the contract is not read until the IDB is fixed; waiting for it
    // would hold the whole pair back, so it does not stop the heartbeat.
    let transient = unreadable.values().any(|e| matches!(e, SourceError::Query { .. }));
    if !report.backlog && !transient {
        for (mut chunk, stored) in session_control {
            report.rows_reread += store.drop_already_staged(&mut chunk)?;
            if chunk.rows.is_empty() && chunk.quarantined.is_empty() && chunk.new_mark == stored {
                continue;
            }
            let outcome = store.commit_chunk(&chunk)?;
            report.rows_staged += outcome.staged;
            report.rows_quarantined += outcome.quarantined;
        }
    }
    state.health.rows_staged += report.rows_staged as u64;
    if report.rows_beyond_retention > 0 {
        tracing::warn!(
            idb = %idb.name(),
            rows = report.rows_beyond_retention,
            "rows for interactions purged from staging (older than maintenance.staging_retention_days) were not \
             staged; the mart keeps what it had for them"
        );
    }
    state.succeeded(now);
    Ok(report)
}

/// One extraction pass over one IDB: what every table's read shares.
struct Pass<'a> {
    store: &'a Store,
    idb: &'a Idb,
    settings: ExtractSettings,
    /// Zero: the mark follows the last counter read (the IDB commits in counter order).
    settle: Duration,
    /// When the pass started: observations settled by then may move marks.
    started: Instant,
}

impl<'a> Pass<'a> {
    /// The mark after reading `(stored, covered]` from the mark, having seen counter values up to `head`.
    fn next_mark(&self, stored: i64, covered: i64, head: i64, settling: &mut Settling) -> i64 {
        if self.settle.is_zero() {
            return stored.max(covered);
        }
        let settled = settling.settled(self.started, self.settle);
        settling.observe(head, Instant::now());
        settled_mark(stored, covered, settled)
    }

    /// Reads every row of a (small) session-control table above its mark into one chunk, uncommitted; returns it
    /// with the mark it was read from.
    async fn read_all(
        &self,
        spec: &'a TableSpec,
        counter: Counter,
        settling: &mut Settling,
    ) -> Result<(ExtractedChunk<'a>, i64), TableError> {
        let idb = self.idb;
        let stored = self.store.high_water_mark(idb.name(), spec.name).map_err(TableError::Staging)?.get(counter);
        let mut chunk = ExtractedChunk::empty(idb.name(), spec.name, counter, stored);
        let mut cursor = stored;
        // Bounded: every round moves the cursor, and the table holds a few rows per collector connection.
        loop {
            let rows = idb.read_chunk(spec, counter, cursor, DEFAULT_CHUNK_ROWS).await.map_err(TableError::Source)?;
            let full = rows.len() >= DEFAULT_CHUNK_ROWS;
            let last = add_rows(idb, spec, counter, &rows, &mut chunk);
            let moved = last.is_some_and(|l| l > cursor);
            cursor = last.map_or(cursor, |l| l.max(cursor));
            if !full || !moved {
                let covered = if full { cursor - 1 } else { cursor };
                chunk.new_mark = self.next_mark(stored, covered, cursor, settling);
                return Ok((chunk, stored));
            }
        }
    }

    /// Reads one table above its mark in chunks (at most `max_chunks_per_cycle`), committing each chunk.
    ///
    /// With a settle time, a pass reads from the mark, re-reading the rows a late commit may have joined — except
    /// while a backlog is worked off and nothing has settled above the mark yet (after a start): then it reads on
    /// from where the last pass stopped (`Settling::ahead`) and leaves the mark alone, so a backlog is read at
    /// full speed from the start. The mark only ever moves after a pass that read contiguously from it.
    async fn extract_table(
        &self,
        spec: &TableSpec,
        counter: Counter,
        settling: &mut Settling,
        report: &mut ExtractReport,
    ) -> Result<(), TableError> {
        let (store, idb, settings) = (self.store, self.idb, self.settings);
        let stored = store.high_water_mark(idb.name(), spec.name).map_err(TableError::Staging)?.get(counter);
        let settled = if self.settle.is_zero() { None } else { settling.settled(self.started, self.settle) };
        let from_mark = self.settle.is_zero() || settled.is_some_and(|s| s > stored);
        let from = if from_mark { stored } else { settling.ahead.filter(|a| *a > stored).unwrap_or(stored) };
        let mut cursor = from;
        let budget = settings.max_chunks_per_cycle.max(1);
        for n in 1..=budget {
            let rows = idb.read_chunk(spec, counter, cursor, settings.chunk_rows).await.map_err(TableError::Source)?;
            let full = rows.len() >= settings.chunk_rows;
            report.rows_read += rows.len();
            let mut chunk = ExtractedChunk::empty(idb.name(), spec.name, counter, stored);
            let last = add_rows(idb, spec, counter, &rows, &mut chunk);
            let moved = last.is_some_and(|l| l > cursor);
            cursor = last.map_or(cursor, |l| l.max(cursor));
            let done = !full || !moved || n == budget;
            if self.settle.is_zero() {
                // In counter order: each chunk moves the mark to its last counter.
                chunk.new_mark = cursor;
            } else if done {
                let head = if full {
                    idb.head(spec, counter).await.map_err(TableError::Source)?.unwrap_or(cursor).max(cursor)
                } else {
                    cursor
                };
                settling.observe(head, Instant::now());
                // Budget spent with more to read: the next pass that cannot move the mark reads on from here.
                settling.ahead = if full { Some(settling.ahead.map_or(cursor, |a| a.max(cursor))) } else { None };
                if from == stored {
                    // A full chunk may have cut rows sharing its last counter value: those are covered next time.
                    let covered = if full { cursor - 1 } else { cursor };
                    chunk.new_mark = settled_mark(stored, covered, settled);
                }
            }
            let commit = if self.settle.is_zero() {
                !rows.is_empty()
            } else {
                // Rows above a settling mark are read again: only what is new is written.
                report.rows_reread += store.drop_already_staged(&mut chunk).map_err(TableError::Staging)?;
                !chunk.rows.is_empty() || !chunk.quarantined.is_empty() || chunk.new_mark != stored
            };
            if commit {
                let outcome = store.commit_chunk(&chunk).map_err(TableError::Staging)?;
                report.chunks += 1;
                report.rows_staged += outcome.staged;
                report.rows_quarantined += outcome.quarantined;
                report.rows_beyond_retention += outcome.beyond_retention;
            }
            if done {
                report.backlog |= full && moved;
                return Ok(());
            }
        }
        Ok(())
    }
}

/// Validates raw rows into `chunk`, quarantining the malformed ones; returns the largest counter value among
/// them (the caller decides where the mark goes).
fn add_rows(
    idb: &Idb,
    spec: &TableSpec,
    counter: Counter,
    rows: &[TextRow],
    chunk: &mut ExtractedChunk<'_>,
) -> Option<i64> {
    let counter_idx = spec.index(counter.column());
    let mut last: Option<i64> = None;
    let schema = idb.schema();
    // Columns whose codes the IDB's dictionary translates to ccmart's (see `source::dictionary`).
    let translated: Vec<usize> = match schema.as_deref() {
        Some(s) if !s.code_dictionary.party_state_translation.is_empty() => dictionary::PARTY_STATE_COLUMNS
            .iter()
            .filter(|(t, _)| *t == spec.name)
            .filter_map(|(_, c)| spec.column_index(c))
            .collect(),
        _ => Vec::new(),
    };
    for raw in rows {
        let counter_value = raw.get(counter_idx).and_then(|v| v.as_deref()).and_then(|v| v.trim().parse::<i64>().ok());
        if let Some(c) = counter_value {
            last = Some(last.map_or(c, |l| l.max(c)));
        }
        let checked = match schema.as_deref() {
            Some(s) if !translated.is_empty() => {
                translate_codes(&s.code_dictionary, spec, &translated, raw).and_then(|r| validate(spec, &r))
            }
            _ => validate(spec, raw),
        };
        match checked {
            Ok(r) => chunk.rows.push(r),
            Err((column, reason)) => {
                let key = raw.first().cloned().flatten().unwrap_or_else(|| "NULL".into());
                tracing::warn!(idb = idb.name(), table = spec.name, key, column, reason, "row quarantined");
                chunk.quarantined.push(QuarantinedRow {
                    idb: idb.name().to_string(),
                    table: spec.name.to_string(),
                    key,
                    column: column.to_string(),
                    reason,
                    counter_value: counter_value.or(last).unwrap_or(chunk.new_mark),
                });
            }
        }
    }
    last
}

/// `raw` with the party-state codes of columns `at` translated by the IDB's dictionary, or the column and reason
/// that quarantine the row (a code the dictionary gives no meaning ccmart reads).
fn translate_codes(
    dict: &dictionary::CodeDictionaryCheck,
    spec: &TableSpec,
    at: &[usize],
    raw: &TextRow,
) -> Result<TextRow, (&'static str, String)> {
    let mut row = raw.clone();
    for &i in at {
        let Some(Some(text)) = row.get(i) else { continue };
        let Ok(code) = text.trim().parse::<i64>() else { continue };
        let ours = dict.party_state(code).map_err(|reason| (spec.columns[i].name, reason))?;
        row[i] = Some(ours.to_string());
    }
    Ok(row)
}

enum TableError {
    Source(SourceError),
    Staging(StagingError),
}

/// Epoch seconds of an SQL timestamp in PostgreSQL's text form: `YYYY-MM-DD HH:MM:SS[.fff]` (a `timestamp`, taken
/// as UTC) or the same with an offset (a `timestamptz`, e.g. `+00` or `+01:00`). Fractions of a second are dropped.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let t = text.trim();
    if let Ok(d) = chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f") {
        return Some(d.and_utc().timestamp());
    }
    // PostgreSQL prints offsets as `+HH`, `+HH:MM` or `+HH:MM:SS`; chrono's `%#z` takes the first two.
    chrono::DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f%#z").ok().map(|d| d.timestamp())
}

/// Checks a text row against the contract: types, required columns, enumeration codes. Returns the staged form
/// or the offending column and the reason.
pub fn validate(spec: &TableSpec, raw: &TextRow) -> Result<RowToStage, (&'static str, String)> {
    let mut values = Vec::with_capacity(spec.columns.len());
    for (i, col) in spec.columns.iter().enumerate() {
        let text = raw.get(i).cloned().flatten();
        let value = match text {
            None => {
                if col.required {
                    return Err((col.name, "required value is NULL".to_string()));
                }
                None
            }
            Some(t) => match col.ty {
                ColumnType::Text => Some(Value::Text(t)),
                ColumnType::Timestamp => Some(Value::Int(
                    parse_timestamp(&t).ok_or_else(|| (col.name, format!("'{t}' is not a timestamp")))?,
                )),
                ColumnType::Int => {
                    let v: i64 = t.trim().parse().map_err(|_| (col.name, format!("'{t}' is not an integer")))?;
                    if let Some(domain) = col.domain {
                        if !domain.contains(&v) {
                            return Err((col.name, format!("unknown code {v} (accepted: {domain:?})")));
                        }
                    }
                    Some(Value::Int(v))
                }
            },
        };
        values.push(value);
    }
    let row = StagedRow { version: 0, values };
    let id = row.int(0).ok_or((spec.columns[0].name, "missing row key".to_string()))?;
    let seq = spec.column_index("GSYS_SEQ").and_then(|i| row.int(i)).unwrap_or(0);
    let useq = spec.column_index("GSYS_USEQ").and_then(|i| row.int(i)).unwrap_or(0);
    // The grouping columns: without one the row belongs to no group (a misspelt contract column fails here too).
    let text = |c: &'static str| {
        spec.column_index(c).and_then(|i| row.text(i)).map(str::to_string).ok_or((c, "the row's group needs it".into()))
    };
    let group = match spec.grouping {
        Grouping::Interaction(c) => RowGroup::Key(GroupKey::Interaction(text(c)?)),
        Grouping::LoginSession(c) if spec.name == G_LOGIN_SESSION.name => {
            // Known by agent and login time, the same in both IDBs of a pair whatever id each ICON gives it.
            let int = |c: &'static str| {
                spec.column_index(c).and_then(|i| row.int(i)).ok_or((c, "a login session needs it".to_string()))
            };
            let key = GroupKey::LoginSession { agent: int("AGENTID")?, created: int("CREATED_TS")? };
            RowGroup::SessionDefinition { key, session_id: text(c)? }
        }
        Grouping::LoginSession(c) => RowGroup::SessionMember(text(c)?),
        Grouping::Configuration => RowGroup::Key(GroupKey::Configuration(spec.name.to_string())),
        Grouping::SessionControl => RowGroup::Key(GroupKey::SessionControl),
    };
    Ok(RowToStage { id, group, row: StagedRow { version: seq.max(useq), ..row } })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::contract::G_CALL;

    fn row(values: &[Option<&str>]) -> TextRow {
        values.iter().map(|v| v.map(str::to_string)).collect()
    }

    fn good_call() -> Vec<Option<&'static str>> {
        vec![
            Some("7"),
            Some("CALL-1"),
            None,
            None,
            None,
            Some("2"),
            Some("2"),
            Some("1"),
            Some("1"),
            Some("1"),
            Some("100"),
            Some("200"),
            Some("1000"),
            Some("5"),
            Some("9"),
        ]
    }

    /// A settling mark never passes a value before a larger one has been visible for the settle time, never
    /// passes what the pass covered, and never goes back.
    #[test]
    fn settling_mark_passes_only_values_visible_for_the_settle_time() {
        let settle = Duration::from_secs(120);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut st = Settling::default();
        st.observe(100, at(0));
        assert_eq!(st.settled(at(119), settle), None, "seen 119 s ago at most: nothing settled");
        assert_eq!(settled_mark(50, 100, st.settled(at(119), settle)), 50, "the mark stays");
        st.observe(180, at(60));
        st.observe(150, at(70));
        assert_eq!(st.settled(at(120), settle), Some(100));
        assert_eq!(settled_mark(50, 180, st.settled(at(120), settle)), 100, "up to the value seen 120 s ago");
        assert_eq!(settled_mark(50, 90, st.settled(at(120), settle)), 90, "never past what the pass covered");
        assert_eq!(settled_mark(120, 90, st.settled(at(120), settle)), 120, "never back");
        assert_eq!(st.settled(at(500), settle), Some(180), "a smaller value seen later adds nothing");
        assert_eq!(st.seen.len(), 0);
    }

    #[test]
    fn timestamps_parse_as_utc_epoch_seconds_with_or_without_offset() {
        assert_eq!(parse_timestamp("2026-12-02 01:00:00"), Some(1_796_173_200));
        assert_eq!(parse_timestamp("2026-12-02 01:00:00.123456"), Some(1_796_173_200));
        assert_eq!(parse_timestamp("2026-12-02 02:00:00+01"), Some(1_796_173_200));
        assert_eq!(parse_timestamp("2026-12-01 20:00:00-05:00"), Some(1_796_173_200));
        assert_eq!(parse_timestamp("1796173200"), None, "epoch seconds are not a timestamp");
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    /// Session-control times are SQL timestamps: the previous contract's epoch integers and garbage quarantine the
    /// row naming the column; a timestamp is staged as epoch seconds.
    #[test]
    fn session_control_times_must_be_timestamps() {
        use crate::source::contract::G_DSS_GCC_PROVIDER as DSS;
        let row = |stime: &str| -> TextRow {
            DSS.columns
                .iter()
                .map(|c| match c.name {
                    "DSS_ID" => Some("7".to_string()),
                    "ICON_DBID" => Some("1".to_string()),
                    "DSCONN_STIME" => Some(stime.to_string()),
                    "GSYS_SEQ" => Some("3".to_string()),
                    _ => None,
                })
                .collect()
        };
        let staged = validate(&DSS, &row("2026-12-02 01:00:00")).unwrap();
        let at = DSS.column_index("DSCONN_STIME").unwrap();
        assert_eq!(staged.row.int(at), Some(1_796_173_200));
        for bad in ["1796173200", "yesterday"] {
            let (col, reason) = validate(&DSS, &row(bad)).unwrap_err();
            assert_eq!((col, reason), ("DSCONN_STIME", format!("'{bad}' is not a timestamp")));
        }
    }

    #[test]
    fn valid_row_gets_group_and_newest_counter_as_version() {
        let r = validate(&G_CALL, &row(&good_call())).unwrap();
        assert_eq!(r.id, 7);
        assert_eq!(r.group, RowGroup::Key(GroupKey::Interaction("CALL-1".into())));
        assert_eq!(r.row.version, 9);
    }

    #[test]
    fn null_key_bad_integer_and_unknown_code_name_the_column() {
        let mut v = good_call();
        v[1] = None;
        assert_eq!(validate(&G_CALL, &row(&v)).unwrap_err().0, "CALLID");
        let mut v = good_call();
        v[10] = Some("ten");
        let (col, reason) = validate(&G_CALL, &row(&v)).unwrap_err();
        assert_eq!((col, reason.as_str()), ("CREATED_TS", "'ten' is not an integer"));
        let mut v = good_call();
        v[6] = Some("42");
        let (col, reason) = validate(&G_CALL, &row(&v)).unwrap_err();
        assert_eq!(col, "CALLTYPE");
        assert!(reason.contains("unknown code 42"));
    }
}
