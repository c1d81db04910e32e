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

    fn staging(&self, c: &Conn) -> Option<super::Staging> {
        staging(self, c)
    }
}

/// `s` as a single-quoted SQL string.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `name` as a GRANT database pattern (`_` and `%` are wildcards there).
fn grant_ident(name: &str) -> String {
    ident(&name.replace('_', "\\_").replace('%', "\\%"))
}

fn staging(e: &MariaDb, c: &Conn) -> Option<super::Staging> {
    let (new, old) = crate::desired::instance::staging_db_names(&c.database)?;
    let live = &c.database;
    let mut query: Vec<String> = vec![e.client.into()];
    query.extend(conn_args(c));
    query.extend(["-N".into(), "-s".into()]);
    if e.sandbox {
        query.push("--sandbox".into());
    }
    // A sidecar's root, by the official images' password file variables; the shared
    // server's provisioning grants the staging databases itself.
    let root = (!c.password_stdin).then(|| {
        vec![
            "sh".into(),
            "-c".into(),
            "f=\"${MARIADB_ROOT_PASSWORD_FILE:-${MYSQL_ROOT_PASSWORD_FILE:-}}\"; \
             [ -n \"$f\" ] && [ -r \"$f\" ] || { echo 'no root password file' >&2; exit 3; }; \
             MYSQL_PWD=\"$(cat \"$f\")\" && export MYSQL_PWD && exec \"$0\" -uroot -N -s"
                .into(),
            e.client.into(),
        ]
    });
    let user = lit(&c.user);
    let grant = format!(
        "GRANT ALL PRIVILEGES ON {}.* TO {user}@'%';\nGRANT ALL PRIVILEGES ON {}.* TO {user}@'%';\n",
        grant_ident(&new),
        grant_ident(&old)
    );
    let schemas = format!("{}, {}", lit(live), lit(&new));
    let count = |table: &str, col: &str| {
        format!("(SELECT COUNT(*) FROM information_schema.{table} WHERE {col} IN ({schemas}))")
    };
    let objects = format!(
        "SELECT {} + {} + {} + {};\n",
        count("TRIGGERS", "TRIGGER_SCHEMA"),
        count("VIEWS", "TABLE_SCHEMA"),
        count("ROUTINES", "ROUTINE_SCHEMA"),
        count("EVENTS", "EVENT_SCHEMA")
    );
    // `schema`.`table` TO `schema2`.`table`, built inside the server from its own list.
    let pair = |from: &str, to: &str, ord: u8| {
        let q = |db: &str| lit(&format!("{}.`", ident(db)));
        format!(
            "SELECT {ord} AS o, CONCAT({}, REPLACE(TABLE_NAME, '`', '``'), '` TO ', {}, \
             REPLACE(TABLE_NAME, '`', '``'), '`') AS r FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = {} AND TABLE_TYPE NOT IN ('VIEW', 'SYSTEM VIEW', 'TEMPORARY')",
            q(from),
            q(to),
            lit(from)
        )
    };
    // The list is checked whole before it runs: a list cut short (past the packet or
    // GROUP_CONCAT limit) becomes a statement that does not parse, so nothing is renamed.
    let switch = format!(
        "{LOCK_WAIT}SET SESSION group_concat_max_len = 1073741824;\n\
         DROP DATABASE IF EXISTS {old_i};\nCREATE DATABASE {old_i} CHARACTER SET utf8mb4;\n\
         SELECT IF(COUNT(*) = 0, 'DO 0', \
         IF(IFNULL(LENGTH(GROUP_CONCAT(r ORDER BY o SEPARATOR ', ')), -1) = SUM(LENGTH(r)) + 2 * (COUNT(*) - 1), \
         CONCAT('RENAME TABLE ', GROUP_CONCAT(r ORDER BY o SEPARATOR ', ')), \
         'berth: the table list does not fit one statement')) \
         INTO @berth_switch FROM ({} UNION ALL {}) s;\n\
         PREPARE berth_switch FROM @berth_switch;\nEXECUTE berth_switch;\nDEALLOCATE PREPARE berth_switch;\n\
         DROP DATABASE {old_i};\nDROP DATABASE IF EXISTS {new_i};\n",
        pair(live, &old, 0),
        pair(&new, live, 1),
        old_i = ident(&old),
        new_i = ident(&new),
    );
    Some(super::Staging {
        query: with_password("MYSQL_PWD", c, query),
        root,
        grant,
        datadir: "SELECT @@datadir;\n".into(),
        create: format!(
            "{LOCK_WAIT}DROP DATABASE IF EXISTS {n};\nCREATE DATABASE {n} CHARACTER SET utf8mb4;\n",
            n = ident(&new)
        ),
        load_prefix: format!("USE {};\n", ident(&new)).into_bytes(),
        objects,
        switch,
        drop: format!(
            "{LOCK_WAIT}DROP DATABASE IF EXISTS {};\nDROP DATABASE IF EXISTS {};\n",
            ident(&new),
            ident(&old)
        ),
    })
}

/// A statement that waits on a lock the tenant's app holds (an idle open transaction) gives
/// up within a minute instead of the server's default day, so no restore holds one of the
/// host's turns for long.
const LOCK_WAIT: &str = "SET SESSION lock_wait_timeout = 60;\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn sidecar(database: &str) -> Conn {
        Conn {
            container: "c".into(),
            user: "wp'user".into(),
            database: database.into(),
            password_file: Some("/run/secrets/db_password".into()),
            port: 3306,
            socket: false,
            password_stdin: false,
        }
    }

    #[test]
    fn a_staged_restore_loads_beside_the_live_database_and_switches_every_table_at_once() {
        let st = MARIADB.staging(&sidecar("wp_db")).unwrap();
        assert_eq!(
            st.grant,
            "GRANT ALL PRIVILEGES ON `wp\\_db\\_berth\\_new`.* TO 'wp\\'user'@'%';\n\
             GRANT ALL PRIVILEGES ON `wp\\_db\\_berth\\_old`.* TO 'wp\\'user'@'%';\n"
        );
        assert!(st.root.is_some(), "a sidecar's root gives the grants");
        assert_eq!(st.load_prefix, b"USE `wp_db_berth_new`;\n");
        // One RENAME TABLE, live tables aside first, then the staged ones in.
        assert!(st.switch.contains("GROUP_CONCAT(r ORDER BY o"));
        assert!(st.switch.contains("SELECT 0 AS o, CONCAT('`wp_db`.`'"));
        assert!(st.switch.contains("'` TO ', '`wp_db_berth_old`.`'"));
        assert!(
            st.switch
                .contains("SELECT 1 AS o, CONCAT('`wp_db_berth_new`.`'")
        );
        assert!(
            st.switch
                .contains("PREPARE berth_switch FROM @berth_switch;")
        );
        assert!(st.switch.ends_with(
            "DROP DATABASE `wp_db_berth_old`;\nDROP DATABASE IF EXISTS `wp_db_berth_new`;\n"
        ));
        assert!(st.objects.contains("IN ('wp_db', 'wp_db_berth_new')"));
        assert!(st.query.iter().any(|a| a == "--sandbox"));

        // Names that need quoting stay quoted; a name too long for its staging copy loads
        // in place; the shared server's provisioning gives the grants there.
        let odd = MARIADB.staging(&sidecar("a`b'c")).unwrap();
        assert!(odd.create.contains("CREATE DATABASE `a``b'c_berth_new`"));
        assert!(odd.objects.contains("'a`b\\'c'"));
        assert!(MARIADB.staging(&sidecar(&"x".repeat(60))).is_none());
        let mut shared = sidecar("t_0123456789abcdef01234567");
        shared.password_stdin = true;
        assert!(MARIADB.staging(&shared).unwrap().root.is_none());
    }

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
