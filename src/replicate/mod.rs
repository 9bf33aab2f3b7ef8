//! Site-to-site operations. [`fencing`] decides which appliance may write; [`sync`] copies the active's mart to
//! the standby (and bootstraps a new site); [`switchover`] swaps the roles with nothing lost. The active-active
//! comparison is here: two appliances that read the same IDBs must hold identical marts (DESIGN.md invariant 2);
//! [`compare`] proves it, or lists every difference down to the surrogate key.

pub mod client;
pub mod fencing;
pub mod link;
pub mod switchover;
pub mod sync;
pub mod verify;

use crate::model::wire;
use client::{PeerClient, PeerError};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use thiserror::Error;

/// Errors of a comparison.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CompareError {
    /// An appliance could not be reached, answered with an error, or answered what is not a digest.
    #[error(transparent)]
    Peer(#[from] PeerError),
}

/// One partition whose digests differ, with the keys that explain it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PartitionDifference {
    /// Mart table.
    pub table: String,
    /// Day partition (empty for unpartitioned tables).
    pub day: String,
    /// Rows on the local / peer side (`None`: the partition is missing there).
    pub rows: (Option<u64>, Option<u64>),
    /// Keys only the local appliance has.
    pub only_local: Vec<i64>,
    /// Keys only the peer has.
    pub only_peer: Vec<i64>,
    /// Keys present on both sides with different content.
    pub different: Vec<i64>,
}

/// The result of comparing two marts.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Mart version compared on each side.
    pub versions: (u64, u64),
    /// Partitions compared.
    pub partitions: usize,
    /// Rows compared (local side).
    pub rows: u64,
    /// Differences (empty when the marts are identical).
    pub differences: Vec<PartitionDifference>,
}

type PartitionMap = BTreeMap<(String, String), (u64, String)>;

/// A running appliance to talk to: its base URL and the bearer token to send (none when it has no tokens).
#[derive(Debug, Clone, Default)]
pub struct Endpoint {
    /// Base URL, e.g. `http://site2:8080`.
    pub url: String,
    /// Bearer token secret.
    pub token: Option<String>,
    /// PEM file of a CA (or the server's own self-signed certificate) to trust for an `https://` URL, besides the
    /// system's roots: sites often use a private CA between them.
    pub ca: Option<std::path::PathBuf>,
}

impl Endpoint {
    /// An appliance at `url`, called with `token`, trusting the system's roots.
    pub fn new(url: impl Into<String>, token: Option<String>) -> Self {
        Endpoint { url: url.into(), token, ca: None }
    }
}

fn partitions(v: &wire::DigestList) -> PartitionMap {
    v.digests.iter().map(|d| ((d.table.clone(), d.day.clone()), (d.rows, d.digest.clone()))).collect()
}

/// Compares the newest marts of two appliances (`table`/`day` narrow it), partition digests first, then row
/// digests of the partitions that differ.
pub async fn compare(
    local: &Endpoint,
    peer: &Endpoint,
    table: Option<&str>,
    day: Option<&str>,
) -> Result<Comparison, CompareError> {
    let (here, there) =
        (PeerClient::new(local, client::COMPARE_TIMEOUT)?, PeerClient::new(peer, client::COMPARE_TIMEOUT)?);
    let q = wire::DigestParams { table: table.map(str::to_string), day: day.map(str::to_string), mart_version: None };
    let (a, b) = (here.digests(&q).await?, there.digests(&q).await?);
    let versions = (a.mart_version, b.mart_version);
    let (pa, pb) = (partitions(&a), partitions(&b));
    let keys: BTreeSet<&(String, String)> = pa.keys().chain(pb.keys()).collect();
    let mut differences = Vec::new();
    for k in &keys {
        let (x, y) = (pa.get(*k), pb.get(*k));
        if x.is_some() && x == y {
            continue;
        }
        let (t, d) = (&k.0, &k.1);
        let at = |version: u64| wire::DigestParams {
            table: Some(t.clone()),
            day: (!d.is_empty()).then(|| d.clone()),
            mart_version: Some(version),
        };
        let rows = |answer: wire::RowDigests| answer.rows.into_iter().collect::<BTreeMap<i64, String>>();
        let ra = if x.is_some() { rows(here.row_digests(&at(versions.0)).await?) } else { BTreeMap::new() };
        let rb = if y.is_some() { rows(there.row_digests(&at(versions.1)).await?) } else { BTreeMap::new() };
        differences.push(PartitionDifference {
            table: t.clone(),
            day: d.clone(),
            rows: (x.map(|v| v.0), y.map(|v| v.0)),
            only_local: ra.keys().filter(|key| !rb.contains_key(key)).copied().collect(),
            only_peer: rb.keys().filter(|key| !ra.contains_key(key)).copied().collect(),
            different: ra.iter().filter(|(key, h)| rb.get(key).is_some_and(|o| o != *h)).map(|(key, _)| *key).collect(),
        });
    }
    let rows = pa.values().fold(0u64, |n, v| n.saturating_add(v.0));
    Ok(Comparison { versions, partitions: keys.len(), rows, differences })
}
