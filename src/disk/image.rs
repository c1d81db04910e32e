//! The host tools behind a tenant filesystem: mkfs.ext4, e2fsck, resize2fs, losetup, mount.
//! Run synchronously; callers are on blocking threads.

use super::{DiskError, Want};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Runs `tool args`; exit codes in `ok` are success (e2fsck uses 1 for "fixed").
pub(super) fn run(
    tenant: &str,
    action: &'static str,
    tool: &str,
    args: &[&str],
    ok: &[i32],
) -> Result<(), DiskError> {
    let fail = |message: String| DiskError::Command {
        tenant: tenant.into(),
        action,
        message,
    };
    let exe = which(tool).ok_or_else(|| fail(format!("{tool} is not installed")))?;
    let out = Command::new(exe)
        .args(args)
        .output()
        .map_err(|e| fail(format!("{tool}: {e}")))?;
    match out.status.code() {
        Some(c) if ok.contains(&c) => Ok(()),
        c => Err(fail(format!(
            "{tool} exited {}: {}",
            c.map_or("by signal".into(), |c| c.to_string()),
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

/// The error for an I/O failure on `path` of `tenant`'s disk.
pub(super) fn io(tenant: &str, path: &Path) -> impl FnOnce(std::io::Error) -> DiskError + use<> {
    let (tenant, path) = (tenant.to_string(), path.display().to_string());
    move |source| DiskError::Io {
        tenant,
        path,
        source,
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// A sparse image of `w.bytes` with an ext4 filesystem (no reserved blocks: the tenant gets
/// every byte it pays for). Written under a temporary name, so a crash leaves no half image.
pub fn create(t: &str, img: &Path, w: Want) -> Result<(), DiskError> {
    let tmp = img.with_extension("ext4.tmp");
    let f = std::fs::File::create(&tmp).map_err(io(t, &tmp))?;
    f.set_len(w.bytes).map_err(io(t, &tmp))?;
    drop(f);
    let inodes = w.inodes.map(|n| n.to_string());
    let mut args = vec!["-q", "-F", "-m", "0", "-E", "root_owner=0:0"];
    if let Some(n) = &inodes {
        args.extend(["-N", n]);
    }
    args.push(s(&tmp));
    run(t, "mkfs", "mkfs.ext4", &args, &[0])?;
    std::fs::rename(&tmp, img).map_err(io(t, img))
}

/// Checks an unmounted filesystem (repairs what is safe to repair without asking).
pub fn check(t: &str, img: &Path) -> Result<(), DiskError> {
    run(t, "fsck", "e2fsck", &["-p", s(img)], &[0, 1])
}

pub fn mount(t: &str, img: &Path, at: &Path) -> Result<(), DiskError> {
    run(
        t,
        "mount",
        "mount",
        &["-t", "ext4", "-o", "loop,nodev,nosuid", s(img), s(at)],
        &[0],
    )
}

pub fn unmount(t: &str, at: &Path) -> Result<(), DiskError> {
    // The loop device is released with the last unmount (mount(8) sets autoclear).
    run(t, "unmount", "umount", &[s(at)], &[0])
}

/// Extends the image file to `bytes` (sparse) if it is smaller.
fn extend(t: &str, img: &Path, bytes: u64) -> Result<(), DiskError> {
    if std::fs::metadata(img).map_err(io(t, img))?.len() >= bytes {
        return Ok(());
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(img)
        .and_then(|f| f.set_len(bytes))
        .map_err(io(t, img))
}

/// The size of the ext4 filesystem in `img`, from its superblock (1024 bytes in): block
/// count (low and, with the 64bit feature, high word) times block size.
pub fn fs_bytes(img: &Path) -> Option<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut sb = [0u8; 1024];
    let mut f = std::fs::File::open(img).ok()?;
    f.seek(SeekFrom::Start(1024)).ok()?;
    f.read_exact(&mut sb).ok()?;
    let u32_at = |o: usize| u32::from_le_bytes(sb[o..o + 4].try_into().expect("4 bytes"));
    if u16::from_le_bytes([sb[0x38], sb[0x39]]) != 0xEF53 {
        return None;
    }
    let incompat_64bit = u32_at(0x60) & 0x80 != 0;
    let high = if incompat_64bit {
        u32_at(0x150) as u64
    } else {
        0
    };
    let blocks = (high << 32) | u32_at(0x4) as u64;
    Some(blocks * (1024u64 << u32_at(0x18)))
}

/// Whether the filesystem in `img` is smaller than `bytes` asks for. resize2fs may leave out
/// a last block group too small to hold its own metadata, so a MiB short counts as grown.
pub fn needs_growth(img: &Path, bytes: u64) -> bool {
    fs_bytes(img).is_some_and(|fs| fs + (1 << 20) < bytes)
}

/// Grows a mounted filesystem online to `bytes` (never shrinks: that needs the tenant
/// stopped and is left to an operator). Needs CAP_SYS_RESOURCE.
pub fn grow(t: &str, img: &Path, dev: &str, bytes: u64) -> Result<(), DiskError> {
    if !needs_growth(img, bytes) {
        return Ok(());
    }
    extend(t, img, bytes)?;
    run(t, "loop resize", "losetup", &["-c", dev], &[0])?;
    run(t, "grow", "resize2fs", &[dev], &[0])?;
    tracing::info!(tenant = t, bytes, "tenant disk grown online");
    Ok(())
}

/// Grows an unmounted filesystem to `bytes` (resize2fs wants a fresh check first). Repeating
/// it after a crash finishes the job: growth is judged by the filesystem, not the file.
pub fn grow_offline(t: &str, img: &Path, bytes: u64) -> Result<(), DiskError> {
    if !needs_growth(img, bytes) {
        return Ok(());
    }
    extend(t, img, bytes)?;
    run(t, "fsck", "e2fsck", &["-f", "-p", s(img)], &[0, 1])?;
    run(t, "grow", "resize2fs", &[s(img)], &[0])?;
    tracing::info!(tenant = t, bytes, "tenant disk grown offline");
    Ok(())
}

/// Mount point → device, from /proc/self/mounts.
pub fn mounts() -> BTreeMap<PathBuf, String> {
    let text = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    parse_mounts(&text)
}

fn parse_mounts(text: &str) -> BTreeMap<PathBuf, String> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let dev = f.next()?;
            let at = f.next()?;
            Some((PathBuf::from(unescape(at)), unescape(dev)))
        })
        .collect()
}

/// The kernel writes space, tab, newline and backslash in mount paths as octal escapes.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_map_mount_points_to_devices_with_escapes_undone() {
        let m = parse_mounts(
            "/dev/loop3 /var/lib/berth/disks/acme ext4 rw,nosuid,nodev 0 0\n\
             /dev/loop4 /srv/my\\040disks/beta ext4 rw 0 0\n",
        );
        assert_eq!(
            m.get(Path::new("/var/lib/berth/disks/acme"))
                .map(String::as_str),
            Some("/dev/loop3")
        );
        assert!(m.contains_key(Path::new("/srv/my disks/beta")));
    }

    #[test]
    fn an_offline_grow_is_judged_by_the_filesystem_so_a_crash_after_extending_is_finished() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("t.ext4");
        let want = |mib: u64| Want {
            bytes: mib << 20,
            inodes: None,
        };
        create("t", &img, want(64)).unwrap();
        assert_eq!(fs_bytes(&img), Some(64 << 20));
        assert!(!needs_growth(&img, 64 << 20));
        // A crash between extending the file and resizing the filesystem.
        extend("t", &img, 100 << 20).unwrap();
        assert!(
            needs_growth(&img, 100 << 20),
            "the file is large, the filesystem is not"
        );
        grow_offline("t", &img, 100 << 20).unwrap();
        assert!(!needs_growth(&img, 100 << 20));
        assert!(fs_bytes(&img).unwrap() > 99 << 20);
        assert_eq!(fs_bytes(&d.path().join("missing")), None);
    }
}
