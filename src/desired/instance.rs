//! Builds one validated `Instance` from an instance file, its template and the host config.

use super::{
    host::{HostConfig, is_dns_label},
    limits::Limits,
    model::{Database, Healthcheck, Instance, SecretSpec, Service, VolumeMount, Web},
    params, render,
    template::{Template, depends_on, parse_owner, parse_volume},
};
use crate::spec::{
    Loaded, SpecErrors,
    instance::InstanceFile,
    template::{DatabaseMode, Environment, ServiceFile, StringOrList},
    units,
};
use minijinja::Value;
use std::{collections::BTreeMap, time::Duration};

/// tmpfs options when a template gives none (Docker's own defaults, with a size cap).
pub const DEFAULT_TMPFS_OPTIONS: &str = "rw,noexec,nosuid,size=64m,mode=1777";

pub fn build(
    f: &Loaded<InstanceFile>,
    stem: &str,
    templates: &BTreeMap<String, Template>,
    host: &HostConfig,
) -> Result<Instance, SpecErrors> {
    let i = &f.value;
    let mut errors = SpecErrors::default();
    let mut errs = std::mem::take(&mut errors);
    let mut err = |field: &str, msg: String| errs.push(f.error_at(field, msg));
    if !is_dns_label(&i.tenant) || i.tenant.len() > 40 {
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
        return Err(errs);
    };
    let tf = t.file();
    let version = i
        .version
        .clone()
        .unwrap_or_else(|| t.default_version.clone());
    let Some(ver) = tf.versions.get(&version) else {
        let known: Vec<_> = tf.versions.keys().cloned().collect();
        err(
            "version",
            format!(
                "version {version:?} of template {:?} does not exist; known: {}",
                i.template,
                known.join(", ")
            ),
        );
        return Err(errs);
    };
    let limits = limits_of(i, host)
        .map_err(|(field, m)| err(&field, m))
        .unwrap_or_default();
    let parameters = parameters_of(i, t, &mut err);
    for (n, d) in i.domains.iter().enumerate() {
        if let Err(m) = check_domain(d) {
            err(&format!("domains.{n}"), m);
        } else if i.domains[..n].contains(d) {
            err(&format!("domains.{n}"), format!("{d:?} is listed twice"));
        }
    }
    let database = database_of(i, t, host)
        .map_err(|m| err("template", m))
        .ok()
        .flatten();
    errs.into_result()?;
    let mut err = |field: &str, msg: String| errors.push(f.error_at(field, msg));

    let ctx = context(i, &version, &parameters, database.as_ref(), t, host);
    let env = render::environment();
    let mut configs = BTreeMap::new();
    for (name, src) in &t.source.config_sources {
        match render::render(&env, src, &ctx) {
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
    let skip = match &database {
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
        match service(
            name,
            s,
            image,
            limits.part(s.resource_share.unwrap_or(1), total),
            &env,
            &ctx,
            tf,
        ) {
            Ok(svc) => services.push(svc),
            Err(m) => err("template", format!("service {name:?}: {m}")),
        }
    }
    errors.into_result()?;
    Ok(Instance {
        tenant: i.tenant.clone(),
        template: i.template.clone(),
        version,
        state: i.state,
        domains: i.domains.clone(),
        plan: i.plan.clone().or_else(|| host.default_plan.clone()),
        limits,
        parameters,
        web: Web {
            service: tf.web.service.clone(),
            port: tf.web.port,
            health_path: tf.web.health_path.clone(),
        },
        database,
        services,
        volumes: tf.volumes.keys().cloned().collect(),
        secrets: tf
            .secrets
            .iter()
            .map(|(k, s)| {
                (
                    k.clone(),
                    SecretSpec {
                        bytes: s.bytes,
                        encoding: s.encoding,
                    },
                )
            })
            .collect(),
        configs,
    })
}

fn limits_of(i: &InstanceFile, host: &HostConfig) -> Result<Limits, (String, String)> {
    let plan = i.plan.as_ref().or(host.default_plan.as_ref());
    let base = match plan {
        None => Limits::default(),
        Some(p) => *host.plans.get(p).ok_or_else(|| {
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
    match &i.limits {
        None => Ok(base),
        Some(l) => Limits::overlay(base, l).map_err(|e| (format!("limits.{}", e.field), e.message)),
    }
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
                Err(m) => err(&format!("parameters.{name}"), m),
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
) -> Result<Option<Database>, String> {
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
            if host.shared_database.is_none() {
                return Err(format!(
                    "template {:?} uses a shared database but the host config has no shared_database section",
                    i.template
                ));
            }
            let n = format!("t_{}", i.tenant.replace('-', "_"));
            (shared_db_host(&host.namespace), n.clone(), n)
        }
    };
    Ok(Some(Database {
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
pub fn shared_db_host(namespace: &str) -> String {
    format!("{namespace}-shared-postgres")
}

fn context(
    i: &InstanceFile,
    version: &str,
    p: &BTreeMap<String, String>,
    db: Option<&Database>,
    t: &Template,
    host: &HostConfig,
) -> Value {
    let subdomain = host
        .base_domain
        .as_ref()
        .map(|b| format!("{}.{b}", i.tenant));
    let primary = i
        .domains
        .first()
        .cloned()
        .or(subdomain.clone())
        .unwrap_or_default();
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
    minijinja::context! {
        tenant => i.tenant, app => i.template, version => version, domains => i.domains,
        primary_domain => primary, subdomain => subdomain, params => p, db => db, secrets => secrets,
    }
}

fn service(
    name: &str,
    s: &ServiceFile,
    image: String,
    limits: Limits,
    env: &minijinja::Environment<'_>,
    ctx: &Value,
    tf: &crate::spec::template::TemplateFile,
) -> Result<Service, String> {
    let mut environment = BTreeMap::new();
    for (k, v) in env_pairs(&s.environment)? {
        environment.insert(
            k.clone(),
            render::render(env, &v, ctx).map_err(|m| format!("environment {k}: {m}"))?,
        );
    }
    let volumes = s
        .volumes
        .iter()
        .map(|v| {
            parse_volume(v, &tf.volumes).map(|(volume, target, read_only)| VolumeMount {
                volume,
                target,
                read_only,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let tmpfs = s
        .tmpfs
        .iter()
        .map(|t| match t.split_once(':') {
            Some((p, o)) => (p.to_string(), o.to_string()),
            None => (t.clone(), DEFAULT_TMPFS_OPTIONS.to_string()),
        })
        .collect();
    let dur = |d: &Option<String>, def: Duration| {
        d.as_deref()
            .map(units::parse_duration)
            .transpose()
            .map(|v| v.unwrap_or(def))
    };
    let healthcheck = match &s.healthcheck {
        None => None,
        Some(h) if h.disable => Some(Healthcheck {
            test: vec!["NONE".into()],
            interval: Duration::ZERO,
            timeout: Duration::ZERO,
            retries: 0,
            start_period: Duration::ZERO,
        }),
        Some(h) => Some(Healthcheck {
            test: match &h.test {
                Some(StringOrList::List(l)) => l.clone(),
                Some(StringOrList::String(s)) => vec!["CMD-SHELL".into(), s.clone()],
                None => return Err("healthcheck needs a test".into()),
            },
            interval: dur(&h.interval, Duration::from_secs(10))?,
            timeout: dur(&h.timeout, Duration::from_secs(5))?,
            retries: h.retries.unwrap_or(3),
            start_period: dur(&h.start_period, Duration::ZERO)?,
        }),
    };
    Ok(Service {
        name: name.to_string(),
        image,
        command: s.command.as_ref().map(words),
        entrypoint: s.entrypoint.as_ref().map(words),
        environment,
        volumes,
        tmpfs,
        healthcheck,
        user: s.user.clone(),
        file_owner: parse_owner(s.user.as_deref()).unwrap_or((0, 0)),
        read_only: s.read_only,
        cap_add: s
            .cap_add
            .iter()
            .map(|c| c.trim_start_matches("CAP_").to_string())
            .collect(),
        depends_on: depends_on(s)
            .into_iter()
            .filter(|d| tf.services.contains_key(d))
            .collect(),
        working_dir: s.working_dir.clone(),
        stop_grace: dur(&s.stop_grace_period, Duration::from_secs(10)).ok(),
        secrets: s.secrets.clone(),
        configs: s
            .configs
            .iter()
            .map(|c| (c.source.clone(), c.target.clone()))
            .collect(),
        limits,
    })
}

fn env_pairs(e: &Option<Environment>) -> Result<Vec<(String, String)>, String> {
    let scalar = |v: &serde_yaml::Value| match v {
        serde_yaml::Value::String(s) => Ok(s.clone()),
        serde_yaml::Value::Number(n) => Ok(n.to_string()),
        serde_yaml::Value::Bool(b) => Ok(b.to_string()),
        _ => Err("environment values must be text, numbers or booleans".to_string()),
    };
    match e {
        None => Ok(vec![]),
        Some(Environment::Map(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Some(v) => Ok((k.clone(), scalar(v)?)),
                // Compose would copy the variable from the host: a leak path between host and tenant.
                None => Err(format!(
                    "environment {k} has no value (host environment is not passed through)"
                )),
            })
            .collect(),
        Some(Environment::List(l)) => l
            .iter()
            .map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .ok_or(format!("environment entry {kv:?} is not KEY=value"))
            })
            .collect(),
    }
}

/// Splits a Compose string command into words, honouring single and double quotes.
pub fn words(c: &StringOrList) -> Vec<String> {
    let s = match c {
        StringOrList::List(l) => return l.clone(),
        StringOrList::String(s) => s,
    };
    let (mut out, mut cur, mut quote, mut any) = (Vec::new(), String::new(), None, false);
    for ch in s.chars() {
        match (quote, ch) {
            (None, '\'' | '"') => (quote, any) = (Some(ch), true),
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (_, c) => (cur, any) = (cur + &c.to_string(), true),
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// A lowercase host name of DNS labels with at least one dot.
pub fn check_domain(d: &str) -> Result<(), String> {
    let ok = d.len() <= 253 && d.contains('.') && d.split('.').all(is_dns_label);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{d:?} is not a valid domain name (lowercase labels separated by dots)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_string_commands_split_like_a_shell_would() {
        let w = words(&StringOrList::String(r#"sh -c 'echo "hi there"' x"#.into()));
        assert_eq!(w, vec!["sh", "-c", r#"echo "hi there""#, "x"]);
    }

    #[test]
    fn domains_are_lowercase_dotted_labels() {
        assert!(check_domain("acme.example.com").is_ok());
        assert!(check_domain("Acme.example.com").is_err());
        assert!(check_domain("localhost").is_err());
    }
}
