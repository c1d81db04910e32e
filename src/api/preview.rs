//! Changes shown before they are made. `GET /v1/diff`: what the next pass would do to each
//! tenant, step by step, and why it would wait. `POST /v1/previews/add` and
//! `POST /v1/instances/{tenant}/parameters/preview`: a write checked exactly as the write is
//! (`instances::check`), then planned against what runs now; nothing is written.
//! `POST /v1/previews/rm`: what removing a tenant would remove. (`POST /v1/previews/upgrade`
//! is the fleet's, in `fleet.rs`.)

use super::{
    AppState,
    auth::Principal,
    body::JsonBody,
    error::ApiError,
    instances::{self, CreateRequest},
    lifecycle::{self, ParametersRequest},
    params::Tenant,
};
use crate::{services::TenantPlan, spec::instance::InstanceFile};
use axum::{Extension, Json, extract::State};
use serde::Serialize;

/// Previews computed at once for tenant tokens (the operator's routes take no turn).
pub const AT_ONCE: usize = 2;

/// A turn among the previews tenant tokens ask for, or 429 while they are all taken. The
/// operator's are never refused (None: no turn needed).
fn turn(
    s: &AppState,
    who: &Principal,
) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, ApiError> {
    if who.is_operator() {
        return Ok(None);
    }
    s.previews.clone().try_acquire_owned().map(Some).map_err(|_| {
        ApiError::TooMany(format!(
            "{AT_ONCE} previews are being computed for tenant tokens already: try again in a moment"
        ))
    })
}

/// A write that was checked and not made.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WritePreview {
    /// The instance file as the write would leave it (YAML).
    pub file: String,
    /// What the next pass would then do to the tenant.
    pub plan: TenantPlan,
}

/// What the next pass would do to each tenant it has work for, and each tenant whose file is
/// invalid; nothing is done. A tenant token sees its own tenants, as the last pass read their
/// files, from a listing of their own containers (never the whole host's).
#[utoipa::path(get, path = "/v1/diff", tag = "instances",
    responses((status = 200, description = "Each tenant's pending steps", body = Vec<TenantPlan>)))]
pub async fn diff(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Result<Json<Vec<TenantPlan>>, ApiError> {
    let _turn = turn(&s, &who)?;
    match who.visible() {
        None => s.cx.passes.preview().await.map(Json).map_err(engine),
        Some(own) => own_plans(&s, &own).await.map(Json),
    }
}

async fn own_plans(
    s: &AppState,
    own: &std::collections::BTreeSet<String>,
) -> Result<Vec<TenantPlan>, ApiError> {
    let d = s.cx.passes.desired();
    let mut out = Vec::new();
    for t in own {
        if let Some(inst) = d.instances.get(t) {
            let p = s.cx.passes.preview_instance(inst).await.map_err(engine)?;
            if !p.steps.is_empty() {
                out.push(p);
            }
        } else if let Some(why) = d.frozen.get(t) {
            out.push(TenantPlan::frozen(t, why));
        }
    }
    Ok(out)
}

/// `berth add --dry-run`: the new instance checked as `POST /v1/instances` checks it, and the
/// steps that would make it; nothing is written.
#[utoipa::path(post, path = "/v1/previews/add", tag = "instances", request_body = CreateRequest,
    responses((status = 200, description = "Checked, not written", body = WritePreview)))]
pub async fn add(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<CreateRequest>,
) -> Result<Json<WritePreview>, ApiError> {
    let path = instances::instance_path(&s, &req.tenant)?;
    instances::free_name(&s, &req.tenant, &path)?;
    preview(&s, &instances::file_of(req)).await
}

#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveRequest {
    pub tenant: String,
    /// As `DELETE /v1/instances/{tenant}?purge=true`: its volumes, databases and files too.
    #[serde(default)]
    pub purge: bool,
}

/// `berth rm --dry-run`: what removing the tenant (with `purge`, its data too) would remove;
/// nothing is removed.
#[utoipa::path(post, path = "/v1/previews/rm", tag = "instances", request_body = RemoveRequest,
    responses((status = 200, description = "What would be removed", body = TenantPlan)))]
pub async fn rm(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<RemoveRequest>,
) -> Result<Json<TenantPlan>, ApiError> {
    let path = instances::instance_path(&s, &req.tenant)?;
    if !path.exists() {
        return Err(instances::not_found(&req.tenant));
    }
    let plan = s.cx.passes.preview_removal(&req.tenant, req.purge).await;
    plan.map(Json).map_err(engine)
}

/// `berth set --dry-run`: the parameters changed as `PUT …/parameters` would change them,
/// checked the same way, and the steps that would follow; nothing is written.
#[utoipa::path(post, path = "/v1/instances/{tenant}/parameters/preview", tag = "instances",
    params(("tenant" = String, Path, description = "The tenant (a DNS label)")),
    request_body = ParametersRequest,
    responses((status = 200, description = "Checked, not written", body = WritePreview)))]
pub async fn set_parameters(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    Tenant(tenant): Tenant,
    JsonBody(req): JsonBody<ParametersRequest>,
) -> Result<Json<WritePreview>, ApiError> {
    let _turn = turn(&s, &who)?;
    let path = instances::instance_path(&s, &tenant)?;
    instances::not_moved(&s, &tenant)?;
    if !path.exists() {
        return Err(instances::not_found(&tenant));
    }
    let mut file = instances::load_file(&path)?;
    lifecycle::edit_parameters(&mut file, req);
    preview(&s, &file).await
}

async fn preview(s: &AppState, file: &InstanceFile) -> Result<Json<WritePreview>, ApiError> {
    let inst = instances::check(s, file).await?;
    let plan = s.cx.passes.preview_instance(&inst).await.map_err(engine)?;
    let file = serde_yaml::to_string(file).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(WritePreview { file, plan }))
}

fn engine(e: crate::services::PassError) -> ApiError {
    ApiError::Internal(e.to_string())
}
