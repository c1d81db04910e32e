//! Tenants on the host's shared MariaDB server (`shared_mariadb:`): WordPress (the stand-in,
//! pulled through the loopback registry as `wordpress:6.6-apache`, the server as `mariadb:11.4`)
//! in `shared` database mode. Each tenant gets its own database and user with privileges on that
//! database only and a connection limit; it cannot open another tenant's database, read the
//! server's system schemas, or log in as root (root exists on the server's socket only); a
//! backup and restore go through the server; a purge drops the database and the user.

mod common;
use common::*;
use std::time::Duration;

const SLOT: u16 = 94;
const REG: u16 = 19495;

const TEMPLATE: &str = r#"name: wpshared
description: WordPress on the host's shared MariaDB server
web: {service: web, port: 80, health_path: /wp-login.php}
database:
  engine: mariadb
  mode: shared
  password_secret: db_password
  port: 3306
secrets:
  db_password: {bytes: 32}
volumes:
  wp_data:
services:
  web:
    environment:
      WORDPRESS_DB_HOST: "{{ db.host }}:{{ db.port }}"
      WORDPRESS_DB_NAME: "{{ db.name }}"
      WORDPRESS_DB_USER: "{{ db.user }}"
      WORDPRESS_DB_PASSWORD_FILE: "{{ db.password_file }}"
    secrets: [db_password]
    files_owner: "33:33"
    volumes: [wp_data:/var/www/html]
    cap_add: [CHOWN, DAC_OVERRIDE, FOWNER, SETGID, SETUID, NET_BIND_SERVICE, KILL]
    tmpfs: [/tmp]
versions:
  "6.6":
    images: {web: "wordpress:6.6-apache"}
default_version: "6.6"
"#;

fn setup(h: &Harness) {
    let dir = h.path("templates/wpshared");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("template.yaml"), TEMPLATE).unwrap();
    h.use_own_templates();
    let mut cfg = std::fs::read_to_string(h.path("berth.yaml")).unwrap();
    cfg.push_str(&format!(
        "registry_mirrors: {{docker.io: \"127.0.0.1:{REG}\"}}\n\
         shared_mariadb: {{image: \"mariadb:11.4\", memory: 512m, connection_limit: 5}}\n"
    ));
    let cfg = cfg.replace(
        "plans:\n",
        "plans:\n  wp: {memory: 512m, cpus: 1, pids: 500}\n",
    );
    std::fs::write(h.path("berth.yaml"), cfg).unwrap();
    for t in ["sa", "sb"] {
        write_instance(h, t, "template: wpshared\nplan: wp\n");
    }
}

/// The tenant's database (and user) name, as its WordPress is given it.
fn db_name(h: &Harness, t: &str) -> String {
    docker_ok(&[
        "exec",
        &h.container(t, "web"),
        "printenv",
        "WORDPRESS_DB_NAME",
    ])
}

/// The `mariadb` client in `t`'s web container against the shared server, as `user` with the
/// password in the env var PW: (succeeded, output).
fn client(h: &Harness, t: &str, user: &str, pw: &str, db: &str, sql: &str) -> (bool, String) {
    let host = format!("{}-shared-mariadb", h.ns);
    let o = docker(&[
        "exec",
        "-e",
        &format!("MYSQL_PWD={pw}"),
        &h.container(t, "web"),
        "mariadb",
        "-N",
        "-s",
        "-h",
        &host,
        "-u",
        user,
        "-e",
        sql,
        db,
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text.trim().to_string())
}

fn own_password(h: &Harness, t: &str) -> String {
    std::fs::read_to_string(h.path(&format!("state/tenants/{t}/secrets/db_password")))
        .unwrap()
        .trim()
        .to_string()
}

/// As root on the server's own socket.
fn as_root(h: &Harness, sql: &str) -> String {
    docker_ok(&[
        "exec",
        &format!("{}-_host-mariadb", h.ns),
        "sh",
        "-c",
        "MYSQL_PWD=\"$(cat /run/secrets/mariadb_root_password)\" exec mariadb -uroot -N -s -e \"$0\"",
        sql,
    ])
}

#[test]
fn shared_mariadb_gives_each_tenant_its_own_database_that_no_other_tenant_can_open() {
    let Some(_serial) = docker_test() else { return };
    let mut h = Harness::new(SLOT);
    let dir = h.path("registry");
    std::fs::create_dir_all(&dir).unwrap();
    let _registry = plain_registry(&dir, REG);
    publish_stand_ins(REG);
    setup(&h);
    h.start();
    h.wait_running_within(&["sa", "sb"], Duration::from_secs(300));
    assert!(
        docker(&["image", "inspect", "mariadb:11.4"])
            .status
            .success(),
        "the shared server's image was pulled"
    );
    // Each WordPress reaches its own database (the installer needs it).
    for t in ["sa", "sb"] {
        let port = h.web(t);
        wait_for(
            Duration::from_secs(60),
            || http_get(port, "/wp-admin/install.php").is_some_and(|r| r.0 == 200),
            "the installer answers, connected to its database",
        );
    }
    let (a, b) = (db_name(&h, "sa"), db_name(&h, "sb"));
    assert_ne!(a, b);
    let pw = own_password(&h, "sa");
    let own = |sql: &str| client(&h, "sa", &a, &pw, &a, sql);
    let (ok, out) = own("CREATE TABLE kept (v INT); INSERT INTO kept VALUES (7); SHOW GRANTS");
    assert!(ok, "{out}");
    assert!(out.contains("MAX_USER_CONNECTIONS 5"), "{out}");
    assert!(
        !out.contains("ON *.*` TO") && !out.contains("ALL PRIVILEGES ON *.*"),
        "{out}"
    );

    // Not B's database, not the system schemas, not root (even with root's password).
    let (ok, out) = client(&h, "sa", &a, &pw, &b, "SELECT 1");
    assert!(!ok && out.contains("Access denied"), "{out}");
    let (ok, out) = own("SELECT * FROM mysql.global_priv LIMIT 1");
    assert!(!ok && out.contains("denied"), "{out}");
    let (ok, out) = own("SELECT COUNT(*) FROM information_schema.SCHEMATA");
    assert!(
        ok && out == "2",
        "only information_schema and its own: {out}"
    );
    let root_pw = std::fs::read_to_string(h.path("state/host/secrets/mariadb_root_password"))
        .unwrap_or_default();
    let (ok, out) = client(&h, "sa", "root", root_pw.trim(), "mysql", "SELECT 1");
    assert!(!ok, "root from a tenant: {out}");

    // Backup and restore through the shared server: exactly the backed-up tables.
    let made = h.cli_ok(&["backup", "sa"]);
    let id = made.split_whitespace().nth(2).unwrap().to_string();
    let (ok, out) = own("DROP TABLE kept; CREATE TABLE late (v INT)");
    assert!(ok, "{out}");
    h.cli_ok(&["restore", "sa", "--from", &id]);
    let (ok, out) = own("SELECT v FROM kept; SHOW TABLES LIKE 'late'");
    assert!(ok && out == "7", "{out}");

    // A restore runs nothing of the tenant's as root. (Before, definers were stripped and the
    // dump loaded as root: the tenant's SQL SECURITY DEFINER procedure came back as root's.)
    // And rows come back byte for byte, text that reads like a DEFINER clause included.
    let note = "How to use DEFINER=`app`@`%` in views";
    let (ok, out) = own(&format!(
        "CREATE TABLE notes (v TEXT); INSERT INTO notes VALUES ('{note}'); \
         CREATE PROCEDURE whoami() SQL SECURITY DEFINER SELECT CURRENT_USER(); \
         CREATE PROCEDURE peek() SQL SECURITY DEFINER SELECT COUNT(*) FROM mysql.global_priv; \
         CREATE SQL SECURITY DEFINER VIEW me AS SELECT CURRENT_USER() AS u"
    ));
    assert!(ok, "{out}");
    let made = h.cli_ok(&["backup", "sa"]);
    let id = made.split_whitespace().nth(2).unwrap().to_string();
    h.cli_ok(&["restore", "sa", "--from", &id]);
    let own_account = format!("{a}@%");
    let (ok, out) = own("CALL whoami()");
    assert!(ok && out == own_account, "the procedure runs as {out}");
    let (ok, out) = own("SELECT u FROM me");
    assert!(ok && out == own_account, "the view runs as {out}");
    let (ok, out) = own("CALL peek()");
    assert!(!ok && out.contains("denied"), "{out}");
    let definers = as_root(
        &h,
        &format!(
            "SELECT DEFINER FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = '{a}' \
             UNION ALL SELECT DEFINER FROM information_schema.VIEWS WHERE TABLE_SCHEMA = '{a}'"
        ),
    );
    assert!(
        definers.lines().count() == 3 && definers.lines().all(|d| d == own_account),
        "{definers}"
    );
    let (ok, out) = own("SELECT HEX(v) FROM notes");
    assert!(
        ok && out == hex_upper(note.as_bytes()),
        "the row changed: {out}"
    );
    let port = h.web("sa");
    wait_for(
        Duration::from_secs(60),
        || http_get(port, "/wp-admin/install.php").is_some_and(|r| r.0 == 200),
        "the restored site answers",
    );

    // A purge drops B's database and user.
    h.cli_ok(&["rm", "sb", "--purge"]);
    wait_for(
        Duration::from_secs(90),
        || {
            h.reconcile();
            !h.cli_ok(&["ls"]).contains("sb")
        },
        "sb purged",
    );
    assert_eq!(as_root(&h, &format!("SHOW DATABASES LIKE '{b}'")), "");
    assert_eq!(
        as_root(
            &h,
            &format!("SELECT COUNT(*) FROM mysql.global_priv WHERE User = '{b}'")
        ),
        "0"
    );
    assert_eq!(as_root(&h, &format!("SHOW DATABASES LIKE '{a}'")), a);
    h.kill9();
}

fn hex_upper(b: &[u8]) -> String {
    b.iter().map(|c| format!("{c:02X}")).collect()
}
