//! The tenant's services as Deployments (one replica, Recreate: its volumes are
//! ReadWriteOnce claims), Services for the ones others reach, and CronJobs for its jobs.

use super::{ExportError, Input, q};
use crate::desired::model::Service;
use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy},
        batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec},
        core::v1::{
            Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
            EnvVar, HTTPGetAction, KeyToPath, PersistentVolumeClaim, PersistentVolumeClaimSpec,
            PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
            ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext,
            Service as KService, ServicePort, ServiceSpec, TCPSocketAction, Volume, VolumeMount,
            VolumeResourceRequirements,
        },
    },
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};
use std::collections::BTreeMap;

pub fn claims(i: &Input) -> Vec<PersistentVolumeClaim> {
    let n = i.inst.volumes.len().max(1) as u64;
    let size = i.inst.quota.disk.map_or(i.opts.default_volume, |d| d / n);
    i.inst
        .volumes
        .iter()
        .map(|v| PersistentVolumeClaim {
            metadata: i.meta(&claim_name(v)),
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([("storage".into(), q(size.to_string()))])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect()
}

/// A volume's claim: a DNS label (template volume names may hold `_`).
fn claim_name(v: &str) -> String {
    format!("vol-{}", v.replace('_', "-").to_lowercase())
}

pub fn selector(i: &Input, svc: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("io.berth.tenant".into(), i.inst.tenant.clone()),
        ("io.berth.service".into(), svc.to_string()),
        // Job pods run a service's image too; they are `job`, never selected as the service.
        ("io.berth.role".into(), "service".into()),
    ])
}

/// The port a service listens on, when berth knows it: the web port, the database's.
pub fn port_of(i: &Input, svc: &str) -> Option<u16> {
    if svc == i.inst.web.service {
        return Some(i.inst.web.port);
    }
    let db = i.inst.database.as_ref()?;
    (db.host == svc).then_some(db.port)
}

fn security(svc: &Service) -> SecurityContext {
    let uid = svc
        .user
        .as_deref()
        .and_then(|u| u.split(':').next())
        .and_then(|u| u.parse::<i64>().ok());
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: (!svc.cap_add.is_empty()).then(|| svc.cap_add.clone()),
        }),
        read_only_root_filesystem: Some(svc.read_only),
        run_as_user: uid,
        run_as_non_root: uid.map(|u| u != 0),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn probe(i: &Input, svc: &str) -> Option<Probe> {
    let port = IntOrString::Int(port_of(i, svc)?.into());
    let web = svc == i.inst.web.service;
    Some(Probe {
        http_get: web.then(|| HTTPGetAction {
            path: Some(i.inst.web.health_path.clone()),
            port: port.clone(),
            ..Default::default()
        }),
        tcp_socket: (!web).then(|| TCPSocketAction {
            port,
            ..Default::default()
        }),
        period_seconds: Some(10),
        failure_threshold: Some(3),
        ..Default::default()
    })
}

/// The container and the pod volumes it needs.
fn container(i: &Input, svc: &Service, command: Option<Vec<String>>) -> (Container, Vec<Volume>) {
    let mut mounts = vec![];
    let mut volumes = vec![];
    for v in &svc.volumes {
        let name = claim_name(&v.volume);
        mounts.push(VolumeMount {
            name: name.clone(),
            mount_path: v.target.clone(),
            read_only: Some(v.read_only),
            ..Default::default()
        });
        volumes.push(Volume {
            name: name.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: name,
                read_only: Some(v.read_only),
            }),
            ..Default::default()
        });
    }
    if !svc.secrets.is_empty() {
        mounts.push(VolumeMount {
            name: "secrets".into(),
            mount_path: "/run/secrets".into(),
            read_only: Some(true),
            ..Default::default()
        });
        // Readable by the pod's group (fsGroup: the service's own gid), as berth's 0400 files
        // are by the service's own user.
        let items = svc.secrets.iter().map(|s| KeyToPath {
            key: s.clone(),
            path: s.clone(),
            mode: Some(0o440),
        });
        volumes.push(Volume {
            name: "secrets".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some("secrets".into()),
                items: Some(items.collect()),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    for (n, (config, target)) in svc.configs.iter().enumerate() {
        let name = format!("config-{n}");
        let file = target.rsplit('/').next().unwrap_or(config).to_string();
        mounts.push(VolumeMount {
            name: name.clone(),
            mount_path: target.clone(),
            sub_path: Some(file.clone()),
            read_only: Some(true),
            ..Default::default()
        });
        volumes.push(Volume {
            name,
            config_map: Some(ConfigMapVolumeSource {
                name: "configs".into(),
                items: Some(vec![KeyToPath {
                    key: config.clone(),
                    path: file,
                    mode: Some(0o444),
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    for (n, path) in svc.tmpfs.keys().enumerate() {
        let name = format!("tmp-{n}");
        mounts.push(VolumeMount {
            name: name.clone(),
            mount_path: path.clone(),
            ..Default::default()
        });
        volumes.push(Volume {
            name,
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let env = svc.environment.iter().map(|(k, v)| EnvVar {
        name: k.clone(),
        value: Some(v.clone()),
        ..Default::default()
    });
    let limits = BTreeMap::from([
        ("memory".to_string(), q(svc.limits.memory.to_string())),
        (
            "cpu".to_string(),
            q(format!("{}m", ((svc.limits.cpus * 1000.0) as u64).max(1))),
        ),
    ]);
    let c = Container {
        name: svc.name.clone(),
        image: Some(svc.image.clone()),
        command: command.clone().or_else(|| svc.entrypoint.clone()),
        args: if command.is_some() {
            None
        } else {
            svc.command.clone()
        },
        env: Some(env.collect()),
        working_dir: svc.working_dir.clone(),
        ports: port_of(i, &svc.name).map(|p| {
            vec![ContainerPort {
                container_port: p.into(),
                ..Default::default()
            }]
        }),
        volume_mounts: Some(mounts),
        resources: Some(ResourceRequirements {
            requests: Some(limits.clone()),
            limits: Some(limits),
            ..Default::default()
        }),
        security_context: Some(security(svc)),
        readiness_probe: if command.is_none() {
            probe(i, &svc.name)
        } else {
            None
        },
        liveness_probe: if command.is_none() {
            probe(i, &svc.name)
        } else {
            None
        },
        ..Default::default()
    };
    (c, volumes)
}

fn pod(i: &Input, svc: &Service, command: Option<Vec<String>>, restart: &str) -> PodTemplateSpec {
    let (c, volumes) = container(i, svc, command);
    let mut meta = i.meta(&svc.name);
    meta.name = None;
    meta.namespace = None;
    let mut labels = meta.labels.take().unwrap_or_default();
    labels.extend(selector(i, &svc.name));
    meta.labels = Some(labels);
    PodTemplateSpec {
        metadata: Some(meta),
        spec: Some(PodSpec {
            containers: vec![c],
            volumes: Some(volumes),
            service_account_name: Some("tenant".into()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            restart_policy: Some(restart.into()),
            security_context: (svc.file_owner.1 != 0).then(|| PodSecurityContext {
                fs_group: Some(svc.file_owner.1.into()),
                ..Default::default()
            }),
            termination_grace_period_seconds: svc.stop_grace.map(|d| d.as_secs() as i64),
            ..Default::default()
        }),
    }
}

pub fn deployments(i: &Input) -> Vec<Deployment> {
    i.inst
        .services
        .iter()
        .map(|svc| Deployment {
            metadata: i.meta(&svc.name),
            spec: Some(DeploymentSpec {
                replicas: Some(1),
                selector: LabelSelector {
                    match_labels: Some(selector(i, &svc.name)),
                    ..Default::default()
                },
                strategy: Some(DeploymentStrategy {
                    type_: Some("Recreate".into()),
                    ..Default::default()
                }),
                template: pod(i, svc, None, "Always"),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect()
}

/// A Service for each service with a known port, named as the service, so the app reaches
/// its database by the same name it uses under berth (`db`).
pub fn services(i: &Input) -> Vec<KService> {
    i.inst
        .services
        .iter()
        .filter_map(|svc| {
            let port = port_of(i, &svc.name)?;
            Some(KService {
                metadata: i.meta(&svc.name),
                spec: Some(ServiceSpec {
                    selector: Some(selector(i, &svc.name)),
                    ports: Some(vec![ServicePort {
                        port: port.into(),
                        target_port: Some(IntOrString::Int(port.into())),
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            })
        })
        .collect()
}

/// The template's jobs as CronJobs: the job's command in a pod of its service's image, with
/// the same volumes, one run at a time, killed at its timeout.
pub fn cron_jobs(i: &Input) -> Result<Vec<CronJob>, ExportError> {
    let mut out = vec![];
    for (name, job) in &i.inst.jobs {
        let fields: Vec<&str> = job.schedule.split_whitespace().collect();
        let schedule = match fields.len() {
            5 => job.schedule.clone(),
            6 if fields[0] == "0" => fields[1..].join(" "),
            _ => {
                return Err(ExportError::Unsupported {
                    tenant: i.inst.tenant.clone(),
                    reason: format!(
                        "job {name}: schedule {:?} runs at a second other than 0; CronJobs take minutes",
                        job.schedule
                    ),
                });
            }
        };
        let Some(svc) = i.inst.service(&job.service) else {
            continue;
        };
        let mut template = pod(i, svc, Some(job.command.clone()), "Never");
        if let Some(m) = template.metadata.as_mut() {
            let labels = m.labels.get_or_insert_default();
            labels.insert("io.berth.job".into(), name.replace('_', "-"));
            labels.insert("io.berth.role".into(), "job".into());
        }
        out.push(CronJob {
            metadata: i.meta(&format!("job-{}", name.replace('_', "-").to_lowercase())),
            spec: Some(CronJobSpec {
                schedule,
                time_zone: Some("Etc/UTC".into()),
                concurrency_policy: Some("Forbid".into()),
                job_template: JobTemplateSpec {
                    spec: Some(JobSpec {
                        active_deadline_seconds: Some(job.timeout.as_secs().max(1) as i64),
                        backoff_limit: Some(0),
                        template,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    Ok(out)
}
