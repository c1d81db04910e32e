//! Whole-host recovery: a host whose state directory, instance files, containers and volumes
//! are all gone comes back from its restic repository with one command — each tenant with its
//! identity, secrets, proven custom domain, database and volume byte-equal, serving through
//! the edge on a certificate issued again — while a tenant purged before the loss stays gone
//! and one never backed up is reported, not half made.

mod common;

use common::{
    Harness, curl, docker_ok, docker_test,
    restic::{key, restic, restic_ok},
    wait_for,
};
use std::time::Duration;

const SLOT: u16 = 27;

/// The stock restic's list of this repository's inventory snapshots, and the newest one.
fn inventories(repo: &str, key: &std::path::Path) -> usize {
    let snaps = restic_ok(
        repo,
        key,
        &["snapshots", "--json", "--tag", "berth-inventory"],
    );
    let v: serde_json::Value = serde_json::from_str(&snaps).unwrap();
    v.as_array().map_or(0, Vec::len)
}

fn newest_inventory(repo: &str, key: &std::path::Path) -> String {
    let o = restic(
        repo,
        key,
        &[
            "dump",
            "latest",
            "/inventory.json",
            "--tag",
            "berth-inventory",
        ],
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// The id of an inventory snapshot naming `tenant` (the newest such).
fn inventory_naming(repo: &str, key: &std::path::Path, tenant: &str) -> Option<String> {
    let snaps = restic_ok(
        repo,
        key,
        &["snapshots", "--json", "--tag", "berth-inventory"],
    );
    let v: serde_json::Value = serde_json::from_str(&snaps).unwrap();
    v.as_array()?.iter().rev().find_map(|s| {
        let id = s["id"].as_str()?;
        let o = restic(repo, key, &["dump", id, "/inventory.json"]);
        let named = String::from_utf8_lossy(&o.stdout).contains(&format!("\"{tenant}\""));
        named.then(|| id.to_string())
    })
}

fn recover(h: &Harness) -> (bool, serde_json::Value) {
    let o = h.cli(&["recover", "--repo", "offsite", "-o", "json"]);
    let v = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "recover printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    (o.status.success(), v)
}

fn outcome(v: &serde_json::Value, t: &str) -> serde_json::Value {
    let all = v["tenants"].as_array().unwrap();
    all.iter()
        .find(|r| r["tenant"] == t)
        .cloned()
        .unwrap_or_default()
}

#[test]
fn a_wiped_host_comes_back_whole_from_its_repository_and_a_purged_tenant_does_not() {
    let Some(_g) = docker_test() else { return };
    let mut h = Harness::new(SLOT);
    let (_, https) = h.with_proxy(SLOT);
    let api = h.with_tcp_api(SLOT, "");
    h.own_demo_template(common::demo_with_uploads);
    let repo_key = h.path("keys/offsite.key");
    key(&repo_key);
    let repo = h.path("offsite-repo").display().to_string();
    restic_ok(&repo, &repo_key, &["init"]);
    let mut cfg = std::fs::read_to_string(h.path("berth.yaml")).unwrap();
    cfg.push_str(&format!(
        "backup_repositories:\n  offsite:\n    url: {repo}\n    password_file: keys/offsite.key\n"
    ));
    std::fs::write(h.path("berth.yaml"), cfg).unwrap();
    // r1's custom domain was proven before (the book is the agent's record of that proof).
    std::fs::create_dir_all(h.path("state")).unwrap();
    std::fs::write(
        h.path("state/domains.json"),
        r#"{"bindings":{"shop.r1.test":{"tenant":"r1","method":"dns","verified_at":1}},"pending":{}}"#,
    )
    .unwrap();
    let demo = "template: demo\nversion: \"1\"\nplan: small\n";
    common::write_instance(&h, "r1", &format!("{demo}domains: [shop.r1.test]\n"));
    for t in ["r2", "r3", "r4"] {
        common::write_instance(&h, t, demo);
    }
    h.start();
    h.wait_running(&["r1", "r2", "r3", "r4"]);
    // r2's own token goes into the inventory and comes back with r2.
    let r2_token = h.cli_ok(&[
        "token",
        "create",
        "--role",
        "tenant-viewer",
        "--tenant",
        "r2",
        "--expires",
        "1h",
    ]);
    let r2_token = r2_token.trim().to_string();
    assert_eq!(
        common::bearer_status(&api, "/v1/instances/r2", &r2_token),
        "200"
    );
    for (t, n) in [("r1", 200), ("r2", 300), ("r3", 10)] {
        h.psql(t, &format!(
            "create table notes(id int primary key, body text); insert into notes select g, md5(g::text || '{t}') from generate_series(1, {n}) g;"
        ));
        let write = "mkdir -p /var/tmp/up && dd if=/dev/urandom of=/var/tmp/up/a bs=1k count=256 2>/dev/null && echo hello > /var/tmp/b";
        docker_ok(&["exec", &h.container(t, "app"), "sh", "-c", write]);
        h.cli_ok(&["backup", t]);
    }
    // r3 is purged before the loss: it must not come back (but from an inventory of before
    // its purge, asked for by name). r4 was never backed up.
    wait_for(
        Duration::from_secs(90),
        || newest_inventory(&repo, &repo_key).contains("\"r3\""),
        "an inventory naming r3",
    );
    h.cli_ok(&["rm", "r3", "--purge"]);
    let before = [
        common::demo_holdings(&h, "r1"),
        common::demo_holdings(&h, "r2"),
    ];
    std::fs::write(h.path("ca.pem"), h.cli_ok(&["ca"])).unwrap();
    let (code, page) = curl(&h, https, "https", "shop.r1.test", "/", &[]);
    assert!(code == "200" && page.contains("tenant=r1"), "{code} {page}");
    // The inventory the recovery reads names r4 and no longer r3.
    let inventory = || newest_inventory(&repo, &repo_key);
    wait_for(
        Duration::from_secs(90),
        || {
            let i = inventory();
            i.contains("\"r4\"") && !i.contains("\"r3\"")
        },
        "an inventory without r3",
    );
    let written = inventories(&repo, &repo_key);
    let with_r3 = inventory_naming(&repo, &repo_key, "r3").expect("an inventory named r3");

    // The disk is gone: the agent, its state, the instance files, every container and volume.
    h.kill9();
    h.clean_docker();
    std::fs::remove_dir_all(h.path("state")).unwrap();
    std::fs::remove_dir_all(h.path("instances")).unwrap();
    std::fs::create_dir_all(h.path("instances")).unwrap();
    assert!(h.owned("volume").is_empty() && h.owned("container").is_empty());

    // A fresh host with berth.yaml, the repository and its key: one command. Before it, the
    // new agent writes no inventory of its own (an empty one would lose every tenant).
    h.start();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        inventories(&repo, &repo_key),
        written,
        "the fresh agent wrote an inventory"
    );
    // A tenant made and backed up before the recovery: the new host's first inventory keeps
    // the tenants it has not recovered yet beside it.
    common::write_instance(&h, "r5", demo);
    h.wait_running(&["r5"]);
    h.cli_ok(&["backup", "r5"]);
    wait_for(
        Duration::from_secs(90),
        || {
            let i = inventory();
            ["r1", "r2", "r4", "r5"]
                .iter()
                .all(|t| i.contains(&format!("\"{t}\"")))
        },
        "the new host's first inventory, r1, r2 and r4 carried beside r5",
    );
    assert!(!inventory().contains("\"r3\""));

    // An agent stopped in the middle of a recovery: what it half made goes at its next start,
    // and the next recovery makes it again.
    let mut cli = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["--config", h.path("berth.yaml").to_str().unwrap()])
        .args(["recover", "--repo", "offsite", "--tenant", "r1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        Duration::from_secs(60),
        || h.path("state/scratch/r1").exists() && h.path("instances/r1.yaml").exists(),
        "r1 half made",
    );
    h.kill9();
    let _ = cli.kill();
    let _ = cli.wait();
    h.start();
    wait_for(
        Duration::from_secs(60),
        || !h.path("state/tenants/r1").exists() && !h.path("instances/r1.yaml").exists(),
        "the half-made r1 purged at the agent's start",
    );
    wait_for(
        Duration::from_secs(60),
        || !h.path("state/purge/r1").exists(),
        "r1's purge finished",
    );

    let (ok, v) = recover(&h);
    assert_eq!(outcome(&v, "r5")["outcome"], "exists", "{v}");
    assert!(!ok, "r4 failed, so the command says so: {v}");
    assert_eq!(outcome(&v, "r1")["outcome"], "recovered", "{v}");
    assert_eq!(outcome(&v, "r2")["outcome"], "recovered", "{v}");
    assert_eq!(
        outcome(&v, "r3"),
        serde_json::Value::Null,
        "purged r3 stays gone: {v}"
    );
    let r4 = outcome(&v, "r4");
    assert_eq!(r4["outcome"], "failed", "{v}");
    assert!(
        r4["error"].as_str().unwrap().contains("no snapshot"),
        "{r4}"
    );
    assert!(!h.path("instances/r4.yaml").exists(), "no half-made r4");

    h.wait_running(&["r1", "r2"]);
    assert_eq!(
        common::bearer_status(&api, "/v1/instances/r2", &r2_token),
        "200",
        "r2's token recovered with it"
    );
    let after = [
        common::demo_holdings(&h, "r1"),
        common::demo_holdings(&h, "r2"),
    ];
    assert_eq!(
        after, before,
        "identity, secrets, rows and volume byte-equal"
    );
    assert!(!h.path("instances/r3.yaml").exists());
    // The fetched archive is r1's newest backup here again, listed as its own.
    let list = h.cli_ok(&["backup", "r1", "--list", "-o", "json"]);
    assert!(
        list.contains(outcome(&v, "r1")["backup"].as_str().unwrap()),
        "{list}"
    );
    // Its proven domain routes at once, on a certificate of the new host's.
    std::fs::write(h.path("ca.pem"), h.cli_ok(&["ca"])).unwrap();
    wait_for(
        Duration::from_secs(60),
        || {
            let (code, page) = curl(&h, https, "https", "shop.r1.test", "/", &[]);
            code == "200" && page.contains("tenant=r1")
        },
        "shop.r1.test served after the recovery",
    );

    // Again: what exists is left alone, the failed one is tried again.
    let (ok, v) = recover(&h);
    assert!(!ok);
    assert_eq!(outcome(&v, "r1")["outcome"], "exists", "{v}");
    assert_eq!(outcome(&v, "r4")["outcome"], "failed", "{v}");
    // The new host writes the inventory now, still naming r4 (not recovered) until the
    // operator purges the name; then a recovery has nothing left to do.
    wait_for(
        Duration::from_secs(90),
        || written < inventories(&repo, &repo_key) && inventory().contains("\"r4\""),
        "the new host's inventory, r4 carried",
    );
    h.cli_ok(&["rm", "r4", "--purge"]);
    wait_for(
        Duration::from_secs(90),
        || !inventory().contains("\"r4\""),
        "an inventory without r4",
    );
    let (ok, v) = recover(&h);
    assert!(ok, "{v}");
    assert_eq!(v["tenants"].as_array().map(Vec::len), Some(3), "{v}");
    // A recovered tenant purged afterwards is gone from the inventory too.
    h.cli_ok(&["rm", "r2", "--purge"]);
    wait_for(
        Duration::from_secs(90),
        || {
            let i = inventory();
            !i.contains("\"r2\"") && i.contains("\"r1\"")
        },
        "an inventory without the purged r2",
    );
    // An older inventory brings back a tenant purged since, from its own newest snapshot, with
    // its rows; nothing else of that inventory is touched. A wrong id is refused, naming the
    // inventories there are; restic's own names (`latest`) and options are not ids at all.
    let o = h.cli(&["recover", "--repo", "offsite", "--inventory", "0123abcd"]);
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && said.contains("no inventory 0123abcd")
            && said.contains("newest first"),
        "{o:?}"
    );
    for bad in ["latest", "--tag=x", "0123abc"] {
        let o = h.cli(&[
            "recover",
            "--repo",
            "offsite",
            &format!("--inventory={bad}"),
        ]);
        assert!(
            !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("snapshot id"),
            "{bad}: {o:?}"
        );
    }
    let o = h.cli(&[
        "recover",
        "--repo",
        "offsite",
        "--inventory",
        &with_r3[..8],
        "--tenant",
        "r3",
        "-o",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(outcome(&v, "r3")["outcome"], "recovered", "{v}");
    assert_eq!(v["inventory"].as_str(), Some(with_r3.as_str()), "{v}");
    assert_eq!(v["tenants"].as_array().map(Vec::len), Some(1), "{v}");
    assert!(
        !h.path("instances/r2.yaml").exists(),
        "purged r2 stays gone"
    );
    h.wait_running(&["r3"]);
    assert_eq!(h.psql("r3", "select count(*) from notes").trim(), "10");
    // Refused before anything starts: an unknown repository, a tenant not in the inventory.
    let o = h.cli(&["recover", "--repo", "nowhere"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nowhere"),
        "{o:?}"
    );
    let o = h.cli(&["recover", "--repo", "offsite", "--tenant", "r2"]);
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("r2"),
        "{o:?}"
    );
}
