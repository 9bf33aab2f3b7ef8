//! `ccmart export --snapshot DIR`: one mart version of every mart table as plain Parquet that any reader can glob.
//!
//! The live mart folders hold superseded partition files until the version retention passes, so a reader that globs
//! them as plain Parquet counts rows several times over (only Delta readers are exact there, see docs/lake.md). A
//! snapshot has exactly the files of one mart version, in a Hive layout:
//!
//! ```text
//! DIR/_ccmart_snapshot.json                      mart version, export time, per table rows, files, columns
//! DIR/<table>/day=YYYY-MM-DD/part-0.parquet      partitioned tables: one file per day, without the `day` column
//! DIR/<table>/part-0.parquet                     unpartitioned tables
//! ```
//!
//! The `day` column is left out of the files: readers take it from the directory name (DuckDB
//! `hive_partitioning`, pyarrow `partitioning="hive"`, polars `hive_partitioning`), and a copy in the file too makes
//! pyarrow's `pq.read_table(DIR/<table>)` fail on the clash of its string with the path's dictionary type.
//!
//! Both sources read one mart version: offline the newest one of a stopped appliance's data directory, remotely
//! the one `/v1/status` names first, with every later request pinned to it, so the cut stays consistent while
//! the appliance publishes. Everything is written into a temporary sibling directory that is renamed into place at
//! the end: an interrupted export leaves a `.<name>.partial-*` directory, never a snapshot that looks complete.

use super::local::{open_offline, Offline};
use super::{cli_error, Remote};
use anyhow::{bail, Context, Result};
use ccmart::model::wire;
use ccmart::replicate::client::PeerClient;
use ccmart::serve::ParquetExport;
use ccmart::transform::schema::{MartTable, MART_TABLES};
use datafusion::arrow::array::{Array, Int64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Name of the manifest in the snapshot directory.
pub const MANIFEST: &str = "_ccmart_snapshot.json";

/// Name of each data file (one per day partition, or one per unpartitioned table).
const PART_FILE: &str = "part-0.parquet";

/// `_ccmart_snapshot.json`.
#[derive(Debug, Serialize)]
struct Manifest {
    /// Manifest format.
    format: u32,
    /// The mart version every file holds.
    mart_version: u64,
    /// When the mart version was published (RFC 3339), when the source says.
    published_at: Option<String>,
    /// When this export ran (RFC 3339, UTC).
    exported_at: String,
    /// Data directory or appliance URL.
    source: String,
    /// How the files are laid out.
    layout: &'static str,
    /// Per mart table.
    tables: BTreeMap<String, TableEntry>,
}

/// One table of the manifest.
#[derive(Debug, Serialize)]
struct TableEntry {
    /// Rows in all its files.
    rows: u64,
    /// Hive partition columns (`["day"]`, or none): in the directory names, not in the files.
    partition_columns: Vec<&'static str>,
    /// Its files, relative to the snapshot directory.
    files: Vec<FileEntry>,
    /// The columns of its files (Arrow types), partition columns not included.
    columns: Vec<ColumnEntry>,
}

#[derive(Debug, Serialize)]
struct FileEntry {
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    day: Option<String>,
    rows: u64,
    bytes: u64,
}

#[derive(Debug, Serialize)]
struct ColumnEntry {
    name: String,
    #[serde(rename = "type")]
    data_type: String,
    nullable: bool,
}

/// Where the snapshot comes from: the one mart version every read is pinned to.
enum Source {
    /// A stopped appliance's data directory.
    Offline { offline: Offline, dir: PathBuf },
    /// A running appliance.
    Remote { client: PeerClient, url: String, version: u64 },
}

impl Source {
    fn version(&self) -> u64 {
        match self {
            Source::Offline { offline, .. } => offline.snapshot.version,
            Source::Remote { version, .. } => *version,
        }
    }

    fn describe(&self) -> String {
        match self {
            Source::Offline { dir, .. } => dir.display().to_string(),
            Source::Remote { url, .. } => url.clone(),
        }
    }

    fn published_at(&self) -> Option<String> {
        match self {
            Source::Offline { offline, .. } => chrono::DateTime::from_timestamp(offline.snapshot.published_at, 0)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            Source::Remote { .. } => None,
        }
    }

    /// The answer to `sql` at the pinned version: its schema and rows.
    async fn query(&self, sql: &str) -> Result<(std::sync::Arc<Schema>, Vec<RecordBatch>)> {
        match self {
            Source::Offline { offline, .. } => {
                let r = offline.engine.run(&offline.snapshot, sql).await.with_context(|| format!("running {sql}"))?;
                if r.truncated {
                    bail!("the answer to {sql} was cut off at the query row limit");
                }
                Ok((r.schema, r.batches))
            }
            Source::Remote { client, version, .. } => {
                let request = wire::QueryRequest {
                    sql: sql.into(),
                    format: Some("arrow".into()),
                    mart_version: Some(*version),
                    time_zone: None,
                    int64: None,
                };
                let body = client.query(&request).await.map_err(cli_error).with_context(|| format!("running {sql}"))?;
                let reader =
                    datafusion::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body.to_vec()), None)
                        .context("reading the appliance's Arrow answer")?;
                let schema = reader.schema();
                let batches = reader.collect::<Result<Vec<_>, _>>().context("reading the appliance's Arrow answer")?;
                Ok((schema, batches))
            }
        }
    }

    /// The days of partitioned table `t` at the pinned version with their row counts, in day order; for an
    /// unpartitioned table one entry (no day) with its row count.
    async fn partitions(&self, t: &MartTable) -> Result<Vec<(Option<String>, u64)>> {
        let sql = if t.partitioned {
            format!(
                "SELECT CAST(day AS VARCHAR) AS day, CAST(count(*) AS BIGINT) AS n FROM \"{}\" GROUP BY 1 ORDER BY 1",
                t.name
            )
        } else {
            format!("SELECT CAST(NULL AS VARCHAR) AS day, CAST(count(*) AS BIGINT) AS n FROM \"{}\"", t.name)
        };
        let (_, batches) = self.query(&sql).await?;
        let mut out = Vec::new();
        for b in &batches {
            if b.num_columns() != 2 {
                bail!("{sql}: expected 2 columns, got {}", b.num_columns());
            }
            let days = cast(b.column(0), &DataType::Utf8)?;
            let days = days.as_any().downcast_ref::<StringArray>().context("day as text")?;
            let counts = cast(b.column(1), &DataType::Int64)?;
            let counts = counts.as_any().downcast_ref::<Int64Array>().context("count as integer")?;
            for i in 0..b.num_rows() {
                let day = if days.is_null(i) { None } else { Some(days.value(i).to_string()) };
                if t.partitioned {
                    match &day {
                        Some(d) if d.parse::<ccmart::model::Day>().is_ok_and(|p| p.to_string() == *d) => {}
                        other => bail!("table {} has a partition with an invalid day {other:?}", t.name),
                    }
                }
                let n = u64::try_from(counts.value(i)).with_context(|| format!("{}: negative count", t.name))?;
                out.push((day, n));
            }
        }
        Ok(out)
    }

    /// Writes table `t` (only `day` of a partitioned table, without its `day` column) to `dest`.
    async fn write(&self, t: &MartTable, day: Option<&str>, dest: &Path) -> Result<()> {
        match self {
            Source::Offline { offline, .. } => {
                let export =
                    ParquetExport::write_with(&offline.engine, &offline.snapshot, t, day, day, day.is_none()).await?;
                export.persist(dest).with_context(|| format!("writing {}", dest.display()))?;
            }
            Source::Remote { client, version, .. } => {
                let params = wire::ExportParams {
                    from: day.map(str::to_string),
                    to: day.map(str::to_string),
                    mart_version: Some(*version),
                    day_column: Some(day.is_none()),
                };
                let mut body = client.export(t.name, &params).await.map_err(cli_error)?;
                if let Some(v) = body.header(wire::headers::MART_VERSION) {
                    if v != version.to_string() {
                        bail!("asked for mart version {version} of {}, the appliance sent version {v}", t.name);
                    }
                }
                let mut file =
                    tokio::fs::File::create(dest).await.with_context(|| format!("writing {}", dest.display()))?;
                while let Some(chunk) = body.chunk().await.map_err(cli_error).context("the export was cut off")? {
                    tokio::io::AsyncWriteExt::write_all(&mut file, &chunk)
                        .await
                        .with_context(|| format!("writing {}", dest.display()))?;
                }
                tokio::io::AsyncWriteExt::flush(&mut file).await?;
            }
        }
        Ok(())
    }
}

/// Rows and Arrow schema of a Parquet file, from its footer.
fn footer(path: &Path) -> Result<(u64, std::sync::Arc<Schema>)> {
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{} is not a readable Parquet file", path.display()))?;
    let rows = u64::try_from(builder.metadata().file_metadata().num_rows())
        .with_context(|| format!("{}: negative row count", path.display()))?;
    Ok((rows, builder.schema().clone()))
}

/// The columns of `schema` for the manifest, without the partition column of a partitioned table.
fn columns(schema: &Schema, partitioned: bool) -> Vec<ColumnEntry> {
    schema
        .fields()
        .iter()
        .filter(|f| !(partitioned && f.name() == "day"))
        .map(|f| ColumnEntry {
            name: f.name().clone(),
            data_type: f.data_type().to_string(),
            nullable: f.is_nullable(),
        })
        .collect()
}

/// `out` must not exist, or be an empty directory; returns the directory the snapshot is built in (a hidden
/// sibling of `out`, removed when dropped).
fn staging_dir(out: &Path) -> Result<tempfile::TempDir> {
    match std::fs::read_dir(out) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} exists and is not empty; export a snapshot into a new or empty directory (it is never \
                     merged with older files)",
                    out.display()
                );
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            bail!("{} exists and is not a directory", out.display())
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", out.display())),
    }
    let name = out.file_name().with_context(|| format!("{} names no directory", out.display()))?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    tempfile::Builder::new()
        .prefix(&format!(".{}.partial-", name.to_string_lossy()))
        .tempdir_in(&parent)
        .with_context(|| format!("creating a temporary directory in {}", parent.display()))
}

/// `ccmart export --snapshot DIR --data-dir D`: the newest mart version of a stopped appliance's data directory.
pub async fn snapshot_offline(data_dir: &Path, out: &Path) -> Result<()> {
    let offline = open_offline(data_dir).await?;
    export_snapshot(Source::Offline { offline, dir: data_dir.to_path_buf() }, out).await
}

/// `ccmart export --snapshot DIR --url URL`: the mart version the running appliance names first, every request
/// pinned to it.
pub async fn snapshot_remote(remote: &Remote, url: &str, out: &Path) -> Result<()> {
    let client = remote.appliance(url)?;
    let status = client.status().await.map_err(cli_error)?;
    let Some(version) = status.mart_version else {
        bail!("the appliance at {url} has published no mart version yet; try again after its first cycle");
    };
    export_snapshot(Source::Remote { client, url: url.to_string(), version }, out).await
}

async fn export_snapshot(source: Source, out: &Path) -> Result<()> {
    let tmp = staging_dir(out)?;
    let version = source.version();
    eprintln!("exporting mart version {version} of {} to {}", source.describe(), out.display());
    let mut tables = BTreeMap::new();
    let (mut total_rows, mut total_files) = (0u64, 0usize);
    for t in MART_TABLES {
        let table_dir = tmp.path().join(t.name);
        std::fs::create_dir_all(&table_dir).with_context(|| format!("creating {}", table_dir.display()))?;
        let mut entry = TableEntry {
            rows: 0,
            partition_columns: if t.partitioned { vec!["day"] } else { Vec::new() },
            files: Vec::new(),
            columns: Vec::new(),
        };
        for (day, expected) in source.partitions(t).await? {
            let rel = match &day {
                Some(d) => format!("{}/day={d}/{PART_FILE}", t.name),
                None => format!("{}/{PART_FILE}", t.name),
            };
            let path = tmp.path().join(&rel);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            source.write(t, day.as_deref(), &path).await.with_context(|| format!("exporting {rel}"))?;
            let (rows, schema) = footer(&path)?;
            if rows != expected {
                bail!("{rel} holds {rows} rows, but mart version {version} has {expected} there");
            }
            if day.is_some() && schema.field_with_name("day").is_ok() {
                bail!("{rel} has a day column: the appliance is older than this ccmart and cannot leave it out");
            }
            if entry.columns.is_empty() {
                entry.columns = columns(&schema, t.partitioned);
            }
            let bytes = std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?.len();
            entry.rows += rows;
            entry.files.push(FileEntry { path: rel, day, rows, bytes });
        }
        if entry.columns.is_empty() {
            // No partition at this version: the columns as the engine has them.
            let (schema, _) = source.query(&format!("SELECT * FROM \"{}\" LIMIT 0", t.name)).await?;
            entry.columns = columns(&schema, t.partitioned);
        }
        println!("{}: {} rows in {} file(s)", t.name, entry.rows, entry.files.len());
        total_rows += entry.rows;
        total_files += entry.files.len();
        tables.insert(t.name.to_string(), entry);
    }
    let manifest = Manifest {
        format: 1,
        mart_version: version,
        published_at: source.published_at(),
        exported_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        source: source.describe(),
        layout: "<table>/day=YYYY-MM-DD/part-0.parquet (Hive partitions; day is in the directory name, not in the \
                 files) or <table>/part-0.parquet",
        tables,
    };
    let path = tmp.path().join(MANIFEST);
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest)?)
        .with_context(|| format!("writing {}", path.display()))?;
    let built = tmp.keep();
    if let Err(e) = std::fs::rename(&built, out) {
        let _ = std::fs::remove_dir_all(&built);
        return Err(e).with_context(|| format!("moving the snapshot into {}", out.display()));
    }
    println!(
        "snapshot of mart version {version}: {} tables, {total_rows} rows, {total_files} files in {}",
        MART_TABLES.len(),
        out.display()
    );
    Ok(())
}
