//! The boundary to a public CA: the ACME implementation, and the clock the manager reads.

use super::CertError;
use std::time::SystemTime;

/// A certificate chain and its key, as PEM.
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
}

#[async_trait::async_trait]
pub trait Issuer: Send + Sync {
    /// Directory-derived scope for on-disk storage.
    fn scope(&self) -> String;
    /// Obtains a certificate for `domain` (answering the challenge through the proxy).
    async fn issue(&self, domain: &str, replacing: Option<&str>) -> Result<Issued, CertError>;
    /// The CA's suggested renewal window for `chain_pem` (ARI), if it offers one.
    async fn renewal_window(&self, chain_pem: &str) -> Option<(SystemTime, SystemTime)>;
}

pub trait Clock: Send + Sync {
    fn now(&self) -> SystemTime;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}
