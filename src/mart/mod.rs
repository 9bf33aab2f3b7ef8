//! The mart: one Delta table per star-schema table on local disk, partitioned by day, plus publishing of
//! consistent mart versions.
//!
//! A cycle rewrites only the day partitions whose facts changed (`replaceWhere day = D`, one atomic Delta commit
//! per partition), then records in the catalog (staging store) the Delta version of *every* table as one new
//! mart version. Readers only ever open tables at catalog versions, so they never see half a cycle. Rewriting a
//! partition from staged facts is idempotent: a crash between the Delta commit and the catalog commit repeats the
//! rewrite with identical content.

use crate::fault::{FaultInjector, InjectedCrash};
use crate::staging::{Cell, FactRow, MartSnapshot, StagingError, Store};
use crate::transform::schema::{mart_table, ColumnKind, MartTable, INTERACTION_FACT, MART_TABLES};
use datafusion::arrow::array::{ArrayRef, Float64Builder, Int64Builder, StringBuilder};
use datafusion::arrow::datatypes::{DataType as ArrowType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::{col, lit};
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{DataType, StructField};
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder};
use std::collections::{BTreeMap, HashMap};
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

/// The Delta tables of one appliance.
#[derive(Debug, Clone)]
pub struct Mart {
    root: PathBuf,
    tables: Arc<Mutex<HashMap<&'static str, DeltaTable>>>,
}

impl Mart {
    /// Opens the mart under `root`, creating any missing table (empty, version 0).
    pub async fn open(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(|source| MartError::Directory { path: root.to_path_buf(), source })?;
        let root = root.canonicalize().map_err(|source| MartError::Directory { path: root.to_path_buf(), source })?;
        let mart = Mart { root, tables: Arc::new(Mutex::new(HashMap::new())) };
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
                let mut create = table.create().with_columns(columns).with_table_name(t.name);
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
                table
            };
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

    /// Replaces one day partition (or the whole unpartitioned table) with `rows`, as one Delta commit.
    pub async fn replace_partition(
        &self,
        t: &MartTable,
        day: &str,
        rows: &[FactRow],
        mart_version: u64,
    ) -> Result<u64> {
        let mut tables = self.tables.lock().await;
        let Some(table) = tables.get(t.name).cloned() else {
            return Err(MartError::NotOpen { table: t.name.into(), during: "write" });
        };
        let props = CommitProperties::default()
            .with_metadata([("ccmart.mart_version".to_string(), serde_json::json!(mart_version))]);
        let updated = if rows.is_empty() && t.partitioned {
            table
                .delete()
                .with_predicate(col("day").eq(lit(day.to_string())))
                .with_commit_properties(props)
                .await
                .map_err(delta_err(t.name, "delete partition"))?
                .0
        } else {
            let batch = to_record_batch(t, rows)?;
            let mut w = table.write(vec![batch]).with_save_mode(SaveMode::Overwrite).with_commit_properties(props);
            if t.partitioned {
                w = w.with_replace_where(col("day").eq(lit(day.to_string())));
            }
            w.await.map_err(delta_err(t.name, "replace partition"))?
        };
        let v = updated.version().unwrap_or(0);
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
}

/// What one publish did.
#[derive(Debug, Clone, Default)]
pub struct PublishReport {
    /// The new mart version, if anything changed.
    pub snapshot: Option<MartSnapshot>,
    /// Partitions rewritten.
    pub partitions: usize,
    /// Rows written.
    pub rows: usize,
}

/// Rewrites every partition whose facts changed and publishes a new mart version covering all tables.
pub async fn publish_changes(store: &Store, mart: &Mart, faults: &FaultInjector) -> Result<PublishReport> {
    let dirty = store.dirty_partitions()?;
    if dirty.is_empty() {
        return Ok(PublishReport::default());
    }
    let previous = store.latest_snapshot()?;
    let next_version = previous.as_ref().map_or(1, |s| s.version + 1);
    let mut report = PublishReport::default();
    let mut newest_end = previous.as_ref().and_then(|s| s.newest_end_ts);
    for (table, day) in &dirty {
        let Some(t) = mart_table(table) else { continue };
        let rows: Vec<FactRow> = store.partition_facts(table, day)?.into_iter().map(|(_, r)| r).collect();
        if t.name == INTERACTION_FACT.name {
            if let Some(i) = t.columns.iter().position(|(c, _)| *c == "end_ts") {
                for r in &rows {
                    if let Some(Cell::Int(e)) = r.0.get(i) {
                        newest_end = Some(newest_end.map_or(*e, |n: i64| n.max(*e)));
                    }
                }
            }
        }
        faults.step("commit mart partition")?;
        mart.replace_partition(t, day, &rows, next_version).await?;
        report.partitions += 1;
        report.rows += rows.len();
    }
    let snapshot = MartSnapshot {
        version: next_version,
        tables: mart.current_versions().await,
        published_at: chrono::Utc::now().timestamp(),
        newest_end_ts: newest_end,
    };
    store.publish(&snapshot, &dirty)?;
    report.snapshot = Some(snapshot);
    Ok(report)
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
}
