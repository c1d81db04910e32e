//! Carries out one tenant's planned steps against the runtime and the state dir.

use super::{files, plan::Step, shared_db};
use crate::{
    desired::{HostConfig, Instance},
    runtime::{Runtime, RuntimeError, spec},
    services::{PurgeHook, Services},
    store::{AllocError, Allocation, Allocations, Layout},
};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("tenant {tenant}: {source}")]
    Runtime {
        tenant: String,
        source: RuntimeError,
    },
    #[error("tenant {tenant}: {source}")]
    Alloc { tenant: String, source: AllocError },
    #[error(transparent)]
    Files(#[from] files::FilesError),
    #[error(transparent)]
    SharedDb(#[from] shared_db::SharedDbError),
    #[error(transparent)]
    Disk(#[from] crate::disk::DiskError),
    #[error(
        "tenant {tenant}: service {service} waits for {dependency}, which is not healthy after {secs} s"
    )]
    DependencyUnhealthy {
        tenant: String,
        service: String,
        dependency: String,
        secs: u64,
    },
    #[error("tenant {tenant}: this host makes no tenant filesystems (for {what})")]
    NoDisks { tenant: String, what: String },
    #[error("tenant {tenant}: {what} did not finish")]
    Blocking { tenant: String, what: &'static str },
    /// Not a failure: the tenant waits for an image pull under way.
    #[error("tenant {tenant}: pulling {image}")]
    Pulling { tenant: String, image: String },
    #[error("tenant {tenant}: pulling {image}: {reason}")]
    Pull {
        tenant: String,
        image: String,
        reason: String,
    },
    #[error("tenant {tenant}: cannot remove {path}: {source}")]
    Purge {
        tenant: String,
        path: String,
        source: std::io::Error,
    },
    #[error("tenant {tenant}: cannot record its identity: {source}")]
    Identity {
        tenant: String,
        source: std::io::Error,
    },
}

pub struct Applier<'a> {
    pub rt: &'a dyn Runtime,
    pub host: &'a HostConfig,
    pub layout: &'a Layout,
    pub allocs: &'a Allocations,
    /// Per-tenant filesystems, when this host can make them.
    pub disks: Option<std::sync::Arc<crate::disk::Disks>>,
    pub pulls: &'a std::sync::Arc<crate::images::Pulls>,
    /// Asks for a pass (a pull ended).
    pub kick: std::sync::Arc<tokio::sync::Notify>,
    /// What else a purge removes (`Services::on_purge`).
    pub purge_hooks: Vec<PurgeHook>,
}

impl<'a> Applier<'a> {
    /// An applier acting with the agent's shared services.
    pub fn of(svc: &'a Services) -> Applier<'a> {
        Applier {
            rt: svc.runtime().as_ref(),
            host: svc.host(),
            layout: svc.layout(),
            allocs: svc.allocations(),
            disks: svc.disks().ok().cloned(),
            pulls: svc.pulls(),
            kick: svc.kick_handle(),
            purge_hooks: svc.purge_hooks(),
        }
    }
}

impl Applier<'_> {
    /// Applies `steps` in order, stopping at the first failure (the next pass retries from the
    /// observed state, so nothing is lost by stopping).
    pub async fn apply(
        &self,
        tenant: &str,
        inst: Option<&Instance>,
        steps: &[Step],
    ) -> Result<(), ApplyError> {
        for step in steps {
            tracing::info!(tenant, ?step, "apply");
            self.step(tenant, inst, step).await?;
        }
        if let Some(i) = inst
            && steps.contains(&Step::WriteFiles)
        {
            files::commit(self.layout, i)?;
        }
        Ok(())
    }

    /// Starts or follows the image's pull; the tenant's other steps wait for it.
    fn pull(&self, t: &str, image: &str) -> Result<(), ApplyError> {
        let kick = self.kick.clone();
        match self.pulls.check(image, move || kick.notify_one()) {
            crate::images::Checked::Pulling => Err(ApplyError::Pulling {
                tenant: t.into(),
                image: image.into(),
            }),
            crate::images::Checked::Failed(reason) => Err(ApplyError::Pull {
                tenant: t.into(),
                image: image.into(),
                reason,
            }),
        }
    }

    pub(super) fn rt_err(tenant: &str) -> impl FnOnce(RuntimeError) -> ApplyError + '_ {
        move |source| ApplyError::Runtime {
            tenant: tenant.into(),
            source,
        }
    }

    fn alloc(&self, tenant: &str) -> Result<Allocation, ApplyError> {
        // The pool's last subnet is kept for the shared database server's own network.
        let subnets = self.host.subnet_pool.capacity() - 1;
        self.allocs
            .ensure(tenant, subnets, self.host.ports)
            .map_err(|source| ApplyError::Alloc {
                tenant: tenant.into(),
                source,
            })
    }

    async fn step(&self, t: &str, inst: Option<&Instance>, step: &Step) -> Result<(), ApplyError> {
        let ns = &self.host.namespace;
        let e = Self::rt_err(t);
        match step {
            Step::CreateNetwork => {
                let a = self.alloc(t)?;
                let subnet = self.host.subnet_pool.subnet(a.subnet);
                let range = self.host.web_pool().map(|p| p.dynamic_range(a.subnet));
                let net = spec::network_spec(ns, t, subnet, range);
                self.rt.create_network(&net).await.map_err(e)?;
                self.attach_relay(t, inst, &net.name).await;
                Ok(())
            }
            Step::CheckVolumesFit(moves) => self.check_volumes_fit(t, moves).await,
            Step::GrowDisk => self.grow_disk(t, need(inst)).await,
            Step::MoveVolume(m) => self.move_volume(t, m).await,
            Step::CreateVolume(v) => self.create_volume(t, need(inst), v).await,
            Step::PullImage(image) => self.pull(t, image),
            Step::WriteFiles => {
                // A tenant written by hand gets its identity here, before anything of it.
                crate::store::identity::ensure(self.layout, t, Some(&self.host.backup_dir))
                    .map_err(|source| ApplyError::Identity {
                        tenant: t.into(),
                        source,
                    })?;
                Ok(files::write(self.layout, need(inst))?)
            }
            Step::EnsureSharedDatabase => self.ensure_shared_database(need(inst)).await,
            Step::CreateContainer(svc) => {
                let a = self.alloc(t)?;
                let i = need(inst);
                let s = i.service(svc).expect("planned services exist");
                let pool = self.host.web_pool();
                let spec = spec::container_spec(ns, i, s, &a, pool, self.layout);
                self.rt.create_container(&spec).await.map_err(e)
            }
            Step::StartContainer(name) => self.rt.start_container(name).await.map_err(e),
            Step::StopContainer(name) => {
                let grace = grace(ns, inst, name);
                self.rt.stop_container(name, grace).await.map_err(e)
            }
            Step::RemoveContainer(name) => self.rt.remove_container(name).await.map_err(e),
            Step::RemoveNetwork(name) => self.remove_network(t, name).await,
            Step::RemoveVolume(name) => self.rt.remove_volume(name).await.map_err(e),
            Step::DropSharedDatabase => {
                shared_db::drop_tenant(self.rt, self.host, t).await?;
                Ok(super::shared_mariadb::drop_tenant(self.rt, self.host, t).await?)
            }
            Step::PurgeFiles => self.purge_files(t).await,
        }
    }

    async fn ensure_shared_database(&self, i: &Instance) -> Result<(), ApplyError> {
        let (rt, host, layout) = (self.rt, self.host, self.layout);
        match i.database.as_ref().map(|d| d.engine) {
            Some(crate::spec::template::DatabaseEngine::Postgres) | None => {
                Ok(shared_db::ensure(rt, host, layout, i).await?)
            }
            Some(_) => Ok(super::shared_mariadb::ensure(rt, host, layout, i).await?),
        }
    }

    /// A mail-sending tenant's network made (again: the mail relay keeps the tenants it has
    /// attached and would not see a new network under the same name): the relay attached.
    /// Best effort: a relay not running yet is attached by the mail sync when it starts.
    async fn attach_relay(&self, t: &str, inst: Option<&Instance>, net: &str) {
        use crate::runtime::labels::{HOST_TENANT, MAIL_SERVICE};
        if self.host.mail.is_none() || inst.is_none_or(|i| i.mail.is_none()) {
            return;
        }
        let ns = &self.host.namespace;
        let relay = spec::container_name(ns, HOST_TENANT, MAIL_SERVICE);
        let alias = crate::desired::mail::relay_alias(ns);
        if let Err(e) = self.rt.connect_network(net, &relay, &alias).await {
            tracing::debug!(tenant = t, error = %e, "mail relay not attached yet");
        }
    }

    /// Removes a tenant's network, detaching first what the host attached to it (the shared
    /// servers, the mail relay): the engine refuses to remove a network with endpoints.
    async fn remove_network(&self, t: &str, name: &str) -> Result<(), ApplyError> {
        use crate::runtime::labels::{
            HOST_TENANT, MAIL_SERVICE, MARIADB_SERVICE, POSTGRES_SERVICE,
        };
        let ns = &self.host.namespace;
        let attached = [
            (self.host.shared_database.is_some(), POSTGRES_SERVICE),
            (self.host.mail.is_some(), MAIL_SERVICE),
            (self.host.shared_mariadb.is_some(), MARIADB_SERVICE),
        ];
        for (_, service) in attached.iter().filter(|(on, _)| *on) {
            let c = spec::container_name(ns, HOST_TENANT, service);
            self.rt
                .disconnect_network(name, &c)
                .await
                .map_err(Self::rt_err(t))?;
        }
        self.rt.remove_network(name).await.map_err(Self::rt_err(t))
    }

    /// Removes the tenant's disk and every feature's files of it, then its own.
    async fn purge_files(&self, t: &str) -> Result<(), ApplyError> {
        if let Some(d) = self.disks.clone() {
            let tenant = t.to_string();
            self.blocking(t, "disk removal", move || d.remove(&tenant))
                .await?;
        }
        for hook in &self.purge_hooks {
            if let Err(e) = hook(t) {
                tracing::warn!(tenant = %t, error = %e, "a feature's files of the tenant not removed");
            }
        }
        self.purge(t)
    }

    fn purge(&self, t: &str) -> Result<(), ApplyError> {
        let perr = |path: &std::path::Path| {
            let path = path.display().to_string();
            move |source| ApplyError::Purge {
                tenant: t.into(),
                path,
                source,
            }
        };
        // The tenant's backups go with it (a later tenant of this name starts empty), then its
        // directory with its identity: its tokens are refused from here on.
        let backups = self.host.backup_dir.join(t);
        let dir = self.layout.tenant(t);
        for d in [&backups, &dir] {
            match std::fs::remove_dir_all(d) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                    return Err(perr(d)(err));
                }
                _ => {}
            }
        }
        self.allocs.release(t).map_err(|source| ApplyError::Alloc {
            tenant: t.into(),
            source,
        })?;
        let marker = self.layout.purge_marker(t);
        match std::fs::remove_file(&marker) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(perr(&marker)(err)),
            _ => Ok(()),
        }
    }
}

fn need(inst: Option<&Instance>) -> &Instance {
    inst.expect("plan emits instance steps only for desired instances")
}

/// The service's `stop_grace_period` (10 s when it sets none, or the container is not one of
/// the instance's services).
fn grace(ns: &str, inst: Option<&Instance>, container: &str) -> Duration {
    inst.and_then(|i| {
        i.services
            .iter()
            .find(|s| spec::container_name(ns, &i.tenant, &s.name) == container)
            .and_then(|s| s.stop_grace)
    })
    .unwrap_or(Duration::from_secs(10))
}
