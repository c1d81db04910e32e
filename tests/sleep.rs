//! Idle tenants sleep and wake on their first request, on the real engine through the real
//! proxy: a tenant falls asleep after its plan's window (containers stopped, phase asleep),
//! the first HTTPS request wakes it and gets 200, twenty concurrent first requests wake it
//! once, and a tenant that fails to wake gets the maintenance page and an error in status.

mod common;

use common::{Harness, curl, docker_ok, docker_test, sample, wait_for};
use std::time::{Duration, Instant};

const SLOT: u16 = 98;

fn phase(h: &Harness, t: &str) -> String {
    h.status(t)["phase"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn running(h: &Harness, t: &str, service: &str) -> bool {
    docker_ok(&[
        "inspect",
        "-f",
        "{{.State.Running}}",
        &h.container(t, service),
    ]) == "true"
}

fn wakes(h: &Harness) -> f64 {
    sample(&h.metrics(), "berth_wakes_total").unwrap_or(-1.0)
}

fn get(h: &Harness, https: u16, t: &str) -> (String, String) {
    let host = format!("{t}.apps.test");
    curl(h, https, "https", &host, "/", &["--max-time", "20"])
}

fn wait_asleep(h: &Harness, t: &str) {
    wait_for(
        Duration::from_secs(30),
        || phase(h, t) == "asleep",
        "asleep",
    );
    wait_for(
        Duration::from_secs(30),
        || !running(h, t, "app") && !running(h, t, "db"),
        "containers stopped",
    );
}

/// A plan `napping` whose tenants sleep after 5 idle seconds, and probes every 500 ms.
fn napping_plan(h: &Harness) {
    let mut cfg = std::fs::read_to_string(h.path("berth.yaml")).unwrap();
    cfg = cfg.replace(
        "plans:\n",
        "plans:\n  napping: {memory: 256m, cpus: 0.5, pids: 200, sleep_after: 5s}\n",
    );
    cfg.push_str("probes:\n  fast_interval: 500ms\n");
    std::fs::write(h.path("berth.yaml"), cfg).unwrap();
}

#[test]
fn an_idle_tenant_sleeps_and_its_first_https_request_wakes_it_once() {
    let Some(_g) = docker_test() else { return };
    let mut h = Harness::new(SLOT);
    napping_plan(&h);
    let (_, https) = h.with_proxy(SLOT);
    let mut cfg = std::fs::read_to_string(h.path("berth.yaml")).unwrap();
    cfg.push_str("  timeouts:\n    max_pause: 6s\n");
    std::fs::write(h.path("berth.yaml"), cfg).unwrap();
    common::write_instance(&h, "s1", "template: demo\nversion: \"1\"\nplan: napping\n");
    common::write_instance(&h, "s2", "template: demo\nversion: \"1\"\nplan: small\n");
    h.start();
    h.wait_running(&["s2"]);
    // s1 may already have run its 5 idle seconds and fallen asleep (only a running tenant
    // does) by the time a loaded host shows s2 running.
    wait_for(
        Duration::from_secs(120),
        || matches!(phase(&h, "s1").as_str(), "running" | "asleep"),
        "s1 running (or already asleep)",
    );
    std::fs::write(h.path("ca.pem"), h.cli_ok(&["ca"])).unwrap();
    assert_eq!(get(&h, https, "s1").0, "200");

    // Five idle seconds later s1 sleeps; s2's plan has no window and stays up.
    wait_asleep(&h, "s1");
    assert_eq!(phase(&h, "s2"), "running");
    assert!(running(&h, "s2", "app"));

    // The first request is held while the tenant wakes, then answered by the app. (The
    // request above woke s1 too if it had fallen asleep already: count from here.)
    let woken = |h: &Harness| {
        h.agent_log()
            .lines()
            .filter(|l| l.contains("waking") && l.contains("s1"))
            .count()
    };
    let (wakes_before, woken_before) = (wakes(&h), woken(&h));
    let t0 = Instant::now();
    let (code, body) = get(&h, https, "s1");
    let took = t0.elapsed();
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("tenant=s1"), "{body}");
    assert_eq!(phase(&h, "s1"), "running");
    println!("first request to a sleeping tenant answered in {took:?}");
    assert_eq!(wakes(&h), wakes_before + 1.0);

    // Twenty first requests at once: one wake, twenty answers.
    wait_asleep(&h, "s1");
    let codes: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..20)
            .map(|_| s.spawn(|| get(&h, https, "s1").0))
            .collect();
        hs.into_iter().map(|j| j.join().unwrap()).collect()
    });
    assert!(codes.iter().all(|c| c == "200"), "{codes:?}");
    assert_eq!(
        wakes(&h),
        wakes_before + 2.0,
        "twenty concurrent first requests woke it once"
    );
    assert_eq!(woken(&h), woken_before + 2, "{}", h.agent_log());

    // Asleep across an agent restart: still asleep, and still woken by a request.
    wait_asleep(&h, "s1");
    h.kill9();
    h.start();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(phase(&h, "s1"), "asleep");
    assert!(!running(&h, "s1", "app"));
    assert_eq!(get(&h, https, "s1").0, "200");

    // A release that never gets healthy, deployed while asleep: the held request gets the
    // maintenance page after max_pause, and status says why.
    wait_asleep(&h, "s1");
    common::write_instance(&h, "s1", "template: demo\nversion: \"3\"\nplan: napping\n");
    std::thread::sleep(Duration::from_secs(3));
    let t0 = Instant::now();
    let (code, body) = get(&h, https, "s1");
    assert_eq!(code, "503", "{body}");
    assert!(
        t0.elapsed() >= Duration::from_secs(5),
        "held for max_pause first"
    );
    wait_for(
        Duration::from_secs(10),
        || {
            h.status("s1")["error"]
                .as_str()
                .is_some_and(|e| e.contains("did not wake within"))
        },
        "the late wake in status",
    );
    assert_eq!(sample(&h.metrics(), "berth_late_wakes_total"), Some(1.0));
}

fn waking(log: &str, t: &str, why: &str) -> usize {
    count_both(
        log,
        &format!("waking tenant=\"{t}\""),
        &format!("why=\"{why}\""),
    )
}

fn count_both(log: &str, a: &str, b: &str) -> usize {
    log.lines()
        .filter(|l| l.contains(a) && l.contains(b))
        .count()
}

/// What berth does with a sleeping tenant's scheduled work, as README "Health and sleep"
/// documents: a job without `wake` is skipped, one with `wake: true` wakes it; a scheduled
/// backup wakes it once and is then skipped while nothing can have changed; a fleet upgrade
/// and a restore wake it, do their work, and it falls asleep again on the new version.
#[test]
fn a_sleeping_tenants_jobs_backups_upgrade_and_restore_behave_as_documented() {
    let Some(_g) = docker_test() else { return };
    let mut h = Harness::new(99);
    h.own_demo_template(|t| t);
    // A second template, the demo with two jobs: one skipped while asleep, one that wakes.
    let demo = std::fs::read_to_string(h.path("templates/demo/template.yaml")).unwrap();
    let dir = h.path("templates/jobby");
    std::fs::create_dir_all(&dir).unwrap();
    for f in std::fs::read_dir(h.path("templates/demo")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        dir.join("template.yaml"),
        demo.replace("name: demo\n", "name: jobby\n")
            + "\njobs:\n  tidy:\n    schedule: \"*/2 * * * * *\"\n    service: app\n    command: [\"/bin/busybox\", \"true\"]\n  \
             report:\n    schedule: \"*/15 * * * * *\"\n    service: app\n    wake: true\n    command: [\"/bin/busybox\", \"echo\", \"reported\"]\n",
    )
    .unwrap();
    napping_plan(&h);
    let (_, https) = h.with_proxy(99);
    common::write_instance(&h, "z1", "template: demo\nversion: \"1\"\nplan: napping\n");
    common::write_instance(&h, "z2", "template: jobby\nversion: \"1\"\nplan: napping\n");
    h.start();
    for t in ["z1", "z2"] {
        wait_for(
            Duration::from_secs(120),
            || matches!(phase(&h, t).as_str(), "running" | "asleep"),
            "running (or already asleep)",
        );
    }
    wait_asleep(&h, "z1");

    // z1, asleep and never backed up, gets a schedule: the first scheduled backup wakes it;
    // later ones find nothing can have changed since and leave it asleep.
    common::write_instance(
        &h,
        "z1",
        "template: demo\nversion: \"1\"\nplan: napping\nlimits:\n  backups:\n    keep: 5\n    schedule: \"*/3 * * * * *\"\n",
    );
    let backups = || -> usize {
        let v: serde_json::Value =
            serde_json::from_str(&h.cli_ok(&["backup", "z1", "--list", "-o", "json"])).unwrap();
        v["backups"].as_array().map_or(0, Vec::len)
    };
    let covered = |log: &str| count_both(log, "backed up since it fell asleep", "tenant=\"z1\"");
    wait_for(
        Duration::from_secs(60),
        || {
            let log = h.agent_log();
            waking(&log, "z1", "backup") >= 1 && covered(&log) >= 1
        },
        "a scheduled backup waking z1, then one skipped",
    );
    wait_asleep(&h, "z1");
    let (n, wakes, skips) = (
        backups(),
        waking(&h.agent_log(), "z1", "backup"),
        covered(&h.agent_log()),
    );
    std::thread::sleep(Duration::from_secs(10));
    let log = h.agent_log();
    assert!(covered(&log) >= skips + 2, "skipped every 3 s: {log}");
    assert_eq!(
        waking(&log, "z1", "backup"),
        wakes,
        "not woken again: {log}"
    );
    assert_eq!(backups(), n);
    assert_eq!(phase(&h, "z1"), "asleep");

    // z2: the 2 s job is skipped while asleep; the `wake: true` one (every 15 s) wakes it.
    let jobs = || -> serde_json::Value {
        serde_json::from_str(&h.cli_ok(&["jobs", "z2", "-o", "json"])).unwrap()
    };
    wait_for(
        Duration::from_secs(60),
        || {
            let j = jobs();
            j["tidy"]["skipped_asleep"].as_u64().unwrap_or(0) >= 2
                && waking(&h.agent_log(), "z2", "job") >= 1
                && j["report"]["runs"].as_array().is_some_and(|r| {
                    r.iter().any(|r| {
                        r["exit_code"] == 0
                            && r["output_tail"]
                                .as_str()
                                .is_some_and(|o| o.contains("reported"))
                    })
                })
        },
        "z2's tidy skipped, and report run after waking it",
    );

    // A fleet upgrade moves z1 awake, through the health gate, and it sleeps again on v2.
    // (Its backup schedule goes first: a scheduled backup's wake would race the upgrade's.)
    common::write_instance(&h, "z1", "template: demo\nversion: \"1\"\nplan: napping\n");
    std::thread::sleep(Duration::from_secs(2));
    wait_asleep(&h, "z1");
    let up = h.cli(&["upgrade", "demo", "--to", "2", "--tenants", "z1", "--wait"]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert_eq!(waking(&h.agent_log(), "z1", "upgrade"), 1);
    assert_eq!(h.status("z1")["version"], "2");
    wait_asleep(&h, "z1");
    let image = docker_ok(&[
        "inspect",
        "-f",
        "{{.Config.Image}}",
        &h.container("z1", "app"),
    ]);
    assert!(image.ends_with("berth/demo:2"), "{image}");
    std::fs::write(h.path("ca.pem"), h.cli_ok(&["ca"])).unwrap();
    let (code, body) = get(&h, https, "z1");
    assert_eq!(code, "200", "{body}");

    // A restore while asleep: woken, restored, and asleep again after its window.
    wait_asleep(&h, "z1");
    let listed: serde_json::Value =
        serde_json::from_str(&h.cli_ok(&["backup", "z1", "--list", "-o", "json"])).unwrap();
    let id = listed["backups"][0]["id"].as_str().unwrap().to_string();
    h.cli_ok(&["restore", "z1", "--from", &id]);
    assert_eq!(waking(&h.agent_log(), "z1", "restore"), 1);
    wait_asleep(&h, "z1");

    // Each automatic action is in the audit log, beside the operator's restore.
    let rows: serde_json::Value =
        serde_json::from_str(&h.cli_ok(&["audit", "--tenant", "z1", "-o", "json"])).unwrap();
    let has = |actor: &str, action: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r["actor"]["name"] == actor && r["action"] == action && r["result"] == "ok")
    };
    for (actor, action) in [
        ("sleeper", "tenant.sleep"),
        ("sleeper", "tenant.wake"),
        ("scheduler", "backup.scheduled"),
        ("upgrader", "upgrade.wave"),
        ("socket", "backup.restore"),
    ] {
        assert!(has(actor, action), "no {actor} {action} row: {rows}");
    }
}

/// A wake storm, contained: wakes run one at a time here (`max_wakes: 1`), a wake that would
/// take the awake tenants past the host's memory is refused at once with the maintenance page
/// (not after max_pause) and the reason in status, one client wakes at most three sleepers a
/// minute (then 429 and nothing woken), and an awake neighbour keeps answering throughout.
#[test]
fn a_wake_storm_is_queued_refused_past_host_memory_and_limited_per_client() {
    let Some(_g) = docker_test() else { return };
    let mut h = Harness::new(97);
    let mut cfg = std::fs::read_to_string(h.path("berth.yaml")).unwrap();
    cfg = cfg.replace(
        "plans:\n",
        "admission:\n  memory: 800m\nplans:\n  napping: {memory: 256m, cpus: 0.5, pids: 200, sleep_after: 15s, sleep_memory: 0.25}\n",
    );
    cfg.push_str("probes:\n  fast_interval: 500ms\n");
    std::fs::write(h.path("berth.yaml"), cfg).unwrap();
    let (_, https) = h.with_proxy(97);
    let mut cfg = std::fs::read_to_string(h.path("berth.yaml")).unwrap();
    cfg.push_str("  max_wakes: 1\n  client_wakes_per_minute: 3\n  timeouts:\n    max_pause: 20s\n");
    std::fs::write(h.path("berth.yaml"), cfg).unwrap();
    let sleepers = ["s1", "s2", "s3", "s4"];
    for t in sleepers {
        common::write_instance(&h, t, "template: demo\nversion: \"1\"\nplan: napping\n");
    }
    common::write_instance(&h, "n1", "template: demo\nversion: \"1\"\nplan: small\n");
    h.start();
    h.wait_running(&["n1"]);
    std::fs::write(h.path("ca.pem"), h.cli_ok(&["ca"])).unwrap();
    wait_for(
        Duration::from_secs(180),
        || sleepers.iter().all(|t| phase(&h, t) == "asleep"),
        "all four asleep",
    );
    for t in sleepers {
        wait_asleep(&h, t);
    }
    // Two wakes at once, one at a time: both answered. With n1 that is 768m of the 800m.
    let hr = &h;
    let codes: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = ["s1", "s2"]
            .map(|t| s.spawn(move || get(hr, https, t).0))
            .into_iter()
            .collect();
        hs.into_iter().map(|j| j.join().unwrap()).collect()
    });
    assert_eq!(codes, ["200", "200"]);
    let log = h.agent_log();
    let woke = |t: &str| count_both(&log, "waking", &format!("tenant={t}"));
    assert_eq!((woke("s1"), woke("s2")), (1, 1), "{log}");
    // A third would need 1,024m: refused at once, with why.
    let t0 = Instant::now();
    let (code, body) = get(&h, https, "s3");
    assert_eq!(code, "503", "{body}");
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "not held for max_pause"
    );
    let err = || {
        h.status("s3")["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    wait_for(
        Duration::from_secs(5),
        || err().contains("not woken"),
        "the reason in status",
    );
    assert!(
        err().contains("not woken") && err().contains("800m"),
        "{}",
        err()
    );
    assert_eq!(phase(&h, "s3"), "asleep");
    assert_eq!(sample(&h.metrics(), "berth_wakes_refused_total"), Some(1.0));
    // This client has used its three wakes this minute: the fourth sleeper is not woken.
    let (code, _) = get(&h, https, "s4");
    assert_eq!(code, "429");
    assert_eq!(phase(&h, "s4"), "asleep");
    assert!(sample(&h.metrics(), "berth_wakes_client_limited_total") >= Some(1.0));
    assert_eq!(sample(&h.metrics(), "berth_wakes_queued"), Some(0.0));
    // The neighbour never noticed.
    assert_eq!(get(&h, https, "n1").0, "200");
    h.kill9();
}
