//! What a plan's `egress:` allows beyond the default policy (`egress::policy` makes the
//! rules): one network, optionally one port.

use ipnet::Ipv4Net;
use serde::Serialize;
use std::{fmt, net::Ipv4Addr};

/// Ranges a tenant never reaches unless its plan allows a part of them: "this" network,
/// RFC 1918, shared address space (RFC 6598), loopback, link-local (cloud metadata), IETF
/// protocol assignments, benchmarking, multicast and reserved.
pub const BLOCKED: &[(&str, &str)] = &[
    ("0.0.0.0/8", "this network"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("224.0.0.0/3", "multicast and reserved"),
];

/// One extra destination a plan allows: a network, optionally one port (TCP, or UDP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Allow {
    pub net: Ipv4Net,
    pub port: Option<(u16, Proto)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Allow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            None => write!(f, "{}", self.net),
            Some((p, Proto::Tcp)) => write!(f, "{}:{p}", self.net),
            Some((p, Proto::Udp)) => write!(f, "{}:{p}/udp", self.net),
        }
    }
}

/// `CIDR`, `CIDR:PORT` (TCP) or `CIDR:PORT/udp`; a bare address is a /32.
pub fn parse_allow(s: &str) -> Result<Allow, super::Invalid> {
    let bad = |why| super::Invalid::BadAllow {
        text: s.into(),
        why,
    };
    let (net, port) = match s.split_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (s, None),
    };
    let net: Ipv4Net = match net.parse::<Ipv4Net>() {
        Ok(n) => n,
        Err(_) => net
            .parse::<Ipv4Addr>()
            .map(Ipv4Net::from)
            .map_err(|_| bad("is not an IPv4 network"))?,
    };
    if net.trunc() != net {
        return Err(bad("has host bits set"));
    }
    let port = match port {
        None => None,
        Some(p) => {
            let (num, proto) = match p.strip_suffix("/udp") {
                Some(n) => (n, Proto::Udp),
                None => (p.strip_suffix("/tcp").unwrap_or(p), Proto::Tcp),
            };
            match num.parse::<u16>() {
                Ok(n) if n > 0 => Some((n, proto)),
                _ => return Err(bad("has no port from 1 to 65535")),
            }
        }
    };
    Ok(Allow { net, port })
}
