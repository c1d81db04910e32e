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
    // Written whole under a name of its own, then linked into place, which never replaces:
    // of two callers racing to make the id, one wins and both return the winner's.
    let tmp = dir.join(format!(".id-{}", hex::encode(&b[..6])));
    atomic::write(&tmp, id.as_bytes(), 0o600)?;
    let linked = std::fs::hard_link(&tmp, path(layout, t));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(id),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => current(layout, t)
            .ok_or_else(|| std::io::Error::other("the tenant's id file is unreadable")),
        Err(e) => Err(e),
    }
}

/// `t`'s id if the tenant exists (its directory is there: running, or removed without purge),
/// made now for a tenant from before identities; None for a purged or unknown name. Nothing is
/// made for a name without a directory, so an operation still running when its tenant is
/// purged cannot give the name an identity a later tenant would inherit.
pub fn of_existing(layout: &Layout, t: &str) -> Option<String> {
    if !layout.tenant(t).exists() {
        return None;
    }
    ensure(layout, t, None).ok()
}

/// When tenant `t` came to be, in Unix seconds: its oldest secret (made once, when the tenant
/// was first provisioned, and never rewritten), else its id file. Records from before
/// identities (archives, tokens) are trusted as `t`'s only if they are no older than this: a
/// name purged and reused before berth had identities gets a new birth.
pub fn born(layout: &Layout, t: &str) -> Option<u64> {
    let secs = |m: std::fs::Metadata| {
        m.modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs())
    };
    let secrets = std::fs::read_dir(layout.tenant(t).join("secrets"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok().and_then(secs))
        .min();
    secrets.or_else(|| std::fs::metadata(path(layout, t)).ok().and_then(secs))
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
    fn callers_racing_to_make_an_id_all_get_the_same_one() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(d.path().join("state"));
        let ids: Vec<String> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| ensure(&layout, "acme", None).unwrap()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
        assert_eq!(current(&layout, "acme").unwrap(), ids[0]);
        assert!(of_existing(&layout, "gone").is_none());
        assert!(
            !layout.tenant("gone").exists(),
            "nothing made for a purged name"
        );
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
