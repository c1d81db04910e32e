//! PEM ↔ rustls types, and reading validity dates from a certificate.

use super::CertError;
use rustls::{
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    sign::CertifiedKey,
};
use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// The certificates in a PEM text (at least one).
pub fn certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| CertError::Invalid(format!("certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(CertError::Invalid("certificate chain is empty".into()));
    }
    Ok(chain)
}

/// A certificate chain and key ready for the TLS resolver.
pub fn certified_key(chain_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>, CertError> {
    let chain = certs(chain_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| CertError::Invalid(format!("private key: {e}")))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| CertError::Invalid(format!("private key: {e}")))?;
    Ok(Arc::new(CertifiedKey::new(chain, signer)))
}

/// notBefore and notAfter of the first certificate in `chain_pem`.
pub fn validity(chain_pem: &str) -> Result<(SystemTime, SystemTime), CertError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(chain_pem.as_bytes())
        .map_err(|e| CertError::Invalid(format!("PEM: {e}")))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| CertError::Invalid(format!("X.509: {e}")))?;
    let at = |t: i64| UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
    let v = cert.validity();
    Ok((at(v.not_before.timestamp()), at(v.not_after.timestamp())))
}

pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

pub fn from_unix(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(s)
}
