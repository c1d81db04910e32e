//! Builds one validated `Instance` from an instance file, its template and the host config.

pub use super::domains::check_domain;
use super::{
    host::{HostConfig, Plan, is_dns_label},
    instance_parts as parts,
    model::{Database, Instance, PathMount, Web},
    params, render,
    template::Template,
};
use crate::spec::{
    Loaded, SpecErrors,
    instance::InstanceFile,
    template::{DatabaseMode, VersionFile},
};
use minijinja::Value;
use std::collections::BTreeMap;

pub fn build(
    f: &Loaded<InstanceFile>,
    stem: &str,
    templates: &BTreeMap<String, Template>,
    host: &HostConfig,
) -> Result<Instance, SpecErrors> {
    let i = &f.value;
    let mut errs = SpecErrors::default();
    let mut err = |field: &str, msg: String| errs.push(f.error_at(field, msg));
    check_name(i, stem, &mut err);
    let Some((t, version, ver)) = template_of(i, templates, &mut err) else {
        return Err(errs);
    };
    let Plan {
        limits,
        quota,
        backups,
        egress,
        sleep_after,
        sleep_memory,
        mail: mail_limits,
    } = plan_of(i, host)
        .map_err(|(field, m)| err(&field, m))
        .unwrap_or_default();
    for (key, e) in super::selector::check_labels(&i.labels) {
        let field = if key.is_empty() {
            "labels".to_string()
        } else {
            format!("labels.{key}")
        };
        err(&field, e.to_string());
    }
    let parameters = parameters_of(i, t, &mut err);
    parts::check_claims(i, host, quota.domains, &mut err);
    let paths = parts::paths_of(i, host, &mut err);
    let database = database_of(i, t, host)
        .map_err(|m| err("template", m.to_string()))
        .ok()
        .flatten();
    errs.into_result()?;
    // Rendering needs everything above valid; its own errors are reported together.
    let mut errs = SpecErrors::default();
    let mut err = |field: &str, msg: String| errs.push(f.error_at(field, msg));
    let mail = mail_of(i, t, host, mail_limits);
    let ctx = context(
        i,
        &version,
        &parameters,
        database.as_ref(),
        mail.as_ref(),
        t,
        host,
    );
    let env = render::environment();
    let configs = parts::configs_of(i, t, &env, &ctx, &mut err);
    let services = parts::services_of(t, ver, database.as_ref(), &limits, &env, &ctx, &mut err);
    let web = &t.file().web.service;
    parts::check_addresses(
        host,
        &services,
        web,
        database.as_ref(),
        mail.is_some(),
        &mut err,
    );
    errs.into_result()?;
    let tf = t.file();
    Ok(Instance {
        tenant: i.tenant.clone(),
        template: i.template.clone(),
        version,
        state: i.state,
        domains: i.domains.clone(),
        aliases: i.aliases.clone(),
        paths,
        plan: i.plan.clone().or_else(|| host.default_plan.clone()),
        labels: i.labels.clone(),
        limits,
        quota,
        backups,
        egress,
        sleep_after,
        sleep_memory,
        parameters,
        web: Web {
            service: tf.web.service.clone(),
            port: tf.web.port,
            health_path: tf.web.health_path.clone(),
            strip_prefix: tf.web.path_prefix == crate::spec::template::PathPrefix::Strip,
        },
        database,
        services,
        volumes: tf.volumes.keys().cloned().collect(),
        secrets: parts::secrets_of(tf),
        configs,
        jobs: parts::jobs_of(tf),
        mail,
    })
}

/// The tenant's name: a DNS label, the file's own name.
fn check_name(i: &InstanceFile, stem: &str, err: &mut dyn FnMut(&str, String)) {
    if !is_tenant_name(&i.tenant) {
        err(
            "tenant",
            format!(
                "{:?} is not a valid tenant name: use a DNS label of at most 40 characters (a-z, 0-9, inner -)",
                i.tenant
            ),
        );
    } else if i.tenant != stem {
        err(
            "tenant",
            format!("{:?} must equal the file name {stem:?}", i.tenant),
        );
    }
}

/// The template and the version the file names (the template's default when it names none).
fn template_of<'t>(
    i: &InstanceFile,
    templates: &'t BTreeMap<String, Template>,
    err: &mut dyn FnMut(&str, String),
) -> Option<(&'t Template, String, &'t VersionFile)> {
    let Some(t) = templates.get(&i.template) else {
        let known: Vec<_> = templates.keys().cloned().collect();
        err(
            "template",
            format!(
                "template {:?} does not exist; known: {}",
                i.template,
                known.join(", ")
            ),
        );
        return None;
    };
    let version = i
        .version
        .clone()
        .unwrap_or_else(|| t.default_version.clone());
    let Some(ver) = t.file().versions.get(&version) else {
        let known: Vec<_> = t.file().versions.keys().cloned().collect();
        err(
            "version",
            format!(
                "version {version:?} of template {:?} does not exist; known: {}",
                i.template,
                known.join(", ")
            ),
        );
        return None;
    };
    Some((t, version, ver))
}

/// The tenant's relay account when its template asks for mail and the host runs a relay.
fn mail_of(
    i: &InstanceFile,
    t: &Template,
    host: &HostConfig,
    limits: super::mail::MailLimits,
) -> Option<super::model::Mail> {
    let m = t.file().mail.as_ref()?;
    host.mail.as_ref()?;
    // The subdomain: always the tenant's. A custom domain is allowed only once its proof is
    // on record, which this file cannot know; an app may send from one then.
    let from_domain = match &host.base_domain {
        Some(b) => format!("{}.{b}", i.tenant),
        None => primary_domain(i, host),
    };
    Some(super::model::Mail {
        user: i.tenant.clone(),
        password_secret: m.password_secret.clone(),
        from_domain,
        limits,
    })
}

/// The first custom domain, else the subdomain, else empty.
fn primary_domain(i: &InstanceFile, host: &HostConfig) -> String {
    i.domains
        .first()
        .cloned()
        .or_else(|| {
            host.base_domain
                .as_ref()
                .map(|b| format!("{}.{b}", i.tenant))
        })
        .unwrap_or_default()
}

fn plan_of(i: &InstanceFile, host: &HostConfig) -> Result<Plan, (String, String)> {
    let plan = i.plan.as_ref().or(host.default_plan.as_ref());
    let base = match plan {
        None => Plan::default(),
        Some(p) => host.plans.get(p).cloned().ok_or_else(|| {
            let known: Vec<_> = host.plans.keys().cloned().collect();
            (
                "plan".to_string(),
                format!(
                    "plan {p:?} is not defined in the host config; known: {}",
                    known.join(", ")
                ),
            )
        })?,
    };
    let Some(l) = &i.limits else { return Ok(base) };
    if l.backups.as_ref().is_some_and(|b| b.offsite_keep.is_some()) {
        let why = "is a plan's setting only: `berth backup prune` reads plans, not instance files";
        return Err(("limits.backups.offsite_keep".into(), why.into()));
    }
    let plan = base
        .overlay(l)
        .map_err(|e| (format!("limits.{}", e.field), e.message))?;
    if host.engine.is_swarm() && l.egress.is_some() && !plan.egress.is_empty() {
        return Err(("limits.egress".into(), super::host::SWARM_EGRESS.into()));
    }
    Ok(plan)
}

fn parameters_of(
    i: &InstanceFile,
    t: &Template,
    err: &mut impl FnMut(&str, String),
) -> BTreeMap<String, String> {
    let declared = &t.file().parameters;
    let mut out = BTreeMap::new();
    for (name, v) in &i.parameters {
        match declared.get(name) {
            None => {
                let known: Vec<_> = declared.keys().cloned().collect();
                err(
                    &format!("parameters.{name}"),
                    format!(
                        "unknown parameter; template {:?} has: {}",
                        i.template,
                        known.join(", ")
                    ),
                )
            }
            Some(p) => match params::check(p, v) {
                Ok(text) => {
                    out.insert(name.clone(), text);
                }
                Err(m) => err(&format!("parameters.{name}"), m.to_string()),
            },
        }
    }
    for (name, p) in declared {
        if out.contains_key(name) || i.parameters.contains_key(name) {
            continue;
        }
        match (&p.default, p.required) {
            (Some(d), _) => {
                out.insert(name.clone(), params::check(p, d).unwrap_or_default());
            }
            (None, true) => err(
                "parameters",
                format!("required parameter {name:?} is missing"),
            ),
            (None, false) => {
                out.insert(name.clone(), String::new());
            }
        }
    }
    out
}

fn database_of(
    i: &InstanceFile,
    t: &Template,
    host: &HostConfig,
) -> Result<Option<Database>, super::Invalid> {
    let Some(d) = &t.file().database else {
        return Ok(None);
    };
    let (host_name, name, user) = match d.mode {
        DatabaseMode::Sidecar => {
            let env = render::environment();
            let ctx = minijinja::context! { tenant => i.tenant.clone() };
            (
                d.service.clone().unwrap_or_default(),
                render::render(&env, &d.name, &ctx)?,
                render::render(&env, &d.user, &ctx)?,
            )
        }
        DatabaseMode::Shared => {
            let (key, _, alias) = shared_server(d.engine, &host.namespace);
            if host.shared_for(d.engine).is_none() {
                return Err(super::Invalid::NoSharedServer {
                    template: i.template.clone(),
                    engine: d.engine,
                    section: key,
                });
            }
            let n = shared_db_name(host, &i.tenant);
            (alias, n.clone(), n)
        }
    };
    let server_image = match d.mode {
        DatabaseMode::Shared => host.shared_for(d.engine).map(|s| s.image.clone()),
        DatabaseMode::Sidecar => None,
    };
    Ok(Some(Database {
        server_image,
        engine: d.engine,
        mode: d.mode,
        host: host_name,
        port: d.port,
        name,
        user,
        password_secret: d.password_secret.clone(),
    }))
}

/// Network alias of the host's shared database server.
/// Tenant names are DNS labels of at most this many characters (container and volume names
/// are built from them).
pub const MAX_TENANT_NAME: usize = 40;

pub fn is_tenant_name(t: &str) -> bool {
    is_dns_label(t) && t.len() <= MAX_TENANT_NAME
}

/// A tenant's role and database name on the shared server: `t_` and 24 hex digits of a keyed
/// digest, so another tenant listing roles or databases learns nothing of who is there.
pub fn shared_db_name(host: &HostConfig, tenant: &str) -> String {
    use sha2::Digest;
    let key = host.db_name_key.as_deref().unwrap_or_default();
    let d = sha2::Sha256::digest(format!("{key}\0{tenant}").as_bytes());
    format!("t_{}", &hex::encode(d)[..24])
}

/// The staging and set-aside databases of a MariaDB/MySQL database `live` during a restore:
/// `<live>_berth_new` and `<live>_berth_old`; None past the engine's 64-character names. A
/// shared server's databases are `t_` and 24 hex digits, so no tenant's is named so.
pub fn staging_db_names(live: &str) -> Option<(String, String)> {
    let (new, old) = (format!("{live}_berth_new"), format!("{live}_berth_old"));
    (old.len() <= 64).then_some((new, old))
}

pub fn shared_db_host(namespace: &str) -> String {
    format!("{namespace}-shared-postgres")
}

/// For a shared server of `engine`: its host config key, its service name (container
/// `<ns>-_host-<service>`), and its network alias on tenant networks.
pub fn shared_server(
    engine: crate::spec::template::DatabaseEngine,
    namespace: &str,
) -> (&'static str, &'static str, String) {
    match engine {
        crate::spec::template::DatabaseEngine::Postgres => {
            ("shared_database", "postgres", shared_db_host(namespace))
        }
        _ => (
            "shared_mariadb",
            "mariadb",
            format!("{namespace}-shared-mariadb"),
        ),
    }
}

fn context(
    i: &InstanceFile,
    version: &str,
    p: &BTreeMap<String, String>,
    db: Option<&Database>,
    mail: Option<&super::model::Mail>,
    t: &Template,
    host: &HostConfig,
) -> Value {
    let subdomain = host
        .base_domain
        .as_ref()
        .map(|b| format!("{}.{b}", i.tenant));
    let primary = primary_domain(i, host);
    let secrets: BTreeMap<String, String> = t
        .file()
        .secrets
        .keys()
        .map(|k| (k.clone(), format!("/run/secrets/{k}")))
        .collect();
    let db = db.map(|d| {
        minijinja::context! { host => d.host, port => d.port, name => d.name, user => d.user,
        password_file => format!("/run/secrets/{}", d.password_secret) }
    });
    let mail = mail.map(|m| {
        minijinja::context! { host => super::mail::relay_alias(&host.namespace),
        port => super::mail::RELAY_PORT, user => m.user, from_domain => m.from_domain,
        password_file => format!("/run/secrets/{}", m.password_secret) }
    });
    minijinja::context! {
        tenant => i.tenant, app => i.template, version => version, domains => i.domains,
        primary_domain => primary, subdomain => subdomain, params => p, db => db, secrets => secrets,
        mail => mail,
    }
}

impl PathMount {
    /// `example.com/acme` (one path segment) under one of the host's shared domains.
    pub fn parse(s: &str, host: &HostConfig) -> Result<PathMount, super::Invalid> {
        let (h, seg) = s
            .split_once('/')
            .ok_or_else(|| super::Invalid::NotPathMount(s.into()))?;
        let shared = host
            .proxy
            .as_ref()
            .map(|p| &p.shared_domains[..])
            .unwrap_or(&[]);
        if !shared.iter().any(|d| d == h) {
            return Err(super::Invalid::NotSharedDomain {
                host: h.into(),
                shared: if shared.is_empty() {
                    "none".to_string()
                } else {
                    shared.join(", ")
                },
            });
        }
        let seg = seg.trim_end_matches('/');
        if !is_dns_label(seg) {
            return Err(super::Invalid::BadSegment(seg.into()));
        }
        Ok(PathMount {
            host: h.to_string(),
            prefix: format!("/{seg}"),
        })
    }
}
