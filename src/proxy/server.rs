//! The proxy's listeners: bound from the host config or inherited from systemd socket
//! activation (so an agent restart refuses no connection), accept loops, and the TLS
//! handshake with SNI captured and one deadline around it.

use super::{
    Proxy,
    conn::{self, ConnInfo},
};
use std::{net::SocketAddr, os::fd::FromRawFd, sync::Arc};
use tokio::{net::TcpListener, sync::watch};
use tokio_rustls::LazyConfigAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("inherited socket {name:?} (fd {fd}) is unusable: {source}")]
    Inherited {
        name: String,
        fd: i32,
        source: std::io::Error,
    },
}

/// Sockets passed by systemd (`LISTEN_FDS`, names from `FileDescriptorName=`), if any are for us.
fn inherited() -> Vec<(String, i32)> {
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let n: i32 = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if !pid_ok || n <= 0 {
        return vec![];
    }
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .unwrap_or_default()
        .split(':')
        .map(String::from)
        .collect();
    (0..n)
        .map(|i| (names.get(i as usize).cloned().unwrap_or_default(), 3 + i))
        .collect()
}

/// The listener named `name` (http | https): inherited from systemd if passed, bound otherwise.
pub async fn listener(name: &str, addr: SocketAddr) -> Result<TcpListener, ListenError> {
    if let Some((_, fd)) = inherited().into_iter().find(|(n, _)| n == name) {
        // SAFETY: systemd passed this descriptor for us to own; nothing else in the process uses it.
        let std = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        let err = |source| ListenError::Inherited {
            name: name.into(),
            fd,
            source,
        };
        std.set_nonblocking(true).map_err(err)?;
        tracing::info!(name, fd, "using listener from socket activation");
        return TcpListener::from_std(std).map_err(err);
    }
    TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError::Bind { addr, source })
}

/// Accepts until shutdown; then open connections finish their requests and close, for up
/// to the drain timeout. Connection tasks are owned here, not detached: a detached task would
/// be dropped mid-request when the process exits, resetting the client.
pub async fn accept_loop(
    p: Arc<Proxy>,
    l: TcpListener,
    tls: bool,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            r = l.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let (p, rx) = (p.clone(), shutdown.clone());
        conns.spawn(async move {
            if tls {
                serve_tls(p, stream, peer, rx).await;
            } else {
                conn::serve(p, stream, ConnInfo::new(peer, false, None), rx).await;
            }
        });
    }
    drop(l);
    let drained = tokio::time::timeout(p.cfg.timeouts.drain, async {
        while conns.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        tracing::warn!(
            left = conns.len(),
            "drain timeout: closing remaining connections"
        );
    }
}

async fn serve_tls(
    p: Arc<Proxy>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    rx: watch::Receiver<bool>,
) {
    let deadline = p.cfg.timeouts.tls_handshake;
    let handshake = async {
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream)
            .await
            .ok()?;
        let sni = start
            .client_hello()
            .server_name()
            .map(|s| s.trim_end_matches('.').to_ascii_lowercase());
        let config = p.tls_config();
        let tls = start.into_stream(config).await.ok()?;
        Some((tls, sni))
    };
    match tokio::time::timeout(deadline, handshake).await {
        Ok(Some((tls, sni))) => conn::serve(p, tls, ConnInfo::new(peer, true, sni), rx).await,
        Ok(None) => tracing::debug!(%peer, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}
