//! The end of a tenant's move, either way: commit (file, old container, name) or undo
//! (candidate removed, backup restored if migrated, old version started). Both repeatable.

use super::{
    Upgrader,
    runner::now,
    transition::{Fail, StepError, next_name},
};
use crate::{
    proxy::health,
    proxy::target::Target,
    runtime::spec,
    spec::{instance::InstanceFile, template::UpgradeStrategy},
    store::atomic,
};
use std::time::Duration;

impl Upgrader {
    /// After the switch: the file names the new version, the old container goes and the new
    /// one takes its name. Repeatable: each part checks what is already done.
    pub(super) async fn finish_tenant(
        &self,
        t: &str,
        to: &str,
        strategy: UpgradeStrategy,
    ) -> Result<(), StepError> {
        self.set_version(t, to).await?;
        if strategy == UpgradeStrategy::BlueGreen {
            let web = self.instance_at(t, to)?.web.service;
            let canonical = spec::container_name(&self.cx.svc.host().namespace, t, &web);
            let green = next_name(&canonical);
            let rt = self.cx.svc.runtime();
            let inv = rt.inventory(&self.cx.svc.host().namespace).await?;
            // Swarm cannot rename: the service is made again under its name, so requests wait
            // at the gate meanwhile, and the gate's pool must not keep the old connections.
            let held = self
                .proxy
                .as_ref()
                .and_then(|p| p.gate(t))
                .filter(|_| self.cx.svc.host().engine.is_swarm());
            if inv.containers.iter().any(|c| c.name == green) {
                // The proxy has drained it already; only stragglers from outside remain.
                rt.stop_container(&canonical, Duration::from_secs(2))
                    .await?;
                rt.remove_container(&canonical).await?;
                // Held only while the serving service is made again (the old one is gone).
                if let Some(g) = &held {
                    g.pause();
                }
                rt.rename_container(&green, &canonical).await?;
                if let Some(g) = &held {
                    let alloc = self
                        .cx
                        .svc
                        .allocations()
                        .get(t)
                        .ok_or(StepError::NoAllocation)?;
                    // Released once it answers (it passed the gate as green moments ago).
                    let new = self.instance_at(t, to)?;
                    let at = self.cx.passes.web_at(t, new.web.port, &alloc);
                    let at = Target::new(at, Duration::from_secs(2));
                    let host = health::probe_host(&new, self.cx.svc.host().base_domain.as_deref());
                    let path = &new.web.health_path;
                    let _ =
                        health::wait_healthy(&at, path, &host, 1, Duration::from_secs(60)).await;
                    g.replace(Some(at), Duration::ZERO);
                }
            }
        }
        if let Some(g) = self.proxy.as_ref().and_then(|p| p.gate(t)) {
            g.resume();
        }
        Ok(())
    }

    /// Back to the old version: the candidate container goes, the database is restored if a
    /// migration touched it, and (recreate) the old web container is started again.
    pub(super) async fn undo(&self, t: &str, strategy: UpgradeStrategy) -> Result<(), StepError> {
        let Some((p, _, _)) = self.progress(t) else {
            return Ok(());
        };
        let old = self.cx.passes.desired().instances.get(t).cloned();
        let rt = self.cx.svc.runtime();
        let result = async {
            let Some(old) = old else { return Ok(()) };
            let canonical =
                spec::container_name(&self.cx.svc.host().namespace, t, &old.web.service);
            if p.migrated
                && let Some(id) = &p.backup
            {
                // The turn holds the tenant: the restore runs inside it.
                self.backups
                    .restore(t, id, true, crate::backup::restore::Holder::Caller)
                    .await?;
            }
            match strategy {
                UpgradeStrategy::BlueGreen => {
                    rt.remove_container(&next_name(&canonical)).await?;
                    self.cx.svc.allocations().drop_next(t)?;
                }
                UpgradeStrategy::Recreate => {
                    let alloc = self
                        .cx
                        .svc
                        .allocations()
                        .get(t)
                        .ok_or(StepError::NoAllocation)?;
                    self.start_web(&old, alloc, &canonical)
                        .await
                        .map_err(|f| match f {
                            Fail::Failed(e) | Fail::NotStarted(e) => StepError::Restart(e),
                        })?;
                    let at = self.cx.passes.web_at(t, old.web.port, &alloc);
                    let target = Target::new(at, Duration::from_secs(2));
                    // Best effort: the old version was healthy before; give it the usual time.
                    let _ = health::wait_healthy(
                        &target,
                        &old.web.health_path,
                        &health::probe_host(&old, self.cx.svc.host().base_domain.as_deref()),
                        1,
                        Duration::from_secs(60),
                    )
                    .await;
                    if let Some(g) = self.proxy.as_ref().and_then(|p| p.gate(t)) {
                        g.replace(Some(target), Duration::ZERO);
                    }
                }
            }
            Ok::<(), StepError>(())
        }
        .await;
        if let Some(g) = self.proxy.as_ref().and_then(|p| p.gate(t)) {
            g.resume();
        }
        result
    }

    /// Writes the version into the instance file (the source of truth), atomically.
    async fn set_version(&self, t: &str, version: &str) -> Result<(), StepError> {
        let lock = self.cx.svc.files_lock();
        let _guard = lock.lock().await;
        let mut file: InstanceFile = self.read_file(t)?;
        if file.version.as_deref() == Some(version) {
            return Ok(());
        }
        file.version = Some(version.into());
        let path = self.cx.svc.host().instances_dir.join(format!("{t}.yaml"));
        // Edited in place: only the version line changes.
        let text = std::fs::read_to_string(&path).ok();
        let w = crate::spec::edit::rewrite_text(text.as_deref(), &file);
        if let crate::spec::edit::Written::Whole(_, why) = &w {
            tracing::warn!(
                tenant = t,
                why,
                "instance file written whole: its comments and layout were not kept"
            );
        }
        let yaml = w.text().to_string();
        if yaml.is_empty() {
            return Err(StepError::Write {
                path: path.display().to_string(),
                source: std::io::Error::other("the instance file did not serialize"),
            });
        }
        atomic::write(&path, yaml.as_bytes(), 0o644).map_err(|source| StepError::Write {
            path: path.display().to_string(),
            source,
        })?;
        tracing::info!(
            tenant = t,
            version,
            at = now(),
            "instance file now names the new version"
        );
        Ok(())
    }
}
