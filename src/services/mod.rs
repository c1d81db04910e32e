//! What the agent's parts share, built once before the reconciler: the engine, the host's
//! configuration and files, allocations, the audit log, the sleep set, image pulls, the
//! prober, the egress policy, per-tenant disks and the files lock.
//!
//! The daemon (or a test) builds [`Services`] and hands it to the reconciler and to every
//! feature (jobs, sleep, mail, backup, upgrade, the API). They reach the reconciler only
//! through the narrow [`Reconciler`] handle: ask for a pass, read the board, hold a tenant.
//! None of them imports `reconcile`.

mod handle;
pub mod status;

pub use handle::{Held, Reconciler, WakeError};
pub use status::{Board, InstanceStatus, PassReport, Phase, PlannedStep, TenantPlan};

use crate::{
    audit::Audit,
    desired::HostConfig,
    disk::Disks,
    egress::Egress,
    images::Pulls,
    probe::{Checker, NetChecker, Prober},
    runtime::{Runtime, RuntimeError},
    store::{AllocError, Allocations, Layout, sleep::SleepSet},
};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::Notify;

/// Why a reconcile pass failed.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Alloc(#[from] AllocError),
}

/// A feature's part of a tenant's purge (its files of the tenant), given the tenant's name.
/// A failure is logged; the purge goes on.
pub type PurgeHook =
    Arc<dyn Fn(&str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> + Send + Sync>;

/// What a feature is given: the shared services and the handle to the reconciler.
#[derive(Clone)]
pub struct Cx {
    pub svc: Arc<Services>,
    pub passes: Arc<dyn Reconciler>,
}

pub struct Services {
    rt: Arc<dyn Runtime>,
    host: HostConfig,
    layout: Layout,
    allocs: Allocations,
    /// Per-tenant filesystems, or why this host cannot make them.
    disks: Result<Arc<Disks>, crate::disk::Unavailable>,
    /// Image pulls under way or failed, shared by every tenant that needs the image.
    pulls: Arc<Pulls>,
    /// Health of every running tenant, probed by berth.
    probes: Arc<Prober>,
    /// Tenants asleep (containers stopped while idle) or waking.
    sleep: Arc<SleepSet>,
    audit: Arc<Audit>,
    /// The egress policy, set by the daemon (unit tests run without one).
    egress: OnceLock<Arc<Egress>>,
    /// Serialises read-modify-write of instance files (API edits, upgrades, domain moves).
    files_lock: Arc<tokio::sync::Mutex<()>>,
    /// Asks the reconciler for a pass; many kicks before it starts make one pass.
    kick: Arc<Notify>,
    /// What else a purge removes (the mail relay's files of the tenant), set by the daemon.
    purge_hooks: Mutex<Vec<PurgeHook>>,
}

impl Services {
    /// Services whose tenants are probed over the network.
    pub fn new(rt: Arc<dyn Runtime>, host: HostConfig) -> Result<Services, AllocError> {
        let checker = Arc::new(NetChecker::new(rt.clone()));
        Services::with_checker(rt, host, checker)
    }

    /// Services whose probes go through `checker` (a fake in unit tests). Makes the state
    /// directory's folders and opens what is kept in them.
    pub fn with_checker(
        rt: Arc<dyn Runtime>,
        host: HostConfig,
        checker: Arc<dyn Checker>,
    ) -> Result<Services, AllocError> {
        let layout = Layout::new(host.state_dir.clone());
        make_dirs(&layout)?;
        let allocs = Allocations::open(layout.allocations())?;
        let disks = open_disks(&host, &layout);
        let pulls = Pulls::new(
            rt.clone(),
            host.registries.clone(),
            host.registry_mirrors.clone(),
            Some(layout.images()),
            Some(layout.image_pins()),
        );
        let kick = Arc::new(Notify::new());
        let probes = Prober::new(host.probes.clone(), checker, kick.clone());
        Ok(Services {
            sleep: Arc::new(SleepSet::open(layout.sleep())),
            audit: Arc::new(
                Audit::open(&layout.root().join("audit")).with_identities(layout.clone()),
            ),
            probes,
            disks,
            pulls,
            rt,
            host,
            layout,
            allocs,
            egress: OnceLock::new(),
            files_lock: Arc::default(),
            kick,
            purge_hooks: Mutex::default(),
        })
    }

    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.rt
    }
    pub fn host(&self) -> &HostConfig {
        &self.host
    }
    pub fn layout(&self) -> &Layout {
        &self.layout
    }
    pub fn allocations(&self) -> &Allocations {
        &self.allocs
    }
    pub fn audit(&self) -> &Arc<Audit> {
        &self.audit
    }
    /// Image pulls under way.
    pub fn pulls(&self) -> &Arc<Pulls> {
        &self.pulls
    }
    /// The prober: health of every running tenant (the daemon runs its loop).
    pub fn probes(&self) -> &Arc<Prober> {
        &self.probes
    }
    /// Tenants asleep or waking (the sleeper changes it; passes plan asleep tenants stopped).
    pub fn sleep(&self) -> &Arc<SleepSet> {
        &self.sleep
    }
    pub fn files_lock(&self) -> Arc<tokio::sync::Mutex<()>> {
        self.files_lock.clone()
    }

    /// Per-tenant filesystems, or why this host cannot make them.
    pub fn disks(&self) -> Result<&Arc<Disks>, &crate::disk::Unavailable> {
        self.disks.as_ref()
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

    /// Installs the egress policy; every pass from now on keeps the kernel's rules in step.
    pub fn set_egress(&self, e: Arc<Egress>) {
        let _ = self.egress.set(e);
    }
    pub fn egress(&self) -> Option<&Arc<Egress>> {
        self.egress.get()
    }

    /// Asks for a pass soon; many kicks before it starts make one pass.
    pub fn kick(&self) {
        self.kick.notify_one();
    }
    /// The notifier behind `kick`, for tasks that outlive a pass (a pull's end) and for the
    /// reconciler's loop, which waits on it.
    pub fn kick_handle(&self) -> Arc<Notify> {
        self.kick.clone()
    }

    /// Adds what a tenant's purge also removes (a feature's files of the tenant).
    pub fn on_purge(&self, hook: PurgeHook) {
        self.purge_hooks.lock().expect("purge hooks").push(hook);
    }
    pub fn purge_hooks(&self) -> Vec<PurgeHook> {
        self.purge_hooks.lock().expect("purge hooks").clone()
    }
}

fn make_dirs(layout: &Layout) -> Result<(), AllocError> {
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
    Ok(())
}

fn open_disks(host: &HostConfig, layout: &Layout) -> Result<Arc<Disks>, crate::disk::Unavailable> {
    let disks = match host.engine.is_swarm() {
        // Volumes live on the nodes; a loop-mounted filesystem here would bound nothing.
        true => Err(crate::disk::Unavailable::Swarm),
        false => Disks::probe(&layout.disks()),
    }
    .map(Arc::new);
    if let Err(why) = &disks {
        tracing::warn!(reason = %why, "disk quotas cannot be enforced on this host; plans' disk limits are not applied");
    }
    disks
}
