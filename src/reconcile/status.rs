//! The board's statuses, derived from desired state and observation after each pass.

use crate::{
    desired::{Desired, HostConfig},
    runtime::{Health, Inventory, ObservedContainer, RunStatus},
    services::{InstanceStatus, Phase},
    spec::instance::RunState,
    store::Allocation,
};
use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
};

/// Where the edge reaches a web container placed by `a`: its fixed address on the tenant's
/// bridge and its own `web_port`; in swarm mode `a`'s node port on `node` (the node the
/// tenant runs on; loopback while none is known).
pub fn web_address(
    host: &HostConfig,
    a: &Allocation,
    web_port: u16,
    node: Option<Ipv4Addr>,
) -> SocketAddr {
    match host.web_pool() {
        Some(pool) => SocketAddr::from((pool.web_ip(a.subnet, a.web_slot), web_port)),
        None => SocketAddr::from((node.unwrap_or(Ipv4Addr::LOCALHOST), a.port)),
    }
}

/// Every allocated tenant's web address (see [`web_address`]), from its instance (or the last
/// valid one of a frozen tenant) and, in swarm mode, the node its web container is on. On one
/// host a frozen tenant's running web container is reached at its own observed address: one
/// made before fixed addresses, which no pass replaces, keeps serving. Any other tenant's is
/// the allocation's (an inventory read while an upgrade swaps containers must not point the
/// edge at the one being removed).
pub fn addresses(
    host: &HostConfig,
    desired: &Desired,
    inv: &Inventory,
    allocs: &BTreeMap<String, Allocation>,
) -> BTreeMap<String, SocketAddr> {
    allocs
        .iter()
        .filter_map(|(t, a)| {
            let i = desired.instances.get(t).or(desired.last_valid.get(t))?;
            // By name: a blue-green upgrade's new container has the same service.
            let name = crate::runtime::spec::container_name(&host.namespace, t, &i.web.service);
            let web = inv.containers.iter().find(|c| c.name == name);
            let node = inv
                .containers
                .iter()
                .filter(|c| c.tenant == *t && c.service == i.web.service)
                .find_map(|c| c.node.as_ref())
                .map(|n| n.addr);
            let running = web
                .filter(|c| c.status == RunStatus::Running && !host.engine.is_swarm())
                .filter(|_| desired.frozen.contains_key(t))
                .and_then(|c| c.ip);
            let at = match running {
                Some(ip) => SocketAddr::from((ip, i.web.port)),
                None => web_address(host, a, i.web.port, node),
            };
            Some((t.clone(), at))
        })
        .collect()
}

/// Marks tenants whose images are being pulled: progress always, phase `pulling` unless their
/// containers already run (a new version's image, say).
pub fn mark_pulls(
    board: &mut BTreeMap<String, InstanceStatus>,
    desired: &Desired,
    pulling: &BTreeMap<String, crate::images::Progress>,
) {
    for (t, i) in &desired.instances {
        let Some(st) = board.get_mut(t) else { continue };
        if let Some(p) = i.services.iter().find_map(|s| pulling.get(&s.image)) {
            st.pull = Some(p.clone());
            if st.phase != Phase::Running {
                st.phase = Phase::Pulling;
            }
        }
    }
}

/// Asleep tenants show `asleep`; a tenant that failed to wake shows why.
pub fn mark_sleep(
    board: &mut BTreeMap<String, InstanceStatus>,
    asleep: &std::collections::BTreeSet<String>,
    wake_errors: &BTreeMap<String, String>,
) {
    for t in asleep {
        if let Some(st) = board.get_mut(t)
            && st.phase != Phase::Failing
        {
            st.phase = Phase::Asleep;
        }
    }
    for (t, e) in wake_errors {
        if let Some(st) = board.get_mut(t) {
            st.error.get_or_insert_with(|| e.clone());
        }
    }
}

/// Adds each tenant's probe results; an unhealthy tenant with no other error shows why.
pub fn mark_probes(
    board: &mut BTreeMap<String, InstanceStatus>,
    probes: Vec<crate::probe::ProbeStatus>,
) {
    for p in probes {
        let Some(st) = board.get_mut(&p.tenant) else {
            continue;
        };
        if st.phase == Phase::Unhealthy
            && st.error.is_none()
            && p.health == Health::Unhealthy
            && let Some(e) = &p.last_error
        {
            st.error = Some(format!("{} {} probe failing: {e}", p.service, p.check));
        }
        st.probes.push(p);
    }
}

/// Builds the status of every tenant known from files or from Docker.
pub fn board(
    desired: &Desired,
    inv: &Inventory,
    failures: &BTreeMap<String, String>,
    addresses: &BTreeMap<String, SocketAddr>,
) -> BTreeMap<String, InstanceStatus> {
    let mut out = BTreeMap::new();
    for (t, i) in &desired.instances {
        let containers: Vec<ObservedContainer> = inv
            .containers
            .iter()
            .filter(|c| c.tenant == *t)
            .cloned()
            .collect();
        let phase = if failures.contains_key(t) {
            Phase::Failing
        } else {
            phase_of(i.state, i.services.len(), &containers)
        };
        out.insert(
            t.clone(),
            InstanceStatus {
                tenant: t.clone(),
                template: Some(i.template.clone()),
                version: Some(i.version.clone()),
                plan: i.plan.clone(),
                labels: i.labels.clone(),
                desired: Some(i.state),
                phase,
                address: addresses.get(t).copied(),
                domains: i.domains.clone(),
                web_service: Some(i.web.service.clone()),
                error: node_down(&containers).or_else(|| failures.get(t).cloned()),
                containers,
                pull: None,
                probes: vec![],
            },
        );
    }
    for (t, e) in &desired.frozen {
        let containers: Vec<ObservedContainer> = inv
            .containers
            .iter()
            .filter(|c| c.tenant == *t)
            .cloned()
            .collect();
        let mut st = bare(
            t,
            Phase::Invalid,
            Some(e.clone()),
            addresses.get(t).copied(),
            containers,
        );
        if let Some(i) = desired.last_valid.get(t) {
            (st.plan, st.labels) = (i.plan.clone(), i.labels.clone());
            (st.template, st.version) = (Some(i.template.clone()), Some(i.version.clone()));
        }
        out.insert(t.clone(), st);
    }
    for c in &inv.containers {
        if !out.contains_key(&c.tenant) && c.tenant != crate::runtime::labels::HOST_TENANT {
            out.insert(
                c.tenant.clone(),
                bare(
                    &c.tenant,
                    Phase::Removing,
                    failures.get(&c.tenant).cloned(),
                    None,
                    vec![],
                ),
            );
        }
    }
    out
}

/// What to say when the swarm node holding the tenant is not ready: berth waits for it.
fn node_down(cs: &[ObservedContainer]) -> Option<String> {
    let n = cs
        .iter()
        .filter_map(|c| c.node.as_ref())
        .find(|n| !n.ready)?;
    Some(format!(
        "node {} ({}) is down or unreachable; the tenant's containers and volumes are there, \
         so berth waits for it to return",
        n.name, n.addr
    ))
}

/// A status with nothing known beyond the tenant name and what is passed.
pub(crate) fn bare(
    t: &str,
    phase: Phase,
    error: Option<String>,
    address: Option<SocketAddr>,
    containers: Vec<ObservedContainer>,
) -> InstanceStatus {
    InstanceStatus {
        tenant: t.into(),
        template: None,
        version: None,
        plan: None,
        labels: Default::default(),
        desired: None,
        phase,
        address,
        domains: vec![],
        web_service: None,
        error,
        containers,
        pull: None,
        probes: vec![],
    }
}

fn phase_of(state: RunState, services: usize, cs: &[ObservedContainer]) -> Phase {
    let running = cs.iter().filter(|c| c.status == RunStatus::Running).count();
    match state {
        RunState::Stopped if running == 0 => Phase::Stopped,
        RunState::Suspended if running == 0 => Phase::Suspended,
        RunState::Stopped | RunState::Suspended => Phase::Provisioning,
        RunState::Running if running < services => Phase::Provisioning,
        RunState::Running if cs.iter().any(|c| c.health == Some(Health::Unhealthy)) => {
            Phase::Unhealthy
        }
        RunState::Running if cs.iter().any(|c| c.health == Some(Health::Starting)) => {
            Phase::Starting
        }
        RunState::Running => Phase::Running,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{fixtures, runtime::ObservedContainer};

    fn app(status: RunStatus, ip: [u8; 4]) -> ObservedContainer {
        ObservedContainer {
            name: "berth-acme-app".into(),
            tenant: "acme".into(),
            service: "app".into(),
            spec_hash: String::new(),
            status,
            health: None,
            host_port: None,
            ip: Some(ip.into()),
            node: None,
        }
    }

    #[test]
    fn a_frozen_tenant_s_running_container_is_reached_where_it_is_any_other_at_its_slot() {
        let host = fixtures::host();
        let mut d = Desired::default();
        d.last_valid
            .insert("acme".into(), fixtures::demo_instance("acme"));
        d.frozen.insert("acme".into(), "broken file".into());
        let a = Allocation {
            subnet: 1,
            port: 20001,
            web_slot: 1,
            next_port: None,
        };
        let allocs = BTreeMap::from([("acme".to_string(), a)]);
        let mut inv = Inventory::default();
        let at =
            |d: &Desired, inv: &Inventory| addresses(&host, d, inv, &allocs)["acme"].to_string();
        assert_eq!(
            at(&d, &inv),
            "10.240.0.29:8080",
            "asleep or gone: slot 1 of subnet 1"
        );
        // A frozen tenant's container an older berth made, running at an engine-picked address.
        inv.containers
            .push(app(RunStatus::Running, [10, 240, 0, 18]));
        assert_eq!(at(&d, &inv), "10.240.0.18:8080");
        inv.containers[0].status = RunStatus::Stopped;
        assert_eq!(at(&d, &inv), "10.240.0.29:8080");
        // A tenant that is not frozen: always the allocation's slot, whatever runs.
        inv.containers[0].status = RunStatus::Running;
        d.frozen.clear();
        d.instances
            .insert("acme".into(), fixtures::demo_instance("acme"));
        assert_eq!(at(&d, &inv), "10.240.0.29:8080");
    }
}
