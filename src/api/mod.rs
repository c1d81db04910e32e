//! Management API (axum): JSON over a Unix socket (the operator), optionally over TCP with a
//! bearer token (the host's operator token or a `berth token`). Every route's access is checked
//! and its changes audited by `auth::authorize`. It changes instance files and reads the
//! reconciler's board; Docker is never called from here except to stream logs.

pub mod access;
pub mod auth;
pub mod body;
pub mod edge;
pub mod error;
pub mod fleet;
pub mod follow;
pub mod handover;
pub mod images;
pub mod instances;
pub mod lifecycle;
pub mod mail;
pub mod moves;
pub mod openapi;
pub mod operations;
pub mod params;
pub mod preview;
pub mod recover;
pub mod select;
pub mod tls;

use crate::{certs::CertManager, domains::DomainBook, services::Cx};
use axum::{
    Json, Router,
    extract::State,
    middleware,
    routing::{delete, get, post, put},
};
use error::ApiError;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub cx: Cx,
    /// Serialises file writes so two concurrent adds cannot both claim one domain.
    pub write_lock: Arc<tokio::sync::Mutex<()>>,
    pub domains: Arc<DomainBook>,
    /// None when the host runs no proxy.
    pub certs: Option<Arc<CertManager>>,
    pub fleet: crate::upgrade::Fleet,
    /// Set by the daemon; `berth top` reads it.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Tokens made with `berth token create`.
    pub tokens: Arc<crate::api::auth::tokens::TokenStore>,
    /// The host's operator token (`api.token_file`), for the TCP listener.
    pub host_token: Option<String>,
    /// The shared mail relay (None: the host runs none).
    pub mail: Option<Arc<crate::mail::Mail>>,
    /// Long operations (backup, restore, clone, verify, move), owned by the agent.
    pub ops: Arc<crate::ops::Operations>,
    /// Following log streams per principal.
    pub follows: Arc<follow::Follows>,
    /// Previews (`/v1/diff`, dry runs) computed at once, whoever asks: each reads the
    /// engine, so a token looping them cannot take more than these.
    pub previews: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    pub fn new(
        cx: Cx,
        domains: Arc<DomainBook>,
        certs: Option<Arc<CertManager>>,
        fleet: crate::upgrade::Fleet,
    ) -> AppState {
        let tokens = Arc::new(crate::api::auth::tokens::TokenStore::open(
            cx.svc.layout().root().join("tokens.json"),
        ));
        // A tenant's own tokens travel with it (inventories, moves) and are taken in here.
        fleet.backups.set_tokens(tokens.clone());
        AppState {
            write_lock: cx.svc.files_lock(),
            tokens,
            host_token: None,
            ops: crate::ops::Operations::open(
                cx.svc.layout().root().join("operations.json"),
                cx.svc.audit().clone(),
            ),
            cx,
            domains,
            certs,
            fleet,
            metrics: None,
            mail: None,
            follows: Arc::default(),
            previews: Arc::new(tokio::sync::Semaphore::new(preview::AT_ONCE)),
        }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/agent", get(agent_show))
        .route("/v1/reconcile", post(reconcile_run))
        .route(
            "/v1/instances",
            get(instances::index).post(instances::create),
        )
        .route(
            "/v1/instances/{tenant}",
            get(instances::show).delete(instances::delete),
        )
        .route("/v1/instances/{tenant}/state", put(instances::set_state))
        .route("/v1/instances/{tenant}/restart", post(lifecycle::restart))
        .route("/v1/instances/{tenant}/move", post(moves::move_tenant))
        .route(
            "/v1/instances/{tenant}/parameters",
            put(lifecycle::set_parameters),
        )
        .route(
            "/v1/instances/{tenant}/parameters/preview",
            post(preview::set_parameters),
        )
        .route("/v1/diff", get(preview::diff))
        .route("/v1/previews/add", post(preview::add))
        .route("/v1/previews/rm", post(preview::rm))
        .route("/v1/previews/upgrade", post(fleet::upgrade_preview))
        .route("/v1/instances/{tenant}/logs", get(instances::logs))
        .route("/v1/instances/{tenant}/domains", post(edge::domain_add))
        .route(
            "/v1/instances/{tenant}/domains/{domain}/verify",
            post(edge::domain_verify),
        )
        .route("/v1/domains", get(edge::domain_index))
        .route("/v1/certs", get(edge::cert_index))
        .route("/v1/certs/{domain}/renew", post(edge::cert_renew))
        .route("/v1/ca", get(edge::ca_show))
        .route("/v1/capacity", get(capacity))
        .route("/v1/images", get(images::index))
        .route("/v1/images/prune", post(images::prune))
        .route("/v1/top", get(top))
        .route("/v1/upgrades", post(fleet::upgrade_start))
        .route("/v1/upgrades/current", get(fleet::upgrade_show))
        .route(
            "/v1/upgrades/current/{action}",
            post(fleet::upgrade_control),
        )
        .route("/v1/instances/{tenant}/rollback", post(fleet::rollback))
        .route(
            "/v1/instances/{tenant}/backups",
            get(fleet::backup_index).post(fleet::backup_create),
        )
        .route(
            "/v1/instances/{tenant}/backups/{id}/verify",
            post(fleet::backup_verify),
        )
        .route("/v1/instances/{tenant}/restore", post(fleet::restore))
        .route("/v1/recover", post(recover::recover))
        .route(
            "/v1/instances/{tenant}/handover/prepare",
            post(handover::prepare),
        )
        .route("/v1/instances/{tenant}/handover/hold", post(handover::hold))
        .route(
            "/v1/instances/{tenant}/handover/forward",
            post(handover::forward),
        )
        .route(
            "/v1/instances/{tenant}/handover/release",
            post(handover::release),
        )
        .route("/v1/moves", post(handover::receive))
        .route("/v1/instances/{tenant}/jobs", get(fleet::jobs))
        .route("/v1/instances/{tenant}/mail", get(mail::show))
        .route("/v1/instances/{tenant}/mail/dns", get(mail::dns))
        .route(
            "/v1/tokens",
            get(access::token_index).post(access::token_create),
        )
        .route("/v1/tokens/{id}", delete(access::token_revoke))
        .route("/v1/audit", get(access::audit_index))
        .route("/v1/operations/{id}", get(operations::show))
        .route("/v1/openapi.json", get(openapi::serve))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::api::auth::authorize,
        ))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .with_state(state)
}

/// A known path with a method it does not take: a JSON 405 like every other error.
async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{} does not take {method}", uri.path()))
}

/// The router as the Unix socket serves it: every caller is the operator.
pub fn socket_router(state: AppState) -> Router {
    router(state).layer(middleware::from_fn(crate::api::auth::socket))
}

/// Every path the router does not know: a JSON 404 that names it, never an empty body.
async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no such endpoint: {method} {}", uri.path()))
}

/// Host totals, what instances reserve and what is in use (`berth capacity`).
#[utoipa::path(get, path = "/v1/capacity", tag = "host",
    responses((status = 200, description = "Host capacity", body = crate::capacity::Report)))]
pub async fn capacity(
    State(s): State<AppState>,
) -> Result<Json<crate::capacity::Report>, ApiError> {
    // The files as they are now, as admission reads them, not the last pass's view.
    let host = s.cx.svc.host().clone();
    let nodes = s.cx.svc.runtime().nodes().await.unwrap_or_default();
    let placed: std::collections::BTreeMap<String, String> =
        s.cx.passes
            .board()
            .instances
            .into_iter()
            .filter_map(|(t, st)| {
                let node = st.containers.iter().find_map(|c| c.node.as_ref())?;
                Some((t, node.name.clone()))
            })
            .collect();
    let report = tokio::task::spawn_blocking(move || {
        let d = crate::desired::load(&host).desired;
        let now = crate::capacity::measure(&host.state_dir);
        let mut r = crate::capacity::report(&host, &d, now);
        r.nodes = crate::capacity::nodes(&nodes, &placed, &d);
        r
    })
    .await;
    match report {
        Ok(mut r) => {
            r.asleep = s.cx.svc.sleep().asleep().len();
            Ok(Json(r))
        }
        Err(e) => Err(ApiError::Internal(e.to_string())),
    }
}

/// Live figures per tenant (`berth top`), from the last stats sweep and the proxy's meters.
#[utoipa::path(get, path = "/v1/top", tag = "host",
    responses((status = 200, description = "Per-tenant figures", body = crate::metrics::top::Top)))]
pub async fn top(State(s): State<AppState>) -> Result<Json<crate::metrics::top::Top>, ApiError> {
    match &s.metrics {
        Some(m) => Ok(Json(m.top())),
        None => Err(ApiError::NotFound("this agent collects no metrics".into())),
    }
}

/// The API behind a bearer-token check, for the TCP listener: the host's operator token
/// (`api.token_file`) or a token made with `berth token create`. The daemon serves it with the
/// dashboard beside it (`ui::tcp_router`).
pub fn tcp_api(mut state: AppState, host_token: Option<String>) -> Router {
    state.host_token = host_token;
    let api = router(state.clone()).layer(middleware::from_fn_with_state(
        state,
        crate::api::auth::authenticate,
    ));
    Router::new()
        // What every browser asks for on its own: answered, not recorded as a refused login.
        .route(
            "/favicon.ico",
            get(|| async { axum::http::StatusCode::NO_CONTENT }),
        )
        .fallback_service(api)
}

#[utoipa::path(get, path = "/v1/agent", tag = "host",
    responses((status = 200, description = "The agent: version, last pass, errors", body = serde_json::Value)))]
pub async fn agent_show(State(s): State<AppState>) -> Json<serde_json::Value> {
    let b = s.cx.passes.board();
    Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "namespace": s.cx.svc.host().namespace,
        "base_domain": s.cx.svc.host().base_domain,
        "edge": s.cx.svc.host().proxy.as_ref().map(|p| serde_json::json!({
            "http_port": p.http.port(),
            "https_port": p.https.port(),
        })),
        "last_pass": b.last_pass,
        "spec_errors": b.spec_errors,
        "engine_error": b.engine_error,
        "disk_quotas": s.cx.svc.disk_quotas(),
        "egress": s.cx.svc.egress().map(|e| e.state()),
        "mutations_total": s.cx.svc.runtime().mutations(),
    }))
}

/// Runs a pass now and answers with its report (used by `--wait` and tests).
#[utoipa::path(post, path = "/v1/reconcile", tag = "host",
    responses((status = 200, description = "The pass's report", body = crate::services::PassReport)))]
pub async fn reconcile_run(
    State(s): State<AppState>,
) -> Result<Json<crate::services::PassReport>, ApiError> {
    s.cx.passes
        .pass()
        .await
        .map(Json)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

#[cfg(test)]
mod access_tests;
#[cfg(test)]
mod edit_tests;
#[cfg(test)]
mod handover_tests;
#[cfg(test)]
mod preview_tests;
#[cfg(test)]
mod select_tests;
#[cfg(test)]
pub(crate) mod tests;
