//! Validated edge settings from the host config: proxy listeners and limits, ACME, domain proofs.

use crate::spec::{
    host::{AcmeFile, DomainsFile, ProxyFile},
    units,
};
use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

#[derive(Debug, Clone, PartialEq)]
pub struct ProxyConfig {
    pub http: SocketAddr,
    pub https: SocketAddr,
    /// Port put into HTTP→HTTPS redirects (omitted from the URL when 443).
    pub redirect_port: u16,
    pub shared_domains: Vec<String>,
    pub trusted_proxies: Vec<Cidr>,
    pub timeouts: ProxyTimeouts,
    pub max_header_bytes: usize,
    pub max_body: u64,
    pub access_log: bool,
    /// Wakes in flight at once (`max_wakes`, default [`DEFAULT_MAX_WAKES`]).
    pub max_wakes: usize,
    /// Wakes one client may cause per minute (default [`DEFAULT_CLIENT_WAKES`]).
    pub client_wakes_per_minute: u32,
    /// The least time between two wakes' starts (`wake_gap`, default none, at most 60 s).
    pub wake_gap: Duration,
}

pub const DEFAULT_MAX_WAKES: usize = 4;
pub const DEFAULT_CLIENT_WAKES: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProxyTimeouts {
    pub tls_handshake: Duration,
    pub header_read: Duration,
    pub idle: Duration,
    pub upstream_connect: Duration,
    pub upstream_response: Duration,
    pub drain: Duration,
    pub max_pause: Duration,
}

impl Default for ProxyTimeouts {
    fn default() -> Self {
        let s = Duration::from_secs;
        ProxyTimeouts {
            tls_handshake: s(10),
            header_read: s(10),
            idle: s(60),
            upstream_connect: s(5),
            upstream_response: s(60),
            drain: s(30),
            max_pause: s(30),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AcmeConfig {
    pub directory: String,
    pub email: Option<String>,
    pub ca_bundle: Option<PathBuf>,
    pub orders_per_minute: u32,
    pub orders_per_tenant_per_day: u32,
    pub check_interval: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DomainsConfig {
    pub resolver: Option<SocketAddr>,
    pub http_port: u16,
}

/// An IP network; `contains` is what trusted-proxy checks need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, super::Invalid> {
        let (ip, len) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = ip
            .parse()
            .map_err(|_| super::Invalid::NotNetwork(s.into()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if len.is_empty() {
            max
        } else {
            len.parse()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| super::Invalid::BadPrefix(s.into()))?
        };
        Ok(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let m = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & m == u32::from(a) & m
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let m = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & m == u128::from(a) & m
            }
            _ => false,
        }
    }
}

type FieldError = (String, String);

fn field(name: &str) -> impl Fn(String) -> FieldError + '_ {
    move |m| (name.to_string(), m)
}

fn duration(name: &str, v: &str) -> Result<Duration, FieldError> {
    units::parse_duration(v)
        .map_err(String::from)
        .map_err(field(name))
}

fn addr(name: &str, v: &str) -> Result<SocketAddr, FieldError> {
    v.parse().map_err(|_| {
        (
            name.to_string(),
            format!("{v:?} is not an address (ip:port)"),
        )
    })
}

pub fn build_proxy(p: &ProxyFile) -> Result<ProxyConfig, Vec<FieldError>> {
    let mut errs = Vec::new();
    let mut ok = |r: Result<Duration, FieldError>| r.map_err(|e| errs.push(e)).unwrap_or_default();
    let t = &p.timeouts;
    let timeouts = ProxyTimeouts {
        tls_handshake: ok(duration("proxy.timeouts.tls_handshake", &t.tls_handshake)),
        header_read: ok(duration("proxy.timeouts.header_read", &t.header_read)),
        idle: ok(duration("proxy.timeouts.idle", &t.idle)),
        upstream_connect: ok(duration(
            "proxy.timeouts.upstream_connect",
            &t.upstream_connect,
        )),
        upstream_response: ok(duration(
            "proxy.timeouts.upstream_response",
            &t.upstream_response,
        )),
        drain: ok(duration("proxy.timeouts.drain", &t.drain)),
        max_pause: ok(duration("proxy.timeouts.max_pause", &t.max_pause)),
    };
    let http = addr("proxy.http", &p.http).map_err(|e| errs.push(e)).ok();
    let https = addr("proxy.https", &p.https).map_err(|e| errs.push(e)).ok();
    let mut trusted = Vec::new();
    for (n, c) in p.trusted_proxies.iter().enumerate() {
        match Cidr::parse(c) {
            Ok(c) => trusted.push(c),
            Err(m) => errs.push((format!("proxy.trusted_proxies.{n}"), m.to_string())),
        }
    }
    for (n, d) in p.shared_domains.iter().enumerate() {
        if let Err(m) = super::instance::check_domain(d) {
            errs.push((format!("proxy.shared_domains.{n}"), m.to_string()));
        }
    }
    let max_header_bytes = units::parse_bytes(&p.max_header_bytes)
        .map_err(String::from)
        .map_err(|m| errs.push(("proxy.max_header_bytes".into(), m)))
        .unwrap_or_default();
    if !(8192..=1 << 20).contains(&max_header_bytes) && errs.is_empty() {
        errs.push((
            "proxy.max_header_bytes".into(),
            "must be between 8k and 1m".into(),
        ));
    }
    let max_body = units::parse_bytes(&p.max_body)
        .map_err(String::from)
        .map_err(|m| errs.push(("proxy.max_body".into(), m)))
        .unwrap_or_default();
    let max_wakes = p.max_wakes.unwrap_or(DEFAULT_MAX_WAKES);
    if !(1..=1024).contains(&max_wakes) {
        errs.push((
            "proxy.max_wakes".into(),
            format!("{max_wakes} is out of range (1..=1024)"),
        ));
    }
    let client_wakes = p.client_wakes_per_minute.unwrap_or(DEFAULT_CLIENT_WAKES);
    if !(1..=100_000).contains(&client_wakes) {
        errs.push((
            "proxy.client_wakes_per_minute".into(),
            format!("{client_wakes} is out of range (1..=100000)"),
        ));
    }
    let wake_gap = match p.wake_gap.as_deref() {
        None => Duration::ZERO,
        Some(v) => duration("proxy.wake_gap", v)
            .and_then(|d| match d <= Duration::from_secs(60) {
                true => Ok(d),
                false => Err(("proxy.wake_gap".into(), format!("{v} is over 60s"))),
            })
            .map_err(|e| errs.push(e))
            .unwrap_or_default(),
    };
    if !errs.is_empty() {
        return Err(errs);
    }
    let https = https.expect("checked");
    Ok(ProxyConfig {
        http: http.expect("checked"),
        https,
        redirect_port: p.public_https_port.unwrap_or(https.port()),
        shared_domains: p.shared_domains.clone(),
        trusted_proxies: trusted,
        timeouts,
        max_header_bytes: max_header_bytes as usize,
        max_body,
        access_log: p.access_log,
        max_wakes,
        client_wakes_per_minute: client_wakes,
        wake_gap,
    })
}

pub fn build_acme(
    a: &AcmeFile,
    resolve: impl Fn(&std::path::Path) -> PathBuf,
) -> Result<AcmeConfig, Vec<FieldError>> {
    let mut errs = Vec::new();
    if !a.directory.starts_with("https://") {
        errs.push((
            "tls.acme.directory".into(),
            format!("{:?} must be an https:// URL", a.directory),
        ));
    }
    let check_interval = duration("tls.acme.check_interval", &a.check_interval)
        .map_err(|e| errs.push(e))
        .unwrap_or_default();
    if a.orders_per_minute == 0 {
        errs.push((
            "tls.acme.orders_per_minute".into(),
            "must be at least 1".into(),
        ));
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(AcmeConfig {
        directory: a.directory.clone(),
        email: a.email.clone(),
        ca_bundle: a.ca_bundle.as_deref().map(resolve),
        orders_per_minute: a.orders_per_minute,
        orders_per_tenant_per_day: a.orders_per_tenant_per_day,
        check_interval,
    })
}

pub fn build_domains(d: &DomainsFile) -> Result<DomainsConfig, Vec<FieldError>> {
    let resolver = match &d.resolver {
        Some(r) => Some(addr("domains.resolver", r).map_err(|e| vec![e])?),
        None => None,
    };
    Ok(DomainsConfig {
        resolver,
        http_port: d.http_port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_limits_out_of_range_name_their_field() {
        let file = |extra: &str| -> ProxyFile {
            serde_yaml::from_str(&format!(
                "{{http: \"127.0.0.1:80\", https: \"127.0.0.1:443\"{extra}}}"
            ))
            .unwrap()
        };
        let ok = build_proxy(&file("")).unwrap();
        assert_eq!(
            (ok.max_wakes, ok.client_wakes_per_minute),
            (DEFAULT_MAX_WAKES, DEFAULT_CLIENT_WAKES)
        );
        assert_eq!(ok.wake_gap, Duration::ZERO, "no gap unless asked for");
        let gap = build_proxy(&file(", wake_gap: 500ms")).unwrap().wake_gap;
        assert_eq!(gap, Duration::from_millis(500));
        for (extra, field) in [
            (", max_wakes: 0", "proxy.max_wakes"),
            (", max_wakes: 100000", "proxy.max_wakes"),
            (
                ", client_wakes_per_minute: 0",
                "proxy.client_wakes_per_minute",
            ),
            (
                ", client_wakes_per_minute: 4000000000",
                "proxy.client_wakes_per_minute",
            ),
            (", wake_gap: 2m", "proxy.wake_gap"),
            (", wake_gap: soon", "proxy.wake_gap"),
        ] {
            let errs = build_proxy(&file(extra)).unwrap_err();
            assert!(errs.iter().any(|(f, _)| f == field), "{extra}: {errs:?}");
        }
    }

    #[test]
    fn cidrs_contain_their_addresses_and_nothing_else() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(
            Cidr::parse("127.0.0.1")
                .unwrap()
                .contains("127.0.0.1".parse().unwrap())
        );
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(Cidr::parse("10.0.0.0/33").is_err());
    }
}
