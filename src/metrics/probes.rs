//! berth's health probes at scrape time: up, last duration, probes and failures per target.

use super::encode;
use crate::{probe::ProbeStatus, runtime::Health, services::Services};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet},
    registry::Unit,
};
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabels {
    tenant: String,
    service: String,
    check: String,
}

pub struct Probes(pub Arc<Services>);

impl std::fmt::Debug for Probes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probes").finish_non_exhaustive()
    }
}

impl Collector for Probes {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let rows: Vec<(ProbeLabels, ProbeStatus)> = self
            .0
            .probes()
            .snapshot()
            .into_iter()
            .map(|s| {
                let l = ProbeLabels {
                    tenant: s.tenant.clone(),
                    service: s.service.clone(),
                    check: s.check.into(),
                };
                (l, s)
            })
            .collect();
        let col = |f: fn(&ProbeStatus) -> f64| rows.iter().map(move |(l, s)| (l.clone(), f(s)));
        let enc = &mut enc;
        encode::gauges(
            enc,
            "berth_probe_up",
            "1 when berth's probe finds the service healthy (0: starting or unhealthy)",
            None,
            col(|s| super::state::flag(s.health == Health::Healthy)),
        )?;
        encode::gauges(
            enc,
            "berth_probe_duration",
            "How long the latest probe took",
            Some(Unit::Seconds),
            col(|s| s.last_seconds),
        )?;
        encode::counters(
            enc,
            "berth_probe",
            "Probes run since the agent started or the container (re)started",
            None,
            col(|s| s.probes as f64),
        )?;
        encode::counters(
            enc,
            "berth_probe_failures",
            "Probes that failed (no answer in time, refused, wrong status or protocol)",
            None,
            col(|s| s.failures as f64),
        )
    }
}
