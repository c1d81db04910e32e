//! Prometheus metrics: one registry holding the proxy's per-tenant meters, event counters
//! (OOM kills, reconcile passes) and collectors that read state at scrape time; served on its
//! own listener, OpenMetrics or classic text by the scraper's `Accept`.

pub mod encode;
pub mod instances;
pub mod oom;
pub mod probes;
pub mod process;

pub mod state;
pub mod sweep;
pub mod text;
pub mod top;

use crate::{certs::CertManager, runtime::EngineEvent, services::Cx, upgrade::Fleet};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Registry, Unit},
};
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering::SeqCst},
};

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub tenant: String,
    pub service: String,
}

/// Where the figures come from.
pub struct Sources {
    pub cx: Cx,
    pub fleet: Fleet,
    pub proxy: Option<Arc<crate::proxy::Proxy>>,
    pub certs: Option<Arc<CertManager>>,
    pub sleep: crate::sleep::SleepMeters,
    pub mail: Option<Arc<crate::mail::Mail>>,
}

pub struct Metrics {
    registry: Registry,
    cx: Cx,
    proxy: Option<Arc<crate::proxy::Proxy>>,
    pub sweep: Arc<sweep::Sweep>,
    ooms: oom::Ooms,
    passes: Histogram,
    pass_failures: Counter,
    last_pass: AtomicU64,
}

impl Metrics {
    pub fn new(s: Sources) -> Arc<Metrics> {
        let mut registry = Registry::default();
        let sweep = Arc::new(sweep::Sweep::default());
        let ooms = oom::Ooms::default();
        registry.register_collector(Box::new(ooms.clone()));
        let passes = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register_with_unit(
            "berth_reconcile_pass_duration",
            "Time of each reconcile pass (observe, plan, apply)",
            Unit::Seconds,
            passes.clone(),
        );
        let pass_failures = Counter::default();
        registry.register(
            "berth_reconcile_errors",
            "Tenant applies that failed (each is retried with backoff)",
            pass_failures.clone(),
        );
        if let Some(p) = &s.proxy {
            p.metrics.register(&mut registry);
        }
        if let Some(m) = &s.mail {
            m.register(&mut registry);
        }
        registry.register(
            "berth_tenants_asleep",
            "Tenants asleep (containers stopped while idle)",
            s.sleep.asleep.clone(),
        );
        registry.register(
            "berth_wakes",
            "Sleeping tenants woken by a request and found healthy",
            s.sleep.wakes.clone(),
        );
        registry.register(
            "berth_wakes_queued",
            "Wakes waiting for one of the host's proxy.max_wakes turns",
            s.sleep.wakes_queued.clone(),
        );
        registry.register(
            "berth_wakes_refused",
            "Wakes refused: the tenants awake would need more memory than the host allows",
            s.sleep.refused_wakes.clone(),
        );
        registry.register(
            "berth_wakes_client_limited",
            "Requests to sleeping tenants refused (429): their client passed proxy.client_wakes_per_minute",
            s.sleep.client_limited.clone(),
        );
        registry.register(
            "berth_late_wakes",
            "Wakes that took longer than the edge's max_pause (held requests got the maintenance page)",
            s.sleep.late_wakes.clone(),
        );
        registry.register_with_unit(
            "berth_wake_duration",
            "From the first request to a sleeping tenant to its being healthy",
            Unit::Seconds,
            s.sleep.wake_seconds.clone(),
        );
        registry.register_collector(Box::new(instances::Instances {
            cx: s.cx.clone(),
            sweep: sweep.clone(),
        }));
        registry.register_collector(Box::new(state::State {
            cx: s.cx.clone(),
            fleet: s.fleet,
            certs: s.certs,
        }));
        registry.register_collector(Box::new(probes::Probes(s.cx.svc.clone())));
        registry.register_collector(Box::new(process::Process));
        Arc::new(Metrics {
            registry,
            cx: s.cx,
            proxy: s.proxy,
            sweep,
            ooms,
            passes,
            pass_failures,
            last_pass: AtomicU64::new(0),
        })
    }

    /// The whole scrape, OpenMetrics text.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(64 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Counts an OOM kill with the tenant it hit.
    pub fn on_event(&self, e: &EngineEvent) {
        if e.action == "oom" {
            tracing::warn!(
                tenant = e.tenant,
                service = e.service,
                container = e.container,
                "a process of the tenant was killed for passing its memory limit"
            );
            self.ooms.count(&e.tenant, &e.service);
        }
    }

    /// OOM kills counted so far for `tenant`, all services together.
    pub fn oom_kills(&self, tenant: &str) -> u64 {
        self.ooms.total(tenant)
    }

    /// Records each finished reconcile pass once, read from the board (which keeps only the
    /// last): passes that finish between two wake-ups of this task are sampled by the later.
    pub async fn follow_passes(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let cx = self.cx.clone();
        let mut rx = cx.passes.subscribe();
        loop {
            tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                _ = shutdown.wait_for(|s| *s) => return,
            }
            let Some(p) = cx.passes.board().last_pass else {
                continue;
            };
            if self.last_pass.swap(p.pass, SeqCst) != p.pass {
                self.passes.observe(p.duration_ms / 1000.0);
                self.pass_failures.inc_by(p.errors as u64);
            }
            // A tenant without an allocation has been purged: its counters go with it.
            let kept = cx.svc.allocations().snapshot();
            self.ooms
                .retain(|t| kept.contains_key(t) || t == crate::runtime::labels::HOST_TENANT);
        }
    }

    /// `GET /metrics`: OpenMetrics to clients that ask for it (Prometheus does), the classic
    /// text format 0.0.4 to everything else (promtool, curl, older scrapers).
    pub fn router(self: Arc<Self>) -> axum::Router {
        axum::Router::new().route(
            "/metrics",
            axum::routing::get(move |headers: axum::http::HeaderMap| {
                let m = self.clone();
                async move {
                    let open = headers
                        .get(axum::http::header::ACCEPT)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|a| a.contains("application/openmetrics-text"));
                    let text = m.render();
                    let (ct, body) = if open {
                        (OPENMETRICS, text)
                    } else {
                        (TEXT_004, text::classic(&text))
                    };
                    ([(axum::http::header::CONTENT_TYPE, ct)], body)
                }
            }),
        )
    }
}
