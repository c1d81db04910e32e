//! One reconcile pass: observe (files and engine), plan, apply what is due, publish the board.

use super::{Controller, apply, plan, status};
use crate::{
    desired::{self, Loaded},
    runtime::Inventory,
    services::{PassError, PassReport},
};
use futures_util::StreamExt;
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

/// Each tenant's steps, for the tenants a pass applies to.
type Due = Vec<(String, Vec<plan::Step>)>;

impl Controller {
    /// One full observe → plan → apply pass. Passes never overlap.
    pub async fn pass(&self) -> Result<PassReport, PassError> {
        let mut n = self.pass_lock.lock().await;
        *n += 1;
        let started = Instant::now();
        let epoch = self.holds.lock().expect("holds lock").epoch;
        let mutations_before = self.svc.runtime().mutations();
        let (mut loaded, mut observed) = self.observe().await?;
        // Frozen tenants keep their last valid state (for the edge and their egress allows).
        self.admit_edits(&mut loaded, &observed);
        loaded.desired = self.carry_last_valid(std::mem::take(&mut loaded.desired));
        self.svc
            .pulls()
            .enforce_pins(&mut observed, &loaded.desired);
        self.probe(&loaded.desired, &mut observed, epoch);
        let recorded = self.recorded(&loaded.desired);
        let synced = self.sync_disks(&loaded.desired).await;
        let asleep = self.svc.sleep().asleep();
        let ctx = self.plan_context(&synced.grow_stopped, &asleep);
        let planned = plan::plan(&ctx, &loaded.desired, &observed, &recorded);
        let disk_failures: BTreeSet<String> = synced.failed.into_keys().collect();
        self.clear_converged(&planned, &disk_failures);
        let due = self.due(planned, &disk_failures, epoch);
        let steps: usize = due.iter().map(|(_, s)| s.len()).sum();
        let tenants_changed = due.len();
        // Before any container starts: the pool-wide rules cover a new tenant from its first
        // packet; its own allows are added once its subnet is allocated (below, or next pass).
        self.sync_egress(&loaded.desired).await;
        let errors = self.apply_due(due, &loaded.desired).await + disk_failures.len();
        self.clear_gone(&loaded.desired, &observed);
        if steps > 0 {
            self.sync_egress(&loaded.desired).await;
        }
        let observed = if steps > 0 {
            let mut again = self.svc.runtime().inventory(&self.host().namespace).await?;
            self.probe(&loaded.desired, &mut again, epoch);
            again
        } else {
            observed
        };
        self.keep_last_valid(&loaded.sources, &loaded.desired.frozen);
        self.retire_shared_db(&loaded.desired, &observed, !recorded.purge.is_empty())
            .await;
        let report = PassReport {
            pass: *n,
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            instances: loaded.desired.instances.len(),
            tenants_changed,
            steps,
            mutations: self.svc.runtime().mutations() - mutations_before,
            failures: self.failures.lock().expect("failures lock").len(),
            errors,
        };
        self.publish(loaded, &observed, report.clone());
        tracing::debug!(
            pass = report.pass,
            ms = report.duration_ms,
            steps,
            "reconcile pass"
        );
        Ok(report)
    }

    /// The files (off the async threads) and the engine; an engine error is on the board.
    pub(super) async fn observe(&self) -> Result<(Loaded, Inventory), PassError> {
        let host = self.host().clone();
        let loaded = tokio::task::spawn_blocking(move || desired::load(&host))
            .await
            .expect("spec loading does not panic");
        match self.svc.runtime().inventory(&self.host().namespace).await {
            Ok(inv) => Ok((loaded, inv)),
            Err(e) => {
                self.board.write().expect("board lock").engine_error = Some(e.to_string());
                Err(e.into())
            }
        }
    }

    /// The planned tenants this pass applies to: none backing off, none whose disk failed,
    /// none held or claimed by an operation.
    fn due(
        &self,
        planned: BTreeMap<String, Vec<plan::Step>>,
        disk_failures: &BTreeSet<String>,
        epoch: u64,
    ) -> Due {
        let now = Instant::now();
        let b = self.backoff.lock().expect("backoff lock");
        let due = planned
            .into_iter()
            .filter(|(t, _)| b.get(t).is_none_or(|x| x.next_attempt <= now))
            .filter(|(t, _)| !disk_failures.contains(t))
            .collect();
        self.holds.lock().expect("holds lock").take_due(due, epoch)
    }

    /// Applies each due tenant's steps, `parallelism` tenants at a time; how many failed.
    async fn apply_due(&self, due: Due, desired: &desired::Desired) -> usize {
        let applier = self.applier();
        let errors = AtomicUsize::new(0);
        futures_util::stream::iter(due)
            .for_each_concurrent(self.host().parallelism, |(t, steps)| {
                let inst = desired.instances.get(&t);
                let (applier, errors) = (&applier, &errors);
                async move {
                    let result = applier.apply(&t, inst, &steps).await;
                    // Waiting for a pull is no failure: no backoff, no error shown.
                    let result = match result {
                        Err(apply::ApplyError::Pulling { .. }) => Ok(()),
                        r => r,
                    };
                    if result.is_err() {
                        errors.fetch_add(1, Ordering::Relaxed);
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
        errors.into_inner()
    }

    /// The board and the desired state the rest of the agent reads, then subscribers told.
    fn publish(&self, loaded: Loaded, observed: &Inventory, report: PassReport) {
        let desired = loaded.desired;
        let failures = self.failures.lock().expect("failures lock").clone();
        let allocs = self.svc.allocations().snapshot();
        let addresses = status::addresses(self.host(), &desired, observed, &allocs);
        let sleep = self.svc.sleep();
        let mut board = self.board.write().expect("board lock");
        board.instances = status::board(&desired, observed, &failures, &addresses);
        status::mark_pulls(&mut board.instances, &desired, &self.svc.pulls().pulling());
        status::mark_probes(&mut board.instances, self.svc.probes().snapshot());
        status::mark_sleep(&mut board.instances, &sleep.asleep(), &sleep.wake_errors());
        board.spec_errors = loaded.errors.0.iter().map(ToString::to_string).collect();
        board.last_pass = Some(report);
        board.engine_error = None;
        drop(board);
        *self.last_desired.write().expect("desired lock") = Arc::new(desired);
        self.touch();
    }
}
