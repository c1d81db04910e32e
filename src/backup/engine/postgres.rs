//! PostgreSQL: `pg_dump` (a snapshot, consistent while the app writes) and `psql` in one
//! transaction that first drops every schema of the database: a failed load changes nothing.
//! Both run as the tenant's own role (on a shared server) or the app's user (on a sidecar):
//! what a load creates is owned by, and runs as, that role. The dump is plain SQL; pg_dump ≥
//! 15.14 fences it with `\restrict`, so psql runs no client command a crafted object name
//! might smuggle into it.

use super::{Conn, Engine};

pub struct Postgres;

/// The server's own socket, which PostgreSQL images trust locally: no password needed.
fn socket_args(c: &Conn) -> Vec<String> {
    [
        "-h",
        "/var/run/postgresql",
        "-U",
        &c.user,
        "-d",
        &c.database,
    ]
    .map(String::from)
    .into()
}

/// Empties the database: every schema that is not the system's goes, `public` comes back as
/// PostgreSQL 15 creates it (owned by the database owner, usable by all).
const RESET: &str = "DO $$ DECLARE s text; BEGIN
  FOR s IN SELECT nspname FROM pg_namespace
           WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' LOOP
    EXECUTE format('DROP SCHEMA %I CASCADE', s);
  END LOOP;
  CREATE SCHEMA public AUTHORIZATION pg_database_owner;
  GRANT USAGE ON SCHEMA public TO PUBLIC;
END $$;
";

impl Engine for Postgres {
    fn dump_tool(&self) -> &'static str {
        "pg_dump"
    }

    fn dump(&self, c: &Conn) -> Vec<String> {
        // A lock the tenant holds on one of its tables fails the backup after two minutes
        // instead of keeping it (and the tenant's one operation) waiting for ever.
        let mut cmd: Vec<String> = [
            "pg_dump",
            "--clean",
            "--if-exists",
            "--no-owner",
            "--lock-wait-timeout=120s",
        ]
        .map(String::from)
        .into();
        // One role per tenant: a clone restores as another role, which old grants would name.
        cmd.push("--no-privileges".into());
        cmd.extend(socket_args(c));
        cmd
    }

    fn load(&self, c: &Conn) -> Vec<String> {
        let mut cmd: Vec<String> = [
            "psql",
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "--single-transaction",
        ]
        .map(String::from)
        .into();
        cmd.extend(socket_args(c));
        cmd.extend(["-f".into(), "-".into()]);
        cmd
    }

    fn load_prefix(&self, _: &Conn) -> Vec<u8> {
        RESET.as_bytes().to_vec()
    }
}
