//! The host's shared MariaDB server, for templates with `engine: mariadb|mysql` in `shared`
//! mode: one server (`shared_mariadb:` in the host config), one database and one user per
//! tenant with privileges on that database only and a connection limit, nothing global; root
//! exists only on the server's own socket (`MARIADB_ROOT_HOST=localhost`). The server is
//! attached to each such tenant's network and to no other.

use super::shared_db::{Kind, ServerBase, SharedDbError, ensure_server, server_base};
use crate::{
    desired::{HostConfig, Instance, instance::shared_server},
    runtime::{Runtime, labels, spec},
    spec::template::DatabaseEngine,
    store::Layout,
};

const ROOT_SECRET: &str = "mariadb_root_password";
/// Inside the server's container.
pub const ROOT_SECRET_PATH: &str = "/run/secrets/mariadb_root_password";
/// `sh -c` that exports root's password from its file, then runs the rest.
const AS_ROOT: [&str; 4] = [
    "sh",
    "-c",
    "MYSQL_PWD=\"$(cat \"$0\")\" && export MYSQL_PWD && exec \"$@\"",
    ROOT_SECRET_PATH,
];

const MARIADB: Kind = Kind {
    service: labels::MARIADB_SERVICE,
    secret: ROOT_SECRET,
    spec: server_spec,
    ready: &[
        AS_ROOT[0], AS_ROOT[1], AS_ROOT[2], AS_ROOT[3], "mariadb", "-uroot", "-e", "SELECT 1",
    ],
};

/// The server's container name.
pub fn server_name(ns: &str) -> String {
    spec::container_name(ns, labels::HOST_TENANT, MARIADB.service)
}

/// `s` as a single-quoted SQL string literal.
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `name` as a backquoted identifier; with `grant`, `_` and `%` escaped as GRANT needs (they
/// are wildcards there: `t_x` would also cover `tax`).
fn ident(name: &str, grant: bool) -> String {
    let mut n = name.replace('`', "``");
    if grant {
        n = n.replace('_', "\\_").replace('%', "\\%");
    }
    format!("`{n}`")
}

/// Starts the server if needed, attaches it to the tenant's network, and creates or updates
/// the tenant's database and user. Every statement is safe to repeat.
pub async fn ensure(
    rt: &dyn Runtime,
    host: &HostConfig,
    layout: &Layout,
    inst: &Instance,
) -> Result<(), SharedDbError> {
    let not_configured = || SharedDbError::NotConfigured {
        tenant: inst.tenant.clone(),
    };
    let cfg = host.shared_mariadb.as_ref().ok_or_else(not_configured)?;
    let db = inst.database.as_ref().ok_or_else(not_configured)?;
    let server = ensure_server(rt, host, layout, cfg, &MARIADB).await?;
    let (_, _, alias) = shared_server(DatabaseEngine::Mariadb, &host.namespace);
    rt.connect_network(
        &spec::network_name(&host.namespace, &inst.tenant),
        &server,
        &alias,
    )
    .await?;
    let password = std::fs::read_to_string(layout.secret(&inst.tenant, &db.password_secret))
        .map_err(|source| SharedDbError::Files {
            path: db.password_secret.clone(),
            source,
        })?;
    let r = crate::desired::instance::shared_db_name(host, &inst.tenant);
    let (user, pw) = (format!("{}@'%'", quoted(&r)), quoted(password.trim()));
    // A restore loads beside the live database and switches it in by renames
    // (`backup/staged.rs`): the tenant's user holds its staging and set-aside databases too.
    let (new, old) = crate::desired::instance::staging_db_names(&r).unwrap_or_default();
    let sql = format!(
        "CREATE DATABASE IF NOT EXISTS {db} CHARACTER SET utf8mb4;\n\
         CREATE USER IF NOT EXISTS {user} IDENTIFIED BY {pw};\n\
         ALTER USER {user} IDENTIFIED BY {pw} WITH MAX_USER_CONNECTIONS {limit};\n\
         GRANT ALL PRIVILEGES ON {grant}.* TO {user};\n\
         GRANT ALL PRIVILEGES ON {new}.* TO {user};\n\
         GRANT ALL PRIVILEGES ON {old}.* TO {user};\n",
        db = ident(&r, false),
        grant = ident(&r, true),
        new = ident(&new, true),
        old = ident(&old, true),
        limit = cfg.connection_limit,
    );
    as_root(rt, &server, &inst.tenant, sql).await
}

/// Drops the tenant's database and user (purge). No server, nothing to drop.
pub async fn drop_tenant(
    rt: &dyn Runtime,
    host: &HostConfig,
    tenant: &str,
) -> Result<(), SharedDbError> {
    let server = server_name(&host.namespace);
    let inv = rt.inventory(&host.namespace).await?;
    if host.shared_mariadb.is_none() || !inv.containers.iter().any(|c| c.name == server) {
        return Ok(());
    }
    let r = crate::desired::instance::shared_db_name(host, tenant);
    let (new, old) = crate::desired::instance::staging_db_names(&r).unwrap_or_default();
    let sql = format!(
        "DROP DATABASE IF EXISTS {};\nDROP DATABASE IF EXISTS {};\nDROP DATABASE IF EXISTS {};\n\
         DROP USER IF EXISTS {}@'%';\n",
        ident(&r, false),
        ident(&new, false),
        ident(&old, false),
        quoted(&r)
    );
    as_root(rt, &server, tenant, sql).await
}

/// Runs `sql` as root on the server's socket; the SQL (and any password in it) goes through
/// stdin, never argv.
async fn as_root(
    rt: &dyn Runtime,
    server: &str,
    tenant: &str,
    sql: String,
) -> Result<(), SharedDbError> {
    let mut cmd = AS_ROOT.to_vec();
    cmd.extend(["mariadb", "-uroot"]);
    let out = rt.exec(server, &cmd, Some(sql.into_bytes())).await?;
    if out.exit_code != 0 {
        return Err(SharedDbError::Sql {
            tenant: tenant.into(),
            output: out.output.trim().to_string(),
        });
    }
    Ok(())
}

fn server_spec(
    ns: &str,
    name: &str,
    net: &str,
    vol: &str,
    secret: &str,
    cfg: &crate::desired::host::SharedDatabase,
) -> spec::ContainerSpec {
    let base = ServerBase {
        service: MARIADB.service,
        alias: shared_server(DatabaseEngine::Mariadb, ns).2,
        data: "/var/lib/mysql",
        secret_at: ROOT_SECRET_PATH,
    };
    let mut c = server_base((ns, name, net, vol, secret), cfg, base);
    c.env = vec![
        format!("MARIADB_ROOT_PASSWORD_FILE={ROOT_SECRET_PATH}"),
        // Root only on the server's own socket: no tenant can log in as root.
        "MARIADB_ROOT_HOST=localhost".into(),
    ];
    c.cmd = Some(vec!["mariadbd".into(), "--max-connections=500".into()]);
    // The official image's entrypoint starts as root, fixes ownership, drops to mysql (999).
    c.cap_add = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"]
        .map(String::from)
        .into();
    c.tmpfs.insert(
        "/run/mysqld".into(),
        "rw,nosuid,size=1m,uid=999,gid=999".into(),
    );
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_name_only_the_tenants_database_and_literals_are_quoted() {
        assert_eq!(ident("t_ab%c", true), "`t\\_ab\\%c`");
        assert_eq!(ident("t_ab", false), "`t_ab`");
        assert_eq!(ident("a`b", false), "`a``b`");
        assert_eq!(quoted("p'w\\"), "'p\\'w\\\\'");
    }

    #[test]
    fn the_server_runs_hardened_with_root_on_its_socket_only() {
        let cfg = crate::desired::host::SharedDatabase {
            image: "mariadb:11.4".into(),
            memory: 512 << 20,
            connection_limit: 5,
        };
        let s = server_spec("bt", "bt-_host-mariadb", "net", "vol", "/s", &cfg);
        assert!(s.env.contains(&"MARIADB_ROOT_HOST=localhost".to_string()));
        assert!(s.no_new_privileges && s.read_only_rootfs && s.publish.is_none());
        assert_eq!(s.cap_drop, vec!["ALL".to_string()]);
        assert!(
            !s.env.iter().any(|e| e.contains("PASSWORD=")),
            "no password in env"
        );
    }
}
