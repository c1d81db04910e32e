//! Controller tests on the fake runtime: whole passes over real spec files in a temp dir.

use super::*;
use crate::{
    fixtures,
    probe::FakeChecker,
    runtime::{Runtime, fake::FakeRuntime},
    services::Services,
};
use std::path::Path;

struct Env {
    dir: tempfile::TempDir,
    rt: Arc<FakeRuntime>,
    ctl: Arc<Controller>,
}

fn env() -> Env {
    env_probed_by(Arc::new(FakeChecker::default()))
}

fn env_probed_by(checker: Arc<FakeChecker>) -> Env {
    env_with(checker, |_| {})
}

/// A controller over a temp dir, its host config changed by `tweak` first.
fn env_with(checker: Arc<FakeChecker>, tweak: impl FnOnce(&mut crate::desired::HostConfig)) -> Env {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("instances")).unwrap();
    let mut host = fixtures::host();
    host.state_dir = dir.path().join("state");
    host.backup_dir = dir.path().join("state/backups");
    host.instances_dir = dir.path().join("instances");
    host.ports = (41000, 41999);
    tweak(&mut host);
    let rt = Arc::new(FakeRuntime::new());
    Env {
        dir,
        ctl: controller(rt.clone(), host, checker),
        rt,
    }
}

fn controller(
    rt: Arc<FakeRuntime>,
    host: crate::desired::HostConfig,
    checker: Arc<FakeChecker>,
) -> Arc<Controller> {
    let svc = Services::with_checker(rt, host, checker).unwrap();
    Arc::new(Controller::new(Arc::new(svc)))
}

/// Runs passes until one has nothing to do; returns how many passes it took.
async fn converge(ctl: &Controller) -> usize {
    for n in 1..=10 {
        ctl.services().probes().tick().await;
        if ctl.pass().await.unwrap().steps == 0 {
            return n;
        }
    }
    panic!("no convergence in 10 passes: {:?}", ctl.board().instances);
}

fn write_instance(dir: &Path, tenant: &str, extra: &str) {
    std::fs::write(
        dir.join("instances").join(format!("{tenant}.yaml")),
        format!("tenant: {tenant}\ntemplate: demo\n{extra}"),
    )
    .unwrap();
}

#[tokio::test]
async fn a_second_pass_over_a_converged_host_makes_no_mutating_call() {
    let e = env();
    write_instance(e.dir.path(), "acme", "");
    write_instance(e.dir.path(), "beta", "");
    let first = e.ctl.pass().await.unwrap();
    assert_eq!(first.failures, 0, "{:?}", e.ctl.board().instances);
    assert!(first.mutations > 0);
    // db first; the app once the db is observed healthy; then nothing.
    assert_eq!(converge(&e.ctl).await, 2);
    let idle = e.ctl.pass().await.unwrap();
    assert_eq!((idle.steps, idle.mutations), (0, 0));
    assert_eq!(e.ctl.board().instances["acme"].phase, Phase::Running);
}

#[tokio::test]
async fn a_failing_tenant_backs_off_without_blocking_the_others() {
    let e = env();
    write_instance(e.dir.path(), "acme", "");
    write_instance(e.dir.path(), "beta", "");
    e.rt.fail_on("create_container berth-acme-db");
    e.ctl.pass().await.unwrap();
    let board = e.ctl.board();
    assert_eq!(board.instances["acme"].phase, Phase::Failing);
    assert!(
        board.instances["acme"]
            .error
            .as_ref()
            .unwrap()
            .contains("injected failure")
    );
    assert_eq!(board.instances["beta"].phase, Phase::Provisioning);
    // Within the backoff window the failed tenant is not retried; the other one goes on.
    e.ctl.services().probes().tick().await;
    let again = e.ctl.pass().await.unwrap();
    assert_eq!(again.tenants_changed, 1);
    e.ctl.services().probes().tick().await;
    e.ctl.pass().await.unwrap();
    assert_eq!(e.ctl.board().instances["beta"].phase, Phase::Running);
    assert_eq!(e.ctl.board().instances["acme"].phase, Phase::Failing);
    tokio::time::sleep(backoff::FIRST_DELAY).await;
    converge(&e.ctl).await;
    assert_eq!(e.ctl.board().instances["acme"].phase, Phase::Running);
}

#[tokio::test]
async fn removing_an_instance_file_removes_its_containers_but_keeps_its_volumes() {
    let e = env();
    write_instance(e.dir.path(), "acme", "");
    converge(&e.ctl).await;
    std::fs::remove_file(e.dir.path().join("instances/acme.yaml")).unwrap();
    e.ctl.pass().await.unwrap();
    let inv = e.rt.inventory("berth").await.unwrap();
    assert!(inv.containers.is_empty());
    assert!(inv.networks.is_empty());
    assert_eq!(inv.volumes.len(), 1);
    assert!(
        e.ctl
            .services()
            .layout()
            .secret("acme", "db_password")
            .exists()
    );
}

#[tokio::test]
async fn a_broken_instance_file_leaves_the_running_tenant_untouched() {
    let e = env();
    write_instance(e.dir.path(), "acme", "");
    converge(&e.ctl).await;
    let before = e.rt.calls().len();
    write_instance(e.dir.path(), "acme", "limits:\n  memroy: 1g\n");
    let r = e.ctl.pass().await.unwrap();
    assert_eq!(r.mutations, 0);
    assert_eq!(e.rt.calls().len(), before);
    let s = &e.ctl.board().instances["acme"];
    assert_eq!(s.phase, Phase::Invalid);
    assert!(
        s.error
            .as_ref()
            .unwrap()
            .contains("instances/acme.yaml:4:3: limits: unknown field \"memroy\""),
        "{:?}",
        s.error
    );
}

/// The edge's routes from the controller's last pass, every domain proven, nobody asleep.
fn edge_of(ctl: &Controller) -> crate::reconcile::edge::Edge {
    let verified = |_: &str, _: &str| true;
    crate::reconcile::edge::edge(&ctl.desired(), &ctl.board(), ctl.host(), &verified, &|_| {
        false
    })
}

#[tokio::test]
async fn a_broken_file_keeps_the_tenant_on_the_edge_with_its_last_valid_state() {
    let e = env();
    write_instance(e.dir.path(), "acme", "domains: [shop.example.org]\n");
    converge(&e.ctl).await;
    write_instance(e.dir.path(), "acme", "limits:\n  memroy: 1g\n");
    e.ctl.pass().await.unwrap();
    e.ctl.pass().await.unwrap(); // carried from pass to pass, not only from the last valid one
    let edge = edge_of(&e.ctl);
    let acme = edge
        .tenants
        .iter()
        .find(|t| t.tenant == "acme")
        .expect("acme off the edge");
    assert!(!acme.maintenance && acme.target.is_some(), "{acme:?}");
    assert!(acme.hosts.contains(&"shop.example.org".to_string()));
    assert!(edge.cert_domains.contains_key("shop.example.org"));
    // An agent restarted while the file is still broken serves the kept last valid state.
    let restarted = controller(
        e.rt.clone(),
        e.ctl.host().clone(),
        Arc::new(FakeChecker::default()),
    );
    restarted.pass().await.unwrap();
    let edge = edge_of(&restarted);
    let acme = edge
        .tenants
        .iter()
        .find(|t| t.tenant == "acme")
        .expect("off the edge after a restart");
    assert!(acme.hosts.contains(&"shop.example.org".to_string()));
    // Removed: gone from the edge too.
    std::fs::remove_file(e.dir.path().join("instances/acme.yaml")).unwrap();
    e.ctl.pass().await.unwrap();
    let edge = edge_of(&e.ctl);
    assert!(edge.tenants.iter().all(|t| t.tenant != "acme"));
}

#[tokio::test]
async fn a_frozen_tenant_keeps_its_egress_allows_and_a_purged_one_loses_them() {
    use crate::egress::{Egress, FakeFirewall};
    let e = env();
    let fw = Arc::new(FakeFirewall::default());
    let pool = e.ctl.host().subnet_pool.net();
    e.ctl.services().set_egress(Arc::new(Egress::new(
        Ok(Box::new(fw.clone())),
        "berth",
        pool,
        vec![],
    )));
    let has_allow = || {
        let r = fw.installed.lock().unwrap().clone().unwrap_or_default();
        r.forward.iter().any(|l| l.contains("192.168.9.9/32"))
    };
    write_instance(
        e.dir.path(),
        "acme",
        "limits: {egress: [\"192.168.9.9:25\"]}\n",
    );
    converge(&e.ctl).await;
    assert!(has_allow());
    write_instance(e.dir.path(), "acme", "limits:\n  memroy: 1g\n");
    e.ctl.pass().await.unwrap();
    e.ctl.pass().await.unwrap();
    assert!(has_allow(), "a frozen tenant lost its allow");
    std::fs::remove_file(e.dir.path().join("instances/acme.yaml")).unwrap();
    std::fs::write(e.ctl.services().layout().purge_marker("acme"), b"").unwrap();
    converge(&e.ctl).await;
    assert!(!has_allow(), "a purged tenant kept its allow");
}

async fn running(e: &Env, tenant: &str) -> usize {
    let inv = e.rt.inventory("berth").await.unwrap();
    inv.containers
        .iter()
        .filter(|c| c.tenant == tenant && c.status == crate::runtime::RunStatus::Running)
        .count()
}

#[tokio::test]
async fn a_woken_tenant_is_started_and_probed_healthy_without_waiting_for_a_pass() {
    let e = env();
    write_instance(e.dir.path(), "acme", "");
    write_instance(e.dir.path(), "beta", "");
    converge(&e.ctl).await;
    e.ctl.services().sleep().put("acme", 0).unwrap();
    converge(&e.ctl).await;
    assert_eq!(running(&e, "acme").await, 0, "asleep");
    assert_eq!(e.ctl.board().instances["acme"].phase, Phase::Asleep);
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(e.ctl.services().probes().clone().run(rx));

    // Held by an upgrade: the fast path is refused and the passes stay in charge.
    e.ctl.hold("acme");
    let held = e.ctl.converge_tenant("acme", Duration::from_secs(5)).await;
    assert!(matches!(held, Err(crate::services::WakeError::Held)));
    e.ctl.release("acme");

    assert!(e.ctl.services().sleep().start_wake("acme", true).unwrap());
    e.ctl
        .converge_tenant("acme", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(running(&e, "acme").await, 2, "started with no pass");
    assert_eq!(e.ctl.services().probes().tenant_healthy("acme"), Some(true));
    // The pass after it finds nothing left to do, and shows the tenant running.
    let after = e.ctl.pass().await.unwrap();
    assert_eq!((after.steps, after.mutations), (0, 0));
    assert_eq!(e.ctl.board().instances["acme"].phase, Phase::Running);
    stop.send(true).unwrap();
}

#[tokio::test]
async fn a_woken_tenant_that_never_gets_healthy_is_handed_back_to_the_passes_with_the_reason() {
    let fake = Arc::new(FakeChecker::default());
    let Env { dir, ctl, .. } = env_probed_by(fake.clone());
    write_instance(dir.path(), "acme", "");
    converge(&ctl).await;
    ctl.services().sleep().put("acme", 0).unwrap();
    converge(&ctl).await;
    fake.fail("berth-acme-app", true);
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(ctl.services().probes().clone().run(rx));
    assert!(ctl.services().sleep().start_wake("acme", true).unwrap());
    let why = ctl
        .converge_tenant("acme", Duration::from_secs(2))
        .await
        .unwrap_err()
        .to_string();
    assert!(why.contains("app http probe failing"), "{why}");
    // Not claimed any more: a pass may apply to the tenant again.
    assert!(ctl.holds.lock().unwrap().unsettled(u64::MAX).is_empty());
    stop.send(true).unwrap();
}

#[tokio::test]
async fn an_upgrade_or_restore_that_holds_a_waking_tenant_takes_it_over_at_once() {
    let fake = Arc::new(FakeChecker::default());
    let e = env_probed_by(fake.clone());
    let ctl = Arc::new(e.ctl);
    write_instance(e.dir.path(), "acme", "");
    converge(&ctl).await;
    ctl.services().sleep().put("acme", 0).unwrap();
    converge(&ctl).await;
    fake.fail("berth-acme-app", true);
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(ctl.services().probes().clone().run(rx));
    assert!(ctl.services().sleep().start_wake("acme", true).unwrap());
    let waking = {
        let ctl = ctl.clone();
        tokio::spawn(async move { ctl.converge_tenant("acme", Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::time::timeout(Duration::from_secs(3), ctl.hold_settled("acme"))
        .await
        .expect("the hold waited out the whole wake");
    let why = waking.await.unwrap().unwrap_err().to_string();
    assert!(why.contains("taken over"), "{why}");
    ctl.release("acme");
    stop.send(true).unwrap();
}

#[tokio::test]
async fn a_failure_is_forgotten_once_the_tenant_converges_without_berth() {
    let e = env();
    write_instance(e.dir.path(), "acme", "");
    converge(&e.ctl).await;
    e.rt.set_status("berth-acme-app", crate::runtime::RunStatus::Stopped);
    e.rt.fail_on("start_container berth-acme-app");
    e.ctl.pass().await.unwrap();
    let failing = &e.ctl.board().instances["acme"];
    assert_eq!(failing.phase, Phase::Failing, "{failing:?}");
    // Started by its engine (a swarm node that came back, a restart policy): nothing to do.
    e.rt.set_status("berth-acme-app", crate::runtime::RunStatus::Running);
    converge(&e.ctl).await;
    e.ctl.services().probes().tick().await;
    e.ctl.pass().await.unwrap();
    let s = &e.ctl.board().instances["acme"];
    assert_eq!(
        (s.phase, s.error.as_deref()),
        (Phase::Running, None),
        "{s:?}"
    );
}

#[tokio::test]
async fn an_operation_does_not_wake_a_tenant_the_host_has_no_memory_for() {
    // Room for one tenant's limit (demo: 256 MiB) and not for two; acme may sleep, so it is
    // admitted at a quarter of its memory beside beta (64 + 256 MiB of 400).
    let Env { dir, ctl, .. } = env_with(Arc::new(FakeChecker::default()), |host| {
        host.admission.memory_total = Some(400 << 20);
        host.admission.memory_overcommit = 1.0;
        let napping = crate::desired::host::Plan {
            sleep_after: Some(Duration::from_secs(1800)),
            sleep_memory: Some(0.25),
            ..Default::default()
        };
        host.plans.insert("napping".into(), napping);
    });
    write_instance(dir.path(), "acme", "plan: napping\n");
    write_instance(dir.path(), "beta", "");
    converge(&ctl).await;
    ctl.services().sleep().put("acme", 0).unwrap();
    converge(&ctl).await;
    let cx = crate::services::Cx {
        svc: ctl.services().clone(),
        passes: ctl.clone(),
    };
    let refused = crate::sleep::wake_for(&cx, "acme", "job", Duration::from_secs(5)).await;
    let why = refused
        .err()
        .expect("woken past the host's memory")
        .to_string();
    assert!(why.contains("not woken") && why.contains("memory"), "{why}");
    assert!(
        ctl.services().sleep().is_asleep("acme"),
        "the refused wake left it asleep"
    );
}

#[tokio::test]
async fn a_storm_of_kicks_makes_passes_that_keep_at_most_half_the_time() {
    let e = env();
    write_instance(e.dir.path(), "acme", "");
    converge(&e.ctl).await;
    // An engine that takes 50 ms to list; an event every 5 ms for a second (a storm of wakes).
    e.rt.set_inventory_delay(Duration::from_millis(50));
    let before = e.rt.inventories();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(e.ctl.clone().run(async {
        let _ = stopped.await;
    }));
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        e.ctl.kick();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = stop.send(());
    run.await.unwrap();
    // Back to back, a second held 15 passes here; paced, each pass (50 ms and more) is
    // followed by as long a rest: 7 or 8 (and at least a few: kicks are not lost).
    let passes = e.rt.inventories() - before;
    assert!((4..=12).contains(&passes), "{passes} passes in a second");
}
