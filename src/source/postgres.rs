//! PostgreSQL IDBs: incremental chunked reads for extraction (tokio-postgres, simple-query text protocol, so every
//! value arrives as text and is validated by extraction) and batched writes for the simulator (text COPY for new
//! rows, one multi-statement batch for updates, all in one transaction per batch).

use super::contract::TableSpec;
use super::dictionary::{self, CodeDictionaryCheck};
use super::schema_check::{self, SchemaReport};
use super::{Counter, IdbWrite, Result, RowNumbering, SourceError, TextRow, Unreachable, WriteKind};
use futures::SinkExt;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// The IDB schema (DDL of the contract), applied by the simulator and by tests.
pub const IDB_DDL: &str = include_str!("../../data/idb/icon_idb.sql");

/// How long to wait for a connection or one chunk query before declaring the IDB unreachable.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A PostgreSQL IDB that ccmart reads. Reconnects lazily after a failure.
#[derive(Debug, Clone)]
pub struct PostgresIdb {
    name: Arc<str>,
    url: Arc<str>,
    client: Arc<tokio::sync::Mutex<Option<Client>>>,
    /// The schema check of the current connection (re-run on every reconnection).
    schema: Arc<std::sync::Mutex<Option<Arc<SchemaReport>>>>,
}

async fn connect(name: &str, url: &str) -> Result<Client> {
    let unreachable = |source: Unreachable| SourceError::Unreachable { idb: name.to_string(), source };
    let (client, connection) = tokio::time::timeout(DEFAULT_IO_TIMEOUT, tokio_postgres::connect(url, NoTls))
        .await
        .map_err(|_| unreachable(timeout("connecting")))?
        .map_err(|e| unreachable(Unreachable::Driver(e)))?;
    let idb = name.to_string();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(idb, error = %e, "IDB connection closed");
        }
    });
    Ok(client)
}

impl PostgresIdb {
    /// A reader for the IDB at `url` (a `postgres://` URL). Nothing is connected until the first read.
    pub fn new(name: &str, url: &str) -> Self {
        PostgresIdb {
            name: Arc::from(name),
            url: Arc::from(url),
            client: Arc::new(tokio::sync::Mutex::new(None)),
            schema: Arc::new(std::sync::Mutex::new(None)),
        }
    }

    /// The IDB's name from the config.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The schema check of the current connection, if one ran.
    pub fn schema(&self) -> Option<Arc<SchemaReport>> {
        self.schema.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Connects if needed and checks the schema again now (`ccmart check-idb`).
    pub async fn check_schema(&self) -> Result<Arc<SchemaReport>> {
        let mut guard = self.client.lock().await;
        let client = self.connected(&mut guard).await?;
        self.load_schema(client).await
    }

    /// The open connection, connecting first when there is none. Connecting includes the schema check: a
    /// connection whose check fails is not kept (the error is returned, and the next call connects and checks
    /// again), so reads never run unchecked and the check shown is always the current connection's.
    async fn connected<'g>(&self, guard: &'g mut Option<Client>) -> Result<&'g Client> {
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            *guard = None;
            let client = connect(&self.name, &self.url).await?;
            self.load_schema(&client).await?;
            *guard = Some(client);
        }
        guard
            .as_ref()
            .ok_or_else(|| SourceError::Unreachable { idb: self.name.to_string(), source: Unreachable::NotConnected })
    }

    /// Runs the schema check on `client`, logs what is wrong and keeps the result for the reads that follow.
    async fn load_schema(&self, client: &Client) -> Result<Arc<SchemaReport>> {
        let query = tokio::time::timeout(DEFAULT_IO_TIMEOUT, client.simple_query(schema_check::COLUMNS_QUERY)).await;
        let messages = match query {
            Err(_) => {
                return Err(SourceError::Unreachable {
                    idb: self.name.to_string(),
                    source: timeout("reading information_schema"),
                })
            }
            Ok(Err(e)) => {
                return Err(SourceError::Query {
                    idb: self.name.to_string(),
                    table: "information_schema.columns".into(),
                    source: e,
                })
            }
            Ok(Ok(m)) => m,
        };
        let rows: Vec<TextRow> = messages
            .into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some((0..5).map(|i| r.get(i).map(str::to_string)).collect()),
                _ => None,
            })
            .collect();
        let columns = schema_check::columns_from_rows(&rows);
        let mut report = SchemaReport::new(&columns, chrono::Utc::now().timestamp());
        if columns.contains_key("G_DICTIONARY") {
            report.code_dictionary = self.load_dictionary(client).await?;
        }
        for finding in &report.code_dictionary.findings {
            tracing::warn!(idb = %self.name, finding = %finding, "G_DICTIONARY");
        }
        let report = Arc::new(report);
        for t in report.with_problems() {
            tracing::warn!(
                idb = %self.name,
                table = %t.table,
                extracted = t.readable(),
                problems = %t.summary(),
                "IDB table does not match the contract"
            );
        }
        *self.schema.lock().unwrap_or_else(|e| e.into_inner()) = Some(report.clone());
        Ok(report)
    }

    /// Reads the IDB's dictionary of code values (first three columns by position, see [`dictionary`]). A dictionary
    /// that exists but cannot be read fails the connection: extracting with codes that may need translating would
    /// quarantine or misread rows for good.
    async fn load_dictionary(&self, client: &Client) -> Result<CodeDictionaryCheck> {
        match tokio::time::timeout(DEFAULT_IO_TIMEOUT, client.simple_query(dictionary::DICTIONARY_QUERY)).await {
            Ok(Ok(messages)) => {
                let rows: Vec<TextRow> = messages
                    .into_iter()
                    .filter_map(|m| match m {
                        SimpleQueryMessage::Row(r) => {
                            Some((0..3).map(|i| r.try_get(i).ok().flatten().map(str::to_string)).collect())
                        }
                        _ => None,
                    })
                    .collect();
                Ok(CodeDictionaryCheck::from_rows(&rows))
            }
            Ok(Err(e)) => {
                Err(SourceError::Query { idb: self.name.to_string(), table: "G_DICTIONARY".into(), source: e })
            }
            Err(_) => {
                Err(SourceError::Unreachable { idb: self.name.to_string(), source: timeout("reading G_DICTIONARY") })
            }
        }
    }

    /// Reads up to `limit` rows above the high-water mark `after` of `counter`, in counter order. Columns the
    /// schema check found missing or mistyped (optional ones; see [`schema_check`]) are read as NULL; a table the
    /// check found unreadable is not queried.
    pub async fn read_chunk(
        &self,
        spec: &TableSpec,
        counter: Counter,
        after: i64,
        limit: usize,
    ) -> Result<Vec<TextRow>> {
        let idb = self.name.clone();
        self.text_rows(spec.name, spec.columns.len(), move |schema| {
            let check = schema.and_then(|s| s.table(spec.name));
            if let Some(c) = check.filter(|c| !c.readable()) {
                return Err(SourceError::Contract {
                    idb: idb.to_string(),
                    table: spec.name.to_string(),
                    problems: c.summary(),
                });
            }
            let cols: Vec<String> = spec
                .columns
                .iter()
                .map(|c| match (check, c.derived) {
                    (Some(t), Some(expr)) if t.missing(c.name) => format!("{expr} AS {}", c.name),
                    (Some(t), _) if !t.usable(c.name) => format!("NULL AS {}", c.name),
                    _ => c.name.to_string(),
                })
                .collect();
            let ctr = counter.column();
            Ok(format!(
                "SELECT {} FROM {} WHERE {ctr} > {after} ORDER BY {ctr} LIMIT {limit}",
                cols.join(", "),
                spec.name
            ))
        })
        .await
    }

    /// The largest value of `counter` in the table (None when the table is empty): one index lookup.
    pub async fn head(&self, spec: &TableSpec, counter: Counter) -> Result<Option<i64>> {
        let sql = format!("SELECT max({}) FROM {}", counter.column(), spec.name);
        let rows = self.text_rows(spec.name, 1, move |_| Ok(sql)).await?;
        let value = rows.into_iter().next().and_then(|r| r.into_iter().next().flatten());
        value
            .map(|v| {
                v.trim().parse::<i64>().map_err(|_| SourceError::BadValue {
                    idb: self.name.to_string(),
                    table: spec.name.to_string(),
                    what: format!("max({})", counter.column()),
                    value: v.clone(),
                })
            })
            .transpose()
    }

    /// Runs one query (connecting and checking the schema first if needed) and returns its rows as text, `width`
    /// columns each; `sql` builds the query from the schema check. A timeout or a lost connection drops the
    /// connection (the next call reconnects and checks again) and reports the IDB unreachable.
    async fn text_rows(
        &self,
        table: &str,
        width: usize,
        sql: impl FnOnce(Option<&SchemaReport>) -> Result<String>,
    ) -> Result<Vec<TextRow>> {
        let mut guard = self.client.lock().await;
        let client = self.connected(&mut guard).await?;
        let schema = self.schema();
        let sql = sql(schema.as_deref())?;
        let result = tokio::time::timeout(DEFAULT_IO_TIMEOUT, client.simple_query(&sql)).await;
        let messages = match result {
            Err(_) => {
                *guard = None;
                return Err(SourceError::Unreachable {
                    idb: self.name.to_string(),
                    source: timeout(&format!("reading {table}")),
                });
            }
            Ok(Err(e)) => {
                let closed = client.is_closed() || e.is_closed();
                if closed {
                    *guard = None;
                    return Err(SourceError::Unreachable {
                        idb: self.name.to_string(),
                        source: Unreachable::Driver(e),
                    });
                }
                return Err(SourceError::Query { idb: self.name.to_string(), table: table.to_string(), source: e });
            }
            Ok(Ok(m)) => m,
        };
        Ok(messages
            .into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some((0..width).map(|i| r.get(i).map(str::to_string)).collect()),
                _ => None,
            })
            .collect())
    }
}

/// The IDB did not answer `what` within [`DEFAULT_IO_TIMEOUT`].
fn timeout(what: &str) -> Unreachable {
    Unreachable::Timeout { what: what.to_string(), secs: DEFAULT_IO_TIMEOUT.as_secs() }
}

/// The simulated collector's counter: one `G_PROV_CONTROL` row (domain 0, provider tag 0) whose `SEQCOUNTER` and
/// `SEQCURRENT` are the last value given out (a real ICON reserves blocks and lets `SEQCURRENT` lag).
const PROV_CONTROL_READ: &str = "SELECT SEQCOUNTER FROM G_PROV_CONTROL WHERE DOMAINID = 0 AND PROVIDERTAG = 0";
const PROV_CONTROL_WRITE: &str = "INSERT INTO G_PROV_CONTROL \
     (DOMAINID, PRIMARYID, PROVIDERTAG, SEQCOUNTER, SEQCURRENT, GSYS_SEQ) VALUES (0, 0, 0, $1, $1, 0) \
     ON CONFLICT (DOMAINID, PROVIDERTAG) DO UPDATE SET SEQCOUNTER = EXCLUDED.SEQCOUNTER, SEQCURRENT = EXCLUDED.SEQCURRENT";

/// Writes one collector's rows into a PostgreSQL IDB, as ICON would: its own `ID` numbering, its own
/// `GSYS_SEQ`/`GSYS_USEQ` counter persisted in `G_PROV_CONTROL`.
#[derive(Debug)]
pub struct PostgresWriter {
    name: String,
    client: Client,
    numbering: RowNumbering,
    counter: i64,
}

/// Updates of rows written in earlier batches: (table, ID) → (changed columns, new `GSYS_USEQ`).
type PendingUpdates = BTreeMap<(&'static str, i64), (BTreeMap<&'static str, Option<String>>, i64)>;

struct PendingInsert {
    table: &'static str,
    columns: BTreeMap<&'static str, Option<String>>,
    seq: i64,
    useq: Option<i64>,
}

impl PostgresWriter {
    /// Connects, creates the IDB schema if missing and resumes the IDB's counter.
    pub async fn connect(name: &str, url: &str, numbering: RowNumbering) -> Result<Self> {
        let client = connect(name, url).await?;
        let write_err = |source: tokio_postgres::Error| SourceError::Write { idb: name.to_string(), source };
        client.batch_execute(IDB_DDL).await.map_err(write_err)?;
        let rows = client.query(PROV_CONTROL_READ, &[]).await.map_err(write_err)?;
        let counter = rows.first().map(|r| r.get::<_, i64>(0)).unwrap_or(0);
        Ok(PostgresWriter { name: name.to_string(), client, numbering, counter })
    }

    /// Applies a batch in one transaction. Updates of rows inserted in the same batch are folded into the insert
    /// (the row is written once with its final values and both counters), which is what the IDB would hold after
    /// the collector's individual statements.
    pub async fn apply(&mut self, writes: &[IdbWrite]) -> Result<()> {
        let mut inserts: Vec<PendingInsert> = Vec::new();
        let mut insert_pos: BTreeMap<(&'static str, i64), usize> = BTreeMap::new();
        let mut updates: PendingUpdates = BTreeMap::new();
        let mut counter = self.counter;
        for w in writes {
            counter += 1;
            let id = self.numbering.row_id(w.table, w.handle);
            let rendered = w.columns.iter().map(|(c, v)| (*c, self.numbering.render(v)));
            match w.kind {
                WriteKind::Insert => {
                    insert_pos.insert((w.table, id), inserts.len());
                    let mut columns: BTreeMap<_, _> = rendered.collect();
                    columns.insert(RowNumbering::key_column(w.table), Some(id.to_string()));
                    columns.insert("GSYS_DOMAIN", Some(self.numbering.gsys_domain.to_string()));
                    inserts.push(PendingInsert { table: w.table, columns, seq: counter, useq: None });
                }
                WriteKind::Update => {
                    if let Some(&pos) = insert_pos.get(&(w.table, id)) {
                        let p = &mut inserts[pos];
                        p.columns.extend(rendered);
                        p.useq = Some(counter);
                    } else {
                        let entry = updates.entry((w.table, id)).or_insert_with(|| (BTreeMap::new(), counter));
                        entry.0.extend(rendered);
                        entry.1 = counter;
                    }
                }
            }
        }
        let write_err = |source: tokio_postgres::Error| SourceError::Write { idb: self.name.clone(), source };
        let tx = self.client.transaction().await.map_err(write_err)?;
        // Group inserts by (table, column set) so each group is one COPY.
        let mut groups: BTreeMap<(&'static str, Vec<&'static str>), Vec<&PendingInsert>> = BTreeMap::new();
        for p in &inserts {
            groups.entry((p.table, p.columns.keys().copied().collect())).or_default().push(p);
        }
        for ((table, cols), rows) in groups {
            let mut data = String::new();
            for p in rows {
                for c in &cols {
                    copy_field(&mut data, p.columns.get(c).and_then(|v| v.as_deref()));
                    data.push('\t');
                }
                let _ = write!(data, "{}\t", p.seq);
                copy_field(&mut data, p.useq.map(|u| u.to_string()).as_deref());
                data.push('\n');
            }
            let stmt = format!("COPY {table} ({}, GSYS_SEQ, GSYS_USEQ) FROM STDIN", cols.join(", "));
            let sink = tx.copy_in(&stmt).await.map_err(write_err)?;
            futures::pin_mut!(sink);
            sink.send(bytes::Bytes::from(data)).await.map_err(write_err)?;
            sink.finish().await.map_err(write_err)?;
        }
        if !updates.is_empty() {
            let mut sql = String::new();
            for ((table, id), (cols, useq)) in &updates {
                let _ = write!(sql, "UPDATE {table} SET ");
                for (c, v) in cols {
                    let _ = write!(sql, "{c} = {}, ", sql_literal(v.as_deref()));
                }
                let _ = writeln!(sql, "GSYS_USEQ = {useq} WHERE {} = {id};", RowNumbering::key_column(table));
            }
            tx.batch_execute(&sql).await.map_err(write_err)?;
        }
        tx.execute(PROV_CONTROL_WRITE, &[&counter]).await.map_err(write_err)?;
        tx.commit().await.map_err(write_err)?;
        self.counter = counter;
        Ok(())
    }
}

fn copy_field(out: &mut String, v: Option<&str>) {
    match v {
        None => out.push_str("\\N"),
        Some(s) => {
            for ch in s.chars() {
                match ch {
                    '\\' => out.push_str("\\\\"),
                    '\t' => out.push_str("\\t"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
        }
    }
}

fn sql_literal(v: Option<&str>) -> String {
    match v {
        None => "NULL".to_string(),
        Some(s) => format!("'{}'", s.replace('\'', "''")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_format_escapes_and_nulls() {
        let mut s = String::new();
        copy_field(&mut s, Some("a\tb\\c\nd"));
        s.push('|');
        copy_field(&mut s, None);
        assert_eq!(s, "a\\tb\\\\c\\nd|\\N");
        assert_eq!(sql_literal(Some("O'Brien")), "'O''Brien'");
        assert_eq!(sql_literal(None), "NULL");
    }
}
