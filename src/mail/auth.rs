//! The relay's SASL logins, answered by berth over Dovecot's authentication protocol (the one
//! Postfix's `smtpd_sasl_type = dovecot` speaks on a Unix socket): a tenant's login is its name,
//! its password the secret file berth generated for it. Nothing is copied into the relay, so a
//! purged tenant's login stops working when its secret goes.
//!
//! Lines are tab-separated; PLAIN (with or without an initial response) and LOGIN.

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// Lines longer than this end the connection.
const MAX_LINE: usize = 8192;
/// Conversations waiting for a client's line at once, per connection.
const MAX_PENDING: usize = 16;

/// Checks a login and password; the tenant's name when they match.
pub trait Verifier: Send + Sync {
    fn verify(&self, login: &str, password: &[u8]) -> bool;
    /// A failed login against a known tenant (counted as a refusal).
    fn failed(&self, login: &str);
}

/// A login conversation in progress.
enum Pending {
    Plain,
    LoginUser,
    LoginPass(String),
}

/// What the server says first.
fn handshake() -> String {
    let mut cookie = [0u8; 16];
    let _ = getrandom::fill(&mut cookie);
    format!(
        "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\nSPID\t{}\nCUID\t1\nCOOKIE\t{}\nDONE\n",
        std::process::id(),
        hex::encode(cookie)
    )
}

/// The state of one client connection: requests by id.
#[derive(Default)]
pub struct Conversation {
    pending: std::collections::HashMap<String, Pending>,
}

/// One step's answer: a line to send, and whether it is a failure (sent after a pause).
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub line: String,
    pub failed: bool,
}

fn ok(id: &str, user: &str) -> Answer {
    Answer {
        line: format!("OK\t{id}\tuser={user}\n"),
        failed: false,
    }
}

fn fail(id: &str, user: Option<&str>) -> Answer {
    let u = user
        .filter(|u| u.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .map(|u| format!("\tuser={u}"))
        .unwrap_or_default();
    Answer {
        line: format!("FAIL\t{id}{u}\n"),
        failed: true,
    }
}

fn cont(id: &str, challenge: &str) -> Answer {
    Answer {
        line: format!("CONT\t{id}\t{}\n", B64.encode(challenge)),
        failed: false,
    }
}

impl Conversation {
    /// Handles one client line; None when it needs no answer.
    pub fn line(&mut self, v: &dyn Verifier, line: &str) -> Option<Answer> {
        let f: Vec<&str> = line.split('\t').collect();
        match f.first().copied() {
            Some("AUTH") if f.len() >= 3 => Some(self.auth(v, f[1], f[2], &f[3..])),
            Some("CONT") if f.len() >= 2 => Some(self.cont(v, f[1], f.get(2).copied())),
            _ => None,
        }
    }

    /// Keeps a conversation waiting for the client's next line; refused past a few at once
    /// (Postfix has one at a time per connection; more is a client growing our memory).
    fn wait(&mut self, id: &str, p: Pending) -> bool {
        if self.pending.len() >= MAX_PENDING && !self.pending.contains_key(id) {
            return false;
        }
        self.pending.insert(id.into(), p);
        true
    }

    fn auth(&mut self, v: &dyn Verifier, id: &str, mech: &str, params: &[&str]) -> Answer {
        let resp = params.iter().find_map(|p| p.strip_prefix("resp="));
        match (mech.to_ascii_uppercase().as_str(), resp) {
            ("PLAIN", Some(r)) => plain(v, id, r),
            ("PLAIN", None) => {
                if !self.wait(id, Pending::Plain) {
                    return fail(id, None);
                }
                Answer {
                    line: format!("CONT\t{id}\t\n"),
                    failed: false,
                }
            }
            ("LOGIN", Some(r)) => match decode(r) {
                Some(user) => {
                    if !self.wait(id, Pending::LoginPass(user)) {
                        return fail(id, None);
                    }
                    cont(id, "Password:")
                }
                None => fail(id, None),
            },
            ("LOGIN", None) => {
                if !self.wait(id, Pending::LoginUser) {
                    return fail(id, None);
                }
                cont(id, "Username:")
            }
            _ => fail(id, None),
        }
    }

    fn cont(&mut self, v: &dyn Verifier, id: &str, data: Option<&str>) -> Answer {
        let data = data.unwrap_or_default();
        match self.pending.remove(id) {
            Some(Pending::Plain) => plain(v, id, data),
            Some(Pending::LoginUser) => match decode(data) {
                Some(user) => {
                    if !self.wait(id, Pending::LoginPass(user)) {
                        return fail(id, None);
                    }
                    cont(id, "Password:")
                }
                None => fail(id, None),
            },
            Some(Pending::LoginPass(user)) => {
                let pw = B64.decode(data.trim()).unwrap_or_default();
                check(v, id, &user, &pw)
            }
            None => fail(id, None),
        }
    }
}

fn decode(b64: &str) -> Option<String> {
    let bytes = B64.decode(b64.trim()).ok()?;
    String::from_utf8(bytes).ok()
}

/// RFC 4616: `authzid NUL authcid NUL passwd`; an authzid, if any, must be the login itself.
fn plain(v: &dyn Verifier, id: &str, b64: &str) -> Answer {
    let Ok(raw) = B64.decode(b64.trim()) else {
        return fail(id, None);
    };
    let parts: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
    let [authz, authc, pw] = parts[..] else {
        return fail(id, None);
    };
    let Ok(user) = std::str::from_utf8(authc) else {
        return fail(id, None);
    };
    if !authz.is_empty() && authz != authc {
        return fail(id, Some(user));
    }
    check(v, id, user, pw)
}

fn check(v: &dyn Verifier, id: &str, user: &str, pw: &[u8]) -> Answer {
    if v.verify(user, pw) {
        ok(id, user)
    } else {
        v.failed(user);
        fail(id, Some(user))
    }
}

/// Serves one Postfix connection until it closes or breaks the protocol.
pub async fn serve<S>(stream: S, v: &dyn Verifier) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (r, mut w) = tokio::io::split(stream);
    w.write_all(handshake().as_bytes()).await?;
    let mut lines = BufReader::new(r);
    let mut conv = Conversation::default();
    let mut line = String::new();
    loop {
        line.clear();
        let n = (&mut lines)
            .take(MAX_LINE as u64 + 1)
            .read_line(&mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        if n > MAX_LINE || !line.ends_with('\n') {
            return Err(std::io::Error::other("auth line too long"));
        }
        if let Some(a) = conv.line(v, line.trim_end_matches(['\r', '\n'])) {
            if a.failed {
                // A guessed password costs the guesser a second.
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            w.write_all(a.line.as_bytes()).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct One;
    impl Verifier for One {
        fn verify(&self, login: &str, pw: &[u8]) -> bool {
            login == "acme" && pw == b"s3cret"
        }
        fn failed(&self, _: &str) {}
    }

    fn b64(s: &[u8]) -> String {
        B64.encode(s)
    }

    #[test]
    fn plain_with_and_without_an_initial_response_and_login_are_answered() {
        let mut c = Conversation::default();
        let a = c.line(
            &One,
            &format!(
                "AUTH\t1\tPLAIN\tservice=smtp\tresp={}",
                b64(b"\0acme\0s3cret")
            ),
        );
        assert_eq!(a.unwrap().line, "OK\t1\tuser=acme\n");
        let a = c.line(&One, "AUTH\t2\tPLAIN\tservice=smtp").unwrap();
        assert_eq!(a.line, "CONT\t2\t\n");
        let a = c.line(&One, &format!("CONT\t2\t{}", b64(b"acme\0acme\0s3cret")));
        assert_eq!(a.unwrap().line, "OK\t2\tuser=acme\n");
        assert!(
            c.line(&One, "AUTH\t3\tLOGIN\tservice=smtp")
                .unwrap()
                .line
                .starts_with("CONT\t3\t")
        );
        c.line(&One, &format!("CONT\t3\t{}", b64(b"acme")));
        let a = c.line(&One, &format!("CONT\t3\t{}", b64(b"s3cret")));
        assert_eq!(a.unwrap().line, "OK\t3\tuser=acme\n");
        assert_eq!(c.line(&One, "VERSION\t1\t2"), None);
    }

    #[test]
    fn wrong_passwords_other_identities_and_garbage_fail() {
        let mut c = Conversation::default();
        for line in [
            format!("AUTH\t1\tPLAIN\tresp={}", b64(b"\0acme\0wrong")),
            format!("AUTH\t1\tPLAIN\tresp={}", b64(b"globex\0acme\0s3cret")),
            format!("AUTH\t1\tPLAIN\tresp={}", b64(b"acme\0s3cret")),
            "AUTH\t1\tPLAIN\tresp=!!!".into(),
            "AUTH\t1\tCRAM-MD5".into(),
            "CONT\t9\tAAAA".into(),
            format!("AUTH\t1\tPLAIN\tresp={}", b64(b"\0acme\tuser=root\0s3cret")),
        ] {
            let a = c.line(&One, &line).unwrap();
            assert!(
                a.failed && a.line.starts_with("FAIL\t1") || a.line.starts_with("FAIL\t9"),
                "{line}: {a:?}"
            );
            assert!(!a.line.contains("root"), "{a:?}");
        }
    }

    #[test]
    fn a_client_cannot_keep_unbounded_conversations_open() {
        let mut c = Conversation::default();
        for n in 0..1000 {
            let _ = c.line(&One, &format!("AUTH\t{n}\tLOGIN\tservice=smtp"));
        }
        assert_eq!(c.pending.len(), MAX_PENDING);
        let a = c.line(&One, "AUTH\tx\tPLAIN\tservice=smtp").unwrap();
        assert!(a.failed, "{a:?}");
    }

    #[tokio::test]
    async fn an_overlong_line_ends_the_connection() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let task = tokio::spawn(async move {
            client.write_all(&vec![b'A'; MAX_LINE + 10]).await.unwrap();
            let mut out = Vec::new();
            let _ = client.read_to_end(&mut out).await;
            out
        });
        assert!(serve(server, &One).await.is_err());
        let out = task.await.unwrap();
        assert!(String::from_utf8_lossy(&out).starts_with("VERSION\t1\t2\nMECH\tPLAIN"));
    }
}
