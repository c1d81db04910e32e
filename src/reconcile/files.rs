//! Per-instance files on disk: generated secrets and rendered configs, owned by the uid of the
//! service that reads them, mode 0600 (or 0400 for the service copies), in 0700 directories.

use crate::{
    desired::{Instance, secret},
    store::{Layout, atomic},
};
use sha2::{Digest, Sha256};
use std::{io, path::Path};

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("tenant {tenant}: cannot write {path}: {source}")]
    Write {
        tenant: String,
        path: String,
        source: io::Error,
    },
    #[error("tenant {tenant}: the OS random source failed: {source}")]
    Random {
        tenant: String,
        source: getrandom::Error,
    },
}

/// What the files of `inst` are made of: secret declarations, rendered configs and who reads
/// them. Plan compares it with the digest recorded on disk to know when to rewrite.
/// Raised when the shared database's ensure gains a step existing tenants need (2: the
/// ownership repair after restores that loaded dumps as the superuser).
const SHARED_ENSURE_VERSION: u32 = 2;

pub fn digest(inst: &Instance) -> String {
    let mut h = Sha256::new();
    for (name, s) in &inst.secrets {
        h.update(format!("secret {name} {} {:?}\n", s.bytes, s.encoding));
    }
    for (name, text) in &inst.configs {
        h.update(format!("config {name} {}\n", text.len()));
        h.update(text.as_bytes());
    }
    for s in &inst.services {
        h.update(format!(
            "service {} {:?} {:?} {:?}\n",
            s.name, s.file_owner, s.secrets, s.configs
        ));
    }
    if let Some(db) = &inst.database {
        h.update(format!("db {:?} {} {}\n", db.mode, db.name, db.user));
        if db.mode == crate::spec::template::DatabaseMode::Shared {
            // The shared database's ensure (and its ownership repair) runs once more for every
            // shared tenant when this changes.
            h.update(format!("shared ensure {SHARED_ENSURE_VERSION}\n"));
        }
    }
    hex::encode(&h.finalize()[..12])
}

pub fn read_digest(layout: &Layout, tenant: &str) -> Option<String> {
    std::fs::read_to_string(layout.files_digest(tenant))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Writes everything the instance's containers mount. Secrets are generated only when missing,
/// so re-running this never changes a password a database was initialised with.
pub fn write(layout: &Layout, inst: &Instance) -> Result<(), FilesError> {
    let t = &inst.tenant;
    let werr = |path: &Path| {
        let path = path.display().to_string();
        move |source| FilesError::Write {
            tenant: t.clone(),
            path,
            source,
        }
    };
    let secrets_dir = layout.tenant(t).join("secrets");
    atomic::create_dir(&layout.tenant(t), 0o700).map_err(werr(&layout.tenant(t)))?;
    atomic::create_dir(&secrets_dir, 0o700).map_err(werr(&secrets_dir))?;
    for (name, s) in &inst.secrets {
        let path = layout.secret(t, name);
        if !path.exists() {
            let value =
                secret::generate(s.bytes, s.encoding).map_err(|source| FilesError::Random {
                    tenant: t.clone(),
                    source,
                })?;
            atomic::write(&path, value.as_bytes(), 0o600).map_err(werr(&path))?;
        }
    }
    for svc in &inst.services {
        for dir in ["secrets", "configs"] {
            let d = layout.service_files(t, &svc.name).join(dir);
            atomic::create_dir(&d, 0o700).map_err(werr(&d))?;
        }
        for name in &svc.secrets {
            let value =
                std::fs::read(layout.secret(t, name)).map_err(werr(&layout.secret(t, name)))?;
            let path = layout.service_secret(t, &svc.name, name);
            atomic::write_owned(&path, &value, 0o400, svc.file_owner).map_err(werr(&path))?;
        }
        for (name, _) in &svc.configs {
            let path = layout.service_config(t, &svc.name, name);
            let text = inst
                .configs
                .get(name)
                .map(String::as_str)
                .unwrap_or_default();
            atomic::write_owned(&path, text.as_bytes(), 0o400, svc.file_owner)
                .map_err(werr(&path))?;
        }
    }
    Ok(())
}

/// Records that the files match `inst`; written last, so a crash before it redoes the work.
pub fn commit(layout: &Layout, inst: &Instance) -> Result<(), FilesError> {
    let path = layout.files_digest(&inst.tenant);
    atomic::write(&path, digest(inst).as_bytes(), 0o600).map_err(|source| FilesError::Write {
        tenant: inst.tenant.clone(),
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::demo_instance;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn files_are_private_and_secrets_survive_a_rewrite() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(d.path().to_path_buf());
        let inst = demo_instance("acme");
        write(&layout, &inst).unwrap();
        let secret = std::fs::read(layout.secret("acme", "db_password")).unwrap();
        write(&layout, &inst).unwrap();
        assert_eq!(
            std::fs::read(layout.secret("acme", "db_password")).unwrap(),
            secret
        );
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&layout.secret("acme", "db_password")), 0o600);
        assert_eq!(mode(&layout.tenant("acme")), 0o700);
        assert_eq!(
            mode(&layout.service_secret("acme", "db", "db_password")),
            0o400
        );
        assert!(read_digest(&layout, "acme").is_none());
        commit(&layout, &inst).unwrap();
        assert_eq!(read_digest(&layout, "acme"), Some(digest(&inst)));
    }
}
