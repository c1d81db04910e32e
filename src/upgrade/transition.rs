//! One tenant's move to a new version. Blue-green: the new web container starts beside the old
//! one on a second port, passes the health gate, the proxy switches and drains, then the old
//! one goes. Recreate: the proxy holds the tenant's requests while the old container stops, the
//! migration runs and the new one passes the gate. Every step is safe to repeat after a crash.

use super::{Upgrader, state::Phase};
use crate::{
    desired::{self, Instance},
    proxy::target::Target,
    runtime::spec,
    spec::template::UpgradeStrategy,
    store::{Allocation, Layout, atomic},
};
use std::{sync::Arc, time::Duration};

/// Why a step of one tenant's move (or of its undo) failed; the upgrade's state says it.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{0}")]
    Spec(#[from] crate::spec::SpecError),
    #[error("{0}")]
    Invalid(#[from] crate::spec::SpecErrors),
    #[error("{0}")]
    Runtime(#[from] crate::runtime::RuntimeError),
    #[error("{0}")]
    Alloc(#[from] crate::store::AllocError),
    #[error("{0}")]
    Backup(#[from] crate::backup::BackupError),
    #[error("{0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("{path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("no allocation")]
    NoAllocation,
    #[error(
        "service {service} changes between versions {from} and {to}: blue-green only swaps the web service; give the version `strategy: recreate`"
    )]
    NotWebOnly {
        service: String,
        from: String,
        to: String,
    },
    /// The old version's web container did not start again.
    #[error("{0}")]
    Restart(String),
}

/// Why a tenant did not move: before anything changed, or after (so it is rolled back).
pub(super) enum Fail {
    NotStarted(String),
    Failed(String),
}

pub(super) fn failed(e: impl std::fmt::Display) -> Fail {
    Fail::Failed(e.to_string())
}

fn not_started(e: StepError) -> Fail {
    Fail::NotStarted(e.to_string())
}

/// The version a tenant had before its last upgrade (for `berth rollback`).
pub fn previous(layout: &Layout, tenant: &str) -> Option<String> {
    std::fs::read_to_string(layout.tenant(tenant).join("previous-version"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

pub(super) fn next_name(canonical: &str) -> String {
    format!("{canonical}-next")
}

impl Upgrader {
    /// Why `t` is not upgraded here, if it moved (or is being moved) to another host: its
    /// data is handed over as it is, and the host it moves to upgrades it.
    pub(super) fn moving(&self, t: &str) -> Option<String> {
        if let Some(r) = self.handover.moved(t) {
            return Some(format!("moved to {}: upgrade it there", r.to));
        }
        self.handover
            .is_holding(t)
            .then(|| "being moved to another host (its requests are held)".into())
    }

    /// Takes `t` out of the upgrade at its turn, into the skipped ones, with the reason.
    fn skip(&self, t: &str, why: String) {
        tracing::info!(tenant = t, why, "upgrade skips a tenant");
        let mut cur = self.state.lock().expect("upgrade lock");
        let Some(s) = cur.as_mut() else { return };
        s.tenants.remove(t);
        s.skipped.insert(t.into(), why);
        if let Err(e) = self.save(s) {
            tracing::error!(error = %e, "upgrade state not saved");
        }
    }

    /// Takes `t` from the reconciler for its turn in one step (`try_hold`), against any other
    /// holder: a move's hold or switch, a restore, a swarm move. While another holds it the
    /// turn waits, up to `limit`; a tenant that moved or is being moved is skipped, and so is
    /// one still held by another at the end (never upgraded under another operation).
    pub(super) async fn take_turn(
        &self,
        t: &str,
        limit: std::time::Duration,
    ) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(why) = self.moving(t) {
                return Err(why);
            }
            if self.cx.passes.try_hold(t) {
                // A move that ended between the check and the hold: it is not ours to upgrade.
                if let Some(why) = self.moving(t) {
                    self.cx.passes.release(t);
                    return Err(why);
                }
                self.cx.passes.hold_settled(t).await;
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "held by another operation (a restore or a move) for {} s: upgrade it when that ends",
                    limit.as_secs()
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }

    pub(super) async fn upgrade_tenant(self: &Arc<Self>, t: &str) {
        let started = std::time::Instant::now();
        if let Some(why) = self.moving(t) {
            return self.skip(t, why);
        }
        // A sleeping tenant moves awake, through the same backup and health gate as the rest;
        // it falls asleep again after its window.
        let limit = std::time::Duration::from_secs(self.progress(t).map_or(120, |p| p.2.timeout_s));
        let _awake = match crate::sleep::wake_for(&self.cx, t, "upgrade", limit).await {
            Ok(a) => a,
            Err(e) => {
                self.update(t, |p| {
                    p.phase = Phase::Failed;
                    p.error = Some(e.to_string());
                });
                return;
            }
        };
        if let Err(why) = self.take_turn(t, limit).await {
            return self.skip(t, why);
        }
        let strategy = self.progress(t).map(|p| p.0.strategy);
        let outcome = self.transition(t).await;
        let (phase, error) = match outcome {
            Ok(()) => (Phase::Done, None),
            Err(Fail::NotStarted(e)) => (Phase::Failed, Some(e)),
            Err(Fail::Failed(e)) => {
                tracing::warn!(tenant = t, error = e, "upgrade failed; rolling back");
                let undo = self
                    .undo(t, strategy.unwrap_or(UpgradeStrategy::Recreate))
                    .await;
                let e = match undo {
                    Ok(()) => e,
                    Err(u) => format!("{e}; rollback: {u}"),
                };
                (Phase::RolledBack, Some(e))
            }
        };
        tracing::info!(tenant = t, ?phase, error, "tenant upgrade finished");
        self.update(t, |p| {
            p.phase = phase;
            p.error = error;
            p.seconds = Some(started.elapsed().as_secs_f64());
        });
        self.cx.passes.release(t);
    }

    async fn transition(self: &Arc<Self>, t: &str) -> Result<(), Fail> {
        let (progress, to, _) = self
            .progress(t)
            .ok_or_else(|| Fail::NotStarted("not part of the upgrade".into()))?;
        let new = self.instance_at(t, &to).map_err(not_started)?;
        let old = self
            .cx
            .passes
            .desired()
            .instances
            .get(t)
            .cloned()
            .ok_or_else(|| Fail::NotStarted("instance is gone".into()))?;
        let alloc = self
            .cx
            .svc
            .allocations()
            .get(t)
            .ok_or_else(|| Fail::NotStarted("instance was never provisioned".into()))?;
        match progress.strategy {
            UpgradeStrategy::BlueGreen => {
                self.check_only_web_changes(&old, &new, &alloc)
                    .map_err(not_started)?;
                self.backup_turn(t).await?;
                self.blue_green(t, &new, alloc).await?;
            }
            UpgradeStrategy::Recreate => self.recreate(t, &new, alloc).await?,
        }
        self.finish_tenant(t, &to, progress.strategy)
            .await
            .map_err(failed)?;
        let _ = atomic::write(
            &self.cx.svc.layout().tenant(t).join("previous-version"),
            progress.from.as_bytes(),
            0o600,
        );
        Ok(())
    }

    /// The backup a failed turn can go back to; no backup, no upgrade.
    async fn backup_turn(&self, t: &str) -> Result<(), Fail> {
        self.update(t, |p| p.phase = Phase::BackingUp);
        let backup = self
            .backups
            .create(t)
            .await
            .map_err(|e| Fail::NotStarted(format!("no backup, no upgrade: {e}")))?;
        self.update(t, |p| p.backup = Some(backup.id.clone()));
        Ok(())
    }

    /// The tenant's instance as it will be at `version`, validated like an API edit.
    pub(super) fn instance_at(&self, t: &str, version: &str) -> Result<Instance, StepError> {
        let mut file = self.read_file(t)?;
        file.version = Some(version.into());
        Ok(desired::check_candidate(self.cx.svc.host(), &file)?)
    }

    /// Blue-green replaces the web container only; any other service must stay the same.
    fn check_only_web_changes(
        &self,
        old: &Instance,
        new: &Instance,
        a: &Allocation,
    ) -> Result<(), StepError> {
        let host = self.cx.svc.host();
        let (ns, pool, layout) = (&host.namespace, host.web_pool(), self.cx.svc.layout());
        for svc in old.services.iter().filter(|s| s.name != old.web.service) {
            let hash = |i: &Instance, s| {
                spec::container_spec(ns, i, s, a, pool, layout).labels
                    [crate::runtime::labels::SPEC_HASH]
                    .clone()
            };
            let same = new
                .service(&svc.name)
                .is_some_and(|n| hash(new, n) == hash(old, svc));
            if !same {
                return Err(StepError::NotWebOnly {
                    service: svc.name.clone(),
                    from: old.version.clone(),
                    to: new.version.clone(),
                });
            }
        }
        Ok(())
    }

    /// Creates and starts the web container of `inst` as `name`, at the address (or node
    /// port) `alloc` gives it.
    pub(super) async fn start_web(
        &self,
        inst: &Instance,
        alloc: Allocation,
        name: &str,
    ) -> Result<(), Fail> {
        self.cx.passes.write_files(inst).await.map_err(failed)?;
        let svc = inst
            .service(&inst.web.service)
            .ok_or_else(|| failed("template has no web service"))?;
        let host = self.cx.svc.host();
        let mut spec = spec::container_spec(
            &host.namespace,
            inst,
            svc,
            &alloc,
            host.web_pool(),
            self.cx.svc.layout(),
        );
        spec.name = name.into();
        let rt = self.cx.svc.runtime();
        rt.remove_container(name).await.map_err(failed)?;
        rt.create_container(&spec).await.map_err(failed)?;
        rt.start_container(name).await.map_err(failed)
    }

    async fn blue_green(
        self: &Arc<Self>,
        t: &str,
        new: &Instance,
        alloc: Allocation,
    ) -> Result<(), Fail> {
        let port = self
            .cx
            .svc
            .allocations()
            .reserve_next(t, self.cx.svc.host().ports)
            .map_err(|e| Fail::NotStarted(e.to_string()))?;
        self.update(t, |p| {
            p.next_port = Some(port);
            p.phase = Phase::Starting;
        });
        let next = Allocation {
            next_port: Some(port),
            ..alloc
        }
        .next()
        .expect("a next port was just reserved");
        let canonical = spec::container_name(&self.cx.svc.host().namespace, t, &new.web.service);
        let green = next_name(&canonical);
        let target = self.start_and_gate(t, new, next, &green).await?;
        self.update(t, |p| p.phase = Phase::Switching);
        self.cx.svc.allocations().promote_next(t).map_err(failed)?;
        if let Some(gate) = self.proxy.as_ref().and_then(|p| p.gate(t)) {
            let drain = self.proxy.as_ref().expect("has proxy").cfg.timeouts.drain;
            let report = gate.switch(target, drain).await;
            tracing::info!(tenant = t, ?report, "switched to the new version");
        }
        self.update(t, |p| p.phase = Phase::Switched);
        Ok(())
    }

    async fn recreate(
        self: &Arc<Self>,
        t: &str,
        new: &Instance,
        alloc: Allocation,
    ) -> Result<(), Fail> {
        let gate = self.proxy.as_ref().and_then(|p| p.gate(t));
        if let Some(g) = &gate {
            g.pause();
            // Requests already under way finish first (up to the service's stop grace), so
            // their writes are in the backup.
            let grace = new
                .service(&new.web.service)
                .and_then(|s| s.stop_grace)
                .unwrap_or(Duration::from_secs(10));
            let until = tokio::time::Instant::now() + grace;
            while g.in_flight() > 0 && tokio::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        // Backed up with the tenant's requests held, so the backup has everything the old
        // version wrote. From the stop on only the new release's code touches the data (an
        // image may migrate it as it starts, as osTicket's does): a failed turn restores it.
        if let Err(e) = self.backup_turn(t).await {
            if let Some(g) = &gate {
                g.resume();
            }
            return Err(e);
        }
        self.update(t, |p| {
            p.phase = Phase::Starting;
            p.migrated = true;
        });
        let canonical = spec::container_name(&self.cx.svc.host().namespace, t, &new.web.service);
        let rt = self.cx.svc.runtime();
        let grace = new
            .service(&new.web.service)
            .and_then(|s| s.stop_grace)
            .unwrap_or(Duration::from_secs(10));
        rt.stop_container(&canonical, grace).await.map_err(failed)?;
        let target = self.start_and_gate(t, new, alloc, &canonical).await?;
        self.update(t, |p| p.phase = Phase::Switched);
        if let Some(g) = &gate {
            // The gate's target still names the same port; a fresh one drops pooled
            // connections to the container that is gone.
            g.replace(Some(target), Duration::ZERO);
            g.resume();
        }
        Ok(())
    }

    /// Starts the new web container as `name` where `alloc` puts it, migrates, and waits for
    /// the health gate; records how long that took (the floor of any upgrade of this tenant).
    async fn start_and_gate(
        &self,
        t: &str,
        inst: &Instance,
        alloc: Allocation,
        name: &str,
    ) -> Result<Arc<Target>, Fail> {
        let clock = std::time::Instant::now();
        self.start_web(inst, alloc, name).await?;
        self.migrate(t, name).await?;
        let at = self.cx.passes.web_at(t, inst.web.port, &alloc);
        let target = Target::new(at, Duration::from_secs(2));
        self.health_gate(t, &target, inst).await?;
        self.update(t, |p| p.gate_seconds = Some(clock.elapsed().as_secs_f64()));
        Ok(target)
    }
}
