//! Fleet upgrades, rollback, backups and restore over the API.

use super::{
    AppState,
    body::JsonBody,
    error::ApiError,
    instances,
    operations::accepted,
    params::{Tenant, TenantBackup},
};
use crate::{
    api::auth::{PendingAudit, Principal, policy::Need},
    backup::BackupError,
    upgrade::{UpgradeError, UpgradeRequest, state::UpgradeState},
};
use axum::{
    Extension, Json,
    extract::{Path, State},
    http::StatusCode,
    response::Response,
};
use serde::Deserialize;

impl From<UpgradeError> for ApiError {
    fn from(e: UpgradeError) -> ApiError {
        let m = e.to_string();
        match e {
            UpgradeError::Busy { .. } | UpgradeError::NotActive { .. } => ApiError::Conflict(m),
            UpgradeError::UnknownApp(_) | UpgradeError::NoUpgrade | UpgradeError::NoPrevious(_) => {
                ApiError::NotFound(m)
            }
            UpgradeError::UnknownVersion { .. }
            | UpgradeError::NothingToDo { .. }
            | UpgradeError::BadRequest(_) => ApiError::BadRequest(m),
            UpgradeError::Io { .. } => ApiError::Internal(m),
        }
    }
}

impl From<BackupError> for ApiError {
    fn from(e: BackupError) -> ApiError {
        let m = e.to_string();
        match e {
            BackupError::UnknownTenant(_)
            | BackupError::NotFound { .. }
            | BackupError::NoRepository(_) => ApiError::NotFound(m),
            BackupError::Invalid { .. } => ApiError::BadRequest(m),
            BackupError::Foreign { .. } => ApiError::Forbidden(m),
            BackupError::Corrupt { .. }
            | BackupError::Command { .. }
            | BackupError::Exists(_)
            | BackupError::NoRoom { .. }
            | BackupError::NoRoomToRestore { .. }
            | BackupError::Busy(_)
            | BackupError::RecoveryRunning
            | BackupError::NotReady { .. }
            | BackupError::Offsite(_) => ApiError::Conflict(m),
            BackupError::Io { .. } | BackupError::Runtime(_) => ApiError::Internal(m),
            // The inner error's kind, with the whole message.
            BackupError::Unchanged(inner) => match ApiError::from(*inner) {
                ApiError::Internal(_) => ApiError::Internal(m),
                ApiError::NotFound(_) => ApiError::NotFound(m),
                ApiError::BadRequest(_) => ApiError::BadRequest(m),
                ApiError::Forbidden(_) => ApiError::Forbidden(m),
                _ => ApiError::Conflict(m),
            },
        }
    }
}

#[utoipa::path(post, path = "/v1/upgrades", tag = "fleet", request_body = crate::upgrade::UpgradeRequest,
    responses((status = 201, description = "Started", body = UpgradeState)))]
pub async fn upgrade_start(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<UpgradeRequest>,
) -> Result<(StatusCode, Json<UpgradeState>), ApiError> {
    let up = s.fleet.upgrades.clone();
    let started = tokio::task::spawn_blocking(move || up.start(req))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok((StatusCode::CREATED, Json(started)))
}

/// `berth upgrade --dry-run`: the upgrade `POST /v1/upgrades` would start (its tenants, waves
/// and skipped tenants, status `running`, wave 0), checked the same way; nothing starts.
#[utoipa::path(post, path = "/v1/previews/upgrade", tag = "fleet", request_body = crate::upgrade::UpgradeRequest,
    responses((status = 200, description = "Checked, not started", body = UpgradeState)))]
pub async fn upgrade_preview(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<UpgradeRequest>,
) -> Result<Json<UpgradeState>, ApiError> {
    let up = s.fleet.upgrades.clone();
    let planned = tokio::task::spawn_blocking(move || up.preview(&req))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(planned))
}

#[utoipa::path(get, path = "/v1/upgrades/current", tag = "fleet",
    responses((status = 200, description = "The current (or last) fleet upgrade", body = UpgradeState)))]
pub async fn upgrade_show(State(s): State<AppState>) -> Result<Json<UpgradeState>, ApiError> {
    s.fleet
        .upgrades
        .status()
        .map(Json)
        .ok_or_else(|| UpgradeError::NoUpgrade.into())
}

#[utoipa::path(post, path = "/v1/upgrades/current/{action}", tag = "fleet",
    params(("action" = String, Path, description = "pause, resume or abort")),
    responses((status = 200, description = "The upgrade after the action", body = UpgradeState)))]
pub async fn upgrade_control(
    State(s): State<AppState>,
    Path(action): Path<String>,
) -> Result<Json<UpgradeState>, ApiError> {
    let u = &s.fleet.upgrades;
    let r = match action.as_str() {
        "pause" => u.pause(),
        "resume" => u.resume(),
        "abort" => u.abort(),
        other => {
            return Err(ApiError::BadRequest(format!(
                "{other:?} is not pause, resume or abort"
            )));
        }
    };
    Ok(Json(r?))
}

#[utoipa::path(post, path = "/v1/instances/{tenant}/rollback", tag = "fleet", params(("tenant" = String, Path, description = "The tenant (a DNS label)")),
    responses((status = 201, description = "A rollback to the previous version, started", body = UpgradeState)))]
pub async fn rollback(
    State(s): State<AppState>,
    Tenant(tenant): Tenant,
) -> Result<(StatusCode, Json<UpgradeState>), ApiError> {
    instances::instance_path(&s, &tenant)?;
    instances::not_moved(&s, &tenant)?;
    let up = s.fleet.upgrades.clone();
    let started = tokio::task::spawn_blocking(move || up.rollback(&tenant))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok((StatusCode::CREATED, Json(started)))
}

#[utoipa::path(get, path = "/v1/instances/{tenant}/backups", tag = "backups", params(("tenant" = String, Path, description = "The tenant (a DNS label)")),
    responses((status = 200, description = "Policy, last scheduled run and backups", body = serde_json::Value)))]
pub async fn backup_index(
    State(s): State<AppState>,
    Tenant(tenant): Tenant,
) -> Result<Json<serde_json::Value>, ApiError> {
    instances::instance_path(&s, &tenant)?;
    let policy =
        s.cx.passes
            .desired()
            .instances
            .get(&tenant)
            .map(|i| i.backups.clone());
    let (offsite, failed) = s.fleet.backups.list_offsite(&tenant).await;
    Ok(Json(serde_json::json!({
        "tenant": tenant,
        "policy": policy,
        "last_scheduled": s.fleet.backup_schedule.last(&tenant),
        "backups": s.fleet.backups.list(&tenant),
        "offsite": offsite,
        "offsite_failed": failed,
        "offsite_records": s.fleet.backups.offsite_records(&tenant),
    })))
}

/// Starts a backup of the tenant as an operation (`GET /v1/operations/{id}` follows it; its
/// result is the new backup).
#[utoipa::path(post, path = "/v1/instances/{tenant}/backups", tag = "backups", params(("tenant" = String, Path, description = "The tenant (a DNS label)")),
    responses((status = 202, description = "The backup, started as an operation", body = crate::ops::Operation)))]
pub async fn backup_create(
    State(s): State<AppState>,
    pending: Option<Extension<PendingAudit>>,
    Tenant(tenant): Tenant,
) -> Result<Response, ApiError> {
    instances::instance_path(&s, &tenant)?;
    instances::not_moved(&s, &tenant)?;
    if !s.cx.passes.desired().instances.contains_key(&tenant) {
        return Err(instances::not_found(&tenant));
    }
    let (backups, t) = (s.fleet.backups.clone(), tenant.clone());
    accepted(&s, "backup.create", &tenant, pending, async move {
        let info = backups.create(&t).await?;
        Ok(serde_json::to_value(info).unwrap_or_default())
    })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// `ID` (this tenant's backup, restored in place) or `SOURCE:ID` (cloned from another).
    pub from: String,
    /// `false`: no safety backup of what the tenant holds first (operators only, in place
    /// only). For a tenant that holds nothing worth keeping: a move's catch-up on the arriving
    /// host, whose copy came from the same repository. A restore that fails then leaves the
    /// tenant as the failure left it.
    #[serde(default = "yes")]
    pub safety_backup: bool,
}

fn yes() -> bool {
    true
}

/// `from` is `ID` (a backup of this tenant, restored in place) or `SOURCE:ID` (a backup of
/// another tenant, cloned into this new one).
#[utoipa::path(post, path = "/v1/instances/{tenant}/restore", tag = "backups", params(("tenant" = String, Path, description = "The tenant (a DNS label)")),
    request_body = RestoreRequest,
    responses((status = 202, description = "The restore (or clone), started as an operation", body = crate::ops::Operation)))]
pub async fn restore(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    pending: Option<Extension<PendingAudit>>,
    Tenant(tenant): Tenant,
    JsonBody(req): JsonBody<RestoreRequest>,
) -> Result<Response, ApiError> {
    instances::instance_path(&s, &tenant)?;
    instances::not_moved(&s, &tenant)?;
    let (source, id) = backup_ref(&req.from, &tenant)?;
    who.check(Need::Manage, Some(&source))?;
    // A clone makes a tenant, and making tenants is the operator's alone: a tenant token
    // bound to a name no tenant has yet must not bring one into being.
    if source != tenant && !who.is_operator() {
        return Err(ApiError::Forbidden(format!(
            "cloning {source}'s backup into a new tenant {tenant:?} creates a tenant: operators only"
        )));
    }
    if !req.safety_backup && (source != tenant || !who.is_operator()) {
        return Err(ApiError::Forbidden(
            "safety_backup: false is for an operator's restore in place only".into(),
        ));
    }
    let (fleet, t, safety) = (s.fleet.clone(), tenant.clone(), req.safety_backup);
    if source == tenant {
        if !s.cx.passes.desired().instances.contains_key(&tenant) {
            return Err(instances::not_found(&tenant));
        }
        // Refused here while so (409); one that begins while the restore waits for its turn
        // fails the operation the same way.
        if s.cx.passes.is_held(&tenant) {
            return Err(ApiError::Conflict(format!(
                "{tenant} is held by another operation (an upgrade's turn, a move or a restore): restore when that ends"
            )));
        }
        return accepted(&s, "backup.restore", &tenant, pending, async move {
            let m = fleet.upgrades.restore(&t, &id, safety).await?;
            Ok(serde_json::to_value(m).unwrap_or_default())
        });
    }
    accepted(&s, "backup.restore", &tenant, pending, async move {
        let r = fleet.backups.clone_as(&source, &id, &t).await?;
        Ok(serde_json::to_value(r).unwrap_or_default())
    })
}

/// Brings backup `id` up in a scratch tenant, checks its health, and removes it.
#[utoipa::path(post, path = "/v1/instances/{tenant}/backups/{id}/verify", tag = "backups",
    params(("tenant" = String, Path, description = "The tenant (a DNS label)"), ("id" = String, Path, description = "ID or SOURCE:ID")),
    responses((status = 202, description = "The verify, started as an operation", body = crate::ops::Operation)))]
pub async fn backup_verify(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    pending: Option<Extension<PendingAudit>>,
    TenantBackup(tenant, id): TenantBackup,
) -> Result<Response, ApiError> {
    instances::instance_path(&s, &tenant)?;
    let (source, id) = backup_ref(&id, &tenant)?;
    who.check(Need::Manage, Some(&source))?;
    let (backups, of) = (s.fleet.backups.clone(), source.clone());
    accepted(&s, "backup.verify", &of, pending, async move {
        let r = backups.verify(&source, &id).await?;
        Ok(serde_json::to_value(r).unwrap_or_default())
    })
}

/// Splits `SOURCE:ID` (or a bare `ID` of `default`), checking both parts are plain names.
fn backup_ref(from: &str, default: &str) -> Result<(String, String), ApiError> {
    super::params::backup_ref(from)?;
    let (source, id) = from.split_once(':').unwrap_or((default, from));
    Ok((source.into(), id.into()))
}

#[utoipa::path(get, path = "/v1/instances/{tenant}/jobs", tag = "jobs", params(("tenant" = String, Path, description = "The tenant (a DNS label)")),
    responses((status = 200, description = "The template's jobs and their last runs", body = std::collections::BTreeMap<String, crate::jobs::JobRecord>)))]
pub async fn jobs(
    State(s): State<AppState>,
    Tenant(tenant): Tenant,
) -> Result<Json<serde_json::Value>, ApiError> {
    instances::instance_path(&s, &tenant)?;
    if !s.cx.passes.desired().instances.contains_key(&tenant) {
        return Err(instances::not_found(&tenant));
    }
    Ok(Json(
        serde_json::to_value(s.fleet.jobs.jobs(&tenant)).unwrap_or_default(),
    ))
}
