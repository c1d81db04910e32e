//! The host's shared PostgreSQL server, for templates in `shared` database mode: one server,
//! one database and role per tenant with its own password, CONNECT revoked from PUBLIC and a
//! connection limit. The server is attached to each such tenant's network and to no other.

use crate::{
    desired::{HostConfig, Instance, instance::shared_db_host},
    runtime::{
        Runtime, RuntimeError,
        host_net::{self, HostContainer},
        labels, spec,
    },
    store::{Layout, atomic},
};
use std::{collections::BTreeMap, time::Duration};

const SUPERUSER_SECRET: &str = "postgres_password";

#[derive(Debug, thiserror::Error)]
pub enum SharedDbError {
    #[error("tenant {tenant}: shared database is not configured on this host")]
    NotConfigured { tenant: String },
    #[error("shared database server: {0}")]
    Runtime(#[from] RuntimeError),
    #[error("shared database server: cannot write {path}: {source}")]
    Files {
        path: String,
        source: std::io::Error,
    },
    #[error("shared database server did not become ready within 60 s")]
    NotReady,
    #[error("tenant {tenant}: shared database command failed: {output}")]
    Sql { tenant: String, output: String },
}

/// The names of berth before keyed names: `t_<tenant>` (renamed on the tenant's next ensure).
fn legacy_role(tenant: &str) -> String {
    format!("t_{}", tenant.replace('-', "_"))
}

/// Makes the key of role and database names once (CSPRNG, 0600); sets it in `host`.
pub fn ensure_name_key(host: &mut HostConfig) -> Result<(), SharedDbError> {
    let path = Layout::new(host.state_dir.clone())
        .host_secrets()
        .join("db_name_key");
    let ferr = |source| SharedDbError::Files {
        path: path.display().to_string(),
        source,
    };
    if !path.exists() {
        if let Some(dir) = path.parent() {
            atomic::create_dir(dir, 0o700).map_err(ferr)?;
        }
        let key = crate::desired::secret::generate(32, Default::default())
            .map_err(|e| ferr(std::io::Error::other(e)))?;
        atomic::write(&path, key.as_bytes(), 0o600).map_err(ferr)?;
    }
    let key = std::fs::read_to_string(&path).map_err(ferr)?;
    host.db_name_key = Some(key.trim().to_string());
    Ok(())
}

/// Starts the server if needed, attaches it to the tenant's network, and creates or updates
/// the tenant's role and database. Every statement is safe to repeat.
pub async fn ensure(
    rt: &dyn Runtime,
    host: &HostConfig,
    layout: &Layout,
    inst: &Instance,
) -> Result<(), SharedDbError> {
    let cfg = host
        .shared_database
        .as_ref()
        .ok_or_else(|| SharedDbError::NotConfigured {
            tenant: inst.tenant.clone(),
        })?;
    let server = ensure_server(rt, host, layout, cfg, &POSTGRES).await?;
    rt.connect_network(
        &spec::network_name(&host.namespace, &inst.tenant),
        &server,
        &shared_db_host(&host.namespace),
    )
    .await?;
    let db = inst
        .database
        .as_ref()
        .ok_or_else(|| SharedDbError::NotConfigured {
            tenant: inst.tenant.clone(),
        })?;
    let password = std::fs::read_to_string(layout.secret(&inst.tenant, &db.password_secret))
        .map_err(|source| SharedDbError::Files {
            path: db.password_secret.clone(),
            source,
        })?;
    let r = crate::desired::instance::shared_db_name(host, &inst.tenant);
    let old = legacy_role(&inst.tenant);
    // A database of the old naming is renamed (its sessions ended first), never made anew.
    let sql = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{old}' AND EXISTS (SELECT FROM pg_database WHERE datname = '{old}') AND NOT EXISTS (SELECT FROM pg_database WHERE datname = '{r}');\n\
         SELECT 'ALTER DATABASE {old} RENAME TO {r}' WHERE EXISTS (SELECT FROM pg_database WHERE datname = '{old}') AND NOT EXISTS (SELECT FROM pg_database WHERE datname = '{r}')\\gexec\n\
         SELECT 'ALTER ROLE {old} RENAME TO {r}' WHERE EXISTS (SELECT FROM pg_roles WHERE rolname = '{old}') AND NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{r}')\\gexec\n\
         REVOKE CONNECT, TEMPORARY ON DATABASE postgres, template1 FROM PUBLIC;\n\
         DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{r}') THEN CREATE ROLE {r} LOGIN; END IF; END $$;\n\
         ALTER ROLE {r} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '{pw}' CONNECTION LIMIT {limit};\n\
         SELECT 'CREATE DATABASE {r} OWNER {r}' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{r}')\\gexec\n\
         REVOKE ALL ON DATABASE {r} FROM PUBLIC;\n\
         GRANT CONNECT, TEMPORARY ON DATABASE {r} TO {r};\n",
        pw = password.trim(),
        limit = cfg.connection_limit,
    );
    psql(rt, &server, &inst.tenant, "postgres", sql).await?;
    psql(rt, &server, &inst.tenant, &r, reown_sql(&r)).await
}

/// Gives the tenant's role back everything in its database that another role owns: schemas,
/// tables, views, sequences, routines and types; drops event triggers (only a superuser makes
/// them, so any there came in through a restore that loaded a dump as the superuser, and they
/// would fire as the superuser on the statements below). Restores before berth loaded dumps as
/// the tenant left objects (a tenant's `SECURITY DEFINER` functions among them) owned by
/// `postgres`. This runs as the superuser inside a database the tenant owns, so nothing of the
/// tenant's may be found by name: the search path is the catalog's alone, every operator and
/// function is the catalog's (`OPERATOR(pg_catalog.<>)`, `pg_catalog.format`), object names
/// come from the catalog, quoted by `%I` and the reg* output functions.
fn reown_sql(r: &str) -> String {
    let ne = "OPERATOR(pg_catalog.<>)";
    let user_ns = "n.nspname OPERATOR(pg_catalog.!~~) 'pg\\_%' AND n.nspname OPERATOR(pg_catalog.<>) 'information_schema'";
    let not_r = |col: &str| format!("{col} {ne} '{r}'::pg_catalog.regrole");
    format!(
        "SET search_path = pg_catalog, pg_temp;\n\
         DO $$ DECLARE o record; BEGIN\n\
         FOR o IN SELECT evtname FROM pg_catalog.pg_event_trigger LOOP\n\
           EXECUTE pg_catalog.format('DROP EVENT TRIGGER %I', o.evtname); END LOOP;\n\
         FOR o IN SELECT n.nspname FROM pg_catalog.pg_namespace n WHERE {user_ns} AND {ns_owner}\n\
           AND n.nspowner {ne} 'pg_database_owner'::pg_catalog.regrole LOOP\n\
           EXECUTE pg_catalog.format('ALTER SCHEMA %I OWNER TO {r}', o.nspname); END LOOP;\n\
         FOR o IN SELECT c.oid::pg_catalog.regclass AS c FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace\n\
           WHERE {user_ns} AND {rel_owner} AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')\n\
           AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass\n\
             AND d.objid OPERATOR(pg_catalog.=) c.oid AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass\n\
             AND d.deptype IN ('a', 'i')) LOOP\n\
           IF (SELECT relkind FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) o.c) OPERATOR(pg_catalog.=) 'c' THEN\n\
             EXECUTE pg_catalog.format('ALTER TYPE %s OWNER TO {r}', o.c);\n\
           ELSE EXECUTE pg_catalog.format('ALTER TABLE %s OWNER TO {r}', o.c); END IF; END LOOP;\n\
         FOR o IN SELECT p.oid::pg_catalog.regprocedure AS p FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace\n\
           WHERE {user_ns} AND {proc_owner} LOOP\n\
           EXECUTE pg_catalog.format('ALTER ROUTINE %s OWNER TO {r}', o.p); END LOOP;\n\
         FOR o IN SELECT t.oid::pg_catalog.regtype AS t FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) t.typnamespace\n\
           WHERE {user_ns} AND {type_owner} AND t.typtype IN ('d', 'e', 'r') LOOP\n\
           EXECUTE pg_catalog.format('ALTER TYPE %s OWNER TO {r}', o.t); END LOOP;\n\
         FOR o IN SELECT oid FROM pg_catalog.pg_largeobject_metadata WHERE {lo_owner} LOOP\n\
           EXECUTE pg_catalog.format('ALTER LARGE OBJECT %s OWNER TO {r}', o.oid); END LOOP;\n\
         END $$;\n",
        ns_owner = not_r("n.nspowner"),
        rel_owner = not_r("c.relowner"),
        proc_owner = not_r("p.proowner"),
        type_owner = not_r("t.typowner"),
        lo_owner = not_r("lomowner"),
    )
}

/// Drops the tenant's database and role (purge). No server, nothing to drop.
pub async fn drop_tenant(
    rt: &dyn Runtime,
    host: &HostConfig,
    tenant: &str,
) -> Result<(), SharedDbError> {
    let server = spec::container_name(
        &host.namespace,
        labels::HOST_TENANT,
        labels::POSTGRES_SERVICE,
    );
    let inv = rt.inventory(&host.namespace).await?;
    if host.shared_database.is_none() || !inv.containers.iter().any(|c| c.name == server) {
        return Ok(());
    }
    let r = crate::desired::instance::shared_db_name(host, tenant);
    let old = legacy_role(tenant);
    psql(
        rt,
        &server,
        tenant,
        "postgres",
        format!(
            "DROP DATABASE IF EXISTS {r} WITH (FORCE);\nDROP ROLE IF EXISTS {r};\n\
             DROP DATABASE IF EXISTS {old} WITH (FORCE);\nDROP ROLE IF EXISTS {old};\n"
        ),
    )
    .await
}

/// Stops and removes the server's container once no desired tenant uses it, so it holds no
/// memory (its volume keeps every database; the next shared tenant starts it again).
/// Kept while a purge may still need to drop a database, or a frozen tenant of unknown
/// template may still be using it.
pub async fn retire_if_unused(
    rt: &dyn Runtime,
    host: &HostConfig,
    desired: &crate::desired::Desired,
    inv: &crate::runtime::Inventory,
    purging: bool,
    engine: crate::spec::template::DatabaseEngine,
) -> Result<bool, SharedDbError> {
    use crate::spec::template::DatabaseMode;
    let (_, service, _) = crate::desired::instance::shared_server(engine, &host.namespace);
    let used = desired
        .instances
        .values()
        .chain(desired.last_valid.values())
        .any(|i| {
            i.database.as_ref().is_some_and(|d| {
                d.mode == DatabaseMode::Shared
                    && crate::desired::instance::shared_server(d.engine, "").1 == service
            })
        });
    let unknown = desired
        .frozen
        .keys()
        .any(|t| !desired.last_valid.contains_key(t));
    if used || unknown || purging {
        return Ok(false);
    }
    let server = spec::container_name(&host.namespace, labels::HOST_TENANT, service);
    if !inv.containers.iter().any(|c| c.name == server) {
        return Ok(false);
    }
    rt.stop_container(&server, Duration::from_secs(30)).await?;
    rt.remove_container(&server).await?;
    tracing::info!("shared database server stopped: no tenant uses it");
    Ok(true)
}

/// Runs `sql` as the superuser in `database`.
async fn psql(
    rt: &dyn Runtime,
    server: &str,
    tenant: &str,
    database: &str,
    sql: String,
) -> Result<(), SharedDbError> {
    // SQL (and the password in it) goes through stdin, never argv: argv shows in `ps` and events.
    let out = rt
        .exec(
            server,
            &[
                "psql",
                "-v",
                "ON_ERROR_STOP=1",
                "-q",
                "-h",
                "/var/run/postgresql",
                "-U",
                "postgres",
                "-d",
                database,
                "-f",
                "-",
            ],
            Some(sql.into_bytes()),
        )
        .await?;
    if out.exit_code != 0 {
        return Err(SharedDbError::Sql {
            tenant: tenant.into(),
            output: out.output.trim().to_string(),
        });
    }
    Ok(())
}

/// What differs between shared servers of different engines.
pub(super) struct Kind {
    /// Container `<ns>-_host-<service>`, volume `<service>-data`.
    pub service: &'static str,
    /// The superuser's password under the host secrets (a 999-owned copy is mounted).
    pub secret: &'static str,
    /// The server's container, given (namespace, name, network, volume, secret copy, cfg).
    pub spec: fn(
        &str,
        &str,
        &str,
        &str,
        &str,
        &crate::desired::host::SharedDatabase,
    ) -> spec::ContainerSpec,
    /// A command that succeeds once the server accepts connections.
    pub ready: &'static [&'static str],
}

const POSTGRES: Kind = Kind {
    service: labels::POSTGRES_SERVICE,
    secret: SUPERUSER_SECRET,
    spec: server_spec,
    ready: &["pg_isready", "-q", "-h", "/var/run/postgresql"],
};

/// Creates (network, volume, superuser secret, container) and starts the shared server of
/// `kind` if needed, and waits until it accepts connections; its container name.
pub(super) async fn ensure_server(
    rt: &dyn Runtime,
    host: &HostConfig,
    layout: &Layout,
    cfg: &crate::desired::host::SharedDatabase,
    kind: &Kind,
) -> Result<String, SharedDbError> {
    let ns = &host.namespace;
    let name = spec::container_name(ns, labels::HOST_TENANT, kind.service);
    let inv = rt.inventory(ns).await?;
    let existing = inv.containers.iter().find(|c| c.name == name);
    if existing.is_none() {
        let dir = layout.host_secrets();
        let ferr = |source| SharedDbError::Files {
            path: dir.display().to_string(),
            source,
        };
        atomic::create_dir(&dir, 0o700).map_err(ferr)?;
        let secret = dir.join(kind.secret);
        if !secret.exists() {
            let pw = crate::desired::secret::generate(32, Default::default())
                .map_err(|e| ferr(std::io::Error::other(e)))?;
            atomic::write(&secret, pw.as_bytes(), 0o600).map_err(ferr)?;
        }
        let copy = dir.join(format!("{}.999", kind.secret));
        let pw = std::fs::read(&secret).map_err(ferr)?;
        atomic::write_owned(&copy, &pw, 0o400, (999, 999)).map_err(ferr)?;
        let labels = spec::owner_labels(ns, labels::HOST_TENANT);
        let net = crate::runtime::host_net::ensure(rt, host).await?;
        let vol = spec::volume_name(ns, labels::HOST_TENANT, &format!("{}-data", kind.service));
        rt.create_volume(&spec::VolumeSpec {
            device: None,
            name: vol.clone(),
            labels: labels.clone(),
        })
        .await?;
        rt.create_container(&(kind.spec)(
            ns,
            &name,
            &net,
            &vol,
            &copy.display().to_string(),
            cfg,
        ))
        .await?;
    }
    if existing.is_none_or(|c| c.status != crate::runtime::RunStatus::Running) {
        rt.start_container(&name).await?;
    }
    for _ in 0..120 {
        let out = rt.exec(&name, kind.ready, None).await;
        if out.is_ok_and(|o| o.exit_code == 0) {
            return Ok(name);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(SharedDbError::NotReady)
}

/// What a shared server's container has whatever its engine: owned by the host, on the
/// host's network with `alias`, the data volume at `data` and the superuser's password file at
/// `secret_at`, limits from `cfg`, every capability dropped, no new privileges, a read-only
/// root filesystem with a `/tmp` tmpfs, never published.
pub(super) struct ServerBase<'a> {
    pub service: &'a str,
    pub alias: String,
    pub data: &'a str,
    pub secret_at: &'a str,
}

pub(super) fn server_base(
    (ns, name, net, vol, secret): (&str, &str, &str, &str, &str),
    cfg: &crate::desired::host::SharedDatabase,
    b: ServerBase<'_>,
) -> spec::ContainerSpec {
    let mount = |kind, source: &str, target: &str, read_only| spec::Mount {
        kind,
        source: source.into(),
        target: target.into(),
        read_only,
    };
    spec::ContainerSpec {
        name: name.into(),
        network: net.into(),
        mounts: vec![
            mount(spec::MountKind::Volume, vol, b.data, false),
            mount(spec::MountKind::File, secret, b.secret_at, true),
        ],
        tmpfs: BTreeMap::from([("/tmp".into(), "rw,noexec,nosuid,size=64m".into())]),
        ..host_net::container(HostContainer {
            ns,
            service: b.service,
            image: &cfg.image,
            alias: b.alias,
            memory: cfg.memory,
            pids_limit: 1024,
        })
    }
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
        service: labels::POSTGRES_SERVICE,
        alias: crate::desired::instance::shared_db_host(ns),
        data: "/var/lib/postgresql/data",
        secret_at: "/run/secrets/postgres_password",
    };
    let mut c = server_base((ns, name, net, vol, secret), cfg, base);
    c.env = vec![
        "POSTGRES_USER=postgres".into(),
        "POSTGRES_PASSWORD_FILE=/run/secrets/postgres_password".into(),
    ];
    c.cmd = Some(vec!["-c".into(), "max_connections=500".into()]);
    c.user = Some("999:999".into());
    c.tmpfs.insert(
        "/var/run/postgresql".into(),
        "rw,nosuid,size=1m,uid=999,gid=999".into(),
    );
    c
}
