//! HTTP probes: the prober's one-shot GET of a tenant's health path at its published address.
//! It looks like a request the edge forwards. The gate before a switch, through the edge's own
//! target, is `proxy::health`.

use super::ProbeError;
use bytes::Bytes;
use http_body_util::Empty;
use hyper::Request;
use std::net::SocketAddr;

/// The Host a probe of `inst` sends: the name the edge serves it on (its first domain, else
/// its subdomain), so an app that redirects to its canonical name answers as it would there.
pub fn probe_host(inst: &crate::desired::Instance, base_domain: Option<&str>) -> String {
    match (inst.domains.first(), base_domain) {
        (Some(d), _) => d.clone(),
        (None, Some(b)) => format!("{}.{b}", inst.tenant),
        (None, None) => "localhost".into(),
    }
}

/// The request a probe sends, with `body` (empty).
pub fn request<B>(
    addr: SocketAddr,
    path: &str,
    host: &str,
    body: B,
) -> Result<Request<B>, hyper::http::Error> {
    Request::get(format!("http://{addr}{path}"))
        .header(hyper::header::HOST, host)
        .header(hyper::header::USER_AGENT, "berth-health")
        .header("x-forwarded-proto", "https")
        .body(body)
}

/// The prober's check: one GET on a connection of its own (no pool to keep warm for 1,000
/// tenants), closed as soon as the status line is in (its body is dropped unread). The caller bounds time.
///
/// Any 2xx or 3xx passes (Kubernetes' httpGet rule, and `curl -f`'s): real apps redirect their
/// login page to an installer until a tenant installs them (WordPress, Mautic, osTicket), and
/// an app that answers a redirect is up. 4xx, 5xx and no answer fail. The gate a new version
/// must pass before a switch (`wait_healthy`) stays strict: 2xx only.
pub async fn check(addr: SocketAddr, path: &str, host: &str) -> Result<(), ProbeError> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|source| ProbeError::Connect { addr, source })?;
    let _ = tcp.set_nodelay(true);
    let mut req = request(addr, path, host, Empty::<Bytes>::new())?;
    *req.uri_mut() = path.parse().map_err(hyper::http::Error::from)?;
    let status = crate::http1::send(tcp, req).await?.status();
    if status.is_success() || status.is_redirection() {
        Ok(())
    } else {
        Err(ProbeError::Status(status.as_u16()))
    }
}
