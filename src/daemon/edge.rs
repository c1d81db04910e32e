//! The edge as the agent starts it: bound before the first pass, accepting after it.

use super::DaemonError;
use crate::{
    certs::{
        CertManager,
        acme::AcmeIssuer,
        ca::InternalCa,
        http01::Http01Tokens,
        issuer::{Issuer, SystemClock},
        manager::Budgets,
        store::CertStore,
    },
    desired::HostConfig,
    domains::DomainBook,
    proxy::Proxy,
    reconcile::Controller,
    store::Layout,
};
use std::sync::Arc;

/// The proxy, its certificate manager and its two listeners, bound but not yet accepting.
pub(super) struct Edge {
    pub(super) proxy: Arc<Proxy>,
    pub(super) certs: Arc<CertManager>,
    listeners: (tokio::net::TcpListener, tokio::net::TcpListener),
}

impl Edge {
    /// Binds (or inherits) the listeners first, so from here on connections queue rather than
    /// being refused, even while the agent restarts.
    pub(super) async fn bind(
        host: &HostConfig,
        cfg: &crate::desired::edge::ProxyConfig,
        layout: &Layout,
    ) -> Result<Edge, DaemonError> {
        let http01 = Arc::new(Http01Tokens::default());
        let store = CertStore::new(layout.certs());
        let ca = InternalCa::load_or_create(&layout.certs().join("ca"))?;
        let issuer = host
            .acme
            .as_ref()
            .map(|a| Arc::new(AcmeIssuer::new(a, store.root(), http01.clone())) as Arc<dyn Issuer>);
        let budgets = Budgets::of(host.acme.as_ref());
        let certs = CertManager::new(store, ca, issuer, Arc::new(SystemClock), budgets);
        let proxy = Proxy::new(cfg.clone(), certs.table(), http01);
        let listeners = proxy.listen().await?;
        tracing::info!(http = %cfg.http, https = %cfg.https, acme = host.acme.is_some(), "proxy listening");
        Ok(Edge {
            proxy,
            certs,
            listeners,
        })
    }

    /// Called after the first reconcile pass has observed the engine: installs the routes and
    /// certificates it found, then starts accepting. A restarted agent therefore never answers
    /// a queued request with 404 or a maintenance page just because it has not looked yet.
    pub(super) fn go_live(
        self,
        ctl: &Arc<Controller>,
        book: &Arc<DomainBook>,
        sleeper: &crate::sleep::Sleeper,
        stop: &tokio::sync::watch::Receiver<bool>,
        servers: &mut tokio::task::JoinSet<()>,
    ) {
        crate::reconcile::edge::refresh(ctl, &self.proxy, &self.certs, book);
        // Sleeping tenants' gates hold requests from the first one accepted.
        sleeper.sync_gates();
        let (http, https) = self.listeners;
        let mut accept = self
            .proxy
            .clone()
            .serve_listeners(http, https, stop.clone());
        servers.spawn(async move { while accept.join_next().await.is_some() {} });
        servers.spawn(self.certs.clone().run(stop.clone()));
        servers.spawn(crate::reconcile::edge::run(
            ctl.clone(),
            self.proxy,
            self.certs,
            book.clone(),
            stop.clone(),
        ));
    }
}
