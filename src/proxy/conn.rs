//! Serving one accepted connection (plain or TLS) with hyper: explicit timeouts and limits,
//! an idle watchdog, and graceful close on shutdown.

use super::{
    Proxy,
    body::{Guarded, ProxyBody},
    forward,
};
use http_body_util::BodyExt;
use hyper::{Request, body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering::SeqCst},
    },
    time::{Duration, Instant},
};
use tokio::io::{AsyncRead, AsyncWrite};

/// What the handler knows about the connection a request came on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
    /// The SNI name the certificate was chosen for (TLS only).
    pub sni: Option<String>,
    /// The peer's address as an X-Forwarded-For value, formatted once per connection.
    pub peer_value: hyper::header::HeaderValue,
}

impl ConnInfo {
    pub fn new(peer: SocketAddr, tls: bool, sni: Option<String>) -> ConnInfo {
        ConnInfo {
            peer,
            tls,
            sni,
            peer_value: super::headers::peer_value(peer.ip()),
        }
    }
}

/// Requests in progress on a connection and when the last one ended, for the idle timeout.
#[derive(Default)]
struct Activity {
    active: AtomicUsize,
    last: Mutex<Option<Instant>>,
}

struct Busy(Arc<Activity>);

impl Activity {
    fn begin(self: &Arc<Self>) -> Busy {
        self.active.fetch_add(1, SeqCst);
        Busy(self.clone())
    }

    /// Whether any request has begun on this connection.
    fn started(&self) -> bool {
        self.active.load(SeqCst) > 0 || self.last.lock().expect("activity lock").is_some()
    }

    fn idle_for(&self, since_open: Instant) -> Duration {
        if self.active.load(SeqCst) > 0 {
            return Duration::ZERO;
        }
        self.last
            .lock()
            .expect("activity lock")
            .unwrap_or(since_open)
            .elapsed()
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.last.lock().expect("activity lock") = Some(Instant::now());
        self.0.active.fetch_sub(1, SeqCst);
    }
}

/// How long a connection accepted just before shutdown may take to send its first request.
/// hyper closes a connection that has not read one yet at once, which resets a client whose
/// request is already in the socket buffer; the kernel queue survives a restart, this does not.
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(2);

fn builder(p: &Proxy, tls: bool) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    // hyper's header-read timeout is silently off without a timer.
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(p.cfg.timeouts.header_read)
        .max_buf_size(p.cfg.max_header_bytes.max(8192));
    // (hyper's default limit of 100 headers; setting it explicitly makes hyper allocate and
    // fill the header index array on every request instead of using an uninitialised one.)
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(100)
        .max_header_list_size(16 * 1024)
        .max_pending_accept_reset_streams(Some(20))
        .max_local_error_reset_streams(Some(1024))
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    if tls { b } else { b.http1_only() }
}

pub async fn serve<I>(
    p: Arc<Proxy>,
    io: I,
    info: ConnInfo,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::default());
    let opened = Instant::now();
    let tls = info.tls;
    let info = Arc::new(info);
    let (proxy, act) = (p.clone(), activity.clone());
    let svc = service_fn(move |req: Request<Incoming>| {
        let (p, info, busy) = (proxy.clone(), info.clone(), act.begin());
        async move {
            // Boxed: the request future is kilobytes; hyper moves the service future into
            // place (and h2 into a task of its own per stream), copying it each time.
            let resp = Box::pin(forward::handle(&p, &info, req)).await;
            Ok::<_, Infallible>(resp.map(|b| -> ProxyBody { Guarded::new(b, busy).boxed_unsync() }))
        }
    });
    let b = builder(&p, tls);
    let conn = b.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let idle = p.cfg.timeouts.idle;
    // A complete first request head is due `header_read` after accept or handshake: hyper's
    // own timer starts only with the first byte (plain) and never for h2 headers left open.
    let first_head_due = tokio::time::Instant::from_std(opened) + p.cfg.timeouts.header_read;
    let mut closing = false;
    let mut shutdown_at: Option<Instant> = None;
    loop {
        let waiting_first = shutdown_at.is_some() && !closing;
        tokio::select! {
            _ = conn.as_mut() => return,
            // Checked again when it fires: a request may have begun since this wait was armed.
            _ = tokio::time::sleep_until(first_head_due), if !activity.started() => {
                if !activity.started() {
                    return;
                }
            }
            _ = shutdown.changed(), if shutdown_at.is_none() => {
                shutdown_at = Some(Instant::now());
                if activity.started() {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(10)), if waiting_first => {
                let late = shutdown_at.is_some_and(|t| t.elapsed() >= FIRST_REQUEST_GRACE);
                if activity.started() || late {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
            _ = tokio::time::sleep(idle / 4), if !closing => {
                if activity.idle_for(opened) >= idle {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}
