//! The wire protocol of the appliance's HTTP API, defined once: the route paths ([`paths`]), the custom headers
//! ([`headers`]) and the JSON bodies that ccmart itself sends or reads (appliance ↔ appliance: fencing, replication,
//! switchover, comparison; command line → appliance: query, export, digest, promote, sources).
//!
//! Rules of this module:
//! - no I/O, no HTTP client, no axum: only paths, names and `Serialize + Deserialize` types, so the server (which
//!   serializes) and the peer client `replicate::client` (which deserializes) cannot drift apart;
//! - the JSON field names are exactly those served today (checked against `serve/mod.rs`, `serve/admin.rs`,
//!   `serve/replication.rs`, `query/digest.rs`, `model/fence.rs`, `replicate/sync.rs` at the time of writing);
//! - each type is defined here once; the modules that build or act on one (`serve`, `replicate::sync`, `staging`
//!   for [`MartSnapshot`]) re-export it;
//! - like all of `model`, it imports nothing of the crate outside `model` (no cycle, any stage may use it).
//!
//! Types served but read by no ccmart client (so they stay where they are, `Serialize` only): `serve::TableList` /
//! `TableInfo` / `ColumnInfo` (`GET /v1/tables`), `serve::format::QueryAnswer` (JSON answers of `/v1/query` and
//! `/v1/reports/{name}`; the CLI prints the raw body), `serve::ReportList` (`GET /v1/reports`), the full
//! `model::status::ApplianceStatus` tree (see [`StatusSummary`]), the OpenAPI document and the Prometheus text.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

// ---------------------------------------------------------------------------------------------------------------
// Fencing and replication.
// ---------------------------------------------------------------------------------------------------------------

/// Role and epoch (`GET /v1/replication/fence` inside [`PeerFence`], the answer of `POST /v1/admin/promote`,
/// inside `SteppedDown`), and the fence answer itself: `{"site": .., "fence": {"role", "epoch", "since", "reason",
/// "split_brain"}}`. Already in `model::fence`; re-exported so the protocol reads as one module.
pub use super::fence::{Fence, PeerFence, Role};

/// Answer of `POST /v1/admin/demote`.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct SteppedDown {
    /// The new fence: standby at the same epoch.
    pub fence: Fence,
    /// The last mart version this site wrote: the standby must hold exactly this version before it is promoted.
    pub mart_version: Option<u64>,
}

/// One file of the active site's mart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ManifestFile {
    /// Path relative to the mart directory, `/`-separated.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// BLAKE3 of the content, hex.
    pub blake3: String,
}

/// What the active site serves: its files and the mart versions they make up.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Manifest {
    /// Site, role and epoch of the sender.
    pub fence: PeerFence,
    /// Queryable mart versions, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub versions: Vec<MartSnapshot>,
    /// Every file under the mart directory.
    pub files: Vec<ManifestFile>,
}

/// One consistent mart version: the Delta version of every mart table that belongs to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MartSnapshot {
    /// Mart version (1, 2, ...).
    pub version: u64,
    /// Mart table → Delta table version.
    pub tables: BTreeMap<String, u64>,
    /// When it was published (epoch seconds).
    pub published_at: i64,
    /// Newest interaction end time visible in this version (freshness), if any.
    pub newest_end_ts: Option<i64>,
}

// ---------------------------------------------------------------------------------------------------------------
// Paths.
// ---------------------------------------------------------------------------------------------------------------

/// Every route path exactly as `serve::router` (`serve/mod.rs:306-323`) and `serve::metrics::metrics_router` serve
/// it, in axum's template syntax (`{param}`), which is also what `serve::auth::ROUTE_ACCESS` and the OpenAPI
/// document use. The router, `ROUTE_ACCESS` and `#[utoipa::path(path = ..)]` (utoipa-gen 5.5 accepts an expression
/// there) should all name these constants; the functions build concrete paths for a client.
pub mod paths {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

    /// `GET`: the status page (HTML, no token).
    pub const STATUS_PAGE: &str = "/";
    /// `GET`: liveness (no token) → [`super::Health`].
    pub const HEALTHZ: &str = "/healthz";
    /// `GET` → `model::status::ApplianceStatus` (a client reads [`super::StatusSummary`]).
    pub const STATUS: &str = "/v1/status";
    /// `GET` → `serve::TableList`.
    pub const TABLES: &str = "/v1/tables";
    /// `POST` [`super::QueryRequest`] → JSON / CSV / Arrow IPC / Parquet by `format`.
    pub const QUERY: &str = "/v1/query";
    /// `GET` with [`super::ExportParams`] → Parquet file. Template; see [`export`].
    pub const EXPORT: &str = "/v1/export/{table}";
    /// `GET` → `serve::ReportList`.
    pub const REPORTS: &str = "/v1/reports";
    /// `GET` with the report's parameters → like `/v1/query`. Template; see [`report`].
    pub const REPORT: &str = "/v1/reports/{name}";
    /// `GET` with [`super::DigestParams`] → [`super::DigestList`].
    pub const DIGEST: &str = "/v1/digest";
    /// `GET` with [`super::DigestParams`] (`table` required; `day` for partitioned tables) → [`super::RowDigests`].
    pub const DIGEST_ROWS: &str = "/v1/digest/rows";
    /// `POST` (no body) → [`super::SourceChange`]. Template; see [`admin_source`].
    pub const ADMIN_SOURCE: &str = "/v1/admin/sources/{site}/{action}";
    /// `POST` (no body) → 202 [`super::MaintenanceScheduled`].
    pub const ADMIN_MAINTENANCE: &str = "/v1/admin/maintenance";
    /// `POST` (no body) → [`super::Fence`].
    pub const ADMIN_PROMOTE: &str = "/v1/admin/promote";
    /// `POST` (no body) → `SteppedDown` .
    pub const ADMIN_DEMOTE: &str = "/v1/admin/demote";
    /// `GET` → [`super::PeerFence`].
    pub const REPLICATION_FENCE: &str = "/v1/replication/fence";
    /// `GET` → `Manifest` .
    pub const REPLICATION_MANIFEST: &str = "/v1/replication/manifest";
    /// `GET` with [`super::FileParams`] → the file (`application/octet-stream`, BLAKE3 in
    /// [`super::headers::BLAKE3`]).
    pub const REPLICATION_FILE: &str = "/v1/replication/file";
    /// `GET` → the OpenAPI 3.1 document (no token).
    pub const OPENAPI: &str = "/v1/openapi.json";
    /// `GET` on the metrics listener (`appliance.metrics_listen`, not the API router) → Prometheus text.
    pub const METRICS: &str = "/metrics";

    /// Every path above, for the test that holds them equal to `serve::auth::ROUTE_ACCESS` (in
    /// `replicate::client`'s tests: this module imports nothing outside `model`).
    pub const ALL: &[&str] = &[
        STATUS_PAGE,
        HEALTHZ,
        STATUS,
        TABLES,
        QUERY,
        EXPORT,
        REPORTS,
        REPORT,
        DIGEST,
        DIGEST_ROWS,
        ADMIN_SOURCE,
        ADMIN_MAINTENANCE,
        ADMIN_PROMOTE,
        ADMIN_DEMOTE,
        REPLICATION_FENCE,
        REPLICATION_MANIFEST,
        REPLICATION_FILE,
        OPENAPI,
        METRICS,
    ];

    /// Characters left as they are in a path segment (RFC 3986 unreserved); everything else is percent-encoded, so
    /// a `/`, `?` or `#` in a value can never change which route is called. axum decodes the segment again.
    const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

    fn segment(s: &str) -> String {
        utf8_percent_encode(s, SEGMENT).to_string()
    }

    /// `/v1/export/{table}` for `table`.
    pub fn export(table: &str) -> String {
        format!("/v1/export/{}", segment(table))
    }

    /// `/v1/reports/{name}` for `name`.
    pub fn report(name: &str) -> String {
        format!("/v1/reports/{}", segment(name))
    }

    /// `/v1/admin/sources/{site}/{action}`.
    pub fn admin_source(site: &str, action: super::SourceAction) -> String {
        format!("/v1/admin/sources/{}/{}", segment(site), action.as_str())
    }
}

/// Custom response headers `serve` sets.
pub mod headers {
    /// BLAKE3 (hex) of a file of `GET /v1/replication/file` (`serve/replication.rs`).
    pub const BLAKE3: &str = "x-ccmart-blake3";
    /// Mart version of a CSV / Arrow / Parquet answer and of an export (`serve/format.rs`, `serve/mod.rs`).
    pub const MART_VERSION: &str = "x-ccmart-mart-version";
    /// Rows of a CSV / Arrow / Parquet answer.
    pub const ROW_COUNT: &str = "x-ccmart-row-count";
    /// `true` when a CSV / Arrow / Parquet answer was cut by `query.max_rows` / `query.max_result_mb`.
    pub const TRUNCATED: &str = "x-ccmart-truncated";
    /// `active` or `standby`: who answered a query or an export.
    pub const ROLE: &str = "x-ccmart-role";
    /// On a standby: seconds its mart is behind the active's.
    pub const LAG_SECONDS: &str = "x-ccmart-lag-seconds";
}

// ---------------------------------------------------------------------------------------------------------------
// Error answers.
// ---------------------------------------------------------------------------------------------------------------

/// Every error answer of the API: `{"error": {"code": .., "message": ..}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code (`read_only`, `timeout`, `busy`, `unauthorized`, ...; see the README).
    pub code: String,
    /// What happened and what to do, for people.
    pub message: String,
    /// PostgreSQL's SQLSTATE of a query error (`42P01` unknown table, `42703` unknown column, `42601` syntax, …),
    /// the same code the PostgreSQL protocol answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
}

// ---------------------------------------------------------------------------------------------------------------
// Operations.
// ---------------------------------------------------------------------------------------------------------------

/// Answer of `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok` while the process serves.
    pub status: String,
    /// Newest published mart version, if any.
    pub mart_version: Option<u64>,
}

/// What a client reads of `GET /v1/status`: the head of `model::status::ApplianceStatus`, with its field names.
///
/// Not a second definition of the status: the server keeps serializing `ApplianceStatus` (whose nested types —
/// `IdbHealth`, `TableCheck`, `CodeDictionaryCheck`, `PairStatus`, `CycleSummary`, ... — are `Serialize` only and
/// belong to their stages). Unknown fields are ignored, so this view keeps decoding while the status grows; the
/// test below decodes a served `ApplianceStatus` into it so a renamed field fails at `cargo test`, not in a
/// switchover. If a client ever needs the whole status, move `ApplianceStatus` and its tree here with `Deserialize`
/// and delete this view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusSummary {
    /// Site of the appliance.
    pub site: String,
    /// `active` or `standby`.
    pub role: String,
    /// Fencing epoch of `role`.
    pub epoch: u64,
    /// Why it has its role.
    pub role_reason: String,
    /// Newest published (active) or replicated (standby) mart version.
    pub mart_version: Option<u64>,
    /// End time of the newest interaction visible (epoch seconds).
    pub newest_interaction_end_ts: Option<i64>,
    /// Now minus `newest_interaction_end_ts`, seconds.
    pub freshness_secs: Option<i64>,
    /// Rows in quarantine.
    pub quarantined_rows: u64,
    /// Sites whose IDBs the merge does not wait for.
    pub ignored_sites: Vec<String>,
}

/// Answer of `POST /v1/admin/maintenance` (status 202).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MaintenanceScheduled {
    /// Always true: maintenance runs after the current cycle.
    pub scheduled: bool,
    /// False when a run was already requested and has not started yet.
    pub newly_requested: bool,
    /// Where to see what it did.
    pub results: String,
}

/// The `{action}` of `POST /v1/admin/sources/{site}/{action}`. New: the server keeps its `String` path parameter
/// and its own error text for an unknown action (`'{other}': use ignore or restore`); it may use [`Self::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceAction {
    /// Stop waiting for the site's IDBs.
    Ignore,
    /// Wait for them again.
    Restore,
}

impl SourceAction {
    /// The path segment.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceAction::Ignore => "ignore",
            SourceAction::Restore => "restore",
        }
    }

    /// `ignore` or `restore`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ignore" => Some(SourceAction::Ignore),
            "restore" => Some(SourceAction::Restore),
            _ => None,
        }
    }
}

/// Answer of `POST /v1/admin/sources/{site}/{action}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SourceChange {
    /// The site.
    pub site: String,
    /// Whether its IDBs are now ignored.
    pub ignored: bool,
    /// False when it already was in that state.
    pub changed: bool,
}

// ---------------------------------------------------------------------------------------------------------------
// Queries and exports.
// ---------------------------------------------------------------------------------------------------------------

/// Body of `POST /v1/query`. the server keeps
/// `deny_unknown_fields`, a client leaves out what it does not set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// One read-only SQL statement.
    pub sql: String,
    /// `json` (default), `csv`, `arrow` (IPC stream) or `parquet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Query an older published mart version instead of the newest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mart_version: Option<u64>,
    /// The request's session time zone (default `UTC`), as `SET TimeZone` sets it over the PostgreSQL protocol:
    /// `now()`, `to_timestamp(…)` and `timestamptz` values are shown in it, `to_char` and `AT TIME ZONE` use it.
    /// It applies to this request only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// How JSON answers write 64-bit integers: `number` (default) or `string`. JavaScript's `JSON.parse` rounds
    /// integers beyond 2^53 (every surrogate key), so a browser or Node client asks for `string` to keep them exact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int64: Option<String>,
}

/// Query string of `GET /v1/export/{table}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    /// First day (YYYY-MM-DD), inclusive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Last day (YYYY-MM-DD), inclusive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Mart version (default: newest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mart_version: Option<u64>,
    /// `false`: leave a partitioned table's `day` column out of the file, for a Hive layout whose directory names
    /// (`day=YYYY-MM-DD`) carry it, as `ccmart export --snapshot` writes (default `true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day_column: Option<bool>,
}

// ---------------------------------------------------------------------------------------------------------------
// Digests (active-active comparison, `ccmart digest`).
// ---------------------------------------------------------------------------------------------------------------

/// Query string of `GET /v1/digest` and `GET /v1/digest/rows`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DigestParams {
    /// One table (default: all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// One day (YYYY-MM-DD; default: all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    /// Mart version (default: newest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mart_version: Option<u64>,
}

/// The digest of one partition (one day of one table; `day` is empty for unpartitioned tables), computed by
/// `query::digest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PartitionDigest {
    /// Mart table.
    pub table: String,
    /// Day partition (`YYYY-MM-DD`), empty for unpartitioned tables.
    pub day: String,
    /// Rows in the partition.
    pub rows: u64,
    /// BLAKE3 of the rows in key order, hex.
    pub digest: String,
}

/// Answer of `GET /v1/digest`. The offline `ccmart digest --data-dir` prints the
/// same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DigestList {
    /// Mart version digested.
    pub mart_version: u64,
    /// One per table and day.
    pub digests: Vec<PartitionDigest>,
}

/// Answer of `GET /v1/digest/rows`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RowDigests {
    /// Mart version digested.
    pub mart_version: u64,
    /// Table.
    pub table: String,
    /// Day partition, if the table is partitioned.
    pub day: Option<String>,
    /// `[key, BLAKE3 of the row]` in key order.
    #[schema(value_type = Vec<Vec<serde_json::Value>>)]
    pub rows: Vec<(i64, String)>,
}

// ---------------------------------------------------------------------------------------------------------------
// Replication.
// ---------------------------------------------------------------------------------------------------------------

/// Query string of `GET /v1/replication/file`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FileParams {
    /// Path relative to the mart directory, as in the manifest.
    pub path: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concrete_paths_fill_the_templates() {
        assert_eq!(paths::export("INTERACTION_FACT"), paths::EXPORT.replace("{table}", "INTERACTION_FACT"));
        assert_eq!(paths::report("queue_service_level"), "/v1/reports/queue_service_level");
        assert_eq!(
            paths::admin_source("site2", SourceAction::Ignore),
            paths::ADMIN_SOURCE.replace("{site}", "site2").replace("{action}", "ignore")
        );
        // A value cannot reach another route.
        assert_eq!(paths::export("a/../b?c#d"), "/v1/export/a%2F..%2Fb%3Fc%23d");
    }

    /// What the server serializes decodes into the client's view of the status.
    #[test]
    fn the_served_status_decodes_into_its_summary() {
        let mut served = super::super::status::ApplianceStatus::new("site1");
        served.mart_version = Some(7);
        served.epoch = 3;
        let summary: StatusSummary = serde_json::from_value(serde_json::to_value(&served).unwrap()).unwrap();
        assert_eq!((summary.site.as_str(), summary.mart_version, summary.epoch), ("site1", Some(7), 3));
    }

    /// The request leaves out what is not set; the server (deny_unknown_fields) reads it back.
    #[test]
    fn requests_round_trip() {
        let q = QueryRequest {
            sql: "SELECT 1".into(),
            format: Some("csv".into()),
            mart_version: None,
            time_zone: None,
            int64: None,
        };
        let text = serde_json::to_string(&q).unwrap();
        assert_eq!(text, r#"{"sql":"SELECT 1","format":"csv"}"#);
        assert_eq!(serde_json::from_str::<QueryRequest>(&text).unwrap(), q);
        let rows = RowDigests { mart_version: 1, table: "t".into(), day: None, rows: vec![(5, "ab".into())] };
        let text = serde_json::to_string(&rows).unwrap();
        assert!(text.contains(r#""rows":[[5,"ab"]]"#), "{text}");
        assert_eq!(serde_json::from_str::<RowDigests>(&text).unwrap(), rows);
    }
}
