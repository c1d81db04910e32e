//! Files holding a secret the host gives berth (the API's operator token, a registry's or the
//! smarthost's password, the CLI's token file): read only when no one but their owner can
//! read or change them, and only when that owner is root or whoever runs berth. A secret in a
//! file others can read is a secret others have; berth refuses it with the reason rather than
//! use it.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum PrivateError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {why}")]
    Exposed { path: String, why: String },
}

/// The file's text, once its mode and owner say only its owner reaches it.
pub fn read(path: &Path) -> Result<String, PrivateError> {
    use std::os::unix::fs::MetadataExt;
    let shown = path.display().to_string();
    let io = |source| PrivateError::Io {
        path: shown.clone(),
        source,
    };
    // The file opened is the file checked (no swap between a look and a read).
    let mut file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(PrivateError::Exposed {
            path: shown,
            why: format!(
                "mode {mode:04o}: readable or writable by others than its owner (make it 0600)"
            ),
        });
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(PrivateError::Exposed {
            path: shown,
            why: format!(
                "owned by uid {}, neither root nor the user running berth (uid {me})",
                meta.uid()
            ),
        });
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut file, &mut text).map_err(io)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_secret_file_others_can_read_or_write_is_refused_with_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "s3cret\n").unwrap();
        for mode in [0o644, 0o640, 0o604, 0o620, 0o602] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = read(&p).unwrap_err().to_string();
            assert!(
                e.contains(&format!("{mode:04o}")) && e.contains("0600"),
                "{e}"
            );
        }
        for mode in [0o600, 0o400] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(read(&p).unwrap(), "s3cret\n");
        }
        assert!(read(&dir.path().join("none")).is_err());
    }
}
