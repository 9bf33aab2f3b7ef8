//! Prometheus metrics: what an operator's monitoring needs to alert on (an IDB unreachable, a pair waiting or
//! proceeding without an IDB, a stale mart, failing cycles, refused requests).
//!
//! Each appliance owns its own recorder (not the process-global one), so several appliances in one process — the
//! tests — never mix their series. Gauges are set from the [`ApplianceStatus`] after every cycle, so `/metrics`
//! and `/v1/status` always tell the same story; the label sets are bounded by the configuration (IDBs, pairs,
//! route templates), never by user input.

use super::ApplianceStatus;
use crate::model::wire::paths;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use std::sync::Arc;
use std::time::Instant;

/// Histogram buckets of the cycle duration, seconds.
const CYCLE_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];
/// Histogram buckets of HTTP request durations, seconds.
const REQUEST_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The metrics of one appliance. Cheap to clone; clones share the series.
#[derive(Clone)]
pub struct ApplianceMetrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for ApplianceMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApplianceMetrics")
    }
}

impl Default for ApplianceMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ApplianceMetrics {
    /// A fresh set of series, each described (HELP) so a scrape is self-explanatory.
    pub fn new() -> Self {
        let builder = PrometheusBuilder::new();
        // Both bucket lists are non-empty constants, the only way these calls can fail.
        let builder = builder
            .set_buckets_for_metric(Matcher::Full("ccmart_cycle_duration_seconds".into()), CYCLE_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full("ccmart_http_request_duration_seconds".into()), REQUEST_BUCKETS)
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("ccmart_pgwire_statement_duration_seconds".into()),
                    REQUEST_BUCKETS,
                )
            })
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let m = ApplianceMetrics { recorder: Arc::new(recorder), handle };
        m.record(describe);
        m
    }

    /// Runs `f` with this appliance's recorder, so `metrics` macros inside it land in this appliance's series
    /// (several appliances may run in one process, e.g. in tests).
    pub fn record<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(self.recorder.as_ref(), f)
    }

    /// Sets the on-disk size of each mart table: Parquet files and bytes under its directory (every version kept
    /// until vacuum), so disk growth and small-file build-up are visible per table.
    pub fn observe_mart_storage(&self, mart_root: &std::path::Path) {
        let sizes: Vec<(&str, u64, u64)> = crate::transform::schema::MART_TABLES
            .iter()
            .map(|t| {
                let (files, bytes) = crate::maintenance::storage_of(&mart_root.join(t.name));
                (t.name, files, bytes)
            })
            .collect();
        self.record(|| {
            for (table, files, bytes) in sizes {
                gauge!("ccmart_mart_table_files", "table" => table).set(files as f64);
                gauge!("ccmart_mart_table_bytes", "table" => table).set(bytes as f64);
            }
        });
    }

    /// Records one pipeline cycle (its duration and outcome) and sets every gauge from the status it produced.
    pub fn observe_cycle(&self, status: &ApplianceStatus, now: i64) {
        self.record(|| {
            if let Some(c) = &status.last_cycle {
                histogram!("ccmart_cycle_duration_seconds").record(c.duration_ms as f64 / 1000.0);
                let outcome = if c.error.is_some() { "error" } else { "ok" };
                counter!("ccmart_cycles_total", "outcome" => outcome).increment(1);
            }
            gauge!("ccmart_mart_version").set(status.mart_version.unwrap_or(0) as f64);
            gauge!("ccmart_epoch").set(status.epoch as f64);
            gauge!("ccmart_role_active").set(if status.role == "active" { 1.0 } else { 0.0 });
            if let Some(p) = &status.peer {
                gauge!("ccmart_peer_reachable").set(if p.reachable { 1.0 } else { 0.0 });
            }
            if let Some(r) = &status.replication {
                gauge!("ccmart_replication_versions_behind").set(r.versions_behind as f64);
                gauge!("ccmart_replication_lag_seconds").set(r.lag_seconds.unwrap_or(0) as f64);
                counter!("ccmart_replication_bytes_received_total").absolute(r.bytes_received);
            }
            if let Some(end) = status.newest_interaction_end_ts {
                gauge!("ccmart_newest_interaction_end_timestamp_seconds").set(end as f64);
                gauge!("ccmart_freshness_seconds").set((now - end).max(0) as f64);
            }
            if let Some(clock) = status.data_clock {
                gauge!("ccmart_data_clock_timestamp_seconds").set(clock as f64);
            }
            gauge!("ccmart_quarantined_rows").set(status.quarantined_rows as f64);
            gauge!("ccmart_ignored_sites").set(status.ignored_sites.len() as f64);
            for i in &status.idbs {
                let idb = i.idb.clone();
                gauge!("ccmart_idb_reachable", "idb" => idb.clone()).set(if i.reachable { 1.0 } else { 0.0 });
                let failing = i.failing_since.map_or(0, |t| (now - t).max(0));
                gauge!("ccmart_idb_failing_seconds", "idb" => idb.clone()).set(failing as f64);
                counter!("ccmart_idb_rows_extracted_total", "idb" => idb.clone()).absolute(i.rows_staged);
                gauge!("ccmart_idb_quarantined_rows", "idb" => idb.clone()).set(i.rows_quarantined as f64);
                if i.schema_checked_at.is_some() {
                    // Every contract table, so a table fixed since the last check drops back to 0.
                    for spec in crate::source::contract::EXTRACTED_TABLES {
                        let n = i.schema_problems.iter().find(|t| t.table == spec.name).map_or(0, |t| {
                            if t.missing_table {
                                1
                            } else {
                                t.problems.len()
                            }
                        });
                        let labels = [("idb", idb.clone()), ("table", spec.name.to_string())];
                        gauge!("ccmart_idb_schema_problems", &labels).set(n as f64);
                    }
                }
                gauge!("ccmart_idb_unreadable_tables", "idb" => idb).set(i.unreadable_tables.len() as f64);
            }
            for p in &status.pairs {
                if let Some(r) = p.ready_through {
                    gauge!("ccmart_pair_ready_through_timestamp_seconds", "pair" => p.pair.clone()).set(r as f64);
                }
                for member in &p.members {
                    let wait = p.waits.iter().find(|w| &w.idb == member);
                    let labels = [("pair", p.pair.clone()), ("idb", member.clone())];
                    let waiting = wait.is_some_and(|w| !w.stuck);
                    let stuck = wait.is_some_and(|w| w.stuck);
                    gauge!("ccmart_pair_waiting", &labels).set(if waiting { 1.0 } else { 0.0 });
                    gauge!("ccmart_pair_proceeding_without", &labels).set(if stuck { 1.0 } else { 0.0 });
                    gauge!("ccmart_pair_idb_behind_seconds", &labels).set(wait.map_or(0, |w| w.behind_secs) as f64);
                    gauge!("ccmart_pair_waiting_since_timestamp_seconds", &labels)
                        .set(wait.map_or(0, |w| w.waiting_since) as f64);
                    let ignored = p.ignored.contains(member);
                    gauge!("ccmart_pair_idb_ignored", &labels).set(if ignored { 1.0 } else { 0.0 });
                }
            }
        });
        self.handle.run_upkeep();
    }

    /// Records one answered HTTP request. `endpoint` is the route template (`/v1/reports/:name`), never the raw
    /// path, so clients cannot create series.
    pub fn observe_request(&self, endpoint: &str, status: StatusCode, seconds: f64) {
        let endpoint = endpoint.to_string();
        self.record(|| {
            let code = status.as_u16().to_string();
            counter!("ccmart_http_requests_total", "endpoint" => endpoint.clone(), "status" => code).increment(1);
            histogram!("ccmart_http_request_duration_seconds", "endpoint" => endpoint.clone()).record(seconds);
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                counter!("ccmart_auth_failures_total", "endpoint" => endpoint).increment(1);
            }
        });
    }

    /// Records one statement answered over the PostgreSQL protocol: `outcome` is `ok` or the SQLSTATE class of the
    /// error (`57` canceled/timeout, `53` busy, `42` bad SQL, ...), so the label set stays small.
    pub fn observe_pg_statement(&self, outcome: &str, seconds: f64) {
        let outcome = outcome.to_string();
        self.record(|| {
            counter!("ccmart_pgwire_statements_total", "outcome" => outcome).increment(1);
            histogram!("ccmart_pgwire_statement_duration_seconds").record(seconds);
        });
    }

    /// Records a PostgreSQL-protocol login refused (bad password, or a token whose role may not query).
    pub fn observe_pg_auth_failure(&self) {
        self.record(|| counter!("ccmart_auth_failures_total", "endpoint" => "pgwire").increment(1));
    }

    /// Counts a connection closed unserved (`listener`: `http` or `pgwire`; `reason`: the limit that closed it).
    pub fn observe_connection_refused(&self, listener: &'static str, reason: &'static str) {
        self.record(|| {
            counter!("ccmart_connections_refused_total", "listener" => listener, "reason" => reason).increment(1)
        });
    }

    /// Adds `delta` (+1 on accept, −1 on close) to the open PostgreSQL-protocol connections.
    pub fn observe_pg_connections(&self, delta: f64) {
        self.record(|| gauge!("ccmart_pgwire_connections").increment(delta));
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        self.handle.run_upkeep();
        self.handle.render()
    }
}

fn describe() {
    describe_histogram!("ccmart_cycle_duration_seconds", Unit::Seconds, "Duration of one pipeline cycle.");
    describe_counter!(
        "ccmart_connections_refused_total",
        "Connections closed unserved, by listener (http, pgwire) and the limit that closed them."
    );
    describe_counter!("ccmart_cycles_total", "Pipeline cycles by outcome (ok, error).");
    describe_gauge!("ccmart_mart_version", "Newest published mart version (0: none yet).");
    describe_gauge!("ccmart_epoch", "Fencing epoch of this appliance's role.");
    describe_gauge!("ccmart_role_active", "1 when this appliance is active (writes its mart), 0 when standby.");
    describe_gauge!("ccmart_peer_reachable", "1 when the last check of the peer site succeeded.");
    describe_gauge!("ccmart_replication_versions_behind", "Standby: mart versions the active serves and this not yet.");
    describe_gauge!("ccmart_replication_lag_seconds", "Standby: seconds since the served version was published.");
    describe_counter!("ccmart_replication_bytes_received_total", "Standby: bytes of mart files received.");
    describe_gauge!("ccmart_mart_table_files", "Parquet files of the mart table on disk (all versions until vacuum).");
    describe_gauge!("ccmart_mart_table_bytes", Unit::Bytes, "Bytes of the mart table's Parquet files on disk.");
    describe_gauge!("ccmart_newest_interaction_end_timestamp_seconds", "End of the newest interaction visible.");
    describe_gauge!("ccmart_freshness_seconds", Unit::Seconds, "Now minus the end of the newest visible interaction.");
    describe_gauge!("ccmart_data_clock_timestamp_seconds", "Newest heartbeat (LEVENT_ITIME) of any IDB.");
    describe_gauge!("ccmart_quarantined_rows", "Rows held in quarantine (malformed IDB rows).");
    describe_gauge!("ccmart_ignored_sites", "Sites whose IDBs the merge does not wait for.");
    describe_gauge!("ccmart_idb_reachable", "1 when the last extraction from the IDB succeeded.");
    describe_gauge!("ccmart_idb_failing_seconds", Unit::Seconds, "How long the IDB has been failing (0: it is not).");
    describe_counter!("ccmart_idb_rows_extracted_total", "Rows staged from the IDB since the appliance started.");
    describe_gauge!("ccmart_idb_quarantined_rows", "Rows of the IDB held in quarantine.");
    describe_gauge!(
        "ccmart_idb_schema_problems",
        "Columns of the IDB table that are missing or typed differently from the contract (1 for a missing table)."
    );
    describe_gauge!("ccmart_idb_unreadable_tables", "Tables of the IDB not extracted in the last pass.");
    describe_gauge!(
        "ccmart_pair_ready_through_timestamp_seconds",
        "Interactions of the pair ending before this are reported."
    );
    describe_gauge!("ccmart_pair_waiting", "1 while the HA pair holds data back waiting for this IDB.");
    describe_gauge!(
        "ccmart_pair_proceeding_without",
        "1 while the pair proceeds without this IDB (past the stuck threshold)."
    );
    describe_gauge!(
        "ccmart_pair_idb_behind_seconds",
        Unit::Seconds,
        "How far (data time) this IDB is behind the newest IDB."
    );
    describe_gauge!(
        "ccmart_pair_waiting_since_timestamp_seconds",
        "When ccmart first saw this IDB behind (0: it is not)."
    );
    describe_gauge!("ccmart_pair_idb_ignored", "1 when this IDB's site is ignored (disaster recovery).");
    describe_counter!("ccmart_http_requests_total", "HTTP requests by route template and status code.");
    describe_histogram!("ccmart_http_request_duration_seconds", Unit::Seconds, "HTTP request duration by route.");
    describe_counter!(
        "ccmart_auth_failures_total",
        "Requests refused with 401 or 403, and PostgreSQL-protocol logins refused (endpoint=pgwire)."
    );
    describe_counter!(
        "ccmart_pgwire_statements_total",
        "PostgreSQL-protocol statements by outcome (ok or SQLSTATE class)."
    );
    describe_histogram!(
        "ccmart_pgwire_statement_duration_seconds",
        Unit::Seconds,
        "PostgreSQL-protocol statement duration, until its last row is sent."
    );
    describe_gauge!("ccmart_pgwire_connections", "Open PostgreSQL-protocol connections.");
}

/// Axum middleware counting every request of the API router by route template and status.
pub async fn track_requests(State(metrics): State<ApplianceMetrics>, req: Request, next: Next) -> Response {
    // Route parameters are written `:name` in the label: some text-format parsers mishandle braces in values.
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched".to_string(), |p| p.as_str().replace('{', ":").replace('}', ""));
    let started = Instant::now();
    let response = next.run(req).await;
    metrics.observe_request(&endpoint, response.status(), started.elapsed().as_secs_f64());
    response
}

/// The router of the metrics listener: `GET /metrics` in the Prometheus text format (version 0.0.4).
pub fn metrics_router(metrics: ApplianceMetrics, tokens: super::auth::TokenRegistry) -> Router {
    Router::new()
        .route(paths::METRICS, get(render))
        .with_state(metrics.clone())
        .layer(axum::middleware::from_fn_with_state(tokens, super::auth::require_token))
        .layer(axum::middleware::from_fn_with_state(metrics, track_requests))
}

async fn render(State(metrics): State<ApplianceMetrics>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics.render())
}

/// Serves [`metrics_router`] on `listener` until `shutdown` completes.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: ApplianceMetrics,
    tokens: super::auth::TokenRegistry,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = metrics_router(metrics.clone(), tokens);
    super::listener::serve_router(listener, router, super::HttpLimits::default(), None, metrics, shutdown).await
}
