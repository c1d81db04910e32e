//! One tenant → one namespace: Pod Security labels, a ResourceQuota and LimitRange from its
//! plan, a default-deny NetworkPolicy with the allows it needs, a ServiceAccount without a
//! token, its secrets and rendered configs, a Deployment (one replica, Recreate) per service
//! with PersistentVolumeClaims for its volumes, Services for the web and database services,
//! CronJobs for the template's jobs and an Ingress for its domains with cert-manager's
//! annotation. Built from `k8s-openapi` types (Kubernetes 1.33 onwards), serialised as YAML.

mod network;
mod workload;

use super::ExportError;
use crate::desired::{HostConfig, Instance};
use k8s_openapi::{
    api::core::v1::{
        ConfigMap, LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota,
        ResourceQuotaSpec, Secret, ServiceAccount,
    },
    apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::ObjectMeta},
};
use std::collections::BTreeMap;

/// Cluster-side names the output refers to.
#[derive(Debug, Clone)]
pub struct Options {
    pub ingress_class: String,
    /// The namespace the ingress controller runs in (allowed to reach the web service).
    pub ingress_namespace: String,
    pub cluster_issuer: String,
    /// Size of a volume's claim when the plan gives the tenant no disk quota.
    pub default_volume: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            ingress_class: "nginx".into(),
            ingress_namespace: "ingress-nginx".into(),
            cluster_issuer: "letsencrypt".into(),
            default_volume: 1 << 30,
        }
    }
}

/// What one tenant needs from outside its desired state.
pub struct Input<'a> {
    pub host: &'a HostConfig,
    pub inst: &'a Instance,
    /// The tenant's secret values (kept from this host where they exist, so its data still
    /// opens); a missing one is generated.
    pub secret: &'a dyn Fn(&str) -> Option<String>,
    pub opts: &'a Options,
}

impl Input<'_> {
    fn ns(&self) -> String {
        format!("{}-{}", self.host.namespace, self.inst.tenant)
    }

    fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/managed-by".into(), "berth".into()),
            ("io.berth.tenant".into(), self.inst.tenant.clone()),
            ("io.berth.template".into(), self.inst.template.clone()),
        ])
    }

    fn meta(&self, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some(self.ns()),
            labels: Some(self.labels()),
            ..Default::default()
        }
    }
}

fn q(s: impl Into<String>) -> Quantity {
    Quantity(s.into())
}

/// The tenant's objects as one multi-document YAML text.
pub fn render(input: &Input) -> Result<String, ExportError> {
    let docs = documents(input)?;
    Ok(docs.join("---\n"))
}

/// Each object as its own YAML document, in the order to apply them.
pub fn documents(i: &Input) -> Result<Vec<String>, ExportError> {
    if i.inst
        .database
        .as_ref()
        .is_some_and(|d| d.mode == crate::spec::template::DatabaseMode::Shared)
    {
        return Err(ExportError::Unsupported {
            tenant: i.inst.tenant.clone(),
            reason: "its template uses the host's shared database; on Kubernetes give it its own \
                     (a sidecar database template) or point it at a cluster database by hand"
                .into(),
        });
    }
    let y = |v: &dyn erased::Doc| v.yaml();
    let mut out = vec![y(&namespace(i))?, y(&quota(i))?, y(&limit_range(i))?];
    for p in network::policies(i) {
        out.push(y(&p)?);
    }
    out.push(y(&service_account(i))?);
    out.push(y(&secret(i)?)?);
    out.push(y(&config_map(i))?);
    for d in workload::claims(i) {
        out.push(y(&d)?);
    }
    for d in workload::deployments(i) {
        out.push(y(&d)?);
    }
    for s in workload::services(i) {
        out.push(y(&s)?);
    }
    for c in workload::cron_jobs(i)? {
        out.push(y(&c)?);
    }
    if let Some(ing) = network::ingress(i) {
        out.push(y(&ing)?);
    }
    Ok(out)
}

mod erased {
    pub trait Doc {
        fn yaml(&self) -> Result<String, super::ExportError>;
    }
    impl<T: serde::Serialize> Doc for T {
        fn yaml(&self) -> Result<String, super::ExportError> {
            Ok(serde_yaml::to_string(self)?)
        }
    }
}

fn namespace(i: &Input) -> Namespace {
    let mut labels = i.labels();
    // Baseline enforced (the apps' images start as root and drop to their user); restricted
    // is what berth's own hardening meets where it can, reported as warnings.
    for (k, v) in [
        ("enforce", "baseline"),
        ("enforce-version", "v1.33"),
        ("warn", "restricted"),
        ("audit", "restricted"),
    ] {
        labels.insert(format!("pod-security.kubernetes.io/{k}"), v.into());
    }
    Namespace {
        metadata: ObjectMeta {
            name: Some(i.ns()),
            labels: Some(labels),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn quota(i: &Input) -> ResourceQuota {
    let l = &i.inst.limits;
    let volumes = i.inst.volumes.len();
    let mut hard = BTreeMap::from([
        ("limits.memory".to_string(), q(l.memory.to_string())),
        (
            "limits.cpu".to_string(),
            q(format!("{}m", (l.cpus * 1000.0).round() as u64)),
        ),
        ("requests.memory".to_string(), q(l.memory.to_string())),
        (
            "requests.cpu".to_string(),
            q(format!("{}m", (l.cpus * 1000.0).round() as u64)),
        ),
        ("persistentvolumeclaims".to_string(), q(volumes.to_string())),
        // Every service, one job run each, and a rollout's second pod.
        (
            "pods".to_string(),
            q((i.inst.services.len() * 2 + i.inst.jobs.len()).to_string()),
        ),
    ]);
    let storage = i
        .inst
        .quota
        .disk
        .unwrap_or(i.opts.default_volume * volumes as u64);
    hard.insert("requests.storage".into(), q(storage.to_string()));
    ResourceQuota {
        metadata: i.meta("plan"),
        spec: Some(ResourceQuotaSpec {
            hard: Some(hard),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn limit_range(i: &Input) -> LimitRange {
    let share = i.inst.services.len().max(1) as u64;
    let mem = (i.inst.limits.memory / share).max(16 << 20);
    let cpu = ((i.inst.limits.cpus * 1000.0) as u64 / share).max(10);
    LimitRange {
        metadata: i.meta("defaults"),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".into(),
                default: Some(BTreeMap::from([
                    ("memory".into(), q(mem.to_string())),
                    ("cpu".into(), q(format!("{cpu}m"))),
                ])),
                default_request: Some(BTreeMap::from([
                    ("memory".into(), q((mem / 2).to_string())),
                    ("cpu".into(), q(format!("{}m", (cpu / 2).max(5)))),
                ])),
                ..Default::default()
            }],
        }),
    }
}

fn service_account(i: &Input) -> ServiceAccount {
    ServiceAccount {
        metadata: i.meta("tenant"),
        automount_service_account_token: Some(false),
        ..Default::default()
    }
}

fn secret(i: &Input) -> Result<Secret, ExportError> {
    let mut data = BTreeMap::new();
    for (name, spec) in &i.inst.secrets {
        let value = match (i.secret)(name) {
            Some(v) => v,
            None => crate::desired::secret::generate(spec.bytes, spec.encoding)
                .map_err(ExportError::Random)?,
        };
        data.insert(name.clone(), value);
    }
    Ok(Secret {
        metadata: i.meta("secrets"),
        string_data: Some(data),
        type_: Some("Opaque".into()),
        ..Default::default()
    })
}

fn config_map(i: &Input) -> ConfigMap {
    ConfigMap {
        metadata: i.meta("configs"),
        data: Some(i.inst.configs.clone()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
