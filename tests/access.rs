//! Tenant access end to end: the operator mints a tenant-admin token through the socket; with
//! it, the CLI over TCP manages exactly its own tenant and nothing else; every change is in
//! the audit log with the token's name; a revoked token is refused.

mod common;

use common::{Harness, docker_test};
use std::os::unix::fs::PermissionsExt;

const SLOT: u16 = 100;

#[test]
fn a_tenant_admin_token_manages_its_own_tenant_through_the_cli_and_nothing_else() {
    let Some(_g) = docker_test() else { return };
    let mut h = Harness::new(SLOT);
    let api = h.with_tcp_api(SLOT, "");
    for t in ["acme", "globex"] {
        common::write_instance(&h, t, "template: demo\nversion: \"1\"\nplan: small\n");
    }
    h.start();
    h.wait_running(&["acme", "globex"]);

    // Minted through the socket; an expiry is required.
    let create = |extra: &[&str]| {
        let mut args = vec![
            "token",
            "create",
            "--role",
            "tenant-admin",
            "--tenant",
            "acme",
        ];
        args.extend_from_slice(extra);
        h.cli(&args)
    };
    let no_expiry = create(&[]);
    assert!(!no_expiry.status.success());
    assert!(String::from_utf8_lossy(&no_expiry.stderr).contains("--expires"));
    let made = create(&["--expires", "1h", "--name", "acme-admin"]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let token = String::from_utf8_lossy(&made.stdout).to_string();
    let token = token.trim().to_string();
    assert!(token.starts_with("bth_"), "{token}");
    let file = h.path("acme.token");
    std::fs::write(&file, &token).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let as_acme = |args: &[&str]| {
        let mut all = vec!["--api", &api, "--token-file", file.to_str().unwrap()];
        all.extend_from_slice(args);
        h.cli(&all)
    };
    let ok = |args: &[&str]| {
        let o = as_acme(args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let refused = |args: &[&str]| {
        let o = as_acme(args);
        assert!(
            !o.status.success(),
            "{args:?} was let through: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8_lossy(&o.stderr).to_string()
    };

    // Its own tenant: listed alone, shown, backed up, stopped and started.
    let ls: serde_json::Value = serde_json::from_str(&ok(&["ls", "-o", "json"])).unwrap();
    let names: Vec<&str> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme"]);
    ok(&["status", "acme"]);
    let backup = ok(&["backup", "acme"]);
    assert!(backup.contains("backup"), "{backup}");
    // Mutating commands answer in JSON too.
    let made: serde_json::Value =
        serde_json::from_str(&ok(&["backup", "acme", "-o", "json"])).unwrap();
    assert_eq!(made["tenant"], "acme", "{made}");
    assert!(made["id"].as_str().is_some_and(|i| !i.is_empty()), "{made}");
    let stopped: serde_json::Value =
        serde_json::from_str(&ok(&["stop", "acme", "-o", "json"])).unwrap();
    assert_eq!(
        stopped,
        serde_json::json!({"tenant": "acme", "desired": "stopped"})
    );
    ok(&["start", "acme"]);

    // Nothing else: another tenant looks absent, operator and token commands are refused.
    assert!(refused(&["status", "globex"]).contains("no instance"));
    assert!(refused(&["backup", "globex"]).contains("no instance"));
    refused(&["rm", "globex"]);
    refused(&["rm", "acme"]);
    refused(&["add", "evil", "--template", "demo"]);
    refused(&["suspend", "acme"]);
    refused(&["capacity"]);
    refused(&["token", "ls"]);
    refused(&["token", "create", "--role", "operator", "--expires", "1h"]);

    // The audit log: the token's own rows over TCP, everything through the socket.
    let rows: serde_json::Value = serde_json::from_str(&ok(&["audit", "-o", "json"])).unwrap();
    let rows = rows.as_array().unwrap();
    assert!(rows.iter().all(|r| r["tenant"] == "acme"), "{rows:?}");
    let by_token = |action: &str, result: &str| {
        rows.iter().any(|r| {
            r["action"] == action
                && r["result"] == result
                && r["actor"]["name"] == "acme-admin"
                // Over TCP a client cannot name its source: only the socket's calls are `cli`.
                && r["source"] == "api"
                && r["client"] == "127.0.0.1"
        })
    };
    assert!(by_token("backup.create", "ok"), "{rows:?}");
    assert!(by_token("instance.state", "ok"), "{rows:?}");
    assert!(
        by_token("instance.state", "denied"),
        "the refused suspend: {rows:?}"
    );
    let all = h.cli_ok(&["audit", "-o", "json"]);
    assert!(
        all.contains("\"globex\""),
        "the operator sees the refusals on globex"
    );
    assert!(
        !all.contains(token.rsplit('_').next().unwrap()),
        "a secret in the audit log"
    );
    let table = h.cli_ok(&["token", "ls"]);
    assert!(
        table.contains("acme-admin")
            && table.contains("tenant-admin")
            && (table.contains("in 59m") || table.contains("in 1h")),
        "{table}"
    );

    // An anonymous flood: 5,000 wrong tokens never rotate a change's row away. They are
    // counted in the refusal stream, one row for the run; the log of changes does not grow.
    let audit_log = h.path("state/audit/audit.log");
    let before = std::fs::metadata(&audit_log).unwrap().len();
    let codes = common::sh(&format!(
        "curl -s -o /dev/null -w '%{{http_code}}\\n' -H 'Authorization: Bearer bth_x_{}' \
         '{api}/v1/instances?n=[1-5000]' | sort | uniq -c",
        "0".repeat(64)
    ));
    assert!(codes.trim().starts_with("5000 401"), "{codes}");
    assert_eq!(std::fs::metadata(&audit_log).unwrap().len(), before);
    let stream = std::fs::read_to_string(h.path("state/audit/refused.log")).unwrap();
    let flood: Vec<&str> = stream
        .lines()
        .filter(|l| l.contains("GET /v1/instances") && l.contains("127.0.0.1"))
        .collect();
    assert_eq!(flood.len(), 1, "one row while the minute runs: {flood:?}");
    let all = h.cli_ok(&["audit", "-o", "json"]);
    assert!(
        all.contains("acme-admin"),
        "the token's rows are all still there"
    );

    // The dashboard: 50 logins with the tenant's token end none of the operator's sessions
    // (sessions are capped per token, the flooder's own oldest go).
    let op = h.cli_ok(&["token", "create", "--role", "operator", "--expires", "1h"]);
    let jar = h.path("operator.jar");
    let login = |token: &str, extra: &str| {
        common::sh(&format!(
            "curl -s -o /dev/null -w '%{{http_code}}\\n' {extra} --data-urlencode token@- \
             '{api}/ui/login' <<'EOF'\n{token}\nEOF"
        ))
    };
    assert_eq!(login(op.trim(), &format!("-c {}", jar.display())), "303");
    let floods: Vec<String> = (0..50).map(|_| login(&token, "")).collect();
    assert!(floods.iter().all(|c| c == "303"), "{floods:?}");
    let page = common::sh(&format!(
        "curl -s -o /dev/null -w '%{{http_code}}' -b {} '{api}/ui/'",
        jar.display()
    ));
    assert_eq!(
        page, "200",
        "the operator's session outlived the tenant's logins"
    );

    // Following log streams: four per token, the fifth refused; revoking the token ends them.
    let follow = |n: usize| {
        std::process::Command::new("curl")
            .args([
                "-s",
                "-N",
                "-m",
                "60",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .arg("-H")
            .arg(format!("Authorization: Bearer {token}"))
            .arg(format!("{api}/v1/instances/acme/logs?follow=true&n={n}"))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    h.wait_running(&["acme"]);
    let mut streams: Vec<std::process::Child> = (0..4).map(follow).collect();
    std::thread::sleep(std::time::Duration::from_secs(1));
    for c in &mut streams {
        assert!(
            c.try_wait().unwrap().is_none(),
            "a following stream ended early"
        );
    }
    let fifth = follow(4).wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&fifth.stdout), "429");

    // Revoked: refused from the next call on.
    let prefix = token.rsplit_once('_').unwrap().0.to_string();
    h.cli_ok(&["token", "revoke", &prefix]);
    assert!(refused(&["status", "acme"]).contains("bearer token"));
    common::wait_for(
        std::time::Duration::from_secs(30),
        || streams.iter_mut().all(|c| c.try_wait().unwrap().is_some()),
        "the following streams to end after the revoke",
    );
    h.kill9();
}

/// The TCP API over TLS with a certificate from berth's own CA: the CLI reaches it with
/// `--api https://…` and `--ca-file`, refuses it without the CA, and the listener answers no
/// plain-text request. (Listening beyond loopback needs this TLS; the config check refuses a
/// plain non-loopback listener, and the CLI refuses to send a token there in plain text.)
#[test]
fn the_api_serves_tls_from_berths_ca_and_the_cli_verifies_it() {
    const SLOT: u16 = 103;
    let Some(_g) = docker_test() else { return };
    let mut h = Harness::new(SLOT);
    let port = 18300 + SLOT;
    h.with_tcp_api(SLOT, "  tls:\n    names: [localhost, 127.0.0.1]\n");
    common::write_instance(&h, "acme", "template: demo\nversion: \"1\"\nplan: small\n");
    h.start();
    h.wait_running(&["acme"]);
    let token = h.cli_ok(&[
        "token",
        "create",
        "--role",
        "tenant-viewer",
        "--tenant",
        "acme",
        "--expires",
        "1h",
    ]);
    let file = h.path("acme.token");
    std::fs::write(&file, token.trim()).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let ca = h.path("state/certs/ca/ca.pem");
    assert!(ca.exists(), "berth's CA at {}", ca.display());
    let tf = file.to_str().unwrap();
    for api in [
        format!("https://127.0.0.1:{port}"),
        format!("https://localhost:{port}"),
    ] {
        let out = h.cli_ok(&[
            "--api",
            &api,
            "--token-file",
            tf,
            "--ca-file",
            ca.to_str().unwrap(),
            "ls",
        ]);
        assert!(out.contains("acme"), "{api}: {out}");
    }
    // Without berth's CA the certificate is not trusted.
    let o = h.cli(&[
        "--api",
        &format!("https://127.0.0.1:{port}"),
        "--token-file",
        tf,
        "ls",
    ]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("TLS") && e.contains("--ca-file"), "{e}");
    // Plain text to the TLS listener: no answer, and the token was never sent in the clear
    // to a non-loopback address (the CLI refuses before connecting).
    let plain = common::sh(&format!(
        "curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 http://127.0.0.1:{port}/v1/instances || true"
    ));
    assert_eq!(plain.trim(), "000", "{plain}");
    let o = h.cli(&["--api", "192.0.2.1:7070", "--token-file", tf, "ls"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("plain text only to loopback"));
    // The dashboard's session cookie is Secure over TLS.
    let headers = common::sh(&format!(
        "curl -s -D - -o /dev/null --cacert {} -d token=$(cat {tf}) https://127.0.0.1:{port}/ui/login",
        ca.display()
    ));
    assert!(
        headers.contains("Secure") && headers.contains("HttpOnly"),
        "{headers}"
    );
    h.kill9();
}

/// A tenant is an identity, not a name. Found on main: a name reused after `rm --purge`
/// listed the old tenant's backups and the old tenant's token still managed it; a token could
/// be minted for a tenant that did not exist and then create it by cloning into it.
#[test]
fn a_name_reused_after_purge_starts_empty_and_tenant_tokens_never_create_tenants() {
    const SLOT: u16 = 104;
    let Some(_g) = docker_test() else { return };
    let mut h = Harness::new(SLOT);
    let api = h.with_tcp_api(SLOT, "");
    for t in ["acme", "chkpg"] {
        common::write_instance(&h, t, "template: demo\nversion: \"1\"\nplan: small\n");
    }
    h.start();
    h.wait_running(&["acme", "chkpg"]);
    let mint = |tenants: &[&str], name: &str| {
        let mut args = vec!["token", "create", "--role", "tenant-admin"];
        for t in tenants {
            args.extend(["--tenant", t]);
        }
        args.extend(["--expires", "1h", "--name", name]);
        h.cli(&args)
    };
    // No token for a tenant that does not exist.
    let o = mint(&["acme", "newco"], "with-newco");
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success() && err.contains("newco"), "{err}");
    assert!(!h.cli_ok(&["token", "ls"]).contains("with-newco"));

    let made = mint(&["acme", "chkpg"], "two");
    assert!(made.status.success());
    let file = h.path("two.token");
    std::fs::write(&file, String::from_utf8_lossy(&made.stdout).trim()).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let as_token = |args: &[&str]| {
        let mut all = vec!["--api", &api, "--token-file", file.to_str().unwrap()];
        all.extend_from_slice(args);
        h.cli(&all)
    };
    let backup_id = |t: &str| {
        let o = as_token(&["backup", t, "-o", "json"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["id"].as_str().unwrap().to_string()
    };
    let (acme_id, chk_id) = (backup_id("acme"), backup_id("chkpg"));

    // Cloning makes a tenant: the operator's alone, whatever the token's tenants.
    let o = as_token(&["restore", "chkpg", "--from", &format!("acme:{acme_id}")]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        !o.status.success() && err.contains("operators only"),
        "{err}"
    );

    // Purged: its backups go, and the token bound to it is revoked (for acme too).
    h.cli_ok(&["rm", "chkpg", "--purge"]);
    common::wait_for(
        std::time::Duration::from_secs(60),
        || {
            h.reconcile();
            !h.path("state/tenants/chkpg").exists()
        },
        "chkpg purged",
    );
    assert!(!h.path("state/backups/chkpg").exists());
    let o = as_token(&["status", "acme"]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success() && err.contains("bearer token"), "{err}");
    let listed = h.cli_ok(&["token", "ls"]);
    assert!(
        listed
            .lines()
            .any(|l| l.contains("two") && l.contains("revoked")),
        "{listed}"
    );

    // The same name again is a new tenant: no backups, none of the old ones restorable.
    common::write_instance(&h, "chkpg", "template: demo\nversion: \"1\"\nplan: small\n");
    h.wait_running(&["chkpg"]);
    let count = || {
        let v: serde_json::Value =
            serde_json::from_str(&h.cli_ok(&["backup", "chkpg", "--list", "-o", "json"])).unwrap();
        v["backups"].as_array().map_or(0, Vec::len)
    };
    assert_eq!(count(), 0);
    let o = h.cli(&["restore", "chkpg", "--from", &chk_id]);
    assert!(!o.status.success());
    // An archive of another tenant put into its directory is neither listed nor restored.
    std::fs::copy(
        h.path(&format!("state/backups/acme/{acme_id}.tar")),
        h.path(&format!("state/backups/chkpg/{acme_id}.tar")),
    )
    .or_else(|_| {
        std::fs::create_dir_all(h.path("state/backups/chkpg"))?;
        std::fs::copy(
            h.path(&format!("state/backups/acme/{acme_id}.tar")),
            h.path(&format!("state/backups/chkpg/{acme_id}.tar")),
        )
    })
    .unwrap();
    assert_eq!(count(), 0);
    let o = h.cli(&["restore", "chkpg", "--from", &acme_id]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        !o.status.success() && err.contains("another tenant"),
        "{err}"
    );
    h.kill9();
}

/// Long operations belong to the agent. Found on main: `curl --max-time 1 … /verify` left the
/// verify's scratch tenant and its containers behind for good, and a restore dropped the same
/// way could leave the tenant held (later changes never applied).
#[test]
fn a_client_that_drops_a_long_request_changes_nothing_and_leaves_nothing_behind() {
    const SLOT: u16 = 105;
    let Some(_g) = docker_test() else { return };
    let mut h = Harness::new(SLOT);
    common::write_instance(&h, "acme", "template: demo\nversion: \"1\"\nplan: small\n");
    h.start();
    h.wait_running(&["acme"]);
    let made: serde_json::Value =
        serde_json::from_str(&h.cli_ok(&["backup", "acme", "-o", "json"])).unwrap();
    let id = made["id"].as_str().unwrap().to_string();
    let audited = |action: &str| {
        let rows: Vec<serde_json::Value> =
            serde_json::from_str(&h.cli_ok(&["audit", "-o", "json"])).unwrap();
        rows.into_iter()
            .filter(|r| r["action"] == action)
            .collect::<Vec<_>>()
    };
    fn scratch_left(h: &Harness) -> bool {
        let files = std::fs::read_dir(h.path("instances"))
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("verify-"));
        let containers = common::docker_ok(&[
            "ps",
            "-a",
            "--filter",
            &format!("name={}-verify-", h.ns),
            "--format",
            "{{.Names}}",
        ]);
        files || !containers.is_empty() || h.cli_ok(&["ls"]).contains("verify-")
    }
    let verify = format!("acme:{id}");
    for (args, action) in [
        (vec!["backup", "verify", verify.as_str()], "backup.verify"),
        (
            vec!["restore", "acme", "--from", id.as_str()],
            "backup.restore",
        ),
    ] {
        let mut client = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["--config", h.path("berth.yaml").to_str().unwrap()])
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(400));
        client.kill().unwrap();
        let _ = client.wait();
        // The operation runs on to its end and is audited once, with its outcome.
        common::wait_for(
            std::time::Duration::from_secs(180),
            || !audited(action).is_empty(),
            action,
        );
        let rows = audited(action);
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0]["result"], "ok", "{rows:?}");
    }
    assert!(!scratch_left(&h), "the verify's scratch tenant is gone");
    // Nothing holds the tenant: a later change is applied.
    h.cli_ok(&["stop", "acme"]);
    common::wait_for(
        std::time::Duration::from_secs(60),
        || {
            h.reconcile();
            h.status("acme")["phase"] == "stopped"
        },
        "acme stopped after the dropped restore",
    );
    h.cli_ok(&["start", "acme"]);
    h.wait_running(&["acme"]);

    // An agent stopped in the middle of a verify: at its next start the operation ends as
    // interrupted and the scratch tenant is removed.
    let started: serde_json::Value =
        serde_json::from_str(&h.cli_ok(&["backup", "verify", &verify, "--detach", "-o", "json"]))
            .unwrap();
    let op = started["id"].as_str().unwrap().to_string();
    common::wait_for(
        std::time::Duration::from_secs(60),
        || scratch_left(&h),
        "the scratch tenant being made",
    );
    h.kill9();
    h.start();
    let shown = h.cli(&["op", &op, "-o", "json"]);
    assert_eq!(shown.status.code(), Some(1), "a failed operation exits 1");
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["state"], "failed", "{shown}");
    assert!(
        shown["error"].as_str().unwrap().contains("interrupted"),
        "{shown}"
    );
    common::wait_for(
        std::time::Duration::from_secs(120),
        || {
            h.reconcile();
            !scratch_left(&h)
        },
        "the interrupted verify's scratch tenant removed",
    );
    h.wait_running(&["acme"]);
    h.kill9();
}
