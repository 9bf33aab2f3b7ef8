//! The appliance's embedded store (one redb file): staged IDB rows with their high-water marks, quarantined
//! rows, the transform's fact rows per mart partition, and the catalog of mart versions.
//!
//! Every write that must be atomic is one redb transaction: extracted rows *and* the high-water mark that covers
//! them; a group's facts *and* clearing its dirty mark; a mart version *and* clearing the partitions it
//! published. A crash between two transactions therefore only repeats work, never loses or doubles it.

mod aggregates;
mod codec;
mod keys;
mod records;

pub use records::{MaintenanceRecord, SourceAuditEntry};

pub use crate::model::wire::MartSnapshot;
pub use aggregates::{AggregateRow, AggregateRules, BucketSums, Contribution, NoAggregates, BUCKET_SECS, WIDTHS};
pub use codec::{Cell, FactRow, StagedRow, Value};
pub use keys::{probe_key, KeyReferences};

use crate::fault::{FaultInjector, InjectedCrash};
use crate::model::{GroupKey, GroupKeyError, GroupKind};
use crate::source::Counter;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use thiserror::Error;

const ROWS: TableDefinition<(&[u8], &[u8], i64), i64> = TableDefinition::new("row_versions");
/// (group, IDB, table, ID): a staged row's place in its merge/transform group.
type GroupRowKey = (&'static [u8], &'static [u8], &'static [u8], i64);
/// (mart table, day, surrogate key).
type FactKey = (&'static [u8], &'static [u8], i64);
const GROUP_ROWS: TableDefinition<GroupRowKey, &[u8]> = TableDefinition::new("group_rows");
const HWM: TableDefinition<(&str, &str, &str), i64> = TableDefinition::new("high_water_marks");
const DIRTY_GROUPS: TableDefinition<&[u8], ()> = TableDefinition::new("dirty_groups");
const QUARANTINE: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("quarantine");
const FACTS: TableDefinition<FactKey, &[u8]> = TableDefinition::new("facts");
const GROUP_FACTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("group_facts");
/// (mart table, day) → (): partitions whose facts changed or went since the last published version: the next
/// publish rewrites them whole.
const DIRTY_PARTITIONS: TableDefinition<(&str, &str), ()> = TableDefinition::new("dirty_partitions");
/// (mart table, day, key) → (): facts new since the last published version in partitions nothing else changed in:
/// the next publish appends them as a new file instead of rewriting the partition.
const APPENDED_FACTS: TableDefinition<FactKey, ()> = TableDefinition::new("appended_facts");
/// (mart table, day) → (): partitions this site published from this staging since it last took over a mart that
/// replication brought. Only these may be appended to: elsewhere the mart may hold facts staging does not know
/// of yet (a promoted standby re-extracting from its checkpoint), so the first publish of a partition rewrites it.
const SYNCED_PARTITIONS: TableDefinition<(&str, &str), ()> = TableDefinition::new("synced_partitions");
const CATALOG: TableDefinition<u64, &[u8]> = TableDefinition::new("catalog");
const KEY_OWNERS: TableDefinition<(&[u8], i64), &str> = TableDefinition::new("key_owners");
const ACW: TableDefinition<(&[u8], i64, i64), i64> = TableDefinition::new("after_call_work");
/// (`LOGINSESSIONID`, IDB) → the group of that login session, recorded when its `G_LOGIN_SESSION` row is staged in
/// that IDB, so the session's state and reason-code rows join it (see [`LoginSessionLink`]).
const SESSION_GROUPS: TableDefinition<(&str, &str), &str> = TableDefinition::new("login_session_groups");
/// Groups whose rows were purged (group → when): their facts are final; rows arriving for them later are not staged.
const PURGED: TableDefinition<&[u8], i64> = TableDefinition::new("purged_groups");

/// Calls `$f!(TABLE)` for every table a staging checkpoint carries.
macro_rules! for_each_resumable_table {
    ($f:ident, $($arg:expr),*) => {{
        $f!(ROWS, $($arg),*);
        $f!(GROUP_ROWS, $($arg),*);
        $f!(HWM, $($arg),*);
        $f!(DIRTY_GROUPS, $($arg),*);
        $f!(QUARANTINE, $($arg),*);
        $f!(FACTS, $($arg),*);
        $f!(GROUP_FACTS, $($arg),*);
        $f!(DIRTY_PARTITIONS, $($arg),*);
        $f!(APPENDED_FACTS, $($arg),*);
        $f!(KEY_OWNERS, $($arg),*);
        $f!(keys::KEY_CLAIMS, $($arg),*);
        $f!(aggregates::AGGREGATE_BUCKETS, $($arg),*);
        $f!(ACW, $($arg),*);
        $f!(PURGED, $($arg),*);
        $f!(SESSION_GROUPS, $($arg),*);
        $f!(records::MERGE_STATE, $($arg),*);
        $f!(records::MERGE_DECISIONS, $($arg),*);
        $f!(records::IGNORED_SITES, $($arg),*);
        $f!(records::SETTINGS, $($arg),*);
    }};
}

/// Calls `$f!(TABLE)` for every table that belongs to this site only and a checkpoint does not carry: the
/// catalog of its own mart versions, its audit and maintenance history, its fence. With
/// [`for_each_resumable_table`] this is every table of the store — the one registry (a new table goes in one of the
/// two).
macro_rules! for_each_site_table {
    ($f:ident, $($arg:expr),*) => {{
        $f!(CATALOG, $($arg),*);
        $f!(SYNCED_PARTITIONS, $($arg),*);
        $f!(records::SOURCE_AUDIT, $($arg),*);
        $f!(records::MAINTENANCE_RUNS, $($arg),*);
        $f!(records::FENCE, $($arg),*);
    }};
}

/// Errors of the staging store.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StagingError {
    /// Another ccmart process holds the staging store of this data directory.
    #[error("staging store {path} is in use: is another ccmart running on the same data directory?")]
    Locked {
        /// File path.
        path: PathBuf,
    },
    /// The redb file could not be opened or created (damaged, or not a staging store).
    #[error("cannot open staging store {path}")]
    Open {
        /// File path.
        path: PathBuf,
        /// What redb said.
        #[source]
        source: redb::DatabaseError,
    },
    /// The data directory (or a checkpoint file in it) could not be created, moved or read.
    #[error("cannot use {path}")]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// A storage operation failed.
    #[error("staging store failed during {during}")]
    Storage {
        /// What was being done.
        during: &'static str,
        /// What redb said.
        #[source]
        source: redb::Error,
    },
    /// A stored record could not be decoded (written by an incompatible version, or damaged).
    #[error("staging record in {table} cannot be decoded")]
    Decode {
        /// redb table.
        table: &'static str,
        /// What the decoder said.
        #[source]
        source: rmp_serde::decode::Error,
    },
    /// A stored record is shorter than its fixed prefix (damaged).
    #[error("staging record in {table} is {len} bytes, shorter than any record")]
    Truncated {
        /// redb table.
        table: &'static str,
        /// Its length.
        len: usize,
    },
    /// A record could not be encoded; nothing of the batch was committed (an empty record is never stored in its
    /// place).
    #[error("staging record for {table} cannot be encoded")]
    Encode {
        /// redb table.
        table: &'static str,
        /// What the encoder said.
        #[source]
        source: rmp_serde::encode::Error,
    },
    /// Two different natural keys hashed to the same surrogate key where the key cannot move (a dimension, two
    /// facts of one group, a probe key; a fact table's collision is resolved, see [`keys`]). Nothing of the batch was
    /// committed; the pipeline stops publishing rather than merge two rows silently.
    #[error("surrogate key collision in {table}: key {key} is produced by both {owner} and {other}; nothing was committed and reports stay at the last published version. Report this message: such a key needs a ccmart release that widens it (docs/schema.md, \"When two natural keys hash alike\")")]
    KeyCollision {
        /// Mart table.
        table: String,
        /// The colliding key.
        key: i64,
        /// Group that owns the key.
        owner: String,
        /// Group that produced it again.
        other: String,
    },
    /// A stored group key is none of ccmart's (a damaged store, or one written by a newer version).
    #[error("staging table {table} holds a group key ccmart cannot read")]
    GroupKey {
        /// The table.
        table: &'static str,
        /// The key and what is wrong with it.
        #[source]
        source: GroupKeyError,
    },
    /// The store (or a checkpoint) has another layout than this build's: written by another ccmart version.
    /// Nothing was changed.
    #[error(
        "{path} holds staging format {found}; this ccmart reads format {FORMAT_VERSION}. Run the ccmart version that \
         wrote it, or stop ccmart, move the data directory aside and start again: staging and the mart are rebuilt \
         from the IDBs"
    )]
    Format {
        /// The store or checkpoint file.
        path: PathBuf,
        /// The format it records.
        found: String,
    },
    /// Fault injection fired (tests only).
    #[error(transparent)]
    Injected(#[from] InjectedCrash),
}

/// The version of staging's on-disk layout (tables, keys, encodings; `docs/design.md`, "Format versions") this
/// build reads and writes. It is recorded in the `settings` table when a store is created, checked when one is
/// opened and when a checkpoint is imported; a change of layout raises it.
pub const FORMAT_VERSION: u32 = 1;

/// The `settings` key of [`FORMAT_VERSION`].
const FORMAT_KEY: &str = "staging_format_version";

/// Result alias of the staging store.
pub type Result<T, E = StagingError> = std::result::Result<T, E>;

fn storage<E: Into<redb::Error>>(during: &'static str) -> impl Fn(E) -> StagingError {
    move |e| StagingError::Storage { during, source: e.into() }
}

/// Where extraction stands in one table of one IDB: both counters' high-water marks. Every row with a counter
/// value up to the mark is staged (or quarantined) and none can still be committed below it; rows above it may
/// be staged too (read ahead of a settling mark, see `extract`) and are recognised when read again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HighWaterMark {
    /// `GSYS_SEQ` mark.
    pub seq: i64,
    /// `GSYS_USEQ` mark.
    pub useq: i64,
}

impl HighWaterMark {
    /// The mark of one counter.
    pub fn get(&self, c: Counter) -> i64 {
        match c {
            Counter::Seq => self.seq,
            Counter::Useq => self.useq,
        }
    }
}

/// A row that failed validation, kept with the reason so an operator can fix the source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantinedRow {
    /// IDB name.
    pub idb: String,
    /// IDB table.
    pub table: String,
    /// The row's `ID` as text (may itself be the malformed value).
    pub key: String,
    /// Offending column.
    pub column: String,
    /// What is wrong.
    pub reason: String,
    /// Counter value the row was read at.
    pub counter_value: i64,
}

/// One validated row ready to stage.
#[derive(Debug, Clone)]
pub struct RowToStage {
    /// The row's per-IDB `ID`.
    pub id: i64,
    /// The row's group, or how a row of a login session finds it.
    pub group: RowGroup,
    /// The row.
    pub row: StagedRow,
}

/// How a row of a login session finds its group. A login session is known by its agent and login time, which both
/// IDBs of an HA pair agree on whether or not ICON gives the session the same `LOGINSESSIONID` in both; its state
/// and reason-code rows carry only the id, which is resolved per IDB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowGroup {
    /// The row belongs to this group.
    Key(GroupKey),
    /// The session's own `G_LOGIN_SESSION` row with this id: `key` names the session. Rows of the session staged
    /// before it (in [`fallback_session_group`]) move into that group.
    SessionDefinition {
        /// The session's group ([`GroupKey::LoginSession`]).
        key: GroupKey,
        /// The session id this IDB gives it.
        session_id: String,
    },
    /// A row of the session with this id: it joins the group of the session row with this id in the same IDB, else
    /// in another IDB (when both IDBs use the same id and this one missed the login), else
    /// [`fallback_session_group`] until a session row with this id is staged.
    SessionMember(String),
}

/// The group of one IDB's rows of a login session while no `G_LOGIN_SESSION` row with their id is staged
/// ([`GroupKey::UnlinkedSessionRows`]). The transform makes no facts of it (without the session row the agent and
/// the end are unknown, and with ids that differ per IDB the partner IDB's copy is the complete one).
pub fn fallback_session_group(idb: &str, session_id: &str) -> GroupKey {
    GroupKey::UnlinkedSessionRows { idb: idb.to_string(), session_id: session_id.to_string() }
}

/// A chunk of one table of one IDB, committed atomically with its high-water mark.
#[derive(Debug)]
pub struct ExtractedChunk<'a> {
    /// IDB name.
    pub idb: &'a str,
    /// IDB table.
    pub table: &'a str,
    /// Counter the chunk followed.
    pub counter: Counter,
    /// Valid rows.
    pub rows: Vec<RowToStage>,
    /// Malformed rows.
    pub quarantined: Vec<QuarantinedRow>,
    /// The counter value of the last row read (covers valid and quarantined rows).
    pub new_mark: i64,
}

impl<'a> ExtractedChunk<'a> {
    /// An empty chunk of `table` that leaves the mark at `mark` until rows are added.
    pub fn empty(idb: &'a str, table: &'a str, counter: Counter, mark: i64) -> Self {
        ExtractedChunk { idb, table, counter, rows: Vec::new(), quarantined: Vec::new(), new_mark: mark }
    }
}

/// What a chunk commit did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkOutcome {
    /// Rows stored (new, or newer versions).
    pub staged: usize,
    /// Rows skipped because staging already held the same or a newer version.
    pub unchanged: usize,
    /// Rows quarantined.
    pub quarantined: usize,
    /// Rows of groups purged from staging (older than the staging retention): not staged, their facts stay.
    pub beyond_retention: usize,
}

/// What a staging purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeOutcome {
    /// Groups (interactions, login sessions) whose rows were removed.
    pub groups: usize,
    /// Staged rows removed.
    pub rows: usize,
    /// True when the limit stopped the purge before every eligible group was done (the next run goes on).
    pub more: bool,
}

/// One fact (or dimension) row produced by the transform, addressed by mart table, day partition and key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FactAddress {
    /// Mart table name.
    pub table: String,
    /// Day partition (`YYYY-MM-DD`), empty for unpartitioned tables.
    pub day: String,
    /// Surrogate key (pure function of the natural key).
    pub key: i64,
}

/// Everything the transform produced for one group.
#[derive(Debug, Clone)]
pub struct GroupOutput {
    /// Group key.
    pub group: GroupKey,
    /// Fact rows of the group (replacing what the group produced before).
    pub facts: Vec<(FactAddress, FactRow)>,
    /// After-call work periods found in a login session: (CALLID, agent DBID, start) → seconds. A changed
    /// entry wakes the call's group so its resource facts pick it up.
    pub after_call_work: Vec<((String, i64, i64), i64)>,
}

impl GroupOutput {
    /// The output of `group` before the transform adds to it: no facts, no after-call work.
    pub fn new(group: GroupKey) -> Self {
        GroupOutput { group, facts: Vec::new(), after_call_work: Vec::new() }
    }
}

/// The staged rows of one group and the after-call work linked to it.
#[derive(Debug, Clone, Default)]
pub struct LoadedGroup {
    /// (IDB, table) → rows.
    pub rows: BTreeMap<(String, String), Vec<StagedRow>>,
    /// After-call work periods linked to an interaction: (agent DBID, start) → seconds.
    pub after_call_work: BTreeMap<(i64, i64), i64>,
}

/// The staging store. One per appliance; it holds an exclusive lock on its file.
#[derive(Debug)]
pub struct Store {
    db: Database,
    faults: FaultInjector,
}

/// Default page cache of the staging store, MiB: bounds the appliance's memory whatever the data volume.
pub const DEFAULT_CACHE_MB: usize = 256;

impl Store {
    /// Opens (or creates) the store at `path` with the default cache.
    pub fn open(path: &Path, faults: FaultInjector) -> Result<Self> {
        Self::open_with_cache(path, faults, DEFAULT_CACHE_MB)
    }

    /// Opens (or creates) the store at `path` with a page cache of `cache_mb` MiB.
    pub fn open_with_cache(path: &Path, faults: FaultInjector, cache_mb: usize) -> Result<Self> {
        let db = Database::builder().set_cache_size(cache_mb.max(1) * 1024 * 1024).create(path).map_err(|source| {
            match source {
                redb::DatabaseError::DatabaseAlreadyOpen => StagingError::Locked { path: path.to_path_buf() },
                source => StagingError::Open { path: path.to_path_buf(), source },
            }
        })?;
        let tx = db.begin_write().map_err(storage("open"))?;
        {
            macro_rules! create {
                ($def:expr, $tx:expr) => {{
                    $tx.open_table($def).map_err(storage("open"))?;
                }};
            }
            for_each_resumable_table!(create, tx);
            for_each_site_table!(create, tx);
            let mut settings = tx.open_table(records::SETTINGS).map_err(storage("open"))?;
            let found = settings.get(FORMAT_KEY).map_err(storage("open"))?.map(|v| v.value().to_string());
            match found {
                // A new store, or one written before the format was recorded (the layout of format 1).
                None => {
                    settings.insert(FORMAT_KEY, FORMAT_VERSION.to_string().as_str()).map_err(storage("open"))?;
                }
                Some(v) if v == FORMAT_VERSION.to_string() => {}
                // Dropping the transaction leaves the store as it was.
                Some(found) => return Err(StagingError::Format { path: path.to_path_buf(), found }),
            }
        }
        tx.commit().map_err(storage("open"))?;
        Ok(Store { db, faults })
    }

    /// The high-water marks of one IDB table.
    pub fn high_water_mark(&self, idb: &str, table: &str) -> Result<HighWaterMark> {
        let tx = self.db.begin_read().map_err(storage("read high-water mark"))?;
        let t = tx.open_table(HWM).map_err(storage("read high-water mark"))?;
        let get = |c: &str| -> Result<i64> {
            Ok(t.get((idb, table, c)).map_err(storage("read high-water mark"))?.map(|v| v.value()).unwrap_or(0))
        };
        Ok(HighWaterMark { seq: get("seq")?, useq: get("useq")? })
    }

    /// Stages a chunk: rows (keeping the newest version of each), quarantined rows and the new high-water mark,
    /// in one transaction.
    pub fn commit_chunk(&self, chunk: &ExtractedChunk<'_>) -> Result<ChunkOutcome> {
        self.faults.step("stage extracted chunk")?;
        let during = "stage extracted chunk";
        let mut outcome = ChunkOutcome::default();
        let tx = self.db.begin_write().map_err(storage(during))?;
        {
            let mut rows = tx.open_table(ROWS).map_err(storage(during))?;
            let mut groups = tx.open_table(GROUP_ROWS).map_err(storage(during))?;
            let mut dirty = tx.open_table(DIRTY_GROUPS).map_err(storage(during))?;
            let mut quarantine = tx.open_table(QUARANTINE).map_err(storage(during))?;
            let mut hwm = tx.open_table(HWM).map_err(storage(during))?;
            let purged = tx.open_table(PURGED).map_err(storage(during))?;
            let mut sessions = tx.open_table(SESSION_GROUPS).map_err(storage(during))?;
            let any_purged = !purged.is_empty().map_err(storage(during))?;
            let mut touched: BTreeSet<String> = BTreeSet::new();
            let any_quarantined = !quarantine.is_empty().map_err(storage(during))?;
            for r in &chunk.rows {
                let group = match &r.group {
                    RowGroup::Key(key) => key.encode(),
                    RowGroup::SessionMember(sid) => {
                        session_group_of(&sessions, sid, chunk.idb).map_err(storage(during))?
                    }
                    RowGroup::SessionDefinition { key, session_id: sid } => {
                        let key = key.encode();
                        let known = sessions.get((sid.as_str(), chunk.idb)).map_err(storage(during))?.is_some();
                        if !known {
                            sessions.insert((sid.as_str(), chunk.idb), key.as_str()).map_err(storage(during))?;
                            let fallback = fallback_session_group(chunk.idb, sid).encode();
                            if move_group_rows(&mut groups, &fallback, &key).map_err(storage(during))? > 0 {
                                touched.insert(fallback);
                            }
                        }
                        key
                    }
                };
                if any_purged && purged.get(group.as_bytes()).map_err(storage(during))?.is_some() {
                    outcome.beyond_retention += 1;
                    continue;
                }
                let key = (chunk.idb.as_bytes(), chunk.table.as_bytes(), r.id);
                let existing = rows.get(key).map_err(storage(during))?.map(|v| v.value());
                if existing.is_some_and(|v| v >= r.row.version) {
                    outcome.unchanged += 1;
                    continue;
                }
                rows.insert(key, r.row.version).map_err(storage(during))?;
                groups
                    .insert(
                        (group.as_bytes(), chunk.idb.as_bytes(), chunk.table.as_bytes(), r.id),
                        r.row.encode()?.as_slice(),
                    )
                    .map_err(storage(during))?;
                if any_quarantined {
                    // A good version of a row supersedes its quarantined one.
                    quarantine.remove((chunk.idb, chunk.table, r.id.to_string().as_str())).map_err(storage(during))?;
                }
                touched.insert(group);
                outcome.staged += 1;
            }
            for g in touched {
                dirty.insert(g.as_bytes(), ()).map_err(storage(during))?;
            }
            for q in &chunk.quarantined {
                let bytes = rmp_serde::to_vec_named(q)
                    .map_err(|source| StagingError::Encode { table: "quarantine", source })?;
                quarantine
                    .insert((chunk.idb, chunk.table, q.key.as_str()), bytes.as_slice())
                    .map_err(storage(during))?;
                outcome.quarantined += 1;
            }
            let c = match chunk.counter {
                Counter::Seq => "seq",
                Counter::Useq => "useq",
            };
            hwm.insert((chunk.idb, chunk.table, c), chunk.new_mark).map_err(storage(during))?;
        }
        tx.commit().map_err(storage(during))?;
        Ok(outcome)
    }

    /// Removes from `chunk` what staging already holds: rows whose staged version is the same or newer, and
    /// quarantined rows recorded with the same reason at the same counter value. Returns how many went.
    ///
    /// Extraction re-reads the rows above a settling high-water mark every cycle (see `extract`); this keeps such
    /// a re-read from writing (one write transaction per table and cycle) or counting anything twice. It only
    /// reads, so a row that changes between this check and the commit is still decided by [`Self::commit_chunk`].
    pub fn drop_already_staged(&self, chunk: &mut ExtractedChunk<'_>) -> Result<usize> {
        let during = "check re-read rows";
        let tx = self.db.begin_read().map_err(storage(during))?;
        let rows = tx.open_table(ROWS).map_err(storage(during))?;
        let quarantine = tx.open_table(QUARANTINE).map_err(storage(during))?;
        let before = chunk.rows.len() + chunk.quarantined.len();
        let mut kept = Vec::with_capacity(chunk.rows.len());
        for r in chunk.rows.drain(..) {
            let key = (chunk.idb.as_bytes(), chunk.table.as_bytes(), r.id);
            let staged = rows.get(key).map_err(storage(during))?.map(|v| v.value());
            if staged.is_none_or(|v| v < r.row.version) {
                kept.push(r);
            }
        }
        chunk.rows = kept;
        let mut kept = Vec::with_capacity(chunk.quarantined.len());
        for q in chunk.quarantined.drain(..) {
            let stored = quarantine.get((chunk.idb, chunk.table, q.key.as_str())).map_err(storage(during))?;
            let same = match stored {
                Some(v) => {
                    rmp_serde::from_slice::<QuarantinedRow>(v.value())
                        .map_err(|source| StagingError::Decode { table: "quarantine", source })?
                        == q
                }
                None => false,
            };
            if !same {
                kept.push(q);
            }
        }
        chunk.quarantined = kept;
        Ok(before - chunk.rows.len() - chunk.quarantined.len())
    }

    /// Number of quarantined rows per IDB (IDBs without any are absent).
    pub fn quarantine_count_by_idb(&self) -> Result<BTreeMap<String, u64>> {
        let during = "count quarantine";
        let tx = self.db.begin_read().map_err(storage(during))?;
        let t = tx.open_table(QUARANTINE).map_err(storage(during))?;
        let mut out: BTreeMap<String, u64> = BTreeMap::new();
        for item in t.iter().map_err(storage(during))? {
            let (k, _) = item.map_err(storage(during))?;
            *out.entry(k.value().0.to_string()).or_default() += 1;
        }
        Ok(out)
    }

    /// Quarantined rows (one per IDB row, the latest reason), in (IDB, table, key) order, at most `limit`.
    pub fn quarantined(&self, limit: usize) -> Result<Vec<QuarantinedRow>> {
        let tx = self.db.begin_read().map_err(storage("read quarantine"))?;
        let t = tx.open_table(QUARANTINE).map_err(storage("read quarantine"))?;
        let mut out = Vec::new();
        for item in t.iter().map_err(storage("read quarantine"))?.take(limit) {
            let (_, v) = item.map_err(storage("read quarantine"))?;
            out.push(
                rmp_serde::from_slice(v.value())
                    .map_err(|source| StagingError::Decode { table: "quarantine", source })?,
            );
        }
        Ok(out)
    }

    /// Number of quarantined rows.
    pub fn quarantine_count(&self) -> Result<u64> {
        let tx = self.db.begin_read().map_err(storage("count quarantine"))?;
        let t = tx.open_table(QUARANTINE).map_err(storage("count quarantine"))?;
        t.len().map_err(storage("count quarantine"))
    }

    /// Groups waiting for the transform (at most `limit`), in key order.
    pub fn dirty_groups(&self, limit: usize) -> Result<Vec<GroupKey>> {
        self.dirty_groups_after(None, limit)
    }

    /// Groups waiting for the transform after `after` (exclusive), at most `limit`, in key order: lets a cycle
    /// walk past groups the merge holds back.
    pub fn dirty_groups_after(&self, after: Option<&GroupKey>, limit: usize) -> Result<Vec<GroupKey>> {
        let after = after.map(GroupKey::encode);
        let tx = self.db.begin_read().map_err(storage("read dirty groups"))?;
        let t = tx.open_table(DIRTY_GROUPS).map_err(storage("read dirty groups"))?;
        let mut out = Vec::new();
        let range = match after {
            Some(a) => t.range::<&[u8]>((std::ops::Bound::Excluded(a.as_bytes()), std::ops::Bound::Unbounded)),
            None => t.range::<&[u8]>(..),
        };
        for item in range.map_err(storage("read dirty groups"))?.take(limit) {
            let key = item.map_err(storage("read dirty groups"))?.0;
            out.push(decode_group("dirty_groups", key.value())?);
        }
        Ok(out)
    }

    /// Every staged row of each group, and for interaction groups the after-call work linked to them, read in one
    /// transaction. Rows come per (IDB, table) so the merge can choose between the IDBs of a pair.
    pub fn load_groups(&self, groups: &[GroupKey]) -> Result<Vec<LoadedGroup>> {
        let during = "read group rows";
        let tx = self.db.begin_read().map_err(storage(during))?;
        let g = tx.open_table(GROUP_ROWS).map_err(storage(during))?;
        let acw = tx.open_table(ACW).map_err(storage(during))?;
        let mut out = Vec::with_capacity(groups.len());
        for key in groups {
            let group = key.encode();
            let group = group.as_str();
            let mut loaded = LoadedGroup::default();
            for item in g
                .range::<(&[u8], &[u8], &[u8], i64)>((group.as_bytes(), &[][..], &[][..], i64::MIN)..)
                .map_err(storage(during))?
            {
                let (k, v) = item.map_err(storage(during))?;
                let (grp, idb, table, _) = k.value();
                if grp != group.as_bytes() {
                    break;
                }
                loaded
                    .rows
                    .entry((String::from_utf8_lossy(idb).into_owned(), String::from_utf8_lossy(table).into_owned()))
                    .or_default()
                    .push(StagedRow::decode(v.value())?);
            }
            if let Some(callid) = key.callid() {
                for item in acw
                    .range::<(&[u8], i64, i64)>((callid.as_bytes(), i64::MIN, i64::MIN)..)
                    .map_err(storage(during))?
                {
                    let (k, v) = item.map_err(storage(during))?;
                    let (c, agent, start) = k.value();
                    if c != callid.as_bytes() {
                        break;
                    }
                    loaded.after_call_work.insert((agent, start), v.value());
                }
            }
            out.push(loaded);
        }
        Ok(out)
    }

    /// Commits the transform's output for a batch of groups in one transaction: replaces each group's facts
    /// (marking every changed partition dirty), records derived after-call work, wakes dependent groups and
    /// clears the processed groups' dirty marks.
    ///
    /// The aggregates follow in the same transaction: the contributions (`aggregates`) of every fact added, changed or
    /// removed move the sums of their buckets, and the rows of exactly those buckets, hours and days are written
    /// again (see [`aggregates`]); a group transformed again with the same result changes none.
    ///
    /// A key another group already holds is resolved as [`keys`] describes (both groups keep their facts, under
    /// keys that do not depend on the order they arrived in); `refs` names the columns that move with a key.
    pub fn commit_group_outputs(
        &self,
        processed: &[GroupKey],
        outputs: &[GroupOutput],
        refs: &KeyReferences,
        aggregates: &dyn AggregateRules,
    ) -> Result<usize> {
        self.faults.step("commit transformed facts")?;
        let during = "commit transformed facts";
        let mut changed = 0usize;
        let tx = self.db.begin_write().map_err(storage(during))?;
        {
            let mut facts_t = tx.open_table(FACTS).map_err(storage(during))?;
            let mut group_facts = tx.open_table(GROUP_FACTS).map_err(storage(during))?;
            let mut parts = tx.open_table(DIRTY_PARTITIONS).map_err(storage(during))?;
            let mut appended = tx.open_table(APPENDED_FACTS).map_err(storage(during))?;
            let mut dirty = tx.open_table(DIRTY_GROUPS).map_err(storage(during))?;
            let mut acw = tx.open_table(ACW).map_err(storage(during))?;
            let mut owners = tx.open_table(KEY_OWNERS).map_err(storage(during))?;
            let purged = tx.open_table(PURGED).map_err(storage(during))?;
            // A purged group has no rows left to transform again: waking it would replace its facts with nothing.
            let is_purged = |g: &str| purged.get(g.as_bytes()).map(|v| v.is_some()).map_err(storage(during));
            for g in processed {
                dirty.remove(g.encode().as_bytes()).map_err(storage(during))?;
            }
            let mut claims = tx.open_table(keys::KEY_CLAIMS).map_err(storage(during))?;
            let mut buckets = tx.open_table(aggregates::AGGREGATE_BUCKETS).map_err(storage(during))?;
            let mut deltas = aggregates::AggregateDeltas::default();
            for out in outputs {
                let group = out.group.encode();
                let mut facts = out.facts.clone();
                // Keys that collided before: this group's rank among their claimants decides its key.
                if !claims.is_empty().map_err(storage(during))? {
                    let bases: BTreeSet<(String, i64)> = facts
                        .iter()
                        .filter(|(a, _)| !a.day.is_empty())
                        .map(|(a, _)| (a.table.clone(), a.key))
                        .collect();
                    for (table, base) in bases {
                        let list = keys::read_claims(&claims, &table, base)?;
                        if let Some(rank) = keys::rank_of(&list, &group).filter(|r| *r > 0) {
                            keys::rekey(&mut facts, &table, base, keys::probe_key(&table, base, rank), refs);
                        }
                    }
                }
                let mut seen: BTreeSet<(&str, i64)> = BTreeSet::new();
                for (a, _) in &facts {
                    if !seen.insert((a.table.as_str(), a.key)) {
                        return Err(StagingError::KeyCollision {
                            table: a.table.clone(),
                            key: a.key,
                            owner: group.clone(),
                            other: group.clone(),
                        });
                    }
                }
                // A key another group holds: rank the claimants and move whoever's rank changed.
                let mut i = 0;
                let mut rounds = 0;
                while i < facts.len() {
                    let (a, _) = &facts[i];
                    let owner = owners
                        .get((a.table.as_bytes(), a.key))
                        .map_err(storage(during))?
                        .map(|g| g.value().to_string());
                    let Some(other) = owner.filter(|o| *o != group) else {
                        i += 1;
                        continue;
                    };
                    let (table, base) = (a.table.clone(), a.key);
                    // Only a fact table's key is ranked: a dimension's key is referenced by other groups' facts.
                    rounds += 1;
                    if a.day.is_empty() || rounds > 64 {
                        return Err(StagingError::KeyCollision {
                            table,
                            key: base,
                            owner: other,
                            other: group.clone(),
                        });
                    }
                    let (key, moves) = keys::admit(&mut claims, &table, base, &other, &group)?;
                    for m in moves {
                        let mut stored = StoredFacts {
                            facts: &mut facts_t,
                            group_facts: &mut group_facts,
                            owners: &mut owners,
                            parts: &mut parts,
                        };
                        changed += stored.move_key(&m.claimant, &table, m.from, m.to, refs)?;
                    }
                    if key != base {
                        keys::rekey(&mut facts, &table, base, key, refs);
                    }
                    // Look at this fact again under its (possibly new) key.
                }
                let old: Vec<FactAddress> = match group_facts.get(group.as_bytes()).map_err(storage(during))? {
                    Some(v) => rmp_serde::from_slice(v.value())
                        .map_err(|source| StagingError::Decode { table: "group_facts", source })?,
                    None => Vec::new(),
                };
                let new_addrs: BTreeSet<(&str, &str, i64)> =
                    facts.iter().map(|(a, _)| (a.table.as_str(), a.day.as_str(), a.key)).collect();
                for a in &old {
                    if !new_addrs.contains(&(a.table.as_str(), a.day.as_str(), a.key)) {
                        let own = owners
                            .get((a.table.as_bytes(), a.key))
                            .map_err(storage(during))?
                            .is_none_or(|g| g.value() == group);
                        if !own {
                            continue;
                        }
                        let removed =
                            facts_t.remove((a.table.as_bytes(), a.day.as_bytes(), a.key)).map_err(storage(during))?;
                        if let Some(old_row) = removed {
                            deltas.apply_bytes(aggregates, &a.table, old_row.value(), -1)?;
                        }
                        owners.remove((a.table.as_bytes(), a.key)).map_err(storage(during))?;
                        parts.insert((a.table.as_str(), a.day.as_str()), ()).map_err(storage(during))?;
                        changed += 1;
                    }
                }
                for (a, row) in &facts {
                    if owners.get((a.table.as_bytes(), a.key)).map_err(storage(during))?.is_none() {
                        owners.insert((a.table.as_bytes(), a.key), group.as_str()).map_err(storage(during))?;
                    }
                    let bytes = row.encode()?;
                    let key = (a.table.as_bytes(), a.day.as_bytes(), a.key);
                    let before = facts_t.get(key).map_err(storage(during))?.map(|v| v.value().to_vec());
                    if before.as_deref() != Some(bytes.as_slice()) {
                        if let Some(before) = &before {
                            deltas.apply_bytes(aggregates, &a.table, before, -1)?;
                        }
                        deltas.apply(aggregates, &a.table, row, 1);
                        facts_t.insert(key, bytes.as_slice()).map_err(storage(during))?;
                        if before.is_some() {
                            parts.insert((a.table.as_str(), a.day.as_str()), ()).map_err(storage(during))?;
                        } else {
                            appended.insert(key, ()).map_err(storage(during))?;
                        }
                        changed += 1;
                    }
                }
                let addrs: Vec<&FactAddress> = facts.iter().map(|(a, _)| a).collect();
                let bytes = rmp_serde::to_vec(&addrs)
                    .map_err(|source| StagingError::Encode { table: "group_facts", source })?;
                group_facts.insert(group.as_bytes(), bytes.as_slice()).map_err(storage(during))?;
                for ((callid, agent, start), v) in &out.after_call_work {
                    let key = (callid.as_bytes(), *agent, *start);
                    let old = acw.get(key).map_err(storage(during))?.map(|g| g.value());
                    if old != Some(*v) {
                        acw.insert(key, *v).map_err(storage(during))?;
                        let call = GroupKey::Interaction(callid.clone()).encode();
                        if !is_purged(&call)? {
                            dirty.insert(call.as_bytes(), ()).map_err(storage(during))?;
                        }
                    }
                }
            }
            let mut agg = aggregates::AggregateStore {
                buckets: &mut buckets,
                facts: &mut facts_t,
                owners: &mut owners,
                claims: &mut claims,
                parts: &mut parts,
            };
            changed += agg.apply(deltas, aggregates)?;
        }
        tx.commit().map_err(storage(during))?;
        Ok(changed)
    }

    /// Recomputes every aggregate from the stored facts when `fingerprint` — the bucket format and everything the
    /// aggregates depend on besides the facts (the queues' thresholds) — is not the one they were computed with:
    /// after a threshold edit, and once for a store whose aggregates were computed per day by an earlier ccmart.
    /// One transaction: the aggregate rows, their bucket sums and keys are replaced together. Returns whether it
    /// recomputed.
    pub fn reconcile_aggregates(&self, fingerprint: &str, rules: &dyn AggregateRules) -> Result<bool> {
        const SETTING: &str = "aggregates";
        let during = "recompute aggregates";
        {
            let tx = self.db.begin_read().map_err(storage(during))?;
            match tx.open_table(records::SETTINGS) {
                Ok(t) => {
                    if t.get(SETTING).map_err(storage(during))?.is_some_and(|v| v.value() == fingerprint) {
                        return Ok(false);
                    }
                }
                Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(e) => return Err(storage(during)(e)),
            }
        }
        self.faults.step("recompute aggregates")?;
        let tx = self.db.begin_write().map_err(storage(during))?;
        {
            let mut facts = tx.open_table(FACTS).map_err(storage(during))?;
            let mut owners = tx.open_table(KEY_OWNERS).map_err(storage(during))?;
            let mut claims = tx.open_table(keys::KEY_CLAIMS).map_err(storage(during))?;
            let mut parts = tx.open_table(DIRTY_PARTITIONS).map_err(storage(during))?;
            let mut buckets = tx.open_table(aggregates::AGGREGATE_BUCKETS).map_err(storage(during))?;
            let mut group_facts = tx.open_table(GROUP_FACTS).map_err(storage(during))?;
            let mut dirty = tx.open_table(DIRTY_GROUPS).map_err(storage(during))?;
            let whole = |t: &'static str| (t.as_bytes(), &b""[..], i64::MIN)..=(t.as_bytes(), &b"\xff"[..], i64::MAX);
            for table in rules.aggregate_tables() {
                let mut rows = Vec::new();
                for item in facts.range::<(&[u8], &[u8], i64)>(whole(table)).map_err(storage(during))? {
                    let (k, _) = item.map_err(storage(during))?;
                    let (_, day, key) = k.value();
                    rows.push((String::from_utf8_lossy(day).into_owned(), key));
                }
                for (day, key) in &rows {
                    facts.remove((table.as_bytes(), day.as_bytes(), *key)).map_err(storage(during))?;
                    owners.remove((table.as_bytes(), *key)).map_err(storage(during))?;
                    parts.insert((table, day.as_str()), ()).map_err(storage(during))?;
                }
                claims
                    .retain_in::<(&[u8], i64), _>(
                        (table.as_bytes(), i64::MIN)..=(table.as_bytes(), i64::MAX),
                        |_, _| false,
                    )
                    .map_err(storage(during))?;
            }
            buckets.retain(|_, _| false).map_err(storage(during))?;
            // Aggregates of an earlier ccmart were groups of their own, one per day: they are not any more.
            for kind in [GroupKind::QueueAggregateDay, GroupKind::AgentAggregateDay] {
                let prefix = kind.prefix().as_bytes();
                group_facts.retain(|k, _| !k.starts_with(prefix)).map_err(storage(during))?;
                dirty.retain(|k, _| !k.starts_with(prefix)).map_err(storage(during))?;
            }
            let mut deltas = aggregates::AggregateDeltas::default();
            for table in rules.source_tables() {
                for item in facts.range::<(&[u8], &[u8], i64)>(whole(table)).map_err(storage(during))? {
                    let (_, v) = item.map_err(storage(during))?;
                    deltas.apply_bytes(rules, table, v.value(), 1)?;
                }
            }
            let mut agg = aggregates::AggregateStore {
                buckets: &mut buckets,
                facts: &mut facts,
                owners: &mut owners,
                claims: &mut claims,
                parts: &mut parts,
            };
            agg.apply(deltas, rules)?;
            tx.open_table(records::SETTINGS)
                .map_err(storage(during))?
                .insert(SETTING, fingerprint)
                .map_err(storage(during))?;
        }
        tx.commit().map_err(storage(during))?;
        Ok(true)
    }

    /// Forgets the aggregate sums of spans that start before `cutoff` (epoch seconds), with the days the mart
    /// retention removes: a fact contributes only to spans at or after its own start, so nothing retained needs
    /// them. Returns how many were dropped.
    pub fn expire_aggregate_sums_before(&self, cutoff: i64) -> Result<usize> {
        let during = "expire aggregate sums";
        self.faults.step("expire aggregate sums")?;
        let tx = self.db.begin_write().map_err(storage(during))?;
        let mut dropped = 0;
        {
            let mut buckets = tx.open_table(aggregates::AGGREGATE_BUCKETS).map_err(storage(during))?;
            for family in 0..=u8::MAX {
                for width in WIDTHS {
                    let range = (family, width, i64::MIN, i64::MIN)..(family, width, cutoff, i64::MIN);
                    let mut n = 0;
                    buckets
                        .retain_in::<(u8, i64, i64, i64), _>(range, |_, _| {
                            n += 1;
                            false
                        })
                        .map_err(storage(during))?;
                    dropped += n;
                }
            }
        }
        tx.commit().map_err(storage(during))?;
        Ok(dropped)
    }

    /// Mart partitions whose facts changed since the last published version: (table, day).
    pub fn dirty_partitions(&self) -> Result<Vec<(String, String)>> {
        let tx = self.db.begin_read().map_err(storage("read dirty partitions"))?;
        let t = tx.open_table(DIRTY_PARTITIONS).map_err(storage("read dirty partitions"))?;
        let mut out = Vec::new();
        for item in t.iter().map_err(storage("read dirty partitions"))? {
            let (k, _) = item.map_err(storage("read dirty partitions"))?;
            let (a, b) = k.value();
            out.push((a.to_string(), b.to_string()));
        }
        Ok(out)
    }

    /// Partitions with facts new since the last published version and no other change (see
    /// [`Self::dirty_partitions`] for those to rewrite): (table, day).
    pub fn appended_partitions(&self) -> Result<Vec<(String, String)>> {
        let during = "read appended facts";
        let tx = self.db.begin_read().map_err(storage(during))?;
        let t = tx.open_table(APPENDED_FACTS).map_err(storage(during))?;
        let mut out: Vec<(String, String)> = Vec::new();
        let mut next: Option<(Vec<u8>, Vec<u8>)> = Some((Vec::new(), Vec::new()));
        // One seek per partition: after each one found, jump past its keys.
        while let Some((table, day)) = next.take() {
            let mut range = t
                .range::<(&[u8], &[u8], i64)>((table.as_slice(), day.as_slice(), i64::MIN)..)
                .map_err(storage(during))?;
            let Some(item) = range.next() else { break };
            let (k, _) = item.map_err(storage(during))?;
            let (tb, d, _) = k.value();
            let (tb, d) = (tb.to_vec(), d.to_vec());
            out.push((String::from_utf8_lossy(&tb).into_owned(), String::from_utf8_lossy(&d).into_owned()));
            let mut after = d.clone();
            after.push(0);
            next = Some((tb, after));
        }
        Ok(out)
    }

    /// Whether the mart partition (table, day) was published by this site from this staging since it last took
    /// over a replicated mart (see [`Self::forget_synced_partitions`]): only then can new facts be appended to it.
    pub fn is_synced(&self, table: &str, day: &str) -> Result<bool> {
        let during = "read synced partitions";
        let tx = self.db.begin_read().map_err(storage(during))?;
        let t = tx.open_table(SYNCED_PARTITIONS).map_err(storage(during))?;
        Ok(t.get((table, day)).map_err(storage(during))?.is_some())
    }

    /// Forgets which partitions this staging published: the mart now comes from the other site (a promotion after
    /// replication), so its partitions may hold facts staging does not know of, and each is rewritten the first
    /// time it changes.
    pub fn forget_synced_partitions(&self) -> Result<()> {
        let during = "forget synced partitions";
        self.faults.step("forget synced partitions")?;
        let tx = self.db.begin_write().map_err(storage(during))?;
        tx.open_table(SYNCED_PARTITIONS).map_err(storage(during))?.retain(|_, _| false).map_err(storage(during))?;
        tx.commit().map_err(storage(during))?;
        Ok(())
    }

    /// The facts of one partition new since the last published version (see [`Self::appended_partitions`]), in
    /// key order.
    pub fn appended_facts(&self, table: &str, day: &str) -> Result<Vec<FactRow>> {
        let during = "read appended facts";
        let tx = self.db.begin_read().map_err(storage(during))?;
        let appended = tx.open_table(APPENDED_FACTS).map_err(storage(during))?;
        let facts = tx.open_table(FACTS).map_err(storage(during))?;
        let mut out = Vec::new();
        let range = (table.as_bytes(), day.as_bytes(), i64::MIN)..=(table.as_bytes(), day.as_bytes(), i64::MAX);
        for item in appended.range::<(&[u8], &[u8], i64)>(range).map_err(storage(during))? {
            let (k, _) = item.map_err(storage(during))?;
            if let Some(v) = facts.get(k.value()).map_err(storage(during))? {
                out.push(FactRow::decode(v.value())?);
            }
        }
        Ok(out)
    }

    /// All fact rows of one partition, in key order.
    pub fn partition_facts(&self, table: &str, day: &str) -> Result<Vec<(i64, FactRow)>> {
        let during = "read partition facts";
        let tx = self.db.begin_read().map_err(storage(during))?;
        let t = tx.open_table(FACTS).map_err(storage(during))?;
        let mut out = Vec::new();
        for item in t
            .range::<(&[u8], &[u8], i64)>(
                (table.as_bytes(), day.as_bytes(), i64::MIN)..=(table.as_bytes(), day.as_bytes(), i64::MAX),
            )
            .map_err(storage(during))?
        {
            let (k, v) = item.map_err(storage(during))?;
            out.push((k.value().2, FactRow::decode(v.value())?));
        }
        Ok(out)
    }

    /// One fact row, if present (used to emit calendar rows only when missing or changed).
    pub fn fact(&self, table: &str, day: &str, key: i64) -> Result<Option<FactRow>> {
        let tx = self.db.begin_read().map_err(storage("read fact"))?;
        let t = tx.open_table(FACTS).map_err(storage("read fact"))?;
        let v = t.get((table.as_bytes(), day.as_bytes(), key)).map_err(storage("read fact"))?;
        v.map(|v| FactRow::decode(v.value())).transpose()
    }

    /// Publishes a mart version: records the snapshot and clears the partitions it covers (rewritten or appended
    /// to), in one transaction. Until this commits, readers keep seeing the previous version even though Delta
    /// tables moved on.
    pub fn publish(&self, snapshot: &MartSnapshot, published: &[(String, String)]) -> Result<()> {
        self.faults.step("publish mart version")?;
        let during = "publish mart version";
        let tx = self.db.begin_write().map_err(storage(during))?;
        {
            let mut cat = tx.open_table(CATALOG).map_err(storage(during))?;
            let mut parts = tx.open_table(DIRTY_PARTITIONS).map_err(storage(during))?;
            let mut appended = tx.open_table(APPENDED_FACTS).map_err(storage(during))?;
            let bytes = rmp_serde::to_vec_named(snapshot)
                .map_err(|source| StagingError::Encode { table: "catalog", source })?;
            cat.insert(snapshot.version, bytes.as_slice()).map_err(storage(during))?;
            let mut synced = tx.open_table(SYNCED_PARTITIONS).map_err(storage(during))?;
            for (t, d) in published {
                synced.insert((t.as_str(), d.as_str()), ()).map_err(storage(during))?;
                parts.remove((t.as_str(), d.as_str())).map_err(storage(during))?;
                let range = (t.as_bytes(), d.as_bytes(), i64::MIN)..=(t.as_bytes(), d.as_bytes(), i64::MAX);
                appended.retain_in::<(&[u8], &[u8], i64), _>(range, |_, _| false).map_err(storage(during))?;
            }
        }
        tx.commit().map_err(storage(during))?;
        Ok(())
    }

    /// Records mart versions another site published (a replication pass, a bootstrap) in one transaction: a
    /// bootstrap that brings a day of 5-second cycles commits once, not once per version.
    pub fn publish_replicated(&self, snapshots: &[&MartSnapshot]) -> Result<()> {
        if snapshots.is_empty() {
            return Ok(());
        }
        self.faults.step("publish mart version")?;
        let during = "publish replicated mart versions";
        let tx = self.db.begin_write().map_err(storage(during))?;
        {
            let mut cat = tx.open_table(CATALOG).map_err(storage(during))?;
            for snapshot in snapshots {
                let bytes = rmp_serde::to_vec_named(snapshot)
                    .map_err(|source| StagingError::Encode { table: "catalog", source })?;
                cat.insert(snapshot.version, bytes.as_slice()).map_err(storage(during))?;
            }
        }
        tx.commit().map_err(storage(during))?;
        Ok(())
    }

    /// Forgets mart versions published before `before` (epoch seconds), except the newest: queries can no longer
    /// ask for them, so vacuum may delete their files. Returns how many were dropped.
    pub fn prune_catalog(&self, before: i64) -> Result<usize> {
        let during = "prune catalog";
        let Some(latest) = self.latest_snapshot()? else { return Ok(0) };
        let tx = self.db.begin_write().map_err(storage(during))?;
        let mut dropped = 0;
        {
            let mut cat = tx.open_table(CATALOG).map_err(storage(during))?;
            let mut old = Vec::new();
            for item in cat.range(..latest.version).map_err(storage(during))? {
                let (k, v) = item.map_err(storage(during))?;
                let s: MartSnapshot = rmp_serde::from_slice(v.value())
                    .map_err(|source| StagingError::Decode { table: "catalog", source })?;
                if s.published_at < before {
                    old.push(k.value());
                }
            }
            for v in old {
                cat.remove(v).map_err(storage(during))?;
                dropped += 1;
            }
        }
        tx.commit().map_err(storage(during))?;
        Ok(dropped)
    }

    /// Forgets mart versions older than `oldest` (a standby mirroring the versions its active still serves).
    /// Returns how many were dropped.
    pub fn prune_catalog_below(&self, oldest: u64) -> Result<usize> {
        let during = "prune catalog";
        let tx = self.db.begin_write().map_err(storage(during))?;
        let mut dropped = 0;
        {
            let mut cat = tx.open_table(CATALOG).map_err(storage(during))?;
            let old: Vec<u64> = cat
                .range(..oldest)
                .map_err(storage(during))?
                .map(|item| item.map(|(k, _)| k.value()))
                .collect::<std::result::Result<_, _>>()
                .map_err(storage(during))?;
            for v in old {
                cat.remove(v).map_err(storage(during))?;
                dropped += 1;
            }
        }
        tx.commit().map_err(storage(during))?;
        Ok(dropped)
    }

    /// Forgets the mart versions `versions` (a standby mirroring the versions its active serves). Returns how many
    /// were dropped.
    pub fn forget_versions(&self, versions: &[u64]) -> Result<usize> {
        if versions.is_empty() {
            return Ok(0);
        }
        let during = "prune catalog";
        let tx = self.db.begin_write().map_err(storage(during))?;
        let mut dropped = 0;
        {
            let mut cat = tx.open_table(CATALOG).map_err(storage(during))?;
            for v in versions {
                if cat.remove(*v).map_err(storage(during))?.is_some() {
                    dropped += 1;
                }
            }
        }
        tx.commit().map_err(storage(during))?;
        Ok(dropped)
    }

    /// Removes the staged rows of transformed groups (interactions, login sessions) whose facts all lie on days
    /// before `cutoff` (`YYYY-MM-DD`), at most `limit` groups per call (bounding the transaction). Their facts stay
    /// (partitions are rebuilt from facts), and the group is remembered as purged: rows that arrive for it later are
    /// not staged ([`ChunkOutcome::beyond_retention`]) and nothing wakes it, so its facts can never be replaced by a
    /// partial re-transform. Configuration and calendar groups are never purged; dirty groups wait.
    pub fn purge_groups_before(&self, cutoff: &str, limit: usize, now: i64) -> Result<PurgeOutcome> {
        let during = "purge staging";
        let mut outcome = PurgeOutcome::default();
        let candidates: Vec<GroupKey> = {
            let tx = self.db.begin_read().map_err(storage(during))?;
            let group_facts = tx.open_table(GROUP_FACTS).map_err(storage(during))?;
            let dirty = tx.open_table(DIRTY_GROUPS).map_err(storage(during))?;
            let purged = tx.open_table(PURGED).map_err(storage(during))?;
            let mut out = Vec::new();
            for item in group_facts.iter().map_err(storage(during))? {
                let (g, v) = item.map_err(storage(during))?;
                let key = decode_group("group_facts", g.value())?;
                if matches!(key.kind(), GroupKind::Configuration | GroupKind::CalendarDay) {
                    continue;
                }
                let addrs: Vec<FactAddress> = rmp_serde::from_slice(v.value())
                    .map_err(|source| StagingError::Decode { table: "group_facts", source })?;
                let old = !addrs.is_empty() && addrs.iter().all(|a| !a.day.is_empty() && a.day.as_str() < cutoff);
                if old
                    && dirty.get(g.value()).map_err(storage(during))?.is_none()
                    && purged.get(g.value()).map_err(storage(during))?.is_none()
                {
                    if out.len() == limit {
                        outcome.more = true;
                        break;
                    }
                    out.push(key);
                }
            }
            out
        };
        if candidates.is_empty() {
            return Ok(outcome);
        }
        let tx = self.db.begin_write().map_err(storage(during))?;
        {
            let mut rows = tx.open_table(ROWS).map_err(storage(during))?;
            let mut group_rows = tx.open_table(GROUP_ROWS).map_err(storage(during))?;
            let mut purged = tx.open_table(PURGED).map_err(storage(during))?;
            let mut acw = tx.open_table(ACW).map_err(storage(during))?;
            for key in &candidates {
                let group = key.encode();
                let mut keys = Vec::new();
                for item in group_rows
                    .range::<(&[u8], &[u8], &[u8], i64)>((group.as_bytes(), &[][..], &[][..], i64::MIN)..)
                    .map_err(storage(during))?
                {
                    let (k, _) = item.map_err(storage(during))?;
                    let (grp, idb, table, id) = k.value();
                    if grp != group.as_bytes() {
                        break;
                    }
                    keys.push((idb.to_vec(), table.to_vec(), id));
                }
                for (idb, table, id) in &keys {
                    group_rows
                        .remove((group.as_bytes(), idb.as_slice(), table.as_slice(), *id))
                        .map_err(storage(during))?;
                    rows.remove((idb.as_slice(), table.as_slice(), *id)).map_err(storage(during))?;
                }
                if let Some(callid) = key.callid() {
                    let mut links = Vec::new();
                    for item in acw
                        .range::<(&[u8], i64, i64)>((callid.as_bytes(), i64::MIN, i64::MIN)..)
                        .map_err(storage(during))?
                    {
                        let (k, _) = item.map_err(storage(during))?;
                        let (c, agent, start) = k.value();
                        if c != callid.as_bytes() {
                            break;
                        }
                        links.push((agent, start));
                    }
                    for (agent, start) in links {
                        acw.remove((callid.as_bytes(), agent, start)).map_err(storage(during))?;
                    }
                }
                purged.insert(group.as_bytes(), now).map_err(storage(during))?;
                outcome.groups += 1;
                outcome.rows += keys.len();
            }
        }
        tx.commit().map_err(storage(during))?;
        Ok(outcome)
    }

    /// Deletes the facts of `table` on days before `cutoff` (`YYYY-MM-DD`) and marks those partitions dirty, so
    /// the next publish removes them from the mart in the same atomic way as any other change. Returns the days.
    pub fn expire_facts_before(&self, table: &str, cutoff: &str) -> Result<Vec<String>> {
        let during = "expire facts";
        let tx = self.db.begin_write().map_err(storage(during))?;
        let mut days = BTreeSet::new();
        {
            let mut facts = tx.open_table(FACTS).map_err(storage(during))?;
            let mut keys = Vec::new();
            for item in facts
                .range::<(&[u8], &[u8], i64)>(
                    (table.as_bytes(), &b""[..], i64::MIN)..(table.as_bytes(), cutoff.as_bytes(), i64::MIN),
                )
                .map_err(storage(during))?
            {
                let (k, _) = item.map_err(storage(during))?;
                let (_, day, key) = k.value();
                days.insert(String::from_utf8_lossy(day).into_owned());
                keys.push((day.to_vec(), key));
            }
            for (day, key) in &keys {
                facts.remove((table.as_bytes(), day.as_slice(), *key)).map_err(storage(during))?;
            }
            let mut dirty = tx.open_table(DIRTY_PARTITIONS).map_err(storage(during))?;
            for d in &days {
                dirty.insert((table, d.as_str()), ()).map_err(storage(during))?;
            }
        }
        tx.commit().map_err(storage(during))?;
        Ok(days.into_iter().collect())
    }

    /// Every mart version still queryable, oldest first.
    pub fn snapshots(&self) -> Result<Vec<MartSnapshot>> {
        let tx = self.db.begin_read().map_err(storage("read catalog"))?;
        let t = tx.open_table(CATALOG).map_err(storage("read catalog"))?;
        let mut out = Vec::new();
        for item in t.iter().map_err(storage("read catalog"))? {
            let (_, v) = item.map_err(storage("read catalog"))?;
            out.push(
                rmp_serde::from_slice(v.value()).map_err(|source| StagingError::Decode { table: "catalog", source })?,
            );
        }
        Ok(out)
    }

    /// The newest published mart version.
    pub fn latest_snapshot(&self) -> Result<Option<MartSnapshot>> {
        let tx = self.db.begin_read().map_err(storage("read catalog"))?;
        let t = tx.open_table(CATALOG).map_err(storage("read catalog"))?;
        let last = t.last().map_err(storage("read catalog"))?;
        let out = match last {
            Some((_, v)) => Some(
                rmp_serde::from_slice(v.value()).map_err(|source| StagingError::Decode { table: "catalog", source })?,
            ),
            None => None,
        };
        Ok(out)
    }

    /// A specific published mart version.
    pub fn snapshot(&self, version: u64) -> Result<Option<MartSnapshot>> {
        let tx = self.db.begin_read().map_err(storage("read catalog"))?;
        let t = tx.open_table(CATALOG).map_err(storage("read catalog"))?;
        match t.get(version).map_err(storage("read catalog"))? {
            Some(v) => Ok(Some(
                rmp_serde::from_slice(v.value()).map_err(|source| StagingError::Decode { table: "catalog", source })?,
            )),
            None => Ok(None),
        }
    }

    /// Writes a consistent copy of everything extraction and the transform need to resume — staged rows,
    /// high-water marks, facts, keys, merge state — to a new redb file at `path` (through `path.partial`, then
    /// renamed). Read in one transaction, so it is one point in time. Not copied: this site's own fence, catalog,
    /// audit trail and maintenance records.
    pub fn write_checkpoint(&self, path: &Path) -> Result<()> {
        let during = "write staging checkpoint";
        let partial = path.with_extension("partial");
        let _ = std::fs::remove_file(&partial);
        let out = Database::create(&partial).map_err(storage(during))?;
        let src = self.db.begin_read().map_err(storage(during))?;
        let dst = out.begin_write().map_err(storage(during))?;
        copy_resumable_tables(&src, &dst).map_err(storage(during))?;
        dst.commit().map_err(storage(during))?;
        drop(out);
        std::fs::rename(&partial, path).map_err(|source| StagingError::Io { path: path.to_path_buf(), source })?;
        Ok(())
    }

    /// Replaces this store's resumable tables with those of the checkpoint at `path` (see
    /// [`Self::write_checkpoint`]), in one transaction: a promoted standby resumes extraction from the active's
    /// high-water marks with its staged rows and facts, instead of reading the IDBs again from the start.
    pub fn import_checkpoint(&self, path: &Path) -> Result<()> {
        let during = "import staging checkpoint";
        let src_db = Database::open(path).map_err(storage(during))?;
        let src = src_db.begin_read().map_err(storage(during))?;
        let found = match src.open_table(records::SETTINGS) {
            Ok(t) => t.get(FORMAT_KEY).map_err(storage(during))?.map(|v| v.value().to_string()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(storage(during)(e)),
        };
        if let Some(found) = found.filter(|v| *v != FORMAT_VERSION.to_string()) {
            return Err(StagingError::Format { path: path.to_path_buf(), found });
        }
        let dst = self.db.begin_write().map_err(storage(during))?;
        clear_resumable_tables(&dst).map_err(storage(during))?;
        copy_resumable_tables(&src, &dst).map_err(storage(during))?;
        dst.commit().map_err(storage(during))?;
        Ok(())
    }

    /// Number of staged rows.
    pub fn staged_row_count(&self) -> Result<u64> {
        let tx = self.db.begin_read().map_err(storage("count rows"))?;
        let t = tx.open_table(ROWS).map_err(storage("count rows"))?;
        t.len().map_err(storage("count rows"))
    }
}

/// The stored facts of the groups, open in a write transaction, for moving a group's key.
struct StoredFacts<'a, 't> {
    facts: &'a mut redb::Table<'t, FactKey, &'static [u8]>,
    group_facts: &'a mut redb::Table<'t, &'static [u8], &'static [u8]>,
    owners: &'a mut redb::Table<'t, (&'static [u8], i64), &'static str>,
    parts: &'a mut redb::Table<'t, (&'static str, &'static str), ()>,
}

impl StoredFacts<'_, '_> {
    /// Moves the stored facts of `group` in `table` from key `from` to `to`, with the group's references to them
    /// (see [`keys::rekey`]); marks the partitions it changed. Returns the number of facts rewritten.
    fn move_key(&mut self, group: &str, table: &str, from: i64, to: i64, refs: &KeyReferences) -> Result<usize> {
        let during = "move a colliding key";
        let addrs: Vec<FactAddress> = match self.group_facts.get(group.as_bytes()).map_err(storage(during))? {
            Some(v) => rmp_serde::from_slice(v.value())
                .map_err(|source| StagingError::Decode { table: "group_facts", source })?,
            None => Vec::new(),
        };
        let mut stored = Vec::with_capacity(addrs.len());
        for a in addrs {
            let row = self.facts.get((a.table.as_bytes(), a.day.as_bytes(), a.key)).map_err(storage(during))?;
            if let Some(row) = row {
                let row = FactRow::decode(row.value())?;
                stored.push((a, row));
            }
        }
        let mut moved = stored.clone();
        if !keys::rekey(&mut moved, table, from, to, refs) {
            return Ok(0);
        }
        match self.owners.get((table.as_bytes(), to)).map_err(storage(during))?.map(|g| g.value().to_string()) {
            Some(o) if o != group => {
                return Err(StagingError::KeyCollision { table: table.into(), key: to, owner: o, other: group.into() })
            }
            _ => {}
        }
        let mut rewritten = 0;
        for ((old_a, old_row), (new_a, new_row)) in stored.iter().zip(&moved) {
            if old_a == new_a && old_row == new_row {
                continue;
            }
            if old_a != new_a {
                self.facts
                    .remove((old_a.table.as_bytes(), old_a.day.as_bytes(), old_a.key))
                    .map_err(storage(during))?;
                self.parts.insert((old_a.table.as_str(), old_a.day.as_str()), ()).map_err(storage(during))?;
            }
            let bytes = new_row.encode()?;
            self.facts
                .insert((new_a.table.as_bytes(), new_a.day.as_bytes(), new_a.key), bytes.as_slice())
                .map_err(storage(during))?;
            self.parts.insert((new_a.table.as_str(), new_a.day.as_str()), ()).map_err(storage(during))?;
            rewritten += 1;
        }
        if self.owners.get((table.as_bytes(), from)).map_err(storage(during))?.is_some_and(|g| g.value() == group) {
            self.owners.remove((table.as_bytes(), from)).map_err(storage(during))?;
        }
        self.owners.insert((table.as_bytes(), to), group).map_err(storage(during))?;
        let addrs: Vec<&FactAddress> = moved.iter().map(|(a, _)| a).collect();
        let bytes =
            rmp_serde::to_vec(&addrs).map_err(|source| StagingError::Encode { table: "group_facts", source })?;
        self.group_facts.insert(group.as_bytes(), bytes.as_slice()).map_err(storage(during))?;
        Ok(rewritten)
    }
}

/// The group a row of login session `sid` in `idb` joins (see [`LoginSessionLink::Member`]).
fn session_group_of(
    sessions: &redb::Table<'_, (&str, &str), &str>,
    sid: &str,
    idb: &str,
) -> Result<String, redb::Error> {
    if let Some(g) = sessions.get((sid, idb))? {
        return Ok(g.value().to_string());
    }
    if let Some(item) = sessions.range::<(&str, &str)>((sid, "")..)?.next() {
        let (k, g) = item?;
        if k.value().0 == sid {
            return Ok(g.value().to_string());
        }
    }
    Ok(fallback_session_group(idb, sid).encode())
}

/// A group key read back from `table`.
fn decode_group(table: &'static str, bytes: &[u8]) -> Result<GroupKey> {
    GroupKey::decode(bytes).map_err(|source| StagingError::GroupKey { table, source })
}

/// Moves every row of group `from` into group `to` (a login session's rows staged before its session row);
/// returns how many moved.
fn move_group_rows(
    groups: &mut redb::Table<'_, GroupRowKey, &[u8]>,
    from: &str,
    to: &str,
) -> Result<usize, redb::Error> {
    let mut moved = Vec::new();
    for item in groups.range::<(&[u8], &[u8], &[u8], i64)>((from.as_bytes(), &[][..], &[][..], i64::MIN)..)? {
        let (k, v) = item?;
        let (grp, idb, table, id) = k.value();
        if grp != from.as_bytes() {
            break;
        }
        moved.push((idb.to_vec(), table.to_vec(), id, v.value().to_vec()));
    }
    for (idb, table, id, bytes) in &moved {
        groups.remove((from.as_bytes(), idb.as_slice(), table.as_slice(), *id))?;
        groups.insert((to.as_bytes(), idb.as_slice(), table.as_slice(), *id), bytes.as_slice())?;
    }
    Ok(moved.len())
}

fn copy_resumable_tables(src: &redb::ReadTransaction, dst: &redb::WriteTransaction) -> Result<(), redb::Error> {
    macro_rules! copy {
        ($def:expr, $src:expr, $dst:expr) => {{
            let mut to = $dst.open_table($def)?;
            // A table the source never created is empty; any other failure to open it is an error.
            match $src.open_table($def) {
                Ok(from) => {
                    for item in from.iter()? {
                        let (k, v) = item?;
                        to.insert(k.value(), v.value())?;
                    }
                }
                Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }};
    }
    for_each_resumable_table!(copy, src, dst);
    Ok(())
}

fn clear_resumable_tables(dst: &redb::WriteTransaction) -> Result<(), redb::Error> {
    macro_rules! clear {
        ($def:expr, $dst:expr) => {{
            $dst.delete_table($def)?;
            $dst.open_table($def)?;
        }};
    }
    for_each_resumable_table!(clear, dst);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The registry is every table: a store that has staged, transformed and published holds exactly the tables
    /// the two lists name (a table created anywhere else would be missed by checkpoints and resets).
    #[test]
    fn the_table_registry_names_every_table_of_the_store() {
        use redb::TableHandle;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), FaultInjector::disarmed()).unwrap();
        store.commit_chunk(&chunk(vec![(1, 5)], 5)).unwrap();
        let mut registry: Vec<String> = Vec::new();
        macro_rules! name {
            ($def:expr, $v:expr) => {{
                $v.push($def.name().to_string());
            }};
        }
        for_each_resumable_table!(name, registry);
        for_each_site_table!(name, registry);
        registry.sort();
        let tx = store.db.begin_read().unwrap();
        let mut present: Vec<String> = tx.list_tables().unwrap().map(|t| t.name().to_string()).collect();
        present.sort();
        assert_eq!(present, registry);
    }

    fn chunk<'a>(rows: Vec<(i64, i64)>, mark: i64) -> ExtractedChunk<'a> {
        ExtractedChunk {
            idb: "a",
            table: "G_CALL",
            counter: Counter::Seq,
            rows: rows
                .into_iter()
                .map(|(id, version)| RowToStage {
                    id,
                    group: RowGroup::Key(GroupKey::Interaction(id.to_string())),
                    row: StagedRow { version, values: vec![Some(Value::Int(id))] },
                })
                .collect(),
            quarantined: Vec::new(),
            new_mark: mark,
        }
    }

    /// A store records its format when created; one recording another format (a newer or older ccmart) is refused
    /// at open and as a checkpoint, naming both formats, and is left as it was.
    #[test]
    fn a_store_of_another_format_is_refused_and_left_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let format_of = |store: &Store| {
            let tx = store.db.begin_read().unwrap();
            let t = tx.open_table(records::SETTINGS).unwrap();
            t.get(FORMAT_KEY).unwrap().map(|v| v.value().to_string())
        };
        let store = Store::open(&path, FaultInjector::disarmed()).unwrap();
        assert_eq!(format_of(&store), Some(FORMAT_VERSION.to_string()));
        let checkpoint = dir.path().join("c.redb");
        {
            let tx = store.db.begin_write().unwrap();
            tx.open_table(records::SETTINGS).unwrap().insert(FORMAT_KEY, "99").unwrap();
            tx.commit().unwrap();
        }
        store.write_checkpoint(&checkpoint).unwrap();
        drop(store);
        let e = Store::open(&path, FaultInjector::disarmed()).unwrap_err();
        assert!(matches!(&e, StagingError::Format { found, .. } if found == "99"), "{e}");
        assert!(e.to_string().contains("format 99") && e.to_string().contains(&format!("format {FORMAT_VERSION}")));
        let other = Store::open(&dir.path().join("t.redb"), FaultInjector::disarmed()).unwrap();
        other.commit_chunk(&chunk(vec![(1, 5)], 5)).unwrap();
        let e = other.import_checkpoint(&checkpoint).unwrap_err();
        assert!(matches!(e, StagingError::Format { .. }), "{e}");
        assert_eq!(other.staged_row_count().unwrap(), 1, "nothing imported");
        // Still format 99: the refused open changed nothing.
        let db = Database::open(&path).unwrap();
        let tx = db.begin_read().unwrap();
        let t = tx.open_table(records::SETTINGS).unwrap();
        assert_eq!(t.get(FORMAT_KEY).unwrap().map(|v| v.value().to_string()), Some("99".into()));
    }

    #[test]
    fn newest_version_wins_and_mark_moves_with_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), FaultInjector::disarmed()).unwrap();
        let o = store.commit_chunk(&chunk(vec![(1, 5), (2, 6)], 6)).unwrap();
        assert_eq!(o.staged, 2);
        let o = store.commit_chunk(&chunk(vec![(1, 5), (2, 3)], 7)).unwrap();
        assert_eq!((o.staged, o.unchanged), (0, 2), "same or older versions are not staged again");
        let o = store.commit_chunk(&chunk(vec![(1, 9)], 9)).unwrap();
        assert_eq!(o.staged, 1);
        assert_eq!(store.high_water_mark("a", "G_CALL").unwrap().seq, 9);
        assert_eq!(store.staged_row_count().unwrap(), 2);
        assert_eq!(store.dirty_groups(10).unwrap(), vec![g("I:1"), g("I:2")]);
    }

    /// A re-read (extraction reads the rows above a settling mark again every cycle) drops what staging already
    /// holds — same or older versions, the same quarantine record — and keeps newer versions and new rows, so a
    /// re-read neither stages nor counts anything twice.
    #[test]
    fn re_read_rows_already_staged_are_dropped_before_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), FaultInjector::disarmed()).unwrap();
        let bad = |key: &str, counter_value: i64| QuarantinedRow {
            idb: "a".into(),
            table: "G_CALL".into(),
            key: key.into(),
            column: "STATE".into(),
            reason: "unknown code 42".into(),
            counter_value,
        };
        let mut first = chunk(vec![(1, 5), (2, 6)], 0);
        first.quarantined.push(bad("3", 7));
        assert_eq!(store.drop_already_staged(&mut first).unwrap(), 0, "nothing staged yet");
        let o = store.commit_chunk(&first).unwrap();
        assert_eq!((o.staged, o.quarantined), (2, 1));
        let mut again = chunk(vec![(1, 5), (2, 8), (4, 9)], 0);
        again.quarantined.push(bad("3", 7));
        again.quarantined.push(bad("5", 10));
        assert_eq!(store.drop_already_staged(&mut again).unwrap(), 2, "row 1 at version 5 and row 3's record");
        let kept: Vec<(i64, i64)> = again.rows.iter().map(|r| (r.id, r.row.version)).collect();
        assert_eq!(kept, vec![(2, 8), (4, 9)]);
        assert_eq!(again.quarantined, vec![bad("5", 10)]);
        let o = store.commit_chunk(&again).unwrap();
        assert_eq!((o.staged, o.unchanged, o.quarantined), (2, 0, 1));
        assert_eq!(store.staged_row_count().unwrap(), 3);
        assert_eq!(store.quarantine_count().unwrap(), 2);
        assert_eq!(store.quarantine_count_by_idb().unwrap(), BTreeMap::from([("a".to_string(), 2)]));
    }

    #[test]
    fn purged_groups_keep_their_facts_and_refuse_late_rows_and_wakes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), FaultInjector::disarmed()).unwrap();
        store.commit_chunk(&chunk(vec![(1, 5), (2, 6), (3, 7)], 7)).unwrap();
        let out = |group: &str, day: &str, key: i64| GroupOutput {
            group: g(group),
            facts: vec![(
                FactAddress { table: "interaction_fact".into(), day: day.into(), key },
                FactRow(vec![Cell::Int(key)]),
            )],
            after_call_work: Vec::new(),
        };
        let groups: Vec<GroupKey> = ["I:1", "I:2", "I:3"].map(g).to_vec();
        let outputs = [out("I:1", "2026-10-01", 1), out("I:2", "2026-10-02", 2), out("I:3", "2026-11-20", 3)];
        store.commit_group_outputs(&groups, &outputs, &KeyReferences::default(), &NoAggregates).unwrap();
        // Only groups whose facts all lie before the cutoff go, in bounded batches.
        let first = store.purge_groups_before("2026-11-01", 1, 100).unwrap();
        assert_eq!((first.groups, first.rows, first.more), (1, 1, true));
        let second = store.purge_groups_before("2026-11-01", 10, 100).unwrap();
        assert_eq!((second.groups, second.rows, second.more), (1, 1, false));
        assert_eq!(store.staged_row_count().unwrap(), 1, "I:3 keeps its row");
        assert_eq!(store.partition_facts("interaction_fact", "2026-10-01").unwrap().len(), 1, "facts stay");
        // A late row for a purged interaction is not staged and wakes nothing; one for a kept one is.
        let o = store.commit_chunk(&chunk(vec![(1, 8), (3, 9)], 9)).unwrap();
        assert_eq!((o.staged, o.beyond_retention), (1, 1));
        assert_eq!(store.dirty_groups(10).unwrap(), vec![g("I:3")]);
        let mut fact_of_s = out("S:1@2", "2026-11-21", 4);
        fact_of_s.after_call_work.push((("2".to_string(), 7, 100), 30));
        store.commit_group_outputs(&[], &[fact_of_s], &KeyReferences::default(), &NoAggregates).unwrap();
        assert_eq!(store.dirty_groups(10).unwrap(), vec![g("I:3")], "a purged group is never woken");
    }

    fn g(key: &str) -> GroupKey {
        key.parse().unwrap()
    }

    /// Aggregates of a table `seg` (rows: key, entity, start, value): per 15-minute bucket, hour and day, the
    /// number of rows, the sum and the largest of their values.
    struct TestAggregates;

    impl AggregateRules for TestAggregates {
        fn contributions(&self, table: &str, row: &FactRow) -> Vec<Contribution> {
            let int = |i: usize| match row.0.get(i) {
                Some(Cell::Int(v)) => *v,
                _ => 0,
            };
            if table != "seg" {
                return Vec::new();
            }
            let bucket = int(2) - int(2).rem_euclid(BUCKET_SECS);
            vec![Contribution { family: 0, entity: int(1), bucket, measures: vec![int(3)], wait: Some(int(3)) }]
        }
        fn source_tables(&self) -> Vec<&'static str> {
            vec!["seg"]
        }
        fn aggregate_tables(&self) -> Vec<&'static str> {
            vec!["agg900", "agg3600", "agg86400"]
        }
        fn row(&self, _: u8, width: i64, entity: i64, start: i64, sums: &BucketSums) -> AggregateRow {
            let table = match width {
                900 => "agg900",
                3600 => "agg3600",
                _ => "agg86400",
            };
            let day = crate::model::Day::of_timestamp(start).unwrap().to_string();
            let key = 1000 * entity + start / 900;
            let cells = [key, entity, start, sums.count, sums.measures.first().copied().unwrap_or(0), sums.max_wait()];
            AggregateRow { table, day, key, row: FactRow(cells.into_iter().map(Cell::Int).collect()) }
        }
    }

    /// [`TestAggregates`] whose keys ignore the entity: every entity's rows of one span collide.
    struct CollidingAggregates;

    impl AggregateRules for CollidingAggregates {
        fn contributions(&self, table: &str, row: &FactRow) -> Vec<Contribution> {
            TestAggregates.contributions(table, row)
        }
        fn source_tables(&self) -> Vec<&'static str> {
            TestAggregates.source_tables()
        }
        fn aggregate_tables(&self) -> Vec<&'static str> {
            TestAggregates.aggregate_tables()
        }
        fn row(&self, family: u8, width: i64, entity: i64, start: i64, sums: &BucketSums) -> AggregateRow {
            let mut row = TestAggregates.row(family, width, entity, start, sums);
            row.key = start / 900;
            row.row.0[0] = Cell::Int(row.key);
            row
        }
    }

    /// Aggregate rows of two entities whose keys collide keep apart under distinct keys, the same whichever
    /// entity's facts come first, and each follows its own facts afterwards.
    #[test]
    fn colliding_aggregate_rows_are_ranked_whatever_the_arrival_order() {
        let t0 = "2026-01-01".parse::<crate::model::Day>().unwrap().start() + 3600;
        let seg = |group: &str, entity: i64, v: i64| GroupOutput {
            group: g(group),
            facts: vec![(
                FactAddress { table: "seg".into(), day: "2026-01-01".into(), key: entity },
                FactRow(vec![Cell::Int(entity), Cell::Int(entity), Cell::Int(t0), Cell::Int(v)]),
            )],
            after_call_work: Vec::new(),
        };
        let rows = |store: &Store| {
            let mut out = Vec::new();
            for table in ["agg900", "agg3600", "agg86400"] {
                out.extend(store.partition_facts(table, "2026-01-01").unwrap().into_iter().map(|(k, r)| (table, k, r)));
            }
            out
        };
        let mut ends = Vec::new();
        for order in [["I:7", "I:8"], ["I:8", "I:7"]] {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(&dir.path().join("s.redb"), FaultInjector::disarmed()).unwrap();
            for group in order {
                let o = seg(group, group[2..].parse().unwrap(), 10);
                let groups = [o.group.clone()];
                store.commit_group_outputs(&groups, &[o], &KeyReferences::default(), &CollidingAggregates).unwrap();
            }
            let o = seg("I:8", 8, 3);
            let groups = [o.group.clone()];
            store.commit_group_outputs(&groups, &[o], &KeyReferences::default(), &CollidingAggregates).unwrap();
            let all = rows(&store);
            assert_eq!(all.len(), 6, "two entities × three spans: {all:?}");
            let keys: BTreeSet<(&str, i64)> = all.iter().map(|(t, k, _)| (*t, *k)).collect();
            assert_eq!(keys.len(), 6, "no key holds two rows");
            let sum_of = |entity: i64| {
                all.iter()
                    .filter(move |(t, _, r)| *t == "agg900" && r.0[1] == Cell::Int(entity))
                    .map(|(_, _, r)| r.0[4].clone())
            };
            assert_eq!(sum_of(7).collect::<Vec<_>>(), vec![Cell::Int(10)]);
            assert_eq!(sum_of(8).collect::<Vec<_>>(), vec![Cell::Int(3)], "entity 8 follows its own fact");
            ends.push(all);
        }
        assert_eq!(ends[0], ends[1], "the same rows and keys in either order");
    }

    /// What the aggregate tables of [`TestAggregates`] hold: (table, start) → (count, sum, max).
    fn test_aggregates(store: &Store) -> BTreeMap<(String, i64), (i64, i64, i64)> {
        let mut out = BTreeMap::new();
        for table in ["agg900", "agg3600", "agg86400"] {
            for (_, row) in store.partition_facts(table, "2026-01-01").unwrap() {
                let int = |i: usize| match &row.0[i] {
                    Cell::Int(v) => *v,
                    c => panic!("{c:?}"),
                };
                out.insert((table.to_string(), int(2)), (int(3), int(4), int(5)));
            }
        }
        out
    }

    /// The aggregates follow every change of the facts they read — a new fact, a changed one, a removed one, one
    /// that moved to another bucket — in the commit that changes them, touching only the rows of the buckets,
    /// hours and days that moved; a group transformed again with the same result changes none. The largest value
    /// stays exact when the fact that held it goes.
    #[test]
    fn aggregates_follow_the_facts_that_change_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), FaultInjector::disarmed()).unwrap();
        let t0 = "2026-01-01".parse::<crate::model::Day>().unwrap().start() + 3600;
        let out = |group: &str, facts: &[(i64, i64, i64)]| GroupOutput {
            group: g(group),
            facts: facts
                .iter()
                .map(|(k, start, v)| {
                    let row = FactRow(vec![Cell::Int(*k), Cell::Int(7), Cell::Int(*start), Cell::Int(*v)]);
                    (FactAddress { table: "seg".into(), day: "2026-01-01".into(), key: *k }, row)
                })
                .collect(),
            after_call_work: Vec::new(),
        };
        let commit = |o: GroupOutput| {
            let group = o.group.clone();
            store.commit_group_outputs(&[group], &[o], &KeyReferences::default(), &TestAggregates).unwrap()
        };
        let row = |table: &str, start: i64| (table.to_string(), start);
        commit(out("I:1", &[(1, t0, 10), (2, t0 + 60, 5)]));
        let a = test_aggregates(&store);
        assert_eq!(a[&row("agg900", t0)], (2, 15, 10));
        assert_eq!(a[&row("agg3600", t0)], (2, 15, 10));
        assert_eq!(a[&row("agg86400", t0 - 3600)], (2, 15, 10));
        assert_eq!(commit(out("I:1", &[(1, t0, 10), (2, t0 + 60, 5)])), 0, "the same facts again change nothing");
        // The largest value goes with its fact; another group adds a bucket of the same hour.
        commit(out("I:1", &[(1, t0, 3), (2, t0 + 60, 5)]));
        commit(out("I:2", &[(3, t0 + 1000, 4)]));
        let a = test_aggregates(&store);
        assert_eq!(a[&row("agg900", t0)], (2, 8, 5));
        assert_eq!(a[&row("agg900", t0 + 900)], (1, 4, 4));
        assert_eq!(a[&row("agg3600", t0)], (3, 12, 5));
        // A fact moves to the next hour: both hours change, the emptied bucket's row goes.
        commit(out("I:2", &[(3, t0 + 3700, 4)]));
        let a = test_aggregates(&store);
        assert!(!a.contains_key(&row("agg900", t0 + 900)));
        assert_eq!((a[&row("agg3600", t0)], a[&row("agg3600", t0 + 3600)]), ((2, 8, 5), (1, 4, 4)));
        // A group that no longer produces its facts takes its contributions along.
        commit(out("I:1", &[]));
        let a = test_aggregates(&store);
        assert_eq!(a.len(), 3, "{a:?}");
        assert_eq!(a[&row("agg86400", t0 - 3600)], (1, 4, 4));
        // Recomputing from the facts gives what the increments gave.
        let before = test_aggregates(&store);
        assert!(store.reconcile_aggregates("v1", &TestAggregates).unwrap());
        assert!(!store.reconcile_aggregates("v1", &TestAggregates).unwrap(), "once per fingerprint");
        assert_eq!(test_aggregates(&store), before);
        // Retention forgets the sums of spans before the cutoff and nothing after it.
        let (day, next) = (t0 - 3600, t0 - 3600 + 86_400);
        assert_eq!(store.expire_aggregate_sums_before(day).unwrap(), 0);
        assert_eq!(store.expire_aggregate_sums_before(next).unwrap(), 3, "bucket, hour and day of the one fact left");
        commit(out("I:3", &[(4, t0, 1)]));
        assert_eq!(test_aggregates(&store)[&row("agg86400", day)], (1, 1, 1), "a new fact starts a new sum");
    }

    /// The facts of group `group` as the transform would produce them if its interaction hashed to `key`: the
    /// interaction (keyed `key`, on `day`) and one party of it pointing at it.
    fn colliding(group: &str, day: &str, key: i64) -> GroupOutput {
        let party = crate::transform::surrogate_key(&[group, "party"]);
        GroupOutput {
            group: g(group),
            facts: vec![
                (
                    FactAddress { table: "interaction_fact".into(), day: day.into(), key },
                    FactRow(vec![Cell::Int(key), Cell::Text(group.into())]),
                ),
                (
                    FactAddress { table: "interaction_resource_fact".into(), day: day.into(), key: party },
                    FactRow(vec![Cell::Int(party), Cell::Int(key)]),
                ),
            ],
            after_call_work: Vec::new(),
        }
    }

    fn interaction_refs() -> KeyReferences {
        KeyReferences::new([("interaction_fact".to_string(), "interaction_resource_fact".to_string(), 1)])
    }

    /// Every stored fact of the tables of [`colliding`], by table and day.
    fn stored(store: &Store) -> Vec<(String, String, i64, FactRow)> {
        let mut out = Vec::new();
        for table in ["interaction_fact", "interaction_resource_fact"] {
            for day in ["2026-11-24", "2026-11-25", "2026-11-26"] {
                for (k, r) in store.partition_facts(table, day).unwrap() {
                    out.push((table.to_string(), day.to_string(), k, r));
                }
            }
        }
        out
    }

    /// Three interactions whose keys hash alike keep three distinct keys — the first by group key keeps the hash,
    /// the others get probe keys, and each party row follows its own interaction — and the mart ends the same
    /// whichever order they arrive in; at no step does one key hold two interactions.
    #[test]
    fn colliding_keys_are_ranked_by_group_whatever_the_arrival_order() {
        let outs = [
            colliding("I:A", "2026-11-26", 42),
            colliding("I:B", "2026-11-24", 42),
            colliding("I:C", "2026-11-25", 42),
        ];
        let orders = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
        let mut results = Vec::new();
        for order in orders {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(&dir.path().join("s.redb"), FaultInjector::disarmed()).unwrap();
            for (step, i) in order.iter().enumerate() {
                let o = &outs[*i];
                store
                    .commit_group_outputs(
                        std::slice::from_ref(&o.group),
                        std::slice::from_ref(o),
                        &interaction_refs(),
                        &NoAggregates,
                    )
                    .unwrap();
                let keys: Vec<i64> = stored(&store)
                    .into_iter()
                    .filter(|(t, ..)| t == "interaction_fact")
                    .map(|(_, _, k, _)| k)
                    .collect();
                let distinct: BTreeSet<i64> = keys.iter().copied().collect();
                assert_eq!(
                    (keys.len(), distinct.len()),
                    (step + 1, step + 1),
                    "order {order:?}, step {step}: {keys:?}"
                );
            }
            // Transforming a group again with the same result changes nothing.
            for o in &outs {
                let n = store.commit_group_outputs(
                    std::slice::from_ref(&o.group),
                    std::slice::from_ref(o),
                    &interaction_refs(),
                    &NoAggregates,
                );
                assert_eq!(n.unwrap(), 0, "order {order:?}: {} again", o.group.encode());
            }
            results.push(stored(&store));
        }
        for r in &results[1..] {
            assert_eq!(r, &results[0], "the same facts whatever the order");
        }
        let key_of = |group: &str| {
            results[0]
                .iter()
                .find(|(t, _, _, r)| t == "interaction_fact" && r.0[1] == Cell::Text(group.into()))
                .unwrap()
                .2
        };
        assert_eq!(key_of("I:A"), 42);
        assert_eq!(key_of("I:B"), probe_key("interaction_fact", 42, 1));
        assert_eq!(key_of("I:C"), probe_key("interaction_fact", 42, 2));
        for group in ["I:A", "I:B", "I:C"] {
            let party = crate::transform::surrogate_key(&[group, "party"]);
            let row = results[0].iter().find(|(t, _, k, _)| t == "interaction_resource_fact" && *k == party).unwrap();
            assert_eq!(row.3 .0[1], Cell::Int(key_of(group)), "{group}'s party points at its own interaction");
        }
    }

    /// A group that takes the hash from a group already stored moves that group's facts to their probe key in the
    /// same transaction, and marks the partitions of both dirty.
    #[test]
    fn a_displaced_group_moves_in_the_same_commit_and_its_partition_is_republished() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), FaultInjector::disarmed()).unwrap();
        let (b, a) = (colliding("I:B", "2026-11-24", 42), colliding("I:A", "2026-11-25", 42));
        store.commit_group_outputs(&[g("I:B")], &[b], &interaction_refs(), &NoAggregates).unwrap();
        let first = MartSnapshot { version: 1, tables: BTreeMap::new(), published_at: 0, newest_end_ts: None };
        store.publish(&first, &store.dirty_partitions().unwrap()).unwrap();
        assert!(store.dirty_partitions().unwrap().is_empty());
        store.commit_group_outputs(&[g("I:A")], &[a], &interaction_refs(), &NoAggregates).unwrap();
        let dirty: BTreeSet<(String, String)> = store.dirty_partitions().unwrap().into_iter().collect();
        assert!(dirty.contains(&("interaction_fact".to_string(), "2026-11-24".to_string())), "{dirty:?}");
        assert!(dirty.contains(&("interaction_resource_fact".to_string(), "2026-11-24".to_string())), "{dirty:?}");
        let day24 = store.partition_facts("interaction_fact", "2026-11-24").unwrap();
        assert_eq!(day24.iter().map(|(k, _)| *k).collect::<Vec<_>>(), vec![probe_key("interaction_fact", 42, 1)]);
    }

    /// Where a key cannot be moved — a dimension, referenced by other groups' facts, or two facts of one group —
    /// the collision still fails loudly and commits nothing.
    #[test]
    fn a_collision_that_cannot_be_ranked_fails_loudly_and_commits_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), FaultInjector::disarmed()).unwrap();
        let dimension = |group: &str| GroupOutput {
            group: g(group),
            facts: vec![(
                FactAddress { table: "resource_".into(), day: "".into(), key: 42 },
                FactRow(vec![Cell::Int(42)]),
            )],
            after_call_work: Vec::new(),
        };
        let refs = KeyReferences::default();
        store.commit_group_outputs(&[g("I:A")], &[dimension("I:A")], &refs, &NoAggregates).unwrap();
        store.commit_group_outputs(&[g("I:A")], &[dimension("I:A")], &refs, &NoAggregates).unwrap();
        let e = store.commit_group_outputs(&[g("I:B")], &[dimension("I:B")], &refs, &NoAggregates).unwrap_err();
        assert!(
            matches!(&e, StagingError::KeyCollision { key: 42, owner, other, .. } if owner == "I:A" && other == "I:B"),
            "{e}"
        );
        assert_eq!(store.partition_facts("resource_", "").unwrap().len(), 1);
        let mut twice = colliding("I:C", "2026-11-24", 7);
        twice.facts.push(twice.facts[0].clone());
        let e = store.commit_group_outputs(&[g("I:C")], &[twice], &refs, &NoAggregates).unwrap_err();
        assert!(matches!(&e, StagingError::KeyCollision { key: 7, .. }), "{e}");
        assert!(store.partition_facts("interaction_fact", "2026-11-24").unwrap().is_empty());
    }

    #[test]
    fn an_injected_crash_commits_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), FaultInjector::crash_at(1)).unwrap();
        assert!(matches!(store.commit_chunk(&chunk(vec![(1, 5)], 5)), Err(StagingError::Injected(_))));
        assert_eq!(store.staged_row_count().unwrap(), 0);
        assert_eq!(store.high_water_mark("a", "G_CALL").unwrap(), HighWaterMark::default());
    }
}
