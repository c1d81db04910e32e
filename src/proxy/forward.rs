//! One request through the edge: checks, routing, then forwarding to the tenant's target
//! (WebSocket upgrades tunnelled), with the target's ticket held until the body ends.

use super::{
    Proxy,
    body::{BoxError, Guarded, Metered, ProxyBody, empty},
    conn::ConnInfo,
    gate::{Gate, Refusal},
    headers,
    limit::{self, Slot},
    pages,
    routes::{Route, rewrite_path},
    target::{Target, Ticket},
    upstream::Leased,
};
use http_body_util::{BodyExt, Limited};
use hyper::{Request, Response, StatusCode, Uri, body::Incoming, header, http::uri::PathAndQuery};
use hyper_util::rt::TokioIo;
use std::{sync::Arc, time::Instant};

const ACME_PREFIX: &str = "/.well-known/acme-challenge/";

pub async fn handle(p: &Proxy, conn: &ConnInfo, req: Request<Incoming>) -> Response<ProxyBody> {
    let started = Instant::now();
    let (resp, gate, host) = route(p, conn, req).await;
    if let Some(g) = &gate {
        g.meter
            .observe(resp.status().as_u16(), started.elapsed().as_secs_f64());
    }
    if p.cfg.access_log {
        tracing::info!(
            target: "berth::access",
            tenant = gate.as_ref().map_or("-", |g| g.tenant.as_str()),
            host = host.as_deref().unwrap_or("-"),
            status = resp.status().as_u16(),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            tls = conn.sni.is_some(),
        );
    }
    resp
}

/// The response, the tenant's gate if the request reached one, and the host asked for.
type Outcome = (Response<ProxyBody>, Option<Arc<Gate>>, Option<String>);

async fn route(p: &Proxy, conn: &ConnInfo, req: Request<Incoming>) -> Outcome {
    if headers::check_framing(req.headers()).is_err() {
        return (pages::bad_request(), None, None);
    }
    let Ok(host) = headers::authority(req.uri(), req.headers()) else {
        return (pages::bad_request(), None, None);
    };
    // A clone shares the request's bytes; `path` borrows it, not the request (which moves on).
    let pq = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let path = pq.as_str();
    if !conn.tls {
        if let Some(token) = path.strip_prefix(ACME_PREFIX)
            && p.http01.answer(token).is_none()
            && let Some(to) = p.challenge_target(&host)
        {
            return (
                relay_challenge(p, &to, &host, pq.clone()).await,
                None,
                Some(host),
            );
        }
        return (plain_http(p, &host, path), None, Some(host));
    }
    // Browsers reuse a connection for every name its certificate covers; ours cover one name.
    if conn.sni.as_deref() != Some(host.as_str()) {
        return (pages::misdirected(), None, Some(host));
    }
    let routes = p.routes.load();
    let (gate, prefix) = match routes.lookup(&host, path) {
        None => return (pages::not_found(), None, Some(host)),
        Some(Route::Redirect { host: to }) => {
            return (
                pages::redirect(&format!("https://{}{path}", p.https_authority(to))),
                None,
                Some(host),
            );
        }
        Some(Route::Tenant { gate, prefix }) => {
            (gate.clone(), prefix.map(|(s, k)| (s.to_string(), k)))
        }
    };
    drop(routes);
    // A sleeping tenant is woken only within its client's share of wakes.
    let client = || headers::client_ip(req.headers(), conn.peer.ip(), &p.cfg.trusted_proxies);
    if gate.is_asleep()
        && let Err(retry) = p.wake_clients.allow(client(), &gate.tenant)
    {
        let secs = retry.as_secs_f64().ceil().max(1.0) as u64;
        return (pages::too_many_requests(secs), Some(gate), Some(host));
    }
    let slot = match gate.limiter.admit(&gate.meter.active) {
        Ok(s) => s,
        Err(l) => return (limited(&gate, l), Some(gate), Some(host)),
    };
    let ticket = match gate.admit(p.cfg.timeouts.max_pause).await {
        Ok(t) => t,
        Err(Refusal::Maintenance | Refusal::PauseExpired) => {
            return (pages::maintenance(), Some(gate), Some(host));
        }
    };
    // A moved tenant's other edge mounts it itself: its requests go on as they came.
    let prefix = prefix.filter(|_| !ticket.target().is_forward());
    let upstream_path = match &prefix {
        None => pq.clone(),
        Some((seg, strip)) => match rewrite_path(path, seg, *strip).parse() {
            Ok(pq) => pq,
            Err(_) => return (pages::bad_request(), Some(gate), Some(host)),
        },
    };
    let resp = forward(
        p,
        conn,
        req,
        Held {
            ticket,
            slot,
            gate: gate.clone(),
        },
        &host,
        upstream_path,
        prefix.as_ref().map(|(s, k)| (s.as_str(), *k)),
    )
    .await;
    (resp, Some(gate), Some(host))
}

/// 429 with Retry-After in whole seconds (at least one), counted by the limit that refused.
fn limited(gate: &Gate, why: limit::Limited) -> Response<ProxyBody> {
    let retry = match why {
        limit::Limited::Rate { retry_after } => {
            gate.meter.rate_limited.inc();
            retry_after.as_secs_f64().ceil().max(1.0) as u64
        }
        limit::Limited::Connections => {
            gate.meter.connection_limited.inc();
            1
        }
    };
    pages::too_many_requests(retry)
}

/// What a forwarded request keeps until its response body (or tunnel) ends: its place on the
/// target (for drains) and in the tenant's in-flight count.
struct Held {
    ticket: Ticket,
    slot: Slot,
    gate: Arc<Gate>,
}

/// Port 80: ACME challenges first, then 308 to HTTPS for known hosts only.
fn plain_http(p: &Proxy, host: &str, path: &str) -> Response<ProxyBody> {
    if let Some(token) = path.strip_prefix(ACME_PREFIX) {
        return match p.http01.answer(token) {
            Some(key_auth) => {
                let mut r = Response::new(super::body::full(key_auth));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    "application/octet-stream".parse().expect("static"),
                );
                r
            }
            None => pages::not_found(),
        };
    }
    let routes = p.routes.load();
    if !routes.knows(host) {
        return pages::not_found();
    }
    pages::redirect(&format!("https://{}{path}", p.https_authority(host)))
}

/// The largest challenge answer relayed (a key authorization is under 100 bytes).
const CHALLENGE_MAX: usize = 4096;

/// A moved tenant's ACME challenge, asked of its other host's HTTP listener: its status and
/// (small) body, or 404 when that host does not answer.
async fn relay_challenge(
    p: &Proxy,
    to: &Target,
    host: &str,
    path: PathAndQuery,
) -> Response<ProxyBody> {
    let req = Request::get(Uri::from(path))
        .header(header::HOST, host)
        .body(empty());
    let Ok(req) = req else {
        return pages::not_found();
    };
    let sent = tokio::time::timeout(p.cfg.timeouts.upstream_response, to.send(req)).await;
    let Ok(Ok((resp, _lease))) = sent else {
        return pages::not_found();
    };
    let status = resp.status();
    let body = Limited::new(resp.into_body(), CHALLENGE_MAX);
    let Ok(Ok(body)) = tokio::time::timeout(p.cfg.timeouts.upstream_response, body.collect()).await
    else {
        return pages::not_found();
    };
    let mut r = Response::new(super::body::full(body.to_bytes()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/octet-stream".parse().expect("static"),
    );
    r
}

async fn forward(
    p: &Proxy,
    conn: &ConnInfo,
    mut req: Request<Incoming>,
    held: Held,
    host: &str,
    path: PathAndQuery,
    mount: Option<(&str, bool)>,
) -> Response<ProxyBody> {
    let meter = held.gate.meter.clone();
    let max_body = held.gate.limiter.quota().max_body.unwrap_or(p.cfg.max_body);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body) {
        return pages::too_large();
    }
    let upgrade = headers::upgrade_of(req.headers());
    let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    if let Some(proto) = &upgrade {
        parts
            .headers
            .insert(header::CONNECTION, "upgrade".parse().expect("static"));
        parts.headers.insert(header::UPGRADE, proto.clone());
    }
    let host_name = host;
    let host = header::HeaderValue::from_str(host)
        .unwrap_or_else(|_| header::HeaderValue::from_static("invalid"));
    headers::set_forwarded(
        &mut parts.headers,
        (conn.peer.ip(), &conn.peer_value),
        "https",
        &host,
        &p.cfg.trusted_proxies,
    );
    if let Some((seg, _)) = mount {
        p.cookie_owners
            .filter_request(&mut parts.headers, host_name, seg);
        if let Ok(v) = format!("/{seg}").parse() {
            parts.headers.insert(headers::X_FORWARDED_PREFIX, v);
        }
    }
    let target = held.ticket.target().clone();
    if target.is_forward() {
        // A moved tenant's request goes to the other host once: one that comes back (an
        // edge pointed at itself, or two hosts at each other) ends here.
        if parts.headers.contains_key(headers::X_BERTH_FORWARDED) {
            return pages::loop_detected();
        }
        parts.headers.insert(
            headers::X_BERTH_FORWARDED,
            header::HeaderValue::from_static("1"),
        );
    }
    // Origin form on the wire (`GET /path`): what every app expects from a proxy.
    parts.uri = Uri::from(path);
    parts.version = hyper::Version::HTTP_11;
    parts.headers.insert(header::HOST, host);
    let body: ProxyBody = Metered::new(Limited::new(body, max_body as usize), meter.received)
        .map_err(BoxError::from)
        .boxed_unsync();
    let sent = target.send(Request::from_parts(parts, body));
    let resp = tokio::select! {
        r = tokio::time::timeout(p.cfg.timeouts.upstream_response, sent) => r,
        _ = target.cancelled() => return pages::gateway_timeout(),
    };
    let (mut resp, lease) = match resp {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, addr = %target.addr, "upstream failed");
            return match client_fault(&e) {
                Some(ClientFault::TooLarge) => pages::too_large(),
                Some(ClientFault::Malformed) => pages::bad_request(),
                None => pages::bad_gateway(),
            };
        }
        Err(_) => return pages::gateway_timeout(),
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client) = client_upgrade {
            let upstream = hyper::upgrade::on(&mut resp);
            tokio::spawn(tunnel(client, upstream, held));
            let (parts, _) = resp.into_parts();
            return Response::from_parts(parts, empty());
        }
        return pages::bad_gateway();
    }
    let (mut parts, body) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    if let Some((seg, strip)) = mount {
        p.cookie_owners
            .scope_response(&mut parts.headers, host_name, seg, strip);
    }
    let body = Leased::new(body, lease);
    let body = Guarded::new(Metered::new(body, meter.sent), (held.ticket, held.slot))
        .map_err(BoxError::from)
        .boxed_unsync();
    Response::from_parts(parts, body)
}

enum ClientFault {
    TooLarge,
    Malformed,
}

/// Whether an upstream failure was caused by the client's request body (too large, or
/// malformed chunked framing such as a bare-LF chunk-size line) rather than by the app. The
/// upstream client reports a failing request body as a "user" error wrapping the body's own
/// error; anything else (refused, reset, a malformed response) is the app's fault: 502.
fn client_fault(e: &(dyn std::error::Error + 'static)) -> Option<ClientFault> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut from_body = false;
    while let Some(err) = cur {
        if err.is::<http_body_util::LengthLimitError>() {
            return Some(ClientFault::TooLarge);
        }
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            from_body |= h.is_user();
        }
        cur = err.source();
    }
    from_body.then_some(ClientFault::Malformed)
}

/// Copies bytes both ways after a 101, until either side closes or a drain cuts it off.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    held: Held,
) {
    let (Ok(c), Ok(u)) = (client.await, upstream.await) else {
        return;
    };
    let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
    let target = held.ticket.target().clone();
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut c, &mut u) => {
            if let Ok((up, down)) = r {
                held.gate.meter.received.inc_by(up);
                held.gate.meter.sent.inc_by(down);
            }
        }
        _ = target.cancelled() => {}
    }
    drop(held);
}
