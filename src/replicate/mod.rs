//! Site-to-site operations. [`fencing`] decides which appliance may write; [`sync`] copies the active's mart to
//! the standby (and bootstraps a new site); [`switchover`] swaps the roles with nothing lost. The active-active
//! comparison is here: two appliances that read the same IDBs must hold identical marts (DESIGN.md invariant 2);
//! [`compare`] proves it, or lists every difference down to the surrogate key.

pub mod fencing;
pub mod switchover;
pub mod sync;
pub mod verify;

use futures::StreamExt;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use thiserror::Error;

/// Errors of a comparison.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CompareError {
    /// An appliance could not be reached or answered with an error.
    #[error("{url}: {message}")]
    Peer {
        /// Base URL.
        url: String,
        /// What went wrong.
        message: String,
    },
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

/// An HTTP client for calls to `endpoints` with a per-request `timeout`: the system's roots plus every endpoint's
/// `ca`. The error names the CA file that could not be used.
pub fn client_for(endpoints: &[&Endpoint], timeout: Duration) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder().timeout(timeout);
    for ca in endpoints.iter().filter_map(|e| e.ca.as_ref()) {
        let pem = std::fs::read(ca).map_err(|e| format!("cannot read the CA file {}: {e}", ca.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{} is not a PEM certificate (bundle): {e}", ca.display()))?;
        if certs.is_empty() {
            return Err(format!("{} holds no PEM certificate", ca.display()));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| e.to_string())
}

/// The start of an error answer's body, for a message: at most 64 KiB are read, whatever length the other side
/// announces or sends.
pub async fn error_body(resp: reqwest::Response) -> String {
    const MOST: usize = 64 * 1024;
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while out.len() < MOST {
        match stream.next().await {
            Some(Ok(chunk)) => out.extend_from_slice(&chunk[..chunk.len().min(MOST - out.len())]),
            Some(Err(e)) => return format!("(the answer's body was cut off: {e})"),
            None => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The body of `resp`, refused once it passes `limit` bytes (announced or received): a peer cannot make this
/// appliance hold more than that in memory.
pub async fn read_limited(resp: reqwest::Response, limit: u64) -> Result<Vec<u8>, String> {
    if let Some(n) = resp.content_length().filter(|n| *n > limit) {
        return Err(format!("the answer announces {n} bytes, more than the {limit} accepted"));
    }
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("cut off: {e}"))?;
        if (out.len() as u64).saturating_add(chunk.len() as u64) > limit {
            return Err(format!("the answer is larger than the {limit} bytes accepted"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

async fn get_json(
    client: &reqwest::Client,
    base: &Endpoint,
    path: &str,
    query: &[(&str, String)],
) -> Result<serde_json::Value, CompareError> {
    let url = base.url.trim_end_matches('/').to_string();
    let err = |message: String| CompareError::Peer { url: url.clone(), message };
    let mut req = client.get(format!("{url}{path}")).query(query);
    if let Some(t) = &base.token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.map_err(|e| err(format!("unreachable: {e}")))?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| err(e.to_string()))?;
    if !status.is_success() {
        return Err(err(format!("{status}: {}", String::from_utf8_lossy(&body))));
    }
    serde_json::from_slice(&body).map_err(|e| err(format!("answer is not JSON: {e}")))
}

fn partitions(v: &serde_json::Value) -> PartitionMap {
    v["digests"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            let key = (
                d["table"].as_str().unwrap_or_default().to_string(),
                d["day"].as_str().unwrap_or_default().to_string(),
            );
            (key, (d["rows"].as_u64().unwrap_or(0), d["digest"].as_str().unwrap_or_default().to_string()))
        })
        .collect()
}

fn row_map(v: &serde_json::Value) -> BTreeMap<i64, String> {
    v["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| Some((r[0].as_i64()?, r[1].as_str()?.to_string())))
        .collect()
}

/// Compares the newest marts of two appliances (`table`/`day` narrow it), partition digests first, then row
/// digests of the partitions that differ.
pub async fn compare(
    local: &Endpoint,
    peer: &Endpoint,
    table: Option<&str>,
    day: Option<&str>,
) -> Result<Comparison, CompareError> {
    let client = client_for(&[local, peer], Duration::from_secs(300))
        .map_err(|message| CompareError::Peer { url: local.url.clone(), message })?;
    let mut q: Vec<(&str, String)> = Vec::new();
    if let Some(t) = table {
        q.push(("table", t.to_string()));
    }
    if let Some(d) = day {
        q.push(("day", d.to_string()));
    }
    let (a, b) = (get_json(&client, local, "/v1/digest", &q).await?, get_json(&client, peer, "/v1/digest", &q).await?);
    let versions = (a["mart_version"].as_u64().unwrap_or(0), b["mart_version"].as_u64().unwrap_or(0));
    let (pa, pb) = (partitions(&a), partitions(&b));
    let keys: BTreeSet<&(String, String)> = pa.keys().chain(pb.keys()).collect();
    let mut differences = Vec::new();
    for k in &keys {
        let (x, y) = (pa.get(*k), pb.get(*k));
        if x.is_some() && x == y {
            continue;
        }
        let (t, d) = (&k.0, &k.1);
        let mut rq = vec![("table", t.clone()), ("mart_version", versions.0.to_string())];
        if !d.is_empty() {
            rq.push(("day", d.clone()));
        }
        let ra = if x.is_some() {
            row_map(&get_json(&client, local, "/v1/digest/rows", &rq).await?)
        } else {
            BTreeMap::new()
        };
        rq[1].1 = versions.1.to_string();
        let rb = if y.is_some() {
            row_map(&get_json(&client, peer, "/v1/digest/rows", &rq).await?)
        } else {
            BTreeMap::new()
        };
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
