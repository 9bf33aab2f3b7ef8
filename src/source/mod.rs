//! IDB access: the contract (which tables and columns ccmart reads) and the two kinds of IDB it reads them from —
//! a real PostgreSQL database (what deployments use) and an in-process embedded IDB (demo and unit tests). Both
//! also accept writes, because the simulator plays the part of the ICON collectors that fill them.

pub mod contract;
pub mod dictionary;
pub mod embedded;
pub mod postgres;
pub mod schema_check;

use contract::TableSpec;
use thiserror::Error;

/// One row as read from an IDB: every contract column as text (SQL NULL = `None`), in contract order.
/// Decoding and validation happen in extraction, so a malformed value becomes a quarantined row, not an error.
pub type TextRow = Vec<Option<String>>;

/// Which ICON change counter an incremental read follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum Counter {
    /// `GSYS_SEQ`: set once when the row is inserted — finds new rows.
    Seq,
    /// `GSYS_USEQ`: set each time the row is updated — finds changed rows.
    Useq,
}

impl Counter {
    /// The IDB column that holds this counter.
    pub fn column(self) -> &'static str {
        match self {
            Counter::Seq => "GSYS_SEQ",
            Counter::Useq => "GSYS_USEQ",
        }
    }
}

/// A value the simulator writes into an IDB column.
#[derive(Debug, Clone, PartialEq)]
pub enum IdbValue {
    /// SQL NULL.
    Null,
    /// An integer column.
    Int(i64),
    /// A text column.
    Text(String),
    /// A `timestamp` column (the twin of a `*_TS` column), given as UTC epoch seconds.
    Timestamp(i64),
    /// An id the collector generates for the association of a party with a call (`PARTYID`), named by the
    /// party's logical handle; different in the two IDBs of an HA pair.
    AssociationId(i64),
    /// A per-IDB generated GUID (e.g. `PARTYGUID`), different in the two IDBs of an HA pair.
    Guid(i64),
    /// A login session's id: the same in every IDB, or, when `per_idb`, made different per IDB (the id with
    /// `~<IDB>` appended).
    LoginSessionId {
        /// The id the data source would give.
        id: String,
        /// Whether each IDB's collector generates its own.
        per_idb: bool,
    },
}

/// Whether a write creates a row or changes columns of an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// Creates the row; the IDB assigns `GSYS_SEQ`.
    Insert,
    /// Changes the named columns; the IDB assigns a new `GSYS_USEQ`.
    Update,
}

/// One row write as an ICON collector performs it. `handle` is the simulator's logical row id; each IDB maps it
/// to its own `ID` (the two IDBs of an HA pair number rows differently, as real ones do).
#[derive(Debug, Clone, PartialEq)]
pub struct IdbWrite {
    /// Target table (a contract or simulator-written table).
    pub table: &'static str,
    /// Logical row id.
    pub handle: i64,
    /// Insert or update.
    pub kind: WriteKind,
    /// Columns written (without `ID`, `GSYS_SEQ`, `GSYS_USEQ`, which the IDB assigns).
    pub columns: Vec<(&'static str, IdbValue)>,
}

/// Errors talking to an IDB.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The IDB could not be reached; extraction retries with backoff.
    #[error("IDB '{idb}' is unreachable (check that the database is up and the URL in the config is right; ccmart keeps retrying)")]
    Unreachable {
        /// IDB name from the config.
        idb: String,
        /// Why.
        #[source]
        source: Unreachable,
    },
    /// A query against the IDB failed (missing table or column, permissions).
    #[error("reading {table} from IDB '{idb}' failed (compare the IDB with data/idb/icon_idb.sql)")]
    Query {
        /// IDB name from the config.
        idb: String,
        /// Table being read.
        table: String,
        /// What the server said.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The IDB answered a value ccmart cannot read where the query guarantees one (e.g. `max(GSYS_SEQ)` that is
    /// not an integer).
    #[error("reading {table} from IDB '{idb}': {what} is '{value}', not an integer")]
    BadValue {
        /// IDB name from the config.
        idb: String,
        /// Table being read.
        table: String,
        /// What was read.
        what: String,
        /// The value.
        value: String,
    },
    /// A table of the IDB does not match the contract: the table is missing, or a column that is not optional is
    /// missing or has another type. That table is not extracted (the others are) until the IDB is fixed.
    #[error("table {table} of IDB '{idb}' does not match the contract: {problems}. Run `ccmart check-idb --config FILE`; the other tables are extracted meanwhile")]
    Contract {
        /// IDB name from the config.
        idb: String,
        /// Table.
        table: String,
        /// What is wrong, column by column.
        problems: String,
    },
    /// Writing (simulator) into the IDB failed.
    #[error("writing into IDB '{idb}' failed")]
    Write {
        /// IDB name.
        idb: String,
        /// What the server said.
        #[source]
        source: tokio_postgres::Error,
    },
}

/// Why an IDB could not be reached.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Unreachable {
    /// The driver could not connect, or the connection broke.
    #[error(transparent)]
    Driver(#[from] tokio_postgres::Error),
    /// No answer within the time limit.
    #[error("{what} took longer than {secs}s")]
    Timeout {
        /// What was being done.
        what: String,
        /// The limit.
        secs: u64,
    },
    /// The connection is gone and was not made again yet.
    #[error("not connected")]
    NotConnected,
    /// The simulator's network fault cuts this appliance off from the IDB.
    #[error("the simulated network cannot reach it")]
    Simulated,
}

impl SourceError {
    /// Whether the error concerns one table only (its query failed, or it does not match the contract), so the
    /// IDB's other tables can still be read.
    pub fn is_table_only(&self) -> bool {
        matches!(self, SourceError::Query { .. } | SourceError::Contract { .. })
    }
}

/// Result alias for IDB access.
pub type Result<T, E = SourceError> = std::result::Result<T, E>;

/// An IDB ccmart reads from.
#[derive(Debug, Clone)]
pub enum Idb {
    /// A PostgreSQL database reached by URL.
    Postgres(postgres::PostgresIdb),
    /// An in-process IDB shared with the simulator.
    Embedded(embedded::EmbeddedIdb),
}

impl Idb {
    /// Name of the IDB (from the config), used in every message about it.
    pub fn name(&self) -> &str {
        match self {
            Idb::Postgres(p) => p.name(),
            Idb::Embedded(e) => e.name(),
        }
    }

    /// Whether rows become visible in counter order. True for an embedded IDB (writes are applied in order under
    /// one lock); false for PostgreSQL, where concurrent writers can commit a smaller counter after a larger one,
    /// so extraction lets its marks settle (see `extract`).
    pub fn commits_in_counter_order(&self) -> bool {
        matches!(self, Idb::Embedded(_))
    }

    /// The largest value of `counter` in `table` (None when the table holds no row with one): how far the table
    /// has got, which lets a settling mark catch up a backlog at full speed.
    pub async fn head(&self, table: &TableSpec, counter: Counter) -> Result<Option<i64>> {
        match self {
            Idb::Postgres(p) => p.head(table, counter).await,
            Idb::Embedded(e) => e.head(table, counter),
        }
    }

    /// The IDB's latest schema check (None for an embedded IDB, which always matches, or before the first
    /// connection).
    pub fn schema(&self) -> Option<std::sync::Arc<schema_check::SchemaReport>> {
        match self {
            Idb::Postgres(p) => p.schema(),
            Idb::Embedded(_) => None,
        }
    }

    /// Reads up to `limit` rows of `table` whose `counter` is greater than `after`, in counter order.
    pub async fn read_chunk(
        &self,
        table: &TableSpec,
        counter: Counter,
        after: i64,
        limit: usize,
    ) -> Result<Vec<TextRow>> {
        match self {
            Idb::Postgres(p) => p.read_chunk(table, counter, after, limit).await,
            Idb::Embedded(e) => e.read_chunk(table, counter, after, limit),
        }
    }
}

/// Where the simulator writes one collector's output.
#[derive(Debug)]
pub enum IdbSink {
    /// A PostgreSQL IDB.
    Postgres(Box<postgres::PostgresWriter>),
    /// An embedded IDB.
    Embedded(embedded::EmbeddedIdb),
}

impl IdbSink {
    /// Applies a batch of writes atomically (one transaction) and in order.
    pub async fn apply(&mut self, writes: &[IdbWrite]) -> Result<()> {
        match self {
            IdbSink::Postgres(p) => p.apply(writes).await,
            IdbSink::Embedded(e) => {
                e.apply(writes);
                Ok(())
            }
        }
    }
}

/// Formats epoch seconds as a PostgreSQL `timestamp` literal (UTC).
pub fn format_timestamp(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "1970-01-01 00:00:00".to_string())
}

/// Per-IDB numbering: how an IDB turns a logical handle into its own `ID` and GUIDs.
#[derive(Debug, Clone)]
pub struct RowNumbering {
    /// Added to every handle to form this IDB's `ID`.
    pub id_offset: i64,
    /// Prefix of GUIDs this IDB's collector generates.
    pub guid_prefix: String,
    /// `GSYS_DOMAIN` (the collector's data source session id, `DSS_ID`) stamped on every row it inserts.
    pub gsys_domain: i64,
}

impl RowNumbering {
    /// The `ID` this IDB gives the row with logical `handle`. Configuration tables (`GC_*`) keep the
    /// configuration DBID, which is the same in every IDB; their association tables (`GCX_*`) are numbered by each
    /// IDB, like operational rows.
    pub fn row_id(&self, table: &str, handle: i64) -> i64 {
        if table.starts_with("GC_") {
            handle
        } else {
            handle + self.id_offset
        }
    }

    /// The name of the table's primary-key column: the first contract column of a table ccmart reads (`PHID` for
    /// `G_PARTY_HISTORY`, `DSS_ID` for session control), else `DSS_ID` for the other session-control tables and
    /// `ID` for the rest.
    pub fn key_column(table: &str) -> &'static str {
        match contract::table(table) {
            Some(spec) => spec.columns[0].name,
            None if table.starts_with("G_DSS_") => "DSS_ID",
            None => "ID",
        }
    }

    /// Resolves a simulator value into the text this IDB stores (None = NULL).
    pub fn render(&self, v: &IdbValue) -> Option<String> {
        match v {
            IdbValue::Null => None,
            IdbValue::Int(i) => Some(i.to_string()),
            IdbValue::Text(s) => Some(s.clone()),
            IdbValue::Timestamp(ts) => Some(format_timestamp(*ts)),
            IdbValue::LoginSessionId { id, per_idb: false } => Some(id.clone()),
            IdbValue::LoginSessionId { id, per_idb: true } => Some(format!("{id}~{}", self.guid_prefix)),
            IdbValue::AssociationId(h) => Some(format!("{}-p{:011x}", self.guid_prefix, h)),
            IdbValue::Guid(h) => Some(format!("{}-{:012x}", self.guid_prefix, h)),
        }
    }
}
