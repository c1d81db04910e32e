//! Off-host backup repositories in the restic format: a tenant's backup archive is copied
//! there as one snapshot, encrypted and deduplicated by content, tagged with the tenant's
//! identity (never only its name, which a later tenant may reuse), so the stock `restic`
//! binary can always list, check and restore it without berth.
//!
//! `Repo` is the boundary; `restic::Restic` runs Debian's `restic` with the repository's
//! password file and environment, and nothing else of the agent's.

pub mod inventory;
pub mod restic;
pub mod retention;
pub mod tokens;

use serde::Serialize;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum OffsiteError {
    #[error("repository {repo}: {what} failed: {why}")]
    Failed {
        repo: String,
        what: &'static str,
        why: String,
    },
    #[error(
        "repository {repo}: {path} must be readable by its owner only (mode 0600; it is {mode:o})"
    )]
    KeyMode {
        repo: String,
        path: String,
        mode: u32,
    },
    #[error("repository {repo}: {path}: {why}")]
    File {
        repo: String,
        path: String,
        why: String,
    },
    #[error("repository {repo}: {what} took longer than {secs}s and was stopped")]
    Timeout {
        repo: String,
        what: &'static str,
        secs: u64,
    },
    #[error("repository {repo} has no snapshot {snapshot} of this tenant")]
    NotFound { repo: String, snapshot: String },
}

/// What a snapshot says about the backup it holds, written as restic tags `key=value`.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Snapshot {
    pub repository: String,
    /// restic's snapshot id (short form).
    pub snapshot: String,
    /// berth's backup id: the archive's id, the same as the local one.
    pub backup: String,
    pub tenant: String,
    pub version: String,
    /// Unix seconds the backup was taken.
    pub created: u64,
    /// The archive's size.
    pub bytes: u64,
}

/// The tags of a new snapshot: always `berth`, then the tenant's name and identity, the backup
/// id, version, time and size.
#[derive(Debug, Clone, PartialEq)]
pub struct Tags {
    pub tenant: String,
    pub tenant_id: String,
    /// The tenant's plan, whose `offsite_keep` a prune applies.
    pub plan: String,
    pub backup: String,
    pub version: String,
    pub created: u64,
    pub bytes: u64,
}

impl Tags {
    pub fn to_args(&self) -> Vec<String> {
        let mut v = vec![
            "berth".to_string(),
            format!("tenant={}", self.tenant),
            format!("tenant-id={}", self.tenant_id),
            format!("backup={}", self.backup),
            format!("created={}", self.created),
            format!("bytes={}", self.bytes),
        ];
        // restic splits a --tag value at commas; a value that has one goes untagged.
        if tag_safe(&self.version) {
            v.push(format!("version={}", self.version));
        }
        if tag_safe(&self.plan) {
            v.push(format!("plan={}", self.plan));
        }
        v
    }
}

fn tag_safe(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_graphic() && c != ',')
}

/// The value of tag `key=…` among `tags`.
fn tag(tags: &[String], key: &str) -> Option<String> {
    tags.iter()
        .find_map(|t| t.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .map(str::to_string)
}

/// A snapshot of `repo` whose tags name a berth backup of the tenant `tenant_id`; None for
/// anything else in the repository (another tenant's, or not berth's).
pub fn snapshot_of(repo: &str, id: &str, tags: &[String], tenant_id: &str) -> Option<Snapshot> {
    let tag = |k: &str| tag(tags, k);
    if !tags.iter().any(|t| t == "berth") || tag("tenant-id")?.as_str() != tenant_id {
        return None;
    }
    // A hostile repository's tags name paths on this host when a snapshot is fetched: only
    // a backup id as berth makes them and a tenant name are taken.
    let backup = tag("backup").filter(|b| is_backup_id(b))?;
    let tenant = tag("tenant").filter(|t| crate::desired::instance::is_tenant_name(t))?;
    Some(Snapshot {
        repository: repo.into(),
        snapshot: id.into(),
        backup,
        tenant,
        version: tag("version").unwrap_or_default(),
        created: tag("created")?.parse().ok()?,
        bytes: tag("bytes")?.parse().ok()?,
    })
}

/// A backup id as berth makes them (`20261123T024501Z-1a2b`): nothing a path could be made of.
pub fn is_backup_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 21
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && &b[15..17] == b"Z-"
        && b[17..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// Any berth snapshot, as a prune sees it (None: not berth's, or tags missing).
pub fn held_of(id: &str, tags: &[String]) -> Option<retention::Held> {
    if !tags.iter().any(|t| t == "berth") {
        return None;
    }
    Some(retention::Held {
        snapshot: id.into(),
        tenant_id: tag(tags, "tenant-id")?,
        tenant: tag(tags, "tenant")?,
        plan: tag(tags, "plan").unwrap_or_default(),
        created: tag(tags, "created")?.parse().ok()?,
    })
}

/// One copy of an archive into a repository.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Copied {
    pub repository: String,
    pub snapshot: String,
    /// What the repository grew by (after deduplication and compression).
    pub bytes_added: u64,
    pub seconds: f64,
}

/// An off-host repository.
#[async_trait::async_trait]
pub trait Repo: Send + Sync {
    fn name(&self) -> &str;
    /// Copies the archive at `archive` into a new snapshot tagged `tags` (making the repository
    /// first if nothing is there yet), streamed: nothing is held whole in memory.
    async fn send(&self, archive: &Path, tags: &Tags) -> Result<Copied, OffsiteError>;
    /// The snapshots of the tenant with identity `tenant_id`, oldest first.
    async fn list(&self, tenant_id: &str) -> Result<Vec<Snapshot>, OffsiteError>;
    /// Writes the archive of `snap` to `out` (atomically, 0600).
    async fn fetch(&self, snap: &Snapshot, out: &Path) -> Result<(), OffsiteError>;
    /// Every berth snapshot in the repository, of every tenant (for a prune).
    async fn list_all(&self) -> Result<Vec<retention::Held>, OffsiteError>;
    /// `restic check`, reading back `read_data` (`--read-data-subset`) of the data.
    async fn check(&self, read_data: &str) -> Result<(), OffsiteError>;
    /// Writes this host's inventory as a new snapshot; its id.
    async fn put_inventory(&self, inv: &inventory::Inventory) -> Result<String, OffsiteError>;
    /// This host's inventory `want` (a snapshot id or its prefix of at least 8 hex digits;
    /// None: its newest), with its full snapshot id. None: the host never wrote one.
    async fn inventory(
        &self,
        want: Option<&str>,
    ) -> Result<Option<(String, inventory::Inventory)>, OffsiteError>;
    /// Forgets the snapshots `ids`, then removes the data only they used.
    async fn forget_and_prune(&self, ids: &[String]) -> Result<(), OffsiteError>;
}

/// The name of the one file in a tenant's snapshot.
pub fn file_name(tenant: &str) -> String {
    format!("{tenant}.tar")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags() -> Tags {
        Tags {
            tenant: "acme".into(),
            tenant_id: "3f2a".into(),
            plan: "small".into(),
            backup: "20261207T040000Z-ab12".into(),
            version: "6.4".into(),
            created: 1_796_000_000,
            bytes: 4096,
        }
    }

    #[test]
    fn a_snapshots_tags_round_trip_to_the_backup_they_describe() {
        let t = tags().to_args();
        let s = snapshot_of("off", "abcd1234", &t, "3f2a").unwrap();
        assert_eq!(
            s,
            Snapshot {
                repository: "off".into(),
                snapshot: "abcd1234".into(),
                backup: "20261207T040000Z-ab12".into(),
                tenant: "acme".into(),
                version: "6.4".into(),
                created: 1_796_000_000,
                bytes: 4096,
            }
        );
    }

    #[test]
    fn a_snapshot_whose_tags_name_a_path_is_not_listed() {
        for (key, bad) in [
            ("backup", "../victim/29991231T000000Z-0000"),
            ("backup", "20261207T040000Z-ab1/"),
            ("backup", ""),
            ("tenant", "../etc"),
        ] {
            let t: Vec<String> = tags()
                .to_args()
                .into_iter()
                .map(|a| match a.starts_with(&format!("{key}=")) {
                    true => format!("{key}={bad}"),
                    false => a,
                })
                .collect();
            assert_eq!(snapshot_of("off", "a", &t, "3f2a"), None, "{key}={bad}");
        }
        assert!(is_backup_id("20261207T040000Z-ab12"));
    }

    #[test]
    fn a_snapshot_of_an_earlier_tenant_of_the_same_name_or_not_berths_is_not_listed() {
        let t = tags().to_args();
        assert_eq!(snapshot_of("off", "a", &t, "another-identity"), None);
        let foreign: Vec<String> = t.iter().filter(|t| *t != "berth").cloned().collect();
        assert_eq!(snapshot_of("off", "a", &foreign, "3f2a"), None);
    }

    #[test]
    fn a_version_restic_would_split_is_left_untagged() {
        let mut t = tags();
        t.version = "1,2".into();
        assert!(!t.to_args().iter().any(|a| a.starts_with("version=")));
        let s = snapshot_of("off", "a", &t.to_args(), "3f2a").unwrap();
        assert_eq!(s.version, "");
    }
}
