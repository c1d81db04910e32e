//! Harness for tests on the real Docker engine: a temp host config with its own namespace,
//! subnet pool and port range, the real `berth` binary as agent and CLI, and cleanup of
//! everything carrying the namespace label.
#![allow(dead_code)]

pub mod alerts;
pub mod challtest;
pub mod fill;
pub mod mail;
pub mod restic;
pub mod wp;

use std::{
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

/// Docker tests in one binary run one at a time: 2 cores, and timing-sensitive health checks.
pub static SERIAL: Mutex<()> = Mutex::new(());

/// True when an engine answers. With BERTH_REQUIRE_DOCKER=1 (CI) a missing engine fails the
/// test instead of skipping it.
pub fn docker_available() -> bool {
    let ok = Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var("BERTH_REQUIRE_DOCKER").as_deref() == Ok("1") {
            panic!(
                "BERTH_REQUIRE_DOCKER=1 but no Docker engine answers (run scripts/setup-docker.sh)"
            );
        }
        eprintln!("skipping: no Docker engine (set BERTH_REQUIRE_DOCKER=1 to make this a failure)");
    }
    ok
}

/// Start of every real-engine test: holds the serial lock, or None when the test must skip.
pub fn docker_test() -> Option<std::sync::MutexGuard<'static, ()>> {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    docker_available().then_some(guard)
}

pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI runs")
}

pub fn docker_ok(args: &[&str]) -> String {
    let o = docker(args);
    assert!(
        o.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub ns: String,
    pub agent: Option<Child>,
    /// The agent's `/metrics` listener on loopback.
    pub metrics_port: u16,
}

impl Harness {
    /// `slot` (1..=140) picks a namespace, a /24 subnet pool and ports of its own. Every fixed
    /// test port is below the kernel's ephemeral range (32768–60999 by default), so no outgoing
    /// connection on the machine can hold one: web 10050–17049, proxy 18002–18281, metrics
    /// 18501–18640, ACME test servers 19400–19499.
    pub fn new(slot: u16) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let ns = format!("bt{slot}");
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let config = format!(
            "state_dir: state\ntemplates_dir: {templates}\ninstances_dir: instances\nnamespace: {ns}\n\
             base_domain: apps.test\napi:\n  socket: berth.sock\nnetwork:\n  subnet_pool: 10.250.{slot}.0/24\n  subnet_prefix: 28\n\
             ports:\n  first: {first}\n  last: {last}\nresync_interval: 2s\nmetrics:\n  listen: 127.0.0.1:{metrics}\n  interval: 2s\nplans:\n  small: {{memory: 256m, cpus: 0.5, pids: 200}}\n\
             shared_database:\n  image: berth/postgres:15\n  memory: 256m\n  connection_limit: 5\n",
            templates = repo.join("templates").display(),
            first = 10000 + slot * 50,
            last = 10000 + slot * 50 + 49,
            metrics = 18500 + slot,
        );
        std::fs::write(dir.path().join("berth.yaml"), config).unwrap();
        std::fs::create_dir_all(dir.path().join("instances")).unwrap();
        let h = Harness {
            dir,
            ns,
            agent: None,
            metrics_port: 18500 + slot,
        };
        h.clean_docker();
        // Docker 20.10 can keep a stale endpoint (no container) after a crash, and then will
        // not remove the network: force the endpoints off, then remove it.
        for n in h.owned("network") {
            let f = "{{range .Containers}}{{.Name}} {{end}}";
            let eps = docker(&["network", "inspect", "-f", f, &n]).stdout;
            for ep in String::from_utf8_lossy(&eps).split_whitespace() {
                docker(&["network", "disconnect", "-f", &n, ep]);
            }
            docker(&["network", "rm", &n]);
        }
        // A network still left would collide with this run's subnets: say so now, not as a
        // timeout later.
        if let Some(n) = h.owned("network").first() {
            let o = docker(&["network", "rm", n]);
            panic!(
                "leftover network {n} cannot be removed ({}); restart dockerd",
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        h
    }

    /// Adds the edge proxy on loopback ports of this slot: (http, https).
    pub fn with_proxy(&self, slot: u16) -> (u16, u16) {
        let (http, https) = (18000 + slot * 2, 18001 + slot * 2);
        let mut cfg = std::fs::read_to_string(self.path("berth.yaml")).unwrap();
        cfg.push_str(&format!(
            "proxy:\n  http: 127.0.0.1:{http}\n  https: 127.0.0.1:{https}\n  shared_domains: [shared.test]\n"
        ));
        std::fs::write(self.path("berth.yaml"), cfg).unwrap();
        (http, https)
    }

    /// Adds the API's TCP listener on this slot's loopback port, with `extra` lines (indented
    /// under `api:`, e.g. `  tls: …`); returns its address.
    pub fn with_tcp_api(&self, slot: u16, extra: &str) -> String {
        let api = format!("127.0.0.1:{}", 18300 + slot);
        let cfg = std::fs::read_to_string(self.path("berth.yaml")).unwrap();
        let cfg = cfg.replace(
            "api:\n  socket: berth.sock\n",
            &format!("api:\n  socket: berth.sock\n  tcp: {api}\n{extra}"),
        );
        std::fs::write(self.path("berth.yaml"), cfg).unwrap();
        api
    }

    /// A copy of the repo's demo template in this harness's own templates dir (`templates/demo`,
    /// the host config switched to it), its template.yaml changed by `edit`.
    pub fn own_demo_template(&self, edit: impl FnOnce(String) -> String) {
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        copy_dir(&repo.join("templates/demo"), &self.path("templates/demo"));
        let file = self.path("templates/demo/template.yaml");
        let t = std::fs::read_to_string(&file).unwrap();
        std::fs::write(&file, edit(t)).unwrap();
        self.use_own_templates();
    }

    /// The host config switched to this harness's own `templates` dir.
    pub fn use_own_templates(&self) {
        let cfg = std::fs::read_to_string(self.path("berth.yaml")).unwrap();
        let cfg: Vec<String> = cfg
            .lines()
            .map(|l| match l.starts_with("templates_dir:") {
                true => format!("templates_dir: {}", self.path("templates").display()),
                false => l.to_string(),
            })
            .collect();
        std::fs::write(self.path("berth.yaml"), cfg.join("\n") + "\n").unwrap();
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The agent process with its log appended to agent.log; `configure` adds env or hooks.
    pub fn spawn_agent(&self, configure: impl FnOnce(&mut Command)) -> Child {
        self.spawn_agent_via(&[], configure)
    }

    /// Like `spawn_agent`, with `launcher` (program and leading args) exec'ing berth.
    pub fn spawn_agent_via(
        &self,
        launcher: &[&str],
        configure: impl FnOnce(&mut Command),
    ) -> Child {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.path("agent.log"))
            .unwrap();
        let berth = env!("CARGO_BIN_EXE_berth");
        let mut cmd = Command::new(launcher.first().copied().unwrap_or(berth));
        if !launcher.is_empty() {
            cmd.args(&launcher[1..]).arg(berth);
        }
        cmd.args([
            "--config",
            self.path("berth.yaml").to_str().unwrap(),
            "serve",
        ])
        .env("BERTH_LOG", "info")
        .stdout(log.try_clone().unwrap())
        .stderr(log);
        configure(&mut cmd);
        cmd.spawn().unwrap()
    }

    pub fn start(&mut self) {
        self.start_with(|_| {});
    }

    /// Starts the agent and waits until its API answers.
    pub fn start_with(&mut self, configure: impl FnOnce(&mut Command)) {
        self.agent = Some(self.spawn_agent(configure));
        // Ready means a whole first pass ran (filesystems made, containers created); on two
        // busy cores right after another test's cleanup that has taken more than 20 s.
        wait_for(
            Duration::from_secs(60),
            || self.cli(&["reconcile"]).status.success(),
            "agent API",
        );
    }

    /// Starts an agent that aborts before its (k+1)-th mutating Docker call, and waits for it
    /// to die. Panics if it survives 90 s (it never reached k calls).
    pub fn crash_after(&mut self, k: u64) {
        let mut child = self.spawn_agent(|c| {
            c.env("BERTH_FAULT_CRASH_AFTER", k.to_string());
        });
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    !status.success(),
                    "agent exited cleanly instead of crashing"
                );
                return;
            }
            if start.elapsed() > Duration::from_secs(90) {
                let _ = child.kill();
                panic!("agent did not reach {k} mutating calls within 90 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["--config", self.path("berth.yaml").to_str().unwrap()])
            .args(args)
            .env("BERTH_LOG", "warn")
            .output()
            .unwrap()
    }

    pub fn cli_ok(&self, args: &[&str]) -> String {
        let o = self.cli(args);
        assert!(
            o.status.success(),
            "berth {args:?} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    pub fn status(&self, tenant: &str) -> serde_json::Value {
        serde_json::from_str(&self.cli_ok(&["status", tenant, "-o", "json"])).unwrap()
    }

    pub fn reconcile(&self) -> serde_json::Value {
        serde_json::from_str(&self.cli_ok(&["reconcile"])).unwrap()
    }

    /// Runs passes until every named tenant is running; panics with the board after 120 s.
    pub fn wait_running(&self, tenants: &[&str]) {
        self.wait_running_within(tenants, Duration::from_secs(120));
    }

    pub fn wait_running_within(&self, tenants: &[&str], limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            self.reconcile();
            if tenants.iter().all(|t| self.status(t)["phase"] == "running") {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        // The board as it is at the timeout, with each failing tenant's error.
        panic!(
            "timed out after {limit:?} waiting for tenants {tenants:?} running; board:\n{}\n{}",
            self.cli_ok(&["ls"]),
            self.cli_ok(&["ls", "-o", "json"])
        );
    }

    /// Where the tenant's web app answers (its fixed address on its own network; in swarm
    /// mode its node and node port), as its status says.
    pub fn web(&self, tenant: &str) -> std::net::SocketAddr {
        let s = self.status(tenant);
        s["address"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{tenant} has no address: {s}"))
    }

    /// A field of the tenant's network's address block as the engine shows it (`Subnet`,
    /// `IPRange`, `Gateway`).
    pub fn ipam(&self, tenant: &str, field: &str) -> String {
        let f = format!("{{{{(index .IPAM.Config 0).{field}}}}}");
        docker_ok(&[
            "network",
            "inspect",
            "-f",
            &f,
            &format!("{}-{tenant}", self.ns),
        ])
    }

    pub fn container(&self, tenant: &str, service: &str) -> String {
        format!("{}-{tenant}-{service}", self.ns)
    }

    /// One statement in the tenant's own database, as its app user; the unaligned result.
    pub fn psql(&self, tenant: &str, sql: &str) -> String {
        docker_ok(&[
            "exec",
            &self.container(tenant, "db"),
            "psql",
            "-qtA",
            "-h",
            "/var/run/postgresql",
            "-U",
            "app",
            "-d",
            "app",
            "-c",
            sql,
        ])
    }

    /// Names of Docker objects of one kind carrying this namespace.
    pub fn owned(&self, kind: &str) -> Vec<String> {
        let label = format!("label=io.berth.namespace={}", self.ns);
        let args: Vec<&str> = match kind {
            "container" => vec!["ps", "-a", "--filter", &label, "--format", "{{.Names}}"],
            "network" => vec!["network", "ls", "--filter", &label, "--format", "{{.Name}}"],
            _ => vec!["volume", "ls", "--filter", &label, "--format", "{{.Name}}"],
        };
        let mut v: Vec<String> = docker_ok(&args)
            .lines()
            .map(String::from)
            .filter(|l| !l.is_empty())
            .collect();
        v.sort();
        v
    }

    pub fn clean_docker(&self) {
        for c in self.owned("container") {
            docker(&["rm", "-f", &c]);
        }
        for n in self.owned("network") {
            docker(&["network", "rm", &n]);
        }
        for v in self.owned("volume") {
            docker(&["volume", "rm", "-f", &v]);
        }
        self.clean_firewall();
    }

    /// Removes this namespace's egress chains and the jumps into them.
    pub fn clean_firewall(&self) {
        let ipt = |args: &[&str]| {
            Command::new("iptables")
                .arg("-w")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        for (parent, chain) in [
            ("DOCKER-USER", format!("b-{}-fwd", self.ns)),
            ("FORWARD", format!("b-{}-fwd", self.ns)),
            ("INPUT", format!("b-{}-in", self.ns)),
        ] {
            while ipt(&["-D", parent, "-j", &chain]) {}
            ipt(&["-F", &chain]);
            ipt(&["-X", &chain]);
        }
    }

    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.path("agent.log")).unwrap_or_default()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- agent log ---\n{}", self.agent_log());
        }
        self.clean_docker();
    }
}

pub fn wait_for(limit: Duration, mut ok: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

/// Where a plain GET goes: a port on loopback, or an address.
pub trait Reach {
    fn addr(self) -> std::net::SocketAddr;
}

impl Reach for u16 {
    fn addr(self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self).into()
    }
}

impl Reach for std::net::SocketAddr {
    fn addr(self) -> std::net::SocketAddr {
        self
    }
}

/// GET http://at/path with a plain TCP client (`at` a loopback port, or an address such as a
/// tenant's [`Harness::web`]); returns (status, body).
pub fn http_get(at: impl Reach, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&at.addr(), Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    Some((status, body))
}

pub fn write_instance(h: &Harness, tenant: &str, body: &str) {
    std::fs::write(
        h.path(&format!("instances/{tenant}.yaml")),
        format!("tenant: {tenant}\n{body}"),
    )
    .unwrap();
}

/// curl through the proxy: (status, body), trusting berth's CA, `host` resolved to loopback.
pub fn curl(
    h: &Harness,
    port: u16,
    scheme: &str,
    host: &str,
    path: &str,
    extra: &[&str],
) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--cacert"])
        .arg(h.path("ca.pem"))
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
        .args(extra)
        .arg(format!("{scheme}://{host}:{port}{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        code.to_string(),
        format!("{body}{}", String::from_utf8_lossy(&out.stderr)),
    )
}

impl Harness {
    /// One scrape of the agent's `/metrics` (empty when it does not answer).
    pub fn metrics(&self) -> String {
        http_get(self.metrics_port, "/metrics")
            .map(|x| x.1)
            .unwrap_or_default()
    }
}

/// The value of the first sample line starting with `prefix`.
pub fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// One HTTPS GET of `https://host:port/` through the proxy on loopback, trusting `ca`:
/// (status code, curl's error text). The status is `000` when nothing answered.
pub fn https_status(
    ca: &std::path::Path,
    host: &str,
    port: u16,
    max_time: u32,
) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time"])
        .arg(max_time.to_string())
        .arg("--cacert")
        .arg(ca)
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
        .arg(format!("https://{host}:{port}/"))
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// `sh -c cmd` with extra environment; its stdout, trimmed. Panics with both outputs on failure.
pub fn sh_env(cmd: &str, env: &[(&str, &std::path::Path)]) -> String {
    let mut c = Command::new("sh");
    c.arg("-c").arg(cmd);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

pub fn sh(cmd: &str) -> String {
    sh_env(cmd, &[])
}

/// Debian's docker-registry (distribution 2.8) serving `config` (its config.yml) from `dir`,
/// stopped when dropped.
pub struct Registry(std::process::Child);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn start_registry_with(dir: &std::path::Path, port: u16, config: &str) -> Registry {
    std::fs::write(dir.join("config.yml"), config).unwrap();
    let child = Command::new("docker-registry")
        .args(["serve", dir.join("config.yml").to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("registry.log")).unwrap())
        .spawn()
        .expect("docker-registry runs (Debian package docker-registry)");
    wait_for(
        Duration::from_secs(20),
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "registry listening",
    );
    Registry(child)
}

/// A registry on loopback without TLS or users (the engine treats 127.0.0.0/8 as insecure).
pub fn plain_registry(dir: &std::path::Path, port: u16) -> Registry {
    let d = dir.display();
    let config = format!(
        "version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {d}/data}}}}\n\
         http: {{addr: 127.0.0.1:{port}}}\n"
    );
    start_registry_with(dir, port, &config)
}

/// scripts/build-images.sh's stand-ins and the official names they stand in for.
pub const STAND_INS: [(&str, &str); 4] = [
    ("berth/mariadb:10.11", "mariadb:11.4"),
    ("berth/wordpress:6.1", "wordpress:6.6-apache"),
    ("berth/wordpress:6.1-p2", "wordpress:6.7-apache"),
    ("berth/wordpress:6.1-broken", "wordpress:6.8-apache"),
];

/// The stand-ins, under the official names (Docker Hub's `library/`), in the registry on
/// `port`; none of those names left on the engine, so berth has to pull them.
pub fn publish_stand_ins(port: u16) {
    let named: Vec<(&str, String)> = STAND_INS
        .iter()
        .map(|(local, official)| (*local, format!("library/{official}")))
        .collect();
    publish_as(port, &named);
}

/// Each (local image, Docker Hub path) pushed to the registry on `port` under that path; the
/// official name removed from the engine.
pub fn publish_as(port: u16, images: &[(&str, String)]) {
    for (local, path) in images {
        let remote = format!("127.0.0.1:{port}/{path}");
        docker_ok(&["tag", local, &remote]);
        docker_ok(&["push", "-q", &remote]);
        docker_ok(&["rmi", &remote]);
        let _ = docker(&["rmi", path.trim_start_matches("library/")]);
    }
}

/// A container whose root filesystem is read-only and each of whose `writable` paths refuses
/// writes past its bound: zeros are written into each (as root) until the filesystem says it
/// is full, never more than the bound and 64 MiB more, and the container's own layer holds
/// less than a MiB afterwards.
pub fn assert_writes_bounded(container: &str, writable: &[(&str, u64)]) {
    for (dir, bound) in writable {
        let count = (bound >> 20) + 64;
        let cmd = format!(
            "dd if=/dev/zero of=\"$0/.berth-fill\" bs=1M count={count} 2>&1; rm -f \"$0/.berth-fill\""
        );
        let said = docker_ok(&["exec", container, "sh", "-c", &cmd, dir]);
        let written: u64 = said
            .lines()
            .find_map(|l| l.split(" bytes").next().filter(|_| l.contains(" bytes")))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("{container}:{dir}: {said}"));
        assert!(
            said.contains("No space left on device") && written <= *bound,
            "{container}:{dir} took {written} bytes (bound {bound}): {said}"
        );
    }
    for dir in ["/", "/etc", "/usr/local", "/var/www", "/root"] {
        let o = docker(&[
            "exec",
            container,
            "sh",
            "-c",
            "echo x > \"$0/.berth-probe\"",
            dir,
        ]);
        let said = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(
            !o.status.success() && said.contains("Read-only file system"),
            "{container}: {dir} is writable: {said}"
        );
    }
    let layer: u64 = docker_ok(&[
        "container",
        "inspect",
        "--size",
        "-f",
        "{{.SizeRw}}",
        container,
    ])
    .parse()
    .unwrap();
    assert!(
        layer < 1 << 20,
        "{container}: its layer holds {layer} bytes"
    );
}

/// The shipped template `app` in the harness's own templates dir, cron every ten seconds and
/// a broken version `broken` (its image `image`, strategy recreate) added; the host config
/// switched to it, Docker Hub mirrored by the registry on `reg`, mail relayed to
/// `smarthost`, and `plan` (a YAML line such as `wp: {memory: 1g}`) added.
pub fn own_app_template(
    h: &Harness,
    app: &str,
    (broken, image): (&str, &str),
    (smarthost, reg): (&str, u16),
    plan: &str,
) {
    let repo = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = h.path(&format!("templates/{app}"));
    copy_dir(&repo.join(format!("templates/{app}")), &dir);
    let file = dir.join("template.yaml");
    let t = std::fs::read_to_string(&file).unwrap();
    assert!(
        t.contains("schedule: \"*/5 * * * *\""),
        "{app}: its cron moved"
    );
    let t = t
        .replace("schedule: \"*/5 * * * *\"", "schedule: \"*/10 * * * * *\"")
        .replace(
            "default_version:",
            &format!("  \"{broken}\":\n    images: {{ web: \"{image}\" }}\n    strategy: recreate\ndefault_version:"),
        );
    std::fs::write(&file, t).unwrap();
    h.use_own_templates();
    let mut cfg = std::fs::read_to_string(h.path("berth.yaml")).unwrap();
    cfg.push_str(&format!(
        "registry_mirrors: {{docker.io: \"127.0.0.1:{reg}\"}}\nmail:\n  smarthost: \"{smarthost}\"\n"
    ));
    let cfg = cfg.replace("plans:\n", &format!("plans:\n  {plan}\n"));
    std::fs::write(h.path("berth.yaml"), cfg).unwrap();
}

/// A harness with the edge on its slot, a registry on loopback `reg` serving `images` under
/// their official names, and a mail sink as the relay's smarthost: (https port, registry, sink).
pub fn app_harness(
    h: &Harness,
    slot: u16,
    reg: u16,
    images: &[(&str, String)],
) -> (u16, Registry, mail::MailSink) {
    let (_, https) = h.with_proxy(slot);
    let dir = h.path("registry");
    std::fs::create_dir_all(&dir).unwrap();
    let registry = plain_registry(&dir, reg);
    publish_as(reg, images);
    let sink = mail::MailSink::start(&h.path("sink"), slot);
    (https, registry, sink)
}

/// The demo template with an `uploads` volume on the app (at /var/tmp, which the image makes
/// writable by the app's user, so the engine gives the new volume that mode).
pub fn demo_with_uploads(t: String) -> String {
    let (vols, deps) = (
        "volumes:\n  pgdata:\n",
        "    depends_on:\n      db:\n        condition: service_healthy\n",
    );
    assert!(t.contains(vols) && t.matches(deps).count() == 1, "{t}");
    t.replace(vols, "volumes:\n  pgdata:\n  uploads:\n")
        .replace(
            deps,
            &format!("    volumes:\n      - uploads:/var/tmp\n{deps}"),
        )
}

/// What a tenant holds that must come back: identity, secret, rows, the volume's digest.
pub fn demo_holdings(h: &Harness, t: &str) -> [String; 4] {
    let app = h.container(t, "app");
    [
        std::fs::read_to_string(h.path(&format!("state/tenants/{t}/id"))).unwrap(),
        std::fs::read_to_string(h.path(&format!("state/tenants/{t}/secrets/db_password"))).unwrap(),
        h.psql(t, "select string_agg(body, ',' order by id) from notes"),
        docker_ok(&[
            "exec",
            &app,
            "sh",
            "-c",
            "cd /var/tmp && find . -type f | sort | xargs sha256sum",
        ]),
    ]
}

/// The HTTP status of `GET path` on a TCP API at `api` (`127.0.0.1:PORT`) with `token`.
pub fn bearer_status(api: &str, path: &str, token: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
        .arg(format!("authorization: Bearer {token}"))
        .arg(format!("http://{api}{path}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}
