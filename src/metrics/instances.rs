//! Per-instance figures at scrape time: the last stats sweep per container, health and phase
//! per tenant, disk used against quota. Labels: tenant, app, version (and service, container).

use super::{encode, sweep::Sweep};
use crate::{
    desired::Desired,
    services::{Cx, Phase},
};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet},
    registry::Unit,
};
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ContainerLabels {
    pub tenant: String,
    pub app: String,
    pub version: String,
    pub service: String,
    /// Unique even while an upgrade runs a `-next` container beside the old one.
    pub container: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabels {
    pub tenant: String,
    pub app: String,
    pub version: String,
}

/// A tenant and the swarm node that holds it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    tenant: String,
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantPhaseLabels {
    tenant: String,
    phase: String,
}

pub struct Instances {
    pub cx: Cx,
    pub sweep: Arc<Sweep>,
}

impl std::fmt::Debug for Instances {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instances").finish_non_exhaustive()
    }
}

pub(super) fn instance_labels(d: &Desired, tenant: &str) -> InstanceLabels {
    let i = d.instances.get(tenant);
    InstanceLabels {
        tenant: tenant.to_string(),
        app: i.map(|i| i.template.clone()).unwrap_or_default(),
        version: i.map(|i| i.version.clone()).unwrap_or_default(),
    }
}

impl Instances {
    fn containers(&self, enc: &mut DescriptorEncoder, d: &Desired) -> std::fmt::Result {
        let snap = self.sweep.snapshot();
        let rows: Vec<(ContainerLabels, &crate::runtime::ContainerStats)> = snap
            .readings
            .iter()
            .map(|r| {
                let i = instance_labels(d, &r.container.tenant);
                let l = ContainerLabels {
                    tenant: i.tenant,
                    app: i.app,
                    version: i.version,
                    service: r.container.service.clone(),
                    container: r.container.name.clone(),
                };
                (l, &r.stats)
            })
            .collect();
        let col = |f: fn(&crate::runtime::ContainerStats) -> f64| {
            rows.iter().map(move |(l, s)| (l.clone(), f(s)))
        };
        encode::counters(
            enc,
            "berth_container_cpu",
            "CPU time used by the container",
            Some(Unit::Seconds),
            col(|s| s.cpu_seconds),
        )?;
        encode::gauges(
            enc,
            "berth_container_memory",
            "Memory in use (reclaimable page cache not counted)",
            Some(Unit::Bytes),
            col(|s| s.memory_bytes as f64),
        )?;
        encode::gauges(
            enc,
            "berth_container_memory_limit",
            "Memory limit (no swap beyond it)",
            Some(Unit::Bytes),
            col(|s| s.memory_limit as f64),
        )?;
        encode::gauges(
            enc,
            "berth_container_pids",
            "Processes and threads in the container",
            None,
            col(|s| s.pids as f64),
        )?;
        encode::counters(
            enc,
            "berth_container_network_receive",
            "Bytes received on the tenant's network",
            Some(Unit::Bytes),
            col(|s| s.rx_bytes as f64),
        )?;
        encode::counters(
            enc,
            "berth_container_network_transmit",
            "Bytes sent on the tenant's network",
            Some(Unit::Bytes),
            col(|s| s.tx_bytes as f64),
        )?;
        encode::counters(
            enc,
            "berth_container_restarts",
            "Times the engine restarted the container",
            None,
            col(|s| s.restarts as f64),
        )?;
        encode::gauges(
            enc,
            "berth_stats_sweep_timestamp",
            "When the container figures above were read (one sweep per interval)",
            Some(Unit::Seconds),
            [(encode::NO_LABELS, snap.at as f64)],
        )?;
        encode::gauges(
            enc,
            "berth_stats_sweep_duration",
            "How long the last sweep of container stats took",
            Some(Unit::Seconds),
            [(encode::NO_LABELS, snap.took_seconds)],
        )?;
        Ok(())
    }

    fn tenants(&self, enc: &mut DescriptorEncoder, d: &Desired) -> std::fmt::Result {
        let board = self.cx.passes.board();
        let up = board.instances.iter().map(|(t, s)| {
            (
                instance_labels(d, t),
                super::state::flag(s.phase == Phase::Running),
            )
        });
        encode::gauges(
            enc,
            "berth_instance_up",
            "1 when every container of the instance runs and none is unhealthy",
            None,
            up,
        )?;
        // Swarm mode: where each tenant is, and whether that node is up.
        let nodes = board.instances.iter().filter_map(|(t, s)| {
            let n = s.containers.iter().find_map(|c| c.node.as_ref())?;
            let labels = NodeLabels {
                tenant: t.clone(),
                node: n.name.clone(),
            };
            Some((labels, super::state::flag(n.ready)))
        });
        encode::gauges(
            enc,
            "berth_instance_node_ready",
            "Swarm mode: 1 while the node holding the tenant is ready, 0 when it is down",
            None,
            nodes,
        )?;
        // One row per tenant, its phase as a label (an alert tells asleep from failing).
        encode::gauges(
            enc,
            "berth_instance_phase",
            "1 for the tenant's phase now (running, asleep, starting, unhealthy, failing, invalid …)",
            None,
            board.instances.iter().map(|(t, s)| {
                let l = TenantPhaseLabels {
                    tenant: t.clone(),
                    phase: super::state::name_of(s.phase),
                };
                (l, 1.0)
            }),
        )?;
        let mut by_phase = std::collections::BTreeMap::<String, f64>::new();
        for s in board.instances.values() {
            *by_phase.entry(super::state::name_of(s.phase)).or_default() += 1.0;
        }
        encode::gauges(
            enc,
            "berth_reconcile_instances",
            "Instances by phase (running, starting, failing, invalid …)",
            None,
            by_phase
                .into_iter()
                .map(|(phase, n)| (PhaseLabel { phase }, n)),
        )?;
        let Ok(disks) = self.cx.svc.disks() else {
            return Ok(());
        };
        let usage: Vec<_> = disks
            .usage()
            .into_iter()
            .map(|(t, u)| (instance_labels(d, &t), u))
            .collect();
        encode::gauges(
            enc,
            "berth_instance_disk_used",
            "Bytes used on the tenant's own filesystem",
            Some(Unit::Bytes),
            usage.iter().map(|(l, u)| (l.clone(), u.used as f64)),
        )?;
        encode::gauges(
            enc,
            "berth_instance_disk_quota",
            "Size of the tenant's own filesystem",
            Some(Unit::Bytes),
            usage.iter().map(|(l, u)| (l.clone(), u.size as f64)),
        )?;
        encode::gauges(
            enc,
            "berth_instance_inodes_used",
            "Files and directories on the tenant's own filesystem",
            None,
            usage.iter().map(|(l, u)| (l.clone(), u.inodes_used as f64)),
        )?;
        encode::gauges(
            enc,
            "berth_instance_inodes",
            "Files and directories the tenant's own filesystem can hold",
            None,
            usage.iter().map(|(l, u)| (l.clone(), u.inodes as f64)),
        )
    }
}

impl Collector for Instances {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        // Labels for every row come from one view of the files.
        let d = self.cx.passes.desired();
        self.containers(&mut enc, &d)?;
        self.tenants(&mut enc, &d)
    }
}
