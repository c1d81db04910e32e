//! Certificates on disk: `certs/<scope>/<domain>/{cert.pem,key.pem,meta.json}`, written
//! atomically, keys 0600. The scope separates the internal CA from each ACME directory, so
//! staging, production and test certificates never mix.

use super::CertError;
use crate::store::atomic;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::path::{Path, PathBuf};

/// What berth remembers about a domain's certificate beside the PEM files.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Meta {
    pub domain: String,
    pub tenant: String,
    /// `internal` or `acme`.
    pub issuer: String,
    pub not_before: u64,
    pub not_after: u64,
    /// Unix time the next renewal is due.
    pub renew_at: u64,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub failures: u32,
    /// Unix time before which no new order is placed (backoff after failures).
    #[serde(default)]
    pub retry_at: u64,
    /// Unix time the CA's renewal window (ARI) was last read for this certificate.
    #[serde(default)]
    pub ari_checked_at: u64,
}

#[derive(Debug, Clone)]
pub struct CertStore {
    root: PathBuf,
}

/// Scope directory name of an ACME directory URL.
pub fn acme_scope(directory: &str) -> String {
    format!(
        "acme-{}",
        &hex::encode(sha2::Sha256::digest(directory.as_bytes()))[..12]
    )
}

pub struct Stored {
    pub chain_pem: String,
    pub key_pem: String,
    pub meta: Meta,
}

impl CertStore {
    pub fn new(root: PathBuf) -> CertStore {
        CertStore { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, scope: &str, domain: &str) -> PathBuf {
        self.root.join(scope).join(domain)
    }

    pub fn save(&self, scope: &str, s: &Stored) -> Result<(), CertError> {
        let dir = self.dir(scope, &s.meta.domain);
        let io = |p: &Path| {
            let p = p.display().to_string();
            move |e| CertError::Io { path: p, source: e }
        };
        for d in [self.root.clone(), self.root.join(scope), dir.clone()] {
            atomic::create_dir(&d, 0o700).map_err(io(&d))?;
        }
        let key = dir.join("key.pem");
        atomic::write(&key, s.key_pem.as_bytes(), 0o600).map_err(io(&key))?;
        let cert = dir.join("cert.pem");
        atomic::write(&cert, s.chain_pem.as_bytes(), 0o644).map_err(io(&cert))?;
        self.save_meta(scope, &s.meta)
    }

    pub fn save_meta(&self, scope: &str, m: &Meta) -> Result<(), CertError> {
        let path = self.dir(scope, &m.domain).join("meta.json");
        let json = serde_json::to_vec_pretty(m).expect("meta serializes");
        atomic::write(&path, &json, 0o644).map_err(|e| CertError::Io {
            path: path.display().to_string(),
            source: e,
        })
    }

    pub fn load(&self, scope: &str, domain: &str) -> Option<Stored> {
        let dir = self.dir(scope, domain);
        let chain_pem = std::fs::read_to_string(dir.join("cert.pem")).ok()?;
        let key_pem = std::fs::read_to_string(dir.join("key.pem")).ok()?;
        let meta = std::fs::read(dir.join("meta.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())?;
        Some(Stored {
            chain_pem,
            key_pem,
            meta,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_certificates_load_back_with_their_key_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = CertStore::new(dir.path().join("certs"));
        let meta = Meta {
            domain: "a.example.com".into(),
            tenant: "a".into(),
            issuer: "internal".into(),
            ..Meta::default()
        };
        store
            .save(
                "internal",
                &Stored {
                    chain_pem: "C".into(),
                    key_pem: "K".into(),
                    meta: meta.clone(),
                },
            )
            .unwrap();
        let back = store.load("internal", "a.example.com").unwrap();
        assert_eq!((back.chain_pem.as_str(), back.key_pem.as_str()), ("C", "K"));
        assert_eq!(back.meta, meta);
        let key = dir.path().join("certs/internal/a.example.com/key.pem");
        assert_eq!(
            std::fs::metadata(key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn acme_directories_get_separate_scopes() {
        assert_ne!(acme_scope("https://a/dir"), acme_scope("https://b/dir"));
    }
}
