//! What a tenant may send (pure): its own domains only, in the envelope and in the From
//! header; so many messages per rolling hour and day, recipients per message, bytes per message;
//! nothing while suspended. Each refusal is an SMTP reply with a reason the app can log.

use crate::desired::mail::MailLimits;
use std::{
    collections::VecDeque,
    time::{Duration, SystemTime},
};

/// A tenant's account as the relay's policy sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub tenant: String,
    /// Lowercase domains the tenant may send from (subdomain and verified custom domains).
    pub domains: Vec<String>,
    pub limits: MailLimits,
    pub suspended: bool,
}

/// An SMTP refusal: `code enhanced text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub enhanced: &'static str,
    pub text: String,
}

impl Refusal {
    fn new(code: u16, enhanced: &'static str, text: String) -> Refusal {
        Refusal {
            code,
            enhanced,
            text,
        }
    }

    /// The reply line (no CR LF).
    pub fn reply(&self) -> String {
        format!("{} {} {}", self.code, self.enhanced, self.text)
    }
}

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// Messages a tenant had accepted in the last day (oldest first).
#[derive(Debug, Clone, Default)]
pub struct Window(VecDeque<SystemTime>);

impl Window {
    fn prune(&mut self, now: SystemTime) {
        while self
            .0
            .front()
            .is_some_and(|t| now.duration_since(*t).unwrap_or_default() >= DAY)
        {
            self.0.pop_front();
        }
    }

    /// Accepted within the last hour and day.
    pub fn counts(&mut self, now: SystemTime) -> (u32, u32) {
        self.prune(now);
        let hour = self
            .0
            .iter()
            .rev()
            .take_while(|t| now.duration_since(**t).unwrap_or_default() < HOUR)
            .count();
        (hour as u32, self.0.len() as u32)
    }

    pub fn record(&mut self, now: SystemTime) {
        self.0.push_back(now);
    }

    /// Seconds since the epoch of each message (what is saved).
    pub fn times(&self) -> Vec<u64> {
        self.0
            .iter()
            .filter_map(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
            .collect()
    }

    pub fn from_times(times: &[u64]) -> Window {
        let mut v: Vec<u64> = times.to_vec();
        v.sort_unstable();
        Window(
            v.into_iter()
                .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
                .collect(),
        )
    }
}

/// The domain of an address (`local@domain`, angle brackets allowed), lowercased.
pub fn domain_of(addr: &str) -> Option<String> {
    let a = addr.trim().trim_start_matches('<').trim_end_matches('>');
    let (local, domain) = a.rsplit_once('@')?;
    (!local.is_empty() && !domain.is_empty()).then(|| domain.to_ascii_lowercase())
}

/// May `acct` start a message from envelope sender `from` now (with `window`'s history)?
pub fn mail_from(
    acct: &Account,
    from: &str,
    window: &mut Window,
    now: SystemTime,
) -> Result<(), Refusal> {
    if acct.suspended {
        return Err(Refusal::new(
            451,
            "4.7.1",
            format!("sending is suspended for tenant {}", acct.tenant),
        ));
    }
    match domain_of(from) {
        Some(d) if acct.domains.contains(&d) => {}
        _ => {
            return Err(Refusal::new(
                553,
                "5.7.1",
                format!(
                    "sender <{}> is not in a domain of tenant {} ({})",
                    from.trim_matches(|c| c == '<' || c == '>'),
                    acct.tenant,
                    shown(&acct.domains)
                ),
            ));
        }
    }
    within_rate(acct, window, now)
}

/// The hourly and daily limits, checked again when a message is complete (sessions run side
/// by side).
pub fn within_rate(acct: &Account, window: &mut Window, now: SystemTime) -> Result<(), Refusal> {
    let (hour, day) = window.counts(now);
    if hour >= acct.limits.per_hour {
        return Err(Refusal::new(
            451,
            "4.7.1",
            format!(
                "tenant {} reached its limit of {} messages per hour; try again later",
                acct.tenant, acct.limits.per_hour
            ),
        ));
    }
    if day >= acct.limits.per_day {
        return Err(Refusal::new(
            451,
            "4.7.1",
            format!(
                "tenant {} reached its limit of {} messages per day; try again later",
                acct.tenant, acct.limits.per_day
            ),
        ));
    }
    Ok(())
}

/// May the message have an `n`-th recipient?
pub fn recipient(acct: &Account, n: u32) -> Result<(), Refusal> {
    if n > acct.limits.recipients {
        return Err(Refusal::new(
            452,
            "4.5.3",
            format!(
                "too many recipients: tenant {} may send to {} per message",
                acct.tenant, acct.limits.recipients
            ),
        ));
    }
    Ok(())
}

/// Every address in every From header must be in one of the tenant's domains (a display
/// name that carries another address is refused too: it is how impersonation looks).
pub fn header_from(acct: &Account, values: &[String]) -> Result<(), Refusal> {
    let refuse = |why: String| Err(Refusal::new(550, "5.7.1", why));
    if values.is_empty() {
        return refuse("the message has no From header".into());
    }
    own_addresses(acct, "From", values)
}

/// A `Sender:` header is optional; when there is one, it is held to what `From:` is.
pub fn header_sender(acct: &Account, values: &[String]) -> Result<(), Refusal> {
    if values.is_empty() {
        return Ok(());
    }
    own_addresses(acct, "Sender", values)
}

/// One header `name` whose every address, as written and with its RFC 2047 encoded words
/// decoded (`=?utf-8?q?ceo=40globex.example?=`), is in the tenant's domains.
fn own_addresses(acct: &Account, name: &str, values: &[String]) -> Result<(), Refusal> {
    let refuse = |why: String| Err(Refusal::new(550, "5.7.1", why));
    if values.len() > 1 {
        return refuse(format!("the message has more than one {name} header"));
    }
    let decoded = super::encoded::decode_words(&values[0]);
    let mut domains = addresses(&values[0]);
    domains.extend(addresses(&decoded));
    if domains.is_empty() {
        return refuse(format!("{name}: {:?} has no address", clip(&values[0])));
    }
    if let Some(d) = domains.iter().find(|d| !acct.domains.contains(d)) {
        return refuse(format!(
            "{name}: domain {d} is not a domain of tenant {} ({})",
            acct.tenant,
            shown(&acct.domains)
        ));
    }
    Ok(())
}

/// May a message of `bytes` go on?
pub fn size(acct: &Account, bytes: u64) -> Result<(), Refusal> {
    if bytes > acct.limits.max_size {
        return Err(Refusal::new(
            552,
            "5.3.4",
            format!(
                "message too large: tenant {} may send {} bytes per message",
                acct.tenant, acct.limits.max_size
            ),
        ));
    }
    Ok(())
}

/// The lowercased domain after every `@` in a header value (RFC 5322 folding unfolded).
fn addresses(value: &str) -> Vec<String> {
    let stop = |c: char| c.is_whitespace() || "<>,;:\"()[]\\".contains(c);
    let mut out = Vec::new();
    for (i, _) in value.match_indices('@') {
        let d: String = value[i + 1..].chars().take_while(|c| !stop(*c)).collect();
        out.push(d.trim_end_matches('.').to_ascii_lowercase());
    }
    out
}

fn shown(domains: &[String]) -> String {
    if domains.is_empty() {
        "none yet".into()
    } else {
        domains.join(", ")
    }
}

fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acct() -> Account {
        Account {
            tenant: "acme".into(),
            domains: vec!["acme.apps.test".into(), "acme.example".into()],
            limits: MailLimits {
                per_hour: 2,
                per_day: 3,
                recipients: 2,
                max_size: 1000,
            },
            suspended: false,
        }
    }

    #[test]
    fn a_tenant_sends_only_from_its_own_domains_in_the_envelope() {
        let (a, mut w, now) = (acct(), Window::default(), SystemTime::now());
        assert!(mail_from(&a, "<news@acme.example>", &mut w, now).is_ok());
        assert!(mail_from(&a, "<News@ACME.Example>", &mut w, now).is_ok());
        for bad in [
            "<ceo@globex.example>",
            "<x@acme.example.evil>",
            "<x@sub.acme.example>",
            "<>",
            "<acme.example>",
            "<@acme.example>",
        ] {
            let r = mail_from(&a, bad, &mut w, now).unwrap_err();
            assert_eq!((r.code, r.enhanced), (553, "5.7.1"), "{bad}");
        }
    }

    #[test]
    fn the_from_header_must_name_only_the_tenant_s_domains() {
        let a = acct();
        let ok = |v: &str| header_from(&a, &[v.to_string()]);
        assert!(ok("Acme <news@acme.example>").is_ok());
        assert!(ok("news@acme.apps.test").is_ok());
        assert!(ok("\"A, B\" <a@acme.example>, b@acme.example").is_ok());
        for bad in [
            "Globex <ceo@globex.example>",
            "\"ceo@globex.example\" <news@acme.example>",
            "news@acme.example, ceo@globex.example",
            "Acme",
            "",
        ] {
            let r = ok(bad).unwrap_err();
            assert_eq!(r.code, 550, "{bad}: {r:?}");
        }
        for encoded in [
            "=?utf-8?q?ceo=40globex.example?= <news@acme.example>",
            "=?UTF-8?B?Y2VvQGdsb2JleC5leGFtcGxl?= <news@acme.example>",
            "=?iso-8859-1?Q?CEO_=3Cceo=40globex=2Eexample=3E?= <news@acme.example>",
        ] {
            let r = ok(encoded).unwrap_err();
            assert!(r.text.contains("globex.example"), "{encoded}: {r:?}");
        }
        assert!(ok("=?utf-8?q?Acme_News?= <news@acme.example>").is_ok());
        assert!(header_sender(&a, &[]).is_ok(), "no Sender: fine");
        assert!(header_sender(&a, &["ops@acme.example".into()]).is_ok());
        let r = header_sender(&a, &["ceo@globex.example".into()]).unwrap_err();
        assert!(r.text.contains("Sender"), "{r:?}");
        assert!(header_from(&a, &[]).is_err());
        let two = ["a@acme.example".to_string(), "b@acme.example".to_string()];
        assert!(header_from(&a, &two).is_err());
    }

    #[test]
    fn hourly_and_daily_limits_roll_with_time() {
        let a = acct();
        let mut w = Window::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        w.record(t0);
        w.record(t0 + Duration::from_secs(10));
        let r = within_rate(&a, &mut w, t0 + Duration::from_secs(20)).unwrap_err();
        assert!(r.text.contains("2 messages per hour"), "{r:?}");
        assert_eq!(r.code, 451);
        let later = t0 + Duration::from_secs(3601);
        assert!(within_rate(&a, &mut w, later).is_ok());
        w.record(later);
        let r = within_rate(&a, &mut w, later + Duration::from_secs(3600)).unwrap_err();
        assert!(r.text.contains("3 messages per day"), "{r:?}");
        assert!(within_rate(&a, &mut w, t0 + DAY + Duration::from_secs(11)).is_ok());
        let saved = Window::from_times(&w.times());
        assert_eq!(saved.times(), w.times());
    }

    #[test]
    fn recipients_size_and_suspension_are_refused_with_their_reason() {
        let mut a = acct();
        assert!(recipient(&a, 2).is_ok());
        assert_eq!(recipient(&a, 3).unwrap_err().code, 452);
        assert!(size(&a, 1000).is_ok());
        assert_eq!(
            size(&a, 1001).unwrap_err().reply().get(..9),
            Some("552 5.3.4")
        );
        a.suspended = true;
        let r = mail_from(
            &a,
            "<a@acme.example>",
            &mut Window::default(),
            SystemTime::now(),
        );
        assert!(r.unwrap_err().text.contains("suspended"));
    }
}
