//! Who may call what: bearer tokens with roles, checked in one place for every route.
//!
//! Tokens are configured as SHA-256 hashes of random secrets (`ccmart token create` prints a secret once), so the
//! configuration file never holds a usable credential. Every route has exactly one [`Access`] rule in
//! [`ROUTE_ACCESS`]; a route without a rule is refused (fail closed), so adding an endpoint without deciding who may
//! call it cannot open it by accident.
//!
//! With no token configured the API is open, which the configuration allows only on loopback addresses (see
//! `Config::validate`): an appliance reachable from the network always authenticates.

use super::ApiError;
use crate::model::wire::paths;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// One API token: only the SHA-256 of the secret is kept, so the config file does not hold usable secrets.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who uses it (shown in the audit trail).
    pub name: String,
    /// `reader`, `operator` or `peer`.
    pub role: String,
    /// Lower-case hex SHA-256 of the secret.
    pub sha256: String,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Queries, reports, exports, digests, status.
    Reader,
    /// Everything a reader may, plus source ignore/restore, maintenance and status details (error texts).
    Operator,
    /// Replication between sites only (and digests, for `ccmart compare`).
    Peer,
}

impl Role {
    /// Parses a configured role name (`reader`, `operator`, `peer`).
    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "reader" => Some(Role::Reader),
            "operator" => Some(Role::Operator),
            "peer" => Some(Role::Peer),
            _ => None,
        }
    }

    /// The configured name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Operator => "operator",
            Role::Peer => "peer",
        }
    }
}

/// What a route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token (liveness, and the status page, which holds no data itself).
    Public,
    /// A reader or operator token.
    Read,
    /// An operator token.
    Operate,
    /// A peer token.
    Replicate,
    /// A reader, operator or peer token (digests: compared by operators and by the other site).
    ReadOrReplicate,
    /// Any valid token (metrics scrapes).
    AnyToken,
}

impl Access {
    /// Whether a token of `role` satisfies this rule.
    pub fn allows(self, role: Role) -> bool {
        match self {
            Access::Public | Access::AnyToken => true,
            Access::Read => matches!(role, Role::Reader | Role::Operator),
            Access::Operate => role == Role::Operator,
            Access::Replicate => role == Role::Peer,
            Access::ReadOrReplicate => true,
        }
    }

    /// The roles that satisfy this rule, for error messages and docs.
    pub fn roles(self) -> &'static str {
        match self {
            Access::Public => "none",
            Access::Read => "reader or operator",
            Access::Operate => "operator",
            Access::Replicate => "peer",
            Access::ReadOrReplicate | Access::AnyToken => "reader, operator or peer",
        }
    }
}

/// Every route of the HTTP API (method, axum path template) and who may call it. The router and this table are
/// checked against each other by the auth-matrix test.
pub const ROUTE_ACCESS: &[(&str, &str, Access)] = &[
    ("GET", paths::HEALTHZ, Access::Public),
    ("GET", paths::STATUS_PAGE, Access::Public),
    ("GET", paths::STATUS, Access::Read),
    ("GET", paths::TABLES, Access::Read),
    ("POST", paths::QUERY, Access::Read),
    ("GET", paths::EXPORT, Access::Read),
    ("GET", paths::REPORTS, Access::Read),
    ("GET", paths::REPORT, Access::Read),
    ("GET", paths::DIGEST, Access::ReadOrReplicate),
    ("GET", paths::DIGEST_ROWS, Access::ReadOrReplicate),
    ("POST", paths::ADMIN_SOURCE, Access::Operate),
    ("POST", paths::ADMIN_MAINTENANCE, Access::Operate),
    ("POST", paths::ADMIN_PROMOTE, Access::Operate),
    ("POST", paths::ADMIN_DEMOTE, Access::Operate),
    ("GET", paths::REPLICATION_FENCE, Access::ReadOrReplicate),
    ("GET", paths::REPLICATION_MANIFEST, Access::Replicate),
    ("GET", paths::REPLICATION_FILE, Access::Replicate),
    ("GET", paths::OPENAPI, Access::Public),
    ("GET", paths::METRICS, Access::AnyToken),
];

/// The rule for a request, `None` when the route has none (refused).
pub fn route_access(method: &Method, template: &str) -> Option<Access> {
    ROUTE_ACCESS.iter().find(|(m, p, _)| *p == template && method.as_str() == *m).map(|(_, _, a)| *a)
}

/// The caller of a request, as established by [`require_token`] and available to handlers as an extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Token name (`[[token]] name`), or `local` when no token is configured.
    pub name: String,
    /// Its role; `Operator` when no token is configured (loopback only).
    pub role: Role,
}

#[derive(Debug)]
struct KnownToken {
    name: String,
    role: Role,
    hash: [u8; 32],
}

/// The configured tokens, ready to check secrets against.
#[derive(Debug, Clone, Default)]
pub struct TokenRegistry {
    tokens: Arc<Vec<KnownToken>>,
}

impl TokenRegistry {
    /// Tokens from the configuration. Entries whose role or hash does not parse are skipped here because
    /// `Config::validate` already refused them.
    pub fn new(tokens: &[TokenConfig]) -> Self {
        let tokens = tokens
            .iter()
            .filter_map(|t| {
                let role = Role::parse(&t.role)?;
                let bytes = hex::decode(t.sha256.trim()).ok()?;
                let hash: [u8; 32] = bytes.try_into().ok()?;
                Some(KnownToken { name: t.name.clone(), role, hash })
            })
            .collect();
        TokenRegistry { tokens: Arc::new(tokens) }
    }

    /// True when no token is configured: everything is allowed (the configuration permits this only on loopback).
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The token whose secret this is. The hash comparison looks at every byte of every token, so the time it
    /// takes says nothing about how close a guess was.
    pub fn authenticate(&self, secret: &str) -> Option<Principal> {
        let hash: [u8; 32] = Sha256::digest(secret.trim().as_bytes()).into();
        let mut found = None;
        for t in self.tokens.iter() {
            let diff = t.hash.iter().zip(hash.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 && found.is_none() {
                found = Some(Principal { name: t.name.clone(), role: t.role });
            }
        }
        found
    }

    /// Checks a request's `Authorization: Bearer` header against `access`: 401 without a valid token (the answer
    /// does not say whether the token was missing, unknown or malformed), 403 with a valid token of the wrong role.
    pub fn authorize(&self, headers: &HeaderMap, access: Access) -> Result<Principal, ApiError> {
        if access == Access::Public || self.is_open() {
            return Ok(Principal { name: "local".into(), role: Role::Operator });
        }
        let unauthorized =
            || ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "a valid bearer token is required");
        let secret = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .ok_or_else(unauthorized)?;
        let principal = self.authenticate(secret).ok_or_else(unauthorized)?;
        if !access.allows(principal.role) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("this call needs a token of role {}", access.roles()),
            ));
        }
        Ok(principal)
    }
}

/// Lower-case hex SHA-256 of a token secret, as stored in `[[token]] sha256`.
pub fn hash_token(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.trim().as_bytes()))
}

/// A new random token secret (256 bits from the OS generator, hex, prefixed so that leaked secrets are easy to
/// find with secret scanners).
pub fn new_token_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("ccm_{}", hex::encode(bytes))
}

/// Middleware: authenticates every request against the rule of its route and stores the [`Principal`] in the
/// request's extensions. Requests for unknown paths need a valid token too, so that probing reveals nothing.
pub async fn require_token(State(tokens): State<TokenRegistry>, mut req: Request, next: Next) -> Response {
    let access = match req.extensions().get::<MatchedPath>() {
        Some(p) => match route_access(req.method(), p.as_str()) {
            Some(a) => a,
            None => {
                tracing::error!(route = p.as_str(), method = %req.method(), "route has no access rule; refused");
                return ApiError::new(StatusCode::FORBIDDEN, "forbidden", "this route has no access rule")
                    .into_response();
            }
        },
        None => Access::AnyToken,
    };
    match tokens.authorize(req.headers(), access) {
        Ok(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Err(e) => {
            let mut r = e.into_response();
            if r.status() == StatusCode::UNAUTHORIZED {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            }
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The paths of `model::wire` and the routes the server authorizes are the same set (the auth-matrix test
    /// already holds `ROUTE_ACCESS` equal to the router).
    #[test]
    fn wire_paths_are_the_served_routes() {
        let served: std::collections::BTreeSet<&str> = ROUTE_ACCESS.iter().map(|(_, p, _)| *p).collect();
        let here: std::collections::BTreeSet<&str> = crate::model::wire::paths::ALL.iter().copied().collect();
        assert_eq!(here, served);
        assert_eq!(crate::model::wire::paths::ALL.len(), here.len(), "each path once");
    }

    #[test]
    fn tokens_are_checked_by_hash_and_role() {
        let secret = new_token_secret();
        let reg = TokenRegistry::new(&[TokenConfig {
            name: "ops".into(),
            role: "operator".into(),
            sha256: hash_token(&secret),
        }]);
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().unwrap());
            h
        };
        let ok = with(&format!("Bearer {secret}"));
        assert_eq!(reg.authorize(&ok, Access::Operate).unwrap().name, "ops");
        assert_eq!(reg.authorize(&ok, Access::Read).unwrap().role, Role::Operator);
        assert_eq!(reg.authorize(&ok, Access::Replicate).unwrap_err().status, StatusCode::FORBIDDEN);
        assert_eq!(reg.authorize(&with("Bearer nope"), Access::Read).unwrap_err().status, StatusCode::UNAUTHORIZED);
        assert_eq!(reg.authorize(&with(&secret), Access::Read).unwrap_err().status, StatusCode::UNAUTHORIZED);
        assert_eq!(reg.authorize(&HeaderMap::new(), Access::Read).unwrap_err().status, StatusCode::UNAUTHORIZED);
        assert!(reg.authorize(&HeaderMap::new(), Access::Public).is_ok());
        assert!(TokenRegistry::new(&[]).authorize(&HeaderMap::new(), Access::Operate).is_ok());
    }

    #[test]
    fn roles_nest_as_documented() {
        assert!(Access::Read.allows(Role::Operator) && !Access::Read.allows(Role::Peer));
        assert!(!Access::Operate.allows(Role::Reader) && !Access::Replicate.allows(Role::Operator));
        assert!(Access::ReadOrReplicate.allows(Role::Peer));
    }
}
