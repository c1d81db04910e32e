//! MariaDB and MySQL: `mariadb-dump`/`mysqldump --single-transaction` (a consistent InnoDB
//! snapshot with routines, triggers and events) and the client fed a script that drops and
//! recreates the tenant's database before loading, as the tenant's own user (whose grants on
//! its database include dropping and creating it; nothing global is needed).

use super::{Conn, Engine, with_password};

pub struct MariaDb {
    dump: &'static str,
    client: &'static str,
}

pub const MARIADB: MariaDb = MariaDb {
    dump: "mariadb-dump",
    client: "mariadb",
};
/// MySQL's images ship only the `mysql*` names.
pub const MYSQL: MariaDb = MariaDb {
    dump: "mysqldump",
    client: "mysql",
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

/// Drops `DEFINER=user@host` clauses: a clone's user may have another name, and naming
/// another definer needs a global privilege the tenant's user must not have.
fn strip_definers(dump: &[u8]) -> Vec<u8> {
    let pat = b"DEFINER=";
    let mut out = Vec::with_capacity(dump.len());
    let mut i = 0;
    while i < dump.len() {
        if dump[i..].starts_with(pat) {
            let mut j = i + pat.len();
            // `user`@`host`, each part quoted with backticks (doubled inside) or bare.
            for part in 0..2 {
                if dump.get(j) == Some(&b'`') {
                    j += 1;
                    while j < dump.len() {
                        if dump[j] == b'`' && dump.get(j + 1) == Some(&b'`') {
                            j += 2;
                        } else if dump[j] == b'`' {
                            j += 1;
                            break;
                        } else {
                            j += 1;
                        }
                    }
                } else {
                    while j < dump.len() && !matches!(dump[j], b'@' | b' ' | b'*') {
                        j += 1;
                    }
                }
                if part == 0 && dump.get(j) == Some(&b'@') {
                    j += 1;
                } else {
                    break;
                }
            }
            i = j;
            continue;
        }
        out.push(dump[i]);
        i += 1;
    }
    out
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
        with_password("MYSQL_PWD", c.password_file.as_deref(), cmd)
    }

    fn load(&self, c: &Conn) -> Vec<String> {
        let mut cmd: Vec<String> = vec![self.client.into()];
        cmd.extend(conn_args(c));
        cmd.push("--binary-mode".into());
        with_password("MYSQL_PWD", c.password_file.as_deref(), cmd)
    }

    fn load_prefix(&self, c: &Conn) -> Vec<u8> {
        let db = ident(&c.database);
        format!("DROP DATABASE IF EXISTS {db};\nCREATE DATABASE {db} CHARACTER SET utf8mb4;\nUSE {db};\n")
            .into_bytes()
    }

    fn rewrite_line(&self, line: &[u8]) -> Option<Vec<u8>> {
        line.windows(8)
            .any(|w| w == b"DEFINER=")
            .then(|| strip_definers(line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definer_clauses_go_and_everything_else_stays() {
        let dump = b"/*!50013 DEFINER=`word``press`@`%` SQL SECURITY DEFINER */\nCREATE DEFINER=app@localhost TRIGGER t";
        let out = String::from_utf8(strip_definers(dump)).unwrap();
        assert_eq!(
            out, "/*!50013  SQL SECURITY DEFINER */\nCREATE  TRIGGER t",
            "{out}"
        );
    }

    #[test]
    fn an_unterminated_definer_at_the_end_of_a_dump_does_not_panic() {
        for d in [
            &b"DEFINER="[..],
            b"DEFINER=`ab",
            b"DEFINER=`a`@",
            b"DEFINER=`a`@`",
        ] {
            let _ = strip_definers(d);
        }
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
        };
        let v = String::from_utf8(MARIADB.load_prefix(&c)).unwrap();
        assert!(v.starts_with("DROP DATABASE IF EXISTS `wp``x`;\nCREATE DATABASE `wp``x`"));
        assert!(v.ends_with("USE `wp``x`;\n"));
        assert_eq!(MARIADB.rewrite_line(b"INSERT INTO t VALUES (1);\n"), None);
        assert_eq!(
            MARIADB
                .rewrite_line(b"/*!50017 DEFINER=`u`@`%`*/ x\n")
                .unwrap(),
            b"/*!50017 */ x\n"
        );
    }
}
