//! Snapshot replication, standby side: copy the active site's mart files and catalog.
//!
//! The active site lists every file under its mart directory with its size and BLAKE3 hash, and the mart versions
//! it serves ([`Manifest`]). The standby downloads what it lacks or holds differently, verifying each file's hash
//! while it streams (a file that does not verify is discarded and fetched again next time, never used), then
//! records the new mart versions in its catalog, oldest first — only after every file is in place, so a query on
//! the standby never sees a version whose files are incomplete. Delta data files are immutable and uniquely named,
//! so a transfer that stops halfway resumes with only what is still missing.
//!
//! Nothing the peer says is believed unchecked (docs/security.md, "Peers: replication"):
//! - the manifest must come from the configured site (`replication.peer_site`) at an epoch at least this
//!   appliance's, and every number, path and hash in it must be in range ([`check_manifest`]);
//! - downloads wait in [`INCOMING_DIR`] and never grow past the size announced; they start only when the disk has
//!   room for all of them;
//! - the downloaded files enter the mart (files they replace are kept aside) only together, and stay only if every
//!   version to apply then verifies: each table's Delta version is in the manifest, loads, and every file it reads
//!   is present with the size its log records ([`super::verify`]); otherwise everything is put back as it was;
//! - a peer that serves an older mart version than this site changes nothing here, so a site that was just fenced
//!   keeps its mart until a complete newer version of the peer is in place;
//! - the peer's maintenance is mirrored (versions forgotten, files deleted) only after that, and a file is deleted
//!   only when no version still served here reads it ([`plan_deletions`]).

use super::client::{self, shown, PeerClient, PeerError};
use super::fencing::MAX_EPOCH;
pub use crate::model::wire::{Manifest, ManifestFile};
use crate::staging::{MartSnapshot, StagingError, Store};
use futures::StreamExt;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use thiserror::Error;
use tokio::io::AsyncWriteExt;

/// Files downloaded at once by a replication pass or a bootstrap.
const PARALLEL_FILES: usize = 8;

/// Bytes a download buffers before writing to its file.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// Directory inside the mart directory where downloads wait (`<path>.partial` while they stream, `<path>` once
/// verified) until the versions that need them are verified. Never listed in a manifest, never read by a query.
pub const INCOMING_DIR: &str = "_ccmart_incoming";

/// Suffix of a half-downloaded file.
const PARTIAL: &str = ".partial";

/// Numbers the replication passes of this process (see the names of half downloads in [`pull_with`]).
static PASSES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Suffix of a local file set aside while its replacement is verified (put back if the verification fails).
const REPLACED: &str = ".ccmart-replaced";

/// Largest manifest accepted, bytes.
pub const MAX_MANIFEST_BYTES: u64 = 256 << 20;
/// Most files a manifest may list.
pub const MAX_FILES: usize = 2_000_000;
/// Most mart versions a manifest may list.
pub const MAX_VERSIONS: usize = 1_000_000;
/// Largest size a manifest may announce for one file (256 TiB).
pub const MAX_FILE_SIZE: u64 = 1 << 48;
/// Highest mart or Delta version accepted from a peer: far beyond any real history, and every later step (the
/// next version, a conversion to a signed Delta version) stays in range.
pub const MAX_VERSION: u64 = 1 << 53;
/// Latest timestamp accepted from a peer (9999-12-31T23:59:59Z), so ages computed from it cannot overflow.
pub const MAX_TIMESTAMP: i64 = 253_402_300_799;
/// Longest path a manifest may name, bytes.
pub const MAX_PATH_BYTES: usize = 1024;
/// Free space left on the mart's file system after all downloads of a pass, bytes.
pub const DISK_RESERVE_BYTES: u64 = 64 << 20;

/// What the answers of the peer must match: the site configured as the peer (`replication.peer_site`) and this
/// appliance's epoch, below which a peer's manifest is stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTrust {
    /// Expected site of the peer.
    pub site: String,
    /// This appliance's epoch now.
    pub epoch: u64,
}

/// Why a replication pass stopped (it is retried at the next cycle; nothing half-copied is used).
#[derive(Debug, Error)]
pub enum SyncError {
    /// The active site could not be reached or refused, or answered what is not a manifest.
    #[error("peer {0}")]
    Peer(#[from] PeerError),
    /// A file arrived with other content than announced.
    #[error("{path}: received content does not match its BLAKE3 ({expected}); discarded, fetched again next time")]
    Checksum {
        /// The file.
        path: String,
        /// Announced hash.
        expected: String,
    },
    /// The manifest named a path outside the mart directory.
    #[error("refusing manifest path {0:?}: not a plain relative path")]
    BadPath(String),
    /// The manifest comes from another site than `replication.peer_site`.
    #[error(
        "the manifest comes from site '{got}', but replication.peer_site is '{expected}': refused, nothing changed"
    )]
    WrongSite {
        /// `replication.peer_site`.
        expected: String,
        /// What the manifest says (shortened).
        got: String,
    },
    /// The manifest's epoch is below this appliance's: the peer was fenced since.
    #[error(
        "the manifest of site {site} is at epoch {epoch}, older than this appliance's epoch {ours}: refused, nothing \
         changed"
    )]
    StaleEpoch {
        /// The peer's site.
        site: String,
        /// Its epoch.
        epoch: u64,
        /// This appliance's epoch.
        ours: u64,
    },
    /// A field of the manifest is out of range or inconsistent.
    #[error("manifest field `{field}`: {message}; refused, nothing changed")]
    Invalid {
        /// Which field, e.g. `files[3].size`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A download grew past the size the manifest announced.
    #[error("{path}: the peer sent more than the {announced} bytes announced; download cut there and discarded")]
    TooLarge {
        /// The file.
        path: String,
        /// Announced size.
        announced: u64,
    },
    /// The downloads would not fit on the disk.
    #[error(
        "the copy needs {needed} bytes (plus a reserve of {DISK_RESERVE_BYTES}) but {dir} has {available} free: \
         nothing downloaded"
    )]
    NoSpace {
        /// Bytes to download.
        needed: u64,
        /// Bytes free.
        available: u64,
        /// Where.
        dir: PathBuf,
    },
    /// A version of the manifest cannot be served from its files; nothing of the pass was applied.
    #[error(
        "mart version {version} of the peer cannot be served: {message}; nothing applied, the mart served here is \
         unchanged"
    )]
    Unverified {
        /// The mart version.
        version: u64,
        /// Why.
        message: String,
    },
    /// Local disk.
    #[error("{}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// Staging.
    #[error(transparent)]
    Staging(#[from] StagingError),
}

impl SyncError {
    /// True when the peer's answer itself was refused (another site, a stale epoch, a field out of range, a version
    /// that does not verify, a download past its size), rather than the line or the local disk failing.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            SyncError::WrongSite { .. }
                | SyncError::StaleEpoch { .. }
                | SyncError::Invalid { .. }
                | SyncError::Unverified { .. }
                | SyncError::TooLarge { .. }
                | SyncError::BadPath(_)
        )
    }
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
    /// Files already downloaded and verified by an earlier, interrupted pass (waiting in [`INCOMING_DIR`]).
    pub already_downloaded: usize,
    /// The peer serves an older mart version than this site: nothing was copied or changed.
    pub peer_behind: bool,
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
    for path in list_paths(root)?.into_iter().filter(|p| check_path(p).is_ok()) {
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

/// Why `rel` is not a path a manifest may name: empty, too long, not `/`-separated plain names (no `.`, `..`, empty
/// or absolute parts, no control characters), or reserved for replication itself ([`INCOMING_DIR`], half downloads,
/// files set aside).
pub fn check_path(rel: &str) -> Result<(), String> {
    if rel.is_empty() || rel.len() > MAX_PATH_BYTES {
        return Err(format!("{} bytes long (1 to {MAX_PATH_BYTES})", rel.len()));
    }
    if rel.chars().any(char::is_control) {
        return Err("holds a control character".into());
    }
    if !rel.split('/').all(|c| !c.is_empty() && c != "." && c != "..") {
        return Err("not a relative path of plain names separated by '/'".into());
    }
    if !Path::new(rel).components().all(|c| matches!(c, Component::Normal(_))) {
        return Err("not a plain relative path".into());
    }
    if rel == INCOMING_DIR || rel.starts_with(&format!("{INCOMING_DIR}/")) {
        return Err(format!("{INCOMING_DIR}/ is reserved for downloads in progress"));
    }
    if rel.ends_with(PARTIAL) || rel.ends_with(REPLACED) {
        return Err(format!("names ending in {PARTIAL} or {REPLACED} are reserved for replication"));
    }
    Ok(())
}

/// The local path of a manifest path, refusing anything but plain relative paths (see [`check_path`]).
pub fn local_path(root: &Path, rel: &str) -> Result<PathBuf, SyncError> {
    check_path(rel).map_err(|_| SyncError::BadPath(shown(rel)))?;
    Ok(root.join(rel))
}

/// Checks everything a manifest says before any of it is used: the site is `trust.site`, the epoch is in range
/// and at least `trust.epoch`, versions are in range and listed oldest first, each once, with Delta versions and
/// times in range, and files have plain, distinct paths, sizes in range whose sum fits, and BLAKE3 hashes. The
/// error names the first field that fails.
pub fn check_manifest(m: &Manifest, trust: &PeerTrust) -> Result<(), SyncError> {
    let invalid = |field: String, message: String| Err(SyncError::Invalid { field, message });
    if m.fence.site != trust.site {
        return Err(SyncError::WrongSite { expected: trust.site.clone(), got: shown(&m.fence.site) });
    }
    let epoch = m.fence.fence.epoch;
    if epoch > MAX_EPOCH {
        return invalid("fence.fence.epoch".into(), format!("{epoch} is out of range (at most {MAX_EPOCH})"));
    }
    if epoch < trust.epoch {
        return Err(SyncError::StaleEpoch { site: trust.site.clone(), epoch, ours: trust.epoch });
    }
    if m.versions.len() > MAX_VERSIONS {
        return invalid("versions".into(), format!("{} versions listed (at most {MAX_VERSIONS})", m.versions.len()));
    }
    let mut previous: Option<u64> = None;
    for (i, v) in m.versions.iter().enumerate() {
        if v.version == 0 || v.version > MAX_VERSION {
            return invalid(
                format!("versions[{i}].version"),
                format!("{} is out of range 1..={MAX_VERSION}", v.version),
            );
        }
        if let Some(p) = previous.filter(|p| v.version <= *p) {
            return invalid(
                format!("versions[{i}].version"),
                format!("{} follows {p}: versions are listed oldest first, each once", v.version),
            );
        }
        previous = Some(v.version);
        for (table, dv) in &v.tables {
            if *dv > MAX_VERSION {
                return invalid(
                    format!("versions[{i}].tables.{}", shown(table)),
                    format!("Delta version {dv} is out of range (at most {MAX_VERSION})"),
                );
            }
        }
        if !(0..=MAX_TIMESTAMP).contains(&v.published_at) {
            return invalid(format!("versions[{i}].published_at"), format!("{} is not a time", v.published_at));
        }
        if let Some(t) = v.newest_end_ts.filter(|t| !(0..=MAX_TIMESTAMP).contains(t)) {
            return invalid(format!("versions[{i}].newest_end_ts"), format!("{t} is not a time"));
        }
    }
    if m.files.len() > MAX_FILES {
        return invalid("files".into(), format!("{} files listed (at most {MAX_FILES})", m.files.len()));
    }
    let mut paths = HashSet::with_capacity(m.files.len());
    let mut total: u64 = 0;
    for (i, f) in m.files.iter().enumerate() {
        if let Err(e) = check_path(&f.path) {
            return invalid(format!("files[{i}].path"), format!("{:?}: {e}", shown(&f.path)));
        }
        if !paths.insert(f.path.as_str()) {
            return invalid(format!("files[{i}].path"), format!("{:?} is listed twice", shown(&f.path)));
        }
        if f.size > MAX_FILE_SIZE {
            return invalid(
                format!("files[{i}].size"),
                format!("{} is out of range (at most {MAX_FILE_SIZE})", f.size),
            );
        }
        total = match total.checked_add(f.size) {
            Some(t) => t,
            None => return invalid(format!("files[{i}].size"), "the sizes add up past 2^64 bytes".into()),
        };
        if f.blake3.len() != 64 || !f.blake3.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return invalid(format!("files[{i}].blake3"), "not a BLAKE3 hash (64 lower-case hex digits)".into());
        }
    }
    for (i, f) in m.files.iter().enumerate() {
        let mut p = f.path.as_str();
        while let Some((dir, _)) = p.rsplit_once('/') {
            if paths.contains(dir) {
                return invalid(format!("files[{i}].path"), format!("{:?} is also listed as a file", shown(dir)));
            }
            p = dir;
        }
    }
    Ok(())
}

/// A file to bring into the mart: where it waits once downloaded, and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    /// What the manifest says about it.
    pub file: ManifestFile,
    /// Under [`INCOMING_DIR`].
    pub incoming: PathBuf,
    /// In the mart.
    pub target: PathBuf,
}

/// The files of a checked manifest (see [`check_manifest`]) that are not in the mart under `root` as listed:
/// `same(file, path)` says whether `path` holds exactly `file`. Every path returned is under `root`.
pub fn plan_downloads(
    m: &Manifest,
    root: &Path,
    mut same: impl FnMut(&ManifestFile, &Path) -> Result<bool, SyncError>,
) -> Result<Vec<Download>, SyncError> {
    let incoming = root.join(INCOMING_DIR);
    let mut out = Vec::new();
    for f in &m.files {
        let target = local_path(root, &f.path)?;
        if !same(f, &target)? {
            out.push(Download { file: f.clone(), incoming: incoming.join(&f.path), target });
        }
    }
    Ok(out)
}

/// The local files (`local`, relative paths under the mart directory) that mirroring the peer's maintenance
/// deletes: files the manifest no longer lists, except those a version served here reads (`protected`), files of
/// replication itself and Delta's `_last_checkpoint` hint. None unless the manifest passes [`check_manifest`]
/// (the expected site, an epoch at least ours) and lists versions.
pub fn plan_deletions(
    m: &Manifest,
    trust: &PeerTrust,
    local: &[String],
    protected: &HashSet<String>,
) -> Result<Vec<String>, SyncError> {
    check_manifest(m, trust)?;
    Ok(unlisted(m, local, protected))
}

/// [`plan_deletions`] for a manifest that has passed [`check_manifest`] already.
fn unlisted(m: &Manifest, local: &[String], protected: &HashSet<String>) -> Vec<String> {
    if m.versions.is_empty() {
        return Vec::new();
    }
    let listed: HashSet<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
    local
        .iter()
        .filter(|p| {
            !listed.contains(p.as_str())
                && !protected.contains(*p)
                && check_path(p).is_ok()
                && !p.ends_with("/_last_checkpoint")
                && p.as_str() != "_last_checkpoint"
        })
        .cloned()
        .collect()
}

/// Bytes free for this user on the file system of `dir`.
fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let s = rustix::fs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Puts back the local files an interrupted pass had set aside (their replacements were never verified).
pub fn restore_set_aside(root: &Path) -> Result<usize, SyncError> {
    let io = |path: &Path, source: std::io::Error| SyncError::Io { path: path.to_path_buf(), source };
    let mut restored = 0;
    for rel in list_paths(root).map_err(|e| io(root, e))? {
        if let Some(original) = rel.strip_suffix(REPLACED) {
            let (from, to) = (root.join(&rel), root.join(original));
            std::fs::rename(&from, &to).map_err(|e| io(&from, e))?;
            restored += 1;
        }
    }
    if restored > 0 {
        tracing::warn!(files = restored, "put back the mart files an interrupted replication pass had set aside");
    }
    Ok(restored)
}

/// Options of a replication pass.
#[derive(Debug, Default)]
pub struct PullOptions {
    /// Bytes per second at most (a bootstrap over a thin line between sites); `None`: as fast as it goes.
    pub bandwidth: Option<u64>,
    /// Shows bytes, files, throughput and ETA (a bootstrap from the command line).
    pub progress: bool,
}

/// One replication pass from `peer` (base URL, token) into `mart_root` and `store`, believing only answers that
/// satisfy `trust`.
pub async fn pull(
    peer: &super::Endpoint,
    trust: &PeerTrust,
    mart_root: &Path,
    store: &Store,
    cache: &HashCache,
) -> Result<SyncReport, SyncError> {
    pull_with(peer, trust, mart_root, store, cache, &PullOptions::default()).await
}

/// A file placed into the mart by a pass, and the local file it replaced (set aside until the pass is verified).
struct Installed {
    target: PathBuf,
    set_aside: Option<PathBuf>,
}

/// Moves the downloads from [`INCOMING_DIR`] into the mart, setting aside each local file one replaces. On an
/// error, what was moved already is put back.
fn install(downloads: &[Download]) -> Result<Vec<Installed>, SyncError> {
    let mut done = Vec::with_capacity(downloads.len());
    for d in downloads {
        let io = |source: std::io::Error| SyncError::Io { path: d.target.clone(), source };
        let step = (|| {
            if let Some(dir) = d.target.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let set_aside = if d.target.exists() {
                let aside = PathBuf::from(format!("{}{REPLACED}", d.target.display()));
                std::fs::rename(&d.target, &aside).map_err(io)?;
                Some(aside)
            } else {
                None
            };
            if let Err(e) = std::fs::rename(&d.incoming, &d.target) {
                if let Some(aside) = &set_aside {
                    let _ = std::fs::rename(aside, &d.target);
                }
                return Err(io(e));
            }
            Ok(Installed { target: d.target.clone(), set_aside })
        })();
        match step {
            Ok(i) => done.push(i),
            Err(e) => {
                uninstall(done);
                return Err(e);
            }
        }
    }
    Ok(done)
}

/// Undoes [`install`]: the files it placed are removed, the files they replaced put back.
fn uninstall(installed: Vec<Installed>) {
    for i in installed.into_iter().rev() {
        let result = match &i.set_aside {
            Some(aside) => std::fs::rename(aside, &i.target),
            None => std::fs::remove_file(&i.target),
        };
        if let Err(e) = result {
            tracing::error!(path = %i.target.display(), error = %e, "cannot undo a replicated file");
        }
    }
}

/// [`pull`] with a bandwidth limit and progress display.
pub async fn pull_with(
    peer: &super::Endpoint,
    trust: &PeerTrust,
    mart_root: &Path,
    store: &Store,
    cache: &HashCache,
    options: &PullOptions,
) -> Result<SyncReport, SyncError> {
    let io_err = |path: &Path, source: std::io::Error| SyncError::Io { path: path.to_path_buf(), source };
    let mart_root = &mart_root.canonicalize().map_err(|e| io_err(mart_root, e))?;
    let client = PeerClient::new(peer, client::REPLICATION_TIMEOUT)?;
    restore_set_aside(mart_root)?;
    // Leftovers of an interrupted pass are started again from scratch (verified downloads wait in INCOMING_DIR).
    remove_partials(mart_root)?;
    let manifest = client.manifest().await?;
    check_manifest(&manifest, trust)?;
    let mut report = SyncReport::default();
    let local_versions = store.snapshots()?;
    let local_latest = local_versions.last().map(|s| s.version);
    report.mart_version = local_latest;
    report.peer_mart_version = manifest.versions.last().map(|v| v.version);
    if report.peer_mart_version < local_latest {
        // A site fenced by a newer epoch keeps serving its own mart until the peer has a newer version.
        report.peer_behind = true;
        return Ok(report);
    }
    let incoming = mart_root.join(INCOMING_DIR);
    // What is missing or different, decided before downloading (so progress knows the total).
    let planned = plan_downloads(&manifest, mart_root, |f, path| same_content(cache, f, path))?;
    clean_incoming(&incoming, &planned)?;
    let mut wanted = Vec::new();
    for d in &planned {
        if same_content(cache, &d.file, &d.incoming)? {
            report.already_downloaded += 1;
        } else {
            wanted.push(d.clone());
        }
    }
    // `check_manifest` proved that the sizes of all the manifest's files add up within 2^64.
    let total: u64 = wanted.iter().map(|d| d.file.size).sum();
    if !wanted.is_empty() {
        std::fs::create_dir_all(&incoming).map_err(|e| io_err(&incoming, e))?;
        let available = free_bytes(&incoming).map_err(|e| io_err(&incoming, e))?;
        if total.checked_add(DISK_RESERVE_BYTES).is_none_or(|n| n > available) {
            return Err(SyncError::NoSpace { needed: total, available, dir: mart_root.clone() });
        }
    }
    let mut progress = options.progress.then(|| {
        tracing::info!(
            files = wanted.len(),
            bytes = total,
            already_present = manifest.files.len().saturating_sub(wanted.len()),
            "copying the mart"
        );
        crate::progress::Progress::new("mart copy", Some(total), crate::progress::ProgressUnit::Bytes)
    });
    let started = std::time::Instant::now();
    let received = std::sync::atomic::AtomicU64::new(0);
    let shared_progress = Mutex::new(progress.as_mut());
    // Half downloads are named per pass: a download dropped with an earlier failed pass may still have a file
    // operation in flight on a blocking thread, and must not touch this pass's file of the same path.
    let pass = PASSES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // Several files at once: per-file costs (a request, an fsync) overlap instead of adding up.
    let fetch_one = |d: Download| {
        let (client, received, progress) = (&client, &received, &shared_progress);
        async move {
            let (f, target) = (&d.file, &d.incoming);
            let io = |source: std::io::Error| SyncError::Io { path: target.clone(), source };
            if let Some(dir) = target.parent() {
                tokio::fs::create_dir_all(dir).await.map_err(io)?;
            }
            let partial = PathBuf::from(format!("{}.{pass}{PARTIAL}", target.display()));
            // Never more than announced on disk: the client refuses the chunk that would pass it.
            let file_error = |e: PeerError| match e {
                PeerError::TooLarge { .. } => SyncError::TooLarge { path: f.path.clone(), announced: f.size },
                e => SyncError::Peer(e),
            };
            let mut body = client.download(&f.path, f.size).await.map_err(file_error)?;
            // Writes go to disk in large pieces: each write of a `tokio::fs::File` is a hop to a blocking thread.
            let mut out = tokio::io::BufWriter::with_capacity(
                WRITE_BUFFER_BYTES,
                tokio::fs::File::create(&partial).await.map_err(io)?,
            );
            let mut hasher = blake3::Hasher::new();
            while let Some(chunk) = body.chunk().await.map_err(file_error)? {
                let n = chunk.len() as u64;
                hasher.update(&chunk);
                out.write_all(&chunk).await.map_err(io)?;
                let so_far = received.fetch_add(n, std::sync::atomic::Ordering::Relaxed).saturating_add(n);
                if let Some(p) = progress.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                    p.inc(n);
                }
                if let Some(limit) = options.bandwidth.filter(|l| *l > 0) {
                    // Sleep until the bytes so far (all downloads together) fit the limit.
                    let due = Duration::from_secs_f64(so_far as f64 / limit as f64);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                }
            }
            // Made durable together with the other downloads before any version that reads it is published
            // (see `sync_file_system`), not one `fsync` per file.
            out.flush().await.map_err(io)?;
            drop(out);
            let bytes = body.received();
            if hasher.finalize().to_hex().as_str() != f.blake3 || bytes != f.size {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(SyncError::Checksum { path: f.path.clone(), expected: f.blake3.clone() });
            }
            tokio::fs::rename(&partial, target).await.map_err(io)?;
            Ok::<u64, SyncError>(bytes)
        }
    };
    let mut downloads = futures::stream::iter(wanted.iter().cloned().map(fetch_one)).buffer_unordered(PARALLEL_FILES);
    let mut failed = None;
    while let Some(done) = downloads.next().await {
        match done {
            Ok(bytes) => {
                report.bytes = report.bytes.saturating_add(bytes);
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
        // The downloads still in flight were dropped: leave no half file behind (the verified ones wait in
        // INCOMING_DIR for the next pass).
        // What failed is the error to report; a clean-up that fails too is logged (the next pass cleans again).
        if let Err(cleanup) = remove_partials(&incoming) {
            tracing::warn!(error = %crate::model::report(&cleanup), "cannot remove half downloads; the next pass does");
        }
        return Err(e);
    }
    // Every file is downloaded and verified. They enter the mart together, and stay only if the versions verify.
    let to_apply: Vec<&MartSnapshot> = manifest.versions.iter().filter(|v| !local_versions.contains(v)).collect();
    // Tables read at a Delta version a version served here reads, none of whose files changes: nothing to check.
    let touched: HashSet<&str> = planned.iter().filter_map(|d| d.file.path.split('/').next()).collect();
    let known: HashSet<(&str, u64)> = local_versions
        .iter()
        .flat_map(|v| v.tables.iter().map(|(t, dv)| (t.as_str(), *dv)))
        .filter(|(t, _)| !touched.contains(t))
        .collect();
    // The newest version is verified below whenever anything changes here; otherwise maintenance verifies it.
    let newest_verified = !planned.is_empty() || !to_apply.is_empty();
    if newest_verified {
        let installed = install(&planned)?;
        let mut check = to_apply.clone();
        if let Some(newest) = manifest.versions.last().filter(|n| check.last() != Some(n)) {
            check.push(newest);
        }
        if let Err(e) = super::verify::verify_versions(mart_root, &manifest, &check, &known).await {
            uninstall(installed);
            // The answer did not verify: it is discarded whole.
            let _ = std::fs::remove_dir_all(&incoming);
            return Err(e);
        }
        for i in &installed {
            if let Some(aside) = &i.set_aside {
                std::fs::remove_file(aside).map_err(|e| io_err(aside, e))?;
            }
        }
        // Every file is in place and on disk: the versions can be served.
        sync_file_system(mart_root)?;
        store.publish_replicated(&to_apply)?;
        report.versions += to_apply.len();
    }
    let _ = std::fs::remove_dir_all(&incoming);
    report.mart_version = store.latest_snapshot()?.map(|s| s.version);
    mirror_maintenance(&manifest, mart_root, store, newest_verified, &mut report).await?;
    if let Some(p) = progress {
        p.finish(&format!(", {} file(s), mart version {:?}", report.files, report.mart_version));
    }
    Ok(report)
}

/// Flushes every file and directory entry of the file system holding `dir` to disk with one `syncfs`: what a
/// pass downloaded and renamed into place becomes durable at once before the catalog names it, instead of one
/// `fsync` per file (which made a bootstrap of many small files wait on the disk once per file).
fn sync_file_system(dir: &Path) -> Result<(), SyncError> {
    let io = |source: std::io::Error| SyncError::Io { path: dir.to_path_buf(), source };
    let handle = std::fs::File::open(dir).map_err(io)?;
    rustix::fs::syncfs(&handle).map_err(|e| io(std::io::Error::from(e)))
}

/// Whether `path` holds exactly `f` (size and BLAKE3).
fn same_content(cache: &HashCache, f: &ManifestFile, path: &Path) -> Result<bool, SyncError> {
    match cache.hash(path) {
        Ok((size, hash)) => Ok(size == f.size && hash == f.blake3),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(SyncError::Io { path: path.to_path_buf(), source }),
    }
}

/// Empties [`INCOMING_DIR`] of half downloads and of files this pass does not bring.
fn clean_incoming(incoming: &Path, planned: &[Download]) -> Result<(), SyncError> {
    let keep: HashSet<&Path> = planned.iter().map(|d| d.incoming.as_path()).collect();
    for rel in list_paths(incoming).map_err(|source| SyncError::Io { path: incoming.into(), source })? {
        let path = incoming.join(&rel);
        if !keep.contains(path.as_path()) {
            std::fs::remove_file(&path).map_err(|source| SyncError::Io { path, source })?;
        }
    }
    Ok(())
}

/// Applies the active site's maintenance to this copy, which never runs its own (a vacuum here would write Delta
/// commits the active does not have). Called once every version of the manifest is held here: versions the active
/// no longer serves are forgotten, then files it no longer has are deleted — unless a version still served here
/// reads them. Without this, a standby's disk would keep every file ever written. A manifest without versions
/// changes nothing, and neither does one whose newest version does not verify against its own file list.
/// `manifest` has passed [`check_manifest`]; `newest_verified`: its newest version was verified in this pass.
async fn mirror_maintenance(
    manifest: &Manifest,
    root: &Path,
    store: &Store,
    newest_verified: bool,
    report: &mut SyncReport,
) -> Result<(), SyncError> {
    let Some(newest) = manifest.versions.last() else { return Ok(()) };
    let forget: Vec<u64> =
        store.snapshots()?.into_iter().filter(|s| !manifest.versions.contains(s)).map(|s| s.version).collect();
    let local = list_paths(root).map_err(|source| SyncError::Io { path: root.into(), source })?;
    let mut candidates = unlisted(manifest, &local, &HashSet::new());
    if forget.is_empty() && candidates.is_empty() {
        return Ok(());
    }
    if !newest_verified {
        super::verify::verify_versions(root, manifest, &[newest], &HashSet::new()).await?;
    }
    report.versions_pruned = store.forget_versions(&forget)?;
    if candidates.is_empty() {
        return Ok(());
    }
    let tables: BTreeSet<&str> = candidates.iter().filter_map(|p| p.split('/').next()).collect();
    let protected = super::verify::files_read(root, &store.snapshots()?, &tables, &local).await;
    candidates.retain(|p| !protected.contains(p));
    for rel in candidates {
        let path = local_path(root, &rel)?;
        std::fs::remove_file(&path).map_err(|source| SyncError::Io { path: path.clone(), source })?;
        report.files_removed += 1;
    }
    Ok(())
}

/// Deletes the half-downloaded files (`.partial`) under `root`.
fn remove_partials(root: &Path) -> Result<(), SyncError> {
    for rel in list_paths(root).map_err(|source| SyncError::Io { path: root.into(), source })? {
        if rel.ends_with(PARTIAL) {
            let path = root.join(&rel);
            match std::fs::remove_file(&path) {
                // A dropped download's own clean-up (run on a blocking thread) may remove it first: gone is the
                // point.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                r => r.map_err(|source| SyncError::Io { path, source })?,
            }
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
