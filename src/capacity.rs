//! The host's capacity as admission and `berth capacity` see it, measured with sysinfo (the
//! cgroup limit when the agent runs inside a smaller one than the machine).

use crate::desired::{Desired, HostConfig, admission};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Measured {
    pub memory_total: u64,
    pub memory_used: u64,
    pub cpus: usize,
}

pub fn measure() -> Measured {
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
    }
}

/// What `berth capacity` shows: totals, what instances reserve, what is in use.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The memory admission counts with (configured, or measured at start).
    pub memory_total: Option<u64>,
    pub memory_overcommit: f64,
    pub memory_allowed: Option<u64>,
    pub memory_reserved: u64,
    pub memory_used: u64,
    pub cpus: usize,
    pub cpus_reserved: f64,
    pub instances: usize,
}

pub fn report(host: &HostConfig, d: &Desired, now: Measured) -> Report {
    Report {
        memory_total: host.admission.memory_total,
        memory_overcommit: host.admission.memory_overcommit,
        memory_allowed: admission::allowed_memory(host),
        memory_reserved: admission::reserved_memory(host, d, None),
        memory_used: now.memory_used,
        cpus: now.cpus,
        cpus_reserved: d.instances.values().fold(0.0, |a, i| a + i.limits.cpus),
        instances: d.instances.len(),
    }
}
