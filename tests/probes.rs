//! Health probed by berth on a real engine: no Docker exec checks; a tenant whose app stops
//! answering is unhealthy within the configured window and healthy again after; a database
//! that stops answering, or that accepts TCP but does not speak its protocol, is unhealthy,
//! and the app waits for it.

mod common;

use common::{Harness, docker, docker_ok, docker_test, sample, wait_for};
use std::time::{Duration, Instant};

/// Probes fast enough for a test: a healthy target is looked at every 2 s, and two failures
/// 0.5 s apart (each waiting at most 1 s) make it unhealthy: at most ~5.2 s.
const PROBES: &str = "probes:\n  interval: 2s\n  fast_interval: 500ms\n  timeout: 1s\n  failures: 2\n  start_period: 3s\n";
const WINDOW: Duration = Duration::from_millis(5200);

fn harness(slot: u16) -> Harness {
    let h = Harness::new(slot);
    let mut cfg = std::fs::read_to_string(h.path("berth.yaml")).unwrap();
    cfg.push_str(PROBES);
    std::fs::write(h.path("berth.yaml"), cfg).unwrap();
    h
}

fn signal(container: &str, sig: &str) {
    let pid = docker_ok(&["inspect", "-f", "{{.State.Pid}}", container]);
    let ok = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid])
        .status()
        .unwrap();
    assert!(ok.success(), "kill -{sig} {pid}");
}

fn phase(h: &Harness, t: &str) -> String {
    h.status(t)["phase"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Stops `service`'s main process (the container keeps running: TCP is still accepted by the
/// kernel, nothing answers), and checks the tenant turns unhealthy in time, then recovers.
fn stall_and_recover(h: &Harness, t: &str, service: &str, check: &str) {
    let c = h.container(t, service);
    signal(&c, "STOP");
    let t0 = Instant::now();
    wait_for(WINDOW * 3, || phase(h, t) == "unhealthy", "unhealthy");
    let took = t0.elapsed();
    let st = h.status(t);
    let error = st["error"].as_str().unwrap_or_default().to_string();
    signal(&c, "CONT");
    assert!(
        took <= WINDOW + Duration::from_secs(2),
        "{service} unhealthy after {took:?}, window {WINDOW:?}"
    );
    assert!(
        error.starts_with(&format!("{service} {check} probe failing")),
        "{error}"
    );
    let m = h.metrics();
    let labels = format!("{{tenant=\"{t}\",service=\"{service}\",check=\"{check}\"}}");
    assert!(
        sample(&m, &format!("berth_probe_failures_total{labels}")).unwrap() >= 2.0,
        "{m}"
    );
    let t1 = Instant::now();
    wait_for(WINDOW * 3, || phase(h, t) == "running", "running again");
    println!(
        "{service}: unhealthy after {took:?}, healthy again after {:?}",
        t1.elapsed()
    );
    let m = h.metrics();
    assert_eq!(sample(&m, &format!("berth_probe_up{labels}")), Some(1.0));
}

#[test]
fn a_tenant_whose_app_or_database_stops_answering_is_unhealthy_within_the_window_and_back() {
    let Some(_g) = docker_test() else { return };
    let mut h = harness(95);
    common::write_instance(&h, "p1", "template: demo\n");
    h.start();
    h.wait_running(&["p1"]);
    // No Docker exec check runs: the image's and the template's are both off.
    for s in ["app", "db"] {
        let hc = docker_ok(&[
            "inspect",
            "-f",
            "{{json .Config.Healthcheck}}",
            &h.container("p1", s),
        ]);
        assert!(hc.contains("\"NONE\""), "{s}: {hc}");
    }
    let m = h.metrics();
    for (s, c) in [("app", "http"), ("db", "postgres")] {
        let up = format!("berth_probe_up{{tenant=\"p1\",service=\"{s}\",check=\"{c}\"}}");
        assert_eq!(sample(&m, &up), Some(1.0), "{m}");
    }
    stall_and_recover(&h, "p1", "app", "http");
    stall_and_recover(&h, "p1", "db", "postgres");
}

#[test]
fn a_database_that_accepts_tcp_but_not_its_protocol_is_unhealthy_and_the_app_waits() {
    let Some(_g) = docker_test() else { return };
    let mut h = harness(96);
    // The database service is an HTTP server on 5432: the port is open, PostgreSQL is not.
    h.own_demo_template(|t| {
        t.replace(
            "    image: berth/postgres:15\n",
            "    image: berth/demo:1\n    command: [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"5432\", \"-h\", \"/www\"]\n",
        )
    });
    common::write_instance(&h, "p2", "template: demo\n");
    h.start();
    let db_error = || {
        h.status("p2")["probes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["service"] == "db")
            .map(|p| (p["health"].clone(), p["last_error"].clone()))
    };
    wait_for(
        Duration::from_secs(60),
        || db_error().is_some_and(|(h, _)| h == "unhealthy"),
        "db probed unhealthy",
    );
    let (_, e) = db_error().unwrap();
    // busybox httpd waits for a request line that a PostgreSQL startup never sends.
    let e = e.as_str().unwrap();
    assert!(
        e.contains("no answer within 1s") || e.contains("not a PostgreSQL answer"),
        "{e}"
    );
    // Its port is open all along, yet the app is never created while the database fails.
    std::thread::sleep(Duration::from_secs(3));
    let app = docker(&["inspect", &h.container("p2", "app")]);
    assert!(
        !app.status.success(),
        "the app was created beside a database that never answered"
    );
    assert_eq!(phase(&h, "p2"), "provisioning");
}

/// The demo app on a MariaDB sidecar (the stand-in for the official image).
fn on_mariadb(t: String) -> String {
    let start = t.find("  db:\n    image: berth/postgres:15\n").unwrap();
    let end = t[start..].find("    resource_share: 2\n").unwrap() + start;
    let db = "  db:\n    image: berth/mariadb:10.11\n    environment:\n      MARIADB_DATABASE: \"{{ db.name }}\"\n      \
              MARIADB_USER: \"{{ db.user }}\"\n      MARIADB_PASSWORD_FILE: \"{{ db.password_file }}\"\n      \
              MARIADB_RANDOM_ROOT_PASSWORD: \"yes\"\n    secrets: [db_password]\n    files_owner: \"999:999\"\n    \
              volumes:\n      - pgdata:/var/lib/mysql\n    cap_add: [CHOWN, DAC_OVERRIDE, FOWNER, SETGID, SETUID]\n    \
              tmpfs:\n      - /tmp\n      - /run/mysqld:rw,nosuid,size=1m,uid=999,gid=999\n";
    let t = format!("{}{db}{}", &t[..start], &t[end..]);
    t.replace("  engine: postgres\n", "  engine: mariadb\n  port: 3306\n")
}

#[test]
fn the_mariadb_probe_logs_in_cleanly_and_sees_a_stalled_server() {
    let Some(_g) = docker_test() else { return };
    let mut h = harness(97);
    h.own_demo_template(on_mariadb);
    common::write_instance(&h, "p3", "template: demo\n");
    h.start();
    h.wait_running_within(&["p3"], Duration::from_secs(120));
    // Probes later the server has counted no aborted handshake and denied nothing (a probe
    // that only read the greeting would get the host blocked after 100), and none failed.
    let labels = "{tenant=\"p3\",service=\"db\",check=\"mariadb\"}";
    let count = |what: &str| sample(&h.metrics(), &format!("{what}{labels}")).unwrap_or(-1.0);
    let (probes, failures) = (
        count("berth_probe_total"),
        count("berth_probe_failures_total"),
    );
    std::thread::sleep(Duration::from_secs(7));
    assert!(count("berth_probe_total") >= probes + 2.0);
    assert_eq!(count("berth_probe_failures_total"), failures);
    let db = h.container("p3", "db");
    let out = docker(&["logs", &db]);
    let log = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(
        !log.contains("Access denied") && !log.contains("Aborted"),
        "{log}"
    );
    stall_and_recover(&h, "p3", "db", "mariadb");
}
