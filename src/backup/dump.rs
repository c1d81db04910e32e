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
fn checked(out: crate::runtime::ExecOutput, tenant: &str, step: &str) -> Result<(), BackupError> {
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
async fn run_from(
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

/// Replaces the tenant's database with the dump in the file `dump`, as the tenant's own
/// database user (a dump is tenant content: it never runs with more privilege than the tenant
/// has). MariaDB/MySQL load beside the live database and switch it in whole (`staged.rs`);
/// otherwise (PostgreSQL, whose load is one transaction) the database is emptied and loaded.
pub async fn restore_database(
    rt: &dyn Runtime,
    layout: &Layout,
    ns: &str,
    inst: &Instance,
    dump: &Path,
) -> Result<(), BackupError> {
    let Some((engine, c)) = engine::conn(ns, inst) else {
        return Ok(());
    };
    if let Some(st) = engine.staging(&c) {
        match super::staged::restore(rt, layout, inst, (engine, &c), &st, dump).await? {
            super::staged::Staged::Switched => return Ok(()),
            super::staged::Staged::InPlace(why) => {
                tracing::warn!(tenant = inst.tenant, why, "loading the dump in place");
            }
        }
    }
    load(rt, layout, inst, (engine, &c), engine.load_prefix(&c), dump).await
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
fn volume_mounts(ns: &str, inst: &Instance) -> Vec<(String, String, String)> {
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

/// Where a volume's restored content is unpacked before it replaces the old content, and
/// where the old content is set aside during the switch.
const STAGING: &str = ".berth-restore";
const SET_ASIDE: &str = ".berth-old";

/// Replaces the content of the volume at `$0` with the tar on stdin, exactly: unpacked beside
/// first (a truncated or damaged archive, or a full disk, leaves the old content untouched),
/// then switched by renames within the volume (the old entries, files made after the backup
/// included, set aside; the unpacked ones moved in), then the old copy removed. A switch cut
/// short is finished by the restore's journal, which runs this again from the start.
const REPLACE: &str = "set -e; t=\"$0\"; s=\"$t/.berth-restore\"; o=\"$t/.berth-old\"
rm -rf \"$s\"; mkdir \"$s\"
tar -x -f - -C \"$s\" || { rm -rf \"$s\"; exit 1; }
rm -rf \"$o\"; mkdir \"$o\"
find \"$t\" -mindepth 1 -maxdepth 1 ! -name .berth-restore ! -name .berth-old -exec mv {} \"$o\"/ \\;
find \"$s\" -mindepth 1 -maxdepth 1 -exec mv {} \"$t\"/ \\;
rmdir \"$s\"; rm -rf \"$o\"";

/// Refused before anything changes when the volume's filesystem has less room than the
/// archive (about what its unpacked copy takes beside the current content; on a quota disk
/// both count against the tenant's quota) and a tenth more.
pub async fn volume_room(
    rt: &dyn Runtime,
    ns: &str,
    inst: &Instance,
    volume: &str,
    archive: &Path,
) -> Result<(), BackupError> {
    let Some((container, target)) = mount_of(ns, inst, volume) else {
        return Ok(());
    };
    let size = std::fs::metadata(archive)
        .map_err(super::io(archive))?
        .len();
    // What a restore cut short left goes before the room is measured (its rerun starts
    // from the archive; the journal's safety backup holds what the tenant had).
    let clear = format!("rm -rf \"$0/{STAGING}\" \"$0/{SET_ASIDE}\"");
    let cmd = ["sh", "-c", &clear, &target];
    let out = rt.exec(&container, &cmd, None).await?;
    checked(out, &inst.tenant, "clearing an earlier restore's leftovers")?;
    let free = super::staged::free_bytes(rt, &container, &inst.tenant, &target).await?;
    let place = "in the volume beside its current content (both are counted in its disk quota)";
    super::staged::enough(
        &inst.tenant,
        (&format!("volume {volume}"), place),
        size,
        free,
    )
}

/// The container and path through which `volume` is read and written.
fn mount_of(ns: &str, inst: &Instance, volume: &str) -> Option<(String, String)> {
    volume_mounts(ns, inst)
        .into_iter()
        .find(|(v, _, _)| v == volume)
        .map(|(_, c, t)| (c, t))
}

pub async fn restore_volume(
    rt: &dyn Runtime,
    ns: &str,
    inst: &Instance,
    volume: &str,
    archive: &Path,
) -> Result<(), BackupError> {
    let Some((container, target)) = mount_of(ns, inst, volume) else {
        return Ok(());
    };
    let mut f = tokio::fs::File::open(archive)
        .await
        .map_err(super::io(archive))?;
    let cmd = ["sh", "-c", REPLACE, &target];
    let step = format!("restore of {volume}");
    run_from(rt, (&container, &inst.tenant, &step), &cmd, &mut f).await
}

#[cfg(test)]
mod tests {
    use super::REPLACE;
    use std::{io::Write, path::Path, process::Command};

    fn replace(target: &Path, input: &[u8]) -> bool {
        let mut c = Command::new("sh")
            .args(["-c", REPLACE])
            .arg(target)
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let _ = c.stdin.take().unwrap().write_all(input);
        c.wait().unwrap().success()
    }

    fn listing(dir: &Path) -> Vec<(String, String)> {
        let mut v = vec![];
        for e in walk(dir) {
            let rel = e.strip_prefix(dir).unwrap().display().to_string();
            let body = std::fs::read_to_string(&e).unwrap_or_else(|_| "<dir>".into());
            v.push((rel, body));
        }
        v.sort();
        v
    }

    fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut out = vec![];
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            out.push(e.path());
            if e.file_type().unwrap().is_dir() {
                out.extend(walk(&e.path()));
            }
        }
        out
    }

    /// A tar of `dir`'s content, as a backup takes it.
    fn tar_of(dir: &Path) -> Vec<u8> {
        let o = Command::new("tar")
            .args(["-c", "-f", "-", "-C"])
            .arg(dir)
            .arg(".")
            .output()
            .unwrap();
        o.stdout
    }

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

    #[test]
    fn a_volume_is_replaced_exactly_and_a_damaged_archive_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let (backup, vol) = (d.path().join("backup"), d.path().join("vol"));
        std::fs::create_dir_all(backup.join("uploads/2026")).unwrap();
        std::fs::write(backup.join("uploads/2026/a.txt"), "kept").unwrap();
        std::fs::write(backup.join(".htaccess"), "hidden too").unwrap();
        let archive = tar_of(&backup);
        std::fs::create_dir_all(vol.join("uploads/2026")).unwrap();
        std::fs::write(vol.join("uploads/2026/a.txt"), "changed").unwrap();
        std::fs::write(vol.join("uploads/2026/late.txt"), "made after the backup").unwrap();
        std::fs::write(vol.join(".late"), "dotfile after the backup").unwrap();
        let old = listing(&vol);

        assert!(!replace(&vol, &archive[..archive.len() / 3]), "truncated");
        assert_eq!(
            listing(&vol),
            old,
            "a damaged archive leaves the old content"
        );
        assert!(!replace(&vol, b"not a tar"));
        assert_eq!(listing(&vol), old);

        assert!(replace(&vol, &archive));
        assert_eq!(listing(&vol), listing(&backup));
        assert!(replace(&vol, &archive), "repeatable");
        assert_eq!(listing(&vol), listing(&backup));

        // A switch cut short (new entries half moved in, old ones half set aside) is finished
        // by running it again.
        std::fs::create_dir_all(vol.join(".berth-old/uploads")).unwrap();
        std::fs::write(vol.join(".berth-old/.late"), "old, set aside").unwrap();
        std::fs::create_dir_all(vol.join(".berth-restore")).unwrap();
        std::fs::write(vol.join(".berth-restore/.htaccess"), "half").unwrap();
        std::fs::remove_file(vol.join(".htaccess")).unwrap();
        assert!(replace(&vol, &archive));
        assert_eq!(listing(&vol), listing(&backup));
    }
}
