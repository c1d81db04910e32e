use super::*;
use crate::{
    probe::{Check, FakeChecker},
    runtime::ObservedContainer,
};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

fn target(name: &str) -> Target {
    Target {
        container: name.into(),
        tenant: name.into(),
        service: "web".into(),
        check: Check::Http {
            addr: "127.0.0.1:1".parse().unwrap(),
            path: "/".into(),
            host: "x".into(),
        },
        fast: false,
    }
}

fn prober(checker: Arc<dyn Checker>) -> (Arc<Prober>, Arc<Notify>) {
    let kick = Arc::new(Notify::new());
    (
        Prober::new(ProbeConfig::default(), checker, kick.clone()),
        kick,
    )
}

fn health(p: &Prober, c: &str) -> Health {
    p.snapshot()
        .into_iter()
        .find(|s| s.container == c)
        .unwrap()
        .health
}

/// Advances past every due time and runs the probes then due.
async fn step(p: &Arc<Prober>, by: Duration) {
    tokio::time::advance(by).await;
    p.tick().await;
}

#[tokio::test(start_paused = true)]
async fn a_target_is_healthy_after_its_first_answer_and_unhealthy_after_three_failures_in_a_row() {
    let fake = Arc::new(FakeChecker::default());
    let (p, kick) = prober(fake.clone());
    p.sync(vec![target("a")], &Default::default());
    assert_eq!(health(&p, "a"), Health::Starting);
    p.tick().await;
    assert_eq!(health(&p, "a"), Health::Healthy);
    tokio::time::timeout(Duration::from_millis(1), kick.notified())
        .await
        .unwrap();
    fake.fail("a", true);
    step(&p, Duration::from_secs(34)).await;
    assert_eq!(
        health(&p, "a"),
        Health::Healthy,
        "one failure is only suspect"
    );
    for _ in 0..2 {
        step(&p, Duration::from_millis(1200)).await;
    }
    assert_eq!(health(&p, "a"), Health::Unhealthy);
    let s = &p.snapshot()[0];
    assert_eq!(
        (s.failures, s.last_error.as_deref()),
        (3, Some("injected probe failure"))
    );
    fake.fail("a", false);
    step(&p, Duration::from_secs(6)).await;
    assert_eq!(health(&p, "a"), Health::Healthy);
}

#[tokio::test(start_paused = true)]
async fn a_healthy_target_is_probed_at_the_slow_interval_not_every_tick() {
    let (p, _) = prober(Arc::new(FakeChecker::default()));
    p.sync(vec![target("a")], &Default::default());
    p.tick().await;
    for _ in 0..20 {
        step(&p, Duration::from_secs(1)).await;
    }
    assert_eq!(
        p.snapshot()[0].probes,
        1,
        "20 s into a 30 s (±10 %) interval"
    );
    step(&p, Duration::from_secs(14)).await;
    assert_eq!(p.snapshot()[0].probes, 2);
}

#[tokio::test(start_paused = true)]
async fn a_target_that_never_answers_stays_starting_until_its_start_period_ends() {
    let fake = Arc::new(FakeChecker::default());
    fake.fail("a", true);
    let (p, _) = prober(fake);
    p.sync(vec![target("a")], &Default::default());
    for _ in 0..10 {
        step(&p, Duration::from_millis(1100)).await;
    }
    assert_eq!(health(&p, "a"), Health::Starting);
    step(&p, Duration::from_secs(120)).await;
    assert_eq!(health(&p, "a"), Health::Unhealthy);
}

#[tokio::test(start_paused = true)]
async fn a_changed_check_or_a_restart_starts_over_and_dropped_targets_go() {
    let (p, _) = prober(Arc::new(FakeChecker::default()));
    p.sync(vec![target("a"), target("b")], &Default::default());
    p.tick().await;
    let mut moved = target("a");
    moved.check = Check::Http {
        addr: "127.0.0.1:2".parse().unwrap(),
        path: "/".into(),
        host: "x".into(),
    };
    p.sync(vec![moved], &Default::default());
    let snap = p.snapshot();
    assert_eq!(snap.len(), 1);
    assert_eq!(snap[0].health, Health::Starting);
    p.tick().await;
    p.reset("a");
    assert_eq!(health(&p, "a"), Health::Starting);
}

#[tokio::test]
async fn the_overlay_shows_the_worse_of_docker_and_probe_on_running_containers_only() {
    let (p, _) = prober(Arc::new(FakeChecker::default()));
    p.sync(
        vec![target("a"), target("b"), target("c")],
        &Default::default(),
    );
    p.tick().await;
    let c = |name: &str, status, health| ObservedContainer {
        name: name.into(),
        tenant: name.into(),
        service: "web".into(),
        spec_hash: String::new(),
        status,
        health,
        host_port: None,
        ip: None,
        node: None,
    };
    let mut inv = Inventory {
        containers: vec![
            c("a", RunStatus::Running, None),
            c("b", RunStatus::Running, Some(Health::Unhealthy)),
            c("c", RunStatus::Stopped, None),
            c("d", RunStatus::Running, None),
        ],
        ..Default::default()
    };
    p.overlay(&mut inv);
    let got: Vec<_> = inv.containers.iter().map(|c| c.health).collect();
    assert_eq!(
        got,
        [Some(Health::Healthy), Some(Health::Unhealthy), None, None]
    );
}

struct Slow {
    now: AtomicUsize,
    max: AtomicUsize,
}

#[async_trait::async_trait]
impl Checker for Slow {
    async fn check(&self, _: &Target) -> Result<(), crate::probe::ProbeError> {
        let n = self.now.fetch_add(1, SeqCst) + 1;
        self.max.fetch_max(n, SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.now.fetch_sub(1, SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn probes_in_flight_never_exceed_the_bound() {
    let slow = Arc::new(Slow {
        now: AtomicUsize::new(0),
        max: AtomicUsize::new(0),
    });
    let cfg = ProbeConfig {
        concurrency: 3,
        ..Default::default()
    };
    let p = Prober::new(cfg, slow.clone(), Arc::new(Notify::new()));
    p.sync(
        (0..20).map(|i| target(&format!("t{i}"))).collect(),
        &Default::default(),
    );
    p.tick().await;
    assert_eq!(slow.max.load(SeqCst), 3);
    assert!(p.snapshot().iter().all(|s| s.health == Health::Healthy));
}

#[tokio::test(start_paused = true)]
async fn a_tenant_being_woken_keeps_its_targets_through_a_pass_that_saw_it_stopped() {
    let fake = Arc::new(FakeChecker::default());
    let (p, _) = prober(fake.clone());
    p.sync(vec![target("a"), target("b")], &Default::default());
    assert_eq!(p.tenant_healthy("a"), Some(false), "starting");
    p.tick().await;
    assert_eq!(p.tenant_healthy("a"), Some(true));
    // The wake started "c" and gave its targets; a pass that observed it stopped skips it.
    p.sync_tenant("c", vec![target("c")]);
    let waking: BTreeSet<String> = ["c".to_string()].into();
    p.sync(vec![target("a")], &waking);
    assert_eq!(p.tenant_healthy("c"), Some(false), "kept, still starting");
    assert_eq!(p.tenant_healthy("b"), None, "b is gone");
    fake.fail("c", true);
    step(&p, Duration::from_secs(1)).await;
    assert!(
        p.tenant_error("c")
            .unwrap()
            .contains("web http probe failing")
    );
    fake.fail("c", false);
    step(&p, Duration::from_secs(1)).await;
    assert_eq!(p.tenant_healthy("c"), Some(true));
    p.sync_tenant("c", vec![]);
    assert_eq!(p.tenant_healthy("c"), None);
    assert_eq!(p.tenant_healthy("a"), Some(true), "other tenants untouched");
}

#[tokio::test(start_paused = true)]
async fn a_watched_tenants_change_of_health_kicks_no_pass_and_others_still_do() {
    let fake = Arc::new(FakeChecker::default());
    let (p, kick) = prober(fake.clone());
    p.sync(vec![target("a"), target("b")], &Default::default());
    // A wake's fast path waits on "a" by reading the table.
    p.watch("a", true);
    p.tick().await;
    assert_eq!(health(&p, "a"), Health::Healthy);
    assert_eq!(health(&p, "b"), Health::Healthy);
    // "b" became healthy too: one kick for it (a Notify keeps one permit).
    tokio::time::timeout(Duration::from_millis(1), kick.notified())
        .await
        .unwrap();
    // "a" alone changes now: no kick while watched, one once it is no longer.
    fake.fail("a", true);
    for _ in 0..4 {
        step(&p, Duration::from_secs(34)).await;
    }
    assert_eq!(health(&p, "a"), Health::Unhealthy);
    let quiet = tokio::time::timeout(Duration::from_millis(1), kick.notified()).await;
    assert!(quiet.is_err(), "a watched tenant's change kicked a pass");
    p.watch("a", false);
    fake.fail("a", false);
    for _ in 0..2 {
        step(&p, Duration::from_secs(34)).await;
    }
    assert_eq!(health(&p, "a"), Health::Healthy);
    tokio::time::timeout(Duration::from_millis(1), kick.notified())
        .await
        .unwrap();
}
