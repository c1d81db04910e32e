//! Fleet upgrades, rollback, backups and restore over the API.

use super::{
    AppState,
    body::JsonBody,
    error::ApiError,
    instances,
    params::{Tenant, TenantBackup},
};
use crate::{
    auth::{Principal, policy::Need},
    backup::BackupError,
    upgrade::{UpgradeError, UpgradeRequest, state::UpgradeState},
};
use axum::{
    Extension, Json,
    extract::{Path, State},
    http::StatusCode,
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
            BackupError::UnknownTenant(_) | BackupError::NotFound { .. } => ApiError::NotFound(m),
            BackupError::Invalid { .. } => ApiError::BadRequest(m),
            BackupError::Corrupt { .. }
            | BackupError::Command { .. }
            | BackupError::Exists(_)
            | BackupError::NotReady { .. } => ApiError::Conflict(m),
            BackupError::Io { .. } | BackupError::Runtime(_) => ApiError::Internal(m),
        }
    }
}

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

pub async fn upgrade_show(State(s): State<AppState>) -> Result<Json<UpgradeState>, ApiError> {
    s.fleet
        .upgrades
        .status()
        .map(Json)
        .ok_or_else(|| UpgradeError::NoUpgrade.into())
}

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

pub async fn rollback(
    State(s): State<AppState>,
    Tenant(tenant): Tenant,
) -> Result<(StatusCode, Json<UpgradeState>), ApiError> {
    instances::instance_path(&s, &tenant)?;
    let up = s.fleet.upgrades.clone();
    let started = tokio::task::spawn_blocking(move || up.rollback(&tenant))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok((StatusCode::CREATED, Json(started)))
}

pub async fn backup_index(
    State(s): State<AppState>,
    Tenant(tenant): Tenant,
) -> Result<Json<serde_json::Value>, ApiError> {
    instances::instance_path(&s, &tenant)?;
    let policy = s
        .ctl
        .desired()
        .instances
        .get(&tenant)
        .map(|i| i.backups.clone());
    Ok(Json(serde_json::json!({
        "tenant": tenant,
        "policy": policy,
        "last_scheduled": s.fleet.backup_schedule.last(&tenant),
        "backups": s.fleet.backups.list(&tenant),
    })))
}

pub async fn backup_create(
    State(s): State<AppState>,
    Tenant(tenant): Tenant,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    instances::instance_path(&s, &tenant)?;
    let info = s.fleet.backups.create(&tenant).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::to_value(info).unwrap_or_default()),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    pub from: String,
}

/// `from` is `ID` (a backup of this tenant, restored in place) or `SOURCE:ID` (a backup of
/// another tenant, cloned into this new one).
pub async fn restore(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    Tenant(tenant): Tenant,
    JsonBody(req): JsonBody<RestoreRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    instances::instance_path(&s, &tenant)?;
    let (source, id) = backup_ref(&req.from, &tenant)?;
    who.check(Need::Manage, Some(&source))?;
    if source == tenant {
        let m = s.fleet.upgrades.restore(&tenant, &id).await?;
        return Ok(Json(serde_json::to_value(m).unwrap_or_default()));
    }
    let r = s.fleet.backups.clone_as(&source, &id, &tenant).await?;
    Ok(Json(serde_json::to_value(r).unwrap_or_default()))
}

/// Brings backup `id` up in a scratch tenant, checks its health, and removes it.
pub async fn backup_verify(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    TenantBackup(tenant, id): TenantBackup,
) -> Result<Json<serde_json::Value>, ApiError> {
    instances::instance_path(&s, &tenant)?;
    let (source, id) = backup_ref(&id, &tenant)?;
    who.check(Need::Manage, Some(&source))?;
    let r = s.fleet.backups.verify(&source, &id).await?;
    Ok(Json(serde_json::to_value(r).unwrap_or_default()))
}

/// Splits `SOURCE:ID` (or a bare `ID` of `default`), checking both parts are plain names.
fn backup_ref(from: &str, default: &str) -> Result<(String, String), ApiError> {
    super::params::backup_ref(from).map_err(ApiError::BadRequest)?;
    let (source, id) = from.split_once(':').unwrap_or((default, from));
    Ok((source.into(), id.into()))
}

pub async fn jobs(
    State(s): State<AppState>,
    Tenant(tenant): Tenant,
) -> Result<Json<serde_json::Value>, ApiError> {
    instances::instance_path(&s, &tenant)?;
    if !s.ctl.desired().instances.contains_key(&tenant) {
        return Err(instances::not_found(&tenant));
    }
    Ok(Json(
        serde_json::to_value(s.fleet.jobs.jobs(&tenant)).unwrap_or_default(),
    ))
}
