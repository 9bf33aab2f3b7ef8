//! The mart: one Delta table per star-schema table on local disk, partitioned by day, plus publishing of
//! consistent mart versions.
//!
//! A cycle appends the facts that are new as new files, and rewrites only the day partitions whose facts changed
//! or went (`replaceWhere day IN (…)`), at most one append and one rewrite per table, then records in the catalog
//! (staging store) the Delta version of *every* table as one new mart version. Readers only ever open tables at
//! catalog versions, so they never see half a cycle. Rewriting a partition from staged facts is idempotent: a crash
//! between the Delta commit and the catalog commit repeats the rewrite with identical content; an append is not,
//! so a crashed one is recognised by its Delta application transaction and its partitions rewritten instead.

use crate::fault::{FaultInjector, InjectedCrash};
use crate::staging::{Cell, FactRow, MartSnapshot, StagingError, Store};
use crate::transform::schema::{mart_table, ColumnKind, MartTable, INTERACTION_FACT, MART_TABLES};
use datafusion::arrow::array::{ArrayRef, Float64Builder, Int64Builder, StringBuilder};
use datafusion::arrow::datatypes::{DataType as ArrowType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::{col, lit};
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::Transaction;
use deltalake::kernel::{DataType, StructField};
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;
use tokio::sync::Mutex;
use url::Url;

/// Errors of the mart.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum MartError {
    /// A Delta operation failed.
    #[error("Delta table {table}: {during} failed")]
    Delta {
        /// Mart table.
        table: String,
        /// Operation.
        during: &'static str,
        /// What delta-rs said (boxed: it is large, and errors travel on every `Result` of the mart).
        #[source]
        source: Box<deltalake::DeltaTableError>,
    },
    /// A table was written or vacuumed before the mart opened it (a bug: the mart opens every table at start).
    #[error("Delta table {table}: {during} before the table was opened")]
    NotOpen {
        /// Mart table.
        table: String,
        /// Operation.
        during: &'static str,
    },
    /// The mart directory is unusable.
    #[error("mart directory {path} is unusable")]
    Directory {
        /// Path.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// The mart directory is not an absolute path (Delta tables are addressed by URL).
    #[error("mart directory {path} is not an absolute path")]
    NotAbsolute {
        /// Path.
        path: PathBuf,
    },
    /// A fact row does not fit its table: a cell of another type than the column's.
    #[error("building rows of {table}: column {column}: unexpected {found}")]
    CellType {
        /// Mart table.
        table: String,
        /// Column.
        column: &'static str,
        /// The cell found.
        found: String,
    },
    /// A fact row has another number of cells than its table has columns (staged by another version).
    #[error("building rows of {table}: a row has {found} cells, the table {expected} columns")]
    RowWidth {
        /// Mart table.
        table: String,
        /// Columns of the table.
        expected: usize,
        /// Cells of the row.
        found: usize,
    },
    /// Arrow refused the columns built for a table.
    #[error("building rows of {table}")]
    Arrow {
        /// Mart table.
        table: String,
        /// What Arrow said.
        #[source]
        source: datafusion::arrow::error::ArrowError,
    },
    /// A table on disk has other columns than this version of ccmart writes (it was written by another version).
    #[error(
        "mart table {table} in {path} has the columns [{found}], this version of ccmart writes [{expected}]; the mart \
         was built by another ccmart version: stop ccmart, move the data directory aside and start again to rebuild \
         the mart from the IDBs (or run the version that built it)"
    )]
    SchemaMismatch {
        /// Mart table.
        table: String,
        /// Table directory.
        path: PathBuf,
        /// Columns (name type) on disk.
        found: String,
        /// Columns (name type) this version writes.
        expected: String,
    },
    /// Staging failed.
    #[error(transparent)]
    Staging(#[from] StagingError),
    /// Fault injection fired (tests only).
    #[error(transparent)]
    Injected(#[from] InjectedCrash),
}

/// Result alias of the mart.
pub type Result<T, E = MartError> = std::result::Result<T, E>;

fn delta_err<'a>(table: &'a str, during: &'static str) -> impl Fn(deltalake::DeltaTableError) -> MartError + 'a {
    move |source| MartError::Delta { table: table.to_string(), during, source: Box::new(source) }
}

/// The Arrow schema of a mart table.
pub fn arrow_schema(t: &MartTable) -> SchemaRef {
    Arc::new(Schema::new(
        t.columns
            .iter()
            .map(|(name, kind)| {
                let ty = match kind {
                    ColumnKind::Int => ArrowType::Int64,
                    ColumnKind::Text => ArrowType::Utf8,
                    ColumnKind::Float => ArrowType::Float64,
                };
                Field::new(*name, ty, true)
            })
            .collect::<Vec<_>>(),
    ))
}

/// Converts fact rows into one Arrow batch of the table's schema.
pub fn to_record_batch(t: &MartTable, rows: &[FactRow]) -> Result<RecordBatch> {
    if let Some(r) = rows.iter().find(|r| r.0.len() != t.columns.len()) {
        return Err(MartError::RowWidth { table: t.name.into(), expected: t.columns.len(), found: r.0.len() });
    }
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(t.columns.len());
    for (i, (name, kind)) in t.columns.iter().enumerate() {
        let wrong = |c: &Cell| MartError::CellType { table: t.name.into(), column: name, found: format!("{c:?}") };
        match kind {
            ColumnKind::Int => {
                let mut b = Int64Builder::with_capacity(rows.len());
                for r in rows {
                    match r.0.get(i).unwrap_or(&Cell::Null) {
                        Cell::Int(v) => b.append_value(*v),
                        Cell::Null => b.append_null(),
                        c => return Err(wrong(c)),
                    }
                }
                arrays.push(Arc::new(b.finish()));
            }
            ColumnKind::Text => {
                let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 16);
                for r in rows {
                    match r.0.get(i).unwrap_or(&Cell::Null) {
                        Cell::Text(v) => b.append_value(v),
                        Cell::Null => b.append_null(),
                        c => return Err(wrong(c)),
                    }
                }
                arrays.push(Arc::new(b.finish()));
            }
            ColumnKind::Float => {
                let mut b = Float64Builder::with_capacity(rows.len());
                for r in rows {
                    match r.0.get(i).unwrap_or(&Cell::Null) {
                        Cell::Float(v) => b.append_value(*v),
                        Cell::Null => b.append_null(),
                        c => return Err(wrong(c)),
                    }
                }
                arrays.push(Arc::new(b.finish()));
            }
        }
    }
    RecordBatch::try_new(arrow_schema(t), arrays).map_err(|source| MartError::Arrow { table: t.name.into(), source })
}

/// The application id of the Delta transactions ccmart's appends record (the mart version as their version).
const APP_ID: &str = "ccmart";

/// Files a day partition may gather from appends before the next publish rewrites it as one file (compaction):
/// a query of today reads at most this many files per table.
pub const COMPACT_AFTER_FILES: usize = 32;

/// Table properties every mart table carries.
///
/// - A checkpoint every 50 commits: opening a table (or a version of it) replays at most 49 JSON commits after the
///   newest checkpoint, however long the table has been written to.
/// - No log cleanup after each commit: delta-rs would list the whole `_delta_log` directory on every commit and
///   keep 30 days of commits. Maintenance removes the commits no retained mart version needs instead (see
///   [`Mart::clean_log`]), so the log holds the version retention plus one maintenance interval of commits.
pub const DELTA_PROPERTIES: [(&str, &str); 2] =
    [("delta.checkpointInterval", "50"), ("delta.enableExpiredLogCleanup", "false")];

/// Sets [`DELTA_PROPERTIES`] on a table written by an older ccmart (one metadata commit, once).
async fn with_delta_properties(table: DeltaTable, name: &str) -> Result<DeltaTable> {
    let config = table.snapshot().map_err(delta_err(name, "open"))?.metadata().configuration().clone();
    let missing: HashMap<String, String> = DELTA_PROPERTIES
        .iter()
        .filter(|(k, v)| config.get(*k).map(String::as_str) != Some(*v))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if missing.is_empty() {
        return Ok(table);
    }
    table.set_tbl_properties().with_properties(missing).await.map_err(delta_err(name, "set table properties"))
}

/// One data file a table version reads, as its Delta log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFile {
    /// Path relative to the table's directory (`day=…/part-….parquet`).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, epoch milliseconds.
    pub modified: i64,
}

/// The Delta tables of one appliance.
#[derive(Debug, Clone)]
pub struct Mart {
    root: PathBuf,
    /// The writer's state of every table: the newest version, updated by each commit without reading the log.
    tables: Arc<Mutex<HashMap<&'static str, DeltaTable>>>,
    /// The state of every table last asked for by [`Mart::files_at`] at a version the writer no longer holds
    /// (a standby's replicated versions, time travel): moved forward by reading only the newer commits.
    readers: Arc<Mutex<HashMap<&'static str, (DeltaTable, Stamp)>>>,
    /// The [`Mart::stamp`] of the writer's version of each table, taken when it opened or committed it.
    stamps: Arc<Mutex<HashMap<&'static str, Stamp>>>,
    /// The mart version of each table's last append (its `ccmart` application transaction), read from the log
    /// once per table and kept by [`Mart::append`]: asking costs no log read per cycle.
    appends: Arc<Mutex<HashMap<&'static str, Option<i64>>>>,
}

/// Size and modification time of a commit file: whether a table state still describes what is on disk.
type Stamp = Option<(u64, std::time::SystemTime)>;

impl Mart {
    /// Opens the mart under `root`, creating any missing table (empty, version 0).
    pub async fn open(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(|source| MartError::Directory { path: root.to_path_buf(), source })?;
        let root = root.canonicalize().map_err(|source| MartError::Directory { path: root.to_path_buf(), source })?;
        let mart = Mart {
            root,
            tables: Arc::new(Mutex::new(HashMap::new())),
            readers: Arc::new(Mutex::new(HashMap::new())),
            stamps: Arc::new(Mutex::new(HashMap::new())),
            appends: Arc::new(Mutex::new(HashMap::new())),
        };
        for t in MART_TABLES {
            let url = mart.table_url(t.name)?;
            let exists = mart.root.join(t.name).join("_delta_log").is_dir();
            let table = if exists {
                DeltaTableBuilder::from_url(url)
                    .map_err(delta_err(t.name, "open"))?
                    .load()
                    .await
                    .map_err(delta_err(t.name, "open"))?
            } else {
                DeltaTableBuilder::from_url(url)
                    .map_err(delta_err(t.name, "open"))?
                    .build()
                    .map_err(delta_err(t.name, "open"))?
            };
            let columns: Vec<StructField> = t
                .columns
                .iter()
                .map(|(n, k)| {
                    let ty = match k {
                        ColumnKind::Int => DataType::LONG,
                        ColumnKind::Text => DataType::STRING,
                        ColumnKind::Float => DataType::DOUBLE,
                    };
                    StructField::new(n.to_string(), ty, true)
                })
                .collect();
            let table = if table.version().is_none() {
                let mut create = table
                    .create()
                    .with_columns(columns)
                    .with_table_name(t.name)
                    .with_configuration(DELTA_PROPERTIES.iter().map(|(k, v)| (*k, Some(*v))));
                if t.partitioned {
                    create = create.with_partition_columns(["day"]);
                }
                create.await.map_err(delta_err(t.name, "create"))?
            } else {
                let schema = table.snapshot().map_err(delta_err(t.name, "open"))?.schema();
                let on_disk: Vec<(String, DataType)> =
                    schema.fields().map(|f| (f.name().to_string(), f.data_type().clone())).collect();
                let wanted: Vec<(String, DataType)> =
                    columns.iter().map(|f| (f.name().to_string(), f.data_type().clone())).collect();
                if on_disk != wanted {
                    let show = |c: &[(String, DataType)]| {
                        c.iter().map(|(n, ty)| format!("{n} {ty}")).collect::<Vec<_>>().join(", ")
                    };
                    return Err(MartError::SchemaMismatch {
                        table: t.name.into(),
                        path: mart.root.join(t.name),
                        found: show(&on_disk),
                        expected: show(&wanted),
                    });
                }
                with_delta_properties(table, t.name).await?
            };
            let stamp = mart.stamp(t.name, table.version().unwrap_or(0) as u64);
            mart.stamps.lock().await.insert(t.name, stamp);
            mart.tables.lock().await.insert(t.name, table);
        }
        Ok(mart)
    }

    /// Root directory of the mart.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The `file://` URL of a mart table's directory.
    pub fn table_url(&self, name: &str) -> Result<Url> {
        let dir = self.root.join(name);
        std::fs::create_dir_all(&dir).map_err(|source| MartError::Directory { path: dir.clone(), source })?;
        Url::from_directory_path(&dir).map_err(|_| MartError::NotAbsolute { path: dir })
    }

    /// Current Delta version of every table.
    pub async fn current_versions(&self) -> BTreeMap<String, u64> {
        self.tables.lock().await.iter().map(|(n, t)| (n.to_string(), t.version().unwrap_or(0))).collect()
    }

    /// Loads a mart table at a Delta version (for queries and exports).
    pub async fn load(&self, name: &str, version: u64) -> Result<DeltaTable> {
        let url = self.table_url(name)?;
        DeltaTableBuilder::from_url(url)
            .map_err(delta_err(name, "open"))?
            .with_version(version)
            .load()
            .await
            .map_err(delta_err(name, "load version"))
    }

    /// The data files `name` reads at Delta `version`. The version the writer just committed costs one `stat`
    /// (the commit updated the writer's state); another one moves a reader's state to it, reading only the commits
    /// in between when it lies ahead (a standby following replication) and the log from the nearest checkpoint
    /// otherwise. So building a query context for a new mart version does not replay whole logs.
    ///
    /// A state is used only while the commit file of its version is the one it was built from (same size and
    /// modification time): replication may replace a table's log with the peer's history, whose version numbers
    /// are the same and whose content is not.
    pub async fn files_at(&self, name: &str, version: u64) -> Result<Vec<TableFile>> {
        let files = |table: &DeltaTable| -> Result<Vec<TableFile>> {
            let state = table.snapshot().map_err(delta_err(name, "list files"))?;
            Ok(state
                .log_data()
                .into_iter()
                .map(|f| TableFile {
                    path: f.path().to_string(),
                    size: f.size().max(0) as u64,
                    modified: f.modification_time(),
                })
                .collect())
        };
        let Some(static_name) = MART_TABLES.iter().find(|t| t.name == name).map(|t| t.name) else {
            return Err(MartError::NotOpen { table: name.into(), during: "list files" });
        };
        if let Some(table) = self.tables.lock().await.get(static_name) {
            if table.version() == Some(version as _)
                && self.stamps.lock().await.get(static_name) == Some(&self.stamp(name, version))
            {
                return files(table);
            }
        }
        let mut readers = self.readers.lock().await;
        let reader = match readers.remove(static_name) {
            Some((r, stamp))
                if r.version().is_some_and(|v| v <= version) && stamp == self.stamp(name, r.version().unwrap_or(0)) =>
            {
                r
            }
            _ => DeltaTableBuilder::from_url(self.table_url(name)?)
                .map_err(delta_err(name, "open"))?
                .build()
                .map_err(delta_err(name, "open"))?,
        };
        let mut reader = reader;
        reader.load_version(version as _).await.map_err(delta_err(name, "load version"))?;
        let out = files(&reader);
        readers.insert(static_name, (reader, self.stamp(name, version)));
        out
    }

    /// Size and modification time of the commit file of `version` of `name` (None when it is missing).
    fn stamp(&self, name: &str, version: u64) -> Option<(u64, std::time::SystemTime)> {
        let path = self.root.join(name).join("_delta_log").join(format!("{version:020}.json"));
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.len(), meta.modified().ok()?))
    }

    /// Opens every table again from disk, in place (every clone of this mart, the query engine's too, sees the
    /// new state): after a promotion, the tables are the ones replication brought.
    pub async fn reopen(&self) -> Result<()> {
        let fresh = Mart::open(&self.root).await?;
        let tables = std::mem::take(&mut *fresh.tables.lock().await);
        let stamps = std::mem::take(&mut *fresh.stamps.lock().await);
        *self.tables.lock().await = tables;
        *self.stamps.lock().await = stamps;
        self.readers.lock().await.clear();
        self.appends.lock().await.clear();
        Ok(())
    }

    /// Appends `rows` (facts new since the last version, of any days) to `t` as new files, in one Delta commit
    /// that records mart version `mart_version` as the table's `ccmart` application transaction, so
    /// [`Mart::appended_at`] can tell after a crash that this version's append is already in the table.
    pub async fn append(&self, t: &MartTable, rows: &[FactRow], mart_version: u64) -> Result<u64> {
        let mut tables = self.tables.lock().await;
        let Some(table) = tables.get(t.name).cloned() else {
            return Err(MartError::NotOpen { table: t.name.into(), during: "append" });
        };
        let props = CommitProperties::default()
            .with_metadata([("ccmart.mart_version".to_string(), serde_json::json!(mart_version))])
            .with_application_transaction(Transaction::new(APP_ID, mart_version as i64));
        let batch = to_record_batch(t, rows)?;
        let updated = table
            .write(vec![batch])
            .with_save_mode(SaveMode::Append)
            .with_commit_properties(props)
            .await
            .map_err(delta_err(t.name, "append"))?;
        let v = updated.version().unwrap_or(0);
        self.stamps.lock().await.insert(t.name, self.stamp(t.name, v));
        self.appends.lock().await.insert(t.name, Some(mart_version as i64));
        tables.insert(t.name, updated);
        Ok(v)
    }

    /// Whether `t` holds the append of mart version `mart_version` (or a later one) already: a run that crashed
    /// after appending and before publishing the version must not append the same facts again.
    pub async fn appended_at(&self, t: &MartTable, mart_version: u64) -> Result<bool> {
        if let Some(last) = self.appends.lock().await.get(t.name) {
            return Ok(last.is_some_and(|v| v >= mart_version as i64));
        }
        let tables = self.tables.lock().await;
        let Some(table) = tables.get(t.name) else {
            return Err(MartError::NotOpen { table: t.name.into(), during: "read the last append" });
        };
        let state = table.snapshot().map_err(delta_err(t.name, "read the last append"))?;
        let last = state
            .transaction_version(table.log_store().as_ref(), APP_ID)
            .await
            .map_err(delta_err(t.name, "read the last append"))?;
        self.appends.lock().await.insert(t.name, last);
        Ok(last.is_some_and(|v| v >= mart_version as i64))
    }

    /// Number of data files of `t` in partition `day` (the whole table when it is not partitioned) at its current
    /// version.
    pub async fn files_in(&self, t: &MartTable, day: &str) -> Result<usize> {
        let tables = self.tables.lock().await;
        let Some(table) = tables.get(t.name) else {
            return Err(MartError::NotOpen { table: t.name.into(), during: "count files" });
        };
        let state = table.snapshot().map_err(delta_err(t.name, "count files"))?;
        let prefix = format!("day={day}/");
        Ok(state.log_data().into_iter().filter(|f| !t.partitioned || f.path().starts_with(&prefix)).count())
    }

    /// Replaces the day partitions `days` of `t` (or the whole table, when it is not partitioned) with `rows`, as
    /// one Delta commit: a cycle costs one log entry per changed table, not one per changed day, so the log a
    /// reader replays grows with cycles, not with the days a late interaction touches. Every row must fall in one
    /// of `days` (Delta checks it); a day without rows is emptied.
    pub async fn replace_partitions(
        &self,
        t: &MartTable,
        days: &BTreeSet<String>,
        rows: &[FactRow],
        mart_version: u64,
    ) -> Result<u64> {
        let mut tables = self.tables.lock().await;
        let Some(table) = tables.get(t.name).cloned() else {
            return Err(MartError::NotOpen { table: t.name.into(), during: "write" });
        };
        let props = CommitProperties::default()
            .with_metadata([("ccmart.mart_version".to_string(), serde_json::json!(mart_version))]);
        let in_days = || col("day").in_list(days.iter().map(|d| lit(d.clone())).collect(), false);
        let updated = if rows.is_empty() && t.partitioned {
            table
                .delete()
                .with_predicate(in_days())
                .with_commit_properties(props)
                .await
                .map_err(delta_err(t.name, "delete partitions"))?
                .0
        } else {
            let batch = to_record_batch(t, rows)?;
            let mut w = table.write(vec![batch]).with_save_mode(SaveMode::Overwrite).with_commit_properties(props);
            if t.partitioned {
                w = w.with_replace_where(in_days());
            }
            w.await.map_err(delta_err(t.name, "replace partitions"))?
        };
        let v = updated.version().unwrap_or(0);
        self.stamps.lock().await.insert(t.name, self.stamp(t.name, v as u64));
        tables.insert(t.name, updated);
        Ok(v)
    }
}

impl Mart {
    /// Deletes the files of `name` that neither its current Delta version nor any of `keep` (the Delta versions
    /// that queryable mart versions point to) reads, including files no version references at all (left by a
    /// write a crash interrupted). Queries on those versions are unaffected. (Delta's own count of deleted files
    /// also counts files an earlier vacuum already deleted, so callers measure the directory instead.)
    pub async fn vacuum(&self, name: &str, keep: &[u64]) -> Result<()> {
        let keep: Vec<deltalake::kernel::Version> = keep.iter().map(|v| *v as _).collect();
        let mut tables = self.tables.lock().await;
        let Some(table) = tables.get(name).cloned() else {
            return Err(MartError::NotOpen { table: name.into(), during: "vacuum" });
        };
        let (table, _) = table
            .vacuum()
            .with_retention_period(chrono::Duration::zero())
            .with_keep_versions(&keep)
            .with_enforce_retention_duration(false)
            .with_mode(deltalake::operations::vacuum::VacuumMode::Full)
            .await
            .map_err(delta_err(name, "vacuum"))?;
        let name_static = MART_TABLES.iter().find(|t| t.name == name).map(|t| t.name);
        if let Some(n) = name_static {
            tables.insert(n, table);
        }
        Ok(())
    }

    /// Deletes the Delta log entries (commits and checkpoints) of `name` older than the newest checkpoint at or
    /// before `oldest_kept`, the oldest Delta version a queryable mart version reads: every version from there on
    /// still loads, and the log stops growing with the table's age. Returns the number of files deleted.
    pub async fn clean_log(&self, name: &str, oldest_kept: u64) -> Result<usize> {
        let tables = self.tables.lock().await;
        let Some(table) = tables.get(name) else {
            return Err(MartError::NotOpen { table: name.into(), during: "clean the log" });
        };
        let now = chrono::Utc::now().timestamp_millis();
        deltalake::protocol::checkpoints::cleanup_expired_logs_for(
            oldest_kept as _,
            table.log_store().as_ref(),
            now,
            None,
        )
        .await
        .map_err(delta_err(name, "clean the log"))
    }
}

/// What one publish did.
#[derive(Debug, Clone, Default)]
pub struct PublishReport {
    /// The new mart version, if anything changed.
    pub snapshot: Option<MartSnapshot>,
    /// Tables committed (one Delta commit each).
    pub tables: usize,
    /// Partitions written (rewritten or appended to).
    pub partitions: usize,
    /// Of those, partitions that got their new facts as a new file.
    pub appended: usize,
    /// Rows written.
    pub rows: usize,
}

/// Publishes a new mart version covering all tables: partitions where only new facts arrived get them as a new
/// file (an append), partitions whose facts changed or went are rewritten whole, and so is a partition that
/// gathered [`COMPACT_AFTER_FILES`] files (compaction) or that this staging has not published since the site took
/// over a replicated mart ([`Store::is_synced`]). At most one rewrite and one append per table.
///
/// After a crash between a table's append and the catalog entry, staging still lists the facts as new; the table
/// says the version's append is in already ([`Mart::appended_at`]), and those partitions are rewritten from
/// staging instead, so no fact is written twice.
pub async fn publish_changes(store: &Store, mart: &Mart, faults: &FaultInjector) -> Result<PublishReport> {
    let rewrite = store.dirty_partitions()?;
    let appended = store.appended_partitions()?;
    if rewrite.is_empty() && appended.is_empty() {
        return Ok(PublishReport::default());
    }
    let previous = store.latest_snapshot()?;
    let next_version = previous.as_ref().map_or(1, |s| s.version + 1);
    let mut report = PublishReport::default();
    let mut newest_end = previous.as_ref().and_then(|s| s.newest_end_ts);
    let mut by_table: BTreeMap<&str, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
    for (table, day) in &rewrite {
        by_table.entry(table.as_str()).or_default().0.insert(day.clone());
    }
    for (table, day) in &appended {
        by_table.entry(table.as_str()).or_default().1.insert(day.clone());
    }
    for (table, (mut whole, mut new)) in by_table {
        let Some(t) = mart_table(table) else { continue };
        new.retain(|d| !whole.contains(d));
        if !new.is_empty() && mart.appended_at(t, next_version).await? {
            whole.append(&mut new);
        }
        for day in std::mem::take(&mut new) {
            if !store.is_synced(table, &day)? || mart.files_in(t, &day).await? + 1 >= COMPACT_AFTER_FILES {
                whole.insert(day);
            } else {
                new.insert(day);
            }
        }
        let mut written = 0;
        if !whole.is_empty() {
            let mut rows: Vec<FactRow> = Vec::new();
            for day in &whole {
                rows.extend(store.partition_facts(table, day)?.into_iter().map(|(_, r)| r));
            }
            newest_end = newest_end.max(newest_end_of(t, &rows));
            faults.step("commit mart table")?;
            mart.replace_partitions(t, &whole, &rows, next_version).await?;
            written += rows.len();
        }
        if !new.is_empty() {
            let mut rows: Vec<FactRow> = Vec::new();
            for day in &new {
                rows.extend(store.appended_facts(table, day)?);
            }
            newest_end = newest_end.max(newest_end_of(t, &rows));
            faults.step("append to mart table")?;
            mart.append(t, &rows, next_version).await?;
            written += rows.len();
            report.appended += new.len();
        }
        report.tables += 1;
        report.partitions += whole.len() + new.len();
        report.rows += written;
    }
    let snapshot = MartSnapshot {
        version: next_version,
        tables: mart.current_versions().await,
        published_at: chrono::Utc::now().timestamp(),
        newest_end_ts: newest_end,
    };
    let mut published = rewrite;
    published.extend(appended);
    store.publish(&snapshot, &published)?;
    report.snapshot = Some(snapshot);
    Ok(report)
}

/// The latest `end_ts` among `rows` when `t` is `INTERACTION_FACT` (what freshness is measured by).
fn newest_end_of(t: &MartTable, rows: &[FactRow]) -> Option<i64> {
    if t.name != INTERACTION_FACT.name {
        return None;
    }
    let i = t.columns.iter().position(|(c, _)| *c == "end_ts")?;
    rows.iter().filter_map(|r| if let Some(Cell::Int(e)) = r.0.get(i) { Some(*e) } else { None }).max()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mart written by a ccmart whose tables had other columns is refused at open with both column lists and
    /// what to do, instead of failing later in the middle of a publish; nothing on disk changes.
    #[tokio::test]
    async fn a_table_with_other_columns_is_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let mart = Mart::open(dir.path()).await.unwrap();
        let log = dir.path().join("ag2_queue_day").join("_delta_log");
        assert!(log.is_dir());
        drop(mart);
        // Re-create one table the way an older version did: without the ratio columns.
        std::fs::remove_dir_all(dir.path().join("ag2_queue_day")).unwrap();
        let url = Url::from_directory_path(dir.path().join("ag2_queue_day")).unwrap();
        std::fs::create_dir_all(dir.path().join("ag2_queue_day")).unwrap();
        let old = [("ag2_queue_key", DataType::LONG), ("offered", DataType::LONG), ("day", DataType::STRING)];
        DeltaTableBuilder::from_url(url)
            .unwrap()
            .build()
            .unwrap()
            .create()
            .with_columns(old.iter().map(|(n, t)| StructField::new(n.to_string(), t.clone(), true)))
            .with_partition_columns(["day"])
            .await
            .unwrap();
        let before = std::fs::read_dir(&log).unwrap().count();
        let e = Mart::open(dir.path()).await.unwrap_err();
        assert!(matches!(e, MartError::SchemaMismatch { ref table, .. } if table == "ag2_queue_day"), "{e}");
        let text = e.to_string();
        assert!(text.contains("ag2_queue_key long, offered long, day string"), "{text}");
        assert!(text.contains("avg_speed_of_answer_secs double") && text.contains("move the data directory"), "{text}");
        assert_eq!(std::fs::read_dir(&log).unwrap().count(), before, "nothing written");
    }

    /// A row of `t` with key `key` on `day`, every other column NULL.
    fn row(t: &MartTable, key: i64, day: &str) -> FactRow {
        FactRow(
            t.columns
                .iter()
                .enumerate()
                .map(|(i, (c, _))| match (i, *c) {
                    (0, _) => Cell::Int(key),
                    (_, "day") => Cell::Text(day.to_string()),
                    _ => Cell::Null,
                })
                .collect(),
        )
    }

    async fn keys_at(mart: &Mart, t: &MartTable, version: u64) -> Vec<(String, i64)> {
        let table = mart.load(t.name, version).await.unwrap();
        let ctx = datafusion::prelude::SessionContext::new();
        ctx.register_table("t", table.table_provider().await.unwrap()).unwrap();
        let key = t.columns[0].0;
        let batches = ctx.sql(&format!("SELECT day, {key} FROM t ORDER BY 1, 2")).await.unwrap().collect().await;
        let mut out = Vec::new();
        for b in batches.unwrap() {
            let b = datafusion::arrow::compute::cast(b.column(0), &ArrowType::Utf8).map(|d| (d, b.column(1).clone()));
            let (days, keys) = b.unwrap();
            let days = days.as_any().downcast_ref::<datafusion::arrow::array::StringArray>().unwrap();
            let keys = keys.as_any().downcast_ref::<datafusion::arrow::array::Int64Array>().unwrap();
            use datafusion::arrow::array::Array;
            out.extend((0..days.len()).map(|i| (days.value(i).to_string(), keys.value(i))));
        }
        out
    }

    fn log_entries(dir: &Path, t: &MartTable) -> (usize, Vec<u64>) {
        let (mut commits, mut checkpoints) = (0, Vec::new());
        for e in std::fs::read_dir(dir.join(t.name).join("_delta_log")).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().to_string();
            if name.ends_with(".json") {
                commits += 1;
            } else if let Some(v) = name.strip_suffix(".checkpoint.parquet") {
                checkpoints.push(v.parse().unwrap());
            }
        }
        checkpoints.sort();
        (commits, checkpoints)
    }

    /// A cycle that changes several days of a table makes one Delta commit for it, replacing exactly those days;
    /// a checkpoint is written every 50 commits, and cleaning the log below the oldest retained version leaves
    /// every retained version loadable with the same rows while the log stops growing.
    #[tokio::test]
    async fn one_commit_per_table_checkpoints_and_a_bounded_log() {
        let dir = tempfile::tempdir().unwrap();
        let mart = Mart::open(dir.path()).await.unwrap();
        let t = MART_TABLES.iter().find(|t| t.partitioned).unwrap();
        for table in mart.tables.lock().await.values() {
            let config = table.snapshot().unwrap().metadata().configuration().clone();
            for (k, v) in DELTA_PROPERTIES {
                assert_eq!(config.get(k).map(String::as_str), Some(v), "{k}");
            }
        }
        let (d1, d2, d3) = ("2026-01-01", "2026-01-02", "2026-01-03");
        let days = |ds: &[&str]| ds.iter().map(|d| d.to_string()).collect::<BTreeSet<_>>();
        let first = [row(t, 1, d1), row(t, 2, d2), row(t, 3, d3)];
        let v1 = mart.replace_partitions(t, &days(&[d1, d2, d3]), &first, 1).await.unwrap();
        assert_eq!(v1, 1, "one commit for three days");
        // Days 2 and 3 change in one commit (day 3 empties); day 1 keeps its row.
        let v2 = mart.replace_partitions(t, &days(&[d2, d3]), &[row(t, 20, d2), row(t, 21, d2)], 2).await.unwrap();
        assert_eq!(v2, v1 + 1);
        let expect = vec![(d1.to_string(), 1), (d2.to_string(), 20), (d2.to_string(), 21)];
        assert_eq!(keys_at(&mart, t, v2).await, expect);
        // Emptying every day given is one commit too.
        let v3 = mart.replace_partitions(t, &days(&[d1, d2]), &[], 3).await.unwrap();
        assert_eq!((v3, keys_at(&mart, t, v3).await), (v2 + 1, vec![]));
        assert_eq!(keys_at(&mart, t, v1).await.len(), 3, "time travel reads the first version");

        for n in 4..=120u64 {
            let v = mart.replace_partitions(t, &days(&[d1]), &[row(t, n as i64, d1)], n).await.unwrap();
            assert_eq!(v, n);
        }
        let (commits, checkpoints) = log_entries(dir.path(), t);
        assert_eq!((commits, checkpoints.clone()), (121, vec![49, 99]), "a checkpoint every 50 commits");
        // Versions from 110 on are retained: the log below the checkpoint at 99 goes, and nothing else.
        let deleted = mart.clean_log(t.name, 110).await.unwrap();
        let (commits, checkpoints) = log_entries(dir.path(), t);
        assert_eq!((commits, checkpoints), (22, vec![99]), "{deleted} deleted");
        for v in [110, 115, 120] {
            assert_eq!(keys_at(&mart, t, v).await, vec![(d1.to_string(), v as i64)]);
        }
        drop(mart);
        let reopened = Mart::open(dir.path()).await.unwrap();
        assert_eq!(reopened.current_versions().await[t.name], 120);
        assert_eq!(keys_at(&reopened, t, 120).await, vec![(d1.to_string(), 120)]);
    }

    /// A mart written before the table properties existed gets them at open, with one metadata commit per table
    /// and its rows unchanged.
    #[tokio::test]
    async fn an_older_table_gets_the_properties_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let t = MART_TABLES.iter().find(|t| t.partitioned).unwrap();
        let url = Url::from_directory_path(dir.path().join(t.name)).unwrap();
        std::fs::create_dir_all(dir.path().join(t.name)).unwrap();
        let columns = t.columns.iter().map(|(n, k)| {
            let ty = match k {
                ColumnKind::Int => DataType::LONG,
                ColumnKind::Text => DataType::STRING,
                ColumnKind::Float => DataType::DOUBLE,
            };
            StructField::new(n.to_string(), ty, true)
        });
        let old = DeltaTableBuilder::from_url(url).unwrap().build().unwrap().create().with_columns(columns);
        let old = old.with_partition_columns(["day"]).await.unwrap();
        let batch = to_record_batch(t, &[row(t, 7, "2026-01-01")]).unwrap();
        let old = old.write(vec![batch]).await.unwrap();
        assert_eq!(old.version(), Some(1));
        let mart = Mart::open(dir.path()).await.unwrap();
        assert_eq!(mart.current_versions().await[t.name], 2, "one metadata commit");
        let config = mart.load(t.name, 2).await.unwrap().snapshot().unwrap().metadata().configuration().clone();
        assert_eq!(config.get("delta.checkpointInterval").map(String::as_str), Some("50"));
        assert_eq!(keys_at(&mart, t, 2).await, vec![("2026-01-01".to_string(), 7)]);
        drop(mart);
        let mart = Mart::open(dir.path()).await.unwrap();
        assert_eq!(mart.current_versions().await[t.name], 2, "no commit once set");
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &to.join(e.file_name()));
            } else {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }

    /// `files_at` answers what the log on disk says: from the writer's state for the version it just committed,
    /// from a reader moved forward for a later one, and from the disk again once replication replaced the log
    /// with another history under the same version numbers.
    #[tokio::test]
    async fn files_at_follows_the_log_on_disk() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let t = MART_TABLES.iter().find(|t| t.partitioned).unwrap();
        let day = BTreeSet::from(["2026-01-01".to_string()]);
        let (ma, mb) = (Mart::open(a.path()).await.unwrap(), Mart::open(b.path()).await.unwrap());
        let listed = |m: &Mart, v: u64| {
            let m = m.clone();
            async move {
                let mut f: Vec<String> = m.files_at(t.name, v).await.unwrap().into_iter().map(|f| f.path).collect();
                f.sort();
                f
            }
        };
        let logged = |m: &Mart, v: u64| {
            let m = m.clone();
            async move {
                let table = m.load(t.name, v).await.unwrap();
                let mut f: Vec<String> =
                    table.snapshot().unwrap().log_data().into_iter().map(|f| f.path().to_string()).collect();
                f.sort();
                f
            }
        };
        for n in 1..=3 {
            ma.replace_partitions(t, &day, &[row(t, n, "2026-01-01")], n as u64).await.unwrap();
            mb.replace_partitions(t, &day, &[row(t, 100 + n, "2026-01-01")], n as u64).await.unwrap();
            assert_eq!(listed(&ma, n as u64).await, logged(&ma, n as u64).await);
        }
        assert_eq!(listed(&ma, 1).await, logged(&ma, 1).await, "time travel");
        assert_ne!(listed(&ma, 3).await, listed(&mb, 3).await);
        // A's table is replaced with B's (as a standby's replication does): same versions, other files.
        std::fs::remove_dir_all(a.path().join(t.name)).unwrap();
        copy_dir(&b.path().join(t.name), &a.path().join(t.name));
        for v in [2, 3] {
            assert_eq!(listed(&ma, v).await, listed(&mb, v).await, "version {v} after the log was replaced");
        }
        // B moves on; A's reader follows without reopening.
        mb.replace_partitions(t, &day, &[row(t, 104, "2026-01-01")], 4).await.unwrap();
        std::fs::remove_dir_all(a.path().join(t.name)).unwrap();
        copy_dir(&b.path().join(t.name), &a.path().join(t.name));
        assert_eq!(listed(&ma, 4).await, listed(&mb, 4).await);
        assert_eq!(keys_at(&ma, t, 4).await, vec![("2026-01-01".to_string(), 104)]);
        // Reopened in place, every clone writes on top of B's history.
        let clone = ma.clone();
        ma.reopen().await.unwrap();
        assert_eq!(clone.current_versions().await[t.name], 4);
        let v5 = ma.replace_partitions(t, &day, &[row(t, 5, "2026-01-01")], 5).await.unwrap();
        assert_eq!(v5, 5);
        assert_eq!(listed(&clone, 5).await, logged(&ma, 5).await);
    }

    /// New facts are appended as new files while the older files stay; a changed fact rewrites its partition as
    /// one file; a partition that gathered [`COMPACT_AFTER_FILES`] files is compacted; and after a crash between
    /// a table's append and the catalog entry, publishing again writes no fact twice.
    #[tokio::test]
    async fn new_facts_append_changed_ones_rewrite_and_a_crashed_append_is_not_repeated() {
        use crate::staging::{GroupOutput, KeyReferences, NoAggregates};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), FaultInjector::disarmed()).unwrap();
        let mart = Mart::open(&dir.path().join("mart")).await.unwrap();
        let faults = FaultInjector::disarmed();
        let t = &INTERACTION_FACT;
        let day = "2026-01-01";
        let commit = |group: &str, keys: &[i64], marker: i64| {
            let facts = keys
                .iter()
                .map(|k| {
                    let mut r = row(t, *k, day);
                    r.0[1] = Cell::Text(marker.to_string());
                    (crate::staging::FactAddress { table: t.name.into(), day: day.into(), key: *k }, r)
                })
                .collect();
            let out = GroupOutput { group: group.parse().unwrap(), facts, after_call_work: Vec::new() };
            let group = out.group.clone();
            store.commit_group_outputs(&[group], &[out], &KeyReferences::default(), &NoAggregates).unwrap();
        };
        let keys = |m: &Mart| {
            let m = m.clone();
            async move {
                let v = m.current_versions().await[t.name];
                keys_at(&m, t, v).await.into_iter().map(|(_, k)| k).collect::<Vec<_>>()
            }
        };
        commit("I:1", &[1, 2], 0);
        let r = publish_changes(&store, &mart, &faults).await.unwrap();
        assert_eq!((r.appended, mart.files_in(t, day).await.unwrap()), (0, 1), "first published: rewritten");
        commit("I:2", &[3], 0);
        let r = publish_changes(&store, &mart, &faults).await.unwrap();
        let first = mart.files_at(t.name, mart.current_versions().await[t.name] - 1).await.unwrap();
        let now = mart.files_at(t.name, mart.current_versions().await[t.name]).await.unwrap();
        assert_eq!(r.appended, 1);
        assert_eq!(now.len(), 2, "a new file");
        assert!(first.iter().all(|f| now.contains(f)), "the older file is still read");
        assert_eq!(keys(&mart).await, vec![1, 2, 3]);
        // A changed fact: the partition is rewritten as one file.
        commit("I:1", &[1, 2], 7);
        let r = publish_changes(&store, &mart, &faults).await.unwrap();
        assert_eq!((r.appended, mart.files_in(t, day).await.unwrap()), (0, 1));
        assert_eq!(keys(&mart).await, vec![1, 2, 3]);
        // A crashed publish appended group 3's fact but never recorded the version.
        commit("I:3", &[4], 0);
        let next = store.latest_snapshot().unwrap().unwrap().version + 1;
        mart.append(t, &store.appended_facts(t.name, day).unwrap(), next).await.unwrap();
        assert_eq!(keys(&mart).await, vec![1, 2, 3, 4]);
        let r = publish_changes(&store, &mart, &faults).await.unwrap();
        assert_eq!(r.appended, 0, "rewritten, not appended again");
        assert_eq!(keys(&mart).await, vec![1, 2, 3, 4], "no fact twice");
        // After taking over a replicated mart, a partition is rewritten the first time it changes.
        store.forget_synced_partitions().unwrap();
        commit("I:4", &[5], 0);
        let r = publish_changes(&store, &mart, &faults).await.unwrap();
        assert_eq!((r.appended, mart.files_in(t, day).await.unwrap()), (0, 1));
        // Appends gather files up to the compaction threshold, never past it.
        let mut most = 0;
        for n in 0..(COMPACT_AFTER_FILES as i64 + 3) {
            commit(&format!("I:n{n}"), &[100 + n], 0);
            publish_changes(&store, &mart, &faults).await.unwrap();
            most = most.max(mart.files_in(t, day).await.unwrap());
        }
        assert_eq!(most, COMPACT_AFTER_FILES - 1);
        assert_eq!(keys(&mart).await.len(), 5 + COMPACT_AFTER_FILES + 3);
    }
}
