//! MariaDB and MySQL restores that never leave the tenant without a complete database. The
//! dump loads into a staging database beside the live one (`<db>_berth_new`, its grants given
//! by the sidecar's root or by the shared server's provisioning; the load itself runs as the
//! tenant's user), and only a complete load replaces the live database: one atomic
//! `RENAME TABLE` moves every live table to `<db>_berth_old` and every staged table in, then
//! the old copy goes. Room for the staged copy beside the live one is checked first. A load
//! that fails, or a disk that fills, leaves the live database exactly as it was. Views,
//! triggers, routines and events cannot be renamed across databases: a dump or database that
//! holds any is loaded in place instead, under the restore's journal and safety backup.

use super::{BackupError, dump, engine};
use crate::{desired::Instance, runtime::Runtime, store::Layout};
use std::path::Path;

/// How a staged load ended.
pub(super) enum Staged {
    /// The restored database waits beside the live one for `switch`.
    Ready,
    /// Nothing was changed; the dump must be loaded in place, for this reason.
    InPlace(String),
}

type Eng<'a> = (&'static dyn engine::Engine, &'a engine::Conn);

/// Loads `dump` beside the live database (see the module's text), changing nothing the
/// tenant uses; on an error the staging copy is dropped.
pub(super) async fn stage(
    rt: &dyn Runtime,
    layout: &Layout,
    inst: &Instance,
    (engine, c): Eng<'_>,
    st: &engine::Staging,
    dump: &Path,
) -> Result<Staged, BackupError> {
    let size = std::fs::metadata(dump).map_err(super::io(dump))?.len();
    let q = Client::new(rt, layout, inst, c, st);
    if let Some(root) = &st.root {
        let cmd = strs(root);
        let grant = rt.exec(&c.container, &cmd, Some(st.grant.clone().into_bytes()));
        if let Err(e) = checked(grant.await, &inst.tenant, "granting the staging database") {
            return Ok(Staged::InPlace(e.to_string()));
        }
    }
    // What an earlier restore cut short left (a staged copy, a set-aside one) goes before the
    // room is measured; the journal's safety backup holds what the tenant had.
    let drop_staging = || q.run(&st.drop, "dropping the staging database");
    if let Err(e) = drop_staging().await {
        return Ok(Staged::InPlace(e.to_string()));
    }
    room(&q, st, size).await?;
    if let Err(e) = q.run(&st.create, "creating the staging database").await {
        return Ok(Staged::InPlace(e.to_string()));
    }
    let prefix = st.load_prefix.clone();
    let loaded = dump::load(rt, layout, inst, (engine, c), prefix, dump).await;
    let objects = match loaded {
        Ok(()) => {
            q.run(&st.objects, "counting views, triggers, routines and events")
                .await
        }
        Err(e) => Err(e),
    };
    let objects = match objects {
        Ok(n) => n,
        Err(e) => {
            let _ = drop_staging().await;
            return Err(e);
        }
    };
    if objects.trim() != "0" {
        drop_staging().await?;
        return Ok(Staged::InPlace(format!(
            "{} views, triggers, routines or events cannot be renamed into place",
            objects.trim()
        )));
    }
    Ok(Staged::Ready)
}

/// Switches the staged database in: one atomic `RENAME TABLE` (its list checked whole before
/// it runs), then the old copy dropped.
pub(super) async fn switch(
    rt: &dyn Runtime,
    layout: &Layout,
    inst: &Instance,
    c: &engine::Conn,
    st: &engine::Staging,
) -> Result<(), BackupError> {
    let q = Client::new(rt, layout, inst, c, st);
    let r = q
        .run(&st.switch, "switching the restored database in")
        .await;
    if r.is_err() {
        // The rename failed whole (the live database is as it was) or the drops after it
        // failed (the restored tables are live): either way nothing staged is needed now.
        let _ = q.run(&st.drop, "dropping the staging database").await;
    }
    r.map(|_| ())
}

/// Drops the staging and set-aside databases.
pub(super) async fn discard(
    rt: &dyn Runtime,
    layout: &Layout,
    inst: &Instance,
    c: &engine::Conn,
    st: &engine::Staging,
) -> Result<(), BackupError> {
    let q = Client::new(rt, layout, inst, c, st);
    q.run(&st.drop, "dropping the staging database")
        .await
        .map(|_| ())
}

/// The database client as the tenant's user.
struct Client<'a> {
    rt: &'a dyn Runtime,
    layout: &'a Layout,
    inst: &'a Instance,
    c: &'a engine::Conn,
    cmd: &'a [String],
}

impl<'a> Client<'a> {
    fn new(
        rt: &'a dyn Runtime,
        layout: &'a Layout,
        inst: &'a Instance,
        c: &'a engine::Conn,
        st: &'a engine::Staging,
    ) -> Self {
        Client {
            rt,
            layout,
            inst,
            c,
            cmd: &st.query,
        }
    }

    /// Runs `sql`; its rows.
    async fn run(&self, sql: &str, step: &str) -> Result<String, BackupError> {
        let mut stdin = dump::password_line(self.layout, self.inst, self.c)?.unwrap_or_default();
        stdin.extend(sql.as_bytes());
        let cmd = strs(self.cmd);
        let out = self.rt.exec(&self.c.container, &cmd, Some(stdin)).await;
        checked(out, &self.inst.tenant, step)
    }
}

/// Refused before anything changes when the database's filesystem has less room than the
/// dump's size (about what the staged copy takes) and a tenth more.
async fn room(q: &Client<'_>, st: &engine::Staging, size: u64) -> Result<(), BackupError> {
    let (c, inst) = (q.c, q.inst);
    let dir = q
        .run(&st.datadir, "reading the database's data directory")
        .await?;
    let free = free_bytes(q.rt, &c.container, &inst.tenant, dir.trim()).await?;
    let place = match c.password_stdin {
        true => "on the shared database server's disk for the restored copy",
        false => "beside its current database (both are counted in its disk quota)",
    };
    enough(&inst.tenant, ("its database", place), size, free)
}

/// Whether `free` bytes hold a restored copy of about `size` bytes and a tenth more; if not,
/// why, with both figures.
pub(super) fn enough(
    tenant: &str,
    (what, place): (&str, &'static str),
    size: u64,
    free: u64,
) -> Result<(), BackupError> {
    let need = size + size / 10;
    if free >= need {
        return Ok(());
    }
    Err(BackupError::NoRoomToRestore {
        tenant: tenant.into(),
        what: what.into(),
        need: crate::spec::units::format_bytes(need),
        free: crate::spec::units::format_bytes(free),
        place,
    })
}

/// The bytes free to unprivileged writers on the filesystem holding `dir` in `container`.
pub(super) async fn free_bytes(
    rt: &dyn Runtime,
    container: &str,
    tenant: &str,
    dir: &str,
) -> Result<u64, BackupError> {
    let out = rt.exec(container, &["df", "-Pk", dir], None).await;
    let text = checked(out, tenant, "reading the free space")?;
    text.lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb.saturating_mul(1024))
        .ok_or_else(|| BackupError::Command {
            tenant: tenant.into(),
            step: "reading the free space".into(),
            output: text.chars().take(300).collect(),
        })
}

fn checked(
    out: Result<crate::runtime::ExecOutput, crate::runtime::RuntimeError>,
    tenant: &str,
    step: &str,
) -> Result<String, BackupError> {
    let out = out?;
    if out.exit_code != 0 {
        return Err(BackupError::Command {
            tenant: tenant.into(),
            step: step.into(),
            output: out.output.trim().chars().take(2000).collect(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
