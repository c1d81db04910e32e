//! Custom-domain proof of control: a tenant's custom domain is routed (and given a certificate)
//! only after a token published as DNS TXT `_berth.<domain>` or at an HTTP path is checked.

pub mod book;
pub mod verify;

pub use book::{Binding, DomainBook, Pending};

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
    #[error(
        "no pending claim of {domain:?} by tenant {tenant:?}; run `berth domain add {tenant} {domain}` first"
    )]
    NoClaim { domain: String, tenant: String },
    #[error("proof for {domain:?} not found: {reason}")]
    NotProven { domain: String, reason: String },
}
