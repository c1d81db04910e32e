//! Restoring a volume in two steps, so that a restore switches only once everything is in
//! place: `stage` unpacks the archive beside the current content, inside the volume
//! (`.berth-restore`; a truncated or damaged archive, or a full disk, leaves the old content
//! untouched), and `switch` then swaps by renames within the volume (the old entries, files
//! made after the backup included, set aside in `.berth-old`, the unpacked ones moved in)
//! and removes the old copy. A restore cut short is run again from its journal, from the
//! stage on, which converges whatever the switch had done.

use super::{
    BackupError,
    dump::{checked, run_from, volume_mounts},
};
use crate::{desired::Instance, runtime::Runtime};
use std::path::Path;

/// Unpacks the tar on stdin into `$0/.berth-restore`, from empty.
const STAGE: &str = "set -e; t=\"$0\"; s=\"$t/.berth-restore\"
rm -rf \"$s\"; mkdir \"$s\"
tar -x -f - -C \"$s\" || { rm -rf \"$s\"; exit 1; }";

/// Swaps what `STAGE` unpacked into `$0` by renames, then removes the old content.
const SWITCH: &str = "set -e; t=\"$0\"; s=\"$t/.berth-restore\"; o=\"$t/.berth-old\"
[ -d \"$s\" ] || { echo 'nothing unpacked to switch in' >&2; exit 1; }
rm -rf \"$o\"; mkdir \"$o\"
find \"$t\" -mindepth 1 -maxdepth 1 ! -name .berth-restore ! -name .berth-old -exec mv {} \"$o\"/ \\;
find \"$s\" -mindepth 1 -maxdepth 1 -exec mv {} \"$t\"/ \\;
rmdir \"$s\"; rm -rf \"$o\"";

/// Removes what a stage or a switch cut short left in `$0`.
const DISCARD: &str = "rm -rf \"$0/.berth-restore\" \"$0/.berth-old\"";

/// Refused before anything changes when the volume's filesystem has less room than the
/// archive (about what its unpacked copy takes beside the current content; on a quota disk
/// both count against the tenant's quota) and a tenth more.
pub async fn room(
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
    let out = rt
        .exec(&container, &["sh", "-c", DISCARD, &target], None)
        .await?;
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

/// Unpacks `archive` beside `volume`'s current content.
pub async fn stage(
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
    let cmd = ["sh", "-c", STAGE, &target];
    let step = format!("unpacking {volume} beside its content");
    run_from(rt, (&container, &inst.tenant, &step), &cmd, &mut f).await
}

/// What to do with a volume's staged content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Swap it in and remove the old content.
    Switch,
    /// Remove it (and anything a cut-short switch left): the restore does not go on.
    Discard,
}

/// Does `then` with `volume`'s staged content.
pub async fn finish(
    rt: &dyn Runtime,
    ns: &str,
    inst: &Instance,
    volume: &str,
    then: Then,
) -> Result<(), BackupError> {
    let step = match then {
        Then::Switch => (SWITCH, "switching the restored content in"),
        Then::Discard => (DISCARD, "removing a restore's leftovers"),
    };
    script(rt, ns, inst, volume, step).await
}

async fn script(
    rt: &dyn Runtime,
    ns: &str,
    inst: &Instance,
    volume: &str,
    (text, what): (&str, &str),
) -> Result<(), BackupError> {
    let Some((container, target)) = mount_of(ns, inst, volume) else {
        return Ok(());
    };
    let out = rt
        .exec(&container, &["sh", "-c", text, &target], None)
        .await?;
    checked(out, &inst.tenant, &format!("{what} ({volume})"))
}

#[cfg(test)]
mod tests {
    use super::{STAGE, SWITCH};
    use std::{io::Write, path::Path, process::Command};

    /// Stage, then (if it worked) switch, as a restore does.
    fn replace(target: &Path, input: &[u8]) -> bool {
        let mut c = Command::new("sh")
            .args(["-c", STAGE])
            .arg(target)
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let _ = c.stdin.take().unwrap().write_all(input);
        c.wait().unwrap().success()
            && Command::new("sh")
                .args(["-c", SWITCH])
                .arg(target)
                .status()
                .unwrap()
                .success()
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
