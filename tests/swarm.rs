//! Swarm mode on a real multi-node swarm: three nodes, each a container running Debian's
//! dockerd (scripts/swarm-nodes.sh: a manager and two workers joined over their own bridge
//! network), driven by the same CLI and served through the same edge as one host. Tenants are
//! placed on different nodes; a tenant's container cannot reach another tenant's published
//! port, its own node or anything private (each node's egress guard), but reaches its own
//! database; a backup and a restore run on a worker; a fleet upgrade crosses the nodes; a node
//! stopped is reported by status and /metrics and its tenant comes back with it; a tenant whose
//! node is gone for good is moved to another node from its backup; a purge leaves nothing
//! behind on the swarm. Jobs run and the stats sweep reads containers on the nodes; a tenant
//! on a sleeping plan scales to nothing and its first request wakes it.

mod common;

use common::{Harness, curl, docker_test, https_status, sample, sh, wait_for};
use serde_json::Value;
use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

const SLOT: u16 = 111;

/// The local swarm, removed when dropped.
struct Swarm {
    dir: PathBuf,
    prefix: String,
    engine: String,
}

impl Swarm {
    fn up(nodes: usize, images: &[&str]) -> Swarm {
        let dir = std::env::temp_dir().join(format!("berth-swarm-{SLOT}"));
        let prefix = format!("bt{SLOT}sw");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/swarm-nodes.sh");
        let run = |args: &[&str]| {
            let o = Command::new(&script).args(args).output().unwrap();
            assert!(
                o.status.success(),
                "swarm-nodes.sh {args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            String::from_utf8_lossy(&o.stdout).to_string()
        };
        let d = dir.to_str().unwrap();
        run(&["down", d, &prefix]);
        let n = nodes.to_string();
        let subnet = format!("10.231.{SLOT}.0/24");
        let mut args = vec!["up", d, &prefix, &subnet, &n];
        args.extend(images);
        let engine = run(&args);
        Swarm {
            dir,
            prefix,
            engine,
        }
    }

    /// The docker CLI against one node's engine (the test's own look inside, never berth's).
    fn docker(&self, node: &str, args: &[&str]) -> Output {
        let sock = self.dir.join(node).join("sock/docker.sock");
        Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .args(args)
            .output()
            .unwrap()
    }

    fn docker_ok(&self, node: &str, args: &[&str]) -> String {
        let o = self.docker(node, args);
        assert!(
            o.status.success(),
            "docker on {node} {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    fn manager(&self) -> String {
        format!("{}-m1", self.prefix)
    }

    /// The running task container of `service` on `node`.
    fn task(&self, node: &str, service: &str) -> String {
        let f = format!("label=com.docker.swarm.service.name={service}");
        let id = self.docker_ok(node, &["ps", "-q", "-f", &f]);
        assert!(!id.is_empty(), "no running task of {service} on {node}");
        id.lines().next().unwrap().to_string()
    }

    /// Runs `sh -c cmd` in `service`'s task on `node`; its exit code.
    fn exec(&self, node: &str, service: &str, cmd: &str) -> i32 {
        let id = self.task(node, service);
        let o = self.docker(node, &["exec", &id, "sh", "-c", cmd]);
        o.status.code().unwrap_or(-1)
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/swarm-nodes.sh");
        let _ = Command::new(script)
            .args(["down", self.dir.to_str().unwrap(), &self.prefix])
            .output();
    }
}

/// The node holding `tenant` and its address, from `berth status`.
fn placement(h: &Harness, tenant: &str) -> (String, String, bool) {
    let s = h.status(tenant);
    let n = s["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|c| c["node"].as_object().cloned())
        .unwrap_or_else(|| panic!("{tenant} has no node: {s}"));
    (
        n["name"].as_str().unwrap().into(),
        n["addr"].as_str().unwrap().into(),
        n["ready"].as_bool().unwrap(),
    )
}

/// Stops `node` (its container) and waits until `tenant`, which it holds, is reported down.
fn stop_node(h: &Harness, node: &str, tenant: &str) {
    common::docker_ok(&["stop", "-t", "1", node]);
    wait_for(
        Duration::from_secs(90),
        || {
            h.reconcile();
            !placement(h, tenant).2
        },
        "the node reported down",
    );
}

fn page(h: &Harness, https: u16, tenant: &str) -> String {
    let host = format!("{tenant}.apps.test");
    curl(h, https, "https", &host, "/", &["--max-time", "10"]).1
}

/// One statement in the tenant's database, run in its task on its node.
fn psql(sw: &Swarm, h: &Harness, tenant: &str, sql: &str) -> String {
    let (node, _, _) = placement(h, tenant);
    let id = sw.task(&node, &h.container(tenant, "db"));
    let cmd = format!(
        "PGPASSWORD=$(cat /run/secrets/db_password) psql -qtA -h 127.0.0.1 -U app -d app -c \"{sql}\""
    );
    sw.docker_ok(&node, &["exec", &id, "sh", "-c", &cmd])
}

#[test]
fn tenants_run_on_a_three_node_swarm_through_the_same_cli_and_edge() {
    let Some(_g) = docker_test() else { return };
    let sw = Swarm::up(
        3,
        &[
            "berth/demo:1",
            "berth/demo:2",
            "berth/postgres:15",
            "berth/netguard:bookworm",
        ],
    );
    let mut h = Harness::new(SLOT);
    // The demo plus a job every five seconds; a plan whose tenants sleep after 5 idle seconds.
    h.own_demo_template(|t| {
        t + "\njobs:\n  tick:\n    schedule: \"*/5 * * * * *\"\n    service: app\n    command: [\"/bin/busybox\", \"date\", \"+tick-%s\"]\n"
    });
    let (_, https) = h.with_proxy(SLOT);
    // Swarm mode has no shared database server (it would need one per node): the harness's
    // default section goes, the swarm's engine section comes.
    let cfg = std::fs::read_to_string(h.path("berth.yaml")).unwrap();
    let (before, rest) = cfg.split_once("shared_database:").unwrap();
    let after = rest.split_once("connection_limit: 5\n").unwrap().1;
    let cfg = format!("{before}{after}{}", sw.engine).replace(
        "plans:\n",
        "plans:\n  napping: {memory: 256m, cpus: 0.5, pids: 200, sleep_after: 5s}\n",
    );
    std::fs::write(h.path("berth.yaml"), cfg).unwrap();
    h.start();
    std::fs::write(h.path("ca.pem"), h.cli_ok(&["ca"])).unwrap();
    let tenants = ["acme", "globex", "initech"];
    for t in tenants {
        h.cli_ok(&["add", t, "--template", "demo"]);
        // One at a time: each takes the node with the most memory left (ties by name), so acme
        // gets the manager and the others a worker each. Added at once, one pass would place
        // them in any order, and initech (the node stopped below) could get the manager.
        wait_for(
            Duration::from_secs(120),
            || {
                h.reconcile();
                h.status(t)["containers"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|c| c["node"].is_object()))
            },
            "the tenant placed on a node",
        );
    }
    h.wait_running_within(&tenants, Duration::from_secs(240));

    // Placed one per node (each takes the node with the most memory left), served by the edge.
    let placed: Vec<(String, String, bool)> = tenants.iter().map(|t| placement(&h, t)).collect();
    let mut nodes: Vec<&String> = placed.iter().map(|p| &p.0).collect();
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes.len(), 3, "one tenant per node: {placed:?}");
    for t in tenants {
        let body = page(&h, https, t);
        assert!(
            body.contains(&format!("tenant={t} version=1")),
            "{t}: {body}"
        );
    }
    let ls = h.cli_ok(&["ls"]);
    assert!(
        ls.contains(&format!("{}/{}", placed[1].0, placed[1].1)),
        "{ls}"
    );
    let cap: Value = serde_json::from_str(&h.cli_ok(&["capacity", "-o", "json"])).unwrap();
    let per_node: Vec<u64> = cap["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["tenants"].as_u64().unwrap())
        .collect();
    assert_eq!(per_node, [1, 1, 1], "one tenant on each node: {cap}");
    assert!(h.cli_ok(&["capacity"]).contains("MEMORY LIMITS"));

    // Isolation across nodes. The host reaches globex's published port (the edge's path) …
    let (acme_node, acme_addr, _) = placed[0].clone();
    let (_, globex_addr, _) = placed[1].clone();
    let globex_port = h.web("globex").port();
    let direct = sh(&format!(
        "curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 http://{globex_addr}:{globex_port}/"
    ));
    assert_eq!(direct, "200", "the edge's path to globex's node");
    // … acme's container does not, nor its own node's ports, nor the node itself; it reaches
    // its own database on its overlay network.
    let app = h.container("acme", "app");
    let acme_port = h.web("acme").port();
    for (addr, port, what) in [
        (globex_addr.as_str(), globex_port, "globex's published port"),
        (
            acme_addr.as_str(),
            acme_port,
            "its own node's published port",
        ),
        (acme_addr.as_str(), 2377, "its node's swarm manager port"),
    ] {
        let rc = sw.exec(
            &acme_node,
            &app,
            &format!("busybox nc -w 3 {addr} {port} </dev/null"),
        );
        assert_ne!(rc, 0, "acme reached {what} ({addr}:{port})");
    }
    assert_eq!(
        sw.exec(&acme_node, &app, "busybox nc -w 3 db 5432 </dev/null"),
        0,
        "acme's app reaches its own database"
    );
    let node_container = &acme_node;
    let drops = sh(&format!(
        "docker exec {node_container} iptables -L b-{}-fwd -v -n -x | awk '/DROP/ && $9 == \"10.0.0.0/8\" {{print $1}}'",
        h.ns
    ));
    assert!(
        drops.trim().parse::<u64>().unwrap_or(0) > 0,
        "the node's guard dropped acme's packets to 10/8: {drops:?}"
    );

    // A backup and a restore of a tenant on a worker.
    let worker = tenants
        .iter()
        .copied()
        .find(|t| !placement(&h, t).0.ends_with("-m1"))
        .unwrap();
    psql(
        &sw,
        &h,
        worker,
        "create table notes(t text); insert into notes values ('kept')",
    );
    let backup: Value = serde_json::from_str(&h.cli_ok(&["backup", worker, "-o", "json"])).unwrap();
    let id = backup["id"].as_str().unwrap().to_string();
    psql(&sw, &h, worker, "delete from notes");
    h.cli_ok(&["restore", worker, "--from", &id]);
    assert_eq!(psql(&sw, &h, worker, "select t from notes"), "kept");

    // A fleet upgrade whose waves cross the nodes, gated by berth's probes on each node.
    h.cli_ok(&["upgrade", "demo", "--to", "2", "--wait"]);
    for t in tenants {
        assert_eq!(h.status(t)["version"], "2");
        let body = page(&h, https, t);
        assert!(
            body.contains(&format!("tenant={t} version=2")),
            "{t}: {body}"
        );
    }

    // Jobs run on the node holding the tenant, through its engine; the stats sweep reads the
    // tasks' containers there.
    wait_for(
        Duration::from_secs(60),
        || {
            let j: Value =
                serde_json::from_str(&h.cli_ok(&["jobs", "acme", "-o", "json"])).unwrap();
            j["tick"]["runs"].as_array().is_some_and(|runs| {
                runs.iter().any(|r| {
                    r["exit_code"] == 0 && r["output_tail"].as_str().unwrap_or("").contains("tick-")
                })
            })
        },
        "acme's job ran on its node",
    );
    wait_for(
        Duration::from_secs(60),
        || {
            let m = h.metrics();
            ["app", "db"].iter().all(|s| {
                m.lines().any(|l| {
                    l.starts_with("berth_container_memory_bytes{")
                        && l.contains("tenant=\"acme\"")
                        && l.contains(&format!("service=\"{s}\""))
                        && l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) > Some(0.0)
                })
            })
        },
        "acme's containers' memory in /metrics",
    );

    // A node lost: status and /metrics say so; the others keep serving; it comes back.
    let (lost_node, lost_addr, _) = placement(&h, "initech");
    assert!(lost_node.contains("-w"), "initech on a worker: {lost_node}");
    stop_node(&h, &lost_node, "initech");
    let st = h.status("initech");
    let err = st["error"].as_str().unwrap_or_default();
    assert!(err.contains(&lost_node) && err.contains("down"), "{st}");
    assert_eq!(
        sample(
            &h.metrics(),
            &format!("berth_instance_node_ready{{tenant=\"initech\",node=\"{lost_node}\"}}")
        ),
        Some(0.0)
    );
    let ls = h.cli_ok(&["ls"]);
    assert!(
        ls.contains(&format!("{lost_node} DOWN {lost_addr}")),
        "{ls}"
    );
    assert!(page(&h, https, "acme").contains("tenant=acme"));
    common::docker_ok(&["start", &lost_node]);
    h.wait_running_within(&["initech"], Duration::from_secs(180));
    assert!(page(&h, https, "initech").contains("tenant=initech version=2"));
    let (code, _) = https_status(&h.path("ca.pem"), "initech.apps.test", https, 10);
    assert_eq!(code, "200");

    // The node lost for good: the operator moves initech to acme's node from its backup.
    psql(
        &sw,
        &h,
        "initech",
        "create table notes(t text); insert into notes values ('moved')",
    );
    h.cli_ok(&["backup", "initech"]);
    stop_node(&h, &lost_node, "initech");
    let refused = h.cli(&["move", "initech", "--to", &acme_node]);
    assert!(!refused.status.success(), "a move without --from-backup");
    let o = h.cli(&["move", "initech", "--to", "no-such-node", "--from-backup"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no swarm node named"));
    h.cli_ok(&["move", "initech", "--to", &acme_node, "--from-backup"]);
    assert_eq!(placement(&h, "initech").0, acme_node);
    assert_eq!(psql(&sw, &h, "initech", "select t from notes"), "moved");
    assert!(page(&h, https, "initech").contains("tenant=initech version=2"));
    common::docker_ok(&["start", &lost_node]);

    // A purge leaves no service, network or secret of the tenant on the swarm.
    h.cli_ok(&["rm", "globex", "--purge"]);
    wait_for(
        Duration::from_secs(120),
        || {
            h.reconcile();
            let m = sw.manager();
            let services = sw.docker_ok(&m, &["service", "ls", "--format", "{{.Name}}"]);
            let nets = sw.docker_ok(&m, &["network", "ls", "--format", "{{.Name}}"]);
            let f = "label=io.berth.tenant=globex";
            let secrets = sw.docker_ok(&m, &["secret", "ls", "-q", "-f", f]);
            !services.contains("globex") && !nets.contains("globex") && secrets.is_empty()
        },
        "globex gone from the swarm",
    );

    // A tenant on a sleeping plan: idle, its services scale to nothing; the first request
    // through the edge wakes it on its node and is answered.
    h.cli_ok(&["add", "hooli", "--template", "demo", "--plan", "napping"]);
    // (It may fall asleep before a pass shows it running: only a running tenant does.)
    wait_for(
        Duration::from_secs(180),
        || {
            h.reconcile();
            matches!(
                h.status("hooli")["phase"].as_str(),
                Some("running" | "asleep")
            )
        },
        "hooli running (or already asleep)",
    );
    wait_for(
        Duration::from_secs(60),
        || h.status("hooli")["phase"] == "asleep",
        "hooli asleep",
    );
    let (node, _, _) = placement(&h, "hooli");
    let app = h.container("hooli", "app");
    wait_for(
        Duration::from_secs(30),
        || {
            sw.docker_ok(&node, &["ps", "-q", "-f", &format!("name={app}.")])
                .is_empty()
        },
        "hooli's app task gone",
    );
    let wakes = sample(&h.metrics(), "berth_wakes_total").unwrap_or(0.0);
    assert!(page(&h, https, "hooli").contains("tenant=hooli"));
    assert_eq!(h.status("hooli")["phase"], "running");
    assert_eq!(sample(&h.metrics(), "berth_wakes_total"), Some(wakes + 1.0));
    h.kill9();
}
