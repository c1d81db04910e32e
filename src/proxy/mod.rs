//! The edge: a domain-mapping HTTPS reverse proxy inside the agent (hyper 1 + rustls). The
//! reconciler hands it each tenant's routes; it swaps its route table atomically and keeps a
//! gate per tenant for switchover, drain, pause and maintenance.

pub mod body;
pub mod conn;
pub mod cookies;
pub mod forward;
pub mod gate;
pub mod headers;
pub mod health;
pub mod limit;
pub mod meter;
pub mod pages;
pub mod routes;
pub mod server;
pub mod target;
pub mod upstream;
pub mod wakers;

#[cfg(test)]
mod tests;

use crate::{
    certs::{http01::Http01Tokens, table::CertTable},
    desired::edge::ProxyConfig,
};
use arc_swap::ArcSwap;
use gate::Gate;
use routes::{HostRoute, Mount, RouteTable};
use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};
use target::Target;

pub use server::ListenError;

/// Everything the proxy needs to know about one tenant, derived from desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRoutes {
    pub tenant: String,
    /// Where its web service listens (127.0.0.1:port); None until provisioned.
    pub target: Option<SocketAddr>,
    /// Stopped, suspended or still provisioning: answered with the maintenance page.
    pub maintenance: bool,
    /// Hosts served directly (subdomain and verified custom domains).
    pub hosts: Vec<String>,
    /// Hosts that redirect to `hosts[0]`.
    pub aliases: Vec<String>,
    /// (shared domain, path segment, strip prefix)
    pub mounts: Vec<(String, String, bool)>,
    /// An upgrade drives this tenant's target and pause itself; routes still follow the files.
    pub pinned: bool,
    /// The plan's request rate, in-flight and body limits.
    pub quota: crate::desired::quota::EdgeQuota,
}

pub struct Proxy {
    pub cfg: ProxyConfig,
    pub routes: ArcSwap<RouteTable>,
    pub http01: Arc<Http01Tokens>,
    pub metrics: meter::ProxyMetrics,
    tls: Arc<rustls::ServerConfig>,
    gates: Mutex<HashMap<String, Arc<Gate>>>,
    /// Tenants moved to another berth host: their requests go to that host's edge.
    moved: Mutex<HashMap<String, Arc<Target>>>,
    /// Moved tenants' ACME HTTP-01 challenges this edge has no answer to go to that host's
    /// HTTP listener (its orders are proven while DNS still points here).
    challenges: Mutex<HashMap<String, Arc<Target>>>,
    /// Which mounts of each shared domain set which cookies.
    pub cookie_owners: cookies::Owners,
    /// Which clients may still wake sleeping tenants this minute.
    pub wake_clients: wakers::WakeClients,
    /// Wake requests from sleeping tenants' gates (the receiver goes to the sleeper).
    wakes: (
        tokio::sync::mpsc::UnboundedSender<String>,
        Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<String>>>,
    ),
}

impl Proxy {
    pub fn new(cfg: ProxyConfig, certs: Arc<CertTable>, http01: Arc<Http01Tokens>) -> Arc<Proxy> {
        let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_no_client_auth()
        .with_cert_resolver(certs);
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let (wake_tx, wake_rx) = tokio::sync::mpsc::unbounded_channel();
        Arc::new(Proxy {
            wake_clients: wakers::WakeClients::new(cfg.client_wakes_per_minute),
            cookie_owners: cookies::Owners::default(),
            cfg,
            routes: ArcSwap::from_pointee(RouteTable::default()),
            http01,
            metrics: Default::default(),
            tls: Arc::new(tls),
            gates: Mutex::default(),
            moved: Mutex::default(),
            challenges: Mutex::default(),
            wakes: (wake_tx, Mutex::new(Some(wake_rx))),
        })
    }

    pub fn tls_config(&self) -> Arc<rustls::ServerConfig> {
        self.tls.clone()
    }

    /// `host` or `host:port` for URLs pointing at the HTTPS listener.
    pub fn https_authority(&self, host: &str) -> String {
        match self.cfg.redirect_port {
            443 => host.to_string(),
            p => format!("{host}:{p}"),
        }
    }

    /// The stream of wake requests (tenant names), for the one sleeper; None after the first.
    pub fn take_wakes(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<String>> {
        self.wakes.1.lock().expect("wakes lock").take()
    }

    pub fn gate(&self, tenant: &str) -> Option<Arc<Gate>> {
        self.gates.lock().expect("gates lock").get(tenant).cloned()
    }

    /// Sends `tenant`'s requests to `to` (another berth host's edge) from now on, whatever its
    /// routes say of its own containers here; the gate's previous target drains.
    pub fn forward(&self, tenant: &str, to: Arc<Target>) {
        self.moved
            .lock()
            .expect("moved lock")
            .insert(tenant.into(), to.clone());
        if let Some(g) = self.gate(tenant) {
            g.set_maintenance(false);
            // A pass may have installed it meanwhile: never drain the live target.
            if !g.current().is_some_and(|c| Arc::ptr_eq(&c, &to)) {
                g.replace(Some(to), self.cfg.timeouts.drain);
            }
        }
    }

    /// Sends the ACME HTTP-01 challenges of moved `tenant`'s hosts that this edge cannot
    /// answer to `to` (the other host's HTTP listener).
    pub fn forward_challenges(&self, tenant: &str, to: Arc<Target>) {
        let mut c = self.challenges.lock().expect("challenges lock");
        c.insert(tenant.into(), to);
    }

    /// Where a challenge for `host` goes, if a moved tenant is served under it.
    pub fn challenge_target(&self, host: &str) -> Option<Arc<Target>> {
        let tenant = match self.routes.load().lookup(host, "/")? {
            routes::Route::Tenant { gate, .. } => gate.tenant.clone(),
            routes::Route::Redirect { .. } => return None,
        };
        let c = self.challenges.lock().expect("challenges lock");
        c.get(&tenant).cloned()
    }

    /// Ends the forwarding of `tenant` (purged here): its routes follow its files again.
    pub fn unforward(&self, tenant: &str) {
        self.moved.lock().expect("moved lock").remove(tenant);
        let mut c = self.challenges.lock().expect("challenges lock");
        c.remove(tenant);
    }

    /// Installs the routes of all tenants: gates are kept across calls (a request in flight
    /// keeps its target), targets that moved are switched and drained, and the new table
    /// replaces the old one in one atomic store.
    pub fn apply(&self, tenants: &[TenantRoutes]) {
        let mut gates = self.gates.lock().expect("gates lock");
        let moved = self.moved.lock().expect("moved lock").clone();
        let drain = self.cfg.timeouts.drain;
        let mut table = RouteTable::default();
        let mut seen = std::collections::HashSet::new();
        for t in tenants {
            seen.insert(t.tenant.clone());
            let gate = gates.entry(t.tenant.clone()).or_insert_with(|| {
                let g = Gate::with_meter(&t.tenant, self.metrics.tenant(&t.tenant));
                g.set_waker(self.wakes.0.clone());
                g
            });
            gate.limiter.set(t.quota);
            let current = gate.current().map(|c| c.addr);
            if let Some(to) = moved.get(&t.tenant) {
                // Moved away: its other host serves it, whatever its containers here do.
                gate.set_maintenance(false);
                if !gate.current().is_some_and(|c| Arc::ptr_eq(&c, to)) {
                    gate.replace(Some(to.clone()), drain);
                }
            } else if !(t.pinned && current.is_some()) {
                // While pinned, target and maintenance belong to the upgrade driving it.
                gate.set_maintenance(t.maintenance);
                if current != t.target {
                    gate.replace(
                        t.target
                            .map(|a| Target::new(a, self.cfg.timeouts.upstream_connect)),
                        drain,
                    );
                }
            }
            for h in &t.hosts {
                table.insert(h.clone(), HostRoute::Tenant(gate.clone()));
            }
            if let Some(primary) = t.hosts.first() {
                for a in &t.aliases {
                    table.insert(
                        a.clone(),
                        HostRoute::Alias {
                            primary: primary.clone(),
                        },
                    );
                }
            }
            for (host, seg, strip) in &t.mounts {
                table.mount(
                    host,
                    seg,
                    Mount {
                        gate: gate.clone(),
                        strip: *strip,
                    },
                );
            }
        }
        gates.retain(|t, g| {
            let keep = seen.contains(t);
            if !keep {
                g.replace(None, drain);
                self.metrics.forget(t);
            }
            keep
        });
        self.routes.store(Arc::new(table));
    }

    /// Binds (or inherits) both listeners, then serves until `shutdown` flips.
    pub async fn serve(
        self: Arc<Self>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<tokio::task::JoinSet<()>, ListenError> {
        let (http, https) = self.listen().await?;
        Ok(self.serve_listeners(http, https, shutdown))
    }

    /// Binds (or inherits) the HTTP and HTTPS listeners without accepting yet: until the
    /// accept loops start, the kernel queues connections in the backlog instead of refusing.
    pub async fn listen(
        &self,
    ) -> Result<(tokio::net::TcpListener, tokio::net::TcpListener), ListenError> {
        Ok((
            server::listener("http", self.cfg.http).await?,
            server::listener("https", self.cfg.https).await?,
        ))
    }

    pub fn serve_listeners(
        self: Arc<Self>,
        http: tokio::net::TcpListener,
        https: tokio::net::TcpListener,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinSet<()> {
        let mut set = tokio::task::JoinSet::new();
        set.spawn(server::accept_loop(
            self.clone(),
            http,
            false,
            shutdown.clone(),
        ));
        set.spawn(server::accept_loop(self.clone(), https, true, shutdown));
        set
    }
}
