//! The validated host config: resolved paths, address pools and plans.

use super::{
    backups::BackupPolicy,
    edge::{AcmeConfig, DomainsConfig, ProxyConfig},
    host_sections as sections,
    limits::Limits,
};
use crate::spec::{self, SpecErrors, host::HostFile, units};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

/// Why a plan's egress allows are refused in swarm mode.
pub const SWARM_EGRESS: &str = "swarm mode applies no egress allows (a node's tenants share one \
     bridge to the outside, where one tenant's packets cannot be told from another's); remove it";

#[derive(Debug, Clone)]
pub struct HostConfig {
    pub state_dir: PathBuf,
    pub templates_dir: PathBuf,
    pub instances_dir: PathBuf,
    pub namespace: String,
    pub base_domain: Option<String>,
    pub api_socket: PathBuf,
    pub api_tcp: Option<String>,
    pub api_token_file: Option<PathBuf>,
    /// TLS on the TCP listener.
    pub api_tls: Option<super::api::ApiTls>,
    pub subnet_pool: super::subnet::SubnetPool,
    pub ports: (u16, u16),
    pub resync: Duration,
    pub parallelism: usize,
    pub admission: Admission,
    pub metrics: MetricsConfig,
    pub probes: super::probes::ProbeConfig,
    pub backup_dir: PathBuf,
    /// Off-host repositories backups are copied to (`backup_repositories:`).
    pub backup_repositories: Vec<super::repository::Repository>,
    pub plans: BTreeMap<String, Plan>,
    pub default_plan: Option<String>,
    pub shared_database: Option<SharedDatabase>,
    /// The shared MariaDB server (`shared_mariadb:`).
    pub shared_mariadb: Option<SharedDatabase>,
    /// The shared outbound mail relay (`mail:`).
    pub mail: Option<super::mail::MailConfig>,
    /// Secret key of the shared database's role and database names (`<state>/host/secrets/
    /// db_name_key`), set by the agent at start (`shared_db::ensure_name_key`); never read by
    /// the CLI.
    pub db_name_key: Option<String>,
    /// Registry credentials by registry host.
    pub registries: BTreeMap<String, super::image_ref::RegistryAuth>,
    /// Registry host → the host its images are pulled from here.
    pub registry_mirrors: BTreeMap<String, String>,
    pub proxy: Option<ProxyConfig>,
    pub acme: Option<AcmeConfig>,
    pub domains: DomainsConfig,
    /// The engine tenants run on (`engine:`).
    pub engine: super::engine::Engine,
    /// The CPU weight and quota the agent gives this host's engine (`engine.cpu_weight`,
    /// `engine.cpu_max`), if any.
    pub engine_cpu: Option<super::engine::EngineCpu>,
}

/// Where `/metrics` listens (None: off) and how often container stats are swept.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    pub listen: Option<std::net::SocketAddr>,
    pub interval: Duration,
}

pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: DEFAULT_METRICS_LISTEN.parse().ok(),
            interval: Duration::from_secs(15),
        }
    }
}

/// How much memory and disk instances may reserve: `total × overcommit` of each. The daemon
/// fills a total the config leaves out with what it measures; None (offline validation) admits
/// everything.
#[derive(Debug, Clone, PartialEq)]
pub struct Admission {
    pub memory_total: Option<u64>,
    pub memory_overcommit: f64,
    pub disk_total: Option<u64>,
    pub disk_overcommit: f64,
    /// The host's CPUs in thousandths (millicores), like an instance's reservation.
    pub cpu_total: Option<u64>,
    pub cpu_overcommit: f64,
}

impl Default for Admission {
    fn default() -> Self {
        Admission {
            memory_total: None,
            memory_overcommit: 1.0,
            disk_total: None,
            disk_overcommit: 1.0,
            cpu_total: None,
            cpu_overcommit: 10.0,
        }
    }
}

/// A named tier of the host config: resources and backup policy.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub limits: Limits,
    pub quota: super::quota::Quota,
    pub backups: BackupPolicy,
    /// Destinations allowed beyond the default egress policy.
    pub egress: Vec<super::egress::Allow>,
    /// Idle this long, the tenant sleeps (containers stopped) until a request wakes it.
    pub sleep_after: Option<Duration>,
    /// Share of memory a tenant that may sleep reserves at admission (None: all of it).
    pub sleep_memory: Option<f64>,
    /// What a tenant may send through the shared mail relay.
    pub mail: super::mail::MailLimits,
}

impl HostConfig {
    /// The pool web containers take fixed addresses from: this host's engine; None in swarm
    /// mode (an overlay network is not on the host: the edge reaches node ports).
    pub fn web_pool(&self) -> Option<&super::subnet::SubnetPool> {
        (!self.engine.is_swarm()).then_some(&self.subnet_pool)
    }

    /// The shared server configured for `engine` (MariaDB's serves MySQL templates too).
    pub fn shared_for(
        &self,
        engine: crate::spec::template::DatabaseEngine,
    ) -> Option<&SharedDatabase> {
        match engine {
            crate::spec::template::DatabaseEngine::Postgres => self.shared_database.as_ref(),
            _ => self.shared_mariadb.as_ref(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SharedDatabase {
    pub image: String,
    pub memory: u64,
    pub connection_limit: u32,
}

impl Plan {
    /// This plan with the values `file` sets replaced, validated (an instance's overrides).
    pub fn overlay(
        &self,
        file: &crate::spec::instance::LimitsFile,
    ) -> Result<Plan, super::limits::LimitError> {
        let backups = match &file.backups {
            Some(b) => BackupPolicy::overlay(self.backups.clone(), b)?,
            None => self.backups.clone(),
        };
        let egress = match &file.egress {
            Some(list) => egress_allows(list)?,
            None => self.egress.clone(),
        };
        let sleep_after = match file.sleep_after.as_deref() {
            Some(s) => sleep_after(s)?,
            None => self.sleep_after,
        };
        let sleep_memory = match file.sleep_memory {
            Some(r) if r > 0.0 && r <= 1.0 => Some(r),
            Some(r) => {
                return Err(super::limits::LimitError {
                    field: "sleep_memory",
                    message: format!("{r} is out of range (0 < ratio <= 1)"),
                });
            }
            None => self.sleep_memory,
        };
        let mail = match &file.mail {
            Some(m) => self.mail.overlay(m)?,
            None => self.mail,
        };
        Ok(Plan {
            mail,
            limits: Limits::overlay(self.limits, file)?,
            quota: super::quota::Quota::overlay(self.quota, file)?,
            backups,
            egress,
            sleep_after,
            sleep_memory,
        })
    }
}

/// Shortest idle window a plan may set: a wake costs a container start.
pub const MIN_SLEEP_AFTER: Duration = Duration::from_secs(5);

fn sleep_after(s: &str) -> Result<Option<Duration>, super::limits::LimitError> {
    if s == "never" {
        return Ok(None);
    }
    let bad = |message| super::limits::LimitError {
        field: "sleep_after",
        message,
    };
    match units::parse_duration(s).map_err(String::from) {
        Ok(d) if d >= MIN_SLEEP_AFTER && d <= Duration::from_secs(365 * 86400) => Ok(Some(d)),
        Ok(_) => Err(bad(format!("{s} is out of range (5s..=365d, or never)"))),
        Err(m) => Err(bad(m)),
    }
}

fn egress_allows(list: &[String]) -> Result<Vec<super::egress::Allow>, super::limits::LimitError> {
    let mut out = Vec::new();
    for (n, s) in list.iter().enumerate() {
        let a = super::egress::parse_allow(s).map_err(|m| super::limits::LimitError {
            field: "egress",
            message: format!("entry {n}: {m}"),
        })?;
        out.push(a);
    }
    Ok(out)
}

/// `registries` and `registry_mirrors`: registry hosts only (never a path or URL that would
/// send credentials or pulls elsewhere), a username without control characters.
fn check_registries(h: &HostFile, err: &mut impl FnMut(&str, String)) {
    use super::image_ref::check_registry;
    for (host, r) in &h.registries {
        if let Err(m) = check_registry(host) {
            err(&format!("registries.{host}"), m.to_string());
        }
        if r.username.is_empty() || r.username.chars().any(char::is_control) {
            err(
                &format!("registries.{host}.username"),
                "must be a non-empty name without control characters".into(),
            );
        }
    }
    for (from, to) in &h.registry_mirrors {
        for checked in [check_registry(from), check_registry(to)] {
            if let Err(m) = checked {
                err(&format!("registry_mirrors.{from}"), m.to_string());
            }
        }
    }
}

/// Reads and validates the host config at `path`.
pub fn load(path: &Path) -> Result<HostConfig, SpecErrors> {
    let shown = spec::shown_path(path, 1);
    let file = spec::load_yaml::<HostFile>(path, &shown).map_err(|e| SpecErrors(vec![e]))?;
    let root = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    build(&file, &root)
}

pub fn build(file: &spec::Loaded<HostFile>, root: &Path) -> Result<HostConfig, SpecErrors> {
    let h = &file.value;
    // Docker needs absolute bind-mount sources, and the agent may change directory.
    let root = &std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
    let mut errors = SpecErrors::default();
    let mut err = |field: &str, msg: String| errors.push(file.error_at(field, msg));
    let resolve = |p: &Path| match p.is_absolute() {
        true => p.to_path_buf(),
        false => root.join(p),
    };
    let (pool, resync) = sections::basics(h, &mut err);
    let api_tls = super::api::check(&h.api, resolve, &mut err);
    let engine = super::engine::check(&h.engine, resolve, &mut err);
    let engine_cpu = super::engine::cpu(&h.engine, &mut err);
    let admission = sections::admission(h, &mut err);
    let metrics = sections::metrics(h, &mut err);
    let probes = super::probes::build(&h.probes)
        .map_err(|errs| errs.into_iter().for_each(|(f, m)| err(&f, m)))
        .unwrap_or_default();
    let plans = sections::plans(h, &engine, &mut err);
    let (shared_database, shared_mariadb) = sections::shared_servers(h, &engine, &mut err);
    let edge = sections::edge(h, &engine, &resolve, &mut err);
    check_registries(h, &mut err);
    let has_plan = |p: &str| h.plans.contains_key(p);
    let backup_repositories =
        super::repository::build(&h.backup_repositories, &has_plan, &resolve, &mut err);
    errors.into_result()?;
    Ok(HostConfig {
        state_dir: resolve(&h.state_dir),
        templates_dir: resolve(&h.templates_dir),
        instances_dir: resolve(&h.instances_dir),
        namespace: h.namespace.clone(),
        base_domain: h.base_domain.clone(),
        api_socket: resolve(&h.api.socket),
        api_tcp: h.api.tcp.clone(),
        api_token_file: h.api.token_file.as_deref().map(resolve),
        api_tls,
        engine,
        engine_cpu,
        subnet_pool: pool.expect("checked above"),
        ports: (h.ports.first, h.ports.last),
        resync: resync.expect("checked above"),
        parallelism: h.parallelism.max(1),
        admission,
        metrics,
        probes,
        backup_dir: resolve(
            h.backup_dir
                .as_deref()
                .unwrap_or(&h.state_dir.join("backups")),
        ),
        backup_repositories,
        plans,
        default_plan: h.default_plan.clone(),
        shared_database,
        shared_mariadb,
        mail: edge.mail,
        db_name_key: None,
        registries: sections::registries(h, &resolve),
        registry_mirrors: h.registry_mirrors.clone(),
        proxy: edge.proxy,
        acme: edge.acme,
        domains: edge.domains.expect("checked above"),
    })
}

/// A lowercase DNS label: letters, digits and inner hyphens, 1 to 63 characters.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_and_mirrors_are_registry_hosts_and_say_where_they_are_not() {
        let text = "state_dir: /tmp/s\nregistries:\n  \"evil/x\": {username: \"a\\nb\", password_file: p}\n  \
                    r.example.com: {username: u, password_file: p}\n\
                    registry_mirrors: {docker.io: \"https://cache.example/x\"}\n";
        let loaded = spec::parse_yaml::<HostFile>(Path::new("berth.yaml"), text).unwrap();
        let e = build(&loaded, Path::new("/tmp")).unwrap_err().to_string();
        assert!(
            e.contains("registries.evil/x: \"evil/x\" is not a registry host"),
            "{e}"
        );
        assert!(
            e.contains("registries.evil/x.username: must be a non-empty name"),
            "{e}"
        );
        assert!(
            e.contains(
                "registry_mirrors.docker.io: \"https://cache.example/x\" is not a registry host"
            ),
            "{e}"
        );
        assert!(!e.contains("r.example.com"), "{e}");
        assert!(e.lines().all(|l| l.starts_with("berth.yaml:")), "{e}");
    }

    #[test]
    fn hostile_backup_repositories_are_refused_by_field_and_line_without_their_passwords() {
        let text = "state_dir: /tmp/s
plans: {small: {memory: 256m}}
backup_repositories:
                      \"Bad Name\": {url: /srv/r, password_file: k}
                      leak: {url: \"rest:http://u:hunter2@h:x/\", password_file: k}
                      inj: {url: \"sftp:u@-oProxyCommand=sh:/p\", password_file: k, plans: [gold], tenants: [\"../x\"]}
                      slow: {url: /srv/s, password_file: k, timeout: 1s, check: {schedule: \"every day\", read_data: 200%}}
                      ok: {url: \"s3:http://127.0.0.1:9000/b\", password_file: k}
";
        let loaded = spec::parse_yaml::<HostFile>(Path::new("berth.yaml"), text).unwrap();
        let e = build(&loaded, Path::new("/tmp")).unwrap_err().to_string();
        for field in [
            "backup_repositories.Bad Name: must be a DNS label",
            "backup_repositories.leak.url:",
            "backup_repositories.inj.url:",
            "backup_repositories.inj.plans: \"gold\" is not a plan",
            "backup_repositories.inj.tenants:",
            "backup_repositories.slow.timeout: is out of range",
            "backup_repositories.slow.check.schedule:",
            "backup_repositories.slow.check.read_data:",
        ] {
            assert!(e.contains(field), "{field}: {e}");
        }
        assert!(
            !e.contains("hunter2"),
            "a refused URL is shown without its password: {e}"
        );
        assert!(!e.contains("backup_repositories.ok"), "{e}");
        assert!(e.lines().all(|l| l.starts_with("berth.yaml:")), "{e}");
    }

    #[test]
    fn hostile_cpu_admission_values_are_refused_by_field() {
        for (text, field) in [
            (
                "admission: {cpus: -1}",
                "admission.cpus: -1 is out of range",
            ),
            ("admission: {cpus: 0}", "admission.cpus: 0 is out of range"),
            (
                "admission: {cpus: 1e9}",
                "admission.cpus: 1000000000 is out of range",
            ),
            (
                "admission: {cpus: .nan}",
                "admission.cpus: NaN is out of range",
            ),
            (
                "admission: {cpu_overcommit: 0}",
                "admission.cpu_overcommit: 0 is out of range",
            ),
            (
                "admission: {cpu_overcommit: .inf}",
                "admission.cpu_overcommit: inf is out of range",
            ),
        ] {
            let text = format!("state_dir: /tmp/s\n{text}\n");
            let loaded = spec::parse_yaml::<HostFile>(Path::new("berth.yaml"), &text).unwrap();
            let e = build(&loaded, Path::new("/tmp")).unwrap_err().to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
        let text = "state_dir: /tmp/s\nadmission: {cpus: 1.5, cpu_overcommit: 2}\n";
        let loaded = spec::parse_yaml::<HostFile>(Path::new("berth.yaml"), text).unwrap();
        let a = build(&loaded, Path::new("/tmp")).unwrap().admission;
        assert_eq!((a.cpu_total, a.cpu_overcommit), (Some(1500), 2.0));
    }

    #[test]
    fn swarm_mode_refuses_a_plan_s_egress_allows_by_field() {
        let text = "state_dir: /tmp/s\nplans:\n  p: {egress: [\"10.1.2.3:5432\"]}\n\
                    engine: {mode: swarm, nodes: {m1: /run/m1.sock}}\n";
        let loaded = spec::parse_yaml::<HostFile>(Path::new("berth.yaml"), text).unwrap();
        let e = build(&loaded, Path::new("/tmp")).unwrap_err().to_string();
        assert!(e.contains("plans.p.egress: swarm mode"), "{e}");
    }

    #[test]
    fn swarm_mode_refuses_a_shared_database_server_by_field() {
        let text = "state_dir: /tmp/s\nshared_database: {image: berth/postgres:15}\n\
                    engine: {mode: swarm, nodes: {m1: /run/m1.sock}}\n";
        let loaded = spec::parse_yaml::<HostFile>(Path::new("berth.yaml"), text).unwrap();
        let e = build(&loaded, Path::new("/tmp")).unwrap_err().to_string();
        assert!(
            e.contains("berth.yaml:") && e.contains("shared_database: swarm mode"),
            "{e}"
        );
    }

    #[test]
    fn swarm_mode_refuses_the_mail_relay_and_bad_mail_settings_name_their_line() {
        let text =
            "state_dir: /tmp/s\nmail: {}\nengine: {mode: swarm, nodes: {m1: /run/m1.sock}}\n";
        let loaded = spec::parse_yaml::<HostFile>(Path::new("berth.yaml"), text).unwrap();
        let e = build(&loaded, Path::new("/tmp")).unwrap_err().to_string();
        assert!(
            e.contains("mail: swarm mode has no shared mail relay"),
            "{e}"
        );
        let text = "state_dir: /tmp/s\nmail:\n  smarthost: \"relay.example.com\"\n";
        let loaded = spec::parse_yaml::<HostFile>(Path::new("berth.yaml"), text).unwrap();
        let e = build(&loaded, Path::new("/tmp")).unwrap_err().to_string();
        assert!(
            e.contains("berth.yaml:3:") && e.contains("mail.smarthost"),
            "{e}"
        );
        let text = "state_dir: /tmp/s\nmail: {smarthost: \"a:25\", password: x}\n";
        assert!(spec::parse_yaml::<HostFile>(Path::new("berth.yaml"), text).is_err());
    }

    #[test]
    fn the_tcp_api_listens_beyond_loopback_only_with_tls() {
        let build_with = |tcp: &str| {
            let text = format!("state_dir: /tmp/s\napi:\n  tcp: \"{tcp}\"\n");
            let loaded = spec::parse_yaml::<HostFile>(Path::new("berth.yaml"), &text).unwrap();
            build(&loaded, Path::new("/tmp"))
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        assert!(build_with("127.0.0.1:7070").is_ok());
        assert!(build_with("[::1]:7070").is_ok());
        let text = "state_dir: /tmp/s\napi:\n  tcp: 0.0.0.0:7443\n  tls:\n    names: [\"a b\"]\n";
        let loaded = spec::parse_yaml::<HostFile>(Path::new("berth.yaml"), text).unwrap();
        let e = build(&loaded, Path::new("/tmp")).unwrap_err().to_string();
        assert!(
            e.contains("berth.yaml:") && e.contains("api.tls.names"),
            "{e}"
        );
        for bad in ["0.0.0.0:7070", "10.0.0.5:7070", "[::]:7070"] {
            let e = build_with(bad).unwrap_err();
            assert!(
                e.contains("berth.yaml:3:") && e.contains("api.tcp") && e.contains("TLS only"),
                "{e}"
            );
        }
        for bad in [
            "localhost:7070",
            "127.0.0.1",
            "",
            ":7070",
            "127.0.0.1:99999",
        ] {
            let e = build_with(bad).unwrap_err();
            assert!(
                e.contains("api.tcp") && e.contains("not an address:port"),
                "{e}"
            );
        }
    }

    #[test]
    fn hostile_sleep_and_probe_settings_are_refused_at_their_field() {
        for (plan, field) in [
            ("{sleep_after: 1s}", "plans.p.sleep_after"),
            ("{sleep_after: forever}", "plans.p.sleep_after"),
            (
                "{sleep_after: 99999999999999999999h}",
                "plans.p.sleep_after",
            ),
            ("{sleep_memory: 0}", "plans.p.sleep_memory"),
            ("{sleep_memory: -1}", "plans.p.sleep_memory"),
            ("{sleep_memory: .nan}", "plans.p.sleep_memory"),
            ("{sleep_memory: 1.5}", "plans.p.sleep_memory"),
        ] {
            let text = format!("state_dir: /tmp/s\nplans:\n  p: {plan}\n");
            let loaded = spec::parse_yaml::<HostFile>(Path::new("berth.yaml"), &text).unwrap();
            let e = build(&loaded, Path::new("/tmp")).unwrap_err().to_string();
            assert!(
                e.contains("berth.yaml:3:") && e.contains(field),
                "{plan}: {e}"
            );
        }
        let text = "state_dir: /tmp/s\nprobes: {timeout: 0s, concurrency: 100000}\n";
        let loaded = spec::parse_yaml::<HostFile>(Path::new("berth.yaml"), text).unwrap();
        let e = build(&loaded, Path::new("/tmp")).unwrap_err().to_string();
        assert!(
            e.contains("probes.timeout") && e.contains("probes.concurrency"),
            "{e}"
        );
        let ok = "state_dir: /tmp/s\nplans:\n  p: {sleep_after: never, sleep_memory: 0.25}\n";
        let loaded = spec::parse_yaml::<HostFile>(Path::new("berth.yaml"), ok).unwrap();
        let p = &build(&loaded, Path::new("/tmp")).unwrap().plans["p"];
        assert_eq!((p.sleep_after, p.sleep_memory), (None, Some(0.25)));
    }

    #[test]
    fn a_shared_server_section_with_a_bad_size_or_unknown_key_names_its_field() {
        let text = "state_dir: /tmp/s\nshared_mariadb: {image: \"mariadb:11.4\", memory: 12zz}\n";
        let loaded = spec::parse_yaml::<HostFile>(Path::new("berth.yaml"), text).unwrap();
        let e = build(&loaded, Path::new("/tmp")).unwrap_err().to_string();
        assert!(
            e.contains("berth.yaml:2:") && e.contains("shared_mariadb.memory"),
            "{e}"
        );
        let text = "state_dir: /tmp/s\nshared_mariadb: {image: x, root_password: hunter2}\n";
        let e = spec::parse_yaml::<HostFile>(Path::new("berth.yaml"), text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("root_password"), "unknown keys are refused: {e}");
        let ok = "state_dir: /tmp/s\nshared_mariadb: {image: \"mariadb:11.4\", memory: 1g}\n";
        let loaded = spec::parse_yaml::<HostFile>(Path::new("berth.yaml"), ok).unwrap();
        let h = build(&loaded, Path::new("/tmp")).unwrap();
        let m = h
            .shared_for(crate::spec::template::DatabaseEngine::Mysql)
            .unwrap();
        assert_eq!(m.memory, 1 << 30, "MySQL templates use MariaDB's server");
        assert!(
            h.shared_for(crate::spec::template::DatabaseEngine::Postgres)
                .is_none()
        );
    }

    #[test]
    fn dns_labels_are_lowercase_without_edge_hyphens() {
        assert!(is_dns_label("acme-2"));
        assert!(!is_dns_label("Acme"));
        assert!(!is_dns_label("-acme"));
        assert!(!is_dns_label(""));
    }
}
