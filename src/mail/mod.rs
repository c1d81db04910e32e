//! The shared outbound mail relay: one Postfix + OpenDKIM container (`relay`) that every tenant
//! whose template asks for `mail:` reaches on its own network, and nothing else does. berth's
//! agent answers the relay's SASL logins (`auth`) and its policy (`milter`, `policy`), keeps
//! each tenant's counts and delivery results (from the relay's log, `log`), and makes each
//! tenant domain's DKIM key.

pub mod auth;
pub mod dkim;
mod encoded;
pub mod log;
pub mod milter;
pub mod policy;
pub mod relay;
mod run;
mod service;

pub use run::accounts;
pub use service::{DnsRecord, LastError, Mail, MailReport};

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("mail relay: {0}")]
    Runtime(#[from] crate::runtime::RuntimeError),
    #[error("mail relay: cannot write {path}: {source}")]
    Files {
        path: String,
        source: std::io::Error,
    },
    #[error("mail relay: {0}")]
    Config(String),
    #[error("mail relay did not become ready within 30 s")]
    NotReady,
    #[error("mail relay: DKIM key for {domain}: {output}")]
    Dkim { domain: String, output: String },
}
