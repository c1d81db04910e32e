//! Each backup copied to the off-host repositories that serve its tenant (`backup_repositories:`),
//! the outcome recorded per tenant and repository in `<backups>/<tenant>/offsite.json` (what
//! the metrics and alerts read), off-host snapshots listed beside the local archives, and a
//! backup that is no longer on this host fetched back for a restore.

use super::{BackupError, BackupInfo, Backups, io};
use crate::{
    desired::{Instance, host::HostConfig, repository::Repository},
    offsite::{Copied, Repo, Snapshot, Tags, restic::Restic},
    store::atomic,
};
use serde::{Deserialize, Serialize};
use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// How long a tenant's off-host listing is answered from memory: a dashboard that renders the
/// tenant's page again and again runs restic once in this while, not once per render.
pub const LISTED_FOR: Duration = Duration::from_secs(30);

type Listing = (Vec<Snapshot>, Vec<OffsiteFailure>);

/// Listings by tenant identity, with when they were made.
pub(super) type Listings = Arc<Mutex<BTreeMap<String, (Instant, Listing)>>>;

/// An archive fetched from off the host for one restore, removed when the restore ends.
pub(super) struct Fetched(Option<PathBuf>);

impl Drop for Fetched {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// One repository's copies of one tenant's backups, as far as this host knows.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct OffsiteRecord {
    /// Unix seconds of the last copy that landed.
    pub last_success: Option<u64>,
    pub last_failure: Option<u64>,
    /// Failed copies since this host's first.
    pub failures: u64,
    pub last_error: Option<String>,
    /// What the last copy added to the repository, and how long it took.
    pub bytes_added: u64,
    pub seconds: f64,
    pub snapshot: Option<String>,
}

/// A copy that did not land, or a repository that did not answer a listing.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct OffsiteFailure {
    pub repository: String,
    pub error: String,
}

/// The configured repositories with the restic client each is reached through.
pub(super) fn repositories(host: &HostConfig) -> Vec<(Repository, Arc<dyn Repo>)> {
    let cache = host.state_dir.join("restic-cache");
    host.backup_repositories
        .iter()
        .map(|r| {
            let client = Restic::new(r.clone(), cache.join(&r.name), &host.namespace);
            (r.clone(), Arc::new(client) as Arc<dyn Repo>)
        })
        .collect()
}

impl Backups {
    /// Whether `repo` (by name) serves `tenant` now.
    pub fn serves(&self, tenant: &str, repo: &str) -> bool {
        let Ok(inst) = self.instance(tenant) else {
            return false;
        };
        self.repos
            .iter()
            .any(|(r, _)| r.name == repo && r.serves(tenant, inst.plan.as_deref()))
    }

    fn serving(&self, inst: &Instance) -> Vec<Arc<dyn Repo>> {
        self.repos
            .iter()
            .filter(|(r, _)| r.serves(&inst.tenant, inst.plan.as_deref()))
            .map(|(_, c)| c.clone())
            .collect()
    }

    fn records_path(&self, tenant: &str) -> std::path::PathBuf {
        self.dir(tenant).join("offsite.json")
    }

    /// What this host knows of `tenant`'s copies, by repository.
    pub fn offsite_records(&self, tenant: &str) -> BTreeMap<String, OffsiteRecord> {
        std::fs::read(self.records_path(tenant))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn record(&self, tenant: &str, repo: &str, outcome: &Result<Copied, String>) {
        let mut all = self.offsite_records(tenant);
        let r = all.entry(repo.to_string()).or_default();
        let now = super::now();
        match outcome {
            Ok(c) => {
                r.last_success = Some(now);
                r.bytes_added = c.bytes_added;
                r.seconds = c.seconds;
                r.snapshot = Some(c.snapshot.clone());
            }
            Err(e) => {
                r.last_failure = Some(now);
                r.failures += 1;
                r.last_error = Some(e.clone());
            }
        }
        let path = self.records_path(tenant);
        let json = serde_json::to_vec_pretty(&all).expect("records serialize");
        if let Err(e) = atomic::write(&path, &json, 0o600) {
            tracing::warn!(tenant, path = %path.display(), error = %e, "cannot record the off-host copy");
        }
    }

    /// Copies the archive of `info` to every repository serving `inst`, one after another;
    /// each outcome goes into `info` and the tenant's records, a failure loudly into the log.
    pub(super) async fn copy_offsite(
        &self,
        inst: &Instance,
        info: &mut BackupInfo,
        tenant_id: &str,
    ) {
        let tenant = inst.tenant.as_str();
        let path = self.dir(tenant).join(format!("{}.tar", info.id));
        let tags = Tags {
            tenant: tenant.into(),
            tenant_id: tenant_id.into(),
            plan: inst
                .plan
                .clone()
                .or_else(|| self.cx.svc.host().default_plan.clone())
                .unwrap_or_default(),
            backup: info.id.clone(),
            version: info.version.clone(),
            created: info.created,
            bytes: info.bytes,
        };
        self.listed.lock().expect("listed lock").remove(tenant_id);
        for repo in self.serving(inst) {
            let outcome = repo.send(&path, &tags).await.map_err(|e| e.to_string());
            self.record(tenant, repo.name(), &outcome);
            match outcome {
                Ok(c) => {
                    tracing::info!(
                        tenant,
                        id = info.id,
                        repository = repo.name(),
                        snapshot = c.snapshot,
                        bytes_added = c.bytes_added,
                        "backup copied off the host"
                    );
                    info.offsite.push(c);
                }
                Err(error) => {
                    tracing::error!(
                        tenant,
                        id = info.id,
                        repository = repo.name(),
                        error,
                        "backup NOT copied off the host"
                    );
                    info.offsite_failed.push(OffsiteFailure {
                        repository: repo.name().into(),
                        error,
                    });
                }
            }
        }
        self.listed.lock().expect("listed lock").remove(tenant_id);
    }

    /// `tenant`'s snapshots in every repository serving it (only this tenant's: by identity),
    /// and the repositories that did not answer.
    pub async fn list_offsite(&self, tenant: &str) -> Listing {
        let (Ok(inst), Some(id)) = (self.instance(tenant), self.owner(tenant).id) else {
            return (vec![], vec![]);
        };
        if let Some((at, l)) = self.listed.lock().expect("listed lock").get(&id)
            && at.elapsed() < LISTED_FOR
        {
            return l.clone();
        }
        let (mut found, mut failed) = (Vec::new(), Vec::new());
        for repo in self.serving(&inst) {
            match repo.list(&id).await {
                Ok(v) => found.extend(v),
                Err(e) => failed.push(OffsiteFailure {
                    repository: repo.name().into(),
                    error: e.to_string(),
                }),
            }
        }
        found.sort_by(|a, b| b.backup.cmp(&a.backup));
        let listing = (found, failed);
        let mut cache = self.listed.lock().expect("listed lock");
        cache.retain(|_, (at, _)| at.elapsed() < LISTED_FOR);
        cache.insert(id, (Instant::now(), listing.clone()));
        listing
    }

    /// Brings backup `id` of `tenant` back from the first repository that holds it, when this
    /// host has no archive of that id (held to the backup filesystem's room, as a backup is);
    /// the archive goes again when the returned guard is dropped.
    pub(super) async fn fetch_offsite(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Fetched, BackupError> {
        let path = self.dir(tenant).join(format!("{id}.tar"));
        if path.exists() || id.contains('/') || id.contains("..") || self.repos.is_empty() {
            return Ok(Fetched(None));
        }
        self.listed.lock().expect("listed lock").clear();
        let (found, failed) = self.list_offsite(tenant).await;
        let Some(snap) = found.into_iter().find(|s| s.backup == id) else {
            if let Some(f) = failed.first() {
                return Err(BackupError::Offsite(format!(
                    "backup {id} is not on this host, and repository {} did not answer: {}",
                    f.repository, f.error
                )));
            }
            return Ok(Fetched(None));
        };
        let inst = self.instance(tenant)?;
        let room = self.room(&inst, false)?;
        room.take(snap.bytes)?;
        room.before_archive()?;
        let repo = self
            .repos
            .iter()
            .find(|(r, _)| r.name == snap.repository)
            .map(|(_, c)| c.clone())
            .expect("listed by a configured repository");
        let dir = self.dir(tenant);
        atomic::create_dir(&dir, 0o700).map_err(io(&dir))?;
        repo.fetch(&snap, &path)
            .await
            .map_err(|e| BackupError::Offsite(e.to_string()))?;
        tracing::info!(
            tenant,
            id,
            repository = snap.repository,
            snapshot = snap.snapshot,
            "backup fetched from off the host"
        );
        Ok(Fetched(Some(path)))
    }
}
