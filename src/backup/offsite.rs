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

/// Tenants' off-host listings by identity: answered from memory for `LISTED_FOR`, one restic
/// listing per identity at a time (a tenant asking a hundred times at once runs one), and
/// never a listing that began before a copy landed.
#[derive(Default)]
pub(super) struct Listings {
    made: Mutex<BTreeMap<String, (Instant, Listing)>>,
    /// When each identity's listing last went stale (a copy ended, a fetch looks).
    stale: Mutex<BTreeMap<String, Instant>>,
    /// The listing under way per identity; a second asker waits on it, then reads `made`.
    flights: Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Listings {
    fn fresh(&self, id: &str) -> Option<Listing> {
        let made = self.made.lock().expect("made lock");
        let (at, l) = made.get(id)?;
        let stale = self.stale.lock().expect("stale lock").get(id).copied();
        (at.elapsed() < LISTED_FOR && stale.is_none_or(|s| s < *at)).then(|| l.clone())
    }

    /// Keeps `l`, begun at `started`, unless the identity went stale since.
    fn keep(&self, id: &str, started: Instant, l: &Listing) {
        let stale = self.stale.lock().expect("stale lock").get(id).copied();
        if stale.is_some_and(|s| s >= started) {
            return;
        }
        let mut made = self.made.lock().expect("made lock");
        made.retain(|_, (at, _)| at.elapsed() < LISTED_FOR);
        made.insert(id.into(), (started, l.clone()));
    }

    fn invalidate(&self, id: &str) {
        self.made.lock().expect("made lock").remove(id);
        let mut stale = self.stale.lock().expect("stale lock");
        stale.retain(|_, at| at.elapsed() < LISTED_FOR * 4);
        stale.insert(id.into(), Instant::now());
    }

    fn flight(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut flights = self.flights.lock().expect("flights lock");
        flights.retain(|_, f| Arc::strong_count(f) > 1);
        flights.entry(id.into()).or_default().clone()
    }
}

/// An archive fetched from off the host for one restore, removed when the restore ends
/// (unless disarmed: a restore's journal then says to remove it when it is finished).
pub(super) struct Fetched(Option<PathBuf>);

impl Fetched {
    pub(super) fn is_armed(&self) -> bool {
        self.0.is_some()
    }

    pub(super) fn disarm(&mut self) {
        self.0 = None;
    }
}

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
    /// Whether repository `repo` is configured with a scheduled check.
    pub fn is_checked(&self, repo: &str) -> bool {
        self.repos
            .iter()
            .any(|(r, _)| r.name == repo && r.check.is_some())
    }

    /// (tenant, repository, record) for each repository that serves a tenant now (one removed,
    /// or left by a change of plan, is not what its alerts are about). A scrape's work: nothing
    /// without repositories, and only served tenants' records are read.
    pub fn offsite_rows(&self) -> Vec<(String, String, OffsiteRecord)> {
        if self.repos.is_empty() {
            return vec![];
        }
        let desired = self.cx.passes.desired();
        let mut rows = Vec::new();
        for (t, inst) in &desired.instances {
            let serving: Vec<&str> = self
                .repos
                .iter()
                .filter(|(r, _)| r.serves(t, inst.plan.as_deref()))
                .map(|(r, _)| r.name.as_str())
                .collect();
            if serving.is_empty() {
                continue;
            }
            for (repo, r) in self.offsite_records(t) {
                if serving.contains(&repo.as_str()) {
                    rows.push((t.clone(), repo, r));
                }
            }
        }
        rows
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
        for repo in self.serving(inst) {
            let outcome = repo.send(&path, &tags).await.map_err(|e| e.to_string());
            self.record(tenant, repo.name(), &outcome);
            if outcome.is_ok() {
                // The repository holds this host's backups: it keeps its inventory too.
                self.adopt_after_copy(repo.as_ref()).await;
            }
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
        self.listed.invalidate(tenant_id);
        // A tenant's first copy makes it one a recovery knows of.
        self.inventories.kick();
    }

    /// `tenant`'s snapshots in every repository serving it (only this tenant's: by identity),
    /// and the repositories that did not answer.
    pub async fn list_offsite(&self, tenant: &str) -> Listing {
        let (Ok(inst), Some(id)) = (self.instance(tenant), self.owner(tenant).id) else {
            return (vec![], vec![]);
        };
        if let Some(l) = self.listed.fresh(&id) {
            return l;
        }
        let flight = self.listed.flight(&id);
        let _one = flight.lock().await;
        if let Some(l) = self.listed.fresh(&id) {
            return l;
        }
        let started = Instant::now();
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
        self.listed.keep(&id, started, &listing);
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
        if let Some(tenant_id) = self.owner(tenant).id {
            self.listed.invalidate(&tenant_id);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(n: usize) -> Listing {
        let snap = Snapshot {
            repository: "off".into(),
            snapshot: format!("s{n}"),
            backup: format!("b{n}"),
            tenant: "acme".into(),
            version: "1".into(),
            created: n as u64,
            bytes: 1,
        };
        (vec![snap], vec![])
    }

    #[test]
    fn a_listing_is_answered_from_memory_until_a_copy_makes_it_stale() {
        let l = Listings::default();
        assert_eq!(l.fresh("id1"), None);
        l.keep("id1", Instant::now(), &listing(1));
        assert_eq!(l.fresh("id1"), Some(listing(1)));
        assert_eq!(l.fresh("id2"), None, "by identity, not shared");
        l.invalidate("id1");
        assert_eq!(l.fresh("id1"), None);
    }

    #[test]
    fn a_listing_begun_before_a_copy_landed_is_not_kept() {
        let l = Listings::default();
        let started = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        l.invalidate("id1");
        l.keep("id1", started, &listing(1));
        assert_eq!(l.fresh("id1"), None);
        std::thread::sleep(Duration::from_millis(2));
        l.keep("id1", Instant::now(), &listing(2));
        assert_eq!(l.fresh("id1"), Some(listing(2)));
    }

    #[tokio::test]
    async fn askers_of_one_identity_share_one_flight() {
        let l = Listings::default();
        let a = l.flight("id1");
        let held = a.lock().await;
        let b = l.flight("id1");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(b.try_lock().is_err(), "the second waits for the first");
        drop(held);
        assert!(!Arc::ptr_eq(&l.flight("id2"), &a));
    }
}
