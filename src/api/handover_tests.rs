//! A move's API on both hosts fed hostile bodies: each refused by field, nothing made, no hold
//! left behind; and a moved tenant's copy fenced.

use super::tests::{call, state};
use axum::http::StatusCode;
use serde_json::json;

fn entry(tenant: &str, id: &str) -> serde_json::Value {
    json!({"tenant": tenant, "tenant_id": id, "domains": {}})
}

const ID: &str = "0123456789abcdef0123456789abcdef";

#[tokio::test]
async fn hostile_move_bodies_are_refused_by_field_and_make_nothing() {
    let (dir, s) = state();
    let ok = |e: serde_json::Value| json!({"repository": "offsite", "backup": "20261207T000000Z-ab12", "entry": e});
    let domain = json!({"tenant": "acme", "tenant_id": ID,
        "domains": {"shop.globex.test": {"tenant": "globex", "method": "dns", "verified_at": 1}}});
    for (body, status, says) in [
        (json!({}), StatusCode::BAD_REQUEST, "repository"),
        (ok(entry("../etc", ID)), StatusCode::BAD_REQUEST, "entry"),
        (
            ok(entry("acme", "../../id")),
            StatusCode::BAD_REQUEST,
            "identity",
        ),
        (ok(domain), StatusCode::BAD_REQUEST, "shop.globex.test"),
        (
            json!({"repository": "offsite", "backup": "../x", "entry": entry("acme", ID)}),
            StatusCode::BAD_REQUEST,
            "backup",
        ),
        (
            json!({"repository": "offsite", "backup": "b", "entry": entry("acme", ID), "x": 1}),
            StatusCode::BAD_REQUEST,
            "x",
        ),
        (
            ok(entry("acme", ID)),
            StatusCode::NOT_FOUND,
            "no backup repository",
        ),
    ] {
        let (st, v) = call(&s, "POST", "/v1/moves", body.clone()).await;
        assert_eq!(st, status, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(says), "{body}: {v}");
    }
    assert!(!dir.path().join("instances/acme.yaml").exists());
    assert!(!dir.path().join("state/tenants/acme").exists());
}

#[tokio::test]
async fn a_forward_to_anything_but_an_edge_or_without_a_hold_is_refused() {
    let (_d, s) = state();
    let (st, v) = call(
        &s,
        "POST",
        "/v1/instances",
        json!({"tenant": "acme", "template": "demo"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let fwd = "/v1/instances/acme/handover/forward";
    for (edge, to, says) in [
        ("https://b:443", "https://b:8443", "edge"),
        ("user@b:443", "https://b:8443", "edge"),
        ("b", "https://b:8443", "edge"),
        ("b:443/x", "https://b:8443", "edge"),
        ("b:443", "ftp://b", "to"),
        ("b:443", "https://user:secret@b:8443", "to"),
    ] {
        let (st, v) = call(&s, "POST", fwd, json!({"to": to, "edge": edge})).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{edge} {to}: {v}");
        assert!(v["error"].as_str().unwrap().contains(says), "{v}");
    }
    let body = json!({"to": "https://b:8443", "edge": "b:443", "edge_http": "http://b:80/x"});
    let (st, v) = call(&s, "POST", fwd, body).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].as_str().unwrap().contains("edge_http"), "{v}");
    let (st, v) = call(
        &s,
        "POST",
        fwd,
        json!({"to": "https://b:8443", "edge": "b:443"}),
    )
    .await;
    assert_ne!(st, StatusCode::OK, "{v}");
    let (st, v) = call(&s, "POST", "/v1/instances/acme/handover/release", json!({})).await;
    assert_eq!((st, &v["released"]), (StatusCode::OK, &json!(false)), "{v}");
    // No edge on this host: nothing to hold with.
    let body = json!({"repository": "offsite"});
    let (st, _) = call(&s, "POST", "/v1/instances/acme/handover/hold", body).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "no such repository here");
}

#[tokio::test]
async fn a_moved_tenants_copy_is_not_started_changed_or_backed_up_here() {
    let (dir, s) = state();
    let (st, v) = call(
        &s,
        "POST",
        "/v1/instances",
        json!({"tenant": "acme", "template": "demo"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let t = dir.path().join("state/tenants/acme");
    std::fs::create_dir_all(&t).unwrap();
    let record = json!({"tenant": "acme", "to": "https://b:8443", "edge": "b:443", "host": "acme.apps.test"});
    std::fs::write(t.join("moved.json"), record.to_string()).unwrap();
    for (method, path, body) in [
        (
            "PUT",
            "/v1/instances/acme/state",
            json!({"state": "running"}),
        ),
        ("POST", "/v1/instances/acme/restart", json!({})),
        ("POST", "/v1/instances/acme/backups", json!({})),
        (
            "POST",
            "/v1/instances/acme/restore",
            json!({"from": "20261207T000000Z-ab12"}),
        ),
    ] {
        let (st, v) = call(&s, method, path, body).await;
        assert_eq!(st, StatusCode::CONFLICT, "{path}: {v}");
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .contains("moved to https://b:8443"),
            "{v}"
        );
    }
    // Removed here, its record goes with it.
    let (st, _) = call(&s, "DELETE", "/v1/instances/acme", json!({})).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    assert!(!t.join("moved.json").exists());
}
