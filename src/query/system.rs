//! System tables: the merge's slice decisions and the audit trail of ignored sites, read from staging when a
//! query scans them, so they are always current (they are not part of a mart version).

use crate::merge::SliceDecision;
use crate::staging::{SourceAuditEntry, Store};
use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use std::sync::Arc;

/// Which system table.
#[derive(Debug, Clone, Copy)]
pub enum SystemTableKind {
    /// `ccmart_merge_decisions`: per HA pair and slice, the IDB chosen and why.
    MergeDecisions,
    /// `ccmart_source_audit`: who ignored or restored which site when.
    SourceAudit,
    /// `ccmart_maintenance_runs`: what each maintenance task did, with file and byte figures.
    MaintenanceRuns,
}

/// Every system table with its SQL name.
pub const SYSTEM_TABLES: &[(&str, SystemTableKind)] = &[
    ("ccmart_merge_decisions", SystemTableKind::MergeDecisions),
    ("ccmart_source_audit", SystemTableKind::SourceAudit),
    ("ccmart_maintenance_runs", SystemTableKind::MaintenanceRuns),
];

/// A system table backed by staging records.
#[derive(Debug)]
pub struct SystemTable {
    kind: SystemTableKind,
    store: Arc<Store>,
    schema: SchemaRef,
}

fn text(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}
fn int(name: &str) -> Field {
    Field::new(name, DataType::Int64, false)
}

impl SystemTable {
    /// A provider for `kind` reading `store`.
    pub fn new(kind: SystemTableKind, store: Arc<Store>) -> Self {
        let fields = match kind {
            SystemTableKind::MergeDecisions => vec![
                text("pair", false),
                int("slice_start"),
                int("slice_end"),
                text("chosen_idb", true),
                text("state", false),
                text("complete_idbs", false),
                text("reason", false),
            ],
            SystemTableKind::SourceAudit => {
                vec![int("seq"), int("at"), text("action", false), text("site", false), text("actor", false)]
            }
            SystemTableKind::MaintenanceRuns => vec![
                int("seq"),
                int("started_at"),
                text("task", false),
                text("table_name", false),
                int("files_before"),
                int("files_after"),
                int("bytes_before"),
                int("bytes_after"),
                int("duration_ms"),
                text("detail", false),
            ],
        };
        SystemTable { kind, store, schema: Arc::new(Schema::new(fields)) }
    }

    fn batch(&self) -> Result<RecordBatch> {
        let ext = |e: crate::staging::StagingError| DataFusionError::External(Box::new(e));
        let columns: Vec<ArrayRef> = match self.kind {
            SystemTableKind::MergeDecisions => {
                let d: Vec<SliceDecision> = self.store.merge_decisions().map_err(ext)?;
                vec![
                    Arc::new(StringArray::from_iter_values(d.iter().map(|x| x.pair.as_str()))),
                    Arc::new(Int64Array::from_iter_values(d.iter().map(|x| x.slice_start))),
                    Arc::new(Int64Array::from_iter_values(d.iter().map(|x| x.slice_end))),
                    Arc::new(StringArray::from_iter(d.iter().map(|x| x.chosen_idb.as_deref()))),
                    Arc::new(StringArray::from_iter_values(d.iter().map(|x| x.state.as_str()))),
                    Arc::new(StringArray::from_iter_values(d.iter().map(|x| x.complete_idbs.as_str()))),
                    Arc::new(StringArray::from_iter_values(d.iter().map(|x| x.reason.as_str()))),
                ]
            }
            SystemTableKind::SourceAudit => {
                let a: Vec<SourceAuditEntry> = self.store.source_audit().map_err(ext)?;
                vec![
                    Arc::new(Int64Array::from_iter_values(a.iter().map(|x| x.seq as i64))),
                    Arc::new(Int64Array::from_iter_values(a.iter().map(|x| x.at))),
                    Arc::new(StringArray::from_iter_values(a.iter().map(|x| x.action.as_str()))),
                    Arc::new(StringArray::from_iter_values(a.iter().map(|x| x.site.as_str()))),
                    Arc::new(StringArray::from_iter_values(a.iter().map(|x| x.actor.as_str()))),
                ]
            }
            SystemTableKind::MaintenanceRuns => {
                let r: Vec<crate::staging::MaintenanceRecord> = self.store.maintenance_runs().map_err(ext)?;
                let ints = |f: fn(&crate::staging::MaintenanceRecord) -> i64| -> ArrayRef {
                    Arc::new(Int64Array::from_iter_values(r.iter().map(f)))
                };
                vec![
                    ints(|x| x.seq as i64),
                    ints(|x| x.started_at),
                    Arc::new(StringArray::from_iter_values(r.iter().map(|x| x.task.as_str()))),
                    Arc::new(StringArray::from_iter_values(r.iter().map(|x| x.table.as_str()))),
                    ints(|x| x.files_before as i64),
                    ints(|x| x.files_after as i64),
                    ints(|x| x.bytes_before as i64),
                    ints(|x| x.bytes_after as i64),
                    ints(|x| x.duration_ms as i64),
                    Arc::new(StringArray::from_iter_values(r.iter().map(|x| x.detail.as_str()))),
                ]
            }
        };
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

#[async_trait]
impl TableProvider for SystemTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let store = self.store.clone();
        let kind = self.kind;
        let table = SystemTable { kind, store, schema: self.schema.clone() };
        let batch = tokio::task::spawn_blocking(move || table.batch())
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))??;
        MemTable::try_new(self.schema.clone(), vec![vec![batch]])?.scan(state, projection, filters, limit).await
    }
}
