//! WordPress through the edge, for the tests that run the shipped template: its requests,
//! installer, XML-RPC, files and database.

use super::*;
use std::process::Command;

pub const ADMIN_PW: &str = "Berth-test-pass-93";

/// The shipped template in this harness's own templates dir, with a third (broken) version
/// and cron every ten seconds, the host config switched to it.
pub fn own_template(h: &Harness, smarthost: &str, reg: u16) {
    own_app_template(
        h,
        "wordpress",
        ("6.8", "wordpress:6.8-apache"),
        (smarthost, reg),
        "wp: {memory: 1g, cpus: 1, pids: 500, disk: 1g}",
    );
}

/// One request to `https://<t>.apps.test<path>` through berth's edge: (status, body).
pub fn wp(h: &Harness, https: u16, t: &str, path: &str, extra: &[&str]) -> (u16, String) {
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
pub fn xmlrpc(h: &Harness, https: u16, t: &str, method: &str, params: &str) -> String {
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

pub fn first_value(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let at = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no {tag} in {xml}"))
        + open.len();
    xml[at..].split('<').next().unwrap().to_string()
}

pub fn install(h: &Harness, https: u16, t: &str) {
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
pub fn publish_post(h: &Harness, https: u16, t: &str, title: &str) -> String {
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
pub fn upload(h: &Harness, https: u16, t: &str, name: &str, data: &[u8]) -> (String, String) {
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

pub fn delete_post(h: &Harness, https: u16, t: &str, id: &str) {
    xmlrpc(
        h,
        https,
        t,
        "wp.deletePost",
        &format!("<param><value><int>{id}</int></value></param>"),
    );
}

/// Names, modes, owners and content digests of every file in the tenant's WordPress volume.
pub fn volume_digest(h: &Harness, t: &str) -> String {
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
pub fn sql(h: &Harness, t: &str, q: &str) -> String {
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
pub fn reaches(h: &Harness, from: &str, ip: &str) -> bool {
    let php = format!("$s = @fsockopen('{ip}', 3306, $e, $m, 3); echo $s ? 'open' : 'closed';");
    docker_ok(&["exec", &h.container(from, "web"), "php", "-r", &php]) == "open"
}

pub fn db_ip(h: &Harness, t: &str) -> String {
    docker_ok(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &h.container(t, "db"),
    ])
}

pub fn instance(h: &Harness, t: &str) {
    write_instance(
        h,
        t,
        &format!("template: wordpress\nplan: wp\nparameters:\n  admin_email: ops@{t}.test\n"),
    );
}

pub fn base64(data: &[u8]) -> String {
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
pub fn payload(seed: &str, n: usize) -> Vec<u8> {
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
pub fn make_late_things(h: &Harness) {
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
pub fn state_of(h: &Harness, https: u16) -> (bool, bool, bool) {
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
pub const OLD: (bool, bool, bool) = (false, true, true);
pub const RESTORED: (bool, bool, bool) = (true, false, false);

/// What a restore's unpacked or set-aside copies left in the site's volume (empty: none).
pub fn restore_leftovers(h: &Harness) -> String {
    docker_ok(&[
        "exec",
        &h.container("wpa", "web"),
        "find",
        "/var/www/html",
        "-maxdepth",
        "1",
        "(",
        "-name",
        ".berth-restore",
        "-o",
        "-name",
        ".berth-old",
        ")",
    ])
}
