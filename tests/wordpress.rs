//! WordPress end to end, from images berth pulled itself. The shipped `templates/wordpress`
//! names the official `mariadb:11.4` and `wordpress:6.*-apache` images; no public registry is
//! reachable here, so scripts/build-images.sh (`lamp`) builds stand-ins from Debian's packages
//! that honour those images' contracts, this test pushes them into a real registry on
//! loopback (Debian's docker-registry) under the official names, and the host config points
//! `docker.io` at it as a mirror. Everything else is the product: pulls, sidecar MariaDB,
//! the HTTPS edge on each tenant's own domain, backups, restore, clone, jobs and upgrades.

mod common;
use common::{wp::*, *};
use std::{process::Command, time::Duration};

const SLOT: u16 = 93;
const REG: u16 = 19493;

#[test]
fn wordpress_is_pulled_installed_used_backed_up_restored_cloned_and_upgraded() {
    let Some(_serial) = docker_test() else { return };
    let mut h = Harness::new(SLOT);
    let named: Vec<(&str, String)> = STAND_INS
        .iter()
        .map(|(local, official)| (*local, format!("library/{official}")))
        .collect();
    let (https, _registry, sink) = app_harness(&h, SLOT, REG, &named);
    own_template(&h, &sink.addr, REG);
    instance(&h, "wpa");
    instance(&h, "wpb");
    h.start();
    h.wait_running_within(&["wpa", "wpb"], Duration::from_secs(300));
    std::fs::write(h.path("ca.pem"), h.cli_ok(&["ca"])).unwrap();
    for (_, official) in common::STAND_INS.iter().take(2) {
        assert!(
            docker(&["image", "inspect", official]).status.success(),
            "berth pulled {official}"
        );
    }

    // Installed with the web installer, through the HTTPS edge on each tenant's own domain.
    for t in ["wpa", "wpb"] {
        wait_for(
            Duration::from_secs(60),
            || wp(&h, https, t, "/wp-admin/install.php", &[]).0 == 200,
            "the installer answers",
        );
        install(&h, https, t);
        assert_eq!(wp(&h, https, t, "/wp-login.php", &[]).0, 200);
    }
    // WordPress's own mail (a password reset) leaves through berth's relay, signed for the
    // tenant's domain.
    let (code, body) = wp(
        &h,
        https,
        "wpa",
        "/wp-login.php?action=lostpassword",
        &[
            "--data",
            "user_login=admin&redirect_to=&wp-submit=Get+New+Password",
        ],
    );
    assert!(code == 302 || code == 200, "lost password: {code} {body}");
    // (The installers' "New WordPress Site" messages went the same way.)
    let reset = || {
        sink.received().into_iter().find(|(from, eml)| {
            from == "wordpress@wpa.apps.test"
                && std::fs::read_to_string(eml)
                    .unwrap_or_default()
                    .contains("Password Reset")
        })
    };
    wait_for(
        Duration::from_secs(60),
        || reset().is_some(),
        "WordPress's password-reset message at the sink",
    );
    let (_, eml) = reset().unwrap();
    assert_eq!(
        common::mail::dkim_check(&h, "wpa", &eml),
        "ok wpa.apps.test"
    );
    let installers = sink.received();
    assert!(
        installers
            .iter()
            .any(|(f, _)| f == "wordpress@wpb.apps.test"),
        "wpb's installer mail: {installers:?}"
    );
    let post_a = publish_post(&h, https, "wpa", "Kept by berth");
    publish_post(&h, https, "wpb", "Only on b");
    let data = payload("wpa", 300_000);
    let (upload_id, upload_path) = upload(&h, https, "wpa", "berth-upload.txt", &data);
    let front = wp(&h, https, "wpa", "/", &[]);
    assert!(
        front.1.contains("Kept by berth") && !front.1.contains("Only on b"),
        "{front:?}"
    );
    assert_eq!(
        wp(&h, https, "wpa", &upload_path, &[]).1.as_bytes(),
        &data[..]
    );

    // Every byte WordPress can write is on its volume (on the tenant's quota disk) or on a
    // tmpfs sized within the plan's memory; its root is read-only.
    let mib = 1u64 << 20;
    assert_writes_bounded(
        &h.container("wpa", "web"),
        &[
            ("/tmp", 64 * mib),
            ("/run/apache2", mib),
            ("/run/lock", mib),
            ("/var/log/apache2", 4 * mib),
            // The site's volume, on the tenant's 1 GiB quota disk.
            ("/var/www/html", 1024 * mib),
        ],
    );

    // Tenant a's WordPress cannot reach b's database; its own it can.
    assert!(reaches(&h, "wpa", &db_ip(&h, "wpa")), "positive control");
    assert!(
        !reaches(&h, "wpa", &db_ip(&h, "wpb")),
        "a reaches b's database"
    );

    // A table of 6 MiB (as a plugin might keep), so the database's restored copy is large;
    // its row's hex dump stays under the server's 16 MiB packet.
    sql(
        &h,
        "wpa",
        "CREATE TABLE berth_ballast (b LONGBLOB); \
         INSERT INTO berth_ballast SELECT REPEAT(RANDOM_BYTES(1024), 6144)",
    );

    // Backup, then the post and the upload deleted and things made that the backup lacks.
    let made = h.cli_ok(&["backup", "wpa"]);
    let id = made.split_whitespace().nth(2).unwrap().to_string();
    let before = volume_digest(&h, "wpa");
    delete_post(&h, https, "wpa", &post_a);
    delete_post(&h, https, "wpa", &upload_id);
    make_late_things(&h);
    assert!(!wp(&h, https, "wpa", "/", &[]).1.contains("Kept by berth"));
    assert_eq!(wp(&h, https, "wpa", &upload_path, &[]).0, 404);

    let restored = h.cli_ok(&["restore", "wpa", "--from", &id]);
    assert!(restored.contains(&id), "{restored}");
    assert!(wp(&h, https, "wpa", "/", &[]).1.contains("Kept by berth"));
    assert_eq!(
        wp(&h, https, "wpa", &upload_path, &[]).1.as_bytes(),
        &data[..]
    );
    assert_eq!(volume_digest(&h, "wpa"), before, "the volume is byte-equal");
    assert_eq!(sql(&h, "wpa", "SHOW TABLES LIKE 'after_backup'"), "");
    let safety = std::fs::read_dir(h.path("state/backups/wpa/safety"))
        .unwrap()
        .count();
    assert_eq!(safety, 1, "the safety backup of what was replaced is kept");
    assert!(!h.path("state/backups/wpa/restoring.json").exists());

    // The agent killed (SIGKILL) at moments of a restore: afterwards the tenant holds either
    // what it held before the restore or the restored data, never a mix.
    // Killed while the safety backup is taken (before the journal): the old data stays.
    // Killed once the journal is written (the database or a volume being replaced): the next
    // agent finishes the restore.
    let journal = h.path("state/backups/wpa/restoring.json");
    for (after_journal, delay_ms) in [(false, 300u64), (true, 0), (true, 700)] {
        delete_post(&h, https, "wpa", &post_a);
        make_late_things(&h);
        assert_eq!(state_of(&h, https), OLD);
        let mut restore = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["--config", h.path("berth.yaml").to_str().unwrap()])
            .args(["restore", "wpa", "--from", &id])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        if after_journal {
            wait_for(Duration::from_secs(120), || journal.exists(), "the journal");
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        h.kill9();
        let _ = restore.wait();
        h.start();
        wait_for(
            Duration::from_secs(120),
            || !journal.exists(),
            "the unfinished restore finished",
        );
        let now = state_of(&h, https);
        eprintln!("killed {delay_ms} ms after the journal ({after_journal}): {now:?}");
        match after_journal {
            true => assert_eq!(now, RESTORED, "finished by the next agent"),
            false => assert!(now == OLD || now == RESTORED, "a mix: {now:?}"),
        }
        if now == OLD {
            h.cli_ok(&["restore", "wpa", "--from", &id]);
        }
        assert_eq!(state_of(&h, https), RESTORED);
    }

    // Restores on a full disk (the tenant's 1 GiB quota disk holds its database and its
    // site). Too little room: refused, nothing changed. Room for each restored copy alone but
    // not for all of them at once: the disk fills while the restore makes them ready beside
    // what the tenant uses, and nothing changes. Either way the site serves.
    {
        use common::fill::*;
        let db = h.container("wpa", "db");
        let dump = member_size(&h, "wpa", &id, "database.sql");
        let site = member_size(&h, "wpa", &id, "volumes/wp_data.tar");
        delete_post(&h, https, "wpa", &post_a);
        make_late_things(&h);
        assert_eq!(state_of(&h, https), OLD);
        refused_unchanged(restore_with_room(&h, ("wpa", &id), &db, dump / 2));
        assert_eq!(state_of(&h, https), OLD, "refused before anything changed");
        let room = site.max(dump) + site.max(dump) / 10 + (1 << 20);
        let (ok, said) = restore_with_room(&h, ("wpa", &id), &db, room);
        assert!(!ok && said.contains("was not changed"), "{said}");
        let now = state_of(&h, https);
        assert_eq!(now, OLD, "exactly the old data: {said}");
        assert_eq!(restore_leftovers(&h), "", "no unpacked copy left");
        no_staging_left(&db, ("wordpress", "wordpress"));
        assert_eq!(wp(&h, https, "wpa", "/wp-login.php", &[]).0, 200);
        if now == OLD {
            h.cli_ok(&["restore", "wpa", "--from", &id]);
        }
        assert_eq!(state_of(&h, https), RESTORED);
    }

    // A clone: a third tenant on its own domain with a's data.
    let cloned = h.cli_ok(&["restore", "wpc", "--from", &format!("wpa:{id}")]);
    assert!(cloned.contains("created from backup"), "{cloned}");
    let front = wp(&h, https, "wpc", "/", &[]);
    assert!(front.1.contains("Kept by berth"), "{front:?}");
    assert_eq!(
        wp(&h, https, "wpc", &upload_path, &[]).1.as_bytes(),
        &data[..]
    );
    h.cli_ok(&["rm", "wpc", "--purge"]);

    // WordPress's cron runs as a berth job.
    wait_for(
        Duration::from_secs(60),
        || {
            let v: serde_json::Value =
                serde_json::from_str(&h.cli_ok(&["jobs", "wpa", "-o", "json"])).unwrap();
            v.to_string().contains("\"exit_code\":0")
        },
        "a cron job run that exits 0",
    );
    let not_www = docker_ok(&[
        "exec",
        &h.container("wpa", "web"),
        "find",
        "/var/www/html/wp-content",
        "!",
        "-user",
        "www-data",
    ]);
    assert_eq!(not_www, "", "cron made files Apache cannot write");

    // An upgrade whose release migrates the database (its plugin creates a table).
    let up = h.cli(&["upgrade", "wordpress", "--to", "6.7", "--wait"]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    for t in ["wpa", "wpb"] {
        wait_for(
            Duration::from_secs(60),
            || {
                wp(&h, https, t, "/", &[]);
                sql(&h, t, "SHOW TABLES LIKE 'wp_berth_ledger'") == "wp_berth_ledger"
            },
            "the migration's table",
        );
    }
    // A broken release: halted at the canary, rolled back with its data.
    let up = h.cli(&[
        "upgrade",
        "wordpress",
        "--to",
        "6.8",
        "--canary",
        "1",
        "--wait",
    ]);
    assert!(!up.status.success(), "the broken release is refused");
    for t in ["wpa", "wpb"] {
        assert_eq!(h.status(t)["version"], "6.7", "{t}: {}", h.status(t));
        assert_eq!(wp(&h, https, t, "/wp-login.php", &[]).0, 200);
        assert_eq!(
            sql(&h, t, "SHOW TABLES LIKE 'wp_berth_ledger'"),
            "wp_berth_ledger"
        );
    }
    assert!(wp(&h, https, "wpa", "/", &[]).1.contains("Kept by berth"));
}
