//! Admission against host capacity: an instance is added (or grown) only if the memory, the
//! disk and the CPUs all instances reserve stay within the host's memory, disk and CPUs times
//! the configured overcommit ratios.

use super::{Desired, HostConfig, Instance};
use crate::spec::template::DatabaseEngine;
use crate::spec::units::format_bytes;

/// A reservable resource: what one instance reserves of it and what the host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Memory,
    Disk,
    /// In thousandths of a CPU (millicores).
    Cpu,
}

impl Resource {
    pub const ALL: [Resource; 3] = [Resource::Memory, Resource::Disk, Resource::Cpu];

    fn name(self) -> &'static str {
        match self {
            Resource::Memory => "memory",
            Resource::Disk => "disk",
            Resource::Cpu => "CPU",
        }
    }

    /// An amount of this resource in words: `1.5g`, `2.5 CPUs`.
    pub fn show(self, v: u64) -> String {
        match self {
            Resource::Cpu if v == 1000 => "1 CPU".to_string(),
            Resource::Cpu => format!("{} CPUs", v as f64 / 1000.0),
            _ => format_bytes(v),
        }
    }

    /// What a tenant asks for, in words: `768m of memory`, `1.5 CPUs`.
    fn need(self, v: u64) -> String {
        match self {
            Resource::Cpu => self.show(v),
            _ => format!("{} of {}", self.show(v), self.name()),
        }
    }

    /// What `i` reserves: its memory limit (a tenant that may sleep: at its plan's
    /// `sleep_memory` share), its disk quota in full.
    pub fn of(self, i: &Instance) -> u64 {
        match self {
            Resource::Memory if i.sleep_after.is_some() => {
                (i.limits.memory as f64 * i.sleep_memory.unwrap_or(1.0)) as u64
            }
            Resource::Memory => i.limits.memory,
            Resource::Disk => i.quota.disk.unwrap_or(0),
            Resource::Cpu => (i.limits.cpus * 1000.0).round() as u64,
        }
    }

    /// What the host reserves beside instances for the shared server of `engine`: its memory.
    fn host_own(self, host: &HostConfig, engine: DatabaseEngine) -> u64 {
        match self {
            Resource::Memory => host.shared_for(engine).map_or(0, |s| s.memory),
            Resource::Disk | Resource::Cpu => 0,
        }
    }

    fn total_and_ratio(self, host: &HostConfig) -> (Option<u64>, f64) {
        let a = &host.admission;
        match self {
            Resource::Memory => (a.memory_total, a.memory_overcommit),
            Resource::Disk => (a.disk_total, a.disk_overcommit),
            Resource::Cpu => (a.cpu_total, a.cpu_overcommit),
        }
    }
}

/// The shared server the tenant's database lives on, as the engine it is configured for
/// (MySQL templates share MariaDB's server).
pub(super) fn uses_shared(i: &Instance) -> Option<DatabaseEngine> {
    i.database
        .as_ref()
        .filter(|d| d.mode == crate::spec::template::DatabaseMode::Shared)
        .map(|d| match d.engine {
            DatabaseEngine::Postgres => DatabaseEngine::Postgres,
            _ => DatabaseEngine::Mariadb,
        })
}

/// What every instance but `except` reserves of `r`, plus the host's own reservation while
/// any of them uses it (the shared database server runs only then).
pub fn reserved(r: Resource, host: &HostConfig, d: &Desired, except: Option<&str>) -> u64 {
    // A tenant whose file is frozen (invalid, or an edit not admitted) runs as it last was.
    let others = || {
        let frozen = d
            .last_valid
            .values()
            .filter(|i| !d.instances.contains_key(&i.tenant));
        d.instances
            .values()
            .chain(frozen)
            .filter(move |i| Some(i.tenant.as_str()) != except)
    };
    let instances: u64 = others().map(|i| r.of(i)).sum();
    let servers: std::collections::BTreeSet<DatabaseEngine> =
        others().filter_map(uses_shared).collect();
    instances
        + servers
            .into_iter()
            .map(|e| r.host_own(host, e))
            .sum::<u64>()
}

/// Why waking sleeping tenant `t` now would take the memory of the tenants awake past what the
/// host allows (admission counts a sleeper at its `sleep_memory` share; awake, it may use its
/// whole limit). Tenants awake count at their limit, sleeping and stopped ones at nothing, the
/// shared servers in use at theirs. None: the wake fits (or the host's memory is not known).
pub fn wake_refusal(
    host: &HostConfig,
    d: &Desired,
    asleep: &dyn Fn(&str) -> bool,
    t: &str,
) -> Option<String> {
    let allowed = allowed(Resource::Memory, host)?;
    let candidate = d.instances.get(t)?;
    let awake = || {
        d.instances.values().filter(|i| {
            i.tenant == t
                || (i.state == crate::spec::instance::RunState::Running && !asleep(&i.tenant))
        })
    };
    let tenants: u64 = awake().map(|i| i.limits.memory).sum();
    let servers: std::collections::BTreeSet<DatabaseEngine> =
        awake().filter_map(uses_shared).collect();
    let servers: u64 = servers
        .into_iter()
        .map(|e| Resource::Memory.host_own(host, e))
        .sum();
    let total = tenants + servers;
    (total > allowed).then(|| {
        format!(
            "not woken: the tenants awake would need {} of memory with it ({} its own), more \
             than the {} the host allows",
            format_bytes(total),
            format_bytes(candidate.limits.memory),
            format_bytes(allowed)
        )
    })
}

/// What instances may reserve of `r` in all, when the host's total is known.
pub fn allowed(r: Resource, host: &HostConfig) -> Option<u64> {
    let (total, ratio) = r.total_and_ratio(host);
    total.map(|t| (t as f64 * ratio) as u64)
}

/// Refuses `candidate` for each resource whose reservations it would take past what the host
/// allows, with the numbers that decided it; empty when it fits.
pub fn admit(host: &HostConfig, d: &Desired, candidate: &Instance) -> Vec<String> {
    Resource::ALL
        .into_iter()
        .filter_map(|r| refusal(r, host, d, candidate))
        .collect()
}

fn refusal(r: Resource, host: &HostConfig, d: &Desired, candidate: &Instance) -> Option<String> {
    let allowed = allowed(r, host)?;
    let wants = r.of(candidate);
    // Only adding or growing is refused: an edit that keeps the size stays possible on a host
    // that is over its allowance already (its memory was set lower since, say).
    let has = d
        .instances
        .get(&candidate.tenant)
        .or_else(|| d.last_valid.get(&candidate.tenant))
        .map_or(0, |i| r.of(i));
    let others = reserved(r, host, d, Some(&candidate.tenant));
    // The first tenant on the shared database server brings the server's reservation with it.
    let server = uses_shared(candidate);
    let server_up = d
        .instances
        .values()
        .any(|i| i.tenant != candidate.tenant && server.is_some() && uses_shared(i) == server);
    let wants = wants
        + match server {
            Some(e) if !server_up => r.host_own(host, e),
            _ => 0,
        };
    let total = others + wants;
    if wants <= has || total <= allowed {
        return None;
    }
    let (host_total, ratio) = r.total_and_ratio(host);
    Some(format!(
        "not admitted: {} needs {}; {} is reserved already, so {} in all, but this host allows {} ({} × overcommit {})",
        candidate.tenant,
        r.need(wants),
        r.show(others),
        r.show(total),
        r.show(allowed),
        r.show(host_total.unwrap_or(0)),
        ratio,
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
            ..Admission::default()
        };
        h
    }

    #[test]
    fn a_tenant_that_may_sleep_reserves_its_plans_share_of_memory_and_all_its_disk() {
        let h = host(Some(1 << 30), 1.0);
        let (d, _) = fleet(&[512 << 20]);
        let mut sleeper = fixtures::demo_instance("s1");
        sleeper.limits.memory = 1 << 30;
        sleeper.quota.disk = Some(1 << 30);
        assert!(
            !admit(&h, &d, &sleeper).is_empty(),
            "1g awake does not fit beside 512m"
        );
        sleeper.sleep_after = Some(std::time::Duration::from_secs(1800));
        sleeper.sleep_memory = Some(0.25);
        assert!(admit(&h, &d, &sleeper).is_empty(), "256m counted: fits");
        assert_eq!(Resource::Disk.of(&sleeper), 1 << 30);
        sleeper.sleep_memory = None;
        assert!(
            !admit(&h, &d, &sleeper).is_empty(),
            "no share set: counted in full"
        );
    }

    #[test]
    fn the_shared_server_is_reserved_only_while_a_tenant_uses_it() {
        let mut h = host(Some(1 << 30), 1.0);
        h.shared_database = Some(crate::desired::host::SharedDatabase {
            image: "x".into(),
            memory: 512 << 20,
            connection_limit: 5,
        });
        let (d, _) = fleet(&[256 << 20]);
        assert_eq!(reserved(Resource::Memory, &h, &d, None), 256 << 20);
        let mut shared = fixtures::demo_instance("s1");
        shared.limits.memory = 256 << 20;
        shared.database.as_mut().unwrap().mode = crate::spec::template::DatabaseMode::Shared;
        assert!(
            admit(&h, &d, &shared).is_empty(),
            "256m + 256m + the 512m server fits 1g"
        );
        let mut d2 = d.clone();
        d2.instances.insert("s1".into(), shared.clone());
        assert_eq!(reserved(Resource::Memory, &h, &d2, None), 1 << 30);
        let mut big = shared.clone();
        big.tenant = "s2".into();
        big.limits.memory = 1;
        d2.instances.insert("s2".into(), big);
        let once = (1u64 << 30) + 1;
        assert_eq!(
            reserved(Resource::Memory, &h, &d2, None),
            once,
            "the server is counted once"
        );
        shared.limits.memory = 257 << 20;
        let e = admit(&h, &d, &shared).join("");
        assert!(e.contains("needs 769m of memory"), "{e}");
    }

    #[test]
    fn each_shared_server_in_use_is_reserved_once() {
        let mut h = host(Some(4 << 30), 1.0);
        let server = |mb: u64| crate::desired::host::SharedDatabase {
            image: "x".into(),
            memory: mb << 20,
            connection_limit: 5,
        };
        h.shared_database = Some(server(512));
        h.shared_mariadb = Some(server(300));
        let (mut d, _) = fleet(&[]);
        let shared = |t: &str, engine| {
            let mut i = fixtures::demo_instance(t);
            i.limits.memory = 100 << 20;
            let db = i.database.as_mut().unwrap();
            db.mode = crate::spec::template::DatabaseMode::Shared;
            db.engine = engine;
            i
        };
        d.instances
            .insert("m1".into(), shared("m1", DatabaseEngine::Mariadb));
        assert_eq!(reserved(Resource::Memory, &h, &d, None), (100 + 300) << 20);
        d.instances
            .insert("m2".into(), shared("m2", DatabaseEngine::Mysql));
        assert_eq!(
            reserved(Resource::Memory, &h, &d, None),
            (200 + 300) << 20,
            "MySQL templates share MariaDB's server"
        );
        d.instances
            .insert("p1".into(), shared("p1", DatabaseEngine::Postgres));
        assert_eq!(
            reserved(Resource::Memory, &h, &d, None),
            (300 + 300 + 512) << 20
        );
    }

    #[test]
    fn an_instance_that_would_pass_capacity_is_refused_with_the_numbers() {
        let (d, _) = fleet(&[3 << 30, 4 << 30]);
        let mut new = fixtures::demo_instance("big");
        new.limits.memory = 2 << 30;
        let e = admit(&host(Some(8 << 30), 1.0), &d, &new).join("\n");
        assert!(e.contains("big needs 2g"), "{e}");
        assert!(e.contains("7g is reserved already, so 9g in all"), "{e}");
        assert!(e.contains("allows 8g (8g × overcommit 1)"), "{e}");
    }

    #[test]
    fn overcommit_and_unknown_capacity_admit_more() {
        let (d, _) = fleet(&[3 << 30, 4 << 30]);
        let mut new = fixtures::demo_instance("big");
        new.limits.memory = 2 << 30;
        assert!(admit(&host(Some(8 << 30), 1.5), &d, &new).is_empty());
        assert!(
            admit(&host(None, 1.0), &d, &new).is_empty(),
            "offline validation"
        );
    }

    #[test]
    fn growing_an_instance_counts_its_new_size_not_both() {
        let (d, v) = fleet(&[3 << 30, 4 << 30]);
        let mut grown = v[1].clone();
        grown.limits.memory = 5 << 30;
        assert!(admit(&host(Some(8 << 30), 1.0), &d, &grown).is_empty());
        grown.limits.memory = (5 << 30) + 1;
        assert!(!admit(&host(Some(8 << 30), 1.0), &d, &grown).is_empty());
    }

    fn with_disks(d: &mut Desired, disks: &[u64]) {
        for (i, b) in d.instances.values_mut().zip(disks) {
            i.quota.disk = Some(*b);
        }
    }

    fn disk_host(total: u64, ratio: f64) -> HostConfig {
        let mut h = host(Some(64 << 30), 1.0);
        h.admission.disk_total = Some(total);
        h.admission.disk_overcommit = ratio;
        h
    }

    #[test]
    fn a_disk_past_the_disks_capacity_is_refused_with_the_numbers() {
        let (mut d, _) = fleet(&[1 << 30, 1 << 30]);
        with_disks(&mut d, &[20 << 30, 30 << 30]);
        let mut new = fixtures::demo_instance("big");
        new.quota.disk = Some(60 << 30);
        let e = admit(&disk_host(100 << 30, 1.0), &d, &new);
        assert_eq!(
            e,
            vec![
                "not admitted: big needs 60g of disk; 50g is reserved already, so 110g in all, but this host allows 100g (100g × overcommit 1)"
            ]
        );
        assert!(admit(&disk_host(100 << 30, 1.2), &d, &new).is_empty());
    }

    #[test]
    fn an_instance_without_a_disk_is_admitted_even_on_a_full_disk() {
        let (mut d, _) = fleet(&[1 << 30]);
        with_disks(&mut d, &[200 << 30]);
        let new = fixtures::demo_instance("small");
        assert!(admit(&disk_host(100 << 30, 1.0), &d, &new).is_empty());
    }

    #[test]
    fn an_edit_that_does_not_grow_is_admitted_on_an_overfull_host() {
        let (mut d, v) = fleet(&[1 << 30, 1 << 30]);
        with_disks(&mut d, &[80 << 30, 80 << 30]);
        let same = d.instances[&v[1].tenant].clone();
        assert!(admit(&disk_host(100 << 30, 1.0), &d, &same).is_empty());
        let mut grown = same.clone();
        grown.quota.disk = Some((80 << 30) + 1);
        assert_eq!(admit(&disk_host(100 << 30, 1.0), &d, &grown).len(), 1);
    }

    #[test]
    fn memory_and_disk_refusals_are_both_reported() {
        let (mut d, _) = fleet(&[4 << 30]);
        with_disks(&mut d, &[80 << 30]);
        let mut new = fixtures::demo_instance("big");
        new.limits.memory = 8 << 30;
        new.quota.disk = Some(40 << 30);
        let mut h = disk_host(100 << 30, 1.0);
        h.admission.memory_total = Some(8 << 30);
        let e = admit(&h, &d, &new);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].contains("of memory") && e[1].contains("of disk"),
            "{e:?}"
        );
    }

    #[test]
    fn a_wake_that_would_take_the_awake_tenants_past_host_memory_is_refused() {
        let mut host = fixtures::host();
        host.admission.memory_total = Some(1 << 30);
        let mut d = Desired::default();
        for t in ["s1", "s2", "s3", "s4", "s5"] {
            let mut i = fixtures::demo_instance(t);
            i.limits.memory = 256 << 20;
            i.sleep_after = Some(std::time::Duration::from_secs(60));
            i.sleep_memory = Some(0.25);
            d.instances.insert(t.into(), i);
        }
        // Admitted: five sleepers at a quarter each. Awake, four fit in 1 GiB, five do not.
        assert!(admit(&host, &d, &d.instances["s5"]).is_empty());
        let asleep_of = |awake: &'static [&'static str]| move |t: &str| !awake.contains(&t);
        assert_eq!(
            wake_refusal(&host, &d, &asleep_of(&["s1", "s2"]), "s3"),
            None
        );
        let why = wake_refusal(&host, &d, &asleep_of(&["s1", "s2", "s3", "s4"]), "s5").unwrap();
        assert!(why.contains("1.3 GiB") || why.contains("1280"), "{why}");
        let mut unknown = host.clone();
        unknown.admission.memory_total = None;
        assert_eq!(wake_refusal(&unknown, &d, &|_| false, "s5"), None);
    }
}
