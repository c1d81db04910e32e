//! One upstream target (an instance's published port) with its own connection pool, in-flight
//! count and drain: a blue and a green never share a pooled connection.

use super::{
    body::ProxyBody,
    upstream::{Lease, Pool, Tls, UpstreamError},
};
use std::collections::HashMap;
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst},
    },
    time::Duration,
};
use tokio::sync::{Notify, watch};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub struct Target {
    pub addr: SocketAddr,
    /// Unique per target object: two targets on one address still get separate pools.
    pub id: u64,
    pool: Arc<Pool>,
    /// A moved tenant's target: another berth's edge, reached over TLS with each request's
    /// host as the server name (that edge answers a name only on a connection made for it).
    forward: Option<Forward>,
    inflight: AtomicUsize,
    draining: AtomicBool,
    idle: Notify,
    /// Flips to true when a drain deadline passes: requests still running are cut off.
    cancel: watch::Sender<bool>,
}

/// Outcome of draining a target after it was switched away from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DrainReport {
    /// Requests that finished during the drain.
    pub finished: usize,
    /// Requests cut off at the drain deadline.
    pub cancelled: usize,
}

struct Forward {
    config: Arc<rustls::ClientConfig>,
    connect_timeout: Duration,
    /// One pool per server name.
    pools: std::sync::Mutex<HashMap<String, Arc<Pool>>>,
}

impl Forward {
    fn pool(&self, addr: SocketAddr, host: &str) -> Result<Arc<Pool>, UpstreamError> {
        let mut pools = self.pools.lock().expect("forward pools lock");
        if let Some(p) = pools.get(host) {
            return Ok(p.clone());
        }
        let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|_| {
            UpstreamError::Connect {
                addr,
                source: std::io::Error::other(format!("{host:?} is not a server name")),
            }
        })?;
        let tls = Tls {
            name,
            config: self.config.clone(),
        };
        let pool = Pool::tls(addr, tls, self.connect_timeout);
        pools.insert(host.to_string(), pool.clone());
        Ok(pool)
    }
}

impl Target {
    pub fn new(addr: SocketAddr, connect_timeout: Duration) -> Arc<Target> {
        Target::build(addr, connect_timeout, None)
    }

    /// Another berth's edge at `addr`, reached over TLS verified with `config` (a moved
    /// tenant's requests, sent on with their host).
    pub fn forwarding(
        addr: SocketAddr,
        connect_timeout: Duration,
        config: Arc<rustls::ClientConfig>,
    ) -> Arc<Target> {
        let forward = Forward {
            config,
            connect_timeout,
            pools: Default::default(),
        };
        Target::build(addr, connect_timeout, Some(forward))
    }

    fn build(addr: SocketAddr, connect_timeout: Duration, forward: Option<Forward>) -> Arc<Target> {
        Arc::new(Target {
            addr,
            id: NEXT_ID.fetch_add(1, SeqCst),
            pool: Pool::new(addr, connect_timeout),
            forward,
            inflight: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            idle: Notify::new(),
            cancel: watch::channel(false).0,
        })
    }

    /// Sends `req` to this target on a pooled connection; the lease goes back with the
    /// response body (`upstream::Leased`).
    pub async fn send(
        &self,
        req: hyper::Request<ProxyBody>,
    ) -> Result<(hyper::Response<hyper::body::Incoming>, Lease), UpstreamError> {
        let Some(f) = &self.forward else {
            return self.pool.send(req).await;
        };
        let host = req
            .headers()
            .get(hyper::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        // The edge's own host, without a port: the name the other edge has a certificate for.
        let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
        f.pool(self.addr, name)?.send(req).await
    }

    /// Whether this target is another berth's edge (requests go on as they came).
    pub fn is_forward(&self) -> bool {
        self.forward.is_some()
    }

    /// Registers a request. Fails if the target is draining; the caller then re-reads the
    /// tenant's current target. Increment-then-check pairs with drain's set-then-read so a
    /// request is either counted by the drain or sent to the new target, never lost.
    pub fn start(self: &Arc<Self>) -> Option<Ticket> {
        self.inflight.fetch_add(1, SeqCst);
        if self.draining.load(SeqCst) {
            self.finish();
            return None;
        }
        Some(Ticket {
            target: self.clone(),
        })
    }

    /// Requests registered on this target and not finished.
    pub fn in_flight(&self) -> usize {
        self.inflight.load(SeqCst)
    }

    fn finish(&self) {
        if self.inflight.fetch_sub(1, SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Resolves when the drain deadline cut this target's requests off.
    pub async fn cancelled(&self) {
        let mut rx = self.cancel.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Refuses new requests, waits for in-flight ones up to `timeout`, then cancels the rest.
    pub async fn drain(&self, timeout: Duration) -> DrainReport {
        self.draining.store(true, SeqCst);
        let at_start = self.inflight.load(SeqCst);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.inflight.load(SeqCst) == 0 {
                return DrainReport {
                    finished: at_start,
                    cancelled: 0,
                };
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                let left = self.inflight.load(SeqCst);
                self.cancel.send_replace(true);
                return DrainReport {
                    finished: at_start.saturating_sub(left),
                    cancelled: left,
                };
            }
        }
    }
}

/// A registered in-flight request; dropping it (when the response body ends) releases it.
pub struct Ticket {
    target: Arc<Target>,
}

impl Ticket {
    pub fn target(&self) -> &Arc<Target> {
        &self.target
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.target.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Arc<Target> {
        Target::new("127.0.0.1:9".parse().unwrap(), Duration::from_secs(1))
    }

    #[tokio::test]
    async fn drain_waits_for_in_flight_requests_then_refuses_new_ones() {
        let t = target();
        let ticket = t.start().unwrap();
        let t2 = t.clone();
        let drain = tokio::spawn(async move { t2.drain(Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            t.start().is_none(),
            "a draining target takes no new request"
        );
        assert!(!drain.is_finished());
        drop(ticket);
        let report = drain.await.unwrap();
        assert_eq!(
            report,
            DrainReport {
                finished: 1,
                cancelled: 0
            }
        );
    }

    #[tokio::test]
    async fn drain_cancels_requests_still_running_at_the_deadline() {
        let t = target();
        let _ticket = t.start().unwrap();
        let report = t.drain(Duration::from_millis(50)).await;
        assert_eq!(
            report,
            DrainReport {
                finished: 0,
                cancelled: 1
            }
        );
        tokio::time::timeout(Duration::from_secs(1), t.cancelled())
            .await
            .expect("cancellation is signalled");
    }

    #[test]
    fn every_target_gets_its_own_identity() {
        assert_ne!(target().id, target().id);
    }
}
