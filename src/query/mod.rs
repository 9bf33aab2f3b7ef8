//! Read-only SQL over one pinned mart version (Apache DataFusion).
//!
//! Each published mart version gets one DataFusion context whose tables are opened at exactly the Delta versions
//! the catalog recorded, so a query sees facts and dimensions of one cycle, however many cycles publish while it
//! runs. Statements other than queries (DDL, DML, COPY, SET) are refused before planning; results are bounded in
//! rows, memory and time.

pub mod diagnose;
pub mod digest;
pub mod gate;
pub mod guard;
pub mod pg_catalog;
pub mod pg_functions;
pub mod pg_rewrite;
pub mod postgres;
pub mod reports;
pub mod snapshot_files;
pub mod system;
pub mod visibility;
pub mod workers;

use crate::mart::Mart;
use crate::staging::MartSnapshot;
use crate::transform::schema::MART_TABLES;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::error::DataFusionError;
use datafusion::execution::cache::cache_manager::{CacheManager, CacheManagerConfig};
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::object_store::{ObjectStoreRegistry, ObjectStoreUrl};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};

/// Default largest number of rows a query returns.
pub const DEFAULT_MAX_ROWS: usize = 100_000;
/// Default time limit of one query.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;
/// Default memory limit of query execution (shared by concurrent queries).
pub const DEFAULT_MEMORY_LIMIT_MB: usize = 1024;
/// Default largest answer size.
pub const DEFAULT_MAX_RESULT_MB: usize = 64;
/// Default number of queries executing at once.
pub const DEFAULT_MAX_CONCURRENT: usize = 4;
/// Default number of queries waiting for a slot before new ones are turned away.
pub const DEFAULT_MAX_QUEUED: usize = 32;
/// Default disk space queries may spill to.
pub const DEFAULT_SPILL_LIMIT_MB: u64 = 10 * 1024;

/// Limits applied to every query.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryLimits {
    /// Largest number of rows returned; more are cut off and the answer says so.
    pub max_rows: usize,
    /// Time limit per query, seconds.
    pub timeout_secs: u64,
    /// Memory for query execution, MiB, shared by all running queries; sorts, joins and aggregates spill to disk
    /// beyond it.
    pub memory_limit_mb: usize,
    /// Largest answer, MiB (in memory, Arrow); more rows are cut off and the answer says so.
    pub max_result_mb: usize,
    /// Queries executing at once (HTTP and PostgreSQL protocol together).
    pub max_concurrent: usize,
    /// Queries waiting for a slot; beyond this, new queries are refused at once (HTTP 503 with `Retry-After`).
    pub max_queued: usize,
    /// Disk space for spill files, MiB (in `<data_dir>/tmp/spill`); a query needing more fails.
    pub spill_limit_mb: u64,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            max_rows: DEFAULT_MAX_ROWS,
            timeout_secs: DEFAULT_TIMEOUT_SECS,
            memory_limit_mb: DEFAULT_MEMORY_LIMIT_MB,
            max_result_mb: DEFAULT_MAX_RESULT_MB,
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            max_queued: DEFAULT_MAX_QUEUED,
            spill_limit_mb: DEFAULT_SPILL_LIMIT_MB,
        }
    }
}

/// Why a query was refused or failed. `code()` is the stable machine-readable name used by the HTTP API.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The SQL does not parse.
    #[error("syntax error: {0}")]
    Syntax(String),
    /// The statement is not a read-only query.
    #[error("only read-only queries are allowed: {0}")]
    ReadOnly(String),
    /// The statement's own values failed (overflow, division by zero, a value that does not fit its type).
    #[error("invalid query: {message}")]
    Data {
        /// PostgreSQL's SQLSTATE for it (22003, 22012).
        sqlstate: &'static str,
        /// What failed.
        message: String,
    },
    /// The statement reads what only operators may read (see [`visibility`]).
    #[error("{0}")]
    Forbidden(String),
    /// The statement is too large or nests too deeply to be planned safely (see [`gate`]).
    #[error("statement too complex: {0}")]
    TooComplex(String),
    /// A name the statement uses does not exist, or is ambiguous (see [`diagnose`]).
    #[error("{message}{}", hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default())]
    Undefined {
        /// PostgreSQL's SQLSTATE: 42P01 table, 42703 column, 42883 function, 42702 ambiguous column, 42704 setting.
        sqlstate: &'static str,
        /// What does not exist, as PostgreSQL words it.
        message: String,
        /// The closest existing names, when any is close.
        hint: Option<String>,
    },
    /// A value given to a setting or conversion is not one it takes (22023), e.g. an unknown time zone.
    #[error("{0}")]
    InvalidParameter(String),
    /// Planning failed (type mismatch, unsupported construct).
    #[error("invalid query: {0}")]
    Invalid(String),
    /// Execution failed.
    #[error("query failed: {0}")]
    Execution(String),
    /// A resource bound was hit: the memory or spill limit, or a size bound on generated values or constants.
    #[error("query failed: {0}")]
    Exhausted(String),
    /// The time limit was reached.
    #[error("query exceeded the time limit of {0} s")]
    Timeout(u64),
    /// Nothing has been published yet, or the requested version is unknown.
    #[error("{0}")]
    NoSnapshot(String),
    /// The mart could not be opened at the snapshot.
    #[error("mart unavailable: {0}")]
    Mart(String),
    /// Every query slot is busy and the queue is full (or the wait for a slot outlasted the time limit).
    #[error("the appliance is busy: {running} queries running and {queued} waiting; retry in a moment")]
    Busy {
        /// Queries running.
        running: usize,
        /// Queries waiting.
        queued: usize,
    },
}

impl QueryError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            QueryError::Syntax(_) => "syntax_error",
            QueryError::ReadOnly(_) => "read_only",
            QueryError::TooComplex(_) => "too_complex",
            QueryError::Forbidden(_) => "forbidden",
            QueryError::Data { .. } | QueryError::Undefined { .. } | QueryError::InvalidParameter(_) => "invalid_query",
            QueryError::Invalid(_) => "invalid_query",
            QueryError::Execution(_) | QueryError::Exhausted(_) => "execution_error",
            QueryError::Timeout(_) => "timeout",
            QueryError::NoSnapshot(_) => "no_snapshot",
            QueryError::Mart(_) => "mart_unavailable",
            QueryError::Busy { .. } => "busy",
        }
    }

    /// True when the client sent something wrong (HTTP 400), false for server-side conditions.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            QueryError::Syntax(_)
                | QueryError::ReadOnly(_)
                | QueryError::TooComplex(_)
                | QueryError::Invalid(_)
                | QueryError::Data { .. }
                | QueryError::Undefined { .. }
                | QueryError::InvalidParameter(_)
        )
    }

    /// PostgreSQL's SQLSTATE for this error, the same in the wire protocol and in HTTP error answers.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            QueryError::Busy { .. } => "53000",
            QueryError::Timeout(_) => "57014",
            QueryError::NoSnapshot(_) => "55000",
            QueryError::ReadOnly(_) => "25006",
            QueryError::TooComplex(_) => "54001",
            QueryError::Data { sqlstate, .. } | QueryError::Undefined { sqlstate, .. } => sqlstate,
            QueryError::InvalidParameter(_) => "22023",
            QueryError::Exhausted(_) => "53200",
            QueryError::Syntax(_) => "42601",
            QueryError::Forbidden(_) => "42501",
            QueryError::Invalid(_) => "42000",
            QueryError::Execution(_) | QueryError::Mart(_) => "XX000",
        }
    }
}

fn worker_lost() -> QueryError {
    QueryError::Execution("the query stopped unexpectedly on its SQL thread (an engine fault; see the log)".into())
}

fn mart_err(e: impl std::error::Error + 'static) -> QueryError {
    QueryError::Mart(crate::model::report(&e))
}

/// The kind of a DataFusion error, for callers that report it (HTTP status, SQLSTATE).
pub(crate) fn classify(e: DataFusionError) -> QueryError {
    if let DataFusionError::External(inner) = e.find_root() {
        if let Some(QueryError::Timeout(secs)) = inner.downcast_ref::<QueryError>() {
            return QueryError::Timeout(*secs);
        }
        if let Some(unknown) = inner.downcast_ref::<postgres::UnknownSetting>() {
            return QueryError::Undefined { sqlstate: "42704", message: unknown.to_string(), hint: None };
        }
        if let Some(zone) = inner.downcast_ref::<postgres::InvalidTimeZone>() {
            return QueryError::InvalidParameter(zone.to_string());
        }
        if let Some(template) = inner.downcast_ref::<postgres::UnsupportedTemplate>() {
            return QueryError::Data { sqlstate: "0A000", message: template.to_string() };
        }
    }
    let msg = e.to_string();
    match e.find_root() {
        DataFusionError::SQL(parse, _) => QueryError::Syntax(syntax_message(parse)),
        DataFusionError::ResourcesExhausted(_) => QueryError::Exhausted(msg),
        DataFusionError::Plan(_) | DataFusionError::SchemaError(..) | DataFusionError::NotImplemented(_) => {
            QueryError::Invalid(msg)
        }
        DataFusionError::ArrowError(a, _) if matches!(**a, datafusion::arrow::error::ArrowError::DivideByZero) => {
            QueryError::Data { sqlstate: "22012", message: "division by zero".into() }
        }
        DataFusionError::ArrowError(a, _) if visibility::is_data_error(a) => {
            QueryError::Data { sqlstate: "22003", message: format!("value out of range: {a}") }
        }
        _ => QueryError::Execution(msg),
    }
}

/// What the SQL parser found wrong, without its "sql parser error" prefix (the error's kind says it).
pub fn syntax_message(e: &datafusion::sql::sqlparser::parser::ParserError) -> String {
    use datafusion::sql::sqlparser::parser::ParserError;
    match e {
        ParserError::ParserError(m) | ParserError::TokenizerError(m) => m.clone(),
        ParserError::RecursionLimitExceeded => "the statement nests too deeply to be parsed".into(),
    }
}

/// Parses `sql` (in the session's dialect) as exactly one statement. Several are refused by count, as the gate
/// refuses anything but one query — not by reading the text of DataFusion's own refusal.
fn one_statement(
    state: &datafusion::execution::SessionState,
    sql: &str,
) -> Result<datafusion::sql::parser::Statement, QueryError> {
    let options = state.config().options();
    let name = &options.sql_parser.dialect;
    let dialect = datafusion::sql::sqlparser::dialect::dialect_from_str(name)
        .ok_or_else(|| QueryError::Invalid(format!("unsupported SQL dialect {name}")))?;
    let mut statements = datafusion::sql::parser::DFParserBuilder::new(sql)
        .with_dialect(dialect.as_ref())
        .with_recursion_limit(options.sql_parser.recursion_limit.get())
        .build()
        .and_then(|mut parser| parser.parse_statements())
        .map_err(classify)?;
    match (statements.pop_front(), statements.len()) {
        (Some(statement), 0) => Ok(statement),
        (Some(_), more) => {
            Err(QueryError::ReadOnly(format!("{} statements in one request; send one query at a time", more + 1)))
        }
        (None, _) => Err(QueryError::Invalid("no SQL statement was given".into())),
    }
}

/// A query's answer.
#[derive(Debug, Clone)]
pub struct QueryResult {
    /// Result schema.
    pub schema: SchemaRef,
    /// Result rows.
    pub batches: Vec<RecordBatch>,
    /// Rows returned.
    pub row_count: usize,
    /// True when rows beyond the limit were cut off.
    pub truncated: bool,
    /// Mart version queried.
    pub mart_version: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// The query's admission slot when the caller asked to keep it ([`QueryEngine::run_held`]): held until the
    /// answer has been sent, so answers waiting for slow clients count against `max_concurrent`, not beside it.
    pub permit: Option<Arc<QueryPermit>>,
}

/// Admission control shared by every query path: at most `max_concurrent` run, at most `max_queued` wait.
#[derive(Debug)]
struct QueryGate {
    admitted: Arc<Semaphore>,
    running: Arc<Semaphore>,
    limits: QueryLimits,
}

/// A query's slot; dropping it lets the next waiting query run.
#[derive(Debug)]
pub struct QueryPermit {
    _admitted: OwnedSemaphorePermit,
    _running: OwnedSemaphorePermit,
}

/// The catalog tables shared by every context (static data parsed once).
fn pg_static_tables(
) -> Result<Arc<datafusion_postgres::datafusion_pg_catalog::pg_catalog::PgCatalogStaticTables>, QueryError> {
    use datafusion_postgres::datafusion_pg_catalog::pg_catalog::PgCatalogStaticTables;
    static TABLES: std::sync::OnceLock<Arc<PgCatalogStaticTables>> = std::sync::OnceLock::new();
    if let Some(t) = TABLES.get() {
        return Ok(t.clone());
    }
    let t =
        Arc::new(PgCatalogStaticTables::try_new().map_err(|e| QueryError::Mart(format!("PostgreSQL catalog: {e}")))?);
    Ok(TABLES.get_or_init(|| t).clone())
}

/// The descriptions of PostgreSQL's own objects (`pg_description`), for `obj_description` (built once).
fn system_descriptions() -> Result<Arc<pg_functions::Descriptions>, QueryError> {
    static DESCRIPTIONS: std::sync::OnceLock<Arc<pg_functions::Descriptions>> = std::sync::OnceLock::new();
    if let Some(d) = DESCRIPTIONS.get() {
        return Ok(d.clone());
    }
    let d = Arc::new(pg_functions::Descriptions::from_batches(pg_static_tables()?.pg_description.data()));
    Ok(DESCRIPTIONS.get_or_init(|| d).clone())
}

/// The schema of views for BI tools: each mart table with its epoch-second times also as `timestamptz`.
pub const BI_SCHEMA: &str = "bi";

/// The `bi` schema: a view per mart table, `SELECT *` plus a `timestamptz` beside each epoch-second column
/// (`start_ts` → `start_time`, `end_ts` → `end_time`, `added_ts` → `added_time`; `DATE_TIME` also gets
/// `interval_start`), so a BI tool pointed at `bi` sees times it can put on an axis and filter by date, while
/// the tables keep the integers the vendor's layout has. The views are read through like the tables (no copy).
async fn install_bi_views(ctx: &SessionContext) -> Result<(), QueryError> {
    use datafusion::catalog::MemorySchemaProvider;
    let catalog = ctx.catalog("ccmart").ok_or_else(|| QueryError::Mart("catalog ccmart is missing".into()))?;
    let schema = Arc::new(MemorySchemaProvider::new());
    catalog.register_schema(BI_SCHEMA, schema.clone()).map_err(mart_err)?;
    for t in MART_TABLES {
        let sql = bi_view_sql(t);
        let plan = ctx.state().create_logical_plan(&sql).await.map_err(mart_err)?;
        let view = datafusion::catalog::view::ViewTable::new(plan, Some(sql));
        datafusion::catalog::SchemaProvider::register_table(schema.as_ref(), t.name.to_string(), Arc::new(view))
            .map_err(mart_err)?;
    }
    Ok(())
}

/// The definition of `bi.<table>`.
pub fn bi_view_sql(t: &crate::transform::schema::MartTable) -> String {
    let mut extra: Vec<String> = t
        .columns
        .iter()
        .filter_map(|(c, _)| c.strip_suffix("_ts").map(|stem| format!("to_timestamp({c}) AS {stem}_time")))
        .collect();
    if t.name == "date_time" {
        extra.push("to_timestamp(date_time_key) AS interval_start".into());
    }
    let extra: String = extra.iter().map(|e| format!(", {e}")).collect();
    format!("SELECT *{extra} FROM public.{}", t.name)
}

/// The only object store a snapshot's queries can reach: the snapshot's own files, read-only. DataFusion's default
/// registry also serves `file://`, through which any statement that writes (`COPY … TO`, a listing table's insert)
/// reaches every file the appliance can — the statement gate refuses those, and this makes sure nothing else can.
#[derive(Debug)]
struct SnapshotOnlyRegistry {
    url: url::Url,
    store: Arc<dyn object_store::ObjectStore>,
}

impl ObjectStoreRegistry for SnapshotOnlyRegistry {
    fn register_store(
        &self,
        _url: &url::Url,
        _store: Arc<dyn object_store::ObjectStore>,
    ) -> Option<Arc<dyn object_store::ObjectStore>> {
        // Registering is refused by keeping the registry as it is; nothing in ccmart registers a store later.
        None
    }

    fn get_store(&self, url: &url::Url) -> datafusion::error::Result<Arc<dyn object_store::ObjectStore>> {
        if url.scheme() == self.url.scheme() && url.host_str() == self.url.host_str() {
            Ok(self.store.clone())
        } else {
            Err(DataFusionError::Plan(format!(
                "no object store for {url}: queries read only the mart snapshot, never other files"
            )))
        }
    }
}

/// Runs queries against mart snapshots.
#[derive(Clone)]
pub struct QueryEngine {
    mart: Mart,
    limits: QueryLimits,
    contexts: Arc<Mutex<Vec<(u64, SessionContext)>>>,
    store: Option<Arc<crate::staging::Store>>,
    gate: Arc<QueryGate>,
    spill_dir: Option<std::path::PathBuf>,
    runtime: Arc<std::sync::OnceLock<Arc<RuntimeEnv>>>,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine").field("mart", &self.mart).field("limits", &self.limits).finish_non_exhaustive()
    }
}

/// Number of mart versions whose contexts are kept open.
const CONTEXT_CACHE: usize = 4;

impl QueryEngine {
    /// An engine over `mart` with `limits`.
    pub fn new(mart: Mart, limits: QueryLimits) -> Self {
        let gate = QueryGate {
            admitted: Arc::new(Semaphore::new(limits.max_concurrent.max(1) + limits.max_queued)),
            running: Arc::new(Semaphore::new(limits.max_concurrent.max(1))),
            limits,
        };
        QueryEngine {
            mart,
            limits,
            contexts: Arc::new(Mutex::new(Vec::new())),
            store: None,
            gate: Arc::new(gate),
            spill_dir: None,
            runtime: Arc::new(std::sync::OnceLock::new()),
        }
    }

    /// Spills sorts, joins and aggregates that exceed the memory limit into `dir` (bounded by
    /// `spill_limit_mb`) instead of the OS temp directory. Call before the first query.
    pub fn with_spill_dir(mut self, dir: std::path::PathBuf) -> Self {
        self.spill_dir = Some(dir);
        self
    }

    /// Waits for a query slot: refused at once with [`QueryError::Busy`] when the queue is full, and when no slot
    /// frees up within the query time limit.
    pub async fn admit(&self) -> Result<QueryPermit, QueryError> {
        let g = &self.gate;
        let busy = || {
            let running = g.limits.max_concurrent.max(1) - g.running.available_permits();
            let total = g.limits.max_concurrent.max(1) + g.limits.max_queued;
            QueryError::Busy { running, queued: (total - g.admitted.available_permits()).saturating_sub(running) }
        };
        let admitted = g.admitted.clone().try_acquire_owned().map_err(|_| busy())?;
        let wait = Duration::from_secs(self.limits.timeout_secs.max(1));
        let running = match tokio::time::timeout(wait, g.running.clone().acquire_owned()).await {
            Ok(Ok(p)) => p,
            _ => return Err(busy()),
        };
        Ok(QueryPermit { _admitted: admitted, _running: running })
    }

    /// The runtime shared by every snapshot's context, so the memory and spill limits hold for the appliance as a
    /// whole, not per mart version.
    fn runtime(&self) -> Result<Arc<RuntimeEnv>, QueryError> {
        if let Some(r) = self.runtime.get() {
            return Ok(r.clone());
        }
        let mut disk =
            DiskManagerBuilder::default().with_max_temp_directory_size(self.limits.spill_limit_mb * 1024 * 1024);
        if let Some(dir) = &self.spill_dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| QueryError::Mart(format!("cannot create the spill directory {}: {e}", dir.display())))?;
            disk = disk.with_mode(DiskManagerMode::Directories(vec![dir.clone()]));
        }
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(self.limits.memory_limit_mb.max(16) * 1024 * 1024)))
            .with_disk_manager_builder(disk)
            .build_arc()
            .map_err(|e| QueryError::Mart(e.to_string()))?;
        Ok(self.runtime.get_or_init(|| runtime).clone())
    }

    /// The runtime of one snapshot's context: the appliance's memory pool, spill space and Parquet footer cache,
    /// with an object store that lists exactly the files of the snapshot's Delta versions (see
    /// [`snapshot_files`]) and file-list and statistics caches of its own (they are keyed by table name, which
    /// every version shares).
    async fn snapshot_runtime(&self, snapshot: &MartSnapshot) -> Result<Arc<RuntimeEnv>, QueryError> {
        let shared = self.runtime()?;
        let mut files = snapshot_files::SnapshotFiles::new(self.mart.root()).map_err(mart_err)?;
        for t in MART_TABLES {
            let version = snapshot.tables.get(t.name).copied().unwrap_or(0);
            for file in self.mart.files_at(t.name, version).await.map_err(mart_err)? {
                files.add(t.name, &file.path, file.size, file.modified).map_err(mart_err)?;
            }
        }
        let caches = CacheManagerConfig::default()
            .with_file_metadata_cache(Some(shared.cache_manager.get_file_metadata_cache()))
            .with_metadata_cache_limit(shared.cache_manager.get_metadata_cache_limit());
        let mut runtime = (*shared).clone();
        runtime.cache_manager = CacheManager::try_new(&caches).map_err(mart_err)?;
        let url = url::Url::parse(snapshot_files::SNAPSHOT_STORE_URL).map_err(mart_err)?;
        runtime.object_store_registry = Arc::new(SnapshotOnlyRegistry { url, store: Arc::new(files) });
        Ok(Arc::new(runtime))
    }

    /// Also serves the system tables (`ccmart_merge_decisions`, `ccmart_source_audit`) from `store`.
    pub fn with_system_tables(mut self, store: Arc<crate::staging::Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// The limits in force.
    pub fn limits(&self) -> QueryLimits {
        self.limits
    }

    /// The DataFusion context of a snapshot (tables opened at the snapshot's Delta versions).
    pub async fn context(&self, snapshot: &MartSnapshot) -> Result<SessionContext, QueryError> {
        let mut cache = self.contexts.lock().await;
        if let Some((_, ctx)) = cache.iter().find(|(v, _)| *v == snapshot.version) {
            return Ok(ctx.clone());
        }
        let runtime = self.snapshot_runtime(snapshot).await?;
        let mut config =
            SessionConfig::new().with_information_schema(true).with_default_catalog_and_schema("ccmart", "public");
        // A recursive CTE can grow without bound inside one query; reports do not need them.
        config.options_mut().execution.enable_recursive_ctes = false;
        // Times are instants: `now()`, `timestamptz` and `to_timestamp` carry a zone, as in PostgreSQL.
        config.options_mut().execution.time_zone = Some(postgres::DEFAULT_TIME_ZONE.to_string());
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        let store_url = ObjectStoreUrl::parse(snapshot_files::SNAPSHOT_STORE_URL).map_err(mart_err)?;
        for t in MART_TABLES {
            let url = ListingTableUrl::parse(format!("{store_url}{}/", t.name)).map_err(mart_err)?;
            let mut options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
            let mut file_fields = crate::mart::arrow_schema(t).fields().to_vec();
            if t.partitioned {
                file_fields.retain(|f| f.name() != "day");
                options = options.with_table_partition_cols(vec![("day".to_string(), DataType::Utf8)]);
            }
            // Text is read as string views, DataFusion's faster representation (and what the Delta scan produced).
            let file_fields: Vec<Field> = file_fields
                .iter()
                .map(|f| match f.data_type() {
                    DataType::Utf8 => f.as_ref().clone().with_data_type(DataType::Utf8View),
                    _ => f.as_ref().clone(),
                })
                .collect();
            let config = ListingTableConfig::new(url)
                .with_listing_options(options)
                .with_schema(Arc::new(Schema::new(file_fields)));
            let table = ListingTable::try_new(config).map_err(mart_err)?;
            ctx.register_table(t.name, Arc::new(table)).map_err(mart_err)?;
        }
        if let Some(store) = &self.store {
            for (name, kind) in system::SYSTEM_TABLES {
                let provider = Arc::new(system::SystemTable::new(*kind, store.clone()));
                ctx.register_table(*name, provider).map_err(|e| QueryError::Mart(e.to_string()))?;
            }
        }
        // PostgreSQL's catalog (pg_class, pg_namespace, ...) and functions (current_schema(), format_type(), ...), so
        // BI tools that discover tables through them work over the wire protocol, and HTTP users can ask the same
        // questions.
        datafusion_postgres::datafusion_pg_catalog::setup_pg_catalog(
            &ctx,
            "ccmart",
            datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider,
        )
        .map_err(|e| QueryError::Mart(format!("PostgreSQL catalog: {e}")))?;
        postgres::install(&ctx);
        pg_functions::install(&ctx, system_descriptions()?);
        // The views plan with ccmart's `to_timestamp`; the catalog lists them, so it comes after them.
        install_bi_views(&ctx).await?;
        pg_catalog::install(&ctx, pg_static_tables()?, &postgres::default_settings()).await?;
        // Last, so that every scalar function the context has by now (the catalog's too) is size-bounded.
        guard::install(&ctx).map_err(|e| QueryError::Mart(e.to_string()))?;
        cache.push((snapshot.version, ctx.clone()));
        if cache.len() > CONTEXT_CACHE {
            cache.remove(0);
        }
        Ok(ctx)
    }

    /// Runs one read-only statement against `snapshot`.
    pub async fn run(&self, snapshot: &MartSnapshot, sql: &str) -> Result<QueryResult, QueryError> {
        self.run_with_params(snapshot, sql, None).await
    }

    /// Runs one read-only statement with named placeholder values (`$name`), bound as values.
    ///
    /// The statement passes the [`gate`] and is planned and run on the SQL threads ([`workers`]); the time limit
    /// covers all of it, and work still running when it passes is abandoned.
    pub async fn run_with_params(
        &self,
        snapshot: &MartSnapshot,
        sql: &str,
        params: Option<std::collections::HashMap<String, datafusion::scalar::ScalarValue>>,
    ) -> Result<QueryResult, QueryError> {
        let mut result = self.run_held(snapshot, sql, params, false).await?;
        result.permit = None;
        Ok(result)
    }

    /// [`Self::run_with_params`], with the query's slot kept in [`QueryResult::permit`]: for answers that are sent
    /// after this returns (HTTP), so they count against `max_concurrent` until they are.
    /// With `reader`, a statement that reads what only operators may ([`visibility`]) is refused.
    pub async fn run_held(
        &self,
        snapshot: &MartSnapshot,
        sql: &str,
        params: Option<std::collections::HashMap<String, datafusion::scalar::ScalarValue>>,
        reader: bool,
    ) -> Result<QueryResult, QueryError> {
        self.run_held_as(snapshot, sql, params, reader, &SessionSettings::default()).await
    }

    /// [`QueryEngine::run_held`] in a session with `settings` (an HTTP request's time zone): they apply to this
    /// statement only, never to the shared context of the mart version.
    pub async fn run_held_as(
        &self,
        snapshot: &MartSnapshot,
        sql: &str,
        params: Option<std::collections::HashMap<String, datafusion::scalar::ScalarValue>>,
        reader: bool,
        settings: &SessionSettings,
    ) -> Result<QueryResult, QueryError> {
        let started = Instant::now();
        gate::check_text(sql)?;
        let permit = self.admit().await?;
        let ctx = Self::session_context(&self.context(snapshot).await?, settings);
        let limit = self.limits.max_rows;
        let max_bytes = self.limits.max_result_mb.max(1).saturating_mul(1024 * 1024);
        let timeout = Duration::from_secs(self.limits.timeout_secs.max(1));
        let sql = sql.to_owned();
        let work = async move {
            let state = ctx.state();
            let mut statement = one_statement(&state, &sql)?;
            gate::check_df_statement(&statement)?;
            if let datafusion::sql::parser::Statement::Statement(s) = &mut statement {
                postgres::rewrite(s);
            }
            let plan = match state.statement_to_plan(statement.clone()).await {
                Ok(plan) => plan,
                Err(e) => return Err(diagnose::planning_error(&state, &statement, e)),
            };
            gate::check_plan(&plan)?;
            if reader {
                visibility::reader_may_read(&plan).map_err(|e| QueryError::Forbidden(e.to_string()))?;
            }
            let mut df = ctx.execute_logical_plan(plan).await.map_err(classify)?;
            if let Some(p) = params {
                df = df.with_param_values(p).map_err(classify)?;
            }
            let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
            let optimized = ctx.state().optimize(df.logical_plan()).map_err(classify)?;
            guard::check_constants(&optimized).map_err(classify)?;
            // EXPLAIN [ANALYZE] must stay the root of its plan; its answer is small anyway.
            let explain = matches!(
                df.logical_plan(),
                datafusion::logical_expr::LogicalPlan::Explain(_) | datafusion::logical_expr::LogicalPlan::Analyze(_)
            );
            if !explain {
                df = df.limit(0, Some(limit.saturating_add(1))).map_err(classify)?;
            }
            let mut stream = df.execute_stream().await.map_err(classify)?;
            let mut batches = Vec::new();
            let mut rows = 0usize;
            let mut truncated = false;
            let mut bytes = 0usize;
            while let Some(b) = stream.next().await {
                let b = b.map_err(classify)?;
                let mut take = b.num_rows().min(limit - rows.min(limit));
                let size = b.get_array_memory_size();
                if bytes.saturating_add(size) > max_bytes && b.num_rows() > 0 {
                    // Keep the rows that fit (estimated by average row size), then stop.
                    let fit =
                        (max_bytes.saturating_sub(bytes) as u128 * b.num_rows() as u128 / size.max(1) as u128) as usize;
                    take = take.min(fit);
                    truncated = true;
                }
                bytes = bytes.saturating_add(size);
                if take < b.num_rows() {
                    truncated = true;
                }
                if take > 0 {
                    batches.push(b.slice(0, take));
                    rows += take;
                }
                if truncated {
                    break;
                }
            }
            Ok::<_, QueryError>((schema, batches, rows, truncated))
        };
        let job = workers::spawn(work).map_err(|e| QueryError::Execution(e.to_string()))?;
        let (schema, batches, row_count, truncated) = tokio::time::timeout(timeout, job.join())
            .await
            .map_err(|_| QueryError::Timeout(timeout.as_secs()))?
            .ok_or_else(worker_lost)??;
        Ok(QueryResult {
            schema,
            batches,
            row_count,
            truncated,
            mart_version: snapshot.version,
            elapsed: started.elapsed(),
            permit: Some(Arc::new(permit)),
        })
    }
}

/// The settings of one client session that change answers (PostgreSQL's `SET TimeZone`, …). They live with the
/// session and are applied to each of its statements; nothing one session sets reaches another, or the shared
/// per-version context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSettings {
    /// IANA zone or `±HH:MM` offset of `now()`, `timestamptz` values and time-zone-aware conversions.
    pub time_zone: String,
    /// The login name (`current_user`); `None` outside a protocol session.
    pub user: Option<String>,
    /// Other settings the session changed with `SET` (lower-case names), for `current_setting`.
    pub values: std::collections::BTreeMap<String, String>,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings { time_zone: postgres::DEFAULT_TIME_ZONE.to_string(), user: None, values: Default::default() }
    }
}

impl SessionSettings {
    /// Checks a time zone as `SET TIME ZONE` receives it: an IANA name (`Europe/Berlin`), `UTC`, or an offset
    /// (`+01:00`). Returns the value to store.
    pub fn parse_time_zone(value: &str) -> Result<String, String> {
        let v = value.trim();
        let normalized = match v.to_ascii_uppercase().as_str() {
            "UTC" | "GMT" | "Z" | "ZULU" | "UCT" | "UNIVERSAL" | "ETC/UTC" => return Ok("UTC".into()),
            _ => v.to_string(),
        };
        normalized
            .parse::<datafusion::arrow::array::timezone::Tz>()
            .map(|_| normalized.clone())
            .map_err(|_| format!("invalid value for parameter \"TimeZone\": \"{v}\""))
    }
}

/// A statement [`QueryEngine::plan_statement`] accepted.
#[derive(Debug)]
pub struct PlannedStatement {
    /// The statement as text.
    pub text: String,
    /// The statement.
    pub statement: datafusion::sql::sqlparser::ast::Statement,
    /// Its logical plan, checked by the gate.
    pub plan: datafusion::logical_expr::LogicalPlan,
}

/// A running query's batches, produced on the SQL threads. Dropping it stops the query.
pub struct BatchStream {
    schema: SchemaRef,
    rx: tokio::sync::mpsc::Receiver<Result<RecordBatch, DataFusionError>>,
    _job: workers::Job<()>,
    /// Past it, the stream ends with [`QueryError::Timeout`] (seconds of the limit), whatever is still buffered.
    deadline: Option<(std::pin::Pin<Box<tokio::time::Sleep>>, u64)>,
}

impl BatchStream {
    /// The schema of the batches.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

impl futures::Stream for BatchStream {
    type Item = Result<RecordBatch, DataFusionError>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        if let Some((sleep, secs)) = &mut self.deadline {
            if std::future::Future::poll(sleep.as_mut(), cx).is_ready() {
                let timeout = QueryError::Timeout(*secs);
                self.deadline = None;
                self.rx.close();
                while self.rx.try_recv().is_ok() {}
                return std::task::Poll::Ready(Some(Err(DataFusionError::External(Box::new(timeout)))));
            }
        }
        self.rx.poll_recv(cx)
    }
}

impl QueryEngine {
    /// The context one statement of a session runs in: the snapshot's tables and functions from `base`, the
    /// session's `settings` on a copy of the configuration (so setting them changes nothing shared).
    pub fn session_context(base: &SessionContext, settings: &SessionSettings) -> SessionContext {
        let mut state = base.state();
        if state.config().options().execution.time_zone.as_deref() != Some(settings.time_zone.as_str()) {
            state.config_mut().options_mut().execution.time_zone = Some(settings.time_zone.clone());
            // Functions that read the configuration when they are made (`now()`'s zone) are made again, as
            // DataFusion's own `SET` does.
            let options = state.config().options().clone();
            let updated: Vec<_> = state
                .scalar_functions()
                .values()
                .filter_map(|f| f.inner().with_updated_config(&options).map(Arc::new))
                .collect();
            for f in updated {
                let _ = datafusion::execution::FunctionRegistry::register_udf(&mut state, f);
            }
        }
        postgres::install_session(&mut state, settings);
        SessionContext::new_with_state(state)
    }

    /// Plans a statement a PostgreSQL-dialect parser made, on the SQL threads and through the [`gate`]: only
    /// read-only queries (or `EXPLAIN` of one) come back as a plan, with the statement and its text (made there
    /// too: printing a deep statement recurses like planning it).
    pub async fn plan_statement(
        ctx: SessionContext,
        statement: datafusion::sql::sqlparser::ast::Statement,
    ) -> Result<PlannedStatement, QueryError> {
        let job = workers::spawn(async move {
            gate::check_statement(&statement)?;
            let text = statement.to_string();
            let mut rewritten = statement.clone();
            postgres::rewrite(&mut rewritten);
            let state = ctx.state();
            let rewritten = datafusion::sql::parser::Statement::Statement(Box::new(rewritten));
            let plan = match state.statement_to_plan(rewritten.clone()).await {
                Ok(plan) => plan,
                Err(e) => return Err(diagnose::planning_error(&state, &rewritten, e)),
            };
            gate::check_plan(&plan)?;
            Ok(PlannedStatement { text, statement, plan })
        })
        .map_err(|e| QueryError::Execution(e.to_string()))?;
        job.join().await.ok_or_else(worker_lost)?
    }

    /// Starts a plan on the SQL threads: `plan` makes it there (binding parameters walks the plan, which recurses
    /// like planning), then it is checked again, optimised, its constants bounded ([`guard::check_constants`]),
    /// and executed batch by batch as the stream is read.
    pub async fn start(
        ctx: SessionContext,
        plan: impl FnOnce() -> Result<datafusion::logical_expr::LogicalPlan, QueryError> + Send + 'static,
    ) -> Result<BatchStream, QueryError> {
        Self::start_held(ctx, None, plan).await
    }

    /// [`Self::start`] for a query whose rows may wait long for their reader (a cursor): `held` is its query slot
    /// and deadline, with the time limit in seconds. Its work keeps the slot and ends at the deadline on its own,
    /// whether or not anyone reads, so an unread cursor cannot keep a slot or a SQL thread past the time limit;
    /// its stream then answers [`QueryError::Timeout`] (an `External` error that [`classify`] gives back).
    pub async fn start_held(
        ctx: SessionContext,
        held: Option<(Arc<QueryPermit>, tokio::time::Instant, u64)>,
        plan: impl FnOnce() -> Result<datafusion::logical_expr::LogicalPlan, QueryError> + Send + 'static,
    ) -> Result<BatchStream, QueryError> {
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let deadline = held.as_ref().map(|(_, at, secs)| (Box::pin(tokio::time::sleep_until(*at)), *secs));
        let job = workers::spawn(async move {
            match held {
                None => Self::produce(ctx, plan, tx, ready_tx).await,
                Some((_slot, at, _)) => {
                    let _ = tokio::time::timeout_at(at, Self::produce(ctx, plan, tx, ready_tx)).await;
                }
            }
        })
        .map_err(|e| QueryError::Execution(e.to_string()))?;
        let schema = ready_rx.await.map_err(|_| worker_lost())??;
        Ok(BatchStream { schema, rx, _job: job, deadline })
    }

    /// Plans, optimises, bounds and executes on the SQL threads, sending the schema to `ready_tx` and the batches
    /// to `tx` until the stream ends or nobody reads.
    async fn produce(
        ctx: SessionContext,
        plan: impl FnOnce() -> Result<datafusion::logical_expr::LogicalPlan, QueryError>,
        tx: tokio::sync::mpsc::Sender<Result<RecordBatch, DataFusionError>>,
        ready_tx: tokio::sync::oneshot::Sender<Result<SchemaRef, QueryError>>,
    ) {
        let prepared = async {
            let plan = plan()?;
            gate::check_plan(&plan)?;
            let state = ctx.state();
            let optimized = state.optimize(&plan).map_err(classify)?;
            guard::check_constants(&optimized).map_err(classify)?;
            let physical = state.query_planner().create_physical_plan(&optimized, &state).await.map_err(classify)?;
            datafusion::physical_plan::execute_stream(physical, ctx.task_ctx()).map_err(classify)
        }
        .await;
        let mut stream = match prepared {
            Ok(s) => s,
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        };
        if ready_tx.send(Ok(stream.schema())).is_err() {
            return;
        }
        while let Some(batch) = stream.next().await {
            if tx.send(batch).await.is_err() {
                return;
            }
        }
    }
}
