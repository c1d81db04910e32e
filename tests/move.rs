//! Moving a tenant to another berth host: two agents on this machine (two state directories,
//! namespaces and edges) share one restic repository. `berth move` takes m1 from host A to
//! host B while requests stream through A's edge: none fails, B has A's data byte-equal, and
//! A's edge forwards to B's until A purges the tenant. m2 is moved step by step through the
//! API, with a write between the first and final backups (the catch-up carries it) and a
//! hold released on the way (the tenant serves on A again as before).

mod common;

use common::{
    Harness, curl, docker_ok, docker_test,
    restic::{key, restic_ok},
    wait_for, wp,
};
use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::SeqCst},
    },
    time::Duration,
};

const A: u16 = 28;
const B: u16 = 29;

/// One host: an edge, a TCP API, the shared repository, and its templates from `templates`.
fn host(
    slot: u16,
    (repo, repo_key): (&str, &std::path::Path),
    templates: impl FnOnce(&Harness),
) -> (Harness, u16, String) {
    let h = Harness::new(slot);
    let (_, https) = h.with_proxy(slot);
    let api = h.with_tcp_api(slot, "");
    templates(&h);
    std::fs::create_dir_all(h.path("keys")).unwrap();
    std::fs::copy(repo_key, h.path("keys/offsite.key")).unwrap();
    std::fs::set_permissions(
        h.path("keys/offsite.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let mut cfg = std::fs::read_to_string(h.path("berth.yaml")).unwrap();
    cfg.push_str(&format!(
        "backup_repositories:\n  offsite:\n    url: {repo}\n    password_file: keys/offsite.key\n"
    ));
    std::fs::write(h.path("berth.yaml"), cfg).unwrap();
    (h, https, api)
}

/// A call to the agent's API over its socket: (status, JSON body).
fn api(
    h: &Harness,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sS", "-w", "\n%{http_code}", "-X", method, "--unix-socket"])
        .arg(h.path("berth.sock"))
        .args(["-H", "content-type: application/json"]);
    if let Some(b) = body {
        cmd.args(["--data-binary", &b.to_string()]);
    }
    let out = cmd.arg(format!("http://berth{path}")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(serde_json::Value::String(body.into())),
    )
}

/// Starts an operation and waits for its result.
fn op(h: &Harness, path: &str, body: &serde_json::Value) -> serde_json::Value {
    let (code, started) = api(h, "POST", path, Some(body));
    assert_eq!(code, 202, "{path}: {started}");
    let id = started["id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let last = loop {
        let last = api(h, "GET", &format!("/v1/operations/{id}"), None).1;
        if last["state"] != "running" {
            break last;
        }
        if std::time::Instant::now() > deadline {
            let log = h.agent_log();
            panic!(
                "{path}: still running after 180 s: {last}\n{}",
                &log[log.len().saturating_sub(6000)..]
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(last["state"], "succeeded", "{path}: {last}");
    last["result"].clone()
}

/// Requests through `port` for `host` until `stop`: every status seen (curl's own failures
/// as "000").
fn load(
    ca: std::path::PathBuf,
    port: u16,
    host: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut codes = Vec::new();
        while !stop.load(SeqCst) {
            let out = std::process::Command::new("curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--max-time",
                    "60",
                ])
                .arg("--cacert")
                .arg(&ca)
                .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
                .arg(format!("https://{host}:{port}/"))
                .output()
                .unwrap();
            codes.push(String::from_utf8_lossy(&out.stdout).to_string());
            std::thread::sleep(Duration::from_millis(20));
        }
        codes
    })
}

/// An operator token of `b`'s API, in a file of `a`'s.
fn operator_token(b: &Harness, a: &Harness) -> std::path::PathBuf {
    let token = b.cli_ok(&["token", "create", "--role", "operator", "--expires", "1h"]);
    let token_file = a.path("b.token");
    std::fs::write(&token_file, token.trim()).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    token_file
}

/// `berth move t` from `a` to the API `to`: the command's JSON report.
fn move_cmd(a: &Harness, t: &str, to: &str, token_file: &std::path::Path) -> serde_json::Value {
    let to = format!("http://{to}");
    let token_file = token_file.to_str().unwrap();
    let args = [
        "move",
        t,
        "--to",
        &to,
        "--repo",
        "offsite",
        "--to-token-file",
        token_file,
    ];
    let moved = a.cli(&[&args[..], &["-o", "json"]].concat());
    let report = String::from_utf8_lossy(&moved.stdout).to_string();
    assert!(
        moved.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&moved.stderr)
    );
    serde_json::from_str(&report).unwrap()
}

/// `berth move t` from `a` to `b_api` while requests stream through `a`'s edge from 2 s
/// before until 3 s after: every one answered. The command's report.
fn move_under_load(
    a: &Harness,
    a_https: u16,
    t: &str,
    (b_api, token_file): (&str, &std::path::Path),
) -> serde_json::Value {
    let stop = Arc::new(AtomicBool::new(false));
    let host = format!("{t}.apps.test");
    let loader = load(a.path("ca.pem"), a_https, host, stop.clone());
    std::thread::sleep(Duration::from_secs(2));
    let v = move_cmd(a, t, b_api, token_file);
    std::thread::sleep(Duration::from_secs(3));
    let n = all_answered(&stop, loader);
    eprintln!(
        "move of {t}: {n} requests, none failed; held {:.2}s, whole move {:.2}s",
        v["held_seconds"], v["seconds"]
    );
    v
}

/// A restic repository for both hosts, and its key.
fn shared_repo() -> (tempfile::TempDir, String, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let repo_key = dir.path().join("offsite.key");
    key(&repo_key);
    let repo = dir.path().join("repo").display().to_string();
    restic_ok(&repo, &repo_key, &["init"]);
    (dir, repo, repo_key)
}

/// Stops `loader` and asserts every request it made got a 200; their number.
fn all_answered(stop: &AtomicBool, loader: std::thread::JoinHandle<Vec<String>>) -> usize {
    stop.store(true, SeqCst);
    let codes = loader.join().unwrap();
    let failed: Vec<&String> = codes.iter().filter(|c| *c != "200").collect();
    assert!(codes.len() > 20, "{} requests", codes.len());
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        codes.len()
    );
    codes.len()
}

#[test]
fn a_tenant_moves_to_another_host_under_load_with_no_failed_request_and_its_data_whole() {
    let Some(_g) = docker_test() else { return };
    let (_dir, repo, repo_key) = shared_repo();
    let demo = |h: &Harness| h.own_demo_template(common::demo_with_uploads);
    let (mut a, a_https, _) = host(A, (&repo, &repo_key), demo);
    let (mut b, b_https, b_api) = host(B, (&repo, &repo_key), demo);
    let demo = "template: demo\nversion: \"1\"\nplan: small\n";
    for t in ["m1", "m2"] {
        common::write_instance(&a, t, demo);
    }
    a.start();
    b.start();
    a.wait_running(&["m1", "m2"]);
    for (t, n) in [("m1", 500), ("m2", 50)] {
        a.psql(t, &format!(
            "create table notes(id int primary key, body text); insert into notes select g, md5(g::text || '{t}') from generate_series(1, {n}) g;"
        ));
        let write = "mkdir -p /var/tmp/up && dd if=/dev/urandom of=/var/tmp/up/a bs=1k count=512 2>/dev/null && echo hello > /var/tmp/b";
        docker_ok(&["exec", &a.container(t, "app"), "sh", "-c", write]);
    }
    let before = common::demo_holdings(&a, "m1");
    // m1's mail DKIM key as A's relay keeps it (no relay runs here: the files alone).
    let dkim_key = "-----BEGIN PRIVATE KEY-----\nMIIEvQ\n-----END PRIVATE KEY-----\n";
    let dkim_txt = "v=DKIM1; h=sha256; k=rsa; p=MIIBIjAN";
    let mail = |h: &Harness, sub: &str| h.path(&format!("state/host/mail/{sub}"));
    std::fs::create_dir_all(mail(&a, "dkim/keys/m1")).unwrap();
    std::fs::create_dir_all(mail(&a, "records/m1")).unwrap();
    std::fs::write(mail(&a, "dkim/keys/m1/m1.apps.test.private"), dkim_key).unwrap();
    std::fs::write(mail(&a, "records/m1/m1.apps.test.txt"), dkim_txt).unwrap();
    std::fs::write(a.path("ca.pem"), a.cli_ok(&["ca"])).unwrap();
    std::fs::write(b.path("ca.pem"), b.cli_ok(&["ca"])).unwrap();
    let token_file = operator_token(&b, &a);
    let (code, page) = curl(&a, a_https, "https", "m1.apps.test", "/", &[]);
    assert!(code == "200" && page.contains("tenant=m1"), "{code} {page}");
    // m1's own admin token, to travel with it; a token of two tenants stays.
    let create = |args: &[&str]| {
        let mut all = vec!["token", "create", "--expires", "1h"];
        all.extend_from_slice(args);
        a.cli_ok(&all).trim().to_string()
    };
    let m1_token = create(&[
        "--role",
        "tenant-admin",
        "--tenant",
        "m1",
        "--name",
        "m1-ci",
    ]);
    let both = create(&[
        "--role",
        "tenant-viewer",
        "--tenant",
        "m1",
        "--tenant",
        "m2",
    ]);

    // m1, by the command, with requests streaming through A's edge all along.
    let v = move_under_load(&a, a_https, "m1", (&b_api, &token_file));
    assert!(v["held_seconds"].as_f64().unwrap() < 30.0, "{v}");

    // B has it whole, and A's containers are stopped: every 200 now comes from B.
    b.wait_running(&["m1"]);
    assert_eq!(
        common::bearer_status(&b_api, "/v1/instances/m1", &m1_token),
        "200",
        "m1's own token works on B"
    );
    assert_eq!(
        common::bearer_status(&b_api, "/v1/instances/m1", &both),
        "401"
    );
    let key_on_b = mail(&b, "dkim/keys/m1/m1.apps.test.private");
    assert_eq!(
        std::fs::read_to_string(&key_on_b).unwrap(),
        dkim_key,
        "its DKIM key moved"
    );
    let meta = std::fs::metadata(&key_on_b).unwrap();
    assert_eq!(
        (meta.mode() & 0o777, meta.uid()),
        (0o600, 990),
        "OpenDKIM's alone"
    );
    assert_eq!(
        std::fs::read_to_string(mail(&b, "records/m1/m1.apps.test.txt")).unwrap(),
        dkim_txt
    );
    assert_eq!(
        common::demo_holdings(&b, "m1"),
        before,
        "identity, secret, rows and volume byte-equal"
    );
    wait_for(
        Duration::from_secs(60),
        || a.status("m1")["phase"] == "stopped",
        "m1 stopped on A",
    );
    let (code, page) = curl(&a, a_https, "https", "m1.apps.test", "/", &[]);
    assert!(
        code == "200" && page.contains("tenant=m1"),
        "forwarded: {code} {page}"
    );
    let (code, page) = curl(&b, b_https, "https", "m1.apps.test", "/", &[]);
    assert!(
        code == "200" && page.contains("tenant=m1"),
        "B serves it: {code} {page}"
    );
    // An agent restarted keeps forwarding (the record is in the tenant's directory).
    a.kill9();
    a.start();
    wait_for(
        Duration::from_secs(30),
        || {
            let (code, page) = curl(&a, a_https, "https", "m1.apps.test", "/", &[]);
            code == "200" && page.contains("tenant=m1")
        },
        "forwarding after A's restart",
    );
    // A second move of a moved tenant is refused.
    let again = a.cli(&[
        "move",
        "m1",
        "--to",
        &format!("http://{b_api}"),
        "--repo",
        "offsite",
        "--to-token-file",
        token_file.to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("moved"),
        "{again:?}"
    );

    // m2, step by step: a write after the first backup arrives with the final one.
    let repo_body = serde_json::json!({ "repository": "offsite" });
    let prepared = op(&a, "/v1/instances/m2/handover/prepare", &repo_body);
    let receive = serde_json::json!({
        "repository": "offsite", "backup": prepared["backup"], "entry": prepared["entry"],
    });
    // A hostile entry (another tenant's domain, a path for a name) is refused by field.
    let mut evil = receive.clone();
    evil["entry"]["tenant"] = "../m2".into();
    let (code, msg) = api(&b, "POST", "/v1/moves", Some(&evil));
    assert!(
        code == 400 && msg.to_string().contains("entry"),
        "{code} {msg}"
    );
    let mut evil = receive.clone();
    evil["entry"]["domains"] = serde_json::json!({
        "m1.apps.test": {"tenant": "m2", "method": "dns", "verified_at": 1}
    });
    let (code, msg) = api(&b, "POST", "/v1/moves", Some(&evil));
    assert!(
        code == 400 && msg.to_string().contains("m1.apps.test"),
        "another tenant's name: {code} {msg}"
    );
    let got = op(&b, "/v1/moves", &receive);
    assert_eq!(got["outcome"], "recovered", "{got}");
    let (code, msg) = api(&b, "POST", "/v1/moves", Some(&receive));
    assert_eq!(
        code, 409,
        "a tenant that exists is not received again: {msg}"
    );
    a.psql(
        "m2",
        "insert into notes values (9999, 'after the first backup')",
    );
    // A hold released: m2 serves on A again at once.
    let (code, held) = api(
        &a,
        "POST",
        "/v1/instances/m2/handover/hold",
        Some(&repo_body),
    );
    assert_eq!(code, 200, "{held}");
    let (code, _) = curl(
        &a,
        a_https,
        "https",
        "m2.apps.test",
        "/",
        &["--max-time", "2"],
    );
    assert_eq!(code, "000", "a request while held waits");
    // A fleet upgrade passes over both: m1 lives on B now, m2 is being moved.
    let upgrade = serde_json::json!({"app": "demo", "to": "2", "tenants": "m1,m2"});
    let (code, msg) = api(&a, "POST", "/v1/upgrades", Some(&upgrade));
    let msg = msg.to_string();
    assert!(
        code == 400
            && msg.contains("m1 (moved to http")
            && msg.contains("m2 (being moved to another host"),
        "{code} {msg}"
    );
    let (code, _) = api(&a, "POST", "/v1/instances/m2/handover/release", None);
    assert_eq!(code, 200);
    let (code, page) = curl(
        &a,
        a_https,
        "https",
        "m2.apps.test",
        "/",
        &["--max-time", "5"],
    );
    assert!(code == "200" && page.contains("tenant=m2"), "{code} {page}");
    // Forward without a hold is refused.
    let fwd = serde_json::json!({
        "to": format!("http://{b_api}"),
        "edge": format!("127.0.0.1:{b_https}"),
        "ca_pem": std::fs::read_to_string(b.path("ca.pem")).unwrap(),
    });
    let (code, msg) = api(&a, "POST", "/v1/instances/m2/handover/forward", Some(&fwd));
    assert_eq!(code, 409, "{msg}");
    // Hold, catch up, forward.
    let (code, held) = api(
        &a,
        "POST",
        "/v1/instances/m2/handover/hold",
        Some(&repo_body),
    );
    assert_eq!(code, 200, "{held}");
    // The catch-up, as the command does it: no safety backup of B's first copy. Never for a
    // clone (it makes a tenant of another's data).
    let bare = |from: String| serde_json::json!({"from": from, "safety_backup": false});
    let final_backup = held["backup"].as_str().unwrap().to_string();
    let (code, msg) = api(
        &b,
        "POST",
        "/v1/instances/m3/restore",
        Some(&bare(format!("m2:{final_backup}"))),
    );
    assert_eq!(code, 403, "{msg}");
    op(&b, "/v1/instances/m2/restore", &bare(final_backup));
    // An edge that does not trust B's CA is not switched to.
    let mut untrusted = fwd.clone();
    untrusted["ca_pem"] = serde_json::Value::Null;
    let (code, msg) = api(
        &a,
        "POST",
        "/v1/instances/m2/handover/forward",
        Some(&untrusted),
    );
    assert_eq!(code, 409, "{msg}");
    let (code, rec) = api(&a, "POST", "/v1/instances/m2/handover/forward", Some(&fwd));
    assert_eq!(code, 200, "{rec}");
    // Its copy here is fenced: no start, no backup (B has its data now).
    let running = serde_json::json!({"state": "running"});
    let (code, msg) = api(&a, "PUT", "/v1/instances/m2/state", Some(&running));
    assert_eq!(code, 409, "{msg}");
    let (code, msg) = api(&a, "POST", "/v1/instances/m2/backups", None);
    assert_eq!(code, 409, "{msg}");
    assert_eq!(
        b.psql("m2", "select body from notes where id = 9999"),
        "after the first backup"
    );
    let (code, page) = curl(&a, a_https, "https", "m2.apps.test", "/", &[]);
    assert!(code == "200" && page.contains("tenant=m2"), "{code} {page}");

    // DNS points at B now: A purges m1, and its edge no longer answers for it.
    a.cli_ok(&["rm", "m1", "--purge"]);
    wait_for(
        Duration::from_secs(60),
        || curl(&a, a_https, "https", "m1.apps.test", "/", &[]).0 != "200",
        "m1 gone from A's edge",
    );
    let (code, _) = curl(&b, b_https, "https", "m1.apps.test", "/", &[]);
    assert_eq!(code, "200", "B still serves m1");
    // Both agents are stopped before their containers and volumes go (the harness's drop): a
    // live agent would make them again meanwhile.
}

/// What of a WordPress site's database must arrive as it was: its posts, users and terms, and
/// which file each attachment is (options and other metadata change with every page view).
const MOVED_TABLES: &str = "CHECKSUM TABLE wp_posts, wp_users, wp_terms; \
    SELECT post_id, meta_value FROM wp_postmeta WHERE meta_key = '_wp_attached_file' ORDER BY post_id";

/// WordPress, installed and used on A, moved to B under load: every request answered, its
/// posts, uploads, database and files byte-equal on B.
#[test]
fn a_wordpress_tenant_moves_under_load_with_every_request_answered() {
    let Some(_g) = docker_test() else { return };
    const REG: u16 = 19495;
    let (dir, repo, repo_key) = shared_repo();
    std::fs::create_dir_all(dir.path().join("registry")).unwrap();
    let _registry = common::plain_registry(&dir.path().join("registry"), REG);
    common::publish_stand_ins(REG);
    let sink = common::mail::MailSink::start(&dir.path().join("sink"), 95);
    let wp_template = |h: &Harness| wp::own_template(h, &sink.addr, REG);
    let (mut a, a_https, _) = host(95, (&repo, &repo_key), wp_template);
    let (mut b, b_https, b_api) = host(96, (&repo, &repo_key), wp_template);
    wp::instance(&a, "wpm");
    a.start();
    b.start();
    a.wait_running_within(&["wpm"], Duration::from_secs(300));
    std::fs::write(a.path("ca.pem"), a.cli_ok(&["ca"])).unwrap();
    std::fs::write(b.path("ca.pem"), b.cli_ok(&["ca"])).unwrap();
    wp::install(&a, a_https, "wpm");
    let post = wp::publish_post(&a, a_https, "wpm", "Moved by berth");
    let data = wp::payload("wpm", 256 * 1024);
    let (_, file) = wp::upload(&a, a_https, "wpm", "moved.txt", &data);
    let before = (
        wp::volume_digest(&a, "wpm"),
        wp::sql(&a, "wpm", MOVED_TABLES),
    );
    let token_file = operator_token(&b, &a);

    let v = move_under_load(&a, a_https, "wpm", (&b_api, &token_file));
    assert!(v["held_seconds"].as_f64().unwrap() < 30.0, "{v}");

    // B has it whole; A forwards to it, its own containers stopped.
    assert_eq!(wp::volume_digest(&b, "wpm"), before.0, "files byte-equal");
    assert_eq!(
        wp::sql(&b, "wpm", MOVED_TABLES),
        before.1,
        "posts, attachments, users and terms equal (options and other metadata change with page views)"
    );
    wait_for(
        Duration::from_secs(60),
        || a.status("wpm")["phase"] == "stopped",
        "wpm stopped on A",
    );
    for (h, https) in [(&a, a_https), (&b, b_https)] {
        let (code, page) = wp::wp(h, https, "wpm", "/", &[]);
        assert!(
            code == 200 && page.contains("Moved by berth"),
            "{code} {page}"
        );
        let (code, body) = wp::wp(h, https, "wpm", &file, &[]);
        assert!(code == 200 && body.as_bytes() == data.as_slice(), "{code}");
    }
    assert!(!post.is_empty());
    // Both agents are stopped before their containers and volumes go (the harness's drop): a
    // live agent would make them again meanwhile.
}
