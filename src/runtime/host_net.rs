//! The host's own network, shared by what the host runs for every tenant (the shared database
//! servers, the mail relay) whatever the engine.

use super::{Runtime, RuntimeError, labels, spec};
use crate::desired::HostConfig;

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
        labels: spec::owner_labels(ns, labels::HOST_TENANT),
    })
    .await?;
    Ok(net)
}
