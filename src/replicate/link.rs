//! This site's link to the other site, owned by the replication stage: the fence (role and epoch), the peer as
//! last checked, the standby's copy from the active site and the staging checkpoints that let a promoted standby
//! resume extraction. The pipeline calls it at fixed points of its cycle; everything it knows about the peer lives
//! here.

use super::client::{self, PeerClient};
use super::fencing::{check_peer_fence, ReplicationSettings, SharedFence};
use super::sync::{self, HashCache, PeerTrust};
use super::Endpoint;
use crate::clock::Clock;
use crate::model::status::{PeerStatus, ReplicationStatus};
use crate::staging::{StagingError, Store};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Directory of staging checkpoints inside the mart directory.
pub const CHECKPOINT_DIR: &str = "_ccmart_checkpoint";

/// The staging checkpoints in `dir`: (mart version, path), one file per mart version (`staging-v<N>.redb`).
pub fn checkpoints(dir: &Path) -> Vec<(u64, PathBuf)> {
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

/// The link to the other site.
#[derive(Debug)]
pub struct PeerLink {
    settings: ReplicationSettings,
    own_site: String,
    fence: SharedFence,
    clock: Clock,
    /// The other site, as last checked.
    peer: Option<PeerStatus>,
    /// File hashes shared by replication (manifests served, files received).
    hashes: HashCache,
    /// True while the mart handles may be stale (a standby received files); the pipeline reopens its mart on
    /// promotion.
    mart_replicated: bool,
    /// Standby: replication progress.
    replication: Option<ReplicationStatus>,
    /// When the last staging checkpoint was written ([`Clock::elapsed`]).
    last_checkpoint: Option<Duration>,
}

impl PeerLink {
    /// The link of the site `own_site` with `settings`, holding `fence`.
    pub fn new(settings: ReplicationSettings, own_site: &str, fence: SharedFence, clock: Clock) -> Self {
        PeerLink {
            settings,
            own_site: own_site.to_string(),
            fence,
            clock,
            peer: None,
            hashes: HashCache::default(),
            mart_replicated: false,
            replication: None,
            last_checkpoint: None,
        }
    }

    /// Role and epoch (shared with the HTTP server, which promotes).
    pub fn fence(&self) -> &SharedFence {
        &self.fence
    }

    /// The file hashes replication shares with the server's manifest.
    pub fn hashes(&self) -> HashCache {
        self.hashes.clone()
    }

    /// The peer as last checked.
    pub fn peer_status(&self) -> Option<PeerStatus> {
        self.peer.clone()
    }

    /// Standby: how the copy goes.
    pub fn replication_status(&self) -> Option<ReplicationStatus> {
        self.replication.clone()
    }

    /// True once after a standby received files: the mart handles must be reopened before writing.
    pub fn take_replicated(&mut self) -> bool {
        std::mem::take(&mut self.mart_replicated)
    }

    /// The peer site at `url`, with the token and CA of `[replication]`.
    fn endpoint(&self, url: String) -> Endpoint {
        Endpoint { url, token: self.settings.peer_token.clone(), ca: self.settings.peer_ca.clone() }
    }

    /// Why the peer may not be contacted with this configuration (see [`ReplicationSettings::problem`]);
    /// `check-config` refuses such a file, but an appliance opened from a config built in code gets here too.
    fn config_problem(&self) -> Option<String> {
        self.settings
            .problem(&self.own_site)
            .map(|(key, message)| format!("config key `{key}`: {message}; the peer is not contacted"))
    }

    /// Asks the peer site (if configured) for its role and epoch and obeys a higher epoch or a split-brain at once,
    /// before this cycle writes anything. An unreachable peer changes nothing: this site keeps its role. Neither
    /// does an answer from another site than `replication.peer_site` or with an epoch out of range: it is refused,
    /// logged and shown in the status.
    pub async fn check_peer(&mut self) -> Result<(), StagingError> {
        let Some(url) = self.settings.peer_url.clone() else { return Ok(()) };
        // An unreachable peer, an error answer or one that is not a fence: reported, never obeyed.
        let answer = match self.config_problem() {
            Some(problem) => Err(problem),
            None => match PeerClient::new(&self.endpoint(url.clone()), client::FENCE_TIMEOUT) {
                Ok(peer) => peer.fence().await.map_err(|e| e.report()),
                Err(e) => Err(e.report()),
            },
        };
        let now = self.clock.now();
        let mut status = PeerStatus { url, checked_at: now, ..Default::default() };
        let expected = self.settings.peer_site.clone().unwrap_or_default();
        match answer {
            Ok(peer) => match check_peer_fence(&peer, &expected) {
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

    /// Standby: copies the active site's new mart files and versions (see [`sync`]) into `mart_root`, believing
    /// only a manifest of `replication.peer_site` at an epoch at least this site's. Failures are reported in the
    /// status and retried next cycle.
    pub async fn replicate(&mut self, mart_root: &Path, store: &Store) {
        let Some(url) = self.settings.peer_url.clone() else { return };
        let peer = self.endpoint(url);
        let result = match self.config_problem() {
            Some(problem) => Err(problem),
            None => {
                let trust = PeerTrust {
                    site: self.settings.peer_site.clone().unwrap_or_default(),
                    epoch: self.fence.get().epoch,
                };
                sync::pull(&peer, &trust, mart_root, store, &self.hashes).await.map_err(|e| {
                    if e.is_refusal() {
                        tracing::error!(error = %e, "the peer's manifest is refused; nothing changed here");
                    }
                    crate::model::report(&e)
                })
            }
        };
        self.mart_replicated = true;
        let now = self.clock.now();
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

    /// Active with a peer: after publishing `version`, writes a staging checkpoint into the mart directory (so
    /// replication, verification, mirroring and bootstrap carry it like any mart file), at most every
    /// `checkpoint_interval_secs`, keeping the newest two. A failure is logged; it never fails the cycle.
    pub fn write_checkpoint(&mut self, store: &Store, mart_root: &Path, version: u64) {
        if self.settings.peer_url.is_none() {
            return;
        }
        let every = Duration::from_secs(self.settings.checkpoint_interval_secs);
        if !self.clock.due(self.last_checkpoint, every) {
            return;
        }
        let dir = mart_root.join(CHECKPOINT_DIR);
        let result = std::fs::create_dir_all(&dir).map_err(|e| e.to_string()).and_then(|_| {
            store.write_checkpoint(&dir.join(format!("staging-v{version}.redb"))).map_err(|e| crate::model::report(&e))
        });
        match result {
            Ok(()) => {
                self.last_checkpoint = Some(self.clock.elapsed());
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

    /// On promotion: imports into `store` the newest staging checkpoint not newer than the mart this site serves
    /// (a newer one would claim partitions the mart does not have yet), and says whether it did. Without one,
    /// extraction starts from this site's own staging — for a standby that never extracted, from the beginning of
    /// what the IDBs hold.
    pub fn resume_from_checkpoint(&self, store: &Store, mart_root: &Path) -> Result<bool, StagingError> {
        let served = store.latest_snapshot()?.map_or(0, |s| s.version);
        let best = checkpoints(&mart_root.join(CHECKPOINT_DIR)).into_iter().filter(|(v, _)| *v <= served).max();
        let Some((version, path)) = best else {
            tracing::warn!(
                "no staging checkpoint matches the replicated mart; extraction starts from this site's staging"
            );
            return Ok(false);
        };
        store.import_checkpoint(&path)?;
        tracing::warn!(
            checkpoint_version = version,
            mart_version = served,
            "promoted: resuming extraction from the staging checkpoint"
        );
        Ok(true)
    }
}
