//! Connections to one target (an instance's published port): HTTP/1.1 connections kept idle
//! on a stack and reused last-in first-out, opened on demand within the connect timeout, put
//! back when a response body has been read to its end, and dropped after 30 idle seconds.
//!
//! hyper-util's pooled client did this with a hash map keyed by scheme and authority behind a
//! lock, and a task spawned per request to wait for the connection to be ready again; a target
//! has one address and a response body's end is when its connection is free, so the edge
//! keeps its own stack (docs/BENCHMARKS.md, "Where an edge request's instructions go").

use super::body::ProxyBody;
use hyper::{
    Request, Response, Uri,
    body::{Body, Frame, Incoming, SizeHint},
    client::conn::http1::{self, SendRequest},
};
use hyper_util::rt::TokioIo;
use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

/// How long a connection may wait on the stack before it is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a released connection may take to be ready for the next request.
const READY_WAIT: Duration = Duration::from_millis(50);
/// Idle connections kept per target; more are closed when released.
const MAX_IDLE: usize = 256;
/// New connections to one target that may wait for their response head at once. Requests
/// released together (a woken tenant's held ones) would otherwise open them all at once and
/// overflow a small app's listen queue (busybox httpd's is 9): the kernel drops the SYNs past
/// it and the client side sends them again after its 1 s initial timeout.
const OPENING: usize = 8;
/// How long a new connection keeps its turn while its response head is slow to come (a long
/// poll never holds the others back for longer).
const OPENING_HOLD: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("connect to {0}: timed out")]
    ConnectTimeout(SocketAddr),
    /// The exchange failed (the hyper error is the source, for telling a client's body
    /// error from the app's).
    #[error("{0}")]
    Http(#[source] hyper::Error),
}

pub struct Pool {
    addr: SocketAddr,
    /// Connections to another berth's edge (a moved tenant's) go over TLS with this name.
    tls: Option<Tls>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    idle: Mutex<Vec<(SendRequest<ProxyBody>, Instant)>>,
    /// Whether the task that closes connections idle too long has started (on first release).
    reaping: AtomicBool,
    /// Turns for new connections until their response head (`OPENING`).
    opening: tokio::sync::Semaphore,
}

/// The TLS client side of a pool: the server name sent and verified, and the roots trusted.
#[derive(Clone)]
pub struct Tls {
    pub name: rustls::pki_types::ServerName<'static>,
    pub config: Arc<rustls::ClientConfig>,
}

/// A connection lent to one exchange; given back by `Leased` when the response body ends.
pub struct Lease {
    pool: Arc<Pool>,
    tx: SendRequest<ProxyBody>,
}

impl Pool {
    pub fn new(addr: SocketAddr, connect_timeout: Duration) -> Arc<Pool> {
        Pool::with_idle_timeout(addr, connect_timeout, IDLE_TIMEOUT)
    }

    pub fn with_idle_timeout(addr: SocketAddr, connect: Duration, idle: Duration) -> Arc<Pool> {
        Pool::build(addr, None, connect, idle)
    }

    /// A pool whose connections speak TLS to `addr` as `tls.name`.
    pub fn tls(addr: SocketAddr, tls: Tls, connect: Duration) -> Arc<Pool> {
        Pool::build(addr, Some(tls), connect, IDLE_TIMEOUT)
    }

    fn build(addr: SocketAddr, tls: Option<Tls>, connect: Duration, idle: Duration) -> Arc<Pool> {
        Arc::new(Pool {
            addr,
            tls,
            connect_timeout: connect,
            idle_timeout: idle,
            idle: Mutex::new(Vec::new()),
            reaping: AtomicBool::new(false),
            opening: tokio::sync::Semaphore::new(OPENING),
        })
    }

    /// Sends `req` on an idle connection, or on a new one. A request an idle connection could
    /// not take (the app closed it meanwhile; nothing was written) goes once more on a new one.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<ProxyBody>,
    ) -> Result<(Response<Incoming>, Lease), UpstreamError> {
        // The request line is sent as the URI is: apps take origin form (`GET /path`) only.
        if req.uri().scheme().is_some() {
            let pq = req.uri().path_and_query().cloned();
            *req.uri_mut() = pq.map_or_else(|| Uri::from_static("/"), Uri::from);
        }
        // A new connection's turn is held until its response head, or `OPENING_HOLD`.
        let (mut tx, reused, turn) = match self.checkout().await {
            Some(tx) => (tx, true, None),
            None => {
                let turn = self.opening.acquire().await.ok();
                (self.connect().await?, false, turn)
            }
        };
        let sent = tx.try_send_request(req);
        tokio::pin!(sent);
        let sent = match turn {
            None => sent.await,
            Some(turn) => tokio::select! {
                r = &mut sent => r,
                _ = tokio::time::sleep(OPENING_HOLD) => {
                    drop(turn);
                    sent.await
                }
            },
        };
        match sent {
            Ok(resp) => Ok((resp, self.lease(tx))),
            Err(mut e) => match e.take_message() {
                Some(req) if reused => {
                    let mut tx = self.connect().await?;
                    let resp = tx.send_request(req).await.map_err(UpstreamError::Http)?;
                    Ok((resp, self.lease(tx)))
                }
                _ => Err(UpstreamError::Http(e.into_error())),
            },
        }
    }

    fn lease(self: &Arc<Self>, tx: SendRequest<ProxyBody>) -> Lease {
        Lease {
            pool: self.clone(),
            tx,
        }
    }

    /// The most recently released connection that is still open and ready.
    async fn checkout(&self) -> Option<SendRequest<ProxyBody>> {
        loop {
            let (mut tx, since) = self.idle.lock().expect("pool lock").pop()?;
            if tx.is_closed() || since.elapsed() > self.idle_timeout {
                continue;
            }
            if tx.is_ready() {
                return Some(tx);
            }
            // Released after its response ended, it is ready as soon as its connection task
            // has seen that end, unless the app answered before the request body was all
            // sent and the client is still sending it (or stalls): wait briefly, never for a
            // client. A connection given up on closes when its exchange ends.
            if let Ok(Ok(())) = tokio::time::timeout(READY_WAIT, tx.ready()).await {
                return Some(tx);
            }
        }
    }

    async fn connect(&self) -> Result<SendRequest<ProxyBody>, UpstreamError> {
        let addr = self.addr;
        let stream =
            tokio::time::timeout(self.connect_timeout, tokio::net::TcpStream::connect(addr))
                .await
                .map_err(|_| UpstreamError::ConnectTimeout(addr))?
                .map_err(|source| UpstreamError::Connect { addr, source })?;
        let _ = stream.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return handshake(stream).await;
        };
        let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
        let stream = tokio::time::timeout(
            self.connect_timeout,
            connector.connect(tls.name.clone(), stream),
        )
        .await
        .map_err(|_| UpstreamError::ConnectTimeout(addr))?
        .map_err(|source| UpstreamError::Connect { addr, source })?;
        handshake(stream).await
    }

    fn release(self: &Arc<Self>, tx: SendRequest<ProxyBody>) {
        if tx.is_closed() {
            return;
        }
        {
            let mut idle = self.idle.lock().expect("pool lock");
            if idle.len() < MAX_IDLE {
                idle.push((tx, Instant::now()));
            }
        }
        if !self.reaping.swap(true, Relaxed) {
            tokio::spawn(reap(Arc::downgrade(self), self.idle_timeout));
        }
    }

    /// Closes the connections that waited longer than the idle timeout and those the app
    /// closed.
    fn prune(&self) {
        let mut idle = self.idle.lock().expect("pool lock");
        idle.retain(|(tx, since)| !tx.is_closed() && since.elapsed() <= self.idle_timeout);
    }

    #[cfg(test)]
    fn idle(&self) -> usize {
        self.idle.lock().expect("pool lock").len()
    }
}

/// An HTTP/1.1 client connection over `io`, its connection task spawned: it ends when the app
/// closes it, or when its sender is dropped and it is idle.
async fn handshake<T>(io: T) -> Result<SendRequest<ProxyBody>, UpstreamError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (tx, conn) = http1::handshake(TokioIo::new(io))
        .await
        .map_err(UpstreamError::Http)?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    Ok(tx)
}

/// Prunes the pool every idle timeout for as long as it exists (a target nobody sends to any
/// more still has its idle connections closed).
async fn reap(pool: std::sync::Weak<Pool>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        match pool.upgrade() {
            Some(p) => p.prune(),
            None => return,
        }
    }
}

/// A response body that gives its connection back to the pool once it has been read to the
/// end. A body dropped before its end takes its connection with it (hyper closes it).
pub struct Leased {
    inner: Incoming,
    lease: Option<Lease>,
    ended: bool,
}

impl Leased {
    pub fn new(inner: Incoming, lease: Lease) -> Self {
        Leased {
            inner,
            lease: Some(lease),
            ended: false,
        }
    }
}

impl Body for Leased {
    type Data = <Incoming as Body>::Data;
    type Error = <Incoming as Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Ready(None) => self.ended = true,
            Poll::Ready(Some(Err(_))) => self.lease = None,
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Leased {
    fn drop(&mut self) {
        // hyper stops polling a body that says it has ended (its length is all in).
        if (self.ended || self.inner.is_end_stream())
            && let Some(l) = self.lease.take()
        {
            l.pool.release(l.tx);
        }
    }
}

#[cfg(test)]
#[path = "upstream_pacing.rs"]
mod pacing;

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A raw HTTP/1.1 app on loopback answering every request with `body`; counts the
    /// connections it accepted; with `close_after`, it closes each connection after one answer
    /// (without saying so, as an app whose keep-alive timed out).
    async fn app(body: &'static [u8], close_after: bool) -> (SocketAddr, Arc<AtomicUsize>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let n = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                n.fetch_add(1, SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    loop {
                        let mut got = Vec::new();
                        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                            match s.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(k) => got.extend_from_slice(&buf[..k]),
                            }
                        }
                        // Like busybox httpd: a request line in absolute form is refused.
                        let status = if got.starts_with(b"GET / ") {
                            "200 OK"
                        } else {
                            "400 Bad Request"
                        };
                        let head = format!(
                            "HTTP/1.1 {status}\r\ncontent-length: {}\r\n\r\n",
                            body.len()
                        );
                        if s.write_all(head.as_bytes()).await.is_err()
                            || s.write_all(body).await.is_err()
                            || close_after
                        {
                            return;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    fn get(addr: SocketAddr) -> Request<ProxyBody> {
        Request::get(format!("http://{addr}/"))
            .body(super::super::body::empty())
            .unwrap()
    }

    async fn read_all(pool: &Arc<Pool>, addr: SocketAddr) -> Bytes {
        let (resp, lease) = pool.send(get(addr)).await.unwrap();
        assert_eq!(resp.status(), 200, "the request line is in origin form");
        let body = Leased::new(resp.into_body(), lease);
        body.collect().await.unwrap().to_bytes()
    }

    use bytes::Bytes;

    #[tokio::test]
    async fn a_connection_whose_response_was_read_to_the_end_is_used_again() {
        let (addr, accepted) = app(b"hello", false).await;
        let pool = Pool::new(addr, Duration::from_secs(1));
        for _ in 0..5 {
            assert_eq!(read_all(&pool, addr).await, "hello");
        }
        assert_eq!(accepted.load(SeqCst), 1, "one connection for five requests");
        assert_eq!(pool.idle(), 1);
    }

    #[tokio::test]
    async fn a_response_dropped_before_its_end_takes_its_connection_with_it() {
        static BIG: [u8; 1 << 20] = [b'x'; 1 << 20];
        let (addr, accepted) = app(&BIG, false).await;
        let pool = Pool::new(addr, Duration::from_secs(1));
        let (resp, lease) = pool.send(get(addr)).await.unwrap();
        let mut body = Leased::new(resp.into_body(), lease);
        assert!(body.frame().await.unwrap().unwrap().is_data());
        drop(body);
        assert_eq!(pool.idle(), 0, "half a response is not a free connection");
        assert_eq!(read_all(&pool, addr).await.len(), BIG.len());
        assert_eq!(accepted.load(SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_the_app_closed_while_idle_is_replaced_without_an_error() {
        let (addr, accepted) = app(b"ok", true).await;
        let pool = Pool::new(addr, Duration::from_secs(1));
        for _ in 0..50 {
            assert_eq!(read_all(&pool, addr).await, "ok");
        }
        assert_eq!(accepted.load(SeqCst), 50);
    }

    /// A request body that never ends (a client that stalls its upload).
    struct Endless;

    impl Body for Endless {
        type Data = Bytes;
        type Error = super::super::body::BoxError;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn a_connection_still_sending_a_stalled_request_body_is_not_waited_for() {
        let (addr, accepted) = app(b"early", false).await;
        let pool = Pool::new(addr, Duration::from_secs(1));
        // The app answers before it has the body; the client never finishes sending it.
        let req = Request::post(format!("http://{addr}/"))
            .header("content-length", "10")
            .body(Endless.boxed_unsync())
            .unwrap();
        let (resp, lease) = pool.send(req).await.unwrap();
        let body = Leased::new(resp.into_body(), lease);
        assert_eq!(body.collect().await.unwrap().to_bytes(), "early");
        let next = tokio::time::timeout(Duration::from_secs(2), read_all(&pool, addr)).await;
        assert_eq!(
            next.expect("the next request does not wait on another client's upload"),
            "early"
        );
        assert_eq!(accepted.load(SeqCst), 2);
    }

    #[tokio::test]
    async fn connections_idle_longer_than_the_timeout_are_closed_without_traffic() {
        let (addr, _) = app(b"hi", false).await;
        let idle = Duration::from_millis(200);
        let pool = Pool::with_idle_timeout(addr, Duration::from_secs(1), idle);
        assert_eq!(read_all(&pool, addr).await, "hi");
        assert_eq!(pool.idle(), 1);
        tokio::time::sleep(idle * 3).await;
        assert_eq!(
            pool.idle(),
            0,
            "closed by the pool's own timer, no request needed"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_an_error_naming_the_address() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let pool = Pool::new(addr, Duration::from_secs(1));
        let e = pool.send(get(addr)).await.err().unwrap();
        assert!(
            matches!(e, UpstreamError::Connect { .. }) && e.to_string().contains(&addr.to_string()),
            "{e}"
        );
    }
}
