//! Path parameters, checked before any handler sees them: a tenant is a DNS label, a domain a
//! dotted name, a backup id plain characters. Anything else is a 400 that names the parameter,
//! so `acme?purge=true` (an encoded `?` in the path) can never stand for `acme`.

use super::error::ApiError;
use crate::desired::{
    Invalid,
    instance::{check_domain, is_tenant_name},
};
use axum::{
    extract::{FromRequestParts, Path},
    http::request::Parts,
};
use std::collections::HashMap;

/// `{tenant}` of the route.
pub struct Tenant(pub String);
/// `{tenant}` and `{domain}`.
pub struct TenantDomain(pub String, pub String);
/// `{domain}` alone.
pub struct Domain(pub String);
/// `{tenant}` and `{id}` (a backup id, or `TENANT:ID`).
pub struct TenantBackup(pub String, pub String);

/// A tenant name, or the reason it is not one.
pub fn tenant(name: &str) -> Result<(), Invalid> {
    if is_tenant_name(name) {
        Ok(())
    } else {
        Err(Invalid::NotTenant(name.into()))
    }
}

/// A backup reference: `ID` or `TENANT:ID`, ids being letters, digits, `-` and `_`.
pub fn backup_ref(r: &str) -> Result<(), Invalid> {
    let plain = |x: &str| {
        !x.is_empty()
            && x.len() <= 64
            && x.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    };
    let ok = match r.split_once(':') {
        Some((t, id)) => is_tenant_name(t) && plain(id),
        None => plain(r),
    };
    if ok {
        Ok(())
    } else {
        Err(Invalid::NotBackupRef(r.into()))
    }
}

async fn raw<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
) -> Result<HashMap<String, String>, ApiError> {
    Path::<HashMap<String, String>>::from_request_parts(parts, state)
        .await
        .map(|Path(m)| m)
        .map_err(|e| ApiError::BadRequest(format!("path: {e}")))
}

fn take(
    m: &mut HashMap<String, String>,
    key: &str,
    check: fn(&str) -> Result<(), Invalid>,
) -> Result<String, ApiError> {
    let v = m.remove(key).unwrap_or_default();
    check(&v).map_err(|why| ApiError::BadRequest(format!("path parameter {key}: {why}")))?;
    Ok(v)
}

impl<S: Send + Sync> FromRequestParts<S> for Tenant {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let mut m = raw(parts, state).await?;
        Ok(Tenant(take(&mut m, "tenant", tenant)?))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Domain {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let mut m = raw(parts, state).await?;
        Ok(Domain(take(&mut m, "domain", check_domain)?))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for TenantDomain {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let mut m = raw(parts, state).await?;
        let t = take(&mut m, "tenant", tenant)?;
        Ok(TenantDomain(t, take(&mut m, "domain", check_domain)?))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for TenantBackup {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let mut m = raw(parts, state).await?;
        let t = take(&mut m, "tenant", tenant)?;
        Ok(TenantBackup(t, take(&mut m, "id", backup_ref)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_query_or_path_characters_are_not_tenants() {
        for bad in [
            "acme?purge=true",
            "../acme",
            "acme/x",
            "",
            "Acme",
            "a b",
            "-a",
        ] {
            assert!(tenant(bad).is_err(), "{bad:?} accepted");
        }
        assert!(tenant("acme-2").is_ok());
    }

    #[test]
    fn backup_references_are_an_id_or_a_tenant_and_an_id() {
        assert!(backup_ref("20261123T024501Z-1a2b").is_ok());
        assert!(backup_ref("acme:20261123T024501Z-1a2b").is_ok());
        for bad in ["../x", "a:b:c", "x?y", "", "Acme:1", "a:"] {
            assert!(backup_ref(bad).is_err(), "{bad:?} accepted");
        }
    }
}
