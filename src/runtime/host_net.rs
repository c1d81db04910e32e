//! The host's own network, shared by what the host runs for every tenant (the shared database
//! servers, the mail relay) whatever the engine.

use super::{Runtime, RuntimeError, labels, spec};
use crate::desired::HostConfig;
use std::collections::BTreeMap;

/// The host's own network (shared servers and the mail relay), created if missing; its name.
/// The pool's last subnet is reserved for it (tenants never get it).
pub async fn ensure(rt: &dyn Runtime, host: &HostConfig) -> Result<String, RuntimeError> {
    let ns = &host.namespace;
    let net = spec::network_name(ns, labels::HOST_TENANT);
    let (subnet, gateway) = host.subnet_pool.subnet(host.subnet_pool.capacity() - 1);
    rt.create_network(&spec::NetworkSpec {
        name: net.clone(),
        subnet,
        gateway,
        ip_range: None,
        labels: spec::owner_labels(ns, labels::HOST_TENANT),
    })
    .await?;
    Ok(net)
}

/// What sets one host-owned container (a shared database server, the mail relay) apart; the
/// rest is the hardening every one of them gets from [`container`].
pub struct HostContainer<'a> {
    pub ns: &'a str,
    pub service: &'a str,
    pub image: &'a str,
    /// Its name on the host network (and on the tenant networks it is attached to).
    pub alias: String,
    pub memory: u64,
    pub pids_limit: i64,
}

/// A host-owned container: the host tenant's, on the host network, never published, every
/// capability dropped, no new privileges, a read-only root filesystem, one CPU, 30 s to stop.
/// The caller adds its mounts, tmpfs, environment, command and whatever capability its
/// image's entrypoint needs back.
pub fn container(c: HostContainer<'_>) -> spec::ContainerSpec {
    let mut owner: BTreeMap<String, String> = spec::owner_labels(c.ns, labels::HOST_TENANT);
    owner.insert(labels::SERVICE.into(), c.service.into());
    spec::ContainerSpec {
        name: spec::container_name(c.ns, labels::HOST_TENANT, c.service),
        image: c.image.into(),
        labels: owner,
        env: vec![],
        cmd: None,
        entrypoint: None,
        user: None,
        working_dir: None,
        network: spec::network_name(c.ns, labels::HOST_TENANT),
        aliases: vec![c.alias],
        mounts: vec![],
        tmpfs: BTreeMap::new(),
        publish: None,
        address: None,
        memory: c.memory as i64,
        nano_cpus: 1_000_000_000,
        cpu_shares: 1024,
        pids_limit: c.pids_limit,
        cap_drop: vec!["ALL".into()],
        cap_add: vec![],
        no_new_privileges: true,
        read_only_rootfs: true,
        healthcheck: None,
        stop_timeout_s: 30,
        files_digest: String::new(),
    }
}
