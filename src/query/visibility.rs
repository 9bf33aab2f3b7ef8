//! What a reader may read: the mart, its system tables and the catalogs, not the query engine's settings; and which
//! failures are the statement's own (its data), not the server's.
//!
//! `information_schema.df_settings` (and `SHOW ALL` / `SHOW datafusion.*`, which DataFusion plans as a scan of
//! it) lists every DataFusion setting: paths on the appliance (the spill directory), memory sizes and engine
//! switches. Operators may read it; for readers the HTTP and PostgreSQL-protocol handlers refuse a statement whose
//! plan scans it, anywhere (subqueries, CTEs and `EXPLAIN` included), before it runs.

use datafusion::arrow::error::ArrowError;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::TableReference;
use datafusion::logical_expr::LogicalPlan;
use thiserror::Error;

/// Tables only operators may read, as (schema, table).
pub const OPERATOR_ONLY_TABLES: &[(&str, &str)] = &[("information_schema", "df_settings")];

/// A reader's statement reads a table that only operators may read.
#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "permission denied for {schema}.{table}: it shows the query engine's settings and paths on this appliance; \
     use an operator token"
)]
pub struct OperatorOnly {
    /// Schema of the table.
    pub schema: &'static str,
    /// The table.
    pub table: &'static str,
}

/// `Ok` when a reader may run `plan`: it scans none of [`OPERATOR_ONLY_TABLES`], in any subquery.
pub fn reader_may_read(plan: &LogicalPlan) -> Result<(), OperatorOnly> {
    let mut found = None;
    // The closure never fails, so neither does the walk.
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            if let Some(hit) = operator_only(&scan.table_name) {
                found = Some(hit);
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    match found {
        Some((schema, table)) => Err(OperatorOnly { schema, table }),
        None => Ok(()),
    }
}

/// True for errors that the statement's own values cause (integer overflow, division by zero, a value that does
/// not fit the type it is cast to): the client's mistake (HTTP 400; SQLSTATE 22003 / 22012 on the PostgreSQL
/// protocol), not the server's. Arrow's kernels report some overflows (`abs`, `negate`) as a compute error whose
/// text says so.
pub fn is_data_error(e: &ArrowError) -> bool {
    match e {
        ArrowError::ArithmeticOverflow(_) | ArrowError::DivideByZero | ArrowError::CastError(_) => true,
        ArrowError::ComputeError(m) => m.contains("overflow"),
        _ => false,
    }
}

fn operator_only(name: &TableReference) -> Option<(&'static str, &'static str)> {
    let schema = name.schema()?;
    OPERATOR_ONLY_TABLES
        .iter()
        .find(|(s, t)| schema.eq_ignore_ascii_case(s) && name.table().eq_ignore_ascii_case(t))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{SessionConfig, SessionContext};

    async fn plan(sql: &str) -> LogicalPlan {
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_information_schema(true));
        ctx.state().create_logical_plan(sql).await.unwrap()
    }

    #[tokio::test]
    async fn settings_are_hidden_wherever_the_plan_scans_them() {
        for sql in [
            "SELECT * FROM information_schema.df_settings",
            "SELECT name FROM datafusion.information_schema.df_settings WHERE name LIKE '%spill%'",
            "SHOW ALL",
            "SHOW datafusion.execution.batch_size",
            "WITH s AS (SELECT * FROM information_schema.df_settings) SELECT count(*) FROM s",
            "SELECT 1 WHERE EXISTS (SELECT 1 FROM information_schema.df_settings)",
            "EXPLAIN SELECT * FROM information_schema.df_settings",
        ] {
            let e = reader_may_read(&plan(sql).await).unwrap_err();
            assert_eq!(e, OperatorOnly { schema: "information_schema", table: "df_settings" }, "{sql}");
        }
        for sql in ["SELECT 1", "SELECT table_name FROM information_schema.tables", "SHOW TABLES"] {
            reader_may_read(&plan(sql).await).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }
}
