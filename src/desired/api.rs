//! The API's TCP listener, validated: its address, and TLS, which it needs to listen beyond
//! loopback (bearer tokens must not cross a network in plain text).

use crate::spec::host::ApiFile;
use std::path::{Path, PathBuf};

/// Where the TCP listener's certificate comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiTls {
    /// A chain and key the operator provides (reread when the files change).
    Files { cert: PathBuf, key: PathBuf },
    /// A certificate from berth's internal CA (`<state>/certs/ca/ca.pem`) for these DNS names
    /// and IP addresses.
    Internal { names: Vec<String> },
}

/// Checks `api.tcp` and `api.tls`; reports each problem under its field.
pub fn check(
    api: &ApiFile,
    resolve: impl Fn(&Path) -> PathBuf,
    err: &mut impl FnMut(&str, String),
) -> Option<ApiTls> {
    let tls = api.tls.as_ref().and_then(|t| {
        let names_ok = t.names.iter().all(|n| name_ok(n, err));
        match (&t.cert_file, &t.key_file) {
            (Some(c), Some(k)) => Some(ApiTls::Files {
                cert: resolve(c),
                key: resolve(k),
            }),
            (Some(_), None) | (None, Some(_)) => {
                err(
                    "api.tls",
                    "give both cert_file and key_file, or neither".into(),
                );
                None
            }
            (None, None) if t.names.is_empty() => {
                err(
                    "api.tls",
                    "give cert_file and key_file, or names for a certificate from berth's CA"
                        .into(),
                );
                None
            }
            (None, None) => names_ok.then(|| ApiTls::Internal {
                names: t.names.clone(),
            }),
        }
    });
    let Some(tcp) = &api.tcp else {
        if api.tls.is_some() {
            err(
                "api.tls",
                "TLS is for the TCP listener: set api.tcp too".into(),
            );
        }
        return tls;
    };
    match tcp.parse::<std::net::SocketAddr>() {
        Err(_) => err(
            "api.tcp",
            format!("{tcp:?} is not an address:port (e.g. 127.0.0.1:7070)"),
        ),
        // Bearer tokens in plain text stay on this host.
        Ok(a) if !a.ip().is_loopback() && api.tls.is_none() => err(
            "api.tcp",
            format!(
                "{tcp}: beyond loopback the API serves TLS only (tokens must not cross a \
                 network in plain text); add api.tls (cert_file and key_file, or names)"
            ),
        ),
        Ok(_) => {}
    }
    tls
}

/// A certificate name: a DNS name or an IP address.
fn name_ok(n: &str, err: &mut impl FnMut(&str, String)) -> bool {
    let ok = n.parse::<std::net::IpAddr>().is_ok()
        || (n.len() <= 253 && n.split('.').all(super::host::is_dns_label) && !n.ends_with('.'));
    if !ok {
        err(
            "api.tls.names",
            format!("{n:?} is neither a DNS name nor an IP address"),
        );
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::host::ApiTlsFile;

    fn run(tcp: Option<&str>, tls: Option<ApiTlsFile>) -> (Option<ApiTls>, Vec<String>) {
        let api = ApiFile {
            tcp: tcp.map(str::to_string),
            tls,
            ..ApiFile::default()
        };
        let mut errs = vec![];
        let got = check(&api, |p| Path::new("/etc/berth").join(p), &mut |f, m| {
            errs.push(format!("{f}: {m}"))
        });
        (got, errs)
    }

    fn names(n: &[&str]) -> Option<ApiTlsFile> {
        Some(ApiTlsFile {
            names: n.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
    }

    #[test]
    fn beyond_loopback_the_listener_needs_tls() {
        let (_, e) = run(Some("0.0.0.0:7443"), None);
        assert!(
            e[0].contains("api.tcp") && e[0].contains("TLS only"),
            "{e:?}"
        );
        let (_, e) = run(Some("10.0.0.5:7443"), None);
        assert_eq!(e.len(), 1);
        let (tls, e) = run(
            Some("0.0.0.0:7443"),
            names(&["berth.example.net", "10.0.0.5"]),
        );
        assert!(e.is_empty(), "{e:?}");
        assert!(matches!(tls, Some(ApiTls::Internal { names }) if names.len() == 2));
        let (tls, e) = run(Some("127.0.0.1:7070"), None);
        assert!(e.is_empty() && tls.is_none());
    }

    #[test]
    fn a_half_or_hostile_tls_section_is_refused_by_field() {
        let half = Some(ApiTlsFile {
            cert_file: Some("api.pem".into()),
            ..Default::default()
        });
        let (_, e) = run(Some("0.0.0.0:7443"), half);
        assert!(
            e.iter().any(|m| m.contains("both cert_file and key_file")),
            "{e:?}"
        );
        let (_, e) = run(Some("0.0.0.0:7443"), Some(ApiTlsFile::default()));
        assert!(e.iter().any(|m| m.starts_with("api.tls:")), "{e:?}");
        for bad in ["", "a b", "../x", "-x.example", "x..y", &"a".repeat(300)] {
            let (tls, e) = run(Some("127.0.0.1:7443"), names(&[bad]));
            assert!(
                tls.is_none() && e.iter().any(|m| m.starts_with("api.tls.names")),
                "{bad:?}"
            );
        }
        let (_, e) = run(None, names(&["localhost"]));
        assert!(e.iter().any(|m| m.contains("set api.tcp")), "{e:?}");
        let files = Some(ApiTlsFile {
            cert_file: Some("api.pem".into()),
            key_file: Some("/k/api.key".into()),
            names: vec![],
        });
        let (tls, _) = run(Some("127.0.0.1:7443"), files);
        let want = ApiTls::Files {
            cert: "/etc/berth/api.pem".into(),
            key: "/k/api.key".into(),
        };
        assert_eq!(tls, Some(want));
    }
}
