//! Admission against host capacity: an instance is added (or grown) only if the memory all
//! instances reserve stays within the host's memory times the configured overcommit ratio.

use super::{Desired, HostConfig, Instance};
use crate::spec::units::format_bytes;

/// Memory reserved by every instance but `except`, plus the shared database server's.
pub fn reserved_memory(host: &HostConfig, d: &Desired, except: Option<&str>) -> u64 {
    let instances: u64 = d
        .instances
        .values()
        .filter(|i| Some(i.tenant.as_str()) != except)
        .map(|i| i.limits.memory)
        .sum();
    instances + host.shared_database.as_ref().map_or(0, |s| s.memory)
}

/// The memory instances may reserve in all, when the host's memory is known.
pub fn allowed_memory(host: &HostConfig) -> Option<u64> {
    let a = &host.admission;
    a.memory_total
        .map(|t| (t as f64 * a.memory_overcommit) as u64)
}

/// Refuses `candidate` when it would take reservations past what the host allows, with the
/// numbers that decided it.
pub fn admit(host: &HostConfig, d: &Desired, candidate: &Instance) -> Result<(), String> {
    let Some(allowed) = allowed_memory(host) else {
        return Ok(());
    };
    let others = reserved_memory(host, d, Some(&candidate.tenant));
    let total = others + candidate.limits.memory;
    if total <= allowed {
        return Ok(());
    }
    Err(format!(
        "not admitted: {} needs {} of memory; {} is reserved already, so {} in all, but this host allows {} ({} × overcommit {})",
        candidate.tenant,
        format_bytes(candidate.limits.memory),
        format_bytes(others),
        format_bytes(total),
        format_bytes(allowed),
        format_bytes(host.admission.memory_total.unwrap_or(0)),
        host.admission.memory_overcommit,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{desired::host::Admission, fixtures};

    fn fleet(mems: &[u64]) -> (Desired, Vec<Instance>) {
        let mut d = Desired::default();
        let mut v = vec![];
        for (n, m) in mems.iter().enumerate() {
            let mut i = fixtures::demo_instance(&format!("t{n}"));
            i.limits.memory = *m;
            d.instances.insert(i.tenant.clone(), i.clone());
            v.push(i);
        }
        (d, v)
    }

    fn host(total: Option<u64>, ratio: f64) -> HostConfig {
        let mut h = fixtures::host();
        h.admission = Admission {
            memory_total: total,
            memory_overcommit: ratio,
        };
        h
    }

    #[test]
    fn an_instance_that_would_pass_capacity_is_refused_with_the_numbers() {
        let (d, _) = fleet(&[3 << 30, 4 << 30]);
        let mut new = fixtures::demo_instance("big");
        new.limits.memory = 2 << 30;
        let e = admit(&host(Some(8 << 30), 1.0), &d, &new).unwrap_err();
        assert!(e.contains("big needs 2g"), "{e}");
        assert!(e.contains("7g is reserved already, so 9g in all"), "{e}");
        assert!(e.contains("allows 8g (8g × overcommit 1)"), "{e}");
    }

    #[test]
    fn overcommit_and_unknown_capacity_admit_more() {
        let (d, _) = fleet(&[3 << 30, 4 << 30]);
        let mut new = fixtures::demo_instance("big");
        new.limits.memory = 2 << 30;
        assert!(admit(&host(Some(8 << 30), 1.5), &d, &new).is_ok());
        assert!(
            admit(&host(None, 1.0), &d, &new).is_ok(),
            "offline validation"
        );
    }

    #[test]
    fn growing_an_instance_counts_its_new_size_not_both() {
        let (d, v) = fleet(&[3 << 30, 4 << 30]);
        let mut grown = v[1].clone();
        grown.limits.memory = 5 << 30;
        assert!(admit(&host(Some(8 << 30), 1.0), &d, &grown).is_ok());
        grown.limits.memory = (5 << 30) + 1;
        assert!(admit(&host(Some(8 << 30), 1.0), &d, &grown).is_err());
    }
}
