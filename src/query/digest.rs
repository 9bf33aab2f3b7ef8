//! Content digests of the mart, per table and day: two appliances (active-active sites, or a standby and its
//! active) compare these to prove they hold the same rows and keys.
//!
//! A digest is BLAKE3 over the table's rows in key order, each row in Arrow's canonical row encoding, so it
//! depends on nothing but the values (not on Parquet file layout, Delta versions or batch boundaries).

use super::{QueryEngine, QueryError};
pub use crate::model::wire::PartitionDigest;
use crate::staging::MartSnapshot;
use crate::transform::schema::{MartTable, MART_TABLES};
use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::prelude::{col, lit};
use futures::StreamExt;

use std::collections::BTreeMap;

fn exec(e: impl std::fmt::Display) -> QueryError {
    QueryError::Execution(e.to_string())
}

/// Digests of `tables` (all when empty) at `snapshot`, optionally of one day only, in (table, day) order.
pub async fn digests(
    engine: &QueryEngine,
    snapshot: &MartSnapshot,
    tables: &[&MartTable],
    day: Option<&str>,
) -> Result<Vec<PartitionDigest>, QueryError> {
    let ctx = engine.context(snapshot).await?;
    let selected: Vec<&MartTable> = if tables.is_empty() { MART_TABLES.iter().collect() } else { tables.to_vec() };
    let mut out = Vec::new();
    for t in selected {
        let key = t.columns[0].0;
        let mut df = ctx.table(t.name).await.map_err(exec)?;
        if let (true, Some(d)) = (t.partitioned, day) {
            df = df.filter(col("day").eq(lit(d.to_string()))).map_err(exec)?;
        }
        let order = if t.partitioned {
            vec![col("day").sort(true, false), col(key).sort(true, false)]
        } else {
            vec![col(key).sort(true, false)]
        };
        let df = df.sort(order).map_err(exec)?;
        let fields: Vec<SortField> =
            df.schema().fields().iter().map(|f| SortField::new(f.data_type().clone())).collect();
        let converter = RowConverter::new(fields).map_err(exec)?;
        let day_idx = t.columns.iter().position(|(c, _)| *c == "day");
        let mut per_day: BTreeMap<String, (u64, blake3::Hasher)> = BTreeMap::new();
        let mut stream = df.execute_stream().await.map_err(exec)?;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(exec)?;
            let rows = converter.convert_columns(batch.columns()).map_err(exec)?;
            let days = match day_idx {
                Some(i) => Some(cast(batch.column(i), &DataType::Utf8).map_err(exec)?),
                None => None,
            };
            let days = days.as_ref().and_then(|a| a.as_any().downcast_ref::<StringArray>().cloned());
            for (i, row) in rows.iter().enumerate() {
                let d = days.as_ref().filter(|a| !a.is_null(i)).map(|a| a.value(i).to_string()).unwrap_or_default();
                let e = per_day.entry(d).or_insert_with(|| (0, blake3::Hasher::new()));
                e.0 += 1;
                let bytes = row.as_ref();
                e.1.update(&(bytes.len() as u64).to_le_bytes());
                e.1.update(bytes);
            }
        }
        for (d, (rows, h)) in per_day {
            out.push(PartitionDigest {
                table: t.name.to_string(),
                day: d,
                rows,
                digest: h.finalize().to_hex().to_string(),
            });
        }
    }
    Ok(out)
}

/// Per-row digests of one partition (`day` empty for unpartitioned tables): surrogate key → BLAKE3 of the row, in
/// key order. Used to find, down to the key, where two appliances differ once partition digests disagree.
pub async fn row_digests(
    engine: &QueryEngine,
    snapshot: &MartSnapshot,
    table: &MartTable,
    day: Option<&str>,
) -> Result<Vec<(i64, String)>, QueryError> {
    let ctx = engine.context(snapshot).await?;
    let key = table.columns[0].0;
    let mut df = ctx.table(table.name).await.map_err(exec)?;
    if let (true, Some(d)) = (table.partitioned, day) {
        df = df.filter(col("day").eq(lit(d.to_string()))).map_err(exec)?;
    }
    let df = df.sort(vec![col(key).sort(true, false)]).map_err(exec)?;
    let fields: Vec<SortField> = df.schema().fields().iter().map(|f| SortField::new(f.data_type().clone())).collect();
    let converter = RowConverter::new(fields).map_err(exec)?;
    let mut out = Vec::new();
    let mut stream = df.execute_stream().await.map_err(exec)?;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(exec)?;
        let keys = cast(batch.column(0), &DataType::Int64).map_err(exec)?;
        let keys = keys.as_any().downcast_ref::<datafusion::arrow::array::Int64Array>().cloned();
        let rows = converter.convert_columns(batch.columns()).map_err(exec)?;
        for (i, row) in rows.iter().enumerate() {
            let k = keys.as_ref().filter(|a| !a.is_null(i)).map_or(0, |a| a.value(i));
            out.push((k, blake3::hash(row.as_ref()).to_hex().to_string()));
        }
    }
    Ok(out)
}
