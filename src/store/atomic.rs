//! Crash-safe file writes: temp file in the same directory, fsync, rename, fsync the directory.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::Path,
};

/// Writes `data` to `path` so that after a crash the file holds either the old or the new
/// content, never a mix. The file is created with `mode` (not chmod'ed afterwards, so a secret
/// is never readable by others, even for an instant).
pub fn write(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    write_owned(path, data, mode, (0, 0))
}

/// Like `write`, with the file owned by `owner` (uid, gid) before it becomes visible; used for
/// files a container reads as a non-root user.
pub fn write_owned(path: &Path, data: &[u8], mode: u32, owner: (u32, u32)) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("path has no parent directory"))?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        if owner != (0, 0) {
            std::os::unix::fs::fchown(&f, Some(owner.0), Some(owner.1))?;
        }
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates `dir` and its parents with `mode` on the last component.
pub fn create_dir(dir: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
}

/// Removes temp files a crash left behind in `dir`.
pub fn clean_temp_files(dir: &Path) {
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        if n.starts_with('.') && n.contains(".tmp-") {
            let _ = fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn written_files_have_the_requested_mode_and_no_temp_is_left() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("secret");
        write(&p, b"s3cret", 0o600).unwrap();
        write(&p, b"again", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"again");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_killed_writer_leaves_the_old_or_the_new_content() {
        // A child process rewrites the file in a loop and is SIGKILLed at random moments.
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        write(&p, b"{\"v\":0}", 0o600).unwrap();
        for round in 0..20u64 {
            let path = p.clone();
            let mut child = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "i=0; while :; do i=$((i+1)); printf '{{\"v\":%d}}' $i > {0}.w && mv {0}.w {0}; done",
                    path.display()
                ))
                .spawn()
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5 + round % 7));
            child.kill().unwrap();
            child.wait().unwrap();
            let text = fs::read_to_string(&p).unwrap();
            assert!(
                serde_json::from_str::<serde_json::Value>(&text).is_ok(),
                "torn: {text}"
            );
            write(&p, text.as_bytes(), 0o600).unwrap();
        }
    }
}
