//! The Parquet files one mart version reads, presented to DataFusion as a read-only object store.
//!
//! A mart version pins every table at a Delta version; the files of that Delta version are known once its log is
//! read and never change (writers only add new files; vacuum removes a file only after no queryable version
//! needs it). Listing exactly those files lets each snapshot's tables be plain DataFusion listing tables: the
//! engine's own Parquet scan with partition pruning, statistics and footer caching, without replaying the Delta
//! log's file list on every query. Files of other versions that share a partition directory are invisible here,
//! so a query can never mix versions.

use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream, StreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// URL under which a snapshot's files are registered in its query context.
pub const SNAPSHOT_STORE_URL: &str = "ccmart-mart://snapshot/";

/// The files of one mart version, relative to the mart root (`<table>/day=<day>/<file>.parquet`).
#[derive(Debug)]
pub struct SnapshotFiles {
    mart: Arc<LocalFileSystem>,
    files: BTreeMap<Path, ObjectMeta>,
}

impl std::fmt::Display for SnapshotFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SnapshotFiles({} files)", self.files.len())
    }
}

/// Why a snapshot's file list could not be built.
#[derive(Debug, thiserror::Error)]
#[error("mart directory {path}: {message}")]
pub struct SnapshotFilesError {
    path: String,
    message: String,
}

impl SnapshotFiles {
    /// An empty file set over the mart directory `root`.
    pub fn new(root: &std::path::Path) -> Result<Self, SnapshotFilesError> {
        let mart = LocalFileSystem::new_with_prefix(root)
            .map_err(|e| SnapshotFilesError { path: root.display().to_string(), message: e.to_string() })?;
        Ok(SnapshotFiles { mart: Arc::new(mart), files: BTreeMap::new() })
    }

    /// Adds one data file of `table` (`relative` to the table's directory, as the Delta log records it).
    pub fn add(&mut self, table: &str, relative: &str, size: u64, modified_ms: i64) -> Result<(), SnapshotFilesError> {
        let location = Path::parse(format!("{table}/{relative}"))
            .map_err(|e| SnapshotFilesError { path: format!("{table}/{relative}"), message: e.to_string() })?;
        let last_modified = DateTime::<Utc>::from_timestamp_millis(modified_ms).unwrap_or_default();
        self.files.insert(location.clone(), ObjectMeta { location, last_modified, size, e_tag: None, version: None });
        Ok(())
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// True when the snapshot reads no file.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    fn under<'a>(&'a self, prefix: Option<&'a Path>) -> impl Iterator<Item = &'a ObjectMeta> + 'a {
        self.files.values().filter(move |m| prefix.is_none_or(|p| m.location.prefix_matches(p)))
    }

    fn read_only(operation: &str) -> object_store::Error {
        object_store::Error::NotSupported { source: format!("a mart snapshot is read-only ({operation})").into() }
    }
}

#[async_trait::async_trait]
impl ObjectStore for SnapshotFiles {
    async fn put_opts(&self, _: &Path, _: PutPayload, _: PutOptions) -> object_store::Result<PutResult> {
        Err(Self::read_only("put"))
    }

    async fn put_multipart_opts(
        &self,
        _: &Path,
        _: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Err(Self::read_only("multipart put"))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        if !self.files.contains_key(location) {
            return Err(object_store::Error::NotFound {
                path: location.to_string(),
                source: "not a file of this mart version".into(),
            });
        }
        self.mart.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        locations.map(|_| Err(Self::read_only("delete"))).boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let found: Vec<_> = self.under(prefix).cloned().map(Ok).collect();
        stream::iter(found).boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let depth = prefix.map_or(0, |p| p.parts().count());
        let mut common_prefixes = BTreeSet::new();
        let mut objects = Vec::new();
        for meta in self.under(prefix) {
            let parts: Vec<_> = meta.location.parts().collect();
            if parts.len() == depth + 1 {
                objects.push(meta.clone());
            } else if parts.len() > depth + 1 {
                common_prefixes.insert(Path::from_iter(parts.into_iter().take(depth + 1)));
            }
        }
        Ok(ListResult { common_prefixes: common_prefixes.into_iter().collect(), objects })
    }

    async fn copy_opts(&self, _: &Path, _: &Path, _: CopyOptions) -> object_store::Result<()> {
        Err(Self::read_only("copy"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    #[tokio::test]
    async fn lists_only_the_snapshot_files_and_refuses_others() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["t/day=2026-01-01/a.parquet", "t/day=2026-01-01/old.parquet", "t/day=2026-01-02/b.parquet"] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        let mut s = SnapshotFiles::new(dir.path()).unwrap();
        s.add("t", "day=2026-01-01/a.parquet", 1, 0).unwrap();
        s.add("t", "day=2026-01-02/b.parquet", 1, 0).unwrap();
        let all: Vec<_> = s.list(Some(&Path::from("t"))).map(|m| m.unwrap().location.to_string()).collect().await;
        assert_eq!(all, ["t/day=2026-01-01/a.parquet", "t/day=2026-01-02/b.parquet"]);
        let top = s.list_with_delimiter(Some(&Path::from("t"))).await.unwrap();
        let dirs: Vec<_> = top.common_prefixes.iter().map(|p| p.to_string()).collect();
        assert_eq!(dirs, ["t/day=2026-01-01", "t/day=2026-01-02"]);
        assert!(top.objects.is_empty());
        let day = s.list_with_delimiter(Some(&Path::from("t/day=2026-01-01"))).await.unwrap();
        assert_eq!(day.objects.len(), 1);
        assert!(s.get(&Path::from("t/day=2026-01-01/a.parquet")).await.is_ok());
        let other = s.get(&Path::from("t/day=2026-01-01/old.parquet")).await;
        assert!(matches!(other, Err(object_store::Error::NotFound { .. })));
        assert!(s.put(&Path::from("t/x.parquet"), PutPayload::from_static(b"x")).await.is_err());
    }
}
