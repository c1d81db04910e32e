//! Pure parts of the swarm runtime: which node takes a new tenant, and what a service looks
//! like to the reconciler once its task's container is found on a node.

use super::super::{NodeInfo, NodeRef, ObservedContainer, RunStatus};
use std::collections::BTreeMap;

/// The node for a new tenant: among ready, active nodes, the one with the smallest share of its
/// memory promised to tenants' limits (`reserved`), then the fewest tenants, then by name.
/// None when no node is ready and active.
pub fn place<'n>(
    nodes: &'n [NodeInfo],
    reserved: &BTreeMap<String, u64>,
    tenants: &BTreeMap<String, usize>,
) -> Option<&'n NodeInfo> {
    let share = |n: &NodeInfo| {
        let r = reserved.get(&n.name).copied().unwrap_or(0) as f64;
        r / (n.memory.max(1) as f64)
    };
    nodes.iter().filter(|n| n.ready && n.active).min_by(|a, b| {
        share(a)
            .total_cmp(&share(b))
            .then(tenants.get(&a.name).cmp(&tenants.get(&b.name)))
            .then(a.name.cmp(&b.name))
    })
}

/// What the reconciler sees of one berth service: `replicas` wanted (0: stopped), the task
/// containers found for it on its node (`tasks`, as the node's engine lists them), and the
/// node itself.
pub fn observed(
    service: ObservedContainer,
    replicas: i64,
    tasks: &[&ObservedContainer],
    node: Option<&NodeInfo>,
) -> ObservedContainer {
    let running = tasks.iter().find(|c| c.status == RunStatus::Running);
    let status = match (replicas, running) {
        (_, Some(_)) if node.is_some_and(|n| !n.ready) => RunStatus::Other,
        (0, None) => RunStatus::Stopped,
        (0, Some(_)) => RunStatus::Other,
        (_, Some(_)) => RunStatus::Running,
        (_, None) => RunStatus::Other,
    };
    ObservedContainer {
        status,
        health: running.and_then(|c| c.health),
        // An overlay address is not reachable from the manager, so nothing may dial it:
        // berth's database probe is skipped (the web probe on the node covers the tenant).
        ip: None,
        node: node.map(|n| NodeRef {
            name: n.name.clone(),
            addr: n.addr,
            ready: n.ready,
        }),
        ..service
    }
}

/// The service a task container belongs to (`<service>.<slot>.<task id>`).
pub fn service_of(container: &str) -> &str {
    container.split('.').next().unwrap_or(container)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Health;
    use std::net::Ipv4Addr;

    fn node(name: &str, memory: u64, ready: bool) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            addr: Ipv4Addr::new(10, 0, 0, 1),
            ready,
            active: true,
            memory,
            cpus: 2.0,
        }
    }

    fn container(name: &str, status: RunStatus) -> ObservedContainer {
        ObservedContainer {
            name: name.into(),
            tenant: "acme".into(),
            service: "app".into(),
            spec_hash: "h".into(),
            status,
            health: Some(Health::Healthy),
            host_port: Some(20001),
            ip: Some(Ipv4Addr::new(10, 1, 0, 2)),
            node: None,
        }
    }

    #[test]
    fn a_new_tenant_goes_to_the_ready_node_with_the_most_memory_left() {
        let nodes = [
            node("a", 8 << 30, true),
            node("b", 8 << 30, true),
            node("c", 64 << 30, false),
        ];
        let reserved = BTreeMap::from([("a".to_string(), 4u64 << 30), ("b".into(), 1 << 30)]);
        assert_eq!(
            place(&nodes, &reserved, &BTreeMap::new()).unwrap().name,
            "b"
        );
        let even = BTreeMap::new();
        let tenants = BTreeMap::from([("a".to_string(), 3usize), ("b".into(), 1)]);
        assert_eq!(place(&nodes, &even, &tenants).unwrap().name, "b");
        assert!(
            place(&nodes[2..], &even, &tenants).is_none(),
            "a down node takes nothing"
        );
    }

    #[test]
    fn a_service_is_running_only_while_its_task_runs_on_a_ready_node() {
        let svc = container("berth-acme-app", RunStatus::Other);
        let task = container("berth-acme-app.1.x", RunStatus::Running);
        let up = node("a", 1, true);
        let o = observed(svc.clone(), 1, &[&task], Some(&up));
        assert_eq!((o.status, o.ip), (RunStatus::Running, None));
        assert_eq!(o.name, "berth-acme-app");
        assert_eq!(o.node.unwrap().name, "a");
        assert_eq!(
            observed(svc.clone(), 0, &[], Some(&up)).status,
            RunStatus::Stopped
        );
        assert_eq!(
            observed(svc.clone(), 1, &[], Some(&up)).status,
            RunStatus::Other
        );
        let down = node("a", 1, false);
        let lost = observed(svc, 1, &[&task], Some(&down));
        assert_eq!(lost.status, RunStatus::Other);
        assert!(!lost.node.unwrap().ready);
    }

    #[test]
    fn task_containers_name_their_service_first() {
        assert_eq!(service_of("berth-acme-app.1.k2j3"), "berth-acme-app");
        assert_eq!(service_of("plain"), "plain");
    }
}
