//! What goes into and comes out of a backup, through `exec` in the tenant's own containers:
//! the database engine's own dump and load (`engine`), `tar` for other volumes.

use super::{BackupError, engine};
use crate::{
    desired::Instance,
    runtime::{Runtime, spec},
    spec::template::DatabaseMode,
    store::Layout,
};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt};

/// What an exec said: its exit code checked, its messages kept for the error.
pub(super) fn checked(
    out: crate::runtime::ExecOutput,
    tenant: &str,
    step: &str,
) -> Result<(), BackupError> {
    if out.exit_code != 0 {
        return Err(BackupError::Command {
            tenant: tenant.into(),
            step: step.into(),
            output: out.output.trim().chars().take(2000).collect(),
        });
    }
    Ok(())
}

/// Runs `cmd` in `container` with its stdout streamed into the new file `to` (0600).
async fn run_to(
    rt: &dyn Runtime,
    (container, tenant, step): (&str, &str, &str),
    cmd: &[&str],
    stdin: Option<Vec<u8>>,
    to: &Path,
    room: &super::room::Room,
) -> Result<(), BackupError> {
    let f = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .await
        .map_err(super::io(to))?;
    let mut f = super::room::Counted { inner: f, room };
    let out = rt.exec_out(container, cmd, stdin, &mut f).await;
    if let Some(full) = room.refused() {
        return Err(full);
    }
    checked(out?, tenant, step)
}

/// Runs `cmd` in `container` with `src` streamed to its stdin.
pub(super) async fn run_from(
    rt: &dyn Runtime,
    (container, tenant, step): (&str, &str, &str),
    cmd: &[&str],
    src: &mut (dyn AsyncRead + Unpin + Send),
) -> Result<(), BackupError> {
    let out = rt.exec_in(container, cmd, src).await?;
    checked(out, tenant, step)
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The tenant's database password as the first line of stdin, for a connection that asks for
/// it there (a shared server holds no tenant's secret file); read from the tenant's own secret.
pub(super) fn password_line(
    layout: &Layout,
    inst: &Instance,
    c: &engine::Conn,
) -> Result<Option<Vec<u8>>, BackupError> {
    let Some(db) = inst.database.as_ref().filter(|_| c.password_stdin) else {
        return Ok(None);
    };
    let path = layout.secret(&inst.tenant, &db.password_secret);
    let pw = std::fs::read_to_string(&path).map_err(super::io(&path))?;
    Ok(Some(format!("{}\n", pw.trim()).into_bytes()))
}

/// The engine's consistent dump of the tenant's database, made as the tenant's own database
/// user and streamed into `to`; false without a database.
pub async fn database(
    rt: &dyn Runtime,
    layout: &Layout,
    ns: &str,
    inst: &Instance,
    to: &Path,
    room: &super::room::Room,
) -> Result<bool, BackupError> {
    let Some((engine, c)) = engine::conn(ns, inst) else {
        return Ok(false);
    };
    let cmd = engine.dump(&c);
    let at = (
        c.container.as_str(),
        inst.tenant.as_str(),
        engine.dump_tool(),
    );
    let stdin = password_line(layout, inst, &c)?;
    run_to(rt, at, &strs(&cmd), stdin, to, room).await?;
    Ok(true)
}

/// What a restore has made ready of the tenant's database before anything is switched.
pub enum DbStage {
    /// No database.
    None,
    /// MariaDB/MySQL: loaded beside the live database (`staged.rs`), switched in by renames.
    Staged(Box<engine::Staging>),
    /// Loaded in place at the switch: PostgreSQL (its load is one transaction, so a failed
    /// one changes nothing), or a MariaDB database with views, triggers, routines or events.
    InPlace,
}

/// Makes the dump in the file `dump` ready to replace the tenant's database, changing nothing
/// the tenant uses; always as the tenant's own database user (a dump is tenant content: it
/// never runs with more privilege than the tenant has).
pub async fn stage_database(
    rt: &dyn Runtime,
    layout: &Layout,
    ns: &str,
    inst: &Instance,
    dump: &Path,
) -> Result<DbStage, BackupError> {
    let Some((engine, c)) = engine::conn(ns, inst) else {
        return Ok(DbStage::None);
    };
    let Some(st) = engine.staging(&c) else {
        return Ok(DbStage::InPlace);
    };
    match super::staged::stage(rt, layout, inst, (engine, &c), &st, dump).await? {
        super::staged::Staged::Ready => Ok(DbStage::Staged(Box::new(st))),
        super::staged::Staged::InPlace(why) => {
            tracing::warn!(tenant = inst.tenant, why, "the dump will load in place");
            Ok(DbStage::InPlace)
        }
    }
}

/// Puts what `stage_database` made ready in place of the tenant's database.
pub async fn switch_database(
    rt: &dyn Runtime,
    layout: &Layout,
    ns: &str,
    inst: &Instance,
    (stage, dump): (&DbStage, &Path),
) -> Result<(), BackupError> {
    let Some((engine, c)) = engine::conn(ns, inst) else {
        return Ok(());
    };
    match stage {
        DbStage::None => Ok(()),
        DbStage::Staged(st) => super::staged::switch(rt, layout, inst, &c, st).await,
        DbStage::InPlace => {
            load(rt, layout, inst, (engine, &c), engine.load_prefix(&c), dump).await
        }
    }
}

/// Drops what `stage_database` made (best effort: a restore that did not switch).
pub async fn discard_database(
    rt: &dyn Runtime,
    layout: &Layout,
    ns: &str,
    inst: &Instance,
    stage: &DbStage,
) {
    if let (DbStage::Staged(st), Some((_, c))) = (stage, engine::conn(ns, inst)) {
        let _ = super::staged::discard(rt, layout, inst, &c, st).await;
    }
}

/// Streams `prefix` and then the dump, line by line (the engine may rewrite a line; the dump
/// is never held whole), into the engine's load as the tenant's user.
pub(super) async fn load(
    rt: &dyn Runtime,
    layout: &Layout,
    inst: &Instance,
    (engine, c): (&'static dyn engine::Engine, &engine::Conn),
    load_prefix: Vec<u8>,
    dump: &Path,
) -> Result<(), BackupError> {
    let file = tokio::fs::File::open(dump).await.map_err(super::io(dump))?;
    let (reader, mut writer) = tokio::io::duplex(256 * 1024);
    let mut prefix = password_line(layout, inst, c)?.unwrap_or_default();
    prefix.extend(load_prefix);
    let feed = async move {
        writer.write_all(&prefix).await?;
        feed_lines(engine, tokio::io::BufReader::new(file), &mut writer).await?;
        writer.shutdown().await
    };
    let cmd = engine.load(c);
    let step = format!("loading the {} dump", engine.dump_tool());
    let at = (c.container.as_str(), inst.tenant.as_str(), step.as_str());
    let args = strs(&cmd);
    // The reader goes with the load: a load that ends early closes the pipe, so the feed
    // stops with an error instead of waiting for room that never comes.
    let load = async move {
        let mut reader = reader;
        run_from(rt, at, &args, &mut reader).await
    };
    let (fed, loaded) = tokio::join!(feed, load);
    loaded?;
    fed.map_err(super::io(dump))
}

/// Lines longer than this (a row of a large blob) are passed on in pieces, as they are, so
/// no line is held whole; only lines that fit may be rewritten (definers sit in short DDL).
const MAX_LINE: usize = 1 << 20;

/// Copies `src` to `dst` line by line, each whole line of at most `MAX_LINE` bytes through the
/// engine's rewrite.
async fn feed_lines(
    engine: &dyn engine::Engine,
    mut src: impl AsyncBufRead + Unpin,
    dst: &mut (impl AsyncWrite + Unpin),
) -> std::io::Result<()> {
    let mut line = Vec::new();
    let mut long = false;
    let mut rewriter = engine.rewriter();
    loop {
        let buf = src.fill_buf().await?;
        if buf.is_empty() {
            break;
        }
        let room = MAX_LINE - line.len();
        let (n, end) = match buf.iter().take(room).position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len().min(room), false),
        };
        line.extend_from_slice(&buf[..n]);
        src.consume(n);
        if end || line.len() >= MAX_LINE {
            match rewriter.as_mut() {
                Some(r) => dst.write_all(&r.line(&line, end && !long)).await?,
                None => dst.write_all(&line).await?,
            }
            long = !end;
            line.clear();
        }
    }
    match rewriter.as_mut() {
        Some(r) => dst.write_all(&r.line(&line, !long)).await,
        None => dst.write_all(&line).await,
    }
}

/// The service container and path through which a volume is read and written. Volumes of a
/// sidecar database service are covered by the dump and skipped.
pub(super) fn volume_mounts(ns: &str, inst: &Instance) -> Vec<(String, String, String)> {
    let db_service = inst
        .database
        .as_ref()
        .filter(|d| d.mode == DatabaseMode::Sidecar)
        .map(|d| d.host.clone());
    let mut seen = std::collections::BTreeSet::new();
    let mut out = vec![];
    for svc in &inst.services {
        if Some(&svc.name) == db_service.as_ref() {
            continue;
        }
        for m in &svc.volumes {
            if seen.insert(m.volume.clone()) {
                out.push((
                    m.volume.clone(),
                    spec::container_name(ns, &inst.tenant, &svc.name),
                    m.target.clone(),
                ));
            }
        }
    }
    out
}

/// Each volume's tar stream, spooled into `dir/volume-<n>.tar`; (volume, file) pairs.
pub async fn volumes(
    rt: &dyn Runtime,
    ns: &str,
    inst: &Instance,
    dir: &Path,
    room: &super::room::Room,
) -> Result<Vec<(String, PathBuf)>, BackupError> {
    let mut out = vec![];
    for (n, (volume, container, target)) in volume_mounts(ns, inst).into_iter().enumerate() {
        // A restore's staging directory, should one be left, is not the tenant's data.
        let exclude = format!("--exclude=./{STAGING}");
        let aside = format!("--exclude=./{SET_ASIDE}");
        let cmd = ["tar", "-c", "-f", "-", "-C", &target, &exclude, &aside, "."];
        let step = format!("tar of {volume}");
        let to = dir.join(format!("volume-{n}.tar"));
        run_to(rt, (&container, &inst.tenant, &step), &cmd, None, &to, room).await?;
        out.push((volume, to));
    }
    Ok(out)
}

/// Where a restore (`replace.rs`) unpacks a volume's restored content and sets the old
/// content aside: never part of a backup.
const STAGING: &str = ".berth-restore";
const SET_ASIDE: &str = ".berth-old";

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn dump_lines_are_rewritten_whole_and_a_line_past_the_limit_passes_in_pieces() {
        let engine = super::engine::of(crate::spec::template::DatabaseEngine::Mariadb);
        let long = format!(
            "INSERT DEFINER=`x`@`%` {}\n",
            "a".repeat(super::MAX_LINE * 2 + 5)
        );
        let input = format!("/*!50017 DEFINER=`u`@`%`*/ x\n{long}tail without newline");
        let mut out = Vec::new();
        super::feed_lines(engine, input.as_bytes(), &mut out)
            .await
            .unwrap();
        let want = format!("/*!50017 */ x\n{long}tail without newline");
        assert_eq!(out.len(), want.len());
        assert!(
            out == want.as_bytes(),
            "a long line is passed as it is, the short one rewritten"
        );
    }
}
