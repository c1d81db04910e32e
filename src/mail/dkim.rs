//! Each tenant domain's DKIM key: made in the relay by Debian's `opendkim-genkey`, kept for
//! OpenDKIM (0600, its uid) with the DNS record beside it for `berth mail dns`; the key and
//! signing tables OpenDKIM reads, re-read on SIGUSR1 when they change.

use super::{
    MailError,
    relay::{DKIM_AT, Paths, ferr},
};
use crate::{runtime::Runtime, store::atomic};

/// OpenDKIM's uid and gid in the relay image (keys are chowned to it).
const OPENDKIM_ID: (u32, u32) = (990, 990);

/// A DKIM key of one tenant domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    pub tenant: String,
    pub domain: String,
}

/// Generates (in the relay, with Debian's opendkim-genkey) each signer's key that is missing:
/// the private key to `keys/<tenant>/<domain>.private` (opendkim's, 0600), the DNS record to
/// `records/<tenant>/<domain>.txt`.
pub async fn ensure_keys(
    rt: &dyn Runtime,
    relay: &str,
    paths: &Paths,
    selector: &str,
    signers: &[Signer],
) -> Result<(), MailError> {
    for s in signers {
        let key = paths.keys(&s.tenant).join(format!("{}.private", s.domain));
        let record = paths.records(&s.tenant).join(format!("{}.txt", s.domain));
        if key.exists() && record.exists() {
            continue;
        }
        let script = "umask 077; d=$(mktemp -d) && opendkim-genkey -b 2048 -h sha256 -D \"$d\" \
                      -d \"$0\" -s \"$1\" && cat \"$d/$1.private\" && echo '-----RECORD-----' && \
                      cat \"$d/$1.txt\"; r=$?; rm -rf \"$d\"; exit $r";
        let out = rt
            .exec(relay, &["sh", "-c", script, &s.domain, selector], None)
            .await?;
        let (pem, txt) = out
            .output
            .split_once("-----RECORD-----")
            .filter(|_| out.exit_code == 0)
            .ok_or_else(|| MailError::Dkim {
                domain: s.domain.clone(),
                output: out.output.chars().take(300).collect(),
            })?;
        let value = record_value(txt).ok_or_else(|| MailError::Dkim {
            domain: s.domain.clone(),
            output: "no p= in the generated record".into(),
        })?;
        let pem = pem.trim_start();
        for dir in [paths.keys(&s.tenant), paths.records(&s.tenant)] {
            atomic::create_dir(&dir, 0o711).map_err(ferr(&dir))?;
        }
        atomic::write_owned(&key, pem.as_bytes(), 0o600, OPENDKIM_ID).map_err(ferr(&key))?;
        atomic::write(&record, value.as_bytes(), 0o644).map_err(ferr(&record))?;
        tracing::info!(tenant = %s.tenant, domain = %s.domain, "DKIM key made");
    }
    Ok(())
}

/// The TXT value from opendkim-genkey's zone-file snippet: its quoted strings, joined.
pub fn record_value(txt: &str) -> Option<String> {
    let mut out = String::new();
    for (i, part) in txt.split('"').enumerate() {
        if i % 2 == 1 {
            out.push_str(part);
        }
    }
    let out = out.split_whitespace().collect::<Vec<_>>().join(" ");
    out.contains("p=").then_some(out)
}

/// The key and signing tables for `signers` with keys; whether they changed.
pub fn write_tables(paths: &Paths, selector: &str, signers: &[Signer]) -> Result<bool, MailError> {
    let (mut keys, mut signing) = (String::new(), String::new());
    for s in signers {
        if !paths
            .keys(&s.tenant)
            .join(format!("{}.private", s.domain))
            .exists()
        {
            continue;
        }
        let d = &s.domain;
        keys.push_str(&format!(
            "{selector}._domainkey.{d} {d}:{selector}:{DKIM_AT}/keys/{}/{d}.private\n",
            s.tenant
        ));
        signing.push_str(&format!("*@{d} {selector}._domainkey.{d}\n"));
    }
    let mut changed = false;
    for (name, text) in [("KeyTable", keys), ("SigningTable", signing)] {
        let p = paths.dkim().join(name);
        if std::fs::read_to_string(&p).ok().as_deref() != Some(text.as_str()) {
            atomic::write(&p, text.as_bytes(), 0o644).map_err(ferr(&p))?;
            changed = true;
        }
    }
    Ok(changed)
}

/// Makes OpenDKIM read its tables again (SIGUSR1).
pub async fn reload_dkim(rt: &dyn Runtime, relay: &str) -> Result<(), MailError> {
    let out = rt
        .exec(
            relay,
            &[
                "sh",
                "-c",
                "kill -USR1 \"$(cat /run/opendkim/opendkim.pid)\"",
            ],
            None,
        )
        .await?;
    if out.exit_code != 0 {
        return Err(MailError::Dkim {
            domain: "*".into(),
            output: out.output,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_is_the_generated_snippet_s_quoted_strings_joined() {
        let txt = "berth._domainkey\tIN\tTXT\t( \"v=DKIM1; h=sha256; k=rsa; \"\n\t  \"p=MIIB\"\n\t  \"IjAN\" )  ; ----- DKIM key berth for a.test\n";
        assert_eq!(
            record_value(txt).unwrap(),
            "v=DKIM1; h=sha256; k=rsa; p=MIIBIjAN"
        );
        assert_eq!(record_value("nothing"), None);
    }

    #[test]
    fn tables_name_only_signers_with_keys_and_report_changes() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            root: dir.path().to_path_buf(),
        };
        super::super::relay::prepare(&paths).unwrap();
        let s = |t: &str, d: &str| Signer {
            tenant: t.into(),
            domain: d.into(),
        };
        std::fs::create_dir_all(paths.keys("acme")).unwrap();
        std::fs::write(paths.keys("acme").join("acme.test.private"), "k").unwrap();
        let signers = [s("acme", "acme.test"), s("globex", "globex.test")];
        assert!(write_tables(&paths, "berth", &signers).unwrap());
        assert!(!write_tables(&paths, "berth", &signers).unwrap());
        let kt = std::fs::read_to_string(paths.dkim().join("KeyTable")).unwrap();
        assert_eq!(
            kt,
            "berth._domainkey.acme.test acme.test:berth:/etc/berth-mail/dkim/keys/acme/acme.test.private\n"
        );
        let st = std::fs::read_to_string(paths.dkim().join("SigningTable")).unwrap();
        assert_eq!(st, "*@acme.test berth._domainkey.acme.test\n");
        super::super::relay::purge(&paths, "acme").unwrap();
        assert!(write_tables(&paths, "berth", &signers).unwrap());
        super::super::relay::purge(&paths, "nobody").unwrap();
    }
}
