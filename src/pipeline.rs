//! The pipeline driver: the one place that knows every stage. It owns the cycle — extract every IDB, merge and
//! transform what changed, publish a mart version — and the simulator feeding embedded IDBs.

use crate::clock::Clock;
use crate::config::Config;
use crate::extract::{self, ExtractSettings, IdbState};
use crate::fault::FaultInjector;
use crate::maintenance::MaintenanceSchedule;
use crate::mart::{self, Mart};
use crate::merge::{Merger, PairMember, SessionControlRows};
use crate::model::status::{ApplianceStatus, CycleSummary, SharedStatus};
use crate::model::GroupKey;
use crate::query::QueryEngine;
use crate::replicate::fencing::SharedFence;
use crate::replicate::link::PeerLink;
use crate::serve::metrics::ApplianceMetrics;
use crate::sim::collector::{site_name, CollectorPlacement, Collectors};
use crate::sim::Simulator;
use crate::source::embedded::EmbeddedIdb;
use crate::source::postgres::{PostgresIdb, PostgresWriter};
use crate::source::{Idb, IdbSink, RowNumbering, SourceError};
use crate::staging::{StagingError, Store};
use crate::transform::aggregate;
use crate::transform::batch::transform_batch;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
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
    /// Maintenance failed.
    #[error(transparent)]
    Maintenance(#[from] crate::maintenance::MaintenanceError),
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
    /// Groups held back because their pair waits for an IDB (or the interaction is still open).
    pub held: usize,
}

pub use crate::replicate::link::CHECKPOINT_DIR;

/// The numbering an IDB uses: position `i` within its pair decides the `ID` offset, so the two IDBs of a pair
/// number the same rows differently, as real ICON databases do.
pub fn numbering(name: &str, index_in_pair: usize, global_index: usize) -> RowNumbering {
    RowNumbering {
        id_offset: index_in_pair as i64 * 7_000_000_000,
        guid_prefix: name.to_string(),
        gsys_domain: 1000 + global_index as i64,
    }
}

/// One running appliance: the wiring of the stages. Each stage owns its state — extraction the per-IDB retry and
/// settling state, the [`Merger`] the pairs' memory, the [`PeerLink`] the fence, the peer and the checkpoints,
/// the [`MaintenanceSchedule`] when maintenance is due — and the appliance only passes data between them.
pub struct Appliance {
    config: Config,
    clock: Clock,
    faults: FaultInjector,
    store: Arc<Store>,
    mart: Mart,
    engine: QueryEngine,
    /// Every configured IDB with its extraction state, in configured order.
    sources: Vec<(Idb, IdbState)>,
    /// The embedded IDBs (name, handle) a simulator fills.
    embedded: Vec<(String, EmbeddedIdb)>,
    merger: Merger,
    /// The columns that move with a fact's key when staging resolves a key collision.
    key_references: crate::staging::KeyReferences,
    link: PeerLink,
    maintenance: MaintenanceSchedule,
    status: SharedStatus,
    metrics: ApplianceMetrics,
    /// Cycles whose metrics were recorded (mart storage is measured on the first and whenever a cycle publishes).
    cycles_observed: u64,
    /// When the transform last ran ([`Clock::elapsed`]).
    last_publish: Option<Duration>,
}

impl Appliance {
    /// Opens the data directory (staging store and mart) and prepares a reader per configured IDB.
    pub async fn open(config: Config, faults: FaultInjector) -> Result<Self, PipelineError> {
        Self::open_with_clock(config, faults, Clock::system()).await
    }

    /// [`Self::open`] with the time the appliance goes by (tests drive a manual clock).
    pub async fn open_with_clock(config: Config, faults: FaultInjector, clock: Clock) -> Result<Self, PipelineError> {
        let dir = &config.appliance.data_dir;
        std::fs::create_dir_all(dir).map_err(|source| StagingError::Io { path: dir.clone(), source })?;
        let store = Arc::new(Store::open_with_cache(
            &dir.join("staging.redb"),
            faults.clone(),
            config.appliance.staging_cache_mb,
        )?);
        // A replication pass interrupted while it verified what it brought: put back what it had set aside.
        if let Err(e) = crate::replicate::sync::restore_set_aside(&dir.join("mart")) {
            tracing::error!(error = %e, "cannot put back the mart files an interrupted replication pass set aside");
        }
        let mart = Mart::open(&dir.join("mart")).await?;
        // Spill files of queries interrupted by a crash are garbage: start with an empty spill directory.
        let spill = dir.join("tmp").join("spill");
        if let Err(e) = std::fs::remove_dir_all(&spill) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %spill.display(), error = %e, "cannot clear old query spill files");
            }
        }
        let engine =
            QueryEngine::new(mart.clone(), config.query).with_system_tables(store.clone()).with_spill_dir(spill);
        let mut sources = Vec::new();
        let mut embedded = Vec::new();
        let pairs = config.pairs();
        for (gi, c) in config.idbs.iter().enumerate() {
            let idx = pairs.get(&c.pair).and_then(|m| m.iter().position(|n| n == &c.name)).unwrap_or(0);
            let idb = if c.is_embedded() {
                let e = EmbeddedIdb::new(&c.name, numbering(&c.name, idx, gi));
                embedded.push((c.name.clone(), e.clone()));
                Idb::Embedded(e)
            } else {
                Idb::Postgres(PostgresIdb::new(&c.name, &c.url))
            };
            sources.push((idb, IdbState::new(&c.name, clock.clone())));
        }
        let members: Vec<PairMember> = config
            .idbs
            .iter()
            .map(|c| PairMember { idb: c.name.clone(), pair: c.pair.clone(), site: c.site.clone() })
            .collect();
        let merger = Merger::new(&members, config.merge.clone(), store.merge_states()?);
        let fence = SharedFence::load(store.clone(), config.replication.initial_role, clock.now())?;
        let link = PeerLink::new(config.replication.clone(), &config.appliance.site, fence, clock.clone());
        let app = Appliance {
            status: SharedStatus::new(ApplianceStatus::new(&config.appliance.site)),
            maintenance: MaintenanceSchedule::new(clock.clone()),
            config,
            clock,
            faults,
            store,
            mart,
            engine,
            sources,
            embedded,
            merger,
            key_references: crate::transform::schema::fact_key_references(),
            link,
            metrics: ApplianceMetrics::new(),
            cycles_observed: 0,
            last_publish: None,
        };
        app.refresh_status(None)?;
        Ok(app)
    }

    /// The staging store (shared with the HTTP server for snapshots and status).
    pub fn store(&self) -> Arc<Store> {
        self.store.clone()
    }

    /// What the HTTP server needs to serve this appliance.
    pub fn serve_state(&self) -> crate::serve::ServeState {
        let mut sites: Vec<String> = self.config.idbs.iter().map(|i| i.site.clone()).collect();
        sites.sort();
        sites.dedup();
        crate::serve::ServeState {
            store: self.store(),
            engine: self.engine(),
            status: self.status(),
            admin: crate::serve::admin::AdminAccess { sites, config_ignored: self.config.merge.ignore_sources.clone() },
            metrics: self.metrics(),
            tokens: self.tokens(),
            maintenance: self.maintenance.trigger(),
            fence: self.fence(),
            mart_root: self.mart.root().to_path_buf(),
            hashes: self.link.hashes(),
        }
    }

    /// The configured API tokens, shared by the HTTP, metrics and PostgreSQL-protocol listeners.
    pub fn tokens(&self) -> crate::serve::auth::TokenRegistry {
        crate::serve::auth::TokenRegistry::new(&self.config.tokens)
    }

    /// The query engine.
    pub fn engine(&self) -> QueryEngine {
        self.engine.clone()
    }

    /// The live status shown by `/v1/status`.
    pub fn status(&self) -> SharedStatus {
        self.status.clone()
    }

    /// The appliance's Prometheus metrics (set after every cycle, requests counted by the API router).
    pub fn metrics(&self) -> ApplianceMetrics {
        self.metrics.clone()
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

    /// Role and epoch (shared with the HTTP server, which promotes).
    pub fn fence(&self) -> SharedFence {
        self.link.fence().clone()
    }

    /// Runs one cycle: hear the peer; active: extract, merge + transform, publish (and checkpoint); standby:
    /// replicate. Then status, metrics and, when due, maintenance.
    pub async fn cycle(&mut self) -> Result<CycleReport, PipelineError> {
        let started = self.clock.elapsed();
        self.link.check_peer().await?;
        // A standby writes nothing: its mart comes from the active site.
        let fence = self.fence();
        let writing = fence.writing().await;
        let result = if fence.is_active() {
            if self.link.take_replicated() {
                self.take_over_replicated_mart().await?;
            }
            let result = self.cycle_inner().await;
            if let Ok(CycleReport { mart_version: Some(version), .. }) = &result {
                self.link.write_checkpoint(&self.store, self.mart.root(), *version);
            }
            result
        } else {
            drop(writing);
            self.link.replicate(self.mart.root(), &self.store).await;
            Ok(CycleReport::default())
        };
        let summary = CycleSummary {
            finished_at: self.clock.now(),
            duration_ms: self.clock.elapsed().saturating_sub(started).as_millis() as u64,
            error: result.as_ref().err().map(|e| crate::model::report(e)),
            rows_staged: result.as_ref().map_or(0, |r| r.rows_staged),
            groups_transformed: result.as_ref().map_or(0, |r| r.groups),
            partitions_published: result.as_ref().map_or(0, |r| r.partitions),
            extract_ms: result.as_ref().map_or(0, |r| r.extract_ms),
            transform_ms: result.as_ref().map_or(0, |r| r.transform_ms),
            publish_ms: result.as_ref().map_or(0, |r| r.publish_ms),
        };
        if let Err(e) = self.refresh_status(Some(summary)) {
            tracing::warn!(error = %crate::model::report(&e), "status refresh failed");
        }
        let status = self.status.get();
        self.metrics.observe_cycle(&status, self.clock.now());
        if status.last_cycle.as_ref().is_some_and(|c| c.partitions_published > 0) || self.cycles_observed == 0 {
            self.metrics.observe_mart_storage(self.mart.root());
        }
        self.cycles_observed += 1;
        // A standby mirrors the active site's maintenance when it replicates (see `replicate::sync`).
        if self.maintenance.take_due(self.config.maintenance.interval_secs, self.fence().is_active()) {
            if let Err(e) = self.maintain(self.clock.now()).await {
                tracing::error!(error = %crate::model::report(&e), "maintenance failed; it runs again after the next interval");
            }
        }
        result
    }

    /// Promoted after receiving files: picks up the replicated tables before writing on top of them, and resumes
    /// extraction from the active's staging checkpoint if one matches the mart.
    async fn take_over_replicated_mart(&mut self) -> Result<(), PipelineError> {
        self.mart.reopen().await?;
        // The mart is the other site's now: staging may lack some of its facts until extraction brings them again.
        self.store.forget_synced_partitions()?;
        // Downloads of an unfinished pass are of no use to an active site.
        let incoming = self.mart.root().join(crate::replicate::sync::INCOMING_DIR);
        if let Err(e) = std::fs::remove_dir_all(&incoming) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %incoming.display(), error = %e, "cannot remove unfinished downloads");
            }
        }
        if self.link.resume_from_checkpoint(&self.store, self.mart.root())? {
            self.merger.resume_from(self.store.merge_states()?);
        }
        Ok(())
    }

    /// Changes the maintenance settings; they apply from the next run.
    pub fn set_maintenance(&mut self, settings: crate::maintenance::MaintenanceSettings) {
        self.config.maintenance = settings;
    }

    /// Runs maintenance now (retention, catalog pruning, vacuum; see [`crate::maintenance`]) as of `now`, then
    /// publishes the removal of expired days. Called by [`Self::cycle`] every `maintenance.interval_secs`.
    pub async fn maintain(&mut self, now: i64) -> Result<crate::maintenance::MaintenanceReport, PipelineError> {
        let report = crate::maintenance::run(&self.store, &self.mart, &self.config.maintenance, now).await?;
        if report.expired_partitions > 0 {
            mart::publish_changes(&self.store, &self.mart, &self.faults).await?;
        }
        self.metrics.observe_mart_storage(self.mart.root());
        Ok(report)
    }

    /// Extract → merge + transform → publish.
    async fn cycle_inner(&mut self) -> Result<CycleReport, PipelineError> {
        let mut report = CycleReport::default();
        let phase = self.clock.elapsed();
        let settings = ExtractSettings {
            max_backoff: Duration::from_secs(self.config.extract.retry_max_secs),
            chunk_rows: self.config.extract.chunk_rows,
            max_chunks_per_cycle: self.config.extract.max_chunks_per_cycle,
            settle: Duration::from_secs(self.config.extract.settle_secs),
        };
        for (idb, state) in self.sources.iter_mut() {
            let r = extract::extract_idb(&self.store, idb, settings, state).await?;
            report.rows_staged += r.rows_staged;
            report.rows_quarantined += r.rows_quarantined;
            report.more |= r.backlog;
        }
        report.extract_ms = self.since(phase);
        // While a large backlog is being extracted, rows of the same interaction arrive over many cycles; transforming
        // and publishing every cycle would rewrite the same partitions again and again. Publish at most every
        // `backlog_publish_secs` then, and every cycle in steady state.
        let interval = Duration::from_secs(self.config.extract.backlog_publish_secs);
        let phase = self.clock.elapsed();
        if report.more && !self.clock.due(self.last_publish, interval) {
            return Ok(report);
        }
        self.last_publish = Some(self.clock.elapsed());
        // Queue aggregates depend on the thresholds: after an edit, every day is recomputed with the new ones (and
        // once, aggregates an earlier ccmart computed per day).
        let aggregates = aggregate::MartAggregates::new(&self.config.transform);
        let fingerprint = format!("buckets-1;{}", self.config.transform.aggregate_fingerprint());
        if self.store.reconcile_aggregates(&fingerprint, &aggregates)? {
            tracing::info!(
                "aggregates recomputed from the facts (new queue thresholds, or a store of an earlier ccmart)"
            );
        }
        self.advance_pairs()?;
        // Transform in bounded batches, walking past groups the merge holds back (they stay dirty); after-call
        // work found in sessions wakes calls, handled in a later batch.
        let mut cursor: Option<GroupKey> = None;
        let mut exhausted = true;
        for _ in 0..50 {
            let groups = self.store.dirty_groups_after(cursor.as_ref(), self.config.extract.transform_batch)?;
            let Some(last) = groups.last() else {
                exhausted = false;
                break;
            };
            cursor = Some(last.clone());
            let batch = transform_batch(&self.store, &self.merger, &groups, &self.config.transform)?;
            self.store.commit_group_outputs(&batch.processed, &batch.outputs, &self.key_references, &aggregates)?;
            report.groups += batch.processed.len();
            report.held += batch.held;
        }
        report.more |= exhausted;
        report.transform_ms = self.since(phase);
        let phase = self.clock.elapsed();
        let published = mart::publish_changes(&self.store, &self.mart, &self.faults).await?;
        report.partitions = published.partitions;
        report.mart_version = published.snapshot.map(|s| s.version);
        report.publish_ms = self.since(phase);
        Ok(report)
    }

    /// Milliseconds since `mark` (a value of [`Clock::elapsed`]).
    fn since(&self, mark: Duration) -> u64 {
        self.clock.elapsed().saturating_sub(mark).as_millis() as u64
    }

    /// Hands the session-control rows to the merge, which works out every pair's progress (waits, stuck IDBs,
    /// late-data cut-offs), and persists the pairs' state and slice decisions before any group is merged with them.
    fn advance_pairs(&mut self) -> Result<(), StagingError> {
        let loaded = self.store.load_groups(&[GroupKey::SessionControl])?;
        let mut rows: SessionControlRows = BTreeMap::new();
        for ((idb, table), r) in loaded.into_iter().next().map(|l| l.rows).unwrap_or_default() {
            rows.entry(idb).or_default().insert(table, r);
        }
        let mut ignored: BTreeSet<String> = self.config.merge.ignore_sources.iter().cloned().collect();
        ignored.extend(self.store.ignored_sites()?);
        let decisions = self.merger.advance(&rows, ignored, self.clock.now());
        self.store.save_merge(self.merger.pair_states(), &decisions.slices)
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
        let per_idb = self.store.quarantine_count_by_idb()?;
        let now = self.clock.now();
        self.status.update(|s| {
            s.idbs = self.sources.iter().map(|(_, state)| state.health.clone()).collect();
            for i in &mut s.idbs {
                i.rows_quarantined = per_idb.get(&i.idb).copied().unwrap_or(0);
            }
            s.mart_version = snapshot.as_ref().map(|s| s.version);
            s.newest_interaction_end_ts = snapshot.as_ref().and_then(|s| s.newest_end_ts);
            s.quarantined_rows = quarantined;
            s.data_clock = self.merger.data_clock();
            s.ignored_sites = self.merger.ignored_sites();
            let fence = self.link.fence().get();
            s.role = fence.role.as_str().into();
            s.epoch = fence.epoch;
            s.role_reason = fence.reason;
            s.peer = self.link.peer_status();
            s.replication = self.link.replication_status().map(|mut r| {
                r.lag_seconds = snapshot.as_ref().map(|v| now.saturating_sub(v.published_at));
                r
            });
            s.pairs = self.merger.pair_status();
            if let Some(c) = cycle {
                s.last_cycle = Some(c);
            }
        });
        Ok(())
    }
}

/// Feeds simulated collector output into IDBs: the simulator's per-site event streams go through the simulated
/// collectors of each HA pair ([`Collectors`], which apply the configured faults) into one sink per IDB, and the
/// embedded IDBs are made unreachable for this appliance while a fault says its network cannot reach them.
pub struct SimulationDriver {
    sim: Simulator,
    collectors: Collectors,
    sinks: Vec<Vec<IdbSink>>,
    readers: Vec<(EmbeddedIdb, String)>,
    appliance_site: String,
}

impl SimulationDriver {
    /// Builds sinks for the configured IDBs: embedded ones from `embedded`, PostgreSQL ones by connecting.
    /// Site `s` of the simulator (named `site{s+1}`) feeds the `s`-th HA pair (pairs in name order); its
    /// collectors are at that site.
    pub async fn new(config: &Config, sim: Simulator, embedded: &[(String, EmbeddedIdb)]) -> Result<Self, SourceError> {
        let pairs = config.pairs();
        let mut sinks = Vec::new();
        let mut placements = Vec::new();
        for (s, (_, members)) in pairs.iter().enumerate().take(sim.settings().sites) {
            let mut site_sinks = Vec::new();
            let mut site_places = Vec::new();
            for (idx, name) in members.iter().enumerate() {
                let gi = config.idbs.iter().position(|c| &c.name == name).unwrap_or(0);
                let c = &config.idbs[gi];
                let sink = if let Some((_, e)) = embedded.iter().find(|(n, _)| n == name) {
                    IdbSink::Embedded(e.clone())
                } else {
                    IdbSink::Postgres(Box::new(PostgresWriter::connect(name, &c.url, numbering(name, idx, gi)).await?))
                };
                site_sinks.push(sink);
                site_places.push(CollectorPlacement {
                    idb: name.clone(),
                    idb_site: c.site.clone(),
                    collector_site: site_name(s),
                    icon_dbid: 200 + gi as i64,
                });
            }
            sinks.push(site_sinks);
            placements.push(site_places);
        }
        let faults = config.simulator.as_ref().map(|s| s.faults.clone()).unwrap_or_default();
        let collectors = Collectors::new(sim.now(), placements, faults);
        let readers = embedded
            .iter()
            .filter_map(|(n, e)| config.idbs.iter().find(|c| &c.name == n).map(|c| (e.clone(), c.site.clone())))
            .collect();
        Ok(SimulationDriver { sim, collectors, sinks, readers, appliance_site: config.appliance.site.clone() })
    }

    /// The simulator (ground truth).
    pub fn simulator(&self) -> &Simulator {
        &self.sim
    }

    /// The simulated collectors (their faults are part of the ground truth).
    pub fn collectors(&self) -> &Collectors {
        &self.collectors
    }

    async fn write(
        &mut self,
        from: i64,
        t: i64,
        events: Vec<Vec<crate::source::IdbWrite>>,
    ) -> Result<usize, SourceError> {
        let n = events.iter().map(Vec::len).sum();
        let per_site = self.collectors.step(from, t, events);
        for (sinks, per_idb) in self.sinks.iter_mut().zip(per_site) {
            for (sink, writes) in sinks.iter_mut().zip(per_idb) {
                if !writes.is_empty() {
                    sink.apply(&writes).await?;
                }
            }
        }
        for (idb, site) in &self.readers {
            idb.set_reachable(self.collectors.readable(site, &self.appliance_site, t));
        }
        Ok(n)
    }

    /// Simulates up to `until` in steps of `step_secs` (one IDB transaction per step and collector); returns the
    /// number of events generated.
    pub async fn advance(&mut self, from: i64, until: i64, step_secs: i64) -> Result<usize, SourceError> {
        let mut t = from;
        let mut n = 0;
        while t < until {
            let previous = t;
            t = (t + step_secs.max(1)).min(until);
            let w = self.sim.advance_to(t);
            n += self.write(previous, t, w).await?;
        }
        Ok(n)
    }

    /// Ends the simulation at `at` (calls finish, agents log out) and writes the rest, with a last heartbeat
    /// after the last event.
    pub async fn finish(&mut self, at: i64) -> Result<usize, SourceError> {
        let w = self.sim.finish(at);
        let end = self.sim.now().max(at) + 1;
        self.write(at, end, w).await
    }
}
