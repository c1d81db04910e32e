//! berth's internal CA: created on first start (key 0600), it signs a certificate for every
//! tenant domain until a public one exists. Operators export `ca.pem` to trust it in tests.

use super::CertError;
use crate::store::atomic;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use std::{path::Path, time::Duration};
use time::OffsetDateTime;

pub struct InternalCa {
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// Lifetime of a leaf from the internal CA (renewed at a third left, like public ones).
pub const LEAF_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);

impl InternalCa {
    /// Loads `dir/ca.pem` + `dir/ca.key`, or creates them.
    pub fn load_or_create(dir: &Path) -> Result<InternalCa, CertError> {
        let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
        let io = |p: &Path| {
            let p = p.display().to_string();
            move |e: std::io::Error| CertError::Io { path: p, source: e }
        };
        if cert_path.exists() && key_path.exists() {
            let cert_pem = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
            let key_pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
            let key = KeyPair::from_pem(&key_pem).map_err(rc)?;
            let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(rc)?;
            return Ok(InternalCa { cert_pem, issuer });
        }
        atomic::create_dir(dir, 0o700).map_err(io(dir))?;
        let key = KeyPair::generate().map_err(rc)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rc)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "berth internal CA");
        dn.push(DnType::OrganizationName, "berth");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(3650);
        let cert = params.self_signed(&key).map_err(rc)?;
        let cert_pem = cert.pem();
        atomic::write(&key_path, key.serialize_pem().as_bytes(), 0o600).map_err(io(&key_path))?;
        atomic::write(&cert_path, cert_pem.as_bytes(), 0o644).map_err(io(&cert_path))?;
        let issuer = Issuer::new(params, key);
        Ok(InternalCa { cert_pem, issuer })
    }

    /// A fresh key and a certificate for `domain`, chained to this CA: (chain PEM, key PEM).
    pub fn issue(&self, domain: &str, lifetime: Duration) -> Result<(String, String), CertError> {
        self.issue_names(&[domain.to_string()], lifetime)
    }

    /// A certificate for several names: DNS names, and IP addresses as IP addresses (the
    /// API's listener, reached as `https://10.0.0.5:7443`).
    pub fn issue_names(
        &self,
        names: &[String],
        lifetime: Duration,
    ) -> Result<(String, String), CertError> {
        let first = names
            .first()
            .ok_or_else(|| CertError::Invalid("a certificate needs a name".into()))?;
        let key = KeyPair::generate().map_err(rc)?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(rc)?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, first.as_str());
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + time::Duration::seconds(lifetime.as_secs() as i64);
        let cert = params.signed_by(&key, &self.issuer).map_err(rc)?;
        Ok((
            format!("{}{}", cert.pem(), self.cert_pem),
            key.serialize_pem(),
        ))
    }
}

fn rc(e: rcgen::Error) -> CertError {
    CertError::Invalid(format!("certificate generation: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_created_once_with_a_private_key_only_root_can_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ca = InternalCa::load_or_create(dir.path()).unwrap();
        let again = InternalCa::load_or_create(dir.path()).unwrap();
        assert_eq!(ca.cert_pem, again.cert_pem);
        let mode = std::fs::metadata(dir.path().join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn leaves_chain_to_the_ca_and_carry_their_domain() {
        let dir = tempfile::tempdir().unwrap();
        let ca = InternalCa::load_or_create(dir.path()).unwrap();
        let (chain, key) = ca.issue("acme.example.com", LEAF_LIFETIME).unwrap();
        assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
        let ck = super::super::pem::certified_key(&chain, &key).unwrap();
        assert_eq!(ck.cert.len(), 2);
        let (nb, na) = super::super::pem::validity(&chain).unwrap();
        let life = na.duration_since(nb).unwrap();
        assert!(life > Duration::from_secs(89 * 24 * 3600));
    }
}
