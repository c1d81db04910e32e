//! Real-engine tests: crash recovery, drift repair, orphans, removal and purge.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn agent_killed_mid_provisioning_converges_without_duplicates_and_then_idles() {
    let Some(_serial) = docker_test() else { return };
    let mut h = Harness::new(21);
    h.start();
    write_instance(&h, "echo", "template: demo\n");
    write_instance(&h, "foxtrot", "template: demo\n");
    // Let the watcher-triggered pass get part of the way (db created, app waiting), then crash.
    wait_for(
        Duration::from_secs(30),
        || !h.owned("container").is_empty(),
        "first container",
    );
    h.kill9();
    h.start();
    h.wait_running(&["echo", "foxtrot"]);
    assert_eq!(h.owned("container").len(), 4, "{:?}", h.owned("container"));
    assert_eq!(h.owned("network").len(), 2);
    // A second agent on the same state dir is refused.
    let second = h.cli(&["serve"]);
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another berth agent already runs"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    // Converged: the next pass makes no mutating call.
    let idle = h.reconcile();
    assert_eq!(
        (idle["steps"].as_u64(), idle["mutations"].as_u64()),
        (Some(0), Some(0)),
        "{idle}"
    );
    // Previews change nothing: the converged fleet has nothing to do (`berth diff` exits 0),
    // a dry-run `set` shows the app made again and writes nothing, a dry-run `add` shows the
    // new tenant's steps and makes nothing.
    let d = h.cli(&["diff"]);
    let said = String::from_utf8_lossy(&d.stdout).to_string();
    assert!(
        d.status.success() && said.contains("nothing to do"),
        "{d:?}"
    );
    let file = std::fs::read_to_string(h.path("instances/echo.yaml")).unwrap();
    let out = h.cli_ok(&["set", "echo", "site_title=Preview", "--dry-run"]);
    assert!(
        out.contains("nothing written")
            && out.contains(&format!("remove container {}", h.container("echo", "app")))
            && out.contains("create the container of service app"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(h.path("instances/echo.yaml")).unwrap(),
        file
    );
    let out = h.cli_ok(&["add", "golf", "--template", "demo", "--dry-run"]);
    assert!(out.contains("create the tenant's network"), "{out}");
    assert!(!h.path("instances/golf.yaml").exists());
    let out = h.cli_ok(&["rm", "echo", "--purge", "--dry-run"]);
    assert!(
        out.contains("nothing removed")
            && out.contains(&format!("remove container {}", h.container("echo", "db")))
            && out.contains("remove volume"),
        "{out}"
    );
    assert!(h.path("instances/echo.yaml").exists());
    assert_eq!(h.owned("container").len(), 4);
    let out = h.cli(&["set", "echo", "nope=1", "--dry-run"]);
    assert!(!out.status.success(), "{out:?}");
    assert_eq!(h.reconcile()["mutations"], 0);
    // Anything pending is listed, and `diff` exits 1: a file broken by hand says why its
    // tenant is left as it was.
    let foxtrot = std::fs::read_to_string(h.path("instances/foxtrot.yaml")).unwrap();
    write_instance(&h, "foxtrot", "template: demo\nplan: [oops\n");
    let d = h.cli(&["diff", "foxtrot", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&d.stdout).unwrap_or_default();
    assert_eq!(d.status.code(), Some(1), "{d:?}");
    assert_eq!(v[0]["tenant"], "foxtrot", "{v}");
    assert!(
        v[0]["waits"]
            .as_str()
            .unwrap_or("")
            .contains("its file is invalid"),
        "{v}"
    );
    std::fs::write(h.path("instances/foxtrot.yaml"), foxtrot).unwrap();
    h.wait_running(&["foxtrot"]);
    // A restart of a converged agent changes nothing either.
    h.kill9();
    h.start();
    assert_eq!(h.reconcile()["mutations"], 0);
}

#[test]
fn a_crash_between_any_two_docker_calls_converges_on_restart() {
    let Some(_serial) = docker_test() else { return };
    let mut h = Harness::new(24);
    // A new demo tenant takes 6 mutating calls: network, volume, db create+start, app create+start.
    for k in 0..6u64 {
        let tenant = format!("crash{k}");
        write_instance(&h, &tenant, "template: demo\n");
        h.crash_after(k);
        h.start();
        h.wait_running(&[tenant.as_str()]);
        let idle = h.reconcile();
        assert_eq!(
            (idle["steps"].as_u64(), idle["mutations"].as_u64()),
            (Some(0), Some(0)),
            "k={k}: {idle}"
        );
        let mine: Vec<String> = h
            .owned("container")
            .into_iter()
            .filter(|c| c.contains(&format!("-{tenant}-")))
            .collect();
        assert_eq!(mine.len(), 2, "k={k}: {mine:?}");
        assert_eq!(
            h.owned("network")
                .iter()
                .filter(|n| n.ends_with(&format!("-{tenant}")))
                .count(),
            1,
            "k={k}"
        );
        h.kill9();
    }
}

#[test]
fn hand_made_drift_is_repaired_and_unlabelled_objects_are_never_touched() {
    let Some(_serial) = docker_test() else { return };
    let mut h = Harness::new(22);
    let decoy = format!("{}-golf-decoy", h.ns);
    docker(&["rm", "-f", &decoy]);
    docker_ok(&["create", "--name", &decoy, "berth/demo:1"]);
    h.start();
    write_instance(&h, "golf", "template: demo\n");
    h.wait_running(&["golf"]);
    let port = h.web("golf");
    docker_ok(&["stop", &h.container("golf", "app")]);
    docker_ok(&["rm", "-f", &h.container("golf", "db")]);
    h.wait_running(&["golf"]);
    wait_for(
        Duration::from_secs(30),
        || http_get(port, "/cgi-bin/db").is_some_and(|(c, _)| c == 200),
        "db after repair",
    );
    // An orphan that carries our labels (a crash leftover) is collected.
    let orphan = format!("{}-ghost-app", h.ns);
    docker_ok(&[
        "create",
        "--name",
        &orphan,
        "--label",
        &format!("io.berth.namespace={}", h.ns),
        "--label",
        "io.berth.tenant=ghost",
        "berth/demo:1",
    ]);
    h.reconcile();
    assert!(!h.owned("container").contains(&orphan));
    assert!(
        docker(&["inspect", &decoy]).status.success(),
        "unlabelled decoy was touched"
    );
    docker(&["rm", "-f", &decoy]);
}

#[test]
fn removal_keeps_volumes_and_secrets_unless_purged() {
    let Some(_serial) = docker_test() else { return };
    let mut h = Harness::new(23);
    h.start();
    h.cli_ok(&["add", "hotel", "--template", "demo", "--wait"]);
    let secret = std::fs::read(h.path("state/tenants/hotel/secrets/db_password")).unwrap();
    h.cli_ok(&["rm", "hotel"]);
    wait_for(
        Duration::from_secs(30),
        || {
            h.reconcile();
            h.owned("container").is_empty()
        },
        "containers removed",
    );
    assert!(h.owned("network").is_empty());
    assert_eq!(h.owned("volume"), vec![format!("{}-hotel-pgdata", h.ns)]);
    // Re-added, it finds its data: same password, same initialised database.
    h.cli_ok(&["add", "hotel", "--template", "demo", "--wait"]);
    assert_eq!(
        std::fs::read(h.path("state/tenants/hotel/secrets/db_password")).unwrap(),
        secret
    );
    let port = h.web("hotel");
    wait_for(
        Duration::from_secs(30),
        || http_get(port, "/cgi-bin/db").is_some_and(|(c, _)| c == 200),
        "db with retained data",
    );
    h.cli_ok(&["rm", "hotel", "--purge"]);
    wait_for(
        Duration::from_secs(30),
        || {
            h.reconcile();
            h.owned("volume").is_empty() && h.owned("container").is_empty()
        },
        "purge",
    );
    assert!(!h.path("state/tenants/hotel").exists());
    assert!(!h.path("state/purge/hotel").exists());
}

#[test]
fn a_network_an_older_berth_made_without_the_engine_s_range_is_made_again_and_the_app_moves_to_its_address()
 {
    let Some(_serial) = docker_test() else { return };
    let mut h = Harness::new(25);
    h.start();
    h.cli_ok(&["add", "india", "--template", "demo", "--wait"]);
    let at = h.web("india");
    let net = format!("{}-india", h.ns);
    let subnet = h.ipam("india", "Subnet");
    // As an older berth left it: the network without a range, and another of the tenant's
    // containers holding the web address the engine could have handed out there.
    h.kill9();
    for c in ["app", "db"] {
        docker_ok(&["rm", "-f", &h.container("india", c)]);
    }
    docker_ok(&["network", "rm", &net]);
    let owner = [
        "--label".to_string(),
        format!("io.berth.namespace={}", h.ns),
        "--label".into(),
        "io.berth.tenant=india".into(),
    ];
    let mut create = vec!["network", "create", "--subnet", &subnet];
    create.extend(owner.iter().map(String::as_str));
    create.push(&net);
    docker_ok(&create);
    let ip = at.ip().to_string();
    let squat = h.container("india", "old");
    let mut run = vec!["create", "--name", &squat, "--network", &net, "--ip", &ip];
    run.extend(owner.iter().map(String::as_str));
    run.push("berth/demo:1");
    docker_ok(&run);
    h.start();
    h.wait_running(&["india"]);
    wait_for(
        Duration::from_secs(60),
        || http_get(at, "/cgi-bin/db").is_some_and(|(c, _)| c == 200),
        "the app at its address on the network made again",
    );
    let range = h.ipam("india", "IPRange");
    assert!(!range.is_empty(), "the network has the engine's range now");
    assert!(
        !h.owned("container").contains(&squat),
        "the old container is gone"
    );
}

fn demo_file(h: &Harness, t: &str, limits: &str) {
    write_instance(
        h,
        t,
        &format!(
            "template: demo\nversion: \"1\"\nplan: small\n{limits}parameters:\n  site_title: {t}\n  \
             admin_email: ops@{t}.test\n  brand_color: \"#336699\"\n"
        ),
    );
}

fn status_of(h: &Harness, t: &str) -> serde_json::Value {
    serde_json::from_str(&h.cli_ok(&["status", t, "-o", "json"])).unwrap()
}

/// Hand edits go through admission (memory 600m, 1 CPU, no overcommit): an edit past the host
/// and a new file that does not fit are refused with why, the edited tenant keeps running as
/// admitted (same container, same limits), the new one gets nothing; a fix is taken at once.
#[test]
fn hand_edits_past_the_host_are_refused_and_the_tenant_keeps_running_as_admitted() {
    let Some(_g) = docker_test() else { return };
    let mut h = Harness::new(76);
    let mut cfg = std::fs::read_to_string(h.path("berth.yaml")).unwrap();
    cfg.push_str("admission: {memory: 600m, cpus: 1, cpu_overcommit: 1}\n");
    std::fs::write(h.path("berth.yaml"), cfg).unwrap();
    demo_file(&h, "ha", "");
    demo_file(&h, "hb", "");
    h.start();
    h.wait_running(&["ha", "hb"]);
    let app = h.container("hb", "app");
    let id = || docker_ok(&["inspect", "-f", "{{.Id}} {{.HostConfig.Memory}}", &app]);
    let before = id();

    // hb grows past the host's memory by hand: refused, hb runs on as it was.
    demo_file(&h, "hb", "limits: {memory: 400m}\n");
    wait_for(
        Duration::from_secs(30),
        || {
            status_of(&h, "hb")["error"]
                .to_string()
                .contains("not admitted")
        },
        "hb's edit refused",
    );
    let s = status_of(&h, "hb");
    assert!(
        s["error"].to_string().contains("hb needs 400m of memory")
            && s["error"].to_string().contains("this host allows 600m"),
        "{s}"
    );
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(id(), before, "hb's container was left as admitted");
    let served = http_get(h.web("hb"), "/").map(|x| x.0);
    assert_eq!(served, Some(200), "hb still serves");

    // A CPU edit past the host's one CPU, and a new file past its memory: refused the same way.
    demo_file(&h, "ha", "limits: {cpus: 0.9}\n");
    demo_file(&h, "hc", "");
    wait_for(
        Duration::from_secs(30),
        || {
            status_of(&h, "ha")["error"]
                .to_string()
                .contains("ha needs 0.9 CPUs")
                && status_of(&h, "hc")["error"]
                    .to_string()
                    .contains("not admitted")
        },
        "ha's CPU edit and hc's file refused",
    );
    assert!(
        docker(&["inspect", &h.container("hc", "app")])
            .status
            .code()
            != Some(0)
    );

    // Fixed: hb's file back to its plan and hc gone; ha's CPUs back; all converge.
    std::fs::remove_file(h.path("instances/hc.yaml")).unwrap();
    demo_file(&h, "hb", "");
    demo_file(&h, "ha", "");
    h.wait_running(&["ha", "hb"]);
    wait_for(
        Duration::from_secs(30),
        || status_of(&h, "hb")["error"].is_null() && status_of(&h, "ha")["error"].is_null(),
        "the refusals cleared",
    );
    assert_eq!(id(), before, "nothing of hb was remade");
}

fn tenants_of(json: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|i| i["tenant"].as_str().unwrap().to_string())
        .collect()
}

/// The fleet as an object: labels in instance files, one selector syntax taken by ls,
/// suspend/resume, restart, backup, upgrade (dry run) and export, on the real engine.
#[test]
fn one_selector_takes_the_same_tenants_in_every_command() {
    let Some(_g) = docker_test() else { return };
    let mut h = Harness::new(77);
    demo_file(&h, "sa", "labels: {tier: gold}\n");
    demo_file(&h, "sb", "labels: {tier: gold, legacy: \"\"}\n");
    demo_file(&h, "sc", "labels: {tier: basic}\n");
    h.start();
    h.wait_running(&["sa", "sb", "sc"]);
    let ls = |args: &[&str]| {
        let mut a = vec!["ls", "-o", "json"];
        a.extend_from_slice(args);
        tenants_of(&h.cli_ok(&a))
    };
    assert_eq!(ls(&["-l", "tier=gold"]), ["sa", "sb"]);
    assert_eq!(ls(&["-l", "tier=gold,!legacy"]), ["sa"]);
    assert_eq!(
        ls(&["--app", "demo", "--phase", "running"]),
        ["sa", "sb", "sc"]
    );
    assert!(ls(&["--version", "2"]).is_empty());
    let table = h.cli_ok(&["ls", "-l", "legacy"]);
    assert!(table.contains("sb") && !table.contains("sa"), "{table}");

    // Suspend and resume by label; the others are not touched.
    h.cli_ok(&["suspend", "-l", "tier=gold"]);
    wait_for(
        Duration::from_secs(60),
        || ls(&["--phase", "suspended"]) == ["sa", "sb"],
        "sa and sb suspended",
    );
    assert_eq!(ls(&["--phase", "running"]), ["sc"]);
    h.cli_ok(&["resume", "-l", "tier=gold"]);
    h.wait_running(&["sa", "sb"]);

    // Restart by label: sc's containers start again, sa's do not.
    let started = |t: &str| {
        docker_ok(&[
            "inspect",
            "-f",
            "{{.State.StartedAt}}",
            &h.container(t, "app"),
        ])
    };
    let (sa0, sc0) = (started("sa"), started("sc"));
    h.cli_ok(&["restart", "-l", "tier=basic"]);
    assert_ne!(started("sc"), sc0, "sc restarted");
    assert_eq!(started("sa"), sa0, "sa left alone");

    // Back up everyone without the legacy label.
    h.cli_ok(&["backup", "-l", "!legacy"]);
    let count = |t: &str| {
        let v: serde_json::Value =
            serde_json::from_str(&h.cli_ok(&["backup", t, "--list", "-o", "json"])).unwrap();
        v["backups"].as_array().map_or(0, Vec::len)
    };
    assert_eq!((count("sa"), count("sb"), count("sc")), (1, 0, 1));

    // An upgrade takes the selection too (a dry run: its plan).
    let plan = h.cli_ok(&[
        "upgrade",
        "demo",
        "--to",
        "2",
        "-l",
        "tier=gold",
        "--dry-run",
        "-o",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&plan).unwrap();
    let keys: Vec<&String> = v["tenants"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["sa", "sb"], "{v}");

    // Export, offline from the files.
    let out = h.cli_ok(&["export", "kubernetes", "-l", "tier=basic"]);
    assert!(out.contains("name: bt77-sc\n"), "{out}");
    assert!(
        !out.contains("name: bt77-sa\n") && !out.contains("name: bt77-sb\n"),
        "{out}"
    );

    // Refused: both a name and a selection, a malformed selector, a selection of nobody.
    for (args, says) in [
        (vec!["suspend", "sa", "-l", "tier=gold"], "not both"),
        (vec!["suspend", "-l", "tier=gold,"], "--selector: "),
        (vec!["suspend"], "name a tenant, or select"),
        (vec!["restart", "-l", "tier=platinum"], "no tenant matches"),
    ] {
        let o = h.cli(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(says), "{args:?}: {err}");
    }
    assert_eq!(ls(&["--phase", "running"]), ["sa", "sb", "sc"]);
}
