//! The proxy's per-tenant meters: requests by status class, latency, bytes, requests in
//! flight and requests refused by the tenant's limits. Each tenant's gate holds its own handles,
//! so a request costs a few atomic adds and no label lookup.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Registry, Unit},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabel {
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabels {
    pub tenant: String,
    /// 1xx … 5xx
    pub class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub tenant: String,
    /// `rate` or `connections`
    pub limit: String,
}

type Latency = Family<TenantLabel, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms … ~16 s
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

#[derive(Clone)]
pub struct ProxyMetrics {
    requests: Family<ClassLabels, Counter>,
    latency: Latency,
    received: Family<TenantLabel, Counter>,
    sent: Family<TenantLabel, Counter>,
    active: Family<TenantLabel, Gauge>,
    limited: Family<LimitLabels, Counter>,
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        ProxyMetrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            received: Family::default(),
            sent: Family::default(),
            active: Family::default(),
            limited: Family::default(),
        }
    }
}

/// One tenant's handles into the families above.
#[derive(Debug, Clone)]
pub struct TenantMeter {
    by_class: [Counter; 5],
    latency: Histogram,
    pub received: Counter,
    pub sent: Counter,
    pub active: Gauge,
    pub rate_limited: Counter,
    pub connection_limited: Counter,
}

impl TenantMeter {
    /// A meter registered nowhere (unit tests, gates made outside a proxy).
    pub fn detached() -> TenantMeter {
        ProxyMetrics::default().tenant("")
    }

    /// Responses counted so far, all classes.
    pub fn requests(&self) -> u64 {
        self.by_class.iter().map(Counter::get).sum()
    }

    /// Counts a response by its status class and the time to its headers.
    pub fn observe(&self, status: u16, seconds: f64) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].inc();
        self.latency.observe(seconds);
    }
}

impl ProxyMetrics {
    pub fn tenant(&self, tenant: &str) -> TenantMeter {
        let t = || TenantLabel {
            tenant: tenant.to_string(),
        };
        let class = |c: &str| {
            self.requests
                .get_or_create(&ClassLabels {
                    tenant: tenant.to_string(),
                    class: c.to_string(),
                })
                .clone()
        };
        let limited = |l: &str| {
            self.limited
                .get_or_create(&LimitLabels {
                    tenant: tenant.to_string(),
                    limit: l.to_string(),
                })
                .clone()
        };
        TenantMeter {
            by_class: ["1xx", "2xx", "3xx", "4xx", "5xx"].map(class),
            latency: self.latency.get_or_create(&t()).clone(),
            received: self.received.get_or_create(&t()).clone(),
            sent: self.sent.get_or_create(&t()).clone(),
            active: self.active.get_or_create(&t()).clone(),
            rate_limited: limited("rate"),
            connection_limited: limited("connections"),
        }
    }

    /// Forgets a removed tenant's series, so its labels leave the scrape.
    pub fn forget(&self, tenant: &str) {
        let t = TenantLabel {
            tenant: tenant.to_string(),
        };
        for c in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
            self.requests.remove(&ClassLabels {
                tenant: tenant.to_string(),
                class: c.to_string(),
            });
        }
        for l in ["rate", "connections"] {
            self.limited.remove(&LimitLabels {
                tenant: tenant.to_string(),
                limit: l.to_string(),
            });
        }
        self.latency.remove(&t);
        self.received.remove(&t);
        self.sent.remove(&t);
        self.active.remove(&t);
    }

    pub fn register(&self, r: &mut Registry) {
        r.register(
            "berth_proxy_requests",
            "Requests answered for the tenant, by status class",
            self.requests.clone(),
        );
        r.register_with_unit(
            "berth_proxy_request_duration",
            "Time from request to response headers",
            Unit::Seconds,
            self.latency.clone(),
        );
        r.register_with_unit(
            "berth_proxy_received",
            "Request body bytes received for the tenant",
            Unit::Bytes,
            self.received.clone(),
        );
        r.register_with_unit(
            "berth_proxy_sent",
            "Response body bytes sent for the tenant",
            Unit::Bytes,
            self.sent.clone(),
        );
        r.register(
            "berth_proxy_active_requests",
            "Requests (and WebSocket tunnels) in flight to the tenant's app",
            self.active.clone(),
        );
        r.register(
            "berth_proxy_limited_requests",
            "Requests refused with 429 by the tenant's rate or connection limit",
            self.limited.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_meter_counts_into_the_shared_families() {
        let m = ProxyMetrics::default();
        let a = m.tenant("acme");
        a.observe(204, 0.01);
        a.observe(503, 0.2);
        m.tenant("acme").observe(200, 0.01);
        let mut r = Registry::default();
        m.register(&mut r);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
        assert!(
            out.contains(r#"berth_proxy_requests_total{tenant="acme",class="2xx"} 2"#),
            "{out}"
        );
        assert!(out.contains(r#"berth_proxy_requests_total{tenant="acme",class="5xx"} 1"#));
        m.forget("acme");
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
        assert!(!out.contains("acme"), "{out}");
    }
}
