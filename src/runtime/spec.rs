//! Pure construction of the Docker objects of an instance: names, labels, mounts, limits and
//! the hardening every tenant container gets. No I/O, so every rule here is unit tested.

use super::labels;
use crate::{
    desired::{Instance, Service, subnet::SubnetPool},
    store::{Allocation, Layout},
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// json-file log rotation per container: at most 3 × 10 MiB on disk.
pub const LOG_MAX_SIZE: &str = "10m";
pub const LOG_MAX_FILES: &str = "3";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetworkSpec {
    pub name: String,
    pub subnet: String,
    pub gateway: String,
    /// Where the engine picks addresses itself (`SubnetPool::dynamic_range`); None: anywhere.
    pub ip_range: Option<String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VolumeSpec {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// A directory on the tenant's own filesystem the volume binds to (disk quota); None:
    /// the engine's volume directory.
    pub device: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum MountKind {
    Volume,
    /// A file berth rendered under its state dir (secret or config), or a directory of its
    /// own there (the mail relay's sockets and DKIM tables): a bind mount.
    File,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mount {
    pub kind: MountKind,
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthSpec {
    pub test: Vec<String>,
    pub interval_ns: i64,
    pub timeout_ns: i64,
    pub retries: i64,
    pub start_period_ns: i64,
}

/// Everything Docker is told about one container. Hardening fields are not optional here:
/// `cap_drop` is always ALL, `no_new_privileges` always true, privileged never exists.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub labels: BTreeMap<String, String>,
    pub env: Vec<String>,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub network: String,
    pub aliases: Vec<String>,
    pub mounts: Vec<Mount>,
    pub tmpfs: BTreeMap<String, String>,
    /// (container port, node port) published in host mode on its swarm node; the single-host
    /// engine publishes nothing (the edge reaches `address` on the tenant's bridge).
    pub publish: Option<(u16, u16)>,
    /// The web container's fixed address on the tenant's network (`SubnetPool::web_ip`; none
    /// in swarm mode). Left out of the hash's JSON when none, so that no other container's
    /// hash changed when it came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<std::net::Ipv4Addr>,
    pub memory: i64,
    pub nano_cpus: i64,
    pub cpu_shares: i64,
    pub pids_limit: i64,
    pub cap_drop: Vec<String>,
    pub cap_add: Vec<String>,
    pub no_new_privileges: bool,
    pub read_only_rootfs: bool,
    pub healthcheck: Option<HealthSpec>,
    pub stop_timeout_s: i64,
    /// Digest of the files mounted in, so a changed config recreates the container.
    pub files_digest: String,
}

pub fn network_name(ns: &str, tenant: &str) -> String {
    format!("{ns}-{tenant}")
}

pub fn container_name(ns: &str, tenant: &str, service: &str) -> String {
    format!("{ns}-{tenant}-{service}")
}

pub fn volume_name(ns: &str, tenant: &str, volume: &str) -> String {
    format!("{ns}-{tenant}-{volume}")
}

pub fn owner_labels(ns: &str, tenant: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::NAMESPACE.into(), ns.into()),
        (labels::TENANT.into(), tenant.into()),
    ])
}

/// A tenant's network: `subnet` and gateway, the engine's own picks kept to `ip_range`.
pub fn network_spec(
    ns: &str,
    tenant: &str,
    subnet: (String, String),
    ip_range: Option<String>,
) -> NetworkSpec {
    NetworkSpec {
        name: network_name(ns, tenant),
        subnet: subnet.0,
        gateway: subnet.1,
        ip_range,
        labels: owner_labels(ns, tenant),
    }
}

pub fn volume_spec(ns: &str, tenant: &str, volume: &str, device: Option<String>) -> VolumeSpec {
    VolumeSpec {
        name: volume_name(ns, tenant, volume),
        labels: owner_labels(ns, tenant),
        device,
    }
}

/// The container for `svc` of `inst`, labelled with the hash of everything above. `pool`: the
/// tenants' pool when web containers take fixed addresses (one host), None in swarm mode.
pub fn container_spec(
    ns: &str,
    inst: &Instance,
    svc: &Service,
    alloc: &Allocation,
    pool: Option<&SubnetPool>,
    layout: &Layout,
) -> ContainerSpec {
    let t = &inst.tenant;
    let mut mounts: Vec<Mount> = svc
        .volumes
        .iter()
        .map(|v| Mount {
            kind: MountKind::Volume,
            source: volume_name(ns, t, &v.volume),
            target: v.target.clone(),
            read_only: v.read_only,
        })
        .collect();
    let mut digest = Sha256::new();
    for name in &svc.secrets {
        let source = layout.service_secret(t, &svc.name, name);
        mounts.push(Mount {
            kind: MountKind::File,
            source: source.display().to_string(),
            target: format!("/run/secrets/{name}"),
            read_only: true,
        });
    }
    for (name, target) in &svc.configs {
        let source = layout.service_config(t, &svc.name, name);
        digest.update(
            inst.configs
                .get(name)
                .map(String::as_bytes)
                .unwrap_or_default(),
        );
        mounts.push(Mount {
            kind: MountKind::File,
            source: source.display().to_string(),
            target: target.clone(),
            read_only: true,
        });
    }
    let mut labels = owner_labels(ns, t);
    labels.insert(labels::SERVICE.into(), svc.name.clone());
    labels.insert(labels::TEMPLATE.into(), inst.template.clone());
    labels.insert(labels::VERSION.into(), inst.version.clone());
    // Sealed into the container's namespace at start (`netns`); a change recreates it.
    let allows: Vec<String> = inst.egress.iter().map(ToString::to_string).collect();
    labels.insert(labels::EGRESS.into(), allows.join(" "));
    let is_web = svc.name == inst.web.service;
    let mut spec = ContainerSpec {
        name: container_name(ns, t, &svc.name),
        image: svc.image.clone(),
        labels,
        env: svc
            .environment
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect(),
        cmd: svc.command.clone(),
        entrypoint: svc.entrypoint.clone(),
        user: svc.user.clone(),
        working_dir: svc.working_dir.clone(),
        network: network_name(ns, t),
        aliases: vec![svc.name.clone()],
        mounts,
        tmpfs: svc.tmpfs.clone(),
        publish: is_web.then_some((inst.web.port, alloc.port)),
        address: pool
            .filter(|_| is_web)
            .map(|p| p.web_ip(alloc.subnet, alloc.web_slot)),
        memory: svc.limits.memory as i64,
        nano_cpus: (svc.limits.cpus * 1e9) as i64,
        cpu_shares: ((svc.limits.cpus * 1024.0) as i64).max(2),
        pids_limit: svc.limits.pids,
        cap_drop: vec!["ALL".into()],
        cap_add: svc.cap_add.clone(),
        no_new_privileges: true,
        read_only_rootfs: svc.read_only,
        healthcheck: svc.healthcheck.as_ref().map(|h| HealthSpec {
            test: h.test.clone(),
            interval_ns: h.interval.as_nanos() as i64,
            timeout_ns: h.timeout.as_nanos() as i64,
            retries: i64::from(h.retries),
            start_period_ns: h.start_period.as_nanos() as i64,
        }),
        stop_timeout_s: svc.stop_grace.map(|d| d.as_secs() as i64).unwrap_or(10),
        files_digest: hex::encode(digest.finalize()),
    };
    let hash = spec_hash(&spec);
    spec.labels.insert(labels::SPEC_HASH.into(), hash);
    spec
}

/// Hash of the canonical JSON of a spec (its own hash label excluded). Only desired inputs go
/// in, never observed values, so the hash is stable across restarts (compose #9897's lesson).
pub fn spec_hash(spec: &ContainerSpec) -> String {
    let mut s = spec.clone();
    // Informational labels stay out: a new instance version must not recreate a service
    // whose own image and settings did not change.
    for l in [labels::SPEC_HASH, labels::VERSION, labels::TEMPLATE] {
        s.labels.remove(l);
    }
    let json = serde_json::to_vec(&s).expect("spec serializes");
    hex::encode(&Sha256::digest(&json)[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_for(service: &str) -> ContainerSpec {
        crate::fixtures::container_spec("berth", "acme", service)
    }

    #[test]
    fn every_container_drops_all_capabilities_and_cannot_gain_privileges() {
        for s in ["app", "db"] {
            let spec = spec_for(s);
            assert_eq!(spec.cap_drop, vec!["ALL"]);
            assert!(spec.no_new_privileges);
            assert!(spec.pids_limit > 0 && spec.memory > 0 && spec.nano_cpus > 0);
        }
    }

    #[test]
    fn only_the_web_service_is_published_and_files_come_from_the_state_dir() {
        assert_eq!(spec_for("app").publish, Some((8080, 20001)));
        assert_eq!(spec_for("db").publish, None);
        assert_eq!(spec_for("app").address, Some([10, 240, 0, 14].into()));
        assert_eq!(spec_for("db").address, None);
        for m in spec_for("db").mounts {
            if m.kind == MountKind::File {
                assert!(m.source.starts_with("/var/lib/berth/"), "{}", m.source);
                assert!(m.read_only);
            }
            assert!(!m.source.contains("docker.sock"));
        }
    }

    #[test]
    fn the_hash_is_stable_and_changes_with_the_image() {
        let a = spec_for("app");
        assert_eq!(spec_hash(&a), spec_hash(&spec_for("app")));
        let mut b = a.clone();
        b.image = "berth/demo:2".into();
        assert_ne!(spec_hash(&a), spec_hash(&b));
    }
}
