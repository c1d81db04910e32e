//! Previews change nothing: `GET /v1/diff` and the dry runs of `add` and `set`, on the fake
//! engine, against what a pass then really does.

use super::tests::{call, state};
use axum::http::StatusCode;
use serde_json::{Value, json};

fn kinds(plan: &Value) -> Vec<String> {
    plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap().to_string())
        .collect()
}

async fn add_demo(s: &super::AppState, t: &str) {
    let body = json!({"tenant": t, "template": "demo"});
    let (st, v) = call(s, "POST", "/v1/instances", body).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
}

async fn converge(s: &super::AppState) {
    for _ in 0..3 {
        let (st, _) = call(s, "POST", "/v1/reconcile", json!({})).await;
        assert_eq!(st, StatusCode::OK);
        s.cx.svc.probes().tick().await;
    }
}

#[tokio::test]
async fn a_dry_run_add_shows_the_steps_that_make_the_tenant_and_writes_nothing() {
    let (dir, s) = state();
    let body = json!({"tenant": "acme", "template": "demo", "parameters": {"site_title": "Acme"}});
    let (st, v) = call(&s, "POST", "/v1/previews/add", body.clone()).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(
        !dir.path().join("instances/acme.yaml").exists(),
        "nothing written"
    );
    let k = kinds(&v["plan"]);
    assert!(k.contains(&"create_network".to_string()), "{k:?}");
    assert!(k.contains(&"write_files".to_string()), "{k:?}");
    assert!(
        k.iter().filter(|x| *x == "start_container").count() >= 1,
        "{k:?}"
    );
    assert!(
        v["file"].as_str().unwrap().contains("site_title: Acme"),
        "{v}"
    );
    // Refused exactly as the write would be: an unknown template, a bad parameter.
    let (st, v) = call(
        &s,
        "POST",
        "/v1/previews/add",
        json!({"tenant": "acme", "template": "nope"}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, v) = call(
        &s,
        "POST",
        "/v1/previews/add",
        json!({"tenant": "acme", "template": "demo", "parameters": {"nope": "1"}}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    // Once it exists, adding it again is refused as `add` refuses it.
    let (st, _) = call(&s, "POST", "/v1/instances", body.clone()).await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, v) = call(&s, "POST", "/v1/previews/add", body).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
}

#[tokio::test]
async fn diff_lists_what_the_next_pass_does_and_nothing_once_converged() {
    let (_dir, s) = state();
    add_demo(&s, "acme").await;
    let (st, v) = call(&s, "GET", "/v1/diff", Value::Null).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let acme = v
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["tenant"] == "acme")
        .cloned();
    let acme = acme.unwrap_or_else(|| panic!("{v}"));
    assert!(
        kinds(&acme).contains(&"create_network".to_string()),
        "{acme}"
    );
    let before = s.cx.svc.runtime().mutations();
    let _ = call(&s, "GET", "/v1/diff", Value::Null).await;
    assert_eq!(
        s.cx.svc.runtime().mutations(),
        before,
        "a diff changes nothing"
    );
    converge(&s).await;
    let (_, v) = call(&s, "GET", "/v1/diff", Value::Null).await;
    assert_eq!(v, json!([]), "converged: nothing to do");
    // A dry-run parameter change: the web container is made again; nothing written, and the
    // fleet still has nothing to do. A parameter the template does not have is refused.
    let file = std::fs::read_to_string(s.cx.svc.host().instances_dir.join("acme.yaml")).unwrap();
    let uri = "/v1/instances/acme/parameters/preview";
    let (st, v) = call(&s, "POST", uri, json!({"set": {"site_title": "New"}})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let k = kinds(&v["plan"]);
    assert!(
        k.contains(&"remove_container".to_string()) && k.contains(&"start_container".to_string()),
        "{k:?}"
    );
    assert!(
        v["file"].as_str().unwrap().contains("site_title: New"),
        "{v}"
    );
    let after = std::fs::read_to_string(s.cx.svc.host().instances_dir.join("acme.yaml")).unwrap();
    assert_eq!(after, file, "nothing written");
    let (_, v) = call(&s, "GET", "/v1/diff", Value::Null).await;
    assert_eq!(v, json!([]));
    let (st, _) = call(&s, "POST", uri, json!({"set": {"nope": "1"}})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = call(
        &s,
        "POST",
        "/v1/instances/ghost/parameters/preview",
        json!({"set": {}}),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // A file broken by hand: no steps, and why.
    let path = s.cx.svc.host().instances_dir.join("acme.yaml");
    std::fs::write(&path, format!("{file}state: stopped\n")).unwrap();
    let (_, v) = call(&s, "GET", "/v1/diff", Value::Null).await;
    assert!(
        v[0]["waits"]
            .as_str()
            .unwrap()
            .contains("its file is invalid"),
        "{v}"
    );
    assert_eq!(v[0]["steps"], json!([]), "{v}");
    // A held tenant's steps are shown with why they wait.
    assert!(file.contains("state: running"), "{file}");
    std::fs::write(&path, file.replace("state: running", "state: stopped")).unwrap();
    s.cx.passes.hold("acme");
    let (_, v) = call(&s, "GET", "/v1/diff", Value::Null).await;
    let acme = &v[0];
    assert_eq!(acme["tenant"], "acme", "{v}");
    assert!(kinds(acme).contains(&"stop_container".to_string()), "{v}");
    assert!(
        acme["waits"]
            .as_str()
            .unwrap()
            .contains("held by an operation"),
        "{v}"
    );
}

#[tokio::test]
async fn a_dry_run_upgrade_shows_its_waves_and_starts_nothing() {
    let (_dir, s) = state();
    for t in ["acme", "globex", "initech"] {
        add_demo(&s, t).await;
    }
    converge(&s).await;
    let body = json!({"app": "demo", "to": "2", "canary": 1, "batch": "2"});
    let (st, v) = call(&s, "POST", "/v1/previews/upgrade", body.clone()).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["waves"], json!([["acme"], ["globex", "initech"]]), "{v}");
    assert_eq!(v["tenants"]["acme"]["from"], "1", "{v}");
    assert!(s.fleet.upgrades.status().is_none(), "nothing started");
    let (st, _) = call(&s, "GET", "/v1/upgrades/current", Value::Null).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Refused as a start is: an unknown version, a bad ratio, nothing to upgrade.
    for (body, status) in [
        (json!({"app": "demo", "to": "9"}), StatusCode::BAD_REQUEST),
        (
            json!({"app": "demo", "to": "2", "max_failure_ratio": 2}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"app": "demo", "to": "2", "tenants": "nobody*"}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (st, v) = call(&s, "POST", "/v1/previews/upgrade", body.clone()).await;
        assert_eq!(st, status, "{body}: {v}");
    }
    // With an upgrade under way, a preview says so as a start would.
    let (st, _) = call(&s, "POST", "/v1/upgrades", body.clone()).await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, v) = call(&s, "POST", "/v1/previews/upgrade", body).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
}

#[tokio::test]
async fn a_dry_run_removal_lists_what_goes_and_removes_nothing() {
    let (dir, s) = state();
    add_demo(&s, "acme").await;
    converge(&s).await;
    let before = s.cx.svc.runtime().mutations();
    let (st, v) = call(&s, "POST", "/v1/previews/rm", json!({"tenant": "acme"})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let k = kinds(&v);
    assert!(k.contains(&"remove_container".to_string()), "{k:?}");
    assert!(k.contains(&"remove_network".to_string()), "{k:?}");
    assert!(
        !k.contains(&"remove_volume".to_string()),
        "kept without purge: {k:?}"
    );
    let (_, v) = call(
        &s,
        "POST",
        "/v1/previews/rm",
        json!({"tenant": "acme", "purge": true}),
    )
    .await;
    let k = kinds(&v);
    assert!(
        k.contains(&"remove_volume".to_string()) && k.contains(&"purge_files".to_string()),
        "{k:?}"
    );
    assert_eq!(s.cx.svc.runtime().mutations(), before, "nothing removed");
    assert!(dir.path().join("instances/acme.yaml").exists());
    let (st, _) = call(&s, "POST", "/v1/previews/rm", json!({"tenant": "ghost"})).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = call(&s, "POST", "/v1/previews/rm", json!({"tenant": "../x"})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}
