//! Egress policy enforced by the kernel: a tenant reaches its own network and the public
//! internet; link-local (cloud metadata), private and shared ranges, and the host's own
//! addresses are dropped, except what its plan allows (`limits.egress`). Rules are berth's own
//! chains, hooked first into Docker's `DOCKER-USER` and into `INPUT`, keyed by berth's subnet
//! pool (so a tenant is covered from its first packet, before any per-tenant rule exists) and
//! by each tenant's subnet for its allows. When the policy changes the chains are replaced in
//! one commit; otherwise they are compared with the kernel's at most every `RECHECK` (reading
//! them back costs a full ruleset load per chain with iptables-nft: tens of milliseconds at
//! 1,000 tenants, on every pass): missing or stale rules, a dockerd restart or a reboot are
//! repaired within that.

pub mod iptables;
pub mod policy;

use ipnet::Ipv4Net;
use policy::{Allow, Rules, TenantNet};
use serde::Serialize;
use std::{collections::BTreeMap, net::Ipv4Addr, sync::Mutex};

#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("{0}")]
    Command(String),
}

/// The kernel's packet filter, as far as berth's chains go.
pub trait Firewall: Send + Sync {
    /// Berth's rules as installed, or None when a chain or a jump into it is missing.
    fn current(&self) -> Result<Option<Rules>, EgressError>;
    /// Replaces berth's chains with `rules` and makes sure they are jumped to first.
    fn install(&self, rules: &Rules) -> Result<(), EgressError>;
}

/// Whether the policy is in force, for `berth status`, `/v1/agent` and `/metrics`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct EgressState {
    pub enforced: bool,
    /// Why it is not (no firewall on this host, or the last install failed).
    pub error: Option<String>,
    pub rules: usize,
}

/// One tenant's policy as `berth status` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct TenantEgress {
    pub enforced: bool,
    pub allowed: Vec<String>,
    pub blocked: Vec<String>,
    pub error: Option<String>,
}

/// How long rules found or made as wanted are trusted before they are read back again.
pub const RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

pub struct Egress {
    fw: Result<Box<dyn Firewall>, String>,
    /// The rules last found or made in the kernel, and when.
    verified: Mutex<Option<(Rules, std::time::Instant)>>,
    recheck: std::time::Duration,
    ns: String,
    pool: Ipv4Net,
    resolvers: Vec<Ipv4Addr>,
    state: Mutex<EgressState>,
}

impl Egress {
    pub fn new(
        fw: Result<Box<dyn Firewall>, String>,
        ns: &str,
        pool: Ipv4Net,
        resolvers: Vec<Ipv4Addr>,
    ) -> Egress {
        let error = fw.as_ref().err().cloned();
        Egress {
            fw,
            verified: Mutex::default(),
            recheck: RECHECK,
            ns: ns.into(),
            pool,
            resolvers,
            state: Mutex::new(EgressState {
                error,
                ..Default::default()
            }),
        }
    }

    /// Reads the kernel's rules back at most every `d` while the policy is unchanged.
    pub fn recheck_every(mut self, d: std::time::Duration) -> Egress {
        self.recheck = d;
        self
    }

    /// The host's resolvers from its resolv.conf files (systemd-resolved's upstream too).
    pub fn host_resolvers() -> Vec<Ipv4Addr> {
        let texts: Vec<String> = ["/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"]
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .collect();
        policy::resolvers(&texts)
    }

    /// Brings the kernel's rules to the policy for `subnets` (tenant → its subnet) with each
    /// tenant's `allows` (a tenant without an entry gets none). Blocking: runs iptables.
    pub fn sync(
        &self,
        subnets: &BTreeMap<String, Ipv4Net>,
        allows: &BTreeMap<String, Vec<Allow>>,
    ) -> EgressState {
        let Ok(fw) = &self.fw else {
            return self.state();
        };
        let tenants: Vec<TenantNet> = subnets
            .iter()
            .map(|(t, subnet)| TenantNet {
                tenant: t.clone(),
                subnet: *subnet,
                allow: allows.get(t).cloned().unwrap_or_default(),
            })
            .collect();
        let want = policy::rules(&self.ns, self.pool, &tenants, &self.resolvers);
        let mut verified = self.verified.lock().expect("egress verified lock");
        if verified
            .as_ref()
            .is_some_and(|(rules, at)| *rules == want && at.elapsed() < self.recheck)
        {
            return self.state();
        }
        let result = match fw.current() {
            Ok(Some(have)) if have == want => Ok(()),
            Ok(_) => fw.install(&want),
            Err(e) => Err(e),
        };
        *verified = result
            .is_ok()
            .then(|| (want.clone(), std::time::Instant::now()));
        drop(verified);
        let state = EgressState {
            enforced: result.is_ok(),
            error: result.err().map(|e| e.to_string()),
            rules: want.forward.len() + want.input.len(),
        };
        if let Some(e) = &state.error {
            tracing::error!(error = %e, "egress policy could not be installed");
        }
        *self.state.lock().expect("egress lock") = state.clone();
        state
    }

    /// True when this host has a firewall berth can program.
    pub fn enforceable(&self) -> bool {
        self.fw.is_ok()
    }

    /// The host's resolvers tenants may reach on port 53.
    pub fn resolvers(&self) -> &[Ipv4Addr] {
        &self.resolvers
    }

    pub fn state(&self) -> EgressState {
        self.state.lock().expect("egress lock").clone()
    }

    /// What `berth status T` says of the tenant's policy.
    pub fn view(&self, allow: &[Allow]) -> TenantEgress {
        let s = self.state();
        TenantEgress {
            enforced: s.enforced,
            allowed: allow.iter().map(ToString::to_string).collect(),
            blocked: blocked_names(),
            error: s.error,
        }
    }
}

/// The blocked ranges by name, and the host itself.
pub fn blocked_names() -> Vec<String> {
    let mut v: Vec<String> = policy::BLOCKED
        .iter()
        .map(|(net, name)| format!("{name} {net}"))
        .collect();
    v.push("the host's own addresses".into());
    v
}

/// An in-memory firewall for unit tests: records installs, can be told to fail.
#[derive(Default)]
pub struct FakeFirewall {
    pub installed: Mutex<Option<Rules>>,
    pub installs: std::sync::atomic::AtomicUsize,
    pub fail: std::sync::atomic::AtomicBool,
}

impl Firewall for std::sync::Arc<FakeFirewall> {
    fn current(&self) -> Result<Option<Rules>, EgressError> {
        Ok(self.installed.lock().expect("fake lock").clone())
    }

    fn install(&self, rules: &Rules) -> Result<(), EgressError> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.fail.load(SeqCst) {
            return Err(EgressError::Command("iptables-restore: refused".into()));
        }
        self.installs.fetch_add(1, SeqCst);
        *self.installed.lock().expect("fake lock") = Some(rules.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, atomic::Ordering::SeqCst};

    fn egress(fw: &Arc<FakeFirewall>) -> Egress {
        let pool = "10.240.0.0/16".parse().unwrap();
        Egress::new(Ok(Box::new(fw.clone())), "berth", pool, vec![])
    }

    fn subnets(list: &[(&str, &str)]) -> BTreeMap<String, Ipv4Net> {
        list.iter()
            .map(|(t, n)| (t.to_string(), n.parse().unwrap()))
            .collect()
    }

    #[test]
    fn rules_are_installed_once_and_again_only_when_the_kernel_lost_them() {
        let fw = Arc::new(FakeFirewall::default());
        let e = egress(&fw);
        let nets = subnets(&[("acme", "10.240.0.0/28")]);
        assert!(e.sync(&nets, &BTreeMap::new()).enforced);
        assert!(e.sync(&nets, &BTreeMap::new()).enforced);
        assert_eq!(
            fw.installs.load(SeqCst),
            1,
            "unchanged rules were written again"
        );
        *fw.installed.lock().unwrap() = None; // a reboot, or someone flushed the chain
        e.sync(&nets, &BTreeMap::new());
        assert_eq!(fw.installs.load(SeqCst), 1, "trusted until the recheck");
        let e = e.recheck_every(std::time::Duration::ZERO);
        e.sync(&nets, &BTreeMap::new());
        assert_eq!(fw.installs.load(SeqCst), 2, "read back and repaired");
        // A changed policy is installed at once, whatever the recheck.
        let e = e.recheck_every(std::time::Duration::from_secs(3600));
        let allow = vec![policy::parse_allow("192.168.9.9:25").unwrap()];
        e.sync(&nets, &BTreeMap::from([("acme".to_string(), allow)]));
        assert_eq!(fw.installs.load(SeqCst), 3);
    }

    #[test]
    fn a_tenants_allows_are_keyed_by_its_subnet_and_go_with_it() {
        let fw = Arc::new(FakeFirewall::default());
        let e = egress(&fw);
        let nets = subnets(&[("acme", "10.240.0.0/28")]);
        let allow = vec![policy::parse_allow("192.168.9.9:25").unwrap()];
        let allows = BTreeMap::from([("acme".to_string(), allow)]);
        e.sync(&nets, &allows);
        let has_allow = |fw: &FakeFirewall| {
            let r = fw.installed.lock().unwrap().clone().unwrap();
            r.forward.iter().any(|l| l.contains("192.168.9.9/32"))
        };
        assert!(has_allow(&fw));
        e.sync(&BTreeMap::new(), &allows); // purged: allocation gone
        assert!(!has_allow(&fw));
    }

    #[test]
    fn a_failed_install_is_reported_not_claimed() {
        let fw = Arc::new(FakeFirewall::default());
        fw.fail.store(true, SeqCst);
        let e = egress(&fw);
        let s = e.sync(&BTreeMap::new(), &BTreeMap::new());
        assert!(!s.enforced);
        assert_eq!(s.error.as_deref(), Some("iptables-restore: refused"));
        let none = Egress::new(
            Err("no iptables".into()),
            "b",
            "10.0.0.0/16".parse().unwrap(),
            vec![],
        );
        assert_eq!(none.view(&[]).error.as_deref(), Some("no iptables"));
        assert!(!none.view(&[]).enforced);
    }
}
