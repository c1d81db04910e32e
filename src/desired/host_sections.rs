//! The host config's sections, each checked on its own; every error names its field.

use super::subnet::SubnetPool;
use super::{
    edge::{self, AcmeConfig, DomainsConfig, ProxyConfig},
    engine::Engine,
    host::{Admission, MetricsConfig, Plan, SWARM_EGRESS, SharedDatabase, is_dns_label},
    image_ref::RegistryAuth,
    mail::MailConfig,
};
use crate::spec::{
    host::{HostFile, SharedDatabaseFile},
    units,
};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

/// Where a section's field errors go.
type Report<'a> = &'a mut dyn FnMut(&str, String);

/// The address pool, the port range, the namespace and the resync interval.
pub(super) fn basics(h: &HostFile, err: Report) -> (Option<SubnetPool>, Option<Duration>) {
    let pool = SubnetPool::parse(&h.network.subnet_pool, h.network.subnet_prefix)
        .map_err(|m| err("network.subnet_pool", m.to_string()))
        .ok();
    if h.ports.first == 0 || h.ports.first > h.ports.last {
        err(
            "ports",
            format!(
                "first ({}) must be between 1 and last ({})",
                h.ports.first, h.ports.last
            ),
        );
    }
    let resync = units::parse_duration(&h.resync_interval)
        .map_err(String::from)
        .map_err(|m| err("resync_interval", m))
        .ok();
    if !is_dns_label(&h.namespace) || h.namespace.len() > 20 {
        err(
            "namespace",
            format!(
                "{:?} must be a DNS label of at most 20 characters",
                h.namespace
            ),
        );
    }
    (pool, resync)
}

/// `admission:`: overcommit ratios and the memory and disk the host offers.
pub(super) fn admission(h: &HostFile, err: Report) -> Admission {
    let mut admission = Admission::default();
    let ratios = [
        (
            "admission.memory_overcommit",
            h.admission.memory_overcommit,
            &mut admission.memory_overcommit,
        ),
        (
            "admission.disk_overcommit",
            h.admission.disk_overcommit,
            &mut admission.disk_overcommit,
        ),
        (
            "admission.cpu_overcommit",
            h.admission.cpu_overcommit,
            &mut admission.cpu_overcommit,
        ),
    ];
    for (field, given, into) in ratios {
        match given {
            Some(r) if r > 0.0 && r <= 100.0 => *into = r,
            Some(r) => err(field, format!("{r} is out of range (0 < ratio <= 100)")),
            None => {}
        }
    }
    let totals = [
        (
            "admission.memory",
            &h.admission.memory,
            &mut admission.memory_total,
        ),
        (
            "admission.disk",
            &h.admission.disk,
            &mut admission.disk_total,
        ),
    ];
    match h.admission.cpus {
        Some(c) if c > 0.0 && c <= 4096.0 => {
            admission.cpu_total = Some((c * 1000.0).round() as u64)
        }
        Some(c) => err(
            "admission.cpus",
            format!("{c} is out of range (0 < CPUs <= 4096)"),
        ),
        None => {}
    }
    for (field, given, into) in totals {
        if let Some(m) = given {
            match units::parse_bytes(m).map_err(String::from) {
                Ok(b) => *into = Some(b),
                Err(e) => err(field, e),
            }
        }
    }
    admission
}

/// `metrics:`: the listener and the sampling interval.
pub(super) fn metrics(h: &HostFile, err: Report) -> MetricsConfig {
    let mut metrics = MetricsConfig::default();
    match h.metrics.listen.as_deref() {
        None => {}
        Some("none") => metrics.listen = None,
        Some(l) => match l.parse() {
            Ok(a) => metrics.listen = Some(a),
            Err(_) => err(
                "metrics.listen",
                format!("{l:?} is not host:port (e.g. 127.0.0.1:9464) or none"),
            ),
        },
    }
    if let Some(i) = &h.metrics.interval {
        match units::parse_duration(i).map_err(String::from) {
            Ok(d) if d >= Duration::from_secs(1) && d <= Duration::from_secs(3600) => {
                metrics.interval = d
            }
            Ok(_) => err("metrics.interval", format!("{i} is out of range (1s..=1h)")),
            Err(e) => err("metrics.interval", e),
        }
    }
    metrics
}

/// `plans:` and `default_plan`.
pub(super) fn plans(h: &HostFile, engine: &Engine, err: Report) -> BTreeMap<String, Plan> {
    let mut plans = BTreeMap::new();
    for (name, lf) in &h.plans {
        match Plan::default().overlay(lf) {
            Ok(p) => {
                if engine.is_swarm() && !p.egress.is_empty() {
                    err(&format!("plans.{name}.egress"), SWARM_EGRESS.into());
                }
                plans.insert(name.clone(), p);
            }
            Err(e) => err(&format!("plans.{name}.{}", e.field), e.message),
        }
    }
    if let Some(p) = &h.default_plan
        && !plans.contains_key(p)
    {
        err(
            "default_plan",
            format!("plan {p:?} is not defined under plans"),
        );
    }
    plans
}

/// `shared_database:` and `shared_mariadb:` (none in swarm mode).
pub(super) fn shared_servers(
    h: &HostFile,
    engine: &Engine,
    err: Report,
) -> (Option<SharedDatabase>, Option<SharedDatabase>) {
    let mut shared = |key: &str, f: &Option<SharedDatabaseFile>| {
        f.as_ref().and_then(
            |s| match units::parse_bytes(&s.memory).map_err(String::from) {
                Ok(memory) => Some(SharedDatabase {
                    image: s.image.clone(),
                    memory,
                    connection_limit: s.connection_limit,
                }),
                Err(m) => {
                    err(&format!("{key}.memory"), m);
                    None
                }
            },
        )
    };
    let shared_database = shared("shared_database", &h.shared_database);
    let shared_mariadb = shared("shared_mariadb", &h.shared_mariadb);
    if engine.is_swarm() {
        for (field, set) in [
            ("shared_database", shared_database.is_some()),
            ("shared_mariadb", shared_mariadb.is_some()),
        ] {
            if set {
                err(
                    field,
                    "swarm mode has no shared database server (tenants on several nodes would \
                     share one node's); remove it, or use sidecar databases"
                        .into(),
                );
            }
        }
    }
    (shared_database, shared_mariadb)
}

/// What faces the outside: the proxy, ACME, domain proofs and the mail relay.
pub(super) struct EdgeParts {
    pub proxy: Option<ProxyConfig>,
    pub acme: Option<AcmeConfig>,
    pub domains: Option<DomainsConfig>,
    pub mail: Option<MailConfig>,
}

/// `proxy:`, `tls.acme`, `domains:` and `mail:` (no relay in swarm mode).
pub(super) fn edge(
    h: &HostFile,
    engine: &Engine,
    resolve: &dyn Fn(&Path) -> PathBuf,
    err: Report,
) -> EdgeParts {
    let mut edge_err = |errs: Vec<(String, String)>| {
        for (f, m) in errs {
            err(&f, m);
        }
    };
    let proxy = h
        .proxy
        .as_ref()
        .map(edge::build_proxy)
        .transpose()
        .map_err(&mut edge_err)
        .ok()
        .flatten();
    let acme = h
        .tls
        .acme
        .as_ref()
        .map(|a| edge::build_acme(a, resolve))
        .transpose()
        .map_err(&mut edge_err)
        .ok()
        .flatten();
    let domains = edge::build_domains(&h.domains).map_err(&mut edge_err).ok();
    let mail = h
        .mail
        .as_ref()
        .map(|m| super::mail::build(m, h.base_domain.as_deref(), &resolve))
        .transpose()
        .map_err(&mut edge_err)
        .ok()
        .flatten();
    if engine.is_swarm() && mail.is_some() {
        err(
            "mail",
            "swarm mode has no shared mail relay (tenants on several nodes would need one \
             node's); remove it"
                .into(),
        );
    }
    EdgeParts {
        proxy,
        acme,
        domains,
        mail,
    }
}

/// `registries:` with their password files resolved.
pub(super) fn registries(
    h: &HostFile,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> BTreeMap<String, RegistryAuth> {
    h.registries
        .iter()
        .map(|(host, r)| {
            let auth = RegistryAuth {
                username: r.username.clone(),
                password_file: resolve(&r.password_file),
            };
            (host.clone(), auth)
        })
        .collect()
}
