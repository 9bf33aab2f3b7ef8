//! Replication endpoints, active side (peer token): the manifest of the mart's files and versions, and the files
//! themselves. See [`crate::replicate::sync`] for the standby side and its guarantees.

use super::{ApiError, ApiQuery, ServeState};
pub use crate::model::wire::FileParams;
use crate::replicate::fencing::PeerFence;
use crate::replicate::sync::{list_files_before, local_path, Manifest};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::Json;

fn internal(e: impl std::error::Error + 'static) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", crate::model::report(&e))
}

/// The mart's files (path, size, BLAKE3) and its queryable versions: what a standby needs to copy.
#[utoipa::path(get, path = "/v1/replication/manifest", tag = "replication",
    responses((status = 200, description = "Files and versions", body = Manifest),
        (status = 401, description = "No valid bearer token", body = super::ErrorBody),
        (status = 403, description = "Not a peer token", body = super::ErrorBody)))]
pub async fn manifest(State(state): State<ServeState>) -> Result<Json<Manifest>, ApiError> {
    let (root, cache, store) = (state.mart_root.clone(), state.hashes.clone(), state.store.clone());
    let fence = PeerFence { site: state.status.get().site, fence: state.fence.get() };
    // Versions first: every file they need exists before the listing starts (files are only added or vacuumed
    // after their versions left the catalog).
    let (versions, files) = tokio::task::spawn_blocking(move || {
        let cutoff = std::time::SystemTime::now();
        let versions = store.snapshots().map_err(internal)?;
        let files = list_files_before(&root, &cache, Some(cutoff)).map_err(internal)?;
        Ok::<_, ApiError>((versions, files))
    })
    .await
    .map_err(internal)??;
    Ok(Json(Manifest { fence, versions, files }))
}

/// One file of the mart, streamed, with its BLAKE3 in `x-ccmart-blake3`.
/// Bytes read from disk per chunk of a file download: large reads keep a bootstrap disk-bound instead of paying a
/// blocking-thread hop per 4 KiB (the default of `ReaderStream`).
const STREAM_CHUNK_BYTES: usize = 1 << 20;

#[utoipa::path(get, path = "/v1/replication/file", tag = "replication", params(FileParams),
    responses((status = 200, description = "The file", content_type = "application/octet-stream"),
        (status = 400, description = "Not a plain relative path", body = super::ErrorBody),
        (status = 404, description = "No such file (vacuumed: fetch a new manifest)", body = super::ErrorBody)))]
pub async fn file(State(state): State<ServeState>, ApiQuery(p): ApiQuery<FileParams>) -> Result<Response, ApiError> {
    let path = local_path(&state.mart_root, &p.path).map_err(|e| ApiError::bad_request("bad_path", e.to_string()))?;
    let (_, hash) = {
        let (cache, path) = (state.hashes.clone(), path.clone());
        tokio::task::spawn_blocking(move || cache.hash(&path)).await.map_err(internal)?
    }
    .map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_file",
            format!("{} is not in the mart (vacuumed?): fetch a new manifest", p.path),
        )
    })?;
    let file = tokio::fs::File::open(&path).await.map_err(internal)?;
    let mut resp =
        Response::new(Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, STREAM_CHUNK_BYTES)));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/octet-stream"));
    if let Ok(v) = header::HeaderValue::from_str(&hash) {
        h.insert("x-ccmart-blake3", v);
    }
    Ok(resp)
}
