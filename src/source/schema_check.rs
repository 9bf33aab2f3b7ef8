//! The start-up schema check: an IDB's `information_schema.columns` compared with the contract
//! ([`super::contract`]), per table and column.
//!
//! What a problem does to extraction (see [`TableCheck::readable`]):
//! - a **missing table**, or a missing column that is not optional, stops that table from being extracted — the
//!   other tables and IDBs go on — until the IDB is fixed and ccmart reconnects;
//! - a column that is not optional but has another type is still read: each value is checked, and a row whose
//!   value does not parse is quarantined naming the column (a text column holding digits works);
//! - an **optional** column that is missing or typed differently is left out of the `SELECT` and read as NULL; the
//!   mart columns it feeds stay NULL (docs/idb-contract.md lists them).
//!
//! The check runs on every (re)connection to a PostgreSQL IDB and by `ccmart check-idb`, which a DBA runs before
//! pointing ccmart at a new IDB.

use super::contract::{ColumnType, TableSpec, EXTRACTED_TABLES};
use super::dictionary::CodeDictionaryCheck;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use thiserror::Error;

pub use crate::model::status::{ColumnProblem, TableCheck};

/// Exit code of `ccmart check-idb` when a table has a problem in a column that is not optional (or an IDB
/// cannot be checked at all). Other errors exit with 1.
pub const EXIT_CONTRACT_PROBLEM: i32 = 2;

/// The query that lists an IDB's columns: the tables of the contract in the schemas of the `search_path` (the
/// first schema that has a table wins, as it does for ccmart's unqualified `SELECT`s). Only columns the user may
/// read are listed, so a missing privilege shows as a missing column.
pub const COLUMNS_QUERY: &str = "SELECT upper(c.table_name), upper(c.column_name), c.data_type, \
     coalesce(c.numeric_scale, 0)::text, array_position(current_schemas(false), c.table_schema::name)::text \
     FROM information_schema.columns c WHERE c.table_schema = ANY (current_schemas(false))";

impl ColumnProblem {
    /// The column is missing and ccmart reads its derivation instead.
    pub fn read_derived(&self) -> bool {
        self.found.is_none() && self.derived.is_some()
    }
}

impl fmt::Display for ColumnProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.found {
            Some(found) => write!(f, "{} has type {found}, the contract reads {}", self.column, self.expected)?,
            None => write!(f, "{} is missing", self.column)?,
        }
        if let (Some(expr), None) = (&self.derived, &self.found) {
            return write!(f, " (derived: read as {expr})");
        }
        f.write_str(match (self.optional, self.found.is_some()) {
            (true, _) => " (optional: read as NULL)",
            (false, false) => " (required: table not extracted)",
            (false, true) => " (required: rows whose value does not parse are quarantined)",
        })
    }
}

impl TableCheck {
    /// Whether ccmart can extract the table: it exists and every column that is not optional is there.
    pub fn readable(&self) -> bool {
        !self.missing_table && self.problems.iter().all(|p| p.optional || p.found.is_some() || p.read_derived())
    }

    /// Whether a column that is not optional has a problem (`ccmart check-idb` then exits with
    /// [`EXIT_CONTRACT_PROBLEM`]).
    pub fn blocking(&self) -> bool {
        self.missing_table || self.problems.iter().any(|p| !p.optional && !p.read_derived())
    }

    /// Whether the table matches the contract exactly.
    pub fn ok(&self) -> bool {
        !self.missing_table && self.problems.is_empty()
    }

    /// Whether `column` is selected: it exists, and has the contract's type or is not optional (then every value
    /// is checked as it is read). Otherwise it is read as NULL.
    pub fn usable(&self, column: &str) -> bool {
        !self.missing_table && !self.problems.iter().any(|p| p.column == column && (p.optional || p.found.is_none()))
    }

    /// Whether the table exists without `column`.
    pub fn missing(&self, column: &str) -> bool {
        !self.missing_table && self.problems.iter().any(|p| p.column == column && p.found.is_none())
    }

    /// The problems as one line (for logs and errors).
    pub fn summary(&self) -> String {
        if self.missing_table {
            return "the table is missing (or not readable by this user)".into();
        }
        self.problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    }
}

/// An IDB's columns as `information_schema` lists them: table → column → (data type, numeric scale).
pub type IdbColumns = BTreeMap<String, BTreeMap<String, (String, i64)>>;

/// Per table: an ordinal and its columns (name → (type, ordinal)), as `information_schema` lists them.
type TableColumns = (i64, BTreeMap<String, (String, i64)>);

/// Builds [`IdbColumns`] from the text rows of [`COLUMNS_QUERY`], keeping for each table only the first schema of
/// the search path that has it.
pub fn columns_from_rows(rows: &[Vec<Option<String>>]) -> IdbColumns {
    let mut by_table: BTreeMap<String, TableColumns> = BTreeMap::new();
    for r in rows {
        let text = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
        let (table, column, ty) = (text(0), text(1), text(2));
        let scale = text(3).trim().parse().unwrap_or(0);
        let rank = text(4).trim().parse().unwrap_or(i64::MAX);
        let entry = by_table.entry(table).or_insert_with(|| (rank, BTreeMap::new()));
        if rank < entry.0 {
            *entry = (rank, BTreeMap::new());
        }
        if rank == entry.0 {
            entry.1.insert(column, (ty, scale));
        }
    }
    by_table.into_iter().map(|(t, (_, cols))| (t, cols)).collect()
}

/// Whether an `information_schema` data type holds what the contract reads as `ty`.
pub fn type_fits(ty: ColumnType, data_type: &str, scale: i64) -> bool {
    match ty {
        ColumnType::Int => {
            matches!(data_type, "smallint" | "integer" | "bigint") || (data_type == "numeric" && scale == 0)
        }
        ColumnType::Text => matches!(data_type, "character varying" | "character" | "text"),
        ColumnType::Timestamp => matches!(data_type, "timestamp without time zone" | "timestamp with time zone"),
    }
}

fn expected(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Int => "integer",
        ColumnType::Text => "text",
        ColumnType::Timestamp => "timestamp",
    }
}

/// Compares one contract table with the IDB's columns.
pub fn check_table(spec: &TableSpec, columns: &IdbColumns) -> TableCheck {
    let Some(cols) = columns.get(spec.name) else {
        return TableCheck { table: spec.name.into(), missing_table: true, problems: Vec::new() };
    };
    let problems = spec
        .columns
        .iter()
        .filter_map(|c| {
            let found = match cols.get(c.name) {
                None => None,
                Some((ty, scale)) if type_fits(c.ty, ty, *scale) => return None,
                Some((ty, _)) => Some(ty.clone()),
            };
            Some(ColumnProblem {
                column: c.name.into(),
                problem: if found.is_some() { "type" } else { "missing" }.into(),
                found,
                expected: expected(c.ty).into(),
                optional: c.optional,
                derived: c.derived.map(str::to_string),
            })
        })
        .collect();
    TableCheck { table: spec.name.into(), missing_table: false, problems }
}

/// The check of every extracted table of one IDB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SchemaReport {
    /// When the check ran (epoch seconds).
    pub checked_at: i64,
    /// One entry per contract table, in extraction order.
    pub tables: Vec<TableCheck>,
    /// What the IDB's own dictionary of code values says about the codes ccmart reads.
    pub code_dictionary: CodeDictionaryCheck,
}

impl SchemaReport {
    /// Checks every contract table against `columns`.
    pub fn new(columns: &IdbColumns, checked_at: i64) -> Self {
        SchemaReport {
            checked_at,
            tables: EXTRACTED_TABLES.iter().map(|t| check_table(t, columns)).collect(),
            code_dictionary: CodeDictionaryCheck::absent(),
        }
    }

    /// The check of one table.
    pub fn table(&self, name: &str) -> Option<&TableCheck> {
        self.tables.iter().find(|t| t.table == name)
    }

    /// Tables with any problem.
    pub fn with_problems(&self) -> impl Iterator<Item = &TableCheck> {
        self.tables.iter().filter(|t| !t.ok())
    }
}

/// `ccmart check-idb` found problems that stop tables from being extracted (or could not check an IDB).
#[derive(Debug, Error)]
#[error("{count} problem(s) stop tables from being extracted: {summary}. Fix the IDB (or the contract) and run `ccmart check-idb` again")]
pub struct ContractProblems {
    /// Number of blocking problems (tables missing, required columns missing or mistyped, IDBs not checked).
    pub count: usize,
    /// One line per IDB table.
    pub summary: String,
}

/// The text `ccmart check-idb` prints for one IDB: one line per table, `OK` or its problems.
pub fn render(idb: &str, report: &SchemaReport) -> String {
    let mut out = String::new();
    for t in &report.tables {
        let verdict = if t.ok() {
            "OK".to_string()
        } else if t.blocking() && t.readable() {
            format!("PROBLEM, extracted: {}", t.summary())
        } else if t.readable() {
            format!("extracted, {}", t.summary())
        } else {
            format!("NOT EXTRACTED: {}", t.summary())
        };
        out.push_str(&format!("{idb}\t{}\t{verdict}\n", t.table));
    }
    let codes = &report.code_dictionary;
    let verdict = if codes.findings.is_empty() { "OK".to_string() } else { codes.findings.join("; ") };
    out.push_str(&format!("{idb}\tG_DICTIONARY\t{verdict}\n"));
    out
}

/// What `ccmart check-idb` found: the lines to print and the blocking problems, if any.
#[derive(Debug, Default)]
pub struct CheckOutcome {
    /// One line per IDB and table: `IDB<TAB>TABLE<TAB>OK` or the problems.
    pub text: String,
    /// One entry per table with a problem in a column that is not optional, or IDB that could not be checked.
    pub blocking: Vec<String>,
}

impl CheckOutcome {
    /// `Ok` when every table can be extracted, else the error `ccmart check-idb` exits with.
    pub fn result(&self) -> Result<(), ContractProblems> {
        if self.blocking.is_empty() {
            return Ok(());
        }
        Err(ContractProblems { count: self.blocking.len(), summary: self.blocking.join("; ") })
    }
}

/// Checks the IDBs `(name, url)` one after the other (`embedded:` ones always match: ccmart writes them itself).
/// An IDB that cannot be reached or checked is reported and the others are still checked.
pub async fn check_idbs(idbs: &[(String, String)]) -> CheckOutcome {
    let mut out = CheckOutcome::default();
    for (name, url) in idbs {
        if url.starts_with("embedded:") {
            out.text.push_str(&format!("{name}\t*\tOK (embedded, simulated IDB)\n"));
            continue;
        }
        match super::postgres::PostgresIdb::new(name, url).check_schema().await {
            Ok(report) => {
                out.text.push_str(&render(name, &report));
                for t in report.tables.iter().filter(|t| t.blocking()) {
                    out.blocking.push(format!("{name}.{}: {}", t.table, t.summary()));
                }
            }
            Err(e) => {
                out.text.push_str(&format!("{name}\t*\tNOT CHECKED: {e}\n"));
                out.blocking.push(format!("{name}: not checked"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::contract::{GC_GROUP, G_CALL};

    fn columns(table: &str, cols: &[(&str, &str)]) -> IdbColumns {
        let mut m = BTreeMap::new();
        m.insert(table.to_string(), cols.iter().map(|(c, t)| (c.to_string(), (t.to_string(), 0))).collect());
        m
    }

    #[test]
    fn names_missing_and_mistyped_columns_and_tells_optional_from_required() {
        let mut cols: Vec<(&str, &str)> = G_CALL
            .columns
            .iter()
            .map(|c| (c.name, if c.ty == ColumnType::Int { "bigint" } else { "character varying" }))
            .collect();
        cols.retain(|(c, _)| *c != "SWITCHID" && *c != "CREATED_TS");
        for (c, t) in cols.iter_mut() {
            if *c == "CALLID" {
                *t = "integer";
            }
            if *c == "STATE" {
                *t = "numeric";
            }
        }
        let check = check_table(&G_CALL, &columns("G_CALL", &cols));
        let names: Vec<(&str, &str, bool)> =
            check.problems.iter().map(|p| (p.column.as_str(), p.problem.as_str(), p.optional)).collect();
        assert_eq!(
            names,
            vec![("CALLID", "type", false), ("SWITCHID", "missing", true), ("CREATED_TS", "missing", false)]
        );
        assert!(!check.readable(), "a required column is missing");
        assert!(check.usable("CALLID"), "a required column of another type is read, its values checked");
        assert!(check.usable("STATE"), "numeric without fraction holds integers");
        assert!(!check.usable("SWITCHID"));
        let only_optional: Vec<(&str, &str)> =
            G_CALL.columns.iter().filter(|c| c.name != "SWITCHID").map(|c| (c.name, "text")).collect();
        let check = check_table(&G_CALL, &columns("G_CALL", &only_optional));
        assert!(check.readable() && check.blocking(), "integer columns typed text: read, but a problem");
        assert!(!check.usable("SWITCHID") && !check.usable("TENANTID") && check.usable("CREATED_TS"));
        let missing = check_table(&GC_GROUP, &columns("G_CALL", &cols));
        assert!(missing.missing_table && !missing.readable());
    }

    #[test]
    fn first_schema_of_the_search_path_wins() {
        let row = |t: &str, c: &str, ty: &str, rank: &str| {
            vec![Some(t.to_string()), Some(c.to_string()), Some(ty.to_string()), Some("0".into()), Some(rank.into())]
        };
        let cols = columns_from_rows(&[row("G_CALL", "ID", "text", "2"), row("G_CALL", "ID", "bigint", "1")]);
        assert_eq!(cols["G_CALL"]["ID"].0, "bigint");
    }
}
