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
    pub plans: BTreeMap<String, LimitsFile>,
    /// Plan of instances that name none.
    #[serde(default)]
    pub default_plan: Option<String>,
    #[serde(default)]
    pub shared_database: Option<SharedDatabaseFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiFile {
    #[serde(default = "HostFile::default_socket")]
    pub socket: PathBuf,
    /// Optional TCP listener (e.g. 127.0.0.1:7070); requires `token_file`.
    #[serde(default)]
    pub tcp: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

impl Default for ApiFile {
    fn default() -> Self {
        ApiFile {
            socket: HostFile::default_socket(),
            tcp: None,
            token_file: None,
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
    /// Web ports are published on 127.0.0.1 from this range.
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
