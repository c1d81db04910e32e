//! The responses the proxy writes itself. None names a tenant, an address or an error cause.

use super::body::{ProxyBody, empty, full};
use hyper::{Response, StatusCode, header};

fn page(status: StatusCode, title: &str, text: &str) -> Response<ProxyBody> {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body style=\"font-family:sans-serif;max-width:40em;margin:4em auto\"><h1>{title}</h1>\
         <p>{text}</p></body></html>\n"
    );
    let mut r = Response::new(full(html));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        "text/html; charset=utf-8".parse().expect("static"),
    );
    h.insert(header::CACHE_CONTROL, "no-store".parse().expect("static"));
    r
}

/// Unknown host or path: the same page whatever the host, so probing reveals no tenant.
pub fn not_found() -> Response<ProxyBody> {
    plain(StatusCode::NOT_FOUND, "404 page not found\n")
}

pub fn maintenance() -> Response<ProxyBody> {
    let mut r = page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Down for maintenance",
        "This site is temporarily unavailable. Please try again in a few minutes.",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, "30".parse().expect("static"));
    r
}

pub fn bad_gateway() -> Response<ProxyBody> {
    page(
        StatusCode::BAD_GATEWAY,
        "Bad gateway",
        "The site did not answer. Please try again shortly.",
    )
}

pub fn gateway_timeout() -> Response<ProxyBody> {
    page(
        StatusCode::GATEWAY_TIMEOUT,
        "Gateway timeout",
        "The site took too long to answer.",
    )
}

/// A moved tenant's request that came back to an edge that forwarded it already.
pub fn loop_detected() -> Response<ProxyBody> {
    page(
        StatusCode::LOOP_DETECTED,
        "Loop detected",
        "This site's request went around between its hosts.",
    )
}

pub fn plain(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut r = Response::new(full(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        "text/plain; charset=utf-8".parse().expect("static"),
    );
    r
}

/// 400 for requests the proxy refuses to forward; the connection is closed after it.
pub fn bad_request() -> Response<ProxyBody> {
    let mut r = plain(StatusCode::BAD_REQUEST, "400 bad request\n");
    r.headers_mut()
        .insert(header::CONNECTION, "close".parse().expect("static"));
    r
}

pub fn misdirected() -> Response<ProxyBody> {
    plain(StatusCode::MISDIRECTED_REQUEST, "421 misdirected request\n")
}

pub fn too_large() -> Response<ProxyBody> {
    let mut r = plain(
        StatusCode::PAYLOAD_TOO_LARGE,
        "413 request body too large\n",
    );
    r.headers_mut()
        .insert(header::CONNECTION, "close".parse().expect("static"));
    r
}

/// 429 when the tenant's plan refuses more now; Retry-After says when to come back.
pub fn too_many_requests(retry_after_secs: u64) -> Response<ProxyBody> {
    let mut r = plain(StatusCode::TOO_MANY_REQUESTS, "429 too many requests\n");
    r.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from(retry_after_secs),
    );
    r
}

/// 308 keeps method and body; `Connection: close` because the client moves to another port.
pub fn redirect(location: &str) -> Response<ProxyBody> {
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if let Ok(v) = location.parse() {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CONNECTION, "close".parse().expect("static"));
    r
}
