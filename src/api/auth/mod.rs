//! Who is calling the API and what they may do. The Unix socket is the operator; over TCP a
//! bearer token names a principal: the host's operator token (`api.token_file`) or a token
//! made with `berth token create`, bound to the operator role or to tenants as
//! `tenant-admin` or `tenant-viewer`. Every route's need is in `policy::ROUTES`; the
//! `authorize` layer checks it before the handler runs and writes the audit row after.

mod carry;
pub mod policy;
pub mod tokens;

use crate::{
    api::{AppState, error::ApiError},
    audit::{Actor, Event},
};
use axum::{
    extract::{MatchedPath, RawPathParams, Request, State},
    http::{HeaderValue, Method, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use policy::Need;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Everything, like the Unix socket, except minting tokens.
    Operator,
    /// Its own tenants: status, logs, start/stop/restart, backups, restore, domains.
    TenantAdmin,
    /// Its own tenants, read only.
    TenantViewer,
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub role: Role,
    /// The tenants of a tenant role.
    pub tenants: BTreeSet<String>,
    /// Came through the Unix socket.
    pub socket: bool,
    pub actor: Actor,
}

impl Principal {
    pub fn socket() -> Principal {
        Principal {
            role: Role::Operator,
            tenants: BTreeSet::new(),
            socket: true,
            actor: Actor {
                kind: "operator".into(),
                name: "socket".into(),
                prefix: None,
            },
        }
    }

    /// The host's operator token (`api.token_file`).
    pub fn host_token() -> Principal {
        Principal {
            socket: false,
            actor: Actor {
                kind: "operator".into(),
                name: "api.token_file".into(),
                prefix: None,
            },
            ..Principal::socket()
        }
    }

    pub fn token(rec: &tokens::TokenRecord) -> Principal {
        Principal {
            role: rec.role,
            tenants: rec.tenants.clone(),
            socket: false,
            actor: Actor {
                kind: "token".into(),
                name: rec.name.clone(),
                prefix: Some(rec.prefix()),
            },
        }
    }

    pub fn is_operator(&self) -> bool {
        self.role == Role::Operator
    }

    pub fn may_read(&self, tenant: &str) -> bool {
        self.is_operator() || self.tenants.contains(tenant)
    }

    pub fn may_manage(&self, tenant: &str) -> bool {
        self.is_operator() || (self.role == Role::TenantAdmin && self.tenants.contains(tenant))
    }

    /// The tenants whose rows and entries this principal sees (None: all).
    pub fn visible(&self) -> Option<BTreeSet<String>> {
        (!self.is_operator()).then(|| self.tenants.clone())
    }

    /// Whether `need` is met for `tenant` (the route's `{tenant}`). A tenant outside the
    /// principal's own answers like one that does not exist.
    pub fn check(&self, need: Need, tenant: Option<&str>) -> Result<(), ApiError> {
        let hidden = |t: &str| ApiError::NotFound(format!("no instance {t:?}"));
        match need {
            Need::Socket if self.socket => Ok(()),
            Need::Socket => Err(ApiError::Forbidden(
                "tokens are managed through the agent's Unix socket only".into(),
            )),
            Need::Operator if self.is_operator() => Ok(()),
            Need::Operator => Err(ApiError::Forbidden(
                "this needs the operator; a tenant token reaches its own tenants only".into(),
            )),
            Need::Any => Ok(()),
            Need::Read | Need::Manage => {
                let t = tenant.ok_or_else(|| ApiError::Forbidden("no tenant named".into()))?;
                if !self.may_read(t) {
                    Err(hidden(t))
                } else if need == Need::Manage && !self.may_manage(t) {
                    Err(ApiError::Forbidden(format!(
                        "this token may only read {t:?}"
                    )))
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// Compares without an early exit (`subtle`), so response time says nothing about a token,
/// a CSRF value or a password but its length.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}

/// Where a call came from, set by the listener, never by a TCP client: the Unix socket takes
/// the client's `x-berth-source` (`cli`), the dashboard's own calls are `ui`; anything else is
/// `api`, whatever its headers say.
#[derive(Debug, Clone, Copy)]
pub struct Source(pub &'static str);

pub fn source(req: &Request) -> String {
    req.extensions()
        .get::<Source>()
        .map_or("api", |s| s.0)
        .to_string()
}

/// The peer of a TCP connection (plain or TLS), as handlers see it in `ConnectInfo`.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

impl
    axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>>
    for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Peer {
        Peer(*stream.remote_addr())
    }
}

impl
    axum::extract::connect_info::Connected<
        axum::serve::IncomingStream<'_, crate::api::tls::TlsListener>,
    > for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, crate::api::tls::TlsListener>) -> Peer {
        Peer(*stream.remote_addr())
    }
}

/// The calling client's address, as the TCP listener saw it (None on the Unix socket).
pub fn client(req: &Request) -> Option<String> {
    req.extensions()
        .get::<axum::extract::ConnectInfo<Peer>>()
        .map(|c| client_ip(c.0.0))
}

/// An address as the audit log names a client (an IPv4-mapped IPv6 address as IPv4).
pub fn client_ip(addr: std::net::SocketAddr) -> String {
    addr.ip().to_canonical().to_string()
}

pub fn request_id() -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap_or_default();
    hex::encode(b)
}

/// The Unix socket's principal: the operator, and the source its client names.
pub async fn socket(mut req: Request, next: Next) -> Response {
    let named = req
        .headers()
        .get("x-berth-source")
        .and_then(|v| v.to_str().ok());
    let source = match named {
        Some("cli") => "cli",
        Some("ui") => "ui",
        _ => "api",
    };
    req.extensions_mut().insert(Source(source));
    req.extensions_mut().insert(Principal::socket());
    next.run(req).await
}

/// The TCP listener's authentication: a bearer token becomes the request's principal.
pub async fn authenticate(
    State(s): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string();
    let principal = match principal_for(&s, &given) {
        Ok(p) => p,
        Err(why) => {
            let e = ApiError::Unauthorized(format!("missing or wrong bearer token ({why})"));
            s.cx.svc.audit().record(&refused_login(&req, &e));
            return Err(e);
        }
    };
    req.extensions_mut().insert(principal);
    req.extensions_mut()
        .insert(crate::api::follow::Credential(given));
    Ok(next.run(req).await)
}

/// The principal a token names: the host's operator token or a live `berth token`.
pub fn principal_for(s: &AppState, given: &str) -> Result<Principal, &'static str> {
    let host = s.host_token.as_deref().unwrap_or("");
    if !host.is_empty() && constant_time_eq(given.as_bytes(), host.as_bytes()) {
        return Ok(Principal::host_token());
    }
    let layout = s.cx.svc.layout();
    s.tokens
        .authenticate(given, &|t| tenant_identity(layout, t))
}

/// The identity of tenant `t` as tokens are checked against it: a tenant that still has its
/// directory (running, or removed without purge) has one (made now for a tenant from before
/// identities); a purged one has none.
pub fn tenant_identity(layout: &crate::store::Layout, t: &str) -> Option<(String, u64)> {
    let id = crate::store::identity::of_existing(layout, t)?;
    Some((
        id,
        crate::store::identity::born(layout, t).unwrap_or(u64::MAX),
    ))
}

/// The audit row of the request being served, for a handler that hands its work to a long
/// operation (which writes the row when the work ends).
#[derive(Debug, Clone)]
pub struct PendingAudit(pub Event);

/// On a response: its audit row is written by the operation it started, not by the layer.
#[derive(Debug, Clone, Copy)]
pub struct Deferred;

/// The audit row of a call whose token was refused: what it asked for, never what it sent.
fn refused_login(req: &Request, e: &ApiError) -> Event {
    let path = req.uri().path();
    Event {
        time: crate::audit::now_ms(),
        request_id: Some(request_id()),
        actor: Actor {
            kind: "anonymous".into(),
            name: "-".into(),
            prefix: None,
        },
        source: source(req),
        tenant: None,
        tenant_id: None,
        action: "auth.login".into(),
        target: Some(format!(
            "{} {}",
            req.method(),
            path.chars().take(200).collect::<String>()
        )),
        result: "denied".into(),
        status: Some(401),
        error: Some(e.to_string()),
        client: client(req),
        count: None,
        since: None,
    }
}

/// Checks the route's need, runs the handler, and records changes and refusals in the
/// audit log.
pub async fn authorize(
    State(s): State<AppState>,
    matched: Option<MatchedPath>,
    params: Result<RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    req: Request,
    next: Next,
) -> Response {
    let Some(principal) = req.extensions().get::<Principal>().cloned() else {
        return ApiError::Unauthorized("no principal: not served by a known listener".into())
            .into_response();
    };
    let path = matched.as_ref().map_or("", |m| m.as_str());
    let route = policy::lookup(req.method(), path);
    let need = route.map_or(Need::Operator, |r| r.need);
    let (mut tenant, mut target) = (None, Vec::new());
    if let Ok(params) = &params {
        for (k, v) in params.iter() {
            match k {
                "tenant" => tenant = Some(v.to_string()),
                _ => target.push(format!("{k}={v}")),
            }
        }
    }
    let mut event = Event {
        time: crate::audit::now_ms(),
        request_id: Some(request_id()),
        actor: principal.actor.clone(),
        source: source(&req),
        tenant: tenant.clone(),
        tenant_id: None,
        action: route.map_or("unknown", |r| r.action).to_string(),
        target: (!target.is_empty()).then(|| target.join(" ")),
        result: "ok".into(),
        status: None,
        error: None,
        client: client(&req),
        count: None,
        since: None,
    };
    let mutating = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let mut resp = match principal.check(need, tenant.as_deref()) {
        Err(e) => {
            event.result = "denied".into();
            event.error = Some(e.to_string());
            let resp = e.into_response();
            event.status = Some(resp.status().as_u16());
            s.cx.svc.audit().record(&event);
            resp
        }
        Ok(()) => {
            let mut req = req;
            req.extensions_mut().insert(principal);
            req.extensions_mut().insert(PendingAudit(event.clone()));
            let resp = next.run(req).await;
            // A long operation writes this row itself, with its outcome, when it ends.
            let deferred = resp.extensions().get::<Deferred>().is_some();
            if mutating && !deferred {
                event.status = Some(resp.status().as_u16());
                if !resp.status().is_success() {
                    let refused = matches!(resp.status().as_u16(), 401 | 403);
                    event.result = if refused { "denied" } else { "error" }.into();
                    event.error = resp
                        .extensions()
                        .get::<crate::api::error::ErrorText>()
                        .map(|e| e.0.clone());
                }
                s.cx.svc.audit().record(&event);
            }
            resp
        }
    };
    if let Some(id) = event
        .request_id
        .and_then(|i| HeaderValue::from_str(&i).ok())
    {
        resp.headers_mut().insert("x-request-id", id);
    }
    resp
}
