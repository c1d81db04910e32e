//! What to probe, derived from the desired state and one observation of the engine: each
//! tenant's running web container at its published port, and its running sidecar database at
//! its address on the tenant network.

use super::{Check, Target};
use crate::{
    desired::{Desired, Instance, model::Database},
    runtime::{Inventory, ObservedContainer, RunStatus, spec},
    spec::template::{DatabaseEngine, DatabaseMode},
    store::Layout,
};
use std::net::{Ipv4Addr, SocketAddr};

pub struct Scope<'a> {
    pub namespace: &'a str,
    pub layout: &'a Layout,
    pub base_domain: Option<&'a str>,
}

/// Every target of every desired tenant whose container runs now; `fast` names tenants being
/// changed (upgrades, restores), probed at the fast interval whatever their state.
pub fn targets(
    scope: &Scope<'_>,
    d: &Desired,
    inv: &Inventory,
    fast: &dyn Fn(&str) -> bool,
) -> Vec<Target> {
    // Indexed once: a pass at 1,000 tenants looks up 2,000 containers among 2,000.
    let by_name: std::collections::HashMap<&str, &ObservedContainer> = inv
        .containers
        .iter()
        .filter(|c| c.status == RunStatus::Running)
        .map(|c| (c.name.as_str(), c))
        .collect();
    let running = |tenant: &str, service: &str| {
        let name = spec::container_name(scope.namespace, tenant, service);
        by_name.get(name.as_str()).copied()
    };
    let mut out = Vec::new();
    for (t, inst) in &d.instances {
        out.extend(of_tenant(scope, inst, &running, fast(t)));
    }
    out
}

/// The targets of one tenant, whose running containers `running` finds by tenant and service.
pub fn of_tenant<'c>(
    scope: &Scope<'_>,
    inst: &Instance,
    running: &dyn Fn(&str, &str) -> Option<&'c ObservedContainer>,
    fast: bool,
) -> Vec<Target> {
    let t = &inst.tenant;
    let target = |c: &ObservedContainer, check| Target {
        container: c.name.clone(),
        tenant: t.clone(),
        service: c.service.clone(),
        check,
        fast,
    };
    let mut out = Vec::new();
    if let Some(c) = running(t, &inst.web.service)
        && let Some(addr) = c.web_addr(inst.web.port)
    {
        out.push(target(c, web_check(scope, inst, addr)));
    }
    if let Some(db) = inst
        .database
        .as_ref()
        .filter(|d| d.mode == DatabaseMode::Sidecar)
        && let Some(c) = running(t, &db.host)
    {
        match (c.ip, &c.node) {
            (Some(ip), _) => out.push(target(c, db_check(scope, t, db, ip))),
            (None, Some(_)) => out.push(target(c, db_exec_check(db))),
            (None, None) => {}
        }
    }
    out
}

fn web_check(scope: &Scope<'_>, inst: &Instance, addr: SocketAddr) -> Check {
    Check::Http {
        addr,
        path: inst.web.health_path.clone(),
        host: super::http::probe_host(inst, scope.base_domain),
    }
}

fn db_check(scope: &Scope<'_>, tenant: &str, db: &Database, ip: Ipv4Addr) -> Check {
    let addr = SocketAddr::from((ip, db.port));
    match db.engine {
        DatabaseEngine::Postgres => Check::Postgres {
            addr,
            user: db.user.clone(),
            database: db.name.clone(),
        },
        DatabaseEngine::Mariadb | DatabaseEngine::Mysql => Check::Mariadb {
            addr,
            user: db.user.clone(),
            password_file: scope.layout.secret(tenant, &db.password_secret),
        },
    }
}

/// The database's own readiness tool, run in its container on its node (no password: a
/// server that answers at all, even with "access denied", is up).
fn db_exec_check(db: &Database) -> Check {
    let port = db.port.to_string();
    let cmd = match db.engine {
        DatabaseEngine::Postgres => vec![
            "pg_isready",
            "-q",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            &db.user,
            "-d",
            &db.name,
        ]
        .into_iter()
        .map(String::from)
        .collect(),
        DatabaseEngine::Mariadb | DatabaseEngine::Mysql => vec![
            "sh".to_string(),
            "-c".into(),
            format!(
                "mariadb-admin --protocol=tcp -h 127.0.0.1 -P {port} ping >/dev/null 2>&1 \
                 || mysqladmin --protocol=tcp -h 127.0.0.1 -P {port} ping >/dev/null"
            ),
        ],
    };
    Check::Exec { cmd }
}

/// Whether berth probes `service` of `inst` (its web service, or its sidecar database).
pub fn probed(inst: &Instance, service: &str) -> bool {
    inst.web.service == service
        || inst
            .database
            .as_ref()
            .is_some_and(|d| d.mode == DatabaseMode::Sidecar && d.host == service)
}
