//! The pipeline driver: the one place that knows every stage. It owns the cycle — extract every IDB, merge and
//! transform what changed, publish a mart version — and the simulator feeding embedded IDBs.

use crate::config::Config;
use crate::extract::{self, ExtractSettings, IdbHealth};
use crate::fault::FaultInjector;
use crate::mart::{self, Mart};
use crate::merge::merge_group;
use crate::query::QueryEngine;
use crate::serve::{ApplianceStatus, CycleSummary, SharedStatus};
use crate::sim::Simulator;
use crate::source::embedded::EmbeddedIdb;
use crate::source::postgres::{PostgresIdb, PostgresWriter};
use crate::source::{Idb, IdbSink, RowNumbering, SourceError};
use crate::staging::{StagingError, Store};
use crate::transform::aggregate::{agent_aggregates, neighbour_days, queue_aggregates};
use crate::transform::schema::{
    DATE_TIME, INTERACTION_RESOURCE_FACT, MEDIATION_SEGMENT_FACT, SM_RES_STATE_FACT, SM_RES_STATE_REASON_FACT,
};
use crate::transform::{self, transform_group};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Errors that stop a cycle. IDB outages are not among them (they are retried and reported in the status).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// Staging failed.
    #[error(transparent)]
    Staging(#[from] StagingError),
    /// Extraction failed.
    #[error(transparent)]
    Extract(#[from] extract::ExtractError),
    /// The mart failed.
    #[error(transparent)]
    Mart(#[from] mart::MartError),
    /// Writing simulated data failed.
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// What one cycle did.
#[derive(Debug, Clone, Default)]
pub struct CycleReport {
    /// Rows staged.
    pub rows_staged: usize,
    /// Rows quarantined.
    pub rows_quarantined: usize,
    /// Groups transformed.
    pub groups: usize,
    /// Partitions rewritten.
    pub partitions: usize,
    /// New mart version, if one was published.
    pub mart_version: Option<u64>,
    /// More work is waiting (extraction backlog or dirty groups).
    pub more: bool,
    /// Time spent extracting, ms.
    pub extract_ms: u64,
    /// Time spent merging and transforming, ms.
    pub transform_ms: u64,
    /// Time spent writing Delta partitions and publishing, ms.
    pub publish_ms: u64,
}

/// The numbering an IDB uses: position `i` within its pair decides the `ID` offset, so the two IDBs of a pair
/// number the same rows differently, as real ICON databases do.
pub fn numbering(name: &str, index_in_pair: usize, global_index: usize) -> RowNumbering {
    RowNumbering {
        id_offset: index_in_pair as i64 * 7_000_000_000,
        guid_prefix: name.to_string(),
        gsys_domain: 1000 + global_index as i64,
    }
}

/// One running appliance: staging, mart, query engine, IDB readers and status.
pub struct Appliance {
    config: Config,
    store: Arc<Store>,
    mart: Mart,
    engine: QueryEngine,
    idbs: Vec<Idb>,
    health: Vec<IdbHealth>,
    preference: Vec<String>,
    embedded: Vec<(String, EmbeddedIdb)>,
    faults: FaultInjector,
    status: SharedStatus,
    last_publish: Option<Instant>,
}

impl Appliance {
    /// Opens the data directory (staging store and mart) and prepares a reader per configured IDB.
    pub async fn open(config: Config, faults: FaultInjector) -> Result<Self, PipelineError> {
        let dir = &config.appliance.data_dir;
        std::fs::create_dir_all(dir).map_err(|e| StagingError::Open { path: dir.clone(), message: e.to_string() })?;
        let store = Arc::new(Store::open_with_cache(
            &dir.join("staging.redb"),
            faults.clone(),
            config.appliance.staging_cache_mb,
        )?);
        let mart = Mart::open(&dir.join("mart")).await?;
        let engine = QueryEngine::new(mart.clone(), config.query);
        let mut idbs = Vec::new();
        let mut embedded = Vec::new();
        let pairs = config.pairs();
        for (gi, c) in config.idbs.iter().enumerate() {
            let idx = pairs.get(&c.pair).and_then(|m| m.iter().position(|n| n == &c.name)).unwrap_or(0);
            if c.is_embedded() {
                let e = EmbeddedIdb::new(&c.name, numbering(&c.name, idx, gi));
                embedded.push((c.name.clone(), e.clone()));
                idbs.push(Idb::Embedded(e));
            } else {
                idbs.push(Idb::Postgres(PostgresIdb::new(&c.name, &c.url)));
            }
        }
        let health = config.idbs.iter().map(|c| IdbHealth::new(&c.name)).collect();
        let preference = config.idbs.iter().map(|c| c.name.clone()).collect();
        let status = SharedStatus::new(ApplianceStatus::new(&config.appliance.site));
        let app = Appliance {
            config,
            store,
            mart,
            engine,
            idbs,
            health,
            preference,
            embedded,
            faults,
            status,
            last_publish: None,
        };
        app.refresh_status(None)?;
        Ok(app)
    }

    /// The staging store (shared with the HTTP server for snapshots and status).
    pub fn store(&self) -> Arc<Store> {
        self.store.clone()
    }

    /// The query engine.
    pub fn engine(&self) -> QueryEngine {
        self.engine.clone()
    }

    /// The live status shown by `/v1/status`.
    pub fn status(&self) -> SharedStatus {
        self.status.clone()
    }

    /// The mart.
    pub fn mart(&self) -> &Mart {
        &self.mart
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The embedded IDBs (name, handle) that a simulator should fill.
    pub fn embedded_idbs(&self) -> &[(String, EmbeddedIdb)] {
        &self.embedded
    }

    /// Runs one cycle: extract, merge + transform, publish.
    pub async fn cycle(&mut self) -> Result<CycleReport, PipelineError> {
        let started = Instant::now();
        let result = self.cycle_inner().await;
        let summary = CycleSummary {
            finished_at: chrono::Utc::now().timestamp(),
            duration_ms: started.elapsed().as_millis() as u64,
            error: result.as_ref().err().map(|e| e.to_string()),
            rows_staged: result.as_ref().map_or(0, |r| r.rows_staged),
            groups_transformed: result.as_ref().map_or(0, |r| r.groups),
            partitions_published: result.as_ref().map_or(0, |r| r.partitions),
            extract_ms: result.as_ref().map_or(0, |r| r.extract_ms),
            transform_ms: result.as_ref().map_or(0, |r| r.transform_ms),
            publish_ms: result.as_ref().map_or(0, |r| r.publish_ms),
        };
        if let Err(e) = self.refresh_status(Some(summary)) {
            tracing::warn!(error = %e, "status refresh failed");
        }
        result
    }

    async fn cycle_inner(&mut self) -> Result<CycleReport, PipelineError> {
        let mut report = CycleReport::default();
        let phase = Instant::now();
        let settings = ExtractSettings {
            chunk_rows: self.config.extract.chunk_rows,
            max_chunks_per_cycle: self.config.extract.max_chunks_per_cycle,
        };
        for (idb, health) in self.idbs.iter().zip(self.health.iter_mut()) {
            let r = extract::extract_idb(&self.store, idb, settings, health).await?;
            report.rows_staged += r.rows_staged;
            report.rows_quarantined += r.rows_quarantined;
            report.more |= r.backlog;
        }
        // While a large backlog is being extracted, rows of the same interaction arrive over many cycles; transforming
        // and publishing every cycle would rewrite the same partitions again and again. Publish at most every
        // `backlog_publish_secs` then, and every cycle in steady state.
        let interval = Duration::from_secs(self.config.extract.backlog_publish_secs);
        report.extract_ms = phase.elapsed().as_millis() as u64;
        let phase = Instant::now();
        if report.more && self.last_publish.is_some_and(|t| t.elapsed() < interval) {
            return Ok(report);
        }
        self.last_publish = Some(Instant::now());
        // Transform in bounded batches; after-call work found in sessions wakes calls, handled in a later batch.
        for _ in 0..50 {
            let groups = self.store.dirty_groups(self.config.extract.transform_batch)?;
            if groups.is_empty() {
                break;
            }
            let mut outputs = Vec::with_capacity(groups.len());
            let mut days = BTreeSet::new();
            for (g, loaded) in groups.iter().zip(self.store.load_groups(&groups)?) {
                if let Some(day) = g.strip_prefix("Z:AGA:") {
                    let legs = self.facts_of_day_and_before(INTERACTION_RESOURCE_FACT.name, day)?;
                    let states = self.facts_of_day_and_before(SM_RES_STATE_FACT.name, day)?;
                    outputs.push(agent_aggregates(day, &legs, &states));
                    continue;
                }
                if let Some(day) = g.strip_prefix("Z:AGQ:") {
                    let segments = self.facts_of_day_and_before(MEDIATION_SEGMENT_FACT.name, day)?;
                    outputs.push(queue_aggregates(day, &segments, &self.config.transform));
                    continue;
                }
                let merged = merge_group(g, loaded.rows, &self.preference);
                let out = transform_group(g, &merged, &loaded.after_call_work, &self.config.transform);
                days.extend(out.facts.iter().filter(|(a, _)| !a.day.is_empty()).map(|(a, _)| a.day.clone()));
                outputs.push(out);
            }
            // Dimension rows: the fixed ones once, a reason code's row the first time it is seen.
            let fixed = transform::fixed_dimensions();
            if let Some((a, row)) = fixed.facts.last() {
                if self.store.fact(&a.table, "", a.key)?.as_ref() != Some(row) {
                    outputs.push(fixed);
                }
            }
            let reason_idx = SM_RES_STATE_REASON_FACT.columns.iter().position(|(c, _)| *c == "reason_code");
            let mut reasons = BTreeSet::new();
            for out in &outputs {
                for (a, row) in &out.facts {
                    if a.table == SM_RES_STATE_REASON_FACT.name {
                        if let Some(crate::staging::Cell::Text(code)) = reason_idx.and_then(|i| row.0.get(i)) {
                            reasons.insert(code.clone());
                        }
                    }
                }
            }
            for code in reasons {
                let dim = transform::reason_dimension(&code);
                if let Some((a, _)) = dim.facts.first() {
                    if self.store.fact(&a.table, "", a.key)?.is_none() {
                        outputs.push(dim);
                    }
                }
            }
            for day in days {
                let calendar = transform::calendar_day(&day, self.config.transform.tz());
                let exists = match calendar.facts.first() {
                    Some((a, row)) => self.store.fact(DATE_TIME.name, &day, a.key)?.as_ref() == Some(row),
                    None => true,
                };
                if !exists {
                    outputs.push(calendar);
                }
            }
            self.store.commit_group_outputs(&groups, &outputs)?;
            report.groups += groups.len();
        }
        report.more |= !self.store.dirty_groups(1)?.is_empty();
        report.transform_ms = phase.elapsed().as_millis() as u64;
        let phase = Instant::now();
        let published = mart::publish_changes(&self.store, &self.mart, &self.faults).await?;
        report.partitions = published.partitions;
        report.mart_version = published.snapshot.map(|s| s.version);
        report.publish_ms = phase.elapsed().as_millis() as u64;
        Ok(report)
    }

    /// Staged fact rows of `table` in the partitions of `day` and the day before: what an aggregate of `day` reads,
    /// since queue stays, legs and state periods can begin or run past midnight of their partition's day.
    fn facts_of_day_and_before(&self, table: &str, day: &str) -> Result<Vec<crate::staging::FactRow>, StagingError> {
        let mut days = vec![day.to_string()];
        if let Some((previous, _)) = neighbour_days(day) {
            days.insert(0, previous);
        }
        let mut out = Vec::new();
        for d in days {
            out.extend(self.store.partition_facts(table, &d)?.into_iter().map(|(_, r)| r));
        }
        Ok(out)
    }

    /// Runs cycles back to back until nothing is left to do (or `max_cycles`); for tests, `simulate` and batch use.
    pub async fn drain(&mut self, max_cycles: usize) -> Result<usize, PipelineError> {
        for n in 1..=max_cycles {
            let r = self.cycle().await?;
            if !r.more && r.rows_staged == 0 && r.groups == 0 {
                return Ok(n);
            }
        }
        Ok(max_cycles)
    }

    fn refresh_status(&self, cycle: Option<CycleSummary>) -> Result<(), StagingError> {
        let snapshot = self.store.latest_snapshot()?;
        let quarantined = self.store.quarantine_count()?;
        self.status.update(|s| {
            s.idbs = self.health.clone();
            s.mart_version = snapshot.as_ref().map(|s| s.version);
            s.newest_interaction_end_ts = snapshot.as_ref().and_then(|s| s.newest_end_ts);
            s.quarantined_rows = quarantined;
            if let Some(c) = cycle {
                s.last_cycle = Some(c);
            }
        });
        Ok(())
    }
}

/// Feeds simulated collector output into IDBs: one sink per IDB, grouped by the simulated site (HA pair) whose
/// events it receives. Both IDBs of a pair get the same writes.
pub struct SimulationDriver {
    sim: Simulator,
    sinks: Vec<Vec<IdbSink>>,
}

impl SimulationDriver {
    /// Builds sinks for the configured IDBs: embedded ones from `embedded`, PostgreSQL ones by connecting.
    /// Site `s` of the simulator feeds the `s`-th HA pair (pairs in name order).
    pub async fn new(config: &Config, sim: Simulator, embedded: &[(String, EmbeddedIdb)]) -> Result<Self, SourceError> {
        let pairs = config.pairs();
        let mut sinks = Vec::new();
        for (s, (_, members)) in pairs.iter().enumerate().take(sim.settings().sites) {
            let mut site_sinks = Vec::new();
            for (idx, name) in members.iter().enumerate() {
                let gi = config.idbs.iter().position(|c| &c.name == name).unwrap_or(0);
                let c = &config.idbs[gi];
                let mut sink = if let Some((_, e)) = embedded.iter().find(|(n, _)| n == name) {
                    IdbSink::Embedded(e.clone())
                } else {
                    IdbSink::Postgres(Box::new(PostgresWriter::connect(name, &c.url, numbering(name, idx, gi)).await?))
                };
                let dss = sim.session_control_write(s, 200 + gi as i64, 1);
                sink.apply(&[dss]).await?;
                site_sinks.push(sink);
            }
            sinks.push(site_sinks);
        }
        Ok(SimulationDriver { sim, sinks })
    }

    /// The simulator (ground truth).
    pub fn simulator(&self) -> &Simulator {
        &self.sim
    }

    async fn write(&mut self, per_site: Vec<Vec<crate::source::IdbWrite>>) -> Result<usize, SourceError> {
        let mut n = 0;
        for (site, writes) in per_site.into_iter().enumerate() {
            if let Some(sinks) = self.sinks.get_mut(site) {
                for sink in sinks.iter_mut() {
                    sink.apply(&writes).await?;
                }
                n += writes.len();
            }
        }
        Ok(n)
    }

    /// Simulates up to `until` in steps of `step_secs` (one IDB transaction per step and site); returns writes.
    pub async fn advance(&mut self, from: i64, until: i64, step_secs: i64) -> Result<usize, SourceError> {
        let mut t = from;
        let mut n = 0;
        while t < until {
            t = (t + step_secs.max(1)).min(until);
            let w = self.sim.advance_to(t);
            n += self.write(w).await?;
        }
        Ok(n)
    }

    /// Ends the simulation at `at` (calls finish, agents log out) and writes the rest.
    pub async fn finish(&mut self, at: i64) -> Result<usize, SourceError> {
        let w = self.sim.finish(at);
        self.write(w).await
    }
}
