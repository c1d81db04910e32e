//! OOM kills per tenant and service, from engine events; a purged tenant's are forgotten, so a
//! new tenant of the same name starts from zero.

use super::ServiceLabels;
use prometheus_client::metrics::{counter::Counter, family::Family};
use std::{collections::BTreeMap, sync::Mutex};

#[derive(Default)]
pub struct Ooms {
    pub family: Family<ServiceLabels, Counter>,
    /// tenant → service → kills, for `berth top` and for forgetting.
    seen: Mutex<BTreeMap<String, BTreeMap<String, u64>>>,
}

impl Ooms {
    pub fn count(&self, tenant: &str, service: &str) {
        self.family
            .get_or_create(&ServiceLabels {
                tenant: tenant.into(),
                service: service.into(),
            })
            .inc();
        *self
            .seen
            .lock()
            .expect("oom lock")
            .entry(tenant.into())
            .or_default()
            .entry(service.into())
            .or_default() += 1;
    }

    /// Kills so far for `tenant`, all services together.
    pub fn total(&self, tenant: &str) -> u64 {
        let seen = self.seen.lock().expect("oom lock");
        seen.get(tenant).map_or(0, |s| s.values().sum())
    }

    /// Forgets every tenant for which `keep` is false (purged ones).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut seen = self.seen.lock().expect("oom lock");
        seen.retain(|tenant, services| {
            if keep(tenant) {
                return true;
            }
            for service in services.keys() {
                self.family.remove(&ServiceLabels {
                    tenant: tenant.clone(),
                    service: service.clone(),
                });
            }
            false
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_purged_tenants_kills_are_forgotten_and_a_new_one_starts_at_zero() {
        let o = Ooms::default();
        o.count("a", "app");
        o.count("a", "db");
        o.count("b", "app");
        o.retain(|t| t != "a");
        assert_eq!((o.total("a"), o.total("b")), (0, 1));
        let mut reg = prometheus_client::registry::Registry::default();
        reg.register("oom", "x", o.family.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        assert!(
            !text.contains("tenant=\"a\"") && text.contains("tenant=\"b\""),
            "{text}"
        );
        o.count("a", "app");
        assert_eq!(o.total("a"), 1);
    }
}
