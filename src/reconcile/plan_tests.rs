//! Table tests of `plan`: desired × observed → steps.

use super::*;
use crate::{
    fixtures::{demo_instance, instance_from},
    runtime::{ObservedContainer, ObservedNetwork, ObservedVolume, labels},
};

fn layout() -> Layout {
    Layout::new("/var/lib/berth".into())
}

fn desired(instances: Vec<Instance>) -> Desired {
    Desired {
        instances: instances
            .into_iter()
            .map(|i| (i.tenant.clone(), i))
            .collect(),
        frozen: BTreeMap::new(),
        last_valid: BTreeMap::new(),
    }
}

/// What Docker and the state dir look like once `insts` are fully provisioned and running.
fn converged(insts: &[Instance]) -> (Inventory, Recorded) {
    let mut inv = Inventory::default();
    let mut rec = Recorded::default();
    for (n, i) in insts.iter().enumerate() {
        let alloc = Allocation {
            subnet: n as u32,
            port: 20000 + n as u16,
            web_slot: 0,
            next_port: None,
        };
        rec.allocations.insert(i.tenant.clone(), alloc);
        rec.files_digest
            .insert(i.tenant.clone(), crate::reconcile::files::digest(i));
        inv.networks.push(ObservedNetwork {
            name: spec::network_name("berth", &i.tenant),
            tenant: i.tenant.clone(),
            subnet: Some(crate::fixtures::pool().subnet(n as u32).0),
            ip_range: Some(crate::fixtures::pool().dynamic_range(n as u32)),
        });
        for v in &i.volumes {
            inv.volumes.push(ObservedVolume {
                name: spec::volume_name("berth", &i.tenant, v),
                tenant: i.tenant.clone(),
                mountpoint: format!("/engine/{v}"),
                device: i
                    .quota
                    .disk
                    .map(|_| format!("/disks/{}/volumes/{v}", i.tenant)),
            });
        }
        for s in &i.services {
            let cs = spec::container_spec(
                "berth",
                i,
                s,
                &alloc,
                Some(&crate::fixtures::pool()),
                &layout(),
            );
            inv.containers.push(ObservedContainer {
                name: cs.name.clone(),
                tenant: i.tenant.clone(),
                service: s.name.clone(),
                spec_hash: cs.labels[labels::SPEC_HASH].clone(),
                status: RunStatus::Running,
                health: (s.healthcheck.is_some() || crate::probe::targets::probed(i, &s.name))
                    .then_some(crate::runtime::Health::Healthy),
                host_port: cs.publish.map(|p| p.1),
                ip: None,
                node: None,
            });
        }
    }
    (inv, rec)
}

fn run(d: &Desired, inv: &Inventory, rec: &Recorded) -> BTreeMap<String, Vec<Step>> {
    run_on(true, d, inv, rec)
}

/// Plans on a host that can (`disks`) or cannot make tenant filesystems.
fn run_on(
    disks: bool,
    d: &Desired,
    inv: &Inventory,
    rec: &Recorded,
) -> BTreeMap<String, Vec<Step>> {
    let l = layout();
    let pool = crate::fixtures::pool();
    let none = BTreeSet::new();
    let ctx = Context {
        namespace: "berth",
        layout: &l,
        disks,
        grow_stopped: &none,
        asleep: &none,
        web_pool: Some(&pool),
    };
    plan(&ctx, d, inv, rec)
}

fn s(x: &str) -> String {
    x.to_string()
}

#[test]
fn a_new_instance_gets_network_volumes_files_then_containers_in_dependency_order() {
    let d = desired(vec![demo_instance("acme")]);
    let steps = run(&d, &Inventory::default(), &Recorded::default());
    assert_eq!(
        steps["acme"],
        vec![
            Step::CreateNetwork,
            Step::CreateVolume(s("pgdata")),
            Step::WriteFiles,
            Step::CreateContainer(s("db")),
            Step::StartContainer(s("berth-acme-db")),
        ]
    );
}

#[test]
fn missing_images_are_pulled_before_any_object_of_the_tenant_is_made() {
    let d = desired(vec![demo_instance("acme")]);
    let images: Vec<String> = d.instances["acme"]
        .services
        .iter()
        .map(|s| s.image.clone())
        .collect();
    let mut inv = Inventory {
        images: Some(BTreeSet::new()),
        ..Inventory::default()
    };
    let steps = run(&d, &inv, &Recorded::default());
    let mut sorted = images.clone();
    sorted.sort();
    sorted.dedup();
    let want: Vec<Step> = sorted.into_iter().map(Step::PullImage).collect();
    assert_eq!(steps["acme"], want);
    // One image here, one missing: only the missing one, and still nothing else.
    inv.images = Some(BTreeSet::from([crate::images::reference::normalize(
        &images[0],
    )]));
    let rest: Vec<Step> = images
        .iter()
        .filter(|i| **i != images[0])
        .cloned()
        .map(Step::PullImage)
        .collect();
    if !rest.is_empty() {
        assert_eq!(steps_of(&d, &inv), rest);
    }
    // All here: the usual first steps.
    inv.images = Some(
        images
            .iter()
            .map(|i| crate::images::reference::normalize(i))
            .collect(),
    );
    assert_eq!(steps_of(&d, &inv)[0], Step::CreateNetwork);
}

#[test]
fn a_shared_mode_tenant_pulls_the_shared_database_servers_image_first() {
    let mut inst = demo_instance("acme");
    let db = inst.database.as_mut().unwrap();
    db.mode = crate::spec::template::DatabaseMode::Shared;
    db.server_image = Some("registry.example/berth/postgres:15".into());
    let d = desired(vec![inst.clone()]);
    let mut have: BTreeSet<String> = inst
        .services
        .iter()
        .map(|s| crate::images::reference::normalize(&s.image))
        .collect();
    let inv = Inventory {
        images: Some(have.clone()),
        ..Inventory::default()
    };
    assert_eq!(
        steps_of(&d, &inv),
        vec![Step::PullImage("registry.example/berth/postgres:15".into())]
    );
    have.insert("registry.example/berth/postgres:15".into());
    let inv = Inventory {
        images: Some(have),
        ..Inventory::default()
    };
    assert_eq!(steps_of(&d, &inv)[0], Step::CreateNetwork);
}

fn steps_of(d: &Desired, inv: &Inventory) -> Vec<Step> {
    run(d, inv, &Recorded::default())["acme"].clone()
}

#[test]
fn the_app_is_created_only_once_its_database_is_observed_healthy() {
    let insts = vec![demo_instance("acme")];
    let (mut inv, rec) = converged(&insts);
    inv.containers.retain(|c| c.service == "db");
    let d = desired(insts);
    for (health, want) in [
        (Some(crate::runtime::Health::Starting), vec![]),
        (None, vec![]),
        (
            Some(crate::runtime::Health::Healthy),
            vec![
                Step::CreateContainer(s("app")),
                Step::StartContainer(s("berth-acme-app")),
            ],
        ),
    ] {
        inv.containers[0].health = health;
        assert_eq!(
            run(&d, &inv, &rec).remove("acme").unwrap_or_default(),
            want,
            "db health {health:?}"
        );
    }
}

#[test]
fn a_converged_host_needs_no_step() {
    let insts = vec![demo_instance("acme"), demo_instance("beta")];
    let (inv, rec) = converged(&insts);
    assert!(run(&desired(insts), &inv, &rec).is_empty());
}

#[test]
fn drift_is_repaired_container_by_container() {
    let insts = vec![demo_instance("acme")];
    let (inv, rec) = converged(&insts);
    // Cases: (what was done by hand, steps expected)
    type Drift = Box<dyn Fn(&mut Inventory)>;
    let table: Vec<(&str, Drift, Vec<Step>)> = vec![
        (
            "app stopped",
            Box::new(|i| i.containers[1].status = RunStatus::Stopped),
            vec![Step::StartContainer(s("berth-acme-app"))],
        ),
        (
            "db removed",
            Box::new(|i| {
                i.containers.remove(0);
            }),
            vec![
                Step::CreateContainer(s("db")),
                Step::StartContainer(s("berth-acme-db")),
            ],
        ),
        (
            "network removed",
            Box::new(|i| i.networks.clear()),
            vec![Step::CreateNetwork],
        ),
        (
            "restarting container is left to Docker's restart policy",
            Box::new(|i| i.containers[1].status = RunStatus::Other),
            vec![],
        ),
    ];
    let d = desired(insts.clone());
    for (case, change, want) in table {
        let mut broken = inv.clone();
        change(&mut broken);
        let got = run(&d, &broken, &rec).remove("acme").unwrap_or_default();
        assert_eq!(got, want, "case: {case}");
    }
}

#[test]
fn a_version_change_recreates_only_the_changed_service_of_the_changed_tenant() {
    let insts = vec![demo_instance("acme"), demo_instance("beta")];
    let (inv, rec) = converged(&insts);
    let v2 = instance_from("acme", "tenant: acme\ntemplate: demo\nversion: \"2\"\n").unwrap();
    let steps = run(&desired(vec![v2, demo_instance("beta")]), &inv, &rec);
    assert_eq!(steps.keys().collect::<Vec<_>>(), vec!["acme"]);
    assert_eq!(
        steps["acme"],
        vec![
            Step::RemoveContainer(s("berth-acme-app")),
            Step::CreateContainer(s("app")),
            Step::StartContainer(s("berth-acme-app")),
        ]
    );
}

#[test]
fn a_parameter_change_rewrites_files_and_recreates_the_service_that_mounts_them() {
    let insts = vec![demo_instance("acme")];
    let (inv, rec) = converged(&insts);
    let changed = instance_from(
        "acme",
        "tenant: acme\ntemplate: demo\nparameters:\n  site_title: Hello\n",
    )
    .unwrap();
    let steps = run(&desired(vec![changed]), &inv, &rec);
    assert_eq!(
        steps["acme"],
        vec![
            Step::WriteFiles,
            Step::RemoveContainer(s("berth-acme-app")),
            Step::CreateContainer(s("app")),
            Step::StartContainer(s("berth-acme-app")),
        ]
    );
}

#[test]
fn stopping_and_suspending_stop_containers_in_reverse_order() {
    for state in ["stopped", "suspended"] {
        let insts = vec![demo_instance("acme")];
        let (inv, rec) = converged(&insts);
        let i = instance_from(
            "acme",
            &format!("tenant: acme\ntemplate: demo\nstate: {state}\n"),
        )
        .unwrap();
        let steps = run(&desired(vec![i]), &inv, &rec);
        assert_eq!(
            steps["acme"],
            vec![
                Step::StopContainer(s("berth-acme-app")),
                Step::StopContainer(s("berth-acme-db"))
            ]
        );
    }
}

#[test]
fn a_removed_instance_loses_containers_and_network_but_keeps_volumes() {
    let (inv, rec) = converged(&[demo_instance("acme")]);
    let steps = run(&desired(vec![]), &inv, &rec);
    assert_eq!(
        steps["acme"],
        vec![
            Step::RemoveContainer(s("berth-acme-db")),
            Step::RemoveContainer(s("berth-acme-app")),
            Step::RemoveNetwork(s("berth-acme")),
        ]
    );
}

#[test]
fn a_purged_instance_loses_volumes_and_files_too() {
    let (inv, mut rec) = converged(&[demo_instance("acme")]);
    rec.purge.insert(s("acme"));
    let steps = run(&desired(vec![]), &inv, &rec);
    assert_eq!(
        steps["acme"][3..],
        [
            Step::RemoveVolume(s("berth-acme-pgdata")),
            Step::DropSharedDatabase,
            Step::PurgeFiles
        ]
    );
}

#[test]
fn a_tenant_with_a_broken_file_is_left_exactly_as_it_is() {
    let (mut inv, rec) = converged(&[demo_instance("acme")]);
    inv.containers[0].status = RunStatus::Stopped;
    let mut d = desired(vec![]);
    d.frozen
        .insert(s("acme"), s("instances/acme.yaml:3:1: bad"));
    assert!(run(&d, &inv, &rec).is_empty());
}

#[test]
fn host_level_objects_are_not_collected_as_orphans() {
    let mut inv = Inventory::default();
    inv.containers.push(ObservedContainer {
        name: s("berth-shared-postgres"),
        tenant: s(labels::HOST_TENANT),
        service: s("postgres"),
        spec_hash: s("x"),
        status: RunStatus::Running,
        health: None,
        host_port: None,
        ip: None,
        node: None,
    });
    assert!(run(&desired(vec![]), &inv, &Recorded::default()).is_empty());
}

fn with_disk(mut i: Instance) -> Instance {
    i.quota.disk = Some(1 << 30);
    i
}

#[test]
fn a_disk_given_to_a_running_tenant_moves_its_volumes_with_the_tenant_stopped() {
    let (inv, rec) = converged(&[demo_instance("acme")]);
    let d = desired(vec![with_disk(demo_instance("acme"))]);
    let moved = crate::reconcile::plan::MovedVolume {
        volume: s("pgdata"),
        from: s("/engine/pgdata"),
    };
    assert_eq!(
        run(&d, &inv, &rec)["acme"],
        vec![
            Step::CheckVolumesFit(vec![moved.clone()]),
            Step::StopContainer(s("berth-acme-app")),
            Step::StopContainer(s("berth-acme-db")),
            Step::RemoveContainer(s("berth-acme-db")),
            Step::RemoveContainer(s("berth-acme-app")),
            Step::MoveVolume(moved),
            Step::CreateContainer(s("db")),
            Step::StartContainer(s("berth-acme-db")),
        ]
    );
}

#[test]
fn volumes_stay_where_they_are_when_the_host_cannot_make_tenant_filesystems() {
    let (inv, rec) = converged(&[demo_instance("acme")]);
    let d = desired(vec![with_disk(demo_instance("acme"))]);
    assert!(run_on(false, &d, &inv, &rec).is_empty());
}

#[test]
fn volumes_already_on_the_tenant_filesystem_and_stopped_tenants_are_not_moved() {
    let insts = vec![with_disk(demo_instance("acme"))];
    let (inv, rec) = converged(&insts);
    assert!(run(&desired(insts), &inv, &rec).is_empty());
    let (inv, rec) = converged(&[demo_instance("acme")]);
    let mut stopped = with_disk(demo_instance("acme"));
    stopped.state = RunState::Stopped;
    assert_eq!(
        run(&desired(vec![stopped]), &inv, &rec)["acme"],
        vec![
            Step::StopContainer(s("berth-acme-app")),
            Step::StopContainer(s("berth-acme-db"))
        ]
    );
}

#[test]
fn a_disk_that_cannot_grow_online_grows_with_its_tenant_stopped_and_started_again() {
    let insts = vec![with_disk(demo_instance("acme")), demo_instance("beta")];
    let (inv, rec) = converged(&insts);
    let l = layout();
    let pool = crate::fixtures::pool();
    let growing = BTreeSet::from([s("acme")]);
    let ctx = Context {
        namespace: "berth",
        layout: &l,
        disks: true,
        grow_stopped: &growing,
        asleep: &BTreeSet::new(),
        web_pool: Some(&pool),
    };
    let steps = plan(&ctx, &desired(insts), &inv, &rec);
    assert_eq!(
        steps,
        BTreeMap::from([(
            s("acme"),
            vec![
                Step::StopContainer(s("berth-acme-app")),
                Step::StopContainer(s("berth-acme-db")),
                Step::GrowDisk,
                Step::StartContainer(s("berth-acme-db")),
                Step::StartContainer(s("berth-acme-app")),
            ]
        )]),
        "beta is not touched"
    );
}

#[test]
fn an_asleep_tenant_is_planned_stopped_with_its_containers_kept_and_started_on_waking() {
    let insts = vec![demo_instance("acme"), demo_instance("beta")];
    let (mut inv, rec) = converged(&insts);
    let d = desired(insts);
    let l = layout();
    let (none, asleep) = (BTreeSet::new(), BTreeSet::from([s("acme")]));
    let pool = crate::fixtures::pool();
    let ctx = |asleep| Context {
        namespace: "berth",
        layout: &l,
        disks: false,
        grow_stopped: &none,
        asleep,
        web_pool: Some(&pool),
    };
    let steps = plan(&ctx(&asleep), &d, &inv, &rec);
    assert_eq!(
        steps["acme"],
        vec![
            Step::StopContainer(s("berth-acme-app")),
            Step::StopContainer(s("berth-acme-db")),
        ]
    );
    assert!(!steps.contains_key("beta"));
    for c in inv.containers.iter_mut().filter(|c| c.tenant == "acme") {
        c.status = RunStatus::Stopped;
        c.health = None;
    }
    assert!(
        plan(&ctx(&asleep), &d, &inv, &rec).is_empty(),
        "asleep: nothing to do"
    );
    let woken = plan(&ctx(&none), &d, &inv, &rec);
    assert_eq!(
        woken["acme"],
        vec![
            Step::StartContainer(s("berth-acme-db")),
            Step::StartContainer(s("berth-acme-app")),
        ]
    );
}

#[test]
fn a_network_made_without_the_engine_s_range_is_made_again_with_the_tenant_stopped_in_order() {
    let d = desired(vec![demo_instance("acme")]);
    let (mut inv, rec) = converged(&[demo_instance("acme")]);
    assert!(run(&d, &inv, &rec).is_empty(), "converged");
    // A network of another block (the pool or the prefix changed since) is made again too.
    let mut moved = inv.clone();
    moved.networks[0].subnet = Some("10.240.0.0/27".into());
    assert!(run(&d, &moved, &rec)["acme"].contains(&Step::RemoveNetwork(s("berth-acme"))));
    inv.networks[0].ip_range = None;
    let steps = &run(&d, &inv, &rec)["acme"];
    let pos = |s: &Step| steps.iter().position(|x| x == s).unwrap();
    let net = Step::RemoveNetwork(s("berth-acme"));
    assert!(
        pos(&Step::StopContainer(s("berth-acme-app")))
            < pos(&Step::StopContainer(s("berth-acme-db")))
    );
    assert!(pos(&Step::RemoveContainer(s("berth-acme-db"))) < pos(&net));
    assert!(pos(&net) < pos(&Step::CreateNetwork));
    assert!(pos(&Step::CreateNetwork) < pos(&Step::CreateContainer(s("db"))));
    // In swarm mode the network keeps its own range: nothing to do.
    let l = layout();
    let none = BTreeSet::new();
    let swarm = Context {
        namespace: "berth",
        layout: &l,
        disks: true,
        grow_stopped: &none,
        asleep: &none,
        web_pool: None,
    };
    let steps = plan(&swarm, &d, &inv, &rec);
    assert!(
        !steps
            .values()
            .flatten()
            .any(|s| matches!(s, Step::RemoveNetwork(_))),
        "{steps:?}"
    );
}
