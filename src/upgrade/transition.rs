//! One tenant's move to a new version. Blue-green: the new web container starts beside the old
//! one on a second port, passes the health gate, the proxy switches and drains, then the old
//! one goes. Recreate: the proxy holds the tenant's requests while the old container stops, the
//! migration runs and the new one passes the gate. Every step is safe to repeat after a crash.

use super::{Upgrader, runner::now, state::Phase};
use crate::{
    desired::{self, Instance},
    proxy::{health, target::Target},
    reconcile::{apply::Applier, plan::Step},
    runtime::spec,
    spec::{
        instance::InstanceFile,
        template::{StringOrList, UpgradeStrategy},
    },
    store::{Allocation, Layout, atomic},
};
use std::{net::SocketAddr, sync::Arc, time::Duration};

/// Why a tenant did not move: before anything changed, or after (so it is rolled back).
enum Fail {
    NotStarted(String),
    Failed(String),
}

fn failed(e: impl std::fmt::Display) -> Fail {
    Fail::Failed(e.to_string())
}

/// The version a tenant had before its last upgrade (for `berth rollback`).
pub fn previous(layout: &Layout, tenant: &str) -> Option<String> {
    std::fs::read_to_string(layout.tenant(tenant).join("previous-version"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn next_name(canonical: &str) -> String {
    format!("{canonical}-next")
}

impl Upgrader {
    pub(super) async fn upgrade_tenant(self: &Arc<Self>, t: &str) {
        let started = std::time::Instant::now();
        self.ctl.hold(t);
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
        self.ctl.release(t);
    }

    async fn transition(self: &Arc<Self>, t: &str) -> Result<(), Fail> {
        let (progress, to, _) = self
            .progress(t)
            .ok_or_else(|| Fail::NotStarted("not part of the upgrade".into()))?;
        self.update(t, |p| p.phase = Phase::BackingUp);
        let backup = self
            .backups
            .create(t)
            .await
            .map_err(|e| Fail::NotStarted(format!("no backup, no upgrade: {e}")))?;
        self.update(t, |p| p.backup = Some(backup.id.clone()));
        let new = self.instance_at(t, &to).map_err(Fail::NotStarted)?;
        let old = self
            .ctl
            .desired()
            .instances
            .get(t)
            .cloned()
            .ok_or_else(|| Fail::NotStarted("instance is gone".into()))?;
        let alloc = self
            .ctl
            .allocations()
            .get(t)
            .ok_or_else(|| Fail::NotStarted("instance was never provisioned".into()))?;
        match progress.strategy {
            UpgradeStrategy::BlueGreen => {
                self.check_only_web_changes(&old, &new, &alloc)
                    .map_err(Fail::NotStarted)?;
                self.blue_green(t, &new, alloc).await?;
            }
            UpgradeStrategy::Recreate => self.recreate(t, &new, alloc).await?,
        }
        self.finish_tenant(t, &to, progress.strategy)
            .await
            .map_err(failed)?;
        let _ = atomic::write(
            &self.ctl.layout().tenant(t).join("previous-version"),
            progress.from.as_bytes(),
            0o600,
        );
        Ok(())
    }

    /// The tenant's instance as it will be at `version`, validated like an API edit.
    fn instance_at(&self, t: &str, version: &str) -> Result<Instance, String> {
        let mut file = self.read_file(t)?;
        file.version = Some(version.into());
        desired::check_candidate(self.ctl.host(), &file).map_err(|e| e.to_string())
    }

    /// Blue-green replaces the web container only; any other service must stay the same.
    fn check_only_web_changes(
        &self,
        old: &Instance,
        new: &Instance,
        a: &Allocation,
    ) -> Result<(), String> {
        let (ns, layout) = (&self.ctl.host().namespace, self.ctl.layout());
        for svc in old.services.iter().filter(|s| s.name != old.web.service) {
            let hash = |i: &Instance, s| {
                spec::container_spec(ns, i, s, a, layout).labels[crate::runtime::labels::SPEC_HASH]
                    .clone()
            };
            let same = new
                .service(&svc.name)
                .is_some_and(|n| hash(new, n) == hash(old, svc));
            if !same {
                return Err(format!(
                    "service {} changes between versions {} and {}: blue-green only swaps the web service; give the version `strategy: recreate`",
                    svc.name, old.version, new.version
                ));
            }
        }
        Ok(())
    }

    fn applier(&self) -> Applier<'_> {
        Applier {
            rt: self.ctl.runtime().as_ref(),
            host: self.ctl.host(),
            layout: self.ctl.layout(),
            allocs: self.ctl.allocations(),
        }
    }

    /// Creates and starts the web container of `inst` as `name`, published on `port`.
    async fn start_web(
        &self,
        inst: &Instance,
        alloc: Allocation,
        port: u16,
        name: &str,
    ) -> Result<(), Fail> {
        self.applier()
            .apply(&inst.tenant, Some(inst), &[Step::WriteFiles])
            .await
            .map_err(failed)?;
        let svc = inst
            .service(&inst.web.service)
            .ok_or_else(|| failed("template has no web service"))?;
        let a = Allocation { port, ..alloc };
        let mut spec =
            spec::container_spec(&self.ctl.host().namespace, inst, svc, &a, self.ctl.layout());
        spec.name = name.into();
        let rt = self.ctl.runtime();
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
            .ctl
            .allocations()
            .reserve_next(t, self.ctl.host().ports)
            .map_err(|e| Fail::NotStarted(e.to_string()))?;
        self.update(t, |p| {
            p.next_port = Some(port);
            p.phase = Phase::Starting;
        });
        let canonical = spec::container_name(&self.ctl.host().namespace, t, &new.web.service);
        let green = next_name(&canonical);
        self.start_web(new, alloc, port, &green).await?;
        self.migrate(t, &green).await?;
        let target = Target::new(
            SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(2),
        );
        self.health_gate(t, &target, new).await?;
        self.update(t, |p| p.phase = Phase::Switching);
        self.ctl.allocations().promote_next(t).map_err(failed)?;
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
        self.update(t, |p| p.phase = Phase::Starting);
        let gate = self.proxy.as_ref().and_then(|p| p.gate(t));
        if let Some(g) = &gate {
            g.pause();
        }
        let canonical = spec::container_name(&self.ctl.host().namespace, t, &new.web.service);
        let rt = self.ctl.runtime();
        let grace = new
            .service(&new.web.service)
            .and_then(|s| s.stop_grace)
            .unwrap_or(Duration::from_secs(10));
        rt.stop_container(&canonical, grace).await.map_err(failed)?;
        self.start_web(new, alloc, alloc.port, &canonical).await?;
        self.migrate(t, &canonical).await?;
        let target = Target::new(
            SocketAddr::from(([127, 0, 0, 1], alloc.port)),
            Duration::from_secs(2),
        );
        self.health_gate(t, &target, new).await?;
        self.update(t, |p| p.phase = Phase::Switched);
        if let Some(g) = &gate {
            // The gate's target still names the same port; a fresh one drops pooled
            // connections to the container that is gone.
            g.replace(Some(target), Duration::ZERO);
            g.resume();
        }
        Ok(())
    }

    /// Runs the version's migration in the new container; marks the tenant migrated first, so
    /// even a migration that dies half way is undone by restoring the backup.
    async fn migrate(&self, t: &str, container: &str) -> Result<(), Fail> {
        let to = self.progress(t).map(|p| p.1).unwrap_or_default();
        let Some(cmd) = self.migration(&to) else {
            return Ok(());
        };
        self.update(t, |p| p.migrated = true);
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let out = self
            .ctl
            .runtime()
            .exec(container, &args, None)
            .await
            .map_err(failed)?;
        if out.exit_code != 0 {
            return Err(failed(format!(
                "migration exited {}: {}",
                out.exit_code,
                out.output.trim().chars().take(500).collect::<String>()
            )));
        }
        Ok(())
    }

    fn migration(&self, to: &str) -> Option<Vec<String>> {
        let app = self.status()?.app;
        let loaded = desired::load(self.ctl.host());
        let v = loaded
            .templates
            .get(&app)?
            .file()
            .versions
            .get(to)?
            .migration
            .clone()?;
        Some(match v {
            StringOrList::List(l) => l,
            StringOrList::String(s) => vec!["/bin/sh".into(), "-c".into(), s],
        })
    }

    /// N consecutive 2xx answers within the timeout, then still healthy for the watch period.
    async fn health_gate(
        &self,
        t: &str,
        target: &Arc<Target>,
        inst: &Instance,
    ) -> Result<(), Fail> {
        let gate = self.progress(t).map(|p| p.2).unwrap_or_default();
        let host = match &self.ctl.host().base_domain {
            Some(base) => format!("{t}.{base}"),
            None => "localhost".into(),
        };
        let path = &inst.web.health_path;
        health::wait_healthy(
            target,
            path,
            &host,
            gate.passes,
            Duration::from_secs(gate.timeout_s),
        )
        .await
        .map_err(failed)?;
        let until = tokio::time::Instant::now() + Duration::from_secs(gate.watch_s);
        while tokio::time::Instant::now() < until {
            match health::probe(target, path, &host).await {
                Ok(s) if (200..300).contains(&s) => {}
                other => {
                    return Err(failed(format!(
                        "healthy at first, then {}",
                        other.map_or_else(|e| e, |s| format!("status {s}"))
                    )));
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(())
    }

    /// After the switch: the file names the new version, the old container goes and the new
    /// one takes its name. Repeatable: each part checks what is already done.
    pub(super) async fn finish_tenant(
        &self,
        t: &str,
        to: &str,
        strategy: UpgradeStrategy,
    ) -> Result<(), String> {
        self.set_version(t, to).await?;
        if strategy == UpgradeStrategy::BlueGreen {
            let web = self.instance_at(t, to)?.web.service;
            let canonical = spec::container_name(&self.ctl.host().namespace, t, &web);
            let green = next_name(&canonical);
            let rt = self.ctl.runtime();
            let inv = rt
                .inventory(&self.ctl.host().namespace)
                .await
                .map_err(|e| e.to_string())?;
            if inv.containers.iter().any(|c| c.name == green) {
                // The proxy has drained it already; only stragglers from outside remain.
                rt.stop_container(&canonical, Duration::from_secs(2))
                    .await
                    .map_err(|e| e.to_string())?;
                rt.remove_container(&canonical)
                    .await
                    .map_err(|e| e.to_string())?;
                rt.rename_container(&green, &canonical)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        if let Some(g) = self.proxy.as_ref().and_then(|p| p.gate(t)) {
            g.resume();
        }
        Ok(())
    }

    /// Back to the old version: the candidate container goes, the database is restored if a
    /// migration touched it, and (recreate) the old web container is started again.
    pub(super) async fn undo(&self, t: &str, strategy: UpgradeStrategy) -> Result<(), String> {
        let Some((p, _, _)) = self.progress(t) else {
            return Ok(());
        };
        let old = self.ctl.desired().instances.get(t).cloned();
        let rt = self.ctl.runtime();
        let result = async {
            let Some(old) = old else { return Ok(()) };
            let canonical = spec::container_name(&self.ctl.host().namespace, t, &old.web.service);
            if p.migrated
                && let Some(id) = &p.backup
            {
                self.backups
                    .restore(t, id)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            match strategy {
                UpgradeStrategy::BlueGreen => {
                    rt.remove_container(&next_name(&canonical))
                        .await
                        .map_err(|e| e.to_string())?;
                    self.ctl
                        .allocations()
                        .drop_next(t)
                        .map_err(|e| e.to_string())?;
                }
                UpgradeStrategy::Recreate => {
                    let alloc = self.ctl.allocations().get(t).ok_or("no allocation")?;
                    self.start_web(&old, alloc, alloc.port, &canonical)
                        .await
                        .map_err(|f| match f {
                            Fail::Failed(e) | Fail::NotStarted(e) => e,
                        })?;
                    let target = Target::new(
                        SocketAddr::from(([127, 0, 0, 1], alloc.port)),
                        Duration::from_secs(2),
                    );
                    // Best effort: the old version was healthy before; give it the usual time.
                    let _ = health::wait_healthy(
                        &target,
                        &old.web.health_path,
                        "localhost",
                        1,
                        Duration::from_secs(60),
                    )
                    .await;
                    if let Some(g) = self.proxy.as_ref().and_then(|p| p.gate(t)) {
                        g.replace(Some(target), Duration::ZERO);
                    }
                }
            }
            Ok::<(), String>(())
        }
        .await;
        if let Some(g) = self.proxy.as_ref().and_then(|p| p.gate(t)) {
            g.resume();
        }
        result
    }

    /// Writes the version into the instance file (the source of truth), atomically.
    async fn set_version(&self, t: &str, version: &str) -> Result<(), String> {
        let lock = self.ctl.files_lock();
        let _guard = lock.lock().await;
        let mut file: InstanceFile = self.read_file(t)?;
        if file.version.as_deref() == Some(version) {
            return Ok(());
        }
        file.version = Some(version.into());
        let yaml = serde_yaml::to_string(&file).map_err(|e| e.to_string())?;
        let path = self.ctl.host().instances_dir.join(format!("{t}.yaml"));
        atomic::write(&path, yaml.as_bytes(), 0o644)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        tracing::info!(
            tenant = t,
            version,
            at = now(),
            "instance file now names the new version"
        );
        Ok(())
    }
}
