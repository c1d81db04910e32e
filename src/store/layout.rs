//! Where berth keeps things under its state dir.
//!
//! ```text
//! <state>/berth.lock                         one agent per state dir
//! <state>/allocations.json                   subnet + port per tenant
//! <state>/tenants/<t>/            0700
//!     secrets/<name>              0600       generated once, kept until purge
//!     files/<service>/secrets/<name>  0600   copy owned by the service's uid
//!     files/<service>/configs/<name>  0600   rendered config owned by the service's uid
//!     files.digest                           what files/ was rendered from
//! <state>/purge/<t>                          tombstone: remove volumes and files too
//! ```

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: PathBuf) -> Layout {
        Layout { root }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn lock(&self) -> PathBuf {
        self.root.join("berth.lock")
    }
    pub fn allocations(&self) -> PathBuf {
        self.root.join("allocations.json")
    }
    pub fn tenants(&self) -> PathBuf {
        self.root.join("tenants")
    }
    pub fn tenant(&self, t: &str) -> PathBuf {
        self.tenants().join(t)
    }
    pub fn secret(&self, t: &str, name: &str) -> PathBuf {
        self.tenant(t).join("secrets").join(name)
    }
    pub fn service_files(&self, t: &str, service: &str) -> PathBuf {
        self.tenant(t).join("files").join(service)
    }
    pub fn service_secret(&self, t: &str, service: &str, name: &str) -> PathBuf {
        self.service_files(t, service).join("secrets").join(name)
    }
    pub fn service_config(&self, t: &str, service: &str, name: &str) -> PathBuf {
        self.service_files(t, service).join("configs").join(name)
    }
    pub fn files_digest(&self, t: &str) -> PathBuf {
        self.tenant(t).join("files.digest")
    }
    /// Certificates: `certs/<scope>/<domain>/`, the internal CA under `certs/ca/`.
    pub fn certs(&self) -> PathBuf {
        self.root.join("certs")
    }
    /// Host-level secrets (the shared database's superuser, the key of its names).
    pub fn host_secrets(&self) -> PathBuf {
        self.root.join("host").join("secrets")
    }
    /// A tenant's last valid instance file, for the edge while its file is broken.
    pub fn last_valid(&self, t: &str) -> PathBuf {
        self.tenant(t).join("last-valid.yaml")
    }
    /// Images berth pulled (what prune may remove).
    pub fn images(&self) -> PathBuf {
        self.root.join("images.json")
    }
    /// Tenants asleep (stopped while idle) and since when: they stay asleep across restarts.
    pub fn sleep(&self) -> PathBuf {
        self.root.join("sleep.json")
    }
    pub fn image_pins(&self) -> PathBuf {
        self.root.join("image-pins.json")
    }
    pub fn domains(&self) -> PathBuf {
        self.root.join("domains.json")
    }
    /// Per-tenant filesystems: `disks/<tenant>.ext4` mounted on `disks/<tenant>/`.
    pub fn disks(&self) -> PathBuf {
        self.root.join("disks")
    }
    /// Marks of scratch tenants (a verify's): removed whole at the agent's start if one is left.
    pub fn scratch_dir(&self) -> PathBuf {
        self.root.join("scratch")
    }
    pub fn purge_dir(&self) -> PathBuf {
        self.root.join("purge")
    }
    pub fn purge_marker(&self, t: &str) -> PathBuf {
        self.purge_dir().join(t)
    }
    /// The record of a tenant moved to another host (`handover`): where its requests go.
    pub fn moved_record(&self, t: &str) -> PathBuf {
        self.tenant(t).join("moved.json")
    }
}
