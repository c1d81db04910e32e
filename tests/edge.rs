//! The agent's proxy in front of real tenants on a real engine: HTTPS on subdomains and path
//! mounts with certificates from berth's CA, 421/404/308, maintenance page on suspend.

mod common;

use common::{Harness, docker_test};
use std::process::Command;

const SLOT: u16 = 51;

fn instance(h: &Harness, tenant: &str, extra: &str) {
    let yaml = format!(
        "tenant: {tenant}\ntemplate: demo\nversion: \"1\"\nplan: small\n{extra}parameters:\n  site_title: {tenant}\n  admin_email: ops@{tenant}.test\n  brand_color: \"#336699\"\n"
    );
    std::fs::write(h.path(&format!("instances/{tenant}.yaml")), yaml).unwrap();
}

/// curl through the proxy: (status, body), trusting berth's CA, `host` resolved to loopback.
fn curl(
    h: &Harness,
    port: u16,
    scheme: &str,
    host: &str,
    path: &str,
    extra: &[&str],
) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--cacert"])
        .arg(h.path("ca.pem"))
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
        .args(extra)
        .arg(format!("{scheme}://{host}:{port}{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        code.to_string(),
        format!("{body}{}", String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn tenants_are_served_over_https_on_subdomains_and_paths_and_suspended_ones_show_maintenance() {
    let Some(_g) = docker_test() else { return };
    let mut h = Harness::new(SLOT);
    let (http, https) = h.with_proxy(SLOT);
    instance(&h, "acme", "");
    instance(&h, "globex", "paths: [shared.test/globex]\n");
    instance(&h, "initech", "");
    h.start();
    h.wait_running(&["acme", "globex", "initech"]);
    std::fs::write(h.path("ca.pem"), h.cli_ok(&["ca"])).unwrap();

    for t in ["acme", "globex", "initech"] {
        let (code, body) = curl(&h, https, "https", &format!("{t}.apps.test"), "/", &[]);
        assert_eq!(code, "200", "{t}: {body}");
        assert!(body.contains(&format!("tenant={t}")), "{t}: {body}");
    }
    let (code, body) = curl(&h, https, "https", "shared.test", "/globex/", &[]);
    assert_eq!(
        (code.as_str(), body.contains("tenant=globex")),
        ("200", true),
        "{body}"
    );

    // SNI says acme, Host says globex.
    let (code, _) = curl(
        &h,
        https,
        "https",
        "acme.apps.test",
        "/",
        &["-H", "Host: globex.apps.test"],
    );
    assert_eq!(code, "421");
    let (code, body) = curl(&h, http, "http", "acme.apps.test", "/x?y=1", &["-D", "-"]);
    assert_eq!(code, "308");
    assert!(
        body.to_ascii_lowercase()
            .contains(&format!("location: https://acme.apps.test:{https}/x?y=1")),
        "{body}"
    );
    let (code, body) = curl(&h, http, "http", "nobody.test", "/", &[]);
    assert_eq!(code, "404");
    assert!(!body.contains("acme"));

    h.cli_ok(&["suspend", "initech"]);
    common::wait_for(
        std::time::Duration::from_secs(60),
        || {
            h.reconcile();
            curl(&h, https, "https", "initech.apps.test", "/", &[]).0 == "503"
        },
        "initech shows the maintenance page",
    );
    let (_, body) = curl(&h, https, "https", "initech.apps.test", "/", &[]);
    assert!(body.contains("maintenance"), "{body}");

    let certs = h.cli_ok(&["cert", "ls"]);
    for d in ["acme.apps.test", "globex.apps.test", "shared.test"] {
        assert!(certs.contains(d), "{certs}");
    }
    h.kill9();
}
