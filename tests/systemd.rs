//! The shipped systemd units under a real systemd: Debian with systemd as PID 1 in a container
//! (berth/systemd:bookworm, from Debian packages) on the host's network, talking to the host's
//! engine. The test installs `systemd/berth.service` and both socket units as shipped (only the
//! sockets' addresses are overridden by a drop-in), starts berth, waits for READY=1, adds a
//! tenant with a disk quota (loop device, mount, e2fsck under the unit's sandbox), and restarts
//! the service under HTTPS load with no refused or failed request.
//!
//! The state dir sits at the same path inside and out, on a shared mount, so the loop mounts the
//! agent makes in the container are the ones dockerd binds tenant volumes from. The engine is
//! the host's: a stand-in `docker.service` (oneshot, true) satisfies the unit's Requires=.

mod common;
use common::*;
use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, atomic::AtomicBool, atomic::Ordering::SeqCst},
    time::Duration,
};

const SLOT: u16 = 91;
const ROOT: &str = "/var/lib/berth-systemd-test";
const BOX: &str = "berth-systemd-test";

/// A command inside the systemd container.
fn inside(cmd: &str) -> std::process::Output {
    Command::new("docker")
        .args(["exec", BOX, "sh", "-c", cmd])
        .output()
        .unwrap()
}

fn inside_ok(cmd: &str) -> String {
    let o = inside(cmd);
    assert!(
        o.status.success(),
        "in the container: {cmd}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Undoes everything: the container, the loop mounts under the state dir, the shared mount.
fn teardown() {
    let _ = Command::new("docker").args(["rm", "-f", BOX]).output();
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "for m in $(grep ' {ROOT}/' /proc/mounts | cut -d' ' -f2 | sort -r); do umount -l $m; done; \
             umount -l {ROOT} 2>/dev/null; rm -rf {ROOT}"
        ))
        .status();
}

struct Teardown;
impl Drop for Teardown {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let o = inside("journalctl -u berth --no-pager | tail -n 60");
            eprintln!("--- journal ---\n{}", String::from_utf8_lossy(&o.stdout));
        }
        teardown();
    }
}

fn config(ns: &str, http: u16, https: u16) -> String {
    let templates = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("templates");
    format!(
        "state_dir: {ROOT}/state\ntemplates_dir: {}\ninstances_dir: {ROOT}/instances\nnamespace: {ns}\n\
         base_domain: apps.test\napi:\n  socket: /run/berth/berth.sock\n\
         network:\n  subnet_pool: 10.250.{SLOT}.0/24\n  subnet_prefix: 28\n\
         ports:\n  first: {}\n  last: {}\nresync_interval: 2s\nmetrics:\n  listen: none\n\
         plans:\n  disk: {{memory: 256m, cpus: 0.5, pids: 200, disk: 128m}}\n\
         proxy:\n  http: 127.0.0.1:{http}\n  https: 127.0.0.1:{https}\n",
        templates.display(),
        10000 + SLOT * 50,
        10000 + SLOT * 50 + 49,
    )
}

/// The container: systemd as PID 1, the host's network and engine, loop devices, cgroups.
fn start_box() {
    let berth = env!("CARGO_BIN_EXE_berth");
    let templates = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("templates");
    let t = templates.display();
    sh(&format!(
        "docker run -d --pull never --name {BOX} --cap-add ALL --cap-drop SYS_RESOURCE \
         --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
         --stop-signal SIGRTMIN+3 --network host --tmpfs /run --tmpfs /run/lock \
         -v /sys/fs/cgroup:/sys/fs/cgroup:rw -v /dev:/dev \
         --device-cgroup-rule='b 7:* rmw' --device-cgroup-rule='c 10:237 rmw' \
         -v /run/docker.sock:/run/docker.sock -v {ROOT}:{ROOT}:rshared -v {t}:{t}:ro \
         -v {ROOT}/etc:/etc/berth -v {berth}:/usr/local/bin/berth:ro berth/systemd:bookworm"
    ));
    wait_for(
        Duration::from_secs(60),
        || {
            let s = inside("systemctl is-system-running");
            let s = String::from_utf8_lossy(&s.stdout);
            s.starts_with("running") || s.starts_with("degraded")
        },
        "systemd up in the container",
    );
}

/// The shipped units, plus a drop-in per socket moving it to this test's loopback port and a
/// stand-in docker.service (the engine is the host's).
fn install_units(http: u16, https: u16) {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("systemd");
    for u in ["berth.service", "berth-http.socket", "berth-https.socket"] {
        sh(&format!(
            "docker cp {} {BOX}:/etc/systemd/system/{u}",
            repo.join(u).display()
        ));
    }
    inside_ok(&format!(
        "mkdir -p /etc/systemd/system/berth-http.socket.d /etc/systemd/system/berth-https.socket.d && \
         printf '[Socket]\\nListenStream=\\nListenStream=127.0.0.1:{http}\\n' > /etc/systemd/system/berth-http.socket.d/test.conf && \
         printf '[Socket]\\nListenStream=\\nListenStream=127.0.0.1:{https}\\n' > /etc/systemd/system/berth-https.socket.d/test.conf && \
         printf '[Unit]\\nDescription=the host engine\\n[Service]\\nType=oneshot\\nRemainAfterExit=yes\\nExecStart=/bin/true\\n' > /etc/systemd/system/docker.service && \
         systemctl daemon-reload && systemctl enable --now berth-http.socket berth-https.socket"
    ));
}

fn berth(args: &str) -> String {
    inside_ok(&format!(
        "BERTH_LOG=warn berth --config /etc/berth/berth.yaml {args}"
    ))
}

/// HTTPS requests to the tenant in a loop until `stop`: (answers that were 200, the others).
fn load(
    https: u16,
    ca: &Path,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(u32, Vec<String>)> {
    let ca = ca.to_path_buf();
    std::thread::spawn(move || {
        let (mut ok, mut bad) = (0, vec![]);
        while !stop.load(SeqCst) {
            let (code, err) = https_status(&ca, "sd1.apps.test", https, 30);
            if code == "200" {
                ok += 1;
            } else {
                bad.push(format!("{code} {err}"));
            }
        }
        (ok, bad)
    })
}

#[test]
fn the_shipped_units_run_berth_with_disk_quotas_and_restart_it_under_load_refusing_nothing() {
    let Some(_serial) = docker_test() else { return };
    let h = Harness::new(SLOT);
    teardown();
    let _t = Teardown;
    let (http, https) = (18000 + SLOT * 2, 18001 + SLOT * 2);
    // A shared mount point: mounts made inside the container propagate to the host.
    sh(&format!(
        "mkdir -p {ROOT}/etc {ROOT}/instances && mount --bind {ROOT} {ROOT} && mount --make-rshared {ROOT}"
    ));
    std::fs::write(format!("{ROOT}/etc/berth.yaml"), config(&h.ns, http, https)).unwrap();
    start_box();
    install_units(http, https);

    // Type=notify: `systemctl start` returns once berth said READY=1 (after its first pass).
    inside_ok("systemctl start berth");
    let show = inside_ok("systemctl show -p ActiveState -p SubState -p NRestarts berth");
    assert!(
        show.contains("ActiveState=active") && show.contains("SubState=running"),
        "{show}"
    );

    berth(
        "add sd1 --template demo --plan disk --set site_title=sd1 --set admin_email=ops@sd1.test --set brand_color=#336699 --wait",
    );
    let status: serde_json::Value = serde_json::from_str(&berth("status sd1 -o json")).unwrap();
    assert_eq!(status["phase"], "running", "{status}");
    assert_eq!(status["disk"]["state"], "enforced", "{status}");
    assert_eq!(status["egress"]["enforced"], true, "{status}");
    // The tenant's database lives on its disk, mounted where dockerd sees it.
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(
        mounts.contains(&format!("{ROOT}/state/disks/sd1")),
        "{mounts}"
    );

    let ca = Path::new(ROOT).join("ca.pem");
    std::fs::write(&ca, berth("ca")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let loader = load(https, &ca, stop.clone());
    std::thread::sleep(Duration::from_secs(2));
    inside_ok("systemctl restart berth");
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, SeqCst);
    let (ok, bad) = loader.join().unwrap();
    assert!(
        bad.is_empty(),
        "failed requests across the restart: {bad:?}"
    );
    assert!(ok >= 5, "only {ok} requests answered");

    let status = inside("systemctl status berth --no-pager");
    let text = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(
        status.status.success() && text.contains("active (running)"),
        "{text}"
    );
    let show = inside_ok("systemctl show -p NRestarts -p Result berth");
    assert!(
        show.contains("NRestarts=0") && show.contains("Result=success"),
        "{show}"
    );
    inside_ok("systemctl stop berth berth-http.socket berth-https.socket");
    h.clean_docker();
}
