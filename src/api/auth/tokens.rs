//! API tokens: `bth_<id>_<secret>`, the 8-hex-digit id shown as the display prefix, the
//! 256-bit secret from the OS's CSPRNG. Only the SHA-256 digest of the secret is kept, in
//! `<state>/tokens.json` (0600, written atomically); the token text is shown once, at creation.

use super::{Principal, Role};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    sync::Mutex,
};

/// A tenant's identity now and when it came to be, in Unix seconds (None: no such tenant).
pub type Identities<'a> = &'a dyn Fn(&str) -> Option<(String, u64)>;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Invalid(String),
    #[error("no such token: {0}")]
    NotFound(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A token as kept on disk and listed: everything but the secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// The tenants a tenant role is bound to (empty for the operator role).
    pub tenants: BTreeSet<String>,
    /// Each bound tenant's identity when the token was made (`store::identity`): once a
    /// tenant of that name has another identity (purged, perhaps added again), the token is
    /// revoked.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(ignore)]
    pub tenant_ids: BTreeMap<String, String>,
    /// Hex SHA-256 of the secret.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    #[schema(ignore)]
    pub digest: String,
    /// Unix seconds.
    pub created: u64,
    pub expires: Option<u64>,
    pub last_used: Option<u64>,
    pub revoked: Option<u64>,
}

impl TokenRecord {
    pub fn prefix(&self) -> String {
        format!("bth_{}", self.id)
    }

    /// The record without its digest, for listings.
    pub fn public(&self) -> TokenRecord {
        TokenRecord {
            digest: String::new(),
            ..self.clone()
        }
    }
}

#[derive(Default, Serialize, Deserialize)]
struct File {
    tokens: Vec<TokenRecord>,
}

/// What `berth token create` asks for.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub role: Role,
    #[serde(default)]
    pub tenants: BTreeSet<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// Seconds from now; None only with `no_expiry`.
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub no_expiry: bool,
}

pub struct TokenStore {
    path: PathBuf,
    inner: Mutex<Vec<TokenRecord>>,
}

/// How often a token's last use is written to disk (it is kept in memory between).
const LAST_USED_EVERY: u64 = 60;

pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn random_hex(bytes: usize) -> Result<String, TokenError> {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).map_err(|e| TokenError::Invalid(format!("no randomness: {e}")))?;
    Ok(hex::encode(b))
}

impl TokenStore {
    /// The kept tokens; an unreadable file means none (every token is refused, the socket
    /// still works), said in the log.
    pub fn open(path: PathBuf) -> TokenStore {
        let tokens = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice::<File>(&b)
                .map(|f| f.tokens)
                .unwrap_or_else(|e| {
                    tracing::error!(path = %path.display(), error = %e, "unreadable token file: every token is refused");
                    vec![]
                }),
            Err(_) => vec![],
        };
        TokenStore {
            path,
            inner: Mutex::new(tokens),
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Vec<TokenRecord>> {
        self.inner.lock().expect("token lock")
    }

    pub(super) fn save(&self, tokens: &[TokenRecord]) -> Result<(), TokenError> {
        let f = File {
            tokens: tokens.to_vec(),
        };
        let json = serde_json::to_vec_pretty(&f).expect("tokens serialize");
        crate::store::atomic::write(&self.path, &json, 0o600).map_err(|source| TokenError::Write {
            path: self.path.clone(),
            source,
        })
    }

    /// Makes a token; returns its record and its text (shown once, never kept). A tenant
    /// token only for tenants that exist, bound to their identities.
    pub fn create(
        &self,
        req: &NewToken,
        ids: Identities,
    ) -> Result<(TokenRecord, String), TokenError> {
        validate(req)?;
        let mut tenant_ids = BTreeMap::new();
        for t in &req.tenants {
            let (id, _) = ids(t).ok_or_else(|| {
                TokenError::Invalid(format!(
                    "--tenant {t:?}: no such tenant (a token is made for tenants that exist)"
                ))
            })?;
            tenant_ids.insert(t.clone(), id);
        }
        let id = random_hex(4)?;
        let secret = random_hex(32)?;
        let now = unix_now();
        let rec = TokenRecord {
            name: req.name.clone().unwrap_or_else(|| format!("token-{id}")),
            id: id.clone(),
            role: req.role,
            tenants: req.tenants.clone(),
            tenant_ids,
            digest: digest(&secret),
            created: now,
            expires: req.expires_in.map(|s| now.saturating_add(s)),
            last_used: None,
            revoked: None,
        };
        let mut tokens = self.lock();
        if tokens
            .iter()
            .any(|t| t.name == rec.name && t.revoked.is_none())
        {
            return Err(TokenError::Invalid(format!(
                "a token named {:?} exists; revoke it or pick another name",
                rec.name
            )));
        }
        let mut next = tokens.clone();
        next.push(rec.clone());
        self.save(&next)?;
        *tokens = next;
        Ok((rec, format!("bth_{id}_{secret}")))
    }

    /// Every token; those whose tenants have another identity now are revoked first.
    pub fn list(&self, ids: Identities) -> Vec<TokenRecord> {
        let mut tokens = self.lock();
        let mut next = tokens.clone();
        let changed = next.iter_mut().fold(false, |c, t| bind(t, ids) | c);
        if changed {
            match self.save(&next) {
                Ok(()) => *tokens = next,
                Err(e) => tracing::warn!(error = %e, "cannot record revoked tokens"),
            }
        }
        tokens.iter().map(TokenRecord::public).collect()
    }

    /// Revokes the token with this id or display prefix.
    pub fn revoke(&self, id: &str) -> Result<TokenRecord, TokenError> {
        let id = id.strip_prefix("bth_").unwrap_or(id);
        let mut tokens = self.lock();
        let mut next = tokens.clone();
        let rec = next
            .iter_mut()
            .find(|t| t.id == id)
            .ok_or_else(|| TokenError::NotFound(id.to_string()))?;
        rec.revoked.get_or_insert_with(unix_now);
        let rec = rec.public();
        self.save(&next)?;
        *tokens = next;
        Ok(rec)
    }

    /// The principal a presented token stands for; Err says why it is refused (without
    /// saying whether the id exists). A token whose tenant is no longer the identity it was
    /// made for is revoked here.
    pub fn authenticate(
        &self,
        presented: &str,
        ids: Identities,
    ) -> Result<Principal, &'static str> {
        let refused = "unknown, expired or revoked token";
        let (id, secret) = presented
            .strip_prefix("bth_")
            .and_then(|r| r.split_once('_'))
            .ok_or(refused)?;
        let given = digest(secret);
        let now = unix_now();
        let mut tokens = self.lock();
        let rec = tokens.iter_mut().find(|t| t.id == id).ok_or(refused)?;
        if !super::constant_time_eq(given.as_bytes(), rec.digest.as_bytes())
            || rec.revoked.is_some()
            || rec.expires.is_some_and(|e| e <= now)
        {
            return Err(refused);
        }
        let rebound = bind(rec, ids);
        if rec.revoked.is_some() {
            let snapshot = tokens.clone();
            drop(tokens);
            if let Err(e) = self.save(&snapshot) {
                tracing::warn!(error = %e, "cannot record a revoked token");
            }
            return Err(refused);
        }
        let stale = rebound || rec.last_used.is_none_or(|u| now >= u + LAST_USED_EVERY);
        rec.last_used = Some(now);
        let p = Principal::token(rec);
        if stale {
            let snapshot = tokens.clone();
            drop(tokens);
            if let Err(e) = self.save(&snapshot) {
                tracing::warn!(error = %e, "cannot record a token's last use");
            }
        }
        Ok(p)
    }
}

/// Checks a tenant token against its tenants' identities now: one made before identities is
/// bound to them; one whose tenant is gone or is another identity now is revoked. Whether the
/// record changed.
fn bind(rec: &mut TokenRecord, ids: Identities) -> bool {
    if rec.revoked.is_some() || rec.tenants.is_empty() {
        return false;
    }
    let now: BTreeMap<String, Option<(String, u64)>> =
        rec.tenants.iter().map(|t| (t.clone(), ids(t))).collect();
    let same = match rec.tenant_ids.is_empty() {
        // From before identities: bound only if each tenant exists and came to be before the
        // token was made (a name purged and reused since is another tenant).
        true => now
            .values()
            .all(|v| v.as_ref().is_some_and(|(_, born)| *born <= rec.created)),
        false => now.iter().all(|(t, v)| {
            v.as_ref()
                .is_some_and(|(id, _)| rec.tenant_ids.get(t) == Some(id))
        }),
    };
    if !same {
        tracing::warn!(token = %rec.prefix(), "token revoked: a tenant it was made for is gone");
        rec.revoked = Some(unix_now());
        return true;
    }
    if rec.tenant_ids.is_empty() {
        rec.tenant_ids = now
            .into_iter()
            .filter_map(|(t, v)| Some((t, v?.0)))
            .collect();
        return true;
    }
    false
}

fn validate(req: &NewToken) -> Result<(), TokenError> {
    let bad = |m: &str| Err(TokenError::Invalid(m.into()));
    match (req.role, req.tenants.is_empty()) {
        (Role::Operator, false) => {
            return bad("an operator token is bound to no tenant (--tenant)");
        }
        (Role::TenantAdmin | Role::TenantViewer, true) => {
            return bad("a tenant token needs at least one --tenant");
        }
        _ => {}
    }
    if let Some(t) = req
        .tenants
        .iter()
        .find(|t| !crate::desired::instance::is_tenant_name(t))
    {
        return Err(TokenError::Invalid(format!(
            "--tenant {t:?} is not a tenant name (a DNS label of at most 40 characters)"
        )));
    }
    if let Some(n) = &req.name
        && (n.is_empty()
            || n.len() > 64
            || !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
    {
        return bad("--name: 1 to 64 of a-z, A-Z, 0-9, '-', '_', '.'");
    }
    match (req.expires_in, req.no_expiry) {
        (None, false) => bad("a token needs --expires (e.g. 30d), or --no-expiry"),
        (Some(_), true) => bad("--expires and --no-expiry exclude each other"),
        (Some(0), _) => bad("--expires must be in the future"),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(t: &str) -> Option<(String, u64)> {
        Some((format!("{t}-id"), 0))
    }

    fn new(role: Role, tenants: &[&str], expires: Option<u64>) -> NewToken {
        NewToken {
            role,
            tenants: tenants.iter().map(|s| s.to_string()).collect(),
            name: None,
            expires_in: expires,
            no_expiry: expires.is_none(),
        }
    }

    #[test]
    fn a_token_authenticates_until_revoked_and_only_its_digest_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let s = TokenStore::open(path.clone());
        let (rec, text) = s
            .create(&new(Role::TenantAdmin, &["acme"], Some(3600)), &ids)
            .unwrap();
        assert!(text.starts_with(&format!("{}_", rec.prefix())));
        let on_disk = std::fs::read_to_string(&path).unwrap();
        let secret = text.rsplit('_').next().unwrap();
        assert!(!on_disk.contains(secret), "the secret is never written");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let p = s.authenticate(&text, &ids).unwrap();
        assert!(p.may_read("acme") && p.may_manage("acme") && !p.may_read("globex"));
        assert!(!p.is_operator());
        // Reopened from disk: the same token still works, last use recorded.
        let again = TokenStore::open(path.clone());
        assert!(again.authenticate(&text, &ids).is_ok());
        assert!(again.list(&ids)[0].last_used.is_some());
        assert!(
            again.list(&ids)[0].digest.is_empty(),
            "listings carry no digest"
        );
        again.revoke(&rec.prefix()).unwrap();
        assert!(again.authenticate(&text, &ids).is_err());
        assert!(TokenStore::open(path).authenticate(&text, &ids).is_err());
    }

    #[test]
    fn wrong_expired_and_malformed_tokens_are_refused_alike() {
        let dir = tempfile::tempdir().unwrap();
        let s = TokenStore::open(dir.path().join("tokens.json"));
        let (_, text) = s
            .create(&new(Role::TenantViewer, &["acme"], Some(1)), &ids)
            .unwrap();
        let mut wrong = text.clone();
        wrong.pop();
        wrong.push('x');
        for t in [
            wrong.as_str(),
            "",
            "bth_",
            "bth__",
            "Bearer x",
            "bth_zz_zz",
            "\u{0}\u{ffff}",
        ] {
            assert_eq!(
                s.authenticate(t, &ids).unwrap_err(),
                "unknown, expired or revoked token"
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(s.authenticate(&text, &ids).is_err(), "expired");
    }

    #[test]
    fn a_token_request_that_makes_no_sense_is_refused_with_the_argument_named() {
        let dir = tempfile::tempdir().unwrap();
        let s = TokenStore::open(dir.path().join("tokens.json"));
        let cases = [
            (new(Role::Operator, &["acme"], Some(60)), "--tenant"),
            (new(Role::TenantAdmin, &[], Some(60)), "--tenant"),
            (new(Role::TenantAdmin, &["../etc"], Some(60)), "--tenant"),
            (
                NewToken {
                    no_expiry: false,
                    ..new(Role::TenantAdmin, &["acme"], None)
                },
                "--expires",
            ),
            (
                NewToken {
                    no_expiry: true,
                    ..new(Role::TenantAdmin, &["acme"], Some(5))
                },
                "--no-expiry",
            ),
            (
                NewToken {
                    name: Some("a b".into()),
                    ..new(Role::TenantAdmin, &["acme"], Some(5))
                },
                "--name",
            ),
        ];
        for (req, named) in cases {
            let e = s.create(&req, &ids).unwrap_err().to_string();
            assert!(e.contains(named), "{e}");
        }
        assert!(s.list(&ids).is_empty(), "nothing half-made");
        let named = NewToken {
            name: Some("ci".into()),
            ..new(Role::Operator, &[], Some(60))
        };
        s.create(&named, &ids).unwrap();
        assert!(
            s.create(&named, &ids)
                .unwrap_err()
                .to_string()
                .contains("exists")
        );
    }

    #[test]
    fn a_token_is_only_made_for_tenants_that_exist() {
        let dir = tempfile::tempdir().unwrap();
        let s = TokenStore::open(dir.path().join("tokens.json"));
        let only_acme = |t: &str| (t == "acme").then(|| ("acme-1".to_string(), 0));
        let e = s
            .create(
                &new(Role::TenantAdmin, &["acme", "newco"], Some(60)),
                &only_acme,
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("newco") && e.contains("no such tenant"), "{e}");
        assert!(s.list(&only_acme).is_empty(), "nothing made");
    }

    #[test]
    fn a_token_dies_with_the_identity_of_its_tenant_not_with_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let s = TokenStore::open(dir.path().join("tokens.json"));
        let first = |_: &str| Some(("id-1".to_string(), 0));
        let (_, text) = s
            .create(&new(Role::TenantAdmin, &["chkpg"], Some(3600)), &first)
            .unwrap();
        assert!(s.authenticate(&text, &first).is_ok());
        // Purged and added again under the same name: another identity.
        let second = |_: &str| Some(("id-2".to_string(), 0));
        assert!(s.authenticate(&text, &second).is_err());
        assert!(s.authenticate(&text, &first).is_err(), "stays revoked");
        assert!(s.list(&second)[0].revoked.is_some());
        // Purged, not added again.
        let (_, other) = s
            .create(&new(Role::TenantViewer, &["chkpg"], Some(3600)), &second)
            .unwrap();
        assert!(s.authenticate(&other, &|_: &str| None).is_err());
    }

    #[test]
    fn a_token_from_before_identities_is_bound_at_its_next_use_if_its_tenant_is_older() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let s = TokenStore::open(path.clone());
        let (rec, text) = s
            .create(&new(Role::TenantAdmin, &["acme"], Some(3600)), &ids)
            .unwrap();
        let (_, later) = s
            .create(&new(Role::TenantAdmin, &["acme"], Some(3600)), &ids)
            .unwrap();
        // As written by a berth without identities.
        let mut f: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for t in f["tokens"].as_array_mut().unwrap() {
            t.as_object_mut().unwrap().remove("tenant_ids");
        }
        std::fs::write(&path, serde_json::to_vec(&f).unwrap()).unwrap();
        let s = TokenStore::open(path.clone());
        let old = |_: &str| Some(("legacy".to_string(), rec.created));
        assert!(s.authenticate(&text, &old).is_ok());
        assert!(
            TokenStore::open(path.clone())
                .authenticate(&text, &old)
                .is_ok()
        );
        let new_one = |_: &str| Some(("new".to_string(), rec.created));
        assert!(
            TokenStore::open(path.clone())
                .authenticate(&text, &new_one)
                .is_err()
        );
        // The name purged and reused after the token was made: another tenant.
        let reborn = |_: &str| Some(("reborn".to_string(), rec.created + 10));
        assert!(
            TokenStore::open(path)
                .authenticate(&later, &reborn)
                .is_err()
        );
    }
}
