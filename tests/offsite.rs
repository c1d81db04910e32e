//! Backups that outlive the host: every backup copied to restic repositories (a local path,
//! and Debian's `rclone serve restic --append-only` on loopback), read back with the stock
//! `restic` binary, safe from the host's own delete, restored from off the host, and private
//! to the tenant's identity (a name reused after purge sees nothing of the old tenant's).

mod common;

use common::{
    Harness, docker_test,
    restic::{key, restic, restic_ok},
    sample, wait_for,
};
use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

const SLOT: u16 = 26;
/// The REST server's port: the last of this slot's web range (tenants publish no ports).
const REST_PORT: u16 = 10000 + SLOT * 50 + 49;

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The S3 server's port (moto), the one before.
const S3_PORT: u16 = REST_PORT - 1;

/// moto's S3 server on loopback (PyPI's `moto[server]`, in the suite's virtualenv).
fn s3_server() -> Kill {
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/target/py/bin/moto_server");
    let bin = if Path::new(venv).exists() {
        venv
    } else {
        "moto_server"
    };
    let child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &S3_PORT.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server (PyPI's moto[server]) is installed by scripts/test.sh");
    wait_for(
        Duration::from_secs(30),
        || std::net::TcpStream::connect(("127.0.0.1", S3_PORT)).is_ok(),
        "the S3 server listening",
    );
    Kill(child)
}

/// `rclone serve restic --append-only` on loopback, storing under `dir`.
fn rest_server(dir: &Path) -> Kill {
    std::fs::create_dir_all(dir).unwrap();
    let child = Command::new("rclone")
        .args(["serve", "restic", "--append-only", "--addr"])
        .arg(format!("127.0.0.1:{REST_PORT}"))
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rclone (Debian's rclone) is installed by scripts/test.sh");
    wait_for(
        Duration::from_secs(20),
        || std::net::TcpStream::connect(("127.0.0.1", REST_PORT)).is_ok(),
        "the REST server listening",
    );
    Kill(child)
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn sha256(path: &Path) -> String {
    common::sh(&format!("sha256sum '{}' | cut -d' ' -f1", path.display()))
}

fn backup(h: &Harness, tenant: &str) -> serde_json::Value {
    serde_json::from_str(&h.cli_ok(&["backup", tenant, "-o", "json"])).unwrap()
}

fn listing(h: &Harness, tenant: &str) -> serde_json::Value {
    serde_json::from_str(&h.cli_ok(&["backup", tenant, "--list", "-o", "json"])).unwrap()
}

fn archive(h: &Harness, tenant: &str, id: &str) -> PathBuf {
    h.path(&format!("state/backups/{tenant}/{id}.tar"))
}

#[test]
fn the_shipped_backup_alert_rules_load_in_prometheus() {
    let rules = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/prometheus/berth-backups.rules.yml"
    );
    let o = Command::new("promtool")
        .args(["check", "rules", rules])
        .output();
    let Ok(o) = o else {
        assert!(
            std::env::var("BERTH_REQUIRE_DOCKER").is_err(),
            "promtool (Debian's prometheus) is installed by scripts/test.sh"
        );
        return;
    };
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    assert!(String::from_utf8_lossy(&o.stdout).contains("4 rules found"));
}

#[test]
fn backups_land_in_restic_repositories_survive_the_hosts_delete_and_restore_from_off_the_host() {
    let Some(_g) = docker_test() else { return };
    let mut h = Harness::new(SLOT);
    let _rest = rest_server(&h.path("rest-server"));
    let _s3 = s3_server();
    let s3 = format!("s3:http://127.0.0.1:{S3_PORT}/berth-backups");
    let s3_env = h.path("keys/s3.env");
    let (rest_key, disk_key) = (h.path("keys/rest.key"), h.path("keys/disk.key"));
    key(&rest_key);
    key(&disk_key);
    let rest = format!("rest:http://127.0.0.1:{REST_PORT}/");
    let disk = h.path("disk-repo").display().to_string();
    // The REST repository is made by berth at its first copy (create: true); the path one
    // is made by hand, as berth never makes a path on its own state's filesystem.
    restic_ok(&disk, &disk_key, &["init"]);
    // The S3 one (for o2) gets its credentials from an env file; berth makes its bucket.
    let s3_key = h.path("keys/s3.key");
    key(&s3_key);
    std::fs::write(
        &s3_env,
        "# moto takes any keys\nAWS_ACCESS_KEY_ID=berth\nAWS_SECRET_ACCESS_KEY=berth-secret\n",
    )
    .unwrap();
    std::fs::set_permissions(&s3_env, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut cfg = std::fs::read_to_string(h.path("berth.yaml")).unwrap();
    cfg = cfg.replace(
        "plans:\n",
        "plans:\n  kept: {memory: 256m, cpus: 0.5, pids: 200, backups: {offsite_keep: {last: 2}}}\n",
    );
    cfg.push_str(&format!(
        "backup_repositories:\n  offsite:\n    url: {rest}\n    password_file: keys/rest.key\n    create: true\n  \
         disk:\n    url: {disk}\n    password_file: keys/disk.key\n    tenants: [o1]\n    \
         check: {{schedule: \"*/10 * * * * *\", read_data: 100%}}\n  \
         s3:\n    url: {s3}\n    password_file: keys/s3.key\n    env_file: keys/s3.env\n    tenants: [o2]\n    create: true\n"
    ));
    std::fs::write(h.path("berth.yaml"), cfg).unwrap();
    common::write_instance(&h, "o1", "template: demo\nversion: \"1\"\nplan: small\n");
    common::write_instance(&h, "o2", "template: demo\nversion: \"1\"\nplan: kept\n");
    h.start();
    h.wait_running(&["o1", "o2"]);
    let psql = |sql: &str| h.psql("o1", sql);
    psql(
        "create table notes(id int primary key, body text); insert into notes select g, md5(g::text) from generate_series(1, 300) g;",
    );
    let before = psql("select string_agg(body, ',' order by id) from notes");

    // A backup of o1 goes to both repositories (the path one serves o1 alone), o2's to one.
    let b1 = backup(&h, "o1");
    let id = b1["id"].as_str().unwrap().to_string();
    let copies = b1["offsite"].as_array().unwrap();
    let mut repos: Vec<&str> = copies
        .iter()
        .map(|c| c["repository"].as_str().unwrap())
        .collect();
    repos.sort();
    assert_eq!(repos, ["disk", "offsite"], "{b1}");
    assert!(b1.get("offsite_failed").is_none(), "{b1}");
    let b2 = backup(&h, "o2");
    assert_eq!(b2["offsite"].as_array().map(Vec::len), Some(2), "{b2}");
    let b2_id = b2["id"].as_str().unwrap();

    // The S3 repository reads back with the stock restic and the same env file.
    let s3_out = Command::new("restic")
        .env("RESTIC_REPOSITORY", &s3)
        .env("RESTIC_PASSWORD_FILE", &s3_key)
        .env("RESTIC_CACHE_DIR", h.path("keys/s3.cache"))
        .env("AWS_ACCESS_KEY_ID", "berth")
        .env("AWS_SECRET_ACCESS_KEY", "berth-secret")
        .args(["snapshots", "--json", "--tag", &format!("backup={b2_id}")])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&s3_out.stdout);
    assert!(
        s3_out.status.success() && listed.contains("tenant=o2"),
        "{listed}{}",
        String::from_utf8_lossy(&s3_out.stderr)
    );

    // The stock restic reads what berth wrote: the snapshot is tagged with o1's identity,
    // the repository checks with every byte read, and the file is the archive, byte for byte.
    let identity = std::fs::read_to_string(h.path("state/tenants/o1/id"))
        .unwrap()
        .trim()
        .to_string();
    for (repo, key) in [(rest.as_str(), &rest_key), (disk.as_str(), &disk_key)] {
        let snaps: serde_json::Value = serde_json::from_str(&restic_ok(
            repo,
            key,
            &["snapshots", "--json", "--tag", "tenant=o1"],
        ))
        .unwrap();
        let snap = &snaps[0];
        let tags: Vec<&str> = snap["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert!(tags.contains(&format!("backup={id}").as_str()), "{snap}");
        assert!(
            tags.contains(&format!("tenant-id={identity}").as_str()),
            "{snap}"
        );
        restic_ok(repo, key, &["check", "--read-data"]);
        let out = h.path("dumped.tar");
        let dumped = restic(
            repo,
            key,
            &["dump", snap["short_id"].as_str().unwrap(), "/o1.tar"],
        );
        assert!(dumped.status.success());
        std::fs::write(&out, &dumped.stdout).unwrap();
        assert_eq!(sha256(&out), sha256(&archive(&h, "o1", &id)), "{repo}");
    }

    // The host's own key cannot destroy what the append-only server holds.
    let snap = copies
        .iter()
        .find(|c| c["repository"] == "offsite")
        .unwrap()["snapshot"]
        .as_str()
        .unwrap()
        .to_string();
    let forget = restic(&rest, &rest_key, &["forget", &snap, "--prune"]);
    assert!(
        !forget.status.success(),
        "forget on an append-only server must fail"
    );
    let after = restic_ok(&rest, &rest_key, &["snapshots", "--json"]);
    assert!(after.contains(&snap), "every snapshot survives: {after}");

    // Retention runs where the repository may be written, not on the host: through the
    // append-only server the prune is refused; on the storage itself (`--url`), each tenant
    // keeps what its plan says (o2's plan: the newest 2 of its 3; o1's: the newest of the day).
    backup(&h, "o2");
    backup(&h, "o2");
    let count = |tenant: &str| {
        let v: serde_json::Value = serde_json::from_str(&restic_ok(
            &rest,
            &rest_key,
            &["snapshots", "--json", "--tag", &format!("tenant={tenant}")],
        ))
        .unwrap();
        v.as_array().unwrap().len()
    };
    assert_eq!((count("o1"), count("o2")), (1, 3));
    let refused = h.cli(&["backup", "prune", "--repo", "offsite"]);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && said.contains("403"), "{said}");
    assert_eq!((count("o1"), count("o2")), (1, 3));
    let storage = h.path("rest-server").display().to_string();
    let dry: serde_json::Value = serde_json::from_str(&h.cli_ok(&[
        "backup",
        "prune",
        "--repo",
        "offsite",
        "--url",
        &storage,
        "--dry-run",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(dry["forgotten"].as_array().map(Vec::len), Some(1), "{dry}");
    assert_eq!(
        (count("o1"), count("o2")),
        (1, 3),
        "a dry run forgets nothing"
    );
    let table = h.cli_ok(&["backup", "prune", "--repo", "offsite", "--url", &storage]);
    assert!(table.contains("o2"), "{table}");
    assert_eq!((count("o1"), count("o2")), (1, 2));
    restic_ok(&storage, &rest_key, &["check", "--read-data"]);

    // Listed beside the local archive; then, with the local archive gone, a restore fetches it.
    let l = listing(&h, "o1");
    let places: Vec<&str> = l["offsite"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["backup"] == id.as_str())
        .map(|s| s["repository"].as_str().unwrap())
        .collect();
    assert_eq!(places.len(), 2, "{l}");
    let table = h.cli_ok(&["backup", "o1", "--list"]);
    assert!(
        table.contains("local, disk, offsite") || table.contains("local, offsite, disk"),
        "{table}"
    );
    psql("delete from notes where id > 5; update notes set body = 'gone';");
    for e in std::fs::read_dir(h.path("state/backups/o1"))
        .unwrap()
        .flatten()
    {
        if e.path().extension().is_some_and(|x| x == "tar") {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    h.cli_ok(&["restore", "o1", "--from", &id]);
    assert_eq!(
        psql("select string_agg(body, ',' order by id) from notes"),
        before
    );
    assert!(h.agent_log().contains("backup fetched from off the host"));

    // Loud when a repository is gone: the local backup is kept, the command fails, and the
    // metrics say which tenant and repository.
    drop(_rest);
    let o = h.cli(&["backup", "o2"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("NOT copied to repository offsite"),
        "{err}"
    );
    let m = h.metrics();
    assert_eq!(
        sample(
            &m,
            "berth_offsite_backup_ok{tenant=\"o2\",repository=\"offsite\"}"
        ),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "berth_offsite_backup_failures_total{tenant=\"o2\",repository=\"offsite\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "berth_offsite_backup_ok{tenant=\"o1\",repository=\"disk\"}"
        ),
        Some(1.0)
    );
    assert!(
        sample(
            &m,
            "berth_offsite_backup_last_success_timestamp_seconds{tenant=\"o1\",repository=\"disk\"}"
        ) > Some(0.0)
    );

    // The path repository is checked every 10 s, every byte read back: it passes; a damaged
    // pack file fails the next check, and the metric (and its alert) says so.
    let check_ok = || sample(&h.metrics(), "berth_offsite_check_ok{repository=\"disk\"}");
    wait_for(
        Duration::from_secs(30),
        || check_ok() == Some(1.0),
        "a passing check of disk",
    );
    let pack = walk(&h.path("disk-repo/data"))
        .into_iter()
        .next()
        .expect("the path repository holds a pack");
    let mut bytes = std::fs::read(&pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::set_permissions(&pack, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&pack, bytes).unwrap();
    wait_for(
        Duration::from_secs(40),
        || check_ok() == Some(0.0),
        "a failing check of disk",
    );
    assert!(h.agent_log().contains("repository check FAILED"));

    // A key file others can read is refused, by name.
    std::fs::set_permissions(&disk_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = h.cli(&["backup", "o1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("mode 0600") && err.contains("disk"),
        "{err}"
    );
    std::fs::set_permissions(&disk_key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A tenant is an identity: o1 purged and made again sees none of the old o1's snapshots.
    h.cli_ok(&["rm", "o1", "--purge"]);
    wait_for(
        Duration::from_secs(60),
        || {
            h.reconcile();
            !h.path("state/tenants/o1").exists()
        },
        "o1 purged",
    );
    common::write_instance(&h, "o1", "template: demo\nversion: \"1\"\nplan: small\n");
    h.wait_running(&["o1"]);
    let l = listing(&h, "o1");
    assert_eq!(l["offsite"].as_array().map(Vec::len), Some(0), "{l}");
    let o = h.cli(&["restore", "o1", "--from", &id]);
    assert!(
        !o.status.success(),
        "the old o1's backup is not the new o1's"
    );
    h.kill9();
}
