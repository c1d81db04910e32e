//! HTTP probes: the prober's one-shot GET of a tenant's health path at its published address,
//! and the gate used before a switch (a candidate target answering 2xx `passes` times in a row
//! within a timeout). Both look like a request the edge forwards.

use crate::proxy::{body::empty, target::Target};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use std::{net::SocketAddr, sync::Arc, time::Duration};

#[derive(Debug, thiserror::Error)]
#[error(
    "target {addr} did not pass {passes} health checks on {path} within {timeout:?} (last: {last})"
)]
pub struct Unhealthy {
    pub addr: std::net::SocketAddr,
    pub path: String,
    pub passes: u32,
    pub timeout: Duration,
    pub last: String,
}

/// The Host a probe of `inst` sends: the name the edge serves it on (its first domain, else
/// its subdomain), so an app that redirects to its canonical name answers as it would there.
pub fn probe_host(inst: &crate::desired::Instance, base_domain: Option<&str>) -> String {
    match (inst.domains.first(), base_domain) {
        (Some(d), _) => d.clone(),
        (None, Some(b)) => format!("{}.{b}", inst.tenant),
        (None, None) => "localhost".into(),
    }
}

/// One probe: the status, or why there was none. It looks like a request the edge forwards
/// (`X-Forwarded-Proto: https`): apps configured for https (WordPress with an https site URL
/// forces its login page to https) answer probes as they answer their visitors.
pub async fn probe(t: &Target, path: &str, host: &str) -> Result<u16, String> {
    let req = request(t.addr, path, host)?;
    match tokio::time::timeout(Duration::from_secs(5), t.send(req)).await {
        Ok(Ok((r, _))) => Ok(r.status().as_u16()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

fn request(
    addr: SocketAddr,
    path: &str,
    host: &str,
) -> Result<Request<crate::proxy::body::ProxyBody>, String> {
    let uri: Uri = format!("http://{addr}{path}")
        .parse()
        .map_err(|e| format!("{e}"))?;
    Request::get(uri)
        .header(hyper::header::HOST, host)
        .header(hyper::header::USER_AGENT, "berth-health")
        .header("x-forwarded-proto", "https")
        .body(empty())
        .map_err(|e| e.to_string())
}

/// The prober's check: one GET on a connection of its own (no pool to keep warm for 1,000
/// tenants), closed as soon as the status line is in. The caller bounds time.
///
/// Any 2xx or 3xx passes (Kubernetes' httpGet rule, and `curl -f`'s): real apps redirect their
/// login page to an installer until a tenant installs them (WordPress, Mautic, osTicket), and
/// an app that answers a redirect is up. 4xx, 5xx and no answer fail. The gate a new version
/// must pass before a switch (`wait_healthy`) stays strict: 2xx only.
pub async fn check(addr: SocketAddr, path: &str, host: &str) -> Result<(), String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    let mut req = request(addr, path, host)?;
    *req.uri_mut() = path.parse().map_err(|e| format!("{e}"))?;
    tokio::pin!(conn);
    let status = tokio::select! {
        r = send.send_request(req) => r.map_err(|e| e.to_string())?.status(),
        c = &mut conn => return Err(match c {
            Ok(()) => "connection closed before an answer".into(),
            Err(e) => e.to_string(),
        }),
    };
    if status.is_success() || status.is_redirection() {
        Ok(())
    } else {
        Err(format!("status {}", status.as_u16()))
    }
}

pub async fn wait_healthy(
    t: &Arc<Target>,
    path: &str,
    host: &str,
    passes: u32,
    timeout: Duration,
) -> Result<(), Unhealthy> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut streak = 0;
    let mut last = String::from("no probe yet");
    while tokio::time::Instant::now() < deadline {
        match probe(t, path, host).await {
            Ok(s) if (200..300).contains(&s) => {
                streak += 1;
                if streak >= passes {
                    return Ok(());
                }
            }
            Ok(s) => {
                streak = 0;
                last = format!("status {s}");
            }
            Err(e) => {
                streak = 0;
                last = e;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(Unhealthy {
        addr: t.addr,
        path: path.into(),
        passes,
        timeout,
        last,
    })
}
