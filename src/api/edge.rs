//! Domains and certificates: claim and prove custom domains, list and renew certificates,
//! export the internal CA.

use super::{
    AppState,
    body::JsonBody,
    error::ApiError,
    instances,
    params::{Domain, Tenant, TenantDomain},
};
use crate::{
    desired::domains::check_custom,
    domains::{self, DomainError},
};
use axum::{
    Extension, Json,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
};
use serde::Deserialize;

fn certs(s: &AppState) -> Result<&std::sync::Arc<crate::certs::CertManager>, ApiError> {
    s.certs.as_ref().ok_or_else(|| {
        ApiError::Conflict("the proxy is not enabled in the host config (proxy:)".into())
    })
}

#[utoipa::path(get, path = "/v1/certs", tag = "edge",
    responses((status = 200, description = "Every certificate the edge serves", body = Vec<crate::certs::CertRow>)))]
pub async fn cert_index(
    State(s): State<AppState>,
) -> Result<Json<Vec<crate::certs::CertRow>>, ApiError> {
    Ok(Json(certs(&s)?.rows()))
}

#[utoipa::path(post, path = "/v1/certs/{domain}/renew", tag = "edge", params(("domain" = String, Path, description = "A domain name")),
    responses((status = 200, description = "Renewed")))]
pub async fn cert_renew(
    State(s): State<AppState>,
    Domain(domain): Domain,
) -> Result<StatusCode, ApiError> {
    use crate::certs::CertError as E;
    certs(&s)?.renew(&domain).await.map_err(|e| match e {
        E::UnknownDomain(_) => ApiError::NotFound(e.to_string()),
        E::Busy(_) | E::RateLimited(_) => ApiError::Conflict(e.to_string()),
        E::Acme(_) => ApiError::Conflict(e.to_string()),
        other => ApiError::Internal(other.to_string()),
    })?;
    Ok(StatusCode::OK)
}

#[utoipa::path(get, path = "/v1/ca", tag = "edge",
    responses((status = 200, description = "berth's internal CA certificate", body = String, content_type = "application/x-pem-file")))]
pub async fn ca_show(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let pem = certs(&s)?.ca_pem().to_string();
    Ok(([(header::CONTENT_TYPE, "application/x-pem-file")], pem))
}

#[utoipa::path(get, path = "/v1/domains", tag = "edge",
    responses((status = 200, description = "Proven domains and pending claims", body = serde_json::Value)))]
pub async fn domain_index(State(s): State<AppState>) -> Json<serde_json::Value> {
    let (bound, pending) = s.domains.list();
    Json(serde_json::json!({ "bound": bound, "pending": pending }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainRequest {
    pub domain: String,
}

/// The other tenant that has proven `domain`, if any: only a proof holds a domain.
fn holder(s: &AppState, domain: &str, tenant: &str) -> Option<String> {
    s.domains.bound_to(domain).filter(|t| t != tenant)
}

/// Starts a claim: returns the token to publish. The domain is added to the tenant's file now
/// (it is routed only after proof) unless another tenant holds it, in which case it moves on
/// proof.
#[utoipa::path(post, path = "/v1/instances/{tenant}/domains", tag = "edge", params(("tenant" = String, Path, description = "The tenant (a DNS label)")),
    request_body = DomainRequest,
    responses((status = 201, description = "Claimed: the proof to publish", body = serde_json::Value)))]
pub async fn domain_add(
    State(s): State<AppState>,
    Extension(who): Extension<crate::api::auth::Principal>,
    Tenant(tenant): Tenant,
    JsonBody(req): JsonBody<DomainRequest>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    check_custom(&req.domain, &tenant, s.cx.svc.host())?;
    let path = instances::instance_path(&s, &tenant)?;
    let _guard = s.write_lock.lock().await;
    if !path.exists() {
        return Err(instances::not_found(&tenant));
    }
    let held_by = holder(&s, &req.domain, &tenant);
    // The file first (validated: plan's domain count, the provider's names), then the claim.
    if held_by.is_none() {
        let mut file = instances::load_file(&path)?;
        if !file.domains.contains(&req.domain) {
            file.domains.push(req.domain.clone());
            instances::save(&s, &path, &file).await?;
            s.cx.passes.kick();
        }
    }
    let pending = s.domains.claim(&req.domain, &tenant).map_err(internal)?;
    let verified = s.domains.bound_to(&req.domain).as_deref() == Some(tenant.as_str());
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "domain": req.domain,
            "tenant": tenant,
            "token": pending.token,
            "verified": verified,
            // Which tenant holds it is the operator's to know; a tenant token learns only that
            // another tenant does.
            "claimed_elsewhere": held_by.is_some(),
            "held_by": held_by.filter(|_| who.is_operator()),
            "dns": { "name": format!("_berth.{}", req.domain), "type": "TXT", "value": pending.token },
            "http": { "url": format!("http://{}{}", req.domain, domains::verify::HTTP_PATH), "body": pending.token },
        })),
    ))
}

#[derive(Debug, Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// `dns`, `http`, or absent for DNS then HTTP.
    #[serde(default)]
    pub method: Option<String>,
}

#[utoipa::path(post, path = "/v1/instances/{tenant}/domains/{domain}/verify", tag = "edge",
    params(("tenant" = String, Path, description = "The tenant (a DNS label)"), ("domain" = String, Path, description = "A domain name")), request_body = VerifyRequest,
    responses((status = 200, description = "Proven and bound to the tenant", body = serde_json::Value)))]
pub async fn domain_verify(
    State(s): State<AppState>,
    TenantDomain(tenant, domain): TenantDomain,
    JsonBody(req): JsonBody<VerifyRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let path = instances::instance_path(&s, &tenant)?;
    let pending = s.domains.pending(&domain, &tenant).ok_or_else(|| {
        ApiError::NotFound(
            DomainError::NoClaim {
                domain: domain.clone(),
                tenant: tenant.clone(),
            }
            .to_string(),
        )
    })?;
    let cfg = &s.cx.svc.host().domains;
    let dns = || domains::verify::check_dns(cfg.resolver, &domain, &pending.token);
    // The tenant's own egress allows: berth fetches with no more reach than the tenant has.
    let allow =
        s.cx.passes
            .desired()
            .instances
            .get(&tenant)
            .map(|i| i.egress.clone())
            .unwrap_or_default();
    // Never the tenants' pool or the host, whatever the allows: berth fetches from the host.
    let mut never = vec![s.cx.svc.host().subnet_pool.net()];
    let host = tokio::task::spawn_blocking(crate::runtime::netns::host_addresses)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    never.extend(host.into_iter().map(ipnet::Ipv4Net::from));
    let http = || {
        domains::verify::check_http(
            cfg.resolver,
            cfg.http_port,
            &domain,
            &pending.token,
            &allow,
            &never,
        )
    };
    let method = match req.method.as_deref() {
        Some("dns") => dns().await.map(|_| "dns"),
        Some("http") => http().await.map(|_| "http"),
        None => match dns().await {
            Ok(()) => Ok("dns"),
            Err(_) => http().await.map(|_| "http"),
        },
        Some(m) => {
            return Err(ApiError::BadRequest(format!(
                "method {m:?} is not dns or http"
            )));
        }
    }
    .map_err(|e| ApiError::Conflict(e.to_string()))?;
    let _guard = s.write_lock.lock().await;
    let mut file = instances::load_file(&path)?;
    if !file.domains.contains(&domain) && !file.aliases.contains(&domain) {
        file.domains.push(domain.clone());
    }
    // Bound first: validation of this file then sees the domain as this tenant's own; the
    // previous holder (if any) keeps only an unproven mention, which routes nowhere.
    let entry = s.domains.entry(&domain, &tenant);
    let before = entry.0.as_ref().map(|b| b.tenant.clone());
    s.domains.bind(&domain, &tenant, method).map_err(internal)?;
    if let Err(e) = instances::save(&s, &path, &file).await {
        s.domains
            .put_back(&domain, &tenant, entry)
            .map_err(internal)?;
        return Err(e);
    }
    if let Some(other) = before.filter(|o| *o != tenant) {
        drop_domain(&s, &other, &domain).await;
    }
    s.cx.passes.touch();
    s.cx.passes.kick();
    Ok(Json(
        serde_json::json!({ "domain": domain, "tenant": tenant, "verified": true, "method": method }),
    ))
}

/// Removes a moved domain from its previous holder's file, through the validating path; a
/// file that no longer validates keeps the mention (unproven now, it routes nowhere).
async fn drop_domain(s: &AppState, other: &str, domain: &str) {
    let Ok(path) = instances::instance_path(s, other) else {
        return;
    };
    let Ok(mut f) = instances::load_file(&path) else {
        return;
    };
    f.domains.retain(|d| d != domain);
    f.aliases.retain(|d| d != domain);
    if let Err(e) = instances::save(s, &path, &f).await {
        tracing::warn!(tenant = %other, %domain, error = %e, "moved domain left in the previous holder's file");
    }
}

fn internal(e: DomainError) -> ApiError {
    ApiError::Internal(e.to_string())
}
