//! What a mart version reads, from the Delta logs on disk: the standby applies a version only when every file it
//! reads is present and verified, and deletes only files that no version it serves reads.
//!
//! A mart version pins each table at a Delta version; a Delta version reads its log (the newest checkpoint at or
//! before it and the commits after that) and the data files its log adds and does not remove. The query engine
//! lists exactly those files (see [`crate::query::snapshot_files`]), so they are what must exist.

use super::sync::{check_path, Manifest, ManifestFile, SyncError};
use crate::staging::MartSnapshot;
use crate::transform::schema::MART_TABLES;
use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

/// Delta table loads at once.
const PARALLEL_LOADS: usize = 8;

/// Commits replayed at most to find what the served versions of one table read; beyond it, the whole table is
/// kept (deleting nothing is always safe).
const MAX_REPLAY: u64 = 1_000_000;

/// The data files (relative to the table directory, as the Delta log records them) and sizes of `table` at
/// Delta version `version`, read from its log under `root`.
pub async fn delta_files(root: &Path, table: &str, version: u64) -> Result<Vec<(String, i64)>, String> {
    let dir = root.join(table);
    let url = url::Url::from_directory_path(&dir).map_err(|_| format!("{} is not an absolute path", dir.display()))?;
    let t = deltalake::DeltaTableBuilder::from_url(url)
        .map_err(|e| e.to_string())?
        .with_version(version)
        .load()
        .await
        .map_err(|e| e.to_string())?;
    let state = t.snapshot().map_err(|e| e.to_string())?;
    Ok(state.log_data().into_iter().map(|f| (f.path().into_owned(), f.size())).collect())
}

/// The Delta version of every mart table that `snapshot` reads (a table it does not name: version 0, as the
/// query engine reads it).
fn table_versions(snapshot: &MartSnapshot) -> impl Iterator<Item = (&'static str, u64)> + '_ {
    MART_TABLES.iter().map(move |t| (t.name, snapshot.tables.get(t.name).copied().unwrap_or(0)))
}

/// The log file of Delta version `version` of `table`: its commit, or a checkpoint at that version.
fn log_entry_listed(index: &HashMap<&str, &ManifestFile>, table: &str, version: u64) -> bool {
    let commit = format!("{table}/_delta_log/{version:020}.json");
    let checkpoint = format!("{table}/_delta_log/{version:020}.checkpoint");
    index.contains_key(commit.as_str()) || index.keys().any(|p| p.starts_with(&checkpoint))
}

/// Checks that every version of `versions` can be served from the files under `root`: each table's Delta version
/// has its log entry in `manifest`, its log loads, and every data file it reads is listed in `manifest` (so it was
/// verified against its BLAKE3) with the size the log records, and is present. `known` (table, Delta version) pairs
/// are already served here from unchanged files and are not checked again. The error names the first version that
/// fails and why.
///
/// Per table, the oldest Delta version needed is loaded with the Delta library and the commits up to the newest
/// are replayed (adds and removes), so each file is checked once however many versions read it; the replayed
/// state at the newest must equal what the Delta library loads there.
pub async fn verify_versions(
    root: &Path,
    manifest: &Manifest,
    versions: &[&MartSnapshot],
    known: &HashSet<(&str, u64)>,
) -> Result<(), SyncError> {
    let index: HashMap<&str, &ManifestFile> = manifest.files.iter().map(|f| (f.path.as_str(), f)).collect();
    // Per table: each Delta version needed, with the first mart version that reads it (for the message).
    let mut needed: BTreeMap<&'static str, BTreeMap<u64, u64>> = BTreeMap::new();
    for v in versions {
        for (table, dv) in table_versions(v) {
            if !known.contains(&(table, dv)) {
                needed.entry(table).or_default().entry(dv).or_insert(v.version);
            }
        }
    }
    for (table, dvs) in &needed {
        for (&dv, &version) in dvs {
            if !log_entry_listed(&index, table, dv) {
                return Err(SyncError::Unverified {
                    version,
                    message: format!(
                        "it reads table {table} at Delta version {dv}, whose log entry \
                         ({table}/_delta_log/{dv:020}.json) is not in the manifest"
                    ),
                });
            }
        }
    }
    let index = &index;
    let mut tables = futures::stream::iter(
        needed.into_iter().map(|(table, dvs)| async move { verify_table(root, index, table, &dvs).await }),
    )
    .buffer_unordered(PARALLEL_LOADS);
    while let Some(result) = tables.next().await {
        result?;
    }
    Ok(())
}

/// [`verify_versions`] for one table: `dvs` maps each Delta version needed to the mart version that reads it.
async fn verify_table(
    root: &Path,
    index: &HashMap<&str, &ManifestFile>,
    table: &str,
    dvs: &BTreeMap<u64, u64>,
) -> Result<(), SyncError> {
    let (Some((&lo, &first)), Some((&hi, &last))) = (dvs.first_key_value(), dvs.last_key_value()) else {
        return Ok(());
    };
    let unverified = |version: u64, message: String| SyncError::Unverified { version, message };
    let check = |version: u64, path: &str, size: i64| -> Result<(), SyncError> {
        let rel = format!("{table}/{path}");
        if check_path(&rel).is_err() {
            return Err(unverified(version, format!("table {table} names the file {path:?}, not a plain path")));
        }
        let Some(listed) = index.get(rel.as_str()) else {
            return Err(unverified(version, format!("table {table} reads {rel}, which is not in the manifest")));
        };
        if u64::try_from(size).ok() != Some(listed.size) {
            return Err(unverified(
                version,
                format!("{rel}: the Delta log says {size} bytes, the manifest {}", listed.size),
            ));
        }
        if std::fs::metadata(root.join(&rel)).map(|m| m.len()).ok() != Some(listed.size) {
            return Err(unverified(version, format!("{rel} is not here with its {} bytes", listed.size)));
        }
        Ok(())
    };
    let load = |dv: u64, version: u64| async move {
        delta_files(root, table, dv)
            .await
            .map_err(|e| unverified(version, format!("table {table} at Delta version {dv} cannot be read here: {e}")))
    };
    let mut state: HashMap<String, i64> = load(lo, first).await?.into_iter().collect();
    for (path, size) in &state {
        check(first, path, *size)?;
    }
    if hi == lo {
        return Ok(());
    }
    if hi - lo > MAX_REPLAY {
        return Err(unverified(last, format!("table {table}: Delta versions {lo} to {hi} are too many to replay")));
    }
    for dv in lo + 1..=hi {
        // The mart version that needs this commit: the first one reading it or a later Delta version.
        let version = dvs.range(dv..).next().map_or(last, |(_, v)| *v);
        let rel = format!("{table}/_delta_log/{dv:020}.json");
        if !index.contains_key(rel.as_str()) {
            return Err(unverified(version, format!("the commit {rel} is not in the manifest")));
        }
        let bytes = std::fs::read(root.join(&rel)).map_err(|e| unverified(version, format!("{rel}: {e}")))?;
        for action in commit_actions(&bytes).map_err(|e| unverified(version, format!("{rel}: {e}")))? {
            match action {
                Action::Add(path, size) => {
                    check(version, &path, size)?;
                    state.insert(path, size);
                }
                Action::Remove(path) => {
                    state.remove(&path);
                }
            }
        }
    }
    let loaded: HashMap<String, i64> = load(hi, last).await?.into_iter().collect();
    if loaded != state {
        return Err(unverified(
            last,
            format!("table {table}: the commits {lo}..{hi} replay to other files than Delta version {hi} reads"),
        ));
    }
    Ok(())
}

/// A file action of a Delta commit.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    /// A data file (relative to the table directory) and its size.
    Add(String, i64),
    /// A data file no longer read.
    Remove(String),
}

/// The file actions of a Delta commit (newline-delimited JSON), paths percent-decoded as the Delta library does.
fn commit_actions(bytes: &[u8]) -> Result<Vec<Action>, String> {
    let decode = |p: &str| percent_encoding::percent_decode_str(p).decode_utf8_lossy().into_owned();
    let mut out = Vec::new();
    for (n, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let action: serde_json::Value = serde_json::from_slice(line).map_err(|e| format!("line {}: {e}", n + 1))?;
        if let Some(add) = action.get("add") {
            let path = add.get("path").and_then(|p| p.as_str()).ok_or(format!("line {}: add without a path", n + 1))?;
            let size = add.get("size").and_then(|s| s.as_i64()).ok_or(format!("line {}: add without a size", n + 1))?;
            out.push(Action::Add(decode(path), size));
        } else if let Some(remove) = action.get("remove") {
            let path =
                remove.get("path").and_then(|p| p.as_str()).ok_or(format!("line {}: remove without a path", n + 1))?;
            out.push(Action::Remove(decode(path)));
        }
    }
    Ok(out)
}

/// The `_delta_log` entries of `table` under `root`: (file name, the Delta version it starts with, if any).
fn log_entries(root: &Path, table: &str) -> std::io::Result<Vec<(String, Option<u64>)>> {
    let dir = root.join(table).join("_delta_log");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir)? {
        let name = e?.file_name().to_string_lossy().into_owned();
        let version = name.get(..20).filter(|d| d.bytes().all(|b| b.is_ascii_digit())).and_then(|d| d.parse().ok());
        out.push((name, version));
    }
    Ok(out)
}

/// Every file under `table/` that a Delta version in `versions` may read: the data files of the oldest, every
/// data file a later commit up to the newest adds (a superset: a file added and removed in between is kept too),
/// and the log entries from the checkpoint the oldest starts from up to the newest.
async fn table_reads(root: &Path, table: &str, versions: &BTreeSet<u64>) -> Result<HashSet<String>, String> {
    let (Some(&lo), Some(&hi)) = (versions.first(), versions.last()) else { return Ok(HashSet::new()) };
    if hi - lo > MAX_REPLAY {
        return Err(format!("Delta versions {lo} to {hi} are too many to replay"));
    }
    let mut out: HashSet<String> =
        delta_files(root, table, lo).await?.into_iter().map(|(p, _)| format!("{table}/{p}")).collect();
    for v in lo + 1..=hi {
        let commit = root.join(table).join("_delta_log").join(format!("{v:020}.json"));
        let bytes = std::fs::read(&commit).map_err(|e| format!("{}: {e}", commit.display()))?;
        for action in commit_actions(&bytes).map_err(|e| format!("{}: {e}", commit.display()))? {
            if let Action::Add(p, _) = action {
                out.insert(format!("{table}/{p}"));
            }
        }
    }
    let entries = log_entries(root, table).map_err(|e| e.to_string())?;
    let from = entries
        .iter()
        .filter(|(name, v)| name.contains(".checkpoint") && v.is_some_and(|v| v <= lo))
        .filter_map(|(_, v)| *v)
        .max()
        .unwrap_or(0);
    for (name, v) in entries {
        // Entries without a version (`_last_checkpoint`, anything unknown) are kept.
        if v.is_none_or(|v| (from..=hi).contains(&v)) {
            out.insert(format!("{table}/_delta_log/{name}"));
        }
    }
    Ok(out)
}

/// The files under `root` that a served version (`served`) reads, for the tables among `tables`. A table whose
/// log cannot be read is kept whole: every file of `local` under it is in the answer.
pub async fn files_read(
    root: &Path,
    served: &[MartSnapshot],
    tables: &BTreeSet<&str>,
    local: &[String],
) -> HashSet<String> {
    let mut per_table: BTreeMap<&'static str, BTreeSet<u64>> = BTreeMap::new();
    for s in served {
        for (table, dv) in table_versions(s) {
            if tables.contains(table) {
                per_table.entry(table).or_default().insert(dv);
            }
        }
    }
    let mut out = HashSet::new();
    for (table, versions) in per_table {
        match table_reads(root, table, &versions).await {
            Ok(files) => out.extend(files),
            Err(e) => {
                tracing::warn!(table, error = %e, "cannot tell which files the served versions read; deleting none of the table");
                let prefix = format!("{table}/");
                out.extend(local.iter().filter(|p| p.starts_with(&prefix)).cloned());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_actions_reads_adds_and_removes_and_refuses_broken_lines() {
        let commit = br#"{"commitInfo":{"timestamp":1}}
{"remove":{"path":"day=2026-01-01/old.parquet"}}
{"add":{"path":"day=2026-01-01/part%20a.parquet","size":5}}
"#;
        assert_eq!(
            commit_actions(commit).unwrap(),
            vec![
                Action::Remove("day=2026-01-01/old.parquet".into()),
                Action::Add("day=2026-01-01/part a.parquet".into(), 5)
            ]
        );
        assert!(commit_actions(b"{\"add\":").unwrap_err().contains("line 1"));
        assert!(commit_actions(br#"{"add":{"path":"x"}}"#).unwrap_err().contains("without a size"));
    }
}
