//! The API's OpenAPI description against the running agent: fetched from `/v1/openapi.json`,
//! validated with `openapi-spec-validator`, and every operation fuzzed by `schemathesis`
//! (both from PyPI; `scripts/test.sh` installs them): no 5xx, every answer matches the
//! description (status, content type, body schema), invalid input refused, and no operation
//! served without a token.

mod common;

use common::{Harness, docker_test};
use std::process::Command;

const SLOT: u16 = 102;

fn tool(name: &str) -> String {
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/target/py/bin/");
    let local = format!("{venv}{name}");
    if std::path::Path::new(&local).exists() {
        local
    } else {
        name.to_string()
    }
}

#[test]
fn the_running_agent_answers_as_its_openapi_description_says() {
    let Some(_g) = docker_test() else { return };
    let mut h = Harness::new(SLOT);
    let api = h.with_tcp_api(SLOT, "");
    for t in ["acme", "globex"] {
        common::write_instance(&h, t, "template: demo\nversion: \"1\"\nplan: small\n");
    }
    h.start();
    h.wait_running(&["acme", "globex"]);
    let token = h.cli_ok(&["token", "create", "--role", "operator", "--expires", "1h"]);
    let token = token.trim();

    let doc = common::sh(&format!(
        "curl -sf -H 'Authorization: Bearer {token}' http://{api}/v1/openapi.json"
    ));
    let v: serde_json::Value = serde_json::from_str(&doc).expect("the description is JSON");
    assert!(
        v["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        v["openapi"]
    );
    let file = h.path("openapi.json");
    std::fs::write(&file, &doc).unwrap();
    let out = Command::new(tool("openapi-spec-validator"))
        .arg(&file)
        .output()
        .expect("openapi-spec-validator runs (scripts/test.sh installs it)");
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "openapi-spec-validator: {said}");

    let tested = v["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_object().unwrap().len())
        .sum::<usize>();
    let fuzz = |token: &str, examples: &str| {
        let out = Command::new(tool("st"))
            .args([
                "run",
                file.to_str().unwrap(),
                "--url",
                &format!("http://{api}"),
            ])
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .args([
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",
            ])
            .args(["--max-examples", examples, "--workers", "1"])
            .args(["--request-timeout", "20", "--seed", "1", "--no-color"])
            // A log follow never ends by design: sent without following (see the file).
            .env(
                "SCHEMATHESIS_HOOKS",
                concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis_hooks.py"),
            )
            .output()
            .expect("schemathesis runs (scripts/test.sh installs it)");
        let said = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "schemathesis found failures:\n{said}");
        // It tested every operation: a run that skipped them all would pass too.
        assert!(said.contains(&format!("Tested: {tested}")), "{said}");
    };

    // acme's admin, fuzzing everything: globex is untouched.
    let acme = h.cli_ok(&[
        "token",
        "create",
        "--role",
        "tenant-admin",
        "--tenant",
        "acme",
        "--expires",
        "1h",
    ]);
    let globex_file = std::fs::read_to_string(h.path("instances/globex.yaml")).unwrap();
    let id = || common::docker_ok(&["inspect", "-f", "{{.Id}}", &h.container("globex", "app")]);
    let globex_app = id();
    fuzz(acme.trim(), "15");
    assert_eq!(
        std::fs::read_to_string(h.path("instances/globex.yaml")).unwrap(),
        globex_file
    );
    assert_eq!(id(), globex_app, "globex's container was not recreated");
    assert_eq!(h.status("globex")["phase"], "running");

    // The operator: every operation reachable (it may delete what it finds, and does).
    fuzz(token, "30");
}
