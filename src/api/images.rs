//! `berth images`: images in use or pulled by berth; `berth images prune`: remove those berth
//! pulled that no tenant names.

use super::{AppState, error::ApiError};
use crate::images::{ledger, report};
use axum::{Json, extract::State};

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

#[utoipa::path(get, path = "/v1/images", tag = "images",
    responses((status = 200, description = "Images tenants use or berth pulled", body = Vec<report::ImageRow>)))]
pub async fn index(State(s): State<AppState>) -> Result<Json<Vec<report::ImageRow>>, ApiError> {
    let engine = s.cx.svc.runtime().list_images().await.map_err(internal)?;
    let ledger = ledger::load(&s.cx.svc.layout().images());
    let mut rows = report::rows(&s.cx.passes.desired(), &ledger, &engine);
    report::mark_pins(&mut rows, &s.cx.svc.pulls().pins());
    Ok(Json(rows))
}

#[utoipa::path(post, path = "/v1/images/prune", tag = "images",
    responses((status = 200, description = "What was removed and what was kept", body = serde_json::Value)))]
pub async fn prune(State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    if s.fleet
        .upgrades
        .status()
        .is_some_and(|u| u.status.is_active())
    {
        return Err(ApiError::Conflict(
            "a fleet upgrade is under way; prune once it has ended".into(),
        ));
    }
    let _guard = s.write_lock.lock().await;
    let path = s.cx.svc.layout().images();
    let mut ledger = ledger::load(&path);
    let Some(candidates) = report::prunable(&s.cx.passes.desired(), &ledger) else {
        return Err(ApiError::Conflict(
            "a tenant's instance file is broken and its images are unknown; fix it first".into(),
        ));
    };
    let (mut removed, mut kept) = (vec![], vec![]);
    for r in candidates {
        match s.cx.svc.runtime().remove_image(&r).await {
            Ok(()) => {
                ledger.remove(&r);
                removed.push(r);
            }
            // In use by a container (an upgrade's, say): kept, with the engine's reason.
            Err(e) => kept.push(serde_json::json!({ "reference": r, "reason": e.to_string() })),
        }
    }
    ledger::save(&path, &ledger).map_err(internal)?;
    Ok(Json(
        serde_json::json!({ "removed": removed, "kept": kept }),
    ))
}
