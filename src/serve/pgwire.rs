//! The PostgreSQL wire protocol, so BI tools (psql, DBeaver, Metabase, Grafana, JDBC/ODBC/libpq drivers) can read the
//! mart without an HTTP adapter.
//!
//! Protocol handling, PostgreSQL's catalog and the SQL dialect come from `datafusion-postgres` (pgwire); this module
//! adds what an appliance needs around it, so a connection gets exactly what an HTTP caller gets:
//! - **Login** with the same tokens as the HTTP API: the password is a token secret (user name free), a reader or
//!   operator token may query, a peer token may not. With no token configured (loopback only) no password is asked.
//! - **Snapshots.** Each statement runs against the newest published mart version (on a standby, the newest
//!   replicated one), through the same cached per-version contexts as `/v1/query`.
//! - **Read-only, one gate.** Queries and `EXPLAIN` never run through `datafusion-postgres`'s own execution: ccmart
//!   parses, gates ([`crate::query::gate`]: size, nesting, read-only statement and plan), plans and runs them on the
//!   SQL threads ([`crate::query::workers`]), in the simple and the extended protocol and inside `DECLARE`. DDL,
//!   DML, `COPY`, `SELECT … INTO` and engine settings (`SET datafusion.*`) are refused with SQLSTATE 25006 / 42501;
//!   nothing is ever written.
//! - **Per-connection settings.** `SET TimeZone` (and the other client settings) change only the connection that
//!   sets them; each statement runs in its own copy of the version's context.
//! - **Limits.** The same admission gate (concurrency and queue, SQLSTATE 53000 when full), the same time limit
//!   (57014, covering the rows sent too) and row limit (54000 once a result passes `query.max_rows`; cursors and
//!   `Execute` row counts are clamped before they reach the protocol crate), the same memory pool and size guards;
//!   statements too large or too deep are refused with 54001.

use super::auth::{Role, TokenRegistry};
use super::metrics::ApplianceMetrics;
use crate::query::postgres::DEFAULT_TIME_ZONE;
use crate::query::{BatchStream, QueryEngine, QueryError, QueryPermit, SessionSettings};
use crate::staging::Store;
use async_trait::async_trait;
use connections::LoginGate;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{CloseCursor, DiscardObject, Reset, Set, Statement};
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::pgwire;
use datafusion_postgres::{DfSessionService, QueryHook};
use futures::{Sink, SinkExt, Stream};
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata, DefaultServerParameterProvider,
    StartupHandler,
};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{DescribePortalResponse, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, PgWireConnectionState, PgWireServerHandlers, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::messages::extendedquery::Execute;
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// What a parsed statement is, as stored in a client's portals (the `datafusion-postgres` representation).
pub type PgStatement = (String, Option<(Statement, LogicalPlan)>);

/// Default limit of simultaneous PostgreSQL-protocol connections.
pub const DEFAULT_PGWIRE_MAX_CONNECTIONS: usize = 64;

mod connections;
mod copy_out;
pub mod framing;
pub use connections::{
    serve_with, ConnectionLimits, DEFAULT_IDLE_SESSION_TIMEOUT, DEFAULT_LOGIN_FAILURE_WINDOW,
    DEFAULT_MAX_CONNECTIONS_PER_CLIENT, DEFAULT_MAX_LOGIN_FAILURES, DEFAULT_SEND_TIMEOUT, DEFAULT_STARTUP_TIMEOUT,
};

/// Number of mart versions whose protocol sessions are kept (each holds one cached query context).
const SESSION_CACHE: usize = 4;

/// A PostgreSQL error answer with its SQLSTATE.
fn pg_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".into(), code.into(), message.into())))
}

/// A query-engine error as PostgreSQL reports it: its SQLSTATE, its message, and its hint on its own.
fn from_query_error(e: QueryError) -> PgWireError {
    let code = e.sqlstate();
    let (message, hint) = match e {
        QueryError::Undefined { message, hint, .. } => (message, hint),
        other => (other.to_string(), None),
    };
    let mut info = ErrorInfo::new("ERROR".into(), code.into(), message);
    info.hint = hint;
    PgWireError::UserError(Box::new(info))
}

/// The protocol sessions per mart version: a `datafusion-postgres` service over the engine's cached context of
/// that version, with ccmart's statement policy in front of its own hooks.
struct VersionSessions {
    engine: QueryEngine,
    store: Arc<Store>,
    cache: tokio::sync::Mutex<Vec<(u64, Version)>>,
    /// The newest service, for the parser's synchronous questions (parameter and result types), which depend on
    /// the parsed plan only.
    newest: Mutex<Option<Arc<DfSessionService>>>,
}

/// One mart version as the protocol serves it: `datafusion-postgres`'s service (SHOW, transactions, cursors'
/// bookkeeping) and the version's shared query context, which statements never change: each runs in a
/// [`QueryEngine::session_context`] carrying its own session's settings.
#[derive(Clone)]
struct Version {
    service: Arc<DfSessionService>,
    ctx: SessionContext,
}

impl VersionSessions {
    /// The newest published mart version.
    async fn current(&self) -> PgWireResult<Version> {
        let snapshot =
            self.store.latest_snapshot().map_err(|e| pg_error("XX000", format!("staging: {e}")))?.ok_or_else(|| {
                pg_error("55000", "no mart version has been published yet; the first cycle is still running")
            })?;
        let mut cache = self.cache.lock().await;
        if let Some((_, s)) = cache.iter().find(|(v, _)| *v == snapshot.version) {
            return Ok(s.clone());
        }
        let ctx = self.engine.context(&snapshot).await.map_err(from_query_error)?;
        let (max_rows, timeout_secs) = (self.engine.limits().max_rows, self.engine.limits().timeout_secs);
        let hooks: Vec<Arc<dyn QueryHook>> = vec![
            Arc::new(StatementPolicy { max_rows, timeout_secs }),
            Arc::new(TransactionStatementHook),
            Arc::new(SetShowHook),
        ];
        let service = Arc::new(DfSessionService::new_with_hooks(Arc::new(ctx.clone()), hooks));
        let version = Version { service: service.clone(), ctx };
        cache.push((snapshot.version, version.clone()));
        if cache.len() > SESSION_CACHE {
            cache.remove(0);
        }
        *self.newest.lock().unwrap_or_else(|e| e.into_inner()) = Some(service);
        Ok(version)
    }
}

/// The PostgreSQL front end of one appliance: login, statement policy, limits, metrics. Clones share everything.
#[derive(Clone)]
pub struct PgFrontend {
    sessions: Arc<VersionSessions>,
    parser: Arc<SnapshotParser>,
    startup: Arc<TokenLogin>,
    metrics: ApplianceMetrics,
}

impl PgFrontend {
    /// A front end over `engine`'s snapshots of `store`, logging in with `tokens`.
    pub fn new(engine: QueryEngine, store: Arc<Store>, tokens: TokenRegistry, metrics: ApplianceMetrics) -> Self {
        let sessions = Arc::new(VersionSessions {
            engine,
            store,
            cache: tokio::sync::Mutex::new(Vec::new()),
            newest: Mutex::new(None),
        });
        PgFrontend {
            parser: Arc::new(SnapshotParser { sessions: sessions.clone() }),
            startup: Arc::new(TokenLogin {
                tokens,
                metrics: metrics.clone(),
                pids: RandomPidSecretKeyGenerator::default(),
            }),
            sessions,
            metrics,
        }
    }

    fn limits(&self) -> (Duration, usize) {
        let l = self.sessions.engine.limits();
        (Duration::from_secs(l.timeout_secs.max(1)), l.max_rows)
    }

    /// Runs `work` (planning and the first response) inside the admission gate and time limit, then bounds the rows
    /// of every query response by the same deadline and the row limit; the slot is held until the last row is sent.
    async fn bounded<F>(&self, work: F) -> PgWireResult<Vec<Response>>
    where
        F: std::future::Future<Output = PgWireResult<Vec<Response>>>,
    {
        let started = Instant::now();
        let (limit, max_rows) = self.limits();
        let result = async {
            let permit = Arc::new(self.sessions.engine.admit().await.map_err(from_query_error)?);
            let deadline = tokio::time::Instant::now() + limit;
            let bounds = StatementBounds { deadline, limit, permit: permit.clone(), metrics: &self.metrics, started };
            let work = STATEMENT_SLOT.scope((permit.clone(), deadline), work);
            let responses = tokio::time::timeout_at(deadline, work).await.map_err(|_| timeout_error(limit))??;
            Ok::<_, PgWireError>(
                responses
                    .into_iter()
                    .map(|r| match r {
                        Response::Query(mut q) => {
                            let rows = std::mem::replace(&mut q.data_rows, Box::pin(futures::stream::empty()));
                            q.data_rows = Box::pin(bounds.rows(rows, max_rows));
                            Response::Query(q)
                        }
                        Response::CopyOut(mut c) => {
                            let data = std::mem::replace(&mut c.data_stream, Box::pin(futures::stream::empty()));
                            // COPY bounds its rows itself (the binary trailer is not a row).
                            c.data_stream = Box::pin(bounds.rows(data, usize::MAX));
                            Response::CopyOut(c)
                        }
                        other => other,
                    })
                    .collect::<Vec<_>>(),
            )
        }
        .await;
        // Query responses report when their last row is sent; everything else is done now.
        let streaming =
            matches!(&result, Ok(rs) if rs.iter().any(|r| matches!(r, Response::Query(_) | Response::CopyOut(_))));
        if !streaming {
            let outcome = match &result {
                Ok(_) => "ok".to_string(),
                Err(e) => sqlstate_class(e),
            };
            self.metrics.observe_pg_statement(&outcome, started.elapsed().as_secs_f64());
        }
        result
    }
}

tokio::task_local! {
    /// The query slot and deadline of the statement being answered (set by [`PgFrontend::bounded`]), for what
    /// must outlive the statement within them: a cursor keeps its statement's slot and deadline.
    static STATEMENT_SLOT: (Arc<QueryPermit>, tokio::time::Instant);
}

/// Open cursors one session may hold at most: each keeps a query slot and a started query until it is closed
/// or its time limit passes.
pub const MAX_OPEN_CURSORS: usize = 8;
/// The names of a session's open cursors (declared, not yet closed), kept in the session's extensions.
#[derive(Default)]
struct OpenCursors(std::sync::Mutex<std::collections::BTreeSet<String>>);

impl OpenCursors {
    fn of(client: &dyn HookClient) -> Arc<OpenCursors> {
        client.session_extensions().get_or_insert_with(OpenCursors::default)
    }

    fn names(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn timeout_error(limit: Duration) -> PgWireError {
    pg_error(
        "57014",
        format!(
            "canceling statement: it ran longer than the query time limit ({} s, query.timeout_secs)",
            limit.as_secs()
        ),
    )
}

/// The SQLSTATE class (first two characters) of an error, for the metrics label.
fn sqlstate_class(e: &PgWireError) -> String {
    match e {
        PgWireError::UserError(info) => info.code.chars().take(2).collect(),
        PgWireError::ApiError(_) => "42".into(),
        _ => "08".into(),
    }
}

/// What bounds the rows of one statement's responses: its deadline and time limit, its query slot, and where its
/// outcome is counted.
struct StatementBounds<'a> {
    deadline: tokio::time::Instant,
    limit: Duration,
    permit: Arc<QueryPermit>,
    metrics: &'a ApplianceMetrics,
    started: Instant,
}

impl StatementBounds<'_> {
    /// `rows` cut off at the deadline and past `max_rows`, holding the slot until they end.
    fn rows<T>(&self, rows: Pin<Box<dyn Stream<Item = PgWireResult<T>> + Send>>, max_rows: usize) -> BoundedRows<T> {
        BoundedRows {
            rows,
            sent: 0,
            max_rows,
            deadline: Box::pin(tokio::time::sleep_until(self.deadline)),
            limit: self.limit,
            done: false,
            _permit: self.permit.clone(),
            finish: Some((self.metrics.clone(), self.started)),
            outcome: "ok",
        }
    }
}

/// A query response's rows, cut off by the statement's deadline and the row limit. Holds the query slot until the
/// stream ends or is dropped (a client that disconnects mid-result frees it too).
struct BoundedRows<T> {
    rows: Pin<Box<dyn Stream<Item = PgWireResult<T>> + Send>>,
    sent: usize,
    max_rows: usize,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
    done: bool,
    _permit: Arc<QueryPermit>,
    finish: Option<(ApplianceMetrics, Instant)>,
    outcome: &'static str,
}

impl<T> BoundedRows<T> {
    fn fail(&mut self, e: PgWireError, outcome: &'static str) -> Poll<Option<PgWireResult<T>>> {
        self.done = true;
        self.outcome = outcome;
        Poll::Ready(Some(Err(e)))
    }
}

impl<T> Stream for BoundedRows<T> {
    type Item = PgWireResult<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            let limit = self.limit;
            return self.fail(timeout_error(limit), "57");
        }
        match self.rows.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(row))) => {
                if self.sent >= self.max_rows {
                    let max = self.max_rows;
                    return self.fail(
                        pg_error(
                            "54000",
                            format!(
                                "the result has more than {max} rows (query.max_rows); add LIMIT or narrow the query"
                            ),
                        ),
                        "54",
                    );
                }
                self.sent += 1;
                Poll::Ready(Some(Ok(row)))
            }
            Poll::Ready(Some(Err(e))) => {
                let class = if matches!(&e, PgWireError::UserError(_)) { "XX" } else { "42" };
                self.fail(e, class)
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T> Drop for BoundedRows<T> {
    fn drop(&mut self) {
        if let Some((metrics, started)) = self.finish.take() {
            metrics.observe_pg_statement(self.outcome, started.elapsed().as_secs_f64());
        }
    }
}

/// ccmart's statement policy, asked before `datafusion-postgres`'s own hooks. Queries and `EXPLAIN` never reach
/// the hooks: [`PgFrontend`] plans and runs them itself, through the query engine's gate, on the SQL threads. What
/// reaches this hook is the rest of what a client sends, and it decides it here:
/// - `SET` is answered per connection: the value is kept in the connection's metadata and applied to its own
///   statements ([`session_settings`]); the shared context of a mart version is never written, so nothing one
///   session sets is seen by another. `SET datafusion.*` (the engine's settings) is refused.
/// - `DECLARE … CURSOR FOR <query>` runs its query through the same gate and row bound as any query, and keeps
///   the statement's query slot and time limit: the cursor's query stops at the deadline and frees the slot even
///   if it is never fetched. A session holds at most [`MAX_OPEN_CURSORS`] (54000 beyond); `FETCH` counts are
///   clamped to the row bound before they reach the protocol crate (which allocates the count).
/// - transactions, `SHOW`, `CLOSE`, `DEALLOCATE`, `DISCARD` pass on; everything else is refused (25006).
struct StatementPolicy {
    max_rows: usize,
    timeout_secs: u64,
}

/// Session variables a client may set: they change how this connection's answers are formatted, nothing shared.
const CLIENT_SETTINGS: &[&str] = &[
    "statement_timeout",
    "datestyle",
    "bytea_output",
    "intervalstyle",
    "application_name",
    "extra_float_digits",
    "search_path",
    "client_encoding",
    "client_min_messages",
    "standard_conforming_strings",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "jit",
];

/// Client metadata key of the connection's time zone (the key `datafusion-postgres` reads for `SHOW TIME ZONE`).
const METADATA_TIME_ZONE: &str = "timezone";

/// The settings of the connection whose metadata this is.
fn session_settings(metadata: &std::collections::HashMap<String, String>) -> SessionSettings {
    SessionSettings {
        time_zone: metadata.get(METADATA_TIME_ZONE).cloned().unwrap_or_else(|| DEFAULT_TIME_ZONE.to_string()),
        user: metadata.get(pgwire::api::METADATA_USER).cloned(),
        values: CLIENT_SETTINGS.iter().filter_map(|k| metadata.get(*k).map(|v| (k.to_string(), v.clone()))).collect(),
    }
}

/// Metadata key prefix of a setting's session default (what the client gave at startup), which `RESET` restores.
const METADATA_STARTUP_PREFIX: &str = "ccmart.startup.";

/// The settings a client gave in its startup message (as parameters, or as `-c name=value` / `--name=value` in
/// `options`), by lower-case name.
fn startup_settings(metadata: &std::collections::HashMap<String, String>) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = metadata
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .filter(|(k, _)| k == METADATA_TIME_ZONE || CLIENT_SETTINGS.contains(&k.as_str()))
        .collect();
    if let Some(options) = metadata.get("options") {
        let mut words = options.split_whitespace();
        while let Some(w) = words.next() {
            let assignment = match w {
                "-c" => words.next(),
                _ => w.strip_prefix("--").or_else(|| w.strip_prefix("-c")),
            };
            if let Some((k, v)) = assignment.and_then(|a| a.split_once('=')) {
                let k = k.to_ascii_lowercase().replace('-', "_");
                if k == METADATA_TIME_ZONE || CLIENT_SETTINGS.contains(&k.as_str()) {
                    found.push((k, v.to_string()));
                }
            }
        }
    }
    found
}

/// Applies the startup settings to the connection's metadata (and records them as its defaults for `RESET`); an
/// invalid time zone refuses the login, as PostgreSQL does (22023).
fn apply_startup_settings(metadata: &mut std::collections::HashMap<String, String>) -> PgWireResult<String> {
    let mut zone = DEFAULT_TIME_ZONE.to_string();
    for (name, value) in startup_settings(metadata) {
        let value = if name == METADATA_TIME_ZONE {
            zone = SessionSettings::parse_time_zone(&value)
                .map_err(|m| PgWireError::UserError(Box::new(ErrorInfo::new("FATAL".into(), "22023".into(), m))))?;
            zone.clone()
        } else {
            value
        };
        metadata.insert(format!("{METADATA_STARTUP_PREFIX}{name}"), value.clone());
        metadata.insert(name, value);
    }
    metadata.insert(METADATA_TIME_ZONE.into(), zone.clone());
    Ok(zone)
}

/// The text of a `SET` value as PostgreSQL would store it (quotes removed).
fn set_value(values: &[datafusion::sql::sqlparser::ast::Expr]) -> String {
    values
        .iter()
        .map(|v| {
            let t = v.to_string();
            t.trim_matches('\'').trim_matches('"').to_string()
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A setting's name as the connection's metadata keys it: lower case, without `SESSION.`; `time zone` is
/// `timezone`.
fn setting_name(written: &str) -> String {
    let name = written.to_ascii_lowercase();
    let name = name.strip_prefix("session.").unwrap_or(&name);
    match name {
        "time zone" | "time_zone" => METADATA_TIME_ZONE.to_string(),
        other => other.to_string(),
    }
}

/// Display names of the settings PostgreSQL reports with `ParameterStatus` when they change.
fn reported_name(var: &str) -> Option<&'static str> {
    Some(match var {
        METADATA_TIME_ZONE => "TimeZone",
        "datestyle" => "DateStyle",
        "intervalstyle" => "IntervalStyle",
        "bytea_output" => "bytea_output",
        "application_name" => "application_name",
        "extra_float_digits" => "extra_float_digits",
        "search_path" => "search_path",
        "client_encoding" => "client_encoding",
        "standard_conforming_strings" => "standard_conforming_strings",
        _ => return None,
    })
}

fn not_gated() -> PgWireError {
    pg_error("XX000", "internal error: a query reached the protocol hooks without passing the statement gate")
}

impl StatementPolicy {
    /// Statements other than queries: `None` lets the next hook (transactions, SHOW, cursor bookkeeping) answer.
    fn refuse(statement: &Statement) -> Option<PgWireError> {
        match statement {
            Statement::ShowVariable { .. }
            | Statement::ShowStatus { .. }
            | Statement::ShowCatalogs { .. }
            | Statement::ShowTables { .. }
            | Statement::ShowColumns { .. }
            | Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Declare { .. }
            | Statement::Fetch { .. }
            | Statement::Close { .. }
            | Statement::Deallocate { .. }
            | Statement::Discard { .. }
            | Statement::Reset(_)
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
            | Statement::UNLISTEN { .. }
            | Statement::Set(_) => None,
            Statement::Query(_) | Statement::Explain { .. } => Some(not_gated()),
            other => Some(match crate::query::gate::check_statement(other) {
                Err(e) => from_query_error(e),
                Ok(()) => not_gated(),
            }),
        }
    }

    /// Answers a `SET` for this connection only.
    async fn set(set: &Set, client: &mut dyn HookClient) -> PgWireResult<Response> {
        let (name, value) = match set {
            Set::SetTimeZone { value, .. } => ("timezone".to_string(), set_value(std::slice::from_ref(value))),
            Set::SingleAssignment { variable, values, .. } => (setting_name(&variable.to_string()), set_value(values)),
            // SET SESSION CHARACTERISTICS, SET NAMES, SET ROLE, ...: nothing to change in a read-only snapshot.
            _ => return Ok(Response::Execution(Tag::new("SET"))),
        };
        if name.starts_with("datafusion.") {
            return Err(pg_error(
                "42501",
                format!(
                    "permission denied to set {name}: the query engine's settings are fixed by the appliance \
                     configuration ([query] in ccmart.toml)"
                ),
            ));
        }
        if name == METADATA_TIME_ZONE {
            if matches!(value.to_ascii_lowercase().as_str(), "local" | "default") {
                Self::reset(Some(METADATA_TIME_ZONE), client).await?;
                return Ok(Response::Execution(Tag::new("SET")));
            }
            let tz = SessionSettings::parse_time_zone(&value).map_err(|m| pg_error("22023", m))?;
            Self::put(client, METADATA_TIME_ZONE, tz).await?;
            return Ok(Response::Execution(Tag::new("SET")));
        }
        if CLIENT_SETTINGS.contains(&name.as_str()) {
            if value.eq_ignore_ascii_case("default") {
                Self::reset(Some(&name), client).await?;
            } else {
                Self::put(client, &name, value).await?;
            }
        }
        // A PostgreSQL server setting that means nothing to ccmart is acknowledged, as compatible servers do.
        Ok(Response::Execution(Tag::new("SET")))
    }

    /// Sets a client setting of this connection and reports it to the client when PostgreSQL would.
    async fn put(client: &mut dyn HookClient, name: &str, value: String) -> PgWireResult<()> {
        client.metadata_mut().insert(name.to_string(), value.clone());
        if let Some(reported) = reported_name(name) {
            client
                .send_message(PgWireBackendMessage::ParameterStatus(pgwire::messages::startup::ParameterStatus::new(
                    reported.into(),
                    value,
                )))
                .await?;
        }
        Ok(())
    }

    /// `RESET name` (or `RESET ALL` with `None`): back to the session's default, the value the client gave at
    /// startup or else the server's.
    async fn reset(name: Option<&str>, client: &mut dyn HookClient) -> PgWireResult<()> {
        let names: Vec<&str> = match name {
            Some(n) => vec![n],
            None => std::iter::once(METADATA_TIME_ZONE).chain(CLIENT_SETTINGS.iter().copied()).collect(),
        };
        for name in names {
            let default = client.metadata().get(&format!("{METADATA_STARTUP_PREFIX}{name}")).cloned();
            match (name, default) {
                (METADATA_TIME_ZONE, d) => {
                    Self::put(client, name, d.unwrap_or_else(|| DEFAULT_TIME_ZONE.into())).await?
                }
                (_, Some(d)) => Self::put(client, name, d).await?,
                (_, None) => {
                    client.metadata_mut().remove(name);
                }
            }
        }
        Ok(())
    }

    /// `DECLARE name CURSOR FOR query`: the query is gated, planned and started like any other, its rows bounded
    /// by `query.max_rows`, and the portal kept for `FETCH`. Sent as a prepared statement (psycopg 3's server-side
    /// cursors), its parameters are bound into the cursor's query. The cursor is a portal as in PostgreSQL: it
    /// keeps its plan, so `Describe` of it (or of a `FETCH` from it) answers its columns.
    async fn declare(
        &self,
        declares: &[datafusion::sql::sqlparser::ast::Declare],
        shared: &SessionContext,
        client: &mut dyn HookClient,
        params: Option<&ParamValues>,
    ) -> PgWireResult<Response> {
        use datafusion::sql::sqlparser::ast::DeclareType;
        use pgwire::api::stmt::StoredStatement;
        // The statement's slot and deadline: the cursor keeps both (its query runs no longer than a statement).
        let Ok((slot, deadline)) = STATEMENT_SLOT.try_with(|s| s.clone()) else {
            return Err(pg_error("XX000", "DECLARE outside a statement's query slot"));
        };
        for declare in declares {
            let (Some(DeclareType::Cursor), Some(name), Some(query)) =
                (&declare.declare_type, declare.names.first(), &declare.for_query)
            else {
                return Err(pg_error("42601", "only DECLARE name CURSOR FOR query is supported"));
            };
            if client.portal_store().get_portal(&name.value).is_some() {
                return Err(pg_error("42P03", format!("cursor \"{}\" already exists", name.value)));
            }
            let cursors = OpenCursors::of(&*client);
            let open = cursors.names().len();
            if open >= MAX_OPEN_CURSORS {
                return Err(pg_error(
                    "54000",
                    format!("this session has {open} open cursors, the most a session may have; CLOSE one first"),
                ));
            }
            let ctx = QueryEngine::session_context(shared, &session_settings(client.metadata()));
            let planned = QueryEngine::plan_statement(ctx.clone(), Statement::Query(query.clone()))
                .await
                .map_err(from_query_error)?;
            check_visibility(client.metadata(), &planned.plan)?;
            let described = planned.plan.clone();
            let plan = match params {
                Some(params) => bind_cursor_parameters(planned.plan, params)?,
                None => planned.plan,
            };
            // The cursor's query holds the slot while it runs and lets it go at the deadline; its rows answer
            // 57014 past it.
            let held = Some((slot.clone(), deadline, self.timeout_secs.max(1)));
            let stream = QueryEngine::start_held(ctx, held, move || Ok(plan)).await.map_err(from_query_error)?;
            let response = encode_rows(stream, &Format::UnifiedText, None, Some(self.max_rows))?;
            let stored = Arc::new(StoredStatement::new(
                name.value.clone(),
                (planned.text, Some((planned.statement, described))),
                vec![],
            ));
            let portal = Portal::new_cursor(name.value.clone(), stored);
            portal.start(response).await;
            client.portal_store().put_portal(Arc::new(portal));
            cursors.names().insert(name.value.clone());
        }
        Ok(Response::Execution(Tag::new("DECLARE CURSOR")))
    }

    /// `FETCH` with its count clamped to one more than the row bound (the cursor's rows end in 54000 past it).
    fn clamp_fetch(&self, statement: &Statement) -> Statement {
        use datafusion::sql::sqlparser::ast::{FetchDirection, Value};
        let Statement::Fetch { name, direction, position, into } = statement else { return statement.clone() };
        let most = self.max_rows.saturating_add(1);
        let count = |v: &Value| match v {
            Value::Number(n, _) => n.parse::<u128>().map_or(most, |n| (n.min(most as u128)) as usize),
            _ => most,
        };
        let clamped = match direction {
            FetchDirection::ForwardAll | FetchDirection::All => Some(most),
            FetchDirection::Forward { limit: Some(v) } | FetchDirection::Count { limit: v } => Some(count(v)),
            _ => None,
        };
        let direction = match clamped {
            Some(n) => FetchDirection::Count { limit: Value::Number(n.to_string(), false).into() },
            None => direction.clone(),
        };
        Statement::Fetch { name: name.clone(), direction, position: position.clone(), into: into.clone() }
    }

    async fn answer(
        &self,
        statement: &Statement,
        shared: &SessionContext,
        client: &mut dyn HookClient,
        params: Option<&ParamValues>,
    ) -> Option<PgWireResult<Response>> {
        if let Some(e) = Self::refuse(statement) {
            return Some(Err(e));
        }
        match statement {
            Statement::ShowVariable { variable }
                if is_reader(client.metadata())
                    && variable.first().is_some_and(|v| {
                        let v = v.value.to_lowercase();
                        v == "all" || v.starts_with("datafusion")
                    }) =>
            {
                Some(Err(pg_error(
                    "42501",
                    "permission denied: SHOW ALL and SHOW datafusion.* list the query engine's settings and paths on \
                     this appliance; use an operator token",
                )))
            }
            Statement::Set(set) => Some(Self::set(set, client).await),
            Statement::Reset(reset) => {
                let name = match &reset.reset {
                    Reset::ALL => None,
                    Reset::ConfigurationParameter(n) => Some(setting_name(&n.to_string())),
                };
                Some(Self::reset(name.as_deref(), client).await.map(|()| Response::Execution(Tag::new("RESET"))))
            }
            Statement::Discard { object_type } => {
                // DISCARD ALL (what pgbouncer and pools send when a connection is handed on): the session's
                // settings go back to their defaults and its cursors are closed; there are no temporary tables,
                // plans or sequences to drop.
                if matches!(object_type, DiscardObject::ALL) {
                    if let Err(e) = Self::reset(None, client).await {
                        return Some(Err(e));
                    }
                    let close_all = Statement::Close { cursor: CloseCursor::All };
                    if let Some(Err(e)) = CursorStatementHook.handle_simple_query(&close_all, shared, client).await {
                        return Some(Err(e));
                    }
                    OpenCursors::of(&*client).names().clear();
                }
                Some(Ok(Response::Execution(Tag::new("DISCARD"))))
            }
            // Savepoints of a read-only transaction have nothing to keep or undo.
            Statement::Savepoint { .. } => Some(Ok(Response::Execution(Tag::new("SAVEPOINT")))),
            Statement::ReleaseSavepoint { .. } => Some(Ok(Response::Execution(Tag::new("RELEASE")))),
            Statement::Rollback { savepoint: Some(_), .. } => Some(Ok(Response::Execution(Tag::new("ROLLBACK")))),
            // ccmart sends no notifications, so no session listens to any.
            Statement::UNLISTEN { .. } => Some(Ok(Response::Execution(Tag::new("UNLISTEN")))),
            Statement::Declare { stmts } => Some(self.declare(stmts, shared, client, params).await),
            Statement::Close { cursor } => {
                let answer = CursorStatementHook.handle_simple_query(statement, shared, client).await;
                if matches!(answer, Some(Ok(_))) {
                    let cursors = OpenCursors::of(&*client);
                    match cursor {
                        // PostgreSQL's tag for closing every cursor.
                        CloseCursor::All => {
                            cursors.names().clear();
                            return Some(Ok(Response::Execution(Tag::new("CLOSE CURSOR ALL"))));
                        }
                        CloseCursor::Specific { name } => {
                            cursors.names().remove(&name.value);
                        }
                    }
                }
                answer
            }
            Statement::Fetch { .. } => {
                CursorStatementHook.handle_simple_query(&self.clamp_fetch(statement), shared, client).await
            }
            _ => None,
        }
    }
}

#[async_trait]
impl QueryHook for StatementPolicy {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.answer(statement, session_context, client, None).await
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        let empty = |produce_one_row| {
            LogicalPlan::EmptyRelation(datafusion::logical_expr::EmptyRelation {
                produce_one_row,
                schema: Arc::new(datafusion::common::DFSchema::empty()),
            })
        };
        if let Some(e) = Self::refuse(statement) {
            return Some(Err(e));
        }
        match statement {
            Statement::Set(Set::SingleAssignment { variable, .. })
                if variable.to_string().to_lowercase().starts_with("datafusion.") =>
            {
                Some(Err(pg_error(
                    "42501",
                    format!(
                        "permission denied to set {variable}: the query engine's settings are fixed by the appliance \
                         configuration ([query] in ccmart.toml)"
                    ),
                )))
            }
            // Answered at execution; the plan only describes an answer without columns.
            Statement::Set(_) => Some(Ok(empty(true))),
            Statement::Declare { .. }
            | Statement::Fetch { .. }
            | Statement::Close { .. }
            | Statement::Reset(_)
            | Statement::Discard { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
            | Statement::Rollback { savepoint: Some(_), .. }
            | Statement::UNLISTEN { .. } => Some(Ok(empty(false))),
            _ => None,
        }
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _logical_plan: &LogicalPlan,
        params: &ParamValues,
        session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.answer(statement, session_context, client, Some(params)).await
    }
}

/// A query's rows as protocol rows in `format`, cut off with 54000 past `max_rows` when given.
fn encode_rows(
    stream: BatchStream,
    format: &Format,
    options: Option<Arc<pgwire::types::format::FormatOptions>>,
    max_rows: Option<usize>,
) -> PgWireResult<QueryResponse> {
    use datafusion_postgres::arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
    use futures::StreamExt;
    let fields = Arc::new(arrow_schema_to_pg_fields(&stream.schema(), format, options)?);
    let encode = fields.clone();
    let rows = stream
        .map(move |batch| {
            let rows: Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send> = match batch {
                Ok(b) => encode_recordbatch(encode.clone(), b),
                Err(e) => Box::new(std::iter::once(Err(from_query_error(crate::query::classify(e))))),
            };
            futures::stream::iter(rows)
        })
        .flatten();
    let rows: Pin<Box<dyn Stream<Item = PgWireResult<DataRow>> + Send>> = match max_rows {
        None => Box::pin(rows),
        Some(max) => Box::pin(rows.enumerate().map(move |(i, r)| if i >= max { Err(too_many_rows(max)) } else { r })),
    };
    Ok(QueryResponse::new(fields, rows))
}

fn too_many_rows(max: usize) -> PgWireError {
    pg_error("54000", format!("the result has more than {max} rows (query.max_rows); add LIMIT or narrow the query"))
}

/// The PostgreSQL JDBC driver (DBeaver, Metabase, every JDBC tool) probes unknown types with
/// `typinput = 'pg_catalog.array_in'::regproc`. The catalog's `pg_type.typinput` holds function *names*, so the
/// regproc comparison (an oid) cannot be evaluated there; comparing the names answers the question the driver asks
/// (is this an array type?). This hook rewrites exactly that comparison, for the `typ*` function columns of
/// `pg_type`, and leaves every other statement alone.
struct RegprocNameCompat;

/// `pg_type` columns that name a function (regproc in PostgreSQL).
const REGPROC_COLUMNS: &[&str] = &["typinput", "typoutput", "typreceive", "typsend"];

impl RegprocNameCompat {
    fn rewrite(statement: &Statement) -> Option<Statement> {
        use datafusion::sql::sqlparser::ast::{visit_expressions, visit_expressions_mut, BinaryOperator, Expr, Value};
        use std::ops::ControlFlow;
        let column = |e: &Expr| match e {
            Expr::Identifier(i) => Some(i.value.to_lowercase()),
            Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.to_lowercase()),
            _ => None,
        };
        // The name a `'name'::regproc` became (the compatibility parser turns it into a pg_proc lookup).
        let proc_name = |e: &Expr| -> Option<String> {
            let Expr::Subquery(q) = e else { return None };
            if !q.to_string().contains("pg_proc") {
                return None;
            }
            let mut found = None;
            let _ = visit_expressions(q, |x: &Expr| {
                if let Expr::Value(v) = x {
                    if let Value::SingleQuotedString(s) = &v.value {
                        found = Some(s.trim_start_matches("pg_catalog.").to_string());
                        return ControlFlow::Break(());
                    }
                }
                ControlFlow::Continue(())
            });
            found
        };
        let mut rewritten = statement.clone();
        let mut changed = false;
        let _ = visit_expressions_mut(&mut rewritten, |e: &mut Expr| {
            if let Expr::BinaryOp { left, op: BinaryOperator::Eq, right } = e {
                if column(left).is_some_and(|c| REGPROC_COLUMNS.contains(&c.as_str())) {
                    if let Some(name) = proc_name(right) {
                        **right = Expr::Value(Value::SingleQuotedString(name).with_empty_span());
                        changed = true;
                    }
                }
            }
            ControlFlow::<()>::Continue(())
        });
        changed.then_some(rewritten)
    }
}

/// A statement as the gate left it: a query (or `EXPLAIN` of one) that ccmart plans and runs itself, or another
/// statement, as text, for `datafusion-postgres` and the hooks.
enum Checked {
    Query(Box<Statement>),
    Copy(Box<copy_out::CopyOut>),
    Other(String),
}

/// The PostgreSQL-dialect parser with `datafusion-postgres`'s compatibility rewrites (built once).
fn compat_parser() -> &'static datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser {
    static PARSER: std::sync::OnceLock<datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser> =
        std::sync::OnceLock::new();
    PARSER.get_or_init(datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser::new)
}

fn is_query(statement: &Statement) -> bool {
    matches!(statement, Statement::Query(_) | Statement::Explain { .. })
}

/// Parses `sql` on the SQL threads after the text gate (size and nesting), so nothing deep is ever parsed, printed
/// or planned on the I/O threads.
async fn checked_statements(sql: &str) -> PgWireResult<Vec<Checked>> {
    if sql.len() > crate::query::gate::MAX_STATEMENT_BYTES {
        // Refused before the text is even copied.
        return Err(from_query_error(QueryError::TooComplex(format!(
            "the statement has {} bytes; at most {} are accepted",
            sql.len(),
            crate::query::gate::MAX_STATEMENT_BYTES
        ))));
    }
    let sql = sql.to_owned();
    let job = crate::query::workers::spawn(async move {
        crate::query::gate::check_text(&sql).map_err(from_query_error)?;
        if sql.trim_start().get(..5).is_some_and(|w| w.eq_ignore_ascii_case("move ")) {
            return Err(pg_error(
                "0A000",
                "MOVE is not supported: ccmart's cursors read forward only (FETCH FORWARD n / FETCH NEXT); \
                 scrolling back or to a position would need the whole result kept",
            ));
        }
        let statements = compat_parser()
            .parse(&sql)
            .map_err(|e| from_query_error(QueryError::Syntax(crate::query::syntax_message(&e))))?;
        statements
            .into_iter()
            .map(|s| {
                if is_query(&s) {
                    crate::query::gate::check_statement(&s).map_err(from_query_error)?;
                    Ok(Checked::Query(Box::new(RegprocNameCompat::rewrite(&s).unwrap_or(s))))
                } else if let Some(copy) = copy_out::CopyOut::of(&s)? {
                    crate::query::gate::check_statement(&copy.query).map_err(from_query_error)?;
                    Ok(Checked::Copy(Box::new(copy)))
                } else {
                    Ok(Checked::Other(s.to_string()))
                }
            })
            .collect::<PgWireResult<Vec<_>>>()
    })
    .map_err(|e| pg_error("XX000", e.to_string()))?;
    job.join().await.ok_or_else(|| pg_error("XX000", "the statement's SQL thread stopped unexpectedly"))?
}

/// A `DECLARE`'s parameter values bound into its query, each cast to the type the query gives its placeholder (the
/// `DECLARE` itself was parsed without a plan, so they arrive typed as the client sent them: text, or int2 for a
/// small integer).
fn bind_cursor_parameters(plan: LogicalPlan, params: &ParamValues) -> PgWireResult<LogicalPlan> {
    let ParamValues::List(values) = params else {
        return Err(pg_error("42601", "a cursor's parameters are positional ($1, $2, …)"));
    };
    if values.is_empty() {
        return Ok(plan);
    }
    let invalid = |e: datafusion::error::DataFusionError| pg_error("22023", format!("cursor parameter: {e}"));
    let inferred = plan.get_parameter_types().map_err(invalid)?;
    let mut bound = Vec::with_capacity(values.len());
    for (i, v) in values.iter().enumerate() {
        let mut v = v.clone();
        if let Some(Some(t)) = inferred.get(&format!("${}", i + 1)) {
            if v.value.data_type() != *t {
                v.value = v.value.cast_to(t).map_err(invalid)?;
            }
        }
        bound.push(v);
    }
    plan.with_param_values(ParamValues::List(bound)).map_err(invalid)
}

/// The (0-based) parameters the statement casts to `oid[]` (`$1::oid[]`). The engine holds oids as int4, so the
/// plan infers `int4[]`; described as that, asyncpg — which has a built-in codec for `oid[]` but not for `int4[]` —
/// would introspect `int4[]` with the very statement that declares it, forever. The values are the same 4-byte
/// integers either way.
fn oid_array_parameters(statement: &Statement) -> Vec<usize> {
    use datafusion::sql::sqlparser::ast::{DataType as SqlType, Expr, Value, Visit, Visitor};
    struct Casts(Vec<usize>);
    impl Visitor for Casts {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> std::ops::ControlFlow<()> {
            if let Expr::Cast { expr: inner, data_type, .. } = expr {
                let is_oid_array = match data_type {
                    SqlType::Array(datafusion::sql::sqlparser::ast::ArrayElemTypeDef::SquareBracket(t, _))
                    | SqlType::Array(datafusion::sql::sqlparser::ast::ArrayElemTypeDef::AngleBracket(t)) => {
                        matches!(t.as_ref(), SqlType::Custom(name, _) if name.to_string().eq_ignore_ascii_case("oid"))
                    }
                    _ => false,
                };
                if let (true, Expr::Value(v)) = (is_oid_array, inner.as_ref()) {
                    if let Value::Placeholder(p) = &v.value {
                        if let Some(n) = p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()).filter(|n| *n > 0) {
                            self.0.push(n - 1);
                        }
                    }
                }
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut casts = Casts(Vec::new());
    let _ = statement.visit(&mut casts);
    casts.0
}

/// Binds a portal's parameters to its plan, the way `datafusion-postgres` does: the types the client sent, else
/// the server's (from the parser), else the plan's inferred types.
fn bind_parameters(
    service: &DfSessionService,
    portal: &Portal<PgStatement>,
    plan: &LogicalPlan,
) -> PgWireResult<LogicalPlan> {
    let api = |e: datafusion::error::DataFusionError| PgWireError::ApiError(Box::new(e));
    let wire = service.query_parser().get_parameter_types(&portal.statement.statement)?;
    let wire: Vec<Option<&Type>> = wire.iter().map(Some).collect();
    let mut inferred: Vec<(String, Option<datafusion::arrow::datatypes::DataType>)> =
        plan.get_parameter_types().map_err(api)?.into_iter().collect();
    inferred.sort_by_key(|(k, _)| k.trim_start_matches('$').parse::<u32>().unwrap_or(u32::MAX));
    let inferred: Vec<Option<&datafusion::arrow::datatypes::DataType>> =
        inferred.iter().map(|(_, t)| t.as_ref()).collect();
    let untyped_arrays = untyped_array_literals(portal, &wire, &inferred);
    let params = if untyped_arrays.is_empty() {
        datafusion_postgres::arrow_pg::datatypes::df::deserialize_parameters_with_server_types(
            portal, &inferred, &wire,
        )?
    } else {
        let mut types = portal.statement.parameter_types.clone();
        types.resize(portal.parameter_len(), None);
        for i in untyped_arrays {
            types[i] = Some(Type::TEXT_ARRAY);
        }
        let mut typed = Portal::<PgStatement>::default();
        typed.statement = Arc::new(pgwire::api::stmt::StoredStatement::new(
            portal.statement.id.clone(),
            portal.statement.statement.clone(),
            types,
        ));
        typed.parameter_format = portal.parameter_format.clone();
        typed.parameters = portal.parameters.clone();
        datafusion_postgres::arrow_pg::datatypes::df::deserialize_parameters_with_server_types(
            &typed, &inferred, &wire,
        )?
    };
    plan.clone().replace_params_with_values(&params).map_err(api)
}

/// The parameters a client sent as text without a type that neither the parser nor the plan can type either,
/// written as an array literal (`{"Voice","Chat"}`: what Node `pg` sends for a JavaScript array in `= ANY($1)`).
/// They are read as `text[]`, parsed as PostgreSQL parses array literals (quotes, escapes, `NULL`); the protocol
/// crate's fallback for untyped values split them on commas with their quotes kept, so they matched nothing.
fn untyped_array_literals(
    portal: &Portal<PgStatement>,
    wire: &[Option<&Type>],
    inferred: &[Option<&datafusion::arrow::datatypes::DataType>],
) -> Vec<usize> {
    let unknown = |t: Option<&Type>| t.is_none_or(|t| *t == Type::UNKNOWN);
    (0..portal.parameter_len())
        .filter(|&i| {
            let client = portal.statement.parameter_types.get(i).and_then(|t| t.as_ref());
            let text = matches!(portal.parameter_format.format_for(i), pgwire::api::results::FieldFormat::Text);
            let literal = portal.parameters.get(i).and_then(|p| p.as_ref()).is_some_and(|b| {
                let b = b.trim_ascii();
                b.first() == Some(&b'{') && b.last() == Some(&b'}')
            });
            unknown(client)
                && unknown(wire.get(i).copied().flatten())
                && inferred.get(i).copied().flatten().is_none()
                && text
                && literal
        })
        .collect()
}

impl PgFrontend {
    /// Plans and starts a query of this connection (gate, session settings, SQL threads); its rows are bounded by
    /// [`Self::bounded`].
    async fn run_query<C>(&self, client: &C, version: &Version, statement: Statement) -> PgWireResult<Response>
    where
        C: ClientInfo,
    {
        let ctx = QueryEngine::session_context(&version.ctx, &session_settings(client.metadata()));
        let planned = QueryEngine::plan_statement(ctx.clone(), statement).await.map_err(from_query_error)?;
        check_visibility(client.metadata(), &planned.plan)?;
        let plan = planned.plan;
        let stream = QueryEngine::start(ctx, move || Ok(plan)).await.map_err(from_query_error)?;
        let options = Arc::new(pgwire::types::format::FormatOptions::from_client_metadata(client.metadata()));
        Ok(Response::Query(encode_rows(stream, &Format::UnifiedText, Some(options), None)?))
    }
}

impl PgFrontend {
    /// `COPY (query) TO STDOUT`: the query planned and started like any other (gate, session settings, SQL
    /// threads), its rows streamed as COPY data in the requested format; bounded by [`Self::bounded`].
    async fn run_copy<C>(&self, client: &C, version: &Version, copy: copy_out::CopyOut) -> PgWireResult<Response>
    where
        C: ClientInfo,
    {
        let ctx = QueryEngine::session_context(&version.ctx, &session_settings(client.metadata()));
        let planned = QueryEngine::plan_statement(ctx.clone(), copy.query.clone()).await.map_err(from_query_error)?;
        check_visibility(client.metadata(), &planned.plan)?;
        let plan = planned.plan;
        let stream = QueryEngine::start(ctx, move || Ok(plan)).await.map_err(from_query_error)?;
        copy.respond(stream, self.limits().1)
    }
}

/// Parses extended-protocol statements against the newest snapshot (the plan keeps that snapshot's tables, so a
/// prepared statement reads one consistent version per execution of its plan). Queries are gated and planned on
/// the SQL threads; other statements go to `datafusion-postgres`'s parser and the hooks.
pub struct SnapshotParser {
    sessions: Arc<VersionSessions>,
}

#[async_trait]
impl QueryParser for SnapshotParser {
    type Statement = PgStatement;

    async fn parse_sql<C>(&self, client: &C, sql: &str, types: &[Option<Type>]) -> PgWireResult<Option<PgStatement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let version = self.sessions.current().await?;
        let mut statements = checked_statements(sql).await?;
        if statements.is_empty() {
            return Ok(None);
        }
        // As PostgreSQL: a prepared statement is one statement (the rest used to be dropped silently).
        if statements.len() > 1 {
            return Err(pg_error("42601", "cannot insert multiple commands into a prepared statement"));
        }
        match statements.swap_remove(0) {
            Checked::Query(statement) => {
                let ctx = QueryEngine::session_context(&version.ctx, &session_settings(client.metadata()));
                let planned = QueryEngine::plan_statement(ctx, *statement).await.map_err(from_query_error)?;
                check_visibility(client.metadata(), &planned.plan)?;
                Ok(Some((planned.text, Some((planned.statement, planned.plan)))))
            }
            Checked::Other(text) => version.service.query_parser().parse_sql(client, &text, types).await,
            Checked::Copy(_) => Err(pg_error(
                "0A000",
                "COPY … TO STDOUT is answered in the simple query protocol (as psql, psycopg and asyncpg send it), \
                 not as a prepared statement",
            )),
        }
    }

    fn get_parameter_types(&self, stmt: &PgStatement) -> PgWireResult<Vec<Type>> {
        let mut types = self.newest()?.query_parser().get_parameter_types(stmt)?;
        if let (_, Some((statement, _))) = stmt {
            for i in oid_array_parameters(statement) {
                if types.get(i) == Some(&Type::INT4_ARRAY) {
                    types[i] = Type::OID_ARRAY;
                }
            }
        }
        Ok(types)
    }

    fn get_result_schema(&self, stmt: &PgStatement, column_format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        self.newest()?.query_parser().get_result_schema(stmt, column_format)
    }
}

impl SnapshotParser {
    fn newest(&self) -> PgWireResult<Arc<DfSessionService>> {
        self.sessions
            .newest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| pg_error("55000", "no statement has been parsed yet"))
    }
}

#[async_trait]
impl SimpleQueryHandler for PgFrontend {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let version = self.sessions.current().await?;
        let statements = checked_statements(query).await?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let work = async {
            let mut responses = Vec::with_capacity(statements.len());
            for statement in statements {
                match statement {
                    Checked::Query(s) => responses.push(self.run_query(client, &version, *s).await?),
                    Checked::Copy(c) => responses.push(self.run_copy(client, &version, *c).await?),
                    Checked::Other(text) => {
                        responses.extend(SimpleQueryHandler::do_query(&*version.service, client, &text).await?)
                    }
                }
            }
            Ok(responses)
        };
        self.bounded(work).await
    }
}

#[async_trait]
impl ExtendedQueryHandler for PgFrontend {
    type Statement = PgStatement;
    type QueryParser = SnapshotParser;

    fn query_parser(&self) -> Arc<SnapshotParser> {
        self.parser.clone()
    }

    /// Clamps the row count of an `Execute` before the protocol crate sees it: it reserves room for that many rows
    /// up front, so a client asking for 2^31−1 would abort the process. More than `query.max_rows` rows end in
    /// 54000 anyway.
    async fn on_execute<C>(&self, client: &mut C, mut message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PgStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let most = i32::try_from(self.limits().1.saturating_add(1)).unwrap_or(i32::MAX);
        message.max_rows = if message.max_rows <= 0 { 0 } else { message.max_rows.min(most) };
        self._on_execute(client, message).await
    }

    /// A `FETCH` is described with the columns of the cursor it reads (as text, the form its rows are kept in):
    /// libpq describes the portal of every prepared statement before running it, and psycopg 3 reads a server-side
    /// cursor's rows with that description (with none, it read rows of four columns as rows of none and crashed).
    async fn do_describe_portal<C>(
        &self,
        client: &mut C,
        target: &Portal<PgStatement>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PgStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let (_, Some((Statement::Fetch { name, .. }, _))) = &target.statement.statement {
            let Some(pgwire::api::store::Entry::Value(cursor)) = client.portal_store().get_portal(&name.value) else {
                return Err(pg_error("34000", format!("cursor \"{}\" does not exist", name.value)));
            };
            let fields = self.parser.get_result_schema(&cursor.statement.statement, Some(&Format::UnifiedText))?;
            return Ok(DescribePortalResponse::new(fields));
        }
        let fields = self.parser.get_result_schema(&target.statement.statement, Some(&target.result_column_format))?;
        Ok(DescribePortalResponse::new(fields))
    }

    async fn do_query<C>(&self, client: &mut C, portal: &Portal<PgStatement>, max_rows: usize) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PgStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let version = self.sessions.current().await?;
        let gated = matches!(&portal.statement.statement, (_, Some((s, _))) if is_query(s));
        let mut responses = if gated {
            let ctx = QueryEngine::session_context(&version.ctx, &session_settings(client.metadata()));
            // An owned copy of what binding reads (parameters and their formats), to bind on the SQL threads.
            let mut bound = Portal::<PgStatement>::default();
            bound.name = portal.name.clone();
            bound.statement = portal.statement.clone();
            bound.parameter_format = portal.parameter_format.clone();
            bound.parameters = portal.parameters.clone();
            bound.result_column_format = portal.result_column_format.clone();
            let service = version.service.clone();
            let format = portal.result_column_format.clone();
            let options = Arc::new(pgwire::types::format::FormatOptions::from_client_metadata(client.metadata()));
            let work = async move {
                let stream = QueryEngine::start(ctx, move || {
                    let (_, Some((_, plan))) = &bound.statement.statement else {
                        return Err(QueryError::Invalid("the prepared statement has no plan".into()));
                    };
                    bind_parameters(&service, &bound, plan).map_err(|e| QueryError::Invalid(e.to_string()))
                })
                .await
                .map_err(from_query_error)?;
                Ok(vec![Response::Query(encode_rows(stream, &format, Some(options), None)?)])
            };
            self.bounded(work).await?
        } else {
            let work = async {
                ExtendedQueryHandler::do_query(&*version.service, client, portal, max_rows).await.map(|r| vec![r])
            };
            self.bounded(work).await?
        };
        responses.pop().ok_or_else(|| pg_error("XX000", "the statement produced no response"))
    }
}

/// True when the connection logged in with a reader token (or its role is unknown): it may not read what only
/// operators may ([`crate::query::visibility`]).
fn is_reader(metadata: &std::collections::HashMap<String, String>) -> bool {
    metadata.get(METADATA_ROLE).is_none_or(|r| r != Role::Operator.as_str())
}

/// Refuses a reader's plan that reads operator-only tables (42501).
fn check_visibility(metadata: &std::collections::HashMap<String, String>, plan: &LogicalPlan) -> PgWireResult<()> {
    if is_reader(metadata) {
        crate::query::visibility::reader_may_read(plan).map_err(|e| pg_error("42501", e.to_string()))?;
    }
    Ok(())
}

/// Login with a token secret as the password (cleartext inside the connection; use TLS off loopback). Peer
/// tokens are refused: they are for replication, not for reading the mart.
pub struct TokenLogin {
    tokens: TokenRegistry,
    metrics: ApplianceMetrics,
    pids: RandomPidSecretKeyGenerator,
}

/// Client metadata key holding the role of a logged-in connection.
const METADATA_ROLE: &str = "ccmart.role";

impl TokenLogin {
    fn parameters(time_zone: String) -> DefaultServerParameterProvider {
        let mut p = DefaultServerParameterProvider::default();
        p.server_version = crate::query::postgres::SERVER_VERSION.to_string();
        p.default_transaction_read_only = true;
        p.is_superuser = false;
        p.time_zone = time_zone;
        // PostgreSQL's default; dates are written in ISO form either way.
        p.date_style = "ISO, MDY".to_string();
        p
    }

    async fn accept<C>(&self, client: &mut C, role: Role) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (pid, secret) = self.pids.generate(client);
        client.set_pid_and_secret_key(pid, secret);
        client.metadata_mut().insert(METADATA_ROLE.into(), role.as_str().into());
        let time_zone = apply_startup_settings(client.metadata_mut())?;
        finish_authentication(client, &Self::parameters(time_zone)).await
    }
}

impl TokenLogin {
    /// One startup-phase message. With a `gate` (connections of [`serve_with`]) a locked-out address is refused
    /// before its password is looked at, failures and successes are counted for its address, and a session slot is
    /// taken before the login completes.
    async fn startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
        gate: Option<&LoginGate>,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                if self.tokens.is_open() {
                    // No tokens configured: the configuration allows this only on loopback.
                    if let Some(g) = gate {
                        g.open_session()?;
                    }
                    return self.accept(client, Role::Operator).await;
                }
                if let Some(g) = gate {
                    g.check_throttle()?;
                }
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client.send(PgWireBackendMessage::Authentication(Authentication::CleartextPassword)).await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(pwd) => {
                if let Some(g) = gate {
                    g.check_throttle()?;
                }
                let pwd = pwd.into_password()?;
                let user = client.metadata().get(pgwire::api::METADATA_USER).cloned().unwrap_or_default();
                let failed = |gate: Option<&LoginGate>| {
                    self.metrics.observe_pg_auth_failure();
                    if let Some(g) = gate {
                        g.throttle.failed(g.peer, tokio::time::Instant::now());
                    }
                };
                match self.tokens.authenticate(&pwd.password) {
                    Some(p) if p.role != Role::Peer => {
                        if let Some(g) = gate {
                            g.throttle.succeeded(g.peer);
                            g.open_session()?;
                        }
                        return self.accept(client, p.role).await;
                    }
                    Some(_) => {
                        failed(gate);
                        return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                            "FATAL".into(),
                            "28000".into(),
                            "a peer token is for replication between sites; log in with a reader or operator token"
                                .into(),
                        ))));
                    }
                    None => {
                        failed(gate);
                        return Err(PgWireError::InvalidPassword(user));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[async_trait]
impl StartupHandler for TokenLogin {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.startup(client, message, None).await
    }
}

/// The login of one connection of [`serve_with`]: [`TokenLogin`] with its address's throttle and session slot.
struct ConnectionLogin {
    shared: Arc<TokenLogin>,
    gate: Arc<LoginGate>,
}

#[async_trait]
impl StartupHandler for ConnectionLogin {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.shared.startup(client, message, Some(self.gate.as_ref())).await
    }
}

impl PgWireServerHandlers for PgFrontend {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::new(self.clone())
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::new(self.clone())
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }
}

/// Accepts PostgreSQL connections on `listener` until `shutdown` completes: [`serve_with`] with the default
/// [`ConnectionLimits`] and at most `max_connections` sessions.
pub async fn serve(
    listener: tokio::net::TcpListener,
    frontend: PgFrontend,
    max_connections: usize,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let limits = ConnectionLimits {
        max_connections,
        max_connections_per_client: max_connections.min(DEFAULT_MAX_CONNECTIONS_PER_CLIENT),
        ..ConnectionLimits::default()
    };
    serve_with(listener, frontend, limits, tls, shutdown).await
}
