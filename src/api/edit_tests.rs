//! Writes through the API keep the operator's comments, order and layout: a file full of
//! comments, edited by `berth set`, `suspend` and a domain claim, changes in those lines only.

use super::tests::{call, state};
use axum::http::StatusCode;
use serde_json::json;

const FILE: &str = "\
# acme — sales team's shop (OPS-1234)
tenant: acme
template: demo   # the demo app

# plan agreed 2026-11
parameters:
  # what visitors see
  site_title: Acme        # keep it short
  admin_email: ops@acme.test
state: running   # running | stopped | suspended
# end
";

fn changed(before: &str, after: &str) -> (Vec<String>, Vec<String>) {
    let (a, b): (Vec<&str>, Vec<&str>) = (before.lines().collect(), after.lines().collect());
    (
        a.iter()
            .filter(|l| !b.contains(l))
            .map(|l| l.to_string())
            .collect(),
        b.iter()
            .filter(|l| !a.contains(l))
            .map(|l| l.to_string())
            .collect(),
    )
}

#[tokio::test]
async fn api_writes_change_only_the_lines_they_change() {
    let (dir, s) = state();
    let path = dir.path().join("instances/acme.yaml");
    std::fs::write(&path, FILE).unwrap();
    let read = || std::fs::read_to_string(&path).unwrap();

    let body = json!({"set": {"site_title": "Acme Sale", "brand_color": "#cc0000"}});
    let (st, v) = call(&s, "PUT", "/v1/instances/acme/parameters", body).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let after = read();
    assert_eq!(
        changed(FILE, &after),
        (
            vec!["  site_title: Acme        # keep it short".into()],
            vec![
                "  site_title: Acme Sale  # keep it short".into(),
                "  brand_color: '#cc0000'".into()
            ]
        ),
        "{after}"
    );

    let (st, v) = call(
        &s,
        "PUT",
        "/v1/instances/acme/state",
        json!({"state": "suspended"}),
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let now = read();
    assert_eq!(
        changed(&after, &now),
        (
            vec!["state: running   # running | stopped | suspended".into()],
            vec!["state: suspended  # running | stopped | suspended".into()]
        ),
        "{now}"
    );
    assert!(now.starts_with("# acme — sales team's shop (OPS-1234)\n") && now.ends_with("# end\n"));
}
