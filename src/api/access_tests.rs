//! Access control over every route: each endpoint × role, the policy table against the
//! router, and an audit row for every mutating endpoint.

use super::*;
use crate::api::auth::policy::{Need, ROUTES};
use axum::{
    body::Body,
    http::{Request, StatusCode},
};
use tower::ServiceExt;

struct World {
    _dir: tempfile::TempDir,
    s: AppState,
}

fn world() -> World {
    let (dir, s) = super::tests::state();
    World { _dir: dir, s }
}

pub(super) async fn send(
    app: Router,
    method: &str,
    uri: &str,
    bearer: Option<&str>,
    body: serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(t) = bearer {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let resp = app
        .oneshot(b.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

async fn socket(
    w: &World,
    method: &str,
    uri: &str,
    body: serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    send(socket_router(w.s.clone()), method, uri, None, body).await
}

async fn tcp(
    w: &World,
    token: &str,
    method: &str,
    uri: &str,
    body: serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    send(
        tcp_api(w.s.clone(), Some("host-operator-token".into())),
        method,
        uri,
        Some(token),
        body,
    )
    .await
}

async fn token(w: &World, role: &str, tenants: &[&str]) -> String {
    let (st, v) = socket(
        w,
        "POST",
        "/v1/tokens",
        serde_json::json!({"role": role, "tenants": tenants, "expires_in": 3600}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v["token"].as_str().unwrap().to_string()
}

/// A world with tenants acme and globex, and tokens: acme's admin, acme's viewer, an operator.
async fn populated() -> (World, String, String, String) {
    let w = world();
    for t in ["acme", "globex"] {
        let (st, v) = socket(
            &w,
            "POST",
            "/v1/instances",
            serde_json::json!({"tenant": t, "template": "demo"}),
        )
        .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
    }
    socket(&w, "POST", "/v1/reconcile", serde_json::json!({})).await;
    let admin = token(&w, "tenant-admin", &["acme"]).await;
    let viewer = token(&w, "tenant-viewer", &["acme"]).await;
    let op = token(&w, "operator", &[]).await;
    (w, admin, viewer, op)
}

fn uri(path: &str, tenant: &str) -> String {
    path.replace("{tenant}", tenant)
        .replace("{domain}", "shop.example.org")
        .replace("{id}", "20260101T000000Z-abcd")
        .replace("{action}", "pause")
}

/// Refused by the policy: 403, or 404 naming a tenant the token does not see.
fn refused(st: StatusCode, v: &serde_json::Value) -> bool {
    st == StatusCode::FORBIDDEN
        || (st == StatusCode::NOT_FOUND
            && v["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("no instance")))
}

/// What each role may do, written out here rather than read from the policy table, so a
/// wrong entry in the table fails this test.
const ADMIN_MAY: &[&str] = &[
    "instance.list",
    "instance.show",
    "instance.state",
    "instance.restart",
    "instance.parameters",
    "instance.parameters_preview",
    "instance.diff",
    "instance.logs",
    "domain.add",
    "domain.verify",
    "ca.show",
    "backup.list",
    "backup.create",
    "backup.verify",
    "backup.restore",
    "job.list",
    "mail.show",
    "mail.dns",
    "audit.list",
    "openapi.show",
    "operation.show",
];
const VIEWER_MAY: &[&str] = &[
    "instance.list",
    "instance.show",
    "instance.diff",
    "instance.logs",
    "ca.show",
    "backup.list",
    "job.list",
    "mail.show",
    "mail.dns",
    "audit.list",
    "openapi.show",
    "operation.show",
];
/// Routes that name no tenant and show each caller only its own.
const ANYONE_MAY: &[&str] = &[
    "instance.list",
    "instance.diff",
    "ca.show",
    "audit.list",
    "openapi.show",
    "operation.show",
];

#[tokio::test]
async fn a_tenant_admin_reaches_nothing_of_another_tenant_and_no_operator_route() {
    let (w, admin, viewer, op) = populated().await;
    for r in ROUTES {
        let method = r.method.as_str();
        let on_globex = uri(r.path, "globex");
        for tok in [&admin, &viewer] {
            let (st, v) = tcp(&w, tok, method, &on_globex, serde_json::json!({})).await;
            let may = ANYONE_MAY.contains(&r.action);
            assert_eq!(!refused(st, &v), may, "{method} {on_globex}: {st} {v}");
        }
        let on_acme = uri(r.path, "acme");
        let (st, v) = tcp(&w, &admin, method, &on_acme, serde_json::json!({})).await;
        let may = ADMIN_MAY.contains(&r.action);
        assert_eq!(!refused(st, &v), may, "admin {method} {on_acme}: {st} {v}");
        let (st, v) = tcp(&w, &viewer, method, &on_acme, serde_json::json!({})).await;
        let may = VIEWER_MAY.contains(&r.action);
        assert_eq!(!refused(st, &v), may, "viewer {method} {on_acme}: {st} {v}");
        if r.action == "instance.delete" {
            continue; // the operator may; it would take acme away from the routes after it
        }
        let (st, v) = tcp(&w, &op, method, &on_acme, serde_json::json!({})).await;
        let may = !r.action.starts_with("token.");
        assert_eq!(
            !refused(st, &v),
            may,
            "operator token {method} {on_acme}: {st} {v}"
        );
    }
}

#[tokio::test]
async fn what_a_tenant_admin_may_do_stays_inside_its_own_tenant() {
    let (w, admin, viewer, _) = populated().await;
    let (st, v) = tcp(&w, &admin, "GET", "/v1/instances", serde_json::json!({})).await;
    assert_eq!(st, StatusCode::OK);
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme"], "{v}");
    // Stop and start, yes; suspend or lift a suspension, no.
    let set = |tok: String, state: &'static str| {
        let w = &w;
        async move {
            let body = serde_json::json!({ "state": state });
            tcp(w, &tok, "PUT", "/v1/instances/acme/state", body)
                .await
                .0
        }
    };
    assert_eq!(set(admin.clone(), "stopped").await, StatusCode::ACCEPTED);
    assert_eq!(set(admin.clone(), "suspended").await, StatusCode::FORBIDDEN);
    assert_eq!(set(viewer.clone(), "running").await, StatusCode::FORBIDDEN);
    let suspend = serde_json::json!({"state": "suspended"});
    socket(&w, "PUT", "/v1/instances/acme/state", suspend).await;
    assert_eq!(set(admin.clone(), "running").await, StatusCode::FORBIDDEN);
    // A clone or verify of another tenant's backup is refused as if it did not exist.
    let from = serde_json::json!({"from": "globex:20260101T000000Z-abcd"});
    let (st, v) = tcp(&w, &admin, "POST", "/v1/instances/acme/restore", from).await;
    assert!(refused(st, &v), "{st} {v}");
    // Its own restore without the safety backup is an operator's alone.
    let bare = serde_json::json!({"from": "20260101T000000Z-abcd", "safety_backup": false});
    let (st, v) = tcp(&w, &admin, "POST", "/v1/instances/acme/restore", bare).await;
    assert!(
        st == StatusCode::FORBIDDEN && v.to_string().contains("safety_backup"),
        "{st} {v}"
    );
    let (st, v) = tcp(
        &w,
        &admin,
        "POST",
        "/v1/instances/acme/backups/globex:20260101T000000Z-abcd/verify",
        serde_json::json!({}),
    )
    .await;
    assert!(refused(st, &v), "{st} {v}");
    // Audit rows: its own only.
    let (_, rows) = tcp(&w, &admin, "GET", "/v1/audit", serde_json::json!({})).await;
    let rows = rows.as_array().unwrap();
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r["tenant"] == "acme"), "{rows:?}");
    let (st, _) = tcp(
        &w,
        &admin,
        "GET",
        "/v1/audit?tenant=globex",
        serde_json::json!({}),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn tokens_are_minted_through_the_socket_only_and_die_when_revoked() {
    let (w, admin, _, op) = populated().await;
    let body = serde_json::json!({"role": "operator", "expires_in": 60});
    assert_eq!(
        tcp(&w, &op, "POST", "/v1/tokens", body.clone()).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        tcp(&w, "host-operator-token", "POST", "/v1/tokens", body)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let (_, list) = socket(&w, "GET", "/v1/tokens", serde_json::json!({})).await;
    assert_eq!(list.as_array().unwrap().len(), 3);
    assert!(
        !list.to_string().contains(admin.rsplit('_').next().unwrap()),
        "no secret listed"
    );
    let prefix = admin.rsplit_once('_').unwrap().0;
    let bad = format!("{prefix}_{}", "0".repeat(64));
    assert_eq!(
        tcp(&w, &bad, "GET", "/v1/instances", serde_json::json!({}))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let rows = w.s.cx.svc.audit().query(&crate::audit::Filter::default());
    let login = rows
        .iter()
        .find(|e| e.action == "auth.login")
        .expect("a refused token is audited");
    assert_eq!(
        (login.result.as_str(), login.target.as_deref()),
        ("denied", Some("GET /v1/instances"))
    );
    let dir = w.s.cx.svc.layout().root().join("audit");
    let text: String = ["audit.log", "refused.log"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(dir.join(f)).ok())
        .collect();
    assert!(text.contains("auth.login"), "the refusal is in one of them");
    assert!(
        !text.contains(&"0".repeat(64)),
        "what a caller sent is never logged"
    );
    assert_eq!(
        socket(
            &w,
            "DELETE",
            &format!("/v1/tokens/{prefix}"),
            serde_json::json!({})
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        tcp(
            &w,
            &admin,
            "GET",
            "/v1/instances/acme",
            serde_json::json!({})
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    // Nonsense is refused with the reason, and nothing is made.
    for bad in [
        serde_json::json!({"role": "tenant-admin", "tenants": [], "expires_in": 60}),
        serde_json::json!({"role": "root", "expires_in": 60}),
        serde_json::json!({"role": "operator"}),
        serde_json::json!({"role": "operator", "expires_in": 60, "scopes": ["all"]}),
    ] {
        let (st, v) = socket(&w, "POST", "/v1/tokens", bad.clone()).await;
        assert!(st.is_client_error(), "{bad}: {st} {v}");
    }
    assert_eq!(
        socket(&w, "GET", "/v1/tokens", serde_json::json!({}))
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test]
async fn every_mutating_call_and_every_refusal_leaves_an_audit_row() {
    let (w, admin, _, _) = populated().await;
    let mutating: Vec<_> = ROUTES
        .iter()
        .filter(|r| r.method != axum::http::Method::GET)
        .collect();
    for r in &mutating {
        let (st, v) = socket(
            &w,
            r.method.as_str(),
            &uri(r.path, "acme"),
            serde_json::json!({}),
        )
        .await;
        // A long operation writes its row when it ends.
        if st == StatusCode::ACCEPTED
            && let Some(id) = v["id"].as_str()
        {
            w.s.ops.wait(id).await;
        }
    }
    tcp(
        &w,
        &admin,
        "DELETE",
        "/v1/instances/globex",
        serde_json::json!({}),
    )
    .await;
    let rows = w.s.cx.svc.audit().query(&crate::audit::Filter::default());
    for r in &mutating {
        assert!(
            rows.iter().any(|e| e.action == r.action),
            "no row for {} {}: {rows:?}",
            r.method,
            r.path
        );
    }
    let denied = rows
        .iter()
        .find(|e| e.result == "denied")
        .expect("the refusal is recorded");
    assert_eq!(denied.action, "instance.delete");
    assert_eq!(denied.actor.kind, "token");
    assert!(
        denied
            .actor
            .prefix
            .as_deref()
            .is_some_and(|p| admin.starts_with(p))
    );
    let text = std::fs::read_to_string(w.s.cx.svc.layout().root().join("audit/audit.log")).unwrap();
    assert!(
        !text.contains(admin.rsplit('_').next().unwrap()),
        "a token's secret in the audit log"
    );
    let created = rows.iter().find(|e| e.action == "token.create").unwrap();
    assert_eq!(
        (created.actor.name.as_str(), created.status),
        ("socket", Some(201))
    );
}

/// The policy table and the router name the same routes: a route added to the router
/// without a policy would be the operator's only (default deny), and this says so.
#[test]
fn the_policy_table_lists_exactly_the_routers_routes() {
    let src = include_str!("mod.rs");
    let router =
        &src[src.find("pub fn router(").unwrap()..src.find("pub fn socket_router(").unwrap()];
    let re = regex::Regex::new(r#""(/v1/[^"]*)""#).unwrap();
    let in_router: std::collections::BTreeSet<&str> = re
        .captures_iter(router)
        .map(|c| c.get(1).unwrap().as_str())
        .collect();
    let in_table: std::collections::BTreeSet<&str> = ROUTES.iter().map(|r| r.path).collect();
    assert_eq!(in_router, in_table);
    for r in ROUTES {
        let scoped = matches!(r.need, Need::Read | Need::Manage);
        let names_tenant = r.path.contains("{tenant}") && r.need != Need::Operator;
        assert_eq!(names_tenant, scoped, "{} {}", r.method, r.path);
    }
}

#[tokio::test]
async fn every_route_in_the_table_is_served_with_its_method() {
    let w = world();
    for r in ROUTES {
        let (st, v) = socket(
            &w,
            r.method.as_str(),
            &uri(r.path, "acme"),
            serde_json::json!({}),
        )
        .await;
        assert_ne!(
            st,
            StatusCode::METHOD_NOT_ALLOWED,
            "{} {}",
            r.method,
            r.path
        );
        assert!(
            !v["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("no such endpoint")),
            "{} {}: {v}",
            r.method,
            r.path
        );
    }
}

#[tokio::test]
async fn every_error_answers_in_one_json_shape() {
    let w = world();
    let cases: [(&str, &str, Option<&str>, &str); 6] = [
        (
            "POST",
            "/v1/instances",
            Some(r#"{"tenant": "a", "template": "demo", "colour": 1}"#),
            "colour",
        ),
        ("POST", "/v1/instances", Some("{not json"), "body"),
        ("POST", "/v1/instances", None, "Content-Type"),
        ("GET", "/v1/audit?since=yesterday", None, "query"),
        ("PATCH", "/v1/instances", None, "does not take PATCH"),
        ("GET", "/v2/nothing", None, "no such endpoint"),
    ];
    for (method, uri, body, says) in cases {
        let mut b = Request::builder().method(method).uri(uri);
        if body.is_some() {
            b = b.header("content-type", "application/json");
        }
        let req = b.body(Body::from(body.unwrap_or("").to_string())).unwrap();
        let resp = socket_router(w.s.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "{method} {uri}: not JSON: {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        assert!(status.is_client_error(), "{method} {uri}: {status}");
        let msg = v["error"].as_str().unwrap_or_default();
        assert!(msg.contains(says), "{method} {uri}: {v}");
        assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
    }
}

#[tokio::test]
async fn an_operation_is_shown_to_the_operator_and_its_own_tenants_tokens_only() {
    let (w, admin, _, _) = populated().await;
    let mut ids = vec![];
    for t in ["acme", "globex"] {
        let (st, v) = socket(
            &w,
            "POST",
            &format!("/v1/instances/{t}/backups"),
            serde_json::json!({}),
        )
        .await;
        assert_eq!(st, StatusCode::ACCEPTED, "{v}");
        assert_eq!(v["state"], "running", "{v}");
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        w.s.ops.wait(id).await;
    }
    let path = |id: &str| format!("/v1/operations/{id}");
    let (st, v) = tcp(&w, &admin, "GET", &path(&ids[0]), serde_json::json!({})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["kind"], "backup.create");
    let (st, v) = tcp(&w, &admin, "GET", &path(&ids[1]), serde_json::json!({})).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "globex's operation: {v}");
    let (st, _) = socket(&w, "GET", &path(&ids[1]), serde_json::json!({})).await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn a_tenant_token_learns_that_another_tenant_holds_a_domain_but_not_which() {
    let (w, admin, _, op) = populated().await;
    w.s.domains
        .bind("shop.example.org", "globex", "dns")
        .unwrap();
    let body = serde_json::json!({"domain": "shop.example.org"});
    let (st, v) = tcp(
        &w,
        &admin,
        "POST",
        "/v1/instances/acme/domains",
        body.clone(),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["claimed_elsewhere"], true, "{v}");
    assert!(
        v["held_by"].is_null() && !v.to_string().contains("globex"),
        "{v}"
    );
    let (st, v) = tcp(&w, &op, "POST", "/v1/instances/acme/domains", body).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["held_by"], "globex", "the operator is told: {v}");
}

#[tokio::test]
async fn a_tcp_client_cannot_name_its_source_and_the_favicon_is_no_refused_login() {
    let (w, admin, _, _) = populated().await;
    let app = tcp_api(w.s.clone(), None);
    let req = |uri: &str, source: &str| {
        Request::builder()
            .method("PUT")
            .uri(uri)
            .header("authorization", format!("Bearer {admin}"))
            .header("x-berth-source", source)
            .header("content-type", "application/json")
            .body(Body::from(r#"{"state":"stopped"}"#))
            .unwrap()
    };
    let resp = app
        .clone()
        .oneshot(req("/v1/instances/acme/state", "cli"))
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let sock = socket_router(w.s.clone());
    let resp = sock
        .oneshot(req("/v1/instances/acme/state", "cli"))
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let favicon = Request::get("/favicon.ico").body(Body::empty()).unwrap();
    assert_eq!(
        app.oneshot(favicon).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let rows = w.s.cx.svc.audit().query(&crate::audit::Filter::default());
    let sources: Vec<(&str, &str)> = rows
        .iter()
        .filter(|e| e.action == "instance.state")
        .map(|e| (e.actor.kind.as_str(), e.source.as_str()))
        .collect();
    assert_eq!(sources, [("token", "api"), ("operator", "cli")], "{rows:?}");
    assert!(
        !rows.iter().any(|e| e.action == "auth.login"),
        "the favicon is not a login: {rows:?}"
    );
}

#[tokio::test]
async fn following_log_streams_are_capped_per_token_and_end_when_it_is_revoked() {
    use super::follow::{PER_PRINCIPAL, RECHECK};
    use futures_util::StreamExt;
    let (w, admin, _, _) = populated().await;
    for _ in 0..2 {
        w.s.cx.svc.probes().tick().await;
        socket(&w, "POST", "/v1/reconcile", serde_json::json!({})).await;
    }
    let app = tcp_api(w.s.clone(), None);
    let follow = || {
        Request::get("/v1/instances/acme/logs?follow=true")
            .header("authorization", format!("Bearer {admin}"))
            .body(Body::empty())
            .unwrap()
    };
    let mut bodies = Vec::new();
    for _ in 0..PER_PRINCIPAL {
        let r = app.clone().oneshot(follow()).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        bodies.push(r.into_body());
    }
    let r = app.clone().oneshot(follow()).await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    drop(bodies.pop());
    let r = app.clone().oneshot(follow()).await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "a closed stream gives its slot back"
    );
    let mut first = bodies.remove(0).into_data_stream();
    let line = first.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&line).contains("fake log"));
    let pending = tokio::time::timeout(std::time::Duration::from_millis(300), first.next()).await;
    assert!(pending.is_err(), "a following stream waits for more lines");
    let prefix = admin.rsplit_once('_').unwrap().0;
    let (st, _) = socket(
        &w,
        "DELETE",
        &format!("/v1/tokens/{prefix}"),
        serde_json::json!({}),
    )
    .await;
    assert!(st.is_success(), "{st}");
    let end = tokio::time::timeout(RECHECK * 3, first.next()).await;
    assert!(
        matches!(end, Ok(None)),
        "the stream ends once its token is revoked"
    );
}

#[tokio::test]
async fn a_diff_shows_a_tenant_token_its_own_tenants_only() {
    let (w, admin, viewer, op) = populated().await;
    // Both tenants have work pending: stopped by hand in their files, held meanwhile (the
    // pass reads the files and applies nothing to them).
    for t in ["acme", "globex"] {
        let path = w.s.cx.svc.host().instances_dir.join(format!("{t}.yaml"));
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("state: running", "state: stopped")).unwrap();
        w.s.cx.passes.hold(t);
    }
    socket(&w, "POST", "/v1/reconcile", serde_json::json!({})).await;
    let tenants = |v: &serde_json::Value| -> Vec<String> {
        let all = v.as_array().cloned().unwrap_or_default();
        all.iter()
            .map(|p| p["tenant"].as_str().unwrap().to_string())
            .collect()
    };
    let (st, v) = tcp(&w, &op, "GET", "/v1/diff", serde_json::Value::Null).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(tenants(&v), ["acme", "globex"], "{v}");
    for tok in [&admin, &viewer] {
        let (st, v) = tcp(&w, tok, "GET", "/v1/diff", serde_json::Value::Null).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(tenants(&v), ["acme"], "{v}");
    }
}

#[tokio::test]
async fn tenant_tokens_share_two_previews_and_the_operator_is_never_refused() {
    let (w, admin, _viewer, op) = populated().await;
    let taken = w.s.previews.clone().try_acquire_many_owned(2).unwrap();
    let (st, v) = tcp(&w, &admin, "GET", "/v1/diff", serde_json::Value::Null).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");
    let set = serde_json::json!({"set": {"site_title": "x"}});
    let uri = "/v1/instances/acme/parameters/preview";
    let (st, _) = tcp(&w, &admin, "POST", uri, set.clone()).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    let (st, v) = tcp(&w, &op, "GET", "/v1/diff", serde_json::Value::Null).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = tcp(&w, &op, "POST", uri, set.clone()).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    drop(taken);
    let (st, v) = tcp(&w, &admin, "GET", "/v1/diff", serde_json::Value::Null).await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn a_restore_asked_while_another_operation_holds_the_tenant_is_refused_with_409() {
    let (w, admin, _viewer, _op) = populated().await;
    w.s.cx.passes.hold("acme");
    let from = serde_json::json!({"from": "20260101T000000Z-abcd"});
    let (st, v) = tcp(&w, &admin, "POST", "/v1/instances/acme/restore", from).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert!(v.to_string().contains("held by another operation"), "{v}");
    assert!(
        w.s.cx.passes.is_held("acme"),
        "the other operation's hold stays"
    );
}
