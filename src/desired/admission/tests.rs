use super::*;
use crate::{desired::host::Admission, fixtures};

fn fleet(mems: &[u64]) -> (Desired, Vec<Instance>) {
    let mut d = Desired::default();
    let mut v = vec![];
    for (n, m) in mems.iter().enumerate() {
        let mut i = fixtures::demo_instance(&format!("t{n}"));
        i.limits.memory = *m;
        d.instances.insert(i.tenant.clone(), i.clone());
        v.push(i);
    }
    (d, v)
}

fn host(total: Option<u64>, ratio: f64) -> HostConfig {
    let mut h = fixtures::host();
    h.admission = Admission {
        memory_total: total,
        memory_overcommit: ratio,
        ..Admission::default()
    };
    h
}

#[test]
fn a_tenant_that_may_sleep_reserves_its_plans_share_of_memory_and_all_its_disk() {
    let h = host(Some(1 << 30), 1.0);
    let (d, _) = fleet(&[512 << 20]);
    let mut sleeper = fixtures::demo_instance("s1");
    sleeper.limits.memory = 1 << 30;
    sleeper.quota.disk = Some(1 << 30);
    assert!(
        !admit(&h, &d, &sleeper).is_empty(),
        "1g awake does not fit beside 512m"
    );
    sleeper.sleep_after = Some(std::time::Duration::from_secs(1800));
    sleeper.sleep_memory = Some(0.25);
    assert!(admit(&h, &d, &sleeper).is_empty(), "256m counted: fits");
    assert_eq!(Resource::Disk.of(&sleeper), 1 << 30);
    sleeper.sleep_memory = None;
    assert!(
        !admit(&h, &d, &sleeper).is_empty(),
        "no share set: counted in full"
    );
}

#[test]
fn the_shared_server_is_reserved_only_while_a_tenant_uses_it() {
    let mut h = host(Some(1 << 30), 1.0);
    h.shared_database = Some(crate::desired::host::SharedDatabase {
        image: "x".into(),
        memory: 512 << 20,
        connection_limit: 5,
    });
    let (d, _) = fleet(&[256 << 20]);
    assert_eq!(reserved(Resource::Memory, &h, &d, None), 256 << 20);
    let mut shared = fixtures::demo_instance("s1");
    shared.limits.memory = 256 << 20;
    shared.database.as_mut().unwrap().mode = crate::spec::template::DatabaseMode::Shared;
    assert!(
        admit(&h, &d, &shared).is_empty(),
        "256m + 256m + the 512m server fits 1g"
    );
    let mut d2 = d.clone();
    d2.instances.insert("s1".into(), shared.clone());
    assert_eq!(reserved(Resource::Memory, &h, &d2, None), 1 << 30);
    let mut big = shared.clone();
    big.tenant = "s2".into();
    big.limits.memory = 1;
    d2.instances.insert("s2".into(), big);
    let once = (1u64 << 30) + 1;
    assert_eq!(
        reserved(Resource::Memory, &h, &d2, None),
        once,
        "the server is counted once"
    );
    shared.limits.memory = 257 << 20;
    let e = admit(&h, &d, &shared).join("");
    assert!(e.contains("needs 769m of memory"), "{e}");
}

#[test]
fn each_shared_server_in_use_is_reserved_once() {
    let mut h = host(Some(4 << 30), 1.0);
    let server = |mb: u64| crate::desired::host::SharedDatabase {
        image: "x".into(),
        memory: mb << 20,
        connection_limit: 5,
    };
    h.shared_database = Some(server(512));
    h.shared_mariadb = Some(server(300));
    let (mut d, _) = fleet(&[]);
    let shared = |t: &str, engine| {
        let mut i = fixtures::demo_instance(t);
        i.limits.memory = 100 << 20;
        let db = i.database.as_mut().unwrap();
        db.mode = crate::spec::template::DatabaseMode::Shared;
        db.engine = engine;
        i
    };
    d.instances
        .insert("m1".into(), shared("m1", DatabaseEngine::Mariadb));
    assert_eq!(reserved(Resource::Memory, &h, &d, None), (100 + 300) << 20);
    d.instances
        .insert("m2".into(), shared("m2", DatabaseEngine::Mysql));
    assert_eq!(
        reserved(Resource::Memory, &h, &d, None),
        (200 + 300) << 20,
        "MySQL templates share MariaDB's server"
    );
    d.instances
        .insert("p1".into(), shared("p1", DatabaseEngine::Postgres));
    assert_eq!(
        reserved(Resource::Memory, &h, &d, None),
        (300 + 300 + 512) << 20
    );
}

#[test]
fn an_instance_that_would_pass_capacity_is_refused_with_the_numbers() {
    let (d, _) = fleet(&[3 << 30, 4 << 30]);
    let mut new = fixtures::demo_instance("big");
    new.limits.memory = 2 << 30;
    let e = admit(&host(Some(8 << 30), 1.0), &d, &new).join("\n");
    assert!(e.contains("big needs 2g"), "{e}");
    assert!(e.contains("7g is reserved already, so 9g in all"), "{e}");
    assert!(e.contains("allows 8g (8g × overcommit 1)"), "{e}");
}

#[test]
fn overcommit_and_unknown_capacity_admit_more() {
    let (d, _) = fleet(&[3 << 30, 4 << 30]);
    let mut new = fixtures::demo_instance("big");
    new.limits.memory = 2 << 30;
    assert!(admit(&host(Some(8 << 30), 1.5), &d, &new).is_empty());
    assert!(
        admit(&host(None, 1.0), &d, &new).is_empty(),
        "offline validation"
    );
}

#[test]
fn growing_an_instance_counts_its_new_size_not_both() {
    let (d, v) = fleet(&[3 << 30, 4 << 30]);
    let mut grown = v[1].clone();
    grown.limits.memory = 5 << 30;
    assert!(admit(&host(Some(8 << 30), 1.0), &d, &grown).is_empty());
    grown.limits.memory = (5 << 30) + 1;
    assert!(!admit(&host(Some(8 << 30), 1.0), &d, &grown).is_empty());
}

fn with_disks(d: &mut Desired, disks: &[u64]) {
    for (i, b) in d.instances.values_mut().zip(disks) {
        i.quota.disk = Some(*b);
    }
}

fn disk_host(total: u64, ratio: f64) -> HostConfig {
    let mut h = host(Some(64 << 30), 1.0);
    h.admission.disk_total = Some(total);
    h.admission.disk_overcommit = ratio;
    h
}

#[test]
fn a_disk_past_the_disks_capacity_is_refused_with_the_numbers() {
    let (mut d, _) = fleet(&[1 << 30, 1 << 30]);
    with_disks(&mut d, &[20 << 30, 30 << 30]);
    let mut new = fixtures::demo_instance("big");
    new.quota.disk = Some(60 << 30);
    let e = admit(&disk_host(100 << 30, 1.0), &d, &new);
    assert_eq!(
        e,
        vec![
            "not admitted: big needs 60g of disk; 50g is reserved already, so 110g in all, but this host allows 100g (100g × overcommit 1)"
        ]
    );
    assert!(admit(&disk_host(100 << 30, 1.2), &d, &new).is_empty());
}

#[test]
fn an_instance_without_a_disk_is_admitted_even_on_a_full_disk() {
    let (mut d, _) = fleet(&[1 << 30]);
    with_disks(&mut d, &[200 << 30]);
    let new = fixtures::demo_instance("small");
    assert!(admit(&disk_host(100 << 30, 1.0), &d, &new).is_empty());
}

#[test]
fn an_edit_that_does_not_grow_is_admitted_on_an_overfull_host() {
    let (mut d, v) = fleet(&[1 << 30, 1 << 30]);
    with_disks(&mut d, &[80 << 30, 80 << 30]);
    let same = d.instances[&v[1].tenant].clone();
    assert!(admit(&disk_host(100 << 30, 1.0), &d, &same).is_empty());
    let mut grown = same.clone();
    grown.quota.disk = Some((80 << 30) + 1);
    assert_eq!(admit(&disk_host(100 << 30, 1.0), &d, &grown).len(), 1);
}

#[test]
fn memory_and_disk_refusals_are_both_reported() {
    let (mut d, _) = fleet(&[4 << 30]);
    with_disks(&mut d, &[80 << 30]);
    let mut new = fixtures::demo_instance("big");
    new.limits.memory = 8 << 30;
    new.quota.disk = Some(40 << 30);
    let mut h = disk_host(100 << 30, 1.0);
    h.admission.memory_total = Some(8 << 30);
    let e = admit(&h, &d, &new);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].contains("of memory") && e[1].contains("of disk"),
        "{e:?}"
    );
}

#[test]
fn a_wake_that_would_take_the_awake_tenants_past_host_memory_is_refused() {
    let mut host = fixtures::host();
    host.admission.memory_total = Some(1 << 30);
    let mut d = Desired::default();
    for t in ["s1", "s2", "s3", "s4", "s5"] {
        let mut i = fixtures::demo_instance(t);
        i.limits.memory = 256 << 20;
        i.sleep_after = Some(std::time::Duration::from_secs(60));
        i.sleep_memory = Some(0.25);
        d.instances.insert(t.into(), i);
    }
    // Admitted: five sleepers at a quarter each. Awake, four fit in 1 GiB, five do not.
    assert!(admit(&host, &d, &d.instances["s5"]).is_empty());
    let asleep_of = |awake: &'static [&'static str]| move |t: &str| !awake.contains(&t);
    assert_eq!(
        wake_refusal(&host, &d, &asleep_of(&["s1", "s2"]), "s3"),
        None
    );
    let why = wake_refusal(&host, &d, &asleep_of(&["s1", "s2", "s3", "s4"]), "s5").unwrap();
    assert!(why.contains("1.3 GiB") || why.contains("1280"), "{why}");
    let mut unknown = host.clone();
    unknown.admission.memory_total = None;
    assert_eq!(wake_refusal(&unknown, &d, &|_| false, "s5"), None);
    // A frozen tenant awake counts as it runs: s2, s4, s5 and s3 fill the 1 GiB; s1 too is
    // past it.
    let s1 = d.instances.remove("s1").unwrap();
    d.frozen.insert("s1".into(), "broken file".into());
    d.last_valid.insert("s1".into(), s1);
    let awake3 = asleep_of(&["s1", "s2", "s4", "s5"]);
    assert!(wake_refusal(&host, &d, &awake3, "s3").is_some());
}
