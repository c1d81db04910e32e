//! The egress policy on the real engine and kernel: a test host in a network namespace of
//! this test (veth; 169.254.169.254 standing in for a cloud metadata service, 192.168.77.2 for
//! a host on the provider's private network) answers a container on a plain Docker network,
//! and never a berth tenant, unless the tenant's plan allows it. Also here, as it restarts the
//! engine too: a volume berth made is still berth's after the engine restarts.

mod common;
use common::*;
use std::{io::Write, process::Command, time::Duration};

const NS: &str = "berth-egress-t";

/// The test host: a network namespace with busybox httpd on port 80 at two addresses, and the
/// host side of its veth at 169.254.169.1 / 192.168.77.1 (also a listener of the host itself).
struct TestHost;

impl TestHost {
    fn start(www: &std::path::Path) -> TestHost {
        let _ = Command::new("ip").args(["netns", "del", NS]).status();
        let _ = Command::new("ip").args(["link", "del", "bt-eg-h"]).status();
        std::fs::write(www.join("index.html"), "metadata-credentials\n").unwrap();
        sh(&format!(
            "ip netns add {NS} && ip link add bt-eg-h type veth peer name bt-eg-n && \
             ip link set bt-eg-n netns {NS} && \
             ip addr add 169.254.169.1/24 dev bt-eg-h && ip addr add 192.168.77.1/24 dev bt-eg-h && \
             ip link set bt-eg-h up && \
             ip -n {NS} addr add 169.254.169.254/24 dev bt-eg-n && \
             ip -n {NS} addr add 192.168.77.2/24 dev bt-eg-n && \
             ip -n {NS} link set bt-eg-n up && ip -n {NS} link set lo up && \
             ip -n {NS} route add default via 169.254.169.1"
        ));
        sh(&format!(
            "ip netns exec {NS} busybox httpd -p 80 -h {}",
            www.display()
        ));
        TestHost
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ip netns pids {NS} | xargs -r kill; ip netns del {NS}; ip link del bt-eg-h"
            ))
            .status();
    }
}

/// A listener on the host's own veth address: what a tenant must not reach on the host.
fn host_listener() -> std::thread::JoinHandle<()> {
    let l = std::net::TcpListener::bind("169.254.169.1:19480").unwrap();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            // Read the request first: closing with unread bytes would reset the connection.
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = std::io::Read::read(&mut s, &mut [0u8; 512]);
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\nthe-host\n");
        }
    })
}

/// An HTTP GET from inside `container` to `addr` (host/port) with bash's /dev/tcp (Debian's
/// static busybox wget crashes there): the body's last line, or None when nothing answered
/// within 3 s.
fn fetch(container: &str, addr: &str) -> Option<String> {
    let script =
        format!("exec 3<>/dev/tcp/{addr} && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3");
    let o = docker(&["exec", container, "timeout", "3", "bash", "-c", &script]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    (o.status.success() && out.starts_with("HTTP/"))
        .then(|| out.trim().lines().last().unwrap_or("").to_string())
}

/// True when `container` runs and, asked from inside it, `addr` does not answer: the probe
/// itself must work (a `docker exec` that fails proves nothing).
fn blocked(container: &str, addr: &str) -> bool {
    let running = docker_ok(&["inspect", "-f", "{{.State.Running}}", container]);
    assert_eq!(
        running, "true",
        "{container} is not running: the probe would prove nothing"
    );
    let o = docker(&["exec", container, "true"]);
    assert!(
        o.status.success(),
        "cannot exec in {container}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    fetch(container, addr).is_none()
}

/// A positive control: what must answer gets three tries (one once failed under CI load).
fn fetch_ok(container: &str, addr: &str) -> Option<String> {
    (0..3).find_map(|_| fetch(container, addr))
}

/// dockerd stopped and started again the way setup-docker.sh starts it (with live-restore the
/// containers keep running through it).
fn restart_dockerd() {
    sh(
        "pkill -TERM -x dockerd; for i in $(seq 1 120); do pgrep -x dockerd >/dev/null || break; sleep 0.5; done; \
        (setsid dockerd >>/var/log/dockerd.log 2>&1 </dev/null &); \
        for i in $(seq 1 120); do docker info >/dev/null 2>&1 && exit 0; sleep 0.5; done; exit 1",
    );
}

/// After a restart the engine answers a create of an existing volume that no container mounts
/// with `Labels: null` (it reads the stored labels only on inspect). The relay's queue volume
/// is such a volume once its container is gone: berth refused it as "not this tenant's" until
/// something inspected it. Berth's own volume stays berth's; one made by hand stays refused.
#[test]
fn a_volume_berth_made_is_still_berths_after_the_engine_restarts() {
    use berth::runtime::{Runtime, VolumeSpec, docker::DockerRuntime, spec::owner_labels};
    let Some(_serial) = docker_test() else { return };
    let (ours, theirs) = ("bt82-_host-mail-queue", "bt82-handmade");
    for v in [ours, theirs] {
        let _ = docker(&["volume", "rm", "-f", v]);
    }
    let spec = |name: &str| VolumeSpec {
        name: name.into(),
        labels: owner_labels("bt82", berth::runtime::labels::HOST_TENANT),
        device: None,
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let engine = DockerRuntime::connect().await.unwrap();
        engine.create_volume(&spec(ours)).await.unwrap();
    });
    docker_ok(&["volume", "create", theirs]);
    restart_dockerd();
    rt.block_on(async {
        let engine = DockerRuntime::connect().await.unwrap();
        engine
            .create_volume(&spec(ours))
            .await
            .expect("berth's own volume, after the engine restarted");
        let e = engine.create_volume(&spec(theirs)).await.unwrap_err();
        assert!(e.to_string().contains("is not this tenant's"), "{e}");
    });
    for v in [ours, theirs] {
        docker_ok(&["volume", "rm", v]);
    }
}

fn instance(tenant: &str, plan: &str) -> String {
    format!(
        "tenant: {tenant}\ntemplate: demo\nversion: \"1\"\nplan: {plan}\nparameters:\n  site_title: {tenant}\n  admin_email: ops@{tenant}.test\n  brand_color: \"#336699\"\n"
    )
}

/// `berth domain verify --method http` on real DNS and a real test host: the proof is fetched
/// with the tenant's own reach. e2 (allowed 192.168.77.0/24) proves a domain served there; e1
/// (no allow) cannot prove one pointing at the same host, nor e2 one pointing at the metadata
/// service or at loopback (refused before any fetch, saying why); a wrong token is refused.
fn http_proofs_reach_only_where_the_tenant_may(
    h: &Harness,
    chall: &challtest::ChallTest,
    www: &std::path::Path,
) {
    let a = |host: &str, ip: &str| {
        chall.call(
            "/add-a",
            serde_json::json!({ "host": format!("{host}."), "addresses": [ip] }),
        )
    };
    a("shop.e2.test", "192.168.77.2");
    a("shop.e1.test", "192.168.77.2");
    a("meta.e2.test", "169.254.169.254");
    let proof = www.join(".well-known/berth-domain-verification");
    std::fs::create_dir_all(proof.parent().unwrap()).unwrap();
    let claim = |t: &str, d: &str| {
        let v: serde_json::Value =
            serde_json::from_str(&h.cli_ok(&["domain", "add", t, d, "-o", "json"])).unwrap();
        let token = v["token"]
            .as_str()
            .unwrap_or_else(|| panic!("{v}"))
            .to_string();
        std::fs::write(&proof, format!("{token}\n")).unwrap();
        token
    };
    let verify = |t: &str, d: &str| h.cli(&["domain", "verify", t, d, "--method", "http"]);
    let refused = |o: std::process::Output, says: &str| {
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(!o.status.success() && err.contains(says), "{says}: {o:?}");
    };

    claim("e2", "shop.e2.test");
    std::fs::write(&proof, "not-the-token\n").unwrap();
    refused(verify("e2", "shop.e2.test"), "does not hold the token");
    claim("e2", "shop.e2.test");
    let o = verify("e2", "shop.e2.test");
    assert!(o.status.success(), "{o:?}");
    let ls = h.cli_ok(&["domain", "ls", "-o", "json"]);
    assert!(
        ls.contains("shop.e2.test") && ls.contains("\"http\""),
        "{ls}"
    );

    claim("e1", "shop.e1.test");
    refused(verify("e1", "shop.e1.test"), "192.168.77.2 (private");
    claim("e2", "meta.e2.test");
    refused(verify("e2", "meta.e2.test"), "169.254.169.254 (link-local");
    // Any other name answers 127.0.0.1 (challtestsrv's default): the host itself.
    claim("e2", "lo.e2.test");
    refused(verify("e2", "lo.e2.test"), "127.0.0.1 (loopback");
    let _ = std::fs::remove_file(&proof);
}

#[test]
fn tenants_reach_neither_metadata_nor_private_networks_nor_the_host_unless_their_plan_allows() {
    let Some(_serial) = docker_test() else { return };
    let mut h = Harness::new(81);
    let www = h.path("www");
    std::fs::create_dir_all(&www).unwrap();
    let _host = TestHost::start(&www);
    let _listener = host_listener();
    let chall = challtest::ChallTest::start(19416, 19417);
    let mut cfg = std::fs::read_to_string(h.path("berth.yaml")).unwrap().replace(
        "plans:\n",
        "plans:\n  relay: {memory: 256m, cpus: 0.5, pids: 200, egress: [\"192.168.77.0/24\"]}\n",
    );
    cfg.push_str(&format!("domains:\n  resolver: 127.0.0.1:{}\n", chall.dns));
    std::fs::write(h.path("berth.yaml"), cfg).unwrap();
    std::fs::write(h.path("instances/e1.yaml"), instance("e1", "small")).unwrap();
    std::fs::write(h.path("instances/e2.yaml"), instance("e2", "relay")).unwrap();
    h.start();
    h.wait_running(&["e1", "e2"]);

    // Positive control: an ordinary container on a plain Docker network reaches all three.
    let _ = docker(&["rm", "-f", "bt81-plain"]);
    let _ = docker(&["network", "rm", "bt81-plain-net"]);
    docker_ok(&[
        "network",
        "create",
        "--subnet",
        "10.251.81.0/28",
        "bt81-plain-net",
    ]);
    docker_ok(&[
        "run",
        "-d",
        "--name",
        "bt81-plain",
        "--network",
        "bt81-plain-net",
        "berth/demo:1",
        "sleep",
        "120",
    ]);
    let plain = "bt81-plain";
    let cleanup = || {
        docker(&["rm", "-f", plain]);
        docker(&["network", "rm", "bt81-plain-net"]);
    };
    let metadata = "169.254.169.254/80";
    let private = "192.168.77.2/80";
    let host = "169.254.169.1/19480";
    assert_eq!(
        fetch_ok(plain, metadata).as_deref(),
        Some("metadata-credentials")
    );
    assert_eq!(
        fetch_ok(plain, private).as_deref(),
        Some("metadata-credentials")
    );
    assert_eq!(fetch_ok(plain, host).as_deref(), Some("the-host"));

    let e1 = h.container("e1", "app");
    let e2 = h.container("e2", "app");
    assert_eq!(fetch(&e1, metadata), None, "e1 read the metadata service");
    assert_eq!(fetch(&e1, private), None, "e1 reached a private network");
    assert_eq!(fetch(&e1, host), None, "e1 reached the host");
    // The plan's allow opens exactly its network: e2 reaches 192.168.77.2, nothing else.
    assert_eq!(
        fetch_ok(&e2, private).as_deref(),
        Some("metadata-credentials")
    );
    assert_eq!(fetch(&e2, metadata), None, "e2 read the metadata service");
    assert_eq!(fetch(&e2, host), None, "e2 reached the host");
    // Inside its own network the app still reaches its database (bridged traffic passes).
    assert!(h.psql("e1", "select 1").contains('1'));
    assert!(
        h.cli_ok(&["status", "e2"]).contains(
            "egress: own network and the internet; also 192.168.77.0/24; private, shared, link-local ranges and the host dropped (in force)"
        ),
        "{}",
        h.cli_ok(&["status", "e2"])
    );
    let v = h.status("e1");
    assert_eq!(v["egress"]["enforced"], true, "{v}");
    // No IPv6 inside a tenant: no link-local path to the host's bridge either.
    let v6 = docker_ok(&[
        "exec",
        &e1,
        "cat",
        "/proc/sys/net/ipv6/conf/all/disable_ipv6",
    ]);
    assert_eq!(v6, "1");
    assert!(h.metrics().contains("berth_egress_enforced 1"));
    http_proofs_reach_only_where_the_tenant_may(&h, &chall, &www);

    // Each tenant container carries the policy in its own namespace (berth seals it when it
    // starts it, and nothing else starts it: no restart policy), IPv6 off there too.
    let pid = docker_ok(&["inspect", "-f", "{{.State.Pid}}", &e1]);
    let sealed = sh(&format!("nsenter -t {pid} -n iptables -w -S OUTPUT"));
    assert!(
        sealed.contains("-A OUTPUT -d 169.254.0.0/16 -j DROP"),
        "{sealed}"
    );
    let restart = docker_ok(&["inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}", &e1]);
    assert_eq!(
        restart, "no",
        "the engine would start e1 at boot before its rules"
    );
    let net = format!("{}-e1", h.ns);
    assert_eq!(
        docker_ok(&["network", "inspect", "-f", "{{.EnableIPv6}}", &net]),
        "false"
    );

    // Fail closed: berth's chains flushed and unhooked (a firewall reload), then dockerd
    // restarted: probed at once, the tenant reaches nothing it is denied.
    sh(
        "iptables -w -F b-bt81-fwd && iptables -w -D DOCKER-USER -j b-bt81-fwd && iptables -w -D INPUT -j b-bt81-in",
    );
    assert!(
        blocked(&e1, metadata),
        "e1 read the metadata service: chains flushed"
    );
    assert!(blocked(&e1, host), "e1 reached the host: chains flushed");
    assert_eq!(
        fetch_ok(&e2, private).as_deref(),
        Some("metadata-credentials"),
        "e2's allow is sealed with it"
    );
    restart_dockerd();
    if docker_ok(&["inspect", "-f", "{{.State.Running}}", &e1]) == "true" {
        assert!(
            blocked(&e1, metadata),
            "e1 read the metadata service: dockerd restarted"
        );
        assert!(
            blocked(&e1, private),
            "e1 reached a private network: dockerd restarted"
        );
    }
    // Stopped behind berth's back (what a reboot does): the engine leaves it stopped and
    // berth starts it sealed.
    let _ = docker(&["kill", &e1]);
    h.wait_running(&["e1"]);
    assert!(
        blocked(&e1, metadata),
        "e1 read the metadata service after a restart"
    );
    assert!(
        blocked(&e1, private),
        "e1 reached a private network after a restart"
    );
    // Started by someone else (`docker restart`): sealed as the engine reports the start.
    docker_ok(&["restart", "-t", "0", &e2]);
    common::wait_for(
        Duration::from_secs(20),
        || {
            let pid = docker_ok(&["inspect", "-f", "{{.State.Pid}}", &e2]);
            let o = Command::new("nsenter")
                .args(["-t", &pid, "-n", "iptables", "-w", "-S", "OUTPUT"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).contains("169.254.0.0/16")
        },
        "e2 sealed after a docker restart",
    );
    assert!(
        blocked(&e2, metadata),
        "e2 read the metadata service after docker restart"
    );
    // The host's chains come back within the recheck interval (30 s).
    let hooked = || {
        Command::new("iptables")
            .args(["-w", "-C", "DOCKER-USER", "-j", "b-bt81-fwd"])
            .status()
            .unwrap()
            .success()
    };
    common::wait_for(
        Duration::from_secs(45),
        || {
            h.reconcile();
            hooked()
        },
        "the host's rules restored within the recheck interval",
    );
    assert_eq!(fetch(&e1, host), None, "e1 reached the host");

    // Purge takes the tenant's rules with it.
    h.cli_ok(&["rm", "e2", "--purge"]);
    let gone = || {
        let rules = Command::new("iptables")
            .args(["-w", "-S", "b-bt81-fwd"])
            .output()
            .unwrap();
        !String::from_utf8_lossy(&rules.stdout).contains("192.168.77.0/24")
    };
    wait_for(
        Duration::from_secs(60),
        || {
            h.reconcile();
            gone()
        },
        "e2's allow removed after purge",
    );
    cleanup();
}
