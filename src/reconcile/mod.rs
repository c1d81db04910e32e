//! The reconciler: level-triggered observe → plan → apply, one pass at a time, with
//! per-instance backoff. Triggered by file changes, API calls and a periodic resync.

pub mod apply;
mod aside;
pub mod backoff;
pub mod edge;
pub mod files;
mod holds;
mod one;
pub mod plan;
pub mod shared_db;
pub mod shared_mariadb;
pub mod status;

use crate::{
    desired::{self, HostConfig},
    runtime::{Runtime, RuntimeError},
    store::{AllocError, Allocations, Layout},
};
use futures_util::StreamExt;
use holds::Holds;
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};
use tokio::sync::Notify;

pub use status::{InstanceStatus, PassReport, Phase};

/// Recheck interval while an instance is provisioning or starting.
pub const CONVERGING_RECHECK: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Alloc(#[from] AllocError),
}

/// What the API reads: the latest status of each instance and of the last pass.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Board {
    pub instances: BTreeMap<String, InstanceStatus>,
    pub spec_errors: Vec<String>,
    pub last_pass: Option<PassReport>,
    pub engine_error: Option<String>,
}

pub struct Controller {
    rt: Arc<dyn Runtime>,
    disks: Result<Arc<crate::disk::Disks>, String>,
    host: HostConfig,
    layout: Layout,
    allocs: Allocations,
    pass_lock: tokio::sync::Mutex<u64>,
    kick: Arc<Notify>,
    /// Image pulls under way or failed, shared by every tenant that needs the image.
    pulls: Arc<crate::images::Pulls>,
    backoff: Mutex<BTreeMap<String, backoff::Backoff>>,
    failures: Mutex<BTreeMap<String, String>>,
    /// Tenants whose last apply in a pass failed (the failures a converged pass clears).
    apply_failed: Mutex<BTreeSet<String>>,
    board: RwLock<Board>,
    /// The desired state of the last pass, for the proxy and certificates.
    last_desired: RwLock<Arc<desired::Desired>>,
    /// Bumped after every pass (and by `touch`), so the edge can rebuild its routes.
    passes: tokio::sync::watch::Sender<u64>,
    /// Tenants an upgrade or restore is changing: passes leave them alone until released.
    holds: Mutex<Holds>,
    /// Serialises read-modify-write of instance files (API edits, upgrades, domain moves).
    files_lock: Arc<tokio::sync::Mutex<()>>,
    /// Digest of each tenant's kept last valid file, so it is written only when it changes.
    kept_valid: Mutex<BTreeMap<String, [u8; 32]>>,
    /// The egress policy, set by the daemon (unit tests run without one).
    egress: std::sync::OnceLock<Arc<crate::egress::Egress>>,
    /// Health of every running tenant, probed by berth.
    probes: Arc<crate::probe::Prober>,
    /// Tenants asleep (containers stopped while idle) or waking.
    sleep: Arc<crate::sleep::state::SleepSet>,
    /// The audit log, for the API and for automatic actions.
    audit: Arc<crate::audit::Audit>,
    /// What else a purge removes (the mail relay's files of the tenant), set by the daemon.
    purge_hooks: Mutex<Vec<apply::PurgeHook>>,
}

impl Controller {
    /// A controller whose tenants are probed over the network.
    pub fn new(rt: Arc<dyn Runtime>, host: HostConfig) -> Result<Controller, ReconcileError> {
        let checker = Arc::new(crate::probe::NetChecker::new(rt.clone()));
        Controller::with_checker(rt, host, checker)
    }

    /// A controller whose probes go through `checker` (a fake in unit tests).
    pub fn with_checker(
        rt: Arc<dyn Runtime>,
        host: HostConfig,
        checker: Arc<dyn crate::probe::Checker>,
    ) -> Result<Controller, ReconcileError> {
        let layout = Layout::new(host.state_dir.clone());
        for dir in [
            layout.root().to_path_buf(),
            layout.tenants(),
            layout.purge_dir(),
        ] {
            crate::store::atomic::create_dir(&dir, 0o700).map_err(|source| AllocError::Write {
                path: dir.clone(),
                source,
            })?;
        }
        crate::store::atomic::clean_temp_files(layout.root());
        let allocs = Allocations::open(layout.allocations())?;
        let disks = match host.engine.is_swarm() {
            // Volumes live on the nodes; a loop-mounted filesystem here would bound nothing.
            true => Err("swarm mode: volumes live on the swarm's nodes".to_string()),
            false => crate::disk::Disks::probe(&layout.disks()),
        }
        .map(Arc::new);
        if let Err(why) = &disks {
            tracing::warn!(reason = %why, "disk quotas cannot be enforced on this host; plans' disk limits are not applied");
        }
        let pulls = crate::images::Pulls::new(
            rt.clone(),
            host.registries.clone(),
            host.registry_mirrors.clone(),
            Some(layout.images()),
            Some(layout.image_pins()),
        );
        let kick = Arc::new(Notify::new());
        let probes = crate::probe::Prober::new(host.probes.clone(), checker, kick.clone());
        Ok(Controller {
            purge_hooks: Mutex::default(),
            sleep: Arc::new(crate::sleep::state::SleepSet::open(layout.sleep())),
            audit: Arc::new(
                crate::audit::Audit::open(&layout.root().join("audit"))
                    .with_identities(layout.clone()),
            ),
            probes,
            disks,
            rt,
            host,
            layout,
            allocs,
            pass_lock: tokio::sync::Mutex::new(0),
            kick,
            pulls,
            backoff: Mutex::default(),
            failures: Mutex::default(),
            apply_failed: Mutex::default(),
            board: RwLock::default(),
            last_desired: RwLock::default(),
            passes: tokio::sync::watch::channel(0).0,
            holds: Mutex::default(),
            files_lock: Arc::default(),
            egress: std::sync::OnceLock::new(),
            kept_valid: Mutex::default(),
        })
    }

    /// Installs the egress policy; every pass from now on keeps the kernel's rules in step.
    pub fn set_egress(&self, e: Arc<crate::egress::Egress>) {
        let _ = self.egress.set(e);
    }

    pub fn egress(&self) -> Option<&Arc<crate::egress::Egress>> {
        self.egress.get()
    }

    /// The notifier behind `kick`, for tasks that outlive a pass (a pull's end).
    pub fn kick_handle(&self) -> Arc<Notify> {
        self.kick.clone()
    }

    /// The prober: health of every running tenant (the daemon runs its loop).
    pub fn probes(&self) -> &Arc<crate::probe::Prober> {
        &self.probes
    }

    /// Tenants asleep or waking (the sleeper changes it; passes plan asleep tenants stopped).
    pub fn sleep(&self) -> &Arc<crate::sleep::state::SleepSet> {
        &self.sleep
    }

    /// Image pulls under way (for `/metrics`).
    pub fn audit(&self) -> &Arc<crate::audit::Audit> {
        &self.audit
    }

    pub fn pulls(&self) -> &Arc<crate::images::Pulls> {
        &self.pulls
    }

    pub fn host(&self) -> &HostConfig {
        &self.host
    }
    pub fn layout(&self) -> &Layout {
        &self.layout
    }
    /// Per-tenant filesystems, or why this host cannot make them.
    pub fn disks(&self) -> Result<&Arc<crate::disk::Disks>, &str> {
        self.disks.as_ref().map_err(String::as_str)
    }

    /// `enforced`, or why this host cannot enforce disk quotas (then none is claimed).
    pub fn disk_quotas(&self) -> String {
        match &self.disks {
            Ok(d) if d.grows_online() => "enforced".into(),
            Ok(_) => {
                "enforced (a growing disk stops its tenant briefly: no CAP_SYS_RESOURCE for online resize)".into()
            }
            Err(why) => format!("unavailable: {why}"),
        }
    }

    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.rt
    }
    pub fn board(&self) -> Board {
        self.board.read().expect("board lock").clone()
    }

    /// The desired state seen by the last pass.
    pub fn desired(&self) -> Arc<desired::Desired> {
        self.last_desired.read().expect("desired lock").clone()
    }

    /// Resolves each time a pass has published a new board.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.passes.subscribe()
    }

    /// Tells subscribers something beside the files changed (a domain was verified).
    pub fn touch(&self) {
        self.passes.send_modify(|n| *n += 1);
    }

    /// Asks for a pass soon; many kicks before it starts make one pass.
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    pub fn files_lock(&self) -> Arc<tokio::sync::Mutex<()>> {
        self.files_lock.clone()
    }

    /// Where `tenant`'s `port` is published: on its swarm node, or on this host's loopback.
    pub fn published_at(&self, tenant: &str, port: u16) -> std::net::SocketAddr {
        let board = self.board.read().expect("board lock");
        let host = board
            .instances
            .get(tenant)
            .and_then(|s| s.containers.first())
            .map_or(std::net::Ipv4Addr::LOCALHOST, |c| c.published_host());
        std::net::SocketAddr::from((host, port))
    }

    pub fn allocations(&self) -> &Allocations {
        &self.allocs
    }

    /// Keeps passes away from `tenant` (its containers are being changed by an upgrade).
    pub fn hold(&self, tenant: &str) {
        self.holds.lock().expect("holds lock").hold(tenant);
    }

    /// Holds `tenant` and waits out a pass already running, which may be applying steps to it:
    /// after this returns, no pass touches the tenant until it is released.
    pub async fn hold_settled(&self, tenant: &str) {
        self.hold(tenant);
        drop(self.pass_lock.lock().await);
        // A wake starting the tenant outside the pass sees the hold and lets go.
        while self.holds.lock().expect("holds lock").is_claimed(tenant) {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Hands `tenant` back to the reconciler and asks for a pass.
    /// Holds `tenant` like `hold_settled`; the hold ends when the guard is dropped, so every
    /// way out of an operation (an error, a panic, its future dropped, even mid-wait) releases
    /// the tenant.
    pub async fn hold_guard(&self, tenant: &str) -> Held<'_> {
        let held = Held {
            ctl: self,
            tenant: tenant.into(),
        };
        self.hold_settled(tenant).await;
        held
    }

    pub fn release(&self, tenant: &str) {
        self.holds.lock().expect("holds lock").release(tenant);
        self.kick();
    }

    pub fn is_held(&self, tenant: &str) -> bool {
        self.holds.lock().expect("holds lock").held.contains(tenant)
    }

    /// Forgets a tenant's backoff so the next pass retries it at once (after an operator fix).
    pub fn reset_backoff(&self, tenant: &str) {
        self.backoff.lock().expect("backoff lock").remove(tenant);
    }

    /// One full observe → plan → apply pass. Passes never overlap.
    pub async fn pass(&self) -> Result<PassReport, ReconcileError> {
        let mut n = self.pass_lock.lock().await;
        *n += 1;
        let started = Instant::now();
        let epoch = self.holds.lock().expect("holds lock").epoch;
        let mutations_before = self.rt.mutations();
        let host = self.host.clone();
        let mut loaded = tokio::task::spawn_blocking(move || desired::load(&host))
            .await
            .expect("spec loading does not panic");
        let mut observed = match self.rt.inventory(&self.host.namespace).await {
            Ok(inv) => inv,
            Err(e) => {
                self.board.write().expect("board lock").engine_error = Some(e.to_string());
                return Err(e.into());
            }
        };
        // Frozen tenants keep their last valid state (for the edge and their egress allows).
        loaded.desired = self.carry_last_valid(std::mem::take(&mut loaded.desired));
        self.pulls.enforce_pins(&mut observed, &loaded.desired);
        self.probe(&loaded.desired, &mut observed, epoch);
        let recorded = self.recorded(&loaded.desired);
        let synced = self.sync_disks(&loaded.desired).await;
        let asleep = self.sleep.asleep();
        let ctx = plan::Context {
            namespace: &self.host.namespace,
            layout: &self.layout,
            disks: self.disks.is_ok(),
            grow_stopped: &synced.grow_stopped,
            asleep: &asleep,
        };
        let planned = plan::plan(&ctx, &loaded.desired, &observed, &recorded);
        let disk_failures: BTreeSet<String> = synced.failed.into_keys().collect();
        self.clear_converged(&planned, &disk_failures);
        let now = Instant::now();
        let due: Vec<(String, Vec<plan::Step>)> = {
            let b = self.backoff.lock().expect("backoff lock");
            let due = planned
                .into_iter()
                .filter(|(t, _)| b.get(t).is_none_or(|x| x.next_attempt <= now))
                .filter(|(t, _)| !disk_failures.contains(t))
                .collect();
            self.holds.lock().expect("holds lock").take_due(due, epoch)
        };
        let steps: usize = due.iter().map(|(_, s)| s.len()).sum();
        let tenants_changed = due.len();
        // Before any container starts: the pool-wide rules cover a new tenant from its first
        // packet; its own allows are added once its subnet is allocated (below, or next pass).
        self.sync_egress(&loaded.desired).await;
        let applier = self.applier();
        let errors = std::sync::atomic::AtomicUsize::new(disk_failures.len());
        futures_util::stream::iter(due)
            .for_each_concurrent(self.host.parallelism, |(t, steps)| {
                let inst = loaded.desired.instances.get(&t);
                let (applier, errors) = (&applier, &errors);
                async move {
                    let result = applier.apply(&t, inst, &steps).await;
                    // Waiting for a pull is no failure: no backoff, no error shown.
                    let result = match result {
                        Err(apply::ApplyError::Pulling { .. }) => Ok(()),
                        r => r,
                    };
                    if result.is_err() {
                        errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    let mut failed = self.apply_failed.lock().expect("apply_failed lock");
                    match result.is_err() {
                        true => failed.insert(t.clone()),
                        false => failed.remove(&t),
                    };
                    drop(failed);
                    self.record_result(&t, result.err().map(|e| e.to_string()));
                    self.holds.lock().expect("holds lock").applied(&t);
                }
            })
            .await;
        self.clear_gone(&loaded.desired, &observed);
        if steps > 0 {
            self.sync_egress(&loaded.desired).await;
        }
        let observed = if steps > 0 {
            let mut again = self.rt.inventory(&self.host.namespace).await?;
            self.probe(&loaded.desired, &mut again, epoch);
            again
        } else {
            observed
        };
        self.keep_last_valid(&loaded.sources, &loaded.desired.frozen);
        let desired = loaded.desired;
        self.retire_shared_db(&desired, &observed, !recorded.purge.is_empty())
            .await;
        let failures = self.failures.lock().expect("failures lock").clone();
        let ports = self
            .allocs
            .snapshot()
            .into_iter()
            .map(|(t, a)| (t, a.port))
            .collect();
        let report = PassReport {
            pass: *n,
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            instances: desired.instances.len(),
            tenants_changed,
            steps,
            mutations: self.rt.mutations() - mutations_before,
            failures: failures.len(),
            errors: errors.into_inner(),
        };
        let mut board = self.board.write().expect("board lock");
        board.instances = status::board(&desired, &observed, &failures, &ports);
        status::mark_pulls(&mut board.instances, &desired, &self.pulls.pulling());
        status::mark_probes(&mut board.instances, self.probes.snapshot());
        status::mark_sleep(
            &mut board.instances,
            &self.sleep.asleep(),
            &self.sleep.wake_errors(),
        );
        board.spec_errors = loaded.errors.0.iter().map(ToString::to_string).collect();
        board.last_pass = Some(report.clone());
        board.engine_error = None;
        drop(board);
        *self.last_desired.write().expect("desired lock") = Arc::new(desired);
        self.touch();
        tracing::debug!(
            pass = report.pass,
            ms = report.duration_ms,
            steps,
            "reconcile pass"
        );
        Ok(report)
    }

    fn applier(&self) -> apply::Applier<'_> {
        apply::Applier {
            rt: self.rt.as_ref(),
            host: &self.host,
            layout: &self.layout,
            allocs: &self.allocs,
            disks: self.disks.as_ref().ok().cloned(),
            pulls: &self.pulls,
            kick: self.kick.clone(),
            purge_hooks: self.purge_hooks(),
        }
    }

    /// Adds what a tenant's purge also removes (a feature's files of the tenant).
    pub fn on_purge(&self, hook: apply::PurgeHook) {
        self.purge_hooks.lock().expect("purge hooks").push(hook);
    }

    pub fn purge_hooks(&self) -> Vec<apply::PurgeHook> {
        self.purge_hooks.lock().expect("purge hooks").clone()
    }

    /// Points the prober at what runs now and writes its results into the observation.
    fn probe(&self, d: &desired::Desired, observed: &mut crate::runtime::Inventory, epoch: u64) {
        let scope = crate::probe::targets::Scope {
            namespace: &self.host.namespace,
            layout: &self.layout,
            base_domain: self.host.base_domain.as_deref(),
        };
        let held = |t: &str| self.is_held(t);
        let targets = crate::probe::targets::targets(&scope, d, observed, &held);
        let unsettled = self.holds.lock().expect("holds lock").unsettled(epoch);
        self.probes.sync(targets, &unsettled);
        self.probes.overlay(observed);
    }

    fn recorded(&self, d: &desired::Desired) -> plan::Recorded {
        let purge: BTreeSet<String> = std::fs::read_dir(self.layout.purge_dir())
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .collect()
            })
            .unwrap_or_default();
        let files_digest = d
            .instances
            .keys()
            .filter_map(|t| files::read_digest(&self.layout, t).map(|x| (t.clone(), x)))
            .collect();
        plan::Recorded {
            allocations: self.allocs.snapshot(),
            files_digest,
            purge,
        }
    }

    /// Creates, mounts and grows the filesystems of tenants with a disk quota; tenants whose
    /// filesystem is not ready are failed for this pass (retried with backoff).
    async fn sync_disks(&self, d: &desired::Desired) -> crate::disk::Synced {
        let Ok(disks) = &self.disks else {
            return Default::default();
        };
        let want: BTreeMap<String, crate::disk::Want> = d
            .instances
            .iter()
            .filter_map(|(t, i)| {
                let bytes = i.quota.disk?;
                Some((
                    t.clone(),
                    crate::disk::Want {
                        bytes,
                        inodes: i.quota.inodes,
                    },
                ))
            })
            .collect();
        if want.is_empty() {
            return Default::default();
        }
        let disks = disks.clone();
        let synced = tokio::task::spawn_blocking(move || disks.sync(&want))
            .await
            .unwrap_or_default();
        for (t, e) in &synced.failed {
            self.record_result(t, Some(e.clone()));
        }
        synced
    }

    fn record_result(&self, tenant: &str, error: Option<String>) {
        let mut b = self.backoff.lock().expect("backoff lock");
        let mut f = self.failures.lock().expect("failures lock");
        match error {
            None => {
                b.remove(tenant);
                f.remove(tenant);
            }
            Some(e) => {
                let next = backoff::Backoff::failed(b.get(tenant).copied(), Instant::now());
                tracing::warn!(tenant, error = %e, retry_in_s = (next.next_attempt - Instant::now()).as_secs_f64(), "apply failed");
                b.insert(tenant.into(), next);
                f.insert(tenant.into(), e);
            }
        }
    }

    /// A tenant whose apply failed and that now has nothing left to do has converged (its
    /// node came back, say): the error no longer holds, nor does its backoff.
    fn clear_converged(
        &self,
        planned: &BTreeMap<String, Vec<plan::Step>>,
        disk_failures: &BTreeSet<String>,
    ) {
        let stale: Vec<String> = {
            let mut failed = self.apply_failed.lock().expect("apply_failed lock");
            let stale = failed
                .iter()
                .filter(|t| !planned.contains_key(*t) && !disk_failures.contains(*t))
                .cloned()
                .collect();
            failed.retain(|t| planned.contains_key(t) || disk_failures.contains(t));
            stale
        };
        for t in stale {
            self.record_result(&t, None);
        }
    }

    /// Drops failure records of tenants that no longer exist anywhere.
    fn clear_gone(&self, d: &desired::Desired, inv: &crate::runtime::Inventory) {
        let known = |t: &String| {
            d.instances.contains_key(t) || inv.containers.iter().any(|c| &c.tenant == t)
        };
        self.failures
            .lock()
            .expect("failures lock")
            .retain(|t, _| known(t));
        self.backoff
            .lock()
            .expect("backoff lock")
            .retain(|t, _| known(t));
    }

    /// Time until the next pass is due: the resync interval, or sooner when a backoff expires.
    fn next_wakeup(&self) -> Duration {
        // Instances on their way up (waiting for a healthy dependency) are looked at again soon.
        let converging = self
            .board
            .read()
            .expect("board lock")
            .instances
            .values()
            .any(|i| {
                matches!(
                    i.phase,
                    Phase::Provisioning | Phase::Starting | Phase::Pulling
                )
            });
        if converging {
            return CONVERGING_RECHECK;
        }
        let now = Instant::now();
        let soonest = self
            .backoff
            .lock()
            .expect("backoff lock")
            .values()
            .map(|b| b.next_attempt.saturating_duration_since(now))
            .min();
        soonest
            .map_or(self.host.resync, |s| s.min(self.host.resync))
            .max(Duration::from_millis(50))
    }

    /// Runs passes until `shutdown` resolves.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.pass().await {
                tracing::error!(error = %e, "reconcile pass failed");
            }
            let wait = self.next_wakeup();
            tokio::select! {
                _ = &mut shutdown => return,
                _ = self.kick.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;

/// A tenant held from the reconciler until this is dropped (`Controller::hold_guard`).
pub struct Held<'a> {
    ctl: &'a Controller,
    tenant: String,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.ctl.release(&self.tenant);
    }
}
