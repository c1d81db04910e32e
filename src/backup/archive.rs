//! The backup archive: one tar holding `manifest.json` first, then every member, each listed
//! in the manifest with its size and SHA-256 so a damaged or altered archive is refused.

use super::BackupError;
use crate::store::atomic;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::{
    collections::BTreeMap,
    io::Read,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: u32,
    pub id: String,
    pub tenant: String,
    /// The identity of the tenant the backup was made of (`store::identity`); archives from
    /// before identities have none and belong to the tenant whose directory holds them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
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

/// Size and SHA-256 of a file, read in pieces.
fn digest_of(path: &Path) -> std::io::Result<(u64, String)> {
    let mut w = Hashing::new(std::io::sink());
    std::io::copy(&mut std::fs::File::open(path)?, &mut w)?;
    Ok((w.bytes, hex::encode(w.sha.finalize())))
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    sha: Sha256,
    bytes: u64,
}

impl<W> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            sha: Sha256::new(),
            bytes: 0,
        }
    }
}

impl<W: std::io::Write> std::io::Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the archive `out` (atomically, 0600) from members spooled in files: the manifest
/// (each member's size and SHA-256) first, then each member streamed from its file; nothing
/// is held in memory whole. Its size.
pub fn build_file(
    mut manifest: Manifest,
    members: &BTreeMap<String, PathBuf>,
    out: &Path,
) -> std::io::Result<u64> {
    manifest.members = Vec::new();
    for (path, file) in members {
        let (bytes, sha256) = digest_of(file)?;
        manifest.members.push(Member {
            path: path.clone(),
            bytes,
            sha256,
        });
    }
    let json = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
    let header = |size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o600);
        h.set_mtime(manifest.created);
        h.set_cksum();
        h
    };
    atomic::write_with(out, 0o600, (0, 0), |f| {
        let mut tar = tar::Builder::new(f);
        tar.append_data(&mut header(json.len() as u64), "manifest.json", &json[..])?;
        for (m, file) in manifest.members.iter().zip(members.values()) {
            let src = std::fs::File::open(file)?;
            tar.append_data(&mut header(m.bytes), &m.path, src.take(m.bytes))?;
        }
        tar.finish()
    })?;
    Ok(std::fs::metadata(out)?.len())
}

/// A manifest of tenant `acme`'s backup at version 2, for tests.
#[cfg(test)]
pub(crate) fn sample_manifest() -> Manifest {
    Manifest {
        tenant_id: None,
        format: FORMAT,
        id: "20261123T000000Z-abcd".into(),
        tenant: "acme".into(),
        template: "demo".into(),
        version: "2".into(),
        created: 0,
        members: vec![],
    }
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

/// Checks archive `path` against its manifest while spooling each member into a file of its
/// own in `dir` (`member-<n>`, 0600; never held in memory): every member listed, listed once,
/// sizes and digests equal, none missing. Member names never become paths. Name → file.
pub fn unpack(
    path: &Path,
    dir: &Path,
) -> Result<(Manifest, BTreeMap<String, PathBuf>), BackupError> {
    let bad = |why: String| corrupt(path, why);
    let manifest = self::manifest(path)?;
    if manifest.format != FORMAT {
        return Err(bad(format!("unknown format {}", manifest.format)));
    }
    let listed: BTreeMap<&str, &Member> = manifest
        .members
        .iter()
        .map(|m| (m.path.as_str(), m))
        .collect();
    let mut ar = reader(path)?;
    let mut members = BTreeMap::new();
    let entries = ar.entries().map_err(|e| bad(e.to_string()))?;
    for (n, entry) in entries.enumerate().skip(1) {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let name = entry
            .path()
            .map_err(|e| bad(e.to_string()))?
            .to_string_lossy()
            .to_string();
        let Some(m) = listed.get(name.as_str()) else {
            return Err(bad(format!("{name} is not listed in the manifest")));
        };
        if members.contains_key(&name) {
            return Err(bad(format!("{name} is in the archive twice")));
        }
        let to = dir.join(format!("member-{n}"));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&to)
            .map_err(|e| BackupError::Io {
                path: to.display().to_string(),
                source: e,
            })?;
        let mut w = Hashing::new(file);
        std::io::copy(&mut entry, &mut w).map_err(|e| bad(e.to_string()))?;
        if w.bytes != m.bytes || hex::encode(w.sha.finalize()) != m.sha256 {
            return Err(bad(format!("{name} does not match its checksum")));
        }
        members.insert(name, to);
    }
    if let Some(m) = manifest
        .members
        .iter()
        .find(|m| !members.contains_key(&m.path))
    {
        return Err(bad(format!("{} is missing", m.path)));
    }
    Ok((manifest, members))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            tenant_id: None,
            format: FORMAT,
            id: "x".into(),
            tenant: "acme".into(),
            template: "demo".into(),
            version: "1".into(),
            created: 1,
            members: vec![],
        }
    }

    /// The archive's bytes, built from `members` spooled in `dir`.
    fn build(dir: &Path, members: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
        let mut files = BTreeMap::new();
        for (i, (name, data)) in members.iter().enumerate() {
            let f = dir.join(format!("in-{i}"));
            std::fs::write(&f, data).unwrap();
            files.insert(name.clone(), f);
        }
        let out = dir.join("built.tar");
        build_file(manifest(), &files, &out).unwrap();
        std::fs::read(out).unwrap()
    }

    fn unpacked(p: &Path, d: &Path) -> Result<BTreeMap<String, Vec<u8>>, BackupError> {
        let spool = d.join("spool");
        let _ = std::fs::remove_dir_all(&spool);
        std::fs::create_dir_all(&spool).unwrap();
        let (_, files) = unpack(p, &spool)?;
        Ok(files
            .into_iter()
            .map(|(k, f)| (k, std::fs::read(f).unwrap()))
            .collect())
    }

    #[test]
    fn an_archive_reads_back_with_every_member_verified() {
        let d = tempfile::tempdir().unwrap();
        let members = BTreeMap::from([
            ("database.sql".to_string(), b"select 1;".to_vec()),
            ("volumes/uploads.tar".to_string(), vec![0u8, 1, 2, 255]),
        ]);
        let p = d.path().join("a.tar");
        std::fs::write(&p, build(d.path(), &members)).unwrap();
        assert_eq!(unpacked(&p, d.path()).unwrap(), members);
        let m = manifest_of(&p);
        assert_eq!(m.members.len(), 2);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(d.path().join("built.tar"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }

    fn manifest_of(p: &Path) -> Manifest {
        super::manifest(p).unwrap()
    }

    #[test]
    fn listing_reads_the_manifest_without_reading_the_members() {
        let d = tempfile::tempdir().unwrap();
        let members = BTreeMap::from([("database.sql".to_string(), b"select 1;".to_vec())]);
        let mut bytes = build(d.path(), &members);
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
        let mut bytes = build(d.path(), &members);
        let at = bytes.windows(9).rposition(|w| w == b"select 1;").unwrap();
        bytes[at] = b'S';
        let p = d.path().join("a.tar");
        std::fs::write(&p, bytes).unwrap();
        let e = unpacked(&p, d.path()).unwrap_err().to_string();
        assert!(
            e.contains("database.sql does not match its checksum"),
            "{e}"
        );
    }

    #[test]
    fn members_unlisted_twice_missing_or_named_as_paths_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let good = build(
            d.path(),
            &BTreeMap::from([("a".to_string(), b"1".to_vec())]),
        );
        let man = manifest_of(&{
            let p = d.path().join("g.tar");
            std::fs::write(&p, &good).unwrap();
            p
        });
        let json = serde_json::to_vec(&man).unwrap();
        // Hand-made archives: the manifest lists `a` only.
        type Entries<'a> = Vec<(&'a str, &'a [u8])>;
        let cases: [(&str, Entries); 3] = [
            ("not listed", vec![("a", b"1"), ("../../etc/passwd", b"x")]),
            ("twice", vec![("a", b"1"), ("a", b"1")]),
            ("missing", vec![]),
        ];
        for (why, entries) in cases {
            let mut t = tar::Builder::new(Vec::new());
            let mut add = |name: &str, data: &[u8]| {
                let mut h = tar::Header::new_gnu();
                h.set_size(data.len() as u64);
                h.set_mode(0o600);
                // Byte by byte: the builder itself refuses `..`, a hostile writer does not.
                h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
                h.set_cksum();
                t.append(&h, data).unwrap();
            };
            add("manifest.json", &json);
            for (n, data) in entries {
                add(n, data);
            }
            let p = d.path().join("h.tar");
            std::fs::write(&p, t.into_inner().unwrap()).unwrap();
            let e = unpacked(&p, d.path()).unwrap_err().to_string();
            assert!(e.contains(why), "{why}: {e}");
            assert!(!d.path().join("etc").exists());
        }
    }
}
