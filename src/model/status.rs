//! The status the server shows (`/v1/status`, the status page, metrics): what each stage reports, as plain data.
//! The stages fill it; `serve` only reads it.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// Summary of the last pipeline cycle.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct CycleSummary {
    /// When it finished (epoch seconds).
    pub finished_at: i64,
    /// How long it took.
    pub duration_ms: u64,
    /// Error that stopped it, if any.
    pub error: Option<String>,
    /// Rows staged.
    pub rows_staged: usize,
    /// Groups transformed.
    pub groups_transformed: usize,
    /// Partitions published.
    pub partitions_published: usize,
    /// Time spent extracting, ms.
    pub extract_ms: u64,
    /// Time spent merging and transforming, ms.
    pub transform_ms: u64,
    /// Time spent writing the mart and publishing, ms.
    pub publish_ms: u64,
}

/// What `/v1/status` reports.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ApplianceStatus {
    /// Site of this appliance.
    pub site: String,
    /// Role (this version: always `active`).
    pub role: String,
    /// Newest published mart version.
    pub mart_version: Option<u64>,
    /// End time of the newest interaction visible (epoch seconds).
    pub newest_interaction_end_ts: Option<i64>,
    /// Per-IDB reachability and progress.
    pub idbs: Vec<IdbHealth>,
    /// Rows in quarantine.
    pub quarantined_rows: u64,
    /// Per HA pair: how far it may be transformed and which IDBs it waits for (or proceeds without).
    pub pairs: Vec<PairStatus>,
    /// Sites whose IDBs the merge does not wait for (configuration and run-time ignores).
    pub ignored_sites: Vec<String>,
    /// Newest heartbeat of any IDB (data time, epoch seconds).
    pub data_clock: Option<i64>,
    /// Last cycle.
    pub last_cycle: Option<CycleSummary>,
    /// Now minus `newest_interaction_end_ts`, seconds (computed per request).
    pub freshness_secs: Option<i64>,
    /// Fencing epoch of `role` (grows with every promotion).
    pub epoch: u64,
    /// Why this appliance has its role (promotion, demotion by a peer, split-brain).
    pub role_reason: String,
    /// The other site, when `replication.peer_url` is configured.
    pub peer: Option<PeerStatus>,
    /// Standby: how the copy from the active site goes.
    pub replication: Option<ReplicationStatus>,
}

/// A standby's replication from the active site.
#[derive(Debug, Clone, Serialize, Default, utoipa::ToSchema)]
pub struct ReplicationStatus {
    /// Last successful pass (epoch seconds).
    pub last_sync: Option<i64>,
    /// Files received since start.
    pub files_received: u64,
    /// Bytes received since start.
    pub bytes_received: u64,
    /// Mart versions the active site serves that this one does not yet.
    pub versions_behind: u64,
    /// Seconds since the active site published the version this one serves.
    pub lag_seconds: Option<i64>,
    /// Why the last pass failed.
    pub last_error: Option<String>,
}

/// The other site as this appliance last saw it.
#[derive(Debug, Clone, Serialize, Default, utoipa::ToSchema)]
pub struct PeerStatus {
    /// Its URL.
    pub url: String,
    /// Whether the last check reached it.
    pub reachable: bool,
    /// Its site, role and epoch at the last check.
    pub site: Option<String>,
    /// See `site`.
    pub role: Option<String>,
    /// See `site`.
    pub epoch: Option<u64>,
    /// Why the last check failed.
    pub last_error: Option<String>,
    /// When it was last checked (epoch seconds).
    pub checked_at: i64,
}

impl ApplianceStatus {
    /// Initial status of an appliance at `site`.
    pub fn new(site: &str) -> Self {
        ApplianceStatus { site: site.into(), role: "active".into(), ..Default::default() }
    }
}

/// One HA pair in `/v1/status`.
#[derive(Debug, Clone, Serialize, Default, utoipa::ToSchema)]
pub struct PairStatus {
    /// Pair name.
    pub pair: String,
    /// Its IDBs.
    pub members: Vec<String>,
    /// Interactions that ended before this (epoch seconds, data time) may be reported; later ones wait.
    pub ready_through: Option<i64>,
    /// IDBs the pair is behind on: `stuck: false` = waiting for it, `true` = proceeding without it.
    pub waits: Vec<PairWait>,
    /// IDBs not waited for because their site is ignored.
    pub ignored: Vec<String>,
}

/// An IDB a pair waits for.
#[derive(Debug, Clone, Serialize, Default, utoipa::ToSchema)]
pub struct PairWait {
    /// IDB name.
    pub idb: String,
    /// Its newest heartbeat (data time): behind since then.
    pub behind_since: i64,
    /// Seconds behind the newest heartbeat of any IDB.
    pub behind_secs: i64,
    /// Past the stuck threshold: the merge proceeds without it.
    pub stuck: bool,
    /// Wall-clock time ccmart first saw it behind (epoch seconds).
    pub waiting_since: i64,
}

/// Status shared between the pipeline (writer) and the HTTP server (readers).
#[derive(Debug, Clone, Default)]
pub struct SharedStatus(Arc<RwLock<ApplianceStatus>>);

impl SharedStatus {
    /// Wraps an initial status.
    pub fn new(s: ApplianceStatus) -> Self {
        SharedStatus(Arc::new(RwLock::new(s)))
    }
    /// Changes the status.
    pub fn update(&self, f: impl FnOnce(&mut ApplianceStatus)) {
        let mut g = self.0.write().unwrap_or_else(|e| e.into_inner());
        f(&mut g);
    }
    /// A copy of the status.
    pub fn get(&self) -> ApplianceStatus {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Reachability and progress of one IDB, as shown by `/v1/status`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IdbHealth {
    /// IDB name.
    pub idb: String,
    /// Whether the last attempt succeeded.
    pub reachable: bool,
    /// Last error message.
    pub last_error: Option<String>,
    /// Since when (epoch seconds) the IDB has been failing.
    pub failing_since: Option<i64>,
    /// Rows staged since start.
    pub rows_staged: u64,
    /// Rows of this IDB held in quarantine (from staging: the same records as the appliance's
    /// `quarantined_rows`, so the IDBs' figures add up to it).
    pub rows_quarantined: u64,
    /// Last successful extraction pass (epoch seconds).
    pub last_success: Option<i64>,
    /// When the IDB's schema was last checked against the contract (epoch seconds; at every (re)connection).
    pub schema_checked_at: Option<i64>,
    /// Tables whose columns differ from the contract, with each problem (empty when all match).
    pub schema_problems: Vec<TableCheck>,
    /// Tables that could not be read in the last pass, with the reason; the other tables were extracted.
    pub unreadable_tables: BTreeMap<String, String>,
    /// What the IDB's dictionary of code values (`G_DICTIONARY`) said at the last check.
    pub code_dictionary: Option<CodeDictionaryCheck>,
}

impl IdbHealth {
    /// The health of an IDB not tried yet.
    pub fn new(idb: &str) -> Self {
        IdbHealth {
            idb: idb.to_string(),
            reachable: true,
            last_error: None,
            failing_since: None,
            rows_staged: 0,
            rows_quarantined: 0,
            last_success: None,
            schema_checked_at: None,
            schema_problems: Vec::new(),
            unreadable_tables: BTreeMap::new(),
            code_dictionary: None,
        }
    }
}

/// The check of one contract table in one IDB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TableCheck {
    /// Contract table name.
    pub table: String,
    /// The table does not exist (or the user may read none of its columns).
    pub missing_table: bool,
    /// Column problems, in contract order.
    pub problems: Vec<ColumnProblem>,
}

/// What is wrong with one contract column in one IDB table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ColumnProblem {
    /// Contract column name.
    pub column: String,
    /// `missing`, or `type` (the column exists with another type).
    pub problem: String,
    /// The type the IDB has (for `type`), as `information_schema` names it.
    pub found: Option<String>,
    /// The type the contract reads: `integer` (any integer type, or numeric without fraction) or `text`.
    pub expected: String,
    /// Whether ccmart can do without the column (read as NULL) — otherwise the table is not extracted.
    pub optional: bool,
    /// Where the column is missing, what ccmart reads in its place (an SQL expression), so the table is extracted.
    pub derived: Option<String>,
}

/// One entry of an IDB's dictionary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DictionaryEntry {
    /// The code as the IDB's rows hold it.
    pub code: i64,
    /// Its name in `G_DICTIONARY`.
    pub name: String,
}

/// What the dictionary check found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CodeDictionaryCheck {
    /// The IDB has a readable `G_DICTIONARY`.
    pub present: bool,
    /// Party-state codes translated to ccmart's (IDB code → ccmart code) while extracting; empty when ccmart's
    /// numbering is kept.
    pub party_state_translation: BTreeMap<i64, i64>,
    /// Party-state codes the IDB names that ccmart reads no meaning into: rows holding them are quarantined.
    pub party_state_unread: Vec<DictionaryEntry>,
    /// What did not match ccmart's reading, one line each (empty when everything matched).
    pub findings: Vec<String>,
}
