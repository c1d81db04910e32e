//! Whole-host recovery (`berth recover --repo R`): on a host that lost its state, every tenant
//! in the repository's newest inventory of this host comes back as the tenant it was — its
//! identity, secrets, instance file and proven custom domains, then its database and volumes
//! from its newest snapshot — and each tenant's outcome is reported. A tenant that already
//! exists here is left alone; one that fails is removed whole (so running the recovery again
//! retries exactly the failed ones). Certificates are issued again as for any new tenant.

use super::{BackupError, Backups, INSTANCE_MEMBER, archive::Manifest, io};
use crate::{
    domains::DomainBook,
    offsite::{Repo, Snapshot, inventory::Entry},
    spec::instance::{InstanceFile, RunState},
    store::atomic,
};
use futures_util::StreamExt;
use serde::Serialize;
use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    sync::Arc,
    time::Instant,
};

/// Tenants brought back at once (their data loads still take the host's backup turns).
const AT_ONCE: usize = 8;

#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    pub repository: String,
    /// The inventory snapshot read, and when it was written (Unix seconds).
    pub inventory: String,
    pub inventory_created: u64,
    pub tenants: Vec<Recovered>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Recovered {
    pub tenant: String,
    pub tenant_id: String,
    /// `recovered`, `exists` (left alone) or `failed`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// When the restored backup was taken (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taken: Option<u64>,
    pub domains: Vec<String>,
    pub restored: Vec<String>,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Backups {
    /// Recovers every tenant of repository `repo`'s newest inventory of this host, or of its
    /// inventory `older` (only those in `only`, when it names any).
    pub async fn recover(
        &self,
        repo: &str,
        only: &BTreeSet<String>,
        older: Option<&str>,
        book: &DomainBook,
    ) -> Result<Recovery, BackupError> {
        let started = Instant::now();
        // One recovery at a time on the host: two would race to make the same tenants.
        let _one = self
            .recovering
            .try_lock()
            .map_err(|_| BackupError::RecoveryRunning)?;
        let client = self.repo_client(repo)?;
        let (snapshot, inv) = client
            .inventory(older)
            .await
            .map_err(|e| BackupError::Offsite(e.to_string()))?
            .ok_or_else(|| {
                BackupError::Offsite(format!(
                    "repository {repo} holds no inventory of host {:?}: nothing is known to recover (is this berth.yaml's namespace the lost host's?)",
                    self.cx.svc.host().namespace
                ))
            })?;
        if let Some(t) = only
            .iter()
            .find(|t| !inv.tenants.iter().any(|e| &e.tenant == *t))
        {
            return Err(BackupError::UnknownTenant(format!(
                "{t} (not in repository {repo}'s inventory {snapshot})"
            )));
        }
        let mut wanted: Vec<Entry> = inv
            .tenants
            .iter()
            .filter(|e| only.is_empty() || only.contains(&e.tenant))
            .cloned()
            .collect();
        // This host now writes the repository's inventory, carrying every tenant of this one
        // until it is back here: a recovery that fails (or is asked for a few tenants) never
        // leaves the rest unknown to the next. From an older inventory, only the tenants asked
        // for are carried (its others may have been purged since), beside the newest's, and
        // only the domain proofs the newest still holds for the same identity come back.
        match older {
            None => self.adopt(repo, inv.tenants.clone()),
            Some(_) => {
                let newest = client.inventory(None).await.ok().flatten().map(|(_, i)| i);
                for e in &mut wanted {
                    e.keep_proven_in(newest.as_ref());
                }
                // The newest unreadable: none of its tenants can be carried, so every tenant
                // of this one is (never an inventory that forgets a tenant both name).
                match newest {
                    Some(n) if !self.inventories.owns(repo) => self.adopt(repo, n.tenants),
                    Some(_) => {}
                    None => self.adopt(repo, inv.tenants.clone()),
                }
                self.adopt(repo, wanted.clone());
            }
        }
        // Built in a loop, not a closure in the stream (whose future the compiler cannot
        // prove Send for every lifetime); futures are lazy, so AT_ONCE still run at a time.
        let mut each = Vec::new();
        for e in &wanted {
            each.push(self.recover_one(client.clone(), e, None, book));
        }
        let tenants = futures_util::stream::iter(each)
            .buffer_unordered(AT_ONCE)
            .collect::<Vec<_>>()
            .await;
        let mut tenants = tenants;
        tenants.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        Ok(Recovery {
            repository: repo.into(),
            inventory: snapshot,
            inventory_created: inv.created,
            tenants,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// The client of configured repository `repo`.
    pub(super) fn repo_client(&self, repo: &str) -> Result<Arc<dyn Repo>, BackupError> {
        self.repos
            .iter()
            .find(|(r, _)| r.name == repo)
            .map(|(_, c)| c.clone())
            .ok_or_else(|| BackupError::NoRepository(repo.into()))
    }

    /// Brings tenant `e` back from its newest snapshot (or from backup `want`).
    pub(super) async fn recover_one(
        &self,
        repo: Arc<dyn Repo>,
        e: &Entry,
        want: Option<&str>,
        book: &DomainBook,
    ) -> Recovered {
        let started = Instant::now();
        let mut r = Recovered {
            tenant: e.tenant.clone(),
            tenant_id: e.tenant_id.clone(),
            outcome: "recovered",
            backup: None,
            taken: None,
            domains: e.domains.keys().cloned().collect(),
            restored: vec![],
            seconds: 0.0,
            error: None,
        };
        // Marked while it is half made: an agent stopped meanwhile purges it at its next start
        // (as a verify's scratch tenant), so the next recovery makes it again.
        let mut mark = None;
        let outcome = self
            .bring_back(repo, (e, want), book, &mut r, &mut mark)
            .await;
        match outcome {
            Ok(()) => {
                tracing::info!(tenant = e.tenant, "tenant recovered");
                self.adopt_tokens(&e.tenant, &e.tenant_id, &e.tokens);
            }
            Err(Skip::Exists) => r.outcome = Skipped::EXISTS,
            Err(Skip::Failed(why, made)) => {
                tracing::error!(tenant = e.tenant, error = why, "tenant NOT recovered");
                if made {
                    if let Err(err) = book.forget_tenant(&e.tenant) {
                        tracing::warn!(tenant = e.tenant, error = %err, "cannot unbind its domains");
                    }
                    self.discard(&e.tenant);
                }
                r.outcome = Skipped::FAILED;
                r.error = Some(why);
            }
        }
        // Only the mark this recovery made, and only once the tenant is whole or gone.
        if let Some(m) = mark {
            let _ = std::fs::remove_file(m);
        }
        r.seconds = started.elapsed().as_secs_f64();
        r
    }

    async fn bring_back(
        &self,
        repo: Arc<dyn Repo>,
        (e, want): (&Entry, Option<&str>),
        book: &DomainBook,
        r: &mut Recovered,
        mark: &mut Option<PathBuf>,
    ) -> Result<(), Skip> {
        let t = e.tenant.as_str();
        if self.cx.svc.layout().purge_marker(t).exists() {
            let why = "it is still being removed (an earlier attempt failed): run the recovery again in a moment";
            return Err(Skip::Failed(why.into(), false));
        }
        let _claim = self
            .claim(t)
            .map_err(|e| Skip::Failed(e.to_string(), false))?;
        let fail = |made: bool| move |e: BackupError| Skip::Failed(e.to_string(), made);
        let snap = newest(repo.as_ref(), e, want).await.map_err(fail(false))?;
        (r.backup, r.taken) = (Some(snap.backup.clone()), Some(snap.created));
        if let Some((d, other)) = e
            .domains
            .keys()
            .find_map(|d| book.bound_to(d).filter(|o| o != t).map(|o| (d.clone(), o)))
        {
            let why = format!("its domain {d} is bound to tenant {other} on this host");
            return Err(Skip::Failed(why, false));
        }
        // From here on the tenant exists in part; any failure removes it whole.
        *mark = Some(self.start_tenant(t, &e.tenant_id).await?);
        self.fetch_snapshot(repo.as_ref(), t, &snap)
            .await
            .map_err(fail(true))?;
        let (_spool, manifest, members) = self.open(t, &snap.backup).map_err(fail(true))?;
        self.put_secrets(t, &members).map_err(fail(true))?;
        let mail = crate::mail::relay::Paths::new(self.cx.svc.layout());
        crate::mail::dkim::put_back(&mail, t, &members)
            .map_err(|e| Skip::Failed(e.to_string(), true))?;
        let (instance, state) = recovered_file(&manifest, &members).map_err(fail(true))?;
        self.create_file(&instance).await.map_err(fail(true))?;
        // The tenant comes up with the others, then is held (no requests, jobs or sleep) until
        // its data is in, which loads in one of the host's backup turns.
        self.wait_running(t).await.map_err(fail(true))?;
        let limit = crate::sleep::WAKE_LIMIT;
        let _awake = crate::sleep::wake_for(&self.cx, t, "restore", limit)
            .await
            .map_err(|why| Skip::Failed(why.to_string(), true))?;
        let _hold = self.cx.passes.hold_guard(t).await;
        let turn = self.turn().await;
        r.restored = self.bring_up(t, &members).await.map_err(fail(true))?;
        drop(turn);
        // Bound last: a recovery stopped before this point leaves no binding behind.
        for (domain, binding) in &e.domains {
            let taken = book
                .rebind(domain, binding)
                .map_err(|e| Skip::Failed(e.to_string(), true))?;
            if let Some(other) = taken {
                let why = format!("its domain {domain} is bound to tenant {other} on this host");
                return Err(Skip::Failed(why, true));
            }
        }
        if state != RunState::Running {
            self.set_state(&instance, state).await.map_err(fail(true))?;
        }
        Ok(())
    }

    /// Claims the name for the recovery under the files lock (an instance file, state
    /// directory or `berth add` of it since is `exists`): marks it half made (an agent stopped
    /// now purges it at its next start, so the next recovery makes it again) and makes its
    /// directory with its identity from the inventory. The mark's path.
    async fn start_tenant(&self, t: &str, id: &str) -> Result<PathBuf, Skip> {
        let layout = self.cx.svc.layout();
        let lock = self.cx.svc.files_lock();
        let _files = lock.lock().await;
        let file = self.cx.svc.host().instances_dir.join(format!("{t}.yaml"));
        if file.exists() || layout.tenant(t).exists() {
            return Err(Skip::Exists);
        }
        let failed = |e: std::io::Error| Skip::Failed(e.to_string(), false);
        let scratch = layout.scratch_dir();
        atomic::create_dir(&scratch, 0o700).map_err(failed)?;
        let mark = scratch.join(t);
        atomic::write(&mark, b"", 0o600).map_err(failed)?;
        if let Err(e) = self.put_identity(t, id) {
            return Err(Skip::Failed(e.to_string(), true));
        }
        Ok(mark)
    }

    /// The tenant's directory, made with its identity from the inventory.
    fn put_identity(&self, t: &str, id: &str) -> Result<(), BackupError> {
        let dir = self.cx.svc.layout().tenant(t);
        atomic::create_dir(&dir, 0o700).map_err(io(&dir))?;
        let path = dir.join("id");
        atomic::write(&path, id.as_bytes(), 0o600).map_err(io(&path))
    }

    /// Brings `snap` into the tenant's backup directory (kept there: it is the tenant's
    /// newest backup), held to the backup filesystem's room.
    async fn fetch_snapshot(
        &self,
        repo: &dyn Repo,
        t: &str,
        snap: &Snapshot,
    ) -> Result<(), BackupError> {
        let dir = self.dir(t);
        atomic::create_dir(&dir, 0o700).map_err(io(&dir))?;
        let layout = self.cx.svc.layout();
        let overcommit = self.cx.svc.host().admission.disk_overcommit;
        let room = super::room::Room::new(t, &dir, (&layout.disks(), overcommit), None)?;
        room.take(snap.bytes)?;
        room.before_archive()?;
        let path = dir.join(format!("{}.tar", snap.backup));
        repo.fetch(snap, &path)
            .await
            .map_err(|e| BackupError::Offsite(e.to_string()))?;
        // The room was counted by the snapshot's own word: hold it to it.
        let got = std::fs::metadata(&path).map_err(io(&path))?.len();
        if got != snap.bytes {
            let _ = std::fs::remove_file(&path);
            return Err(BackupError::Offsite(format!(
                "snapshot {} holds {got} bytes, its tags say {}: refused",
                snap.snapshot, snap.bytes
            )));
        }
        Ok(())
    }

    /// The tenant's own secrets from the archive (`files/secrets/<name>`, 0600), before its
    /// instance file exists: the reconciler then renders its services' files from them
    /// instead of making new ones. Nothing else of the archive's files is taken: the rest is
    /// rendered again.
    fn put_secrets(&self, t: &str, members: &BTreeMap<String, PathBuf>) -> Result<(), BackupError> {
        let dir = self.cx.svc.layout().tenant(t).join("secrets");
        for (name, file) in members {
            let Some(secret) = name.strip_prefix("files/secrets/") else {
                continue;
            };
            if !is_secret_name(secret) {
                return Err(BackupError::Invalid {
                    tenant: t.into(),
                    why: format!("its backup holds a secret named {secret:?}: refused"),
                });
            }
            atomic::create_dir(&dir, 0o700).map_err(io(&dir))?;
            let value = std::fs::read(file).map_err(io(file))?;
            let path = dir.join(secret);
            atomic::write(&path, &value, 0o600).map_err(io(&path))?;
        }
        Ok(())
    }

    /// Writes the recovered tenant's file again with the state it had (it came back running,
    /// to have its data loaded).
    async fn set_state(&self, file: &InstanceFile, state: RunState) -> Result<(), BackupError> {
        let mut file = file.clone();
        file.state = state;
        let path = self
            .cx
            .svc
            .host()
            .instances_dir
            .join(format!("{}.yaml", file.tenant));
        let lock = self.cx.svc.files_lock();
        let _guard = lock.lock().await;
        // Removed or changed meanwhile (an operator's purge, a tenant-admin's edit): theirs.
        let now = std::fs::read(&path).ok();
        let ours = serde_yaml::to_string(&{
            let mut running = file.clone();
            running.state = RunState::Running;
            running
        })
        .expect("instance file serializes");
        if now.as_deref() != Some(ours.as_bytes()) {
            return Ok(());
        }
        let yaml = serde_yaml::to_string(&file).expect("instance file serializes");
        atomic::write(&path, yaml.as_bytes(), 0o644).map_err(io(&path))?;
        self.cx.passes.kick();
        Ok(())
    }
}

/// The outcomes of a tenant not recovered.
pub struct Skipped;

impl Skipped {
    pub const EXISTS: &'static str = "exists";
    pub const FAILED: &'static str = "failed";
}

enum Skip {
    /// The tenant exists on this host: not touched.
    Exists,
    /// Why, and whether anything of the tenant was made (to be removed).
    Failed(String, bool),
}

/// The newest snapshot of `e`'s identity (of backup `want`, when given).
async fn newest(repo: &dyn Repo, e: &Entry, want: Option<&str>) -> Result<Snapshot, BackupError> {
    let snaps = repo
        .list(&e.tenant_id)
        .await
        .map_err(|e| BackupError::Offsite(e.to_string()))?;
    snaps
        .into_iter()
        .filter(|s| s.tenant == e.tenant && want.is_none_or(|w| s.backup == w))
        .max_by_key(|s| (s.created, s.backup.clone()))
        .ok_or_else(|| {
            let which = want.map_or("no snapshot".into(), |w| format!("no backup {w}"));
            BackupError::Offsite(format!(
                "repository {} has {which} of this tenant (identity {})",
                repo.name(),
                e.tenant_id
            ))
        })
}

/// A secret's file name as berth makes them: a plain name, no path.
fn is_secret_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// The tenant's instance file as backed up, at the version the data was taken at, running
/// (so its data can be loaded); and the state it is to have after.
fn recovered_file(
    manifest: &Manifest,
    members: &BTreeMap<String, PathBuf>,
) -> Result<(InstanceFile, RunState), BackupError> {
    let bad = |why: String| BackupError::Invalid {
        tenant: manifest.tenant.clone(),
        why: format!("{INSTANCE_MEMBER} in backup {}: {why}", manifest.id),
    };
    let path = members
        .get(INSTANCE_MEMBER)
        .ok_or_else(|| bad("missing: a backup without one cannot be recovered".into()))?;
    let bytes = std::fs::read(path).map_err(io(path))?;
    let mut file: InstanceFile = serde_yaml::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    if file.tenant != manifest.tenant {
        return Err(bad(format!("it names tenant {:?}", file.tenant)));
    }
    file.version = Some(manifest.version.clone());
    let state = std::mem::replace(&mut file.state, RunState::Running);
    Ok((file, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        super::super::archive::sample_manifest()
    }

    fn members(yaml: &str) -> (tempfile::TempDir, BTreeMap<String, PathBuf>) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("i");
        std::fs::write(&p, yaml).unwrap();
        (d, BTreeMap::from([(INSTANCE_MEMBER.to_string(), p)]))
    }

    #[test]
    fn a_recovered_file_keeps_domains_and_pinning_comes_up_running_and_remembers_its_state() {
        let (_d, m) = members(
            "tenant: acme\ntemplate: demo\nversion: '3'\ndomains: [shop.acme.test]\nstate: stopped\npinned: true\n",
        );
        let (f, state) = recovered_file(&manifest(), &m).unwrap();
        assert_eq!(f.domains, ["shop.acme.test"]);
        assert!(f.pinned);
        assert_eq!(f.version.as_deref(), Some("2"), "the data's version");
        assert_eq!((f.state, state), (RunState::Running, RunState::Stopped));
    }

    #[test]
    fn an_archive_whose_instance_file_names_another_tenant_or_has_none_is_refused() {
        let (_d, m) = members("tenant: evil\ntemplate: demo\n");
        let e = recovered_file(&manifest(), &m).unwrap_err().to_string();
        assert!(e.contains("evil"), "{e}");
        let e = recovered_file(&manifest(), &BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }

    #[test]
    fn only_plain_secret_names_are_written() {
        for ok in ["db_password", "wp-salt", "key.pem"] {
            assert!(is_secret_name(ok), "{ok}");
        }
        for bad in ["", "../id", "a/b", ".hidden", "x\0y"] {
            assert!(!is_secret_name(bad), "{bad:?}");
        }
    }
}
