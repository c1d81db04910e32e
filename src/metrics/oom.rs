//! OOM kills per tenant and service, from engine events; a purged tenant's are forgotten, so a
//! new tenant of the same name starts from zero. Written at scrape time from one map, so the
//! family is described even before the first kill (alert rules can name it on any host).

use super::{ServiceLabels, encode};
use prometheus_client::{collector::Collector, encoding::DescriptorEncoder};
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

/// tenant → service → kills.
#[derive(Default, Clone)]
pub struct Ooms(Arc<Mutex<BTreeMap<String, BTreeMap<String, u64>>>>);

impl std::fmt::Debug for Ooms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ooms").finish_non_exhaustive()
    }
}

impl Ooms {
    pub fn count(&self, tenant: &str, service: &str) {
        *self
            .0
            .lock()
            .expect("oom lock")
            .entry(tenant.into())
            .or_default()
            .entry(service.into())
            .or_default() += 1;
    }

    /// Kills so far for `tenant`, all services together.
    pub fn total(&self, tenant: &str) -> u64 {
        let seen = self.0.lock().expect("oom lock");
        seen.get(tenant).map_or(0, |s| s.values().sum())
    }

    /// Forgets every tenant for which `keep` is false (purged ones).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.0.lock().expect("oom lock").retain(|t, _| keep(t));
    }
}

impl Collector for Ooms {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let rows: Vec<(ServiceLabels, f64)> = {
            let seen = self.0.lock().expect("oom lock");
            seen.iter()
                .flat_map(|(t, services)| {
                    services.iter().map(move |(s, n)| {
                        let l = ServiceLabels {
                            tenant: t.clone(),
                            service: s.clone(),
                        };
                        (l, *n as f64)
                    })
                })
                .collect()
        };
        encode::counters(
            &mut enc,
            "berth_container_oom_kills",
            "Processes of the tenant's service killed for passing its memory limit",
            None,
            rows,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(o: &Ooms) -> String {
        let mut reg = prometheus_client::registry::Registry::default();
        reg.register_collector(Box::new(o.clone()));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        text
    }

    #[test]
    fn a_purged_tenants_kills_are_forgotten_and_a_new_one_starts_at_zero() {
        let o = Ooms::default();
        assert!(
            scrape(&o).contains("# TYPE berth_container_oom_kills counter"),
            "described before any kill"
        );
        o.count("a", "app");
        o.count("a", "db");
        o.count("b", "app");
        o.retain(|t| t != "a");
        assert_eq!((o.total("a"), o.total("b")), (0, 1));
        let text = scrape(&o);
        assert!(
            !text.contains("tenant=\"a\"")
                && text.contains("berth_container_oom_kills_total{tenant=\"b\",service=\"app\"} 1"),
            "{text}"
        );
        o.count("a", "app");
        assert_eq!(o.total("a"), 1);
    }
}
