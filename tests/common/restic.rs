//! The stock restic binary, as an operator runs it on a repository berth writes.

use std::{
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Output},
};

/// A repository key file (0600) of random text.
pub fn key(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("{:x}\n", rand_u128())).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn rand_u128() -> u128 {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .unwrap();
    u128::from_le_bytes(b)
}

/// The stock restic binary on `repo` with the key at `key`.
pub fn restic(repo: &str, key: &Path, args: &[&str]) -> Output {
    Command::new("restic")
        .env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD_FILE", key)
        .env("RESTIC_CACHE_DIR", key.with_extension("cache"))
        .args(args)
        .output()
        .unwrap()
}

pub fn restic_ok(repo: &str, key: &Path, args: &[&str]) -> String {
    let o = restic(repo, key, args);
    assert!(
        o.status.success(),
        "restic {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}
