//! The pipeline driver: the one place that knows every stage. It owns the cycle — extract every IDB, merge and
//! transform what changed, publish a mart version — and the simulator feeding embedded IDBs.

use crate::config::Config;
use crate::extract::{self, ExtractSettings, IdbState};
use crate::fault::FaultInjector;
use crate::mart::{self, Mart};
use crate::merge::{
    merge_group, pair_progress, slice_decisions, DataQuality, MergedGroup, PairProgress, PairState, SessionTimeline,
};
use crate::model::{Day, GroupKey, GroupKind};
use crate::query::QueryEngine;
use crate::replicate::client::{self, PeerClient};
use crate::serve::metrics::ApplianceMetrics;
use crate::serve::{ApplianceStatus, CycleSummary, PairStatus, PairWait, SharedStatus};
use crate::sim::collector::{site_name, CollectorPlacement, Collectors};
use crate::sim::Simulator;
use crate::source::embedded::EmbeddedIdb;
use crate::source::postgres::{PostgresIdb, PostgresWriter};
use crate::source::{Idb, IdbSink, RowNumbering, SourceError};
use crate::staging::{StagingError, Store};
use crate::transform::aggregate::{agent_aggregates, queue_aggregates};
use crate::transform::schema::{
    DATE_TIME, INTERACTION_RESOURCE_FACT, MEDIATION_SEGMENT_FACT, SM_RES_STATE_FACT, SM_RES_STATE_REASON_FACT,
};
use crate::transform::{self, transform_group};
use std::collections::{BTreeMap, BTreeSet};
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

/// Directory of staging checkpoints inside the mart directory.
pub const CHECKPOINT_DIR: &str = "_ccmart_checkpoint";

/// The staging checkpoints in `dir`: (mart version, path).
fn checkpoints(dir: &std::path::Path) -> Vec<(u64, std::path::PathBuf)> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let v = name.strip_prefix("staging-v")?.strip_suffix(".redb")?.parse().ok()?;
            Some((v, e.path()))
        })
        .collect()
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

/// How far back (data time) slice decisions are recomputed each cycle; older ones stay as last decided.
const DECISION_WINDOW_SECS: i64 = 2 * 86_400;

/// One running appliance: staging, mart, query engine, IDB readers and status.
pub struct Appliance {
    config: Config,
    store: Arc<Store>,
    mart: Mart,
    engine: QueryEngine,
    idbs: Vec<Idb>,
    health: Vec<IdbState>,
    preference: Vec<String>,
    /// IDB → its pair.
    pair_of: BTreeMap<String, String>,
    /// Pair → (IDB, site) in configured order.
    pair_members: BTreeMap<String, Vec<(String, String)>>,
    pair_states: BTreeMap<String, PairState>,
    progress: BTreeMap<String, PairProgress>,
    timelines: BTreeMap<String, SessionTimeline>,
    data_clock: Option<i64>,
    ignored_sites: BTreeSet<String>,
    /// (pair, IDB) → wall-clock time it was first seen behind.
    waiting_since: BTreeMap<(String, String), i64>,
    embedded: Vec<(String, EmbeddedIdb)>,
    faults: FaultInjector,
    status: SharedStatus,
    metrics: ApplianceMetrics,
    /// Cycles whose metrics were recorded (mart storage is measured on the first and whenever a cycle publishes).
    cycles_observed: u64,
    /// When maintenance last ran (it first runs one interval after the start).
    last_maintenance: Instant,
    /// Set by `POST /v1/admin/maintenance`.
    maintenance_trigger: crate::serve::admin::MaintenanceTrigger,
    /// Role and epoch: only an active appliance extracts and publishes.
    fence: crate::replicate::fencing::SharedFence,
    /// The other site, as last checked.
    peer: Option<crate::serve::PeerStatus>,
    /// File hashes shared by replication (manifests served, files received).
    hashes: crate::replicate::sync::HashCache,
    /// True while the mart handles may be stale (a standby receiving files); reloaded on promotion.
    mart_replicated: bool,
    /// Standby: replication progress.
    replication: Option<crate::serve::ReplicationStatus>,
    last_publish: Option<Instant>,
    /// When the last staging checkpoint was written (active with a peer).
    last_checkpoint: Option<Instant>,
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
        let health = config.idbs.iter().map(|c| IdbState::new(&c.name)).collect();
        let preference = config.idbs.iter().map(|c| c.name.clone()).collect();
        let pair_of = config.idbs.iter().map(|c| (c.name.clone(), c.pair.clone())).collect();
        let mut pair_members: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for c in &config.idbs {
            pair_members.entry(c.pair.clone()).or_default().push((c.name.clone(), c.site.clone()));
        }
        let pair_states = store.merge_states()?;
        let status = SharedStatus::new(ApplianceStatus::new(&config.appliance.site));
        let fence = crate::replicate::fencing::SharedFence::load(
            store.clone(),
            config.replication.initial_role,
            chrono::Utc::now().timestamp(),
        )?;
        let app = Appliance {
            config,
            store,
            mart,
            engine,
            idbs,
            health,
            preference,
            pair_of,
            pair_members,
            pair_states,
            progress: BTreeMap::new(),
            timelines: BTreeMap::new(),
            data_clock: None,
            ignored_sites: BTreeSet::new(),
            waiting_since: BTreeMap::new(),
            embedded,
            faults,
            status,
            metrics: ApplianceMetrics::new(),
            cycles_observed: 0,
            last_maintenance: Instant::now(),
            maintenance_trigger: Default::default(),
            fence,
            peer: None,
            hashes: Default::default(),
            mart_replicated: false,
            replication: None,
            last_publish: None,
            last_checkpoint: None,
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
            maintenance: self.maintenance_trigger.clone(),
            fence: self.fence.clone(),
            mart_root: self.mart.root().to_path_buf(),
            hashes: self.hashes.clone(),
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

    /// Runs one cycle: extract, merge + transform, publish.
    pub async fn cycle(&mut self) -> Result<CycleReport, PipelineError> {
        let started = Instant::now();
        self.check_peer().await?;
        // A standby writes nothing: its mart comes from the active site.
        let fence = self.fence.clone();
        let writing = fence.writing().await;
        let result = if self.fence.is_active() {
            if self.mart_replicated {
                // Promoted after receiving files: pick up the replicated tables before writing on top of them,
                // and resume extraction from the active's staging checkpoint if one matches the mart.
                self.mart = Mart::open(self.mart.root()).await?;
                self.mart_replicated = false;
                // Downloads of an unfinished pass are of no use to an active site.
                let incoming = self.mart.root().join(crate::replicate::sync::INCOMING_DIR);
                if let Err(e) = std::fs::remove_dir_all(&incoming) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(path = %incoming.display(), error = %e, "cannot remove unfinished downloads");
                    }
                }
                self.resume_from_checkpoint()?;
            }
            let result = self.cycle_inner().await;
            if let Ok(r) = &result {
                if r.mart_version.is_some() {
                    self.write_checkpoint(r.mart_version);
                }
            }
            result
        } else {
            drop(writing);
            self.replicate().await;
            Ok(CycleReport::default())
        };
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
        let status = self.status.get();
        self.metrics.observe_cycle(&status, chrono::Utc::now().timestamp());
        if status.last_cycle.as_ref().is_some_and(|c| c.partitions_published > 0) || self.cycles_observed == 0 {
            self.metrics.observe_mart_storage(self.mart.root());
        }
        self.cycles_observed += 1;
        let every = self.config.maintenance.interval_secs;
        let due = every > 0 && self.last_maintenance.elapsed() >= Duration::from_secs(every);
        // A standby mirrors the active site's maintenance when it replicates (see `replicate::sync`).
        if (self.maintenance_trigger.take() || due) && self.fence.is_active() {
            self.last_maintenance = Instant::now();
            if let Err(e) = self.maintain(chrono::Utc::now().timestamp()).await {
                tracing::error!(error = %e, "maintenance failed; it runs again after the next interval");
            }
        }
        result
    }

    /// Role and epoch (shared with the HTTP server, which promotes).
    pub fn fence(&self) -> crate::replicate::fencing::SharedFence {
        self.fence.clone()
    }

    /// Where staging checkpoints live: inside the mart directory, so replication, verification, mirroring and
    /// bootstrap carry them like any mart file. One file per mart version (`staging-v<N>.redb`).
    fn checkpoint_dir(&self) -> std::path::PathBuf {
        self.mart.root().join(CHECKPOINT_DIR)
    }

    /// Active with a peer: after publishing `version`, writes a staging checkpoint (at most every
    /// `checkpoint_interval_secs`) and keeps the newest two. A failure is logged; it never fails the cycle.
    fn write_checkpoint(&mut self, version: Option<u64>) {
        let Some(version) = version else { return };
        if self.config.replication.peer_url.is_none() {
            return;
        }
        let every = Duration::from_secs(self.config.replication.checkpoint_interval_secs);
        if self.last_checkpoint.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        let dir = self.checkpoint_dir();
        let result = std::fs::create_dir_all(&dir).map_err(|e| e.to_string()).and_then(|_| {
            self.store.write_checkpoint(&dir.join(format!("staging-v{version}.redb"))).map_err(|e| e.to_string())
        });
        match result {
            Ok(()) => {
                self.last_checkpoint = Some(Instant::now());
                let mut all = checkpoints(&dir);
                all.sort();
                for (_, old) in all.iter().rev().skip(2) {
                    let _ = std::fs::remove_file(old);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot write the staging checkpoint; the standby keeps the previous one")
            }
        }
    }

    /// On promotion: imports the newest staging checkpoint not newer than the mart this site serves (a newer one
    /// would claim partitions the mart does not have yet). Without one, extraction starts from this site's own
    /// staging — for a standby that never extracted, from the beginning of what the IDBs hold.
    fn resume_from_checkpoint(&mut self) -> Result<(), PipelineError> {
        let served = self.store.latest_snapshot()?.map_or(0, |s| s.version);
        let best = checkpoints(&self.checkpoint_dir()).into_iter().filter(|(v, _)| *v <= served).max();
        let Some((version, path)) = best else {
            tracing::warn!(
                "no staging checkpoint matches the replicated mart; extraction starts from this site's staging"
            );
            return Ok(());
        };
        self.store.import_checkpoint(&path)?;
        self.pair_states = self.store.merge_states()?;
        tracing::warn!(
            checkpoint_version = version,
            mart_version = served,
            "promoted: resuming extraction from the staging checkpoint"
        );
        Ok(())
    }

    /// The peer site at `url`, with the token and CA of `[replication]`.
    fn peer_endpoint(&self, url: String) -> crate::replicate::Endpoint {
        crate::replicate::Endpoint {
            url,
            token: self.config.replication.peer_token.clone(),
            ca: self.config.replication.peer_ca.clone(),
        }
    }

    /// Why the peer may not be contacted with this configuration (see
    /// [`crate::replicate::fencing::ReplicationSettings::problem`]); `check-config` refuses such a file, but an
    /// appliance opened from a config built in code gets here too.
    fn peer_config_problem(&self) -> Option<String> {
        self.config
            .replication
            .problem(&self.config.appliance.site)
            .map(|(key, message)| format!("config key `{key}`: {message}; the peer is not contacted"))
    }

    /// Asks the peer site (if configured) for its role and epoch and obeys a higher epoch or a split-brain at once,
    /// before this cycle writes anything. An unreachable peer changes nothing: this site keeps its role. Neither
    /// does an answer from another site than `replication.peer_site` or with an epoch out of range: it is refused,
    /// logged and shown in the status.
    async fn check_peer(&mut self) -> Result<(), PipelineError> {
        let Some(url) = self.config.replication.peer_url.clone() else { return Ok(()) };
        // An unreachable peer, an error answer or one that is not a fence: reported, never obeyed.
        let answer = match self.peer_config_problem() {
            Some(problem) => Err(problem),
            None => match PeerClient::new(&self.peer_endpoint(url.clone()), client::FENCE_TIMEOUT) {
                Ok(peer) => peer.fence().await.map_err(|e| e.report()),
                Err(e) => Err(e.report()),
            },
        };
        let now = chrono::Utc::now().timestamp();
        let mut status = crate::serve::PeerStatus { url, checked_at: now, ..Default::default() };
        let expected = self.config.replication.peer_site.clone().unwrap_or_default();
        match answer {
            Ok(peer) => match crate::replicate::fencing::check_peer_fence(&peer, &expected) {
                Ok(()) => {
                    self.fence.hear(&peer, now)?;
                    status.reachable = true;
                    status.site = Some(peer.site);
                    status.role = Some(peer.fence.role.as_str().into());
                    status.epoch = Some(peer.fence.epoch);
                }
                Err(e) => {
                    tracing::error!(url = status.url, error = %e, "peer fence answer refused");
                    status.reachable = true;
                    status.last_error = Some(e);
                }
            },
            Err(e) => status.last_error = Some(e),
        }
        self.peer = Some(status);
        Ok(())
    }

    /// Standby: copies the active site's new mart files and versions (see [`crate::replicate::sync`]), believing
    /// only a manifest of `replication.peer_site` at an epoch at least this site's. Failures are reported in the
    /// status and retried next cycle.
    async fn replicate(&mut self) {
        let Some(url) = self.config.replication.peer_url.clone() else { return };
        let peer = self.peer_endpoint(url);
        let result = match self.peer_config_problem() {
            Some(problem) => Err(problem),
            None => {
                let trust = crate::replicate::sync::PeerTrust {
                    site: self.config.replication.peer_site.clone().unwrap_or_default(),
                    epoch: self.fence.get().epoch,
                };
                let pass = crate::replicate::sync::pull(&peer, &trust, self.mart.root(), &self.store, &self.hashes);
                pass.await.map_err(|e| {
                    if e.is_refusal() {
                        tracing::error!(error = %e, "the peer's manifest is refused; nothing changed here");
                    }
                    e.to_string()
                })
            }
        };
        self.mart_replicated = true;
        let now = chrono::Utc::now().timestamp();
        let r = self.replication.get_or_insert_with(Default::default);
        match result {
            Ok(report) => {
                r.last_sync = Some(now);
                r.versions_behind =
                    report.peer_mart_version.unwrap_or(0).saturating_sub(report.mart_version.unwrap_or(0));
                r.files_received = r.files_received.saturating_add(report.files as u64);
                if report.files_removed > 0 || report.versions_pruned > 0 {
                    tracing::info!(
                        files_removed = report.files_removed,
                        versions_pruned = report.versions_pruned,
                        "mirrored the active site's maintenance"
                    );
                }
                if report.peer_behind {
                    tracing::info!(
                        peer_mart_version = ?report.peer_mart_version,
                        mart_version = ?report.mart_version,
                        "the peer serves an older mart version than this site: keeping this site's mart until it is ahead"
                    );
                }
                r.bytes_received = r.bytes_received.saturating_add(report.bytes);
                r.last_error = None;
                if report.versions > 0 {
                    tracing::info!(files = report.files, bytes = report.bytes, mart_version = ?report.mart_version, "replicated");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "replication pass failed; retrying next cycle");
                r.last_error = Some(e);
            }
        }
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

    async fn cycle_inner(&mut self) -> Result<CycleReport, PipelineError> {
        let mut report = CycleReport::default();
        let phase = Instant::now();
        let settings = ExtractSettings {
            max_backoff: Duration::from_secs(self.config.extract.retry_max_secs),
            chunk_rows: self.config.extract.chunk_rows,
            max_chunks_per_cycle: self.config.extract.max_chunks_per_cycle,
            settle: Duration::from_secs(self.config.extract.settle_secs),
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
        // Queue aggregates depend on the thresholds: after an edit, every day is recomputed with the new ones.
        let fingerprint = self.config.transform.aggregate_fingerprint();
        let woken =
            self.store.reconcile_settings("queue aggregate thresholds", &fingerprint, GroupKind::QueueAggregateDay)?;
        if woken > 0 {
            tracing::info!(days = woken, "queue thresholds changed: recomputing the queue aggregates of every day");
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
            let mut outputs = Vec::with_capacity(groups.len());
            let mut processed = Vec::with_capacity(groups.len());
            let mut days = BTreeSet::new();
            for (g, loaded) in groups.iter().zip(self.store.load_groups(&groups)?) {
                match g {
                    GroupKey::SessionControl => {
                        processed.push(g.clone());
                        continue;
                    }
                    GroupKey::AgentAggregateDay(day) => {
                        let legs = self.facts_of_day_and_before(INTERACTION_RESOURCE_FACT.name, *day)?;
                        let states = self.facts_of_day_and_before(SM_RES_STATE_FACT.name, *day)?;
                        outputs.push(agent_aggregates(*day, &legs, &states));
                        processed.push(g.clone());
                        continue;
                    }
                    GroupKey::QueueAggregateDay(day) => {
                        let segments = self.facts_of_day_and_before(MEDIATION_SEGMENT_FACT.name, *day)?;
                        outputs.push(queue_aggregates(*day, &segments, &self.config.transform));
                        processed.push(g.clone());
                        continue;
                    }
                    _ => {}
                }
                let Some(merged) = self.merge(g, loaded.rows) else {
                    report.held += 1;
                    continue;
                };
                let out = transform_group(g, &merged, &loaded.after_call_work, &self.config.transform);
                days.extend(out.facts.iter().filter(|(a, _)| !a.day.is_empty()).map(|(a, _)| a.day.clone()));
                outputs.push(out);
                processed.push(g.clone());
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
                let Ok(day) = day.parse::<Day>() else {
                    tracing::error!(day, "a fact's partition is not a day; no calendar rows for it");
                    continue;
                };
                let calendar = transform::calendar_day(day, self.config.transform.tz());
                let exists = match calendar.facts.first() {
                    Some((a, row)) => self.store.fact(DATE_TIME.name, &day.to_string(), a.key)?.as_ref() == Some(row),
                    None => true,
                };
                if !exists {
                    outputs.push(calendar);
                }
            }
            self.store.commit_group_outputs(&processed, &outputs, &crate::transform::aggregate::dependents)?;
            report.groups += processed.len();
        }
        report.more |= exhausted;
        report.transform_ms = phase.elapsed().as_millis() as u64;
        let phase = Instant::now();
        let published = mart::publish_changes(&self.store, &self.mart, &self.faults).await?;
        report.partitions = published.partitions;
        report.mart_version = published.snapshot.map(|s| s.version);
        report.publish_ms = phase.elapsed().as_millis() as u64;
        Ok(report)
    }

    /// Reads the session-control timelines, works out every pair's progress (waits, stuck IDBs, late-data
    /// cut-offs) and persists the pairs' state and slice decisions before any group is merged with them.
    fn advance_pairs(&mut self) -> Result<(), StagingError> {
        let loaded = self.store.load_groups(&[GroupKey::SessionControl])?;
        let mut per_idb: BTreeMap<String, BTreeMap<String, Vec<crate::staging::StagedRow>>> = BTreeMap::new();
        for ((idb, table), rows) in loaded.into_iter().next().map(|l| l.rows).unwrap_or_default() {
            per_idb.entry(idb).or_default().insert(table, rows);
        }
        self.timelines = per_idb.iter().map(|(i, t)| (i.clone(), SessionTimeline::from_rows(t))).collect();
        self.data_clock = self.timelines.values().filter_map(|t| t.known_through).max();
        let mut ignored: BTreeSet<String> = self.config.merge.ignore_sources.iter().cloned().collect();
        ignored.extend(self.store.ignored_sites()?);
        let mut decisions = Vec::new();
        let now = chrono::Utc::now().timestamp();
        let mut still_waiting = BTreeSet::new();
        for (pair, members) in &self.pair_members {
            let state = self.pair_states.entry(pair.clone()).or_default();
            let p = pair_progress(pair, members, &self.timelines, &ignored, self.data_clock, &self.config.merge, state);
            if let Some(clock) = self.data_clock {
                let first = members
                    .iter()
                    .filter_map(|(m, _)| self.timelines.get(m).and_then(|t| t.covered.first()).map(|c| c.0))
                    .min();
                let from = first.unwrap_or(clock).max(clock - DECISION_WINDOW_SECS);
                for d in slice_decisions(&p, &self.timelines, state, &self.config.merge, from, clock) {
                    decisions.push((pair.clone(), d.slice_start, d));
                }
            }
            for w in &p.waits {
                let key = (pair.clone(), w.idb.clone());
                self.waiting_since.entry(key.clone()).or_insert(now);
                still_waiting.insert(key);
            }
            self.progress.insert(pair.clone(), p);
        }
        self.waiting_since.retain(|k, _| still_waiting.contains(k));
        self.ignored_sites = ignored;
        self.store.save_merge(&self.pair_states, &decisions)
    }

    /// Merges a group, or returns `None` while the merge holds it back: its pair is not ready past the group's
    /// last event, or it is an interaction the source has not closed yet (and is not overdue as stuck).
    fn merge(&self, g: &GroupKey, mut rows: crate::merge::GroupRows) -> Option<MergedGroup> {
        if matches!(g, GroupKey::Configuration(_)) {
            return Some(merge_group(g, rows, &self.preference, &self.timelines));
        }
        let pair = rows.keys().find_map(|(idb, _)| self.pair_of.get(idb)).cloned();
        let progress = pair.as_ref().and_then(|p| self.progress.get(p));
        if let Some(state) = pair.as_ref().and_then(|p| self.pair_states.get(p)) {
            let mut starts: BTreeMap<String, i64> = BTreeMap::new();
            for ((idb, table), rs) in &rows {
                if let Some(s) = crate::merge::rows_span([(table.as_str(), rs.as_slice())]).map(|s| s.0) {
                    let e = starts.entry(idb.clone()).or_insert(s);
                    *e = (*e).min(s);
                }
            }
            rows.retain(|(idb, _), _| !starts.get(idb).is_some_and(|s| state.drops(idb, *s)));
        }
        let span = crate::merge::copy_span_of(&rows);
        let members: Vec<String> = progress.map(|p| p.members.clone()).unwrap_or_else(|| self.preference.clone());
        let mut merged = merge_group(g, rows, &members, &self.timelines);
        let Some((start, end)) = span else { return Some(merged) };
        let ready = progress.and_then(|p| p.ready_through);
        if ready.is_some_and(|r| end >= r) {
            return None;
        }
        if matches!(g, GroupKey::Interaction(_)) && !merged.is_closed() {
            let max = self.config.merge.max_call_duration_secs;
            let overdue = self.data_clock.is_some_and(|c| c - start > max) && ready.is_none_or(|r| r > start + max);
            if !overdue {
                return None;
            }
            merged.close_stuck_at = Some(merged.span().map_or(end, |s| s.1));
            merged.quality = DataQuality::Stuck;
        }
        Some(merged)
    }

    /// Staged fact rows of `table` in the partitions of `day` and the day before: what an aggregate of `day` reads,
    /// since queue stays, legs and state periods can begin or run past midnight of their partition's day.
    fn facts_of_day_and_before(&self, table: &str, day: Day) -> Result<Vec<crate::staging::FactRow>, StagingError> {
        let mut out = Vec::new();
        for d in day.previous().into_iter().chain([day]) {
            out.extend(self.store.partition_facts(table, &d.to_string())?.into_iter().map(|(_, r)| r));
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
        let per_idb = self.store.quarantine_count_by_idb()?;
        self.status.update(|s| {
            s.idbs = self.health.iter().map(|h| h.health.clone()).collect();
            for i in &mut s.idbs {
                i.rows_quarantined = per_idb.get(&i.idb).copied().unwrap_or(0);
            }
            s.mart_version = snapshot.as_ref().map(|s| s.version);
            s.newest_interaction_end_ts = snapshot.as_ref().and_then(|s| s.newest_end_ts);
            s.quarantined_rows = quarantined;
            s.data_clock = self.data_clock;
            s.ignored_sites = self.ignored_sites.iter().cloned().collect();
            let fence = self.fence.get();
            s.role = fence.role.as_str().into();
            s.epoch = fence.epoch;
            s.role_reason = fence.reason;
            s.peer = self.peer.clone();
            s.replication = self.replication.clone().map(|mut r| {
                r.lag_seconds =
                    snapshot.as_ref().map(|v| chrono::Utc::now().timestamp().saturating_sub(v.published_at));
                r
            });
            s.pairs = self
                .progress
                .values()
                .map(|p| PairStatus {
                    pair: p.pair.clone(),
                    members: p.members.clone(),
                    ready_through: p.ready_through,
                    waits: p
                        .waits
                        .iter()
                        .map(|w| PairWait {
                            idb: w.idb.clone(),
                            behind_since: w.since,
                            behind_secs: w.behind_secs,
                            stuck: w.stuck,
                            waiting_since: self
                                .waiting_since
                                .get(&(p.pair.clone(), w.idb.clone()))
                                .copied()
                                .unwrap_or_default(),
                        })
                        .collect(),
                    ignored: p.ignored.clone(),
                })
                .collect();
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
