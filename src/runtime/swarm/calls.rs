//! The manager calls the swarm runtime makes more than once: listing berth's services, networks
//! and nodes, waiting for a service's task, finding it on its node, removing its secrets.

use super::super::{
    Inventory, NodeInfo, ObservedContainer, ObservedNetwork, RunStatus, RuntimeError, labels,
};
use super::{NODE_LABEL, err, filters};
use bollard::{
    Docker,
    models::{Node, NodeSpecAvailabilityEnum, NodeState, Service, TaskState},
    query_parameters::{
        InspectServiceOptions, ListContainersOptions, ListNetworksOptions, ListSecretsOptions,
        ListServicesOptions, ListTasksOptions, ListVolumesOptions, RemoveVolumeOptions,
    },
};
use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

/// A tenant network as the manager lists it, with the node its label names.
pub struct PlacedNetwork {
    pub net: ObservedNetwork,
    pub node: Option<String>,
}

pub fn node_info(n: Node) -> Option<NodeInfo> {
    let d = n.description?;
    let status = n.status?;
    let res = d.resources.unwrap_or_default();
    Some(NodeInfo {
        name: d.hostname?,
        addr: status.addr?.parse().ok()?,
        ready: status.state == Some(NodeState::READY),
        active: n.spec.and_then(|s| s.availability) == Some(NodeSpecAvailabilityEnum::ACTIVE),
        memory: res.memory_bytes.unwrap_or(0).max(0) as u64,
        cpus: res.nano_cpus.unwrap_or(0) as f64 / 1e9,
    })
}

fn ns_filters(ns: &str) -> Option<std::collections::HashMap<String, Vec<String>>> {
    filters("label", format!("{}={ns}", labels::NAMESPACE))
}

pub async fn networks(m: &Docker, ns: &str) -> Result<Vec<PlacedNetwork>, RuntimeError> {
    let list = m
        .list_networks(Some(ListNetworksOptions {
            filters: ns_filters(ns),
        }))
        .await
        .map_err(err("networks", ns))?;
    Ok(list
        .into_iter()
        .filter(|n| n.driver.as_deref() == Some("overlay"))
        .map(|n| {
            let l = n.labels.unwrap_or_default();
            let subnet = n
                .ipam
                .and_then(|i| i.config)
                .and_then(|c| c.into_iter().next())
                .and_then(|c| c.subnet);
            PlacedNetwork {
                net: ObservedNetwork {
                    name: n.name.unwrap_or_default(),
                    tenant: l.get(labels::TENANT).cloned().unwrap_or_default(),
                    subnet,
                    ip_range: None,
                },
                node: l.get(NODE_LABEL).cloned(),
            }
        })
        .collect())
}

/// Memory promised to tenants' limits, and tenants, per node.
pub async fn load(
    m: &Docker,
    ns: &str,
) -> Result<(BTreeMap<String, u64>, BTreeMap<String, usize>), RuntimeError> {
    let nets = networks(m, ns).await?;
    let mut tenants = BTreeMap::new();
    let mut node_of = BTreeMap::new();
    for n in &nets {
        if let Some(node) = &n.node {
            *tenants.entry(node.clone()).or_insert(0) += 1;
            node_of.insert(n.net.tenant.clone(), node.clone());
        }
    }
    let mut reserved = BTreeMap::new();
    for s in list_services(m, ns).await? {
        let spec = s.spec.unwrap_or_default();
        let tenant = spec
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::TENANT).cloned());
        let memory = spec
            .task_template
            .and_then(|t| t.resources)
            .and_then(|r| r.limits)
            .and_then(|l| l.memory_bytes)
            .unwrap_or(0)
            .max(0) as u64;
        if let Some(node) = tenant.and_then(|t| node_of.get(&t)) {
            *reserved.entry(node.clone()).or_insert(0) += memory;
        }
    }
    Ok((reserved, tenants))
}

async fn list_services(m: &Docker, ns: &str) -> Result<Vec<Service>, RuntimeError> {
    m.list_services(Some(ListServicesOptions {
        filters: ns_filters(ns),
        ..Default::default()
    }))
    .await
    .map_err(err("services", ns))
}

/// berth's services as service-level containers (status filled in from their tasks later),
/// with their wanted replica count.
pub async fn services(m: &Docker, ns: &str) -> Result<Vec<(ObservedContainer, i64)>, RuntimeError> {
    let list = list_services(m, ns).await?;
    Ok(list
        .into_iter()
        .filter_map(|s| {
            let spec = s.spec?;
            let l = spec.labels.unwrap_or_default();
            let get = |k: &str| l.get(k).cloned().unwrap_or_default();
            let replicas = spec
                .mode
                .and_then(|m| m.replicated)
                .and_then(|r| r.replicas)
                .unwrap_or(0);
            let host_port = spec
                .endpoint_spec
                .and_then(|e| e.ports)
                .and_then(|p| p.into_iter().find_map(|p| p.published_port))
                .and_then(|p| u16::try_from(p).ok());
            let c = ObservedContainer {
                name: spec.name?,
                tenant: get(labels::TENANT),
                service: get(labels::SERVICE),
                spec_hash: get(labels::SPEC_HASH),
                status: RunStatus::Other,
                health: None,
                host_port,
                ip: None,
                node: None,
            };
            Some((c, replicas))
        })
        .collect())
}

pub async fn service_exists(m: &Docker, name: &str) -> Result<bool, RuntimeError> {
    match m.inspect_service(name, None::<InspectServiceOptions>).await {
        Ok(_) => Ok(true),
        Err(e) if super::super::docker::status_of(&e) == Some(404) => Ok(false),
        Err(e) => Err(super::super::docker::call_err("service", name, e)),
    }
}

/// Waits until `service` has a running task (`running`) or none left running; a task the
/// swarm rejected or that failed is reported with the swarm's reason.
pub async fn wait_tasks(
    m: &Docker,
    service: &str,
    running: bool,
    wait: Duration,
) -> Result<(), RuntimeError> {
    let until = Instant::now() + wait;
    let mut last = String::from("no task yet");
    loop {
        let tasks = m
            .list_tasks(Some(ListTasksOptions {
                filters: filters("service", service.to_string()),
            }))
            .await;
        let tasks = match tasks {
            Err(e) if !running && super::super::docker::status_of(&e) == Some(404) => return Ok(()),
            r => r.map_err(err("service", service))?,
        };
        let live = |t: &&bollard::models::Task| {
            matches!(
                t.status.as_ref().and_then(|s| s.state),
                Some(
                    TaskState::RUNNING
                        | TaskState::STARTING
                        | TaskState::PREPARING
                        | TaskState::ASSIGNED
                        | TaskState::ACCEPTED
                        | TaskState::READY
                )
            )
        };
        let up = tasks.iter().any(|t| {
            t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING)
                && t.desired_state == Some(TaskState::RUNNING)
        });
        if running && up || !running && !tasks.iter().any(|t| live(&t)) {
            return Ok(());
        }
        if let Some(e) = tasks
            .iter()
            .filter_map(|t| t.status.as_ref())
            .filter_map(|s| s.err.clone().or_else(|| s.message.clone()))
            .next_back()
        {
            last = e;
        }
        if Instant::now() >= until {
            return Err(RuntimeError::Call {
                kind: "service",
                name: service.into(),
                message: format!(
                    "its task did not {} within {}s: {last}",
                    if running { "start" } else { "stop" },
                    wait.as_secs()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The id of `service`'s running task container on the node `node` speaks for.
pub async fn running_task(node: &Docker, service: &str) -> Result<String, RuntimeError> {
    let mut f = std::collections::HashMap::new();
    f.insert(
        "label".to_string(),
        vec![format!("com.docker.swarm.service.name={service}")],
    );
    f.insert("status".to_string(), vec!["running".to_string()]);
    let list = node
        .list_containers(Some(ListContainersOptions {
            filters: Some(f),
            ..Default::default()
        }))
        .await
        .map_err(err("service", service))?;
    list.into_iter()
        .find_map(|c| c.id)
        .ok_or_else(|| RuntimeError::Call {
            kind: "service",
            name: service.into(),
            message: "has no running task on its node".into(),
        })
}

/// Waits until the node has removed every container of `service` (after the service is
/// deleted, its node's agent removes them a moment later; until then they hold its volumes).
pub async fn wait_containers_gone(
    node: &Docker,
    service: &str,
    wait: Duration,
) -> Result<(), RuntimeError> {
    let until = Instant::now() + wait;
    let f = filters("label", format!("com.docker.swarm.service.name={service}"));
    loop {
        let list = node
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: f.clone(),
                ..Default::default()
            }))
            .await
            .map_err(err("service", service))?;
        if list.is_empty() {
            return Ok(());
        }
        if Instant::now() >= until {
            return Err(RuntimeError::Call {
                kind: "service",
                name: service.into(),
                message: format!("{} of its containers are still on its node", list.len()),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Removes the secrets of `tenant` that no service uses any more: those of a removed service,
/// and the earlier versions of a file that changed (a renamed service keeps using its
/// predecessor's).
pub async fn prune_secrets(m: &Docker, ns: &str, tenant: &str) -> Result<(), RuntimeError> {
    let used: BTreeSet<String> = list_services(m, ns)
        .await?
        .into_iter()
        .filter_map(|s| s.spec?.task_template?.container_spec?.secrets)
        .flatten()
        .filter_map(|r| r.secret_id)
        .collect();
    let mine = m
        .list_secrets(Some(ListSecretsOptions {
            filters: filters("label", format!("{}={tenant}", labels::TENANT)),
        }))
        .await
        .map_err(err("secrets", tenant))?;
    for id in mine.into_iter().filter_map(|s| s.id) {
        if !used.contains(&id) {
            let r = m.delete_secret(&id).await;
            super::super::docker::tolerate(r, &[404], "secret", &id)?;
        }
    }
    Ok(())
}

/// Removes the tmpfs volumes made for `service` on its node (the task container, gone by now,
/// held them).
pub async fn remove_volumes_for(node: &Docker, service: &str) -> Result<(), RuntimeError> {
    let list = node
        .list_volumes(Some(ListVolumesOptions {
            filters: filters("label", format!("{}={service}", super::FOR_LABEL)),
        }))
        .await
        .map_err(err("volumes", service))?;
    for v in list.volumes.unwrap_or_default() {
        let r = node
            .remove_volume(&v.name, None::<RemoveVolumeOptions>)
            .await;
        super::super::docker::tolerate(r, &[404], "volume", &v.name)?;
    }
    Ok(())
}

/// Volumes from every node; an image counts as present only where every node has it.
pub fn merge_nodes(inv: &mut Inventory, nodes: impl Iterator<Item = Inventory>) {
    let mut images: Option<BTreeSet<String>> = None;
    for n in nodes {
        inv.volumes.extend(n.volumes);
        if let Some(mine) = n.images {
            images = Some(match images {
                None => mine,
                Some(all) => all.intersection(&mine).cloned().collect(),
            });
        }
        for (k, v) in n.image_ids {
            inv.image_ids.entry(k).or_insert(v);
        }
    }
    inv.images = images;
}
