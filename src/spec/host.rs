//! Raw host config (`berth.yaml`): where state lives, how the API listens, address pools, plans.

use super::instance::LimitsFile;
use serde::Deserialize;
use std::{collections::BTreeMap, path::PathBuf};

/// Default location of the host config when neither `--config` nor `BERTH_CONFIG` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/berth/berth.yaml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostFile {
    /// Directory for allocations, rendered files, secrets and the lock.
    pub state_dir: PathBuf,
    /// Relative paths are taken from the config file's directory.
    #[serde(default = "default_templates")]
    pub templates_dir: PathBuf,
    #[serde(default = "default_instances")]
    pub instances_dir: PathBuf,
    /// Prefix of every Docker object name, and the value of the `io.berth.namespace` label, so
    /// two agents on one engine never touch each other's objects.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Tenants get `<tenant>.<base_domain>` as their subdomain.
    #[serde(default)]
    pub base_domain: Option<String>,
    #[serde(default)]
    pub api: ApiFile,
    #[serde(default)]
    pub network: NetworkFile,
    #[serde(default)]
    pub ports: PortsFile,
    #[serde(default = "default_resync")]
    pub resync_interval: String,
    /// Instances reconciled at once.
    #[serde(default = "default_parallelism")]
    pub parallelism: usize,
    #[serde(default)]
    pub admission: AdmissionFile,
    #[serde(default)]
    pub metrics: MetricsFile,
    /// How berth probes tenants' health.
    #[serde(default)]
    pub probes: super::probes::ProbesFile,
    /// Where backup archives go; default `<state_dir>/backups`.
    #[serde(default)]
    pub backup_dir: Option<PathBuf>,
    /// Off-host repositories (restic format) every backup of the tenants they serve is copied to.
    #[serde(default)]
    pub backup_repositories: BTreeMap<String, super::repository::RepositoryFile>,
    #[serde(default)]
    pub plans: BTreeMap<String, LimitsFile>,
    /// Plan of instances that name none.
    #[serde(default)]
    pub default_plan: Option<String>,
    #[serde(default)]
    pub shared_database: Option<SharedDatabaseFile>,
    /// The shared MariaDB server, for templates with `engine: mariadb|mysql, mode: shared`.
    #[serde(default)]
    pub shared_mariadb: Option<SharedDatabaseFile>,
    /// The shared outbound mail relay, for templates with a `mail:` section.
    #[serde(default)]
    pub mail: Option<MailFile>,
    /// The edge proxy; absent means berth runs no proxy.
    #[serde(default)]
    pub proxy: Option<ProxyFile>,
    #[serde(default)]
    pub tls: TlsFile,
    #[serde(default)]
    pub domains: DomainsFile,
    /// Credentials per registry host (`registry.example.com`, `127.0.0.1:5000`, `docker.io`).
    #[serde(default)]
    pub registries: BTreeMap<String, RegistryFile>,
    /// Registry host → the host to pull its images from instead (a pull-through cache).
    #[serde(default)]
    pub registry_mirrors: BTreeMap<String, String>,
    /// Which engine runs the tenants: one Docker host (default) or a Docker Swarm.
    #[serde(default)]
    pub engine: EngineFile,
}

/// `engine:` — `mode: docker` (this host's engine) or `mode: swarm` (the swarm whose manager
/// answers on `manager`; `nodes` names each node's own engine socket, for exec, stats, logs and
/// volumes, which Swarm does not proxy).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineFile {
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub manager: Option<PathBuf>,
    #[serde(default)]
    pub nodes: BTreeMap<String, PathBuf>,
    /// The image of the per-node egress guard (iptables; built by build-images.sh).
    #[serde(default)]
    pub netguard_image: Option<String>,
    /// The engine's CPU weight (1–10000; a plain process has 100), set by the agent at start
    /// when no service manager placed the engine. Default: left as it is.
    #[serde(default)]
    pub cpu_weight: Option<u32>,
    /// At most this many cores for the engine (a CFS quota, e.g. 0.5), set like the weight.
    #[serde(default)]
    pub cpu_max: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryFile {
    pub username: String,
    /// A file holding the password (or token), mode 0600; never in this file.
    pub password_file: PathBuf,
}

/// The Prometheus listener.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsFile {
    /// `host:port` of `/metrics`; default `127.0.0.1:9464`; `none` turns it off.
    #[serde(default)]
    pub listen: Option<String>,
    /// How often container stats are read (one sweep shared by every scrape); default 15s.
    #[serde(default)]
    pub interval: Option<String>,
}

/// How much memory, disk and CPU berth may promise to instances.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmissionFile {
    /// Reserved memory may reach the host's memory times this (default 1.0: never promise more
    /// than exists).
    #[serde(default)]
    pub memory_overcommit: Option<f64>,
    /// The host's memory as admission sees it; default: measured at start.
    #[serde(default)]
    pub memory: Option<String>,
    /// Reserved disk (plan `disk` of every instance) may reach the disk size times this
    /// (default 1.0; tenant images are sparse, so providers may choose more).
    #[serde(default)]
    pub disk_overcommit: Option<f64>,
    /// The size of the filesystem holding the state dir as admission sees it; default:
    /// measured at start.
    #[serde(default)]
    pub disk: Option<String>,
    /// Reserved CPUs (the `cpus` limit of every instance) may reach the host's CPUs times this
    /// (default 10: a `cpus` limit is a cap, CPU is shared by weight and a tenant past its share is slowed, not killed).
    #[serde(default)]
    pub cpu_overcommit: Option<f64>,
    /// The host's CPUs as admission sees them (e.g. `2`, `1.5`); default: counted at start.
    #[serde(default)]
    pub cpus: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyFile {
    /// Plain HTTP listener (ACME HTTP-01 and redirects), e.g. `0.0.0.0:80`.
    pub http: String,
    /// TLS listener, e.g. `0.0.0.0:443`.
    pub https: String,
    /// Port written into HTTP→HTTPS redirects when clients reach the HTTPS listener through a
    /// port other than its own (NAT); defaults to the listener's port.
    #[serde(default)]
    pub public_https_port: Option<u16>,
    /// Provider-owned domains that tenants may be mounted under by path (`example.com/acme`).
    #[serde(default)]
    pub shared_domains: Vec<String>,
    /// Peers whose X-Forwarded-For is believed (CIDRs); everyone else's is overwritten.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    #[serde(default)]
    pub timeouts: ProxyTimeoutsFile,
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: String,
    #[serde(default = "default_max_body")]
    pub max_body: String,
    /// One structured event per request (target `berth::access`).
    #[serde(default)]
    pub access_log: bool,
    /// Sleeping tenants woken at once on the host; further wakes queue in arrival order.
    #[serde(default)]
    pub max_wakes: Option<usize>,
    /// Sleeping tenants one client (an address; IPv6 by its /64) may wake per minute.
    #[serde(default)]
    pub client_wakes_per_minute: Option<u32>,
    /// The least time between two wakes' starts on the host (`0s`: none).
    #[serde(default)]
    pub wake_gap: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyTimeoutsFile {
    pub tls_handshake: String,
    pub header_read: String,
    pub idle: String,
    pub upstream_connect: String,
    pub upstream_response: String,
    /// How long in-flight requests to an old target may run after a switch.
    pub drain: String,
    /// How long a paused tenant's requests are held before the maintenance page.
    pub max_pause: String,
}

impl Default for ProxyTimeoutsFile {
    fn default() -> Self {
        ProxyTimeoutsFile {
            tls_handshake: "10s".into(),
            header_read: "10s".into(),
            idle: "60s".into(),
            upstream_connect: "5s".into(),
            upstream_response: "60s".into(),
            drain: "30s".into(),
            max_pause: "30s".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// Without ACME every domain gets a certificate from berth's internal CA.
    #[serde(default)]
    pub acme: Option<AcmeFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeFile {
    /// ACME directory URL (Let's Encrypt: https://acme-v02.api.letsencrypt.org/directory).
    pub directory: String,
    #[serde(default)]
    pub email: Option<String>,
    /// PEM roots to trust for the ACME server's own HTTPS (a test CA such as Pebble's).
    #[serde(default)]
    pub ca_bundle: Option<PathBuf>,
    /// Account-wide order budget (token bucket refilled over a minute).
    #[serde(default = "default_orders_per_minute")]
    pub orders_per_minute: u32,
    /// Orders one tenant may cause per day, so one tenant cannot spend the account's limits.
    #[serde(default = "default_orders_per_tenant")]
    pub orders_per_tenant_per_day: u32,
    /// How often certificates are checked for renewal.
    #[serde(default = "default_check_interval")]
    pub check_interval: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainsFile {
    /// DNS server (ip:port) used to check `_berth.<domain>` TXT proofs; the system's otherwise.
    #[serde(default)]
    pub resolver: Option<String>,
    /// Port the HTTP proof is fetched from.
    #[serde(default = "default_proof_port")]
    pub http_port: u16,
}

impl Default for DomainsFile {
    fn default() -> Self {
        DomainsFile {
            resolver: None,
            http_port: default_proof_port(),
        }
    }
}

fn default_max_header_bytes() -> String {
    "64k".into()
}
fn default_max_body() -> String {
    "100m".into()
}
fn default_orders_per_minute() -> u32 {
    10
}
fn default_orders_per_tenant() -> u32 {
    20
}
fn default_check_interval() -> String {
    "10m".into()
}
fn default_proof_port() -> u16 {
    80
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiFile {
    #[serde(default = "HostFile::default_socket")]
    pub socket: PathBuf,
    /// Optional TCP listener on loopback (e.g. 127.0.0.1:7070): the host's operator token
    /// (`token_file`) and tokens made with `berth token create`.
    #[serde(default)]
    pub tcp: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// TLS on the TCP listener (needed beyond loopback).
    #[serde(default)]
    pub tls: Option<ApiTlsFile>,
}

/// The TCP listener's certificate: files the operator provides, or one from berth's internal
/// CA for `names`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTlsFile {
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub names: Vec<String>,
}

impl Default for ApiFile {
    fn default() -> Self {
        ApiFile {
            socket: HostFile::default_socket(),
            tcp: None,
            token_file: None,
            tls: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkFile {
    /// Range the per-tenant subnets are cut from.
    #[serde(default = "default_pool")]
    pub subnet_pool: String,
    /// Prefix length of each tenant subnet (/28 = 14 addresses; a /16 pool holds 4,096 tenants).
    #[serde(default = "default_prefix")]
    pub subnet_prefix: u8,
}

impl Default for NetworkFile {
    fn default() -> Self {
        NetworkFile {
            subnet_pool: default_pool(),
            subnet_prefix: default_prefix(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortsFile {
    /// Swarm mode publishes web containers on their nodes at ports from this range (one
    /// host publishes nothing: the edge reaches each at its address on its network).
    #[serde(default = "default_first_port")]
    pub first: u16,
    #[serde(default = "default_last_port")]
    pub last: u16,
}

impl Default for PortsFile {
    fn default() -> Self {
        PortsFile {
            first: default_first_port(),
            last: default_last_port(),
        }
    }
}

/// `mail:` — the relay every mail-sending tenant submits to (Postfix + OpenDKIM in one
/// container; berth answers its SASL and policy sockets).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailFile {
    #[serde(default = "default_mail_image")]
    pub image: String,
    /// The relay's name in HELO and Received headers (default `mail.<base_domain>`).
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default = "default_mail_memory")]
    pub memory: String,
    /// `host:port` of the provider's smarthost; absent: direct delivery to each domain's MX.
    #[serde(default)]
    pub smarthost: Option<String>,
    /// Login at the smarthost (with `smarthost_password_file`).
    #[serde(default)]
    pub smarthost_user: Option<String>,
    #[serde(default)]
    pub smarthost_password_file: Option<PathBuf>,
    /// `required` (STARTTLS or no delivery) or `may` (default).
    #[serde(default)]
    pub smarthost_tls: Option<String>,
    /// The DKIM selector of every tenant domain's key (default `berth`).
    #[serde(default)]
    pub dkim_selector: Option<String>,
}

fn default_mail_image() -> String {
    "berth/mailrelay:bookworm".into()
}
fn default_mail_memory() -> String {
    "256m".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedDatabaseFile {
    pub image: String,
    #[serde(default = "default_shared_memory")]
    pub memory: String,
    /// CONNECTION LIMIT of each tenant's role.
    #[serde(default = "default_conn_limit")]
    pub connection_limit: u32,
}

fn default_templates() -> PathBuf {
    "templates".into()
}
fn default_instances() -> PathBuf {
    "instances".into()
}
fn default_namespace() -> String {
    "berth".into()
}
impl HostFile {
    /// Where the API socket is when the host config says nothing.
    pub fn default_socket() -> PathBuf {
        "/run/berth/berth.sock".into()
    }
}
fn default_pool() -> String {
    "10.240.0.0/16".into()
}
fn default_prefix() -> u8 {
    28
}
fn default_first_port() -> u16 {
    20000
}
fn default_last_port() -> u16 {
    29999
}
fn default_resync() -> String {
    "30s".into()
}
fn default_parallelism() -> usize {
    8
}
fn default_shared_memory() -> String {
    "1g".into()
}
fn default_conn_limit() -> u32 {
    20
}
