//! A tenant is an identity, not a name. Each tenant gets a random id (128 bits from the OS's
//! CSPRNG) when it is first created — or, for a tenant that predates ids, first seen — kept in
//! `tenants/<t>/id` beside its secrets, and gone with them when the tenant is purged. Backups
//! and tokens record the id they were made for, so a later tenant that reuses the name starts
//! empty: it lists none of the old tenant's backups, restores none of them, and the old
//! tenant's tokens are refused.

use super::{Layout, atomic};
use std::path::Path;

/// The id file of tenant `t`.
fn path(layout: &Layout, t: &str) -> std::path::PathBuf {
    layout.tenant(t).join("id")
}

/// `t`'s id, if it has one (None: never created, or purged).
pub fn current(layout: &Layout, t: &str) -> Option<String> {
    let id = std::fs::read_to_string(path(layout, t)).ok()?;
    let id = id.trim();
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_string())
}

/// `t`'s id, made now if it has none. A tenant with no directory at all is new: backups left
/// under its name by a tenant purged before ids existed are moved to `<backup_dir>/.orphaned/`
/// (the operator's, listed by no tenant) so the new tenant starts empty. A tenant whose
/// directory exists but has no id predates ids and keeps its backups.
pub fn ensure(layout: &Layout, t: &str, backup_dir: Option<&Path>) -> std::io::Result<String> {
    if let Some(id) = current(layout, t) {
        return Ok(id);
    }
    let dir = layout.tenant(t);
    if !dir.exists()
        && let Some(backups) = backup_dir
    {
        set_aside_orphans(backups, t)?;
    }
    atomic::create_dir(&dir, 0o700)?;
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| std::io::Error::other(format!("no randomness: {e}")))?;
    let id = hex::encode(b);
    atomic::write(&path(layout, t), id.as_bytes(), 0o600)?;
    Ok(id)
}

/// Moves `<backups>/<t>` (another, earlier tenant's) to `<backups>/.orphaned/<t>-<unix time>`.
fn set_aside_orphans(backups: &Path, t: &str) -> std::io::Result<()> {
    let old = backups.join(t);
    if !old.exists() {
        return Ok(());
    }
    let aside = backups.join(".orphaned");
    atomic::create_dir(&aside, 0o700)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let to = aside.join(format!("{t}-{now}"));
    tracing::warn!(tenant = t, to = %to.display(), "backups of an earlier tenant of this name set aside");
    std::fs::rename(&old, &to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_made_once_and_goes_with_the_tenants_directory() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(d.path().join("state"));
        assert_eq!(current(&layout, "acme"), None);
        let a = ensure(&layout, "acme", None).unwrap();
        assert_eq!(ensure(&layout, "acme", None).unwrap(), a);
        assert_eq!(current(&layout, "acme").as_deref(), Some(a.as_str()));
        std::fs::remove_dir_all(layout.tenant("acme")).unwrap();
        let b = ensure(&layout, "acme", None).unwrap();
        assert_ne!(a, b, "a purged name gets a new identity");
    }

    #[test]
    fn a_new_tenant_does_not_inherit_backups_left_under_its_name() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(d.path().join("state"));
        let backups = d.path().join("backups");
        std::fs::create_dir_all(backups.join("acme")).unwrap();
        std::fs::write(backups.join("acme/old.tar"), b"x").unwrap();
        ensure(&layout, "acme", Some(&backups)).unwrap();
        assert!(!backups.join("acme").exists());
        let aside: Vec<_> = std::fs::read_dir(backups.join(".orphaned"))
            .unwrap()
            .collect();
        assert_eq!(aside.len(), 1);
    }

    #[test]
    fn a_tenant_from_before_ids_keeps_its_backups() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(d.path().join("state"));
        let backups = d.path().join("backups");
        std::fs::create_dir_all(layout.tenant("acme")).unwrap();
        std::fs::create_dir_all(backups.join("acme")).unwrap();
        ensure(&layout, "acme", Some(&backups)).unwrap();
        assert!(backups.join("acme").exists());
    }
}
