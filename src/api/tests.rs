//! API tests in process (`router(state).oneshot(…)`) over the fake runtime.

use super::*;
use crate::{
    fixtures,
    reconcile::Controller,
    runtime::fake::FakeRuntime,
    services::{Cx, Services},
};
use axum::{
    body::Body,
    http::{Request, StatusCode},
};
use tower::ServiceExt;

pub(crate) fn state() -> (tempfile::TempDir, AppState) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("instances")).unwrap();
    let mut host = fixtures::host();
    host.state_dir = dir.path().join("state");
    host.backup_dir = dir.path().join("state/backups");
    host.instances_dir = dir.path().join("instances");
    host.ports = (42000, 42999);
    let checker = Arc::new(crate::probe::FakeChecker::default());
    let svc = Services::with_checker(Arc::new(FakeRuntime::new()), host, checker).unwrap();
    let svc = Arc::new(svc);
    let cx = Cx {
        passes: Arc::new(Controller::new(svc.clone())),
        svc,
    };
    let book =
        Arc::new(crate::domains::DomainBook::open(dir.path().join("state/domains.json")).unwrap());
    let fleet = crate::upgrade::Fleet::open(cx.clone(), None);
    (dir, AppState::new(cx, book, None, fleet))
}

pub(super) async fn call(
    s: &AppState,
    method: &str,
    uri: &str,
    body: serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    super::access_tests::send(socket_router(s.clone()), method, uri, None, body).await
}

async fn add(s: &AppState, body: serde_json::Value) -> (StatusCode, serde_json::Value) {
    call(s, "POST", "/v1/instances", body).await
}

#[tokio::test]
async fn adding_an_instance_writes_its_file_and_the_next_pass_runs_it() {
    let (dir, s) = state();
    let (st, body) = add(&s, serde_json::json!({"tenant": "acme", "template": "demo", "domains": ["acme.test"], "parameters": {"site_title": "Acme"}})).await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let text = std::fs::read_to_string(dir.path().join("instances/acme.yaml")).unwrap();
    assert!(text.contains("site_title: Acme"), "{text}");
    for _ in 0..3 {
        let (st, _) = call(&s, "POST", "/v1/reconcile", serde_json::json!({})).await;
        assert_eq!(st, StatusCode::OK);
        s.cx.svc.probes().tick().await;
    }
    let (_, one) = call(&s, "GET", "/v1/instances/acme", serde_json::Value::Null).await;
    assert_eq!(one["phase"], "running");
}

#[tokio::test]
async fn bad_requests_are_refused_with_the_reason_and_write_nothing() {
    let (dir, s) = state();
    let cases = [
        (
            serde_json::json!({"tenant": "Bad_Name", "template": "demo"}),
            "not a valid tenant name",
        ),
        (
            serde_json::json!({"tenant": "acme", "template": "nope"}),
            "template \"nope\" does not exist",
        ),
        (
            serde_json::json!({"tenant": "acme", "template": "demo", "version": "9"}),
            "version \"9\" of template \"demo\" does not exist",
        ),
        (
            serde_json::json!({"tenant": "acme", "template": "demo", "parameters": {"brand_color": "blue"}}),
            "parameters.brand_color: \"blue\" is not a colour",
        ),
    ];
    for (req, want) in cases {
        let (st, body) = add(&s, req).await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert!(
            body["error"].as_str().unwrap().contains(want),
            "{body} lacks {want}"
        );
    }
    assert_eq!(
        std::fs::read_dir(dir.path().join("instances"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test]
async fn a_proven_domain_is_refused_to_others_and_an_unproven_claim_blocks_nothing() {
    let (_dir, s) = state();
    let with =
        |t: &str| serde_json::json!({"tenant": t, "template": "demo", "domains": ["shop.test"]});
    assert_eq!(add(&s, with("acme")).await.0, StatusCode::CREATED);
    // acme has not proven shop.test: beta may claim it too, and proof decides.
    assert_eq!(add(&s, with("beta")).await.0, StatusCode::CREATED);
    s.domains.bind("shop.test", "acme", "dns").unwrap();
    let (st, body) = add(&s, with("gamma")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("instances/gamma.yaml:4:3: domains.0: domain \"shop.test\" is already claimed by tenant acme"), "{body}");
    let (st, _) = add(
        &s,
        serde_json::json!({"tenant": "acme", "template": "demo"}),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT);
}

#[tokio::test]
async fn state_changes_and_removal_edit_the_files() {
    let (dir, s) = state();
    add(
        &s,
        serde_json::json!({"tenant": "acme", "template": "demo"}),
    )
    .await;
    let (st, _) = call(
        &s,
        "PUT",
        "/v1/instances/acme/state",
        serde_json::json!({"state": "suspended"}),
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    assert!(
        std::fs::read_to_string(dir.path().join("instances/acme.yaml"))
            .unwrap()
            .contains("state: suspended")
    );
    s.domains.bind("shop.example.org", "acme", "dns").unwrap();
    let (st, _) = call(
        &s,
        "DELETE",
        "/v1/instances/acme?purge=true",
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    assert!(!dir.path().join("instances/acme.yaml").exists());
    assert!(dir.path().join("state/purge/acme").exists());
    assert_eq!(
        s.domains.bound_to("shop.example.org"),
        None,
        "purge forgets domain proofs"
    );
    let (st, _) = call(&s, "DELETE", "/v1/instances/ghost", serde_json::Value::Null).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Until the purge has run, the name cannot be taken again.
    let (st, body) = add(
        &s,
        serde_json::json!({"tenant": "acme", "template": "demo"}),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("still being purged"),
        "{body}"
    );
    call(&s, "POST", "/v1/reconcile", serde_json::json!({})).await;
    assert!(!dir.path().join("state/purge/acme").exists());
    let (st, _) = add(
        &s,
        serde_json::json!({"tenant": "acme", "template": "demo"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
}

#[tokio::test]
async fn the_tcp_api_wants_the_bearer_token() {
    let (_dir, s) = state();
    let app = tcp_api(s, Some("s3cret-token".into()));
    let req = |auth: Option<&str>| {
        let mut b = Request::builder().uri("/v1/agent");
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(Body::empty()).unwrap()
    };
    assert_eq!(
        app.clone().oneshot(req(None)).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.clone()
            .oneshot(req(Some("Bearer wrong")))
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.oneshot(req(Some("Bearer s3cret-token")))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn logs_default_to_the_web_service_and_take_another_by_name() {
    let (_dir, s) = state();
    add(
        &s,
        serde_json::json!({"tenant": "acme", "template": "demo"}),
    )
    .await;
    for _ in 0..2 {
        call(&s, "POST", "/v1/reconcile", serde_json::json!({})).await;
        s.cx.svc.probes().tick().await;
    }
    let text = |uri: &'static str| {
        let s = s.clone();
        async move {
            let resp = socket_router(s)
                .oneshot(Request::builder().uri(uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            let status = resp.status();
            (
                status,
                String::from_utf8(
                    axum::body::to_bytes(resp.into_body(), 1 << 20)
                        .await
                        .unwrap()
                        .to_vec(),
                )
                .unwrap(),
            )
        }
    };
    assert_eq!(
        text("/v1/instances/acme/logs").await,
        (StatusCode::OK, "fake log of berth-acme-app\n".into())
    );
    assert_eq!(
        text("/v1/instances/acme/logs?service=db").await,
        (StatusCode::OK, "fake log of berth-acme-db\n".into())
    );
    assert_eq!(
        text("/v1/instances/acme/logs?service=nope").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn an_encoded_query_in_a_tenant_name_is_refused_and_purges_nothing() {
    let (dir, s) = state();
    let (st, _) = add(
        &s,
        serde_json::json!({"tenant": "chk5", "template": "demo"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    // What an unescaping client sent for `berth rm 'chk5?purge=true&x='`, escaped this time.
    for (method, uri) in [
        ("DELETE", "/v1/instances/chk5%3Fpurge=true&x=?purge=false"),
        ("GET", "/v1/instances/acme%3Fx=1"),
        ("GET", "/v1/instances/..%2Fchk5"),
        ("POST", "/v1/instances/chk5/backups/..%2F..%2Fx/verify"),
        ("POST", "/v1/instances/chk5/domains/10.1.2.3%2Fx/verify"),
    ] {
        let (st, body) = call(&s, method, uri, serde_json::Value::Null).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{method} {uri}: {body}");
        let msg = body["error"].as_str().unwrap();
        assert!(msg.starts_with("path parameter "), "{msg}");
    }
    assert!(dir.path().join("instances/chk5.yaml").exists());
    assert!(
        !s.cx.svc.layout().purge_marker("chk5").exists(),
        "purge marker written"
    );
    let (st, body) = call(&s, "GET", "/v1/nothing/here", serde_json::Value::Null).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "no such endpoint: GET /v1/nothing/here");
}

#[tokio::test]
async fn domain_add_is_validated_like_add_and_writes_nothing_when_refused() {
    let (dir, s) = state();
    let body = serde_json::json!({"tenant": "chk4", "template": "demo", "limits": {"domains": 1}});
    assert_eq!(add(&s, body).await.0, StatusCode::CREATED);
    let file = || std::fs::read_to_string(dir.path().join("instances/chk4.yaml")).unwrap();
    let claim = |d: &str| {
        let s = s.clone();
        let d = d.to_string();
        async move {
            call(
                &s,
                "POST",
                "/v1/instances/chk4/domains",
                serde_json::json!({"domain": d}),
            )
            .await
        }
    };
    assert_eq!(claim("one.example.org").await.0, StatusCode::CREATED);
    let before = file();
    let (st, body) = claim("two.example.org").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("2 domains and aliases claimed; the plan allows 1"),
        "{body}"
    );
    assert_eq!(file(), before, "a refused claim changed the file");
    assert!(
        s.domains.pending("two.example.org", "chk4").is_none(),
        "a refused claim was recorded"
    );
    // Another tenant's subdomain is never claimable, so it cannot block that tenant's add.
    let base = s.cx.svc.host().base_domain.clone().unwrap();
    let (st, body) = claim(&format!("chk9.{base}")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    let (st, body) = add(
        &s,
        serde_json::json!({"tenant": "chk9", "template": "demo"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    for ip in ["10.1.2.3", "127.0.0.1"] {
        let (st, body) = claim(ip).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    }
}

#[tokio::test]
async fn hostile_recover_and_upgrade_bodies_are_refused_by_field_and_start_nothing() {
    let (_d, s) = state();
    for (body, status, says) in [
        (serde_json::json!({}), StatusCode::BAD_REQUEST, "repository"),
        (
            serde_json::json!({"repository": 5}),
            StatusCode::BAD_REQUEST,
            "repository",
        ),
        (
            serde_json::json!({"repository": "offsite", "extra": 1}),
            StatusCode::BAD_REQUEST,
            "extra",
        ),
        (
            serde_json::json!({"repository": "offsite", "tenants": ["../etc"]}),
            StatusCode::BAD_REQUEST,
            "tenants",
        ),
        (
            serde_json::json!({"repository": "../offsite"}),
            StatusCode::NOT_FOUND,
            "no backup repository",
        ),
        (
            serde_json::json!({"repository": "offsite", "inventory": "latest"}),
            StatusCode::BAD_REQUEST,
            "inventory",
        ),
        (
            serde_json::json!({"repository": "offsite", "inventory": "--tag=x"}),
            StatusCode::BAD_REQUEST,
            "inventory",
        ),
        (
            serde_json::json!({"repository": "offsite", "inventory": "0123abc"}),
            StatusCode::BAD_REQUEST,
            "inventory",
        ),
        (
            serde_json::json!({"repository": "offsite", "inventory": 5}),
            StatusCode::BAD_REQUEST,
            "inventory",
        ),
    ] {
        let (st, v) = call(&s, "POST", "/v1/recover", body.clone()).await;
        assert_eq!(st, status, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(says), "{body}: {v}");
    }
    for ratio in [
        serde_json::json!(1.5),
        serde_json::json!(0),
        serde_json::json!(-0.1),
    ] {
        let body = serde_json::json!({"app": "demo", "to": "2", "max_failure_ratio": ratio});
        let (st, v) = call(&s, "POST", "/v1/upgrades", body).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{ratio}: {v}");
        assert!(
            v["error"].as_str().unwrap().contains("max_failure_ratio"),
            "{v}"
        );
    }
    assert!(s.fleet.upgrades.status().is_none(), "no upgrade started");
}
