//! Checking a proof: the token as a TXT record at `_berth.<domain>` (through a configurable
//! resolver, so tests can point at a local DNS server), or served at
//! `http://<domain>/.well-known/berth-domain-verification`.

use super::DomainError;
use crate::desired::egress::{Allow, BLOCKED, Proto};
use hickory_resolver::{
    Resolver,
    config::{ConnectionConfig, NameServerConfig, ResolverConfig},
    net::{NetError, runtime::TokioRuntimeProvider},
    proto::rr::RData,
};
use ipnet::Ipv4Net;
use std::{net::SocketAddr, time::Duration};

pub const HTTP_PATH: &str = "/.well-known/berth-domain-verification";

fn resolver(server: Option<SocketAddr>) -> Result<Resolver<TokioRuntimeProvider>, NetError> {
    let b = match server {
        Some(addr) => {
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = addr.port();
            let ns = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
            Resolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], vec![ns]),
                TokioRuntimeProvider::default(),
            )
        }
        None => Resolver::builder_tokio()?,
    };
    b.build()
}

fn not_proven(domain: &str) -> impl Fn(String) -> DomainError + '_ {
    move |reason| DomainError::NotProven {
        domain: domain.into(),
        reason,
    }
}

pub async fn check_dns(
    server: Option<SocketAddr>,
    domain: &str,
    token: &str,
) -> Result<(), DomainError> {
    let r = resolver(server).map_err(|e| not_proven(domain)(e.to_string()))?;
    let name = format!("_berth.{domain}.");
    let found = r
        .txt_lookup(name.as_str())
        .await
        .map_err(|e| not_proven(domain)(format!("TXT {name}: {e}")))?;
    let values: Vec<String> = found
        .answers()
        .iter()
        .filter_map(|rec| match &rec.data {
            RData::TXT(t) => Some(t.to_string()),
            _ => None,
        })
        .collect();
    if values.iter().any(|v| v.trim() == token) {
        Ok(())
    } else {
        Err(not_proven(domain)(format!(
            "TXT {name} has {} record(s), none is the token",
            values.len()
        )))
    }
}

/// Every address of a domain refused for a fetch on a tenant's behalf, each with why.
#[derive(Debug, thiserror::Error)]
#[error(
    "refused to fetch: {} — tenants cannot reach it, so berth does not fetch it for them",
    .0.join(", ")
)]
pub struct Refused(pub Vec<String>);

/// The first of `ips` the tenant's own egress policy lets it reach: berth fetches on the
/// tenant's behalf with no more reach than the tenant has (no private, link-local or loopback
/// range unless its plan allows it; no IPv6, which tenants do not have). `never`: what no
/// allow opens for a fetch from the host (the tenants' subnet pool, the host's addresses),
/// since berth fetches from outside every tenant network's isolation.
pub fn reachable(
    ips: &[std::net::IpAddr],
    allow: &[Allow],
    never: &[Ipv4Net],
    port: u16,
) -> Result<std::net::Ipv4Addr, Refused> {
    let mut refused = vec![];
    for ip in ips {
        let std::net::IpAddr::V4(v4) = *ip else {
            refused.push(format!("{ip} (IPv6: tenants have none)"));
            continue;
        };
        if let Some(n) = never.iter().find(|n| n.contains(&v4)) {
            refused.push(format!("{v4} (berth's own {n})"));
            continue;
        }
        let allowed = allow.iter().any(|a| {
            a.net.contains(&v4)
                && a.port
                    .is_none_or(|(p, proto)| p == port && proto == Proto::Tcp)
        });
        match BLOCKED
            .iter()
            .find(|(n, _)| n.parse::<Ipv4Net>().is_ok_and(|n| n.contains(&v4)))
        {
            Some((net, name)) if !allowed => refused.push(format!("{v4} ({name} {net})")),
            _ => return Ok(v4),
        }
    }
    Err(Refused(refused))
}

/// Resolves the domain through the same resolver and fetches the token over plain HTTP,
/// from an address the tenant's egress policy (`allow`: its plan's allows) lets it reach.
pub async fn check_http(
    server: Option<SocketAddr>,
    port: u16,
    domain: &str,
    token: &str,
    allow: &[Allow],
    never: &[Ipv4Net],
) -> Result<(), DomainError> {
    let r = resolver(server).map_err(|e| not_proven(domain)(e.to_string()))?;
    let ips: Vec<std::net::IpAddr> = r
        .lookup_ip(domain)
        .await
        .map_err(|e| not_proven(domain)(format!("address of {domain}: {e}")))?
        .iter()
        .collect();
    if ips.is_empty() {
        return Err(not_proven(domain)("no address".into()));
    }
    let ip = reachable(&ips, allow, never, port).map_err(|e| not_proven(domain)(e.to_string()))?;
    let fetch = async {
        let stream = tokio::net::TcpStream::connect((ip, port))
            .await
            .map_err(|e| e.to_string())?;
        let req = hyper::Request::get(HTTP_PATH)
            .header(hyper::header::HOST, domain)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = crate::http1::send(stream, req)
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("{HTTP_PATH} answered {}", resp.status()));
        }
        let body = http_body_util::Limited::new(resp.into_body(), 4096);
        let bytes = http_body_util::BodyExt::collect(body)
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok::<_, String>(String::from_utf8_lossy(&bytes).trim().to_string())
    };
    let body = tokio::time::timeout(Duration::from_secs(10), fetch)
        .await
        .map_err(|_| not_proven(domain)("HTTP fetch timed out".into()))?
        .map_err(not_proven(domain))?;
    if body == token {
        Ok(())
    } else {
        Err(not_proven(domain)(format!(
            "{HTTP_PATH} does not hold the token"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::egress::parse_allow;

    #[test]
    fn a_proof_is_fetched_only_from_where_the_tenant_may_go() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        for (addrs, allow, want) in [
            (
                vec!["169.254.169.254"],
                vec![],
                Err("link-local 169.254.0.0/16"),
            ),
            (vec!["10.1.2.3"], vec![], Err("private 10.0.0.0/8")),
            (vec!["127.0.0.1"], vec![], Err("loopback")),
            (vec!["fd00::1"], vec![], Err("IPv6")),
            (vec!["10.1.2.3", "8.8.8.8"], vec![], Ok("8.8.8.8")),
            (vec!["10.1.2.3"], vec!["10.1.0.0/16:80"], Ok("10.1.2.3")),
            (vec!["10.1.2.3"], vec!["10.1.0.0/16:443"], Err("private")),
            (vec!["10.1.2.3"], vec!["10.1.0.0/16:80/udp"], Err("private")),
            (
                vec!["10.240.0.18"],
                vec!["10.0.0.0/8:80"],
                Err("berth's own 10.240.0.0/16"),
            ),
            (vec!["8.8.4.4"], vec![], Err("berth's own 8.8.4.4/32")),
        ] {
            let ips: Vec<_> = addrs.iter().map(|a| ip(a)).collect();
            let allow: Vec<_> = allow.iter().map(|a| parse_allow(a).unwrap()).collect();
            let never: Vec<Ipv4Net> = vec![
                "10.240.0.0/16".parse().unwrap(),
                "8.8.4.4/32".parse().unwrap(),
            ];
            match (reachable(&ips, &allow, &never, 80), want) {
                (Ok(got), Ok(w)) => assert_eq!(got.to_string(), w),
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{e}"),
                (got, w) => panic!("{addrs:?} {allow:?}: {got:?}, want {w:?}"),
            }
        }
    }
}
