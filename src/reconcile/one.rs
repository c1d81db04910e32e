//! A wake's fast path: the woken tenant observed, planned and applied alone, outside the
//! pass, and its probes run at once. At 1,000 tenants a pass can take seconds (and ten when
//! it is stopping other tenants); a wake that waited for the pass in progress, then a pass to
//! start the containers, then one more to show the probes' verdict, made its held requests
//! wait for all three. The pass stays the authority: the tenant is claimed (passes leave it
//! alone, after the one applying to it finishes), and when the fast path gives up the claim
//! goes and the passes take the tenant over as before.

use super::{Controller, apply, plan};
use crate::services::WakeError;
use crate::{
    desired::{Desired, Instance},
    runtime::{Inventory, RunStatus},
    spec::instance::RunState,
};
use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

/// How often the probe table is read while a woken tenant's probes run.
const HEALTH_POLL: Duration = Duration::from_millis(25);
/// How often the woken tenant's containers are observed again while it is not healthy.
const REOBSERVE: Duration = Duration::from_secs(1);

/// A wake's claim on its tenant, given up however the wake ends (dropped or unwound mid-way
/// included): while it lasts the passes leave the tenant alone, and its probes' verdicts,
/// which the wake reads from the table, kick no pass. Given up, it kicks a pass unless the
/// wake put its tenant on the board as running with no pass under way (one that observed the
/// tenant before the wake would publish it as it was).
struct Claimed<'a> {
    ctl: &'a Controller,
    t: &'a str,
    shown: bool,
}

impl<'a> Claimed<'a> {
    fn new(ctl: &'a Controller, t: &'a str) -> Self {
        ctl.svc.probes().watch(t, true);
        Claimed {
            ctl,
            t,
            shown: false,
        }
    }
}

impl Drop for Claimed<'_> {
    fn drop(&mut self) {
        self.ctl.svc.probes().watch(self.t, false);
        // Never a second panic while unwinding: a poisoned lock's table is still the table.
        let mut holds = self.ctl.holds.lock().unwrap_or_else(|e| e.into_inner());
        holds.unclaim(self.t);
        drop(holds);
        if !self.shown || self.ctl.pass_lock.try_lock().is_err() {
            self.ctl.kick();
        }
    }
}

impl Controller {
    /// Starts `t` now and waits, within `limit`, until every probe of it is healthy. Err says
    /// why not (held by an upgrade or restore, an engine error, a probe failing, too slow);
    /// the passes then carry on with the tenant as they would have.
    pub async fn converge_tenant(&self, t: &str, limit: Duration) -> Result<(), WakeError> {
        if !self.holds.lock().expect("holds lock").claim(t) {
            return Err(WakeError::Held);
        }
        let mut claimed = Claimed::new(self, t);
        let r = tokio::time::timeout(limit, self.converge_claimed(t))
            .await
            .unwrap_or_else(|_| {
                let probe = self.svc.probes().tenant_error(t);
                Err(probe.map_or(WakeError::TooSlow(limit), WakeError::Probe))
            });
        // Woken, the tenant is on the board as running; a wake that gave up leaves the tenant
        // to the passes, at once.
        claimed.shown = r.is_ok();
        drop(claimed);
        r
    }

    async fn converge_claimed(&self, t: &str) -> Result<(), WakeError> {
        while self.holds.lock().expect("holds lock").is_applying(t) {
            tokio::time::sleep(HEALTH_POLL).await;
        }
        loop {
            if self.is_held(t) {
                return Err(WakeError::TakenOver);
            }
            let d = self.desired();
            let inst = d.instances.get(t).ok_or(WakeError::NotDesired)?;
            if inst.state != RunState::Running {
                return Err(WakeError::NotRunning(inst.state.as_str()));
            }
            let mut observed = self.observe_tenant(&d, inst).await?;
            let steps = self.plan_tenant(inst, &observed);
            if !steps.is_empty() {
                self.apply_tenant(inst, &steps).await?;
                continue;
            }
            // A service waiting for a dependency has no container running (nor a target) yet.
            let all_running = inst.services.iter().all(|svc| {
                let name =
                    crate::runtime::spec::container_name(&self.host().namespace, t, &svc.name);
                observed
                    .containers
                    .iter()
                    .any(|c| c.name == name && c.status == RunStatus::Running)
            });
            if !all_running {
                tokio::time::sleep(HEALTH_POLL * 4).await;
                continue;
            }
            if self.healthy_within(t, REOBSERVE).await {
                self.svc.probes().overlay(&mut observed);
                self.show_running(t, observed);
                return Ok(());
            }
        }
    }

    /// The engine's view of `inst`'s tenant alone, with its probe targets synced and their
    /// verdicts overlaid.
    async fn observe_tenant(&self, d: &Desired, inst: &Instance) -> Result<Inventory, WakeError> {
        let t = &inst.tenant;
        let ns = &self.host().namespace;
        let mut inv = self.svc.runtime().inventory_of(ns, t).await?;
        self.svc.pulls().enforce_pins(&mut inv, d);
        let scope = crate::probe::targets::Scope {
            namespace: &self.host().namespace,
            layout: self.svc.layout(),
            base_domain: self.host().base_domain.as_deref(),
        };
        let running = |tenant: &str, service: &str| {
            let name =
                crate::runtime::spec::container_name(&self.host().namespace, tenant, service);
            inv.containers
                .iter()
                .find(|c| c.name == name && c.status == RunStatus::Running)
        };
        let targets = crate::probe::targets::of_tenant(&scope, inst, &running, true);
        self.svc.probes().sync_tenant(t, targets);
        self.svc.probes().overlay(&mut inv);
        Ok(inv)
    }

    /// What plan reads of this host besides the files and the engine.
    pub(super) fn plan_context<'a>(
        &'a self,
        grow_stopped: &'a BTreeSet<String>,
        asleep: &'a BTreeSet<String>,
    ) -> plan::Context<'a> {
        plan::Context {
            namespace: &self.host().namespace,
            layout: self.svc.layout(),
            disks: self.svc.disks().is_ok(),
            grow_stopped,
            asleep,
            web_pool: self.host().web_pool(),
        }
    }

    pub(super) fn plan_tenant(&self, inst: &Instance, observed: &Inventory) -> Vec<plan::Step> {
        let t = &inst.tenant;
        let none = BTreeSet::new();
        let asleep = self.svc.sleep().asleep();
        let ctx = self.plan_context(&none, &asleep);
        let rec = plan::Recorded {
            allocations: self
                .svc
                .allocations()
                .get(t)
                .map(|a| BTreeMap::from([(t.clone(), a)]))
                .unwrap_or_default(),
            files_digest: super::files::read_digest(self.svc.layout(), t)
                .map(|x| BTreeMap::from([(t.clone(), x)]))
                .unwrap_or_default(),
            purge: BTreeSet::new(),
        };
        plan::plan_instance(&ctx, inst, observed, &rec)
    }

    async fn apply_tenant(&self, inst: &Instance, steps: &[plan::Step]) -> Result<(), WakeError> {
        let applier = self.applier();
        let r = applier.apply(&inst.tenant, Some(inst), steps).await;
        if let Err(e) = &r {
            // A pull under way is no failure; anything else backs off as a pass's would.
            if !matches!(e, apply::ApplyError::Pulling { .. }) {
                self.record_result(&inst.tenant, Some(e.to_string()));
            }
        }
        r.map_err(|e| WakeError::Apply(e.into()))
    }

    /// Whether every probe of `t` turns healthy within `within`.
    async fn healthy_within(&self, t: &str, within: Duration) -> bool {
        let until = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < until && !self.is_held(t) {
            if self.svc.probes().tenant_healthy(t) == Some(true) {
                return true;
            }
            tokio::time::sleep(HEALTH_POLL).await;
        }
        false
    }

    /// The board shows the tenant up at once (the next pass writes its whole entry again).
    fn show_running(&self, t: &str, observed: Inventory) {
        let mut board = self.board.write().expect("board lock");
        if let Some(st) = board.instances.get_mut(t) {
            st.phase = super::Phase::Running;
            st.containers = observed.containers;
            st.error = None;
        }
    }
}
