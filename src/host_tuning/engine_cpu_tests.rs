use super::*;

/// A fake /proc: (pid, comm, its /proc/<pid>/cgroup text).
fn procs(dir: &Path, list: &[(u32, &str, &str)]) {
    for (pid, comm, cgroup) in list {
        let d = dir.join(pid.to_string());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("comm"), format!("{comm}\n")).unwrap();
        std::fs::write(d.join("cgroup"), cgroup).unwrap();
    }
}

/// A weight of 10 and no quota.
const W10: Limits = Limits {
    weight: Some(10),
    max_millicores: None,
};

const V1_ROOT: &str = "9:name=systemd:/\n2:cpu,cpuacct:/\n0::/\n";
const V1_CONTAINER: &str = "2:cpu,cpuacct:/docker/abc\n0::/\n";

/// A fake host: its processes, and a cgroup tree with the control files the kernel would make.
fn fake(list: &[(u32, &str, &str)]) -> (tempfile::TempDir, Cgroups) {
    let dir = tempfile::tempdir().unwrap();
    procs(&dir.path().join("proc"), list);
    for d in ["cg/cpu/berth-engine", "cg/berth-engine"] {
        let d = dir.path().join(d);
        std::fs::create_dir_all(&d).unwrap();
        for f in [
            "cpu.shares",
            "cpu.weight",
            "cpu.cfs_period_us",
            "cpu.cfs_quota_us",
            "cpu.max",
            "cgroup.procs",
        ] {
            std::fs::write(d.join(f), "").unwrap();
        }
    }
    std::fs::write(dir.path().join("cg/cpu/cpu.shares"), "1024").unwrap();
    std::fs::write(dir.path().join("cg/cgroup.subtree_control"), "").unwrap();
    let cg = Cgroups {
        proc: dir.path().join("proc"),
        root: dir.path().join("cg"),
        ..Cgroups::default()
    };
    (dir, cg)
}

fn read(cg: &Cgroups, p: &str) -> String {
    std::fs::read_to_string(cg.root.join(p)).unwrap()
}

#[test]
fn the_engines_programs_move_to_a_low_weight_group_and_nothing_else() {
    let (_d, cg) = fake(&[
        (1, "systemd", V1_ROOT),
        (10, "dockerd", V1_ROOT),
        (11, "containerd", V1_ROOT),
        (12, "iptables", V1_ROOT),
        (20, "containerd-shim", V1_ROOT),
        (21, "containerd", V1_CONTAINER),
        (30, "berth", V1_ROOT),
        (31, "docker-proxy", V1_ROOT),
    ]);
    let said = place(&cg, 10, W10).unwrap().unwrap();
    assert!(said.starts_with("4 engine processes"), "{said}");
    assert_eq!(read(&cg, "cpu/berth-engine/cpu.shares"), "102");
    assert_eq!(
        read(&cg, "cpu/berth-engine/cgroup.procs"),
        "10112031",
        "dockerd, containerd, the shim, docker-proxy; not init, iptables, the agent, or a \
         tenant's process named like the engine"
    );
    // Once they are there, a second look moves nothing.
    for pid in [10, 11, 20, 31] {
        std::fs::write(
            cg.proc.join(format!("{pid}/cgroup")),
            "2:cpu,cpuacct:/berth-engine\n",
        )
        .unwrap();
    }
    assert_eq!(place(&cg, 10, W10).unwrap(), None);
    // A containerd restarted on its own later is found by name.
    procs(&cg.proc, &[(40, "containerd", V1_ROOT)]);
    assert!(
        place(&cg, 10, W10)
            .unwrap()
            .unwrap()
            .starts_with("1 engine processes")
    );
}

#[test]
fn on_cgroup_v2_the_weight_is_written_as_is_and_the_cpu_controller_enabled() {
    let (_d, cg) = fake(&[(10, "dockerd", "0::/\n")]);
    place(&cg, 10, W10).unwrap();
    assert_eq!(read(&cg, "berth-engine/cpu.weight"), "10");
    assert_eq!(read(&cg, "cgroup.subtree_control"), "+cpu");
    assert_eq!(read(&cg, "berth-engine/cgroup.procs"), "10");
}

#[test]
fn a_quota_caps_the_engine_in_cores_and_no_quota_undoes_one() {
    let half = Limits {
        weight: None,
        max_millicores: Some(500),
    };
    let (_d, cg) = fake(&[(10, "dockerd", V1_ROOT)]);
    let said = place(&cg, 10, half).unwrap().unwrap();
    assert!(said.contains("cpu.cfs_quota_us 50000"), "{said}");
    assert_eq!(read(&cg, "cpu/berth-engine/cpu.cfs_period_us"), "100000");
    assert_eq!(read(&cg, "cpu/berth-engine/cpu.cfs_quota_us"), "50000");
    assert_eq!(
        read(&cg, "cpu/berth-engine/cpu.shares"),
        "1024",
        "a plain weight"
    );
    // Taken out of the config: the next start writes no quota (the files are appended to
    // here, as the kernel's would be replaced).
    procs(&cg.proc, &[(11, "containerd", V1_ROOT)]);
    place(&cg, 10, W10).unwrap();
    assert_eq!(read(&cg, "cpu/berth-engine/cpu.cfs_quota_us"), "50000-1");
    let (_d, cg) = fake(&[(10, "dockerd", "0::/\n")]);
    let tiny = Limits {
        weight: Some(10),
        max_millicores: Some(5),
    };
    place(&cg, 10, tiny).unwrap();
    assert_eq!(
        read(&cg, "berth-engine/cpu.max"),
        "1000 100000",
        "the kernel's least quota (1 ms)"
    );
    assert_eq!(read(&cg, "berth-engine/cpu.weight"), "10");
}

#[test]
fn an_engine_a_service_manager_placed_is_left_where_it_is() {
    let (_d, cg) = fake(&[(10, "dockerd", "0::/system.slice/docker.service\n")]);
    let said = place(&cg, 10, W10).unwrap().unwrap();
    assert!(said.contains("system.slice/docker.service") && said.contains("CPUQuota="));
    assert_eq!(read(&cg, "berth-engine/cgroup.procs"), "");
}

#[test]
fn a_socket_held_by_the_service_manager_or_anything_but_the_engine_moves_nothing() {
    let (_d, cg) = fake(&[
        (1, "systemd", V1_ROOT),
        (7, "socat", V1_ROOT),
        (10, "dockerd", V1_ROOT),
    ]);
    for pid in [1, 7] {
        let e = place(&cg, pid, W10).unwrap_err();
        assert!(matches!(e, EngineCpuError::NotTheEngine { .. }), "{e}");
        assert!(e.to_string().contains("socket activation"));
    }
    assert_eq!(read(&cg, "cpu/berth-engine/cgroup.procs"), "");
}

#[test]
fn no_cpu_group_or_no_cpu_controller_is_an_error_and_nothing_is_made() {
    let (_d, cg) = fake(&[(10, "dockerd", "4:memory:/\n")]);
    assert!(matches!(
        place(&cg, 10, W10),
        Err(EngineCpuError::NoCpuGroup(10))
    ));
    assert!(matches!(
        place(&cg, 99, W10),
        Err(EngineCpuError::NotTheEngine { .. })
    ));
    let (_d, cg) = fake(&[(10, "dockerd", V1_ROOT)]);
    std::fs::remove_file(cg.root.join("cpu/cpu.shares")).unwrap();
    assert!(matches!(
        place(&cg, 10, W10),
        Err(EngineCpuError::NoController(_))
    ));
}

#[test]
fn the_peer_of_a_unix_socket_is_its_process() {
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    assert_eq!(peer_pid(&a).unwrap(), std::process::id());
    assert!(engine_pid(Path::new("/nonexistent/docker.sock")).is_err());
}

/// On this machine's real cgroups: a stand-in engine (two processes of a binary with a name
/// nothing else has) moves out of the root CPU group into a group of the asked weight. Needs
/// root and the root CPU group; runs where the real-engine tests run (BERTH_REQUIRE_DOCKER=1),
/// skipped elsewhere.
#[test]
fn a_stand_in_engine_moves_on_the_real_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("bfe{}", std::process::id() % 1_000_000);
    let bin = dir.path().join(&name);
    std::fs::copy("/bin/sleep", &bin).unwrap();
    let spawn = || std::process::Command::new(&bin).arg("60").spawn().unwrap();
    let (mut engine, mut other) = (spawn(), spawn());
    let real = Cgroups {
        group: format!("berth-engine-test-{}", std::process::id()),
        programs: vec![name.clone(), format!("{name}*")],
        ..Cgroups::default()
    };
    let pids = [engine.id(), other.id()];
    let stop = |e: &mut std::process::Child, o: &mut std::process::Child| {
        let _ = (e.kill(), o.kill(), e.wait(), o.wait());
    };
    let in_root = cpu_group(&real.proc, pids[0]).is_some_and(|g| g.path() == "/");
    if !in_root || !rustix::process::geteuid().is_root() {
        stop(&mut engine, &mut other);
        assert!(
            std::env::var("BERTH_REQUIRE_DOCKER").as_deref() != Ok("1"),
            "this host's tests run as root in the root CPU group"
        );
        return;
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    let limits = Limits {
        weight: Some(10),
        max_millicores: Some(500),
    };
    let said = place(&real, pids[0], limits);
    let quota = cpu_group(&real.proc, pids[0]).map(|g| match g {
        CpuGroup::V1(_) => read(&real, &format!("cpu/{}/cpu.cfs_quota_us", real.group)),
        CpuGroup::V2(_) => read(&real, &format!("{}/cpu.max", real.group)),
    });
    let after: Vec<Option<String>> = pids
        .iter()
        .map(|&p| cpu_group(&real.proc, p).map(|g| g.path().to_string()))
        .collect();
    // Back to the root group before any assertion, so the test group can be removed.
    let back = match cpu_group(&real.proc, pids[0]) {
        Some(CpuGroup::V1(_)) => real.root.join("cpu"),
        _ => real.root.clone(),
    };
    for p in pids {
        let _ = write(&back.join("cgroup.procs"), &p.to_string());
    }
    stop(&mut engine, &mut other);
    let _ = std::fs::remove_dir(back.join(&real.group));
    let said = said.unwrap().unwrap();
    assert!(said.starts_with("2 engine processes"), "{said}");
    let want = Some(format!("/{}", real.group));
    assert_eq!(after, vec![want.clone(), want]);
    let quota = quota.unwrap();
    assert!(
        ["50000\n", "50000 100000\n"].contains(&quota.as_str()),
        "the kernel took half a core: {quota:?}"
    );
}
