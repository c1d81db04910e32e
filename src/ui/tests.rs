//! The dashboard through the TCP router, as a browser would call it: login, sessions, what
//! each role sees, CSRF, and its changes in the audit log. (A real browser drives it in
//! `tests/dashboard.rs`.)

use super::{UiState, tcp_router};
use crate::api::{AppState, socket_router};
use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};
use tower::ServiceExt;

struct Page {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    html: String,
}

async fn send(s: &UiState, method: &str, uri: &str, cookie: Option<&str>, form: &str) -> Page {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "127.0.0.1:8300")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    let app = tcp_router(
        s.api.clone(),
        s.ui.clone(),
        Some("host-operator-token".into()),
    );
    let resp = app
        .oneshot(b.body(Body::from(form.to_string())).unwrap())
        .await
        .unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = axum::body::to_bytes(resp.into_body(), 4 << 20)
        .await
        .unwrap();
    Page {
        status,
        headers,
        html: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

async fn api(s: &AppState, method: &str, uri: &str, body: serde_json::Value) -> serde_json::Value {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = socket_router(s.clone()).oneshot(req).await.unwrap();
    let bytes = axum::body::to_bytes(resp.into_body(), 4 << 20)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap_or_default()
}

/// Tenants acme and globex, and a token for acme's admin.
async fn world() -> (tempfile::TempDir, UiState, String) {
    let (dir, s) = crate::api::tests::state();
    for (t, tier) in [("acme", "gold"), ("globex", "basic")] {
        api(
            &s,
            "POST",
            "/v1/instances",
            serde_json::json!({"tenant": t, "template": "demo", "labels": {"tier": tier}}),
        )
        .await;
    }
    api(&s, "POST", "/v1/reconcile", serde_json::json!({})).await;
    let body = serde_json::json!({"role": "tenant-admin", "tenants": ["acme"], "expires_in": 3600});
    let v = api(&s, "POST", "/v1/tokens", body).await;
    let s = UiState {
        api: s,
        ui: Default::default(),
    };
    (dir, s, v["token"].as_str().unwrap().to_string())
}

/// Logs in with `token`; returns the `Cookie` header value for the session.
async fn login(s: &UiState, token: &str) -> String {
    let p = send(s, "POST", "/ui/login", None, &format!("token={token}")).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.html);
    let set = p.headers[header::SET_COOKIE].to_str().unwrap().to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(set.contains(attr), "{set}");
    }
    set.split(';').next().unwrap().to_string()
}

fn csrf(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    html[at..at + 64].to_string()
}

#[tokio::test]
async fn without_a_session_every_page_sends_the_browser_to_the_login_form() {
    let (_d, s, _) = world().await;
    for uri in ["/ui/", "/ui/t/acme", "/ui/t/acme/logs"] {
        let p = send(&s, "GET", uri, None, "").await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{uri}");
        assert_eq!(p.headers[header::LOCATION], "/ui/login");
    }
    let forged = format!("berth_session={}", "a".repeat(64));
    let p = send(&s, "GET", "/ui/", Some(&forged), "").await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    let p = send(&s, "GET", "/ui/login", None, "").await;
    assert_eq!(p.status, StatusCode::OK);
    let csp = p.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert_eq!(p.headers[header::X_FRAME_OPTIONS], "DENY");
    let bad = send(&s, "POST", "/ui/login", None, "token=bth_nope_nope").await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(bad.html.contains("refused"), "{}", bad.html);
    assert!(
        !bad.html.contains("bth_nope_nope"),
        "the refused token is not echoed"
    );
    let rows = s.cx.svc.audit().query(&crate::audit::Filter::default());
    assert!(
        rows.iter()
            .any(|e| e.action == "auth.login" && e.result == "denied" && e.source == "ui")
    );
}

#[tokio::test]
async fn the_operator_sees_every_tenant_and_a_tenant_admin_only_its_own() {
    let (_d, s, acme) = world().await;
    let op = login(&s, "host-operator-token").await;
    let p = send(&s, "GET", "/ui/", Some(&op), "").await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.html.contains("data-tenant=\"acme\"") && p.html.contains("data-tenant=\"globex\""));
    assert!(p.html.contains("id=\"host\"") && p.html.contains("id=\"upgrade\""));
    let filtered = send(&s, "GET", "/ui/?q=glob", Some(&op), "").await;
    assert!(!filtered.html.contains("data-tenant=\"acme\""));
    assert!(filtered.html.contains("data-tenant=\"globex\""));
    let bad = send(&s, "GET", "/ui/?nope=1", Some(&op), "").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    // The fleet's selector: labels as `berth ls -l` takes them, shown on each line.
    let gold = send(&s, "GET", "/ui/?labels=tier%3Dgold&app=demo", Some(&op), "").await;
    assert!(
        gold.html.contains("data-tenant=\"acme\"") && !gold.html.contains("data-tenant=\"globex\"")
    );
    assert!(gold.html.contains("tier=gold"), "{}", gold.html);
    let bad = send(&s, "GET", "/ui/?labels=tier%3D%2C", Some(&op), "").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.html.contains("labels: "), "{}", bad.html);

    let ad = login(&s, &acme).await;
    let p = send(&s, "GET", "/ui/", Some(&ad), "").await;
    assert!(p.html.contains("data-tenant=\"acme\""));
    assert!(!p.html.contains("globex"), "{}", p.html);
    assert!(
        !p.html.contains("id=\"host\""),
        "host capacity is the operator's"
    );
    for uri in ["/ui/t/globex", "/ui/t/globex/logs", "/ui/t/nobody"] {
        let p = send(&s, "GET", uri, Some(&ad), "").await;
        assert_eq!(p.status, StatusCode::NOT_FOUND, "{uri}");
    }
    let p = send(&s, "GET", "/ui/t/acme", Some(&ad), "").await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.html);
    assert!(p.html.contains("id=\"backup-now\""));
}

#[tokio::test]
async fn a_form_without_its_csrf_token_or_from_another_site_changes_nothing() {
    let (_d, s, acme) = world().await;
    let ad = login(&s, &acme).await;
    let page = send(&s, "GET", "/ui/t/acme", Some(&ad), "").await;
    let token = csrf(&page.html);
    let path = s.cx.svc.host().instances_dir.join("acme.yaml");
    let before = std::fs::read_to_string(&path).unwrap();
    for form in [
        String::new(),
        "csrf=".into(),
        format!("csrf={}", "0".repeat(64)),
    ] {
        let p = send(&s, "POST", "/ui/t/acme/stop", Some(&ad), &form).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{form}");
    }
    assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
    // A typed form post to globex with acme's own valid token: refused by the API's policy.
    let p = send(
        &s,
        "POST",
        "/ui/t/globex/stop",
        Some(&ad),
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    let p = send(
        &s,
        "POST",
        "/ui/t/acme/stop",
        Some(&ad),
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.html);
    assert!(std::fs::read_to_string(&path).unwrap().contains("stopped"));
    let next = send(&s, "GET", "/ui/t/acme", Some(&ad), "").await;
    assert!(
        next.html.contains("stop requested"),
        "the outcome is shown once"
    );
    let rows = s.cx.svc.audit().query(&crate::audit::Filter::default());
    let row = rows
        .iter()
        .find(|e| e.action == "instance.state" && e.result == "ok")
        .expect("a row");
    assert_eq!(
        (row.source.as_str(), row.tenant.as_deref()),
        ("ui", Some("acme"))
    );
    assert_eq!(row.actor.kind, "token");
    let denied = rows
        .iter()
        .find(|e| e.tenant.as_deref() == Some("globex"))
        .expect("refusal");
    assert_eq!(denied.result, "denied");
}

#[tokio::test]
async fn a_revoked_token_ends_its_sessions_and_logout_ends_one() {
    let (_d, s, acme) = world().await;
    let ad = login(&s, &acme).await;
    assert_eq!(
        send(&s, "GET", "/ui/", Some(&ad), "").await.status,
        StatusCode::OK
    );
    let id = acme
        .strip_prefix("bth_")
        .unwrap()
        .split('_')
        .next()
        .unwrap();
    api(
        &s,
        "DELETE",
        &format!("/v1/tokens/{id}"),
        serde_json::json!({}),
    )
    .await;
    assert_eq!(
        send(&s, "GET", "/ui/", Some(&ad), "").await.status,
        StatusCode::SEE_OTHER
    );

    let op = login(&s, "host-operator-token").await;
    let page = send(&s, "GET", "/ui/", Some(&op), "").await;
    let out = send(
        &s,
        "POST",
        "/ui/logout",
        Some(&op),
        &format!("csrf={}", csrf(&page.html)),
    )
    .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(
        out.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(
        send(&s, "GET", "/ui/", Some(&op), "").await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn a_restore_asks_first_on_a_page_of_its_own() {
    let (_d, s, acme) = world().await;
    let ad = login(&s, &acme).await;
    let p = send(
        &s,
        "GET",
        "/ui/t/acme/confirm-restore?id=20261205T053716Z-f8d1",
        Some(&ad),
        "",
    )
    .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.html);
    assert!(p.html.contains("action=\"/ui/t/acme/restore\"") && p.html.contains("Restore now"));
    assert_eq!(csrf(&p.html).len(), 64);
    for (uri, want) in [
        ("/ui/t/globex/confirm-restore?id=x", StatusCode::NOT_FOUND),
        (
            "/ui/t/acme/confirm-restore?id=../../etc",
            StatusCode::BAD_REQUEST,
        ),
        ("/ui/t/acme/confirm-restore", StatusCode::BAD_REQUEST),
        (
            "/ui/t/acme/confirm-restore?id=x&more=1",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        assert_eq!(
            send(&s, "GET", uri, Some(&ad), "").await.status,
            want,
            "{uri}"
        );
    }
}
