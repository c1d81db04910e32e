//! Restores on a full disk, for the app tests whose tenants have a `disk` quota: the disk
//! filled from inside the tenant's database container (as the server's user, so only the
//! room that user may take), restores run against it, and what the tenant holds afterwards.

use super::*;
use std::time::{Duration, Instant};

/// The size of member `member` of backup `id` of tenant `t`.
pub fn member_size(h: &Harness, t: &str, id: &str, member: &str) -> u64 {
    let list = sh(&format!(
        "tar -tvf {}",
        h.path(&format!("state/backups/{t}/{id}.tar")).display()
    ));
    let line = list
        .lines()
        .find(|l| l.ends_with(member))
        .unwrap_or_else(|| panic!("no {member} in {list}"));
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

/// Fills the filesystem of `db`'s data directory and gives `leave` bytes back.
pub fn fill_leaving(db: &str, leave: u64) {
    docker_ok(&[
        "exec",
        "-u",
        "999",
        db,
        "sh",
        "-c",
        "f=/var/lib/mysql/berth-fill; dd if=/dev/zero of=$f bs=1M >/dev/null 2>&1
         a=$(df -Pk /var/lib/mysql | awk 'NR==2 {print $4}'); want=$(($0 / 1024))
         if [ \"$a\" -gt \"$want\" ]; then dd if=/dev/zero of=$f.2 bs=1K count=$((a - want)) >/dev/null 2>&1; fi
         if [ \"$a\" -lt \"$want\" ]; then truncate -s -$(((want - a) * 1024)) $f; fi",
        &leave.to_string(),
    ]);
}

pub fn unfill(db: &str) {
    docker_ok(&["exec", db, "sh", "-c", "rm -f /var/lib/mysql/berth-fill*"]);
}

/// `berth restore t --from id` while the disk holds only `leave` bytes free; the room comes
/// back after the restore ends or after a minute, whichever is first (a load that waits
/// for room then goes on). (succeeded, what it said.)
pub fn restore_with_room(
    h: &Harness,
    (t, id): (&str, &str),
    db: &str,
    leave: u64,
) -> (bool, String) {
    fill_leaving(db, leave);
    let mut restore = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["--config", h.path("berth.yaml").to_str().unwrap()])
        .args(["restore", t, "--from", id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while restore.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    unfill(db);
    let ended = restore.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&ended.stderr).to_string();
    eprintln!(
        "{t}: restore with {leave} bytes free: {:?} {said}",
        ended.status
    );
    (ended.status.success(), said)
}

/// A refused restore says why and that nothing changed.
pub fn refused_unchanged((ok, said): (bool, String)) {
    assert!(
        !ok && said.contains("needs about") && said.contains("nothing was changed"),
        "{said}"
    );
}

/// No staging or set-aside database is left in `db` (as `user` on database `name`).
pub fn no_staging_left(db: &str, (user, name): (&str, &str)) {
    let q = format!("SHOW DATABASES LIKE '{name}\\_berth%'");
    let left = docker_ok(&[
        "exec",
        db,
        "sh",
        "-c",
        "MYSQL_PWD=\"$(cat /run/secrets/db_password)\" exec mariadb -N -s -h 127.0.0.1 -u \"$0\" -e \"$1\"",
        user,
        &q,
    ]);
    assert_eq!(left, "", "a staging copy left behind");
}
