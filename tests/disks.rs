//! A disk given to a running tenant on a real engine: refused with the numbers (tenant
//! untouched) when its data would not fit; otherwise the filesystem grows (online, or with the
//! tenant stopped where the kernel's online resize is not allowed) and the volumes move onto
//! it with the database's data intact.

mod common;

use common::{Harness, docker_ok, docker_test, http_get, wait_for};
use std::time::Duration;

const DEMO: &str = "template: demo\nversion: \"1\"\nplan: small\nparameters:\n  site_title: d\n  admin_email: ops@d.test\n  brand_color: \"#336699\"\n";

fn healthy(h: &Harness) -> bool {
    http_get(h.web("d"), "/cgi-bin/health").is_some_and(|(s, _)| s == 200)
}

#[test]
fn a_disk_given_to_a_running_tenant_takes_its_database_along() {
    let Some(_g) = docker_test() else { return };
    let mut h = Harness::new(73);
    common::write_instance(&h, "d", DEMO);
    h.start();
    h.wait_running(&["d"]);
    h.psql(
        "d",
        "create table kept (x int); insert into kept values (42)",
    );
    let device = || {
        docker_ok(&[
            "volume",
            "inspect",
            "-f",
            "{{index .Options \"device\"}}",
            &format!("{}-d-pgdata", h.ns),
        ])
    };
    assert_eq!(device(), "", "d starts on the engine's disk");

    // Too small for its data (80 MiB of ballast beside the database): refused with the
    // numbers while d keeps serving, nothing moved.
    docker_ok(&[
        "exec",
        &h.container("d", "db"),
        "dd",
        "if=/dev/zero",
        "of=/var/lib/postgresql/data/ballast",
        "bs=1M",
        "count=80",
    ]);
    common::write_instance(&h, "d", &format!("{DEMO}limits: {{disk: 64m}}\n"));
    wait_for(
        Duration::from_secs(60),
        || {
            h.status("d")["error"]
                .as_str()
                .is_some_and(|e| e.contains("more than the"))
        },
        "the too-small disk refused",
    );
    assert!(healthy(&h), "d stopped for a move that could not fit");
    assert_eq!(device(), "");
    assert_eq!(
        h.status("d")["disk"]["state"],
        "not enforced yet: volumes pgdata are on the engine's disk"
    );

    common::write_instance(&h, "d", &format!("{DEMO}limits: {{disk: 300m}}\n"));
    wait_for(
        Duration::from_secs(120),
        || {
            let s = h.status("d");
            s["phase"] == "running" && s["disk"]["state"] == "enforced" && healthy(&h)
        },
        "d running again on its own filesystem",
    );
    assert!(
        device().ends_with("state/disks/d/volumes/pgdata"),
        "{}",
        device()
    );
    assert_eq!(h.psql("d", "select x from kept"), "42");
    let used = h.status("d")["disk"]["usage"]["used"].as_u64().unwrap();
    assert!(
        used > 100 << 20,
        "the database's files and ballast count: {used}"
    );
    assert_eq!(h.reconcile()["steps"], 0, "nothing left to move");
    h.kill9();
}

/// The backup filesystem, made short for one test: a tmpfs over the backup directory,
/// unmounted however the test ends.
struct Short(std::path::PathBuf);

impl Drop for Short {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// One tenant's backups never crowd anyone out: its plan's budget stops a backup while it is
/// written, a backup filesystem without room refuses before anything is written; each says
/// why, leaves no archive or spool behind, and the tenant keeps serving.
#[test]
fn a_backup_stops_at_its_budget_and_at_a_short_filesystem_leaving_nothing() {
    let Some(_g) = docker_test() else { return };
    let mut h = Harness::new(74);
    let budget = |b: &str| format!("{DEMO}limits: {{backups: {{budget: {b}, keep: 2}}}}\n");
    common::write_instance(&h, "d", &budget("4m"));
    h.start();
    h.wait_running(&["d"]);
    // About 10 MB of rows in the database's dump.
    h.psql(
        "d",
        "create table ballast as select md5(random()::text) || md5(random()::text) as x \
         from generate_series(1, 150000)",
    );
    let dir = h.path("state/backups/d");
    let leftovers = || {
        std::fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| n.ends_with(".tar") || n.starts_with(".spool"))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let o = h.cli(&["backup", "d"]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success(), "a backup past its budget was written");
    assert!(
        err.contains("backup budget is 4.0 MiB") && err.contains("backups.keep"),
        "{err}"
    );
    assert_eq!(leftovers(), Vec::<String>::new());
    assert!(healthy(&h));

    // Room enough: written.
    common::write_instance(&h, "d", &budget("64m"));
    h.reconcile();
    h.cli_ok(&["backup", "d"]);
    assert_eq!(leftovers().len(), 1);

    // A backup filesystem with less free than the margin berth keeps: refused at once.
    common::sh(&format!(
        "mount -t tmpfs -o size=64m,mode=0700 berth-short {}",
        dir.display()
    ));
    let _short = Short(dir.clone());
    let o = h.cli(&["backup", "d"]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success(), "a backup onto a full filesystem");
    assert!(
        err.contains("the backup filesystem at") && err.contains("free"),
        "{err}"
    );
    assert_eq!(leftovers(), Vec::<String>::new());
    assert!(healthy(&h));
    drop(_short);
    assert_eq!(leftovers().len(), 1, "the earlier archive is still there");
    h.kill9();
}
