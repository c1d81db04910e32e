//! The relay's policy as a milter (Sendmail's mail filter protocol, version 6, as Postfix speaks
//! it on a Unix socket): each message's SASL login, envelope sender, recipients, From header and
//! size are checked against the tenant's account as they arrive. Written here, not taken from a
//! crate: the Rust milter library is GPL-3.0, and berth needs ten of its commands.
//!
//! Frames are a 4-byte big-endian length, a command byte and its data.

use super::policy::{self, Refusal};
use std::time::SystemTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Frames larger than this end the connection (Postfix sends body chunks of at most 64 KiB).
const MAX_FRAME: u32 = 1 << 20;

/// What a session needs from the agent: accounts, message windows and counters.
pub trait Ledger: Send + Sync {
    /// The account of a SASL login.
    fn account(&self, login: &str) -> Option<policy::Account>;
    /// Checks the envelope sender (and rates) against the tenant's history.
    fn mail_from(&self, acct: &policy::Account, from: &str, now: SystemTime)
    -> Result<(), Refusal>;
    /// Checks rates once more and records an accepted message (queue id if known).
    fn accept(
        &self,
        acct: &policy::Account,
        queue_id: Option<&str>,
        now: SystemTime,
    ) -> Result<(), Refusal>;
    /// Counts a refusal against the tenant (None: no account to count it against).
    fn refused(&self, tenant: Option<&str>, r: &Refusal);
}

/// One message in progress.
#[derive(Default)]
struct Message {
    acct: Option<policy::Account>,
    recipients: u32,
    bytes: u64,
    from_headers: Vec<String>,
    sender_headers: Vec<String>,
    refused: bool,
}

/// One connection's state.
#[derive(Default)]
pub struct Session {
    macros: std::collections::HashMap<String, String>,
    msg: Message,
}

/// A reply frame: command byte and data.
pub type Reply = (u8, Vec<u8>);

const CONTINUE: u8 = b'c';

impl Session {
    /// Handles one frame; None when the command takes no reply.
    pub fn handle(&mut self, ledger: &dyn Ledger, cmd: u8, data: &[u8]) -> Option<Reply> {
        let r = match cmd {
            b'O' => return Some(negotiate(data)),
            b'D' => {
                self.macros_from(data);
                return None;
            }
            b'A' => {
                self.msg = Message::default();
                return None;
            }
            b'K' => {
                *self = Session::default();
                return None;
            }
            b'M' => self.mail(ledger, data),
            b'R' => self.rcpt(),
            b'L' => self.header(data),
            b'N' => self.end_of_headers(),
            b'B' => self.body(data.len()),
            b'E' => self.end_of_message(ledger, data.len()),
            _ => Ok(()),
        };
        Some(match r {
            Ok(()) => (CONTINUE, Vec::new()),
            Err(refusal) => {
                // One refusal counted per message; a refused recipient leaves the message.
                if !self.msg.refused {
                    let tenant = self.msg.acct.as_ref().map(|a| a.tenant.clone());
                    ledger.refused(tenant.as_deref(), &refusal);
                }
                self.msg.refused |= cmd != b'R';
                let mut text = refusal.reply().into_bytes();
                // `%` would be read as a format directive by the MTA's reply code.
                text.retain(|b| *b != b'%' && *b != b'\r' && *b != b'\n');
                text.push(0);
                (b'y', text)
            }
        })
    }

    fn macros_from(&mut self, data: &[u8]) {
        let mut parts = data.get(1..).unwrap_or_default().split(|b| *b == 0);
        while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
            if k.is_empty() {
                break;
            }
            // Only the two berth reads: a hostile MTA cannot grow the map.
            let key = String::from_utf8_lossy(k);
            let key = key.trim_matches(['{', '}']);
            if key == "auth_authen" || key == "i" {
                self.macros
                    .insert(key.into(), String::from_utf8_lossy(v).into_owned());
            }
        }
    }

    fn mail(&mut self, ledger: &dyn Ledger, data: &[u8]) -> Result<(), Refusal> {
        self.msg = Message::default();
        let login = self.macros.get("auth_authen").cloned().unwrap_or_default();
        let Some(acct) = ledger.account(&login) else {
            return Err(Refusal {
                code: 530,
                enhanced: "5.7.0",
                text: "authentication required (your tenant's relay login)".into(),
            });
        };
        let from = first_string(data);
        self.msg.acct = Some(acct.clone());
        ledger.mail_from(&acct, &from, SystemTime::now())
    }

    fn account(&self) -> Result<&policy::Account, Refusal> {
        self.msg.acct.as_ref().ok_or_else(|| Refusal {
            code: 503,
            enhanced: "5.5.1",
            text: "no sender accepted".into(),
        })
    }

    fn rcpt(&mut self) -> Result<(), Refusal> {
        let acct = self.account()?.clone();
        self.msg.recipients += 1;
        policy::recipient(&acct, self.msg.recipients).inspect_err(|_| {
            // The refused recipient is not part of the message.
            self.msg.recipients -= 1;
        })
    }

    fn header(&mut self, data: &[u8]) -> Result<(), Refusal> {
        let mut parts = data.split(|b| *b == 0);
        let name = parts.next().unwrap_or_default();
        let value = parts.next().unwrap_or_default();
        self.msg.bytes += (name.len() + value.len() + 4) as u64;
        let v = || String::from_utf8_lossy(value).replace(['\r', '\n'], " ");
        if name.eq_ignore_ascii_case(b"from") && self.msg.from_headers.len() < 8 {
            self.msg.from_headers.push(v());
        }
        if name.eq_ignore_ascii_case(b"sender") && self.msg.sender_headers.len() < 8 {
            self.msg.sender_headers.push(v());
        }
        let acct = self.account()?;
        policy::size(acct, self.msg.bytes)
    }

    fn end_of_headers(&mut self) -> Result<(), Refusal> {
        let acct = self.account()?;
        policy::header_from(acct, &self.msg.from_headers)?;
        policy::header_sender(acct, &self.msg.sender_headers)
    }

    fn body(&mut self, n: usize) -> Result<(), Refusal> {
        self.msg.bytes += n as u64;
        policy::size(self.account()?, self.msg.bytes)
    }

    fn end_of_message(&mut self, ledger: &dyn Ledger, n: usize) -> Result<(), Refusal> {
        self.body(n)?;
        // A message refused earlier is not accepted by a late frame.
        if self.msg.refused {
            return Err(Refusal {
                code: 550,
                enhanced: "5.7.1",
                text: "message refused".into(),
            });
        }
        let acct = self.account()?.clone();
        let qid = self.macros.get("i").cloned();
        let r = ledger.accept(&acct, qid.as_deref(), SystemTime::now());
        self.msg = Message {
            acct: Some(acct),
            ..Message::default()
        };
        r
    }
}

/// The first NUL-terminated string of `data`.
fn first_string(data: &[u8]) -> String {
    let s = data.split(|b| *b == 0).next().unwrap_or_default();
    String::from_utf8_lossy(s).into_owned()
}

/// Version 6; no message changes asked; every step wanted, each with a reply.
fn negotiate(_offer: &[u8]) -> Reply {
    let mut d = Vec::with_capacity(12);
    d.extend_from_slice(&6u32.to_be_bytes());
    d.extend_from_slice(&0u32.to_be_bytes());
    d.extend_from_slice(&0u32.to_be_bytes());
    (b'O', d)
}

/// Serves one MTA connection until it quits, breaks the protocol or goes away.
pub async fn serve<S>(mut stream: S, ledger: &dyn Ledger) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut session = Session::default();
    let mut buf = Vec::new();
    loop {
        let len = match stream.read_u32().await {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        if len == 0 || len > MAX_FRAME {
            return Err(std::io::Error::other(format!(
                "milter frame of {len} bytes"
            )));
        }
        buf.resize(len as usize, 0);
        stream.read_exact(&mut buf).await?;
        if buf[0] == b'Q' {
            return Ok(());
        }
        if let Some((cmd, data)) = session.handle(ledger, buf[0], &buf[1..]) {
            let mut out = Vec::with_capacity(5 + data.len());
            out.extend_from_slice(&(data.len() as u32 + 1).to_be_bytes());
            out.push(cmd);
            out.extend_from_slice(&data);
            stream.write_all(&out).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::mail::MailLimits;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Fake {
        window: Mutex<policy::Window>,
        accepted: Mutex<Vec<Option<String>>>,
        refusals: Mutex<Vec<(Option<String>, u16)>>,
    }

    impl Ledger for Fake {
        fn account(&self, login: &str) -> Option<policy::Account> {
            (login == "acme").then(|| policy::Account {
                tenant: "acme".into(),
                domains: vec!["acme.test".into()],
                limits: MailLimits {
                    per_hour: 1,
                    per_day: 5,
                    recipients: 2,
                    max_size: 300,
                },
                suspended: false,
            })
        }
        fn mail_from(&self, a: &policy::Account, f: &str, now: SystemTime) -> Result<(), Refusal> {
            policy::mail_from(a, f, &mut self.window.lock().unwrap(), now)
        }
        fn accept(
            &self,
            a: &policy::Account,
            q: Option<&str>,
            now: SystemTime,
        ) -> Result<(), Refusal> {
            let mut w = self.window.lock().unwrap();
            policy::within_rate(a, &mut w, now)?;
            w.record(now);
            self.accepted.lock().unwrap().push(q.map(String::from));
            Ok(())
        }
        fn refused(&self, t: Option<&str>, r: &Refusal) {
            self.refusals
                .lock()
                .unwrap()
                .push((t.map(String::from), r.code));
        }
    }

    fn frame(cmd: u8, data: &[u8]) -> Vec<u8> {
        let mut v = ((data.len() + 1) as u32).to_be_bytes().to_vec();
        v.push(cmd);
        v.extend_from_slice(data);
        v
    }

    fn macros(stage: u8, pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut d = vec![stage];
        for (k, v) in pairs {
            d.extend_from_slice(k.as_bytes());
            d.push(0);
            d.extend_from_slice(v.as_bytes());
            d.push(0);
        }
        frame(b'D', &d)
    }

    /// Runs a whole MTA conversation and returns the reply command bytes.
    async fn converse(ledger: &Fake, frames: Vec<Vec<u8>>) -> Vec<(u8, String)> {
        let (mut mta, milter) = tokio::io::duplex(1 << 16);
        let input: Vec<u8> = frames.concat();
        let task = tokio::spawn(async move {
            mta.write_all(&input).await.unwrap();
            mta.write_all(&frame(b'Q', &[])).await.unwrap();
            let mut out = Vec::new();
            mta.read_to_end(&mut out).await.unwrap();
            out
        });
        serve(milter, ledger).await.unwrap();
        let out = task.await.unwrap();
        let mut replies = Vec::new();
        let mut rest = &out[..];
        while rest.len() >= 5 {
            let n = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            let text = String::from_utf8_lossy(&rest[5..4 + n])
                .trim_end_matches('\0')
                .to_string();
            replies.push((rest[4], text));
            rest = &rest[4 + n..];
        }
        replies
    }

    fn message(login: &str, from: &str, header_from: &str, body: &[u8]) -> Vec<Vec<u8>> {
        vec![
            frame(b'O', &[0, 0, 0, 6, 0, 0, 1, 255, 0, 0, 0, 0]),
            macros(b'M', &[("{auth_authen}", login), ("i", "4ABC")]),
            frame(b'M', format!("<{from}>\0SIZE=10\0").as_bytes()),
            frame(b'R', b"<a@b.example>\0"),
            frame(b'L', format!("From\0{header_from}\0").as_bytes()),
            frame(b'N', &[]),
            frame(b'B', body),
            macros(b'E', &[("i", "4ABC")]),
            frame(b'E', &[]),
        ]
    }

    #[tokio::test]
    async fn an_owned_sender_is_accepted_with_its_queue_id_and_counted() {
        let l = Fake::default();
        let r = converse(&l, message("acme", "n@acme.test", "N <n@acme.test>", b"hi")).await;
        assert_eq!(r[0].0, b'O');
        assert!(r[1..].iter().all(|(c, _)| *c == b'c'), "{r:?}");
        assert_eq!(*l.accepted.lock().unwrap(), vec![Some("4ABC".to_string())]);
    }

    #[tokio::test]
    async fn foreign_senders_unknown_logins_and_oversized_bodies_get_their_smtp_reply() {
        let l = Fake::default();
        let r = converse(&l, message("acme", "ceo@globex.test", "x@acme.test", b"")).await;
        assert_eq!(r[1], (b'y', r[1].1.clone()));
        assert!(
            r[1].1.starts_with("553 5.7.1 sender <ceo@globex.test>"),
            "{r:?}"
        );
        let r = converse(&l, message("acme", "n@acme.test", "ceo@globex.test", b"")).await;
        assert!(
            r.iter()
                .any(|(c, t)| *c == b'y' && t.starts_with("550 5.7.1 From: domain globex.test")),
            "{r:?}"
        );
        let r = converse(&l, message("globex", "n@acme.test", "n@acme.test", b"")).await;
        assert!(r[1].1.starts_with("530 5.7.0"), "{r:?}");
        let r = converse(
            &l,
            message("acme", "n@acme.test", "n@acme.test", &[b'x'; 400]),
        )
        .await;
        assert!(r.iter().any(|(_, t)| t.starts_with("552 5.3.4")), "{r:?}");
        assert!(l.accepted.lock().unwrap().is_empty());
        let refusals = l.refusals.lock().unwrap();
        assert_eq!(refusals.iter().filter(|(t, _)| t.is_none()).count(), 1);
        assert!(refusals.iter().filter(|(t, _)| t.is_some()).count() >= 3);
    }

    #[tokio::test]
    async fn the_hourly_limit_refuses_the_next_message_with_a_temporary_error() {
        let l = Fake::default();
        let mut frames = message("acme", "n@acme.test", "n@acme.test", b"1");
        frames.extend(
            message("acme", "n@acme.test", "n@acme.test", b"2")
                .into_iter()
                .skip(1),
        );
        let r = converse(&l, frames).await;
        assert!(
            r.iter().any(|(_, t)| t
                .starts_with("451 4.7.1 tenant acme reached its limit of 1 messages per hour")),
            "{r:?}"
        );
        assert_eq!(l.accepted.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn hostile_frames_end_the_connection_without_a_panic() {
        let l = Fake::default();
        for bytes in [
            vec![0, 0, 0, 0],
            vec![255, 255, 255, 255, b'M'],
            vec![0, 0, 0, 9, b'M'],
        ] {
            let (mut mta, milter) = tokio::io::duplex(1024);
            mta.write_all(&bytes).await.unwrap();
            drop(mta);
            let _ = serve(milter, &l).await;
        }
        let mut s = Session::default();
        for n in 0..1000 {
            let _ = s.handle(&l, b'D', format!("M{{junk{n}}}\0x\0").as_bytes());
        }
        assert!(s.macros.is_empty(), "macros berth never reads are not kept");
        for cmd in [b'R', b'L', b'N', b'B', b'E', b'D', b'M', b'Z'] {
            let _ = s.handle(&l, cmd, &[]);
            let _ = s.handle(&l, cmd, b"\0\0\0");
        }
    }
}
