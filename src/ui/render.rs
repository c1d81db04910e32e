//! The dashboard's templates (embedded, autoescaped) and the filters they use for figures.

use axum::{
    http::StatusCode,
    response::{Html, IntoResponse, Response},
};
use minijinja::{Environment, Value};
use std::sync::OnceLock;

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("login.html", include_str!("templates/login.html")),
    ("overview.html", include_str!("templates/overview.html")),
    ("tenant.html", include_str!("templates/tenant.html")),
    ("error.html", include_str!("templates/error.html")),
    ("audit.html", include_str!("templates/audit.html")),
    ("confirm.html", include_str!("templates/confirm.html")),
];

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, src) in TEMPLATES {
            env.add_template(name, src)
                .expect("the dashboard's templates parse");
        }
        env.add_filter("bytes", |v: Option<u64>| {
            v.map_or("-".to_string(), crate::human::human_bytes)
        });
        env.add_filter("ago", |v: Option<u64>| {
            v.map_or("-".to_string(), crate::human::relative)
        });
        env.add_filter("ms_ago", |v: Option<u64>| {
            v.map_or("-".to_string(), |ms| crate::human::relative(ms / 1000))
        });
        env.add_filter("pct", |v: Option<f64>| {
            v.map_or("-".to_string(), |p| format!("{p:.1} %"))
        });
        env.add_filter("rate", |v: Option<f64>| {
            v.map_or("-".to_string(), |r| format!("{r:.1}/s"))
        });
        env
    })
}

/// Renders `name` with `ctx`; a template error is an error page, never a panic.
pub fn page(name: &str, ctx: Value, status: StatusCode) -> Response {
    match env().get_template(name).and_then(|t| t.render(ctx)) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %e, "dashboard template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("template error".to_string()),
            )
                .into_response()
        }
    }
}

pub fn error(status: StatusCode, message: &str) -> Response {
    page(
        "error.html",
        minijinja::context! { status => status.as_u16(), reason => status.canonical_reason(), message },
        status,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_template_parses_and_escapes_what_it_shows() {
        let r = error(StatusCode::NOT_FOUND, "<script>alert(1)</script>");
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let html = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        let html = String::from_utf8_lossy(&html);
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<script>alert"), "{html}");
    }
}
