//! The second runtime: Docker Swarm. The reconciler is the same; only these calls differ. A
//! tenant's whole instance (services, volumes, database) lives on one node, chosen when its
//! overlay network is made and recorded as a label on that network. Services are created
//! through a manager; exec, logs, stats, volumes and images go to the node's own engine (Swarm
//! does not proxy them), each a `DockerRuntime` on that node's socket.

mod calls;
pub mod guard;
pub mod nodes;
pub mod observe;
mod placement;
mod replicas;
pub mod service;

use super::{
    ContainerStats, ExecOutput, ImageInfo, Inventory, LogStream, NodeInfo, ObservedContainer,
    PullEvent, Runtime, RuntimeError,
    docker::DockerRuntime,
    labels,
    spec::{ContainerSpec, NetworkSpec, VolumeSpec},
};
use crate::desired::engine::SwarmEngine;
use bollard::{Docker, models::NetworkCreateRequest, query_parameters::InspectServiceOptions};
use futures_util::stream::BoxStream;
use service::{FOR_LABEL, NODE_LABEL};
use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

pub use calls::PlacedNetwork;

pub struct SwarmRuntime {
    manager: Docker,
    nodes: nodes::NodeConns,
    /// Tenant → node, read from network labels (a network never moves, so this only grows
    /// until the network is removed).
    placed: Mutex<HashMap<String, String>>,
    mutations: AtomicU64,
    netguard_image: String,
    /// One placement at a time: each sees the tenants placed before it.
    placing: tokio::sync::Mutex<()>,
    /// Tenants the operator moves, and the node their next network goes to.
    pinned: Mutex<HashMap<String, String>>,
}

fn unsupported(kind: &'static str, name: &str, what: &str) -> RuntimeError {
    RuntimeError::Call {
        kind,
        name: name.into(),
        message: format!("{what} is not available in swarm mode"),
    }
}

fn err(kind: &'static str, name: &str) -> impl FnOnce(bollard::errors::Error) -> RuntimeError {
    move |e| super::docker::call_err(kind, name, e)
}

fn filters(k: &str, v: String) -> Option<HashMap<String, Vec<String>>> {
    Some(HashMap::from([(k.to_string(), vec![v])]))
}

fn label_of(l: &BTreeMap<String, String>, key: &str) -> String {
    l.get(key).cloned().unwrap_or_default()
}

impl SwarmRuntime {
    /// Connects to the manager (refusing an engine that is not a swarm manager); each node's
    /// engine is connected on first use.
    pub async fn connect(e: &SwarmEngine) -> Result<SwarmRuntime, RuntimeError> {
        let manager = DockerRuntime::connect_socket(&e.manager, false).await?;
        let manager = manager.client().clone();
        manager.inspect_swarm().await.map_err(|x| {
            RuntimeError::Unreachable(format!(
                "{} is not a swarm manager: {x}",
                e.manager.display()
            ))
        })?;
        let nodes = nodes::NodeConns::new(manager.client_version(), &e.nodes);
        Ok(SwarmRuntime {
            manager,
            nodes,
            placed: Mutex::new(HashMap::new()),
            mutations: AtomicU64::new(0),
            netguard_image: e.netguard_image.clone(),
            placing: tokio::sync::Mutex::new(()),
            pinned: Mutex::new(HashMap::new()),
        })
    }

    /// The egress guards of every node, as the agent's firewall.
    pub fn guards(&self, ns: &str) -> Arc<guard::NodeGuards> {
        guard::NodeGuards::new(self.nodes.clone(), ns, &self.netguard_image)
    }

    fn count(&self) {
        self.mutations.fetch_add(1, Ordering::Relaxed);
    }

    fn node_rt(&self, node: &str) -> Result<Arc<DockerRuntime>, RuntimeError> {
        self.nodes.get(node)
    }
}

#[async_trait::async_trait]
impl Runtime for SwarmRuntime {
    async fn inventory(&self, ns: &str) -> Result<Inventory, RuntimeError> {
        let nodes = self.swarm_nodes().await?;
        let seen = self.node_views(ns, &nodes).await;
        let nets = calls::networks(&self.manager, ns).await?;
        for n in &nets {
            if let Some(node) = &n.node {
                self.placed
                    .lock()
                    .expect("placed")
                    .insert(n.net.tenant.clone(), node.clone());
            }
        }
        let mut inv = Inventory {
            networks: nets.into_iter().map(|n| n.net).collect(),
            ..Default::default()
        };
        for (svc, replicas) in calls::services(&self.manager, ns).await? {
            let node_name = self
                .placed
                .lock()
                .expect("placed")
                .get(&svc.tenant)
                .cloned();
            let node = node_name
                .as_ref()
                .and_then(|n| nodes.iter().find(|x| x.name == *n));
            let tasks: Vec<&ObservedContainer> = node_name
                .as_ref()
                .and_then(|n| seen.get(n))
                .map(|i| {
                    i.containers
                        .iter()
                        .filter(|c| observe::service_of(&c.name) == svc.name)
                        .collect()
                })
                .unwrap_or_default();
            inv.containers
                .push(observe::observed(svc, replicas, &tasks, node));
        }
        calls::merge_nodes(&mut inv, seen.into_values());
        Ok(inv)
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, RuntimeError> {
        self.swarm_nodes().await
    }

    async fn pin_tenant(&self, tenant: &str, node: &str) -> Result<(), RuntimeError> {
        self.node_rt(node)?;
        self.pinned
            .lock()
            .expect("pinned")
            .insert(tenant.into(), node.into());
        Ok(())
    }

    async fn create_network(&self, s: &NetworkSpec) -> Result<(), RuntimeError> {
        let tenant = label_of(&s.labels, labels::TENANT);
        let ns = label_of(&s.labels, labels::NAMESPACE);
        if self.node_of(&ns, &tenant).await.is_ok() {
            return Ok(());
        }
        let _one = self.placing.lock().await;
        if self.node_of(&ns, &tenant).await.is_ok() {
            return Ok(());
        }
        let pinned = self.pinned.lock().expect("pinned").remove(&tenant);
        let node = match pinned {
            Some(n) => n,
            None => self.choose_node(&ns).await?,
        };
        self.count();
        let mut l: HashMap<String, String> = s.labels.clone().into_iter().collect();
        l.insert(NODE_LABEL.into(), node.clone());
        let req = NetworkCreateRequest {
            name: s.name.clone(),
            driver: Some("overlay".into()),
            attachable: Some(true),
            ipam: Some(super::docker::ipam(s)),
            labels: Some(l),
            ..Default::default()
        };
        self.manager
            .create_network(req)
            .await
            .map_err(err("network", &s.name))?;
        tracing::info!(%tenant, %node, "tenant placed");
        self.placed.lock().expect("placed").insert(tenant, node);
        Ok(())
    }

    async fn remove_network(&self, name: &str) -> Result<(), RuntimeError> {
        self.count();
        let r = self.manager.remove_network(name).await;
        super::docker::tolerate(r, &[404], "network", name)?;
        self.placed.lock().expect("placed").clear(); // refilled from the networks' labels; a name says too little
        Ok(())
    }

    async fn connect_network(&self, n: &str, c: &str, _: &str) -> Result<(), RuntimeError> {
        Err(unsupported(
            "network",
            n,
            &format!("attaching {c} (a shared database server)"),
        ))
    }

    async fn disconnect_network(&self, n: &str, c: &str) -> Result<(), RuntimeError> {
        Err(unsupported("network", n, &format!("detaching {c}")))
    }

    async fn create_volume(&self, s: &VolumeSpec) -> Result<(), RuntimeError> {
        if s.device.is_some() {
            return Err(unsupported(
                "volume",
                &s.name,
                "a disk quota (a volume on a tenant filesystem)",
            ));
        }
        let ns = label_of(&s.labels, labels::NAMESPACE);
        let node = self
            .node_of(&ns, &label_of(&s.labels, labels::TENANT))
            .await?;
        self.node_rt(&node)?.create_volume(s).await
    }

    async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError> {
        self.on_every_node(|rt| async move { rt.remove_volume(name).await })
            .await
    }

    async fn create_container(&self, s: &ContainerSpec) -> Result<(), RuntimeError> {
        if calls::service_exists(&self.manager, &s.name).await? {
            return Ok(());
        }
        let ns = label_of(&s.labels, labels::NAMESPACE);
        let node = self
            .node_of(&ns, &label_of(&s.labels, labels::TENANT))
            .await?;
        let secrets = self.secrets(s).await?;
        self.count();
        let spec = service::service_spec(s, &node, 0, &secrets);
        match self.manager.create_service(spec, None).await {
            Ok(_) => Ok(()),
            Err(e) if super::docker::status_of(&e) == Some(409) => Ok(()),
            Err(e) => Err(super::docker::call_err("service", &s.name, e)),
        }
    }

    async fn start_container(&self, name: &str) -> Result<(), RuntimeError> {
        self.scale(name, 1, Duration::from_secs(120)).await
    }

    async fn stop_container(&self, name: &str, grace: Duration) -> Result<(), RuntimeError> {
        self.scale(name, 0, grace + Duration::from_secs(30)).await
    }

    async fn remove_container(&self, name: &str) -> Result<(), RuntimeError> {
        if !calls::service_exists(&self.manager, name).await? {
            return Ok(());
        }
        let (ns, tenant) = self.owner(name).await?;
        let node = self.node_of(&ns, &tenant).await?;
        let up = self
            .swarm_nodes()
            .await?
            .iter()
            .any(|n| n.name == node && n.ready);
        self.count();
        let r = self.manager.delete_service(name).await;
        super::docker::tolerate(r, &[404], "service", name)?;
        if !up {
            // Its node is gone (a move): the manager forgets the service; what is on the node
            // stays there until it returns.
            tracing::warn!(service = name, %node, "removed while its node is down");
            return calls::prune_secrets(&self.manager, &ns, &tenant).await;
        }
        calls::wait_tasks(&self.manager, name, false, Duration::from_secs(60)).await?;
        calls::prune_secrets(&self.manager, &ns, &tenant).await?;
        let rt = self.node_rt(&node)?;
        calls::wait_containers_gone(rt.client(), name, Duration::from_secs(60)).await?;
        calls::remove_volumes_for(rt.client(), name).await
    }

    /// Swarm cannot rename a service: `to` is created from `from`'s spec once `from` is gone
    /// (its host port must be free first), so the task restarts; the caller holds requests.
    async fn rename_container(&self, from: &str, to: &str) -> Result<(), RuntimeError> {
        let svc = match self
            .manager
            .inspect_service(from, None::<InspectServiceOptions>)
            .await
        {
            Err(e) if super::docker::status_of(&e) == Some(404) => return Ok(()),
            r => r.map_err(err("service", from))?,
        };
        let mut spec = svc.spec.unwrap_or_default();
        let node = self.service_node(from).await?;
        self.count();
        let r = self.manager.delete_service(from).await;
        super::docker::tolerate(r, &[404], "service", from)?;
        calls::wait_tasks(&self.manager, from, false, Duration::from_secs(60)).await?;
        calls::wait_containers_gone(node.client(), from, Duration::from_secs(60)).await?;
        spec.name = Some(to.into());
        match self.manager.create_service(spec, None).await {
            Ok(_) => {}
            Err(e) if super::docker::status_of(&e) == Some(409) => {}
            Err(e) => return Err(super::docker::call_err("service", to, e)),
        }
        calls::wait_tasks(&self.manager, to, true, Duration::from_secs(120)).await
    }

    async fn logs(&self, name: &str, follow: bool, tail: usize) -> Result<LogStream, RuntimeError> {
        let (rt, id) = self.locate(name).await?;
        rt.logs(&id, follow, tail).await
    }

    async fn exec(
        &self,
        name: &str,
        cmd: &[&str],
        stdin: Option<Vec<u8>>,
    ) -> Result<ExecOutput, RuntimeError> {
        let (rt, id) = self.locate(name).await?;
        rt.exec(&id, cmd, stdin).await
    }

    async fn exec_out(
        &self,
        name: &str,
        cmd: &[&str],
        stdin: Option<Vec<u8>>,
        sink: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
    ) -> Result<ExecOutput, RuntimeError> {
        let (rt, id) = self.locate(name).await?;
        rt.exec_out(&id, cmd, stdin, sink).await
    }

    async fn exec_in(
        &self,
        name: &str,
        cmd: &[&str],
        source: &mut (dyn tokio::io::AsyncRead + Unpin + Send),
    ) -> Result<ExecOutput, RuntimeError> {
        let (rt, id) = self.locate(name).await?;
        rt.exec_in(&id, cmd, source).await
    }

    async fn pull_image(
        &self,
        image: &str,
        auth: Option<(String, String)>,
        progress: &(dyn for<'e> Fn(&'e PullEvent) + Send + Sync),
    ) -> Result<(), RuntimeError> {
        for (_, rt) in self.nodes.all() {
            rt?.pull_image(image, auth.clone(), progress).await?;
        }
        Ok(())
    }

    async fn list_images(&self) -> Result<Vec<ImageInfo>, RuntimeError> {
        let mut by_id: BTreeMap<String, ImageInfo> = BTreeMap::new();
        for (_, rt) in self.nodes.all() {
            let Ok(rt) = rt else { continue };
            for i in rt.list_images().await? {
                by_id.entry(i.id.clone()).or_insert(i);
            }
        }
        Ok(by_id.into_values().collect())
    }

    async fn remove_image(&self, reference: &str) -> Result<(), RuntimeError> {
        self.on_every_node(|rt| async move { rt.remove_image(reference).await })
            .await
    }

    async fn tag_image(&self, source: &str, target: &str) -> Result<(), RuntimeError> {
        self.on_every_node(|rt| async move { rt.tag_image(source, target).await })
            .await
    }

    async fn exec_timed(
        &self,
        name: &str,
        cmd: &[&str],
        limit: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        let (rt, id) = self.locate(name).await?;
        rt.exec_timed(&id, cmd, limit).await
    }

    async fn events(
        &self,
        ns: &str,
    ) -> Result<BoxStream<'static, super::EngineEvent>, RuntimeError> {
        let mut streams = vec![];
        for (_, rt) in self.nodes.all() {
            if let Ok(rt) = rt
                && let Ok(s) = rt.events(ns).await
            {
                streams.push(s);
            }
        }
        use futures_util::StreamExt;
        Ok(futures_util::stream::select_all(streams)
            .map(|mut e| {
                e.container = observe::service_of(&e.container).to_string();
                e
            })
            .boxed())
    }

    async fn stats(&self, name: &str) -> Result<ContainerStats, RuntimeError> {
        let (rt, id) = self.locate(name).await?;
        rt.stats(&id).await
    }

    fn mutations(&self) -> u64 {
        self.mutations.load(Ordering::Relaxed) + self.nodes.mutations()
    }
}
