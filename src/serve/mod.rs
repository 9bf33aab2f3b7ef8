//! The HTTP API (axum): SQL queries in four formats, table list, status, health and Parquet export.
//! Every error answer is `{"error":{"code":..,"message":..}}` with a 4xx for client mistakes; the server stays up.

mod format;

pub use crate::model::status::{
    ApplianceStatus, CycleSummary, PairStatus, PairWait, PeerStatus, ReplicationStatus, SharedStatus,
};
use crate::model::wire::paths;
pub use crate::model::wire::{
    DigestList, DigestParams, ErrorBody, ErrorDetail, ExportParams, Health, QueryRequest, RowDigests,
};
use crate::query::{QueryEngine, QueryError};
use crate::staging::{MartSnapshot, Store};
use crate::transform::schema::{mart_table, ColumnKind, MART_TABLES};
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

pub use format::{OutputFormat, ParquetExport};
pub use listener::{HttpLimits, DEFAULT_HTTP_HEADER_TIMEOUT, DEFAULT_HTTP_SEND_TIMEOUT, DEFAULT_MAX_HTTP_CONNECTIONS};

pub mod admin;
pub mod auth;
pub mod listener;
pub mod metrics;
pub mod openapi;
pub mod page;
pub mod pgwire;
pub mod replication;
pub mod tls;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct ServeState {
    /// Catalog of mart versions.
    pub store: Arc<Store>,
    /// Query engine.
    pub engine: QueryEngine,
    /// Live status.
    pub status: SharedStatus,
    /// Sites for the operator calls.
    pub admin: admin::AdminAccess,
    /// Who may call what.
    pub tokens: auth::TokenRegistry,
    /// Operators' requests for maintenance now.
    pub maintenance: admin::MaintenanceTrigger,
    /// Role and epoch.
    pub fence: crate::replicate::fencing::SharedFence,
    /// The mart directory (served to the standby).
    pub mart_root: std::path::PathBuf,
    /// File hashes for replication manifests.
    pub hashes: crate::replicate::sync::HashCache,
    /// Where requests are counted.
    pub metrics: metrics::ApplianceMetrics,
}

/// An API error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// PostgreSQL's SQLSTATE, for query errors.
    sqlstate: Option<&'static str>,
}

impl ApiError {
    /// An error answer that is not a query's (no SQLSTATE).
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), sqlstate: None }
    }

    fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        let status = match &e {
            _ if e.is_client_error() => StatusCode::BAD_REQUEST,
            QueryError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            QueryError::NoSnapshot(_) | QueryError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            QueryError::Exhausted(_) => StatusCode::UNPROCESSABLE_ENTITY,
            QueryError::Forbidden(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError { status, code: e.code(), sqlstate: Some(e.sqlstate()), message: e.to_string() }
    }
}

/// axum's `Query` extractor with its rejection (a malformed or mistyped query string) answered as the API's error
/// JSON (400, code `bad_parameter`) instead of axum's plain-text body.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        <Query<T> as axum::extract::FromRequestParts<S>>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|r| ApiError::bad_request("bad_parameter", r.body_text()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                sqlstate: self.sqlstate.map(str::to_string),
            },
        };
        let mut r = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        r
    }
}

/// Builds the router.
pub fn router(state: ServeState) -> Router {
    let metrics = state.metrics.clone();
    let tokens = state.tokens.clone();
    Router::new()
        .route(paths::STATUS_PAGE, get(page::status_page))
        .route(paths::HEALTHZ, get(healthz))
        .route(paths::STATUS, get(status))
        .route(paths::TABLES, get(tables))
        .route(paths::QUERY, post(query))
        .route(paths::EXPORT, get(export))
        .route(paths::REPORTS, get(reports))
        .route(paths::REPORT, get(run_report))
        .route(paths::DIGEST, get(digest))
        .route(paths::DIGEST_ROWS, get(digest_rows))
        .route(paths::ADMIN_SOURCE, post(admin::change_source))
        .route(paths::ADMIN_MAINTENANCE, post(admin::request_maintenance))
        .route(paths::ADMIN_PROMOTE, post(admin::promote))
        .route(paths::ADMIN_DEMOTE, post(admin::demote))
        .route(paths::REPLICATION_FENCE, get(admin::fence))
        .route(paths::REPLICATION_MANIFEST, get(replication::manifest))
        .route(paths::REPLICATION_FILE, get(replication::file))
        .route(paths::OPENAPI, get(openapi::openapi_json))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(300),
        ))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(tokens, auth::require_token))
        .layer(axum::middleware::from_fn_with_state(metrics, metrics::track_requests))
}

fn snapshot(state: &ServeState, version: Option<u64>) -> Result<MartSnapshot, ApiError> {
    let s = match version {
        Some(v) => state.store.snapshot(v),
        None => state.store.latest_snapshot(),
    }
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "staging_error", crate::model::report(&e)))?;
    s.ok_or_else(|| match version {
        Some(v) => ApiError::bad_request("unknown_version", format!("mart version {v} does not exist")),
        None => ApiError::from(QueryError::NoSnapshot(
            "no mart version has been published yet; the first cycle is still running".into(),
        )),
    })
}

/// Liveness, without a token.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, description = "The process is up", body = Health)))]
async fn healthz(State(state): State<ServeState>) -> Json<Health> {
    let v = state.store.latest_snapshot().ok().flatten().map(|s| s.version);
    Json(Health { status: "ok".into(), mart_version: v })
}

/// The status as `role` may see it: error texts (which may name hosts, databases and users) are replaced by a
/// placeholder for anyone but operators; that there is an error stays visible.
fn visible_status(mut status: ApplianceStatus, role: auth::Role) -> ApplianceStatus {
    if role != auth::Role::Operator {
        let hidden = || Some("(details need an operator token)".to_string());
        for i in &mut status.idbs {
            if i.last_error.is_some() {
                i.last_error = hidden();
            }
        }
        if let Some(c) = status.last_cycle.as_mut().filter(|c| c.error.is_some()) {
            c.error = hidden();
        }
    }
    status
}

/// Site, mart version and freshness, per-IDB reachability and lag, per HA pair what it waits for, last cycle.
/// Error texts (which may name hosts and databases) are shown to operators only.
#[utoipa::path(get, path = "/v1/status", tag = "operations",
    responses((status = 200, description = "Live status", body = ApplianceStatus), (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Token of the wrong role", body = ErrorBody),))]
async fn status(
    State(state): State<ServeState>,
    Extension(caller): Extension<auth::Principal>,
) -> Json<ApplianceStatus> {
    let mut status = visible_status(state.status.get(), caller.role);
    status.freshness_secs = status.newest_interaction_end_ts.map(|end| chrono::Utc::now().timestamp() - end);
    Json(status)
}

/// A column of a mart table or of a query answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ColumnInfo {
    /// Column name.
    pub name: String,
    /// SQL (tables) or Arrow (answers) type.
    #[serde(rename = "type")]
    pub data_type: String,
}

/// One mart table.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TableInfo {
    /// Vendor-style upper-case name (queries may use either case).
    pub name: String,
    /// `day` for tables partitioned by day.
    pub partitioned_by: Option<String>,
    /// Columns in order.
    pub columns: Vec<ColumnInfo>,
}

/// Answer of `GET /v1/tables`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TableList {
    /// The mart's tables (system tables are listed in the README).
    pub tables: Vec<TableInfo>,
}

/// The mart's tables and columns.
#[utoipa::path(get, path = "/v1/tables", tag = "query",
    responses((status = 200, description = "Tables", body = TableList), (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Token of the wrong role", body = ErrorBody),))]
async fn tables() -> Json<TableList> {
    let tables = MART_TABLES
        .iter()
        .map(|t| TableInfo {
            name: t.name.to_string(),
            partitioned_by: t.partitioned.then(|| "day".to_string()),
            columns: t
                .columns
                .iter()
                .map(|(n, k)| ColumnInfo {
                    name: n.to_string(),
                    data_type: match k {
                        ColumnKind::Int => "BIGINT",
                        ColumnKind::Text => "VARCHAR",
                        ColumnKind::Float => "DOUBLE",
                    }
                    .into(),
                })
                .collect(),
        })
        .collect();
    Json(TableList { tables })
}

/// Runs one read-only SQL statement. `format`: `json` (default, [`format::QueryAnswer`]), `csv`, `arrow` (IPC
/// stream) or `parquet`; the last three carry `x-ccmart-mart-version`, `x-ccmart-row-count`, `x-ccmart-truncated`.
#[utoipa::path(post, path = "/v1/query", tag = "query", request_body = QueryRequest,
    responses(
        (status = 200, description = "The answer (JSON shown; CSV, Arrow IPC or Parquet by `format`)", body = format::QueryAnswer),
        (status = 400, description = "Bad request: the error code says what", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Token of the wrong role, or a reader reading the engine's settings", body = ErrorBody),
        (status = 408, description = "Time limit exceeded", body = ErrorBody),
        (status = 422, description = "Memory limit or a size bound hit", body = ErrorBody),
        (status = 503, description = "Busy (Retry-After) or nothing published yet", body = ErrorBody)))]
async fn query(
    State(state): State<ServeState>,
    Extension(caller): Extension<auth::Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: QueryRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "bad_request",
            format!("request body is not valid JSON of the form {{\"sql\": \"...\", \"format\": \"json\"}}: {e}"),
        )
    })?;
    let format = OutputFormat::parse(req.format.as_deref().unwrap_or("json")).ok_or_else(|| {
        ApiError::bad_request(
            "bad_format",
            format!("unknown format '{}': use json, csv, arrow or parquet", req.format.unwrap_or_default()),
        )
    })?;
    if req.sql.trim().is_empty() {
        return Err(ApiError::bad_request("bad_request", "sql is empty"));
    }
    let integers = match req.int64.as_deref() {
        None => format::JsonIntegers::Numbers,
        Some(s) => format::JsonIntegers::parse(s).ok_or_else(|| {
            ApiError::bad_request("bad_request", format!("unknown int64 '{s}': use number or string"))
        })?,
    };
    let settings = match &req.time_zone {
        None => crate::query::SessionSettings::default(),
        Some(zone) => crate::query::SessionSettings {
            time_zone: crate::query::SessionSettings::parse_time_zone(zone)
                .map_err(|m| ApiError::from(QueryError::InvalidParameter(m)))?,
            ..Default::default()
        },
    };
    let snap = snapshot(&state, req.mart_version)?;
    let reader = caller.role != auth::Role::Operator;
    let result = state.engine.run_held_as(&snap, &req.sql, None, reader, &settings).await?;
    render_holding_slot(format, result, &freshness(&state), integers)
}

/// Renders an answer and keeps its query slot until the body has been sent (or the client went away), so answers
/// waiting for slow readers stay within `max_concurrent` × `max_result_mb` instead of piling up beside it.
fn render_holding_slot(
    format: OutputFormat,
    mut result: crate::query::QueryResult,
    freshness: &format::Freshness,
    integers: format::JsonIntegers,
) -> Result<Response, ApiError> {
    let permit = result.permit.take();
    let resp = format::render(format, &result, freshness, integers)
        .map_err(|m| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "encoding_error", m))?;
    drop(result);
    let (parts, body) = resp.into_parts();
    let body = Body::from_stream(futures::StreamExt::map(body.into_data_stream(), move |chunk| {
        let _slot = &permit;
        chunk
    }));
    Ok(Response::from_parts(parts, body))
}

/// Refuses a reader's statement that reads what only operators may (see [`crate::query::visibility`]). The
/// statement is planned once more for this, inside a query slot and the time limit like any query; a statement
/// that does not plan is left to [`QueryEngine::run`], which answers its error.
fn report_catalog() -> Result<&'static std::collections::BTreeMap<String, crate::query::reports::Report>, ApiError> {
    crate::query::reports::saved_reports()
        .map_err(|m| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "bad_report", m))
}

/// Answer of `GET /v1/reports`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReportList {
    /// Saved reports with their parameters.
    pub reports: Vec<crate::query::reports::Report>,
}

/// The saved reports (`queries/*.sql`, built in) and their parameters.
#[utoipa::path(get, path = "/v1/reports", tag = "reports",
    responses((status = 200, description = "Saved reports", body = ReportList), (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Token of the wrong role", body = ErrorBody),))]
async fn reports() -> Result<Json<ReportList>, ApiError> {
    Ok(Json(ReportList { reports: report_catalog()?.values().cloned().collect() }))
}

/// Runs a saved report. Its parameters come from the query string and are bound as values, never spliced into
/// the SQL; `format` and `mart_version` work as for `/v1/query`.
#[utoipa::path(get, path = "/v1/reports/{name}", tag = "reports",
    params(("name" = String, Path, description = "Report name (see GET /v1/reports)"),
        ("format" = Option<String>, Query, description = "json (default), csv, arrow or parquet"),
        ("mart_version" = Option<u64>, Query, description = "An older published mart version"),
        ("params" = Option<std::collections::HashMap<String, String>>, Query, style = Form, explode,
            description = "The report's own parameters, e.g. from=2026-11-01&to=2026-11-30")),
    responses((status = 200, description = "The answer", body = format::QueryAnswer), (status = 400, description = "Bad request: the error code says what", body = ErrorBody), (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Token of the wrong role", body = ErrorBody),
        (status = 404, description = "No such report", body = ErrorBody)))]
async fn run_report(
    State(state): State<ServeState>,
    UrlPath(name): UrlPath<String>,
    ApiQuery(mut params): ApiQuery<std::collections::HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let catalog = report_catalog()?;
    let report = catalog.get(&name).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "unknown_report", format!("no saved report '{name}'; see GET /v1/reports"))
    })?;
    let format = params.remove("format").unwrap_or_else(|| "json".into());
    let format = OutputFormat::parse(&format).ok_or_else(|| {
        ApiError::bad_request("bad_format", format!("unknown format '{format}': use json, csv, arrow or parquet"))
    })?;
    let version = match params.remove("mart_version") {
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| ApiError::bad_request("bad_parameter", format!("mart_version '{v}' is not a number")))?,
        ),
        None => None,
    };
    let bound = crate::query::reports::bind(report, &params).map_err(|m| ApiError::bad_request("bad_parameter", m))?;
    let snap = snapshot(&state, version)?;
    let result = state.engine.run_held(&snap, &report.sql, Some(bound), false).await?;
    render_holding_slot(format, result, &freshness(&state), format::JsonIntegers::Numbers)
}

/// BLAKE3 content digest and row count per table and day, to compare two sites.
#[utoipa::path(get, path = "/v1/digest", tag = "replication", params(DigestParams),
    responses((status = 200, description = "Digests", body = DigestList), (status = 400, description = "Bad request: the error code says what", body = ErrorBody), (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Token of the wrong role", body = ErrorBody),))]
async fn digest(State(state): State<ServeState>, ApiQuery(p): ApiQuery<DigestParams>) -> Result<Response, ApiError> {
    let tables = match &p.table {
        Some(name) => vec![mart_table(name).ok_or_else(|| {
            ApiError::bad_request("unknown_table", format!("no mart table '{name}'; see GET /v1/tables"))
        })?],
        None => Vec::new(),
    };
    let day = parse_day("day", &p.day).map_err(|m| ApiError::bad_request("bad_parameter", m))?;
    let snap = snapshot(&state, p.mart_version)?;
    let digests = crate::query::digest::digests(&state.engine, &snap, &tables, day.as_deref()).await?;
    Ok(Json(DigestList { mart_version: snap.version, digests }).into_response())
}

/// Key → row digest of one partition, to find a difference down to the key.
#[utoipa::path(get, path = "/v1/digest/rows", tag = "replication", params(DigestParams),
    responses((status = 200, description = "Row digests", body = RowDigests), (status = 400, description = "Bad request: the error code says what", body = ErrorBody), (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Token of the wrong role", body = ErrorBody),))]
async fn digest_rows(
    State(state): State<ServeState>,
    ApiQuery(p): ApiQuery<DigestParams>,
) -> Result<Response, ApiError> {
    let name = p.table.as_deref().ok_or_else(|| ApiError::bad_request("bad_parameter", "'table' is required"))?;
    let table = mart_table(name)
        .ok_or_else(|| ApiError::bad_request("unknown_table", format!("no mart table '{name}'; see GET /v1/tables")))?;
    let day = parse_day("day", &p.day).map_err(|m| ApiError::bad_request("bad_parameter", m))?;
    if table.partitioned && day.is_none() {
        return Err(ApiError::bad_request(
            "bad_parameter",
            format!("'day' is required for the partitioned table {}", table.name),
        ));
    }
    let snap = snapshot(&state, p.mart_version)?;
    let rows = crate::query::digest::row_digests(&state.engine, &snap, table, day.as_deref()).await?;
    Ok(Json(RowDigests { mart_version: snap.version, table: table.name.to_string(), day, rows }).into_response())
}

/// Checks a `YYYY-MM-DD` day parameter.
pub fn parse_day(name: &str, v: &Option<String>) -> Result<Option<String>, String> {
    match v {
        None => Ok(None),
        Some(s) => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(|d| Some(d.format("%Y-%m-%d").to_string()))
            .map_err(|_| format!("'{name}' must be a date like 2026-11-24, got '{s}'")),
    }
}

/// A Parquet file of a table (a day range for partitioned tables) at one mart version.
#[utoipa::path(get, path = "/v1/export/{table}", tag = "query",
    params(("table" = String, Path, description = "Mart table (either case)"), ExportParams),
    responses((status = 200, description = "Parquet file", content_type = "application/vnd.apache.parquet"),
        (status = 400, description = "Bad request: the error code says what", body = ErrorBody), (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Token of the wrong role", body = ErrorBody),
        (status = 503, description = "Busy (Retry-After)", body = ErrorBody)))]
async fn export(
    State(state): State<ServeState>,
    UrlPath(table): UrlPath<String>,
    ApiQuery(p): ApiQuery<ExportParams>,
) -> Result<Response, ApiError> {
    let t = mart_table(&table).ok_or_else(|| {
        ApiError::bad_request("unknown_table", format!("no mart table '{table}'; see GET /v1/tables"))
    })?;
    let from = parse_day("from", &p.from).map_err(|m| ApiError::bad_request("bad_parameter", m))?;
    let to = parse_day("to", &p.to).map_err(|m| ApiError::bad_request("bad_parameter", m))?;
    let snap = snapshot(&state, p.mart_version)?;
    let day_column = p.day_column.unwrap_or(true);
    let export = ParquetExport::write_with(&state.engine, &snap, t, from.as_deref(), to.as_deref(), day_column).await?;
    let file = tokio::fs::File::open(export.path())
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "io_error", e.to_string()))?;
    let stream = tokio_util::io::ReaderStream::new(file);
    let name = format!("{}.parquet", t.name);
    let mut resp = Response::new(Body::from_stream(ExportStream { inner: stream, _keep: export }));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/vnd.apache.parquet"));
    if let Ok(v) = header::HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Ok(v) = header::HeaderValue::from_str(&snap.version.to_string()) {
        h.insert("x-ccmart-mart-version", v);
    }
    freshness(&state).annotate(&mut resp);
    Ok(resp)
}

/// This site's role and, on a standby, how far its mart is behind the active's.
fn freshness(state: &ServeState) -> format::Freshness {
    let role = state.fence.get().role;
    let lag_seconds = match role {
        crate::replicate::fencing::Role::Standby => state.status.get().replication.and_then(|r| r.lag_seconds),
        crate::replicate::fencing::Role::Active => None,
    };
    format::Freshness { role: role.as_str().into(), lag_seconds }
}

/// Streams the export file and deletes it when the response is done.
struct ExportStream {
    inner: tokio_util::io::ReaderStream<tokio::fs::File>,
    _keep: ParquetExport,
}

impl futures::Stream for ExportStream {
    type Item = std::io::Result<Bytes>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::pin::Pin::new(&mut self.inner).poll_next(cx)
    }
}

/// Serves the API on `listener` with the default [`HttpLimits`] until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ServeState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, HttpLimits::default(), None, shutdown).await
}

/// Serves the API over HTTPS (see [`tls`]) on `listener` with the default [`HttpLimits`] until `shutdown` resolves.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    state: ServeState,
    config: Arc<tokio_rustls::rustls::ServerConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, HttpLimits::default(), Some(config), shutdown).await
}

/// Serves the API on `listener`, over TLS when `tls` is given, within `limits` (connection cap, header timeout;
/// see [`listener`]) until `shutdown` resolves.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: ServeState,
    limits: HttpLimits,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let metrics = state.metrics.clone();
    self::listener::serve_router(listener, router(state), limits, tls, metrics, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_details_are_for_operators() {
        let mut s = ApplianceStatus::new("site1");
        let mut idb = crate::model::status::IdbHealth::new("a");
        idb.last_error = Some("connection to postgres://ccmart:secret@db1 refused".into());
        s.idbs.push(idb);
        s.last_cycle = Some(CycleSummary { error: Some("db1: refused".into()), ..Default::default() });
        let reader = visible_status(s.clone(), auth::Role::Reader);
        assert!(!serde_json::to_string(&reader).unwrap().contains("db1"));
        assert!(reader.idbs[0].last_error.is_some() && reader.last_cycle.unwrap().error.is_some());
        assert!(serde_json::to_string(&visible_status(s, auth::Role::Operator)).unwrap().contains("secret@db1"));
    }
}
