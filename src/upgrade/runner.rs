//! The wave loop: one wave at a time, its tenants in parallel, then the failure check; and
//! recovery of tenants a crash left mid-step, before any new step is taken.

use super::{
    Upgrader,
    state::{FleetStatus, Phase},
};
use crate::spec::template::UpgradeStrategy;
use std::sync::{Arc, atomic::Ordering};

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl Upgrader {
    /// Runs the active upgrade in the background unless a runner already does.
    pub fn spawn(self: &Arc<Self>) {
        if self.running.swap(true, Ordering::SeqCst) {
            self.wake.notify_waiters();
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            me.recover().await;
            if let Err(reason) = me.fetch_images().await {
                me.finish(super::state::FleetStatus::Halted, Some(reason.to_string()));
            }
            me.run().await;
            me.running.store(false, Ordering::SeqCst);
        });
    }

    async fn run(self: &Arc<Self>) {
        loop {
            let next = {
                let cur = self.state.lock().expect("upgrade lock");
                let Some(s) = cur.as_ref() else { return };
                (s.status, s.waves.get(s.wave).cloned(), s.wave)
            };
            let wave = match next {
                (FleetStatus::Paused, _, _) => {
                    let woken = self.wake.notified();
                    if self
                        .status()
                        .is_some_and(|s| s.status == FleetStatus::Paused)
                    {
                        woken.await;
                    }
                    continue;
                }
                (FleetStatus::Running, Some(w), _) => w,
                (FleetStatus::Running, None, _) => return self.finish(FleetStatus::Done, None),
                _ => return,
            };
            let todo: Vec<String> = {
                let cur = self.state.lock().expect("upgrade lock");
                let s = cur.as_ref().expect("present");
                wave.into_iter()
                    .filter(|t| s.tenants.get(t).is_some_and(|p| p.phase == Phase::Pending))
                    .collect()
            };
            futures_util::future::join_all(todo.iter().map(|t| {
                let me = self.clone();
                async move { me.upgrade_tenant(t).await }
            }))
            .await;
            let halt = {
                let mut cur = self.state.lock().expect("upgrade lock");
                let s = cur.as_mut().expect("present");
                self.audit_wave(s, &todo);
                s.wave += 1;
                if let Err(e) = self.save(s) {
                    tracing::error!(error = %e, "upgrade state not saved");
                }
                s.halt_reason()
            };
            if let Some(reason) = halt {
                tracing::warn!(reason, "fleet upgrade halted");
                return self.finish(FleetStatus::Halted, Some(reason));
            }
        }
    }

    /// One audit row per tenant of the wave just run, with how it ended.
    fn audit_wave(&self, s: &super::state::UpgradeState, wave: &[String]) {
        for t in wave {
            let Some(p) = s.tenants.get(t) else { continue };
            let result = match &p.error {
                Some(e) => Err(e.clone()),
                None => Ok(()),
            };
            let e = crate::audit::Event::system("upgrader", Some(t), "upgrade.wave", result)
                .target(
                    format!(
                        "{} wave {} {} → {} ({:?})",
                        s.app,
                        s.wave + 1,
                        p.from,
                        s.to,
                        p.phase
                    )
                    .to_lowercase(),
                );
            self.cx.svc.audit().record(&e);
        }
    }

    fn finish(&self, status: FleetStatus, reason: Option<String>) {
        let mut cur = self.state.lock().expect("upgrade lock");
        let Some(s) = cur.as_mut() else { return };
        if !s.status.is_active() {
            return;
        }
        s.status = status;
        s.reason = reason;
        s.finished = Some(now());
        if let Err(e) = self.save(s) {
            tracing::error!(error = %e, "upgrade state not saved");
        }
        tracing::info!(
            id = s.id,
            ?status,
            done = s.done(),
            failed = s.failures(),
            "fleet upgrade finished"
        );
    }

    /// Tenants a crash left mid-step: before the switch they go back to their old version and
    /// are retried; after it they are finished. Either way each ends on one version, serving.
    async fn recover(self: &Arc<Self>) {
        let stuck: Vec<(String, Phase, UpgradeStrategy)> = self
            .status()
            .map(|s| {
                s.tenants
                    .iter()
                    .filter(|(_, p)| p.phase.in_flight())
                    .map(|(t, p)| (t.clone(), p.phase, p.strategy))
                    .collect()
            })
            .unwrap_or_default();
        for (t, phase, strategy) in stuck {
            self.cx.passes.hold_settled(&t).await;
            tracing::warn!(
                tenant = t,
                ?phase,
                "resuming a tenant an earlier agent left mid-upgrade"
            );
            let (progress, to, _) = self.progress(&t).expect("listed");
            let promoted = progress.next_port.is_some()
                && self.cx.svc.allocations().get(&t).map(|a| a.port) == progress.next_port;
            if resume_forward(phase, promoted) {
                match self.finish_tenant(&t, &to, strategy).await {
                    Ok(()) => self.update(&t, |p| p.phase = Phase::Done),
                    Err(e) => {
                        // Serving the new version already; the file will be retried next start.
                        tracing::error!(tenant = t, error = %e, "cannot finish upgrade bookkeeping");
                        continue;
                    }
                }
            } else {
                let _ = self.undo(&t, strategy).await;
                self.update(&t, |p| {
                    p.phase = Phase::Pending;
                    p.next_port = None;
                    p.migrated = false;
                });
            }
            self.cx.passes.release(&t);
        }
    }
}

/// After a crash, whether a tenant left in `phase` is finished (the new version already
/// serves) or returned to its old version and retried. `promoted`: its allocation already
/// names the new container's port, so the proxy of a restarted agent routes there.
pub fn resume_forward(phase: Phase, promoted: bool) -> bool {
    match phase {
        Phase::Switched => true,
        Phase::Switching => promoted,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_is_finished_after_a_crash_only_once_traffic_can_reach_the_new_version() {
        let table = [
            (Phase::BackingUp, false, false),
            (Phase::Starting, false, false),
            (Phase::Starting, true, false),
            (Phase::Switching, false, false),
            (Phase::Switching, true, true),
            (Phase::Switched, false, true),
            (Phase::Switched, true, true),
        ];
        for (phase, promoted, forward) in table {
            assert_eq!(
                resume_forward(phase, promoted),
                forward,
                "{phase:?} promoted={promoted}"
            );
        }
    }
}
