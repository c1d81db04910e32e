//! The validated mail relay settings: the host's `mail:` section and each plan's `mail:` limits.

use super::limits::LimitError;
use crate::spec::{host::MailFile, instance::MailLimitsFile, units::parse_bytes};
use std::path::PathBuf;

/// The port the relay listens on inside tenant networks (submission).
pub const RELAY_PORT: u16 = 587;

/// The relay's name on every mail-sending tenant's network.
pub fn relay_alias(namespace: &str) -> String {
    format!("{namespace}-mail")
}

/// The host's relay (`mail:`).
#[derive(Debug, Clone, PartialEq)]
pub struct MailConfig {
    pub image: String,
    pub hostname: String,
    pub memory: u64,
    pub smarthost: Option<Smarthost>,
    pub dkim_selector: String,
}

/// Where the relay hands every message on.
#[derive(Debug, Clone, PartialEq)]
pub struct Smarthost {
    pub host: String,
    pub port: u16,
    /// Login and the file holding its password.
    pub auth: Option<(String, PathBuf)>,
    /// STARTTLS required (else opportunistic).
    pub tls_required: bool,
}

impl Smarthost {
    /// Postfix's `relayhost` form: `[host]:port` (no MX lookup).
    pub fn relayhost(&self) -> String {
        format!("[{}]:{}", self.host, self.port)
    }

    /// The egress allow the relay needs when the smarthost is an address in a range tenants
    /// are denied (a provider's internal relay).
    pub fn allow(&self) -> Option<super::egress::Allow> {
        let ip: std::net::Ipv4Addr = self.host.parse().ok()?;
        if ip.is_loopback() {
            return None; // the relay's own loopback: never forwarded
        }
        super::egress::parse_allow(&format!("{ip}:{}", self.port)).ok()
    }
}

/// What one tenant may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailLimits {
    pub per_hour: u32,
    pub per_day: u32,
    pub recipients: u32,
    pub max_size: u64,
}

impl Default for MailLimits {
    /// A plan that says nothing: enough for an app's notifications, too little for a campaign.
    fn default() -> Self {
        MailLimits {
            per_hour: 100,
            per_day: 1000,
            recipients: 50,
            max_size: 10 << 20,
        }
    }
}

/// The largest message a plan may allow (Postfix's own limit is set to the largest in use).
pub const MAX_SIZE: u64 = 100 << 20;

impl MailLimits {
    /// These limits with the values `f` sets replaced, each checked at its field.
    pub fn overlay(self, f: &MailLimitsFile) -> Result<MailLimits, LimitError> {
        let count = |v: Option<u32>, field: &'static str, now: u32| match v {
            Some(n) if (1..=10_000_000).contains(&n) => Ok(n),
            Some(n) => Err(LimitError {
                field,
                message: format!("{n} is out of range (1..=10000000)"),
            }),
            None => Ok(now),
        };
        let max_size = match f.max_size.as_deref() {
            None => self.max_size,
            Some(s) => match parse_bytes(s).map_err(String::from) {
                Ok(b) if (1024..=MAX_SIZE).contains(&b) => b,
                Ok(_) => {
                    return Err(LimitError {
                        field: "mail.max_size",
                        message: format!("{s} is out of range (1k..=100m)"),
                    });
                }
                Err(m) => {
                    return Err(LimitError {
                        field: "mail.max_size",
                        message: m,
                    });
                }
            },
        };
        let l = MailLimits {
            per_hour: count(f.per_hour, "mail.per_hour", self.per_hour)?,
            per_day: count(f.per_day, "mail.per_day", self.per_day)?,
            recipients: count(f.recipients, "mail.recipients", self.recipients)?,
            max_size,
        };
        if l.per_hour > l.per_day {
            return Err(LimitError {
                field: "mail.per_hour",
                message: format!("{} is more than per_day ({})", l.per_hour, l.per_day),
            });
        }
        Ok(l)
    }
}

/// A host name: dot-separated DNS labels (letters, digits, inner hyphens), at most 253 bytes.
fn is_host_name(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// `mail:` validated; errors by field under `mail.`.
pub fn build(
    f: &MailFile,
    base_domain: Option<&str>,
    resolve: &dyn Fn(&std::path::Path) -> PathBuf,
) -> Result<MailConfig, Vec<(String, String)>> {
    let mut errs = Vec::new();
    let mut err = |field: &str, m: String| errs.push((format!("mail.{field}"), m));
    let hostname = f
        .hostname
        .clone()
        .or_else(|| base_domain.map(|b| format!("mail.{b}")))
        .unwrap_or_else(|| "relay.localdomain".into());
    if !is_host_name(&hostname) {
        err("hostname", format!("{hostname:?} is not a host name"));
    }
    let memory = parse_bytes(&f.memory)
        .map_err(String::from)
        .unwrap_or_else(|m| {
            err("memory", m);
            0
        });
    if memory != 0 && memory < (32 << 20) {
        err("memory", format!("{} is below 32m", f.memory));
    }
    if f.image.is_empty() || f.image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        err("image", format!("{:?} is not an image reference", f.image));
    }
    let selector = f.dkim_selector.clone().unwrap_or_else(|| "berth".into());
    if !super::host::is_dns_label(&selector) {
        err(
            "dkim_selector",
            format!("{selector:?} is not a DNS label (a-z, 0-9, inner -)"),
        );
    }
    let smarthost = f.smarthost.as_deref().and_then(|s| {
        smarthost(f, s, resolve)
            .map_err(|(field, m)| err(field, m))
            .ok()
    });
    if f.smarthost.is_none() && (f.smarthost_user.is_some() || f.smarthost_password_file.is_some())
    {
        err("smarthost", "a login is set but no smarthost".into());
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(MailConfig {
        image: f.image.clone(),
        hostname,
        memory,
        smarthost,
        dkim_selector: selector,
    })
}

fn smarthost(
    f: &MailFile,
    s: &str,
    resolve: &dyn Fn(&std::path::Path) -> PathBuf,
) -> Result<Smarthost, (&'static str, String)> {
    let u = url::Url::parse(&format!("smtp://{s}"))
        .ok()
        .filter(|_| !s.chars().any(|c| c.is_control() || c.is_whitespace()))
        .filter(|u| u.path().is_empty() || u.path() == "/")
        .filter(|u| u.username().is_empty() && u.query().is_none());
    let (Some(u), Some((_, p))) = (u, s.rsplit_once(':')) else {
        return Err(("smarthost", format!("{s:?} is not host:port")));
    };
    let port: u16 = match p.parse() {
        Ok(n) if n > 0 => n,
        _ => return Err(("smarthost", format!("{s:?} has no port from 1 to 65535"))),
    };
    let host = u.host_str().unwrap_or_default().to_string();
    if host.is_empty() || host.starts_with('[') {
        return Err((
            "smarthost",
            format!("{s:?} needs an IPv4 address or a name"),
        ));
    }
    let auth = match (&f.smarthost_user, &f.smarthost_password_file) {
        (None, None) => None,
        (Some(u), Some(p)) => {
            if u.is_empty() || u.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(("smarthost_user", format!("{u:?} is not a login")));
            }
            Some((u.clone(), resolve(p)))
        }
        (Some(_), None) => {
            return Err(("smarthost_password_file", "smarthost_user needs it".into()));
        }
        (None, Some(_)) => {
            return Err(("smarthost_user", "smarthost_password_file needs it".into()));
        }
    };
    let tls_required = match f.smarthost_tls.as_deref() {
        None | Some("may") => false,
        Some("required") => true,
        Some(o) => return Err(("smarthost_tls", format!("{o:?} is not required or may"))),
    };
    Ok(Smarthost {
        host,
        port,
        auth,
        tls_required,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(yaml: &str) -> MailFile {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn errors(yaml: &str) -> Vec<(String, String)> {
        build(&file(yaml), Some("example.net"), &|p| p.to_path_buf()).unwrap_err()
    }

    #[test]
    fn a_plain_mail_section_relays_directly_as_mail_of_the_base_domain() {
        let c = build(&file("{}"), Some("example.net"), &|p| p.to_path_buf()).unwrap();
        assert_eq!(c.hostname, "mail.example.net");
        assert_eq!(c.dkim_selector, "berth");
        assert!(c.smarthost.is_none());
        assert_eq!(c.memory, 256 << 20);
    }

    #[test]
    fn a_smarthost_is_host_and_port_with_an_optional_login_and_an_allow_for_private_addresses() {
        let y = "{smarthost: \"10.0.0.25:587\", smarthost_user: relay, smarthost_password_file: /p, smarthost_tls: required}";
        let c = build(&file(y), None, &|p| p.to_path_buf()).unwrap();
        let s = c.smarthost.unwrap();
        assert_eq!(s.relayhost(), "[10.0.0.25]:587");
        assert_eq!(s.auth, Some(("relay".into(), "/p".into())));
        assert!(s.tls_required);
        assert_eq!(s.allow().unwrap().to_string(), "10.0.0.25/32:587");
        let c = build(
            &file("{smarthost: \"smtp.example.com:2525\"}"),
            None,
            &|p| p.to_path_buf(),
        )
        .unwrap();
        assert!(c.smarthost.unwrap().allow().is_none());
    }

    #[test]
    fn hostile_mail_settings_are_refused_at_their_field() {
        for (y, field) in [
            ("{smarthost: \"smtp.example.com\"}", "mail.smarthost"),
            ("{smarthost: \"a:0\"}", "mail.smarthost"),
            ("{smarthost: \"a:99999\"}", "mail.smarthost"),
            ("{smarthost: \"u@a:25\"}", "mail.smarthost"),
            ("{smarthost: \"a:25/x\"}", "mail.smarthost"),
            ("{smarthost: \"a\\nb:25\"}", "mail.smarthost"),
            (
                "{smarthost: \"a:25\", smarthost_user: u}",
                "mail.smarthost_password_file",
            ),
            (
                "{smarthost: \"a:25\", smarthost_tls: always}",
                "mail.smarthost_tls",
            ),
            ("{smarthost_user: u}", "mail.smarthost"),
            ("{hostname: \"a b\"}", "mail.hostname"),
            ("{hostname: \"-a.b\"}", "mail.hostname"),
            ("{memory: 1k}", "mail.memory"),
            ("{memory: lots}", "mail.memory"),
            ("{dkim_selector: \"A.b\"}", "mail.dkim_selector"),
            ("{image: \"x y\"}", "mail.image"),
        ] {
            let e = errors(y);
            assert!(e.iter().any(|(f, _)| f == field), "{y}: {e:?}");
        }
    }

    #[test]
    fn plan_limits_overlay_the_defaults_and_are_checked_by_field() {
        let f: MailLimitsFile = serde_yaml::from_str("{per_hour: 5, max_size: 1m}").unwrap();
        let l = MailLimits::default().overlay(&f).unwrap();
        assert_eq!((l.per_hour, l.per_day, l.max_size), (5, 1000, 1 << 20));
        for (y, field) in [
            ("{per_hour: 0}", "mail.per_hour"),
            ("{per_day: 20000000}", "mail.per_day"),
            ("{recipients: 0}", "mail.recipients"),
            ("{max_size: 1g}", "mail.max_size"),
            ("{max_size: 10}", "mail.max_size"),
            ("{max_size: big}", "mail.max_size"),
            ("{per_hour: 50, per_day: 10}", "mail.per_hour"),
        ] {
            let f: MailLimitsFile = serde_yaml::from_str(y).unwrap();
            let e = MailLimits::default().overlay(&f).unwrap_err();
            assert_eq!(e.field, field, "{y}");
        }
    }
}
