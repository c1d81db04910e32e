//! Database engines behind one interface: how a tenant's database is dumped, and how a dump is
//! loaded into a clean database. Each engine is one small file; the commands run in the
//! container that serves the database (the tenant's sidecar, or the host's shared server).

mod mariadb;
mod postgres;

use crate::{
    desired::Instance,
    runtime::{labels, spec},
    spec::template::{DatabaseEngine, DatabaseMode},
};

/// Where and as whom a tenant's database is reached from inside its server's container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conn {
    pub container: String,
    pub user: String,
    pub database: String,
    /// Inside the container: the file holding `user`'s password (PostgreSQL trusts its local
    /// socket and does not read it).
    pub password_file: Option<String>,
    pub port: u16,
    /// Over the server's own socket (the shared servers' superusers exist only there), else
    /// over TCP to 127.0.0.1 inside the container.
    pub socket: bool,
}

/// One database engine's dump and load, as commands run in the server's container.
pub trait Engine: Send + Sync {
    /// The tool's name, for messages (`pg_dump`, `mariadb-dump`).
    fn dump_tool(&self) -> &'static str;
    /// A command that writes a consistent dump of the database to stdout while the app runs.
    fn dump(&self, c: &Conn) -> Vec<String>;
    /// A command that reads a dump on stdin into the database, after emptying it: nothing the
    /// database held before survives (tables created after the backup included).
    fn load(&self, c: &Conn) -> Vec<String>;
    /// What `load` is fed before the dump: the statements that empty the database.
    fn load_prefix(&self, c: &Conn) -> Vec<u8>;
    /// A dump line as it must be loaded (None: as it is). Lines are streamed, never the dump.
    fn rewrite_line(&self, _line: &[u8]) -> Option<Vec<u8>> {
        None
    }
}

/// The engine that speaks `e`'s protocol and tools.
pub fn of(e: DatabaseEngine) -> &'static dyn Engine {
    match e {
        DatabaseEngine::Postgres => &postgres::Postgres,
        DatabaseEngine::Mariadb => &mariadb::MARIADB,
        DatabaseEngine::Mysql => &mariadb::MYSQL,
    }
}

/// The tenant's database engine and how to reach it; None without a database.
pub fn conn(ns: &str, inst: &Instance) -> Option<(&'static dyn Engine, Conn)> {
    let db = inst.database.as_ref()?;
    let secret = format!("/run/secrets/{}", db.password_secret);
    let c = match db.mode {
        DatabaseMode::Sidecar => Conn {
            container: spec::container_name(ns, &inst.tenant, &db.host),
            user: db.user.clone(),
            database: db.name.clone(),
            password_file: Some(secret),
            port: db.port,
            socket: false,
        },
        // The shared PostgreSQL server: its superuser, over the local socket.
        DatabaseMode::Shared if db.engine == DatabaseEngine::Postgres => Conn {
            container: spec::container_name(ns, labels::HOST_TENANT, "postgres"),
            user: "postgres".into(),
            database: db.name.clone(),
            password_file: None,
            port: db.port,
            socket: true,
        },
        // The shared MariaDB server: root, which exists on its socket only.
        DatabaseMode::Shared => Conn {
            container: crate::reconcile::shared_mariadb::server_name(ns),
            user: "root".into(),
            database: db.name.clone(),
            password_file: Some(crate::reconcile::shared_mariadb::ROOT_SECRET_PATH.into()),
            port: db.port,
            socket: true,
        },
    };
    Some((of(db.engine), c))
}

/// `sh -c` that exports the password from its file as `var`, then runs `cmd`: the password
/// never appears in an argument list (visible in `ps`) or in the exec request.
fn with_password(var: &str, file: Option<&str>, cmd: Vec<String>) -> Vec<String> {
    let Some(file) = file else { return cmd };
    let mut v = vec![
        "sh".into(),
        "-c".into(),
        format!("{var}=\"$(cat \"$0\")\" && export {var} && exec \"$@\""),
        file.into(),
    ];
    v.extend(cmd);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Conn {
        Conn {
            container: "b-acme-db".into(),
            user: "wordpress".into(),
            database: "wordpress".into(),
            password_file: Some("/run/secrets/db_password".into()),
            port: 3306,
            socket: false,
        }
    }

    #[test]
    fn a_password_reaches_the_tool_from_its_file_never_from_the_command_line() {
        for e in [DatabaseEngine::Mariadb, DatabaseEngine::Mysql] {
            let e = of(e);
            for cmd in [e.dump(&conn()), e.load(&conn())] {
                assert!(cmd.iter().all(|a| !a.contains("secret-value")));
                assert_eq!(cmd[0], "sh", "{cmd:?}");
                assert_eq!(cmd[3], "/run/secrets/db_password");
            }
        }
    }

    #[test]
    fn the_password_wrapper_runs_the_tool_with_its_arguments_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cret").unwrap();
        let cmd = with_password(
            "MYSQL_PWD",
            Some(f.to_str().unwrap()),
            vec![
                "sh".into(),
                "-c".into(),
                "echo \"$MYSQL_PWD|$0\"".into(),
                "a b".into(),
            ],
        );
        let out = std::process::Command::new(&cmd[0])
            .args(&cmd[1..])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "s3cret|a b\n");
    }
}
