//! The record of a tenant moved away (`<state>/tenants/<t>/moved.json`, 0600): where its
//! requests go now. It lives in the tenant's directory, so a purge of the tenant ends the
//! forwarding with everything else of it.

use super::HandoverError;
use crate::{proxy::target::Target, store::Layout, store::atomic};
use serde::{Deserialize, Serialize};
use std::{net::SocketAddr, sync::Arc, time::Duration};

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub tenant: String,
    /// The other host's API (for the operator's eyes).
    pub to: String,
    /// The other host's edge (HTTPS), `HOST:PORT`.
    pub edge: String,
    /// The other host's edge (HTTP), `HOST:PORT`: where the ACME challenges of the tenant's
    /// names go that this edge cannot answer (the other host proves its orders through here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_http: Option<String>,
    /// A name the tenant is served under there, tried before the switch.
    pub host: String,
    /// The other host's own CA (PEM), trusted beside the system's roots for its edge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// When the forwarding began (Unix seconds).
    #[serde(default)]
    pub at: u64,
}

impl Record {
    pub fn save(&self, layout: &Layout) -> Result<(), HandoverError> {
        let path = layout.moved_record(&self.tenant);
        let json = serde_json::to_vec_pretty(self).expect("a record serializes");
        atomic::write(&path, &json, 0o600).map_err(|source| HandoverError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// The target of the other edge, tried first: it must answer for `host` on a certificate
    /// the roots trust, with something other than "no such host".
    pub(super) async fn target(&self, timeout: Duration) -> Result<Arc<Target>, HandoverError> {
        let edge_err = |why: String| HandoverError::Edge {
            edge: self.edge.clone(),
            why,
        };
        let addr = tokio::net::lookup_host(&self.edge)
            .await
            .map_err(|e| edge_err(e.to_string()))?
            .next()
            .ok_or_else(|| edge_err("resolves to no address".into()))?;
        let target = client_target(addr, self.ca_pem.as_deref(), timeout)?;
        let req = hyper::Request::get("/")
            .header(hyper::header::HOST, &self.host)
            .header(hyper::header::USER_AGENT, "berth-move-check")
            .body(crate::proxy::body::empty())
            .map_err(|e| edge_err(e.to_string()))?;
        let (resp, _) = tokio::time::timeout(timeout * 4, target.send(req))
            .await
            .map_err(|_| edge_err(format!("no answer for {} in time", self.host)))?
            .map_err(|e| edge_err(format!("{}: {}", self.host, chain(&e))))?;
        let s = resp.status();
        if s == hyper::StatusCode::NOT_FOUND || s == hyper::StatusCode::MISDIRECTED_REQUEST {
            return Err(edge_err(format!("it does not serve {} ({s})", self.host)));
        }
        Ok(target)
    }

    /// The other host's HTTP listener, for ACME challenges (plain HTTP: their answers are
    /// public).
    pub(super) fn challenge_target(&self, timeout: Duration) -> Option<Arc<Target>> {
        use std::net::ToSocketAddrs;
        let edge = self.edge_http.as_deref()?;
        let addr = edge.to_socket_addrs().ok()?.next()?;
        Some(Target::new(addr, timeout))
    }

    /// The target without trying it (an agent starting forwards what it forwarded before).
    pub(super) fn target_unchecked(&self, timeout: Duration) -> Result<Arc<Target>, HandoverError> {
        let addr = self
            .edge
            .parse::<SocketAddr>()
            .or_else(|_| {
                use std::net::ToSocketAddrs;
                self.edge
                    .to_socket_addrs()
                    .map_err(|e| e.to_string())?
                    .next()
                    .ok_or_else(|| "resolves to no address".to_string())
            })
            .map_err(|why| HandoverError::Edge {
                edge: self.edge.clone(),
                why,
            })?;
        client_target(addr, self.ca_pem.as_deref(), timeout)
    }
}

/// A forwarding target at `addr` trusting the system's roots and `ca_pem`.
pub(super) fn client_target(
    addr: SocketAddr,
    ca_pem: Option<&str>,
    timeout: Duration,
) -> Result<Arc<Target>, HandoverError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(c);
    }
    let bad_ca = |why: String| HandoverError::Edge {
        edge: addr.to_string(),
        why: format!("its CA: {why}"),
    };
    if let Some(pem) = ca_pem {
        for c in crate::certs::pem::certs(pem).map_err(|e| bad_ca(e.to_string()))? {
            roots.add(c).map_err(|e| bad_ca(e.to_string()))?;
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Target::forwarding(addr, timeout, Arc::new(config)))
}

/// An error with its sources, for a message that says what failed underneath.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The record of tenant `t`, if it moved away (an unreadable one is reported, not taken).
pub fn load(layout: &Layout, t: &str) -> Option<Record> {
    let path = layout.moved_record(t);
    let bytes = std::fs::read(&path).ok()?;
    match serde_json::from_slice::<Record>(&bytes) {
        Ok(r) if r.tenant == t => Some(r),
        Ok(_) | Err(_) => {
            tracing::error!(path = %path.display(), "unreadable move record: not forwarded");
            None
        }
    }
}

/// Removes tenant `t`'s record, if any.
pub fn remove(layout: &Layout, t: &str) {
    let _ = std::fs::remove_file(layout.moved_record(t));
}

/// Every tenant's record.
pub fn all(layout: &Layout) -> Vec<Record> {
    let Ok(dir) = std::fs::read_dir(layout.tenants()) else {
        return vec![];
    };
    dir.flatten()
        .filter_map(|e| {
            let t = e.file_name().to_string_lossy().to_string();
            layout.moved_record(&t).exists().then(|| load(layout, &t))?
        })
        .collect()
}
