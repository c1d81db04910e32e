//! Per-tenant disk quotas: each tenant with a `disk` limit gets an ext4 image of that size,
//! fsck'd and loop-mounted by berth, grown when its plan grows; its volumes are bind-mounted
//! from it, so writing past the quota is ENOSPC for that tenant alone. Images and mounts
//! outlive the agent; after a host reboot the first pass mounts them again.

mod image;
mod status;

pub use status::{DiskStatus, status};

use serde::Serialize;
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("disk of {tenant}: {action} failed: {message}")]
    Command {
        tenant: String,
        action: &'static str,
        message: String,
    },
    #[error(
        "disk of {tenant}: its volumes hold {need}, more than the {free} free on its filesystem; raise `disk` (or free space) and they move"
    )]
    TooSmall {
        tenant: String,
        need: String,
        free: String,
    },
    #[error("disk of {tenant}: {path}: {source}")]
    Io {
        tenant: String,
        path: String,
        source: std::io::Error,
    },
}

/// What a tenant's filesystem holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Usage {
    pub size: u64,
    pub used: u64,
    pub inodes: u64,
    pub inodes_used: u64,
}

/// The size and inode count a tenant's filesystem must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    pub bytes: u64,
    pub inodes: Option<u64>,
}

pub struct Disks {
    root: PathBuf,
    /// Online resize needs CAP_SYS_RESOURCE; without it a mounted disk grows with its tenant
    /// stopped.
    online_grow: bool,
}

/// What one sync found: tenants whose filesystem is not ready (with why), and mounted ones
/// that must grow with their tenant stopped.
#[derive(Debug, Default)]
pub struct Synced {
    pub failed: BTreeMap<String, String>,
    pub grow_stopped: BTreeSet<String>,
}

/// CAP_SYS_RESOURCE (bit 24) in this process's effective set.
fn can_resize_online() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 24) != 0)
}

/// Why this host cannot enforce disk quotas (then berth claims none).
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error("berth does not run as root (loop mounts need it)")]
    NotRoot,
    #[error("no /dev/loop-control (loop devices unavailable)")]
    NoLoopDevices,
    #[error("{0} is not installed (e2fsprogs, mount)")]
    Missing(&'static str),
    #[error("{path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("swarm mode: volumes live on the swarm's nodes")]
    Swarm,
}

impl Disks {
    /// Checks that this host can enforce disk quotas (root, loop devices, mkfs.ext4, mount);
    /// the error says what is missing, and berth then claims no quota.
    pub fn probe(root: &Path) -> Result<Disks, Unavailable> {
        if !rustix::process::geteuid().is_root() {
            return Err(Unavailable::NotRoot);
        }
        if !Path::new("/dev/loop-control").exists() {
            return Err(Unavailable::NoLoopDevices);
        }
        for tool in [
            "mkfs.ext4",
            "e2fsck",
            "resize2fs",
            "mount",
            "umount",
            "losetup",
        ] {
            if image::which(tool).is_none() {
                return Err(Unavailable::Missing(tool));
            }
        }
        crate::store::atomic::create_dir(root, 0o700).map_err(|source| Unavailable::Dir {
            path: root.display().to_string(),
            source,
        })?;
        Ok(Disks {
            root: root.to_path_buf(),
            online_grow: can_resize_online(),
        })
    }

    /// Whether mounted filesystems grow online (else with their tenant stopped).
    pub fn grows_online(&self) -> bool {
        self.online_grow
    }

    fn image(&self, t: &str) -> PathBuf {
        self.root.join(format!("{t}.ext4"))
    }

    fn mountpoint(&self, t: &str) -> PathBuf {
        self.root.join(t)
    }

    /// Where volume `v` of tenant `t` lives on its filesystem.
    pub fn volume_dir(&self, t: &str, v: &str) -> PathBuf {
        self.mountpoint(t).join("volumes").join(v)
    }

    /// Creates, fscks, mounts and grows every wanted filesystem; reports the tenants whose
    /// filesystem could not be made ready, with the reason (their reconcile waits for it), and
    /// those whose mounted filesystem must grow with the tenant stopped.
    pub fn sync(&self, want: &BTreeMap<String, Want>) -> Synced {
        let mounted = image::mounts();
        let mut out = Synced::default();
        for (t, w) in want {
            match self.ensure(t, *w, &mounted) {
                Ok(true) => {
                    out.grow_stopped.insert(t.clone());
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(tenant = t, error = %e, "tenant disk not ready");
                    out.failed.insert(t.clone(), e.to_string());
                }
            }
        }
        out
    }

    /// Grows tenant `t`'s filesystem to `bytes` while its containers are stopped: unmount,
    /// check, resize, mount.
    pub fn grow_stopped(&self, t: &str, bytes: u64) -> Result<(), DiskError> {
        let (img, mnt) = (self.image(t), self.mountpoint(t));
        if image::mounts().contains_key(&mnt) {
            image::unmount(t, &mnt)?;
        }
        image::grow_offline(t, &img, bytes)?;
        image::check(t, &img)?;
        image::mount(t, &img, &mnt)
    }

    /// Ok(true): mounted, and must grow with its tenant stopped.
    fn ensure(
        &self,
        t: &str,
        w: Want,
        mounted: &BTreeMap<PathBuf, String>,
    ) -> Result<bool, DiskError> {
        let img = self.image(t);
        let mnt = self.mountpoint(t);
        let io = |path: &Path| image::io(t, path);
        if !img.exists() {
            image::create(t, &img, w)?;
        }
        match mounted.get(&mnt) {
            Some(dev) if self.online_grow => image::grow(t, &img, dev, w.bytes)?,
            Some(_) if image::needs_growth(&img, w.bytes) => return Ok(true),
            Some(_) => {}
            None => {
                image::grow_offline(t, &img, w.bytes)?;
                image::check(t, &img)?;
                crate::store::atomic::create_dir(&mnt, 0o700).map_err(io(&mnt))?;
                image::mount(t, &img, &mnt)?;
            }
        }
        let vols = mnt.join("volumes");
        std::fs::create_dir_all(&vols).map_err(io(&vols))?;
        Ok(false)
    }

    /// Creates the directory a volume binds to (before the engine creates the volume).
    pub fn prepare_volume(&self, t: &str, v: &str) -> Result<PathBuf, DiskError> {
        let d = self.volume_dir(t, v);
        std::fs::create_dir_all(&d).map_err(image::io(t, &d))?;
        Ok(d)
    }

    /// Refuses when the data in `from` (volumes in the engine's directory) would not fit in
    /// the free space of tenant `t`'s filesystem.
    pub fn check_fit(&self, t: &str, from: &[&Path]) -> Result<(), DiskError> {
        let need: u64 = from.iter().map(|p| allocated(p)).sum();
        let mnt = self.mountpoint(t);
        let free = rustix::fs::statvfs(&mnt)
            .map(|s| s.f_bavail * s.f_frsize)
            .map_err(|e| image::io(t, &mnt)(e.into()))?;
        if need > free {
            return Err(DiskError::TooSmall {
                tenant: t.into(),
                need: crate::spec::units::format_bytes(need),
                free: crate::spec::units::format_bytes(free),
            });
        }
        Ok(())
    }

    /// Copies a stopped volume's data (owners, modes, times, links) from the engine's
    /// directory onto tenant `t`'s filesystem; repeating it after a crash copies again.
    pub fn move_in(&self, t: &str, v: &str, from: &Path) -> Result<PathBuf, DiskError> {
        let to = self.prepare_volume(t, v)?;
        let src = format!("{}/.", from.display());
        let dst = to.display().to_string();
        image::run(t, "volume copy", "cp", &["-a", "--", &src, &dst], &[0])?;
        Ok(to)
    }

    /// Unmounts and deletes a removed tenant's filesystem (its volumes are gone already).
    pub fn remove(&self, t: &str) -> Result<(), DiskError> {
        let mnt = self.mountpoint(t);
        if image::mounts().contains_key(&mnt) {
            image::unmount(t, &mnt)?;
        }
        for p in [mnt, self.image(t)] {
            let r = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            match r {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(image::io(t, &p)(e));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Usage of every mounted tenant filesystem.
    pub fn usage(&self) -> Vec<(String, Usage)> {
        image::mounts()
            .into_keys()
            .filter(|p| p.parent() == Some(self.root.as_path()))
            .filter_map(|p| Some((p.file_name()?.to_string_lossy().to_string(), usage_at(&p)?)))
            .collect()
    }

    /// Usage of tenant `t`'s filesystem, None while it is not mounted.
    pub fn usage_of(&self, t: &str) -> Option<Usage> {
        let mnt = self.mountpoint(t);
        image::mounts().contains_key(&mnt).then(|| usage_at(&mnt))?
    }
}

/// Bytes allocated under `p` (hard links counted each time: errs on the safe side).
fn allocated(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    let own = m.blocks() * 512;
    if !m.is_dir() {
        return own;
    }
    let children = std::fs::read_dir(p).into_iter().flatten().flatten();
    own + children.map(|e| allocated(&e.path())).sum::<u64>()
}

/// Size and use of the filesystem holding `p`.
pub fn usage_at(p: &Path) -> Option<Usage> {
    let s = rustix::fs::statvfs(p).ok()?;
    let f = s.f_frsize;
    Some(Usage {
        size: s.f_blocks * f,
        used: (s.f_blocks - s.f_bfree) * f,
        inodes: s.f_files,
        inodes_used: s.f_files - s.f_ffree,
    })
}
