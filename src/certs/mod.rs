//! TLS certificates: berth's internal CA, ACME issuance and renewal, on-disk storage, and the
//! in-memory table the proxy's TLS listener resolves SNI against.

pub mod acme;

/// Makes ring the process's rustls provider, as berth's own TLS configs name explicitly, for
/// the libraries that take the default (instant-acme's client). Without it a build that
/// compiles in a second provider (a test dependency's aws-lc-rs) panics on first use.
/// Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
pub mod ca;
pub mod http01;
pub mod issuer;
pub mod limits;
pub mod manager;
pub mod pem;
pub mod policy;
pub mod store;
pub mod table;

#[cfg(test)]
mod tests;

pub use manager::{CertManager, CertRow};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid certificate material: {0}")]
    Invalid(String),
    #[error("ACME: {0}")]
    Acme(String),
    /// The CA refused a request's anti-replay nonce more times than instant-acme retries;
    /// RFC 8555 6.5 makes that a reason to try again, so the issuer starts the order over.
    #[error("ACME: {0}")]
    AcmeNonce(String),
    #[error("rate limited: {0}")]
    RateLimited(String),
    #[error("no ACME issuer is configured (tls.acme)")]
    NoAcme,
    #[error("domain {0:?} is not routed to any tenant")]
    UnknownDomain(String),
    #[error("an order for {0:?} is already running")]
    Busy(String),
}
