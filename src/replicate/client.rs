//! The peer client: the only code that calls another appliance. Used by the pipeline (the peer's fence every cycle,
//! the standby's replication pass), `ccmart bootstrap`, `ccmart switchover`, `ccmart compare` and the command
//! line's calls to a running appliance (query, export, digest, promote, sources).
//!
//! What it guarantees, for every call:
//! - one place builds the request: base URL + a path of [`wire::paths`], the endpoint's bearer token as
//!   `Authorization: Bearer` (never in a URL, never in an error or `Debug` output), the endpoint's CA besides the
//!   system's roots;
//! - one total time limit per request (connect, headers and body), set when the client is built — the call sites'
//!   limits of today are the constants below;
//! - nothing the peer sends is held unbounded: a JSON answer is refused past its limit (announced or received),
//!   an error answer's body is read to [`MAX_ERROR_BODY_BYTES`] at most, a file download stops at the size the
//!   manifest announced. The exceptions are said where they are ([`PeerClient::query`], [`PeerClient::export`]);
//! - answers are decoded into the types of [`wire`], never walked as untyped JSON: a missing or mistyped field is
//!   a [`PeerError::Decode`] naming what was expected, not a silent zero;
//! - every failure is a [`PeerError`] carrying the URL that was called; no retries here (the pipeline retries at
//!   its next cycle, an operator reruns a command).

use super::Endpoint;
use crate::model::wire::{self, Manifest, SteppedDown};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Time limit of the fence check the pipeline makes every cycle (`pipeline.rs`, `check_peer`): a peer that does
/// not answer quickly must not delay this site's cycle.
pub const FENCE_TIMEOUT: Duration = Duration::from_secs(3);
/// Time limit of each request of a replication pass or a bootstrap (`sync.rs`), file downloads included: one file
/// must arrive within it (also under `--bandwidth-mbps`).
pub const REPLICATION_TIMEOUT: Duration = Duration::from_secs(600);
/// Time limit of each digest request of `ccmart compare` (digests of a big mart take a while).
pub const COMPARE_TIMEOUT: Duration = Duration::from_secs(300);
/// Time limit of each request of the command line (query, export, digest, promote, sources).
pub const CLI_TIMEOUT: Duration = Duration::from_secs(600);
/// Least time limit of a switchover's requests: the demotion waits for the cycle in flight. A switchover uses
/// `timeout.max(SWITCHOVER_MIN_TIMEOUT)`.
pub const SWITCHOVER_MIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Most bytes of an error answer's body read (for its message), whatever length the peer announces or sends.
pub const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;
/// Characters of an error answer's body shown in [`PeerError`]'s message (the peer's text ends up in the status
/// page and the logs). The whole body read is in [`PeerError::Status::body`].
pub const SHOWN_BODY_CHARS: usize = 200;
/// Largest answer accepted for the fence, a promotion, a step-down, a source change and a maintenance request.
pub const MAX_SMALL_ANSWER_BYTES: u64 = 64 * 1024;
/// Largest `/v1/status` answer accepted (per-IDB health with schema problems grows with the IDBs).
pub const MAX_STATUS_BYTES: u64 = 8 << 20;
/// Largest manifest accepted.
pub const MAX_MANIFEST_BYTES: u64 = super::sync::MAX_MANIFEST_BYTES;
/// Largest `/v1/digest` answer accepted (one line per table and day: ~100 bytes; years of days of every table).
pub const MAX_DIGESTS_BYTES: u64 = 64 << 20;
/// Largest `/v1/digest/rows` answer accepted (~80 bytes per row of one partition: some 13 million rows).
pub const MAX_ROW_DIGESTS_BYTES: u64 = 1 << 30;

/// Why a call to another appliance failed. Every variant that concerns a call carries the URL called (base URL,
/// path and query string; never the token).
///
/// The message (`Display`) is one line without the cause, as the standard library's convention wants (the cause
/// is [`std::error::Error::source`], so `anyhow`'s `{:#}` shows it once). To store or log one complete line (a
/// status field, a `String` error of a caller), use [`PeerError::report`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The base URL is not an `http://` or `https://` URL a path can be appended to.
    #[error("{url}: not an appliance URL: {reason}")]
    BadUrl {
        /// The base URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The endpoint's CA file cannot be read.
    #[error("cannot read the CA file {}", .path.display())]
    CaUnreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The endpoint's CA file is not PEM.
    #[error("{} is not a PEM certificate (bundle)", .path.display())]
    CaInvalid {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The endpoint's CA file holds no certificate.
    #[error("{} holds no PEM certificate", .path.display())]
    CaEmpty {
        /// The file.
        path: PathBuf,
    },
    /// The HTTP client cannot be set up (TLS backend).
    #[error("cannot set up the HTTP client")]
    Client {
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The request cannot be built (a body or query string that does not serialize).
    #[error("{url}: cannot build the request")]
    Request {
        /// Base URL.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// No answer: refused, unresolvable, TLS handshake failed (certificate), or no headers within the time limit.
    #[error("{url}: unreachable")]
    Unreachable {
        /// The URL called.
        url: String,
        /// What the connection said ([`reqwest::Error::is_connect`], [`reqwest::Error::is_timeout`]).
        #[source]
        source: reqwest::Error,
    },
    /// An answer that is not 2xx. `body` is the start of the answer (at most [`MAX_ERROR_BODY_BYTES`]); the
    /// message shows [`SHOWN_BODY_CHARS`] of it. The API's own errors are `{"error": {"code", "message"}}`
    /// ([`PeerError::api_error`]).
    #[error("{url}: {}: {}", status_text(.status), shown(.body))]
    Status {
        /// The URL called.
        url: String,
        /// HTTP status code.
        status: u16,
        /// The start of the body, UTF-8 (lossy).
        body: String,
    },
    /// The answer's body stopped with an error (connection lost, time limit passed).
    #[error("{url}: the answer was cut off")]
    CutOff {
        /// The URL called.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The answer is larger than accepted: announced (`Content-Length`) or while it streamed. For a download the
    /// limit is the size the manifest announced; nothing past it was returned.
    #[error("{url}: {}", too_large_text(.limit, .announced))]
    TooLarge {
        /// The URL called.
        url: String,
        /// Bytes accepted.
        limit: u64,
        /// Bytes announced, when the answer announced more than `limit`.
        announced: Option<u64>,
    },
    /// A 2xx answer that is not the JSON expected.
    #[error("{url}: bad {what}")]
    Decode {
        /// The URL called.
        url: String,
        /// What was expected (`manifest`, `fence answer`, ...).
        what: &'static str,
        /// Where and why it does not decode.
        #[source]
        source: serde_json::Error,
    },
}

impl PeerError {
    /// The URL called (the base URL for [`PeerError::BadUrl`] and [`PeerError::Request`]); `None` for the errors
    /// of setting up the client.
    pub fn url(&self) -> Option<&str> {
        match self {
            PeerError::BadUrl { url, .. }
            | PeerError::Request { url, .. }
            | PeerError::Unreachable { url, .. }
            | PeerError::Status { url, .. }
            | PeerError::CutOff { url, .. }
            | PeerError::TooLarge { url, .. }
            | PeerError::Decode { url, .. } => Some(url),
            PeerError::CaUnreadable { .. }
            | PeerError::CaInvalid { .. }
            | PeerError::CaEmpty { .. }
            | PeerError::Client { .. } => None,
        }
    }

    /// The HTTP status of a non-2xx answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            PeerError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The API's error (`{"error": {"code", "message"}}`) of a non-2xx answer, when its body is one.
    pub fn api_error(&self) -> Option<wire::ErrorDetail> {
        match self {
            PeerError::Status { body, .. } => serde_json::from_str::<wire::ErrorBody>(body).ok().map(|b| b.error),
            _ => None,
        }
    }

    /// True when the appliance was not reached at all (nothing listens, no route, TLS refused, no answer in time):
    /// what the command line's hint "is the appliance running?" is for.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, PeerError::Unreachable { .. })
    }

    /// True when the time limit passed (before the answer's headers or while its body streamed).
    pub fn is_timeout(&self) -> bool {
        match self {
            PeerError::Unreachable { source, .. } | PeerError::CutOff { source, .. } => source.is_timeout(),
            _ => false,
        }
    }

    /// The message and every cause, on one line (`url: unreachable: error sending request: client error
    /// (Connect): tcp connect error: Connection refused (os error 111)`): for a status field or a log line.
    pub fn report(&self) -> String {
        crate::model::report(self)
    }
}

/// `500 Internal Server Error` for 500 (the code alone when it is not a valid HTTP status).
pub fn status_text(status: &u16) -> String {
    reqwest::StatusCode::from_u16(*status).map_or_else(|_| status.to_string(), |s| s.to_string())
}

/// The first [`SHOWN_BODY_CHARS`] characters of a peer-supplied string, with `…` when it was longer: what a
/// message shows of it.
pub(crate) fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(SHOWN_BODY_CHARS).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

fn too_large_text(limit: &u64, announced: &Option<u64>) -> String {
    match announced {
        Some(n) => format!("the answer announces {n} bytes, more than the {limit} accepted"),
        None => format!("the answer is larger than the {limit} bytes accepted"),
    }
}

/// A client for one appliance: its base URL, its token and an HTTP client trusting its CA, with one time limit per
/// request. Cheap to clone (the connection pool is shared). Build one per peer and per time limit; a call site
/// that talks to two appliances (compare, switchover) builds two.
#[derive(Clone)]
pub struct PeerClient {
    /// Base URL without a trailing `/`.
    base: String,
    /// Bearer token secret.
    token: Option<String>,
    http: reqwest::Client,
}

impl std::fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClient")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl PeerClient {
    /// A client for `endpoint` whose requests each end after `timeout` (connect, headers and body together). Reads
    /// the endpoint's CA file now; the error names the file. The URL is checked now: `http` or `https`, a host, no
    /// query string or fragment (a path prefix, e.g. behind a reverse proxy, is kept).
    pub fn new(endpoint: &Endpoint, timeout: Duration) -> Result<Self, PeerError> {
        let base = endpoint.url.trim_end_matches('/').to_string();
        check_base(&base)?;
        let http = http_client(endpoint.ca.as_deref(), timeout)?;
        Ok(PeerClient { base, token: endpoint.token.clone(), http })
    }

    /// The base URL (without a trailing `/`).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET /v1/replication/fence`: the peer's site, role and epoch (reader, operator or peer token). At most
    /// [`MAX_SMALL_ANSWER_BYTES`]. Whether to believe it is `fencing::check_peer_fence`'s decision, not this one's.
    pub async fn fence(&self) -> Result<wire::PeerFence, PeerError> {
        let rb = self.request(reqwest::Method::GET, wire::paths::REPLICATION_FENCE);
        self.json(rb, "fence answer", MAX_SMALL_ANSWER_BYTES).await
    }

    /// `GET /v1/replication/manifest` (peer token): files and versions of the active's mart. At most
    /// [`MAX_MANIFEST_BYTES`]; decoded only (the bytes are dropped before this returns) — checking what it says is
    /// `sync::check_manifest`'s job.
    pub async fn manifest(&self) -> Result<Manifest, PeerError> {
        let rb = self.request(reqwest::Method::GET, wire::paths::REPLICATION_MANIFEST);
        self.json(rb, "manifest", MAX_MANIFEST_BYTES).await
    }

    /// `GET /v1/replication/file?path=` (peer token): one mart file as the manifest listed it, streamed. Refused
    /// with [`PeerError::TooLarge`] (limit `size`) when it announces more than `size`, and the chunk that would
    /// pass `size` is never returned. A body that ends short is not an error here: the caller compares size and
    /// BLAKE3 with the manifest.
    pub async fn download(&self, path: &str, size: u64) -> Result<PeerBody, PeerError> {
        let rb = self
            .request(reqwest::Method::GET, wire::paths::REPLICATION_FILE)
            .query(&wire::FileParams { path: path.to_string() });
        let (url, resp) = self.send(rb).await?;
        PeerBody::new(url, resp, Some(size))
    }

    /// `GET /v1/status` (reader or operator token), the fields of [`wire::StatusSummary`]. At most
    /// [`MAX_STATUS_BYTES`].
    pub async fn status(&self) -> Result<wire::StatusSummary, PeerError> {
        let rb = self.request(reqwest::Method::GET, wire::paths::STATUS);
        self.json(rb, "status", MAX_STATUS_BYTES).await
    }

    /// `POST /v1/admin/promote` (operator token): the appliance becomes active at the next epoch; its new fence.
    /// 409 when it already is active ([`PeerError::api_error`] code `already_active` or `epoch_limit`).
    pub async fn promote(&self) -> Result<wire::Fence, PeerError> {
        let rb = self.request(reqwest::Method::POST, wire::paths::ADMIN_PROMOTE);
        self.json(rb, "promotion answer", MAX_SMALL_ANSWER_BYTES).await
    }

    /// `POST /v1/admin/demote` (operator token): the active finishes its cycle, steps down at the same epoch and
    /// reports its last mart version. 409 (`not_active`) on a standby. The answer waits for the cycle in flight:
    /// build the client with a time limit longer than a cycle.
    pub async fn demote(&self) -> Result<SteppedDown, PeerError> {
        let rb = self.request(reqwest::Method::POST, wire::paths::ADMIN_DEMOTE);
        self.json(rb, "step-down answer", MAX_SMALL_ANSWER_BYTES).await
    }

    /// `POST /v1/admin/maintenance` (operator token): maintenance after the current cycle (answer 202). 409
    /// (`standby`) on a standby.
    pub async fn maintenance(&self) -> Result<wire::MaintenanceScheduled, PeerError> {
        let rb = self.request(reqwest::Method::POST, wire::paths::ADMIN_MAINTENANCE);
        self.json(rb, "maintenance answer", MAX_SMALL_ANSWER_BYTES).await
    }

    /// `POST /v1/admin/sources/{site}/{action}` (operator token): stop or resume waiting for a site's IDBs. 404
    /// (`unknown_site`), 409 (`standby`, `ignored_by_config`).
    pub async fn change_source(&self, site: &str, action: wire::SourceAction) -> Result<wire::SourceChange, PeerError> {
        let rb = self.request(reqwest::Method::POST, &wire::paths::admin_source(site, action));
        self.json(rb, "source change answer", MAX_SMALL_ANSWER_BYTES).await
    }

    /// `GET /v1/digest` (reader, operator or peer token): partition digests. At most [`MAX_DIGESTS_BYTES`].
    pub async fn digests(&self, params: &wire::DigestParams) -> Result<wire::DigestList, PeerError> {
        let rb = self.request(reqwest::Method::GET, wire::paths::DIGEST).query(params);
        self.json(rb, "digest list", MAX_DIGESTS_BYTES).await
    }

    /// `GET /v1/digest/rows` (reader, operator or peer token): key → row digest of one partition (`table`
    /// required, `day` for a partitioned table). At most [`MAX_ROW_DIGESTS_BYTES`].
    pub async fn row_digests(&self, params: &wire::DigestParams) -> Result<wire::RowDigests, PeerError> {
        let rb = self.request(reqwest::Method::GET, wire::paths::DIGEST_ROWS).query(params);
        self.json(rb, "row digests", MAX_ROW_DIGESTS_BYTES).await
    }

    /// `POST /v1/query` (reader or operator token): the answer's body as sent, in `request.format` (JSON, CSV,
    /// Arrow IPC stream, Parquet). Not bounded here, as today: the answering appliance bounds it
    /// (`query.max_result_mb`, `query.max_rows`), and the command line's user asked for it.
    pub async fn query(&self, request: &wire::QueryRequest) -> Result<Bytes, PeerError> {
        let rb = self.request(reqwest::Method::POST, wire::paths::QUERY).json(request);
        let (url, resp) = self.send(rb).await?;
        resp.bytes().await.map_err(|e| PeerError::CutOff { url, source: e.without_url() })
    }

    /// `GET /v1/export/{table}` (reader or operator token): a Parquet file, streamed (not bounded here: the caller
    /// writes it to disk as it comes). [`headers::MART_VERSION`](wire::headers::MART_VERSION) says which version.
    pub async fn export(&self, table: &str, params: &wire::ExportParams) -> Result<PeerBody, PeerError> {
        let rb = self.request(reqwest::Method::GET, &wire::paths::export(table)).query(params);
        let (url, resp) = self.send(rb).await?;
        PeerBody::new(url, resp, None)
    }

    /// A request to `path` (a path of [`wire::paths`]) with the bearer token.
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    /// Sends `rb`; a 2xx answer with the URL called, or the error. A non-2xx answer's body is read to
    /// [`MAX_ERROR_BODY_BYTES`] for the error.
    async fn send(&self, rb: reqwest::RequestBuilder) -> Result<(String, reqwest::Response), PeerError> {
        let request = rb.build().map_err(|source| PeerError::Request { url: self.base.clone(), source })?;
        let url = request.url().to_string();
        // The URL is in `url`; reqwest's copy would repeat it in every message.
        let resp = self
            .http
            .execute(request)
            .await
            .map_err(|e| PeerError::Unreachable { url: url.clone(), source: e.without_url() })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(PeerError::Status { url, status: status.as_u16(), body: error_body(resp).await });
        }
        Ok((url, resp))
    }

    /// Sends `rb` and decodes its 2xx answer as `T`, refusing more than `limit` bytes.
    async fn json<T: DeserializeOwned>(
        &self,
        rb: reqwest::RequestBuilder,
        what: &'static str,
        limit: u64,
    ) -> Result<T, PeerError> {
        let (url, resp) = self.send(rb).await?;
        let body = read_limited(&url, resp, limit).await?;
        serde_json::from_slice(&body).map_err(|source| PeerError::Decode { url, what, source })
    }
}

/// The body of a 2xx answer, chunk by chunk, never past its limit. From [`PeerClient::download`] and
/// [`PeerClient::export`].
#[derive(Debug)]
pub struct PeerBody {
    url: String,
    resp: reqwest::Response,
    limit: Option<u64>,
    received: u64,
}

impl PeerBody {
    /// Refused at once when it announces more than `limit`.
    fn new(url: String, resp: reqwest::Response, limit: Option<u64>) -> Result<Self, PeerError> {
        if let (Some(limit), Some(n)) = (limit, resp.content_length()) {
            if n > limit {
                return Err(PeerError::TooLarge { url, limit, announced: Some(n) });
            }
        }
        Ok(PeerBody { url, resp, limit, received: 0 })
    }

    /// The URL called.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The length the answer announces, if it does (for a progress display; never trusted for memory).
    pub fn content_length(&self) -> Option<u64> {
        self.resp.content_length()
    }

    /// A response header (e.g. [`wire::headers::BLAKE3`]), when it is present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.resp.headers().get(name)?.to_str().ok()
    }

    /// Bytes returned so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The next chunk, `None` at the end. [`PeerError::TooLarge`] instead of the chunk that would pass the limit
    /// (which is then not returned), [`PeerError::CutOff`] when the body stops with an error.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, PeerError> {
        let chunk = self
            .resp
            .chunk()
            .await
            .map_err(|e| PeerError::CutOff { url: self.url.clone(), source: e.without_url() })?;
        let Some(chunk) = chunk else { return Ok(None) };
        let total = self.received.saturating_add(chunk.len() as u64);
        if let Some(limit) = self.limit.filter(|l| total > *l) {
            return Err(PeerError::TooLarge { url: self.url.clone(), limit, announced: None });
        }
        self.received = total;
        Ok(Some(chunk))
    }
}

/// Refuses a base URL a path cannot be appended to (also what the command line checks `--url` with).
pub fn check_base(base: &str) -> Result<(), PeerError> {
    let bad = |reason: &str| PeerError::BadUrl { url: base.to_string(), reason: reason.to_string() };
    let u = url::Url::parse(base).map_err(|e| bad(&e.to_string()))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(bad("only http:// and https:// are supported"));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(bad("a base URL has no query string or fragment"));
    }
    Ok(())
}

/// An HTTP client with a per-request `timeout`, trusting the system's roots and `ca` (today's `client_for`, for
/// one endpoint).
fn http_client(ca: Option<&Path>, timeout: Duration) -> Result<reqwest::Client, PeerError> {
    let mut builder = reqwest::Client::builder().timeout(timeout);
    if let Some(ca) = ca {
        let path = ca.to_path_buf();
        let pem = std::fs::read(ca).map_err(|source| PeerError::CaUnreadable { path: path.clone(), source })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|source| PeerError::CaInvalid { path: path.clone(), source })?;
        if certs.is_empty() {
            return Err(PeerError::CaEmpty { path });
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|source| PeerError::Client { source })
}

/// The start of an error answer's body, for a message: at most [`MAX_ERROR_BODY_BYTES`] are read, whatever length
/// the other side announces or sends (today's `replicate::error_body`).
async fn error_body(mut resp: reqwest::Response) -> String {
    let mut out = Vec::new();
    while out.len() < MAX_ERROR_BODY_BYTES {
        match resp.chunk().await {
            Ok(Some(chunk)) => out.extend_from_slice(&chunk[..chunk.len().min(MAX_ERROR_BODY_BYTES - out.len())]),
            Ok(None) => break,
            Err(e) => return format!("(the answer's body was cut off: {})", e.without_url()),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The body of `resp`, refused once it passes `limit` bytes (announced or received): a peer cannot make this
/// appliance hold more than that in memory (today's `replicate::read_limited`).
async fn read_limited(url: &str, mut resp: reqwest::Response, limit: u64) -> Result<Vec<u8>, PeerError> {
    if let Some(n) = resp.content_length().filter(|n| *n > limit) {
        return Err(PeerError::TooLarge { url: url.to_string(), limit, announced: Some(n) });
    }
    let mut out = Vec::new();
    while let Some(chunk) =
        resp.chunk().await.map_err(|e| PeerError::CutOff { url: url.to_string(), source: e.without_url() })?
    {
        if (out.len() as u64).saturating_add(chunk.len() as u64) > limit {
            return Err(PeerError::TooLarge { url: url.to_string(), limit, announced: None });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use axum::routing::get;

    async fn serve(router: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        url
    }

    fn client(url: &str) -> PeerClient {
        PeerClient::new(&Endpoint::new(url, Some("secret".into())), Duration::from_secs(5)).unwrap()
    }

    #[test]
    fn base_urls_are_checked_and_the_token_is_never_shown() {
        for bad in ["", "site2:8080", "ftp://site2", "http://site2:8080/?x=1"] {
            let e = PeerClient::new(&Endpoint::new(bad, None), FENCE_TIMEOUT).unwrap_err();
            assert!(matches!(e, PeerError::BadUrl { .. }), "{bad}: {e}");
        }
        let c = client("https://site2:8443/ccmart/");
        assert_eq!(c.base_url(), "https://site2:8443/ccmart");
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[tokio::test]
    async fn nothing_listening_is_unreachable_with_the_url() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let e = client(&format!("http://127.0.0.1:{port}")).fence().await.unwrap_err();
        assert!(e.is_unreachable(), "{e}");
        assert_eq!(e.url(), Some(format!("http://127.0.0.1:{port}/v1/replication/fence").as_str()));
        assert!(e.report().contains("unreachable: error sending request"), "{}", e.report());
        assert!(std::error::Error::source(&e).and_then(|s| s.downcast_ref::<reqwest::Error>()).is_some());
    }

    #[tokio::test]
    async fn errors_say_status_body_size_and_shape() {
        let router = axum::Router::new()
            .route(wire::paths::STATUS, get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "x".repeat(1 << 20)) }))
            .route(wire::paths::REPLICATION_FENCE, get(|| async { "y".repeat(100 * 1024) }))
            .route(wire::paths::REPLICATION_MANIFEST, get(|| async { r#"{"fence": 1}"# }));
        let c = client(&serve(router).await);
        let e = c.status().await.unwrap_err();
        assert!(matches!(&e, PeerError::Status { status: 500, body, .. } if body.len() == MAX_ERROR_BODY_BYTES));
        assert!(e.to_string().contains("500 Internal Server Error: xxx") && e.to_string().ends_with('…'), "{e}");
        let e = c.fence().await.unwrap_err();
        assert!(matches!(e, PeerError::TooLarge { announced: Some(102_400), .. }), "{e}");
        let e = c.manifest().await.unwrap_err();
        assert!(e.to_string().contains("bad manifest"), "{e}");
    }

    #[tokio::test]
    async fn a_download_never_returns_more_than_announced() {
        let router = axum::Router::new().route(
            wire::paths::REPLICATION_FILE,
            get(|| async {
                let chunks = futures::stream::iter((0..4).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![7u8; 8]))));
                axum::body::Body::from_stream(chunks)
            }),
        );
        let c = client(&serve(router).await);
        let mut body = c.download("t/part-0.parquet", 20).await.unwrap();
        let mut got = 0;
        let e = loop {
            match body.chunk().await {
                Ok(Some(chunk)) => got += chunk.len(),
                Ok(None) => panic!("32 bytes passed a limit of 20"),
                Err(e) => break e,
            }
        };
        assert!(matches!(e, PeerError::TooLarge { limit: 20, announced: None, .. }), "{e}");
        assert!(got <= 20 && body.url().contains("path=t%2Fpart-0.parquet"), "{got} {}", body.url());
    }
}
