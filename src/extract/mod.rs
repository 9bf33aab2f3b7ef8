//! Incremental, chunked, crash-safe copy of IDB rows into staging.
//!
//! Per IDB and table, rows are read in counter order above the high-water mark (`GSYS_SEQ` for new rows,
//! `GSYS_USEQ` for updated rows), validated against the contract, and committed to staging together with the new
//! mark in one transaction. A crash anywhere re-reads at most one chunk, which staging then recognises (same
//! version) instead of doubling. Malformed rows are quarantined with the reason and the mark moves past them.

use crate::source::contract::{ColumnType, Grouping, TableSpec, EXTRACTED_TABLES, SESSION_CONTROL_TABLES};
use crate::source::{Counter, Idb, SourceError, TextRow};
use crate::staging::{ExtractedChunk, QuarantinedRow, RowToStage, StagedRow, StagingError, Store, Value};
use serde::Serialize;
use std::time::{Duration, Instant};
use thiserror::Error;

/// The staging group holding every session-control row of every IDB (read by the merge, never transformed).
pub const SESSION_CONTROL_GROUP: &str = "K:";

/// Default rows per chunk: bounds memory per read and the work a crash can repeat.
pub const DEFAULT_CHUNK_ROWS: usize = 5_000;
/// Default chunks per table per cycle: a large backlog is worked off over several cycles so the transform and
/// the mart keep publishing in between.
pub const DEFAULT_MAX_CHUNKS_PER_CYCLE: usize = 40;
/// First retry delay after an IDB failure; doubles up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

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
}

impl Default for ExtractSettings {
    fn default() -> Self {
        ExtractSettings {
            max_backoff: MAX_BACKOFF,
            chunk_rows: DEFAULT_CHUNK_ROWS,
            max_chunks_per_cycle: DEFAULT_MAX_CHUNKS_PER_CYCLE,
        }
    }
}

/// Reachability and progress of one IDB, as shown by `/v1/status`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IdbHealth {
    /// IDB name.
    pub idb: String,
    /// Whether the last attempt succeeded.
    pub reachable: bool,
    /// Last error message.
    pub last_error: Option<String>,
    /// Since when (epoch seconds) the IDB has been failing.
    pub failing_since: Option<i64>,
    /// Rows staged since start.
    pub rows_staged: u64,
    /// Rows quarantined since start.
    pub rows_quarantined: u64,
    /// Last successful extraction pass (epoch seconds).
    pub last_success: Option<i64>,
    #[serde(skip)]
    retry_at: Option<Instant>,
    #[serde(skip)]
    backoff: Duration,
}

impl IdbHealth {
    /// Fresh health record of an IDB not tried yet.
    pub fn new(idb: &str) -> Self {
        IdbHealth {
            idb: idb.to_string(),
            reachable: true,
            last_error: None,
            failing_since: None,
            rows_staged: 0,
            rows_quarantined: 0,
            last_success: None,
            retry_at: None,
            backoff: INITIAL_BACKOFF,
        }
    }

    fn failed(&mut self, e: &SourceError, now: i64, max_backoff: Duration) {
        self.reachable = false;
        self.last_error = Some(e.to_string());
        self.failing_since.get_or_insert(now);
        let wait = self.backoff.min(max_backoff);
        self.retry_at = Some(Instant::now() + wait);
        self.backoff = (self.backoff * 2).min(max_backoff.max(INITIAL_BACKOFF));
    }

    fn succeeded(&mut self, now: i64) {
        self.reachable = true;
        self.last_error = None;
        self.failing_since = None;
        self.retry_at = None;
        self.backoff = INITIAL_BACKOFF;
        self.last_success = Some(now);
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
    /// Chunks committed.
    pub chunks: usize,
    /// True when some table still had rows beyond this pass's chunk budget.
    pub backlog: bool,
    /// True when the IDB was skipped (waiting for its retry time) or failed.
    pub skipped: bool,
}

/// Runs one extraction pass over every contract table of `idb`. IDB failures are recorded in `health` (with
/// backoff) and never returned as errors; only staging failures are.
pub async fn extract_idb(
    store: &Store,
    idb: &Idb,
    settings: ExtractSettings,
    health: &mut IdbHealth,
) -> Result<ExtractReport, ExtractError> {
    let mut report = ExtractReport::default();
    if health.retry_at.is_some_and(|t| Instant::now() < t) {
        report.skipped = true;
        return Ok(report);
    }
    let now = chrono::Utc::now().timestamp();
    // Session control is read first and committed last, and only when every data table was read to its end: a
    // heartbeat (`LEVENT_ITIME`) then never claims rows that are not staged yet, which is what lets the merge
    // trust "this IDB is complete up to T" (rows the collector wrote after our read of session control carry
    // times after the heartbeat we read).
    let mut session_control = Vec::new();
    let mut failure = None;
    'read: for spec in SESSION_CONTROL_TABLES {
        for counter in [Counter::Seq, Counter::Useq] {
            match read_all(idb, spec, counter, store).await {
                Ok(chunk) => session_control.push(chunk),
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
                if let Err(e) = extract_table(store, idb, spec, counter, settings, &mut report).await {
                    failure = Some((spec.name, e));
                    break 'data;
                }
            }
        }
    }
    match failure {
        Some((_, TableError::Staging(e))) => return Err(e.into()),
        Some((table, TableError::Source(e))) => {
            tracing::warn!(idb = idb.name(), table, error = %e, "IDB read failed; will retry");
            health.failed(&e, now, settings.max_backoff);
            report.skipped = true;
            return Ok(report);
        }
        None => {}
    }
    if !report.backlog {
        for chunk in &session_control {
            let outcome = store.commit_chunk(chunk)?;
            report.rows_staged += outcome.staged;
            report.rows_quarantined += outcome.quarantined;
        }
    }
    health.rows_staged += report.rows_staged as u64;
    health.rows_quarantined += report.rows_quarantined as u64;
    if report.rows_beyond_retention > 0 {
        tracing::warn!(
            idb = %idb.name(),
            rows = report.rows_beyond_retention,
            "rows for interactions purged from staging (older than maintenance.staging_retention_days) were not \
             staged; the mart keeps what it had for them"
        );
    }
    health.succeeded(now);
    Ok(report)
}

/// Reads every row of a (small) session-control table above its high-water mark into one chunk, uncommitted.
async fn read_all<'a>(
    idb: &'a Idb,
    spec: &'a TableSpec,
    counter: Counter,
    store: &Store,
) -> Result<ExtractedChunk<'a>, TableError> {
    let mark = store.high_water_mark(idb.name(), spec.name).map_err(TableError::Staging)?.get(counter);
    let mut chunk = ExtractedChunk {
        idb: idb.name(),
        table: spec.name,
        counter,
        rows: Vec::new(),
        quarantined: Vec::new(),
        new_mark: mark,
    };
    loop {
        let before = chunk.new_mark;
        let rows = idb.read_chunk(spec, counter, before, DEFAULT_CHUNK_ROWS).await.map_err(TableError::Source)?;
        let full = rows.len() >= DEFAULT_CHUNK_ROWS;
        add_rows(idb, spec, counter, &rows, &mut chunk);
        if !full || chunk.new_mark == before {
            return Ok(chunk);
        }
    }
}

/// Validates raw rows into `chunk`, quarantining the malformed ones and moving its mark past all of them.
fn add_rows(idb: &Idb, spec: &TableSpec, counter: Counter, rows: &[TextRow], chunk: &mut ExtractedChunk<'_>) {
    let counter_idx = spec.column_index(counter.column()).unwrap_or(0);
    for raw in rows {
        let counter_value = raw.get(counter_idx).and_then(|v| v.as_deref()).and_then(|v| v.trim().parse::<i64>().ok());
        if let Some(c) = counter_value {
            chunk.new_mark = chunk.new_mark.max(c);
        }
        match validate(spec, raw) {
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
                    counter_value: counter_value.unwrap_or(chunk.new_mark),
                });
            }
        }
    }
}

enum TableError {
    Source(SourceError),
    Staging(StagingError),
}

async fn extract_table(
    store: &Store,
    idb: &Idb,
    spec: &TableSpec,
    counter: Counter,
    settings: ExtractSettings,
    report: &mut ExtractReport,
) -> Result<(), TableError> {
    let mut mark = store.high_water_mark(idb.name(), spec.name).map_err(TableError::Staging)?.get(counter);
    for _ in 0..settings.max_chunks_per_cycle.max(1) {
        let rows = idb.read_chunk(spec, counter, mark, settings.chunk_rows).await.map_err(TableError::Source)?;
        if rows.is_empty() {
            return Ok(());
        }
        let full = rows.len() >= settings.chunk_rows;
        report.rows_read += rows.len();
        let mut chunk = ExtractedChunk {
            idb: idb.name(),
            table: spec.name,
            counter,
            rows: Vec::new(),
            quarantined: Vec::new(),
            new_mark: mark,
        };
        add_rows(idb, spec, counter, &rows, &mut chunk);
        let outcome = store.commit_chunk(&chunk).map_err(TableError::Staging)?;
        report.chunks += 1;
        report.rows_staged += outcome.staged;
        report.rows_quarantined += outcome.quarantined;
        report.rows_beyond_retention += outcome.beyond_retention;
        if chunk.new_mark == mark || !full {
            return Ok(());
        }
        mark = chunk.new_mark;
    }
    report.backlog = true;
    Ok(())
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
    let id = row.int(0).ok_or(("ID", "missing row id".to_string()))?;
    let seq = spec.column_index("GSYS_SEQ").and_then(|i| row.int(i)).unwrap_or(0);
    let useq = spec.column_index("GSYS_USEQ").and_then(|i| row.int(i)).unwrap_or(0);
    let group = match spec.grouping {
        Grouping::Interaction(c) => format!("I:{}", spec.column_index(c).and_then(|i| row.text(i)).unwrap_or_default()),
        Grouping::LoginSession(c) => {
            format!("S:{}", spec.column_index(c).and_then(|i| row.text(i)).unwrap_or_default())
        }
        Grouping::Configuration => format!("C:{}", spec.name),
        Grouping::SessionControl => SESSION_CONTROL_GROUP.to_string(),
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

    #[test]
    fn valid_row_gets_group_and_newest_counter_as_version() {
        let r = validate(&G_CALL, &row(&good_call())).unwrap();
        assert_eq!(r.id, 7);
        assert_eq!(r.group, "I:CALL-1");
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
        v[5] = Some("42");
        let (col, reason) = validate(&G_CALL, &row(&v)).unwrap_err();
        assert_eq!(col, "STATE");
        assert!(reason.contains("unknown code 42"));
    }
}
