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

/// Reads an archive and checks every member against the manifest: all listed, none extra,
/// sizes and digests equal.
pub fn open(path: &Path) -> Result<(Manifest, BTreeMap<String, Vec<u8>>), BackupError> {
    let bad = |why: String| BackupError::Corrupt {
        path: path.display().to_string(),
        why,
    };
    let file = std::fs::File::open(path).map_err(|e| BackupError::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    let mut ar = tar::Archive::new(file);
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
