//! Writing scrape-time values (read from state, not counted here) as const gauges and counters.

use prometheus_client::{
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Unit,
};

/// One metric family of gauges, one row per label set (no rows: the family is still described).
pub fn gauges<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    rows: impl IntoIterator<Item = (L, f64)>,
) -> std::fmt::Result {
    family(enc, (name, help, unit), MetricType::Gauge, rows)
}

/// One metric family of counters whose totals are kept elsewhere (the engine, a job record).
pub fn counters<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    rows: impl IntoIterator<Item = (L, f64)>,
) -> std::fmt::Result {
    family(enc, (name, help, unit), MetricType::Counter, rows)
}

fn family<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    (name, help, unit): (&str, &str, Option<Unit>),
    kind: MetricType,
    rows: impl IntoIterator<Item = (L, f64)>,
) -> std::fmt::Result {
    let counter = matches!(kind, MetricType::Counter);
    let mut m = enc.encode_descriptor(name, help, unit.as_ref(), kind)?;
    for (labels, v) in rows {
        let e = m.encode_family(&labels)?;
        if counter {
            ConstCounter::new(v).encode(e)?;
        } else {
            ConstGauge::new(v).encode(e)?;
        }
    }
    Ok(())
}

/// The label set of a metric with no labels.
pub const NO_LABELS: [(&str, &str); 0] = [];
