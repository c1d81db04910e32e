//! Per-tenant disk quotas: each tenant with a `disk` limit gets an ext4 image of that size,
//! fsck'd and loop-mounted by berth, grown when its plan grows; its volumes are bind-mounted
//! from it, so writing past the quota is ENOSPC for that tenant alone. Images and mounts
//! outlive the agent; after a host reboot the first pass mounts them again.

mod image;
mod status;

pub use status::{DiskStatus, status};

use serde::Serialize;
use std::{
    collections::BTreeMap,
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
    #[error("disk of {tenant}: {path}: {source}")]
    Io {
        tenant: String,
        path: String,
        source: std::io::Error,
    },
}

/// What a tenant's filesystem holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
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
}

impl Disks {
    /// Checks that this host can enforce disk quotas (root, loop devices, mkfs.ext4, mount);
    /// the error says what is missing, and berth then claims no quota.
    pub fn probe(root: &Path) -> Result<Disks, String> {
        if !rustix::process::geteuid().is_root() {
            return Err("berth does not run as root (loop mounts need it)".into());
        }
        if !Path::new("/dev/loop-control").exists() {
            return Err("no /dev/loop-control (loop devices unavailable)".into());
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
                return Err(format!("{tool} is not installed (e2fsprogs, mount)"));
            }
        }
        crate::store::atomic::create_dir(root, 0o700)
            .map_err(|e| format!("{}: {e}", root.display()))?;
        Ok(Disks {
            root: root.to_path_buf(),
        })
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

    /// Creates, fscks, mounts and grows every wanted filesystem; returns the tenants whose
    /// filesystem could not be made ready, with the reason (their reconcile waits for it).
    pub fn sync(&self, want: &BTreeMap<String, Want>) -> BTreeMap<String, String> {
        let mounted = image::mounts();
        let mut failed = BTreeMap::new();
        for (t, w) in want {
            if let Err(e) = self.ensure(t, *w, &mounted) {
                tracing::warn!(tenant = t, error = %e, "tenant disk not ready");
                failed.insert(t.clone(), e.to_string());
            }
        }
        failed
    }

    fn ensure(
        &self,
        t: &str,
        w: Want,
        mounted: &BTreeMap<PathBuf, String>,
    ) -> Result<(), DiskError> {
        let img = self.image(t);
        let mnt = self.mountpoint(t);
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| DiskError::Io {
                tenant: t.into(),
                path,
                source,
            }
        };
        if !img.exists() {
            image::create(t, &img, w)?;
        }
        match mounted.get(&mnt) {
            Some(dev) => image::grow(t, &img, dev, w.bytes)?,
            None => {
                image::grow_offline(t, &img, w.bytes)?;
                image::check(t, &img)?;
                crate::store::atomic::create_dir(&mnt, 0o700).map_err(io(&mnt))?;
                image::mount(t, &img, &mnt)?;
            }
        }
        let vols = mnt.join("volumes");
        std::fs::create_dir_all(&vols).map_err(io(&vols))
    }

    /// Creates the directory a volume binds to (before the engine creates the volume).
    pub fn prepare_volume(&self, t: &str, v: &str) -> Result<PathBuf, DiskError> {
        let d = self.volume_dir(t, v);
        std::fs::create_dir_all(&d).map_err(|source| DiskError::Io {
            tenant: t.into(),
            path: d.display().to_string(),
            source,
        })?;
        Ok(d)
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
                    return Err(DiskError::Io {
                        tenant: t.into(),
                        path: p.display().to_string(),
                        source: e,
                    });
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
            .filter_map(|p| Some((p.file_name()?.to_string_lossy().to_string(), stat(&p)?)))
            .collect()
    }

    /// Usage of tenant `t`'s filesystem, None while it is not mounted.
    pub fn usage_of(&self, t: &str) -> Option<Usage> {
        let mnt = self.mountpoint(t);
        image::mounts().contains_key(&mnt).then(|| stat(&mnt))?
    }
}

fn stat(p: &Path) -> Option<Usage> {
    let s = rustix::fs::statvfs(p).ok()?;
    let f = s.f_frsize;
    Some(Usage {
        size: s.f_blocks * f,
        used: (s.f_blocks - s.f_bfree) * f,
        inodes: s.f_files,
        inodes_used: s.f_files - s.f_ffree,
    })
}
