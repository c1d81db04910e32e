//! A host's inventory in a repository: which tenants (by name and identity) the host had and
//! the custom domains each had proven, as one small snapshot tagged `berth-inventory` and the
//! host's namespace. Written whenever it changes, it is what a whole-host recovery brings
//! back: a tenant purged before the disaster is not in it, so it does not come back, even
//! though its snapshots are still in the (append-only) repository.

use super::{OffsiteError, Repo, restic::Restic};
use crate::{desired::host::is_dns_label, store::domain_book::Binding};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const FORMAT: u32 = 1;
/// The tag every inventory snapshot carries (and no tenant's backup does).
pub const TAG: &str = "berth-inventory";
/// The one file in an inventory snapshot.
pub const FILE: &str = "inventory.json";
/// An inventory larger than this is not read (a thousand tenants take about 200 KiB).
const MAX_BYTES: usize = 32 << 20;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Inventory {
    pub format: u32,
    /// The host's namespace.
    pub host: String,
    /// Unix seconds.
    pub created: u64,
    /// By name.
    pub tenants: Vec<Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub tenant: String,
    pub tenant_id: String,
    /// The tenant's proven custom domains.
    #[serde(default)]
    pub domains: BTreeMap<String, Binding>,
    /// The tenant's own API tokens (digests), adopted where it is made again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<super::tokens::CarriedToken>,
}

impl Entry {
    /// Keeps only the proven domains `newest` (None: no inventory readable) also binds to
    /// this tenant identity: recovering from an older inventory, a domain given up since, or
    /// proven by another tenant since, must be proven again.
    pub fn keep_proven_in(&mut self, newest: Option<&Inventory>) {
        let now = newest.and_then(|n| {
            (n.tenants.iter()).find(|x| x.tenant == self.tenant && x.tenant_id == self.tenant_id)
        });
        // The newest proof of each (its method and time), the older one's only where it is
        // the same tenant's.
        self.domains = (self.domains.keys())
            .filter_map(|d| {
                let b = now?.domains.get(d)?;
                (b.tenant == self.tenant).then(|| (d.clone(), b.clone()))
            })
            .collect();
        // Tokens likewise: only those the newest still carries (one revoked since stays dead),
        // as the newest has them.
        self.tokens = (self.tokens.iter())
            .filter_map(|t| now?.tokens.iter().find(|n| n.id == t.id).cloned())
            .collect();
    }
}

impl Inventory {
    /// What decides whether a new inventory must be written: everything but its time.
    pub fn digest(&self) -> String {
        use sha2::Digest;
        let json = serde_json::to_vec(&(&self.host, &self.tenants)).expect("serializes");
        hex::encode(sha2::Sha256::digest(json))
    }

    /// The inventory read back from a repository, every field checked: it names the tenants
    /// and domains a recovery creates, so nothing in it is taken on trust.
    pub fn parse(bytes: &[u8], host: &str) -> Result<Inventory, String> {
        if bytes.len() > MAX_BYTES {
            return Err(format!("{FILE} is larger than {MAX_BYTES} bytes"));
        }
        let inv: Inventory = serde_json::from_slice(bytes)
            .map_err(|e| format!("{FILE} is not an inventory: {e}"))?;
        if inv.format != FORMAT {
            return Err(format!("{FILE} has format {}, not {FORMAT}", inv.format));
        }
        if inv.host != host {
            return Err(format!("{FILE} is host {:?}'s, not {host:?}'s", inv.host));
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut domains = std::collections::BTreeSet::new();
        for e in &inv.tenants {
            e.check().map_err(|why| format!("{FILE}: {why}"))?;
            if !seen.insert(&e.tenant) {
                return Err(format!("{FILE}: tenant {} is listed twice", e.tenant));
            }
            if let Some(d) = e.domains.keys().find(|d| !domains.insert(*d)) {
                return Err(format!(
                    "{FILE}: tenant {}'s domain {d:?} is refused",
                    e.tenant
                ));
            }
        }
        Ok(inv)
    }
}

impl Entry {
    /// Every field checked: an entry names a tenant, an identity and domains to make here
    /// (read from a repository, or sent by another host's move), so none is taken on trust.
    pub fn check(&self) -> Result<(), String> {
        if !crate::desired::instance::is_tenant_name(&self.tenant) {
            return Err(format!("{:?} is not a tenant name", self.tenant));
        }
        let id = &self.tenant_id;
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("tenant {}'s identity is malformed", self.tenant));
        }
        match self
            .domains
            .iter()
            .find(|(d, b)| !is_domain(d) || b.tenant != self.tenant)
        {
            Some((d, _)) => Err(format!("tenant {}'s domain {d:?} is refused", self.tenant)),
            None => Ok(()),
        }
    }
}

/// A hostname of DNS labels (at least two), as the domain book holds them.
fn is_domain(d: &str) -> bool {
    d.len() <= 253 && d.split('.').count() >= 2 && d.split('.').all(is_dns_label)
}

impl Restic {
    /// Writes `inv` as a new inventory snapshot; its id.
    pub(super) async fn put_inventory(&self, inv: &Inventory) -> Result<String, OffsiteError> {
        self.made().await?;
        let mut r = [0u8; 6];
        let _ = getrandom::fill(&mut r);
        let spool = self
            .cache()
            .join(format!(".inventory-{}.json", hex::encode(r)));
        let json = serde_json::to_vec_pretty(inv).expect("inventory serializes");
        crate::store::atomic::write(&spool, &json, 0o600)
            .map_err(|e| self.file_error(&spool, e))?;
        let input = std::fs::File::open(&spool).map_err(|e| self.file_error(&spool, e));
        let _ = std::fs::remove_file(&spool);
        let host = self.host().to_string();
        let args = [
            "backup",
            "--json",
            "--quiet",
            "--stdin",
            "--stdin-filename",
            FILE,
            "--host",
            &host,
            "--tag",
            TAG,
        ];
        let mut c = self.command(&args)?;
        c.stdin(std::process::Stdio::from(input?));
        let out = self.run("backup", c).await?;
        super::restic::summary(&out)
            .map(|s| s.snapshot_id)
            .ok_or_else(|| self.fail("backup", "restic reported no snapshot"))
    }

    /// This host's inventory snapshots, oldest first.
    pub async fn inventories(&self) -> Result<Vec<String>, OffsiteError> {
        let host = self.host().to_string();
        let listed = self.listed_on(TAG, &["--host", &host]).await?;
        // RFC 3339 times of one repository's clock sort as text only within one offset:
        // compare them parsed.
        let mut timed: Vec<_> = listed
            .into_iter()
            .filter_map(|l| {
                let t = time::OffsetDateTime::parse(
                    &l.time,
                    &time::format_description::well_known::Rfc3339,
                )
                .ok()?;
                Some((t, l.id))
            })
            .collect();
        timed.sort();
        Ok(timed.into_iter().map(|(_, id)| id).collect())
    }

    /// This host's inventory `want` (its newest when None): its snapshot id and what it
    /// says (None: there is none). Only this host's inventory snapshots are ever read as
    /// one: an id of a tenant's snapshot, or another host's inventory, is refused.
    pub(super) async fn inventory(
        &self,
        want: Option<&str>,
    ) -> Result<Option<(String, Inventory)>, OffsiteError> {
        let mut ids = self.inventories().await?;
        let id = match want {
            None => match ids.pop() {
                Some(id) => id,
                None => return Ok(None),
            },
            Some(w) => pick(&ids, w).map_err(|why| self.fail("restore", why))?,
        };
        let host = self.host().to_string();
        let out = self.dump_capped(&id).await?;
        let inv = Inventory::parse(&out, &host).map_err(|why| self.fail("restore", why))?;
        Ok(Some((id, inv)))
    }
}

/// The one id of `ids` (oldest first) that `want` (a full id or a prefix of at least 8 hex
/// digits) names; otherwise why not, with the newest few for the operator to choose from.
fn pick(ids: &[String], want: &str) -> Result<String, String> {
    crate::desired::repository::check_snapshot_id(want).map_err(|e| format!("inventory: {e}"))?;
    let found: Vec<&String> = ids.iter().filter(|id| id.starts_with(want)).collect();
    match found.as_slice() {
        [one] => Ok((*one).clone()),
        [] => {
            let newest: Vec<&str> = ids
                .iter()
                .rev()
                .take(5)
                .map(|i| i.get(..8).unwrap_or(i))
                .collect();
            Err(format!(
                "inventory: no inventory {want} of this host in the repository (newest first: {})",
                match newest.is_empty() {
                    true => "none".to_string(),
                    false => newest.join(", "),
                }
            ))
        }
        _ => Err(format!(
            "inventory: {want} names {} inventories: give more of its id",
            found.len()
        )),
    }
}

impl Restic {
    /// `inventory.json` of snapshot `id`, read up to `MAX_BYTES` (a hostile repository's
    /// inventory of gigabytes compresses to nothing; reading it whole would take the agent's
    /// memory): restic is stopped past that.
    async fn dump_capped(&self, id: &str) -> Result<Vec<u8>, OffsiteError> {
        use tokio::io::AsyncReadExt;
        let inside = format!("/{FILE}");
        let mut c = self.command(&["--no-lock", "dump", id, &inside])?;
        let read = async {
            let _turn = super::restic::RUNNING
                .acquire()
                .await
                .expect("never closed");
            let mut child = c
                .spawn()
                .map_err(|e| self.fail("restore", format!("cannot run restic: {e}")))?;
            let mut buf = Vec::new();
            let stdout = child.stdout.take().expect("piped");
            stdout
                .take(MAX_BYTES as u64 + 1)
                .read_to_end(&mut buf)
                .await
                .map_err(|e| self.fail("restore", e.to_string()))?;
            if buf.len() > MAX_BYTES {
                let _ = child.kill().await;
                return Err(self.fail(
                    "restore",
                    format!("{FILE} is larger than {MAX_BYTES} bytes"),
                ));
            }
            let out = child
                .wait_with_output()
                .await
                .map_err(|e| self.fail("restore", e.to_string()))?;
            match out.status.success() {
                true => Ok(buf),
                false => Err(self.fail("restore", self.said(&out.stderr))),
            }
        };
        let limit = std::time::Duration::from_secs(60);
        tokio::time::timeout(limit, read)
            .await
            .map_err(|_| OffsiteError::Timeout {
                repo: self.name().to_string(),
                what: "restore",
                secs: limit.as_secs(),
            })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv() -> Inventory {
        let mut domains = BTreeMap::new();
        domains.insert(
            "shop.example.com".to_string(),
            Binding {
                tenant: "acme".into(),
                method: "dns".into(),
                verified_at: 1,
            },
        );
        Inventory {
            format: FORMAT,
            host: "berth".into(),
            created: 7,
            tenants: vec![Entry {
                tenant: "acme".into(),
                tenant_id: "0123456789abcdef0123456789abcdef".into(),
                domains,
                tokens: vec![],
            }],
        }
    }

    fn parsed(i: &Inventory) -> Result<Inventory, String> {
        Inventory::parse(&serde_json::to_vec(i).unwrap(), "berth")
    }

    #[test]
    fn an_inventory_reads_back_as_written_and_its_digest_ignores_its_time() {
        assert_eq!(parsed(&inv()).unwrap(), inv());
        let mut later = inv();
        later.created = 99;
        assert_eq!(later.digest(), inv().digest());
        later.tenants.clear();
        assert_ne!(later.digest(), inv().digest());
    }

    #[test]
    fn a_hostile_inventory_is_refused_by_what_is_wrong_in_it() {
        type Edit = Box<dyn Fn(&mut Inventory)>;
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|i| i.host = "other".into()), "host"),
            (Box::new(|i| i.format = 9), "format"),
            (
                Box::new(|i| i.tenants[0].tenant = "../etc".into()),
                "tenant name",
            ),
            (
                Box::new(|i| i.tenants[0].tenant_id = "x".into()),
                "identity",
            ),
            (Box::new(|i| i.tenants.push(i.tenants[0].clone())), "twice"),
            (
                Box::new(|i| {
                    let b = i.tenants[0].domains.values().next().unwrap().clone();
                    i.tenants[0].domains.insert("a/b".into(), b);
                }),
                "domain",
            ),
            (
                Box::new(|i| {
                    let mut other = i.tenants[0].clone();
                    other.tenant = "other".into();
                    other
                        .domains
                        .values_mut()
                        .for_each(|b| b.tenant = "other".into());
                    i.tenants.push(other);
                }),
                "domain",
            ),
            (
                Box::new(|i| {
                    i.tenants[0]
                        .domains
                        .values_mut()
                        .for_each(|b| b.tenant = "evil".into())
                }),
                "domain",
            ),
        ];
        for (edit, says) in cases {
            let mut i = inv();
            edit(&mut i);
            let e = parsed(&i).unwrap_err();
            assert!(e.contains(says), "{e} should say {says}");
        }
        assert!(Inventory::parse(b"{not json", "berth").is_err());
        assert!(Inventory::parse(&vec![b' '; MAX_BYTES + 1], "berth").is_err());
    }

    #[test]
    fn an_inventory_is_picked_by_a_unique_hex_prefix_of_this_hosts_ids_only() {
        let ids: Vec<String> = ["aaaa1111", "aaaa2222", "bbbb3333"]
            .iter()
            .map(|p| format!("{p}{}", "0".repeat(56)))
            .collect();
        assert_eq!(pick(&ids, "bbbb3333").unwrap(), ids[2]);
        assert_eq!(pick(&ids, &ids[0]).unwrap(), ids[0], "the full id");
        let cases = [
            ("aaaa", "8 to 64"),
            ("aaaa111", "8 to 64"),
            ("AAAA1111", "8 to 64"),
            ("../../etc", "8 to 64"),
            ("aaaa1111 --tag x", "8 to 64"),
            (&"a".repeat(65), "8 to 64"),
            ("cccc4444", "newest first: bbbb3333, aaaa2222, aaaa1111"),
        ];
        for (want, says) in cases {
            let e = pick(&ids, want).unwrap_err();
            assert!(e.contains(says), "{want}: {e}");
        }
        let e = pick(&ids, "aaaa11119").unwrap_err();
        assert!(e.contains("no inventory"), "{e}");
        let twins = vec![format!("aaaa1111{}", "1".repeat(56)), ids[0].clone()];
        assert!(
            pick(&twins, "aaaa1111")
                .unwrap_err()
                .contains("2 inventories")
        );
        assert!(pick(&[], "aaaa1111").unwrap_err().contains("none"));
    }

    #[test]
    fn an_older_inventory_brings_back_only_the_domains_the_newest_still_proves() {
        let old = inv();
        let mut e = old.tenants[0].clone();
        assert!(!e.domains.is_empty());
        e.keep_proven_in(Some(&old));
        assert_eq!(e.domains, old.tenants[0].domains, "still proven: kept");
        let mut newer = inv();
        newer.tenants[0]
            .domains
            .values_mut()
            .for_each(|b| b.verified_at = 9);
        e.keep_proven_in(Some(&newer));
        assert!(
            e.domains.values().all(|b| b.verified_at == 9),
            "the newest proof"
        );
        for newest in [
            None,
            Some(Inventory {
                tenants: vec![],
                ..inv()
            }),
            Some({
                let mut n = inv();
                n.tenants[0].tenant_id = "another-identity".into();
                n
            }),
            Some({
                let mut n = inv();
                n.tenants[0].domains.clear();
                n
            }),
        ] {
            let mut e = old.tenants[0].clone();
            e.keep_proven_in(newest.as_ref());
            assert!(e.domains.is_empty(), "{newest:?}");
        }
    }
}
