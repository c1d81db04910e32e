//! Scheduled jobs on a real engine: a template's jobs run inside the tenant's container on
//! schedule, a slow one never overlaps itself, and the history survives an agent restart.

mod common;

use common::{Harness, docker_test, sample};
use std::time::Duration;

fn jobs(h: &Harness) -> serde_json::Value {
    serde_json::from_str(&h.cli_ok(&["jobs", "j1", "-o", "json"])).unwrap()
}

#[test]
fn jobs_run_on_schedule_and_a_slow_one_never_overlaps_itself() {
    let Some(_g) = docker_test() else { return };
    let mut h = Harness::new(65);
    // The demo template plus three jobs, every two seconds (six-field cron, seconds first).
    h.own_demo_template(|t| {
        t + "\njobs:\n  tick:\n    schedule: \"*/2 * * * * *\"\n    service: app\n    command: [\"/bin/busybox\", \"date\", \"+tick-%s\"]\n  \
         slow:\n    schedule: \"*/2 * * * * *\"\n    service: app\n    command: \"sleep 5; echo slow-done\"\n  \
         hang:\n    schedule: \"*/2 * * * * *\"\n    service: app\n    timeout: 3s\n    command: \"echo hung; sleep 1000 & sleep 1001; echo never\"\n"
    });
    common::write_instance(&h, "j1", "template: demo\nversion: \"1\"\nplan: small\n");
    h.start();
    h.wait_running(&["j1"]);
    std::thread::sleep(Duration::from_secs(14));

    let j = jobs(&h);
    let tick = j["tick"]["runs"].as_array().unwrap();
    assert!(tick.len() >= 4, "tick ran every 2 s: {}", j["tick"]);
    assert!(tick.iter().all(|r| r["exit_code"] == 0), "{}", j["tick"]);
    assert!(
        tick.last().unwrap()["output_tail"]
            .as_str()
            .unwrap()
            .contains("tick-")
    );
    assert!(j["tick"]["last_success"].is_u64());

    let slow = j["slow"]["runs"].as_array().unwrap();
    assert!(slow.len() >= 2, "{}", j["slow"]);
    for w in slow.windows(2) {
        let end = w[0]["started_ms"].as_u64().unwrap() + w[0]["duration_ms"].as_u64().unwrap();
        assert!(
            w[1]["started_ms"].as_u64().unwrap() >= end,
            "overlap: {w:?}"
        );
    }
    assert!(
        slow.iter()
            .all(|r| r["duration_ms"].as_u64().unwrap() >= 5000)
    );
    assert!(
        j["slow"]["skipped_overlap"].as_u64().unwrap() >= 2,
        "{}",
        j["slow"]
    );
    // A hung job is killed at its timeout, with what it started, and the next run goes ahead.
    let hang = j["hang"]["runs"].as_array().unwrap();
    assert!(
        hang.len() >= 2,
        "a hung run blocked the later ones: {}",
        j["hang"]
    );
    for r in hang {
        assert_eq!(r["timed_out"], true, "{r}");
        let ms = r["duration_ms"].as_u64().unwrap();
        assert!((3000..8000).contains(&ms), "{r}");
        assert!(r["output_tail"].as_str().unwrap().contains("hung"), "{r}");
    }
    let top = common::docker_ok(&["top", &h.container("j1", "app")]);
    // One run at a time: more than one of its sleeps alive means a killed run left it behind.
    let alive = |cmd: &str| top.lines().filter(|l| l.trim_end().ends_with(cmd)).count();
    assert!(
        alive(" sleep 1000") <= 1 && alive(" sleep 1001") <= 1,
        "timed-out runs left processes behind:\n{top}"
    );
    assert!(h.cli_ok(&["jobs", "j1"]).contains("timed out"));
    // The same in /metrics: tick's last success (it may have run again since), slow's skips.
    let m = h.metrics();
    let at = |series: &str| sample(&m, series).unwrap_or_else(|| panic!("{series} in:\n{m}"));
    let last = at(r#"berth_job_last_success_timestamp_seconds{tenant="j1",job="tick"}"#);
    let api_last = j["tick"]["last_success"].as_u64().unwrap() as f64;
    assert!(
        last >= api_last && last <= api_last + 10.0,
        "{last} vs {api_last}"
    );
    assert_eq!(
        at(r#"berth_job_last_exit_code{tenant="j1",job="tick"}"#),
        0.0
    );
    assert!(at(r#"berth_job_skipped_overlaps_total{tenant="j1",job="slow"}"#) >= 2.0);
    let table = h.cli_ok(&["jobs", "j1"]);
    assert!(
        table.contains("tick") && table.contains("*/2 * * * * *"),
        "{table}"
    );

    // History is on disk: a restarted agent still shows it.
    h.kill9();
    h.start();
    let again = jobs(&h);
    assert!(again["tick"]["runs"].as_array().unwrap().len() >= tick.len());
    h.kill9();
}
