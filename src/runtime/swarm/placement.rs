//! Where a tenant lives in the swarm: the node its network's label names, chosen once (the
//! fewest tenants, or the operator's pin), and the node that runs a given service.

use super::{SwarmRuntime, calls, err, filters, label_of};
use crate::runtime::{
    Inventory, NodeInfo, Runtime, RuntimeError, docker::DockerRuntime, labels,
    swarm::service::NODE_LABEL,
};
use bollard::query_parameters::{InspectServiceOptions, ListNetworksOptions, ListNodesOptions};
use std::{collections::BTreeMap, sync::Arc};

impl SwarmRuntime {
    /// The swarm's nodes as the manager reports them.
    pub(super) async fn swarm_nodes(&self) -> Result<Vec<NodeInfo>, RuntimeError> {
        let list = self
            .manager
            .list_nodes(None::<ListNodesOptions>)
            .await
            .map_err(err("nodes", "swarm"))?;
        Ok(list.into_iter().filter_map(calls::node_info).collect())
    }

    /// The node that holds `tenant`, from its network's label.
    pub(super) async fn node_of(&self, ns: &str, tenant: &str) -> Result<String, RuntimeError> {
        if let Some(n) = self.placed.lock().expect("placed").get(tenant) {
            return Ok(n.clone());
        }
        let name = crate::runtime::spec::network_name(ns, tenant);
        let nets = self
            .manager
            .list_networks(Some(ListNetworksOptions {
                filters: filters("name", name.clone()),
            }))
            .await
            .map_err(err("network", &name))?;
        let node = nets
            .into_iter()
            .filter(|n| n.name.as_deref() == Some(&name))
            .find_map(|n| n.labels?.get(NODE_LABEL).cloned())
            .ok_or_else(|| RuntimeError::Call {
                kind: "tenant",
                name: tenant.into(),
                message: "has no network yet, so no node".into(),
            })?;
        self.placed
            .lock()
            .expect("placed")
            .insert(tenant.into(), node.clone());
        Ok(node)
    }

    /// A node for a new tenant: among the ready nodes whose egress guard runs, the one with the
    /// most memory not yet promised to tenants.
    pub(super) async fn choose_node(&self, ns: &str) -> Result<String, RuntimeError> {
        let mut nodes = self.swarm_nodes().await?;
        for n in nodes.iter_mut().filter(|n| n.active && n.ready) {
            let guarded = match self.nodes.get(&n.name) {
                Ok(rt) => super::guard::ensure(rt.client(), ns, &self.netguard_image).await,
                Err(e) => Err(e),
            };
            if let Err(e) = guarded {
                tracing::warn!(node = %n.name, error = %e, "no egress guard on this node; it takes no new tenants");
                n.active = false;
            }
        }
        let (reserved, tenants) = calls::load(&self.manager, ns).await?;
        super::observe::place(&nodes, &reserved, &tenants)
            .map(|n| n.name.clone())
            .ok_or_else(|| RuntimeError::Call {
                kind: "swarm",
                name: ns.into(),
                message: "no node is ready, active and guarded to take a new tenant".into(),
            })
    }

    /// The namespace and tenant of `service`, from its labels.
    pub(super) async fn owner(&self, service: &str) -> Result<(String, String), RuntimeError> {
        let svc = self
            .manager
            .inspect_service(service, None::<InspectServiceOptions>)
            .await
            .map_err(err("service", service))?;
        let l: BTreeMap<String, String> = svc
            .spec
            .and_then(|s| s.labels)
            .unwrap_or_default()
            .into_iter()
            .collect();
        Ok((
            label_of(&l, labels::NAMESPACE),
            label_of(&l, labels::TENANT),
        ))
    }

    /// The engine of the node that holds `service`'s tenant.
    pub(super) async fn service_node(
        &self,
        service: &str,
    ) -> Result<Arc<DockerRuntime>, RuntimeError> {
        let (ns, tenant) = self.owner(service).await?;
        self.node_rt(&self.node_of(&ns, &tenant).await?)
    }

    /// The node and container id of `service`'s running task.
    pub(super) async fn locate(
        &self,
        service: &str,
    ) -> Result<(Arc<DockerRuntime>, String), RuntimeError> {
        let rt = self.service_node(service).await?;
        let id = calls::running_task(rt.client(), service).await?;
        Ok((rt, id))
    }

    pub(super) async fn on_every_node<F, Fut>(&self, f: F) -> Result<(), RuntimeError>
    where
        F: Fn(Arc<DockerRuntime>) -> Fut,
        Fut: std::future::Future<Output = Result<(), RuntimeError>>,
    {
        for (_, rt) in self.nodes.all() {
            f(rt?).await?;
        }
        Ok(())
    }

    /// Each reachable, ready node's own view of berth's containers, volumes and images.
    pub(super) async fn node_views(
        &self,
        ns: &str,
        nodes: &[NodeInfo],
    ) -> BTreeMap<String, Inventory> {
        let mut seen = BTreeMap::new();
        for name in self.nodes.names() {
            let up = nodes.iter().any(|n| n.name == *name && n.ready);
            if up
                && let Ok(rt) = self.nodes.get(name)
                && let Ok(inv) = rt.inventory(ns).await
            {
                seen.insert(name.clone(), inv);
            }
        }
        seen
    }
}
