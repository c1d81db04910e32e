//! `POST /v1/recover`: whole-host recovery from an off-host repository (`backup::recover`),
//! the operator's alone, run as an operation whose result is each tenant's outcome.

use super::{AppState, body::JsonBody, error::ApiError, operations::accepted_host};
use crate::api::auth::PendingAudit;
use axum::{Extension, extract::State, response::Response};
use serde::Deserialize;
use std::collections::BTreeSet;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverRequest {
    /// The repository (its name under `backup_repositories:`) to recover from.
    pub repository: String,
    /// Only these tenants of the repository's inventory (all of them when empty).
    #[serde(default)]
    pub tenants: BTreeSet<String>,
    /// Recover from this inventory of the host (a snapshot id, or its first 8 or more hex
    /// digits: `restic snapshots --tag berth-inventory`) instead of its newest: a tenant
    /// purged by mistake, or a newest inventory that cannot be read. Each tenant still comes
    /// back from its own newest snapshot.
    #[serde(default)]
    pub inventory: Option<String>,
}

/// Brings back every tenant of the repository's newest inventory of this host that does not
/// exist here: identity, secrets, instance file, proven domains, database and volumes.
#[utoipa::path(post, path = "/v1/recover", tag = "backups",
    request_body = RecoverRequest,
    responses((status = 202, description = "The recovery, started as an operation; its result lists each tenant's outcome", body = crate::ops::Operation)))]
pub async fn recover(
    State(s): State<AppState>,
    pending: Option<Extension<PendingAudit>>,
    JsonBody(req): JsonBody<RecoverRequest>,
) -> Result<Response, ApiError> {
    if let Some(t) = req
        .tenants
        .iter()
        .find(|t| !crate::desired::instance::is_tenant_name(t))
    {
        return Err(ApiError::BadRequest(format!(
            "tenants: {t:?} is not a tenant name (a DNS label: a-z, 0-9, inner -)"
        )));
    }
    if let Some(Err(e)) = req
        .inventory
        .as_deref()
        .map(crate::desired::repository::check_snapshot_id)
    {
        return Err(ApiError::BadRequest(format!("inventory: {e}")));
    }
    if !s
        .fleet
        .backups
        .repos
        .iter()
        .any(|(r, _)| r.name == req.repository)
    {
        return Err(ApiError::NotFound(format!(
            "repository: the host config has no backup repository {:?}",
            req.repository
        )));
    }
    let (backups, book) = (s.fleet.backups.clone(), s.domains.clone());
    accepted_host(&s, "host.recover", pending, async move {
        let r = backups
            .recover(
                &req.repository,
                &req.tenants,
                req.inventory.as_deref(),
                &book,
            )
            .await?;
        Ok(serde_json::to_value(r).unwrap_or_default())
    })
}
