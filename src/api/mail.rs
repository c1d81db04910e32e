//! A tenant's mail at the shared relay: counts, limits and last errors; DNS records to publish.

use super::{AppState, error::ApiError, instances, params::Tenant};
use axum::{Json, extract::State};

fn account<T>(
    s: &AppState,
    tenant: &str,
    get: impl Fn(&crate::mail::Mail) -> Option<T>,
) -> Result<T, ApiError> {
    instances::instance_path(s, tenant)?;
    if !s.cx.passes.desired().instances.contains_key(tenant) {
        return Err(instances::not_found(tenant));
    }
    let Some(mail) = &s.mail else {
        return Err(ApiError::Conflict(
            "this host runs no mail relay (no mail: section in its config)".into(),
        ));
    };
    get(mail).ok_or_else(|| {
        ApiError::Conflict(format!(
            "tenant {tenant:?} has no mail account: its template asks for no mail"
        ))
    })
}

#[utoipa::path(get, path = "/v1/instances/{tenant}/mail", tag = "mail", params(("tenant" = String, Path, description = "The tenant (a DNS label)")),
    responses((status = 200, description = "The tenant's mail: limits, use, results, queue, last errors", body = crate::mail::MailReport),
        (status = 409, description = "No relay on this host, or the tenant sends no mail", body = super::openapi::ErrorBody)))]
pub async fn show(
    State(s): State<AppState>,
    Tenant(tenant): Tenant,
) -> Result<Json<crate::mail::MailReport>, ApiError> {
    account(&s, &tenant, |m| m.report(&tenant)).map(Json)
}

#[utoipa::path(get, path = "/v1/instances/{tenant}/mail/dns", tag = "mail", params(("tenant" = String, Path, description = "The tenant (a DNS label)")),
    responses((status = 200, description = "The DKIM records to publish, one per sending domain", body = Vec<crate::mail::DnsRecord>),
        (status = 409, description = "No relay on this host, or the tenant sends no mail", body = super::openapi::ErrorBody)))]
pub async fn dns(
    State(s): State<AppState>,
    Tenant(tenant): Tenant,
) -> Result<Json<Vec<crate::mail::DnsRecord>>, ApiError> {
    account(&s, &tenant, |m| m.dns(&tenant)).map(Json)
}
