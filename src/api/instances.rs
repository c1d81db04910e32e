//! Instance handlers: list, show, create, delete, change state, stream logs.

use super::{
    AppState,
    body::{JsonBody, Q},
    error::ApiError,
    params::Tenant,
};
use crate::{
    api::auth::Principal,
    desired,
    runtime::spec::container_name,
    services::InstanceStatus,
    spec::{
        self,
        instance::{InstanceFile, LimitsFile, RunState},
    },
    store::atomic,
};
use axum::{
    Extension, Json,
    body::Body,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Every instance the caller may see (a tenant token: its own) that the selector takes.
#[utoipa::path(get, path = "/v1/instances", tag = "instances", params(super::select::SelectQuery),
    responses((status = 200, description = "The instances", body = Vec<InstanceStatus>),
        (status = 400, description = "A malformed selector")))]
pub async fn index(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    Q(q): Q<super::select::SelectQuery>,
) -> Result<Json<Vec<InstanceStatus>>, ApiError> {
    let sel = q.selector(who.is_operator())?;
    let mut all = s.cx.passes.board().instances;
    if let Some(own) = who.visible() {
        all.retain(|t, _| own.contains(t));
    }
    all.retain(|_, st| st.selected(&sel));
    if !who.is_operator() {
        all.values_mut().for_each(|st| st.labels.clear());
    }
    Ok(Json(all.into_values().collect()))
}

/// One instance as `berth status` shows it: the board's entry and its disk quota.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InstanceView {
    #[serde(flatten)]
    pub status: InstanceStatus,
    pub disk: crate::disk::DiskStatus,
    /// The tenant's egress policy; absent when the agent runs without one (unit tests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub egress: Option<crate::egress::TenantEgress>,
}

#[utoipa::path(get, path = "/v1/instances/{tenant}", tag = "instances", params(("tenant" = String, Path, description = "The tenant (a DNS label)")),
    responses((status = 200, description = "The instance", body = InstanceView)))]
pub async fn show(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    Tenant(tenant): Tenant,
) -> Result<Json<InstanceView>, ApiError> {
    let mut status =
        s.cx.passes
            .status_of(&tenant)
            .ok_or_else(|| not_found(&tenant))?;
    // Labels are the operator's notes on the tenant.
    if !who.is_operator() {
        status.labels.clear();
    }
    let (quota, volumes, allow) =
        s.cx.passes
            .desired()
            .instances
            .get(&tenant)
            .map_or((None, vec![], vec![]), |i| {
                (i.quota.disk, i.volumes.clone(), i.egress.clone())
            });
    let egress = s.cx.svc.egress().map(|e| e.view(&allow));
    let cx = s.cx.clone();
    // statvfs and /proc/mounts: blocking, however short.
    let disk = tokio::task::spawn_blocking(move || {
        crate::disk::status(cx.svc.disks().map(|d| d.as_ref()), &tenant, quota, &volumes)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(InstanceView {
        status,
        disk,
        egress,
    }))
}

pub(super) fn not_found(tenant: &str) -> ApiError {
    ApiError::NotFound(format!("no instance {tenant:?}"))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    pub tenant: String,
    pub template: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub plan: Option<String>,
    #[serde(default)]
    pub limits: Option<LimitsFile>,
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    #[serde(default)]
    pub state: RunState,
    /// The operator's labels (`{"tier": "gold"}`), for selectors.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The instance file as written; one that does not parse must be fixed by hand first.
pub(super) fn load_file(path: &std::path::Path) -> Result<InstanceFile, ApiError> {
    let shown = spec::shown_path(path, 2);
    spec::load_yaml::<InstanceFile>(path, &shown)
        .map(|l| l.value)
        .map_err(|e| ApiError::Conflict(format!("fix the instance file first: {e}")))
}

/// Refuses a change to a tenant that moved to another host (its copy here stays stopped
/// until it is removed: the other host has its data now).
pub(super) fn not_moved(s: &AppState, tenant: &str) -> Result<(), ApiError> {
    if s.fleet.handover.is_holding(tenant) {
        return Err(ApiError::Conflict(format!(
            "tenant {tenant} is being moved to another host (its requests are held): try again when the move has ended"
        )));
    }
    match s.fleet.handover.moved(tenant) {
        Some(r) => Err(ApiError::Conflict(format!(
            "tenant {tenant} has moved to {}: change it there (remove it here once DNS points there)",
            r.to
        ))),
        None => Ok(()),
    }
}

pub(super) fn instance_path(s: &AppState, tenant: &str) -> Result<std::path::PathBuf, ApiError> {
    // Checked before any path is built from it: a tenant name is a DNS label, never `../x`.
    super::params::tenant(tenant)?;
    Ok(s.cx.svc.host().instances_dir.join(format!("{tenant}.yaml")))
}

/// The API's only way to write an instance file: the file as it will be is validated against
/// the templates, every other instance, the domain proofs, its plan's limits and admission
/// (`desired::check_candidate`), then written atomically. Nothing is written when anything is
/// wrong, so no edit can leave a file that the next pass finds invalid.
pub(super) async fn save(
    s: &AppState,
    path: &std::path::Path,
    file: &InstanceFile,
) -> Result<desired::Instance, ApiError> {
    let inst = check(s, file).await?;
    // Edited in place: the operator's comments, order and layout stay.
    let now = std::fs::read_to_string(path).ok();
    let w = spec::edit::rewrite_text(now.as_deref(), file);
    if let spec::edit::Written::Whole(_, why) = &w {
        tracing::warn!(file = %path.display(), why, "instance file written whole: its comments and layout were not kept");
    }
    if w.text().is_empty() {
        return Err(ApiError::Internal(format!(
            "{}: nothing to write",
            path.display()
        )));
    }
    atomic::write(path, w.text().as_bytes(), 0o644)
        .map_err(|e| ApiError::Internal(format!("{}: {e}", path.display())))?;
    Ok(inst)
}

/// `file` checked as `save` checks it, and nothing written: the instance it would make.
pub(super) async fn check(
    s: &AppState,
    file: &InstanceFile,
) -> Result<desired::Instance, ApiError> {
    let (host, checked) = (s.cx.svc.host().clone(), file.clone());
    tokio::task::spawn_blocking(move || desired::check_candidate(&host, &checked))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// A new tenant's name free for it: no instance file, no purge under way.
pub(super) fn free_name(
    s: &AppState,
    tenant: &str,
    path: &std::path::Path,
) -> Result<(), ApiError> {
    if path.exists() {
        return Err(ApiError::Conflict(format!(
            "instance {tenant:?} already exists"
        )));
    }
    // A new tenant must not inherit volumes of a half-purged one, nor its tombstone.
    if s.cx.svc.layout().purge_marker(tenant).exists() {
        return Err(ApiError::Conflict(format!(
            "instance {tenant:?} is still being purged; add it again once `berth ls` no longer lists it"
        )));
    }
    Ok(())
}

/// The instance file `berth add` writes.
pub(super) fn file_of(req: CreateRequest) -> InstanceFile {
    InstanceFile {
        tenant: req.tenant,
        template: req.template,
        version: req.version,
        domains: req.domains,
        aliases: req.aliases,
        paths: req.paths,
        plan: req.plan,
        limits: req.limits,
        parameters: req
            .parameters
            .into_iter()
            .map(|(k, v)| (k, serde_yaml::Value::String(v)))
            .collect(),
        state: req.state,
        pinned: false,
        labels: req.labels,
    }
}

/// Validates the new instance against templates and all other instances, then writes
/// `instances/<tenant>.yaml` atomically. Nothing is written when anything is wrong.
#[utoipa::path(post, path = "/v1/instances", tag = "instances", request_body = CreateRequest,
    responses((status = 201, description = "Written; the next pass runs it", body = serde_json::Value)))]
pub async fn create(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<CreateRequest>,
) -> Result<Response, ApiError> {
    let path = instance_path(&s, &req.tenant)?;
    let _guard = s.write_lock.lock().await;
    free_name(&s, &req.tenant, &path)?;
    let tenant = req.tenant.clone();
    let file = file_of(req);
    let inst = save(&s, &path, &file).await?;
    // Its identity at once: backups an earlier tenant of this name left are set aside before
    // anything can list them, and tokens can be bound to it.
    if let Err(e) = crate::store::identity::ensure(
        s.cx.svc.layout(),
        &tenant,
        Some(&s.cx.svc.host().backup_dir),
    ) {
        tracing::error!(tenant = %tenant, error = %e, "cannot record the tenant's identity; the next pass will");
    }
    s.cx.passes.reset_backoff(&tenant);
    s.cx.passes.kick();
    tracing::info!(tenant = %tenant, template = %inst.template, version = %inst.version, "instance added");
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "tenant": inst.tenant, "template": inst.template, "version": inst.version }))).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Also remove its volumes, secrets and allocation.
    #[serde(default)]
    pub purge: bool,
}

/// Removes the instance file. With `purge`, a tombstone is written first, so volumes, secrets
/// and the allocation go too even if the agent crashes in between.
#[utoipa::path(delete, path = "/v1/instances/{tenant}", tag = "instances", params(("tenant" = String, Path, description = "The tenant (a DNS label)"), DeleteQuery),
    responses((status = 202, description = "Removed; the next pass removes its containers")))]
pub async fn delete(
    State(s): State<AppState>,
    Tenant(tenant): Tenant,
    Q(q): Q<DeleteQuery>,
) -> Result<StatusCode, ApiError> {
    let path = instance_path(&s, &tenant)?;
    let _guard = s.write_lock.lock().await;
    let exists = path.exists();
    let retained = s.cx.svc.layout().tenant(&tenant).exists();
    if !(exists || q.purge && retained) {
        // A tenant a recovery has not brought back is still in the repositories' inventory:
        // its purge takes it out.
        if q.purge && s.fleet.backups.is_carried(&tenant) {
            s.fleet.backups.forget_carried(&tenant);
            tracing::info!(%tenant, "unrecovered tenant forgotten");
            return Ok(StatusCode::ACCEPTED);
        }
        return Err(not_found(&tenant));
    }
    if q.purge {
        let marker = s.cx.svc.layout().purge_marker(&tenant);
        atomic::write(&marker, b"", 0o600).map_err(|e| ApiError::Internal(e.to_string()))?;
        // A tenant created later under the same name must prove its domains afresh.
        s.domains
            .forget_tenant(&tenant)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        // A recovery must not bring a purged tenant back: its repositories hear of it now.
        s.fleet.backups.forget_carried(&tenant);
    }
    if exists {
        std::fs::remove_file(&path)
            .map_err(|e| ApiError::Internal(format!("{}: {e}", path.display())))?;
    }
    // Moved to another host: removed here, it is forwarded no more.
    s.fleet.handover.end(&tenant);
    s.cx.passes.kick();
    tracing::info!(%tenant, purge = q.purge, "instance removed");
    Ok(StatusCode::ACCEPTED)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StateRequest {
    pub state: RunState,
}

/// Rewrites the instance file with a new desired state (running | stopped | suspended).
#[utoipa::path(put, path = "/v1/instances/{tenant}/state", tag = "instances", params(("tenant" = String, Path, description = "The tenant (a DNS label)")),
    request_body = StateRequest,
    responses((status = 202, description = "Written; the next pass applies it")))]
pub async fn set_state(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    Tenant(tenant): Tenant,
    JsonBody(req): JsonBody<StateRequest>,
) -> Result<StatusCode, ApiError> {
    let path = instance_path(&s, &tenant)?;
    not_moved(&s, &tenant)?;
    let _guard = s.write_lock.lock().await;
    if !path.exists() {
        return Err(not_found(&tenant));
    }
    let mut file = load_file(&path)?;
    // Suspension is the provider's lever (an unpaid bill): only the operator sets or lifts it.
    let suspension = [file.state, req.state].contains(&RunState::Suspended);
    if suspension && !who.is_operator() {
        return Err(ApiError::Forbidden(
            "only the operator suspends a tenant or lifts a suspension".into(),
        ));
    }
    file.state = req.state;
    save(&s, &path, &file).await?;
    s.cx.passes.reset_backoff(&tenant);
    s.cx.passes.kick();
    Ok(StatusCode::ACCEPTED)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// A service of the template (default: its web service).
    #[serde(default)]
    pub service: Option<String>,
    /// Keep streaming new lines.
    #[serde(default)]
    pub follow: bool,
    /// Lines from the end.
    #[serde(default = "default_tail")]
    pub tail: usize,
}

fn default_tail() -> usize {
    200
}

/// Streams the logs of one service (default: the web service) as plain text.
#[utoipa::path(get, path = "/v1/instances/{tenant}/logs", tag = "instances", params(("tenant" = String, Path, description = "The tenant (a DNS label)"), LogsQuery),
    responses((status = 200, description = "The log lines", body = String, content_type = "text/plain")))]
pub async fn logs(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    cred: Option<Extension<super::follow::Credential>>,
    Tenant(tenant): Tenant,
    Q(q): Q<LogsQuery>,
) -> Result<Response, ApiError> {
    let slot = if q.follow {
        s.follows.take(&who)?
    } else {
        None
    };
    let status =
        s.cx.passes
            .status_of(&tenant)
            .ok_or_else(|| not_found(&tenant))?;
    // The reconciler already knows the web service; no need to read the spec files again.
    let Some(service) = q.service.or(status.web_service.clone()) else {
        return Err(ApiError::BadRequest(format!(
            "instance {tenant:?} has no valid instance file; name the service with --service"
        )));
    };
    let name = container_name(&s.cx.svc.host().namespace, &tenant, &service);
    if !status.containers.iter().any(|c| c.name == name) {
        return Err(ApiError::NotFound(format!(
            "instance {tenant:?} has no container for service {service:?}"
        )));
    }
    let stream =
        s.cx.svc
            .runtime()
            .logs(&name, q.follow, q.tail)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
    let stream = stream.map(|r| r.map_err(std::io::Error::other));
    let cred = cred.filter(|_| q.follow).map(|c| c.0);
    let body = Body::from_stream(super::follow::guarded(
        s.clone(),
        cred,
        tenant,
        slot,
        stream,
    ));
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        body,
    )
        .into_response())
}
