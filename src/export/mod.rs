//! berth's tenants handed to other engines: `berth export kubernetes` renders each tenant as
//! typed Kubernetes objects (a namespace with its quota, policies, workloads and ingress).

pub mod kubernetes;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("tenant {tenant}: {reason}")]
    Unsupported { tenant: String, reason: String },
    #[error("tenant {0:?} has no valid instance file here")]
    UnknownTenant(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("generating a secret: {0}")]
    Random(getrandom::Error),
}
