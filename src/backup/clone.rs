//! A backup brought up as a new tenant: `restore NEW --from T:ID` (a clone with its own secrets
//! and subdomain, no custom domains) and `backup verify T:ID` (a scratch clone that must pass its
//! health check, then goes). A clone that fails is removed whole: no half-created tenant.

use super::{BackupError, Backups, INSTANCE_MEMBER, archive::Manifest};
use crate::{
    desired::{self, host::is_dns_label},
    proxy::health,
    proxy::target::Target,
    services::Phase,
    spec::instance::{InstanceFile, RunState},
    store::atomic,
};
use serde::Serialize;
use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

/// How long a clone may take to be provisioned and report running.
const COME_UP: Duration = Duration::from_secs(300);
/// How long the restored clone has to answer its health check.
const HEALTHY: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Serialize)]
pub struct CloneReport {
    pub tenant: String,
    pub from: String,
    pub id: String,
    pub template: String,
    pub version: String,
    /// Archive members restored into the clone (database dump, volumes).
    pub restored: Vec<String>,
    pub healthy: bool,
    pub seconds: f64,
    /// Verify only: the scratch tenant is gone again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed: Option<bool>,
}

impl Backups {
    /// Creates tenant `new` from backup `id` of `from`: same template, version and values, new
    /// secrets, its own subdomain and none of the source's custom domains or paths.
    /// It takes a turn among the host's backups, restores and verifies, and claims `new`
    /// (a second clone into the same name at once is refused).
    pub async fn clone_as(
        &self,
        from: &str,
        id: &str,
        new: &str,
    ) -> Result<CloneReport, BackupError> {
        let _turn = self.turn().await;
        let _claim = self.claim(new)?;
        self.clone_into(from, id, new).await
    }

    /// `clone_as` without a turn of its own (a verify holds one).
    async fn clone_into(
        &self,
        from: &str,
        id: &str,
        new: &str,
    ) -> Result<CloneReport, BackupError> {
        let started = Instant::now();
        if !is_dns_label(new) {
            return Err(BackupError::Invalid {
                tenant: new.into(),
                why: "not a valid tenant name (a DNS label: a-z, 0-9, inner -)".into(),
            });
        }
        let (_spool, manifest, members) = self.open(from, id)?;
        let instance = match members.get(INSTANCE_MEMBER) {
            Some(f) => Some(std::fs::read(f).map_err(super::io(f))?),
            None => None,
        };
        let file = clone_file(&manifest, instance.as_deref(), new)?;
        self.create_file(&file).await?;
        let result = self.bring_up(new, &members).await;
        match result {
            Ok(restored) => {
                tracing::info!(tenant = new, from, id, "backup cloned");
                Ok(CloneReport {
                    tenant: new.into(),
                    from: from.into(),
                    id: id.into(),
                    template: manifest.template,
                    version: manifest.version,
                    restored,
                    healthy: true,
                    seconds: started.elapsed().as_secs_f64(),
                    removed: None,
                })
            }
            Err(e) => {
                tracing::warn!(tenant = new, error = %e, "clone failed; removing it");
                self.discard(new);
                Err(e)
            }
        }
    }

    /// Restores backup `id` of `from` into a scratch tenant, checks it answers healthy, and
    /// removes it again; the archive is proven usable, not just readable.
    pub async fn verify(&self, from: &str, id: &str) -> Result<CloneReport, BackupError> {
        let started = Instant::now();
        let _turn = self.turn().await;
        let mut r = [0u8; 4];
        getrandom::fill(&mut r).map_err(|e| BackupError::Invalid {
            tenant: from.into(),
            why: format!("no randomness for a scratch name: {e}"),
        })?;
        let scratch = format!("verify-{}", hex::encode(r));
        // Marked before it exists and removed on every way out (an error, a panic): a scratch
        // tenant never outlives its verify; one an agent was stopped in goes at its next start.
        let file = self
            .cx
            .svc
            .host()
            .instances_dir
            .join(format!("{scratch}.yaml"));
        if file.exists() || self.cx.svc.layout().tenant(&scratch).exists() {
            // A tenant of that name exists: never the verify's to remove.
            return Err(BackupError::Exists(scratch));
        }
        let dir = self.cx.svc.layout().scratch_dir();
        atomic::create_dir(&dir, 0o700).map_err(super::io(&dir))?;
        let mark = dir.join(&scratch);
        atomic::write(&mark, b"", 0o600).map_err(super::io(&mark))?;
        let guard = Scratch {
            backups: self,
            tenant: scratch.clone(),
        };
        let mut report = self.clone_into(from, id, &scratch).await?;
        drop(guard);
        report.removed = Some(self.wait_gone(&scratch).await);
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// Removes the scratch tenants an agent stopped in the middle of a verify left behind,
    /// and the tenants it was recovering (`recover.rs`) but had not finished.
    pub fn discard_scratch(&self) {
        let dir = self.cx.svc.layout().scratch_dir();
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let t = e.file_name().to_string_lossy().to_string();
            if crate::desired::instance::is_tenant_name(&t) {
                tracing::warn!(
                    tenant = t,
                    "removing the scratch tenant of an interrupted verify, or a tenant an interrupted recovery half made"
                );
                self.discard(&t);
            }
            let _ = std::fs::remove_file(e.path());
        }
    }

    /// Writes the clone's instance file after the same checks `berth add` makes.
    pub(super) async fn create_file(&self, file: &InstanceFile) -> Result<(), BackupError> {
        let t = &file.tenant;
        let path = self.cx.svc.host().instances_dir.join(format!("{t}.yaml"));
        let lock = self.cx.svc.files_lock();
        let _guard = lock.lock().await;
        if path.exists() || self.cx.svc.layout().purge_marker(t).exists() {
            return Err(BackupError::Exists(t.clone()));
        }
        let host = self.cx.svc.host().clone();
        let checked = file.clone();
        tokio::task::spawn_blocking(move || desired::check_candidate(&host, &checked))
            .await
            .expect("validation does not panic")
            .map_err(|e| BackupError::Invalid {
                tenant: t.clone(),
                why: e.to_string(),
            })?;
        let yaml = serde_yaml::to_string(file).expect("instance file serializes");
        let layout = self.cx.svc.layout();
        crate::store::identity::ensure(layout, t, Some(&self.cx.svc.host().backup_dir))
            .map_err(super::io(&layout.tenant(t)))?;
        atomic::write(&path, yaml.as_bytes(), 0o644).map_err(super::io(&path))?;
        self.cx.passes.reset_backoff(t);
        self.cx.passes.kick();
        Ok(())
    }

    /// Waits for the new tenant to run, restores the data into it, and checks it is healthy.
    pub(super) async fn bring_up(
        &self,
        t: &str,
        members: &BTreeMap<String, std::path::PathBuf>,
    ) -> Result<Vec<String>, BackupError> {
        self.wait_running(t).await?;
        self.restore_members(t, members).await?;
        let inst = self.instance(t)?;
        let alloc = self
            .cx
            .svc
            .allocations()
            .get(t)
            .ok_or_else(|| not_ready(t, "no address allocated".into()))?;
        let at = self.cx.passes.web_at(t, inst.web.port, &alloc);
        let target = Target::new(at, Duration::from_secs(2));
        let host = health::probe_host(&inst, self.cx.svc.host().base_domain.as_deref());
        health::wait_healthy(&target, &inst.web.health_path, &host, 2, HEALTHY)
            .await
            .map_err(|e| not_ready(t, format!("unhealthy after the restore: {e}")))?;
        Ok(members
            .keys()
            .filter(|m| *m == "database.sql" || m.starts_with("volumes/"))
            .cloned()
            .collect())
    }

    pub(super) async fn wait_running(&self, t: &str) -> Result<(), BackupError> {
        let deadline = Instant::now() + COME_UP;
        let mut last = String::from("not seen by the reconciler yet");
        while Instant::now() < deadline {
            if let Some(s) = self.cx.passes.status_of(t) {
                match s.phase {
                    Phase::Running => return Ok(()),
                    Phase::Invalid => {
                        return Err(not_ready(t, s.error.clone().unwrap_or_default()));
                    }
                    p => {
                        last = format!(
                            "{p:?}{}",
                            s.error
                                .as_ref()
                                .map(|e| format!(": {e}"))
                                .unwrap_or_default()
                        )
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Err(not_ready(t, format!("still {last} after {COME_UP:?}")))
    }

    /// Removes tenant `t` with everything it has (tombstone first, as `berth rm --purge`).
    pub(super) fn discard(&self, t: &str) {
        let marker = self.cx.svc.layout().purge_marker(t);
        if let Err(e) = atomic::write(&marker, b"", 0o600) {
            tracing::error!(tenant = t, error = %e, "cannot mark for purge");
        }
        let path = self.cx.svc.host().instances_dir.join(format!("{t}.yaml"));
        let _ = std::fs::remove_file(path);
        self.cx.passes.kick();
    }

    async fn wait_gone(&self, t: &str) -> bool {
        let deadline = Instant::now() + COME_UP;
        while Instant::now() < deadline {
            let listed = self.cx.passes.status_of(t).is_some();
            if !listed && !self.cx.svc.layout().purge_marker(t).exists() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        false
    }
}

/// A verify's scratch tenant, removed (as `rm --purge`) when this is dropped.
struct Scratch<'a> {
    backups: &'a Backups,
    tenant: String,
}

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        self.backups.discard(&self.tenant);
        let _ = std::fs::remove_file(
            self.backups
                .cx
                .svc
                .layout()
                .scratch_dir()
                .join(&self.tenant),
        );
    }
}

fn not_ready(t: &str, why: String) -> BackupError {
    BackupError::NotReady {
        tenant: t.into(),
        why,
    }
}

/// The clone's instance file: the source's as backed up (or the manifest's template and version
/// for archives without one), renamed, without domains, aliases or paths, not pinned, running.
fn clone_file(
    manifest: &Manifest,
    instance: Option<&[u8]>,
    new: &str,
) -> Result<InstanceFile, BackupError> {
    let mut file = match instance {
        Some(bytes) => {
            serde_yaml::from_slice::<InstanceFile>(bytes).map_err(|e| BackupError::Invalid {
                tenant: manifest.tenant.clone(),
                why: format!("{INSTANCE_MEMBER} in backup {}: {e}", manifest.id),
            })?
        }
        None => InstanceFile {
            tenant: String::new(),
            template: manifest.template.clone(),
            version: None,
            domains: vec![],
            aliases: vec![],
            paths: vec![],
            plan: None,
            limits: None,
            parameters: BTreeMap::new(),
            state: RunState::Running,
            pinned: false,
            labels: BTreeMap::new(),
        },
    };
    file.tenant = new.into();
    // The data belongs to the version the backup was taken at.
    file.version = Some(manifest.version.clone());
    file.domains.clear();
    file.aliases.clear();
    file.paths.clear();
    file.state = RunState::Running;
    file.pinned = false;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        super::super::archive::sample_manifest()
    }

    #[test]
    fn a_clone_keeps_template_version_and_values_but_not_domains_or_pinning() {
        let src = "tenant: acme\ntemplate: demo\nversion: '3'\ndomains: [shop.acme.test]\npaths: [sites.test/acme]\nplan: small\nparameters: {site_name: Acme}\nstate: stopped\npinned: true\n";
        let f = clone_file(&manifest(), Some(src.as_bytes()), "acme-copy").unwrap();
        assert_eq!(f.tenant, "acme-copy");
        assert_eq!(
            f.version.as_deref(),
            Some("2"),
            "the backup's version, not the file's"
        );
        assert_eq!(f.plan.as_deref(), Some("small"));
        assert!(f.parameters.contains_key("site_name"));
        assert!(f.domains.is_empty() && f.paths.is_empty() && !f.pinned);
        assert_eq!(f.state, RunState::Running);
    }

    #[test]
    fn an_archive_without_an_instance_file_clones_from_its_manifest() {
        let f = clone_file(&manifest(), None, "b").unwrap();
        assert_eq!(
            (f.template.as_str(), f.version.as_deref()),
            ("demo", Some("2"))
        );
    }
}
