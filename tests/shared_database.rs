//! Real-engine test of database mode `shared`: one server, one database and role per tenant.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn shared_mode_gives_each_tenant_its_own_database_that_no_other_tenant_can_open() {
    let Some(_serial) = docker_test() else { return };
    let mut h = Harness::new(41);
    h.start();
    write_instance(&h, "mike", "template: demo-shared\n");
    write_instance(&h, "november", "template: demo-shared\n");
    h.wait_running(&["mike", "november"]);
    for t in ["mike", "november"] {
        let port = h.port(t);
        let want = format!("db-ok t_{t} t_{t}");
        wait_for(
            Duration::from_secs(30),
            || http_get(port, "/cgi-bin/db").is_some_and(|(c, b)| c == 200 && b.contains(&want)),
            &want,
        );
    }
    // One server for both, on each tenant's network under one alias.
    let server = format!("{}-_host-postgres", h.ns);
    let nets = docker_ok(&[
        "inspect",
        "-f",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
        &server,
    ]);
    assert!(
        nets.contains(&format!("{}-mike", h.ns)) && nets.contains(&format!("{}-november", h.ns)),
        "{nets}"
    );
    // mike's credentials do not open november's database; PUBLIC has no CONNECT.
    let app = h.container("mike", "app");
    let attempt = |db: &str| {
        docker(&[
            "exec",
            &app,
            "sh",
            "-c",
            &format!(
                "PGPASSWORD=$(cat /run/secrets/db_password) HOME=/tmp psql -h {}-shared-postgres -U t_mike -d {db} -tAc 'select 1'",
                h.ns
            ),
        ])
    };
    assert!(attempt("t_mike").status.success());
    let denied = attempt("t_november");
    assert!(!denied.status.success());
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("permission denied for database"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
    let superuser_sql = |sql: &str| {
        docker_ok(&[
            "exec",
            &server,
            "psql",
            "-h",
            "/var/run/postgresql",
            "-U",
            "postgres",
            "-tAc",
            sql,
        ])
    };
    let limit = superuser_sql("select rolconnlimit from pg_roles where rolname = 't_mike'");
    assert_eq!(limit, "5");
    // Purge drops the tenant's database and role.
    h.cli_ok(&["rm", "mike", "--purge"]);
    wait_for(
        Duration::from_secs(30),
        || {
            h.reconcile();
            !h.path("state/tenants/mike").exists()
        },
        "purge",
    );
    let left = superuser_sql("select count(*) from pg_database where datname = 't_mike'");
    assert_eq!(left, "0");
}
