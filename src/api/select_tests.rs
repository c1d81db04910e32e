//! The fleet's selector on `GET /v1/instances`: labels written by `berth add`, requirements and
//! fields combined, a malformed selector refused with what is wrong.

use super::tests::{call, state};
use axum::http::StatusCode;
use serde_json::{Value, json};

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|i| i["tenant"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn the_list_takes_the_tenants_a_selector_selects_and_refuses_a_malformed_one() {
    let (dir, s) = state();
    for (t, labels) in [
        ("acme", json!({"tier": "gold", "region": "us"})),
        ("globex", json!({"tier": "gold", "legacy": ""})),
        ("initech", json!({"tier": "basic"})),
    ] {
        let body = json!({"tenant": t, "template": "demo", "labels": labels});
        let (st, v) = call(&s, "POST", "/v1/instances", body).await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
    }
    let file = std::fs::read_to_string(dir.path().join("instances/acme.yaml")).unwrap();
    assert!(
        file.contains("labels:\n  region: us\n  tier: gold"),
        "{file}"
    );
    let (st, _) = call(&s, "POST", "/v1/reconcile", json!({})).await;
    assert_eq!(st, StatusCode::OK);

    let cases = [
        ("", vec!["acme", "globex", "initech"]),
        ("?selector=tier%3Dgold", vec!["acme", "globex"]),
        ("?selector=tier%3Dgold%2C%21legacy", vec!["acme"]),
        ("?selector=tier%21%3Dgold", vec!["initech"]),
        ("?selector=legacy", vec!["globex"]),
        (
            "?selector=tier%3Dgold&app=demo&version=1",
            vec!["acme", "globex"],
        ),
        ("?plan=small", vec![]),
        ("?app=wordpress", vec![]),
        ("?selector=&phase=", vec!["acme", "globex", "initech"]),
    ];
    for (q, want) in cases {
        let (st, v) = call(&s, "GET", &format!("/v1/instances{q}"), json!(null)).await;
        assert_eq!(st, StatusCode::OK, "{q}: {v}");
        assert_eq!(names(&v), want, "{q}");
    }
    let (_, v) = call(&s, "GET", "/v1/instances?selector=tier%3Dgold", json!(null)).await;
    assert_eq!(v[0]["labels"]["region"], "us", "{v}");

    for bad in ["tier%3Dgold%2C", "%2Cx", "-x", "tier%3Dgold%20plus", "%21"] {
        let (st, v) = call(
            &s,
            "GET",
            &format!("/v1/instances?selector={bad}"),
            json!(null),
        )
        .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert!(
            v["error"].as_str().unwrap().starts_with("selector: "),
            "{v}"
        );
    }
    // A label that is not one is refused at the write, naming its field.
    let body = json!({"tenant": "hooli", "template": "demo", "labels": {"tier": "gold plus"}});
    let (st, v) = call(&s, "POST", "/v1/instances", body).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].as_str().unwrap().contains("labels.tier"), "{v}");
    assert!(!dir.path().join("instances/hooli.yaml").exists());
}

/// Labels are the operator's notes: a tenant token neither sees its tenant's labels nor
/// selects by them; it still selects its own tenants by app, plan, version or phase.
#[tokio::test]
async fn a_tenant_token_neither_sees_nor_probes_labels() {
    let (_dir, s) = state();
    for t in ["acme", "globex"] {
        let body = json!({"tenant": t, "template": "demo", "labels": {"billing": "overdue"}});
        let (st, v) = call(&s, "POST", "/v1/instances", body).await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
    }
    let (st, _) = call(&s, "POST", "/v1/reconcile", json!({})).await;
    assert_eq!(st, StatusCode::OK);
    let body = json!({"role": "tenant-viewer", "tenants": ["acme"], "expires_in": 3600});
    let (st, v) = call(&s, "POST", "/v1/tokens", body).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let token = v["token"].as_str().unwrap().to_string();
    let api = super::tcp_api(s.clone(), Some("host-operator-token".into()));
    let get = |uri: &'static str| {
        let (api, token) = (api.clone(), token.clone());
        async move { super::access_tests::send(api, "GET", uri, Some(&token), json!(null)).await }
    };
    let (st, v) = get("/v1/instances?app=demo").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(names(&v), ["acme"]);
    assert!(v[0].get("labels").is_none(), "{v}");
    let (st, v) = get("/v1/instances/acme").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v.get("labels").is_none(), "{v}");
    let (st, v) = get("/v1/instances?selector=billing%3Doverdue").await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, _) = get("/v1/instances?selecter=x").await;
    assert_eq!(
        st,
        StatusCode::BAD_REQUEST,
        "an unknown parameter is refused, not ignored"
    );
}
