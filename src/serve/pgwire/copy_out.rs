//! `COPY (query) TO STDOUT` and `COPY table [(columns)] TO STDOUT`: the bulk-export path of `psql \copy`,
//! psycopg's `copy()` and asyncpg's `copy_from_query`, in PostgreSQL's text, CSV and binary formats.
//!
//! The query runs as any other (gate, limits, session settings); only the encoding of its rows differs. Every
//! other `COPY` (from a client, to or from a file or program) stays refused: nothing is ever written.

use super::{from_query_error, pg_error, too_many_rows};
use crate::query::BatchStream;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Ident, ObjectName, Query, Statement,
};
use datafusion_postgres::arrow_pg::datatypes::arrow_schema_to_pg_fields;
use datafusion_postgres::arrow_pg::encoder::encode_value;
use datafusion_postgres::pgwire;
use futures::Stream;
use pgwire::api::portal::Format;
use pgwire::api::results::{CopyCsvOptions, CopyEncoder, CopyResponse, CopyTextOptions, FieldInfo, Response};
use pgwire::error::PgWireResult;
use pgwire::messages::copy::CopyData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// How the rows are written.
#[derive(Debug, Clone)]
enum CopyFormat {
    Text { delimiter: char, null: String },
    Csv { delimiter: char, quote: char, escape: char, null: String, force_quote: Vec<String> },
    Binary,
}

/// A `COPY … TO STDOUT` ccmart answers: its query and format.
#[derive(Debug, Clone)]
pub(super) struct CopyOut {
    /// The query whose rows are copied (a table copy is `SELECT columns FROM table`).
    pub(super) query: Statement,
    format: CopyFormat,
    header: bool,
}

fn unsupported(what: impl std::fmt::Display) -> pgwire::error::PgWireError {
    pg_error("0A000", format!("COPY … TO STDOUT: {what} is not supported"))
}

impl CopyOut {
    /// The export a statement asks for, `None` when it is not a `COPY … TO STDOUT` (the statement policy refuses
    /// those), an error for an option ccmart does not implement.
    pub(super) fn of(statement: &Statement) -> PgWireResult<Option<CopyOut>> {
        let Statement::Copy { source, to: true, target: CopyTarget::Stdout, options, legacy_options, .. } = statement
        else {
            return Ok(None);
        };
        let query = match source {
            CopySource::Query(q) => Statement::Query(q.clone()),
            CopySource::Table { table_name, columns } => Statement::Query(Box::new(select_table(table_name, columns)?)),
        };
        let mut format_name = "text".to_string();
        let (mut delimiter, mut null, mut quote, mut escape) = (None, None, '"', None);
        let mut header = false;
        let mut force_quote = Vec::new();
        for option in options {
            match option {
                CopyOption::Format(f) => format_name = f.value.to_ascii_lowercase(),
                CopyOption::Delimiter(c) => delimiter = Some(*c),
                CopyOption::Null(n) => null = Some(n.clone()),
                CopyOption::Header(h) => header = *h,
                CopyOption::Quote(c) => quote = *c,
                CopyOption::Escape(c) => escape = Some(*c),
                CopyOption::ForceQuote(cols) => force_quote.extend(cols.iter().map(|c| c.value.clone())),
                CopyOption::Encoding(e) if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
                other => return Err(unsupported(format!("option {other}"))),
            }
        }
        for option in legacy_options {
            match option {
                CopyLegacyOption::Binary => format_name = "binary".into(),
                CopyLegacyOption::Delimiter(c) => delimiter = Some(*c),
                CopyLegacyOption::Null(n) => null = Some(n.clone()),
                CopyLegacyOption::Csv(csv) => {
                    format_name = "csv".into();
                    for o in csv {
                        match o {
                            CopyLegacyCsvOption::Header => header = true,
                            CopyLegacyCsvOption::Quote(c) => quote = *c,
                            CopyLegacyCsvOption::Escape(c) => escape = Some(*c),
                            CopyLegacyCsvOption::ForceQuote(cols) => {
                                force_quote.extend(cols.iter().map(|c| c.value.clone()))
                            }
                            other => return Err(unsupported(format!("option {other}"))),
                        }
                    }
                }
                other => return Err(unsupported(format!("option {other}"))),
            }
        }
        let format = match format_name.as_str() {
            "text" => CopyFormat::Text { delimiter: delimiter.unwrap_or('\t'), null: null.unwrap_or("\\N".into()) },
            "csv" => CopyFormat::Csv {
                delimiter: delimiter.unwrap_or(','),
                quote,
                escape: escape.unwrap_or(quote),
                null: null.unwrap_or_default(),
                force_quote,
            },
            "binary" if header || delimiter.is_some() || null.is_some() => {
                return Err(pg_error("42601", "COPY … (FORMAT binary) takes no HEADER, DELIMITER or NULL"))
            }
            "binary" => CopyFormat::Binary,
            other => return Err(pg_error("22023", format!("COPY format \"{other}\" not recognized"))),
        };
        Ok(Some(CopyOut { query, format, header }))
    }

    /// The COPY answer: `stream`'s rows encoded, failing with 54000 past `max_rows`.
    pub(super) fn respond(self, stream: BatchStream, max_rows: usize) -> PgWireResult<Response> {
        let schema = stream.schema();
        let wire_format =
            if matches!(self.format, CopyFormat::Binary) { Format::UnifiedBinary } else { Format::UnifiedText };
        let fields = Arc::new(arrow_schema_to_pg_fields(&schema, &wire_format, None)?);
        let columns = fields.len();
        let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let header = self.header.then(|| header_line(&self.format, &names));
        let (code, encoder) = match &self.format {
            CopyFormat::Binary => (1, CopyEncoder::new_binary(fields.clone())),
            CopyFormat::Text { delimiter, null } => (
                0,
                CopyEncoder::new_text(
                    fields.clone(),
                    CopyTextOptions { delimiter: delimiter.to_string().into(), null_string: null.as_str().into() },
                ),
            ),
            CopyFormat::Csv { delimiter, quote, escape, null, force_quote } => {
                let force: Vec<usize> = force_quote
                    .iter()
                    .map(|c| {
                        names.iter().position(|n| n == c).ok_or_else(|| {
                            pg_error("42703", format!("FORCE_QUOTE column \"{c}\" is not in the copied columns"))
                        })
                    })
                    .collect::<PgWireResult<_>>()?;
                let options = CopyCsvOptions {
                    delimiter: delimiter.to_string().into(),
                    quote: quote.to_string().into(),
                    escape: escape.to_string().into(),
                    null_string: null.as_str().into(),
                    force_quote: force,
                };
                (0, CopyEncoder::new_csv(fields.clone(), options))
            }
        };
        let rows = CopyRows { stream, fields, encoder, batch: None, row: 0, sent: 0, max_rows, header, done: false };
        Ok(Response::CopyOut(CopyResponse::new(code, columns, rows)))
    }
}

/// `SELECT columns FROM table`, what `COPY table (columns) TO STDOUT` copies. The names print as they were
/// parsed (quoted where they were), so the query parses back.
fn select_table(table: &ObjectName, columns: &[Ident]) -> PgWireResult<Query> {
    let projection = if columns.is_empty() {
        "*".to_string()
    } else {
        columns.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")
    };
    let sql = format!("SELECT {projection} FROM {table}");
    datafusion::sql::sqlparser::parser::Parser::new(&datafusion::sql::sqlparser::dialect::PostgreSqlDialect {})
        .try_with_sql(&sql)
        .and_then(|mut p| p.parse_query())
        .map(|q| *q)
        .map_err(|e| pg_error("42601", format!("COPY {table}: {}", crate::query::syntax_message(&e))))
}

/// The header line of a text or CSV copy: the column names, quoted in CSV where PostgreSQL would quote them.
fn header_line(format: &CopyFormat, names: &[String]) -> CopyData {
    let line = match format {
        CopyFormat::Csv { delimiter, quote, .. } => names
            .iter()
            .map(|n| {
                if n.contains(*delimiter) || n.contains(*quote) || n.contains('\n') || n.contains('\r') {
                    let doubled = n.replace(*quote, &format!("{quote}{quote}"));
                    format!("{quote}{doubled}{quote}")
                } else {
                    n.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(&delimiter.to_string()),
        CopyFormat::Text { delimiter, .. } => names.join(&delimiter.to_string()),
        CopyFormat::Binary => String::new(),
    };
    CopyData::new(format!("{line}\n").into_bytes().into())
}

/// A query's rows as COPY data, one message a row.
struct CopyRows {
    stream: BatchStream,
    fields: Arc<Vec<FieldInfo>>,
    encoder: CopyEncoder,
    batch: Option<RecordBatch>,
    row: usize,
    sent: usize,
    max_rows: usize,
    header: Option<CopyData>,
    done: bool,
}

impl CopyRows {
    fn encode(&mut self, batch: &RecordBatch, row: usize) -> PgWireResult<CopyData> {
        let schema = batch.schema();
        for (col, array) in batch.columns().iter().enumerate() {
            encode_value(&mut self.encoder, array, row, schema.field(col), &self.fields[col])?;
        }
        Ok(self.encoder.take_copy())
    }
}

impl Stream for CopyRows {
    type Item = PgWireResult<CopyData>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(h) = self.header.take() {
            return Poll::Ready(Some(Ok(h)));
        }
        loop {
            if let Some(batch) = self.batch.take() {
                if self.row < batch.num_rows() {
                    if self.sent >= self.max_rows {
                        self.done = true;
                        return Poll::Ready(Some(Err(too_many_rows(self.max_rows))));
                    }
                    let row = self.row;
                    let encoded = self.encode(&batch, row);
                    self.row += 1;
                    self.sent += 1;
                    self.batch = Some(batch);
                    if encoded.is_err() {
                        self.done = true;
                    }
                    return Poll::Ready(Some(encoded));
                }
            }
            match Pin::new(&mut self.stream).poll_next(cx) {
                Poll::Ready(Some(Ok(b))) => {
                    self.batch = Some(b);
                    self.row = 0;
                }
                Poll::Ready(Some(Err(e))) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(from_query_error(crate::query::classify(e)))));
                }
                Poll::Ready(None) => {
                    self.done = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
