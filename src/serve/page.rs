//! `GET /`: the status page — one self-contained HTML file (inline CSS and JS, no external assets, so it works
//! offline in a data center). It holds no data itself: its script reads `/v1/status` and `/v1/query` with the
//! bearer token the user enters (kept in the tab's sessionStorage), so the page needs no token to load.
//!
//! The Content-Security-Policy allows exactly the page's own inline script and style (by SHA-256) and requests
//! to the same origin; nothing else can run or load, even if a value shown on the page were hostile (all values
//! are set as text, never as HTML).

use axum::http::header;
use axum::response::IntoResponse;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

/// The page.
pub const STATUS_PAGE: &str = include_str!("status_page.html");

/// `'sha256-…'` of the text between the first `<{tag}>` and `</{tag}>` of the page.
fn inline_hash(tag: &str) -> String {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let body = STATUS_PAGE
        .find(&open)
        .and_then(|s| {
            STATUS_PAGE[s + open.len()..].find(&close).map(|e| &STATUS_PAGE[s + open.len()..s + open.len() + e])
        })
        .unwrap_or_default();
    format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body.as_bytes())))
}

/// The page's Content-Security-Policy.
pub static CONTENT_SECURITY_POLICY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self' data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        inline_hash("script"),
        inline_hash("style")
    )
});

/// Serves the page.
#[utoipa::path(get, path = "/", tag = "operations", security(()),
    responses((status = 200, description = "The status page (HTML, no external assets)", content_type = "text/html")))]
pub async fn status_page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY.as_str()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        STATUS_PAGE,
    )
}
