//! Moving a tenant to another berth host (`berth move T --to https://other:8443`): the leaving
//! host's part. The CLI drives both hosts through their APIs:
//!
//! 1. here, `prepare`: a backup, copied to a repository both hosts use; the tenant's identity
//!    and proven domains go with it; the other host makes the tenant from that backup;
//! 2. here, `hold`: the edge holds the tenant's requests, the ones under way finish, and a
//!    final backup (incremental in the repository) is taken; the other host restores it;
//! 3. here, `forward`: the edge sends the tenant's requests (the held ones first) to the other
//!    host's edge over TLS, and the tenant's containers here stop. Until the operator's DNS
//!    points at the other host, this host forwards; `berth rm T --purge` ends it.
//!
//! A hold the CLI does not follow up (it died, the other host failed) ends by itself after
//! the edge's longest pause, and the tenant goes on here as before.

mod record;

use crate::{
    backup::{BackupError, BackupInfo, Backups},
    offsite::inventory::Entry,
    proxy::{Proxy, gate::Gate},
    services::Cx,
    store::domain_book::Binding,
};
use serde::Serialize;
use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

pub use record::Record;

#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error("tenant {0} does not exist")]
    UnknownTenant(String),
    #[error("tenant {0} has moved to another host already")]
    Moved(String),
    #[error("this host runs no edge: a tenant is moved only through one")]
    NoEdge,
    #[error("tenant {0} is being moved already (its requests are held)")]
    Holding(String),
    #[error("tenant {0} is being upgraded or restored: move it when that has ended")]
    Busy(String),
    #[error(
        "tenant {0} is mounted on a shared domain's path: berth moves only tenants on hosts of their own (remove its paths first)"
    )]
    Mounted(String),
    #[error(
        "tenant {0}'s requests are not held (the hold ended, or never began): run the move again"
    )]
    NotHolding(String),
    #[error("repository {repo} did not take tenant {tenant}'s backup: {why}")]
    NotCopied {
        tenant: String,
        repo: String,
        why: String,
    },
    #[error("{0}")]
    Backup(#[from] BackupError),
    #[error("the other host's edge {edge}: {why}")]
    Edge { edge: String, why: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// The first backup and what the other host needs to make the tenant from it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Prepared {
    /// The tenant, its identity and proven custom domains (an inventory entry).
    #[schema(value_type = Object)]
    pub entry: Entry,
    pub backup: String,
    pub bytes: u64,
}

/// The final backup, taken while the edge holds the tenant's requests.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Held {
    pub backup: String,
    pub bytes: u64,
    /// How long the requests under way took to finish, and the backup to be taken.
    pub seconds: f64,
    /// When the hold ends by itself (Unix seconds) unless the forward comes first.
    pub until: u64,
}

pub struct Handover {
    cx: Cx,
    proxy: Option<Arc<Proxy>>,
    backups: Arc<Backups>,
    /// Whose runs a hold waits for (a run's writes belong in the final backup).
    jobs: Arc<crate::jobs::Scheduler>,
    holds: Mutex<HashMap<String, Holding>>,
    /// Tenants whose hold `forward` has taken out of `holds` for the switch: still held.
    switching: Mutex<std::collections::HashSet<String>>,
    next: AtomicU64,
}

/// Marks a tenant as switching for as long as it lives.
struct Switching<'a>(&'a Mutex<std::collections::HashSet<String>>, String);

impl Drop for Switching<'_> {
    fn drop(&mut self) {
        self.0.lock().expect("switching lock").remove(&self.1);
    }
}

/// A tenant whose requests the edge holds for its move.
struct Holding {
    id: u64,
    gate: Arc<Gate>,
    /// When its lease ends.
    until: Instant,
    /// Keeps the tenant awake (a sleep would pause, and a wake resume, the gate meanwhile).
    _awake: crate::store::sleep::Busy,
    /// The tenant is held from the reconciler meanwhile, so its jobs start no new run (a
    /// write after the final backup would stay behind).
    passes: Arc<dyn crate::services::Reconciler>,
}

impl Drop for Holding {
    fn drop(&mut self) {
        self.gate.resume();
        self.passes.release(&self.gate.tenant);
    }
}

impl Handover {
    /// Forwards every tenant that moved away before this start.
    pub fn open(
        cx: Cx,
        proxy: Option<Arc<Proxy>>,
        (backups, jobs): (Arc<Backups>, Arc<crate::jobs::Scheduler>),
    ) -> Arc<Handover> {
        let h = Arc::new(Handover {
            cx,
            proxy,
            backups,
            jobs,
            holds: Mutex::default(),
            switching: Mutex::default(),
            next: AtomicU64::new(1),
        });
        for r in record::all(h.cx.svc.layout()) {
            if let Err(e) = h.install(&r) {
                tracing::error!(tenant = r.tenant, error = %e, "cannot forward a moved tenant");
            }
        }
        h
    }

    /// The record of `tenant`'s move, if it moved away.
    pub fn moved(&self, tenant: &str) -> Option<Record> {
        record::load(self.cx.svc.layout(), tenant)
    }

    /// Step 1: a backup of `t` in repository `repo`, and its entry (identity and the
    /// custom domains of `bindings` proven for it).
    pub async fn prepare(
        &self,
        t: &str,
        repo: &str,
        bindings: BTreeMap<String, Binding>,
    ) -> Result<Prepared, HandoverError> {
        self.check(t)?;
        let layout = self.cx.svc.layout();
        let tenant_id = crate::store::identity::current(layout, t)
            .ok_or_else(|| HandoverError::UnknownTenant(t.into()))?;
        let info = self.backup(t, repo).await?;
        let domains = bindings
            .into_iter()
            .filter(|(_, b)| b.tenant == t)
            .collect();
        Ok(Prepared {
            entry: Entry {
                tenant: t.into(),
                tokens: self.backups.carried_tokens(t, &tenant_id),
                tenant_id,
                domains,
            },
            backup: info.id,
            bytes: info.bytes,
        })
    }

    /// Step 2: holds `t`'s requests at the edge, lets those under way finish, and takes the
    /// final backup into `repo`. The hold ends by itself after the edge's longest pause.
    pub async fn hold(self: &Arc<Self>, t: &str, repo: &str) -> Result<Held, HandoverError> {
        self.check(t)?;
        let started = Instant::now();
        let proxy = self.proxy.as_ref().ok_or(HandoverError::NoEdge)?;
        let gate = proxy.gate(t).ok_or(HandoverError::NoEdge)?;
        // An upgrade or restore pauses and resumes the gate itself: it would end the hold.
        if self.cx.passes.is_held(t) {
            return Err(HandoverError::Busy(t.into()));
        }
        let lease = proxy.cfg.timeouts.max_pause;
        // Awake for the whole hold: a sleeping tenant's gate is paused by the sleeper too.
        let limit = crate::sleep::WAKE_LIMIT;
        let awake = crate::sleep::wake_for(&self.cx, t, "backup", limit)
            .await
            .map_err(|e| BackupError::NotReady {
                tenant: t.into(),
                why: e.to_string(),
            })?;
        let id = self.next.fetch_add(1, Relaxed);
        {
            let mut holds = self.holds.lock().expect("holds lock");
            if holds.contains_key(t) {
                return Err(HandoverError::Holding(t.into()));
            }
            // Again, and taken in one step: an upgrade's turn or a restore may have begun
            // meanwhile, and an upgrade reaching this tenant now finds it held and skips it.
            if !self.cx.passes.try_hold(t) {
                return Err(HandoverError::Busy(t.into()));
            }
            gate.pause();
            let holding = Holding {
                id,
                gate: gate.clone(),
                until: started + lease,
                _awake: awake,
                passes: self.cx.passes.clone(),
            };
            holds.insert(t.into(), holding);
        }
        // The lease runs from now: a caller gone mid-backup (its request dropped) never
        // leaves the tenant held.
        let me = self.clone();
        let tenant = t.to_string();
        let until = tokio::time::Instant::from_std(started + lease);
        tokio::spawn(async move {
            tokio::time::sleep_until(until).await;
            if me.release_hold(&tenant, id) {
                tracing::warn!(
                    tenant,
                    "move: no forward came within the longest pause; the tenant goes on here"
                );
            }
        });
        // Bounded well inside the lease: one long request (a WebSocket) never makes every
        // move of the tenant fail.
        let deadline = Instant::now() + proxy.cfg.timeouts.drain.min(lease / 3);
        // Runs of its jobs started before the hold too: their writes belong in the backup.
        while (gate.in_flight() > 0 || self.jobs.is_running(t)) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let info = match self.backup(t, repo).await {
            Ok(i) => i,
            Err(e) => {
                self.release_hold(t, id);
                return Err(e);
            }
        };
        // The lease ran out during the backup: the tenant serves here again, so this final
        // backup is not final.
        if !self.is_holding_as(t, id) {
            return Err(HandoverError::NotHolding(t.into()));
        }
        let until = now() + lease.saturating_sub(started.elapsed()).as_secs();
        Ok(Held {
            backup: info.id,
            bytes: info.bytes,
            seconds: started.elapsed().as_secs_f64(),
            until,
        })
    }

    /// Ends `t`'s hold: its requests go on here (the move was abandoned). Whether one was on.
    pub fn release(&self, t: &str) -> bool {
        let h = self.holds.lock().expect("holds lock").remove(t);
        h.is_some()
    }

    /// Whether `t`'s requests are held for a move now.
    pub fn is_holding(&self, t: &str) -> bool {
        self.holds.lock().expect("holds lock").contains_key(t)
            || self.switching.lock().expect("switching lock").contains(t)
    }

    fn is_holding_as(&self, t: &str, id: u64) -> bool {
        let holds = self.holds.lock().expect("holds lock");
        holds.get(t).is_some_and(|h| h.id == id)
    }

    /// Ends hold `id` of `t` if it is still the current one.
    fn release_hold(&self, t: &str, id: u64) -> bool {
        let mut holds = self.holds.lock().expect("holds lock");
        if holds.get(t).is_some_and(|h| h.id == id) {
            holds.remove(t);
            return true;
        }
        false
    }

    /// Step 3: from now on `t`'s requests (the held ones first) go to the other host's edge at
    /// `edge`, verified with the system's roots and `ca_pem` (the other host's own CA). The
    /// edge is tried first: a move never switches to an edge that does not answer for the
    /// tenant's name. `stop` stops the tenant's copy here (its file written `stopped`); it
    /// runs before the hold ends, so no job or request runs on the copy after the switch.
    pub async fn forward<F>(&self, r: Record, stop: F) -> Result<Record, HandoverError>
    where
        F: std::future::Future<Output = Result<(), String>>,
    {
        let proxy = self.proxy.as_ref().ok_or(HandoverError::NoEdge)?;
        // Taken out of the map for the switch: neither the lease nor a release can end this
        // hold meanwhile (the gate stays paused while the holding lives).
        // Still held to everyone asking (`is_holding`) until the switch ends either way.
        // The mark is made only by the forward that took the hold, so a second forward for
        // the tenant (refused here) cannot end the first one's mark.
        let (holding, _switching) = {
            let mut holds = self.holds.lock().expect("holds lock");
            let Some(h) = holds.remove(&r.tenant) else {
                return Err(HandoverError::NotHolding(r.tenant.clone()));
            };
            let mut s = self.switching.lock().expect("switching lock");
            s.insert(r.tenant.clone());
            (h, Switching(&self.switching, r.tenant.clone()))
        };
        let switched = async {
            let target = r.target(self.connect_timeout()).await?;
            // Removed meanwhile: no record may outlive it (a tenant made later under the
            // name would be forwarded).
            let file = self
                .cx
                .svc
                .host()
                .instances_dir
                .join(format!("{}.yaml", r.tenant));
            if !file.exists() {
                return Err(HandoverError::UnknownTenant(r.tenant.clone()));
            }
            r.save(self.cx.svc.layout())?;
            if let Some(c) = r.challenge_target(self.connect_timeout()) {
                proxy.forward_challenges(&r.tenant, c);
            }
            proxy.forward(&r.tenant, target);
            Ok::<_, HandoverError>(())
        };
        if let Err(e) = switched.await {
            // Back under its lease; past it, dropped: the tenant goes on here.
            if Instant::now() < holding.until {
                let mut holds = self.holds.lock().expect("holds lock");
                holds.insert(r.tenant.clone(), holding);
            }
            return Err(e);
        }
        if let Err(why) = stop.await {
            tracing::error!(
                tenant = r.tenant,
                error = why,
                "moved, but its copy here is not stopped"
            );
        }
        // Dropped: the gate resumes, and the held requests go to the other host.
        drop(holding);
        tracing::info!(
            tenant = r.tenant,
            edge = r.edge,
            "tenant moved: its requests are forwarded"
        );
        Ok(r)
    }

    /// A removed (or purged) tenant's hold and forwarding end, and its record goes (a tenant
    /// made later under the name is not forwarded).
    pub fn end(&self, t: &str) {
        self.release(t);
        if let Some(p) = &self.proxy {
            p.unforward(t);
        }
        record::remove(self.cx.svc.layout(), t);
    }

    fn install(&self, r: &Record) -> Result<(), HandoverError> {
        let proxy = self.proxy.as_ref().ok_or(HandoverError::NoEdge)?;
        let target = r.target_unchecked(self.connect_timeout())?;
        if let Some(c) = r.challenge_target(self.connect_timeout()) {
            proxy.forward_challenges(&r.tenant, c);
        }
        proxy.forward(&r.tenant, target);
        Ok(())
    }

    fn connect_timeout(&self) -> Duration {
        self.proxy
            .as_ref()
            .map_or(Duration::from_secs(5), |p| p.cfg.timeouts.upstream_connect)
    }

    /// `t` exists here and has not moved away; it has no path mounts on a shared domain
    /// (whose cookies the edge keeps apart per host, which a forward would not).
    fn check(&self, t: &str) -> Result<(), HandoverError> {
        let desired = self.cx.passes.desired();
        let Some(inst) = desired.instances.get(t) else {
            return Err(HandoverError::UnknownTenant(t.into()));
        };
        if !inst.paths.is_empty() {
            return Err(HandoverError::Mounted(t.into()));
        }
        if self.moved(t).is_some() {
            return Err(HandoverError::Moved(t.into()));
        }
        Ok(())
    }

    /// A backup of `t` that repository `repo` took.
    async fn backup(&self, t: &str, repo: &str) -> Result<BackupInfo, HandoverError> {
        let info = self.backups.create(t).await?;
        if info.offsite.iter().any(|c| c.repository == repo) {
            return Ok(info);
        }
        let why = info
            .offsite_failed
            .iter()
            .find(|f| f.repository == repo)
            .map_or_else(
                || "it does not serve this tenant (see backup_repositories in berth.yaml)".into(),
                |f| f.error.clone(),
            );
        Err(HandoverError::NotCopied {
            tenant: t.into(),
            repo: repo.into(),
            why,
        })
    }
}

/// Unix seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
