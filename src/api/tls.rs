//! TLS for the API's TCP listener: a certificate from the operator's files (reread when they
//! change) or from berth's internal CA (reissued before it ages), and a listener that runs
//! handshakes concurrently, so one slow client cannot hold the door for the others.

use crate::{
    certs::{CertError, ca::InternalCa, pem::certified_key},
    desired::api::ApiTls,
};
use rustls::{
    ServerConfig,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, server::TlsStream};

/// An internal-CA certificate lives this long and is reissued at a third of it.
const LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);
const REISSUE_AFTER: Duration = Duration::from_secs(30 * 24 * 3600);
/// How often the operator's files are looked at for a change.
const RECHECK: Duration = Duration::from_secs(10);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

enum Source {
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
    Internal {
        ca: Box<InternalCa>,
        names: Vec<String>,
    },
}

struct Current {
    key: Arc<CertifiedKey>,
    made: Instant,
    checked: Instant,
    mtimes: Option<(SystemTime, SystemTime)>,
}

/// The listener's certificate, kept fresh.
pub struct ApiCert {
    source: Source,
    current: Mutex<Current>,
}

impl std::fmt::Debug for ApiCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiCert")
    }
}

fn mtimes(cert: &PathBuf, key: &PathBuf) -> Option<(SystemTime, SystemTime)> {
    let m = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((m(cert)?, m(key)?))
}

fn io(p: &std::path::Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
    move |e| CertError::Io {
        path: p.display().to_string(),
        source: e,
    }
}

impl Source {
    fn load(&self) -> Result<Arc<CertifiedKey>, CertError> {
        match self {
            Source::Files { cert, key } => {
                let chain = std::fs::read_to_string(cert).map_err(io(cert))?;
                let k = std::fs::read_to_string(key).map_err(io(key))?;
                certified_key(&chain, &k)
            }
            Source::Internal { ca, names } => {
                let (chain, k) = ca.issue_names(names, LIFETIME)?;
                certified_key(&chain, &k)
            }
        }
    }
}

impl ApiCert {
    /// `ca_dir`: berth's internal CA (`<state>/certs/ca`), used for `ApiTls::Internal`.
    pub fn new(tls: &ApiTls, ca_dir: &std::path::Path) -> Result<ApiCert, CertError> {
        let source = match tls {
            ApiTls::Files { cert, key } => Source::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            ApiTls::Internal { names } => Source::Internal {
                ca: Box::new(InternalCa::load_or_create(ca_dir)?),
                names: names.clone(),
            },
        };
        let mtimes = match &source {
            Source::Files { cert, key } => mtimes(cert, key),
            Source::Internal { .. } => None,
        };
        let key = source.load()?;
        let now = Instant::now();
        let current = Mutex::new(Current {
            key,
            made: now,
            checked: now,
            mtimes,
        });
        Ok(ApiCert { source, current })
    }

    /// The certificate to present now, renewed first when it is due.
    pub fn get(&self) -> Arc<CertifiedKey> {
        let mut c = self.current.lock().expect("api cert lock");
        let due = match &self.source {
            Source::Internal { .. } => c.made.elapsed() >= REISSUE_AFTER,
            Source::Files { cert, key } if c.checked.elapsed() >= RECHECK => {
                c.checked = Instant::now();
                let now = mtimes(cert, key);
                now.is_some() && now != c.mtimes
            }
            Source::Files { .. } => false,
        };
        if due {
            match self.source.load() {
                Ok(k) => {
                    c.key = k;
                    c.made = Instant::now();
                    if let Source::Files { cert, key } = &self.source {
                        c.mtimes = mtimes(cert, key);
                    }
                    tracing::info!("api certificate reloaded");
                }
                // The one in use keeps serving; the operator sees why in the log.
                Err(e) => tracing::error!(error = %e, "api certificate reload failed"),
            }
        }
        c.key.clone()
    }

    pub fn server_config(self: Arc<Self>) -> Arc<ServerConfig> {
        let mut cfg =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("ring supports the default versions")
                .with_no_client_auth()
                .with_cert_resolver(self);
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(cfg)
    }
}

impl ResolvesServerCert for ApiCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// A TCP listener whose connections arrive already through their TLS handshake.
pub struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, std::net::SocketAddr)>,
    local: std::net::SocketAddr,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, cfg: Arc<ServerConfig>) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let acceptor = TlsAcceptor::from(cfg);
        tokio::spawn(async move {
            loop {
                let (sock, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let hs = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(sock)).await;
                    if let Ok(Ok(s)) = hs {
                        let _ = tx.send((s, peer)).await;
                    }
                });
            }
        });
        Ok(TlsListener { rx, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept loop ended (it never does while the listener lives): wait forever,
            // as a listener with no more connections does.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests;
