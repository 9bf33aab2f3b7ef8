//! The PostgreSQL wire protocol, so BI tools (psql, DBeaver, Metabase, Grafana, JDBC/ODBC/libpq drivers) can read the
//! mart without an HTTP adapter.
//!
//! Protocol handling, PostgreSQL's catalog and the SQL dialect come from `datafusion-postgres` (pgwire); this module
//! adds what an appliance needs around it, so a connection gets exactly what an HTTP caller gets:
//! - **Login** with the same tokens as the HTTP API: the password is a token secret (user name free), a reader or
//!   operator token may query, a peer token may not. With no token configured (loopback only) no password is asked.
//! - **Snapshots.** Each statement runs against the newest published mart version (on a standby, the newest
//!   replicated one), through the same cached per-version contexts as `/v1/query`.
//! - **Read-only.** Only queries, `EXPLAIN`, `SHOW`, harmless `SET`s, transactions and cursors are accepted; DDL,
//!   DML, `COPY` and engine settings (`SET datafusion.*`) are refused with SQLSTATE 25006 / 42501, and nothing is
//!   ever written.
//! - **Limits.** The same admission gate (concurrency and queue, SQLSTATE 53000 when full), the same time limit
//!   (57014, covering the rows sent too) and row limit (54000 once a result passes `query.max_rows`), the same
//!   memory pool and size guards.

use super::auth::{Role, TokenRegistry};
use super::metrics::ApplianceMetrics;
use crate::query::{QueryEngine, QueryError, QueryPermit};
use crate::staging::Store;
use async_trait::async_trait;
use connections::LoginGate;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{Set, Statement};
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
use pgwire::api::results::{FieldInfo, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, PgWireConnectionState, PgWireServerHandlers, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
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

mod connections;
pub use connections::{
    serve_with, ConnectionLimits, DEFAULT_IDLE_SESSION_TIMEOUT, DEFAULT_LOGIN_FAILURE_WINDOW,
    DEFAULT_MAX_CONNECTIONS_PER_CLIENT, DEFAULT_MAX_LOGIN_FAILURES, DEFAULT_STARTUP_TIMEOUT,
};

/// Number of mart versions whose protocol sessions are kept (each holds one cached query context).
const SESSION_CACHE: usize = 4;

/// A PostgreSQL error answer with its SQLSTATE.
fn pg_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".into(), code.into(), message.into())))
}

/// The SQLSTATE of a query-engine error.
fn from_query_error(e: QueryError) -> PgWireError {
    let code = match &e {
        QueryError::Busy { .. } => "53000",
        QueryError::Timeout(_) => "57014",
        QueryError::NoSnapshot(_) => "55000",
        _ if e.is_client_error() => "42000",
        _ => "XX000",
    };
    pg_error(code, e.to_string())
}

/// The protocol sessions per mart version: a `datafusion-postgres` service over the engine's cached context of
/// that version, with ccmart's statement policy in front of its own hooks.
struct VersionSessions {
    engine: QueryEngine,
    store: Arc<Store>,
    cache: tokio::sync::Mutex<Vec<(u64, Arc<DfSessionService>)>>,
    /// The newest service, for the parser's synchronous questions (parameter and result types), which depend on
    /// the parsed plan only.
    newest: Mutex<Option<Arc<DfSessionService>>>,
}

impl VersionSessions {
    /// The service of the newest published mart version.
    async fn current(&self) -> PgWireResult<Arc<DfSessionService>> {
        let snapshot =
            self.store.latest_snapshot().map_err(|e| pg_error("XX000", format!("staging: {e}")))?.ok_or_else(|| {
                pg_error("55000", "no mart version has been published yet; the first cycle is still running")
            })?;
        let mut cache = self.cache.lock().await;
        if let Some((_, s)) = cache.iter().find(|(v, _)| *v == snapshot.version) {
            return Ok(s.clone());
        }
        let ctx = self.engine.context(&snapshot).await.map_err(from_query_error)?;
        let hooks: Vec<Arc<dyn QueryHook>> = vec![
            Arc::new(StatementPolicy),
            Arc::new(ReaderVisibility),
            Arc::new(TransactionStatementHook),
            Arc::new(SetShowHook),
            Arc::new(CursorStatementHook),
            Arc::new(RegprocNameCompat),
        ];
        let service = Arc::new(DfSessionService::new_with_hooks(Arc::new(ctx), hooks));
        cache.push((snapshot.version, service.clone()));
        if cache.len() > SESSION_CACHE {
            cache.remove(0);
        }
        *self.newest.lock().unwrap_or_else(|e| e.into_inner()) = Some(service.clone());
        Ok(service)
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
            let responses = tokio::time::timeout_at(deadline, work).await.map_err(|_| timeout_error(limit))??;
            Ok::<_, PgWireError>(
                responses
                    .into_iter()
                    .map(|r| match r {
                        Response::Query(mut q) => {
                            let rows = std::mem::replace(&mut q.data_rows, Box::pin(futures::stream::empty()));
                            q.data_rows = Box::pin(BoundedRows {
                                rows,
                                sent: 0,
                                max_rows,
                                deadline: Box::pin(tokio::time::sleep_until(deadline)),
                                limit,
                                done: false,
                                _permit: permit.clone(),
                                finish: Some((self.metrics.clone(), started)),
                                outcome: "ok",
                            });
                            Response::Query(q)
                        }
                        other => other,
                    })
                    .collect::<Vec<_>>(),
            )
        }
        .await;
        // Query responses report when their last row is sent; everything else is done now.
        let streaming = matches!(&result, Ok(rs) if rs.iter().any(|r| matches!(r, Response::Query(_))));
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

/// A query response's rows, cut off by the statement's deadline and the row limit. Holds the query slot until the
/// stream ends or is dropped (a client that disconnects mid-result frees it too).
struct BoundedRows {
    rows: Pin<Box<dyn Stream<Item = PgWireResult<DataRow>> + Send>>,
    sent: usize,
    max_rows: usize,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
    done: bool,
    _permit: Arc<QueryPermit>,
    finish: Option<(ApplianceMetrics, Instant)>,
    outcome: &'static str,
}

impl BoundedRows {
    fn fail(&mut self, e: PgWireError, outcome: &'static str) -> Poll<Option<PgWireResult<DataRow>>> {
        self.done = true;
        self.outcome = outcome;
        Poll::Ready(Some(Err(e)))
    }
}

impl Stream for BoundedRows {
    type Item = PgWireResult<DataRow>;

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

impl Drop for BoundedRows {
    fn drop(&mut self) {
        if let Some((metrics, started)) = self.finish.take() {
            metrics.observe_pg_statement(self.outcome, started.elapsed().as_secs_f64());
        }
    }
}

/// ccmart's statement policy, asked before `datafusion-postgres`'s own hooks: the mart is read-only and the query
/// engine's settings belong to the appliance configuration, not to a client.
struct StatementPolicy;

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
    "timezone",
    "time zone",
    "standard_conforming_strings",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "jit",
];

impl StatementPolicy {
    /// `None`: the statement may run. `Some(Ok(..))`: answered here without running (a `SET` of a PostgreSQL
    /// server setting that means nothing to ccmart is acknowledged, as PostgreSQL-compatible servers do).
    fn check(statement: &Statement) -> Option<PgWireResult<Response>> {
        match statement {
            Statement::Query(_)
            | Statement::Explain { .. }
            | Statement::ShowVariable { .. }
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
            | Statement::Discard { .. } => None,
            Statement::Set(set) => Self::check_set(set),
            other => {
                let verb = other.to_string().split_whitespace().next().unwrap_or_default().to_uppercase();
                Some(Err(pg_error(
                    "25006",
                    format!(
                        "cannot execute {verb}: ccmart serves a read-only mart; only queries (SELECT, WITH, EXPLAIN, \
                         SHOW) are accepted"
                    ),
                )))
            }
        }
    }

    fn check_set(set: &Set) -> Option<PgWireResult<Response>> {
        let name = match set {
            Set::SingleAssignment { variable, .. } => variable.to_string().to_lowercase(),
            Set::SetTimeZone { .. } => return None,
            // SET SESSION CHARACTERISTICS, SET NAMES, SET ROLE, ...: nothing to change in a read-only snapshot.
            _ => return Some(Ok(Response::Execution(Tag::new("SET")))),
        };
        if CLIENT_SETTINGS.contains(&name.as_str()) {
            return None;
        }
        if name.starts_with("datafusion.") {
            return Some(Err(pg_error(
                "42501",
                format!(
                    "permission denied to set {name}: the query engine's settings are fixed by the appliance \
                     configuration ([query] in ccmart.toml)"
                ),
            )));
        }
        Some(Ok(Response::Execution(Tag::new("SET"))))
    }
}

#[async_trait]
impl QueryHook for StatementPolicy {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        Self::check(statement)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        match Self::check(statement) {
            Some(Err(e)) => Some(Err(e)),
            // Acknowledged SETs still need a plan: the SET hook after this one makes an empty one.
            _ => None,
        }
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        Self::check(statement)
    }
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

#[async_trait]
impl QueryHook for RegprocNameCompat {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let rewritten = Self::rewrite(statement)?;
        let answer = async {
            let df =
                session_context.sql(&rewritten.to_string()).await.map_err(|e| PgWireError::ApiError(Box::new(e)))?;
            let options = Arc::new(pgwire::types::format::FormatOptions::from_client_metadata(client.metadata()));
            let response =
                datafusion_postgres::arrow_pg::datatypes::df::encode_dataframe(df, &Format::UnifiedText, Some(options))
                    .await?;
            Ok(Response::Query(response))
        };
        Some(answer.await)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        let rewritten = Self::rewrite(statement)?;
        let plan = session_context
            .state()
            .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(rewritten)))
            .await
            .map_err(|e| PgWireError::ApiError(Box::new(e)));
        Some(plan)
    }

    async fn handle_extended_query(
        &self,
        _statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        // The plan made at parse time is already the rewritten one.
        None
    }
}

/// Parses extended-protocol statements against the newest snapshot (the plan keeps that snapshot's tables, so a
/// prepared statement reads one consistent version per execution of its plan).
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
        let service = self.sessions.current().await?;
        service.query_parser().parse_sql(client, sql, types).await
    }

    fn get_parameter_types(&self, stmt: &PgStatement) -> PgWireResult<Vec<Type>> {
        self.newest()?.query_parser().get_parameter_types(stmt)
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
        let service = self.sessions.current().await?;
        self.bounded(SimpleQueryHandler::do_query(&*service, client, query)).await
    }
}

#[async_trait]
impl ExtendedQueryHandler for PgFrontend {
    type Statement = PgStatement;
    type QueryParser = SnapshotParser;

    fn query_parser(&self) -> Arc<SnapshotParser> {
        self.parser.clone()
    }

    async fn do_query<C>(&self, client: &mut C, portal: &Portal<PgStatement>, max_rows: usize) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PgStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let service = self.sessions.current().await?;
        let work = async { ExtendedQueryHandler::do_query(&*service, client, portal, max_rows).await.map(|r| vec![r]) };
        let mut responses = self.bounded(work).await?;
        responses.pop().ok_or_else(|| pg_error("XX000", "the statement produced no response"))
    }
}

/// Refuses readers' statements that read what only operators may (the engine's settings, see
/// [`crate::query::visibility`]) with SQLSTATE 42501; operators' statements pass.
struct ReaderVisibility;

impl ReaderVisibility {
    fn is_reader(metadata: &std::collections::HashMap<String, String>) -> bool {
        metadata.get(METADATA_ROLE).is_none_or(|r| r != Role::Operator.as_str())
    }

    fn check(plan: &LogicalPlan) -> PgWireResult<()> {
        crate::query::visibility::reader_may_read(plan).map_err(|e| pg_error("42501", e.to_string()))
    }

    /// Plans `statement` to look at it; one that does not plan is left to the handlers after this one.
    async fn check_statement(statement: &Statement, ctx: &SessionContext) -> PgWireResult<()> {
        let parsed = datafusion::sql::parser::Statement::Statement(Box::new(statement.clone()));
        match ctx.state().statement_to_plan(parsed).await {
            Ok(plan) => Self::check(&plan),
            Err(_) => Ok(()),
        }
    }
}

#[async_trait]
impl QueryHook for ReaderVisibility {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if !Self::is_reader(client.metadata()) {
            return None;
        }
        Self::check_statement(statement, session_context).await.err().map(Err)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        if !Self::is_reader(client.metadata()) {
            return None;
        }
        Self::check_statement(statement, session_context).await.err().map(Err)
    }

    async fn handle_extended_query(
        &self,
        _statement: &Statement,
        logical_plan: &LogicalPlan,
        _params: &ParamValues,
        _session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if !Self::is_reader(client.metadata()) {
            return None;
        }
        Self::check(logical_plan).err().map(Err)
    }
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
    fn parameters() -> DefaultServerParameterProvider {
        let mut p = DefaultServerParameterProvider::default();
        p.default_transaction_read_only = true;
        p.is_superuser = false;
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
        finish_authentication(client, &Self::parameters()).await
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
