//! The certificates the TLS listener serves, one per domain, swapped atomically. Lookup is a
//! hash probe in memory, so choosing a certificate never waits on I/O during a handshake.

use arc_swap::ArcSwap;
use rustls::{
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use std::{collections::HashMap, sync::Arc};

#[derive(Debug, Default)]
pub struct CertTable {
    certs: ArcSwap<HashMap<String, Arc<CertifiedKey>>>,
}

impl CertTable {
    pub fn get(&self, domain: &str) -> Option<Arc<CertifiedKey>> {
        self.certs.load().get(domain).cloned()
    }

    pub fn set(&self, domain: &str, key: Arc<CertifiedKey>) {
        self.certs.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.insert(domain.to_string(), key.clone());
            m
        });
    }

    /// Keeps only `domains`: a tenant's removed domain stops serving at once.
    pub fn retain(&self, keep: &dyn Fn(&str) -> bool) {
        // Called after every reconcile pass: copy the map only when something goes.
        if self.certs.load().keys().all(|d| keep(d)) {
            return;
        }
        self.certs.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.retain(|d, _| keep(d));
            m
        });
    }

    pub fn len(&self) -> usize {
        self.certs.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ResolvesServerCert for CertTable {
    /// Unknown or missing SNI aborts the handshake: there is no default site to fall back to.
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello
            .server_name()?
            .trim_end_matches('.')
            .to_ascii_lowercase();
        self.get(&name)
    }
}
