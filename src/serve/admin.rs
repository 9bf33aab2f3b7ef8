//! Operator calls: ignore or restore a site's IDBs at run time (disaster recovery), authenticated with a
//! bearer token of role `operator`. Tokens are kept as SHA-256 hashes; the secret is shown once by
//! `ccmart token create`.

use super::{ApiError, ServeState};
use crate::config::TokenConfig;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use sha2::{Digest, Sha256};

/// What the admin endpoints need to know.
#[derive(Debug, Clone, Default)]
pub struct AdminAccess {
    /// Configured tokens.
    pub tokens: Vec<TokenConfig>,
    /// Sites of the configured IDBs.
    pub sites: Vec<String>,
    /// Sites ignored by the configuration (`merge.ignore_sources`): only a config change restores them.
    pub config_ignored: Vec<String>,
}

/// Lower-case hex SHA-256 of a token secret, as stored in `[[token]] sha256`.
pub fn hash_token(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new random token secret (256 bits, hex).
pub fn new_token_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("ccm_{}", hex::encode(bytes))
}

/// Whether a token of `have` may do what needs `need`: operators may also read, peers only replicate.
fn role_allows(have: &str, need: &str) -> bool {
    have == need || (have == "operator" && need == "reader")
}

/// Checks the bearer token for `role`: 401 without a valid token (no detail), 403 with the wrong role.
/// Returns the token's name.
pub fn authorize(headers: &HeaderMap, access: &AdminAccess, role: &str) -> Result<String, ApiError> {
    let unauthorized = || ApiError {
        status: StatusCode::UNAUTHORIZED,
        code: "unauthorized",
        message: "a valid bearer token is required".into(),
    };
    let secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(unauthorized)?;
    let hash = hash_token(secret.trim());
    let token = access.tokens.iter().find(|t| t.sha256.eq_ignore_ascii_case(&hash)).ok_or_else(unauthorized)?;
    if !role_allows(&token.role, role) {
        return Err(ApiError {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            message: format!("this call needs a token of role '{role}'"),
        });
    }
    Ok(token.name.clone())
}

/// `POST /v1/admin/sources/{site}/ignore` and `/restore`.
pub async fn change_source(
    State(state): State<ServeState>,
    UrlPath((site, action)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let who = authorize(&headers, &state.admin, "operator")?;
    let ignore = match action.as_str() {
        "ignore" => true,
        "restore" => false,
        other => {
            return Err(ApiError::bad_request("unknown_action", format!("'{other}': use ignore or restore")));
        }
    };
    if !state.admin.sites.contains(&site) {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            code: "unknown_site",
            message: format!("no IDB is configured at site '{site}' (sites: {})", state.admin.sites.join(", ")),
        });
    }
    if !ignore && state.admin.config_ignored.contains(&site) {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            code: "ignored_by_config",
            message: format!("'{site}' is in merge.ignore_sources of the configuration; remove it there and restart"),
        });
    }
    let store = state.store.clone();
    let actor = format!("api:{who}");
    let site_for_store = site.clone();
    let changed = tokio::task::spawn_blocking(move || store.set_site_ignored(&site_for_store, ignore, &actor))
        .await
        .map_err(|e| ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, code: "internal", message: e.to_string() })?
        .map_err(|e| ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, code: "staging", message: e.to_string() })?;
    tracing::warn!(site, ignore, changed, by = who, "source site ignore changed");
    Ok(Json(serde_json::json!({"site": site, "ignored": ignore, "changed": changed})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_by_hash_and_role() {
        let secret = new_token_secret();
        let access = AdminAccess {
            tokens: vec![TokenConfig { name: "ops".into(), role: "operator".into(), sha256: hash_token(&secret) }],
            ..Default::default()
        };
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().unwrap());
            h
        };
        assert_eq!(authorize(&with(&format!("Bearer {secret}")), &access, "operator").unwrap(), "ops");
        assert_eq!(authorize(&with(&format!("Bearer {secret}")), &access, "reader").unwrap(), "ops");
        let e = authorize(&with(&format!("Bearer {secret}")), &access, "peer").unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        let e = authorize(&with("Bearer nope"), &access, "operator").unwrap_err();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        assert_eq!(authorize(&HeaderMap::new(), &access, "operator").unwrap_err().status, StatusCode::UNAUTHORIZED);
    }
}
