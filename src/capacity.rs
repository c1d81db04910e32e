//! The host's capacity as admission and `berth capacity` see it: memory measured with sysinfo
//! (the cgroup limit when the agent runs inside a smaller one than the machine), disk as the
//! filesystem holding the state dir, where tenant disk images live.

use crate::desired::{
    Desired, HostConfig,
    admission::{self, Resource},
};
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Measured {
    pub memory_total: u64,
    pub memory_used: u64,
    pub cpus: usize,
    /// The filesystem holding the state dir.
    pub disk: Option<crate::disk::Usage>,
}

pub fn measure(state_dir: &Path) -> Measured {
    let mut sys = sysinfo::System::new();
    sys.refresh_memory();
    let (total, used) = match sys.cgroup_limits() {
        Some(c) if c.total_memory > 0 && c.total_memory < sys.total_memory() => {
            (c.total_memory, c.total_memory.saturating_sub(c.free_memory))
        }
        _ => (sys.total_memory(), sys.used_memory()),
    };
    Measured {
        memory_total: total,
        memory_used: used,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        disk: crate::disk::usage_at(state_dir),
    }
}

/// What `berth capacity` shows: totals, what instances reserve, what is in use.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Report {
    /// The memory admission counts with (configured, or measured at start).
    pub memory_total: Option<u64>,
    pub memory_overcommit: f64,
    pub memory_allowed: Option<u64>,
    /// What admission counts: tenants that may sleep at their plan's `sleep_memory` share.
    pub memory_reserved: u64,
    /// Every instance's memory limit in full (what all would use awake at once).
    pub memory_limits: u64,
    pub memory_used: u64,
    /// The disk admission counts with (configured, or measured at start).
    pub disk_total: Option<u64>,
    pub disk_overcommit: f64,
    pub disk_allowed: Option<u64>,
    /// The sum of the instances' `disk` quotas.
    pub disk_reserved: u64,
    /// In use on the filesystem holding the state dir (tenant images are sparse).
    pub disk_used: Option<u64>,
    /// CPUs measured on this machine.
    pub cpus: usize,
    /// The CPUs admission counts with (configured, or counted at start).
    pub cpus_total: Option<f64>,
    pub cpu_overcommit: f64,
    pub cpus_allowed: Option<f64>,
    /// The sum of the instances' `cpus` limits (frozen ones at their last valid state).
    pub cpus_reserved: f64,
    pub instances: usize,
    /// Instances whose plan lets them sleep, and how many are asleep now.
    pub sleepers: usize,
    pub asleep: usize,
    /// Swarm mode: each node, and the tenants placed on it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeCapacity>,
}

/// One swarm node as placement sees it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct NodeCapacity {
    pub name: String,
    pub addr: String,
    pub ready: bool,
    /// Takes new tenants (not drained or paused).
    pub active: bool,
    pub memory_total: u64,
    pub cpus: f64,
    pub tenants: usize,
    /// The memory limits of the tenants placed on it, in full.
    pub memory_limits: u64,
}

/// Each node with the tenants `placed` (tenant → node) on it, their limits from `d`.
pub fn nodes(
    nodes: &[crate::runtime::NodeInfo],
    placed: &std::collections::BTreeMap<String, String>,
    d: &Desired,
) -> Vec<NodeCapacity> {
    nodes
        .iter()
        .map(|n| {
            let mine: Vec<&String> = placed
                .iter()
                .filter(|(_, node)| **node == n.name)
                .map(|(t, _)| t)
                .collect();
            NodeCapacity {
                name: n.name.clone(),
                addr: n.addr.to_string(),
                ready: n.ready,
                active: n.active,
                memory_total: n.memory,
                cpus: n.cpus,
                tenants: mine.len(),
                memory_limits: mine
                    .iter()
                    .filter_map(|t| d.instances.get(*t))
                    .map(|i| i.limits.memory)
                    .sum(),
            }
        })
        .collect()
}

pub fn report(host: &HostConfig, d: &Desired, now: Measured) -> Report {
    Report {
        memory_total: host.admission.memory_total,
        memory_overcommit: host.admission.memory_overcommit,
        memory_allowed: admission::allowed(Resource::Memory, host),
        memory_reserved: admission::reserved(Resource::Memory, host, d, None),
        memory_limits: d.instances.values().map(|i| i.limits.memory).sum(),
        memory_used: now.memory_used,
        disk_total: host.admission.disk_total,
        disk_overcommit: host.admission.disk_overcommit,
        disk_allowed: admission::allowed(Resource::Disk, host),
        disk_reserved: admission::reserved(Resource::Disk, host, d, None),
        disk_used: now.disk.map(|s| s.used),
        cpus: now.cpus,
        cpus_total: host.admission.cpu_total.map(|c| c as f64 / 1000.0),
        cpu_overcommit: host.admission.cpu_overcommit,
        cpus_allowed: admission::allowed(Resource::Cpu, host).map(|c| c as f64 / 1000.0),
        cpus_reserved: admission::reserved(Resource::Cpu, host, d, None) as f64 / 1000.0,
        instances: d.instances.len(),
        sleepers: d
            .instances
            .values()
            .filter(|i| i.sleep_after.is_some())
            .count(),
        asleep: 0,
        nodes: vec![],
    }
}
