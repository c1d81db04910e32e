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

    fn rt_err(tenant: &str) -> impl FnOnce(RuntimeError) -> ApplyError + '_ {
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
                self.rt
                    .create_network(&spec::network_spec(
                        ns,
                        t,
                        self.host.subnet_pool.subnet(a.subnet),
                    ))
                    .await
                    .map_err(e)
            }
            Step::CheckVolumesFit(moves) => {
                let d = self.disks_for(t, &moves[0].volume)?;
                let (tenant, moves) = (t.to_string(), moves.clone());
                self.blocking(t, "volume size check", move || {
                    let from: Vec<&std::path::Path> = moves
                        .iter()
                        .map(|m| std::path::Path::new(&m.from))
                        .collect();
                    d.check_fit(&tenant, &from)
                })
                .await
            }
            Step::GrowDisk => {
                let d = self.disks_for(t, "its disk")?;
                let Some(bytes) = need(inst).quota.disk else {
                    return Ok(());
                };
                let tenant = t.to_string();
                self.blocking(t, "disk growth", move || d.grow_stopped(&tenant, bytes))
                    .await
            }
            Step::MoveVolume(m) => {
                let d = self.disks_for(t, &m.volume)?;
                let (tenant, mv) = (t.to_string(), m.clone());
                let to = self
                    .blocking(t, "volume copy", move || {
                        d.move_in(&tenant, &mv.volume, std::path::Path::new(&mv.from))
                    })
                    .await?;
                // The copy is whole before the engine's volume goes; a crash between the two
                // leaves no volume, and the next pass creates the bind onto the copy.
                let name = spec::volume_name(ns, t, &m.volume);
                self.rt
                    .remove_volume(&name)
                    .await
                    .map_err(Self::rt_err(t))?;
                let device = Some(to.to_string_lossy().into_owned());
                self.rt
                    .create_volume(&spec::volume_spec(ns, t, &m.volume, device))
                    .await
                    .map_err(e)
            }
            Step::CreateVolume(v) => {
                let device = match &self.disks {
                    Some(d) if need(inst).quota.disk.is_some() => {
                        Some(d.prepare_volume(t, v)?.to_string_lossy().into_owned())
                    }
                    _ => None,
                };
                self.rt
                    .create_volume(&spec::volume_spec(ns, t, v, device))
                    .await
                    .map_err(e)
            }
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
            Step::EnsureSharedDatabase => {
                let i = need(inst);
                let engine = i.database.as_ref().map(|d| d.engine);
                match engine {
                    Some(crate::spec::template::DatabaseEngine::Postgres) | None => {
                        Ok(shared_db::ensure(self.rt, self.host, self.layout, i).await?)
                    }
                    Some(_) => {
                        Ok(
                            super::shared_mariadb::ensure(self.rt, self.host, self.layout, i)
                                .await?,
                        )
                    }
                }
            }
            Step::CreateContainer(svc) => {
                let a = self.alloc(t)?;
                let i = need(inst);
                let s = i.service(svc).expect("planned services exist");
                self.rt
                    .create_container(&spec::container_spec(ns, i, s, &a, self.layout))
                    .await
                    .map_err(e)
            }
            Step::StartContainer(name) => self.rt.start_container(name).await.map_err(e),
            Step::StopContainer(name) => self
                .rt
                .stop_container(name, grace(ns, inst, name))
                .await
                .map_err(e),
            Step::RemoveContainer(name) => self.rt.remove_container(name).await.map_err(e),
            Step::RemoveNetwork(name) => {
                // The shared database server may be attached; Docker refuses to remove a
                // network with endpoints, so detach it first.
                if self.host.shared_database.is_some() {
                    let server = spec::container_name(
                        ns,
                        crate::runtime::labels::HOST_TENANT,
                        crate::runtime::labels::POSTGRES_SERVICE,
                    );
                    self.rt
                        .disconnect_network(name, &server)
                        .await
                        .map_err(Self::rt_err(t))?;
                }
                if self.host.mail.is_some() {
                    let relay = spec::container_name(
                        ns,
                        crate::runtime::labels::HOST_TENANT,
                        crate::runtime::labels::MAIL_SERVICE,
                    );
                    self.rt
                        .disconnect_network(name, &relay)
                        .await
                        .map_err(Self::rt_err(t))?;
                }
                if self.host.shared_mariadb.is_some() {
                    let server = super::shared_mariadb::server_name(ns);
                    self.rt
                        .disconnect_network(name, &server)
                        .await
                        .map_err(Self::rt_err(t))?;
                }
                self.rt.remove_network(name).await.map_err(e)
            }
            Step::RemoveVolume(name) => self.rt.remove_volume(name).await.map_err(e),
            Step::DropSharedDatabase => {
                shared_db::drop_tenant(self.rt, self.host, t).await?;
                Ok(super::shared_mariadb::drop_tenant(self.rt, self.host, t).await?)
            }
            Step::PurgeFiles => {
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
        }
    }

    fn disks_for(
        &self,
        t: &str,
        what: &str,
    ) -> Result<std::sync::Arc<crate::disk::Disks>, ApplyError> {
        self.disks.clone().ok_or_else(|| ApplyError::NoDisks {
            tenant: t.into(),
            what: what.into(),
        })
    }

    /// Runs file work (copies, tree walks) off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        t: &str,
        what: &'static str,
        f: impl FnOnce() -> Result<T, crate::disk::DiskError> + Send + 'static,
    ) -> Result<T, ApplyError> {
        match tokio::task::spawn_blocking(f).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(ApplyError::Blocking {
                tenant: t.into(),
                what,
            }),
        }
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
