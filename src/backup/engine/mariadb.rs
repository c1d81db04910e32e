//! MariaDB and MySQL: `mariadb-dump`/`mysqldump --single-transaction` (a consistent InnoDB
//! snapshot with routines, triggers and events) and the client fed a script that drops and
//! recreates the tenant's database before loading, both as the tenant's own user (whose grants
//! on its database include dropping and creating it; nothing global is needed), on a sidecar
//! and on the shared server alike. Definers leave the DDL (`definers.rs`): the tenant becomes
//! the definer of what it loads.

use super::{Conn, Engine, with_password};

pub struct MariaDb {
    dump: &'static str,
    client: &'static str,
    /// The client refuses its own commands that reach the file system or a shell (`system`,
    /// `source`, `tee`): a dump is tenant content. MariaDB ≥ 10.11.8 has it (and its dumps
    /// turn it on themselves); MySQL's client has no such switch.
    sandbox: bool,
}

pub const MARIADB: MariaDb = MariaDb {
    dump: "mariadb-dump",
    client: "mariadb",
    sandbox: true,
};
/// MySQL's images ship only the `mysql*` names. Never run here: Debian 12 packages no MySQL
/// server, so no test has loaded or dumped a real MySQL database; these command lines are
/// checked only as text. The shipped templates use MariaDB.
pub const MYSQL: MariaDb = MariaDb {
    dump: "mysqldump",
    client: "mysql",
    sandbox: false,
};

fn conn_args(c: &Conn) -> Vec<String> {
    let mut v: Vec<String> = match c.socket {
        true => vec![],
        false => [
            "--protocol=tcp",
            "-h",
            "127.0.0.1",
            "-P",
            &c.port.to_string(),
        ]
        .map(String::from)
        .into(),
    };
    v.extend([
        "-u".into(),
        c.user.clone(),
        "--default-character-set=utf8mb4".into(),
    ]);
    v
}

/// `name` as a quoted identifier.
fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

impl Engine for MariaDb {
    fn dump_tool(&self) -> &'static str {
        self.dump
    }

    fn dump(&self, c: &Conn) -> Vec<String> {
        let mut cmd: Vec<String> = vec![self.dump.into()];
        cmd.extend(conn_args(c));
        cmd.extend(
            [
                "--single-transaction",
                "--routines",
                "--triggers",
                "--events",
                "--no-tablespaces",
                "--hex-blob",
            ]
            .map(String::from),
        );
        cmd.push(c.database.clone());
        with_password("MYSQL_PWD", c, cmd)
    }

    fn load(&self, c: &Conn) -> Vec<String> {
        let mut cmd: Vec<String> = vec![self.client.into()];
        cmd.extend(conn_args(c));
        cmd.push("--binary-mode".into());
        if self.sandbox {
            cmd.push("--sandbox".into());
        }
        with_password("MYSQL_PWD", c, cmd)
    }

    fn load_prefix(&self, c: &Conn) -> Vec<u8> {
        let db = ident(&c.database);
        format!("DROP DATABASE IF EXISTS {db};\nCREATE DATABASE {db} CHARACTER SET utf8mb4;\nUSE {db};\n")
            .into_bytes()
    }

    fn rewriter(&self) -> Option<Box<dyn super::Rewriter>> {
        Some(Box::new(super::definers::Definers::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_empties_the_tenants_database_first_and_quotes_its_name() {
        let c = Conn {
            container: "c".into(),
            user: "u".into(),
            database: "wp`x".into(),
            password_file: None,
            port: 3306,
            socket: false,
            password_stdin: false,
        };
        let v = String::from_utf8(MARIADB.load_prefix(&c)).unwrap();
        assert!(v.starts_with("DROP DATABASE IF EXISTS `wp``x`;\nCREATE DATABASE `wp``x`"));
        assert!(v.ends_with("USE `wp``x`;\n"));
    }
}
