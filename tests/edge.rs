//! The agent's proxy in front of real tenants on a real engine: HTTPS on subdomains and path
//! mounts with certificates from berth's CA, 421/404/308, maintenance page on suspend.

mod common;

use common::{Harness, challtest::ChallTest, curl, docker_test};
use std::process::Command;

const SLOT: u16 = 51;

fn instance(h: &Harness, tenant: &str, extra: &str) {
    let yaml = format!(
        "tenant: {tenant}\ntemplate: demo\nversion: \"1\"\nplan: small\n{extra}parameters:\n  site_title: {tenant}\n  admin_email: ops@{tenant}.test\n  brand_color: \"#336699\"\n"
    );
    std::fs::write(h.path(&format!("instances/{tenant}.yaml")), yaml).unwrap();
}

#[test]
fn tenants_are_served_over_https_on_subdomains_and_paths_and_suspended_ones_show_maintenance() {
    let Some(_g) = docker_test() else { return };
    let mut h = Harness::new(SLOT);
    let (http, https) = h.with_proxy(SLOT);
    instance(&h, "acme", "");
    instance(&h, "globex", "paths: [shared.test/globex]\n");
    instance(&h, "initech", "");
    h.start();
    h.wait_running(&["acme", "globex", "initech"]);
    std::fs::write(h.path("ca.pem"), h.cli_ok(&["ca"])).unwrap();

    for t in ["acme", "globex", "initech"] {
        let (code, body) = curl(&h, https, "https", &format!("{t}.apps.test"), "/", &[]);
        assert_eq!(code, "200", "{t}: {body}");
        assert!(body.contains(&format!("tenant={t}")), "{t}: {body}");
    }
    let (code, body) = curl(&h, https, "https", "shared.test", "/globex/", &[]);
    assert_eq!(
        (code.as_str(), body.contains("tenant=globex")),
        ("200", true),
        "{body}"
    );

    // SNI says acme, Host says globex.
    let (code, _) = curl(
        &h,
        https,
        "https",
        "acme.apps.test",
        "/",
        &["-H", "Host: globex.apps.test"],
    );
    assert_eq!(code, "421");
    let (code, body) = curl(&h, http, "http", "acme.apps.test", "/x?y=1", &["-D", "-"]);
    assert_eq!(code, "308");
    assert!(
        body.to_ascii_lowercase()
            .contains(&format!("location: https://acme.apps.test:{https}/x?y=1")),
        "{body}"
    );
    let (code, body) = curl(&h, http, "http", "nobody.test", "/", &[]);
    assert_eq!(code, "404");
    assert!(!body.contains("acme"));

    h.cli_ok(&["suspend", "initech"]);
    common::wait_for(
        std::time::Duration::from_secs(60),
        || {
            h.reconcile();
            curl(&h, https, "https", "initech.apps.test", "/", &[]).0 == "503"
        },
        "initech shows the maintenance page",
    );
    let (_, body) = curl(&h, https, "https", "initech.apps.test", "/", &[]);
    assert!(body.contains("maintenance"), "{body}");

    let certs = h.cli_ok(&["cert", "ls"]);
    for d in ["acme.apps.test", "globex.apps.test", "shared.test"] {
        assert!(certs.contains(d), "{certs}");
    }

    // A typo in globex's file freezes it: it keeps serving, by name and by path, until fixed.
    std::fs::write(
        h.path("instances/globex.yaml"),
        "tenant: globex\ntemplate: demo\nlimits: {memroy: 1g}\n",
    )
    .unwrap();
    h.reconcile();
    h.reconcile();
    assert_eq!(h.status("globex")["phase"], "invalid");
    let (code, body) = curl(&h, https, "https", "globex.apps.test", "/", &[]);
    assert_eq!(
        (code.as_str(), body.contains("tenant=globex")),
        ("200", true),
        "{body}"
    );
    let (code, _) = curl(&h, https, "https", "shared.test", "/globex/", &[]);
    assert_eq!(code, "200");
    h.kill9();
}

/// The token `berth domain add` prints on its DNS line, between the quotes.
fn token_from(add_output: &str) -> String {
    let line = add_output
        .lines()
        .find(|l| l.trim_start().starts_with("DNS:"))
        .unwrap_or_else(|| panic!("no DNS line in {add_output}"));
    line.split('"').nth(1).unwrap().to_string()
}

#[test]
fn a_custom_domain_is_routed_over_https_only_after_proof_and_moves_only_on_a_fresh_one() {
    let Some(_g) = docker_test() else { return };
    let chall = ChallTest::start(19412, 19413);
    let mut h = Harness::new(52);
    let (_, https) = h.with_proxy(52);
    let mut cfg = std::fs::read_to_string(h.path("berth.yaml")).unwrap();
    cfg.push_str(&format!("domains:\n  resolver: 127.0.0.1:{}\n", chall.dns));
    std::fs::write(h.path("berth.yaml"), cfg).unwrap();
    instance(&h, "acme", "");
    instance(&h, "globex", "");
    h.start();
    h.wait_running(&["acme", "globex"]);
    std::fs::write(h.path("ca.pem"), h.cli_ok(&["ca"])).unwrap();
    let shop = |h: &Harness| curl(h, https, "https", "shop.example.test", "/", &[]);

    // Claimed but unproven: not routed, no certificate for it (handshake refused).
    let token = token_from(&h.cli_ok(&["domain", "add", "acme", "shop.example.test"]));
    h.reconcile();
    assert_ne!(shop(&h).0, "200", "an unproven domain is not routed");
    chall.set_txt("_berth.shop.example.test", "berth-verify=not-it");
    let wrong = h.cli(&[
        "domain",
        "verify",
        "acme",
        "shop.example.test",
        "--method",
        "dns",
    ]);
    assert!(!wrong.status.success(), "a wrong token is refused");
    assert_ne!(shop(&h).0, "200");

    chall.set_txt("_berth.shop.example.test", &token);
    h.cli_ok(&[
        "domain",
        "verify",
        "acme",
        "shop.example.test",
        "--method",
        "dns",
    ]);
    common::wait_for(
        std::time::Duration::from_secs(30),
        || shop(&h).1.contains("tenant=acme"),
        "shop.example.test serves acme over HTTPS",
    );

    // globex claims it: acme keeps it while the (still published) old token is not globex's.
    let globex_token = token_from(&h.cli_ok(&["domain", "add", "globex", "shop.example.test"]));
    assert_ne!(globex_token, token, "every claim gets its own token");
    let hijack = h.cli(&[
        "domain",
        "verify",
        "globex",
        "shop.example.test",
        "--method",
        "dns",
    ]);
    assert!(
        !hijack.status.success(),
        "acme's proof does not move the domain"
    );
    h.reconcile();
    assert!(shop(&h).1.contains("tenant=acme"));

    // A fresh proof by globex moves it: out of acme's file, into globex's, routed there.
    chall.set_txt("_berth.shop.example.test", &globex_token);
    h.cli_ok(&[
        "domain",
        "verify",
        "globex",
        "shop.example.test",
        "--method",
        "dns",
    ]);
    common::wait_for(
        std::time::Duration::from_secs(30),
        || shop(&h).1.contains("tenant=globex"),
        "shop.example.test moves to globex",
    );
    let acme_file = std::fs::read_to_string(h.path("instances/acme.yaml")).unwrap();
    assert!(!acme_file.contains("shop.example.test"), "{acme_file}");
    assert!(h.cli_ok(&["domain", "ls"]).contains("globex"));

    // Removing the tenant unroutes its domains at once.
    h.cli_ok(&["rm", "globex"]);
    common::wait_for(
        std::time::Duration::from_secs(30),
        || shop(&h).0 != "200",
        "shop.example.test unrouted after rm",
    );
    h.kill9();
}

/// Starts the agent the way systemd's socket units do: the two listening sockets held by this
/// process are passed as fds 3 and 4 with LISTEN_FDS/LISTEN_FDNAMES, and LISTEN_PID is the
/// agent's own pid (`sh` sets it, then execs berth).
fn start_socket_activated(h: &mut Harness, fds: [i32; 2]) {
    use std::os::unix::process::CommandExt;
    let child = h.spawn_agent_via(&["sh", "-c", "LISTEN_PID=$$ exec \"$0\" \"$@\""], |c| {
        c.env("LISTEN_FDS", "2").env("LISTEN_FDNAMES", "http:https");
        // SAFETY: dup2 is async-signal-safe; the source fds stay open in the parent.
        unsafe {
            c.pre_exec(move || {
                for (src, dst) in fds.iter().zip([3, 4]) {
                    if libc::dup2(*src, dst) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    });
    h.agent = Some(child);
    common::wait_for(
        std::time::Duration::from_secs(30),
        || h.cli(&["reconcile"]).status.success(),
        "restarted agent API",
    );
}

/// A socket this process keeps listening for the agent, duplicated above fd 100 so the
/// child's dup2 onto 3/4 never clobbers it.
fn held_listener(port: u16) -> (std::net::TcpListener, i32) {
    use std::os::fd::AsRawFd;
    let l = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    // SAFETY: plain fcntl on a descriptor we own.
    let fd = unsafe { libc::fcntl(l.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 100) };
    assert!(fd >= 100, "fcntl F_DUPFD");
    (l, fd)
}

#[derive(Default, Debug)]
struct Tally {
    ok: u64,
    refused: u64,
    other: Vec<String>,
    slowest_ms: u128,
}

#[test]
fn restarting_the_socket_activated_agent_refuses_no_connection() {
    use std::sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    };
    let Some(_g) = docker_test() else { return };
    let mut h = Harness::new(53);
    let (http, https) = h.with_proxy(53);
    let (_l1, http_fd) = held_listener(http);
    let (_l2, https_fd) = held_listener(https);
    instance(&h, "acme", "");
    start_socket_activated(&mut h, [http_fd, https_fd]);
    h.wait_running(&["acme"]);
    std::fs::write(h.path("ca.pem"), h.cli_ok(&["ca"])).unwrap();

    // One client opening a new HTTPS connection per request, without pause.
    let stop = Arc::new(AtomicBool::new(false));
    let graceful = Arc::new(Mutex::new(Tally::default()));
    let crash = Arc::new(Mutex::new(Tally::default()));
    let phase_crash = Arc::new(AtomicBool::new(false));
    let ca = h.path("ca.pem");
    let client = {
        let (stop, graceful, crash, phase_crash) = (
            stop.clone(),
            graceful.clone(),
            crash.clone(),
            phase_crash.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let t0 = std::time::Instant::now();
                let out = Command::new("curl")
                    .args([
                        "-sS",
                        "-o",
                        "/dev/null",
                        "-w",
                        "%{http_code}",
                        "--max-time",
                        "60",
                    ])
                    .arg("--cacert")
                    .arg(&ca)
                    .args(["--resolve", &format!("acme.apps.test:{https}:127.0.0.1")])
                    .arg(format!("https://acme.apps.test:{https}/"))
                    .output()
                    .unwrap();
                let tally = if phase_crash.load(Ordering::Relaxed) {
                    &crash
                } else {
                    &graceful
                };
                let mut t = tally.lock().unwrap();
                t.slowest_ms = t.slowest_ms.max(t0.elapsed().as_millis());
                let code = String::from_utf8_lossy(&out.stdout).to_string();
                match out.status.code() {
                    Some(0) if code == "200" => t.ok += 1,
                    Some(7) => t.refused += 1,
                    c => t.other.push(format!(
                        "curl exit {c:?} status {code}: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    )),
                }
            }
        })
    };
    let pause = || std::thread::sleep(std::time::Duration::from_secs(2));
    pause();

    // `systemctl restart`: SIGTERM, the old agent finishes what it accepted and exits; the
    // sockets stay open in their holder; the new agent inherits them.
    let mut old = h.agent.take().unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(old.id() as i32, libc::SIGTERM) };
    let exited = old.wait().unwrap();
    assert!(exited.success(), "graceful stop: {exited:?}");
    start_socket_activated(&mut h, [http_fd, https_fd]);
    pause();

    // A crash: in-flight requests may die with the process, but no connection is refused.
    phase_crash.store(true, Ordering::Relaxed);
    h.kill9();
    start_socket_activated(&mut h, [http_fd, https_fd]);
    pause();
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();

    let g = graceful.lock().unwrap();
    let c = crash.lock().unwrap();
    eprintln!("graceful restart: {g:?}\ncrash restart: {c:?}");
    assert!(g.ok > 10, "the client kept going: {g:?}");
    assert_eq!(
        (g.refused, g.other.len()),
        (0, 0),
        "graceful restart: {g:?}"
    );
    assert_eq!(c.refused, 0, "crash restart refused a connection: {c:?}");
    assert!(
        c.other.len() <= 1,
        "at most the one request in flight dies: {c:?}"
    );
    assert!(c.ok > 5, "served again after the crash: {c:?}");
    let inherited = h
        .agent_log()
        .matches("using listener from socket activation")
        .count();
    assert_eq!(inherited, 6, "three agents, each inherited both sockets");
    h.kill9();
}
