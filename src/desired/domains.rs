//! Which names a tenant may claim as custom domains or aliases, and which claims count when
//! two tenants name the same one: the provider's names (the base domain, shared domains) are
//! never a tenant's to claim, IP literals are no domains, and an unproven claim blocks nothing.

use super::{HostConfig, Invalid, host::is_dns_label};
use std::{collections::BTreeMap, path::Path};

/// A lowercase host name of DNS labels with at least one dot, not an IP literal.
pub fn check_domain(d: &str) -> Result<(), Invalid> {
    let ok = d.len() <= 253 && d.contains('.') && d.split('.').all(is_dns_label);
    if !ok {
        return Err(Invalid::NotDomain(d.into()));
    }
    // A top-level label is never all digits: `10.1.2.3` is an address, not a name.
    if d.rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(Invalid::AddressNotDomain(d.into()));
    }
    Ok(())
}

fn is_at_or_under(d: &str, parent: &str) -> bool {
    d == parent
        || d.strip_suffix(parent)
            .is_some_and(|rest| rest.ends_with('.'))
}

/// A custom domain or alias `tenant` may claim on `host`: a valid name that is not the base
/// domain or under it (except the tenant's own subdomain), and not a shared domain or under one.
pub fn check_custom(d: &str, tenant: &str, host: &HostConfig) -> Result<(), Invalid> {
    check_domain(d)?;
    if let Some(base) = &host.base_domain
        && is_at_or_under(d, base)
        && d != format!("{tenant}.{base}")
    {
        return Err(Invalid::UnderBase {
            domain: d.into(),
            base: base.clone(),
            tenant: tenant.into(),
        });
    }
    let shared = host.proxy.iter().flat_map(|p| p.shared_domains.iter());
    if let Some(s) = shared.into_iter().find(|s| is_at_or_under(d, s)) {
        return Err(Invalid::UnderShared {
            domain: d.into(),
            shared: s.clone(),
        });
    }
    Ok(())
}

/// Custom domains proven by a tenant (domain → tenant), read from the domain book's file.
/// Only these conflict between tenants; a claim still waiting for proof blocks nothing.
pub fn proven(state_dir: &Path) -> BTreeMap<String, String> {
    let path = crate::store::Layout::new(state_dir.to_path_buf()).domains();
    crate::store::domain_book::read_bindings(&path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostConfig {
        let mut h = crate::fixtures::host();
        h.base_domain = Some("apps.example.test".into());
        h
    }

    #[test]
    fn domains_are_lowercase_dotted_labels_and_never_addresses() {
        assert!(check_domain("acme.example.com").is_ok());
        assert!(check_domain("Acme.example.com").is_err());
        assert!(check_domain("localhost").is_err());
        for ip in ["10.1.2.3", "127.0.0.1", "1.2"] {
            let e = check_domain(ip).unwrap_err();
            assert!(e.to_string().contains("is an IP address"), "{ip}: {e}");
        }
        assert!(check_domain("1.example.com").is_ok());
    }

    #[test]
    fn the_providers_names_are_not_a_tenants_to_claim() {
        let h = host();
        assert!(check_custom("shop.example.org", "chk4", &h).is_ok());
        assert!(check_custom("chk4.apps.example.test", "chk4", &h).is_ok());
        for d in [
            "apps.example.test",
            "chk9.apps.example.test",
            "www.chk4.apps.example.test",
        ] {
            let e = check_custom(d, "chk4", &h).unwrap_err();
            assert!(e.to_string().contains("base domain"), "{d}: {e}");
        }
        assert!(check_custom("xapps.example.test", "chk4", &h).is_ok());
    }

    #[test]
    fn shared_domains_and_names_under_them_are_refused() {
        let mut h = host();
        h.proxy = Some(crate::desired::edge::ProxyConfig {
            http: "127.0.0.1:80".parse().unwrap(),
            https: "127.0.0.1:443".parse().unwrap(),
            redirect_port: 443,
            shared_domains: vec!["sites.example.org".into()],
            trusted_proxies: vec![],
            timeouts: Default::default(),
            max_header_bytes: 65536,
            max_body: 1 << 20,
            access_log: false,
            max_wakes: 4,
            client_wakes_per_minute: 10,
            wake_gap: std::time::Duration::ZERO,
        });
        for d in ["sites.example.org", "acme.sites.example.org"] {
            let e = check_custom(d, "acme", &h).unwrap_err();
            assert!(e.to_string().contains("shared domain"), "{d}: {e}");
        }
        assert!(check_custom("mysites.example.org", "acme", &h).is_ok());
    }

    #[test]
    fn only_proven_bindings_are_read_from_the_book() {
        let dir = tempfile::tempdir().unwrap();
        assert!(proven(dir.path()).is_empty());
        std::fs::write(
            dir.path().join("domains.json"),
            r#"{"bindings":{"shop.example.org":{"tenant":"acme","method":"dns","verified_at":1}},"pending":{}}"#,
        )
        .unwrap();
        assert_eq!(proven(dir.path())["shop.example.org"], "acme");
    }
}
