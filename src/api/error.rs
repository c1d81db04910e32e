//! API errors: 4xx carry the reason, 5xx carry none (the detail goes to the log).

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// A per-principal limit is reached (429).
    #[error("{0}")]
    TooMany(String),
    /// Logged with its detail; the client sees only "internal error".
    #[error("internal error: {0}")]
    Internal(String),
}

/// A refused value in a request is the client's to fix: 400 with the rule's words.
impl From<crate::desired::Invalid> for ApiError {
    fn from(e: crate::desired::Invalid) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

impl ApiError {
    /// The status and the message a client is shown (an internal error's detail is logged,
    /// not shown).
    pub fn parts(&self) -> (StatusCode, String) {
        match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m.clone()),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m.clone()),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, m.clone()),
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, m.clone()),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, m.clone()),
            ApiError::MethodNotAllowed(m) => (StatusCode::METHOD_NOT_ALLOWED, m.clone()),
            ApiError::TooMany(m) => (StatusCode::TOO_MANY_REQUESTS, m.clone()),
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "api internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error".to_string(),
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = self.parts();
        let mut resp = (
            status,
            Json(serde_json::json!({ "error": message.clone() })),
        )
            .into_response();
        resp.extensions_mut().insert(ErrorText(message));
        resp
    }
}

/// The message an error response carries, for the audit log.
#[derive(Debug, Clone)]
pub struct ErrorText(pub String);
