//! The health gate used before a switch: GET the health path on a candidate target until it
//! answers 2xx `passes` times in a row, or the timeout passes.

use super::{body::empty, target::Target};
use hyper::{Request, Uri};
use std::{sync::Arc, time::Duration};

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
    let uri: Uri = format!("http://{}{path}", t.addr)
        .parse()
        .map_err(|e| format!("{e}"))?;
    let req = Request::get(uri)
        .header(hyper::header::HOST, host)
        .header(hyper::header::USER_AGENT, "berth-health")
        .header("x-forwarded-proto", "https")
        .body(empty())
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(5), t.client().request(req)).await {
        Ok(Ok(r)) => Ok(r.status().as_u16()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
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
