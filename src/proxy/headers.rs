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

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// Set on a moved tenant's request sent on to its other host (`handover`).
pub const X_BERTH_FORWARDED: HeaderName = HeaderName::from_static("x-berth-forwarded");
pub const X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
/// Client-supplied headers that would claim a client address, protocol or mount: dropped.
const SPOOFABLE: [HeaderName; 3] = [
    header::FORWARDED,
    HeaderName::from_static("x-real-ip"),
    X_FORWARDED_PREFIX,
];

/// Which of `names` are present, as a bit mask: one pass over the names in the map, each
/// placed by `index` (a match on its text), since most requests carry none of them and a
/// removal hashes even when nothing is there.
fn present(h: &HeaderMap, index: fn(&str) -> Option<usize>) -> u16 {
    h.keys()
        .filter_map(|k| index(k.as_str()))
        .fold(0, |m, i| m | 1 << i)
}

fn remove_present(h: &mut HeaderMap, names: &[HeaderName], mask: u16) {
    for (i, n) in names.iter().enumerate() {
        if mask & 1 << i != 0 {
            h.remove(n);
        }
    }
}

fn hop_index(n: &str) -> Option<usize> {
    Some(match n {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-authenticate" => 2,
        "proxy-authorization" => 3,
        "te" => 4,
        "trailer" => 5,
        "transfer-encoding" => 6,
        "upgrade" => 7,
        _ => return None,
    })
}

fn spoofable_index(n: &str) -> Option<usize> {
    Some(match n {
        "forwarded" => 0,
        "x-real-ip" => 1,
        "x-forwarded-prefix" => 2,
        _ => return None,
    })
}

/// Removes hop-by-hop headers, including any named in Connection.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    let mask = present(h, hop_index);
    if mask == 0 {
        return; // no Connection header either, so nothing is named in one
    }
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| hop_index(n.as_str()).is_none())
        .collect();
    remove_present(h, &HOP_BY_HOP, mask);
    for n in &named {
        h.remove(n);
    }
}

/// The peer's address as X-Forwarded-For gives it (worked out once per connection).
pub fn peer_value(peer: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&peer.to_canonical().to_string())
        .expect("an IP address is a valid header value")
}

/// Sets X-Forwarded-For/-Proto/-Host (and drops Forwarded/X-Real-IP/X-Forwarded-Prefix). A
/// client's own X-Forwarded-For is kept only if the peer is a trusted proxy; then the rightmost
/// address that is not itself trusted counts as the client. `peer_value` is `peer_value(peer)`.
pub fn set_forwarded(
    h: &mut HeaderMap,
    (peer, peer_value): (IpAddr, &HeaderValue),
    proto: &'static str,
    host: &HeaderValue,
    trusted: &[Cidr],
) {
    let chain = if trusted.iter().any(|c| c.contains(peer)) {
        trusted_chain(h, peer, trusted)
    } else {
        peer_value.clone()
    };
    remove_present(h, &SPOOFABLE, present(h, spoofable_index));
    h.insert(X_FORWARDED_FOR, chain);
    h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    h.insert(X_FORWARDED_HOST, host.clone());
}

/// The client a request is from: the peer, or behind a trusted proxy the rightmost address
/// of its X-Forwarded-For that is not itself trusted (the peer when there is none).
pub fn client_ip(h: &HeaderMap, peer: IpAddr, trusted: &[Cidr]) -> IpAddr {
    if !trusted.iter().any(|c| c.contains(peer)) {
        return peer;
    }
    let chain = trusted_chain(h, peer, trusted);
    let hops: Vec<&str> = chain.to_str().unwrap_or("").split(", ").collect();
    // The chain ends with the peer; the hop before it is the client, if any.
    hops.iter()
        .rev()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(peer)
}

/// X-Forwarded-For from a trusted proxy: its chain up to and including the rightmost
/// untrusted hop, then the peer.
fn trusted_chain(h: &HeaderMap, peer: IpAddr, trusted: &[Cidr]) -> HeaderValue {
    let mut chain: Vec<String> = Vec::new();
    for v in h.get_all(&X_FORWARDED_FOR).iter() {
        if let Ok(s) = v.to_str() {
            chain.extend(
                s.split(',')
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty()),
            );
        }
    }
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
    chain.push(peer.to_canonical().to_string());
    HeaderValue::from_str(&chain.join(", ")).unwrap_or_else(|_| peer_value(peer))
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
    fn each_removable_header_is_found_at_its_own_place() {
        for (i, n) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_index(n.as_str()), Some(i), "{n}");
        }
        for (i, n) in SPOOFABLE.iter().enumerate() {
            assert_eq!(spoofable_index(n.as_str()), Some(i), "{n}");
        }
        assert_eq!(hop_index("x-app"), None);
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
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-prefix", "/admin"),
        ]);
        let peer = "203.0.113.9".parse().unwrap();
        let host = HeaderValue::from_static("acme.example.com");
        set_forwarded(&mut h, (peer, &peer_value(peer)), "https", &host, &[]);
        assert_eq!(h["x-forwarded-for"], "203.0.113.9");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "acme.example.com");
        for gone in ["x-real-ip", "forwarded", "x-forwarded-prefix"] {
            assert!(!h.contains_key(gone), "{gone}");
        }
    }

    #[test]
    fn trusted_proxies_pass_on_the_rightmost_untrusted_client() {
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        let mut h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.1.1")]);
        let peer = "10.0.0.2".parse().unwrap();
        let host = HeaderValue::from_static("a.example.com");
        set_forwarded(&mut h, (peer, &peer_value(peer)), "https", &host, &trusted);
        assert_eq!(h["x-forwarded-for"], "6.6.6.6, 198.51.100.7, 10.0.0.2");
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.1.1")]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(client_ip(&h, peer, &trusted), ip("198.51.100.7"));
        assert_eq!(
            client_ip(&h, ip("172.16.0.9"), &trusted),
            ip("172.16.0.9"),
            "an untrusted peer's header says nothing"
        );
        assert_eq!(client_ip(&HeaderMap::new(), peer, &trusted), peer);
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
