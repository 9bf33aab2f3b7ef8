//! Scheduled maintenance that keeps an appliance's disk use bounded while it runs for years: mart retention
//! (days older than `mart_retention_days` leave the mart), catalog pruning (mart versions older than
//! `version_retention_secs` can no longer be queried) and vacuum (files no retained version needs are deleted,
//! including orphans a crash left behind; then the Delta log entries older than every retained version, so opening
//! a table costs the same after a year as on the first day).
//!
//! Every task is bounded (one table at a time, no concurrent writes: the pipeline runs maintenance between
//! cycles) and recorded with its figures in staging, queryable as `ccmart_maintenance_runs`.
//!
//! Compaction is not a task here: publish appends new facts as new files and rewrites a partition as one file
//! once it holds `mart::COMPACT_AFTER_FILES` of them (or when its facts change), so a partition never gathers
//! more; what accumulates is old versions, which vacuum removes.

use crate::mart::{Mart, MartError};
use crate::staging::{MaintenanceRecord, StagingError, Store};
use crate::transform::schema::MART_TABLES;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;
use thiserror::Error;

/// Default time between maintenance runs.
pub const DEFAULT_INTERVAL_SECS: u64 = 3600;
/// Default time an older mart version stays queryable (`"mart_version": V`).
pub const DEFAULT_VERSION_RETENTION_SECS: u64 = 24 * 3600;
/// Default days of history the mart keeps.
pub const DEFAULT_MART_RETENTION_DAYS: u32 = 400;
/// Default days the staged IDB rows of a transformed interaction are kept (longer than IDBs usually keep data, so
/// late rows the IDBs can still deliver find their interaction).
pub const DEFAULT_STAGING_RETENTION_DAYS: u32 = 30;
/// Groups purged per staging transaction (bounds its size).
const PURGE_BATCH: usize = 5_000;
/// Time one run spends purging staging at most; the next run goes on.
const PURGE_BUDGET: std::time::Duration = std::time::Duration::from_secs(60);

/// `[maintenance]` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaintenanceSettings {
    /// Seconds between runs (0: never).
    pub interval_secs: u64,
    /// How long a published mart version stays queryable; vacuum keeps the files it needs that long.
    pub version_retention_secs: u64,
    /// Days of history kept in the mart (by the `day` partition); older days are removed.
    pub mart_retention_days: u32,
    /// Days the staged IDB rows of a transformed interaction or login session are kept (by the days of its facts).
    /// After that only its facts remain; rows the IDBs deliver for it later are not staged.
    pub staging_retention_days: u32,
}

impl Default for MaintenanceSettings {
    fn default() -> Self {
        MaintenanceSettings {
            interval_secs: DEFAULT_INTERVAL_SECS,
            version_retention_secs: DEFAULT_VERSION_RETENTION_SECS,
            mart_retention_days: DEFAULT_MART_RETENTION_DAYS,
            staging_retention_days: DEFAULT_STAGING_RETENTION_DAYS,
        }
    }
}

/// Why maintenance stopped.
#[derive(Debug, Error)]
pub enum MaintenanceError {
    /// Staging could not be read or written.
    #[error(transparent)]
    Staging(#[from] StagingError),
    /// A mart table could not be vacuumed.
    #[error(transparent)]
    Mart(#[from] MartError),
}

/// What one run did.
#[derive(Debug, Clone, Default)]
pub struct MaintenanceReport {
    /// One record per task and table, as stored.
    pub records: Vec<MaintenanceRecord>,
    /// Day partitions expired (they leave the mart with the next publish).
    pub expired_partitions: usize,
    /// Mart versions no longer queryable.
    pub versions_dropped: usize,
    /// Files deleted by vacuum.
    pub files_deleted: usize,
    /// Delta log entries (commits, checkpoints) deleted: older than every version a retained mart version reads.
    pub log_files_deleted: usize,
    /// Staged rows purged (of transformed interactions older than the staging retention).
    pub staging_rows_purged: usize,
}

/// Parquet files and bytes under a directory.
pub fn storage_of(dir: &Path) -> (u64, u64) {
    fn walk(dir: &Path, files: &mut u64, bytes: &mut u64) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                walk(&e.path(), files, bytes);
            } else if e.path().extension().is_some_and(|x| x == "parquet") {
                *files += 1;
                *bytes += meta.len();
            }
        }
    }
    let (mut files, mut bytes) = (0, 0);
    walk(dir, &mut files, &mut bytes);
    (files, bytes)
}

/// Runs every task once, at wall-clock time `now` (epoch seconds), and records what it did.
pub async fn run(
    store: &Store,
    mart: &Mart,
    settings: &MaintenanceSettings,
    now: i64,
) -> Result<MaintenanceReport, MaintenanceError> {
    let mut report = MaintenanceReport::default();
    let record = |task: &str, table: &str, started: Instant, before: (u64, u64), after: (u64, u64), detail: String| {
        MaintenanceRecord {
            seq: 0,
            started_at: now,
            task: task.into(),
            table: table.into(),
            files_before: before.0,
            files_after: after.0,
            bytes_before: before.1,
            bytes_after: after.1,
            duration_ms: started.elapsed().as_millis() as u64,
            detail,
        }
    };

    // Mart retention: whole days, by partition.
    let cutoff = crate::transform::day_of(now - i64::from(settings.mart_retention_days) * 86_400);
    for t in MART_TABLES.iter().filter(|t| t.partitioned) {
        let started = Instant::now();
        let days = store.expire_facts_before(t.name, &cutoff)?;
        if !days.is_empty() {
            let size = storage_of(&mart.root().join(t.name));
            report.expired_partitions += days.len();
            let detail = format!("expired {} day(s) before {cutoff}: {}", days.len(), days.join(", "));
            report.records.push(record("retention", t.name, started, size, size, detail));
        }
    }

    // The aggregates' sums of the days that left the mart.
    if let Ok(day) = cutoff.parse::<crate::model::Day>() {
        store.expire_aggregate_sums_before(day.start())?;
    }

    // Staged rows of long-transformed interactions: their facts are final.
    let started = Instant::now();
    let cutoff = crate::transform::day_of(now - i64::from(settings.staging_retention_days) * 86_400);
    let (mut groups, mut more) = (0, true);
    while more && started.elapsed() < PURGE_BUDGET {
        let o = store.purge_groups_before(&cutoff, PURGE_BATCH, now)?;
        groups += o.groups;
        report.staging_rows_purged += o.rows;
        more = o.more;
    }
    let detail = format!(
        "purged the staged rows of {groups} interaction(s)/session(s) with facts before {cutoff} ({} rows){}",
        report.staging_rows_purged,
        if more { "; more next run" } else { "" }
    );
    report.records.push(record("staging purge", "", started, (0, 0), (0, 0), detail));

    // Older mart versions stop being queryable before their files go.
    let started = Instant::now();
    let before = now - settings.version_retention_secs as i64;
    report.versions_dropped = store.prune_catalog(before)?;
    let detail = format!("{} mart version(s) published before {before} no longer queryable", report.versions_dropped);
    report.records.push(record("catalog", "", started, (0, 0), (0, 0), detail));

    // Vacuum keeps exactly the files of the Delta versions that queryable mart versions read.
    let retained = store.snapshots()?;
    for t in MART_TABLES {
        let started = Instant::now();
        let dir = mart.root().join(t.name);
        let size_before = storage_of(&dir);
        let keep: Vec<u64> = retained.iter().filter_map(|s| s.tables.get(t.name).copied()).collect();
        mart.vacuum(t.name, &keep).await?;
        let oldest = keep.iter().copied().min();
        let log_files = match oldest {
            Some(v) => mart.clean_log(t.name, v).await?,
            None => 0,
        };
        let size_after = storage_of(&dir);
        let deleted = size_before.0.saturating_sub(size_after.0) as usize;
        report.files_deleted += deleted;
        report.log_files_deleted += log_files;
        let detail = format!("deleted {deleted} file(s) and {log_files} Delta log entr(ies) no retained version needs");
        report.records.push(record("vacuum", t.name, started, size_before, size_after, detail));
    }
    store.record_maintenance(&report.records)?;
    let freed: u64 = report.records.iter().map(|r| r.bytes_before.saturating_sub(r.bytes_after)).sum();
    tracing::info!(
        expired_partitions = report.expired_partitions,
        versions_dropped = report.versions_dropped,
        files_deleted = report.files_deleted,
        log_files_deleted = report.log_files_deleted,
        staging_rows_purged = report.staging_rows_purged,
        bytes_freed = freed,
        "maintenance done"
    );
    Ok(report)
}

/// A request for maintenance at the next cycle, shared by the HTTP server (which sets it) and the pipeline
/// (which takes it): the pipeline owns the mart, so maintenance never runs concurrently with a publish.
#[derive(Debug, Clone, Default)]
pub struct MaintenanceTrigger(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl MaintenanceTrigger {
    /// Asks for maintenance at the next cycle; true when it was not already asked for.
    pub fn request(&self) -> bool {
        !self.0.swap(true, std::sync::atomic::Ordering::SeqCst)
    }

    /// Takes the request, if any.
    pub fn take(&self) -> bool {
        self.0.swap(false, std::sync::atomic::Ordering::SeqCst)
    }
}

/// When maintenance runs: every `maintenance.interval_secs` (the first run one interval after the start), or at
/// the next cycle when an operator asks for it ([`MaintenanceTrigger`]). Only an active site runs it; a standby
/// mirrors the active's maintenance when it replicates.
#[derive(Debug, Clone)]
pub struct MaintenanceSchedule {
    trigger: MaintenanceTrigger,
    clock: crate::clock::Clock,
    /// When it last ran ([`crate::clock::Clock::elapsed`]).
    last: std::time::Duration,
}

impl MaintenanceSchedule {
    /// A schedule starting now on `clock`.
    pub fn new(clock: crate::clock::Clock) -> Self {
        let last = clock.elapsed();
        MaintenanceSchedule { trigger: MaintenanceTrigger::default(), clock, last }
    }

    /// The trigger the HTTP server sets.
    pub fn trigger(&self) -> MaintenanceTrigger {
        self.trigger.clone()
    }

    /// Whether maintenance runs now on a site that is `active`, given `interval_secs` (0: only when asked for);
    /// when it does, the next interval starts now. A request is taken either way, so a standby does not run it
    /// later, after a promotion.
    pub fn take_due(&mut self, interval_secs: u64, active: bool) -> bool {
        let asked = self.trigger.take();
        let every = std::time::Duration::from_secs(interval_secs);
        let due = interval_secs > 0 && self.clock.due(Some(self.last), every);
        if (asked || due) && active {
            self.last = self.clock.elapsed();
            return true;
        }
        false
    }
}
