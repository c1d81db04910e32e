//! Quotas on a real engine, loopback only: one tenant's fork bomb, memory hog, disk filler and
//! request flood stay its own while its neighbour keeps answering; and the figures reach a
//! real Prometheus (Debian's package) and pass promtool.

mod common;

use common::{Harness, curl, docker, docker_ok, docker_test, http_get, sample, wait_for};
use std::{
    process::{Command, Stdio},
    time::Duration,
};

fn instance(h: &Harness, tenant: &str, limits: &str) {
    let yaml = format!(
        "tenant: {tenant}\ntemplate: demo\nversion: \"1\"\nplan: small\n{limits}parameters:\n  site_title: {tenant}\n  admin_email: ops@{tenant}.test\n  brand_color: \"#336699\"\n"
    );
    std::fs::write(h.path(&format!("instances/{tenant}.yaml")), yaml).unwrap();
}

fn exec(container: &str, script: &str) -> (bool, String) {
    let out = docker(&["exec", container, "sh", "-c", script]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn healthy(h: &Harness, tenant: &str) -> bool {
    http_get(h.web(tenant), "/cgi-bin/health").is_some_and(|(s, _)| s == 200)
}

#[test]
fn a_tenant_s_fork_bomb_memory_hog_disk_filler_and_flood_stay_its_own() {
    let Some(_g) = docker_test() else { return };
    let mut h = Harness::new(71);
    let (_, https) = h.with_proxy(71);
    instance(
        &h,
        "a",
        "limits: {disk: 200m, rate: 5, burst: 5, max_body: 4k}\n",
    );
    instance(&h, "b", "limits: {disk: 200m}\n");
    h.start();
    h.wait_running(&["a", "b"]);
    std::fs::write(h.path("ca.pem"), h.cli_ok(&["ca"])).unwrap();
    let (a_app, a_db, b_db) = (
        h.container("a", "app"),
        h.container("a", "db"),
        h.container("b", "db"),
    );

    // Fork bomb: the pids limit stops it inside a; b answers all along.
    let (_, out) = exec(
        &a_app,
        "i=0; while [ $i -lt 500 ]; do sleep 300 >/dev/null 2>&1 & i=$((i+1)); done 2>&1 | tail -1; echo spawned",
    );
    assert!(
        out.contains("fork") || out.contains("Resource") || out.contains("can't"),
        "the fork bomb was not stopped: {out}"
    );
    assert!(healthy(&h, "b"), "b stopped answering during a's fork bomb");
    let pids: u64 = docker(&["inspect", "-f", "{{.HostConfig.PidsLimit}}", &a_app])
        .stdout
        .iter()
        .map(|c| *c as char)
        .collect::<String>()
        .trim()
        .parse()
        .unwrap();
    wait_for(
        Duration::from_secs(30),
        || {
            let m = h.metrics();
            m.lines()
                .filter(|l| l.starts_with("berth_container_pids{") && l.contains(&a_app))
                .any(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) >= Some(50.0))
        },
        "the fork bomb's processes in a's pids metric",
    );
    let m = h.metrics();
    let seen = m
        .lines()
        .find(|l| l.starts_with("berth_container_pids{") && l.contains(&a_app))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap();
    assert!(
        seen <= pids as f64,
        "{seen} processes past the limit {pids}"
    );
    exec(&a_app, "kill -9 -1 2>/dev/null; true");

    // Memory hog: killed for passing a's limit, counted with a's name; b untouched.
    let (ok, out) = exec(&a_app, "dd if=/dev/zero of=/dev/null bs=400M count=1");
    assert!(!ok, "a 400 MiB buffer fit in a 256 MiB plan: {out}");
    wait_for(
        Duration::from_secs(20),
        || {
            sample(
                &h.metrics(),
                r#"berth_container_oom_kills_total{tenant="a""#,
            ) >= Some(1.0)
        },
        "a's OOM kill in the metrics",
    );
    assert!(
        sample(
            &h.metrics(),
            r#"berth_container_oom_kills_total{tenant="b""#
        )
        .is_none()
    );
    assert!(
        h.agent_log()
            .contains("killed for passing its memory limit")
    );
    assert!(healthy(&h, "b"), "b stopped answering after a's OOM kill");

    // Disk: a fills its own filesystem and gets ENOSPC; b still writes; the host is untouched.
    let (ok, out) = exec(
        &a_db,
        "dd if=/dev/zero of=/var/lib/postgresql/data/fill bs=1M count=400 2>&1",
    );
    assert!(
        !ok && out.contains("No space left"),
        "a wrote 400 MiB into a 200 MiB quota: {out}"
    );
    let (ok, out) = exec(
        &b_db,
        "dd if=/dev/zero of=/var/lib/postgresql/data/fill bs=1M count=20 2>&1 && rm /var/lib/postgresql/data/fill",
    );
    assert!(ok, "b could not write while a's disk was full: {out}");
    let m = h.metrics();
    let used = sample(&m, r#"berth_instance_disk_used_bytes{tenant="a""#).unwrap();
    let quota = sample(&m, r#"berth_instance_disk_quota_bytes{tenant="a""#).unwrap();
    assert!(used > 0.9 * quota, "a's disk used {used} of {quota}");
    let disk = &h.status("a")["disk"];
    assert_eq!(disk["state"], "enforced", "{disk}");
    assert_eq!(disk["quota"], 200u64 << 20, "{disk}");
    assert!(
        disk["usage"]["used"].as_f64().unwrap() > 0.9 * quota,
        "{disk}"
    );
    assert!(
        h.cli_ok(&["status", "a"])
            .contains("disk: 200.0 MiB quota, "),
        "status table shows the quota"
    );
    exec(&a_db, "rm -f /var/lib/postgresql/data/fill");
    assert!(healthy(&h, "b"));

    // Flood: a's rate (5/s, bursts of 5) answers 429 with Retry-After; b is served throughout.
    let flood: Vec<(String, String)> = (0..20)
        .map(|_| curl(&h, https, "https", "a.apps.test", "/", &["-D", "-"]))
        .collect();
    let refused: Vec<&String> = flood
        .iter()
        .filter(|(c, _)| c == "429")
        .map(|(_, text)| text)
        .collect();
    assert!(
        refused.len() >= 5,
        "a flooded 20 requests, {} refused",
        refused.len()
    );
    assert!(
        refused
            .iter()
            .all(|t| t.to_ascii_lowercase().contains("retry-after: 1")),
        "a 429 without Retry-After: {refused:?}"
    );
    for _ in 0..20 {
        assert_eq!(curl(&h, https, "https", "b.apps.test", "/", &[]).0, "200");
    }
    // The plan's body limit holds at the proxy too. Over HTTP/1.1: Debian's curl 7.88 can
    // report a send error after a complete early HTTP/2 response (the proxy answers 413 and
    // resets the stream with NO_ERROR before reading the body; curl/curl#22984).
    std::thread::sleep(Duration::from_secs(2));
    let big = "x".repeat(8192);
    let (code, out) = curl(
        &h,
        https,
        "https",
        "a.apps.test",
        "/",
        &["--http1.1", "-X", "POST", "--data", &big],
    );
    assert_eq!(code, "413", "{out}");
    let m = h.metrics();
    assert!(
        sample(
            &m,
            r#"berth_proxy_limited_requests_total{tenant="a",limit="rate"}"#
        ) >= Some(5.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            r#"berth_proxy_limited_requests_total{tenant="b",limit="rate"}"#
        ),
        Some(0.0)
    );
    assert!(sample(&m, r#"berth_proxy_requests_total{tenant="b",class="2xx"}"#) >= Some(20.0));

    // Purging a tenant unmounts and deletes its filesystem (a plain rm keeps data and disk).
    h.cli_ok(&["rm", "a", "--purge"]);
    wait_for(
        Duration::from_secs(60),
        || !h.path("state/disks/a.ext4").exists(),
        "a's disk image removed with a",
    );
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(h.path("state/disks/a").to_str().unwrap()));
    assert!(mounts.contains(h.path("state/disks/b").to_str().unwrap()));
}

/// The engine's own reading of a container: its stats API, one shot.
fn engine_stats(container: &str) -> serde_json::Value {
    let url = format!("http://engine/containers/{container}/stats?stream=false&one-shot=true");
    let o = Command::new("curl")
        .args(["-fsS", "--unix-socket", "/var/run/docker.sock", &url])
        .output()
        .unwrap();
    serde_json::from_slice(&o.stdout).expect("the engine's stats")
}

/// The kernel reading berth's sweep uses agrees with the engine's stats call it replaces.
fn kernel_and_engine_readings_agree(container: &str) {
    let id = docker_ok(&["inspect", "-f", "{{.Id}}", container]);
    let pid: u32 = docker_ok(&["inspect", "-f", "{{.State.Pid}}", container])
        .parse()
        .unwrap();
    let k = berth::runtime::cgroup::read(&id, pid)
        .expect("this host shows the container's cgroup and /proc to berth");
    let e = engine_stats(container);
    let mem = &e["memory_stats"];
    assert_eq!(Some(k.memory_limit), mem["limit"].as_u64(), "{e}");
    let cache = mem["stats"]["total_inactive_file"]
        .as_u64()
        .or(mem["stats"]["inactive_file"].as_u64())
        .unwrap_or(0);
    let engine_mem = mem["usage"].as_u64().unwrap() - cache;
    assert!(
        k.memory_bytes.abs_diff(engine_mem) < 16 << 20,
        "kernel {} vs engine {engine_mem}",
        k.memory_bytes
    );
    let engine_pids = e["pids_stats"]["current"].as_u64().unwrap();
    assert!(
        k.pids.abs_diff(engine_pids) <= 2,
        "{} vs {engine_pids}",
        k.pids
    );
    let engine_cpu = e["cpu_stats"]["cpu_usage"]["total_usage"].as_f64().unwrap() / 1e9;
    assert!(
        k.cpu_seconds <= engine_cpu && engine_cpu - k.cpu_seconds < 5.0,
        "{} vs {engine_cpu}",
        k.cpu_seconds
    );
    let engine_rx: u64 = e["networks"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n["rx_bytes"].as_u64().unwrap())
        .sum();
    assert!(
        k.rx_bytes > 0 && k.rx_bytes <= engine_rx,
        "{} vs {engine_rx}",
        k.rx_bytes
    );
}

#[test]
fn promtool_passes_the_real_scrape_and_prometheus_reads_a_tenant_s_memory() {
    let Some(_g) = docker_test() else { return };
    let mut h = Harness::new(72);
    instance(&h, "c", "");
    h.start();
    h.wait_running(&["c"]);
    kernel_and_engine_readings_agree(&format!("{}-c-db", h.ns));
    wait_for(
        Duration::from_secs(20),
        || {
            h.metrics()
                .contains(r#"berth_container_memory_bytes{tenant="c""#)
        },
        "c's memory in /metrics",
    );
    let text = h.metrics();
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is installed");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let web = 19472;
    std::fs::write(
        h.path("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: [{}]\n\
             scrape_configs:\n  - job_name: berth\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            common::alerts::RULES
                .map(|f| format!("'{}'", common::alerts::doc("docs/prometheus").join(f).display()))
                .join(", "),
            h.metrics_port
        ),
    )
    .unwrap();
    let mut prom = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            h.path("prometheus.yml").display()
        ))
        .arg(format!("--storage.tsdb.path={}", h.path("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let query = "/api/v1/query?query=berth_container_memory_bytes%7Btenant%3D%22c%22%7D";
    let mut answer = String::new();
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if let Some((200, body)) = http_get(web, query) {
            answer = body;
            let v: serde_json::Value = serde_json::from_str(&answer).unwrap_or_default();
            let got = v["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|x| x.parse::<f64>().ok());
            if got.is_some_and(|m| m > 0.0) {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let top = h.cli_ok(&["top", "--once"]);
    assert!(top.contains("demo:1") && top.contains("running"), "{top}");
    shipped_rules_evaluate_against_the_agent(&h, web);
    let _ = prom.kill();
    let _ = prom.wait();
    let v: serde_json::Value = serde_json::from_str(&answer).unwrap_or_default();
    let got = v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|x| x.parse::<f64>().ok());
    assert!(
        got.is_some_and(|m| m > 0.0),
        "Prometheus has no memory figure for c: {answer}"
    );
    assert_eq!(v["data"]["result"][0]["metric"]["app"], "demo");
}

/// The shipped rules, loaded by the real Prometheus scraping the agent: every rule evaluates
/// without error and nothing is pending while c runs; a hand edit that makes c's file invalid
/// puts BerthTenantFileInvalid pending for c (its `for:` is 5 minutes).
fn shipped_rules_evaluate_against_the_agent(h: &Harness, web: u16) {
    let rules = || -> Vec<serde_json::Value> {
        let Some((200, body)) = http_get(web, "/api/v1/rules") else {
            return vec![];
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let groups = v["data"]["groups"].as_array().cloned().unwrap_or_default();
        groups
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect()
    };
    wait_for(
        Duration::from_secs(30),
        || {
            let r = rules();
            r.len() >= 23 && r.iter().all(|r| r["health"] == "ok")
        },
        "every shipped rule evaluated without error",
    );
    let alerts = || {
        http_get(web, "/api/v1/alerts")
            .map(|x| x.1)
            .unwrap_or_default()
    };
    std::thread::sleep(Duration::from_secs(3));
    let now = alerts();
    assert!(!now.contains("\"tenant\":\"c\""), "c runs, yet: {now}");
    instance(h, "c", "limits:\n  memory: not-a-size\n");
    wait_for(
        Duration::from_secs(60),
        || {
            let a = alerts();
            a.contains("BerthTenantFileInvalid") && a.contains("\"tenant\":\"c\"")
        },
        "BerthTenantFileInvalid pending for c",
    );
}
