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

/// The tenant's network must hold what the engine places on it: every service but the web one
/// (which has a fixed address of its own), and the host's shared database server and mail
/// relay when they are attached. Refused here, by field, rather than when a container cannot
/// get an address.
pub(super) fn check_addresses(
    host: &HostConfig,
    services: &[Service],
    web: &str,
    database: Option<&Database>,
    mail: bool,
    err: Report,
) {
    let shared = database.is_some_and(|d| d.mode == DatabaseMode::Shared);
    let need =
        services.iter().filter(|s| s.name != web).count() + usize::from(shared) + usize::from(mail);
    let room = host.subnet_pool.dynamic_capacity();
    if need > room as usize {
        err(
            "template",
            format!(
                "its network needs {need} addresses besides the web container's (its other services, and the shared database server and mail relay when attached); a /{} tenant subnet holds {room}: lower network.subnet_prefix",
                host.subnet_pool.subnet_prefix
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn a_tenant_needing_more_addresses_than_its_network_s_range_is_refused_by_field() {
        let host = fixtures::host();
        let i = fixtures::demo_instance("acme");
        let mut services = i.services.clone();
        let check = |services: &[Service], mail| {
            let mut said = vec![];
            check_addresses(&host, services, "app", None, mail, &mut |f, m| {
                said.push(format!("{f}: {m}"))
            });
            said
        };
        assert!(
            check(&services, true).is_empty(),
            "demo: its database and the relay"
        );
        let db = services.iter().find(|s| s.name == "db").unwrap().clone();
        for n in 0..5 {
            services.push(Service {
                name: format!("worker{n}"),
                ..db.clone()
            });
        }
        assert!(check(&services, false).is_empty(), "six fit");
        let said = check(&services, true);
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(
            said[0].starts_with("template: its network needs 7 addresses"),
            "{said:?}"
        );
        assert!(said[0].contains("/28 tenant subnet holds 6"), "{said:?}");
    }
}
