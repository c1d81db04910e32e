//! The reconciler: level-triggered observe → plan → apply, one pass at a time, with
//! per-instance backoff. Triggered by file changes, API calls and a periodic resync.

pub mod apply;
mod apply_disk;
mod aside;
pub mod backoff;
pub mod edge;
pub mod files;
mod handle;
mod holds;
mod one;
mod pass;
pub mod plan;
mod preview;
pub mod shared_db;
pub mod shared_mariadb;
pub mod status;

use crate::{
    desired::{self, HostConfig},
    services::{Board, Services},
};
use holds::Holds;
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

pub use crate::services::{InstanceStatus, PassReport, Phase};

/// Recheck interval while an instance is provisioning or starting.
pub const CONVERGING_RECHECK: Duration = Duration::from_secs(1);

/// The reconciler: what passes need besides the shared services (backoff, failures, the
/// board, holds, the last desired state).
pub struct Controller {
    svc: Arc<Services>,
    pass_lock: tokio::sync::Mutex<u64>,
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
    /// Digest of each tenant's kept last valid file, so it is written only when it changes.
    kept_valid: Mutex<BTreeMap<String, [u8; 32]>>,
}

impl Controller {
    pub fn new(svc: Arc<Services>) -> Controller {
        Controller {
            svc,
            pass_lock: tokio::sync::Mutex::new(0),
            backoff: Mutex::default(),
            failures: Mutex::default(),
            apply_failed: Mutex::default(),
            board: RwLock::default(),
            last_desired: RwLock::default(),
            passes: tokio::sync::watch::channel(0).0,
            holds: Mutex::default(),
            kept_valid: Mutex::default(),
        }
    }

    /// What this reconciler shares with the rest of the agent.
    pub fn services(&self) -> &Arc<Services> {
        &self.svc
    }

    fn host(&self) -> &HostConfig {
        self.svc.host()
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
        self.svc.kick();
    }

    /// Where the edge reaches `tenant`'s web container placed by `alloc` (see
    /// [`status::web_address`]); in swarm mode on the node the board shows it on.
    pub fn web_at(
        &self,
        tenant: &str,
        web_port: u16,
        alloc: &crate::store::Allocation,
    ) -> std::net::SocketAddr {
        let board = self.board.read().expect("board lock");
        let node = board
            .instances
            .get(tenant)
            .and_then(|s| s.containers.first())
            .and_then(|c| c.node.as_ref())
            .map(|n| n.addr);
        status::web_address(self.host(), alloc, web_port, node)
    }

    /// Keeps passes away from `tenant` (its containers are being changed by an upgrade).
    pub fn hold(&self, tenant: &str) {
        self.holds.lock().expect("holds lock").hold(tenant);
    }

    /// Holds `tenant` unless another operation holds it: true when the caller now holds it.
    pub fn try_hold(&self, tenant: &str) -> bool {
        self.holds.lock().expect("holds lock").try_hold(tenant)
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

    fn applier(&self) -> apply::Applier<'_> {
        apply::Applier::of(&self.svc)
    }

    /// Points the prober at what runs now and writes its results into the observation.
    fn probe(&self, d: &desired::Desired, observed: &mut crate::runtime::Inventory, epoch: u64) {
        let scope = crate::probe::targets::Scope {
            namespace: &self.host().namespace,
            layout: self.svc.layout(),
            base_domain: self.host().base_domain.as_deref(),
        };
        let held = |t: &str| self.is_held(t);
        let targets = crate::probe::targets::targets(&scope, d, observed, &held);
        let unsettled = self.holds.lock().expect("holds lock").unsettled(epoch);
        self.svc.probes().sync(targets, &unsettled);
        self.svc.probes().overlay(observed);
    }

    fn recorded(&self, d: &desired::Desired) -> plan::Recorded {
        let purge: BTreeSet<String> = std::fs::read_dir(self.svc.layout().purge_dir())
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .collect()
            })
            .unwrap_or_default();
        let files_digest = d
            .instances
            .keys()
            .filter_map(|t| files::read_digest(self.svc.layout(), t).map(|x| (t.clone(), x)))
            .collect();
        plan::Recorded {
            allocations: self.svc.allocations().snapshot(),
            files_digest,
            purge,
        }
    }

    /// Creates, mounts and grows the filesystems of tenants with a disk quota; tenants whose
    /// filesystem is not ready are failed for this pass (retried with backoff).
    async fn sync_disks(&self, d: &desired::Desired) -> crate::disk::Synced {
        let Ok(disks) = self.svc.disks() else {
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
            .map_or(self.host().resync, |s| s.min(self.host().resync))
            .max(Duration::from_millis(50))
    }

    /// Runs passes until `shutdown` resolves. Kicks that come during a pass, or soon after it,
    /// make one pass, which waits until the last one's own length has gone by since it ended
    /// (at most `PACE_MAX`): passes keep at most half the agent's time, and the engine's
    /// container lists with them, however many events a storm of wakes sends.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let kick = self.svc.kick_handle();
        loop {
            let started = Instant::now();
            if let Err(e) = self.pass().await {
                tracing::error!(error = %e, "reconcile pass failed");
            }
            let (took, ended) = (started.elapsed(), Instant::now());
            let wait = self.next_wakeup();
            tokio::select! {
                _ = &mut shutdown => return,
                _ = kick.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
            let pace = pace_after(took).saturating_sub(ended.elapsed());
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(pace) => {}
            }
        }
    }
}

/// The longest a kicked pass waits for the one before it to be as far behind as it was long.
pub const PACE_MAX: Duration = Duration::from_secs(1);

/// How long after a pass that took `took` the next one may start.
fn pace_after(took: Duration) -> Duration {
    took.min(PACE_MAX)
}

#[cfg(test)]
mod tests;
