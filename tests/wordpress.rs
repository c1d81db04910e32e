//! WordPress end to end, from images berth pulled itself. The shipped `templates/wordpress`
//! names the official `mariadb:11.4` and `wordpress:6.*-apache` images; no public registry is
//! reachable here, so scripts/build-images.sh (`lamp`) builds stand-ins from Debian's packages
//! that honour those images' contracts, this test pushes them into a real registry on
//! loopback (Debian's docker-registry) under the official names, and the host config points
//! `docker.io` at it as a mirror. Everything else is the product: pulls, sidecar MariaDB,
//! the HTTPS edge on each tenant's own domain, backups, restore, clone, jobs and upgrades.

mod common;
use common::*;
use std::{process::Command, time::Duration};

const SLOT: u16 = 93;
const REG: u16 = 19493;
const ADMIN_PW: &str = "Berth-test-pass-93";

/// The shipped template in this harness's own templates dir, with a third (broken) version
/// and cron every ten seconds, the host config switched to it.
fn own_template(h: &Harness, smarthost: &str) {
    let repo = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = h.path("templates/wordpress");
    copy_dir(&repo.join("templates/wordpress"), &dir);
    let file = dir.join("template.yaml");
    let t = std::fs::read_to_string(&file)
        .unwrap()
        .replace("schedule: \"*/5 * * * *\"", "schedule: \"*/10 * * * * *\"")
        .replace(
            "default_version:",
            "  \"6.8\":\n    images: { web: \"wordpress:6.8-apache\" }\n    strategy: recreate\ndefault_version:",
        );
    std::fs::write(&file, t).unwrap();
    h.use_own_templates();
    let mut cfg = std::fs::read_to_string(h.path("berth.yaml")).unwrap();
    cfg.push_str(&format!(
        "registry_mirrors: {{docker.io: \"127.0.0.1:{REG}\"}}\nmail:\n  smarthost: \"{smarthost}\"\n"
    ));
    let cfg = cfg.replace(
        "plans:\n",
        "plans:\n  wp: {memory: 1g, cpus: 1, pids: 500}\n",
    );
    std::fs::write(h.path("berth.yaml"), cfg).unwrap();
}

/// One request to `https://<t>.apps.test<path>` through berth's edge: (status, body).
fn wp(h: &Harness, https: u16, t: &str, path: &str, extra: &[&str]) -> (u16, String) {
    let host = format!("{t}.apps.test");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "60", "-o", "-", "-w", "\n%{http_code}"])
        .arg("--cacert")
        .arg(h.path("ca.pem"))
        .args(["--connect-to", &format!("{host}:443:127.0.0.1:{https}")])
        .args(extra)
        .arg(format!("https://{host}{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.parse().unwrap_or(0), body.to_string())
}

/// An XML-RPC call as the site's admin; the response text (a fault fails the test).
fn xmlrpc(h: &Harness, https: u16, t: &str, method: &str, params: &str) -> String {
    let body = format!(
        "<?xml version=\"1.0\"?><methodCall><methodName>{method}</methodName><params>\
         <param><value><int>1</int></value></param>\
         <param><value><string>admin</string></value></param>\
         <param><value><string>{ADMIN_PW}</string></value></param>{params}</params></methodCall>"
    );
    let f = h.path("xmlrpc-body.xml");
    std::fs::write(&f, body).unwrap();
    let (code, text) = wp(
        h,
        https,
        t,
        "/xmlrpc.php",
        &[
            "-H",
            "Content-Type: text/xml",
            "--data-binary",
            &format!("@{}", f.display()),
        ],
    );
    assert!(
        code == 200 && !text.contains("<fault>"),
        "{t} {method}: {code} {text}"
    );
    text
}

fn first_value(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let at = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no {tag} in {xml}"))
        + open.len();
    xml[at..].split('<').next().unwrap().to_string()
}

fn install(h: &Harness, https: u16, t: &str) {
    let form = format!(
        "weblog_title=Site+{t}&user_name=admin&admin_password={ADMIN_PW}&admin_password2={ADMIN_PW}\
         &pw_weak=1&admin_email=ops%40{t}.test&blog_public=0"
    );
    let (code, body) = wp(
        h,
        https,
        t,
        "/wp-admin/install.php?step=2",
        &["--data", &form],
    );
    assert!(
        code == 200 && body.contains("Success!"),
        "{t} install: {code} {body}"
    );
}

/// Publishes a post; its id.
fn publish_post(h: &Harness, https: u16, t: &str, title: &str) -> String {
    let r = xmlrpc(
        h,
        https,
        t,
        "wp.newPost",
        &format!(
            "<param><value><struct>\
             <member><name>post_title</name><value><string>{title}</string></value></member>\
             <member><name>post_content</name><value><string>Written by the berth test.</string></value></member>\
             <member><name>post_status</name><value><string>publish</string></value></member>\
             </struct></value></param>"
        ),
    );
    first_value(&r, "string")
}

/// Uploads `data` as a media file; (attachment id, path of the file on the site).
fn upload(h: &Harness, https: u16, t: &str, name: &str, data: &[u8]) -> (String, String) {
    let bits = base64(data);
    let r = xmlrpc(
        h,
        https,
        t,
        "wp.uploadFile",
        &format!(
            "<param><value><struct>\
             <member><name>name</name><value><string>{name}</string></value></member>\
             <member><name>type</name><value><string>text/plain</string></value></member>\
             <member><name>bits</name><value><base64>{bits}</base64></value></member>\
             </struct></value></param>"
        ),
    );
    let id = r
        .split("<name>id</name>")
        .nth(1)
        .map(|s| first_value(s, "string"))
        .unwrap_or_else(|| panic!("no id in {r}"));
    let url = r
        .split("<name>url</name>")
        .nth(1)
        .map(|s| first_value(s, "string"))
        .unwrap_or_else(|| panic!("no url in {r}"));
    let path = url.split(".apps.test").nth(1).unwrap().to_string();
    (id, path)
}

fn delete_post(h: &Harness, https: u16, t: &str, id: &str) {
    xmlrpc(
        h,
        https,
        t,
        "wp.deletePost",
        &format!("<param><value><int>{id}</int></value></param>"),
    );
}

/// Names, modes, owners and content digests of every file in the tenant's WordPress volume.
fn volume_digest(h: &Harness, t: &str) -> String {
    docker_ok(&[
        "exec",
        &h.container(t, "web"),
        "sh",
        "-c",
        "cd /var/www/html && find . -printf '%p %y %m %U:%G\\n' | sort && \
         find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum",
    ])
}

/// One statement in the tenant's MariaDB as its WordPress user.
fn sql(h: &Harness, t: &str, q: &str) -> String {
    docker_ok(&[
        "exec",
        &h.container(t, "db"),
        "sh",
        "-c",
        "MYSQL_PWD=\"$(cat /run/secrets/db_password)\" exec mariadb -N -s -h 127.0.0.1 -u wordpress wordpress -e \"$0\"",
        q,
    ])
}

/// Whether `from`'s web container opens a TCP connection to `ip`:3306.
fn reaches(h: &Harness, from: &str, ip: &str) -> bool {
    let php = format!("$s = @fsockopen('{ip}', 3306, $e, $m, 3); echo $s ? 'open' : 'closed';");
    docker_ok(&["exec", &h.container(from, "web"), "php", "-r", &php]) == "open"
}

fn db_ip(h: &Harness, t: &str) -> String {
    docker_ok(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &h.container(t, "db"),
    ])
}

fn instance(h: &Harness, t: &str) {
    write_instance(
        h,
        t,
        &format!("template: wordpress\nplan: wp\nparameters:\n  admin_email: ops@{t}.test\n"),
    );
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            out.push(match i <= c.len() {
                true => A[(n >> (18 - 6 * i) & 63) as usize] as char,
                false => '=',
            });
        }
    }
    out
}

/// Text of `n` bytes that differs from tenant to tenant.
fn payload(seed: &str, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    let mut x: u64 = seed.bytes().fold(1469598103934665603, |a, b| {
        (a ^ b as u64).wrapping_mul(1099511628211)
    });
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend(format!("{x:016x}\n").bytes());
    }
    out.truncate(n);
    out
}

/// A file and a table the backup does not have.
fn make_late_things(h: &Harness) {
    docker_ok(&[
        "exec",
        &h.container("wpa", "web"),
        "sh",
        "-c",
        "echo late > /var/www/html/wp-content/uploads/after-backup.txt",
    ]);
    sql(h, "wpa", "CREATE TABLE IF NOT EXISTS after_backup (a INT)");
}

/// (the backed-up post is on the front page, the late file exists, the late table exists)
fn state_of(h: &Harness, https: u16) -> (bool, bool, bool) {
    let file = docker(&[
        "exec",
        &h.container("wpa", "web"),
        "test",
        "-e",
        "/var/www/html/wp-content/uploads/after-backup.txt",
    ]);
    (
        wp(h, https, "wpa", "/", &[]).1.contains("Kept by berth"),
        file.status.success(),
        sql(h, "wpa", "SHOW TABLES LIKE 'after_backup'") == "after_backup",
    )
}
const OLD: (bool, bool, bool) = (false, true, true);
const RESTORED: (bool, bool, bool) = (true, false, false);

#[test]
fn wordpress_is_pulled_installed_used_backed_up_restored_cloned_and_upgraded() {
    let Some(_serial) = docker_test() else { return };
    let mut h = Harness::new(SLOT);
    let (_, https) = h.with_proxy(SLOT);
    let dir = h.path("registry");
    std::fs::create_dir_all(&dir).unwrap();
    let _registry = plain_registry(&dir, REG);
    publish_stand_ins(REG);
    let sink = common::mail::MailSink::start(&h.path("sink"), SLOT);
    own_template(&h, &sink.addr);
    instance(&h, "wpa");
    instance(&h, "wpb");
    h.start();
    h.wait_running_within(&["wpa", "wpb"], Duration::from_secs(300));
    std::fs::write(h.path("ca.pem"), h.cli_ok(&["ca"])).unwrap();
    for (_, official) in common::STAND_INS.iter().take(2) {
        assert!(
            docker(&["image", "inspect", official]).status.success(),
            "berth pulled {official}"
        );
    }

    // Installed with the web installer, through the HTTPS edge on each tenant's own domain.
    for t in ["wpa", "wpb"] {
        wait_for(
            Duration::from_secs(60),
            || wp(&h, https, t, "/wp-admin/install.php", &[]).0 == 200,
            "the installer answers",
        );
        install(&h, https, t);
        assert_eq!(wp(&h, https, t, "/wp-login.php", &[]).0, 200);
    }
    // WordPress's own mail (a password reset) leaves through berth's relay, signed for the
    // tenant's domain.
    let (code, body) = wp(
        &h,
        https,
        "wpa",
        "/wp-login.php?action=lostpassword",
        &[
            "--data",
            "user_login=admin&redirect_to=&wp-submit=Get+New+Password",
        ],
    );
    assert!(code == 302 || code == 200, "lost password: {code} {body}");
    // (The installers' "New WordPress Site" messages went the same way.)
    let reset = || {
        sink.received().into_iter().find(|(from, eml)| {
            from == "wordpress@wpa.apps.test"
                && std::fs::read_to_string(eml)
                    .unwrap_or_default()
                    .contains("Password Reset")
        })
    };
    wait_for(
        Duration::from_secs(60),
        || reset().is_some(),
        "WordPress's password-reset message at the sink",
    );
    let (_, eml) = reset().unwrap();
    assert_eq!(
        common::mail::dkim_check(&h, "wpa", &eml),
        "ok wpa.apps.test"
    );
    let installers = sink.received();
    assert!(
        installers
            .iter()
            .any(|(f, _)| f == "wordpress@wpb.apps.test"),
        "wpb's installer mail: {installers:?}"
    );
    let post_a = publish_post(&h, https, "wpa", "Kept by berth");
    publish_post(&h, https, "wpb", "Only on b");
    let data = payload("wpa", 300_000);
    let (upload_id, upload_path) = upload(&h, https, "wpa", "berth-upload.txt", &data);
    let front = wp(&h, https, "wpa", "/", &[]);
    assert!(
        front.1.contains("Kept by berth") && !front.1.contains("Only on b"),
        "{front:?}"
    );
    assert_eq!(
        wp(&h, https, "wpa", &upload_path, &[]).1.as_bytes(),
        &data[..]
    );

    // Tenant a's WordPress cannot reach b's database; its own it can.
    assert!(reaches(&h, "wpa", &db_ip(&h, "wpa")), "positive control");
    assert!(
        !reaches(&h, "wpa", &db_ip(&h, "wpb")),
        "a reaches b's database"
    );

    // Backup, then the post and the upload deleted and things made that the backup lacks.
    let made = h.cli_ok(&["backup", "wpa"]);
    let id = made.split_whitespace().nth(2).unwrap().to_string();
    let before = volume_digest(&h, "wpa");
    delete_post(&h, https, "wpa", &post_a);
    delete_post(&h, https, "wpa", &upload_id);
    make_late_things(&h);
    assert!(!wp(&h, https, "wpa", "/", &[]).1.contains("Kept by berth"));
    assert_eq!(wp(&h, https, "wpa", &upload_path, &[]).0, 404);

    let restored = h.cli_ok(&["restore", "wpa", "--from", &id]);
    assert!(restored.contains(&id), "{restored}");
    assert!(wp(&h, https, "wpa", "/", &[]).1.contains("Kept by berth"));
    assert_eq!(
        wp(&h, https, "wpa", &upload_path, &[]).1.as_bytes(),
        &data[..]
    );
    assert_eq!(volume_digest(&h, "wpa"), before, "the volume is byte-equal");
    assert_eq!(sql(&h, "wpa", "SHOW TABLES LIKE 'after_backup'"), "");
    let safety = std::fs::read_dir(h.path("state/backups/wpa/safety"))
        .unwrap()
        .count();
    assert_eq!(safety, 1, "the safety backup of what was replaced is kept");
    assert!(!h.path("state/backups/wpa/restoring.json").exists());

    // The agent killed (SIGKILL) at moments of a restore: afterwards the tenant holds either
    // what it held before the restore or the restored data, never a mix.
    // Killed while the safety backup is taken (before the journal): the old data stays.
    // Killed once the journal is written (the database or a volume being replaced): the next
    // agent finishes the restore.
    let journal = h.path("state/backups/wpa/restoring.json");
    for (after_journal, delay_ms) in [(false, 300u64), (true, 0), (true, 700)] {
        delete_post(&h, https, "wpa", &post_a);
        make_late_things(&h);
        assert_eq!(state_of(&h, https), OLD);
        let mut restore = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["--config", h.path("berth.yaml").to_str().unwrap()])
            .args(["restore", "wpa", "--from", &id])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        if after_journal {
            wait_for(Duration::from_secs(120), || journal.exists(), "the journal");
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        h.kill9();
        let _ = restore.wait();
        h.start();
        wait_for(
            Duration::from_secs(120),
            || !journal.exists(),
            "the unfinished restore finished",
        );
        let now = state_of(&h, https);
        eprintln!("killed {delay_ms} ms after the journal ({after_journal}): {now:?}");
        match after_journal {
            true => assert_eq!(now, RESTORED, "finished by the next agent"),
            false => assert!(now == OLD || now == RESTORED, "a mix: {now:?}"),
        }
        if now == OLD {
            h.cli_ok(&["restore", "wpa", "--from", &id]);
        }
        assert_eq!(state_of(&h, https), RESTORED);
    }

    // A clone: a third tenant on its own domain with a's data.
    let cloned = h.cli_ok(&["restore", "wpc", "--from", &format!("wpa:{id}")]);
    assert!(cloned.contains("created from backup"), "{cloned}");
    let front = wp(&h, https, "wpc", "/", &[]);
    assert!(front.1.contains("Kept by berth"), "{front:?}");
    assert_eq!(
        wp(&h, https, "wpc", &upload_path, &[]).1.as_bytes(),
        &data[..]
    );
    h.cli_ok(&["rm", "wpc", "--purge"]);

    // WordPress's cron runs as a berth job.
    wait_for(
        Duration::from_secs(60),
        || {
            let v: serde_json::Value =
                serde_json::from_str(&h.cli_ok(&["jobs", "wpa", "-o", "json"])).unwrap();
            v.to_string().contains("\"exit_code\":0")
        },
        "a cron job run that exits 0",
    );
    let not_www = docker_ok(&[
        "exec",
        &h.container("wpa", "web"),
        "find",
        "/var/www/html/wp-content",
        "!",
        "-user",
        "www-data",
    ]);
    assert_eq!(not_www, "", "cron made files Apache cannot write");

    // An upgrade whose release migrates the database (its plugin creates a table).
    let up = h.cli(&["upgrade", "wordpress", "--to", "6.7", "--wait"]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    for t in ["wpa", "wpb"] {
        wait_for(
            Duration::from_secs(60),
            || {
                wp(&h, https, t, "/", &[]);
                sql(&h, t, "SHOW TABLES LIKE 'wp_berth_ledger'") == "wp_berth_ledger"
            },
            "the migration's table",
        );
    }
    // A broken release: halted at the canary, rolled back with its data.
    let up = h.cli(&[
        "upgrade",
        "wordpress",
        "--to",
        "6.8",
        "--canary",
        "1",
        "--wait",
    ]);
    assert!(!up.status.success(), "the broken release is refused");
    for t in ["wpa", "wpb"] {
        assert_eq!(h.status(t)["version"], "6.7", "{t}: {}", h.status(t));
        assert_eq!(wp(&h, https, t, "/wp-login.php", &[]).0, 200);
        assert_eq!(
            sql(&h, t, "SHOW TABLES LIKE 'wp_berth_ledger'"),
            "wp_berth_ledger"
        );
    }
    assert!(wp(&h, https, "wpa", "/", &[]).1.contains("Kept by berth"));
}
