//! From desired state to the edge (the reconciler drives the proxy as it drives the engine): each tenant's routes (subdomain, verified custom domains,
//! aliases, path mounts, target port, maintenance) and the domains that need certificates.

use super::{Board, Phase};
use crate::{
    desired::{Desired, HostConfig},
    proxy::TenantRoutes,
    spec::instance::RunState,
};
use std::collections::BTreeMap;

/// Tenant name used for certificates of the provider's own shared domains.
pub const SHARED_OWNER: &str = "_shared";

pub struct Edge {
    pub tenants: Vec<TenantRoutes>,
    /// Domain → tenant, for every name the TLS listener must answer.
    pub cert_domains: BTreeMap<String, String>,
}

impl Edge {
    /// A verify's scratch tenant is berth's own check, not a site: no route and no
    /// certificate, so a verify never spends the ACME order budget and a restored copy of a
    /// tenant's data is never on the web (the verify probes its container directly).
    pub fn drop_scratch(&mut self, scratch: &std::collections::BTreeSet<String>) {
        self.tenants.retain(|r| !scratch.contains(&r.tenant));
        self.cert_domains.retain(|_, t| !scratch.contains(t));
    }
}

/// The tenants a verify made (each marked in the layout's scratch directory).
fn scratch_tenants(layout: &crate::store::Layout) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(layout.scratch_dir())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect()
}

/// `verified(domain, tenant)` says whether a custom domain's proof is on record for the tenant;
/// `dozing(tenant)` whether it is asleep or waking (its gate holds requests until it is up, so
/// containers seen still starting are no reason for the maintenance page).
pub fn edge(
    desired: &Desired,
    board: &Board,
    host: &HostConfig,
    verified: &dyn Fn(&str, &str) -> bool,
    dozing: &dyn Fn(&str) -> bool,
) -> Edge {
    let mut tenants = Vec::new();
    let mut cert_domains = BTreeMap::new();
    // A frozen tenant (broken file or template) keeps the routes of its last valid state.
    for (t, i) in desired.instances.iter().chain(&desired.last_valid) {
        let status = board.instances.get(t);
        let provisioning = !dozing(t)
            && status.is_none_or(|s| matches!(s.phase, Phase::Provisioning | Phase::Pulling));
        let target = status.and_then(|s| s.address);
        let mut hosts: Vec<String> = i
            .domains
            .iter()
            .filter(|d| verified(d, t))
            .cloned()
            .collect();
        if let Some(base) = &host.base_domain {
            hosts.push(format!("{t}.{base}"));
        }
        let aliases: Vec<String> = i
            .aliases
            .iter()
            .filter(|d| verified(d, t))
            .cloned()
            .collect();
        let mounts = i
            .paths
            .iter()
            .map(|m| {
                (
                    m.host.clone(),
                    m.prefix.trim_start_matches('/').to_string(),
                    i.web.strip_prefix,
                )
            })
            .collect::<Vec<_>>();
        for d in hosts.iter().chain(&aliases) {
            cert_domains.insert(d.clone(), t.clone());
        }
        for (h, _, _) in &mounts {
            cert_domains.insert(h.clone(), SHARED_OWNER.to_string());
        }
        tenants.push(TenantRoutes {
            tenant: t.clone(),
            target,
            maintenance: i.state != RunState::Running || provisioning,
            hosts,
            aliases,
            mounts,
            pinned: false,
            quota: i.quota.edge,
        });
    }
    Edge {
        tenants,
        cert_domains,
    }
}

/// One rebuild from the controller's current desired state and board.
pub fn refresh(
    ctl: &super::Controller,
    proxy: &crate::proxy::Proxy,
    certs: &std::sync::Arc<crate::certs::CertManager>,
    book: &crate::domains::DomainBook,
) {
    let verified = |d: &str, t: &str| book.bound_to(d).as_deref() == Some(t);
    let dozing = |t: &str| ctl.services().sleep().is_dozing(t);
    let mut e = edge(&ctl.desired(), &ctl.board(), ctl.host(), &verified, &dozing);
    e.drop_scratch(&scratch_tenants(ctl.services().layout()));
    for t in &mut e.tenants {
        // Held by an upgrade, or asleep/waking: the upgrader or the sleeper owns the gate.
        t.pinned = ctl.is_held(&t.tenant) || dozing(&t.tenant);
    }
    certs.set_domains(e.cert_domains);
    proxy.apply(&e.tenants);
}

/// Rebuilds routes and the certificate set after every reconcile pass (and domain proof):
/// certificates first, so a newly routed host already has one.
pub async fn run(
    ctl: std::sync::Arc<super::Controller>,
    proxy: std::sync::Arc<crate::proxy::Proxy>,
    certs: std::sync::Arc<crate::certs::CertManager>,
    book: std::sync::Arc<crate::domains::DomainBook>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut passes = ctl.subscribe();
    loop {
        refresh(&ctl, &proxy, &certs, &book);
        tokio::select! {
            r = passes.changed() => if r.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn at(port: u16) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([10, 240, 0, 14], port))
    }

    fn world(state: RunState, phase: Phase) -> (Desired, Board, HostConfig) {
        let host = fixtures::host();
        let mut i = fixtures::demo_instance("acme");
        i.domains = vec!["acme.example.org".into(), "unproven.example.org".into()];
        i.aliases = vec!["www.acme.example.org".into()];
        i.state = state;
        let mut d = Desired::default();
        d.instances.insert("acme".into(), i);
        let mut b = Board::default();
        b.instances.insert(
            "acme".into(),
            crate::reconcile::status::bare("acme", phase, None, Some(at(20001)), vec![]),
        );
        (d, b, host)
    }

    fn proven(d: &str, _: &str) -> bool {
        !d.starts_with("unproven")
    }

    #[test]
    fn only_verified_custom_domains_are_routed_and_the_subdomain_always_is() {
        let (d, b, host) = world(RunState::Running, Phase::Running);
        let e = edge(&d, &b, &host, &proven, &|_| false);
        let t = &e.tenants[0];
        let sub = format!("acme.{}", host.base_domain.clone().unwrap());
        assert_eq!(t.hosts, vec!["acme.example.org".to_string(), sub.clone()]);
        assert_eq!(t.aliases, vec!["www.acme.example.org".to_string()]);
        assert_eq!(t.target, Some(at(20001)));
        assert!(!t.maintenance);
        assert!(e.cert_domains.contains_key(&sub));
        assert!(!e.cert_domains.contains_key("unproven.example.org"));
    }

    #[test]
    fn stopped_suspended_and_provisioning_tenants_get_the_maintenance_page() {
        for (state, phase, maintenance) in [
            (RunState::Running, Phase::Running, false),
            (RunState::Running, Phase::Starting, false),
            (RunState::Running, Phase::Provisioning, true),
            (RunState::Stopped, Phase::Stopped, true),
            (RunState::Suspended, Phase::Suspended, true),
        ] {
            let (d, b, host) = world(state, phase);
            assert_eq!(
                edge(&d, &b, &host, &proven, &|_| false).tenants[0].maintenance,
                maintenance,
                "{state:?} {phase:?}"
            );
        }
    }

    #[test]
    fn a_waking_tenant_seen_with_its_containers_still_starting_is_not_in_maintenance() {
        let (d, b, host) = world(RunState::Running, Phase::Provisioning);
        let e = edge(&d, &b, &host, &proven, &|t| t == "acme");
        assert!(!e.tenants[0].maintenance, "its gate holds the requests");
        let (d, b, host) = world(RunState::Stopped, Phase::Provisioning);
        let e = edge(&d, &b, &host, &proven, &|t| t == "acme");
        assert!(e.tenants[0].maintenance, "stopped by its operator");
    }

    #[test]
    fn a_verifys_scratch_tenant_gets_no_route_and_no_certificate() {
        let (mut d, mut b, host) = world(RunState::Running, Phase::Running);
        let scratch = fixtures::demo_instance("verify-1a2b3c4d");
        d.instances.insert("verify-1a2b3c4d".into(), scratch);
        b.instances.insert(
            "verify-1a2b3c4d".into(),
            crate::reconcile::status::bare(
                "verify-1a2b3c4d",
                Phase::Running,
                None,
                Some(at(20002)),
                vec![],
            ),
        );
        let mut e = edge(&d, &b, &host, &proven, &|_| false);
        assert_eq!(e.tenants.len(), 2);
        e.drop_scratch(&["verify-1a2b3c4d".to_string()].into());
        assert_eq!(e.tenants.len(), 1);
        assert_eq!(e.tenants[0].tenant, "acme");
        assert!(
            e.cert_domains.values().all(|t| t == "acme"),
            "{:?}",
            e.cert_domains
        );
    }
}
