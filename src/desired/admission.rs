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
    // A frozen tenant runs as it was last valid: it counts when awake too.
    let frozen = d
        .last_valid
        .values()
        .filter(|i| !d.instances.contains_key(&i.tenant));
    let all: Vec<&Instance> = d.instances.values().chain(frozen).collect();
    let awake = || {
        all.iter().copied().filter(|i| {
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
mod tests;
