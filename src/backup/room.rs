//! Room for a backup, checked while it is written, never after: the plan's budget for the
//! archives a tenant keeps (`backups.budget`), and the backup filesystem's free space, less
//! what tenants' disk images on that filesystem may still claim (their sparse, unallocated
//! part) and a margin. A backup that would pass either stops with a clear error and leaves
//! nothing behind, so one tenant's backups never fill another tenant's disk. At most
//! [`CONCURRENT`] backups, restores and verifies run at once on a host; the rest wait their turn.

use super::BackupError;
use std::{
    path::{Path, PathBuf},
    pin::Pin,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
};
use tokio::io::AsyncWrite;

/// Backups, restores and verifies running at once on a host.
pub const CONCURRENT: usize = 2;
/// Free space kept on the backup filesystem beyond what tenants' disks may still claim.
pub const MARGIN: u64 = 256 << 20;
/// The filesystem is looked at again after this many bytes written.
const CHECK_EVERY: u64 = 8 << 20;
/// A backup that writes nothing for this long has stalled (a lock held in the tenant's
/// database, its tar stopped by the tenant's own processes) and gives its turn back.
pub const STALL: std::time::Duration = std::time::Duration::from_secs(600);

pub struct Room {
    tenant: String,
    /// The backup directory (its filesystem is the one checked).
    dir: PathBuf,
    /// Where tenants' disk images are, and the host's disk overcommit (a provider who
    /// promises more disk than exists backs only that share of the promise).
    disks: (PathBuf, f64),
    /// The plan's budget and what the archives kept besides this one use.
    budget: Option<(u64, u64)>,
    written: AtomicU64,
    next_check: AtomicU64,
    refused: Mutex<Option<String>>,
    /// When bytes last came, in ms since `started`.
    progress_ms: AtomicU64,
    started: std::time::Instant,
}

impl Room {
    /// Checked at once: a budget already used up, or a filesystem already short, refuses
    /// before anything is written.
    pub fn new(
        tenant: &str,
        dir: &Path,
        disks: (&Path, f64),
        budget: Option<(u64, u64)>,
    ) -> Result<Room, BackupError> {
        let room = Room {
            tenant: tenant.into(),
            dir: dir.into(),
            disks: (disks.0.into(), disks.1.max(1.0)),
            budget,
            written: AtomicU64::new(0),
            next_check: AtomicU64::new(CHECK_EVERY),
            refused: Mutex::new(None),
            progress_ms: AtomicU64::new(0),
            started: std::time::Instant::now(),
        };
        room.take(0)?;
        room.check_fs(0)?;
        Ok(room)
    }

    /// `n` more bytes written into the spool.
    pub fn take(&self, n: u64) -> Result<(), BackupError> {
        let total = self.written.fetch_add(n, Ordering::Relaxed) + n;
        if n > 0 {
            let ms = self.started.elapsed().as_millis() as u64;
            self.progress_ms.store(ms, Ordering::Relaxed);
        }
        if let Some((budget, kept)) = self.budget
            && kept + total > budget
        {
            let why = format!(
                "the plan's backup budget is {}; the archives it keeps use {}, and this one \
                 reached {}: lower `backups.keep` or raise `backups.budget`",
                human(budget),
                human(kept),
                human(total)
            );
            return Err(self.refuse(why));
        }
        if total >= self.next_check.load(Ordering::Relaxed) {
            self.next_check
                .store(total + CHECK_EVERY, Ordering::Relaxed);
            self.check_fs(0)?;
        }
        Ok(())
    }

    /// Resolves once nothing has been written for `limit`: the backup has stalled.
    pub async fn stalled(&self, limit: std::time::Duration) -> BackupError {
        let tick = (limit / 4).min(std::time::Duration::from_secs(10));
        loop {
            tokio::time::sleep(tick).await;
            let last = self.progress_ms.load(Ordering::Relaxed);
            let idle = (self.started.elapsed().as_millis() as u64).saturating_sub(last);
            if idle >= limit.as_millis() as u64 {
                return self.refuse(format!(
                    "nothing was written for {limit:?}: the dump stalled (a lock held in the \
                     tenant's database, or its tar stopped), so it was given up"
                ));
            }
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Before the archive is built from the spool: room for as much again.
    pub fn before_archive(&self) -> Result<(), BackupError> {
        self.check_fs(self.written.load(Ordering::Relaxed))
    }

    /// Why the backup was stopped, if it was (an engine stream cut by a full room reports
    /// only a broken pipe).
    pub fn refused(&self) -> Option<BackupError> {
        let why = self.refused.lock().expect("room lock").clone()?;
        Some(BackupError::NoRoom {
            tenant: self.tenant.clone(),
            why,
        })
    }

    fn refuse(&self, why: String) -> BackupError {
        *self.refused.lock().expect("room lock") = Some(why.clone());
        BackupError::NoRoom {
            tenant: self.tenant.clone(),
            why,
        }
    }

    fn check_fs(&self, need: u64) -> Result<(), BackupError> {
        let Some((free, dev)) = free_at(&self.dir) else {
            return Ok(());
        };
        let reserve = (promised(&self.disks.0, dev) as f64 / self.disks.1) as u64 + MARGIN;
        if free < reserve + need {
            let why = format!(
                "the backup filesystem at {} has {} free; tenants' disks there may still claim \
                 {} (with a margin of {}){}",
                self.dir.display(),
                human(free),
                human(reserve - MARGIN),
                human(MARGIN),
                if need > 0 {
                    format!(", and the archive needs {}", human(need))
                } else {
                    String::new()
                }
            );
            return Err(self.refuse(why));
        }
        Ok(())
    }
}

fn human(b: u64) -> String {
    bytesize::ByteSize(b).to_string()
}

/// Bytes free to an unprivileged writer on the filesystem of `p` (or its nearest existing
/// parent), and that filesystem's device.
fn free_at(p: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let existing = p.ancestors().find(|a| a.exists())?;
    let s = rustix::fs::statvfs(existing).ok()?;
    let dev = std::fs::metadata(existing).ok()?.dev();
    Some((s.f_bavail * s.f_frsize, dev))
}

/// What the tenants' disk images in `disks` on device `dev` may still claim: each sparse
/// image's size less the blocks it has.
pub fn promised(disks: &Path, dev: u64) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(disks)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "ext4"))
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file() && m.dev() == dev)
        .map(|m| m.len().saturating_sub(m.blocks() * 512))
        .sum()
}

/// A writer that counts what passes into the room, and fails once the room is full.
pub struct Counted<'a, W> {
    pub inner: W,
    pub room: &'a Room,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Counted<'_, W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => match this.room.take(n as u64) {
                Ok(()) => Poll::Ready(Ok(n)),
                Err(e) => Poll::Ready(Err(std::io::Error::other(e.to_string()))),
            },
            other => other,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_backup_past_its_budget_stops_while_writing_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let room = Room::new(
            "acme",
            dir.path(),
            (dir.path(), 1.0),
            Some((10 << 20, 4 << 20)),
        )
        .unwrap();
        let mut sink = Counted {
            inner: tokio::io::sink(),
            room: &room,
        };
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..6 {
            sink.write_all(&chunk).await.unwrap();
        }
        let err = sink.write_all(&chunk).await.unwrap_err();
        assert!(err.to_string().contains("backup budget"), "{err}");
        let why = room.refused().unwrap().to_string();
        assert!(
            why.contains("10.0 MiB") && why.contains("backups.keep"),
            "{why}"
        );
    }

    #[tokio::test]
    async fn a_backup_that_writes_nothing_for_its_stall_limit_is_given_up() {
        let dir = tempfile::tempdir().unwrap();
        let room = Room::new("acme", dir.path(), (dir.path(), 1.0), None).unwrap();
        let limit = std::time::Duration::from_millis(200);
        let writing = async {
            for _ in 0..6 {
                tokio::time::sleep(std::time::Duration::from_millis(60)).await;
                room.take(1).unwrap();
            }
        };
        tokio::select! {
            e = room.stalled(limit) => panic!("a backup making progress was given up: {e}"),
            () = writing => {}
        }
        let e = room.stalled(limit).await.to_string();
        assert!(e.contains("stalled") && e.contains("200ms"), "{e}");
    }

    #[test]
    fn a_budget_the_kept_archives_use_up_refuses_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let Err(e) = Room::new(
            "acme",
            dir.path(),
            (dir.path(), 1.0),
            Some((1 << 20, 2 << 20)),
        ) else {
            panic!("let through");
        };
        assert!(e.to_string().contains("budget"), "{e}");
    }

    #[test]
    fn sparse_disk_images_reserve_what_they_may_still_claim() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("acme.ext4");
        let f = std::fs::File::create(&img).unwrap();
        f.set_len(1 << 40).unwrap();
        std::fs::write(dir.path().join("other.txt"), vec![1u8; 4096]).unwrap();
        let dev = std::fs::metadata(dir.path()).unwrap().dev();
        assert!(promised(dir.path(), dev) > (1 << 40) - (1 << 20));
        assert_eq!(
            promised(dir.path(), dev + 1),
            0,
            "another filesystem's images"
        );
        let Err(e) = Room::new("acme", dir.path(), (dir.path(), 1.0), None) else {
            panic!("a terabyte promised, and still room");
        };
        assert!(e.to_string().contains("may still claim"), "{e}");
        assert!(
            Room::new("acme", dir.path(), (dir.path(), 1e6), None).is_ok(),
            "overcommitted a million times: only a millionth of the promise is backed"
        );
    }
}
