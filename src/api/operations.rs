//! Long operations over the API: a handler hands its work to `ops::Operations` and answers
//! `202 Accepted` with the operation (and `Location: /v1/operations/{id}`); `GET
//! /v1/operations/{id}` shows it to the operator and to tokens of its tenant.

use super::{AppState, error::ApiError};
use crate::{
    api::auth::{Deferred, PendingAudit, Principal},
    ops::{Failure, Operation},
};
use axum::{
    Extension, Json,
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use std::future::Future;

/// Starts `work` as operation `kind` of `tenant`: 202 with the operation, or 409 while the
/// tenant has another one running.
pub fn accepted<F>(
    s: &AppState,
    kind: &str,
    tenant: &str,
    pending: Option<Extension<PendingAudit>>,
    work: F,
) -> Result<Response, ApiError>
where
    F: Future<Output = Result<serde_json::Value, ApiError>> + Send + 'static,
{
    let id = crate::store::identity::current(s.cx.svc.layout(), tenant);
    started(s, kind, (Some(tenant), id), pending, work)
}

/// Starts `work` as operation `kind` of the whole host (the operator's alone to see).
pub fn accepted_host<F>(
    s: &AppState,
    kind: &str,
    pending: Option<Extension<PendingAudit>>,
    work: F,
) -> Result<Response, ApiError>
where
    F: Future<Output = Result<serde_json::Value, ApiError>> + Send + 'static,
{
    started(s, kind, (None, None), pending, work)
}

fn started<F>(
    s: &AppState,
    kind: &str,
    of: (Option<&str>, Option<String>),
    pending: Option<Extension<PendingAudit>>,
    work: F,
) -> Result<Response, ApiError>
where
    F: Future<Output = Result<serde_json::Value, ApiError>> + Send + 'static,
{
    let work = async move { work.await.map_err(failure) };
    let event = pending.map(|Extension(p)| p.0);
    let op = s
        .ops
        .start(kind, of, event, work)
        .map_err(|e| ApiError::Conflict(e.to_string()))?;
    let location = format!("/v1/operations/{}", op.id);
    let mut resp = (
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(op),
    )
        .into_response();
    resp.extensions_mut().insert(Deferred);
    Ok(resp)
}

/// What a failed operation tells its caller.
fn failure(e: ApiError) -> Failure {
    let (status, message) = e.parts();
    Failure {
        status: status.as_u16(),
        message,
    }
}

/// One operation: its state, and once it ended its result or error.
#[utoipa::path(get, path = "/v1/operations/{id}", tag = "operations",
    params(("id" = String, Path, description = "The operation's id (op_…)")),
    responses((status = 200, description = "The operation", body = Operation)))]
pub async fn show(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Operation>, ApiError> {
    let hidden = || ApiError::NotFound(format!("no operation {id:?}"));
    let op = s.ops.get(&id).ok_or_else(hidden)?;
    let layout = s.cx.svc.layout();
    let visible = match &op.tenant {
        _ if who.is_operator() => true,
        // A tenant token: its tenant, of the identity the operation was started for.
        Some(t) => who.may_read(t) && op.tenant_id == crate::store::identity::current(layout, t),
        None => false,
    };
    if !visible {
        return Err(hidden());
    }
    let mut op = op;
    // A move's first step carries the tenant's token digests for the other host: the
    // operator's to see, like every digest.
    if !who.is_operator()
        && let Some(entry) = op.result.as_mut().and_then(|r| r.get_mut("entry"))
        && let Some(e) = entry.as_object_mut()
    {
        e.remove("tokens");
    }
    Ok(Json(op))
}
