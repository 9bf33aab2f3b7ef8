//! Operator calls: ignore or restore a site's IDBs at run time (disaster recovery). The caller is an operator
//! (checked by [`super::auth::require_token`]) and is named in the audit table.

use super::auth::Principal;
use super::{ApiError, ServeState};
pub use crate::maintenance::MaintenanceTrigger;
pub use crate::model::wire::SteppedDown;
pub use crate::model::wire::{MaintenanceScheduled, SourceChange};
use crate::replicate::fencing::{Fence, PeerFence, Role};
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::{Extension, Json};

/// Runs maintenance (retention, catalog pruning, vacuum) after the current cycle instead of waiting for
/// `maintenance.interval_secs`. The figures appear in `ccmart_maintenance_runs`.
#[utoipa::path(post, path = "/v1/admin/maintenance", tag = "operations",
    responses((status = 202, description = "Scheduled", body = MaintenanceScheduled),
        (status = 401, description = "No valid bearer token", body = super::ErrorBody),
        (status = 403, description = "Not an operator token", body = super::ErrorBody),
        (status = 409, description = "Standby: maintenance runs at the active site", body = super::ErrorBody)))]
pub async fn request_maintenance(
    State(state): State<ServeState>,
    Extension(caller): Extension<Principal>,
) -> Result<(StatusCode, Json<MaintenanceScheduled>), ApiError> {
    refuse_on_standby(&state)?;
    let newly_requested = state.maintenance.request();
    tracing::info!(by = caller.name, newly_requested, "maintenance requested");
    let results = "SELECT * FROM ccmart_maintenance_runs ORDER BY seq DESC".to_string();
    Ok((StatusCode::ACCEPTED, Json(MaintenanceScheduled { scheduled: true, newly_requested, results })))
}

/// Refuses calls that would change what a standby writes: only the active site changes its mart.
/// Runs a staging write on a blocking thread; its failure (or the thread's) is a 500 naming its cause.
async fn on_staging<T, E>(work: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: std::error::Error + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "staging", crate::model::report(&e)))
}

fn refuse_on_standby(state: &ServeState) -> Result<(), ApiError> {
    let f = state.fence.get();
    if f.role == Role::Standby {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "standby",
            format!(
                "this appliance is standby at epoch {} ({}); make the change at the active site, or promote this one",
                f.epoch, f.reason
            ),
        ));
    }
    Ok(())
}

/// Disaster recovery: makes this standby appliance active at the next epoch. The other site stops writing as
/// soon as it hears of the higher epoch.
#[utoipa::path(post, path = "/v1/admin/promote", tag = "operations",
    responses((status = 200, description = "Now active", body = Fence),
        (status = 401, description = "No valid bearer token", body = super::ErrorBody),
        (status = 403, description = "Not an operator token", body = super::ErrorBody),
        (status = 409, description = "Already active", body = super::ErrorBody)))]
pub async fn promote(
    State(state): State<ServeState>,
    Extension(caller): Extension<Principal>,
) -> Result<Json<Fence>, ApiError> {
    let fence = state.fence.clone();
    let by = format!("api:{}", caller.name);
    let now = chrono::Utc::now().timestamp();
    let promoted = on_staging(move || fence.promote(&by, now)).await?;
    promoted.map(Json).ok_or_else(|| {
        let f = state.fence.get();
        if f.role == Role::Standby {
            return ApiError::new(
                StatusCode::CONFLICT,
                "epoch_limit",
                format!("the epoch {} cannot grow further (at most {})", f.epoch, crate::replicate::fencing::MAX_EPOCH),
            );
        }
        ApiError::new(
            StatusCode::CONFLICT,
            "already_active",
            format!("this appliance is already active at epoch {}", f.epoch),
        )
    })
}

/// Planned switchover, first step: this active appliance finishes the cycle in flight, stops writing and becomes
/// standby at the same epoch, and reports its last mart version. `ccmart switchover` then waits until the other
/// site has copied that version and promotes it. If the switchover is abandoned, promote this site again.
#[utoipa::path(post, path = "/v1/admin/demote", tag = "operations",
    responses((status = 200, description = "Now standby; the last version written", body = SteppedDown),
        (status = 401, description = "No valid bearer token", body = super::ErrorBody),
        (status = 403, description = "Not an operator token", body = super::ErrorBody),
        (status = 409, description = "Not active", body = super::ErrorBody)))]
pub async fn demote(
    State(state): State<ServeState>,
    Extension(caller): Extension<Principal>,
) -> Result<Json<SteppedDown>, ApiError> {
    let by = format!("api:{}", caller.name);
    let internal = |code: &'static str, e: String| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, code, e);
    let fence = state
        .fence
        .demote(&by, chrono::Utc::now().timestamp())
        .await
        .map_err(|e| internal("staging", crate::model::report(&e)))?
        .ok_or_else(|| {
            let f = state.fence.get();
            ApiError::new(
                StatusCode::CONFLICT,
                "not_active",
                format!("this appliance is standby at epoch {} ({}); nothing to step down from", f.epoch, f.reason),
            )
        })?;
    let mart_version =
        state.store.latest_snapshot().map_err(|e| internal("staging", crate::model::report(&e)))?.map(|s| s.version);
    Ok(Json(SteppedDown { fence, mart_version }))
}

/// This appliance's site, role and epoch: what the peer site checks every cycle.
#[utoipa::path(get, path = "/v1/replication/fence", tag = "replication",
    responses((status = 200, description = "Role and epoch", body = PeerFence),
        (status = 401, description = "No valid bearer token", body = super::ErrorBody)))]
pub async fn fence(State(state): State<ServeState>) -> Json<PeerFence> {
    Json(PeerFence { site: state.status.get().site, fence: state.fence.get() })
}

/// What the admin endpoints need to know.
#[derive(Debug, Clone, Default)]
pub struct AdminAccess {
    /// Sites of the configured IDBs.
    pub sites: Vec<String>,
    /// Sites ignored by the configuration (`merge.ignore_sources`): only a config change restores them.
    pub config_ignored: Vec<String>,
}

/// Disaster recovery: stop (`ignore`) or resume (`restore`) waiting for a site's IDBs, without a restart.
/// Recorded in `ccmart_source_audit` with the token's name.
#[utoipa::path(post, path = "/v1/admin/sources/{site}/{action}", tag = "operations",
    params(("site" = String, Path, description = "Site of configured IDBs"),
        ("action" = String, Path, description = "ignore or restore")),
    responses((status = 200, description = "Done", body = SourceChange),
        (status = 400, description = "Unknown action", body = super::ErrorBody),
        (status = 401, description = "No valid bearer token", body = super::ErrorBody),
        (status = 403, description = "Not an operator token", body = super::ErrorBody),
        (status = 404, description = "No IDB at that site", body = super::ErrorBody),
        (status = 409, description = "Ignored by the configuration", body = super::ErrorBody)))]
pub async fn change_source(
    State(state): State<ServeState>,
    UrlPath((site, action)): UrlPath<(String, String)>,
    Extension(caller): Extension<Principal>,
) -> Result<Json<SourceChange>, ApiError> {
    let who = caller.name;
    refuse_on_standby(&state)?;
    let ignore = match action.as_str() {
        "ignore" => true,
        "restore" => false,
        other => {
            return Err(ApiError::bad_request("unknown_action", format!("'{other}': use ignore or restore")));
        }
    };
    if !state.admin.sites.contains(&site) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_site",
            format!("no IDB is configured at site '{site}' (sites: {})", state.admin.sites.join(", ")),
        ));
    }
    if !ignore && state.admin.config_ignored.contains(&site) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "ignored_by_config",
            format!("'{site}' is in merge.ignore_sources of the configuration; remove it there and restart"),
        ));
    }
    let store = state.store.clone();
    let actor = format!("api:{who}");
    let site_for_store = site.clone();
    let changed = on_staging(move || store.set_site_ignored(&site_for_store, ignore, &actor)).await?;
    tracing::warn!(site, ignore, changed, by = who, "source site ignore changed");
    Ok(Json(SourceChange { site, ignored: ignore, changed }))
}
