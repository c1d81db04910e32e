//! Request bodies and query strings whose rejections answer in the API's one error shape,
//! `{"error": "…"}` (axum's own extractors answer in plain text).

use super::error::ApiError;
use axum::{
    extract::{FromRequest, FromRequestParts, Json, Query, Request, rejection},
    http::request::Parts,
};
use serde::de::DeserializeOwned;

/// A JSON body (`Content-Type: application/json`).
pub struct JsonBody<T>(pub T);

/// A query string.
pub struct Q<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(v)| JsonBody(v))
            .map_err(|r| match r {
                rejection::JsonRejection::MissingJsonContentType(_) => ApiError::BadRequest(
                    "send the body as JSON with Content-Type: application/json".into(),
                ),
                other => ApiError::BadRequest(format!("body: {}", other.body_text())),
            })
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Q(v))
            .map_err(|r| ApiError::BadRequest(format!("query: {}", r.body_text())))
    }
}
