//! The agent's own process figures, under the names every Prometheus exporter uses.

use super::encode;
use prometheus_client::{collector::Collector, encoding::DescriptorEncoder, registry::Unit};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

#[derive(Debug, Default)]
pub struct Process;

impl Collector for Process {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let pid = Pid::from_u32(std::process::id());
        let mut sys = System::new();
        sys.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            false,
            ProcessRefreshKind::nothing().with_cpu().with_memory(),
        );
        let Some(p) = sys.process(pid) else {
            return Ok(());
        };
        let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
        let one = |v: f64| [(encode::NO_LABELS, v)];
        encode::counters(
            &mut enc,
            "process_cpu",
            "User and system CPU time of the agent",
            Some(Unit::Seconds),
            one(p.accumulated_cpu_time() as f64 / 1000.0),
        )?;
        encode::gauges(
            &mut enc,
            "process_resident_memory",
            "Resident memory of the agent",
            Some(Unit::Bytes),
            one(p.memory() as f64),
        )?;
        encode::gauges(
            &mut enc,
            "process_open_fds",
            "Open file descriptors of the agent",
            None,
            one(fds as f64),
        )?;
        encode::gauges(
            &mut enc,
            "process_start_time",
            "When the agent started",
            Some(Unit::Seconds),
            one(p.start_time() as f64),
        )
    }
}
