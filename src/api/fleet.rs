//! Fleet upgrades, rollback, backups and restore over the API.

use super::{AppState, error::ApiError, instances};
use crate::{
    backup::BackupError,
    upgrade::{UpgradeError, UpgradeRequest, state::UpgradeState},
};
use axum::{
    Json,
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
            BackupError::Corrupt { .. } | BackupError::Command { .. } => ApiError::Conflict(m),
            BackupError::Io { .. } | BackupError::Runtime(_) => ApiError::Internal(m),
        }
    }
}

pub async fn upgrade_start(
    State(s): State<AppState>,
    Json(req): Json<UpgradeRequest>,
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
    Path(tenant): Path<String>,
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
    Path(tenant): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    instances::instance_path(&s, &tenant)?;
    Ok(Json(
        serde_json::to_value(s.fleet.backups.list(&tenant)).unwrap_or_default(),
    ))
}

pub async fn backup_create(
    State(s): State<AppState>,
    Path(tenant): Path<String>,
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

pub async fn restore(
    State(s): State<AppState>,
    Path(tenant): Path<String>,
    Json(req): Json<RestoreRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    instances::instance_path(&s, &tenant)?;
    if req.from.contains('/') || req.from.contains("..") {
        return Err(ApiError::BadRequest(format!(
            "{:?} is not a backup id",
            req.from
        )));
    }
    let m = s.fleet.upgrades.restore(&tenant, &req.from).await?;
    Ok(Json(serde_json::to_value(m).unwrap_or_default()))
}

pub async fn jobs(
    State(s): State<AppState>,
    Path(tenant): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    instances::instance_path(&s, &tenant)?;
    if !s.ctl.desired().instances.contains_key(&tenant) {
        return Err(instances::not_found(&tenant));
    }
    Ok(Json(
        serde_json::to_value(s.fleet.jobs.jobs(&tenant)).unwrap_or_default(),
    ))
}
