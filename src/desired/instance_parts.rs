//! Parts of an instance built from its file and template: the names it claims, its path
//! mounts, rendered configs, services, secrets and jobs. Every error names its field.

use super::{
    host::HostConfig,
    limits::Limits,
    model::{Database, Job, PathMount, SecretSpec, Service},
    template::Template,
};
use crate::spec::{
    instance::InstanceFile,
    template::{DatabaseMode, StringOrList, TemplateFile, VersionFile},
};
use minijinja::{Environment, Value};
use std::collections::BTreeMap;

/// Where a section's field errors go.
type Report<'a> = &'a mut dyn FnMut(&str, String);

/// Domains and aliases: each one the tenant may claim, none twice, within the plan's count.
pub(super) fn check_claims(i: &InstanceFile, host: &HostConfig, max: Option<u32>, err: Report) {
    for (n, d) in i.domains.iter().enumerate() {
        if let Err(m) = super::domains::check_custom(d, &i.tenant, host) {
            err(&format!("domains.{n}"), m.to_string());
        } else if i.domains[..n].contains(d) {
            err(&format!("domains.{n}"), format!("{d:?} is listed twice"));
        }
    }
    for (n, d) in i.aliases.iter().enumerate() {
        if let Err(m) = super::domains::check_custom(d, &i.tenant, host) {
            err(&format!("aliases.{n}"), m.to_string());
        } else if i.domains.contains(d) || i.aliases[..n].contains(d) {
            err(&format!("aliases.{n}"), format!("{d:?} is listed twice"));
        }
    }
    let claimed = i.domains.len() + i.aliases.len();
    if let Some(max) = max.filter(|m| claimed > *m as usize) {
        err(
            "domains",
            format!("{claimed} domains and aliases claimed; the plan allows {max}"),
        );
    }
}

/// `paths:`: each a valid mount under a shared domain, none twice.
pub(super) fn paths_of(i: &InstanceFile, host: &HostConfig, err: Report) -> Vec<PathMount> {
    let mut paths = Vec::new();
    for (n, p) in i.paths.iter().enumerate() {
        match PathMount::parse(p, host) {
            Ok(m) if paths.contains(&m) => {
                err(&format!("paths.{n}"), format!("{p:?} is listed twice"))
            }
            Ok(m) => paths.push(m),
            Err(m) => err(&format!("paths.{n}"), m.to_string()),
        }
    }
    paths
}

/// The template's configs rendered for this tenant.
pub(super) fn configs_of(
    i: &InstanceFile,
    t: &Template,
    env: &Environment<'_>,
    ctx: &Value,
    err: Report,
) -> BTreeMap<String, String> {
    let mut configs = BTreeMap::new();
    for (name, src) in &t.source.config_sources {
        match super::render::render(env, src, ctx) {
            Ok(text) => {
                configs.insert(name.clone(), text);
            }
            Err(m) => err(
                "template",
                format!(
                    "config {name:?} of template {:?} failed to render: {m}",
                    i.template
                ),
            ),
        }
    }
    configs
}

/// The tenant's services in start order, each with its share of the plan's limits; the
/// template's database service is left out when the database is the host's shared server.
pub(super) fn services_of(
    t: &Template,
    ver: &VersionFile,
    database: Option<&Database>,
    limits: &Limits,
    env: &Environment<'_>,
    ctx: &Value,
    err: Report,
) -> Vec<Service> {
    let tf = t.file();
    let skip = match database {
        Some(db) if db.mode == DatabaseMode::Shared => {
            tf.database.as_ref().and_then(|d| d.service.clone())
        }
        _ => None,
    };
    let names: Vec<&String> = t
        .order
        .iter()
        .filter(|n| Some(*n) != skip.as_ref())
        .collect();
    let total: u32 = names
        .iter()
        .map(|n| tf.services[*n].resource_share.unwrap_or(1))
        .sum();
    let mut services = Vec::new();
    for name in names {
        let s = &tf.services[name];
        let image = ver
            .images
            .get(name)
            .or(s.image.as_ref())
            .cloned()
            .unwrap_or_default();
        let share = limits.part(s.resource_share.unwrap_or(1), total);
        match super::service::build(name, s, image, share, env, ctx, tf) {
            Ok(svc) => services.push(svc),
            Err(m) => err("template", format!("service {name:?}: {m}")),
        }
    }
    services
}

/// The template's secrets: how many random bytes each is, and how they are written.
pub(super) fn secrets_of(tf: &TemplateFile) -> BTreeMap<String, SecretSpec> {
    tf.secrets
        .iter()
        .map(|(k, s)| {
            let spec = SecretSpec {
                bytes: s.bytes,
                encoding: s.encoding,
            };
            (k.clone(), spec)
        })
        .collect()
}

/// The template's jobs; a command given as a string runs under `/bin/sh -c`.
pub(super) fn jobs_of(tf: &TemplateFile) -> BTreeMap<String, Job> {
    tf.jobs
        .iter()
        .map(|(name, j)| {
            let command = match &j.command {
                StringOrList::List(l) => l.clone(),
                StringOrList::String(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
            };
            let job = Job {
                schedule: j.schedule.clone(),
                service: j.service.clone(),
                command,
                // Checked with the template; a bad value cannot reach here.
                timeout: super::schedule::timeout_of(j.timeout.as_deref())
                    .unwrap_or(super::schedule::DEFAULT_TIMEOUT),
                wake: j.wake,
            };
            (name.clone(), job)
        })
        .collect()
}
