//! Result encodings of the HTTP API (JSON, CSV, Arrow IPC stream, Parquet) and Parquet export files.

use crate::query::{QueryEngine, QueryError, QueryResult};
use crate::staging::MartSnapshot;
use crate::transform::schema::MartTable;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::prelude::{col, lit};
use futures::StreamExt;

/// Encodings of a query result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// `{"columns":[..],"rows":[[..]],..}`.
    Json,
    /// CSV with a header line.
    Csv,
    /// Arrow IPC stream.
    Arrow,
    /// One Parquet file.
    Parquet,
}

impl OutputFormat {
    /// Parses a format name.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Some(OutputFormat::Json),
            "csv" => Some(OutputFormat::Csv),
            "arrow" => Some(OutputFormat::Arrow),
            "parquet" => Some(OutputFormat::Parquet),
            _ => None,
        }
    }
}

/// How a JSON answer writes 64-bit integer columns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum JsonIntegers {
    /// As JSON numbers (exact in the text; JavaScript rounds those beyond 2^53 when it parses them).
    #[default]
    Numbers,
    /// As JSON strings of their decimal digits, exact for every reader; narrower integer columns stay numbers.
    Strings,
}

impl JsonIntegers {
    /// Parses the request's `int64` option.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "number" => Some(JsonIntegers::Numbers),
            "string" => Some(JsonIntegers::Strings),
            _ => None,
        }
    }
}

fn json_values(a: &ArrayRef, integers: JsonIntegers) -> Result<Vec<serde_json::Value>, String> {
    use serde_json::Value as J;
    let n = a.len();
    let dt = a.data_type();
    let wide = matches!(dt, DataType::Int64 | DataType::UInt64);
    let out = if wide && integers == JsonIntegers::Strings {
        let c = cast(a, &DataType::Utf8).map_err(|e| e.to_string())?;
        let c = c.as_any().downcast_ref::<StringArray>().ok_or("string cast")?;
        (0..n).map(|i| if c.is_null(i) { J::Null } else { J::String(c.value(i).to_string()) }).collect()
    } else if *dt == DataType::UInt64 {
        let c = a.as_any().downcast_ref::<datafusion::arrow::array::UInt64Array>().ok_or("uint64")?;
        (0..n).map(|i| if c.is_null(i) { J::Null } else { J::from(c.value(i)) }).collect()
    } else if dt.is_integer() {
        let c = cast(a, &DataType::Int64).map_err(|e| e.to_string())?;
        let c = c.as_any().downcast_ref::<Int64Array>().ok_or("int cast")?;
        (0..n).map(|i| if c.is_null(i) { J::Null } else { J::from(c.value(i)) }).collect()
    } else if dt.is_floating() || matches!(dt, DataType::Decimal128(..) | DataType::Decimal256(..)) {
        let c = cast(a, &DataType::Float64).map_err(|e| e.to_string())?;
        let c = c.as_any().downcast_ref::<Float64Array>().ok_or("float cast")?;
        (0..n)
            .map(|i| {
                if c.is_null(i) {
                    J::Null
                } else {
                    serde_json::Number::from_f64(c.value(i)).map_or(J::Null, J::Number)
                }
            })
            .collect()
    } else if *dt == DataType::Boolean {
        let c = a.as_any().downcast_ref::<BooleanArray>().ok_or("bool")?;
        (0..n).map(|i| if c.is_null(i) { J::Null } else { J::Bool(c.value(i)) }).collect()
    } else {
        let c = cast(a, &DataType::Utf8).map_err(|e| e.to_string())?;
        let c = c.as_any().downcast_ref::<StringArray>().ok_or("string cast")?;
        (0..n).map(|i| if c.is_null(i) { J::Null } else { J::String(c.value(i).to_string()) }).collect()
    };
    Ok(out)
}

/// A query answer in JSON.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct QueryAnswer {
    /// Result columns (Arrow type names).
    pub columns: Vec<super::ColumnInfo>,
    /// Rows, each an array of values in column order (numbers, strings, booleans, null).
    #[schema(value_type = Vec<Vec<serde_json::Value>>)]
    pub rows: Vec<Vec<serde_json::Value>>,
    /// Rows returned.
    pub row_count: usize,
    /// True when rows were cut off by `query.max_rows` or `query.max_result_mb`.
    pub truncated: bool,
    /// Mart version the query saw.
    pub mart_version: u64,
    /// Execution time.
    pub elapsed_ms: u64,
    /// Role of the answering site: `active`, or `standby` (its mart is a copy of the active's).
    pub role: String,
    /// On a standby: seconds since the active published the version this one serves (null on the active, and
    /// before a standby's first copy).
    pub lag_seconds: Option<i64>,
}

/// Which site answered and how current its mart is: in JSON answers and in `x-ccmart-role` /
/// `x-ccmart-lag-seconds` headers, so a reader of a standby knows it reads a copy and how old it is.
#[derive(Debug, Clone, Default)]
pub struct Freshness {
    /// `active` or `standby`.
    pub role: String,
    /// See [`QueryAnswer::lag_seconds`].
    pub lag_seconds: Option<i64>,
}

impl Freshness {
    /// Adds the headers to `resp`.
    pub fn annotate(&self, resp: &mut Response) {
        let h = resp.headers_mut();
        if let Ok(v) = header::HeaderValue::from_str(&self.role) {
            h.insert("x-ccmart-role", v);
        }
        if let Some(v) = self.lag_seconds.and_then(|l| header::HeaderValue::from_str(&l.to_string()).ok()) {
            h.insert("x-ccmart-lag-seconds", v);
        }
    }
}

/// Encodes a result in `format`.
pub fn render(
    format: OutputFormat,
    r: &QueryResult,
    fresh: &Freshness,
    integers: JsonIntegers,
) -> Result<Response, String> {
    let mut resp = render_plain(format, r, fresh, integers)?;
    fresh.annotate(&mut resp);
    Ok(resp)
}

fn render_plain(
    format: OutputFormat,
    r: &QueryResult,
    fresh: &Freshness,
    integers: JsonIntegers,
) -> Result<Response, String> {
    let elapsed_ms = r.elapsed.as_millis() as u64;
    match format {
        OutputFormat::Json => {
            let columns: Vec<_> = r
                .schema
                .fields()
                .iter()
                .map(|f| super::ColumnInfo { name: f.name().clone(), data_type: f.data_type().to_string() })
                .collect();
            let mut rows: Vec<Vec<serde_json::Value>> = Vec::with_capacity(r.row_count);
            for b in &r.batches {
                let cols: Vec<Vec<serde_json::Value>> =
                    b.columns().iter().map(|c| json_values(c, integers)).collect::<Result<_, _>>()?;
                for i in 0..b.num_rows() {
                    rows.push(cols.iter().map(|c| c[i].clone()).collect());
                }
            }
            let body = QueryAnswer {
                columns,
                rows,
                row_count: r.row_count,
                truncated: r.truncated,
                mart_version: r.mart_version,
                elapsed_ms,
                role: fresh.role.clone(),
                lag_seconds: fresh.lag_seconds,
            };
            Ok(axum::Json(body).into_response())
        }
        OutputFormat::Csv => {
            let mut buf = Vec::new();
            {
                let mut w = datafusion::arrow::csv::WriterBuilder::new().with_header(true).build(&mut buf);
                for b in &r.batches {
                    w.write(b).map_err(|e| e.to_string())?;
                }
                if r.batches.is_empty() {
                    w.write(&RecordBatch::new_empty(r.schema.clone())).map_err(|e| e.to_string())?;
                }
            }
            Ok(with_meta(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], buf).into_response(), r))
        }
        OutputFormat::Arrow => {
            let mut buf = Vec::new();
            {
                let mut w = datafusion::arrow::ipc::writer::StreamWriter::try_new(&mut buf, &r.schema)
                    .map_err(|e| e.to_string())?;
                for b in &r.batches {
                    w.write(b).map_err(|e| e.to_string())?;
                }
                w.finish().map_err(|e| e.to_string())?;
            }
            Ok(with_meta(([(header::CONTENT_TYPE, "application/vnd.apache.arrow.stream")], buf).into_response(), r))
        }
        OutputFormat::Parquet => {
            let mut buf = Vec::new();
            {
                let mut w = ArrowWriter::try_new(&mut buf, r.schema.clone(), Some(parquet_props()))
                    .map_err(|e| e.to_string())?;
                for b in &r.batches {
                    w.write(b).map_err(|e| e.to_string())?;
                }
                w.close().map_err(|e| e.to_string())?;
            }
            Ok(with_meta(([(header::CONTENT_TYPE, "application/vnd.apache.parquet")], buf).into_response(), r))
        }
    }
}

fn with_meta(mut resp: Response, r: &QueryResult) -> Response {
    let h = resp.headers_mut();
    for (k, v) in [
        ("x-ccmart-mart-version", r.mart_version.to_string()),
        ("x-ccmart-row-count", r.row_count.to_string()),
        ("x-ccmart-truncated", r.truncated.to_string()),
    ] {
        if let Ok(v) = header::HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    resp
}

fn parquet_props() -> WriterProperties {
    WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::default())).build()
}

/// A Parquet file holding one mart table (optionally a day range) at one mart version. The file is removed
/// when the value is dropped.
#[derive(Debug)]
pub struct ParquetExport {
    file: tempfile::NamedTempFile,
    /// Rows written.
    pub rows: usize,
}

impl ParquetExport {
    /// Path of the file.
    pub fn path(&self) -> &std::path::Path {
        self.file.path()
    }

    /// Copies the file to `dest` (which may be on another file system); the temporary file is then removed.
    pub fn persist(self, dest: &std::path::Path) -> std::io::Result<()> {
        std::fs::copy(self.file.path(), dest).map(|_| ())
    }

    /// Streams the table (filtered to `from..=to` days for partitioned tables) into a Parquet file, one batch at a
    /// time, so memory stays bounded whatever the table's size.
    pub async fn write(
        engine: &QueryEngine,
        snap: &MartSnapshot,
        t: &MartTable,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Self, QueryError> {
        Self::write_with(engine, snap, t, from, to, true).await
    }

    /// Like [`write`](Self::write); with `day_column` false a partitioned table's file leaves out its `day`
    /// column, for a Hive layout (`day=YYYY-MM-DD/…`) whose directory names carry it: readers that take the
    /// partition from the path (pyarrow's `pq.read_table`, DuckDB's `hive_partitioning`) would otherwise find it
    /// twice, as a string in the file and as their own type from the path.
    pub async fn write_with(
        engine: &QueryEngine,
        snap: &MartSnapshot,
        t: &MartTable,
        from: Option<&str>,
        to: Option<&str>,
        day_column: bool,
    ) -> Result<Self, QueryError> {
        let _permit = engine.admit().await?;
        let ctx = engine.context(snap).await?;
        let mut df = ctx.table(t.name).await.map_err(|e| QueryError::Execution(e.to_string()))?;
        if t.partitioned {
            if let Some(f) = from {
                df = df
                    .filter(col("day").gt_eq(lit(f.to_string())))
                    .map_err(|e| QueryError::Execution(e.to_string()))?;
            }
            if let Some(to) = to {
                df = df
                    .filter(col("day").lt_eq(lit(to.to_string())))
                    .map_err(|e| QueryError::Execution(e.to_string()))?;
            }
        }
        if t.partitioned && !day_column {
            let keep: Vec<String> =
                df.schema().fields().iter().map(|f| f.name().clone()).filter(|c| c != "day").collect();
            let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
            df = df.select_columns(&keep).map_err(|e| QueryError::Execution(e.to_string()))?;
        }
        let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
        let mut stream = df.execute_stream().await.map_err(|e| QueryError::Execution(e.to_string()))?;
        let file = tempfile::Builder::new()
            .prefix("ccmart-export-")
            .suffix(".parquet")
            .tempfile()
            .map_err(|e| QueryError::Execution(e.to_string()))?;
        let handle = file.reopen().map_err(|e| QueryError::Execution(e.to_string()))?;
        let mut w = ArrowWriter::try_new(handle, schema, Some(parquet_props()))
            .map_err(|e| QueryError::Execution(e.to_string()))?;
        let mut rows = 0;
        while let Some(b) = stream.next().await {
            let b = b.map_err(|e| QueryError::Execution(e.to_string()))?;
            rows += b.num_rows();
            w.write(&b).map_err(|e| QueryError::Execution(e.to_string()))?;
        }
        w.close().map_err(|e| QueryError::Execution(e.to_string()))?;
        Ok(ParquetExport { file, rows })
    }
}
