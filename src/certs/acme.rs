//! ACME (RFC 8555) through instant-acme: the account key persisted per directory, HTTP-01
//! answered by the proxy, ARI renewal windows when the CA offers them.

use super::{
    CertError,
    http01::Http01Tokens,
    issuer::{Issued, Issuer},
    store::acme_scope,
};
use crate::{desired::edge::AcmeConfig, store::atomic};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, CertificateIdentifier, ChallengeType,
    Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rustls::pki_types::{CertificateDer, pem::PemObject};
use std::{
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime},
};

/// Registers (or restores) its account on first use, so an unreachable CA at agent start
/// delays public certificates instead of failing the agent.
pub struct AcmeIssuer {
    cfg: AcmeConfig,
    certs_root: std::path::PathBuf,
    account: tokio::sync::OnceCell<Account>,
    scope: String,
    tokens: Arc<Http01Tokens>,
}

/// How many times an order is started over after the CA refused its nonces.
const NONCE_ATTEMPTS: usize = 3;

fn acme(e: instant_acme::Error) -> CertError {
    match &e {
        instant_acme::Error::Api(p)
            if p.r#type.as_deref() == Some("urn:ietf:params:acme:error:badNonce") =>
        {
            CertError::AcmeNonce(e.to_string())
        }
        _ => CertError::Acme(e.to_string()),
    }
}

impl AcmeIssuer {
    pub fn new(cfg: &AcmeConfig, certs_root: &Path, tokens: Arc<Http01Tokens>) -> AcmeIssuer {
        AcmeIssuer {
            scope: acme_scope(&cfg.directory),
            cfg: cfg.clone(),
            certs_root: certs_root.to_path_buf(),
            account: tokio::sync::OnceCell::new(),
            tokens,
        }
    }

    async fn account(&self) -> Result<&Account, CertError> {
        self.account
            .get_or_try_init(|| connect(&self.cfg, &self.certs_root))
            .await
    }
}

/// Restores the account from `<certs>/<scope>/account.json`, or registers one and saves it.
async fn connect(cfg: &AcmeConfig, certs_root: &Path) -> Result<Account, CertError> {
    // instant-acme builds its TLS client from the process default provider.
    super::install_crypto_provider();
    {
        let scope = acme_scope(&cfg.directory);
        let dir = certs_root.join(&scope);
        let io = |p: &Path| {
            let p = p.display().to_string();
            move |e| CertError::Io { path: p, source: e }
        };
        atomic::create_dir(certs_root, 0o700).map_err(io(certs_root))?;
        atomic::create_dir(&dir, 0o700).map_err(io(&dir))?;
        let builder = || match &cfg.ca_bundle {
            Some(pem) => Account::builder_with_root(pem).map_err(acme),
            None => Account::builder().map_err(acme),
        };
        let creds_path = dir.join("account.json");
        let account = match std::fs::read(&creds_path) {
            Ok(bytes) => {
                let creds: AccountCredentials = serde_json::from_slice(&bytes)
                    .map_err(|e| CertError::Invalid(format!("{}: {e}", creds_path.display())))?;
                builder()?.from_credentials(creds).await.map_err(acme)?
            }
            Err(_) => {
                let contact = cfg.email.as_ref().map(|e| format!("mailto:{e}"));
                let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
                let new = NewAccount {
                    contact: &contacts,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                };
                let (account, creds) = builder()?
                    .create(&new, cfg.directory.clone(), None)
                    .await
                    .map_err(acme)?;
                let json = serde_json::to_vec(&creds).expect("credentials serialize");
                atomic::write(&creds_path, &json, 0o600).map_err(io(&creds_path))?;
                account
            }
        };
        Ok(account)
    }
}

#[async_trait::async_trait]
impl Issuer for AcmeIssuer {
    fn scope(&self) -> String {
        self.scope.clone()
    }

    async fn issue(&self, domain: &str, replacing: Option<&str>) -> Result<Issued, CertError> {
        let mut attempt = 1;
        loop {
            match self.issue_once(domain, replacing).await {
                Err(CertError::AcmeNonce(why)) if attempt < NONCE_ATTEMPTS => {
                    tracing::info!(
                        domain,
                        attempt,
                        why,
                        "the CA refused a nonce; ordering again"
                    );
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    async fn renewal_window(&self, chain_pem: &str) -> Option<(SystemTime, SystemTime)> {
        let der = CertificateDer::from_pem_slice(chain_pem.as_bytes()).ok()?;
        let id = CertificateIdentifier::try_from(&der).ok()?;
        let (info, _) = self.account().await.ok()?.renewal_info(&id).await.ok()?;
        let w = info.suggested_window;
        Some((w.start.into(), w.end.into()))
    }
}

impl AcmeIssuer {
    /// One order, start to finish: authorize by HTTP-01, finalize, download the chain.
    async fn issue_once(&self, domain: &str, replacing: Option<&str>) -> Result<Issued, CertError> {
        let ids = [Identifier::Dns(domain.to_string())];
        let replaced = replacing
            .and_then(|pem| CertificateDer::from_pem_slice(pem.as_bytes()).ok())
            .and_then(|der| {
                CertificateIdentifier::try_from(&der)
                    .ok()
                    .map(|c| c.into_owned())
            });
        let mut new = NewOrder::new(&ids);
        if let Some(r) = replaced.clone() {
            new = new.replaces(r);
        }
        let account = self.account().await?;
        let mut order = match account.new_order(&new).await {
            Ok(o) => o,
            // A CA without ARI (or that does not know the old cert) refuses `replaces`.
            Err(_) if replaced.is_some() => account
                .new_order(&NewOrder::new(&ids))
                .await
                .map_err(acme)?,
            Err(e) => return Err(acme(e)),
        };
        let mut tokens = Vec::new();
        let mut authzs = order.authorizations();
        let result = async {
            while let Some(a) = authzs.next().await {
                let mut a = a.map_err(acme)?;
                match a.status {
                    AuthorizationStatus::Pending => {}
                    AuthorizationStatus::Valid => continue,
                    s => {
                        return Err(CertError::Acme(format!(
                            "authorization for {domain} is {s:?}"
                        )));
                    }
                }
                let mut ch = a.challenge(ChallengeType::Http01).ok_or_else(|| {
                    CertError::Acme(format!("the CA offers no http-01 challenge for {domain}"))
                })?;
                self.tokens
                    .insert(&ch.token, ch.key_authorization().as_str());
                tokens.push(ch.token.clone());
                ch.set_ready().await.map_err(acme)?;
            }
            Ok(())
        }
        .await;
        let retry = RetryPolicy::new().timeout(Duration::from_secs(90));
        let status = match result {
            Ok(()) => order.poll_ready(&retry).await.map_err(acme),
            Err(e) => Err(e),
        };
        for t in &tokens {
            self.tokens.remove(t);
        }
        let status = status?;
        if status != OrderStatus::Ready {
            let why = order
                .state()
                .error
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_else(|| format!("order is {status:?}"));
            return Err(CertError::Acme(format!(
                "validation of {domain} failed: {why}"
            )));
        }
        let key = rcgen::KeyPair::generate().map_err(|e| CertError::Invalid(e.to_string()))?;
        let csr = rcgen::CertificateParams::new(vec![domain.to_string()])
            .and_then(|p| p.serialize_request(&key))
            .map_err(|e| CertError::Invalid(e.to_string()))?;
        order.finalize_csr(csr.der()).await.map_err(acme)?;
        let chain_pem = order.poll_certificate(&retry).await.map_err(acme)?;
        Ok(Issued {
            chain_pem,
            key_pem: key.serialize_pem(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(kind: &str) -> instant_acme::Error {
        let p: instant_acme::Problem = serde_json::from_value(serde_json::json!({
            "type": kind, "detail": "JWS has an invalid anti-replay nonce", "status": 400
        }))
        .unwrap();
        instant_acme::Error::Api(p)
    }

    #[test]
    fn a_refused_nonce_is_the_one_acme_error_that_starts_the_order_over() {
        assert!(matches!(
            acme(problem("urn:ietf:params:acme:error:badNonce")),
            CertError::AcmeNonce(m) if m.contains("anti-replay nonce")
        ));
        for other in [
            "urn:ietf:params:acme:error:rateLimited",
            "urn:ietf:params:acme:error:malformed",
        ] {
            assert!(
                matches!(acme(problem(other)), CertError::Acme(_)),
                "{other}"
            );
        }
    }
}
