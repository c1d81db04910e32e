//! The web dashboard, served by the agent on the TCP API listener at `/ui`. Server-rendered
//! (minijinja) and usable without JavaScript; one small script of berth's own refreshes the log
//! tail. Every asset is served from here (a strict Content-Security-Policy allows nothing
//! else). Pages read what the API reads; every change goes through the API's own router, so
//! the dashboard is checked by the same policy and recorded in the same audit log (source
//! `ui`) as the CLI.

pub mod actions;
mod filter;
pub mod pages;
pub mod render;
pub mod session;

use crate::api::{AppState, auth::Principal};
use axum::{
    Form, Router,
    body::Body,
    extract::{FromRequestParts, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts},
    middleware::{self, Next},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use serde::Deserialize;
use session::Sessions;
use std::sync::Arc;
use tower::ServiceExt;

/// The dashboard's own state: its sessions and the last two stats sweeps (for rates).
#[derive(Default)]
pub struct Ui {
    pub sessions: Sessions,
    pub rates: pages::Rates,
    /// The listener serves TLS: cookies are marked `Secure`.
    pub secure: std::sync::atomic::AtomicBool,
}

/// The dashboard's router state: the API's state (every read and change goes through it) and
/// the dashboard's own.
#[derive(Clone)]
pub struct UiState {
    pub api: AppState,
    pub ui: Arc<Ui>,
}

impl std::ops::Deref for UiState {
    type Target = AppState;
    fn deref(&self) -> &AppState {
        &self.api
    }
}

/// The TCP listener's router: the dashboard at `/ui` (its own login: a session cookie, not a
/// bearer header) beside the API behind its bearer check (`api::tcp_api`).
pub fn tcp_router(mut state: AppState, ui: Arc<Ui>, host_token: Option<String>) -> Router {
    state.host_token = host_token.clone();
    let api = crate::api::tcp_api(state.clone(), host_token);
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .nest("/ui/", router(UiState { api: state, ui }))
        .fallback_service(api)
}

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn router(state: UiState) -> Router {
    Router::new()
        .route("/", get(pages::overview))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/t/{tenant}", get(pages::tenant))
        .route("/t/{tenant}/logs", get(pages::logs))
        .route("/t/{tenant}/confirm-restore", get(pages::confirm_restore))
        .route("/t/{tenant}/{action}", post(actions::act))
        .route("/static/berth.css", get(css))
        .route("/static/berth.js", get(js))
        .fallback(|| async { render::error(StatusCode::NOT_FOUND, "no such page") })
        .layer(middleware::from_fn(headers))
        .with_state(state)
}

/// Security headers on every dashboard response.
async fn headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

async fn css() -> Response {
    asset("text/css", include_str!("static/berth.css"))
}

async fn js() -> Response {
    asset("text/javascript", include_str!("static/berth.js"))
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// A logged-in caller: the session and the principal its token names now.
#[derive(Clone)]
pub struct Viewer {
    pub sid: String,
    pub csrf: String,
    pub who: Principal,
}

impl FromRequestParts<UiState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(p: &mut Parts, s: &UiState) -> Result<Viewer, Response> {
        let to_login = || Redirect::to("/ui/login").into_response();
        let sid = session::cookie(&p.headers).ok_or_else(to_login)?;
        let session = s.ui.sessions.get(&sid).ok_or_else(to_login)?;
        // Checked on every request: a revoked or expired token ends its sessions at once.
        let Ok(who) = crate::api::auth::principal_for(s, &session.token) else {
            s.ui.sessions.close(&sid);
            return Err(to_login());
        };
        Ok(Viewer {
            sid,
            csrf: session.csrf,
            who,
        })
    }
}

async fn login_form(headers: HeaderMap, State(s): State<UiState>) -> Response {
    let signed_in = session::cookie(&headers).and_then(|id| s.ui.sessions.get(&id));
    if signed_in.is_some() {
        return Redirect::to("/ui/").into_response();
    }
    render::page("login.html", minijinja::context! {}, StatusCode::OK)
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
}

async fn login(
    State(s): State<UiState>,
    headers: HeaderMap,
    conn: Option<axum::Extension<axum::extract::ConnectInfo<crate::api::auth::Peer>>>,
    Form(f): Form<LoginForm>,
) -> Response {
    let client = conn.map(|c| crate::api::auth::client_ip(c.0.0.0));
    if session::cross_site(&headers) {
        return render::error(StatusCode::FORBIDDEN, "a form from another site");
    }
    let token = f.token.trim().to_string();
    match crate::api::auth::principal_for(&s, &token) {
        Ok(who) => {
            let owner = who.actor.prefix.clone().unwrap_or(who.actor.name.clone());
            s.cx.svc
                .audit()
                .record(&login_event(who.actor, "ok", None, client));
            let id = s.ui.sessions.open(token, owner);
            let secure = s.ui.secure.load(std::sync::atomic::Ordering::Relaxed);
            let cookie = session::set_cookie(&id, secure);
            ([(header::SET_COOKIE, cookie)], Redirect::to("/ui/")).into_response()
        }
        Err(why) => {
            let anonymous = crate::audit::Actor {
                kind: "anonymous".into(),
                name: "-".into(),
                prefix: None,
            };
            s.cx.svc.audit().record(&login_event(
                anonymous,
                "denied",
                Some(why.to_string()),
                client,
            ));
            let ctx = minijinja::context! { error => format!("That token was refused: {why}.") };
            render::page("login.html", ctx, StatusCode::UNAUTHORIZED)
        }
    }
}

fn login_event(
    actor: crate::audit::Actor,
    result: &str,
    error: Option<String>,
    client: Option<String>,
) -> crate::audit::Event {
    crate::audit::Event {
        time: crate::audit::now_ms(),
        request_id: Some(crate::api::auth::request_id()),
        actor,
        source: "ui".into(),
        tenant: None,
        tenant_id: None,
        action: "auth.login".into(),
        target: Some("POST /ui/login".into()),
        result: result.into(),
        status: Some(if result == "ok" { 303 } else { 401 }),
        error,
        client,
        count: None,
        since: None,
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(v: Viewer, State(s): State<UiState>, Form(f): Form<CsrfForm>) -> Response {
    if !crate::api::auth::constant_time_eq(f.csrf.as_bytes(), v.csrf.as_bytes()) {
        return render::error(
            StatusCode::FORBIDDEN,
            "the form's CSRF token is missing or stale",
        );
    }
    s.ui.sessions.close(&v.sid);
    (
        [(header::SET_COOKIE, session::clear_cookie())],
        Redirect::to("/ui/login"),
    )
        .into_response()
}

/// What an API call answered: its status and body.
pub struct Answer {
    pub status: StatusCode,
    pub body: bytes::Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    /// The API's `{"error": …}` text, or the status.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .map_or_else(|| self.status.to_string(), str::to_string)
    }
}

/// Calls the API's own router as `who`, from the dashboard: the same policy check, handler
/// and audit row as the CLI's call.
pub async fn call(
    s: &UiState,
    who: &Principal,
    method: Method,
    uri: &str,
    body: Option<serde_json::Value>,
) -> Answer {
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .expect("a request from a checked path");
    req.extensions_mut().insert(who.clone());
    req.extensions_mut().insert(crate::api::auth::Source("ui"));
    let resp = match crate::api::router(s.api.clone()).oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 4 << 20)
        .await
        .unwrap_or_default();
    Answer { status, body }
}

#[cfg(test)]
mod tests;
