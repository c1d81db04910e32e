//! Fleet upgrades on a real engine behind the real proxy: blue-green waves under continuous
//! load with no failed request, a broken release halted at its canary and rolled back, and a
//! backup restored byte for byte.

mod common;

use common::{Harness, docker_test, sample};
use std::{
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

fn instance(h: &Harness, tenant: &str, version: &str) {
    common::write_instance(
        h,
        tenant,
        &format!(
            "template: demo\nversion: \"{version}\"\nplan: small\nparameters:\n  site_title: {tenant}\n"
        ),
    );
}

/// GETs every tenant's home page over HTTPS, one curl per round (connections reused per host),
/// and tallies anything but a 200 until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    failures: Arc<Mutex<Vec<String>>>,
    rounds: Arc<Mutex<u64>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(h: &Harness, https: u16, tenants: &[&str]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let rounds = Arc::new(Mutex::new(0));
        let mut args: Vec<String> = vec!["-sS".into(), "--cacert".into()];
        args.push(h.path("ca.pem").display().to_string());
        for t in tenants {
            args.push("--resolve".into());
            args.push(format!("{t}.apps.test:{https}:127.0.0.1"));
        }
        for t in tenants {
            args.extend([
                "-o".into(),
                "/dev/null".into(),
                "-w".into(),
                format!("{t} %{{http_code}}\\n"),
            ]);
            args.push(format!("https://{t}.apps.test:{https}/"));
        }
        let thread = {
            let (stop, failures, rounds) = (stop.clone(), failures.clone(), rounds.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let out = Command::new("curl").args(&args).output().unwrap();
                    let text = String::from_utf8_lossy(&out.stdout).to_string();
                    let mut f = failures.lock().unwrap();
                    let at = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs_f64();
                    for line in text.lines().filter(|l| !l.ends_with(" 200")) {
                        f.push(format!("{line} at {at:.1}"));
                    }
                    if !out.status.success() {
                        f.push(format!(
                            "curl: {}",
                            String::from_utf8_lossy(&out.stderr).trim()
                        ));
                    }
                    *rounds.lock().unwrap() += 1;
                }
            })
        };
        Load {
            stop,
            failures,
            rounds,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        let rounds = *self.rounds.lock().unwrap();
        (rounds, self.failures.lock().unwrap().clone())
    }
}

fn page(h: &Harness, https: u16, tenant: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(h.path("ca.pem"))
        .args([
            "--resolve",
            &format!("{tenant}.apps.test:{https}:127.0.0.1"),
        ])
        .arg(format!("https://{tenant}.apps.test:{https}/"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn upgrade_status(h: &Harness) -> serde_json::Value {
    serde_json::from_str(&h.cli_ok(&["upgrade", "status", "-o", "json"])).unwrap()
}

#[test]
fn a_fleet_moves_blue_green_without_a_failed_request_and_a_broken_release_stops_at_its_canary() {
    let Some(_g) = docker_test() else { return };
    let mut h = Harness::new(61);
    let (_, https) = h.with_proxy(61);
    let names: Vec<String> = (1..=20).map(|i| format!("u{i}")).collect();
    let tenants: Vec<&str> = names.iter().map(String::as_str).collect();
    // Twenty tenants need more than the harness's sixteen /28s: a /23 of its own holds 32.
    let cfg = std::fs::read_to_string(h.path("berth.yaml")).unwrap();
    let pool = "subnet_pool: 10.250.61.0/24";
    assert!(cfg.contains(pool), "{cfg}");
    std::fs::write(
        h.path("berth.yaml"),
        cfg.replace(pool, "subnet_pool: 10.237.0.0/23"),
    )
    .unwrap();
    for &t in &tenants {
        instance(&h, t, "1");
    }
    h.start_with(|c| {
        c.env("BERTH_LOG", "info,berth::proxy::forward=debug");
    });
    // Twenty PostgreSQL initdb runs at once on two cores take a while.
    h.wait_running_within(&tenants, Duration::from_secs(400));
    std::fs::write(h.path("ca.pem"), h.cli_ok(&["ca"])).unwrap();
    for &t in &tenants {
        assert!(page(&h, https, t).contains("version=1"), "{t} starts on v1");
    }

    let load = Load::start(&h, https, &tenants);
    // Prometheus sees the upgrade while it runs: a scrape every 200 ms meanwhile.
    let scraping = Arc::new(AtomicBool::new(true));
    let scraper = {
        let (scraping, h_port) = (scraping.clone(), h.metrics_port);
        std::thread::spawn(move || {
            let mut seen = vec![];
            while scraping.load(Ordering::Relaxed) {
                if let Some((200, m)) = common::http_get(h_port, "/metrics") {
                    seen.push(m);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            seen
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    let up = h.cli(&[
        "upgrade", "demo", "--to", "2", "--canary", "1", "--batch", "25%", "--wait",
    ]);
    scraping.store(false, Ordering::Relaxed);
    let scrapes = scraper.join().unwrap();
    let running = |m: &String| sample(m, r#"berth_upgrade_running{app="demo",to="2"}"#);
    assert!(
        scrapes.iter().any(|m| running(m) == Some(1.0)
            && sample(
                m,
                r#"berth_upgrade_tenants{app="demo",to="2",phase="done"}"#
            )
            .unwrap_or(0.0)
                < 20.0),
        "no scrape saw the upgrade running ({} scrapes)",
        scrapes.len()
    );
    let shown = String::from_utf8_lossy(&up.stdout).to_string();
    assert!(
        up.status.success(),
        "upgrade to 2: {shown}{}",
        String::from_utf8_lossy(&up.stderr)
    );
    std::thread::sleep(Duration::from_secs(1));
    let (rounds, failures) = load.finish();
    eprintln!(
        "{shown}\nload: {rounds} rounds of {} requests",
        tenants.len()
    );
    assert!(rounds > 20, "the load kept going: {rounds}");
    assert!(
        failures.is_empty(),
        "failed requests during the upgrade: {failures:?}"
    );

    let s = upgrade_status(&h);
    assert_eq!(s["status"], "done");
    assert_eq!(
        s["waves"].as_array().unwrap().len(),
        5,
        "canary, then four waves of 5 (25%)"
    );
    for &t in &tenants {
        assert_eq!(s["tenants"][t]["phase"], "done", "{t}");
        assert!(
            s["tenants"][t]["backup"].is_string(),
            "{t} was backed up first"
        );
        assert!(page(&h, https, t).contains("version=2"), "{t} serves v2");
        let file = std::fs::read_to_string(h.path(&format!("instances/{t}.yaml"))).unwrap();
        assert!(
            file.contains("version: '2'") || file.contains("version: \"2\""),
            "{file}"
        );
    }
    let containers = h.owned("container");
    assert!(
        !containers.iter().any(|n| n.ends_with("-next")),
        "{containers:?}"
    );
    assert_eq!(
        containers.len(),
        40,
        "two containers per tenant: {containers:?}"
    );
    let report = h.reconcile();
    assert_eq!(
        report["steps"], 0,
        "the reconciler agrees with what the upgrade built"
    );
    let m = h.metrics();
    for (series, want) in [
        (r#"berth_upgrade_running{app="demo",to="2"}"#, 0.0),
        (r#"berth_upgrade_waves{app="demo",to="2"}"#, 5.0),
        (r#"berth_upgrade_wave{app="demo",to="2"}"#, 5.0),
        (
            r#"berth_upgrade_tenants{app="demo",to="2",phase="done"}"#,
            20.0,
        ),
    ] {
        assert_eq!(sample(&m, series), Some(want), "{series} in:\n{m}");
    }

    // v3's health path fails: the canary is rolled back and the fleet halts.
    let load = Load::start(&h, https, &tenants);
    let up = h.cli(&[
        "upgrade",
        "demo",
        "--to",
        "3",
        "--batch",
        "3",
        "--health-timeout",
        "8",
        "--wait",
    ]);
    let (_, failures) = load.finish();
    assert!(!up.status.success(), "a halted upgrade exits non-zero");
    assert!(
        failures.is_empty(),
        "failed requests while the canary failed: {failures:?}"
    );
    let s = upgrade_status(&h);
    assert_eq!(s["status"], "halted", "{s}");
    assert_eq!(s["tenants"]["u1"]["phase"], "rolled_back", "{s}");
    for &t in &tenants[1..] {
        assert_eq!(s["tenants"][t]["phase"], "pending", "{t} untouched");
    }
    let m = h.metrics();
    for (series, want) in [
        (r#"berth_upgrade_running{app="demo",to="3"}"#, 0.0),
        (
            r#"berth_upgrade_tenants{app="demo",to="3",phase="rolled_back"}"#,
            1.0,
        ),
        (
            r#"berth_upgrade_tenants{app="demo",to="3",phase="pending"}"#,
            19.0,
        ),
    ] {
        assert_eq!(sample(&m, series), Some(want), "{series} in:\n{m}");
    }
    for &t in &tenants {
        assert!(
            page(&h, https, t).contains("version=2"),
            "{t} still serves v2"
        );
    }
    h.reconcile();
    assert_eq!(h.reconcile()["steps"], 0);
    assert_eq!(h.owned("container").len(), 40);

    // recreate with a migration, under load: requests wait at the proxy, none fails.
    let load = Load::start(&h, https, &tenants);
    let up = h.cli(&["upgrade", "demo", "--to", "4", "--tenants", "u3", "--wait"]);
    let (_, failures) = load.finish();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stdout)
    );
    assert!(
        failures.is_empty(),
        "failed requests during recreate: {failures:?}"
    );
    let migrated = h.psql(
        "u3",
        "select count(*) from information_schema.tables where table_name = 'migrated_v4'",
    );
    assert_eq!(migrated, "1", "the migration ran");
    assert_eq!(h.reconcile()["steps"], 0);

    // One tenant back to its previous version on request.
    let rb = h.cli(&["rollback", "u2", "--wait"]);
    assert!(
        rb.status.success(),
        "{}",
        String::from_utf8_lossy(&rb.stdout)
    );
    assert!(page(&h, https, "u2").contains("version=1"));
    h.kill9();
}

#[test]
fn a_backup_restores_byte_for_byte_clones_into_a_new_tenant_verifies_and_runs_on_schedule() {
    let Some(_g) = docker_test() else { return };
    let mut h = Harness::new(62);
    instance(&h, "b1", "1");
    h.start();
    h.wait_running(&["b1"]);
    let psql_b1 = |sql: &str| h.psql("b1", sql);
    psql_b1(
        "create table notes(id int primary key, body text); insert into notes select g, md5(g::text) from generate_series(1, 500) g;",
    );
    let before = psql_b1("select string_agg(body, ',' order by id) from notes");
    let made = h.cli_ok(&["backup", "b1"]);
    let id = made.split_whitespace().nth(2).unwrap().to_string();
    psql_b1("delete from notes where id > 10; update notes set body = 'gone';");
    assert_ne!(
        psql_b1("select string_agg(body, ',' order by id) from notes"),
        before
    );
    h.cli_ok(&["restore", "b1", "--from", &id]);
    assert_eq!(
        psql_b1("select string_agg(body, ',' order by id) from notes"),
        before
    );
    let listed = h.cli_ok(&["backup", "b1", "--list"]);
    assert!(listed.contains(&id), "{listed}");
    let archive = h.path(&format!("state/backups/b1/{id}.tar"));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&archive).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "backups hold secrets");

    // A clone: a new tenant with the same data and its own secrets.
    let cloned = h.cli_ok(&["restore", "b2", "--from", &format!("b1:{id}")]);
    assert!(cloned.contains("created from backup"), "{cloned}");
    assert_eq!(
        h.psql("b2", "select string_agg(body, ',' order by id) from notes"),
        before
    );
    let secret =
        |t: &str| std::fs::read(h.path(&format!("state/tenants/{t}/secrets/db_password"))).unwrap();
    assert_ne!(secret("b1"), secret("b2"), "a clone gets its own secrets");
    let clash = h.cli(&["restore", "b2", "--from", &format!("b1:{id}")]);
    assert!(
        !clash.status.success(),
        "cloning over an existing tenant is refused"
    );

    // Verify: brought up in a scratch tenant, healthy, removed again.
    let verified = h.cli_ok(&["backup", "verify", &format!("b1:{id}")]);
    assert!(
        verified.contains("good")
            && verified.contains("removed")
            && verified.contains("database.sql"),
        "{verified}"
    );
    let ls = h.cli_ok(&["ls"]);
    assert!(!ls.contains("verify-"), "scratch tenant gone: {ls}");

    // The plan's schedule (here an instance override: every two seconds, keep two).
    common::write_instance(
        &h,
        "b2",
        "template: demo\nversion: \"1\"\nplan: small\nlimits:\n  backups:\n    keep: 2\n    schedule: \"*/2 * * * * *\"\nparameters:\n  site_title: b2\n",
    );
    let list = || -> serde_json::Value {
        serde_json::from_str(&h.cli_ok(&["backup", "b2", "--list", "-o", "json"])).unwrap()
    };
    let ids = |v: &serde_json::Value| -> Vec<String> {
        v["backups"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| b["id"].as_str().unwrap().to_string())
            .collect()
    };
    let mut first = vec![];
    common::wait_for(
        Duration::from_secs(60),
        || {
            first = ids(&list());
            first.len() == 2
        },
        "two scheduled backups",
    );
    common::wait_for(
        Duration::from_secs(60),
        || {
            let v = list();
            let last = v["last_scheduled"]["id"].as_str().unwrap_or("").to_string();
            !first.contains(&last) && !last.is_empty()
        },
        "a third scheduled backup",
    );
    let now = ids(&list());
    assert_eq!(now.len(), 2, "keep: 2 → {now:?}");
    assert!(
        !now.contains(&first[1]),
        "the oldest was pruned: {first:?} → {now:?}"
    );
    h.kill9();
}

#[test]
fn after_kill_9_mid_wave_every_tenant_ends_on_one_version_serving() {
    let Some(_g) = docker_test() else { return };
    let mut h = Harness::new(63);
    let (_, https) = h.with_proxy(63);
    let tenants = ["k1", "k2", "k3", "k4"];
    for t in tenants {
        instance(&h, t, "1");
    }
    h.start();
    h.wait_running(&tenants);
    std::fs::write(h.path("ca.pem"), h.cli_ok(&["ca"])).unwrap();
    h.cli_ok(&[
        "upgrade", "demo", "--to", "2", "--canary", "0", "--batch", "2",
    ]);
    // Kill the agent while tenants are between steps (new container up, switch pending …).
    common::wait_for(
        Duration::from_secs(60),
        || {
            let s = upgrade_status(&h);
            tenants.iter().any(|t| {
                matches!(
                    s["tenants"][t]["phase"].as_str(),
                    Some("starting" | "switching" | "switched")
                )
            })
        },
        "a tenant mid-step",
    );
    let mid = upgrade_status(&h);
    h.kill9();
    eprintln!("killed at: {}", mid["tenants"]);

    h.start();
    common::wait_for(
        Duration::from_secs(180),
        || upgrade_status(&h)["status"] != "running",
        "the resumed upgrade to finish",
    );
    let s = upgrade_status(&h);
    assert_eq!(s["status"], "done", "{s}");
    for t in tenants {
        assert_eq!(s["tenants"][t]["phase"], "done", "{t}: {s}");
        let file = std::fs::read_to_string(h.path(&format!("instances/{t}.yaml"))).unwrap();
        assert!(
            file.contains("'2'") || file.contains("\"2\""),
            "{t}: {file}"
        );
        assert!(page(&h, https, t).contains("version=2"), "{t} serves v2");
    }
    assert!(!h.owned("container").iter().any(|n| n.ends_with("-next")));
    assert_eq!(h.owned("container").len(), 8);
    h.reconcile();
    assert_eq!(
        h.reconcile()["steps"],
        0,
        "files, allocations and containers agree"
    );
    h.kill9();
}

/// Starts an agent that aborts before its (k+1)-th mutating engine call, asks it for an
/// upgrade of `tenant` to `to`, and waits for it to die. False if it finished without crashing.
fn upgrade_with_crash_after(h: &mut Harness, k: u64, tenant: &str, to: &str) -> bool {
    let mut child = h.spawn_agent(|c| {
        c.env("BERTH_FAULT_CRASH_AFTER", k.to_string());
    });
    common::wait_for(
        Duration::from_secs(20),
        || h.cli(&["ls"]).status.success(),
        "crashing agent API",
    );
    let _ = h.cli(&[
        "upgrade",
        "demo",
        "--to",
        to,
        "--tenants",
        tenant,
        "--canary",
        "0",
    ]);
    for _ in 0..600 {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        let out = h.cli(&["upgrade", "status", "-o", "json"]);
        let status: Option<serde_json::Value> = out
            .status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten();
        if status.is_some_and(|s| s["status"] != "running") {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("agent neither crashed nor finished");
}

#[test]
fn a_crash_before_any_engine_call_of_an_upgrade_leaves_the_tenant_on_one_version() {
    let Some(_g) = docker_test() else { return };
    let mut h = Harness::new(64);
    let (_, https) = h.with_proxy(64);
    instance(&h, "c1", "1");
    h.start();
    h.wait_running(&["c1"]);
    std::fs::write(h.path("ca.pem"), h.cli_ok(&["ca"])).unwrap();
    h.kill9();
    // Blue-green v1 → v2 makes seven engine calls (the dump, remove/create/start of the
    // candidate, stop/remove of the old container, the rename): crash before each in turn.
    for k in 0..8 {
        let crashed = upgrade_with_crash_after(&mut h, k, "c1", "2");
        h.start();
        common::wait_for(
            Duration::from_secs(120),
            || upgrade_status(&h)["status"] != "running",
            "the resumed upgrade to end",
        );
        let s = upgrade_status(&h);
        h.reconcile();
        assert_eq!(h.reconcile()["steps"], 0, "k={k}: converged: {s}");
        let file = std::fs::read_to_string(h.path("instances/c1.yaml")).unwrap();
        let on = if file.contains("'2'") { "2" } else { "1" };
        let shown = page(&h, https, "c1");
        assert!(
            shown.contains(&format!("version={on}")),
            "k={k}: file says {on}, page: {shown}"
        );
        assert!(
            !h.owned("container").iter().any(|n| n.ends_with("-next")),
            "k={k}"
        );
        eprintln!(
            "k={k}: crashed={crashed} status={} ends on {on}",
            s["status"]
        );
        if !crashed {
            break; // k passed the last engine call: every crash point is covered
        }
        if on == "2" {
            // Back to 1 (recreate) for the next crash point.
            h.cli_ok(&[
                "upgrade",
                "demo",
                "--to",
                "1",
                "--tenants",
                "c1",
                "--canary",
                "0",
                "--wait",
            ]);
            assert!(page(&h, https, "c1").contains("version=1"));
        }
        h.kill9();
    }
}

#[test]
fn pause_holds_the_next_wave_resume_goes_on_abort_leaves_the_rest_and_a_bad_ratio_is_refused() {
    let Some(_g) = docker_test() else { return };
    let mut h = Harness::new(66);
    let (_, https) = h.with_proxy(66);
    let tenants = ["p1", "p2", "p3"];
    for t in tenants {
        instance(&h, t, "1");
    }
    h.start();
    h.wait_running(&tenants);
    std::fs::write(h.path("ca.pem"), h.cli_ok(&["ca"])).unwrap();
    let on = |t: &str| {
        let file = std::fs::read_to_string(h.path(&format!("instances/{t}.yaml"))).unwrap();
        if file.contains("'2'") || file.contains("\"2\"") {
            "2"
        } else {
            "1"
        }
    };
    // A ratio that is no share is refused before anything starts.
    let bad = h.cli(&[
        "upgrade",
        "demo",
        "--to",
        "2",
        "--max-failure-ratio",
        "150%",
    ]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("at most 1"),
        "{bad:?}"
    );

    // Paused during the canary: the canary finishes, the next wave does not start.
    let up = [
        "upgrade", "demo", "--to", "2", "--canary", "1", "--batch", "1",
    ];
    h.cli_ok(&up);
    let started = |t: &str| upgrade_status(&h)["tenants"][t]["phase"] != "pending";
    common::wait_for(
        Duration::from_secs(60),
        || started("p1"),
        "the canary to start",
    );
    h.cli_ok(&["upgrade", "pause"]);
    common::wait_for(
        Duration::from_secs(120),
        || upgrade_status(&h)["tenants"]["p1"]["phase"] == "done",
        "the canary to finish",
    );
    std::thread::sleep(Duration::from_secs(3));
    let s = upgrade_status(&h);
    assert_eq!(s["status"], "paused", "{s}");
    assert_eq!(s["tenants"]["p2"]["phase"], "pending", "{s}");
    assert_eq!((on("p1"), on("p2"), on("p3")), ("2", "1", "1"));

    // Resumed: the next wave runs; paused again after it, then aborted: p3 stays on 1.
    h.cli_ok(&["upgrade", "resume"]);
    common::wait_for(
        Duration::from_secs(60),
        || started("p2"),
        "the next wave to start",
    );
    h.cli_ok(&["upgrade", "pause"]);
    common::wait_for(
        Duration::from_secs(120),
        || upgrade_status(&h)["tenants"]["p2"]["phase"] == "done",
        "the second wave to finish",
    );
    h.cli_ok(&["upgrade", "abort"]);
    common::wait_for(
        Duration::from_secs(60),
        || upgrade_status(&h)["status"] == "aborted",
        "the upgrade aborted",
    );
    std::thread::sleep(Duration::from_secs(2));
    let s = upgrade_status(&h);
    assert_eq!(s["tenants"]["p3"]["phase"], "pending", "{s}");
    assert_eq!((on("p1"), on("p2"), on("p3")), ("2", "2", "1"));
    for (t, v) in [("p1", "2"), ("p2", "2"), ("p3", "1")] {
        assert!(
            page(&h, https, t).contains(&format!("version={v}")),
            "{t} serves v{v}"
        );
    }
    h.kill9();
}
