//! Each tenant domain's DKIM key: made in the relay by Debian's `opendkim-genkey`, kept for
//! OpenDKIM (0600, its uid) with the DNS record beside it for `berth mail dns`; the key and
//! signing tables OpenDKIM reads, re-read on SIGUSR1 when they change.

use super::{
    MailError,
    relay::{DKIM_AT, Paths, ferr},
};
use crate::{desired::domains::check_domain, runtime::Runtime, store::atomic};
use std::{collections::BTreeMap, path::PathBuf};

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

/// A tenant's DKIM keys and records as backup members (`dkim/<domain>.private`, its record
/// `dkim/<domain>.txt`), with the files they are read from. A tenant recovered on a new host or
/// moved to another one keeps its keys, so the DKIM records its domains publish stay true.
pub fn members(paths: &Paths, tenant: &str) -> Vec<(String, PathBuf)> {
    let mut out = vec![];
    for (dir, ext) in [
        (paths.keys(tenant), ".private"),
        (paths.records(tenant), ".txt"),
    ] {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name();
            let domain = name.to_str().and_then(|n| n.strip_suffix(ext));
            let Some(domain) = domain.filter(|d| check_domain(d).is_ok()) else {
                continue;
            };
            if e.file_type().is_ok_and(|t| t.is_file()) {
                out.push((format!("dkim/{domain}{ext}"), e.path()));
            }
        }
    }
    out.sort();
    out
}

/// Puts a recovered or received tenant's DKIM keys and records back from its backup's
/// `members` (as `members` names them), before its instance file exists: the relay then signs
/// with them instead of making new ones. A key needs its record; a domain that is no domain
/// name, a key that is no PEM key or a record without `p=` refuses the lot, by name. Returns
/// how many keys were put back.
pub fn put_back(
    paths: &Paths,
    tenant: &str,
    members: &BTreeMap<String, PathBuf>,
) -> Result<usize, MailError> {
    let mut keys = vec![];
    for (name, key) in members {
        let Some(rest) = name.strip_prefix("dkim/") else {
            continue;
        };
        let bad = |why: &str| MailError::Dkim {
            domain: rest.into(),
            output: format!("in the backup: {why}"),
        };
        let (domain, is_key) = match (rest.strip_suffix(".private"), rest.strip_suffix(".txt")) {
            (Some(d), _) => (d, true),
            (_, Some(d)) => (d, false),
            _ => return Err(bad("not a key or a record")),
        };
        check_domain(domain).map_err(|_| bad("not a domain name"))?;
        if !is_key {
            continue;
        }
        let record = members
            .get(&format!("dkim/{domain}.txt"))
            .ok_or_else(|| bad("a key without its DNS record"))?;
        let pem =
            read_small(key, 16 * 1024).ok_or_else(|| bad("the key is unreadable or too long"))?;
        let txt =
            read_small(record, 4096).ok_or_else(|| bad("the record is unreadable or too long"))?;
        if !pem.starts_with(b"-----BEGIN ") {
            return Err(bad("the key is not a PEM key"));
        }
        let printable = txt.iter().all(|b| (b' '..=b'~').contains(b));
        if !printable || !txt.windows(2).any(|w| w == b"p=") {
            return Err(bad("the record is not a DKIM record"));
        }
        keys.push((domain, pem, txt));
    }
    if !keys.is_empty() {
        super::relay::prepare(paths)?;
    }
    for (domain, pem, txt) in &keys {
        for dir in [paths.keys(tenant), paths.records(tenant)] {
            atomic::create_dir(&dir, 0o711).map_err(ferr(&dir))?;
        }
        let key = paths.keys(tenant).join(format!("{domain}.private"));
        atomic::write_owned(&key, pem, 0o600, OPENDKIM_ID).map_err(ferr(&key))?;
        let record = paths.records(tenant).join(format!("{domain}.txt"));
        atomic::write(&record, txt, 0o644).map_err(ferr(&record))?;
    }
    Ok(keys.len())
}

/// A file's bytes if it has at most `max` of them.
fn read_small(path: &std::path::Path, max: u64) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut out = vec![];
    let f = std::fs::File::open(path).ok()?;
    f.take(max + 1).read_to_end(&mut out).ok()?;
    (out.len() as u64 <= max).then_some(out)
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
    fn a_tenants_keys_go_into_its_backup_and_come_back_only_whole_and_well_formed() {
        let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (
            Paths {
                root: from.path().to_path_buf(),
            },
            Paths {
                root: to.path().to_path_buf(),
            },
        );
        let pem = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";
        let txt = "v=DKIM1; h=sha256; k=rsa; p=MIIBIjAN";
        for dir in [a.keys("acme"), a.records("acme")] {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(a.keys("acme").join("acme.test.private"), pem).unwrap();
        std::fs::write(a.records("acme").join("acme.test.txt"), txt).unwrap();
        std::fs::write(a.keys("acme").join("stray"), "x").unwrap();
        std::fs::create_dir_all(a.keys("acme").join("dir.test.private")).unwrap();
        let listed = members(&a, "acme");
        let names: Vec<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["dkim/acme.test.private", "dkim/acme.test.txt"]);
        assert!(
            members(&a, "globex").is_empty(),
            "another tenant's are not its"
        );
        let mut got: BTreeMap<String, PathBuf> = listed.into_iter().collect();
        got.insert("files/secrets/x".into(), "/nonexistent".into());
        assert_eq!(put_back(&b, "acme", &got).unwrap(), 1);
        let key = b.keys("acme").join("acme.test.private");
        assert_eq!(std::fs::read_to_string(&key).unwrap(), pem);
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&key).unwrap().mode() & 0o777, 0o600);
        let record = b.records("acme").join("acme.test.txt");
        assert_eq!(std::fs::read_to_string(record).unwrap(), txt);
        // Hostile members refuse the lot, and write nothing.
        let scratch = tempfile::tempdir().unwrap();
        let file = |name: &str, body: &str| {
            let p = scratch.path().join(name);
            std::fs::write(&p, body).unwrap();
            p
        };
        let (k, r) = (file("k", pem), file("r", txt));
        let cases: Vec<(Vec<(&str, PathBuf)>, &str)> = vec![
            (
                vec![
                    ("dkim/../../etc/x.private", k.clone()),
                    ("dkim/../../etc/x.txt", r.clone()),
                ],
                "not a domain",
            ),
            (
                vec![("dkim/b.test.private", k.clone())],
                "without its DNS record",
            ),
            (
                vec![
                    ("dkim/b.test.private", file("nk", "ssh-rsa AAAA")),
                    ("dkim/b.test.txt", r.clone()),
                ],
                "not a PEM key",
            ),
            (
                vec![
                    ("dkim/b.test.private", k.clone()),
                    ("dkim/b.test.txt", file("nr", "v=DKIM1\n")),
                ],
                "not a DKIM record",
            ),
            (
                vec![
                    ("dkim/b.test.private", file("big", &"A".repeat(20_000))),
                    ("dkim/b.test.txt", r.clone()),
                ],
                "too long",
            ),
            (
                vec![("dkim/b.test.key", k.clone())],
                "not a key or a record",
            ),
        ];
        for (list, says) in cases {
            let m: BTreeMap<String, PathBuf> =
                list.into_iter().map(|(n, p)| (n.to_string(), p)).collect();
            let e = put_back(&b, "globex", &m).unwrap_err().to_string();
            assert!(e.contains(says), "{m:?}: {e}");
            assert!(!b.keys("globex").exists(), "{m:?}: nothing written");
        }
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
