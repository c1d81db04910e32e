//! Header hygiene: framing checks against request smuggling, hop-by-hop stripping, and the
//! X-Forwarded-* headers the app sees (overwritten unless the peer is a trusted proxy).

use crate::desired::edge::Cidr;
use hyper::{
    HeaderMap,
    header::{self, HeaderName, HeaderValue},
};
use std::net::IpAddr;

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Refuses any request whose body framing two parsers could read differently. hyper already
/// rejects differing Content-Lengths and TE not ending in chunked; this closes the rest.
pub fn check_framing(h: &HeaderMap) -> Result<(), &'static str> {
    let te = h.get_all(header::TRANSFER_ENCODING).iter().count();
    let cl = h.get_all(header::CONTENT_LENGTH).iter().count();
    if te > 0 && cl > 0 {
        return Err("both Transfer-Encoding and Content-Length");
    }
    if cl > 1 {
        return Err("repeated Content-Length");
    }
    if te > 1 {
        return Err("repeated Transfer-Encoding");
    }
    if let Some(v) = h.get(header::TRANSFER_ENCODING)
        && !v.as_bytes().eq_ignore_ascii_case(b"chunked")
    {
        return Err("Transfer-Encoding other than chunked");
    }
    Ok(())
}

/// Whether this is a protocol upgrade (WebSocket) the proxy should tunnel.
pub fn upgrade_of(h: &HeaderMap) -> Option<HeaderValue> {
    let wants = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    wants.then(|| h.get(header::UPGRADE).cloned()).flatten()
}

/// Removes hop-by-hop headers, including any named in Connection.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for n in named.iter().chain(HOP_BY_HOP.iter()) {
        h.remove(n);
    }
}

/// Sets X-Forwarded-For/-Proto/-Host (and drops Forwarded/X-Real-IP). A client's own
/// X-Forwarded-For is kept only if the peer is a trusted proxy; then the rightmost address
/// that is not itself trusted counts as the client.
pub fn set_forwarded(h: &mut HeaderMap, peer: IpAddr, proto: &str, host: &str, trusted: &[Cidr]) {
    let peer_trusted = trusted.iter().any(|c| c.contains(peer));
    let mut chain: Vec<String> = Vec::new();
    if peer_trusted {
        for v in h.get_all("x-forwarded-for").iter() {
            if let Ok(s) = v.to_str() {
                chain.extend(
                    s.split(',')
                        .map(|p| p.trim().to_string())
                        .filter(|p| !p.is_empty()),
                );
            }
        }
        // Keep the chain up to and including the rightmost untrusted hop.
        while let Some(last) = chain.last() {
            match last.parse::<IpAddr>() {
                Ok(ip) if trusted.iter().any(|c| c.contains(ip)) => {
                    chain.pop();
                }
                Ok(_) => break,
                Err(_) => {
                    chain.clear();
                    break;
                }
            }
        }
    }
    chain.push(peer.to_canonical().to_string());
    for n in [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-prefix",
        "forwarded",
        "x-real-ip",
    ] {
        h.remove(n);
    }
    let set = |h: &mut HeaderMap, n: &'static str, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(n, v);
        }
    };
    set(h, "x-forwarded-for", &chain.join(", "));
    set(h, "x-forwarded-proto", proto);
    set(h, "x-forwarded-host", host);
}

/// The request's authority, lowercased and without port or trailing dot. `Host` and an
/// absolute-form/h2 authority must agree.
pub fn authority(uri: &hyper::Uri, h: &HeaderMap) -> Result<String, &'static str> {
    let from_host = match h.get_all(header::HOST).iter().count() {
        0 => None,
        1 => Some(
            h.get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .ok_or("invalid Host")?,
        ),
        _ => return Err("repeated Host"),
    };
    let from_uri = uri.authority().map(|a| a.as_str());
    let raw = match (from_uri, from_host) {
        (Some(a), Some(b)) if !a.eq_ignore_ascii_case(b) => {
            return Err("Host differs from the request authority");
        }
        (Some(a), _) => a,
        (None, Some(b)) => b,
        (None, None) => return Err("no Host"),
    };
    Ok(normalize_host(raw))
}

pub fn normalize_host(raw: &str) -> String {
    let no_port = match raw.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => raw,
    };
    no_port.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        let cases: [(&[(&str, &str)], bool); 6] = [
            (&[("content-length", "5")], true),
            (&[("transfer-encoding", "chunked")], true),
            (
                &[("content-length", "5"), ("transfer-encoding", "chunked")],
                false,
            ),
            (&[("content-length", "5"), ("content-length", "5")], false),
            (
                &[
                    ("transfer-encoding", "chunked"),
                    ("transfer-encoding", "chunked"),
                ],
                false,
            ),
            (&[("transfer-encoding", "gzip, chunked")], false),
        ];
        for (h, ok) in cases {
            assert_eq!(check_framing(&headers(h)).is_ok(), ok, "{h:?}");
        }
    }

    #[test]
    fn hop_by_hop_headers_and_those_named_in_connection_are_removed() {
        let mut h = headers(&[
            ("connection", "close, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "5"),
            ("te", "trailers"),
            ("x-app", "ok"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-app"));
    }

    #[test]
    fn forwarded_headers_from_untrusted_peers_are_overwritten() {
        let mut h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
            ("x-forwarded-proto", "http"),
        ]);
        set_forwarded(
            &mut h,
            "203.0.113.9".parse().unwrap(),
            "https",
            "acme.example.com",
            &[],
        );
        assert_eq!(h["x-forwarded-for"], "203.0.113.9");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "acme.example.com");
        assert!(!h.contains_key("x-real-ip"));
    }

    #[test]
    fn trusted_proxies_pass_on_the_rightmost_untrusted_client() {
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        let mut h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.1.1")]);
        set_forwarded(
            &mut h,
            "10.0.0.2".parse().unwrap(),
            "https",
            "a.example.com",
            &trusted,
        );
        assert_eq!(h["x-forwarded-for"], "6.6.6.6, 198.51.100.7, 10.0.0.2");
    }

    #[test]
    fn the_authority_comes_from_host_or_uri_and_they_must_agree() {
        let uri: hyper::Uri = "/x".parse().unwrap();
        assert_eq!(
            authority(&uri, &headers(&[("host", "Acme.Example.com:8443")])).unwrap(),
            "acme.example.com"
        );
        let abs: hyper::Uri = "https://a.example.com/x".parse().unwrap();
        assert!(authority(&abs, &headers(&[("host", "b.example.com")])).is_err());
        assert!(
            authority(
                &uri,
                &headers(&[("host", "a.example.com"), ("host", "b.example.com")])
            )
            .is_err()
        );
        assert!(authority(&uri, &HeaderMap::new()).is_err());
    }
}
