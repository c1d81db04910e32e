//! The figures `berth top` shows: per tenant, the last stats sweep summed over its containers,
//! OOM kills, disk use and the proxy's counters.

use super::Metrics;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct TenantTop {
    pub tenant: String,
    pub app: String,
    pub version: String,
    pub phase: String,
    pub cpu_seconds: f64,
    pub memory: u64,
    pub memory_limit: u64,
    pub pids: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub restarts: u64,
    pub oom_kills: u64,
    pub disk_used: Option<u64>,
    pub disk_quota: Option<u64>,
    pub requests: u64,
    pub active: u64,
    pub limited: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Top {
    /// Unix seconds of the stats sweep the figures come from.
    pub at: u64,
    pub sweep_seconds: f64,
    pub disk_quotas: String,
    pub tenants: Vec<TenantTop>,
}

impl Metrics {
    pub fn top(&self) -> Top {
        let board = self.cx.passes.board();
        let desired = self.cx.passes.desired();
        let snap = self.sweep.snapshot();
        let disks: BTreeMap<String, crate::disk::Usage> = self
            .cx
            .svc
            .disks()
            .map(|d| d.usage().into_iter().collect())
            .unwrap_or_default();
        let mut rows = BTreeMap::<String, TenantTop>::new();
        for (t, s) in &board.instances {
            let labels = super::instances::instance_labels(&desired, t);
            let gate = self.proxy.as_ref().and_then(|p| p.gate(t));
            rows.insert(
                t.clone(),
                TenantTop {
                    tenant: labels.tenant,
                    app: labels.app,
                    version: labels.version,
                    phase: super::state::name_of(s.phase),
                    oom_kills: self.oom_kills(t),
                    disk_used: disks.get(t).map(|u| u.used),
                    disk_quota: disks.get(t).map(|u| u.size),
                    requests: gate.as_ref().map_or(0, |g| g.meter.requests()),
                    active: gate
                        .as_ref()
                        .map_or(0, |g| g.meter.active.get().max(0) as u64),
                    limited: gate.as_ref().map_or(0, |g| {
                        g.meter.rate_limited.get() + g.meter.connection_limited.get()
                    }),
                    ..Default::default()
                },
            );
        }
        for r in &snap.readings {
            if let Some(row) = rows.get_mut(&r.container.tenant) {
                let s = &r.stats;
                row.cpu_seconds += s.cpu_seconds;
                row.memory += s.memory_bytes;
                row.memory_limit += s.memory_limit;
                row.pids += s.pids;
                row.rx_bytes += s.rx_bytes;
                row.tx_bytes += s.tx_bytes;
                row.restarts += s.restarts;
            }
        }
        Top {
            at: snap.at,
            sweep_seconds: snap.took_seconds,
            disk_quotas: self.cx.svc.disk_quotas(),
            tenants: rows.into_values().collect(),
        }
    }
}
