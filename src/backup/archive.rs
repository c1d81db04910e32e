//! The backup archive: one tar holding `manifest.json` first, then every member, each listed
//! in the manifest with its size and SHA-256 so a damaged or altered archive is refused.

use super::BackupError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::{collections::BTreeMap, io::Read, path::Path};

pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: u32,
    pub id: String,
    pub tenant: String,
    pub template: String,
    pub version: String,
    /// Unix seconds.
    pub created: u64,
    pub members: Vec<Member>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Member {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// Builds the archive bytes: the manifest (listing `members`) followed by the members.
pub fn build(mut manifest: Manifest, members: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    manifest.members = members
        .iter()
        .map(|(path, data)| Member {
            path: path.clone(),
            bytes: data.len() as u64,
            sha256: hex::encode(Sha256::digest(data)),
        })
        .collect();
    let json = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_mtime(manifest.created);
        h.set_cksum();
        tar.append_data(&mut h, path, data)
            .expect("appending to an in-memory tar cannot fail");
    };
    add("manifest.json", &json);
    for (path, data) in members {
        add(path, data);
    }
    tar.into_inner()
        .expect("finishing an in-memory tar cannot fail")
}

fn corrupt(path: &Path, why: String) -> BackupError {
    BackupError::Corrupt {
        path: path.display().to_string(),
        why,
    }
}

fn reader(path: &Path) -> Result<tar::Archive<std::fs::File>, BackupError> {
    let file = std::fs::File::open(path).map_err(|e| BackupError::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    Ok(tar::Archive::new(file))
}

/// The manifest alone, read from the archive's first member (what listing needs; the
/// members are checked when the archive is opened for use).
pub fn manifest(path: &Path) -> Result<Manifest, BackupError> {
    let bad = |why: String| corrupt(path, why);
    let mut ar = reader(path)?;
    let mut entries = ar.entries().map_err(|e| bad(e.to_string()))?;
    let mut first = entries
        .next()
        .ok_or_else(|| bad("empty archive".into()))?
        .map_err(|e| bad(e.to_string()))?;
    let is_manifest = first.path().is_ok_and(|p| p.as_os_str() == "manifest.json");
    if !is_manifest || first.size() > 1 << 20 {
        return Err(bad("manifest.json is not the first member".into()));
    }
    let mut data = Vec::new();
    first
        .read_to_end(&mut data)
        .map_err(|e| bad(e.to_string()))?;
    serde_json::from_slice(&data).map_err(|e| bad(e.to_string()))
}

/// Reads an archive and checks every member against the manifest: all listed, none extra,
/// sizes and digests equal.
pub fn open(path: &Path) -> Result<(Manifest, BTreeMap<String, Vec<u8>>), BackupError> {
    let bad = |why: String| corrupt(path, why);
    let mut ar = reader(path)?;
    let mut manifest: Option<Manifest> = None;
    let mut members = BTreeMap::new();
    for entry in ar.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let name = entry
            .path()
            .map_err(|e| bad(e.to_string()))?
            .to_string_lossy()
            .to_string();
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .map_err(|e| bad(e.to_string()))?;
        if name == "manifest.json" {
            manifest = Some(serde_json::from_slice(&data).map_err(|e| bad(e.to_string()))?);
        } else {
            members.insert(name, data);
        }
    }
    let manifest = manifest.ok_or_else(|| bad("no manifest.json".into()))?;
    if manifest.format != FORMAT {
        return Err(bad(format!("unknown format {}", manifest.format)));
    }
    for m in &manifest.members {
        let data = members
            .get(&m.path)
            .ok_or_else(|| bad(format!("{} is missing", m.path)))?;
        if data.len() as u64 != m.bytes || hex::encode(Sha256::digest(data)) != m.sha256 {
            return Err(bad(format!("{} does not match its checksum", m.path)));
        }
    }
    if members.len() != manifest.members.len() {
        return Err(bad("members not listed in the manifest".into()));
    }
    Ok((manifest, members))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            format: FORMAT,
            id: "x".into(),
            tenant: "acme".into(),
            template: "demo".into(),
            version: "1".into(),
            created: 1,
            members: vec![],
        }
    }

    #[test]
    fn an_archive_reads_back_with_every_member_verified() {
        let d = tempfile::tempdir().unwrap();
        let members = BTreeMap::from([
            ("database.sql".to_string(), b"select 1;".to_vec()),
            ("volumes/uploads.tar".to_string(), vec![0u8, 1, 2, 255]),
        ]);
        std::fs::write(d.path().join("a.tar"), build(manifest(), &members)).unwrap();
        let (m, back) = open(&d.path().join("a.tar")).unwrap();
        assert_eq!(back, members);
        assert_eq!(m.members.len(), 2);
        assert_eq!(manifest_of(&d.path().join("a.tar")), m);
    }

    fn manifest_of(p: &Path) -> Manifest {
        super::manifest(p).unwrap()
    }

    #[test]
    fn listing_reads_the_manifest_without_reading_the_members() {
        let d = tempfile::tempdir().unwrap();
        let members = BTreeMap::from([("database.sql".to_string(), b"select 1;".to_vec())]);
        let mut bytes = build(manifest(), &members);
        // A damaged member does not stop the listing (restore and verify refuse it).
        let at = bytes.windows(9).rposition(|w| w == b"select 1;").unwrap();
        bytes[at] = b'S';
        let p = d.path().join("a.tar");
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(manifest_of(&p).id, "x");
        std::fs::write(&p, b"not a tar at all").unwrap();
        assert!(super::manifest(&p).is_err());
        std::fs::write(&p, b"").unwrap();
        assert!(super::manifest(&p).is_err());
    }

    #[test]
    fn a_member_altered_after_the_backup_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let members = BTreeMap::from([("database.sql".to_string(), b"select 1;".to_vec())]);
        let mut bytes = build(manifest(), &members);
        let at = bytes.windows(9).rposition(|w| w == b"select 1;").unwrap();
        bytes[at] = b'S';
        std::fs::write(d.path().join("a.tar"), bytes).unwrap();
        let e = open(&d.path().join("a.tar")).unwrap_err().to_string();
        assert!(
            e.contains("database.sql does not match its checksum"),
            "{e}"
        );
    }
}
