//! The gate used before a switch: a candidate target answering 2xx `passes` times in a row
//! within a timeout, through the edge's own connection to it (upgrades, clones, verifies).
//! Requests look like the prober's (`probe::http`), so an app answers as to its visitors.

use super::{body::empty, target::Target};
pub use crate::probe::http::probe_host;
use crate::probe::http::request;
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

/// Why a probe through the edge's target got no status.
#[derive(Debug, thiserror::Error)]
pub enum NoAnswer {
    #[error("{0}")]
    Request(#[from] hyper::http::Error),
    #[error("{0}")]
    Upstream(#[from] super::upstream::UpstreamError),
    #[error("timed out")]
    TimedOut,
}

/// One probe: the status, or why there was none. It looks like a request the edge forwards
/// (`X-Forwarded-Proto: https`): apps configured for https (WordPress with an https site URL
/// forces its login page to https) answer probes as they answer their visitors.
pub async fn probe(t: &Target, path: &str, host: &str) -> Result<u16, NoAnswer> {
    let req = request(t.addr, path, host, empty())?;
    match tokio::time::timeout(Duration::from_secs(5), t.send(req)).await {
        Ok(Ok((r, _))) => Ok(r.status().as_u16()),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(NoAnswer::TimedOut),
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
                last = e.to_string();
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
