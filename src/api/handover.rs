//! Moving a tenant to another berth host over the API (`berth move T --to https://B`): the
//! leaving host's steps (`…/handover/prepare`, `hold`, `forward`, `release`) and the arriving
//! host's (`POST /v1/moves`, then an ordinary restore). The operator's alone; the CLI drives
//! both hosts (`handover` module docs).

use super::{
    AppState,
    body::JsonBody,
    error::ApiError,
    instances::{instance_path, load_file, not_found, save},
    operations::accepted,
    params::Tenant,
};
use crate::{
    api::auth::PendingAudit,
    handover::{HandoverError, Held, Record},
    offsite::inventory::Entry,
    spec::instance::RunState,
};
use axum::{Extension, Json, extract::State, response::Response};
use serde::Deserialize;

impl From<HandoverError> for ApiError {
    fn from(e: HandoverError) -> ApiError {
        let m = e.to_string();
        match e {
            HandoverError::UnknownTenant(_) => ApiError::NotFound(m),
            HandoverError::Backup(b) => b.into(),
            HandoverError::Io { .. } => ApiError::Internal(m),
            HandoverError::Moved(_)
            | HandoverError::NoEdge
            | HandoverError::Holding(_)
            | HandoverError::Busy(_)
            | HandoverError::Mounted(_)
            | HandoverError::NotHolding(_)
            | HandoverError::NotCopied { .. }
            | HandoverError::Edge { .. } => ApiError::Conflict(m),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RepositoryRequest {
    /// The repository (its name under `backup_repositories:`) both hosts use.
    pub repository: String,
}

/// Step 1 of a move, on the leaving host: a backup copied to the repository, and the
/// tenant's identity and proven domains for the other host.
#[utoipa::path(post, path = "/v1/instances/{tenant}/handover/prepare", tag = "moves",
    params(("tenant" = String, Path, description = "The tenant (a DNS label)")),
    request_body = RepositoryRequest,
    responses((status = 202, description = "Started as an operation; its result is the backup and the tenant's entry", body = crate::ops::Operation)))]
pub async fn prepare(
    State(s): State<AppState>,
    pending: Option<Extension<PendingAudit>>,
    Tenant(tenant): Tenant,
    JsonBody(req): JsonBody<RepositoryRequest>,
) -> Result<Response, ApiError> {
    instance_path(&s, &tenant)?;
    known_repository(&s, &req.repository)?;
    if !s.cx.passes.desired().instances.contains_key(&tenant) {
        return Err(not_found(&tenant));
    }
    let (h, t) = (s.fleet.handover.clone(), tenant.clone());
    let bindings = s.domains.list().0;
    accepted(&s, "move.prepare", &tenant, pending, async move {
        let p = h.prepare(&t, &req.repository, bindings).await?;
        Ok(serde_json::to_value(p).unwrap_or_default())
    })
}

/// Step 2, on the leaving host: the edge holds the tenant's requests, those under way end,
/// and the final backup is copied to the repository. The hold ends by itself after the
/// edge's longest pause (`proxy.timeouts.max_pause`) unless `forward` comes first.
#[utoipa::path(post, path = "/v1/instances/{tenant}/handover/hold", tag = "moves",
    params(("tenant" = String, Path, description = "The tenant (a DNS label)")),
    request_body = RepositoryRequest,
    responses((status = 200, description = "Held; the final backup", body = Held)))]
pub async fn hold(
    State(s): State<AppState>,
    Tenant(tenant): Tenant,
    JsonBody(req): JsonBody<RepositoryRequest>,
) -> Result<Json<Held>, ApiError> {
    instance_path(&s, &tenant)?;
    known_repository(&s, &req.repository)?;
    Ok(Json(s.fleet.handover.hold(&tenant, &req.repository).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForwardRequest {
    /// The other host's API, as the operator named it (kept for their eyes).
    pub to: String,
    /// The other host's edge (HTTPS listener), `HOST:PORT`.
    pub edge: String,
    /// The other host's HTTP listener, `HOST:PORT`: the tenant's ACME challenges this edge
    /// cannot answer go there, so its certificates are issued before DNS moves.
    #[serde(default)]
    pub edge_http: Option<String>,
    /// The other host's own CA (PEM), trusted beside the system's roots.
    #[serde(default)]
    pub ca_pem: Option<String>,
}

/// Step 3, on the leaving host: the tenant's requests (the held ones first) go to the other
/// host's edge from now on, and its containers here stop. `DELETE /v1/instances/{tenant}`
/// with purge ends the forwarding once DNS points at the other host.
#[utoipa::path(post, path = "/v1/instances/{tenant}/handover/forward", tag = "moves",
    params(("tenant" = String, Path, description = "The tenant (a DNS label)")),
    request_body = ForwardRequest,
    responses((status = 200, description = "Forwarded", body = Record)))]
pub async fn forward(
    State(s): State<AppState>,
    Tenant(tenant): Tenant,
    JsonBody(req): JsonBody<ForwardRequest>,
) -> Result<Json<Record>, ApiError> {
    let path = instance_path(&s, &tenant)?;
    check_edge(&req.edge)?;
    if let Some(e) = &req.edge_http {
        check_edge(e)
            .map_err(|_| ApiError::BadRequest(format!("edge_http: {e:?} is not HOST:PORT")))?;
    }
    check_api(&req.to)?;
    let host =
        match &s.cx.svc.host().base_domain {
            Some(base) => format!("{tenant}.{base}"),
            None => return Err(ApiError::Conflict(
                "this host has no base_domain: the tenant has no name to check the other edge with"
                    .into(),
            )),
        };
    let record = Record {
        tenant: tenant.clone(),
        to: req.to,
        edge: req.edge,
        edge_http: req.edge_http,
        host,
        ca_pem: req.ca_pem,
        at: crate::handover::now(),
    };
    // Its containers here stop (the other host has its data now), before the hold ends.
    let stop = async {
        let _guard = s.write_lock.lock().await;
        if path.exists() {
            let mut file = load_file(&path).map_err(|e| e.to_string())?;
            file.state = RunState::Stopped;
            save(&s, &path, &file).await.map_err(|e| e.to_string())?;
            s.cx.passes.kick();
        }
        Ok(())
    };
    let record = s.fleet.handover.forward(record, stop).await?;
    Ok(Json(record))
}

/// Ends a hold without forwarding (the move was abandoned): the tenant goes on here.
#[utoipa::path(post, path = "/v1/instances/{tenant}/handover/release", tag = "moves",
    params(("tenant" = String, Path, description = "The tenant (a DNS label)")),
    responses((status = 200, description = "Whether a hold was on", body = serde_json::Value)))]
pub async fn release(
    State(s): State<AppState>,
    Tenant(tenant): Tenant,
) -> Result<Json<serde_json::Value>, ApiError> {
    instance_path(&s, &tenant)?;
    let released = s.fleet.handover.release(&tenant);
    Ok(Json(
        serde_json::json!({ "tenant": tenant, "released": released }),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiveRequest {
    /// The repository (its name under this host's `backup_repositories:`).
    pub repository: String,
    /// The backup the leaving host named.
    pub backup: String,
    /// The tenant, its identity and proven custom domains, as the leaving host sent them.
    #[schema(value_type = Object)]
    pub entry: Entry,
}

/// On the arriving host: makes the tenant from the leaving host's backup (as a recovery
/// does). A tenant of that name here already is refused and left alone.
#[utoipa::path(post, path = "/v1/moves", tag = "moves",
    request_body = ReceiveRequest,
    responses((status = 202, description = "Started as an operation; its result is the tenant's outcome", body = crate::ops::Operation)))]
pub async fn receive(
    State(s): State<AppState>,
    pending: Option<Extension<PendingAudit>>,
    JsonBody(req): JsonBody<ReceiveRequest>,
) -> Result<Response, ApiError> {
    req.entry
        .check()
        .map_err(|why| ApiError::BadRequest(format!("entry: {why}")))?;
    if !crate::offsite::is_backup_id(&req.backup) {
        return Err(ApiError::BadRequest(format!(
            "backup: {:?} is not a backup id",
            req.backup
        )));
    }
    known_repository(&s, &req.repository)?;
    let t = req.entry.tenant.clone();
    // Domains the other host proved are bound here only where this host's own rules allow
    // a tenant's custom domain (not under its base or shared domains).
    for d in req.entry.domains.keys() {
        crate::desired::domains::check_custom(d, &t, s.cx.svc.host())
            .map_err(|e| ApiError::BadRequest(format!("entry: domain {d}: {e}")))?;
    }
    if instance_path(&s, &t)?.exists() {
        return Err(ApiError::Conflict(format!(
            "tenant {t} exists on this host"
        )));
    }
    let (backups, book) = (s.fleet.backups.clone(), s.domains.clone());
    accepted(&s, "move.receive", &t, pending, async move {
        let r = backups
            .receive(&req.repository, &req.entry, &req.backup, &book)
            .await?;
        Ok(serde_json::to_value(r).unwrap_or_default())
    })
}

fn known_repository(s: &AppState, repo: &str) -> Result<(), ApiError> {
    if s.fleet.backups.repos.iter().any(|(r, _)| r.name == repo) {
        return Ok(());
    }
    Err(ApiError::NotFound(format!(
        "repository: the host config has no backup repository {repo:?}"
    )))
}

/// `HOST:PORT`, nothing else (no scheme, path or credentials).
fn check_edge(edge: &str) -> Result<(), ApiError> {
    let bad = || ApiError::BadRequest(format!("edge: {edge:?} is not HOST:PORT"));
    // The port is spelled out (`url` reports none for 443, https's default).
    let port = edge
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok());
    let u = url::Url::parse(&format!("https://{edge}")).map_err(|_| bad())?;
    let plain = u.path() == "/" && u.query().is_none() && u.fragment().is_none();
    if !plain || port.is_none_or(|p| p == 0) || u.host_str().is_none() || edge.contains('@') {
        return Err(bad());
    }
    Ok(())
}

fn check_api(to: &str) -> Result<(), ApiError> {
    match url::Url::parse(to) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && to.len() <= 512
                && u.username().is_empty()
                && u.password().is_none() =>
        {
            Ok(())
        }
        _ => Err(ApiError::BadRequest(format!(
            "to: {to:?} is not the other host's API URL"
        ))),
    }
}
