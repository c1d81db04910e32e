use super::*;

/// A fake /proc: (pid, ppid, comm, its /proc/<pid>/cgroup text).
fn procs(dir: &Path, list: &[(u32, u32, &str, &str)]) {
    for (pid, ppid, comm, cgroup) in list {
        let d = dir.join(pid.to_string());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("stat"), format!("{pid} ({comm}) S {ppid} 1 1 0 -1")).unwrap();
        std::fs::write(d.join("cgroup"), cgroup).unwrap();
    }
}

const V1_ROOT: &str = "9:name=systemd:/\n2:cpu,cpuacct:/\n0::/\n";
const V1_CONTAINER: &str = "2:cpu,cpuacct:/docker/abc\n0::/\n";

fn fake(list: &[(u32, u32, &str, &str)]) -> (tempfile::TempDir, Cgroups) {
    let dir = tempfile::tempdir().unwrap();
    procs(&dir.path().join("proc"), list);
    std::fs::create_dir_all(dir.path().join("cg/cpu")).unwrap();
    std::fs::write(dir.path().join("cg/cgroup.subtree_control"), "").unwrap();
    let cg = Cgroups {
        proc: dir.path().join("proc"),
        root: dir.path().join("cg"),
        group: "berth-engine".into(),
        shims: Some("containerd-shim".into()),
    };
    (dir, cg)
}

#[test]
fn the_engine_its_children_and_the_shims_move_to_a_low_weight_group_and_nothing_else() {
    let (_d, cg) = fake(&[
        (1, 0, "init", V1_ROOT),
        (10, 1, "dockerd", V1_ROOT),
        (11, 10, "containerd", V1_ROOT),
        (12, 11, "iptables", V1_ROOT),
        (20, 1, "containerd-shim", V1_ROOT),
        (21, 20, "httpd (tenant)", V1_CONTAINER),
        (30, 1, "berth", V1_ROOT),
    ]);
    let said = place(&cg, 10, 10).unwrap().unwrap();
    assert!(said.starts_with("4 engine processes"), "{said}");
    let group = cg.root.join("cpu/berth-engine");
    assert_eq!(
        std::fs::read_to_string(group.join("cpu.shares")).unwrap(),
        "102"
    );
    assert_eq!(
        std::fs::read_to_string(group.join("cgroup.procs")).unwrap(),
        "10111220",
        "dockerd, containerd, its child, the shim; not init, the tenant or the agent"
    );
    // Once there, a second look changes nothing.
    std::fs::write(cg.proc.join("10/cgroup"), "2:cpu,cpuacct:/berth-engine\n").unwrap();
    assert_eq!(place(&cg, 10, 10).unwrap(), None);
}

#[test]
fn on_cgroup_v2_the_weight_is_written_as_is_and_the_cpu_controller_enabled() {
    let (_d, cg) = fake(&[(10, 1, "dockerd", "0::/\n")]);
    place(&cg, 10, 10).unwrap();
    let read = |p: &str| std::fs::read_to_string(cg.root.join(p)).unwrap();
    assert_eq!(read("berth-engine/cpu.weight"), "10");
    assert_eq!(read("cgroup.subtree_control"), "+cpu");
    assert_eq!(read("berth-engine/cgroup.procs"), "10");
}

#[test]
fn an_engine_a_service_manager_placed_is_left_where_it_is() {
    let (_d, cg) = fake(&[(10, 1, "dockerd", "0::/system.slice/docker.service\n")]);
    let said = place(&cg, 10, 10).unwrap().unwrap();
    assert!(said.contains("system.slice/docker.service") && said.contains("CPUWeight=10"));
    assert!(!cg.root.join("berth-engine").exists());
}

#[test]
fn an_engine_with_no_cpu_group_is_an_error_not_a_guess() {
    let (_d, cg) = fake(&[(10, 1, "dockerd", "4:memory:/\n")]);
    assert!(matches!(
        place(&cg, 10, 10),
        Err(EngineCpuError::NoCpuGroup(10))
    ));
    assert!(matches!(
        place(&cg, 99, 10),
        Err(EngineCpuError::NoCpuGroup(99))
    ));
}

#[test]
fn the_peer_of_a_unix_socket_is_its_process() {
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    assert_eq!(peer_pid(&a).unwrap(), std::process::id());
    assert!(engine_pid(Path::new("/nonexistent/docker.sock")).is_err());
}

/// On this machine's real cgroups: a stand-in engine (a `sleep` and its child) moves out of the
/// root CPU group into a group of the asked weight. Needs root and a writable cgroup tree;
/// runs where the real-engine tests run (BERTH_REQUIRE_DOCKER=1), skipped elsewhere.
#[test]
fn a_stand_in_engine_moves_on_the_real_kernel() {
    let real = Cgroups {
        group: format!("berth-engine-test-{}", std::process::id()),
        shims: None,
        ..Cgroups::default()
    };
    let mut child = std::process::Command::new("sh")
        .args(["-c", "sleep 60 & wait"])
        .spawn()
        .unwrap();
    let pid = child.id();
    let root_group = cpu_group(&real.proc, pid).is_some_and(|g| g.path() == "/");
    if !root_group || !rustix::process::geteuid().is_root() {
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            std::env::var("BERTH_REQUIRE_DOCKER").as_deref() != Ok("1"),
            "this host's tests run as root in the root CPU group"
        );
        return;
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let said = place(&real, pid, 10);
    let after = cpu_group(&real.proc, pid).map(|g| g.path().to_string());
    // Back to the root group before any assertion, so the test group can be removed.
    let back = match cpu_group(&real.proc, pid) {
        Some(CpuGroup::V1(_)) => real.root.join("cpu"),
        _ => real.root.clone(),
    };
    let kids: Vec<u32> = engine_processes_in(&real, pid);
    for p in std::iter::once(pid).chain(kids.iter().copied()) {
        let _ = write(&back.join("cgroup.procs"), &p.to_string());
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir(back.join(&real.group));
    let said = said.unwrap().unwrap();
    assert!(said.starts_with("2 engine processes"), "{said}");
    assert_eq!(after.as_deref(), Some(format!("/{}", real.group).as_str()));
    assert_eq!(kids.len(), 1, "the stand-in's child moved with it");
}

/// The stand-in's children, wherever they are now.
fn engine_processes_in(cg: &Cgroups, pid: u32) -> Vec<u32> {
    std::fs::read_dir(&cg.proc)
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            let stat = std::fs::read_to_string(cg.proc.join(p.to_string()).join("stat"))
                .unwrap_or_default();
            stat.rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().nth(1))
                .and_then(|x| x.parse::<u32>().ok())
                == Some(pid)
        })
        .collect()
}
