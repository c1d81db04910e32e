//! Tokens (through the Unix socket only) and the audit log over the API.

use super::{
    AppState,
    body::{JsonBody, Q},
    error::ApiError,
};
use crate::{
    api::auth::{
        Principal,
        tokens::{NewToken, TokenError, TokenRecord},
    },
    audit::{Event, Filter},
};
use axum::{
    Extension, Json,
    extract::{Path, State},
    http::StatusCode,
};
use serde::{Deserialize, Serialize};

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> ApiError {
        match e {
            TokenError::Invalid(m) => ApiError::BadRequest(m),
            TokenError::NotFound(_) => ApiError::NotFound(e.to_string()),
            TokenError::Write { .. } => ApiError::Internal(e.to_string()),
        }
    }
}

/// A new token: its record and, this once, its text.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Created {
    #[serde(flatten)]
    pub record: TokenRecord,
    pub token: String,
}

#[utoipa::path(get, path = "/v1/tokens", tag = "access",
    responses((status = 200, description = "Every token (Unix socket only)", body = Vec<TokenRecord>)))]
pub async fn token_index(State(s): State<AppState>) -> Json<Vec<TokenRecord>> {
    let layout = s.cx.svc.layout();
    Json(
        s.tokens
            .list(&|t| crate::api::auth::tenant_identity(layout, t)),
    )
}

#[utoipa::path(post, path = "/v1/tokens", tag = "access", request_body = NewToken,
    responses((status = 201, description = "The token, shown this once (Unix socket only)", body = Created)))]
pub async fn token_create(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<NewToken>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    // Only tenants that exist: an instance file, and its identity (made now if the first pass
    // has not run yet).
    let (layout, host) = (s.cx.svc.layout(), s.cx.svc.host());
    let exists = |t: &str| {
        let file = host.instances_dir.join(format!("{t}.yaml"));
        let live = file.exists() && !layout.purge_marker(t).exists();
        let id =
            live.then(|| crate::store::identity::ensure(layout, t, Some(&host.backup_dir)).ok());
        id.flatten().map(|id| (id, 0))
    };
    let (rec, token) = s.tokens.create(&req, &exists)?;
    tracing::info!(prefix = %rec.prefix(), name = %rec.name, role = ?rec.role, "token created");
    Ok((
        StatusCode::CREATED,
        Json(Created {
            record: rec.public(),
            token,
        }),
    ))
}

#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "access",
    params(("id" = String, Path, description = "The token's id or bth_ prefix")),
    responses((status = 200, description = "Revoked", body = TokenRecord)))]
pub async fn token_revoke(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<TokenRecord>, ApiError> {
    Ok(Json(s.tokens.revoke(&id)?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(default)]
    pub tenant: Option<String>,
    /// Unix milliseconds.
    #[serde(default)]
    pub since: Option<u64>,
    #[serde(default)]
    pub limit: Option<usize>,
}

/// The audit rows the caller may see: a tenant token, only its own tenants'.
#[utoipa::path(get, path = "/v1/audit", tag = "access", params(AuditQuery),
    responses((status = 200, description = "Audit rows the caller may see, oldest first", body = Vec<Event>)))]
pub async fn audit_index(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    Q(q): Q<AuditQuery>,
) -> Result<Json<Vec<Event>>, ApiError> {
    // Documented as int64 (Unix milliseconds), as JSON tools read it.
    if q.since.is_some_and(|s| s > i64::MAX as u64) {
        return Err(ApiError::BadRequest(
            "since: Unix milliseconds up to 2^63-1".into(),
        ));
    }
    let mut tenants = who.visible();
    if let Some(t) = q.tenant {
        super::params::tenant(&t)?;
        if !who.may_read(&t) {
            return Err(ApiError::NotFound(format!("no instance {t:?}")));
        }
        tenants = Some([t].into());
    }
    // A tenant token reads its tenants' rows of their present identities only.
    let ids = match (&tenants, who.is_operator()) {
        (Some(set), false) => Some(
            set.iter()
                .filter_map(|t| {
                    Some((
                        t.clone(),
                        crate::store::identity::current(s.cx.svc.layout(), t)?,
                    ))
                })
                .collect(),
        ),
        _ => None,
    };
    let filter = Filter {
        tenants,
        ids,
        since_ms: q.since,
        limit: Some(q.limit.unwrap_or(1000).min(100_000)),
    };
    let audit = s.cx.svc.audit().clone();
    let rows = tokio::task::spawn_blocking(move || audit.query(&filter))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(rows))
}
