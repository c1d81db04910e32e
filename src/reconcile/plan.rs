//! The pure planner: desired × observed → the steps that converge one to the other.
//! No I/O; every case is a table test below.

use crate::{
    desired::{Desired, Instance, subnet::SubnetPool},
    runtime::{Health, Inventory, RunStatus, spec},
    spec::{instance::RunState, template::DatabaseMode},
    store::{Allocation, Layout},
};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// One idempotent change. Container and network fields are Docker names; services and volumes
/// are the template's names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", content = "target", rename_all = "snake_case")]
pub enum Step {
    CreateNetwork,
    CreateVolume(String),
    /// Before moving volumes onto the tenant's filesystem: refuse (and so stop the tenant's
    /// steps) when their data would not fit, while the tenant still runs.
    CheckVolumesFit(Vec<MovedVolume>),
    /// Grow the tenant's filesystem with its containers stopped (no online resize here).
    GrowDisk,
    /// Copy a stopped tenant's volume from the engine's directory onto its filesystem, then
    /// replace the volume with a bind to the copy (same name).
    MoveVolume(MovedVolume),
    /// An image the tenant needs and the engine lacks: pulled (in the background) before any
    /// object of the tenant is made or changed.
    PullImage(String),
    /// Generate missing secrets, render configs, then record the files digest.
    WriteFiles,
    /// Create the tenant's role and database on the shared server, and attach the server.
    EnsureSharedDatabase,
    RemoveContainer(String),
    CreateContainer(String),
    StartContainer(String),
    StopContainer(String),
    RemoveNetwork(String),
    RemoveVolume(String),
    /// Drop the shared database and role (purge only).
    DropSharedDatabase,
    /// Remove secrets, rendered files, the allocation and the purge marker.
    PurgeFiles,
}

/// A volume made before its tenant had a disk, and where the engine keeps its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MovedVolume {
    pub volume: String,
    pub from: String,
}

/// What plan reads besides Docker: the allocation table, file digests on disk and purge marks.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    pub allocations: BTreeMap<String, Allocation>,
    pub files_digest: BTreeMap<String, String>,
    pub purge: BTreeSet<String>,
}

pub struct Context<'a> {
    pub namespace: &'a str,
    pub layout: &'a Layout,
    /// This host enforces disk quotas (tenant filesystems can be made).
    pub disks: bool,
    /// Tenants whose mounted filesystem must grow with their containers stopped.
    pub grow_stopped: &'a BTreeSet<String>,
    /// Tenants asleep: planned stopped (their containers kept) until a request wakes them.
    pub asleep: &'a BTreeSet<String>,
    /// The pool web containers take fixed addresses from (`HostConfig::web_pool`; None in
    /// swarm mode, where the edge reaches node ports). With one, a network made before that,
    /// without the engine's range below the web addresses, is made again.
    pub web_pool: Option<&'a SubnetPool>,
}

/// Steps per tenant. Tenants whose files are broken (`desired.frozen`) get none: a typo in an
/// instance file must never tear down a running tenant.
pub fn plan(
    ctx: &Context<'_>,
    desired: &Desired,
    observed: &Inventory,
    rec: &Recorded,
) -> BTreeMap<String, Vec<Step>> {
    let mut out = BTreeMap::new();
    for (tenant, inst) in &desired.instances {
        let steps = plan_instance(ctx, inst, observed, rec);
        if !steps.is_empty() {
            out.insert(tenant.clone(), steps);
        }
    }
    for tenant in known_tenants(observed, rec) {
        if desired.instances.contains_key(&tenant) || desired.frozen.contains_key(&tenant) {
            continue;
        }
        let steps = plan_removal(&tenant, observed, rec);
        if !steps.is_empty() {
            out.insert(tenant, steps);
        }
    }
    out
}

fn known_tenants(observed: &Inventory, rec: &Recorded) -> BTreeSet<String> {
    let mut t: BTreeSet<String> = observed
        .containers
        .iter()
        .map(|c| c.tenant.clone())
        .collect();
    t.extend(observed.networks.iter().map(|n| n.tenant.clone()));
    t.extend(observed.volumes.iter().map(|v| v.tenant.clone()));
    t.extend(rec.purge.iter().cloned());
    t.remove(crate::runtime::labels::HOST_TENANT);
    t.remove("");
    t
}

/// The tenant's images (its services', and the shared database server's in shared mode) the
/// engine does not list (none when images were not observed).
fn missing_images(inst: &Instance, observed: &Inventory) -> Vec<String> {
    let Some(have) = &observed.images else {
        return vec![];
    };
    let server = inst.database.as_ref().and_then(|d| d.server_image.clone());
    let mut out: Vec<String> = inst
        .services
        .iter()
        .map(|s| s.image.clone())
        .chain(server)
        .filter(|i| !have.contains(&crate::images::reference::normalize(i)))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The steps of one desired tenant (a wake plans its tenant alone with this).
pub fn plan_instance(
    ctx: &Context<'_>,
    inst: &Instance,
    observed: &Inventory,
    rec: &Recorded,
) -> Vec<Step> {
    let ns = ctx.namespace;
    let t = &inst.tenant;
    if ctx.grow_stopped.contains(t) {
        return grow_stopped(inst, observed, ns);
    }
    if inst.state != RunState::Running || ctx.asleep.contains(t) {
        return stop_running(inst, observed, ns);
    }
    let missing = missing_images(inst, observed);
    if !missing.is_empty() {
        return missing.into_iter().map(Step::PullImage).collect();
    }
    let moving = volumes_to_move(ctx, inst, observed);
    let mut steps = Vec::new();
    if !moving.is_empty() {
        steps.extend(stop_for_move(inst, observed, &moving, ns));
    }
    let network = observed
        .networks
        .iter()
        .find(|n| n.name == spec::network_name(ns, t));
    let remade = ctx
        .web_pool
        .is_some_and(|pool| network.is_some_and(|n| misplaced(n, rec.allocations.get(t), pool)));
    if remade && moving.is_empty() {
        steps.extend(stop_running(inst, observed, ns));
        steps.extend(remove_all(&inst.tenant, observed));
    }
    if remade {
        steps.push(Step::RemoveNetwork(spec::network_name(ns, t)));
    }
    // Containers removed for a move or a new network are planned as absent: made again after.
    let absent = !moving.is_empty() || remade;
    let ours = |name: &str| {
        observed
            .containers
            .iter()
            .find(|c| c.name == name)
            .filter(|_| !absent)
    };
    if network.is_none() || remade {
        steps.push(Step::CreateNetwork);
    }
    for v in &inst.volumes {
        let name = spec::volume_name(ns, t, v);
        if !observed.volumes.iter().any(|o| o.name == name) {
            steps.push(Step::CreateVolume(v.clone()));
        }
    }
    let shared = inst
        .database
        .as_ref()
        .is_some_and(|d| d.mode == DatabaseMode::Shared);
    if rec.files_digest.get(t) != Some(&super::files::digest(inst)) {
        steps.push(Step::WriteFiles);
        if shared {
            steps.push(Step::EnsureSharedDatabase);
        }
    } else if remade && shared {
        // The shared server is attached to the network made again.
        steps.push(Step::EnsureSharedDatabase);
    }
    let alloc = rec.allocations.get(t);
    for svc in &inst.services {
        let name = spec::container_name(ns, t, &svc.name);
        let want = alloc.map(|a| {
            spec::container_spec(ns, inst, svc, a, ctx.web_pool, ctx.layout).labels
                [crate::runtime::labels::SPEC_HASH]
                .clone()
        });
        // Compose's depends_on: a dependency berth probes (or with a healthcheck) must be
        // observed healthy before this service is created, so an app never crash-loops
        // against a starting database.
        let deps_ready = svc.depends_on.iter().all(|d| {
            let checked = crate::probe::targets::probed(inst, d)
                || inst.service(d).is_some_and(|ds| ds.healthcheck.is_some());
            !checked
                || ours(&spec::container_name(ns, t, d))
                    .is_some_and(|c| c.health == Some(Health::Healthy))
        });
        match ours(&name) {
            None if !deps_ready => {}
            Some(c) if !deps_ready && want.as_ref() != Some(&c.spec_hash) => {}
            None => steps.extend([
                Step::CreateContainer(svc.name.clone()),
                Step::StartContainer(name),
            ]),
            Some(c) if want.as_ref() != Some(&c.spec_hash) => steps.extend([
                Step::RemoveContainer(name.clone()),
                Step::CreateContainer(svc.name.clone()),
                Step::StartContainer(name),
            ]),
            Some(c) if c.status == RunStatus::Stopped => steps.push(Step::StartContainer(name)),
            Some(_) => {}
        }
    }
    let wanted: BTreeSet<String> = inst
        .services
        .iter()
        .map(|s| spec::container_name(ns, t, &s.name))
        .collect();
    for c in observed
        .containers
        .iter()
        .filter(|c| c.tenant == *t && !wanted.contains(&c.name) && !absent)
    {
        steps.push(Step::RemoveContainer(c.name.clone()));
    }
    steps
}

/// Volumes of a tenant with a disk that still live in the engine's directory (made before the
/// disk was given): they move onto its filesystem, or the quota would not hold for them.
fn volumes_to_move(ctx: &Context<'_>, inst: &Instance, observed: &Inventory) -> Vec<MovedVolume> {
    if !ctx.disks || inst.quota.disk.is_none() {
        return vec![];
    }
    inst.volumes
        .iter()
        .filter_map(|v| {
            let name = spec::volume_name(ctx.namespace, &inst.tenant, v);
            let o = observed.volumes.iter().find(|o| o.name == name)?;
            o.device.is_none().then(|| MovedVolume {
                volume: v.clone(),
                from: o.mountpoint.clone(),
            })
        })
        .collect()
}

/// The tenant's running containers stopped, last service first: dependents before what they
/// depend on, each with its grace period (so a database writes its data out).
fn stop_running(inst: &Instance, observed: &Inventory, ns: &str) -> Vec<Step> {
    inst.services
        .iter()
        .rev()
        .map(|s| spec::container_name(ns, &inst.tenant, &s.name))
        .filter(|n| {
            observed
                .containers
                .iter()
                .any(|c| &c.name == n && c.status == RunStatus::Running)
        })
        .map(Step::StopContainer)
        .collect()
}

/// Running containers stopped, the disk grown, then the existing ones started again in
/// service order if the tenant should run; anything else waits for the next pass.
fn grow_stopped(inst: &Instance, observed: &Inventory, ns: &str) -> Vec<Step> {
    let mut steps = stop_running(inst, observed, ns);
    steps.push(Step::GrowDisk);
    if inst.state == RunState::Running {
        steps.extend(
            inst.services
                .iter()
                .map(|s| spec::container_name(ns, &inst.tenant, &s.name))
                .filter(|n| observed.containers.iter().any(|c| &c.name == n))
                .map(Step::StartContainer),
        );
    }
    steps
}

/// The check, then every container of the tenant stopped and removed, then the moves.
fn stop_for_move(
    inst: &Instance,
    observed: &Inventory,
    moving: &[MovedVolume],
    ns: &str,
) -> Vec<Step> {
    let mut steps = vec![Step::CheckVolumesFit(moving.to_vec())];
    steps.extend(stop_running(inst, observed, ns));
    steps.extend(remove_all(&inst.tenant, observed));
    steps.extend(moving.iter().cloned().map(Step::MoveVolume));
    steps
}

/// A tenant network whose block is not the one its allocation names on this pool (made by an
/// older berth without the engine's range, or before the pool or prefix changed): the web
/// address computed for the tenant could then be another's, so the network is made again.
fn misplaced(
    n: &crate::runtime::ObservedNetwork,
    a: Option<&Allocation>,
    pool: &SubnetPool,
) -> bool {
    let Some(a) = a else { return false };
    n.subnet.as_deref() != Some(pool.subnet(a.subnet).0.as_str())
        || n.ip_range.as_deref() != Some(pool.dynamic_range(a.subnet).as_str())
}

/// Every container of `tenant` removed (after [`stop_running`] stopped them in order).
fn remove_all(tenant: &str, observed: &Inventory) -> Vec<Step> {
    observed
        .containers
        .iter()
        .filter(|c| c.tenant == tenant)
        .map(|c| Step::RemoveContainer(c.name.clone()))
        .collect()
}

/// A tenant without an instance file: containers and network go; volumes, secrets and the
/// allocation stay (so re-adding it finds its data) unless a purge was asked for.
pub(super) fn plan_removal(tenant: &str, observed: &Inventory, rec: &Recorded) -> Vec<Step> {
    let mut steps: Vec<Step> = observed
        .containers
        .iter()
        .filter(|c| c.tenant == tenant)
        .map(|c| Step::RemoveContainer(c.name.clone()))
        .collect();
    steps.extend(
        observed
            .networks
            .iter()
            .filter(|n| n.tenant == tenant)
            .map(|n| Step::RemoveNetwork(n.name.clone())),
    );
    if rec.purge.contains(tenant) {
        steps.extend(
            observed
                .volumes
                .iter()
                .filter(|v| v.tenant == tenant)
                .map(|v| Step::RemoveVolume(v.name.clone())),
        );
        steps.push(Step::DropSharedDatabase);
        steps.push(Step::PurgeFiles);
    }
    steps
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
