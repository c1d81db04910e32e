//! osTicket end to end, from images berth pulled itself. The shipped `templates/osticket`
//! names the official `mariadb:11.4` and `osticket/osticket:1.*` images; no public registry is
//! reachable here, so scripts/build-images.sh (`lamp`, `osticket`) builds stand-ins that honour
//! those images' contracts (osTicket from its own release trees), this test pushes them into a
//! real registry on loopback under the official names, and the host config points `docker.io`
//! at it as a mirror. The help desk installs itself, an agent logs in through the edge, a
//! ticket with an attachment comes in through osTicket's API, its mail leaves through berth's
//! relay, its cron is a berth job, and backup, restore, clone and upgrades (osTicket's own
//! migrations, and a broken release rolled back with its data) run as the product runs them.

mod common;
use common::{wp::wp, *};
use std::time::Duration;

const SLOT: u16 = 78;
const REG: u16 = 19478;
const ADMIN: &str = "deskadmin";
/// osTicket 1.17.5's and 1.18.1's schema signatures (include/upgrader/streams/core.sig).
const SCHEMA_117: &str = "83a22ba22b1a6a624fcb1da03882ac1b";
const SCHEMA_118: &str = "5fb92bef17f3b603659e024c01cc7a59";

const IMAGES: [(&str, &str); 4] = [
    ("berth/mariadb:10.11", "library/mariadb:11.4"),
    ("berth/osticket:1.17", "osticket/osticket:1.17"),
    ("berth/osticket:1.18", "osticket/osticket:1.18"),
    (
        "berth/osticket:1.18-broken",
        "osticket/osticket:1.18-broken",
    ),
];

/// The shipped template in the harness's templates dir, with a broken release and cron every
/// ten seconds, the host pointed at the registry and the mail sink.
fn own_template(h: &Harness, smarthost: &str) {
    own_app_template(
        h,
        "osticket",
        ("1.18-broken", "osticket/osticket:1.18-broken"),
        (smarthost, REG),
        "desk: {memory: 1g, cpus: 1, pids: 500, disk: 400m}",
    );
}

fn instance(h: &Harness, t: &str, version: &str) {
    write_instance(
        h,
        t,
        &format!(
            "template: osticket\nplan: desk\nversion: \"{version}\"\nparameters:\n  admin_email: agent@{t}.test\n  admin_user: {ADMIN}\n"
        ),
    );
}

/// One statement in the tenant's MariaDB as its osTicket user.
fn sql(h: &Harness, t: &str, q: &str) -> String {
    docker_ok(&[
        "exec",
        &h.container(t, "db"),
        "sh",
        "-c",
        "MYSQL_PWD=\"$(cat /run/secrets/db_password)\" exec mariadb -N -s -h 127.0.0.1 -u osticket osticket -e \"$0\"",
        q,
    ])
}

/// What a backup must bring back exactly: tickets, their threads, users and attachments
/// (osTicket keeps files in the database), as table checksums.
fn holdings(h: &Harness, t: &str) -> String {
    sql(
        h,
        t,
        "CHECKSUM TABLE ost_ticket, ost_thread, ost_thread_entry, ost_file, ost_file_chunk, \
         ost_attachment, ost_user, ost_user_email, ost_staff, ost_form_entry_values",
    )
}

/// A value of the hidden CSRF field in a page.
fn csrf(page: &str) -> String {
    let at = page
        .find("name=\"__CSRFToken__\"")
        .unwrap_or_else(|| panic!("no CSRF token in {page}"));
    let rest = &page[at..];
    let v = rest.split("value=\"").nth(1).unwrap();
    v.split('"').next().unwrap().to_string()
}

/// The agent logs in through the edge; the cookie jar holds the session.
fn agent_login(h: &Harness, https: u16, t: &str) -> String {
    let jar = h.path(&format!("{t}-cookies.txt"));
    let _ = std::fs::remove_file(&jar);
    let jar = jar.to_str().unwrap().to_string();
    let pw = std::fs::read_to_string(h.path(&format!("state/tenants/{t}/secrets/admin_password")))
        .unwrap();
    let (code, page) = wp(h, https, t, "/scp/login.php", &["-c", &jar, "-b", &jar]);
    assert_eq!(code, 200, "{page}");
    let form = format!(
        "__CSRFToken__={}&do=scplogin&userid={ADMIN}&passwd={}",
        csrf(&page),
        urlencode(pw.trim())
    );
    let (code, _) = wp(
        h,
        https,
        t,
        "/scp/login.php",
        &["-c", &jar, "-b", &jar, "--data", &form],
    );
    assert!(code == 302 || code == 200, "login: {code}");
    let (code, page) = wp(
        h,
        https,
        t,
        "/scp/index.php",
        &["-c", &jar, "-b", &jar, "-L"],
    );
    assert!(
        code == 200 && page.contains("logout.php"),
        "{t}: the agent is not logged in: {code} {}",
        &page[..page.len().min(2000)]
    );
    jar
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An API key for tickets, bound (as osTicket binds every key) to the address the help desk
/// sees requests come from: the edge's, on the tenant's network. And, as an admin would in
/// Settings → Emails, no MX lookup of customers' addresses: this machine has no DNS.
fn api_key(h: &Harness, t: &str) -> String {
    sql(
        h,
        t,
        "INSERT INTO ost_config (namespace, `key`, value, updated) \
         VALUES ('core', 'verify_email_addrs', '0', NOW()) ON DUPLICATE KEY UPDATE value = '0'",
    );
    let from = h.ipam(t, "Gateway");
    let key = format!("BERTH{:027X}", u128::from(SLOT) * 7919);
    sql(
        h,
        t,
        &format!(
            "INSERT INTO ost_api_key (isactive, ipaddr, apikey, can_create_tickets, can_exec_cron, notes, updated, created) \
             VALUES (1, '{from}', '{key}', 1, 0, 'berth test', NOW(), NOW())"
        ),
    );
    key
}

/// Opens a ticket through osTicket's API with a text attachment; its number.
fn open_ticket(h: &Harness, https: u16, t: &str, key: &str, subject: &str, file: &[u8]) -> String {
    let body = serde_json::json!({
        "alert": true,
        "autorespond": true,
        "source": "API",
        "name": "A customer",
        "email": format!("customer-{t}@example.com"),
        "subject": subject,
        "message": format!("data:text/plain;charset=utf-8,{subject}: it does not work"),
        "attachments": [{ "report.txt": format!("data:text/plain;base64,{}", common::wp::base64(file)) }],
    });
    let f = h.path(&format!("{t}-ticket.json"));
    std::fs::write(&f, body.to_string()).unwrap();
    let (code, number) = wp(
        h,
        https,
        t,
        "/api/tickets.json",
        &[
            "-H",
            &format!("X-API-Key: {key}"),
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &format!("@{}", f.display()),
        ],
    );
    assert_eq!(code, 201, "{t}: the API refused the ticket: {number}");
    number.trim().to_string()
}

fn agent_sees(h: &Harness, https: u16, t: &str, jar: &str, subject: &str) -> bool {
    let (code, page) = wp(
        h,
        https,
        t,
        "/scp/tickets.php?queue=1",
        &["-c", jar, "-b", jar],
    );
    code == 200 && page.contains(subject)
}

fn schema(h: &Harness, t: &str) -> String {
    sql(
        h,
        t,
        "SELECT value FROM ost_config WHERE namespace='core' AND `key`='schema_signature'",
    )
}

#[test]
fn osticket_installs_itself_takes_tickets_and_is_backed_up_restored_cloned_and_upgraded() {
    let Some(_serial) = docker_test() else { return };
    let mut h = Harness::new(SLOT);
    let images: Vec<(&str, String)> = IMAGES.iter().map(|(l, p)| (*l, p.to_string())).collect();
    let (https, _registry, sink) = app_harness(&h, SLOT, REG, &images);
    own_template(&h, &sink.addr);
    instance(&h, "osa", "1.17");
    h.start();
    h.wait_running_within(&["osa"], Duration::from_secs(300));
    std::fs::write(h.path("ca.pem"), h.cli_ok(&["ca"])).unwrap();
    assert!(
        docker(&["image", "inspect", "osticket/osticket:1.17"])
            .status
            .success()
    );

    // Installed by the image at its first start: no human at the web installer.
    wait_for(
        Duration::from_secs(120),
        || wp(&h, https, "osa", "/scp/login.php", &[]).0 == 200,
        "osTicket's staff login answers",
    );
    assert_eq!(schema(&h, "osa"), SCHEMA_117);
    let (code, _) = wp(&h, https, "osa", "/setup/install.php", &[]);
    assert_eq!(code, 403, "the web installer is not reachable");
    let jar = agent_login(&h, https, "osa");

    // Every byte the help desk can write is counted: its root is read-only, and each writable
    // path is a tmpfs sized within the plan's memory.
    let mib = 1u64 << 20;
    assert_writes_bounded(
        &h.container("osa", "web"),
        &[
            ("/tmp", 64 * mib),
            ("/run/osticket", mib),
            ("/run/apache2", mib),
            ("/run/lock", mib),
            ("/var/log/apache2", 4 * mib),
            ("/var/lib/php/sessions", 8 * mib),
        ],
    );

    // A ticket with an attachment through osTicket's API, seen by the agent.
    let key = api_key(&h, "osa");
    let report = common::wp::payload("osa-report", 200_000);
    let number = open_ticket(&h, https, "osa", &key, "Printer on fire", &report);
    assert!(!number.is_empty());
    assert!(agent_sees(&h, https, "osa", &jar, "Printer on fire"));
    let stored = sql(
        &h,
        "osa",
        "SELECT SHA2(GROUP_CONCAT(c.filedata ORDER BY c.chunk_id SEPARATOR ''), 256) FROM ost_file f \
         JOIN ost_file_chunk c ON c.file_id = f.id WHERE f.name = 'report.txt'",
    );
    assert_eq!(
        stored,
        sha256_hex(&report),
        "the attachment is stored whole"
    );

    // osTicket's mail (the new-ticket alert to the agent, the auto-reply to the customer)
    // leaves through berth's relay, signed for the tenant's domain.
    let from_desk = || {
        sink.received()
            .into_iter()
            .find(|(from, _)| from == "helpdesk@osa.apps.test")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while from_desk().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    let Some((_, eml)) = from_desk() else {
        panic!(
            "no mail from osTicket at the sink: {:?}; osTicket's log: {}; relay: {}\nDEBUG {}",
            sink.received(),
            sql(&h, "osa", "SELECT title, log FROM ost_syslog ORDER BY log_id DESC LIMIT 5"),
            h.agent_log().lines().filter(|l| l.contains("mail")).collect::<Vec<_>>().join("\n"),
            String::from_utf8_lossy(&docker(&["exec", &h.container("osa", "web"), "sh", "-c", "grep -v password /run/osticket/msmtprc; printf 'To: x@example.com\\nSubject: t\\n\\nhi\\n' | setpriv --reuid=33 --regid=33 --clear-groups msmtp -C /run/osticket/msmtprc -d -t 2>&1 | tail -30"]).stdout)
        )
    };
    assert_eq!(
        common::mail::dkim_check(&h, "osa", &eml),
        "ok osa.apps.test"
    );

    // osTicket's cron runs as a berth job.
    wait_for(
        Duration::from_secs(60),
        || {
            let v: serde_json::Value =
                serde_json::from_str(&h.cli_ok(&["jobs", "osa", "-o", "json"])).unwrap();
            v.to_string().contains("\"exit_code\":0")
        },
        "a cron job run that exits 0",
    );

    // Backup; a ticket made after it; the restore brings back exactly what was backed up.
    let before = holdings(&h, "osa");
    let made = h.cli_ok(&["backup", "osa"]);
    let id = made.split_whitespace().nth(2).unwrap().to_string();
    open_ticket(&h, https, "osa", &key, "After the backup", b"late");
    assert_ne!(holdings(&h, "osa"), before);
    let restored = h.cli_ok(&["restore", "osa", "--from", &id]);
    assert!(restored.contains(&id), "{restored}");
    assert_eq!(
        holdings(&h, "osa"),
        before,
        "the database is as it was backed up"
    );
    let jar = agent_login(&h, https, "osa");
    assert!(agent_sees(&h, https, "osa", &jar, "Printer on fire"));
    assert!(!agent_sees(&h, https, "osa", &jar, "After the backup"));

    // Restores on a full disk: the database's volume is on the tenant's 400 MiB quota disk.
    restores_on_a_full_disk(&h, https, &id, &before);

    // The agent killed (SIGKILL) while the restore loads beside the live database: the next
    // agent finishes it from its journal, and the help desk holds exactly the backup.
    let journal = h.path("state/backups/osa/restoring.json");
    let mut restore = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["--config", h.path("berth.yaml").to_str().unwrap()])
        .args(["restore", "osa", "--from", &id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // (A small dump loads within a second: the kill may also come after the restore ended.)
    wait_for(
        Duration::from_secs(120),
        || {
            restore.try_wait().unwrap().is_some()
                || (journal.exists()
                    && !sql(&h, "osa", "SHOW DATABASES LIKE 'osticket\\_berth\\_new'").is_empty())
        },
        "the staging database",
    );
    h.kill9();
    let _ = restore.wait();
    h.start();
    wait_for(
        Duration::from_secs(120),
        || !journal.exists(),
        "the unfinished restore finished",
    );
    assert_eq!(holdings(&h, "osa"), before, "finished by the next agent");
    common::fill::no_staging_left(&h.container("osa", "db"), ("osticket", "osticket"));

    // A clone: a second help desk on its own domain with the first one's tickets.
    let cloned = h.cli_ok(&["restore", "osc", "--from", &format!("osa:{id}")]);
    assert!(cloned.contains("created from backup"), "{cloned}");
    h.wait_running_within(&["osc"], Duration::from_secs(120));
    assert_eq!(holdings(&h, "osc"), before);
    wait_for(
        Duration::from_secs(60),
        || wp(&h, https, "osc", "/scp/login.php", &[]).0 == 200,
        "the clone answers",
    );
    h.cli_ok(&["rm", "osc", "--purge"]);

    // A release whose upgrade migrates the schema and then fails its gate: rolled back, the
    // old release serves its old data (the old schema) again.
    let pre_upgrade = holdings(&h, "osa");
    let up = h.cli(&[
        "upgrade",
        "osticket",
        "--to",
        "1.18-broken",
        "--canary",
        "1",
        "--wait",
    ]);
    assert!(!up.status.success(), "the broken release is refused");
    assert_eq!(h.status("osa")["version"], "1.17", "{}", h.status("osa"));
    assert_eq!(
        schema(&h, "osa"),
        SCHEMA_117,
        "the old data, not the migrated"
    );
    assert_eq!(holdings(&h, "osa"), pre_upgrade);
    assert_eq!(wp(&h, https, "osa", "/scp/login.php", &[]).0, 200);

    // The real upgrade: osTicket's own migration to 1.18's schema, the tickets kept.
    let up = h.cli(&["upgrade", "osticket", "--to", "1.18", "--wait"]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert_eq!(h.status("osa")["version"], "1.18");
    assert_eq!(schema(&h, "osa"), SCHEMA_118);
    wait_for(
        Duration::from_secs(60),
        || wp(&h, https, "osa", "/scp/login.php", &[]).0 == 200,
        "1.18 answers",
    );
    let jar = agent_login(&h, https, "osa");
    assert!(agent_sees(&h, https, "osa", &jar, "Printer on fire"));
}

/// Restores with too little room: refused before anything changes; and with room for the
/// dump but not for the database it makes, so the disk fills during the load: the live
/// database is left exactly as it was (or, once room came back, exactly the restored one),
/// and the help desk serves.
fn restores_on_a_full_disk(h: &Harness, https: u16, id: &str, restored_state: &str) {
    use common::fill::*;
    let db = h.container("osa", "db");
    let dump = member_size(h, "osa", id, "database.sql");
    open_ticket_after(h, https);
    let now = holdings(h, "osa");
    assert_ne!(now, restored_state);

    refused_unchanged(restore_with_room(h, ("osa", id), &db, dump / 2));
    assert_eq!(holdings(h, "osa"), now, "refused before anything changed");

    let (ok, said) = restore_with_room(h, ("osa", id), &db, dump * 2);
    let after = holdings(h, "osa");
    match ok {
        true => assert_eq!(after, restored_state, "exactly the restored data"),
        false => assert_eq!(after, now, "exactly the old data: {said}"),
    }
    no_staging_left(&db, ("osticket", "osticket"));
    wait_for(
        Duration::from_secs(60),
        || wp(h, https, "osa", "/scp/login.php", &[]).0 == 200,
        "the help desk serves after a restore on a full disk",
    );
}

fn open_ticket_after(h: &Harness, https: u16) {
    let key = sql(h, "osa", "SELECT apikey FROM ost_api_key LIMIT 1");
    open_ticket(h, https, "osa", &key, "On a full disk", b"full");
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}
