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

#[test]
fn an_idle_tenant_sleeps_and_its_first_https_request_wakes_it_once() {
    let Some(_g) = docker_test() else { return };
    let mut h = Harness::new(SLOT);
    let mut cfg = std::fs::read_to_string(h.path("berth.yaml")).unwrap();
    cfg = cfg.replace(
        "plans:\n",
        "plans:\n  napping: {memory: 256m, cpus: 0.5, pids: 200, sleep_after: 5s}\n",
    );
    cfg.push_str("probes:\n  fast_interval: 500ms\n");
    std::fs::write(h.path("berth.yaml"), cfg).unwrap();
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

    // The first request is held while the tenant wakes, then answered by the app.
    let t0 = Instant::now();
    let (code, body) = get(&h, https, "s1");
    let took = t0.elapsed();
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("tenant=s1"), "{body}");
    assert_eq!(phase(&h, "s1"), "running");
    println!("first request to a sleeping tenant answered in {took:?}");
    assert_eq!(wakes(&h), 1.0);

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
        2.0,
        "twenty concurrent first requests woke it once"
    );
    let log = h.agent_log();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("waking") && l.contains("s1"))
            .count(),
        2,
        "{log}"
    );

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
