//! Database engines behind one interface: how a tenant's database is dumped, and how a dump is
//! loaded into a clean database. Each engine is one small file; the commands run in the
//! container that serves the database (the tenant's sidecar, or the host's shared server).

pub mod definers;
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
    /// Over the server's own socket, else over TCP to 127.0.0.1 inside the container.
    pub socket: bool,
    /// The password is not a file in the container (a shared server holds no tenant's
    /// secret): the caller writes it as the first line of the command's stdin.
    pub password_stdin: bool,
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
    /// What rewrites a dump's lines on their way into `load` (None: loaded as they are).
    /// Lines are streamed, never the dump.
    fn rewriter(&self) -> Option<Box<dyn Rewriter>> {
        None
    }
    /// How a dump is loaded beside the live database and switched in, for engines whose load
    /// is not one transaction (MariaDB/MySQL); None: `load` replaces it in place (PostgreSQL's
    /// load is one transaction, so a failed one changes nothing).
    fn staging(&self, _c: &Conn) -> Option<Staging> {
        None
    }
}

/// A staged restore's commands and statements (`staged.rs` runs them in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staging {
    /// The client as the tenant's user, reading statements on stdin, printing bare rows.
    pub query: Vec<String>,
    /// The client as the server's root, for `grant` (a sidecar: the server is the tenant's
    /// own); None where the tenant's user already holds the staging grants (the shared
    /// server's provisioning gives them).
    pub root: Option<Vec<String>>,
    /// Gives the tenant's user the staging and old databases (fixed text, run by root).
    pub grant: String,
    /// Prints the server's data directory (for the room check).
    pub datadir: String,
    /// Empties and creates the staging database.
    pub create: String,
    /// What the load is fed before the dump: into the staging database.
    pub load_prefix: Vec<u8>,
    /// Prints how many views, triggers, routines and events the live and staging databases
    /// hold: those cannot be renamed across databases.
    pub objects: String,
    /// Moves every live table aside and every staged table in, in one atomic RENAME TABLE,
    /// then drops what was moved aside and the emptied staging database.
    pub switch: String,
    /// Drops the staging and set-aside databases (left by a load that failed or a crash, or
    /// a load that goes in place instead).
    pub drop: String,
}

/// A dump's lines as they must be loaded, in order; state may run across lines.
pub trait Rewriter: Send {
    /// `line` (with its newline), or with `whole` false a piece of a line too long to hold:
    /// followed, never rewritten.
    fn line(&mut self, line: &[u8], whole: bool) -> Vec<u8>;
}

impl Rewriter for definers::Definers {
    fn line(&mut self, line: &[u8], whole: bool) -> Vec<u8> {
        definers::Definers::line(self, line, whole)
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
            password_stdin: false,
        },
        // The shared PostgreSQL server: the tenant's own role (which owns its database and
        // everything in it) over the local socket, never the superuser: a dump is tenant
        // content, and what it creates must be owned by, and run as, the tenant.
        DatabaseMode::Shared if db.engine == DatabaseEngine::Postgres => Conn {
            container: spec::container_name(ns, labels::HOST_TENANT, labels::POSTGRES_SERVICE),
            user: db.user.clone(),
            database: db.name.clone(),
            password_file: None,
            port: db.port,
            socket: true,
            password_stdin: false,
        },
        // The shared MariaDB server: the tenant's own user (privileges on its database only),
        // its password given on stdin, never root.
        DatabaseMode::Shared => Conn {
            container: spec::container_name(ns, labels::HOST_TENANT, labels::MARIADB_SERVICE),
            user: db.user.clone(),
            database: db.name.clone(),
            password_file: None,
            port: db.port,
            socket: true,
            password_stdin: true,
        },
    };
    Some((of(db.engine), c))
}

/// `sh -c` that exports the password as `var`, then runs `cmd`: read from its file in the
/// container, or (`password_stdin`) from the first line of stdin, which the tool then reads on
/// from where the line ended. The password never appears in an argument list (visible in
/// `ps`) or in the exec request.
fn with_password(var: &str, c: &Conn, cmd: Vec<String>) -> Vec<String> {
    if c.password_stdin {
        let mut v = vec![
            "sh".into(),
            "-c".into(),
            format!("IFS= read -r {var} && export {var} && exec \"$@\""),
            "sh".into(),
        ];
        v.extend(cmd);
        return v;
    }
    let Some(file) = c.password_file.as_deref() else {
        return cmd;
    };
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
            password_stdin: false,
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
        let c = Conn {
            password_file: Some(f.to_str().unwrap().into()),
            ..conn()
        };
        let cmd = with_password(
            "MYSQL_PWD",
            &c,
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

    #[test]
    fn a_password_on_the_first_line_of_stdin_leaves_the_rest_for_the_tool() {
        use std::io::Write;
        let c = Conn {
            password_stdin: true,
            password_file: None,
            ..conn()
        };
        let cmd = with_password(
            "MYSQL_PWD",
            &c,
            vec![
                "sh".into(),
                "-c".into(),
                "echo \"$MYSQL_PWD|$(cat)\"".into(),
            ],
        );
        let mut child = std::process::Command::new(&cmd[0])
            .args(&cmd[1..])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"p w\\x\nSELECT 1;\n")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "p w\\x|SELECT 1;\n");
    }
}
