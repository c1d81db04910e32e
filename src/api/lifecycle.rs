//! What a tenant's admin does to a running instance beyond start and stop: restart its
//! containers, and set its template's parameters (validated like every file write).

use super::{
    AppState,
    body::JsonBody,
    error::ApiError,
    instances::{instance_path, load_file, not_found, save},
    params::Tenant,
};
use crate::{
    runtime::{RunStatus, spec::container_name},
    services::Phase,
};
use axum::{Json, extract::State};
use serde::Deserialize;
use std::{collections::BTreeMap, time::Duration};

/// Restarts the tenant's running containers in the template's order (a database before the
/// app that needs it), each stopped with its service's grace period.
#[utoipa::path(post, path = "/v1/instances/{tenant}/restart", tag = "instances",
    params(("tenant" = String, Path, description = "The tenant (a DNS label)")),
    responses((status = 200, description = "The containers restarted", body = Vec<String>)))]
pub async fn restart(
    State(s): State<AppState>,
    Tenant(tenant): Tenant,
) -> Result<Json<Vec<String>>, ApiError> {
    instance_path(&s, &tenant)?;
    super::instances::not_moved(&s, &tenant)?;
    let status =
        s.cx.passes
            .status_of(&tenant)
            .ok_or_else(|| not_found(&tenant))?;
    // Asleep: a restart would wake it behind the sleeper's back; the rest have nothing running.
    let idle = [
        Phase::Stopped,
        Phase::Suspended,
        Phase::Asleep,
        Phase::Removing,
        Phase::Invalid,
        Phase::Pulling,
    ];
    if idle.contains(&status.phase) {
        return Err(ApiError::Conflict(format!(
            "{tenant} is {:?}, not running: start it instead",
            status.phase
        )));
    }
    let Some(inst) = s.cx.passes.desired().instances.get(&tenant).cloned() else {
        return Err(not_found(&tenant));
    };
    let ns = s.cx.svc.host().namespace.clone();
    let running: Vec<&str> = status
        .containers
        .iter()
        .filter(|c| c.status == RunStatus::Running)
        .map(|c| c.name.as_str())
        .collect();
    let mut done = vec![];
    for svc in &inst.services {
        let name = container_name(&ns, &tenant, &svc.name);
        if !running.contains(&name.as_str()) {
            continue;
        }
        let grace = svc.stop_grace.unwrap_or(Duration::from_secs(10));
        let rt = s.cx.svc.runtime();
        rt.stop_container(&name, grace).await.map_err(internal)?;
        rt.start_container(&name).await.map_err(internal)?;
        done.push(svc.name.clone());
    }
    s.cx.passes.kick();
    tracing::info!(%tenant, services = ?done, "instance restarted");
    Ok(Json(done))
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ParametersRequest {
    /// Parameters to set (merged into the instance's own); checked against the template.
    pub set: BTreeMap<String, String>,
    /// Parameters to drop (back to the template's default).
    #[serde(default)]
    pub unset: Vec<String>,
}

/// Sets the instance's template parameters; nothing else of its file (plan, limits, domains)
/// can change this way. Written only when the template accepts the result.
#[utoipa::path(put, path = "/v1/instances/{tenant}/parameters", tag = "instances",
    params(("tenant" = String, Path, description = "The tenant (a DNS label)")),
    request_body = ParametersRequest,
    responses((status = 200, description = "The instance's parameters now", body = BTreeMap<String, String>)))]
pub async fn set_parameters(
    State(s): State<AppState>,
    Tenant(tenant): Tenant,
    JsonBody(req): JsonBody<ParametersRequest>,
) -> Result<Json<BTreeMap<String, String>>, ApiError> {
    let path = instance_path(&s, &tenant)?;
    super::instances::not_moved(&s, &tenant)?;
    let _guard = s.write_lock.lock().await;
    if !path.exists() {
        return Err(not_found(&tenant));
    }
    let mut file = load_file(&path)?;
    edit_parameters(&mut file, req);
    save(&s, &path, &file).await?;
    s.cx.passes.reset_backoff(&tenant);
    s.cx.passes.kick();
    let shown = file
        .parameters
        .iter()
        .map(|(k, v)| {
            let text = v.as_str().map(str::to_string);
            let text = text.unwrap_or_else(|| serde_yaml::to_string(v).unwrap_or_default());
            (k.clone(), text.trim().to_string())
        })
        .collect();
    Ok(Json(shown))
}

/// `req`'s changes made to `file`'s parameters (drops first, then sets).
pub(super) fn edit_parameters(
    file: &mut crate::spec::instance::InstanceFile,
    req: ParametersRequest,
) {
    for k in &req.unset {
        file.parameters.remove(k);
    }
    for (k, v) in req.set {
        file.parameters.insert(k, serde_yaml::Value::String(v));
    }
}

#[cfg(test)]
mod tests {
    use crate::api::{socket_router, tests::state};
    use axum::{body::Body, http::Request};
    use serde_json::{Value, json};
    use tower::ServiceExt;

    async fn call(s: &crate::api::AppState, m: &str, uri: &str, body: Value) -> (u16, Value) {
        let req = Request::builder()
            .method(m)
            .uri(uri)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = socket_router(s.clone()).oneshot(req).await.unwrap();
        let st = resp.status().as_u16();
        let b = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (st, serde_json::from_slice(&b).unwrap_or_default())
    }

    #[tokio::test]
    async fn parameters_change_within_the_template_and_nothing_else_does() {
        let (dir, s) = state();
        call(
            &s,
            "POST",
            "/v1/instances",
            json!({"tenant": "acme", "template": "demo"}),
        )
        .await;
        let file = dir.path().join("instances/acme.yaml");
        let uri = "/v1/instances/acme/parameters";
        let (st, v) = call(&s, "PUT", uri, json!({"set": {"site_title": "Acme Shop"}})).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["site_title"], "Acme Shop");
        assert!(
            std::fs::read_to_string(&file)
                .unwrap()
                .contains("Acme Shop")
        );
        let before = std::fs::read_to_string(&file).unwrap();
        for bad in [
            json!({"set": {"no_such_parameter": "x"}}),
            json!({"set": {"site_title": "x".repeat(81)}}),
            json!({"set": {"admin_email": "not an email"}}),
            json!({"set": {}, "plan": "large"}),
            json!({"set": {"site_title": "x"}, "limits": {"memory": "64GiB"}}),
        ] {
            let (st, v) = call(&s, "PUT", uri, bad.clone()).await;
            assert_eq!(st, 400, "{bad}: {v}");
            assert!(v["error"].is_string(), "{v}");
            assert_eq!(std::fs::read_to_string(&file).unwrap(), before, "{bad}");
        }
        let (st, v) = call(&s, "PUT", uri, json!({"set": {}, "unset": ["site_title"]})).await;
        assert_eq!(st, 200, "{v}");
        assert!(v.get("site_title").is_none(), "{v}");
        let (st, _) = call(
            &s,
            "PUT",
            "/v1/instances/nobody/parameters",
            json!({"set": {}}),
        )
        .await;
        assert_eq!(st, 404);
    }

    #[tokio::test]
    async fn restart_takes_the_templates_order_and_refuses_a_stopped_tenant() {
        let (_dir, s) = state();
        call(
            &s,
            "POST",
            "/v1/instances",
            json!({"tenant": "acme", "template": "demo"}),
        )
        .await;
        call(&s, "POST", "/v1/reconcile", json!({})).await;
        call(&s, "POST", "/v1/reconcile", json!({})).await;
        let (st, v) = call(&s, "POST", "/v1/instances/acme/restart", json!({})).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v[0], "db", "the database first: {v}");
        call(
            &s,
            "PUT",
            "/v1/instances/acme/state",
            json!({"state": "stopped"}),
        )
        .await;
        call(&s, "POST", "/v1/reconcile", json!({})).await;
        let (st, v) = call(&s, "POST", "/v1/instances/acme/restart", json!({})).await;
        assert_eq!(st, 409, "{v}");
        assert!(v["error"].as_str().unwrap().contains("start it"), "{v}");
    }
}
