//! Snapshot replication, standby side: copy the active site's mart files and catalog.
//!
//! The active site lists every file under its mart directory with its size and BLAKE3 hash, and the mart versions
//! it serves ([`Manifest`]). The standby downloads what it lacks or holds differently, verifying each file's hash
//! while it streams (a file that does not verify is discarded and fetched again next time, never used), then
//! records the new mart versions in its catalog, oldest first — only after every file is in place, so a query on
//! the standby never sees a version whose files are incomplete. Delta data files are immutable and uniquely named,
//! so a transfer that stops halfway resumes with only what is still missing.

use crate::staging::{MartSnapshot, StagingError, Store};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use thiserror::Error;
use tokio::io::AsyncWriteExt;

/// Files downloaded at once by a replication pass or a bootstrap.
const PARALLEL_FILES: usize = 8;

/// One file of the active site's mart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ManifestFile {
    /// Path relative to the mart directory, `/`-separated.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// BLAKE3 of the content, hex.
    pub blake3: String,
}

/// What the active site serves: its files and the mart versions they make up.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Manifest {
    /// Site, role and epoch of the sender.
    pub fence: super::fencing::PeerFence,
    /// Queryable mart versions, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub versions: Vec<MartSnapshot>,
    /// Every file under the mart directory.
    pub files: Vec<ManifestFile>,
}

/// Why a replication pass stopped (it is retried at the next cycle; nothing half-copied is used).
#[derive(Debug, Error)]
pub enum SyncError {
    /// The active site could not be reached or refused.
    #[error("peer {url}: {message}")]
    Peer {
        /// Where.
        url: String,
        /// What happened.
        message: String,
    },
    /// A file arrived with other content than announced.
    #[error("{path}: received content does not match its BLAKE3 ({expected}); discarded, fetched again next time")]
    Checksum {
        /// The file.
        path: String,
        /// Announced hash.
        expected: String,
    },
    /// The manifest named a path outside the mart directory.
    #[error("refusing manifest path '{0}': not a plain relative path")]
    BadPath(String),
    /// Local disk.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What happened.
        message: String,
    },
    /// Staging.
    #[error(transparent)]
    Staging(#[from] StagingError),
}

/// What one pass did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncReport {
    /// Files downloaded.
    pub files: usize,
    /// Bytes downloaded.
    pub bytes: u64,
    /// Mart versions applied.
    pub versions: usize,
    /// The newest mart version now served, if any.
    pub mart_version: Option<u64>,
    /// The newest mart version the active site serves.
    pub peer_mart_version: Option<u64>,
    /// Local files removed because the active site no longer has them (its vacuum).
    pub files_removed: usize,
    /// Mart versions forgotten because the active site no longer serves them (its catalog pruning).
    pub versions_pruned: usize,
}

/// A file's size and modification time when it was hashed, and the hash.
type HashedFile = (u64, SystemTime, String);

/// Hashes of files by (size, modification time), so a manifest does not re-read unchanged files.
#[derive(Debug, Clone, Default)]
pub struct HashCache(Arc<Mutex<HashMap<PathBuf, HashedFile>>>);

impl HashCache {
    /// BLAKE3 of `path`, from the cache when size and modification time are unchanged.
    pub fn hash(&self, path: &Path) -> std::io::Result<(u64, String)> {
        let meta = std::fs::metadata(path)?;
        let mtime = meta.modified()?;
        if let Some((size, m, h)) = self.0.lock().unwrap_or_else(|e| e.into_inner()).get(path) {
            if *size == meta.len() && *m == mtime {
                return Ok((*size, h.clone()));
            }
        }
        let mut hasher = blake3::Hasher::new();
        hasher.update_reader(std::fs::File::open(path)?)?;
        let h = hasher.finalize().to_hex().to_string();
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(path.to_path_buf(), (meta.len(), mtime, h.clone()));
        Ok((meta.len(), h))
    }
}

/// Every file under `root` (skipping partial downloads), with sizes and hashes.
pub fn list_files(root: &Path, cache: &HashCache) -> std::io::Result<Vec<ManifestFile>> {
    list_files_before(root, cache, None)
}

/// [`list_files`] without the files modified at or after `cutoff`: taken when the manifest read its versions, it
/// leaves out the files of a publish still being written (they belong to no listed version yet; shipping them
/// half-written would only have them shipped again).
pub fn list_files_before(
    root: &Path,
    cache: &HashCache,
    cutoff: Option<SystemTime>,
) -> std::io::Result<Vec<ManifestFile>> {
    let mut out = Vec::new();
    for path in list_paths(root)?.into_iter().filter(|p| !p.ends_with(".partial")) {
        let full = root.join(&path);
        if let Some(cutoff) = cutoff {
            match std::fs::metadata(&full).and_then(|m| m.modified()) {
                Ok(modified) if modified < cutoff => {}
                // Newer, or gone (vacuumed meanwhile): not part of the listed versions.
                _ => continue,
            }
        }
        let (size, blake3) = match cache.hash(&full) {
            Ok(h) => h,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        out.push(ManifestFile { path, size, blake3 });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The local path of a manifest path, refusing anything but plain relative paths.
pub fn local_path(root: &Path, rel: &str) -> Result<PathBuf, SyncError> {
    let p = Path::new(rel);
    if rel.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(SyncError::BadPath(rel.to_string()));
    }
    Ok(root.join(p))
}

/// Options of a replication pass.
#[derive(Debug, Default)]
pub struct PullOptions {
    /// Bytes per second at most (a bootstrap over a thin line between sites); `None`: as fast as it goes.
    pub bandwidth: Option<u64>,
    /// Shows bytes, files, throughput and ETA (a bootstrap from the command line).
    pub progress: bool,
}

/// One replication pass from `peer` (base URL, token) into `mart_root` and `store`.
pub async fn pull(
    peer: &super::Endpoint,
    mart_root: &Path,
    store: &Store,
    cache: &HashCache,
) -> Result<SyncReport, SyncError> {
    pull_with(peer, mart_root, store, cache, &PullOptions::default()).await
}

/// [`pull`] with a bandwidth limit and progress display.
pub async fn pull_with(
    peer: &super::Endpoint,
    mart_root: &Path,
    store: &Store,
    cache: &HashCache,
    options: &PullOptions,
) -> Result<SyncReport, SyncError> {
    let base = peer.url.trim_end_matches('/').to_string();
    let err = |message: String| SyncError::Peer { url: base.clone(), message };
    let client = super::client_for(&[peer], Duration::from_secs(600)).map_err(err)?;
    let get = |path: String| {
        let mut req = client.get(format!("{base}{path}"));
        if let Some(t) = &peer.token {
            req = req.bearer_auth(t);
        }
        req
    };
    let resp = get("/v1/replication/manifest".into()).send().await.map_err(|e| err(format!("unreachable: {e}")))?;
    if !resp.status().is_success() {
        let status = resp.status();
        return Err(err(format!("{status}: {}", resp.text().await.unwrap_or_default())));
    }
    let manifest: Manifest = resp.json().await.map_err(|e| err(format!("bad manifest: {e}")))?;
    let mut report = SyncReport::default();
    // What is missing or different, decided before downloading (so progress knows the total).
    let mut wanted = Vec::new();
    for f in &manifest.files {
        let local = local_path(mart_root, &f.path)?;
        if local.exists() {
            let (size, hash) =
                cache.hash(&local).map_err(|e| SyncError::Io { path: local.clone(), message: e.to_string() })?;
            if size == f.size && hash == f.blake3 {
                continue;
            }
        }
        wanted.push((f, local));
    }
    let total: u64 = wanted.iter().map(|(f, _)| f.size).sum();
    let mut progress = options.progress.then(|| {
        tracing::info!(
            files = wanted.len(),
            bytes = total,
            already_present = manifest.files.len() - wanted.len(),
            "copying the mart"
        );
        crate::progress::Progress::new("mart copy", Some(total), crate::progress::ProgressUnit::Bytes)
    });
    // Leftovers of an interrupted pass are started again from scratch.
    remove_partials(mart_root)?;
    let started = std::time::Instant::now();
    let received = std::sync::atomic::AtomicU64::new(0);
    let shared_progress = Mutex::new(progress.as_mut());
    // Several files at once: per-file costs (a request, an fsync) overlap instead of adding up.
    let fetch_one = |f: ManifestFile, local: PathBuf| {
        let (get, err, received, progress) = (&get, &err, &received, &shared_progress);
        async move {
            let io = |e: std::io::Error| SyncError::Io { path: local.clone(), message: e.to_string() };
            if let Some(dir) = local.parent() {
                tokio::fs::create_dir_all(dir).await.map_err(io)?;
            }
            let partial = local.with_file_name(format!(
                "{}.partial",
                local.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
            ));
            let resp = get(format!("/v1/replication/file?path={}", url_encode(&f.path)))
                .send()
                .await
                .map_err(|e| err(format!("{}: {e}", f.path)))?;
            if !resp.status().is_success() {
                return Err(err(format!("{}: {}", f.path, resp.status())));
            }
            let mut out = tokio::fs::File::create(&partial).await.map_err(io)?;
            let mut hasher = blake3::Hasher::new();
            let mut stream = resp.bytes_stream();
            let mut bytes = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| err(format!("{}: cut off: {e}", f.path)))?;
                hasher.update(&chunk);
                bytes += chunk.len() as u64;
                out.write_all(&chunk).await.map_err(io)?;
                let so_far =
                    received.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed) + chunk.len() as u64;
                if let Some(p) = progress.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                    p.inc(chunk.len() as u64);
                }
                if let Some(limit) = options.bandwidth.filter(|l| *l > 0) {
                    // Sleep until the bytes so far (all downloads together) fit the limit.
                    let due = Duration::from_secs_f64(so_far as f64 / limit as f64);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                }
            }
            out.sync_all().await.map_err(io)?;
            drop(out);
            if hasher.finalize().to_hex().as_str() != f.blake3 || bytes != f.size {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(SyncError::Checksum { path: f.path.clone(), expected: f.blake3.clone() });
            }
            tokio::fs::rename(&partial, &local).await.map_err(io)?;
            Ok::<u64, SyncError>(bytes)
        }
    };
    let mut downloads = futures::stream::iter(wanted.into_iter().map(|(f, local)| fetch_one(f.clone(), local)))
        .buffer_unordered(PARALLEL_FILES);
    let mut failed = None;
    while let Some(done) = downloads.next().await {
        match done {
            Ok(bytes) => {
                report.bytes += bytes;
                report.files += 1;
            }
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    drop(downloads);
    if let Some(e) = failed {
        // The downloads still in flight were dropped: leave no half file behind.
        remove_partials(mart_root)?;
        return Err(e);
    }
    // Every file is in place: the versions can be served.
    let have = store.latest_snapshot()?.map_or(0, |s| s.version);
    for v in manifest.versions.iter().filter(|v| v.version > have) {
        store.publish(v, &[])?;
        report.versions += 1;
    }
    report.mart_version = store.latest_snapshot()?.map(|s| s.version);
    report.peer_mart_version = manifest.versions.last().map(|v| v.version);
    mirror_maintenance(&manifest, mart_root, store, &mut report)?;
    if let Some(p) = progress {
        p.finish(&format!(", {} file(s), mart version {:?}", report.files, report.mart_version));
    }
    Ok(report)
}

/// Applies the active site's maintenance to this copy, which never runs its own (a vacuum here would write Delta
/// commits the active does not have): versions the active no longer serves are forgotten, then files it no longer
/// has are deleted — they belonged only to versions vacuumed there. Without this, a standby's disk would keep every
/// file ever written. An empty manifest deletes nothing.
fn mirror_maintenance(
    manifest: &Manifest,
    root: &Path,
    store: &Store,
    report: &mut SyncReport,
) -> Result<(), SyncError> {
    let Some(oldest) = manifest.versions.first().map(|v| v.version) else { return Ok(()) };
    if manifest.files.is_empty() {
        return Ok(());
    }
    report.versions_pruned = store.prune_catalog_below(oldest)?;
    let listed: std::collections::HashSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    let local = list_paths(root).map_err(|e| SyncError::Io { path: root.into(), message: e.to_string() })?;
    // `_last_checkpoint` is a hint Delta rewrites in place; a manifest may leave it out while it is being rewritten.
    let keep = |p: &str| listed.contains(p) || p.ends_with(".partial") || p.ends_with("/_last_checkpoint");
    for rel in local.iter().filter(|p| !keep(p.as_str())) {
        let path = local_path(root, rel)?;
        std::fs::remove_file(&path).map_err(|e| SyncError::Io { path: path.clone(), message: e.to_string() })?;
        report.files_removed += 1;
    }
    Ok(())
}

/// Deletes the half-downloaded files (`.partial`) under `root`.
fn remove_partials(root: &Path) -> Result<(), SyncError> {
    for rel in list_paths(root).map_err(|e| SyncError::Io { path: root.into(), message: e.to_string() })? {
        if rel.ends_with(".partial") {
            let path = root.join(&rel);
            std::fs::remove_file(&path).map_err(|e| SyncError::Io { path, message: e.to_string() })?;
        }
    }
    Ok(())
}

/// Relative paths (`/`-separated) of every file under `root`.
fn list_paths(root: &Path) -> std::io::Result<Vec<String>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let p = e.path();
            if e.file_type()?.is_dir() {
                walk(root, &p, out)?;
            } else {
                let rel = p.strip_prefix(root).unwrap_or(&p);
                out.push(
                    rel.components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join("/"),
                );
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    if root.is_dir() {
        walk(root, root, &mut out)?;
    }
    Ok(out)
}

fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
