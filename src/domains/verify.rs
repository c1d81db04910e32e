//! Checking a proof: the token as a TXT record at `_berth.<domain>` (through a configurable
//! resolver, so tests can point at a local DNS server), or served at
//! `http://<domain>/.well-known/berth-domain-verification`.

use super::DomainError;
use hickory_resolver::{
    Resolver,
    config::{ConnectionConfig, NameServerConfig, ResolverConfig},
    net::runtime::TokioRuntimeProvider,
    proto::rr::RData,
};
use std::{net::SocketAddr, time::Duration};

pub const HTTP_PATH: &str = "/.well-known/berth-domain-verification";

fn resolver(server: Option<SocketAddr>) -> Result<Resolver<TokioRuntimeProvider>, String> {
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
        None => Resolver::builder_tokio().map_err(|e| e.to_string())?,
    };
    b.build().map_err(|e| e.to_string())
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
    let r = resolver(server).map_err(not_proven(domain))?;
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

/// Resolves the domain through the same resolver and fetches the token over plain HTTP.
pub async fn check_http(
    server: Option<SocketAddr>,
    port: u16,
    domain: &str,
    token: &str,
) -> Result<(), DomainError> {
    let r = resolver(server).map_err(not_proven(domain))?;
    let ips = r
        .lookup_ip(domain)
        .await
        .map_err(|e| not_proven(domain)(format!("address of {domain}: {e}")))?;
    let ip = ips
        .iter()
        .next()
        .ok_or_else(|| not_proven(domain)("no address".into()))?;
    let fetch = async {
        let stream = tokio::net::TcpStream::connect((ip, port))
            .await
            .map_err(|e| e.to_string())?;
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = hyper::Request::get(HTTP_PATH)
            .header(hyper::header::HOST, domain)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
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
