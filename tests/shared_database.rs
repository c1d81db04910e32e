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
    // Each tenant's database and role: one opaque name (keyed digest), never the tenant's.
    let mut names = std::collections::BTreeMap::new();
    for t in ["mike", "november"] {
        let port = h.web(t);
        let mut seen = String::new();
        wait_for(
            Duration::from_secs(30),
            || {
                let r = http_get(port, "/cgi-bin/db");
                seen = r.map(|(_, b)| b).unwrap_or_default();
                seen.contains("db-ok t_")
            },
            "db-ok",
        );
        let line = seen
            .lines()
            .find(|l| l.contains("db-ok"))
            .unwrap()
            .to_string();
        let words: Vec<&str> = line.split_whitespace().collect();
        let (db, user) = (words[1].to_string(), words[2].to_string());
        assert_eq!(db, user);
        assert!(db.len() == 26 && !db.contains(t), "{line}");
        names.insert(t, db);
    }
    let (mike_db, november_db) = (names["mike"].clone(), names["november"].clone());
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
    let as_mike = |db: &str, sql: &str| {
        docker(&[
            "exec",
            &app,
            "sh",
            "-c",
            &format!(
                "PGPASSWORD=$(cat /run/secrets/db_password) HOME=/tmp psql -h {}-shared-postgres -U {mike_db} -d {db} -tAc \"{sql}\"",
                h.ns
            ),
        ])
    };
    assert!(as_mike(&mike_db, "select 1").status.success());
    // Only its own database: not november's, not the server's own ones.
    for other in [november_db.as_str(), "postgres", "template1"] {
        let denied = as_mike(other, "select 1");
        assert!(!denied.status.success(), "mike opened {other}");
        assert!(
            String::from_utf8_lossy(&denied.stderr).contains("permission denied for database"),
            "{other}: {}",
            String::from_utf8_lossy(&denied.stderr)
        );
    }
    // What mike can list names no tenant.
    let listed = as_mike(
        &mike_db,
        "select string_agg(datname, ',') from pg_database union all select string_agg(rolname, ',') from pg_roles",
    );
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    assert!(listed.contains(&november_db), "{listed}");
    assert!(
        !listed.contains("mike") && !listed.contains("november"),
        "{listed}"
    );
    let superuser_in = |db: &str, sql: &str| {
        docker_ok(&[
            "exec",
            &server,
            "psql",
            "-h",
            "/var/run/postgresql",
            "-U",
            "postgres",
            "-d",
            db,
            "-tAc",
            sql,
        ])
    };
    let superuser_sql = |sql: &str| superuser_in("postgres", sql);
    let limit = superuser_sql(&format!(
        "select rolconnlimit from pg_roles where rolname = '{mike_db}'"
    ));
    assert_eq!(limit, "5");
    // A tenant's SECURITY DEFINER function goes through its own backup and restore still
    // owned by its role and running as it. (Before, the dump was loaded by the superuser and
    // the function came back owned by postgres: the tenant was superuser of the server.)
    let as_november = |sql: &str| tenant_sql(&h, "november", &november_db, sql);
    let (ok, out) = as_november(
        "CREATE TABLE notes (v text); INSERT INTO notes VALUES ('keep me');\n\
         CREATE FUNCTION public.whoami() RETURNS text LANGUAGE sql SECURITY DEFINER\n\
         AS $$ SELECT current_user::text || ' ' || (SELECT rolsuper::text FROM pg_roles WHERE rolname = current_user) $$;",
    );
    assert!(ok, "{out}");
    let made = h.cli_ok(&["backup", "november"]);
    let id = made.split_whitespace().nth(2).unwrap().to_string();
    h.cli_ok(&["restore", "november", "--from", &id]);
    let owner = |name: &str| {
        superuser_in(
            &november_db,
            &format!("select pg_get_userbyid(proowner) from pg_proc where proname = '{name}'"),
        )
    };
    assert_eq!(owner("whoami"), november_db, "the function's owner");
    let (ok, out) = as_november("SELECT public.whoami();");
    assert!(ok && out == format!("{november_db} false"), "{out}");
    let (ok, out) = as_november("COPY (SELECT 1) TO PROGRAM 'true';");
    assert!(!ok && out.contains("must be superuser"), "{out}");
    let (ok, out) = as_november("SELECT v FROM notes;");
    assert!(ok && out == "keep me", "{out}");
    let port = h.web("november");
    wait_for(
        Duration::from_secs(30),
        || http_get(port, "/cgi-bin/db").is_some_and(|(_, b)| b.contains("db-ok")),
        "november's app on its restored database",
    );
    // Objects a restore of the old kind left owned by the superuser are given back to the
    // tenant's role at its next change.
    superuser_in(
        &november_db,
        "create function public.legacy() returns int language sql security definer as 'select 1'",
    );
    assert_eq!(owner("legacy"), "postgres");
    // The repair runs as the superuser inside the tenant's own database: an operator the tenant
    // planted there for the repair to call (it would make the tenant superuser) is not called.
    let (ok, out) = as_november(
        "CREATE FUNCTION public.planted(oid, regrole) RETURNS boolean LANGUAGE plpgsql AS $$\n\
         BEGIN EXECUTE format('ALTER ROLE %I SUPERUSER', current_database()); RETURN $1 <> $2::oid; END $$;\n\
         CREATE OPERATOR public.<> (LEFTARG = oid, RIGHTARG = regrole, FUNCTION = public.planted);\n\
         CREATE FUNCTION public.format(text, name) RETURNS text LANGUAGE plpgsql AS $$\n\
         BEGIN EXECUTE pg_catalog.format('ALTER ROLE %I SUPERUSER', current_database()); RETURN $1; END $$;",
    );
    assert!(ok, "{out}");
    h.cli_ok(&["set", "november", "site_title=Restored"]);
    wait_for(
        Duration::from_secs(30),
        || owner("legacy") == november_db,
        "the superuser's function given back to the tenant",
    );
    assert_eq!(
        superuser_sql(&format!(
            "select rolsuper from pg_roles where rolname = '{november_db}'"
        )),
        "f",
        "the tenant's planted operator ran as the superuser"
    );

    // A database of the old naming (`t_<tenant>`) is renamed to the keyed name, data and all.
    superuser_sql("create role t_oscar login");
    superuser_sql("create database t_oscar owner t_oscar");
    superuser_in(
        "t_oscar",
        "create table legacy(x int); insert into legacy values (42); alter table legacy owner to t_oscar",
    );
    write_instance(&h, "oscar", "template: demo-shared\n");
    h.wait_running(&["oscar"]);
    assert_eq!(
        superuser_sql("select count(*) from pg_database where datname = 't_oscar'"),
        "0"
    );
    let oscar_db = superuser_sql(
        "select datname from pg_database where datname like 't\\_%' and datname not in (select rolname from pg_roles where rolname = 't_oscar') order by oid desc limit 1",
    );
    let kept = superuser_in(&oscar_db, "select x from legacy");
    assert_eq!(kept, "42", "{oscar_db}");
    h.cli_ok(&["rm", "oscar", "--purge"]);
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
    let left = superuser_sql(&format!(
        "select count(*) from pg_database where datname = '{mike_db}'"
    ));
    assert_eq!(left, "0");
    // The last tenant on the server goes: the server stops and holds no memory.
    let reserved = |h: &Harness| {
        let cap: serde_json::Value =
            serde_json::from_str(&h.cli_ok(&["capacity", "-o", "json"])).unwrap();
        cap["memory_reserved"].as_u64().unwrap()
    };
    assert!(
        reserved(&h) > 256 << 20,
        "november and the server are reserved"
    );
    h.cli_ok(&["rm", "november", "--purge"]);
    wait_for(
        Duration::from_secs(60),
        || {
            h.reconcile();
            docker(&["inspect", &server]).status.code() != Some(0)
        },
        "the unused shared database server removed",
    );
    assert_eq!(reserved(&h), 0, "the stopped server is still reserved");
}

/// `sql` through `psql -f -` in `t`'s app container as its own role against the shared
/// server: (succeeded, output).
fn tenant_sql(h: &Harness, t: &str, db: &str, sql: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = std::process::Command::new("docker")
        .args([
            "exec",
            "-i",
            &h.container(t, "app"),
            "sh",
            "-c",
            &format!(
                "PGPASSWORD=$(cat /run/secrets/db_password) HOME=/tmp exec psql -h {}-shared-postgres -U {db} -d {db} -v ON_ERROR_STOP=1 -qtA -f -",
                h.ns
            ),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(sql.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text.trim().to_string())
}
