//! Moving a tenant to another swarm node from its latest backup (`berth move T --to NODE
//! --from-backup`): what an operator does when the node that held it is gone for good. Its
//! services and network are removed through the manager (which works with the node down), the
//! tenant is made again on the chosen node, and the backup is restored into it.

use super::{
    AppState,
    body::JsonBody,
    error::ApiError,
    instances::{instance_path, not_found},
    params::Tenant,
};
use crate::api::auth::PendingAudit;
use crate::{
    runtime::spec::{container_name, network_name},
    services::Phase,
};
use axum::{Extension, extract::State, response::Response};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveRequest {
    /// The swarm node to move to (its hostname).
    pub to: String,
    /// Rebuild the tenant there from its latest backup (the only way berth moves a tenant:
    /// it does not copy volumes between nodes).
    #[serde(default)]
    pub from_backup: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Moved {
    pub tenant: String,
    pub node: String,
    /// The backup restored on the new node.
    pub backup: String,
}

/// How long the tenant may take to come up on its new node before the restore.
const UP_WITHIN: Duration = Duration::from_secs(300);

#[utoipa::path(post, path = "/v1/instances/{tenant}/move", tag = "instances",
    params(("tenant" = String, Path, description = "The tenant (a DNS label)")),
    request_body = MoveRequest,
    responses((status = 202, description = "The move, started as an operation (its result: Moved)", body = crate::ops::Operation)))]
pub async fn move_tenant(
    State(s): State<AppState>,
    pending: Option<Extension<PendingAudit>>,
    Tenant(tenant): Tenant,
    JsonBody(req): JsonBody<MoveRequest>,
) -> Result<Response, ApiError> {
    instance_path(&s, &tenant)?;
    super::instances::not_moved(&s, &tenant)?;
    if !s.cx.passes.desired().instances.contains_key(&tenant) {
        return Err(not_found(&tenant));
    }
    if !req.from_backup {
        return Err(ApiError::BadRequest(
            "give from_backup (--from-backup): berth does not copy volumes between nodes, it \
             rebuilds the tenant on the new node from its latest backup"
                .into(),
        ));
    }
    check_node(&s, &tenant, &req.to).await?;
    let backup = s
        .fleet
        .backups
        .list(&tenant)
        .into_iter()
        .max_by_key(|b| b.created)
        .map(|b| b.id)
        .ok_or_else(|| ApiError::Conflict(format!("{tenant} has no backup to move from")))?;
    let (st, t) = (s.clone(), tenant.clone());
    super::operations::accepted(&s, "instance.move", &tenant, pending, async move {
        let moved = move_now(&st, t, req.to, backup).await?;
        Ok(serde_json::to_value(moved).unwrap_or_default())
    })
}

/// Clears the tenant from its old node, waits for it on the new one, restores the backup.
async fn move_now(
    s: &AppState,
    tenant: String,
    to: String,
    backup: String,
) -> Result<Moved, ApiError> {
    let cleared = {
        let Some(_hold) = s.cx.passes.try_hold_guard(&tenant).await else {
            return Err(ApiError::Conflict(format!(
                "{tenant} is held by another operation (an upgrade's turn, a restore or a move): move it when that ends"
            )));
        };
        clear(s, &tenant, &to).await
    };
    s.cx.passes.kick();
    cleared?;
    wait_running(s, &tenant).await?;
    s.fleet.upgrades.restore(&tenant, &backup, true).await?;
    tracing::info!(%tenant, node = %to, %backup, "tenant moved");
    Ok(Moved {
        tenant,
        node: to,
        backup,
    })
}

/// The target must be a ready, active swarm node other than the tenant's own.
async fn check_node(s: &AppState, tenant: &str, to: &str) -> Result<(), ApiError> {
    let nodes = s.cx.svc.runtime().nodes().await.map_err(internal)?;
    if nodes.is_empty() {
        return Err(ApiError::BadRequest(
            "moving a tenant between nodes needs swarm mode (engine.mode: swarm)".into(),
        ));
    }
    let node = nodes
        .iter()
        .find(|n| n.name == to)
        .ok_or_else(|| ApiError::BadRequest(format!("no swarm node named {to:?}")))?;
    if !(node.ready && node.active) {
        return Err(ApiError::Conflict(format!(
            "node {to} is not ready and active"
        )));
    }
    let board = s.cx.passes.board();
    let now = board
        .instances
        .get(tenant)
        .and_then(|st| st.containers.iter().find_map(|c| c.node.as_ref()));
    if now.is_some_and(|n| n.name == to && n.ready) {
        return Err(ApiError::Conflict(format!("{tenant} is on {to} already")));
    }
    Ok(())
}

/// Removes the tenant's services and network (its volumes stay on the old node) and pins its
/// next network to `to`.
async fn clear(s: &AppState, tenant: &str, to: &str) -> Result<(), ApiError> {
    let rt = s.cx.svc.runtime();
    let ns = &s.cx.svc.host().namespace;
    rt.pin_tenant(tenant, to).await.map_err(internal)?;
    let inst = s.cx.passes.desired().instances.get(tenant).cloned();
    for svc in inst.iter().flat_map(|i| &i.services) {
        let name = container_name(ns, tenant, &svc.name);
        rt.remove_container(&name).await.map_err(internal)?;
    }
    rt.remove_network(&network_name(ns, tenant))
        .await
        .map_err(internal)
}

async fn wait_running(s: &AppState, tenant: &str) -> Result<(), ApiError> {
    let start = Instant::now();
    loop {
        let phase = s.cx.passes.status_of(tenant).map(|st| st.phase);
        if phase == Some(Phase::Running) {
            return Ok(());
        }
        if start.elapsed() > UP_WITHIN {
            return Err(ApiError::Internal(format!(
                "{tenant} did not come up on its new node within {}s (phase {phase:?}); its \
                 backup is kept, restore it when it runs",
                UP_WITHIN.as_secs()
            )));
        }
        s.cx.passes.kick();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}
