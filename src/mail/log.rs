//! Delivery results from the relay's log (Postfix writes it to the container's stdout): which
//! tenant a queue id belongs to (`sasl_username=`), each recipient's `status=` and its reason,
//! and when a message leaves the queue (`removed`).

/// One log line, as far as berth cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// smtpd accepted a client's message into the queue under this login.
    Queued { qid: String, login: String },
    /// A delivery attempt's outcome for one recipient.
    Status {
        qid: String,
        result: Outcome,
        reason: String,
    },
    /// The message left the queue.
    Removed { qid: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    Deferred,
    Bounced,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Deferred => "deferred",
            Outcome::Bounced => "bounced",
        }
    }
}

/// Parses `... postfix/<daemon>[pid]: <QID>: <rest>`; anything else is None. Each event is
/// read only from the daemon that writes it, at its fixed place in the line: a login from
/// smtpd's `client=…, sasl_username=…` line, an outcome from a delivery agent's `to=<…>` line,
/// a removal from qmgr. A recipient address or a remote server's reply is text a sender
/// controls (`"sasl_username=globex x"@…`); it never names the tenant a queue id belongs to.
pub fn parse(line: &str) -> Option<Event> {
    let at = line.find(" postfix/")?;
    let rest = &line[at + 9..];
    let (daemon, rest) = rest.split_once('[')?;
    let (_, rest) = rest.split_once("]: ")?;
    let (qid, rest) = rest.split_once(": ")?;
    if qid.is_empty() || !qid.bytes().all(|b| b.is_ascii_alphanumeric()) || qid.len() > 20 {
        return None;
    }
    let qid = qid.to_string();
    match daemon {
        "qmgr" if rest == "removed" => Some(Event::Removed { qid }),
        "smtpd" if rest.starts_with("client=") => {
            let login = field(rest, ", sasl_username=")?;
            Some(Event::Queued { qid, login })
        }
        "smtp" | "lmtp" | "local" | "virtual" | "error" | "discard" if rest.starts_with("to=<") => {
            status(qid, rest)
        }
        _ => None,
    }
}

/// A delivery agent's outcome for one recipient: the `status=` after the last `dsn=` field
/// that precedes the reply in parentheses.
fn status(qid: String, rest: &str) -> Option<Event> {
    let head = rest.find(" (").map_or(rest, |i| &rest[..i]);
    let status = head.rfind(", status=").map(|i| &rest[i + 9..])?;
    let (word, reason) = status.split_once(' ').unwrap_or((status, ""));
    let result = match word {
        "sent" => Outcome::Sent,
        "deferred" => Outcome::Deferred,
        "bounced" | "expired" => Outcome::Bounced,
        _ => return None,
    };
    let reason = reason
        .trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .chars()
        .take(300)
        .collect();
    Some(Event::Status {
        qid,
        result,
        reason,
    })
}

/// The value of `key` (e.g. `, sasl_username=`) in smtpd's `k=v, k=v` list: up to the next
/// `,` or space; a login is a tenant name, which has neither.
fn field(rest: &str, key: &str) -> Option<String> {
    let i = rest.find(key)?;
    let v = &rest[i + key.len()..];
    let v = v.split([',', ' ']).next().unwrap_or_default();
    (!v.is_empty()).then(|| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postfix_lines_become_queue_status_and_removal_events() {
        let q = "Dec  5 15:20:01 mail postfix/smtpd[88]: 4F1C21A0: client=unknown[10.240.0.18], sasl_method=PLAIN, sasl_username=acme";
        assert_eq!(
            parse(q),
            Some(Event::Queued {
                qid: "4F1C21A0".into(),
                login: "acme".into()
            })
        );
        let s = "Dec  5 15:20:02 mail postfix/smtp[90]: 4F1C21A0: to=<a@b.example>, relay=198.18.0.25[198.18.0.25]:2525, delay=0.2, delays=0.1/0/0/0.1, dsn=2.0.0, status=sent (250 OK)";
        assert_eq!(
            parse(s),
            Some(Event::Status {
                qid: "4F1C21A0".into(),
                result: Outcome::Sent,
                reason: "250 OK".into()
            })
        );
        let d = "Dec  5 15:20:02 mail postfix/smtp[90]: 4F1C21A0: to=<a@b.example>, relay=none, delay=30, dsn=4.4.1, status=deferred (connect to 198.18.0.25[198.18.0.25]:2525: Connection refused)";
        assert!(
            matches!(parse(d), Some(Event::Status { result: Outcome::Deferred, ref reason, .. }) if reason.starts_with("connect to"))
        );
        let b =
            "x postfix/smtp[1]: 4F1C21A0: to=<a@b>, status=bounced (host said: 550 no such user)";
        assert!(matches!(
            parse(b),
            Some(Event::Status {
                result: Outcome::Bounced,
                ..
            })
        ));
        let tricky = "x postfix/smtp[90]: 4F1C21A0: to=<\"x, status=sent y\"@b.example>, relay=r[1.2.3.4]:25, dsn=5.1.1, status=bounced (550 no, status=sent z)";
        assert!(
            matches!(
                parse(tricky),
                Some(Event::Status {
                    result: Outcome::Bounced,
                    ..
                })
            ),
            "{:?}",
            parse(tricky)
        );
        let r = "Dec  5 15:20:02 mail postfix/qmgr[70]: 4F1C21A0: removed";
        assert_eq!(
            parse(r),
            Some(Event::Removed {
                qid: "4F1C21A0".into()
            })
        );
        for other in [
            "Dec  5 15:20:02 mail postfix/qmgr[70]: 4F1C21A0: from=<n@acme.test>, size=300, nrcpt=1 (queue active)",
            "Dec  5 15:20:02 mail postfix/master[1]: daemon started",
            "garbage",
            "x postfix/smtp[1]: bad id!: removed",
            // A recipient or a reply naming another tenant's login charges nobody.
            "x postfix/smtp[90]: 4F1C21A0: to=<\"sasl_username=globex x\"@b.example>, relay=none, status=bogus",
            "x postfix/cleanup[9]: 4F1C21A0: message-id=<sasl_username=globex@x>",
            "x postfix/smtpd[88]: 4F1C21A0: reject: RCPT from x: <\"a, sasl_username=globex\"@b>",
            "",
        ] {
            assert_eq!(parse(other), None, "{other}");
        }
    }
}
