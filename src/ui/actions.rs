//! The dashboard's forms: each checks its CSRF token and the request's origin, then makes the
//! API call the CLI would make, as the logged-in principal, and returns to the tenant's page
//! with the outcome.

use super::{Viewer, call, render, session};
use crate::ui::UiState;
use axum::{
    Form,
    extract::{Path, State},
    http::{HeaderMap, Method, StatusCode},
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf: String,
    /// `running` or `stopped` (state); a backup id (restore, verify); a domain (domain-add,
    /// domain-verify).
    #[serde(default)]
    value: String,
    /// The parameter a `parameter` form sets.
    #[serde(default)]
    key: String,
}

/// Why a form was refused, or why what it asked for failed.
#[derive(Debug, thiserror::Error)]
pub enum FormError {
    #[error("backup: {0}")]
    Backup(crate::desired::Invalid),
    #[error("{0}")]
    Domain(crate::desired::Invalid),
    #[error("no such action {0:?}")]
    NoSuchAction(String),
    /// The operation's own error, or the API's answer.
    #[error("{0}")]
    Failed(String),
    #[error("operation {0} is gone")]
    Gone(String),
}

/// The API call a form stands for: method, path, body, and what the flash says when done.
type Call = (Method, String, Option<serde_json::Value>, String);

/// The API call a form stands for, or why it is refused.
fn request(t: &str, action: &str, value: &str, key: &str) -> Result<Call, FormError> {
    let base = format!("/v1/instances/{t}");
    let id = || {
        crate::api::params::backup_ref(value)
            .map(|_| value.to_string())
            .map_err(FormError::Backup)
    };
    // The API's own rule, so the form refuses what the API would, in its words.
    let domain = || {
        crate::desired::domains::check_domain(value)
            .map(|()| value.to_string())
            .map_err(FormError::Domain)
    };
    Ok(match action {
        "start" | "stop" => {
            let state = if action == "start" {
                "running"
            } else {
                "stopped"
            };
            let body = json!({ "state": state });
            (
                Method::PUT,
                format!("{base}/state"),
                Some(body),
                format!("{action} requested"),
            )
        }
        "backup" => (
            Method::POST,
            format!("{base}/backups"),
            None,
            "backed up".into(),
        ),
        "restart" => (
            Method::POST,
            format!("{base}/restart"),
            None,
            "restarted".into(),
        ),
        "parameter" if !key.is_empty() => {
            let body = json!({ "set": { key: value } });
            let done = format!("{key} set");
            (Method::PUT, format!("{base}/parameters"), Some(body), done)
        }
        "restore" => {
            let id = id()?;
            let body = json!({ "from": id });
            let done = format!("restored {id}");
            (Method::POST, format!("{base}/restore"), Some(body), done)
        }
        "verify-backup" => {
            let id = id()?;
            let done = format!("backup {id} verified");
            (
                Method::POST,
                format!("{base}/backups/{id}/verify"),
                Some(json!({})),
                done,
            )
        }
        "domain-add" => {
            let d = domain()?;
            let done = format!("{d} added: publish its proof, then verify");
            (
                Method::POST,
                format!("{base}/domains"),
                Some(json!({ "domain": d })),
                done,
            )
        }
        "domain-verify" => {
            let d = domain()?;
            let uri = format!("{base}/domains/{d}/verify");
            (Method::POST, uri, Some(json!({})), format!("{d} verified"))
        }
        other => return Err(FormError::NoSuchAction(other.into())),
    })
}

pub async fn act(
    v: Viewer,
    State(s): State<UiState>,
    headers: HeaderMap,
    Path((t, action)): Path<(String, String)>,
    Form(f): Form<ActionForm>,
) -> Response {
    let csrf_ok = crate::api::auth::constant_time_eq(f.csrf.as_bytes(), v.csrf.as_bytes());
    if !csrf_ok || session::cross_site(&headers) {
        return render::error(
            StatusCode::FORBIDDEN,
            "the form's CSRF token is missing or stale",
        );
    }
    if let Err(e) = crate::api::params::tenant(&t) {
        return render::error(StatusCode::BAD_REQUEST, &e.to_string());
    }
    let (method, uri, body, done) = match request(&t, &action, f.value.trim(), f.key.trim()) {
        Ok(r) => r,
        Err(e) => return render::error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let a = call(&s, &v.who, method, &uri, body).await;
    if matches!(a.status.as_u16(), 403 | 404) {
        // Not this caller's tenant, or not its to change: no page to go back to.
        return render::error(a.status, &a.error());
    }
    let msg = match outcome(&s, &a).await {
        Ok(()) => done,
        Err(e) => format!("{action} failed: {e}"),
    };
    s.ui.sessions.flash(&v.sid, msg);
    Redirect::to(&format!("/ui/t/{t}")).into_response()
}

/// An answer's outcome; for a long operation (202), its end, waited for here: the operation
/// is the agent's, so a browser that leaves changes nothing.
async fn outcome(s: &UiState, a: &crate::ui::Answer) -> Result<(), FormError> {
    if a.status == StatusCode::ACCEPTED
        && let Some(id) = a.json()["id"].as_str()
    {
        return match s.ops.wait(id).await {
            Some(op) if op.state == crate::ops::OpState::Succeeded => Ok(()),
            Some(op) => Err(FormError::Failed(
                op.error.unwrap_or_else(|| "the operation failed".into()),
            )),
            None => Err(FormError::Gone(id.into())),
        };
    }
    match a.status.is_success() {
        true => Ok(()),
        false => Err(FormError::Failed(a.error())),
    }
}

#[cfg(test)]
mod tests {
    use super::request;

    fn request_(t: &str, action: &str, value: &str) -> Result<super::Call, super::FormError> {
        request(t, action, value, "")
    }

    #[test]
    fn a_form_names_only_a_known_action_and_a_plain_value() {
        assert!(request_("acme", "backup", "").is_ok());
        assert!(request_("acme", "rm", "").is_err());
        assert!(request_("acme", "restore", "../../etc").is_err());
        assert!(request_("acme", "restore", "").is_err());
        assert!(request_("acme", "domain-add", "shop.example.com").is_ok());
        for bad in ["", "a/b", "1.2.3.4", "x y", "?q=1"] {
            assert!(request_("acme", "domain-verify", bad).is_err(), "{bad:?}");
        }
        assert!(
            request_("acme", "parameter", "x").is_err(),
            "a parameter form names its key"
        );
        let (_, uri, body, _) = request("acme", "parameter", "Shop", "site_title").unwrap();
        assert_eq!(uri, "/v1/instances/acme/parameters");
        assert_eq!(body.unwrap()["set"]["site_title"], "Shop");
        let (_, uri, body, _) = request_("acme", "stop", "").unwrap();
        assert_eq!(uri, "/v1/instances/acme/state");
        assert_eq!(body.unwrap()["state"], "stopped");
    }
}
