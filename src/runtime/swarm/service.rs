//! Pure construction of a tenant's Swarm service from the same `ContainerSpec` the single-host
//! runtime gets: one replica pinned to the tenant's node, on the tenant's own overlay only,
//! reached by DNS round robin (no IPVS virtual IP), its web port published in host mode.

use super::super::{
    labels,
    spec::{ContainerSpec, MountKind},
};
use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum,
    EndpointSpec, EndpointSpecModeEnum, Limit, Mount, MountTmpfsOptions, MountTypeEnum,
    MountVolumeOptions, MountVolumeOptionsDriverConfig, NetworkAttachmentConfig, ServiceSpec,
    ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec, TaskSpecContainerSpec,
    TaskSpecContainerSpecFile, TaskSpecContainerSpecSecrets, TaskSpecLogDriver, TaskSpecPlacement,
    TaskSpecResources, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// Label on a tenant's overlay network naming the node that holds the whole tenant.
pub const NODE_LABEL: &str = "io.berth.node";
/// Label on a secret naming the service it was made for.
pub const FOR_LABEL: &str = "io.berth.for";

/// One file berth rendered for a container, to be handed over as a Swarm secret (Swarm objects
/// are immutable, so the name carries a digest of the content: a change makes a new secret).
#[derive(Debug, Clone, PartialEq)]
pub struct FileSecret {
    pub name: String,
    pub target: String,
    pub data: Vec<u8>,
}

/// The secret for the file mounted at `target` of container `spec_name`.
pub fn file_secret(ns: &str, spec_name: &str, target: &str, data: Vec<u8>) -> FileSecret {
    let at = hex::encode(&Sha256::digest(format!("{spec_name}\n{target}"))[..8]);
    let content = hex::encode(&Sha256::digest(&data)[..6]);
    FileSecret {
        name: format!("{ns}-{at}-{content}"),
        target: target.to_string(),
        data,
    }
}

/// The service for `s` on `node`, with `replicas` (0: stopped) and its files as `secrets`
/// (name, id).
pub fn service_spec(
    s: &ContainerSpec,
    node: &str,
    replicas: i64,
    secrets: &[(FileSecret, String)],
) -> ServiceSpec {
    let labels: HashMap<String, String> = s.labels.clone().into_iter().collect();
    ServiceSpec {
        name: Some(s.name.clone()),
        labels: Some(labels.clone()),
        task_template: Some(task(s, node, labels, secrets)),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(replicas),
            }),
            ..Default::default()
        }),
        endpoint_spec: Some(endpoint(s)),
        ..Default::default()
    }
}

fn task(
    s: &ContainerSpec,
    node: &str,
    labels: HashMap<String, String>,
    secrets: &[(FileSecret, String)],
) -> TaskSpec {
    TaskSpec {
        container_spec: Some(container(s, labels, secrets)),
        resources: Some(TaskSpecResources {
            limits: Some(Limit {
                nano_cpus: Some(s.nano_cpus),
                memory_bytes: Some(s.memory),
                pids: Some(s.pids_limit),
            }),
            reservations: None,
        }),
        restart_policy: Some(TaskSpecRestartPolicy {
            condition: Some(TaskSpecRestartPolicyConditionEnum::ANY),
            delay: Some(1_000_000_000),
            ..Default::default()
        }),
        placement: Some(TaskSpecPlacement {
            constraints: Some(vec![format!("node.hostname == {node}")]),
            ..Default::default()
        }),
        networks: Some(vec![NetworkAttachmentConfig {
            target: Some(s.network.clone()),
            aliases: Some(s.aliases.clone()),
            ..Default::default()
        }]),
        log_driver: Some(TaskSpecLogDriver {
            name: Some("json-file".into()),
            options: Some(HashMap::from([
                ("max-size".into(), super::super::spec::LOG_MAX_SIZE.into()),
                ("max-file".into(), super::super::spec::LOG_MAX_FILES.into()),
            ])),
        }),
        ..Default::default()
    }
}

fn container(
    s: &ContainerSpec,
    labels: HashMap<String, String>,
    secrets: &[(FileSecret, String)],
) -> TaskSpecContainerSpec {
    TaskSpecContainerSpec {
        image: Some(s.image.clone()),
        labels: Some(labels),
        command: s.entrypoint.clone(),
        args: s.cmd.clone(),
        hostname: s.aliases.first().cloned(),
        env: Some(s.env.clone()),
        dir: s.working_dir.clone(),
        user: s.user.clone(),
        read_only: Some(s.read_only_rootfs),
        mounts: Some(mounts(s)),
        stop_grace_period: Some(s.stop_timeout_s * 1_000_000_000),
        health_check: Some(super::super::docker::health_config(s)),
        secrets: Some(secrets.iter().map(secret_ref).collect()),
        capability_drop: Some(s.cap_drop.clone()),
        capability_add: (!s.cap_add.is_empty()).then(|| s.cap_add.clone()),
        init: Some(false),
        ..Default::default()
    }
}

fn secret_ref((f, id): &(FileSecret, String)) -> TaskSpecContainerSpecSecrets {
    TaskSpecContainerSpecSecrets {
        file: Some(TaskSpecContainerSpecFile {
            name: Some(f.target.clone()),
            uid: Some("0".into()),
            gid: Some("0".into()),
            mode: Some(0o444),
        }),
        secret_id: Some(id.clone()),
        secret_name: Some(f.name.clone()),
    }
}

/// Named volumes (created on the node beforehand, with their labels) and tmpfs; the rendered
/// files travel as secrets instead.
fn mounts(s: &ContainerSpec) -> Vec<Mount> {
    let volumes = s.mounts.iter().filter(|m| m.kind == MountKind::Volume);
    let mut out: Vec<Mount> = volumes
        .map(|m| Mount {
            target: Some(m.target.clone()),
            source: Some(m.source.clone()),
            typ: Some(MountTypeEnum::VOLUME),
            read_only: Some(m.read_only),
            volume_options: Some(MountVolumeOptions {
                labels: Some(
                    super::super::spec::owner_labels(
                        &s.labels[labels::NAMESPACE],
                        &s.labels[labels::TENANT],
                    )
                    .into_iter()
                    .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    out.extend(
        s.tmpfs
            .iter()
            .map(|(target, opts)| tmpfs_mount(&s.name, target, opts)),
    );
    out
}

/// A tmpfs. Swarm's own tmpfs mount takes a size and a mode only, and over a directory the
/// image has, the engine copies that directory's mode (not its owner) onto it. So a tmpfs that
/// names `uid=`/`gid=` becomes a volume of the local driver's tmpfs type with the same options
/// (mounted fresh, empty, with that owner, at each start), named for its service and labelled
/// so that removing the service removes it.
fn tmpfs_mount(service: &str, target: &str, opts: &str) -> Mount {
    let owned = opts
        .split(',')
        .any(|o| o.starts_with("uid=") || o.starts_with("gid="));
    if !owned {
        return Mount {
            target: Some(target.into()),
            typ: Some(MountTypeEnum::TMPFS),
            tmpfs_options: Some(tmpfs_options(opts)),
            ..Default::default()
        };
    }
    let kept: Vec<&str> = opts
        .split(',')
        .filter(|o| {
            let k = o.split('=').next().unwrap_or_default();
            ["size", "mode", "uid", "gid", "nosuid", "nodev", "noexec"].contains(&k)
        })
        .collect();
    Mount {
        target: Some(target.into()),
        source: Some(tmpfs_volume(service, target)),
        typ: Some(MountTypeEnum::VOLUME),
        volume_options: Some(MountVolumeOptions {
            no_copy: Some(true),
            labels: Some(HashMap::from([(FOR_LABEL.into(), service.into())])),
            driver_config: Some(MountVolumeOptionsDriverConfig {
                name: Some("local".into()),
                options: Some(HashMap::from([
                    ("type".into(), "tmpfs".into()),
                    ("device".into(), "tmpfs".into()),
                    ("o".into(), kept.join(",")),
                ])),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The name of the tmpfs volume at `target` of `service`.
pub fn tmpfs_volume(service: &str, target: &str) -> String {
    let at = hex::encode(&Sha256::digest(target)[..4]);
    format!("{service}-tmpfs-{at}")
}

/// Swarm's tmpfs takes a size and a mode only (engine API 1.41): `uid=`/`gid=` cannot be
/// passed, so without an explicit `mode=` the mount is world-writable with the sticky bit (what
/// `docker run --tmpfs` gives), and a non-root service can still write to it.
fn tmpfs_options(opts: &str) -> MountTmpfsOptions {
    let mut o = MountTmpfsOptions {
        mode: Some(0o1777),
        ..Default::default()
    };
    for kv in opts.split(',') {
        match kv.split_once('=') {
            Some(("size", v)) => {
                o.size_bytes = crate::spec::units::parse_bytes(v)
                    .ok()
                    .and_then(|b| i64::try_from(b).ok())
            }
            Some(("mode", v)) => o.mode = i64::from_str_radix(v, 8).ok().or(o.mode),
            _ => {}
        }
    }
    o
}

fn endpoint(s: &ContainerSpec) -> EndpointSpec {
    EndpointSpec {
        mode: Some(EndpointSpecModeEnum::DNSRR),
        ports: Some(
            s.publish
                .iter()
                .map(|(target, published)| EndpointPortConfig {
                    protocol: Some(EndpointPortConfigProtocolEnum::TCP),
                    target_port: Some(i64::from(*target)),
                    published_port: Some(i64::from(*published)),
                    publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
                    ..Default::default()
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(service: &str) -> ContainerSpec {
        crate::fixtures::container_spec("berth", "acme", service)
    }

    fn files(s: &ContainerSpec) -> Vec<(FileSecret, String)> {
        s.mounts
            .iter()
            .filter(|m| m.kind == MountKind::File)
            .map(|m| {
                (
                    file_secret("berth", &s.name, &m.target, b"x".to_vec()),
                    "id".into(),
                )
            })
            .collect()
    }

    #[test]
    fn a_service_is_one_replica_pinned_to_the_tenants_node_on_its_own_network_only() {
        let s = spec("app");
        let svc = service_spec(&s, "node-2", 1, &files(&s));
        let t = svc.task_template.unwrap();
        assert_eq!(
            t.placement.unwrap().constraints.unwrap(),
            vec!["node.hostname == node-2"]
        );
        let nets = t.networks.unwrap();
        assert_eq!(nets.len(), 1);
        assert_eq!(nets[0].target.as_deref(), Some("berth-acme"));
        assert_eq!(svc.mode.unwrap().replicated.unwrap().replicas, Some(1));
    }

    #[test]
    fn the_hardening_swarm_supports_is_kept_and_no_host_path_is_mounted() {
        let s = spec("app");
        let svc = service_spec(&s, "n", 0, &files(&s));
        let t = svc.task_template.unwrap();
        let c = t.container_spec.unwrap();
        assert_eq!(c.capability_drop.unwrap(), vec!["ALL"]);
        let l = t.resources.unwrap().limits.unwrap();
        assert!(l.memory_bytes > Some(0) && l.nano_cpus > Some(0) && l.pids > Some(0));
        for m in c.mounts.unwrap() {
            assert_ne!(m.typ, Some(MountTypeEnum::BIND), "{m:?}");
        }
        for f in c.secrets.unwrap() {
            assert!(f.file.unwrap().name.unwrap().starts_with('/'));
        }
    }

    #[test]
    fn the_web_port_is_published_on_the_node_without_a_virtual_ip() {
        let e = service_spec(&spec("app"), "n", 1, &[])
            .endpoint_spec
            .unwrap();
        assert_eq!(e.mode, Some(EndpointSpecModeEnum::DNSRR));
        let p = &e.ports.unwrap()[0];
        assert_eq!(
            p.publish_mode,
            Some(EndpointPortConfigPublishModeEnum::HOST)
        );
        assert_eq!((p.target_port, p.published_port), (Some(8080), Some(20001)));
        let db = service_spec(&spec("db"), "n", 1, &[])
            .endpoint_spec
            .unwrap();
        assert!(db.ports.unwrap().is_empty());
    }

    #[test]
    fn tmpfs_keeps_its_size_and_mode_and_is_writable_without_uid() {
        let o = tmpfs_options("rw,nosuid,size=1m,uid=999,gid=999");
        assert_eq!((o.size_bytes, o.mode), (Some(1 << 20), Some(0o1777)));
        let o = tmpfs_options("size=64k,mode=0700");
        assert_eq!((o.size_bytes, o.mode), (Some(64 << 10), Some(0o700)));
        assert_eq!(tmpfs_options("").size_bytes, None);
        assert_eq!(tmpfs_options("size=lots").size_bytes, None);
    }

    #[test]
    fn a_tmpfs_with_an_owner_becomes_a_tmpfs_volume_with_the_same_options() {
        let m = tmpfs_mount(
            "berth-acme-db",
            "/run/pg",
            "rw,nosuid,size=1m,uid=999,gid=999",
        );
        assert_eq!(m.typ, Some(MountTypeEnum::VOLUME));
        let v = m.volume_options.unwrap();
        assert_eq!(v.no_copy, Some(true));
        let o = v.driver_config.unwrap().options.unwrap();
        assert_eq!(
            (o["type"].as_str(), o["o"].as_str()),
            ("tmpfs", "nosuid,size=1m,uid=999,gid=999")
        );
        assert_eq!(v.labels.unwrap()[FOR_LABEL], "berth-acme-db");
        let plain = tmpfs_mount("berth-acme-db", "/tmp", "");
        assert_eq!(plain.typ, Some(MountTypeEnum::TMPFS));
    }

    #[test]
    fn a_changed_file_gets_a_new_secret_name_and_names_stay_short() {
        let a = file_secret("berth", "berth-acme-app", "/etc/app.conf", b"a".to_vec());
        let b = file_secret("berth", "berth-acme-app", "/etc/app.conf", b"b".to_vec());
        let c = file_secret("berth", "berth-acme-app", "/etc/other", b"a".to_vec());
        assert_ne!(a.name, b.name);
        assert_ne!(a.name, c.name);
        assert!(a.name.len() <= 64, "{}", a.name);
    }
}
